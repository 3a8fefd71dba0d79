"""The field of view and the larger simulated box around it, in micrometres.

Coordinates are ``(z, y, x)`` in µm with the origin at the centre of voxel
``(0, 0, 0)``, so voxel ``i`` along an axis of voxel size ``v`` covers
``[(i − ½)·v, (i + ½)·v)``. A point is *in the field of view* when the voxel
containing it is in the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fov_bounds_um(shape: Sequence[int], voxel_size_um: Sequence[float]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners ``(z, y, x)`` of the imaged volume, in µm.

    Parameters
    ----------
    shape
        Spatial image shape ``(Z, Y, X)`` in voxels.
    voxel_size_um
        Voxel size ``(z, y, x)`` in µm.

    Returns
    -------
    lower, upper
        Arrays of shape ``(3,)``: ``−v/2`` and ``(n − ½)·v`` per axis.

    Examples
    --------
    >>> fov_bounds_um((1, 4, 4), (2.0, 0.5, 0.5))
    (array([-1.  , -0.25, -0.25]), array([1.  , 1.75, 1.75]))
    """
    voxel = np.asarray(voxel_size_um, dtype=np.float64)
    n = np.asarray(shape, dtype=np.float64)
    return -0.5 * voxel, (n - 0.5) * voxel


def in_fov(positions_um: np.ndarray, shape: Sequence[int], voxel_size_um: Sequence[float]
           ) -> np.ndarray:
    """Whether each ``(z, y, x)`` position (µm) lies in a voxel of the image.

    Parameters
    ----------
    positions_um
        Array ``(N, 3)`` of positions in µm.
    shape, voxel_size_um
        Spatial image shape ``(Z, Y, X)`` and voxel size ``(z, y, x)`` in µm.

    Returns
    -------
    ndarray of bool, shape ``(N,)``
    """
    lower, upper = fov_bounds_um(shape, voxel_size_um)
    positions = np.asarray(positions_um, dtype=np.float64).reshape(-1, 3)
    return np.all((positions >= lower) & (positions < upper), axis=1)


def nearest_voxel(positions_um: np.ndarray, voxel_size_um: Sequence[float]) -> np.ndarray:
    """Index ``(z, y, x)`` of the voxel containing each position (may be outside the image)."""
    positions = np.asarray(positions_um, dtype=np.float64).reshape(-1, 3)
    return np.floor(positions / np.asarray(voxel_size_um) + 0.5).astype(np.int64)


def simulation_box_um(shape: Sequence[int], voxel_size_um: Sequence[float], margin_um: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Corners of the simulated box: the field of view grown by ``margin_um`` (µm).

    For a 2D image (``Z = 1``) the box is flat: ``z`` is fixed at 0.
    """
    lower, upper = fov_bounds_um(shape, voxel_size_um)
    lower, upper = lower - margin_um, upper + margin_um
    if shape[0] == 1:
        lower[0] = upper[0] = 0.0
    return lower, upper
