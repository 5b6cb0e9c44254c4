"""pytest configuration shared by the claims, the harness tests and the benchmarks.

Options (each also read from an environment variable, the option wins):

* ``--scale smoke|default|paper`` (``LINEARITY_SCALE``): the tier of width and seed grids;
* ``--seed N`` (``LINEARITY_SEED``): the base seed every sweep starts from (default 0);
* ``--report-dir DIR`` (``LINEARITY_REPORT_DIR``): where ``<tier>/claims.json``, ``summary.md``
  and the figures go (default ``reports/`` beside this file);
* ``--force-paper-on-cpu``: run the paper tier even without a GPU.

Numerical strictness, in the spirit of equinox: float64 on (and x64 enabled for the float64
accumulators of the estimators), implicit rank promotion raises, warnings are errors
(``filterwarnings`` in ``pyproject.toml``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    group = parser.getgroup("linearity-claims")
    group.addoption("--scale", default=None, help="scale tier: smoke, default or paper (env LINEARITY_SCALE)")
    group.addoption("--seed", default=None, help="base seed of every sweep (env LINEARITY_SEED, default 0)")
    group.addoption(
        "--report-dir", default=None, help="report root directory (env LINEARITY_REPORT_DIR, default reports/)"
    )
    group.addoption(
        "--force-paper-on-cpu", action="store_true", default=False, help="run the paper tier without a GPU"
    )


def _option(config, name: str, env: str, default):
    value = config.getoption(name)
    if value is None:
        value = os.environ.get(env) or default
    return value


def pytest_configure(config):
    from harness.tiers import UnknownTierError, get_tier

    try:
        tier = get_tier(_option(config, "--scale", "LINEARITY_SCALE", "default"))
    except UnknownTierError as err:
        raise pytest.UsageError(str(err)) from None
    seed_text = _option(config, "--seed", "LINEARITY_SEED", "0")
    try:
        base_seed = int(seed_text)
    except ValueError:
        raise pytest.UsageError(f"--seed must be an integer, got {seed_text!r}") from None
    if base_seed < 0:
        raise pytest.UsageError(f"--seed must be >= 0, got {base_seed}")
    report_root = Path(_option(config, "--report-dir", "LINEARITY_REPORT_DIR", ROOT / "reports"))

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    if tier.name == "paper" and jax.default_backend() == "cpu" and not config.getoption("--force-paper-on-cpu"):
        from harness.resources import paper_tier_refusal

        raise pytest.UsageError(paper_tier_refusal(tier))

    config._linearity = {
        "tier": tier,
        "base_seed": base_seed,
        "report_dir": report_root / tier.name,
        "start": time.time(),
        "report": None,
    }


def pytest_report_header(config):
    state = getattr(config, "_linearity", None)
    if state is None:
        return None
    import jax

    tier = state["tier"]
    return (
        f"linearity-claims: tier {tier.name} ({tier.dtype}), base seed {state['base_seed']}, "
        f"reports in {state['report_dir']}, jax {jax.__version__} on {jax.default_backend()}"
    )


@pytest.fixture(scope="session")
def tier(pytestconfig):
    """The scale tier of this run (``harness.tiers.Tier``)."""
    return pytestconfig._linearity["tier"]


@pytest.fixture(scope="session")
def base_seed(pytestconfig) -> int:
    return pytestconfig._linearity["base_seed"]


@pytest.fixture(scope="session")
def dtype(tier):
    import jax.numpy as jnp

    return jnp.dtype(tier.dtype)


@pytest.fixture(scope="session")
def report(pytestconfig):
    """The run's report; records added here are merged into ``reports/<tier>/`` at the end."""
    from harness.report import RunReport

    state = pytestconfig._linearity
    if state["report"] is None:
        state["report"] = RunReport(state["report_dir"], state["tier"].name, state["base_seed"], state["tier"].dtype)
    return state["report"]


@pytest.fixture
def progress(pytestconfig, request):
    """``progress(message)`` prints a line at once, even while pytest captures output."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    start = time.time()
    name = request.node.name

    def emit(message: str) -> None:
        line = f"  [{name}] {message} (test time {time.time() - start:.1f} s)"
        if reporter is None or capture is None:  # pragma: no cover - pytest without its terminal
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return emit


@pytest.fixture
def judge(report, tier):
    """``judge(*records)``: add the records to the report, then require confirmed verdicts.

    All records are added before any is judged, so a failing claim still leaves its numbers in the
    report. Exploratory records are recorded only. At the smoke tier a claim that is not confirmed
    is skipped with its reason (the grids are too small to judge), never passed.
    """

    def check(*records) -> None:
        for record in records:
            report.add(record)
        failures = [
            f"{r['claim']} {r['variant']}: {r['verdict']}: {r['reason']}"
            for r in records
            if r["verdict"] not in ("confirmed", "exploratory")
        ]
        if failures and not tier.judged:
            pytest.skip("at the smoke tier: " + "; ".join(failures))
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)

    return check


def _selected_every_claim(session) -> bool:
    """True when this run collected every claim test and deselected none (a full claims run)."""
    claims_dir = ROOT / "claims"
    files = {p.resolve() for p in claims_dir.glob("test_*.py")}
    ran = {Path(str(item.path)).resolve() for item in session.items}
    deselected = session.config._linearity.get("deselected", False)
    return not deselected and files <= ran and not session.config.option.keyword and not session.config.option.markexpr


def pytest_deselected(items):
    if items:
        config = items[0].config
        if hasattr(config, "_linearity"):
            config._linearity["deselected"] = True


def pytest_sessionfinish(session, exitstatus):
    state = getattr(session.config, "_linearity", None)
    if not state or state["report"] is None or not state["report"].records:
        return
    paths = state["report"].write(time.time() - state["start"], sys.argv, complete=_selected_every_claim(session))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"linearity-claims: wrote {', '.join(str(p) for p in paths)}")
