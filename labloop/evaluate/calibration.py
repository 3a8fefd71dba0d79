"""Are the error probabilities calibrated? Reliability table and expected calibration error.

Predictions (e.g. the links of a lineage) carry an error probability ``p``; the
truth says which are wrong. Predictions are binned by ``p`` into ``n_bins`` equal
bins of ``[0, 1]`` (the last bin includes 1). For bin ``b`` with ``n_b`` predictions,
mean error probability ``p̄_b`` and observed error rate ``o_b``,

    ECE = Σ_b (n_b / N) · |p̄_b − o_b|,

which is 0 for perfectly calibrated probabilities up to sampling noise; that noise is
large for few predictions (a few hundred divisions), so ``ece_sampling_median`` and
``ece_sampling_p90`` report the ECE that perfectly calibrated probabilities would
show on the same predictions (outcomes drawn from the probabilities themselves).
Calibration also matters for curation: ``wrong_in_top5pct`` is the share of all
wrong predictions found among the 5 % with the highest error probability, the
share a curator stepping through links "most doubtful first" would fix after
checking 5 % of them.
"""

from __future__ import annotations

import math

import numpy as np

from labloop.errors import InputError
from labloop.evaluate._scores import VACUOUS_SCORE, ratio, to_jsonable

#: number of equal-width probability bins of the reliability table
DEFAULT_N_BINS = 10
#: share of predictions, most doubtful first, behind ``wrong_in_top5pct``
TOP_DOUBTFUL_FRACTION = 0.05
#: draws of outcomes behind the sampling spread of the ECE
SAMPLING_DRAWS = 200


