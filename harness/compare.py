"""Compare two runs record by record: ``linearity-claims compare REFERENCE RUN``.

Also ``python -m harness.compare``. Records are matched by (claim, variant). For each pair:

* the verdict change (a *flip*: any change of verdict, e.g. confirmed -> inconclusive);
* for a scaling record, the slope difference in combined standard errors,
  ``(slope_run - slope_ref) / sqrt(se_ref^2 + se_run^2)``; a record without ``stderr`` gets one
  from its 90% (else 95%) confidence interval, read as normal;
* for a bound record, ``worst / limit`` on each side and its change;
* the claim's criteria (target, margin, floor, limit, direction, law) when they changed;
* whether the fingerprints of the runs behind the two records match (``harness.provenance``).

Records present on one side only are listed. The exit status is 0 when no verdict flips and no
slope differs by more than the threshold (default 3 combined standard errors, ``--threshold``), and
1 otherwise, or when the two sides have no record in common; ``--strict`` also counts records on
one side only, changed criteria and differing fingerprints. Bad input (a missing file, a file that
is not a report) exits 2.

With one argument the run is compared with the committed reference of its tier,
``reports/<tier>/claims.json`` as committed at ``HEAD`` (so a run that rewrote the working copy is
still compared with what was committed), or the working copy outside a git checkout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.provenance import git_output, project_root
from harness.records import claim_sort_key, json_text, load_records, record_key

DEFAULT_THRESHOLD = 3.0

#: Normal quantiles used to read a standard error from a confidence interval.
_Z90 = 1.6448536269514722
_Z95 = 1.959963984540054

#: Fields that state a claim's criterion, by record kind (a scaling record's ``limit`` is measured).
CRITERIA = {
    "scaling": ("target", "margin", "floor", "law", "quantity"),
    "bound": ("limit", "direction", "law", "quantity"),
}

#: Fingerprint parts compared, in the order they are named.
FINGERPRINT_PARTS = ("tier", "estimators", "claims")


class CompareError(Exception):
    """Input that cannot be compared: a missing file, a file that is not a report."""


# --------------------------------------------------------------------------------------------------
# Input
def resolve_claims_path(path: Path | str) -> Path:
    """The ``claims.json`` that ``path`` names: the file, a tier directory, or a report root.

    Raises:
      CompareError: nothing there, or a report root with several tiers (the message lists them).
    """
    path = Path(path)
    if path.is_file():
        return path
    if (path / "claims.json").is_file():
        return path / "claims.json"
    if path.is_dir():
        found = sorted(path.glob("*/claims.json"))
        if len(found) == 1:
            return found[0]
        if found:
            listed = ", ".join(str(p) for p in found)
            raise CompareError(f"{path} holds several tiers; name one: {listed}")
    raise CompareError(f"no claims.json at {path}")


def read_report(path: Path | str) -> tuple[dict[str, Any], str]:
    """The report at ``path`` (see :func:`resolve_claims_path`) and a label naming it."""
    claims_path = resolve_claims_path(path)
    try:
        return load_records(claims_path), str(claims_path)
    except (ValueError, OSError) as err:
        raise CompareError(f"cannot read {claims_path}: {err}") from None


def committed_reference(tier: str, root: Path | None = None) -> tuple[dict[str, Any], str]:
    """The committed ``reports/<tier>/claims.json``: as of ``HEAD`` in a checkout, else on disk."""
    root = Path(root or project_root())
    relative = f"reports/{tier}/claims.json"
    commit = git_output(root, "rev-parse", "--short=12", "HEAD")
    text = git_output(root, "show", f"HEAD:{relative}") if commit else None
    if text is not None:
        try:
            data = json.loads(text)
        except ValueError as err:
            raise CompareError(f"{relative} at HEAD is not JSON: {err}") from None
        if not isinstance(data, dict) or "records" not in data:
            raise CompareError(f"{relative} at HEAD is not a linearity-claims report")
        return data, f"{relative} as committed at {commit.decode().strip()}"
    if not commit and (root / relative).is_file():
        data, _ = read_report(root / relative)
        return data, f"{root / relative} (not a git checkout: the file on disk)"
    raise CompareError(f"no committed reference for tier {tier!r} ({relative} is not in git); name a REFERENCE")


# --------------------------------------------------------------------------------------------------
# One record
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def stderr_of(record: Mapping[str, Any]) -> float | None:
    """The slope's standard error: ``stderr``, else the 90% or 95% CI's half-width over z."""
    se = _number(record.get("stderr"))
    if se is not None:
        return abs(se)
    for low, high, z in (("ci90_low", "ci90_high", _Z90), ("ci_low", "ci_high", _Z95)):
        lo, hi = _number(record.get(low)), _number(record.get(high))
        if lo is not None and hi is not None:
            return abs(hi - lo) / (2 * z)
    return None


def _fingerprint(data: Mapping[str, Any], record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = data.get("runs", {}).get(record.get("run"), {})
    fingerprint = meta.get("fingerprint") if isinstance(meta, Mapping) else None
    return fingerprint if isinstance(fingerprint, Mapping) else None


def fingerprint_status(reference: Mapping[str, Any] | None, run: Mapping[str, Any] | None) -> str:
    """"match", "unknown" (a side has none) or "differs: <parts>"."""
    if not reference or not run:
        return "unknown"
    if reference.get("sha256") == run.get("sha256"):
        return "match"
    parts = [p for p in FINGERPRINT_PARTS if reference.get(p) != run.get(p)]
    return "differs: " + (", ".join(parts) or "sha256")


def _slope_fields(ref: Mapping[str, Any], run: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    a, b = _number(ref.get("slope")), _number(run.get("slope"))
    se_a, se_b = stderr_of(ref), stderr_of(run)
    out: dict[str, Any] = {"slope_reference": a, "slope_run": b, "stderr_reference": se_a, "stderr_run": se_b}
    if a is None or b is None:
        return {**out, "slope_difference": None, "difference_se": None, "beyond": False}
    difference = b - a
    combined = math.hypot(se_a, se_b) if se_a is not None and se_b is not None else None
    if combined is None:
        z = None
    elif combined > 0:
        z = difference / combined
    else:
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return {**out, "slope_difference": difference, "difference_se": z, "beyond": z is not None and abs(z) > threshold}


def _ratio(record: Mapping[str, Any]) -> float | None:
    worst, limit = _number(record.get("worst")), _number(record.get("limit"))
    if worst is None or limit is None or limit == 0:
        return None
    return worst / abs(limit)


def _bound_fields(ref: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    a, b = _ratio(ref), _ratio(run)
    return {
        "worst_reference": _number(ref.get("worst")),
        "worst_run": _number(run.get("worst")),
        "worst_ratio_reference": a,
        "worst_ratio_run": b,
        "worst_change": b - a if a is not None and b is not None else None,
    }


def criteria_changes(ref: Mapping[str, Any], run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The criterion fields (``CRITERIA``) whose values differ, and a change of kind."""
    if ref.get("kind") != run.get("kind"):
        return [{"field": "kind", "reference": ref.get("kind"), "run": run.get("kind")}]
    fields = CRITERIA.get(ref.get("kind"), ())
    return [{"field": f, "reference": ref.get(f), "run": run.get(f)} for f in fields if ref.get(f) != run.get(f)]


