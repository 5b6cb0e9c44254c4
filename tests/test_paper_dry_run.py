"""The paper tier's dry run end to end: every claim as the nightly GPU job runs it (float32, its
estimator settings, inputs and architectures) on the smallest three widths of each grid, on the CPU.

Slopes are recorded, not judged, at these widths; an identity or inequality that fails, an error or a
non-finite number fails the run (``harness.report.judgement``). One process: this test is one unit
of a parallel run, and the scheduler starts it first (its time is recorded in the report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_claim_runs_at_the_paper_tier_in_float32(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEARITY_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "-q", "-p", "no:cacheprovider", "-n", "0",
         "--scale", "paper-dry", "--report-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / "paper-dry" / "claims.json").read_text())
    (run,) = data["runs"].values()
    assert run["dtype"] == "float32" and run["tier"] == "paper-dry"
    claims = {r["claim"] for r in data["records"]}
    assert {f"C{i}" for i in range(1, 20)} <= claims, sorted(claims)
    # The round-off checks ran in float32 against float32 limits.
    c1 = [r for r in data["records"] if r["claim"] == "C1"]
    assert c1 and all(r["verdict"] == "confirmed" and 1e-5 < r["limit"] < 1e-3 for r in c1)
