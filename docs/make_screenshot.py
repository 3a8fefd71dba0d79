"""Make ``docs/napari_screenshot.png``: the sample experiment in napari through labloop's plugin.

Runs the real pipeline (detect, track, measure) on a copy of the embedded sample,
opens the store with the plugin, docks the curation and comparison widgets and
saves a screenshot of the whole window at the first link under review (ringed).
About a minute on 2 CPU cores::

    xvfb-run -a python docs/make_screenshot.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import imageio.v3 as iio
import napari
from labloop_napari._sample import copy_sample
from qtpy.QtWidgets import QApplication

from labloop.detect import detect_store
from labloop.measure import measure_store
from labloop.track import track_store

OUT = Path(__file__).with_name("napari_screenshot.png")
WINDOW = (1500, 950)


def main() -> None:
    """Run the pipeline on a copy of the sample and save the screenshot."""
    store = copy_sample(tempfile.mkdtemp(prefix="labloop-screenshot-"))
    detect_store(store, progress=False)
    track_store(store)
    measure_store(store, progress=False)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW)
    viewer.open(str(store), plugin="labloop")
    viewer.window.add_plugin_dock_widget("labloop", "Curate links")
    viewer.window.add_plugin_dock_widget("labloop", "Predicted vs observed")
    viewer.layers.selection.active = viewer.layers[f"{store.stem} tracks"]
    for _ in range(10):
        QApplication.processEvents()
    viewer.reset_view()  # the whole field, at the frame and depth of the link under review
    for _ in range(10):
        QApplication.processEvents()
    iio.imwrite(OUT, viewer.screenshot(canvas_only=False))
    viewer.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
