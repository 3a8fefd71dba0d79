"""Parameter recovery through the whole loop (issue 7), not a test.

Run ``python benchmarks/bench_calibrate.py [--seeds 0 1 2]`` (about 30 minutes per
fit on 2 cores, two fits and a correction per seed). Writes
``benchmarks/results/calibrate.json`` and ``calibrate.md``.

The experiment is the one a lab would run to separate a growth factor's effect
from proliferation itself: two movies fitted jointly (shared parameters) —

* a cluster of 150 cells with 21 source cells on its −x side, filmed 16 h;
* a control cluster of 100 cells without sources, filmed 8 h,

both every 0.5 h (``bench_calibrate_information.py`` shows that one 40-cell
8-h movie carries 200–400× too little information for ±10 %). Each movie is
simulated with known parameters (division rate, its control by the growth
factor, growth-factor decay length, motility), rendered by ``labloop.synth``
(voxels 2 × 0.5 × 0.5 µm, SNR 6), detected by the shipped U-Net, tracked (10
sampled lineages for the intervals) and measured; ``recalibrate`` fits λ_max,
the read-out weight, the decay length and the motility from a start away from
the truth, and from a second start on the other side of the fold change's minimum
(``SECOND_START``), keeping both minima where they fit alike. The division law
is scored as the movie pins it down
(:data:`labloop.calibrate.DIVISION_LAW`): the rate without growth factor and its
fold change at unit growth factor, with intervals from quantiles over draws of
the Laplace Gaussian(s). The same fit on the true lineages shows what tracking
error costs. Each tracked fit is then
corrected for the measuring chain (``labloop.calibrate.corrected_for_observation``):
the fitted tissue is simulated from the filmed initial state, filmed alike
(same voxels, SNR and nucleus size), detected, tracked and measured, and the
bias it shows against its own lineage (mean of 4 simulated tissues per
movie) is taken off the observations, their standard deviations widened by the
mean's standard error and the tissues' spread, before a linearised refit; the bias is
then measured again at the corrected parameters, up to 3 times in all (row
``tracked+corrected``; the simulated tissues have seeds of their own, from
5000 + 100 · seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=2")

import jax
import numpy as np
import pandas as pd

from labloop.calibrate import (
    DIVISION_LAW,
    Acquisition,
    CalibrateSettings,
    Experiment,
    corrected_for_observation,
    initial_from_lineage,
    observe,
    recalibrate,
    with_values,
)
from labloop.tissue import TissueModel, default_params, round_cluster, simulate, to_lineage

RESULTS = Path(__file__).resolve().parent / "results"
#: expected-growth gradients carry how proliferation compounds (more divisions, more cells
#: to divide) into the fitted counts; the pathwise "score" default sees only the direct effect
MODEL = TissueModel(capacity=640, dt_h=0.25, mechanics_substeps=2, neighbours="dense",
                    division_gradient="expected_growth")
#: the films: voxels 2 × 0.5 × 0.5 µm, SNR 6, nuclei 0.65 of the cell radius
ACQUISITION = Acquisition(voxel_size_um=(2.0, 0.5, 0.5), snr=6.0, nucleus_radius_scale=0.65)
#: lineages sampled by the tracker for the intervals of each movie's observations
TRACKER_SAMPLES = 10
#: seeds of the simulated tissues behind the observation correction: from 5000 + 100 · seed
CORRECTION_SEED = 5000
#: most biases measured per correction (at the fit, then at each corrected fit)
CORRECTION_ITERATIONS = 3
FRAME_INTERVAL_H = 0.5
#: name → (cells at the start, source cells, frames after the first)
MOVIES = {"sources": (150, 21, 32), "control": (100, 0, 16)}
FREE = ("division.max_rate_per_h", "division.output_weights",
        "growth_factor.decay_length_um", "mechanics.motility_um2_per_h")
TRUTH = {"division.max_rate_per_h": 0.25, "division.output_weights": [4.0],
         "growth_factor.decay_length_um": 20.0, "mechanics.motility_um2_per_h": 0.5}
START = {"division.max_rate_per_h": 0.15, "division.output_weights": [2.0],
         "growth_factor.decay_length_um": 30.0, "mechanics.motility_um2_per_h": 1.0}
FIXED = {"gene.input_weights": [-3.0], "gene.bias": [1.5], "division.output_bias": -2.0}
#: the second start: the fold change at unit growth factor has a minimum (0.2789) at read-out
#: weight 4.35, and the truth (weight 4, fold change 0.2807) lies just beside it; every fold
#: change above the minimum has one weight below 4.35 and one above, which a movie cannot
#: tell apart. START (weight 2) reaches the lower branch, this start the upper one
SECOND_START = {"division.max_rate_per_h": 0.2, "division.output_weights": [6.0]}
#: two starts and 4 replicates; the whole cosine-decayed Adam schedule runs (no early
#: stop: the objective is flat for a while before it settles), then up to 8
#: Levenberg–Marquardt steps reach the floor of the λ_max–read-out-weight valley that Adam
#: creeps along, and a last one on the 64 replicates (``CalibrateSettings.final_step``)
#: leaves the 4 replicates' Monte Carlo error behind; both starts are kept when their Adam
#: losses lie within 5 of each other (a minimum 5 worse weighs e⁻⁵ of the best), and the
#: intervals cover both minima
SETTINGS = CalibrateSettings(free=FREE, n_starts=2, starts=(SECOND_START,),
                             mode_loss_margin=5.0, n_replicates=4, max_iterations=50,
                             patience=50, learning_rate=0.08, polish_iterations=8)


def truth_of(name: str, truth_params) -> float:
    """The true value of a fitted parameter or derived quantity (by table name)."""
    if name in DIVISION_LAW:
        return float(DIVISION_LAW[name].function(truth_params))
    return float(np.ravel(TRUTH[name.split("[")[0]])[0])


def experiments_of(movies: dict) -> list[Experiment]:
    """The observed experiments of ``{name: (lineage, sources, samples)}``."""
    return [Experiment(observe(lineage, sources, samples=samples),
                       initial_from_lineage(MODEL, lineage, sources, n_genes=1))
            for lineage, sources, samples in movies.values()]


def fit_of(name: str, seed: int, experiments: list[Experiment], params):
    """Fit both movies jointly from ``params``."""
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        if done % 10 == 0:
            print(f"  {name} fit: step {done}/{total}, {time.perf_counter() - started:.0f} s",
                  flush=True)

    # each seed its own replicates: shared ones would share their Monte Carlo error
    return recalibrate(experiments, MODEL, params, settings=replace(SETTINGS, seed=seed),
                       progress=report)


def score(name: str, seed: int, fit, truth_params) -> dict:
    """A table row: fitted parameters and the division law against the truth."""
    row = {"seed": seed, "lineage": name, "seconds": round(fit.seconds, 1),
           "loss": round(fit.loss, 3), "iterations": len(fit.history),
           "notes": fit.identifiability,
           # each minimum's values and covariance: enough to recompute intervals without a refit
           "minima": [{"start": m.best_start, "loss": round(m.loss, 3),
                       "weight": round(float(w), 4),
                       "values": m.intervals.set_index("name")["value"].round(5).to_dict(),
                       "covariance_raw": m.covariance.round(10).to_dict(orient="split")}
                      for m, w in zip(fit.modes, fit.mode_weights(), strict=True)]}
    table = pd.concat([fit.intervals, fit.derived(DIVISION_LAW)], ignore_index=True)
    for r in table.itertuples():
        truth = truth_of(r.name, truth_params)
        key = r.name.split(".")[-1].split("[")[0]
        row[f"{key}_true"] = round(truth, 4)
        row[f"{key}_fit"] = round(float(r.value), 4)
        row[f"{key}_lower"] = round(float(r.lower), 4)
        row[f"{key}_upper"] = round(float(r.upper), 4)
        row[f"{key}_rel_error"] = round(abs(float(r.value) - truth) / abs(truth), 4)
        row[f"{key}_covered"] = bool(r.lower <= truth <= r.upper)
    return row


def brief(row: dict) -> dict:
    """A row without its notes and minima, to print."""
    return {k: v for k, v in row.items() if k not in ("notes", "minima")}


def bias_summary(fit) -> dict:
    """Per movie and term: the simulated tissue's mean true value and the mean bias."""
    out = {}
    for name, bias in zip(MOVIES, fit.extra["observation_bias"], strict=True):
        table = bias.table().groupby("term")[["true", "measured", "bias", "bias_sd",
                                               "bias_spread"]].mean()
        out[name] = table.round(5).to_dict(orient="index")
    return out


