"""Scale-free cues for each event, one small function per cue.

A cue is a function ``cue(ctx) -> ndarray`` registered under a name in one of the
tables :data:`LINK_CUES` (one value per candidate link), :data:`NODE_CUES` (one
per detection, used by the appearance, disappearance and false-positive models)
and :data:`DIVISION_CUES` (one per detection, about its two most likely children).
Adding a cue is adding a function and a table entry; the event models
(:mod:`labloop.track.events`) name the cues they use.

Distances are divided by the local spacing ``s`` (see
:mod:`labloop.track.candidates`) so a model trained on simulated cells transfers
to tissues of other density, speed and frame interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from labloop.track.ages import CycleAges
from labloop.track.candidates import Candidates
from labloop.track.detections import Detections

#: offset (in spacings) inside ``log(u + ε)`` so an exact match is finite
LOG_DISPLACEMENT_OFFSET = 0.02
#: rank cues are capped: "fourth best or worse" is one category
MAX_RANK = 3
#: log-ratio and log-change cues are clipped to ``±`` this
MAX_LOG_RATIO = 3.0
#: logit of detection scores is clipped to ``±`` this (scores of exactly 0 or 1)
MAX_SCORE_LOGIT = 5.0
#: border distances beyond this many spacings carry no information
MAX_BORDER_SPACING = 3.0


def _segment_rank(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Rank (0 = smallest) of each value within its group."""
    order = np.lexsort((value, group))
    sorted_group = group[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(group)]))
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - first
    return rank


def _best_other(group: np.ndarray, value: np.ndarray, n_groups: int,
                empty: float) -> np.ndarray:
    """For each item, the smallest value among the *other* items of its group."""
    if len(group) == 0:
        return np.zeros(0)
    rank = _segment_rank(group, value)
    best = np.full(n_groups, np.inf)
    second = np.full(n_groups, np.inf)
    best[group[rank == 0]] = value[rank == 0]
    second[group[rank == 1]] = value[rank == 1]
    out = np.where(rank == 0, second[group], best[group])
    return np.where(np.isfinite(out), out, empty)


def _logit(p: np.ndarray, clip: float = MAX_SCORE_LOGIT) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.clip(np.log(p) - np.log1p(-p), -clip, clip)


@dataclass
class CueContext:
    """What cues are computed from: detections, candidates and, later, link probabilities.

    Parameters
    ----------
    det, cand
        Detections and candidate links.
    max_displacement_spacing
        The candidate search radius in spacings (a cap for "no candidate").
    box_um
        ``(lower, upper)`` corners (µm) of the imaged volume, for border distances.
    link_probability
        Event-model link probability of each candidate (needed by node and division
        cues; set after the link model ran).
    ages
        Cell-cycle ages in a first-pass lineage (needed by the age cues of the
        second pass's division model, :mod:`labloop.track.ages`).
    """

    det: Detections
    cand: Candidates
    max_displacement_spacing: float
    box_um: tuple[np.ndarray, np.ndarray]
    link_probability: np.ndarray | None = None
    ages: CycleAges | None = None
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def with_ages(self, ages: CycleAges) -> CueContext:
        """The same context with the ages of a first-pass lineage (cues computed so far
        are kept, except age cues)."""
        cache = {k: v for k, v in self._cache.items() if k not in AGE_CUES}
        return replace(self, ages=ages, _cache=cache)

    # ------------------------------------------------------------ helpers
    @cached_property
    def length_spacing(self) -> np.ndarray:
        """Drift-corrected link length in source spacings, ``(E,)``."""
        return (np.linalg.norm(self.cand.residual_um, axis=1)
                / self.cand.spacing_um[self.cand.source])

    @cached_property
    def group_dt(self) -> tuple[np.ndarray, np.ndarray]:
        """Group keys of each candidate's source and target, separate per frame gap."""
        n = self.det.n
        return (self.cand.source + n * (self.cand.dt - 1),
                self.cand.target + n * (self.cand.dt - 1))

    def probability(self) -> np.ndarray:
        if self.link_probability is None:
            raise RuntimeError("node cues need link probabilities: run the link model first")
        return self.link_probability

    def cue(self, name: str, table: dict[str, Cue]) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = np.asarray(table[name](self), dtype=np.float64)
        return self._cache[name]


