"""Benchmark of labloop.track against trackpy and laptrack, plus calibration and scaling.

Run ``python benchmarks/bench_track.py`` (about 10–15 minutes on two cores). It prints
tables and writes ``benchmarks/results/track.json``. Parts:

1. **Real motion**: the C. elegans ground truth (Fluo-N3DH-CE 01, 23 802 nuclei)
   turned into detections with localisation noise σ = 0.25 µm (xy), 0.5 µm (z), 2 %
   missed and 2 % spurious (seeds 0, 1, 2), and the exact positions. labloop versus
   ``trackpy.link`` and ``laptrack`` on the very same detections; both baselines are
   tuned on seed 0 over a small grid (search radius, splitting, links over one missed
   frame; best edge F1) and that setting is used for all. Every method's links over a
   missed frame are filled with an interpolated nucleus
   (:func:`labloop.track.gaps.fill_gaps`, as labloop does by default) so that all are
   scored alike; labloop also runs without gap closing.
   Scored with :mod:`labloop.evaluate` (traccuracy), matching radius 3 µm.
2. **Simulated movies through the detector** (labloop.detect) at SNR 2 and 4, when
   the detector and its weights are available; otherwise skipped and said so.
3. **Calibration**: reliability table (10 bins), ECE and the share of wrong links among
   the 5 % most doubtful, for links and divisions, on the embryo and on held-out
   simulations (new seeds, never seen in training).
4. **Speed and scale**: wall time and peak memory (fresh process per size) of the
   whole tracker, error probabilities included, for 10³ to 10⁵ detections.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labloop.evaluate import calibration
from labloop.evaluate.tracking import compare_lineages
from labloop.lineage import Lineage
from labloop.synth import SynthConfig, simulate_cells
from labloop.track import (
    CandidateSettings,
    DetectionNoise,
    TrackSettings,
    perturb_detections,
    track,
)
from labloop.track.gaps import fill_gaps

ROOT = Path(__file__).resolve().parents[1]
CE_GEFF = ROOT.parent / "shared" / "data" / "ctc-Fluo-N3DH-CE-01-GT.geff"
CE_VOXEL_SIZE_UM = (1.0, 0.09, 0.09)
CE_FRAME_INTERVAL_H = 1 / 60
RESULTS = ROOT / "benchmarks" / "results" / "track.json"
RADIUS_UM = 3.0
NOISE = DetectionNoise(sigma_xy_um=0.25, sigma_z_um=0.5, miss_rate=0.02, spurious_rate=0.02)
EXACT = DetectionNoise(sigma_xy_um=0.0, sigma_z_um=0.0, miss_rate=0.0, spurious_rate=0.0)
SEEDS = (0, 1, 2)
#: labloop with links that skip one frame (bridging missed detections)
NO_GAP_CLOSING = TrackSettings(candidates=CandidateSettings(gap_closing=False))
TRACKPY_GRID = [{"search_range": r, "memory": m} for r in (2.0, 3.0, 4.0) for m in (0, 1)]
LAPTRACK_GRID = [{"cutoff_um": r, "splitting_cutoff_um": s, "gap_closing": g}
                 for r in (2.0, 3.0, 4.0) for s in (None, 4.0) for g in (False, True)]
SCALE_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
METRIC_KEYS = ("edge_f1", "edge_precision", "edge_recall", "division_f1",
               "division_f1_buffer1", "LNK", "TRA", "wrong_links", "n_predicted_divisions")


# --------------------------------------------------------------- baselines
def lineage_from_pairs(detections: pd.DataFrame, source: np.ndarray, target: np.ndarray,
                       interval: float) -> Lineage:
    """A lineage over all detections with the given links (row positions)."""
    nodes = detections[["t", "z", "y", "x", "score"]].reset_index(drop=True)
    edges = pd.DataFrame({"source": source, "target": target}).drop_duplicates()
    edges = edges[~edges["target"].duplicated()]
    return fill_gaps(Lineage(nodes, edges, frame_interval_h=interval))


def run_trackpy(detections: pd.DataFrame, search_range: float, memory: int,
                interval: float) -> Lineage:
    """``trackpy.link`` on positions in µm; links join consecutive points of a particle."""
    import trackpy

    trackpy.quiet()
    frame = detections[["z", "y", "x"]].copy()
    frame["frame"] = detections["t"].to_numpy()
    frame["row"] = np.arange(len(detections))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linked = trackpy.link(frame, search_range=search_range, memory=memory,
                              pos_columns=["z", "y", "x"], t_column="frame",
                              adaptive_stop=0.5, adaptive_step=0.9)
    linked = linked.sort_values(["particle", "frame"])
    same = linked["particle"].to_numpy()[1:] == linked["particle"].to_numpy()[:-1]
    rows = linked["row"].to_numpy()
    return lineage_from_pairs(detections, rows[:-1][same], rows[1:][same], interval)


def run_laptrack(detections: pd.DataFrame, cutoff_um: float, splitting_cutoff_um: float | None,
                 gap_closing: bool, interval: float) -> Lineage:
    """``laptrack.LapTrack`` (squared Euclidean cost, optional splitting, optional gap
    closing over one frame within the same cutoff)."""
    from laptrack import LapTrack

    frames = np.sort(detections["t"].unique())
    coords, rows = [], []
    full = np.arange(frames.min(), frames.max() + 1)
    for f in full:
        sel = np.flatnonzero(detections["t"].to_numpy() == f)
        rows.append(sel)
        coords.append(detections[["z", "y", "x"]].to_numpy()[sel])
    tracker = LapTrack(metric="sqeuclidean", cutoff=cutoff_um**2,
                       gap_closing_cutoff=cutoff_um**2 if gap_closing else False,
                       gap_closing_max_frame_count=2,
                       splitting_cutoff=False if splitting_cutoff_um is None
                       else splitting_cutoff_um**2, merging_cutoff=False)
    graph = tracker.predict(coords)
    pairs = np.array([(rows[a[0]][a[1]], rows[b[0]][b[1]]) for a, b in graph.edges()
                      if b[0] in (a[0] + 1, a[0] + 2)] or np.zeros((0, 2), int))
    return lineage_from_pairs(detections, pairs[:, 0], pairs[:, 1], interval)


# ------------------------------------------------------------------ scoring
def score(truth: Lineage, predicted: Lineage) -> tuple[dict[str, Any], np.ndarray]:
    comparison = compare_lineages(truth, predicted, RADIUS_UM)
    metrics = {k: comparison.metrics[k] for k in METRIC_KEYS}
    metrics["wrong_links_per_cell_frame"] = comparison.metrics["wrong_links"] / truth.n_nodes
    return metrics, comparison.predicted_edge_correct


def division_correct(truth: Lineage, predicted: Lineage, correct_edges: np.ndarray
                     ) -> np.ndarray:
    """Whether each called division's mother has both child links right."""
    edges = predicted.edges.assign(correct=correct_edges)
    good = edges.groupby("source")["correct"].sum()
    return good.reindex(predicted.divisions).to_numpy() >= 2


