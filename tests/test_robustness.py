"""The robustness study: seeds far from 0, aggregation of several runs, the file it writes."""

from __future__ import annotations

import json

import pytest

from harness import robustness


def _run(seed, verdict="confirmed", slope=-0.5, p=0.9995):
    return {
        "tier": "default",
        "runs": {"r": {"base_seed": seed}},
        "records": [
            {"claim": "C4", "variant": "tanh-depth2-R0", "kind": "scaling", "verdict": verdict, "slope": slope, "p_confirm": p},
            {"claim": "C1", "variant": "tanh-d1", "kind": "bound", "verdict": "confirmed"},
            {"claim": "X1", "variant": "relu", "kind": "scaling", "verdict": "exploratory", "slope": 0.3},
        ],
    }


def test_base_seeds_are_far_from_zero_and_apart():
    assert robustness.base_seeds(5) == [10007, 20014, 30021, 40028, 50035]
    assert robustness.base_seeds(2, first=6) == [60042, 70049]
    with pytest.raises(ValueError):
        robustness.base_seeds(0)
    with pytest.raises(ValueError, match="--first"):
        robustness.base_seeds(3, first=0)


def test_aggregate_counts_confirmations_slope_spread_and_the_weakest_power():
    runs = [_run(10007), _run(20014, slope=-0.4, p=0.8), _run(30021, verdict="inconclusive", slope=-0.3, p=0.3)]
    rows = {(r["claim"], r["variant"]): r for r in robustness.aggregate(runs)}
    assert set(rows) == {("C4", "tanh-depth2-R0"), ("C1", "tanh-d1")}  # exploratory records are not judged
    c4 = rows[("C4", "tanh-depth2-R0")]
    assert c4["confirmed"] == 2 and c4["runs"] == 3
    assert c4["slope_min"] == -0.5 and c4["slope_max"] == -0.3 and c4["slope_sd"] == pytest.approx(0.1)
    assert c4["min_p_confirm"] == 0.3
    text = robustness.markdown(list(rows.values()), [10007, 20014, 30021], "default", "python -m harness.robustness")
    assert "1 of 2 judged records were confirmed in every run" in text
    assert "Not always confirmed: C4 tanh-depth2-R0" in text and "| C4 | tanh-depth2-R0 | 2 / 3 |" in text


def test_main_aggregates_existing_runs_and_exits_by_the_counts(tmp_path):
    roots = []
    for seed in (10007, 20014):
        root = tmp_path / f"seed-{seed}"
        (root / "default").mkdir(parents=True)
        (root / "default" / "claims.json").write_text(json.dumps(_run(seed)))
        roots.append(str(root))
    out = tmp_path / "out"
    assert robustness.main(["--from", *roots, "--out", str(out)]) == 0
    text = (out / "robustness.md").read_text()
    assert "base seeds 10007, 20014" in text and "2 of 2 judged records were confirmed in every run" in text
    data = json.loads((out / "robustness.json").read_text())
    assert data["seeds"] == [10007, 20014]
    (tmp_path / "seed-20014" / "default" / "claims.json").write_text(json.dumps(_run(20014, verdict="refuted")))
    assert robustness.main(["--from", *roots, "--out", str(out)]) == 1
