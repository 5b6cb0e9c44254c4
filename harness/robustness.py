"""Robustness of the verdicts to the base seed: the default tier rerun at K base seeds.

``python -m harness.robustness --seeds 5`` runs ``pytest claims/`` once per base seed (multiples of
``SEED_STRIDE``, never seed 0 alone), each into a report directory of its own, and writes
``reports/<tier>/robustness.md`` (and ``robustness.json``): per judged record, in how many runs it
was confirmed, the spread of its slopes and the smallest ``p_confirm`` seen. ``--from DIR ...``
aggregates runs already made instead of running them.

A verdict of the paper's laws must not depend on the seed: every judged record should be confirmed
in every run, and its ``p_confirm`` tells how likely that is for a run not made here.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.fit import EXPLORATORY
from harness.records import atomic_write_text, record_key
from harness.summary import cell

ROOT = Path(__file__).resolve().parents[1]

#: Base seeds are multiples of this prime, so their sweeps (base, base + 1, ..., base + 63) never overlap.
SEED_STRIDE = 10007


def base_seeds(count: int, stride: int = SEED_STRIDE, first: int = 1) -> list[int]:
    """``first * stride, (first + 1) * stride, ...``, ``count`` of them: far from 0 and from each other."""
    if count < 1:
        raise ValueError(f"--seeds must be at least 1, got {count}")
    if first < 1:
        raise ValueError(f"--first must be at least 1 (base seed 0 is the committed reference), got {first}")
    return [stride * (first + i) for i in range(count)]


def run_claims(seed: int, tier: str, report_root: Path, pytest_args: Sequence[str]) -> int:
    """One ``pytest claims/`` run at a base seed into ``report_root``; returns pytest's exit code."""
    command = [sys.executable, "-m", "pytest", "claims/", "-p", "no:cacheprovider", "-q",
               "--scale", tier, "--seed", str(seed), "--report-dir", str(report_root), *pytest_args]
    print(f"[robustness] base seed {seed}: {' '.join(command[2:])}", flush=True)
    start = time.time()
    code = subprocess.call(command, cwd=ROOT)
    print(f"[robustness] base seed {seed}: exit {code} after {time.time() - start:.0f} s", flush=True)
    return code


def load_run(directory: Path, tier: str) -> dict[str, Any]:
    path = Path(directory) / tier / "claims.json"
    if not path.exists():
        raise SystemExit(f"robustness: no {path}: run the claims there first (or drop --from)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def run_seed(data: Mapping[str, Any]) -> int | None:
    seeds = {m.get("base_seed") for m in data.get("runs", {}).values()}
    return seeds.pop() if len(seeds) == 1 else None


def aggregate(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per judged (claim, variant): confirmations, slope spread, smallest p_confirm."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for data in runs:
        for r in data["records"]:
            if r["verdict"] == EXPLORATORY:
                continue
            row = rows.setdefault(record_key(r), {"claim": r["claim"], "variant": r["variant"], "kind": r["kind"],
                                                   "verdicts": [], "slopes": [], "p_confirm": []})
            row["verdicts"].append(r["verdict"])
            if r.get("slope") is not None:
                row["slopes"].append(r["slope"])
            if r.get("p_confirm") is not None:
                row["p_confirm"].append(r["p_confirm"])
    out = []
    for key in sorted(rows, key=_sort_key):
        row = rows[key]
        slopes = row.pop("slopes")
        row["runs"] = len(row["verdicts"])
        row["confirmed"] = sum(v == "confirmed" for v in row["verdicts"])
        row["slope_min"] = min(slopes) if slopes else None
        row["slope_max"] = max(slopes) if slopes else None
        row["slope_sd"] = _sd(slopes)
        row["min_p_confirm"] = min(row.pop("p_confirm"), default=None)
        out.append(row)
    return out


def _sort_key(key):
    claim, variant = key
    return (claim[0] != "C", int(claim[1:]) if claim[1:].isdigit() else 0, variant)


def _sd(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def markdown(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int | None], tier: str, command: str) -> str:
    runs = len(seeds)
    unconfirmed = [r for r in rows if r["confirmed"] < r["runs"] or r["runs"] < runs]
    powered = [r for r in rows if r["min_p_confirm"] is not None]
    lowest = min(powered, key=lambda r: r["min_p_confirm"]) if powered else None
    lines = [
        f"# Robustness of the {tier} tier's verdicts to the base seed",
        "",
        f"{runs} runs of `pytest claims/ --scale {tier}` at base seeds {', '.join(str(s) for s in seeds)} "
        f"(made by `{command}`).",
        "",
        f"**{len(rows) - len(unconfirmed)} of {len(rows)} judged records were confirmed in every run.**"
        + (f" Not always confirmed: {', '.join(r['claim'] + ' ' + r['variant'] for r in unconfirmed)}." if unconfirmed else ""),
    ]
    if lowest:
        lines.append(f"Smallest p_confirm in any run: {lowest['min_p_confirm']:.4f} ({lowest['claim']} {lowest['variant']}).")
    lines += ["", "| id | variant | confirmed | slope min | slope max | slope sd | min p_confirm |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['claim']} | {cell(r['variant'])} | {r['confirmed']} / {r['runs']} | {_num(r['slope_min'], '+.3f')} | "
            f"{_num(r['slope_max'], '+.3f')} | {_num(r['slope_sd'], '.3f')} | {_num(r['min_p_confirm'], '.4f')} |"
        )
    return "\n".join(lines) + "\n"


def _num(value, spec):
    return "" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.robustness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of base seeds (multiples of 10007), default 5")
    parser.add_argument(
        "--first", type=int, default=1, help="the first base seed is this multiple of 10007 (default 1): fresh seeds for a new study"
    )
    parser.add_argument("--scale", default="default", help="tier, default 'default'")
    parser.add_argument("--work-dir", default=None, help="where each run's reports go (default reports/<tier>/robustness-runs)")
    parser.add_argument("--out", default=None, help="output directory of robustness.md (default reports/<tier>)")
    parser.add_argument("--from", dest="existing", nargs="+", default=None, help="aggregate these report roots instead of running")
    args, pytest_args = parser.parse_known_args(argv)
    out_dir = Path(args.out) if args.out else ROOT / "reports" / args.scale
    if args.existing:
        roots = [Path(p) for p in args.existing]
    else:
        work = Path(args.work_dir) if args.work_dir else out_dir / "robustness-runs"
        roots = []
        try:
            seeds = base_seeds(args.seeds, first=args.first)
        except ValueError as err:
            parser.error(str(err))
        for seed in seeds:
            root = work / f"seed-{seed}"
            run_claims(seed, args.scale, root, pytest_args)
            roots.append(root)
    runs = [load_run(root, args.scale) for root in roots]
    rows = aggregate(runs)
    command = "python -m harness.robustness " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(rows, [run_seed(d) for d in runs], args.scale, command.strip())
    atomic_write_text(out_dir / "robustness.md", text)
    atomic_write_text(out_dir / "robustness.json", json.dumps({"seeds": [run_seed(d) for d in runs], "records": rows}, indent=1) + "\n")
    print(text)
    return 0 if all(r["confirmed"] == r["runs"] == len(runs) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
