"""Benchmark of the U-Net nucleus detector against blob_log and trackpy (not a timed test).

Run ``python benchmarks/bench_detect.py`` (about 10 minutes on 2 CPU cores). It
prints a table and writes ``benchmarks/results/detect.json`` and ``detect.md``.

Accuracy
    Fresh simulated movies (seeds never used in training; the training seeds are
    drawn from ``SeedSequence(0)``), voxel ``(2, 0.5, 0.5)`` µm, nucleus radius
    3.5 µm, at SNR 1, 2, 4, 8 and two densities (sparse: packing fraction 0.10;
    dense: 0.30, nuclei touching). Precision, recall and F1 with one-to-one
    (Hungarian) matching per frame within half a nucleus diameter (3.5 µm).
    The baselines ``skimage.feature.blob_log`` and ``trackpy.locate`` get the
    true nucleus size and have their threshold (and a size factor) tuned by grid
    search on a separate tuning movie *of the same condition* (the U-Net is not
    tuned at all: it runs with its defaults). The U-Net's score calibration is
    checked on the same volumes (expected calibration error, ECE).
Speed and memory
    On a 64 × 512 × 512 volume, each in a fresh process: the full ``detect``
    call (warm, i.e. second call) and a bare U-Net forward pass on the same
    volume resampled to the working grid (no tiling, no peaks); throughput in
    input voxels per second and the process's peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
VOXEL_UM = (2.0, 0.5, 0.5)
RADIUS_UM = 3.5
#: Matching radius: half a nucleus diameter.
MATCH_RADIUS_UM = RADIUS_UM
SNRS = (1.0, 2.0, 4.0, 8.0)
#: packing fraction (fraction of the volume inside nuclei) of the two densities
DENSITIES = {"sparse": 0.10, "dense": 0.30}
EVAL_SHAPE = (24, 160, 160)
EVAL_FRAMES = 2
EVAL_SEED = 910_000
TUNE_SEED = 920_000
LARGE_SHAPE = (64, 512, 512)
LARGE_SEED = 930_000
THREADS = 2


def density_per_1000um3(packing: float) -> float:
    """Nuclei per 1000 µm³ for a packing fraction with radius :data:`RADIUS_UM`."""
    return packing * 1000.0 / (4.0 / 3.0 * np.pi * RADIUS_UM**3)


def make_movie(snr: float, packing: float, seed: int, shape: tuple[int, int, int] = EVAL_SHAPE,
               frames: int = EVAL_FRAMES) -> Any:
    from labloop.synth import SynthConfig, simulate_movie

    return simulate_movie(SynthConfig(frames=frames, shape=shape, voxel_size_um=VOXEL_UM,
                                      density=density_per_1000um3(packing), snr=snr,
                                      radius_mean_um=RADIUS_UM, seed=seed))


# ----------------------------------------------------------------- metrics
def metrics(truth: pd.DataFrame, found: pd.DataFrame) -> dict[str, float]:
    """Precision, recall, F1 with one-to-one matching per frame within MATCH_RADIUS_UM."""
    try:  # the project's evaluation module, where available
        from labloop.evaluate import detection_metrics

        result = detection_metrics(truth, found, MATCH_RADIUS_UM)
        values = dict(result) if not hasattr(result, "_asdict") else result._asdict()
        return {k: float(values[k]) for k in ("precision", "recall", "f1")}
    except Exception:
        pass
    from labloop.detect.matching import f1_counts, match_points

    n_true = n_found = n_matched = 0
    for t in sorted(set(truth["t"]) | set(found["t"])):
        a = truth.loc[truth["t"] == t, ["z", "y", "x"]].to_numpy()
        b = found.loc[found["t"] == t, ["z", "y", "x"]].to_numpy()
        n_true, n_found = n_true + len(a), n_found + len(b)
        n_matched += len(match_points(a, b, MATCH_RADIUS_UM)[0])
    precision, recall, f1 = f1_counts(n_true, n_found, n_matched)
    return {"precision": precision, "recall": recall, "f1": f1}


def matched_flags(truth: pd.DataFrame, found: pd.DataFrame) -> np.ndarray:
    from labloop.detect.matching import match_points

    flags = np.zeros(len(found))
    for t in found["t"].unique():
        rows = np.flatnonzero(found["t"].to_numpy() == t)
        a = truth.loc[truth["t"] == t, ["z", "y", "x"]].to_numpy()
        _, j = match_points(a, found.iloc[rows][["z", "y", "x"]].to_numpy(), MATCH_RADIUS_UM)
        flags[rows[j]] = 1.0
    return flags


# --------------------------------------------------------------- baselines
def _percentile_normalise(frame: np.ndarray) -> np.ndarray:
    low, high = np.percentile(frame, (1.0, 99.9))
    return ((frame.astype(np.float32) - low) / max(high - low, 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class BlobLog:
    """``skimage.feature.blob_log`` with a given size factor and threshold."""

    size_factor: float
    threshold: float

    def __call__(self, image: np.ndarray) -> pd.DataFrame:
        from skimage.feature import blob_log

        sigma = self.size_factor * RADIUS_UM / np.sqrt(3.0) / np.asarray(VOXEL_UM)
        rows = []
        for t, frame in enumerate(image):
            blobs = blob_log(_percentile_normalise(frame), min_sigma=0.7 * sigma,
                             max_sigma=1.3 * sigma, num_sigma=3, threshold=self.threshold,
                             exclude_border=False)
            for z, y, x in blobs[:, :3]:
                rows.append((t, z * VOXEL_UM[0], y * VOXEL_UM[1], x * VOXEL_UM[2]))
        return pd.DataFrame(rows, columns=["t", "z", "y", "x"])


def _odd(value: float) -> int:
    n = max(3, round(value))
    return n if n % 2 else n + 1


@dataclass(frozen=True)
class Trackpy:
    """``trackpy.locate`` (3D) with a given diameter factor; ``minmass`` tuned afterwards."""

    size_factor: float

    def candidates(self, image: np.ndarray) -> pd.DataFrame:
        import trackpy

        trackpy.quiet()
        diameter = tuple(_odd(self.size_factor * 2 * RADIUS_UM / v) for v in VOXEL_UM)
        tables = []
        for t, frame in enumerate(image):
            found = trackpy.locate(frame.astype(np.float32), diameter, minmass=0,
                                   characterize=False, engine="numba"
                                   if _has_numba() else "python")
            found = pd.DataFrame({"t": t, "z": found["z"] * VOXEL_UM[0],
                                  "y": found["y"] * VOXEL_UM[1], "x": found["x"] * VOXEL_UM[2],
                                  "mass": found["mass"]})
            tables.append(found)
        return pd.concat(tables, ignore_index=True)


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def tune_blob_log(movie: Any) -> tuple[BlobLog, float]:
    truth = movie.truth.nodes
    best = (-1.0, BlobLog(1.0, 0.1))
    for factor in (0.7, 1.0):
        for threshold in (0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6):
            method = BlobLog(factor, threshold)
            f1 = metrics(truth, method(movie.image))["f1"]
            if f1 > best[0]:
                best = (f1, method)
    return best[1], best[0]


def tune_trackpy(movie: Any) -> tuple[Trackpy, float, float]:
    truth = movie.truth.nodes
    best: tuple[float, Trackpy, float] = (-1.0, Trackpy(1.0), 0.0)
    for factor in (0.45, 0.6, 0.8, 1.0):
        method = Trackpy(factor)
        found = method.candidates(movie.image)
        for q in np.linspace(0.0, 0.95, 20):
            minmass = float(np.quantile(found["mass"], q)) if len(found) else 0.0
            f1 = metrics(truth, found[found["mass"] >= minmass])["f1"]
            if f1 > best[0]:
                best = (f1, method, minmass)
    return best[1], best[2], best[0]


# ------------------------------------------------------------------ child runs
def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, path: str) -> None:
    """Run in a fresh process: time ``detect`` or a bare forward pass on a saved volume."""
    import torch

    torch.set_num_threads(THREADS)
    from labloop.detect import detect, load_model
    from labloop.detect.resample import Normalisation, WorkingGrid, to_working

    volume = np.load(path)
    model = load_model()
    result: dict[str, Any] = {"voxels": int(volume.size), "shape": list(volume.shape)}
    if mode == "detect":
        start = time.perf_counter()
        found = detect(volume, VOXEL_UM, model=model, progress=False)
        result["cold_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        found = detect(volume, VOXEL_UM, model=model, progress=False)
        result["seconds"] = time.perf_counter() - start
        result["detections"] = len(found)
    else:
        grid = WorkingGrid.for_frame(volume.shape, VOXEL_UM, model.spec.working_voxel_um)
        multiple = model.spec.size_multiple
        shape = [m * (n // m) for n, m in zip(grid.shape, multiple, strict=True)]
        working = to_working(volume, grid)
        norm = Normalisation.estimate(working)
        x = norm.apply(working)[: shape[0], : shape[1], : shape[2]][None, None].contiguous()
        with torch.inference_mode():
            model.network(x[..., :16, :64, :64])  # warm-up
            start = time.perf_counter()
            model.network(x)
            result["seconds"] = time.perf_counter() - start
        result["working_shape"] = shape
    result["peak_memory_mb"] = _vm_hwm_mb()
    print(json.dumps(result))


def run_child(mode: str, path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], check=True,
                         capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------------ main
def accuracy() -> list[dict[str, Any]]:
    from labloop.detect import detect, expected_calibration_error, load_model

    model = load_model()
    rows = []
    for name, packing in DENSITIES.items():
        for i, snr in enumerate(SNRS):
            tag = f"SNR {snr:g}, {name}"
            tune = make_movie(snr, packing, TUNE_SEED + 10 * i + (name == "dense"), frames=1)
            blob, blob_tune_f1 = tune_blob_log(tune)
            tp, minmass, tp_tune_f1 = tune_trackpy(tune)
            movie = make_movie(snr, packing, EVAL_SEED + 10 * i + (name == "dense"))
            truth = movie.truth.nodes
            voxels = movie.image.size

            start = time.perf_counter()
            unet_all = detect(movie.image, movie.voxel_size_um, model=model, progress=False,
                              min_score=0.0)
            unet_s = time.perf_counter() - start
            unet = unet_all[unet_all["score"] >= 0.5]
            flags = matched_flags(truth, unet_all)
            ece = expected_calibration_error(unet_all["score"].to_numpy(), flags)

            start = time.perf_counter()
            blob_found = blob(movie.image)
            blob_s = time.perf_counter() - start
            start = time.perf_counter()
            tp_all = tp.candidates(movie.image)
            tp_s = time.perf_counter() - start
            tp_found = tp_all[tp_all["mass"] >= minmass]

            row = {"condition": tag, "snr": snr, "density": name,
                   "density_per_1000um3": round(density_per_1000um3(packing), 3),
                   "nuclei": len(truth)}
            for method, found, seconds in (("unet", unet, unet_s), ("blob_log", blob_found,
                                                                   blob_s),
                                           ("trackpy", tp_found, tp_s)):
                m = metrics(truth, found)
                row.update({f"{method}_{k}": round(v, 4) for k, v in m.items()})
                row[f"{method}_mvox_per_s"] = round(voxels / seconds / 1e6, 3)
            row["unet_score_ece"] = round(ece, 4)
            row["blob_log_params"] = {"size_factor": blob.size_factor,
                                      "threshold": blob.threshold, "tune_f1": round(
                                          blob_tune_f1, 4)}
            row["trackpy_params"] = {"size_factor": tp.size_factor, "minmass": round(minmass, 1),
                                     "tune_f1": round(tp_tune_f1, 4)}
            rows.append(row)
            print(f"{tag:>18}: U-Net F1 {row['unet_f1']:.3f}  blob_log {row['blob_log_f1']:.3f}"
                  f"  trackpy {row['trackpy_f1']:.3f}  (ECE {ece:.3f})", flush=True)
    return rows


def speed() -> dict[str, Any]:
    import tempfile

    movie = make_movie(4.0, DENSITIES["sparse"], LARGE_SEED, shape=LARGE_SHAPE, frames=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "volume.npy"
        np.save(path, movie.image[0])
        full = run_child("detect", path)
        bare = run_child("forward", path)
    return {
        "shape": list(LARGE_SHAPE), "voxel_size_um": list(VOXEL_UM), "threads": THREADS,
        "detect_seconds": round(full["seconds"], 2),
        "detect_cold_seconds": round(full["cold_seconds"], 2),
        "detect_mvox_per_s": round(full["voxels"] / full["seconds"] / 1e6, 3),
        "detect_peak_memory_mb": round(full["peak_memory_mb"], 1),
        "detections": full["detections"],
        "forward_seconds": round(bare["seconds"], 2),
        "forward_working_shape": bare["working_shape"],
        "forward_peak_memory_mb": round(bare["peak_memory_mb"], 1),
        "detect_to_forward_ratio": round(full["seconds"] / bare["seconds"], 2),
    }


def table(rows: list[dict[str, Any]], speed_result: dict[str, Any]) -> str:
    lines = ["| condition | nuclei | U-Net P / R / F1 | blob_log P / R / F1 | "
             "trackpy P / R / F1 | U-Net ECE |",
             "|---|---:|---|---|---|---:|"]
    for r in rows:
        cells = [f"{r[f'{m}_precision']:.3f} / {r[f'{m}_recall']:.3f} / **{r[f'{m}_f1']:.3f}**"
                 for m in ("unet", "blob_log", "trackpy")]
        lines.append(f"| {r['condition']} | {r['nuclei']} | {' | '.join(cells)} | "
                     f"{r['unet_score_ece']:.3f} |")
    s = speed_result
    lines += ["", f"Speed on a {'×'.join(map(str, s['shape']))} volume ({s['threads']} threads): "
              f"detect {s['detect_seconds']} s = {s['detect_mvox_per_s']} Mvoxel/s "
              f"(cold first call {s['detect_cold_seconds']} s), peak memory "
              f"{s['detect_peak_memory_mb']:.0f} MB; bare U-Net forward "
              f"{s['forward_seconds']} s on the {'×'.join(map(str, s['forward_working_shape']))}"
              f" working grid; detect / forward = {s['detect_to_forward_ratio']}.",
              "Throughput on the accuracy volumes (Mvoxel/s, mean): " + ", ".join(
                  f"{m} {np.mean([r[f'{m}_mvox_per_s'] for r in rows]):.2f}"
                  for m in ("unet", "blob_log", "trackpy")) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import torch

    torch.set_num_threads(THREADS)
    from labloop.detect import default_model_path, load_model

    started = time.perf_counter()
    rows = [] if args.skip_accuracy else accuracy()
    speed_result = speed()
    text = table(rows, speed_result)
    print(text)
    model = load_model()
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"model": str(default_model_path().name), "model_seed": model.training.get("seed"),
              "match_radius_um": MATCH_RADIUS_UM, "voxel_size_um": list(VOXEL_UM),
              "eval_shape": list(EVAL_SHAPE), "eval_frames": EVAL_FRAMES,
              "accuracy": rows, "speed": speed_result,
              "python": platform.python_version(), "machine": platform.machine(),
              "benchmark_seconds": round(time.perf_counter() - started, 1)}
    (RESULTS / "detect.json").write_text(json.dumps(record, indent=2))
    (RESULTS / "detect.md").write_text("# Detector benchmark\n\n" + text + "\n")


if __name__ == "__main__":
    main()
