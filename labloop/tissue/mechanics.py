"""Overdamped mechanics: Morse pair forces, active random motility, optional wall.

Positions follow the overdamped (friction-dominated) Langevin equation

    dxᵢ = [Σⱼ f(rᵢⱼ) (xᵢ − xⱼ)/rᵢⱼ + v_wall(xᵢ)] dt + √(2 D dt) ξ,     ξ ~ N(0, I)

with forces divided by friction, i.e. in µm/h. The pair term derives from the
Morse potential ``U(r) = ε [(1 − e^{−(r − r₀)/w})² − 1]`` (µm²/h), rest distance
``r₀ = Rᵢ + Rⱼ``, so ``f(r) = −U′(r) = −(2ε/w)(1 − e^{−(r − r₀)/w}) e^{−(r − r₀)/w}``
(repulsive below ``r₀``, adhesive above), force-shifted to vanish at the
cutoff ``r_c``: ``f(r) − f(r_c)`` for ``r < r_c``, 0 beyond. ``D`` (µm²/h) is the
random-motility diffusion coefficient. Euler–Maruyama with
``model.mechanics_substeps`` substeps of ``dt/substeps``; the neighbour list is
built once per step with a skin covering the motion in between.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from labloop.tissue.model import TissueModel
from labloop.tissue.neighbours import cell_list_neighbours, dense_neighbours
from labloop.tissue.params import Ellipsoid, MechanicsParams, TissueParams
from labloop.tissue.state import TissueState


def morse_force(r_um: jax.Array, rest_um: jax.Array, params: MechanicsParams,
                cutoff_um: float) -> jax.Array:
    """Radial pair force ``f(r) − f(r_c)`` (µm/h, positive = repulsive), 0 beyond ``r_c``."""
    eps, w = params.adhesion_um2_per_h, params.morse_width_um

    def f(r: jax.Array) -> jax.Array:
        e = jnp.exp(-(r - rest_um) / w)
        return -2.0 * eps / w * (1.0 - e) * e

    return jnp.where(r_um < cutoff_um, f(r_um) - f(jnp.asarray(cutoff_um, r_um.dtype)), 0.0)


def pair_velocity(position: jax.Array, radius: jax.Array, neighbours: jax.Array,
                  params: MechanicsParams, cutoff_um: float) -> jax.Array:
    """Velocity (µm/h) of every cell from its neighbour list: ``Σⱼ f(rᵢⱼ) eᵢⱼ``."""
    n = position.shape[0]
    valid = neighbours < n
    j = jnp.where(valid, neighbours, 0)
    delta = position[:, None, :] - position[j]                       # (N, K, 3)
    r = jnp.sqrt(jnp.maximum(jnp.sum(delta**2, axis=-1), 1e-12))
    rest = radius[:, None] + radius[j]
    f = jnp.where(valid, morse_force(r, rest, params, cutoff_um), 0.0)
    return jnp.sum((f / r)[..., None] * delta, axis=1)


def wall_velocity(position: jax.Array, wall: Ellipsoid) -> jax.Array:
    """Push back into an ellipsoid: ``−k · max(0, 1 − 1/s) · (x − c)``, ``s = ‖(x − c)/a‖``."""
    offset = position - wall.centre_um
    s = jnp.sqrt(jnp.sum((offset / wall.semi_axes_um) ** 2, axis=-1) + 1e-12)
    return -wall.stiffness_per_h * jnp.maximum(0.0, 1.0 - 1.0 / s)[:, None] * offset


def neighbour_list(state: TissueState, model: TissueModel) -> tuple[jax.Array, jax.Array]:
    """Neighbour list of the state within ``cutoff + skin`` (dense or cell list)."""
    reach = model.cutoff_um + model.skin_um
    if model.uses_cell_list:
        return cell_list_neighbours(state.position_um, state.alive, reach,
                                    model.max_neighbours, model.max_per_cell, model.dim)
    return dense_neighbours(state.position_um, state.alive, reach, model.max_neighbours)


def mechanics_step(state: TissueState, params: TissueParams, key: jax.Array,
                   model: TissueModel) -> TissueState:
    """Move cells for one step ``dt`` (module doc); dead slots do not move."""
    neighbours, overflow = neighbour_list(state, model)
    dt = model.dt_h / model.mechanics_substeps
    plane = jnp.asarray([0.0] * (3 - model.dim) + [1.0] * model.dim, state.position_um.dtype)
    moving = state.alive[:, None] * plane
    mech = params.mechanics

    def substep(x: jax.Array, k: jax.Array) -> tuple[jax.Array, None]:
        v = pair_velocity(x, state.radius_um, neighbours, mech, model.cutoff_um)
        if params.confinement is not None:
            v = v + wall_velocity(x, params.confinement)
        noise = jax.random.normal(k, x.shape, x.dtype)
        dx = v * dt + jnp.sqrt(2.0 * mech.motility_um2_per_h * dt) * noise
        return x + moving * dx, None

    keys = jax.random.split(key, model.mechanics_substeps)
    position, _ = jax.lax.scan(substep, state.position_um, keys)
    counters = state.counters
    counters = dataclasses.replace(
        counters, neighbour_overflow=counters.neighbour_overflow + overflow)
    return state.replace(position_um=position, counters=counters)
