"""Sample data: the embedded sample experiment, copied so that the widgets may write to it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from labloop.sample_data import SAMPLE_NAME, sample_store_path
from labloop_napari._layers import LayerData
from labloop_napari._reader import read_experiment


def copy_sample(directory: str | Path | None = None) -> Path:
    """Copy the sample store into ``directory`` (a new temporary folder by default)."""
    directory = Path(tempfile.mkdtemp(prefix="labloop-sample-") if directory is None
                     else directory)
    destination = directory / SAMPLE_NAME
    shutil.copytree(sample_store_path(), destination)
    return destination


def sample_experiment() -> list[LayerData]:
    """npe2 sample-data hook: a fresh copy of the sample experiment, as layers."""
    return read_experiment(copy_sample())
