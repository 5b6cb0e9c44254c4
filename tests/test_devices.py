"""A sweep spread over several devices gives the numbers of one device, in the same order.

The devices are the CPU split in two (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), which
must be set before JAX starts: the sweeps run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sweep import MeasurementError, measure_on_devices

ROOT = Path(__file__).resolve().parents[1]

SWEEPS = r"""
import json
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from harness import measure
from harness.kernel import kernel_diagonal
from harness.models import FullyConnected
from harness.sweep import run_sweep

assert jax.device_count() == 2, jax.devices()

def point(width, seed):
    net = FullyConnected(input_dim=4, hidden_widths=(width, width), activation="swish")
    params, fixed = measure.weights(net, seed, width, jnp.float64)
    xs = measure.inputs(seed, width, 4, 3, jnp.float64)
    est = measure.hessian_estimate(net, seed, width, jnp.float64, tol=1e-6, max_iters=60)
    leaf = jax.tree_util.tree_leaves(params)[0]
    return {
        "hessian_norm": est.spectral_norm,
        "iterations": est.iterations,
        "kernel": float(jnp.sum(kernel_diagonal(net, params, fixed, xs))),
        "device": float(jax.devices().index(next(iter(leaf.devices())))),
    }

out = {}
for name, devices in (("one", jax.devices()[:1]), ("two", None)):
    from harness import sweep
    sweep._MEMO.clear()  # measure each time, not from the first run's memo
    series = run_sweep((8,), range(6), point, devices=devices)  # one width: the order across widths is test_sweep's
    out[name] = {"widths": series.widths, "seeds": series.seeds, "values": series.values}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_two_devices_give_the_numbers_of_one_in_the_same_order():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SWEEPS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout.split("RESULT", 1)[1])
    one, two = out["one"], out["two"]
    assert (one["widths"], one["seeds"]) == (two["widths"], two["seeds"])
    assert one["values"]["device"] == [0.0] * 6
    assert two["values"]["device"] == [float(i % 2) for i in range(6)]  # seed i on device i mod 2
    for name in ("hessian_norm", "iterations", "kernel"):
        assert one["values"][name] == two["values"][name], name


def test_points_come_back_in_order_and_an_error_names_its_point():
    import jax

    def measure(width, seed):
        if seed == 3 and width == 32:
            raise ValueError("no such thing")
        return {"value": float(10 * width + seed)}

    same_device_twice = [jax.devices()[0]] * 2  # two threads: the order must not depend on them
    points = [(16, s) for s in range(5)]
    assert [m["value"] for m in measure_on_devices(points, measure, same_device_twice)] == [160.0, 161.0, 162.0, 163.0, 164.0]
    with pytest.raises(MeasurementError, match="C0 width 32, seed 3: ValueError: no such thing"):
        measure_on_devices([(32, s) for s in range(5)], measure, same_device_twice, label="C0")