Cue = Callable[[CueContext], np.ndarray]


# ------------------------------------------------------------------ link cues
def displacement(ctx: CueContext) -> np.ndarray:
    """Drift-corrected displacement ``u = |x_j − x_i − Δt v_i| / s_i``."""
    return ctx.length_spacing


def displacement_squared(ctx: CueContext) -> np.ndarray:
    """``u²``: with ``u`` and ``log u`` the log-likelihood ratio of a Gaussian step."""
    return ctx.length_spacing ** 2


def log_displacement(ctx: CueContext) -> np.ndarray:
    """``log(u + ε)``: the radial density factor of a 2D/3D step."""
    return np.log(ctx.length_spacing + LOG_DISPLACEMENT_OFFSET)


def raw_displacement(ctx: CueContext) -> np.ndarray:
    """Uncorrected displacement ``|x_j − x_i| / s_i`` (is the drift trustworthy?)."""
    c = ctx.cand
    return np.linalg.norm(ctx.det.pos[c.target] - ctx.det.pos[c.source], axis=1) / \
        c.spacing_um[c.source]


def source_rank(ctx: CueContext) -> np.ndarray:
    """Rank of the target among the source's candidates (0 = nearest), capped."""
    return np.minimum(_segment_rank(ctx.group_dt[0], ctx.length_spacing), MAX_RANK)


def target_rank(ctx: CueContext) -> np.ndarray:
    """Rank of the source among the target's candidates (0 = nearest), capped."""
    length = np.linalg.norm(ctx.cand.residual_um, axis=1)
    return np.minimum(_segment_rank(ctx.group_dt[1], length), MAX_RANK)


def _log_ratio_to_alternative(ctx: CueContext, group: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(ctx.cand.residual_um, axis=1)
    radius = ctx.max_displacement_spacing * ctx.cand.spacing_um[ctx.cand.source]
    other = _best_other(group, length, int(group.max()) + 1 if len(group) else 0, np.inf)
    other = np.minimum(other, radius)
    ratio = (length + LOG_DISPLACEMENT_OFFSET * radius) / (other + LOG_DISPLACEMENT_OFFSET
                                                          * radius)
    return np.clip(np.log(ratio), -MAX_LOG_RATIO, MAX_LOG_RATIO)


def source_alternative(ctx: CueContext) -> np.ndarray:
    """log(length / length of the source's best other candidate); < 0: clear winner."""
    return _log_ratio_to_alternative(ctx, ctx.group_dt[0])


def target_alternative(ctx: CueContext) -> np.ndarray:
    """log(length / length of the target's best other candidate); < 0: clear winner."""
    return _log_ratio_to_alternative(ctx, ctx.group_dt[1])


def link_score(ctx: CueContext) -> np.ndarray:
    """Logit of the lower detection score of the two ends."""
    c = ctx.cand
    return _logit(np.minimum(ctx.det.score[c.source], ctx.det.score[c.target]))


def _log_change(ctx: CueContext, name: str) -> np.ndarray:
    values = ctx.det.cues.get(name)
    if values is None:
        return np.zeros(ctx.cand.n)
    c = ctx.cand
    return np.clip(np.abs(np.log(values[c.target] / values[c.source])), 0, MAX_LOG_RATIO)


def intensity_change(ctx: CueContext) -> np.ndarray:
    """``|log(I_j / I_i)|`` where intensities are given, else 0."""
    return _log_change(ctx, "intensity")


def volume_change(ctx: CueContext) -> np.ndarray:
    """``|log(V_j / V_i)|`` where volumes are given, else 0."""
    return _log_change(ctx, "volume_um3")


def gap(ctx: CueContext) -> np.ndarray:
    """1 for a link that skips a frame (gap closing), else 0."""
    return (ctx.cand.dt > 1).astype(np.float64)


def _gap_middle(ctx: CueContext, ends: np.ndarray, step: int) -> np.ndarray:
    """For links that skip a frame: log distance (spacings) from their ``ends`` to the
    nearest detection of the skipped frame, ``step`` frames away; 0 for other links."""
    out = np.zeros(ctx.cand.n)
    skips = ctx.cand.dt > 1
    if skips.any():  # without gap closing there are none: skip the KD-tree passes
        near = _skip_distance(ctx, step)[ends[skips]]
        out[skips] = np.log(near + LOG_DISPLACEMENT_OFFSET)
    return out


def gap_middle_source(ctx: CueContext) -> np.ndarray:
    """For a link that skips a frame: log distance (spacings) from its source to the
    nearest detection of the skipped frame; 0 for other links.

    Small when the middle nucleus was detected (then the gap would replace two right
    links by one), about a neighbour distance when it was missed.
    """
    return _gap_middle(ctx, ctx.cand.source, 1)


def gap_middle_target(ctx: CueContext) -> np.ndarray:
    """Like :func:`gap_middle_source`, from the target back to the skipped frame."""
    return _gap_middle(ctx, ctx.cand.target, -1)


LINK_CUES: dict[str, Cue] = {
    "displacement": displacement,
    "displacement_squared": displacement_squared,
    "log_displacement": log_displacement,
    "raw_displacement": raw_displacement,
    "source_rank": source_rank,
    "target_rank": target_rank,
    "source_alternative": source_alternative,
    "target_alternative": target_alternative,
    "link_score": link_score,
    "intensity_change": intensity_change,
    "volume_change": volume_change,
    "gap": gap,
    "gap_middle_source": gap_middle_source,
    "gap_middle_target": gap_middle_target,
}


# ------------------------------------------------------------------ node cues
def _segment_max(group: np.ndarray, value: np.ndarray, n: int, empty: float = 0.0
                 ) -> np.ndarray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, group, value)
    return np.where(np.isfinite(out), out, empty)


