"""The review log: durable decisions, latest wins, torn lines, resume, export, stable keys."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import napari_grounding
from napari_grounding import open_case
from napari_grounding.cli import main
from napari_grounding.model import GroundingError
from napari_grounding.review import (
    EXPORT_COLUMNS,
    Decision,
    ReviewLog,
    ReviewLogWarning,
    case_keys,
    default_log_path,
    read_log,
    remember_reviewer,
    remembered_reviewer,
    settings_path,
    slug,
)

PACKAGE = str(Path(napari_grounding.__file__).parent)
KEYS = ["ct-rate/c1/finding/0", "ct-rate/c1/mask/0", "ct-rate/c1/finding/1", "ct-rate/c2/finding/0"]


@pytest.fixture(autouse=True)
def private_user_dirs(tmp_path, monkeypatch):
    """Settings and fallback logs go to this test's folder, never the user's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_record_writes_one_json_line_per_decision(tmp_path):
    path = tmp_path / "sub" / "review.jsonl"  # the folder is created
    with ReviewLog(path, " Ada ") as log:
        saved = log.record(KEYS[0], "reject", 'edge, "leaks"\ninto the heart')
    [line] = lines_of(path)
    assert line == {"key": KEYS[0], "verdict": "reject", "comment": 'edge, "leaks"\ninto the heart',
                    "reviewer": "Ada", "time": saved.time}
    assert saved.time.endswith("Z") and saved.time[:4].isdigit() and "T" in saved.time


def test_bad_verdict_or_reviewer_is_refused(tmp_path):
    log = ReviewLog(tmp_path / "r.jsonl", "ada")
    with pytest.raises(GroundingError, match="unknown verdict 'maybe'"):
        log.record(KEYS[0], "maybe")
    with pytest.raises(GroundingError, match="reviewer name"):
        ReviewLog(tmp_path / "r.jsonl", "  ")
    assert not (tmp_path / "r.jsonl").exists()


def test_latest_line_per_key_wins_after_reopening(tmp_path):
    path = tmp_path / "r.jsonl"
    with ReviewLog(path, "ada") as log:
        log.record(KEYS[0], "accept")
        log.record(KEYS[1], "unsure", "check the apex")
        log.record(KEYS[0], "needs_fix", "second look")
        assert log.verdict(KEYS[0]) == "needs_fix"
    reopened = ReviewLog(path, "ada")
    assert {k: (d.verdict, d.comment) for k, d in reopened.decisions().items()} == {
        KEYS[0]: ("needs_fix", "second look"), KEYS[1]: ("unsure", "check the apex")}
    assert len(lines_of(path)) == 3  # append-only: the first verdict is still on disk


def test_resume_at_first_unreviewed_after_reopening(tmp_path):
    path = tmp_path / "r.jsonl"
    with ReviewLog(path, "ada") as log:
        assert log.first_unreviewed(KEYS) == KEYS[0]
        log.record(KEYS[0], "accept")
        log.record(KEYS[1], "accept")
        log.record(KEYS[3], "reject")
    log = ReviewLog(path, "ada")
    assert log.first_unreviewed(KEYS) == KEYS[2]
    assert log.first_unreviewed(KEYS, after=KEYS[3]) == KEYS[2]  # wraps around
    assert tuple(log.progress(KEYS)) == (3, 4)
    assert tuple(log.progress(KEYS[:2])) == (2, 2)
    log.record(KEYS[2], "unsure")
    assert log.first_unreviewed(KEYS) is None


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "r.jsonl"
    with ReviewLog(path, "ada") as log:
        log.record(KEYS[0], "accept")
        log.record(KEYS[1], "reject")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"key": "ct-rate/c1/finding/1", "verdict": "acc')  # killed mid-write
    with pytest.warns(ReviewLogWarning, match="last line, cut short"):
        log = ReviewLog(path, "ada")
    assert sorted(log.decisions()) == sorted(KEYS[:2])
    assert len(log.problems) == 1 and str(path) in log.problems[0]


def test_appending_after_a_torn_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "r.jsonl"
    with ReviewLog(path, "ada") as log:
        log.record(KEYS[0], "accept")
    path.write_bytes(path.read_bytes() + b'{"key": "ct-ra')
    with pytest.warns(ReviewLogWarning):
        log = ReviewLog(path, "ada")
    log.record(KEYS[1], "needs_fix", "after the crash")
    log.close()
    raw = path.read_bytes().split(b"\n")
    assert raw[1] == b'{"key": "ct-ra' and json.loads(raw[2])["key"] == KEYS[1] and raw[3] == b""
    decisions, problems = read_log(path)
    assert [d.key for d in decisions] == KEYS[:2]
    assert len(problems) == 1 and problems[0].startswith(f"{path}: line 2: skipped (not JSON")


