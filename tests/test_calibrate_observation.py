"""Correcting a fit for the measuring chain: simulated filming, bias, linearised refit."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from labloop.calibrate import (
    Acquisition,
    CalibrateSettings,
    Experiment,
    Fit,
    ObservationBias,
    Observations,
    corrected_for_observation,
    initial_from_lineage,
    linearised_refit,
    observation_bias,
    observe,
    with_values,
)
from labloop.calibrate import observation as observation_module
from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.tissue import default_params, simulate, to_lineage
from tests.test_calibrate import MODEL, simulated_lineage

MOTILITY = "mechanics.motility_um2_per_h"
DECAY = "growth_factor.decay_length_um"


def drop_one_daughter_per_division(lineage: Lineage, seed: int,
                                   n_samples: int) -> tuple[Lineage, list]:
    """A 'film' that loses the link to one daughter of every division."""
    edges = lineage.edges
    dividing = edges.groupby("source")["target"].transform("size") == 2
    lost = edges[dividing].groupby("source")["target"].max()
    kept = edges[~edges["target"].isin(lost.to_numpy())].reset_index(drop=True)
    return Lineage(lineage.nodes, kept, frame_interval_h=lineage.frame_interval_h), []


def test_observation_bias_counts_the_divisions_a_film_loses() -> None:
    params = with_values(default_params(1), **{"division.max_rate_per_h": 0.4})
    lineage, sources = simulated_lineage(params, seed=1, frames=6)
    observed = observe(lineage, sources, n_draws=10)
    experiment = Experiment(observed, initial_from_lineage(MODEL, lineage, sources,
                                                           n_genes=1))
    bias = observation_bias(params, experiment, MODEL, drop_one_daughter_per_division,
                            seed=7, n_tissues=1)
    profile = "division_rate_by_distance_per_h"
    hours = np.nan_to_num(bias.true[0].exposure_h[profile])
    # the simulated tissue's divisions whose mother was recorded the frame before
    truth_edges = to_lineage(simulate(MODEL, params, jax.random.key(7), experiment.initial,
                                      n_frames=6, steps_per_frame=2)).edges
    divisions = int((truth_edges.groupby("source").size() == 2).sum())
    assert divisions >= 5
    # each lost daughter takes one division out of the profile; nothing else changes
    assert np.sum(bias.values[profile] * hours) == pytest.approx(-divisions, abs=1e-6)
    for term in ("cell_growth_rate_per_h", "radius_of_gyration_increase_um"):
        np.testing.assert_allclose(bias.values[term], 0.0, atol=1e-12)
    # correcting the filmed observations gives back the true ones
    corrected = bias.correct(bias.measured[0])
    np.testing.assert_allclose(corrected.values[profile], bias.true[0].values[profile],
                               atol=1e-12)
    assert bias.table()["term"].nunique() == len(bias.values)
    # over three tissues: the mean loss, with the tissues' spread as its standard error
    three = observation_bias(params, experiment, MODEL, drop_one_daughter_per_division,
                             seed=7, n_tissues=3)
    per_tissue = np.stack([m.values[profile] - t.values[profile]
                           for t, m in zip(three.true, three.measured, strict=True)])
    np.testing.assert_allclose(per_tissue[0], np.where(np.isfinite(per_tissue[0]),
                                                       bias.values[profile], np.nan))
    seen = np.isfinite(per_tissue).all(axis=0)
    assert seen.sum() >= 2
    np.testing.assert_allclose(three.values[profile][seen], per_tissue[:, seen].mean(0))
    np.testing.assert_allclose(three.spread[profile][seen],
                               per_tissue[:, seen].std(0, ddof=1))
    np.testing.assert_allclose(three.sd[profile][seen], three.spread[profile][seen] / np.sqrt(3))
    # the corrected sd holds the observed one, the mean's standard error and the spread
    widened = three.correct(observed).sd[profile]
    np.testing.assert_allclose(widened[seen], np.sqrt(
        observed.sd[profile][seen]**2 + 4 / 3 * three.spread[profile][seen]**2))
    assert not bias.spread[profile].any()  # one tissue: no spread to measure


def linear_fit(step_from: np.ndarray, sensitivity: np.ndarray, model: np.ndarray,
               observed: np.ndarray, sd: np.ndarray, added: np.ndarray) -> Fit:
    """A :class:`Fit` at motility 0.5 and decay length 20 µm whose one term ``m`` moves
    linearly with the parameters' logarithms (``sensitivity``: entries × 2)."""
    free = (MOTILITY, DECAY)
    params = with_values(default_params(1), **{MOTILITY: 0.5, DECAY: 20.0})
    names = [MOTILITY, DECAY]
    n = len(model)
    fitted = pd.DataFrame({"experiment": 0, "term": "m", "index": np.arange(n),
                           "observed": observed, "observed_sd": sd, "model": model,
                           "model_sd": 0.0, "added_variance": added})
    sens = pd.DataFrame([{"experiment": 0, "term": "m", "index": j, "parameter": name,
                          "sensitivity": sensitivity[j, p]}
                         for j in range(n) for p, name in enumerate(names)])
    table = pd.DataFrame({"name": names, "value": np.exp(step_from), "lower": 0.0,
                          "upper": 0.0, "sd_raw": 0.1, "positive": True,
                          "unit": ["µm²/h", "µm"]})
    return Fit(params=params, intervals=table, covariance=pd.DataFrame(),
               sensitivity=sens, identifiability=[],
               history=pd.DataFrame([{"start": 0, "iteration": 0, "loss": 1.0,
                                      "stage": "adam"}]),
               best_start=0, loss=1.0, fitted=fitted,
               settings=CalibrateSettings(free=free))


