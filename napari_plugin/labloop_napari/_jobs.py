"""A pipeline step in a child process, supervised from a napari worker thread.

A child process (rather than the worker thread itself) runs the step so that
*cancel* really stops it: the child is interrupted (SIGINT, so the atomic writes
clean up after themselves) and killed if it does not stop within
:data:`CANCEL_GRACE_S`. The viewer stays responsive however much the step computes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: seconds a cancelled step has to stop before it is killed
CANCEL_GRACE_S = 5.0
#: characters of the child's standard error quoted when it dies without a word
STDERR_TAIL = 300


class StepJob:
    """One step (``detect``, ``track``, ``measure``, ``calibrate``) on one store.

    Parameters
    ----------
    step
        The step's name (see :data:`labloop_napari._steps.STEPS`).
    store
        The experiment store.
    """

    def __init__(self, step: str, store: Path) -> None:
        self.step = step
        self.store = Path(store)
        self.cancelled = False
        self._process: subprocess.Popen[str] | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")

    def messages(self) -> Iterator[dict[str, Any]]:
        """Start the child and yield its messages until it ends (blocking; run in a thread).

        The last message is ``done``, ``error`` or ``cancelled``; a child that ends
        without one yields an ``error`` naming its exit status.
        """
        if self.cancelled:  # cancelled before it started
            yield {"cancelled": True}
            return
        self._process = subprocess.Popen(
            [sys.executable, "-m", "labloop_napari._steps", self.step, str(self.store)],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        final = None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            final = message if "progress" not in message else final
            yield message
        status = self._process.wait()
        if final is None:
            yield ({"cancelled": True} if self.cancelled else
                   {"error": f"{self.step} stopped with exit status {status}: "
                             f"{self._stderr_tail()}"})
        self._stderr.close()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().splitlines() if line.strip()]
        return lines[-1][-STDERR_TAIL:] if lines else "no message"

    def cancel(self) -> None:
        """Interrupt the child (it cleans up and reports ``cancelled``)."""
        self.cancelled = True
        if self._process is not None and self._process.poll() is None:
            if sys.platform == "win32":  # no SIGINT for a child there
                self._process.terminate()
            else:
                self._process.send_signal(signal.SIGINT)

    def kill(self) -> None:
        """Kill the child if it still runs (after a cancel it ignored)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
