"""Event probability models: link, appearance, disappearance, false positive, division.

Each event has a :class:`LogisticModel`, ``P(event | cues) = σ(a·(w·z + b) + c)``,
where ``z`` are the named cues (:mod:`labloop.track.features`) standardised with
the training mean and scale, ``w, b`` are fitted by L2-regularised maximum
likelihood on simulated truth, and ``a, c`` is a Platt rescaling fitted on held-out
simulated frames (so the probabilities are calibrated, not just ranked).

:class:`EventModel` bundles the five models with the temperature of the marginals
(:mod:`labloop.track.marginals`); it is stored as JSON (``event_model.json``, see
``EVENT_MODEL.md``) and read without pickle. A model whose division model reads
cell-cycle ages (:mod:`labloop.track.ages`) also holds the age-free
``division_first_pass`` model that gives the tracker its first lineage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from labloop.errors import InputError
from labloop.track.features import CueContext, cue_matrix

#: the shipped parameters
DEFAULT_MODEL_PATH = Path(__file__).with_name("event_model.json")
#: the events, in the order they are evaluated (node models use link probabilities)
EVENTS = ("link", "appear", "disappear", "false_positive", "division")
#: the age-free division model of a two-pass event model
FIRST_PASS_DIVISION = "division_first_pass"
#: fields fitted on held-out tracking runs, once per kind of candidates (with or without
#: gap closing; see :meth:`EventModel.for_candidates`)
MARGINAL_CALIBRATION_FIELDS = ("temperature", "link_recalibration", "division_recalibration",
                               "gap_link_recalibration", "sampling_noise_scale")
#: default L2 penalty on standardised weights
DEFAULT_L2 = 1e-3


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, numerically safe."""
    return np.exp(_log_sigmoid(x))


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, weight: np.ndarray | None = None
                  ) -> np.ndarray:
    """Weights ``(d + 1,)`` (last = bias) of an L2-regularised logistic regression."""
    n, d = x.shape
    w_obs = np.ones(n) if weight is None else weight
    xb = np.hstack([x, np.ones((n, 1))])
    total = w_obs.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ theta
        nll = -(w_obs * (y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z))).sum() / total
        grad = xb.T @ (w_obs * (sigmoid(z) - y)) / total
        penalty = 0.5 * l2 * np.sum(theta[:-1] ** 2)
        grad[:-1] += l2 * theta[:-1]
        return nll + penalty, grad

    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000})
    return result.x


