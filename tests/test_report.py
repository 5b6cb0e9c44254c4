"""Records, merging, atomic writes, the summary and the figure."""

from __future__ import annotations

import json
import os

import pytest

from harness.fit import bound_verdict, equality_verdict, lower_bound_verdict, power_law_fit
from harness.records import atomic_write_text, bound_record, load_records, merge_records, scaling_record
from harness.report import RunReport
from harness.summary import summary_markdown


def _scaling(claim="C2", variant="tanh-d1", slope=-0.5):
    widths = [100, 100, 1000, 1000, 10000, 10000]
    values = [w**slope * (1.1 if i % 2 else 0.9) for i, w in enumerate(widths)]
    fit = power_law_fit(widths, values, [0, 1] * 3)
    return scaling_record(
        claim, variant, title="t", quantity="hessian_norm", law="slope = -1/2", target=-0.5, margin=0.1,
        fit=fit, verdict=equality_verdict(fit, -0.5, 0.1), extra={"radius": 0.0},
    )


def test_scaling_record_has_every_field_claims_md_asks_for():
    r = _scaling()
    for field in ["claim", "variant", "quantity", "law", "target", "margin", "slope", "ci_low", "ci_high", "r2",
                  "widths", "seeds", "n_points", "verdict", "points"]:
        assert field in r, field
    assert r["widths"] == [100, 1000, 10000] and r["seeds"] == [0, 1] and r["n_points"] == 6
    assert r["verdict"] == "confirmed"


def test_bound_record():
    r = bound_record("C1", "tanh", title="t", quantity="q", law="0", worst=1e-16, limit=1e-12,
                     verdict=bound_verdict(1e-16, 1e-12, "q"), samples=9)
    assert r["kind"] == "bound" and r["worst"] == 1e-16 and r["verdict"] == "confirmed"


def test_bad_claim_id_is_refused():
    with pytest.raises(ValueError, match="claim id"):
        _scaling(claim="Claim 2")


def test_merge_replaces_same_key_and_keeps_the_others():
    old = [_scaling("C2", "a", -0.5), _scaling("C4", "b", -0.5)]
    new = [{**_scaling("C2", "a", -0.4), "slope": 123.0}]
    merged = merge_records(old, new)
    assert [(r["claim"], r["variant"]) for r in merged] == [("C2", "a"), ("C4", "b")]
    assert merged[0]["slope"] == 123.0


def test_run_report_writes_and_merges_a_subset_run(tmp_path):
    first = RunReport(tmp_path, "smoke", 0, "float64")
    first.add(_scaling("C2", "a"))
    first.add(_scaling("C4", "b"))
    paths = first.write(1.0, ["pytest"])
    assert {p.name for p in paths} >= {"claims.json", "summary.md", "hessian_scaling.png"}
    second = RunReport(tmp_path, "smoke", 7, "float64")
    second.add({**_scaling("C4", "b"), "slope": -0.45})
    second.write(2.0, ["pytest", "-k", "C4"])
    data = load_records(tmp_path / "claims.json")
    assert [(r["claim"], r["variant"]) for r in data["records"]] == [("C2", "a"), ("C4", "b")]
    assert data["records"][1]["slope"] == -0.45
    assert len(data["runs"]) == 2  # each record names the run that produced it
    assert {r["run"] for r in data["records"]} == set(data["runs"])
    summary = (tmp_path / "summary.md").read_text()
    assert "| C2 | a |" in summary and "| C4 | b |" in summary
    assert (tmp_path / "hessian_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_a_record_added_twice_and_a_tier_mismatch_are_errors(tmp_path):
    report = RunReport(tmp_path, "smoke", 0, "float64")
    report.add(_scaling())
    with pytest.raises(ValueError, match="added twice"):
        report.add(_scaling())
    report.write(1.0, [])
    other = RunReport(tmp_path, "default", 0, "float64")
    other.add(_scaling())
    with pytest.raises(ValueError, match="holds tier 'smoke'"):
        other.write(1.0, [])


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "claims.json"
    atomic_write_text(path, "old")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["claims.json"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    """Reports are shared with auditors: not the owner-only mode of a temporary file."""
    path = tmp_path / "summary.md"
    atomic_write_text(path, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_json_is_standard_even_with_non_finite_extras(tmp_path):
    report = RunReport(tmp_path, "smoke", 0, "float64")
    report.add({**_scaling(), "extra": {"ratio": float("inf")}})
    report.write(1.0, [])
    data = json.loads((tmp_path / "claims.json").read_text())
    assert data["records"][0]["extra"]["ratio"] == "inf"


def test_summary_counts_scaling_laws_apart_from_identities():
    identity = bound_record("C7", "tanh", title="t", quantity="q", law="0", worst=1e-16, limit=1e-10,
                            verdict=bound_verdict(1e-16, 1e-10, "q"), samples=4)
    level = bound_record("C12", "swish", title="t", quantity="q", law=">= 0.1", worst=0.5, limit=0.1,
                         verdict=lower_bound_verdict(0.5, 0.1, "min Delta K(T)"), samples=4,
                         direction="at_least", scale_dependent=True)
    data = {"tier": "default", "runs": {}, "records": [_scaling("C2", "a"), _scaling("C2", "b", 0.0), identity, level]}
    data["records"][1]["verdict"] = "refuted"
    text = summary_markdown(data)
    assert "Scaling laws: 2 of 3 confirmed; identities and inequalities: 1 of 1 hold." in text
    assert "Not confirmed: 1 refuted." in text
    # Numbers before words: the measured value against its floor, not an inverted ratio.
    assert "min 0.5 >= 0.1" in text and "max 1e-16 <= 1e-10" in text
    assert text.index("## Scaling laws") < text.index("| C12 | swish |") < text.index("## Identities") < text.index("| C7 | tanh |")


def test_summary_names_the_smallest_p_confirm_and_lists_the_weak_records():
    strong = _scaling("C2", "a")
    weak = {**_scaling("C4", "b"), "p_confirm": 0.5}
    text = summary_markdown({"tier": "default", "runs": {}, "records": [strong, weak]})
    assert "smallest p_confirm" in text and "is 0.5000 (C4 b)" in text
    assert "below 0.999: C4 b 0.5000" in text
    assert 0.0 <= strong["p_confirm"] <= 1.0 and strong["edge_se"] is not None


def test_a_bound_record_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        bound_record("C1", "x", title="t", quantity="q", law="0", worst=0.0, limit=1.0,
                     verdict=bound_verdict(0.0, 1.0, "q"), samples=1, direction="sideways")


def test_the_smoke_tier_skips_scaling_failures_but_fails_a_broken_identity():
    from harness.records import judgement

    bad_slope = {**_scaling("C2", "a"), "verdict": "inconclusive"}
    bad_identity = bound_record("C7", "tanh", title="t", quantity="q", law="0", worst=1e-3, limit=1e-10,
                                verdict=bound_verdict(1e-3, 1e-10, "q"), samples=4)
    assert judgement([_scaling()], judged_tier=False) == ("pass", "")
    assert judgement([bad_slope], judged_tier=False)[0] == "skip"
    assert judgement([bad_slope], judged_tier=True)[0] == "fail"
    assert judgement([bad_slope, bad_identity], judged_tier=False)[0] == "fail"
    outcome, text = judgement([bad_identity], judged_tier=False)
    assert outcome == "fail" and "C7 tanh: refuted" in text
