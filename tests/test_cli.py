"""The pytest command line: tiers, seeds, report directory, subset runs (run as subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args, env=None, timeout=600):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("LINEARITY_SCALE", None) if env is None or "LINEARITY_SCALE" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def test_unknown_tier_is_a_usage_error_naming_the_valid_ones():
    result = _pytest("claims", "--scale", "huge", "--collect-only")
    assert result.returncode == 4
    assert "unknown scale tier 'huge'; valid tiers: smoke, default, paper" in result.stderr


def test_unknown_tier_from_the_environment():
    result = _pytest("claims", "--collect-only", env={"LINEARITY_SCALE": "medium"})
    assert result.returncode == 4
    assert "unknown scale tier 'medium'" in result.stderr


def test_bad_seed_is_a_usage_error():
    result = _pytest("claims", "--seed", "abc", "--collect-only")
    assert result.returncode == 4 and "--seed must be an integer" in result.stderr


def test_paper_tier_refuses_a_cpu():
    result = _pytest("claims", "--scale", "paper", "--collect-only")
    assert result.returncode == 4 and "paper tier is meant for a GPU" in result.stderr
    # The refusal carries the estimate a user needs to decide, and the way to force it.
    assert "CPU hours" in result.stderr and "GiB" in result.stderr
    assert "--force-paper-on-cpu" in result.stderr


def test_smoke_subset_runs_write_and_merge_reports(tmp_path):
    env = {"LINEARITY_SCALE": "smoke"}
    first = _pytest("claims", "--report-dir", str(tmp_path), "-k", "c1 and tanh", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "C1 tanh" in first.stdout  # progress lines reach the terminal
    second = _pytest("claims", "--report-dir", str(tmp_path), "-k", "c5 and swish", "--seed", "3", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    data = json.loads((tmp_path / "smoke" / "claims.json").read_text())
    keys = {(r["claim"], r["variant"]) for r in data["records"]}
    assert ("C1", "tanh-d1") in keys and ("C5", "swish-layer1-inf") in keys
    assert {m["base_seed"] for m in data["runs"].values()} == {0, 3}
    assert (tmp_path / "smoke" / "summary.md").exists()


def test_a_full_run_replaces_stale_records(tmp_path):
    """Records of variants that no longer exist vanish after a complete run (not after a -k run)."""
    directory = tmp_path / "smoke"
    directory.mkdir()
    stale = {"schema": 1, "tier": "smoke", "runs": {}, "records": [
        {"claim": "C99", "variant": "gone", "kind": "bound", "title": "t", "quantity": "q", "law": "0",
         "worst": 0.0, "limit": 1.0, "margin": 1.0, "n_points": 1, "verdict": "confirmed", "reason": "r"}]}
    (directory / "claims.json").write_text(json.dumps(stale))
    env = {"LINEARITY_SCALE": "smoke"}
    subset = _pytest("claims", "--report-dir", str(tmp_path), "-k", "c1 and tanh", env=env)
    assert subset.returncode == 0, subset.stdout + subset.stderr
    keys = {r["claim"] for r in json.loads((directory / "claims.json").read_text())["records"]}
    assert "C99" in keys
