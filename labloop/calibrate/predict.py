"""Predictions from a fitted model, as tables the store, report and viewer read."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from labloop.tissue import (
    TissueModel,
    TissueParams,
    TissueState,
    Trajectory,
    simulate_replicates,
    to_positions,
    to_table,
)

#: columns of a prediction table (positions of simulated cells, µm)
PREDICTION_COLUMNS = ["replicate", "track_id", "parent_track_id", "t", "time_h", "z", "y",
                      "x", "source"]


def predict(model: TissueModel, params: TissueParams, initial: TissueState, n_frames: int,
            steps_per_frame: int, key: jax.Array, n_replicates: int = 8) -> Trajectory:
    """Simulate ``n_replicates`` runs of ``n_frames`` frames from ``initial``."""
    keys = jax.random.split(key, n_replicates)
    return simulate_replicates(model, params, keys, initial, n_frames=n_frames,
                               steps_per_frame=steps_per_frame)


def prediction_table(trajectory: Trajectory) -> pd.DataFrame:
    """Positions of every simulated cell: ``replicate, track_id`` (the cell's lineage
    id), ``parent_track_id`` (its mother's, −1 for founders), ``t`` (frame), ``time_h``,
    ``z, y, x`` (µm) and ``source`` (bool)."""
    table = to_positions(trajectory)
    table["track_id"] = table["cell_id"].astype(np.int64)
    table["parent_track_id"] = table["mother"].astype(np.int64)
    table["source"] = table["cell_type"] == "source"
    return table[PREDICTION_COLUMNS].reset_index(drop=True)


def predicted_morphometrics(trajectory: Trajectory, landmark_um: tuple | None = None,
                            bin_width_um: float = 10.0) -> pd.DataFrame:
    """The prediction's morphometrics in ``labloop.measure``'s tidy format: the mean over
    replicates and their central 90 % as ``lower``/``upper``."""
    from labloop.measure import MeasureSettings

    settings = MeasureSettings(landmark=landmark_um or "centre", bin_width_um=bin_width_um,
                               n_draws=0)
    return to_table(trajectory, settings)
