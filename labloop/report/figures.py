"""Figures of the report: morphometrics with bands and the lineage tree.

Figures are built with matplotlib's object API (no pyplot state, no backend
change), so they are safe to make inside napari or a notebook.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

from labloop.lineage import Lineage

#: per-frame quantities drawn over time, with their axis labels
TIME_PANELS = (
    ("cell_count", "cells"),
    ("division_rate_per_h", "divisions per cell per hour"),
    ("elongation", "elongation (axis 1 / axis 2)"),
    ("radius_of_gyration_um", "radius of gyration (µm)"),
    ("mean_speed_um_per_h", "mean speed (µm/h)"),
    ("nearest_neighbour_um", "nearest-neighbour distance (µm)"),
)
OBSERVED_COLOUR = "#1f4e79"
PREDICTED_COLOUR = "#c0504d"


def _series(table: pd.DataFrame, quantity: str) -> pd.DataFrame:
    rows = table[(table["quantity"] == quantity) & table["t"].notna()
                 & table["bin_lo_um"].isna()]
    return rows.sort_values("time_h")


def morphometrics_over_time(observed: pd.DataFrame, predicted: pd.DataFrame | None = None,
                            predicted_label: str = "predicted") -> Figure:
    """Panels of per-frame morphometrics over time (hours) with their 90 % bands.

    Parameters
    ----------
    observed
        A :func:`labloop.measure.measure` table.
    predicted
        The same quantities from the tissue model (or the ground truth), drawn in
        another colour and named ``predicted_label``.
    """
    figure = Figure(figsize=(13, 7), layout="constrained")
    axes = figure.subplots(2, 3)
    for axis, (quantity, label) in zip(axes.ravel(), TIME_PANELS, strict=True):
        for table, colour, name in ((observed, OBSERVED_COLOUR, "observed"),
                                    (predicted, PREDICTED_COLOUR, predicted_label)):
            if table is None:
                continue
            rows = _series(table, quantity)
            if rows.empty:
                continue
            axis.fill_between(rows["time_h"], rows["lower"], rows["upper"], color=colour,
                              alpha=0.25, linewidth=0, label=f"{name} 90% interval")
            axis.plot(rows["time_h"], rows["value"], color=colour, linewidth=1.8, label=name)
        axis.set_xlabel("time (h)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    return figure


def division_rate_profile(observed: pd.DataFrame, landmark: str,
                          predicted: pd.DataFrame | None = None,
                          predicted_label: str = "predicted") -> Figure:
    """Division rate (per cell per hour, pooled over frames) by distance from a landmark."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.subplots()
    offset = 0.0
    for table, colour, name in ((observed, OBSERVED_COLOUR, "observed"),
                                (predicted, PREDICTED_COLOUR, predicted_label)):
        if table is None:
            continue
        rows = table[table["quantity"] == "division_rate_by_distance_per_h"]
        centres = (rows["bin_lo_um"] + rows["bin_hi_um"]) / 2 + offset
        width = float((rows["bin_hi_um"] - rows["bin_lo_um"]).iloc[0]) if len(rows) else 1.0
        errors = np.vstack([rows["value"] - rows["lower"], rows["upper"] - rows["value"]])
        axis.bar(centres, rows["value"], width=width * 0.4, color=colour, alpha=0.8,
                 yerr=errors, capsize=3, label=name)
        offset += width * 0.4
    axis.set_xlabel(f"distance from the {landmark} (µm)")
    axis.set_ylabel("divisions per cell per hour")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, axis="y")
    return figure


def _tree_layout(lineage: Lineage) -> tuple[pd.DataFrame, pd.Series]:
    """Vertical position of each tracklet: leaves in depth-first order, parents centred."""
    tracks = lineage.nodes[["t"]].join(lineage.tracklets())
    spans = tracks.groupby("track_id").agg(start=("t", "min"), end=("t", "max"),
                                           parent=("parent_track_id", "first"))
    children: dict[int, list[int]] = {}
    for track, parent in spans["parent"].items():
        children.setdefault(int(parent), []).append(int(track))
    position: dict[int, float] = {}
    next_leaf = 0.0

    def place(track: int) -> float:
        nonlocal next_leaf
        kids = sorted(children.get(track, []))
        if not kids:
            position[track] = next_leaf
            next_leaf += 1.0
        else:
            position[track] = float(np.mean([place(kid) for kid in kids]))
        return position[track]

    stack_roots = sorted(children.get(0, []), key=lambda k: spans.loc[k, "start"])
    for root in stack_roots:
        place(root)
    spans["y"] = pd.Series(position)
    return spans, tracks["track_id"]


