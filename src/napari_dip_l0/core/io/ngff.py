"""OME-Zarr (NGFF) and large TIFFs: read lazily, write plane by plane, resume.

:func:`open_image` opens an OME-Zarr image (NGFF 0.4 or 0.5, a local path or
any URL fsspec opens), a plain Zarr array (its axes named by the caller) or a
TIFF through tifffile's Zarr store, as a dask array that is never loaded
whole. :class:`OmeZarrWriter` writes a result plane by plane into an
OME-Zarr image, records each plane as finished only once all of its chunks
are written, and picks up an interrupted output where it stopped.

Both use the axes of NGFF, in its order: ``t``, ``c``, ``z``, ``y``, ``x``
(any subset holding ``y`` and ``x``). A "plane" is one ``(y, x)`` image with
all its channels; planes are indexed over the other axes (``t`` and ``z``),
as :class:`~napari_dip_l0.core.run.DipL0Run`'s ``on_plane`` indexes them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ZarrImage", "OmeZarrWriter", "open_image", "is_zarr", "AXES", "plane_axes", "require_zarr"]

AXES = "tczyx"  # NGFF's order
_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_TIFF_AXES = {"T": "t", "Z": "z", "C": "c", "S": "c", "Y": "y", "X": "x"}
MAX_CHUNK = 1024  # y/x chunk side of outputs, at most
DONE = "dip_l0_done"  # the array of finished-plane flags inside an output


@dataclass
class ZarrImage:
    """An image opened lazily by :func:`open_image`.

    Attributes
    ----------
    data : dask.array.Array
        The pixels of the chosen level, never loaded whole, in the order of ``axes``.
    axes : str
        One letter per axis of ``data``, from ``t``, ``c``, ``z``, ``y``, ``x``, in that order.
    scale : tuple of float
        Physical size of a pixel along each axis at this level (1.0 where unknown).
    units : dict of str to str
        Units of the axes that have one (``{"x": "micrometer", ...}``).
    levels : int
        Number of levels of the multiscale image (1 for a single array).
    level : int
        The level ``data`` holds (0 is the finest).
    attrs : dict
        The image's own attributes: a DIP-ℓ0 result's ``dip_l0`` provenance, for one.
    source : str
        Where the image was opened from.
    axes_given : str or None
        The ``axes`` it was opened with, to open it again alike (on a Dask worker, say).
    """

    data: object
    axes: str
    scale: tuple[float, ...]
    units: dict = field(default_factory=dict)
    levels: int = 1
    level: int = 0
    attrs: dict = field(default_factory=dict)
    source: str = ""
    axes_given: str | None = field(default=None, repr=False)

    @property
    def channel_axis(self) -> int | None:
        """Index of the ``c`` axis, or ``None``."""
        return self.axes.index("c") if "c" in self.axes else None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    def __repr__(self) -> str:
        return (f"ZarrImage(shape={self.shape}, dtype={self.dtype}, axes={self.axes!r}, scale={self.scale}, "
                f"level={self.level}/{self.levels})")


def require_zarr() -> None:
    """Refuse, with what to install, where zarr 3 or ome-zarr-py is missing."""
    try:
        import ome_zarr  # noqa: F401
        import zarr
    except ImportError:
        raise ImportError("OME-Zarr needs zarr 3 and ome-zarr-py (Python 3.11 or later): "
                          "pip install 'napari-dip-l0[zarr]'") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(f"OME-Zarr needs zarr 3 or later, found {zarr.__version__}: pip install 'zarr>=3'")


def plane_axes(axes: str) -> str:
    """The axes planes are indexed over: those of ``axes`` other than ``c``, ``y`` and ``x``."""
    return "".join(a for a in axes if a not in "cyx")


def is_zarr(source) -> bool:
    """Whether ``source`` names a Zarr store: a URL, a ``.zarr`` path, or a folder holding Zarr metadata."""
    text = os.fspath(source)
    if "://" in text or text.rstrip("/").lower().endswith(".zarr"):
        return True
    path = Path(text)
    return path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def _check_axes(axes, ndim: int, what: str) -> str:
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string of the letters t, c, z, y, x, got {axes!r}")
    axes = axes.lower()
    bad = sorted(set(axes) - set(AXES))
    if bad or len(set(axes)) != len(axes) or "y" not in axes or "x" not in axes:
        raise ValueError(f"axes must name each axis once with the letters t, c, z, y, x, including y and x; "
                         f"got {axes!r}")
    if len(axes) != ndim:
        raise ValueError(f"axes {axes!r} names {len(axes)} axes but {what} has {ndim}")
    return axes


def _canonical(data, axes: str, scale: tuple, level_count: int, level: int, units: dict, attrs: dict,
               source: str) -> ZarrImage:
    """``data`` with its axes put in NGFF order (a lazy transpose where they are not)."""
    order = [axes.index(a) for a in AXES if a in axes]
    if order != sorted(order):
        data = data.transpose(order)
        scale = tuple(scale[i] for i in order)
        axes = "".join(axes[i] for i in order)
    return ZarrImage(data, axes, tuple(float(s) for s in scale), units, level_count, level, attrs, source)


def _check_level(level, levels: int, source: str) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"level must be an int, got {level!r}")
    if not 0 <= level < levels:
        raise ValueError(f"level {level} is not in {source}, which has {levels} level(s) (0 to {levels - 1})")
    return int(level)


def open_image(source, *, level: int = 0, axes: str | None = None, storage_options: dict | None = None) -> ZarrImage:
    """Open an OME-Zarr image, a plain Zarr array or a TIFF lazily, as a dask array with its axes and scale.

    Parameters
    ----------
    source : str or path
        An OME-Zarr image (NGFF 0.4 or 0.5): a local path or any URL fsspec
        opens (``s3://``, ``https://``, ...); a plain Zarr array (then
        ``axes`` must be given); or a ``.tif``/``.tiff`` file, read through
        tifffile's Zarr store (``aszarr``) one chunk at a time, so a TIFF
        larger than memory can be processed plane by plane.
    level : int
        Level of a multiscale image; 0, the finest, by default.
    axes : str, optional
        The axes of a plain Zarr array (``"zyx"``, ``"tcyx"``, ...); for a
        TIFF, names the axes that tifffile could not (``Q``, ``I``);
        ignored for OME-Zarr, whose metadata names them.
    storage_options : dict, optional
        Passed to fsspec for a URL (credentials, ``anon=True``, ...).

    Returns
    -------
    ZarrImage
        ``data`` in NGFF axis order (a TIFF's ``YXS`` becomes ``cyx``).

    Raises
    ------
    ValueError
        A Zarr array without NGFF metadata and no ``axes``, axes that cannot
        be told, or a ``level`` the image does not have.
    FileNotFoundError
        Nothing at ``source``.

    Examples
    --------
    >>> import numpy as np, zarr, tempfile, os
    >>> from napari_dip_l0.core.io.ngff import open_image
    >>> path = os.path.join(tempfile.mkdtemp(), "plain.zarr")
    >>> zarr.create_array(path, shape=(4, 32, 32), dtype="uint16", chunks=(1, 32, 32))[:] = 7
    >>> img = open_image(path, axes="zyx")
    >>> img.axes, img.shape, img.scale
    ('zyx', (4, 32, 32), (1.0, 1.0, 1.0))
    """
    require_zarr()
    text = os.fspath(source)
    if not ("://" in text or Path(text).exists()):
        raise FileNotFoundError(f"input not found: {text}")
    if Path(text).suffix.lower() in (".tif", ".tiff") and "://" not in text:
        image = _open_tiff(text, level, axes)
    else:
        image = _open_zarr(text, level, axes, storage_options)
    image.axes_given = axes
    return image


def _open_zarr(source: str, level, axes, storage_options) -> ZarrImage:
    import dask.array as da
    import zarr

    try:
        node = zarr.open(source, mode="r", storage_options=storage_options)
    except Exception as exc:  # zarr says "not found" in several ways
        raise ValueError(f"cannot open {source} as Zarr: {exc}") from None
    if isinstance(node, zarr.Array):
        if axes is None:
            raise ValueError(f"{source} is a Zarr array without OME-Zarr (NGFF) metadata, so its axes are unknown; "
                             f"name them (axes='zyx' in Python, --axes zyx on the command line)")
        _check_level(level, 1, source)
        axes = _check_axes(axes, node.ndim, source)
        return _canonical(da.from_zarr(node), axes, (1.0,) * node.ndim, 1, 0, {}, dict(node.attrs), source)
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        raise ValueError(f"{source} is a Zarr group without OME-Zarr (NGFF) multiscales metadata; open one of its "
                         f"arrays with its axes named (axes='zyx'), or an OME-Zarr image")
    ms = multiscales[0]
    datasets = ms["datasets"]
    level = _check_level(level, len(datasets), source)
    names, units = [], {}
    for ax in ms.get("axes") or []:
        name, kind = (ax, None) if isinstance(ax, str) else (ax.get("name", ""), ax.get("type"))
        letter = name.lower() if name.lower() in AXES else {"time": "t", "channel": "c"}.get(kind)
        if letter is None:
            raise ValueError(f"{source}: cannot tell which of t, c, z, y, x the axis {name!r} is")
        names.append(letter)
        if not isinstance(ax, str) and ax.get("unit"):
            units[letter] = ax["unit"]
    array = node[datasets[level]["path"]]
    found = "".join(names) if names else axes
    if found is None:
        raise ValueError(f"{source}: its NGFF metadata names no axes; name them (axes='zyx')")
    found = _check_axes(found, array.ndim, source)
    scale = np.ones(array.ndim)
    for transforms in (datasets[level].get("coordinateTransformations") or [],
                       ms.get("coordinateTransformations") or []):
        for tr in transforms:
            if tr.get("type") == "scale" and "scale" in tr:
                scale = scale * np.asarray(tr["scale"], float)
    return _canonical(da.from_zarr(array), found, tuple(scale), len(datasets), level, units, attrs, source)


def _open_tiff(path: str, level, axes) -> ZarrImage:
    import dask.array as da
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            levels, found = len(series.levels), series.axes
            level = _check_level(level, levels, path)
            scale, units = _tiff_scale(tif, series.levels[level].axes)
    except (tifffile.TiffFileError, OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("level"):
            raise
        raise ValueError(f"cannot read {path}: {exc}") from None
    if axes is not None:
        letters = _check_axes(axes, len(found), path)
    else:
        if found.count("C") + found.count("S") > 1:
            raise ValueError(f"{path} has axes {found!r} (channels twice); name them (axes='czyx' or similar)")
        unknown = sorted({a for a in found if a not in _TIFF_AXES})
        if unknown:
            raise ValueError(f"tifffile cannot tell what the axes {', '.join(unknown)} of {path} (axes "
                             f"{found!r}) are; name them (axes='zyx' in Python, --axes zyx on the command line)")
        letters = "".join(_TIFF_AXES[a] for a in found)
    store = tifffile.imread(path, aszarr=True, series=0, level=level)
    data = da.from_zarr(zarr.open(store, mode="r"))
    scale = tuple(scale.get(a, 1.0) for a in found)
    units = {letters[found.index(a)]: u for a, u in units.items() if a in found}
    return _canonical(data, letters, scale, levels, level, units, {}, path)


def _tiff_scale(tif, axes: str) -> tuple[dict, dict]:
    """Pixel sizes and units (by tifffile axis letter) from OME or ImageJ metadata, else the resolution tags."""
    scale, units = {}, {}
    if tif.is_ome and tif.ome_metadata:
        import tifffile

        pixels = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image", {})
        pixels = (pixels[0] if isinstance(pixels, list) else pixels).get("Pixels", {})
        for letter, key in (("X", "PhysicalSizeX"), ("Y", "PhysicalSizeY"), ("Z", "PhysicalSizeZ"),
                            ("T", "TimeIncrement")):
            if key in pixels:
                scale[letter] = float(pixels[key])
                unit = pixels.get(key + "Unit", "µm" if letter != "T" else "s")
                units[letter] = _UNIT_WORDS.get(unit, unit)
        return scale, units
    page = tif.pages.first
    for letter, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in page.tags:
            num, den = page.tags[tag].value
            if num and den and (num, den) != (1, 1):
                scale[letter] = den / num
    ij = tif.imagej_metadata or {}
    if scale and ij.get("unit"):
        units.update({a: _UNIT_WORDS.get(ij["unit"], ij["unit"]) for a in ("X", "Y")})
    if ij.get("spacing"):
        scale["Z"] = float(ij["spacing"])
        if "X" in units:
            units["Z"] = units["X"]
    if ij.get("finterval"):
        scale["T"], units["T"] = float(ij["finterval"]), "second"
    return scale, units


_UNIT_WORDS = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer", "\\u00B5m": "micrometer",
               "nm": "nanometer", "mm": "millimeter", "s": "second", "ms": "millisecond"}


class OmeZarrWriter:
    """Write an image into an OME-Zarr (NGFF 0.5) plane by plane; resumable.

    The output is a Zarr group holding the full-resolution array ``"0"``
    (one plane per chunk along ``t`` and ``z``, all channels in one chunk,
    ``y``/``x`` chunks of at most 1024), pyramid levels ``"1"``, ``"2"``...
    made by :meth:`close`, NGFF metadata from the start (a partial output
    opens, with its missing planes zero), and the ``dip_l0`` provenance in
    its attributes. A plane is recorded as finished (in the array
    ``dip_l0_done``, one chunk per plane) only after all of its chunks are
    written, so a plane cut off mid-write is never taken for a finished one.

    Parameters
    ----------
    path : str or path
        A local folder (``.ome.zarr`` by convention), made here. If it is
        already a DIP-ℓ0 output of the same shape, dtype, axes and
        provenance, it is reopened and :meth:`done` tells what is finished
        (resume). Anything else there is refused, as is a folder that
        cannot be written, before any work.
    shape : tuple of int
    dtype : numpy dtype
    axes : str
        Letters of ``t``, ``c``, ``z``, ``y``, ``x`` in that order.
    scale : sequence of float, optional
        Physical pixel size per axis (1.0 each by default).
    units : dict, optional
        Units by axis letter (``{"x": "micrometer", "t": "second"}``).
    chunks : sequence of int, optional
        Chunk shape per axis, of which only ``y`` and ``x`` are used (the
        input's, say), capped at 1024; default ``min(side, 1024)``.
    pyramid_levels : int
        Levels in all, each halving ``y`` and ``x`` (means of 2×2 pixels).
    provenance : dict, optional
        JSON-able settings of the run (``dip_l0`` attributes); a reopened
        output must have been written with the same.
    overwrite : bool
        Replace an existing DIP-ℓ0 output instead of resuming it (something
        that is not a DIP-ℓ0 output is still refused, never removed).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from napari_dip_l0.core.io.ngff import OmeZarrWriter, open_image
    >>> path = os.path.join(tempfile.mkdtemp(), "out.ome.zarr")
    >>> w = OmeZarrWriter(path, shape=(3, 64, 64), dtype="uint16", axes="zyx", scale=(2.0, 0.5, 0.5),
    ...                   pyramid_levels=2, provenance={"mode": "smooth"})
    >>> for z in range(3):
    ...     w.write_plane((z,), np.full((64, 64), z, np.uint16))
    >>> sorted(w.done())
    [(0,), (1,), (2,)]
    >>> w.close()                       # every plane written: the pyramid and the final metadata
    True
    >>> img = open_image(path)
    >>> img.axes, img.scale, img.levels, img.attrs["dip_l0"]["mode"]
    ('zyx', (2.0, 0.5, 0.5), 2, 'smooth')
    """

    def __init__(self, path, *, shape, dtype, axes: str, scale=None, units: dict | None = None, chunks=None,
                 pyramid_levels: int = 1, provenance: dict | None = None, overwrite: bool = False):
        require_zarr()
        import zarr

        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.axes = _check_axes(axes, len(self.shape), f"shape {self.shape}")
        if [AXES.index(a) for a in self.axes] != sorted(AXES.index(a) for a in self.axes):
            raise ValueError(f"axes must be in NGFF order (t, c, z, y, x), got {axes!r}")
        self.scale = tuple(float(s) for s in (scale if scale is not None else (1.0,) * len(self.shape)))
        if len(self.scale) != len(self.shape) or not all(s > 0 for s in self.scale):
            raise ValueError(f"scale must give a positive size for each of the {len(self.shape)} axes, got {scale!r}")
        self.units = dict(units or {})
        if isinstance(pyramid_levels, bool) or not isinstance(pyramid_levels, int) or pyramid_levels < 1:
            raise ValueError(f"pyramid_levels must be a positive int, got {pyramid_levels!r}")
        self.pyramid_levels = pyramid_levels
        self.provenance = dict(provenance or {})
        self.chunks = self._chunks(chunks)
        self._lead = tuple(i for i, a in enumerate(self.axes) if a not in "cyx")
        self.lead_shape = tuple(self.shape[i] for i in self._lead)
        ours = self._check_existing(overwrite)
        if ours:
            self._group = zarr.open_group(self.path, mode="r+")
            self.chunks = tuple(self._group["0"].chunks)
        else:
            self._create()
        self._array = self._group["0"]
        self._done = self._group[DONE]

    @classmethod
    def open(cls, path) -> OmeZarrWriter:
        """An existing DIP-ℓ0 output reopened to add planes (on a Dask worker, say); never makes a new one."""
        import zarr

        try:
            attrs = dict(zarr.open_group(path, mode="r").attrs)
            sig = attrs["dip_l0"]["writer"]
        except Exception:
            raise FileNotFoundError(f"{path} is not a DIP-ℓ0 OME-Zarr output") from None
        ms = attrs["ome"]["multiscales"][0]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        return cls(path, shape=sig["shape"], dtype=sig["dtype"], axes=sig["axes"], scale=scale)

    def note(self, values: dict) -> None:
        """Add ``values`` (what the run measured: λ, the range...) to the output's ``dip_l0`` attributes."""
        self._group.attrs["dip_l0"] = {**self._group.attrs["dip_l0"], **values}

    # ----- set up -------------------------------------------------------
    def _chunks(self, chunks) -> tuple[int, ...]:
        given = tuple(chunks) if chunks is not None else (None,) * len(self.shape)
        if len(given) != len(self.shape):
            raise ValueError(f"chunks must give one size per axis ({len(self.shape)}), got {chunks!r}")
        out = []
        for a, n, c in zip(self.axes, self.shape, given):
            if a in "yx":
                out.append(max(1, min(n, MAX_CHUNK, int(c) if c else n)))
            else:
                out.append(n if a == "c" else 1)  # one plane (all its channels) per chunk
        return tuple(out)

    def _signature(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype.str, "axes": self.axes}

    def _check_existing(self, overwrite: bool) -> bool:
        """Whether a DIP-ℓ0 output to resume is at ``path``; refuses anything else there, or a read-only place."""
        import zarr

        if self.path.exists() or self.path.is_symlink():
            try:
                group = zarr.open_group(self.path, mode="r")
                mine = group.attrs.get("dip_l0", {}).get("writer")
            except Exception:
                mine = None
            if mine is None:
                raise FileExistsError(f"output {self.path} exists and is not a DIP-ℓ0 OME-Zarr output; choose another "
                                      f"name (it is never overwritten)")
            _probe(self.path)
            if overwrite:
                shutil.rmtree(self.path)
                return False
            if mine != self._signature():
                raise FileExistsError(
                    f"output {self.path} holds another result (shape {tuple(mine['shape'])}, dtype "
                    f"{np.dtype(mine['dtype'])}, axes {mine['axes']!r}; this one is {self.shape}, {self.dtype}, "
                    f"{self.axes!r}); choose another name, or overwrite it")
            before = {k: group.attrs["dip_l0"].get(k) for k in self.provenance}
            if before != self.provenance:
                diff = ", ".join(f"{k}: {before.get(k)!r} there, {self.provenance.get(k)!r} now"
                                 for k in sorted(set(before) | set(self.provenance))
                                 if before.get(k) != self.provenance.get(k))
                raise FileExistsError(f"output {self.path} was written with other settings ({diff}); "
                                      f"choose another name, or overwrite it")
            return True
        parent = self.path.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {parent}")
        _probe(parent)
        return False

    def _create(self) -> None:
        import zarr

        self._group = zarr.open_group(self.path, mode="w-", zarr_format=3)
        self._group.create_array("0", shape=self.shape, dtype=self.dtype, chunks=self.chunks, fill_value=0)
        lead = self.lead_shape or (1,)
        self._group.create_array(DONE, shape=lead, dtype="uint8", chunks=(1,) * len(lead), fill_value=0)
        self._write_metadata(1, complete=False)

    def _write_metadata(self, levels: int, complete: bool) -> None:
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_multiscales_metadata

        datasets = []
        for k in range(levels):
            factor = [2.0**k if a in "yx" else 1.0 for a in self.axes]
            transforms = [{"type": "scale", "scale": [s * f for s, f in zip(self.scale, factor)]}]
            if k:  # a mean of 2^k × 2^k pixels lies at their centre
                transforms.append({"type": "translation",
                                   "translation": [s * (f - 1) / 2 for s, f in zip(self.scale, factor)]})
            datasets.append({"path": str(k), "coordinateTransformations": transforms})
        axes = [{"name": a, "type": _TYPES[a], **({"unit": self.units[a]} if a in self.units else {})}
                for a in self.axes]
        write_multiscales_metadata(self._group, datasets, fmt=FormatV05(), axes=axes, name="DIP-ℓ0 result")
        before = self._group.attrs.get("dip_l0", {})  # what :meth:`note` added stays
        self._group.attrs["dip_l0"] = {**before, **self.provenance, "writer": self._signature(), "complete": complete}

    # ----- writing ------------------------------------------------------
    def _selection(self, index: tuple) -> tuple:
        index = tuple(int(i) for i in index)
        if len(index) != len(self._lead) or not all(0 <= i < n for i, n in zip(index, self.lead_shape)):
            raise IndexError(f"plane index {index} is not one of the {self.lead_shape} planes over axes "
                             f"{plane_axes(self.axes)!r}")
        sel = [slice(None)] * len(self.shape)
        for axis, i in zip(self._lead, index):
            sel[axis] = i
        return tuple(sel)

    def done(self) -> set[tuple]:
        """Indices of the planes whose every chunk is written."""
        flags = self._done[...]
        if not self.lead_shape:
            return {()} if flags[0] else set()
        return {tuple(int(i) for i in idx) for idx in np.argwhere(flags == 1)}

    def write_plane(self, index: tuple, plane: np.ndarray) -> None:
        """Write plane ``index`` (over the ``t``/``z`` axes, as ``DipL0Run``'s ``on_plane`` gives it):
        ``(Y, X)``, or ``(Y, X, C)`` channels last; then record it as finished."""
        sel = self._selection(index)
        plane = np.asarray(plane)
        y, x = self.shape[self.axes.index("y")], self.shape[self.axes.index("x")]
        want = (y, x, self.shape[self.axes.index("c")]) if "c" in self.axes else (y, x)
        if plane.shape == (y, x) and "c" in self.axes and want[2] == 1:
            plane = plane[..., None]
        if plane.shape != want:
            raise ValueError(f"plane of shape {plane.shape} does not fit the output's planes {want}")
        if not np.can_cast(plane.dtype, self.dtype, "same_kind"):
            raise TypeError(f"plane of dtype {plane.dtype} cannot be written into the output's {self.dtype}")
        if "c" in self.axes:
            plane = np.moveaxis(plane, -1, 0)  # (C, Y, X): c comes before y and x in NGFF
        self._array[sel] = plane.astype(self.dtype, copy=False)
        # Only now, after every chunk of the plane is in the store, is it recorded as finished.
        self._done[tuple(index) if self.lead_shape else (0,)] = 1

    @property
    def complete(self) -> bool:
        """Whether every plane is finished."""
        n = int(np.prod(self.lead_shape, dtype=np.int64)) if self.lead_shape else 1
        return len(self.done()) == n

    def close(self) -> bool:
        """Finish the output if every plane is: the pyramid levels from the full-resolution planes and the final
        metadata. Returns whether it is complete; an incomplete one is left to be resumed."""
        if not self.complete:
            return False
        if self._group.attrs.get("dip_l0", {}).get("complete"):
            return True
        self._pyramid()
        self._write_metadata(self.pyramid_levels, complete=True)
        return True

    def _pyramid(self) -> None:
        import dask.array as da

        previous = da.from_zarr(self._array)
        yx = {self.axes.index("y"): 2, self.axes.index("x"): 2}
        for k in range(1, self.pyramid_levels):
            if any(previous.shape[a] < 2 for a in yx):
                self.pyramid_levels = k
                break
            down = da.coarsen(np.mean, previous.astype(np.float64), yx, trim_excess=True)
            down = (da.rint(down) if self.dtype.kind in "iu" else down).astype(self.dtype)
            chunks = tuple(min(c, n) for c, n in zip(self.chunks, down.shape))
            arr = self._group.create_array(str(k), shape=down.shape, dtype=self.dtype, chunks=chunks,
                                           fill_value=0, overwrite=True)
            # Here, in threads, even where a dask.distributed client is the default: the planes are local.
            da.to_zarr(down.rechunk(chunks), arr, compute=False).compute(scheduler="threads")
            previous = da.from_zarr(arr)


def _probe(folder: Path) -> None:
    """Refuse a folder that does not take new files (made and removed here, so it holds even for root)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dip-l0-probe.", dir=folder)
    except OSError as exc:
        raise PermissionError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)
