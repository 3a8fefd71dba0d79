"""Resampling a frame to the detector's working voxel size, and intensity normalisation.

The network always sees the same physical scale: every frame is resampled to the
model's working voxel size (by default ``(2, 1, 1)`` µm, so a nucleus of radius
3–4 µm spans 3–4 voxels in ``z`` and 6–8 in ``y, x``). That makes the detector
independent of the user's voxel size and anisotropy, and is what makes it fast:
a typical confocal voxel of ``(2, 0.5, 0.5)`` µm is averaged 2 × 2 in ``y, x``.

Axes that shrink are averaged over whole input voxels (area / box averaging,
which also suppresses aliasing and noise); axes that grow are interpolated
linearly. Both treat voxel ``i`` as the interval ``[(i − ½)·v, (i + ½)·v]`` µm,
the convention of :mod:`labloop.synth` (positions measured from the centre of
voxel 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Input planes converted to float at a time during the in-plane resampling
#: (bounds the temporary memory for very large frames).
PLANES_PER_CHUNK = 16
#: Percentile of the working volume taken as the background level.
BACKGROUND_PERCENTILE = 5.0
#: Converts a median absolute deviation to a Gaussian standard deviation.
MAD_TO_SIGMA = 1.4826
#: Distance (working voxels along x) of the voxel pairs whose differences give the noise.
NOISE_LAG_VOXELS = 2
#: Every n-th plane is used to estimate the noise level (speed).
NOISE_PLANE_STRIDE = 2


@dataclass(frozen=True)
class WorkingGrid:
    """How one frame maps onto the working voxel grid.

    Attributes
    ----------
    input_shape
        ``(Z, Y, X)`` voxels of the input frame.
    input_voxel_um
        Input voxel size ``(z, y, x)`` in µm.
    shape
        ``(Z, Y, X)`` of the working volume (``Z = 1`` for 2D input).
    voxel_um
        Exact working voxel size ``(z, y, x)`` in µm (the extent of the frame
        divided by ``shape``; close to the requested working voxel size).
    """

    input_shape: tuple[int, int, int]
    input_voxel_um: tuple[float, float, float]
    shape: tuple[int, int, int]
    voxel_um: tuple[float, float, float]

    @staticmethod
    def for_frame(input_shape: Sequence[int], input_voxel_um: Sequence[float],
                  working_voxel_um: Sequence[float]) -> WorkingGrid:
        """Working grid of a frame: same physical extent, voxels near ``working_voxel_um``."""
        shape_in = tuple(int(s) for s in input_shape)
        voxel_in = tuple(float(v) for v in input_voxel_um)
        shape, voxel = [], []
        for axis, (n, v, w) in enumerate(zip(shape_in, voxel_in, working_voxel_um, strict=True)):
            if axis == 0 and n == 1:  # a 2D frame stays one plane
                shape.append(1)
                voxel.append(v)
                continue
            m = max(1, round(n * v / float(w)))
            shape.append(m)
            voxel.append(n * v / m)
        return WorkingGrid(shape_in, voxel_in, tuple(shape), tuple(voxel))  # type: ignore[arg-type]

    def index_to_um(self, index: np.ndarray) -> np.ndarray:
        """Working-grid coordinates ``(N, 3)`` (voxel units, may be fractional) to µm."""
        index = np.asarray(index, dtype=np.float64).reshape(-1, 3)
        w, v = np.asarray(self.voxel_um), np.asarray(self.input_voxel_um)
        return (index + 0.5) * w - 0.5 * v

    def um_to_index(self, position_um: np.ndarray) -> np.ndarray:
        """Positions ``(N, 3)`` in µm to fractional working-grid coordinates."""
        position_um = np.asarray(position_um, dtype=np.float64).reshape(-1, 3)
        w, v = np.asarray(self.voxel_um), np.asarray(self.input_voxel_um)
        return (position_um + 0.5 * v) / w - 0.5


def _resize_2d(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(1, C, Y, X)``: box-average shrinking axes, interpolate growing ones."""
    y, x = planes.shape[-2:]
    shrunk = (min(size[0], y), min(size[1], x))
    if shrunk != (y, x):
        planes = F.adaptive_avg_pool2d(planes, shrunk)
    if shrunk != size:
        planes = F.interpolate(planes, size=size, mode="bilinear", align_corners=False)
    return planes


