"""The fast ℓ0 widget: ℓ0 gradient smoothing alone, a result in about a second, for choosing λ.

No ``from __future__ import annotations`` here: magicgui resolves the
annotations of :func:`l0_widget` at runtime, and napari builds it from the
manifest by that function's real types.
"""

from typing import Annotated

import napari
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtCore import QTimer

from .. import l0_smooth
from ..core.l0 import L0_SOLVERS
from .job import ALL, l0_provenance, layer_array, layer_kwargs, select, solver_label


def l0_layer_tuple(image, lam: float, method: str):
    """ℓ0 smoothing of a whole layer, as a napari layer-data tuple (runs in a worker)."""
    sel = select(image, ALL)
    result = layer_array(l0_smooth(sel.data, lam, method=method, channel_axis=sel.channel_axis), sel)
    kwargs = layer_kwargs(image, sel)
    kwargs["metadata"]["dip_l0"] = l0_provenance(method, lam)
    kwargs["name"] = f"{image.name} · ℓ0 λ={lam:g} ({solver_label(method).split(' (')[0]})"
    return result, kwargs, "image"


def l0_widget(
    image: Annotated[napari.layers.Image, {"label": "image", "tooltip": "The image layer to smooth."}],
    lam: Annotated[float, {"min": 0.0, "max": 1.0, "step": 0.005, "label": "λ (strength)",
                           "tooltip": "Weight of the ℓ0 gradient term, on intensities scaled to 0–1 (no unit). "
                                      "Larger: fewer, larger flat regions."}] = 0.03,
    method: Annotated[str, {"widget_type": "ComboBox", "label": "ℓ0 solver",
                            "choices": [(solver_label(n), n) for n in L0_SOLVERS],
                            "tooltip": "Region Fusion: exact, sharp flat regions (the parallel form is the "
                                       "fastest). FFT: approximate, softer."}
                      ] = "parallel_fusion",
) -> FunctionWorker[napari.types.LayerDataTuple]:
    """ℓ0 gradient smoothing alone, computed in the background: a result in about a second, for choosing λ."""
    if image is None:
        raise ValueError("choose an image layer")
    worker = create_worker(l0_layer_tuple, image, float(lam), method, _ignore_errors=False)
    # napari connects worker.returned to adding the layer once this returns; start after that.
    QTimer.singleShot(0, worker.start)
    return worker
