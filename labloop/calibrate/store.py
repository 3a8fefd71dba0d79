"""``calibrate_store``: fit the tissue model to a store's lineage and save fit and prediction.

Writes, atomically and with provenance:

``labloop/fit/parameters``       free parameters with 90 % intervals (and every
                                 parameter's value and the division law's rates
                                 with intervals in the record);
``labloop/fit/history``          loss per start and iteration (``stage``: Adam, the
                                 Levenberg–Marquardt polish or the final step on
                                 the Laplace replicates);
``labloop/fit/fitted``           observed versus fitted morphometric terms;
``labloop/fit/sensitivity``      ∂ morphometric / ∂ parameter;
``labloop/fit/observation_bias`` with ``correct_observation``: what filming,
                                 detection and tracking add to each morphometric
                                 (:mod:`.observation`), taken off before the
                                 parameters above were refitted;
``labloop/prediction``           simulated cells (positions in µm) over the observed
                                 frames and ``predict_frames`` beyond them;
``labloop/predicted_morphometrics``  their morphometrics (``labloop.measure`` format).

Source cells (which secrete the growth factor) are read from an optional store
table ``labloop/sources`` (``z, y, x`` in µm at the first frame); without it the
growth factor plays no part and only proliferation and motility are fitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from labloop.calibrate.fit import CalibrateSettings, Experiment, Fit, recalibrate, with_values
from labloop.calibrate.initial import initial_from_lineage
from labloop.calibrate.observations import Observations, motion_segments, observe
from labloop.calibrate.predict import predict, predicted_morphometrics, prediction_table
from labloop.errors import InputError
from labloop.io.images import Image
from labloop.io.store import PREDICTED_MORPHOMETRICS, PREDICTION
from labloop.lineage import Lineage
from labloop.tissue import Ellipsoid, TissueModel, TissueParams, default_params, describe

SOURCES = "sources"
FIT_PARAMETERS = "fit/parameters"
FIT_HISTORY = "fit/history"
FIT_FITTED = "fit/fitted"
FIT_SENSITIVITY = "fit/sensitivity"
FIT_OBSERVATION_BIAS = "fit/observation_bias"
#: frames (evenly spaced) on which the store's SNR is measured
SNR_FRAMES = 4

#: parameters fitted when the store has no source cells
WITHOUT_SOURCES = ("division.max_rate_per_h", "mechanics.motility_um2_per_h")


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """How :func:`calibrate_store` sets up the model around a store's data.

    Attributes
    ----------
    fit
        The optimisation (free parameters default to proliferation and motility
        without sources, plus growth-factor control and reach with them).
    max_time_step_h
        Largest model time step; the frame interval is split into whole steps.
    capacity_factor
        Model capacity as a multiple of the largest observed cell number.
    confine
        Add an ellipsoidal wall fitted to all observed positions (an eggshell).
    predict_frames
        Frames simulated beyond the last observed one.
    n_predictions
        Replicates of the prediction.
    tracker_samples
        Lineages sampled by the tracker for the observed intervals (0: error
        probabilities only).
    correct_observation
        Correct the fit for what filming, detection and tracking do to the
        morphometrics (:func:`.observation.corrected_for_observation`): the fitted
        tissue is filmed like the store's movie (3D only; needs the detections).
    snr
        SNR of that simulated filming; ``None`` measures it on the store's movie at
        the detections (:func:`labloop.synth.camera.measured_snr`).
    nucleus_radius_scale
        Nucleus radius of the simulated filming as a share of the model cell's.
    correction_tissues
        Simulated tissues whose mean bias corrects the fit.
    correction_iterations
        Most biases measured on the way to the correction's fixed point (each one
        films the simulated tissues anew).
    """

    fit: CalibrateSettings | None = None
    max_time_step_h: float = 0.25
    capacity_factor: float = 3.0
    confine: bool = False
    predict_frames: int = 0
    n_predictions: int = 8
    tracker_samples: int = 10
    correct_observation: bool = False
    snr: float | None = None
    nucleus_radius_scale: float = 0.65
    correction_tissues: int = 4
    correction_iterations: int = 1


def model_for(lineage: Lineage, observed: Observations, settings: StoreSettings,
              dim: int) -> TissueModel:
    """A model whose time step divides the frame interval and whose capacity covers the
    observed cells ``capacity_factor`` times (rounded up to a multiple of 32)."""
    steps = int(np.ceil(observed.frame_interval_h / settings.max_time_step_h - 1e-9))
    biggest = int(lineage.nodes.groupby("t").size().max())
    capacity = int(np.ceil(settings.capacity_factor * biggest / 32) * 32)
    return TissueModel(capacity=max(capacity, 64), dim=dim,
                       dt_h=observed.frame_interval_h / steps, mechanics_substeps=2)


def ellipsoid_around(lineage: Lineage, margin_um: float = 0.0) -> Ellipsoid:
    """The uniform ellipsoid with the second moments of all observed positions, aligned
    with the image axes (semi-axes ``√(5 σ²)`` plus ``margin_um``)."""
    xyz = lineage.nodes[["z", "y", "x"]].to_numpy(np.float64)
    centre = xyz.mean(axis=0)
    semi = np.sqrt(5.0 * xyz.var(axis=0)) + margin_um
    return Ellipsoid(semi_axes_um=np.maximum(semi, 1.0), centre_um=centre,
                     stiffness_per_h=np.asarray(5.0))


def starting_params(lineage: Lineage, observed: Observations,
                    confinement: Ellipsoid | None) -> TissueParams:
    """Parameters started from the data: ``λ_max`` from the observed growth (the default
    gene network halves it), motility from the motion term."""
    params = default_params(n_genes=1, confinement=confinement)
    counts = lineage.nodes.groupby("t").size()
    hours = (counts.index.max() - counts.index.min()) * observed.frame_interval_h
    growth = max(np.log(counts.iloc[-1] / counts.iloc[0]) / max(hours, 1e-9), 0.01)
    motion = motion_segments(lineage)
    excess = float(np.mean(motion[:, 1] - motion[:, 0])) if len(motion) else 0.0
    motility = max(excess / (2 * 3 * observed.frame_interval_h), 0.05)
    return with_values(params, **{"division.max_rate_per_h": 2.0 * growth,
                                  "mechanics.motility_um2_per_h": motility})


def store_snr(image: Image, detections: pd.DataFrame) -> float:
    """The SNR of a store's movie at its detections, on :data:`SNR_FRAMES` frames with
    detections, evenly spaced."""
    from labloop.synth.camera import measured_snr

    detected = np.unique(detections["t"].to_numpy(np.int64))
    frames = detected[np.unique(np.linspace(0, len(detected) - 1,
                                            SNR_FRAMES).round().astype(int))]
    centres = [detections.loc[detections["t"] == t, ["z", "y", "x"]].to_numpy()
               for t in frames]
    return measured_snr([image.frame(int(t)) for t in frames], centres, image.voxel_size_um)


def _corrected(fit: Fit, filmed: Experiment, model: TissueModel, image: Image,
               detections: pd.DataFrame, settings: StoreSettings,
               seed: int) -> tuple[Fit, dict[str, Any]]:
    """``fit`` corrected for the measuring chain, and what the store's record says of it."""
    from labloop.calibrate.observation import Acquisition, corrected_for_observation

    snr = settings.snr if settings.snr is not None else store_snr(image, detections)
    acquisition = Acquisition(tuple(image.voxel_size_um), snr, settings.nucleus_radius_scale)
    corrected = corrected_for_observation(fit, [filmed], model, acquisition, seed=seed + 2,
                                          n_tissues=settings.correction_tissues,
                                          iterations=settings.correction_iterations)
    path = corrected.extra["correction_iterations"]
    return corrected, {"snr": snr, "snr_measured": settings.snr is None,
                       "nucleus_radius_scale": settings.nucleus_radius_scale,
                       "uncorrected": fit.intervals.to_dict("records"),
                       "tissues": settings.correction_tissues,
                       "iterations": int(path["iteration"].max()),
                       "seconds": corrected.seconds - fit.seconds}


