"""Agreement and Cohen's kappa, on small examples worked out by hand, and the CLI verb."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from napari_grounding.agreement import agreement, by_dataset, cohen_kappa
from napari_grounding.cli import main
from napari_grounding.review import ReviewLog

A, R, N, U = "accept", "reject", "needs_fix", "unsure"


def test_perfect_agreement_is_kappa_one():
    # p_o = 4/4 = 1; p_e = (2/4)^2 + (1/4)^2 + (1/4)^2 = 6/16 = 3/8; kappa = (1 - 3/8) / (1 - 3/8) = 1
    assert cohen_kappa([(A, A), (R, R), (A, A), (N, N)]) == (1, 1)


def test_agreement_no_better_than_chance_is_kappa_zero():
    # p_o = 2/4 = 1/2 (first and last pair); each reviewer said accept twice and reject twice,
    # so p_e = (2/4)(2/4) + (2/4)(2/4) = 1/2; kappa = (1/2 - 1/2) / (1 - 1/2) = 0
    assert cohen_kappa([(A, A), (A, R), (R, A), (R, R)]) == (Fraction(1, 2), 0)


def test_asymmetric_example():
    pairs = [(A, A)] * 5 + [(A, R), (R, R), (R, R), (R, A), (R, U)]
    # p_o = (5 + 2) / 10 = 7/10
    # reviewer A: accept 6, reject 4; reviewer B: accept 6, reject 3, unsure 1
    # p_e = (6/10)(6/10) + (4/10)(3/10) + (0/10)(1/10) = 36/100 + 12/100 = 12/25
    # kappa = (7/10 - 12/25) / (1 - 12/25) = (35/50 - 24/50) / (13/25) = (11/50)(25/13) = 11/26
    assert cohen_kappa(pairs) == (Fraction(7, 10), Fraction(11, 26))


def test_systematic_disagreement_is_negative():
    # p_o = 0; p_e = (1/2)(1/2) + (1/2)(1/2) = 1/2; kappa = (0 - 1/2) / (1/2) = -1
    assert cohen_kappa([(A, R), (R, A)]) == (0, -1)


def test_one_shared_verdict_everywhere_is_defined_as_one():
    # p_e = (3/3)(3/3) = 1 makes kappa 0/0; both said "accept" to everything: defined as 1
    assert cohen_kappa([(A, A)] * 3) == (1, 1)
    with pytest.raises(ValueError):
        cohen_kappa([])


def test_only_shared_keys_count_and_datasets_split():
    a = {"ct-rate/c1/f/0": A, "ct-rate/c1/f/1": R, "ct-rate/c2/f/0": A, "ct-rate/c2/f/1": N,
         "chexmask/i1/m/0": A, "chexmask/i1/m/1": A, "chexmask/i2/m/0": R, "chexmask/i2/m/1": R,
         "ct-rate/c3/f/0": U}  # only A decided this one: not counted
    b = {"ct-rate/c1/f/0": A, "ct-rate/c1/f/1": R, "ct-rate/c2/f/0": A, "ct-rate/c2/f/1": N,
         "chexmask/i1/m/0": A, "chexmask/i1/m/1": R, "chexmask/i2/m/0": A, "chexmask/i2/m/1": R,
         "rexgradient/s1/x/0": A}
    # ct-rate: the perfect example above (kappa 1); chexmask: the chance example (kappa 0).
    # Overall, 8 keys: p_o = (4 + 2) / 8 = 3/4; each reviewer: accept 4, reject 3, needs_fix 1,
    # p_e = (16 + 9 + 1) / 64 = 13/32; kappa = (24/32 - 13/32) / (19/32) = 11/19
    overall = agreement(a, b)
    assert (overall.items, overall.agreement) == (8, 0.75)
    assert overall.kappa == pytest.approx(11 / 19, abs=1e-12)
    split = by_dataset(a, b)
    assert list(split) == ["chexmask", "ct-rate"]
    assert split["ct-rate"].as_dict() == {"items": 4, "agreement": 1.0, "kappa": 1.0}
    assert split["chexmask"].as_dict() == {"items": 4, "agreement": 0.5, "kappa": 0.0}
    assert agreement({"x/1/a": A}, {"x/1/b": A}).as_dict() == {"items": 0, "agreement": None,
                                                               "kappa": None}


def write_log(path, reviewer, decisions):
    with ReviewLog(path, reviewer) as log:
        for key, verdict in decisions:
            log.record(key, verdict)
    return str(path)


def test_agreement_verb_json_uses_latest_decisions(tmp_path, capsys):
    ada = write_log(tmp_path / "ada.jsonl", "ada", [
        ("ct-rate/c1/f/0", R), ("ct-rate/c1/f/0", A),  # changed her mind: accept counts
        ("ct-rate/c1/f/1", R), ("chexmask/i1/m/0", A), ("chexmask/i1/m/1", R)])
    bob = write_log(tmp_path / "bob.jsonl", "bob", [
        ("ct-rate/c1/f/0", A), ("ct-rate/c1/f/1", R), ("chexmask/i1/m/0", R),
        ("chexmask/i1/m/1", A), ("ct-rate/c9/f/0", U)])
    assert main(["agreement", ada, bob, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # 4 shared keys, 2 agree; each said accept twice, reject twice: p_e = 1/2, kappa 0
    assert result == {"items": 4, "agreement": 0.5, "kappa": 0.0, "by_dataset": {
        "chexmask": {"items": 2, "agreement": 0.0, "kappa": -1.0},
        "ct-rate": {"items": 2, "agreement": 1.0, "kappa": 1.0}}}


def test_agreement_verb_text(tmp_path, capsys):
    ada = write_log(tmp_path / "ada.jsonl", "ada", [("ct-rate/c1/f/0", A), ("ct-rate/c1/f/1", R)])
    bob = write_log(tmp_path / "bob.jsonl", "bob", [("ct-rate/c1/f/0", A), ("ct-rate/c1/f/1", A),
                                                    ("ct-rate/c1/f/2", A)])
    assert main(["agreement", ada, bob]) == 0
    # p_o = 1/2; ada accept 1 reject 1, bob accept 2: p_e = (1/2)(2/2) = 1/2: kappa 0
    assert capsys.readouterr().out.splitlines() == [
        f"shared keys: 2 (only in {ada}: 0, only in {bob}: 1)",
        "agreement: 0.500  kappa: 0.000",
        "  ct-rate: 2 keys, agreement 0.500, kappa 0.000"]


def test_no_shared_keys(tmp_path, capsys):
    ada = write_log(tmp_path / "ada.jsonl", "ada", [("ct-rate/c1/f/0", A)])
    bob = write_log(tmp_path / "bob.jsonl", "bob", [("ct-rate/c2/f/0", A)])
    assert main(["agreement", ada, bob]) == 2
    assert capsys.readouterr().err == (f"napari-grounding: error: no key decided in both logs "
                                       f"(1 keys in {ada}, 1 in {bob})\n")
    assert main(["agreement", ada, bob, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"items": 0, "agreement": None, "kappa": None,
                                                   "by_dataset": {}}


def test_bad_log_paths_are_one_line_errors(tmp_path, capsys):
    ada = write_log(tmp_path / "ada.jsonl", "ada", [("ct-rate/c1/f/0", A)])
    assert main(["agreement", ada, str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err == (f"napari-grounding: error: {tmp_path / 'missing.jsonl'}: "
                                       "no such review log\n")
    (tmp_path / "folder.jsonl").mkdir()
    assert main(["agreement", str(tmp_path / "folder.jsonl"), ada, "--json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
