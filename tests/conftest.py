"""Shared fixtures: where the real reference data live (beside the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data`` relative to the repository, as laid out for developers and CI
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CE_GEFF = SHARED_DATA / "ctc-Fluo-N3DH-CE-01-GT.geff"
#: voxel size (z, y, x) in µm and frame interval of Fluo-N3DH-CE (see its README)
CE_VOXEL_SIZE_UM = (1.0, 0.09, 0.09)
CE_FRAME_INTERVAL_H = 1 / 60


@pytest.fixture(scope="session")
def ce_geff_path() -> Path:
    """Path of the real C. elegans ground truth; skips the test where it is absent."""
    if not CE_GEFF.exists():
        pytest.skip(f"real reference data not found at {CE_GEFF}")
    return CE_GEFF
