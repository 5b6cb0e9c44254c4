"""harness.resources: the estimates read only keys the tiers define, and count the real networks."""

from __future__ import annotations

import dataclasses

import pytest

from harness.architectures import build_architecture
from harness.resources import CONV_ARCHITECTURES, estimates, paper_tier_refusal, summary
from harness.tiers import TIER_NAMES, ArchitecturesGrid, get_tier


@pytest.mark.parametrize("name", TIER_NAMES)
def test_the_estimates_read_the_tiers_typed_grids(name):
    """Grids are typed records: every field the estimates read exists in every tier that has the group."""
    tier = get_tier(name)
    rows = summary(tier)["families"]
    assert rows and all(r["params"] > 0 and r["peak_GiB"] >= 0 for r in rows)


def test_a_missing_or_misspelt_grid_field_is_an_error_where_the_tier_is_defined():
    tier = get_tier("default")
    fields = dataclasses.asdict(tier.grid("architectures"))
    with pytest.raises(TypeError, match="cnn_input"):
        ArchitecturesGrid(**{k: v for k, v in fields.items() if k != "cnn_input"})
    with pytest.raises(TypeError, match="cnn_inputs"):
        ArchitecturesGrid(**fields, cnn_inputs=(2, 16))
    with pytest.raises(TypeError, match="must be a ArchitecturesGrid, got dict"):
        dataclasses.replace(tier, groups={**tier.groups, "architectures": fields})
    with pytest.raises(KeyError, match="unknown claim group 'sec5'"):
        dataclasses.replace(tier, groups={**tier.groups, "sec5": tier.grid("sec4")})
    with pytest.raises(KeyError, match="unknown sized sweep 'C4 tanh-depth4'"):
        dataclasses.replace(tier, sweep_seeds={"C4 tanh-depth4": 8})
    with pytest.raises(KeyError, match="no input shape for architecture 'relu'"):
        tier.grid("architectures").input_shape("relu")


@pytest.mark.parametrize("name", TIER_NAMES)
def test_c6_estimates_count_the_networks_c6_builds(name):
    tier = get_tier(name)
    grid = tier.grid("architectures")
    c6 = [e for e in estimates(tier) if e.claims == "C6"]
    assert len(c6) == len(CONV_ARCHITECTURES)
    for estimate, architecture in zip(c6, CONV_ARCHITECTURES):
        largest = build_architecture(architecture, max(grid.widths[architecture]), grid)
        assert estimate.params == largest.num_params
        assert str(tuple(grid.input_shape(architecture))) in estimate.network


def test_paper_tier_refusal_is_one_line():
    text = paper_tier_refusal(get_tier("paper"))
    assert "\n" not in text and "GPU" in text
