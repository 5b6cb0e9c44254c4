"""Power-law fits in log-log space and the verdicts of CLAIMS.md ("How a claim is judged").

A scaling claim is judged by fitting ``log y = a + b log m`` by ordinary least squares over every
(width, seed) point and comparing the slope b with the paper's exponent:

* equality (slope = target): confirmed when the 90% confidence interval of b lies inside
  ``[target - delta, target + delta]``, which is the two one-sided tests (TOST) equivalence test at
  level 5%; refuted when the 90% CI lies entirely outside that band; inconclusive otherwise;
* upper bound (slope <= target, e.g. O(1/sqrt m)): confirmed when the upper end of the 90% CI (a
  one-sided 95% bound) is <= target + delta; refuted when its lower end is above it;
* Omega(1) (does not vanish): the equality test with target 0, plus the 90% CI must exclude -1/2
  (the linear-output law) and the level at the largest width must be above a stated floor.

Every fit keeps its raw points, the 95% CI (reported) and the 90% CI (used by the verdicts).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import statsmodels.api as sm

CONFIRMED = "confirmed"
REFUTED = "refuted"
INCONCLUSIVE = "inconclusive"
EXPLORATORY = "exploratory"
VERDICTS = (CONFIRMED, REFUTED, INCONCLUSIVE, EXPLORATORY)

#: A slope needs at least this many distinct widths (two points always fit a line exactly).
MIN_DISTINCT_WIDTHS = 3


class FitError(ValueError):
    """The data cannot support a fit: too few widths, non-finite or non-positive values."""


@dataclasses.dataclass(frozen=True)
class LogLogFit:
    """OLS fit of ``log(value) = intercept + slope * log(width)``.

    Attributes:
      slope, intercept, stderr: the fitted exponent, the intercept and the slope's standard error.
      ci95, ci90: two-sided confidence intervals of the slope (t distribution, n - 2 dof).
      r2: coefficient of determination.
      widths, seeds, values: every point used, in input order.
    """

    slope: float
    intercept: float
    stderr: float
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    r2: float
    widths: tuple[float, ...]
    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def n_points(self) -> int:
        return len(self.values)

    @property
    def distinct_widths(self) -> list[float]:
        return sorted(set(self.widths))

    def level_at_largest(self) -> float:
        """Geometric mean of the values at the largest width (the fit is in log space)."""
        top = max(self.widths)
        at_top = [v for w, v in zip(self.widths, self.values) if w == top]
        return float(np.exp(np.mean(np.log(at_top))))

    def predict(self, width: float) -> float:
        return float(math.exp(self.intercept + self.slope * math.log(width)))


def loglog_fit(widths: Sequence[float], values: Sequence[float], seeds: Sequence[int] | None = None) -> LogLogFit:
    """Fit ``log(values) = a + b log(widths)`` by OLS over all points (statsmodels).

    Args:
      widths: the width (or other size) of each point; repeated widths are different seeds.
      values: the measured quantity, > 0 and finite.
      seeds: the seed of each point, kept for the record (default: all 0).

    Raises:
      FitError: fewer than 3 distinct widths, mismatched lengths, non-finite or non-positive
        values or widths.
    """
    w = np.asarray(widths, dtype=np.float64).ravel()
    y = np.asarray(values, dtype=np.float64).ravel()
    s = np.zeros(len(w), dtype=np.int64) if seeds is None else np.asarray(seeds).ravel()
    if not (len(w) == len(y) == len(s)):
        raise FitError(f"widths, values and seeds differ in length: {len(w)}, {len(y)}, {len(s)}")
    bad = ~np.isfinite(y)
    if bad.any():
        first = int(np.argmax(bad))
        raise FitError(f"{int(bad.sum())} non-finite value(s), first at width {w[first]:g}: {y[first]}")
    if (y <= 0).any():
        first = int(np.argmax(y <= 0))
        raise FitError(f"a log-log fit needs positive values; got {y[first]!r} at width {w[first]:g}")
    if not np.all(np.isfinite(w)) or (w <= 0).any():
        raise FitError("widths must be positive and finite")
    distinct = np.unique(w)
    if len(distinct) < MIN_DISTINCT_WIDTHS:
        raise FitError(
            f"a slope needs at least {MIN_DISTINCT_WIDTHS} distinct widths, got {len(distinct)}: "
            f"{[float(v) for v in distinct]}"
        )
    X = sm.add_constant(np.log(w))
    result = sm.OLS(np.log(y), X).fit()
    ci95 = result.conf_int(alpha=0.05)[1]
    ci90 = result.conf_int(alpha=0.10)[1]
    r2 = float(result.rsquared) if np.isfinite(result.rsquared) else 1.0
    return LogLogFit(
        slope=float(result.params[1]),
        intercept=float(result.params[0]),
        stderr=float(result.bse[1]),
        ci95=(float(ci95[0]), float(ci95[1])),
        ci90=(float(ci90[0]), float(ci90[1])),
        r2=r2,
        widths=tuple(float(v) for v in w),
        seeds=tuple(int(v) for v in s),
        values=tuple(float(v) for v in y),
    )


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A verdict and the sentence that explains it."""

    verdict: str
    reason: str

    @property
    def confirmed(self) -> bool:
        return self.verdict == CONFIRMED