def load_ce() -> Lineage:
    return Lineage.from_geff(CE_GEFF, voxel_size_um=CE_VOXEL_SIZE_UM,
                             frame_interval_h=CE_FRAME_INTERVAL_H)


def real_motion(report: dict[str, Any]) -> None:
    truth = load_ce()
    runs = {f"noisy seed {s}": perturb_detections(truth, NOISE, s) for s in SEEDS}
    runs["exact"] = perturb_detections(truth, EXACT, 0)
    tune = runs["noisy seed 0"].drop(columns="truth_node")
    tuning: dict[str, list] = {"trackpy": [], "laptrack": []}
    for params in TRACKPY_GRID:
        f1 = score(truth, run_trackpy(tune, interval=CE_FRAME_INTERVAL_H, **params))[0]["edge_f1"]
        tuning["trackpy"].append({**params, "edge_f1": f1})
        print(f"  tune trackpy {params}: edge F1 {f1:.4f}", flush=True)
    for params in LAPTRACK_GRID:
        f1 = score(truth, run_laptrack(tune, interval=CE_FRAME_INTERVAL_H, **params)
                   )[0]["edge_f1"]
        tuning["laptrack"].append({**params, "edge_f1": f1})
        print(f"  tune laptrack {params}: edge F1 {f1:.4f}", flush=True)
    best = {name: {k: v for k, v in max(grid, key=lambda g: g["edge_f1"]).items()
                   if k != "edge_f1"} for name, grid in tuning.items()}
    results, calib_links, calib_divs = {}, {}, {}
    for name, det in runs.items():
        detections = det.drop(columns="truth_node")
        row: dict[str, Any] = {}
        start = time.perf_counter()
        lineage = track(detections, frame_interval_h=CE_FRAME_INTERVAL_H)
        elapsed = time.perf_counter() - start
        metrics, correct = score(truth, lineage)
        row["labloop"] = {**metrics, "time_s": elapsed}
        calib_links[name] = calibration(lineage.edges["error_probability"].to_numpy(), ~correct)
        div_ok = division_correct(truth, lineage, correct)
        p_div = lineage.nodes.loc[lineage.divisions, "division_probability"].to_numpy()
        calib_divs[name] = calibration(1 - p_div, ~div_ok)
        start = time.perf_counter()
        unbridged = track(detections, frame_interval_h=CE_FRAME_INTERVAL_H,
                          settings=NO_GAP_CLOSING)
        row["labloop without gap closing"] = {**score(truth, unbridged)[0],
                                              "time_s": time.perf_counter() - start}
        for method, runner in (("trackpy", run_trackpy), ("laptrack", run_laptrack)):
            start = time.perf_counter()
            other = runner(detections, interval=CE_FRAME_INTERVAL_H, **best[method])
            row[method] = {**score(truth, other)[0], "time_s": time.perf_counter() - start}
        results[name] = row
        print(f"  {name}: " + ", ".join(f"{m} F1 {r['edge_f1']:.4f}" for m, r in row.items()),
              flush=True)
    report["real_motion"] = {"noise": NOISE.__dict__, "tuning": tuning, "chosen": best,
                             "results": results}
    report["calibration_real"] = {"links": calib_links, "divisions": calib_divs}


