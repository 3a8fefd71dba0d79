"""Reproducible training of the event model on simulated truth.

Run ``python -m labloop.track.training`` to rebuild ``event_model.json`` and the
card ``EVENT_MODEL.md`` (a few minutes on two CPU cores). Steps:

1. Draw ``n_train + n_calibration`` scenarios (:func:`draw_scenario`): 2D or 3D
   cell populations from :func:`labloop.synth.simulate_cells` over a broad range
   of nucleus size, packing, speed relative to spacing, persistence, cell-cycle
   length and daughter placement, observed through :class:`DetectionNoise` with
   localisation noise (relative to the spacing), misses, spurious detections,
   informative or flat scores and optional intensity/volume cues.
2. Label every candidate link (right if its ends are the two ends of a truth link,
   or of a truth path of two links for a closed gap) and every detection (spurious;
   no true parent / child among its candidates; divides into two detected children).
3. Fit one L2-regularised logistic model per event on the training scenarios
   (:mod:`labloop.track.events`), then Platt-rescale each on the held-out
   calibration scenarios.
4. Solve every scenario's MAP lineage under these models, read each detection's
   cell-cycle age from it (:mod:`labloop.track.ages`) and fit the second pass's
   division model on the first pass's cues plus the mother's age; the age-free
   model is kept as ``division_first_pass``.
5. On the calibration scenarios, fit the cost offsets, then solve the MAP lineage
   and fit the temperature of the belief-propagation marginals by maximum
   likelihood of "chosen link is right", then an isotonic map of the tempered
   marginals of chosen links and divisions (pool-adjacent-violators; for divisions
   each scenario weighs the same).
6. Fit the perturb-and-MAP noise scale (:mod:`labloop.track.sampling`) so that
   sampled lineages lose the MAP lineage's links and divisions as often as their
   calibrated error probabilities say.

Nothing of the real C. elegans data is used. Every draw is seeded.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labloop.lineage import Lineage
from labloop.synth import SynthConfig, simulate_cells
from labloop.track.detections import check_detections
from labloop.track.events import (
    DEFAULT_MODEL_PATH,
    EVENTS,
    FIRST_PASS_DIVISION,
    MARGINAL_CALIBRATION_FIELDS,
    EventModel,
    LogisticModel,
)
from labloop.track.features import AGE_CUES, CueContext, cue_matrix, division_pairs
from labloop.track.marginals import belief_propagation
from labloop.track.noise import DetectionNoise, perturb_detections
from labloop.track.problem import build_problem, cue_context, first_pass_ages
from labloop.track.sampling import expected_lost_events, lost_events, perturbed_solutions
from labloop.track.settings import CandidateSettings, TrackSettings
from labloop.track.solve import solve_map

#: cues of each event model
EVENT_CUES: dict[str, list[str]] = {
    "link": ["displacement", "displacement_squared", "log_displacement", "raw_displacement",
             "source_rank", "target_rank", "source_alternative", "target_alternative",
             "link_score", "intensity_change", "volume_change", "gap", "gap_middle_source",
             "gap_middle_target"],
    "appear": ["skip_parent_ratio", "best_incoming_logit", "best_incoming", "total_incoming",
               "nearest_parent", "border_distance", "node_score", "nearest_neighbour"],
    "disappear": ["skip_child_ratio", "best_outgoing_logit", "best_outgoing", "total_outgoing",
                  "nearest_child", "border_distance", "node_score", "nearest_neighbour"],
    "false_positive": ["node_score", "nearest_neighbour", "best_incoming_logit",
                       "best_outgoing_logit", "total_incoming", "total_outgoing",
                       "nearest_parent", "nearest_child", "border_distance",
                       "skip_parent_ratio", "skip_child_ratio"],
    "division": ["daughter_distance", "daughter_asymmetry", "daughter_opposition",
                 "weaker_child_logit", "stronger_child_logit", "daughters_claimed",
                 "daughters_nearest", "daughter_volume_ratio", "children_persist",
                 "child_orphan", "mother_history", "pair_score", "pair_intensity_change"],
}

#: events whose logit is quadratic in the cues (their cues interact)
QUADRATIC_EVENTS = ("false_positive", "division")

#: temperatures tried for the marginals (log-spaced)
TEMPERATURE_GRID = tuple(np.round(np.geomspace(0.5, 4.0, 15), 4).tolist())


@dataclass(frozen=True)
class TrainingSettings:
    """What the event model is trained on.

    Parameters
    ----------
    n_train, n_calibration
        Simulated scenarios for fitting and for the held-out calibration.
    frames
        Frames per scenario: long enough (1–4 cell cycles) that many nuclei are
        seen from their birth, which the age-aware division model learns from.
    cells
        Nuclei in the field of view at frame 0.
    seed
        Seed of the scenario draws (each scenario's simulation and noise seeds
        derive from it).
    l2
        L2 penalty of the logistic fits.
    gap_closing_share
        Share of scenarios with gap-closing candidates (teaches the ``gap`` cue).
    daughter_offset_radii
        Range of each daughter's distance from the mother at birth, in daughter
        radii (uniform per scenario): 0.5–2 puts sisters 0.3–1.5 local spacings
        apart in their first frame, from just-separated chromatin to daughters that
        moved apart during a long frame interval.
    """

    n_train: int = 20
    n_calibration: int = 8
    frames: int = 60
    cells: int = 150
    seed: int = 20240604
    l2: float = 1e-3
    gap_closing_share: float = 0.3
    daughter_offset_radii: tuple[float, float] = (0.5, 2.0)


@dataclass(frozen=True)
class Scenario:
    """One simulated movie and its detection error model."""

    config: SynthConfig
    noise: DetectionNoise
    gap_closing: bool
    noise_seed: int


def draw_scenario(rng: np.random.Generator, settings: TrainingSettings, index: int) -> Scenario:
    """A random scenario (see the module docstring for the ranges)."""
    is_3d = rng.uniform() < 0.75
    radius = rng.uniform(2.0, 4.0)
    packing = rng.uniform(0.1, 0.42)
    size = 4.0 / 3.0 * np.pi * radius**3 if is_3d else np.pi * radius**2
    density = packing * 1000.0 / size
    spacing = (1000.0 / density) ** (1 / 3 if is_3d else 1 / 2)
    measure = settings.cells * 1000.0 / density
    side = measure ** (1 / 3 if is_3d else 1 / 2)
    voxel = (1.0, 0.5, 0.5)
    shape = (max(int(side / voxel[0]), 4) if is_3d else 1, int(side / voxel[1]),
             int(side / voxel[2]))
    interval = float(np.exp(rng.uniform(np.log(0.02), np.log(0.5))))
    step = rng.uniform(0.03, 0.35) * spacing  # µm per frame
    cycle_frames = rng.uniform(15, 60)
    config = SynthConfig(
        frames=settings.frames, shape=shape, voxel_size_um=voxel,
        frame_interval_h=interval, seed=int(rng.integers(2**31)), density=density,
        margin_um=2 * spacing, radius_mean_um=radius, radius_std_um=0.15 * radius,
        speed_um_per_h=step / interval,
        persistence_h=float(np.exp(rng.uniform(np.log(0.5), np.log(20)))) * interval,
        cycle_mean_h=cycle_frames * interval,
        daughter_offset_radii=rng.uniform(*settings.daughter_offset_radii),
        division_boost_half_life_h=2 * interval,
    )
    sigma_xy = rng.uniform(0.0, 0.1) * spacing
    noise = DetectionNoise(
        sigma_xy_um=sigma_xy, sigma_z_um=sigma_xy * rng.uniform(1.0, 2.5),
        miss_rate=rng.uniform(0.0, 0.05), spurious_rate=rng.uniform(0.0, 0.05),
        informative_scores=bool(rng.uniform() < 0.5),
        intensity_noise=0.1 if rng.uniform() < 0.5 else None,
    )
    return Scenario(config, noise, bool(rng.uniform() < settings.gap_closing_share),
                    int(rng.integers(2**31)))


@dataclass
class Labelled:
    """Cues context and labels of one scenario."""

    ctx: CueContext
    truth: Lineage
    detections: pd.DataFrame
    link: np.ndarray  # (E,) candidate is a true link
    real: np.ndarray  # (N,) detection is a real nucleus
    has_parent: np.ndarray  # (N,) a true parent is among its candidates
    has_child: np.ndarray
    divides: np.ndarray  # two true children among its candidates
    settings: TrackSettings


def candidate_truth(det_truth: np.ndarray, source: np.ndarray, target: np.ndarray,
                    dt: np.ndarray, truth: Lineage) -> np.ndarray:
    """Whether each candidate is right: the two ends of a truth link, or for Δt = 2 of a
    truth path of two links whose middle nucleus was *not* detected (a gap closed over a
    detected middle nucleus would replace two right links by one)."""
    parent = truth.parents()
    ts, tt = det_truth[source], det_truth[target]
    ok = (ts >= 0) & (tt >= 0)
    right = np.zeros(len(source), dtype=bool)
    par = parent.reindex(tt[ok]).to_numpy()
    grand = np.where(par >= 0, parent.reindex(np.maximum(par, 0)).to_numpy(), -1)
    middle_missed = ~np.isin(par, det_truth[det_truth >= 0])
    right[ok] = np.where(dt[ok] == 1, par == ts[ok], (grand == ts[ok]) & middle_missed)
    return right


def label_scenario(truth: Lineage, detections: pd.DataFrame, settings: TrackSettings,
                   ctx: CueContext | None = None) -> Labelled:
    """Candidates, cues and labels of a detections table with a ``truth_node`` column."""
    if ctx is None:
        det = check_detections(detections)
        ctx = cue_context(det, settings, None)
    det = ctx.det
    det_truth = det.table["truth_node"].to_numpy()
    c = ctx.cand
    link = candidate_truth(det_truth, c.source, c.target, c.dt, truth)
    n = det.n
    has_parent = np.bincount(c.target[link], minlength=n) > 0
    children = np.bincount(c.source[link & (c.dt == 1)], minlength=n)
    return Labelled(ctx, truth, detections, link, det_truth >= 0, has_parent,
                    np.bincount(c.source[link], minlength=n) > 0, children >= 2, settings)


def simulate_scenario(scenario: Scenario) -> Labelled:
    """Simulate a scenario, perturb its detections and label them."""
    truth = simulate_cells(scenario.config)
    detections = perturb_detections(truth, scenario.noise, scenario.noise_seed)
    settings = TrackSettings(candidates=CandidateSettings(gap_closing=scenario.gap_closing))
    return label_scenario(truth, detections, settings)


def event_rows(data: Labelled, event: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows (items) and labels used to fit one event model on one scenario."""
    det = data.ctx.det
    first, last = det.t == det.frames[0], det.t == det.frames[-1]
    if event == "link":
        return np.arange(data.ctx.cand.n), data.link
    if event == "false_positive":
        return np.arange(det.n), ~data.real
    if event == "appear":
        rows = np.flatnonzero(data.real & ~first)
        return rows, ~data.has_parent[rows]
    if event == "disappear":
        rows = np.flatnonzero(data.real & ~last)
        return rows, ~data.has_child[rows]
    if event == "division":
        node, first, second = division_pairs(data.ctx)
        rows = np.flatnonzero(data.real[node])
        return rows, (data.link[first] & data.link[second])[rows]
    raise ValueError(event)


