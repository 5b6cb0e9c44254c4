"""Tangent-kernel implementations against the full Jacobian product, and the kernel limit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.kernel import (
    infinite_width_shallow_diagonal,
    kernel_diagonal,
    relative_kernel_change,
    tangent_kernel,
)
from harness.models import ACTIVATIONS, FullyConnected, shallow_network, sphere_points

NETS = [
    FullyConnected(3, (20, 15), "tanh"),
    FullyConnected(3, (20, 7, 10), "swish", head="softmax", num_outputs=3),
    FullyConnected(3, (12, 12), "gelu", num_outputs=2),
    FullyConnected(3, (20,), "sigmoid", head="swish"),
    FullyConnected(3, (20, 9), "tanh", parameterization="standard"),
    FullyConnected(3, (20,), "tanh", train_hidden=False),
    shallow_network(30, 2, "softplus"),
]


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("net", NETS, ids=lambda n: n.describe())
@pytest.mark.parametrize("inner", [False, True], ids=["output", "inner"])
def test_every_method_matches_the_full_jacobian_product(net, inner):
    params, fixed = net.init(jax.random.key(0))
    xs = sphere_points(jax.random.key(1), 7, net.input_dim)
    reference = tangent_kernel(net, params, fixed, xs, inner=inner, method="jacobian")
    c = net.num_out
    assert reference.shape == (7 * c, 7 * c)
    for method in ["structured", "blocked", "auto"]:
        # A budget of ~2 Jacobian rows forces several blocks.
        got = tangent_kernel(net, params, fixed, xs, inner=inner, method=method, memory_budget=2 * c * net.num_params * 8)
        assert _rel(got, reference) < 1e-13, method
    for budget in [3 * c * net.num_params * 8, 200]:
        diag = kernel_diagonal(net, params, fixed, xs, inner=inner, memory_budget=budget)
        np.testing.assert_allclose(diag, jnp.diag(reference), rtol=1e-12)


def test_kernel_of_vector_output_is_ordered_input_major():
    net = FullyConnected(3, (10,), "tanh", num_outputs=2)
    params, fixed = net.init(jax.random.key(0))
    xs = sphere_points(jax.random.key(1), 3, 3)
    k = tangent_kernel(net, params, fixed, xs, method="structured")
    g = jax.grad(lambda p: net.apply(p, fixed, xs[1])[0])(params)  # input 1, output 0 -> row 2
    expected = sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(g))
    assert float(k[2, 2]) == pytest.approx(float(expected), rel=1e-12)


def test_structured_kernel_never_forms_the_jacobian_and_is_positive_semidefinite():
    net = FullyConnected(4, (256, 256, 256), "tanh")
    params, fixed = net.init(jax.random.key(0))
    xs = sphere_points(jax.random.key(1), 32, 4)
    # A budget far below one Jacobian (32 x 133k doubles = 34 MB) still works: it blocks inputs.
    k = tangent_kernel(net, params, fixed, xs, method="structured", memory_budget=200_000)
    reference = tangent_kernel(net, params, fixed, xs, method="blocked", memory_budget=4 * net.num_params * 8)
    assert _rel(k, reference) < 1e-12
    assert float(jnp.linalg.eigvalsh(k)[0]) > -1e-10


def test_relative_kernel_change():
    k0 = jnp.eye(3)
    assert relative_kernel_change(k0, k0) == 0.0
    assert relative_kernel_change(k0, 2 * k0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_kernel_change(k0, jnp.eye(2))
    with pytest.raises(ValueError, match="K0 is zero"):
        relative_kernel_change(jnp.zeros((2, 2)), jnp.eye(2))


@pytest.mark.parametrize("activation", ["tanh", "swish", "erf", "softplus"])
@pytest.mark.parametrize("radius", [0.7, 1.0, 1.8])
def test_infinite_width_shallow_diagonal_matches_monte_carlo(activation, radius):
    z = jax.random.normal(jax.random.key(0), (2_000_000,), dtype=jnp.float64)
    d1 = jax.vmap(jax.grad(ACTIVATIONS[activation]))(radius * z)
    samples = radius**2 * d1**2
    mc, se = float(jnp.mean(samples)), float(jnp.std(samples) / jnp.sqrt(z.size))
    assert infinite_width_shallow_diagonal(activation, radius) == pytest.approx(mc, abs=5 * se)


def test_infinite_width_shallow_diagonal_closed_form_for_erf():
    """erf'(z) = 2/sqrt(pi) exp(-z^2): E[erf'(r z)^2] = (4/pi) / sqrt(1 + 4 r^2)."""
    for r in [0.3, 1.0, 2.5]:
        exact = r**2 * (4 / np.pi) / np.sqrt(1 + 4 * r**2)
        assert infinite_width_shallow_diagonal("erf", r) == pytest.approx(exact, rel=1e-12)


def test_bad_inputs():
    net = FullyConnected(3, (5,), "tanh")
    params, fixed = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match="unknown kernel method"):
        tangent_kernel(net, params, fixed, jnp.ones((2, 3)), method="magic")
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        tangent_kernel(net, params, fixed, jnp.ones(3))
    with pytest.raises(ValueError, match="takes one input of shape"):
        tangent_kernel(net, params, fixed, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="unknown activation"):
        infinite_width_shallow_diagonal("relu6", 1.0)
