"""What the DIP-ℓ0 widget decides, as pure functions: no Qt, no viewer, testable on plain layers.

Which part of a layer a run smooths, which modes and solvers the form
offers, what a result is called and what it carries (spatial metadata, look,
provenance), and the progress and time-left text.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import __version__
from ..core.l0 import L0_SOLVERS
from ..core.presets import FILE_PRESETS, PRESETS, Preset, get_preset
from ..core.validation import is_lazy

MODES = {"edge-preserving smoothing": "smooth", "camera-noise denoising": "denoise", "JPEG deblocking": "deblock"}
CURRENT, ALL = "current plane", "all planes"
# Largest plane (pixels) taken from a multiscale pyramid; finer levels are skipped.
MAX_PLANE_PIXELS = 4096 * 4096
#: Layer metadata key naming the mode a layer is meant for (the bundled samples set it).
# Layer metadata a layer may carry for this plugin (the samples set both): the mode it is for, and the JPEG file
# its pixels were decoded from, where napari's own source path cannot say so (a sample's data, not a file opened).
MODE_KEY = "dip_l0_mode"
JPEG_FILE_KEY = "dip_l0_jpeg_file"
JPEG_NOTE = "using the JPEG file's quantisation tables"


# Readable names of the ℓ0 solvers; a solver the core adds later shows under its own name.
SOLVER_LABELS = {
    "parallel_fusion": "Region Fusion (exact, sharp edges; every core)",
    "region_fusion": "Region Fusion, sequential (the reference; slower)",
    "fft": "FFT (fast, approximate)",
}
AUTO_SOLVER = "automatic (the mode's preset)"
DEVICE_LABELS = {"auto": "automatic (GPU if available)", "cpu": "CPU", "cuda": "NVIDIA GPU (CUDA)",
                 "mps": "Apple GPU (MPS)"}


# ----- choices of the form ------------------------------------------------------------------------------
def solver_label(name: str) -> str:
    return SOLVER_LABELS.get(name, name.replace("_", " "))


def solver_choices(solvers=None) -> list[tuple[str, str]]:
    """The form's ℓ0 solver choices: the mode's preset ("auto"), then each solver of the core in words."""
    return [(AUTO_SOLVER, "auto")] + [(solver_label(n), n) for n in (L0_SOLVERS if solvers is None else solvers)]


def solver_arg(choice: str) -> str | None:
    """The ``l0_solver`` passed to the core for the form's solver choice: None (the preset's) for "auto"."""
    return None if choice == "auto" else choice


def devices() -> list[tuple[str, str]]:
    """The devices this machine offers, in words."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return [(DEVICE_LABELS.get(n, n), n) for n in names]


def mode_label(layer) -> str | None:
    """The form's mode label for the mode a layer's metadata names (``dip_l0_mode``), or None."""
    wanted = getattr(layer, "metadata", {}).get(MODE_KEY)
    return next((label for label, mode in MODES.items() if mode == wanted), None)


def is_result(layer) -> bool:
    """Whether ``layer`` is one of this plugin's outputs (they carry ``dip_l0`` provenance)."""
    return "dip_l0" in layer.metadata


def source_file(layer) -> str | None:
    """The file ``layer`` was opened from: napari's source path, else the one its metadata names
    (``JPEG_FILE_KEY``); None if neither."""
    path = getattr(getattr(layer, "source", None), "path", None)
    return path or getattr(layer, "metadata", {}).get(JPEG_FILE_KEY)


def opened_from_jpeg(layer) -> bool:
    """Whether ``layer`` was opened from a JPEG file (its source file has a JPEG suffix)."""
    from ..core.io import JPEG

    path = source_file(layer)
    return bool(path) and Path(path).suffix.lower() in JPEG


def tables_note(qcs) -> str:
    """What bounds a deblocking run's estimates, for its status line ('' for nothing): the JPEG file's tables,
    or the quantisation its pixels show (a constraint with a ``quality``, :mod:`..core.jpeg_history`)."""
    if qcs is None:
        return ""
    if qcs.quality is not None:
        return f"within the JPEG quantisation its pixels show (quality {qcs.quality})"
    return JPEG_NOTE


def mode_preset(mode: str, layer) -> Preset:
    """The preset a run of ``mode`` on ``layer`` would likely start from: the file preset for a layer opened
    from a JPEG file, or whose pixels show a JPEG's quantisation, where the mode has one."""
    return get_preset(mode, jpeg=mode in FILE_PRESETS and layer is not None and (
        opened_from_jpeg(layer) or shows_jpeg(layer)))


