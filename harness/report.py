"""Records, the summary table and the figures of a run (CLAIMS.md, "What a run records").

A run writes, under ``reports/<tier>/``:

* ``claims.json``: ``{"tier", "runs": {run_id: metadata}, "records": [...]}``, one record per
  (claim, variant) with the fitted slope, its confidence intervals, R^2, the points used and the
  verdict; identities and inequalities carry their worst violation instead of a slope. A run that
  selects some claims (``pytest -k``) replaces their records and keeps the others; each record
  names the run that produced it.
* ``summary.md``: the claims table a human reads, then any extra tables (the paper's Table 1, ...).
* PNG figures (see ``FIGURES``).

Every file is written to a temporary file in the same directory and moved into place with
``os.replace``, so a killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.fit import EXPLORATORY, VERDICTS, PowerLawFit, Verdict

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------------
# Records
def scaling_record(
    claim: str,
    variant: str,
    *,
    title: str,
    quantity: str,
    law: str,
    target: float,
    margin: float,
    fit: PowerLawFit,
    verdict: Verdict,
    size_name: str = "width",
    floor: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A record for a claim judged by a fitted exponent."""
    record = {
        "claim": claim,
        "variant": variant,
        "title": title,
        "kind": "scaling",
        "quantity": quantity,
        "law": law,
        "target": target,
        "margin": margin,
        "slope": fit.slope,
        "stderr": fit.stderr,
        "ci_low": fit.ci95[0],
        "ci_high": fit.ci95[1],
        "ci90_low": fit.ci90[0],
        "ci90_high": fit.ci90[1],
        "r2": fit.r2,
        "intercept": fit.intercept,
        "size_name": size_name,
        "widths": fit.distinct_widths,
        "seeds": sorted(set(fit.seeds)),
        "n_points": fit.n_points,
        "level_at_largest": fit.level_at_largest(),
        "fit_method": fit.method,
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "p_confirm": verdict.p_confirm,
        "edge_se": verdict.edge_se,
        **dict(verdict.details),
        "points": [{"width": w, "seed": s, "value": v} for w, s, v in zip(fit.widths, fit.seeds, fit.values)],
    }
    if floor is not None:
        record["floor"] = floor
    if extra:
        record["extra"] = dict(extra)
    return _check_record(record)


def bound_record(
    claim: str,
    variant: str,
    *,
    title: str,
    quantity: str,
    law: str,
    worst: float,
    limit: float,
    verdict: Verdict,
    samples: int,
    extra: Mapping[str, Any] | None = None,
    direction: str = "at_most",
    scale_dependent: bool = False,
) -> dict[str, Any]:
    """A record for an identity or inequality checked at every sample (C1, C7, C15, C16, C17).

    Args:
      worst: the largest value seen (``direction="at_most"``: it must be <= limit) or the smallest
        (``"at_least"``: it must be >= limit, a floor).
      scale_dependent: the check is about the paper's laws at this tier's widths (a level reached
        at a large width), not an identity or inequality that holds at any width. It counts with
        the scaling laws and, like them, is not judged at the smoke tier.
    """
    if direction not in ("at_most", "at_least"):
        raise ValueError(f"direction must be 'at_most' or 'at_least', got {direction!r}")
    record = {
        "claim": claim,
        "variant": variant,
        "title": title,
        "kind": "bound",
        "quantity": quantity,
        "law": law,
        "worst": worst,
        "limit": limit,
        "margin": limit,
        "direction": direction,
        "scale_dependent": scale_dependent,
        "n_points": samples,
        "verdict": verdict.verdict,
        "reason": verdict.reason,
    }
    if extra:
        record["extra"] = dict(extra)
    return _check_record(record)


def exploratory_record(record: dict[str, Any]) -> dict[str, Any]:
    """Mark a record as exploratory: measured and reported, never pass/fail."""
    out = dict(record)
    out["verdict"] = EXPLORATORY
    out["reason"] = "exploratory (outside the theory's assumptions): " + out.get("reason", "")
    return out


def _check_record(record: dict[str, Any]) -> dict[str, Any]:
    if not re.fullmatch(r"C\d+|X\d+", record["claim"]):
        raise ValueError(f"claim id must look like 'C12' (or 'X1' for exploratory), got {record['claim']!r}")
    if record["verdict"] not in VERDICTS:
        raise ValueError(f"unknown verdict {record['verdict']!r}")
    return record