def _stack(datasets: list[Labelled], model: LogisticModel) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for data in datasets:
        rows, labels = event_rows(data, model.event)
        xs.append(cue_matrix(data.ctx, model.event, model.cues)[rows])
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _prune(datasets: list[Labelled], model: EventModel) -> list[Labelled]:
    """Each scenario restricted to the links the tracker keeps, relabelled."""
    out = []
    for data in datasets:
        kept, _ = event_probabilities_links_only(data.ctx, model, data.settings)
        out.append(label_scenario(data.truth, data.detections, data.settings, kept))
    return out


def event_probabilities_links_only(ctx: CueContext, model: EventModel,
                                   settings: TrackSettings) -> tuple[CueContext, np.ndarray]:
    """The context pruned to kept links, with link probabilities set (as the tracker does)."""
    p_link = model.link_probability(ctx)
    keep = p_link >= settings.candidates.min_link_probability
    kept = CueContext(det=ctx.det, cand=ctx.cand.take(keep),
                      max_displacement_spacing=ctx.max_displacement_spacing,
                      box_um=ctx.box_um, link_probability=p_link[keep])
    return kept, p_link[keep]


def fit_event_models(train: list[Labelled], calibration: list[Labelled], l2: float
                     ) -> tuple[dict[str, LogisticModel], dict[str, Any]]:
    """Fit and Platt-calibrate the five event models; report held-out log loss and AUC."""
    models: dict[str, LogisticModel] = {}
    report: dict[str, Any] = {}
    for event in EVENTS:
        model = LogisticModel(event, list(EVENT_CUES[event]),
                              interactions=event in QUADRATIC_EVENTS)
        x, y = _stack(train, model)
        model.fit(x, y, l2)
        xc, yc = _stack(calibration, model)
        model.calibrate(xc, yc)
        p = model.probability(xc)
        report[event] = {"n_train": len(y), "positives_train": int(y.sum()),
                         "n_heldout": len(yc), "positives_heldout": int(yc.sum()),
                         "heldout_log_loss": _log_loss(p, yc), "heldout_auc": _auc(p, yc)}
        models[event] = model
        if event == "link":
            partial = EventModel(models={"link": model})
            train, calibration = _prune(train, partial), _prune(calibration, partial)
    first_pass = EventModel(models=dict(models))
    train, calibration = _with_ages(train, first_pass), _with_ages(calibration, first_pass)
    model = LogisticModel("division", EVENT_CUES["division"] + list(AGE_CUES),
                          interactions=True)
    x, y = _stack(train, model)
    model.fit(x, y, l2)
    xc, yc = _stack(calibration, model)
    model.calibrate(xc, yc)
    p = model.probability(xc)
    report[FIRST_PASS_DIVISION] = report["division"]
    report["division"] = {**report[FIRST_PASS_DIVISION], "heldout_log_loss": _log_loss(p, yc),
                          "heldout_auc": _auc(p, yc)}
    models[FIRST_PASS_DIVISION], models["division"] = models["division"], model
    return models, report


