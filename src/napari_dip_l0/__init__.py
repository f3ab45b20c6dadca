"""napari-dip-l0: edge-preserving smoothing and JPEG deblocking by DIP-ℓ0.

The core (``napari_dip_l0.core``) imports neither Qt nor napari.
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-dip-l0")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .core.api import dip_l0_deblock, dip_l0_smooth, l0_smooth
from .core.presets import PRESETS, Preset
from .core.run import DipL0Run, Snapshot, iter_dip_l0

__all__ = [
    "__version__",
    "l0_smooth",
    "dip_l0_smooth",
    "dip_l0_deblock",
    "iter_dip_l0",
    "DipL0Run",
    "Snapshot",
    "Preset",
    "PRESETS",
]
