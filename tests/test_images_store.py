"""Image reading/writing and the experiment store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from labloop import InputError, Lineage
from labloop.io.images import as_image, read_image, read_ome_zarr, write_ome_zarr
from labloop.io.store import create_experiment, open_experiment


@pytest.fixture
def movie() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 4000, size=(3, 4, 24, 20), dtype=np.uint16)


def test_ome_zarr_05_round_trip(movie: np.ndarray, tmp_path) -> None:
    path = tmp_path / "movie.zarr"
    write_ome_zarr(path, as_image(movie, (2.0, 0.5, 0.25), 0.5))
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    assert meta["version"] == "0.5"
    assert [a["name"] for a in meta["multiscales"][0]["axes"]] == ["t", "z", "y", "x"]
    assert zarr.open_array(str(path / "0"), mode="r").chunks == (1, 4, 24, 20)
    image = read_image(path)
    assert image.shape == movie.shape
    assert image.voxel_size_um == (2.0, 0.5, 0.25)
    assert image.frame_interval_h == 0.5
    np.testing.assert_array_equal(image.frame(2), movie[2])


def test_ome_zarr_opens_with_the_reference_reader(movie: np.ndarray, tmp_path) -> None:
    """ome-zarr-py (which napari-ome-zarr uses) reads what labloop writes."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "movie.zarr"
    write_ome_zarr(path, as_image(movie, (2.0, 0.5, 0.25), 0.5))
    node = next(iter(Reader(parse_url(str(path)))()))
    np.testing.assert_array_equal(np.asarray(node.data[0]), movie)
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [0.5, 2.0, 0.5, 0.25]


def test_pyramid_levels_for_large_frames(tmp_path) -> None:
    data = np.arange(2 * 1 * 600 * 520, dtype=np.uint16).reshape(2, 1, 600, 520)
    path = tmp_path / "big.zarr"
    write_ome_zarr(path, as_image(data, (1.0, 0.2, 0.2), 1.0))
    assert read_ome_zarr(path, level=1).shape == (2, 1, 300, 260)
    assert read_ome_zarr(path, level=1).voxel_size_um == (1.0, 0.4, 0.4)


