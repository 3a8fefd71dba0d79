"""``measure(lineage)``: tissue morphometrics with 90 % intervals, as one tidy table."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.lineage import Lineage
from labloop.measure import statistics as stats
from labloop.measure.draws import Realisation, draw_realisations, point_estimate

#: unit of each quantity in the table
UNITS = {
    "cell_count": "cells",
    "divisions": "divisions",
    "division_rate_per_h": "1/h",
    "axis_1_um": "µm", "axis_2_um": "µm", "axis_3_um": "µm",
    "elongation": "ratio",
    "direction_z": "unit vector", "direction_y": "unit vector", "direction_x": "unit vector",
    "radius_of_gyration_um": "µm",
    "mean_speed_um_per_h": "µm/h",
    "speed_p10_um_per_h": "µm/h", "speed_median_um_per_h": "µm/h",
    "speed_p90_um_per_h": "µm/h",
    "nearest_neighbour_um": "µm",
    "division_rate_by_distance_per_h": "1/h",
    "cell_hours_by_distance_h": "cell·h",
    "cell_cycle_h": "h",
}
COLUMNS = ["quantity", "t", "time_h", "bin_lo_um", "bin_hi_um", "value", "lower", "upper",
           "unit"]


@dataclass(frozen=True)
class MeasureSettings:
    """How morphometrics and their intervals are computed.

    Attributes
    ----------
    landmark
        Reference of the spatial division-rate profile: ``"centre"`` (cluster
        centroid), ``"axis"`` (longest principal axis), ``"source"`` (nearest
        node flagged in the boolean node column ``source_column``) or a point
        ``(z, y, x)`` in µm.
    bin_width_um
        Width of the distance bins of that profile (µm).
    n_bins
        Number of distance bins (the last one is open-ended in practice: cells
        beyond it are left out).
    n_draws
        Realisations of the lineage used for intervals.
    interval
        Coverage of the reported intervals (0.9 = 5th to 95th percentile).
    seed
        Seed of the draws.
    source_column
        Boolean node column that flags source cells, for ``landmark="source"``.
    min_cells_for_shape
        Fewest nuclei in a frame for its principal axes and elongation to be
        reported (a handful of points has no meaningful shape).
    """

    landmark: str | tuple[float, float, float] = "centre"
    bin_width_um: float = 10.0
    n_bins: int = 6
    n_draws: int = 100
    interval: float = 0.9
    seed: int = 0
    source_column: str = "source"
    min_cells_for_shape: int = 8


def _check(lineage: Lineage, settings: MeasureSettings) -> float:
    if lineage.frame_interval_h is None:
        raise InputError("the lineage has no frame interval (missing time units); give "
                         "frame_interval_h in hours")
    if lineage.n_frames < 2:
        raise InputError(f"the lineage spans {lineage.n_frames} frame(s); morphometrics over "
                         "time need at least two")
    if not 0 < settings.interval < 1:
        raise InputError(f"interval must be between 0 and 1, got {settings.interval}")
    if settings.landmark == "source" and settings.source_column not in lineage.nodes.columns:
        raise InputError(f"landmark 'source' needs a boolean node column "
                         f"{settings.source_column!r}")
    if isinstance(settings.landmark, str) and settings.landmark not in (
            "centre", "axis", "source"):
        raise InputError(f"unknown landmark {settings.landmark!r}; use centre, axis, source "
                         "or a point (z, y, x)")
    return float(lineage.frame_interval_h)


class _Collector:
    """Gathers the point estimate and the draws of every quantity."""

    def __init__(self) -> None:
        self.point: dict[tuple, float] = {}
        self.draws: dict[tuple, list[float]] = {}

    def add(self, key: tuple, value: float, is_point: bool) -> None:
        if is_point:
            self.point[key] = float(value)
        else:
            self.draws.setdefault(key, []).append(float(value))

    def add_series(self, quantity: str, series: pd.Series, is_point: bool) -> None:
        for t, value in series.items():
            self.add((quantity, float(t), np.nan, np.nan), value, is_point)


def _collect(realisation: Realisation, is_point: bool, out: _Collector, frames: pd.Index,
             interval_h: float, is_2d: bool, settings: MeasureSettings,
             bin_edges: np.ndarray, rng: np.random.Generator,
             reference: pd.DataFrame | None = None) -> None:
    last_frame = int(frames.max())
    out.add_series("cell_count", stats.cell_counts(realisation).reindex(frames, fill_value=0),
                   is_point)
    at_risk = frames[frames < last_frame]
    out.add_series("divisions", stats.division_counts(realisation, at_risk), is_point)

    def rates(events: pd.DataFrame) -> pd.Series:
        if is_point:
            return events["divisions"] / events["exposure_h"]
        # Jeffreys posterior of a Poisson rate given this realisation's counts
        return pd.Series(rng.gamma(events["divisions"] + 0.5) / events["exposure_h"],
                         index=events.index)

    t = realisation.nodes["t"]
    per_frame = stats.division_events(realisation, t.where(t < last_frame), interval_h)
    out.add_series("division_rate_per_h", rates(per_frame.reindex(at_risk).dropna()), is_point)
    pooled = stats.division_events(realisation, (t < last_frame).where(t < last_frame),
                                   interval_h)
    out.add(("division_rate_per_h", np.nan, np.nan, np.nan), rates(pooled).iloc[0], is_point)

    distance = stats.landmark_distances(realisation, settings.landmark,
                                        settings.source_column)
    bins = pd.Series(np.digitize(distance, bin_edges) - 1.0, index=distance.index)
    bins = bins.where((bins >= 0) & (bins < len(bin_edges) - 1) & distance.notna()
                      & (t < last_frame))
    events = stats.division_events(realisation, bins, interval_h)
    for index, rate in rates(events).items():
        lo, hi = bin_edges[int(index)], bin_edges[int(index) + 1]
        out.add(("division_rate_by_distance_per_h", np.nan, lo, hi), rate, is_point)
        out.add(("cell_hours_by_distance_h", np.nan, lo, hi), events.at[index, "exposure_h"],
                is_point)

    shape = stats.shape_statistics(realisation, is_2d, settings.min_cells_for_shape)
    if reference is not None:  # an axis has no sign: align each draw with the reported one
        columns = ["direction_z", "direction_y", "direction_x"]
        aligned = reference[columns].reindex(shape.index)
        flip = np.sign((shape[columns].to_numpy() * aligned.to_numpy()).sum(axis=1))
        shape[columns] = shape[columns].to_numpy() * np.where(flip < 0, -1.0, 1.0)[:, None]
    for column in shape.columns:
        out.add_series(column, shape[column].dropna(), is_point)

    speeds = stats.link_speeds(realisation, interval_h)
    out.add_series("mean_speed_um_per_h",
                   stats.weighted_mean_by_frame(speeds, at_risk).dropna(), is_point)
    weights = speeds["weight"].to_numpy()
    values = speeds["value"].to_numpy()
    if weights.sum() > 0:
        out.add(("mean_speed_um_per_h", np.nan, np.nan, np.nan),
                np.average(values, weights=weights), is_point)
        for name, q in (("speed_p10_um_per_h", 0.1), ("speed_median_um_per_h", 0.5),
                        ("speed_p90_um_per_h", 0.9)):
            out.add((name, np.nan, np.nan, np.nan), stats.weighted_quantile(values, weights, q),
                    is_point)

    neighbours = stats.nearest_neighbour_distances(realisation).dropna()
    out.add_series("nearest_neighbour_um",
                   stats.weighted_mean_by_frame(neighbours, frames).dropna(), is_point)

    cycles = stats.cell_cycle_durations(realisation, interval_h)
    if cycles["weight"].sum() > 0:
        out.add(("cell_cycle_h", np.nan, np.nan, np.nan),
                np.average(cycles["duration_h"], weights=cycles["weight"]), is_point)


def measure(
    lineage: Lineage,
    samples: Sequence[Lineage] | None = None,
    settings: MeasureSettings | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Tissue morphometrics per frame and for the whole movie, each with an interval.

    Parameters
    ----------
    lineage
        The tracked lineage (positions in µm; ``frame_interval_h`` required).
    samples
        Alternative lineages drawn by the tracker (perturb-and-MAP). Without
        them, intervals come from the error probabilities: each node is kept with
        probability ``score`` and each link with probability ``probability``.
    settings
        Landmark, distance bins, number of draws, interval, seed.
    progress
        Show a progress bar over the draws.

    Returns
    -------
    DataFrame
        Tidy table, one row per quantity and frame (``t``, ``time_h``; NaN for
        whole-movie values) and distance bin (``bin_lo_um``, ``bin_hi_um``; NaN
        where not spatial), with ``value`` (from the reported lineage),
        ``lower`` and ``upper`` (the interval over realisations, which resample
        both the tracking and the cells: Poisson bootstrap for means, a Jeffreys
        Poisson posterior for division rates), and ``unit``. Quantities:
        ``cell_count``, ``divisions``, ``division_rate_per_h``,
        ``axis_1/2/3_um``, ``elongation``, ``direction_z/y/x``,
        ``radius_of_gyration_um``, ``mean_speed_um_per_h``, speed quantiles,
        ``nearest_neighbour_um``, ``division_rate_by_distance_per_h`` (with
        ``cell_hours_by_distance_h``, the cell-hours at risk behind each bin's
        rate), ``cell_cycle_h``.

    Raises
    ------
    InputError
        A lineage with fewer than two frames or without a frame interval.

    Examples
    --------
    >>> table = measure(lineage)  # doctest: +SKIP
    >>> table.query("quantity == 'cell_count'")[["t", "value", "lower", "upper"]]  # doctest: +SKIP
    """
    settings = settings or MeasureSettings()
    interval_h = _check(lineage, settings)
    frames = pd.Index(np.arange(lineage.nodes["t"].min(), lineage.nodes["t"].max() + 1),
                      name="t")
    is_2d = bool(np.ptp(lineage.nodes["z"].to_numpy()) == 0)
    bin_edges = np.arange(settings.n_bins + 1) * settings.bin_width_um
    rng = np.random.default_rng(settings.seed)
    collector = _Collector()
    _collect(point_estimate(lineage), True, collector, frames, interval_h, is_2d, settings,
             bin_edges, rng)
    reference = stats.shape_statistics(point_estimate(lineage), is_2d,
                                       settings.min_cells_for_shape)
    realisations: Iterable[Realisation] = draw_realisations(
        lineage, settings.n_draws, settings.seed, samples)
    if progress:
        from rich.progress import track

        realisations = track(realisations, total=settings.n_draws, description="measuring",
                             transient=True)
    for realisation in realisations:
        _collect(realisation, False, collector, frames, interval_h, is_2d, settings, bin_edges,
                 rng, reference)
    if lineage.n_divisions == 0:
        warnings.warn("the lineage has no divisions: division rates are 0 with an upper bound "
                      "only, and cell-cycle durations cannot be measured", stacklevel=2)
    tail = (1 - settings.interval) / 2
    rows = []
    for key, value in collector.point.items():
        quantity, t, lo, hi = key
        draws = np.asarray(collector.draws.get(key, []), dtype=np.float64)
        draws = draws[np.isfinite(draws)]
        lower, upper = (np.quantile(draws, [tail, 1 - tail]) if len(draws)
                        else (value, value))
        rows.append([quantity, t, t * interval_h, lo, hi, value, min(lower, value),
                     max(upper, value), UNITS[quantity]])
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {name: i for i, name in enumerate(UNITS)}
    table = table.sort_values(["quantity", "t", "bin_lo_um"], key=lambda c: c.map(order)
                              if c.name == "quantity" else c, na_position="first")
    return table.reset_index(drop=True)


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """Per-frame quantities of a :func:`measure` table as one row per frame.

    Columns ``<quantity>``, ``<quantity>_lower``, ``<quantity>_upper``;
    whole-movie and spatial rows are left out.
    """
    per_frame = table[table["t"].notna() & table["bin_lo_um"].isna()]
    values = per_frame.pivot(index="t", columns="quantity", values=["value", "lower", "upper"])
    values.columns = [q if kind == "value" else f"{q}_{kind}" for kind, q in values.columns]
    return values.reset_index()
