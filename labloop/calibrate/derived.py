"""Quantities derived from fitted parameters, with 90 % intervals from the Laplace posterior.

The raw parameters of the division law (``λ_max``, read-out weights and bias,
the gene network's couplings) trade off against each other: a movie fixes the
division rate over the growth-factor concentrations its cells experience, not
each parameter. What it does pin down is best reported as such a rate, e.g.
the division rate without growth factor, or its fold change at a reference
concentration. :func:`derived_intervals` gives any such function of the
parameters a 90 % interval from the fit's Laplace covariance, without
refitting: the 5 and 95 % quantiles of the function over draws of the
parameters from the Laplace Gaussian in optimiser space (from the mixture of
the Gaussians of several minima where the fit kept more than one:
:mod:`.uncertainty`). The delta method
(``Var f ≈ ∇fᵀ Σ ∇f``) is its first-order shortcut and fails where ``f`` is
stationary: the fold change of the division rate has a minimum in the read-out
weight (near 4.4 for the default gene network), where the delta method gives a
zero-width interval (one recovery fit reported ``[0.2787, 0.2791]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from labloop.calibrate.uncertainty import mixture_draws
from labloop.errors import InputError
from labloop.tissue import TissueParams, free_vector, trainable_mask
from labloop.tissue.gene_network import division_rate, gene_rate

#: a derivative (per unit of a raw parameter) below this is rounding, not dependence
#: (float32 round-off of a ratio in which a parameter cancels reaches ~1e-7)
NEGLIGIBLE = 1e-5
#: upper quantile of a central 90 % interval
Q95 = 0.95


@dataclass(frozen=True)
class Derived:
    """A scalar function of the tissue parameters to report with an interval.

    Attributes
    ----------
    function
        ``f(params) -> scalar`` (JAX-differentiable).
    unit
        Unit of the value.
    """

    function: Callable[[TissueParams], jax.Array]
    unit: str


def steady_gene_levels(params: TissueParams, concentration: float | jax.Array,
                       n_steps: int = 400) -> jax.Array:
    """Gene levels ``(G,)`` a cell settles to at a constant growth factor ``c``.

    The network ``dx/dt = r σ(W x + u c + b) − γ x`` is integrated from ``x = 0``
    for ``20 / γ`` hours (explicit Euler, ``n_steps`` steps), long enough for a
    contracting network to reach its fixed point.
    """
    gene = params.gene
    c = jnp.reshape(jnp.asarray(concentration, jnp.result_type(float)), (1,))
    dt = 20.0 / gene.decay_per_h / n_steps

    def step(x: jax.Array, _: None) -> tuple[jax.Array, None]:
        return x + dt * gene_rate(x, c, gene), None

    x0 = jnp.zeros((1, jnp.shape(gene.bias)[-1]), c.dtype)
    x, _ = jax.lax.scan(step, x0, None, length=n_steps)
    return x[0]


def division_rate_at(params: TissueParams, concentration: float | jax.Array) -> jax.Array:
    """Division rate (1/h) of a proliferating cell held at growth factor ``c`` (a.u.)."""
    return division_rate(steady_gene_levels(params, concentration)[None], params.division)[0]


#: the division law as a movie pins it down: the rate without growth factor and its
#: fold change at one unit of growth factor (the concentration scale of the source term)
DIVISION_LAW: dict[str, Derived] = {
    "division_rate_without_growth_factor_per_h": Derived(
        lambda p: division_rate_at(p, 0.0), "1/h"),
    "division_fold_change_at_unit_growth_factor": Derived(
        lambda p: division_rate_at(p, 1.0) / division_rate_at(p, 0.0), "ratio"),
}


def derived_intervals(params: TissueParams, covariance: pd.DataFrame,
                      free: tuple[str, ...], quantities: Mapping[str, Derived], *,
                      alternatives: Sequence[tuple[TissueParams, pd.DataFrame]] = (),
                      weights: Sequence[float] | None = None,
                      n_draws: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Values and 90 % intervals of derived quantities of a fit.

    Parameters
    ----------
    params
        Fitted parameters (``Fit.params``).
    covariance
        Laplace covariance in optimiser space (``Fit.covariance``).
    free
        The fit's free parameter names (``Fit.settings.free``).
    quantities
        Name → :class:`Derived`, e.g. :data:`DIVISION_LAW`.
    alternatives
        Other local minima of the same loss as ``(params, covariance)``
        (``Fit.alternatives``): the draws then come from the mixture of all
        Laplace Gaussians, with ``weights`` (``Fit.mode_weights()``, the given fit's
        first; equal by default).
    n_draws, seed
        Draws from the Laplace Gaussian(s) behind the quantiles (the same seed, the
        same interval).

    Returns
    -------
    DataFrame
        ``name, value, lower, upper, unit, depends_on_free``; the value is at
        ``params``; a quantity that no free parameter moves has a zero-width interval
        and ``depends_on_free`` False (it was fixed, not measured).
    """
    vector, to_params = free_vector(params, trainable_mask(params, free))
    vectors = [np.asarray(vector)] + [np.asarray(free_vector(p, trainable_mask(p, free))[0])
                                      for p, _ in alternatives]
    covariances = [c.to_numpy() for c in (covariance, *(c for _, c in alternatives))]
    for cov in covariances:
        if cov.shape != (vector.size, vector.size):
            raise InputError(f"the covariance is {cov.shape[0]}×{cov.shape[1]} but the free "
                             f"parameters have {vector.size} entries; pass the fit's own "
                             "settings")
    n_modes = len(vectors)
    weights = np.full(n_modes, 1 / n_modes) if weights is None else np.asarray(weights)
    if weights.shape != (n_modes,):
        raise InputError(f"{weights.size} weights for {n_modes} minima")
    draws = jnp.asarray(mixture_draws(vectors, covariances, weights, n_draws, seed),
                        vector.dtype)
    rows = []
    for name, quantity in quantities.items():
        def of_vector(v: jax.Array, q: Derived = quantity) -> jax.Array:
            return q.function(to_params(v))

        value, gradient = jax.value_and_grad(of_vector)(vector)
        lower, upper = np.quantile(np.asarray(jax.jit(jax.vmap(of_vector))(draws)),
                                   [1 - Q95, Q95])
        rows.append({"name": name, "value": float(value), "lower": float(lower),
                     "upper": float(upper), "unit": quantity.unit,
                     "depends_on_free": bool(np.abs(np.asarray(gradient)).max()
                                             > NEGLIGIBLE)})
    return pd.DataFrame(rows, columns=["name", "value", "lower", "upper", "unit",
                                       "depends_on_free"])


__all__ = ["DIVISION_LAW", "Derived", "derived_intervals", "division_rate_at",
           "steady_gene_levels"]
