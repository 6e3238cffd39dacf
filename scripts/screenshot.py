"""Refresh the README screenshots: napari with the panel, on the CT and CXR samples.

Run under a virtual X server (``make screenshot`` does): napari needs OpenGL to draw.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_grounding.readers import open_dataset
from napari_grounding.sample import write_sample
from napari_grounding.sample_cxr import write_chexmask_sample
from napari_grounding.widgets.launch import show_case


def snap(dataset, item: str, out: Path, contours: bool = False) -> None:
    viewer = napari.Viewer(title="napari-grounding", show=True)
    viewer.window.resize(1500, 900)
    panel = show_case(viewer, dataset.open_case(dataset.case_ids()[0]), item=item,
                      dataset=dataset)
    app = QApplication.instance()
    deadline = time.monotonic() + 30
    while panel.stats is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    panel.session.set_display("all", contours=contours)
    for _ in range(20):
        app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    print(out)


def main(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        snap(open_dataset(write_sample(Path(tmp) / "ct")), "finding/1", folder / "screenshot.png")
        csv_path = write_chexmask_sample(Path(tmp) / "cxr")
        snap(open_dataset(csv_path, images=Path(tmp) / "cxr" / "mimic-cxr-jpg"),
             "structure/heart", folder / "screenshot-cxr.png", contours=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
