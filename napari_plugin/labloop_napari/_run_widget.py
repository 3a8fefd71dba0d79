"""Widget: run detect, track, measure and calibrate on the current store, in the background."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from labloop_napari._errors import one_line
from labloop_napari._jobs import CANCEL_GRACE_S, StepJob
from labloop_napari._layers import PREDICTION_KINDS
from labloop_napari._steps import STEPS
from labloop_napari._viewer import current_store, refresh_layers

#: the layers each step rewrites
STEP_LAYERS: dict[str, tuple[str, ...]] = {
    "detect": ("detections",), "track": ("tracks", "interpolated"), "measure": (),
    "calibrate": PREDICTION_KINDS}
NO_STORE = "open a labloop store first (File ▸ Open, or File ▸ Open Sample ▸ labloop)"


class RunWidget(QWidget):
    """Run the pipeline's steps on the store of the active layer.

    Each step runs in a child process supervised by a worker thread, so the viewer
    stays responsive and *Cancel* really stops it; its progress shows in the bar
    (calibration reports its iterations, the other steps show a busy bar). When a
    step ends its layers are re-read from the store; an error is one notification.

    Parameters
    ----------
    napari_viewer
        The viewer (given by napari).
    """

    #: emitted when a step ends: step name and ``done``, ``error`` or ``cancelled``
    step_ended = Signal(str, str)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.job: StepJob | None = None
        self._store_label = QLabel()
        self._store_label.setWordWrap(True)
        self.buttons = {step: QPushButton(step.capitalize()) for step in STEPS}
        grid = QGridLayout()
        for i, (step, button) in enumerate(self.buttons.items()):
            button.setToolTip(STEPS[step].__doc__)
            button.clicked.connect(lambda _=False, s=step: self.run(s))
            grid.addWidget(button, i // 2, i % 2)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        bar = QHBoxLayout()
        bar.addWidget(self.progress)
        bar.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self._store_label)
        layout.addLayout(grid)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        layout.addStretch()
        self.viewer.layers.events.inserted.connect(self._update)
        self.viewer.layers.events.removed.connect(self._update)
        self.viewer.layers.selection.events.active.connect(self._update)
        self._update()

    @property
    def running(self) -> bool:
        """True while a step runs."""
        return self.job is not None

    def _update(self, event: Any = None) -> None:
        store = current_store(self.viewer)
        self._store_label.setText(f"Store: {store}" if store else NO_STORE)
        for button in self.buttons.values():
            button.setEnabled(store is not None and not self.running)
        self.cancel_button.setEnabled(self.running)

    def run(self, step: str) -> None:
        """Start ``step`` on the current store (one step at a time)."""
        store = current_store(self.viewer)
        if store is None:
            show_error(NO_STORE)
            return
        if self.running:
            show_error(f"{self.job.step} is still running; wait or cancel it")  # type: ignore[union-attr]
            return
        self.job = StepJob(step, store)
        self.progress.setRange(0, 0)  # busy until the step reports progress
        self.status.setText(f"{step} running on {store.name} …")
        self._update()
        create_worker(self.job.messages, _connect={
            "yielded": lambda message, job=self.job: self._on_message(job, message),
            "errored": lambda error: show_error(f"{step}: {one_line(error)}"),
            "finished": self._on_finished})  # starts at once

    def cancel(self) -> None:
        """Stop the running step (the store keeps its previous results)."""
        if self.job is None:
            return
        self.status.setText(f"cancelling {self.job.step} …")
        self.job.cancel()
        QTimer.singleShot(int(CANCEL_GRACE_S * 1000), self.job.kill)

    def _on_message(self, job: StepJob, message: dict[str, Any]) -> None:
        if "progress" in message:
            done, total = message["progress"]
            self.progress.setRange(0, max(int(total), 1))
            self.progress.setValue(int(done))
            return
        self.progress.setRange(0, 1)
        if "done" in message:
            self.progress.setValue(1)
            self.status.setText(f"{job.step}: {message['done']}")
            show_info(f"{job.step}: {message['done']}")
            self._refresh(job.step, job.store)
            self.step_ended.emit(job.step, "done")
        elif "error" in message:
            self.progress.setValue(0)
            self.status.setText(f"{job.step} failed")
            show_error(f"{job.step}: {message['error']}")
            self.step_ended.emit(job.step, "error")
        else:
            self.progress.setValue(0)
            self.status.setText(f"{job.step} cancelled; the store is unchanged")
            self.step_ended.emit(job.step, "cancelled")

    def _refresh(self, step: str, store: Path) -> None:
        try:
            refresh_layers(self.viewer, store, STEP_LAYERS[step])
        except Exception as error:  # a store the step left unreadable: say so, keep going
            show_error(f"{step}: the results could not be shown ({one_line(error)})")

    def _on_finished(self) -> None:
        self.job = None
        self._update()
