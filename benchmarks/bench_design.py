"""Design by gradients: reproduce the elongation result, then a new target (not a test).

Run ``python benchmarks/bench_design.py`` (about 40 minutes on 2 CPU cores).
It prints tables and writes ``benchmarks/results/design.json``, ``design.md``
and figures ``design_*.png``.

Reference experiment. A round 3D cluster of 30 cells (6 source cells forming a
cap on its −x side; adhesion 1 µm²/h, motility 0.1 µm²/h) grows for 24 h (96
steps of 0.25 h). The gene network's couplings (3 genes: ``W, b, u``) and its
division read-out (``v, b_λ``) start from random couplings (one draw per seed,
read-out bias −2.5 so the start grows moderately); the gene production and
decay rates ``r = γ = 1/h`` (gene levels on a fixed 0–1 scale) and
``λ_max = 0.5/h`` are frozen. Adam (learning rate 0.15, 120 iterations) minimises
``−½ log(E[(x − x_s)²] / σ²_⊥) + (N/150 − 1)²`` at 24 h: the first term is the
second moment of the proliferating cells along x about the sources' centroid
(only growth away from the sources pays; :func:`labloop.design.extension_loss`),
the second holds the final size near 150 cells, as the reference fixes the final
cell number and lets the network decide only *where* cells divide (without it
the optimiser stops all growth or overgrows). 8 replicates per iteration, the same
8 random streams in every iteration (common random numbers: with fresh replicates
each step, 4 per iteration, the loss wandered within its replicate noise and the
network stayed nearly flat), with the expected-growth estimator through the
divisions (every cell's weight carries the first-order change of its expected
offspring). Seeds 0, 1, 2.
Before/after: 16 fresh replicates each.

New target. Same cluster; the network (all of ``W, b, u, r, γ, v, b_λ``) and
``λ_max`` learn to grow to 100 cells and *stop there*: the loss is the mean of
``(N(t)/100 − 1)²`` over 12–24 h. The genes start slow (``r = γ = 0.1/h``, levels
rising over ~10 h), so a network that reads its own level can act as a clock.

Estimator variance. On a smaller cluster (20 cells, 12 h), 16 single-replicate
score-function gradients of the elongation loss with and without the
leave-one-out baseline: their variance per parameter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=2")

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
import pandas as pd

from labloop.design import (
    GENE_NETWORK,
    design,
    elongation_loss,
    evaluate,
    extension_loss,
    rate_by_distance,
    target_size_loss,
    weighted_sum,
)
from labloop.tissue import (
    MechanicsParams,
    TissueModel,
    cell_count,
    default_params,
    per_replicate_gradients,
    round_cluster,
    simulate_replicates,
)

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)
N_ITER = 120
N_REP = 8
N_EVAL = 16
RUN = {"n_frames": 8, "steps_per_frame": 12}
TARGET_CELLS = 100.0
#: cells the elongation design must end with (the reference fixes the final size)
HOLD_CELLS = 150.0
#: elongation away from the sources at (about) a fixed final size
ELONGATE_AT_SIZE = weighted_sum((1.0, extension_loss()),
                                (1.0, target_size_loss(HOLD_CELLS, from_frame=RUN["n_frames"])))
#: the elongation design tunes the couplings and read-out; with the gene production
#: and decay rates free too, it shrank the genes' range (r/γ → 0.1) and so flattened
#: the network instead of shaping it
COUPLINGS = ("gene.weights", "gene.bias", "gene.input_weights", "division.output_weights",
             "division.output_bias")
MAX_RATE_PER_H = 0.5
START_OUTPUT_BIAS = -2.5
MODEL = TissueModel(capacity=256, dt_h=0.25, mechanics_substeps=4,
                    division_gradient="expected_growth", neighbours="dense")
MECHANICS = {"adhesion_um2_per_h": 1.0, "morse_width_um": 3.0, "motility_um2_per_h": 0.1}


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (no dependency on ``tabulate``)."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def start_params(seed: int):
    p = default_params(n_genes=3, key=jax.random.key(1000 + seed))
    mechanics = MechanicsParams(**{k: jnp.asarray(v) for k, v in MECHANICS.items()})
    division = dataclasses.replace(p.division, max_rate_per_h=jnp.asarray(MAX_RATE_PER_H),
                                   output_bias=jnp.asarray(START_OUTPUT_BIAS))
    return p.replace(division=division, mechanics=mechanics)


def estimator_variance() -> dict:
    """Per-parameter variance of single-replicate score-function gradients, with and
    without the leave-one-out baseline (16 replicates, 20 cells, 12 h)."""
    model = TissueModel(capacity=128, dt_h=0.25, mechanics_substeps=2, neighbours="dense")
    initial = round_cluster(model, 20, n_sources=4, key=jax.random.key(3))
    params = start_params(0)
    out = {}
    for estimator in ("score", "score_no_baseline"):
        _, grads = per_replicate_gradients(elongation_loss(), model, params, jax.random.key(5),
                                           16, initial, estimator, n_frames=6,
                                           steps_per_frame=8)
        leaves = [np.asarray(g).reshape(16, -1) for g in
                  jax.tree_util.tree_leaves(grads.gene)]
        flat = np.concatenate(leaves, axis=1)
        out[estimator] = {"mean_variance": float(flat.var(axis=0).mean()),
                          "mean_abs_gradient": float(np.abs(flat.mean(axis=0)).mean())}
    out["variance_ratio_without_over_with"] = (out["score_no_baseline"]["mean_variance"]
                                               / out["score"]["mean_variance"])
    return out


def projection(ax, traj, title):
    final = jax.tree_util.tree_map(lambda x: np.asarray(x[0, -1]), traj.frames)
    alive = final.alive
    pos, kind, rate = final.position_um[alive], final.cell_type[alive], \
        final.division_rate_per_h[alive]
    prolif = kind == 1
    sc = ax.scatter(pos[prolif, 2], pos[prolif, 1], c=rate[prolif], cmap="viridis", s=18,
                    vmin=0, vmax=0.2)
    ax.scatter(pos[~prolif, 2], pos[~prolif, 1], c="red", s=18, marker="s", label="source")
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    return sc


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    initial = round_cluster(MODEL, 30, n_sources=6, key=jax.random.key(7))
    out: dict = {"platform": platform.platform(), "python": sys.version.split()[0],
                 "jax": jax.__version__, "model": dataclasses.asdict(MODEL), "run": RUN,
                 "seeds": list(SEEDS), "iterations": N_ITER, "replicates": N_REP,
                 "elongation": [], "target_size": {}}
    histories, profiles, trajs = {}, {}, {}
    for seed in SEEDS:
        params = start_params(seed)
        t0 = time.perf_counter()
        result = design(MODEL, params, initial, ELONGATE_AT_SIZE, jax.random.key(seed),
                        free=COUPLINGS, optimizer=optax.adam(0.15), n_iterations=N_ITER,
                        n_replicates=N_REP, common_random_numbers=True, **RUN)
        seconds = time.perf_counter() - t0
        eval_key = jax.random.key(500 + seed)
        before = evaluate(MODEL, params, initial, eval_key, N_EVAL, **RUN)
        after = evaluate(MODEL, result.params, initial, eval_key, N_EVAL, **RUN)
        keys = jax.random.split(eval_key, 4)
        tb = simulate_replicates(MODEL, params, keys, initial, **RUN)
        ta = simulate_replicates(MODEL, result.params, keys, initial, **RUN)
        profiles[seed] = (rate_by_distance(tb), rate_by_distance(ta))
        trajs[seed] = (tb, ta)
        histories[seed] = result.history
        row = {"seed": seed, "seconds": round(seconds, 1),
               "elongation_before": float(before["elongation"].mean()),
               "elongation_before_sd": float(before["elongation"].std()),
               "elongation_after": float(after["elongation"].mean()),
               "elongation_after_sd": float(after["elongation"].std()),
               "log_aspect_x_before": float(before["axis_elongation"].mean()),
               "log_aspect_x_after": float(after["axis_elongation"].mean()),
               "cells_before": float(before["cell_count"].mean()),
               "cells_after": float(after["cell_count"].mean()),
               "overflow_after": int(after["overflow"].sum()),
               "loss_first5": float(result.history["loss"][:5].mean()),
               "loss_last5": float(result.history["loss"][-5:].mean()),
               "rate_near_sources_before": float(profiles[seed][0]["rate_per_h"].iloc[0]),
               "rate_far_before": float(profiles[seed][0].dropna(subset=["rate_per_h"])
                                        .query("n >= 20")["rate_per_h"].iloc[-1]),
               "rate_near_sources_after": float(profiles[seed][1]["rate_per_h"].iloc[0]),
               "rate_far_after": float(profiles[seed][1].dropna(subset=["rate_per_h"])
                                       .query("n >= 20")["rate_per_h"].iloc[-1]),
               "profile_before": profiles[seed][0].to_dict("list"),
               "profile_after": profiles[seed][1].to_dict("list"),
               "loss_history": result.history["loss"].round(5).tolist()}
        out["elongation"].append(row)
        print(f"seed {seed}: elongation {row['elongation_before']:.2f} -> "
              f"{row['elongation_after']:.2f}, log-aspect(x) {row['log_aspect_x_before']:.2f}"
              f" -> {row['log_aspect_x_after']:.2f}, {seconds:.0f} s", flush=True)

    # ---- new target: grow to TARGET_CELLS and stop
    params = start_params(0)
    # slow genes (r = γ = 0.1/h, levels rising over ~10 h) give the network a clock
    params = params.replace(gene=dataclasses.replace(
        params.gene, production_per_h=jnp.asarray(0.1), decay_per_h=jnp.asarray(0.1)))
    loss = target_size_loss(TARGET_CELLS, from_frame=4)
    t0 = time.perf_counter()
    size = design(MODEL, params, initial, loss, jax.random.key(42),
                  free=(*GENE_NETWORK, "division.max_rate_per_h"),
                  optimizer=optax.adam(0.15), n_iterations=N_ITER,
                  n_replicates=N_REP, common_random_numbers=True, **RUN)
    seconds = time.perf_counter() - t0
    keys = jax.random.split(jax.random.key(99), N_EVAL)
    counts = {}
    for name, p in (("before", params), ("after", size.params)):
        traj = simulate_replicates(MODEL, p, keys, initial, **RUN)
        counts[name] = np.asarray(jax.vmap(jax.vmap(cell_count))(traj.frames))
    hours = np.arange(RUN["n_frames"] + 1) * MODEL.dt_h * RUN["steps_per_frame"]
    out["target_size"] = {
        "target_cells": TARGET_CELLS, "seconds": round(seconds, 1), "hours": hours.tolist(),
        "count_before_mean": counts["before"].mean(0).tolist(),
        "count_after_mean": counts["after"].mean(0).tolist(),
        "count_after_sd": counts["after"].std(0).tolist(),
        "loss_first5": float(size.history["loss"][:5].mean()),
        "loss_last5": float(size.history["loss"][-5:].mean()),
        "loss_history": size.history["loss"].round(5).tolist(),
        "max_rate_after_per_h": float(size.params.division.max_rate_per_h)}

    # ---- tables
    table = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, list | dict)}
                          for r in out["elongation"]])
    print(table.round(3).to_string(index=False))
    ts = out["target_size"]
    size_table = pd.DataFrame({"time_h": hours, "cells_before": ts["count_before_mean"],
                               "cells_after": ts["count_after_mean"],
                               "cells_after_sd": ts["count_after_sd"]})
    print(size_table.round(1).to_string(index=False))
    out["estimator_variance"] = variance = estimator_variance()
    print("score-function gradient variance (gene parameters):", variance)
    (RESULTS / "design.json").write_text(json.dumps(out, indent=1))
    (RESULTS / "design.md").write_text(
        "# Design by gradients\n\n## Elongation away from the sources (3 seeds)\n\n"
        + markdown(table.round(3)) + "\n\n## Target size "
        f"{TARGET_CELLS:.0f} cells (grow and stop)\n\n"
        + markdown(size_table.round(1)) + "\n\n## Score-function gradient variance "
        "(16 single-replicate gradients, gene-network parameters)\n\n"
        f"with leave-one-out baseline: {variance['score']['mean_variance']:.4g}; without: "
        f"{variance['score_no_baseline']['mean_variance']:.4g} (ratio "
        f"{variance['variance_ratio_without_over_with']:.2f})\n")

    # ---- figures
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for seed, h in histories.items():
        axes[0].plot(h["iteration"], h["loss"], label=f"seed {seed}")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("loss  −½ log(E[(x−xₛ)²]/σ²⊥)")
    axes[0].set_title(f"elongation design: loss ({N_REP} replicates / iteration)")
    axes[0].legend()
    axes[1].plot(size.history["iteration"], size.history["loss"], color="k")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("loss  mean (N/N* − 1)²")
    axes[1].set_title(f"target size N* = {TARGET_CELLS:.0f}: loss")
    fig.tight_layout()
    fig.savefig(RESULTS / "design_loss.png", dpi=120)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for seed, (pb, pa) in profiles.items():
        mid = (pb["bin_lo_um"] + pb["bin_hi_um"]) / 2
        axes[0].plot(mid, pb["rate_per_h"], "--", color=f"C{seed}", label=f"seed {seed} before")
        axes[0].plot(mid, pa["rate_per_h"], "-o", color=f"C{seed}", label=f"seed {seed} after")
        axes[1].plot(pa["growth_factor"], pa["rate_per_h"], "-o", color=f"C{seed}")
        axes[1].plot(pb["growth_factor"], pb["rate_per_h"], "--", color=f"C{seed}")
    axes[0].set_xlabel("distance to nearest source cell (µm)")
    axes[0].set_ylabel("division propensity λ (1/h)")
    axes[0].set_title("learned motif: division rate vs distance")
    axes[0].legend(fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("growth factor c (a.u.)")
    axes[1].set_ylabel("λ (1/h)")
    axes[1].set_title("division rate vs growth factor")
    rows = out["elongation"]
    x = np.arange(len(rows))
    axes[2].bar(x - 0.2, [r["elongation_before"] for r in rows], 0.4,
                yerr=[r["elongation_before_sd"] for r in rows], label="before")
    axes[2].bar(x + 0.2, [r["elongation_after"] for r in rows], 0.4,
                yerr=[r["elongation_after_sd"] for r in rows], label="after")
    axes[2].set_xticks(x, [f"seed {r['seed']}" for r in rows])
    axes[2].set_ylabel("elongation axis₁/axis₂ at 24 h")
    axes[2].set_title(f"elongation before vs after ({N_EVAL} replicates)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "design_motif.png", dpi=120)

    fig, axes = plt.subplots(2, len(SEEDS), figsize=(4 * len(SEEDS), 7))
    for j, seed in enumerate(SEEDS):
        projection(axes[0, j], trajs[seed][0], f"seed {seed}: before (24 h)")
        sc = projection(axes[1, j], trajs[seed][1], f"seed {seed}: after (24 h)")
    fig.colorbar(sc, ax=axes, label="λ (1/h)", shrink=0.6)
    fig.savefig(RESULTS / "design_clusters.png", dpi=110)

    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(hours, ts["count_before_mean"], "--", label="before")
    ax.errorbar(hours, ts["count_after_mean"], yerr=ts["count_after_sd"], fmt="-o",
                label="after")
    ax.axhline(TARGET_CELLS, color="k", lw=0.8, label="target")
    ax.axvspan(hours[4], hours[-1], color="0.9", zorder=0)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("cells")
    ax.set_title("new target: grow to 100 cells and stop")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "design_target_size.png", dpi=120)
    print("wrote", RESULTS / "design.json")


if __name__ == "__main__":
    main()
