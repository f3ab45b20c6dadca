"""docs/streaming.png: the DIP-ℓ0 widget streaming a Dask-backed stack read from Zarr, mid-run, then stopped.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot_streaming.py running.png stopped.png
"""
import os
import sys
import tempfile
import time

import dask.array as da
import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

import napari_dip_l0
from napari_dip_l0._widget import DipL0Widget

png = os.path.join(os.path.dirname(napari_dip_l0.__file__), "samples", "nuclei_bbbc038.png")
base = np.asarray(Image.open(png).convert("L"), np.float64)[:192, :192] / 255
rng = np.random.default_rng(0)
stack = np.stack([np.roll(base, 3 * z, axis=1) for z in range(12)])
noisy = (100 + 2 * rng.poisson(stack * 30)).astype(np.uint16)
src = tempfile.mkdtemp() + "/stack.zarr"
da.from_array(noisy, chunks=(1, 192, 192)).to_zarr(src)
viewer = napari.Viewer(show=True)
viewer.window.resize(1500, 900)
layer = viewer.add_image(da.from_zarr(src), name="nuclei stack (zarr)", scale=(2.0, 0.65, 0.65),
                         contrast_limits=(100, 170))
w = DipL0Widget(viewer, persist=False)
viewer.window.add_dock_widget(w, name="DIP-ℓ0")
w.image.value = layer
w.mode.value = "camera-noise denoising"
w.iterations.value = 60
w.planes.value = "all planes"
w.preview_every.value = 2
viewer.dims.set_current_step(0, 0)
w.run()
t0 = time.time()
app = QApplication.instance()
while time.time() - t0 < 600:
    app.processEvents()
    job = w._job
    if job is not None and job.store is not None and job.store.written >= 2 and job.preview is not None:
        break
    time.sleep(0.02)
for _ in range(50):
    app.processEvents()
    time.sleep(0.02)
# Show the plane being fitted: move the slider to it.
p = w._job.preview
viewer.dims.set_point(0, p.translate[0])
for _ in range(30):
    app.processEvents()
    time.sleep(0.02)
viewer.screenshot(sys.argv[1], canvas_only=False)
print("layers:", [(lay.name, type(lay.data).__name__, lay.data.shape) for lay in viewer.layers])
print("status:", w.status.value)
w.stop()
t0 = time.time()
while w.worker is not None and time.time() - t0 < 120:
    app.processEvents()
    time.sleep(0.05)
print("after stop:", [(lay.name, type(lay.data).__name__) for lay in viewer.layers])
viewer.dims.set_current_step(0, 0)
for _ in range(30):
    app.processEvents()
    time.sleep(0.02)
viewer.screenshot(sys.argv[2], canvas_only=False)
viewer.close()
