"""Cheap checks that a store's image is whole before hours of work start on it.

Zarr reads a chunk that is missing from disk as its fill value (zeros) without
complaint, so a deleted chunk would silently become an empty frame. A frame
none of whose chunks is stored at all is never a real acquisition (cameras have
an offset and noise), so it is reported as missing. A truncated or garbled chunk
is caught when the frame is decoded (:meth:`labloop.io.images.Image.frame`).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from labloop.errors import InputError
from labloop.io.store import Experiment


def missing_frames(experiment: Experiment) -> list[int]:
    """Frames of the full-resolution image that have no chunk stored on disk.

    Parameters
    ----------
    experiment
        An experiment store whose image metadata have been read successfully.

    Returns
    -------
    list of int
        Frame indices (empty when every frame has data).
    """
    import zarr

    group = zarr.open_group(str(experiment.path), mode="r")
    attrs: dict[str, Any] = dict(group.attrs)
    meta: dict[str, Any] = dict(attrs.get("ome", attrs))["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in meta["axes"]]
    array_path = str(meta["datasets"][0]["path"])
    array = group[array_path]
    assert isinstance(array, zarr.Array)
    storage = array.shards or array.chunks
    grid = [math.ceil(n / c) for n, c in zip(array.shape, storage, strict=True)]
    t_axis = axes.index("t") if "t" in axes else None
    root = Path(experiment.path) / array_path
    n_frames = array.shape[t_axis] if t_axis is not None else 1
    missing = []
    for t in range(n_frames):
        ranges = [range(g) for g in grid]
        if t_axis is not None:
            ranges[t_axis] = range(t // storage[t_axis], t // storage[t_axis] + 1)
        if not any((root / array.metadata.encode_chunk_key(coords)).exists()
                   for coords in itertools.product(*ranges)):
            missing.append(t)
    return missing


def check_frames_stored(experiment: Experiment) -> None:
    """Raise :class:`InputError` naming the first frames whose data are missing."""
    missing = missing_frames(experiment)
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", …" if len(missing) > 5 else "")
        raise InputError(f"image data missing on disk for frame(s) {shown} (deleted chunk?)",
                         experiment.path)
