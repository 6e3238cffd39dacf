"""Dataset-wide jobs: QC finds every planted defect and nothing in clean data; convert and
snapshot; the same graphs on a real dask.distributed cluster on loopback."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from napari_grounding import batch
from napari_grounding.cli import main
from napari_grounding.readers import open_dataset
from napari_grounding.sample import CASE, ctrate_volume_path, write_sample
from napari_grounding.sample_cxr import DICOM_IDS, write_chexmask_sample
from napari_grounding.sample_qba import write_qba_sample

CT_DEFECTS = ("mask_shape", "empty_mask", "voxel_count", "entity_count", "missing_image")


def plant_ct_defects(root, phantom):
    """One extra case per defect, made from the sample case."""
    data = json.loads((root / "dataset.json").read_text())
    clean = data["train"][0]
    for number, defect in enumerate(CT_DEFECTS, start=2):
        name = f"train_{number}_a_1"
        record = json.loads(json.dumps(clean))
        record["name"] = f"{name}.nii.gz"
        masks = phantom.masks.copy()
        if defect != "missing_image":
            target = ctrate_volume_path(root, name)
            target.parent.mkdir(parents=True)
            shutil.copy(ctrate_volume_path(root, CASE), target)
        if defect == "mask_shape":
            masks = masks[..., :50]
        elif defect == "empty_mask":
            masks[1] = 0
            record["pixels"]["1"] = record["entity_counts"]["1"] = 0  # only the mask is off
        elif defect == "voxel_count":
            record["pixels"]["0"] += 5
        elif defect == "entity_count":
            record["entity_counts"]["2"] = 3
        nib.save(nib.Nifti1Image(masks, np.eye(4)), root / "segmentations" / f"{name}.nii.gz")
        data["train"].append(record)
    (root / "dataset.json").write_text(json.dumps(data))
    return root


def plant_cxr_defects(root):
    """CheXmask rows with: low RCA (the sample's second row), a run past the end, landmarks
    outside the image, a missing image."""
    csv_path = write_chexmask_sample(root)
    with csv_path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    bad_rle, outside, missing = (list(rows[0]) for _ in range(3))
    bad_rle[0], outside[0], missing[0] = "rle-row", "landmark-row", "no-image-row"
    bad_rle[header.index("Heart")] += " 1048570 100"
    points = outside[header.index("Landmarks")].split(",")
    points[0] = "1500"
    outside[header.index("Landmarks")] = ",".join(points)
    folder = root / "mimic-cxr-jpg"
    for row in (bad_rle, outside):
        PILImage.fromarray(np.zeros((1024, 1024), np.uint8)).save(folder / f"{row[0]}.jpg")
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows, bad_rle, outside, missing])
    return csv_path, folder


def qc_rows(path, images, scheduler=None):
    dataset = open_dataset(path, images)
    rows = batch.run(batch.qc_one, str(path), str(images) if images else None,
                     dataset.case_ids(), scheduler=scheduler)
    return [row for case_rows in rows for row in case_rows]


def test_qc_finds_each_planted_ct_defect(tmp_path, phantom):
    root = plant_ct_defects(write_sample(tmp_path / "ct", phantom), phantom)
    rows = qc_rows(root, None)
    found = {(r["case"], r["check"]) for r in rows}
    expected = {(f"train_{n}_a_1", d) for n, d in enumerate(CT_DEFECTS, start=2)}
    assert found == expected, rows


def test_qc_finds_each_planted_cxr_defect(tmp_path):
    csv_path, images = plant_cxr_defects(tmp_path / "cxr")
    found = {(r["case"], r["check"]) for r in qc_rows(csv_path, images)}
    assert found == {(DICOM_IDS[1], "low_rca"), ("rle-row", "rle"),
                     ("landmark-row", "landmarks_outside"), ("no-image-row", "missing_image")}


def test_qc_finds_boxes_outside_and_nothing_in_clean_data(tmp_path, sample_root):
    qba = write_qba_sample(tmp_path / "qba")
    rows = qc_rows(qba, qba / "mimic-cxr-jpg")
    assert [(r["check"], r["item"]) for r in rows] == [("boxes_outside", "answer/q0003/1")]
    assert qc_rows(sample_root, None) == []
    csv_path = write_chexmask_sample(tmp_path / "clean")
    with csv_path.open() as f:
        lines = f.read().splitlines()
    csv_path.write_text("\n".join(lines[:2]) + "\n")  # the good-quality row only
    assert qc_rows(csv_path, tmp_path / "clean" / "mimic-cxr-jpg") == []


def test_qc_command_writes_the_csv(tmp_path, phantom, capsys):
    root = plant_ct_defects(write_sample(tmp_path / "ct", phantom), phantom)
    assert main(["qc", str(root), "--out", str(tmp_path / "qc.csv")]) == 0
    with (tmp_path / "qc.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(CT_DEFECTS)
    assert "5 findings in 6 cases" in capsys.readouterr().out


def test_convert_and_snapshot(tmp_path, sample_root, capsys):
    assert main(["convert", str(sample_root), "--out", str(tmp_path / "cache")]) == 0
    assert len(list((tmp_path / "cache").glob("*/v-*.ome.zarr"))) == 1
    assert main(["snapshot", str(sample_root), "--out", str(tmp_path / "snap")]) == 0
    pictures = sorted((tmp_path / "snap" / CASE).glob("*.png"))
    assert [p.name for p in pictures] == ["finding_0.png", "finding_1.png", "finding_2.png"]
    nodule = np.asarray(PILImage.open(pictures[0])).astype(int)
    assert nodule.shape == (128, 128, 3)
    red = (nodule[..., 0] > nodule[..., 1] + 60) & (nodule[..., 0] > nodule[..., 2] + 60)
    assert 20 <= red.sum() <= 72  # the nodule's slice through its centre, in its colour
    gallery = (tmp_path / "snap" / "index.html").read_text()
    assert gallery.count("<figure>") == 3 and f"{CASE}/finding_0.png" in gallery


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as running:
        yield running.scheduler_address


def test_jobs_on_a_local_distributed_cluster(tmp_path, phantom, cluster, capsys):
    root = plant_ct_defects(write_sample(tmp_path / "ct", phantom), phantom)
    rows = qc_rows(root, None, scheduler=cluster)
    assert {(r["case"], r["check"]) for r in rows} == {
        (f"train_{n}_a_1", d) for n, d in enumerate(CT_DEFECTS, start=2)}
    assert main(["convert", str(root), "--out", str(tmp_path / "cache"),
                 "--scheduler", cluster]) == 0
    assert len(list((tmp_path / "cache").glob("*/v-*.ome.zarr"))) == 5  # one case has no CT
    assert "5 of 6 cases cached" in capsys.readouterr().out


def test_snapshots_on_the_cluster(tmp_path, cluster, capsys):
    qba = write_qba_sample(tmp_path / "qba")
    assert main(["snapshot", str(qba), "--images", str(qba / "mimic-cxr-jpg"),
                 "--out", str(tmp_path / "snap"), "--scheduler", cluster]) == 0
    pictures = sorted((tmp_path / "snap" / "s50414267").glob("*.png"))
    # every answer, observation, region, report sentence and indication answer with boxes
    assert len(pictures) == 10
    gallery = (tmp_path / "snap" / "index.html").read_text()
    assert gallery.count("<figure>") == 10 and "10 snapshots" in capsys.readouterr().out
