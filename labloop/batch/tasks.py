"""The functions dask runs on the workers: one part of a step, or a step's finish.

Both take the results of the tasks they wait for as trailing arguments (dask
passes them once those tasks are done), so the order of the steps on a store is
the graph's, while different stores and windows run side by side.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labloop.batch.ledger import mark_done
from labloop.batch.steps import StepConfig, get_step
from labloop.io.store import open_experiment


@dataclass(frozen=True)
class TaskResult:
    """What a finished task reports.

    Attributes
    ----------
    step
        The step's name.
    seconds
        Time the task took on its worker.
    reused
        True when a part's result was already cached in the store (a resumed run).
    """

    step: str
    seconds: float
    reused: bool = False


@contextmanager
def _on_this_worker() -> Iterator[None]:
    """Run a task's own work here, on one thread.

    Parallelism comes from the dask workers: torch gets one intra-op thread, and
    dask arrays computed inside the task (reading frames) use the synchronous
    scheduler instead of submitting sub-tasks back to the cluster.
    """
    import dask
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    with dask.config.set(scheduler="synchronous"):
        yield


def run_part(path: Path, config: StepConfig, key: str, part: tuple[int, int],
             *after: Any) -> TaskResult:
    """Run one part of a step (e.g. a detection window) on a worker."""
    started = time.perf_counter()
    with _on_this_worker():
        computed = get_step(config.name).run_part(path, config, key, part)
    return TaskResult(config.name, time.perf_counter() - started, reused=not computed)


def run_finish(path: Path, config: StepConfig, key: str, parts: list[tuple[int, int]],
               *after: Any) -> TaskResult:
    """Finish a step (write its result), then record it as done in the store."""
    started = time.perf_counter()
    step = get_step(config.name)
    with _on_this_worker():
        step.finish(path, config, key, parts)
    mark_done(open_experiment(path), step.name, step.result, key)
    return TaskResult(config.name, time.perf_counter() - started)
