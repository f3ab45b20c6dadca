"""Public, dtype-aware functions: ℓ0 smoothing alone and DIP-ℓ0."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .jpeg import JpegConstraint, check_constraint, file_or_pixels, read_jpeg_constraint
from .l0 import L0_SOLVERS, fft_l0, parallel_fusion, region_fusion
from .planes import PlaneReader, result_dtype
from .presets import get_preset
from .run import DipL0Run, choose_lam, stabilise
from .validation import check_dtype, check_image, check_lam, is_lazy

__all__ = ["l0_smooth", "l0_preview", "dip_l0_smooth", "dip_l0_denoise", "dip_l0_deblock"]


def l0_smooth(image, lam: float, *, method: str = "parallel_fusion", channel_axis: int | None = None,
              robust: bool = False) -> np.ndarray:
    """ℓ0 gradient smoothing alone: fast, no network.

    Parameters
    ----------
    image : array_like
        2-D image, optionally with a channel axis and leading axes processed
        plane by plane. Any real dtype.
    lam : float
        Weight of the ℓ0 term on the [0, 1] intensity scale (the data's range).
        Larger values give fewer, larger flat regions; 0 returns the input.
    method : {'parallel_fusion', 'region_fusion', 'fft'}
        Region Fusion (Nguyen & Brown 2015; exactly piecewise constant), in
        its data-parallel form that uses every core (:mod:`.l0.parallel`) or the
        sequential original, or the FFT half-quadratic solver (Xu et al.
        2011; approximately piecewise constant, periodic boundaries).
    channel_axis : int, optional
        Axis of channels, smoothed jointly.
    robust : bool
        Measure ``lam`` on the robust intensity scale (hot and dead pixels
        left out, :func:`.defects.robust_range`), as the 'denoise' mode does.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``, values within its range.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0 import l0_smooth
    >>> image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    >>> flat = l0_smooth(image, 0.05, channel_axis=-1)
    >>> flat.shape, flat.dtype
    ((64, 64, 3), dtype('uint8'))
    >>> len(np.unique(flat.reshape(-1, 3), axis=0)) < len(np.unique(image.reshape(-1, 3), axis=0))
    True
    """
    arr, channel_axis = check_image(image, channel_axis)
    lam = check_lam(lam)
    _check_method(method)
    return _smooth_planes(PlaneReader(arr, channel_axis, robust=robust), lam, method)


def _check_method(method: str) -> None:
    if method not in L0_SOLVERS:
        raise ValueError(f"unknown method {method!r}; expected one of {L0_SOLVERS}")


def _smooth_planes(reader: PlaneReader, lam: float, method: str) -> np.ndarray:
    """ℓ0 smoothing of every plane ``reader`` gives, back in its result dtype and the caller's layout."""
    solve = {"parallel_fusion": parallel_fusion, "region_fusion": region_fusion, "fft": fft_l0}[method]
    out = reader.new_output()
    for p in range(len(reader)):
        reader.store(out, p, solve(reader.read_filled(p), lam))
    return reader.assemble(out)


def l0_preview(image, mode: str = "smooth", *, lam: float | str = "auto", method: str | None = None,
               channel_axis: int | None = None, dtype=None, jpeg=None) -> tuple[np.ndarray, float]:
    """What the ℓ0 step of a DIP-ℓ0 run of ``mode`` does to ``image``: ``(result, λ used)``.

    :func:`l0_smooth` on the intensity scale that mode's run uses (for
    'denoise', the shot-noise-stabilised one), with the λ it would use
    (``'auto'``: the mode's choice, see :class:`DipL0Run`) and its ℓ0
    solver unless ``method`` names one, in the dtype that run gives (or
    ``dtype``, as for :class:`DipL0Run`). ``jpeg`` names the JPEG file
    ``image`` was decoded from, as for :class:`DipL0Run`: λ is then the
    one a run with the file uses. The napari widget's fast preview.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0.core.api import l0_preview
    >>> image = np.random.default_rng(0).random((64, 64))
    >>> flat, lam = l0_preview(image, "smooth")
    >>> flat.shape, lam
    ((64, 64), 0.03)
    """
    arr, channel_axis = check_image(image, channel_axis)
    qcs = None if jpeg is None else check_constraint(jpeg, arr.shape, channel_axis)
    preset = get_preset(mode, jpeg=qcs is not None)
    method = method or preset.l0_solver
    _check_method(method)
    # One reader: its scale (a median filter over the planes) and, where the mode stabilises, the noise model
    # serve the noise estimate and the smoothing, so λ means what it means in a run.
    dtype = check_dtype(dtype, arr.dtype) or result_dtype(arr.dtype, preset.float_result)
    reader = PlaneReader(arr, channel_axis, None if qcs is None else (0, 255), robust=preset.robust, result=dtype)
    stabilise(preset, reader, qcs)
    if lam is None or (isinstance(lam, str) and lam == "auto"):
        lam = choose_lam(preset, reader, qcs)[0].lam
    else:
        lam = check_lam(lam)
    return _smooth_planes(reader, lam, method), float(lam)


# Past 80 lines by its numpydoc docstring (parameters, examples); the code is under 30 lines.
def dip_l0_smooth(
    image,
    lam: float | str = "auto",
    *,
    iterations: int | None = None,
    channel_axis: int | None = None,
    seed: int = 0,
    device: str = "auto",
    l0_solver: str | None = None,
    warm_start: bool = True,
    tile_size: int | None = None,
    dtype=None,
    data_range: tuple[float, float] | None = None,
    planes_per_block: int | None = None,
):
    """Edge-preserving smoothing by DIP-ℓ0 (deep image prior + ℓ0 gradient prior).

    Parameters
    ----------
    image : array_like
        2-D image, optionally with a channel axis and leading axes (Z, T, ...)
        processed plane by plane. Any real dtype.
    lam : float or 'auto'
        Weight of the ℓ0 gradient term on the [0, 1] intensity scale; 'auto'
        takes the 'smooth' preset's. Pick it quickly with :func:`l0_smooth`:
        it has the same meaning there.
    iterations : int, optional
        ADMM iterations per plane; ``None`` takes the preset's.
    channel_axis : int, optional
        Axis of channels (RGB or any number), smoothed jointly.
    seed : int
        Seed of network weights and input noise; same seed, same CPU, same
        input gives a bit-identical result.
    device : str
        'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda' or 'mps'.
    l0_solver : {'parallel_fusion', 'region_fusion', 'fft'}, optional
        ℓ0 solver of the ADMM v-step; ``None`` takes the preset's.
    warm_start : bool
        Start each plane of a stack from the previous plane's network and
        solver state, with fewer iterations (a third; 50 in 'denoise', see
        :class:`DipL0Run`).
    tile_size : int, optional
        Planes with a side above this (default 1024) are processed in
        overlapping, seamlessly blended tiles, which bounds memory. A run that
        would not fit in the available memory raises ``MemoryError`` first.
    dtype : numpy dtype, optional
        The result's dtype: ``None`` or ``image``'s own, or a floating-point
        type (an integer image's result then keeps the values between its
        levels).
    data_range : (float, float), optional
        Intensities mapped to 0 and 1 (and the result's range); ``None``
        takes the image's minimum and maximum (see :class:`DipL0Run`). For a
        dask array, giving it saves the pass over the whole stack that
        measures them.
    planes_per_block : int, optional
        A dask array only: consecutive planes each task fits, warm-starting
        within the block (``None``: 8); see :func:`.lazy.lazy_dip_l0`.

    Returns
    -------
    ndarray or dask array
        Same shape as ``image`` and its dtype (or ``dtype``), values within
        its range. For a dask ``image``, a dask array, computed block by
        block of whole planes when asked (nothing of ``image`` is read at the
        call): ``dip_l0_smooth(da.from_zarr(src)).to_zarr(dst)`` holds a few
        blocks in memory, whatever the stack's size. Every block uses the
        intensity mapping and λ of the whole stack; each starts afresh
        (full iterations) and warm-starts within, so only a block holding
        every plane gives exactly the numpy result (see the docs' Python page).

    See Also
    --------
    DipL0Run : the same run as an object to step, iterate or stop.
    iter_dip_l0 : the same run as a generator of snapshots.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0 import dip_l0_smooth
    >>> image = np.random.default_rng(0).integers(0, 4096, (48, 48), dtype=np.uint16)
    >>> out = dip_l0_smooth(image, 0.03, iterations=5, device="cpu")
    >>> out.shape, out.dtype
    ((48, 48), dtype('uint16'))

    A dask array gives a dask array, computed when asked:

    >>> import dask.array as da
    >>> stack = da.from_array(np.stack([image] * 4), chunks=(1, 48, 48))
    >>> lazy = dip_l0_smooth(stack, 0.03, iterations=5, device="cpu", planes_per_block=2)
    >>> lazy.chunks, lazy.compute().dtype
    (((2, 2), (48,), (48,)), dtype('uint16'))
    """
    return _run("smooth", image, planes_per_block, lam=lam, iterations=iterations, channel_axis=channel_axis,
                seed=seed, device=device, l0_solver=l0_solver, warm_start=warm_start, tile_size=tile_size,
                dtype=dtype, data_range=data_range)


def _run(mode: str, image, planes_per_block: int | None, **settings):
    """The eager run's result, or for a dask ``image`` the lazy one (:func:`.lazy.lazy_dip_l0`)."""
    if is_lazy(image):
        from .lazy import lazy_dip_l0

        return lazy_dip_l0(image, mode, planes_per_block=planes_per_block, **settings)
    if planes_per_block is not None:
        raise TypeError("planes_per_block is for dask arrays; a numpy image runs as one block")
    return DipL0Run(image, mode, **settings).run()


def dip_l0_denoise(
    image,
    lam: float | str = "auto",
    *,
    iterations: int | None = None,
    channel_axis: int | None = None,
    seed: int = 0,
    device: str = "auto",
    l0_solver: str | None = None,
    warm_start: bool = True,
    tile_size: int | None = None,
    dtype=None,
    data_range: tuple[float, float] | None = None,
    planes_per_block: int | None = None,
):
    """Camera-noise removal by DIP-ℓ0, with λ read from the image's own noise level.

    For photon-limited data such as fluorescence: the network fits the image
    itself (not a correction of an ℓ0 solution), the intensity scale leaves
    out hot and dead pixels (:func:`.defects.robust_range`), and with
    ``lam='auto'`` λ follows the noise level the image shows
    (:func:`.noise.noise_sigma`), so the same call suits 5 and 500 photons.
    Noise that grows with the signal (shot noise) is fitted as ``a x + b``
    and evened out by the generalised Anscombe transform before the fit,
    and the result mapped back (:mod:`.stabilise`), so bright objects and
    dark background get the same smoothing. Hot and dead pixels are left
    out of the fit and denoised like the rest (:func:`.defects.fill_defects`). Each plane stops by itself once the
    network starts to fit the noise (the preset's stopping rule, see
    ``Preset.patience``), so ``iterations`` is a cap rather than a count.
    It needs more iterations than :func:`dip_l0_smooth`
    (300-2000; 20-150 s per 128² plane on one CPU core). Other parameters are
    those of :func:`dip_l0_smooth`; ``None`` takes the 'denoise' preset's.
    An integer image's result is floating point by default (float32 for
    uint8/uint16), on the image's own intensity scale: denoised values lie
    between a camera's levels, and rounding them back cost 1.2 dB at 5
    photons. ``dtype=image.dtype`` rounds them. A dask array gives a dask
    array, as for :func:`dip_l0_smooth`: its noise model and λ are measured
    once, in a task every block depends on, on the planes a numpy run of
    the whole stack measures them on.

    Returns
    -------
    ndarray or dask array
        Same shape as ``image``, values within its range; float32 for an
        integer image of up to 16 bits (float64 beyond), a float image's
        dtype otherwise, or ``dtype``. A dask array for a dask ``image``.

    See Also
    --------
    DipL0Run : the same run as an object; its ``noise_model``, ``noise`` and
        ``preset.lam`` report the noise fitted, the level measured and the
        λ chosen.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0 import dip_l0_denoise
    >>> rng = np.random.default_rng(0)
    >>> frame = (100 + 2 * rng.poisson(20 * rng.random((32, 32)))).astype(np.uint16)
    >>> out = dip_l0_denoise(frame, iterations=5, device="cpu")
    >>> out.shape, out.dtype
    ((32, 32), dtype('float32'))
    >>> dip_l0_denoise(frame, iterations=5, device="cpu", dtype=frame.dtype).dtype
    dtype('uint16')
    """
    return _run("denoise", image, planes_per_block, lam=lam, iterations=iterations, channel_axis=channel_axis,
                seed=seed, device=device, l0_solver=l0_solver, warm_start=warm_start, tile_size=tile_size,
                dtype=dtype, data_range=data_range)


# Past 80 lines by its numpydoc docstring (parameters, examples); the code is under 30 lines.
def dip_l0_deblock(
    image,
    lam: float | str = "auto",
    *,
    iterations: int | None = None,
    channel_axis: int | None = None,
    seed: int = 0,
    device: str = "auto",
    l0_solver: str | None = None,
    warm_start: bool = True,
    tile_size: int | None = None,
    jpeg=None,
    dtype=None,
) -> np.ndarray:
    """JPEG artifact removal by DIP-ℓ0, best from the JPEG file itself.

    With the file (``image`` a path, or ``jpeg``) the run starts from
    ``FILE_PRESETS['deblock']``: the network fits the image and stops by
    itself once it turns to the artefacts (``iterations`` is then a cap), λ
    'auto' follows the file's quantisation step, and every estimate stays
    consistent with the file. Pixels that still show their JPEG's
    quantisation (a decoded JPEG whose file is gone) are treated the same way,
    within the luma's table read back from them. Other pixels start from the
    'deblock' preset, tuned for heavy compression (quality ~10).

    Parameters
    ----------
    image : array_like, str or path
        The decoded image (as for :func:`dip_l0_smooth`), or the path of a
        JPEG file: its pixels are read (uint8, H×W or H×W×3) and, unless
        ``jpeg=False``, its quantised coefficients bound the result.
    lam, iterations, channel_axis, seed, device, l0_solver, warm_start, tile_size, dtype
        As for :func:`dip_l0_smooth`; ``None`` takes the preset's values (the
        file preset's with a file). ``channel_axis`` is set by the file when
        ``image`` is a path.
    jpeg : str, path, JpegConstraint or bool, optional
        The JPEG file ``image`` was decoded from. Its quantised DCT
        coefficients and tables bound where the true image can lie, and the
        result is consistent with them: re-encoding it with the file's tables
        gives the file's coefficients (:mod:`napari_dip_l0.core.jpeg`).
        ``None`` uses ``image`` itself when it is a JPEG path; for pixels, the
        quantisation they show where they are a decoded JPEG's, whole and
        unedited (uint8, on the block grid; the luma's table read back from
        them, :mod:`napari_dip_l0.core.jpeg_history`), and nothing otherwise.
        ``False`` deblocks the pixels alone. ``image`` must be the file's
        decoded pixels, whole (it is not tiled).

    Returns
    -------
    ndarray
        Same shape and dtype as ``image`` (uint8 for a path) or ``dtype``,
        values within its range.

    Raises
    ------
    ValueError
        A path that is not a JPEG file, a JPEG whose coefficients cannot be
        used (CMYK; pass ``jpeg=False``), or pixels that are not the file's.
    TypeError
        A dask array: deblocking is not lazy (a JPEG image is one block of
        the file's coefficients); pass ``np.asarray(image)``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dip_l0 import dip_l0_deblock
    >>> jpeg = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    >>> dip_l0_deblock(jpeg, iterations=3, channel_axis=-1, device="cpu").shape
    (32, 32, 3)

    From a file, with its quantisation tables:

    >>> from PIL import Image
    >>> Image.fromarray(jpeg).save("example_deblock.jpg", quality=10)
    >>> dip_l0_deblock("example_deblock.jpg", iterations=3, device="cpu").shape
    (32, 32, 3)
    """
    if is_lazy(image):
        raise TypeError("dip_l0_deblock does not take a dask array: the JPEG file's coefficients bound the whole "
                        "image at once, and JPEG images fit in memory; pass np.asarray(image)")
    if jpeg is not None and not isinstance(jpeg, (bool, str, os.PathLike, JpegConstraint)):
        raise TypeError(f"jpeg must be a path, a JpegConstraint, True, False or None; got {type(jpeg).__name__}")
    if isinstance(jpeg, (str, os.PathLike)) and not str(jpeg).strip():
        raise ValueError("jpeg='' names no file: pass the JPEG file's path, None, or False for the pixels alone")
    if isinstance(image, (str, os.PathLike)):
        image, channel_axis, path = _read_jpeg_pixels(image)
        if jpeg is None or jpeg is True:
            try:
                jpeg = read_jpeg_constraint(path)
            except ValueError as exc:
                raise ValueError(f"{exc}; pass jpeg=False to deblock its pixels alone") from None
    elif jpeg is True:
        raise ValueError("jpeg=True needs image to be the path of a JPEG file; otherwise name the file: jpeg=path")

    def build(jpeg=None):
        return DipL0Run(image, "deblock", lam=lam, iterations=iterations, channel_axis=channel_axis, seed=seed,
                        device=device, l0_solver=l0_solver, warm_start=warm_start, tile_size=tile_size,
                        jpeg=jpeg, dtype=dtype)

    if jpeg is None:  # pixels with no file named: within the quantisation they show, if they show one
        return file_or_pixels(build, None, image, channel_axis)[0].run()
    return build(jpeg or None).run()


def _read_jpeg_pixels(path) -> tuple[np.ndarray, int | None, Path]:
    """A JPEG file's decoded pixels and their channel axis; ``ValueError`` for any other file."""
    from .io import JPEG, describe, read

    path = Path(path)
    if path.suffix.lower() not in JPEG:
        raise ValueError(f"dip_l0_deblock reads JPEG files (.jpg, .jpeg) only, got {path}; pass other images "
                         f"as arrays (napari_dip_l0.core.io.read_image reads TIFF and PNG)")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    info = describe(path)
    return read(info), info.channel_axis("auto"), path
