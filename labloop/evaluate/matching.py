"""One-to-one matching of detections to ground truth within a radius, frame by frame.

Two nuclei can match only if they are in the same frame and their centres are at
most ``radius_um`` apart (Euclidean distance in ``z, y, x`` µm, boundary
included). Among all one-to-one matchings, the one with the **most matches** is
chosen, and among those the one with the **smallest total distance**.

The problem is solved exactly and scales to whole embryos: candidate pairs come
from a KD-tree radius search per frame, the bipartite candidate graph is split into
connected components (nuclei that cannot compete for the same partner are solved
apart), lone pairs are matched directly, and each larger component is a small
linear assignment problem (:func:`scipy.optimize.linear_sum_assignment`) with
cost ``d − L`` for a candidate at distance ``d`` and 0 for "no match", where the
bonus ``L > (k + 1)·radius`` makes one more match always worth more than any
saving in distance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from labloop.errors import InputError
from labloop.evaluate._scores import precision_recall_f1, to_jsonable
from labloop.lineage import NODE_COLUMNS, SPATIAL_COLUMNS, Lineage

if TYPE_CHECKING:
    from collections.abc import Iterator

#: columns of the table returned by :func:`match_detections`
MATCH_COLUMNS = ("truth", "predicted", "t", "distance_um")


def check_radius(radius_um: float) -> float:
    """Return the matching radius as a float; raise :class:`InputError` if invalid."""
    radius = float(radius_um)
    if not (np.isfinite(radius) and radius >= 0):
        raise InputError(f"the matching radius must be a non-negative number of µm, "
                         f"got {radius_um}")
    return radius


def _frames_and_positions(table: pd.DataFrame | Lineage, name: str
                          ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Check a nuclei table; return it with its frames ``(N,)`` and positions ``(N, 3)`` µm."""
    if isinstance(table, Lineage):
        table = table.nodes
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"the {name} nuclei must be a table (DataFrame) with columns "
                         f"{', '.join(NODE_COLUMNS)}, got {type(table).__name__}")
    missing = [c for c in NODE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"the {name} nuclei lack the column(s) {', '.join(missing)}")
    try:
        frames = table["t"].to_numpy(dtype=np.float64)
        positions = table[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"the {name} nuclei have non-numeric t, z, y or x: {error}") from None
    if not np.isfinite(positions).all():
        bad = int((~np.isfinite(positions)).any(axis=1).sum())
        raise InputError(f"{bad} {name} nuclei have NaN or infinite coordinates")
    if not np.isfinite(frames).all() or np.any(np.mod(frames, 1) != 0):
        raise InputError(f"the {name} nuclei frames (t) must be whole numbers")
    return table, frames.astype(np.int64), positions


def _n_rows(table: pd.DataFrame | Lineage) -> int:
    """Number of nuclei in a table or lineage."""
    return len(table.nodes) if isinstance(table, Lineage) else len(table)


def _rows_by_frame(frames: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each frame."""
    if len(frames) == 0:
        return {}
    order = np.argsort(frames, kind="stable")
    values, starts = np.unique(frames[order], return_index=True)
    return dict(zip(values.tolist(), np.split(order, starts[1:]), strict=True))


def _candidate_pairs(frames_a: np.ndarray, pos_a: np.ndarray, frames_b: np.ndarray,
                     pos_b: np.ndarray, radius_um: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All same-frame pairs ``(i, j)`` with ``|a_i − b_j| ≤ radius``, and their distances."""
    rows_a, rows_b = _rows_by_frame(frames_a), _rows_by_frame(frames_b)
    found_i, found_j, found_d = [], [], []
    for frame in sorted(rows_a.keys() & rows_b.keys()):
        ia, ib = rows_a[frame], rows_b[frame]
        pairs = cKDTree(pos_a[ia]).sparse_distance_matrix(
            cKDTree(pos_b[ib]), radius_um, output_type="ndarray")
        found_i.append(ia[pairs["i"]])
        found_j.append(ib[pairs["j"]])
        found_d.append(pairs["v"])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def _groups(labels: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the positions of each distinct label."""
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    yield from np.split(order, starts[1:])


def _assign_component(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray,
                      radius_um: float) -> np.ndarray:
    """Positions (into the component's pairs) of its maximum, then closest, matching."""
    row_ids, local_r = np.unique(rows, return_inverse=True)
    col_ids, local_c = np.unique(cols, return_inverse=True)
    # one more match must beat any saving in distance: L > (k + 1) · radius
    bonus = (min(len(row_ids), len(col_ids)) + 1) * radius_um + 1.0
    cost = np.zeros((len(row_ids), len(col_ids)))
    pair_of = np.full(cost.shape, -1, dtype=np.int64)
    cost[local_r, local_c] = dist - bonus
    pair_of[local_r, local_c] = np.arange(len(rows))
    r, c = linear_sum_assignment(cost)
    chosen = pair_of[r, c]
    return chosen[chosen >= 0]


def match_pairs(n_a: int, n_b: int, pair_a: np.ndarray, pair_b: np.ndarray,
                distance: np.ndarray, radius_um: float) -> np.ndarray:
    """Choose a maximum one-to-one matching of least total distance among candidate pairs.

    Parameters
    ----------
    n_a, n_b
        Number of items on each side.
    pair_a, pair_b
        Candidate pairs, as indices into each side, shape ``(P,)``.
    distance
        Distance of each candidate pair (µm), at most ``radius_um``.
    radius_um
        The matching radius (µm), which bounds the distances.

    Returns
    -------
    ndarray of int
        Positions into the candidate arrays of the chosen pairs, sorted.
    """
    if len(pair_a) == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pair_a)), (pair_a, n_a + pair_b)),
                       shape=(n_a + n_b, n_a + n_b))
    _, labels = connected_components(graph, directed=False)
    pair_label = labels[pair_a]
    size = np.bincount(pair_label)[pair_label]
    chosen = [np.flatnonzero(size == 1)]  # a lone candidate pair is always matched
    crowded = np.flatnonzero(size > 1)
    for group in _groups(pair_label[crowded]):
        members = crowded[group]
        picked = _assign_component(pair_a[members], pair_b[members], distance[members],
                                   radius_um)
        chosen.append(members[picked])
    return np.sort(np.concatenate(chosen))