def lineage_tree(lineage: Lineage, max_tracks: int = 2000) -> Figure:
    """The lineage tree over time, each link coloured by its error probability.

    Tracks are horizontal lines from birth to division or loss; divisions are
    vertical connectors. Links are coloured from dark (certain) to bright red
    (likely wrong), so a curator sees at once where to look.
    """
    spans, track_of = _tree_layout(lineage)
    interval = lineage.frame_interval_h or 1.0
    unit = "h" if lineage.frame_interval_h else "frames"
    nodes = lineage.nodes
    edges = lineage.edges
    y_of = track_of.map(spans["y"])
    segments = np.stack([
        np.column_stack([nodes.loc[edges["source"], "t"] * interval, y_of.loc[edges["target"]]]),
        np.column_stack([nodes.loc[edges["target"], "t"] * interval, y_of.loc[edges["target"]]]),
    ], axis=1)
    # a daughter's first link starts at the mother's row: draw the connector vertically
    mother_rows = y_of.loc[edges["source"]].to_numpy()
    connectors = np.stack([
        np.column_stack([nodes.loc[edges["source"], "t"] * interval, mother_rows]),
        np.column_stack([nodes.loc[edges["source"], "t"] * interval, y_of.loc[edges["target"]]]),
    ], axis=1)
    is_division_link = mother_rows != y_of.loc[edges["target"]].to_numpy()
    error = edges["error_probability"].to_numpy()
    height = max(4.0, min(14.0, 0.02 * len(spans) + 3))
    figure = Figure(figsize=(11, height), layout="constrained")
    axis = figure.subplots()
    colour_map = LinearSegmentedColormap.from_list(
        "certain_to_doubtful", ["#1f3b5a", "#4a7fb0", "#f0a030", "#e0201b"])
    norm = Normalize(vmin=0.0, vmax=max(0.2, float(error.max(initial=0))))
    lines = LineCollection(np.concatenate([segments, connectors[is_division_link]]),
                           colors=colour_map(norm(np.concatenate(
                               [error, error[is_division_link]]))), linewidths=1.2)
    axis.add_collection(lines)
    lonely = spans[spans["start"] == spans["end"]]
    axis.scatter(lonely["start"] * interval, lonely["y"], s=4, color="grey")
    axis.set_xlim(nodes["t"].min() * interval - interval,
                  nodes["t"].max() * interval + interval)
    axis.set_ylim(-1, max(1.0, float(spans["y"].max()) + 1))
    axis.set_xlabel(f"time ({unit})")
    axis.set_ylabel("cell lineages")
    axis.set_yticks([])
    colour_bar = figure.colorbar(ScalarMappable(norm=norm, cmap=colour_map),
                                 ax=axis, fraction=0.03)
    colour_bar.set_label("link error probability")
    axis.set_title(f"{lineage.n_nodes} nuclei, {lineage.n_divisions} divisions")
    if len(spans) > max_tracks:
        axis.text(0.01, 0.99, f"{len(spans)} tracks", transform=axis.transAxes, va="top")
    return figure


def positions_side_by_side(observed: pd.DataFrame, predicted: pd.DataFrame,
                           frames: list[int] | None = None,
                           predicted_label: str = "predicted") -> Figure:
    """Top views (``x`` right, ``y`` up, µm) of observed nuclei and of one predicted
    replicate at a few frames, observed on the top row and predicted below.

    Parameters
    ----------
    observed
        Node table with ``t, y, x`` (µm), e.g. ``lineage.nodes``.
    predicted
        Prediction table with ``replicate, t, y, x`` and optional ``source``.
    frames
        Frames to show (default: first, middle and last observed).
    """
    last = int(observed["t"].max())
    frames = frames or sorted({0, last // 2, last})
    predicted = predicted[predicted["replicate"] == predicted["replicate"].min()]
    both = pd.concat([observed[["y", "x"]], predicted[["y", "x"]]])
    lo, hi = both.min().to_numpy(), both.max().to_numpy()
    figure = Figure(figsize=(3.6 * len(frames), 7), layout="constrained")
    axes = figure.subplots(2, len(frames), squeeze=False, sharex=True, sharey=True)
    for j, t in enumerate(frames):
        for i, (table, colour, name) in enumerate(((observed, OBSERVED_COLOUR, "observed"),
                                                   (predicted, PREDICTED_COLOUR,
                                                    predicted_label))):
            axis = axes[i, j]
            rows = table[table["t"] == t]
            source = rows["source"].astype(bool) if "source" in rows else \
                pd.Series(False, index=rows.index)
            axis.scatter(rows.loc[~source, "x"], rows.loc[~source, "y"], s=14, color=colour,
                         alpha=0.8, linewidths=0)
            if source.any():
                axis.scatter(rows.loc[source, "x"], rows.loc[source, "y"], s=22,
                             color="#f0a30a", marker="s", label="source cells")
            axis.set_title(f"{name}, frame {t} ({len(rows)} cells)", fontsize=9)
            axis.set_xlim(lo[1] - 5, hi[1] + 5)
            axis.set_ylim(lo[0] - 5, hi[0] + 5)
            axis.set_aspect("equal")
            axis.set_xlabel("x (µm)")
            axis.set_ylabel("y (µm)")
    return figure
