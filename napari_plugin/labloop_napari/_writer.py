"""Writer: a tracks layer saved as a GEFF lineage (positions in µm, time in frames)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.lineage import SPATIAL_COLUMNS, Lineage
from labloop_napari._layers import META_KEY


def lineage_from_tracks(data: np.ndarray, features: pd.DataFrame | None = None,
                        graph: Mapping[int, list[int]] | None = None,
                        scale: tuple[float, ...] | None = None,
                        translate: tuple[float, ...] | None = None,
                        frame_interval_h: float | None = None) -> Lineage:
    """A :class:`~labloop.Lineage` from napari tracks data, the inverse of ``Lineage.to_napari``.

    Parameters
    ----------
    data
        ``(N, 5)`` rows ``track_id, t, z, y, x`` (or ``(N, 4)`` without ``z``).
    features
        One row per row of ``data``; ``node`` gives node ids (else row numbers),
        ``score`` and ``probability`` (of the link into the node) are kept.
    graph
        ``{track_id: [parent_track_id]}``: each track starts with a link from the
        last node of its parent.
    scale, translate
        The layer's transform; spatial columns are mapped to world coordinates
        (µm), time stays in frames.
    frame_interval_h
        Hours between frames.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] not in (4, 5):
        raise InputError(f"tracks data must have 4 or 5 columns (track_id, t, (z,) y, x), "
                         f"got shape {data.shape}")
    n_spatial = data.shape[1] - 2
    factor = np.ones(data.shape[1]) if scale is None else np.asarray(scale, dtype=np.float64)
    offset = (np.zeros(data.shape[1]) if translate is None
              else np.asarray(translate, dtype=np.float64))
    world = data[:, 2:] * factor[-n_spatial:] + offset[-n_spatial:]
    features = pd.DataFrame(index=range(len(data))) if features is None \
        else features.reset_index(drop=True)
    ids = features["node"].to_numpy(dtype=np.int64) if "node" in features.columns \
        else np.arange(len(data))
    nodes = pd.DataFrame({"t": data[:, 1], "z": 0.0}, index=ids)
    for i, column in enumerate(SPATIAL_COLUMNS[-n_spatial:]):
        nodes[column] = world[:, i]
    nodes = nodes[["t", *SPATIAL_COLUMNS]]
    if "score" in features.columns:
        nodes["score"] = features["score"].to_numpy()
    table = pd.DataFrame({"track": data[:, 0].astype(np.int64), "t": data[:, 1], "node": ids,
                          "probability": features["probability"].to_numpy()
                          if "probability" in features.columns else 1.0})
    table = table.sort_values(["track", "t"], kind="stable")
    same = table["track"].to_numpy()[1:] == table["track"].to_numpy()[:-1]
    edges = pd.DataFrame({"source": table["node"].to_numpy()[:-1][same],
                          "target": table["node"].to_numpy()[1:][same],
                          "probability": table["probability"].to_numpy()[1:][same]})
    first = table.drop_duplicates("track", keep="first").set_index("track")
    last = table.drop_duplicates("track", keep="last").set_index("track")
    births = []
    for track, parents in (graph or {}).items():
        if len(parents) != 1:
            raise InputError(f"track {track} has {len(parents)} parents; a lineage allows one")
        births.append({"source": last.loc[parents[0], "node"],
                       "target": first.loc[track, "node"],
                       "probability": first.loc[track, "probability"]})
    edges = pd.concat([edges, pd.DataFrame(births, columns=edges.columns)], ignore_index=True)
    return Lineage(nodes, edges, frame_interval_h=frame_interval_h)


def write_tracks(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer hook: save one tracks layer as GEFF at ``path`` (``.geff``)."""
    info = meta.get("metadata", {}).get(META_KEY, {})
    lineage = lineage_from_tracks(data, meta.get("features"), meta.get("graph"),
                                  meta.get("scale"), meta.get("translate"),
                                  info.get("frame_interval_h"))
    destination = Path(path)
    if destination.suffix != ".geff":
        destination = destination.with_name(destination.name + ".geff")
    lineage.to_geff(destination)
    return [str(destination)]
