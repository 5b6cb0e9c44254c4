"""``pytest --resume``: a killed run continues where it stopped and ends with the same records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.progress import PROGRESS_FILE, RunProgress

ROOT = Path(__file__).resolve().parents[1]


def test_a_resumed_run_replays_only_the_passed_and_skipped_tests_of_the_same_run(tmp_path):
    first = RunProgress(tmp_path, "run-a")
    first.finish("claims/t.py::passed", "passed", 2.5, [{"claim": "C1", "variant": "v"}])
    first.finish("claims/t.py::skipped", "skipped", 0.1, [], "at the smoke tier: too few widths")
    first.finish("claims/t.py::failed", "failed", 1.0, [{"claim": "C2", "variant": "w"}])
    again, line = RunProgress.resumed(tmp_path, "run-a")
    assert "2 finished tests replayed" in line
    assert again.replay("claims/t.py::passed")["records"] == [{"claim": "C1", "variant": "v"}]
    assert again.replay("claims/t.py::skipped")["reason"] == "at the smoke tier: too few widths"
    assert again.replay("claims/t.py::failed") is None  # a failure is measured again
    assert again.replay("claims/t.py::never-finished") is None


def test_progress_of_another_run_is_not_resumed_and_not_removed(tmp_path):
    RunProgress(tmp_path, "run-a").finish("claims/t.py::x", "passed", 1.0, [])
    other, line = RunProgress.resumed(tmp_path, "run-b")
    assert "is the progress of run run-a, not of this run run-b" in line
    assert other.replay("claims/t.py::x") is None
    other.remove()  # not its file: a later --resume of run-a still finds it
    assert (tmp_path / PROGRESS_FILE).exists()
    resumed, _ = RunProgress.resumed(tmp_path, "run-a")
    resumed.remove()
    assert not (tmp_path / PROGRESS_FILE).exists()


def test_an_unreadable_progress_file_is_an_error_naming_it(tmp_path):
    (tmp_path / PROGRESS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot resume from .*{PROGRESS_FILE}"):
        RunProgress.resumed(tmp_path, "run-a")


def test_a_line_cut_short_by_a_kill_is_ignored_and_its_test_runs_again(tmp_path):
    progress = RunProgress(tmp_path, "run-a")
    progress.finish("claims/t.py::first", "passed", 1.0, [{"claim": "C1", "variant": "v"}])
    progress.finish("claims/t.py::second", "passed", 1.0, [{"claim": "C2", "variant": "w"}])
    text = (tmp_path / PROGRESS_FILE).read_text()
    (tmp_path / PROGRESS_FILE).write_text(text[: len(text) - 20])  # the kill came mid-line
    resumed, line = RunProgress.resumed(tmp_path, "run-a")
    assert "1 finished tests replayed" in line
    assert resumed.replay("claims/t.py::first") is not None and resumed.replay("claims/t.py::second") is None
    resumed.finish("claims/t.py::second", "passed", 1.0, [])  # appended after the cut line: still read
    assert RunProgress.resumed(tmp_path, "run-a")[0].replay("claims/t.py::second") is not None


def _pytest_command(report_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "claims", "--claim", "C1",
        "--scale", "smoke", "--report-dir", str(report_dir), *extra,
    ]


def _records(report_dir: Path) -> list[dict]:
    return json.loads((report_dir / "smoke" / "claims.json").read_text())["records"]


@pytest.mark.slow
def test_a_run_killed_after_one_claim_test_resumes_to_the_records_of_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "LINEARITY_JAX_CACHE": str(tmp_path / "jax-cache")}
    whole = subprocess.run(_pytest_command(tmp_path / "whole", "-n", "0"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert not (tmp_path / "whole" / "smoke" / PROGRESS_FILE).exists()  # a finished run leaves none

    progress_path = tmp_path / "killed" / "smoke" / PROGRESS_FILE
    run = subprocess.Popen(_pytest_command(tmp_path / "killed", "-n", "0"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not progress_path.exists() and run.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        run.kill()
    finally:
        run.wait(timeout=60)
    finished = [line for line in progress_path.read_text().splitlines()[1:] if line.endswith("}")]
    assert 1 <= len(finished) < 3, "the run must be killed between its first and its last test"
    assert not (tmp_path / "killed" / "smoke" / "claims.json").exists()

    resumed = subprocess.run(
        _pytest_command(tmp_path / "killed", "-n", "0", "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{len(finished)} finished tests replayed" in resumed.stdout
    assert _records(tmp_path / "killed") == _records(tmp_path / "whole")
    assert not progress_path.exists()
