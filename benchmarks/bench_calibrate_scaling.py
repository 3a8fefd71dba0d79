"""How the time of a recalibration grows with the number of cells (issue 7), not a test.

Run ``python benchmarks/bench_calibrate_scaling.py`` (about 7 minutes on 2 CPU
cores). Writes ``benchmarks/results/calibrate_scaling.json`` and ``.md``.

For each size: a 3D cluster of ``N`` cells (15 % source cells) grows for 4 h
under the tissue model with known parameters; its true lineage is observed
(:func:`labloop.calibrate.observe`) and :func:`labloop.calibrate.recalibrate`
fits the four parameters of ``bench_calibrate.py`` from the same start, with a
fixed budget (one start, 8 replicates, 12 Adam iterations, no early stop, no
Levenberg–Marquardt polish, whose length depends on convergence) so sizes
compare. Reported: the whole fit (compilation, iterations and the Laplace
uncertainty), its compilation-free part per iteration, and the log-log slope
of time against cells. The model picks all-pairs neighbours below 512 slots and
the O(N) cell list above, as it does by default.
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

from labloop.calibrate import CalibrateSettings, initial_from_lineage, observe, recalibrate
from labloop.calibrate.fit import with_values
from labloop.tissue import TissueModel, default_params, round_cluster, simulate, to_lineage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_calibrate import FIXED, FREE, START, TRUTH

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (25, 50, 100, 200, 400)
FRAMES = 8
STEPS_PER_FRAME = 2
ITERATIONS = 12
#: a fixed budget: no early stop and no polish (whose length depends on convergence)
SETTINGS = CalibrateSettings(free=FREE, n_starts=1, n_replicates=8,
                             max_iterations=ITERATIONS, patience=ITERATIONS + 1,
                             tolerance=0.0, learning_rate=0.05, polish_iterations=0)


def fit_one(n: int) -> dict:
    """Simulate ``n`` cells, observe the true lineage and time one fit."""
    model = TissueModel(capacity=int(2.5 * n), dt_h=0.25, mechanics_substeps=2)
    truth = with_values(default_params(1), **TRUTH, **FIXED)
    init = round_cluster(model, n, n_sources=max(2, int(0.15 * n)), n_genes=1,
                         key=jax.random.key(n))
    traj = simulate(model, truth, jax.random.key(1), init, n_frames=FRAMES,
                    steps_per_frame=STEPS_PER_FRAME)
    lineage = to_lineage(traj)
    nodes = lineage.nodes
    sources = nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
    observed = observe(lineage, sources)
    initial = initial_from_lineage(model, lineage, sources, n_genes=1)
    start = with_values(truth, **START)
    stamps: list[float] = []
    t0 = time.perf_counter()
    fit = recalibrate(observed, model, start, initial, SETTINGS,
                      progress=lambda done, total: stamps.append(time.perf_counter()))
    total = time.perf_counter() - t0
    history = fit.history
    # the first iteration compiles; the last stamp is the closing call of the bar
    per_iteration = float(np.median(np.diff(stamps[:len(history)])))
    return {"cells_start": n, "cells_end": int((nodes["t"] == nodes["t"].max()).sum()),
            "capacity": model.capacity,
            "neighbours": "cell list" if model.uses_cell_list else "all pairs",
            "iterations": len(history), "fit_s": round(total, 2),
            "per_iteration_s": round(per_iteration, 3), "loss": round(fit.loss, 3)}


def main() -> None:
    warnings.simplefilter("ignore")
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for n in SIZES:
        rows.append(fit_one(n))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    cells = np.log(table["cells_end"].to_numpy(float))
    slope_fit = float(np.polyfit(cells, np.log(table["fit_s"]), 1)[0])
    slope_iter = float(np.polyfit(cells, np.log(table["per_iteration_s"]), 1)[0])
    out = {"platform": platform.platform(), "python": sys.version.split()[0],
           "jax": jax.__version__, "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(),
           "settings": SETTINGS.__dict__, "rows": rows,
           "slope_fit_vs_cells": slope_fit, "slope_iteration_vs_cells": slope_iter}
    (RESULTS / "calibrate_scaling.json").write_text(json.dumps(out, indent=1, default=str))
    lines = ["# Time of a recalibration against cell number", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in table.itertuples(index=False)]
    lines += ["", f"whole fit ~ cells^{slope_fit:.2f}; one iteration ~ cells^{slope_iter:.2f} "
              f"(cells at the end of the movie)", ""]
    (RESULTS / "calibrate_scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
