"""Count-based scores with one convention for empty inputs, and JSON-safe values.

Convention (used by every metric in :mod:`labloop.evaluate`): a ratio whose
denominator is zero is *vacuously perfect*, so

- precision = TP / (TP + FP) is 1 when nothing was predicted (no false claims),
- recall = TP / (TP + FN) is 1 when there is nothing to find,
- F1 = 2 TP / (2 TP + FP + FN) is 1 when both sides are empty and 0 when exactly
  one side is empty.

None of these is ever NaN, so scores can be compared and averaged safely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: value of a ratio whose denominator is zero (nothing to get wrong)
VACUOUS_SCORE = 1.0


def ratio(numerator: float, denominator: float, empty: float = VACUOUS_SCORE) -> float:
    """Return ``numerator / denominator``, or ``empty`` when the denominator is 0."""
    if denominator == 0:
        return float(empty)
    return float(numerator) / float(denominator)


def precision_recall_f1(tp: int, n_predicted: int, n_truth: int) -> dict[str, float]:
    """Precision, recall and F1 from true positives and the sizes of both sides.

    Parameters
    ----------
    tp
        Number of predicted items matched to a truth item (one-to-one).
    n_predicted, n_truth
        Number of predicted and of truth items (so FP = n_predicted − tp and
        FN = n_truth − tp).

    Returns
    -------
    dict
        ``precision``, ``recall`` and ``f1``, following the module's convention
        for empty inputs.

    Examples
    --------
    >>> precision_recall_f1(9, 9, 10)["recall"]
    0.9
    >>> precision_recall_f1(0, 0, 0)
    {'precision': 1.0, 'recall': 1.0, 'f1': 1.0}
    """
    return {
        "precision": ratio(tp, n_predicted),
        "recall": ratio(tp, n_truth),
        "f1": ratio(2 * tp, n_predicted + n_truth),
    }


def to_jsonable(value: Any) -> Any:
    """Convert numbers, arrays and containers to plain JSON types; NaN becomes ``None``.

    Examples
    --------
    >>> to_jsonable({"a": np.float32(0.5), "b": [np.nan, np.int64(3)], "c": np.array([True])})
    {'a': 0.5, 'b': [None, 3], 'c': [True]}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value
