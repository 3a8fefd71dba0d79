"""The :class:`Lineage`: cells over time as a directed graph in physical units.

Nodes are nuclei kept by the tracker (one row per nucleus and frame); directed
edges go forward in time (``t → t+1``, or ``t → t+2`` for a closed gap). A node
with two out-edges is a division. Positions are in micrometres, time in frames;
``frame_interval_h`` converts frames to hours.

The tables are plain :class:`pandas.DataFrame` objects so that users can filter,
plot and join them; :class:`Lineage` only checks them once at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.units import check_frame_interval

if TYPE_CHECKING:
    import networkx as nx

SPATIAL_COLUMNS = ("z", "y", "x")
NODE_COLUMNS = ("t", *SPATIAL_COLUMNS)
EDGE_COLUMNS = ("source", "target")


def _as_node_table(nodes: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in NODE_COLUMNS if c not in nodes.columns]
    if missing:
        raise InputError(f"lineage nodes lack the column(s) {', '.join(missing)}")
    table = nodes.copy()
    table.index = pd.Index(np.asarray(table.index, dtype=np.int64), name="node")
    if not table.index.is_unique:
        raise InputError("lineage node ids are not unique")
    coords = table[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(coords).all():
        bad = int((~np.isfinite(coords)).any(axis=1).sum())
        raise InputError(f"{bad} lineage node(s) have NaN or infinite coordinates")
    t = table["t"].to_numpy()
    if not np.isfinite(t.astype(np.float64)).all() or np.any(np.mod(t, 1) != 0) or np.any(t < 0):
        raise InputError("lineage node times must be non-negative whole frame numbers")
    table["t"] = t.astype(np.int64)
    for column in SPATIAL_COLUMNS:
        table[column] = table[column].astype(np.float64)
    if "score" not in table.columns:
        table["score"] = 1.0
    return table


def _as_edge_table(edges: pd.DataFrame, nodes: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in EDGE_COLUMNS if c not in edges.columns]
    if missing:
        raise InputError(f"lineage edges lack the column(s) {', '.join(missing)}")
    table = edges.reset_index(drop=True).copy()
    table["source"] = table["source"].astype(np.int64)
    table["target"] = table["target"].astype(np.int64)
    known = nodes.index
    unknown = ~table["source"].isin(known) | ~table["target"].isin(known)
    if unknown.any():
        raise InputError(f"{int(unknown.sum())} lineage edge(s) refer to unknown nodes")
    t_source = nodes.loc[table["source"], "t"].to_numpy()
    t_target = nodes.loc[table["target"], "t"].to_numpy()
    if np.any(t_target <= t_source):
        raise InputError(
            f"{int(np.sum(t_target <= t_source))} lineage edge(s) do not go forward in time"
        )
    if table.duplicated(["source", "target"]).any():
        raise InputError("lineage has repeated edges")
    if table["target"].duplicated().any():
        raise InputError("a lineage node has more than one parent")
    if "probability" not in table.columns:
        table["probability"] = 1.0
    table["probability"] = table["probability"].astype(np.float64)
    table["error_probability"] = 1.0 - table["probability"]
    return table


@dataclass(frozen=True, eq=False)
class Lineage:
    """Tracked nuclei and their links, in micrometres and frames.

    Parameters
    ----------
    nodes
        One row per nucleus and frame, indexed by an integer node id, with
        columns ``t`` (frame), ``z, y, x`` (µm) and optionally ``score`` (0–1
        detection confidence, default 1), ``division_probability`` and any
        other per-node measurement.
    edges
        One row per link with columns ``source``, ``target`` (node ids) and
        optionally ``probability`` (the link's calibrated probability of being
        right, default 1). ``error_probability`` is always ``1 − probability``.
    frame_interval_h
        Time between frames in hours, or ``None`` when unknown.
    attrs
        Free-form provenance (e.g. parameters of the tracker), kept in GEFF
        metadata.

    Examples
    --------
    >>> import pandas as pd
    >>> nodes = pd.DataFrame({"t": [0, 1, 1], "z": [0.0] * 3, "y": [0.0, 1, -1], "x": [0.0] * 3})
    >>> edges = pd.DataFrame({"source": [0, 0], "target": [1, 2]})
    >>> Lineage(nodes, edges, frame_interval_h=0.25).n_divisions
    1
    """

    nodes: pd.DataFrame
    edges: pd.DataFrame
    frame_interval_h: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        nodes = _as_node_table(self.nodes)
        edges = _as_edge_table(self.edges, nodes)
        check_frame_interval(self.frame_interval_h)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", edges)

    # ------------------------------------------------------------------ shape
    @property
    def n_nodes(self) -> int:
        """Number of nuclei (node count over all frames)."""
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        """Number of links."""
        return len(self.edges)

    @property
    def n_frames(self) -> int:
        """Number of frames spanned, ``max(t) − min(t) + 1`` (0 if empty)."""
        if self.n_nodes == 0:
            return 0
        return int(self.nodes["t"].max() - self.nodes["t"].min() + 1)

    def out_degree(self) -> pd.Series:
        """Number of children of each node (0, 1 or 2), indexed by node id."""
        counts = self.edges["source"].value_counts()
        return counts.reindex(self.nodes.index, fill_value=0).astype(np.int64)

    def parents(self) -> pd.Series:
        """Parent node id of each node, ``-1`` where there is none."""
        parent = pd.Series(-1, index=self.nodes.index, dtype=np.int64, name="parent")
        parent.loc[self.edges["target"].to_numpy()] = self.edges["source"].to_numpy()
        return parent

    @property
    def divisions(self) -> pd.Index:
        """Ids of nodes with two or more children (mother cells at division)."""
        degree = self.out_degree()
        return degree.index[degree >= 2]

    @property
    def n_divisions(self) -> int:
        """Number of divisions."""
        return len(self.divisions)

    def positions_um(self) -> np.ndarray:
        """Node positions as an ``(N, 3)`` array ``(z, y, x)`` in µm."""
        return self.nodes[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64)

    def tracklets(self) -> pd.DataFrame:
        """Split the lineage into tracklets (division-free cell segments).

        A tracklet starts at a node without parent or whose parent does not have
        exactly one child, and continues along single-child links.

        Returns
        -------
        DataFrame
            Indexed by node id, columns ``track_id`` (1, 2, ... in order of first
            appearance) and ``parent_track_id`` (the tracklet the cell divided from,
            0 if none), the Cell Tracking Challenge convention.
        """
        order = self.nodes.sort_values(["t"], kind="stable").index.to_numpy()
        parent = self.parents()
        degree = self.out_degree()
        parent_of = parent.to_dict()
        degree_of = degree.to_dict()
        track_of: dict[int, int] = {}
        parent_track: dict[int, int] = {}
        next_id = 1
        for node in order.tolist():
            p = parent_of[node]
            if p >= 0 and degree_of[p] == 1:
                track_of[node] = track_of[p]
                continue
            track_of[node] = next_id
            parent_track[next_id] = track_of[p] if p >= 0 else 0
            next_id += 1
        track_ids = np.array([track_of[n] for n in self.nodes.index], dtype=np.int64)
        return pd.DataFrame(
            {"track_id": track_ids,
             "parent_track_id": [parent_track[t] for t in track_ids]},
            index=self.nodes.index,
        )

    # ----------------------------------------------------------- conversions
    def to_networkx(self) -> nx.DiGraph:
        """Return a :class:`networkx.DiGraph` with node and edge attributes."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(
            (int(i), row) for i, row in zip(
                self.nodes.index, self.nodes.to_dict(orient="records"), strict=True)
        )
        props = self.edges.drop(columns=list(EDGE_COLUMNS)).to_dict(orient="records")
        graph.add_edges_from(
            (int(s), int(t), p) for s, t, p in zip(
                self.edges["source"], self.edges["target"], props, strict=True)
        )
        return graph

    @classmethod
    def from_geff(
        cls,
        path: str | Path,
        voxel_size_um: tuple[float, float, float] | None = None,
        frame_interval_h: float | None = None,
    ) -> Lineage:
        """Read a GEFF graph (see :func:`labloop.io.geff.read_geff`)."""
        from labloop.io.geff import read_geff

        return read_geff(path, voxel_size_um=voxel_size_um, frame_interval_h=frame_interval_h)

    def to_geff(self, path: str | Path, overwrite: bool = True) -> None:
        """Write the lineage as GEFF, atomically (see :func:`labloop.io.geff.write_geff`)."""
        from labloop.io.geff import write_geff

        write_geff(self, path, overwrite=overwrite)

    def to_napari(self) -> tuple[np.ndarray, pd.DataFrame, dict[int, list[int]]]:
        """Return napari's tracks layer triple ``(data, features, graph)``.

        See :func:`labloop.io.napari_tracks.to_napari_tracks`.
        """
        from labloop.io.napari_tracks import to_napari_tracks

        return to_napari_tracks(self)

    def to_ctc(self, directory: str | Path, **kwargs: Any) -> None:
        """Export in Cell Tracking Challenge format (see :func:`labloop.io.ctc.write_ctc`)."""
        from labloop.io.ctc import write_ctc

        write_ctc(self, directory, **kwargs)

    def to_csv(self, directory: str | Path) -> None:
        """Export ``nodes.csv`` and ``edges.csv`` (see :func:`labloop.io.tables.write_csv`)."""
        from labloop.io.tables import write_csv

        write_csv(self, directory)

    def with_edges(self, edges: pd.DataFrame) -> Lineage:
        """Return a copy with a new edge table (same nodes, interval and attrs)."""
        return Lineage(self.nodes, edges, self.frame_interval_h, dict(self.attrs))

    def every(self, step: int) -> Lineage:
        """Keep every ``step``-th frame, linking each kept nucleus to its descendants
        ``step`` frames later (two of them where it divided in between); frames are
        renumbered ``t // step`` and the interval multiplied by ``step``.

        Raises
        ------
        InputError
            ``step`` below 1.
        """
        if step < 1:
            raise InputError(f"the frame step must be at least 1, got {step}")
        if step == 1:
            return self
        start = int(self.nodes["t"].min())
        kept = self.nodes.index[(self.nodes["t"] - start) % step == 0]
        children = self.edges.groupby("source")["target"].apply(list).to_dict()
        t_of = self.nodes["t"].to_dict()
        sources, targets = [], []
        for node in kept:
            goal = t_of[node] + step
            frontier = [node]
            while pending := [n for n in frontier if t_of[n] < goal]:
                frontier = [n for n in frontier if t_of[n] >= goal] + [
                    c for n in pending for c in children.get(n, []) if t_of[c] <= goal]
            for target in frontier:
                if t_of[target] == goal:
                    sources.append(node)
                    targets.append(target)
        nodes = self.nodes.loc[kept].copy()
        nodes["t"] = (nodes["t"] - start) // step
        edges = pd.DataFrame({"source": np.asarray(sources, np.int64),
                              "target": np.asarray(targets, np.int64)})
        interval = None if self.frame_interval_h is None else self.frame_interval_h * step
        return Lineage(nodes, edges, interval, dict(self.attrs))

    def __repr__(self) -> str:
        return (f"Lineage({self.n_nodes} nodes, {self.n_edges} edges, "
                f"{self.n_divisions} divisions, {self.n_frames} frames)")
