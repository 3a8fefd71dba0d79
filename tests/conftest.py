"""Shared fixtures: where the real reference data live (beside the repository), and one
JAX compilation cache for the whole test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jax
import pytest

#: compiled XLA programs, shared by every test of the session and the CLI subprocesses they
#: start: many tests build the same simulation and fit programs, and compiling them is most
#: of their time (the determinism test: 110 s without, 78 s with; 29 s on a warm cache)
JAX_CACHE = Path(tempfile.mkdtemp(prefix="labloop-test-jax-cache-"))
for option, value in {"jax_compilation_cache_dir": str(JAX_CACHE),
                      "jax_persistent_cache_min_compile_time_secs": 0.0,
                      "jax_persistent_cache_min_entry_size_bytes": 0}.items():
    jax.config.update(option, value)
    os.environ[option.upper()] = str(value)

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


@pytest.fixture(scope="session", autouse=True)
def _remove_jax_cache() -> Iterator[None]:
    """Delete the session's compilation cache when the session ends."""
    yield
    shutil.rmtree(JAX_CACHE, ignore_errors=True)
