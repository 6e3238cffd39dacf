"""One measurement in a fresh process, for benchmarks/viewer.py; writes its result as JSON.

    python benchmarks/viewer_probe.py SCENARIO MODE PARAMS_JSON OUT_JSON

SCENARIO is open, scroll, select or switch; MODE is ``numpy`` (plain napari on in-memory
arrays: the baseline) or ``ours`` (``napari-grounding view ROOT``: the CLI's own code, with
``napari.run`` returning at once). A frame counts as painted when the vispy canvas's draw event
has run to its end and ``glFinish`` has returned (the draw is connected last, after vispy's own
flush and swap). ``BENCH_T0`` (wall clock, set by the parent just before it started this
process) is the process start; ``BENCH_PROFILE`` names a cProfile output for the scenario's
profiled part. Nothing is imported at module level beyond the standard library, so import times
count in full.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time

T0 = float(os.environ.get("BENCH_T0") or time.time())
PROFILE = os.environ.get("BENCH_PROFILE")
_profiler = None
MARKS: dict[str, float] = {}  # phase -> seconds since the process started


def mark(name: str) -> None:
    MARKS[name] = time.time() - T0


def cpu_s() -> float:
    """CPU seconds this process has used (all its threads): unlike wall time, barely
    changed by other work on a shared machine."""
    times = os.times()
    return times.user + times.system


def start_profile() -> None:
    global _profiler
    if PROFILE and _profiler is None:
        import cProfile

        _profiler = cProfile.Profile()
        _profiler.enable()


def stop_profile() -> None:
    global _profiler
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(PROFILE)
        _profiler = None


def peak_rss() -> int:
    """This process's own peak resident memory (VmHWM), in bytes; ru_maxrss is not used
    because Linux carries the parent's peak over a fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- instruments --------------------------------------------------------------------------
class Counts:
    """What the UI thread does: layer slicing (napari's ``set_view_slice`` per layer name), dask
    computes it starts, and chunks/bytes read through our ReadCounters, split into the UI path
    (main thread and dask's default pool, which serves it) and background work."""

    def __init__(self) -> None:
        self.slices: dict[str, int] = {}
        self.computes = 0
        self.reads = {"ui_chunks": 0, "ui_bytes": 0, "bg_chunks": 0, "bg_bytes": 0}
        self._lock = threading.Lock()

    def snapshot(self) -> dict:
        with self._lock:
            return {"slices": dict(self.slices), "computes": self.computes, **self.reads}

    @staticmethod
    def diff(after: dict, before: dict) -> dict:
        out = {k: after[k] - before[k] for k in after if k != "slices"}
        out["slices"] = {n: c - before["slices"].get(n, 0) for n, c in after["slices"].items()
                         if c - before["slices"].get(n, 0)}
        return out

    def install_napari(self) -> None:
        from dask.callbacks import Callback
        from napari.layers.base.base import _LayerSlicingState

        counts = self
        original = _LayerSlicingState.set_view_slice

        def set_view_slice(state):  # where every sync slice of every layer type goes
            name = state.layer.name
            counts.slices[name] = counts.slices.get(name, 0) + 1
            return original(state)

        _LayerSlicingState.set_view_slice = set_view_slice

        class ComputeCounter(Callback):
            def _start(self, dsk):
                if threading.current_thread() is threading.main_thread():
                    counts.computes += 1

        ComputeCounter().register()

    def install_reads(self) -> None:
        import dask.threaded

        from napari_grounding.model import ReadCounter

        counts = self
        original = ReadCounter.add
        main = threading.main_thread()

        def add(counter, nbytes, chunks=1):
            original(counter, nbytes, chunks)
            thread = threading.current_thread()
            pool = getattr(dask.threaded, "default_pool", None)
            ui = thread is main or (pool is not None and thread in getattr(pool, "_threads", ()))
            with counts._lock:
                counts.reads["ui_chunks" if ui else "bg_chunks"] += chunks
                counts.reads["ui_bytes" if ui else "bg_bytes"] += int(nbytes)

        ReadCounter.add = add