def _direct(ctx: CueContext) -> np.ndarray:
    return ctx.cand.dt == 1


def best_incoming(ctx: CueContext) -> np.ndarray:
    """Largest link probability among the detection's candidate parents (0 if none)."""
    d = _direct(ctx)
    return _segment_max(ctx.cand.target[d], ctx.probability()[d], ctx.det.n)


def best_outgoing(ctx: CueContext) -> np.ndarray:
    """Largest link probability among the detection's candidate children (0 if none)."""
    d = _direct(ctx)
    return _segment_max(ctx.cand.source[d], ctx.probability()[d], ctx.det.n)


def total_incoming(ctx: CueContext) -> np.ndarray:
    """Sum of the link probabilities of the candidate parents."""
    d = _direct(ctx)
    return np.bincount(ctx.cand.target[d], ctx.probability()[d], minlength=ctx.det.n)


def total_outgoing(ctx: CueContext) -> np.ndarray:
    """Sum of the link probabilities of the candidate children."""
    d = _direct(ctx)
    return np.bincount(ctx.cand.source[d], ctx.probability()[d], minlength=ctx.det.n)


def nearest_parent(ctx: CueContext) -> np.ndarray:
    """Shortest candidate-parent link (spacings; the search radius if none)."""
    d = _direct(ctx)
    out = np.full(ctx.det.n, ctx.max_displacement_spacing)
    np.minimum.at(out, ctx.cand.target[d], ctx.length_spacing[d])
    return out


def nearest_child(ctx: CueContext) -> np.ndarray:
    """Shortest candidate-child link (spacings; the search radius if none)."""
    d = _direct(ctx)
    out = np.full(ctx.det.n, ctx.max_displacement_spacing)
    np.minimum.at(out, ctx.cand.source[d], ctx.length_spacing[d])
    return out


def border_distance(ctx: CueContext) -> np.ndarray:
    """Distance to the nearest face of the imaged volume, in spacings, capped.

    Flat axes (a 2D movie's z) are ignored.
    """
    lower, upper = ctx.box_um
    extent = upper - lower
    active = extent > 0
    if not active.any():
        return np.full(ctx.det.n, MAX_BORDER_SPACING)
    pos = ctx.det.pos[:, active]
    dist = np.minimum(pos - lower[active], upper[active] - pos).min(axis=1)
    return np.clip(dist / ctx.cand.spacing_um, 0, MAX_BORDER_SPACING)


def node_score(ctx: CueContext) -> np.ndarray:
    """Logit of the detection score."""
    return _logit(ctx.det.score)


