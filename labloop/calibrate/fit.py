"""``recalibrate``: fit the tissue model's free parameters to observed morphometrics.

The objective is the loss (default :func:`.loss.gaussian_loss`) between the
observed terms and the mean of ``R`` vmapped model replicates. Within one
start the replicates' random numbers are held fixed (common random numbers),
so the objective is a deterministic function of the parameters and Adam
converges instead of chasing noise; gradients through divisions use the
model's estimator (``TissueModel.division_gradient``: ``"expected_growth"``
carries how proliferation compounds into the counts, the default ``"score"``
only the direct effect of the rates; the division-rate profile is a smooth
expectation in any case). Several starts (the given parameters, chosen
ones and random perturbations of the free ones in optimiser space) run with
early stopping; the best one (and any within ``mode_loss_margin`` of it) is
polished by Levenberg–Marquardt steps on the same replicates (:mod:`.polish`:
Adam stalls along curved valleys where two parameters trade off), then refined
by a Laplace approximation (:mod:`.uncertainty`) and re-scored on fresh
replicates. Distinct minima that fit about equally well are all kept: the
intervals then cover the mixture of their Laplace Gaussians.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from labloop.calibrate.derived import DIVISION_LAW, Derived, derived_intervals
from labloop.calibrate.loss import (
    Loss,
    gaussian_loss,
    observed_entries,
    residual_scales,
    residual_variances,
    standardised_residuals,
)
from labloop.calibrate.observations import TERMS, Observations
from labloop.calibrate.polish import PolishStep, levenberg_marquardt
from labloop.calibrate.statistics import model_terms
from labloop.calibrate.uncertainty import (
    covariance_from_jacobian,
    distinct_from,
    identifiability,
    intervals,
    mixture_draws,
    mixture_intervals,
    mode_weights,
)
from labloop.errors import InputError
from labloop.tissue import (
    TissueModel,
    TissueParams,
    TissueState,
    Trajectory,
    describe,
    free_vector,
    parameter_names,
    simulate_replicates,
    trainable_mask,
)

#: the parameters a fit frees by default: proliferation, its control by the growth
#: factor, the reach of the growth factor, and cell motility
DEFAULT_FREE = ("division.max_rate_per_h", "gene.input_weights",
                "growth_factor.decay_length_um", "mechanics.motility_um2_per_h")

Statistic = Callable[[Trajectory], jax.Array]


@dataclass(frozen=True)
class CalibrateSettings:
    """How a fit runs.

    Attributes
    ----------
    free
        Parameter names (wildcards allowed) fitted; all others are frozen.
    n_replicates
        Model replicates averaged per evaluation (vmapped).
    n_starts
        Optimisation starts: the given parameters, then one per entry of ``starts``,
        then random perturbations of the free ones (σ ``start_spread`` in optimiser
        space) up to ``n_starts``.
    starts
        Chosen starting values, each a mapping of dotted names to values (as
        :func:`with_values`) that replace the given parameters' — e.g. one start on
        each side of a fold where two parameter sets explain the data alike.
    mode_loss_margin
        Starts whose Adam loss is within this margin of the best start's are
        polished and get a Laplace approximation of their own; those that end in a
        distinct minimum (outside one σ of a better one) are kept as
        ``Fit.alternatives``, and the fit's intervals are quantiles over the mixture
        of all kept minima's Laplace Gaussians, weighted by their Laplace evidence
        (:mod:`.uncertainty`). 0 keeps the best start only. Each start's Adam loss is
        on its own replicates, so a margin of a few units allows for their Monte
        Carlo error.
    learning_rate, max_iterations, patience, tolerance
        Adam step size, decaying along a cosine to a tenth of it over
        ``max_iterations`` steps (so the last steps settle instead of circling the
        optimum); at most ``max_iterations`` steps per start; stop a start after
        ``patience`` steps without a relative improvement of ``tolerance``.
    polish_iterations
        Most Levenberg–Marquardt steps after Adam on the best start
        (:mod:`.polish`; 0 switches the polish off). Each costs ``2 n_free + 1``
        model evaluations plus its trials, no gradient; it stops early once a
        step gains less than ``tolerance``.
    seed
        Seed of the replicates and starts: the same seed gives the same fit.
    laplace_replicates
        Fresh replicates (at least; ``n_replicates`` if more) behind the final
        loss, the Laplace information and the sensitivities. The secant Jacobian of
        a replicate mean carries Monte Carlo noise, and ``JᵀJ`` adds that noise's
        variance to the information (``E[JᵀJ] = J̄ᵀJ̄ + Var J``): along a direction
        the data barely constrain, 16 replicates overstated it several-fold.
    final_step
        Take one Levenberg–Marquardt step on the ``laplace_replicates`` after the
        polish, from the Jacobian the Laplace information computes anyway (the
        extra cost is its trials and one evaluation). Adam and the polish minimise
        the loss over ``n_replicates`` fixed replicates, and those replicates' Monte
        Carlo error moves the minimum along directions the data pin down weakly
        (on ``benchmarks/bench_calibrate.py`` with 4 replicates: the fold change of
        the division rate 10 % high on three seeds, the true parameters scoring a
        lower loss than the fit on 64 fresh replicates); the step goes to the
        minimum over the many replicates. The covariance stays the one at the
        step's start (the step is within the interval; recomputing the Jacobian
        would double the cost of the Laplace information).
    jacobian, secant_step
        How the Laplace information and the sensitivities differentiate the
        replicate means: ``"secant"`` (default), central differences over
        ``± secant_step`` in optimiser space (±5 % for positive parameters) with
        the same replicates, or ``"forward"``, ``jax.jacfwd``. The tangent of a
        crowded cell packing over many steps is chaotic: forward derivatives of
        positions can exceed the response over any finite parameter change many
        times, and the Laplace intervals then shrink with them; a secant measures
        the response on the scale of the parameter's uncertainty.
    """

    free: tuple[str, ...] = DEFAULT_FREE
    n_replicates: int = 8
    n_starts: int = 3
    starts: tuple[Mapping[str, Any], ...] = ()
    mode_loss_margin: float = 0.0
    start_spread: float = 0.3
    learning_rate: float = 0.05
    max_iterations: int = 150
    patience: int = 20
    tolerance: float = 1e-3
    polish_iterations: int = 8
    seed: int = 0
    laplace_replicates: int = 64
    final_step: bool = True
    jacobian: str = "secant"
    secant_step: float = 0.05

    def __post_init__(self) -> None:
        if self.n_replicates < 2:
            raise InputError("a fit needs at least 2 model replicates per evaluation")
        if self.laplace_replicates < 2:
            raise InputError(f"laplace_replicates must be at least 2, got "
                             f"{self.laplace_replicates}")
        if self.n_starts < 1 or self.max_iterations < 1:
            raise InputError("n_starts and max_iterations must be at least 1")
        if self.n_starts < 1 + len(self.starts):
            raise InputError(f"n_starts ({self.n_starts}) must count the given parameters "
                             f"and the {len(self.starts)} chosen start(s)")
        if not self.mode_loss_margin >= 0:
            raise InputError(f"mode_loss_margin must be 0 or more, got "
                             f"{self.mode_loss_margin}")
        if self.polish_iterations < 0:
            raise InputError(f"polish_iterations must be 0 or more, got "
                             f"{self.polish_iterations}")
        if not self.free:
            raise InputError("no free parameter: name at least one to fit")
        if self.jacobian not in ("secant", "forward"):
            raise InputError(f"jacobian must be 'secant' or 'forward', got {self.jacobian!r}")
        if not self.secant_step > 0:
            raise InputError(f"secant_step must be positive, got {self.secant_step}")


@dataclass
class Fit:
    """The result of :func:`recalibrate`.

    Attributes
    ----------
    params
        Best parameters (physical units).
    intervals
        Per free parameter (flattened leaves): ``name, value, lower, upper`` (90 %:
        over all kept minima where there are ``alternatives``), ``sd_raw`` (this
        minimum's), ``positive``, ``unit``.
    covariance
        Laplace covariance in optimiser space (DataFrame indexed by name).
    sensitivity
        ``experiment, term, index, parameter, sensitivity``: ``∂ morphometric / ∂ θ_raw``
        (``θ_raw = log θ`` for positive parameters: change per e-fold) at ``params``
        (after ``CalibrateSettings.final_step``; the covariance is from before it);
        ``experiment`` numbers the fitted experiments in the order given.
    identifiability
        Notes on what the data leave undetermined.
    history
        ``start, iteration, loss, stage`` (``"adam"``, ``"polish"`` or
        ``"final"``; polish losses are after each Levenberg–Marquardt step, on the
        same replicates; the final step's before and after it, on the Laplace
        replicates: ``CalibrateSettings.final_step``).
    best_start, loss
        The winning start and its final loss (on fresh replicates).
    fitted
        ``experiment, term, index, observed, observed_sd, model, model_sd,
        added_variance`` at the best fit (for rate terms ``observed_sd`` leaves out the
        counting noise, which the loss takes at the model's rate: :class:`.Observations`;
        ``added_variance`` is what the loss adds to ``observed_sd²``, :mod:`.loss`).
    settings
        The settings used; ``seconds`` the wall time.
    alternatives
        Other distinct minima kept (``CalibrateSettings.mode_loss_margin``), each a
        :class:`Fit` of its own, in order of loss; see :meth:`mode_weights`.
    """

    params: TissueParams
    intervals: pd.DataFrame
    covariance: pd.DataFrame
    sensitivity: pd.DataFrame
    identifiability: list[str]
    history: pd.DataFrame
    best_start: int
    loss: float
    fitted: pd.DataFrame
    settings: CalibrateSettings
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    alternatives: list[Fit] = field(default_factory=list)

    @property
    def modes(self) -> list[Fit]:
        """This minimum and the alternatives, in order of loss."""
        return [self, *self.alternatives]

    def mode_weights(self) -> np.ndarray:
        """Posterior weights of :attr:`modes`: their Laplace evidence, normalised
        (:func:`.uncertainty.mode_weights`)."""
        return mode_weights([m.loss for m in self.modes],
                            [m.covariance.to_numpy() for m in self.modes])

    def summary(self) -> str:
        """Parameters with 90 % intervals, the division law where the fit moved it
        (:data:`.derived.DIVISION_LAW`) and the identifiability notes, as text."""
        lines = [f"loss {self.loss:.3f} (start {self.best_start}, {self.seconds:.0f} s)"]
        if self.alternatives:
            lines.append("  minima kept (start: loss, weight): " + ", ".join(
                f"{m.best_start}: {m.loss:.3f}, {w:.2f}"
                for m, w in zip(self.modes, self.mode_weights(), strict=True)))
        law = self.derived()
        for row in pd.concat([self.intervals, law[law["depends_on_free"]]]).itertuples():
            lines.append(f"  {row.name:34s} {row.value:10.4g}  [{row.lower:.4g}, "
                         f"{row.upper:.4g}] {row.unit}")
        lines += [f"  note: {n}" for n in self.identifiability]
        return "\n".join(lines)

    def derived(self, quantities: Mapping[str, Derived] | None = None) -> pd.DataFrame:
        """Derived quantities (default: :data:`.derived.DIVISION_LAW`) with 90 % intervals
        from this fit's Laplace covariance (the mixture over :attr:`modes`); see
        :func:`.derived.derived_intervals`."""
        return derived_intervals(self.params, self.covariance, self.settings.free,
                                 DIVISION_LAW if quantities is None else quantities,
                                 alternatives=[(m.params, m.covariance)
                                               for m in self.alternatives],
                                 weights=self.mode_weights())


@dataclass(frozen=True)
class Experiment:
    """One observed experiment to fit: observations and the model's initial state."""

    observed: Observations
    initial: TissueState


def steps_per_frame(model: TissueModel, frame_interval_h: float) -> int:
    """Model steps between two observed frames (``Δ / dt``, which must be whole)."""
    ratio = frame_interval_h / model.dt_h
    steps = round(ratio)
    if steps < 1 or abs(ratio - steps) > 1e-6 * max(ratio, 1):
        raise InputError(f"the frame interval {frame_interval_h} h is not a whole number of "
                         f"model time steps ({model.dt_h} h); choose dt_h to divide it")
    return steps


def _leaf_names(params: TissueParams, mask: TissueParams) -> tuple[list[str], list[bool],
                                                                    list[str]]:
    """Flattened names, positivity and units of the free leaves, in ravel order."""
    table = describe(params).set_index("name")
    names, positive, units = [], [], []
    for name, leaf, free in zip(parameter_names(params), jax.tree_util.tree_leaves(params),
                                jax.tree_util.tree_leaves(mask), strict=True):
        if not free:
            continue
        size = int(np.size(leaf))
        row = table.loc[name]
        for i in range(size):
            names.append(name if size == 1 else f"{name}[{i}]")
            positive.append(bool(row["positive"]))
            units.append(str(row["unit"]))
    return names, positive, units


def secant_jacobian(function: Callable[[jax.Array], Any],
                    step: float) -> Callable[[jax.Array], Any]:
    """``x ↦ ∂f/∂x`` by central differences ``(f(x + h eᵢ) − f(x − h eᵢ)) / 2h``; ``f`` maps
    a vector to a pytree of arrays, the result has a trailing axis per entry of ``x``
    (as :func:`jax.jacfwd`)."""
    def jacobian(x: jax.Array) -> Any:
        columns = []
        for i in range(x.size):
            shift = jnp.zeros_like(x).at[i].set(step)
            columns.append(jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * step),
                                                  function(x + shift), function(x - shift)))
        return jax.tree_util.tree_map(lambda *c: jnp.stack(c, axis=-1), *columns)

    return jacobian


