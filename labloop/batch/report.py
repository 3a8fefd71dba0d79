"""The outcome of a batch run: one row per store, a rich table and a JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from labloop.io.atomic import atomic_path


@dataclass
class StoreReport:
    """What happened to one store.

    Attributes
    ----------
    store
        The store's path.
    status
        ``"ok"`` (every step done) or ``"failed"``.
    steps_run, steps_skipped
        Steps run in this batch, and steps skipped because the store already held
        their results with the same parameters.
    windows_reused
        Parts of a step (detection windows) found finished in the store by a
        resumed run.
    seconds
        Worker time spent on the store in this run (s).
    reason
        One line saying why a failed store failed.
    """

    store: str
    status: str = "ok"
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    windows_reused: int = 0
    seconds: float = 0.0
    reason: str | None = None


@dataclass
class BatchReport:
    """What happened to every store of a batch.

    Attributes
    ----------
    pipeline
        The pipeline's name.
    stores
        One report per store, in the order given.
    wall_seconds
        Wall-clock time of the whole run (s), planning included.
    worker_peak_memory_bytes
        Peak resident memory of each worker process (empty when nothing ran).
    """

    pipeline: str
    stores: list[StoreReport]
    wall_seconds: float = 0.0
    worker_peak_memory_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def n_failed(self) -> int:
        """Number of stores that failed."""
        return sum(report.status == "failed" for report in self.stores)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for JSON)."""
        return {**asdict(self), "n_failed": self.n_failed}

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON, atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def summary_table(report: BatchReport) -> Table:
    """A rich table: store, status, steps run / skipped, worker seconds, reason."""
    memory = report.worker_peak_memory_bytes
    caption = f"{len(report.stores)} store(s), {report.n_failed} failed, " \
              f"{report.wall_seconds:.1f} s wall time"
    if memory:
        caption += f", peak memory per worker {max(memory.values()) / 2**20:.0f} MiB"
    table = Table(title=f"labloop batch: pipeline {report.pipeline}", caption=caption)
    for column in ("store", "status", "run", "skipped", "seconds", "reason"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for row in report.stores:
        run = ", ".join(row.steps_run) or "-"
        if row.windows_reused:
            run += f" ({row.windows_reused} window(s) resumed)"
        status = "[green]ok[/]" if row.status == "ok" else "[red]failed[/]"
        table.add_row(Path(row.store).name, status, run, ", ".join(row.steps_skipped) or "-",
                      f"{row.seconds:.1f}", row.reason or "")
    return table
