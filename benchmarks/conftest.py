"""Benchmark helpers: results shared between benchmarks and a comparison table at the end.

Run with ``pytest benchmarks/``. Each benchmark stores its mean time (and extra figures such as
Hessian-vector products used) in ``RESULTS``; the terminal summary prints the ratios the issues
ask for (HVP / gradient, Lanczos / power iteration, structured / Jacobian kernel).
"""

from __future__ import annotations

import pytest

RESULTS: dict[str, dict] = {}


@pytest.fixture
def record_result():
    def record(name: str, benchmark, **extra) -> None:
        stats = benchmark.stats.stats if benchmark.stats is not None else None
        mean = stats.mean if stats is not None else float("nan")
        RESULTS[name] = {"mean_s": mean, **extra}
        benchmark.extra_info.update(extra)

    return record


def _ratio(a: str, b: str) -> str:
    if a in RESULTS and b in RESULTS and RESULTS[b]["mean_s"] > 0:
        return f"{RESULTS[a]['mean_s'] / RESULTS[b]['mean_s']:.2f}"
    return "n/a"


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("linearity-claims benchmark figures")
    for name, row in sorted(RESULTS.items()):
        extra = ", ".join(f"{k}={v}" for k, v in row.items() if k != "mean_s")
        tr.write_line(f"{name:55s} {row['mean_s'] * 1e3:10.3f} ms  {extra}")
    for dtype in ("float32", "float64"):
        tr.write_line(
            f"HVP / gradient ({dtype}, depth 3, width 1024): "
            f"{_ratio(f'hvp-{dtype}-w1024', f'gradient-{dtype}-w1024')}"
        )
    for width in (256, 1024, 4096):
        runs = sorted(name for name in RESULTS if name.startswith("hessian-") and name.endswith(f"-w{width}"))
        parts = [
            f"{name[len('hessian-'):-len(f'-w{width}')]} {RESULTS[name]['hvps']} HVPs {RESULTS[name]['mean_s']:.2f} s "
            f"(error {RESULTS[name]['rel_error']})"
            for name in runs
            if "arpack" not in name
        ]
        if parts:
            tr.write_line(f"||H|| to 1e-3, width {width}: " + " | ".join(parts))
    tr.write_line(
        f"tangent kernel width 1024, n 64: Jacobian / structured time = "
        f"{_ratio('kernel-jacobian-w1024-n64', 'kernel-structured-w1024-n64')}"
    )
