"""Sweeps: keys, and failures that name the width and seed."""

from __future__ import annotations

import jax
import pytest

from harness.sweep import MAX_SEED_FACTOR, MeasurementError, point_key, run_sweep, seeds_by_width


def test_point_keys_are_reproducible_and_independent():
    a = jax.random.normal(point_key(3, 64, "init"), (4,))
    b = jax.random.normal(point_key(3, 64, "init"), (4,))
    c = jax.random.normal(point_key(3, 64, "data"), (4,))
    d = jax.random.normal(point_key(4, 64, "init"), (4,))
    assert (a == b).all() and not (a == c).all() and not (a == d).all()
    with pytest.raises(ValueError, match="unknown random stream"):
        point_key(0, 1, "nonsense")


def test_sweep_collects_points_in_order():
    series = run_sweep([10, 20, 40], [0, 1], lambda w, s: {"y": w * (s + 1)})
    assert series.widths == [10, 10, 20, 20, 40, 40]
    assert series.values["y"] == [10, 20, 20, 40, 40, 80]
    assert series.fit("y").slope == pytest.approx(1.0)


def test_nan_names_width_and_seed():
    def measure(width, seed):
        return {"y": float("nan") if (width, seed) == (20, 1) else 1.0}

    with pytest.raises(MeasurementError, match=r"C9 width 20, seed 1: non-finite value\(s\) \{'y': nan\}"):
        run_sweep([10, 20], [0, 1], measure, label="C9")


def test_exception_inside_a_measurement_names_width_and_seed():
    def measure(width, seed):
        raise FloatingPointError("overflow")

    with pytest.raises(MeasurementError, match="width 10, seed 0: FloatingPointError: overflow"):
        run_sweep([10], [0], measure)


def test_seeds_by_width_gives_the_small_widths_more_seeds_and_shares_the_first():
    seeds = seeds_by_width((32, 64, 128, 256, 512), 100, 8)
    assert {m: len(s) for m, s in seeds.items()} == {32: 32, 64: 24, 128: 16, 256: 16, 512: 8}
    assert all(s[:8] == tuple(range(100, 108)) for s in seeds.values())
    capped = seeds_by_width((1000, 100000), 0, 2)
    assert len(capped[1000]) == 2 * MAX_SEED_FACTOR
    with pytest.raises(ValueError, match="at least one seed"):
        seeds_by_width((32, 64), 0, 0)


def test_run_sweep_takes_seeds_per_width():
    series = run_sweep((2, 4), {2: (0, 1, 2), 4: (0,)}, lambda width, seed: {"v": float(width + seed)})
    assert series.widths == [2, 2, 2, 4]
    assert series.values["v"] == [2.0, 3.0, 4.0, 4.0]


def test_a_batched_sweep_gives_the_series_of_the_point_by_point_sweep():
    import numpy as np

    from harness.sweep import run_batched_sweep

    seeds = {10: (0, 1, 2, 3), 20: (0, 1)}
    one = run_sweep([10, 20], seeds, lambda w, s: {"y": w + s / 10})
    both = run_batched_sweep([10, 20], seeds, lambda w, ss: {"y": w + np.asarray(ss) / 10})
    assert (both.widths, both.seeds, both.values) == (one.widths, one.seeds, one.values)
    same_device_twice = [jax.devices()[0]] * 2  # every second seed in the other thread
    spread = run_batched_sweep([10, 20], seeds, lambda w, ss: {"y": w + np.asarray(ss) / 10}, devices=same_device_twice)
    assert (spread.widths, spread.seeds, spread.values) == (one.widths, one.seeds, one.values)
    with pytest.raises(MeasurementError, match="B width 20, seed 1: non-finite"):
        run_batched_sweep([10, 20], seeds, lambda w, ss: {"y": np.where((w == 20) & (np.asarray(ss) == 1), np.nan, 1.0)}, label="B")
    with pytest.raises(MeasurementError, match="B width 10, seeds 0..3: ValueError: bad"):
        run_batched_sweep([10], seeds, lambda w, ss: (_ for _ in ()).throw(ValueError("bad")), label="B")


def test_kernel_diagonals_of_a_batch_equal_each_network_alone_to_round_off():
    import jax.numpy as jnp
    import numpy as np

    from harness import measure
    from harness.kernel import kernel_diagonal
    from harness.models import FullyConnected

    jax.config.update("jax_enable_x64", True)
    net = FullyConnected(5, (24, 24), "swish")
    seeds = list(range(70))  # more than one batch, the last one padded
    batched = measure.kernel_diagonals(net, seeds, 24, 3, jnp.float64)
    alone = np.stack([
        np.asarray(kernel_diagonal(net, *measure.weights(net, s, 24, jnp.float64), measure.inputs(s, 24, 5, 3, jnp.float64)))
        for s in seeds
    ])
    assert batched.shape == alone.shape == (70, 3)
    assert np.max(np.abs(batched - alone) / alone) <= 100 * np.finfo(np.float64).eps


@pytest.mark.parametrize("batch_bytes", [8 * 2**20, 1])  # batches of 3, and one network at a time
def test_tangent_kernels_of_a_batch_equal_each_network_alone_to_round_off(batch_bytes, monkeypatch):
    import jax.numpy as jnp
    import numpy as np

    from harness import measure
    from harness.kernel import tangent_kernel
    from harness.models import FullyConnected

    monkeypatch.setattr(measure, "BATCH_BYTES", batch_bytes)
    net = FullyConnected(4, (16,), "tanh")
    xs = measure.inputs(99, 0, 4, 5, jnp.float64)
    kernel = lambda p, f, _, x: tangent_kernel(net, p, f, x, method="structured")
    batched = measure.over_networks("test-kernel", net, kernel, range(3), 16, jnp.float64, shared=xs)
    alone = np.stack([np.asarray(tangent_kernel(net, *measure.weights(net, s, 16, jnp.float64), xs, method="structured")) for s in range(3)])
    assert batched.shape == (3, 5, 5)
    assert np.max(np.abs(batched - alone)) <= 100 * np.finfo(np.float64).eps * np.max(np.abs(alone))
