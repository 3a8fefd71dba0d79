"""labloop's napari plugin: experiment stores as layers, pipeline steps, curation, comparison.

Contributions (``napari.yaml``): a reader for labloop experiment stores
(:mod:`._reader`), a GEFF writer for tracks layers (:mod:`._writer`), the sample
experiment (:mod:`._sample`), and three widgets — *Run steps*
(:mod:`._run_widget`: detect, track, measure, calibrate in the background),
*Curate links* (:mod:`._curation_widget`: review links from most to least
doubtful) and *Predicted vs observed* (:mod:`._compare_widget`). The package
imports nothing on its own, so that a step's child process starts quickly.
"""