def _with_ages(datasets: list[Labelled], model: EventModel) -> list[Labelled]:
    """Each scenario with the cell-cycle ages of its MAP lineage under a one-pass model."""
    out = []
    for data in datasets:
        problem = build_problem(data.ctx.det, data.settings, model)
        ages = first_pass_ages(problem.det, problem.cand, problem.costs, data.settings)
        out.append(replace(data, ctx=data.ctx.with_ages(ages)))
    return out


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _auc(p: np.ndarray, y: np.ndarray) -> float | None:
    y = y.astype(bool)
    if y.all() or not y.any():
        return None
    ranks = pd.Series(p).rank().to_numpy()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def isotonic_map(p: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                 n_knots: int = 200) -> dict[str, list[float]]:
    """Pool-adjacent-violators fit of ``y`` on ``p``, as piecewise-linear knots.

    Knots are placed at the (weighted) centres of the blocks; the map is anchored
    at (0, ≥0) and (1, ≤1). ``weights`` (default 1 each) weigh the items.
    """
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order].astype(np.float64)
    ws = np.ones(len(ys)) if weights is None else np.asarray(weights, np.float64)[order]
    sums, totals, sizes = [], [], []  # per block: weighted sum of y, weight, items
    for value, weight in zip(ys, ws, strict=True):
        sums.append(value * weight)
        totals.append(weight)
        sizes.append(1)
        while len(sums) > 1 and sums[-2] / totals[-2] > sums[-1] / totals[-1]:
            sums.append(sums.pop() + sums.pop())
            totals.append(totals.pop() + totals.pop())
            sizes.append(sizes.pop() + sizes.pop())
    yv = np.array(sums) / np.array(totals)
    ends = np.cumsum(sizes, dtype=np.int64)
    starts = ends - np.asarray(sizes, dtype=np.int64)
    x = np.array([np.average(ps[a:b], weights=ws[a:b])
                  for a, b in zip(starts, ends, strict=True)])
    if len(x) > n_knots:
        pick = np.unique(np.linspace(0, len(x) - 1, n_knots).astype(int))
        x, yv = x[pick], yv[pick]
    x = np.r_[0.0, x, 1.0]
    yv = np.r_[min(yv[0], x[1]) if len(yv) else 0.0, yv, max(yv[-1], x[-2]) if len(yv) else 1.0]
    return {"x": x.tolist(), "y": yv.tolist()}


