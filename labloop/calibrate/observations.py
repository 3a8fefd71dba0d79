"""What the model is fitted to: observed morphometrics with their uncertainty.

:func:`observe` turns a lineage (tracked or true) into an :class:`Observations`
record of four terms, each a vector of values and standard deviations in the
vocabulary of :func:`labloop.measure.measure`:

``cell_growth_rate_per_h``           new nuclei from one frame to the next per
                                     nucleus and hour, ``ΔN / (N Δt)``;
``radius_of_gyration_increase_um``   growth of the spatial spread (µm) from one
                                     frame to the next;
``division_rate_by_distance_per_h``  divisions per cell-hour, pooled over frames,
                                     in distance bins from a landmark (the source
                                     cells' centroid), only with sources;
``msd_excess_um2``                   ``E|x(t+2) − x(t)|² − E|x(t+1) − x(t)|²`` over
                                     non-dividing track segments: the motion
                                     gained by the second frame, free of the
                                     detector's localisation noise (which adds
                                     the same ``2σ²`` to both lags).

Per-frame quantities enter as increments, whose errors are close to
independent from frame to frame (the levels' errors accumulate, and a sum of
squared level residuals would count the same evidence many times). The count
enters as its growth rate, not its increase: proliferation compounds, so a
tissue that by chance divided more early on keeps adding more cells, and the
increases of a film are correlated over frames (on 16-h movies of 150 cells
the total increase varies with a standard deviation of about 45 cells where
independent Poisson increments would give 18). Per cell present, the new
cells of a frame are close to independent counts given the past.
Frames where ``measure`` gives no value (e.g. no shape for fewer than 8
nuclei) give NaN entries, which the loss leaves out. Standard deviations come
from the 90 % intervals of ``measure`` (tracker samples or error
probabilities, plus the bootstrap over cells), as
``(upper − lower) / 3.29``; for the motion term from the standard error over
track segments.

The growth rate and the division-rate profile are ratios of counts to
cell-hours, and their counting noise is not an observed quantity: weighting
residuals by the observed count's noise would favour entries that happened to
see few divisions (Neyman's χ²) and bias the fit low where rates are low. So
their ``sd`` keeps only what the tracking adds (for the growth rate the
counts' intervals, for the profile ``measure``'s interval less the counting
noise of the observed count), and ``exposure_h`` records the cell-hours of
each entry: the loss takes the counting variance from the *model's* rate,
``(λ E + ½) / E²`` (Pearson's χ², whose stationary point is the Poisson
likelihood's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import gamma

from labloop.errors import InputError
from labloop.lineage import Lineage

#: z-width of a central 90 % interval of a normal distribution
Z90 = 3.29
TERMS = ("cell_growth_rate_per_h", "radius_of_gyration_increase_um",
         "division_rate_by_distance_per_h", "msd_excess_um2")
#: per-frame terms (one entry per pair of consecutive frames)
PER_FRAME = ("cell_growth_rate_per_h", "radius_of_gyration_increase_um")


@dataclass(frozen=True)
class Observations:
    """Observed morphometrics of one experiment, ready for fitting.

    Attributes
    ----------
    values, sd
        Per term (see module doc): observed values and standard deviations.
    frames
        Number of frames ``F + 1`` (the per-frame terms have ``F`` entries).
    frame_interval_h
        Hours between frames.
    landmark_um
        ``(z, y, x)`` of the division-rate profile (the sources' centroid), or
        ``None`` when there are no sources.
    bin_edges_um
        Edges of the distance bins of the profile.
    exposure_h
        Per rate term (growth rate, profile): cell-hours behind each entry. For
        these terms ``sd`` is the uncertainty beyond Poisson counting noise,
        which the loss adds at the model's rate (module doc).
    """

    values: dict[str, np.ndarray]
    sd: dict[str, np.ndarray]
    frames: int
    frame_interval_h: float
    landmark_um: tuple[float, float, float] | None = None
    bin_edges_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exposure_h: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def terms(self) -> list[str]:
        """Names of the terms present."""
        return [t for t in TERMS if t in self.values]

    def window(self, n_frames: int) -> Observations:
        """The observations of the first ``n_frames`` frames only (per-frame terms cut;
        pooled terms kept as measured on the whole movie)."""
        if not 2 <= n_frames <= self.frames:
            raise InputError(f"a window needs between 2 and {self.frames} frames, got "
                             f"{n_frames}")
        def cut(by_term: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: v[:n_frames - 1] if k in PER_FRAME else v for k, v in by_term.items()}

        return Observations(cut(self.values), cut(self.sd), n_frames, self.frame_interval_h,
                            self.landmark_um, self.bin_edges_um, cut(self.exposure_h))

    def table(self) -> pd.DataFrame:
        """Long table ``term, index, value, sd``."""
        rows = [pd.DataFrame({"term": term, "index": np.arange(len(v)), "value": v,
                              "sd": self.sd[term]}) for term, v in self.values.items()]
        return pd.concat(rows, ignore_index=True)


def motion_segments(lineage: Lineage) -> np.ndarray:
    """``(n, 2)`` squared displacements (µm²) over lags 1 and 2 of every node whose next
    two frames continue its track without a division."""
    nodes, edges = lineage.nodes, lineage.edges
    if len(edges) == 0:
        return np.zeros((0, 2))
    out_degree = edges.groupby("source").size()
    single = out_degree.index[out_degree.to_numpy() == 1]
    child = edges.set_index("source")["target"]
    child = child[child.index.isin(single)]
    child = child[~child.index.duplicated()]
    first = child.index.to_numpy()
    second = child.reindex(child.to_numpy()).to_numpy()  # child of the child
    ok = ~pd.isna(second)
    first, mid, last = first[ok], child.to_numpy()[ok], second[ok].astype(np.int64)
    dt = nodes.loc[last, "t"].to_numpy() - nodes.loc[first, "t"].to_numpy()
    keep = dt == 2  # no gap-closing edges
    xyz = nodes[["z", "y", "x"]]
    p0 = xyz.loc[first[keep]].to_numpy()
    p1 = xyz.loc[mid[keep]].to_numpy()
    p2 = xyz.loc[last[keep]].to_numpy()
    return np.stack([np.sum((p1 - p0) ** 2, 1), np.sum((p2 - p0) ** 2, 1)], axis=1)


def _per_frame(table: pd.DataFrame, quantity: str, frames: int,
               floor: float) -> tuple[np.ndarray, np.ndarray]:
    rows = table[(table["quantity"] == quantity) & table["t"].notna()].set_index("t")
    rows = rows.reindex(np.arange(frames))
    if rows["value"].isna().all():
        raise InputError(f"the morphometrics lack {quantity} in every frame")
    sd = np.maximum((rows["upper"] - rows["lower"]).to_numpy() / Z90, floor)
    return rows["value"].to_numpy(np.float64), sd


def _rate_profile(table: pd.DataFrame,
                  edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rate, uncertainty beyond counting noise and cell-hours of each profile bin.

    ``measure``'s interval of a bin is the spread of Jeffreys posterior draws
    ``Gamma(n + ½) / E`` over tracking realisations; the part that counting
    alone gives, the same quantile width of ``Gamma(n + ½) / E`` at the observed
    count, is taken out in quadrature (module doc).
    """
    def bins(quantity: str) -> pd.DataFrame:
        rows = table[table["quantity"] == quantity]
        return rows.set_index("bin_lo_um").reindex(edges[:-1])

    rows = bins("division_rate_by_distance_per_h")
    rate = rows["value"].to_numpy(np.float64)
    exposure = bins("cell_hours_by_distance_h")["value"].to_numpy(np.float64)
    total = (rows["upper"] - rows["lower"]).to_numpy() / Z90
    shape = rate * exposure + 0.5
    counting = (gamma.ppf(0.95, shape) - gamma.ppf(0.05, shape)) / exposure / Z90
    beyond = np.sqrt(np.maximum(total**2 - counting**2, 0.0))
    return rate, beyond, exposure


def observe(lineage: Lineage, sources_um: np.ndarray | None = None, *,
            samples: Sequence[Lineage] | None = None, bin_width_um: float = 10.0,
            n_bins: int = 6, n_draws: int = 100, seed: int = 0) -> Observations:
    """Measure ``lineage`` into :class:`Observations` (module doc).

    Parameters
    ----------
    lineage
        Tracked (or true) lineage, positions in µm, frame interval in hours.
    sources_um
        ``(S, 3)`` positions (µm) of the source cells at the first frame, or
        ``None``; their centroid is the landmark of the division-rate profile.
    samples
        Alternative lineages sampled by the tracker, for the intervals.
    bin_width_um, n_bins
        Distance bins of the division-rate profile.
    n_draws, seed
        Realisations of ``measure``'s intervals.
    """
    from labloop.measure import MeasureSettings, measure

    if lineage.frame_interval_h is None:
        raise InputError("the lineage has no frame interval (hours); set it before fitting")
    frames = int(lineage.nodes["t"].max()) + 1 if lineage.n_nodes else 0
    if frames < 3:
        raise InputError(f"fitting needs at least 3 frames, the lineage has {frames}")
    landmark = None
    if sources_um is not None and len(sources_um):
        landmark = tuple(float(v) for v in np.asarray(sources_um, float).mean(axis=0))
    settings = MeasureSettings(landmark=landmark or "centre", bin_width_um=bin_width_um,
                               n_bins=n_bins, n_draws=n_draws, seed=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = measure(lineage, samples=samples, settings=settings)
    interval = float(lineage.frame_interval_h)
    count, count_sd = _per_frame(table, "cell_count", frames, 0.5)
    present_h = count[:-1] * interval
    term = "cell_growth_rate_per_h"
    values = {term: np.diff(count) / present_h}
    sd = {term: np.hypot(count_sd[1:], count_sd[:-1]) / present_h}
    exposure = {term: present_h}
    spread, spread_sd = _per_frame(table, "radius_of_gyration_um", frames, 0.05)
    values["radius_of_gyration_increase_um"] = np.diff(spread)
    sd["radius_of_gyration_increase_um"] = np.hypot(spread_sd[1:], spread_sd[:-1])
    edges = np.arange(n_bins + 1) * bin_width_um
    if landmark is not None:
        term = "division_rate_by_distance_per_h"
        values[term], sd[term], exposure[term] = _rate_profile(table, edges)
    segments = motion_segments(lineage)
    if len(segments) >= 10:
        excess = segments[:, 1] - segments[:, 0]
        values["msd_excess_um2"] = np.array([excess.mean()])
        sd["msd_excess_um2"] = np.array([excess.std(ddof=1) / np.sqrt(len(excess))])
    return Observations(values, sd, frames, interval, landmark, edges, exposure)