def nearest_neighbour(ctx: CueContext) -> np.ndarray:
    """Distance to the nearest detection of the same frame, in spacings (duplicates ≪ 1)."""
    from scipy.spatial import cKDTree

    out = np.ones(ctx.det.n)
    for k in range(len(ctx.det.frames)):
        rows = np.arange(ctx.det.frame_start[k], ctx.det.frame_start[k + 1])
        if len(rows) > 1:
            dist, _ = cKDTree(ctx.det.pos[rows]).query(ctx.det.pos[rows], 2)
            out[rows] = dist[:, 1] / ctx.cand.spacing_um[rows]
    return out


def best_incoming_logit(ctx: CueContext) -> np.ndarray:
    """Logit of :func:`best_incoming` (resolves probabilities near 0 and 1)."""
    return _logit(ctx.cue("best_incoming", NODE_CUES))


def best_outgoing_logit(ctx: CueContext) -> np.ndarray:
    """Logit of :func:`best_outgoing`."""
    return _logit(ctx.cue("best_outgoing", NODE_CUES))


def _skip_distance(ctx: CueContext, step: int) -> np.ndarray:
    """Drift-corrected distance to the nearest detection ``step`` frames away, in spacings."""
    from scipy.spatial import cKDTree

    det, cap = ctx.det, ctx.max_displacement_spacing
    out = np.full(det.n, cap)
    for k, frame in enumerate(det.frames):
        rows = np.arange(det.frame_start[k], det.frame_start[k + 1])
        other = det.rows_of(int(frame) + step)
        if len(other) == 0:
            continue
        predicted = det.pos[rows] + step * ctx.cand.drift_um[rows]
        dist, _ = cKDTree(det.pos[other]).query(predicted)
        out[rows] = np.minimum(dist / ctx.cand.spacing_um[rows], cap)
    return out


def _has_frame(ctx: CueContext, step: int) -> np.ndarray:
    return np.isin(ctx.det.t + step, ctx.det.frames)


def skip_parent_ratio(ctx: CueContext) -> np.ndarray:
    """log(nearest parent at t−1 / nearest detection at t−2): ≫ 0 when the parent was missed.

    A nucleus whose true parent went undetected has only a neighbour as candidate
    parent, but its grandparent two frames back is close. 0 where t−2 is not imaged.
    """
    ratio = np.log((ctx.cue("nearest_parent", NODE_CUES) + LOG_DISPLACEMENT_OFFSET)
                   / (_skip_distance(ctx, -2) + LOG_DISPLACEMENT_OFFSET))
    return np.where(_has_frame(ctx, -2), np.clip(ratio, -MAX_LOG_RATIO, MAX_LOG_RATIO), 0.0)


def skip_child_ratio(ctx: CueContext) -> np.ndarray:
    """log(nearest child at t+1 / nearest detection at t+2): ≫ 0 when the child was missed."""
    ratio = np.log((ctx.cue("nearest_child", NODE_CUES) + LOG_DISPLACEMENT_OFFSET)
                   / (_skip_distance(ctx, 2) + LOG_DISPLACEMENT_OFFSET))
    return np.where(_has_frame(ctx, 2), np.clip(ratio, -MAX_LOG_RATIO, MAX_LOG_RATIO), 0.0)


NODE_CUES: dict[str, Cue] = {
    "skip_parent_ratio": skip_parent_ratio,
    "skip_child_ratio": skip_child_ratio,
    "best_incoming_logit": best_incoming_logit,
    "best_outgoing_logit": best_outgoing_logit,
    "best_incoming": best_incoming,
    "best_outgoing": best_outgoing,
    "total_incoming": total_incoming,
    "total_outgoing": total_outgoing,
    "nearest_parent": nearest_parent,
    "nearest_child": nearest_child,
    "border_distance": border_distance,
    "node_score": node_score,
    "nearest_neighbour": nearest_neighbour,
}


# -------------------------------------------------------------- division cues
#: divisions are considered between pairs of a nucleus's this many most probable children
DIVISION_CHILDREN = 4


