"""What a user waits for, in a real napari viewer, beside napari alone in the same run.

    xvfb-run -a -s "-screen 0 1920x1200x24" python benchmarks/viewer.py [--workdir DIR]
        [--json FILE] [--repeat 2] [--switches 30] [--profile DIR]

Data: a realistic 512 x 512 x 300 int16 chest CT with scanner noise and a 4-finding mask file
in the ReXGroundingCT + CT-RATE layout, three cases of it (``benchmarks/ctdata.py``), generated
once into the work folder with their OME-Zarr caches. Every measurement runs in a fresh process
(``benchmarks/viewer_probe.py``) with the same window and canvas size; times are wall clock on a
possibly shared machine, so CPU seconds of the process are given beside the opening times.
Baselines: plain napari on the same arrays (nibabel's ``np.asanyarray(img.dataobj)``, then
``add_image``/``add_labels``). Targets are issue 9's, for 2 cores with software OpenGL.
``--profile DIR`` instead writes cProfiles (UI thread) of opening from the cache and from the
``.nii.gz``, of one selection and of one case switch, and prints their costliest functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ctdata  # noqa: E402

PROBE = HERE / "viewer_probe.py"
SCREEN = "1920x1200x24"
WINDOW = (1700, 1100)
CANVAS = (900, 900)  # width, height in logical pixels, fixed in every run
# one chunk depth of the cache along the stored axis (store.CHUNKS[0]): a scroll's mean then
# holds chunk-row crossings as often as scrolling axially through a volume meets them (across
# it, every 128 slices: less often); 10 steps from the middle crossed one in every 10
SCROLL_STEPS = 32
TARGETS = {  # issue 9, 2 cores, Xvfb, software GL
    "open_cache": 0.3, "open_nifti": 1.0, "scroll": 1.5, "select": 1.3, "next_case_s": 1.0,
    "slices_per_layer": 1.0,
}
ROWS: list[dict[str, str]] = []
RAW: dict[str, Any] = {}


# -- running probes -------------------------------------------------------------------------
def probe(scenario: str, mode: str, params: dict, env: dict[str, str] | None = None,
          timeout: float = 600) -> dict:
    """Run one measurement in a fresh process; its JSON result, or {"error": ...}."""
    out = Path(params["workdir"]) / f"probe-{scenario}-{mode}.json"
    out.unlink(missing_ok=True)
    full_env = {**os.environ, **(env or {})}
    full_env["BENCH_T0"] = repr(time.time())
    try:
        done = subprocess.run([sys.executable, str(PROBE), scenario, mode, json.dumps(params),
                               str(out)], env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode or not out.is_file():
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return {"error": lines[-1] if lines else f"exit code {done.returncode}",
                "stderr": done.stderr[-4000:]}
    return json.loads(out.read_text())


def command_time(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a command, start to exit."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append(after.children_user + after.children_system
                    - before.children_user - before.children_system)
    return statistics.median(walls), statistics.median(cpus)


# -- data and caches ------------------------------------------------------------------------
def _store_digest() -> str:
    import napari_grounding.store as store

    return hashlib.sha1(Path(store.__file__).read_bytes()).hexdigest()[:12]


def ensure_caches(root: Path, cache: Path) -> dict:
    """OME-Zarr caches of every case (rewritten when store.py changed); the geometry the
    baselines need to show the same picture."""
    os.environ["NAPARI_GROUNDING_CACHE"] = str(cache)
    from napari_grounding.readers import open_dataset
    from napari_grounding.store import cache_path, write_cache

    stamp = cache / "bench-store.txt"
    digest = _store_digest()
    if stamp.is_file() and stamp.read_text() != digest:
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(root)
    first = None
    for name in ctdata.CASES:
        case = dataset.open_case(name)
        found = case.images["ct"].meta.get("cache")
        if found is None and first is not None:
            _link_cache(first, ctdata.CASES[0], name, cache_path(case.images["ct"], cache))
            found = dataset.open_case(name).images["ct"].meta.get("cache")
        if found is None:
            start = time.perf_counter()
            found = str(write_cache(case))
            print(f"cached {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        first = first or Path(found)
    stamp.write_text(digest)
    ct = dataset.open_case(ctdata.CASES[0]).images["ct"]
    if "cache" not in ct.meta:
        raise SystemExit("the cache just written is not found by the reader")
    return {"axes": list(ct.orientation.source_axes), "flips": list(ct.orientation.flips),
            "scale": [float(s) for s in ct.spacing], "translate": [float(t) for t in ct.origin],
            "contrast_limits": [float(c) for c in ct.contrast_limits]}


def _link_cache(first: Path, first_name: str, name: str, target: Path) -> None:
    """The first case's cache for another case of the same (hard-linked) scan: chunks hard
    linked, the group's metadata rewritten to name this case's files (a cache names its
    source). The reader then checks it like any cache."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(first, target, copy_function=os.link)
    split, patient, scan, _ = first_name.split("_")
    new_split, new_patient, new_scan, _ = name.split("_")
    renames = {first_name: name, f"/{split}_{patient}/": f"/{new_split}_{new_patient}/",
               f"/{split}_{patient}_{scan}/": f"/{new_split}_{new_patient}_{new_scan}/"}
    for meta in ("zarr.json", ".zattrs"):
        path = target / meta
        if path.is_file():
            text = path.read_text()
            for old, new in renames.items():
                text = text.replace(old, new)
            path.unlink()  # a hard link: the first case's metadata stays as it is
            path.write_text(text)


