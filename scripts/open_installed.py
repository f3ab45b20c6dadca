"""Open every widget and sample of the installed plugin in a real napari viewer, as a hub user's napari does.

Run by `make dist-check` in a fresh environment holding only napari[all] and
the built wheel, under a virtual display (xvfb-run), from outside the source
tree. The manifest is the one napari discovers (npe2, through the entry
point), and it must come from the installed package, not from a source tree.
Exit status 1 with the failures on stderr; each check is printed as it passes.

    xvfb-run -a python scripts/open_installed.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import traceback
from pathlib import Path

PLUGIN = "napari-dip-l0"
MODES = {"smooth", "denoise", "deblock"}


def _settle(timeout_ms: int = 120_000) -> None:
    from qtpy.QtCore import QThreadPool
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    QThreadPool.globalInstance().waitForDone(timeout_ms)
    QApplication.processEvents()


def main() -> int:
    import napari
    import npe2

    import napari_dip_l0

    passed, failed = [], []

    def check(name, ok, why=""):
        (passed if ok else failed).append(name)
        print(f"{'ok' if ok else 'FAILED'}: {name}{'' if ok else ': ' + why}", file=sys.stdout if ok else sys.stderr)

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(napari_dip_l0.__file__).resolve().parent
    check(f"napari_dip_l0 {napari_dip_l0.__version__} imported from the environment ({package})",
          package.parent == site, f"not under {site}")
    pm = npe2.PluginManager.instance()
    pm.discover()  # what napari does at start-up
    manifest = pm.get_manifest(PLUGIN)
    shipped = package / "napari.yaml"
    check("napari discovers the manifest shipped inside the installed package",
          shipped.is_file() and npe2.PluginManifest.from_file(shipped).contributions == manifest.contributions,
          f"{shipped} missing or not the manifest napari found")
    widgets = [w.display_name for w in manifest.contributions.widgets or []]
    samples = [s.key for s in manifest.contributions.sample_data or []]
    check(f"manifest lists {len(widgets)} widgets and {len(samples)} samples", widgets and samples)

    viewer = napari.Viewer(show=False)
    try:
        for name in widgets:
            try:
                dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
                check(f"widget {name!r} opens", dock is not None and widget is not None)
            except Exception:
                check(f"widget {name!r} opens", False, traceback.format_exc())
        for key in samples:
            try:
                layers = viewer.open_sample(PLUGIN, key)
                modes = {layer.metadata.get("dip_l0_mode") for layer in layers}
                ok = bool(layers) and all(layer.data.shape[0] >= 64 for layer in layers) and len(modes) == 1 \
                    and modes <= MODES
                jpeg = [layer.metadata["dip_l0_jpeg_file"] for layer in layers if "dip_l0_jpeg_file" in layer.metadata]
                ok = ok and all(Path(p).is_file() and Path(p).resolve().is_relative_to(package) for p in jpeg)
                check(f"sample {key!r} opens ({', '.join(layer.name for layer in layers)}; mode {modes})", ok,
                      f"layers {[(layer.name, layer.data.shape, layer.metadata) for layer in layers]}")
            except Exception:
                check(f"sample {key!r} opens", False, traceback.format_exc())
    finally:
        _settle()  # the widget's background work (a noise estimate, a preview) ends before its viewer closes
        viewer.close()
        _settle()

    # The console script: its version, and the refusal of `gui` without a display (one line, status 2).
    exe = Path(sys.executable).with_name("dip-l0")
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    check("dip-l0 --version", res.returncode == 0 and napari_dip_l0.__version__ in res.stdout, res.stderr)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    res = subprocess.run([str(exe), "gui"], capture_output=True, text=True, env=env)
    check("dip-l0 gui without a display: one line, exit status 2",
          res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, f"{res.returncode}: {res.stderr!r}")

    print(f"open_installed: {len(passed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
