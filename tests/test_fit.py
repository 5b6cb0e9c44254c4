"""Log-log fits and verdicts: right exponents accepted, wrong ones rejected, bad data refused."""

from __future__ import annotations

import numpy as np
import pytest

import claims.test_sec3_linear_output as sec3
import claims.test_sec4_bottleneck as sec4b
import claims.test_sec4_nonlinear_output as sec4
from harness.fit import (
    CONFIRMED,
    INCONCLUSIVE,
    REFUTED,
    FitError,
    bound_verdict,
    equality_verdict,
    loglog_fit,
    omega1_verdict,
    upper_bound_verdict,
)

WIDTHS = [32, 64, 128, 256, 512, 1024]


def series(slope, noise=0.2, seeds=8, level=1.0, seed=0, widths=WIDTHS):
    """A power law with log-normal noise of the size measured on Hessian norms (15-40%)."""
    rng = np.random.default_rng(seed)
    w = np.repeat(widths, seeds).astype(float)
    s = np.tile(np.arange(seeds), len(widths))
    y = level * (w / w[0]) ** slope * np.exp(noise * rng.normal(size=w.size))
    return loglog_fit(w, y, s)


def test_fit_recovers_the_exponent_with_a_calibrated_ci():
    covered = 0
    trials = 200
    for seed in range(trials):
        fit = series(-0.5, seed=seed)
        covered += fit.ci95[0] <= -0.5 <= fit.ci95[1]
        assert fit.ci90[0] > fit.ci95[0] and fit.ci90[1] < fit.ci95[1]
    assert 0.90 <= covered / trials <= 0.99  # nominal 95%
    fit = series(-0.5, noise=0.0)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12) and fit.r2 == pytest.approx(1.0)
    assert fit.n_points == len(WIDTHS) * 8 and fit.distinct_widths == WIDTHS


def test_equality_verdict():
    assert equality_verdict(series(-0.5), -0.5, 0.1).verdict == CONFIRMED
    assert equality_verdict(series(0.0), -0.5, 0.1).verdict == REFUTED
    assert equality_verdict(series(-0.5), 0.0, 0.05).verdict == REFUTED
    assert equality_verdict(series(-1.0), -0.5, 0.1).verdict == REFUTED
    # Too few points for the CI to fit inside the band: not a pass.
    assert equality_verdict(series(-0.5, noise=1.0, seeds=1), -0.5, 0.1).verdict == INCONCLUSIVE


def test_upper_bound_verdict():
    assert upper_bound_verdict(series(-0.5), -0.5, 0.15).verdict == CONFIRMED
    assert upper_bound_verdict(series(-1.0), -0.5, 0.15).verdict == CONFIRMED
    assert upper_bound_verdict(series(0.0), -0.5, 0.15).verdict == REFUTED
    assert upper_bound_verdict(series(-0.3), -0.5, 0.15).verdict != CONFIRMED


def test_omega1_verdict():
    assert omega1_verdict(series(0.0), 0.1, floor=0.1).verdict == CONFIRMED
    assert omega1_verdict(series(-0.5), 0.1, floor=1e-3).verdict == REFUTED
    assert omega1_verdict(series(0.0, level=0.05), 0.1, floor=0.1).verdict == REFUTED
    wide = series(-0.2, noise=2.0, seeds=2)
    assert omega1_verdict(wide, 0.1, floor=1e-6).verdict != CONFIRMED


def test_bound_verdict():
    assert bound_verdict(1e-15, 1e-12, "x").verdict == CONFIRMED
    assert bound_verdict(1e-9, 1e-12, "x").verdict == REFUTED
    assert bound_verdict(float("nan"), 1e-12, "x").verdict == REFUTED


# Each claim check of claims/ with its own target and margin, fed a series of the wrong exponent.
CLAIM_CHECKS = [
    ("C2/C4 Hessian norm", lambda f: equality_verdict(f, -0.5, sec3.HESSIAN_SLOPE_MARGIN), -0.5, [0.0, -1.0, -0.3]),
    ("C3 kernel", lambda f: equality_verdict(f, 0.0, sec3.KERNEL_SLOPE_MARGIN), 0.0, [-0.5, 0.2, -0.1]),
    ("C3 kernel limit", lambda f: upper_bound_verdict(f, -0.5, sec3.KERNEL_LIMIT_SLOPE_MARGIN), -0.5, [0.0, -0.1]),
    ("C5 inf-norm", lambda f: equality_verdict(f, -0.5, sec3.INF_NORM_SLOPE_MARGIN), -0.5, [0.0, -1.0]),
    ("C5 two-norm", lambda f: equality_verdict(f, 0.0, sec3.TWO_NORM_SLOPE_MARGIN), 0.0, [-0.5, -0.15]),
    ("C8/C9 Omega(1) Hessian", lambda f: omega1_verdict(f, sec4.OMEGA_SLOPE_MARGIN, sec4.OMEGA_FLOOR), 0.0, [-0.5, -0.35, 0.4]),
    ("C9 bottleneck gradient", lambda f: omega1_verdict(f, sec4.OMEGA_SLOPE_MARGIN, sec4b.BOTTLENECK_GRADIENT_FLOOR), 0.0, [-0.5, 0.4]),
]


def test_omega1_checks_reject_a_level_below_their_floor():
    low = series(0.0, noise=0.1, seeds=16, level=sec4.OMEGA_FLOOR / 3)
    assert omega1_verdict(low, sec4.OMEGA_SLOPE_MARGIN, sec4.OMEGA_FLOOR).verdict == REFUTED
    low = series(0.0, noise=0.1, seeds=16, level=sec4b.BOTTLENECK_GRADIENT_FLOOR / 3)
    assert omega1_verdict(low, sec4.OMEGA_SLOPE_MARGIN, sec4b.BOTTLENECK_GRADIENT_FLOOR).verdict == REFUTED


@pytest.mark.parametrize("name,check,right,wrong", CLAIM_CHECKS, ids=[c[0] for c in CLAIM_CHECKS])
def test_each_claim_check_rejects_a_wrong_exponent(name, check, right, wrong):
    assert check(series(right, noise=0.1, seeds=16)).verdict == CONFIRMED
    for slope in wrong:
        assert check(series(slope, noise=0.1, seeds=16)).verdict != CONFIRMED, slope


@pytest.mark.parametrize(
    "widths,values,match",
    [
        ([10, 10, 20, 20], [1, 2, 3, 4], "at least 3 distinct widths, got 2"),
        ([10, 20, 40], [1.0, float("nan"), 2.0], "non-finite value.*width 20"),
        ([10, 20, 40], [1.0, float("inf"), 2.0], "non-finite"),
        ([10, 20, 40], [1.0, 0.0, 2.0], "positive values"),
        ([10, 20, 40], [1.0, -1.0, 2.0], "positive values"),
        ([10, 20], [1.0, 2.0, 3.0], "differ in length"),
        ([0, 20, 40], [1.0, 2.0, 3.0], "widths must be positive"),
    ],
)
def test_bad_series_are_clear_errors(widths, values, match):
    with pytest.raises(FitError, match=match):
        loglog_fit(widths, values)


def test_bad_margins():
    fit = series(-0.5)
    with pytest.raises(ValueError, match="margin"):
        equality_verdict(fit, -0.5, -0.1)
    with pytest.raises(ValueError, match="floor"):
        omega1_verdict(fit, 0.1, floor=0.0)