def _check_inputs(error_probability: np.ndarray, is_wrong: np.ndarray,
                  n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(error_probability, dtype=np.float64)
    wrong = np.asarray(is_wrong)
    if p.ndim != 1 or wrong.ndim != 1 or len(p) != len(wrong):
        raise InputError(f"error probabilities and wrong flags must be two 1-D arrays of equal "
                         f"length, got shapes {p.shape} and {wrong.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        raise InputError("error probabilities must lie in [0, 1] (no NaN)")
    if wrong.dtype != bool:
        if not np.all(np.isin(wrong, (0, 1))):
            raise InputError("wrong flags must be booleans (or 0/1)")
        wrong = wrong.astype(bool)
    if not (isinstance(n_bins, int | np.integer) and n_bins >= 1):
        raise InputError(f"the number of bins must be a whole number ≥ 1, got {n_bins}")
    return p, wrong


def share_of_wrong_among_most_doubtful(error_probability: np.ndarray, is_wrong: np.ndarray,
                                       fraction: float = TOP_DOUBTFUL_FRACTION) -> float:
    """Share of wrong predictions among the ``fraction`` with the highest error probability.

    The top set holds ``ceil(fraction · N)`` predictions. Where predictions tied at its
    boundary do not all fit, each contributes in proportion to the places left (the
    expected value under a random order of ties), so the result never depends on the
    input order. With no wrong prediction the share is 1 (nothing left to find).

    Parameters
    ----------
    error_probability
        Error probability of each prediction, shape ``(N,)``, in ``[0, 1]``.
    is_wrong
        Whether each prediction is wrong, shape ``(N,)``.
    fraction
        Share of predictions checked, most doubtful first, in ``(0, 1]``.

    Returns
    -------
    float
        Share of all wrong predictions in the top set, in ``[0, 1]``.

    Examples
    --------
    >>> p = np.linspace(0.0, 0.95, 20)          # the last is the most doubtful
    >>> wrong = np.zeros(20, bool); wrong[[0, 5, 10, 19]] = True
    >>> share_of_wrong_among_most_doubtful(p, wrong)   # 1 of 4 wrong in the top 1 of 20
    0.25
    """
    p, wrong = _check_inputs(error_probability, is_wrong, DEFAULT_N_BINS)
    if not 0 < fraction <= 1:
        raise InputError(f"the share of predictions checked must be in (0, 1], got {fraction}")
    n_wrong = int(wrong.sum())
    if n_wrong == 0:
        return VACUOUS_SCORE
    k = math.ceil(fraction * len(p))
    boundary = np.sort(p)[::-1][k - 1]
    above = p > boundary
    tied = p == boundary
    places_left = k - int(above.sum())
    caught = wrong[above].sum() + wrong[tied].sum() * places_left / tied.sum()
    return float(caught / n_wrong)


def _bin_edges_and_index(p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of ``n_bins`` equal bins of [0, 1] and the bin of each probability."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return edges, np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)


def _binned_sums(p: np.ndarray, wrong: np.ndarray, bins: np.ndarray, n_bins: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per bin: sum of error probabilities and number wrong."""
    return (np.bincount(bins, weights=p, minlength=n_bins),
            np.bincount(bins, weights=wrong.astype(np.float64), minlength=n_bins))


def _ece(sum_p: np.ndarray, sum_wrong: np.ndarray, n: int) -> float:
    return ratio(np.abs(sum_p - sum_wrong).sum(), n, empty=0.0)


def ece_sampling_spread(error_probability: np.ndarray, n_bins: int = DEFAULT_N_BINS,
                        draws: int = SAMPLING_DRAWS, seed: int = 0) -> np.ndarray:
    """ECEs that perfectly calibrated probabilities show on these predictions.

    Each draw marks every prediction wrong with its own error probability and
    scores the ECE; the spread is what sampling alone puts on an observed ECE.

    Parameters
    ----------
    error_probability
        Error probability of each prediction, shape ``(N,)``, in ``[0, 1]``.
    n_bins
        Number of equal-width bins of ``[0, 1]``.
    draws
        Number of draws of outcomes.
    seed
        Seed of the draws.

    Returns
    -------
    ndarray
        ``(draws,)`` ECEs, sorted.
    """
    p, _ = _check_inputs(error_probability, np.zeros(len(error_probability), bool), n_bins)
    _, bins = _bin_edges_and_index(p, n_bins)
    rng = np.random.default_rng(seed)
    return np.sort([_ece(*_binned_sums(p, rng.uniform(size=len(p)) < p, bins, n_bins), len(p))
                    for _ in range(draws)])


def calibration(error_probability: np.ndarray, is_wrong: np.ndarray,
                n_bins: int = DEFAULT_N_BINS) -> dict[str, object]:
    """Reliability table and expected calibration error of error probabilities.

    Parameters
    ----------
    error_probability
        Predicted probability that each prediction is wrong, shape ``(N,)``, in ``[0, 1]``.
    is_wrong
        Whether each prediction is actually wrong, shape ``(N,)`` (bool or 0/1).
    n_bins
        Number of equal-width bins of ``[0, 1]``.

    Returns
    -------
    dict
        - ``n``: number of predictions; ``n_wrong``: number actually wrong;
        - ``bin_edges`` (``n_bins + 1`` values), and per bin ``count``,
          ``mean_error_probability`` and ``observed_error_rate`` (``None`` for an
          empty bin);
        - ``ece``: expected calibration error (count-weighted mean of
          ``|mean_error_probability − observed_error_rate|``), 0 when ``n = 0``;
        - ``ece_sampling_median``, ``ece_sampling_p90``: median and 90th percentile
          of the ECE of perfectly calibrated probabilities on these predictions
          (:func:`ece_sampling_spread`): an observed ECE inside that spread is
          consistent with calibration;
        - ``mce``: largest of those gaps over non-empty bins (0 when ``n = 0``);
        - ``brier``: mean of ``(p − is_wrong)²`` (0 when ``n = 0``);
        - ``expected_wrong``: sum of the error probabilities, to compare with
          ``n_wrong``;
        - ``wrong_in_top5pct``: share of wrong predictions among the 5 % most
          doubtful (see :func:`share_of_wrong_among_most_doubtful`).

    Examples
    --------
    >>> result = calibration(np.full(10, 0.1), np.arange(10) < 4)
    >>> round(result["ece"], 6)   # says 10 % wrong, 40 % are
    0.3
    """
    p, wrong = _check_inputs(error_probability, is_wrong, n_bins)
    edges, bins = _bin_edges_and_index(p, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    sum_p, sum_wrong = _binned_sums(p, wrong, bins, n_bins)
    filled = count > 0
    mean_p = np.full(n_bins, np.nan)
    observed = np.full(n_bins, np.nan)
    mean_p[filled] = sum_p[filled] / count[filled]
    observed[filled] = sum_wrong[filled] / count[filled]
    gaps = np.abs(mean_p[filled] - observed[filled])
    n = len(p)
    spread = ece_sampling_spread(p, n_bins)
    return to_jsonable({
        "n": n,
        "n_wrong": int(wrong.sum()),
        "bin_edges": edges,
        "count": count,
        "mean_error_probability": mean_p,
        "observed_error_rate": observed,
        "ece": _ece(sum_p, sum_wrong, n),
        "ece_sampling_median": float(np.median(spread)),
        "ece_sampling_p90": float(np.quantile(spread, 0.9)),
        "mce": float(gaps.max()) if n else 0.0,
        "brier": ratio(np.sum((p - wrong) ** 2), n, empty=0.0),
        "expected_wrong": float(p.sum()),
        "wrong_in_top5pct": share_of_wrong_among_most_doubtful(p, wrong),
    })