def record_key(record: Mapping[str, Any]) -> tuple[str, str]:
    return record["claim"], record["variant"]


def claim_sort_key(record: Mapping[str, Any]) -> tuple:
    match = re.fullmatch(r"([A-Z])(\d+)", record["claim"])
    prefix, number = (match.group(1), int(match.group(2))) if match else ("Z", 0)
    return (prefix != "C", number, record["variant"])


# --------------------------------------------------------------------------------------------------
# Files
def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing between."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file readable by its owner only; reports are meant to be shared, so
        # give it the permissions an ordinary open() would (0666 less the umask).
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def plain_json(value):
    """``value`` with numpy and JAX numbers and arrays as Python numbers and lists (NaN and inf
    kept as floats): what ``json.dumps`` can write and read back unchanged."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


#: Keys written first, in this order, wherever they occur; the others follow sorted, then
#: ``TRAILING_KEYS``. A record thus reads claim, variant, title, ... and ends with its points.
LEADING_KEYS = (
    "schema", "tier", "runs", "records", "run_id", "claim", "variant", "title", "kind", "quantity", "law",
    "target", "margin", "floor", "verdict", "reason", "run", "width", "seed", "value",
)
TRAILING_KEYS = ("extra", "points")


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(_finite_json(key))


def _ordered_keys(keys: Iterable[str]) -> list[str]:
    present = set(keys)
    first = [k for k in LEADING_KEYS if k in present]
    last = [k for k in TRAILING_KEYS if k in present]
    return first + sorted(present - set(first) - set(last)) + last


def _finite_json(value):
    """``value`` as plain JSON data in a canonical form, so equal numbers give equal text.

    JSON has no NaN/inf: they are written as strings, so the file stays standard JSON. Numpy and
    JAX scalars and arrays become Python numbers and lists, tuples and sets lists (sets sorted), and
    dictionaries get string keys in a fixed order (``LEADING_KEYS``, the rest sorted,
    ``TRAILING_KEYS``). Floats are then written by ``json`` as ``repr`` writes them: the shortest
    text that reads back to the same double.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        items = {_json_key(k): v for k, v in value.items()}
        return {k: _finite_json(items[k]) for k in _ordered_keys(items)}
    if isinstance(value, (set, frozenset)):
        return [_finite_json(v) for v in sorted(value, key=repr)]
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    if hasattr(value, "tolist") or hasattr(value, "item"):
        return _finite_json(_json_default(value))
    return value


def json_text(data: Mapping[str, Any]) -> str:
    """The text of a ``claims.json`` (or of any report data): canonical (see ``_finite_json``), one key per line."""
    return json.dumps(_finite_json(data), indent=1, default=_json_default, allow_nan=False) + "\n"


def load_records(path: Path) -> dict[str, Any]:
    """The content of an existing ``claims.json`` (empty structure if there is none)."""
    path = Path(path)
    if not path.exists():
        return {"schema": SCHEMA_VERSION, "tier": None, "runs": {}, "records": []}
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or "records" not in data:
        raise ValueError(f"{path} is not a linearity-claims report")
    return data


def run_metadata(tier: str, base_seed: int, dtype: str, wall_time_s: float, args: Sequence[str]) -> dict[str, Any]:
    """What a run was: tier, seed, date, wall time and its provenance (``harness.provenance``).

    The provenance is the source's commit, dirty flag and diff hash, the exact versions, XLA
    backend and device, x64, CPU model and core count, the command line and the fingerprint of
    what was measured. ``run_id`` names the run in its records; a rerun of the same code at the
    same tier and seed gets the same id.
    """
    import shlex

    from harness import provenance

    source = provenance.source_state()
    fingerprint = provenance.fingerprint(tier)
    return {
        "run_id": provenance.run_id(tier, base_seed, source, fingerprint["sha256"]),
        "tier": tier,
        "base_seed": base_seed,
        "dtype": dtype,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 2),
        **source,
        **provenance.environment(),
        "command": shlex.join(str(a) for a in args),
        "fingerprint": fingerprint,
    }