def division_pairs(ctx: CueContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate divisions: ``(mother row, first link, second link)`` arrays, ``(P,)`` each.

    Every pair among each detection's :data:`DIVISION_CHILDREN` most probable
    one-frame children; links are indices into the candidates.
    """
    if "_pairs" not in ctx._cache:
        d = np.flatnonzero(ctx.cand.dt == 1)
        p = ctx.probability()[d]
        src = ctx.cand.source[d]
        rank = _segment_rank(src, -p)
        top = d[rank < DIVISION_CHILDREN]
        top_src, top_rank = ctx.cand.source[top], rank[rank < DIVISION_CHILDREN]
        slots = np.full((ctx.det.n, DIVISION_CHILDREN), -1)
        slots[top_src, top_rank] = top
        i, j = np.triu_indices(DIVISION_CHILDREN, 1)
        first, second = slots[:, i].ravel(), slots[:, j].ravel()
        node = np.repeat(np.arange(ctx.det.n), len(i))
        ok = (first >= 0) & (second >= 0)
        ctx._cache["_pairs"] = np.stack([node[ok], first[ok], second[ok]])
    node, first, second = ctx._cache["_pairs"]
    return node, first, second


def _pair_positions(ctx: CueContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    node, first, second = division_pairs(ctx)
    c = ctx.cand
    return (node, ctx.det.pos[c.target[first]], ctx.det.pos[c.target[second]],
            c.spacing_um[node])


def daughter_distance(ctx: CueContext) -> np.ndarray:
    """Distance between the two children, in the mother's spacings."""
    _, a, b, s = _pair_positions(ctx)
    return np.linalg.norm(a - b, axis=1) / s


def daughter_asymmetry(ctx: CueContext) -> np.ndarray:
    """Distance of the children's midpoint from the drift-corrected mother, in spacings."""
    node, first, second = division_pairs(ctx)
    c = ctx.cand
    mid = 0.5 * (c.residual_um[first] + c.residual_um[second])
    return np.linalg.norm(mid, axis=1) / c.spacing_um[node]


def daughter_opposition(ctx: CueContext) -> np.ndarray:
    """Cosine of the angle between the two children seen from the mother (−1: opposite)."""
    _, first, second = division_pairs(ctx)
    a, b = ctx.cand.residual_um[first], ctx.cand.residual_um[second]
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norm > 0, np.einsum("ij,ij->i", a, b) / np.maximum(norm, 1e-12), 0.0)


def weaker_child_logit(ctx: CueContext) -> np.ndarray:
    """Lower link logit of the two children."""
    _, first, second = division_pairs(ctx)
    p = ctx.probability()
    return _logit(np.minimum(p[first], p[second]))


def stronger_child_logit(ctx: CueContext) -> np.ndarray:
    """Higher link logit of the two children."""
    _, first, second = division_pairs(ctx)
    p = ctx.probability()
    return _logit(np.maximum(p[first], p[second]))


def daughters_claimed(ctx: CueContext) -> np.ndarray:
    """How strongly another nucleus claims one of the children (best other parent's probability)."""
    _, first, second = division_pairs(ctx)
    d = ctx.cand.dt == 1
    c = ctx.cand
    p = ctx.probability()
    other = np.zeros(c.n)
    other[d] = -_best_other(c.target[d], -p[d], ctx.det.n, 0.0)
    return np.maximum(other[first], other[second])


def daughters_nearest(ctx: CueContext) -> np.ndarray:
    """log(child distance / nearer child's nearest-neighbour distance): sisters ≈ 0."""
    _, first, second = division_pairs(ctx)
    nn = ctx.cue("nearest_neighbour", NODE_CUES) * ctx.cand.spacing_um
    c = ctx.cand
    a, b = c.target[first], c.target[second]
    dd = np.linalg.norm(ctx.det.pos[a] - ctx.det.pos[b], axis=1)
    ref = np.maximum(np.minimum(nn[a], nn[b]), 1e-9)
    return np.clip(np.log(dd / ref), 0, MAX_LOG_RATIO)


def daughter_volume_ratio(ctx: CueContext) -> np.ndarray:
    """``log((V_1 + V_2) / V_mother)`` where volumes are given (≈ 0 at a division)."""
    values = ctx.det.cues.get("volume_um3")
    node, first, second = division_pairs(ctx)
    if values is None:
        return np.zeros(len(node))
    c = ctx.cand
    total = values[c.target[first]] + values[c.target[second]]
    return np.clip(np.log(total / values[node]), -MAX_LOG_RATIO, MAX_LOG_RATIO)