# -------------------------------------------------------- detector movies
def detector_movies(report: dict[str, Any]) -> None:
    try:
        from labloop.detect import default_model_path, detect
    except ImportError as error:
        report["detector_movies"] = {"skipped": f"labloop.detect unavailable ({error})"}
        return
    if not Path(default_model_path()).exists():
        report["detector_movies"] = {"skipped": "no shipped detector weights"}
        return
    from labloop.synth import simulate_movie

    rows = {}
    for snr in (2.0, 4.0):
        config = SynthConfig(frames=8, shape=(16, 96, 96), voxel_size_um=(2.0, 0.5, 0.5),
                             n_cells=30, snr=snr, seed=11, cycle_mean_h=3.0)
        movie = simulate_movie(config)
        start = time.perf_counter()
        detections = detect(movie.image, config.voxel_size_um)
        t_detect = time.perf_counter() - start
        shape_um = tuple(n * s for n, s in zip(config.shape, config.voxel_size_um, strict=True))
        start = time.perf_counter()
        lineage = track(detections, config.frame_interval_h, image_shape_um=shape_um)
        metrics, correct = score(movie.truth, lineage)
        cal = calibration(lineage.edges["error_probability"].to_numpy(), ~correct)
        rows[f"snr {snr:g}"] = {**metrics, "detect_time_s": t_detect,
                                "track_time_s": time.perf_counter() - start,
                                "n_detections": len(detections), "link_ece": cal["ece"],
                                "n_truth_nodes": movie.truth.n_nodes}
        print(f"  detector SNR {snr}: edge F1 {metrics['edge_f1']:.4f}", flush=True)
    report["detector_movies"] = rows


# ---------------------------------------------------------- sim calibration
def simulated_calibration(report: dict[str, Any]) -> None:
    """Held-out simulations (seeds never used in training), CE-like noise in spacings."""
    link_p, link_wrong, div_p, div_wrong = [], [], [], []
    for seed in (101, 102, 103):
        truth = simulate_cells(SynthConfig(frames=30, shape=(30, 100, 100),
                                           voxel_size_um=(1.0, 0.5, 0.5), density=4.0,
                                           radius_mean_um=2.5, speed_um_per_h=10.0,
                                           frame_interval_h=0.05, cycle_mean_h=1.5,
                                           seed=seed))
        det = perturb_detections(truth, DetectionNoise(0.25, 0.5, 0.02, 0.02), seed)
        lineage = track(det.drop(columns="truth_node"), truth.frame_interval_h)
        _, correct = score(truth, lineage)
        link_p.append(lineage.edges["error_probability"].to_numpy())
        link_wrong.append(~correct)
        div_p.append(1 - lineage.nodes.loc[lineage.divisions, "division_probability"].to_numpy())
        div_wrong.append(~division_correct(truth, lineage, correct))
    report["calibration_simulated"] = {
        "links": calibration(np.concatenate(link_p), np.concatenate(link_wrong)),
        "divisions": calibration(np.concatenate(div_p), np.concatenate(div_wrong)),
    }


# ------------------------------------------------------------------ scaling
def scale_one(n_target: int) -> dict[str, Any]:
    """Time and memory of one size (run in a fresh process)."""
    frames = 20
    cells = max(int(n_target / frames / 1.2), 5)
    side = (cells * 1000.0 / 2.0) ** (1 / 3)
    config = SynthConfig(frames=frames, shape=(int(side), int(side * 2), int(side * 2)),
                         voxel_size_um=(1.0, 0.5, 0.5), n_cells=cells, seed=5,
                         speed_um_per_h=6.0, cycle_mean_h=8.0)
    truth = simulate_cells(config)
    det = perturb_detections(truth, NOISE, 5).drop(columns="truth_node")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    lineage = track(det, config.frame_interval_h)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n_detections": len(det), "time_s": elapsed, "peak_rss_mb": peak / 1024,
            "rss_growth_mb": (peak - base) / 1024, "n_edges": lineage.n_edges}


