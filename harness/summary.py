"""``summary.md``: the claims tables a human reads, then the sections built from them (the paper's
Table 1, the architectures, the exploratory records, the resources of the latest run).

Everything here reads records (``harness.records``) and writes Markdown; nothing measures or judges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from harness.fit import EXPLORATORY, VERDICTS
from harness.records import is_scaling_evidence

#: A judged record below this chance of confirming again, with fresh seeds, is listed in the summary.
P_CONFIRM_TARGET = 0.999


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return format(value, spec)


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (norm bars ``||H||`` would split the row)."""
    return str(text).replace("|", "\\|")


def measured_text(record: Mapping[str, Any]) -> str:
    """The fitted exponent with its 95% CI, or the worst violation of an identity."""
    if record["kind"] == "scaling":
        text = f"{record['slope']:+.3f} [{record['ci_low']:+.3f}, {record['ci_high']:+.3f}]"
        if "limit" in record:
            text += f"; limit {_fmt(record['limit'])} [{_fmt(record['limit_ci90_low'])}, {_fmt(record['limit_ci90_high'])}] >= {_fmt(record['limit_required'])}"
        return text
    if record.get("direction") == "at_least":
        return f"min {_fmt(record['worst'])} >= {_fmt(record['limit'])}"
    return f"max {_fmt(record['worst'])} <= {_fmt(record['limit'])}"


