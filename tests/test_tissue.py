"""The differentiable tissue model: steps, gradients, outputs (small, in-memory cases)."""

from __future__ import annotations

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from labloop.errors import InputError
from labloop.measure import UNITS
from labloop.measure.api import COLUMNS
from labloop.tissue import (
    CellType,
    Ellipsoid,
    TissueModel,
    axis_elongation,
    cell_count,
    combine,
    constrain,
    default_params,
    describe,
    freeze,
    initial_state,
    parameter_names,
    partition,
    per_replicate_gradients,
    round_cluster,
    shape,
    simulate,
    to_lineage,
    to_positions,
    to_table,
    trainable_mask,
    unconstrain,
)
from labloop.tissue.division import VOLUME_SPLIT, division_step
from labloop.tissue.growth_factor import bessel_k0, growth_factor_step
from labloop.tissue.neighbours import cell_list_neighbours, dense_neighbours


def _with_rate(params, rate):
    return params.replace(division=dataclasses.replace(params.division,
                                                       max_rate_per_h=jnp.asarray(rate)))


# ------------------------------------------------------------------ neighbours
def test_cell_list_finds_the_same_neighbours_as_all_pairs():
    rng = np.random.default_rng(0)
    n = 150
    pos = np.zeros((n, 3))
    pos[:, :] = rng.uniform(-40, 40, (n, 3))
    alive = jnp.asarray(rng.random(n) < 0.9)
    x = jnp.asarray(pos, jnp.float32)
    dense, over_d = dense_neighbours(x, alive, 12.0, 64)
    cells, over_c = cell_list_neighbours(x, alive, 12.0, 64, 16, dim=3)
    assert int(over_d) == 0 and int(over_c) == 0
    as_sets = lambda idx: [set(r[r < n].tolist()) for r in np.asarray(idx)]  # noqa: E731
    assert as_sets(dense) == as_sets(cells)
    assert sum(map(len, as_sets(cells))) > n  # the test has real neighbours
    # a full grid cell is counted, never silent
    _, overflow = cell_list_neighbours(x, alive, 12.0, 64, 1, dim=3)
    assert int(overflow) > 0


def test_a_full_neighbour_list_keeps_the_nearest_cells():
    # a crowded cluster: ~60 cells in range of the middle ones, lists of 8. Slots are
    # shuffled so that the nearest cells are not the first slots (a list that kept the
    # first slots in range dropped neighbours in contact and let cells overlap)
    rng = np.random.default_rng(1)
    pos = rng.uniform(-15, 15, (300, 3))
    x = jnp.asarray(pos, jnp.float32)
    alive = jnp.ones(300, bool)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = [set(np.argsort(row)[:8].tolist()) for row in d]
    crowded = (d < 12.0).sum(axis=1) > 8
    assert crowded.sum() > 250
    for indices, overflow in (dense_neighbours(x, alive, 12.0, 8),
                              cell_list_neighbours(x, alive, 12.0, 8, 64, dim=3)):
        kept = [set(r[r < 300].tolist()) for r in np.asarray(indices)]
        assert all(kept[i] == nearest[i] for i in np.nonzero(crowded)[0])
        assert int(overflow) == int(np.maximum((d < 12.0).sum(axis=1) - 8, 0).sum())


# ------------------------------------------------------------------ growth factor
def test_growth_factor_is_the_green_function_of_the_sources():
    from scipy.special import k0

    r = np.linspace(0.05, 12.0, 200)
    np.testing.assert_allclose(np.asarray(bessel_k0(jnp.asarray(r, jnp.float32))), k0(r),
                               rtol=2e-5, atol=1e-6)
    model = TissueModel(capacity=4)
    pos = np.array([[0, 0, 0], [0, 0, 10.0], [0, 0, 30.0]])
    state = initial_state(model, pos, [CellType.SOURCE, 1, 1])
    params = default_params()
    out = growth_factor_step(state, params, jax.random.key(0), model).growth_factor
    a, ell = 10.0, 20.0
    expected = [a * np.exp(-5 / ell) / 5, a * np.exp(-10 / ell) / 10, a * np.exp(-30 / ell) / 30]
    np.testing.assert_allclose(np.asarray(out[:3]), expected, rtol=1e-5)
    assert float(out[3]) == 0.0


