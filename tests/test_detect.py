"""Tests of the U-Net nucleus detector (labloop.detect)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from labloop.detect import (
    DetectSettings,
    PeakSettings,
    ScoreCalibration,
    TrainSettings,
    default_model_path,
    detect,
    detect_store,
    expected_calibration_error,
    find_peaks,
    load_model,
    match_points,
    train_detector,
)
from labloop.detect.calibration import pool_adjacent_violators
from labloop.detect.heatmap import centre_heatmap
from labloop.detect.matching import f1_counts
from labloop.detect.resample import Normalisation, WorkingGrid, to_working
from labloop.detect.synthetic import AugmentSettings
from labloop.detect.training import labelled_candidates, synthetic_samples
from labloop.errors import InputError
from labloop.synth import SynthConfig, simulate_movie

VOXEL = (2.0, 0.5, 0.5)
RADIUS_UM = 3.5


@pytest.fixture(scope="module")
def model():
    assert default_model_path().exists(), "the shipped model must be in models/"
    return load_model()


@pytest.fixture(scope="module")
def movie():
    return simulate_movie(SynthConfig(frames=2, shape=(16, 128, 128), voxel_size_um=VOXEL,
                                      n_cells=30, snr=6.0, seed=12345))


def f1(truth: pd.DataFrame, found: pd.DataFrame, radius: float = RADIUS_UM) -> float:
    n_true = n_found = n_matched = 0
    for t in set(truth["t"]) | set(found["t"]):
        a = truth.loc[truth["t"] == t, ["z", "y", "x"]].to_numpy()
        b = found.loc[found["t"] == t, ["z", "y", "x"]].to_numpy()
        n_true, n_found = n_true + len(a), n_found + len(b)
        n_matched += len(match_points(a, b, radius)[0])
    return f1_counts(n_true, n_found, n_matched)[2]


# --------------------------------------------------------------- detection
def test_shipped_model_finds_nuclei(model, movie):
    found = detect(movie.image, movie.voxel_size_um, model=model, progress=False)
    assert list(found.columns) == ["t", "z", "y", "x", "score", "intensity"]
    assert f1(movie.truth.nodes, found) >= 0.9
    assert found["score"].between(0.0, 1.0).all()
    assert (found["score"] >= DetectSettings().min_score).all()
    assert set(found["t"]) <= {0, 1}


def test_accepts_image_and_dask(model, movie):
    import dask.array as da

    from labloop.io.images import as_image

    image = as_image(da.from_array(movie.image), movie.voxel_size_um)
    from_image = detect(image, model=model, progress=False, frames=[1])
    from_array = detect(movie.image, movie.voxel_size_um, model=model, progress=False)
    assert set(from_image["t"]) == {1}
    np.testing.assert_allclose(from_image[["z", "y", "x"]].to_numpy(),
                               from_array[from_array["t"] == 1][["z", "y", "x"]].to_numpy())


def test_empty_frame_gives_no_detections(model):
    found = detect(np.zeros((1, 8, 64, 64), np.uint16), VOXEL, model=model, progress=False)
    assert len(found) == 0
    assert list(found.columns) == ["t", "z", "y", "x", "score", "intensity"]


def test_noise_only_frame_gives_almost_no_detections(model):
    noise = np.random.default_rng(0).poisson(110, size=(16, 128, 128)).astype(np.uint16)
    assert len(detect(noise, VOXEL, model=model, progress=False)) <= 2


def test_2d_frames(model):
    movie = simulate_movie(SynthConfig(frames=1, shape=(1, 192, 192), voxel_size_um=(1.0, 0.5,
                                                                                     0.5),
                                       n_cells=40, snr=6.0, seed=54321))
    found = detect(movie.image, movie.voxel_size_um, model=model, progress=False)
    assert (found["z"] == 0.0).all()
    assert f1(movie.truth.nodes, found) >= 0.85
    plane = detect(movie.image[0, 0], movie.voxel_size_um, model=model, progress=False)
    assert len(plane) == len(found)


def test_peak_separation_respected(model, movie):
    separation = 7.0
    found = detect(movie.image, movie.voxel_size_um, model=model, progress=False,
                   min_separation_um=separation, min_score=0.0)
    for _, frame in found.groupby("t"):
        points = frame[["z", "y", "x"]].to_numpy()
        d = np.linalg.norm(points[:, None] - points[None], axis=-1)
        d[np.diag_indices_from(d)] = np.inf
        # sub-voxel refinement may move peaks by at most half a working voxel each
        assert d.min() >= separation - 2.0


def test_find_peaks_min_separation_in_um():
    heat = np.zeros((5, 20, 20), np.float32)
    heat[2, 10, 5], heat[2, 10, 8], heat[2, 10, 16] = 1.0, 0.9, 0.8
    _, heights = find_peaks(heat, (2.0, 1.0, 1.0), PeakSettings(min_separation_um=4.0,
                                                               subvoxel=False))
    np.testing.assert_allclose(heights, [1.0, 0.8])
    _coords, heights = find_peaks(heat, (2.0, 1.0, 1.0), PeakSettings(min_separation_um=2.0))
    assert len(heights) == 3


def test_tiles_match_single_pass(model):
    movie = simulate_movie(SynthConfig(frames=1, shape=(24, 192, 192), voxel_size_um=VOXEL,
                                       n_cells=60, snr=4.0, seed=777))
    whole = detect(movie.image, VOXEL, model=model, progress=False, tile_voxels=2**22)
    tiled = detect(movie.image, VOXEL, model=model, progress=False, tile_voxels=12 * 48 * 48)
    a, _b = match_points(whole[["z", "y", "x"]].to_numpy(), tiled[["z", "y", "x"]].to_numpy(),
                        1.0)
    assert len(a) >= 0.97 * max(len(whole), len(tiled))


def test_anisotropic_and_fine_voxels_agree(model):
    movie = simulate_movie(SynthConfig(frames=1, shape=(12, 64, 64), voxel_size_um=(4.0, 1.0,
                                                                                    1.0),
                                       n_cells=25, snr=6.0, seed=4242))
    found = detect(movie.image, movie.voxel_size_um, model=model, progress=False)
    assert f1(movie.truth.nodes, found) >= 0.85


def test_scores_are_calibrated_on_fresh_data(model):
    # 24 fresh volumes of the training mix; the ECE of a set this size varies with its
    # volumes (shipped model: 0.055 here, 0.015 on 80 others), raw heights give 0.14
    samples = synthetic_samples(range(10**6, 10**6 + 24), AugmentSettings(planar_fraction=0.0,
                                                                         empty_fraction=0.0),
                                model.spec.working_voxel_um, _heatmap_settings(model))
    heights, border, labels = labelled_candidates(model, samples, 3.0, 0.1)
    scores = model.calibration(heights, border)
    assert ((scores >= 0) & (scores <= 1)).all()
    calibrated = expected_calibration_error(scores, labels)
    assert calibrated < 0.06
    assert calibrated < 0.5 * expected_calibration_error(np.clip(heights, 0, 1), labels)


def _heatmap_settings(model):
    from labloop.detect.heatmap import HeatmapSettings

    return HeatmapSettings(**model.heatmap) if model.heatmap else HeatmapSettings()


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize("array", [
    np.zeros((4, 32, 32), dtype=bool),
    np.zeros((4, 32, 32), dtype=np.complex64),
    np.zeros((4, 32, 32), dtype=object),
    np.zeros((1, 1, 4, 32, 32), dtype=np.uint16),
    np.zeros(32, dtype=np.uint16),
])
def test_bad_arrays_raise_input_error(model, array):
    with pytest.raises(InputError):
        detect(array, VOXEL, model=model, progress=False)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_raise(model, value):
    frame = np.ones((4, 32, 32), np.float32)
    frame[1, 2, 3] = value
    with pytest.raises(InputError, match="NaN"):
        detect(frame, VOXEL, model=model, progress=False)


@pytest.mark.parametrize("voxel", [None, (1.0, 1.0), (0.0, 1.0, 1.0), (np.nan, 1.0, 1.0)])
def test_bad_voxel_size_raises(model, voxel):
    with pytest.raises(InputError, match="voxel size"):
        detect(np.ones((4, 32, 32), np.uint16), voxel, model=model, progress=False)


def test_corrupt_or_foreign_model_files_raise(tmp_path: Path):
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a model" * 50)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    missing = tmp_path / "missing.safetensors"
    for path in (garbage, foreign, missing):
        with pytest.raises(InputError, match=path.name):
            load_model(path)
    if default_model_path().exists():
        truncated = tmp_path / "truncated.safetensors"
        truncated.write_bytes(default_model_path().read_bytes()[:-1000])
        with pytest.raises(InputError, match="truncated"):
            detect(np.ones((4, 32, 32), np.uint16), VOXEL, model=truncated, progress=False)


# ------------------------------------------------------------ small parts
def test_working_grid_round_trip_and_constant_resampling():
    grid = WorkingGrid.for_frame((10, 64, 48), (3.0, 0.4, 0.4), (2.0, 1.0, 1.0))
    assert grid.shape == (15, 26, 19)
    points = np.array([[0.0, 0.0, 0.0], [13.2, 5.1, 9.9]])
    np.testing.assert_allclose(grid.index_to_um(grid.um_to_index(points)), points)
    volume = to_working(np.full((10, 64, 48), 7, np.uint16), grid)
    assert tuple(volume.shape) == grid.shape
    np.testing.assert_allclose(volume.numpy(), 7.0, rtol=1e-6)


@pytest.mark.parametrize("voxel_yx", [0.3, 0.5, 0.75, 1.2])
def test_normalised_noise_has_unit_sd_at_any_voxel_size(voxel_yx):
    # resampling by a non-integer factor correlates neighbouring voxels' noise; the
    # estimate skips that correlation (with lag-1 differences the SD was 1.16–1.43)
    side = round(48 / voxel_yx)
    config = SynthConfig(frames=1, shape=(16, side, side), voxel_size_um=(2.0, voxel_yx,
                                                                          voxel_yx),
                         n_cells=0, background_gradient=0.0, seed=4)
    frame = np.asarray(simulate_movie(config).image[0], dtype=np.float32)
    grid = WorkingGrid.for_frame(frame.shape, config.voxel_size_um, (2.0, 1.0, 1.0))
    working = to_working(frame, grid)
    normalised = Normalisation.estimate(working).apply(working)
    assert float(normalised.std()) == pytest.approx(1.0, abs=0.06)


def test_heatmap_keeps_touching_nuclei_apart():
    grid = WorkingGrid.for_frame((8, 32, 32), (2.0, 1.0, 1.0), (2.0, 1.0, 1.0))
    centres = np.array([[8.0, 16.0, 12.0], [8.0, 16.0, 18.0]])
    heat = centre_heatmap(centres, np.array([3.0, 3.0]), grid)
    assert heat.max() == pytest.approx(1.0)
    assert heat[4, 16, 15] < 0.3
    _, heights = find_peaks(heat, grid.voxel_um)
    assert len(heights) == 2


def test_isotonic_calibration():
    rng = np.random.default_rng(1)
    heights = rng.uniform(0, 2, 20000)
    truth = rng.random(20000) < np.clip(heights / 2, 0, 1)
    calibration = ScoreCalibration.fit(heights, truth)
    assert np.all(np.diff(calibration.probabilities) >= 0)
    fresh = rng.uniform(0, 2, 20000)
    outcome = rng.random(20000) < fresh / 2
    assert expected_calibration_error(calibration(fresh), outcome) < 0.02
    restored = ScoreCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert restored == calibration
    np.testing.assert_allclose(pool_adjacent_violators(np.array([1.0, 0.0, 1.0])),
                               [0.5, 0.5, 1.0])


def test_match_points_one_to_one():
    truth = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    found = np.array([[0.0, 0.0, 1.6], [0.0, 0.0, 10.0]])
    a, b = match_points(truth, found, 2.0)
    assert len(a) == 1 and b[0] == 0


# ------------------------------------------------------------- training
TINY = TrainSettings(seed=3, steps=2, pool_size=2, val_size=1, calib_size=2, batch_size=2,
                     workers=1, val_every=1)


def _assert_pickle_free_safetensors(path: Path) -> dict:
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert b"pickle" not in raw[:8 + header_len] and raw[8:9] == b"{"
    return header


def test_training_runs_and_model_round_trips(tmp_path: Path):
    out = tmp_path / "tiny.safetensors"
    result = train_detector(out, TINY, augment=AugmentSettings(extent_um=(32.0, 64.0, 64.0)),
                            log=None, command="pytest")
    assert len(result.history) == 2
    header = _assert_pickle_free_safetensors(out)
    metadata = json.loads(header["__metadata__"]["labloop_detector"])
    assert metadata["training"]["seed"] == 3 and metadata["training"]["command"] == "pytest"
    from safetensors.torch import load_file

    state = load_file(str(out))
    assert set(state) == set(result.model.network.state_dict())
    loaded = load_model(out)
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded.network(x).numpy(), result.model.network(x).numpy(),
                                   atol=1e-5)
    assert loaded.calibration == result.model.calibration


def test_fine_tune_on_point_annotations(tmp_path: Path, model):
    movie = simulate_movie(SynthConfig(frames=2, shape=(12, 64, 64), voxel_size_um=VOXEL,
                                       n_cells=12, seed=99))
    csv = tmp_path / "points.csv"
    movie.truth.nodes[["t", "z", "y", "x"]].to_csv(csv, index=False)
    out = tmp_path / "tuned.safetensors"
    result = train_detector(out, TINY, image=movie.image, annotations=csv,
                            voxel_size_um=VOXEL, log=None)
    assert result.record["mode"] == "fine-tune"
    tuned = load_model(out)
    assert tuned.spec == model.spec
    found = detect(movie.image, VOXEL, model=tuned, progress=False, min_score=0.0)
    assert found["score"].between(0, 1).all()


def test_fine_tune_rejects_bad_annotations(tmp_path: Path, model):
    csv = tmp_path / "points.csv"
    pd.DataFrame({"t": [0], "y": [1.0], "x": [2.0]}).to_csv(csv, index=False)
    with pytest.raises(InputError, match="column"):
        train_detector(None, TINY, image=np.zeros((1, 4, 16, 16), np.uint16), annotations=csv,
                       voxel_size_um=VOXEL, log=None)


# ------------------------------------------------------------------ store
def test_detect_store_writes_detections(tmp_path: Path, model, movie):
    from labloop.io.images import as_image
    from labloop.io.store import create_experiment, open_experiment

    path = tmp_path / "exp.zarr"
    create_experiment(path, as_image(movie.image[:1], movie.voxel_size_um, 0.25))
    found = detect_store(path, progress=False)
    stored = open_experiment(path).read_detections()
    pd.testing.assert_frame_equal(stored, found, check_dtype=False)
    assert open_experiment(path).record("detections")["params"]["min_score"] == 0.5
