"""Levenberg–Marquardt polish of a fit after Adam.

Adam with a decaying step follows the gradient of the loss; where two
parameters trade off along a narrow, curved valley (the maximum division rate
against the gene read-out weight: a movie fixes the rates they produce, not
each) it creeps along the valley floor and stops short of the optimum. A
Gauss–Newton step uses the residuals' Jacobian, i.e. the curvature of the
whole valley, and reaches its floor in a few steps. Each step solves

    (JᵀJ + μ diag JᵀJ) δ = −Jᵀ r

and is accepted only if it lowers the objective (which may be a swapped loss;
for the default ``½ Σ r²`` this is exact Levenberg–Marquardt); ``μ`` shrinks
after an accepted step and grows after a rejected one. The residuals' weights
(their variances, which grow with the model's mean for counts) are held at
each step's start: the steps converge to the iteratively reweighted point, the
Poisson likelihood's for counting variances and the one Adam's gradient (which
holds the variances fixed) seeks too, not to the minimum of the loss's value,
which a variance that grows with the mean pulls upwards. ``J`` is whatever the
fit differentiates with (central secants with common random numbers by
default), so a polish step costs ``2 n_free + 1`` model evaluations (the
secants, and the loss with the weights at its start) plus the trials (each
gives the loss and the residuals at once) and no gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: most a single polish step may move any parameter in optimiser space
#: (a factor e^0.5 ≈ 1.65 for positive parameters)
MAX_STEP = 0.5
#: trials with growing damping before a polish step gives up
MAX_TRIALS = 6


@dataclass(frozen=True)
class PolishStep:
    """One accepted (or final rejected) step: ``loss`` after it and the damping ``μ``."""

    loss: float
    damping: float
    accepted: bool


def levenberg_marquardt(evaluate: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]],
                        jacobian: Callable[[np.ndarray, np.ndarray], np.ndarray],
                        start: np.ndarray, iterations: int, tolerance: float, *,
                        damping: float = 1e-2,
                        progress: Callable[[int], None] | None = None,
                        ) -> tuple[np.ndarray, list[PolishStep]]:
    """Polish ``start`` by at most ``iterations`` damped Gauss–Newton steps.

    Parameters
    ----------
    evaluate
        ``(x, anchor) -> (loss, r)``: the objective (a step is accepted only if it
        lowers it) and the standardised residuals (1-D) at ``x``, weighted as at
        ``anchor`` (the step's start), from one model evaluation.
    jacobian
        ``(x, anchor) -> ∂r/∂x`` of shape ``(len(r), len(x))``, weights as at ``anchor``.
    start
        Starting vector in optimiser space.
    iterations
        Most Jacobian evaluations (accepted steps).
    tolerance
        Stop once an accepted step lowers the loss by less than this fraction.
    damping
        Initial Marquardt damping ``μ``.
    progress
        Called with the number of iterations done after each one.

    Returns
    -------
    (vector, steps)
        The polished vector (``start`` if nothing improved) and one
        :class:`PolishStep` per iteration.
    """
    x = np.asarray(start, dtype=float)
    steps: list[PolishStep] = []
    for _ in range(iterations):
        value, r = evaluate(x, x)
        jac = np.asarray(jacobian(x, x), dtype=float)
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(jac))):
            break
        gradient, curvature = jac.T @ r, jac.T @ jac
        scale = np.maximum(np.diag(curvature), 1e-12)
        accepted = False
        for _ in range(MAX_TRIALS):
            delta = -np.linalg.lstsq(curvature + damping * np.diag(scale), gradient,
                                     rcond=None)[0]
            delta *= min(1.0, MAX_STEP / max(float(np.abs(delta).max()), 1e-300))
            trial_value, _ = evaluate(x + delta, x)
            if np.isfinite(trial_value) and trial_value < value:
                improvement = (value - trial_value) / max(abs(value), 1e-300)
                x, value, accepted = x + delta, trial_value, True
                damping = max(damping / 3.0, 1e-6)
                break
            damping *= 4.0
        steps.append(PolishStep(loss=value, damping=damping, accepted=accepted))
        if progress is not None:
            progress(len(steps))
        if not accepted or improvement < tolerance:
            break
    return x, steps


__all__ = ["MAX_STEP", "PolishStep", "levenberg_marquardt"]
