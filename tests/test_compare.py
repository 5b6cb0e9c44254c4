"""``harness.compare``: verdict flips, slope differences, one-sided records, fingerprints, exit codes."""

from __future__ import annotations

import copy
import json
import math

import pytest
from synthetic_reports import FINGERPRINT, bound, report, scaling, standard_records, write

from harness import compare
from harness.compare import CompareError, committed_reference, compare_reports, markdown, resolve_claims_path


def _pair(tmp_path, reference, run):
    return str(write(tmp_path / "reference", reference)), str(write(tmp_path / "run", run))


def _main(capsys, *args):
    code = compare.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_run_compared_with_itself_is_clean(tmp_path, capsys):
    data = report(standard_records())
    code, out, _ = _main(capsys, *_pair(tmp_path, data, data))
    assert code == 0
    assert "**No difference**: 3 records compared; 0 verdict flips, 0 slopes beyond 3" in out
    assert "Fingerprints: match for all 3 compared records" in out
    assert "## Verdict flips" not in out and "## Slopes beyond" not in out


def test_one_record_is_counted_in_the_singular(tmp_path, capsys):
    data = report(standard_records()[:1])
    code, out, _ = _main(capsys, *_pair(tmp_path, data, data))
    assert code == 0 and "**No difference**: 1 record compared;" in out


def test_a_planted_slope_change_is_caught_and_named(tmp_path, capsys):
    reference = report(standard_records())
    run = copy.deepcopy(reference)
    planted = run["records"][1]
    assert (planted["claim"], planted["variant"]) == ("C2", "tanh-d1")
    planted["slope"] += 5 * math.sqrt(2) * planted["stderr"]  # 5 combined standard errors
    paths = _pair(tmp_path, reference, run)
    code, out, _ = _main(capsys, *paths)
    assert code == 1
    assert "**Differences found**" in out and "1 slopes beyond 3 combined standard errors" in out
    section = out.split("## Slopes beyond 3 combined standard errors")[1].split("##")[0]
    assert "| C2 | tanh-d1 |" in section and "+5.00 |" in section
    assert "C3" not in section
    code, out, _ = _main(capsys, "--json", *paths)
    result = json.loads(out)
    flagged = [(r["claim"], r["variant"]) for r in result["records"] if r["beyond"]]
    assert code == 1 and result["exit_code"] == 1 and flagged == [("C2", "tanh-d1")]
    assert result["records"][1]["difference_se"] == pytest.approx(5.0)


def test_a_planted_verdict_flip_is_caught_and_named(tmp_path, capsys):
    reference = report(standard_records())
    run = copy.deepcopy(reference)
    run["records"][2]["verdict"] = "inconclusive"
    code, out, _ = _main(capsys, *_pair(tmp_path, reference, run))
    assert code == 1 and "1 verdict flips" in out
    section = out.split("## Verdict flips")[1].split("##")[0]
    assert "| C3 | shallow-tanh | confirmed | inconclusive |" in section
    assert "**confirmed -> inconclusive**" in out


def test_the_threshold_is_an_option(tmp_path, capsys):
    reference = report(standard_records())
    run = copy.deepcopy(reference)
    run["records"][1]["slope"] += 2 * math.sqrt(2) * run["records"][1]["stderr"]
    paths = _pair(tmp_path, reference, run)
    assert _main(capsys, *paths)[0] == 0
    code, out, _ = _main(capsys, "--threshold", "1.5", *paths)
    assert code == 1 and "## Slopes beyond 1.5 combined standard errors" in out


def test_records_on_one_side_are_listed_and_fail_only_when_strict(tmp_path, capsys):
    reference = report(standard_records())
    run = report(standard_records()[1:] + [scaling("C4", "tanh-depth2-R0")])
    paths = _pair(tmp_path, reference, run)
    code, out, _ = _main(capsys, *paths)
    assert code == 0
    assert "## Only in the reference (1)\n\nC1 tanh-d1" in out and "## Only in the run (1)\n\nC4 tanh-depth2-R0" in out
    assert _main(capsys, "--strict", *paths)[0] == 1


def test_no_record_in_common_is_a_difference(tmp_path, capsys):
    code, out, _ = _main(capsys, *_pair(tmp_path, report([bound()]), report([scaling()])))
    assert code == 1 and "**No record in common**" in out


