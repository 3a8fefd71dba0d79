"""Training and fine-tuning the nucleus detector.

:func:`train_detector` trains the U-Net on synthetic volumes from
:mod:`labloop.synth` (:mod:`labloop.detect.synthetic`), or fine-tunes a trained
model on the user's own annotated frames (points in a CSV with columns
``t, z, y, x`` in µm, or a GEFF lineage). The procedure:

1. generate a pool of training volumes, a validation set and a calibration set,
   each volume from its own seed (parallel workers do not change the result);
2. train on random crops (random flips and 90° rotations in ``y, x``, flips in
   ``z``) with a weighted squared error, ``mean((1 + w·target)(pred − target)²)``,
   which up-weights the small fraction of voxels near centres; AdamW with a
   linear warm-up and cosine decay of the learning rate;
3. every ``val_every`` steps compute the F1 score on the validation volumes
   (best over a few peak-height thresholds) and keep the best weights;
4. fit the score calibration (:mod:`labloop.detect.calibration`) on the
   calibration volumes and save everything in one ``.safetensors`` file.

The result depends only on the seed and the settings (and, through the order of
floating-point sums, the number of CPU threads).
"""

from __future__ import annotations

import copy
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from labloop.detect.calibration import (
    BorderAwareCalibration,
    expected_calibration_error,
    on_border,
)
from labloop.detect.heatmap import HeatmapSettings, centre_heatmap
from labloop.detect.matching import f1_counts, match_points
from labloop.detect.model import DetectorModel, ModelSpec, build_network, load_model
from labloop.detect.peaks import PeakSettings, find_peaks
from labloop.detect.resample import Normalisation, WorkingGrid, to_working
from labloop.detect.synthetic import AugmentSettings, Sample, make_sample
from labloop.errors import InputError

#: Peak-height thresholds tried when scoring validation volumes.
VALIDATION_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
#: Calibrated-score threshold at which final metrics are reported (the detect default).
REPORT_MIN_SCORE = 0.5
#: SNR bands of the per-condition metrics in the training record.
SNR_BANDS = ((0.0, 1.5), (1.5, 3.0), (3.0, 6.0), (6.0, math.inf))


@dataclass(frozen=True)
class TrainSettings:
    """Settings of :func:`train_detector` (synthetic training and fine-tuning).

    Parameters
    ----------
    seed
        Seed of every random draw (data, crops, initial weights).
    steps
        Optimisation steps (the length of the learning-rate schedule).
    stop_step
        Stop after this step although the schedule is longer (``None``: run all
        ``steps``); reproduces a run that ``max_minutes`` stopped early.
    max_minutes
        Safety stop on wall-clock time (``None``: none). Reproducibility needs the
        run to end by ``steps``, so set it above the expected duration.
    pool_size, val_size, calib_size
        Number of synthetic training, validation and calibration volumes.
    batch_size
        Crops per step.
    crop
        Crop shape ``(z, y, x)`` in working voxels (multiples of the network's
        size multiple).
    learning_rate, weight_decay, warmup_steps, final_lr_fraction
        AdamW settings and learning-rate schedule.
    peak_weight
        ``w`` of the weighted squared error.
    val_every
        Steps between validations.
    workers
        Processes generating synthetic volumes.
    min_separation_um
        Peak separation used in validation and calibration.
    """

    seed: int = 0
    steps: int = 3000
    stop_step: int | None = None
    max_minutes: float | None = None
    pool_size: int = 700
    val_size: int = 40
    calib_size: int = 120
    batch_size: int = 8
    crop: tuple[int, int, int] = (16, 64, 64)
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    peak_weight: float = 9.0
    val_every: int = 250
    workers: int = 2
    min_separation_um: float = 3.0


@dataclass
class TrainResult:
    """What :func:`train_detector` produced.

    Attributes
    ----------
    model
        The trained, calibrated detector.
    path
        Where it was saved (``None`` if not saved).
    history
        One row per validation: step, training loss, validation F1, threshold.
    record
        The training record stored in the model file.
    """

    model: DetectorModel
    path: Path | None
    history: pd.DataFrame
    record: dict[str, Any] = field(default_factory=dict)


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ data
def _init_worker() -> None:
    torch.set_num_threads(1)


def _make_sample_job(args: tuple[int, AugmentSettings, tuple[float, float, float],
                                 HeatmapSettings]) -> Sample:
    return make_sample(*args)


