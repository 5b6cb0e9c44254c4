"""Section 5, Theorem 5.1: gradient descent converges exponentially without transition to linearity (C15).

Read next to the paper: Sec. 5 (Theorem 5.1, Eq. 15) and Sec. 4 (Eq. 11-14). The network is
f~ = phi(f) with f the one-hidden-layer tanh network of Fig. 1 and the output function
phi(z) = z + a tanh(z), a = ``TANH_LINEAR_A`` = -0.5, so phi'(z) = 1 - 0.5 sech^2(z) lies in
[0.5, 1]: |phi'| >= rho = 1 - |a| = 0.5 as the theorem requires, and phi'' != 0, so the kernel of
f~ does not stay constant (Sec. 4). It is trained by full-batch gradient descent on the square loss
until L(w_t) <= rel_tol L(w_0) (``harness.train``), and three things are checked:

1. Eq. 15, L(w_t) <= (1 - eta mu rho^2)^t L(w_0), at every step t of every run, with mu the
   smallest eigenvalue of the tangent kernel of the inner network f (``tangent_kernel(...,
   inner=True)``) minimized over the recorded path (every ``chunk`` steps, w_0 and w_T included).
   Why this is the theorem's mu: the proof (Corollary 8.1 of the paper's ref. [14]) uses
   lambda_min(K_f(w)) >= mu only at the iterates, through
   lambda_min(K_{f~}(w_t)) >= rho^2 lambda_min(K_f(w_t)) (K_{f~} = D K_f D with D = diag(phi'(f)),
   |D| >= rho), so any mu <= min_t lambda_min(K_f(w_t)) is valid and the minimum over the path is
   the largest, i.e. the tightest bound. Sampling the path every ``chunk`` steps can only raise the
   minimum: the checked bound is at least as strict as the theorem's.
2. log L(t) decays linearly: the OLS rate of log L(t) on t (with its 95% CI and R^2) is at least
   the theorem's rate -ln(1 - eta mu rho^2) in every run.
3. Delta K of f~ stays Omega(1) over the width grid: no transition to linearity, yet (1) and (2).

The swish output (phi' changes sign at z ~ -1.28, so no rho > 0 exists on R) is recorded as
exploratory, with rho measured along the path, from the Fig. 1 runs (whose mirrored initialization
and targets keep that path where swish' >= 0.2: ``harness.train.SWISH_INIT``).
"""

from __future__ import annotations

import math

import numpy as np

from harness.fit import OMEGA1_LAW, bound_verdict, omega1_verdict
from harness.laws import OMEGA1_FLOOR, OMEGA1_SLOPE_MARGIN
from harness.models import TANH_LINEAR_A
from harness.records import bound_record, exploratory_record, scaling_record
from harness.sweep import run_sweep
from harness.train import (
    TrainConfig,
    converged_verdict,
    fig1_point,
    grid_dtype,
    loss_decay_fit,
    run_facts,
    section6_network,
    theorem51_bound_ratio,
    train_point,
)

# ------------------------------------------------------------------------------------------------
# Margins. Each is fixed before looking at data; the reason is on the line.

#: rho of Theorem 5.1 for phi(z) = z + a tanh z: phi' = 1 + a sech^2 z lies in [1 - |a|, 1].
RHO = 1.0 - abs(TANH_LINEAR_A)

#: Eq. 15 is an inequality with nothing to spare: L(w_t) / ((1 - eta mu rho^2)^t L(w_0)) <= 1.
BOUND_LIMIT = 1.0

#: The fitted decay rate must reach the theorem's rate: (theorem rate) / (lower end of the 95% CI
#: of the fitted rate) <= 1. The tail of the loss decays at ~2 eta lambda_min(K_f~) >= 2 eta mu
#: rho^2, twice the theorem's rate, so a linear decay leaves a factor 2 for the early transient.
RATE_LIMIT = 1.0

#: Delta K of f~ is Omega(1): the margin and floor of C11's non-linear outputs (harness.laws:
#: OMEGA1_SLOPE_MARGIN, OMEGA1_FLOOR; the change of phi'(f)^2 is Theta(1), the inner kernel's
#: change O(m^-1/2) shifts the slope by ~0.03).

HEAD = "tanh_linear"


def _grid(tier):
    return tier.grid("training")


def _seeds(grid, base_seed):
    return tuple(base_seed + i for i in range(grid.seeds))


def _config(grid) -> TrainConfig:
    return TrainConfig(rel_tol=grid.rel_tol, max_steps=grid.convergence_max_steps, chunk=grid.chunk, track_inner=True)


def _theorem_check(r, rho: float) -> dict:
    """Eq. 15 along one run: mu over the recorded path, the worst ratio, and the decay fit."""
    mu = float(np.min(r.inner_eig_min))
    ratio = theorem51_bound_ratio(r.loss, r.learning_rate, mu, rho)
    fit = loss_decay_fit(r.loss)
    theorem_rate = -math.log1p(-r.learning_rate * mu * rho**2)
    return {
        "mu": mu,
        "eta": r.learning_rate,
        "eta_mu_rho2": r.learning_rate * mu * rho**2,
        "worst_ratio": float(ratio.max()),
        "worst_step": int(np.argmax(ratio)) + 1,
        "rate": fit.rate,
        "rate_ci95": list(fit.ci95),
        "r2": fit.r2,
        "theorem_rate": theorem_rate,
        "rate_shortfall": theorem_rate / fit.ci95[0] if fit.ci95[0] > 0 else math.inf,
        "steps": r.steps,
        "stopped": r.stopped,
        "relative_loss": r.relative_loss,
        "delta_k": r.delta_k,
        "phi_prime_min_on_path": float(np.min(r.head_slope_min)),
    }


