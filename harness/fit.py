"""Power-law fits and the verdicts of CLAIMS.md ("How a claim is judged").

A scaling claim fits the law ``E[y] = a m^b`` over every (width, seed) point and compares the
exponent b with the paper's:

* ``power_law_fit``: a generalized linear model with a Gamma family and a log link (statsmodels),
  so the law is fitted on the mean. Its score equations are those of weighted least squares of y on
  ``a m^b``; they give a consistent b whatever the variance of y, and the standard error is the
  sandwich (robust) one, so a relative spread that changes with m biases neither. Log-OLS
  (``loglog_fit``, kept as the reference it replaced) estimates the slope of E[log y] instead, which
  differs from that of log E[y] by the slope of -CV^2/2: a Theta(1) quantity whose coefficient of
  variation falls with m gets a spurious positive slope (tests/test_fit.py shows it).
* equality (slope = target): confirmed when the 90% CI of b lies inside
  ``[target - delta, target + delta]`` (two one-sided tests at 5%); refuted when it lies outside;
  inconclusive otherwise;
* upper bound (slope <= target): confirmed when the upper end of the 90% CI is <= target + delta;
* Omega(1) (a positive limit): ``y = a + c m^(-1/2)`` is fitted by OLS with HC3 errors (the
  paper's finite-width correction is of order m^(-1/2), Eq. 5 and Eq. 13); confirmed when the lower
  end of the 90% CI of the limit a is above both the claim's absolute floor and half the mean value
  at the smallest width, and the upper end of the slope's 90% CI is at most +delta (it does not
  grow). See ``omega1_verdict`` for why half.

Every judged verdict carries ``p_confirm``: the probability that a rerun with fresh seeds confirms
it, taking the fitted value as true and its standard error as the rerun's (normal model), and
``edge_se``: how far, in standard errors, the decisive CI end lies inside its band (negative when
outside).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CONFIRMED = "confirmed"
REFUTED = "refuted"
INCONCLUSIVE = "inconclusive"
EXPLORATORY = "exploratory"
VERDICTS = (CONFIRMED, REFUTED, INCONCLUSIVE, EXPLORATORY)

def _sm():
    """statsmodels, imported at the first fit: with scipy.stats it is 2.5 of the 6.5 s a process
    took to start before it could report a usage error or list the tests (harness.check imports it
    before loading a user's module, see there)."""
    import statsmodels.api as sm

    return sm


def _stats():
    from scipy import stats

    return stats


#: A slope needs at least this many distinct widths (two points always fit a line exactly).
MIN_DISTINCT_WIDTHS = 3

#: Omega(1): the fitted limit must keep at least this fraction of the mean at the smallest width.
#: A Theta(1) quantity with an O(m^(-1/2)) correction keeps nearly all of it (the phi(f) heads:
#: 0.9-1.0); a decay m^(-beta) fitted by a + c m^(-1/2) over a sweep of 100x in width or more keeps
#: less than half for beta >= 0.15 (m^(-1/4): 0.24-0.26, m^(-1/2): 0), so a slow decay is not
#: mistaken for a limit. Fixed before any verdict was computed with it.
OMEGA_LIMIT_FRACTION = 0.5


#: The law an Omega(1) record states (see ``omega1_verdict``).
OMEGA1_LAW = "Omega(1): limit a of a + c m^(-1/2) >= max(floor, 1/2 mean at the smallest m); slope <= +margin"
#: The law of ``positive_limit_verdict``: the lower side of OMEGA1_LAW alone.
POSITIVE_LIMIT_LAW = "Omega(1): limit a of a + c m^(-1/2) >= max(floor, 1/2 mean at the smallest m)"


class FitError(ValueError):
    """The data cannot support a fit: too few widths, non-finite or non-positive values."""


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """A fit of ``E[value] = exp(intercept) * width^slope``.

    Attributes:
      slope, intercept, stderr: the fitted exponent, the log of the prefactor, the slope's standard
        error (robust for the GLM).
      ci95, ci90: two-sided confidence intervals of the slope (t distribution, n - 2 dof).
      r2: 1 - deviance / null deviance (GLM), the ordinary R^2 of log values (log-OLS).
      widths, seeds, values: every point used, in input order.
      method: "gamma-glm-log-link-hc1" or "log-ols".
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
    method: str = "gamma-glm-log-link-hc1"

    @property
    def n_points(self) -> int:
        return len(self.values)

    @property
    def dof(self) -> int:
        return self.n_points - 2

    @property
    def distinct_widths(self) -> list[float]:
        return sorted(set(self.widths))

    def mean_at(self, width: float) -> float:
        """Mean of the values at one width (the law is on the mean)."""
        return float(np.mean([v for w, v in zip(self.widths, self.values) if w == width]))

    def level_at_largest(self) -> float:
        return self.mean_at(max(self.widths))

    def level_at_smallest(self) -> float:
        return self.mean_at(min(self.widths))

    def predict(self, width: float) -> float:
        return float(math.exp(self.intercept + self.slope * math.log(width)))


def _points(widths, values, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float arrays of the points; raises FitError naming what is wrong."""
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
        raise FitError(f"a power-law fit needs positive values; got {y[first]!r} at width {w[first]:g}")
    if not np.all(np.isfinite(w)) or (w <= 0).any():
        raise FitError("widths must be positive and finite")
    distinct = np.unique(w)
    if len(distinct) < MIN_DISTINCT_WIDTHS:
        raise FitError(
            f"a slope needs at least {MIN_DISTINCT_WIDTHS} distinct widths, got {len(distinct)}: "
            f"{[float(v) for v in distinct]}"
        )
    return w, y, s


def _t_interval(estimate: float, stderr: float, dof: int, level: float) -> tuple[float, float]:
    half = float(_stats().t.ppf(0.5 + level / 2, dof)) * stderr
    return (estimate - half, estimate + half)


def _make_fit(slope, intercept, stderr, r2, w, y, s, method) -> PowerLawFit:
    dof = len(y) - 2
    return PowerLawFit(
        slope=float(slope),
        intercept=float(intercept),
        stderr=float(stderr),
        ci95=_t_interval(float(slope), float(stderr), dof, 0.95),
        ci90=_t_interval(float(slope), float(stderr), dof, 0.90),
        r2=float(r2) if np.isfinite(r2) else 1.0,
        widths=tuple(float(v) for v in w),
        seeds=tuple(int(v) for v in s),
        values=tuple(float(v) for v in y),
        method=method,
    )


def power_law_fit(widths: Sequence[float], values: Sequence[float], seeds: Sequence[int] | None = None) -> PowerLawFit:
    """Fit ``E[values] = a widths^b``: Gamma GLM, log link, robust (HC0 x n/(n-2)) standard errors.

    Args:
      widths: the width (or other size) of each point; repeated widths are different seeds.
      values: the measured quantity, > 0 and finite.
      seeds: the seed of each point, kept for the record (default: all 0).

    Raises:
      FitError: fewer than 3 distinct widths, mismatched lengths, non-finite or non-positive
        values or widths.
    """
    w, y, s = _points(widths, values, seeds)
    sm = _sm()
    X = sm.add_constant(np.log(w))
    if np.ptp(y) <= 1e-14 * np.max(y):
        # An exact power law (a constant series, or noise-free synthetic data): the GLM's deviance
        # is zero and its sandwich undefined; the least-squares fit of the logs is then exact.
        return _with_method(loglog_fit(w, y, s), "gamma-glm-log-link-hc1")
    exact = sm.OLS(np.log(y), X).fit()
    if exact.ssr <= 1e-24 * len(y):
        return _with_method(loglog_fit(w, y, s), "gamma-glm-log-link-hc1")
    family = sm.families.Gamma(sm.families.links.Log())
    result = sm.GLM(y, X, family=family).fit(cov_type="HC0", start_params=exact.params)
    # HC0 is biased low in small samples; HC1's n / (n - k) factor (k = 2 parameters) corrects it.
    stderr = float(result.bse[1]) * math.sqrt(len(y) / (len(y) - 2))
    r2 = 1.0 - result.deviance / result.null_deviance if result.null_deviance > 0 else 1.0
    return _make_fit(result.params[1], result.params[0], stderr, r2, w, y, s, "gamma-glm-log-link-hc1")


def _with_method(fit: PowerLawFit, method: str) -> PowerLawFit:
    return dataclasses.replace(fit, method=method)


def loglog_fit(widths: Sequence[float], values: Sequence[float], seeds: Sequence[int] | None = None) -> PowerLawFit:
    """OLS of ``log(values)`` on ``log(widths)``: the slope of E[log y], biased for the law on E[y].

    Kept as the reference ``power_law_fit`` replaced (and for exact power laws, where both agree).
    """
    w, y, s = _points(widths, values, seeds)
    log_y = np.log(y)
    sm = _sm()
    result = sm.OLS(log_y, sm.add_constant(np.log(w))).fit()
    total = float(np.sum((log_y - log_y.mean()) ** 2))
    r2 = 1.0 - float(result.ssr) / total if total > 0 else 1.0
    return _make_fit(result.params[1], result.params[0], result.bse[1], r2, w, y, s, "log-ols")


@dataclasses.dataclass(frozen=True)
class LimitFit:
    """OLS fit of ``value = limit + correction * width^(-1/2)`` with HC3 standard errors."""

    limit: float
    limit_stderr: float
    limit_ci90: tuple[float, float]
    correction: float
    dof: int


def limit_fit(widths: Sequence[float], values: Sequence[float]) -> LimitFit:
    """The infinite-width limit a of ``y = a + c m^(-1/2)`` (the paper's finite-width correction)."""
    w, y, _ = _points(widths, values, None)
    sm = _sm()
    result = sm.OLS(y, sm.add_constant(w**-0.5)).fit(cov_type="HC3")
    a, se = float(result.params[0]), float(result.bse[0])
    dof = len(y) - 2
    return LimitFit(limit=a, limit_stderr=se, limit_ci90=_t_interval(a, se, dof, 0.90), correction=float(result.params[1]), dof=dof)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A verdict, the sentence that explains it and, for a judged statistic, its power.

    Attributes:
      p_confirm: probability that a rerun with fresh seeds is confirmed (None for bounds).
      edge_se: distance, in standard errors, from the decisive CI end to the band's edge (> 0 inside).
      details: numbers the verdict computed besides the fit (the Omega(1) limit and its CI).
    """

    verdict: str
    reason: str
    p_confirm: float | None = None
    edge_se: float | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def confirmed(self) -> bool:
        return self.verdict == CONFIRMED


def _t90(dof: int) -> float:
    """The t quantile of a 90% two-sided (95% one-sided) interval."""
    return float(_stats().t.ppf(0.95, dof))


def p_confirm_inside(estimate: float, stderr: float, dof: int, low: float, high: float) -> float:
    """P(a rerun's 90% CI lies inside [low, high]) if the rerun estimate is N(estimate, stderr^2)."""
    if stderr <= 0:
        return float(low <= estimate <= high)
    t, stats = _t90(dof), _stats()
    upper = stats.norm.cdf((high - t * stderr - estimate) / stderr)
    lower = stats.norm.cdf((low + t * stderr - estimate) / stderr)
    return float(max(upper - lower, 0.0))


def p_confirm_below(estimate: float, stderr: float, dof: int, bound: float) -> float:
    """P(a rerun's 90% CI ends below ``bound``): the upper-bound test."""
    return p_confirm_inside(estimate, stderr, dof, -math.inf, bound)


def p_confirm_above(estimate: float, stderr: float, dof: int, bound: float) -> float:
    """P(a rerun's 90% CI starts above ``bound``): a lower-bound test."""
    return p_confirm_inside(estimate, stderr, dof, bound, math.inf)


def _edge(ci: tuple[float, float], stderr: float, low: float, high: float) -> float:
    gap = min(ci[0] - low, high - ci[1])
    return float(gap / stderr) if stderr > 0 else math.copysign(math.inf, gap)


def equality_verdict(fit: PowerLawFit, target: float, delta: float) -> Verdict:
    """slope = target, judged by TOST: the 90% CI must lie inside [target - delta, target + delta]."""
    _check_margin(delta)
    lo, hi = fit.ci90
    band = (target - delta, target + delta)
    text = f"slope {fit.slope:+.3f}, 90% CI [{lo:+.3f}, {hi:+.3f}] vs band [{band[0]:+.3f}, {band[1]:+.3f}]"
    power = {
        "p_confirm": p_confirm_inside(fit.slope, fit.stderr, fit.dof, *band),
        "edge_se": _edge(fit.ci90, fit.stderr, *band),
    }
    if band[0] <= lo and hi <= band[1]:
        return Verdict(CONFIRMED, f"{text}: inside", **power)
    if hi < band[0] or lo > band[1]:
        return Verdict(REFUTED, f"{text}: outside", **power)
    return Verdict(INCONCLUSIVE, f"{text}: overlaps the band's edge", **power)


def upper_bound_verdict(fit: PowerLawFit, target: float, delta: float) -> Verdict:
    """slope <= target: the upper end of the 90% CI must be <= target + delta."""
    _check_margin(delta)
    lo, hi = fit.ci90
    bound = target + delta
    text = f"slope {fit.slope:+.3f}, 90% CI [{lo:+.3f}, {hi:+.3f}] vs bound {bound:+.3f}"
    power = {
        "p_confirm": p_confirm_below(fit.slope, fit.stderr, fit.dof, bound),
        "edge_se": _edge(fit.ci90, fit.stderr, -math.inf, bound),
    }
    if hi <= bound:
        return Verdict(CONFIRMED, f"{text}: below", **power)
    if lo > bound:
        return Verdict(REFUTED, f"{text}: above", **power)
    return Verdict(INCONCLUSIVE, f"{text}: straddles the bound", **power)


def positive_limit_verdict(fit: PowerLawFit, floor: float) -> Verdict:
    """Omega(1) as a positive infinite-width limit: the limit a of ``y = a + c m^(-1/2)``
    (``limit_fit``) must have the lower end of its 90% CI (one-sided 95%) above
    ``max(floor, OMEGA_LIMIT_FRACTION * mean at the smallest width)``: the absolute floor says the
    limit is not round-off, the relative one that it is most of what was measured rather than the
    remnant of a decay. The slope is recorded and does not decide."""
    if not floor > 0:
        raise ValueError(f"the floor of an Omega(1) claim must be positive, got {floor!r}")
    limit = limit_fit(fit.widths, fit.values)
    required = max(floor, OMEGA_LIMIT_FRACTION * fit.level_at_smallest())
    a_lo, a_hi = limit.limit_ci90
    details = {
        "limit": limit.limit,
        "limit_stderr": limit.limit_stderr,
        "limit_ci90_low": a_lo,
        "limit_ci90_high": a_hi,
        "limit_required": required,
        "limit_fraction": OMEGA_LIMIT_FRACTION,
        "level_at_smallest": fit.level_at_smallest(),
        "correction": limit.correction,
    }
    power = {
        "p_confirm": p_confirm_above(limit.limit, limit.limit_stderr, limit.dof, required),
        "edge_se": _edge(limit.limit_ci90, limit.limit_stderr, required, math.inf),
        "details": details,
    }
    text = (
        f"limit a = {limit.limit:.3g}, 90% CI [{a_lo:.3g}, {a_hi:.3g}] vs required {required:.3g} "
        f"(max of floor {floor:.3g} and {OMEGA_LIMIT_FRACTION:g} x mean {fit.level_at_smallest():.3g} at "
        f"m={min(fit.widths):g})"
    )
    if a_hi < required:
        return Verdict(REFUTED, f"{text}: below", **power)
    if a_lo >= required:
        return Verdict(CONFIRMED, f"{text}: above", **power)
    return Verdict(INCONCLUSIVE, f"{text}: undecided", **power)


def omega1_verdict(fit: PowerLawFit, delta: float, floor: float) -> Verdict:
    """Omega(1) and no growth (Theta(1)): ``positive_limit_verdict``, and the upper end of the
    slope's 90% CI at most ``+delta``. The slope no longer decides the lower side."""
    _check_margin(delta)
    limit = positive_limit_verdict(fit, floor)
    s_lo, s_hi = fit.ci90
    power = {
        "p_confirm": limit.p_confirm * p_confirm_below(fit.slope, fit.stderr, fit.dof, delta),
        "edge_se": min(limit.edge_se, _edge(fit.ci90, fit.stderr, -math.inf, delta)),
        "details": limit.details,
    }
    text = f"{limit.reason.rsplit(': ', 1)[0]}; slope {fit.slope:+.3f}, 90% CI [{s_lo:+.3f}, {s_hi:+.3f}] vs bound {delta:+.3f}"
    if limit.verdict == REFUTED or s_lo > delta:
        return Verdict(REFUTED, f"{text}: fails", **power)
    if limit.verdict == CONFIRMED and s_hi <= delta:
        return Verdict(CONFIRMED, f"{text}: holds", **power)
    return Verdict(INCONCLUSIVE, f"{text}: undecided", **power)


#: Machine epsilons allowed to a quantity that is exact in real arithmetic (a structural zero, an
#: identity between two computations of the same number): a few hundred rounded operations leave a
#: few epsilons (measured: 1.4-4 in float64, 2-5 in float32 for C1 and C7), 1000 leave two orders
#: of magnitude for accumulation and stay far below a real violation, which is O(1) relative.
ROUND_OFF_EPSILONS = 1000


def round_off_limit(dtype, epsilons: float = ROUND_OFF_EPSILONS) -> float:
    """``epsilons`` machine epsilons of ``dtype``: the limit of a round-off check in the run's dtype
    (2.2e-13 in float64, 1.2e-4 in float32 with the default 1000)."""
    return float(epsilons * np.finfo(np.dtype(dtype)).eps)


def bound_verdict(worst: float, limit: float, what: str) -> Verdict:
    """An identity or inequality checked at every sample: the worst value must be <= limit."""
    if not math.isfinite(worst):
        return Verdict(REFUTED, f"{what}: worst value is {worst}")
    if worst <= limit:
        return Verdict(CONFIRMED, f"{what}: worst {worst:.3g} <= {limit:.3g}")
    return Verdict(REFUTED, f"{what}: worst {worst:.3g} > {limit:.3g}")


def lower_bound_verdict(least: float, floor: float, what: str) -> Verdict:
    """A level checked at every sample from below: the smallest value must be >= floor."""
    if not math.isfinite(least):
        return Verdict(REFUTED, f"{what}: smallest value is {least}")
    if least >= floor:
        return Verdict(CONFIRMED, f"{what}: min {least:.3g} >= {floor:.3g}")
    return Verdict(REFUTED, f"{what}: min {least:.3g} < {floor:.3g}")


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
