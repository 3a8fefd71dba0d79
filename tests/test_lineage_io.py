"""Lineage type and its GEFF / CTC / CSV / napari conversions."""

from __future__ import annotations

import geff
import numpy as np
import pandas as pd
import pytest

from labloop import InputError, Lineage
from labloop.io.ctc import read_ctc, track_table
from labloop.io.geff import read_geff
from labloop.io.tables import read_csv


@pytest.fixture
def dividing_lineage() -> Lineage:
    """Cell A (t0-1) divides into B (t2-3) and C (t2-3); cell D appears at t1 alone."""
    nodes = pd.DataFrame(
        {"t": [0, 1, 2, 2, 3, 3, 1],
         "z": [4.0, 4, 4, 4, 4, 4, 8],
         "y": [5.0, 5, 3, 7, 3, 7, 12],
         "x": [5.0, 5, 5, 5, 5, 5, 12],
         "score": [0.9, 0.8, 0.7, 0.95, 1.0, 1.0, 0.5]},
        index=[10, 11, 12, 13, 14, 15, 16])
    edges = pd.DataFrame({"source": [10, 11, 11, 12, 13], "target": [11, 12, 13, 14, 15],
                          "probability": [0.99, 0.8, 0.7, 1.0, 0.97]})
    return Lineage(nodes, edges, frame_interval_h=0.25, attrs={"tracker": "hand"})


def test_structure(dividing_lineage: Lineage) -> None:
    lineage = dividing_lineage
    assert (lineage.n_nodes, lineage.n_edges, lineage.n_frames) == (7, 5, 4)
    assert list(lineage.divisions) == [11]
    np.testing.assert_allclose(lineage.edges["error_probability"], [0.01, 0.2, 0.3, 0.0, 0.03])
    assert lineage.parents().to_dict() == {10: -1, 11: 10, 12: 11, 13: 11, 14: 12, 15: 13,
                                           16: -1}
    tracklets = lineage.tracklets()
    assert tracklets.loc[[10, 11], "track_id"].nunique() == 1
    assert tracklets.loc[12, "track_id"] == tracklets.loc[14, "track_id"]
    assert tracklets.loc[12, "parent_track_id"] == tracklets.loc[10, "track_id"]
    assert tracklets.loc[16, "parent_track_id"] == 0
    assert tracklets["track_id"].nunique() == 4


