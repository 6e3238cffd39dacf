"""The ``napari-grounding`` command: view, cases, describe, sample, jobs and the cache.

Bad input exits with code 2 and one line on stderr; problems that still let a case open
(a missing CT, a mask of the wrong shape) are printed as warnings and the command goes on.
Text from the data is printed with control characters, bidi overrides and lone surrogates
escaped, so a file cannot rewrite the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model import Case, GroundingError, TextItem

PROG = "napari-grounding"
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` with what a terminal would act on (escapes, newlines, bidi overrides) and what
    it cannot encode (lone surrogates) written as visible escapes; tabs are kept."""
    out = []
    for ch in str(text):
        code = ord(ch)
        if ch != "\t" and (code < 32 or 127 <= code < 160 or ch in _BIDI
                           or 0xD800 <= code <= 0xDFFF):
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _say(line: str, err: bool = False) -> None:
    print(printable(line), file=sys.stderr if err else sys.stdout)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


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
        _worker_options(job)
    evaluate = verb("evaluate", "score a model's predictions per item into a CSV", with_case=False)
    _prediction_options(evaluate, required=True)
    evaluate.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    _worker_options(evaluate)
    cache = verbs.add_parser("cache", help="show or free the OME-Zarr cache folder",
                             description="show or free the OME-Zarr cache folder")
    cache.add_argument("action", choices=("list", "clear"))
    cache.add_argument("--dir", metavar="DIR", help="cache folder (default: the user cache, "
                       "or $NAPARI_GROUNDING_CACHE)")
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
        _say(f"{PROG}: warning: {problem}", err=True)


def _cases(args: argparse.Namespace) -> None:
    from .readers import open_dataset, summaries

    for line in summaries(open_dataset(args.path, args.images)):
        _say(line)


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
    _say(f"{case.key}")
    for image in case.images.values():
        spacing = (f"spacing {tuple(round(s, 3) for s in image.source_spacing)} mm"
                   if image.kind == "ct" else "pixel units")  # PNG/JPEG carry no pixel size
        _say(f"  image {image.id}: {image.orientation.source_shape} {image.dtype} {spacing}")
    for item in case.items:
        for line in _text_lines(item):
            _say("  " + line)
    _say(f"  annotation sets: {', '.join(case.sets()) or 'none'}")
    for item_id, score in (scores or {}).items():
        _say(f"  {item_id}: {_score_text(score)}")


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
    from .readers import first_case_id, open_dataset

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
    import dask
    import dask.threaded
    import napari

    from .widgets.launch import show_case

    if dask.config.get("scheduler", None) is None:
        # napari's slicing computes with dask's default scheduler, whose lookup imports
        # distributed for a client (0.3-0.8 s on the first slice); this process has none
        dask.config.set(scheduler=dask.threaded.get)

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
    qba = write_qba_sample(root / "qba-phantom", metadata=True)
    print(qba, f"(images: {qba}/mimic-cxr-jpg)")


def _writable_folder(out: Path) -> None:
    """Fail early, in one line, when ``--out`` cannot be written (read-only, full, a file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".napari-grounding-probe-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as err:
        raise GroundingError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def _report_failures(results: list[dict[str, Any]]) -> int:
    failed = [r for r in results if r.get("error")]
    for result in failed:
        _say(f"{PROG}: warning: case {result['case']}: {result['error']}", err=True)
    return len(failed)


def _worker_options(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--scheduler", metavar="ADDRESS",
                      help="a dask.distributed scheduler (default: this machine)")
    verb.add_argument("--workers", type=_positive, metavar="N",
                      help="local worker processes (default: this process)")
    verb.add_argument("--threads", type=_positive, metavar="N",
                      help="threads of each worker for a case's own work, such as reading "
                      "ahead while writing (default: the cores shared among the workers; 1 on "
                      "a cluster)")


def _job(args: argparse.Namespace) -> int:
    from . import batch
    from .cache_folders import KEEP_MARKER
    from .readers import open_dataset

    dataset = open_dataset(args.path, args.images)
    ids = dataset.case_ids()
    images = str(args.images) if args.images else None
    out = Path(args.out)
    options = {"scheduler": args.scheduler, "workers": args.workers, "threads": args.threads}
    if not args.scheduler:  # this process and its workers do the work
        batch.reuse_freed_memory()
    if args.verb == "qc":
        _writable_folder(out.parent)
        rows = batch.run(batch.qc_one, args.path, images, ids, **options)
        _say(f"{batch.write_qc(rows, out)} findings in {len(ids)} cases -> {out}")
        return 0
    _writable_folder(out)
    if args.verb == "convert":
        (out / KEEP_MARKER).touch()  # the user's folder: never evicted by the size limit
        results = batch.run(batch.convert_case, args.path, images, ids, str(out), **options)
        failed = _report_failures(results)
        counts = {kind: sum(r.get("result", "").startswith(kind) for r in results)
                  for kind in ("written", "current", "skipped")}
        _say(f"{counts['written'] + counts['current']} of {len(ids)} cases cached in {out} "
             f"({counts['written']} written, {counts['current']} already current, "
             f"{counts['skipped']} without a CT, {failed} failed)")
        return 2 if failed else 0
    results = batch.run(batch.snapshot_case, args.path, images, ids, str(out), **options)
    failed = _report_failures(results)
    made = batch.write_gallery(results, out)
    _say(f"{made} snapshots of {len(ids) - failed} cases ({failed} failed) -> {out / 'index.html'}")
    return 2 if failed else 0


def _cache(args: argparse.Namespace) -> int:
    from . import cache_folders
    from .store import cache_root

    root = cache_root(args.dir)
    listing = cache_folders.entries(root)
    if args.action == "list":
        for entry in reversed(listing):
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
            _say(f"{entry.size / 2**20:9.1f} MB\t{used}\t{'in use' if entry.in_use else ''}\t"
                 f"{entry.source}")
        limit = cache_folders.max_bytes()
        _say(f"{len(listing)} caches, {sum(e.size for e in listing) / 2**30:.2f} GB in {root} "
             f"(limit: {f'{limit / 2**30:.1f} GB' if limit else 'none'}, "
             f"${cache_folders.MAX_ENV})")
        return 0
    kept = [e for e in listing if not cache_folders.clear_slot(e.path)]
    freed = sum(e.size for e in listing if e not in kept)
    _say(f"freed {freed / 2**20:.1f} MB in {root}; {len(kept)} caches in use kept")
    return 0


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .batch import reuse_freed_memory
    from .evaluate import evaluate, summary_line

    if not args.scheduler:  # this process and its workers do the work
        reuse_freed_memory()
    summary, results = evaluate(args.path, args.pred, Path(args.out), args.images, args.pred_name,
                                args.threshold, args.scheduler, args.workers, args.threads)
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
         "convert": _job, "qc": _job, "snapshot": _job, "cache": _cache,
         "evaluate": _evaluate, "review-export": _review_export, "agreement": _agreement}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = VERBS[args.verb](args) or 0
    except GroundingError as err:
        _say(f"{PROG}: error: {err}", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except Exception as err:
        if args.debug:
            raise
        _say(f"{PROG}: internal error: {type(err).__name__}: {err} (rerun with --debug)", err=True)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
