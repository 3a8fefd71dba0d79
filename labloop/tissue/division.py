"""Stochastic cell division, any number of divisions per step.

Each living proliferating cell divides independently during a step ``dt`` with
the hazard probability

    p = 1 − exp(−λ dt),       log p = log(−expm1(−λ dt)),   log(1 − p) = −λ dt.

The draw is ``d = [logit p + g > 0]`` with ``g`` standard logistic noise, i.e.
exactly Bernoulli(p) (Gumbel-max with two classes). Its log-probability
``d log p + (1 − d) log(1 − p)`` is summed into ``counters.log_prob`` for the
score-function estimator. With ``model.division_gradient == "straight_through"``
the hard draw is used forward while derivatives flow through the relaxed
sample ``σ((logit p + g)/τ)``: the daughter's ``weight`` and the daughters'
separation carry it (both equal their hard values in the forward pass).

With ``"expected_growth"`` every living cell's ``weight`` is multiplied each
step by ``exp((λ − ⊥λ) dt)``, ``⊥`` the stop-gradient: its value stays 1 but
``∂w/∂θ = w Σ dt ∂λ/∂θ`` over the cell's ancestry (daughters inherit the weight),
the first-order change of the cell's expected offspring ``E[N] ≈ w e^{∫λ dt}``.
Losses of weighted cells (counts, shapes) then get a smooth, low-variance
gradient of where proliferation happens — a mean-field (Rao–Blackwellised)
estimator that leaves out how the extra cells would push their neighbours.

A dividing cell of radius ``R`` becomes two daughters of radius
``R · 2^{−1/3}`` (volume conserved) placed at ``x ± δ n``, ``n`` a uniformly
random unit vector (in the ``y, x`` plane for 2D models) and
``δ = model.division_offset · R · 2^{−1/3}``. The mother's slot keeps the first
daughter, the second goes to the first free slot; both get new lineage ids
with ``mother`` = the mother's id and ``born`` = the current step. Divisions
that find no free slot are not performed and are counted in
``counters.overflow``.

Every step also accumulates the divisions each cell was expected to make
(``expected_divisions``) and those a lineage of the recorded frames would show
(``visible_divisions``: not when a daughter divides again before the next
frame), the smooth counts that :mod:`labloop.calibrate.statistics` fits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from labloop.tissue.model import TissueModel
from labloop.tissue.params import TissueParams
from labloop.tissue.state import TissueState

VOLUME_SPLIT = 2.0 ** (-1.0 / 3.0)


def division_probability(rate_per_h: jax.Array, dt_h: float) -> tuple[jax.Array, jax.Array]:
    """``(log p, log(1 − p))`` of dividing within ``dt`` at hazard ``λ`` (1/h)."""
    lam_dt = rate_per_h * dt_h
    log_p = jnp.log(-jnp.expm1(-jnp.maximum(lam_dt, 1e-30)))
    return log_p, -lam_dt


def random_axis(key: jax.Array, n: int, dim: int, dtype: jnp.dtype) -> jax.Array:
    """``(n, 3)`` uniformly random unit vectors (``z = 0`` when ``dim == 2``)."""
    v = jax.random.normal(key, (n, 3), dtype)
    if dim == 2:
        v = v.at[:, 0].set(0.0)
    return v / jnp.sqrt(jnp.sum(v**2, axis=-1, keepdims=True) + 1e-12)


def draw_divisions(state: TissueState, key: jax.Array,
                   model: TissueModel) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Hard draws ``d``, the value carried by daughters (``d`` or straight-through), the
    summed log-probability of the draws and each cell's division probability ``p``."""
    eligible = state.division_rate_per_h > 0
    log_p, log_q = division_probability(state.division_rate_per_h, model.dt_h)
    g = jax.random.logistic(key, log_p.shape, log_p.dtype)
    logit = log_p - log_q
    hard = eligible & (logit + g > 0)
    log_prob = jnp.sum(jnp.where(eligible, jnp.where(hard, log_p, log_q), 0.0))
    if model.division_gradient == "straight_through":
        soft = jax.nn.sigmoid((logit + g) / model.temperature)
        carried = jnp.where(hard, 1.0, 0.0) + soft - jax.lax.stop_gradient(soft)
    else:
        carried = jnp.where(hard, 1.0, 0.0)
    return hard, carried, log_prob, jnp.where(eligible, jnp.exp(log_p), 0.0)


