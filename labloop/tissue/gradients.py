"""Gradients through stochastic divisions.

Divisions are discrete draws ``d ~ Bernoulli(p(θ))``, so a loss ``L`` of a
trajectory is not differentiable along the draw. Two estimators of
``∇_θ E[L]``:

Score function (REINFORCE) with a baseline, unbiased:

    ∇ E[L] = E[∇_θ L |_d  +  (L − b) ∇_θ log P(d; θ)],

where ``∇ L |_d`` is the pathwise derivative with the draws held fixed
(mechanics, motility noise and growth are reparametrised), ``log P(d; θ)`` the
summed log-probability of all draws (``counters.log_prob``), and ``b`` a
baseline independent of the replicate's own draws: the mean loss of the
*other* replicates (leave-one-out), which keeps the estimator unbiased and
removes most of its variance.

Straight-through Gumbel (``TissueModel(division_gradient="straight_through")``),
biased, low variance: the forward pass is the same hard draw, the backward pass
differentiates the relaxed sample ``σ((logit p + g)/τ)`` carried by the
daughters' ``weight`` and separation (see :mod:`.division`). Its gradient is
the plain (pathwise) gradient of the replicate-averaged loss.

Expected growth (``TissueModel(division_gradient="expected_growth")``), biased
(mean field), lowest variance: every cell's ``weight`` carries the first-order
change of its expected offspring with its division rate (see :mod:`.division`);
the gradient is again the pathwise gradient of the replicate-averaged loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from labloop.errors import InputError
from labloop.tissue.model import TissueModel
from labloop.tissue.params import TissueParams
from labloop.tissue.simulate import Trajectory, simulate
from labloop.tissue.state import TissueState

Loss = Callable[[Trajectory], jax.Array]
ESTIMATORS = ("score", "score_no_baseline", "straight_through", "expected_growth",
              "pathwise")


def simulate_replicates(model: TissueModel, params: TissueParams, keys: jax.Array,
                        initial: TissueState | None = None, **kwargs: Any) -> Trajectory:
    """``vmap`` of :func:`simulate` over PRNG keys (leading replicate axis)."""
    return jax.vmap(lambda k: simulate(model, params, k, initial, **kwargs))(keys)


def _losses(loss_fn: Loss, trajectories: Trajectory) -> jax.Array:
    return jax.vmap(loss_fn)(trajectories)


def leave_one_out_baseline(losses: jax.Array) -> jax.Array:
    """``bₖ = mean of the other replicates' losses`` (no gradient)."""
    r = losses.shape[0]
    if r < 2:
        return jnp.zeros_like(losses)
    losses = jax.lax.stop_gradient(losses)
    return (jnp.sum(losses) - losses) / (r - 1)


def score_function_surrogate(loss_fn: Loss, model: TissueModel, params: TissueParams,
                             keys: jax.Array, initial: TissueState | None = None,
                             baseline: bool = True,
                             **kwargs: Any) -> tuple[jax.Array, jax.Array]:
    """Surrogate whose gradient is the score-function estimate (module doc).

    Returns ``(surrogate, losses)``; ``surrogate`` equals the mean loss in value.
    """
    trajectories = simulate_replicates(model, params, keys, initial, **kwargs)
    losses = _losses(loss_fn, trajectories)
    log_prob = trajectories.frames.counters.log_prob[:, -1]
    b = leave_one_out_baseline(losses) if baseline else jnp.zeros_like(losses)
    advantage = jax.lax.stop_gradient(losses - b)
    surrogate = jnp.mean(losses + advantage * (log_prob - jax.lax.stop_gradient(log_prob)))
    return surrogate, losses


def gradient_estimate(loss_fn: Loss, model: TissueModel, params: TissueParams,
                      key: jax.Array, n_replicates: int = 8,
                      initial: TissueState | None = None, estimator: str = "score",
                      **kwargs: Any) -> tuple[jax.Array, TissueParams]:
    """Mean loss over ``n_replicates`` runs and an estimate of ``∇ E[L]``.

    Parameters
    ----------
    loss_fn
        ``Trajectory -> scalar`` for one replicate.
    estimator
        ``"score"`` (with leave-one-out baseline), ``"score_no_baseline"``,
        ``"straight_through"`` (needs ``model.division_gradient ==
        "straight_through"``) or ``"pathwise"`` (draws held fixed: exact when no
        cell divides, e.g. for mechanics-only fits).
    kwargs
        Passed to :func:`simulate` (``n_frames``, ``steps_per_frame``, ``checkpoint``).
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if estimator in ("straight_through", "expected_growth") \
            and model.division_gradient != estimator:
        raise InputError(f"the {estimator} estimator needs "
                         f"TissueModel(division_gradient={estimator!r})")
    keys = jax.random.split(key, n_replicates)
    if estimator.startswith("score"):
        def objective(p: TissueParams) -> tuple[jax.Array, jax.Array]:
            surrogate, losses = score_function_surrogate(
                loss_fn, model, p, keys, initial, baseline=estimator == "score", **kwargs)
            return surrogate, jnp.mean(losses)
    else:
        def objective(p: TissueParams) -> tuple[jax.Array, jax.Array]:
            losses = _losses(loss_fn, simulate_replicates(model, p, keys, initial, **kwargs))
            return jnp.mean(losses), jnp.mean(losses)
    grad, loss = jax.grad(objective, has_aux=True)(params)
    return loss, grad


def per_replicate_gradients(loss_fn: Loss, model: TissueModel, params: TissueParams,
                            key: jax.Array, n_replicates: int = 8,
                            initial: TissueState | None = None, estimator: str = "score",
                            **kwargs: Any) -> tuple[jax.Array, TissueParams]:
    """Single-replicate gradient estimates ``gₖ`` (leading axis ``R``) and losses.

    Their mean is what :func:`gradient_estimate` returns; their spread measures
    the estimator's variance (``Var gₖ / R`` is the variance of the mean).
    """
    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    keys = jax.random.split(key, n_replicates)
    losses = _losses(loss_fn, simulate_replicates(model, params, keys, initial, **kwargs))
    if estimator == "score":
        b = leave_one_out_baseline(losses)
    else:
        b = jnp.zeros_like(losses)

    def one(k: jax.Array, bk: jax.Array) -> TissueParams:
        def objective(p: TissueParams) -> jax.Array:
            traj = simulate(model, p, k, initial, **kwargs)
            loss = loss_fn(traj)
            if not estimator.startswith("score"):
                return loss
            log_prob = traj.frames.counters.log_prob[-1]
            return loss + jax.lax.stop_gradient(loss - bk) * log_prob

        return jax.grad(objective)(params)

    return losses, jax.vmap(one)(keys, b)
