"""How much movie does a 10 % parameter recovery need? (issue 7, not a test)

Run ``python benchmarks/bench_calibrate_information.py`` (about 8 minutes on 2
cores). Writes ``benchmarks/results/calibrate_information.json`` and ``.md``.

For each experiment design — one movie of 40 cells over 8 h, one of 150 cells
over 16 h, and the recovery benchmark's pair (150 cells with sources over 16 h
plus a 100-cell control without sources over 8 h, fitted jointly) — clusters
grow under the recovery benchmark's true parameters (``bench_calibrate.TRUTH``),
their true lineages are observed every 0.5 h, and
:func:`labloop.calibrate.recalibrate` is evaluated *at the truth* (one start,
one iteration: no optimisation), so its Laplace covariance is the information
the movies carry about the four parameters, free of optimiser error. The
division law is also reported as the movies pin it down (``DIVISION_LAW``: the
rate without growth factor and its fold change at unit growth factor; delta
method). Reported: the 90 % interval, its relative half-width, and how many
times more information a ±10 % half-width would need (``(half-width / 0.10)²``,
since the variance falls as 1 / information).
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
from bench_calibrate import FIXED, FREE, MOVIES, TRUTH

from labloop.calibrate import (
    DIVISION_LAW,
    CalibrateSettings,
    Experiment,
    initial_from_lineage,
    observe,
    recalibrate,
    with_values,
)
from labloop.tissue import (
    TissueModel,
    default_params,
    round_cluster,
    simulate,
    to_lineage,
)

RESULTS = Path(__file__).resolve().parent / "results"
#: design name → model capacity and its movies (cells at the start, source cells, hours)
DESIGNS = {
    "40 cells, 8 h": (192, [(40, 6, 8.0)]),
    "150 cells, 16 h": (640, [(150, 21, 16.0)]),
    "150 cells, 16 h + control 100 cells, 8 h": (
        640, [(n, s, frames * 0.5) for n, s, frames in MOVIES.values()]),
}
FRAME_INTERVAL_H = 0.5
TARGET_HALF_WIDTH = 0.10
#: one Adam evaluation (its update is not taken) and no polish: the fit stays at the truth
AT_TRUTH = CalibrateSettings(free=FREE, n_starts=1, max_iterations=1, patience=1,
                             polish_iterations=0)


def experiment(model: TissueModel, truth, n_cells: int, n_sources: int, hours: float,
               index: int) -> tuple[Experiment, int]:
    """One simulated movie's true lineage as an experiment, and its cells at the end."""
    start = round_cluster(model, n_cells, n_sources=n_sources, n_genes=1,
                          key=jax.random.key(100 + index))
    trajectory = simulate(model, truth, jax.random.key(index), start,
                          n_frames=round(hours / FRAME_INTERVAL_H), steps_per_frame=2)
    lineage = to_lineage(trajectory)
    nodes = lineage.nodes
    sources = (nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
               if n_sources else None)
    observed = observe(lineage, sources)
    cells_end = int((nodes["t"] == nodes["t"].max()).sum())
    initial = initial_from_lineage(model, lineage, sources, n_genes=1)
    return Experiment(observed, initial), cells_end


def information_rows(design: str) -> list[dict]:
    """Laplace intervals at the truth for one design, one row per reported quantity."""
    capacity, movies = DESIGNS[design]
    model = TissueModel(capacity=capacity, dt_h=0.25, mechanics_substeps=2,
                        neighbours="dense")
    truth = with_values(default_params(1), **TRUTH, **FIXED)
    built = [experiment(model, truth, *movie, index) for index, movie in enumerate(movies)]
    t0 = time.perf_counter()
    fit = recalibrate([b[0] for b in built], model, truth, settings=AT_TRUTH)
    seconds = time.perf_counter() - t0
    correlation = fit.covariance.to_numpy() / np.outer(
        np.sqrt(np.diag(fit.covariance)), np.sqrt(np.diag(fit.covariance)))
    table = pd.concat([fit.intervals, fit.derived(DIVISION_LAW)], ignore_index=True)
    rows = []
    for i, r in enumerate(table.itertuples()):
        half = (r.upper - r.lower) / 2 / abs(r.value)
        others = (np.delete(np.abs(correlation[i]), i) if i < len(correlation)
                  else np.array([np.nan]))
        rows.append({"design": design, "cells_end": "+".join(str(b[1]) for b in built),
                     "quantity": r.name, "truth": round(float(r.value), 4),
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
    for design in DESIGNS:
        new = information_rows(design)
        rows += new
        print(pd.DataFrame(new).to_string(index=False), flush=True)
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
        "times more information a ±10 % half-width needs; the correlation column is blank "
        "(NaN) for derived quantities.\n")
    print("wrote", RESULTS / "calibrate_information.json")


if __name__ == "__main__":
    main()
