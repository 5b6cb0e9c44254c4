"""The outputs of a run under ``reports/<tier>/`` (CLAIMS.md, "What a run records"): ``claims.json``
(``harness.records``), ``summary.md`` (``harness.summary``) and the PNG figures (``harness.figures``),
rewritten together from the merged records at the end of every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.figures import FIGURES
from harness.records import SCHEMA_VERSION, atomic_write_text, json_text, load_records, merge_records, record_key, run_metadata
from harness.summary import summary_markdown


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
