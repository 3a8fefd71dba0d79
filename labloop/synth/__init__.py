"""Simulated time-lapses of fluorescent nuclei with ground truth.

Two independent parts, so that positions from another simulator (e.g. the JAX
tissue model) can be rendered the same way:

- :func:`simulate_cells` — nuclei moving (persistent random walk, soft
  repulsion), growing and dividing in a box larger than the field of view;
  returns the true :class:`~labloop.lineage.Lineage` in µm.
- :func:`render_movie` — soft ellipsoids, Gaussian PSF, background, shot and
  read noise at a requested SNR; returns a uint16 ``(T, Z, Y, X)`` movie.

:func:`simulate_movie` runs both from one :class:`SynthConfig`.

Examples
--------
>>> from labloop.synth import SynthConfig, simulate_movie
>>> movie = simulate_movie(SynthConfig(frames=3, shape=(8, 64, 64), n_cells=10, seed=1))
>>> movie.image.shape
(3, 8, 64, 64)
"""

from labloop.synth.camera import measured_snr, noise_sigma_photons, photons_per_brightness
from labloop.synth.cells import restrict_to_fov, simulate_cells
from labloop.synth.config import SynthConfig
from labloop.synth.movie import SyntheticMovie, render_movie, simulate_movie
from labloop.synth.render import centre_signal, render_nuclei

__all__ = [
    "SynthConfig",
    "SyntheticMovie",
    "centre_signal",
    "measured_snr",
    "noise_sigma_photons",
    "photons_per_brightness",
    "render_movie",
    "render_nuclei",
    "restrict_to_fov",
    "simulate_cells",
    "simulate_movie",
]
