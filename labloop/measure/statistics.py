"""Tissue statistics of one realisation of a lineage (positions in µm, time in hours).

Each function takes a :class:`~labloop.measure.draws.Realisation` and returns
per-frame values as a :class:`pandas.Series` indexed by frame, or one number for
the whole movie. Cells are weighted by the realisation's bootstrap weights
where the statistic estimates a mean or a rate; counts are never weighted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from labloop.lineage import SPATIAL_COLUMNS, Lineage
from labloop.measure.draws import Realisation

#: semi-axis of a uniform ellipsoid (3D) / ellipse (2D) from the variance along it:
#: variance = a²/5 in 3D and a²/4 in 2D
UNIFORM_ELLIPSOID_FACTOR = {3: 5.0, 2: 4.0}


def mother_ids(realisation: Realisation) -> pd.Index:
    """Nodes with two or more children in this realisation."""
    counts = realisation.edges["source"].value_counts()
    return counts.index[counts >= 2]


def cell_counts(realisation: Realisation) -> pd.Series:
    """Number of nuclei in each frame."""
    return realisation.nodes.groupby("t").size().astype(np.float64)


def division_counts(realisation: Realisation, frames: pd.Index) -> pd.Series:
    """Number of divisions between frame ``t`` and ``t + 1``, indexed by ``t``."""
    mothers = realisation.nodes.loc[mother_ids(realisation), "t"]
    return mothers.value_counts().reindex(frames, fill_value=0).astype(np.float64)


def division_events(realisation: Realisation, groups: pd.Series,
                    frame_interval_h: float) -> pd.DataFrame:
    """Divisions and cell-hours at risk per group of nuclei (e.g. per frame or distance bin).

    Parameters
    ----------
    groups
        Group label of each node (index: node id); nodes labelled NaN are left out.

    Returns
    -------
    DataFrame
        Indexed by group: ``divisions`` (count) and ``exposure_h`` (cell-hours).
        The rate is ``divisions / exposure_h``.
    """
    groups = groups.loc[realisation.nodes.index].dropna()
    exposure = groups.groupby(groups).size() * frame_interval_h
    mothers = mother_ids(realisation).intersection(groups.index)
    divisions = groups.loc[mothers].groupby(groups.loc[mothers]).size()
    return pd.DataFrame({"divisions": divisions.reindex(exposure.index, fill_value=0),
                         "exposure_h": exposure}).astype(np.float64)


def shape_statistics(realisation: Realisation, is_2d: bool,
                     min_cells: int) -> pd.DataFrame:
    """Principal axes of the cluster in each frame (bootstrap-weighted).

    Frames with fewer than ``min_cells`` distinct nuclei give NaN: a handful of
    points has no meaningful shape (three are always planar).

    Returns
    -------
    DataFrame
        Indexed by frame: ``axis_1_um ≥ axis_2_um ≥ axis_3_um`` (semi-axes of the
        uniform ellipsoid with the same second moments), ``elongation``
        (``axis_1 / axis_2``), ``direction_z/y/x`` (unit vector of the longest
        axis, sign chosen with a positive largest component) and
        ``radius_of_gyration_um``.
    """
    positions, groups = _frames(realisation.nodes)
    weight = realisation.weight.to_numpy()
    factor = UNIFORM_ELLIPSOID_FACTOR[2 if is_2d else 3]
    rows = []
    for group in groups:
        chunk_positions, chunk_weight = positions[group], weight[group]
        total = chunk_weight.sum()
        if total <= 0 or np.count_nonzero(chunk_weight) < min_cells:
            rows.append([np.nan] * 8)
            continue
        centre = (chunk_weight[:, None] * chunk_positions).sum(0) / total
        offsets = chunk_positions - centre
        covariance = (chunk_weight[:, None, None] * offsets[:, :, None]
                      * offsets[:, None, :]).sum(0) / total
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        eigenvalues = np.clip(eigenvalues[::-1], 0.0, None)
        direction = eigenvectors[:, -1]
        direction = direction * np.sign(direction[np.argmax(np.abs(direction))])
        axes = np.sqrt(factor * eigenvalues)
        gyration = np.sqrt(eigenvalues.sum())
        elongation = axes[0] / axes[1] if axes[1] > 0 else np.nan
        rows.append([*axes, elongation, *direction, gyration])
    frames = [int(realisation.nodes["t"].iloc[group[0]]) for group in groups]
    return pd.DataFrame(rows, index=pd.Index(frames, name="t"), columns=[
        "axis_1_um", "axis_2_um", "axis_3_um", "elongation", "direction_z", "direction_y",
        "direction_x", "radius_of_gyration_um"])


def link_speeds(realisation: Realisation, frame_interval_h: float) -> pd.DataFrame:
    """Migration speed of every link (µm/h) with its source frame and bootstrap weight.

    Links out of a dividing mother are left out: daughters jump apart at
    mitosis, which is not migration.
    """
    nodes, edges = realisation.nodes, realisation.edges
    edges = edges[~edges["source"].isin(mother_ids(realisation))]
    source = nodes.loc[edges["source"]]
    target = nodes.loc[edges["target"]]
    step = target[list(SPATIAL_COLUMNS)].to_numpy() - source[list(SPATIAL_COLUMNS)].to_numpy()
    frames = target["t"].to_numpy() - source["t"].to_numpy()
    speed = np.linalg.norm(step, axis=1) / (frames * frame_interval_h)
    return pd.DataFrame({"t": source["t"].to_numpy(), "value": speed,
                         "weight": realisation.weight.loc[edges["source"]].to_numpy()})


def weighted_mean_by_frame(values: pd.DataFrame, frames: pd.Index) -> pd.Series:
    """Weighted mean of column ``value`` per frame ``t`` (columns ``t, value, weight``)."""
    weighted = (values["value"] * values["weight"]).groupby(values["t"]).sum()
    total = values["weight"].groupby(values["t"]).sum()
    return (weighted / total.where(total > 0)).reindex(frames)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Quantile ``q`` (0–1) of ``values`` with non-negative ``weights``."""
    keep = weights > 0
    if not keep.any():
        return float("nan")
    order = np.argsort(values[keep])
    cumulative = np.cumsum(weights[keep][order])
    return float(values[keep][order][np.searchsorted(cumulative, q * cumulative[-1])])