#: cost offsets tried, per node event, by coordinate search (two passes)
OFFSET_GRID: dict[str, tuple[float, ...]] = {
    "division": (-2.0, -1.0, 0.0, 1.0),
    "appear": (-1.0, 0.0, 1.0),
    "disappear": (-1.0, 0.0, 1.0),
    "false_positive": (-1.0, 0.0, 1.0),
}
#: wall-clock limit (s) of one trial solve (a trial may leave the LP fractional)
OFFSET_TRIAL_TIME_LIMIT_S = 5.0


def _map_quality(problems: list[tuple], offsets: dict[str, float]) -> float:
    """Edge F1 + division F1 of the MAP lineages of held-out scenarios under cost offsets."""
    from labloop.track.costs import EnergyCosts

    right = chosen = true_links = 0
    div_right = div_called = div_true = 0
    for problem, link_right, n_true_links, n_true_div in problems:
        c = problem.costs
        first = problem.det.t == problem.det.frames[0]
        last = problem.det.t == problem.det.frames[-1]
        costs = EnergyCosts(c.link, c.appear + offsets["appear"] * ~first,
                            c.disappear + offsets["disappear"] * ~last,
                            c.false_positive + offsets["false_positive"], c.division_nodes,
                            c.division_links, c.division + offsets["division"])
        sol = solve_map(problem.cand.source, problem.cand.target, problem.det.n, costs,
                        replace(problem.settings.solver, time_limit_s=OFFSET_TRIAL_TIME_LIMIT_S))
        right += int(link_right[sol.link].sum())
        chosen += int(sol.link.sum())
        true_links += n_true_links
        pairs = c.division_links[sol.division]
        div_right += int((link_right[pairs[:, 0]] & link_right[pairs[:, 1]]).sum())
        div_called += int(sol.division.sum())
        div_true += n_true_div
    edge_f1 = 2 * right / max(chosen + true_links, 1)
    div_f1 = 2 * div_right / max(div_called + div_true, 1)
    return edge_f1 + div_f1


