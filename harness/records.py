"""The records of a run and their file (CLAIMS.md, "What a run records"): building, JSON I/O, merging.

``claims.json`` holds ``{"schema", "tier", "runs": {run_id: metadata}, "records": [...]}``, one record
per (claim, variant) with the fitted slope, its confidence intervals, R^2, the points used and the
verdict; identities and inequalities carry their worst violation instead of a slope. A run that
selects some claims (``pytest -k``) replaces their records and keeps the others; each record names
the run that produced it. ``judgement`` turns a test's records into pass, skip or fail.

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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.fit import EXPLORATORY, VERDICTS, PowerLawFit, Verdict

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------------
# Building records
def scaling_record(
    claim: str,
    variant: str,
    *,
    title: str,
    quantity: str,
    law: str,
    target: float | None,
    margin: float | None,
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
# Judging a test's records
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


# --------------------------------------------------------------------------------------------------
# Files: atomic writes, JSON, metadata, merging
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
