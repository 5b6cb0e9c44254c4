"""Table 1 of the paper rebuilt from fitted exponents (claim C10).

Table 1 (Sec. 4) summarizes when a wide network transitions to linearity:

| network               | Hessian norm  | NTK  | transition to linearity |
| linear output layer   | O~(1/sqrt m)  | O(1) | yes                     |
| non-linear output     | O~(1)         | O(1) | no                      |
| bottleneck            | O~(1)         | O(1) | no                      |

Each row here is measured on one network family at the same points as the claims it summarizes
(C4's depth-2 tanh net, C8's swish head on it, C9's [m, 1, m] bottleneck): the Hessian exponent is
judged by the law of its row, the NTK exponent (tr K / n over the same inputs) by slope 0, and the
"transition" column is derived from those two verdicts, never typed in.
"""

from __future__ import annotations

import dataclasses

import pytest

from harness import measure
from harness.fit import CONFIRMED, INCONCLUSIVE, OMEGA1_LAW, REFUTED, Verdict, equality_verdict, omega1_verdict
from harness.laws import HESSIAN_SLOPE_MARGIN, KERNEL_SLOPE_MARGIN, OMEGA_FLOOR, OMEGA_SLOPE_MARGIN
from harness.networks import N_INPUTS, bottleneck_network, bottleneck_seeds, section4_network, section4_seeds
from harness.records import scaling_record
from harness.sweep import run_batched_sweep, run_sweep

#: The NTK column is tr K / n over NTK_INPUTS inputs, with NTK_SEED_FACTOR times the Hessian
#: seeds: a kernel diagonal costs one backward pass. A first run with the Hessian's 4 inputs and
#: 4x seeds left the non-linear row inconclusive (slope +0.086, 90% CI [+0.020, +0.153]): phi'(f)^2
#: of Eq. 12 vanishes at f = -1.28 for swish, so one input's K~(x,x) has a heavy lower tail in log
#: space whose weight shrinks as f concentrates, a Jensen bias as in C3; the mean over 16 inputs
#: removes the tail. The bottleneck row's kernel does not concentrate at all (its m_b = 1 layer is
#: random at any m), so it needs seeds, not width. A second run (16 inputs, 8x seeds) left the
#: non-linear row at +0.032, 90% CI [+0.010, +0.054]; 256 fresh networks per width (seeds 1000+)
#: showed no trend (geometric means 0.223, 0.230, 0.228 at m = 32, 512, 2048). A third run with 16x
#: seeds (128 networks per width, seeds 0-127) gave +0.035, 90% CI [+0.019, +0.050]; 512 fresh
#: networks per width (seeds 2000-2511) on the same widths gave +0.0065, 90% CI [-0.002, +0.015]:
#: seeds 0-127 are a 2.5-sigma draw, not a trend. 64x seeds (512 networks per width) put the CI
#: half-width near 0.008, a sixth of the margin, so one unlucky block of seeds cannot decide the row.
#: With the slope fitted on the mean (Gamma GLM) at 64x the CI's end lay 5.3 standard errors inside
#: the band for the non-linear row; 32x left it 2.5 (p_confirm 0.994), so 64x stays. The linear
#: row's kernel concentrates (coefficient of variation 0.19 between networks at m = 32, 0.05 at
#: 512): at 64x its CI's end lay 15.5 standard errors inside the band (slope +0.003 +- 0.003 at
#: base seed 0), where 4.74 give p_confirm 0.999; 8x widens the standard error sqrt(8) times and
#: leaves about 10.6.
NTK_INPUTS = 16
NTK_SEED_FACTOR = {"linear-output": 8, "nonlinear-output": 64, "bottleneck": 64}

ROWS = {
    "linear-output": ("linear output layer", "O~(1/sqrt m)", "yes"),
    "nonlinear-output": ("non-linear output layer (swish)", "O~(1)", "no"),
    "bottleneck": ("bottleneck (m_b = 1)", "O~(1)", "no"),
}


def _row_network(row: str, width: int, input_dim: int):
    if row == "linear-output":
        return dataclasses.replace(section4_network("deep", width, "swish", input_dim), head="linear")
    if row == "nonlinear-output":
        return section4_network("deep", width, "swish", input_dim)
    return bottleneck_network(width, 1, input_dim)


