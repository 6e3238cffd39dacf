"""Broken, hostile and surprising input, generated small: every problem is caught with one line
that blames the input (exit 2), never served as a wrong picture, and never costs unbounded
memory or time. Heavy cases run in a child process under a memory limit."""

from __future__ import annotations

import csv
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile

import nibabel as nib
import numpy as np
import pytest

from napari_grounding import cache_folders, store
from napari_grounding.cli import main, printable
from napari_grounding.model import GroundingError
from napari_grounding.readers import open_case, open_dataset
from napari_grounding.readers.csv_rows import CsvRows
from napari_grounding.readers.paths import inside, safe_name
from napari_grounding.sample import CASE, ctrate_volume_path, make_phantom, write_sample
from napari_grounding.sample_cxr import write_chexmask_sample, write_rexgradient_sample
from napari_grounding.sample_qba import GRAPH_MEMBER, QA_MEMBER, write_qba_sample
from tests.conftest import ct_path, mask_file

MEMORY_LIMIT = 2 * 2**30


# the CLI run by a child that reports its own peak at exit: the kernel's ru_maxrss of a forked
# child also counts the pytest process it was forked from, whose size depends on earlier tests
_PEAK_REPORTING_CLI = """
import atexit, runpy, sys
def report():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stdout.write(f"\\npeak-kib {kib}\\n")
atexit.register(report)
sys.argv[0] = "napari-grounding"
runpy.run_module("napari_grounding.cli", run_name="__main__")
"""


