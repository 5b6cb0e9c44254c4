"""How a run spends its time: which worker of a parallel run takes which unit of work (a plan
from recorded times), and the compilation cache its processes share.

A parallel run (pytest-xdist, see ``conftest.py``) sends whole units to its workers: a claims module,
or a group of modules that reuse each other's memoized measurements. Sent in collection order, a
long unit that comes last leaves the other workers idle while it finishes. The controller splits the
units between the workers before the run (``plan_units``: longest first to the least loaded worker,
the LPT rule, then improved by moves and swaps), each worker's list longest first, so the short
units fill the gaps at the end. The lengths are the seconds each test took in the runs recorded in
the tier's ``claims.json`` (``RunReport.write(measured=...)``; ``unit_costs`` guesses those with
none, a new claim or a harness test). The workers also collect in the longest-first order
(``longest_units_first``), so a run under another scheduler (``--dist loadscope``) gains from it too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any


def recorded_test_seconds(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per test node id over a report's runs (``claims.json["runs"]``), the newest run's
    figure where several ran the same test."""
    seconds: dict[str, float] = {}
    for meta in sorted(runs.values(), key=lambda m: m.get("date", "")):
        seconds.update(meta.get("measured", {}).get("test_seconds", {}))
    return seconds


def recorded_test_seconds_in(report_path: Path) -> dict[str, float]:
    """``recorded_test_seconds`` of a ``claims.json``; {} when it does not exist or is unreadable."""
    from harness.records import load_records

    try:
        return recorded_test_seconds(load_records(report_path).get("runs", {}))
    except (OSError, ValueError):
        return {}


def longest_units_first(
    nodeids: Sequence[str],
    unit_of: Callable[[str], str],
    seconds: Mapping[str, float],
    slow: Collection[str] = (),
) -> list[str]:
    """``nodeids`` regrouped so that each unit's tests are contiguous: first the units with no
    recorded time that hold a test in ``slow`` (marked slow: assumed long, so started first), then
    the timed units in decreasing order of their recorded seconds (the sum over their tests), then
    the other untimed units, those with more tests first (xdist's own order). Ties keep the order in
    which units first appear; within a unit the collection order is kept."""
    units: dict[str, list[str]] = {}
    for nodeid in nodeids:
        units.setdefault(unit_of(nodeid), []).append(nodeid)
    first_seen = {unit: i for i, unit in enumerate(units)}

    def cost(unit: str) -> float:
        return sum(seconds.get(n, 0.0) for n in units[unit])

    timed = sorted((u for u in units if cost(u) > 0), key=lambda u: (-cost(u), first_seen[u]))
    untimed = [u for u in units if cost(u) <= 0]
    slow_first = [u for u in untimed if any(n in slow for n in units[u])]
    rest = sorted((u for u in untimed if u not in slow_first), key=lambda u: (-len(units[u]), first_seen[u]))
    return [nodeid for unit in slow_first + timed + rest for nodeid in units[unit]]


def unit_costs(
    nodeids: Sequence[str],
    unit_of: Callable[[str], str],
    seconds: Mapping[str, float],
    slow: Collection[str] = (),
) -> dict[str, float]:
    """Expected seconds per unit, in order of first appearance: the recorded seconds of its tests;
    a unit with none recorded counts the timed tests' mean per test for each of its tests (1 s when
    nothing is timed), or, holding a test marked slow, as much as the longest timed unit."""
    units: dict[str, list[str]] = {}
    for nodeid in nodeids:
        units.setdefault(unit_of(nodeid), []).append(nodeid)
    timed = [n for n in nodeids if seconds.get(n, 0.0) > 0]
    per_test = sum(seconds[n] for n in timed) / len(timed) if timed else 1.0
    costs = {unit: sum(seconds.get(n, 0.0) for n in tests) for unit, tests in units.items()}
    longest = max(costs.values(), default=0.0)
    for unit, tests in units.items():
        if costs[unit] <= 0:
            is_slow = any(n in slow for n in tests)
            costs[unit] = longest if is_slow and longest > 0 else per_test * len(tests)
    return costs