COUNTS = Counts()


# -- frames -------------------------------------------------------------------------------
class Frames:
    """Draws of the viewer's canvas: how many, when the last one ended, when the first one
    for which ``want(viewer)`` held ended, and the last one at whose end ``until()`` held."""

    def __init__(self, viewer, want=None):
        from vispy.gloo import gl

        self.viewer, self.want, self._gl = viewer, want, gl
        self.count = 0
        self.renderer = ""
        self.last = 0.0  # perf_counter at the end of the last draw
        self.first_wanted: float | None = None  # time.time() at the end of the first wanted draw
        self.until = None
        self.met = 0  # number of the last draw at whose end ``until()`` held
        self.canvas = viewer.window._qt_viewer.canvas
        self.canvas._scene_canvas.events.draw.connect(self._on_draw, position="last")

    def _on_draw(self, _event) -> None:
        self._gl.glFinish()
        if not self.count:
            self.renderer = str(self._gl.glGetParameter(self._gl.GL_RENDERER))
        self.count += 1
        self.last = time.perf_counter()
        if self.until is not None and self.until():
            self.met = self.count
        if self.first_wanted is None and (self.want is None or self.want(self.viewer)):
            self.first_wanted = time.time()

    def wait_until(self, predicate, timeout: float = 120.0) -> None:
        from qtpy.QtWidgets import QApplication

        deadline = time.perf_counter() + timeout
        while not predicate():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"nothing drawn as expected within {timeout} s")
            QApplication.processEvents()
            time.sleep(0.0005)

    def timed(self, action, until=None, timeout: float = 120.0) -> float:
        """Seconds from calling ``action()`` to the end of the first frame drawn after it
        (at whose end ``until()`` held, if given)."""
        since = self.count
        self.until = until
        try:
            start = time.perf_counter()
            action()
            self.wait_until(lambda: self.count > since and (until is None or self.met > since),
                            timeout)
            return self.last - start
        finally:
            self.until = None

    def settle(self, quiet: float = 0.4, timeout: float = 120.0, until=None) -> float:
        """Process events until background workers are done (and ``until()`` holds) and no
        frame has been drawn for ``quiet`` seconds; returns the seconds it took."""
        from qtpy.QtWidgets import QApplication

        start = time.perf_counter()
        calm_since = None
        while time.perf_counter() - start < timeout:
            QApplication.processEvents()
            busy = any(pool.activeThreadCount() > 0 for pool in _pools()) or \
                (until is not None and not until())
            now = time.perf_counter()
            if busy or now - self.last < quiet:
                calm_since = None
            elif calm_since is None:
                calm_since = now
            elif now - calm_since > 0.05:
                return now - start
            time.sleep(0.002)
        raise TimeoutError(f"the viewer did not settle within {timeout} s")


def _pools() -> list:
    """Qt's global thread pool and the panel's own (its background jobs run there)."""
    from qtpy.QtCore import QThreadPool

    pools = [QThreadPool.globalInstance()]
    if "napari_grounding.widgets.background" in sys.modules:
        pools.append(sys.modules["napari_grounding.widgets.background"].worker_pool())
    return pools


def painted(viewer) -> float:
    """Standard deviation of the canvas's pixels (a blank canvas is ~0)."""
    shot = viewer.screenshot(canvas_only=True, flash=False)
    return float(shot[..., :3].std())


# -- viewers ------------------------------------------------------------------------------
def _place(viewer, params: dict) -> None:
    """The same window and, above all, the same canvas size in every run (software GL's
    cost grows with the pixels drawn; our panel would otherwise shrink the canvas)."""
    width, height = params["window"]
    viewer.window.set_geometry(0, 0, width, height)
    viewer.window._qt_viewer.canvas.native.setFixedSize(*params["canvas"])


