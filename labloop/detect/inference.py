"""Detection of nuclei in a time-lapse: resample, normalise, U-Net, peaks, calibrated scores.

For each frame:

1. resample to the model's working voxel size (:mod:`labloop.detect.resample`);
2. normalise to noise units (background → 0, noise standard deviation → 1); a
   constant frame (e.g. all zeros) has no nuclei and is skipped;
3. run the U-Net tile by tile with MONAI's sliding-window inference (Gaussian
   blending of overlapping tiles) so memory stays bounded for any frame size;
   tiles are sized to cover the frame evenly with a fixed overlap in µm;
4. call peaks at least ``min_separation_um`` apart (:mod:`labloop.detect.peaks`);
5. map peak heights to calibrated scores and keep those ≥ ``min_score``;
6. map positions back to µm in the input's coordinates (origin at the centre of
   voxel 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import torch

from labloop.detect.calibration import on_border
from labloop.detect.model import DetectorModel, load_model
from labloop.detect.peaks import PeakSettings, find_peaks
from labloop.detect.resample import Normalisation, WorkingGrid, to_working
from labloop.errors import InputError
from labloop.io.images import Image

COLUMNS = ("t", "z", "y", "x", "score", "intensity")


@dataclass(frozen=True)
class DetectSettings:
    """Settings of :func:`detect`.

    Parameters
    ----------
    min_score
        Keep detections whose calibrated score (probability of being a true
        nucleus) is at least this. 0.5 keeps a detection when it is more likely
        right than wrong.
    min_separation_um
        Smallest distance between two detections (µm).
    candidate_height
        Heatmap value below which maxima are not considered at all.
    tile_voxels
        Largest tile (working voxels) given to the network at once; bounds memory
        (about 0.2 kB per working voxel of a tile).
    tile_overlap_um
        Overlap ``(z, y, x)`` of neighbouring tiles in µm (context for the network
        at tile borders; blended with Gaussian weights).
    batch_tiles
        Tiles per network call.
    subvoxel
        Refine positions to sub-voxel precision.
    """

    min_score: float = 0.5
    min_separation_um: float = 3.0
    candidate_height: float = 0.1
    tile_voxels: int = 2**21
    tile_overlap_um: tuple[float, float, float] = (8.0, 16.0, 16.0)
    batch_tiles: int = 1
    subvoxel: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"min_score must be between 0 and 1, got {self.min_score}")
        if not self.min_separation_um >= 0:
            raise InputError(f"min_separation_um must be ≥ 0, got {self.min_separation_um}")
        if self.tile_voxels < 4096:
            raise InputError(f"tile_voxels must be ≥ 4096, got {self.tile_voxels}")

    @property
    def peaks(self) -> PeakSettings:
        """The peak-calling part of the settings."""
        return PeakSettings(self.min_separation_um, self.candidate_height, self.subvoxel)


# ------------------------------------------------------------------- inputs
def _as_frames(image: Image | np.ndarray | da.Array | Any,
               voxel_size_um: Sequence[float] | None) -> tuple[Any, tuple[float, float, float],
                                                              str]:
    """Validate the input: a ``(T, Z, Y, X)`` array-like, its voxel size and a name."""
    if isinstance(image, Image):
        data, source = image.data, image.source
        voxel = image.voxel_size_um if voxel_size_um is None else voxel_size_um
    else:
        data, source, voxel = image, "<array>", voxel_size_um
        if not hasattr(data, "ndim") or not hasattr(data, "dtype"):
            data = np.asarray(data)
    if voxel is None:
        raise InputError("no voxel size: give voxel_size_um as (z, y, x) in µm, e.g. "
                         "(2.0, 0.5, 0.5)", None if source == "<array>" else source)
    try:
        voxel_t = tuple(float(v) for v in voxel)
    except (TypeError, ValueError):
        raise InputError(f"voxel size must be three numbers (z, y, x) in µm, got {voxel!r}"
                         ) from None
    if len(voxel_t) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel_t):
        raise InputError(f"voxel size must be three positive numbers (z, y, x) in µm, got "
                         f"{voxel!r}")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "uif":
        raise InputError(f"unsupported pixel type {dtype}; use an integer or float image")
    if data.ndim == 2:
        data = data[None, None]
    elif data.ndim == 3:
        data = data[None]
    elif data.ndim != 4:
        raise InputError(f"image has {data.ndim} axes; expected (T, Z, Y, X), (Z, Y, X) or "
                         "(Y, X) — use Z = 1 for 2D movies")
    if min(data.shape) < 1:
        raise InputError(f"image has an empty axis: shape {tuple(data.shape)}")
    return data, voxel_t, source  # type: ignore[return-value]


def _load_frame(data: Any, t: int, source: str) -> np.ndarray:
    try:
        frame = data[t]
        frame = np.asarray(frame.compute() if hasattr(frame, "compute") else frame)
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"frame {t} cannot be read ({type(error).__name__})", source) from error
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        raise InputError(f"frame {t} contains NaN or infinite values", None if source ==
                         "<array>" else source)
    return frame


# ------------------------------------------------------------------- tiling
def tile_size(shape: Sequence[int], multiple: Sequence[int], overlap: Sequence[int],
              max_voxels: int) -> tuple[int, int, int]:
    """Tile shape that covers ``shape`` evenly with at most ``max_voxels`` voxels.

    Each axis is split into the fewest tiles whose overlap is ``overlap``; the
    tile side is the smallest multiple of ``multiple`` that covers it.

    Parameters
    ----------
    shape
        Padded working-volume shape (each a multiple of ``multiple``).
    multiple
        Required divisor of each tile side (from the network's strides).
    overlap
        Overlap of neighbouring tiles in voxels.
    max_voxels
        Upper bound on the tile volume.
    """
    counts = [1, 1, 1]

    def side(axis: int) -> int:
        n, m, o, k = shape[axis], multiple[axis], overlap[axis], counts[axis]
        raw = math.ceil((n + (k - 1) * o) / k)
        return min(n, m * math.ceil(raw / m))

    sides = [side(a) for a in range(3)]
    while math.prod(sides) > max_voxels:
        # split the axis whose tile is largest relative to its minimum useful size
        axis = int(np.argmax([sides[a] / max(multiple[a], overlap[a] * 2, 1)
                              if sides[a] > multiple[a] else 0 for a in range(3)]))
        if sides[axis] <= multiple[axis]:
            break
        counts[axis] += 1
        sides[axis] = side(axis)
    return sides[0], sides[1], sides[2]


def _pad_to_multiple(volume: torch.Tensor, multiple: Sequence[int]) -> tuple[torch.Tensor,
                                                                              tuple[int, ...]]:
    shape = volume.shape[-3:]
    target = [m * math.ceil(n / m) for n, m in zip(shape, multiple, strict=True)]
    pad: list[int] = []
    for n, t in zip(reversed(shape), reversed(target), strict=True):
        pad += [0, t - n]
    if any(pad):
        mode = "replicate"
        volume = torch.nn.functional.pad(volume[None, None], pad, mode=mode)[0, 0]
    return volume, tuple(shape)


def predict_heatmap(model: DetectorModel, volume: torch.Tensor,
                    settings: DetectSettings | None = None,
                    on_tile: Callable[[], None] | None = None) -> np.ndarray:
    """Network heatmap of a normalised working volume, tile by tile.

    Parameters
    ----------
    model
        The detector.
    volume
        ``(Z, Y, X)`` working volume in noise units; ``Z = 1`` for 2D.
    settings
        Tiling settings; default :class:`DetectSettings` ``()``.
    on_tile
        Called after every network call (progress reporting).

    Returns
    -------
    ndarray of float32, same shape as ``volume``.
    """
    from monai.inferers import sliding_window_inference

    settings = DetectSettings() if settings is None else settings
    spec = model.spec
    planar = volume.shape[0] == 1
    if planar:
        volume = volume.expand(spec.planar_depth, *volume.shape[1:])
    padded, shape = _pad_to_multiple(volume, spec.size_multiple)
    overlap = [math.ceil(o / w) for o, w in zip(settings.tile_overlap_um,
                                                  spec.working_voxel_um, strict=True)]
    roi = tile_size(padded.shape, spec.size_multiple, overlap, settings.tile_voxels)
    fraction = [min(0.5, o / r) if r < n else 0.0
                for o, r, n in zip(overlap, roi, padded.shape, strict=True)]

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        out = model.network(batch)
        if on_tile is not None:
            on_tile()
        return out

    model.network.eval()
    with torch.inference_mode():
        heat = sliding_window_inference(padded[None, None], roi, settings.batch_tiles,
                                        predictor, overlap=fraction, mode="gaussian",
                                        padding_mode="replicate")
    heat_np = heat[0, 0].numpy()[: shape[0], : shape[1], : shape[2]]
    if planar:
        quarter = spec.planar_depth // 4
        heat_np = heat_np[quarter: spec.planar_depth - quarter].mean(axis=0, keepdims=True)
    return np.ascontiguousarray(heat_np, dtype=np.float32)


def count_tiles(model: DetectorModel, grid_shape: Sequence[int],
                settings: DetectSettings) -> int:
    """Number of network calls :func:`predict_heatmap` makes for a working volume."""
    spec = model.spec
    shape = [spec.planar_depth, *grid_shape[1:]] if grid_shape[0] == 1 else list(grid_shape)
    padded = [m * math.ceil(n / m) for n, m in zip(shape, spec.size_multiple, strict=True)]
    overlap = [math.ceil(o / w) for o, w in zip(settings.tile_overlap_um,
                                                  spec.working_voxel_um, strict=True)]
    roi = tile_size(padded, spec.size_multiple, overlap, settings.tile_voxels)
    total = 1
    for n, r, o in zip(padded, roi, overlap, strict=True):
        if r >= n:
            continue
        interval = max(int(r * (1 - min(0.5, o / r))), 1)
        total *= math.ceil((n - r) / interval) + 1
    return math.ceil(total / settings.batch_tiles)


# -------------------------------------------------------------------- frames
def detect_frame(frame: np.ndarray, voxel_size_um: Sequence[float], model: DetectorModel,
                 settings: DetectSettings | None = None,
                 on_tile: Callable[[], None] | None = None) -> pd.DataFrame:
    """Detect nuclei in one ``(Z, Y, X)`` frame (see :func:`detect`); column ``t`` is 0."""
    settings = DetectSettings() if settings is None else settings
    grid = WorkingGrid.for_frame(frame.shape, voxel_size_um, model.spec.working_voxel_um)
    raw = to_working(frame, grid)
    norm = Normalisation.estimate(raw)
    if norm is None:
        return _empty()
    heat = predict_heatmap(model, norm.apply(raw), settings, on_tile)
    coords, heights = find_peaks(heat, grid.voxel_um, settings.peaks)
    index = np.clip(np.rint(coords).astype(np.int64), 0, np.asarray(grid.shape) - 1)
    scores = model.calibration(heights, on_border(index, grid.shape))
    keep = scores >= settings.min_score
    coords, scores, index = coords[keep], scores[keep], index[keep]
    intensity = raw.numpy()[tuple(index.T)] if len(index) else np.zeros(0)
    position = grid.index_to_um(coords)
    return pd.DataFrame({"t": np.zeros(len(scores), dtype=np.int64),
                         "z": position[:, 0], "y": position[:, 1], "x": position[:, 2],
                         "score": scores.astype(np.float64),
                         "intensity": np.asarray(intensity, dtype=np.float64)})


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"t": np.zeros(0, np.int64), **{c: np.zeros(0) for c in COLUMNS[1:]}})


def detect(
    image: Image | np.ndarray | da.Array,
    voxel_size_um: Sequence[float] | None = None,
    model: DetectorModel | str | None = None,
    settings: DetectSettings | None = None,
    frames: Iterable[int] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> pd.DataFrame:
    """Detect nuclei in a (time-lapse) image with the U-Net detector.

    Parameters
    ----------
    image
        An :class:`~labloop.io.images.Image`, or a numpy/dask array ``(T, Z, Y, X)``,
        ``(Z, Y, X)`` or ``(Y, X)`` of integers or floats. 2D data: ``Z = 1``.
    voxel_size_um
        Voxel size ``(z, y, x)`` in µm; required for arrays, taken from an
        :class:`Image` when omitted.
    model
        A :class:`~labloop.detect.model.DetectorModel`, a path to a
        ``.safetensors`` model, or ``None`` for the shipped model.
    settings
        Thresholds and tiling; default :class:`DetectSettings` ``()``.
    frames
        Frame indices to process (default all).
    progress
        Show a progress bar (frames and tiles) on stderr.
    **overrides
        Fields of :class:`DetectSettings` to change, e.g. ``min_score=0.3``.

    Returns
    -------
    DataFrame
        One row per detected nucleus: ``t`` (frame), ``z, y, x`` (µm, origin at
        the centre of voxel 0), ``score`` (calibrated probability that it is a
        true nucleus, 0–1), ``intensity`` (mean grey level of the working voxel
        at the centre). Sorted by ``t`` then decreasing score.

    Raises
    ------
    InputError
        Unsupported dtype, wrong number of axes, NaN/inf values, missing or bad
        voxel size, or an unreadable model file.

    Examples
    --------
    >>> from labloop.synth import SynthConfig, simulate_movie
    >>> movie = simulate_movie(SynthConfig(frames=1, shape=(16, 96, 96), n_cells=15))
    >>> found = detect(movie.image, movie.voxel_size_um, progress=False)  # doctest: +SKIP
    >>> list(found.columns)  # doctest: +SKIP
    ['t', 'z', 'y', 'x', 'score', 'intensity']
    """
    settings = DetectSettings() if settings is None else settings
    if overrides:
        unknown = set(overrides) - set(asdict(settings))
        if unknown:
            raise TypeError(f"unknown detect setting(s): {', '.join(sorted(unknown))}")
        settings = replace(settings, **overrides)
    data, voxel, source = _as_frames(image, voxel_size_um)
    if not isinstance(model, DetectorModel):
        model = load_model(model)
    n_frames = int(data.shape[0])
    indices = list(range(n_frames)) if frames is None else [int(t) for t in frames]
    for t in indices:
        if not 0 <= t < n_frames:
            raise InputError(f"frame {t} is outside 0..{n_frames - 1}")
    grid = WorkingGrid.for_frame(data.shape[1:], voxel, model.spec.working_voxel_um)
    tiles = count_tiles(model, grid.shape, settings)
    tables = []
    with _progress(progress, len(indices) * tiles) as advance:
        for t in indices:
            table = detect_frame(_load_frame(data, t, source), voxel, model, settings, advance)
            table["t"] = t
            tables.append(table)
    if not tables:
        return _empty()
    result = pd.concat(tables, ignore_index=True)
    result = result.sort_values(["t", "score"], ascending=[True, False], kind="stable")
    return result.reset_index(drop=True)[list(COLUMNS)]


class _progress:
    """A rich progress bar over network tiles (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress("detect", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True))
        self._bar.start()
        task = self._bar.add_task("tiles", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
