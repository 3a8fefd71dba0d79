"""Speed and memory of the tissue model (not a timed test).

Run ``python benchmarks/bench_tissue.py`` (a few minutes on 2 CPU cores). It
prints a table and writes ``benchmarks/results/tissue.json`` and ``tissue.md``.

Per step: packed round clusters of 10², 10³, 10⁴ cells (capacity = cells +
10 %, 10 % of them sources, cell-list neighbours, 4 mechanical substeps,
divisions on at λ_max = 0.05/h), warm wall time per step (after compilation)
and the peak memory of the compiled run (XLA's buffer assignment: arguments +
outputs + temporaries). Gradient cost: wall time of ``jax.grad`` of a shape loss
over 20 steps divided by the forward run's, no checkpointing (10² cells with the
all-pairs search the default picks at that size, and with the cell list). Checkpointing:
memory of the compiled gradient over 500 steps (20 frames × 25 steps) of 10³
cells without checkpointing, per step, and per frame + step.
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
import numpy as np
import pandas as pd

from labloop.tissue import (
    TissueModel,
    axis_elongation,
    default_params,
    round_cluster,
    simulate,
)

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (100, 1000, 10000)
STEPS = {100: 40, 1000: 20, 10000: 10}
#: (cells, neighbour search) of the gradient-cost rows; "dense" is what the default
#: ``neighbours="auto"`` picks below 512 slots
GRADIENT_CASES = ((100, "dense"), (100, "cells"), (1000, "cells"))


def setup(n: int, neighbours: str = "cells"):
    model = TissueModel(capacity=int(n * 1.1), neighbours=neighbours)
    params = default_params(n_genes=3, key=jax.random.key(0))
    params = params.replace(division=dataclasses.replace(params.division,
                                                         max_rate_per_h=jnp.asarray(0.05)))
    init = round_cluster(model, n, n_sources=n // 10, key=jax.random.key(1))
    return model, params, init


def memory_mb(compiled) -> float:
    m = compiled.memory_analysis()
    return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
            - m.alias_size_in_bytes) / 2**20


def timed(fn, *args, repeats: int = 2) -> float:
    jax.block_until_ready(fn(*args))
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for n in SIZES:
        model, params, init = setup(n)
        steps = STEPS[n]
        fwd = jax.jit(lambda p, k, model=model, init=init, steps=steps: simulate(
            model, p, k, init, n_frames=1, steps_per_frame=steps).final)
        t0 = time.perf_counter()
        compiled = fwd.lower(params, jax.random.key(0)).compile()
        compile_s = time.perf_counter() - t0
        seconds = timed(compiled, params, jax.random.key(0))
        final = compiled(params, jax.random.key(0))
        row = {"cells": n, "capacity": model.capacity, "steps": steps,
               "ms_per_step": 1e3 * seconds / steps,
               "us_per_cell_step": 1e6 * seconds / steps / n,
               "peak_memory_mb": memory_mb(compiled), "compile_s": compile_s,
               "neighbour_overflow": int(final.counters.neighbour_overflow),
               "cells_at_end": int(final.n_alive)}
        rows.append(row)
        print(row, flush=True)
    per_step = pd.DataFrame(rows)

    grad_rows = []
    for n, neighbours in GRADIENT_CASES:
        model, params, init = setup(n, neighbours)

        def loss(p, k, model=model, init=init):
            final = simulate(model, p, k, init, n_frames=1, steps_per_frame=20).final
            return axis_elongation(final) + jnp.mean(final.gene)

        fwd = jax.jit(loss)
        grad = jax.jit(jax.grad(loss))
        tf = timed(fwd, params, jax.random.key(0))
        tg = timed(grad, params, jax.random.key(0))
        grad_rows.append({"cells": n, "neighbours": neighbours, "steps": 20,
                          "forward_s": tf, "gradient_s": tg,
                          "ratio": tg / tf})
        print(grad_rows[-1], flush=True)
    ratio = pd.DataFrame(grad_rows)

    ck_rows = []
    model, params, init = setup(1000)
    for checkpoint in (None, "step", "frame"):
        def loss(p, k, checkpoint=checkpoint):
            final = simulate(model, p, k, init, n_frames=20, steps_per_frame=25,
                             checkpoint=checkpoint).final
            return axis_elongation(final)

        t0 = time.perf_counter()
        compiled = jax.jit(jax.grad(loss)).lower(params, jax.random.key(0)).compile()
        ck_rows.append({"checkpoint": str(checkpoint), "steps": 500, "cells": 1000,
                        "gradient_memory_mb": memory_mb(compiled),
                        "compile_s": time.perf_counter() - t0})
        print(ck_rows[-1], flush=True)
    ck = pd.DataFrame(ck_rows)

    slope = np.polyfit(np.log(per_step["cells"]), np.log(per_step["ms_per_step"]), 1)[0]
    out = {"platform": platform.platform(), "python": sys.version.split()[0],
           "jax": jax.__version__, "cpu_count": os.cpu_count(),
           "xla_flags": os.environ.get("XLA_FLAGS"), "load_avg": os.getloadavg(),
           "per_step": rows, "time_scaling_exponent": slope, "gradient_ratio": grad_rows,
           "checkpoint_memory": ck_rows}
    (RESULTS / "tissue.json").write_text(json.dumps(out, indent=1))
    text = ["# Tissue model: speed and memory", "", per_step.round(3).to_string(index=False),
            "", f"time per step ~ cells^{slope:.2f}", "", ratio.round(3).to_string(index=False),
            "", ck.round(1).to_string(index=False), ""]
    (RESULTS / "tissue.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
