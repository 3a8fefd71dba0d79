"""Conversion of a :class:`Lineage` to napari's tracks layer data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labloop.lineage import Lineage


def to_napari_tracks(lineage: Lineage) -> tuple[np.ndarray, pd.DataFrame, dict[int, list[int]]]:
    """Return ``(data, features, graph)`` for ``napari.layers.Tracks``.

    Returns
    -------
    data
        ``(N, 5)`` array of ``track_id, t, z, y, x`` (µm), sorted by track then time.
    features
        One row per row of ``data``: ``node`` id, ``score``, and
        ``error_probability`` / ``probability`` of the link *into* that node
        (0 / 1 for a track's first node without parent link).
    graph
        ``{track_id: [parent_track_id]}`` for tracks born by division.

    Notes
    -----
    napari draws positions in world units; use ``scale=(1, 1, 1, 1)`` with a
    physical-unit image or divide by the voxel size to overlay on pixels.
    """
    tracklets = lineage.tracklets()
    nodes = lineage.nodes.join(tracklets)
    incoming = lineage.edges.set_index("target")[["probability", "error_probability"]]
    nodes = nodes.join(incoming)
    nodes["probability"] = nodes["probability"].fillna(1.0)
    nodes["error_probability"] = nodes["error_probability"].fillna(0.0)
    nodes = nodes.sort_values(["track_id", "t"], kind="stable")
    data = nodes[["track_id", "t", "z", "y", "x"]].to_numpy(dtype=np.float64)
    features = pd.DataFrame({
        "node": nodes.index.to_numpy(),
        "score": nodes["score"].to_numpy(),
        "probability": nodes["probability"].to_numpy(),
        "error_probability": nodes["error_probability"].to_numpy(),
    })
    parents = tracklets.drop_duplicates("track_id").set_index("track_id")["parent_track_id"]
    graph = {int(track): [int(parent)] for track, parent in parents.items() if parent > 0}
    return data, features, graph
