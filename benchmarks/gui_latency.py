"""How long does the napari GUI thread stall while the DIP-ℓ0 widget works?

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_latency.py

Opens a real napari viewer, docks the DIP-ℓ0 widget the way napari does
(``add_plugin_dock_widget``) and, for each case, presses Run (or ℓ0 preview)
with a 10 ms QTimer ticking on the GUI thread. The largest gap between two
ticks, minus the 10 ms period, is the longest the GUI was frozen: napari stays
responsive when it is below ~100 ms. Cases: a 2-D image, an RGB image, a
3-plane stack (all planes) and the ℓ0 preview on a 512² RGB image. Few iterations, so the
whole run takes a couple of minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _image(shape, dtype, seed=0):
    """A bright rectangle on a noisy background, in ``dtype``'s range."""
    rng = np.random.default_rng(seed)
    rgb = shape[-1] == 3
    h, w = shape[-3:-1] if rgb else shape[-2:]
    img = np.zeros(shape)
    region = (Ellipsis, slice(h // 6, h // 2), slice(w // 5, 3 * w // 4)) + ((slice(None),) if rgb else ())
    img[region] = 0.6
    img = np.clip(img + rng.normal(0.2, 0.05, shape), 0, 1)
    return (img * np.iinfo(dtype).max).astype(dtype)


class _Ticks:
    """A 10 ms QTimer on the GUI thread that remembers when it fired."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def start(self):
        self.times = [time.perf_counter()]
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        self.times.append(time.perf_counter())
        gaps = np.diff(self.times)
        return float(gaps.max() * 1000 - 10)


def _wait(app, done, timeout):
    t0 = time.perf_counter()
    while not done() and time.perf_counter() - t0 < timeout:
        app.processEvents()
        time.sleep(0.001)


def _busy(widget) -> bool:
    preview = getattr(widget, "preview", None)
    return getattr(widget, "worker", None) is not None or getattr(preview, "worker", None) is not None


CASES = ("2d", "rgb", "stack", "l0")


def _watchdog(ticks: "_Ticks", gui_thread: int, stop) -> None:
    """--trace: print every thread's stack whenever the GUI thread has not ticked for 80 ms.

    A GUI thread that waits in ``sleep``/``processEvents`` during a stall is
    waiting for the GIL, held by the thread shown below it.
    """
    import sys
    import traceback

    reported = None
    while not stop.is_set():
        time.sleep(0.03)
        last = ticks.times[-1] if ticks.times else time.perf_counter()
        if reported is not None and len(ticks.times) > 1 and ticks.times[-2] == reported:
            print(f"  (that stall lasted {1000 * (ticks.times[-1] - reported):.0f} ms)", flush=True)
            reported = None
        if time.perf_counter() - last > 0.08 and reported != last:
            reported = last
            lines = [f"stall, {1000 * (time.perf_counter() - last):.0f} ms so far"]
            for ident, frame in sys._current_frames().items():
                stack = [f"{fs.filename.split('site-packages/')[-1]}:{fs.lineno} {fs.name}"
                         for fs in traceback.extract_stack(frame)][-12:]
                if ident == gui_thread or not any("threading.py" in line for line in stack[-2:]):
                    lines.append(("  GUI thread" if ident == gui_thread else "  worker") + "\n      "
                                 + "\n      ".join(stack))
            print("\n".join(lines), flush=True)


def _measure(case: str, iterations: int, n: int, trace: bool = False) -> None:
    """One case in a fresh viewer; prints one line."""
    import napari
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    torch.set_num_threads(2)
    viewer = napari.Viewer(title="gui latency")
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip-l0", "DIP-ℓ0")
    widget._persist = False  # leave this user's saved settings alone
    app = QApplication.instance()
    name, data, kwargs = {
        "2d": ("2-D image", lambda: _image((n, n), np.uint16), {}),
        "rgb": ("RGB image", lambda: _image((n, n, 3), np.uint8, 1), {"rgb": True}),
        "stack": ("stack, all planes", lambda: _image((3, n // 2, n // 2), np.uint16, 2), {}),
        "l0": ("ℓ0 preview", lambda: _image((2 * n, 2 * n, 3), np.uint8, 3), {"rgb": True}),
    }[case]
    data = data()
    layer = viewer.add_image(data, name="input", **kwargs)
    widget.image.value = layer
    widget.iterations.value = iterations
    widget.preview_every.value = 2
    widget.keep_every.value = iterations // 2
    widget.planes.value = "all planes"
    for field, value in (("seed", 0), ("device", "auto"), ("l0_solver", "auto"), ("replace", False)):
        if hasattr(widget, field) and (not hasattr(getattr(widget, field), "choices")
                                       or value in getattr(widget, field).choices):
            getattr(widget, field).value = value
    # The widget warms torch and numba up in the background when it opens (before any run); let it finish.
    from napari_dip_l0 import _widget

    warmed = getattr(_widget, "WARMED", None)
    _wait(app, lambda: warmed is None or warmed.is_set(), 120)
    _wait(app, lambda: False, 0.5)  # let the viewer draw the input first
    ticks = _Ticks()
    ticks.start()
    if trace:
        import gc
        import threading

        gc_start = {}

        def gc_timer(phase, info):
            if phase == "start":
                gc_start["t"] = time.perf_counter()
            elif "t" in gc_start and time.perf_counter() - gc_start["t"] > 0.03:
                print(f"garbage collection, generation {info['generation']}: "
                      f"{1000 * (time.perf_counter() - gc_start['t']):.0f} ms", flush=True)

        gc.callbacks.append(gc_timer)

        stop = threading.Event()
        threading.Thread(target=_watchdog, args=(ticks, threading.get_ident(), stop), daemon=True).start()
    t0 = time.perf_counter()
    button = widget.l0_button if case == "l0" else widget.run_button
    QTimer.singleShot(20, button.native.click)
    if case == "l0":
        done = lambda: not _busy(widget) and any(lay.name != "input" for lay in viewer.layers)  # noqa: E731
    else:
        done = lambda: time.perf_counter() - t0 > 0.1 and not _busy(widget)  # noqa: E731
    _wait(app, done, 600)
    seconds = time.perf_counter() - t0
    _wait(app, lambda: False, 0.5)  # the result layer is drawn
    stall = ticks.stop()
    if trace:
        stop.set()
    print(f"| {name} | {data.shape} | {seconds:.1f} s | {stall:.0f} ms |", flush=True)
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=12, help="iterations per run (first plane)")
    parser.add_argument("--size", type=int, default=256, help="side of the 2-D and RGB images (stack: half)")
    parser.add_argument("--case", choices=CASES, help="run one case here (default: each in a fresh process)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (median reported)")
    parser.add_argument("--trace", action="store_true", help="print the GUI thread's stack at each stall")
    args = parser.parse_args()
    if args.case:
        _measure(args.case, args.iterations, args.size, args.trace)
        return
    import subprocess
    import sys

    print("| case | shape | wall time | longest GUI-thread stall |\n|---|---|---|---|", flush=True)
    for case in CASES:
        rows = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--case", case, "--iterations", str(args.iterations),
                                  "--size", str(args.size)], check=False, capture_output=True, text=True).stdout
            rows += [line for line in out.splitlines() if line.startswith("|")]
        if not rows:
            print(f"| {case} | failed | | |", flush=True)
            continue
        cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
        stalls = sorted(float(c[3].split()[0]) for c in cells)
        walls = sorted(float(c[2].split()[0]) for c in cells)
        if len(rows) == 1:
            print(rows[0], flush=True)
        else:
            print(f"| {cells[0][0]} | {cells[0][1]} | {np.median(walls):.1f} s | {np.median(stalls):.0f} ms "
                  f"(median of {len(rows)}; {stalls[0]:.0f}–{stalls[-1]:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
