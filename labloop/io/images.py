"""Time-lapse images in physical units: read OME-Zarr, TIFF and numpy; write OME-Zarr 0.5.

An :class:`Image` is a lazy ``(T, Z, Y, X)`` dask array with its voxel size in
µm and its frame interval in hours. 2D movies have ``Z = 1``. Multichannel data
are reduced to one channel on reading (``channel=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from labloop.errors import InputError
from labloop.io.atomic import atomic_path
from labloop.units import check_frame_interval

AXES = ("t", "z", "y", "x")
OME_VERSION = "0.5"
#: factors from OME-NGFF units to micrometres / hours
SPACE_UNITS_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "angstrom": 1e-4,
                  "meter": 1e6, "centimeter": 1e4}
TIME_UNITS_H = {"hour": 1.0, "minute": 1 / 60, "second": 1 / 3600, "day": 24.0,
                "millisecond": 1 / 3.6e6}
#: largest y/x extent of the lowest pyramid level written
PYRAMID_MIN_SIZE = 256
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32,
                    np.float32, np.float64)


@dataclass(frozen=True)
class Image:
    """A time-lapse of one channel, lazily loaded.

    Attributes
    ----------
    data
        ``(T, Z, Y, X)`` dask array; ``Z = 1`` for 2D data.
    voxel_size_um
        ``(z, y, x)`` voxel size in micrometres.
    frame_interval_h
        Hours between frames, ``None`` if unknown (a single stack).
    source
        Where the pixels come from (for error messages).
    """

    data: da.Array
    voxel_size_um: tuple[float, float, float]
    frame_interval_h: float | None = None
    source: str = "<array>"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(T, Z, Y, X)``."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def extent_um(self) -> tuple[float, float, float]:
        """Size of the field of view ``(z, y, x)`` in µm."""
        _, z, y, x = self.shape
        dz, dy, dx = self.voxel_size_um
        return (z * dz, y * dy, x * dx)

    @property
    def n_frames(self) -> int:
        """Number of time points."""
        return self.shape[0]

    @property
    def is_2d(self) -> bool:
        """True for single-plane movies (``Z = 1``)."""
        return self.shape[1] == 1

    def frame(self, t: int) -> np.ndarray:
        """Load frame ``t`` as a ``(Z, Y, X)`` numpy array.

        Raises
        ------
        InputError
            If the frame cannot be decoded (a corrupt or truncated chunk).
        """
        if not 0 <= t < self.n_frames:
            raise InputError(f"frame {t} is outside 0..{self.n_frames - 1}", self.source)
        try:
            return np.asarray(self.data[t].compute())
        except Exception as error:
            raise InputError(f"frame {t} cannot be read ({type(error).__name__}: "
                             f"{_first_line(error)}); the file may be corrupt or truncated",
                             self.source) from error

    def verify(self) -> None:
        """Decode every frame once, raising :class:`InputError` on the first broken one."""
        for t in range(self.n_frames):
            self.frame(t)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "no details"


def _check_voxel_size(voxel_size_um: Sequence[float] | None, source: str) -> tuple[float, ...]:
    if voxel_size_um is None:
        raise InputError("no voxel size: give it as (z, y, x) in µm, e.g. --voxel-size 2,0.5,0.5",
                         source)
    size = tuple(float(v) for v in voxel_size_um)
    if len(size) != 3 or not all(np.isfinite(v) and v > 0 for v in size):
        raise InputError(f"voxel size must be three positive numbers (z, y, x) in µm, got "
                         f"{voxel_size_um}", source)
    return size


def as_image(
    array: Any,
    voxel_size_um: Sequence[float] | None,
    frame_interval_h: float | None = None,
    axes: str = "tzyx",
    source: str = "<array>",
) -> Image:
    """Wrap a numpy or dask array as an :class:`Image`.

    Parameters
    ----------
    array
        Pixel data whose axes are named by ``axes``.
    voxel_size_um
        ``(z, y, x)`` in µm (for 2D data the z entry is the section thickness).
    frame_interval_h
        Hours between frames.
    axes
        Axis order of ``array``, letters from ``tzyx``: ``"tzyx"`` (default),
        ``"zyx"`` (one stack), ``"tyx"`` (2D movie) or ``"yx"``.

    Examples
    --------
    >>> import numpy as np
    >>> image = as_image(np.zeros((5, 8, 64, 64), np.uint16), (2.0, 0.5, 0.5), 0.25)
    >>> image.shape
    (5, 8, 64, 64)
    """
    axes = axes.lower()
    if sorted(axes) != sorted(set(axes)) or not set(axes) <= set(AXES) or not {"y", "x"} <= set(
            axes):
        raise InputError(f"axes must be distinct letters from 'tzyx' including y and x, got "
                         f"{axes!r}", source)
    data = array if isinstance(array, da.Array) else da.asarray(np.asarray(array))
    if data.ndim != len(axes):
        raise InputError(f"array has {data.ndim} axes but axes={axes!r} names {len(axes)}",
                         source)
    if data.dtype == bool or not any(np.dtype(data.dtype) == np.dtype(d)
                                     for d in SUPPORTED_DTYPES):
        raise InputError(f"unsupported pixel type {data.dtype}; use an integer or float image",
                         source)
    for letter in AXES:
        if letter not in axes:
            data = data[None]
            axes = letter + axes
    data = data.transpose([axes.index(a) for a in AXES])
    return Image(data, _check_voxel_size(voxel_size_um, source),  # type: ignore[arg-type]
                 check_frame_interval(frame_interval_h, source), source)


def _ome_attrs(group: Any) -> dict[str, Any]:
    attrs = dict(group.attrs)
    if "ome" in attrs:  # OME-Zarr 0.5
        return dict(attrs["ome"])
    return attrs  # OME-Zarr 0.4 keeps multiscales at the top level


def _scale_of(transforms: list[dict[str, Any]], n_axes: int) -> np.ndarray:
    scale = np.ones(n_axes)
    for transform in transforms or []:
        if transform.get("type") == "scale":
            scale = scale * np.asarray(transform["scale"], dtype=np.float64)
    return scale


def read_ome_zarr(
    path: str | Path,
    voxel_size_um: Sequence[float] | None = None,
    frame_interval_h: float | None = None,
    channel: int = 0,
    level: int = 0,
) -> Image:
    """Read an OME-Zarr 0.4 or 0.5 image lazily.

    Voxel size and frame interval come from the multiscales metadata (axis
    units and scale transforms); ``voxel_size_um`` / ``frame_interval_h`` fill
    them in when the metadata lack units, and override them otherwise.

    Parameters
    ----------
    path
        The image group (the one with ``multiscales`` metadata).
    channel
        Channel to read for data with a ``c`` axis.
    level
        Pyramid level (0 = full resolution).
    """
    import zarr

    path = Path(path)
    source = str(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise InputError(f"not a zarr group ({_first_line(error)})", path) from error
    multiscales = _ome_attrs(group).get("multiscales")
    if not multiscales:
        raise InputError("not an OME-Zarr image (no 'multiscales' metadata)", path)
    meta = multiscales[0]
    axes = [a["name"] if isinstance(a, dict) else a for a in meta.get("axes", [])]
    axis_info = [a if isinstance(a, dict) else {"name": a} for a in meta.get("axes", [])]
    if not {"y", "x"} <= set(axes) or not set(axes) <= {"t", "c", "z", "y", "x"}:
        raise InputError(f"unsupported OME-Zarr axes {axes}; expected t,(c),z,y,x", path)
    datasets = meta.get("datasets", [])
    if not 0 <= level < len(datasets):
        raise InputError(f"pyramid level {level} does not exist ({len(datasets)} levels)", path)
    dataset = datasets[level]
    array = group.get(dataset["path"])
    if not isinstance(array, zarr.Array):
        raise InputError(f"image data {dataset['path']!r} is missing", path)
    if array.ndim != len(axes):
        raise InputError(f"image has {array.ndim} dimensions but metadata names {len(axes)} "
                         "axes", path)
    scale = _scale_of(dataset.get("coordinateTransformations", []), len(axes))
    scale = scale * _scale_of(meta.get("coordinateTransformations", []), len(axes))
    data = da.from_zarr(array)
    if "c" in axes:
        c_axis = axes.index("c")
        if not 0 <= channel < data.shape[c_axis]:
            raise InputError(f"channel {channel} does not exist ({data.shape[c_axis]} channels)",
                             path)
        data = da.take(data, channel, axis=c_axis)
        scale = np.delete(scale, c_axis)
        axis_info = [a for a in axis_info if a["name"] != "c"]
        axes = [a for a in axes if a != "c"]

    units = [axis_info[axes.index(n)].get("unit") if n in axes else None for n in "zyx"]
    metadata_voxel = None
    if all(u in SPACE_UNITS_UM for u, n in zip(units, "zyx", strict=True) if n in axes):
        # a 2D image has no z axis: its section thickness is unknown, 1 µm nominal
        metadata_voxel = [float(scale[axes.index(n)]) * SPACE_UNITS_UM[str(u)] if n in axes
                          else 1.0 for u, n in zip(units, "zyx", strict=True)]
    voxel = voxel_size_um if voxel_size_um is not None else metadata_voxel
    if voxel is None:
        raise InputError("no voxel size in the metadata (spatial axes have no unit); "
                         "give it as (z, y, x) in µm, e.g. --voxel-size 2,0.5,0.5", path)
    interval = frame_interval_h
    if interval is None and "t" in axes:
        unit = axis_info[axes.index("t")].get("unit")
        if unit in TIME_UNITS_H:
            interval = float(scale[axes.index("t")]) * TIME_UNITS_H[unit]
    return as_image(data, voxel, interval, axes="".join(axes), source=source)


def read_image(
    path: str | Path,
    voxel_size_um: Sequence[float] | None = None,
    frame_interval_h: float | None = None,
    axes: str | None = None,
    channel: int = 0,
) -> Image:
    """Read an image from OME-Zarr, TIFF or ``.npy``.

    Parameters
    ----------
    path
        A ``.zarr`` folder, a ``.tif``/``.tiff`` stack or a ``.npy`` array.
    voxel_size_um
        ``(z, y, x)`` in µm; required for TIFF and numpy files, optional override
        for OME-Zarr.
    frame_interval_h
        Hours between frames.
    axes
        Axis order of a TIFF/numpy array (default ``"tzyx"`` for 4D, ``"zyx"``
        for 3D, ``"yx"`` for 2D). Ignored for OME-Zarr, whose metadata name the axes.
    channel
        Channel to keep for multichannel OME-Zarr.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    suffix = path.suffix.lower()
    if path.is_dir():
        return read_ome_zarr(path, voxel_size_um, frame_interval_h, channel=channel)
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            array = tifffile.imread(path)
        except Exception as error:
            raise InputError(f"not a readable TIFF ({_first_line(error)})", path) from error
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as error:
            raise InputError(f"not a readable .npy array ({_first_line(error)})", path) from error
    else:
        raise InputError("unknown image format; use OME-Zarr, TIFF or .npy", path)
    default_axes = {4: "tzyx", 3: "zyx", 2: "yx"}
    if axes is None:
        if array.ndim not in default_axes:
            raise InputError(f"array has {array.ndim} axes; expected 2 to 4 (t, z, y, x)", path)
        axes = default_axes[array.ndim]
    return as_image(array, voxel_size_um, frame_interval_h, axes=axes, source=str(path))