def film(name: str, seed: int, truth_params) -> tuple:
    """Simulate, render, detect and track one movie: ``(true, tracked, samples, sources)``."""
    n_cells, n_sources, frames = MOVIES[name]
    offset_seed = 0 if name == "sources" else 1000
    init = round_cluster(MODEL, n_cells, n_sources=n_sources, n_genes=1,
                         key=jax.random.key(100 + seed + offset_seed))
    traj = simulate(MODEL, truth_params, jax.random.key(seed + offset_seed), init,
                    n_frames=frames, steps_per_frame=round(FRAME_INTERVAL_H / MODEL.dt_h))
    if int(traj.frames.counters.overflow[-1]) > 0:
        raise RuntimeError(f"{name} movie of seed {seed} outgrew the model's capacity")
    true_lineage = to_lineage(traj)
    nodes = true_lineage.nodes
    sources = (nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
               if n_sources else None)
    tracked, samples = ACQUISITION(true_lineage, seed + offset_seed, TRACKER_SAMPLES)
    detected = tracked.nodes
    if "interpolated" in detected:
        detected = detected[~detected["interpolated"].astype(bool)]
    print(f"seed {seed} {name}: {true_lineage.n_nodes} true nuclei, {len(detected)} "
          f"tracked", flush=True)
    return true_lineage, tracked, samples, sources


#: columns of the printed and markdown table: what the recovery target is scored on
SCORED = ("motility_um2_per_h", "decay_length_um", "division_rate_without_growth_factor_per_h",
          "division_fold_change_at_unit_growth_factor")


