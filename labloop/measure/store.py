"""Measure the lineage of an experiment store and save the morphometrics in it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from labloop.measure.api import MeasureSettings, measure


def measure_store(path: str | Path, settings: MeasureSettings | None = None, *,
                  truth: bool = False, tracker_samples: int = 20,
                  progress: bool = True) -> pd.DataFrame:
    """Measure ``labloop/tracks.geff`` (or the truth) and write ``labloop/morphometrics``.

    Parameters
    ----------
    path
        The experiment store (``.zarr``).
    settings
        How morphometrics and intervals are computed (recorded as provenance).
    truth
        Measure ``labloop/truth.geff`` instead of the tracks.
    tracker_samples
        Lineages re-sampled by the tracker from the store's detections for the
        intervals; 0 (or no detections) uses the error probabilities instead.
    progress
        Show progress bars.

    Returns
    -------
    DataFrame
        The morphometrics written (see :func:`labloop.measure.measure`).
    """
    from labloop.io.store import DETECTIONS, MORPHOMETRICS, TRACKS, TRUTH, open_experiment
    from labloop.track import sample_lineages

    settings = MeasureSettings() if settings is None else settings
    experiment = open_experiment(path)
    name = TRUTH if truth else TRACKS
    lineage = experiment.read_lineage(name)
    samples = None
    if tracker_samples > 0 and not truth and experiment.has(DETECTIONS):
        image = experiment.image
        samples = sample_lineages(experiment.read_detections(), tracker_samples, settings.seed,
                                  frame_interval_h=image.frame_interval_h,
                                  image_shape_um=image.extent_um)
    table = measure(lineage, samples=samples, settings=settings, progress=progress)
    params = {**asdict(settings), "lineage": name, "tracker_samples": len(samples or [])}
    experiment.write_table(MORPHOMETRICS, table, "measure", params)
    return table
