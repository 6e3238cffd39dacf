"""The ``napari-grounding`` command: view, cases, describe and sample.

Bad input exits with code 2 and one line on stderr; problems that still let a case open
(a missing CT, a mask of the wrong shape) are printed as warnings and the command goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model import Case, GroundingError, TextItem
from .readers import first_case_id, open_dataset, summaries

PROG = "napari-grounding"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    def verb(name: str, help_text: str, with_case: bool = True) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help_text, description=help_text)
        p.add_argument("path", help="dataset root, CSV or image file")
        p.add_argument("--images", metavar="DIR", help="folder holding the dataset's images")
        if with_case:
            p.add_argument("--case", metavar="NAME", help="case id (default: the first case)")
            p.add_argument("--compare", metavar="CSV",
                           help="a second annotation set of the same form (CheXmask)")
            _prediction_options(p)
        return p

    view = verb("view", "open napari with the plugin on a case")
    view.add_argument("--item", metavar="ID", help="text item to select, e.g. finding/0")
    view.add_argument("--scores", metavar="CSV", help="an evaluate CSV: the case queue can "
                      "list the worst scored cases first")
    view.add_argument("--other-log", metavar="FILE", help="another reviewer's log: the cases "
                      "where you disagree are a filter of the case queue")
    view.add_argument("--qc", metavar="CSV", help="a qc CSV: its flagged cases are a filter of "
                      "the case queue")
    view.add_argument("--log", metavar="FILE", help="review log to read and append to "
                      "(default: beside the data, see README 'Reviewing')")
    verb("cases", "list the cases of a dataset, one per line", with_case=False)
    describe = verb("describe", "print a case: its images, text items and annotations")
    describe.add_argument("--json", action="store_true", help="print JSON (the documented schema)")
    for name, help_text, out_help in (
            ("convert", "write every case's CT and masks into the OME-Zarr cache", "cache folder"),
            ("qc", "check every case and write one CSV row per defect", "CSV file to write"),
            ("snapshot", "one PNG per annotated item and an index.html gallery", "folder")):
        job = verb(name, help_text, with_case=False)
        job.add_argument("--out", required=True, metavar="PATH", help=out_help)
        job.add_argument("--scheduler", metavar="ADDRESS",
                         help="a dask.distributed scheduler (default: local threads)")
        job.add_argument("--workers", type=int, metavar="N", help="local threads")
    evaluate = verb("evaluate", "score a model's predictions per item into a CSV", with_case=False)
    _prediction_options(evaluate, required=True)
    evaluate.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    evaluate.add_argument("--scheduler", metavar="ADDRESS",
                          help="a dask.distributed scheduler (default: local threads)")
    evaluate.add_argument("--workers", type=int, metavar="N", help="local workers")
    sample = verbs.add_parser("sample", help="write the generated sample cases into a folder: "
                              "ct-phantom/, cxr-phantom/ (CheXmask), rexgradient-phantom/")
    sample.add_argument("path", help="folder to write")
    _review_verbs(verbs)
    return parser


def _prediction_options(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--pred", required=required, metavar="PRED", help="a model's predictions: a folder "
                   "of <case>.nii.gz, a CheXmask-form CSV or a boxes JSON (README 'Predictions')")
    p.add_argument("--pred-name", default="prediction", metavar="NAME",
                   help="the predictions' annotation set name (default: prediction)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="prediction values above T are foreground (default: above 0)")


def _review_verbs(verbs: Any) -> None:
    export = verbs.add_parser("review-export", help="write review logs as one CSV row per key and "
                              "reviewer (the latest decision)", description="write review logs as CSV")
    export.add_argument("logs", nargs="+", metavar="LOG", help="review log (JSON Lines)")
    export.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    agree = verbs.add_parser("agreement", help="agreement and Cohen's kappa of two reviewers",
                             description="agreement and Cohen's kappa of two reviewers")
    agree.add_argument("log_a", metavar="LOG_A", help="the first reviewer's log")
    agree.add_argument("log_b", metavar="LOG_B", help="the second reviewer's log")
    agree.add_argument("--json", action="store_true", help="print JSON")


def _warn(case: Case) -> None:
    for problem in case.problems:
        print(f"{PROG}: warning: {problem}", file=sys.stderr)


def _cases(args: argparse.Namespace) -> None:
    for line in summaries(open_dataset(args.path, args.images)):
        print(line)


def _text_lines(item: TextItem, depth: int = 0) -> list[str]:
    badges = " ".join(f"[{v}]" for k, v in item.tags.items() if k in ("category", "section"))
    links = f"  -> {', '.join(item.annotations)}" if item.annotations else ""
    lines = [f"{'  ' * depth}{item.id}: {item.title or item.text} {badges}{links}".rstrip()]
    for child in item.children:
        lines += _text_lines(child, depth + 1)
    return lines


def _describe(args: argparse.Namespace) -> None:
    from .describe import describe_case

    _, case = _open_named_case(args, require_name=True)
    _warn(case)
    scores = _scores(case, args)
    if args.json:
        described = describe_case(case)
        described["sets"] = case.sets()
        if scores is not None:
            described["scores"] = {k: s.as_dict() for k, s in scores.items()}
        json.dump(described, sys.stdout, indent=2)
        print()
        return
    print(f"{case.key}")
    for image in case.images.values():
        spacing = (f"spacing {tuple(round(s, 3) for s in image.source_spacing)} mm"
                   if image.kind == "ct" else "pixel units")  # PNG/JPEG carry no pixel size
        print(f"  image {image.id}: {image.orientation.source_shape} {image.data.dtype} {spacing}")
    for item in case.items:
        print("\n".join("  " + line for line in _text_lines(item)))
    print(f"  annotation sets: {', '.join(case.sets()) or 'none'}")
    for item_id, score in (scores or {}).items():
        print(f"  {item_id}: {_score_text(score)}")


def _scores(case: Case, args: argparse.Namespace) -> Any:
    """Per-item scores of the predictions (or the --compare set) against the case's own set."""
    if not (args.pred or case.added_sets):
        return None
    from .scores import item_scores

    return item_scores(case, case.reference_set, args.pred_name if args.pred else case.added_sets[-1])


