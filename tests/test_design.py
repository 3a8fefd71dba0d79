"""Design by gradients: objectives and the optimisation loop on a tiny cluster."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from labloop.design import (
    design,
    elongation_loss,
    extension_loss,
    rate_by_distance,
    target_size_loss,
    weighted_sum,
)
from labloop.errors import InputError
from labloop.tissue import TissueModel, default_params, initial_state, round_cluster, simulate
from labloop.tissue.simulate import Trajectory


def _trajectory(positions: np.ndarray) -> Trajectory:
    model = TissueModel(capacity=len(positions))
    state = initial_state(model, positions)
    frames = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), state)
    return Trajectory(frames, model.dt_h, 1, 3)


def _with_sources(proliferating: np.ndarray, sources: np.ndarray) -> Trajectory:
    from labloop.tissue import CellType

    positions = np.concatenate([proliferating, sources])
    kinds = np.r_[np.full(len(proliferating), CellType.PROLIFERATING),
                  np.full(len(sources), CellType.SOURCE)]
    model = TissueModel(capacity=len(positions))
    state = initial_state(model, positions, kinds)
    frames = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), state)
    return Trajectory(frames, model.dt_h, 1, 3)


def test_extension_rewards_growth_away_from_the_sources():
    rng = np.random.default_rng(1)
    ball = rng.normal(size=(100, 3)) * 5.0
    sources = np.array([[0.0, 0.0, -12.0]] * 4) + rng.normal(size=(4, 3))
    tip = np.array([0.0, 0.0, 12.0])
    far = np.concatenate([ball, rng.normal(size=(30, 3)) + tip])    # a tip at +x
    near = np.concatenate([ball, rng.normal(size=(30, 3)) - tip])   # by the sources
    extension, symmetric = extension_loss(), elongation_loss()
    base = float(extension(_with_sources(ball, sources)))
    gain_far = base - float(extension(_with_sources(far, sources)))
    gain_near = base - float(extension(_with_sources(near, sources)))
    assert gain_far > 0.3 and gain_near < 0.05
    # the symmetric objective rewards growth at either end
    round_loss = float(symmetric(_with_sources(ball, sources)))
    for grown in (far, near):
        assert float(symmetric(_with_sources(grown, sources))) < round_loss - 0.3


def test_weighted_sum_adds_weighted_terms():
    rng = np.random.default_rng(2)
    traj = _trajectory(rng.normal(size=(50, 3)) * np.array([1.0, 1.0, 2.0]))
    shape_term, size_term = elongation_loss(), target_size_loss(100.0, from_frame=1)
    combined = weighted_sum((1.0, shape_term), (3.0, size_term))
    expected = float(shape_term(traj)) + 3.0 * float(size_term(traj))  # size term: 0.25
    assert float(combined(traj)) == pytest.approx(expected, rel=1e-6)
    assert float(size_term(traj)) == pytest.approx(0.25)
    with pytest.raises(InputError):
        weighted_sum()
    with pytest.raises(InputError):
        weighted_sum((float("nan"), shape_term))


def test_objectives_reward_the_right_shapes():
    rng = np.random.default_rng(0)
    rod = rng.normal(size=(200, 3)) * np.array([1.0, 1.0, 3.0])
    ball = rng.normal(size=(200, 3))
    loss = elongation_loss()
    assert float(loss(_trajectory(rod))) < -0.9  # −log 3 ≈ −1.1
    assert abs(float(loss(_trajectory(ball)))) < 0.15
    size = target_size_loss(100.0, from_frame=1)
    assert float(size(_trajectory(ball))) == pytest.approx(1.0)
    with pytest.raises(InputError):
        target_size_loss(0.0, 1)


def _tiny_cluster(division_gradient: str, max_rate_per_h: float):
    """A 2-gene model, random parameters and an 8-cell cluster with 2 sources."""
    model = TissueModel(capacity=24, division_gradient=division_gradient, dt_h=0.5)
    params = default_params(n_genes=2, key=jax.random.key(0))
    params = params.replace(division=dataclasses.replace(
        params.division, max_rate_per_h=jnp.asarray(max_rate_per_h)))
    init = round_cluster(model, 8, n_sources=2, n_genes=2, key=jax.random.key(1))
    return model, params, init


def test_design_updates_only_the_free_parameters():
    model, params, init = _tiny_cluster("straight_through", 0.3)
    result = design(model, params, init, elongation_loss(), jax.random.key(2),
                    optimizer=optax.adam(0.1), n_iterations=2, n_replicates=2, n_frames=2,
                    steps_per_frame=2)
    assert len(result.history) == 2 and np.isfinite(result.history["loss"]).all()
    assert float(result.params.mechanics.adhesion_um2_per_h) == pytest.approx(
        float(params.mechanics.adhesion_um2_per_h))
    assert float(result.params.division.max_rate_per_h) == pytest.approx(0.3)
    assert not np.allclose(np.asarray(result.params.gene.weights),
                           np.asarray(params.gene.weights))
    traj = simulate(model, result.params, jax.random.key(3), init, n_frames=2,
                    steps_per_frame=2)
    profile = rate_by_distance(traj, bin_width_um=10.0, n_bins=4)
    assert list(profile.columns) == ["bin_lo_um", "bin_hi_um", "rate_per_h", "growth_factor",
                                     "n"]
    assert profile["n"].sum() > 0


@pytest.mark.parametrize("common", [True, False])
def test_common_random_numbers_reuse_the_replicates(common: bool):
    # with a zero step the parameters never change, so the loss changes between
    # iterations only if the replicates' random streams do
    model, params, init = _tiny_cluster("expected_growth", 0.5)
    result = design(model, params, init, elongation_loss(), jax.random.key(2),
                    optimizer=optax.sgd(0.0), n_iterations=3, n_replicates=2, n_frames=2,
                    steps_per_frame=2, common_random_numbers=common)
    losses = result.history["loss"].to_numpy()
    assert result.settings["common_random_numbers"] is common
    if common:
        np.testing.assert_array_equal(losses, losses[0])
    else:
        assert np.unique(losses).size == 3