def napari_viewer(params: dict, want=None):
    import napari

    mark("napari imported")
    viewer = napari.Viewer(title="bench")
    _place(viewer, params)
    mark("viewer created")
    return viewer, Frames(viewer, want)


def load_arrays(params: dict) -> tuple:
    """The CT and its masks as in-memory numpy arrays in display order (views, no copies)."""
    import nibabel as nib
    import numpy as np

    ct = np.asanyarray(nib.load(params["ct"]).dataobj)
    masks = np.asanyarray(nib.load(params["masks"]).dataobj)
    mark("arrays loaded")
    return display(ct, params), [display(m, params) for m in masks]


def display(array, params: dict):
    out = array.transpose(params["axes"])
    return out[tuple(slice(None, None, -1 if f else None) for f in params["flips"])]


def add_plain(viewer, params: dict, ct, masks) -> None:
    """What a user does without the plugin: add_image and add_labels, same geometry and
    contrast as ours (so both show the same picture)."""
    geometry = {"scale": params["scale"], "translate": params["translate"]}
    viewer.add_image(ct, name="CT", colormap="gray", contrast_limits=params["contrast_limits"],
                     **geometry)
    for i, mask in enumerate(masks):
        viewer.add_labels(mask, name=f"finding {i}", opacity=0.55, **geometry)


def open_ours(params: dict, want=None, reads: bool = True):
    """``napari-grounding view ROOT`` as the CLI runs it; returns (viewer, frames, panel)."""
    import napari

    made = {}
    real_viewer = napari.Viewer

    def viewer_factory(*args, **kwargs):
        mark("case opened")
        viewer = real_viewer(*args, **kwargs)
        _place(viewer, params)
        mark("viewer created")
        made["viewer"], made["frames"] = viewer, Frames(viewer, want)
        return viewer

    napari.Viewer = viewer_factory
    napari.run = lambda *a, **k: None
    from napari_grounding.cli import main  # what the napari-grounding script imports first

    mark("package imported")
    if reads:
        COUNTS.install_reads()
    from napari_grounding.widgets.launch import dock_panel

    code = main(["view", params["root"]])
    if code:
        raise SystemExit(f"napari-grounding view exited with {code}")
    napari.Viewer = real_viewer
    viewer = made["viewer"]
    return viewer, made["frames"], dock_panel(viewer)


def first_frame(frames: Frames, n: int) -> None:
    """Wait for the first frame drawn with ``n`` layers in the viewer."""
    if frames.want is None:
        frames.want = lambda v: len(v.layers) >= n
    frames.wait_until(lambda: frames.first_wanted is not None)


def layers_ready(viewer, n: int):
    return lambda: len(viewer.layers) >= n


# -- scenarios ----------------------------------------------------------------------------
def scenario_open(mode: str, params: dict) -> dict:
    start_profile()
    n = 1 + params["findings"]
    if mode == "numpy":
        import napari  # noqa: F401  (imported first, as a script would)

        viewer, frames = napari_viewer(params)
        frames.want = lambda v: len(v.layers) >= n
        ct, masks = load_arrays(params)
        add_plain(viewer, params, ct, masks)
        mark("layers added")
        panel = None
    else:
        import napari

        COUNTS.install_napari()
        viewer, frames, panel = open_ours(params, want=lambda v: len(v.layers) >= n)
        assert napari
    if panel is not None:
        mark("panel shown")
    frames.wait_until(lambda: frames.first_wanted is not None)
    cpu = cpu_s()
    stop_profile()
    result = {"first_frame_s": frames.first_wanted - T0, "cpu_first_frame_s": cpu,
              "marks": MARKS, "load_avg": os.getloadavg()[0],
              "peak_rss_first_frame": peak_rss(), "canvas": list(frames.canvas.size),
              "renderer": frames.renderer,
              "at_first_frame": COUNTS.snapshot()}
    if params.get("settle", True):  # background work done: statistics, a cache written
        result["settle_s"] = frames.settle(timeout=params.get("settle_timeout", 90))
        result["peak_rss_settled"] = peak_rss()
        result["settled"] = COUNTS.snapshot()
    result["painted_std"] = painted(viewer)
    if panel is not None:
        result["cache"] = str(panel.session.case.images["ct"].meta.get("cache", ""))
        result["panel_width"] = panel.width()
    return result