def _pyramid(data: da.Array) -> list[da.Array]:
    levels = [data]
    while min(levels[-1].shape[-2:]) >= 2 * PYRAMID_MIN_SIZE:
        previous = levels[-1]
        even = previous[..., : previous.shape[-2] // 2 * 2, : previous.shape[-1] // 2 * 2]
        levels.append(da.coarsen(np.mean, even, {2: 2, 3: 2}).astype(data.dtype))
    return levels


def write_ome_zarr(
    path: str | Path,
    image: Image,
    name: str = "labloop image",
    overwrite: bool = False,
) -> None:
    """Write ``image`` as an OME-Zarr 0.5 group, one chunk per frame, atomically.

    The full-resolution array is ``0``; coarser levels ``1, 2, ...`` halve y and
    x until they are below 512 pixels. Axes ``t, z, y, x`` carry units
    ``hour`` (when the interval is known) and ``micrometer``.

    Parameters
    ----------
    path
        Destination ``.zarr`` folder.
    image
        The image to write.
    name
        Name stored in the multiscales metadata.
    overwrite
        Replace an existing store at ``path``.
    """
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("already exists (use --overwrite to replace it)", path)
    with atomic_path(path) as tmp:
        write_ome_zarr_group(zarr.open_group(str(tmp), mode="w", zarr_format=3), image, name)


def write_ome_zarr_group(group: Any, image: Image, name: str = "labloop image") -> None:
    """Write ``image`` into an open zarr v3 ``group`` (see :func:`write_ome_zarr`)."""
    import zarr

    z = image.shape[1]
    datasets = []
    for index, level in enumerate(_pyramid(image.data)):
        factor = 2**index
        chunks = (1, z, min(level.shape[2], 512), min(level.shape[3], 512))
        array = zarr.create_array(group.store, name=f"{group.path}/{index}".lstrip("/"),
                                  shape=level.shape, chunks=chunks, dtype=level.dtype,
                                  dimension_names=AXES, fill_value=0, overwrite=True)
        da.store(level.rechunk(chunks), array, lock=False)
        datasets.append({
            "path": str(index),
            "coordinateTransformations": [{"type": "scale", "scale": [
                image.frame_interval_h or 1.0, image.voxel_size_um[0],
                image.voxel_size_um[1] * factor, image.voxel_size_um[2] * factor]}],
        })
    time_axis: dict[str, str] = {"name": "t", "type": "time"}
    if image.frame_interval_h is not None:
        time_axis["unit"] = "hour"
    axes = [time_axis] + [{"name": a, "type": "space", "unit": "micrometer"}
                          for a in ("z", "y", "x")]
    group.attrs["ome"] = {"version": OME_VERSION,
                          "multiscales": [{"name": name, "axes": axes, "datasets": datasets}]}