def _polish(loss_and_residuals: Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]],
            start_of_step: Callable[[jax.Array], tuple[jax.Array, jax.Array, Any]],
            differentiate: Callable[[Callable], Callable], vector: jax.Array,
            settings: CalibrateSettings,
            progress: Callable[[int], None]) -> tuple[jax.Array, list[PolishStep]]:
    """Levenberg–Marquardt polish of ``vector`` (:mod:`.polish`) on fixed replicates:
    ``start_of_step(v) -> (loss, residuals, variances)`` at a step's start (one model
    evaluation), then ``loss_and_residuals(v, variances)`` with those variances held
    over the step (both jitted by the caller)."""
    held: dict[bytes, Any] = {}

    def variances(anchor: np.ndarray) -> Any:
        key = anchor.tobytes()
        if key not in held:
            held.clear()
            held[key] = start_of_step(jnp.asarray(anchor, vector.dtype))
        return held[key][2]

    def evaluate(x: np.ndarray, anchor: np.ndarray) -> tuple[float, np.ndarray]:
        if np.array_equal(x, anchor):  # a step's start: the evaluation that set its weights
            variances(anchor)
            value, residuals, _ = held[anchor.tobytes()]
        else:
            value, residuals = loss_and_residuals(jnp.asarray(x, vector.dtype),
                                                  variances(anchor))
        return float(value), np.asarray(residuals)

    def jacobian(x: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        fixed = variances(anchor)
        return np.asarray(differentiate(lambda v: loss_and_residuals(v, fixed)[1])(
            jnp.asarray(x, vector.dtype)))

    polished, steps = levenberg_marquardt(evaluate, jacobian, np.asarray(vector),
                                          settings.polish_iterations, settings.tolerance,
                                          progress=progress)
    return jnp.asarray(polished, vector.dtype), steps


def _step_on_fresh_replicates(loss_and_residuals: Callable[[jax.Array],
                                                           tuple[jax.Array, jax.Array]],
                              vector: jax.Array, value: float, residuals: np.ndarray,
                              jacobian: np.ndarray) -> jax.Array | None:
    """One Levenberg–Marquardt step from ``vector`` whose loss ``value``, ``residuals`` and
    their ``jacobian`` are known (``CalibrateSettings.final_step``); the stepped vector,
    or ``None`` where no trial lowers the loss."""
    known = np.asarray(vector)

    def evaluate(x: np.ndarray, anchor: np.ndarray) -> tuple[float, np.ndarray]:
        if np.array_equal(x, known):
            return value, residuals
        trial, r = loss_and_residuals(jnp.asarray(x, vector.dtype))
        return float(trial), np.asarray(r)

    stepped, steps = levenberg_marquardt(evaluate, lambda x, anchor: jacobian, known, 1, 0.0)
    if not steps or not steps[0].accepted:
        return None
    return jnp.asarray(stepped, vector.dtype)


def _next_iteration(rows: list[dict], start: int) -> int:
    """The iteration number that follows the history rows of ``start``."""
    return max(r["iteration"] for r in rows if r["start"] == start) + 1


def recalibrate(observed: Observations | Sequence[Experiment], model: TissueModel,
                params: TissueParams, initial: TissueState | None = None,
                settings: CalibrateSettings | None = None, *,
                loss: Loss = gaussian_loss,
                statistics: Mapping[str, Statistic] | None = None,
                progress: Callable[[int, int], None] | None = None) -> Fit:
    """Fit the free parameters of ``params`` to ``observed``.

    Parameters
    ----------
    observed
        :class:`Observations` of one experiment (with ``initial``), or a sequence
        of :class:`Experiment` fitted jointly (shared parameters, summed loss).
    model
        Static settings; ``model.dt_h`` must divide the frame interval.
    params
        Starting parameters; frozen ones stay at these values.
    initial
        Initial state for a single experiment (e.g. :func:`.initial.initial_from_lineage`).
    settings
        :class:`CalibrateSettings`.
    loss
        ``loss(residuals by term) -> scalar`` (default ``½ Σ r²``).
    statistics
        Extra model statistics ``name -> f(trajectory) -> (K,) array`` for extra
        observed terms of the same name (add a morphometric).
    progress
        Called as ``progress(done, total)`` after every optimisation step
        (Adam and polish).

    Returns
    -------
    Fit
    """
    settings = settings or CalibrateSettings()
    if isinstance(observed, Observations):
        if initial is None:
            raise InputError("recalibrate needs the model's initial state")
        experiments = [Experiment(observed, initial)]
    else:
        experiments = list(observed)
        if not experiments:
            raise InputError("no experiment to fit")
    statistics = dict(statistics or {})
    for exp in experiments:
        missing = [t for t in exp.observed.values if t not in statistics
                   and t not in TERMS]
        if missing:
            raise InputError(f"no model statistic for observed term(s) {missing}; pass them "
                             "in `statistics`")
        if exp.initial.capacity != model.capacity:
            raise InputError(f"the initial state has {exp.initial.capacity} slots but the "
                             f"model's capacity is {model.capacity}")
    started = time.perf_counter()
    import optax

    mask = trainable_mask(params, settings.free)
    vector0, to_params = free_vector(params, mask)
    names, positive, units = _leaf_names(params, mask)

    runs = [(exp, steps_per_frame(model, exp.observed.frame_interval_h)) for exp in experiments]

    def replicate_terms(vector: jax.Array, keys: jax.Array,
                        exp: Experiment, spf: int) -> dict[str, jax.Array]:
        p = to_params(vector)
        traj = simulate_replicates(model, p, keys, exp.initial,
                                   n_frames=exp.observed.frames - 1, steps_per_frame=spf)
        landmark = (None if exp.observed.landmark_um is None
                    else jnp.asarray(exp.observed.landmark_um))
        edges = jnp.asarray(exp.observed.bin_edges_um)

        def one(t: Trajectory) -> dict[str, jax.Array]:
            terms = model_terms(t, landmark, edges, list(exp.observed.values))
            for name, fn in statistics.items():
                if name in exp.observed.values:
                    terms[name] = jnp.atleast_1d(fn(t))
            return terms

        return jax.vmap(one)(traj)

    def terms_by_run(vector: jax.Array,
                     keys: Sequence[jax.Array]) -> list[dict[str, jax.Array]]:
        return [replicate_terms(vector, k, exp, spf)
                for (exp, spf), k in zip(runs, keys, strict=True)]

    def means_by_run(vector: jax.Array,
                     keys: Sequence[jax.Array]) -> list[dict[str, jax.Array]]:
        return [{t: jnp.mean(v, axis=0) for t, v in terms.items()}
                for terms in terms_by_run(vector, keys)]

    def flat(by_run: list[dict[str, Any]]) -> jax.Array:
        return jnp.concatenate([jnp.ravel(res[t]) for (exp, _), res in zip(runs, by_run,
                                                                           strict=True)
                                for t in exp.observed.values])

    def scored(terms: list[dict[str, jax.Array]], variances: Sequence[Any] | None = None,
               ) -> tuple[jax.Array, jax.Array, list[Any]]:
        """Loss, residuals and the variances weighting them (by default their own)."""
        if variances is None:
            variances = [residual_variances(t, exp.observed)
                         for t, (exp, _) in zip(terms, runs, strict=True)]
        by_run = [standardised_residuals(t, exp.observed, v)
                  for t, (exp, _), v in zip(terms, runs, variances, strict=True)]
        return sum(loss(res) for res in by_run), flat(by_run), list(variances)

    def objective(vector: jax.Array, keys: Sequence[jax.Array]) -> jax.Array:
        return scored(terms_by_run(vector, keys))[0]

    def loss_and_residuals(vector: jax.Array, keys: Sequence[jax.Array],
                           variances: Sequence[Any]) -> tuple[jax.Array, jax.Array]:
        return scored(terms_by_run(vector, keys), variances)[:2]

    def with_own_variances(vector: jax.Array, keys: Sequence[jax.Array],
                           ) -> tuple[jax.Array, jax.Array, list[Any]]:
        return scored(terms_by_run(vector, keys))

    def residual_jacobian(sensitivity: list[dict[str, Any]],
                          variances: Sequence[Any]) -> np.ndarray:
        """``∂r/∂θ`` from the replicate means' ``∂m̄/∂θ``, the variances held."""
        blocks = []
        for (exp, _), sens, var in zip(runs, sensitivity, variances, strict=True):
            scales = residual_scales(exp.observed, var)
            for term in exp.observed.values:
                ok = np.asarray(observed_entries(exp.observed, term))
                blocks.append(np.where(ok[:, None], np.asarray(sens[term])
                                       / np.asarray(scales[term])[:, None], 0.0))
        return np.concatenate(blocks)

    opt = optax.adam(optax.cosine_decay_schedule(settings.learning_rate,
                                                 settings.max_iterations, alpha=0.1))
    value_and_grad = jax.jit(jax.value_and_grad(objective))
    root = jax.random.key(settings.seed)
    k_starts, k_reps, k_final = jax.random.split(root, 3)
    start_keys = jax.random.split(k_starts, settings.n_starts)
    chosen = [vector0] + [free_vector(with_values(params, **values), mask)[0]
                          for values in settings.starts]
    rows, finals = [], []
    polished_starts = settings.n_starts if settings.mode_loss_margin > 0 else 1
    adam_steps = settings.n_starts * settings.max_iterations
    total = adam_steps + polished_starts * settings.polish_iterations
    done = 0
    for s in range(settings.n_starts):
        vector = chosen[s] if s < len(chosen) else vector0 + settings.start_spread * (
            jax.random.normal(start_keys[s], vector0.shape, vector0.dtype))
        keys = [jax.random.split(k, settings.n_replicates)
                for k in jax.random.split(jax.random.fold_in(k_reps, s), len(runs))]
        state = opt.init(vector)
        best, best_vector, stale = np.inf, vector, 0
        for i in range(settings.max_iterations):
            value, grad = value_and_grad(vector, keys)
            value = float(value)
            rows.append({"start": s, "iteration": i, "loss": value, "stage": "adam"})
            if not np.isfinite(best) or value < best - settings.tolerance * abs(best):
                best, best_vector, stale = value, vector, 0
            else:
                stale += 1
            done += 1
            if progress is not None:
                progress(done, total)
            if stale >= settings.patience or not np.isfinite(value):
                break
            grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
            updates, state = opt.update(grad, state, vector)
            vector = optax.apply_updates(vector, updates)
        finals.append((best, best_vector, keys))
    adam_losses = np.array([f[0] for f in finals])
    best_start = int(np.argmin(adam_losses))
    close = [int(s) for s in np.argsort(adam_losses, kind="stable") if s != best_start
             and adam_losses[s] <= adam_losses[best_start] + settings.mode_loss_margin]
    candidates = [best_start, *close[:polished_starts - 1]]

    differentiate = (jax.jacfwd if settings.jacobian == "forward"
                     else lambda f: secant_jacobian(f, settings.secant_step))
    # jitted once with the replicates' keys as arguments: every start and minimum reuses them
    jitted_loss_and_residuals = jax.jit(loss_and_residuals)
    jitted_own_variances = jax.jit(with_own_variances)
    jitted_terms, jitted_means = jax.jit(terms_by_run), jax.jit(means_by_run)
    fresh = [jax.random.split(k, max(settings.n_replicates, settings.laplace_replicates))
             for k in jax.random.split(k_final, len(runs))]

    def polished(start: int, order: int) -> jax.Array:
        _, vector, keys = finals[start]
        if not settings.polish_iterations:
            return vector
        offset = adam_steps + order * settings.polish_iterations

        def polish_progress(step: int) -> None:
            if progress is not None:
                progress(offset + step, total)

        # the polish differentiates the jitted functions by secants (or jacfwd) itself
        vector, steps = _polish(
            lambda v, var: jitted_loss_and_residuals(v, keys, var),
            lambda v: jitted_own_variances(v, keys), differentiate, vector, settings,
            polish_progress)
        first = _next_iteration(rows, start)
        rows.extend({"start": start, "iteration": first + i, "loss": st.loss,
                     "stage": "polish"} for i, st in enumerate(steps))
        return vector

    def laplace(vector: jax.Array, start: int) -> Fit:
        """The minimum reached from ``start`` on the fresh replicates: its final step,
        Laplace covariance, sensitivities and fitted table (the Laplace Jacobian is
        derived from the sensitivities at the step's start)."""
        terms = jitted_terms(vector, fresh)
        value, residuals, variances = scored(terms)
        value = float(value)
        sensitivity = differentiate(lambda v: jitted_means(v, fresh))(vector)
        jacobian = residual_jacobian(sensitivity, variances)
        if settings.final_step:
            stepped = _step_on_fresh_replicates(
                lambda v: jitted_loss_and_residuals(v, fresh, variances), vector, value,
                np.asarray(residuals), jacobian)
            if stepped is not None:
                vector = stepped
                terms = jitted_terms(vector, fresh)
                after, _, variances = scored(terms)
                # sensitivities where the fit ends: linearised_refit steps from there (on
                # the benchmark's seed 1 those of the step's start put the corrected fold
                # change +10.7 % off instead of +9.2 %)
                sensitivity = differentiate(lambda v: jitted_means(v, fresh))(vector)
                first = _next_iteration(rows, start)
                rows.extend({"start": start, "iteration": first + i, "loss": v,
                             "stage": "final"} for i, v in enumerate((value, float(after))))
                value = float(after)
        cov = covariance_from_jacobian(jacobian)
        fitted_rows, sens_rows = [], []
        for e, ((exp, _), reps, var, sens) in enumerate(zip(runs, terms, variances,
                                                            sensitivity, strict=True)):
            for term, y in exp.observed.values.items():
                m = np.asarray(reps[term])
                for j in range(len(y)):
                    fitted_rows.append({"experiment": e, "term": term, "index": j,
                                        "observed": float(y[j]),
                                        "observed_sd": float(exp.observed.sd[term][j]),
                                        "model": float(m[:, j].mean()),
                                        "model_sd": float(m[:, j].std()),
                                        "added_variance": float(np.asarray(var[term])[j])})
                    sens_rows.extend({"experiment": e, "term": term, "index": j,
                                      "parameter": name,
                                      "sensitivity": float(np.asarray(sens[term])[j, p])}
                                     for p, name in enumerate(names))
        return Fit(params=to_params(vector),
                   intervals=intervals(names, np.asarray(vector), cov, positive, units),
                   covariance=pd.DataFrame(cov, index=names, columns=names),
                   sensitivity=pd.DataFrame(sens_rows),
                   identifiability=identifiability(names, cov, positive, jacobian),
                   history=pd.DataFrame(), best_start=start, loss=value,
                   fitted=pd.DataFrame(fitted_rows), settings=settings)

    minima = [laplace(polished(start, order), start) for order, start in enumerate(candidates)]
    if progress is not None:
        progress(total, total)
    history, seconds = pd.DataFrame(rows), time.perf_counter() - started
    return combined_minima([dataclasses.replace(m, history=history, seconds=seconds)
                            for m in minima])


def combined_minima(minima: Sequence[Fit], n_draws: int = 4000, seed: int = 0) -> Fit:
    """One fit from several minima of the same loss (same free parameters).

    The best (lowest loss) minimum is the fit, every other one that is distinct
    from a better one (:func:`.uncertainty.distinct_from`) its ``alternatives``,
    and its ``intervals`` the 5–95 % quantiles over ``n_draws`` draws from the
    mixture of their Laplace Gaussians (:func:`.uncertainty.mixture_draws`).
    """
    kept, vectors, covariances = [], [], []
    for minimum in sorted(minima, key=lambda m: m.loss):
        vector = np.asarray(free_vector(minimum.params, trainable_mask(
            minimum.params, minimum.settings.free))[0])
        covariance = minimum.covariance.to_numpy()
        if distinct_from(vector, vectors, covariances):
            kept.append(dataclasses.replace(minimum, alternatives=[]))
            vectors.append(vector)
            covariances.append(covariance)
    best = dataclasses.replace(kept[0], alternatives=kept[1:])
    if best.alternatives:
        draws = mixture_draws(vectors, covariances, best.mode_weights(), n_draws, seed)
        best.intervals = mixture_intervals(best.intervals, draws)
    return best


def with_values(params: TissueParams, **values: Any) -> TissueParams:
    """A copy of ``params`` with leaves replaced by dotted name, e.g.
    ``with_values(p, **{"division.max_rate_per_h": 0.2})``."""
    for name, value in values.items():
        group, leaf = name.split(".")
        part = getattr(params, group)
        if part is None or not hasattr(part, leaf):
            raise InputError(f"no tissue parameter named {name!r}")
        params = params.replace(**{group: dataclasses.replace(
            part, **{leaf: jnp.asarray(value, jnp.result_type(float))})})
    return params


__all__ = ["DEFAULT_FREE", "CalibrateSettings", "Experiment", "Fit", "combined_minima",
           "recalibrate",
           "secant_jacobian", "steps_per_frame", "with_values"]
