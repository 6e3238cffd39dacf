"""Refresh the README screenshots: napari with the panel, on the CT and CXR samples, and a
review in progress.

Run under a virtual X server (``make screenshot`` does): napari needs OpenGL to draw.
"""

from __future__ import annotations

import os
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


def settle(panel, seconds: float = 30) -> None:
    app = QApplication.instance()
    deadline = time.monotonic() + seconds
    while panel.stats is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)


def snap(dataset, item: str, out: Path, contours: bool = False,
         verdicts: dict[str, str] | None = None, predictions: Path | None = None) -> None:
    viewer = napari.Viewer(title="napari-grounding", show=True)
    viewer.window.resize(1500, 950)
    panel = show_case(viewer, dataset.open_case(dataset.case_ids()[0]), dataset=dataset)
    settle(panel)
    if predictions is not None:
        panel.load_predictions(str(predictions))
        settle(panel)
        panel.session.set_display("selected")
    for item_id, verdict in (verdicts or {}).items():
        panel.select_items([item_id])
        panel.session.record(verdict, "too small" if verdict == "needs_fix" else None)
    panel.select_items([item])
    if predictions is None:
        panel.session.set_display("all", contours=contours)
    else:
        panel.session.toggle_errors()
    settle(panel)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    print(out)


def shifted_prediction(folder: Path) -> Path:
    """A "model" whose masks are the phantom's moved 3 voxels: hits, spill-over and misses."""
    import nibabel as nib
    import numpy as np

    from napari_grounding.sample import CASE, make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    masks = np.roll(make_phantom().masks, 3, axis=1)
    nib.save(nib.Nifti1Image(masks, np.eye(4)), folder / f"{CASE}.nii.gz")
    return folder


def main(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp) / "config")  # a reviewer of our own
        from napari_grounding.review import remember_reviewer

        remember_reviewer("Dr Example")
        ct = open_dataset(write_sample(Path(tmp) / "ct"))
        snap(ct, "finding/1", folder / "screenshot.png")
        csv_path = write_chexmask_sample(Path(tmp) / "cxr")
        snap(open_dataset(csv_path, images=Path(tmp) / "cxr" / "mimic-cxr-jpg"),
             "structure/heart", folder / "screenshot-cxr.png", contours=True)
        snap(ct, "finding/2", folder / "screenshot-review.png",
             verdicts={"finding/0": "accept", "finding/1": "needs_fix"})
        snap(ct, "finding/1", folder / "screenshot-errors.png",
             predictions=shifted_prediction(Path(tmp) / "pred"))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