def _write_ome_zarr_04(path, data: np.ndarray, axes: list[dict], scale: list[float]) -> None:
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(1, *data.shape[1:]))
    group.attrs["multiscales"] = [{
        "version": "0.4", "axes": axes,
        "datasets": [{"path": "0",
                      "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]


def test_ome_zarr_04_with_channels(tmp_path) -> None:
    data = np.random.default_rng(2).integers(0, 100, (2, 2, 3, 8, 8), dtype=np.uint16)
    axes = [{"name": "t", "type": "time", "unit": "minute"},
            {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "nanometer"},
            {"name": "x", "type": "space", "unit": "nanometer"}]
    _write_ome_zarr_04(tmp_path / "v04.zarr", data, axes, [30.0, 1.0, 1.5, 400.0, 400.0])
    image = read_image(tmp_path / "v04.zarr", channel=1)
    assert image.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(image.voxel_size_um, (1.5, 0.4, 0.4))
    assert image.frame_interval_h == pytest.approx(0.5)
    np.testing.assert_array_equal(image.frame(1), data[1, 1])
    with pytest.raises(InputError, match="channel 2 does not exist"):
        read_image(tmp_path / "v04.zarr", channel=2)


def test_store_without_voxel_size(tmp_path) -> None:
    data = np.zeros((2, 3, 8, 8), np.uint16)
    axes = [{"name": n, "type": "space" if n != "t" else "time"} for n in "tzyx"]
    _write_ome_zarr_04(tmp_path / "nounits.zarr", data, axes, [1.0] * 4)
    with pytest.raises(InputError, match=r"nounits.zarr: no voxel size"):
        read_image(tmp_path / "nounits.zarr")
    image = read_image(tmp_path / "nounits.zarr", voxel_size_um=(2, 1, 1))
    assert image.voxel_size_um == (2.0, 1.0, 1.0) and image.frame_interval_h is None


def test_tiff_and_numpy(movie: np.ndarray, tmp_path) -> None:
    tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack")
    np.save(tmp_path / "movie.npy", movie)
    for name in ("movie.tif", "movie.npy"):
        with pytest.raises(InputError, match="no voxel size"):
            read_image(tmp_path / name)
        image = read_image(tmp_path / name, voxel_size_um=(2, 0.5, 0.5), frame_interval_h=0.25)
        assert image.shape == movie.shape
        np.testing.assert_array_equal(image.frame(1), movie[1])
    single = read_image(tmp_path / "movie.npy", voxel_size_um=(1, 1, 1), axes="tzyx")
    assert single.n_frames == 3
    assert not single.is_2d
    np.save(tmp_path / "plane.npy", movie[:, 0])
    plane = read_image(tmp_path / "plane.npy", voxel_size_um=(1, 0.5, 0.5), axes="tyx")
    assert plane.shape == (3, 1, 24, 20) and plane.is_2d


@pytest.mark.parametrize(("shape", "axes", "message"), [
    ((3, 4, 5), "tzyx", "3 axes but axes='tzyx'"),
    ((2, 2, 3, 4, 5), "tzyx", "5 axes"),
    ((3, 4), "tz", "including y and x"),
])
def test_wrong_number_of_axes(shape, axes, message) -> None:
    with pytest.raises(InputError, match=message):
        as_image(np.zeros(shape, np.uint16), (1, 1, 1), axes=axes)


def test_bad_voxel_size_and_dtype() -> None:
    with pytest.raises(InputError, match="three positive numbers"):
        as_image(np.zeros((1, 1, 4, 4)), (1, 0, 1))
    with pytest.raises(InputError, match="unsupported pixel type"):
        as_image(np.zeros((1, 1, 4, 4), bool), (1, 1, 1))


def test_missing_and_unknown_paths(tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "absent.zarr")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "plain.zarr").mkdir()
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InputError, match="not an OME-Zarr image"):
        read_image(tmp_path / "plain.zarr")


def test_corrupt_chunk_is_reported_with_its_frame(movie: np.ndarray, tmp_path) -> None:
    path = tmp_path / "movie.zarr"
    write_ome_zarr(path, as_image(movie, (2.0, 0.5, 0.5), 0.25))
    chunk = next((path / "0" / "c" / "1").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(chunk.read_bytes()[:10])  # truncated
    image = read_image(path)
    np.testing.assert_array_equal(image.frame(0), movie[0])
    with pytest.raises(InputError, match=r"movie.zarr: frame 1 cannot be read"):
        image.frame(1)
    with pytest.raises(InputError, match="frame 1"):
        image.verify()


def test_experiment_store(movie: np.ndarray, tmp_path) -> None:
    truth = Lineage(pd.DataFrame({"t": [0, 1], "z": [1.0, 1.0], "y": [2.0, 2.5],
                                  "x": [3.0, 3.0]}),
                    pd.DataFrame({"source": [0], "target": [1]}), frame_interval_h=0.25)
    experiment = create_experiment(tmp_path / "exp.zarr", as_image(movie, (2, .5, .5), .25),
                                   truth=truth, params={"seed": 3})
    assert experiment.image.shape == movie.shape
    assert experiment.has("truth.geff") and not experiment.has("detections")
    assert experiment.read_truth().n_edges == 1
    assert experiment.record("truth.geff")["params"] == {"seed": 3}
    detections = pd.DataFrame({"t": [0, 1], "z": [1.0, 1.1], "y": [2.0, 2.4], "x": [3.0, 3.1],
                               "score": [0.9, 0.7]})
    experiment.write_detections(detections, params={"threshold": 0.5})
    pd.testing.assert_frame_equal(open_experiment(experiment.path).read_detections(), detections)
    record = experiment.record("detections")
    assert record["step"] == "detect" and record["params"] == {"threshold": 0.5}
    assert record["version"]
    experiment.write_tracks(truth, params={"radius_um": 5})
    assert experiment.read_tracks().n_nodes == 2
    assert experiment.record("tracks.geff")["params"] == {"radius_um": 5}
    leftovers = [p.name for p in experiment.results_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_tables_keep_text_columns(movie: np.ndarray, tmp_path) -> None:
    experiment = create_experiment(tmp_path / "exp.zarr", as_image(movie, (2, .5, .5), .25))
    table = pd.DataFrame({"quantity": ["count", "rate", "count"], "value": [1.0, 0.5, 2.0]})
    experiment.write_table("morphometrics", table, "measure")
    back = experiment.read_table("morphometrics")
    assert back["quantity"].tolist() == ["count", "rate", "count"]
    np.testing.assert_allclose(back["value"], table["value"])


def test_failed_write_leaves_previous_result(movie: np.ndarray, tmp_path) -> None:
    experiment = create_experiment(tmp_path / "exp.zarr", as_image(movie, (2, .5, .5), .25))
    good = pd.DataFrame({"t": [0], "z": [1.0], "y": [1.0], "x": [1.0], "score": [1.0]})
    experiment.write_detections(good)
    with pytest.raises(InputError, match="neither numeric nor text"):
        experiment.write_detections(good.assign(label=[None]))
    pd.testing.assert_frame_equal(experiment.read_detections(), good)
    assert sorted(p.name for p in experiment.results_path.iterdir()) == ["detections",
                                                                         "zarr.json"]


def test_create_refuses_to_overwrite(movie: np.ndarray, tmp_path) -> None:
    image = as_image(movie, (2, .5, .5), .25)
    create_experiment(tmp_path / "exp.zarr", image)
    with pytest.raises(InputError, match="already exists"):
        create_experiment(tmp_path / "exp.zarr", image)
    with pytest.raises(InputError, match="no such experiment store"):
        open_experiment(tmp_path / "other.zarr")
