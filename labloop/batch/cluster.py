"""Where the tasks run: a local cluster of worker processes, or any dask scheduler.

Both are reached through the same :class:`distributed.Client`, so the code that
submits and collects tasks does not know which one it talks to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from labloop.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

#: XLA (JAX) on one thread per worker, as torch and BLAS are (dask sets OMP_NUM_THREADS=1)
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
#: how long to wait for a worker to join an external scheduler (s)
WORKER_WAIT_S = 60.0


def default_workers() -> int:
    """One worker per CPU core available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of ``scheduler``, or of a new local cluster closed on exit.

    Parameters
    ----------
    scheduler
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``; its workers
        must see the stores at the same paths. ``None`` starts a
        :class:`distributed.LocalCluster`.
    workers
        Worker processes of the local cluster (one thread each); default: one
        per CPU core. Ignored with ``scheduler``.

    Raises
    ------
    InputError
        When the scheduler cannot be reached or has no worker, or for a number
        of workers below 1.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler)  # waits distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as error:
            raise InputError(f"cannot reach the dask scheduler at {scheduler} ({error})"
                             ) from None
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            client.close()
            raise InputError(f"the dask scheduler at {scheduler} has no worker (waited "
                             f"{WORKER_WAIT_S:.0f} s)") from None
        with client:
            yield client
        return
    n_workers = default_workers() if workers is None else workers
    if n_workers < 1:
        raise InputError(f"--workers must be at least 1, got {n_workers}")
    # failures are reported per store in the summary, so worker logs stay quiet
    xla = f"{os.environ.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.CRITICAL,
                      env={"XLA_FLAGS": xla}) as cluster, Client(cluster) as client:
        yield client


def peak_memory() -> int:
    """Peak resident memory of the calling process in bytes (run on each worker)."""
    try:
        import resource
    except ImportError:  # Windows: the current, not the peak, resident size
        import psutil

        return int(psutil.Process().memory_info().rss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def worker_peak_memory(client: Client) -> dict[str, int]:
    """Peak resident memory (bytes) of every worker process, by worker address."""
    return {str(address): int(value) for address, value in client.run(peak_memory).items()}
