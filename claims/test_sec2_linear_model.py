"""Section 2, Proposition 2.1: the tangent kernel is constant if and only if the model is linear in w (C16).

Read next to the paper: Sec. 2 (Proposition 2.1, proof in Appendix D). Two models linear in their
trained weights are trained exactly like the Fig. 1 network (same data, same learning-rate rule,
same stopping rule, ``harness.train``), and their kernel must not move at all:

* random features: the Fig. 1 network with its hidden layer frozen (``train_hidden=False``), so
  f(w; x) = w . phi(x) with phi(x) = tanh(W1 x / sqrt d) / sqrt m;
* the linearized network: the first-order Taylor model f(w0) + grad f(w0) . (w - w0) of the Fig. 1
  network (``harness.train.LinearizedNetwork``), whose kernel is computed by the generic blocked
  Jacobian method, not by the network's layer structure.

Their partner is the non-linear Fig. 1 network itself (the same width, initialization and data),
whose kernel must move by a measurable amount.
"""

from __future__ import annotations


import pytest

from harness.fit import CONFIRMED, REFUTED, Verdict, bound_verdict, lower_bound_verdict, round_off_limit
from harness.records import bound_record
from harness.train import LinearizedNetwork, fig1_config, fig1_point, grid_dtype, section6_network, train_point

# ------------------------------------------------------------------------------------------------
# Margins. Each is fixed before looking at data; the reason is on the line.

#: A linear model's kernel is a fixed Gram matrix recomputed from the same features: any change is
#: round-off of a few inner products, a few ulps: ``harness.fit.round_off_limit`` of the run's dtype.

#: The non-linear partner must move its kernel by at least this much for the comparison to mean
#: anything: 1e-6 is ~3 orders of magnitude above the float64 tolerance and ~3 below the
#: O(m^-1/2) kernel change of C11 at the widths used (m <= 1e4).
NONLINEAR_DETECTABLE = 1e-6

MODELS = ["random-features", "linearized"]


def _grid(tier):
    return tier.grid("training")


def _linear_model(kind: str, width: int, grid):
    if kind == "random-features":
        return section6_network(width, grid.input_dim, "linear", train_hidden=False)
    return LinearizedNetwork(section6_network(width, grid.input_dim, "linear"))


def constant_kernel_verdict(worst: float, separated: float, tolerance: float) -> Verdict:
    """Confirmed when the linear model's largest Delta K is within round-off (<= tolerance) and the
    non-linear network's smallest Delta K is at least NONLINEAR_DETECTABLE."""
    constant = bound_verdict(worst, tolerance, "max Delta K of the linear model")
    moving = lower_bound_verdict(separated, NONLINEAR_DETECTABLE, "Delta K of the network")
    if constant.confirmed and moving.confirmed:
        return Verdict(CONFIRMED, f"{constant.reason}; {moving.reason}")
    return Verdict(REFUTED, "; ".join(v.reason for v in (constant, moving) if not v.confirmed))


@pytest.mark.parametrize("kind", MODELS)
def test_c16_linear_model_has_a_constant_kernel(kind, tier, base_seed, dtype, judge, progress):
    """C16 (Prop. 2.1): a model linear in w keeps Delta K = 0 to round-off under gradient descent,
    while the non-linear network of the same width, initialization and data does not."""
    grid = _grid(tier)
    run_dtype = grid_dtype(grid, dtype)
    tolerance = round_off_limit(run_dtype)
    seeds = tuple(base_seed + i for i in range(grid.seeds))
    linear_dk, nonlinear_dk, rows = [], [], []
    for width in grid.linear_model_widths:
        for seed in seeds:
            model = _linear_model(kind, width, grid)
            lin = train_point(model, seed=seed, width=width, n=grid.n_train, dtype=run_dtype, config=fig1_config(grid))
            full = fig1_point(grid, "linear", width, seed, run_dtype)
            linear_dk.append(lin.delta_k)
            nonlinear_dk.append(full.delta_k)
            rows.append({"width": width, "seed": seed, "linear_model": lin.delta_k, "nonlinear": full.delta_k,
                         "linear_model_steps": lin.steps, "linear_model_relative_loss": lin.relative_loss})
        progress(f"C16 {kind} width {width}: linear model Delta K <= {max(linear_dk):.3g}, network >= {min(nonlinear_dk):.3g}")
    worst = max(linear_dk)
    separated = min(nonlinear_dk)
    verdict = constant_kernel_verdict(worst, separated, tolerance)
    judge(
        bound_record(
            "C16",
            kind,
            title=f"Prop. 2.1: {kind} model (linear in w) has a constant kernel; the network does not",
            quantity=f"max Delta K of the {kind} model under GD",
            law="Delta K = 0 to round-off (network: > 1e-6)",
            worst=worst,
            limit=tolerance,
            verdict=verdict,
            samples=len(linear_dk),
            extra={
                "model": {"random-features": "the Fig. 1 network with its hidden layer frozen (only V trained)",
                          "linearized": "f(w0) + grad f(w0) . (w - w0) of the Fig. 1 network"}[kind],
                "partner": "the Fig. 1 network (1 hidden tanh layer, both layers trained, linear output)",
                "network_min_delta_k": separated,
                "nonlinear_detectable": NONLINEAR_DETECTABLE,
                "runs": rows,
                "data": full.data,
            },
        )
    )
