"""The infinite-width kernel (C19), the Prop. 2.2 bound helper (C17), the Appendix B identity (C18),
and the claim checks of C17-C19 fed series of the wrong exponent."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import claims.test_appB_parameterization as c18
import claims.test_ntk_limit as c19
import claims.test_sec2_hessian_bounds_kernel as c17
from harness.fit import CONFIRMED, REFUTED, bound_verdict, equality_verdict, power_law_fit, upper_bound_verdict
from harness.hessian import hessian_matrix
from harness.infinite_width import (
    gaussian_pair_expectation,
    infinite_width_ntk,
    layer_kernels,
    ntk_from_layer_kernels,
    standard_normal_rule,
)
from harness.kernel import tangent_kernel
from harness.models import ACTIVATIONS, NON_SMOOTH_ACTIVATIONS, FullyConnected, shallow_network, sphere_points
from harness.sweep import point_key

SMOOTH = [a for a in ACTIVATIONS if a not in NON_SMOOTH_ACTIVATIONS]

# (a, b, c): variances of u and v and their covariance, including the degenerate cases.
COVARIANCES = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (1.0, 1.0, 1.0), (2.0, 0.5, -1.0), (0.0, 1.5, 0.0), (3.0, 3.0, 2.9)]


# --------------------------------------------------------------------------------------------------
# The 2-D rule
@pytest.mark.parametrize("a,b,c", COVARIANCES)
def test_pair_expectation_matches_closed_forms(a, b, c):
    e = lambda g, h: float(gaussian_pair_expectation(g, h, a, b, c))  # noqa: E731
    assert e(lambda u: u, lambda v: v) == pytest.approx(c, abs=1e-13)
    assert e(lambda u: u**2, lambda v: v**2) == pytest.approx(a * b + 2 * c * c, rel=1e-12, abs=1e-13)
    # cos u cos v = (cos(u - v) + cos(u + v)) / 2 and E cos(s) = exp(-Var(s) / 2).
    expected = 0.5 * (math.exp(-(a + b - 2 * c) / 2) + math.exp(-(a + b + 2 * c) / 2))
    assert e(np.cos, np.cos) == pytest.approx(expected, rel=1e-12)
    # exp(u + v) weights the Gaussian towards its tail (mean shift sqrt(Var(u + v))): a hard case,
    # exact while the shift stays well inside [-9, 9] (activations grow at most linearly).
    if a + b + 2 * c <= 6:
        assert e(np.exp, np.exp) == pytest.approx(math.exp((a + b + 2 * c) / 2), rel=1e-11)


def test_pair_expectation_matches_monte_carlo():
    a, b, c = 1.3, 0.8, 0.6
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 2_000_000))
    l = np.linalg.cholesky(np.array([[a, c], [c, b]]))
    u, v = l @ z
    samples = np.tanh(u) * np.tanh(v)
    quad = float(gaussian_pair_expectation(np.tanh, np.tanh, a, b, c))
    assert abs(samples.mean() - quad) < 5 * samples.std() / math.sqrt(samples.size)


def test_pair_expectation_vectorizes_and_refuses_bad_covariances():
    a = np.array([1.0, 0.5])
    out = gaussian_pair_expectation(lambda u: u, lambda v: v, a, 1.0, np.array([0.2, -0.1]))
    np.testing.assert_allclose(out, [0.2, -0.1], atol=1e-13)
    with pytest.raises(ValueError, match="not a covariance"):
        gaussian_pair_expectation(np.tanh, np.tanh, 1.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="non-negative"):
        gaussian_pair_expectation(np.tanh, np.tanh, -1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_pair_expectation(np.tanh, np.tanh, np.nan, 1.0, 0.0)
    with pytest.raises(ValueError, match="nodes"):
        standard_normal_rule(2)


def _pairs(scale):
    rng = np.random.default_rng(1)
    a = scale * rng.uniform(0.15, 1.0, 40)
    b = scale * rng.uniform(0.15, 1.0, 40)
    rho = np.concatenate([[1.0, -1.0, 0.0], rng.uniform(-1, 1, 37)])
    return a, b, rho * np.sqrt(a * b)


@pytest.mark.parametrize("scale", [1.0, 2.0, 20.0])
def test_quadrature_matches_the_erf_closed_forms(scale):
    from harness.infinite_width import _pair_kernels_closed_form, _pair_kernels_quadrature

    a, b, c = _pairs(scale)
    s_q, d_q = _pair_kernels_quadrature("erf", a, b, c, 97)
    s_c, d_c = _pair_kernels_closed_form("erf", a, b, c)
    np.testing.assert_allclose(s_q, s_c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d_q, d_c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", SMOOTH)
def test_quadrature_has_converged_for_every_smooth_activation(activation):
    from harness.infinite_width import _pair_kernels_quadrature

    for scale in (1.0, 20.0):
        a, b, c = _pairs(scale)
        coarse = _pair_kernels_quadrature(activation, a, b, c, 97)
        fine = _pair_kernels_quadrature(activation, a, b, c, 201)
        for x, y in zip(coarse, fine):
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-11)


def test_relu_closed_form_matches_monte_carlo():
    from harness.infinite_width import _pair_kernels_closed_form

    a, b, c = 1.2, 0.7, -0.4
    rng = np.random.default_rng(2)
    u, v = np.linalg.cholesky(np.array([[a, c], [c, b]])) @ rng.standard_normal((2, 2_000_000))
    s, d = _pair_kernels_closed_form("relu", np.array([a]), np.array([b]), np.array([c]))
    for samples, value in [(np.maximum(u, 0) * np.maximum(v, 0), s[0]), ((u > 0) * (v > 0) * 1.0, d[0])]:
        assert abs(samples.mean() - value) < 5 * samples.std() / math.sqrt(samples.size)


# --------------------------------------------------------------------------------------------------
# The kernel against networks
def _empirical_kernels(net, xs, seeds, width):
    out = []
    for seed in seeds:
        params, fixed = net.init(point_key(seed, width, "init"))
        out.append(np.asarray(tangent_kernel(net, params, fixed, xs, method="structured")))
    return np.stack(out)


@pytest.mark.parametrize(
    "net",
    [
        FullyConnected(5, (400,), "tanh"),
        shallow_network(400, 5, "softplus"),
        FullyConnected(5, (400,), "gelu", train_hidden=False),
        FullyConnected(5, (400,), "erf", num_outputs=2),
    ],
    ids=["all-trained", "shallow-sign-output", "random-features", "two-outputs"],
)
def test_one_hidden_layer_kernel_is_the_exact_mean(net):
    """With one hidden layer E[K_m] = Theta_inf at every width: the seed average must agree to 5 SE."""
    xs = sphere_points(jax.random.key(3), 5, 5)
    kernels = _empirical_kernels(net, xs, range(48), 400)
    k_inf = infinite_width_ntk(net, xs)
    mean = kernels.mean(axis=0)
    se = kernels.std(axis=0, ddof=1) / math.sqrt(len(kernels))
    assert np.all(np.abs(mean - k_inf) <= 5 * se + 1e-12)
    # Each layer's term is really there (or really absent): the kernel with the other layers
    # trained misses by far more than the noise.
    if net.train_hidden:
        other = dataclasses.replace(net, train_output=not net.train_output)
    else:
        other = dataclasses.replace(net, train_hidden=True)
    assert np.linalg.norm(mean - infinite_width_ntk(other, xs)) > 10 * np.linalg.norm(mean - k_inf)


@pytest.mark.parametrize("activation,depth", [("tanh", 2), ("swish", 3), ("erf", 2), ("relu", 2)])
def test_deep_kernel_matches_wide_networks(activation, depth):
    """E[K_m] = Theta_inf + O(1/m): the mean over seeds at m = 1024 within 5 SE + 5/m of the limit."""
    width, seeds = 1024, range(12)
    net = FullyConnected(4, (width,) * depth, activation)
    xs = sphere_points(jax.random.key(4), 4, 4)
    kernels = _empirical_kernels(net, xs, seeds, width)
    k_inf = infinite_width_ntk(net, xs)
    mean = kernels.mean(axis=0)
    se = kernels.std(axis=0, ddof=1) / math.sqrt(len(kernels))
    assert np.all(np.abs(mean - k_inf) <= 5 * se + 5.0 / width * np.abs(k_inf).max())
    # A wrong recursion (e.g. without the Sigma_dot factors) misses by far more than that.
    kernels_ = layer_kernels(activation, depth, np.asarray(xs))
    wrong = sum(kernels_.sigma)
    assert np.linalg.norm(mean - wrong) > 10 * np.linalg.norm(mean - k_inf)


def test_closed_form_and_quadrature_kernels_agree_and_depths_share_layers():
    xs = np.asarray(sphere_points(jax.random.key(5), 7, 3))
    net = FullyConnected(3, (1, 1, 1), "erf")
    closed = infinite_width_ntk(net, xs, method="closed_form")
    quad = infinite_width_ntk(net, xs, method="quadrature")
    assert np.max(np.abs(closed - quad)) < 1e-12
    kernels = layer_kernels("tanh", 3, xs)
    for depth in (1, 2, 3):
        direct = infinite_width_ntk(FullyConnected(3, (9,) * depth, "tanh"), xs)
        np.testing.assert_allclose(ntk_from_layer_kernels(kernels, depth), direct, rtol=1e-14, atol=1e-15)
    # Unrolled: Theta = sum_l Sigma^(l) prod_{k > l} Sigma_dot^(k).
    unrolled = sum(s * np.prod(kernels.sigma_dot[l:], axis=0) for l, s in enumerate(kernels.sigma))
    np.testing.assert_allclose(ntk_from_layer_kernels(kernels, 3), unrolled, rtol=1e-13)


def test_infinite_width_ntk_refuses_what_has_no_limit():
    xs = np.asarray(sphere_points(jax.random.key(6), 3, 4))
    with pytest.raises(ValueError, match="standard parameterization"):
        infinite_width_ntk(FullyConnected(4, (8,), "tanh", parameterization="standard"), xs)
    with pytest.raises(ValueError, match="linear head"):
        infinite_width_ntk(FullyConnected(4, (8,), "tanh", head="softmax", num_outputs=3), xs)
    with pytest.raises(ValueError, match="shape"):
        infinite_width_ntk(FullyConnected(4, (8,), "tanh"), xs[:, :3])
    with pytest.raises(ValueError, match="no closed form"):
        infinite_width_ntk(FullyConnected(4, (8,), "tanh"), xs, method="closed_form")
    with pytest.raises(ValueError, match="smooth activation"):
        infinite_width_ntk(FullyConnected(4, (8,), "relu"), xs, method="quadrature")
    with pytest.raises(ValueError, match="unknown method"):
        infinite_width_ntk(FullyConnected(4, (8,), "tanh"), xs, method="simpson")
    with pytest.raises(ValueError, match="depth"):
        ntk_from_layer_kernels(layer_kernels("tanh", 1, xs), 2)


# --------------------------------------------------------------------------------------------------
# C17: the bound helper on a tiny model against a direct computation
def _unit(tree):
    n = math.sqrt(sum(float(jnp.sum(leaf * leaf)) for leaf in jax.tree_util.tree_leaves(tree)))
    return jax.tree_util.tree_map(lambda leaf: leaf / n, tree)


def test_kernel_change_bound_against_dense_hessians():
    net = FullyConnected(3, (6, 5), "tanh")
    params0, fixed = net.init(jax.random.key(7))
    xs = sphere_points(jax.random.key(8), 2, 3)
    u = _unit(jax.tree_util.tree_map(lambda w: jax.random.normal(jax.random.key(9), w.shape), params0))
    radius = 2.0
    at = lambda t: jax.tree_util.tree_map(lambda w, d: w + t * d, params0, u)  # noqa: E731
    flat_u = ravel_pytree(u)[0]

    grad_fn = jax.jit(lambda p, x: ravel_pytree(jax.grad(net.output_component)(p, fixed, x, 0))[0])

    def grads(p):
        return [np.asarray(grad_fn(p, x)) for x in xs]

    ts = np.linspace(0.0, radius, 81)
    ks, sup = [], np.zeros((2, 2))
    for i, t in enumerate(ts):
        p = at(t)
        g = grads(p)
        hs = [np.asarray(hessian_matrix(net.output_component, p, fixed, x, 0)) for x in xs]
        hn = [float(np.max(np.abs(np.linalg.eigvalsh(h)))) for h in hs]
        ks.append(float(g[0] @ g[1]))
        # The derivative of K_(x,z) along u (module docstring of C17) against a finite difference.
        if i in (0, 40):
            deriv = float(flat_u @ hs[0] @ g[1] + g[0] @ hs[1] @ flat_u)
            eps = 1e-5
            gp, gm = grads(at(t + eps)), grads(at(t - eps))
            assert deriv == pytest.approx(float(gp[0] @ gp[1] - gm[0] @ gm[1]) / (2 * eps), rel=1e-7, abs=1e-10)
        gn = [float(np.linalg.norm(v)) for v in g]
        sup = np.maximum(sup, np.outer(hn, gn) + np.outer(gn, hn))
    direct_change = abs(ks[-1] - ks[0])
    assert direct_change <= radius * sup[0, 1]

    # The helper, with dense and with Lanczos norms, at 0, R/2 and R.
    for method in ("dense", "lanczos"):
        points = [
            c17.measure_point(net, at(t), fixed, xs, key=jax.random.key(10), tol=1e-10, max_iters=200, method=method)
            for t in (0.0, radius / 2, radius)
        ]
        measured, bound = c17.kernel_change_bound(points, radius)
        assert measured[0, 1] == pytest.approx(direct_change, rel=1e-10)
        np.testing.assert_allclose(points[0].gradient_norms, [float(np.linalg.norm(v)) for v in grads(at(0.0))], rtol=1e-12)
        # The sampled sup is a lower bound of the sup over the fine grid: never a looser bound.
        assert np.all(bound <= radius * sup * (1 + 1e-8))
        assert np.all(measured <= bound)
    dense = c17.measure_point(net, at(radius), fixed, xs, key=jax.random.key(10), tol=1e-10, max_iters=200, method="dense")
    np.testing.assert_allclose(points[-1].hessian_norms, dense.hessian_norms, rtol=1e-8)


def test_kernel_change_bound_refuses_bad_input():
    point = c17.PointMeasurement(np.ones(2), np.eye(2), True)
    with pytest.raises(ValueError, match="both ends"):
        c17.kernel_change_bound([point], 1.0)
    with pytest.raises(ValueError, match="radius"):
        c17.kernel_change_bound([point, point], -1.0)
    with pytest.raises(ValueError, match="scalar output"):
        net = FullyConnected(3, (4,), "tanh", num_outputs=2)
        params, fixed = net.init(jax.random.key(0))
        c17.measure_point(net, params, fixed, jnp.ones((1, 3)), key=jax.random.key(0), tol=1e-3, max_iters=10)


def test_training_path_points_lie_on_a_descending_path_at_exact_distances():
    net = FullyConnected(3, (16, 16), "tanh")
    params0, fixed = net.init(jax.random.key(11))
    xs = sphere_points(jax.random.key(12), 6, 3)
    ys = 2.0 * jnp.sign(jax.random.normal(jax.random.key(13), (6,)))
    radii = (0.5, 1.0, 2.0)
    points, losses, eta, steps = c17.training_path_points(net, params0, fixed, xs, ys, radii)
    flat0 = ravel_pytree(params0)[0]
    for r in radii:
        dist = float(jnp.linalg.norm(ravel_pytree(points[r])[0] - flat0))
        assert dist == pytest.approx(r, rel=1e-10)
        assert losses[r] < losses[0.0]
    assert eta > 0 and steps >= 1
    with pytest.raises(RuntimeError, match="reached distance"):
        c17.training_path_points(net, params0, fixed, xs, ys, (1e6,), max_steps=3)


# --------------------------------------------------------------------------------------------------
# C18: the Appendix B identity behind the claim
def test_standard_parameterization_rescales_the_fan_in_m_layers_by_m():
    m, d = 12, 3
    nets = {p: FullyConnected(d, (m, m), "tanh", parameterization=p) for p in ("ntk", "standard")}
    xs = sphere_points(jax.random.key(14), 5, d)
    k, k1 = {}, {}
    for p, net in nets.items():
        params, fixed = net.init(jax.random.key(15))  # same draws: the same function
        k[p] = np.asarray(tangent_kernel(net, params, fixed, xs, method="jacobian"))
        k1[p] = c18.first_layer_kernel(net, params, fixed, xs)
        # The first layer's part against its Jacobian.
        jac = jax.vmap(lambda x: jax.grad(net.output_component)(params, fixed, x, 0)["W1"].ravel())(xs)
        np.testing.assert_allclose(k1[p], np.asarray(jac @ jac.T), rtol=1e-12)
    np.testing.assert_allclose(k["standard"] - k1["standard"], m * (k["ntk"] - k1["ntk"]), rtol=1e-11)
    np.testing.assert_allclose(k1["standard"], d * k1["ntk"], rtol=1e-11)


# --------------------------------------------------------------------------------------------------
# Each claim check of C17-C19 with its own target and margin, fed a series of the wrong exponent.
WIDTHS = [32, 64, 128, 256, 512]


def _series(slope, noise=0.1, seeds=16, seed=0):
    rng = np.random.default_rng(seed)
    w = np.repeat(WIDTHS, seeds).astype(float)
    y = (w / w[0]) ** slope * np.exp(noise * rng.normal(size=w.size))
    return power_law_fit(w, y, np.tile(np.arange(seeds), len(WIDTHS)))


CLAIM_CHECKS = [
    ("C17 change", lambda f: upper_bound_verdict(f, -0.5, c17.CHANGE_SLOPE_MARGIN), -0.5, [0.0, -0.2]),
    ("C18 ratio", lambda f: equality_verdict(f, -0.5, c18.RATIO_SLOPE_MARGIN), -0.5, [0.0, -1.0, -0.25]),
    ("C18 kernel", lambda f: equality_verdict(f, 1.0, c18.KERNEL_SLOPE_MARGIN), 1.0, [0.5, 0.0, 1.5]),
    ("C18 hessian", lambda f: equality_verdict(f, 0.5, c18.HESSIAN_SLOPE_MARGIN), 0.5, [0.0, 1.0]),
    ("C19 error", lambda f: equality_verdict(f, -0.5, c19.ERROR_SLOPE_MARGIN), -0.5, [0.0, -1.0, -0.3]),
    ("C19 variance", lambda f: equality_verdict(f, -1.0, c19.VARIANCE_SLOPE_MARGIN), -1.0, [-0.5, -2.0, 0.0]),
]


@pytest.mark.parametrize("name,check,right,wrong", CLAIM_CHECKS, ids=[c[0] for c in CLAIM_CHECKS])
def test_each_claim_check_rejects_a_wrong_exponent(name, check, right, wrong):
    assert check(_series(right)).verdict == CONFIRMED
    for slope in wrong:
        assert check(_series(slope)).verdict != CONFIRMED, slope


def test_inequality_checks_reject_violations():
    assert bound_verdict(1.2, c17.BOUND_RATIO_LIMIT, "ratio").verdict == REFUTED
    assert bound_verdict(0.2, c17.BOUND_RATIO_LIMIT, "ratio").verdict == CONFIRMED
    # C19's positive-definiteness check rejects the depth-0 kernel x . z / d on n > d points.
    xs = np.asarray(sphere_points(jax.random.key(16), 12, 4))
    eig = np.linalg.eigvalsh(layer_kernels("tanh", 1, xs).sigma[0])
    cond = eig[-1] / eig[0] if eig[0] > 0 else math.inf
    assert bound_verdict(cond, c19.PD_MAX_CONDITION, "cond").verdict == REFUTED
    eig = np.linalg.eigvalsh(infinite_width_ntk(FullyConnected(4, (1,), "tanh"), xs))
    assert bound_verdict(eig[-1] / eig[0], c19.PD_MAX_CONDITION, "cond").verdict == CONFIRMED
