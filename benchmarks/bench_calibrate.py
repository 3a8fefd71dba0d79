"""Parameter recovery through the whole loop (issue 7), not a test.

Run ``python benchmarks/bench_calibrate.py [--seeds 0 1 2]`` (about 10 minutes per
seed on 2 busy cores). Writes ``benchmarks/results/calibrate.json`` and
``calibrate.md``.

For each seed: a 3D cluster of 40 cells (6 source cells on its −x side) grows
for 8 h under the tissue model with known parameters (division rate, its
control by the growth factor, growth-factor decay length, motility). The
trajectory is rendered into a 17-frame movie (every 0.5 h, voxels 2 × 0.5 × 0.5
µm, SNR 6) by ``labloop.synth``, and the shipped U-Net detects, the tracker
links (10 sampled lineages for the intervals), and ``recalibrate`` fits the
four parameters from a start away from the truth. The same fit on the true
lineage shows what tracking error costs.
"""

from __future__ import annotations

import argparse
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
from labloop.detect import detect
from labloop.synth import SynthConfig, render_movie
from labloop.tissue import TissueModel, default_params, round_cluster, simulate, to_lineage
from labloop.track import sample_lineages, track

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = TissueModel(capacity=192, dt_h=0.25, mechanics_substeps=2, neighbours="dense")
VOXEL = (2.0, 0.5, 0.5)
FRAMES = 16
FREE = ("division.max_rate_per_h", "division.output_weights",
        "growth_factor.decay_length_um", "mechanics.motility_um2_per_h")
TRUTH = {"division.max_rate_per_h": 0.25, "division.output_weights": [4.0],
         "growth_factor.decay_length_um": 20.0, "mechanics.motility_um2_per_h": 0.5}
START = {"division.max_rate_per_h": 0.15, "division.output_weights": [2.0],
         "growth_factor.decay_length_um": 30.0, "mechanics.motility_um2_per_h": 1.0}
FIXED = {"gene.input_weights": [-3.0], "gene.bias": [1.5], "division.output_bias": -2.0}
SETTINGS = CalibrateSettings(free=FREE, n_starts=2, max_iterations=80, patience=15,
                             learning_rate=0.05)


def movie_of(lineage, seed: int):
    """Render the simulated nuclei (nucleus radius 0.65 × cell radius) into a movie."""
    nodes = lineage.nodes.copy()
    offset = 8.0 - nodes[["z", "y", "x"]].min().to_numpy()
    nodes[["z", "y", "x"]] += offset
    nodes["radius_um"] = 0.65 * nodes["radius_um"]
    extent = nodes[["z", "y", "x"]].max().to_numpy() + 8.0
    shape = (FRAMES + 1, *np.ceil(extent / np.asarray(VOXEL)).astype(int))
    image = render_movie(nodes, shape, VOXEL, SynthConfig(snr=6.0, seed=seed), rng=seed)
    return image, offset


def fit_row(name: str, seed: int, lineage, sources, samples, params) -> dict:
    observed = observe(lineage, sources, samples=samples)
    initial = initial_from_lineage(MODEL, lineage, sources, n_genes=1)
    fit = recalibrate(observed, MODEL, params, initial, SETTINGS)
    row = {"seed": seed, "lineage": name, "seconds": round(fit.seconds, 1),
           "loss": round(fit.loss, 3), "notes": fit.identifiability}
    for r in fit.intervals.itertuples():
        truth = float(np.ravel(TRUTH[r.name.split("[")[0]])[0])
        key = r.name.split(".")[-1].split("[")[0]
        row[f"{key}_true"] = truth
        row[f"{key}_fit"] = round(float(r.value), 4)
        row[f"{key}_lower"] = round(float(r.lower), 4)
        row[f"{key}_upper"] = round(float(r.upper), 4)
        row[f"{key}_rel_error"] = round(abs(float(r.value) - truth) / abs(truth), 3)
        row[f"{key}_covered"] = bool(r.lower <= truth <= r.upper)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    RESULTS.mkdir(exist_ok=True)
    truth_params = with_values(default_params(1), **TRUTH, **FIXED)
    start_params = with_values(truth_params, **START)
    rows = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        init = round_cluster(MODEL, 40, n_sources=6, n_genes=1, key=jax.random.key(100 + seed))
        traj = simulate(MODEL, truth_params, jax.random.key(seed), init, n_frames=FRAMES,
                        steps_per_frame=2)
        true_lineage = to_lineage(traj)
        image, offset = movie_of(true_lineage, seed)
        nodes = true_lineage.nodes
        sources = nodes.loc[(nodes["t"] == 0) & nodes["source"], ["z", "y", "x"]].to_numpy()
        detections = detect(image, VOXEL, progress=False)
        detections[["z", "y", "x"]] -= offset  # back to the simulation's frame
        extent = tuple(float(v) for v in np.asarray(image.shape[1:]) * VOXEL)
        tracked = track(detections, frame_interval_h=traj.frame_interval_h,
                        image_shape_um=extent)
        samples = sample_lineages(detections, 10, seed, frame_interval_h=traj.frame_interval_h,
                                  image_shape_um=extent)
        prep = time.perf_counter() - t0
        print(f"seed {seed}: {true_lineage.n_nodes} true nuclei, {len(detections)} detected, "
              f"{prep:.0f} s", flush=True)
        for name, lineage, s in (("true", true_lineage, None), ("tracked", tracked, samples)):
            row = fit_row(name, seed, lineage, sources, s, start_params)
            rows.append(row)
            print({k: v for k, v in row.items() if k != "notes"}, flush=True)
    table = pd.DataFrame(rows)
    short = table[[c for c in table.columns if c.endswith(("_fit", "_rel_error", "_covered"))
                   or c in ("seed", "lineage", "seconds")]]
    print(short.to_string(index=False))
    out = {"platform": platform.platform(), "python": sys.version.split()[0],
           "jax": jax.__version__, "truth": TRUTH, "start": START, "fixed": FIXED,
           "settings": SETTINGS.__dict__, "rows": rows}
    (RESULTS / "calibrate.json").write_text(json.dumps(out, indent=1, default=str))
    lines = ["| " + " | ".join(short.columns) + " |", "|" + "---|" * len(short.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in short.itertuples(index=False)]
    (RESULTS / "calibrate.md").write_text("# Parameter recovery through the whole loop\n\n"
                                          + "\n".join(lines) + "\n")
    print("wrote", RESULTS / "calibrate.json")


if __name__ == "__main__":
    main()
