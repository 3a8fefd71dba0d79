"""Tissue morphometrics with uncertainty carried over from tracking.

:func:`measure` turns a :class:`~labloop.Lineage` into a tidy table of cell
counts, division rates (per frame, pooled and by distance from a landmark),
cluster shape (principal axes, elongation and its direction, radius of
gyration), motion (speeds), neighbour distances and cell-cycle durations, each
with an interval over realisations of the lineage (:mod:`.draws`).
"""

from labloop.measure.api import UNITS, MeasureSettings, measure, wide
from labloop.measure.store import measure_store

__all__ = ["UNITS", "MeasureSettings", "measure", "measure_store", "wide"]
