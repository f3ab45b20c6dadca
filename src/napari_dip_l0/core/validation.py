"""Checks of what callers pass, each raising ``TypeError`` or ``ValueError`` naming the problem,
so front ends report it before any work; and the line a user is shown for an error.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["is_lazy", "check_image", "check_lam", "check_positive_int", "SEED_MAX", "check_seed", "check_bool", "check_dtype", "check_data_range", "first_line", "as_bounds"]


def is_lazy(arr) -> bool:
    """A dask array (or anything like it): read it piece by piece, never whole."""
    return hasattr(arr, "chunks") and callable(getattr(arr, "compute", None))


def check_image(image, channel_axis: int | None = None) -> tuple[np.ndarray, int | None]:
    """Validate an image and its channel axis.

    Returns the image as an ndarray (no copy where possible; a dask array is
    kept lazy) and the channel axis as a non-negative int or None. Finite
    values are checked here for in-memory arrays and by :class:`PlaneReader`
    (in the same pass as the range) for lazy ones.
    """
    if isinstance(image, (str, bytes)):
        raise TypeError("image must be an array of numbers, got a string")
    arr = image if is_lazy(image) else np.asarray(image)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError("image has boolean dtype; convert it to an integer or float type first")
    if kind == "c":
        raise TypeError("image has complex dtype; pass the real part or the magnitude")
    if kind not in "iuf":
        raise TypeError(f"image must hold real numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"image is empty (shape {arr.shape})")
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
            raise TypeError(f"channel_axis must be an int or None, got {channel_axis!r}")
        if not -arr.ndim <= channel_axis < arr.ndim:
            raise ValueError(f"channel_axis {channel_axis} is out of range for an image with {arr.ndim} axes")
        channel_axis = int(channel_axis) % arr.ndim
    spatial = arr.ndim - (channel_axis is not None)
    if spatial < 2:
        raise ValueError(
            f"image needs two spatial axes (Y, X), got shape {arr.shape}"
            + (f" with channel_axis={channel_axis}" if channel_axis is not None else "")
        )
    sides = [s for ax, s in enumerate(arr.shape) if ax != channel_axis][-2:]
    if min(sides) < 2:
        raise ValueError(f"image's spatial sides must be at least 2 pixels, got {tuple(sides)}")
    if kind == "f" and not is_lazy(arr) and not bool(np.isfinite(arr).all()):
        raise ValueError("image contains NaN or infinite values")
    return arr, channel_axis


def check_lam(lam) -> float:
    """Validate the ℓ0 weight: a finite number >= 0."""
    if isinstance(lam, str):
        raise TypeError(f"lam must be a number (or 'auto' where a run chooses it), got {lam!r}")
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a number, got {lam!r}")
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")
    return lam


def check_positive_int(value, name: str) -> int:
    """Validate a count such as ``iterations``: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


SEED_MAX = 2**64 - 1  # torch's generators take seeds up to this (numpy's take any)


def check_seed(seed) -> int:
    """Validate a random seed: an int from 0 to ``2**64 - 1``, the range torch's generators take."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an int from 0 to 2**64 - 1, got {seed}")
    return int(seed)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_dtype(dtype, image_dtype=None) -> np.dtype | None:
    """``None``, or ``dtype`` as a numpy dtype of real numbers (``TypeError`` otherwise).

    With ``image_dtype``, the dtype of a result for an image of that dtype: a
    floating-point type or the image's own (``TypeError`` for another).
    """
    if dtype is None:
        return None
    try:
        found = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a numpy dtype of real numbers, such as 'float32' or 'uint16'; "
                        f"got {dtype!r}") from None
    if found.kind not in "iuf":
        raise TypeError(f"dtype must hold real numbers (an integer or float type), got {found}")
    found = found.newbyteorder("=")
    if image_dtype is not None and found.kind != "f" and found != np.dtype(image_dtype).newbyteorder("="):
        raise TypeError(f"dtype must be the image's ({np.dtype(image_dtype)}) or a floating-point type, got {found}")
    return found


def check_data_range(data_range) -> tuple[float, float] | None:
    """Validate an explicit (low, high) intensity range: finite, low < high."""
    if data_range is None:
        return None
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a pair of numbers (low, high), got {data_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"data_range must be finite with low < high, got {data_range!r}")
    if not np.isfinite(hi - lo):  # the span every value is divided by: an infinite one maps all to 0
        raise ValueError(f"data_range spans more than the largest float (high - low overflows), got {data_range!r}")
    return lo, hi


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (its type's name if it has none): what a user is shown."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def as_bounds(dtype: np.dtype, lo, hi) -> tuple:
    """(lo, hi) as Python ints for integer data with whole-number bounds, else floats."""
    if dtype.kind in "iu" and float(lo).is_integer() and float(hi).is_integer():
        return int(lo), int(hi)
    return float(lo), float(hi)
