"""harness.resources: the estimates read only keys the tiers define, and count the real networks."""

from __future__ import annotations

import dataclasses

import pytest

from harness.architectures import build_architecture
from harness.resources import CONV_ARCHITECTURES, estimates, paper_tier_refusal, summary
from harness.tiers import TIER_NAMES, get_tier


@pytest.mark.parametrize("name", TIER_NAMES)
def test_every_key_the_estimates_read_exists_in_the_tier(name):
    """Grids are read by indexing, never with a default: a key no tier defines is a KeyError here."""
    tier = get_tier(name)
    rows = summary(tier)["families"]
    assert rows and all(r["params"] > 0 and r["peak_GiB"] >= 0 for r in rows)


def test_a_missing_grid_key_is_an_error_not_a_default():
    tier = get_tier("default")
    grid = {k: v for k, v in tier.grid("architectures").items() if k != "cnn_input"}
    broken = dataclasses.replace(tier, groups={**tier.groups, "architectures": grid})
    with pytest.raises(KeyError, match="cnn_input"):
        estimates(broken)


@pytest.mark.parametrize("name", TIER_NAMES)
def test_c6_estimates_count_the_networks_c6_builds(name):
    tier = get_tier(name)
    grid = tier.grid("architectures")
    c6 = [e for e in estimates(tier) if e.claims == "C6"]
    assert len(c6) == len(CONV_ARCHITECTURES)
    for estimate, architecture in zip(c6, CONV_ARCHITECTURES):
        largest = build_architecture(architecture, max(grid["widths"][architecture]), grid)
        assert estimate.params == largest.num_params
        assert str(tuple(grid[f"{architecture}_input"])) in estimate.network


def test_paper_tier_refusal_is_one_line():
    text = paper_tier_refusal(get_tier("paper"))
    assert "\n" not in text and "GPU" in text
