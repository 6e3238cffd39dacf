"""The command line: describe's JSON schema and values, cases, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from napari_grounding.cli import main
from napari_grounding.readers import open_dataset
from napari_grounding.readers.rle import rle_decode
from napari_grounding.sample import CASE
from tests.conftest import ct_path, mask_file


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def described(sample_root):
    """describe --json of the sample case, parsed."""
    out = subprocess.run([sys.executable, "-m", "napari_grounding.cli", "describe",
                          str(sample_root), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_describe_top_level(described):
    assert described["dataset"] == "rexgroundingct"
    assert described["case"] == CASE
    assert described["problems"] == []
    (image,) = described["images"]
    assert image["id"] == "ct" and image["shape"] == [128, 128, 60]
    assert image["spacing_mm"] == [2.5, 2.5, 5.0] and image["dtype"] == "int16"
    assert image["orientation"] == "LPS"


def test_describe_mask_numbers_match_the_phantom(described, phantom):
    items = {i["id"]: i for i in described["items"]}
    for index, mask in enumerate(phantom.masks):
        (annotation,) = items[f"finding/{index}"]["annotations"]
        where = np.argwhere(mask)
        assert annotation["kind"] == "mask" and annotation["image"] == "ct"
        assert annotation["voxels"] == len(where)
        assert annotation["instances"] == len(np.unique(mask)) - 1
        assert annotation["volume_ml"] == pytest.approx(len(where) * 2.5 * 2.5 * 5 / 1000)
        # bbox and centroid in the source file's own voxel index order (nibabel's)
        assert annotation["bbox"] == [where.min(axis=0).tolist(), where.max(axis=0).tolist()]
        assert annotation["centroid"] == pytest.approx(where.mean(axis=0), abs=1e-3)
    assert items["finding/2"]["annotations"][0]["labels"] == [1, 2]


def test_describe_says_the_same_of_a_case_read_from_its_cache(tmp_path, sample_root, capsys,
                                                               monkeypatch):
    """Once converted, the case is read from its cache and described as from its files (and
    where its cache is): the image's source as the user named it (relative here), every
    number the same."""
    from napari_grounding import store
    from napari_grounding.readers import open_case

    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(sample_root.parent)
    typed = sample_root.name
    code, before, _ = run(capsys, "describe", typed, "--json")
    assert code == 0
    assert run(capsys, "convert", typed, "--out", str(tmp_path / "cache"))[0] == 0
    assert open_case(typed).images["ct"].meta.get("cache")  # read from the cache now
    code, after, _ = run(capsys, "describe", typed, "--json")
    after = json.loads(after)
    assert code == 0 and after["images"][0].pop("cache")  # where it was read from, besides
    assert after == json.loads(before)
    assert after["images"][0]["source"].startswith(typed)


def test_describe_items_have_the_schema_keys(described):
    def check(item):
        assert {"id", "text", "tags", "annotations", "children"} <= set(item)
        for child in item["children"]:
            check(child)

    for item in described["items"]:
        check(item)
    sections = [i for i in described["items"] if i["id"].startswith("report/")]
    assert sections[2]["title"] == "Findings" and len(sections[2]["children"]) == 5


def test_describe_text(capsys, sample_root):
    code, out, _ = run(capsys, "describe", str(sample_root))
    assert code == 0
    assert "finding/0: Solid 16 mm nodule in the upper lobe of the right lung. [2d]  -> mask/0" in out
    assert "image ct: (128, 128, 60) int16 spacing (2.5, 2.5, 5.0) mm" in out


def test_cases_lists_one_line_per_case(capsys, sample_root, shared_data, tmp_path):
    code, out, _ = run(capsys, "cases", str(sample_root))
    assert code == 0
    assert out.splitlines() == [f"{CASE}\ttrain\t3 findings\tmasks\tcategories 1c 2d 2e\tCT found"]
    (tmp_path / "dataset.json").write_bytes((shared_data / "rexgroundingct" /
                                             "dataset.json").read_bytes())
    code, out, _ = run(capsys, "cases", str(tmp_path))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3142
    assert lines[0] == "train_1741_b_2\ttrain\t1 findings\tmasks\tcategories 2b\tCT missing"
    assert sum("no masks (test split)" in line for line in lines) == 100


def test_describe_needs_case_when_several(capsys, shared_data, tmp_path):
    (tmp_path / "dataset.json").write_bytes((shared_data / "rexgroundingct" /
                                             "dataset.json").read_bytes())
    code, _, err = run(capsys, "describe", str(tmp_path), "--json")
    assert code == 2
    assert err.strip().endswith(f"(list them with: napari-grounding cases {tmp_path})")
    assert "holds 3142 cases; name one with --case" in err


def test_missing_ct_is_a_warning_with_text(capsys, sample_copy):
    ct_path(sample_copy).unlink()
    code, out, err = run(capsys, "describe", str(sample_copy), "--json")
    assert code == 0
    assert err.startswith(f"napari-grounding: warning: CT {CASE}.nii.gz not found")
    described = json.loads(out)
    assert described["images"] == []
    annotation = described["items"][0]["annotations"][0]
    assert annotation["voxels"] == 72 and annotation["volume_ml"] is None


@pytest.mark.parametrize(("breakage", "argv", "message"), [
    ("none", ["describe", "{root}/nowhere"], "nowhere: no such file or folder"),
    ("json", ["describe", "{root}"], "dataset.json: not valid JSON (line 1, column 2"),
    ("none", ["describe", "{root}", "--case", "train_7_q_1"], "no case 'train_7_q_1'"),
    ("none", ["view", "{root}", "--item", "finding/9"], "has no item 'finding/9'"),
    ("ct", ["describe", "{root}"], "truncated or corrupt .nii.gz"),
    ("none", ["cases", "{root}", "--images", "{root}/nowhere"], "--images"),
    ("none", ["describe", "{root}/dataset.json/x"], "no such file or folder"),
])
def test_bad_input_exits_2_with_one_line(capsys, sample_copy, breakage, argv, message):
    if breakage == "json":
        (sample_copy / "dataset.json").write_text("{oops")
    if breakage == "ct":
        path = ct_path(sample_copy)
        path.write_bytes(path.read_bytes()[:5000])
    code, out, err = run(capsys, *[a.format(root=sample_copy) for a in argv])
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("napari-grounding: error: ") and message in err


def test_unreadable_path_kind(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run(capsys, "cases", str(tmp_path / "notes.txt"))
    assert code == 2 and "not a dataset napari-grounding can read" in err


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["describe"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sample_writes_the_phantoms(capsys, tmp_path):
    code, out, _ = run(capsys, "sample", str(tmp_path))
    assert code == 0 and mask_file(tmp_path / "ct-phantom").is_file()
    assert (tmp_path / "cxr-phantom" / "chexmask" / "MIMIC-CXR-JPG.csv").is_file()
    assert (tmp_path / "rexgradient-phantom" / "metadata").is_dir()
    assert (tmp_path / "qba-phantom" / "qa").is_dir()
    assert len(out.splitlines()) == 4
    qba = open_dataset(tmp_path / "qba-phantom", tmp_path / "qba-phantom" / "mimic-cxr-jpg")
    # with its metadata: views named, the study graded
    case = qba.open_case(qba.case_ids()[0])
    assert sorted(image.meta.get("view") for image in case.images.values()) == ["LATERAL", "PA"]
    assert qba.summary(case.id).endswith("\tgrade A")


def test_installed_entry_point(sample_root):
    exe = os.path.join(os.path.dirname(sys.executable), "napari-grounding")
    out = subprocess.run([exe, "cases", str(sample_root)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith(CASE)


def test_describe_chexmask_row(capsys, shared_data):
    path = shared_data / "chexmask" / "ChestX-Ray8.csv"
    code, out, _ = run(capsys, "describe", str(path), "--case", "00028162_002.png", "--json")
    assert code == 0
    described = json.loads(out)
    assert described["images"][0]["spacing_mm"] is None
    code, text, _ = run(capsys, "describe", str(path), "--case", "00028162_002.png")
    assert "image image: (1024, 1024) uint8 pixel units" in text
    items = {i["id"]: i for i in described["items"]}
    mask, contour = items["structure/heart"]["annotations"]
    assert mask["kind"] == "mask" and "pixels" in mask and "voxels" not in mask
    assert "volume_ml" not in mask and "slice_range" not in mask
    where = np.argwhere(rle_decode(_row(path, "00028162_002.png")["Heart"], (1024, 1024)))
    assert mask["pixels"] == len(where)
    assert mask["bbox"] == [where.min(axis=0).tolist(), where.max(axis=0).tolist()]  # (row, col)
    assert contour["kind"] == "contour" and contour["points"] == 26 and contour["closed"]
    assert len(contour["bbox"][0]) == 2 and len(contour["centroid"]) == 2


def _row(path, image_id):
    import csv

    with open(path, newline="") as f:
        return next(r for r in csv.DictReader(f) if r["Image Index"] == image_id)


def test_cases_for_cxr_datasets(capsys, shared_data, tmp_path):
    code, out, _ = run(capsys, "cases", str(shared_data / "chexmask" / "ChestX-Ray8.csv"))
    assert code == 0 and len(out.splitlines()) == 50
    assert out.splitlines()[0].startswith("00028162_002.png\tRCA 0.852")
    from napari_grounding.sample_cxr import REXGRADIENT_STUDY, write_rexgradient_sample

    root = write_rexgradient_sample(tmp_path / "rg")
    code, out, _ = run(capsys, "describe", str(root), "--json")
    described = json.loads(out)
    assert [i["id"] for i in described["images"]] == ["view/0", "view/1"]
    assert [i["view"] for i in described["images"]] == ["PA", "LATERAL"]
    assert described["case"] == REXGRADIENT_STUDY
