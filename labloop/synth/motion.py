"""Cell motion: a persistent random walk, soft repulsion, and the walls of the box.

Three pure steps on arrays of positions ``(N, 3)`` in µm and velocities in µm/h,
composed by :func:`labloop.synth.cells.simulate_cells`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def walk_step(velocity_um_per_h: np.ndarray, dt_h: float, speed_um_per_h: float,
              persistence_h: float, active_axes: np.ndarray, rng: np.random.Generator
              ) -> np.ndarray:
    """Advance the velocities of a persistent random walk by ``dt_h`` hours.

    Velocities follow an Ornstein–Uhlenbeck process, integrated exactly::

        v(t + Δt) = v(t)·e^(−Δt/τ) + s·√(1 − e^(−2Δt/τ))·ξ,   ξ ~ N(0, 1)

    with persistence time ``τ`` and per-axis stationary standard deviation
    ``s = speed / √d`` (``d`` active axes), so the stationary root-mean-square
    speed is ``speed_um_per_h``.

    Parameters
    ----------
    velocity_um_per_h
        Current velocities ``(N, 3)`` in µm/h.
    dt_h
        Time step in hours.
    speed_um_per_h
        Root-mean-square speed in µm/h.
    persistence_h
        Persistence (velocity correlation) time ``τ`` in hours.
    active_axes
        Boolean ``(3,)``: the axes cells move along (``z`` is inactive in 2D).
    rng
        Source of the random kicks.

    Returns
    -------
    ndarray
        New velocities ``(N, 3)`` in µm/h (zero along inactive axes).
    """
    decay = np.exp(-dt_h / persistence_h)
    s = speed_um_per_h / np.sqrt(max(int(np.sum(active_axes)), 1))
    kick = rng.normal(size=velocity_um_per_h.shape) * active_axes
    return velocity_um_per_h * decay + s * np.sqrt(1.0 - decay**2) * kick


def stationary_velocities(n: int, speed_um_per_h: float, active_axes: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Velocities ``(n, 3)`` (µm/h) drawn from the walk's stationary distribution."""
    s = speed_um_per_h / np.sqrt(max(int(np.sum(active_axes)), 1))
    return s * rng.normal(size=(n, 3)) * active_axes


def repel(positions_um: np.ndarray, radii_um: np.ndarray, contact_factor: float,
          fraction: float, active_axes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Push apart nuclei that overlap; one relaxation step of a soft repulsion.

    Two nuclei ``i, j`` overlap when ``d_ij < c·(r_i + r_j)`` (contact factor ``c``).
    Each moves away from the other by ``fraction·(c·(r_i + r_j) − d_ij)/2`` along
    the line joining them — an overdamped spring of rate ``k`` integrated over a
    step ``Δt`` with ``fraction = 1 − e^(−kΔt)``. Neighbour pairs come from a
    KD-tree, so the cost grows about linearly with the number of nuclei.

    Parameters
    ----------
    positions_um
        Positions ``(N, 3)`` in µm.
    radii_um
        Equivalent radii ``(N,)`` in µm.
    contact_factor
        ``c`` above.
    fraction
        Fraction of each overlap removed (0–1).
    active_axes
        Boolean ``(3,)``: axes along which nuclei may be pushed.
    rng
        Picks a direction for exactly coincident pairs.

    Returns
    -------
    ndarray
        New positions ``(N, 3)`` in µm.
    """
    n = len(positions_um)
    if n < 2 or fraction <= 0 or contact_factor <= 0:
        return positions_um
    reach = 2.0 * contact_factor * float(radii_um.max())
    pairs = cKDTree(positions_um).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return positions_um
    i, j = pairs[:, 0], pairs[:, 1]
    delta = positions_um[j] - positions_um[i]
    distance = np.linalg.norm(delta, axis=1)
    overlap = contact_factor * (radii_um[i] + radii_um[j]) - distance
    touching = overlap > 0
    if not np.any(touching):
        return positions_um
    i, j, delta, distance, overlap = (i[touching], j[touching], delta[touching],
                                      distance[touching], overlap[touching])
    coincident = distance <= np.finfo(np.float64).eps
    if np.any(coincident):
        random_dirs = rng.normal(size=(int(coincident.sum()), 3)) * active_axes
        delta[coincident] = random_dirs
        distance[coincident] = np.linalg.norm(random_dirs, axis=1)
    shift = (0.5 * fraction * overlap / distance)[:, None] * delta
    moved = positions_um.copy()
    for axis in np.flatnonzero(active_axes):
        moved[:, axis] += np.bincount(j, shift[:, axis], minlength=n)
        moved[:, axis] -= np.bincount(i, shift[:, axis], minlength=n)
    return moved


def reflect_into_box(positions_um: np.ndarray, velocity_um_per_h: np.ndarray,
                     lower_um: np.ndarray, upper_um: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mirror positions that left the box back inside and reverse that velocity axis.

    Parameters
    ----------
    positions_um, velocity_um_per_h
        Arrays ``(N, 3)`` in µm and µm/h.
    lower_um, upper_um
        Box corners ``(3,)`` in µm (equal on a flat axis, which is then pinned).

    Returns
    -------
    positions_um, velocity_um_per_h
        Positions inside the box and the velocities with reversed components.
    """
    positions = positions_um.copy()
    velocity = velocity_um_per_h.copy()
    below = positions < lower_um
    above = positions > upper_um
    positions = np.where(below, 2 * lower_um - positions, positions)
    positions = np.where(above, 2 * upper_um - positions, positions)
    velocity = np.where(below | above, -velocity, velocity)
    return np.clip(positions, lower_um, upper_um), velocity
