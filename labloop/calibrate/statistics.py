"""The model's side of :mod:`.observations`: the same terms, differentiable (JAX).

Each function takes a :class:`~labloop.tissue.Trajectory` of one replicate
(frames ``0 … F``) and returns the term as an array; ``vmap`` it over
replicates. Cells enter with their ``weight`` (straight-through division
gradients reach counts and shapes); the growth rate and the division-rate
profile use the divisions each cell was *expected* to make in a frame
(accumulated at every step), so they are smooth functions of the parameters
and unbiased for the realised ones. The growth rate takes every division
(``TissueState.expected_divisions``); the profile only those the recorded
frames show (``TissueState.visible_divisions``): a cell whose daughter divides
again before the next frame is not a mother in the lineage, which loses about
5 % of the divisions where cells divide fastest at 30-min frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labloop.tissue import Trajectory, cell_count
from labloop.tissue.morphometrics import covariance
from labloop.tissue.state import TissueState


def counts(trajectory: Trajectory) -> jax.Array:
    """Cells per frame ``(F + 1,)`` as realised."""
    return jax.vmap(cell_count)(trajectory.frames)


def expected_increase(trajectory: Trajectory) -> jax.Array:
    """Rao–Blackwellised new cells per frame ``(F,)``: the divisions expected at each
    step of the frame, ``Σ_steps Σᵢ wᵢ (1 − exp(−λᵢ dt))`` (daughters born within the
    frame included).

    Its replicate mean estimates ``E[N(t)]`` like :func:`counts` does, but it is a
    smooth function of the division rates, so its pathwise gradient carries how
    the parameters change proliferation without differentiating discrete draws.
    """
    return jnp.sum(jnp.diff(trajectory.frames.expected_divisions, axis=0), axis=-1)


def growth_rate(trajectory: Trajectory) -> jax.Array:
    """New cells per cell-hour in each frame ``(F,)`` (1/h): :func:`expected_increase`
    over the cells at the frame's start times the frame interval."""
    present = counts(trajectory)[:-1] * trajectory.frame_interval_h
    return expected_increase(trajectory) / jnp.maximum(present, 1e-9)


def radius_of_gyration(trajectory: Trajectory) -> jax.Array:
    """``√tr Σ`` of all cells per frame (µm), ``(F + 1,)``."""
    dim = trajectory.dim
    return jax.vmap(lambda s: jnp.sqrt(jnp.trace(covariance(s, dim)) + 1e-12))(
        trajectory.frames)


def division_rate_by_distance(trajectory: Trajectory, landmark_um: jax.Array,
                              bin_edges_um: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Expected divisions per cell-hour in distance bins from ``landmark_um``, pooled over
    frames ``0 … F − 1`` (as ``labloop.measure``): ``(rate, cell-frames)`` per bin. A
    cell's divisions in a frame are the visible ones expected at the steps of the
    frame (module doc), binned by where it was at the frame's start."""
    frames: TissueState = jax.tree_util.tree_map(lambda x: x[:-1], trajectory.frames)
    interval = trajectory.frame_interval_h
    distance = jnp.sqrt(jnp.sum((frames.position_um - landmark_um) ** 2, -1) + 1e-12)
    w = jnp.where(frames.alive, frames.weight, 0.0)
    p = jnp.where(frames.alive, jnp.diff(trajectory.frames.visible_divisions, axis=0), 0.0)
    lo, hi = bin_edges_um[:-1], bin_edges_um[1:]
    member = (distance[..., None] >= lo) & (distance[..., None] < hi)   # (F, N, B)
    exposure = jnp.sum(jnp.where(member, w[..., None], 0.0), axis=(0, 1))
    expected = jnp.sum(jnp.where(member, p[..., None], 0.0), axis=(0, 1))
    return expected / jnp.maximum(exposure, 1e-9) / interval, exposure


def msd_excess(trajectory: Trajectory) -> jax.Array:
    """Mean over cells and frames of ``|x(t+2) − x(t)|² − |x(t+1) − x(t)|²`` (µm²) for
    slots that keep the same cell over the three frames (no division)."""
    f = trajectory.frames
    same = (f.alive[:-2] & f.alive[1:-1] & f.alive[2:]
            & (f.cell_id[:-2] == f.cell_id[1:-1]) & (f.cell_id[1:-1] == f.cell_id[2:]))
    x0, x1, x2 = f.position_um[:-2], f.position_um[1:-1], f.position_um[2:]
    d1 = jnp.sum((x1 - x0) ** 2, -1)
    d2 = jnp.sum((x2 - x0) ** 2, -1)
    n = jnp.maximum(jnp.sum(same), 1)
    return jnp.sum(jnp.where(same, d2 - d1, 0.0)) / n


def model_terms(trajectory: Trajectory, landmark_um: jax.Array | None,
                bin_edges_um: jax.Array, terms: list[str]) -> dict[str, jax.Array]:
    """The requested terms of one replicate (names of :data:`.observations.TERMS`)."""
    out: dict[str, jax.Array] = {}
    if "cell_growth_rate_per_h" in terms:
        out["cell_growth_rate_per_h"] = growth_rate(trajectory)
    if "radius_of_gyration_increase_um" in terms:
        out["radius_of_gyration_increase_um"] = jnp.diff(radius_of_gyration(trajectory))
    if "division_rate_by_distance_per_h" in terms and landmark_um is not None:
        out["division_rate_by_distance_per_h"], _ = division_rate_by_distance(
            trajectory, landmark_um, bin_edges_um)
    if "msd_excess_um2" in terms:
        out["msd_excess_um2"] = msd_excess(trajectory)[None]
    return out