def match_detections(truth: pd.DataFrame | Lineage, predicted: pd.DataFrame | Lineage,
                     radius_um: float) -> pd.DataFrame:
    """Match predicted nuclei to truth nuclei one-to-one, frame by frame, within a radius.

    Parameters
    ----------
    truth, predicted
        Nuclei tables with columns ``t`` (frame), ``z, y, x`` (µm), e.g. detections or
        :attr:`Lineage.nodes` (a :class:`~labloop.lineage.Lineage` is also accepted).
    radius_um
        Largest centre-to-centre distance (µm, inclusive) at which two nuclei of the
        same frame can match.

    Returns
    -------
    DataFrame
        One row per match, columns ``truth`` and ``predicted`` (index labels of the
        matched rows in each table), ``t`` (frame) and ``distance_um``; sorted by
        truth row. The matching has the most matches possible and, among those, the
        least total distance.

    Raises
    ------
    InputError
        If a table lacks ``t, z, y, x``, has NaN coordinates or fractional frames, or
        the radius is negative.

    Examples
    --------
    >>> truth = pd.DataFrame({"t": [0], "z": [0.0], "y": [0.0], "x": [0.0]})
    >>> predicted = pd.DataFrame({"t": [0, 0], "z": [0.0, 0.0], "y": [0.0, 1.0],
    ...                           "x": [0.5, 0.0]})
    >>> match_detections(truth, predicted, radius_um=2.0)[["truth", "predicted"]].values.tolist()
    [[0, 0]]
    """
    radius = check_radius(radius_um)
    truth, t_truth, p_truth = _frames_and_positions(truth, "truth")
    predicted, t_pred, p_pred = _frames_and_positions(predicted, "predicted")
    i, j, d = _candidate_pairs(t_truth, p_truth, t_pred, p_pred, radius)
    chosen = match_pairs(len(truth), len(predicted), i, j, d, radius)
    i, j, d = i[chosen], j[chosen], d[chosen]
    order = np.argsort(i, kind="stable")
    i, j, d = i[order], j[order], d[order]
    return pd.DataFrame({
        "truth": truth.index.to_numpy()[i],
        "predicted": predicted.index.to_numpy()[j],
        "t": t_truth[i],
        "distance_um": d.astype(np.float64),
    }, columns=list(MATCH_COLUMNS))


def detection_metrics(truth: pd.DataFrame | Lineage, predicted: pd.DataFrame | Lineage,
                      radius_um: float) -> dict[str, float | int | None]:
    """Score detections against truth nuclei by one-to-one matching within a radius.

    Parameters
    ----------
    truth, predicted
        Nuclei tables with columns ``t``, ``z, y, x`` (µm); see :func:`match_detections`.
    radius_um
        Matching radius (µm, inclusive).

    Returns
    -------
    dict
        ``tp`` (matched pairs), ``fp`` (unmatched predictions), ``fn`` (unmatched truth),
        ``n_truth``, ``n_predicted``, ``precision``, ``recall``, ``f1`` and
        ``mean_distance_um`` (mean distance of matched pairs, ``None`` without matches).
        Empty inputs follow :mod:`labloop.evaluate._scores`: precision is 1 with no
        predictions, recall 1 with no truth, F1 is 1 when both are empty and 0 when
        only one is.

    Examples
    --------
    >>> truth = pd.DataFrame({"t": [0], "z": [0.0], "y": [0.0], "x": [0.0]})
    >>> predicted = pd.DataFrame({"t": [0, 0], "z": [0.0, 0.0], "y": [0.0, 1.0],
    ...                           "x": [0.5, 0.0]})
    >>> scores = detection_metrics(truth, predicted, radius_um=2.0)
    >>> scores["tp"], scores["fp"], scores["fn"], scores["precision"]
    (1, 1, 0, 0.5)
    """
    matches = match_detections(truth, predicted, radius_um)
    n_truth, n_pred, tp = _n_rows(truth), _n_rows(predicted), len(matches)
    mean_distance = float(matches["distance_um"].mean()) if tp else None
    return to_jsonable({
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_truth - tp,
        "n_truth": n_truth,
        "n_predicted": n_pred,
        **precision_recall_f1(tp, n_pred, n_truth),
        "mean_distance_um": mean_distance,
    })
