"""Checking a detections table and putting it in frame order.

A detections table has one row per nucleus: ``t`` (whole frame number ≥ 0),
``z, y, x`` (µm), optionally ``score`` (0–1), ``intensity`` and ``volume_um3``.
Rows may come in any order; they are sorted by frame (stable) and the original
index labels become the node ids of the lineage when they are unique integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.lineage import NODE_COLUMNS, SPATIAL_COLUMNS

#: optional per-nucleus measurements used as cues when present
OPTIONAL_CUES = ("intensity", "volume_um3")


@dataclass(frozen=True)
class Detections:
    """Detections in frame order, as arrays.

    Attributes
    ----------
    table
        The checked table, sorted by ``t`` (stable), indexed by node id.
    t
        Frame of each nucleus, ``(N,)`` int.
    pos
        Positions ``(N, 3)`` (z, y, x) in µm.
    score
        Detection confidence ``(N,)`` in [0, 1] (1 where not given).
    cues
        Optional measurements (``intensity``, ``volume_um3``) present in the table.
    frame_start
        ``frame_start[k]`` is the first row of frame ``frames[k]``; rows of a frame
        are contiguous.
    frames
        Sorted distinct frames.
    """

    table: pd.DataFrame
    t: np.ndarray
    pos: np.ndarray
    score: np.ndarray
    cues: dict[str, np.ndarray]
    frames: np.ndarray
    frame_start: np.ndarray

    @property
    def n(self) -> int:
        """Number of detections."""
        return len(self.t)

    def rows_of(self, frame: int) -> np.ndarray:
        """Row indices of a frame (empty if it has none)."""
        k = np.searchsorted(self.frames, frame)
        if k >= len(self.frames) or self.frames[k] != frame:
            return np.zeros(0, dtype=np.int64)
        return np.arange(self.frame_start[k], self.frame_start[k + 1])


def check_detections(detections: pd.DataFrame) -> Detections:
    """Validate a detections table and return it in frame order.

    Raises
    ------
    InputError
        If it is not a table, lacks ``t, z, y, x``, has NaN/infinite values,
        negative or fractional frames, scores outside [0, 1], or the same nucleus
        twice (same frame and position).
    """
    if not isinstance(detections, pd.DataFrame):
        raise InputError(f"detections must be a table (DataFrame) with columns "
                         f"{', '.join(NODE_COLUMNS)}, got {type(detections).__name__}")
    missing = [c for c in NODE_COLUMNS if c not in detections.columns]
    if missing:
        raise InputError(f"detections lack the column(s) {', '.join(missing)}")
    table = detections.copy()
    try:
        t = table["t"].to_numpy(dtype=np.float64)
        pos = table[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64)
        score = (table["score"].to_numpy(dtype=np.float64) if "score" in table.columns
                 else np.ones(len(table)))
    except (TypeError, ValueError) as error:
        raise InputError(f"detections have non-numeric t, z, y, x or score: {error}") from None
    bad = ~np.isfinite(pos).all(axis=1) | ~np.isfinite(t) | ~np.isfinite(score)
    if bad.any():
        raise InputError(f"{int(bad.sum())} detection(s) have NaN or infinite t, z, y, x or "
                         f"score (first at row {int(np.flatnonzero(bad)[0])})")
    if np.any(np.mod(t, 1) != 0) or np.any(t < 0):
        raise InputError("detection frames (t) must be whole numbers ≥ 0")
    if np.any((score < 0) | (score > 1)):
        raise InputError("detection scores must lie in [0, 1]")
    duplicated = pd.DataFrame({"t": t, "z": pos[:, 0], "y": pos[:, 1], "x": pos[:, 2]}
                              ).duplicated()
    if duplicated.any():
        raise InputError(f"{int(duplicated.sum())} detection(s) repeat another one of the same "
                         f"frame at the same position; remove duplicates first")
    index = table.index
    if not (pd.api.types.is_integer_dtype(index.dtype) and index.is_unique):
        index = pd.RangeIndex(len(table))
    table.index = pd.Index(np.asarray(index, dtype=np.int64), name="node")
    table["t"] = t.astype(np.int64)
    table["score"] = score
    for column in SPATIAL_COLUMNS:
        table[column] = table[column].astype(np.float64)
    order = np.argsort(t, kind="stable")
    table = table.iloc[order]
    t_sorted = table["t"].to_numpy()
    frames, starts = np.unique(t_sorted, return_index=True)
    cues = {}
    for name in OPTIONAL_CUES:
        if name in table.columns:
            values = table[name].to_numpy(dtype=np.float64)
            if np.isfinite(values).all() and np.all(values > 0):
                cues[name] = values
    return Detections(table=table, t=t_sorted, pos=table[list(SPATIAL_COLUMNS)].to_numpy(),
                      score=table["score"].to_numpy(), cues=cues, frames=frames,
                      frame_start=np.append(starts, len(table)).astype(np.int64))