def claims_table(records: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| id | variant | claim | measured (95% CI) | expected | margin | R^2 | p_confirm | points | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        r2 = _fmt(r.get("r2"), ".3f") if r["kind"] == "scaling" else ""
        power = _fmt(r.get("p_confirm"), ".4f") if r["verdict"] != EXPLORATORY else ""
        lines.append(
            f"| {r['claim']} | {cell(r['variant'])} | {cell(r['title'])} | {measured_text(r)} | {cell(r['law'])} | "
            f"{_fmt(r['margin'])} | {r2} | {power} | {r['n_points']} | **{r['verdict']}** |"
        )
    return "\n".join(lines)


def headline(records: Sequence[Mapping[str, Any]]) -> str:
    """"Scaling laws: X of Y confirmed; identities and inequalities: Z of W hold" (exploratory apart)."""
    judged = [r for r in records if r["verdict"] != EXPLORATORY]
    laws = [r for r in judged if is_scaling_evidence(r)]
    identities = [r for r in judged if not is_scaling_evidence(r)]

    def confirmed(rs):
        return sum(1 for r in rs if r["verdict"] == "confirmed")

    others = {v: sum(1 for r in judged if r["verdict"] == v) for v in VERDICTS if v not in ("confirmed", EXPLORATORY)}
    text = (
        f"**Scaling laws: {confirmed(laws)} of {len(laws)} confirmed; identities and inequalities: "
        f"{confirmed(identities)} of {len(identities)} hold.** "
        f"{len(records) - len(judged)} exploratory records (measured, never judged)."
    )
    failing = ", ".join(f"{n} {v}" for v, n in others.items() if n)
    return text + (f" Not confirmed: {failing}." if failing else "")


def power_text(records: Sequence[Mapping[str, Any]]) -> str:
    """The smallest p_confirm of the run and the judged records below P_CONFIRM_TARGET."""
    powered = sorted(
        (r for r in records if r["verdict"] != EXPLORATORY and r.get("p_confirm") is not None),
        key=lambda r: r["p_confirm"],
    )
    if not powered:
        return ""
    low = [r for r in powered if r["p_confirm"] < P_CONFIRM_TARGET]
    first = powered[0]
    text = (
        f"Power: the smallest p_confirm (chance that a rerun with fresh seeds confirms the record again) "
        f"is {first['p_confirm']:.4f} ({first['claim']} {first['variant']}) over {len(powered)} judged fits; "
    )
    if not low:
        return text + f"none is below {P_CONFIRM_TARGET}."
    listed = ", ".join(f"{r['claim']} {r['variant']} {r['p_confirm']:.4f}" for r in low)
    return text + f"{len(low)} below {P_CONFIRM_TARGET}: {listed}."


# --------------------------------------------------------------------------------------------------
# Sections
def table1_section(records: Sequence[Mapping[str, Any]]) -> str:
    """The paper's Table 1 rebuilt from the C10 records (fitted exponents, derived transition)."""
    rows = {r["variant"]: r for r in records if r["claim"] == "C10"}
    order = ["linear-output", "nonlinear-output", "bottleneck"]
    if not rows:
        return ""
    lines = [
        "## Table 1 of the paper, rebuilt (C10)",
        "",
        "| network | Hessian-norm exponent (95% CI) | NTK exponent (95% CI) | transition to linearity | paper |",
        "|---|---|---|---|---|",
    ]
    for key in order:
        if key not in rows:
            continue
        r = rows[key]
        e = r.get("extra", {})
        ntk = e.get("ntk_ci95", [float("nan")] * 2)
        lines.append(
            f"| {cell(e.get('row', key))} | {r['slope']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
            f"({e.get('hessian_verdict')}) | {e.get('ntk_slope', float('nan')):+.3f} [{ntk[0]:+.3f}, {ntk[1]:+.3f}] "
            f"({e.get('ntk_verdict')}) | **{e.get('transition')}** | {e.get('paper_transition')} |"
        )
    lines += [
        "",
        "Hessian exponents are judged by the row's law (-1/2 for the linear output, Omega(1) otherwise), "
        "NTK exponents by slope 0; the transition column is derived from the two verdicts.",
    ]
    return "\n".join(lines)


def architectures_section(records: Sequence[Mapping[str, Any]]) -> str:
    """Fitted Hessian and kernel exponents per architecture: C4's dense nets beside C6's."""
    rows: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in records:
        if r["kind"] != "scaling":
            continue
        if r["claim"] == "C6":
            arch, _, part = r["variant"].rpartition("-")
            rows.setdefault(arch, {})[part] = r
        elif r["claim"] == "C4" and r["variant"].endswith("-R0"):
            rows.setdefault(f"fully connected ({r['variant'][:-3]})", {})["hessian"] = r
        elif r["claim"] == "C3" and r["variant"].startswith(("tanh-depth", "swish-depth")):
            rows.setdefault(f"fully connected ({r['variant']})", {})["kernel"] = r
    if not any("hessian" in parts for parts in rows.values()):
        return ""

    def fitted(r: Mapping[str, Any] | None) -> str:
        if r is None:
            return ""
        return f"{r['slope']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] ({r['verdict']})"

    lines = [
        "## Architectures (C4, C6): fitted exponents in the width (channels for convolutions)",
        "",
        "| architecture | depth | ||H|| exponent (95% CI) | tr K / n exponent (95% CI) |",
        "|---|---|---|---|",
    ]
    for arch, parts in sorted(rows.items(), key=lambda kv: (not kv[0].startswith("fully"), kv[0])):
        ref = parts.get("hessian") or parts.get("kernel")
        depth = ref.get("extra", {}).get("depth", "")
        lines.append(f"| {cell(arch)} | {depth} | {fitted(parts.get('hessian'))} | {fitted(parts.get('kernel'))} |")
    lines += ["", "Law: ||H|| exponent -1/2, kernel exponent 0 (Sec. 3.3, Appendix H)."]
    return "\n".join(lines)


def exploratory_section(records: Sequence[Mapping[str, Any]]) -> str:
    chosen = [r for r in records if r["verdict"] == "exploratory"]
    if not chosen:
        return ""
    lines = [
        "## Exploratory records (outside the theory: measured, never judged)",
        "",
        "| id | variant | what | measured (95% CI) | reference |",
        "|---|---|---|---|---|",
    ]
    for r in chosen:
        lines.append(f"| {r['claim']} | {cell(r['variant'])} | {cell(r['title'])} | {measured_text(r)} | {cell(r['law'])} |")
    return "\n".join(lines)


_CLAIM_RANGE = re.compile(r"C([0-9]+)(?:-C([0-9]+))?")


_TEST_CLAIM = re.compile(r"::test_c([0-9]+)_")


def claim_ids_named(text: str) -> frozenset[str]:
    """The claim ids a resource family names: "C11, C12, C14-C16" -> C11, C12, C14, C15, C16."""
    ids = set()
    for first, last in _CLAIM_RANGE.findall(text):
        ids.update(f"C{n}" for n in range(int(first), int(last or first) + 1))
    return frozenset(ids)


def estimated_vs_measured(families: Sequence[Mapping[str, Any]], test_seconds: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per group of claims (families that share a claim are one group): estimated estimator seconds
    (``harness.resources``), measured seconds (the sum over the claims' tests) and their ratio."""
    groups: list[tuple[set[str], float]] = []
    for family in families:
        ids, seconds = set(claim_ids_named(family["claims"])), 3600.0 * float(family["cpu_hours"])
        for other in [g for g in groups if g[0] & ids]:
            groups.remove(other)
            ids |= other[0]
            seconds += other[1]
        groups.append((ids, seconds))
    rows = []
    for ids, estimated in sorted(groups, key=lambda g: min(int(c[1:]) for c in g[0])):
        spent = sum(s for n, s in test_seconds.items() if (m := _TEST_CLAIM.search(n)) and f"C{m.group(1)}" in ids)
        rows.append({
            "claims": ", ".join(sorted(ids, key=lambda c: int(c[1:]))),
            "estimated_s": estimated,
            "measured_s": spent,
            "ratio": spent / estimated if estimated > 0 else math.inf,
        })
    return rows


def resources_section_from(runs: Mapping[str, Any]) -> str:
    latest = max(runs.values(), key=lambda m: m["date"]) if runs else None
    estimate = latest.get("resource_estimates") if latest else None
    if not estimate:
        return ""
    lines = [
        "## Resources at this tier (estimated from the grids, harness/resources.py)",
        "",
        f"Peak memory {estimate['peak_GiB']:.2f} GiB; order of magnitude of the estimator work: "
        f"{estimate['cpu_hours']:.2f} CPU hours or {estimate['gpu_minutes']:.1f} GPU minutes (compilation not included).",
        "",
        "| claims | largest network | weights | peak GiB |",
        "|---|---|---|---|",
    ]
    for row in estimate["families"]:
        lines.append(f"| {row['claims']} | {cell(row['largest_network'])} | {row['params']:.3g} | {row['peak_GiB']:.3f} |")
    measured = latest.get("measured")
    if measured and measured.get("test_seconds"):
        total = sum(s for n, s in measured["test_seconds"].items() if n.startswith("claims/"))
        compiling = sum(s for n, s in measured.get("compile_seconds", {}).items() if n.startswith("claims/"))
        compiled = f" ({compiling:.0f} s of them tracing and compiling)" if "compile_seconds" in measured else ""
        lines += [
            "",
            f"Measured in the latest run ({latest['run_id']}, {latest.get('worker_processes', 1)} processes): "
            f"peak resident memory {measured['peak_rss_GiB']:.2f} GiB per process (the JAX runtime and compiled "
            f"code included) against the estimated {estimate['peak_GiB']:.2f} GiB of arrays; "
            f"{total:.0f} s in the claims' tests{compiled}, against {3600 * estimate['cpu_hours']:.0f} s of estimated "
            "estimator work (the rest is compilation, Python and the claims without an estimate).",
            "",
            "| claims | estimated s | measured s | measured / estimated |",
            "|---|---|---|---|",
        ]
        for row in estimated_vs_measured(estimate["families"], measured["test_seconds"]):
            if row["measured_s"] <= 0:  # not run this time
                continue
            ratio = f"{row['ratio']:.1f}" if row["estimated_s"] >= 1 else "(estimate below 1 s)"
            lines.append(f"| {row['claims']} | {row['estimated_s']:.0f} | {row['measured_s']:.0f} | {ratio} |")
    return "\n".join(lines)


#: The sections after the claims tables, in order: functions of the records returning Markdown, or "".
SUMMARY_SECTIONS = (table1_section, architectures_section, exploratory_section)


def summary_markdown(data: Mapping[str, Any]) -> str:
    records = data["records"]
    runs = data.get("runs", {})
    latest = max(runs.values(), key=lambda m: m["date"]) if runs else None
    out = [f"# linearity-claims: {data.get('tier')} tier", ""]
    if latest:
        out += [
            f"Latest run {latest['date']} on {latest['device']} ({latest['platform']}), "
            f"{latest['dtype']}, base seed {latest['base_seed']}, wall time {latest['wall_time_s']:.0f} s; "
            f"jax {latest['versions'].get('jax')}, statsmodels {latest['versions'].get('statsmodels')}.",
            "",
        ]
    out += [
        headline(records),
        "",
        "Slopes are fits of E[quantity] = a width^b (Gamma GLM, log link, robust errors) over all "
        "(width, seed) points; the table shows the 95% CI, the verdicts use the 90% CI (two one-sided "
        "tests at 5%); an Omega(1) claim is judged on the limit a of quantity = a + c width^(-1/2); see README.",
        "",
        power_text(records),
        "",
        "## Scaling laws",
        "",
        claims_table([r for r in records if is_scaling_evidence(r)]),
        "",
        "## Identities and inequalities (hold at every width; some by construction of the code)",
        "",
        claims_table([r for r in records if not is_scaling_evidence(r)]),
        "",
    ]
    for section in SUMMARY_SECTIONS:
        text = section(records)
        if text:
            out += [text.rstrip(), ""]
    text = resources_section_from(runs)
    if text:
        out += [text, ""]
    return "\n".join(out)