# -- formatting -----------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


def row(section: str, measure: str, ours: str, baseline: str = "", ratio: float | None = None,
        target: str = "", met: bool | None = None) -> None:
    ROWS.append({"section": section, "measure": measure, "ours": ours, "baseline": baseline,
                 "ratio": f"{ratio:.2f}x" if ratio is not None else "",
                 "target": target, "met": "" if met is None else ("met" if met else "NOT met")})


def failed(section: str, measure: str, result: dict) -> bool:
    if "error" in result:
        row(section, measure, f"failed: {result['error'][:120]}")
        return True
    return False


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- the measurements -----------------------------------------------------------------------
def bench_imports(repeat: int) -> None:
    section = "1 start-up"
    python = sys.executable
    cli = str(Path(python).with_name("napari-grounding"))
    base = command_time([python, "-c", "import numpy, nibabel"], repeat)
    ours = command_time([python, "-c", "import napari_grounding"], repeat)
    helped = command_time([cli, "--help"], repeat) if Path(cli).exists() else None
    RAW["imports"] = {"numpy_nibabel": base, "napari_grounding": ours, "help": helped}
    row(section, "`import napari_grounding` (process start to exit)",
        f"{secs(ours[0])} (CPU {secs(ours[1])})", f"{secs(base[0])} `import numpy, nibabel`",
        ours[0] / base[0])
    if helped:
        row(section, "`napari-grounding --help`", f"{secs(helped[0])} (CPU {secs(helped[1])})",
            f"{secs(base[0])} `import numpy, nibabel`", helped[0] / base[0])


def bench_open(params: dict, repeat: int) -> None:
    section = "1 opening: process start to first painted frame"
    workdir = Path(params["workdir"])
    runs: dict[str, list[dict]] = {"numpy": [], "nifti": [], "cache": []}
    for r in range(repeat):  # interleaved, so drift in the machine's load hits all three
        p = {**params, "settle": r == 0}
        runs["numpy"].append(probe("open", "numpy", p))
        fresh = workdir / f"cache-fresh-{r}"
        shutil.rmtree(fresh, ignore_errors=True)
        runs["nifti"].append(probe("open", "ours", p, {"NAPARI_GROUNDING_CACHE": str(fresh)}))
        shutil.rmtree(fresh, ignore_errors=True)
        runs["cache"].append(probe("open", "ours", p))
    RAW["open"] = runs
    good = {k: [r for r in v if "error" not in r] for k, v in runs.items()}
    for kind, results in runs.items():
        if not good[kind]:
            failed(section, f"open ({kind})", results[0])
    if not good["numpy"]:
        return
    base = median([r["first_frame_s"] for r in good["numpy"]])
    base_cpu = median([r["cpu_first_frame_s"] for r in good["numpy"]])
    n = len(good["numpy"])
    row(section, f"baseline A: nibabel `np.asanyarray(dataobj)` + add_image + 4 add_labels "
        f"(median of {n})", f"{secs(base)} (CPU {secs(base_cpu)})")
    labels = {"nifti": ("ours from the .nii.gz, no cache yet", "open_nifti"),
              "cache": ("ours from the OME-Zarr cache", "open_cache")}
    for kind, (label, target) in labels.items():
        if not good[kind]:
            continue
        value = median([r["first_frame_s"] for r in good[kind]])
        cpu = median([r["cpu_first_frame_s"] for r in good[kind]])
        # issue 9's baseline (nibabel + add_image, 1.1-1.5 s) is a load into a running viewer:
        # its targets are judged in section 1b; here napari's import and window (3-4 s) and its
        # first layers' set-up (about 2 s) are in both, so 0.3x cannot be reached by anyone
        row(section, f"{label} (median of {len(good[kind])})", f"{secs(value)} (CPU {secs(cpu)})",
            f"{secs(base)} (CPU {secs(base_cpu)})", value / base,
            f"see 1b (<= {TARGETS[target]}x there)")
    for kind, label in (("numpy", "baseline A"), ("nifti", "ours from .nii.gz"),
                        ("cache", "ours from cache")):
        first = good[kind][0] if good[kind] else None
        if first is None:
            continue
        settled = first.get("peak_rss_settled")
        text = f"{mib(first['peak_rss_first_frame'])} at first frame"
        if settled:
            text += f", {mib(settled)} once background work is done ({first['settle_s']:.0f} s)"
        marks = ", ".join(f"{k} {v:.2f} s" for k, v in first["marks"].items())
        row(section, f"peak RSS, {label}", text, f"phases: {marks}")
    row_reads(good)


