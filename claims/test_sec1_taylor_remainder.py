"""Section 1, the headline: transition to linearity of f itself (C20).

Read next to the paper's Section 1 and Sec. 2 (Prop. 2.2's argument): by Taylor's theorem, on the
ball B(w0, R)

    |f(w) - f(w0) - grad f(w0) . (w - w0)| <= (1/2) sup_{B(w0, R)} ||H|| R^2,

so the O(1/sqrt m) Hessian of a linear-output net (C2, C4) makes the network linear in its weights
on a ball of fixed radius, while for f~ = phi(f) the rank-one part phi''(f) grad f grad f^T of Eq. 13
keeps a remainder of order one along grad f: (1/2) |phi''(f)| (grad f . dw)^2.

Measured on the shallow net of Sec. 3.1 (Eq. 4, C2's widths and inputs), at the worst point of the
sphere ||w - w0|| = R that ``harness.taylor.worst_remainder`` finds from three starts (a dense random
direction, one neuron's incoming weights, grad f). The bound's sup ||H|| is exact for this net: its
Hessian is block diagonal at every w (C1), so ||H(w)|| <= beta_sigma C^2 / sqrt(m) on the whole ball
(Eq. 5, beta_sigma = sup |sigma''|).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from harness import measure
from harness.fit import OMEGA1_LAW, bound_verdict, equality_verdict, omega1_verdict
from harness.laws import HESSIAN_SLOPE_MARGIN, OMEGA_FLOOR, OMEGA_SLOPE_MARGIN
from harness.models import shallow_network, sup_abs_second_derivative
from harness.records import bound_record, scaling_record
from harness.sweep import point_key, run_sweep
from harness.taylor import start_directions, worst_remainder

# ------------------------------------------------------------------------------------------------
# Margins, fixed before looking at data; the reason is on the line.

#: Linear output: the remainder at the worst point is (1/2) dw^T H(xi) dw for some xi on the segment,
#: so it inherits the Hessian's law, O~(1/sqrt m), and its margin (harness.laws.HESSIAN_SLOPE_MARGIN:
#: the hidden log factor). The inequality is judged with the Lanczos-free bound of Eq. 5, exact in
#: real arithmetic: a ratio above 1 would be a defect of the code or of Taylor's theorem.
BOUND_LIMIT = 1.0

#: phi(f) output: C8's Omega(1) verdict with its slope margin and floor (harness.laws): the remainder
#: along grad f is R^2 / 2 times the rank-one term |phi''(f)| ||grad f||^2 of Eq. 13 that C8 measures
#: (0.03-0.3), plus a part below (1/2) |phi'(f)| ||H|| R^2 = O(m^-1/2), the c m^(-1/2) of the limit fit.

HEADS = ["linear", "swish"]
ACTIVATION = "tanh"
INPUT_DIM = 1


def _grid(tier):
    return tier.grid("theory")


@pytest.mark.parametrize("head", HEADS)
def test_c20_the_network_is_linear_in_its_weights_on_a_ball(head, tier, base_seed, dtype, judge, progress):
    """C20 (Sec. 1): the Taylor remainder at the worst point found on the sphere of radius R falls like
    m^(-1/2) for a linear output and stays Omega(1) for f~ = swish(f); for the linear output it stays
    below (1/2) sup ||H|| R^2 at every point."""
    grid = _grid(tier)
    radius = grid.taylor_radius
    beta = sup_abs_second_derivative(ACTIVATION)
    won = Counter()
    gains = []

    def measure_point(width, seed):
        net = shallow_network(width, INPUT_DIM, ACTIVATION, head=head)
        params, fixed = net.init(point_key(seed, width, "init"), dtype)
        x = measure.inputs(seed, width, INPUT_DIM, 1, dtype)[0]
        starts = start_directions(net, params, fixed, x, point_key(seed, width, "direction"))
        worst = worst_remainder(net.output_component, params, (fixed, x, 0), radius, starts, steps=grid.taylor_steps)
        won[worst.start] += 1
        gains.append(worst.remainder / worst.at_start["random"])
        out = {"remainder": worst.remainder, "random_start": worst.at_start["random"]}
        if head == "linear":  # Eq. 5's bound is on the linear output's Hessian
            out["bound_ratio"] = worst.remainder / (0.5 * beta * float(x @ x) / INPUT_DIM * radius**2 / math.sqrt(width))
        return out

    seeds = tuple(base_seed + i for i in range(grid.taylor_seeds))
    series = run_sweep(tier.shallow_widths, seeds, measure_point, progress, f"C20 {head}")
    fit = series.fit("remainder")
    extra = {
        "network": f"shallow {ACTIVATION} net of Eq. 4 (fixed +-1 output weights), d = {INPUT_DIM}, {head} output",
        "radius": radius,
        "ascent_steps": grid.taylor_steps,
        "winning_start": dict(won),
        "gain_over_random_start": {"min": float(np.min(gains)), "median": float(np.median(gains)), "max": float(np.max(gains))},
        "remainder_at_random_start_mean_by_width": {str(w): float(np.mean(series.at("random_start", w))) for w in tier.shallow_widths},
        "beta_sigma": beta,
    }
    common = dict(title=f"Sec 1: Taylor remainder on B(w0, {radius:g}), {head} output", quantity="remainder", fit=fit, extra=extra)
    if head == "linear":
        worst_ratio = max(series.values["bound_ratio"])
        judge(
            scaling_record("C20", "linear-remainder", law="slope = -1/2", target=-0.5, margin=HESSIAN_SLOPE_MARGIN,
                           verdict=equality_verdict(fit, -0.5, HESSIAN_SLOPE_MARGIN), **common),
            bound_record(
                "C20", "linear-bound",
                title="Sec 1: remainder <= (1/2) sup ||H|| R^2, sup ||H|| <= beta_sigma C^2 / sqrt(m) (Eq. 5)",
                quantity="largest remainder / ((1/2) beta_sigma C^2 R^2 / sqrt(m))",
                law=f"<= {BOUND_LIMIT:g} at every (width, seed)",
                worst=worst_ratio, limit=BOUND_LIMIT,
                verdict=bound_verdict(worst_ratio, BOUND_LIMIT, "remainder over its bound"),
                samples=len(series.widths),
                extra={"radius": radius, "beta_sigma": beta},
            ),
        )
    else:
        judge(
            scaling_record("C20", f"{head}-remainder", law=OMEGA1_LAW, target=0.0, margin=OMEGA_SLOPE_MARGIN,
                           verdict=omega1_verdict(fit, OMEGA_SLOPE_MARGIN, OMEGA_FLOOR), floor=OMEGA_FLOOR, **common)
        )
