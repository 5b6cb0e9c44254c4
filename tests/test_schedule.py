"""The longest-first order of a parallel run's units, and the measured costs it reads."""

from __future__ import annotations

import itertools
import math
import types

from harness.summary import claim_ids_named, estimated_vs_measured
from harness.schedule import longest_units_first, plan_units, planned_scheduling, recorded_test_seconds, unit_costs


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


def test_the_plan_beats_lpt_where_lpt_is_not_optimal_and_keeps_every_unit_once():
    # The classic case: LPT puts 3+2+2 on one worker and 3+2 on the other (7 / 5); the best is 6 / 6.
    costs = {"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0, "e": 2.0}
    lists = plan_units(costs, 2)
    assert sorted(u for units in lists for u in units) == sorted(costs)
    assert sorted(sum(costs[u] for u in units) for units in lists) == [6.0, 6.0]
    for units in lists:  # each list longest first
        assert [costs[u] for u in units] == sorted((costs[u] for u in units), reverse=True)
    assert plan_units(costs, 2) == lists  # the same costs give the same plan
    assert plan_units(costs, 1) == [["a", "b", "c", "d", "e"]]
    assert sorted(len(units) for units in plan_units(costs, 7)) == [0, 0, 1, 1, 1, 1, 1]


def test_the_plan_of_the_recorded_claims_is_the_best_split():
    # The claims' units at 9c31d03 (seconds): LPT alone finishes at 575.7 s, the best split at 572.3 s.
    costs = {"sec4": 359.0, "sec3": 257.4, "appH": 208.7, "fig1": 146.0, "ntk": 49.6, "appB": 33.1,
             "sec2": 32.0, "explo": 28.6, "fig2": 28.0}
    total = sum(costs.values())
    subsets = (c for r in range(len(costs) + 1) for c in itertools.combinations(costs, r))
    best = min(max(load, total - load) for load in (sum(costs[u] for u in c) for c in subsets))
    loads = [sum(costs[u] for u in units) for units in plan_units(costs, 2)]
    assert math.isclose(max(loads), best) and best < 575.7 - 3


def test_unit_costs_guess_the_untimed_units():
    nodeids = ["a::1", "a::2", "b::1", "c::1", "c::2", "d::1"]
    seconds = {"a::1": 4.0, "a::2": 6.0, "b::1": 2.0}
    costs = unit_costs(nodeids, _unit, seconds, slow={"d::1"})
    # c: two untimed tests at the timed mean of 4 s each; d: marked slow, as long as the longest (a).
    assert costs == {"a": 10.0, "b": 2.0, "c": 8.0, "d": 10.0}
    assert unit_costs(["x::1", "x::2"], _unit, {}) == {"x": 2.0}


class _Worker:
    """What the scheduler sees of an xdist worker: the tests it was sent."""

    def __init__(self, name):
        self.gateway = types.SimpleNamespace(id=name)
        self.sent, self.shutting_down = [], False

    def send_runtest_some(self, indices):
        self.sent.append(list(indices))

    def shutdown(self):
        self.shutting_down = True


def _scheduler(seconds):
    config = types.SimpleNamespace(getvalue=lambda name: ["2*popen"] if name == "tx" else None,
                                   option=types.SimpleNamespace(loadscopereorder=False))
    sched = planned_scheduling(config, None, _unit, seconds)
    workers = [_Worker("w0"), _Worker("w1")]
    for worker in workers:
        sched.add_node(worker)
        sched.add_node_collection(worker, list(seconds))
    sched.schedule()
    return sched, workers


def test_the_scheduler_sends_each_worker_its_planned_units_one_at_a_time():
    seconds = {"big::1": 50.0, "big::2": 50.0, "mid::1": 40.0, "mid::2": 30.0, "small::1": 20.0, "tiny::1": 10.0}
    sched, (w0, w1) = _scheduler(seconds)
    # The plan is big | mid, small, tiny (100 s each); no second unit while two tests are pending.
    assert w0.sent == [[0, 1]] and w1.sent == [[2, 3]]
    sched.mark_test_complete(w1, 2)  # one test left, which w1 holds until it has the next unit
    assert w1.sent[-1] == [4]
    sched.mark_test_complete(w1, 3)
    assert w1.sent[-1] == [5]
    for index in (4, 5, 0, 1):
        sched.mark_test_complete(w1 if index > 3 else w0, index)
    assert w0.shutting_down and w1.shutting_down and sched.tests_finished


def test_a_worker_done_with_its_list_takes_the_shortest_unit_left_in_the_longest():
    seconds = {"a::1": 30.0, "a::2": 30.0, "b::1": 20.0, "b::2": 20.0, "c::1": 25.0, "c::2": 25.0,
               "d::1": 25.0, "d::2": 25.0, "e::1": 5.0, "e::2": 5.0}
    sched, (w0, w1) = _scheduler(seconds)
    assert w0.sent == [[0, 1]] and w1.sent == [[4, 5]]  # the plan: a, b, e | c, d (110 | 100 s)
    sched.mark_test_complete(w1, 4)
    assert w1.sent[-1] == [6, 7]
    # w1 ran faster than recorded: done with c and d while w0 is still in a, it takes e, the
    # shortest unit left in w0's list, then b.
    for index in (5, 6):
        sched.mark_test_complete(w1, index)
    assert w1.sent[-1] == [8, 9]
    for index in (7, 8):
        sched.mark_test_complete(w1, index)
    assert w1.sent[-1] == [2, 3] and w0.sent == [[0, 1]]
