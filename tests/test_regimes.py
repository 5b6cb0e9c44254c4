"""The verdicts tell the two regimes apart on measured series, not only on synthetic ones.

A linear-output network and the same network with a non-linear output (or a bottleneck) are
measured at a few widths; the Omega(1) check of C8/C9 must reject the first, the -1/2 check of
C2/C4 must reject the others.
"""

from __future__ import annotations

import pytest

from claims.test_sec3_linear_output import HESSIAN_SLOPE_MARGIN
from claims.test_sec4_nonlinear_output import OMEGA_FLOOR, OMEGA_SLOPE_MARGIN
from harness import measure
from harness.fit import CONFIRMED, equality_verdict, power_law_fit, omega1_verdict
from harness.models import FullyConnected

WIDTHS = (1000, 4000, 16000)
SEEDS = (0, 1, 2)


def _series(make_net, widths=WIDTHS, n_inputs=2):
    w, v, s = [], [], []
    for width in widths:
        net = make_net(width)
        for seed in SEEDS:
            w.append(width)
            s.append(seed)
            v.append(measure.max_hessian_norm(net, seed, width, "float64", n_inputs=n_inputs, tol=1e-3, max_iters=100))
    return power_law_fit(w, v, s)


def _shallow(head):
    return lambda m: FullyConnected(8, (m,), "tanh", head=head, train_output=False, output_init="sign")


@pytest.fixture(scope="module")
def linear_series():
    return _series(_shallow("linear"))


@pytest.fixture(scope="module")
def swish_series():
    return _series(_shallow("swish"))


def test_omega1_check_rejects_a_measured_linear_output_series(linear_series):
    assert equality_verdict(linear_series, -0.5, HESSIAN_SLOPE_MARGIN).verdict == CONFIRMED
    assert omega1_verdict(linear_series, OMEGA_SLOPE_MARGIN, OMEGA_FLOOR).verdict != CONFIRMED


def test_inverse_sqrt_check_rejects_a_measured_nonlinear_output_series(swish_series):
    assert omega1_verdict(swish_series, OMEGA_SLOPE_MARGIN, OMEGA_FLOOR).verdict == CONFIRMED
    assert equality_verdict(swish_series, -0.5, HESSIAN_SLOPE_MARGIN).verdict != CONFIRMED


def test_inverse_sqrt_check_rejects_a_measured_bottleneck_series():
    series = _series(lambda m: FullyConnected(8, (m, 1, m), "tanh"), widths=(256, 1024, 4096), n_inputs=4)
    assert equality_verdict(series, -0.5, HESSIAN_SLOPE_MARGIN).verdict != CONFIRMED
