"""CSV export and import of a :class:`Lineage` (``nodes.csv`` and ``edges.csv``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labloop.errors import InputError
from labloop.io.atomic import atomic_path
from labloop.lineage import Lineage

NODES_CSV = "nodes.csv"
EDGES_CSV = "edges.csv"


def write_csv(lineage: Lineage, directory: str | Path) -> None:
    """Write ``nodes.csv`` (``node, t, z, y, x, ...`` in µm, plus ``track_id``,
    ``parent_track_id``) and ``edges.csv`` (``source, target, probability,
    error_probability``) into ``directory``, each file atomically.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    nodes = lineage.nodes.join(lineage.tracklets())
    with atomic_path(directory / NODES_CSV) as tmp:
        nodes.to_csv(tmp, index_label="node")
    with atomic_path(directory / EDGES_CSV) as tmp:
        lineage.edges.to_csv(tmp, index=False)


def read_csv(directory: str | Path, frame_interval_h: float | None = None) -> Lineage:
    """Read a lineage written by :func:`write_csv` (positions in µm)."""
    directory = Path(directory)
    for name in (NODES_CSV, EDGES_CSV):
        if not (directory / name).exists():
            raise InputError(f"missing {name}", directory)
    nodes = pd.read_csv(directory / NODES_CSV, index_col="node")
    nodes = nodes.drop(columns=["track_id", "parent_track_id"], errors="ignore")
    edges = pd.read_csv(directory / EDGES_CSV).drop(columns=["error_probability"],
                                                    errors="ignore")
    try:
        return Lineage(nodes, edges, frame_interval_h)
    except InputError as error:
        raise InputError(error.problem, directory) from None