def expected_visible_divisions(state: TissueState, probability: jax.Array,
                          dt_h: float) -> tuple[jax.Array, jax.Array]:
    """``visible_divisions`` after this step's expected change (``TissueState`` doc) and
    each cell's ancestor slot at the last recorded frame."""
    n = state.capacity
    present = state.frame_ancestor < 0
    origin = jnp.where(present, jnp.arange(n, dtype=state.frame_ancestor.dtype),
                       state.frame_ancestor)
    # log P(no cell of the family divides now); −λ dt = log(1 − p) for eligible cells
    log_none = jax.ops.segment_sum(
        jnp.where(probability > 0, -state.weight * state.division_rate_per_h * dt_h, 0.0),
        origin, num_segments=n)
    family = state.frame_divisions
    change = jnp.where(family == 0, state.weight * probability,
                       jnp.where(family == 1, jnp.expm1(log_none), 0.0))
    return state.visible_divisions + change, origin


def division_step(state: TissueState, params: TissueParams, key: jax.Array,
                  model: TissueModel) -> TissueState:
    """Divide cells for one step (module doc)."""
    del params
    n = state.capacity
    k_draw, k_axis = jax.random.split(key)
    hard, carried, log_prob, probability = draw_divisions(state, k_draw, model)

    expected = state.expected_divisions + state.weight * probability
    visible, origin = expected_visible_divisions(state, probability, model.dt_h)
    weight = state.weight
    if model.division_gradient == "expected_growth":
        lam_dt = state.division_rate_per_h * model.dt_h
        weight = weight * jnp.exp(lam_dt - jax.lax.stop_gradient(lam_dt))
    rank = jnp.cumsum(hard, dtype=jnp.int32) - 1
    free = jnp.nonzero(~state.alive, size=n, fill_value=n)[0]
    n_free = jnp.sum(~state.alive, dtype=jnp.int32)
    performed = hard & (rank < n_free)
    target = jnp.where(performed, free[jnp.clip(rank, 0, n - 1)], n)  # n = dropped
    n_performed = jnp.sum(performed, dtype=jnp.int32)
    refused = jnp.sum(hard, dtype=jnp.int32) - n_performed
    family_divisions = state.frame_divisions.at[origin].add(performed.astype(jnp.int32))

    radius = jnp.where(performed, state.radius_um * VOLUME_SPLIT, state.radius_um)
    axis = random_axis(k_axis, n, model.dim, state.position_um.dtype)
    offset = (model.division_offset * radius * jnp.where(performed, carried, 0.0))[:, None] * axis
    first_id = state.counters.next_id + 2 * rank
    step = state.counters.step

    def scatter(base: jax.Array, values: jax.Array) -> jax.Array:
        return base.at[target].set(values, mode="drop")

    position = scatter(state.position_um - offset, state.position_um + offset)
    new = TissueState(
        position_um=position,
        radius_um=scatter(radius, radius),
        cell_type=scatter(state.cell_type, state.cell_type),
        alive=scatter(state.alive, jnp.ones_like(state.alive)),
        weight=scatter(weight, weight * carried),
        gene=scatter(state.gene, state.gene),
        growth_factor=scatter(state.growth_factor, state.growth_factor),
        division_rate_per_h=scatter(state.division_rate_per_h, state.division_rate_per_h),
        expected_divisions=scatter(expected, jnp.zeros_like(expected)),
        visible_divisions=scatter(visible, jnp.zeros_like(visible)),
        frame_ancestor=scatter(jnp.where(performed, origin, state.frame_ancestor), origin),
        frame_divisions=scatter(family_divisions, jnp.zeros_like(family_divisions)),
        cell_id=scatter(jnp.where(performed, first_id, state.cell_id), first_id + 1),
        mother=scatter(jnp.where(performed, state.cell_id, state.mother), state.cell_id),
        born=scatter(jnp.where(performed, step, state.born), jnp.full_like(state.born, step)),
        counters=dataclasses.replace(
            state.counters, next_id=state.counters.next_id + 2 * n_performed,
            overflow=state.counters.overflow + refused.astype(jnp.int32),
            log_prob=state.counters.log_prob + log_prob,
            divisions=state.counters.divisions + n_performed.astype(jnp.int32)),
    )
    return new
