"""The worst-point search of C4 (harness.worst_hessian) against exact answers on small networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from harness import worst_hessian as wh
from harness.hessian import cacheable, hessian_matrix
from harness.models import FullyConnected, sphere_points
from harness.rng import normal, normal_like


def _net_point(activation="tanh", width=16, depth=2, d=4, seed=1):
    net = FullyConnected(d, (width,) * depth, activation)
    params, fixed = net.init(jax.random.key(seed), jnp.float64)
    x = sphere_points(jax.random.key(seed + 1), 1, d)[0]
    return net, params, fixed, x


def _dense_eigenvalues(net, params, fixed, x):
    return np.linalg.eigvalsh(np.asarray(hessian_matrix(net.output_component, params, fixed, x, 0)))


def _dense_norm(net, params, fixed, x):
    evals = _dense_eigenvalues(net, params, fixed, x)
    return max(abs(evals[0]), abs(evals[-1]))


def test_extreme_pair_is_exact_on_the_whole_space():
    """With as many Lanczos steps as weights, the extreme Ritz pairs are the Hessian's extreme
    eigenpairs to round-off (values against eigvalsh, vectors by their residual)."""
    net, params, fixed, x = _net_point(width=3, depth=1, d=2)
    p = ravel_pytree(params)[0].size
    fn = cacheable(net.output_component)
    top, v_top, bottom, v_bottom = wh._extreme_pair(fn, params, (fixed, x, 0), normal_like(jax.random.key(3), params), p)
    evals = _dense_eigenvalues(net, params, fixed, x)
    h = np.asarray(hessian_matrix(net.output_component, params, fixed, x, 0))
    scale = np.max(np.abs(evals))
    for value, vector, exact in ((top, v_top, evals[-1]), (bottom, v_bottom, evals[0])):
        v = np.asarray(ravel_pytree(vector)[0])
        assert abs(float(value) - exact) <= 1e-10 * scale
        assert np.linalg.norm(h @ v - float(value) * v) <= 1e-7 * scale


def test_a_refresh_never_returns_less_than_the_start_rayleigh_quotient():
    """The refresh's lower-bound property: the extreme Ritz value from a start v is >= v . H v, and
    <= the true extreme eigenvalue (interlacing), on a net with more weights than steps."""
    net, params, fixed, x = _net_point()
    h = np.asarray(hessian_matrix(net.output_component, params, fixed, x, 0))
    evals = np.linalg.eigvalsh(h)
    fn = cacheable(net.output_component)
    for i in range(5):
        start = normal_like(jax.random.key(10 + i), params)
        v = np.asarray(ravel_pytree(start)[0])
        rayleigh = v @ h @ v / (v @ v)
        top, _, bottom, _ = wh._extreme_pair(fn, params, (fixed, x, 0), start, wh.LANCZOS_STEPS)
        assert rayleigh - 1e-12 <= float(top) <= evals[-1] + 1e-12
        assert evals[0] - 1e-12 <= float(bottom) <= rayleigh + 1e-12


def test_eigenvalue_gradient_is_the_derivative_of_the_top_eigenvalue():
    """Hellmann-Feynman: grad_W (v . H(W) v) with v the top unit eigenvector is d lambda_max / dW,
    checked along random directions by central differences of the dense eigenvalue; the gradient
    of v . H v with an unnormalized v (the nearest wrong variant) is off by |v|^2."""
    net, params, fixed, x = _net_point()
    flat, unravel = ravel_pytree(params)
    h = np.asarray(hessian_matrix(net.output_component, params, fixed, x, 0))
    evals, evecs = np.linalg.eigh(h)
    v = evecs[:, -1]
    grad = np.asarray(ravel_pytree(wh._eigenvalue_gradient(cacheable(net.output_component), params, (fixed, x, 0), unravel(jnp.asarray(v))))[0])
    eps = 1e-5
    for i in range(3):
        u = np.asarray(normal(jax.random.key(20 + i), (flat.size,)))
        plus = _dense_eigenvalues(net, unravel(flat + eps * u), fixed, x)[-1]
        minus = _dense_eigenvalues(net, unravel(flat - eps * u), fixed, x)[-1]
        numeric = (plus - minus) / (2 * eps)
        assert abs(grad @ u - numeric) <= 1e-5 * max(1.0, abs(numeric))
    doubled = np.asarray(ravel_pytree(wh._eigenvalue_gradient(cacheable(net.output_component), params, (fixed, x, 0), unravel(jnp.asarray(2 * v))))[0])
    np.testing.assert_allclose(doubled, 4 * grad, rtol=1e-10, atol=1e-14)


def test_gd_path_direction_interpolates_the_linearized_model():
    """f(W0; x_i) + grad f(W0; x_i) . d = y_i for the returned d, and d lies in the span of the
    gradients (the minimum-norm such d, where gradient flow of the linearized model ends)."""
    net, params, fixed, _ = _net_point()
    xs = sphere_points(jax.random.key(7), wh.GD_INPUTS, net.input_dim)
    ys = np.asarray(normal(jax.random.key(8), (wh.GD_INPUTS,)))
    d = wh.gd_path_direction(cacheable(net.output_component), params, (fixed, 0), xs, ys)
    dflat = np.asarray(ravel_pytree(d)[0])
    jac = np.stack([np.asarray(ravel_pytree(jax.grad(net.output_component)(params, fixed, x, 0))[0]) for x in xs])
    f0 = np.array([float(net.output_component(params, fixed, x, 0)) for x in xs])
    np.testing.assert_allclose(f0 + jac @ dflat, ys, atol=1e-9)
    coef, *_ = np.linalg.lstsq(jac.T, dflat, rcond=None)
    np.testing.assert_allclose(jac.T @ coef, dflat, atol=1e-9 * np.linalg.norm(dflat))


@pytest.mark.parametrize("activation", ["tanh", "swish"])
def test_search_beats_the_best_of_100_random_points_of_the_ball(activation):
    """On a small net the search's point has a larger ||H|| (dense) than every one of 100 points
    drawn uniformly on the sphere of radius R (the ball's most displaced points); its lower bound
    is the dense norm at its point, and the point lies in the ball."""
    radius = 4.0
    net, params, fixed, x = _net_point(activation)
    flat, unravel = ravel_pytree(params)
    random_best = 0.0
    for i in range(100):
        u = np.asarray(normal(jax.random.key(100 + i), (flat.size,)))
        random_best = max(random_best, _dense_norm(net, unravel(flat + radius * u / np.linalg.norm(u)), fixed, x))
    xs = sphere_points(jax.random.key(3), wh.GD_INPUTS, net.input_dim)
    starts = wh.start_directions(net, params, fixed, x, normal_like(jax.random.key(7), params), jax.random.key(8),
                                 xs, np.asarray(normal(jax.random.key(9), (wh.GD_INPUTS,))))
    assert set(starts) == set(wh.START_NAMES)
    found = wh.worst_hessian_norm(net.output_component, params, (fixed, x, 0), radius, starts, jax.random.key(5))
    moved = jax.tree_util.tree_map(jnp.add, params, found.displacement)
    exact = _dense_norm(net, moved, fixed, x)
    assert float(jnp.linalg.norm(ravel_pytree(found.displacement)[0])) <= radius * (1 + 1e-12)
    assert found.lower_bound <= exact * (1 + 1e-10)
    assert found.lower_bound >= exact * (1 - 1e-6)
    assert exact > random_best, (exact, random_best)
    assert found.by_start[found.start] == found.lower_bound
    assert all(found.by_start[name] >= found.at_start[name] for name in starts)


def test_bad_input_is_refused_before_any_work():
    net, params, fixed, x = _net_point()
    start = {"random": normal_like(jax.random.key(0), params)}
    with pytest.raises(ValueError, match="radius must be positive"):
        wh.worst_hessian_norm(net.output_component, params, (fixed, x, 0), 0.0, start, jax.random.key(0))
    with pytest.raises(ValueError, match="at least one start"):
        wh.worst_hessian_norm(net.output_component, params, (fixed, x, 0), 1.0, {}, jax.random.key(0))
    with pytest.raises(ValueError, match="is zero"):
        zero = {"random": jax.tree_util.tree_map(jnp.zeros_like, params)}
        wh.worst_hessian_norm(net.output_component, params, (fixed, x, 0), 1.0, zero, jax.random.key(0))


def test_a_search_that_stops_finding_at_the_widest_net_makes_the_slope_inconclusive():
    """A steep slope passes the upper bound whatever its cause; if the search found no more than
    the random point at the widest net, the verdict says so and does not confirm."""
    from harness.fit import CONFIRMED, INCONCLUSIVE, REFUTED, Verdict

    confirmed = Verdict(CONFIRMED, "slope -0.9: below")
    working = {32: 2.0, 512: 1.4}
    assert wh.worst_point_verdict(confirmed, working) is confirmed
    stalled = wh.worst_point_verdict(confirmed, {32: 2.0, 512: 1.02})
    assert stalled.verdict == INCONCLUSIVE and "m = 512" in stalled.reason and "1.020x" in stalled.reason
    refuted = Verdict(REFUTED, "slope 0.0: above")
    assert wh.worst_point_verdict(refuted, {32: 2.0, 512: 1.02}) is refuted
