"""Fit the real C. elegans embryo on its first two thirds, predict the last third (issue 7).

Run ``python benchmarks/bench_calibrate_embryo.py`` (a few minutes on 2 cores;
skips where ``../shared/data`` is absent). Writes
``benchmarks/results/calibrate_embryo.json``, ``calibrate_embryo.md`` and
``calibrate_embryo.png``.

The ground-truth lineage of ``ctc-Fluo-N3DH-CE-01`` (voxels 1 × 0.09 × 0.09 µm,
one frame a minute) is taken every 5 minutes. The tissue model (no source
cells; cells do not grow between cleavages) inside an ellipsoidal eggshell
fitted to the positions of the fitting window is recalibrated (division rate
and motility) on the first two thirds of the frames, then run from the last
fitted frame's cells over the last third (16 replicates). Prediction errors
of the cell count and of the spread (radius of gyration) are compared with a
naive baseline: exponential growth fitted to the same frames, with the spread
growing as ``N^{1/3}`` (constant density).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=2")

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from labloop.calibrate import CalibrateSettings, initial_from_lineage, observe, recalibrate
from labloop.calibrate.fit import with_values
from labloop.calibrate.predict import predict
from labloop.calibrate.statistics import counts, radius_of_gyration
from labloop.calibrate.store import ellipsoid_around, starting_params
from labloop.lineage import Lineage
from labloop.tissue import TissueModel

RESULTS = Path(__file__).resolve().parent / "results"
GEFF = Path(__file__).resolve().parents[2] / "shared" / "data" / "ctc-Fluo-N3DH-CE-01-GT.geff"
STEP = 5
SETTINGS = CalibrateSettings(free=("division.max_rate_per_h", "mechanics.motility_um2_per_h"),
                             n_starts=2, max_iterations=60, patience=12, n_replicates=8,
                             learning_rate=0.08)


def observed_series(lineage: Lineage) -> pd.DataFrame:
    nodes = lineage.nodes
    rows = []
    for t, frame in nodes.groupby("t"):
        xyz = frame[["z", "y", "x"]].to_numpy()
        rows.append({"t": int(t), "cells": len(frame),
                     "rg_um": float(np.sqrt(np.trace(np.cov(xyz.T, bias=True))))})
    return pd.DataFrame(rows)


def main() -> None:
    if not GEFF.exists():
        print(f"skipped: {GEFF} not found")
        return
    warnings.simplefilter("ignore")
    RESULTS.mkdir(exist_ok=True)
    full = Lineage.from_geff(GEFF, voxel_size_um=(1.0, 0.09, 0.09), frame_interval_h=1 / 60)
    lineage = full.every(STEP)
    series = observed_series(lineage)
    n_frames = int(series["t"].max()) + 1
    fit_frames = round(2 * n_frames / 3)
    window = Lineage(lineage.nodes[lineage.nodes["t"] < fit_frames],
                     lineage.edges[lineage.edges["target"].isin(
                         lineage.nodes.index[lineage.nodes["t"] < fit_frames])],
                     lineage.frame_interval_h)
    interval = float(lineage.frame_interval_h)
    biggest = int(series["cells"].max())
    model = TissueModel(capacity=int(np.ceil(2.0 * biggest / 32) * 32), dt_h=interval,
                        mechanics_substeps=4, neighbours="dense")
    t0 = time.perf_counter()
    observed = observe(window, None, n_draws=50)
    shell = ellipsoid_around(window)
    start = with_values(starting_params(window, observed, shell),
                        **{"growth.rate_per_h": 1e-3})
    initial = initial_from_lineage(model, window, None, n_genes=1)
    fit = recalibrate(observed, model, start, initial, SETTINGS)
    fit_seconds = time.perf_counter() - t0

    last = fit_frames - 1
    horizon = n_frames - 1 - last
    from_last = initial_from_lineage(model, lineage, None, n_genes=1, frame=last)
    traj = predict(model, fit.params, from_last, horizon, 1, jax.random.key(1), 16)
    cells = np.asarray(jax.vmap(counts)(traj))          # (R, horizon + 1)
    spread = np.asarray(jax.vmap(radius_of_gyration)(traj))
    future = series[series["t"] >= last].reset_index(drop=True)
    hours = (future["t"] - last).to_numpy() * interval

    fitted = series[series["t"] < fit_frames]
    rate, intercept = np.polyfit(fitted["t"] * interval, np.log(fitted["cells"]), 1)
    base_cells = np.exp(intercept + rate * future["t"].to_numpy() * interval)
    anchor = series.loc[series["t"] == last].iloc[0]
    base_rg = anchor["rg_um"] * (base_cells / anchor["cells"]) ** (1 / 3)
    model_cells, model_rg = cells.mean(0), spread.mean(0)

    def error(pred: np.ndarray, obs: np.ndarray) -> float:
        return float(np.mean(np.abs(pred[1:] - obs[1:]) / obs[1:]))

    table = pd.DataFrame([
        {"predictor": "recalibrated model (eggshell)",
         "cell_count_error": error(model_cells, future["cells"].to_numpy()),
         "spread_error": error(model_rg, future["rg_um"].to_numpy()),
         "final_cells": float(model_cells[-1]), "final_rg_um": float(model_rg[-1])},
        {"predictor": "exponential growth, spread ∝ N^(1/3)",
         "cell_count_error": error(base_cells, future["cells"].to_numpy()),
         "spread_error": error(base_rg, future["rg_um"].to_numpy()),
         "final_cells": float(base_cells[-1]), "final_rg_um": float(base_rg[-1])},
        {"predictor": "observed", "cell_count_error": 0.0, "spread_error": 0.0,
         "final_cells": float(future["cells"].iloc[-1]),
         "final_rg_um": float(future["rg_um"].iloc[-1])}])
    print(fit.summary())
    print(table.round(3).to_string(index=False))
    out = {"platform": platform.platform(), "python": sys.version.split()[0],
           "frames": n_frames, "fit_frames": fit_frames, "frame_interval_h": interval,
           "fit_seconds": round(fit_seconds, 1), "parameters": fit.intervals.to_dict("records"),
           "identifiability": fit.identifiability, "exponential_rate_per_h": rate,
           "table": table.to_dict("records"),
           "hours": hours.tolist(), "observed_cells": future["cells"].tolist(),
           "model_cells": model_cells.tolist(), "baseline_cells": base_cells.tolist(),
           "observed_rg": future["rg_um"].tolist(), "model_rg": model_rg.tolist(),
           "baseline_rg": base_rg.tolist()}
    (RESULTS / "calibrate_embryo.json").write_text(json.dumps(out, indent=1, default=float))
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r)
              + " |" for r in table.itertuples(index=False)]
    (RESULTS / "calibrate_embryo.md").write_text(
        "# C. elegans embryo: fit on the first two thirds, predict the last third\n\n"
        f"Fit: {fit_frames} frames every {STEP} min, {fit_seconds:.0f} s; errors are mean "
        "relative errors over the predicted frames.\n\n" + "\n".join(lines) + "\n")

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    t_all = series["t"] * interval
    for axis, column, model_values, base, label in (
            (axes[0], "cells", cells, base_cells, "cells"),
            (axes[1], "rg_um", spread, base_rg, "radius of gyration (µm)")):
        axis.plot(t_all, series[column], "k.", ms=4, label="observed")
        t_future = (last + np.arange(horizon + 1)) * interval
        axis.fill_between(t_future, np.percentile(model_values, 5, 0),
                          np.percentile(model_values, 95, 0), color="C3", alpha=0.3)
        axis.plot(t_future, model_values.mean(0), "C3-", label="recalibrated model")
        axis.plot(future["t"] * interval, base, "C0--", label="naive baseline")
        axis.axvline(last * interval, color="0.5", lw=0.8)
        axis.set_xlabel("time (h)")
        axis.set_ylabel(label)
    axes[0].legend()
    figure.savefig(RESULTS / "calibrate_embryo.png", dpi=120)
    print("wrote", RESULTS / "calibrate_embryo.json")


if __name__ == "__main__":
    main()
