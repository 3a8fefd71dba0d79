"""Run a pipeline over many stores: plan each, submit the work as dask tasks, collect.

The task graph of one store is a chain of steps; a step with parts (detection
windows) fans out into parallel tasks and joins in its finishing task. Stores
are independent: a failure in one store's task fails only that store's later
tasks. Earlier stores get a higher priority, so results land store by store
instead of all at the end.
"""

from __future__ import annotations

import glob
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labloop.batch.cluster import connect, worker_peak_memory
from labloop.batch.pipeline import Pipeline, default_pipeline
from labloop.batch.plan import StorePlan, describe_error, plan_store
from labloop.batch.report import BatchReport, StoreReport
from labloop.batch.tasks import TaskResult, run_finish, run_part
from labloop.errors import InputError

if TYPE_CHECKING:
    from distributed import Client, Future

GLOB_CHARACTERS = frozenset("*?[")


def expand_stores(patterns: Iterable[str | Path]) -> list[Path]:
    """Stores named directly or by glob patterns (``"data/*.zarr"``), each once, in order.

    Raises
    ------
    InputError
        When a pattern matches nothing, or nothing is given.
    """
    stores: list[Path] = []
    for pattern in map(str, patterns):
        if GLOB_CHARACTERS & set(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"no store matches {pattern!r}")
            stores.extend(Path(m) for m in matches)
        else:
            stores.append(Path(pattern))
    if not stores:
        raise InputError("no store given")
    unique: dict[Path, Path] = {}
    for store in stores:
        unique.setdefault(store.resolve(), store)
    return list(unique.values())


def run_batch(stores: Iterable[str | Path], pipeline: Pipeline | None = None, *,
              scheduler: str | None = None, workers: int | None = None,
              progress: bool = True) -> BatchReport:
    """Run ``pipeline`` on every store, skipping steps already done.

    Parameters
    ----------
    stores
        Experiment stores or glob patterns.
    pipeline
        The steps (default: :func:`~labloop.batch.pipeline.default_pipeline`).
    scheduler
        Address of a running dask scheduler (``tcp://host:port``); default: a
        local cluster of ``workers`` processes.
    workers
        Worker processes of the local cluster (default: one per core).
    progress
        Show a progress bar over the tasks on stderr.

    Returns
    -------
    BatchReport
        One row per store; a store that cannot be read or whose task fails is
        reported as failed and the others go on.

    Examples
    --------
    >>> report = run_batch(["a.zarr", "b.zarr"], workers=2)  # doctest: +SKIP
    >>> report.n_failed  # doctest: +SKIP
    0
    """
    started = time.perf_counter()
    pipeline = default_pipeline() if pipeline is None else pipeline
    plans = plan_stores(expand_stores(stores), pipeline)
    if not any(plan.to_run for plan in plans):  # nothing to do: no cluster needed
        return BatchReport(pipeline.name, [_initial_report(plan) for plan in plans],
                           time.perf_counter() - started)
    with connect(scheduler, workers) as client:
        report = run_plans(client, plans, pipeline, progress)
    report.wall_seconds = time.perf_counter() - started
    return report


def plan_stores(stores: Iterable[Path], pipeline: Pipeline) -> list[StorePlan]:
    """Plan ``pipeline`` on every store (see :func:`~labloop.batch.plan.plan_store`)."""
    keys = pipeline.keys()
    return [plan_store(store, pipeline, keys) for store in stores]


def run_plans(client: Client, plans: list[StorePlan], pipeline: Pipeline,
              progress: bool = True) -> BatchReport:
    """Submit the planned work to ``client``'s cluster and wait for every store.

    Parameters
    ----------
    client
        A connected :class:`distributed.Client`.
    plans
        From :func:`plan_stores`.
    pipeline
        The pipeline the plans were made for (its name labels the report).
    progress
        Show a progress bar over the tasks on stderr.
    """
    from distributed import as_completed

    started = time.perf_counter()
    reports = [_initial_report(plan) for plan in plans]
    owner: dict[Future, tuple[int, bool]] = {}
    for index, plan in enumerate(plans):
        for future, finishes in _submit(client, plan, priority=-index):
            owner[future] = (index, finishes)
    remaining = [0] * len(plans)
    for index, _ in owner.values():
        remaining[index] += 1
    with _progress(progress, len(owner), len(plans), sum(r == 0 for r in remaining)) as advance:
        for future in as_completed(list(owner)):
            index, finishes = owner[future]
            _record(reports[index], future, plans[index].path, finishes)
            remaining[index] -= 1
            advance(remaining[index] == 0)
    memory = worker_peak_memory(client) if owner else {}
    return BatchReport(pipeline.name, reports, time.perf_counter() - started, memory)


def _initial_report(plan: StorePlan) -> StoreReport:
    if plan.error is not None:
        return StoreReport(str(plan.path), status="failed", reason=plan.error)
    return StoreReport(str(plan.path),
                       steps_skipped=[s.config.name for s in plan.steps if s.done])


def _submit(client: Client, plan: StorePlan, priority: int) -> list[tuple[Future, bool]]:
    """Submit one store's steps as a chain of tasks; every future, True for finishing ones."""
    futures: list[tuple[Future, bool]] = []
    previous: list[Future] = []
    path = plan.path.resolve()  # workers may run elsewhere than this directory
    for step in plan.to_run:
        name = f"{step.config.name}-{plan.path.name}-{uuid.uuid4().hex[:8]}"
        parts = [client.submit(run_part, path, step.config, step.key, part, *previous,
                               key=f"{name}-{part[0]}-{part[1]}", priority=priority)
                 for part in step.parts]
        finish = client.submit(run_finish, path, step.config, step.key, list(step.parts),
                               *(parts or previous), key=name, priority=priority)
        futures += [*((part, False) for part in parts), (finish, True)]
        previous = [finish]
    return futures


def _record(report: StoreReport, future: Future, store: Path, finishes: bool) -> None:
    """Fold one finished (or failed) task into its store's report."""
    if future.status != "finished":
        report.status = "failed"
        if report.reason is None:  # the first error is the cause; later ones inherit it
            report.reason = ("cancelled" if future.cancelled()
                             else describe_error(future.exception(), store))
        return
    result: TaskResult = future.result()
    report.seconds += result.seconds
    report.windows_reused += result.reused
    if finishes:
        report.steps_run.append(result.step)


@contextmanager
def _progress(enabled: bool, tasks: int, stores: int, stores_done: int
              ) -> Iterator[Any]:
    """Yield ``advance(store_finished)``; draws a rich bar on stderr when enabled."""
    if not enabled:
        yield lambda store_finished: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    done = [stores_done]
    with Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                  TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{done[0]}/{stores} stores", total=tasks)

        def advance(store_finished: bool) -> None:
            done[0] += store_finished
            bar.update(task, advance=1, description=f"{done[0]}/{stores} stores")

        yield advance