PLANES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}


def scenario_scroll(mode: str, params: dict) -> dict:
    import napari  # noqa: F401

    n = 1 + params["findings"]
    if mode == "numpy":
        viewer, frames = napari_viewer(params)
        ct, masks = load_arrays(params)
        add_plain(viewer, params, ct, masks)
    else:
        viewer, frames, panel = open_ours(params)
    COUNTS.install_napari()
    first_frame(frames, n)
    frames.settle(timeout=params.get("settle_timeout", 90))
    result = {"canvas": list(frames.canvas.size)}
    steps = params["scroll_steps"]
    for plane, order in PLANES.items():
        def set_order(order=order):
            viewer.dims.order = order

        switch = frames.timed(set_order) if tuple(viewer.dims.order) != order else 0.0
        axis = order[0]
        size = viewer.dims.nsteps[axis]
        here = viewer.dims.current_step[axis]
        direction = 1 if here + steps < size else -1
        times = []
        before = COUNTS.snapshot()
        for i in range(1, steps + 1):
            step = here + direction * i
            times.append(frames.timed(lambda s=step, a=axis: viewer.dims.set_current_step(a, s)))
        counted = Counts.diff(COUNTS.snapshot(), before)
        result[plane] = {"switch_s": switch, "mean_s": statistics.fmean(times),
                         "median_s": statistics.median(times), "times": times,
                         "per_step": {k: (v / steps if not isinstance(v, dict) else
                                          {n: c / steps for n, c in v.items()})
                                      for k, v in counted.items()}}
    result["peak_rss"] = peak_rss()
    return result


def view_state(viewer) -> dict:
    camera = viewer.scene.camera
    return {"order": list(viewer.dims.order), "point": [float(p) for p in viewer.dims.point],
            "center": [float(c) for c in camera.center], "zoom": float(camera.zoom),
            "visible": {layer.name: bool(layer.visible) for layer in viewer.layers}}


def apply_state(viewer, state: dict, names: dict) -> None:
    """Move a plain viewer to where ours went: plane, slice, camera, visible layers."""
    dims = viewer.dims
    if list(dims.order) != state["order"]:
        dims.order = tuple(state["order"])
    for axis in dims.not_displayed:
        dims.set_point(axis, state["point"][axis])
    viewer.scene.camera.center = tuple(state["center"])
    viewer.scene.camera.zoom = state["zoom"]
    for ours, visible in state["visible"].items():
        layer = names.get(ours)
        if layer is not None and layer.visible != visible:
            layer.visible = visible