def plan_units(costs: Mapping[str, float], workers: int) -> list[list[str]]:
    """The units of a parallel run split among ``workers``, each list longest first, to make the
    last worker finish as early as the recorded ``costs`` (seconds per unit) allow.

    LPT (longest first to the least loaded worker) is within 4/3 of the best split; a local search
    then moves one unit, or swaps two, from the most loaded worker to another while that shortens
    the longer of the two (on the claims' recorded units at 9c31d03, 2 workers: LPT 575.7 s, the
    plan 572.3 s, the best split). Ties keep the order of ``costs``: the same costs, the same plan.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    order = sorted(costs, key=lambda unit: -costs[unit])  # sorted() is stable: ties keep their order
    lists: list[list[str]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for unit in order:
        k = loads.index(min(loads))
        lists[k].append(unit)
        loads[k] += costs[unit]
    while _improve_once(lists, loads, costs):  # each step lowers the sum of squared loads: it ends
        pass
    rank = {unit: i for i, unit in enumerate(order)}
    return [sorted(units, key=rank.__getitem__) for units in lists]


def _improve_once(lists: list[list[str]], loads: list[float], costs: Mapping[str, float]) -> bool:
    """One move or swap between the most loaded list and another that lowers the larger of their two
    loads (so the makespan never grows and the search ends); False when there is none."""
    top = loads.index(max(loads))
    for other in range(len(lists)):
        if other == top:
            continue
        for a in lists[top]:
            for b in [None, *lists[other]]:
                delta = costs[a] - (costs[b] if b is not None else 0.0)
                if delta > 0 and loads[other] + delta < loads[top] - 1e-9:
                    lists[top].remove(a)
                    lists[other].append(a)
                    if b is not None:
                        lists[other].remove(b)
                        lists[top].append(b)
                    loads[top] -= delta
                    loads[other] += delta
                    return True
    return False


def planned_scheduling(config, log, unit_of: Callable[[str], str], seconds: Mapping[str, float]):
    """A pytest-xdist scheduler (``--dist load``) that sends whole units (``unit_of`` a test id) to
    the workers by ``plan_units`` over ``unit_costs`` of the recorded ``seconds``.

    Each worker gets the units the plan gave it, one at a time, the next one only as it starts the
    last test of its current unit (xdist's default sends it when two tests are left, so a worker can
    take a long unit while it still has minutes of work). A worker whose own list is done takes the
    shortest unit left in the list with the most seconds left, so a plan made from times that no
    longer hold (another machine, a warm cache) still ends with every worker busy.
    """
    from xdist.scheduler import LoadScopeScheduling

    class PlannedScheduling(LoadScopeScheduling):
        plan: dict | None = None
        costs: dict[str, float] = {}

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _reschedule(self, node) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) > 1:  # the worker holds its last test
                return  # until it has the next one, so one pending test is the latest to send it
            self._assign_work_unit(node)

        def _next_unit(self, node) -> str:
            if self.plan is None:
                self.costs = unit_costs(self.collection, unit_of, seconds)
                self.plan = dict(zip(self.assigned_work, plan_units(self.costs, len(self.assigned_work))))
            own = [unit for unit in self.plan.get(node, []) if unit in self.workqueue]
            if own:
                return own[0]
            left = {n: [u for u in units if u in self.workqueue] for n, units in self.plan.items()}
            donor = max(left, key=lambda n: sum(self.costs[u] for u in left[n]))
            return left[donor][-1] if left[donor] else next(iter(self.workqueue))

        def _assign_work_unit(self, node) -> None:
            unit = self._next_unit(node)
            work = self.workqueue.pop(unit)
            self.assigned_work.setdefault(node, {})[unit] = work
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(n) for n, done in work.items() if not done])

    return PlannedScheduling(config, log)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --------------------------------------------------------------------------------------------------
# The compiled code a run's processes share
#: Environment variable: a directory for JAX's persistent compilation cache, or "off".
CACHE_ENV_VAR = "LINEARITY_JAX_CACHE"


def compilation_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """Where JAX keeps compiled programs between processes and runs, or None for no cache.

    A third or more of a CPU run is XLA compiling the estimators for each new shape (measured: C4's
    tanh depth-2 tests took 46 s of CPU time with an empty cache and 29 s with a full one). With a
    cache the workers of a parallel run compile a shape once between them, and a second run (a
    robustness study, a rerun after a fix) compiles almost nothing. A cached program is the same
    executable XLA would build again, so the numbers do not change. ``$LINEARITY_JAX_CACHE`` names
    the directory, or ``off``; by default ``$XDG_CACHE_HOME/linearity-claims/jax`` (``~/.cache``).
    """
    value = environ.get(CACHE_ENV_VAR, "").strip()
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "linearity-claims" / "jax"


# --------------------------------------------------------------------------------------------------
# Seconds spent compiling
#: JAX's monitoring events that time one step of turning a traced function into an executable.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileClock:
    """Seconds this process has spent tracing, lowering and compiling JAX programs since ``start``.

    A run's wall time is part compilation (a new shape of every estimator) and part arithmetic;
    only the second grows with seeds, so sizing a sweep by its measured seconds needs the split. A
    program loaded from the persistent cache costs its retrieval, not a compilation.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.by_event = dict.fromkeys(COMPILE_EVENTS, 0.0)
        self._listening = False

    def _listen(self, event: str, duration: float, **_kwargs) -> None:
        if event in COMPILE_EVENTS:
            self.seconds += float(duration)
            self.by_event[event] += float(duration)

    def start(self) -> CompileClock:
        if not self._listening:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(self._listen)
            self._listening = True
        return self
