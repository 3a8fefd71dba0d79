"""Tests of the tracker's second pass: cell-cycle ages and the age-aware division model."""

from __future__ import annotations

import numpy as np
import pytest

from labloop.synth import SynthConfig, simulate_cells
from labloop.track import DetectionNoise, TrackSettings, perturb_detections
from labloop.track.ages import MAX_AGE_CYCLES, CycleAges, estimated_cycle_frames, lineage_ages
from labloop.track.detections import check_detections
from labloop.track.events import load_event_model
from labloop.track.problem import cue_context, event_probabilities


def test_ages_count_frames_since_a_division_and_flag_unknown_births():
    # rows in frame order: 0 (t0) -> 1 (t1) -> 3 (t2) divides into 4 and 5 (t3);
    # 4 -> 6 (t5, over a gap); 2 (t1) appears and stays one frame
    t = np.array([0, 1, 1, 2, 3, 3, 5])
    source = np.array([0, 1, 3, 3, 4])
    target = np.array([1, 3, 4, 5, 6])
    ages = lineage_ages(t, source, target)
    cycle = estimated_cycle_frames(1, 7, 5)
    assert ages.cycle_frames == pytest.approx(np.log(2) * 7)
    assert ages.cycle_frames == cycle
    frames = np.array([0, 1, 0, 2, 0, 0, 2])
    np.testing.assert_allclose(ages.cycles, frames / cycle)
    np.testing.assert_array_equal(ages.born_by_division,
                                  [False, False, False, False, True, True, True])


def test_ages_are_capped_and_finite_without_divisions():
    t = np.arange(50)
    ages = lineage_ages(t, np.arange(49), np.arange(1, 50))
    assert ages.cycle_frames == estimated_cycle_frames(0, 50, 50) == 100.0
    assert np.all(np.isfinite(ages.cycles)) and ages.cycles.max() == pytest.approx(0.49)
    # a 40-frame track beside three quick divisions in frame 0: cycle ≈ 11 frames
    t = np.concatenate([np.arange(40), [0, 0, 0], [1] * 6])
    order = np.argsort(t, kind="stable")
    row = np.empty_like(order)
    row[order] = np.arange(len(t))
    source = row[np.concatenate([np.arange(39), np.repeat([40, 41, 42], 2)])]
    target = row[np.concatenate([np.arange(1, 40), np.arange(43, 49)])]
    old = lineage_ages(t[order], source, target)
    assert old.cycle_frames == pytest.approx(np.log(2) * 49 / 3)
    assert old.cycles.max() == MAX_AGE_CYCLES
    empty = lineage_ages(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                         np.zeros(0, dtype=np.int64))
    assert empty.cycles.shape == (0,)


def test_shipped_model_doubts_divisions_of_a_nucleus_that_just_divided():
    truth = simulate_cells(SynthConfig(frames=12, shape=(20, 80, 80), voxel_size_um=(1, .5, .5),
                                       n_cells=40, cycle_mean_h=1.5, seed=4))
    det = check_detections(perturb_detections(truth, DetectionNoise(), seed=1))
    model = load_event_model()
    assert model.two_pass
    settings = TrackSettings()
    kept, _ = event_probabilities(cue_context(det, settings, None), model,
                                  settings.candidates.min_link_probability)
    n = det.n
    plausible = model.division_probability(kept) > 0.2  # by the age-free first pass
    assert plausible.sum() >= 20

    def mean_probability(cycles: float) -> float:
        ages = CycleAges(np.full(n, cycles), np.ones(n, dtype=bool), 20.0)
        return float(model.division_probability(kept.with_ages(ages))[plausible].mean())

    assert mean_probability(0.05) < 0.65 * mean_probability(1.0)


def test_training_builds_a_two_pass_model_that_tracks(tmp_path):
    from dataclasses import replace

    from labloop.track import track
    from labloop.track.events import FIRST_PASS_DIVISION, EventModel
    from labloop.track.training import TrainingSettings, train_event_model

    settings = replace(TrainingSettings(), n_train=2, n_calibration=1, frames=16, cells=60,
                       seed=5)
    model, meta = train_event_model(settings)
    assert model.two_pass
    assert set(model.models["division"].cues) - set(model.models[FIRST_PASS_DIVISION].cues) == {
        "mother_age_cycles", "mother_born_by_division"}
    assert meta["event_models"]["division"]["n_heldout"] > 0
    path = tmp_path / "event_model.json"
    model.to_json(path)
    reloaded = EventModel.from_json(path)
    assert reloaded.two_pass
    assert 0.2 < model.sampling_noise_scale < 1.5
    assert reloaded.sampling_noise_scale == model.sampling_noise_scale
    assert meta["sampling"]["noise_scale"] == model.sampling_noise_scale
    # a second calibration, fitted on the same scenarios tracked with gap closing
    gap = model.gap_closing_calibration
    assert reloaded.gap_closing_calibration == gap
    bridged = reloaded.for_candidates(gap_closing=True)
    assert bridged.sampling_noise_scale == gap["sampling_noise_scale"]
    assert bridged.temperature == gap["temperature"]
    assert reloaded.for_candidates(gap_closing=False).temperature == model.temperature
    assert meta["gap_closing"]["marginals"]["chosen_links"] > 0
    truth = simulate_cells(SynthConfig(frames=10, shape=(16, 60, 60), voxel_size_um=(1, .5, .5),
                                       n_cells=20, cycle_mean_h=1.0, seed=2))
    lineage = track(perturb_detections(truth, DetectionNoise(), seed=0).drop(
        columns="truth_node"), settings=TrackSettings(model_path=str(path)))
    assert lineage.n_edges > 0.8 * truth.n_edges
