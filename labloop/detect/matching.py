"""One-to-one matching of detected and true nucleus centres within a radius (µm).

Used to label candidate peaks for score calibration and to score validation
volumes during training: the same matching as :mod:`labloop.evaluate` (most
matches, then least total distance), on bare position arrays of one volume.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from labloop.evaluate.matching import match_pairs


def match_points(truth_um: np.ndarray, found_um: np.ndarray, radius_um: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Match points one-to-one within ``radius_um``: most pairs, then least total distance.

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
    empty = np.zeros(0, dtype=np.int64)
    if len(truth_um) == 0 or len(found_um) == 0:
        return empty, empty
    pairs = cKDTree(truth_um).sparse_distance_matrix(cKDTree(found_um), radius_um,
                                                      output_type="ndarray")
    rows, cols = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    chosen = match_pairs(len(truth_um), len(found_um), rows, cols,
                         pairs["v"].astype(np.float64), radius_um)
    return rows[chosen], cols[chosen]


def f1_counts(n_true: int, n_found: int, n_matched: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (1.0 where a ratio is 0/0)."""
    precision = n_matched / n_found if n_found else 1.0
    recall = n_matched / n_true if n_true else 1.0
    f1 = 2 * n_matched / (n_true + n_found) if n_true + n_found else 1.0
    return precision, recall, f1
