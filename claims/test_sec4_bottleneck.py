"""Section 4, "Wide neural networks with bottleneck": one narrow layer keeps ||H|| of order one (C9).

Read next to the paper's Section 4 (the paragraph before Table 1): in a network whose hidden layers
are wide except one of width m_b, the gradient with respect to the bottleneck activations,
d f / d alpha_b, has m_b entries of order one, so condition (b) of Theorem 3.1 fails and the
Hessian norm does not vanish with the width m of the other layers. The wide layers still satisfy
(b): their infinity-norms fall like m^(-1/2) (the per-layer measurement of C5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from harness import measure
from harness.fit import OMEGA1_LAW, equality_verdict, expected_max_abs_normal, omega1_verdict
from harness.laws import INF_NORM_SLOPE_MARGIN, OMEGA_FLOOR, OMEGA_SLOPE_MARGIN
from harness.networks import N_INPUTS, bottleneck_network, bottleneck_seeds
from harness.records import scaling_record
from harness.sweep import run_sweep

#: Floor for the bottleneck gradient ||df/dalpha_b||_inf: it is a product of O(1) Gaussian factors
#: (Sec. 4: |sigma'| |w^(lb+1) . grad_(lb+1) f|); a level below 0.05 at the largest width would mean
#: it vanishes like the wide layers' entries (0.03 at m = 16384 for C5's layers).
BOTTLENECK_GRADIENT_FLOOR = 0.05

#: Seeds of the gradient measurements, as a multiple of the Hessian seeds (see the test). The limit of
#: the m_b = 1 bottleneck gradient is the weakest of these verdicts: with 4x (32 seeds) its lower 90%
#: bound lay 1.1, 2.2, 4.0 and 3.1 standard errors above the required level at base seeds 60042,
#: 70049, 90063, 110077 (its standard error 0.053-0.059); with 16x 5.4, 8.5, 8.5 and 8.3. A gradient
#: costs less than one Hessian-vector product, so the 128 seeds add a few seconds.
GRADIENT_SEED_FACTOR = 16

#: Hessian seeds of the linear bottleneck, as a multiple of C9's: with C9's 8 its limit lay 2.4 to 6.8
#: standard errors inside the required level at base seeds 0, 230161, 350213, 470281 (the smallest
#: where the m = 64 mean, which sets the level, was 1.9 against 1.4-1.6): twice the seeds scale 2.4
#: to (2.4 + 1.645) sqrt(2) - 1.645 = 4.1. Its points are not shared with Table 1.
LINEAR_BOTTLENECK_SEED_FACTOR = 2


@pytest.mark.parametrize("bottleneck,linear", [(1, False), (3, False), (1, True)], ids=["mb1", "mb3", "mb1-linear"])
def test_c9_bottleneck_keeps_the_hessian_of_order_one(bottleneck, linear, tier, base_seed, dtype, judge, progress):
    """C9 (Sec. 4, Table 1): with a bottleneck of width m_b, ||H|| = O~(1) in m (no decay), while
    ||df/dalpha_b||_inf = O~(1) at the bottleneck and the wide layers' infinity-norms fall as m^(-1/2).
    ``linear``: the bottleneck layer has no activation (Sec. 1: "even if it is linear"); its
    d^2 f / dz_b^2 = sum_i v_i sigma''(.) w_i^2 / sqrt(m) over the wide layer above is still O(1).
    """
    grid = tier.grid("sec4")
    if bottleneck not in grid.bottleneck_sizes:
        pytest.skip(f"bottleneck width {bottleneck} is not in the {tier.name} tier")
    d = tier.input_dim
    name = f"mb{bottleneck}" + ("-linear" if linear else "")
    grads_fn = {}

    def hessian_point(width, seed):
        net = bottleneck_network(width, bottleneck, d, linear)
        return {
            "hessian_norm": measure.max_hessian_norm(
                net, seed, width, dtype, n_inputs=N_INPUTS, tol=tier.lanczos_tol, max_iters=tier.lanczos_max_iters
            )
        }

    def gradient_point(width, seed):
        net = bottleneck_network(width, bottleneck, d, linear)
        if net not in grads_fn:
            grads_fn[net] = jax.jit(net.activation_gradients)
        params, fixed = measure.weights(net, seed, width, dtype)
        x = measure.inputs(seed, width, d, 1, dtype)[0]
        g1, gb, _ = grads_fn[net](params, fixed, x)
        log_factor = expected_max_abs_normal(width)
        return {
            "bottleneck_inf_norm": float(jnp.max(jnp.abs(gb))),
            "layer1_inf_share_over_log_factor": float(jnp.max(jnp.abs(g1)) / jnp.linalg.norm(g1)) / log_factor,
        }

    widths = grid.bottleneck_widths
    seeds = bottleneck_seeds(tier, base_seed)
    if linear:
        seeds = tuple(base_seed + i for i in range(LINEAR_BOTTLENECK_SEED_FACTOR * len(seeds)))
    series = run_sweep(widths, seeds, hessian_point, progress, f"C9 {name} Hessian")
    # Gradients are measured on GRADIENT_SEED_FACTOR times the seeds: every entry below the
    # bottleneck carries the same random O(1) factor sigma'(z_b) df/dalpha_b (Sec. 4), so these
    # quantities spread like one Gaussian variable per network, and a gradient costs little.
    gradient_seeds = tuple(base_seed + i for i in range(GRADIENT_SEED_FACTOR * len(seeds)))
    gradients = run_sweep(widths, gradient_seeds, gradient_point, progress, f"C9 {name} gradients")
    fit_h = series.fit("hessian_norm")
    fit_b = gradients.fit("bottleneck_inf_norm")
    extra = {"bottleneck": bottleneck, "hidden": "[m, m_b, m]", "activation": "tanh" + (", none at the bottleneck" if linear else "")}
    records = [
        scaling_record(
            "C9",
            f"{name}-hessian",
            title=f"{'linear ' if linear else ''}bottleneck m_b = {bottleneck}: ||H|| = O~(1) in m (Sec 4)",
            quantity=f"max over {N_INPUTS} inputs of ||H||",
            law=OMEGA1_LAW,
            target=0.0,
            margin=OMEGA_SLOPE_MARGIN,
            fit=fit_h,
            verdict=omega1_verdict(fit_h, OMEGA_SLOPE_MARGIN, OMEGA_FLOOR),
            floor=OMEGA_FLOOR,
            extra=extra,
        ),
        scaling_record(
            "C9",
            f"{name}-bottleneck-grad",
            title=f"bottleneck m_b = {bottleneck}: ||df/dalpha_b||_inf = O~(1) (Sec 4)",
            quantity="||df/dalpha_b||_inf at the bottleneck layer",
            law=OMEGA1_LAW,
            target=0.0,
            margin=OMEGA_SLOPE_MARGIN,
            fit=fit_b,
            verdict=omega1_verdict(fit_b, OMEGA_SLOPE_MARGIN, BOTTLENECK_GRADIENT_FLOOR),
            floor=BOTTLENECK_GRADIENT_FLOOR,
            extra=extra,
        ),
    ]
    # The wide layer below the bottleneck: df/dalpha_1 = W_b^T (sigma'(z_b) df/dalpha_b) / sqrt(m),
    # a vector of m entries times the O(1) random factors of the bottleneck, which carry no width.
    # Its largest entry's share of the vector's norm, ||.||_inf / ||.||_2, divides them out exactly
    # and is what "no neuron dominates" (Remark 3.2) means. The wide layer above the bottleneck is
    # the last hidden layer, df/dalpha_3 = v / sqrt(m) by construction: not recorded (as in C5).
    fit = gradients.fit("layer1_inf_share_over_log_factor")
    records.append(
        scaling_record(
            "C9",
            f"{name}-layer1-inf",
            title=f"bottleneck m_b = {bottleneck}: wide layer 1 ||df/dalpha||_inf / ||df/dalpha||_2 = O~(1/sqrt m)",
            quantity="||df/dalpha_1||_inf / (||df/dalpha_1||_2 E[max of m |N(0,1)|])",
            law="slope = -1/2",
            target=-0.5,
            margin=INF_NORM_SLOPE_MARGIN,
            fit=fit,
            verdict=equality_verdict(fit, -0.5, INF_NORM_SLOPE_MARGIN),
            extra={**extra, "layer": 1},
        )
    )
    judge(*records)