def bench_reopen(params: dict, switches: int = 6) -> None:
    """Opening a case in a running viewer, as a reviewer does all day: napari, the modules and
    a first case already loaded, the next case to its first painted frame (issue 9's opening
    baseline, nibabel + add_image, measured in the same set-up: it loads the next case too)."""
    section = "1b opening in a running viewer: the next case to its first painted frame"
    fresh = Path(params["workdir"]) / "cache-reopen"
    shutil.rmtree(fresh, ignore_errors=True)
    p = {**params, "switches": switches}
    results = {"numpy": probe("switch", "numpy", {**p, "load": True}, timeout=1200),
               "cache": probe("switch", "ours", p, timeout=1200),
               # no cache yet: each case's is written in the background after it is shown
               "nifti": probe("switch", "ours", p, {"NAPARI_GROUNDING_CACHE": str(fresh)},
                              timeout=1200)}
    shutil.rmtree(fresh, ignore_errors=True)
    RAW["reopen"] = results
    if failed(section, "reopen baseline A", results["numpy"]):
        return
    base = median(results["numpy"]["times"])
    row(section, "baseline A in a running viewer: nibabel `np.asanyarray(dataobj)` of the next "
        f"case + layers.clear() + add_image + 4 add_labels (median of {switches})", ms(base))
    for kind, label, target in (("cache", "ours from the OME-Zarr cache", "open_cache"),
                                ("nifti", "ours from the .nii.gz, no cache yet", "open_nifti")):
        if failed(section, f"reopen {label}", results[kind]):
            continue
        value, limit = median(results[kind]["times"]), TARGETS[target]
        row(section, f"{label}: PageDown (median of {switches})", ms(value), ms(base),
            value / base, f"<= {limit}x baseline A", value / base <= limit)


def row_reads(good: dict) -> None:
    section = "2 reads"
    for kind, label in (("cache", "from the cache"), ("nifti", "from the .nii.gz")):
        if not good[kind]:
            continue
        r = good[kind][0]
        at = r["at_first_frame"]
        text = (f"UI path {at['ui_chunks']} chunks, {mib(at['ui_bytes'])}; background by then "
                f"{at['bg_chunks']} chunks, {mib(at['bg_bytes'])}")
        settled = r.get("settled")
        if settled:
            text += f"; background in all {settled['bg_chunks']} chunks, {mib(settled['bg_bytes'])}"
        slices = ", ".join(f"{k} {v}" for k, v in at["slices"].items())
        row(section, f"opening {label}: chunks and bytes read to the first frame", text,
            "baseline A reads every voxel: CT 150 MiB + masks 300 MiB")
        row(section, f"opening {label}: slicing and dask computes (UI thread) to the first frame",
            f"{at['computes']} computes; set_view_slice per layer: {slices}", "")


def _per_axis(result: dict, plane: str) -> dict | None:
    return result.get(plane) if "error" not in result else None


