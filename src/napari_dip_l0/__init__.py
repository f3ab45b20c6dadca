"""napari-dip-l0: edge-preserving smoothing, denoising and JPEG deblocking by DIP-ℓ0.

The core (``napari_dip_l0.core``) imports neither Qt nor napari. The names
below are loaded on first use, so ``import napari_dip_l0.cli`` does not pull
in torch before the command line has taken over Ctrl-C.
"""

from importlib import import_module

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-dip-l0")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "l0_smooth": ".core.api",
    "dip_l0_smooth": ".core.api",
    "dip_l0_denoise": ".core.api",
    "dip_l0_deblock": ".core.api",
    "iter_dip_l0": ".core.run",
    "DipL0Run": ".core.run",
    "Snapshot": ".core.run",
    "Preset": ".core.presets",
    "PRESETS": ".core.presets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
