"""Recalibration: observations, the fit, its uncertainty and the store round trip."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from labloop.calibrate import (
    DIVISION_LAW,
    CalibrateSettings,
    Derived,
    derived_intervals,
    division_rate_at,
    initial_from_lineage,
    linearised_refit,
    motion_segments,
    observe,
    recalibrate,
    steady_gene_levels,
    steps_per_frame,
    with_values,
)
from labloop.calibrate.fit import _step_on_fresh_replicates, secant_jacobian
from labloop.calibrate.polish import levenberg_marquardt
from labloop.calibrate.statistics import counts, expected_increase, growth_rate
from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.tissue import (
    TissueModel,
    default_params,
    round_cluster,
    simulate,
    simulate_replicates,
    to_lineage,
)
from labloop.tissue.gene_network import gene_rate

MODEL = TissueModel(capacity=64, dt_h=0.25, mechanics_substeps=2, neighbours="dense")


def simulated_lineage(params, seed: int = 0, frames: int = 8) -> tuple[Lineage, np.ndarray]:
    init = round_cluster(MODEL, 24, n_sources=4, n_genes=1, key=jax.random.key(seed))
    traj = simulate(MODEL, params, jax.random.key(seed), init, n_frames=frames,
                    steps_per_frame=2)
    lineage = to_lineage(traj)
    nodes = lineage.nodes
    sources = nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
    return lineage, sources


def uniform_division_replicates(rate_per_h: float, *, n_cells: int, seed: int,
                                replicates: int, n_frames: int, steps_per_frame: int):
    """Replicates of a cluster whose every cell divides at ``rate_per_h`` (read-out weight
    0, saturated bias), none refused for want of capacity; cluster from key ``seed``,
    replicates from ``seed + 1``."""
    uniform = with_values(default_params(1), **{"division.max_rate_per_h": rate_per_h,
                                                "division.output_weights": [0.0],
                                                "division.output_bias": 10.0})
    init = round_cluster(MODEL, n_cells, n_genes=1, key=jax.random.key(seed))
    traj = simulate_replicates(MODEL, uniform,
                               jax.random.split(jax.random.key(seed + 1), replicates), init,
                               n_frames=n_frames, steps_per_frame=steps_per_frame)
    assert int(traj.frames.counters.overflow.max()) == 0
    return traj


def test_motion_segments_follow_tracks_and_skip_divisions() -> None:
    nodes = pd.DataFrame({"t": [0, 1, 2, 0, 1, 2, 2],
                          "z": 0.0, "y": 0.0, "x": [0.0, 1.0, 3.0, 50, 51, 52, 53]})
    # track 0→1→2 straight; track 3→4 divides into 5 and 6: no segment from 3
    edges = pd.DataFrame({"source": [0, 1, 3, 4, 4], "target": [1, 2, 4, 5, 6]})
    segments = motion_segments(Lineage(nodes, edges, frame_interval_h=0.5))
    np.testing.assert_allclose(segments, [[1.0, 9.0]])


def test_observe_gives_increments_profile_and_motion() -> None:
    params = with_values(default_params(1), **{"division.max_rate_per_h": 0.3})
    lineage, sources = simulated_lineage(params)
    observed = observe(lineage, sources, n_draws=20)
    counts = lineage.nodes.groupby("t").size().to_numpy()
    growth = "cell_growth_rate_per_h"
    np.testing.assert_allclose(observed.values[growth], np.diff(counts) / (counts[:-1] * 0.5))
    np.testing.assert_allclose(observed.exposure_h[growth], counts[:-1] * 0.5)
    assert observed.frames == 9 and len(observed.values["radius_of_gyration_increase_um"]) == 8
    assert observed.landmark_um == pytest.approx(tuple(sources.mean(0)))
    assert observed.values["msd_excess_um2"][0] > 0
    assert (observed.sd[growth] > 0).all()
    window = observed.window(5)
    assert len(window.values[growth]) == len(window.exposure_h[growth]) == 4
    # the profile's cell-hours are the nodes of frames 0 … F − 1 in each bin
    profile = "division_rate_by_distance_per_h"
    first = lineage.nodes[lineage.nodes["t"] < observed.frames - 1]
    distance = np.linalg.norm(first[["z", "y", "x"]].to_numpy() - sources.mean(0), axis=1)
    in_bins = np.histogram(distance, observed.bin_edges_um)[0]
    np.testing.assert_allclose(np.nan_to_num(observed.exposure_h[profile]), in_bins * 0.5)
    # a true lineage has little uncertainty beyond counting (the draws' quantile noise and,
    # in bins of a few cells, the bootstrap's varying cell-hours)
    hours = observed.exposure_h[profile]
    counting_sd = np.sqrt(observed.values[profile] * hours + 0.5) / hours
    populated = hours >= 20
    assert populated.sum() >= 2
    assert np.max(observed.sd[profile][populated] / counting_sd[populated]) < 0.6
    with pytest.raises(InputError, match="at least 3 frames"):
        observe(Lineage(lineage.nodes[lineage.nodes["t"] < 2],
                        pd.DataFrame({"source": [], "target": []}), frame_interval_h=0.5))


def test_recalibrate_recovers_motility_and_flags_what_the_data_miss() -> None:
    warnings.simplefilter("ignore")
    truth = with_values(default_params(1), **{"division.max_rate_per_h": 1e-4,
                                              "mechanics.motility_um2_per_h": 0.8})
    lineage, sources = simulated_lineage(truth, seed=3, frames=10)
    observed = observe(lineage, None, n_draws=20)
    start = with_values(truth, **{"mechanics.motility_um2_per_h": 0.3})
    initial = initial_from_lineage(MODEL, lineage, sources, n_genes=1)
    settings = CalibrateSettings(free=("mechanics.motility_um2_per_h",
                                       "growth_factor.decay_length_um"),
                                 n_starts=1, max_iterations=40, learning_rate=0.1,
                                 n_replicates=6)
    calls = []
    fit = recalibrate(observed, MODEL, start, initial, settings,
                      progress=lambda done, total: calls.append(done))
    row = fit.intervals.set_index("name").loc["mechanics.motility_um2_per_h"]
    assert row["value"] == pytest.approx(0.8, rel=0.2)
    assert row["lower"] < row["value"] < row["upper"]
    assert fit.history["loss"].iloc[-1] < fit.history["loss"].iloc[0]
    # without sources the growth factor reaches no cell: the fit must say so
    assert any("decay_length_um: unconstrained" in n for n in fit.identifiability)
    sens = fit.sensitivity.query("term == 'msd_excess_um2'").set_index("parameter")
    assert sens.loc["mechanics.motility_um2_per_h", "sensitivity"] > 0
    assert calls and calls[-1] == settings.max_iterations + settings.polish_iterations
    adam = fit.history.query("stage == 'adam'")["loss"]
    polish = fit.history.query("stage == 'polish'")["loss"]
    assert len(polish) and polish.max() <= adam.min()  # the polish never loses ground
    # a Gauss–Newton step back to the same observations hardly moves a converged fit
    again = linearised_refit(fit, [observed]).intervals.set_index("name").loc[
        "mechanics.motility_um2_per_h"]
    assert abs(np.log(again["value"] / row["value"])) < 0.1 * row["sd_raw"]
    # (the fit's covariance is from the Jacobian before its final step, the sensitivities
    # after it)
    assert again["upper"] / again["lower"] == pytest.approx(row["upper"] / row["lower"],
                                                            rel=0.02)
    # the division law was frozen: derived rates are reported as fixed, not measured
    derived = fit.derived().set_index("name")
    assert not derived["depends_on_free"].any()
    np.testing.assert_allclose(derived["lower"], derived["upper"])


def test_recalibrate_is_deterministic_for_a_seed() -> None:
    params = with_values(default_params(1), **{"division.max_rate_per_h": 0.2})
    lineage, sources = simulated_lineage(params, frames=4)
    observed = observe(lineage, sources, n_draws=10)
    initial = initial_from_lineage(MODEL, lineage, sources, n_genes=1)
    # a chosen second start far from the first (and a random third); without a polish
    # (which in one dimension takes every start to the same minimum) three Adam steps leave
    # them apart, and distinct ones are kept
    settings = CalibrateSettings(free=("division.max_rate_per_h",), n_starts=3,
                                 starts=({"division.max_rate_per_h": 2.0},),
                                 mode_loss_margin=1e9, max_iterations=3, n_replicates=3,
                                 polish_iterations=0, laplace_replicates=8)
    a = recalibrate(observed, MODEL, params, initial, settings)
    b = recalibrate(observed, MODEL, params, initial, settings)
    pd.testing.assert_frame_equal(a.history, b.history)
    pd.testing.assert_frame_equal(a.intervals, b.intervals)
    first_rates = a.history.query("stage == 'adam' and iteration == 0").set_index("start")
    assert first_rates.loc[1, "loss"] != first_rates.loc[0, "loss"]
    # every minimum is a fit of its own, ordered by loss, with weights summing to one
    losses = [m.loss for m in a.modes]
    assert losses == sorted(losses) and len(a.modes) >= 2
    assert a.mode_weights().sum() == pytest.approx(1.0)
    rates = [float(m.params.division.max_rate_per_h) for m in a.modes]
    assert max(rates) > 3 * min(rates)
    # the mixture's interval spans every minimum that has weight
    row = a.intervals.iloc[0]
    weighty = [r for r, w in zip(rates, a.mode_weights(), strict=True) if w > 0.1]
    assert row["lower"] <= min(weighty) and max(weighty) <= row["upper"]
    with pytest.raises(InputError, match="must count the given parameters"):
        CalibrateSettings(n_starts=1, starts=({"division.max_rate_per_h": 0.6},))


DIVISION_TRUTH = {"division.max_rate_per_h": 0.25, "division.output_weights": [4.0],
                  "division.output_bias": -2.0, "gene.input_weights": [-3.0],
                  "gene.bias": [1.5]}


def test_steady_gene_levels_solve_the_network_at_fixed_growth_factor() -> None:
    one = with_values(default_params(1), **DIVISION_TRUTH)
    for c in (0.0, 1.0):  # one gene, r = γ = 1: x* = σ(u c + b)
        expected = 1 / (1 + np.exp(-(-3.0 * c + 1.5)))
        assert float(steady_gene_levels(one, c)[0]) == pytest.approx(expected, rel=1e-4)
        assert float(division_rate_at(one, c)) == pytest.approx(
            0.25 / (1 + np.exp(-(4.0 * expected - 2.0))), rel=1e-4)
    coupled = default_params(3, key=jax.random.key(4), scale=0.8)
    x = steady_gene_levels(coupled, 0.7)[None]
    assert np.abs(np.asarray(gene_rate(x, jnp.array([0.7]), coupled.gene))).max() < 1e-4


def test_derived_intervals_agree_with_sampling_the_laplace_posterior() -> None:
    params = with_values(default_params(1), **DIVISION_TRUTH)
    free = ("division.max_rate_per_h", "division.output_weights")
    names = ["division.max_rate_per_h", "division.output_weights"]
    cov = np.array([[0.04, -0.03], [-0.03, 0.09]])  # log λ_max, v
    table = derived_intervals(params, pd.DataFrame(cov, index=names, columns=names), free,
                              {**DIVISION_LAW, "max_rate": Derived(
                                  lambda p: p.division.max_rate_per_h, "1/h")}).set_index("name")
    # a derived quantity equal to a positive parameter gets that parameter's interval
    sd = np.sqrt(cov[0, 0])
    assert table.loc["max_rate", "lower"] == pytest.approx(0.25 * np.exp(-1.6449 * sd),
                                                           rel=0.02)
    assert table.loc["max_rate", "upper"] == pytest.approx(0.25 * np.exp(1.6449 * sd),
                                                           rel=0.02)
    # against independent draws from the same Gaussian in optimiser space
    draws = np.random.default_rng(1).multivariate_normal([np.log(0.25), 4.0], cov, 4000)
    rate = np.exp(draws[:, 0]) / (1 + np.exp(-(draws[:, 1] / (1 + np.exp(-1.5)) - 2.0)))
    row = table.loc["division_rate_without_growth_factor_per_h"]
    assert row["depends_on_free"]
    assert row["value"] == pytest.approx(0.25 / (1 + np.exp(-(4 / (1 + np.exp(-1.5)) - 2))))
    lo, hi = np.quantile(rate, [0.05, 0.95])
    assert row["lower"] == pytest.approx(lo, rel=0.05)
    assert row["upper"] == pytest.approx(hi, rel=0.05)
    with pytest.raises(InputError, match="free parameters have 2 entries"):
        derived_intervals(params, pd.DataFrame(np.eye(3)), free, DIVISION_LAW)


def test_derived_interval_is_not_empty_where_the_quantity_is_stationary() -> None:
    # the fold change of the division rate has a minimum in the read-out weight
    fold = DIVISION_LAW["division_fold_change_at_unit_growth_factor"].function
    weights = np.linspace(3.0, 6.0, 61)
    truth = with_values(default_params(1), **DIVISION_TRUTH)
    folds = [float(fold(with_values(truth, **{"division.output_weights": [w]})))
             for w in weights]
    best = weights[int(np.argmin(folds))]
    assert 3.0 < best < 6.0
    params = with_values(truth, **{"division.output_weights": [best]})
    name = ["division.output_weights"]
    row = derived_intervals(params, pd.DataFrame([[0.25]], index=name, columns=name),
                            ("division.output_weights",), DIVISION_LAW).set_index("name").loc[
        "division_fold_change_at_unit_growth_factor"]
    # the minimum is the interval's lower end; ±0.82 in the weight raises the fold change
    assert row["lower"] == pytest.approx(row["value"], rel=0.01)
    assert row["upper"] > 1.02 * row["value"]
    edge = float(fold(with_values(params, **{"division.output_weights": [best + 0.82]})))
    assert row["upper"] == pytest.approx(edge, rel=0.02)


def test_secant_jacobian_matches_forward_mode_on_a_smooth_function() -> None:
    def f(x):
        return {"a": jnp.stack([jnp.sin(x[0]) * x[1], x[1] ** 2]), "b": jnp.exp(x[0])}

    x = jnp.array([0.3, -1.2])
    secant = secant_jacobian(f, 1e-2)(x)
    forward = jax.jacfwd(f)(x)
    np.testing.assert_allclose(secant["a"], forward["a"], rtol=1e-3)
    np.testing.assert_allclose(secant["b"], forward["b"], rtol=1e-3)
    assert secant["a"].shape == (2, 2) and secant["b"].shape == (2,)
    with pytest.raises(InputError, match="jacobian must be"):
        CalibrateSettings(jacobian="backward")
    with pytest.raises(InputError, match="laplace_replicates must be at least 2, got 1"):
        CalibrateSettings(laplace_replicates=1)


def test_cell_radius_is_half_the_contact_distance_of_a_jittered_packing() -> None:
    from labloop.calibrate.initial import cell_radius_from

    state = round_cluster(MODEL, 60, radius_um=5.0, jitter_um=0.5, key=jax.random.key(0))
    points = np.asarray(state.position_um)[np.asarray(state.alive)]
    nodes = pd.DataFrame({"t": 0, "z": points[:, 0], "y": points[:, 1], "x": points[:, 2]})
    lineage = Lineage(nodes, pd.DataFrame({"source": [], "target": []}), frame_interval_h=0.5)
    # the nearest neighbour alone is the closest of ~12 jittered contacts: about 4.55 µm
    assert cell_radius_from(lineage) == pytest.approx(5.0, rel=0.02)


def test_expected_count_increase_is_unbiased_from_the_first_frame() -> None:
    # the genes (and so the rates) rise from zero over the first frames: a statistic
    # built from the recorded frames' rates would miss the first frame's divisions
    params = with_values(default_params(1), **DIVISION_TRUTH)
    init = round_cluster(MODEL, 24, n_sources=4, n_genes=1, key=jax.random.key(1))
    traj = simulate_replicates(MODEL, params, jax.random.split(jax.random.key(2), 200),
                               init, n_frames=6, steps_per_frame=2)
    realised = np.asarray(jax.vmap(lambda t: jnp.diff(counts(t)))(traj))
    expected = np.asarray(jax.vmap(expected_increase)(traj))
    standard_error = realised.std(axis=0) / np.sqrt(len(realised))
    assert expected[:, 0].mean() > 0.5 * realised[:, 0].mean() > 0
    assert np.all(np.abs(expected.mean(0) - realised.mean(0)) < 3.5 * standard_error + 1e-3)


def test_growth_rate_residuals_are_independent_where_count_increases_are_not() -> None:
    # proliferation compounds: a replicate that divided more early on keeps adding more
    # cells, so summed standardised count increases vary more than independent entries
    # would; per cell present (the growth rate, Pearson variance at the model's rate) the
    # frames' residuals add up as independent ones (the sum's variance is ~ the frames')
    traj = uniform_division_replicates(0.3, n_cells=10, seed=5, replicates=300, n_frames=8,
                                       steps_per_frame=2)
    n = np.asarray(jax.vmap(counts)(traj))
    exposure = n[:, :-1] * 0.5
    model_rate = np.asarray(jax.vmap(growth_rate)(traj)).mean(0)
    z_rate = (np.diff(n, axis=1) / exposure - model_rate) / np.sqrt(
        (model_rate * exposure + 0.5) / exposure**2)
    increase = np.diff(n, axis=1)
    z_increase = (increase - increase.mean(0)) / np.sqrt(increase.mean(0) + 0.5)
    frames = z_rate.shape[1]
    assert 0.6 < z_rate.sum(1).var() / frames < 1.2
    assert z_increase.sum(1).var() / frames > 1.6


def test_profile_counts_the_divisions_the_recorded_frames_show() -> None:
    # fast cycles (1/h) and 1-h frames: a daughter often divides again before the next
    # frame, and the lineage of the frames then shows no division of its mother
    from labloop.calibrate.statistics import division_rate_by_distance
    from labloop.measure.statistics import mother_ids

    traj = uniform_division_replicates(1.0, n_cells=6, seed=3, replicates=60, n_frames=2,
                                       steps_per_frame=4)
    edges = jnp.array([0.0, 1e4])

    def profile_divisions(t):
        rate, exposure = division_rate_by_distance(t, jnp.zeros(3), edges)
        return (rate * exposure * t.frame_interval_h)[0]

    smooth = np.asarray(jax.vmap(profile_divisions)(traj))
    every = np.asarray(jax.vmap(lambda t: jnp.sum(expected_increase(t)))(traj))
    shown = np.array([len(mother_ids(to_lineage(traj, r))) for r in range(60)], float)
    standard_error = shown.std() / np.sqrt(60)
    assert every.mean() - shown.mean() > 5 * standard_error    # many divisions are hidden
    assert abs(smooth.mean() - shown.mean()) < 3 * standard_error


def test_rate_profile_weights_do_not_bias_the_fitted_slope() -> None:
    """A log-linear rate profile fitted by Gauss–Newton on the loss's residuals to Poisson
    counts of 1 … 200 divisions per bin: with the counting variance at the model's rate
    (Pearson) the fitted slope is unbiased; weighting by the observed counts' own noise
    (Neyman) makes it steeper."""
    from labloop.calibrate.loss import standardised_residuals
    from labloop.calibrate.observations import Observations

    term = "division_rate_by_distance_per_h"
    exposure = jnp.array([72.0, 452, 852, 1101, 1382, 320])
    truth = jnp.array([0.008, 0.017, 0.029, 0.07, 0.134, 0.167])
    design = jnp.log(truth / truth[3])

    def fitted_slope(rate: jax.Array, neyman: bool) -> jax.Array:
        if neyman:
            own_noise = jnp.sqrt(rate * exposure + 0.5) / exposure
            observed = Observations({term: rate}, {term: own_noise}, 9, 0.5)
        else:
            observed = Observations({term: rate}, {term: jnp.zeros(6)}, 9, 0.5,
                                    exposure_h={term: exposure})

        def residuals(theta: jax.Array) -> jax.Array:
            profile = truth[3] * jnp.exp(theta[0] + theta[1] * design)
            return standardised_residuals({term: profile[None]}, observed)[term]

        def gauss_newton(_: int, theta: jax.Array) -> jax.Array:
            r, jac = residuals(theta), jax.jacfwd(residuals)(theta)
            return theta - jnp.linalg.solve(jac.T @ jac, jac.T @ r)

        return jax.lax.fori_loop(0, 30, gauss_newton, jnp.array([0.0, 1.0]))[1]

    draws = 2000
    rates = jax.random.poisson(jax.random.key(0), truth * exposure, (draws, 6)) / exposure
    pearson = jax.vmap(lambda r: fitted_slope(r, False))(rates)
    neyman = jax.vmap(lambda r: fitted_slope(r, True))(rates)
    # measured: Pearson 1.006, Neyman 1.032, standard error 0.002
    assert float(jnp.std(pearson)) / np.sqrt(draws) < 0.003
    assert abs(float(jnp.mean(pearson)) - 1.0) < 0.012
    assert float(jnp.mean(neyman)) - 1.0 > 0.02


def test_levenberg_marquardt_reaches_the_floor_of_a_curved_valley() -> None:
    # Rosenbrock's valley, ½ Σ r² with r = (10 (y − x²), 1 − x): minimum 0 at (1, 1)
    def residuals(v: np.ndarray) -> np.ndarray:
        return np.array([10 * (v[1] - v[0] ** 2), 1 - v[0]])

    def jacobian(v: np.ndarray, _: np.ndarray) -> np.ndarray:
        return np.array([[-20 * v[0], 10.0], [-1.0, 0.0]])

    def objective(v: np.ndarray) -> float:
        return 0.5 * float(np.sum(residuals(v) ** 2))

    start = np.array([-1.2, 1.0])
    polished, steps = levenberg_marquardt(lambda v, _: (objective(v), residuals(v)),
                                          jacobian, start, iterations=60, tolerance=1e-12)
    np.testing.assert_allclose(polished, [1.0, 1.0], atol=1e-4)
    losses = [objective(start)] + [s.loss for s in steps]
    assert np.all(np.diff(losses) <= 0)  # never accepts a worse step
    # a step that only raises a (swapped) objective is refused: the start comes back
    same, refused = levenberg_marquardt(lambda v, _: (float(np.sum(v**2)), residuals(v)),
                                        jacobian, np.zeros(2) + 1e-3, iterations=3,
                                        tolerance=0.0)
    np.testing.assert_array_equal(same, np.zeros(2) + 1e-3)
    assert not refused[-1].accepted


def test_polish_holds_the_counting_weights_at_each_step_start() -> None:
    """One rate fitted to six bins of few counts: the polish reaches the iteratively
    reweighted point (the stationary point Adam's gradient seeks too), not the minimum of
    the loss value, which the counting variance's growth with the rate pulls upwards."""
    from scipy.optimize import brentq, minimize_scalar

    from labloop.calibrate.loss import residual_variances, standardised_residuals
    from labloop.calibrate.observations import Observations

    term = "division_rate_by_distance_per_h"
    hours = np.array([5.0, 10, 20, 40, 80, 160])
    rate = np.array([0, 2, 3, 9, 15, 33.0]) / hours
    observed = Observations({term: rate}, {term: np.zeros(6)}, 9, 0.5,
                            exposure_h={term: hours})

    def residuals(x: jax.Array, anchor: np.ndarray) -> jax.Array:
        held = residual_variances({term: jnp.full((1, 6), np.exp(anchor[0]))}, observed)
        model = jnp.exp(x[0]) * jnp.ones((1, 6))
        return standardised_residuals({term: model}, observed, held)[term]

    def evaluate(x: np.ndarray, anchor: np.ndarray) -> tuple[float, np.ndarray]:
        r = np.asarray(residuals(jnp.asarray(x), anchor))
        return 0.5 * float(np.sum(r**2)), r

    def jacobian(x: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        return np.asarray(jax.jacfwd(lambda v: residuals(v, anchor))(jnp.asarray(x)))

    polished, _ = levenberg_marquardt(evaluate, jacobian, np.array([np.log(0.05)]), 50,
                                      1e-14)
    reweighted = brentq(lambda m: np.sum((m - rate) * hours**2 / (m * hours + 0.5)), 1e-3, 1)
    by_value = minimize_scalar(lambda m: np.sum((m - rate) ** 2 * hours**2 / (m * hours + 0.5)),
                               bounds=(1e-3, 1), method="bounded").x
    # measured: polish 0.19802, reweighted 0.19802, value minimum 0.19941
    assert np.exp(polished[0]) == pytest.approx(reweighted, rel=1e-5)
    assert by_value - reweighted > 0.001


def test_final_step_moves_to_the_minimum_over_the_laplace_replicates() -> None:
    """The last step reuses the known Jacobian: on linear residuals it lands (up to the
    damping) on the least-squares point, and it stays put where nothing is gained."""
    rng = np.random.default_rng(0)
    design, target = rng.normal(size=(12, 3)), rng.normal(size=12)
    best = np.linalg.lstsq(design, target, rcond=None)[0]

    def loss_and_residuals(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        r = jnp.asarray(design) @ x - jnp.asarray(target)
        return 0.5 * jnp.sum(r**2), r

    start = jnp.asarray(best + np.array([0.2, -0.1, 0.15]))
    value, residuals = loss_and_residuals(start)
    stepped = _step_on_fresh_replicates(loss_and_residuals, start, float(value),
                                        np.asarray(residuals), design)
    assert stepped is not None
    np.testing.assert_allclose(np.asarray(stepped), best, atol=0.01)
    at_best = jnp.asarray(best)
    value, residuals = loss_and_residuals(at_best)
    assert _step_on_fresh_replicates(loss_and_residuals, at_best, float(value),
                                     np.asarray(residuals), design) is None


def test_time_step_must_divide_the_frame_interval() -> None:
    assert steps_per_frame(MODEL, 0.5) == 2
    with pytest.raises(InputError, match="not a whole number"):
        steps_per_frame(MODEL, 0.3)


def test_calibrate_store_writes_fit_and_prediction(tmp_path) -> None:
    from labloop.calibrate.store import StoreSettings, calibrate_store
    from labloop.io.store import open_experiment
    from labloop.sample_data import sample_store_path

    store = tmp_path / "s.zarr"
    shutil.copytree(sample_store_path(), store)
    result = subprocess.run([sys.executable, "-m", "labloop", "calibrate", str(store)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no tracks yet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    experiment = open_experiment(store)
    truth = experiment.read_truth()
    early = truth.nodes.index[truth.nodes["t"] < 8]  # the first 8 frames keep the test short
    experiment.write_tracks(Lineage(truth.nodes.loc[early], truth.edges[
        truth.edges["target"].isin(early)], frame_interval_h=truth.frame_interval_h))
    result = subprocess.run([sys.executable, "-m", "labloop", "calibrate", str(store),
                             "--correct-observation"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "needs the store's detections" in result.stderr
    # the true nuclei stand for the detections: the store's SNR is measured at them
    experiment.write_table("detections", truth.nodes.loc[early, ["t", "z", "y", "x"]],
                           "detect", {})
    settings = StoreSettings(fit=CalibrateSettings(
        free=("division.max_rate_per_h",), n_starts=1, max_iterations=4, n_replicates=3),
        predict_frames=4, n_predictions=2, tracker_samples=0, correct_observation=True,
        correction_tissues=2)
    fit = calibrate_store(store, settings)
    parameters = experiment.read_table("fit/parameters")
    assert list(parameters["name"]) == ["division.max_rate_per_h"]
    # the sample movie was rendered at SNR 6; its simulated filming repeats it
    correction = experiment.record("fit/parameters")["params"]["observation_correction"]
    assert correction["snr_measured"] and 5.4 < correction["snr"] < 6.6
    assert correction["uncorrected"][0]["name"] == "division.max_rate_per_h"
    assert correction["iterations"] == 1
    bias = experiment.read_table("fit/observation_bias")
    assert {"cell_growth_rate_per_h", "msd_excess_um2"} <= set(bias["term"])
    assert np.isfinite(bias["bias"]).all()
    assert fit.history["stage"].iloc[-1] == "linearised"
    assert experiment.record("fit/parameters")["params"]["identifiability"] == \
        fit.identifiability
    # λ_max was free: both rates of the division law moved with it, the fold change did not
    law = {r["name"]: r for r in experiment.record("fit/parameters")["params"]["division_law"]}
    assert law["division_rate_without_growth_factor_per_h"]["depends_on_free"]
    assert not law["division_fold_change_at_unit_growth_factor"]["depends_on_free"]
    assert "division_rate_without_growth_factor_per_h" in fit.summary()
    prediction = experiment.read_table("prediction")
    assert set(prediction["replicate"]) == {0, 1}
    assert prediction["t"].max() == 7 + 4
    first = prediction[(prediction["t"] == 0) & (prediction["replicate"] == 0)]
    assert len(first) == (experiment.read_truth().nodes["t"] == 0).sum()
    predicted = experiment.read_table("predicted_morphometrics")
    assert {"cell_count", "radius_of_gyration_um"} <= set(predicted["quantity"])
    history = experiment.read_table("fit/history")
    assert (history["stage"] == "adam").sum() == 4
    assert 1 <= (history["stage"] == "polish").sum() <= settings.fit.polish_iterations