def bench_scroll(params: dict) -> None:
    section = f"3 scrolling: one slice step to its frame (mean of {SCROLL_STEPS} steps: one chunk depth)"
    workdir = Path(params["workdir"])
    empty = workdir / "cache-empty"
    shutil.rmtree(empty, ignore_errors=True)
    results = {
        "numpy": probe("scroll", "numpy", params),
        "cache": probe("scroll", "ours", params),
        # no cache and none written meanwhile: the .nii.gz read as it is
        "nifti": probe("scroll", "ours", params, {"NAPARI_GROUNDING_CACHE": str(empty),
                                                  "NAPARI_GROUNDING_CACHE_ON_OPEN": "0"}),
    }
    shutil.rmtree(empty, ignore_errors=True)
    RAW["scroll"] = results
    if failed(section, "scroll baseline (numpy)", results["numpy"]):
        return
    for kind, label in (("cache", "from the cache"), ("nifti", "from the .nii.gz (no cache)")):
        if failed(section, f"scroll {label}", results[kind]):
            continue
        for plane in ("axial", "coronal", "sagittal"):
            ours, base = results[kind][plane], results["numpy"][plane]
            ratio = ours["mean_s"] / base["mean_s"]
            per = ours["per_step"]
            detail = (f"{ms(ours['mean_s'])} (median {ms(ours['median_s'])}, slowest "
                      f"{ms(max(ours['times']))}; per step {per['ui_chunks']:.0f} chunks, "
                      f"{mib(per['ui_bytes'])})")
            target = f"<= {TARGETS['scroll']}x in memory" if kind == "cache" else ""
            row(section, f"{plane}, {label}", detail,
                f"{ms(base['mean_s'])} numpy in memory (slowest {ms(max(base['times']))})",
                ratio, target,
                ratio <= TARGETS["scroll"] if kind == "cache" else None)
        for plane in ("coronal", "sagittal"):
            ours, base = results[kind][plane], results["numpy"][plane]
            row(section, f"switch the plane to {plane}, {label} (one frame)",
                ms(ours["switch_s"]), f"{ms(base['switch_s'])} numpy in memory",
                ours["switch_s"] / base["switch_s"])


def bench_select(params: dict) -> None:
    section = "4 selection: select a finding to its frame"
    ours = probe("select", "ours", params)
    RAW["select"] = {"ours": ours}
    if failed(section, "selection (ours)", ours):
        return
    base = probe("select", "numpy", {**params, "states": ours["states"],
                                     "layer_names": ours["layer_names"]})
    RAW["select"]["numpy"] = base
    if failed(section, "selection baseline (napari alone)", base):
        return
    n = len(ours["times"])
    ratio = median(ours["times"]) / median(base["times"])
    row(section, f"`session.select([finding])`, median of {n} (4 findings, cache)",
        f"{ms(median(ours['times']))} (max {ms(max(ours['times']))})",
        f"{ms(median(base['times']))} napari alone, same slice, camera and layers as numpy",
        ratio, f"<= {TARGETS['select']}x napari", ratio <= TARGETS["select"])
    keys = ours.get("key_times", [])
    if keys:
        ratio = median(keys) / median(base["times"])
        row(section, f"Down key on the canvas, median of {len(keys)}", ms(median(keys)),
            f"{ms(median(base['times']))} napari alone", ratio,
            f"<= {TARGETS['select']}x napari", ratio <= TARGETS["select"])
    layers = ours["layer_names"]
    per_layer = {name: statistics.fmean(c["slices"].get(name, 0) for c in ours["counted"])
                 for name in layers}
    base_layer = {name: statistics.fmean(c["slices"].get(name, 0) for c in base["counted"])
                  for name in ("CT", "finding 0", "finding 1", "finding 2", "finding 3")}
    worst = max(per_layer.values())
    row(section, "times each layer is sliced per selection (mean)",
        ", ".join(f"{k} {v:.1f}" for k, v in per_layer.items()),
        ", ".join(f"{k} {v:.1f}" for k, v in base_layer.items()), None,
        "each layer once", worst <= TARGETS["slices_per_layer"])
    computes = statistics.fmean(c["computes"] for c in ours["counted"])
    chunks = statistics.fmean(c["ui_chunks"] for c in ours["counted"])
    nbytes = statistics.fmean(c["ui_bytes"] for c in ours["counted"])
    row(section, "dask computes and reads per selection (UI path, mean)",
        f"{computes:.1f} computes, {chunks:.0f} chunks, {mib(nbytes)}", "numpy: none")


