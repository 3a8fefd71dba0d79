"""Design by gradients: find gene-network parameters that produce a target morphology.

The reference experiment (differentiable programming of cell-cluster
morphogenesis, Nature Computational Science 2025): a round cluster with source
cells on its −x side; the source cells secrete a growth factor, the
proliferating cells' gene network reads it and sets their division
propensity. Gradient descent (``optax``) through the whole stochastic
simulation tunes the network so that the cluster elongates along ``+x``, away
from the sources. The same :func:`design` loop optimises any loss of a
trajectory, e.g. :func:`target_size_loss` (grow to a size and stop there).

Objectives are pure functions ``Trajectory -> scalar`` of one replicate;
gradients through the divisions use the straight-through or the
score-function estimator of :mod:`labloop.tissue.gradients`; parameters are
optimised in unconstrained space (``log`` of positive ones) with frozen ones
held by :func:`labloop.tissue.params.freeze`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.tissue.gradients import (
    gradient_estimate,
    score_function_surrogate,
    simulate_replicates,
)
from labloop.tissue.model import TissueModel
from labloop.tissue.morphometrics import (
    axis_elongation,
    cell_count,
    cell_weights,
    covariance,
    perpendicular_variance,
    shape,
    unit_axis,
)
from labloop.tissue.params import (
    TissueParams,
    constrain,
    freeze,
    trainable_mask,
    unconstrain,
)
from labloop.tissue.simulate import Trajectory
from labloop.tissue.state import CellType, TissueState

#: parameters a design changes by default: the gene network and its read-out
GENE_NETWORK = ("gene.*", "division.output_weights", "division.output_bias")


# ------------------------------------------------------------------ objectives
def elongation_loss(axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
                    dim: int = 3) -> Callable[[Trajectory], jax.Array]:
    """``−½ log(σ²_axis / σ²_perp)`` of the proliferating cells in the last frame.

    Minimising it elongates the cluster along ``axis`` (``z, y, x``; default
    ``x``). It is symmetric: growth at either end along the axis lowers it (see
    :func:`extension_loss` for elongation away from the sources).
    """

    def loss(trajectory: Trajectory) -> jax.Array:
        return -axis_elongation(trajectory.final, axis, dim, CellType.PROLIFERATING)

    return loss


def extension_loss(axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
                   dim: int = 3) -> Callable[[Trajectory], jax.Array]:
    """``−½ log(E[((x − x_s)·n)²] / σ²_perp)`` of the proliferating cells in the last frame.

    Like :func:`elongation_loss`, but the second moment along the unit vector
    ``n = axis`` is taken about the source cells' centroid ``x_s`` instead of the
    cluster's own centre, so only growth *away from the sources* lowers it; growth
    next to the sources raises it. Cells enter with their ``weight``.
    """
    n = unit_axis(axis, dim)

    def loss(trajectory: Trajectory) -> jax.Array:
        state = trajectory.final
        position = state.position_um[:, 3 - dim:]
        is_source = state.alive & (state.cell_type == CellType.SOURCE)
        w = cell_weights(state, CellType.PROLIFERATING)
        source_centre = jnp.sum(jnp.where(is_source[:, None], position, 0.0), 0) \
            / jnp.maximum(jnp.sum(is_source), 1)
        along = (position - source_centre) @ n
        second_moment = jnp.sum(w * along**2) / jnp.maximum(jnp.sum(w), 1e-12)
        sigma_perp = perpendicular_variance(covariance(state, dim, CellType.PROLIFERATING), n)
        return -0.5 * jnp.log(second_moment / jnp.maximum(sigma_perp, 1e-12))

    return loss


def target_size_loss(target_cells: float, from_frame: int) -> Callable[[Trajectory], jax.Array]:
    """Mean over frames ``≥ from_frame`` of ``(N(t)/N* − 1)²``: reach ``N*`` cells and stop.

    ``N(t) = Σ wᵢ`` counts all living cells (differentiable through divisions with
    the straight-through estimator).
    """
    if target_cells <= 0:
        raise InputError(f"the target size must be positive, got {target_cells}")

    def loss(trajectory: Trajectory) -> jax.Array:
        counts = jax.vmap(cell_count)(trajectory.frames)
        return jnp.mean((counts[from_frame:] / target_cells - 1.0) ** 2)

    return loss


def weighted_sum(*terms: tuple[float, Callable[[Trajectory], jax.Array]]
                 ) -> Callable[[Trajectory], jax.Array]:
    """One objective from several: ``Σ wₖ · lossₖ(trajectory)``.

    E.g. elongate away from the sources *at a fixed size*, the reference setting
    (there the cluster grows to a set number of cells and the network only
    decides where the divisions happen)::

        weighted_sum((1.0, extension_loss()), (1.0, target_size_loss(120, from_frame=8)))

    Parameters
    ----------
    *terms
        ``(weight, loss)`` pairs; each loss maps a :class:`Trajectory` to a scalar.
    """
    if not terms:
        raise InputError("weighted_sum needs at least one (weight, loss) term")
    for weight, term in terms:
        if not callable(term) or not np.isfinite(weight):
            raise InputError("weighted_sum takes (finite weight, loss function) pairs")

    def loss(trajectory: Trajectory) -> jax.Array:
        return sum(weight * term(trajectory) for weight, term in terms)

    return loss


# ------------------------------------------------------------------ the loop
@dataclass
class DesignResult:
    """Outcome of :func:`design`.

    Attributes
    ----------
    params
        Optimised physical parameters.
    history
        One row per iteration: ``iteration``, ``loss`` (replicate mean),
        ``loss_sd`` (replicate spread), ``grad_norm``, ``seconds``.
    initial_params
        The starting parameters.
    """

    params: TissueParams
    history: pd.DataFrame
    initial_params: TissueParams
    settings: dict[str, Any] = field(default_factory=dict)


def design(model: TissueModel, params: TissueParams, initial: TissueState,
           loss_fn: Callable[[Trajectory], jax.Array], key: jax.Array, *,
           free: Sequence[str] = GENE_NETWORK, optimizer: Any = None,
           n_iterations: int = 50, n_replicates: int = 4, estimator: str | None = None,
           n_frames: int = 8, steps_per_frame: int = 12, checkpoint: str | None = None,
           common_random_numbers: bool = False,
           callback: Callable[[int, float], None] | None = None) -> DesignResult:
    """Optimise ``params`` (only the leaves matching ``free``) to minimise ``E[loss_fn]``.

    Parameters
    ----------
    model, params, initial
        The tissue model, starting parameters and initial cluster.
    loss_fn
        ``Trajectory -> scalar`` of one replicate (e.g. :func:`elongation_loss`).
    key
        PRNG key; every iteration uses fresh replicates.
    free
        Names (wildcards allowed) of the parameters to optimise; others are frozen.
    optimizer
        An ``optax`` gradient transformation (default ``adam(0.05)``), applied in
        unconstrained space.
    n_iterations, n_replicates
        Optimisation steps and simulated replicates per step.
    estimator
        Division-gradient estimator (default: the model's ``"straight_through"`` or
        ``"expected_growth"``, else ``"score"``).
    n_frames, steps_per_frame, checkpoint
        Passed to :func:`labloop.tissue.simulate`.
    common_random_numbers
        Reuse the same ``n_replicates`` random streams (division draws, motility,
        division axes) in every iteration instead of fresh ones. The objective is
        then one fixed sample average, so successive steps compare like with like
        and the optimiser is not chasing replicate noise (sample-average
        approximation); check the result on fresh replicates (:func:`evaluate`),
        as it may fit the particular streams.
    callback
        Called as ``callback(iteration, loss)``.
    """
    import optax

    if n_iterations < 1 or n_replicates < 1:
        raise InputError("n_iterations and n_replicates must be at least 1")
    estimator = estimator or (model.division_gradient if model.division_gradient
                              in ("straight_through", "expected_growth") else "score")
    optimizer = optimizer or optax.adam(0.05)
    # strong (not weakly typed) leaves, so the compiled iteration is reused
    raw = jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x)), unconstrain(params))
    mask = trainable_mask(params, free)
    opt = freeze(optimizer, mask)
    opt_state = opt.init(raw)
    sim = {"n_frames": n_frames, "steps_per_frame": steps_per_frame, "checkpoint": checkpoint}

    @jax.jit
    def iteration(raw: TissueParams, opt_state: Any,
                  k: jax.Array) -> tuple[TissueParams, Any, jax.Array, jax.Array, jax.Array]:
        keys = jax.random.split(k, n_replicates)
        if estimator.startswith("score"):
            def objective(r: TissueParams) -> tuple[jax.Array, jax.Array]:
                s, losses = score_function_surrogate(loss_fn, model, constrain(r), keys,
                                                     initial, estimator == "score", **sim)
                return s, losses
        else:
            def objective(r: TissueParams) -> tuple[jax.Array, jax.Array]:
                traj = simulate_replicates(model, constrain(r), keys, initial, **sim)
                losses = jax.vmap(loss_fn)(traj)
                return jnp.mean(losses), losses
        grads, losses = jax.grad(objective, has_aux=True)(raw)
        grads = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
        updates, opt_state = opt.update(grads, opt_state, raw)
        norm = optax.tree.norm(jax.tree_util.tree_map(lambda g, m: g * m, grads, mask))
        return optax.apply_updates(raw, updates), opt_state, jnp.mean(losses), \
            jnp.std(losses), norm

    rows = []
    iteration_keys = jax.random.split(key, n_iterations)
    if common_random_numbers:
        iteration_keys = jnp.broadcast_to(iteration_keys[0], iteration_keys.shape)
    for i, k in enumerate(iteration_keys):
        start = time.perf_counter()
        raw, opt_state, loss, spread, norm = iteration(raw, opt_state, k)
        loss = float(loss)
        rows.append({"iteration": i, "loss": loss, "loss_sd": float(spread),
                     "grad_norm": float(norm), "seconds": time.perf_counter() - start})
        if callback is not None:
            callback(i, loss)
    return DesignResult(constrain(raw), pd.DataFrame(rows), params,
                        {"free": list(free), "estimator": estimator,
                         "n_replicates": n_replicates,
                         "common_random_numbers": common_random_numbers, **sim})


# ------------------------------------------------------------------ read-outs
def evaluate(model: TissueModel, params: TissueParams, initial: TissueState, key: jax.Array,
             n_replicates: int = 8, n_frames: int = 8, steps_per_frame: int = 12,
             axis: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> pd.DataFrame:
    """Final-frame morphometrics of ``n_replicates`` fresh runs, one row per replicate:
    ``cell_count``, ``elongation`` (``axis_1/axis_2``, as ``labloop.measure``),
    ``axis_elongation`` (log aspect ratio along ``axis``), ``overflow``."""
    keys = jax.random.split(key, n_replicates)
    traj = simulate_replicates(model, params, keys, initial, n_frames=n_frames,
                               steps_per_frame=steps_per_frame)
    final = traj.final
    shapes = jax.vmap(lambda s: shape(s, model.dim))(final)
    return pd.DataFrame({
        "replicate": np.arange(n_replicates),
        "cell_count": np.asarray(jax.vmap(cell_count)(final)),
        "elongation": np.asarray(shapes["elongation"]),
        "axis_elongation": np.asarray(jax.vmap(
            lambda s: axis_elongation(s, axis, model.dim, None))(final)),
        "overflow": np.asarray(final.counters.overflow)})


def rate_by_distance(trajectory: Trajectory, bin_width_um: float = 10.0,
                     n_bins: int = 8) -> pd.DataFrame:
    """Mean division propensity λ (1/h) of proliferating cells by distance (µm) to the
    nearest source cell, pooled over frames and replicates: ``bin_lo_um, bin_hi_um,
    rate_per_h, n``; plus the mean growth factor in each bin."""
    frames = jax.device_get(trajectory.frames)
    pos = np.asarray(frames.position_um).reshape(-1, frames.position_um.shape[-2], 3)
    alive = np.asarray(frames.alive).reshape(len(pos), -1)
    kind = np.asarray(frames.cell_type).reshape(len(pos), -1)
    rate = np.asarray(frames.division_rate_per_h).reshape(len(pos), -1)
    conc = np.asarray(frames.growth_factor).reshape(len(pos), -1)
    distances, rates, concs = [], [], []
    for p, a, k, r, c in zip(pos, alive, kind, rate, conc, strict=True):
        src = p[a & (k == CellType.SOURCE)]
        cells = a & (k == CellType.PROLIFERATING)
        if len(src) == 0 or not cells.any():
            continue
        d = np.linalg.norm(p[cells][:, None] - src[None], axis=-1).min(axis=1)
        distances.append(d)
        rates.append(r[cells])
        concs.append(c[cells])
    d, r, c = np.concatenate(distances), np.concatenate(rates), np.concatenate(concs)
    edges = np.arange(n_bins + 1) * bin_width_um
    index = np.digitize(d, edges) - 1
    rows = []
    for b in range(n_bins):
        sel = index == b
        rows.append({"bin_lo_um": edges[b], "bin_hi_um": edges[b + 1],
                     "rate_per_h": float(r[sel].mean()) if sel.any() else np.nan,
                     "growth_factor": float(c[sel].mean()) if sel.any() else np.nan,
                     "n": int(sel.sum())})
    return pd.DataFrame(rows)


__all__ = ["GENE_NETWORK", "DesignResult", "design", "elongation_loss", "evaluate",
           "extension_loss",
           "gradient_estimate", "rate_by_distance", "target_size_loss", "weighted_sum"]
