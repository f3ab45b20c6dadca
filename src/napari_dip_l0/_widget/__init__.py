"""The napari dock widgets: DIP-ℓ0 with live preview and Stop (:mod:`.form`), and fast ℓ0 smoothing
(:mod:`.fast`).

All maths lives in :mod:`napari_dip_l0.core`. Here, :mod:`.job` decides (pure
functions: selection, names, provenance, progress text), :mod:`.worker` runs
the core generator off the GUI thread and turns snapshots into layers,
:mod:`.status` holds the run's state, :mod:`.preview` the ℓ0 preview,
:mod:`.closing` notices the widget leaving, and :mod:`.form` is the form that
ties them. Only napari's public API is used. napari.yaml names
``napari_dip_l0._widget:DipL0Widget`` and ``napari_dip_l0._widget:l0_widget``.

The names below load on first use, so :mod:`.job`, :mod:`.status` and
:mod:`.worker` import without Qt.
"""

from importlib import import_module

_EXPORTS = {"DipL0Widget": ".form", "l0_widget": ".fast", "RunState": ".status", "WARMED": ".worker"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
