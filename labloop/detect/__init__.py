"""Nucleus detection: a small 3D U-Net regressing centre heatmaps, trained on simulated data.

- :func:`detect` — nuclei in an image, as a table ``t, z, y, x`` (µm), ``score``
  (calibrated probability), ``intensity``;
- :func:`detect_store` — the same for an experiment store, written beside the image;
- :func:`train_detector` — train on :mod:`labloop.synth` data or fine-tune on
  annotated points;
- :func:`load_model` — read a ``.safetensors`` model (no pickle).
"""

import sys
import types
from typing import Any

from labloop.detect.calibration import ScoreCalibration, expected_calibration_error
from labloop.detect.heatmap import HeatmapSettings, centre_heatmap
from labloop.detect.inference import DetectSettings, detect, detect_frame, predict_heatmap
from labloop.detect.matching import match_points
from labloop.detect.model import DetectorModel, ModelSpec, default_model_path, load_model
from labloop.detect.peaks import PeakSettings, find_peaks
from labloop.detect.store import detect_store
from labloop.detect.synthetic import AugmentSettings
from labloop.detect.training import TrainResult, TrainSettings, read_points, train_detector

__all__ = [
    "AugmentSettings",
    "DetectSettings",
    "DetectorModel",
    "HeatmapSettings",
    "ModelSpec",
    "PeakSettings",
    "ScoreCalibration",
    "TrainResult",
    "TrainSettings",
    "centre_heatmap",
    "default_model_path",
    "detect",
    "detect_frame",
    "detect_store",
    "expected_calibration_error",
    "find_peaks",
    "load_model",
    "match_points",
    "predict_heatmap",
    "read_points",
    "train_detector",
]


class _CallableModule(types.ModuleType):
    """``labloop.detect`` is both this package and, called, :func:`detect`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return detect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