def merge_records(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records of ``new`` replace those of ``old`` with the same (claim, variant)."""
    merged = {record_key(r): dict(r) for r in old}
    for r in new:
        merged[record_key(r)] = dict(r)
    return sorted(merged.values(), key=claim_sort_key)


# --------------------------------------------------------------------------------------------------
# Summary
def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return format(value, spec)


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


def is_scaling_evidence(record: Mapping[str, Any]) -> bool:
    """A fitted law, or a level reached at this tier's widths: evidence about the paper's laws.

    The other records are identities and inequalities that hold at any width (some by
    construction of the code: the chain rule of Eq. 12-13, Eq. 14's reverse triangle inequality,
    Eq. 2's mean-value bound); they can still fail, and are counted apart.
    """
    return record["kind"] == "scaling" or bool(record.get("scale_dependent"))


def non_finite_fields(record: Mapping[str, Any]) -> list[str]:
    """The measured numbers of a record that are NaN or infinite: its fitted slope and standard
    error, its worst value (a bound) and the values of its points. A bound may hold an infinite worst
    when its limit says so (a condition number of a singular matrix): only NaN counts there."""
    bad = []
    for key in ("slope", "stderr"):
        value = record.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(key)
    worst = record.get("worst")
    if isinstance(worst, float) and math.isnan(worst):
        bad.append("worst")
    points = record.get("points") or []
    count = sum(1 for p in points if isinstance(p.get("value"), float) and not math.isfinite(p["value"]))
    if count:
        bad.append(f"value at {count} of {len(points)} points")
    return bad


def judgement(records: Sequence[Mapping[str, Any]], judged_tier: bool) -> tuple[str, str]:
    """("pass" | "skip" | "fail", the reasons) for the records of one claim test.

    A record with a non-finite measurement fails at every tier, exploratory or not (a NaN is a
    bug, never a verdict). Exploratory records never fail otherwise. On a tier too small to judge
    the scaling laws (smoke, paper-dry), a test whose only failures are scaling evidence is
    skipped; a failed identity or inequality fails there too, since it holds at every width.
    """
    broken = [r for r in records if non_finite_fields(r)]
    if broken:
        return "fail", "\n".join(
            f"{r['claim']} {r['variant']}: non-finite {', '.join(non_finite_fields(r))}" for r in broken
        )
    failing = [r for r in records if r["verdict"] not in ("confirmed", EXPLORATORY)]
    text = "\n".join(f"{r['claim']} {r['variant']}: {r['verdict']}: {r['reason']}" for r in failing)
    if not failing:
        return "pass", ""
    if not judged_tier and all(is_scaling_evidence(r) for r in failing):
        return "skip", text.replace("\n", "; ")
    return "fail", text


#: A judged record below this chance of confirming again, with fresh seeds, is listed in the summary.
P_CONFIRM_TARGET = 0.999


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (norm bars ``||H||`` would split the row)."""
    return str(text).replace("|", "\\|")


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


#: Extra summary sections: functions of the record list returning Markdown (or "" to skip).
SUMMARY_SECTIONS: list[Callable[[Sequence[Mapping[str, Any]]], str]] = []


def register_summary_section(fn: Callable[[Sequence[Mapping[str, Any]]], str]):
    """Decorator: add a section (records -> Markdown, "" to skip) to every summary.md."""
    if fn not in SUMMARY_SECTIONS:
        SUMMARY_SECTIONS.append(fn)
    return fn


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


# --------------------------------------------------------------------------------------------------
# Figures
def _plot_scaling(
    records: Sequence[Mapping[str, Any]], title: str, ylabel: str, path: Path, reference_slope: float | None = None
) -> bool:
    """Log-log plot of the points of each record with its fitted line; the slope in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not records:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(records):
        color = colors[i % len(colors)]
        w = np.array([p["width"] for p in r["points"]], dtype=float)
        v = np.array([p["value"] for p in r["points"]], dtype=float)
        ax.scatter(w, v, s=9, alpha=0.45, color=color)
        grid = np.geomspace(w.min(), w.max(), 50)
        label = f"{r['claim']} {r['variant']}: slope {r['slope']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        ax.plot(grid, np.exp(r["intercept"]) * grid ** r["slope"], color=color, lw=1.6, label=label)
    if reference_slope is not None:
        all_w = np.array([p["width"] for r in records for p in r["points"]], dtype=float)
        all_v = np.array([p["value"] for r in records for p in r["points"]], dtype=float)
        grid = np.geomspace(all_w.min(), all_w.max(), 50)
        anchor = np.exp(np.mean(np.log(all_v))) * 1.6
        ax.plot(grid, anchor * (grid / np.exp(np.mean(np.log(all_w)))) ** reference_slope, "k--", lw=1,
                label=f"reference slope {reference_slope:+.1f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(records[0].get("size_name", "width") + " m")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def save_figure(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def hessian_scaling_figure(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Hessian norm vs width at W0 for the linear-output networks (C2 and C4 at R = 0)."""
    chosen = [
        r
        for r in records
        if r["kind"] == "scaling" and r["quantity"] == "hessian_norm" and r["claim"] in ("C2", "C4")
        and r.get("extra", {}).get("radius", 0.0) == 0.0
    ]
    path = Path(directory) / "hessian_scaling.png"
    title = "Linear output: ||H|| at W0 vs width (paper Eq. 5, Thm 3.2: slope -1/2)"
    return [path] if _plot_scaling(chosen, title, "spectral norm of the Hessian ||H||", path, reference_slope=-0.5) else []


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


SUMMARY_SECTIONS.append(table1_section)


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


SUMMARY_SECTIONS.append(architectures_section)


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


SUMMARY_SECTIONS.append(exploratory_section)


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


def section4_figure(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Hessian norm vs width for the three kinds of network of Table 1 (C10), one log-log plot."""
    chosen = [r for r in records if r["claim"] == "C10" and r["kind"] == "scaling"]
    path = Path(directory) / "hessian_three_kinds.png"
    title = "Table 1: ||H|| vs width for linear output, phi(f) output and bottleneck"
    return [path] if _plot_scaling(chosen, title, "max over inputs of ||H||", path) else []


#: Figure functions: (records, directory) -> paths written.
FIGURES: list[Callable[[Sequence[Mapping[str, Any]], Path], list[Path]]] = [hessian_scaling_figure, section4_figure]


def register_figure(fn: Callable[[Sequence[Mapping[str, Any]], Path], list[Path]]):
    """Decorator: draw this figure (records, directory) -> paths from the merged records of every run.

    A figure draws from all records of the tier, not only this run's, so a ``-k`` run redraws
    every figure consistently; it returns [] when its records are absent.
    """
    if fn not in FIGURES:
        FIGURES.append(fn)
    return fn


# --------------------------------------------------------------------------------------------------
# A run
class RunReport:
    """Collects the records of one pytest run and writes them, merged, at the end."""

    def __init__(self, directory: Path, tier: str, base_seed: int, dtype: str):
        self.directory = Path(directory)
        self.tier = tier
        self.base_seed = base_seed
        self.dtype = dtype
        self.records: list[dict[str, Any]] = []

    def add(self, record: Mapping[str, Any]) -> None:
        keys = {record_key(r) for r in self.records}
        if record_key(record) in keys:
            raise ValueError(f"record {record_key(record)} added twice in one run")
        self.records.append(dict(record))

    def write(
        self,
        wall_time_s: float,
        args: Sequence[str],
        complete: bool = False,
        workers: int = 1,
        measured: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """Merge this run's records into the tier's directory and rewrite every output.

        Args:
          complete: the run selected every claim, so its records replace the file's instead of
            being merged into them (records of removed claims or variants disappear).
          workers: processes that measured them (pytest-xdist workers; 1 for a run in one process).
          measured: what the run cost: ``test_seconds`` (node id -> seconds of each claims test) and
            ``peak_rss_GiB`` (the largest peak resident memory of its processes).
        """
        if not self.records:
            return []
        claims_path = self.directory / "claims.json"
        data = load_records(claims_path)
        if complete:
            data = {**data, "records": [], "runs": {}}
        if data.get("tier") not in (None, self.tier):
            raise ValueError(f"{claims_path} holds tier {data['tier']!r}, not {self.tier!r}")
        meta = run_metadata(self.tier, self.base_seed, self.dtype, wall_time_s, args)
        from harness.resources import summary as resource_summary
        from harness.tiers import get_tier

        meta["resource_estimates"] = resource_summary(get_tier(self.tier))
        meta["worker_processes"] = int(workers)
        if measured is not None:
            meta["measured"] = dict(measured)
        run_id = meta["run_id"]
        new = [{**r, "run": run_id} for r in self.records]
        records = merge_records(data["records"], new)
        used = {r.get("run") for r in records}
        runs = {k: v for k, v in data.get("runs", {}).items() if k in used}
        runs[run_id] = meta
        out = {"schema": SCHEMA_VERSION, "tier": self.tier, "runs": runs, "records": records}
        atomic_write_text(claims_path, json_text(out))
        written = [claims_path]
        summary_path = self.directory / "summary.md"
        atomic_write_text(summary_path, summary_markdown(out))
        written.append(summary_path)
        for figure in FIGURES:
            written += figure(records, self.directory)
        return written
