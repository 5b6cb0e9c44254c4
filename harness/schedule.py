"""How a run spends its time: the order in which a parallel run hands out its units of work (longest
first, by recorded times), and the compilation cache its processes share.

A parallel run (pytest-xdist, see ``conftest.py``) sends whole units to its workers: a claims module,
or a group of modules that reuse each other's memoized measurements. Sent in collection order, a
long unit that comes last leaves the other workers idle while it finishes. Sent longest first (the
LPT rule of multiprocessor scheduling: no worker finishes later than 4/3 of the optimum), the short
units fill the gaps at the end. The lengths are the seconds each test took in the runs recorded in
the tier's ``claims.json`` (``RunReport.write(measured=...)``); a unit with no recorded time (a new
claim, a harness test) goes after the timed ones, except a test marked slow, which goes first.
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