def shows_jpeg(layer) -> bool:
    """Whether the pixels of ``layer`` (uint8, grey or RGB, one plane) show a JPEG's quantisation (a run
    deblocks within it, :mod:`..core.jpeg_history`); 0.2 s for a 4096² RGB layer."""
    from ..core.jpeg_history import estimate_quality, readable

    data = layer.data
    if getattr(layer, "multiscale", False) or not readable(data, -1 if layer.rgb else None):
        return False
    return estimate_quality(data) is not None


def pixel_iterations(mode: str, shown: Preset, iterations: int) -> int:
    """Iterations of a run on the pixels alone: where the file preset's iteration cap was shown (and kept),
    the mode's own count instead."""
    filed = get_preset(mode, jpeg=True)
    if shown == filed and filed != PRESETS[mode] and iterations == filed.iterations:
        return PRESETS[mode].iterations
    return iterations


# ----- the part of a layer a run smooths ----------------------------------------------------------------
class Selection(NamedTuple):
    """The part of a layer that a run smooths, and how to place results back."""

    data: np.ndarray
    channel_axis: int | None
    plane_index: tuple | None  # leading indices of the one plane, or None for the whole layer
    alpha: np.ndarray | None  # RGBA layers: the alpha channel, put back unchanged
    downsample: np.ndarray  # per layer axis: size of the full-resolution level / size of the level used
    note: str


def select(layer, planes: str, point=None) -> Selection:
    """The array to smooth: the plane at world ``point`` (the viewer's ``dims.point``) or the whole layer,
    loaded lazily (a dask layer reads that plane only; all planes of a dask layer stay a dask array, which a
    run streams, :mod:`.stream`)."""
    note = ""
    data = layer.data
    n_axes = layer.ndim  # rgb layers: without the colour axis
    downsample = np.ones(n_axes)
    if getattr(layer, "multiscale", False):
        levels = list(data)
        level = 0
        while level < len(levels) - 1 and np.prod(levels[level].shape[n_axes - 2 : n_axes]) > MAX_PLANE_PIXELS:
            level += 1
        if level:
            note = f"multiscale: level {level} used, finer levels exceed {MAX_PLANE_PIXELS} pixels per plane"
        downsample = np.array(levels[0].shape[:n_axes], float) / np.array(levels[level].shape[:n_axes])
        data = levels[level]
    lead = n_axes - 2
    plane_index = None
    if lead > 0 and planes == CURRENT:
        # The viewer's position in world coordinates, mapped through this layer's transforms.
        position = layer.world_to_data(point) if point is not None else np.zeros(n_axes)
        index = np.round(np.asarray(position[:lead]) / downsample[:lead])
        plane_index = tuple(int(min(max(i, 0), n - 1)) for i, n in zip(index, data.shape[:lead]))
        data = data[plane_index]
    if plane_index is not None or lead <= 0 or not is_lazy(data):
        data = np.asarray(data)
    alpha = None
    if layer.rgb and data.shape[-1] == 4:
        data, alpha = data[..., :3], data[..., 3:]
    return Selection(data, -1 if layer.rgb else None, plane_index, alpha, downsample, note)


def jpeg_file(layer, sel: Selection) -> tuple[str | None, str]:
    """The JPEG file ``layer`` was opened from, if its pixels are that file's as they stand; else None, and why.

    Only a whole, unedited, single-resolution layer qualifies: the file's
    coefficients describe exactly the pixels it decodes to, nothing else.
    """
    from ..core.jpeg import same_pixels

    if not opened_from_jpeg(layer):
        return None, ""
    path = source_file(layer)
    if getattr(layer, "multiscale", False) or sel.plane_index is not None or sel.alpha is not None:
        return None, "the layer is not the JPEG file's whole image"
    why_not = same_pixels(path, sel.data)
    return (None, why_not) if why_not else (str(path), "")