@pytest.mark.parametrize("row", list(ROWS))
def test_c10_table1_row(row, tier, base_seed, dtype, judge, progress):
    """C10 (Table 1): Hessian-norm exponent, NTK exponent and transition to linearity of one row."""
    d = tier.input_dim
    if row == "bottleneck":
        widths, seeds = tier.grid("sec4").bottleneck_widths, bottleneck_seeds(tier, base_seed)
    else:
        widths, seeds = tier.deep_widths[2], tier.seeds(base_seed, hessian=True)
    ntk_seeds = tuple(base_seed + i for i in range(NTK_SEED_FACTOR[row] * len(seeds)))
    if row == "nonlinear-output":
        seeds = section4_seeds(tier, "deep", "swish", base_seed)  # C8's deep swish points, reused
    if row == "linear-output":
        seeds = tuple(base_seed + i for i in range(tier.sweep_seed_count("C10 linear-output", len(seeds))))

    def hessian_point(width, seed):
        net = _row_network(row, width, d)
        return {
            "hessian_norm": measure.max_hessian_norm(
                net, seed, width, dtype, n_inputs=N_INPUTS, tol=tier.lanczos_tol, max_iters=tier.lanczos_max_iters
            )
        }

    def ntk_batch(width, seeds):
        diag = measure.kernel_diagonals(_row_network(row, width, d), seeds, width, NTK_INPUTS, dtype)
        return {"ntk_trace_per_input": diag.mean(axis=1)}

    hessian = run_sweep(widths, seeds, hessian_point, progress, f"C10 {row} Hessian").fit("hessian_norm")
    ntk = run_batched_sweep(widths, ntk_seeds, ntk_batch, progress, f"C10 {row} NTK").fit("ntk_trace_per_input")
    if row == "linear-output":
        h_verdict = equality_verdict(hessian, -0.5, HESSIAN_SLOPE_MARGIN)
        h_law, h_margin, h_target = "slope = -1/2", HESSIAN_SLOPE_MARGIN, -0.5
    else:
        h_verdict = omega1_verdict(hessian, OMEGA_SLOPE_MARGIN, OMEGA_FLOOR)
        h_law, h_margin, h_target = OMEGA1_LAW, OMEGA_SLOPE_MARGIN, 0.0
    k_verdict = equality_verdict(ntk, 0.0, KERNEL_SLOPE_MARGIN)
    # Transition to linearity: a vanishing Hessian next to a Theta(1) kernel (Prop. 2.2).
    if h_verdict.confirmed and k_verdict.confirmed:
        transition = "yes" if row == "linear-output" else "no"
    else:
        transition = "undetermined"
    name, expected_hessian, expected_transition = ROWS[row]
    if transition == expected_transition:
        outcome = CONFIRMED
    elif transition != "undetermined" or REFUTED in (h_verdict.verdict, k_verdict.verdict):
        outcome = REFUTED
    else:
        outcome = INCONCLUSIVE
    verdict = Verdict(
        outcome,
        f"Hessian: {h_verdict.reason}; NTK: {k_verdict.reason}; transition {transition} (paper: {expected_transition})",
        p_confirm=h_verdict.p_confirm * k_verdict.p_confirm,
        edge_se=min(h_verdict.edge_se, k_verdict.edge_se),
        details=h_verdict.details,
    )
    judge(
        scaling_record(
            "C10",
            row,
            title=f"Table 1, {name}: Hessian {expected_hessian}, NTK Theta(1), transition {expected_transition}",
            quantity=f"max over {N_INPUTS} inputs of ||H||; NTK tr K / n over {NTK_INPUTS} inputs in extra",
            law=h_law,
            target=h_target,
            margin=h_margin,
            fit=hessian,
            verdict=verdict,
            floor=None if row == "linear-output" else OMEGA_FLOOR,
            extra={
                "row": name,
                "hessian_verdict": h_verdict.verdict,
                "ntk_slope": ntk.slope,
                "ntk_ci95": list(ntk.ci95),
                "ntk_ci90": list(ntk.ci90),
                "ntk_r2": ntk.r2,
                "ntk_margin": KERNEL_SLOPE_MARGIN,
                "ntk_verdict": k_verdict.verdict,
                "ntk_points": ntk.n_points,
                "transition": transition,
                "paper_transition": expected_transition,
            },
        )
    )
