"""pytest configuration shared by the claims, the harness tests and the benchmarks.

Options (each also read from an environment variable, the option wins):

* ``--scale smoke|default|paper`` (``LINEARITY_SCALE``): the tier of width and seed grids;
* ``--seed N`` (``LINEARITY_SEED``): the base seed every sweep starts from (default 0);
* ``--report-dir DIR`` (``LINEARITY_REPORT_DIR``): where ``<tier>/claims.json``, ``summary.md``
  and the figures go (default ``reports/`` beside this file);
* ``--force-paper-on-cpu``: run the paper tier even without a GPU;
* ``--claim ID`` (repeatable, or comma-separated): run only the tests of these claims. Every test
  in ``claims/`` also carries a marker named after its claim id (``-m C2``), taken from its name
  (``test_c2_...``, ``test_x1_...``) or from a ``claim`` parameter; ``-k`` stays pytest's own
  substring match (``-k c2`` also matches ``test_sec2_...``).

Parallel runs (pytest-xdist, on by default: ``-n auto`` in ``pyproject.toml``):
one worker process per CPU core at the CPU tiers, none at the paper tier (one process owns the
GPU) or for ``--collect-only`` and the benchmarks; ``-n 0`` runs everything in this process. Tests
of one claims module stay in one worker, and so do the modules of ``SHARED_MEASUREMENT_GROUPS``,
so a claim that reuses another's memoized measurements still finds them and compiled functions are
shared; the controller splits these units between the workers by the times recorded in the tier's
report (``harness.schedule.plan_units``); workers send their records to the controller, which writes
the report once.

A report directory that cannot be created or written, an unknown tier, a bad seed and a malformed
claim id are usage errors before any work; an unknown claim id is one after collection, naming the
ids the collected tests have.

Numerical strictness, in the spirit of equinox: float64 on (and x64 enabled for the float64
accumulators of the estimators), implicit rank promotion raises, warnings are errors
(``filterwarnings`` in ``pyproject.toml``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

#: A claim id (CLAIMS.md): C<n> for the paper's claims, X<n> for exploratory records.
CLAIM_ID = re.compile(r"[CX][0-9]+")
#: Test names that carry their claim id: ``test_c12_...``, ``test_x3_...``.
CLAIM_TEST_NAME = re.compile(r"test_([cx][0-9]+)_")

#: Claims modules whose tests reuse each other's memoized measurements (``harness.sweep.memoized``):
#: Table 1 (C10) reads the Hessian norms of C8 and C9; C14, C15's swish check and C16 reuse the
#: Fig. 1 training runs of C11. A parallel run keeps each group in one worker process; every other
#: claims module is a group of its own.
SHARED_MEASUREMENT_GROUPS = {
    "sec4-hessians": ("test_sec4_nonlinear_output.py", "test_sec4_bottleneck.py", "test_sec4_table1.py"),
    "fig1-training": (
        "test_sec6_fig1_nonlinear_output.py", "test_sec1_lazy_training.py", "test_sec2_linear_model.py",
        "test_sec5_convergence.py",
    ),
}
#: Most worker processes a CPU run starts (each holds its own compiled functions, ~1-2 GB).
MAX_WORKERS = 8
#: The session's config, for the hooks pytest calls without one (pytest_runtest_logreport).
_CONFIG: dict = {}


def pytest_addoption(parser):
    group = parser.getgroup("linearity-claims")
    group.addoption("--scale", default=None, help="scale tier: smoke, default or paper (env LINEARITY_SCALE)")
    group.addoption("--seed", default=None, help="base seed of every sweep (env LINEARITY_SEED, default 0)")
    group.addoption(
        "--report-dir", default=None, help="report root directory (env LINEARITY_REPORT_DIR, default reports/)"
    )
    group.addoption(
        "--force-paper-on-cpu", action="store_true", default=False, help="run the paper tier without a GPU"
    )
    group.addoption(
        "--resume", action="store_true", default=False,
        help="replay the tests a killed run of the same code, tier and seed finished (reports/<tier>/progress.jsonl)",
    )
    group.addoption(
        "--claim", action="append", default=[], metavar="ID",
        help="run only the tests of this claim id (C2, X1; repeat or comma-separate for several)",
    )


def _option(config, name: str, env: str, default):
    value = config.getoption(name)
    if value is None:
        value = os.environ.get(env) or default
    return value


def _report_dir_problem(path: Path) -> str | None:
    """None when ``path`` is, or can be created as, a writable directory; else why not.

    Nothing is created: a probe file is made and removed in ``path`` or in its nearest existing
    ancestor (so the check also holds for a user whom permission bits do not stop, such as root).
    """
    probe = path
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
    except OSError as err:
        return f"{probe} cannot be examined ({err.strerror})"
    if not probe.is_dir():
        return f"{probe} is not a directory"
    try:
        handle, name = tempfile.mkstemp(prefix=".write-test-", dir=probe)
        os.close(handle)
        os.unlink(name)
    except OSError as err:
        return f"{probe} is not writable ({err.strerror})"
    return None


def _requested_claims(config) -> set[str]:
    """The ids given to ``--claim`` (upper-cased; a malformed one is a usage error)."""
    given = {part.strip() for value in config.getoption("--claim") for part in value.split(",") if part.strip()}
    bad = sorted(i for i in given if not CLAIM_ID.fullmatch(i.upper()))
    if bad:
        raise pytest.UsageError(f"--claim takes claim ids such as C2 or X1, got {', '.join(map(repr, bad))}")
    return {i.upper() for i in given}


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def worker_group(nodeid: str) -> str:
    """The unit of work a parallel run sends to one worker: for a test in ``claims/`` its module or
    its shared-measurement group, for any other test the test itself."""
    module = nodeid.split("::")[0]
    path = Path(module)
    if path.parent != Path("claims"):
        return nodeid
    for group, modules in SHARED_MEASUREMENT_GROUPS.items():
        if path.name in modules:
            return group
    return module


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist load`` (the default under ``-n``) schedules whole ``worker_group`` units by a plan
    made from the recorded times (``harness.schedule.planned_scheduling``)."""
    if config.getvalue("dist") != "load":
        return None
    from harness.schedule import planned_scheduling, recorded_test_seconds_in

    state = getattr(config, "_linearity", None)
    seconds = recorded_test_seconds_in(state["report_dir"] / "claims.json") if state else {}
    # The workers' collection is already in the order to hand out (longest units first, see
    # pytest_collection_modifyitems): xdist's own reordering (by number of tests) would undo it.
    config.option.loadscopereorder = False
    return planned_scheduling(config, log, worker_group, seconds)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: a worker per CPU core (at most MAX_WORKERS) on the CPU tiers; 0 (no workers) at
    the paper tier, for ``--collect-only`` and for a run of the benchmarks (timings need the
    machine to themselves)."""
    scale = config.getoption("--scale") or os.environ.get("LINEARITY_SCALE") or "default"
    args = [Path(a.split("::")[0]).resolve() for a in config.args] or [Path.cwd()]
    benchmarks_only = all(ROOT / "benchmarks" in (a, *a.parents) for a in args)
    if scale == "paper" or config.option.collectonly or benchmarks_only:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


def pytest_configure(config):
    report_root = Path(_option(config, "--report-dir", "LINEARITY_REPORT_DIR", ROOT / "reports"))
    problem = _report_dir_problem(report_root / str(_option(config, "--scale", "LINEARITY_SCALE", "default")))
    if problem:
        raise pytest.UsageError(f"cannot write reports under --report-dir {report_root}: {problem}")
    claims = _requested_claims(config)
    from harness.tiers import UnknownTierError, get_tier

    try:
        tier = get_tier(_option(config, "--scale", "LINEARITY_SCALE", "default"))
    except UnknownTierError as err:
        raise pytest.UsageError(str(err)) from None
    seed_text = _option(config, "--seed", "LINEARITY_SEED", "0")
    try:
        base_seed = int(seed_text)
    except ValueError:
        raise pytest.UsageError(f"--seed must be an integer, got {seed_text!r}") from None
    if base_seed < 0:
        raise pytest.UsageError(f"--seed must be >= 0, got {base_seed}")

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from harness.schedule import compilation_cache_dir

    cache = compilation_cache_dir(os.environ)
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        # Every program, however quick to compile: the smoke-tier runs of the test suite compile
        # nothing that takes 0.5 s, and with a 0.5 s floor their reruns compiled everything again
        # (measured: the auditor's three C2 runs of tests/test_cli.py 71 s with that floor, 50 s
        # without; the resume test's three C1 runs 29 s and 18 s).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if tier.name == "paper" and jax.default_backend() == "cpu" and not config.getoption("--force-paper-on-cpu"):
        from harness.resources import paper_tier_refusal

        raise pytest.UsageError(paper_tier_refusal(tier))
    from harness.provenance import source_state

    config._linearity = {
        "tier": tier,
        "base_seed": base_seed,
        "report_dir": report_root / tier.name,
        "start": time.time(),
        "report": None,
        "claims": claims,
        "source": source_state(),
        "markers": set(),
        "worker_records": [],
        "worker_complete": [],
        "worker_peak_rss": [],
        "test_seconds": {},
        "compile_seconds": {},
        "compilation_cache": None if cache is None else str(cache),
    }
    _CONFIG["config"] = config
    from harness.schedule import CompileClock

    config._linearity["compile_clock"] = CompileClock().start()
    _start_progress(config)


def _start_progress(config) -> None:
    """This run's ``harness.progress.RunProgress``: resumed from the file with ``--resume`` (every
    process reads it; only the controller writes it), else empty (the first finished test
    overwrites the file of any earlier run)."""
    from harness.progress import RunProgress, current_run_id

    state = config._linearity
    run_id = current_run_id(state["tier"].name, state["base_seed"])
    if config.getoption("--resume"):
        try:
            progress, line = RunProgress.resumed(state["report_dir"], run_id)
        except ValueError as err:
            raise pytest.UsageError(str(err)) from None
    else:
        progress, line = RunProgress(state["report_dir"], run_id), None
    state.update(progress=progress, resume_line=line, finished_calls={})


def pytest_report_header(config):
    state = getattr(config, "_linearity", None)
    if state is None:
        return None
    import jax

    tier = state["tier"]
    source = state["source"]
    code = (source["commit"] or "no git")[:12] + (" (dirty)" if source["dirty"] else "")
    return (
        f"linearity-claims: tier {tier.name} ({tier.dtype}), base seed {state['base_seed']}, "
        f"reports in {state['report_dir']}, jax {jax.__version__} on {jax.default_backend()}, source {code}"
    )


def pytest_sessionstart(session):
    """``--resume``: say what is replayed (also under -q, where pytest prints no header)."""
    state = getattr(session.config, "_linearity", None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if state and state["resume_line"] and reporter is not None and not _is_worker(session.config):
        reporter.write_line(f"linearity-claims {state['resume_line']}")


@pytest.fixture(scope="session")
def tier(pytestconfig):
    """The scale tier of this run (``harness.tiers.Tier``)."""
    return pytestconfig._linearity["tier"]


@pytest.fixture(scope="session")
def base_seed(pytestconfig) -> int:
    return pytestconfig._linearity["base_seed"]


@pytest.fixture(scope="session")
def dtype(tier):
    import jax.numpy as jnp

    return jnp.dtype(tier.dtype)


@pytest.fixture(scope="session")
def report(pytestconfig):
    """The run's report; records added here are merged into ``reports/<tier>/`` at the end."""
    return _run_report(pytestconfig)


