"""Benchmark of ``labloop batch``: stores per minute with 1 and 2 workers, memory per worker.

Run ``python benchmarks/bench_batch.py`` (about 5 minutes on two cores). N small
simulated stores (default 8 stores of 8 frames of 16 × 96 × 96 voxels, 20 cells)
go through ``pipelines/standard.toml`` (detect → track → measure) on a local
cluster of 1 worker, then on fresh copies with 2 workers, each worker one
process with one thread. The clock starts once the workers are up and have
imported labloop and loaded the detector (cluster start-up is reported apart),
and stops when the last store is done. Reported per run: wall time, stores per
minute, speed-up over 1 worker, peak resident memory of each worker process,
and whether the results are bit-identical to the 1-worker run. The machine's
load average is recorded too: other jobs on the same cores slow every task down
and lower the speed-up, so the total worker time of each run is reported with
how busy the workers were (worker time / (workers × wall)) and the speed-up had
every task cost as much as in the 1-worker run (speed-up × worker-time ratio).
Writes ``benchmarks/results/batch.json`` and ``batch.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from labloop.batch import connect, load_pipeline, plan_stores, run_plans
from labloop.io.images import as_image
from labloop.io.store import DETECTIONS, MORPHOMETRICS, create_experiment, read_table
from labloop.synth import SynthConfig, simulate_movie

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PIPELINE = ROOT / "pipelines" / "standard.toml"


def make_stores(folder: Path, n: int, frames: int, shape: tuple[int, int, int],
                cells: int) -> list[Path]:
    """Simulate ``n`` stores with seeds 0..n-1."""
    stores = []
    for seed in range(n):
        movie = simulate_movie(SynthConfig(frames=frames, shape=shape, n_cells=cells,
                                           seed=seed))
        image = as_image(movie.image, movie.voxel_size_um, movie.frame_interval_h)
        stores.append(create_experiment(folder / f"pos{seed:02d}.zarr", image).path)
    return stores


def warm_up() -> None:
    """Import the steps and load the detector on a worker (not timed)."""
    import importlib

    from labloop.detect import load_model

    for module in ("labloop.track", "labloop.measure"):
        importlib.import_module(module)
    load_model()


def run(stores: list[Path], workers: int) -> dict[str, Any]:
    """The standard pipeline over ``stores`` on a local cluster of ``workers`` workers."""
    pipeline = load_pipeline(PIPELINE)
    started = time.perf_counter()
    with connect(workers=workers) as client:
        client.run(warm_up)
        startup = time.perf_counter() - started
        load_before = os.getloadavg()[0]
        clock = time.perf_counter()
        report = run_plans(client, plan_stores(stores, pipeline), pipeline, progress=True)
        wall = time.perf_counter() - clock
    memory = sorted(report.worker_peak_memory_bytes.values())
    return {"workers": workers, "stores": len(stores), "failed": report.n_failed,
            "wall_s": round(wall, 2), "stores_per_minute": round(60 * len(stores) / wall, 2),
            "cluster_start_s": round(startup, 2),
            "worker_peak_memory_mib": [round(m / 2**20) for m in memory],
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "task_seconds": round(sum(s.seconds for s in report.stores), 2)}


#: table wording of the comparison with the 1-worker run (None: it is that run)
IDENTICAL_LABEL = {None: "reference", True: "yes", False: "NO"}


def identical(a: list[Path], b: list[Path]) -> bool:
    """True when every store's detections and morphometrics are the same, value for value."""
    return all(read_table(x / "labloop" / name).equals(read_table(y / "labloop" / name))
               for x, y in zip(a, b, strict=True) for name in (DETECTIONS, MORPHOMETRICS))


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Speed-up over the first run; how busy the workers were; speed-up at equal task cost.

    Other jobs on the same cores make every task slower in one run than in the
    other; scaling the speed-up by the ratio of total worker time removes that.
    """
    base = rows[0]
    for row in rows:
        row["speed_up"] = round(row["stores_per_minute"] / base["stores_per_minute"], 3)
        row["busy"] = round(row["task_seconds"] / (row["workers"] * row["wall_s"]), 3)
        row["speed_up_equal_task_cost"] = round(
            row["speed_up"] * row["task_seconds"] / base["task_seconds"], 3)


def markdown(rows: list[dict[str, Any]], setup: dict[str, Any]) -> str:
    """The results as a Markdown table."""
    lines = ["# Batch: stores per minute with 1 and 2 workers", "",
             f"{setup['stores']} stores of {setup['frames']} frames of "
             f"{'×'.join(map(str, setup['shape']))} voxels ({setup['cells']} cells), "
             f"`pipelines/standard.toml`, LocalCluster (processes, 1 thread each), "
             f"{setup['cpus']} CPU cores; {setup['machine']}.", "",
             "| workers | wall (s) | stores/min | speed-up | worker time (s) | workers busy "
             "| speed-up at equal task cost | peak memory per worker (MiB) "
             "| cluster start (s) | load avg before/after | identical to 1 worker |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['wall_s']:.1f} | {row['stores_per_minute']:.2f} "
            f"| {row['speed_up']:.2f}× | {row['task_seconds']:.1f} | {row['busy']:.0%} "
            f"| {row['speed_up_equal_task_cost']:.2f}× "
            f"| {', '.join(map(str, row['worker_peak_memory_mib']))} "
            f"| {row['cluster_start_s']:.1f} "
            f"| {row['load_average_before']:.1f} / {row['load_average_after']:.1f} "
            f"| {IDENTICAL_LABEL[row['identical']]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(16, 96, 96))
    parser.add_argument("--cells", type=int, default=20)
    args = parser.parse_args()
    setup = {"stores": args.stores, "frames": args.frames, "shape": list(args.shape),
             "cells": args.cells, "cpus": os.cpu_count(),
             "machine": f"{platform.processor() or platform.machine()}, "
                        f"Python {platform.python_version()}"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="labloop-bench-batch-") as tmp:
        pristine = make_stores(Path(tmp) / "pristine", args.stores, args.frames,
                               tuple(args.shape), args.cells)
        copies: dict[int, list[Path]] = {}
        for workers in (1, 2):
            folder = Path(tmp) / f"workers{workers}"
            copies[workers] = [folder / p.name for p in pristine]
            for source, copy in zip(pristine, copies[workers], strict=True):
                shutil.copytree(source, copy)
            row = run(copies[workers], workers)
            # the 1-worker run is the reference the others are compared with
            row["identical"] = identical(copies[1], copies[workers]) if workers > 1 else None
            rows.append(row)
    add_ratios(rows)
    text = markdown(rows, setup)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps({"setup": setup, "runs": rows}, indent=1)
                                        + "\n")
    (RESULTS / "batch.md").write_text(text)


if __name__ == "__main__":
    main()
