"""The longest-first order of a parallel run's units, and the measured costs it reads."""

from __future__ import annotations

import math

from harness.summary import claim_ids_named, estimated_vs_measured
from harness.schedule import longest_units_first, recorded_test_seconds


def _unit(nodeid: str) -> str:
    return nodeid.split("::")[0]


def test_units_go_longest_first_and_stay_contiguous():
    nodeids = ["a.py::t1", "b.py::t1", "a.py::t2", "c.py::t1", "d.py::t1", "b.py::t2"]
    seconds = {"a.py::t1": 5.0, "a.py::t2": 5.0, "b.py::t1": 30.0, "c.py::t1": 12.0}
    order = longest_units_first(nodeids, _unit, seconds)
    # b (30 s) before c (12 s) before a (10 s in two tests); d has no recorded time and goes last.
    assert order == ["b.py::t1", "b.py::t2", "c.py::t1", "a.py::t1", "a.py::t2", "d.py::t1"]
    # Without recorded times the units with more tests go first, then in order of first appearance.
    assert longest_units_first(nodeids, _unit, {}) == ["a.py::t1", "a.py::t2", "b.py::t1", "b.py::t2", "c.py::t1", "d.py::t1"]
    assert longest_units_first(["c::1", "a::1", "a::2"], _unit, {}) == ["a::1", "a::2", "c::1"]


def test_longest_first_beats_collection_order_on_two_workers():
    """The reason for the order: greedy assignment of units to the first free worker."""
    costs = {"u1": 10.0, "u2": 10.0, "u3": 10.0, "u4": 30.0}

    def makespan(order):
        workers = [0.0, 0.0]
        for unit in order:
            workers[workers.index(min(workers))] += costs[unit]
        return max(workers)

    ordered = longest_units_first(list(costs), lambda n: n, costs)
    assert ordered[0] == "u4"
    assert makespan(list(costs)) == 40.0 and makespan(ordered) == 30.0


def test_recorded_seconds_come_from_the_newest_run_that_ran_the_test():
    runs = {
        "old": {"date": "2026-01-01T00:00:00", "measured": {"test_seconds": {"x::a": 10.0, "x::b": 4.0}}},
        "new": {"date": "2026-02-01T00:00:00", "measured": {"test_seconds": {"x::a": 20.0}}},
        "none": {"date": "2026-03-01T00:00:00"},
    }
    assert recorded_test_seconds(runs) == {"x::a": 20.0, "x::b": 4.0}


def test_resource_families_name_claim_ranges():
    assert claim_ids_named("C11, C12, C14-C16") == {"C11", "C12", "C14", "C15", "C16"}
    assert claim_ids_named("C4 depth 3") == {"C4"}
    assert claim_ids_named("C8 deep, C10") == {"C8", "C10"}


def test_estimates_are_compared_per_group_of_claims_that_share_a_family():
    families = [
        {"claims": "C4 depth 3", "cpu_hours": 1 / 3600},
        {"claims": "C4 depth 2", "cpu_hours": 1 / 3600},
        {"claims": "C8 deep, C10", "cpu_hours": 2 / 3600},
        {"claims": "C9, C10", "cpu_hours": 3 / 3600},
        {"claims": "C17", "cpu_hours": 0.0},
    ]
    seconds = {
        "claims/test_sec3_linear_output.py::test_c4_deep[tanh]": 6.0,
        "claims/test_sec4_nonlinear_output.py::test_c8_x[a]": 5.0,
        "claims/test_sec4_table1.py::test_c10_row[b]": 5.0,
        "claims/test_sec4_bottleneck.py::test_c9_b[mb1]": 10.0,
        "claims/test_sec2_hessian_bounds_kernel.py::test_c17_bound": 1.0,
        "claims/test_sec3_linear_output.py::test_c2_shallow[tanh]": 99.0,  # no family: not counted
    }
    rows = {r["claims"]: r for r in estimated_vs_measured(families, seconds)}
    assert set(rows) == {"C4", "C8, C9, C10", "C17"}
    assert math.isclose(rows["C4"]["estimated_s"], 2.0) and rows["C4"]["measured_s"] == 6.0 and math.isclose(rows["C4"]["ratio"], 3.0)
    assert math.isclose(rows["C8, C9, C10"]["estimated_s"], 5.0) and rows["C8, C9, C10"]["measured_s"] == 20.0
    assert rows["C17"]["ratio"] == math.inf


def test_the_compilation_cache_directory():
    from pathlib import Path

    from harness.schedule import compilation_cache_dir

    assert compilation_cache_dir({"HOME": "/h"}) == Path("/h/.cache/linearity-claims/jax")
    assert compilation_cache_dir({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x/linearity-claims/jax")
    assert compilation_cache_dir({"LINEARITY_JAX_CACHE": "/c", "HOME": "/h"}) == Path("/c")
    assert compilation_cache_dir({"LINEARITY_JAX_CACHE": "OFF", "HOME": "/h"}) is None


def test_an_untimed_slow_test_starts_first():
    nodeids = ["a::1", "b::1", "c::1"]
    order = longest_units_first(nodeids, _unit, {"a::1": 50.0}, slow={"c::1"})
    assert order == ["c::1", "a::1", "b::1"]
    # Once timed, it takes its place by its time.
    assert longest_units_first(nodeids, _unit, {"a::1": 50.0, "c::1": 5.0}, slow={"c::1"}) == ["a::1", "c::1", "b::1"]


def test_the_compile_clock_counts_a_compilation_once_and_not_a_cached_call():
    import jax
    import jax.numpy as jnp

    from harness.schedule import CompileClock

    clock = CompileClock().start()
    fn = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) * 3.0) @ x)
    first, second = jnp.arange(7.0), jnp.ones(7)
    before = clock.seconds
    fn(first).block_until_ready()
    compiled = clock.seconds - before
    fn(second).block_until_ready()
    assert compiled > 0
    assert clock.seconds - before == compiled


def test_the_resources_section_names_the_seconds_spent_compiling():
    from harness.summary import resources_section_from

    estimate = {"peak_GiB": 0.5, "cpu_hours": 0.01, "gpu_minutes": 0.1, "families": [
        {"claims": "C2", "largest_network": "shallow", "params": 10.0, "peak_GiB": 0.1, "cpu_hours": 0.01}]}
    seconds = {"claims/test_sec3_linear_output.py::test_c2_x[a]": 30.0, "tests/test_fit.py::test_y": 5.0}
    run = {"run_id": "r", "date": "2026-12-02", "resource_estimates": estimate,
           "measured": {"test_seconds": seconds, "peak_rss_GiB": 1.0, "compile_seconds": {
               "claims/test_sec3_linear_output.py::test_c2_x[a]": 12.0, "tests/test_fit.py::test_y": 1.0}}}
    assert "30 s in the claims' tests (12 s of them tracing and compiling)" in resources_section_from({"r": run})
    del run["measured"]["compile_seconds"]  # a report written before compile seconds were recorded
    assert "30 s in the claims' tests, against" in resources_section_from({"r": run})