def calibrate_store(path: str | Path, settings: StoreSettings | None = None, *,
                    progress: Callable[[int, int], None] | None = None,
                    params: TissueParams | None = None) -> Fit:
    """Fit the tissue model to the store's tracks and save fit and prediction (module doc).

    Parameters
    ----------
    path
        Experiment store with ``labloop/tracks.geff``.
    settings
        :class:`StoreSettings`.
    progress
        ``progress(done, total)`` during the optimisation.
    params
        Starting parameters (default: :func:`starting_params`).
    """
    from labloop.io.store import DETECTIONS, TRACKS, open_experiment

    settings = settings or StoreSettings()
    experiment = open_experiment(path)
    if not experiment.has(TRACKS):
        raise InputError("the store has no tracks yet; run `labloop track` first", path)
    lineage = experiment.read_lineage(TRACKS)
    image = experiment.image
    dim = 2 if image.shape[1] == 1 else 3
    if settings.correct_observation and (dim == 2 or not experiment.has(DETECTIONS)):
        raise InputError("correcting for the measuring chain needs a 3D movie and its "
                         "detections (run `labloop detect`)", path)
    sources = (experiment.read_table(SOURCES)[["z", "y", "x"]].to_numpy()
               if experiment.has(SOURCES) else None)
    detections = experiment.read_detections() if experiment.has(DETECTIONS) else None
    samples = None
    if settings.tracker_samples > 0 and detections is not None:
        from labloop.track import sample_lineages

        samples = sample_lineages(detections, settings.tracker_samples,
                                  seed=0, frame_interval_h=image.frame_interval_h,
                                  image_shape_um=image.extent_um)
    observed = observe(lineage, sources, samples=samples)
    model = model_for(lineage, observed, settings, dim)
    confinement = ellipsoid_around(lineage) if settings.confine else None
    start = params or starting_params(lineage, observed, confinement)
    fit_settings = settings.fit or CalibrateSettings(
        free=CalibrateSettings().free if sources is not None else WITHOUT_SOURCES)
    initial = initial_from_lineage(model, lineage, sources,
                                   n_genes=int(np.shape(start.gene.bias)[-1]))
    fit = recalibrate(observed, model, start, initial, fit_settings, progress=progress)
    correction: dict[str, Any] = {}
    if settings.correct_observation:
        fit, correction = _corrected(fit, Experiment(observed, initial), model, image,
                                     detections, settings, fit_settings.seed)

    spf = round(observed.frame_interval_h / model.dt_h)
    trajectory = predict(model, fit.params, initial,
                         observed.frames - 1 + settings.predict_frames, spf,
                         jax.random.key(fit_settings.seed + 1), settings.n_predictions)
    record: dict[str, Any] = {
        "settings": dataclasses.asdict(settings), "model": dataclasses.asdict(model),
        "loss": fit.loss, "best_start": fit.best_start, "seconds": fit.seconds,
        "minima": [{"start": m.best_start, "loss": m.loss, "weight": float(w)}
                   for m, w in zip(fit.modes, fit.mode_weights(), strict=True)],
        "identifiability": fit.identifiability, "observed_frames": observed.frames,
        "division_law": fit.derived().to_dict("records"),
        "all_parameters": describe(fit.params).to_dict("records"),
        "observation_correction": correction}
    import zarr

    zarr.open_group(str(experiment.result_path("fit")), mode="a", zarr_format=3)
    experiment.write_table(FIT_PARAMETERS, fit.intervals, "calibrate", record)
    experiment.write_table(FIT_HISTORY, fit.history, "calibrate", {})
    experiment.write_table(FIT_FITTED, fit.fitted, "calibrate", {})
    experiment.write_table(FIT_SENSITIVITY, fit.sensitivity, "calibrate", {})
    if settings.correct_observation:
        experiment.write_table(FIT_OBSERVATION_BIAS,
                               fit.extra["observation_bias"][0].table(), "calibrate", {})
    experiment.write_table(PREDICTION, prediction_table(trajectory), "calibrate",
                           {"observed_frames": observed.frames,
                            "predicted_frames": settings.predict_frames})
    experiment.write_table(PREDICTED_MORPHOMETRICS,
                           predicted_morphometrics(trajectory, observed.landmark_um),
                           "calibrate", {})
    fit.extra.update({"model": model, "initial": initial, "observed": observed,
                      "trajectory": trajectory, "observation_correction": correction})
    return fit
