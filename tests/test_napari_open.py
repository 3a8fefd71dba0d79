"""A store written by labloop opens in napari through the plain OME-Zarr reader."""

from __future__ import annotations

import numpy as np
import pytest

from labloop import Lineage
from labloop.sample_data import SOURCE_SAMPLE

napari = pytest.importorskip("napari")
pytest.importorskip("napari_ome_zarr")


def test_sample_store_opens_in_napari(make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(SOURCE_SAMPLE), plugin="napari-ome-zarr")
    assert len(layers) == 1
    image = layers[0]
    shape = image.data[0].shape if image.multiscale else image.data.shape
    assert tuple(shape) == (24, 24, 112, 112)
    np.testing.assert_allclose(image.scale, [0.5, 2.0, 0.5, 0.5])  # hours, µm
    truth = Lineage.from_geff(SOURCE_SAMPLE / "labloop" / "truth.geff")
    data, features, graph = truth.to_napari()
    data[:, 1] *= truth.frame_interval_h  # frames to hours, the image's time unit
    viewer.add_tracks(data, features=features, graph=graph, name="truth")
    viewer.dims.set_point(0, 5.0)
    viewer.dims.set_point(1, 24.0)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True)
    rgb = shot[..., :3].astype(float)
    # the picture holds both the grey image and coloured track lines
    assert rgb.std() > 10
    coloured = np.abs(rgb[..., 2] - rgb[..., 0]) > 60
    assert coloured.mean() > 0.002
