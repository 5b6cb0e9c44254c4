#!/usr/bin/env bash
# The paper tier's largest configurations on one GPU, at one seed: time, peak memory and the cost of
# a Hessian-vector product over a gradient (scripts/gpu_check.py). Under 8 minutes on one recent GPU.
# Installs the cuda extra into .venv (created if missing), asserts that JAX sees a GPU, then runs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet -e ".[cuda]"
.venv/bin/python -c 'import jax, sys; b = jax.default_backend(); print("jax backend:", b, jax.devices()); sys.exit(0 if b == "gpu" else 2)'
exec .venv/bin/python scripts/gpu_check.py --json "${GPU_CHECK_JSON:-gpu-check.json}" "$@"
