"""Random nucleus properties: size, shape, orientation, brightness, cell-cycle timing.

Each function draws one property for ``n`` nuclei from an explicit generator, so
the population simulation composes them and a JAX tissue model can reuse them to
give its point cells a look.

Orientation convention: a unit quaternion ``(x, y, z, w)`` (scalar last, as
:class:`scipy.spatial.transform.Rotation`) rotating *physical* ``(x, y, z)``
vectors; the nucleus semi-axes ``a, b, c`` lie along the rotated ``x, y, z``
axes.
"""

from __future__ import annotations

import numpy as np

from labloop.synth.config import SynthConfig


def lognormal_with_moments(mean: float, std: float, n: int, rng: np.random.Generator
                           ) -> np.ndarray:
    """Draw ``n`` lognormal values with the given arithmetic mean and standard deviation.

    With ``σ² = ln(1 + std²/mean²)`` and ``μ = ln(mean) − σ²/2``.
    """
    sigma2 = np.log1p((std / mean) ** 2)
    return rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), size=n)


def draw_full_radii(n: int, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Full-grown (pre-division) equivalent-sphere radii in µm, lognormal."""
    return lognormal_with_moments(config.radius_mean_um, config.radius_std_um, n, rng)


def draw_axis_factors(n: int, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Semi-axis factors ``(a, b, c)``, to be multiplied by the equivalent radius.

    Each factor is log-uniform in ``[aspect_max^(−½), aspect_max^(½)]``, then all
    are divided by their geometric mean so the volume equals that of the sphere
    (and the longest-to-shortest ratio stays ≤ ``aspect_max``). In 2D only ``a, b``
    (in the image plane) vary, preserving the area, and ``c = 1``.

    Returns
    -------
    ndarray, shape ``(n, 3)``
    """
    half_log = 0.5 * np.log(config.aspect_max)
    n_varied = 2 if config.is_2d else 3
    logs = rng.uniform(-half_log, half_log, size=(n, n_varied))
    logs -= logs.mean(axis=1, keepdims=True)
    factors = np.ones((n, 3))
    factors[:, :n_varied] = np.exp(logs)
    return factors


def draw_orientations(n: int, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random orientations as unit quaternions ``(x, y, z, w)``, ``w ≥ 0``.

    In 3D: a normalised 4D Gaussian vector (uniform on rotations). In 2D: a
    rotation by a uniform angle about the optical ``z`` axis, so the nucleus is an
    ellipse in the image plane.

    Returns
    -------
    ndarray, shape ``(n, 4)``
    """
    if config.is_2d:
        half_angle = rng.uniform(0.0, np.pi / 2, size=n)
        quats = np.zeros((n, 4))
        quats[:, 2] = np.sin(half_angle)
        quats[:, 3] = np.cos(half_angle)
        return quats
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    quats[quats[:, 3] < 0] *= -1.0
    return quats


def draw_brightness(n: int, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Relative brightness, lognormal with mean 1 and log-sd ``brightness_sigma``."""
    sigma = config.brightness_sigma
    return rng.lognormal(-0.5 * sigma**2, sigma, size=n)


def draw_cycle_durations(n: int, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Cell-cycle durations in hours, gamma with mean ``cycle_mean_h``, shape ``cycle_shape``."""
    k = config.cycle_shape
    return rng.gamma(k, config.cycle_mean_h / k, size=n)


def draw_division_axes(n: int, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random unit vectors ``(z, y, x)`` (in the ``y, x`` plane for 2D)."""
    axes = rng.normal(size=(n, 3))
    if config.is_2d:
        axes[:, 0] = 0.0
    norm = np.linalg.norm(axes, axis=1, keepdims=True)
    return axes / np.maximum(norm, np.finfo(np.float64).tiny)


def radius_at_age(full_radius_um: np.ndarray, age_h: np.ndarray, cycle_h: np.ndarray
                  ) -> np.ndarray:
    """Equivalent radius (µm) of a nucleus whose volume grows linearly over the cycle.

    ``V(age) = V_full·(1 + φ)/2`` with phase ``φ = min(age / cycle, 1)``, i.e.
    ``r = r_full·((1 + φ)/2)^(1/3)``: half the full volume at birth, full at division.
    """
    phase = np.clip(age_h / cycle_h, 0.0, 1.0)
    return full_radius_um * np.cbrt(0.5 * (1.0 + phase))


def division_brightness_boost(age_h: np.ndarray, born_by_division: np.ndarray,
                              config: SynthConfig) -> np.ndarray:
    """Brightness factor ``1 + boost·2^(−age/half-life)`` of daughters; 1 for others.

    Parameters
    ----------
    age_h
        Time since birth in hours (0 in a daughter's first frame).
    born_by_division
        Whether the nucleus is a daughter of a division seen in the simulation
        (cells present at the start have no known birth and get no boost).
    config
        ``division_boost`` and ``division_boost_half_life_h``.
    """
    decay = np.exp2(-np.asarray(age_h) / config.division_boost_half_life_h)
    return 1.0 + config.division_boost * decay * np.asarray(born_by_division, dtype=np.float64)
