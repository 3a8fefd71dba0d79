"""Shared fixtures: where the real reference data live (beside the repository), and one
JAX compilation cache for the whole test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

#: set to a folder to keep the compiled programs between test runs; otherwise the run makes
#: a temporary one, shared by its xdist workers (they inherit the variable), removed at its end
CACHE_VARIABLE = "LABLOOP_TEST_JAX_CACHE"
_MADE_CACHE = CACHE_VARIABLE not in os.environ
if _MADE_CACHE:
    os.environ[CACHE_VARIABLE] = tempfile.mkdtemp(prefix="labloop-test-jax-cache-")
#: compiled XLA programs, shared by every test of the run and the CLI subprocesses they
#: start: many tests build the same simulation and fit programs, and compiling them is most
#: of their time (the determinism test: 110 s without, 78 s with; 29 s on a warm cache)
JAX_CACHE = Path(os.environ[CACHE_VARIABLE])
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


def pytest_unconfigure(config: pytest.Config) -> None:
    """The process that made the cache (not an xdist worker) removes it at the end."""
    if _MADE_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(JAX_CACHE, ignore_errors=True)
