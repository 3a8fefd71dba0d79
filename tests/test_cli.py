"""The command line, run as a user would: a subprocess, its exit status and its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geff
import networkx as nx
import numpy as np
import pandas as pd
import pytest

from labloop import Lineage
from labloop.io.store import open_experiment

SMALL = ["--frames", "4", "--shape", "8,48,48", "--cells", "8", "--seed", "1"]


def labloop(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labloop", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("labloop: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sample.zarr"
    result = labloop("sample", out, *SMALL)
    assert result.returncode == 0, result.stderr
    return out


def test_sample_store_contents(sample_store: Path) -> None:
    experiment = open_experiment(sample_store)
    assert experiment.image.shape == (4, 8, 48, 48)
    assert experiment.image.voxel_size_um == (2.0, 0.5, 0.5)
    geff.validate_structure(str(sample_store / "labloop" / "truth.geff"))
    truth = experiment.read_truth()
    assert truth.n_nodes >= 4 * 6
    assert experiment.record("truth.geff")["params"]["seed"] == 1
    info = json.loads(labloop("info", sample_store, "--verify").stdout)
    assert info["shape_tzyx"] == [4, 8, 48, 48] and "truth.geff" in info["results"]


def test_sample_is_deterministic(sample_store: Path, tmp_path) -> None:
    again = tmp_path / "again.zarr"
    assert labloop("sample", again, *SMALL).returncode == 0
    a, b = open_experiment(sample_store), open_experiment(again)
    np.testing.assert_array_equal(a.image.data.compute(), b.image.data.compute())
    pd.testing.assert_frame_equal(a.read_truth().nodes, b.read_truth().nodes)


def test_sample_opens_with_napari_ome_zarr_reader(sample_store: Path) -> None:
    napari_ome_zarr = pytest.importorskip("napari_ome_zarr")
    reader = napari_ome_zarr.napari_get_reader(str(sample_store))
    assert reader is not None
    layers = reader(str(sample_store))
    data, kwargs, kind = layers[0]
    assert kind == "image"
    assert tuple(data[0].shape) == (4, 8, 48, 48)
    np.testing.assert_allclose(kwargs["scale"], [0.25, 2.0, 0.5, 0.5])


def test_evaluate_truth_against_itself_scores_one(sample_store: Path, tmp_path) -> None:
    store = tmp_path / "self.zarr"
    assert labloop("sample", store, *SMALL).returncode == 0
    experiment = open_experiment(store)
    experiment.write_tracks(experiment.read_truth())
    result = labloop("evaluate", store)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    flat = json.dumps(scores)
    for key in ("edge_f1", "edge_precision", "edge_recall", "f1"):
        assert key in flat
    tracking = scores["tracking"]
    assert tracking["edge_f1"] == 1.0 and tracking["LNK"] == 1.0 and tracking["TRA"] == 1.0
    assert scores["detection"]["f1"] == 1.0


def test_evaluate_perturbed_copy_matches_hand_count(tmp_path) -> None:
    store = tmp_path / "perturbed.zarr"
    assert labloop("sample", store, *SMALL).returncode == 0
    experiment = open_experiment(store)
    truth = experiment.read_truth()
    # drop 3 links and move 2 nodes 10 µm away (beyond the 3 µm matching radius)
    edges = truth.edges.drop(index=truth.edges.index[[0, 5, 9]])
    nodes = truth.nodes.copy()
    moved = nodes.index[[1, 4]]
    nodes.loc[moved, "x"] += 10.0
    experiment.write_tracks(Lineage(nodes, edges, truth.frame_interval_h))
    scores = json.loads(labloop("evaluate", store).stdout)
    n = truth.n_nodes
    detection = scores["detection"]
    assert (detection["tp"], detection["fp"], detection["fn"]) == (n - 2, 2, 2)
    # a truth edge is found only if it is kept and both ends are matched
    kept = edges
    touches_moved = kept["source"].isin(moved) | kept["target"].isin(moved)
    correct = int((~touches_moved).sum())
    tracking = scores["tracking"]
    assert tracking["edge_recall"] == pytest.approx(correct / truth.n_edges)
    assert tracking["edge_precision"] == pytest.approx(correct / len(kept))


@pytest.mark.parametrize("command", [["info"], ["evaluate"], ["export", "--csv", "x"]])
def test_missing_store(command, tmp_path) -> None:
    result = labloop(command[0], tmp_path / "nowhere.zarr", *command[1:])
    assert_one_line_error(result, "nowhere.zarr", "no such")


def test_import_errors_and_success(tmp_path) -> None:
    movie = np.random.default_rng(0).integers(0, 1000, (3, 4, 16, 16), dtype=np.uint16)
    np.save(tmp_path / "movie.npy", movie)
    assert_one_line_error(labloop("import", tmp_path / "movie.npy", tmp_path / "a.zarr"),
                          "movie.npy", "no voxel size")
    assert_one_line_error(
        labloop("import", tmp_path / "movie.npy", tmp_path / "a.zarr", "--voxel-size",
                "2,0.5,0.5", "--axes", "zyx"), "4 axes but axes='zyx'")
    assert not (tmp_path / "a.zarr").exists()
    ok = labloop("import", tmp_path / "movie.npy", tmp_path / "a.zarr", "--voxel-size",
                 "2,0.5,0.5", "--frame-interval", "0.1")
    assert ok.returncode == 0, ok.stderr
    np.testing.assert_array_equal(open_experiment(tmp_path / "a.zarr").image.frame(2),
                                  movie[2])
    assert_one_line_error(labloop("import", tmp_path / "movie.npy", tmp_path / "a.zarr",
                                  "--voxel-size", "2,0.5,0.5"), "already exists")


def test_store_without_voxel_size(tmp_path) -> None:
    import zarr

    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("0", data=np.zeros((2, 2, 8, 8), np.uint16))
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": n, "type": "time" if n == "t" else "space"} for n in "tzyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1, 1, 1, 1]}]}]}]}
    assert_one_line_error(labloop("info", tmp_path / "plain.zarr"), "plain.zarr",
                          "no voxel size")


def test_corrupt_chunk(sample_store: Path, tmp_path) -> None:
    import shutil

    store = tmp_path / "corrupt.zarr"
    shutil.copytree(sample_store, store)
    chunk = sorted(p for p in (store / "0" / "c" / "2").rglob("*") if p.is_file())[0]
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 3])
    assert_one_line_error(labloop("info", store, "--verify"), "corrupt.zarr",
                          "frame 2 cannot be read")


def _write_tracks_graph(store: Path, graph: nx.DiGraph, axis_names: list[str]) -> None:
    path = store / "labloop" / "tracks.geff"
    geff.write(graph, str(path), axis_names=axis_names,
               axis_units=["frame"] + ["micrometer"] * (len(axis_names) - 1),
               axis_types=["time"] + ["space"] * (len(axis_names) - 1), zarr_format=3)


def test_geff_without_positions(sample_store: Path, tmp_path) -> None:
    import shutil

    store = tmp_path / "nopos.zarr"
    shutil.copytree(sample_store, store)
    graph = nx.DiGraph()
    graph.add_node(1, t=0)
    graph.add_node(2, t=1)
    graph.add_edge(1, 2)
    _write_tracks_graph(store, graph, ["t"])
    assert_one_line_error(labloop("evaluate", store), "tracks.geff", "positions")


def test_geff_with_nan_coordinates(sample_store: Path, tmp_path) -> None:
    import shutil

    store = tmp_path / "nan.zarr"
    shutil.copytree(sample_store, store)
    graph = nx.DiGraph()
    graph.add_node(1, t=0, z=1.0, y=np.nan, x=2.0)
    graph.add_node(2, t=1, z=1.0, y=1.0, x=2.0)
    graph.add_edge(1, 2)
    _write_tracks_graph(store, graph, ["t", "z", "y", "x"])
    assert_one_line_error(labloop("evaluate", store), "tracks.geff", "NaN")


def test_bad_sample_settings_leave_nothing(tmp_path) -> None:
    assert_one_line_error(labloop("sample", tmp_path / "s.zarr", "--snr", "-1"), "snr")
    assert_one_line_error(labloop("sample", tmp_path / "s.zarr", "--shape", "8,48"), "shape")
    assert list(tmp_path.iterdir()) == []


def test_export_all_formats(sample_store: Path, tmp_path) -> None:
    result = labloop("export", sample_store, "--truth", "--csv", tmp_path / "csv", "--ctc",
                     tmp_path / "ctc", "--geff", tmp_path / "copy.geff")
    assert result.returncode == 0, result.stderr
    truth = open_experiment(sample_store).read_truth()
    assert len(pd.read_csv(tmp_path / "csv" / "nodes.csv")) == truth.n_nodes
    assert len(list((tmp_path / "ctc").glob("mask*.tif"))) == 4
    track_lines = (tmp_path / "ctc" / "res_track.txt").read_text().strip().splitlines()
    assert len(track_lines) == truth.tracklets()["track_id"].nunique()
    assert Lineage.from_geff(tmp_path / "copy.geff").n_edges == truth.n_edges
    assert_one_line_error(labloop("export", sample_store, "--csv", tmp_path / "x"),
                          "no 'tracks.geff' result")
