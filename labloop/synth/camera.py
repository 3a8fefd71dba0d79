"""The camera: photon scale for a requested SNR, background, shot and read noise.

Signal-to-noise ratio (SNR), as used throughout labloop::

    SNR = mean_i S_i / sqrt(B + σ_r²)

``S_i`` is the expected signal of nucleus ``i`` in detected photons above the
background at the voxel nearest its centre (after the PSF blur), averaged over
the nuclei whose centre lies in the image over all frames; ``B`` is the mean
background in photons per voxel and ``σ_r`` the read noise in photo-electrons
rms. The denominator is the noise standard deviation of a background voxel. A
grey level is ``offset + gain · (Poisson(B + S) + N(0, σ_r²))``, rounded and
clipped to uint16; gain and offset do not change the SNR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labloop.errors import InputError
from labloop.synth.config import UINT16_MAX, SynthConfig
from labloop.synth.geometry import nearest_voxel


def noise_sigma_photons(config: SynthConfig) -> float:
    """Noise standard deviation of a background voxel, ``sqrt(B + σ_r²)`` in photons."""
    return float(np.sqrt(config.background_photons + config.read_noise**2))


def photons_per_brightness(centre_signal: np.ndarray, config: SynthConfig) -> float:
    """Photons per unit of rendered brightness that give the requested SNR.

    Parameters
    ----------
    centre_signal
        Noise-free rendered signal (relative brightness units) at the centre voxel
        of every nucleus in the image, see :func:`labloop.synth.render.centre_signal`.
    config
        ``snr``, ``background_photons`` and ``read_noise``.

    Returns
    -------
    float
        ``snr · sqrt(B + σ_r²) / mean(centre_signal)``; with no nucleus in the
        image, a nucleus of brightness 1 is assumed (mean signal 1).
    """
    values = np.asarray(centre_signal, dtype=np.float64)
    mean = float(values.mean()) if values.size and values.mean() > 0 else 1.0
    return config.snr * noise_sigma_photons(config) / mean


def background_photons(shape_zyx: Sequence[int], voxel_size_um: Sequence[float],
                       config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Expected background photons per voxel: a flat level with a linear ramp.

    ``B(p) = B · (1 + g · u·(p − p₀) / L)``: ramp amplitude ``g`` =
    ``background_gradient`` along a uniformly random direction ``u`` (in the image
    plane for 2D), ``p₀`` the centre of the field of view and ``L`` its extent
    along ``u``, so ``B(p)`` spans ``B·(1 ± g/2)`` and averages ``B``.

    Returns
    -------
    ndarray of float64, shape ``(Z, Y, X)``
    """
    shape = np.asarray(shape_zyx)
    voxel = np.asarray(voxel_size_um, dtype=np.float64)
    direction = rng.normal(size=3) * (shape > 1)
    norm = np.linalg.norm(direction)
    level = np.full(tuple(shape), config.background_photons, dtype=np.float64)
    if config.background_gradient == 0 or norm == 0:
        return level
    direction /= norm
    length = float(np.sum(np.abs(direction) * shape * voxel))  # extent of the FOV along u
    ramp = np.zeros(tuple(shape))
    for axis in range(3):
        centred_um = (np.arange(shape[axis]) - (shape[axis] - 1) / 2) * voxel[axis]
        along = [1, 1, 1]
        along[axis] = -1
        ramp = ramp + direction[axis] * centred_um.reshape(along)
    return level * (1.0 + config.background_gradient * ramp / length)


def expose(expected_photons: np.ndarray, config: SynthConfig, rng: np.random.Generator
           ) -> np.ndarray:
    """Draw a camera image: Poisson shot noise, Gaussian read noise, gain, offset.

    Parameters
    ----------
    expected_photons
        Expected detected photons per voxel (background + signal), any shape.
    config
        ``read_noise`` (photo-electrons rms), ``gain_adu_per_photon``, ``offset_adu``.
    rng
        Source of the noise.

    Returns
    -------
    ndarray of uint16
        ``offset + gain · (Poisson(λ) + N(0, σ_r²))``, rounded and clipped to
        ``[0, 65535]``.
    """
    electrons = rng.poisson(np.maximum(expected_photons, 0.0)).astype(np.float64)
    if config.read_noise > 0:
        electrons += rng.normal(0.0, config.read_noise, size=electrons.shape)
    grey = config.offset_adu + config.gain_adu_per_photon * electrons
    return np.clip(np.rint(grey), 0, UINT16_MAX).astype(np.uint16)


def measured_snr(frames: Sequence[np.ndarray], centres_um: Sequence[np.ndarray],
                 voxel_size_um: Sequence[float], exclusion_um: float = 8.0) -> float:
    """The SNR of a filmed movie (module definition), measured at its detected nuclei.

    The signal is the mean grey level at the voxels nearest the nuclei's centres
    less the mean background; background mean and noise are those of the voxels
    farther than ``exclusion_um`` from every centre, less those brighter than
    their median by 3 robust (MAD) standard deviations (light of nuclei whose
    centre is outside the image or was not detected). On tissue movies rendered
    by :func:`~labloop.synth.movie.render_movie` at SNR 2–10 and detected by the
    shipped U-Net this reads 0.97–1.04 × the set SNR; on
    :func:`~labloop.synth.movie.simulate_movie` films at their true centres
    0.94–1.05 × (a background ramp adds to the noise).

    Parameters
    ----------
    frames
        ``(Z, Y, X)`` frames (grey levels).
    centres_um
        Per frame, ``(n, 3)`` nucleus centres ``z, y, x`` (µm, voxel 0 at 0).
    voxel_size_um
        ``(z, y, x)`` voxel size.
    exclusion_um
        Distance from a centre beyond which a voxel counts as background.

    Returns
    -------
    float
    """
    from scipy import ndimage

    voxel = np.asarray(voxel_size_um, dtype=np.float64)
    signal, background = [], []
    for frame, centres in zip(frames, centres_um, strict=True):
        frame = np.asarray(frame, dtype=np.float64)
        if len(centres) == 0:
            continue
        index = np.clip(nearest_voxel(centres, voxel), 0, np.asarray(frame.shape) - 1)
        seeds = np.zeros(frame.shape, dtype=bool)
        seeds[tuple(index.T)] = True
        far = ndimage.distance_transform_edt(~seeds, sampling=voxel) > exclusion_um
        signal.append(frame[tuple(index.T)])
        background.append(frame[far])
    if not signal or sum(b.size for b in background) < 100:
        raise InputError("too few nuclei or background voxels to measure the SNR")
    values, far = np.concatenate(signal), np.concatenate(background)
    level = np.median(far)
    spread = 1.4826 * np.median(np.abs(far - level))
    noise = far[far < level + 3.0 * spread]  # no light of nuclei the centres missed
    return float((values.mean() - noise.mean()) / noise.std())
