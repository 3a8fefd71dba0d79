"""Tests of labloop.track: recovery, divisions, probabilities, constraints, sampling, input."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.synth import SynthConfig, simulate_cells
from labloop.track import (
    CandidateSettings,
    DetectionNoise,
    MarginalSettings,
    TrackSettings,
    perturb_detections,
    prepare,
    sample_lineages,
    track,
    track_probabilities,
)
from labloop.track.costs import EnergyCosts
from labloop.track.marginals import belief_propagation
from labloop.track.solve import solve_map

RADIUS_UM = 3.0


def _frame(t: int, ys: list[float], xs: list[float] | None = None) -> pd.DataFrame:
    xs = [0.0] * len(ys) if xs is None else xs
    return pd.DataFrame({"t": t, "z": 0.0, "y": ys, "x": xs})


@pytest.fixture(scope="module")
def noisy_movie() -> tuple[Lineage, pd.DataFrame]:
    """A small 3D simulated movie with dividing cells and realistic detection errors."""
    truth = simulate_cells(SynthConfig(frames=20, shape=(20, 80, 80), voxel_size_um=(1, .5, .5),
                                       n_cells=40, cycle_mean_h=2.0, seed=3))
    detections = perturb_detections(truth, DetectionNoise(miss_rate=0.01, spurious_rate=0.01),
                                    seed=5)
    return truth, detections


@pytest.fixture(scope="module")
def tracked(noisy_movie: tuple[Lineage, pd.DataFrame]) -> Lineage:
    return track(noisy_movie[1].drop(columns="truth_node"), frame_interval_h=0.25)


def test_noisy_movie_is_recovered(noisy_movie, tracked):
    from labloop.evaluate import tracking_metrics

    truth, _ = noisy_movie
    scores = tracking_metrics(truth, tracked, RADIUS_UM)
    assert scores["edge_f1"] >= 0.95
    assert truth.n_divisions > 3
    assert scores["division_f1_buffer1"] >= 0.6


def test_probabilities_are_valid(tracked):
    p = tracked.edges["probability"].to_numpy()
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(tracked.edges["error_probability"], 1 - p)
    d = tracked.nodes["division_probability"].to_numpy()
    assert np.all((d >= 0) & (d <= 1))
    assert tracked.nodes.loc[tracked.divisions, "division_probability"].mean() > d.mean()


def test_constraints_hold(tracked):
    assert tracked.out_degree().max() <= 2
    assert not tracked.edges["target"].duplicated().any()
    dt = (tracked.nodes.loc[tracked.edges["target"], "t"].to_numpy()
          - tracked.nodes.loc[tracked.edges["source"], "t"].to_numpy())
    assert np.all(dt == 1)


def test_hand_made_division_is_found():
    parts = [_frame(0, [0.0, 20.0]), _frame(1, [0.2, 20.1]), _frame(2, [0.3, 20.2]),
             _frame(3, [-2.0, 2.5, 20.3]), _frame(4, [-2.6, 3.0, 20.4]),
             _frame(5, [-3.0, 3.4, 20.5])]
    detections = pd.concat(parts, ignore_index=True)
    lineage = track(detections, frame_interval_h=0.1)
    assert lineage.n_divisions == 1
    mother = lineage.divisions[0]
    assert lineage.nodes.loc[mother, "t"] == 2
    assert lineage.n_edges == 13
    tracks = track_probabilities(lineage)
    assert len(tracks) == 4
    assert np.all(tracks["lineage_probability"] <= tracks["probability"] + 1e-12)


def test_ambiguous_crossing_is_less_certain_than_an_isolated_cell():
    rows = []
    grid = [(float(y), float(x)) for y in (20, 30, 40) for x in (-10, 0, 10)]
    for t in range(6):
        # two cells approach along y, touch at t = 3 and leave along x (which went
        # where is ambiguous); nine cells sit 10 µm apart
        gap = abs(t - 3) * 3.0 + 0.5
        pair_y = [-gap / 2, gap / 2] if t <= 3 else [0.0, 0.0]
        pair_x = [0.0, 0.0] if t <= 3 else [-gap / 2, gap / 2]
        ys = pair_y + [g[0] for g in grid]
        xs = pair_x + [g[1] for g in grid]
        rows.append(_frame(t, ys, xs))
    no_drift = TrackSettings(candidates=CandidateSettings(drift_correction=False))
    lineage = track(pd.concat(rows, ignore_index=True), settings=no_drift)
    nodes, edges = lineage.nodes, lineage.edges
    isolated = nodes.loc[edges["source"], "y"].to_numpy() > 15
    crossing = nodes.loc[edges["source"], "t"].isin([2, 3]).to_numpy() & ~isolated
    assert edges["probability"][crossing].min() < edges["probability"][isolated].min() - 0.05


def test_tracking_is_deterministic(noisy_movie):
    detections = noisy_movie[1].drop(columns="truth_node")
    first = track(detections)
    second = track(detections.sample(frac=1.0, random_state=0))  # unsorted rows
    a = first.edges.sort_values(["source", "target"]).reset_index(drop=True)
    b = second.edges.sort_values(["source", "target"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_sampling_is_seeded_and_valid(noisy_movie):
    detections = noisy_movie[1].drop(columns="truth_node")
    problem = prepare(detections)
    first = sample_lineages(problem, 3, seed=7)
    again = sample_lineages(problem, 3, seed=7)
    assert len(first) == 3
    keys = [frozenset(zip(s.edges["source"], s.edges["target"], strict=True)) for s in first]
    assert keys == [frozenset(zip(s.edges["source"], s.edges["target"], strict=True))
                    for s in again]
    assert len(set(keys)) > 1
    for sample in first:
        assert sample.out_degree().max() <= 2
    assert sample_lineages(problem, 0, seed=1) == []


def test_samples_lose_map_events_as_often_as_their_error_probabilities(noisy_movie):
    """Perturb-and-MAP at the fitted noise scale drops the MAP lineage's links and divisions
    about as often as their calibrated error probabilities say; unscaled (s = 1) it drops
    links far more often."""
    from labloop.track.api import marginals_of
    from labloop.track.sampling import expected_lost_events, lost_events, perturbed_solutions

    problem = prepare(noisy_movie[1].drop(columns="truth_node"))
    reference = solve_map(problem.cand.source, problem.cand.target, problem.det.n,
                          problem.costs, problem.settings.solver)
    expected_links, expected_divisions = expected_lost_events(problem, reference,
                                                              marginals_of(problem))
    assert expected_links > 3 and expected_divisions > 3
    links, divisions = lost_events(reference, perturbed_solutions(problem, 8, seed=3))
    unscaled_links, _ = lost_events(reference, perturbed_solutions(problem, 8, seed=3,
                                                                   noise_scale=1.0))
    assert problem.model.sampling_noise_scale < 1.0
    assert 0.5 * expected_links < links < 2.0 * expected_links
    assert 0.5 * expected_divisions < divisions < 2.0 * expected_divisions
    assert unscaled_links > 1.5 * links


def _brute_force_marginals(source, target, n, costs: EnergyCosts, temperature):
    """Exact marginals by enumerating every lineage of a tiny problem."""
    e = len(source)
    z, link, division = 0.0, np.zeros(e), np.zeros(n)
    for x in itertools.product((0, 1), repeat=e):
        x = np.array(x)
        parents = np.bincount(target, x, minlength=n)
        children = np.bincount(source, x, minlength=n)
        if parents.max(initial=0) > 1 or children.max(initial=0) > 2:
            continue
        pair_cost = {}
        for k, v in enumerate(costs.division_nodes):
            if x[costs.division_links[k]].all() and children[v] == 2:
                pair_cost[v] = costs.division[k]
        if any(children[v] == 2 and v not in pair_cost for v in range(n)):
            continue
        energy = costs.link @ x
        weight = 1.0
        for v in range(n):
            c_div = pair_cost.get(v, 0.0)
            a, d, f = costs.appear[v], costs.disappear[v], costs.false_positive[v]
            if parents[v] == 0 and children[v] == 0:
                w = np.exp(-f / temperature) + np.exp(-(a + d) / temperature)
            else:
                w = np.exp(-((a if parents[v] == 0 else 0) + (d if children[v] == 0 else 0)
                             + (c_div if children[v] == 2 else 0)) / temperature)
            weight *= w
        weight *= np.exp(-energy / temperature)
        z += weight
        link += weight * x
        division += weight * (children == 2)
    return link / z, division / z


def test_belief_propagation_is_exact_on_a_tree():
    # node 0 (t0) → candidates 1, 2 (t1); node 1 → 3 (t2); node 2 → 4 (t2)
    source, target = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 4])
    rng = np.random.default_rng(0)
    costs = EnergyCosts(link=rng.normal(size=4), appear=rng.uniform(0, 3, 5),
                        disappear=rng.uniform(0, 3, 5), false_positive=rng.uniform(0, 3, 5),
                        division_nodes=np.array([0]), division_links=np.array([[0, 1]]),
                        division=np.array([0.7]))
    for temperature in (1.0, 2.0):
        bp = belief_propagation(source, target, 5, costs, temperature,
                                MarginalSettings(iterations=200, damping=0.0))
        link, division = _brute_force_marginals(source, target, 5, costs, temperature)
        np.testing.assert_allclose(bp.link, link, atol=1e-8)
        np.testing.assert_allclose(bp.division[0], division[0], atol=1e-8)
        np.testing.assert_allclose(bp.division_pair[0], division[0], atol=1e-8)


def test_map_solution_respects_constraints():
    source, target = np.array([0, 0, 0, 1]), np.array([2, 3, 4, 4])
    costs = EnergyCosts(link=np.full(4, -5.0), appear=np.full(5, 3.0),
                        disappear=np.full(5, 3.0), false_positive=np.full(5, 3.0),
                        division_nodes=np.array([0]), division_links=np.array([[0, 1]]),
                        division=np.array([0.0]))
    from labloop.track.settings import SolverSettings

    solution = solve_map(source, target, 5, costs, SolverSettings())
    children = np.bincount(source[solution.link], minlength=5)
    parents = np.bincount(target[solution.link], minlength=5)
    assert children.max() <= 2 and parents.max() <= 1
    assert children[0] == 2 and children[1] == 1  # a division, and node 1 keeps node 4


# ----------------------------------------------------------------- bad input
def test_empty_and_single_frame_inputs_give_trivial_lineages():
    empty = track(pd.DataFrame({"t": [], "z": [], "y": [], "x": []}))
    assert empty.n_nodes == 0 and empty.n_edges == 0
    single = track(_frame(4, [0.0, 5.0, 10.0]))
    assert single.n_nodes == 3 and single.n_edges == 0


def test_an_empty_frame_is_bridged_by_an_interpolated_nucleus_only_with_gap_closing():
    detections = pd.concat([_frame(0, [0.0]), _frame(1, [0.1]), _frame(3, [0.2]),
                            _frame(4, [0.3])], ignore_index=True)
    bridged = track(detections)
    assert bridged.n_nodes == 5 and bridged.n_edges == 4
    filled = bridged.nodes[bridged.nodes["interpolated"]]
    assert filled["t"].tolist() == [2] and filled["y"].iloc[0] == pytest.approx(0.15)
    assert (bridged.edges["frames"] == 1).all()
    kept = track(detections, settings=TrackSettings(fill_gaps=False))
    assert kept.n_nodes == 4 and kept.edges["frames"].tolist().count(2) == 1
    split = track(detections, settings=TrackSettings(
        candidates=CandidateSettings(gap_closing=False)))
    assert split.n_nodes == 4 and split.n_edges == 2


@pytest.mark.parametrize("problem, message", [
    ("nan", "NaN"), ("duplicate", "repeat"), ("fraction", "whole"), ("missing", "lack"),
])
def test_bad_detections_raise_clear_errors(problem, message):
    detections = pd.concat([_frame(0, [0.0, 5.0]), _frame(1, [0.1, 5.1])], ignore_index=True)
    if problem == "nan":
        detections.loc[1, "y"] = np.nan
    elif problem == "duplicate":
        detections = pd.concat([detections, detections.iloc[[0]]], ignore_index=True)
    elif problem == "fraction":
        detections["t"] = detections["t"] + 0.5
    else:
        detections = detections.drop(columns="x")
    with pytest.raises(InputError, match=message):
        track(detections)


def test_track_store_writes_tracks(tmp_path, noisy_movie):
    from labloop.io.images import as_image
    from labloop.io.store import create_experiment, open_experiment
    from labloop.track import track_store

    detections = noisy_movie[1].drop(columns="truth_node")
    image = as_image(np.zeros((20, 2, 8, 8), dtype=np.uint16), (10.0, 10.0, 10.0), 0.25)
    experiment = create_experiment(tmp_path / "exp.zarr", image)
    experiment.write_detections(detections)
    lineage = track_store(tmp_path / "exp.zarr")
    stored = open_experiment(tmp_path / "exp.zarr").read_tracks()
    assert stored.n_edges == lineage.n_edges
    assert "error_probability" in stored.edges.columns


# ----------------------------------------------------------------- real data
def test_real_embryo_slice_with_noise(ce_geff_path):
    from labloop.evaluate import tracking_metrics

    truth = Lineage.from_geff(ce_geff_path, voxel_size_um=(1.0, 0.09, 0.09),
                              frame_interval_h=1 / 60)
    keep = truth.nodes.index[(truth.nodes["t"] >= 120) & (truth.nodes["t"] < 150)]
    edges = truth.edges[truth.edges["source"].isin(keep) & truth.edges["target"].isin(keep)]
    truth = Lineage(truth.nodes.loc[keep], edges[["source", "target"]], 1 / 60)
    detections = perturb_detections(truth, DetectionNoise(), seed=0)
    lineage = track(detections.drop(columns="truth_node"), frame_interval_h=1 / 60)
    scores = tracking_metrics(truth, lineage, RADIUS_UM)
    assert scores["edge_f1"] >= 0.95


def test_gap_candidates_are_right_only_over_a_missed_middle():
    from labloop.track.training import candidate_truth

    nodes = pd.DataFrame({"t": [0, 1, 2], "z": 0.0, "y": [0.0, 0.1, 0.2], "x": 0.0})
    truth = Lineage(nodes, pd.DataFrame({"source": [0, 1], "target": [1, 2]}))
    source, target, dt = np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([1, 2, 1])
    all_detected = candidate_truth(np.array([0, 1, 2]), source, target, dt, truth)
    assert all_detected.tolist() == [True, False, True]
    # the middle nucleus missed: detection rows 0, 1 are truth nodes 0 and 2
    middle_missed = candidate_truth(np.array([0, 2]), np.array([0]), np.array([1]),
                                    np.array([2]), truth)
    assert middle_missed.tolist() == [True]


def test_gap_closing_bridges_misses_and_never_skips_a_detected_nucleus(noisy_movie):
    from labloop.evaluate import tracking_metrics

    truth, detections = noisy_movie
    settings = TrackSettings(candidates=CandidateSettings(gap_closing=True), fill_gaps=False)
    lineage = track(detections.drop(columns="truth_node"), frame_interval_h=0.25,
                    settings=settings)
    edges = lineage.edges
    gaps = edges[edges["frames"] == 2]
    truth_of = detections["truth_node"]
    parents = truth.parents()
    detected = set(truth_of[truth_of >= 0])
    skipped_detected = [parents.get(truth_of[t], -1) in detected for t in gaps["target"]]
    missed = int((~truth.nodes.index.isin(list(detected))).sum())
    assert 0 < len(gaps) <= 2 * missed
    assert np.mean(skipped_detected) <= 0.05  # the model before the label fix: 0.13
    assert tracking_metrics(truth, lineage, RADIUS_UM)["edge_f1"] >= 0.93


def test_fill_gaps_interpolates_missed_nuclei_and_collapse_restores_the_gap():
    from labloop.track.gaps import collapse_gaps, fill_gaps, gap_ends

    nodes = pd.DataFrame({"t": [0, 3, 0, 1, 1], "z": 0.0, "y": [0.0, 3.0, 10.0, 10.0, 13.0],
                          "x": [0.0, 6.0, 0.0, 0.0, 0.0]}, index=[10, 11, 20, 21, 22])
    lineage = Lineage(nodes, pd.DataFrame({"source": [10, 20, 20], "target": [11, 21, 22],
                                           "probability": [0.8, 0.9, 0.7]}), 0.25)
    filled = fill_gaps(lineage, first_id=100)
    new = filled.nodes[filled.nodes["interpolated"]]
    assert new.index.tolist() == [100, 101] and new["t"].tolist() == [1, 2]
    np.testing.assert_allclose(new[["y", "x"]].to_numpy(), [[1.0, 2.0], [2.0, 4.0]])
    np.testing.assert_allclose(new["score"], 0.8)  # the gap link's probability
    chain = filled.edges[filled.edges["probability"] == 0.8]
    assert list(zip(chain["source"], chain["target"], strict=True)) == [(10, 100), (100, 101),
                                                                      (101, 11)]
    assert filled.n_divisions == 1  # node 20 still divides
    assert gap_ends(filled) == {100: (10, 11), 101: (10, 11)}
    back = collapse_gaps(filled)
    assert set(back.nodes.index) == set(nodes.index)
    pd.testing.assert_frame_equal(
        back.edges.sort_values("target").reset_index(drop=True),
        lineage.edges.sort_values("target").reset_index(drop=True))


def test_links_over_a_missed_frame_get_their_own_recalibration(noisy_movie):
    from dataclasses import replace

    from labloop.track.api import marginals_of
    from labloop.track.output import calibrated_link_probability

    problem = prepare(noisy_movie[1].drop(columns="truth_node"))  # gap closing by default
    gap = problem.cand.dt == 2
    assert gap.any() and problem.model.gap_link_recalibration
    marginals = marginals_of(problem)
    shipped = calibrated_link_probability(problem, marginals)
    identity = replace(problem.model, gap_link_recalibration={"x": [0.0, 1.0], "y": [0.0, 1.0]})
    mapped = calibrated_link_probability(replace(problem, model=identity), marginals)
    np.testing.assert_allclose(mapped[gap], marginals.link[gap])
    np.testing.assert_allclose(mapped[~gap], shipped[~gap])
    assert not np.allclose(shipped[gap], marginals.link[gap])


def test_isotonic_map_pools_violators_by_weight():
    from labloop.track.training import isotonic_map

    p = np.array([0.4, 0.1, 0.3, 0.2])  # any order
    y = np.array([True, False, False, True])
    plain = isotonic_map(p, y)
    np.testing.assert_allclose(plain["x"], [0.0, 0.1, 0.25, 0.4, 1.0])
    np.testing.assert_allclose(plain["y"], [0.0, 0.0, 0.5, 1.0, 1.0])
    # the wrong call at 0.3 weighs three times: the pooled block is right 1 time in 4
    weighted = isotonic_map(p, y, weights=np.array([1.0, 1.0, 3.0, 1.0]))
    np.testing.assert_allclose(weighted["x"], [0.0, 0.1, 0.275, 0.4, 1.0])
    np.testing.assert_allclose(weighted["y"], [0.0, 0.0, 0.25, 1.0, 1.0])
    assert isotonic_map(np.zeros(0), np.zeros(0, dtype=bool)) == {"x": [0.0, 1.0],
                                                                "y": [0.0, 1.0]}
