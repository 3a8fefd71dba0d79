"""Per-cell gene regulatory network and the division propensity it sets.

Each cell carries ``G`` gene levels ``x`` (dimensionless) that read the local
growth factor ``c`` (a.u.):

    dx/dt = r σ(W x + u c + b) − γ x          (1/h; σ the logistic function)

integrated by explicit Euler with ``model.gene_substeps`` substeps per step.
Proliferating cells then divide at rate

    λ(x) = λ_max σ(v · x + b_λ)               (1/h)

and source cells never divide (λ = 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from labloop.tissue.model import TissueModel
from labloop.tissue.params import DivisionParams, GeneNetworkParams, TissueParams
from labloop.tissue.state import CellType, TissueState


def gene_rate(x: jax.Array, c: jax.Array, params: GeneNetworkParams) -> jax.Array:
    """``dx/dt = r σ(W x + u c + b) − γ x`` for ``(N, G)`` genes, ``(N,)`` input (1/h)."""
    drive = x @ params.weights.T + c[:, None] * params.input_weights + params.bias
    return params.production_per_h * jax.nn.sigmoid(drive) - params.decay_per_h * x


def division_rate(x: jax.Array, params: DivisionParams) -> jax.Array:
    """``λ(x) = λ_max σ(v · x + b_λ)`` (1/h) for ``(N, G)`` genes."""
    return params.max_rate_per_h * jax.nn.sigmoid(x @ params.output_weights
                                                  + params.output_bias)


def gene_network_step(state: TissueState, params: TissueParams, key: jax.Array,
                      model: TissueModel) -> TissueState:
    """Advance the genes by ``dt`` and set ``division_rate_per_h`` (module doc)."""
    del key
    dt = model.dt_h / model.gene_substeps
    x = state.gene
    for _ in range(model.gene_substeps):
        x = x + dt * gene_rate(x, state.growth_factor, params.gene)
    x = jnp.where(state.alive[:, None], x, 0.0)
    dividing = state.alive & (state.cell_type == CellType.PROLIFERATING)
    rate = jnp.where(dividing, division_rate(x, params.division), 0.0)
    return state.replace(gene=x, division_rate_per_h=rate)