def _score_text(score: Any) -> str:
    if score.missing:
        return "no prediction"
    parts = [f"Dice {score.dice:.3f}, IoU {score.iou:.3f}"] if score.dice is not None else []
    parts.append(f"instances {score.matched}/{score.gt_instances} matched, {score.pred_instances} "
                 f"predicted, F1 {score.instance_f1:.3f}")
    return ", ".join(parts)


def _open_named_case(args: argparse.Namespace, require_name: bool) -> tuple[Any, Case]:
    """The dataset at PATH and its case named by --case (or its only, or first, case)."""
    dataset = open_dataset(args.path, args.images, args.compare)
    if args.pred:
        from .predictions import WithPredictions, check_predictions

        check_predictions(args.pred)
        dataset = WithPredictions(dataset, args.pred, args.pred_name, args.threshold)
    name = args.case
    if name is None:
        name = first_case_id(dataset, args.path)
        if require_name and len(ids := dataset.case_ids()) > 1:
            raise GroundingError(f"{args.path} holds {len(ids)} cases; name one with --case "
                                 f"(list them with: {PROG} cases {args.path})")
    return dataset, dataset.open_case(name)


def _view(args: argparse.Namespace) -> None:
    dataset, case = _open_named_case(args, require_name=False)
    if args.item:
        case.item(args.item)  # unknown item: fail before a window opens
    if args.qc:
        from .case_queue import read_qc_flags

        read_qc_flags(args.qc)  # likewise an unreadable qc CSV
    if args.scores:
        from .case_queue import read_case_scores

        read_case_scores(args.scores)
    if args.other_log and not Path(args.other_log).is_file():
        raise GroundingError(f"--other-log {args.other_log}: no such review log")
    _warn(case)
    import napari

    from .widgets.launch import show_case

    viewer = napari.Viewer(title=f"napari-grounding: {case.dataset}/{case.id}")  # as opened
    show_case(viewer, case, item=args.item, dataset=dataset, log=args.log,
              resume=args.case is None, qc=args.qc, other_log=args.other_log,
              scores=args.scores)
    napari.run()


