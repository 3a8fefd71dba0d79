"""Cell growth: radii relax toward the grown size after division.

    dR/dt = k_g (R* − R)   ⇒   R(t + dt) = R* − (R* − R(t)) e^{−k_g dt}     (µm)

solved exactly over a step, so the update is stable for any ``dt``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labloop.tissue.model import TissueModel
from labloop.tissue.params import TissueParams
from labloop.tissue.state import TissueState


def growth_step(state: TissueState, params: TissueParams, key: jax.Array,
                model: TissueModel) -> TissueState:
    """Grow every living cell for one step (module doc)."""
    del key
    target = params.growth.target_radius_um
    decay = jnp.exp(-params.growth.rate_per_h * model.dt_h)
    radius = target - (target - state.radius_um) * decay
    return state.replace(radius_um=jnp.where(state.alive, radius, state.radius_um))