def bench_switch(params: dict) -> None:
    section = "5-6 case switching (cached cases)"
    ours = probe("switch", "ours", params, timeout=1200)
    base = probe("switch", "numpy", params, timeout=1200)
    RAW["switch"] = {"ours": ours, "numpy": base}
    if failed(section, "case switch (ours)", ours) or failed(section, "case switch baseline", base):
        return
    t, b = ours["times"], base["times"]
    row(section, "PageDown to the first frame of the next case (1st switch)", ms(t[0]),
        f"{ms(b[0])} napari: layers.clear() + add_image/add_labels of numpy arrays", t[0] / b[0],
        f"<= {TARGETS['next_case_s']:.0f} s", t[0] <= TARGETS["next_case_s"])
    row(section, f"next case, median of {len(t)} switches", ms(median(t)), ms(median(b)),
        median(t) / median(b), f"<= {TARGETS['next_case_s']:.0f} s",
        median(t) <= TARGETS["next_case_s"])
    if len(t) > 1:
        k = min(5, len(t) // 2)
        growth = median(t[-k:]) / median(t[:k])
        row(section, f"long session: switch 1 vs {len(t)} (median of first {k} vs last {k})",
            f"{ms(t[0])} vs {ms(t[-1])} ({ms(median(t[:k]))} vs {ms(median(t[-k:]))})",
            f"{ms(b[0])} vs {ms(b[-1])} ({ms(median(b[:k]))} vs {ms(median(b[-k:]))})",
            growth, "no growth")
        row(section, f"peak RSS after {len(t)} switches", mib(ours["peak_rss"]),
            mib(base["peak_rss"]))
    computes = statistics.fmean(c["computes"] for c in ours["counted"])
    chunks = statistics.fmean(c["ui_chunks"] for c in ours["counted"])
    row(section, "per switch (UI path, mean): dask computes, chunks read",
        f"{computes:.1f} computes, {chunks:.0f} chunks, "
        f"{mib(statistics.fmean(c['ui_bytes'] for c in ours['counted']))}", "")


# -- profiles -------------------------------------------------------------------------------
def profiles(params: dict, folder: Path, top: int) -> None:
    import io
    import pstats

    folder.mkdir(parents=True, exist_ok=True)
    workdir = Path(params["workdir"])
    fresh = workdir / "cache-profile"
    shutil.rmtree(fresh, ignore_errors=True)
    runs = {
        "open-numpy": ("open", "numpy", {}, {"settle": False}),  # baseline A, for comparison
        "open-cache": ("open", "ours", {}, {"settle": False}),
        "open-nifti": ("open", "ours", {"NAPARI_GROUNDING_CACHE": str(fresh)}, {"settle": False}),
        "select": ("select", "ours", {}, {"select_repeats": 1}),
        "switch": ("switch", "ours", {}, {"switches": 1}),
    }
    only = os.environ.get("BENCH_PROFILE_ONLY")  # e.g. "open-numpy,open-cache"
    for name, (scenario, mode, env, extra) in runs.items():
        if only and name not in only.split(","):
            continue
        path = folder / f"{name}.prof"
        path.unlink(missing_ok=True)
        for _attempt in range(3):  # a failed run is reported, then tried again
            result = probe(scenario, mode, {**params, **extra}, {**env, "BENCH_PROFILE": str(path)})
            shutil.rmtree(fresh, ignore_errors=True)
            if "error" not in result and path.is_file():
                break
            print(f"## {name}: failed: {result.get('error')}\n")
        if "error" in result or not path.is_file():
            continue
        stats = pstats.Stats(str(path))
        full = io.StringIO()
        pstats.Stats(str(path), stream=full).sort_stats("cumulative").print_stats(60)
        (folder / f"{name}.txt").write_text(full.getvalue())
        total = result.get("first_frame_s") or (result.get("times") or [float("nan")])[0]
        print(f"## {name}: {secs(total)} measured (UI thread profiled; {path}, "
              f"60 costliest in {name}.txt)\n")
        for key, title in (("cumulative", "cumulative, plumbing left out"), ("tottime", "own time")):
            print(f"{title}:\n")
            for line in top_functions(stats, key, top):
                print("    " + line)
            print()


PLUMBING = ("<frozen ", "<built-in method builtins.exec>", "<built-in method builtins.__import__>",
            "viewer_probe.py", "napari/utils/events/", "vispy/util/event.py", "_proxies.py",
            "SignalInstance", "_collections_abc", "keyClick", "vispy/app/backends/_qt.py",
            "key_bindings.py", "evented_model.py", "{method 'emit'")


def top_functions(stats: Any, key: str, top: int) -> list[str]:
    """The ``top`` costliest functions by ``key`` ("cumulative": wrappers, imports machinery
    and event dispatch left out, so what remains says where the time goes)."""
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        where = f"{filename}:{line}({function})" if line else f"{filename}({function})"
        for prefix in (sysconfig.get_paths()["purelib"], str(HERE.parent)):
            where = where.replace(prefix + "/", "")
        if key == "cumulative" and any(p in where for p in PLUMBING):
            continue
        rows.append((cumulative if key == "cumulative" else own, calls, own, where))
    rows.sort(reverse=True)
    return [f"{value:7.3f} s  {calls:6d} calls  own {own:6.3f} s  {where}"
            for value, calls, own, where in rows[:top]]


# -- main -----------------------------------------------------------------------------------
def table() -> str:
    lines = ["| measure | ours | baseline (same run) | ratio | target (2 cores) | |",
             "| --- | --- | --- | --- | --- | --- |"]
    section = None
    for r in ROWS:
        if r["section"] != section:
            section = r["section"]
            lines.append(f"| **{section}** | | | | | |")
        lines.append("| " + " | ".join(r[k] for k in ("measure", "ours", "baseline", "ratio",
                                                        "target", "met")) + " |")
    return "\n".join(lines)


def reexec_under_xvfb() -> None:
    """No display: run again under Xvfb (napari needs a GL context to draw)."""
    if os.environ.get("DISPLAY") or os.environ.get("BENCH_NO_XVFB"):
        return
    if not shutil.which("xvfb-run"):
        raise SystemExit("benchmarks/viewer.py: error: no DISPLAY and no xvfb-run")
    argv = ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN}", sys.executable, *sys.argv]
    os.execvpe("xvfb-run", argv, {**os.environ, "BENCH_NO_XVFB": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=HERE.parent / ".benchmarks" / "viewer",
                        help="data, caches and probe results (kept between runs)")
    parser.add_argument("--json", type=Path, help="also write the rows and raw results here")
    parser.add_argument("--repeat", type=int, default=2, help="runs per opening measurement")
    parser.add_argument("--switches", type=int, default=30, help="case switches in one viewer")
    parser.add_argument("--select-repeats", type=int, default=3,
                        help="passes over the 4 findings")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write cProfiles instead of the table")
    parser.add_argument("--top", type=int, default=10, help="functions listed per profile")
    parser.add_argument("--only", default="imports,open,reopen,scroll,select,switch",
                        help="comma-separated parts to run (default: all)")
    args = parser.parse_args()
    reexec_under_xvfb()
    os.environ.setdefault("QT_API", "pyqt6")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # napari's own settings, fresh and the same in every run
    os.environ["NAPARI_CONFIG"] = str(workdir / "napari-settings.yaml")
    started = time.perf_counter()
    load_start = os.getloadavg()
    root = ctdata.ensure_dataset(workdir)
    geometry = ensure_caches(root, workdir / "cache")
    params = {"workdir": str(workdir), "root": str(root), "ct": str(ctdata.volume_path(root)),
              "masks": str(ctdata.mask_path(root)), "findings": len(ctdata.FINDINGS),
              "window": list(WINDOW), "canvas": list(CANVAS), "scroll_steps": SCROLL_STEPS,
              "select_repeats": args.select_repeats, "switches": args.switches, **geometry}
    if args.profile:
        profiles(params, args.profile.resolve(), args.top)
        return
    parts = {"imports": lambda: bench_imports(5), "open": lambda: bench_open(params, args.repeat),
             "scroll": lambda: bench_scroll(params), "select": lambda: bench_select(params),
             "reopen": lambda: bench_reopen(params), "switch": lambda: bench_switch(params)}
    for name in args.only.split(","):
        parts[name]()
    total = time.perf_counter() - started
    load_end = os.getloadavg()
    first = next((r for r in RAW.get("open", {}).get("numpy", []) if "renderer" in r), {})
    info = json.loads((root / "generated.json").read_text())
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, Xvfb {SCREEN}, GL renderer "
              f"{first.get('renderer', '?')}, canvas {CANVAS[0]} x {CANVAS[1]} px; load average "
              f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end; whole run "
              f"{total:.0f} s. CT 512 x 512 x 300 int16, .nii.gz "
              f"{info['ct_bytes'] / info['ct_gz_bytes']:.1f}x smaller than raw.")
    print(header + "\n")
    print(table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "rows": ROWS, "raw": RAW}, indent=1))


if __name__ == "__main__":
    main()
