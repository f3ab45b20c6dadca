"""Screenshot of the DIP-ℓ0 widget at work in a real napari viewer, for the README.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [docs/widget.png]

Opens napari as `dip-l0 gui` does, presses Run, lets the run go on for a while
and saves the whole window (viewer, layer list, widget with its progress bar)
mid-run. napari's public API only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qtpy.QtWidgets import QApplication

from napari_dip_l0.cli import open_viewer


def main(out: str = "docs/widget.png", seconds: float = 25.0) -> None:
    viewer, widget = open_viewer("textured_cartoon")
    viewer.window.resize(1500, 900)
    widget._persist = False  # neither read from nor written to this user's saved settings
    for name, value in (("planes", "current plane"), ("keep_every", 0), ("seed", 0), ("device", "auto"),
                        ("l0_solver", "auto"), ("replace", False), ("preview_every", 5)):
        getattr(widget, name).value = value
    widget._on_mode()  # the shipped preset
    widget.run_button.native.click()
    t0 = time.perf_counter()
    # Until the run is about half done (warm-up, preview and progress all visible), at most `seconds`.
    while time.perf_counter() - t0 < seconds and widget.worker is not None and (
            not widget.progress.max or widget.progress.value < 0.5 * widget.progress.max):
        QApplication.processEvents()
        time.sleep(0.02)
    # Show the live preview beside the input.
    viewer.grid.enabled = True
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False)
    print(f"wrote {out}; status: {widget.status.value}")
    widget.stop()
    if widget.worker is not None:
        widget.worker.await_workers(msecs=60_000)
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:2])
