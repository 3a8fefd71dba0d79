"""Track- and lineage-level probabilities: products along the path.

Treating link errors as independent (the marginals are computed jointly, so this
is the standard mean-field reading), a tracklet is right when all its links are,
and a cell's whole ancestry is right when its tracklet, its mother's division and
every ancestor tracklet are:

    P(tracklet) = Π_{links into and along it} p_link,
    P(lineage of a tracklet) = P(tracklet) · P(division of mother) · P(lineage of mother).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labloop.lineage import Lineage


def track_probabilities(lineage: Lineage) -> pd.DataFrame:
    """Probability that each tracklet, and its whole ancestry, is right.

    Parameters
    ----------
    lineage
        A lineage whose edges carry ``probability`` (and, optionally, whose nodes
        carry ``division_probability``).

    Returns
    -------
    DataFrame
        Indexed by ``track_id`` (as in :meth:`Lineage.tracklets`), columns
        ``parent_track_id``, ``start`` and ``end`` (frames), ``n_links`` (links
        into and along the tracklet), ``probability`` (their product) and
        ``lineage_probability`` (times the mother's division probability and the
        ancestors' lineage probability).

    Examples
    --------
    >>> nodes = pd.DataFrame({"t": [0, 1, 2], "z": 0.0, "y": 0.0, "x": 0.0})
    >>> edges = pd.DataFrame({"source": [0, 1], "target": [1, 2], "probability": [0.9, 0.8]})
    >>> round(float(track_probabilities(Lineage(nodes, edges))["probability"].iloc[0]), 2)
    0.72
    """
    tracklets = lineage.tracklets()
    if len(tracklets) == 0:
        return pd.DataFrame(columns=["parent_track_id", "start", "end", "n_links",
                                     "probability", "lineage_probability"])
    track_of = tracklets["track_id"]
    edges = lineage.edges
    edge_track = track_of.loc[edges["target"].to_numpy()].to_numpy()
    log_p = np.log(np.clip(edges["probability"].to_numpy(), 1e-300, 1.0))
    ids = np.sort(tracklets["track_id"].unique())
    summed = pd.Series(log_p).groupby(edge_track).sum().reindex(ids, fill_value=0.0)
    count = pd.Series(1, index=range(len(edge_track))).groupby(edge_track).sum().reindex(
        ids, fill_value=0)
    t = lineage.nodes["t"]
    frames = pd.DataFrame({"track": track_of.to_numpy(), "t": t.loc[track_of.index].to_numpy()})
    start = frames.groupby("track")["t"].min().reindex(ids)
    end = frames.groupby("track")["t"].max().reindex(ids)
    parent_track = tracklets.groupby("track_id")["parent_track_id"].first().reindex(ids)
    division_log = pd.Series(0.0, index=ids)
    if "division_probability" in lineage.nodes.columns:
        last_node = frames.assign(node=track_of.index.to_numpy()).sort_values("t").groupby(
            "track")["node"].last()
        p_div = lineage.nodes["division_probability"].reindex(last_node.to_numpy()).to_numpy()
        p_div = np.where(np.isfinite(p_div), p_div, 1.0)
        division_log = pd.Series(np.log(np.clip(p_div, 1e-300, 1.0)), index=last_node.index)
    lineage_log = {}
    for track in ids.tolist():  # tracks are numbered in order of first appearance
        parent = int(parent_track[track])
        inherited = 0.0
        if parent > 0:
            inherited = lineage_log[parent] + float(division_log.get(parent, 0.0))
        lineage_log[track] = float(summed[track]) + inherited
    table = pd.DataFrame({
        "parent_track_id": parent_track.to_numpy(),
        "start": start.to_numpy(), "end": end.to_numpy(),
        "n_links": count.to_numpy(),
        "probability": np.exp(summed.to_numpy()),
        "lineage_probability": np.exp([lineage_log[k] for k in ids.tolist()]),
    }, index=pd.Index(ids, name="track_id"))
    return table