def children_persist(ctx: CueContext) -> np.ndarray:
    """Lower best-successor logit of the two children (a spurious child has none).

    The maximum where the children are in the last frame (no evidence).
    """
    node, first, second = division_pairs(ctx)
    persist = ctx.cue("best_outgoing_logit", NODE_CUES)
    c = ctx.cand
    out = np.minimum(persist[c.target[first]], persist[c.target[second]])
    return np.where(_has_frame(ctx, 2)[node], out, MAX_SCORE_LOGIT)


def child_orphan(ctx: CueContext) -> np.ndarray:
    """Larger :func:`skip_parent_ratio` of the children (a neighbour's orphan ≫ 0)."""
    _, first, second = division_pairs(ctx)
    ratio = ctx.cue("skip_parent_ratio", NODE_CUES)
    c = ctx.cand
    return np.maximum(ratio[c.target[first]], ratio[c.target[second]])


def mother_history(ctx: CueContext) -> np.ndarray:
    """The mother's best-parent logit (the maximum in the first frame)."""
    node, _, _ = division_pairs(ctx)
    value = ctx.cue("best_incoming_logit", NODE_CUES)
    return np.where(_has_frame(ctx, -1), value, MAX_SCORE_LOGIT)[node]


def _ages(ctx: CueContext) -> CycleAges:
    if ctx.ages is None:
        raise RuntimeError("age cues need a first-pass lineage: set the context's ages")
    return ctx.ages


def mother_age_cycles(ctx: CueContext) -> np.ndarray:
    """The mother's age in the first-pass lineage, in cell cycles (capped)."""
    node, _, _ = division_pairs(ctx)
    return _ages(ctx).cycles[node]


def mother_born_by_division(ctx: CueContext) -> np.ndarray:
    """1 where the mother's first-pass track began at a division (its age is exact)."""
    node, _, _ = division_pairs(ctx)
    return _ages(ctx).born_by_division[node].astype(np.float64)


#: division cues read from a first-pass lineage
AGE_CUES = ("mother_age_cycles", "mother_born_by_division")


def pair_score(ctx: CueContext) -> np.ndarray:
    """Logit of the lowest detection score of mother and children."""
    node, first, second = division_pairs(ctx)
    c = ctx.cand
    score = np.minimum(ctx.det.score[node], np.minimum(ctx.det.score[c.target[first]],
                                                       ctx.det.score[c.target[second]]))
    return _logit(score)


def pair_intensity_change(ctx: CueContext) -> np.ndarray:
    """Mean ``|log(I_child / I_mother)|`` where intensities are given, else 0."""
    values = ctx.det.cues.get("intensity")
    node, first, second = division_pairs(ctx)
    if values is None:
        return np.zeros(len(node))
    c = ctx.cand
    change = 0.5 * (np.abs(np.log(values[c.target[first]] / values[node]))
                    + np.abs(np.log(values[c.target[second]] / values[node])))
    return np.clip(change, 0, MAX_LOG_RATIO)


DIVISION_CUES: dict[str, Cue] = {
    "daughter_distance": daughter_distance,
    "daughter_asymmetry": daughter_asymmetry,
    "daughter_opposition": daughter_opposition,
    "weaker_child_logit": weaker_child_logit,
    "stronger_child_logit": stronger_child_logit,
    "daughters_claimed": daughters_claimed,
    "daughters_nearest": daughters_nearest,
    "daughter_volume_ratio": daughter_volume_ratio,
    "children_persist": children_persist,
    "child_orphan": child_orphan,
    "mother_history": mother_history,
    "pair_score": pair_score,
    "pair_intensity_change": pair_intensity_change,
    "mother_age_cycles": mother_age_cycles,
    "mother_born_by_division": mother_born_by_division,
}

#: cue tables by event
CUE_TABLES: dict[str, dict[str, Cue]] = {
    "link": LINK_CUES,
    "appear": NODE_CUES,
    "disappear": NODE_CUES,
    "false_positive": NODE_CUES,
    "division": DIVISION_CUES,
}


def cue_matrix(ctx: CueContext, event: str, names: list[str]) -> np.ndarray:
    """Stack the named cues of an event into an ``(items, cues)`` matrix."""
    table = CUE_TABLES[event]
    columns = [ctx.cue(name, table) for name in names]
    if columns:
        return np.stack(columns, axis=1)
    n = (ctx.cand.n if event == "link" else len(division_pairs(ctx)[0]) if event == "division"
         else ctx.det.n)
    return np.zeros((n, 0))
