"""The Taylor-remainder search of C20 (harness.taylor) against closed forms and random probing."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.hessian import hessian_matrix
from harness.models import FullyConnected, shallow_network, sup_abs_second_derivative
from harness.taylor import one_neuron_direction, start_directions, taylor_remainder, worst_remainder


def _quadratic(p, a, b):
    return 0.5 * p["w"] @ a @ p["w"] + b @ p["w"]


def test_on_a_quadratic_the_search_reaches_half_the_extreme_eigenvalue_times_r_squared():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    eigenvalues = np.array([-3.0, 2.0, 1.5] + [0.1] * 9)
    a = jnp.asarray(q @ np.diag(eigenvalues) @ q.T)
    params, args = {"w": jnp.asarray(rng.normal(size=12))}, (a, jnp.asarray(rng.normal(size=12)))
    start = {"random": {"w": jnp.asarray(rng.normal(size=12))}}
    worst = worst_remainder(_quadratic, params, args, 2.0, start, steps=200)
    # r(dw) = dw^T A dw / 2 exactly: its largest |value| on ||dw|| = 2 is 3 * 4 / 2 = 6.
    assert worst.remainder == pytest.approx(6.0, rel=1e-6)
    assert worst.remainder <= 6.0 * (1 + 1e-12)
    # and nothing is gained without steps
    assert worst_remainder(_quadratic, params, args, 2.0, start, steps=0).remainder == pytest.approx(worst.at_start["random"])


def test_an_affine_function_has_no_remainder():
    fn = lambda p, c: c @ p["w"] + 3.0
    params = {"w": jnp.arange(5.0)}
    dw = {"w": jnp.ones(5) * 0.7}
    assert taylor_remainder(fn, params, (jnp.arange(5.0) - 2,), dw) <= 1e-14


def test_the_search_beats_the_best_of_100_random_points_of_the_ball():
    net = FullyConnected(2, (16, 16), "tanh")
    params, fixed = net.init(jax.random.key(3))
    x = jnp.array([0.6, -0.8]) * math.sqrt(2)
    args, radius = (fixed, x, 0), 1.0
    starts = start_directions(net, params, fixed, x, jax.random.key(4))
    worst = worst_remainder(net.output_component, params, args, radius, starts, steps=30)
    best_random = 0.0
    for i in range(100):
        key_dir, key_len = jax.random.split(jax.random.key(100 + i))
        direction = jax.tree_util.tree_map(lambda w: jax.random.normal(jax.random.fold_in(key_dir, w.size), w.shape), params)
        norm = math.sqrt(sum(float(jnp.vdot(d, d)) for d in jax.tree_util.tree_leaves(direction)))
        length = radius * float(jax.random.uniform(key_len)) ** (1 / net.num_params)  # uniform in the ball
        dw = jax.tree_util.tree_map(lambda d: d * length / norm, direction)
        best_random = max(best_random, taylor_remainder(net.output_component, params, args, dw))
    assert worst.remainder > 2 * best_random
    assert set(worst.by_start) == {"random", "one-neuron", "gradient"}
    assert all(worst.by_start[s] >= worst.at_start[s] for s in worst.by_start)  # ascent never loses


def test_the_one_neuron_start_of_the_shallow_net_is_its_top_hessian_eigenvector():
    net = shallow_network(12, 3, "tanh")
    params, fixed = net.init(jax.random.key(5))
    x = jnp.array([1.0, -0.5, 0.3])
    direction = one_neuron_direction(net, params, fixed, x)["W1"].ravel()
    h = np.asarray(hessian_matrix(net.output_component, params, fixed, x, 0))
    evals, evecs = np.linalg.eigh(h)
    top = evecs[:, int(np.argmax(np.abs(evals)))]
    assert abs(float(direction @ top)) == pytest.approx(1.0, abs=1e-10)


def test_bad_arguments_are_value_errors():
    params = {"w": jnp.ones(3)}
    args = (jnp.eye(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="radius must be positive"):
        worst_remainder(_quadratic, params, args, 0.0, {"random": params})
    with pytest.raises(ValueError, match="at least one start"):
        worst_remainder(_quadratic, params, args, 1.0, {})
    with pytest.raises(ValueError, match="start direction 'z' is zero"):
        worst_remainder(_quadratic, params, args, 1.0, {"z": {"w": jnp.zeros(3)}})
    with pytest.raises(ValueError, match="steps must be >= 0"):
        worst_remainder(_quadratic, params, args, 1.0, {"random": params}, steps=-1)


def test_beta_sigma_of_tanh_is_its_closed_form():
    # tanh'' = -2 tanh sech^2 reaches 4 / (3 sqrt 3) at tanh(z) = 1 / sqrt 3.
    assert sup_abs_second_derivative("tanh") == pytest.approx(4 / (3 * math.sqrt(3)), rel=1e-12)