def _run_report(config):
    from harness.report import RunReport

    state = config._linearity
    if state["report"] is None:
        state["report"] = RunReport(state["report_dir"], state["tier"].name, state["base_seed"], state["tier"].dtype)
    return state["report"]


@pytest.fixture
def progress(pytestconfig, request):
    """``progress(message)`` prints a line at once, even while pytest captures output."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    start = time.time()
    name = request.node.name

    worker = pytestconfig.workerinput["workerid"] if _is_worker(pytestconfig) else None

    def emit(message: str) -> None:
        line = f"  [{name}] {message} (test time {time.time() - start:.1f} s)"
        if worker is not None:  # a worker's terminal output never reaches the user; its stderr does
            line = f"  [{worker}]{line[1:]}"
        if reporter is None or capture is None or worker is not None:
            if capture is None:  # pragma: no cover - pytest without its capture plugin
                print(line, file=sys.stderr, flush=True)
                return
            with capture.global_and_fixture_disabled():
                print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return emit


@pytest.fixture
def judge(request):
    """``judge(*records)``: add the records to the report, then require confirmed verdicts.

    All records are added before any is judged, so a failing claim still leaves its numbers in the
    report. Exploratory records are recorded only. At the smoke tier a scaling verdict (or a level
    reached at a large width) that is not confirmed is skipped with its reason (the grids are too
    small to judge), never passed; an identity or inequality holds at every width, so one that
    fails fails at the smoke tier too.
    """

    def check(*records) -> None:
        _add_and_judge(request.node, records)

    return check


def _add_and_judge(item, records) -> None:
    """``judge``'s work, also done for a test replayed by ``--resume``: the records go into the
    run's report and, with the test's report, to the progress file."""
    import json

    from harness.records import judgement, plain_json

    tier = item.config._linearity["tier"]
    report = _run_report(item.config)
    for record in records:
        report.add(record)
    item.user_properties.append(("linearity_records", json.dumps(plain_json(list(records)))))
    outcome, text = judgement(records, tier.judged)
    if outcome == "skip":
        pytest.skip(f"at the {tier.name} tier: " + text)
    if outcome == "fail":
        pytest.fail(text, pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """``--resume``: a test the interrupted run finished is replayed from its stored records (added
    to the report and judged again, so a verdict cannot change) instead of measured again."""
    state = getattr(pyfuncitem.config, "_linearity", None)
    stored = state["progress"].replay(pyfuncitem.nodeid) if state and pyfuncitem.config.getoption("--resume") else None
    if stored is None:
        return None
    pyfuncitem.user_properties.append(("linearity_replayed_seconds", stored["seconds"]))
    if stored["records"]:
        _add_and_judge(pyfuncitem, stored["records"])
    if stored["outcome"] == "skipped":
        pytest.skip(stored["reason"])
    return True


def _claim_sort_key(claim: str) -> tuple[bool, int]:
    return claim[0] != "C", int(claim[1:])


def claim_ids(item) -> list[str]:
    """The claim ids of a collected test in ``claims/``: from its name or its ``claim`` parameter."""
    if (ROOT / "claims") not in Path(str(item.path)).resolve().parents:
        return []
    ids = set()
    match = CLAIM_TEST_NAME.match(getattr(item, "originalname", item.name))
    if match:
        ids.add(match.group(1).upper())
    params = getattr(getattr(item, "callspec", None), "params", {})
    claim = str(params.get("claim", "")).upper()
    if CLAIM_ID.fullmatch(claim):
        ids.add(claim)
    return sorted(ids, key=_claim_sort_key)


def pytest_itemcollected(item):
    """Mark each claim test with its claim ids (``-m C2``), registering each marker once."""
    state = getattr(item.config, "_linearity", None)
    for claim in claim_ids(item):
        if state is not None and claim not in state["markers"]:
            item.config.addinivalue_line("markers", f"{claim}: the tests of claim {claim} (also --claim {claim})")
            state["markers"].add(claim)
        item.add_marker(claim)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """``--claim``: keep the tests of the requested claims; an id no collected test has is an error."""
    state = getattr(config, "_linearity", None)
    requested = state["claims"] if state else set()
    if not requested:
        _order_longest_units_first(config, items)
        return
    by_item = [(item, set(claim_ids(item))) for item in items]
    valid = set().union(*(ids for _, ids in by_item))
    unknown = sorted(requested - valid)
    if unknown:
        listed = ", ".join(sorted(valid, key=_claim_sort_key)) or "none (no claim tests were collected)"
        items[:] = []
        raise pytest.UsageError(f"unknown claim id {', '.join(unknown)}; valid ids: {listed}")
    keep = [item for item, ids in by_item if ids & requested]
    dropped = [item for item, ids in by_item if not ids & requested]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    _order_longest_units_first(config, items)


def _order_longest_units_first(config, items) -> None:
    """In a worker of a parallel run: units of work in decreasing order of the seconds their tests
    took in the runs recorded in the tier's report (``harness.schedule``)."""
    state = getattr(config, "_linearity", None)
    if state is None or not _is_worker(config):
        return
    from harness.schedule import longest_units_first, recorded_test_seconds_in

    seconds = recorded_test_seconds_in(state["report_dir"] / "claims.json")
    by_id = {item.nodeid: item for item in items}
    slow = {item.nodeid for item in items if item.get_closest_marker("slow")}
    items[:] = [by_id[n] for n in longest_units_first(list(by_id), worker_group, seconds, slow)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In the process that runs the test: each phase's report carries the seconds it spent
    compiling (``harness.schedule.CompileClock``), which reach the controller with the report."""
    outcome = yield
    state = getattr(item.config, "_linearity", None)
    if state is None:
        return
    clock = state["compile_clock"]
    outcome.get_result().user_properties.append(("compile_seconds", clock.seconds - state.get("compile_mark", 0.0)))
    state["compile_mark"] = clock.seconds


def pytest_runtest_logreport(report):
    """The controller (or a run without workers) adds up the seconds of every test (setup, call and
    teardown) and the part spent compiling: the report records them, and the next parallel run hands
    out its longest units first."""
    config = _CONFIG.get("config")
    state = getattr(config, "_linearity", None)
    if state is None or _is_worker(config):
        return
    seconds = state["test_seconds"]
    seconds[report.nodeid] = seconds.get(report.nodeid, 0.0) + float(report.duration)
    compiling = sum(float(v) for k, v in report.user_properties if k == "compile_seconds")
    state["compile_seconds"][report.nodeid] = state["compile_seconds"].get(report.nodeid, 0.0) + compiling
    _note_progress(state, report)


def _note_progress(state, report) -> None:
    """A claims test's call outcome and records, saved to the progress file once its teardown is
    done (the harness's own tests are not tracked: a run of them leaves a killed run's file alone)."""
    import json

    if not report.nodeid.startswith("claims/"):
        return
    properties = dict(report.user_properties)
    if report.when == "call":
        records = [r for k, v in report.user_properties if k == "linearity_records" for r in json.loads(v)]
        reason = report.longrepr[2].removeprefix("Skipped: ") if report.skipped and isinstance(report.longrepr, tuple) else ""
        state["finished_calls"][report.nodeid] = (report.outcome, records, reason)
    elif report.when == "teardown" and report.nodeid in state["finished_calls"]:
        outcome, records, reason = state["finished_calls"].pop(report.nodeid)
        if "linearity_replayed_seconds" in properties:  # what measuring it cost, for the schedule
            state["test_seconds"][report.nodeid] = float(properties["linearity_replayed_seconds"])
        state["progress"].finish(report.nodeid, outcome, state["test_seconds"][report.nodeid], records, reason)


def _selected_every_claim(session) -> bool:
    """True when this run collected every claim test and deselected none (a full claims run)."""
    claims_dir = ROOT / "claims"
    files = {p.resolve() for p in claims_dir.glob("test_*.py")}
    ran = {Path(str(item.path)).resolve() for item in session.items}
    deselected = session.config._linearity.get("deselected", False)
    return not deselected and files <= ran and not session.config.option.keyword and not session.config.option.markexpr


def pytest_deselected(items):
    if items:
        config = items[0].config
        if hasattr(config, "_linearity"):
            config._linearity["deselected"] = True


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller of a parallel run keeps what a finished worker measured (see sessionfinish)."""
    state = getattr(node.config, "_linearity", None)
    output = getattr(node, "workeroutput", {}).get("linearity")
    if state is None or output is None:
        return
    sent = json.loads(output)
    state["worker_records"].extend(sent["records"])
    state["worker_complete"].append(sent["complete"])
    state["worker_peak_rss"].append(sent["peak_rss_bytes"])


def pytest_sessionfinish(session, exitstatus):
    """Write the report: in a worker, send the records to the controller instead."""
    config = session.config
    state = getattr(config, "_linearity", None)
    if not state:
        return
    from harness.schedule import peak_rss_bytes

    if _is_worker(config):
        from harness.records import plain_json

        records = state["report"].records if state["report"] is not None else []
        # JSON text keeps NaN and inf as numbers (execnet carries only plain Python data).
        config.workeroutput["linearity"] = json.dumps(
            {"records": plain_json(records), "complete": _selected_every_claim(session), "peak_rss_bytes": peak_rss_bytes()}
        )
        return
    if state["worker_records"]:
        from harness.report import RunReport

        if state["report"] is None:
            state["report"] = RunReport(state["report_dir"], state["tier"].name, state["base_seed"], state["tier"].dtype)
        for record in state["worker_records"]:
            state["report"].add(record)
        complete = bool(state["worker_complete"]) and all(state["worker_complete"])
    else:
        complete = _selected_every_claim(session)
    if state["report"] is not None and state["report"].records:
        _write_run_report(session, state, complete)
    if exitstatus != pytest.ExitCode.INTERRUPTED:  # every selected test ran: nothing to resume
        state["progress"].remove()


def _write_run_report(session, state, complete: bool) -> None:
    """The controller's (or a single process's) last step: the merged report, with what it cost."""
    from harness.schedule import peak_rss_bytes

    workers = len(state["worker_complete"]) or 1
    measured = {
        "test_seconds": {n: round(s, 2) for n, s in sorted(state["test_seconds"].items())},
        # The part of each test's seconds spent tracing and compiling JAX programs.
        "compile_seconds": {n: round(s, 2) for n, s in sorted(state["compile_seconds"].items())},
        "peak_rss_GiB": round(max([peak_rss_bytes(), *state["worker_peak_rss"]]) / 2**30, 3),
        # A run with a warm cache spends less time compiling: its seconds are not those of a fresh run.
        "compilation_cache": state["compilation_cache"],
    }
    paths = state["report"].write(
        time.time() - state["start"], sys.argv, complete=complete, workers=workers, measured=measured
    )
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"linearity-claims: wrote {', '.join(str(p) for p in paths)}")