def test_c15_gradient_descent_converges_exponentially_without_linearity(tier, base_seed, dtype, judge, progress):
    """C15 (Thm 5.1, Eq. 15): L(w_t) <= (1 - eta mu rho^2)^t L(w_0) at every step, log L decays
    linearly at least at that rate, and Delta K of f~ = phi(f) stays Omega(1) in the width."""
    grid = _grid(tier)
    run_dtype = grid_dtype(grid, dtype)
    checks = []
    results = []

    def measure(width, seed):
        model = section6_network(width, grid.input_dim, HEAD)
        r = train_point(model, seed=seed, width=width, n=grid.n_train, dtype=run_dtype, config=_config(grid))
        results.append(r)
        c = _theorem_check(r, RHO)
        checks.append({"width": width, "seed": seed, **c})
        return {"delta_k": r.delta_k, "worst_ratio": c["worst_ratio"]}

    series = run_sweep(grid.convergence_widths, _seeds(grid, base_seed), measure, progress, f"C15 {HEAD}")
    worst = max(c["worst_ratio"] for c in checks)
    worst_rate = max(c["rate_shortfall"] for c in checks)
    fit = series.fit("delta_k")
    summary = {
        "network": "1 hidden tanh layer (width m), both trained, output phi(f) = f - 0.5 tanh f",
        "rho": RHO,
        "phi_prime_min_on_any_path": min(c["phi_prime_min_on_path"] for c in checks),
        "mu_min": min(c["mu"] for c in checks),
        "mu_max": max(c["mu"] for c in checks),
        "eta_mu_rho2_min": min(c["eta_mu_rho2"] for c in checks),
        "rate_min": min(c["rate"] for c in checks),
        "r2_min": min(c["r2"] for c in checks),
        **run_facts(results),
        "data": results[0].data,
        "mu_definition": "min over recorded steps of lambda_min(K_f(w_t)), K_f the inner network's kernel",
    }
    judge(
        bound_record(
            "C15",
            f"{HEAD}-eq15",
            title="Thm 5.1: L(w_t) <= (1 - eta mu rho^2)^t L(w_0) at every step (Eq. 15)",
            quantity="max over runs and steps of L(w_t) / ((1 - eta mu rho^2)^t L(w_0))",
            law="<= 1",
            worst=worst,
            limit=BOUND_LIMIT,
            # Eq. 15 bounds every step taken, converged or not: no convergence gate here.
            verdict=bound_verdict(worst, BOUND_LIMIT, "L(w_t) / ((1 - eta mu rho^2)^t L(w_0))"),
            samples=int(sum(c["steps"] for c in checks)),
            extra={**summary, "runs": checks},
        ),
        bound_record(
            "C15",
            f"{HEAD}-rate",
            title="Thm 5.1: log L(t) decays linearly, at least at the rate -ln(1 - eta mu rho^2)",
            quantity="max over runs of theorem rate / lower 95% end of the fitted rate of log L(t)",
            law="<= 1",
            worst=worst_rate,
            limit=RATE_LIMIT,
            verdict=bound_verdict(worst_rate, RATE_LIMIT, "theorem rate / fitted rate (lower CI end)"),
            samples=len(checks),
            extra=summary,
        ),
        scaling_record(
            "C15",
            f"{HEAD}-kernel-change",
            title="Thm 5.1 setting: Delta K of f~ = phi(f) stays Omega(1) while GD converges (Sec 5)",
            quantity="delta_k",
            law=OMEGA1_LAW,
            target=0.0,
            margin=OMEGA1_SLOPE_MARGIN,
            fit=fit,
            verdict=converged_verdict(omega1_verdict(fit, OMEGA1_SLOPE_MARGIN, OMEGA1_FLOOR), results, moving_kernel=True),
            floor=OMEGA1_FLOOR,
            extra=summary,
        ),
    )


def test_c15_swish_output_exploratory(tier, base_seed, dtype, judge, progress):
    """C15, exploratory: the swish output has phi'(z) = 0 at z ~ -1.28, outside Theorem 5.1.

    The Fig. 1 swish runs are checked against Eq. 15 with rho measured as the smallest
    |phi'(f(w_t; x_i))| over the recorded path (a bound the theorem does not give for swish, since
    its rho is an infimum over R); recorded, never judged.
    """
    grid = _grid(tier)
    run_dtype = grid_dtype(grid, dtype)
    checks = []
    for width in grid.fig1_widths:
        for seed in _seeds(grid, base_seed):
            r = fig1_point(grid, "swish", width, seed, run_dtype)
            rho = float(np.min(r.head_slope_min))
            checks.append({"width": width, "seed": seed, "rho_on_path": rho, **_theorem_check(r, rho)})
        progress(f"C15 swish width {width}: worst Eq. 15 ratio so far {max(c['worst_ratio'] for c in checks):.3g}")
    worst = max(c["worst_ratio"] for c in checks)
    record = bound_record(
        "C15",
        "swish-exploratory",
        title="Thm 5.1 outside its assumption: swish output (phi' not bounded below), rho measured on the path",
        quantity="max over runs and steps of L(w_t) / ((1 - eta mu rho_path^2)^t L(w_0))",
        law="<= 1 (no theorem applies)",
        worst=worst,
        limit=BOUND_LIMIT,
        verdict=bound_verdict(worst, BOUND_LIMIT, "L(w_t) / ((1 - eta mu rho_path^2)^t L(w_0))"),
        samples=len(checks),
        extra={
            "rho_on_path_min": min(c["rho_on_path"] for c in checks),
            "rate_min": min(c["rate"] for c in checks),
            "r2_min": min(c["r2"] for c in checks),
            "relative_loss_max": max(c["relative_loss"] for c in checks),
            "runs": checks,
        },
    )
    judge(exploratory_record(record))