def test_linearised_refit_solves_the_weighted_least_squares_of_a_linear_model() -> None:
    rng = np.random.default_rng(0)
    raw0 = np.log([0.5, 20.0])
    sensitivity = rng.normal(size=(12, 2))
    model = rng.normal(size=12)
    sd, added = rng.uniform(0.5, 1.5, 12), rng.uniform(0.1, 0.5, 12)
    fit = linear_fit(raw0, sensitivity, model, model + rng.normal(0, 0.1, 12), sd, added)
    # new observations: shifted by a bias, one entry unobserved, wider sd
    y = model + rng.normal(0, 0.1, 12) - 0.3
    y[4] = np.nan
    new_sd = sd * 1.3
    observed = Observations({"m": y}, {"m": new_sd}, frames=13, frame_interval_h=0.5)
    refit = linearised_refit(fit, [observed])
    # the minimum of Σ ((m + S Δ − y) / σ)² over the observed entries
    ok = np.isfinite(y)
    sigma = np.sqrt(new_sd**2 + added)[ok]
    step = np.linalg.lstsq(sensitivity[ok] / sigma[:, None], (y - model)[ok] / sigma,
                           rcond=None)[0]
    value = refit.intervals.set_index("name")["value"]
    np.testing.assert_allclose(np.log([value[MOTILITY], value[DECAY]]), raw0 + step,
                               rtol=1e-5)
    jacobian = sensitivity[ok] / sigma[:, None]
    np.testing.assert_allclose(refit.covariance.to_numpy(),
                               np.linalg.inv(jacobian.T @ jacobian), rtol=1e-5)
    fitted = refit.fitted.set_index("index")
    np.testing.assert_allclose(fitted["model"], model + sensitivity @ step, rtol=1e-6)
    assert refit.history["stage"].iloc[-1] == "linearised"
    assert float(refit.params.mechanics.motility_um2_per_h) == pytest.approx(
        value[MOTILITY], rel=1e-5)
    with pytest.raises(InputError, match="1 experiment"):
        linearised_refit(fit, [observed, observed])
    with pytest.raises(InputError, match="entries"):
        linearised_refit(fit, [Observations({"m": y[:5]}, {"m": new_sd[:5]}, 6, 0.5)])


def test_acquisition_films_a_simulated_tissue_in_its_own_frame() -> None:
    params = with_values(default_params(1), **{"division.max_rate_per_h": 0.3})
    lineage, _ = simulated_lineage(params, seed=0, frames=3)
    tracked, samples = Acquisition((2.0, 0.5, 0.5), snr=6.0)(lineage, 0, n_samples=2)
    assert len(samples) == 2 and tracked.frame_interval_h == lineage.frame_interval_h
    for t, nuclei in lineage.nodes.groupby("t"):
        found = tracked.nodes[tracked.nodes["t"] == t][["z", "y", "x"]].to_numpy()
        distance, _ = cKDTree(found).query(nuclei[["z", "y", "x"]].to_numpy())
        assert np.mean(distance < 1.0) >= 0.95, t
    with pytest.raises(InputError, match="voxel_size_um"):
        Acquisition((2.0, 0.5), snr=6.0)
    with pytest.raises(InputError, match="snr"):
        Acquisition((2.0, 0.5, 0.5), snr=0.0)
    with pytest.raises(InputError, match="n_tissues"):
        observation_bias(params, Experiment(observe(lineage, None, n_draws=5),
                                            initial_from_lineage(MODEL, lineage, n_genes=1)),
                         MODEL, Acquisition((2.0, 0.5, 0.5), snr=6.0), n_tissues=0)