def scaling(report: dict[str, Any]) -> None:
    rows = []
    for n in SCALE_SIZES:
        out = subprocess.run([sys.executable, __file__, "--scale-one", str(n)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {rows[-1]['n_detections']} detections: {rows[-1]['time_s']:.2f} s, "
              f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    n = np.array([r["n_detections"] for r in rows], dtype=float)
    t = np.array([r["time_s"] for r in rows])
    slope = float(np.polyfit(np.log(n), np.log(t), 1)[0])
    report["scaling"] = {"rows": rows, "loglog_slope": slope,
                         "time_per_nlogn_us": (t / (n * np.log(n)) * 1e6).tolist()}


# ------------------------------------------------------------------ tables
def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def print_tables(report: dict[str, Any]) -> None:
    rm = report.get("real_motion")
    if rm:
        print("\n## Real motion (C. elegans, radius 3 µm)")
        print("| detections | method | edge F1 | edge P | edge R | div F1 | div F1 ±1 | "
              "LNK | TRA | wrong links / cell-frame | time s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, row in rm["results"].items():
            for method, r in row.items():
                print(f"| {name} | {method} | {r['edge_f1']:.4f} | {r['edge_precision']:.4f} | "
                      f"{r['edge_recall']:.4f} | {r['division_f1']:.3f} | "
                      f"{r['division_f1_buffer1']:.3f} | {r['LNK']:.4f} | {r['TRA']:.4f} | "
                      f"{r['wrong_links_per_cell_frame']:.4%} | {r['time_s']:.1f} |")
        print(f"baselines tuned on noisy seed 0: {rm['chosen']}")
    for key, title in (("calibration_real", "embryo"), ("calibration_simulated", "simulation")):
        cal = report.get(key)
        if not cal:
            continue
        print(f"\n## Calibration ({title})")
        print("| set | what | n | wrong | expected wrong | ECE | ECE if calibrated, median "
              "(90 %) | wrong in top 5 % |")
        print("|---|---|---|---|---|---|---|---|")
        items = ([(f"{k}", "links", v) for k, v in cal["links"].items()]
                 + [(f"{k}", "divisions", v) for k, v in cal["divisions"].items()]
                 if isinstance(cal["links"], dict) and "ece" not in cal["links"] else
                 [("held-out", "links", cal["links"]), ("held-out", "divisions",
                                                        cal["divisions"])])
        for name, what, c in items:
            print(f"| {name} | {what} | {c['n']} | {c['n_wrong']} | {c['expected_wrong']:.1f} | "
                  f"{c['ece']:.4f} | {c['ece_sampling_median']:.4f} "
                  f"({c['ece_sampling_p90']:.4f}) | {c['wrong_in_top5pct']:.3f} |")
        first = items[0][2]
        print(f"reliability ({items[0][0]}, {items[0][1]}): bin count / mean p / observed")
        for k in range(len(first["count"])):
            if first["count"][k]:
                print(f"  [{first['bin_edges'][k]:.1f}, {first['bin_edges'][k + 1]:.1f}) "
                      f"{first['count'][k]:6d}  {first['mean_error_probability'][k]:.3f}  "
                      f"{first['observed_error_rate'][k]:.3f}")
    dm = report.get("detector_movies")
    if dm:
        print("\n## Simulated movies through labloop.detect")
        if "skipped" in dm:
            print(f"skipped: {dm['skipped']}")
        else:
            for name, r in dm.items():
                print(f"| {name} | detections {r['n_detections']} (truth {r['n_truth_nodes']}) | "
                      f"edge F1 {r['edge_f1']:.4f} | div F1 ±1 {r['division_f1_buffer1']:.3f} | "
                      f"link ECE {r['link_ece']:.4f} | detect {r['detect_time_s']:.0f} s |")
    sc = report.get("scaling")
    if sc:
        print("\n## Speed and scale (whole tracker incl. error probabilities)")
        print("| detections | time s | peak RSS MB |")
        print("|---|---|---|")
        for r in sc["rows"]:
            print(f"| {r['n_detections']} | {r['time_s']:.2f} | {r['peak_rss_mb']:.0f} |")
        print(f"log-log slope of time vs n: {sc['loglog_slope']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["real", "detector", "simcal", "scaling"])
    args = parser.parse_args()
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one)))
        return
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                          "python": platform.python_version()}}
    start = time.perf_counter()
    if "real" not in args.skip and CE_GEFF.exists():
        print("real motion ...", flush=True)
        real_motion(report)
    if "simcal" not in args.skip:
        print("simulated calibration ...", flush=True)
        simulated_calibration(report)
    if "detector" not in args.skip:
        print("detector movies ...", flush=True)
        detector_movies(report)
    if "scaling" not in args.skip:
        print("scaling ...", flush=True)
        scaling(report)
    report["total_time_s"] = time.perf_counter() - start
    print_tables(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
