"""Screenshot of the DIP-ℓ0 widget at work in a real napari viewer, for the README.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot.py [docs/widget.png]

Opens napari as `dip-l0 gui` does, presses Run, lets the run go on for a while
and saves the whole window (viewer, layer list, widget, progress) mid-run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qtpy.QtWidgets import QApplication

from napari_dip_l0.cli import open_viewer


def main(out: str = "docs/widget.png", seconds: float = 25.0) -> None:
    viewer, widget = open_viewer("textured_cartoon")
    viewer.window._qt_window.resize(1500, 900)
    widget._on_mode()  # the shipped preset, not settings saved by earlier sessions
    widget.preview_every.value = 5
    widget.run()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and widget.worker is not None:
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
