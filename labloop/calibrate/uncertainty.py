"""Parameter uncertainty, sensitivities and identifiability of a fit (Laplace).

Around the best parameters ``θ̂`` (unconstrained: ``log`` of positive ones) the
loss ``½ Σ r(θ)²`` is approximated by its Gauss–Newton quadratic form with the
Fisher information ``I = Jᵀ J``, ``J = ∂r/∂θ`` (residuals are standardised,
so ``I`` is the Fisher information of the Gaussian likelihood). ``J`` comes
from central secants over the parameters' uncertainty scale with common
random numbers, or from ``jax.jacfwd`` (``CalibrateSettings.jacobian``). The
covariance is ``I⁻¹`` (pseudo-inverse); a positive parameter's 90 % interval
is ``exp(log θ̂ ± 1.645 σ)``. Sensitivities ``∂m/∂θ`` of each model
morphometric to each free parameter are differentiated the same way.

Where the loss has several distinct local minima that fit the data about
equally well (several optimisation starts), the posterior is a mixture of their
Laplace Gaussians, each weighted by its Laplace evidence
``exp(−L̂ₖ) √det Σₖ`` (:func:`mode_weights`), and intervals are quantiles over
draws from the mixture (:func:`mixture_draws`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: z of a central 90 % interval
Z95 = 1.6449


def covariance_from_jacobian(jacobian: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """``(Jᵀ J)⁺`` for a ``(n_residuals, n_parameters)`` Jacobian."""
    fisher = jacobian.T @ jacobian
    return np.linalg.pinv(fisher, rcond=rcond, hermitian=True)


def intervals(names: list[str], raw: np.ndarray, covariance: np.ndarray,
              positive: list[bool], units: list[str]) -> pd.DataFrame:
    """One row per free parameter: ``name, value, lower, upper`` (90 %), ``sd_raw``
    (σ in optimiser space: relative for positive parameters), ``unit``."""
    sd = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    value = np.where(positive, np.exp(raw), raw)
    lower = np.where(positive, np.exp(raw - Z95 * sd), raw - Z95 * sd)
    upper = np.where(positive, np.exp(raw + Z95 * sd), raw + Z95 * sd)
    return pd.DataFrame({"name": names, "value": value, "lower": lower, "upper": upper,
                         "sd_raw": sd, "positive": positive, "unit": units})


def identifiability(names: list[str], covariance: np.ndarray, positive: list[bool],
                    jacobian: np.ndarray, loose: float = 0.35,
                    correlated: float = 0.9) -> list[str]:
    """Plain-language notes on what the data do not pin down.

    A positive parameter is *loose* when its relative σ exceeds ``loose`` (its 90 %
    interval spans more than a factor ``e^{2·1.645·loose}``), a signed one when σ
    exceeds ``loose`` in its own units; two parameters are *confounded* when their
    posterior correlation exceeds ``correlated`` in magnitude; a parameter no
    observation responds to is *unconstrained*.
    """
    notes = []
    sd = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    reach = np.abs(jacobian).sum(axis=0)
    for i, name in enumerate(names):
        if reach[i] < 1e-8:
            notes.append(f"{name}: unconstrained (no observed morphometric responds to it)")
        elif sd[i] > loose:
            what = (f"±{100 * (np.exp(Z95 * sd[i]) - 1):.0f}% (90%)" if positive[i]
                    else f"±{Z95 * sd[i]:.2g} (90%)")
            notes.append(f"{name}: loosely determined, {what}")
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = covariance / np.outer(sd, sd)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if np.isfinite(corr[i, j]) and abs(corr[i, j]) > correlated:
                notes.append(f"{names[i]} and {names[j]} are confounded (correlation "
                             f"{corr[i, j]:+.2f}): the data fix a combination, not each")
    if not notes:
        notes.append("every free parameter is determined by the data (relative 90% "
                     f"intervals within ±{100 * (np.exp(Z95 * loose) - 1):.0f}%, no pair "
                     f"correlated beyond {correlated})")
    return notes


def mode_weights(losses: Sequence[float], covariances: Sequence[np.ndarray],
                 rcond: float = 1e-10) -> np.ndarray:
    """Posterior weights of local minima: the Laplace evidence ``exp(−L) √det Σ``,
    normalised (``det`` over the eigenvalues above ``rcond`` times the largest, as the
    pseudo-inverse behind ``Σ``); a single minimum has weight 1."""
    if len(losses) == 1:
        return np.ones(1)
    log_weight = []
    for loss, cov in zip(losses, covariances, strict=True):
        eigenvalues = np.linalg.eigvalsh((cov + cov.T) / 2)
        kept = eigenvalues[eigenvalues > rcond * max(eigenvalues.max(initial=0.0), 0.0)]
        log_weight.append(-loss + 0.5 * float(np.sum(np.log(kept))))
    weights = np.exp(np.asarray(log_weight) - max(log_weight))
    return weights / weights.sum()


def mixture_draws(vectors: Sequence[np.ndarray], covariances: Sequence[np.ndarray],
                  weights: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
    """``(n_draws, n_parameters)`` draws from the mixture of Gaussians ``N(vₖ, Σₖ)`` with
    ``weights`` (each ``Σ`` may be singular; the same seed gives the same draws)."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_draws, weights)
    draws = []
    for vector, cov, count in zip(vectors, covariances, counts, strict=True):
        eigenvalues, eigenvectors = np.linalg.eigh((cov + cov.T) / 2)
        root = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        draws.append(np.asarray(vector, np.float64)
                     + rng.standard_normal((count, len(vector))) @ root.T)
    return np.concatenate(draws)


def distinct_from(vector: np.ndarray, others: Sequence[np.ndarray],
                  covariances: Sequence[np.ndarray], radius: float = 1.0) -> bool:
    """Whether ``vector`` lies outside the ``radius``-σ ellipsoid of every other minimum
    (``(v − vₖ)ᵀ Σₖ⁺ (v − vₖ) > radius²``)."""
    for other, cov in zip(others, covariances, strict=True):
        difference = np.asarray(vector, np.float64) - np.asarray(other, np.float64)
        if difference @ np.linalg.pinv(cov, hermitian=True) @ difference <= radius**2:
            return False
    return True


def mixture_intervals(table: pd.DataFrame, draws: np.ndarray) -> pd.DataFrame:
    """``table`` (from :func:`intervals`) with ``lower, upper`` the 5 and 95 % quantiles of
    each parameter over ``draws`` in optimiser space (:func:`mixture_draws`)."""
    physical = np.where(table["positive"].to_numpy(bool), np.exp(draws), draws)
    lower, upper = np.quantile(physical, [0.05, 0.95], axis=0)
    return table.assign(lower=lower, upper=upper)