def run_limited(*argv: str, env: dict | None = None) -> tuple[int, str, float]:
    """The CLI in a child process limited to 2 GiB of address space: (exit code, stderr, peak
    resident memory in MiB)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    done = subprocess.run([sys.executable, "-c", _PEAK_REPORTING_CLI, *argv], capture_output=True,
                          preexec_fn=limit, env={**os.environ, **(env or {})}, timeout=300)
    peak = next(int(line.split()[1]) for line in reversed(done.stdout.decode().splitlines())
                if line.startswith("peak-kib "))
    return done.returncode, done.stderr.decode(), peak / 1024


def one_error_line(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("napari-grounding") and ": error: " in err and "\n" not in err, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


# -- 1. caches readers can trust -------------------------------------------------------------
def test_a_same_size_same_time_rewrite_is_not_served_stale(sample_copy, tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    store.write_cache(open_case(sample_copy))
    path, stat = ct_path(sample_copy), ct_path(sample_copy).stat()
    phantom = make_phantom()
    changed = phantom.hu.copy()
    changed[30:34] = 5  # same size on disk is not needed: the stamp reads the content
    nib.save(nib.Nifti1Image(changed, phantom.affine), path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p / rsync -t leave it
    ct = open_case(sample_copy).images["ct"]
    assert "cache" not in ct.meta
    np.testing.assert_array_equal(ct.orientation.to_source(ct.data).compute(), changed)


def test_a_changed_rescale_in_the_metadata_csv_makes_a_new_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    root = write_sample(tmp_path / "s")
    old = ctrate_volume_path(root, CASE, fixed=False)  # an older, raw CT-RATE volume
    old.parent.mkdir(parents=True)
    shutil.move(ctrate_volume_path(root, CASE), old)
    store.write_cache(open_case(root))
    first = open_case(root).images["ct"]
    assert "cache" in first.meta
    table = root / "dataset" / "metadata" / "train_metadata.csv"
    table.write_text(table.read_text().replace(",-1024.0,", ",-1000.0,"))
    fresh = open_case(root).images["ct"]
    assert "cache" not in fresh.meta  # the intercept applied changed: another version
    assert int(fresh.data[30, 64, 64].compute()) == int(first.data[30, 64, 64].compute()) + 24


# -- 2. lookups that prove what they return ----------------------------------------------------
def _chexmask_rows(tmp_path, count: int = 40):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        header, row, _ = list(csv.reader(f))
    rows = [[f"img{n:04d}", *row[1:]] for n in range(count)]
    return csv_path, header, rows


def _write_rows(path, header, rows):
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def test_reordered_rows_with_the_same_size_and_time_are_found_by_id(tmp_path):
    path, header, rows = _chexmask_rows(tmp_path)
    for n, row in enumerate(rows):
        row[1] = f"0.{n:04d}00"  # a column telling the rows apart
    _write_rows(path, header, rows)
    CsvRows(path, ("dicom_id",), threshold=1)  # builds the index
    stat = path.stat()
    _write_rows(path, header, rows[::-1])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    table = CsvRows(path, ("dicom_id",), threshold=1)
    for wanted in ("img0003", "img0030"):
        number, row = table.row(wanted)
        assert row["dicom_id"] == wanted and row["Dice RCA (Mean)"] == rows[int(wanted[3:])][1]


def test_a_stray_quote_does_not_disable_the_file(tmp_path):
    path, header, rows = _chexmask_rows(tmp_path)
    rows[5][1], rows[9][1] = "STRAY1", "STRAY2"
    _write_rows(path, header, rows)
    # stray quotes inside unquoted fields: pandas reads them literally
    path.write_text(path.read_text().replace("STRAY1", 'x"y').replace("STRAY2", 'z"'))
    table = CsvRows(path, ("dicom_id",), threshold=1)
    assert table.row("img0020")[1]["dicom_id"] == "img0020"
    assert table.row("img0005")[1]["Dice RCA (Mean)"] == 'x"y'
    assert len(table.ids()) == len(rows) and "scanning" in table.note
    assert "unindexable" in (path.parent / f"{path.name}.rows.json").read_text()
    again = CsvRows(path, ("dicom_id",), threshold=1)  # a later session: straight to scans
    assert again.row("img0039")[1]["dicom_id"] == "img0039" and "scanning" in again.note


def test_an_index_folder_that_cannot_be_written_falls_back(tmp_path):
    path, header, rows = _chexmask_rows(tmp_path)
    _write_rows(path, header, rows)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")  # mkdir under it fails with an OSError, as EROFS does
    table = CsvRows(path, ("dicom_id",), index_dir=blocked / "index", threshold=1)
    assert table.row("img0007")[1]["dicom_id"] == "img0007"
    assert not list(tmp_path.rglob("*.rows.tmp*"))


def test_a_truncated_csv_gz_is_an_input_error(tmp_path, capsys):
    path, header, rows = _chexmask_rows(tmp_path)
    _write_rows(path, header, rows * 20)
    packed = gzip.compress(path.read_bytes())
    broken = tmp_path / "cut.csv.gz"
    broken.write_bytes(packed[: len(packed) // 2])
    one_error_line(capsys, main(["cases", str(broken)]), str(broken))


# -- 3. nothing outside the given folders ------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "..\\..\\x", "C:/x", ""])
def test_inside_refuses_names_leading_out(tmp_path, name):
    with pytest.raises(GroundingError):
        inside(tmp_path, name)


def test_safe_names_are_distinct_and_never_dot_dot():
    names = [safe_name(t) for t in ("a b", "a_b", "..", ".", "a/b", "a_b-3f2a1b0c", "")]
    assert len(set(names)) == len(names)
    assert all(n not in ("", ".", "..") and "/" not in n for n in names)
    assert safe_name("train_1_a_1") == "train_1_a_1"


def test_case_ids_dot_dot_and_lookalikes_snapshot_into_their_own_folders(tmp_path, capsys):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        header, row, _ = list(csv.reader(f))
    _write_rows(csv_path, header, [["..", *row[1:]], ["a b", *row[1:]], ["a_b", *row[1:]]])
    out = tmp_path / "snap" / "out"
    assert main(["snapshot", str(csv_path), "--out", str(out)]) == 0
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == ["out"]  # not in the parent
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 3 and all(len(list(f.glob("*.png"))) == 3 for f in folders)


def test_dataset_json_name_leading_out_is_refused(sample_copy, capsys):
    data = json.loads((sample_copy / "dataset.json").read_text())
    data["train"][0]["name"] = "../../outside.nii.gz"
    (sample_copy / "dataset.json").write_text(json.dumps(data))
    one_error_line(capsys, main(["cases", str(sample_copy)]), "not a plain file name")


def test_qba_image_id_and_zip_members_stay_inside(tmp_path):
    root = write_qba_sample(tmp_path / "qba", zipped=True)
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((root / "mimic-cxr-jpg").rglob("*.jpg")), secret)
    with zipfile.ZipFile(root / "qa.zip") as zf:
        document = json.loads(zf.read(QA_MEMBER))
    first = document["questions"][0]["answers"][0]
    first["localization"] = {"../../../../../secret": {"bboxes": [[1, 1, 5, 5]]}}
    with zipfile.ZipFile(root / "qa.zip", "w") as zf:
        zf.writestr(QA_MEMBER, json.dumps(document))
        zf.writestr("..\\..\\p10\\p10000001\\s50000001.qa.json", json.dumps(document))
    dataset = open_dataset(root, root / "mimic-cxr-jpg")
    assert "s50000001" not in dataset.case_ids()
    case = dataset.open_case(dataset.case_ids()[0])
    assert "../../../../../secret" not in case.images
    assert any("secret" in p and "not found" in p for p in case.problems)


def test_chexpert_path_and_rexgradient_imagepath_stay_inside(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "secret.png"
    from PIL import Image as PILImage

    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(secret)
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        header, row, _ = list(csv.reader(f))
    header[0] = "Path"
    chexpert = tmp_path / "CheXpert.csv"
    _write_rows(chexpert, header, [["../secret.png", *row[1:]], [str(secret), *row[1:]]])
    dataset = open_dataset(chexpert, images)
    for case_id in dataset.case_ids():
        assert dataset.open_case(case_id).tags["image"] == "not found"
    root = write_rexgradient_sample(tmp_path / "rexg")
    meta = next((root / "metadata").glob("*_view_position.json"))
    data = json.loads(meta.read_text())
    study = next(iter(data))
    data[study]["ImagePath"] = ["../../secret.png", str(secret)]
    meta.write_text(json.dumps(data))
    case = open_dataset(root, tmp_path).open_case(study)
    assert case.images == {} and len([p for p in case.problems if "not found" in p]) == 2


# -- 4. bounded work -----------------------------------------------------------------------
def _nifti2_header_only(path, dims):
    img = nib.Nifti2Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    img.header["dim"][1:4] = dims
    path.write_bytes(img.header.binaryblock + b"\0" * 4)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_header_promising_exabytes_is_refused_cheaply(tmp_path, suffix):
    plain = tmp_path / "huge.nii"
    _nifti2_header_only(plain, [2**31, 2**31, 4])
    path = plain
    if suffix == ".nii.gz":
        path = tmp_path / "huge.nii.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
    code, err, peak = run_limited("convert", str(path), "--out", str(tmp_path / "out"))
    assert code == 2 and "Traceback" not in err and str(path) in err, err
    assert ("truncated" in err or "corrupt" in err) and peak < 1024


def test_a_zip_bomb_member_is_refused_under_the_memory_limit(tmp_path):
    root = write_qba_sample(tmp_path / "qba", zipped=True)
    _, _, baseline = run_limited("describe", str(root))  # the tool's own footprint
    with zipfile.ZipFile(root / "qa.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(QA_MEMBER, b"[" + b" " * (80 * 2**20) + b"]")  # 80 MB of blanks
    assert (root / "qa.zip").stat().st_size < 2**20
    code, err, peak = run_limited("describe", str(root))
    assert code == 2 and "MB" in err and "qa.zip" in err, err
    assert peak < baseline + 50, (peak, baseline)


def test_a_scene_graph_lattice_is_walked_in_linear_time(tmp_path):
    root = write_qba_sample(tmp_path / "qba")
    graph_file = root / "scene_data" / GRAPH_MEMBER
    graph = json.loads(graph_file.read_text())
    depth = 40
    graph["observations"] = {f"o{level}{side}": {"name": f"o{level}{side}"}
                             for level in range(depth) for side in "ab"}
    graph["obs_relations"] = [{"parent_observation_id": f"o{level}{p}",
                               "child_observation_id": f"o{level + 1}{c}"}
                              for level in range(depth - 1) for p in "ab" for c in "ab"]
    graph["top_level_obs_ids"] = ["o0a", "o0b"]
    graph_file.write_text(json.dumps(graph))
    started = time.perf_counter()
    case = open_case(root)
    assert time.perf_counter() - started < 10
    observations = next(i for i in case.walk() if i.id == "observations")
    assert sum(1 for i in _walk(observations) if i.id.startswith("observation/")) == 2 * depth


def _walk(item):
    yield item
    for child in item.children:
        yield from _walk(child)


@pytest.mark.parametrize("height, width", [("30000", "30000"), ("100000000", "1"), ("-5", "10")])
def test_chexmask_sizes_beyond_the_limit_are_refused_in_one_line(tmp_path, height, width):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        header, row, _ = list(csv.reader(f))
    row[header.index("Height")], row[header.index("Width")] = height, width
    _write_rows(csv_path, header, [row])
    code, err, peak = run_limited("describe", str(csv_path))
    assert code == 0 and "not whole numbers from 1 to 16384" in err, err
    assert peak < 1024


def test_landmarks_far_away_and_rle_beyond_int64_are_problems_not_crashes(tmp_path, capsys):
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        header, row, _ = list(csv.reader(f))
    points = row[header.index("Landmarks")].split(",")
    points[0] = "3e8"
    row[header.index("Landmarks")] = ",".join(points)
    row[header.index("Heart")] = "1 99999999999999999999999"
    _write_rows(csv_path, header, [row])
    assert main(["snapshot", str(csv_path), "--out", str(tmp_path / "snap")]) == 0
    assert main(["describe", str(csv_path)]) == 0
    err = capsys.readouterr().err
    assert "landmark coordinates beyond 16384 px" in err and "below 2**63" in err


# -- 5. errors that blame the input ---------------------------------------------------------
def _patch_nifti(path, offset, values, dtype):
    raw = bytearray(path.read_bytes())
    raw[offset: offset + np.dtype(dtype).itemsize * len(values)] = np.array(values, dtype).tobytes()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("nan", [True, False])
def test_unusable_geometry_exits_2(tmp_path, capsys, nan):
    path = tmp_path / "ct.nii"
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    img.header.set_qform(None, code=0)
    nib.save(img, path)
    value = np.nan if nan else 0.0
    for offset in (280, 296, 312):  # srow_x, srow_y, srow_z (sform_code stays 2)
        _patch_nifti(path, offset, [value, value, value, 0.0], "<f4")
    _patch_nifti(path, 76, [1.0, value, value, value], "<f4")  # pixdim
    one_error_line(capsys, main(["describe", str(path)]), str(path))


def test_a_huge_scl_slope_is_read_as_float(tmp_path, capsys):
    path = tmp_path / "ct.nii"
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4))
    img.header.set_slope_inter(1e30, 0)
    nib.save(img, path)
    assert main(["describe", str(path)]) == 0
    assert "float32" in capsys.readouterr().out


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["questions"][0].update(answers="not a list"), "not a list"),
    (lambda d: d.update(questions=[[[[]]]]), "unexpected JSON structure"),
])
def test_wrong_json_types_exit_2(tmp_path, capsys, change, fragment):
    root = write_qba_sample(tmp_path / "qba")
    member = root / "qa" / QA_MEMBER
    document = json.loads(member.read_text())
    change(document)
    member.write_text(json.dumps(document))
    one_error_line(capsys, main(["describe", str(root)]), str(member), fragment)


def test_bad_boxes_are_reported_and_the_rest_kept(tmp_path):
    root = write_qba_sample(tmp_path / "qba")
    member = root / "qa" / QA_MEMBER
    document = json.loads(member.read_text())
    answer = document["questions"][0]["answers"][0]
    image = next(iter(answer["localization"]))
    answer["localization"][image]["bboxes"] = ["abcd", [1, None, 3, 4], [1, 2, 30, 40]]
    member.write_text(json.dumps(document))
    case = open_case(root)
    assert sum("is not 4 numbers" in p for p in case.problems) == 2
    assert any(b.endswith("/2") for b in case.annotations)


def test_deeply_nested_json_exits_2(tmp_path, capsys):
    root = write_qba_sample(tmp_path / "qba")
    (root / "qa" / QA_MEMBER).write_text("[" * 100_000 + "]" * 100_000)
    one_error_line(capsys, main(["describe", str(root)]), QA_MEMBER)


@pytest.mark.parametrize("mode", ["encrypted", "compression"])
def test_unreadable_zip_members_exit_2(tmp_path, capsys, mode):
    root = write_qba_sample(tmp_path / "qba", zipped=True)
    raw = bytearray((root / "qa.zip").read_bytes())
    with zipfile.ZipFile(root / "qa.zip") as zf:
        info = zf.getinfo(QA_MEMBER)
    local, central = info.header_offset, raw.rfind(b"PK\x01\x02")
    central = raw.find(b"PK\x01\x02")
    if mode == "encrypted":
        for at in (local + 6, central + 8):  # the general-purpose flags: bit 0 = encrypted
            raw[at] |= 1
    else:
        for at in (local + 8, central + 10):  # compression method 99 (AES), not supported
            raw[at: at + 2] = (99).to_bytes(2, "little")
    (root / "qa.zip").write_bytes(bytes(raw))
    one_error_line(capsys, main(["describe", str(root)]), "qa.zip", "cannot read")


@pytest.mark.parametrize("argv, fragment", [
    (["--scheduler", "not a scheduler address"], "--scheduler"),
    (["--workers", "-3"], "must be 1 or more"),
])
def test_bad_job_options_exit_2(sample_root, tmp_path, capsys, argv, fragment):
    code = main(["qc", str(sample_root), "--out", str(tmp_path / "qc.csv"), *argv]) \
        if "--workers" not in argv else None
    if code is None:
        with pytest.raises(SystemExit) as stop:
            main(["qc", str(sample_root), "--out", str(tmp_path / "qc.csv"), *argv])
        code = stop.value.code
    one_error_line(capsys, code, fragment)


def test_an_out_folder_that_cannot_be_written_exits_2(sample_root, tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    one_error_line(capsys, main(["convert", str(sample_root), "--out", str(blocked / "out")]),
                   "--out", "cannot write there")


def test_convert_and_snapshot_carry_on_past_a_bad_case(tmp_path, phantom, capsys):
    root = write_sample(tmp_path / "ct", phantom)
    data = json.loads((root / "dataset.json").read_text())
    for number in (2, 3):
        name = f"train_{number}_a_1"
        record = dict(data["train"][0], name=f"{name}.nii.gz")
        data["train"].append(record)
        target = ctrate_volume_path(root, name)
        target.parent.mkdir(parents=True)
        shutil.copy(ctrate_volume_path(root, CASE), target)
        shutil.copy(mask_file(root), root / "segmentations" / f"{name}.nii.gz")
    (root / "dataset.json").write_text(json.dumps(data))
    broken = ctrate_volume_path(root, "train_2_a_1")
    broken.write_bytes(broken.read_bytes()[:-5000])  # truncated
    code = main(["convert", str(root), "--out", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 2 and "case train_2_a_1:" in captured.err and "truncated" in captured.err
    assert "2 of 3 cases cached" in captured.out and "1 failed" in captured.out
    code = main(["snapshot", str(root), "--out", str(tmp_path / "snap")])
    captured = capsys.readouterr()
    assert code == 2 and "6 snapshots of 2 cases (1 failed)" in captured.out
    gallery = (tmp_path / "snap" / "index.html").read_text()
    assert gallery.count("<figure>") == 6 and "Not rendered" in gallery and "train_2_a_1" in gallery


def test_text_from_data_is_printed_safely(tmp_path, capsys):
    assert printable("a\x1b[31mred\u202e\ud800\tb\nc") == "a\\x1b[31mred\\u202e\\ud800\tb\\x0ac"
    csv_path = write_chexmask_sample(tmp_path / "cxr")
    with csv_path.open(newline="") as f:
        header, row, _ = list(csv.reader(f))
    _write_rows(csv_path, header, [["evil\x1b]0;title\x07\u202eid", *row[1:]]])
    assert main(["cases", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b]0;title\\x07\\u202eid" in out


# -- 6. a bounded cache --------------------------------------------------------------------
def _case_copies(tmp_path, phantom, count):
    roots = []
    for n in range(count):
        roots.append(write_sample(tmp_path / f"s{n}", phantom))
    return roots


def test_the_user_cache_evicts_least_recently_used_never_one_in_use(tmp_path, phantom,
                                                                     monkeypatch):
    monkeypatch.delenv(store.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    roots = _case_copies(tmp_path, phantom, 3)
    store.write_cache(open_case(roots[0]))
    size = sum(e.size for e in cache_folders.entries(store.cache_root()))
    monkeypatch.setenv(cache_folders.MAX_ENV, str(2.5 * size / 2**30))
    held = open_case(roots[0])  # in use, and the oldest
    os.utime(held.images["ct"].meta["cache"] + "/.lock", (1, 1))
    store.write_cache(open_case(roots[1]))
    time.sleep(0.05)
    store.write_cache(open_case(roots[2]))  # over the limit: the LRU one not in use goes
    sources = {e.source for e in cache_folders.entries(store.cache_root())}
    assert str(ct_path(roots[0]).resolve()) in sources  # in use: kept though oldest
    assert str(ct_path(roots[1]).resolve()) not in sources
    assert str(ct_path(roots[2]).resolve()) in sources
    assert "cache" in held.images["ct"].meta and held.images["ct"].data.sum().compute() != 0


def test_cache_list_and_clear(tmp_path, phantom, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(store.CACHE_ENV, str(cache))
    for root in _case_copies(tmp_path, phantom, 2):
        store.write_cache(open_case(root))
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("MB\t") == 2 and "2 caches" in out and str(cache) in out
    assert main(["cache", "clear"]) == 0
    assert "0 caches in use kept" in capsys.readouterr().out
    assert cache_folders.entries(cache) == []


def test_convert_out_folders_are_never_evicted(sample_root, tmp_path, monkeypatch):
    out = tmp_path / "mine"
    assert main(["convert", str(sample_root), "--out", str(out)]) == 0
    assert cache_folders.evict(out, limit=0) == []
    assert len(cache_folders.entries(out)) == 1


# -- 7. no silent loss ----------------------------------------------------------------------
@pytest.mark.parametrize("value", [0.5, 1e10])
def test_float_masks_keep_their_positive_voxels(sample_copy, phantom, value):
    masks = (phantom.masks > 0).astype(np.float32) * np.float32(value)
    nib.save(nib.Nifti1Image(masks, np.eye(4)), mask_file(sample_copy))
    case = open_case(sample_copy)
    for index in range(masks.shape[0]):
        found = case.annotations[f"mask/{index}"].data.compute()
        assert np.count_nonzero(found) == np.count_nonzero(phantom.masks[index])


def test_repeated_dataset_json_names_keep_both_records(sample_copy):
    data = json.loads((sample_copy / "dataset.json").read_text())
    data["val"] = [dict(data["train"][0], findings={"0": "A repeated record."},
                        categories={"0": "2d"}, pixels=None, entity_counts=None)]
    (sample_copy / "dataset.json").write_text(json.dumps(data))
    dataset = open_dataset(sample_copy)
    assert dataset.case_ids() == [CASE, f"{CASE}~2"]
    first, second = (dataset.open_case(i) for i in dataset.case_ids())
    assert len(first.items[0].annotations) == 1 and any("used by another" in p
                                                        for p in first.problems)
    assert second.items[0].text == "A repeated record." and any("repeats the name" in p
                                                                for p in second.problems)


def test_a_duplicated_zip_member_is_reported(tmp_path):
    root = write_qba_sample(tmp_path / "qba", zipped=True)
    with zipfile.ZipFile(root / "qa.zip") as zf:
        text = zf.read(QA_MEMBER)
    with pytest.warns(UserWarning, match="Duplicate name"), \
            zipfile.ZipFile(root / "qa.zip", "a") as zf:
        zf.writestr(QA_MEMBER, text.replace(b"Is there", b"Was there"))
    case = open_case(root)
    assert any("named more than once" in p for p in case.problems)


def test_a_train_record_without_pixels_keeps_its_masks(sample_copy):
    data = json.loads((sample_copy / "dataset.json").read_text())
    del data["train"][0]["pixels"]
    (sample_copy / "dataset.json").write_text(json.dumps(data))
    case = open_case(sample_copy)
    assert case.tags.get("masks") != "withheld (test split)"
    assert all(item.annotations for item in case.items if item.id.startswith("finding/"))
    assert any("no 'pixels'" in p for p in case.problems)


def test_an_xyspacing_of_none_falls_back_to_the_header(tmp_path, capsys):
    root = write_sample(tmp_path / "s")
    old = ctrate_volume_path(root, CASE, fixed=False)
    old.parent.mkdir(parents=True)
    shutil.move(ctrate_volume_path(root, CASE), old)
    table = root / "dataset" / "metadata" / "train_metadata.csv"
    with table.open(newline="") as f:
        header, row = list(csv.reader(f))
    row[header.index("XYSpacing")] = "None"
    _write_rows(table, header, [row])
    assert main(["describe", str(root), "--case", CASE]) == 0
    assert "spacing (2.5, 2.5, 5.0) mm" in capsys.readouterr().out

