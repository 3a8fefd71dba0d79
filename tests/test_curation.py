"""Curation: corrections pinned, replayed and saved; probabilities recomputed around them."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from labloop.errors import InputError
from labloop.io.store import open_experiment
from labloop.lineage import Lineage
from labloop.sample_data import sample_store_path
from labloop.track import track, track_store
from labloop.track.curation import (
    Correction,
    CurationSettings,
    apply_corrections,
    curate_store,
    doubtful_links,
    on_detections,
    read_corrections,
)

HOPS = CurationSettings().neighbourhood_hops


@pytest.fixture(scope="module")
def sample() -> tuple[pd.DataFrame, Lineage, tuple[float, float, float]]:
    """The sample's true nuclei as detections (scores 0.9) and the tracker's lineage."""
    experiment = open_experiment(sample_store_path())
    detections = experiment.read_truth().nodes[["t", "z", "y", "x"]].reset_index(drop=True)
    detections["score"] = 0.9
    extent = experiment.image.extent_um
    lineage = track(detections, frame_interval_h=experiment.image.frame_interval_h,
                    image_shape_um=extent)
    return detections, lineage, extent


def _probabilities(lineage: Lineage) -> pd.Series:
    return lineage.edges.set_index(["source", "target"])["probability"]


def _doubtful_between_detections(lineage: Lineage) -> pd.DataFrame:
    """Doubtful links whose ends are both detections (not nuclei put on a closed gap)."""
    doubtful = doubtful_links(lineage)
    interpolated = lineage.nodes.index[lineage.nodes["interpolated"]]
    return doubtful[~doubtful["source"].isin(interpolated)
                    & ~doubtful["target"].isin(interpolated)].reset_index(drop=True)


def _most_doubtful(lineage: Lineage) -> tuple[int, int]:
    row = _doubtful_between_detections(lineage).iloc[0]
    return int(row["source"]), int(row["target"])


def test_the_tracker_leaves_doubtful_links_to_review(sample) -> None:
    _, lineage, _ = sample
    doubtful = doubtful_links(lineage, 0.1)
    assert 5 <= len(doubtful) < 100
    errors = doubtful["error_probability"].to_numpy()
    assert np.all(np.diff(errors) <= 0) and errors.min() >= 0.1


def test_without_corrections_the_tracker_probabilities_come_back(sample) -> None:
    detections, lineage, extent = sample
    same = apply_corrections(detections, lineage, [], image_shape_um=extent,
                             curation=CurationSettings(neighbourhood_hops=None))
    pd.testing.assert_frame_equal(same.edges[["source", "target"]],
                                  lineage.edges[["source", "target"]])
    np.testing.assert_allclose(same.edges["probability"], lineage.edges["probability"],
                               atol=1e-12)
    np.testing.assert_allclose(same.nodes["division_probability"],
                               lineage.nodes["division_probability"], atol=1e-12)


def test_accept_pins_the_link_and_changes_only_its_neighbourhood(sample) -> None:
    detections, lineage, extent = sample
    source, target = _most_doubtful(lineage)
    assert _probabilities(lineage)[(source, target)] < 0.7
    curated = apply_corrections(detections, lineage, [Correction("accept", source, target)],
                                image_shape_um=extent)
    edges = curated.edges.set_index(["source", "target"])
    assert edges.loc[(source, target), "probability"] == 1.0
    assert edges.loc[(source, target), "pinned"] == 1
    assert edges["pinned"].sum() == 1
    assert curated.n_edges == lineage.n_edges
    before, after = _probabilities(lineage), edges["probability"]
    changed = (before - after.reindex(before.index)).abs() > 1e-9
    assert changed.sum() >= 2  # the accepted link and at least one competitor around it
    frame = lineage.nodes["t"]
    t0 = frame[source]
    far = np.array([abs(frame[s] - t0) > HOPS + 1 and abs(frame[t] - t0) > HOPS + 1
                    for s, t in before.index])
    assert far.sum() > 500
    assert not changed.to_numpy()[far].any()
    assert len(doubtful_links(curated, 0.1)) < len(doubtful_links(lineage, 0.1))


def test_cut_removes_the_link_from_the_lineage(sample) -> None:
    detections, lineage, extent = sample
    source, target = _most_doubtful(lineage)
    curated = apply_corrections(detections, lineage, [Correction("cut", source, target)],
                                image_shape_um=extent)
    assert curated.n_edges == lineage.n_edges - 1
    assert not ((curated.edges["source"] == source) & (curated.edges["target"] == target)).any()
    assert curated.parents()[target] == -1
    assert set(curated.nodes.index) == set(lineage.nodes.index)


def test_relink_moves_the_source_to_its_new_target(sample) -> None:
    detections, lineage, extent = sample
    source, target = _most_doubtful(lineage)
    nodes = lineage.nodes
    same_frame = nodes[(nodes["t"] == nodes.loc[target, "t"]) & (nodes.index != target)]
    distance = np.linalg.norm(same_frame[["z", "y", "x"]].to_numpy()
                              - nodes.loc[source, ["z", "y", "x"]].to_numpy(float), axis=1)
    new_target = int(same_frame.index[np.argmin(distance)])
    old_parent = int(lineage.parents()[new_target])
    curated = apply_corrections(
        detections, lineage, [Correction("relink", source, target, new_target=new_target)],
        image_shape_um=extent)
    parents = curated.parents()
    assert parents[new_target] == source and parents[target] == -1
    edges = curated.edges.set_index(["source", "target"])
    assert edges.loc[(source, new_target), "probability"] == 1.0
    if old_parent >= 0 and old_parent != source:
        assert (old_parent, new_target) not in edges.index


def test_replaying_the_history_gives_the_same_lineage(sample) -> None:
    detections, lineage, extent = sample
    doubtful = _doubtful_between_detections(lineage)
    history = [Correction("accept", int(doubtful.source[0]), int(doubtful.target[0])),
               Correction("cut", int(doubtful.source[1]), int(doubtful.target[1]))]
    once = apply_corrections(detections, lineage, history, image_shape_um=extent)
    twice = apply_corrections(detections, once, history, image_shape_um=extent)
    pd.testing.assert_frame_equal(once.edges, twice.edges)


def test_a_later_correction_wins(sample) -> None:
    detections, lineage, extent = sample
    source, target = _most_doubtful(lineage)
    curated = apply_corrections(
        detections, lineage,
        [Correction("accept", source, target), Correction("cut", source, target)],
        image_shape_um=extent)
    assert curated.edges["pinned"].sum() == 0
    assert curated.parents()[target] == -1


@pytest.mark.parametrize(("correction", "message"), [
    (lambda s, t, n: Correction("accept", s, 10**9), "not among the detections"),
    (lambda s, t, n: Correction("accept", s, n), "next frame or skips one"),
    (lambda s, t, n: Correction("relink", s, t), "needs a new target"),
    (lambda s, t, n: Correction("merge", s, t), "unknown correction"),
])
def test_bad_corrections_are_one_clear_error(sample, correction, message) -> None:
    detections, lineage, extent = sample
    source, target = _most_doubtful(lineage)
    nodes = lineage.nodes
    far = int(nodes.index[(nodes["t"] - nodes.loc[source, "t"]).abs() == 3][0])
    with pytest.raises(InputError, match=message):
        apply_corrections(detections, lineage, [correction(source, target, far)],
                          image_shape_um=extent)


def test_a_correction_on_an_interpolated_nucleus_applies_to_its_gap(sample) -> None:
    detections, lineage, extent = sample
    interpolated = lineage.nodes.index[lineage.nodes["interpolated"]]
    assert len(interpolated) > 0
    edges = lineage.edges
    into_gap = edges[edges["target"].isin(interpolated)].iloc[0]
    source, middle = int(into_gap["source"]), int(into_gap["target"])
    end = int(edges.loc[edges["source"] == middle, "target"].iloc[0])
    assert end in detections.index and lineage.nodes.loc[end, "t"] - lineage.nodes.loc[
        source, "t"] == 2
    stored = on_detections([Correction("accept", source, middle)], lineage)[0]
    assert (stored.source, stored.target) == (source, end)  # what curate_store saves
    curated = apply_corrections(detections, lineage, [Correction("accept", source, middle)],
                                image_shape_um=extent)
    pinned = curated.edges[curated.edges["pinned"] == 1]
    assert len(pinned) == 2 and (pinned["probability"] == 1.0).all()
    assert pinned["source"].iloc[0] == source and end in pinned["target"].tolist()
    assert curated.nodes.loc[pinned["target"], "interpolated"].tolist().count(True) == 1
    cut = apply_corrections(detections, lineage, [Correction("cut", source, middle)],
                            image_shape_um=extent)
    assert cut.n_nodes == lineage.n_nodes - 1 and cut.parents()[end] == -1


def test_a_third_child_is_refused() -> None:
    detections = pd.DataFrame({"t": [0, 1, 1, 1], "z": 0.0, "y": [0.0, -3.0, 0.0, 3.0],
                               "x": 0.0})
    lineage = Lineage(detections, pd.DataFrame({"source": [0, 0], "target": [1, 3]}))
    with pytest.raises(InputError, match="three children"):
        apply_corrections(detections, lineage, [Correction("accept", 0, 2)])


def test_curate_store_saves_corrections_and_reopens_them(tmp_path, sample) -> None:
    detections, _, _ = sample
    store = tmp_path / "sample.zarr"
    shutil.copytree(sample_store_path(), store)
    experiment = open_experiment(store)
    experiment.write_detections(detections)
    tracked = track_store(store)
    doubtful = _doubtful_between_detections(tracked)
    first, second = doubtful.iloc[0], doubtful.iloc[1]
    curate_store(store, [Correction("accept", int(first.source), int(first.target))])
    curate_store(store, [Correction("cut", int(second.source), int(second.target))])
    history = read_corrections(store)
    assert [c.action for c in history] == ["accept", "cut"]
    assert all(c.made_at.endswith("+00:00") for c in history)
    reopened = open_experiment(store).read_tracks()
    edges = reopened.edges.set_index(["source", "target"])
    assert edges.loc[(int(first.source), int(first.target)), "probability"] == 1.0
    assert edges.loc[(int(first.source), int(first.target)), "pinned"] == 1
    assert (int(second.source), int(second.target)) not in edges.index
    assert open_experiment(store).record("tracks.geff")["step"] == "curate"
