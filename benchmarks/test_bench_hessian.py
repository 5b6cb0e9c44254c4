"""Cost of the Hessian-norm estimator relative to one gradient (depth-3 tanh network).

The floor for any Hessian-norm estimate from Hessian-vector products is one HVP per iteration; a
forward-over-reverse HVP should cost a small multiple of one gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from harness.hessian import hessian_spectral_norm, hessian_vector_product
from harness.models import FullyConnected, sphere_points
from harness.rng import normal_like

WIDTH = 1024
DTYPES = ["float32", "float64"]


def _setup(width, dtype):
    net = FullyConnected(8, (width,) * 3, "tanh")
    params, fixed = net.init(jax.random.key(0), jnp.dtype(dtype))
    x = sphere_points(jax.random.key(1), 1, 8, dtype=jnp.dtype(dtype))[0]
    return net, params, fixed, x


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient(benchmark, record_result, dtype):
    net, params, fixed, x = _setup(WIDTH, dtype)
    grad = jax.jit(jax.grad(net.output_component))
    jax.block_until_ready(grad(params, fixed, x, 0))
    benchmark(lambda: jax.block_until_ready(grad(params, fixed, x, 0)))
    record_result(f"gradient-{dtype}-w{WIDTH}", benchmark, params=net.num_params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hessian_vector_product(benchmark, record_result, dtype):
    net, params, fixed, x = _setup(WIDTH, dtype)
    hvp = jax.jit(lambda p, v: hessian_vector_product(net.output_component, p, fixed, x, 0)(v))
    v = normal_like(jax.random.key(2), params)
    jax.block_until_ready(hvp(params, v))
    benchmark(lambda: jax.block_until_ready(hvp(params, v)))
    record_result(f"hvp-{dtype}-w{WIDTH}", benchmark, params=net.num_params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lanczos_spectral_norm(benchmark, record_result, dtype):
    net, params, fixed, x = _setup(WIDTH, dtype)
    tol = 1e-3
    first = hessian_spectral_norm(net.output_component, params, fixed, x, 0, tol=tol)  # compiles
    result = benchmark(lambda: hessian_spectral_norm(net.output_component, params, fixed, x, 0, tol=tol))
    assert result == first
    record_result(
        f"lanczos-{dtype}-w{WIDTH}", benchmark, hvps=result.iterations, reorth=result.reorthogonalizations,
        norm=round(result.spectral_norm, 6),
    )