def test_damaged_middle_lines_are_skipped_by_line_number(tmp_path):
    path = tmp_path / "r.jsonl"
    good = [json.dumps({"key": k, "verdict": "accept", "comment": "", "reviewer": "ada",
                        "time": "2026-01-02T03:04:05.000Z"}) for k in KEYS[:3]]
    bad = ['{"key": "x", "verd', "[1, 2]", json.dumps({"key": "y", "verdict": "maybe",
                                                        "reviewer": "ada", "time": "2026"}),
           json.dumps({"key": "z", "verdict": "accept", "reviewer": "ada", "time": "yesterday"})]
    path.write_bytes("\n".join([good[0], bad[0], bad[1], good[1], "", bad[2], bad[3], good[2]])
                     .encode() + b"\n\xff\xfe\n")
    decisions, problems = read_log(path)
    assert [d.key for d in decisions] == KEYS[:3]
    assert [p.split(": ")[1] for p in problems] == ["line 2", "line 3", "line 6", "line 7", "line 9"]
    assert "not a JSON object" in problems[1] and "unknown verdict 'maybe'" in problems[2]
    assert "not ISO 8601" in problems[3] and "not JSON" in problems[4]


def test_unreadable_log_is_one_line_error(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(GroundingError, match="cannot read review log"):
        ReviewLog(tmp_path / "dir.jsonl", "ada")
    assert ReviewLog(tmp_path / "new.jsonl", "ada").decisions() == {}
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "gone" / "r.jsonl")  # reads as empty
    log = ReviewLog(tmp_path / "link.jsonl", "ada")
    with pytest.raises(GroundingError, match="cannot write review log"):
        log.record(KEYS[0], "accept")
    assert log.decisions() == {}  # not shown as saved


def test_settings_that_cannot_be_written_are_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "config-file").write_text("in the way")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-file"))
    with pytest.raises(GroundingError, match="cannot save settings"):
        remember_reviewer("ada")
    assert remembered_reviewer() is None


# The child skips the package's __init__ (readers, pandas, dask: 2 s a start) and imports
# review.py alone, so 25 rounds fit in a few seconds.
CHILD = """
import sys, types
package = types.ModuleType("napari_grounding")
package.__path__ = [sys.argv[3]]
sys.modules["napari_grounding"] = package
from napari_grounding.review import ReviewLog
log = ReviewLog(sys.argv[1], "crash", warn=False)
round_, i = sys.argv[2], 0
while True:
    key = f"crash/{round_}/{i}"
    log.record(key, ("accept", "reject", "needs_fix", "unsure")[i % 4], "x" * (i * 97 % 3000))
    print(key, flush=True)
    i += 1
"""


