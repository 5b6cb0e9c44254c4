"""Small synthetic ``claims.json`` contents for the compare, provenance and command-line tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FINGERPRINT = {"sha256": "f" * 16, "tier": "1" * 16, "estimators": "2" * 16, "claims": "3" * 16}


def scaling(claim: str = "C2", variant: str = "tanh-d1", slope: float = -0.5, stderr: float = 0.01,
            verdict: str = "confirmed", run: str = "r0") -> dict[str, Any]:
    """A scaling record of a power law with this slope, as ``harness.records`` builds one."""
    widths = [100.0, 1000.0, 10000.0]
    points = [{"width": w, "seed": s, "value": w**slope * (1.1 if s else 0.9)} for w in widths for s in (0, 1)]
    return {
        "claim": claim, "variant": variant, "title": "t", "kind": "scaling", "quantity": "hessian_norm",
        "law": "slope = -1/2", "target": -0.5, "margin": 0.1, "slope": slope, "stderr": stderr,
        "ci_low": slope - 2.8 * stderr, "ci_high": slope + 2.8 * stderr,
        "ci90_low": slope - 2.1 * stderr, "ci90_high": slope + 2.1 * stderr, "r2": 0.99, "intercept": 0.0,
        "size_name": "width", "widths": widths, "seeds": [0, 1], "n_points": len(points),
        "level_at_largest": 10000.0**slope, "verdict": verdict, "reason": f"synthetic: {verdict}",
        "points": points, "run": run, "extra": {"radius": 0.0},
    }


def bound(claim: str = "C1", variant: str = "tanh-d1", worst: float = 1e-13, limit: float = 1e-10,
          verdict: str = "confirmed", run: str = "r0") -> dict[str, Any]:
    """A bound record (an identity or inequality: ``worst`` against ``limit``)."""
    return {
        "claim": claim, "variant": variant, "title": "t", "kind": "bound", "quantity": "q", "law": "0",
        "worst": worst, "limit": limit, "margin": limit, "n_points": 4, "verdict": verdict,
        "reason": f"synthetic: {verdict}", "run": run,
    }


def report(records: list[dict[str, Any]], tier: str = "smoke", run: str = "r0", seed: int = 0,
           fingerprint: dict[str, str] | None = FINGERPRINT) -> dict[str, Any]:
    """A ``claims.json`` content holding ``records``, all from one run."""
    meta = {"run_id": run, "tier": tier, "base_seed": seed, "dtype": "float64", "date": "2026-01-01T00:00:00+00:00",
            "wall_time_s": 1.0, "commit": "a" * 40, "dirty": False, "diff_sha256": None, "device": "cpu: cpu x1",
            "platform": "test", "versions": {"jax": "0", "statsmodels": "0"}}
    if fingerprint is not None:
        meta["fingerprint"] = dict(fingerprint)
    return {"schema": 1, "tier": tier, "runs": {run: meta}, "records": [{**r, "run": run} for r in records]}


def standard_records() -> list[dict[str, Any]]:
    """Two scaling records and a bound record."""
    return [bound(), scaling("C2", "tanh-d1"), scaling("C3", "shallow-tanh", slope=0.0, stderr=0.02)]


def write(directory: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as ``directory/<tier>/claims.json`` and return that path."""
    path = Path(directory) / data["tier"] / "claims.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path