def fit_cost_offsets(model: EventModel, calibration: list[Labelled]) -> dict[str, Any]:
    """Coordinate search of the cost offsets on held-out scenarios (in place)."""
    problems = []
    for data in calibration:
        model.cost_offsets = {}
        problem = build_problem(data.ctx.det, data.settings, model)
        det_truth = problem.det.table["truth_node"].to_numpy()
        link_right = candidate_truth(det_truth, problem.cand.source, problem.cand.target,
                                     problem.cand.dt, data.truth)
        detected = set(det_truth[det_truth >= 0].tolist())
        edges = data.truth.edges
        both = edges["source"].isin(detected) & edges["target"].isin(detected)
        n_true_links = int(both.sum())
        children = edges[both].groupby("source").size()
        problems.append((problem, link_right, n_true_links, int((children >= 2).sum())))
    offsets = {k: 0.0 for k in OFFSET_GRID}
    history = []
    best = _map_quality(problems, offsets)
    for _ in range(1):
        for event, grid in OFFSET_GRID.items():
            for value in grid:
                trial = {**offsets, event: value}
                quality = _map_quality(problems, trial)
                history.append({**trial, "quality": quality})
                if quality > best + 1e-9:
                    best, offsets = quality, trial
    model.cost_offsets = offsets
    return {"offsets": offsets, "edge_f1_plus_division_f1": best, "n_trials": len(history)}


#: chosen links that skip a frame needed for their own isotonic map
MIN_GAP_LINKS = 200


def fit_marginal_calibration(model: EventModel, calibration: list[Labelled]
                             ) -> dict[str, Any]:
    """Fit the BP temperature and isotonic maps on held-out scenarios (in place)."""
    runs = []
    for data in calibration:
        settings = data.settings
        problem = build_problem(data.ctx.det, settings, model)
        solution = solve_map(problem.cand.source, problem.cand.target, problem.det.n,
                             problem.costs, settings.solver)
        det_truth = problem.det.table["truth_node"].to_numpy()
        right = candidate_truth(det_truth, problem.cand.source, problem.cand.target,
                                problem.cand.dt, data.truth)
        chosen = np.flatnonzero(solution.link)
        div_called = np.flatnonzero(solution.division)
        links = problem.costs.division_links[div_called]
        div_right = right[links[:, 0]] & right[links[:, 1]]
        runs.append((problem, chosen, right[chosen], div_called, div_right))
    nll = []
    for temperature in TEMPERATURE_GRID:
        total = 0.0
        for problem, chosen, right, _, _ in runs:
            m = belief_propagation(problem.cand.source, problem.cand.target, problem.det.n,
                                   problem.costs, temperature, problem.settings.marginals)
            total += _log_loss(m.link[chosen], right) * len(chosen)
        nll.append(total)
    best = TEMPERATURE_GRID[int(np.argmin(nll))]
    model.temperature = float(best)
    link_p, link_y, div_p, div_y, div_w, gap_p, gap_y = [], [], [], [], [], [], []
    for problem, chosen, right, div_nodes, div_right in runs:
        m = belief_propagation(problem.cand.source, problem.cand.target, problem.det.n,
                               problem.costs, best, problem.settings.marginals)
        link_p.append(m.link[chosen])
        link_y.append(right)
        div_p.append(m.division_pair[div_nodes])
        div_y.append(div_right)
        div_w.append(np.full(len(div_right), 1.0 / max(len(div_right), 1)))
        gap = problem.cand.dt[chosen] > 1
        gap_p.append(m.link[chosen][gap])
        gap_y.append(right[gap])
    lp, ly = np.concatenate(link_p), np.concatenate(link_y)
    dp, dy = np.concatenate(div_p), np.concatenate(div_y)
    gp, gy = np.concatenate(gap_p), np.concatenate(gap_y)
    model.link_recalibration = isotonic_map(lp, ly)
    # each scenario's divisions weigh 1 in all: a movie is what a user tracks, and the
    # scenarios' division error rates differ widely (a long one with many wrong calls
    # would otherwise set the map for all)
    model.division_recalibration = (isotonic_map(dp, dy, np.concatenate(div_w))
                                    if len(dp) >= 20 else {})
    model.gap_link_recalibration = isotonic_map(gp, gy) if len(gp) >= MIN_GAP_LINKS else {}
    return {"temperature_grid": list(TEMPERATURE_GRID), "nll": nll, "temperature": best,
            "chosen_links": len(ly), "wrong_chosen_links": int((~ly).sum()),
            "chosen_gap_links": len(gy), "wrong_chosen_gap_links": int((~gy).sum()),
            "mean_gap_link_marginal": float(gp.mean()) if len(gp) else None,
            "called_divisions": len(dy), "wrong_called_divisions": int((~dy).sum()),
            "wrong_division_share_per_scenario": [float(np.mean(~y)) if len(y) else None
                                                  for y in div_y],
            "mean_link_error_probability_before_isotonic": float(1 - lp.mean())}


