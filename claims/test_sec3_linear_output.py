"""Section 3: networks with a linear output layer become linear as they widen (claims C1 to C5).

Read next to the paper: Sec. 3.1 (Eq. 4, 5, 6) for the shallow network, Sec. 3.2 and 3.3
(Theorem 3.1, Theorem 3.2, Eq. 9) for deep fully-connected networks. The Hessian is always that of
the model output f(w; x) with respect to the trained weights w, at one input x on the sphere of
radius sqrt(d).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.fit import bound_verdict, equality_verdict, expected_max_abs_normal, round_off_limit, upper_bound_verdict
from harness.hessian import hessian_matrix, hessian_spectral_norm
from harness.kernel import infinite_width_shallow_diagonal, kernel_diagonal
from harness.models import ACTIVATIONS, FullyConnected, shallow_network, sup_abs_second_derivative
from harness.records import bound_record, scaling_record
from harness import measure as measure_at
from harness.laws import HESSIAN_SLOPE_MARGIN, INF_NORM_SLOPE_MARGIN, KERNEL_SLOPE_MARGIN
from harness.sweep import point_key, run_batched_sweep, run_sweep, seeds_by_width

# ------------------------------------------------------------------------------------------------
# Margins. Each is fixed before looking at data; the reason is on the line.

#: C1: structural zeros of the Hessian come out as exact zeros, and the non-zero blocks equal the
#: closed form of Sec. 3.1 up to the round-off of a few operations in the run's dtype:
#: ``harness.fit.round_off_limit`` (1000 epsilons; the measured worst is 1-5).

#: C2/C4: HESSIAN_SLOPE_MARGIN (harness.laws: the O~ log factor). C3: KERNEL_SLOPE_MARGIN
#: (harness.laws: O(1/m) corrections to the kernel's mean).

#: C3: |K_m(x,x) - K_inf(x,x)| / K_inf is an average of m i.i.d. terms minus its mean: the central
#: limit theorem gives slope exactly -1/2; |N(0,1)| in log space is noisy, so the bound is -1/2 + 0.2.
KERNEL_LIMIT_SLOPE_MARGIN = 0.20

#: C5: INF_NORM_SLOPE_MARGIN (harness.laws: the infinity-norm divided by its exact log factor).

#: C5: ||df/dalpha_l||_2 = Theta(1), with O(1/m) finite-width corrections as for the kernel.
TWO_NORM_SLOPE_MARGIN = 0.05

SMOOTH = ["tanh", "swish"]


def _seeds(tier, base_seed, hessian=False):
    return tier.seeds(base_seed, hessian=hessian)


def _input(seed: int, width: int, dim: int, dtype) -> jax.Array:
    """The first input of a (width, seed) point (harness.measure's convention)."""
    return measure_at.inputs(seed, width, dim, 1, dtype)[0]


# ------------------------------------------------------------------------------------------------
# C1
def _shallow_closed_form_hessian(net: FullyConnected, params, fixed, x) -> np.ndarray:
    """The Hessian of Eq. 4 written out (Sec. 3.1), in ``ravel_pytree`` order (V before W1).

    d2f/dw_i dw_j = 1{i=j} v_i sigma''(z_i) x x^T / (d sqrt m), z_i = w_i . x / sqrt(d); with a
    trained output layer also d2f/dv_i dw_j = 1{i=j} sigma'(z_i) x / sqrt(d m) and d2f/dv^2 = 0.
    """
    act = ACTIVATIONS[net.activation]
    w = np.asarray(params["W1"], dtype=np.float64)
    v = np.asarray(params["V"] if net.train_output else fixed["V"], dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    m, d = w.shape
    z = w @ x / math.sqrt(d)
    d1 = np.asarray(jax.vmap(jax.grad(act))(jnp.asarray(z)))
    d2 = np.asarray(jax.vmap(jax.grad(jax.grad(act)))(jnp.asarray(z)))
    offset = m if net.train_output else 0
    h = np.zeros((offset + m * d, offset + m * d))
    outer = np.outer(x, x) / (d * math.sqrt(m))
    for i in range(m):
        rows = slice(offset + i * d, offset + (i + 1) * d)
        h[rows, rows] = v[i] * d2[i] * outer
        if net.train_output:
            h[i, rows] = d1[i] * x / math.sqrt(d * m)
            h[rows, i] = h[i, rows]
    return h


@pytest.mark.parametrize(
    "activation,input_dim,train_output",
    [("tanh", 1, False), ("swish", 3, False), ("softplus", 2, True)],
    ids=["tanh-d1", "swish-d3", "softplus-d2-trained-output"],
)
def test_c1_shallow_hessian_is_block_diagonal(activation, input_dim, train_output, tier, base_seed, dtype, judge, progress):
    """C1 (Sec. 3.1): the Hessian of the shallow net is diagonal (block diagonal for d > 1).

    Structural properties (a) linear output and (b) one pre-activation per neuron make
    d2f/dw_i dw_j vanish for i != j. With a trained output layer (the paper's remark closing
    Sec. 3.1) the Hessian has three sparse blocks and a zero v-v block. Checked on the exact dense
    Hessian against the closed form, entry by entry.
    """
    worst = 0.0
    worst_off_block = 0.0
    samples = 0
    for width in tier.exact_widths:
        for seed in _seeds(tier, base_seed):
            net = FullyConnected(input_dim, (width,), activation, train_output=train_output, output_init="sign")
            params, fixed = net.init(point_key(seed, width, "init"), dtype)
            x = _input(seed, width, input_dim, dtype)
            h = np.asarray(hessian_matrix(net.output_component, params, fixed, x, 0), dtype=np.float64)
            expected = _shallow_closed_form_hessian(net, params, fixed, x)
            scale = np.max(np.abs(h))
            worst = max(worst, float(np.max(np.abs(h - expected)) / scale))
            worst_off_block = max(worst_off_block, float(np.max(np.abs(h[expected == 0])) / scale))
            samples += 1
        progress(f"C1 {activation} width {width}: worst relative deviation so far {worst:.2e}")
    variant = f"{activation}-d{input_dim}" + ("-trained-output" if train_output else "")
    verdict = bound_verdict(worst, round_off_limit(dtype), "max |H - closed form| / max |H|")
    judge(
        bound_record(
            "C1",
            variant,
            title="shallow net: Hessian is (block) diagonal (Sec 3.1)",
            quantity="max |H - closed form| / max |H| over exact Hessians",
            law="zero to round-off",
            worst=worst,
            limit=round_off_limit(dtype),
            verdict=verdict,
            samples=samples,
            extra={"worst_outside_blocks": worst_off_block, "widths": list(tier.exact_widths)},
        )
    )


# ------------------------------------------------------------------------------------------------
# C2
@pytest.mark.parametrize("activation,input_dim", [("tanh", 1), ("swish", 1), ("tanh", 4)], ids=["tanh-d1", "swish-d1", "tanh-d4"])
def test_c2_shallow_hessian_norm_falls_as_inverse_sqrt_width(activation, input_dim, tier, base_seed, dtype, judge, progress):
    """C2 (Sec. 3.1, Eq. 5): ||H|| = max_i |v_i sigma''(w_i x)| x^2 / sqrt(m) = O(1/sqrt m).

    Measured by Lanczos on Hessian-vector products; each point is also compared with the exact
    value of Eq. 5 (the Hessian is diagonal), and with the bound beta_sigma C^2 / sqrt(m).
    """
    beta = sup_abs_second_derivative(activation)
    act2 = jax.jit(jax.vmap(jax.grad(jax.grad(ACTIVATIONS[activation]))))

    def measure(width, seed):
        net = shallow_network(width, input_dim, activation)
        params, fixed = net.init(point_key(seed, width, "init"), dtype)
        x = _input(seed, width, input_dim, dtype)
        est = hessian_spectral_norm(
            net.output_component, params, fixed, x, 0,
            key=point_key(seed, width, "lanczos"), tol=tier.lanczos_tol, max_iters=tier.lanczos_max_iters,
        )
        z = params["W1"] @ x / math.sqrt(input_dim)
        sq = float(x @ x) / input_dim  # C^2 in Eq. 5 for inputs of norm sqrt(d)
        exact = float(jnp.max(jnp.abs(act2(z)))) * sq / math.sqrt(width)
        return {
            "hessian_norm": est.spectral_norm,
            "exact": exact,
            "bound_ratio": exact * math.sqrt(width) / (beta * sq),
            "estimator_error": abs(est.spectral_norm - exact) / exact,
        }

    seeds = tuple(base_seed + i for i in range(tier.sweep_seed_count("C2", tier.n_seeds)))
    series = run_sweep(tier.shallow_widths, seeds, measure, progress, f"C2 {activation}-d{input_dim}")
    fit = series.fit("hessian_norm")
    verdict = equality_verdict(fit, -0.5, HESSIAN_SLOPE_MARGIN)
    judge(
        scaling_record(
            "C2",
            f"{activation}-d{input_dim}",
            title="shallow net: ||H|| = O(1/sqrt m) (Eq. 5)",
            quantity="hessian_norm",
            law="slope = -1/2",
            target=-0.5,
            margin=HESSIAN_SLOPE_MARGIN,
            fit=fit,
            verdict=verdict,
            extra={
                "radius": 0.0,
                "max_estimator_error_vs_eq5": max(series.values["estimator_error"]),
                "max_ratio_to_eq5_bound": max(series.values["bound_ratio"]),
                "beta_sigma": beta,
            },
        )
    )
    # beta_sigma is exact to ~1e-12 relative (refined maximum, in float64), the closed form to the
    # round-off of the run's dtype: the bound gets the larger slack.
    slack = max(1e-9, round_off_limit(dtype))
    assert max(series.values["bound_ratio"]) <= 1.0 + slack, "Eq. 5's bound beta_sigma C^2 / sqrt(m) is violated"


# ------------------------------------------------------------------------------------------------
# C3
@pytest.mark.parametrize("activation", SMOOTH)
def test_c3_shallow_kernel_is_order_one_and_tends_to_its_limit(activation, tier, base_seed, dtype, judge, progress):
    """C3 (Sec. 3.1, Eq. 6): K(x,x) = ||grad f||^2 = Theta(1) and tends to x^2 E[sigma'(w x)^2].

    The limit is computed by Gauss-Hermite quadrature; its relative error must fall with m (the
    central limit theorem predicts m^(-1/2)). The limit test uses four times the seeds: |error| is
    a folded normal, noisy in log space.
    """
    input_dim = 1
    limit = infinite_width_shallow_diagonal(activation, radius=1.0)  # x = +-1 on the sphere in R^1

    def measure(width, seed):
        net = shallow_network(width, input_dim, activation)
        params, fixed = net.init(point_key(seed, width, "init"), dtype)
        x = _input(seed, width, input_dim, dtype)
        k = float(kernel_diagonal(net, params, fixed, x[None, :])[0])
        return {"kernel_diag": k, "relative_error": abs(k - limit) / limit}

    seeds = tuple(base_seed + i for i in range(4 * tier.n_seeds))
    series = run_sweep(tier.shallow_widths, seeds, measure, progress, f"C3 shallow-{activation}")
    fit = series.fit("kernel_diag")
    fit_limit = series.fit("relative_error")
    judge(
        scaling_record(
            "C3",
            f"shallow-{activation}",
            title="shallow net: K(x,x) = Theta(1) (Eq. 6)",
            quantity="kernel_diag",
            law="slope = 0",
            target=0.0,
            margin=KERNEL_SLOPE_MARGIN,
            fit=fit,
            verdict=equality_verdict(fit, 0.0, KERNEL_SLOPE_MARGIN),
            extra={"limit": limit},
        ),
        scaling_record(
            "C3",
            f"shallow-{activation}-limit",
            title="shallow net: K(x,x) -> x^2 E[sigma'(wx)^2] (Sec 3.1)",
            quantity="relative error of K(x,x) to its infinite-width value",
            law="slope <= -1/2 (+margin)",
            target=-0.5,
            margin=KERNEL_LIMIT_SLOPE_MARGIN,
            fit=fit_limit,
            verdict=upper_bound_verdict(fit_limit, -0.5, KERNEL_LIMIT_SLOPE_MARGIN),
            extra={"limit": limit},
        ),
    )


#: Inputs per network over which C3 averages the kernel diagonal for deep nets.
TRACE_INPUTS = 16


@pytest.mark.parametrize("depth", [2, 3], ids=["depth2", "depth3"])
@pytest.mark.parametrize("activation", SMOOTH)
def test_c3_deep_kernel_is_order_one(activation, depth, tier, base_seed, dtype, judge, progress):
    """C3 for deep nets (Sec. 3.1 after Eq. 6, Sec. 3.3): the tangent kernel is Theta(1) in m.

    Measured as tr K / n, the mean of K(x_i, x_i) = ||grad f(x_i)||^2 over n = 16 inputs (the paper:
    "the trace of tangent kernel is also Theta(1)"). A single input's K(x,x) is recorded too: its
    seed-to-seed spread at width 32 (up to 50% for swish at depth 3) biases a log-log slope upwards
    by Var/2 (Jensen), which the trace, four times less spread, avoids.
    """
    d = tier.input_dim

    def measure_batch(width, seeds):
        # The points of harness.measure (weights from "init", inputs from "data"), many at once.
        diag = measure_at.kernel_diagonals(FullyConnected(d, (width,) * depth, activation), seeds, width, TRACE_INPUTS, dtype)
        return {"kernel_trace_per_input": diag.mean(axis=1), "kernel_diag_one_input": diag[:, 0]}

    # Eight times the seeds: the test is noise-limited (the spread of K at width 32 is 25-50%) and
    # a kernel diagonal costs one backward pass per input.
    count = tier.sweep_seed_count(f"C3 {activation}-depth{depth}", 8 * tier.n_seeds)
    seeds = seeds_by_width(tier.deep_widths[depth], base_seed, count)
    series = run_batched_sweep(tier.deep_widths[depth], seeds, measure_batch, progress, f"C3 {activation}-depth{depth}")
    fit = series.fit("kernel_trace_per_input")
    single = series.fit("kernel_diag_one_input")
    judge(
        scaling_record(
            "C3",
            f"{activation}-depth{depth}",
            title="deep net: tangent kernel tr K / n = Theta(1) (Sec 3.1, 3.3)",
            quantity="kernel_trace_per_input",
            law="slope = 0",
            target=0.0,
            margin=KERNEL_SLOPE_MARGIN,
            fit=fit,
            verdict=equality_verdict(fit, 0.0, KERNEL_SLOPE_MARGIN),
            extra={
                "inputs": TRACE_INPUTS,
                "single_input_slope": single.slope,
                "single_input_ci95": list(single.ci95),
            },
        )
    )


# ------------------------------------------------------------------------------------------------
# C4
@pytest.mark.parametrize("radius", [0.0, 4.0], ids=["R0", "R4"])
@pytest.mark.parametrize("depth", [2, 3], ids=["depth2", "depth3"])
@pytest.mark.parametrize("activation", SMOOTH)
def test_c4_deep_hessian_norm_falls_in_a_ball(activation, depth, radius, tier, base_seed, dtype, judge, progress):
    """C4 (Thm 3.2, Eq. 10): ||H(W)|| = O~(1/sqrt m) for all W in B(W0, R), not only at W0.

    Measured at W0 (R = 0) and at points W0 + R u, u uniform on the unit sphere of the whole weight
    space (a fixed R, independent of the width, as in the theorem). All layers are trained, the
    output is linear.
    """
    if radius not in tier.radii:
        pytest.skip(f"radius {radius} is not in the {tier.name} tier's radii {tier.radii}")
    d = tier.input_dim

    def measure(width, seed):
        net = FullyConnected(d, (width,) * depth, activation)
        est = measure_at.hessian_estimate(
            net, seed, width, dtype, radius=radius, tol=tier.lanczos_tol, max_iters=tier.lanczos_max_iters
        )
        return {"hessian_norm": est.spectral_norm, "iterations": est.iterations, "converged": float(est.converged)}

    label = f"C4 {activation}-depth{depth}-R{radius:g}"
    count = tier.sweep_seed_count(f"C4 {activation}-depth{depth}", tier.n_hessian_seeds)
    seeds = seeds_by_width(tier.deep_widths[depth], base_seed, count)
    series = run_sweep(tier.deep_widths[depth], seeds, measure, progress, label)
    fit = series.fit("hessian_norm")
    judge(
        scaling_record(
            "C4",
            f"{activation}-depth{depth}-R{radius:g}",
            title=f"deep net: ||H|| = O~(1/sqrt m) in B(W0, R), R = {radius:g} (Thm 3.2)",
            quantity="hessian_norm",
            law="slope = -1/2",
            target=-0.5,
            margin=HESSIAN_SLOPE_MARGIN,
            fit=fit,
            verdict=equality_verdict(fit, -0.5, HESSIAN_SLOPE_MARGIN),
            extra={
                "radius": radius,
                "depth": depth,
                "lanczos_iterations_max": max(series.values["iterations"]),
                "lanczos_all_converged": min(series.values["converged"]) == 1.0,
            },
        )
    )


# ------------------------------------------------------------------------------------------------
# C5
@pytest.mark.parametrize("activation", SMOOTH)
def test_c5_backpropagated_gradients_have_no_dominant_neuron(activation, tier, base_seed, dtype, judge, progress):
    """C5 (Thm 3.1 (b), Sec. 3.3): ||df/dalpha_l||_inf = O~(1/sqrt m) while ||df/dalpha_l||_2 = Theta(1).

    For each hidden layer l of a 3-hidden-layer net below the last: no neuron dominates
    back-propagation (Remark 3.2), which is what makes the Hessian norm small. The last hidden layer
    is not recorded: df/dalpha_L = v / sqrt(m) exactly, so its norms are those of a Gaussian vector
    by construction of the parameterization and cannot fail for a reason of the paper's.
    """
    depth, d = 3, tier.input_dim
    grads_fn = {}

    def measure(width, seed):
        net = FullyConnected(d, (width,) * depth, activation)
        if net not in grads_fn:
            grads_fn[net] = jax.jit(net.activation_gradients)
        params, fixed = net.init(point_key(seed, width, "init"), dtype)
        x = _input(seed, width, d, dtype)
        grads = grads_fn[net](params, fixed, x)
        log_factor = expected_max_abs_normal(width)
        out = {}
        for l, g in enumerate(grads, start=1):
            out[f"inf_norm_layer{l}"] = float(jnp.max(jnp.abs(g)))
            out[f"inf_norm_over_log_factor_layer{l}"] = float(jnp.max(jnp.abs(g))) / log_factor
            out[f"two_norm_layer{l}"] = float(jnp.linalg.norm(g))
        return out

    seeds = seeds_by_width(tier.gradient_widths, base_seed, tier.sweep_seed_count("C5", tier.n_seeds))
    series = run_sweep(tier.gradient_widths, seeds, measure, progress, f"C5 {activation}")
    records = []
    for l in range(1, depth):
        fit_raw = series.fit(f"inf_norm_layer{l}")
        fit_inf = series.fit(f"inf_norm_over_log_factor_layer{l}")
        fit_two = series.fit(f"two_norm_layer{l}")
        records.append(
            scaling_record(
                "C5",
                f"{activation}-layer{l}-inf",
                title=f"||df/dalpha_{l}||_inf = O~(1/sqrt m) (Thm 3.1 b)",
                quantity=f"||df/dalpha_{l}||_inf / E[max of m |N(0,1)|]",
                law="slope = -1/2",
                target=-0.5,
                margin=INF_NORM_SLOPE_MARGIN,
                fit=fit_inf,
                verdict=equality_verdict(fit_inf, -0.5, INF_NORM_SLOPE_MARGIN),
                extra={"layer": l, "depth": depth, "raw_slope": fit_raw.slope, "raw_ci95": list(fit_raw.ci95)},
            )
        )
        records.append(
            scaling_record(
                "C5",
                f"{activation}-layer{l}-two",
                title=f"||df/dalpha_{l}||_2 = Theta(1) (Sec 3.3)",
                quantity=f"two_norm_layer{l}",
                law="slope = 0",
                target=0.0,
                margin=TWO_NORM_SLOPE_MARGIN,
                fit=fit_two,
                verdict=equality_verdict(fit_two, 0.0, TWO_NORM_SLOPE_MARGIN),
                extra={"layer": l, "depth": depth},
            )
        )
    judge(*records)
