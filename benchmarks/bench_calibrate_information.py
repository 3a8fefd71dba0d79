"""How much movie does a 10 % parameter recovery need? (issue 7, not a test)

Run ``python benchmarks/bench_calibrate_information.py`` (about 4 minutes on 2
cores). Writes ``benchmarks/results/calibrate_information.json`` and ``.md``.

For each movie size, a cluster with a sixth of its cells as sources grows
under the recovery benchmark's true parameters (``bench_calibrate.TRUTH``), its
true lineage is observed every 0.5 h, and :func:`labloop.calibrate.recalibrate`
is evaluated *at the truth* (one start, one iteration: no optimisation), so its
Laplace covariance is the information the movie carries about the four
parameters, free of optimiser error. Reported: the 90 % interval, its relative
half-width, and how many times more information a ±10 % half-width would need
(``(half-width / 0.10)²``, since the variance falls as 1 / information).
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
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_calibrate import FIXED, FREE, TRUTH

from labloop.calibrate import (
    CalibrateSettings,
    initial_from_lineage,
    observe,
    recalibrate,
)
from labloop.calibrate.fit import with_values
from labloop.tissue import (
    TissueModel,
    default_params,
    round_cluster,
    simulate,
    to_lineage,
)

RESULTS = Path(__file__).resolve().parent / "results"
#: (cells at the start, hours filmed, model capacity)
SIZES = ((40, 8.0, 192), (150, 16.0, 640))
FRAME_INTERVAL_H = 0.5
TARGET_HALF_WIDTH = 0.10
AT_TRUTH = CalibrateSettings(free=FREE, n_starts=1, max_iterations=1, patience=1)


def information_row(n_cells: int, hours: float, capacity: int) -> list[dict]:
    """Laplace intervals at the truth for one movie size, one row per parameter."""
    model = TissueModel(capacity=capacity, dt_h=0.25, mechanics_substeps=2,
                        neighbours="dense")
    truth = with_values(default_params(1), **TRUTH, **FIXED)
    start = round_cluster(model, n_cells, n_sources=max(6, n_cells // 7), n_genes=1,
                          key=jax.random.key(100))
    trajectory = simulate(model, truth, jax.random.key(0), start,
                          n_frames=round(hours / FRAME_INTERVAL_H), steps_per_frame=2)
    lineage = to_lineage(trajectory)
    nodes = lineage.nodes
    sources = nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
    t0 = time.perf_counter()
    fit = recalibrate(observe(lineage, sources), model, truth,
                      initial_from_lineage(model, lineage, sources, n_genes=1), AT_TRUTH)
    seconds = time.perf_counter() - t0
    cells_end = int((nodes["t"] == nodes["t"].max()).sum())
    correlation = fit.covariance.to_numpy() / np.outer(
        np.sqrt(np.diag(fit.covariance)), np.sqrt(np.diag(fit.covariance)))
    rows = []
    for i, r in enumerate(fit.intervals.itertuples()):
        half = (r.upper - r.lower) / 2 / abs(r.value)
        others = np.delete(np.abs(correlation[i]), i)
        rows.append({"cells_start": n_cells, "hours": hours, "cells_end": cells_end,
                     "parameter": r.name, "truth": round(float(r.value), 4),
                     "lower_90": round(float(r.lower), 4), "upper_90": round(float(r.upper), 4),
                     "relative_half_width": round(float(half), 3),
                     "information_needed_x": round(float((half / TARGET_HALF_WIDTH) ** 2), 1),
                     "largest_abs_correlation": round(float(others.max()), 2),
                     "seconds": round(seconds, 1)})
    return rows


def main() -> None:
    warnings.simplefilter("ignore")
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for n_cells, hours, capacity in SIZES:
        rows += information_row(n_cells, hours, capacity)
        print(pd.DataFrame(rows[-len(FREE):]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    out = {"platform": platform.platform(), "python": sys.version.split()[0],
           "jax": jax.__version__, "truth": TRUTH, "fixed": FIXED,
           "frame_interval_h": FRAME_INTERVAL_H, "rows": rows}
    (RESULTS / "calibrate_information.json").write_text(json.dumps(out, indent=1))
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in table.itertuples(index=False)]
    (RESULTS / "calibrate_information.md").write_text(
        "# Information a movie carries about the recovery parameters (Laplace at the truth,"
        " true lineage)\n\n" + "\n".join(lines) + "\n\n`information_needed_x`: how many "
        "times more information a ±10 % half-width needs.\n")
    print("wrote", RESULTS / "calibrate_information.json")


if __name__ == "__main__":
    main()