def synthetic_samples(seeds: Sequence[int], augment: AugmentSettings,
                      working_voxel_um: tuple[float, float, float], heatmap: HeatmapSettings,
                      workers: int = 1) -> list[Sample]:
    """Generate synthetic volumes for the given seeds (in order), in ``workers`` processes."""
    jobs = [(int(s), augment, working_voxel_um, heatmap) for s in seeds]
    if workers <= 1 or len(jobs) < 2 * workers:
        return [_make_sample_job(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        return list(pool.map(_make_sample_job, jobs, chunksize=4))


def read_points(path: str | Path) -> pd.DataFrame:
    """Read annotated nucleus centres: a CSV with ``t, z, y, x`` (µm) or a GEFF lineage.

    Raises
    ------
    InputError
        If the file is missing, unreadable or lacks the columns.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such annotation file", path)
    if path.is_dir() or path.suffix.lower() in (".geff", ".zarr"):
        from labloop.io.geff import read_geff

        table = read_geff(path).nodes
    else:
        try:
            table = pd.read_csv(path)
        except Exception as error:
            raise InputError(f"not a readable CSV ({type(error).__name__})", path) from error
    missing = [c for c in ("t", "z", "y", "x") if c not in table.columns]
    if missing:
        raise InputError(f"annotations lack the column(s) {', '.join(missing)} (t: frame, "
                         "z, y, x: µm)", path)
    points = table[["t", "z", "y", "x"]].apply(pd.to_numeric, errors="coerce")
    if points.isna().any().any():
        raise InputError("annotations contain missing or non-numeric values", path)
    return points.reset_index(drop=True)


def annotated_samples(image: Any, points: pd.DataFrame, spec: ModelSpec,
                      heatmap: HeatmapSettings, radius_um: float | None = None,
                      voxel_size_um: Sequence[float] | None = None) -> list[Sample]:
    """Training volumes from a user's image and annotated centres, one per annotated frame.

    Every nucleus in an annotated frame must be annotated (unannotated nuclei
    would be taught as background).

    Parameters
    ----------
    image
        An :class:`~labloop.io.images.Image` or array ``(T, Z, Y, X)``.
    points
        ``t`` (frame) and ``z, y, x`` (µm) of nucleus centres.
    spec
        The model's architecture (working voxel size).
    heatmap
        Target settings; ``radius_um`` overrides its default radius.
    radius_um
        Typical nucleus radius (µm) of the user's data (sets heatmap widths and
        the matching radius).
    voxel_size_um
        Needed for arrays.
    """
    from labloop.detect.inference import _as_frames, _load_frame

    data, voxel, source = _as_frames(image, voxel_size_um)
    if radius_um is not None:
        heatmap = replace(heatmap, default_radius_um=float(radius_um))
    samples = []
    for t, group in points.groupby("t"):
        t = int(t)
        if not 0 <= t < data.shape[0]:
            raise InputError(f"annotations name frame {t}, but the image has frames "
                             f"0..{data.shape[0] - 1}")
        frame = _load_frame(data, t, source)
        grid = WorkingGrid.for_frame(frame.shape, voxel, spec.working_voxel_um)
        volume = to_working(frame, grid)
        norm = Normalisation.estimate(volume)
        image_w = (norm.apply(volume) if norm is not None else volume * 0).numpy()
        positions = group[["z", "y", "x"]].to_numpy(dtype=np.float64)
        heat = centre_heatmap(positions, None, grid, heatmap)
        samples.append(Sample(image_w.astype(np.float16), heat.astype(np.float16), positions,
                              grid, heatmap.default_radius_um, {"frame": t, "source": source}))
    if not samples:
        raise InputError("the annotation file has no points")
    return samples


# ------------------------------------------------------------------ crops
def _crop(sample: Sample, crop: tuple[int, int, int], rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray]:
    image, heat = sample.image, sample.heat
    if image.shape[0] == 1:  # 2D: a column, as at inference
        image = np.broadcast_to(image, (crop[0], *image.shape[1:]))
        heat = np.broadcast_to(heat, (crop[0], *heat.shape[1:]))
    pad = [(0, max(0, c - s)) for c, s in zip(crop, image.shape, strict=True)]
    if any(p[1] for p in pad):
        image = np.pad(image, pad, mode="edge")
        heat = np.pad(heat, pad, mode="constant")
    start = [int(rng.integers(0, s - c + 1)) for s, c in zip(image.shape, crop, strict=True)]
    window = tuple(slice(s, s + c) for s, c in zip(start, crop, strict=True))
    image, heat = image[window], heat[window]
    if rng.random() < 0.5:
        image, heat = image[::-1], heat[::-1]
    if rng.random() < 0.5:
        image, heat = image[:, ::-1], heat[:, ::-1]
    if rng.random() < 0.5:
        image, heat = image[:, :, ::-1], heat[:, :, ::-1]
    if rng.random() < 0.5 and crop[1] == crop[2]:
        image, heat = image.transpose(0, 2, 1), heat.transpose(0, 2, 1)
    return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(heat, np.float32)


def _batch(samples: Sequence[Sample], settings: TrainSettings, rng: np.random.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    picks = rng.integers(0, len(samples), settings.batch_size)
    pairs = [_crop(samples[i], settings.crop, rng) for i in picks]
    images = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
    heats = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
    return images, heats


# ------------------------------------------------------------- evaluation
def sample_peaks(model: DetectorModel, sample: Sample, min_separation_um: float,
                 min_height: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks (µm), heights and on-border flags of the model's heatmap of a sample."""
    from labloop.detect.inference import predict_heatmap

    heat = predict_heatmap(model, torch.from_numpy(sample.image.astype(np.float32)))
    coords, heights = find_peaks(heat, sample.grid.voxel_um,
                                 PeakSettings(min_separation_um, min_height))
    index = np.clip(np.rint(coords).astype(np.int64), 0, np.asarray(heat.shape) - 1)
    return sample.grid.index_to_um(coords), heights, on_border(index, heat.shape)


def _labelled_peaks(model: DetectorModel, samples: Sequence[Sample], min_separation_um: float,
                    min_height: float) -> list[tuple[np.ndarray, np.ndarray, Sample]]:
    peaks = []
    for s in samples:
        positions, heights, border = sample_peaks(model, s, min_separation_um, min_height)
        peaks.append((positions, model.calibration(heights, border), s))
    return peaks


def _f1_at(peaks: list[tuple[np.ndarray, np.ndarray, Sample]], keep: Callable[[np.ndarray],
                                                                               np.ndarray]
           ) -> tuple[float, float, float, int, int, int]:
    n_true = n_found = n_matched = 0
    for positions, heights, sample in peaks:
        kept = positions[keep(heights)]
        a, _ = match_points(sample.truth_um, kept, sample.match_radius_um)
        n_true += len(sample.truth_um)
        n_found += len(kept)
        n_matched += len(a)
    return (*f1_counts(n_true, n_found, n_matched), n_true, n_found, n_matched)


def validation_f1(model: DetectorModel, samples: Sequence[Sample], min_separation_um: float
                  ) -> tuple[float, float]:
    """Best F1 over :data:`VALIDATION_THRESHOLDS` of peak height, and that threshold."""
    peaks = _labelled_peaks(model, samples, min_separation_um, min(VALIDATION_THRESHOLDS))
    best = (-1.0, VALIDATION_THRESHOLDS[0])
    for threshold in VALIDATION_THRESHOLDS:
        f1 = _f1_at(peaks, lambda h, th=threshold: h >= th)[2]
        best = max(best, (f1, threshold))
    return best


def labelled_candidates(model: DetectorModel, samples: Sequence[Sample],
                        min_separation_um: float, min_height: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate peaks of held-out volumes: heights, on-border flags and 0/1 match labels."""
    heights_all, border_all, labels_all = [], [], []
    for sample in samples:
        positions, heights, border = sample_peaks(model, sample, min_separation_um, min_height)
        _, matched = match_points(sample.truth_um, positions, sample.match_radius_um)
        label = np.zeros(len(heights))
        label[matched] = 1.0
        heights_all.append(heights)
        border_all.append(border)
        labels_all.append(label)
    if not heights_all:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0)
    return np.concatenate(heights_all), np.concatenate(border_all), np.concatenate(labels_all)


def fit_calibration(model: DetectorModel, samples: Sequence[Sample], min_separation_um: float,
                    min_height: float
                    ) -> tuple[BorderAwareCalibration, np.ndarray, np.ndarray, np.ndarray]:
    """Fit the border-aware isotonic score calibration on held-out volumes.

    Returns
    -------
    calibration, heights, on_border, labels
        The calibration and the labelled candidate peaks it was fitted on.
    """
    heights, border, labels = labelled_candidates(model, samples, min_separation_um,
                                                  min_height)
    if heights.size < 2:
        return BorderAwareCalibration.identity(), heights, border, labels
    return BorderAwareCalibration.fit(heights, border, labels), heights, border, labels


def condition_metrics(model: DetectorModel, samples: Sequence[Sample], min_separation_um: float
                      ) -> list[dict[str, Any]]:
    """Precision, recall, F1 at calibrated score ≥ 0.5 per SNR band (3D) and for 2D volumes."""
    peaks = _labelled_peaks(model, samples, min_separation_um, 0.0)
    rows = []
    groups: list[tuple[str, Callable[[Sample], bool]]] = [
        (f"3D SNR {lo:g}-{hi:g}", lambda s, lo=lo, hi=hi: not s.info.get("planar")
         and lo <= s.info.get("snr", 0) < hi) for lo, hi in SNR_BANDS]
    groups.append(("2D", lambda s: bool(s.info.get("planar"))))
    for name, member in groups:
        chosen = [p for p in peaks if member(p[2])]
        if not chosen:
            continue
        precision, recall, f1, n_true, n_found, _ = _f1_at(
            chosen, lambda score: score >= REPORT_MIN_SCORE)
        rows.append({"condition": name, "volumes": len(chosen), "nuclei": n_true,
                     "detections": n_found, "precision": round(precision, 4),
                     "recall": round(recall, 4), "f1": round(f1, 4)})
    return rows


# --------------------------------------------------------------- training
def _lr_factor(step: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return settings.final_lr_fraction + (1 - settings.final_lr_fraction) * cosine


def train_detector(
    out: str | Path | None = None,
    settings: TrainSettings | None = None,
    *,
    spec: ModelSpec | None = None,
    augment: AugmentSettings | None = None,
    heatmap: HeatmapSettings | None = None,
    init: str | Path | DetectorModel | None = None,
    image: Any = None,
    annotations: str | Path | pd.DataFrame | None = None,
    voxel_size_um: Sequence[float] | None = None,
    radius_um: float | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = _log_stderr,
) -> TrainResult:
    """Train the nucleus detector on synthetic data, or fine-tune it on annotations.

    Parameters
    ----------
    out
        Where to save the ``.safetensors`` model (``None``: do not save).
    settings
        Optimisation, data-set sizes and seed; default :class:`TrainSettings` ``()``.
    spec
        Architecture for training from scratch (default :class:`ModelSpec` ``()``);
        ignored when ``init`` is given.
    augment
        Ranges of the synthetic data; default :class:`AugmentSettings` ``()``.
    heatmap
        Target settings; default :class:`HeatmapSettings` ``()``.
    init
        Start from this model (a path, a model, or ``"default"`` for the shipped
        one) instead of random weights: fine-tuning.
    image, annotations
        Fine-tune on the user's data: an image (:class:`~labloop.io.images.Image`,
        array or path readable by :func:`~labloop.io.images.read_image`) and
        nucleus centres (CSV ``t, z, y, x`` in µm, GEFF, or a DataFrame). All
        nuclei of an annotated frame must be annotated. With two or more
        annotated frames, one in four (at least one) is held out for model
        selection and score calibration; with one frame the previous calibration
        is kept. ``init`` defaults to the shipped model.
    voxel_size_um
        Voxel size of ``image`` (µm) where it lacks one.
    radius_um
        Typical nucleus radius in the user's data (µm).
    command
        The command line, recorded in the model file.
    log
        Receives progress messages (default: stderr); ``None`` silences them.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> result = train_detector("tiny.safetensors", TrainSettings(steps=2, pool_size=2,
    ...     val_size=1, calib_size=1, workers=1))  # doctest: +SKIP
    """
    settings = TrainSettings() if settings is None else settings
    augment = AugmentSettings() if augment is None else augment
    heatmap = HeatmapSettings() if heatmap is None else heatmap
    say = log if log is not None else (lambda message: None)
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    fine_tune = annotations is not None
    if fine_tune and image is None:
        raise InputError("fine-tuning needs the image the annotations belong to")
    if fine_tune and init is None:
        init = "default"
    if init is not None:
        base = init if isinstance(init, DetectorModel) else load_model(
            None if str(init) == "default" else init)
        spec = base.spec
        network = copy.deepcopy(base.network)
        calibration = base.calibration
    else:
        spec = ModelSpec() if spec is None else spec
        network = build_network(spec)
        calibration = BorderAwareCalibration.identity()
    if any(c % m for c, m in zip(settings.crop, spec.size_multiple, strict=True)):
        raise InputError(f"crop {settings.crop} must be a multiple of {spec.size_multiple}")

    pool_seeds, val_seeds, calib_seeds = (
        [int(s.generate_state(1)[0]) for s in seq.spawn(n)]
        for seq, n in zip(np.random.SeedSequence(settings.seed).spawn(3),
                          (settings.pool_size, settings.val_size, settings.calib_size),
                          strict=True))
    if fine_tune:
        if not hasattr(image, "data") and isinstance(image, str | Path):
            from labloop.io.images import read_image

            image = read_image(image, voxel_size_um)
        points = (annotations if isinstance(annotations, pd.DataFrame)
                  else read_points(annotations))  # type: ignore[arg-type]
        user = annotated_samples(image, points, spec, heatmap, radius_um, voxel_size_um)
        n_held = len(user) // 4 + (1 if len(user) >= 2 and len(user) // 4 == 0 else 0)
        pool, val = user[: len(user) - n_held], user[len(user) - n_held:]
        calib = val
        say(f"fine-tuning on {len(pool)} annotated frame(s), {len(val)} held out")
    else:
        say(f"generating {len(pool_seeds)} training, {len(val_seeds)} validation and "
            f"{len(calib_seeds)} calibration volumes ({settings.workers} workers)")
        pool = synthetic_samples(pool_seeds, augment, spec.working_voxel_um, heatmap,
                                 settings.workers)
        val = synthetic_samples(val_seeds, augment, spec.working_voxel_um, heatmap,
                                settings.workers)
        calib = synthetic_samples(calib_seeds, augment, spec.working_voxel_um, heatmap,
                                  settings.workers)
    data_s = time.perf_counter() - started
    say(f"data ready in {data_s:.0f} s")

    model = DetectorModel(network, spec, calibration, heatmap.to_dict())
    optimiser = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _lr_factor(s, settings))
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed).spawn(4)[3])
    history: list[dict[str, Any]] = []
    best_f1, best_state, best_step = -1.0, copy.deepcopy(network.state_dict()), 0
    running, count = 0.0, 0
    train_started = time.perf_counter()
    for step in range(1, settings.steps + 1):
        network.train()
        images, targets = _batch(pool, settings, rng)
        prediction = network(images)
        loss = ((1.0 + settings.peak_weight * targets) * (prediction - targets) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running += loss.item()
        count += 1
        timed_out = (settings.max_minutes is not None
                     and time.perf_counter() - started > 60 * settings.max_minutes)
        timed_out = timed_out or step == settings.stop_step
        if step % settings.val_every == 0 or step == settings.steps or timed_out:
            network.eval()
            f1, threshold = validation_f1(model, val, settings.min_separation_um) if val else (
                0.0, VALIDATION_THRESHOLDS[0])
            history.append({"step": step, "loss": running / count, "val_f1": f1,
                            "threshold": threshold,
                            "minutes": (time.perf_counter() - started) / 60})
            say(f"step {step}/{settings.steps} loss {running / count:.4f} val F1 {f1:.4f} "
                f"(height ≥ {threshold}) {history[-1]['minutes']:.1f} min")
            running, count = 0.0, 0
            if f1 > best_f1 or not val:
                best_f1, best_step = f1, step
                best_state = copy.deepcopy(network.state_dict())
        if timed_out:
            say(f"stopping at step {step} of {settings.steps} (max_minutes="
                f"{settings.max_minutes}, stop_step={settings.stop_step})")
            break
    train_s = time.perf_counter() - train_started
    network.load_state_dict(best_state)
    network.eval()

    calibration_record: dict[str, Any] = {"fitted": False}
    if calib and (not fine_tune or len(calib) >= 1):
        model.calibration = BorderAwareCalibration.identity()
        fitted, heights, border, labels = fit_calibration(
            model, calib, settings.min_separation_um, PeakSettings().min_height)
        model.calibration = fitted if heights.size >= 2 else calibration
        if heights.size >= 2:
            calibration_record = {
                "fitted": True, "volumes": len(calib), "candidate_peaks": int(heights.size),
                "border_peaks": int(border.sum()),
                "ece_on_fit_data": round(expected_calibration_error(
                    fitted(heights, border), labels), 4)}
    metrics = condition_metrics(model, val, settings.min_separation_um) if val else []
    record = {
        "command": command,
        "mode": "fine-tune" if fine_tune else "synthetic",
        "seed": settings.seed,
        "settings": asdict(settings),
        "augment": None if fine_tune else augment.to_dict(),
        "last_step": history[-1]["step"] if history else 0,
        "best_step": best_step,
        "best_val_f1": round(best_f1, 4),
        "data_seconds": round(data_s, 1),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "calibration": calibration_record,
        "validation_metrics": metrics,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    model.training = record
    path = model.save(out) if out is not None else None
    if path is not None:
        say(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return TrainResult(model, path, pd.DataFrame(history), record)