# ------------------------------------------------------------------ division
def test_many_divisions_per_step_conserve_volume_and_count_overflow():
    model = TissueModel(capacity=6)
    pos = np.array([[0, 0, 0], [0, 0, 20.0], [0, 20.0, 0], [20.0, 0, 0]])
    state = initial_state(model, pos).replace(division_rate_per_h=jnp.asarray([1e3] * 4
                                                                             + [0.0] * 2))
    new = division_step(state, default_params(), jax.random.key(1), model)
    assert int(new.n_alive) == 6
    assert int(new.counters.divisions) == 2 and int(new.counters.overflow) == 2
    radius = np.asarray(new.radius_um)
    divided = radius < 5.0
    assert divided.sum() == 4  # two mothers and their two daughters
    np.testing.assert_allclose(radius[divided], 5.0 * VOLUME_SPLIT, rtol=1e-6)
    volume = (radius[np.asarray(new.alive)] ** 3).sum()
    np.testing.assert_allclose(volume, 4 * 5.0**3, rtol=1e-5)
    ids = np.asarray(new.cell_id)
    assert len(set(ids.tolist())) == 6
    mothers = np.asarray(new.mother)[divided]
    assert sorted(set(mothers.tolist())) == [0, 1]


def test_capacity_overflow_inside_a_scan_is_counted_not_a_crash():
    model = TissueModel(capacity=12)
    params = _with_rate(default_params(n_genes=2), 5.0)
    init = round_cluster(model, 4, n_genes=2)
    traj = simulate(model, params, jax.random.key(0), init, n_frames=2, steps_per_frame=3)
    assert int(traj.final.n_alive) == 12
    assert int(traj.final.counters.overflow) > 0
    assert np.isfinite(np.asarray(traj.final.position_um)).all()


# ------------------------------------------------------------------ gradients
@pytest.mark.slow
def test_pathwise_gradient_matches_central_differences_in_float64():
    with jax.enable_x64(True):
        model = TissueModel(capacity=12, neighbours="cells", max_per_cell=8)
        wall = Ellipsoid(semi_axes_um=jnp.asarray([12.0, 12.0, 14.0]),
                         centre_um=jnp.zeros(3), stiffness_per_h=jnp.asarray(2.0))
        params = default_params(n_genes=2, key=jax.random.key(1), confinement=wall)
        params = params.replace(
            division=dataclasses.replace(params.division, max_rate_per_h=jnp.asarray(1e-30)),
            growth=dataclasses.replace(params.growth, target_radius_um=jnp.asarray(5.5)))
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
        init = round_cluster(model, 9, n_sources=3, n_genes=2, key=jax.random.key(2))

        def loss(raw):
            final = simulate(model, constrain(raw), jax.random.key(0), init, n_frames=2,
                             steps_per_frame=3).final
            return (axis_elongation(final) + jnp.mean(final.gene)
                    + jnp.mean(final.growth_factor) + shape(final)["radius_of_gyration_um"] / 10
                    + 1e29 * jnp.mean(final.division_rate_per_h) + jnp.mean(final.radius_um))

        raw = unconstrain(params)
        flat, unravel = jax.flatten_util.ravel_pytree(raw)
        grad = np.asarray(jax.flatten_util.ravel_pytree(jax.grad(loss)(raw))[0])
        f = jax.jit(lambda v: loss(unravel(v)))
        h = 1e-6
        eye = np.eye(len(flat)) * h
        fd = np.array([(f(flat + e) - f(flat - e)) / (2 * h) for e in eye])
        assert int(simulate(model, params, jax.random.key(0), init, n_frames=2,
                            steps_per_frame=3).final.counters.divisions) == 0
    scale = np.maximum(np.abs(fd), 1e-3 * np.abs(fd).max())
    rel = np.abs(grad - fd) / scale
    assert rel.max() < 1e-4, dict(zip(parameter_names(raw), rel, strict=False))
    assert np.count_nonzero(fd) >= len(fd) - 1


