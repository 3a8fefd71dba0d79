"""The tracking problem: detections, candidate links, event probabilities and energies.

The energy of a lineage ``y`` (which links, appearances, disappearances, false
positives and divisions it uses) is

    E(y) = Σ_links c_e x_e + Σ_nodes (A_v a_v + D_v d_v + F_v f_v + C_v δ_v),

each cost being the negative log odds of its event, ``c = −log(p / (1 − p))``
(:mod:`labloop.track.costs`). The most probable lineage minimises ``E``
(:mod:`labloop.track.solve`); probabilities follow the Boltzmann distribution
``P(y) ∝ exp(−E(y) / T)`` (:mod:`labloop.track.marginals`).

With a two-pass event model the division costs are those of the second pass: the
most probable lineage under the age-free division model gives every detection its
cell-cycle age (:mod:`labloop.track.ages`), and the age-aware division model
scores the candidate divisions again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labloop.track.ages import CycleAges, lineage_ages
from labloop.track.candidates import Candidates, build_candidates
from labloop.track.costs import EnergyCosts, event_costs
from labloop.track.detections import Detections
from labloop.track.events import EventModel
from labloop.track.features import CueContext, division_pairs
from labloop.track.settings import TrackSettings
from labloop.track.solve import solve_map


@dataclass(frozen=True)
class TrackingProblem:
    """Everything the solver, the marginals and the sampler need.

    Attributes
    ----------
    det
        The detections in frame order.
    cand
        Candidate links kept for the solve.
    event_probability
        Per event, the event model's calibrated probability (links: per kept
        candidate; nodes: per detection).
    costs
        The energy's costs (:class:`~labloop.track.costs.EnergyCosts`).
    settings
        The settings used.
    model
        The event model used.
    """

    det: Detections
    cand: Candidates
    event_probability: dict[str, np.ndarray]
    costs: EnergyCosts
    settings: TrackSettings
    model: EventModel

    @property
    def temperature(self) -> float:
        """Temperature of the marginals: the setting, else the model's fitted one."""
        t = self.settings.marginals.temperature
        return float(self.model.temperature if t is None else t)


def imaged_box(det: Detections, image_shape_um: tuple[float, float, float] | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Corners (µm) of the imaged volume: ``[0, shape)``, else the detections' bounding box."""
    if image_shape_um is not None:
        upper = np.asarray(image_shape_um, dtype=np.float64)
        return np.zeros(3), upper
    if det.n == 0:
        return np.zeros(3), np.zeros(3)
    return det.pos.min(axis=0), det.pos.max(axis=0)


def cue_context(det: Detections, settings: TrackSettings,
                image_shape_um: tuple[float, float, float] | None) -> CueContext:
    """Candidates and the cue context of a detections table."""
    cand = build_candidates(det, settings.candidates)
    return CueContext(det=det, cand=cand,
                      max_displacement_spacing=settings.candidates.max_displacement_spacing,
                      box_um=imaged_box(det, image_shape_um))


def event_probabilities(ctx: CueContext, model: EventModel, min_link_probability: float,
                        required: np.ndarray | None = None
                        ) -> tuple[CueContext, dict[str, np.ndarray]]:
    """Link probabilities, pruning of hopeless links, then every other event's probability.

    Returns the context restricted to the kept candidates (with its link
    probabilities) and the probabilities of all events on it. Candidates flagged
    in ``required`` (e.g. links a curator accepted) are kept however improbable.
    """
    p_link = model.link_probability(ctx)
    keep = p_link >= min_link_probability
    if required is not None:
        keep |= required
    kept = CueContext(det=ctx.det, cand=ctx.cand.take(keep),
                      max_displacement_spacing=ctx.max_displacement_spacing,
                      box_um=ctx.box_um, link_probability=p_link[keep])
    return kept, model.probabilities(kept)


def first_pass_ages(det: Detections, cand: Candidates, costs: EnergyCosts,
                    settings: TrackSettings) -> CycleAges:
    """Cell-cycle ages in the most probable lineage under ``costs`` (the first pass)."""
    first = solve_map(cand.source, cand.target, det.n, costs, settings.solver)
    return lineage_ages(det.t, cand.source[first.link], cand.target[first.link],
                        ~first.false_positive)


def rescore_divisions(det: Detections, ctx: CueContext, probability: dict[str, np.ndarray],
                      model: EventModel, settings: TrackSettings, ages: CycleAges
                      ) -> tuple[CueContext, dict[str, np.ndarray], EnergyCosts]:
    """Context, probabilities and costs with divisions scored by the age-aware model."""
    ctx = ctx.with_ages(ages)
    probability = {**probability, "division": model.division_probability(ctx)}
    costs = event_costs(det, ctx.cand, probability, division_pairs(ctx), settings.solver,
                        model.cost_offsets)
    return ctx, probability, costs


def build_problem(det: Detections, settings: TrackSettings, model: EventModel,
                  image_shape_um: tuple[float, float, float] | None = None) -> TrackingProblem:
    """Candidates, event probabilities and costs of a movie (both passes where the
    model has two); the model's marginal calibration is the one for the candidates."""
    model = model.for_candidates(settings.candidates.gap_closing)
    ctx = cue_context(det, settings, image_shape_um)
    kept, probability = event_probabilities(ctx, model, settings.candidates.min_link_probability)
    costs = event_costs(det, kept.cand, probability, division_pairs(kept), settings.solver,
                        model.cost_offsets)
    if model.two_pass:
        ages = first_pass_ages(det, kept.cand, costs, settings)
        kept, probability, costs = rescore_divisions(det, kept, probability, model, settings,
                                                     ages)
    return TrackingProblem(det, kept.cand, probability, costs, settings, model)