def write_results(rows: list[dict]) -> None:
    """Print and write the table and JSON of the fits so far (after every fit, so that a
    long run that is stopped keeps what it measured)."""
    table = pd.DataFrame(rows)
    table["minima"] = [len(r.get("minima", [])) for r in rows]
    # biases measured by the correction (rows from before it iterated measured it once)
    table["bias_rounds"] = [max(i["iteration"] for i in r["correction_iterations"])
                            if "correction_iterations" in r
                            else int(r["lineage"].endswith("corrected")) for r in rows]
    short = table[["seed", "lineage", "seconds", "minima", "bias_rounds"]
                  + [f"{k}_{c}" for k in SCORED for c in ("fit", "rel_error", "covered")]]
    short = short.rename(columns=lambda c: c.replace("_um2_per_h", "").replace(
        "division_rate_without_growth_factor_per_h", "rate_no_gf").replace(
        "division_fold_change_at_unit_growth_factor", "fold_change_gf1").replace(
        "_um", "").replace("rel_error", "err"))
    print(short.to_string(index=False))
    # from the stored values, not the rounded errors (10.008 % must not pass as 0.100)
    errors = pd.concat([(table[f"{k}_fit"] - table[f"{k}_true"]).abs() / table[f"{k}_true"].abs()
                        for k in SCORED], axis=1)
    within = errors.le(0.10).all(axis=1)
    covered = table[[f"{k}_covered" for k in SCORED]].all(axis=1)
    summary = (table.assign(within_10pct=within, covered=covered)
               .groupby("lineage")[["within_10pct", "covered"]].sum())
    print(summary.to_string())
    out = {"platform": platform.platform(), "python": sys.version.split()[0],
           "jax": jax.__version__, "truth": TRUTH, "start": START, "fixed": FIXED,
           "movies": MOVIES, "frame_interval_h": FRAME_INTERVAL_H,
           "settings": SETTINGS.__dict__, "rows": rows,
           "seeds_all_within_10pct": summary.to_dict()}
    (RESULTS / "calibrate.json").write_text(json.dumps(out, indent=1, default=str))
    lines = ["| " + " | ".join(short.columns) + " |", "|" + "---|" * len(short.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in short.itertuples(index=False)]
    (RESULTS / "calibrate.md").write_text(
        "# Parameter recovery through the whole loop (two movies fitted jointly)\n\n"
        + "\n".join(lines) + "\n\nSeeds with every scored quantity within 10 % / inside "
        "its 90 % interval:\n\n| lineage | within 10 % | covered |\n|---|---|---|\n"
        + "".join(f"| {k} | {r.within_10pct} | {r.covered} |\n"
                  for k, r in summary.iterrows()))
    print("wrote", RESULTS / "calibrate.json", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lineages", nargs="+", choices=("true", "tracked"),
                        default=["true", "tracked"], help="which lineages to fit")
    parser.add_argument("--keep-other-rows", action="store_true",
                        help="keep the rows (seed and lineage) not run now from the existing "
                             "calibrate.json (only valid if the code they depend on is the "
                             "same: true-lineage fits do not depend on detector or tracker)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    RESULTS.mkdir(exist_ok=True)
    truth_params = with_values(default_params(1), **TRUTH, **FIXED)
    start_params = with_values(truth_params, **START)
    rows = []
    if args.keep_other_rows and (RESULTS / "calibrate.json").exists():
        previous = json.loads((RESULTS / "calibrate.json").read_text())["rows"]
        rows = [r for r in previous
                if r["seed"] not in args.seeds
                or r["lineage"].split("+")[0] not in args.lineages]
    for seed in args.seeds:
        t0 = time.perf_counter()
        filmed = {name: film(name, seed, truth_params) for name in MOVIES}
        print(f"seed {seed}: movies ready in {time.perf_counter() - t0:.0f} s", flush=True)
        for kind in args.lineages:
            movies = {name: (true, sources, None) if kind == "true" else
                      (tracked, sources, samples)
                      for name, (true, tracked, samples, sources) in filmed.items()}
            experiments = experiments_of(movies)
            fit = fit_of(kind, seed, experiments, start_params)
            rows.append(score(kind, seed, fit, truth_params))
            print(brief(rows[-1]), flush=True)
            write_results(rows)
            if kind == "tracked":
                # four simulated tissues per movie give the bias, its standard error and
                # spread; measured again at the corrected parameters until they settle
                corrected = corrected_for_observation(
                    fit, experiments, MODEL, ACQUISITION, seed=CORRECTION_SEED + 100 * seed,
                    n_tissues=4, iterations=CORRECTION_ITERATIONS)
                path = corrected.extra["correction_iterations"]
                rows.append(score("tracked+corrected", seed, corrected, truth_params)
                            | {"correction_seconds": round(corrected.seconds - fit.seconds, 1),
                               "bias": bias_summary(corrected),
                               "correction_iterations": path.round(5).to_dict("records")})
                print(brief(rows[-1]), flush=True)
                write_results(rows)


if __name__ == "__main__":
    main()
