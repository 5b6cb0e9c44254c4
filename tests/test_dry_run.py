"""The paper tier's dry run (tier "paper-dry"): the paper tier's code paths on the smallest widths,
and the round-off limits and non-finite checks that make a float32 run fail for the right reason."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from harness.fit import round_off_limit
from harness.records import judgement, non_finite_fields
from harness.tiers import DRY_RUN_SEEDS, DRY_RUN_WIDTHS, get_tier


def test_the_dry_run_keeps_the_paper_tiers_settings_on_its_smallest_widths():
    paper, dry = get_tier("paper"), get_tier("paper-dry")
    assert dry.dtype == paper.dtype == "float32"
    assert (dry.lanczos_tol, dry.lanczos_max_iters, dry.ball_radius, dry.input_dim) == (
        paper.lanczos_tol, paper.lanczos_max_iters, paper.ball_radius, paper.input_dim)
    assert dry.shallow_widths == tuple(sorted(paper.shallow_widths)[:DRY_RUN_WIDTHS])
    assert dry.deep_widths == {d: tuple(sorted(w)[:DRY_RUN_WIDTHS]) for d, w in paper.deep_widths.items()}
    assert dry.n_seeds == dry.n_hessian_seeds == DRY_RUN_SEEDS
    assert not dry.judged and paper.judged
    for group, grid in paper.groups.items():
        cut = dry.grid(group)
        assert type(cut) is type(grid), group  # every field the claims read is still there
        for key, value in dataclasses.asdict(grid).items():
            got = getattr(cut, key)
            if key == "linear_model_widths":  # C16's partner must be one of Fig. 1's runs
                assert set(got) <= set(cut.fig1_widths) and got
            elif key == "deep_head_grids":  # a head's own grid: the cut deep grid, like the other heads'
                assert got == tuple((head, dry.deep_widths[2]) for head, _ in value) and got, (group, key)
            elif key.endswith("widths") and isinstance(value, dict):
                assert got == {k: tuple(sorted(v)[:DRY_RUN_WIDTHS]) for k, v in value.items()}
            elif key.endswith("widths"):
                assert got == tuple(sorted(value)[:DRY_RUN_WIDTHS]), (group, key)
            elif "seed" not in key and key not in ("curve_width", "bottleneck_wide", "bottleneck_sizes"):
                assert got == value, (group, key)  # dtypes, caps, tolerances, inputs, architectures
    training = dry.grid("training")
    assert training.dtype == paper.grid("training").dtype
    assert training.curve_width <= max(training.fig1_widths) >= training.bottleneck_wide
    assert all(b < training.bottleneck_wide for b in training.bottleneck_sizes)
    # Every seed count is DRY_RUN_SEEDS (at most) and the rest of the paper tier is untouched.
    counts = [v for g in dry.groups.values() for k, v in dataclasses.asdict(g).items() if k.endswith("seeds")]
    assert counts and all(v <= max(DRY_RUN_SEEDS, 2) for v in counts)
    assert get_tier("paper") == paper and paper.grid("training").seeds > DRY_RUN_SEEDS


def test_round_off_limits_are_in_the_runs_dtype():
    assert round_off_limit("float64") == pytest.approx(1000 * 2.0**-52)
    assert round_off_limit(np.float32) == pytest.approx(1000 * 2.0**-23)
    # The float32 error C1 and C7 measured on the CPU (2e-7 to 6e-7) passes a float32 limit and would
    # fail the float64 one, which is what refuted them before the limits followed the dtype.
    assert 6e-7 < round_off_limit("float32") and 6e-7 > round_off_limit("float64")


def _scaling(**changes):
    record = {"claim": "C2", "variant": "v", "kind": "scaling", "verdict": "confirmed", "reason": "r",
              "slope": -0.5, "stderr": 0.01, "points": [{"width": 4, "seed": 0, "value": 1.0}]}
    return {**record, **changes}


def test_a_non_finite_measurement_fails_at_every_tier_even_when_exploratory():
    assert non_finite_fields(_scaling()) == []
    nan_point = _scaling(points=[{"width": 4, "seed": 0, "value": math.nan}, {"width": 8, "seed": 0, "value": 1.0}])
    assert non_finite_fields(nan_point) == ["value at 1 of 2 points"]
    assert non_finite_fields(_scaling(slope=math.nan, stderr=math.inf)) == ["slope", "stderr"]
    for judged in (True, False):
        outcome, text = judgement([_scaling(verdict="exploratory", slope=math.nan)], judged)
        assert outcome == "fail" and "non-finite slope" in text
    # An infinite worst value of a bound is a measurement (a singular matrix's condition number);
    # a NaN worst is not.
    bound = {"claim": "C19", "variant": "pd", "kind": "bound", "verdict": "refuted", "reason": "r"}
    assert non_finite_fields({**bound, "worst": math.inf}) == []
    assert non_finite_fields({**bound, "worst": math.nan}) == ["worst"]


def test_the_dry_run_skips_unconfirmed_slopes_but_fails_identities():
    dry = get_tier("paper-dry")
    slope = _scaling(verdict="inconclusive")
    identity = {**_scaling(verdict="refuted"), "kind": "bound", "points": []}
    assert judgement([slope], dry.judged)[0] == "skip"
    assert judgement([slope, identity], dry.judged)[0] == "fail"
    assert judgement([slope], dataclasses.replace(dry, name="paper").judged)[0] == "fail"


def test_a_deep_head_with_a_grid_of_its_own_is_swept_and_seeded_on_it():
    from harness.networks import section4_seeds, section4_widths

    paper, default = get_tier("paper"), get_tier("default")
    assert section4_widths(paper, "deep", "sigmoid") == (1024, 4096, 10000)
    assert set(section4_seeds(paper, "deep", "sigmoid", 0)) == {1024, 4096, 10000}
    assert section4_widths(paper, "deep", "swish") == paper.deep_widths[2]
    assert section4_widths(default, "deep", "sigmoid") == default.deep_widths[2]
    heads = {"swish", "tanh", "sigmoid", "softmax"}
    for name in ("smoke", "default", "paper"):
        assert {head for head, _ in get_tier(name).grid("sec4").deep_head_grids} <= heads