def test_bias_is_zero_where_the_film_sees_everything() -> None:
    params = with_values(default_params(1), **{"division.max_rate_per_h": 0.3})
    lineage, sources = simulated_lineage(params, seed=2, frames=4)
    experiment = Experiment(observe(lineage, sources, n_draws=10),
                            initial_from_lineage(MODEL, lineage, sources, n_genes=1))
    bias = observation_bias(params, experiment, MODEL, lambda lin, seed, n: (lin, [lin] * n),
                            seed=3, n_tissues=2)
    for term, values in bias.values.items():
        np.testing.assert_allclose(values, 0.0, atol=1e-12, err_msg=term)
        np.testing.assert_allclose(bias.sd[term], 0.0, atol=1e-12, err_msg=term)
        np.testing.assert_allclose(bias.spread[term], 0.0, atol=1e-12, err_msg=term)
    table = bias.table()
    assert isinstance(table, pd.DataFrame) and (table["bias"] == 0).all()


def test_correction_iterates_to_the_fixed_point_of_a_parameter_dependent_bias(
        monkeypatch) -> None:
    """A film that loses a share ``p`` of whatever it measures: its bias ``-p m(θ)``
    depends on the parameters it is simulated at, so a correction evaluated at the
    biased fit corrects too little; each further iteration shrinks the remaining error of
    a linear model by ``p``."""
    rng = np.random.default_rng(1)
    lost = 0.5
    raw_fit, raw_true = np.log([0.5, 20.0]), np.log([0.8, 26.0])
    sensitivity = rng.normal(size=(10, 2))
    model_at_fit = rng.normal(size=10) + 5.0

    def model_at(params) -> np.ndarray:
        raw = np.log([float(params.mechanics.motility_um2_per_h),
                      float(params.growth_factor.decay_length_um)])
        return model_at_fit + sensitivity @ (raw - raw_fit)

    measured_at = []

    def lossy_bias(params, experiment, model, film, *, seed, n_tissues):
        measured_at.append((float(params.mechanics.motility_um2_per_h), seed))
        zeros = np.zeros(10)
        return ObservationBias({"m": -lost * model_at(params)}, {"m": zeros}, {"m": zeros},
                               [], [])

    monkeypatch.setattr(observation_module, "observation_bias", lossy_bias)
    # the movie: the true tissue's morphometrics, less the share the film lost
    filmed = (1 - lost) * (model_at_fit + sensitivity @ (raw_true - raw_fit))
    observed = Observations({"m": filmed}, {"m": np.full(10, 0.1)}, frames=11,
                            frame_interval_h=0.5)
    fit = linear_fit(raw_fit, sensitivity, model_at_fit, filmed, np.full(10, 0.1),
                     np.zeros(10))
    experiment = Experiment(observed, initial=None)

    def raw_of(refit: Fit) -> np.ndarray:
        value = refit.intervals.set_index("name")["value"]
        return np.log([value[MOTILITY], value[DECAY]])

    for iterations in (1, 3):
        measured_at.clear()
        refit = corrected_for_observation(fit, [experiment], MODEL, film=None, seed=9,
                                          iterations=iterations, tolerance_sd=0.0)
        np.testing.assert_allclose(raw_of(refit) - raw_true,
                                   lost**iterations * (raw_fit - raw_true), atol=1e-4)
        # the bias measured at the fit, then at each corrected fit, with the same seeds
        assert [s for _, s in measured_at] == [9] * iterations
        assert measured_at[0][0] == pytest.approx(0.5)
        path = refit.extra["correction_iterations"]
        assert sorted(set(path["iteration"])) == list(range(iterations + 1))
    # a generous tolerance stops once the parameters settle
    settled = corrected_for_observation(fit, [experiment], MODEL, film=None, seed=9,
                                        iterations=10, tolerance_sd=2.0)
    assert settled.extra["correction_iterations"]["iteration"].max() < 10
    with pytest.raises(InputError, match="iterations"):
        corrected_for_observation(fit, [experiment], MODEL, film=None, iterations=0)