def test_decisions_reported_saved_survive_sigkill(tmp_path):
    """Kill a recording process at random moments, many times: nothing reported is lost."""
    path = tmp_path / "crash.jsonl"
    rng = random.Random(10)
    reported: list[str] = []
    deadline = time.monotonic() + 20
    rounds = 0
    while rounds < 25 and time.monotonic() < deadline:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(rounds), PACKAGE],
                                 stdout=subprocess.PIPE)
        first = child.stdout.readline()  # it has started recording; now kill it at random
        time.sleep(rng.uniform(0, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()
        child.wait()
        assert child.returncode == -signal.SIGKILL
        out = first + rest
        # only whole lines were reported; a cut-off print was not a report
        reported += out.decode().split("\n")[:-1]
        decisions, problems = read_log(path)
        saved = {d.key: d for d in decisions}
        missing = [k for k in reported if k not in saved]
        assert not missing, f"round {rounds}: reported saved but not in the log: {missing[:3]}"
        assert all(("line" in p or "last line" in p) for p in problems)
        rounds += 1
    assert rounds >= 5 and len(reported) >= rounds
    log = ReviewLog(path, "crash", warn=False)  # still loads, and appends on a fresh line
    log.record("crash/after", "accept")
    log.close()
    assert read_log(path)[0][-1].key == "crash/after"


def test_export_round_trips_comments_and_keeps_latest_per_reviewer(tmp_path):
    ada, bob = tmp_path / "ada.jsonl", tmp_path / "bob.jsonl"
    tricky = 'says "no", then\nchanges, her mind; ok'
    with ReviewLog(ada, "ada") as log:
        log.record(KEYS[0], "accept", "first")
        log.record(KEYS[1], "reject", tricky)
        log.record(KEYS[0], "needs_fix", "second")
    with ReviewLog(bob, "bob") as log:
        log.record(KEYS[0], "unsure")
    out = tmp_path / "out" / "review.csv"
    assert main(["review-export", str(ada), str(bob), "--out", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["key"], r["reviewer"], r["verdict"], r["comment"]) for r in rows] == [
        (KEYS[0], "ada", "needs_fix", "second"), (KEYS[0], "bob", "unsure", ""),
        (KEYS[1], "ada", "reject", tricky)]
    times = {d.key: d.time for d in ReviewLog(ada, "ada").decisions().values()}
    assert rows[0]["time"] == times[KEYS[0]]


def test_export_between_logs_the_later_time_wins(tmp_path):
    def line(verdict, when):
        return json.dumps({"key": KEYS[0], "verdict": verdict, "comment": "", "reviewer": "ada",
                           "time": when}) + "\n"
    laptop, desktop = tmp_path / "laptop.jsonl", tmp_path / "desktop.jsonl"
    laptop.write_text(line("reject", "2026-03-01T10:00:00Z"), encoding="utf-8")
    desktop.write_text(line("accept", "2026-03-01T09:00:00+00:00"), encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["review-export", str(laptop), str(desktop), "--out", str(out)]) == 0
    [row] = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert row["verdict"] == "reject"


def test_export_bad_log_path_is_one_line_error(tmp_path, capsys):
    assert main(["review-export", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err == f"napari-grounding: error: {tmp_path / 'nope.jsonl'}: no such review log\n"
    assert not (tmp_path / "o.csv").exists()


def test_export_reports_skipped_lines_as_warnings(tmp_path, capsys):
    log = tmp_path / "r.jsonl"
    log.write_bytes(b'{"key": "a/b/c", "verdict": "accept", "comment": "", "reviewer": "x", '
                    b'"time": "2026-01-01T00:00:00Z"}\n{"key": "a/b/d", "ver')
    assert main(["review-export", str(log), "--out", str(tmp_path / "o.csv")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("1 decisions ->")
    assert err.startswith("napari-grounding: warning: ") and "last line, cut short" in err


def test_default_log_path_beside_the_data_or_in_the_user_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = default_log_path(data, "ct-rate", "Dr. Ada Lovelace/../x")
    assert path == data / ".napari-grounding" / "review-ct-rate-dr.-ada-lovelace-..-x.jsonl"
    (data / "dataset.json").write_text("{}")
    assert default_log_path(data / "dataset.json", "ct-rate", "ada").parent == data / ".napari-grounding"
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / ".napari-grounding").write_text("a file in the way")
    fallback = tmp_path / "xdg-data" / "napari-grounding" / "reviews" / "review-chexmask-ada.jsonl"
    assert default_log_path(blocked, "chexmask", "ada") == fallback
    assert default_log_path(tmp_path / "gone", "chexmask", "ada") == fallback


def test_slugs_are_safe_file_names():
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("Zoë  Smith") == "zo-smith"
    assert slug("...") == "unnamed" and slug("") == "unnamed"
    assert len(slug("a" * 500)) == 64


def test_reviewer_name_is_remembered_atomically(tmp_path):
    assert remembered_reviewer() is None
    remember_reviewer("  Ada ")
    assert remembered_reviewer() == "Ada"
    assert settings_path().is_relative_to(tmp_path / "xdg-config")
    assert [p.name for p in settings_path().parent.iterdir()] == ["settings.json"]  # no tmp left
    settings = json.loads(settings_path().read_text())
    settings["other"] = 1
    settings_path().write_text(json.dumps(settings))
    remember_reviewer("Bob")
    assert json.loads(settings_path().read_text()) == {"reviewer": "Bob", "other": 1}
    settings_path().write_text("{torn")
    assert remembered_reviewer() is None


def test_case_keys_do_not_depend_on_the_root_opened(tmp_path):
    assert main(["sample", str(tmp_path)]) == 0
    root = tmp_path / "ct-phantom"
    from_rexgroundingct = open_case(root)
    from_ctrate = open_case(root / "dataset")
    assert (from_rexgroundingct.dataset, from_ctrate.dataset) == ("rexgroundingct", "ct-rate")
    assert from_rexgroundingct.key == from_ctrate.key == "ct-rate/train_1_a_1"
    both = set(case_keys(from_rexgroundingct))
    report_keys = case_keys(from_ctrate)
    assert report_keys and set(report_keys) <= both  # the report's items join
    assert "ct-rate/train_1_a_1/finding/0" in both and "ct-rate/train_1_a_1/mask/0" in both
    assert all(str(tmp_path) not in k and k.startswith("ct-rate/train_1_a_1/") for k in both)


def test_case_keys_list_items_then_their_annotations(tmp_path, sample_root):
    keys = case_keys(open_case(sample_root))
    assert keys[:4] == ["ct-rate/train_1_a_1/finding/0", "ct-rate/train_1_a_1/mask/0",
                        "ct-rate/train_1_a_1/finding/1", "ct-rate/train_1_a_1/mask/1"]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("kind", ["ct", "chexmask", "rexgradient", "qba"])
def test_a_review_log_goes_beside_the_dataset_opened(tmp_path, kind):
    """The default log is in the folder the reviewer opened (or the opened file's), one per
    dataset: never deep inside one study's image folder, which would split the reviews."""
    from napari_grounding.readers import open_dataset
    from napari_grounding.review import data_root, default_log_path
    from napari_grounding.sample import write_sample
    from napari_grounding.sample_cxr import write_chexmask_sample, write_rexgradient_sample
    from napari_grounding.sample_qba import write_qba_sample

    writers = {"ct": write_sample, "chexmask": write_chexmask_sample,
               "rexgradient": write_rexgradient_sample, "qba": write_qba_sample}
    opened = writers[kind](tmp_path / kind)
    dataset = open_dataset(opened)
    case = dataset.open_case(dataset.case_ids()[0])
    folder = opened if opened.is_dir() else opened.parent
    log = default_log_path(data_root(dataset, case), case.key.split("/")[0], "ada")
    assert log.parent == folder / ".napari-grounding"


def test_decisions_left_beside_a_study_s_images_join_the_dataset_s_log(tmp_path):
    """A ReXGradient study's log used to be kept beside its first image: opening the study
    carries the reviewer's decisions from there into the dataset's log (newer wins, by time),
    once; the earlier log is only read."""
    from napari_grounding.readers import open_dataset
    from napari_grounding.review import data_root, log_name
    from napari_grounding.sample_cxr import write_rexgradient_sample
    from napari_grounding.session import Session

    opened = write_rexgradient_sample(tmp_path / "rexgradient")
    dataset = open_dataset(opened)
    case = dataset.open_case(dataset.case_ids()[0])
    keys = [case.item_key(item) for item in case.walk()][:3]
    first_image = Path(next(i.source for i in case.images.values() if i.source))
    earlier = first_image.parent / ".napari-grounding" / log_name("rexgradient", "ada")
    earlier.parent.mkdir()
    earlier.write_bytes(b"".join(d.to_line() for d in (
        Decision(keys[0], "accept", "", "ada", "2026-01-01T10:00:00.000Z"),
        Decision(keys[1], "reject", "too wide", "ada", "2026-01-01T10:00:01.000Z"),
        Decision(keys[2], "accept", "", "bob", "2026-01-01T10:00:02.000Z"),  # another reviewer
    )))
    before = earlier.read_bytes()
    log = ReviewLog(default_log_path(data_root(dataset, case), "rexgradient", "ada"), "ada")
    log.record(keys[1], "accept")  # decided again since, here: this one stands
    session = Session()
    session.set_dataset(dataset)
    session.set_case(case)
    session.set_review(log)
    changed = []
    session.review_changed.connect(changed.append)

    assert session.carry_earlier_decisions() == (1, earlier)
    assert changed == [log]
    assert log.verdict(keys[0]) == "accept" and log.verdict(keys[1]) == "accept"
    assert keys[2] not in log.decisions()
    assert session.carry_earlier_decisions() == (0, earlier)
    log.close()
    again = ReviewLog(log.path, "ada")  # on disk, with the earlier decision's own time
    assert again.decisions()[keys[0]].time == "2026-01-01T10:00:00.000Z"
    assert again.verdict(keys[1]) == "accept"
    assert earlier.read_bytes() == before
