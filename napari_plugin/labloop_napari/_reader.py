"""Reader: a labloop experiment store opens as image, detections, tracks and prediction.

Only folders with labloop's results group (``labloop/zarr.json``) are claimed;
plain OME-Zarr images are left to napari's own readers (napari-ome-zarr).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from labloop.io.store import RESULTS_GROUP, open_experiment
from labloop_napari._layers import LayerData, store_layers


def is_experiment_store(path: str | Path) -> bool:
    """True for a zarr folder with an image at its root and labloop's results group."""
    path = Path(path)
    return (path / "zarr.json").is_file() and (path / RESULTS_GROUP / "zarr.json").is_file()


def read_experiment(path: str | Path | list[str]) -> list[LayerData]:
    """Layer data of an experiment store (see :mod:`labloop_napari._layers`)."""
    path = path[0] if isinstance(path, list) else path
    return store_layers(open_experiment(path))


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: :func:`read_experiment` for a labloop store, ``None`` otherwise."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_experiment if is_experiment_store(path) else None