def _one_cell_case():
    model = TissueModel(capacity=4, dt_h=0.5)
    params = _with_rate(default_params(n_genes=1), 0.6)
    init = round_cluster(model, 1, n_genes=1)

    def loss(traj):  # cells after 1.5 h, plus a smooth pathwise part
        final = traj.final
        return jnp.sum(final.weight) + 0.1 * jnp.sum(jnp.where(final.alive,
                                                               final.radius_um, 0.0))

    return model, params, init, loss


@pytest.mark.slow
def test_score_function_gradient_agrees_in_expectation_with_finite_differences():
    model, params, init, loss = _one_cell_case()
    run = {"n_frames": 1, "steps_per_frame": 3}
    n = 3000
    keys = jax.random.split(jax.random.key(3), n)

    def mean_loss(log_rate):
        p = _with_rate(params, jnp.exp(log_rate))
        trajs = jax.vmap(lambda k: simulate(model, p, k, init, **run))(keys)
        return jax.vmap(loss)(trajs)

    h = 0.1
    lr = jnp.log(0.6)
    fd_samples = (mean_loss(lr + h) - mean_loss(lr - h)) / (2 * h)  # common random numbers
    fd, fd_se = float(fd_samples.mean()), float(fd_samples.std() / np.sqrt(n))
    _, grads = per_replicate_gradients(loss, model, params, jax.random.key(4), n, init,
                                            "score", **run)
    g = np.asarray(grads.division.max_rate_per_h) * 0.6  # d/d log λ_max
    sf, sf_se = g.mean(), g.std() / np.sqrt(n)
    assert abs(sf - fd) < 4 * np.hypot(sf_se, fd_se), (sf, sf_se, fd, fd_se)
    _, plain = per_replicate_gradients(loss, model, params, jax.random.key(4), n, init,
                                       "score_no_baseline", **run)
    # the baseline removes the variance due to the loss's mean
    assert g.var() < 0.5 * (np.asarray(plain.division.max_rate_per_h) * 0.6).var()


@pytest.mark.slow
def test_straight_through_gradient_has_the_right_sign():
    model, params, init, loss = _one_cell_case()
    model = dataclasses.replace(model, division_gradient="straight_through")
    from labloop.tissue import gradient_estimate

    _, grad = gradient_estimate(loss, model, params, jax.random.key(0), 64, init,
                                "straight_through", n_frames=1, steps_per_frame=3)
    assert float(grad.division.max_rate_per_h) > 0


def test_expected_growth_keeps_the_forward_run_and_carries_the_offspring_gradient():
    from labloop.tissue import gradient_estimate

    model, params, init, _ = _one_cell_case()
    growth = dataclasses.replace(model, division_gradient="expected_growth")
    key = jax.random.key(4)
    plain = simulate(model, params, key, init, n_frames=1, steps_per_frame=3)
    relaxed = simulate(growth, params, key, init, n_frames=1, steps_per_frame=3)
    np.testing.assert_array_equal(np.asarray(plain.frames.position_um),
                                  np.asarray(relaxed.frames.position_um))
    np.testing.assert_allclose(np.asarray(relaxed.frames.weight), np.asarray(
        plain.frames.weight))

    def count(traj):
        return cell_count(traj.final)

    _, grad = gradient_estimate(count, growth, params, key, 4, init, "expected_growth",
                                n_frames=1, steps_per_frame=3)
    _, fixed = gradient_estimate(count, model, params, key, 4, init, "pathwise",
                                 n_frames=1, steps_per_frame=3)
    # d E[N]/d λ_max: each step adds dt · ∂λ/∂λ_max per living cell; hard draws see none
    assert float(grad.division.max_rate_per_h) > 0
    assert float(fixed.division.max_rate_per_h) == 0.0


