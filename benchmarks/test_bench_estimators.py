"""Estimators against their baselines, side by side in one run at paper scale.

* Hessian norm of a depth-3 tanh network (float32, widths 256 to 4096): Lanczos (partial
  re-orthogonalization) stopped on the Ritz error bound min(r, r^2 / gap) at 1e-3, and stopped on the
  Ritz residual r at 1e-3 (the earlier rule), against power iteration stopped on the
  relative change at 1e-4 and at 1e-5, all judged against ARPACK (scipy.sparse.linalg.eigsh on the same
  Hessian-vector product, both ends of the spectrum in one run, tolerance 1e-6) as the reference: Hessian-vector products used, time,
  and the relative error reached.
* Tangent kernel of the width-1024 depth-3 network on n = 64 inputs: the structured kernel
  (sum over layers of Gram products) against the full Jacobian product: time and the temporary
  memory XLA allocates for each (compiled memory analysis).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, eigsh

from harness.hessian import cacheable, hessian_spectral_norm, hessian_vector_product
from harness.kernel import _jacobian_rows, _layer_factors, _structured_from_factors, tangent_kernel
from harness.models import FullyConnected, sphere_points

WIDTHS = [256, 1024, 4096]
TARGET = 1e-3


def _net(width, dtype="float32"):
    net = FullyConnected(8, (width,) * 3, "tanh")
    params, fixed = net.init(jax.random.key(0), jnp.dtype(dtype))
    x = sphere_points(jax.random.key(1), 1, 8, dtype=jnp.dtype(dtype))[0]
    return net, params, fixed, x


_REFERENCE: dict[int, float] = {}


def _arpack_reference(width):
    """||H|| from ARPACK on the flattened HVP: both ends of the spectrum in one implicitly restarted
    run (``which="BE"``, k = 2), eigenvalue tolerance 1e-6, a thousand times finer than the 1e-3
    the estimators are judged at. (Two separate LA/SA runs at 1e-8 cost 2.5x the time at width
    4096, where ARPACK's own re-orthogonalization of 33.6e6-long float64 vectors dominates.)"""
    if width in _REFERENCE:
        return _REFERENCE[width]
    net, params, fixed, x = _net(width)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hvp = hessian_vector_product(net.output_component, params, fixed, x, 0)
    flat_hvp = jax.jit(lambda v: jax.flatten_util.ravel_pytree(hvp(unravel(v)))[0])
    count = [0]

    def matvec(v):
        count[0] += 1
        return np.asarray(flat_hvp(jnp.asarray(v, dtype=flat.dtype)), dtype=np.float64)

    op = LinearOperator((flat.size, flat.size), matvec=matvec, dtype=np.float64)
    ends = eigsh(op, k=2, which="BE", tol=1e-6, return_eigenvectors=False)
    _REFERENCE[width] = float(np.max(np.abs(ends)))
    _REFERENCE[f"hvps-{width}"] = count[0]
    return _REFERENCE[width]


@pytest.mark.parametrize("width", WIDTHS)
def test_arpack_reference(benchmark, record_result, width):
    start = time.perf_counter()
    norm = _arpack_reference(width)
    elapsed = time.perf_counter() - start
    benchmark.pedantic(lambda: None, rounds=1)
    record_result(f"hessian-arpack-w{width}", benchmark, hvps=_REFERENCE[f"hvps-{width}"], norm=round(norm, 6),
                  seconds=round(elapsed, 2))


#: (method, stopping tolerance). Lanczos stops on the Ritz error bound at the target itself
#: ("lanczos"), or on the residual alone ("lanczos-residual", the earlier rule). Measured HVPs at
#: width 256 / 1024 (seed 0): 25 / 33 on the error bound, 30 / 38 on the residual, errors 4e-5 / 3e-5
#: and 9e-7 / 4e-6 against a 1e-7 Lanczos reference. The issue's target, <= 20 HVPs at width 1024,
#: is not met: the top of this spectrum is clustered (the neighbouring Ritz value lies ~1.5% below
#: the extreme one when the run stops), so r^2 / gap is only ~r / 5 and the bound, not the error,
#: decides. Power
#: iteration stops on the relative change of |Rayleigh quotient|, which says little about the error
#: on these nearly symmetric spectra (|lambda_min| within 1.5% of lambda_max at width 1024, so the
#: iterate converges slowly and the change is small long before the value is right): it runs at a
#: tenth and at a hundredth of the target, and the record says which error each reached.
HESSIAN_RUNS = [("lanczos", TARGET), ("lanczos-residual", TARGET), ("power", TARGET / 10), ("power", TARGET / 100)]


def _run_name(method, tol):
    return method if method.startswith("lanczos") else f"power-tol{tol:.0e}"


@pytest.mark.parametrize("method,tol", HESSIAN_RUNS, ids=[_run_name(m, t) for m, t in HESSIAN_RUNS])
@pytest.mark.parametrize("width", WIDTHS)
def test_hessian_norm_to_1e3(benchmark, record_result, width, method, tol):
    net, params, fixed, x = _net(width)
    reference = _arpack_reference(width)
    # Caps: power iteration may need hundreds of steps, so it gets 1000. Lanczos keeps the harness's
    # default cap (100): the cap sizes the stored basis and the larger of the two tridiagonal
    # eigenproblems solved each step, so a cap of 1000 would bill it for a 1000 x 1000 eigh per step
    # (measured: 0.82 s instead of ~0.1 s at width 256) that no claim ever pays.
    lanczos = method.startswith("lanczos")
    max_iters = 100 if lanczos else 1000
    options = {"method": "lanczos", "stop": "residual" if method == "lanczos-residual" else "error-bound"} if lanczos else {"method": method}
    run = lambda: hessian_spectral_norm(net.output_component, params, fixed, x, 0, tol=tol, max_iters=max_iters, **options)
    run()  # compile
    result = benchmark.pedantic(run, rounds=3, iterations=1)
    error = abs(result.spectral_norm - reference) / reference
    record_result(
        f"hessian-{_run_name(method, tol)}-w{width}", benchmark, hvps=result.iterations, rel_error=f"{error:.1e}",
        reached_target=error <= TARGET, reorth=result.reorthogonalizations, error_bound=f"{result.error_bound:.1e}",
        sign_of_dominant=("+" if abs(result.lambda_max) >= abs(result.lambda_min) else "-"),
    )
    if lanczos:
        assert error <= TARGET


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_kernel_width_1024_n64(benchmark, record_result, method):
    net, params, fixed, _ = _net(1024)
    xs = sphere_points(jax.random.key(2), 64, 8, dtype=jnp.float32)
    run = lambda: jax.block_until_ready(tangent_kernel(net, params, fixed, xs, method=method))
    kernel = run()
    benchmark.pedantic(run, rounds=3, iterations=1)
    def allocated(lowered) -> int:
        analysis = lowered.compile().memory_analysis()
        return analysis.temp_size_in_bytes + analysis.output_size_in_bytes

    if method == "structured":
        inputs, grads = _layer_factors(net, params, fixed, xs, False)
        temp = allocated(_layer_factors.lower(net, params, fixed, xs, False)) + allocated(
            _structured_from_factors.lower(net, inputs, grads)
        )
    else:
        temp = allocated(_jacobian_rows.lower(cacheable(net.apply), params, fixed, xs))
    reference = tangent_kernel(net, params, fixed, xs, method="structured")
    assert float(jnp.linalg.norm(kernel - reference) / jnp.linalg.norm(reference)) < 1e-4
    record_result(f"kernel-{method}-w1024-n64", benchmark, allocated_MB=round(temp / 2**20, 1))
