"""Every judged family of checks rejects a measured series of the wrong regime.

The series are the raw points of the committed default-tier report at base seed 0
(``tests/data/measured_series.json``, extracted from ``reports/default/claims.json``): for each
family, the check confirms the series it was written for and does not confirm a measured series
where the paper's law is different (a linear output for an Omega(1) check, a two-norm for an
inf-norm check, a net without a bottleneck for Fig. 2, an error measured at one fixed width for the
NTK limit). A check that passed both would pass whatever the paper said.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import claims.test_appB_parameterization as appB
import claims.test_ntk_limit as ntk
import claims.test_sec1_lazy_training as sec1
import claims.test_sec2_hessian_bounds_kernel as sec2
import claims.test_sec3_linear_output as sec3
import claims.test_sec4_bottleneck as sec4b
import claims.test_sec4_nonlinear_output as sec4
import claims.test_sec5_convergence as sec5
import claims.test_sec6_fig1_nonlinear_output as fig1
import claims.test_sec6_fig2_bottleneck as fig2
from harness.fit import CONFIRMED, equality_verdict, omega1_verdict, positive_limit_verdict, power_law_fit, upper_bound_verdict

DATA = json.loads((Path(__file__).parent / "data" / "measured_series.json").read_text())["series"]


def points(name):
    return [tuple(p) for p in DATA[name]["points"]]


def fit(name):
    w, s, v = zip(*points(name))
    return power_law_fit(w, v, s)


def at_fixed_width(name, width, relabel):
    """The values measured at one width, relabelled as if measured at every width of ``relabel``:
    what a quantity that does not change with the width would give."""
    values = [(s, v) for w, s, v in points(name) if w == width]
    rows = [(m, s, v) for m in relabel for s, v in values]
    w, s, v = zip(*rows)
    return power_law_fit(w, v, s)


def hessian_check(f):
    return equality_verdict(f, -0.5, sec3.HESSIAN_SLOPE_MARGIN)


def kernel_check(f):
    return equality_verdict(f, 0.0, sec3.KERNEL_SLOPE_MARGIN)


def omega_check(floor):
    return lambda f: omega1_verdict(f, sec4.OMEGA_SLOPE_MARGIN, floor)


FAMILIES = [
    # (family, check, series it must confirm, measured series of the wrong regime)
    ("C2/C4/C6/C10 Hessian -1/2", hessian_check, ["C4 tanh-depth2-R0"], ["C8 deep-swish", "C9 mb1-hessian", "C3 tanh-depth2"]),
    ("C3/C6/C10 kernel 0", kernel_check, ["C3 tanh-depth2"], ["C4 tanh-depth2-R0", "C5 tanh-layer1-inf"]),
    ("C5 two-norm 0", lambda f: equality_verdict(f, 0.0, sec3.TWO_NORM_SLOPE_MARGIN), ["C5 tanh-layer1-two"], ["C5 tanh-layer1-inf"]),
    ("C5 inf-norm -1/2", lambda f: equality_verdict(f, -0.5, sec3.INF_NORM_SLOPE_MARGIN), ["C5 tanh-layer1-inf"], ["C5 tanh-layer1-two"]),
    ("C3 limit error", lambda f: upper_bound_verdict(f, -0.5, sec3.KERNEL_LIMIT_SLOPE_MARGIN), ["C3 shallow-tanh-limit"], ["C3 shallow-tanh"]),
    ("C8/C9/C10 Omega(1) Hessian", omega_check(sec4.OMEGA_FLOOR), ["C8 deep-swish", "C8 shallow-swish", "C9 mb1-hessian"],
     ["C4 tanh-depth2-R0", "C5 tanh-layer1-inf"]),
    ("C9 bottleneck gradient Omega(1)", omega_check(sec4b.BOTTLENECK_GRADIENT_FLOOR), ["C9 mb1-bottleneck-grad"], ["C5 tanh-layer1-inf"]),
    ("C11 non-linear Omega(1)", lambda f: omega1_verdict(f, fig1.OMEGA1_SLOPE_MARGIN, fig1.OMEGA1_FLOOR), ["C11 swish"], ["C11 linear"]),
    ("C15 kernel change Omega(1)", lambda f: omega1_verdict(f, sec5.OMEGA1_SLOPE_MARGIN, sec5.OMEGA1_FLOOR),
     ["C15 tanh_linear-kernel-change"], ["C11 linear"]),
    ("C11 linear <= -1/2", lambda f: upper_bound_verdict(f, -0.5, fig1.LINEAR_SLOPE_MARGIN), ["C11 linear"], ["C11 swish"]),
    ("C14 inf-norm <= -1/2", lambda f: upper_bound_verdict(f, -0.5, sec1.INF_NORM_SLOPE_MARGIN), ["C14 linear-inf-norm"], ["C14 linear-two-norm"]),
    ("C14 two-norm 0", lambda f: equality_verdict(f, 0.0, sec1.TWO_NORM_SLOPE_MARGIN), ["C14 linear-two-norm"], ["C14 linear-inf-norm"]),
    ("C17 change <= -1/2", lambda f: upper_bound_verdict(f, -0.5, sec2.CHANGE_SLOPE_MARGIN), ["C17 tanh-depth2-random-R1-change"], ["C11 swish"]),
    ("C18 standard kernel +1", lambda f: equality_verdict(f, 1.0, appB.KERNEL_SLOPE_MARGIN), ["C18 tanh-depth2-standard-kernel"], ["C3 tanh-depth2"]),
    ("C18 ratio -1/2", lambda f: equality_verdict(f, -0.5, appB.RATIO_SLOPE_MARGIN), ["C18 tanh-depth2-ntk-ratio"], ["C3 tanh-depth2"]),
    ("C19 error -1/2", lambda f: equality_verdict(f, -0.5, ntk.ERROR_SLOPE_MARGIN), ["C19 tanh-depth2-error"], ["C19 tanh-depth2-variance"]),
    ("C19 variance -1", lambda f: equality_verdict(f, -1.0, ntk.VARIANCE_SLOPE_MARGIN), ["C19 tanh-depth2-variance"], ["C19 tanh-depth2-error"]),
    ("C13 decreasing in m_b", lambda f: upper_bound_verdict(f, -0.5, fig2.BOTTLENECK_SLOPE_MARGIN), ["C13 vs-bottleneck-width"], []),
    ("C20 remainder -1/2", hessian_check, ["C20 linear-remainder"], ["C20 swish-remainder"]),
    ("C20 phi(f) remainder Omega(1)", omega_check(sec4.OMEGA_FLOOR), ["C20 swish-remainder"], ["C20 linear-remainder"]),
    ("C4 worst point <= -1/2", lambda f: upper_bound_verdict(f, -0.5, sec3.HESSIAN_SLOPE_MARGIN), ["C4 tanh-depth2-R4-worst"],
     ["C8 deep-swish", "C9 mb1-hessian", "C3 tanh-depth2"]),
    ("C5 tensor norm O~(1)", lambda f: upper_bound_verdict(f, 0.0, sec3.TENSOR_SLOPE_MARGIN), ["C5 tanh-layer2-aa-tensor"],
     ["C18 tanh-depth2-standard-kernel"]),
    ("C13 narrowest: a positive limit in m", lambda f: positive_limit_verdict(f, fig2.OMEGA1_FLOOR), ["C13 narrowest-mb3"],
     ["C11 linear"]),
]


@pytest.mark.parametrize("family,check,right,wrong", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_family_confirms_its_regime_and_rejects_the_other(family, check, right, wrong):
    for name in right:
        verdict = check(fit(name))
        assert verdict.verdict == CONFIRMED, f"{name}: {verdict.reason}"
    for name in wrong:
        verdict = check(fit(name))
        assert verdict.verdict != CONFIRMED, f"{family} confirmed the wrong-regime series {name}: {verdict.reason}"


def test_c19_rejects_an_error_measured_at_a_fixed_width():
    check = lambda f: equality_verdict(f, -0.5, ntk.ERROR_SLOPE_MARGIN)
    widths = sorted({w for w, _, _ in points("C19 tanh-depth2-error")})
    assert check(at_fixed_width("C19 tanh-depth2-error", widths[-1], widths)).verdict != CONFIRMED


def test_c13_rejects_a_net_without_a_bottleneck():
    """A network without a bottleneck: its Delta K does not depend on m_b (the Fig. 1 linear-output
    net at a large width, relabelled over the Fig. 2 grid of m_b) and stays small."""
    bottlenecks = sorted({w for w, _, _ in points("C13 vs-bottleneck-width")})
    flat = at_fixed_width("C11 linear", 2048, bottlenecks)
    assert upper_bound_verdict(flat, -0.5, fig2.BOTTLENECK_SLOPE_MARGIN).verdict != CONFIRMED