@pytest.mark.slow
def test_checkpointing_and_replicates_do_not_change_results():
    model = TissueModel(capacity=24)
    params = default_params(n_genes=2, key=jax.random.key(0))
    init = round_cluster(model, 8, n_sources=2, n_genes=2, key=jax.random.key(1))

    def loss(p, checkpoint):
        traj = simulate(model, p, jax.random.key(2), init, n_frames=2, steps_per_frame=2,
                        checkpoint=checkpoint)
        return axis_elongation(traj.final) + jnp.mean(traj.final.gene)

    plain = jax.grad(loss)(params, None)
    remat = jax.grad(loss)(params, "frame")
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(remat),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ parameters
def test_parameters_reparametrise_freeze_and_carry_units():
    params = default_params(n_genes=2, key=jax.random.key(0))
    back = constrain(unconstrain(params))
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert float(constrain(jax.tree_util.tree_map(lambda x: x - 30.0, unconstrain(params)))
                 .growth_factor.decay_length_um) > 0  # positive whatever the optimiser does
    mask = trainable_mask(params, ["gene.*", "growth_factor.decay_length_um"])
    names = [n for n, m in zip(parameter_names(params), jax.tree_util.tree_leaves(mask),
                               strict=True) if m]
    assert names == ["growth_factor.decay_length_um", "gene.weights", "gene.bias",
                     "gene.input_weights", "gene.production_per_h", "gene.decay_per_h"]
    free, frozen = partition(params, mask)
    assert combine(free, frozen).mechanics.motility_um2_per_h == params.mechanics.\
        motility_um2_per_h
    import optax

    opt = freeze(optax.sgd(1.0), mask)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    assert float(updates.mechanics.motility_um2_per_h) == 0.0
    assert float(updates.growth_factor.decay_length_um) == -1.0
    table = describe(params)
    assert table.set_index("name").loc["mechanics.motility_um2_per_h", "unit"] == "µm²/h"
    with pytest.raises(InputError, match="no tissue parameter"):
        trainable_mask(params, ["gene.nonsense"])


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError):
        TissueModel(dim=4)
    with pytest.raises(InputError):
        TissueModel(division_gradient="magic")
    model = TissueModel(capacity=2)
    with pytest.raises(InputError, match="capacity"):
        initial_state(model, np.zeros((3, 3)))
    with pytest.raises(InputError, match="checkpoint"):
        simulate(model, default_params(), jax.random.key(0),
                 initial_state(model, np.zeros((1, 3))), checkpoint="sometimes")


# ------------------------------------------------------------------ outputs and walls
def test_outputs_speak_the_measure_vocabulary():
    model = TissueModel(capacity=48)
    params = _with_rate(default_params(n_genes=2, key=jax.random.key(0)), 0.3)
    init = round_cluster(model, 12, n_sources=3, n_genes=2, key=jax.random.key(1))
    keys = jax.random.split(jax.random.key(5), 2)
    trajs = jax.vmap(lambda k: simulate(model, params, k, init, n_frames=4,
                                        steps_per_frame=1))(keys)
    table = to_table(trajs)
    assert list(table.columns) == COLUMNS
    assert set(table["quantity"]) <= set(UNITS)
    for q in ("cell_count", "elongation", "division_rate_by_distance_per_h",
              "mean_speed_um_per_h", "nearest_neighbour_um"):
        assert q in set(table["quantity"])
    counts = table.query("quantity == 'cell_count'").sort_values("t")["value"].to_numpy()
    np.testing.assert_allclose(counts, np.asarray(trajs.frames.alive.sum(-1)).mean(0))
    one = trajs.replicate(0)
    lineage = to_lineage(one)
    assert lineage.n_divisions == int(one.final.counters.divisions)  # one step per frame
    assert lineage.nodes["source"].sum() == 3 * 5
    positions = to_positions(trajs)
    assert {"replicate", "t", "time_h", "z", "y", "x", "cell_type"} <= set(positions.columns)
    assert set(positions["cell_type"]) == {"source", "proliferating"}


def test_ellipsoidal_confinement_keeps_cells_inside():
    model = TissueModel(capacity=64)
    wall = Ellipsoid(semi_axes_um=jnp.asarray([15.0, 15.0, 30.0]), centre_um=jnp.zeros(3),
                     stiffness_per_h=jnp.asarray(20.0))
    params = _with_rate(default_params(n_genes=1, confinement=wall), 0.5)
    init = round_cluster(model, 10, n_genes=1)
    final = simulate(model, params, jax.random.key(0), init, n_frames=3,
                     steps_per_frame=10).final
    pos = np.asarray(final.position_um)[np.asarray(final.alive)]
    s = np.sqrt(((pos / np.array([15.0, 15.0, 30.0])) ** 2).sum(1))
    assert int(final.n_alive) > 20
    assert s.max() < 1.15
    assert np.ptp(pos[:, 1]) < 2 * 15.0 * 1.15  # the narrow axes hold
