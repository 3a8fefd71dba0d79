"""Steady-state growth-factor field from secreting source cells.

The growth factor diffuses (coefficient ``D``) and degrades (rate ``k``) and is
secreted at rate ``q`` by each source cell: ``D ∇²c − k c + q Σₛ δ(x − xₛ) = 0``.
Its steady state is the superposition of the Green's functions, with decay
length ``ℓ = √(D/k)`` (µm):

    3D:  c(x) = A Σₛ e^{−r/ℓ} / r,     A = q / (4π D)   (a.u.·µm)
    2D:  c(x) = A Σₛ K₀(r / ℓ),        A = q / (2π D)   (a.u.)

with ``r = max(‖x − xₛ‖, Rₛ)``: a source is a cell of radius ``Rₛ``, not a point,
and the field inside it is held at its surface value. Cost ``O(N · S)`` with
``S = model.max_sources``; sources beyond ``S`` are counted in
``counters.source_overflow`` (and left out).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from labloop.tissue.model import TissueModel
from labloop.tissue.params import GrowthFactorParams, TissueParams
from labloop.tissue.state import CellType, TissueState

# Abramowitz & Stegun 9.8.5 and 9.8.6 (|error| < 2e-7)
_K0_SMALL = (-0.57721566, 0.42278420, 0.23069756, 0.03488590, 0.00262698, 0.00010750,
             0.00000740)
_K0_LARGE = (1.25331414, -0.07832358, 0.02189568, -0.01062446, 0.00587872, -0.00251540,
             0.00053208)


def bessel_k0(x: jax.Array) -> jax.Array:
    """Modified Bessel function K₀(x) for x > 0 (differentiable; A&S 9.8.5–6)."""
    small = jnp.minimum(x, 2.0)
    t = (small / 2.0) ** 2
    poly_small = sum(c * t**i for i, c in enumerate(_K0_SMALL))
    value_small = -jnp.log(small / 2.0) * jax.scipy.special.i0(small) + poly_small
    large = jnp.maximum(x, 2.0)
    u = 2.0 / large
    poly_large = sum(c * u**i for i, c in enumerate(_K0_LARGE))
    value_large = poly_large * jnp.exp(-large) / jnp.sqrt(large)
    return jnp.where(x <= 2.0, value_small, value_large)


def greens_function(r_um: jax.Array, params: GrowthFactorParams, dim: int) -> jax.Array:
    """Field of one source at distance ``r`` (µm), module doc (a.u.)."""
    ell = params.decay_length_um
    if dim == 3:
        return params.source_strength * jnp.exp(-r_um / ell) / r_um
    return params.source_strength * bessel_k0(r_um / ell)


def source_slots(state: TissueState, max_sources: int) -> tuple[jax.Array, jax.Array]:
    """Slots of up to ``max_sources`` living source cells (fill ``N``) and the overflow."""
    is_source = state.alive & (state.cell_type == CellType.SOURCE)
    slots = jnp.nonzero(is_source, size=max_sources, fill_value=state.capacity)[0]
    overflow = jnp.maximum(jnp.sum(is_source) - max_sources, 0).astype(jnp.int32)
    return slots, overflow


def growth_factor_step(state: TissueState, params: TissueParams, key: jax.Array,
                       model: TissueModel) -> TissueState:
    """Set ``growth_factor`` of every cell to the steady-state field (module doc)."""
    del key
    slots, overflow = source_slots(state, model.max_sources)
    valid = slots < state.capacity
    s = jnp.where(valid, slots, 0)
    delta = state.position_um[:, None, :] - state.position_um[s][None, :, :]   # (N, S, 3)
    r = jnp.sqrt(jnp.sum(delta**2, axis=-1) + 1e-12)
    r = jnp.maximum(r, state.radius_um[s][None, :])
    field = jnp.sum(jnp.where(valid[None, :], greens_function(r, params.growth_factor,
                                                                 model.dim), 0.0), axis=1)
    counters = state.counters
    counters = dataclasses.replace(
        counters, source_overflow=jnp.maximum(counters.source_overflow, overflow))
    return state.replace(growth_factor=jnp.where(state.alive, field, 0.0), counters=counters)
