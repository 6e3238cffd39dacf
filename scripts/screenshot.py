"""Refresh the README screenshot: napari with the panel and a selected finding.

Run under a virtual X server (``make screenshot`` does): napari needs OpenGL to draw.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_grounding.readers import open_case
from napari_grounding.sample import write_sample
from napari_grounding.widgets.launch import show_case


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        case = open_case(write_sample(folder))
        viewer = napari.Viewer(title="napari-grounding", show=True)
        viewer.window.resize(1500, 900)
        panel = show_case(viewer, case, item="finding/0")
        app = QApplication.instance()
        deadline = time.monotonic() + 30
        while panel.stats is None and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        panel.tree.resizeColumnToContents(2)
        app.processEvents()
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        viewer.close()
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"))
