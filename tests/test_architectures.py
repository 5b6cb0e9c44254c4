"""Convolutional, residual, mixed and softmax-hidden networks: shapes, validation, estimators, C6 checks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import claims.test_appH_architectures as apph
from harness.architectures import ConvDenseNet, ConvNet, ResNet, SoftmaxHiddenNet, _conv, reference_conv
from harness.fit import CONFIRMED, REFUTED, power_law_fit
from harness.hessian import hessian_spectral_norm
from harness.kernel import kernel_diagonal, tangent_kernel
from harness.models import FullyConnected, sphere_points
from harness.sweep import Series

RELATIVE = 1e-6  # Lanczos against the dense Hessian, as in test_hessian.py

#: One small instance (p <= 6000, the dense Hessian's limit) of each model family, 1-D and 2-D,
#: both read-outs, scalar and vector outputs: the estimator tests (one compilation each) use these.
SMALL = [
    ConvNet((2, 5, 5), (4, 3), "swish"),
    ConvNet((2, 9), (5, 4, 3), "tanh", kernel_size=5, readout="pool", num_outputs=2),
    ResNet((2, 5, 5), 4, blocks=2, activation="swish", readout="flatten"),
    ConvDenseNet((2, 8), (4,), (7,), "softplus", num_outputs=3),
    SoftmaxHiddenNet(3, (8, 6), softmax_layers=(2,), activation="tanh", num_outputs=2),
]

#: More variants for the cheap shape and validation tests.
ALL = [
    *SMALL,
    ConvNet((1, 4, 6), (3,), "gelu", num_outputs=2),
    ResNet((2, 8), 5, blocks=3, activation="tanh", readout="pool"),
    ConvDenseNet((2, 4, 4), (3, 3), (6, 5), "swish"),
    SoftmaxHiddenNet(3, (8, 6)),
]


def _setup(net, seed, n=1, dtype=jnp.float64):
    params, fixed = net.init(jax.random.key(seed), dtype)
    xs = sphere_points(jax.random.key(1000 + seed), n, net.input_dim, dtype=dtype)
    return params, fixed, xs


# ------------------------------------------------------------------------------------------------
# Validation and shapes
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ConvNet((3,), (4,)), r"input_shape must be \(channels, length\)"),
        (lambda: ConvNet((3, 4, 4, 4), (4,)), r"input_shape must be \(channels, length\)"),
        (lambda: ConvNet((3, 0, 4), (4,)), "every entry of input_shape must be an integer >= 1"),
        (lambda: ConvNet((3, 4, 4), ()), "channels must name at least one layer"),
        (lambda: ConvNet((3, 4, 4), (4, 0)), "every entry of channels must be an integer >= 1"),
        (lambda: ConvNet((3, 4, 4), 4), "channels must be a sequence of integers"),
        (lambda: ConvNet((3, 4, 4), (4,), "relu6"), "unknown activation 'relu6'"),
        (lambda: ConvNet((3, 4, 4), (4,), kernel_size=2), "kernel_size must be odd"),
        (lambda: ConvNet((3, 4, 4), (4,), kernel_size=0), "kernel_size must be an integer >= 1"),
        (lambda: ConvNet((3, 4, 4), (4,), readout="max"), "unknown readout 'max'"),
        (lambda: ConvNet((3, 4, 4), (4,), num_outputs=0), "num_outputs must be an integer >= 1"),
        (lambda: ResNet((3, 4, 4), 0), "width must be an integer >= 1"),
        (lambda: ResNet((3, 4, 4), 4, blocks=0), "blocks must be an integer >= 1"),
        (lambda: ResNet((3, 4, 4), 4.0), "width must be an integer >= 1"),
        (lambda: ConvDenseNet((3, 4, 4), (4,), ()), "hidden_widths must name at least one layer"),
        (lambda: SoftmaxHiddenNet(0, (4,)), "input_dim must be an integer >= 1"),
        (lambda: SoftmaxHiddenNet(3, (4, 4), softmax_layers=(3,)), "softmax_layers must be distinct"),
        (lambda: SoftmaxHiddenNet(3, (4, 4), softmax_layers=(1, 1)), "softmax_layers must be distinct"),
        (lambda: SoftmaxHiddenNet(3, (4, 4), softmax_layers=()), "softmax_layers must name at least one"),
    ],
)
def test_bad_descriptions_are_clear_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_layer_shapes_and_parameter_counts():
    cnn = ConvNet((3, 8, 8), (16, 16, 16))
    assert cnn.layer_shapes == {"W1": (16, 3, 3, 3), "W2": (16, 16, 3, 3), "W3": (16, 16, 3, 3), "V": (16 * 64,)}
    assert cnn.num_params == 16 * 27 + 2 * 16 * 144 + 1024 and cnn.depth == 3 and cnn.input_dim == 192
    assert ConvNet((2, 10), (4,), readout="pool", num_outputs=3).layer_shapes == {"W1": (4, 2, 3), "V": (3, 4)}
    res = ResNet((3, 8, 8), 8, blocks=2, readout="pool")
    assert res.layer_shapes == {"W1": (8, 3, 3, 3), "W2": (8, 8, 3, 3), "W3": (8, 8, 3, 3), "V": (8,)}
    assert ResNet((3, 8, 8), 8, blocks=2).layer_shapes["V"] == (8 * 64,)  # flattened by default
    assert res.branch_scale == pytest.approx(1 / math.sqrt(2)) and res.depth == 3
    mixed = ConvDenseNet((2, 16), (4, 4), (5, 6), num_outputs=2)
    assert mixed.layer_shapes == {"W1": (4, 2, 3), "W2": (4, 4, 3), "U1": (5, 64), "U2": (6, 5), "V": (2, 6)}
    assert mixed.depth == 4
    soft = SoftmaxHiddenNet(3, (8, 6))
    assert soft.softmax_layers == (1, 2) and soft.layer_shapes == {"W1": (8, 3), "W2": (6, 8), "V": (6,)}
    for net in ALL:
        params, fixed = net.init(jax.random.key(0))
        assert fixed == {}
        assert {k: v.shape for k, v in params.items()} == net.layer_shapes
        assert sum(v.size for v in params.values()) == net.num_params


@pytest.mark.parametrize("net", ALL, ids=lambda n: n.describe())
def test_outputs_and_input_checks(net):
    params, fixed, xs = _setup(net, 0, n=3)
    out = net.apply(params, fixed, xs[0])
    assert out.shape == (() if net.num_out == 1 else (net.num_out,))
    assert jnp.array_equal(net.logits(params, fixed, xs[0]), out)
    assert net.output_component(params, fixed, xs[0], net.num_out - 1).shape == ()
    assert jax.vmap(lambda x: net.apply(params, fixed, x))(xs).shape == (3, *out.shape)
    with pytest.raises(ValueError, match="takes one flat input of shape"):
        net.apply(params, fixed, xs)
    with pytest.raises(ValueError, match="params lack V"):
        net.apply({k: v for k, v in params.items() if k != "V"}, fixed, xs[0])
    with pytest.raises(ValueError, match="weight W1 has shape"):
        net.apply({**params, "W1": params["W1"][:-1]}, fixed, xs[0])


def test_within_theory_flags():
    assert ConvNet((2, 4), (3,), "swish").within_theory
    assert not ConvNet((2, 4), (3,), "relu").within_theory
    assert not ResNet((2, 4), 3, activation="relu").within_theory
    assert not SoftmaxHiddenNet(3, (4,)).within_theory


# ------------------------------------------------------------------------------------------------
# The layers
@pytest.mark.parametrize(
    "w_shape,a_shape",
    [((5, 3, 3, 3), (3, 8, 8)), ((4, 2, 5), (2, 16)), ((6, 4, 3, 5), (4, 7, 9)), ((2, 3, 1, 1), (3, 4, 4)), ((3, 2, 7), (2, 5))],
)
def test_patch_convolution_equals_lax_conv_general_dilated(w_shape, a_shape):
    gen = np.random.default_rng(0)
    w = jnp.asarray(gen.standard_normal(w_shape))
    a = jnp.asarray(gen.standard_normal(a_shape))
    np.testing.assert_allclose(_conv(w, a), reference_conv(w, a), rtol=1e-12, atol=1e-12)
    # The NTK scale: sum over the fan-in of N(0,1) weights times the input, / sqrt(C_in k^s).
    assert float(jnp.max(jnp.abs(reference_conv(w, a) * math.sqrt(math.prod(w_shape[1:]))))) > 1.0


def test_ntk_scaling_keeps_preactivations_order_one():
    """At W0, a pixel of the first convolution (interior position) is N(0, |patch|^2 / fan_in)."""
    net = ConvNet((3, 8, 8), (512,))
    params, _, xs = _setup(net, 1)
    z = _conv(params["W1"], xs[0].reshape(net.input_shape))
    patch = xs[0].reshape(net.input_shape)[:, 3:6, 3:6]
    expected = float(jnp.sum(patch**2)) / 27
    assert float(jnp.var(z[:, 4, 4])) == pytest.approx(expected, rel=0.2)  # 512 samples: ~6% spread


def test_residual_branch_scale_keeps_activations_bounded_in_depth():
    """With 1/sqrt(B) on the branches the mean square of alpha_B stays O(1) as B grows (ResNet docstring)."""
    levels = []
    for blocks in (1, 4, 16):
        net = ResNet((3, 8, 8), 64, blocks=blocks)
        params, _, xs = _setup(net, 2)
        levels.append(float(jnp.mean(net.features(params, xs[0]) ** 2)))
    assert max(levels) < 3 * min(levels)


def test_softmax_layer_units_average_one():
    net = SoftmaxHiddenNet(4, (16,))
    params, _, xs = _setup(net, 3)
    z = params["W1"] @ xs[0] / 2.0
    alpha = 16 * jax.nn.softmax(z)
    assert float(jnp.mean(alpha)) == pytest.approx(1.0, rel=1e-12)
    assert float(net.apply(params, {}, xs[0])) == pytest.approx(float(params["V"] @ alpha / 4.0), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Estimators on the new architectures
@pytest.mark.parametrize("net", SMALL, ids=lambda n: n.describe())
def test_lanczos_hessian_norm_matches_the_dense_hessian(net):
    assert net.num_params <= 6000
    for seed in range(2):
        params, fixed, xs = _setup(net, seed)
        k = seed % net.num_out
        exact = hessian_spectral_norm(net.output_component, params, fixed, xs[0], k, method="dense")
        # Without re-orthogonalization, as the claims run it (apph.REORTH).
        est = hessian_spectral_norm(
            net.output_component, params, fixed, xs[0], k, tol=1e-10, max_iters=400, key=jax.random.key(seed),
            reorth=apph.REORTH,
        )
        assert est.spectral_norm == pytest.approx(exact.spectral_norm, rel=RELATIVE)
        assert est.lambda_max == pytest.approx(exact.lambda_max, rel=RELATIVE, abs=1e-12)
        assert est.lambda_min == pytest.approx(exact.lambda_min, rel=RELATIVE, abs=1e-12)


@pytest.mark.parametrize("net", SMALL, ids=lambda n: n.describe())
def test_blocked_kernel_and_diagonal_match_the_jacobian_kernel(net):
    params, fixed, xs = _setup(net, 4, n=5)
    reference = np.asarray(tangent_kernel(net, params, fixed, xs, method="jacobian"))
    c = net.num_out
    assert reference.shape == (5 * c, 5 * c)
    # A small budget forces several blocks of inputs.
    blocked = np.asarray(tangent_kernel(net, params, fixed, xs, method="blocked", memory_budget=2 * net.num_params * 8 * c))
    assert np.linalg.norm(blocked - reference) <= 1e-12 * np.linalg.norm(reference)
    auto = np.asarray(tangent_kernel(net, params, fixed, xs))  # "auto" picks "blocked" here
    assert np.linalg.norm(auto - reference) <= 1e-12 * np.linalg.norm(reference)
    diag = np.asarray(kernel_diagonal(net, params, fixed, xs, memory_budget=2 * net.num_params * 8 * c))
    np.testing.assert_allclose(diag, np.diag(reference), rtol=1e-12)
    with pytest.raises(ValueError, match="structured kernel needs fully-connected layers"):
        tangent_kernel(net, params, fixed, xs, method="structured")


def test_same_key_same_numbers():
    net = SMALL[2]  # compiled already by the tests above (same settings)
    runs = []
    for _ in range(2):
        params, fixed, xs = _setup(net, 7, n=5)
        est = hessian_spectral_norm(net.output_component, params, fixed, xs[0], 0, key=jax.random.key(1), tol=1e-3, max_iters=400, reorth=apph.REORTH)
        runs.append((params, est.spectral_norm, np.asarray(kernel_diagonal(net, params, fixed, xs))))
    assert all(bool(jnp.array_equal(runs[0][0][k], runs[1][0][k])) for k in runs[0][0])
    assert runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][2], runs[1][2])
    other, _ = net.init(jax.random.key(8))
    assert not bool(jnp.array_equal(other["W1"], runs[0][0]["W1"]))


def test_float32_models_agree_with_float64():
    net = SMALL[0]
    p64, fixed, xs = _setup(net, 5)
    p32 = jax.tree_util.tree_map(lambda w: w.astype(jnp.float32), p64)
    x32 = xs[0].astype(jnp.float32)
    assert net.apply(p32, fixed, x32).dtype == jnp.float32
    assert float(net.apply(p32, fixed, x32)) == pytest.approx(float(net.apply(p64, fixed, xs[0])), rel=1e-5)
    exact = hessian_spectral_norm(net.output_component, p64, fixed, xs[0], 0, method="dense").spectral_norm
    single = hessian_spectral_norm(net.output_component, p32, fixed, x32, 0, tol=1e-4, max_iters=100).spectral_norm
    assert single == pytest.approx(exact, rel=1e-3)


# ------------------------------------------------------------------------------------------------
# The C6 checks reject wrong exponents (with the claim module's own margins)
WIDTHS = [16, 32, 64, 128]


def _series(slope, noise=0.08, seeds=4, seed=0):
    """A power law with the seed-to-seed spread measured on the C6 Hessian norms (<= 10%)."""
    rng = np.random.default_rng(seed)
    w = np.repeat(WIDTHS, seeds).astype(float)
    s = np.tile(np.arange(seeds), len(WIDTHS))
    y = 0.1 * (w / w[0]) ** slope * np.exp(noise * rng.normal(size=w.size))
    return power_law_fit(w, y, s)


def test_c6_hessian_check_accepts_minus_half_and_rejects_wrong_exponents():
    assert apph.HESSIAN_SLOPE_MARGIN == 0.10 and apph.KERNEL_SLOPE_MARGIN == 0.05
    assert apph.hessian_verdict(_series(-0.5)).verdict == CONFIRMED
    for wrong in (0.0, -0.25, -1.0):
        assert apph.hessian_verdict(_series(wrong)).verdict == REFUTED
    # A slope just outside the band is not confirmed.
    assert apph.hessian_verdict(_series(-0.5 + 1.5 * apph.HESSIAN_SLOPE_MARGIN, noise=0.0)).verdict == REFUTED


def test_c6_kernel_check_accepts_zero_and_rejects_wrong_exponents():
    assert apph.kernel_verdict(_series(0.0, noise=0.05, seeds=8)).verdict == CONFIRMED
    for wrong in (-0.5, 0.25, -0.15):
        assert apph.kernel_verdict(_series(wrong, noise=0.05, seeds=8)).verdict == REFUTED


def test_output_rescaling_identities_and_derived_values():
    """X3: H(alpha f) = alpha H(f) exactly (dense Hessians), and ``rescaled`` applies it."""
    net = ConvNet((2, 5, 5), (4, 3), "swish")
    params, fixed, xs = _setup(net, 6)
    alpha = 7.5

    def scaled(p, fx, x, k):
        return alpha * net.output_component(p, fx, x, k)

    base = hessian_spectral_norm(net.output_component, params, fixed, xs[0], 0, method="dense")
    big = hessian_spectral_norm(scaled, params, fixed, xs[0], 0, method="dense")
    assert big.spectral_norm == pytest.approx(alpha * base.spectral_norm, rel=1e-12)
    series = Series()
    for w, h, k in [(16, 0.2, 1.0), (64, 0.1, 1.0), (256, 0.05, 1.0)]:  # h = 0.8 / sqrt(m)
        series.add(w, 0, {"hessian_norm": h, "kernel_at_x": k})
    lazy = apph.rescaled(series, 10.0)
    assert lazy["hessian_norm"] == pytest.approx([2.0, 1.0, 0.5]) and lazy["ratio"] == pytest.approx([0.02, 0.01, 0.005])
    mean_field = apph.rescaled(series, lambda m: 1 / math.sqrt(m))  # h sqrt(m) = 0.8, 0.8, 0.8
    assert mean_field["ratio"] == pytest.approx([0.8, 0.8, 0.8])
    assert mean_field["hessian_norm"] == pytest.approx([0.05, 0.0125, 0.003125])


def test_build_covers_every_architecture_and_refuses_unknown_names():
    from harness.tiers import get_tier

    grid = get_tier("smoke").grid("architectures")
    assert isinstance(apph.build("cnn", 4, grid), ConvNet)
    assert isinstance(apph.build("resnet", 4, grid), ResNet)
    assert isinstance(apph.build("mixed", 4, grid), ConvDenseNet)
    assert isinstance(apph.build("relu", 4, grid), FullyConnected) and not apph.build("relu", 4, grid).within_theory
    assert isinstance(apph.build("softmax", 4, grid), SoftmaxHiddenNet)
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        apph.build("vit", 4, grid)