def compare_record(
    ref: Mapping[str, Any], run: Mapping[str, Any], threshold: float, fingerprint: str = "unknown"
) -> dict[str, Any]:
    """The comparison of one record present on both sides (see the module docstring)."""
    out: dict[str, Any] = {
        "claim": ref["claim"],
        "variant": ref["variant"],
        "kind": run.get("kind"),
        "verdict_reference": ref.get("verdict"),
        "verdict_run": run.get("verdict"),
        "flip": ref.get("verdict") != run.get("verdict"),
        "reason_run": run.get("reason"),
        "criteria_changes": criteria_changes(ref, run),
        "fingerprint": fingerprint,
        "beyond": False,
    }
    if ref.get("kind") == run.get("kind") == "scaling":
        out.update(_slope_fields(ref, run, threshold))
    elif ref.get("kind") == run.get("kind") == "bound":
        out.update(_bound_fields(ref, run))
    return out


# --------------------------------------------------------------------------------------------------
# Two reports
def _runs_text(data: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The runs behind these records: id, date, seed, commit, dirty flag, fingerprint."""
    used = sorted({r.get("run") for r in records}, key=str)
    runs = data.get("runs", {})
    out = []
    for run_id in used:
        meta = runs.get(run_id, {})
        out.append({
            "id": run_id,
            "date": meta.get("date"),
            "base_seed": meta.get("base_seed"),
            "commit": meta.get("commit"),
            "dirty": meta.get("dirty"),
            "fingerprint": (meta.get("fingerprint") or {}).get("sha256"),
            "records": sum(1 for r in records if r.get("run") == run_id),
        })
    return out


def _exit_code(counts: Mapping[str, int], strict: bool) -> int:
    failing = counts["flips"] + counts["beyond"]
    if strict:
        failing += counts["only_reference"] + counts["only_run"] + counts["criteria_changed"]
        failing += counts["fingerprint_differs"]
    return 1 if failing or not counts["compared"] else 0


def compare_reports(
    reference: Mapping[str, Any], run: Mapping[str, Any], threshold: float = DEFAULT_THRESHOLD, strict: bool = False
) -> dict[str, Any]:
    """Every record of two ``claims.json`` contents compared; ``exit_code`` as the module says."""
    if not threshold > 0:
        raise CompareError(f"the threshold must be > 0 standard errors, got {threshold}")
    ref_records = {record_key(r): r for r in reference.get("records", [])}
    run_records = {record_key(r): r for r in run.get("records", [])}
    common = sorted(set(ref_records) & set(run_records), key=lambda k: claim_sort_key(ref_records[k]))
    records = []
    for key in common:
        a, b = ref_records[key], run_records[key]
        status = fingerprint_status(_fingerprint(reference, a), _fingerprint(run, b))
        records.append(compare_record(a, b, threshold, status))

    def only(side: Mapping, other: Mapping) -> list[list[str]]:
        return [list(k) for k in sorted(set(side) - set(other), key=lambda k: claim_sort_key(side[k]))]

    result = {
        "threshold": threshold,
        "strict": strict,
        "tier_reference": reference.get("tier"),
        "tier_run": run.get("tier"),
        "runs_reference": _runs_text(reference, [ref_records[k] for k in common] or list(ref_records.values())),
        "runs_run": _runs_text(run, [run_records[k] for k in common] or list(run_records.values())),
        "records": records,
        "only_reference": only(ref_records, run_records),
        "only_run": only(run_records, ref_records),
    }
    result["counts"] = {
        "compared": len(records),
        "flips": sum(r["flip"] for r in records),
        "beyond": sum(r["beyond"] for r in records),
        "criteria_changed": sum(bool(r["criteria_changes"]) for r in records),
        "fingerprint_match": sum(r["fingerprint"] == "match" for r in records),
        "fingerprint_differs": sum(r["fingerprint"].startswith("differs") for r in records),
        "fingerprint_unknown": sum(r["fingerprint"] == "unknown" for r in records),
        "only_reference": len(result["only_reference"]),
        "only_run": len(result["only_run"]),
    }
    result["exit_code"] = _exit_code(result["counts"], strict)
    return result


# --------------------------------------------------------------------------------------------------
# Markdown
def _f(value: Any, spec: str) -> str:
    number = _number(value)
    if number is None:
        return "inf" if isinstance(value, float) and math.isinf(value) else "n/a"
    return format(number, spec)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _side_text(name: str, label: str, tier: Any, runs: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [f"- {name}: `{label}` (tier {tier})"]
    for r in runs:
        commit = r["commit"][:12] if r["commit"] else "not recorded"
        state = {True: ", dirty", False: ", clean"}.get(r["dirty"], "")
        lines.append(
            f"  - run `{r['id']}`: {r['date']}, base seed {r['base_seed']}, commit {commit}{state}, "
            f"fingerprint {r['fingerprint'] or 'none recorded'}; {r['records']} records"
        )
    return lines


def _fingerprint_line(counts: Mapping[str, int]) -> str:
    n = counts["compared"]
    if n and counts["fingerprint_match"] == n:
        return f"- Fingerprints: match for all {n} compared records."
    parts = [f"{counts['fingerprint_match']} match", f"{counts['fingerprint_differs']} differ"]
    if counts["fingerprint_unknown"]:
        parts.append(f"{counts['fingerprint_unknown']} unknown (a run without a fingerprint)")
    return "- Fingerprints: " + ", ".join(parts) + " (see the last column below)."


def _verdict_line(result: Mapping[str, Any]) -> str:
    c, t = result["counts"], result["threshold"]
    found = [f"{c['flips']} verdict flips", f"{c['beyond']} slopes beyond {t:g} combined standard errors"]
    if result["strict"]:
        found += [f"{c['only_reference'] + c['only_run']} records on one side only",
                  f"{c['criteria_changed']} changed criteria", f"{c['fingerprint_differs']} differing fingerprints"]
    if not c["compared"]:
        return "**No record in common**: nothing was compared (exit 1)."
    compared = f"{c['compared']} record{'' if c['compared'] == 1 else 's'} compared"
    if result["exit_code"] == 0:
        return f"**No difference**: {compared}; " + ", ".join(found) + " (exit 0)."
    return f"**Differences found**: {compared}; " + ", ".join(found) + " (exit 1)."


def _record_cells(r: Mapping[str, Any]) -> tuple[str, str]:
    verdict = r["verdict_run"] if not r["flip"] else f"**{r['verdict_reference']} -> {r['verdict_run']}**"
    if "slope_difference" in r:
        z = r["difference_se"]
        mark = "**" if r["beyond"] else ""
        change = f"{mark}{_f(r['slope_difference'], '+.4f')} ({_f(z, '+.2f')} SE){mark}"
    elif "worst_change" in r:
        change = f"worst/limit {_f(r['worst_ratio_reference'], '.3g')} -> {_f(r['worst_ratio_run'], '.3g')}"
    else:
        change = "kind changed"
    return verdict, change


def _tables(result: Mapping[str, Any]) -> list[str]:
    records, t = result["records"], result["threshold"]
    out = []
    flips = [r for r in records if r["flip"]]
    if flips:
        out += ["## Verdict flips", "", "| id | variant | reference | run | the run's reason |", "|---|---|---|---|---|"]
        out += [f"| {r['claim']} | {_cell(r['variant'])} | {r['verdict_reference']} | {r['verdict_run']} | "
                f"{_cell(r.get('reason_run') or '')} |" for r in flips] + [""]
    beyond = [r for r in records if r["beyond"]]
    if beyond:
        out += [f"## Slopes beyond {t:g} combined standard errors", "",
                "| id | variant | reference slope (SE) | run slope (SE) | difference | in combined SE |", "|---|---|---|---|---|---|"]
        out += [f"| {r['claim']} | {_cell(r['variant'])} | {_f(r['slope_reference'], '+.4f')} ({_f(r['stderr_reference'], '.2g')}) | "
                f"{_f(r['slope_run'], '+.4f')} ({_f(r['stderr_run'], '.2g')}) | {_f(r['slope_difference'], '+.4f')} | "
                f"{_f(r['difference_se'], '+.2f')} |" for r in beyond] + [""]
    changed = [(r, c) for r in records for c in r["criteria_changes"]]
    if changed:
        out += ["## Changed criteria", "", "| id | variant | field | reference | run |", "|---|---|---|---|---|"]
        out += [f"| {r['claim']} | {_cell(r['variant'])} | {c['field']} | {_cell(c['reference'])} | {_cell(c['run'])} |"
                for r, c in changed] + [""]
    for key, title in (("only_reference", "Only in the reference"), ("only_run", "Only in the run")):
        if result[key]:
            out += [f"## {title} ({len(result[key])})", "", ", ".join(f"{c} {_cell(v)}" for c, v in result[key]), ""]
    return out


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison as Markdown: the two sides, the outcome, the differences, every record."""
    out = ["# linearity-claims compare", ""]
    out += _side_text("Reference", result.get("reference", "reference"), result["tier_reference"], result["runs_reference"])
    out += _side_text("Run", result.get("run", "run"), result["tier_run"], result["runs_run"])
    if result["tier_reference"] != result["tier_run"]:
        out.append(f"- **Tiers differ**: reference {result['tier_reference']}, run {result['tier_run']}.")
    out += [_fingerprint_line(result["counts"]),
            f"- A slope differs when |run - reference| > {result['threshold']:g} combined standard errors "
            "sqrt(se_ref^2 + se_run^2).", "", _verdict_line(result), ""]
    out += _tables(result)
    if result["records"]:
        out += ["## Every record", "", "| id | variant | verdict | slope difference (combined SE) or worst/limit | fingerprint |",
                "|---|---|---|---|---|"]
        for r in result["records"]:
            verdict, change = _record_cells(r)
            out.append(f"| {r['claim']} | {_cell(r['variant'])} | {verdict} | {change} | {r['fingerprint']} |")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Command line
def build_parser(prog: str = "python -m harness.compare") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s [-h] [--threshold SE] [--json] [--strict] [REFERENCE] RUN",
        description="Compare two runs' claims.json record by record: verdict flips, slope differences in combined "
        "standard errors, worst values against their limits, records on one side only, fingerprints. "
        "With one argument RUN is compared with the committed reports/<tier>/claims.json of its tier.",
        epilog="Exit status: 0 no difference, 1 a verdict flipped or a slope differs by more than the threshold "
        "(or no record in common), 2 bad input.",
    )
    parser.add_argument("paths", nargs="+", metavar="[REFERENCE] RUN",
                        help="claims.json files, tier directories (reports/default) or report roots")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="SE",
                        help=f"combined standard errors a slope may move (default {DEFAULT_THRESHOLD:g})")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON instead of Markdown")
    parser.add_argument("--strict", action="store_true",
                        help="also fail on records on one side only, changed criteria and differing fingerprints")
    return parser


def run_comparison(paths: Sequence[str], threshold: float, strict: bool) -> dict[str, Any]:
    """Read one or two paths (see ``build_parser``) and compare them."""
    if len(paths) > 2:
        raise CompareError(f"expected REFERENCE RUN or RUN, got {len(paths)} paths")
    run, run_label = read_report(paths[-1])
    if len(paths) == 2:
        reference, reference_label = read_report(paths[0])
    else:
        if not run.get("tier"):
            raise CompareError(f"{run_label} names no tier; name a REFERENCE")
        reference, reference_label = committed_reference(run["tier"])
    result = compare_reports(reference, run, threshold, strict)
    return {"reference": reference_label, "run": run_label, **result}


def main(argv: Sequence[str] | None = None, prog: str = "python -m harness.compare") -> int:
    """Print the comparison (Markdown, or JSON with ``--json``) and return the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        result = run_comparison(args.paths, args.threshold, args.strict)
    except CompareError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json_text(result), end="")
    else:
        print(markdown(result))
    return result["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