#: bracket (relative to T) of the perturb-and-MAP noise scale, bisected in log scale
SAMPLING_SCALE_BOUNDS = (0.2, 1.5)
SAMPLING_SCALE_STEPS = 8
#: perturbed solves per calibration scenario and trial scale
SAMPLING_SCALE_DRAWS = 2


def fit_sampling_scale(model: EventModel, calibration: list[Labelled]) -> dict[str, Any]:
    """Fit the perturb-and-MAP noise scale on held-out scenarios (in place).

    The scale where sampled lineages lose the MAP lineage's links and divisions as
    often as the sums of their calibrated error probabilities say (the geometric
    mean of the two ratios lost / expected is 1), by bisection in log scale; every
    trial scale uses the same noise draws, so the lost counts grow with the scale.
    """
    runs, expected_links, expected_divisions = [], 0.0, 0.0
    for data in calibration:
        problem = build_problem(data.ctx.det, data.settings, model)
        solution = solve_map(problem.cand.source, problem.cand.target, problem.det.n,
                             problem.costs, problem.settings.solver)
        marginals = belief_propagation(problem.cand.source, problem.cand.target,
                                       problem.det.n, problem.costs, problem.temperature,
                                       problem.settings.marginals)
        links, divisions = expected_lost_events(problem, solution, marginals)
        expected_links, expected_divisions = expected_links + links, expected_divisions + divisions
        runs.append((problem, solution))

    def lost(scale: float) -> tuple[float, float]:
        links = divisions = 0.0
        for k, (problem, solution) in enumerate(runs):
            samples = perturbed_solutions(problem, SAMPLING_SCALE_DRAWS, k, noise_scale=scale)
            n_links, n_divisions = lost_events(solution, samples)
            links, divisions = links + n_links, divisions + n_divisions
        return links, divisions

    def log_excess(scale: float) -> float:
        links, divisions = lost(scale)
        return 0.5 * (np.log((links + 0.5) / (expected_links + 0.5))
                      + np.log((divisions + 0.5) / (expected_divisions + 0.5)))

    low, high = np.log(SAMPLING_SCALE_BOUNDS[0]), np.log(SAMPLING_SCALE_BOUNDS[1])
    for _ in range(SAMPLING_SCALE_STEPS):
        middle = 0.5 * (low + high)
        if log_excess(float(np.exp(middle))) > 0:
            high = middle
        else:
            low = middle
    scale = round(float(np.exp(0.5 * (low + high))), 3)
    model.sampling_noise_scale = scale
    links, divisions = lost(scale)
    at_one = lost(1.0)
    return {"noise_scale": scale, "expected_lost_links": round(expected_links, 1),
            "expected_lost_divisions": round(expected_divisions, 1),
            "lost_links": links, "lost_divisions": divisions,
            "lost_links_at_scale_1": at_one[0], "lost_divisions_at_scale_1": at_one[1],
            "draws_per_scenario": SAMPLING_SCALE_DRAWS}


def fit_gap_closing_calibration(model: EventModel, calibration: list[Labelled]
                                ) -> dict[str, Any]:
    """Marginal calibration and sampling scale for tracking with gap closing (in place).

    The held-out scenarios are tracked again with candidates t→t+2 in every one of
    them; the temperature, isotonic maps and noise scale fitted there are stored as
    ``model.gap_closing_calibration`` (see :meth:`EventModel.for_candidates`).
    """
    bridged = [replace(data, settings=replace(data.settings, candidates=replace(
        data.settings.candidates, gap_closing=True))) for data in calibration]
    fitted = replace(model, gap_closing_calibration={})
    marginal_report = fit_marginal_calibration(fitted, bridged)
    sampling_report = fit_sampling_scale(fitted, bridged)
    model.gap_closing_calibration = {name: getattr(fitted, name)
                                     for name in MARGINAL_CALIBRATION_FIELDS}
    return {"marginals": marginal_report, "sampling": sampling_report}