def _ci(fit: LogLogFit) -> tuple[float, float]:
    return fit.ci90


def equality_verdict(fit: LogLogFit, target: float, delta: float) -> Verdict:
    """slope = target, judged by TOST: the 90% CI must lie inside [target - delta, target + delta]."""
    _check_margin(delta)
    lo, hi = _ci(fit)
    band = (target - delta, target + delta)
    text = f"slope {fit.slope:+.3f}, 90% CI [{lo:+.3f}, {hi:+.3f}] vs band [{band[0]:+.3f}, {band[1]:+.3f}]"
    if band[0] <= lo and hi <= band[1]:
        return Verdict(CONFIRMED, f"{text}: inside")
    if hi < band[0] or lo > band[1]:
        return Verdict(REFUTED, f"{text}: outside")
    return Verdict(INCONCLUSIVE, f"{text}: overlaps the band's edge")


def upper_bound_verdict(fit: LogLogFit, target: float, delta: float) -> Verdict:
    """slope <= target: the upper end of the 90% CI must be <= target + delta."""
    _check_margin(delta)
    lo, hi = _ci(fit)
    bound = target + delta
    text = f"slope {fit.slope:+.3f}, 90% CI [{lo:+.3f}, {hi:+.3f}] vs bound {bound:+.3f}"
    if hi <= bound:
        return Verdict(CONFIRMED, f"{text}: below")
    if lo > bound:
        return Verdict(REFUTED, f"{text}: above")
    return Verdict(INCONCLUSIVE, f"{text}: straddles the bound")


def omega1_verdict(fit: LogLogFit, delta: float, floor: float, excluded: float = -0.5) -> Verdict:
    """Omega(1): slope within [-delta, delta] (TOST), CI excluding ``excluded``, level above floor.

    The level is the geometric mean of the values at the largest width.
    """
    _check_margin(delta)
    if not floor > 0:
        raise ValueError(f"the floor of an Omega(1) claim must be positive, got {floor!r}")
    lo, hi = _ci(fit)
    level = fit.level_at_largest()
    text = (
        f"slope {fit.slope:+.3f}, 90% CI [{lo:+.3f}, {hi:+.3f}] vs band [{-delta:+.3f}, {delta:+.3f}]; "
        f"level at m={max(fit.widths):g} is {level:.3g} vs floor {floor:.3g}"
    )
    if level < floor or hi < -delta or lo > delta:
        return Verdict(REFUTED, f"{text}: fails")
    if lo <= excluded <= hi:
        return Verdict(INCONCLUSIVE, f"{text}: CI contains {excluded:+.2f}")
    if -delta <= lo and hi <= delta:
        return Verdict(CONFIRMED, f"{text}: holds")
    return Verdict(INCONCLUSIVE, f"{text}: CI overlaps the band's edge")


def bound_verdict(worst: float, limit: float, what: str) -> Verdict:
    """An identity or inequality checked at every sample: the worst value must be <= limit."""
    if not math.isfinite(worst):
        return Verdict(REFUTED, f"{what}: worst value is {worst}")
    if worst <= limit:
        return Verdict(CONFIRMED, f"{what}: worst {worst:.3g} <= {limit:.3g}")
    return Verdict(REFUTED, f"{what}: worst {worst:.3g} > {limit:.3g}")


def expected_max_abs_normal(m: int) -> float:
    """E[max_{i <= m} |Z_i|] for i.i.d. standard normals: the sqrt(2 ln m) "log factor" made exact.

    ``E[max] = int_0^inf 1 - (2 Phi(t) - 1)^m dt``, by adaptive quadrature. A vector of m entries of
    size 1/sqrt(m) has an infinity-norm of about this times 1/sqrt(m): dividing by it turns an
    O~(1/sqrt m) law into an exact m^(-1/2) law.
    """
    from scipy import integrate, special

    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")

    def tail(t):
        return -np.expm1(m * np.log(special.erf(t / math.sqrt(2)))) if t > 0 else 1.0

    value, _ = integrate.quad(tail, 0.0, 40.0, limit=200, epsabs=1e-13, epsrel=1e-12)
    return float(value)


def _check_margin(delta: float) -> None:
    if not (delta >= 0 and math.isfinite(delta)):
        raise ValueError(f"a margin must be a finite number >= 0, got {delta!r}")
