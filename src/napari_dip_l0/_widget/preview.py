"""The DIP-ℓ0 widget's ℓ0 preview: ℓ0 smoothing alone at the form's λ, as a layer that then follows λ.

Computed in a worker; λ changes are debounced (superqt ``qdebounced``), and
a change while one is computed asks for one more, with the newest λ, once it
is done (requests merge, never queue up).
"""

from __future__ import annotations

import time

from napari.qt.threading import create_worker
from superqt.utils import qdebounced

from ..core.api import l0_preview
from ..core.jpeg import file_or_pixels
from ..core.presets import FILE_PRESETS, PRESETS
from .job import CURRENT, MODES, display_dtype, jpeg_file, l0_provenance, layer_array, result_kwargs, select, solver_arg
from .worker import GC_HOLD

# The ℓ0 preview follows λ this long (ms) after the last change.
L0_DEBOUNCE_MS = 300


class L0Preview:
    """The preview of one form (:class:`~napari_dip_l0._widget.form.DipL0Widget`)."""

    def __init__(self, form):
        self._form = form
        self.worker = None  # the preview being computed
        self._again = False  # λ changed while it was computed: compute once more
        self.layer = None  # the preview layer, which follows λ
        self._source_id = None  # id() of the layer it was made from
        self.follow = qdebounced(self._follow, timeout=L0_DEBOUNCE_MS)

    def _shown(self) -> bool:
        return self.layer is not None and self.layer in self._form.viewer.layers

    def on_lam(self, value=None):
        """λ changed: once asked for (and while its layer is there), the preview follows, debounced."""
        if self._shown() and self._form.run_status.idle:
            self.follow()

    def _follow(self):
        if self._shown() and not self._form.closed:
            self.request()

    def request(self, value=None):
        """ℓ0 smoothing alone at the current λ, as a layer, computed in a worker: for choosing λ."""
        form = self._form
        if self.worker is not None:
            self._again = True  # one more once this one is done, with the newest λ
            return
        layer = form.image.value
        if layer is None:
            form.notify_error("choose an image layer first")
            return
        mode = MODES[form.mode.value]
        # "auto": the preset's v-step solver, as a run would use it.
        method = solver_arg(form.l0_solver.value) or PRESETS[mode].l0_solver
        lam = "auto" if form.lam_auto.value else float(form.lam.value)
        try:
            sel = select(layer, CURRENT, form.viewer.dims.point)
        except (ValueError, TypeError, MemoryError) as exc:
            form.notify_error(str(exc))
            return
        t0 = time.perf_counter()

        def compute():
            # On the run's own intensity scale and with its λ, so the preview shows what a run's ℓ0 step does;
            # a run deblocks with the file (or the quantisation its pixels show) where it can, so λ as that run
            # chooses it.
            kwargs = {"lam": lam, "method": method, "channel_axis": sel.channel_axis,
                      "dtype": display_dtype(layer, sel)}
            path = jpeg_file(layer, sel)[0] if mode in FILE_PRESETS else None
            (planes, used), _ = file_or_pixels(lambda **jpeg: l0_preview(sel.data, mode, **kwargs, **jpeg), path,
                                               sel.data if mode in FILE_PRESETS else None, sel.channel_axis)
            return layer_array(planes, sel), used

        worker = self.worker = create_worker(compute, _ignore_errors=True)
        worker.returned.connect(lambda result: self._done(layer, sel, method, result[1], result[0], t0))
        worker.errored.connect(lambda exc: form.notify_error(f"{type(exc).__name__}: {exc}"))
        worker.finished.connect(self._finished)
        form.run_status.text = f"ℓ0 preview λ={'auto' if lam == 'auto' else format(lam, 'g')}…"
        GC_HOLD.hold(worker)  # released in _finished, after the layer is in place
        worker.start()

    def _done(self, layer, sel, method, lam, result, t0):
        form = self._form
        if form.closed or layer not in form.viewer.layers:
            return
        kwargs = result_kwargs(layer, sel, result, l0_provenance(method, lam, preview=True))
        name = f"{layer.name} · ℓ0 λ={lam:.3g} (preview)"
        if self._shown() and self._source_id == id(layer):
            self.layer.data = result
            self.layer.metadata = kwargs["metadata"]
            self.layer.name = name
        else:
            self.layer = form.viewer.add_image(result, name=name, **kwargs)
            self._source_id = id(layer)
        if form.run_status.idle:
            form.run_status.text = f"ℓ0 preview λ={lam:.3g}: {time.perf_counter() - t0:.2f} s (follows λ)"

    def _finished(self):
        GC_HOLD.release(self.worker)
        self.worker = None
        if self._again and not self._form.closed:
            self._again = False
            self.request()

    def on_layer_removed(self, layer) -> None:
        if layer is self.layer:
            self.layer = None

    def close(self) -> None:
        try:
            self.follow.cancel()
        except RuntimeError:  # at interpreter exit Qt may already have deleted the timer
            pass
        if self.worker is not None:
            self.worker.quit()
