"""Residuals and loss between the model's expected morphometrics and the observed ones.

For each observed entry ``y ± s`` and ``R`` replicate values ``m₁ … m_R`` of
the model, the standardised residual is

    r = (m̄ − y) / √(s² + (1 + 1/R) Var m),

the model's own replicate variance (held fixed in the gradient) standing for
the stochasticity of a single filmed tissue around its expectation, and
``Var m / R`` for the Monte Carlo error of the replicate mean itself (the
simulated-moments correction: without it the Laplace intervals of a fit with
few replicates are too narrow by ``√(1 + 1/R)``). Rate terms with an exposure
``E`` (cell-hours, see :class:`.Observations`: the growth rate and the
division-rate profile, whose model statistics are smooth expectations)
add their Poisson counting variance at the model's rate, ``(m̄ E + ½) / E²``,
also held fixed in the gradient. The
default loss is the Gaussian negative log-likelihood ``½ Σ r²`` over every
entry of every term; entries without an observation (NaN) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from labloop.calibrate.observations import Observations

#: ``loss(residuals by term) -> scalar``; swap it to change how terms are combined
Loss = Callable[[Mapping[str, jax.Array]], jax.Array]


def residual_variances(replicates: Mapping[str, jax.Array],
                       observed: Observations) -> dict[str, jax.Array]:
    """Per term, the variance added to the observed ``s²`` (module doc): the replicate
    variance with the Monte Carlo correction, plus the counting variance at the model's
    rate for rate terms; held fixed in the gradient. ``replicates[term]`` is ``(R, K)``."""
    out = {}
    for term in observed.values:
        values = replicates[term]
        var = jnp.var(values, axis=0) * (1 + 1 / values.shape[0])
        if term in observed.exposure_h:
            exposure = jnp.asarray(observed.exposure_h[term])
            mean = jnp.maximum(jnp.mean(values, axis=0), 0.0)
            var = var + jnp.where(exposure > 0, (mean * exposure + 0.5) / exposure**2, 0.0)
        out[term] = jax.lax.stop_gradient(var)
    return out


def standardised_residuals(replicates: Mapping[str, jax.Array], observed: Observations,
                           variances: Mapping[str, jax.Array] | None = None,
                           ) -> dict[str, jax.Array]:
    """Residuals ``r`` per term (module doc); ``replicates[term]`` is ``(R, K)``.

    ``variances`` (from :func:`residual_variances`) holds the weights at another point,
    e.g. the start of a polish step; by default they come from ``replicates``.
    """
    if variances is None:
        variances = residual_variances(replicates, observed)
    scales = residual_scales(observed, variances)
    out = {}
    for term, y in observed.values.items():
        mean = jnp.mean(replicates[term], axis=0)
        ok = observed_entries(observed, term)
        # a safe value where unobserved, so no NaN reaches the gradient through `where`
        r = (mean - jnp.where(ok, jnp.asarray(y), 0.0)) / scales[term]
        out[term] = jnp.where(ok, r, 0.0)
    return out


def observed_entries(observed: Observations, term: str) -> jax.Array:
    """Which entries of ``term`` were observed (finite value and sd); the others have
    residual 0."""
    return jnp.isfinite(jnp.asarray(observed.values[term])) & jnp.isfinite(
        jnp.asarray(observed.sd[term]))


def residual_scales(observed: Observations,
                    variances: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Per term, the residuals' denominator ``√(s² + added variance)`` (module doc), with
    ``s = 1`` where an entry is unobserved; ``∂r/∂θ = (∂m̄/∂θ) / scale`` with the
    variances held."""
    return {term: jnp.sqrt(jnp.where(observed_entries(observed, term),
                                     jnp.asarray(observed.sd[term]), 1.0) ** 2
                           + variances[term] + 1e-12)
            for term in observed.values}


def gaussian_loss(residuals: Mapping[str, jax.Array]) -> jax.Array:
    """``½ Σ r²`` over all terms and entries."""
    return 0.5 * sum(jnp.sum(r**2) for r in residuals.values())