def test_records_without_stderr_and_with_unknown_keys_are_compared(tmp_path):
    reference = report(standard_records())
    run = copy.deepcopy(reference)
    for r in (reference["records"][1], run["records"][1]):
        del r["stderr"]  # read from the 90% CI: half-width 2.1 se
        r["p_confirm"], r["a_future_key"] = 0.9999, {"nested": [1, 2]}
    run["records"][1]["slope"] += 0.1
    shifted = run["records"][1]
    shifted["ci90_low"] += 0.1
    shifted["ci90_high"] += 0.1
    result = compare_reports(reference, run)
    record = result["records"][1]
    assert record["stderr_run"] == pytest.approx(0.01 * 2.1 / 1.6448536269514722)
    assert record["beyond"] and result["exit_code"] == 1
    run["records"][1]["slope"] = "nan"  # a non-finite slope, as report.py writes it: not comparable, not a flip
    record = compare_reports(reference, run)["records"][1]
    assert record["slope_difference"] is None and not record["beyond"]


def test_bound_records_show_worst_against_limit(tmp_path):
    reference = report([bound(worst=1e-11, limit=1e-10)])
    run = report([bound(worst=3e-11, limit=1e-10)])
    result = compare_reports(reference, run)
    record = result["records"][0]
    assert record["worst_ratio_reference"] == pytest.approx(0.1) and record["worst_change"] == pytest.approx(0.2)
    assert result["exit_code"] == 0
    assert "worst/limit 0.1 -> 0.3" in markdown(result)


def test_fingerprints_and_criteria_are_compared(tmp_path, capsys):
    reference = report(standard_records())
    run = report(standard_records(), fingerprint={**FINGERPRINT, "sha256": "e" * 16, "tier": "9" * 16})
    run["records"][1]["margin"] = 0.2
    paths = _pair(tmp_path, reference, run)
    code, out, _ = _main(capsys, *paths)
    assert code == 0
    assert "Fingerprints: 0 match, 3 differ" in out and "| differs: tier |" in out
    assert "## Changed criteria" in out and "| C2 | tanh-d1 | margin | 0.1 | 0.2 |" in out
    assert _main(capsys, "--strict", *paths)[0] == 1
    unknown = compare_reports(report(standard_records(), fingerprint=None), reference)
    assert unknown["counts"]["fingerprint_unknown"] == 3 and unknown["exit_code"] == 0


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    code, out, err = _main(capsys, str(tmp_path / "missing"), str(tmp_path / "missing2"))
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and "no claims.json at" in err
    (tmp_path / "claims.json").write_text('{"not": "a report"}')
    code, _, err = _main(capsys, str(tmp_path / "claims.json"), str(tmp_path / "claims.json"))
    assert code == 2 and "not a linearity-claims report" in err


def test_paths_resolve_to_a_claims_json(tmp_path):
    path = write(tmp_path, report([bound()], tier="smoke"))
    assert resolve_claims_path(path) == path
    assert resolve_claims_path(path.parent) == path
    assert resolve_claims_path(tmp_path) == path
    write(tmp_path, report([bound()], tier="default"))
    with pytest.raises(CompareError, match="several tiers; name one"):
        resolve_claims_path(tmp_path)


def test_one_argument_compares_with_the_committed_reference(tmp_path, capsys):
    """A reproduction equal to the committed default-tier numbers is clean; one planted slope is named."""
    committed, label = committed_reference("default")
    assert "reports/default/claims.json" in label
    same = tmp_path / "same" / "default" / "claims.json"
    same.parent.mkdir(parents=True)
    same.write_text(json.dumps(committed))
    code, out, _ = _main(capsys, str(tmp_path / "same"))
    assert code == 0 and "**No difference**" in out and "as committed at" in out
    planted = copy.deepcopy(committed)
    target = next(r for r in planted["records"] if r["kind"] == "scaling" and r["claim"] == "C4")
    target["slope"] += 10 * target["stderr"]
    changed = tmp_path / "planted" / "default" / "claims.json"
    changed.parent.mkdir(parents=True)
    changed.write_text(json.dumps(planted))
    code, out, _ = _main(capsys, str(changed))
    assert code == 1
    section = out.split("## Slopes beyond 3 combined standard errors")[1].split("##")[0]
    assert f"| C4 | {target['variant']} |" in section


def test_no_committed_reference_for_a_tier_is_an_error(tmp_path, capsys):
    path = write(tmp_path, report([bound()], tier="smoke"))
    code, _, err = _main(capsys, str(path))
    assert code == 2 and "no committed reference for tier 'smoke'" in err
