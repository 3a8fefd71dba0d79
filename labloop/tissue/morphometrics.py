"""Model outputs in the vocabulary of :func:`labloop.measure.measure`.

Two layers:

* differentiable morphometrics of one state (``jax``; ``vmap`` them over
  replicates and frames): :func:`cell_count`, :func:`shape` (``axis_1/2/3_um``,
  ``elongation``, ``radius_of_gyration_um`` with the same definitions as
  ``labloop.measure``: semi-axes of the uniform ellipsoid with the cluster's
  second moments, ``a = √(5 σ²)`` in 3D and ``√(4 σ²)`` in 2D), and
  :func:`axis_elongation` (a design objective). Cells enter with their
  ``weight``, so straight-through division gradients reach them.
* tables (``numpy``/``pandas``): :func:`to_lineage` turns a trajectory into a
  :class:`labloop.Lineage` (nodes flagged ``source``), :func:`to_table` runs
  ``labloop.measure.measure`` on it, replicate by replicate, and summarises
  over replicates, and :func:`to_positions` gives the positions table
  (``t, z, y, x`` µm, cell type) for viewers.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from labloop.lineage import Lineage
from labloop.tissue.simulate import Trajectory
from labloop.tissue.state import CellType, TissueState

#: ``a² = factor · σ²`` for a uniform ellipsoid (3D) or ellipse (2D)
UNIFORM_FACTOR = {3: 5.0, 2: 4.0}


def cell_weights(state: TissueState, cell_type: int | None = None) -> jax.Array:
    """Each slot's weight ``wᵢ`` in counts and moments: 0 for dead slots and, when
    ``cell_type`` is given, for cells of other types."""
    w = jnp.where(state.alive, state.weight, 0.0)
    if cell_type is not None:
        w = jnp.where(state.cell_type == cell_type, w, 0.0)
    return w


def cell_count(state: TissueState, cell_type: int | None = None) -> jax.Array:
    """Number of cells ``Σ wᵢ`` (of one type if given); differentiable."""
    return jnp.sum(cell_weights(state, cell_type))


def covariance(state: TissueState, dim: int = 3, cell_type: int | None = None) -> jax.Array:
    """Weighted covariance of positions (µm²), ``(dim, dim)`` (``y, x`` in 2D)."""
    w = cell_weights(state, cell_type)
    x = state.position_um[:, 3 - dim:]
    total = jnp.maximum(jnp.sum(w), 1e-12)
    centre = jnp.sum(w[:, None] * x, axis=0) / total
    d = x - centre
    return jnp.einsum("n,ni,nj->ij", w, d, d) / total


def shape(state: TissueState, dim: int = 3,
          cell_type: int | None = None) -> dict[str, jax.Array]:
    """Principal semi-axes (µm), elongation and radius of gyration (µm); differentiable.

    Returns a dict with ``axis_1_um ≥ axis_2_um (≥ axis_3_um in 3D)``,
    ``elongation = axis_1 / axis_2`` and ``radius_of_gyration_um = √tr Σ``.
    """
    cov = covariance(state, dim, cell_type)
    eig = jnp.maximum(jnp.linalg.eigvalsh(cov)[::-1], 0.0)
    axes = jnp.sqrt(UNIFORM_FACTOR[dim] * eig + 1e-12)
    out = {f"axis_{i + 1}_um": axes[i] for i in range(dim)}
    out["elongation"] = axes[0] / axes[1]
    out["radius_of_gyration_um"] = jnp.sqrt(jnp.trace(cov) + 1e-12)
    return out


def axis_elongation(state: TissueState, axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
                    dim: int = 3, cell_type: int | None = CellType.PROLIFERATING) -> jax.Array:
    """Log aspect ratio along a fixed axis: ``½ log(σ²_axis / σ²_perp)`` (dimensionless).

    ``σ²_axis = nᵀ Σ n`` is the variance along the unit vector ``n`` (``z, y, x``)
    and ``σ²_perp`` the mean variance over the ``dim − 1`` perpendicular
    directions. 0 for a round cluster; ``log(a_axis / a_perp)`` for an ellipsoid
    elongated along ``n``. Smooth (no eigen-decomposition), so a good
    objective for design.
    """
    n = unit_axis(axis, dim)
    cov = covariance(state, dim, cell_type)
    return 0.5 * jnp.log(n @ cov @ n / perpendicular_variance(cov, n))


def unit_axis(axis: tuple[float, float, float], dim: int = 3) -> jax.Array:
    """``axis`` (``z, y, x``) restricted to the model's ``dim`` axes and normalised."""
    n = jnp.asarray(axis, dtype=jnp.result_type(float))[3 - dim:]
    return n / jnp.linalg.norm(n)


