"""Detection on an experiment store: read its image, detect, write ``labloop/detections``."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd

from labloop.detect.inference import DetectSettings, detect
from labloop.detect.model import DetectorModel, default_model_path, load_model


def detect_store(
    path: str | Path,
    model: str | Path | None = None,
    settings: DetectSettings | None = None,
    voxel_size_um: tuple[float, float, float] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> pd.DataFrame:
    """Detect nuclei in an experiment store and save them in it (atomically).

    Parameters
    ----------
    path
        The ``.zarr`` experiment store.
    model
        A ``.safetensors`` model file; ``None`` for the shipped model.
    settings, **overrides
        See :func:`labloop.detect.detect`.
    voxel_size_um
        Overrides or completes the image's voxel size (µm).
    progress
        Show a progress bar.

    Returns
    -------
    DataFrame
        The detections written to ``labloop/detections``; the parameters (model
        file and settings) are recorded with them.
    """
    from labloop.io.store import open_experiment

    experiment = open_experiment(path, voxel_size_um)
    settings = replace(DetectSettings() if settings is None else settings, **overrides)
    detector = load_model(model)
    detections = detect(experiment.image, model=detector, settings=settings, progress=progress)
    experiment.write_detections(detections, detection_params(model, detector, settings))
    return detections


def detection_params(model: str | Path | None, detector: DetectorModel,
                     settings: DetectSettings) -> dict[str, Any]:
    """The parameters recorded with stored detections: model file, its seed, settings.

    Parameters
    ----------
    model
        The model file given by the user; ``None`` for the shipped model.
    detector
        The loaded model.
    settings
        The detection settings used.
    """
    return {"model": str(Path(model) if model is not None else default_model_path()),
            "model_seed": detector.training.get("seed"), **asdict(settings)}
