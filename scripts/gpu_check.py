"""The paper tier's largest configurations at one seed: time, peak memory, HVP / gradient cost.

Run by ``scripts/gpu-check.sh`` on a machine with a GPU (it installs the ``cuda`` extra first). Each
configuration is one sweep point of the paper tier at its largest size, measured the way the claims
measure it (``harness.hessian``, ``harness.train``), at seed 0:

  C4 depth 3, m = 1e4      one Lanczos spectral norm of the Hessian (~2e8 weights, float32)
  Fig. 2, m = 1e4, m_b = 1e3   one training run of the bottleneck net [m, m_b, m] (C13, float64)
  Fig. 1, m = 1e5 and 1e6  one training run of the one-hidden-layer net of Sec. 6 (C11, float64)

For each it prints the wall time (compilation included, then a second, compiled call where that is
cheap), the device's peak memory (``memory_stats``; the process's peak RSS on a CPU) and, for the
Hessian, the time of one Hessian-vector product over one gradient (forward-over-reverse: a few gradients at scale).

``--small`` divides every width by 100 (and caps the training steps) so that the script itself can
be tested on a CPU (``--allow-cpu``); the figures it prints then mean nothing about a GPU.
Exit status: 0 when every configuration ran and gave finite numbers; 1 otherwise; 2 on bad usage
(including no GPU without ``--allow-cpu``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The configurations at the paper's sizes: (name, kind, widths of the hidden layers, dtype).
CONFIGS = (
    ("C4 depth 3, m = 1e4", "hessian", (10_000, 10_000, 10_000), "float32"),
    ("Fig. 2, m = 1e4, m_b = 1e3", "train", (10_000, 1_000, 10_000), "float64"),
    ("Fig. 1, m = 1e5", "train", (100_000,), "float64"),
    ("Fig. 1, m = 1e6", "train", (1_000_000,), "float64"),
)
#: The paper tier's settings for these runs (harness/tiers.py: "paper").
INPUT_DIM, N_TRAIN, LANCZOS_TOL, LANCZOS_MAX_ITERS = 8, 16, 1e-3, 100


def _peak_memory_bytes() -> tuple[int, str]:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak"
    from harness.schedule import peak_rss_bytes

    return peak_rss_bytes(), "process peak RSS"


def _seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``fn()`` (already compiled), its result waited for."""
    import jax

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def hessian_config(hidden: tuple[int, ...], dtype: str) -> dict:
    import jax
    import jax.numpy as jnp

    from harness.hessian import hessian_spectral_norm, hessian_vector_product
    from harness.models import FullyConnected, sphere_points
    from harness.sweep import point_key

    net = FullyConnected(INPUT_DIM, hidden, "tanh")
    params, fixed = net.init(point_key(0, hidden[0], "init"), jnp.dtype(dtype))
    x = sphere_points(point_key(0, hidden[0], "data"), 1, INPUT_DIM, dtype=jnp.dtype(dtype))[0]
    start = time.perf_counter()
    norm = hessian_spectral_norm(net.output_component, params, fixed, x, 0, tol=LANCZOS_TOL, max_iters=LANCZOS_MAX_ITERS)
    first = time.perf_counter() - start
    grad = jax.jit(jax.grad(net.output_component))
    # The weights are arguments, not closed-over constants (which XLA would embed in the program).
    hvp = jax.jit(lambda p, v, fixed, x: hessian_vector_product(net.output_component, p, fixed, x, 0)(v))
    jax.block_until_ready(grad(params, fixed, x, 0))
    jax.block_until_ready(hvp(params, params, fixed, x))
    t_grad = _seconds(lambda: grad(params, fixed, x, 0))
    t_hvp = _seconds(lambda: hvp(params, params, fixed, x))  # H v at v = w0: any direction costs the same
    return {
        "weights": net.num_params,
        "value": float(norm.spectral_norm),
        "hvps": int(norm.iterations),
        "error_bound": float(norm.error_bound),
        "converged": bool(norm.converged),
        "seconds": first,
        "gradient_s": t_grad,
        "hvp_s": t_hvp,
        "hvp_over_gradient": t_hvp / t_grad,
    }


def train_config(hidden: tuple[int, ...], dtype: str, max_steps: int) -> dict:
    import jax.numpy as jnp

    from harness.models import FullyConnected
    from harness.train import TrainConfig, section6_network, train_point

    net = section6_network(hidden[0], INPUT_DIM) if len(hidden) == 1 else FullyConnected(INPUT_DIM, hidden, "tanh")
    config = TrainConfig(rel_tol=1e-6, max_steps=max_steps, chunk=20)
    start = time.perf_counter()
    result = train_point(net, seed=0, width=hidden[0], n=N_TRAIN, dtype=jnp.dtype(dtype), config=config)
    return {
        "weights": net.num_params,
        "value": float(result.delta_k),
        "steps": int(result.steps),
        "converged": result.stopped == "tolerance",
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="widths / 100: a test of the script, not of a GPU")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --small, for tests)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    backend = jax.default_backend()
    if backend != "gpu" and not args.allow_cpu:
        print(f"gpu-check: JAX's backend is {backend!r}, not 'gpu' (is the cuda extra installed?)", file=sys.stderr)
        return 2
    print(f"gpu-check: jax {jax.__version__}, backend {backend}, device {jax.devices()[0].device_kind}", flush=True)
    scale = 100 if args.small else 1
    max_steps = 200 if args.small else 8000  # the paper tier's convergence cap
    rows, failed = [], False
    for name, kind, hidden, dtype in CONFIGS:
        widths = tuple(max(2, w // scale) for w in hidden)
        try:
            row = hessian_config(widths, dtype) if kind == "hessian" else train_config(widths, dtype, max_steps)
        except Exception as err:  # a configuration that fails is reported, the others still run
            row = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
        row.update(name=name, hidden=list(widths), dtype=dtype)
        row["peak_bytes"], row["peak_kind"] = _peak_memory_bytes()
        bad = "error" in row or not all(math.isfinite(v) for v in row.values() if isinstance(v, float))
        failed |= bad
        rows.append(row)
        text = row.get("error") or ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in row.items() if k not in ("name", "hidden", "dtype", "peak_bytes", "peak_kind")
        )
        print(f"{name} (hidden {widths}, {dtype}): {text}; {row['peak_kind']} {row['peak_bytes'] / 2**30:.2f} GiB"
              + ("  FAILED" if bad else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"backend": backend, "small": args.small, "configs": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