# ----- results as layers --------------------------------------------------------------------------------
def layer_kwargs(layer, sel: Selection) -> dict:
    """Spatial metadata, look and metadata of ``layer`` for a layer made from ``sel``."""
    kwargs = {
        "scale": np.array(layer.scale, float) * sel.downsample,
        "translate": np.array(layer.translate, float),
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine,
        "blending": layer.blending,
        "rgb": layer.rgb,
        "gamma": layer.gamma,
        "metadata": dict(layer.metadata),
    }
    for name in ("units", "axis_labels"):
        if hasattr(layer, name):
            kwargs[name] = getattr(layer, name)
    if not layer.rgb:
        kwargs["colormap"] = layer.colormap
        kwargs["contrast_limits"] = tuple(layer.contrast_limits)
    if sel.plane_index is not None:
        # One plane kept as a slab of thickness 1, placed where it came from in the stack.
        k = len(sel.plane_index)
        kwargs["translate"][:k] += np.asarray(sel.plane_index) * kwargs["scale"][:k]
    return kwargs


def display_dtype(layer, sel: Selection):
    """The dtype of a result layer: the mode's choice (None), but an RGB layer's own, since napari draws RGB
    thumbnails of floats on [0, 1] whatever their contrast limits (a float 0-255 result would look white)."""
    return sel.data.dtype if layer.rgb else None


def layer_array(image: np.ndarray, sel: Selection) -> np.ndarray:
    """A result as layer data: alpha put back, and one plane kept as a slab of thickness 1."""
    if sel.alpha is not None:
        image = np.concatenate([image, sel.alpha.astype(image.dtype, copy=False)], axis=-1)
    return image if sel.plane_index is None else image.reshape((1,) * len(sel.plane_index) + image.shape)


def result_kwargs(layer, sel: Selection, image: np.ndarray, provenance: dict) -> dict:
    """:func:`layer_kwargs` for a result ``image`` with ``provenance`` as its ``dip_l0`` metadata: the
    source's look, except contrast limits that it would fill less than a quarter of (a denoised camera
    frame whose hot pixels set the source's limits would show black), which become the result's own range."""
    kwargs = layer_kwargs(layer, sel)
    if "contrast_limits" in kwargs and image.size:
        lo, hi = kwargs["contrast_limits"]
        a, b = float(np.min(image)), float(np.max(image))
        if b > a and hi > lo and min(b, hi) - max(a, lo) < 0.25 * (hi - lo):
            kwargs["contrast_limits"] = (a, b)
    kwargs["metadata"]["dip_l0"] = provenance
    return kwargs


def plane_words(sel: Selection) -> str:
    return "" if sel.plane_index is None else " · plane " + ",".join(str(i) for i in sel.plane_index)


def result_name(source: str, sel: Selection, iterations: int, snap) -> str:
    """What made a result, in its name: λ, iterations (or where it stopped), the plane."""
    lam = f"λ={snap.preset.lam:.3g}"
    if not snap.done:
        runs = f"stopped at {snap.iteration}/{snap.total}"
    elif snap.kept and snap.planes * snap.tiles == 1:  # the iteration whose estimate the stopping rule kept
        runs = f"{snap.kept} it (stopping rule)"
    else:
        runs = f"{iterations} it"
        later = (snap.total - iterations * snap.tiles) // max(1, (snap.planes - 1) * snap.tiles)
        if snap.planes > 1 and later != iterations:  # warm-started planes run their own count
            runs += f", then {later} a plane"
    return f"{source} · DIP-ℓ0 {lam}, {runs}{plane_words(sel)}"


def kept_name(source: str, sel: Selection, snap) -> str:
    """The name of an estimate kept along the way (``keep every``)."""
    return f"{source} · DIP-ℓ0 λ={snap.preset.lam:.3g} @{snap.iteration}{plane_words(sel)}"


def provenance(params: dict, sel: Selection, snap) -> dict:
    """Parameters and outcome of a run, stored in the result layer's metadata."""
    return {
        "method": "DIP-ℓ0",
        **params,
        "lam": snap.preset.lam,  # the λ used, also when the run chose it
        "lam_auto": params["lam"] == "auto",
        # (a, b) of the noise variance a·x + b on the [0, 1] scale when the fit (and λ) was on the stabilised image
        "noise_model": list(snap.noise_model) if snap.noise_model else None,
        "l0_solver": snap.preset.l0_solver,  # the solver used, also when the preset chose it
        # the fraction of each quantisation interval estimates were kept in, when deblocking from the file
        "jpeg_box": snap.preset.jpeg_box if params.get("jpeg_tables") else None,
        "iterations_done": snap.iteration,
        "planes": "all" if sel.plane_index is None else list(sel.plane_index),
        "seconds": round(snap.seconds, 3),
        "stopped_early": not snap.done,
        # planes of the run fitted to the end; of a stopped run, the next one is its estimate so far and those
        # after it hold the input's values
        "planes_finished": snap.planes if snap.done else snap.plane,
        "kept_iteration": snap.kept,  # the iteration the stopping rule kept for the (last) plane, if any
        "version": __version__,
    }


