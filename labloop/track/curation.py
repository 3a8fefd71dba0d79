"""Curation: a user's corrections of a lineage, pinned, with error probabilities recomputed.

A :class:`Correction` is one of

- ``accept``: the link ``source → target`` is right. It is *pinned*: forced into
  the lineage (replacing any other parent of ``target``) with probability 1;
- ``cut``: the link is wrong. It leaves the lineage and the candidate graph
  (probability 0); its cells become an end and a start of tracks;
- ``relink``: the link is wrong and ``source`` continues as ``new_target``: a cut
  of ``source → target`` then an accept of ``source → new_target``.

Corrections are replayed in order (a later one wins), so replaying the whole
history on a lineage that already holds part of it gives the same lineage. The
structure of the lineage stays the user's: nothing but the corrected links
changes, no global re-solve moves other links. The probabilities are recomputed
with the tracker's own energy (:mod:`labloop.track.problem`): the candidate graph
is rebuilt from the detections (with the corrected links added where the
candidate search did not propose them), cut links are removed, pinned links get
the cost ``−pin_cost`` (a division whose two children are pinned too), and belief
propagation (:mod:`labloop.track.marginals`) gives the marginals, so the links
competing with an accepted one lose probability and those that a cut frees gain
it. Only the *neighbourhood* of the corrections — detections within
``neighbourhood_hops`` candidate links of a corrected cell — takes the new values;
elsewhere the lineage keeps its probabilities, so a correction never silently
changes a far-away link.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labloop.errors import InputError
from labloop.io.store import CURATION
from labloop.lineage import Lineage
from labloop.track.ages import lineage_ages
from labloop.track.api import marginals_of
from labloop.track.candidates import Candidates
from labloop.track.costs import EnergyCosts, event_costs
from labloop.track.detections import Detections, check_detections
from labloop.track.events import load_event_model
from labloop.track.features import CueContext, division_pairs
from labloop.track.gaps import collapse_gaps, fill_gaps, gap_ends
from labloop.track.output import to_lineage
from labloop.track.problem import (
    TrackingProblem,
    cue_context,
    event_probabilities,
    rescore_divisions,
)
from labloop.track.settings import (
    CandidateSettings,
    MarginalSettings,
    SolverSettings,
    TrackSettings,
)
from labloop.track.solve import Solution

#: the kinds of correction
ACTIONS = ("accept", "cut", "relink")
#: ``new_target`` of corrections that have none
NO_NODE = -1
#: frames a link may span: the next frame, or one skipped (a closed gap)
LINK_FRAMES = (1, 2)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Correction:
    """One correction of a link by a user.

    Parameters
    ----------
    action
        ``"accept"``, ``"cut"`` or ``"relink"`` (see the module docstring).
    source, target
        Node ids of the link judged.
    new_target
        For ``relink``: the node ``source`` links to instead; :data:`NO_NODE` otherwise.
    made_at
        When the correction was made (ISO 8601, UTC); now by default.

    Examples
    --------
    >>> Correction("relink", 4, 9, new_target=11).action
    'relink'
    """

    action: str
    source: int
    target: int
    new_target: int = NO_NODE
    made_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InputError(f"unknown correction {self.action!r}; use one of "
                             f"{', '.join(ACTIONS)}")
        if self.action == "relink" and self.new_target in (NO_NODE, self.target):
            raise InputError(f"relinking node {self.source} needs a new target other than "
                             f"{self.target}")


@dataclass(frozen=True)
class CurationSettings:
    """How corrections are pinned and how far they change probabilities.

    Parameters
    ----------
    pin_cost
        Cost (−log odds, in units of ``kT`` at ``T = 1``) given to a pinned link:
        large enough that its marginal is 1 to machine precision. Default 30.
    neighbourhood_hops
        Detections within this many candidate links of a corrected cell get new
        probabilities (belief propagation widens a link's context by one detection
        per sweep, so the influence of a correction fades within a few hops);
        ``None`` recomputes the whole lineage. Default 3.
    doubt_threshold
        A link is *doubtful* when its error probability is at least this. Default 0.1.
    """

    pin_cost: float = 30.0
    neighbourhood_hops: int | None = 3
    doubt_threshold: float = 0.1

    def __post_init__(self) -> None:
        if not self.pin_cost > 0:
            raise InputError(f"pin_cost must be > 0, got {self.pin_cost}")
        if self.neighbourhood_hops is not None and self.neighbourhood_hops < 0:
            raise InputError("neighbourhood_hops must be ≥ 0 (or None for all)")
        if not 0 <= self.doubt_threshold <= 1:
            raise InputError("doubt_threshold must lie in [0, 1]")


# ------------------------------------------------------------------ tables
def corrections_table(corrections: Sequence[Correction]) -> pd.DataFrame:
    """Corrections as a table (``action, source, target, new_target, made_at``)."""
    return pd.DataFrame({
        "action": pd.Series([c.action for c in corrections], dtype=object),
        "source": np.array([c.source for c in corrections], dtype=np.int64),
        "target": np.array([c.target for c in corrections], dtype=np.int64),
        "new_target": np.array([c.new_target for c in corrections], dtype=np.int64),
        "made_at": pd.Series([c.made_at for c in corrections], dtype=object),
    })


def corrections_from_table(table: pd.DataFrame) -> list[Correction]:
    """The corrections of a table written by :func:`corrections_table`."""
    return [Correction(str(row.action), int(row.source), int(row.target), int(row.new_target),
                       str(row.made_at)) for row in table.itertuples(index=False)]


def on_detections(corrections: Sequence[Correction], lineage: Lineage) -> list[Correction]:
    """The corrections with interpolated nuclei replaced by the detections of their gap.

    A link into a nucleus that the tracker put on a closed gap
    (:mod:`labloop.track.gaps`) stands for the gap's link: its source becomes the
    gap's detected source, its target (and new target) the gap's detected target.
    Corrections are stored in this form, so they replay on any lineage of the
    same detections.
    """
    ends = gap_ends(lineage)
    if not ends:
        return list(corrections)
    return [replace(c, source=ends.get(c.source, (c.source, c.source))[0],
                    target=ends.get(c.target, (c.target, c.target))[1],
                    new_target=ends.get(c.new_target, (c.new_target, c.new_target))[1])
            for c in corrections]


# ------------------------------------------------------------------ replay
@dataclass
class _Links:
    """The lineage's links as parent and children maps, edited by replaying corrections."""

    parent: dict[int, int]
    frame: pd.Series
    children: dict[int, set[int]] = field(default_factory=dict)
    pinned: set[tuple[int, int]] = field(default_factory=set)
    cut: set[tuple[int, int]] = field(default_factory=set)
    touched: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        for target, source in self.parent.items():
            self.children.setdefault(source, set()).add(target)

    def _check(self, source: int, target: int) -> None:
        for node in (source, target):
            if node not in self.frame.index:
                raise InputError(f"node {node} is not among the detections")
        gap = int(self.frame[target] - self.frame[source])
        if gap not in LINK_FRAMES:
            raise InputError(f"cannot link node {source} (frame {self.frame[source]}) to node "
                             f"{target} (frame {self.frame[target]}): a link goes to the next "
                             f"frame or skips one")

    def _unlink(self, target: int) -> None:
        source = self.parent.pop(target)
        self.children[source].discard(target)
        self.pinned.discard((source, target))
        self.touched.add(source)

    def accept(self, source: int, target: int) -> None:
        self._check(source, target)
        if self.parent.get(target, source) != source:
            self._unlink(target)
        if len(self.children.get(source, set()) - {target}) >= 2:
            raise InputError(f"node {source} would have three children; cut one of its links "
                             f"first")
        self.parent[target] = source
        self.children.setdefault(source, set()).add(target)
        self.pinned.add((source, target))
        self.cut.discard((source, target))
        self.touched.update((source, target))

    def remove(self, source: int, target: int) -> None:
        self._check(source, target)
        if self.parent.get(target) == source:
            self._unlink(target)
        self.cut.add((source, target))
        self.touched.update((source, target))

    def apply(self, correction: Correction) -> None:
        if correction.action == "accept":
            self.accept(correction.source, correction.target)
        elif correction.action == "cut":
            self.remove(correction.source, correction.target)
        else:
            self.remove(correction.source, correction.target)
            self.accept(correction.source, correction.new_target)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(source ids, target ids) of the edited links."""
        targets = np.fromiter(self.parent.keys(), dtype=np.int64, count=len(self.parent))
        sources = np.fromiter(self.parent.values(), dtype=np.int64, count=len(self.parent))
        return sources, targets


# --------------------------------------------------------------- the energy
def _keys(source: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    return source.astype(np.int64) * n + target.astype(np.int64)


def _with_links(cand: Candidates, det: Detections, source: np.ndarray, target: np.ndarray
                ) -> Candidates:
    """The candidates plus the links ``source → target`` (rows) they lack."""
    missing = ~np.isin(_keys(source, target, det.n), _keys(cand.source, cand.target, det.n))
    s, t = source[missing], target[missing]
    dt = det.t[t] - det.t[s]
    residual = det.pos[t] - det.pos[s] - dt[:, None] * cand.drift_um[s]
    return Candidates(np.concatenate([cand.source, s]), np.concatenate([cand.target, t]),
                      np.concatenate([cand.dt, dt]),
                      np.concatenate([cand.residual_um, residual]),
                      cand.spacing_um, cand.drift_um)


def _curated_problem(det: Detections, links: tuple[np.ndarray, np.ndarray],
                     cut: tuple[np.ndarray, np.ndarray], settings: TrackSettings,
                     image_shape_um: tuple[float, float, float] | None,
                     nodes: np.ndarray) -> TrackingProblem:
    """The tracker's problem with the lineage's links as candidates and cut links removed
    (``nodes``: rows of the lineage's nuclei, whose ages the lineage gives)."""
    model = load_event_model(settings.model_path).for_candidates(
        settings.candidates.gap_closing)
    ctx = cue_context(det, settings, image_shape_um)
    cand = _with_links(ctx.cand, det, *links)
    cand = cand.take(~np.isin(_keys(cand.source, cand.target, det.n), _keys(*cut, det.n)))
    full = CueContext(det=det, cand=cand, max_displacement_spacing=ctx.max_displacement_spacing,
                      box_um=ctx.box_um)
    required = np.isin(_keys(cand.source, cand.target, det.n), _keys(*links, det.n))
    kept, probability = event_probabilities(full, model, settings.candidates.min_link_probability,
                                            required)
    costs = event_costs(det, kept.cand, probability, division_pairs(kept), settings.solver,
                        model.cost_offsets)
    if model.two_pass:  # the curated lineage is the first pass
        real = np.zeros(det.n, dtype=bool)
        real[nodes] = True
        kept, probability, costs = rescore_divisions(det, kept, probability, model, settings,
                                                     lineage_ages(det.t, *links, real))
    return TrackingProblem(det, kept.cand, probability, costs, settings, model)


def _pin(costs: EnergyCosts, cand: Candidates, pinned: np.ndarray, pin_cost: float
         ) -> EnergyCosts:
    """Costs with the pinned candidate links (and divisions into two of them) forced on."""
    link = costs.link.copy()
    link[pinned] = -pin_cost
    nodes, pairs, division = costs.division_nodes, costs.division_links, costs.division.copy()
    one_frame = pinned[cand.dt[pinned] == 1]
    mothers, counts = np.unique(cand.source[one_frame], return_counts=True)
    for mother in mothers[counts == 2]:
        first, second = np.sort(one_frame[cand.source[one_frame] == mother])
        same = (np.sort(pairs, axis=1) == (first, second)).all(axis=1)
        if same.any():
            division[same] = -pin_cost
        else:
            nodes = np.append(nodes, mother)
            pairs = np.vstack([pairs, [first, second]])
            division = np.append(division, -pin_cost)
    return replace(costs, link=link, division_nodes=nodes, division_links=pairs,
                   division=division)


def _solution(problem: TrackingProblem, links: tuple[np.ndarray, np.ndarray],
              nodes: np.ndarray) -> Solution:
    """The lineage's choices written as a solution of the problem's variables."""
    n, cand, costs = problem.det.n, problem.cand, problem.costs
    link = np.isin(_keys(cand.source, cand.target, n), _keys(*links, n))
    in_lineage = np.zeros(n, dtype=bool)
    in_lineage[nodes] = True
    has_parent = np.bincount(cand.target[link], minlength=n) > 0
    n_children = np.bincount(cand.source[link], minlength=n)
    division = link[costs.division_links].all(axis=1)
    y = np.concatenate([link, in_lineage & ~has_parent, in_lineage & (n_children == 0),
                        ~in_lineage, division])
    return Solution(link=link, appear=in_lineage & ~has_parent,
                    disappear=in_lineage & (n_children == 0), false_positive=~in_lineage,
                    division=division, energy=float(costs.vector() @ y))


def _neighbourhood(cand: Candidates, n: int, seeds: np.ndarray, hops: int | None) -> np.ndarray:
    """Detections within ``hops`` candidate links of the seed rows (all if ``None``)."""
    if hops is None:
        return np.ones(n, dtype=bool)
    near = np.zeros(n, dtype=bool)
    near[seeds] = True
    for _ in range(hops):
        touched = near[cand.source] | near[cand.target]
        near[cand.source[touched]] = True
        near[cand.target[touched]] = True
    return near


def _keep_far(new: Lineage, old: Lineage, near_ids: set[int]) -> Lineage:
    """The new lineage with the old probabilities wherever no correction reaches."""
    nodes = new.nodes.copy()
    far_nodes = nodes.index[~nodes.index.isin(near_ids) & nodes.index.isin(old.nodes.index)]
    for column in ("division_probability", "false_positive_probability"):
        if column in old.nodes.columns:
            nodes.loc[far_nodes, column] = old.nodes.loc[far_nodes, column].to_numpy()
    edges = new.edges.copy()
    before = old.edges.set_index(["source", "target"])["probability"]
    index = pd.MultiIndex.from_frame(edges[["source", "target"]])
    far = ~(edges["source"].isin(near_ids) | edges["target"].isin(near_ids)).to_numpy()
    known = index.isin(before.index)
    keep = far & known
    edges.loc[keep, "probability"] = before.reindex(index[keep]).to_numpy()
    return Lineage(nodes, edges, new.frame_interval_h, new.attrs)


def apply_corrections(detections: pd.DataFrame, lineage: Lineage,
                      corrections: Sequence[Correction],
                      settings: TrackSettings | None = None,
                      image_shape_um: tuple[float, float, float] | None = None,
                      curation: CurationSettings | None = None) -> Lineage:
    """Apply corrections to a lineage and recompute the probabilities around them.

    Parameters
    ----------
    detections
        The detections the lineage was tracked from (node ids = their index labels,
        as :func:`labloop.track.track` gives them).
    lineage
        The lineage to correct (a tracker's, possibly curated before).
    corrections
        The corrections, oldest first (see :class:`Correction`). One that names a
        nucleus interpolated on a closed gap applies to the gap's link
        (:func:`on_detections`).
    settings
        The tracker's settings (default: those recorded in ``lineage.attrs``, else
        the defaults).
    image_shape_um
        Extent ``(z, y, x)`` of the imaged volume in µm, as given to the tracker.
    curation
        Pinning and neighbourhood (:class:`CurationSettings`).

    Returns
    -------
    Lineage
        The corrected lineage. Edges carry ``pinned`` (1 for accepted and relinked
        links, whose ``probability`` is exactly 1) and recomputed probabilities in
        the neighbourhood of the corrections; nodes keep ``division_probability``
        and ``false_positive_probability``.

    Raises
    ------
    InputError
        A correction names a node that is not a detection, links frames that are
        not consecutive (or one apart), gives a cell a third child, or the lineage
        holds nodes that are not among the detections.

    Examples
    --------
    >>> import pandas as pd
    >>> from labloop.track import track
    >>> det = pd.DataFrame({"t": [0, 0, 1, 1], "z": 0.0, "y": [0.0, 8.0, 4.2, 8.1],
    ...                     "x": 0.0})
    >>> lineage = track(det)
    >>> curated = apply_corrections(det, lineage, [Correction("accept", 0, 2)])
    >>> float(curated.edges.set_index(["source", "target"]).loc[(0, 2), "probability"])
    1.0
    """
    curation = CurationSettings() if curation is None else curation
    settings = track_settings_from_attrs(lineage.attrs) if settings is None else settings
    det = check_detections(detections)
    ids = det.table.index
    corrections = on_detections(corrections, lineage)
    lineage = collapse_gaps(lineage)
    unknown = ~lineage.nodes.index.isin(ids)
    if unknown.any():
        raise InputError(f"the lineage has {int(unknown.sum())} node(s) that are not among the "
                         f"detections; curate a lineage tracked from these detections")
    links = _Links(parent=dict(zip(lineage.edges["target"].tolist(),
                                   lineage.edges["source"].tolist(), strict=True)),
                   frame=det.table["t"])
    for correction in corrections:
        links.apply(correction)
    row = pd.Series(np.arange(det.n), index=ids)

    def rows(pairs: set[tuple[int, int]] | tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
        source, target = (np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2).T
                          if isinstance(pairs, set) else pairs)
        return row[source].to_numpy(), row[target].to_numpy()

    link_rows = rows(links.pairs())
    pinned_rows = rows(links.pinned)
    node_rows = np.union1d(row[lineage.nodes.index].to_numpy(), np.concatenate(link_rows))
    problem = _curated_problem(det, link_rows, rows(links.cut), settings, image_shape_um,
                               node_rows)
    cand = problem.cand
    pinned = np.flatnonzero(np.isin(_keys(cand.source, cand.target, det.n),
                                    _keys(*pinned_rows, det.n)))
    problem = replace(problem, costs=_pin(problem.costs, cand, pinned, curation.pin_cost))
    solution = _solution(problem, link_rows, node_rows)
    marginals = marginals_of(problem)
    attrs = {**lineage.attrs, "curation": {"corrections": len(corrections),
                                           "pinned": len(links.pinned),
                                           "settings": asdict(curation)}}
    new = to_lineage(problem, solution, marginals, lineage.frame_interval_h, attrs, fill=False)
    near = _neighbourhood(cand, det.n, row[sorted(links.touched)].to_numpy(dtype=np.int64),
                          curation.neighbourhood_hops)
    new = _keep_far(new, lineage, set(ids[near].tolist()))
    edges = new.edges.copy()
    key = pd.MultiIndex.from_frame(edges[["source", "target"]])
    is_pinned = key.isin(pd.MultiIndex.from_tuples(sorted(links.pinned), names=key.names)) \
        if links.pinned else np.zeros(len(edges), dtype=bool)
    edges["pinned"] = is_pinned.astype(np.int8)
    edges.loc[is_pinned, "probability"] = 1.0
    curated = new.with_edges(edges)
    return fill_gaps(curated, first_id=int(ids.max()) + 1) if settings.fill_gaps else curated


def doubtful_links(lineage: Lineage, threshold: float = 0.0) -> pd.DataFrame:
    """Links not yet pinned whose error probability is at least ``threshold``, most doubtful first.

    Parameters
    ----------
    lineage
        A lineage with edge ``error_probability`` (and ``pinned`` once curated).
    threshold
        Smallest error probability listed (0 lists every unpinned link).

    Returns
    -------
    DataFrame
        The edge rows, sorted by decreasing ``error_probability`` (ties by source,
        target), with a fresh 0-based index.
    """
    edges = lineage.edges
    unpinned = edges["pinned"] == 0 if "pinned" in edges.columns else True
    doubtful = edges[unpinned & (edges["error_probability"] >= threshold)]
    return doubtful.sort_values(["error_probability", "source", "target"],
                                ascending=[False, True, True], kind="stable"
                                ).reset_index(drop=True)


def track_settings_from_attrs(attrs: dict[str, Any]) -> TrackSettings:
    """The tracker settings recorded in a lineage's attributes (defaults if absent)."""
    recorded = attrs.get("settings")
    if not isinstance(recorded, dict):
        return TrackSettings()
    try:
        return TrackSettings(CandidateSettings(**recorded["candidates"]),
                             SolverSettings(**recorded["solver"]),
                             MarginalSettings(**recorded["marginals"]),
                             recorded.get("model_path"),
                             # lineages recorded before gaps were filled kept t→t+2 links
                             bool(recorded.get("fill_gaps", False)))
    except (KeyError, TypeError) as error:
        raise InputError(f"the lineage's recorded tracker settings are not readable "
                         f"({error})") from None


# -------------------------------------------------------------------- store
def read_corrections(path: str | Path) -> list[Correction]:
    """The corrections saved in an experiment store (none if it has no ``curation`` table)."""
    from labloop.io.store import open_experiment

    experiment = open_experiment(path)
    if not experiment.has(CURATION):
        return []
    return corrections_from_table(experiment.read_table(CURATION))


def curate_store(path: str | Path, corrections: Sequence[Correction],
                 curation: CurationSettings | None = None) -> Lineage:
    """Save new corrections in a store and rewrite its lineage with them.

    The corrections are appended to the store's ``labloop/curation`` table (with
    their times), then the whole history is replayed on ``labloop/tracks.geff``
    (:func:`apply_corrections`) and the result written back, so reopening the
    store shows the corrections, and a crash between the two writes is repaired
    by the next call.

    Parameters
    ----------
    path
        The experiment store, with ``labloop/detections`` and ``labloop/tracks.geff``.
    corrections
        The new corrections, oldest first.
    curation
        Pinning and neighbourhood settings.

    Returns
    -------
    Lineage
        The lineage written.
    """
    from labloop.io.store import TRACKS, open_experiment

    curation = CurationSettings() if curation is None else curation
    experiment = open_experiment(path)
    lineage = experiment.read_tracks()
    history = [*read_corrections(path), *on_detections(corrections, lineage)]
    curated = apply_corrections(experiment.read_detections(), lineage, history,
                                image_shape_um=experiment.image.extent_um, curation=curation)
    experiment.write_table(CURATION, corrections_table(history), "curate",
                           {"corrections": len(history)})
    experiment.write_lineage(TRACKS, curated, "curate",
                             {"corrections": len(history), **asdict(curation)})
    return curated
