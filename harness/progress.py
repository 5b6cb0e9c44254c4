"""A run's progress on disk, so that a killed run can resume where it stopped (``pytest --resume``).

A long run (the paper tier takes hours on a GPU) writes its records into ``claims.json`` only at
the end. As each test finishes, the process that collects the reports (the controller of a parallel
run) also appends a line to ``progress.jsonl`` next to it: the first line holds the run's id, each
further line one finished test (its outcome, its seconds and the records it judged), written with
one ``write`` and flushed to disk, so a run killed mid-line leaves a last line that does not parse,
which a resumed run ignores (that test runs again). Appending keeps the cost of a line its own
size; rewriting one file after each test cost the sum of all records so far, every time. A later run with ``--resume`` and the same run id
(same tier, base seed, code and fingerprint: ``harness.provenance.run_id``, so the same numbers)
replays the tests that passed or were skipped: their records are added to the report and judged
again, without measuring anything. Tests that failed, or were still running when the run was killed,
run again. The run that ends normally removes the file; one interrupted keeps it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.records import atomic_write_text, plain_json

PROGRESS_FILE = "progress.jsonl"
SCHEMA = 1
#: Outcomes of a finished test that a resumed run replays instead of running again.
REPLAYED_OUTCOMES = ("passed", "skipped")


def current_run_id(tier: str, base_seed: int) -> str:
    """The id the records of a run at this tier and seed get from this checkout."""
    from harness import provenance

    return provenance.run_id(tier, base_seed, provenance.source_state(), provenance.fingerprint(tier)["sha256"])


class RunProgress:
    """The finished tests of one run, appended to ``directory/progress.jsonl`` as each test finishes."""

    def __init__(self, directory: Path, run_id: str, tests: Mapping[str, Mapping[str, Any]] | None = None):
        self.path = Path(directory) / PROGRESS_FILE
        self.run_id = run_id
        self.tests: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (tests or {}).items()}
        #: True once this process wrote the file or took it over: only then may it remove it.
        self.owned = tests is not None

    @classmethod
    def resumed(cls, directory: Path, run_id: str) -> tuple[RunProgress, str]:
        """The progress left by an earlier run with this id, and a line saying what is resumed.

        A file of another run (other code, settings, tier or seed) is not resumed: its records
        would not be this run's numbers. A file whose first line is not a progress header is an
        error (something else wrote it); a last line cut short by a kill is ignored.
        """
        path = Path(directory) / PROGRESS_FILE
        if not path.exists():
            return cls(directory, run_id), f"resume: no progress file at {path}; every test runs"
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
            header = json.loads(lines[0])
            stored_id = header["run_id"]
            if header.get("schema") != SCHEMA:
                raise ValueError(f"schema {header.get('schema')!r}, not {SCHEMA}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"cannot resume from {path}: {type(err).__name__}: {err}") from None
        if stored_id != run_id:
            return cls(directory, run_id), (
                f"resume: {path} is the progress of run {stored_id}, not of this run {run_id} "
                "(code, settings, tier or seed differ); every test runs"
            )
        tests = {}
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:  # the empty tail after the last newline, or a line cut by a kill
                continue
            tests[entry["nodeid"]] = {k: v for k, v in entry.items() if k != "nodeid"}
        progress = cls(directory, run_id, tests)
        replayed = sum(1 for t in progress.tests.values() if t["outcome"] in REPLAYED_OUTCOMES)
        return progress, f"resume: run {run_id}: {replayed} finished tests replayed from {path}, the others run"

    def replay(self, nodeid: str) -> dict[str, Any] | None:
        """The stored result of a test to replay, or None if it must run."""
        test = self.tests.get(nodeid)
        return test if test is not None and test["outcome"] in REPLAYED_OUTCOMES else None

    def finish(self, nodeid: str, outcome: str, seconds: float, records: Sequence[Mapping[str, Any]], reason: str = "") -> None:
        """Store a finished test: one line appended to the file (the whole file rewritten first if
        this process has not written it yet: a resumed run keeps the entries it replays)."""
        entry = {"outcome": outcome, "seconds": round(float(seconds), 3), "reason": reason, "records": plain_json(list(records))}
        self.tests[nodeid] = entry
        if not self.owned:
            self._rewrite()
        else:
            self._append({"nodeid": nodeid, **entry})

    def _rewrite(self) -> None:
        lines = [json.dumps({"schema": SCHEMA, "run_id": self.run_id})]
        lines += [json.dumps({"nodeid": n, **t}, sort_keys=True) for n, t in self.tests.items()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        self.owned = True

    def _append(self, entry: Mapping[str, Any]) -> None:
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        with open(self.path, "ab+") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end > 0:  # after a line cut short by a kill, start on a line of its own
                handle.seek(end - 1)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        """Delete the file if this run wrote it or resumed from it (never another run's)."""
        if self.owned:
            self.path.unlink(missing_ok=True)
