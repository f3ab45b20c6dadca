"""Former home of parallel Region Fusion, now :mod:`napari_dip_l0.core.l0.parallel`.

A re-export only, for modules not yet moved to ``napari_dip_l0.core.l0`` (tests/test_denoise.py).
"""

from .l0.parallel import parallel_fusion

__all__ = ["parallel_fusion"]
