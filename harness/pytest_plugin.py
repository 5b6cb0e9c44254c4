"""A pytest plugin for users' own suites: the ``linearity_check`` fixture.

Installed with the package (entry point ``pytest11``), so any project that has linearity-claims
installed can write::

    def test_my_net_becomes_linear(linearity_check):
        assert linearity_check(build, [64, 256, 1024]).transition == "yes"

The fixture is ``harness.check.check`` with x64 enabled (the suite's estimators accumulate in
float64) and the progress lines written to the terminal.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def linearity_check(pytestconfig):
    """``linearity_check(build, widths, **options) -> CheckResult`` (see ``harness.check.check``)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from harness.check import check

    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def progress(line: str) -> None:
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"  [linearity_check] {line}")

    def run(build, widths, **options):
        options.setdefault("progress", progress)
        return check(build, widths, **options)

    return run
