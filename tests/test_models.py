"""Network definitions: validation, determinism, parameterization."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.kernel import tangent_kernel
from harness.models import ACTIVATIONS, FullyConnected, shallow_network, sphere_points


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"activation": "relu6"}, "unknown activation 'relu6'; valid: tanh, softplus"),
        ({"hidden_widths": (8, 0)}, "every hidden width must be an integer >= 1"),
        ({"hidden_widths": (8, 2.5)}, "every hidden width must be an integer >= 1"),
        ({"hidden_widths": ()}, "at least one hidden layer"),
        ({"head": "softmax"}, "softmax head needs num_outputs >= 2"),
        ({"head": "swish", "num_outputs": 2}, "needs num_outputs == 1"),
        ({"head": "cosine"}, "unknown output head"),
        ({"parameterization": "mup"}, "unknown parameterization"),
        ({"input_dim": 0}, "input_dim must be an integer >= 1"),
        ({"train_hidden": False, "train_output": False}, "at least one layer"),
        ({"linear_layers": (2,)}, "linear_layers must be hidden layer numbers 1..1"),
        ({"linear_layers": (0,)}, "linear_layers must be hidden layer numbers 1..1"),
        ({"output_init": "mirrored", "hidden_widths": (5,)}, r"mirrored output initialization needs one hidden layer of even width, got \(5,\)"),
        ({"output_init": "mirrored", "hidden_widths": (8, 8)}, "needs one hidden layer of even width"),
        ({"output_init": "zeros"}, "unknown output initialization 'zeros'"),
    ],
)
def test_bad_network_descriptions_are_clear_value_errors(kwargs, match):
    base = {"input_dim": 3, "hidden_widths": (8,), "activation": "tanh"}
    with pytest.raises(ValueError, match=match):
        FullyConnected(**{**base, **kwargs})


def test_relu_is_allowed_but_flagged_outside_the_theory():
    assert not FullyConnected(3, (8,), "relu").within_theory
    assert all(FullyConnected(3, (8,), a).within_theory for a in ACTIVATIONS if a != "relu")


def test_same_key_same_weights_and_shapes():
    net = FullyConnected(3, (8, 5), "tanh", num_outputs=2)
    p1, f1 = net.init(jax.random.key(3))
    p2, _ = net.init(jax.random.key(3))
    p3, _ = net.init(jax.random.key(4))
    assert f1 == {}
    assert {k: v.shape for k, v in p1.items()} == {"W1": (8, 3), "W2": (5, 8), "V": (2, 5)}
    assert all(bool(jnp.all(p1[k] == p2[k])) for k in p1)
    assert not bool(jnp.all(p1["W1"] == p3["W1"]))
    assert net.num_params == 8 * 3 + 5 * 8 + 2 * 5


@pytest.mark.parametrize("hidden", [(8,), (32,)])
def test_mirrored_init_gives_zero_output_and_the_kernel_of_the_half_network(hidden):
    """W = [A; A], V = [b, -b]: f(w_0; x) = 0 for every x, and the tangent kernel equals that of the
    Gaussian net of width m / 2 with weights (A, b) (each half contributes half of the sum, twice,
    under the 1 / sqrt(m) of the full width): the claims measure an ordinary kernel."""
    net = FullyConnected(3, hidden, "tanh", output_init="mirrored")
    params, fixed = net.init(jax.random.key(2))
    xs = jax.random.normal(jax.random.key(5), (4, 3))
    np.testing.assert_allclose(jax.vmap(lambda x: net.logits(params, fixed, x))(xs), 0.0, atol=1e-15)
    last, half = net.layer_names[-2], hidden[-1] // 2
    np.testing.assert_array_equal(params[last][:half], params[last][half:])
    np.testing.assert_array_equal(params["V"][:half], -params["V"][half:])
    small = FullyConnected(3, (half,), "tanh")
    small_params = {**params, last: params[last][:half], "V": params["V"][:half]}
    np.testing.assert_allclose(
        tangent_kernel(net, params, fixed, xs, method="jacobian"),
        tangent_kernel(small, small_params, {}, xs, method="jacobian"),
        rtol=1e-12,
    )
    # The nearest wrong variant, a Gaussian net of full width with the same first half, has output != 0.
    plain = FullyConnected(3, hidden, "tanh")
    plain_params, _ = plain.init(jax.random.key(2))
    assert float(jnp.max(jnp.abs(jax.vmap(lambda x: plain.logits(plain_params, {}, x))(xs)))) > 1e-2
    assert "mirrored init" in net.describe() and "mirrored" not in plain.describe()


def test_a_linear_layer_has_no_activation():
    """[m, m_b, m] with a linear bottleneck: alpha_2 = z_2 exactly, the other layers keep tanh."""
    net = FullyConnected(2, (6, 1, 6), "tanh", linear_layers=(2,))
    params, fixed = net.init(jax.random.key(1))
    x = jnp.array([0.3, -0.8])
    a1 = jnp.tanh(params["W1"] @ x / math.sqrt(2))
    a2 = params["W2"] @ a1 / math.sqrt(6)
    a3 = jnp.tanh(params["W3"] @ a2 / math.sqrt(1))
    expected = params["V"] @ a3 / math.sqrt(6)
    assert float(net.apply(params, fixed, x)) == pytest.approx(float(expected), rel=1e-13)
    with_tanh = FullyConnected(2, (6, 1, 6), "tanh")
    assert float(with_tanh.apply(params, fixed, x)) != pytest.approx(float(expected), rel=1e-6)
    assert "linear layers 2" in net.describe() and net != with_tanh


def test_shallow_network_is_eq4():
    net = shallow_network(50, 1, "tanh")
    params, fixed = net.init(jax.random.key(0))
    assert set(params) == {"W1"} and set(fixed) == {"V"}
    assert set(np.unique(np.asarray(fixed["V"]))) <= {-1.0, 1.0}
    x = jnp.array([0.7])
    expected = jnp.sum(fixed["V"] * jnp.tanh(params["W1"][:, 0] * 0.7)) / math.sqrt(50)
    assert float(net.apply(params, fixed, x)) == pytest.approx(float(expected), rel=1e-13)


def test_standard_parameterization_has_the_same_function_at_init():
    """LeCun weights are the NTK weights divided by sqrt(fan_in): same function, other derivatives."""
    ntk = FullyConnected(4, (16, 16), "swish")
    std = FullyConnected(4, (16, 16), "swish", parameterization="standard")
    pn, fn = ntk.init(jax.random.key(1))
    ps, fs = std.init(jax.random.key(1))
    x = sphere_points(jax.random.key(2), 1, 4)[0]
    assert float(std.apply(ps, fs, x)) == pytest.approx(float(ntk.apply(pn, fn, x)), rel=1e-12)


def test_heads():
    net = FullyConnected(3, (8,), "tanh", head="softmax", num_outputs=4)
    params, fixed = net.init(jax.random.key(0))
    x = sphere_points(jax.random.key(1), 1, 3)[0]
    out = net.apply(params, fixed, x)
    assert out.shape == (4,) and float(jnp.sum(out)) == pytest.approx(1.0)
    swish = FullyConnected(3, (8,), "tanh", head="swish")
    p, f = swish.init(jax.random.key(0))
    z = swish.logits(p, f, x)
    assert float(swish.apply(p, f, x)) == pytest.approx(float(z * jax.nn.sigmoid(z)))


def test_activation_gradients_match_autodiff_through_the_layers():
    net = FullyConnected(3, (6, 5), "tanh")
    params, fixed = net.init(jax.random.key(0))
    x = sphere_points(jax.random.key(1), 1, 3)[0]
    grads = net.activation_gradients(params, fixed, x)
    # df/dalpha_L = V / sqrt(m_L) for a linear head.
    np.testing.assert_allclose(grads[1], params["V"] / math.sqrt(5), rtol=1e-13)
    assert grads[0].shape == (6,)


def test_wrong_input_shape_is_a_clear_error():
    net = FullyConnected(3, (6,), "tanh")
    params, fixed = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"takes one input of shape \(3,\)"):
        net.apply(params, fixed, jnp.ones((2, 3)))


def test_sphere_points():
    xs = sphere_points(jax.random.key(0), 5, 7)
    np.testing.assert_allclose(jnp.linalg.norm(xs, axis=1), math.sqrt(7), rtol=1e-13)
    with pytest.raises(ValueError):
        sphere_points(jax.random.key(0), 0, 3)
