"""The napari plugin: reader, writer, sample, widgets (run, curate, compare), screenshot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from labloop.io.images import as_image, write_ome_zarr
from labloop.io.store import DETECTIONS, MORPHOMETRICS, TRACKS, open_experiment
from labloop.lineage import Lineage
from labloop.sample_data import SOURCE_SAMPLE
from labloop.track import track_store
from labloop.track.curation import doubtful_links, read_corrections

napari = pytest.importorskip("napari")
pytest.importorskip("npe2")

from labloop_napari._layers import PREDICTION  # noqa: E402
from labloop_napari._reader import get_reader  # noqa: E402
from labloop_napari._sample import copy_sample  # noqa: E402
from labloop_napari._viewer import find_layer, grid  # noqa: E402

PLUGIN = "labloop"
STEP_TIMEOUT_MS = 120_000


# ------------------------------------------------------------------ fixtures
def _prediction(truth: Lineage) -> pd.DataFrame:
    """A stand-in for calibrate's prediction: the truth's tracklets, shifted by 3 µm."""
    tracklets = truth.tracklets()
    nodes = truth.nodes.join(tracklets)
    return pd.DataFrame({
        "replicate": 0, "track_id": nodes["track_id"].to_numpy(),
        "parent_track_id": nodes["parent_track_id"].replace(0, -1).to_numpy(),
        "t": nodes["t"].to_numpy(), "time_h": nodes["t"].to_numpy() * truth.frame_interval_h,
        "z": nodes["z"].to_numpy(), "y": nodes["y"].to_numpy() + 3.0,
        "x": nodes["x"].to_numpy(), "source": np.zeros(len(nodes), dtype=bool)})


def _cell_counts(truth: Lineage, factor: float) -> pd.DataFrame:
    counts = truth.nodes.groupby("t").size() * factor
    return pd.DataFrame({
        "quantity": "cell_count", "t": counts.index.to_numpy(dtype=float),
        "time_h": counts.index.to_numpy() * truth.frame_interval_h,
        "bin_lo_um": np.nan, "bin_hi_um": np.nan, "value": counts.to_numpy(),
        "lower": counts.to_numpy() - 2, "upper": counts.to_numpy() + 2, "unit": "cells"})


@pytest.fixture
def bare_store(tmp_path):
    """A fresh copy of the sample store (image and truth only)."""
    return copy_sample(tmp_path)


@pytest.fixture
def store(bare_store):
    """The sample with detections (the true nuclei), tracks, morphometrics and a prediction."""
    experiment = open_experiment(bare_store)
    truth = experiment.read_truth()
    detections = truth.nodes[["t", "z", "y", "x"]].reset_index(drop=True)
    detections["score"] = np.linspace(0.4, 1.0, len(detections))
    experiment.write_detections(detections, {"from": "truth"})
    track_store(bare_store)
    experiment.write_table(MORPHOMETRICS, _cell_counts(truth, 1.0), "test")
    experiment.write_table(PREDICTION, _prediction(truth), "test")
    experiment.write_table("predicted_morphometrics", _cell_counts(truth, 1.2), "test")
    return bare_store


def _kinds(viewer) -> dict[str, object]:
    return {layer.metadata["labloop"]["kind"]: layer for layer in viewer.layers
            if "labloop" in layer.metadata}


def _open(viewer, store) -> dict[str, object]:
    viewer.open(str(store), plugin=PLUGIN)
    return _kinds(viewer)


# ---------------------------------------------------------------- contributions
def test_manifest_declares_reader_writer_sample_and_widgets() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("labloop")
    contributions = manifest.contributions
    assert manifest.name == PLUGIN
    assert len(contributions.readers) == 1 and len(contributions.writers) == 1
    assert [s.key for s in contributions.sample_data] == ["sample"]
    assert {w.display_name for w in contributions.widgets} == {
        "Run steps", "Curate links", "Predicted vs observed"}


def test_reader_claims_labloop_stores_only(tmp_path, store, make_napari_viewer) -> None:
    assert get_reader(str(store)) is not None
    plain = tmp_path / "plain.zarr"
    image = open_experiment(store).image
    write_ome_zarr(plain, as_image(np.asarray(image.data[:2]), image.voxel_size_um,
                                   image.frame_interval_h))
    assert get_reader(str(plain)) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    pytest.importorskip("napari_ome_zarr")
    viewer = make_napari_viewer()
    layers = viewer.open(str(plain), plugin="napari-ome-zarr")
    data = layers[0].data[0] if layers[0].multiscale else layers[0].data
    assert len(layers) == 1 and data.shape == (2, 24, 112, 112)


def test_store_opens_as_image_points_and_tracks(store, make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    kinds = _open(viewer, store)
    assert set(kinds) == {"image", "detections", "tracks", "interpolated", "truth",
                          "prediction", "prediction_cells"}
    experiment = open_experiment(store)
    voxel = experiment.image.voxel_size_um
    image = kinds["image"]
    np.testing.assert_allclose(image.scale, [1.0, *voxel])
    assert image.data.shape == (24, 24, 112, 112)
    detections = kinds["detections"]
    stored = experiment.read_detections()
    world = detections.data * detections.scale  # frames and µm
    np.testing.assert_allclose(world, stored[["t", "z", "y", "x"]].to_numpy(), atol=1e-9)
    assert np.ptp(detections.border_color[:, :3], axis=0).max() > 0.3  # coloured by score
    tracks = kinds["tracks"]
    assert tracks.color_by == "error_probability"
    lineage = experiment.read_tracks()
    assert len(tracks.data) == lineage.n_nodes
    assert set(tracks.features.columns) >= {"node", "error_probability", "probability"}
    np.testing.assert_allclose(np.sort(tracks.data[:, 2]), np.sort(lineage.nodes["z"]))
    assert not kinds["truth"].visible
    prediction = kinds["prediction"]
    assert prediction.data[:, 3].min() > lineage.nodes["y"].min()  # the shifted copy


def test_nuclei_put_back_on_closed_gaps_show_as_squares(bare_store, make_napari_viewer
                                                      ) -> None:
    experiment = open_experiment(bare_store)
    truth = experiment.read_truth()
    nodes = truth.nodes
    # three nuclei in the middle of undivided stretches of track, in different frames
    parent = truth.edges.set_index("target")["source"]
    children = truth.edges.groupby("source")["target"].apply(list)
    plain = [v for v in nodes.index if v in parent.index and len(children.get(v, [])) == 1
             and len(children.get(parent[v], [])) == 1
             and len(children.get(children[v][0], [])) == 1]
    removed = [plain[k] for k in np.linspace(0, len(plain) - 1, 3).astype(int)]
    detections = nodes.drop(index=removed)[["t", "z", "y", "x"]].reset_index(drop=True)
    experiment.write_detections(detections, {"from": "truth, three nuclei removed"})
    track_store(bare_store)
    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. napari resetting the colours to white
        interpolated = _open(viewer, bare_store)["interpolated"]
    assert interpolated.symbol[0].value == "square"
    world = interpolated.data * interpolated.scale  # frames and µm
    expected = nodes.loc[removed, ["t", "z", "y", "x"]].to_numpy(dtype=float)
    assert len(world) >= 3  # and any gap the sample's truth has (a cell out of view)
    for point in expected:
        nearest = world[np.argmin(np.linalg.norm(world - point, axis=1))]
        assert nearest[0] == point[0]
        assert np.linalg.norm(nearest[1:] - point[1:]) < 1.5  # µm
    stored = open_experiment(bare_store).read_tracks().nodes
    np.testing.assert_allclose(
        np.sort(interpolated.features["error_probability"]),
        np.sort(stored.loc[stored["interpolated"], "false_positive_probability"]))


def test_sample_data_is_a_writable_copy(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "sample")
    kinds = _kinds(viewer)
    assert {"image", "truth"} <= set(kinds)
    store = kinds["image"].metadata["labloop"]["store"]
    assert store != str(SOURCE_SAMPLE.resolve()) and store.endswith("sample.zarr")


def test_writer_saves_tracks_as_geff(tmp_path, store, make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    tracks = _open(viewer, store)["tracks"]
    written = napari.save_layers(str(tmp_path / "lineage.geff"), [tracks], plugin=PLUGIN)
    saved = Lineage.from_geff(written[0])
    original = open_experiment(store).read_tracks()
    assert saved.frame_interval_h == original.frame_interval_h
    mine = saved.edges.set_index(["source", "target"])["probability"].sort_index()
    theirs = original.edges.set_index(["source", "target"])["probability"].sort_index()
    pd.testing.assert_series_equal(mine, theirs, check_names=False)
    np.testing.assert_allclose(saved.nodes.loc[original.nodes.index, ["z", "y", "x"]],
                               original.nodes[["z", "y", "x"]])


# --------------------------------------------------------------------- run steps
def _run(qtbot, widget, step: str) -> list[tuple[str, str]]:
    ended: list[tuple[str, str]] = []
    widget.step_ended.connect(lambda s, status: ended.append((s, status)))
    widget.buttons[step].click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=STEP_TIMEOUT_MS)
    return ended


def test_run_widget_detects_tracks_and_measures(bare_store, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    _open(viewer, bare_store)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Run steps")
    for step in ("detect", "track", "measure"):
        assert _run(qtbot, widget, step) == [(step, "done")], widget.status.text()
        assert widget.progress.value() == widget.progress.maximum() == 1
    experiment = open_experiment(bare_store)
    assert experiment.has(DETECTIONS) and experiment.has(TRACKS) and experiment.has(MORPHOMETRICS)
    kinds = _kinds(viewer)
    assert len(kinds["detections"].data) == len(experiment.read_detections())
    assert len(kinds["tracks"].data) == experiment.read_tracks().n_nodes
    assert not list((bare_store / "labloop").glob(".*tmp-*"))


def test_run_widget_reports_errors_as_one_line(bare_store, make_napari_viewer, qtbot,
                                               monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr("labloop_napari._run_widget.show_error", shown.append)
    viewer = make_napari_viewer()
    _open(viewer, bare_store)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Run steps")
    assert _run(qtbot, widget, "track") == [("track", "error")]
    assert len(shown) == 1 and "\n" not in shown[0]
    assert "no 'detections' result" in shown[0]
    widget._on_message(widget.job or _FakeJob(), {"progress": [3, 10]})
    assert (widget.progress.value(), widget.progress.maximum()) == (3, 10)


class _FakeJob:
    step, store = "calibrate", None


def test_calibrate_runs_in_the_background_and_cancels(store, make_napari_viewer,
                                                      qtbot) -> None:
    viewer = make_napari_viewer()
    _open(viewer, store)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Run steps")
    before = open_experiment(store).record(PREDICTION)
    ended: list[tuple[str, str]] = []
    widget.step_ended.connect(lambda s, status: ended.append((s, status)))
    widget.buttons["calibrate"].click()
    qtbot.wait(4000)  # the viewer stays responsive while the child computes
    assert widget.running and widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert ended == [("calibrate", "cancelled")]
    assert open_experiment(store).record(PREDICTION) == before
    assert not list((store / "labloop").glob(".*tmp-*"))


# ---------------------------------------------------------------------- curation
def test_curation_steps_through_doubtful_links_and_saves(store, make_napari_viewer,
                                                         qtbot) -> None:
    viewer = make_napari_viewer(show=True)
    _open(viewer, store)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Curate links")
    qtbot.waitUntil(widget.isVisible)  # the shortcuts are bound while it is shown
    lineage = open_experiment(store).read_tracks()
    queue = doubtful_links(lineage, widget.threshold.value())
    assert widget.current_link() == (int(queue.source[0]), int(queue.target[0]))
    assert f"{len(queue)} doubtful" in widget.count.text()
    assert viewer.dims.current_step[0] == lineage.nodes.loc[int(queue.target[0]), "t"]
    keys = viewer.window._qt_viewer._key_map_handler
    keys.press_key("N")
    assert widget.current_link() == (int(queue.source[1]), int(queue.target[1]))
    keys.press_key("Shift-N")
    source, target = widget.current_link()
    keys.press_key("K")  # accept
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert [(c.action, c.source, c.target) for c in read_corrections(store)] == [
        ("accept", source, target)]
    curated = open_experiment(store).read_tracks().edges.set_index(["source", "target"])
    assert curated.loc[(source, target), "probability"] == 1.0
    assert len(widget.queue) == len(queue) - 1
    tracks = find_layer(viewer, store, "tracks")
    pinned = tracks.features["node"] == target
    assert tracks.features.loc[pinned, "error_probability"].item() == 0.0
    # relink the next link's source to the nucleus selected in the detections layer
    source, target = widget.current_link()
    detections = find_layer(viewer, store, "detections")
    nodes = open_experiment(store).read_tracks().nodes
    frame = nodes.loc[target, "t"]
    others = detections.features["node"][(detections.data[:, 0] == frame)
                                         & (detections.features["node"] != target)]
    detections.selected_data = {int(others.index[0])}
    keys.press_key("J")
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert read_corrections(store)[-1].new_target == int(others.iloc[0])
    widget.hide()
    assert "K" not in {str(k) for k in viewer.keymap}


# ----------------------------------------------------------------- comparison
def test_prediction_overlay_side_by_side_and_curves(store, make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    _open(viewer, store)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Predicted vs observed")
    assert widget.quantity.currentText() == "cell_count"
    labels = [line.get_label() for line in widget.figure.axes[0].get_lines()]
    assert labels[:2] == ["observed", "predicted"]
    widget.side_by_side.setChecked(True)
    assert grid(viewer).enabled
    kinds = _kinds(viewer)
    layers = list(viewer.layers)
    observed_cell = grid(viewer).position(layers.index(kinds["tracks"]), layers)
    predicted_cell = grid(viewer).position(layers.index(kinds["prediction"]), layers)
    assert observed_cell != predicted_cell
    assert grid(viewer).position(layers.index(kinds["image"]), layers) == observed_cell
    viewer.dims.set_point(0, 10)
    assert widget.marker.get_xdata()[0] == pytest.approx(10 * 0.5)
    widget.overlay.setChecked(True)
    assert not grid(viewer).enabled


# ------------------------------------------------------------------ screenshot
def test_screenshot_shows_the_image_and_the_tracks(store, make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=True)
    kinds = _open(viewer, store)
    for kind in ("detections", "prediction", "prediction_cells"):  # coloured too
        kinds[kind].visible = False
    viewer.dims.set_point(0, 20)
    viewer.dims.set_point(1, 24.0)
    viewer.reset_view()

    def coloured_fraction() -> tuple[float, float]:
        rgb = viewer.screenshot(canvas_only=True)[..., :3].astype(float)
        # tracks are cyan to red (error probability); the image is grey
        return float((np.abs(rgb[..., 2] - rgb[..., 0]) > 60).mean()), float(rgb.std())

    with_tracks, contrast = coloured_fraction()
    kinds["tracks"].visible = False
    without_tracks, _ = coloured_fraction()
    assert contrast > 10  # the grey image is there
    assert with_tracks > 0.005 and with_tracks > 3 * without_tracks
