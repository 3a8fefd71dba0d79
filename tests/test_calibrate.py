"""Recalibration: observations, the fit, its uncertainty and the store round trip."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import jax
import numpy as np
import pandas as pd
import pytest

from labloop.calibrate import (
    CalibrateSettings,
    initial_from_lineage,
    motion_segments,
    observe,
    recalibrate,
    steps_per_frame,
    with_values,
)
from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.tissue import TissueModel, default_params, round_cluster, simulate, to_lineage

MODEL = TissueModel(capacity=64, dt_h=0.25, mechanics_substeps=2, neighbours="dense")


def simulated_lineage(params, seed: int = 0, frames: int = 8) -> tuple[Lineage, np.ndarray]:
    init = round_cluster(MODEL, 24, n_sources=4, n_genes=1, key=jax.random.key(seed))
    traj = simulate(MODEL, params, jax.random.key(seed), init, n_frames=frames,
                    steps_per_frame=2)
    lineage = to_lineage(traj)
    nodes = lineage.nodes
    sources = nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
    return lineage, sources


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
    np.testing.assert_allclose(observed.values["cell_count_increase"], np.diff(counts))
    assert observed.frames == 9 and len(observed.values["radius_of_gyration_increase_um"]) == 8
    assert observed.landmark_um == pytest.approx(tuple(sources.mean(0)))
    assert observed.values["msd_excess_um2"][0] > 0
    assert (observed.sd["cell_count_increase"] > 0).all()
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
    assert calls and calls[-1] == settings.max_iterations


def test_recalibrate_is_deterministic_for_a_seed() -> None:
    params = with_values(default_params(1), **{"division.max_rate_per_h": 0.2})
    lineage, sources = simulated_lineage(params, frames=4)
    observed = observe(lineage, sources, n_draws=10)
    initial = initial_from_lineage(MODEL, lineage, sources, n_genes=1)
    settings = CalibrateSettings(n_starts=2, max_iterations=3, n_replicates=3)
    a = recalibrate(observed, MODEL, params, initial, settings)
    b = recalibrate(observed, MODEL, params, initial, settings)
    pd.testing.assert_frame_equal(a.history, b.history)
    pd.testing.assert_frame_equal(a.intervals, b.intervals)


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
    settings = StoreSettings(fit=CalibrateSettings(
        free=("division.max_rate_per_h",), n_starts=1, max_iterations=4, n_replicates=3),
        predict_frames=4, n_predictions=2, tracker_samples=0)
    fit = calibrate_store(store, settings)
    parameters = experiment.read_table("fit/parameters")
    assert list(parameters["name"]) == ["division.max_rate_per_h"]
    assert experiment.record("fit/parameters")["params"]["identifiability"] == \
        fit.identifiability
    prediction = experiment.read_table("prediction")
    assert set(prediction["replicate"]) == {0, 1}
    assert prediction["t"].max() == 7 + 4
    first = prediction[(prediction["t"] == 0) & (prediction["replicate"] == 0)]
    assert len(first) == (experiment.read_truth().nodes["t"] == 0).sum()
    predicted = experiment.read_table("predicted_morphometrics")
    assert {"cell_count", "radius_of_gyration_um"} <= set(predicted["quantity"])
    assert len(experiment.read_table("fit/history")) == 4
