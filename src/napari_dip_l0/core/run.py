"""One DIP-ℓ0 run over an image: its settings, planes, tiles and snapshots.

Every front end (the API functions, the CLI, batches, the napari widget,
benchmarks and tests) drives a :class:`DipL0Run`; none of them re-implements
its loop, its mode rules or its validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property, partial

import numpy as np

from .admm import AdmmFit, to_numpy
from .device import resolve_device
from .memory import check_memory
from .noise import noise_model, noise_sigma
from .planes import PlaneReader, result_dtype
from .presets import Preset, get_preset
from .stabilise import Stabiliser
from .tiling import Mosaic, check_tiling, tile_grid
from .validation import (
    check_bool,
    check_data_range,
    check_dtype,
    check_image,
    check_lam,
    check_positive_int,
    check_seed,
)

__all__ = ["DipL0Run", "Snapshot", "Calibration", "iter_dip_l0", "choose_lam", "jpeg_box", "stabilise"]


@dataclass(frozen=True)
class Calibration:
    """What a run measures on its whole image before any fit: the intensity mapping, the noise model, λ.

    :class:`DipL0Run` measures it (its :attr:`DipL0Run.calibration`) unless
    it is given one, which it then uses as it is, reading nothing: so parts
    of one image run separately (the blocks of a dask array in
    :func:`napari_dip_l0.core.lazy.lazy_dip_l0`) get the same mapping, noise
    model and λ as a run over the whole image would.

    Attributes
    ----------
    data_range : (float, float)
        Intensities that bound the result (and, without ``scale``, map to 0 and 1).
    scale : (float, float) or None
        The robust scale within ``data_range`` mapped to 0 and 1, if any
        (:class:`.layout.Layout`'s ``scale``).
    noise_model : (float, float) or None
        ``(a, b)`` of the noise variance, as :attr:`DipL0Run.noise_model`.
    lam : float or None
        The λ an automatic choice gave, ``None`` where λ was not chosen from the image.
    noise : float or None
        The noise level λ was set from, as :attr:`DipL0Run.noise`.
    """

    data_range: tuple[float, float]
    scale: tuple[float, float] | None = None
    noise_model: tuple[float, float] | None = None
    lam: float | None = None
    noise: float | None = None


@dataclass(eq=False, repr=False)
class Snapshot:
    """One step of a DIP-ℓ0 run.

    Attributes
    ----------
    iteration, total : int
        Iterations done and planned, counted over all planes and tiles.
    plane, planes : int
        Index of the plane being fitted and the number of planes.
    tile, tiles : int
        Index of the tile of that plane being fitted and the number of tiles
        per plane (1 when the plane is not tiled).
    losses : dict of str to float
        ``data`` (mean squared misfit to the input), ``coupling`` (mean squared
        ``g - v + u``) and ``loss`` (the θ-step objective), on the [0, 1]
        scale; empty for the iteration-0 preview of a plane.
    seconds : float
        Wall time since the run started.
    preset : Preset
        The settings of the run.
    kept : int or None
        On the last snapshot of a plane (or tile) under the preset's stopping
        rule (see ``Preset.patience``): the iteration whose estimate the rule
        kept, whether it ended the plane early or the plane reached its
        iterations. ``None`` otherwise.
    ends_by : int or None
        Under the stopping rule, once it has a minimum: the iteration of the
        current plane (or tile) by which the rule ends it unless the fit
        reaches a new minimum first (that minimum's iteration plus
        ``patience``; a rising spread ends it sooner). ``None`` otherwise.
    noise_model : (float, float) or None
        ``(a, b)`` of the noise variance ``a x + b`` when the run fits the
        stabilised image (see :attr:`DipL0Run.noise_model`), else ``None``.
    image : ndarray
        The whole image at this snapshot in the result's dtype (see
        :class:`DipL0Run`'s ``dtype``) and the input's range and shape:
        finished planes final, the current one at this estimate, later ones
        as given. Built on first access, so snapshots nobody looks at
        cost nothing (not even a copy from the GPU). A run that keeps no
        planes (``collect=False``) has none: ``RuntimeError``.
    plane_image : ndarray
        The current plane alone at this estimate, in the result's dtype,
        ``(H, W)`` or ``(H, W, C)`` with a channel axis (as ``on_plane``
        gets it); built on first access, reading no other plane.
    """

    iteration: int
    total: int
    plane: int
    planes: int
    losses: dict
    seconds: float
    _render: Callable[[], np.ndarray]
    preset: Preset
    tile: int = 0
    tiles: int = 1
    kept: int | None = None
    ends_by: int | None = None
    noise_model: tuple[float, float] | None = None
    _render_plane: Callable[[], np.ndarray] | None = None

    @cached_property
    def image(self) -> np.ndarray:
        return self._render()

    @cached_property
    def plane_image(self) -> np.ndarray:
        return self._render_plane()

    @property
    def done(self) -> bool:
        return self.iteration >= self.total

    def __repr__(self) -> str:
        return (f"Snapshot(iteration={self.iteration}/{self.total}, plane={self.plane}/{self.planes}, "
                f"losses={self.losses}, seconds={self.seconds:.2f})")


# 300 lines, half of them its docstring (every keyword every front end passes); its helpers are functions
# below (measure, _renderers, _kept).
class DipL0Run:
    """DIP-ℓ0 on one image, as an object to step, iterate or run to the end.

    All arguments are checked when the run is made, before any work, so bad
    input raises ``TypeError``/``ValueError`` (or ``MemoryError`` for a run
    that would not fit) at the call.

    Parameters
    ----------
    image : array_like
        2-D image, optionally with a channel axis and leading axes (Z, T, ...)
        that are processed plane by plane. Any real dtype. A dask array is
        read one plane at a time.
    mode : {'smooth', 'denoise', 'deblock'}
        Which shipped preset to start from (ignored when ``preset`` is given):
        ``PRESETS[mode]``, or ``FILE_PRESETS[mode]`` with a JPEG file
        (``jpeg``) where the mode has one, as 'deblock' does.
    lam : float or 'auto', optional
        Weight of the ℓ0 gradient term on the [0, 1] intensity scale (the
        data's own range; with a preset that stabilises, such as 'denoise',
        the stabilised scale, see :attr:`noise_model`). 'auto' (or ``None``)
        lets the preset choose: the
        'denoise' preset sets it from the noise level the image shows
        (``lam_noise * σ²``, see :attr:`noise`), 'deblock' with a JPEG file
        from the file's quantisation step (``lam_step``), the others use
        their tuned value.
    iterations : int, optional
        ADMM iterations per plane (per tile). ``None`` takes the preset's.
    l0_solver : {'parallel_fusion', 'region_fusion', 'fft'}, optional
        Solver of the v-step; ``None`` takes the preset's.
    preset : Preset, optional
        Full settings; ``lam``, ``iterations`` and ``l0_solver`` still override it.
    channel_axis : int, optional
        Axis of colour or other channels, smoothed jointly.
    seed : int
        Seed of the network weights and input noise. Same seed, same CPU,
        same input: a bit-identical result.
    device : str
        'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.
    warm_start : bool
        Start each plane after the first from the previous plane's network
        weights, optimiser state and ADMM dual (tile by tile: each tile from
        the same tile of the previous plane), instead of afresh; under a
        stopping rule, as they were at the estimate the rule kept. For
        planes that look alike (a time-lapse, a z-stack); give ``False``
        for a stack of unrelated images.
    warm_iterations : int, optional
        Iterations of each warm-started plane or tile; ``None`` takes the
        preset's ``warm_iterations`` (at most ``iterations``), or its
        ``warm_fraction`` of ``iterations``.
    tile_size : int, optional
        Planes with a side above this are fitted in overlapping tiles of at
        most ``tile_size`` pixels a side, blended without seams, so memory
        depends on the tile and not on the image. ``None`` means 1024.
    tile_overlap : int, optional
        Pixels shared by neighbouring tiles, blended linearly; ``None`` means
        64, or a quarter of the tile if less.
    max_memory : int, optional
        Bytes the run may use; ``None`` takes the memory the system reports
        as available. A run whose estimate exceeds it is refused with a
        ``MemoryError`` before any work.
    data_range : (float, float), optional
        Intensities mapped to 0 and 1, and the range of the result (values
        outside it are clipped). ``None`` takes the image's own minimum and
        maximum. Give it to treat separately processed planes of one stack
        alike: ``lam`` is measured on this scale.
    jpeg : str, path or JpegConstraint, optional
        The JPEG file ``image`` was decoded from. Its quantised coefficients
        and tables bound where the true image can lie (see :mod:`.jpeg`):
        the fit is to the decoded pixels as without the file, and every
        estimate it gives (preview, snapshots, result) is projected onto that
        set (its middle ``preset.jpeg_box`` fraction, ``preset.jpeg_box_fine``
        for a finely quantised file, see :func:`jpeg_box`). ``image``
        must be the file's pixels (H, W, 3 with ``channel_axis=-1``, or
        H, W for greyscale); the intensity scale is then 0-255 and the image
        is not tiled.
    on_plane : callable, optional
        Called as ``on_plane(index, plane)`` as soon as each plane is final,
        so a caller can write results plane by plane (to a Zarr store, say)
        instead of waiting for the whole image. ``index`` is the plane's
        position in the leading axes (a tuple, empty for a single plane) and
        ``plane`` its result in the result dtype, ``(H, W)``, or
        ``(H, W, C)`` with a channel axis. An exception it raises ends the run.
    collect : bool
        Keep every finished plane, for :meth:`run`'s result and the
        snapshots' ``image``. ``False`` (with ``on_plane``) keeps none, so
        memory does not grow with the number of planes: the planes go to
        ``on_plane`` only, :meth:`run` returns ``None``, and snapshots have
        their ``plane_image`` only.
    calibration : Calibration, optional
        The intensity mapping, noise model and λ to use, as measured on a
        whole image this one is part of, instead of measuring this image
        (which is then not read before the fit). Not with ``data_range``
        or ``jpeg``.
    dtype : numpy dtype, optional
        The result's dtype (snapshots' too): the input's, or a floating-point
        type, which keeps an integer image's result between its levels
        instead of rounding it to them. ``None`` lets the preset choose
        (``Preset.float_result``): 'denoise' gives integer images float32
        (float64 beyond 16 bits), the other modes the input's dtype.

    Attributes
    ----------
    preset : Preset
        The settings in force (the mode's preset with the overrides applied,
        and λ as chosen when it was 'auto').
    noise : float or None
        The noise level measured for an automatic λ (standard deviation on
        the [0, 1] scale, or on the stabilised scale, see
        :attr:`noise_model`), ``None`` when λ was not set from it.
    noise_model : (float, float) or None
        With a preset that stabilises (``Preset.stabilise``, the 'denoise'
        mode): ``(a, b)`` of the noise variance ``a x + b`` the image shows
        on the [0, 1] scale. Where ``a > 0`` the fit (and λ) is on the
        generalised Anscombe transform of the image, and results are mapped
        back; ``None`` without.
    total : int
        Iterations over all planes and tiles.
    last : Snapshot or None
        The newest snapshot: its ``image`` is the estimate so far.
    stopped_at : list of int or None
        For each plane (and tile) finished so far, in order: the iteration
        whose estimate the stopping rule kept (see :attr:`Snapshot.kept`),
        or ``None`` where no rule chose one.
    calibration : Calibration
        The intensity mapping, noise model and λ in force (measured, or given).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0 import DipL0Run
    >>> image = np.random.default_rng(0).random((32, 32))
    >>> run = DipL0Run(image, lam=0.03, iterations=4, device="cpu")
    >>> first = run.step()                # iteration 0: the ℓ0 warm start, a preview
    >>> first.iteration, run.total
    (0, 4)
    >>> result = run.run()                # the rest; stopping earlier keeps run.last.image
    >>> result.shape, run.last.done
    ((32, 32), True)

    Iterating gives the snapshots one by one:

    >>> [s.iteration for s in DipL0Run(image, iterations=3, device="cpu")]
    [0, 1, 2, 3]
    """

    def __init__(
        self,
        image,
        mode: str = "smooth",
        *,
        lam: float | str | None = "auto",
        iterations: int | None = None,
        l0_solver: str | None = None,
        preset: Preset | None = None,
        channel_axis: int | None = None,
        seed: int = 0,
        device: str = "auto",
        warm_start: bool = True,
        warm_iterations: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        max_memory: int | None = None,
        data_range: tuple[float, float] | None = None,
        jpeg=None,
        dtype=None,
        on_plane: Callable[[tuple, np.ndarray], None] | None = None,
        collect: bool = True,
        calibration: Calibration | None = None,
    ):
        arr, channel_axis = check_image(image, channel_axis)
        dtype = check_dtype(dtype, arr.dtype)
        check_calibration(calibration, data_range, jpeg)
        if jpeg is not None:
            from .jpeg import check_constraint  # jpeglib only for runs with a file

            jpeg = check_constraint(jpeg, arr.shape, channel_axis, data_range)
        self.jpeg = jpeg
        if self.jpeg is not None:
            data_range = (0, 255)  # the file's sample scale
            # The constraint is on the whole image's blocks: no tiles (the memory check still applies).
            tile_size = max(check_tiling(tile_size, tile_overlap)[0], *self.jpeg.shape)
        if preset is None:
            preset = get_preset(mode, jpeg=self.jpeg is not None)
        elif not isinstance(preset, Preset):
            raise TypeError(f"preset must be a Preset, got {type(preset).__name__}")
        overrides = {}
        auto = lam is None or (isinstance(lam, str) and lam == "auto")
        if not auto:
            overrides["lam"] = check_lam(lam)
        if iterations is not None:
            overrides["iterations"] = check_positive_int(iterations, "iterations")
        if l0_solver is not None:
            overrides["l0_solver"] = l0_solver
        self.preset = replace(preset, **overrides)  # Preset checks its fields
        if self.jpeg is not None:
            self.preset = jpeg_box(self.preset, self.jpeg)
        self.warm_start = check_bool(warm_start, "warm_start")
        if not warm_start:
            warm_iterations = self.preset.iterations
        elif warm_iterations is None:
            # Never more warm than cold iterations: a short run asked for is short throughout.
            its = self.preset.iterations
            warm_iterations = min(self.preset.warm_iterations, its) if self.preset.warm_iterations else max(
                1, round(self.preset.warm_fraction * its))
        self.warm_iterations = check_positive_int(warm_iterations, "warm_iterations")
        self.seed = check_seed(seed)
        self.device = resolve_device(device)
        self.tile_size, self.tile_overlap = check_tiling(tile_size, tile_overlap)
        if dtype is None:
            dtype = result_dtype(arr.dtype, self.preset.float_result)
        self.collect = check_bool(collect, "collect")
        check_memory(*_kept(arr.shape, channel_axis, collect, on_plane), dtype, self.preset, self.tile_size,
                     self.tile_overlap, max_memory)
        self.reader, self.preset, self.noise_model, self.noise, self.calibration = measure(
            arr, channel_axis, self.preset, dtype, data_range, self.jpeg, auto, calibration)
        h, w, _ = self.reader.layout.plane_shape
        self.windows = tile_grid(h, w, self.tile_size, self.tile_overlap)
        # Warm-started tiles (all but the first plane's) need fewer iterations.
        n = len(self.reader)
        self._counts = [self.preset.iterations] * len(self.windows) + [self.warm_iterations] * (
            (n - 1) * len(self.windows))
        self.total = sum(self._counts)
        self.on_plane = on_plane
        self.last: Snapshot | None = None
        self.stopped_at: list[int | None] = []
        self._snapshots = self._generate()

    # ----- driving ------------------------------------------------------
    def step(self) -> Snapshot | None:
        """Advance one iteration (or give the next plane's preview); ``None`` once the run is done."""
        snap = next(self._snapshots, None)
        if snap is not None:
            self.last = snap
        return snap

    def __iter__(self) -> Iterator[Snapshot]:
        while (snap := self.step()) is not None:
            yield snap

    def run(self) -> np.ndarray | None:
        """Run to the end (from wherever the run is) and return the result (``None`` with ``collect=False``:
        the planes went to ``on_plane``)."""
        for _ in self:
            pass
        return self.last.image if self.collect else None

    # ----- the loop -----------------------------------------------------
    def _generate(self) -> Iterator[Snapshot]:
        t0 = time.perf_counter()
        reader, layout, preset = self.reader, self.reader.layout, self.preset
        n, tiles = len(reader), len(self.windows)
        model = self.noise_model if reader.stabiliser is not None else None

        def snapshot(done, p, t, losses, render, plane, kept=None, ends_by=None):
            return Snapshot(done, self.total, p, n, losses, time.perf_counter() - t0,
                            render if self.collect else _not_collected, preset, tile=t, tiles=tiles,
                            kept=kept, ends_by=ends_by, noise_model=model, _render_plane=plane)

        if layout.constant:
            flat = partial(np.full, layout.shape, layout.lo, layout.result_dtype)
            out = np.full((1, *layout.plane_shape), layout.lo, layout.result_dtype)
            if self.on_plane is not None:
                for p in range(n):
                    self._plane_done(out, p, row=0)
            yield snapshot(self.total, n - 1, tiles - 1, {}, flat, lambda: _caller_plane(out[0], reader))
            return
        # Plane p is filled when it is done; without collecting, one row holds the plane being finished.
        out = reader.new_output() if self.collect else np.empty((1, *layout.plane_shape), layout.result_dtype)
        fits: list[AdmmFit | None] = [None] * tiles  # tile t of plane p warm-starts from tile t of plane p - 1
        inputs: dict = {}
        done = 0
        for p in range(n):
            plane = reader.read_filled(p)
            mosaic = Mosaic(plane, self.windows, self.tile_overlap)
            for t, window in enumerate(self.windows):
                tile = plane[window]
                fit = fits[t] if self.warm_start else None
                if fit is None:
                    constraint = None if self.jpeg is None else partial(self.jpeg.project, box=preset.jpeg_box)
                    fit = fits[t] = AdmmFit(tile.shape, preset, seed=self.seed, device=self.device, inputs=inputs,
                                            constraint=constraint, rewind=self.warm_start and p < n - 1)
                preview = fit.start(tile)
                yield snapshot(done, p, t, {}, *_renderers(reader, out, p, mosaic, t, lambda pv=preview: pv))
                its = self._counts[p * tiles + t]
                for k in range(1, its + 1):
                    losses = fit.step()
                    # The stopping rule ends the tile early: its last snapshot counts the iterations it skips.
                    if k == its or fit.stalled:
                        result = fit.output()
                        kept = fit.best_iteration if fit.best is not None else None
                        self.stopped_at.append(kept)
                        render = _renderers(reader, out, p, mosaic, t, lambda r=result: to_numpy(r))
                        yield snapshot(done + its, p, t, losses, *render, kept)
                        break
                    render = _renderers(reader, out, p, mosaic, t,
                                        lambda e=fit.estimate, f=fit: to_numpy(f.consistent(e)))
                    yield snapshot(done + k, p, t, losses, *render, ends_by=fit.ends_by)
                mosaic.add(t, to_numpy(result))
                done += its
            row = p if self.collect else 0
            reader.store(out, row, mosaic.result())
            self._plane_done(out, p, row)

    def _plane_done(self, out: np.ndarray, p: int, row: int | None = None) -> None:
        """Hand plane ``p`` (row ``row`` of ``out``, ``p`` by default) to ``on_plane``."""
        if self.on_plane is not None:
            self.on_plane(self.reader.plane_index(p), _caller_plane(out[p if row is None else row], self.reader))



def _caller_plane(plane: np.ndarray, reader: PlaneReader) -> np.ndarray:
    """A ``(H, W, C)`` plane as callers get one: ``(H, W)`` without a channel axis."""
    return plane if reader.layout.channel_axis is not None else plane[..., 0]


def _not_collected():
    raise RuntimeError("this run keeps no planes (collect=False): use Snapshot.plane_image, or on_plane")


def _renderers(reader: PlaneReader, out: np.ndarray, p: int, mosaic: Mosaic, t: int,
               estimate: Callable[[], np.ndarray]):
    """The whole image at a snapshot (planes before ``p`` final, ``p`` current, later ones as given) and
    plane ``p`` alone."""

    def render():
        buf = np.empty_like(out)
        buf[:p] = out[:p]
        reader.store(buf, p, mosaic.preview(t, estimate()))
        for q in range(p + 1, len(buf)):
            buf[q] = reader.raw(q)
        return reader.assemble(buf)

    def render_plane():
        buf = np.empty((1, *out.shape[1:]), out.dtype)
        reader.store(buf, 0, mosaic.preview(t, estimate()))
        return _caller_plane(buf[0], reader)

    return render, render_plane


def check_calibration(calibration, data_range, jpeg) -> None:
    """A :class:`Calibration` or ``None``; not with ``data_range`` or ``jpeg``, which set the mapping too."""
    if calibration is not None and not isinstance(calibration, Calibration):
        raise TypeError(f"calibration must be a Calibration, got {type(calibration).__name__}")
    if calibration is not None and (data_range is not None or jpeg is not None):
        raise ValueError("a calibration sets the intensity mapping: give it without data_range or jpeg")
    if calibration is not None:
        check_data_range(calibration.data_range)


def measure(arr, channel_axis, preset: Preset, dtype, data_range, jpeg, auto: bool, calibration=None):
    """The reader of ``arr``'s planes, the preset with λ set where ``auto``, the noise model, the noise level
    and the :class:`Calibration` they make: measured on ``arr`` (its range or ``data_range``, robust scale,
    noise), or taken from ``calibration``."""
    if calibration is None:
        reader = PlaneReader(arr, channel_axis, check_data_range(data_range), robust=preset.robust, result=dtype)
        model, noise = stabilise(preset, reader, jpeg), None
        if auto:
            preset, noise = choose_lam(preset, reader, jpeg)
    else:
        # The range used as given (a checked Calibration's): 64-bit integer levels stay exact.
        reader = PlaneReader(arr, channel_axis, tuple(calibration.data_range), result=dtype, scale=calibration.scale)
        model, noise = calibration.noise_model, calibration.noise
        if model is not None and model[0] > 0:
            reader.stabiliser = Stabiliser(*model)
        if auto and calibration.lam is not None:
            preset = replace(preset, lam=check_lam(calibration.lam))
    layout = reader.layout
    return reader, preset, model, noise, Calibration((layout.lo, layout.hi), layout.scale, model,
                                                     preset.lam if auto else None, noise)


def _kept(shape: tuple[int, ...], channel_axis: int | None, collect: bool, on_plane) -> tuple:
    """The shape and channel axis of what a run keeps, for its memory estimate: the whole image, or with
    ``collect=False`` (which needs ``on_plane``) two planes, ``(2, H, W)`` or ``(2, H, W, C)``."""
    if on_plane is not None and not callable(on_plane):
        raise TypeError(f"on_plane must be callable, got {type(on_plane).__name__}")
    if collect:
        return shape, channel_axis
    if on_plane is None:
        raise ValueError("collect=False keeps no plane: give on_plane to receive them")
    dims = [s for ax, s in enumerate(shape) if ax != channel_axis]
    return ((2, *dims[-2:]), None) if channel_axis is None else ((2, *dims[-2:], shape[channel_axis]), 3)


def choose_lam(preset: Preset, reader: PlaneReader, jpeg=None) -> tuple[Preset, float | None]:
    """``preset`` with λ as 'auto' sets it for the planes ``reader`` gives, and the noise level it measured.

    With a JPEG file (``jpeg``, a :class:`.jpeg.JpegConstraint`) and
    ``lam_step > 0``, λ is ``lam_step * q / 255``, q the file's luma DC step.
    Otherwise a preset with ``lam_noise > 0`` gets ``λ = lam_noise * σ²`` (σ
    from :func:`.noise.noise_sigma`); others keep their λ, and the noise is
    ``None``.
    """
    if jpeg is not None and preset.lam_step > 0:
        return replace(preset, lam=preset.lam_step * jpeg.dc_step / 255), None
    if preset.lam_noise <= 0 or reader.layout.constant:
        return preset, None
    sigma = noise_sigma(reader)
    # Bounded so a noiseless image still gets a well-posed ℓ0 step and a pure-noise one is not erased.
    lam = min(max(preset.lam_noise * sigma**2, 1e-5), 0.1)
    return replace(preset, lam=lam), sigma


def jpeg_box(preset: Preset, jpeg) -> Preset:
    """``preset`` with the box it uses for the file ``jpeg`` (a :class:`.jpeg.JpegConstraint`) as its
    ``jpeg_box``: ``jpeg_box_fine`` where that is set and the file's luma DC step is below
    ``jpeg_fine_step``, else ``jpeg_box`` as it is."""
    if preset.jpeg_box_fine > 0 and jpeg.dc_step < preset.jpeg_fine_step:
        return replace(preset, jpeg_box=preset.jpeg_box_fine)
    return preset


def stabilise(preset: Preset, reader: PlaneReader, jpeg=None) -> tuple[float, float] | None:
    """Where ``preset.stabilise`` asks for it, fit the noise of ``reader``'s planes and, if it grows with the
    signal, give ``reader`` the transform that evens it out; returns the noise model ``(a, b)`` fitted, or
    ``None`` when none was (no stabilisation asked, a JPEG file to deblock, a constant image)."""
    if not preset.stabilise or jpeg is not None or reader.layout.constant:
        return None
    model = noise_model(reader)
    if model[0] > 0:  # noise that grows with the signal: fit where it does not
        reader.stabiliser = Stabiliser(*model)
    return model


def iter_dip_l0(image, mode: str = "smooth", **kwargs) -> Iterator[Snapshot]:
    """Run DIP-ℓ0 and yield a :class:`Snapshot` after every iteration.

    The same as iterating ``DipL0Run(image, mode, **kwargs)``; see
    :class:`DipL0Run` for the parameters. Arguments are checked at the call,
    before any work.

    Yields
    ------
    Snapshot
        For each plane (and tile), first an iteration-0 snapshot holding the
        ℓ0-only (FFT solver) warm start, a preview in about a second, then one
        per iteration; the last has ``iteration == total``. Closing the
        generator early is safe; the last snapshot received holds the
        estimate so far.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0 import iter_dip_l0
    >>> image = np.random.default_rng(0).random((32, 32, 3))
    >>> for snap in iter_dip_l0(image, lam=0.03, iterations=20, channel_axis=-1, device="cpu"):
    ...     if snap.iteration == 5:
    ...         break                      # stop whenever the estimate looks right
    >>> snap.image.shape
    (32, 32, 3)
    """
    return iter(DipL0Run(image, mode, **kwargs))