def perpendicular_variance(cov: jax.Array, n: jax.Array) -> jax.Array:
    """Mean variance over the directions perpendicular to the unit vector ``n``:
    ``(tr Σ − nᵀ Σ n) / (dim − 1)`` for a ``(dim, dim)`` covariance ``Σ``."""
    return (jnp.trace(cov) - n @ cov @ n) / (cov.shape[0] - 1)


# ---------------------------------------------------------------- tables
def to_positions(trajectory: Trajectory) -> pd.DataFrame:
    """Positions of living cells: ``replicate, t, time_h, z, y, x`` (µm), ``cell_type``
    (name), ``cell_id``, ``mother``, ``radius_um``, ``growth_factor``,
    ``division_rate_per_h``; ``t`` is the recorded frame."""
    frames = jax.device_get(trajectory.frames)
    batched = trajectory.frames.counters.step.ndim == 2
    n_rep = trajectory.n_replicates
    names = {int(c): c.name.lower() for c in CellType}
    tables = []
    for r in range(n_rep):
        get = (lambda a, r=r: np.asarray(a)[r]) if batched else np.asarray
        alive = get(frames.alive)
        t, slot = np.nonzero(alive)
        pos = get(frames.position_um)[t, slot]
        tables.append(pd.DataFrame({
            "replicate": r, "t": t, "time_h": t * trajectory.frame_interval_h,
            "z": pos[:, 0], "y": pos[:, 1], "x": pos[:, 2],
            "cell_type": [names.get(int(c), str(c)) for c in get(frames.cell_type)[t, slot]],
            "cell_id": get(frames.cell_id)[t, slot], "mother": get(frames.mother)[t, slot],
            "radius_um": get(frames.radius_um)[t, slot],
            "growth_factor": get(frames.growth_factor)[t, slot],
            "division_rate_per_h": get(frames.division_rate_per_h)[t, slot]}))
    return pd.concat(tables, ignore_index=True)


def to_lineage(trajectory: Trajectory, replicate: int = 0) -> Lineage:
    """One replicate as a :class:`labloop.Lineage` (frame interval in hours).

    A cell is linked to itself in the next frame; a cell born between two
    frames is linked to its mother's node in the previous frame (when a cell
    was born and divided again between two frames, its daughters appear
    unlinked). Nodes carry ``source`` (bool), ``cell_type``, ``cell_id``,
    ``radius_um``, ``growth_factor`` and ``division_rate_per_h``.
    """
    table = to_positions(trajectory)
    table = table[table["replicate"] == replicate].drop(columns="replicate")
    nodes = table.reset_index(drop=True)
    nodes["source"] = nodes["cell_type"] == CellType.SOURCE.name.lower()
    node_of = {(int(t), int(c)): i for i, (t, c) in
               enumerate(zip(nodes["t"], nodes["cell_id"], strict=True))}
    sources, targets = [], []
    for i, (t, c, m) in enumerate(zip(nodes["t"], nodes["cell_id"], nodes["mother"],
                                      strict=True)):
        if t == 0:
            continue
        parent = node_of.get((int(t) - 1, int(c)), node_of.get((int(t) - 1, int(m))))
        if parent is not None:
            sources.append(parent)
            targets.append(i)
    edges = pd.DataFrame({"source": np.asarray(sources, np.int64),
                          "target": np.asarray(targets, np.int64)})
    return Lineage(nodes.drop(columns=["time_h"]), edges,
                   frame_interval_h=trajectory.frame_interval_h,
                   attrs={"origin": "labloop.tissue.simulate"})


def to_table(trajectory: Trajectory, settings: object | None = None,
             interval: float = 0.9) -> pd.DataFrame:
    """Morphometrics of a (batched) trajectory as a ``labloop.measure`` tidy table.

    Each replicate is measured by :func:`labloop.measure.measure` (exact
    lineage, no draws; landmark ``"source"`` by default); ``value`` is the mean
    over replicates and ``lower``/``upper`` the central ``interval`` of the
    replicates (the model's own stochasticity), so model and observation
    compare row by row.
    """
    from labloop.measure import MeasureSettings, measure

    settings = settings or MeasureSettings(landmark="source", n_draws=0)
    tables = []
    for r in range(trajectory.n_replicates):
        lineage = to_lineage(trajectory, r)
        if settings.landmark == "source" and not lineage.nodes["source"].any():
            settings = MeasureSettings(**{**settings.__dict__, "landmark": "centre"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tables.append(measure(lineage, settings=settings).assign(replicate=r))
    both = pd.concat(tables, ignore_index=True)
    keys = ["quantity", "t", "time_h", "bin_lo_um", "bin_hi_um", "unit"]
    tail = (1 - interval) / 2
    grouped = both.groupby(keys, dropna=False, sort=False)["value"]
    out = grouped.agg(value="mean", lower=lambda v: v.quantile(tail),
                      upper=lambda v: v.quantile(1 - tail)).reset_index()
    return out[["quantity", "t", "time_h", "bin_lo_um", "bin_hi_um", "value", "lower",
                "upper", "unit"]]