def _frames(nodes: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Positions ``(N, 3)`` and the row indices of each frame, for per-frame numpy work."""
    positions = nodes[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64)
    frames = nodes["t"].to_numpy()
    order = np.argsort(frames, kind="stable")
    _, starts = np.unique(frames[order], return_index=True)
    return positions, np.split(order, starts[1:])


def nearest_neighbour_distances(realisation: Realisation) -> pd.DataFrame:
    """Distance (µm) from each nucleus to its nearest neighbour in the same frame."""
    nodes = realisation.nodes
    positions, groups = _frames(nodes)
    distance = np.full(len(nodes), np.nan)
    for rows in groups:
        if len(rows) >= 2:
            nearest, _ = cKDTree(positions[rows]).query(positions[rows], k=2)
            distance[rows] = nearest[:, 1]
    return pd.DataFrame({"t": nodes["t"].to_numpy(), "value": distance,
                         "weight": realisation.weight.to_numpy()})


def landmark_distances(realisation: Realisation, landmark: str | tuple[float, float, float],
                       source_column: str = "source") -> pd.Series:
    """Distance (µm) of each nucleus from the landmark in its frame.

    Parameters
    ----------
    landmark
        ``"centre"`` (the cluster centroid of the frame), ``"axis"`` (the
        frame's longest principal axis through the centroid), ``"source"`` (the
        nearest node flagged in the boolean column ``source_column``), or a
        fixed point ``(z, y, x)`` in µm.
    """
    nodes = realisation.nodes
    positions, groups = _frames(nodes)
    if not isinstance(landmark, str):
        return pd.Series(np.linalg.norm(positions - np.asarray(landmark, float), axis=1),
                         index=nodes.index)
    is_source = (nodes[source_column].to_numpy(dtype=bool) if landmark == "source"
                 else None)
    distance = np.full(len(nodes), np.nan)
    for rows in groups:
        points = positions[rows]
        offsets = points - points.mean(axis=0)
        if landmark == "centre":
            distance[rows] = np.linalg.norm(offsets, axis=1)
        elif landmark == "axis":
            _, vectors = np.linalg.eigh(offsets.T @ offsets)
            along = offsets @ vectors[:, -1]
            distance[rows] = np.linalg.norm(offsets - along[:, None] * vectors[:, -1], axis=1)
        elif is_source is not None and is_source[rows].any():
            distance[rows], _ = cKDTree(points[is_source[rows]]).query(points)
    return pd.Series(distance, index=nodes.index)


def cell_cycle_durations(realisation: Realisation, frame_interval_h: float) -> pd.DataFrame:
    """Durations (h) of complete cycles: from birth by division to the next division.

    Only cycles that start and end inside the movie count, so a movie not much
    longer than a cycle under-represents long cycles (right censoring).
    """
    lineage = Lineage(realisation.nodes, realisation.edges)
    tracklets = realisation.nodes[["t"]].join(lineage.tracklets())
    mothers = set(mother_ids(realisation))
    grouped = tracklets.groupby("track_id")
    first = grouped["t"].min()
    last_node = tracklets.reset_index().sort_values("t").groupby("track_id")["node"].last()
    born_by_division = grouped["parent_track_id"].first() > 0
    ends_in_division = last_node.isin(mothers)
    complete = born_by_division & ends_in_division
    last = grouped["t"].max()
    durations = (last[complete] + 1 - first[complete]) * frame_interval_h
    weights = realisation.weight.loc[last_node[complete]].to_numpy()
    return pd.DataFrame({"duration_h": durations.to_numpy(), "weight": weights})
