"""Tests of labloop.synth: simulated nuclei time-lapses with ground truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from labloop.errors import InputError
from labloop.synth import (
    SynthConfig,
    measured_snr,
    render_movie,
    render_nuclei,
    restrict_to_fov,
    simulate_cells,
    simulate_movie,
)
from labloop.synth.geometry import fov_bounds_um, nearest_voxel

SMALL = SynthConfig(frames=12, shape=(16, 64, 64), n_cells=25, seed=5)


@pytest.fixture(scope="module")
def movie():
    return simulate_movie(SMALL)


def _positions(nodes: pd.DataFrame) -> np.ndarray:
    return nodes[["z", "y", "x"]].to_numpy()


def _distance_to_border(nodes: pd.DataFrame, config: SynthConfig) -> np.ndarray:
    lower, upper = fov_bounds_um(config.shape, config.voxel_size_um)
    p = _positions(nodes)
    axes = slice(1, 3) if config.is_2d else slice(0, 3)
    return np.minimum(p - lower, upper - p)[:, axes].min(axis=1)


def _children(lineage) -> pd.Series:
    return lineage.edges.groupby("source")["target"].apply(list)


# ------------------------------------------------------------ determinism
def test_same_seed_gives_identical_movie_and_truth(movie):
    again = simulate_movie(SMALL)
    assert again.image.tobytes() == movie.image.tobytes()
    pd.testing.assert_frame_equal(again.truth.nodes, movie.truth.nodes)
    pd.testing.assert_frame_equal(again.truth.edges, movie.truth.edges)


def test_other_seed_gives_other_movie(movie):
    other = simulate_movie(dataclasses.replace(SMALL, seed=6))
    assert other.image.shape == movie.image.shape
    assert np.mean(other.image != movie.image) > 0.5
    first = movie.truth.nodes.query("t == 0")
    first_other = other.truth.nodes.query("t == 0")
    assert not np.allclose(_positions(first)[:10], _positions(first_other)[:10])


def test_movie_metadata(movie):
    assert movie.image.dtype == np.uint16
    assert movie.image.shape == (12, 16, 64, 64)
    assert movie.voxel_size_um == (2.0, 0.5, 0.5)
    assert movie.frame_interval_h == 0.25
    assert movie.truth.frame_interval_h == 0.25
    assert movie.config is SMALL
    assert movie.truth.nodes.index.dtype == np.int64
    assert movie.truth.nodes.index.is_unique
    for column in ("t", "z", "y", "x", "score", "radius_um", "axis_a_um", "axis_b_um",
                   "axis_c_um", "quat_x", "quat_y", "quat_z", "quat_w", "brightness",
                   "brightness_boost"):
        assert column in movie.truth.nodes.columns
    assert (movie.truth.nodes["score"] == 1.0).all()


# ------------------------------------------------------------ truth geometry
def test_truth_nodes_inside_field_of_view(movie):
    nodes = movie.truth.nodes
    lower, upper = fov_bounds_um(SMALL.shape, SMALL.voxel_size_um)
    assert np.all(_positions(nodes) >= lower)
    assert np.all(_positions(nodes) < upper)
    assert set(nodes["t"]) == set(range(SMALL.frames))
    assert nodes.query("t == 0").shape[0] == pytest.approx(SMALL.n_cells, abs=3)


def test_nuclei_have_varied_size_shape_and_brightness(movie):
    nodes = movie.truth.nodes
    axes = nodes[["axis_a_um", "axis_b_um", "axis_c_um"]].to_numpy()
    aspect = axes.max(axis=1) / axes.min(axis=1)
    assert aspect.max() <= SMALL.aspect_max + 1e-9
    assert aspect.max() > 1.2
    volume_radius = np.cbrt(np.prod(axes, axis=1))
    np.testing.assert_allclose(volume_radius, nodes["radius_um"], rtol=1e-9)
    assert 2.5 < nodes["radius_um"].mean() < 3.7  # full-grown mean 3.5 µm, born at 0.79×
    assert nodes["radius_um"].std() > 0.2
    quats = nodes[["quat_x", "quat_y", "quat_z", "quat_w"]].to_numpy()
    np.testing.assert_allclose(np.linalg.norm(quats, axis=1), 1.0)
    assert 0.85 < nodes["brightness"].mean() < 1.15
    assert nodes["brightness"].std() > 0.1


def test_nuclei_do_not_overlap(movie):
    from scipy.spatial.distance import pdist

    nodes = movie.truth.nodes
    worst = np.inf
    for _, frame in nodes.groupby("t"):
        gaps = pdist(_positions(frame))
        radii = frame["radius_um"].to_numpy()
        sums = pdist(radii[:, None], lambda a, b: a[0] + b[0])
        worst = min(worst, float(np.min(gaps / sums)))
    assert worst > 0.9  # centres at least 0.9 × (r_i + r_j) apart


# ------------------------------------------------------------ divisions
def test_divisions_put_half_size_daughters_two_radii_apart(movie):
    truth = movie.truth
    nodes = truth.nodes
    assert truth.n_divisions >= 3
    children = _children(truth)
    for mother in truth.divisions:
        a, b = children[mother]
        assert nodes.loc[a, "t"] == nodes.loc[b, "t"] == nodes.loc[mother, "t"] + 1
        distance = np.linalg.norm(_positions(nodes.loc[[a]]) - _positions(nodes.loc[[b]]))
        two_radii = nodes.loc[a, "radius_um"] + nodes.loc[b, "radius_um"]
        assert 0.9 < distance / two_radii < 1.5
        ratio = nodes.loc[[a, b], "volume_um3"].to_numpy() / nodes.loc[mother, "volume_um3"]
        np.testing.assert_allclose(ratio, 0.5, atol=0.02)
        assert (nodes.loc[[a, b], "brightness_boost"] > 1.5).all()
        assert nodes.loc[mother, "brightness_boost"] < 1.2


def _sister_distance_growth(config: SynthConfig) -> np.ndarray:
    """Per division: sisters' distance two frames after birth minus at birth (µm),
    over the daughter radius."""
    truth = simulate_cells(config)
    nodes, children = truth.nodes, _children(truth)
    growth = []
    for mother in truth.divisions:
        a, b = children[mother]
        later_a, later_b = children.get(a), children.get(b)
        if later_a is None or later_b is None:
            continue
        later_a, later_b = children.get(later_a[0]), children.get(later_b[0])
        if later_a is None or later_b is None or len(later_a) > 1 or len(later_b) > 1:
            continue
        birth = np.linalg.norm(_positions(nodes.loc[[a]]) - _positions(nodes.loc[[b]]))
        later = np.linalg.norm(_positions(nodes.loc[later_a]) - _positions(nodes.loc[later_b]))
        growth.append((later - birth) / nodes.loc[a, "radius_um"])
    return np.array(growth)


def test_sisters_keep_moving_apart_for_the_separation_time():
    # slow cells and no repulsion: the sisters' distance changes by the separation alone
    base = SynthConfig(frames=10, shape=(16, 64, 64), n_cells=15, seed=2, cycle_mean_h=1.0,
                       speed_um_per_h=0.5, cycle_shape=20.0, repulsion_rate_per_h=0.0)
    still = _sister_distance_growth(base)
    apart = _sister_distance_growth(dataclasses.replace(
        base, sister_separation_radii=1.0, sister_separation_h=2 * base.frame_interval_h))
    assert len(still) >= 10 and len(apart) >= 10
    # each daughter moves 1 daughter radius farther from the other's side: +2 radii
    assert np.median(apart) - np.median(still) == pytest.approx(2.0, abs=0.2)


def test_division_boost_decays_within_two_frames(movie):
    truth = movie.truth
    children = _children(truth)
    parents = truth.parents()
    degree = truth.out_degree()
    boosts = []
    for mother in truth.divisions:
        node = children[mother][0]
        trace = [truth.nodes.loc[node, "brightness_boost"]]
        while degree[node] == 1 and len(trace) < 4:
            node = _children(truth)[node][0]
            assert parents[node] >= 0
            trace.append(truth.nodes.loc[node, "brightness_boost"])
        boosts.append(trace)
    assert any(len(trace) >= 3 for trace in boosts)
    for trace in boosts:
        assert np.all(np.diff(trace) < 0)
        if len(trace) >= 3:
            assert trace[2] < 1.1


def test_no_node_has_more_than_two_children_or_one_parent(movie):
    truth = movie.truth
    assert truth.out_degree().max() <= 2
    assert not truth.edges["target"].duplicated().any()
    t = truth.nodes["t"]
    np.testing.assert_array_equal(t[truth.edges["target"]].to_numpy(),
                                  t[truth.edges["source"]].to_numpy() + 1)


# ------------------------------------------------------------ entering / leaving
def test_cells_leave_and_enter_the_field_of_view(movie):
    truth = movie.truth
    nodes = truth.nodes
    last = SMALL.frames - 1
    starts = nodes[(truth.parents() < 0).to_numpy() & (nodes["t"] > 0).to_numpy()]
    ends = nodes[(truth.out_degree() == 0).to_numpy() & (nodes["t"] < last).to_numpy()]
    assert len(starts) >= 2
    assert len(ends) >= 2
    # they appear and vanish at the border, not in the middle of the image
    assert _distance_to_border(starts, SMALL).max() < 3.0
    assert _distance_to_border(ends, SMALL).max() < 3.0


def test_cell_that_returns_is_not_linked_across_the_gap():
    config = SynthConfig(frames=30, shape=(1, 96, 96), n_cells=12, speed_um_per_h=8.0,
                         persistence_h=0.25, seed=2)
    full = simulate_cells(config, include_margin=True)
    truth = restrict_to_fov(full)
    nodes = full.nodes
    # find a cell that is in view, out of view, then in view again
    returning = [cell for cell, rows in nodes.groupby("cell_id")
                 if "".join("1" if v else "0" for v in rows.sort_values("t")["in_fov"])
                 .strip("0").count("0") > 0]
    assert returning, "the scenario should contain a cell that leaves and returns"
    parents = truth.parents()
    for cell in returning:
        rows = truth.nodes[truth.nodes["cell_id"] == cell].sort_values("t")
        gaps = np.flatnonzero(np.diff(rows["t"].to_numpy()) > 1)
        for g in gaps:
            assert parents[rows.index[g + 1]] < 0
    assert set(truth.edges["source"]).issubset(truth.nodes.index)


# ------------------------------------------------------------ density and motion
def test_density_knob_raises_node_count():
    sparse = SynthConfig(frames=4, shape=(8, 64, 64), density=0.5, seed=1)
    dense = dataclasses.replace(sparse, density=1.5)
    assert sparse.initial_cells == round(0.5 * 8 * 2 * 64 * 0.5 * 64 * 0.5 / 1000)
    assert dense.initial_cells > 2.5 * sparse.initial_cells
    assert simulate_cells(dense).n_nodes > 2.5 * simulate_cells(sparse).n_nodes


def test_density_and_cell_count_are_two_views_of_one_knob():
    by_count = SynthConfig(n_cells=40)
    by_density = SynthConfig(density=by_count.cell_density)
    assert by_density.initial_cells == 40
    assert by_density.cell_density == pytest.approx(by_count.cell_density)


def test_step_length_follows_speed_knob():
    """RMS frame-to-frame step of an Ornstein–Uhlenbeck walk (no crowding)."""
    speeds = (2.0, 6.0)
    steps = []
    for speed in speeds:
        config = SynthConfig(frames=20, shape=(32, 128, 128), n_cells=15, speed_um_per_h=speed,
                             cycle_mean_h=1000.0, seed=4)
        truth = simulate_cells(config)
        p = _positions(truth.nodes)
        index = truth.nodes.index
        source = index.get_indexer(truth.edges["source"])
        target = index.get_indexer(truth.edges["target"])
        steps.append(np.sqrt(np.mean(np.sum((p[target] - p[source]) ** 2, axis=1))))
        dt, tau = config.frame_interval_h, config.persistence_h
        expected = speed * tau * np.sqrt(2 * (dt / tau - 1 + np.exp(-dt / tau)))
        assert steps[-1] == pytest.approx(expected, rel=0.25)
    assert steps[1] / steps[0] == pytest.approx(3.0, rel=0.25)


# ------------------------------------------------------------ rendering and SNR
def _measured_snr(config: SynthConfig) -> tuple[float, float, np.ndarray, float, float]:
    cells = simulate_cells(config, rng=11, include_margin=True)
    shape = (config.frames, *config.shape)
    image = render_movie(cells, shape, config.voxel_size_um, config, rng=12).astype(np.float64)
    clean = render_nuclei(cells, shape, config.voxel_size_um, config)
    background = image[clean < 1e-3]
    level, noise = float(np.mean(background)), float(np.std(background))
    truth = restrict_to_fov(cells)
    index = nearest_voxel(_positions(truth.nodes), config.voxel_size_um)
    centres = image[truth.nodes["t"].to_numpy(), index[:, 0], index[:, 1], index[:, 2]]
    return (float(np.mean(centres)) - level) / noise, noise, centres, level, float(len(centres))


@pytest.mark.parametrize("snr", [2.0, 8.0])
def test_measured_snr_matches_knob(snr):
    config = SynthConfig(frames=8, shape=(16, 96, 96), n_cells=30, snr=snr,
                         background_gradient=0.0, seed=3)
    measured, noise, _, _, n = _measured_snr(config)
    assert n > 150
    assert measured == pytest.approx(snr, rel=0.15)
    expected_noise = config.gain_adu_per_photon * np.sqrt(
        config.background_photons + config.read_noise**2)
    assert noise == pytest.approx(expected_noise, rel=0.05)


@pytest.mark.parametrize("snr", [2.0, 8.0])
def test_snr_measured_at_the_centres_alone_reads_the_knob(snr):
    config = SynthConfig(frames=6, shape=(16, 96, 96), n_cells=30, snr=snr, seed=4)
    cells = simulate_cells(config, rng=11, include_margin=True)
    image = render_movie(cells, (config.frames, *config.shape), config.voxel_size_um,
                         config, rng=12)
    nodes = restrict_to_fov(cells).nodes
    centres = [_positions(nodes[nodes["t"] == t]) for t in range(config.frames)]
    # no rendering-free mask here: the background is what lies 8 µm from every centre
    assert measured_snr(image, centres, config.voxel_size_um) == pytest.approx(snr, rel=0.1)
    with pytest.raises(InputError, match="too few nuclei"):
        measured_snr(image[:1], [np.zeros((0, 3))], config.voxel_size_um)


def test_centres_clearly_brighter_than_background_at_high_snr():
    config = SynthConfig(frames=4, shape=(16, 96, 96), n_cells=30, snr=10.0,
                         background_gradient=0.0, seed=8)
    _, noise, centres, level, _ = _measured_snr(config)
    assert np.median(centres) > level + 6 * noise
    assert np.mean(centres > level + 3 * noise) > 0.95


def test_background_gradient_spans_requested_range():
    nodes = pd.DataFrame({"t": [], "z": [], "y": [], "x": []})
    config = SynthConfig(background_photons=1000.0, read_noise=0.0, background_gradient=0.5,
                         offset_adu=0.0)
    image = render_movie(nodes, (1, 4, 64, 64), (2.0, 0.5, 0.5), config, rng=0)
    smooth = image[0].astype(np.float64).mean(axis=0)
    assert np.mean(image) == pytest.approx(1000.0, rel=0.02)
    spread = (np.percentile(smooth, 99) - np.percentile(smooth, 1)) / 1000.0
    assert 0.3 < spread < 0.55


def test_render_positions_from_another_simulator():
    """Only t, z, y, x are needed: spheres of the default radius at those points."""
    nodes = pd.DataFrame({"t": [0, 1], "z": [8.0, 8.0], "y": [10.0, 20.0], "x": [10.0, 5.0]})
    config = SynthConfig(snr=20.0, background_gradient=0.0)
    image = render_movie(nodes, (2, 8, 64, 64), (2.0, 0.5, 0.5), config, rng=0)
    assert image.shape == (2, 8, 64, 64)
    for t, (z, y, x) in enumerate(_positions(nodes)):
        peak = image[t, int(z / 2), int(y / 0.5), int(x / 0.5)]
        far = image[t, int(z / 2), 60, 60]
        assert peak > far + 40
    again = render_movie(nodes, (2, 8, 64, 64), (2.0, 0.5, 0.5), config, rng=0)
    assert again.tobytes() == image.tobytes()


def test_ellipsoid_orientation_is_rendered():
    """A nucleus elongated along x is wider in x than in y."""
    nodes = pd.DataFrame({"t": [0], "z": [0.0], "y": [16.0], "x": [16.0],
                          "axis_a_um": [6.0], "axis_b_um": [3.0], "axis_c_um": [3.0],
                          "quat_x": [0.0], "quat_y": [0.0], "quat_z": [0.0], "quat_w": [1.0]})
    clean = render_nuclei(nodes, (1, 1, 64, 64), (1.0, 0.5, 0.5), SynthConfig())
    profile_x = clean[0, 0, 32, :] > 0.5
    profile_y = clean[0, 0, :, 32] > 0.5
    assert profile_x.sum() == pytest.approx(24, abs=2)  # 2 × 6 µm / 0.5 µm
    assert profile_y.sum() == pytest.approx(12, abs=2)
    rotated = nodes.assign(quat_z=[np.sin(np.pi / 4)], quat_w=[np.cos(np.pi / 4)])
    clean = render_nuclei(rotated, (1, 1, 64, 64), (1.0, 0.5, 0.5), SynthConfig())
    assert (clean[0, 0, :, 32] > 0.5).sum() == pytest.approx(24, abs=2)


def test_2d_movie():
    config = SynthConfig(frames=8, shape=(1, 96, 96), n_cells=20, seed=7,
                         background_gradient=0.0)
    movie = simulate_movie(config)
    assert movie.image.shape == (8, 1, 96, 96)
    assert movie.image.dtype == np.uint16
    nodes = movie.truth.nodes
    assert (nodes["z"] == 0.0).all()
    assert movie.truth.n_edges > 0.8 * len(nodes)
    # nuclei are ellipses in the plane: their c semi-axis lies along z
    np.testing.assert_allclose(nodes[["quat_x", "quat_y"]].to_numpy(), 0.0, atol=1e-12)
    measured, *_ = _measured_snr(config)
    assert measured == pytest.approx(config.snr, rel=0.15)


# ------------------------------------------------------------ validation
@pytest.mark.parametrize("changes, message", [
    ({"snr": -1.0}, "snr"),
    ({"snr": 0.0}, "snr"),
    ({"shape": (64, 64)}, "3 axes"),
    ({"shape": (0, 64, 64)}, "shape"),
    ({"frames": 0}, "frames"),
    ({"voxel_size_um": (2.0, -0.5, 0.5)}, "voxel_size_um"),
    ({"frame_interval_h": 0.0}, "frame_interval_h"),
    ({"n_cells": -3}, "n_cells"),
    ({"density": 50.0}, "fill"),
    ({"background_gradient": 3.0}, "background_gradient"),
    ({"read_noise": float("nan")}, "read_noise"),
    ({"aspect_max": 0.5}, "aspect_max"),
    ({"sister_separation_h": 0.0}, "sister_separation_h"),
    ({"sister_separation_radii": -0.5}, "sister_separation_radii"),
    ({"background_photons": 0.0, "read_noise": 0.0}, "undefined"),
])
def test_bad_config_raises_input_error(changes, message):
    with pytest.raises(InputError, match=message):
        SynthConfig(**changes)


def test_bad_render_arguments_raise_input_error():
    nodes = pd.DataFrame({"t": [0], "z": [0.0], "y": [1.0], "x": [1.0]})
    with pytest.raises(InputError, match="T, Z, Y, X"):
        render_movie(nodes, (8, 32, 32), (1.0, 0.5, 0.5))
    with pytest.raises(InputError, match="voxel_size_um"):
        render_movie(nodes, (1, 8, 32, 32), (0.5, 0.5))
    with pytest.raises(InputError, match="column"):
        render_movie(nodes.drop(columns="x"), (1, 8, 32, 32), (1.0, 0.5, 0.5))
    with pytest.raises(InputError, match="NaN"):
        render_movie(nodes.assign(y=[np.nan]), (1, 8, 32, 32), (1.0, 0.5, 0.5))
