"""The real C. elegans ground truth (Cell Tracking Challenge Fluo-N3DH-CE 01) as a Lineage."""

from __future__ import annotations

import numpy as np
import pytest

from labloop import InputError, Lineage
from tests.conftest import CE_FRAME_INTERVAL_H, CE_VOXEL_SIZE_UM

pytestmark = pytest.mark.realdata


def test_ce_ground_truth_loads_in_micrometres(ce_geff_path, tmp_path) -> None:
    with pytest.raises(InputError, match="no physical unit"):
        Lineage.from_geff(ce_geff_path)
    ce = Lineage.from_geff(ce_geff_path, voxel_size_um=CE_VOXEL_SIZE_UM,
                           frame_interval_h=CE_FRAME_INTERVAL_H)
    assert ce.n_nodes == 23_802
    assert ce.n_divisions == 358
    assert ce.n_frames == 195
    assert ce.frame_interval_h == pytest.approx(1 / 60)
    # the axes' pixel ranges (x 105-614, y 91-436, z 7-28) times the voxel size
    np.testing.assert_allclose(ce.nodes[["z", "y", "x"]].min(), [7.0, 91 * 0.09, 105 * 0.09])
    np.testing.assert_allclose(ce.nodes[["z", "y", "x"]].max(), [28.0, 436 * 0.09, 614 * 0.09])
    assert ce.out_degree().max() == 2
    # the embryo grows from a handful of cells to a few hundred
    counts = ce.nodes.groupby("t").size()
    assert counts.iloc[0] < 10 < 300 < counts.iloc[-1]
    ce.to_geff(tmp_path / "ce.geff")
    back = Lineage.from_geff(tmp_path / "ce.geff")
    assert (back.n_nodes, back.n_edges, back.n_divisions) == (ce.n_nodes, ce.n_edges, 358)
    np.testing.assert_allclose(back.positions_um(), ce.positions_um())
