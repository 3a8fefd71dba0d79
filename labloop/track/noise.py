"""Realistic detection errors applied to a true lineage (for training, tests and benchmarks).

:func:`perturb_detections` turns truth nuclei into a detections table with
Gaussian localisation noise, missed nuclei and spurious detections, and records
which truth node each detection came from (``truth_node``, −1 for spurious ones),
so that every candidate link can be labelled right or wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from labloop.lineage import SPATIAL_COLUMNS, Lineage


@dataclass(frozen=True)
class DetectionNoise:
    """How detections differ from the truth.

    Parameters
    ----------
    sigma_xy_um, sigma_z_um
        Standard deviation (µm) of the Gaussian localisation error in y, x and in z
        (z is left exact for a 2D lineage). Defaults 0.25 and 0.5 µm (the benchmark).
    miss_rate
        Share of truth nuclei not detected. Default 2 %.
    spurious_rate
        Spurious detections per truth nucleus. Default 2 %.
    near_fraction
        Share of spurious detections placed next to a real nucleus (an over-split
        nucleus), at ``near_offset`` × its nearest-neighbour distance in a random
        direction; the rest fall uniformly in the frame's bounding box. Default 0.5.
    near_offset
        Range of that offset, in nearest-neighbour distances. Default (0.3, 0.7).
    informative_scores
        Draw detection scores, ``Beta(6, 1.5)`` for real and ``Beta(2, 3)`` for
        spurious detections; otherwise every score is 1 (no information). Default off.
    intensity_noise
        Relative (log-normal) noise of ``intensity`` and ``volume_um3`` copied from
        the truth where it has ``brightness`` / ``volume_um3``; ``None`` drops them.
    """

    sigma_xy_um: float = 0.25
    sigma_z_um: float = 0.5
    miss_rate: float = 0.02
    spurious_rate: float = 0.02
    near_fraction: float = 0.5
    near_offset: tuple[float, float] = (0.3, 0.7)
    informative_scores: bool = False
    intensity_noise: float | None = None


def perturb_detections(truth: Lineage, noise: DetectionNoise, seed: int) -> pd.DataFrame:
    """Detections of a true lineage with localisation noise, misses and spurious nuclei.

    Parameters
    ----------
    truth
        The true lineage (µm).
    noise
        The error model.
    seed
        Seed of every random draw.

    Returns
    -------
    DataFrame
        ``t, z, y, x, score`` (+ ``intensity, volume_um3`` when requested) and
        ``truth_node`` (truth node id, −1 for spurious), rows in frame order with a
        fresh ``0..N−1`` index.
    """
    rng = np.random.default_rng(seed)
    nodes = truth.nodes
    keep = rng.uniform(size=len(nodes)) >= noise.miss_rate
    real = nodes[keep]
    pos = real[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64).copy()
    flat_z = nodes["z"].nunique() <= 1
    sigma = np.array([0.0 if flat_z else noise.sigma_z_um, noise.sigma_xy_um, noise.sigma_xy_um])
    pos += rng.normal(size=pos.shape) * sigma
    table = pd.DataFrame({"t": real["t"].to_numpy(), "z": pos[:, 0], "y": pos[:, 1],
                          "x": pos[:, 2], "truth_node": real.index.to_numpy()})
    extras = []
    all_pos = nodes[list(SPATIAL_COLUMNS)].to_numpy(dtype=np.float64)
    t_all = nodes["t"].to_numpy()
    for frame in np.unique(t_all):
        rows = np.flatnonzero(t_all == frame)
        n_extra = rng.binomial(len(rows), noise.spurious_rate) if noise.spurious_rate > 0 else 0
        if n_extra == 0:
            continue
        frame_pos = all_pos[rows]
        near = rng.uniform(size=n_extra) < noise.near_fraction
        spot = np.empty((n_extra, 3))
        lower, upper = frame_pos.min(axis=0), frame_pos.max(axis=0)
        spot[~near] = lower + (upper - lower) * rng.uniform(size=(int((~near).sum()), 3))
        if near.any():
            anchor = frame_pos[rng.integers(len(rows), size=int(near.sum()))]
            if len(rows) > 1:
                nn, _ = cKDTree(frame_pos).query(anchor, 2)
                scale = nn[:, 1]
            else:
                scale = np.full(len(anchor), 3.0)
            direction = rng.normal(size=anchor.shape)
            if flat_z:
                direction[:, 0] = 0.0
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            length = rng.uniform(*noise.near_offset, size=len(anchor)) * scale
            spot[near] = anchor + direction * length[:, None]
        if flat_z:
            spot[:, 0] = frame_pos[0, 0]
        extras.append(pd.DataFrame({"t": frame, "z": spot[:, 0], "y": spot[:, 1],
                                    "x": spot[:, 2], "truth_node": -1}))
    if extras:
        table = pd.concat([table, *extras], ignore_index=True)
    spurious = table["truth_node"].to_numpy() < 0
    if noise.informative_scores:
        table["score"] = np.where(spurious, rng.beta(2, 3, len(table)),
                                  rng.beta(6, 1.5, len(table)))
    else:
        table["score"] = 1.0
    if noise.intensity_noise is not None and {"brightness", "volume_um3"} <= set(nodes.columns):
        source = nodes.reindex(np.where(spurious, nodes.index[0], table["truth_node"]))
        boost = source["brightness_boost"].to_numpy() if "brightness_boost" in nodes else 0.0
        intensity = source["brightness"].to_numpy() * (1.0 + boost)
        volume = source["volume_um3"].to_numpy().copy()
        # a spurious detection gets the intensity and volume of a random real nucleus
        donors = nodes.iloc[rng.integers(len(nodes), size=int(spurious.sum()))]
        intensity[spurious] = donors["brightness"].to_numpy()
        volume[spurious] = donors["volume_um3"].to_numpy()
        table["intensity"] = intensity * np.exp(noise.intensity_noise * rng.normal(size=len(table)))
        table["volume_um3"] = volume * np.exp(noise.intensity_noise * rng.normal(size=len(table)))
    table = table.sort_values("t", kind="stable").reset_index(drop=True)
    table["t"] = table["t"].astype(np.int64)
    return table