def l0_provenance(method: str, lam: float, preview: bool = False) -> dict:
    """Provenance of an ℓ0-only result."""
    return {"method": f"l0 {method}", "lam": lam, **({"preview": True} if preview else {}), "version": __version__}


# ----- progress -----------------------------------------------------------------------------------------
def time_left(seconds: float) -> str:
    """A duration in the words a person uses: 'about 40 s left', 'about 3 minutes left'."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''} left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min left"


class Progress:
    """The status line of a run: where it is (plane, tile, iteration of the count the user set) and the
    time left, from the snapshots it is shown, every one of them (planes and tiles begin between shows)."""

    def __init__(self, iterations: int, tables: str = ""):
        self.iterations = iterations  # what the user set: iterations of the first plane (tile)
        self.tables = tables  # what bounds a deblocking run's estimates (tables_note), '' for nothing
        self.unit_start = (0, 0, 0)  # (plane, tile, iteration) where the current plane/tile began
        self.first_timed = None  # (iteration, seconds) of the first fitted iteration, for the time left

    def text(self, snap) -> str:
        unit = (snap.plane, snap.tile)
        if unit != self.unit_start[:2]:
            self.unit_start = (snap.plane, snap.tile, snap.iteration)
        if snap.planes * snap.tiles > 1:
            first = self.iterations
            rest = (snap.total - first * snap.tiles) // max(1, (snap.planes - 1) * snap.tiles)
            count = first if snap.plane == 0 else rest
            done_here = snap.iteration - self.unit_start[2]
        else:
            count, done_here = snap.total, snap.iteration
        where = []
        if snap.planes > 1:
            where.append(f"plane {snap.plane + 1} of {snap.planes}")
        if snap.tiles > 1:
            where.append(f"tile {snap.tile + 1} of {snap.tiles}")
        where.append(f"iteration {done_here} of {count}")
        if snap.iteration >= 1 and self.first_timed is None:
            self.first_timed = (snap.iteration, snap.seconds)
        if self.first_timed is not None and snap.iteration > self.first_timed[0]:
            rate = (snap.seconds - self.first_timed[1]) / (snap.iteration - self.first_timed[0])
            where.append(self._left(snap, rate, count, done_here))
        else:
            where.append("estimating time left…")
        if self.tables:
            where.append(self.tables)
        return " · ".join(where)

    @staticmethod
    def _left(snap, rate: float, count: int, done_here: int) -> str:
        """The time left to the iteration count or, for a plane that its stopping rule ends (the count only a
        cap), to where the rule would end it now, plus the planes after it, with the cap's time beside."""
        cap = time_left(rate * (snap.total - snap.iteration))
        # No rule, a rule whose first window cannot fill before the count (a stack's short warm planes), or
        # tiles (each with its own rule): the plain time left to the counts.
        if not snap.preset.patience or snap.preset.patience >= count or snap.tiles > 1:
            return cap
        after = snap.total - snap.iteration - (count - done_here)  # the planes after this one, in iterations
        at_most = cap.removeprefix("about ").removesuffix(" left")
        if snap.ends_by is None:  # the rule's first window is not full: it cannot end the plane before it is
            least = time_left(rate * (snap.preset.patience - done_here + after)).replace("about", "at least")
            return f"{least} (at most {at_most})"
        return (f"{time_left(rate * (min(snap.ends_by, count) - done_here + after))} unless the fit keeps "
                f"improving (at most {at_most})")


def finished_text(snap, name: str, tables: str = "") -> str:
    """The status line once a run has ended with a result (``tables``: what bounded it, :func:`tables_note`)."""
    state = "done" if snap.done else f"stopped at iteration {snap.iteration} of {snap.total}"
    if not snap.done and snap.planes > 1:  # the planes after this one hold the input's values
        state += f" (in plane {snap.plane + 1} of {snap.planes})"
    return f"{state} in {snap.seconds:.1f} s{f' ({tables})' if tables else ''}: {name}"
