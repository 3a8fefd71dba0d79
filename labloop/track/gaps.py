"""Closed gaps as interpolated nuclei: every link of a lineage one frame long.

With gap closing the tracker may link a nucleus at frame ``t`` to one at ``t+2``
over a detection the detector missed. :func:`fill_gaps` puts the missed nucleus
back: each link spanning ``k > 1`` frames becomes ``k − 1`` nuclei on the straight
line between its ends (node prop ``interpolated`` true, ``score`` the gap link's
probability: the nucleus is there if the gap is right) joined by
``k`` one-frame links that carry the gap link's probability. Tracks then have no
holes, cell counts per frame include the nucleus that was not detected, and
link-level scores compare like with like (a truth track has one link per frame).
:func:`collapse_gaps` is the inverse (curation edits the detections' links).
"""

from __future__ import annotations

import itertools

import pandas as pd

from labloop.lineage import SPATIAL_COLUMNS, Lineage

#: node prop marking a nucleus put on a closed gap rather than detected
INTERPOLATED = "interpolated"


def fill_gaps(lineage: Lineage, first_id: int | None = None) -> Lineage:
    """The lineage with every link longer than one frame replaced by interpolated nuclei.

    Parameters
    ----------
    lineage
        Any lineage (e.g. a tracker's with ``t → t+2`` links).
    first_id
        Node id of the first interpolated nucleus (the next ones count up); default
        one more than the largest node id. Pass one more than the largest
        *detection* id to keep the ids of a movie's interpolated nuclei stable.

    Returns
    -------
    Lineage
        Nodes gain a boolean ``interpolated`` column; an interpolated nucleus has
        ``score`` equal to its gap link's probability and, where the lineage has
        these columns, ``division_probability`` 0 (it has one child) and
        ``false_positive_probability`` equal to the gap link's error probability.
        Every edge spans one frame (``frames`` = 1); the links of a gap keep its
        ``probability`` and any other edge column.
    """
    nodes, edges = lineage.nodes, lineage.edges
    span = (nodes.loc[edges["target"], "t"].to_numpy()
            - nodes.loc[edges["source"], "t"].to_numpy())
    filled_nodes = nodes.copy()
    if INTERPOLATED not in filled_nodes.columns:
        filled_nodes[INTERPOLATED] = False
    gaps = edges[span > 1].sort_values(["source", "target"])  # ids independent of row order
    next_id = int(nodes.index.max()) + 1 if first_id is None else int(first_id)
    xyz = list(SPATIAL_COLUMNS)
    new_rows, chain_rows = [], []
    for row, gap in gaps.iterrows():
        steps = int(span[row])
        start, end = nodes.loc[gap["source"]], nodes.loc[gap["target"]]
        ids = list(range(next_id, next_id + steps - 1))
        next_id += steps - 1
        first, last = start[xyz].to_numpy(float), end[xyz].to_numpy(float)
        for k, node in enumerate(ids, start=1):
            position = first + (last - first) * k / steps
            new_rows.append({"node": node, "t": int(start["t"]) + k,
                             **dict(zip(xyz, position, strict=True)),
                             "score": gap["probability"], INTERPOLATED: True,
                             "division_probability": 0.0,
                             "false_positive_probability": gap["error_probability"]})
        ends = [int(gap["source"]), *ids, int(gap["target"])]
        chain_rows += [{**gap.to_dict(), "source": a, "target": b}
                       for a, b in itertools.pairwise(ends)]
    if new_rows:
        new = pd.DataFrame(new_rows).set_index("node")
        new = new[[c for c in new.columns if c in filled_nodes.columns]]
        filled_nodes = pd.concat([filled_nodes, new]).sort_values("t", kind="stable")
        edges = pd.concat([edges[span <= 1], pd.DataFrame(chain_rows)], ignore_index=True)
    if "frames" in edges.columns:
        edges = edges.assign(frames=1)
    return Lineage(filled_nodes, edges, lineage.frame_interval_h, lineage.attrs)


def collapse_gaps(lineage: Lineage) -> Lineage:
    """The inverse of :func:`fill_gaps`: interpolated nuclei removed, their links rejoined.

    Each chain ``source → interpolated … → target`` becomes one link
    ``source → target`` with the columns of the chain's first link (``frames`` the
    chain's length). A lineage without interpolated nuclei is returned unchanged.
    """
    nodes, edges = lineage.nodes, lineage.edges
    interpolated = _interpolated(lineage)
    if not interpolated:
        return lineage
    ends = gap_ends(lineage)
    kept = edges[~edges["source"].isin(interpolated)].copy()
    into = kept["target"].isin(interpolated).to_numpy()
    kept.loc[into, "target"] = [ends.get(node, (node, node))[1]
                                for node in kept.loc[into, "target"].tolist()]
    kept = kept[~kept["target"].isin(interpolated)]  # a chain that ends on an interpolated one
    if "frames" in kept.columns:
        kept["frames"] = (nodes.loc[kept["target"], "t"].to_numpy()
                          - nodes.loc[kept["source"], "t"].to_numpy())
    real = nodes[~nodes.index.isin(interpolated)].drop(columns=INTERPOLATED)
    return Lineage(real, kept, lineage.frame_interval_h, lineage.attrs)


def _interpolated(lineage: Lineage) -> set[int]:
    nodes = lineage.nodes
    if INTERPOLATED not in nodes.columns:
        return set()
    return set(nodes.index[nodes[INTERPOLATED].to_numpy(dtype=bool)].tolist())


def gap_ends(lineage: Lineage) -> dict[int, tuple[int, int]]:
    """For each interpolated nucleus, the detected ends ``(source, target)`` of its gap."""
    interpolated = _interpolated(lineage)
    edges = lineage.edges
    child = dict(zip(edges["source"].tolist(), edges["target"].tolist(), strict=True))
    ends: dict[int, tuple[int, int]] = {}
    starts = edges[~edges["source"].isin(interpolated) & edges["target"].isin(interpolated)]
    for source, first in zip(starts["source"].tolist(), starts["target"].tolist(), strict=True):
        chain, node = [], first
        while node in interpolated and node in child:  # an interpolated nucleus has one child
            chain.append(node)
            node = child[node]
        ends.update({member: (source, node) for member in chain})
    return ends
