"""Several minima of one fit: their weights, the mixture's draws and intervals."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from labloop.calibrate import (
    DIVISION_LAW,
    CalibrateSettings,
    Fit,
    Observations,
    combined_minima,
    derived_intervals,
    linearised_refit,
    with_values,
)
from labloop.calibrate.uncertainty import intervals, mixture_draws, mode_weights
from labloop.errors import InputError
from labloop.tissue import default_params

MOTILITY, DECAY = "mechanics.motility_um2_per_h", "growth_factor.decay_length_um"
FOLD = "division_fold_change_at_unit_growth_factor"
TRUTH = {"division.max_rate_per_h": 0.25, "division.output_weights": [4.0],
         "division.output_bias": -2.0, "gene.input_weights": [-3.0], "gene.bias": [1.5]}


def test_mode_weights_are_the_laplace_evidence() -> None:
    narrow, wide = np.diag([0.01, 0.04]), np.diag([0.04, 0.04])
    weights = mode_weights([10.0, 10.5], [narrow, wide])
    # exp(−L) √det Σ: the wider minimum holds more mass despite its higher loss
    ratio = np.exp(-0.5) * np.sqrt(np.linalg.det(wide) / np.linalg.det(narrow))
    np.testing.assert_allclose(weights, [1 / (1 + ratio), ratio / (1 + ratio)])
    # a direction no data constrain (zero eigenvalue of the pseudo-inverse) is left out
    singular = np.array([[0.04, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(mode_weights([1.0, 1.0], [singular, singular]), [0.5, 0.5])
    assert mode_weights([0.0, 800.0], [narrow, narrow])[1] == 0.0  # no overflow
    assert mode_weights([3.0], [np.zeros((0, 0))]).tolist() == [1.0]


def test_mixture_draws_follow_weights_and_covariances() -> None:
    covariances = [np.array([[0.04, 0.01], [0.01, 0.09]]), np.diag([0.01, 0.01])]
    draws = mixture_draws([np.array([0.0, 0.0]), np.array([5.0, 5.0])], covariances,
                          np.array([0.7, 0.3]), 20000, seed=3)
    first = draws[:, 0] < 2.5
    assert first.mean() == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(np.cov(draws[first].T), covariances[0], atol=0.006)
    np.testing.assert_allclose(draws[~first].mean(0), [5.0, 5.0], atol=0.01)
    again = mixture_draws([np.array([0.0, 0.0]), np.array([5.0, 5.0])], covariances,
                          np.array([0.7, 0.3]), 20000, seed=3)
    np.testing.assert_array_equal(draws, again)


def test_two_branches_of_the_fold_change_widen_its_interval_to_the_minimum() -> None:
    # the fold change at unit growth factor has a minimum in the read-out weight (near
    # 4.35); a weight on either side of it can explain the same fold change
    truth = with_values(default_params(1), **TRUTH)
    fold = DIVISION_LAW[FOLD].function
    weights = jnp.linspace(3.0, 6.0, 61)
    folds = np.asarray(jax.jit(jax.vmap(lambda w: fold(truth.replace(
        division=dataclasses.replace(truth.division, output_weights=w[None])))))(weights))
    at_truth = folds[20]  # weight 4.0
    name = ["division.output_weights"]
    below = with_values(truth, **{"division.output_weights": [3.3]})
    above = with_values(truth, **{"division.output_weights": [4.8]})
    cov = pd.DataFrame([[0.09]], index=name, columns=name)
    free = ("division.output_weights",)
    alone = derived_intervals(below, cov, free, DIVISION_LAW).set_index("name").loc[FOLD]
    both = derived_intervals(below, cov, free, DIVISION_LAW, alternatives=[(above, cov)],
                             weights=[0.5, 0.5]).set_index("name").loc[FOLD]
    # the lower branch alone (3.3 ± 0.49) stays below the minimum and misses the truth
    assert alone["lower"] > at_truth + 2e-3
    # with the upper branch (4.8 ± 0.49), whose draws straddle the minimum, the 5 %
    # quantile reaches down to the minimum and covers the truth
    assert both["lower"] < at_truth
    assert both["lower"] == pytest.approx(folds.min(), rel=1e-3)
    assert both["value"] == alone["value"]  # the value is the best minimum's
    with pytest.raises(InputError, match="2 weights for 3 minima"):
        derived_intervals(below, cov, free, DIVISION_LAW,
                          alternatives=[(above, cov), (above, cov)], weights=[0.5, 0.5])


def minimum(motility: float, decay: float, loss: float, covariance: np.ndarray,
            start: int) -> Fit:
    """A :class:`Fit` at the given motility and decay length with one linear term ``m``
    (model = log motility + log decay, sensitivity 1 to each)."""
    names = [MOTILITY, DECAY]
    params = with_values(default_params(1), **{MOTILITY: motility, DECAY: decay})
    raw = np.log([motility, decay])
    fitted = pd.DataFrame({"experiment": 0, "term": "m", "index": [0, 1],
                           "observed": 0.0, "observed_sd": 1.0, "model": raw,
                           "model_sd": 0.0, "added_variance": 0.0})
    sensitivity = pd.DataFrame([{"experiment": 0, "term": "m", "index": j,
                                 "parameter": n, "sensitivity": float(j == p)}
                                for j in range(2) for p, n in enumerate(names)])
    return Fit(params=params,
               intervals=intervals(names, raw, covariance, [True, True], ["µm²/h", "µm"]),
               covariance=pd.DataFrame(covariance, index=names, columns=names),
               sensitivity=sensitivity, identifiability=[],
               history=pd.DataFrame([{"start": start, "iteration": 0, "loss": loss,
                                      "stage": "adam"}]),
               best_start=start, loss=loss, fitted=fitted,
               settings=CalibrateSettings(free=(MOTILITY, DECAY)))


def test_combined_minima_keeps_distinct_ones_and_covers_them_all() -> None:
    cov = np.diag([0.01, 0.01])  # 10 % on each
    best = minimum(0.5, 20.0, 10.0, cov, start=1)
    same = minimum(0.51, 20.2, 10.4, cov, start=2)  # within one σ of the best: merged
    other = minimum(0.8, 20.0, 10.2, cov, start=0)  # log 1.6 = 4.7 σ away: kept
    fit = combined_minima([other, same, best])
    assert fit.best_start == 1 and [m.best_start for m in fit.alternatives] == [0]
    np.testing.assert_allclose(fit.mode_weights(), [1, np.exp(-0.2)] / (1 + np.exp(-0.2)))
    row = fit.intervals.set_index("name").loc[MOTILITY]
    assert row["value"] == pytest.approx(0.5)
    # the 5 and 95 % quantiles of the mixture 0.55 N(log 0.5, 0.1²) + 0.45 N(log 0.8, 0.1²)
    weights = fit.mode_weights()

    def cdf(x: float) -> float:
        return float(weights @ norm.cdf((x - np.log([0.5, 0.8])) / 0.1))

    for q, column in ((0.05, "lower"), (0.95, "upper")):
        expected = np.exp(brentq(lambda x, q=q: cdf(x) - q, -3.0, 1.0))
        assert row[column] == pytest.approx(expected, rel=0.01)
    # the decay length's interval stays one Gaussian's: both minima agree on it
    decay = fit.intervals.set_index("name").loc[DECAY]
    assert decay["upper"] == pytest.approx(20.0 * np.exp(1.6449 * 0.1), rel=0.03)
    assert "minima kept (start: loss, weight): 1: 10.000, 0.55, 0: 10.200, 0.45" in (
        fit.summary())
    alone = combined_minima([best])
    assert not alone.alternatives and alone.intervals.equals(best.intervals)


def test_linearised_refit_refits_every_minimum() -> None:
    # two minima of the linear term m = log motility + log decay; new observations of
    # m = (log 0.6, log 25) pull both to the same least-squares point, where they merge
    cov = np.diag([0.01, 0.01])
    fit = combined_minima([minimum(0.5, 20.0, 1.0, cov, 0),
                           minimum(0.9, 40.0, 1.1, cov, 1)])
    assert len(fit.alternatives) == 1
    observed = Observations({"m": np.log([0.6, 25.0])}, {"m": np.ones(2)}, frames=3,
                            frame_interval_h=0.5)
    refit = linearised_refit(fit, [observed])
    assert not refit.alternatives
    values = refit.intervals.set_index("name")["value"]
    assert values[MOTILITY] == pytest.approx(0.6, rel=1e-5)
    assert values[DECAY] == pytest.approx(25.0, rel=1e-5)
