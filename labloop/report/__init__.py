"""Reports: morphometrics with bands, the lineage tree by error probability, evaluation.

:func:`write_report` assembles the standard report of an experiment as a
self-contained HTML file (figures embedded as PNG, also written beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from labloop.lineage import Lineage
from labloop.report.figures import (
    division_rate_profile,
    lineage_tree,
    morphometrics_over_time,
    positions_side_by_side,
)
from labloop.report.html import Report

__all__ = ["Report", "division_rate_profile", "lineage_tree", "morphometrics_over_time",
           "write_report"]


def _movie_summary(table: pd.DataFrame) -> pd.DataFrame:
    movie = table[table["t"].isna() & table["bin_lo_um"].isna()]
    return movie[["quantity", "value", "lower", "upper", "unit"]]


def write_report(
    directory: str | Path,
    lineage: Lineage,
    morphometrics: pd.DataFrame,
    title: str = "labloop report",
    landmark: str = "centre",
    predicted: pd.DataFrame | None = None,
    predicted_label: str = "predicted",
    evaluation: dict[str, Any] | None = None,
    notes: list[tuple[str, str]] | None = None,
    predicted_positions: pd.DataFrame | None = None,
    fit: pd.DataFrame | None = None,
) -> Path:
    """Write the standard report of an experiment; return the path of ``report.html``.

    Parameters
    ----------
    directory
        Output folder.
    lineage
        The lineage measured (its tree is drawn coloured by error probability).
    morphometrics
        Its :func:`labloop.measure.measure` table.
    landmark
        Name of the landmark of the spatial division-rate profile (for labels).
    predicted
        Morphometrics of the tissue model (or of the ground truth), overlaid on
        the observed ones and named ``predicted_label``.
    evaluation
        Scores against ground truth (:func:`labloop.evaluate.evaluate`).
    notes
        Extra ``(heading, text)`` paragraphs, shown first.
    predicted_positions
        Positions simulated by the fitted model (``labloop/prediction``), drawn beside
        the observed nuclei.
    fit
        Fitted parameters with their 90 % intervals (``labloop/fit/parameters``).
    """
    report = Report(title)
    for heading, text in notes or []:
        report.add_text(heading, text)
    report.add_figure(
        "Morphometrics over time",
        morphometrics_over_time(morphometrics, predicted, predicted_label),
        "Lines: value from the reported lineage; bands: 90% intervals over realisations of the "
        "lineage (tracking errors and finite numbers of cells).")
    report.add_figure(
        "Where divisions happen", division_rate_profile(morphometrics, landmark, predicted,
                                                    predicted_label),
        f"Division rate per cell per hour by distance from the {landmark}, pooled over frames, "
        "with 90% intervals.")
    if predicted_positions is not None:
        report.add_figure(
            "Observed versus predicted tissue",
            positions_side_by_side(lineage.nodes, predicted_positions,
                                   predicted_label=predicted_label),
            "Top views (x, y in µm) of the nuclei found in the movie (top) and of one run of "
            "the recalibrated tissue model started from the first observed frame (bottom).")
    if fit is not None:
        report.add_table("Recalibrated model parameters", fit,
                         "Fitted by gradients; lower/upper bound the 90% interval of the "
                         "Laplace approximation.")
    report.add_table("Whole-movie values", _movie_summary(morphometrics),
                     "Pooled over all frames, with 90% intervals.")
    report.add_figure("Lineage tree", lineage_tree(lineage),
                      "Each link coloured by its probability of being wrong: curate the bright "
                      "ones first.")
    if evaluation is not None:
        report.add_json("Evaluation against ground truth", evaluation)
    return report.write(directory)
