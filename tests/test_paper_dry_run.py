"""The paper tier's dry run (tier ``paper-dry``): claims as the nightly GPU job runs them (float32, its
estimator settings, inputs and architectures) on the smallest three widths of each grid, on the CPU.

Slopes are recorded, not judged, at these widths; an identity or inequality that fails, an error or a
non-finite number fails the run (``harness.records.judgement``).

The test command runs the claims whose checks depend on the dtype (round-off limits in machine
epsilons: C1, C2's bound, C7, C16, C18; the float64 constants they had refuted all of C1 and C7 in
float32). Every claim (349 s on 2 cores in two workers, 680 s of CPU, 378 of them compiling) would
take the test command past its 20-minute budget on 2 cores: that run is ``pytest claims/ --scale paper-dry`` (the nightly
GPU job's first step), or this module with ``LINEARITY_DRY_RUN=full``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.fit import round_off_limit

ROOT = Path(__file__).resolve().parents[1]

#: The claims whose checks are round-off limits in the run's dtype.
DTYPE_SENSITIVE_CLAIMS = ("C1", "C2", "C7", "C16", "C18", "C20")


def _dry_run(report_dir: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEARITY_") or k == "LINEARITY_JAX_CACHE"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "-q", "-p", "no:cacheprovider", "-n", "0",
         "--scale", "paper-dry", "--report-dir", str(report_dir), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    data = json.loads((report_dir / "paper-dry" / "claims.json").read_text())
    (run,) = data["runs"].values()
    assert run["dtype"] == "float32" and run["tier"] == "paper-dry"
    return data


@pytest.mark.slow
def test_the_dtype_sensitive_claims_run_at_the_paper_tier_in_float32(tmp_path):
    data = _dry_run(tmp_path, "--claim", ",".join(DTYPE_SENSITIVE_CLAIMS))
    assert {r["claim"] for r in data["records"]} == set(DTYPE_SENSITIVE_CLAIMS)
    # The round-off checks ran in float32 against float32 limits (1000 epsilons: 1.2e-4); C16's
    # training runs in float64 at this tier, and so does its limit.
    for claim, limit in (("C1", round_off_limit("float32")), ("C7", round_off_limit("float32")), ("C16", round_off_limit("float64"))):
        records = [r for r in data["records"] if r["claim"] == claim]
        assert records and all(r["verdict"] == "confirmed" and r["limit"] == limit for r in records), claim


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LINEARITY_DRY_RUN") != "full", reason="every claim's dry run: ~10 min on 2 cores; LINEARITY_DRY_RUN=full")
def test_every_claim_runs_at_the_paper_tier_in_float32(tmp_path):
    data = _dry_run(tmp_path)
    claims = {r["claim"] for r in data["records"]}
    assert {f"C{i}" for i in range(1, 20)} <= claims, sorted(claims)
