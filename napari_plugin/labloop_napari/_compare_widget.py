"""Widget: predicted versus observed tissue, side by side or overlaid, and their morphometrics.

Both are drawn in the same world (µm, frames of the observed movie), so one time
slider drives both. *Side by side* uses napari's grid: the store's observed
layers share the first view, the prediction the second. The dock plots one
morphometric of the observation (``labloop/morphometrics``) and of the prediction
(``labloop/predicted_morphometrics``) with their 90% bands over time (or over
distance, for profiles), with a line at the current frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QHBoxLayout,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from labloop.io.store import MORPHOMETRICS, PREDICTED_MORPHOMETRICS, open_experiment
from labloop_napari._errors import one_line
from labloop_napari._layers import PREDICTION_KINDS
from labloop_napari._viewer import current_store, grid, layer_store

#: layers shown in the observed view of the grid, bottom to top
OBSERVED_KINDS = ("image", "detections", "tracks", "interpolated")
OBSERVED_STYLE: dict[str, Any] = {"color": "tab:blue", "label": "observed"}
PREDICTED_STYLE: dict[str, Any] = {"color": "tab:pink", "label": "predicted"}


class CompareWidget(QWidget):
    """Predicted versus observed: view mode and morphometric curves.

    Parameters
    ----------
    napari_viewer
        The viewer (given by napari).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.tables: dict[str, pd.DataFrame] = {}
        self.marker: Any = None
        self.overlay = QRadioButton("Overlay")
        self.side_by_side = QRadioButton("Side by side")
        self.overlay.setChecked(True)
        modes = QButtonGroup(self)
        modes.addButton(self.overlay)
        modes.addButton(self.side_by_side)
        self.side_by_side.toggled.connect(lambda on: self.set_mode("side_by_side" if on
                                                                   else "overlay"))
        self.quantity = QComboBox()
        self.quantity.currentTextChanged.connect(lambda _: self.plot())
        refresh = QPushButton("Reload")
        refresh.clicked.connect(self.load)
        self.figure = Figure(figsize=(4, 3), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.overlay)
        mode_row.addWidget(self.side_by_side)
        quantity_row = QHBoxLayout()
        quantity_row.addWidget(self.quantity, 1)
        quantity_row.addWidget(refresh)
        layout = QVBoxLayout(self)
        layout.addLayout(mode_row)
        layout.addLayout(quantity_row)
        layout.addWidget(self.canvas)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.load()

    # ------------------------------------------------------------------ views
    def _store_layers(self, store: Path, kinds: tuple[str, ...]) -> list[Any]:
        return [layer for layer in self.viewer.layers
                if (info := layer_store(layer)) is not None and info[0] == store
                and info[1] in kinds]

    def set_mode(self, mode: str) -> None:
        """``"overlay"`` (one view) or ``"side_by_side"`` (observed | predicted, grid)."""
        store = current_store(self.viewer)
        if mode == "overlay" or store is None:
            grid(self.viewer).enabled = False
            return
        observed = self._store_layers(store, OBSERVED_KINDS)
        predicted = self._store_layers(store, PREDICTION_KINDS)
        if not predicted:
            show_error("side by side: the store has no prediction yet (run Calibrate)")
            self.overlay.setChecked(True)
            return
        others = [layer for layer in self.viewer.layers
                  if layer not in observed and layer not in predicted]
        for index, layer in enumerate([*observed, *predicted, *others]):
            self.viewer.layers.move(self.viewer.layers.index(layer), index)
        grid(self.viewer).stride = max(len(observed), len(predicted))
        grid(self.viewer).enabled = True

    # ---------------------------------------------------------------- curves
    def load(self) -> None:
        """Read the observed and predicted morphometrics of the current store."""
        self.tables = {}
        store = current_store(self.viewer)
        if store is not None:
            experiment = open_experiment(store)
            for name in (MORPHOMETRICS, PREDICTED_MORPHOMETRICS):
                if experiment.has(name):
                    try:
                        self.tables[name] = experiment.read_table(name)
                    except Exception as error:
                        show_error(f"morphometrics: {one_line(error)}")
        quantities = sorted(set().union(*(set(t["quantity"]) for t in self.tables.values()))
                            ) if self.tables else []
        current = self.quantity.currentText()
        self.quantity.blockSignals(True)
        self.quantity.clear()
        self.quantity.addItems(quantities)
        if current in quantities:
            self.quantity.setCurrentText(current)
        elif "cell_count" in quantities:
            self.quantity.setCurrentText("cell_count")
        self.quantity.blockSignals(False)
        self.plot()

    def _on_inserted(self, event: Any) -> None:
        info = layer_store(event.value)
        if info is not None and info[1] in ("tracks", *PREDICTION_KINDS):
            self.load()

    def _frame_interval_h(self) -> float | None:
        observed = self.tables.get(MORPHOMETRICS)
        rows = observed.dropna(subset=["t", "time_h"]) if observed is not None else None
        if rows is None or not len(rows) or rows["t"].max() == 0:
            return None
        return float(rows["time_h"].max() / rows["t"].max())

    def plot(self) -> None:
        """Draw the chosen quantity, observed and predicted, with bands."""
        self.figure.clear()
        self.marker = None
        axes = self.figure.add_subplot(111)
        quantity = self.quantity.currentText()
        if not quantity:
            axes.text(0.5, 0.5, "no morphometrics yet (run Measure)", ha="center",
                      va="center", transform=axes.transAxes)
            axes.set_axis_off()
            self.canvas.draw_idle()
            return
        unit = ""
        over_time = True
        for name, style in ((MORPHOMETRICS, OBSERVED_STYLE),
                            (PREDICTED_MORPHOMETRICS, PREDICTED_STYLE)):
            table = self.tables.get(name)
            if table is None:
                continue
            rows = table[table["quantity"] == quantity]
            series = rows.dropna(subset=["time_h"])
            over_time = len(series) > 0 or not rows["bin_lo_um"].notna().any()
            if over_time:
                x = series["time_h"].to_numpy()
            else:
                series = rows.dropna(subset=["bin_lo_um"])
                x = 0.5 * (series["bin_lo_um"] + series["bin_hi_um"]).to_numpy()
            if not len(series):
                continue
            unit = str(series["unit"].iloc[0])
            axes.plot(x, series["value"].to_numpy(), **style)
            axes.fill_between(x, series["lower"].to_numpy(), series["upper"].to_numpy(),
                              color=style["color"], alpha=0.25, linewidth=0)
        interval = self._frame_interval_h()
        if over_time and interval is not None:
            self.marker = axes.axvline(self.viewer.dims.current_step[0] * interval,
                                       color="0.4", linestyle="--", linewidth=1)
        axes.set_xlabel("time (h)" if over_time else "distance (µm)")
        axes.set_ylabel(f"{quantity} ({unit})" if unit else quantity)
        axes.legend(loc="best", fontsize="small")
        self.canvas.draw_idle()

    def _on_step(self, event: Any = None) -> None:
        interval = self._frame_interval_h()
        if self.marker is None or interval is None:
            return
        x = self.viewer.dims.current_step[0] * interval
        self.marker.set_xdata(np.array([x, x]))
        self.canvas.draw_idle()