def scenario_select(mode: str, params: dict) -> dict:
    import napari  # noqa: F401

    n = 1 + params["findings"]
    findings = [f"finding/{i}" for i in range(params["findings"])]
    order = findings[1:] + findings[:1]  # finding/0 is selected when the case opens
    result: dict = {}
    if mode == "numpy":
        viewer, frames = napari_viewer(params)
        ct, masks = load_arrays(params)
        add_plain(viewer, params, ct, masks)
        COUNTS.install_napari()
        first_frame(frames, n)
        frames.settle()
        names = {ours: viewer.layers[i] for i, ours in enumerate(params["layer_names"])}
        states = params["states"]
        apply_state(viewer, states[0], names)
        frames.settle()
        times, counted = [], []
        for state in states[1:]:
            before = COUNTS.snapshot()
            times.append(frames.timed(lambda s=state: apply_state(viewer, s, names)))
            counted.append(Counts.diff(COUNTS.snapshot(), before))
            frames.settle(quiet=0.1)
        result.update(times=times, counted=counted)
    else:
        viewer, frames, panel = open_ours(params)
        COUNTS.install_napari()
        session = panel.session
        first_frame(frames, n)
        frames.settle(until=lambda: session.stats is not None)
        result["layer_names"] = [layer.name for layer in viewer.layers]
        states = [view_state(viewer)]
        times, counted = [], []
        for rep in range(params["select_repeats"]):
            for item in order:
                before = COUNTS.snapshot()
                if rep == 0 and item == order[0]:
                    start_profile()
                times.append(frames.timed(lambda i=item: session.select([i])))
                stop_profile()
                counted.append(Counts.diff(COUNTS.snapshot(), before))
                states.append(view_state(viewer))
                frames.settle(quiet=0.1)
        result.update(times=times, counted=counted, states=states)
        # the same through the keyboard: Down on the canvas steps to the next finding
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        session.select([findings[0]])
        frames.settle(quiet=0.1)
        key_times = []
        for expected in findings[1:]:
            key_times.append(frames.timed(
                lambda: QTest.keyClick(frames.canvas.native, Qt.Key.Key_Down)))
            if session.selected[:1] != (expected,):
                raise RuntimeError(f"Down selected {session.selected}, expected {expected}")
            frames.settle(quiet=0.1)
        result["key_times"] = key_times
    result["canvas"] = list(frames.canvas.size)
    return result


def scenario_switch(mode: str, params: dict) -> dict:
    import napari  # noqa: F401

    n = 1 + params["findings"]
    switches = params["switches"]
    times, counted = [], []
    if mode == "numpy":
        viewer, frames = napari_viewer(params)
        ct, masks = load_arrays(params)
        add_plain(viewer, params, ct, masks)
        COUNTS.install_napari()
        first_frame(frames, n)
        frames.settle()

        def replace():
            viewer.layers.clear()
            if params.get("load"):  # baseline A in a running viewer: the next case's files
                add_plain(viewer, params, *load_arrays(params))
            else:
                add_plain(viewer, params, ct, masks)

        for _ in range(switches):
            before = COUNTS.snapshot()
            times.append(frames.timed(replace, until=layers_ready(viewer, n)))
            counted.append(Counts.diff(COUNTS.snapshot(), before))
            frames.settle(quiet=0.2)
    else:
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        from napari_grounding.layers import grounding_meta

        viewer, frames, panel = open_ours(params)
        COUNTS.install_napari()
        session = panel.session
        first_frame(frames, n)
        frames.settle(until=lambda: session.stats is not None)
        ids = session.case_ids
        step = 1
        for s in range(switches):
            index = ids.index(session.case.id)
            if not 0 <= index + step < len(ids):
                step = -step  # back and forth through the dataset's cases
            target = ids[index + step]
            key = Qt.Key.Key_PageDown if step > 0 else Qt.Key.Key_PageUp

            def shown(target=target):
                if session.case is None or session.case.id != target:
                    return False
                images = [la for la in viewer.layers if (grounding_meta(la) or {}).get("role") == "image"]
                cases = {grounding_meta(la)["case"].id for la in viewer.layers if grounding_meta(la)}
                return bool(images) and cases == {target} and len(viewer.layers) >= n

            before = COUNTS.snapshot()
            if s == 0:
                start_profile()
            times.append(frames.timed(lambda k=key: QTest.keyClick(frames.canvas.native, k),
                                      until=shown))
            stop_profile()
            counted.append(Counts.diff(COUNTS.snapshot(), before))
            frames.settle(quiet=0.2, until=lambda: session.stats is not None)
    return {"times": times, "counted": counted, "peak_rss": peak_rss(),
            "canvas": list(frames.canvas.size)}


SCENARIOS = {"open": scenario_open, "scroll": scenario_scroll, "select": scenario_select,
             "switch": scenario_switch}


def main() -> None:
    scenario, mode, params, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    result = SCENARIOS[scenario](mode, params)
    with open(out, "w") as f:
        json.dump(result, f)
    os._exit(0)  # skip napari's and Qt's teardown: nothing of it is measured


if __name__ == "__main__":
    main()