def train_event_model(settings: TrainingSettings | None = None) -> tuple[EventModel, dict]:
    """Simulate, fit and calibrate the event model; return it and a training report."""
    settings = TrainingSettings() if settings is None else settings
    rng = np.random.default_rng(settings.seed)
    start = time.perf_counter()
    scenarios = [draw_scenario(rng, settings, k)
                 for k in range(settings.n_train + settings.n_calibration)]
    data = [simulate_scenario(s) for s in scenarios]
    train, calibration = data[:settings.n_train], data[settings.n_train:]
    models, report = fit_event_models(train, calibration, settings.l2)
    model = EventModel(models=models)
    offset_report = fit_cost_offsets(model, calibration)
    marginal_report = fit_marginal_calibration(model, calibration)
    sampling_report = fit_sampling_scale(model, calibration)
    gap_report = fit_gap_closing_calibration(model, calibration)
    model.metadata = {
        "name": "labloop-track-events-v4",
        "command": "python -m labloop.track.training",
        "training_settings": asdict(settings),
        "scenarios": [{"config": {k: v for k, v in asdict(s.config).items()
                                  if k in ("frames", "shape", "density", "radius_mean_um",
                                           "speed_um_per_h", "frame_interval_h",
                                           "persistence_h", "cycle_mean_h",
                                           "daughter_offset_radii", "seed")},
                       "noise": asdict(s.noise), "gap_closing": s.gap_closing,
                       "noise_seed": s.noise_seed} for s in scenarios],
        "n_detections": {"train": int(sum(d.ctx.det.n for d in train)),
                         "calibration": int(sum(d.ctx.det.n for d in calibration))},
        "event_models": report,
        "cost_offsets": offset_report,
        "marginals": marginal_report,
        "sampling": sampling_report,
        "gap_closing": gap_report,
        "training_time_s": round(time.perf_counter() - start, 1),
    }
    return model, model.metadata


def _share_range(shares: list[float | None]) -> str:
    known = [x for x in shares if x is not None]
    return f"{min(known):.0%}–{max(known):.0%}" if known else "none called"