def _sample(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .sample import write_sample
    from .sample_cxr import write_chexmask_sample, write_rexgradient_sample
    from .sample_qba import write_qba_sample

    root = Path(args.path)
    print(write_sample(root / "ct-phantom"))
    print(write_chexmask_sample(root / "cxr-phantom"), f"(images: {root / 'cxr-phantom'}/mimic-cxr-jpg)")
    print(write_rexgradient_sample(root / "rexgradient-phantom"))
    print(write_qba_sample(root / "qba-phantom"), f"(images: {root / 'qba-phantom'}/mimic-cxr-jpg)")


def _job(args: argparse.Namespace) -> None:
    from pathlib import Path

    from . import batch

    dataset = open_dataset(args.path, args.images)
    ids = dataset.case_ids()
    images = str(args.images) if args.images else None
    out = Path(args.out)
    options = {"scheduler": args.scheduler, "workers": args.workers}
    if args.verb == "qc":
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = batch.run(batch.qc_one, args.path, images, ids, **options)
        print(f"{batch.write_qc(rows, out)} findings in {len(ids)} cases -> {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    if args.verb == "convert":
        results = batch.run(batch.convert_case, args.path, images, ids, str(out), **options)
        print(f"{sum(not r['result'].startswith('skipped') for r in results)} of {len(ids)} "
              f"cases cached in {out}")
        return
    entries = batch.run(batch.snapshot_case, args.path, images, ids, str(out), **options)
    print(f"{batch.write_gallery(entries, out)} snapshots -> {out / 'index.html'}")


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .evaluate import evaluate, summary_line

    summary, results = evaluate(args.path, args.pred, Path(args.out), args.images, args.pred_name,
                                args.threshold, args.scheduler, args.workers)
    for result in results:
        for problem in result["problems"]:
            print(f"{PROG}: warning: {result['case']}: {problem}", file=sys.stderr)
    print(f"{summary_line(summary, len(results))} -> {args.out}")


def _read_logs(paths: Sequence[str]) -> list[list]:
    """Each log's decisions in file order; skipped lines are warnings, a missing log an error."""
    from pathlib import Path

    from .review import read_log

    logs = []
    for path in paths:
        if not Path(path).is_file():
            raise GroundingError(f"{path}: no such review log")
        decisions, problems = read_log(path)
        for problem in problems:
            print(f"{PROG}: warning: {problem}", file=sys.stderr)
        logs.append(decisions)
    return logs


def _review_export(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .review import latest_per_reviewer, write_export

    rows = latest_per_reviewer(_read_logs(args.logs))
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        count = write_export(rows, out)
    except OSError as err:
        raise GroundingError(f"{out}: cannot write ({err.strerror or err})") from None
    print(f"{count} decisions -> {out}")


def _agreement(args: argparse.Namespace) -> None:
    from .agreement import agreement, by_dataset
    from .review import latest

    log_a, log_b = (latest(d) for d in _read_logs([args.log_a, args.log_b]))
    a = {k: d.verdict for k, d in log_a.items()}
    b = {k: d.verdict for k, d in log_b.items()}
    overall, split = agreement(a, b), by_dataset(a, b)
    if args.json:  # no shared key: items 0, agreement and kappa null
        print(json.dumps({**overall.as_dict(), "by_dataset": {d: s.as_dict() for d, s in split.items()}},
                         indent=2))
        return
    if not overall.items:
        raise GroundingError(f"no key decided in both logs ({len(a)} keys in {args.log_a}, "
                             f"{len(b)} in {args.log_b})")
    print(f"shared keys: {overall.items} (only in {args.log_a}: {len(a.keys() - b.keys())}, "
          f"only in {args.log_b}: {len(b.keys() - a.keys())})")
    print(f"agreement: {overall.agreement:.3f}  kappa: {overall.kappa:.3f}")
    for name, s in split.items():
        print(f"  {name}: {s.items} keys, agreement {s.agreement:.3f}, kappa {s.kappa:.3f}")


VERBS = {"view": _view, "cases": _cases, "describe": _describe, "sample": _sample,
         "convert": _job, "qc": _job, "snapshot": _job,
         "evaluate": _evaluate, "review-export": _review_export, "agreement": _agreement}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        VERBS[args.verb](args)
    except GroundingError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except Exception as err:
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(err).__name__}: {err} (rerun with --debug)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
