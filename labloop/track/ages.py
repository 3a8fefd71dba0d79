"""Cell-cycle age of every detection in a lineage: the cue of the tracker's second pass.

A nucleus that divided a few frames ago does not divide again, and on positions
alone a young nucleus next to a dividing one can look like the mother (its own
child and a neighbour's daughter form a plausible pair). The tracker therefore
solves twice: the first most-probable lineage gives every detection its age
(frames since its track began), and the division model of the second pass reads
the mother's age in cell cycles.

The cycle is estimated from the first lineage itself, ``ln 2 / r`` with ``r`` the
divisions per nucleus and frame (the doubling time of an exponentially growing
population), so the cue needs no frame interval and transfers between movies.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: ages are capped at this many cycles (older carries no more information)
MAX_AGE_CYCLES = 2.0


@dataclass(frozen=True)
class CycleAges:
    """Age of each detection in a lineage.

    Attributes
    ----------
    cycles
        ``(N,)`` frames since the detection's track began, over the estimated
        cycle, capped at :data:`MAX_AGE_CYCLES`; a lower bound where the track did
        not begin at a division.
    born_by_division
        ``(N,)`` whether the track began as a daughter (the age is then exact).
    cycle_frames
        The estimated cell cycle in frames.
    """

    cycles: np.ndarray
    born_by_division: np.ndarray
    cycle_frames: float


def estimated_cycle_frames(n_divisions: int, n_nuclei: int, n_frames: int) -> float:
    """Cell cycle ``ln 2 / r`` in frames, with ``r`` divisions per nucleus and frame.

    Without divisions the cycle is taken as twice the movie (no nucleus is old
    enough to be expected to divide), keeping the estimate finite.
    """
    if n_divisions == 0 or n_nuclei == 0:
        return 2.0 * max(n_frames, 1)
    return float(np.log(2.0) * n_nuclei / n_divisions)


def lineage_ages(t: np.ndarray, source: np.ndarray, target: np.ndarray,
                 real: np.ndarray | None = None) -> CycleAges:
    """Ages of detections (rows, in frame order) linked by ``source → target``.

    Parameters
    ----------
    t
        ``(N,)`` frame of each detection, non-decreasing.
    source, target
        The lineage's links (detection rows); a row has at most one parent.
    real
        ``(N,)`` detections that are part of the lineage (default all): the
        division rate counts only these.

    Returns
    -------
    CycleAges
    """
    n = len(t)
    real = np.ones(n, dtype=bool) if real is None else real
    parent = np.full(n, -1, dtype=np.int64)
    parent[target] = source
    n_children = np.bincount(source, minlength=n)
    born_by_division = np.zeros(n, dtype=bool)
    frames_old = np.zeros(n, dtype=np.int64)
    frames, start = np.unique(t, return_index=True)
    bounds = np.append(start, n)
    for lo, hi in itertools.pairwise(bounds):
        rows = np.arange(lo, hi)
        p = parent[rows]
        linked = p >= 0
        daughter = linked & (n_children[np.maximum(p, 0)] >= 2)
        continuing = linked & ~daughter
        born_by_division[rows[daughter]] = True
        frames_old[rows[continuing]] = (frames_old[p[continuing]]
                                        + t[rows[continuing]] - t[p[continuing]])
        born_by_division[rows[continuing]] = born_by_division[p[continuing]]
    cycle = estimated_cycle_frames(int((n_children[real] >= 2).sum()), int(real.sum()),
                                   len(frames))
    return CycleAges(cycles=np.minimum(frames_old / cycle, MAX_AGE_CYCLES),
                     born_by_division=born_by_division, cycle_frames=cycle)
