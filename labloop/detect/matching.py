"""One-to-one matching of detected and true nucleus centres within a radius (µm).

Used to label candidate peaks for score calibration and to score validation
volumes during training. Pairs closer than the radius are matched by the
Hungarian algorithm (minimum total distance), separately in each connected
group of nearby points so that large frames stay fast.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def match_points(truth_um: np.ndarray, found_um: np.ndarray, radius_um: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Match points one-to-one, minimising total distance, pairs within ``radius_um``.

    Parameters
    ----------
    truth_um, found_um
        ``(N, 3)`` and ``(M, 3)`` positions ``(z, y, x)`` in µm.
    radius_um
        Largest distance of a matched pair.

    Returns
    -------
    truth_index, found_index
        Indices of the matched pairs (equal length).

    Examples
    --------
    >>> match_points(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.5]]), 2.0)
    (array([0]), array([1]))
    """
    truth_um = np.asarray(truth_um, dtype=np.float64).reshape(-1, 3)
    found_um = np.asarray(found_um, dtype=np.float64).reshape(-1, 3)
    n, m = len(truth_um), len(found_um)
    empty = np.zeros(0, dtype=np.int64)
    if n == 0 or m == 0:
        return empty, empty
    pairs = cKDTree(truth_um).sparse_distance_matrix(cKDTree(found_um), radius_um,
                                                      output_type="ndarray")
    if pairs.size == 0:
        return empty, empty
    rows, cols = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    dist = pairs["v"].astype(np.float64)
    graph = coo_matrix((np.ones(rows.size), (rows, cols + n)), shape=(n + m, n + m))
    _, label = connected_components(graph, directed=False)
    component = label[rows]
    truth_out, found_out = [], []
    order = np.argsort(component, kind="stable")
    splits = np.flatnonzero(np.diff(component[order])) + 1
    for group in np.split(order, splits):
        r, c, d = rows[group], cols[group], dist[group]
        ur, ir = np.unique(r, return_inverse=True)
        uc, ic = np.unique(c, return_inverse=True)
        cost = np.full((ur.size, uc.size), 1e6 * max(radius_um, 1.0))
        cost[ir, ic] = d
        a, b = linear_sum_assignment(cost)
        keep = cost[a, b] <= radius_um
        truth_out.append(ur[a[keep]])
        found_out.append(uc[b[keep]])
    return np.concatenate(truth_out), np.concatenate(found_out)


def f1_counts(n_true: int, n_found: int, n_matched: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (1.0 where a ratio is 0/0)."""
    precision = n_matched / n_found if n_found else 1.0
    recall = n_matched / n_true if n_true else 1.0
    f1 = 2 * n_matched / (n_true + n_found) if n_true + n_found else 1.0
    return precision, recall, f1