def write_card(model: EventModel, path: Path) -> None:
    """Write the model card (Markdown) from the training metadata."""
    meta = model.metadata
    lines = [
        "# labloop.track event model card", "",
        f"Name: `{meta['name']}`. Rebuild with `{meta['command']}` (deterministic: "
        f"seed {meta['training_settings']['seed']}). Parameters: `event_model.json`.", "",
        "## What it is",
        "Five calibrated logistic models (link, appearance, disappearance, false positive,"
        " division) over scale-free cues (`labloop/track/features.py`), a temperature"
        " for the belief-propagation marginals and isotonic maps of the tempered"
        " marginals of chosen links and divisions.",
        "Divisions are scored in two passes: `division_first_pass` (no ages) gives the"
        " first most probable lineage, whose tracks give every nucleus its age in cell"
        " cycles (`labloop/track/ages.py`); `division` adds the mother's age to the same"
        " cues, so a nucleus that has just divided is rarely taken for a mother.", "",
        "## Training data",
        f"{meta['training_settings']['n_train']} simulated scenarios for fitting and "
        f"{meta['training_settings']['n_calibration']} held-out scenarios for the Platt, "
        "temperature and isotonic calibration, drawn by `draw_scenario` from "
        "`labloop.synth.simulate_cells` (2D/3D, nucleus radius 2–4 µm, packing 0.10–0.42, "
        "step 0.03–0.35 spacings per frame, cell cycle 15–60 frames, daughters born "
        f"{meta['training_settings']['daughter_offset_radii'][0]}–"
        f"{meta['training_settings']['daughter_offset_radii'][1]} daughter radii from "
        "the mother) and perturbed by "
        "`DetectionNoise` (localisation σ 0–0.1 spacings in xy, 1–2.5× in z; 0–5 % missed;"
        " 0–5 % spurious, half beside a real nucleus; flat or informative scores; optional "
        "intensity/volume).",
        f"Detections: {meta['n_detections']['train']} (fit), "
        f"{meta['n_detections']['calibration']} (calibration). "
        "No real data (in particular not the C. elegans embryo) was used.", "",
        "Labels: a candidate link is right when its ends are the two ends of a truth "
        "link; a link that skips a frame (gap closing, in "
        f"{meta['training_settings']['gap_closing_share']:.0%} of the scenarios) only when "
        "its ends are two links apart in the truth *and the nucleus in between was not "
        "detected*. The cues `gap_middle_source` / `gap_middle_target` (distance to the "
        "nearest detection of the skipped frame) let the link model tell the two apart.",
        "",
        "## Held-out metrics of the event models", "",
        "| event | n held-out | positives | log loss | AUC |", "|---|---|---|---|---|",
    ]
    for event, r in meta["event_models"].items():
        auc = "–" if r["heldout_auc"] is None else f"{r['heldout_auc']:.4f}"
        lines.append(f"| {event} | {r['n_heldout']} | {r['positives_heldout']} | "
                     f"{r['heldout_log_loss']:.4f} | {auc} |")
    mr = meta["marginals"]
    gm, gs = meta["gap_closing"]["marginals"], meta["gap_closing"]["sampling"]
    lines += [
        "", "## Marginals",
        f"Temperature T = {mr['temperature']} (maximum likelihood over "
        f"{mr['chosen_links']} chosen links of the calibration scenarios, "
        f"{mr['wrong_chosen_links']} wrong); {mr['called_divisions']} called divisions "
        f"({mr['wrong_called_divisions']} wrong; in the division map each scenario "
        "weighs the same, since their shares of wrong divisions differ widely: "
        f"{_share_range(mr['wrong_division_share_per_scenario'])}).",
        f"Cost offsets (coordinate search for the best edge F1 + division F1 of the MAP "
        f"lineages of the calibration scenarios): {meta['cost_offsets']['offsets']}.", "",
        "## Sampling",
        f"Perturb-and-MAP noise scale s = {meta['sampling']['noise_scale']} × T: sampled "
        "lineages of the calibration scenarios lose (summed over the scenarios, mean per "
        f"draw) {meta['sampling']['lost_links']:.1f} "
        f"of the MAP lineages' links and {meta['sampling']['lost_divisions']:.1f} of their "
        f"divisions, where the calibrated error probabilities expect "
        f"{meta['sampling']['expected_lost_links']} and "
        f"{meta['sampling']['expected_lost_divisions']} (with s = 1: "
        f"{meta['sampling']['lost_links_at_scale_1']:.1f} and "
        f"{meta['sampling']['lost_divisions_at_scale_1']:.1f}).", "",
        "## Gap closing",
        "Tracking with links t→t+2 (the default) uses its own temperature T = "
        f"{gm['temperature']}, isotonic maps and noise scale "
        f"s = {gs['noise_scale']} × T, fitted on the same calibration scenarios tracked "
        f"with gap closing: {gm['chosen_gap_links']} chosen links over a missed frame "
        f"({gm['wrong_chosen_gap_links']} wrong, mean marginal "
        f"{gm['mean_gap_link_marginal'] or 0:.3f} before their own isotonic map) among "
        f"{gm['chosen_links']} chosen links; samples lose {gs['lost_links']:.1f} links "
        f"and {gs['lost_divisions']:.1f} divisions where the error probabilities expect "
        f"{gs['expected_lost_links']} and {gs['expected_lost_divisions']}.", "",
        "## Limits",
        "- Cues are relative to the local spacing; movies whose motion per frame exceeds"
        " about a third of the spacing, or whose detections have other error patterns,"
        " are outside the training range: check calibration on annotated data.",
        "- Probabilities treat the candidate graph by loopy belief propagation (Bethe"
        " approximation); the fitted temperature and isotonic map absorb its bias on"
        " the simulated range.",
        "- Division probabilities are calibrated on average over movies, not within each:"
        " the calibration scenarios' shares of wrong divisions range "
        f"{_share_range(mr['wrong_division_share_per_scenario'])}, more than their"
        " marginals say, so one movie's division probabilities can be too high or too"
        " low; check them on a few annotated divisions.",
        f"- Training took {meta['training_time_s']} s.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: train and write ``event_model.json`` and ``EVENT_MODEL.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--n-train", type=int, default=TrainingSettings.n_train)
    parser.add_argument("--n-calibration", type=int, default=TrainingSettings.n_calibration)
    parser.add_argument("--seed", type=int, default=TrainingSettings.seed)
    args = parser.parse_args(argv)
    settings = replace(TrainingSettings(), n_train=args.n_train,
                       n_calibration=args.n_calibration, seed=args.seed)
    model, meta = train_event_model(settings)
    model.to_json(args.out)
    write_card(model, args.out.with_name("EVENT_MODEL.md"))
    print(f"wrote {args.out} (T = {model.temperature}) in {meta['training_time_s']} s")
    for event, r in meta["event_models"].items():
        print(f"  {event:15s} held-out log loss {r['heldout_log_loss']:.4f}  "
              f"AUC {r['heldout_auc']}")


if __name__ == "__main__":
    main()
