"""The embedded sample experiment is what its recorded settings produce."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labloop.io.store import open_experiment
from labloop.sample_data import SAMPLE_CONFIG, SOURCE_SAMPLE, make_sample_store, sample_store_path


def test_embedded_sample_is_reproducible(tmp_path) -> None:
    """Regenerating the sample gives the committed store: code and data have not drifted
    (if this fails after a change to labloop.synth, run ``python -m labloop.sample_data``)."""
    assert sample_store_path() == SOURCE_SAMPLE
    committed = open_experiment(SOURCE_SAMPLE)
    fresh = make_sample_store(tmp_path / "sample.zarr")
    assert committed.image.shape == (SAMPLE_CONFIG.frames, *SAMPLE_CONFIG.shape)
    assert committed.image.voxel_size_um == SAMPLE_CONFIG.voxel_size_um
    assert committed.image.frame_interval_h == SAMPLE_CONFIG.frame_interval_h
    np.testing.assert_array_equal(committed.image.data.compute(), fresh.image.data.compute())
    pd.testing.assert_frame_equal(committed.read_truth().nodes, fresh.read_truth().nodes)
    pd.testing.assert_frame_equal(committed.read_truth().edges, fresh.read_truth().edges)


def test_embedded_sample_is_a_growing_cluster() -> None:
    truth = open_experiment(SOURCE_SAMPLE).read_truth()
    counts = truth.nodes.groupby("t").size()
    assert truth.n_divisions >= 20
    assert counts.iloc[-1] > 1.8 * counts.iloc[0]