def to_working(frame: np.ndarray, grid: WorkingGrid) -> torch.Tensor:
    """Resample a ``(Z, Y, X)`` frame onto ``grid`` as a float32 tensor (grey levels).

    ``y, x`` are resampled a few planes at a time (bounded temporary memory),
    then ``z`` on the already smaller volume.

    Parameters
    ----------
    frame
        Input frame, any real dtype.
    grid
        From :meth:`WorkingGrid.for_frame`.

    Returns
    -------
    Tensor of float32, shape ``grid.shape``
    """
    z_in = frame.shape[0]
    size_yx = grid.shape[1:]
    out = torch.empty((z_in, *size_yx), dtype=torch.float32)
    for start in range(0, z_in, PLANES_PER_CHUNK):
        chunk = torch.from_numpy(np.asarray(frame[start:start + PLANES_PER_CHUNK],
                                            dtype=np.float32))
        out[start:start + chunk.shape[0]] = _resize_2d(chunk[None], size_yx)[0]
    z_out = grid.shape[0]
    if z_out == z_in:
        return out
    volume = out[None, None]
    if z_out < z_in:
        volume = F.adaptive_avg_pool3d(volume, (z_out, *size_yx))
    else:
        volume = F.interpolate(volume, size=(z_out, *size_yx), mode="trilinear",
                               align_corners=False)
    return volume[0, 0].contiguous()


@dataclass(frozen=True)
class Normalisation:
    """Grey levels → noise units: ``(value − background) / noise_sigma``.

    Attributes
    ----------
    background
        Background grey level (a low percentile of the working volume).
    noise_sigma
        Standard deviation of the noise in the working volume (grey levels),
        estimated from differences of voxels :data:`NOISE_LAG_VOXELS` apart along
        ``x``, which the smooth nuclei hardly change. Resampling by a non-integer
        factor correlates the noise of adjacent working voxels; differences over
        two voxels skip that correlation, so the estimate (and hence the noise in
        normalised units) no longer depends on the input voxel size.
    """

    background: float
    noise_sigma: float

    @staticmethod
    def estimate(volume: torch.Tensor) -> Normalisation | None:
        """Estimate from a working volume; ``None`` for a constant (e.g. all-zero) frame."""
        values = volume.reshape(-1)
        low, high = float(values.min()), float(values.max())
        if not high > low:
            return None
        sample = volume[::NOISE_PLANE_STRIDE] if volume.shape[0] > 1 else volume
        background = float(torch.quantile(sample.reshape(-1)[:: max(1, sample.numel() // 2**22)],
                                          BACKGROUND_PERCENTILE / 100.0))
        lag = NOISE_LAG_VOXELS
        diffs = (sample[..., lag:] - sample[..., :-lag]).reshape(-1)
        if diffs.numel() == 0:
            diffs = (sample[..., lag:, :] - sample[..., :-lag, :]).reshape(-1)
        sigma = 0.0
        if diffs.numel():
            centred = diffs - diffs.median()
            sigma = MAD_TO_SIGMA * float(centred.abs().median()) / np.sqrt(2.0)
        if not sigma > 0:  # noise-free or quantised data: fall back to the spread
            sigma = float(values.std())
        if not sigma > 0:
            return None
        return Normalisation(background, sigma)

    def apply(self, volume: torch.Tensor) -> torch.Tensor:
        """The volume in noise units (new tensor)."""
        return (volume - self.background) / self.noise_sigma
