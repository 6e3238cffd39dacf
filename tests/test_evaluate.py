"""``napari-grounding evaluate``: the CSV, the summary, missed cases, and a dask cluster."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_grounding.cli import main
from napari_grounding.evaluate import COLUMNS, summarise
from napari_grounding.sample import CASE, ctrate_volume_path, write_sample

SHIFT = 3
SECOND = "train_2_a_1"


def numpy_dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a != 0, b != 0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def two_cases(tmp_path_factory, phantom) -> tuple[Path, Path]:
    """The sample case and a copy of it; predictions (ground truth shifted) for the first only."""
    root = write_sample(tmp_path_factory.mktemp("eval") / "root", phantom)
    data = json.loads((root / "dataset.json").read_text())
    record = json.loads(json.dumps(data["train"][0]))
    record["name"] = f"{SECOND}.nii.gz"
    data["train"].append(record)
    (root / "dataset.json").write_text(json.dumps(data))
    ctrate_volume_path(root, SECOND).parent.mkdir(parents=True)
    shutil.copy(ctrate_volume_path(root, CASE), ctrate_volume_path(root, SECOND))
    shutil.copy(root / "segmentations" / f"{CASE}.nii.gz", root / "segmentations" / f"{SECOND}.nii.gz")
    pred = root.parent / "pred"
    pred.mkdir()
    nib.save(nib.Nifti1Image(np.roll(phantom.masks, SHIFT, axis=1), np.eye(4)), pred / f"{CASE}.nii.gz")
    return root, pred


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_evaluate_writes_one_row_per_item(tmp_path, two_cases, phantom, capsys):
    root, pred = two_cases
    out = tmp_path / "scores.csv"
    assert main(["evaluate", str(root), "--pred", str(pred), "--out", str(out)]) == 0
    header, rows = read_csv(out)
    assert header == list(COLUMNS)
    assert [(r["case"], r["item"]) for r in rows] == [
        (c, f"finding/{i}") for c in (CASE, SECOND) for i in range(3)]
    dices = []
    for index, row in enumerate(rows[:3]):
        expected = numpy_dice(phantom.masks[index], np.roll(phantom.masks, SHIFT, axis=1)[index])
        dices.append(expected)
        assert float(row["dice"]) == pytest.approx(expected, abs=1e-6)
        assert row["hit"] == "1" and row["instance_f1"] == "1.0"
    assert [r["gt_instances"] for r in rows] == ["1", "1", "2"] * 2
    # the second case has no prediction: empty scores, its ground-truth instances kept
    assert all(r[c] == "" for r in rows[3:] for c in COLUMNS[2:] if c != "gt_instances")
    captured = capsys.readouterr()
    mean_dice = sum(dices) / 6  # a missed item counts as Dice 0
    assert (f"6 items in 2 cases (3 without a prediction): mean Dice {mean_dice:.3f}, hit rate 0.500, "
            f"instance F1 micro {2 * 4 / (8 + 4):.3f}, macro 0.500 -> {out}") in captured.out
    assert f"{SECOND}: --pred {pred}: no {SECOND}.nii.gz; no prediction for this case" in captured.err


def test_summary_of_hand_made_rows():
    rows = [
        {"kind": "mask", "dice": 0.8, "hit": 1, "gt_instances": 2, "pred_instances": 1, "matched": 1,
         "instance_f1": 2 / 3},
        {"kind": "mask", "dice": 0.0, "hit": 0, "gt_instances": 1, "pred_instances": 0, "matched": 0,
         "instance_f1": 0.0},
        {"kind": "mask", "dice": "", "hit": "", "gt_instances": 1, "pred_instances": "", "matched": "",
         "instance_f1": ""},
    ]
    summary = summarise(rows)
    assert summary["items"] == 3 and summary["missing"] == 1
    assert summary["mean_dice"] == pytest.approx(0.8 / 3)
    assert summary["hit_rate"] == pytest.approx(1 / 3)
    assert summary["instance_f1_micro"] == pytest.approx(2 * 1 / (4 + 1))
    assert summary["instance_f1_macro"] == pytest.approx((2 / 3) / 3)
    assert math.isnan(summarise([])["mean_dice"])


def test_evaluate_bad_input_is_one_line(tmp_path, two_cases, capsys):
    root, _ = two_cases
    garbage = tmp_path / "boxes.json"
    garbage.write_text("{")
    for argv, message in (
            (["--pred", str(tmp_path / "nope")], f"--pred {tmp_path / 'nope'}: no such file or folder"),
            (["--pred", str(garbage)], f"--pred {garbage}: not a readable JSON file")):
        code = main(["evaluate", str(root), *argv, "--out", str(tmp_path / "x.csv")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"napari-grounding: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as running:
        yield running.scheduler_address


def test_evaluate_on_a_distributed_cluster_matches_local(tmp_path, two_cases, cluster, capsys):
    root, pred = two_cases
    local, remote = tmp_path / "local.csv", tmp_path / "remote.csv"
    assert main(["evaluate", str(root), "--pred", str(pred), "--out", str(local)]) == 0
    local_out = capsys.readouterr().out
    assert main(["evaluate", str(root), "--pred", str(pred), "--out", str(remote),
                 "--scheduler", cluster]) == 0
    remote_out = capsys.readouterr().out
    assert read_csv(remote) == read_csv(local)
    assert len(read_csv(remote)[1]) == 6
    # the summary is the last line (distributed's progress bar goes to stdout before it)
    last = [out.strip().splitlines()[-1] for out in (remote_out, local_out)]
    assert last[0].replace(str(remote), "OUT") == last[1].replace(str(local), "OUT")
