"""Widget: review links from most to least doubtful; accept, cut or relink them.

Each correction is saved at once with :func:`labloop.track.curation.curate_store`
(the store's ``curation`` table and ``tracks.geff``), in a worker thread; the
corrected link is pinned (probability 1) and the probabilities around it are
recomputed, so the list of doubtful links changes as the user works through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
import pandas as pd
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtGui import QHideEvent, QShowEvent
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from labloop.io.store import TRACKS, open_experiment
from labloop.lineage import SPATIAL_COLUMNS, Lineage
from labloop.track.curation import Correction, CurationSettings, curate_store, doubtful_links
from labloop_napari._errors import one_line
from labloop_napari._layers import common_kwargs, voxel_points
from labloop_napari._viewer import (
    camera,
    current_store,
    find_layer,
    layer_store,
    refresh_layers,
)

#: keyboard shortcuts (bound on the viewer while the widget is shown); the letters
#: napari's layers use (a, p, r, x, ...) are avoided so no layer shadows them
SHORTCUTS = {"N": "next", "Shift-N": "previous", "K": "accept", "U": "cut", "J": "relink"}
HIGHLIGHT = "current_link"
#: highlight ring diameter relative to the detection markers
HIGHLIGHT_SIZE = 1.6


class CurationWidget(QWidget):
    """Step through the current store's doubtful links and correct them.

    Keys (while the widget is shown): ``N`` next, ``Shift-N`` previous, ``K`` keep
    (accept), ``U`` unlink (cut), ``J`` join the source to the point selected in
    the detections layer (relink).

    Parameters
    ----------
    napari_viewer
        The viewer (given by napari).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.store: Path | None = None
        self.lineage: Lineage | None = None
        self.voxel_size_um: tuple[float, float, float] = (1.0, 1.0, 1.0)
        self.queue = pd.DataFrame()
        self.position = 0
        self.busy = False
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(CurationSettings().doubt_threshold)
        self.threshold.valueChanged.connect(lambda _: self._rebuild(keep_link=True))
        self.count = QLabel()
        self.link = QLabel()
        self.link.setWordWrap(True)
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for i, (key, action) in enumerate(
                [("Shift-N", "previous"), ("N", "next"), ("K", "accept"), ("U", "cut"),
                 ("J", "relink")]):
            button = QPushButton(f"{action.capitalize()} ({key})")
            button.clicked.connect(getattr(self, action))
            self.buttons[action] = button
            grid.addWidget(button, i // 2, i % 2)
        reload_button = QPushButton("Reload from store")
        reload_button.clicked.connect(self.load)
        grid.addWidget(reload_button, 2, 1)
        form = QFormLayout()
        form.addRow("doubtful when error ≥", self.threshold)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.count)
        layout.addWidget(self.link)
        layout.addLayout(grid)
        layout.addStretch()
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.load()

    # ----------------------------------------------------------------- state
    def load(self) -> None:
        """Read the lineage of the current store and go to its most doubtful link."""
        self.store = current_store(self.viewer)
        self.lineage = None
        try:
            experiment = open_experiment(self.store) if self.store is not None else None
            if experiment is not None and experiment.has(TRACKS):
                self.lineage = experiment.read_tracks()
                self.voxel_size_um = experiment.image.voxel_size_um
        except Exception as error:  # a broken store: say so, keep the viewer going
            show_error(f"curation: {one_line(error)}")
        self.position = 0
        self._rebuild()

    def _on_inserted(self, event: Any) -> None:
        info = layer_store(event.value)
        if info is not None and info[1] == "tracks" and not self.busy:
            self.load()

    def _rebuild(self, keep_link: bool = False) -> None:
        current = self.current_link()
        self.queue = (doubtful_links(self.lineage, self.threshold.value())
                      if self.lineage is not None else pd.DataFrame())
        if keep_link and current is not None and len(self.queue):
            same = np.flatnonzero((self.queue["source"] == current[0]).to_numpy()
                                  & (self.queue["target"] == current[1]).to_numpy())
            self.position = int(same[0]) if len(same) else 0
        self.position = min(self.position, max(len(self.queue) - 1, 0))
        self.show_link()

    def current_link(self) -> tuple[int, int] | None:
        """``(source, target)`` node ids of the link under review, if any."""
        if not len(self.queue):
            return None
        row = self.queue.iloc[self.position]
        return int(row["source"]), int(row["target"])

    # ------------------------------------------------------------ navigation
    def next(self) -> None:
        """Go to the next (less doubtful) link."""
        if len(self.queue):
            self.position = min(self.position + 1, len(self.queue) - 1)
            self.show_link()

    def previous(self) -> None:
        """Go back to the previous (more doubtful) link."""
        if len(self.queue):
            self.position = max(self.position - 1, 0)
            self.show_link()

    def show_link(self) -> None:
        """Describe the current link, centre the view on it and ring its two nuclei."""
        enabled = not self.busy and self.current_link() is not None
        for button in self.buttons.values():
            button.setEnabled(enabled)
        if self.lineage is None:
            self.count.setText("no lineage: open a tracked store (or run Track)")
            self.link.setText("")
            return
        self.count.setText(f"{len(self.queue)} doubtful link(s) left "
                           f"(error ≥ {self.threshold.value():.2f})")
        link = self.current_link()
        if link is None:
            self.link.setText("nothing left to review at this threshold")
            return
        error = float(self.queue.iloc[self.position]["error_probability"])
        nodes = self.lineage.nodes.loc[list(link)]
        t = nodes["t"].to_numpy()
        self.link.setText(f"link {self.position + 1}/{len(self.queue)}: node {link[0]} "
                          f"(frame {t[0]}) → node {link[1]} (frame {t[1]}), "
                          f"error probability {error:.2f}")
        self._centre(nodes)
        self._highlight(nodes)

    def _centre(self, nodes: pd.DataFrame) -> None:
        middle = nodes[list(SPATIAL_COLUMNS)].to_numpy().mean(axis=0)
        self.viewer.dims.set_point(0, float(nodes["t"].iloc[1]))
        if self.viewer.dims.ndisplay == 2:
            self.viewer.dims.set_point(1, float(middle[0]))
            camera(self.viewer).center = tuple(middle[1:])
        else:
            camera(self.viewer).center = tuple(middle)

    def _highlight(self, nodes: pd.DataFrame) -> None:
        if self.store is None or self.lineage is None:
            return
        data = voxel_points(nodes, self.voxel_size_um)
        layer = find_layer(self.viewer, self.store, HIGHLIGHT)
        detections = find_layer(self.viewer, self.store, "detections")
        size = HIGHLIGHT_SIZE * (float(np.mean(detections.size)) if detections is not None
                                 and len(detections.data) else 10.0)
        if layer is not None:
            layer.data = data
            layer.size = size
            return
        active = self.viewer.layers.selection.active
        self.viewer.add_points(data, name="current link", size=size,
                               scale=(1.0, *self.voxel_size_um),
                               face_color="transparent", border_color="white",
                               border_width=0.06, **common_kwargs(self.store, HIGHLIGHT))
        if active is not None:
            self.viewer.layers.selection.active = active

    # ------------------------------------------------------------ corrections
    def accept(self) -> None:
        """The current link is right: pin it."""
        link = self.current_link()
        if link is not None:
            self._correct(Correction("accept", *link))

    def cut(self) -> None:
        """The current link is wrong: remove it."""
        link = self.current_link()
        if link is not None:
            self._correct(Correction("cut", *link))

    def relink(self) -> None:
        """Link the current source to the one point selected in the detections layer."""
        link = self.current_link()
        if link is None or self.store is None:
            return
        detections = find_layer(self.viewer, self.store, "detections")
        if detections is None or len(detections.selected_data) != 1:
            show_error("relink: select the new target (one point) in the detections layer first")
            return
        new_target = int(detections.features["node"].iloc[next(iter(detections.selected_data))])
        self._correct(Correction("relink", *link, new_target=new_target))

    def _correct(self, correction: Correction) -> None:
        if self.busy or self.store is None:
            return
        self.busy = True
        self.show_link()
        create_worker(curate_store, self.store, [correction], _connect={
            "returned": self._on_curated,
            "errored": lambda error: show_error(f"curation: {one_line(error)}"),
            "finished": self._on_finished})  # starts at once

    def _on_curated(self, lineage: Lineage) -> None:
        self.lineage = lineage
        refresh_layers(self.viewer, self.store, ("tracks", "interpolated"))  # type: ignore[arg-type]

    def _on_finished(self) -> None:
        self.busy = False
        self._rebuild()

    # -------------------------------------------------------------- shortcuts
    def _on_key(self, viewer: napari.viewer.Viewer, action: str) -> None:
        getattr(self, action)()

    def showEvent(self, event: QShowEvent | None) -> None:
        """Bind the shortcuts while the widget is shown."""
        super().showEvent(event)
        for key, action in SHORTCUTS.items():
            self.viewer.bind_key(key, lambda viewer, a=action: self._on_key(viewer, a),
                                 overwrite=True)

    def hideEvent(self, event: QHideEvent | None) -> None:
        """Release the shortcuts when the widget is hidden or closed."""
        super().hideEvent(event)
        for key in SHORTCUTS:
            self.viewer.bind_key(key, None)