@pytest.mark.parametrize(("nodes", "edges", "message"), [
    ({"t": [0], "z": [np.nan], "y": [0.0], "x": [0.0]}, {"source": [], "target": []}, "NaN"),
    ({"t": [0], "y": [0.0], "x": [0.0]}, {"source": [], "target": []}, "column"),
    ({"t": [0, 0], "z": [0.0, 1], "y": [0.0, 0], "x": [0.0, 0]},
     {"source": [0], "target": [1]}, "forward in time"),
    ({"t": [0, 1], "z": [0.0, 1], "y": [0.0, 0], "x": [0.0, 0]},
     {"source": [0], "target": [5]}, "unknown nodes"),
    ({"t": [0, 0, 1], "z": [0.0, 1, 1], "y": [0.0, 0, 0], "x": [0.0, 0, 0]},
     {"source": [0, 1], "target": [2, 2]}, "more than one parent"),
    ({"t": [0.5], "z": [0.0], "y": [0.0], "x": [0.0]}, {"source": [], "target": []}, "whole"),
])
def test_invalid_lineages_are_refused(nodes: dict, edges: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Lineage(pd.DataFrame(nodes), pd.DataFrame(edges, dtype=np.int64))


def test_geff_round_trip(dividing_lineage: Lineage, tmp_path) -> None:
    path = tmp_path / "tracks.geff"
    dividing_lineage.to_geff(path)
    geff.validate_structure(str(path))
    back = Lineage.from_geff(path)
    pd.testing.assert_frame_equal(back.nodes.sort_index(), dividing_lineage.nodes.sort_index(),
                                  check_like=True)
    pd.testing.assert_frame_equal(back.edges, dividing_lineage.edges, check_like=True)
    assert back.frame_interval_h == 0.25
    assert back.attrs == {"tracker": "hand"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary left"


def test_geff_overwrite_refused_when_asked(dividing_lineage: Lineage, tmp_path) -> None:
    path = tmp_path / "tracks.geff"
    dividing_lineage.to_geff(path)
    with pytest.raises(InputError, match="already exists"):
        dividing_lineage.to_geff(path, overwrite=False)


def test_geff_in_voxels_needs_voxel_size(dividing_lineage: Lineage, tmp_path) -> None:
    """A GEFF from another tool with positions in voxels is scaled by the given voxel size."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_node(1, t=0, z=2.0, y=10.0, x=20.0)
    graph.add_node(2, t=1, z=2.0, y=11.0, x=20.0)
    graph.add_edge(1, 2)
    path = tmp_path / "voxels.geff"
    geff.write(graph, str(path), axis_names=["t", "z", "y", "x"])
    with pytest.raises(InputError, match="no physical unit"):
        read_geff(path)
    lineage = read_geff(path, voxel_size_um=(2.0, 0.5, 0.25))
    np.testing.assert_allclose(lineage.nodes.loc[1, ["z", "y", "x"]], [4.0, 5.0, 5.0])
    with pytest.raises(InputError, match="already in physical units"):
        dividing_lineage.to_geff(tmp_path / "um.geff")
        read_geff(tmp_path / "um.geff", voxel_size_um=(1, 1, 1))


def test_geff_without_positions_is_a_clear_error(tmp_path) -> None:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_node(1, t=0, label=3)
    path = tmp_path / "nopos.geff"
    geff.write(graph, str(path))
    with pytest.raises(InputError, match=r"nopos.geff: GEFF .*positions"):
        read_geff(path)


def test_missing_and_non_geff_paths(tmp_path) -> None:
    with pytest.raises(InputError, match="no such GEFF"):
        read_geff(tmp_path / "absent.geff")
    (tmp_path / "junk.geff").mkdir()
    with pytest.raises(InputError, match="not a readable GEFF"):
        read_geff(tmp_path / "junk.geff")


def test_csv_round_trip(dividing_lineage: Lineage, tmp_path) -> None:
    dividing_lineage.to_csv(tmp_path / "csv")
    nodes_csv = pd.read_csv(tmp_path / "csv" / "nodes.csv")
    assert {"node", "t", "z", "y", "x", "track_id", "parent_track_id"} <= set(nodes_csv.columns)
    back = read_csv(tmp_path / "csv", frame_interval_h=0.25)
    pd.testing.assert_frame_equal(back.nodes, dividing_lineage.nodes, check_like=True)
    pd.testing.assert_frame_equal(back.edges, dividing_lineage.edges, check_like=True)


def test_ctc_track_table(dividing_lineage: Lineage) -> None:
    table = track_table(dividing_lineage).sort_values("B").to_numpy().tolist()
    # mother 1 (t0-1), lone cell 2 (t1), daughters 3 and 4 (t2-3) with parent 1
    assert table == [[1, 0, 1, 0], [2, 1, 1, 0], [3, 2, 3, 1], [4, 2, 3, 1]]


def test_ctc_round_trip(dividing_lineage: Lineage, tmp_path) -> None:
    voxel = (2.0, 0.5, 0.5)
    dividing_lineage.to_ctc(tmp_path / "ctc", shape=(4, 8, 32, 32), voxel_size_um=voxel)
    assert sorted(p.name for p in (tmp_path / "ctc").iterdir()) == [
        "mask000.tif", "mask001.tif", "mask002.tif", "mask003.tif", "res_track.txt"]
    back = read_ctc(tmp_path / "ctc", voxel)
    assert (back.n_nodes, back.n_edges, back.n_divisions) == (7, 5, 1)
    original = dividing_lineage.nodes.sort_values(["t", "y", "z"])[["t", "z", "y", "x"]]
    returned = back.nodes.sort_values(["t", "y", "z"])[["t", "z", "y", "x"]]
    np.testing.assert_allclose(returned.to_numpy(), original.to_numpy(), atol=1e-9)
    assert sorted(track_table(back).to_numpy().tolist()) == sorted(
        track_table(dividing_lineage).to_numpy().tolist())


def test_ctc_refuses_nuclei_outside_the_image(dividing_lineage: Lineage, tmp_path) -> None:
    with pytest.raises(InputError, match="outside the image"):
        dividing_lineage.to_ctc(tmp_path / "ctc", shape=(4, 8, 16, 16), voxel_size_um=(1, .5, .5))
    assert not (tmp_path / "ctc").exists()
    assert list(tmp_path.iterdir()) == [], "half-written export left behind"


def test_napari_tracks(dividing_lineage: Lineage) -> None:
    data, features, graph = dividing_lineage.to_napari()
    assert data.shape == (7, 5)
    assert len(features) == 7
    tracks = dividing_lineage.tracklets()
    mother = tracks.loc[10, "track_id"]
    assert graph == {int(tracks.loc[12, "track_id"]): [int(mother)],
                     int(tracks.loc[13, "track_id"]): [int(mother)]}
    # rows sorted by track then time, and each row's error probability is its incoming link's
    assert np.all(np.diff(data[:, 0]) >= 0)
    row_of_13 = int(np.flatnonzero(features["node"] == 13)[0])
    assert features.loc[row_of_13, "error_probability"] == pytest.approx(0.3)
    np.testing.assert_allclose(data[row_of_13, 1:], [2, 4, 7, 5])


def test_every_keeps_frames_and_links_descendants() -> None:
    nodes = pd.DataFrame({"t": [0, 1, 2, 2, 3, 4, 4], "z": 0.0, "y": 0.0,
                          "x": [0.0, 1, 2, 3, 4, 5, 6]})
    # 0 → 1 divides into 2 and 3; 2 → 4 → 5; 3 → 6 by a gap-closing edge
    edges = pd.DataFrame({"source": [0, 1, 1, 2, 4, 3], "target": [1, 2, 3, 4, 5, 6]})
    coarse = Lineage(nodes, edges, frame_interval_h=0.1).every(2)
    assert list(coarse.nodes.index) == [0, 2, 3, 5, 6]
    assert list(coarse.nodes["t"]) == [0, 1, 1, 2, 2]
    assert sorted(zip(coarse.edges["source"], coarse.edges["target"], strict=True)) == [
        (0, 2), (0, 3), (2, 5), (3, 6)]
    assert coarse.frame_interval_h == pytest.approx(0.2)
    assert coarse.n_divisions == 1
    with pytest.raises(InputError, match="at least 1"):
        coarse.every(0)
