"""Gradient descent with kernel tracking (harness/train.py) against direct computations, and the
verdicts of the training claims (C11-C16) fed series with the wrong exponent."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import claims.test_sec1_lazy_training as sec1
import claims.test_sec2_linear_model as sec2
import claims.test_sec5_convergence as sec5
import claims.test_sec6_fig1_nonlinear_output as fig1
import claims.test_sec6_fig2_bottleneck as fig2
from harness.fit import (
    CONFIRMED,
    INCONCLUSIVE,
    REFUTED,
    Verdict,
    bound_verdict,
    equality_verdict,
    omega1_verdict,
    positive_limit_verdict,
    round_off_limit,
    upper_bound_verdict,
)
from harness.kernel import tangent_kernel
from harness.models import FullyConnected, sphere_points
from harness.tiers import TIERS
from harness.train import (
    COLLAPSE_NORM_RATIO,
    SOFTMAX_GAIN,
    STOP_CAP,
    STOP_TOLERANCE,
    SWISH_TARGET_SCALE,
    KernelTracker,
    LinearizedNetwork,
    TrainConfig,
    TrainingDivergedError,
    converged_verdict,
    descend,
    fig1_config,
    fig1_point,
    section6_network,
    head_gain,
    learning_rate_rule,
    loss_decay_fit,
    run_facts,
    step_rule,
    synthetic_dataset,
    theorem51_bound_ratio,
    train,
)
from harness.sweep import point_key
from tests.test_fit import series

#: Where swish' = 0: z + 1 + z e^z... = 0 has the root z = -1.2785 (swish is decreasing below it).
SWISH_MINIMUM = -1.2785


def _setup(head="linear", width=6, n=4, dim=3, seed=0, classes=3, **net_kwargs):
    net = FullyConnected(dim, (width,), "tanh", head=head, num_outputs=classes if head == "softmax" else 1, **net_kwargs)
    params, fixed = net.init(jax.random.key(seed))
    data = synthetic_dataset(jax.random.key(seed + 100), n, dim, head, classes if head == "softmax" else 1)
    return net, params, fixed, data


def _direct_gd(net, params, fixed, data, eta, steps):
    """Plain Python gradient descent on L = 1/2 sum ||f~(x_i) - y_i||^2, one step at a time."""

    def loss(p):
        out = jax.vmap(net.apply, in_axes=(None, None, 0))(p, fixed, data.xs)
        return 0.5 * jnp.sum((out - data.ys) ** 2)

    grad = jax.jit(jax.grad(loss))
    path = [params]
    for _ in range(steps):
        g = grad(path[-1])
        path.append(jax.tree_util.tree_map(lambda w, d: w - eta * d, path[-1], g))
    return path


def _jacobian_kernel(net, params, fixed, xs, inner=False):
    """K = J J^T from the full Jacobian of the flattened weights (the definition, Eq. 1)."""
    flat, unravel = ravel_pytree(params)
    fn = net.logits if inner else net.apply

    def outputs(w):
        return jnp.ravel(jax.vmap(fn, in_axes=(None, None, 0))(unravel(w), fixed, xs))

    jac = np.asarray(jax.jacrev(outputs)(flat))
    return jac @ jac.T


# --------------------------------------------------------------------------------------------------
# Divergence
def test_a_too_large_learning_rate_raises_naming_width_seed_and_step():
    net, params, fixed, data = _setup(width=12)
    eta, _, _ = learning_rate_rule(net, params, fixed, data.xs)
    config = TrainConfig(learning_rate=20 * eta, max_steps=500, chunk=10)
    with pytest.raises(TrainingDivergedError, match=r"width 12, seed 3 .*step \d+"):
        train(net, params, fixed, data, config, seed=3)


def test_a_nan_weight_raises_at_step_zero():
    net, params, fixed, data = _setup()
    params = {**params, "V": params["V"].at[0].set(jnp.nan)}
    with pytest.raises(TrainingDivergedError, match="width 6, seed 1 .*step 0"):
        train(net, params, fixed, data, TrainConfig(max_steps=10, chunk=5), seed=1)


def test_bad_configurations_are_clear_errors():
    with pytest.raises(ValueError, match="lr_factor"):
        TrainConfig(lr_factor=2.5)
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="rel_tol"):
        TrainConfig(rel_tol=1.5)
    net, params, fixed, data = _setup()
    wrong = synthetic_dataset(jax.random.key(0), 5, 3)
    with pytest.raises(ValueError, match="targets have shape"):
        train(net, params, fixed, type(data)(data.xs, wrong.ys, {}), TrainConfig(max_steps=2), seed=0)
    with pytest.raises(ValueError, match="softmax head needs num_classes"):
        synthetic_dataset(jax.random.key(0), 4, 3, "softmax", 1)
    with pytest.raises(ValueError, match="unknown output head"):
        synthetic_dataset(jax.random.key(0), 4, 3, "cubic")


# --------------------------------------------------------------------------------------------------
# Stopping rule
def test_stopping_at_the_tolerance_is_exact():
    net, params, fixed, data = _setup()
    config = TrainConfig(rel_tol=1e-3, max_steps=5000, chunk=7)
    r = train(net, params, fixed, data, config, seed=0, progress=lambda line: None)
    assert r.stopped == STOP_TOLERANCE
    assert r.loss.shape == (r.steps + 1,)
    assert r.loss[-1] <= 1e-3 * r.loss[0] < r.loss[-2]  # the first step below the tolerance
    assert r.kernel_steps[-1] == r.steps
    # The final weights are exactly those of T plain GD steps (none beyond the tolerance).
    path = _direct_gd(net, params, fixed, data, r.learning_rate, r.steps)
    got, _ = ravel_pytree(r.params)
    want, _ = ravel_pytree(path[-1])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_stopping_at_the_cap_is_recorded_and_exact():
    net, params, fixed, data = _setup()
    config = TrainConfig(rel_tol=0.0, max_steps=37, chunk=10)  # 37 is not a multiple of the chunk
    r = train(net, params, fixed, data, config, seed=0)
    assert r.stopped == STOP_CAP and r.steps == 37 and r.loss.shape == (38,)
    assert list(r.kernel_steps) == [0, 1, 2, 4, 8, 16, 26, 36, 37]  # chunks of 1, 1, 2, 4, 8, then 10
    path = _direct_gd(net, params, fixed, data, r.learning_rate, 37)
    losses = [0.5 * float(jnp.sum((jax.vmap(net.apply, in_axes=(None, None, 0))(p, fixed, data.xs) - data.ys) ** 2)) for p in path]
    np.testing.assert_allclose(r.loss, losses, rtol=1e-10)


# --------------------------------------------------------------------------------------------------
# The parts of a run, each on its own: the step rule, the descent, the kernel tracker
def _loss_of(net, params, fixed, data) -> float:
    out = jax.vmap(net.apply, in_axes=(None, None, 0))(params, fixed, data.xs)
    return 0.5 * float(jnp.sum((out - data.ys) ** 2))


def test_step_rule_is_the_kernel_rule_or_the_explicit_rate():
    net, params, fixed, data = _setup(head="swish")
    rule = step_rule(net, params, fixed, data.xs, TrainConfig(lr_factor=0.5))
    eta, lam, gain = learning_rate_rule(net, params, fixed, data.xs, lr_factor=0.5)
    assert (rule.eta, rule.lambda_max0, rule.gain) == (eta, lam, gain) and "0.5 / (g^2 lambda_max" in rule.text
    explicit = step_rule(net, params, fixed, data.xs, TrainConfig(learning_rate=0.25))
    assert explicit.eta == 0.25 and math.isnan(explicit.lambda_max0) and explicit.gain == head_gain("swish")
    assert explicit.text == "explicit learning rate"


def test_descend_yields_each_chunk_of_plain_gradient_descent_and_stops_at_the_tolerance():
    net, params, fixed, data = _setup()
    eta = step_rule(net, params, fixed, data.xs, TrainConfig()).eta
    config = TrainConfig(rel_tol=1e-3, max_steps=5000, chunk=7)
    loss0 = _loss_of(net, params, fixed, data)
    chunks = list(descend(net, params, fixed, data, eta, config, loss0, "here", "rule"))
    assert [c.t for c in chunks[:5]] == [1, 2, 4, 8, 15]  # chunks of 1, 1, 2, 4, then 7 steps
    assert all(c.stopped is None for c in chunks[:-1]) and chunks[-1].stopped == STOP_TOLERANCE
    loss = np.concatenate([c.losses for c in chunks])
    assert loss.shape == (chunks[-1].t + 1,) and loss[-1] <= 1e-3 * loss0 < loss[-2]
    path = _direct_gd(net, params, fixed, data, eta, chunks[3].t)
    flat0 = ravel_pytree(params)[0]
    for c in chunks[:4]:
        np.testing.assert_allclose(ravel_pytree(c.params)[0], ravel_pytree(path[c.t])[0], rtol=1e-10, atol=1e-12)
        diff = np.asarray(ravel_pytree(c.params)[0] - flat0)
        assert c.weight_change_2 == pytest.approx(np.linalg.norm(diff), rel=1e-9)
        assert c.weight_change_inf == pytest.approx(np.max(np.abs(diff)), rel=1e-9)
        assert c.losses[0] == pytest.approx(_loss_of(net, path[c.t - len(c.losses)], fixed, data), rel=1e-10)
        np.testing.assert_allclose(c.outputs, jax.vmap(net.apply, in_axes=(None, None, 0))(path[c.t], fixed, data.xs), rtol=1e-10)


def test_descend_names_the_point_and_the_first_bad_step_of_a_divergence():
    net, params, fixed, data = _setup(width=12)
    eta = 20 * step_rule(net, params, fixed, data.xs, TrainConfig()).eta
    loss0 = _loss_of(net, params, fixed, data)
    with pytest.raises(TrainingDivergedError, match=r"diverged at width 12 here, step \d+: loss .*; the rule\)"):
        list(descend(net, params, fixed, data, eta, TrainConfig(max_steps=500, chunk=10), loss0, "width 12 here", "the rule"))


@pytest.mark.parametrize("head", ["swish", "tanh", "softmax"])
def test_kernel_tracker_derives_the_output_kernel_from_the_inner_one_by_the_chain_rule(head):
    net, params, fixed, data = _setup(head=head, n=5)
    tracker = KernelTracker(net, fixed, data.xs, TrainConfig(track_inner=True), "here")
    logits = jax.vmap(net.logits, in_axes=(None, None, 0))(params, fixed, data.xs)
    derived = tracker.output_from_inner(tracker.kernel(params, inner=True), logits)
    direct = tracker.kernel(params)
    np.testing.assert_allclose(derived, direct, rtol=1e-12, atol=1e-14 * np.abs(direct).max())
    np.testing.assert_allclose(derived, _jacobian_kernel(net, params, fixed, data.xs), rtol=1e-10, atol=1e-14)


def test_kernel_tracker_records_delta_k_and_the_inner_kernel_against_the_jacobian():
    net, params, fixed, data = _setup(head="swish")
    eta = step_rule(net, params, fixed, data.xs, TrainConfig()).eta
    path = _direct_gd(net, params, fixed, data, eta, 5)
    tracker = KernelTracker(net, fixed, data.xs, TrainConfig(track_inner=True), "here")
    logits = [jax.vmap(net.logits, in_axes=(None, None, 0))(p, fixed, data.xs) for p in (path[0], path[5])]
    tracker.record(0, path[0], logits[0])
    tracker.record(5, path[5], logits[1])
    k0, k5 = (_jacobian_kernel(net, p, fixed, data.xs) for p in (path[0], path[5]))
    assert tracker.steps == [0, 5] and tracker.change[0] == 0.0
    assert tracker.change[1] == pytest.approx(np.linalg.norm(k5 - k0) / np.linalg.norm(k0), rel=1e-9)
    inner = np.linalg.eigvalsh(_jacobian_kernel(net, path[5], fixed, data.xs, inner=True))
    assert tracker.eig_min[1] == pytest.approx(inner[0], rel=1e-8) and tracker.eig_max[1] == pytest.approx(inner[-1], rel=1e-8)
    swish_prime = jax.vmap(jax.grad(lambda z: z * jax.nn.sigmoid(z)))
    assert tracker.slope_min[1] == pytest.approx(float(np.min(np.abs(swish_prime(logits[1])))), rel=1e-12)
    eig_min, eig_max, slope_min = tracker.inner_curves()
    assert eig_min.shape == eig_max.shape == slope_min.shape == (2,)
    broken = {**path[5], "V": path[5]["V"].at[0].set(jnp.inf)}
    with pytest.raises(TrainingDivergedError, match="diverged at here, step 7: the tangent kernel is not finite"):
        tracker.record(7, broken, logits[1])
    assert KernelTracker(net, fixed, data.xs, TrainConfig(), "here").inner_curves() == (None, None, None)


# --------------------------------------------------------------------------------------------------
# Delta K, weight changes and the learning-rate rule against direct computations
@pytest.mark.parametrize("head", ["linear", "softmax", "swish"])
def test_kernel_change_and_weight_change_match_a_direct_computation(head):
    net, params, fixed, data = _setup(head=head)
    config = TrainConfig(rel_tol=0.0, max_steps=9, chunk=3, track_inner=True, segment_points=3)
    r = train(net, params, fixed, data, config, seed=0)
    path = _direct_gd(net, params, fixed, data, r.learning_rate, 9)
    k0 = _jacobian_kernel(net, params, fixed, data.xs)
    flat0, _ = ravel_pytree(params)
    for i, step in enumerate(r.kernel_steps):
        k = _jacobian_kernel(net, path[step], fixed, data.xs)
        assert r.kernel_change[i] == pytest.approx(np.linalg.norm(k - k0) / np.linalg.norm(k0), rel=1e-9, abs=1e-14)
        diff = np.asarray(ravel_pytree(path[step])[0] - flat0)
        assert r.weight_change_2[i] == pytest.approx(np.linalg.norm(diff), rel=1e-9, abs=1e-14)
        assert r.weight_change_inf[i] == pytest.approx(np.max(np.abs(diff)), rel=1e-9, abs=1e-14)
        inner = _jacobian_kernel(net, path[step], fixed, data.xs, inner=True)
        assert r.inner_eig_min[i] == pytest.approx(np.linalg.eigvalsh(inner)[0], rel=1e-8, abs=1e-12)
    assert r.delta_k == pytest.approx(max(r.kernel_change))
    # Gradient norms along the segment [w0, wT] are the square roots of the kernel's diagonal.
    mid = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), params, path[-1])
    np.testing.assert_allclose(r.segment_grad_norms[1], np.sqrt(np.diag(_jacobian_kernel(net, mid, fixed, data.xs))), rtol=1e-9)


@pytest.mark.parametrize("head", ["linear", "swish", "softmax", "tanh_linear"])
def test_learning_rate_rule(head):
    net, params, fixed, data = _setup(head=head)
    eta, lam, gain = learning_rate_rule(net, params, fixed, data.xs, lr_factor=0.7)
    inner = _jacobian_kernel(net, params, fixed, data.xs, inner=True)
    assert lam == pytest.approx(np.linalg.eigvalsh(inner)[-1], rel=1e-10)
    assert eta == pytest.approx(0.7 / (gain**2 * lam), rel=1e-12)
    # The rule bounds the output kernel: eta * lambda_max(K_out) <= lr_factor (to the inner kernel's change).
    outer = _jacobian_kernel(net, params, fixed, data.xs)
    assert eta * np.linalg.eigvalsh(outer)[-1] <= 0.7 * (1 + 1e-9)


def test_head_gains():
    z = jnp.linspace(-20, 20, 200001)
    swish_prime = jax.vmap(jax.grad(lambda t: t * jax.nn.sigmoid(t)))(z)
    assert head_gain("swish") == pytest.approx(float(jnp.max(jnp.abs(swish_prime))), rel=1e-7)
    assert head_gain("swish") == pytest.approx(1.0998, abs=1e-4)
    assert head_gain("tanh_linear") == pytest.approx(1.0, abs=1e-9)
    assert head_gain("linear") == 1.0
    # ||diag(p) - p p^T|| <= 1/2 for every probability vector p.
    rng = np.random.default_rng(0)
    worst = 0.0
    for c in (2, 3, 7):
        for _ in range(300):
            p = rng.dirichlet(np.full(c, 0.3))
            worst = max(worst, np.linalg.eigvalsh(np.diag(p) - np.outer(p, p))[-1])
    assert worst <= SOFTMAX_GAIN and worst > 0.45
    with pytest.raises(ValueError, match="unknown output head"):
        head_gain("cubic")


# --------------------------------------------------------------------------------------------------
# Determinism, dtypes, data, the linearized model
def test_same_seed_same_numbers():
    runs = []
    for _ in range(2):
        net, params, fixed, data = _setup(head="swish")
        runs.append(train(net, params, fixed, data, TrainConfig(rel_tol=1e-4, max_steps=200, chunk=20, track_inner=True), seed=0))
    a, b = runs
    assert a.steps == b.steps and a.stopped == b.stopped
    for name in ("loss", "kernel_change", "weight_change_2", "weight_change_inf", "inner_eig_min", "head_slope_min", "outputs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_runs_in_float32():
    net = FullyConnected(3, (16,), "tanh")
    params, fixed = net.init(jax.random.key(0), jnp.float32)
    data = synthetic_dataset(jax.random.key(1), 4, 3, dtype=jnp.float32)
    r = train(net, params, fixed, data, TrainConfig(rel_tol=1e-3, max_steps=2000, chunk=50), seed=0)
    assert r.stopped == STOP_TOLERANCE and r.params["V"].dtype == jnp.float32
    assert np.isfinite(r.delta_k)


def test_synthetic_data():
    d = synthetic_dataset(jax.random.key(0), 50, 5, "swish")
    np.testing.assert_allclose(np.linalg.norm(d.xs, axis=1), math.sqrt(5), rtol=1e-12)
    assert d.ys.shape == (50,) and float(jnp.min(d.ys)) >= -0.28  # inside swish's range
    lin = synthetic_dataset(jax.random.key(0), 50, 5)
    # The same inner target g, at half amplitude for swish: g / 2 in [-1/2, 1/2], where swish' >= 0.26.
    np.testing.assert_allclose(d.ys, jax.nn.silu(SWISH_TARGET_SCALE * lin.ys), rtol=1e-12)
    assert "0.5 sin(u . x)" in d.description["target"] and "g(x) = sin(u . x)" in lin.description["target"]
    slope = jax.vmap(jax.grad(jax.nn.silu))(SWISH_TARGET_SCALE * lin.ys)
    assert float(jnp.min(slope)) > 0.25
    hard = synthetic_dataset(jax.random.key(0), 50, 5, "softmax", 3, softmax_targets="one-hot")
    assert hard.ys.shape == (50, 3) and np.all(np.sum(hard.ys, axis=1) == 1) and set(np.unique(hard.ys)) == {0.0, 1.0}
    # The teacher's soft labels: a probability vector, softmax of logits sin(u_k . x) in [-1, 1].
    soft = synthetic_dataset(jax.random.key(0), 50, 5, "softmax", 3)
    np.testing.assert_allclose(np.sum(soft.ys, axis=1), 1.0, rtol=1e-12)
    high, low = (math.exp(1) / (math.exp(1) + 2 * math.exp(-1)), math.exp(-1) / (math.exp(-1) + 2 * math.exp(1)))
    assert float(jnp.max(soft.ys)) <= high and float(jnp.min(soft.ys)) >= low
    logits = np.log(np.asarray(soft.ys))
    spread = logits.max(axis=1) - logits.min(axis=1)
    assert np.all(spread <= 2.0 + 1e-12) and "soft labels" in soft.description["target"]
    with pytest.raises(ValueError, match="unknown softmax_targets 'hard'"):
        synthetic_dataset(jax.random.key(0), 4, 3, "softmax", 3, softmax_targets="hard")
    assert "target" in d.description and d.description["n"] == 50
    again = synthetic_dataset(jax.random.key(0), 50, 5, "swish")
    np.testing.assert_array_equal(d.ys, again.ys)


def test_teacher_labels_train_to_the_tolerance_with_a_kernel_that_moves_where_one_hot_labels_collapse():
    """The softmax head on soft labels converges and its kernel keeps its size; on one-hot labels the
    kernel collapses and the runs never reach the tolerance: converged_verdict calls both out."""
    net = FullyConnected(4, (64,), "tanh", head="softmax", num_outputs=3)
    params, fixed = net.init(jax.random.key(0))
    config = TrainConfig(rel_tol=1e-6, max_steps=4000, chunk=20)
    runs = {}
    for targets in ("teacher", "one-hot"):
        data = synthetic_dataset(jax.random.key(1), 8, 4, "softmax", 3, softmax_targets=targets)
        runs[targets] = train(net, params, fixed, data, config, seed=0)
    soft, hard = runs["teacher"], runs["one-hot"]
    assert soft.stopped == STOP_TOLERANCE and soft.kernel_norm_ratio > 0.5 and soft.delta_k > 0.1
    assert hard.stopped == STOP_CAP and hard.kernel_norm_ratio < COLLAPSE_NORM_RATIO
    # Delta K^2 = 1 + r^2 - 2 r cos: the recorded ratio and cosine are those of K_T against K_0.
    r, c = hard.kernel_norm_ratio, hard.kernel_cosine
    assert hard.kernel_change[-1] == pytest.approx(math.sqrt(1 + r * r - 2 * r * c), rel=1e-9)
    confirmed = Verdict(CONFIRMED, "slope inside the band")
    assert converged_verdict(confirmed, [soft], moving_kernel=True) == confirmed
    capped = converged_verdict(confirmed, [soft, hard])
    assert capped.verdict == INCONCLUSIVE and "1 of 2 runs stopped at the step cap (4000 steps)" in capped.reason
    collapsed = converged_verdict(confirmed, [soft, hard], moving_kernel=True)
    assert "the kernel collapsed in 1 of 2 runs" in collapsed.reason and collapsed.verdict == INCONCLUSIVE
    refuted = Verdict(REFUTED, "outside")
    assert converged_verdict(refuted, [hard], moving_kernel=True) == refuted  # a refutation stands
    facts = run_facts([soft, hard])
    assert facts["stopped_at_cap"] == facts["stopped_at_tolerance"] == 1
    assert facts["kernel_norm_ratio_min"] == hard.kernel_norm_ratio and facts["kernel_cosine_max"] <= 1.0


def test_fig1_swish_runs_start_at_zero_output_and_stay_where_swish_is_increasing():
    """The Fig. 1 swish head starts at f(w_0; x) = 0 (mirrored init) and trains to the tolerance with
    min |swish'(f)| on the path above 0.2 (Theorem 5.1's rho). From the Gaussian init, at the same
    seed, an input starts below swish's minimum (SWISH_MINIMUM) and its path crosses swish' = 0."""
    grid = TIERS["default"].grid("training")
    width, seed = 64, 3
    net = section6_network(width, grid.input_dim, "swish")
    params, fixed = net.init(point_key(seed, width, "init"))
    xs = synthetic_dataset(point_key(seed, width, "data"), grid.n_train, grid.input_dim, "swish").xs
    assert net.output_init == "mirrored"
    np.testing.assert_allclose(jax.vmap(lambda x: net.logits(params, fixed, x))(xs), 0.0, atol=1e-14)
    run = fig1_point(grid, "swish", width, seed, jnp.float64)
    assert run.stopped == STOP_TOLERANCE and float(np.min(run.head_slope_min)) > 0.2
    assert run.kernel_norm_ratio > COLLAPSE_NORM_RATIO and run.delta_k > 0.3
    plain = section6_network(width, grid.input_dim, "swish", output_init="gaussian")
    params, fixed = plain.init(point_key(seed, width, "init"))
    assert float(jnp.min(jax.vmap(lambda x: plain.logits(params, fixed, x))(xs))) < SWISH_MINIMUM
    gaussian = fig1_point(grid, "swish", width, seed, jnp.float64, output_init="gaussian")
    assert float(np.min(gaussian.head_slope_min)) < 1e-3


def test_linearized_network_is_linear_with_the_kernel_of_the_network_at_w0():
    net = FullyConnected(3, (7,), "tanh")
    lin = LinearizedNetwork(net)
    params, fixed = lin.init(jax.random.key(0))
    xs = sphere_points(jax.random.key(1), 5, 3)
    np.testing.assert_allclose(jax.vmap(lin.apply, in_axes=(None, None, 0))(params, fixed, xs),
                               jax.vmap(net.apply, in_axes=(None, None, 0))(params, fixed["fixed"], xs), rtol=1e-14)
    k_net = tangent_kernel(net, params, fixed["fixed"], xs, method="jacobian")
    moved = jax.tree_util.tree_map(lambda w: w + 0.3, params)
    k_lin = tangent_kernel(lin, moved, fixed, xs, method="blocked")
    np.testing.assert_allclose(k_lin, k_net, rtol=1e-12)
    with pytest.raises(ValueError, match="linear head"):
        LinearizedNetwork(FullyConnected(3, (7,), "tanh", head="swish"))


# --------------------------------------------------------------------------------------------------
# Theorem 5.1 helpers
def test_decay_fit_and_theorem_ratio_on_exact_curves():
    q = 0.01
    loss = 2.0 * (1 - q) ** np.arange(400)
    fit = loss_decay_fit(loss)
    assert fit.rate == pytest.approx(-math.log1p(-q), rel=1e-10) and fit.r2 == pytest.approx(1.0)
    eta, mu, rho = 0.5, 0.08, 0.5  # eta mu rho^2 = q
    np.testing.assert_allclose(theorem51_bound_ratio(loss, eta, mu, rho), 1.0, rtol=1e-10)
    slower = 2.0 * (1 - q / 2) ** np.arange(400)
    assert theorem51_bound_ratio(slower, eta, mu, rho).max() > 1.5  # a slower decay violates Eq. 15
    with pytest.raises(ValueError, match="eta mu rho"):
        theorem51_bound_ratio(loss, 10.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="finite positive"):
        loss_decay_fit(np.array([1.0, 0.0, 1.0]))


# --------------------------------------------------------------------------------------------------
# Tier grids: the runs shared between claims are the same runs
@pytest.mark.parametrize("name", list(TIERS))
def test_training_grids_are_consistent(name):
    grid = TIERS[name].grid("training")
    assert grid.curve_width in grid.fig1_widths  # C12 reuses C11's runs
    assert set(grid.linear_model_widths) <= set(grid.fig1_widths)  # C16's partner is a C11 run
    assert len(grid.fig1_widths) >= 3 and len(grid.bottleneck_sizes) >= 3 and len(grid.narrow_wide_widths) >= 1
    assert fig1_config(grid).track_inner and fig1_config(grid).segment_points >= 2


# --------------------------------------------------------------------------------------------------
# Each training claim's check, with its own margin, rejects a series with the wrong exponent.
CLAIM_CHECKS = [
    ("C11 linear", lambda f: upper_bound_verdict(f, -0.5, fig1.LINEAR_SLOPE_MARGIN), [-0.5, -1.0], [0.0, -0.3]),
    ("C11 non-linear", lambda f: omega1_verdict(f, fig1.OMEGA1_SLOPE_MARGIN, fig1.OMEGA1_FLOOR), [0.0], [-0.5, -0.25, 0.25]),
    ("C13 vs m_b", lambda f: upper_bound_verdict(f, -0.5, fig2.BOTTLENECK_SLOPE_MARGIN), [-0.5, -0.9], [0.0, -0.2]),
    ("C14 inf-norm", lambda f: upper_bound_verdict(f, -0.5, sec1.INF_NORM_SLOPE_MARGIN), [-0.5], [0.0, -0.3]),
    ("C14 two-norm", lambda f: equality_verdict(f, 0.0, sec1.TWO_NORM_SLOPE_MARGIN), [0.0], [-0.5, -0.2, 0.2]),
    ("C15 kernel change", lambda f: omega1_verdict(f, sec5.OMEGA1_SLOPE_MARGIN, sec5.OMEGA1_FLOOR), [0.0], [-0.5, -0.25]),
]


def test_c13_narrowest_check_needs_a_positive_limit_over_its_grid():
    """C13's narrowest bottleneck is judged on the limit alone over the default grid's wide widths
    (64x): a constant level passes, growing or not; decays m^(-1/2) and m^(-1/4) and a level below
    the floor do not."""
    widths = TIERS["default"].grid("training").narrow_wide_widths
    check = lambda slope, level=0.9: positive_limit_verdict(series(slope, noise=0.4, seeds=28, level=level, widths=widths), fig2.OMEGA1_FLOOR)
    assert check(0.0).verdict == CONFIRMED and check(0.1).verdict == CONFIRMED
    for slope in (-0.5, -0.25):
        assert check(slope).verdict != CONFIRMED, slope
    assert check(0.0, level=0.5 * fig2.OMEGA1_FLOOR).verdict != CONFIRMED


@pytest.mark.parametrize("name,check,right,wrong", CLAIM_CHECKS, ids=[c[0] for c in CLAIM_CHECKS])
def test_each_training_claim_check_rejects_a_wrong_exponent(name, check, right, wrong):
    for slope in right:
        assert check(series(slope, noise=0.1, seeds=16, level=0.5)).verdict == CONFIRMED, slope
    for slope in wrong:
        assert check(series(slope, noise=0.1, seeds=16, level=0.5)).verdict != CONFIRMED, slope


def test_omega1_claims_reject_a_level_below_the_floor():
    for module in (fig1, sec5):
        low = series(0.0, noise=0.1, seeds=16, level=0.5 * module.OMEGA1_FLOOR)
        assert omega1_verdict(low, module.OMEGA1_SLOPE_MARGIN, module.OMEGA1_FLOOR).verdict != CONFIRMED


def test_level_checks_reject_the_wrong_side():
    # C12: the linear curve must stay below its level, the non-linear ones end above theirs.
    assert bound_verdict(0.5 * fig1.NEAR_CONSTANT_LEVEL, fig1.NEAR_CONSTANT_LEVEL, "x").confirmed
    assert not bound_verdict(2 * fig1.NEAR_CONSTANT_LEVEL, fig1.NEAR_CONSTANT_LEVEL, "x").confirmed
    assert not bound_verdict(fig1.OMEGA1_FLOOR / (0.5 * fig1.OMEGA1_FLOOR), 1.0, "x").confirmed
    # C16: constant within round-off, and the network's kernel measurably moving.
    tol = round_off_limit(jnp.float64)
    assert sec2.constant_kernel_verdict(0.0, 1e-2, tol).confirmed
    assert not sec2.constant_kernel_verdict(1e-9, 1e-2, tol).confirmed  # a linear model whose kernel moved
    assert not sec2.constant_kernel_verdict(0.0, 1e-9, tol).confirmed  # a network whose kernel did not
    assert not sec2.constant_kernel_verdict(float("nan"), 1e-2, tol).confirmed
    # C14 Eq. 2 and C15 Eq. 15: ratios above 1 are violations.
    assert not bound_verdict(1.0001, sec1.EQ2_LIMIT, "x").confirmed
    assert not bound_verdict(1.0001, sec5.BOUND_LIMIT, "x").confirmed
