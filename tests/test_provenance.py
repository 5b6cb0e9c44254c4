"""Run provenance (source, environment, fingerprint) and the canonical text of claims.json."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess

import numpy as np
import pytest
from synthetic_reports import scaling

from harness import provenance
from harness.records import json_text, run_metadata
from harness.report import RunReport
from harness.tiers import TIER_NAMES


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _fresh_state(repo):
    provenance._source_state.cache_clear()
    return provenance.source_state(repo)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_source_state_tells_clean_dirty_and_untracked_apart(tmp_path):
    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    (repo / "code.py").write_text("A = 1\n")
    (repo / "reports" / "claims.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = _fresh_state(repo)
    assert len(clean["commit"]) == 40 and clean["dirty"] is False and clean["diff_sha256"] is None
    (repo / "reports" / "claims.json").write_text('{"rerun": 1}\n')  # runs write there: not dirty
    assert _fresh_state(repo) == clean
    (repo / "code.py").write_text("A = 2\n")
    first = _fresh_state(repo)
    (repo / "code.py").write_text("A = 3\n")
    second = _fresh_state(repo)
    assert first["dirty"] and second["dirty"] and first["commit"] == clean["commit"]
    assert len(first["diff_sha256"]) == 64 and first["diff_sha256"] != second["diff_sha256"]
    assert _fresh_state(repo) == second  # the same difference, the same hash
    (repo / "code.py").write_text("A = 1\n")
    (repo / "new.py").write_text("B = 1\n")
    untracked = _fresh_state(repo)
    assert untracked["dirty"] and untracked["diff_sha256"] not in (first["diff_sha256"], second["diff_sha256"])


def test_source_state_outside_a_checkout_is_null(tmp_path):
    assert _fresh_state(tmp_path) == {"commit": None, "dirty": None, "diff_sha256": None}


def test_run_metadata_carries_commit_versions_device_and_fingerprint():
    meta = run_metadata("smoke", 3, "float64", 1.234, ["pytest", "claims", "-k", "c2 and tanh"])
    for key in ("commit", "dirty", "diff_sha256", "backend", "device", "device_kind", "device_name", "x64",
                "cpu_model", "cpu_count", "command", "fingerprint", "run_id", "date", "wall_time_s"):
        assert key in meta, key
    assert set(meta["versions"]) >= {"python", "jax", "jaxlib", "numpy", "scipy", "statsmodels"}
    assert all(meta["versions"][k] for k in ("python", "jax", "jaxlib", "numpy", "scipy", "statsmodels"))
    assert meta["x64"] is True and meta["backend"] == "cpu" and meta["device_count"] >= 1
    assert meta["command"] == "pytest claims -k 'c2 and tanh'"
    assert set(meta["fingerprint"]) == {"sha256", "tier", "estimators", "claims"}
    assert meta["run_id"].startswith("smoke-seed3-") and meta["run_id"].endswith(meta["fingerprint"]["sha256"][:8])
    if meta["commit"]:
        assert meta["commit"][:12] in meta["run_id"] and isinstance(meta["dirty"], bool)
        assert (meta["diff_sha256"] is not None) == meta["dirty"]


def test_the_fingerprint_tells_tiers_apart_and_is_stable():
    prints = {name: provenance.fingerprint(name) for name in TIER_NAMES}
    assert len({p["sha256"] for p in prints.values()}) == len(TIER_NAMES)
    assert len({p["tier"] for p in prints.values()}) == len(TIER_NAMES)
    assert len({(p["estimators"], p["claims"]) for p in prints.values()}) == 1
    assert provenance.fingerprint("smoke") == prints["smoke"]


def test_the_fingerprint_follows_margins_and_estimator_settings(tmp_path):
    (tmp_path / "harness").mkdir()
    (tmp_path / "claims").mkdir()
    fit = tmp_path / "harness" / "fit.py"
    claim = tmp_path / "claims" / "test_sec9.py"
    fit.write_text("LEVEL = 0.90\n\ndef fit(x, level=0.90):\n    return x\n")
    claim.write_text("SLOPE_MARGIN = 0.10\n\ndef test_c9_x():\n    pass\n")
    base = provenance.fingerprint("smoke", root=tmp_path)
    claim.write_text("SLOPE_MARGIN = 0.10\n\n\ndef test_c9_x():\n    assert True  # body and comments are code\n")
    assert provenance.fingerprint("smoke", root=tmp_path) == base
    claim.write_text("SLOPE_MARGIN = 0.15\n\ndef test_c9_x():\n    pass\n")
    margin = provenance.fingerprint("smoke", root=tmp_path)
    assert margin["claims"] != base["claims"] and margin["estimators"] == base["estimators"]
    fit.write_text("LEVEL = 0.90\n\ndef fit(x, level=0.95):\n    return x\n")
    default = provenance.fingerprint("smoke", root=tmp_path)
    assert default["estimators"] != margin["estimators"] and default["sha256"] != margin["sha256"]


def test_source_settings_reads_constants_and_defaults(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import math\nA = 1e-3\nB: tuple = (1, 2)\nC = math.sqrt(2)\n_private = 5\n"
                    "def f(x, y=2, *, z='s'):\n    pass\nclass K:\n    def g(self, w=None):\n        pass\n")
    assert provenance.source_settings(path) == {
        "A": 1e-3, "B": "(1, 2)", "C": "math.sqrt(2)", "f.y": 2, "f.z": "s", "K.g.w": None,
    }


def test_json_text_is_canonical():
    a = {"records": [{"verdict": "confirmed", "claim": "C2", "zeta": 1.0, "alpha": np.float64(0.1),
                      "points": [{"value": np.float32(0.5), "seed": np.int64(1), "width": 100.0}],
                      "extra": {"b": (1, 2), "a": np.arange(2), "nan": float("nan")}}], "schema": 1}
    b = {"schema": 1, "records": [{"claim": "C2", "extra": {"nan": float("nan"), "a": [0, 1], "b": [1, 2]},
                                   "points": [{"width": 100.0, "seed": 1, "value": 0.5}], "alpha": 0.1,
                                   "zeta": 1.0, "verdict": "confirmed"}]}
    text = json_text(a)
    assert text == json_text(b)
    record = json.loads(text)["records"][0]
    assert list(record) == ["claim", "verdict", "alpha", "zeta", "extra", "points"]
    assert list(record["points"][0]) == ["width", "seed", "value"]
    assert record["extra"]["nan"] == "nan" and record["alpha"] == 0.1
    third = 1 / 3
    assert json.loads(json_text({"x": third}))["x"] == third  # shortest round-trip text


def _changed_lines(old: str, new: str) -> list[str]:
    return [line for line in difflib.ndiff(old.splitlines(), new.splitlines()) if line[:2] in ("- ", "+ ")]


def test_a_rerun_with_the_same_numbers_changes_only_the_run_metadata(tmp_path):
    records = [scaling("C3", "shallow-tanh", slope=0.01), scaling("C5", "tanh-layer1-2", slope=0.0)]
    texts = []
    for i, order in enumerate((records, records[::-1])):
        report = RunReport(tmp_path / "run", "smoke", 0, "float64")
        for record in order:
            report.add({k: record[k] for k in sorted(record, reverse=bool(i))})  # another key order too
        report.write(1.0 + i, ["pytest", "claims", f"--try={i}"])
        texts.append((tmp_path / "run" / "claims.json").read_text())
    changed = _changed_lines(*texts)
    assert changed and all(any(k in line for k in ('"date"', '"wall_time_s"', '"command"')) for line in changed), changed