@dataclass
class LogisticModel:
    """A calibrated logistic model of one event over named cues.

    Parameters
    ----------
    event
        ``link``, ``appear``, ``disappear``, ``false_positive`` or ``division``.
    cues
        Names of its cues (see :data:`labloop.track.features.CUE_TABLES`).
    mean, scale
        Standardisation of each cue.
    weights, bias
        Logistic weights on standardised cues.
    platt_scale, platt_offset
        Platt calibration of the logit, fitted on held-out data.
    interactions
        Also use all products ``z_i z_j`` (``i ≤ j``) of standardised cues: a
        quadratic logit, for events whose cues interact (divisions, false positives).
    """

    event: str
    cues: list[str]
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    platt_scale: float = 1.0
    platt_offset: float = 0.0
    interactions: bool = False

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        if not self.interactions:
            return z
        i, j = np.triu_indices(z.shape[1])
        return np.hstack([z, z[:, i] * z[:, j]])

    def raw_logit(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated logit of cue matrix ``x``."""
        return self._standardise(x) @ np.asarray(self.weights) + self.bias

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Calibrated log odds of the event, for a cue matrix ``x``."""
        return self.platt_scale * self.raw_logit(x) + self.platt_offset

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probability of the event, for a cue matrix ``x``."""
        return sigmoid(self.logit(x))

    def fit(self, x: np.ndarray, y: np.ndarray, l2: float = DEFAULT_L2) -> LogisticModel:
        """Fit weights on training cues ``x`` and labels ``y`` (0/1); returns self."""
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        self.mean, self.scale = mean.tolist(), scale.tolist()
        theta = _fit_logistic(self._standardise(x), y.astype(np.float64), l2)
        self.weights, self.bias = theta[:-1].tolist(), float(theta[-1])
        return self

    def calibrate(self, x: np.ndarray, y: np.ndarray) -> LogisticModel:
        """Platt-rescale the logit on held-out cues ``x`` and labels ``y``; returns self."""
        theta = _fit_logistic(self.raw_logit(x)[:, None], y.astype(np.float64), 0.0)
        self.platt_scale, self.platt_offset = float(theta[0]), float(theta[1])
        return self


@dataclass
class EventModel:
    """The five event models, the marginal temperature and a final recalibration.

    Parameters
    ----------
    models
        One :class:`LogisticModel` per event name.
    temperature
        Temperature of the Boltzmann marginals, fitted on held-out simulations.
    link_recalibration, division_recalibration
        Isotonic maps ``(x, y)`` from tempered marginal to calibrated probability
        (piecewise linear); empty for none.
    gap_link_recalibration
        The isotonic map of links that skip a frame (fitted on those alone: their
        marginals are far from their error rates, in both directions, on the
        held-out simulations); empty to use ``link_recalibration`` for them.
    cost_offsets
        Offsets added to the costs (−log odds) of ``appear``, ``disappear``,
        ``false_positive`` and ``division``, fitted on held-out simulations for the
        best MAP lineage: each event model is calibrated alone, but in the energy a
        division also pays its second link, so the combination needs one global
        correction per event.
    sampling_noise_scale
        Scale ``s`` of the perturb-and-MAP noise, relative to ``temperature``
        (:mod:`labloop.track.sampling`), fitted on held-out simulations so that
        sampled lineages lose the most probable lineage's links and divisions as
        often as their calibrated error probabilities say; 1 for none.
    gap_closing_calibration
        The :data:`MARGINAL_CALIBRATION_FIELDS` fitted on the same held-out
        simulations tracked with gap closing (links t→t+2 add short loops to the
        candidate graph, which move the belief-propagation marginals);
        :meth:`for_candidates` applies them. Empty for none.
    metadata
        Training provenance (command, seeds, data, metrics), also in the card.
    """

    models: dict[str, LogisticModel]
    temperature: float = 1.0
    cost_offsets: dict[str, float] = field(default_factory=dict)
    link_recalibration: dict[str, list[float]] = field(default_factory=dict)
    division_recalibration: dict[str, list[float]] = field(default_factory=dict)
    gap_link_recalibration: dict[str, list[float]] = field(default_factory=dict)
    sampling_noise_scale: float = 1.0
    gap_closing_calibration: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def for_candidates(self, gap_closing: bool) -> EventModel:
        """The model whose marginal calibration fits candidates with or without gap closing."""
        if not (gap_closing and self.gap_closing_calibration):
            return self
        return replace(self, **self.gap_closing_calibration)

    @property
    def two_pass(self) -> bool:
        """Whether divisions are scored again with ages from a first-pass lineage."""
        return FIRST_PASS_DIVISION in self.models

    def division_probability(self, ctx: CueContext) -> np.ndarray:
        """Calibrated probability of every candidate division pair: the age-aware model
        where the context has first-pass ages, else the first-pass (age-free) one."""
        model = self.models["division"]
        if self.two_pass and ctx.ages is None:
            model = self.models[FIRST_PASS_DIVISION]
        return model.probability(cue_matrix(ctx, "division", model.cues))

    def link_probability(self, ctx: CueContext) -> np.ndarray:
        """Calibrated probability of every candidate link."""
        model = self.models["link"]
        return model.probability(cue_matrix(ctx, "link", model.cues))

    def probabilities(self, ctx: CueContext) -> dict[str, np.ndarray]:
        """Calibrated probability of every event.

        ``ctx.link_probability`` must be set (from :meth:`link_probability`): node
        cues use it. Division probabilities are per candidate pair
        (:func:`~labloop.track.features.division_pairs`).
        """
        out = {"link": ctx.probability()}
        for event in EVENTS[1:]:
            model = self.models[event]
            out[event] = (self.division_probability(ctx) if event == "division"
                          else model.probability(cue_matrix(ctx, event, model.cues)))
        return out

    def to_json(self, path: str | Path) -> None:
        """Write the parameters as JSON."""
        data = {"models": {k: asdict(v) for k, v in self.models.items()},
                "temperature": self.temperature,
                "cost_offsets": self.cost_offsets,
                "link_recalibration": self.link_recalibration,
                "division_recalibration": self.division_recalibration,
                "gap_link_recalibration": self.gap_link_recalibration,
                "sampling_noise_scale": self.sampling_noise_scale,
                "gap_closing_calibration": self.gap_closing_calibration,
                "metadata": self.metadata}
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> EventModel:
        """Read parameters written by :meth:`to_json`."""
        path = Path(path)
        if not path.exists():
            raise InputError("event model file not found", path)
        try:
            data = json.loads(path.read_text())
            models = {k: LogisticModel(**v) for k, v in data["models"].items()}
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"not a labloop event model ({error})", path) from None
        missing = [e for e in EVENTS if e not in models]
        if missing:
            raise InputError(f"event model lacks {', '.join(missing)}", path)
        return cls(models=models, temperature=float(data.get("temperature", 1.0)),
                   cost_offsets={k: float(v) for k, v in data.get("cost_offsets", {}).items()},
                   link_recalibration=data.get("link_recalibration", {}),
                   division_recalibration=data.get("division_recalibration", {}),
                   gap_link_recalibration=data.get("gap_link_recalibration", {}),
                   sampling_noise_scale=float(data.get("sampling_noise_scale", 1.0)),
                   gap_closing_calibration=data.get("gap_closing_calibration", {}),
                   metadata=data.get("metadata", {}))


def recalibrate(p: np.ndarray, table: dict[str, list[float]]) -> np.ndarray:
    """Apply a stored isotonic map (piecewise linear in ``p``); identity if empty."""
    if not table:
        return p
    return np.interp(p, np.asarray(table["x"]), np.asarray(table["y"]))


_CACHE: dict[str, EventModel] = {}


def load_event_model(path: str | Path | None = None) -> EventModel:
    """The event model at ``path``, or the one shipped with labloop (cached)."""
    key = str(DEFAULT_MODEL_PATH if path is None else path)
    if key not in _CACHE:
        _CACHE[key] = EventModel.from_json(key)
    return _CACHE[key]
