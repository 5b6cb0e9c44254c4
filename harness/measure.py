"""The suite's standard measurements at one (width, seed) point, shared and memoized across claims.

A point is fully determined by the network description, the width and the seed: the weights come
from ``point_key(seed, width, "init")``, the inputs from ``"data"`` (input i is row i of the same
draw, so the first inputs agree whatever the number drawn), the Lanczos start vector of input i
from ``fold_in(point_key(seed, width, "lanczos"), i)`` and a direction in weight space from
``"direction"``. Because of that, two claims that measure the same thing get the same number, and
``harness.sweep.memoized`` lets the second one reuse it (Table 1 reuses C4, C8 and C9).
"""

from __future__ import annotations

import collections
import threading

import jax
import jax.numpy as jnp
import numpy as np

from harness.hessian import HessianNorm, hessian_spectral_norm
from harness.models import sphere_points
from harness.rng import normal_like
from harness.sweep import memoized, point_key


def inputs(seed: int, width: int, dim: int, n: int, dtype) -> jax.Array:
    """The first n inputs of a point (on the sphere of radius sqrt(dim))."""
    return sphere_points(point_key(seed, width, "data"), n, dim, dtype=dtype)


#: The weights of the last few points, kept while several inputs and output components of the same
#: point are measured. Not kept beyond: a sweep's weights would fill memory (hundreds of points of
#: megabytes each), and redrawing them costs a NumPy draw. One cache per thread: a sweep spread over
#: several devices measures on each in a thread of its own (``harness.sweep``), whose arrays stay there.
_RECENT = threading.local()
RECENT_WEIGHTS_KEPT = 4


def _recent_weights() -> collections.OrderedDict:
    if not hasattr(_RECENT, "weights"):
        _RECENT.weights = collections.OrderedDict()
    return _RECENT.weights


def weights(net, seed: int, width: int, dtype, radius: float = 0.0):
    """W0 of a point, moved to distance ``radius`` along a uniformly random direction if radius > 0."""
    key = (net, jnp.dtype(dtype).name, width, seed, radius)
    recent = _recent_weights()
    if key in recent:
        recent.move_to_end(key)
        return recent[key]

    def compute():
        params, fixed = net.init(point_key(seed, width, "init"), dtype)
        if radius > 0:
            direction = normal_like(point_key(seed, width, "direction"), params)
            norm = jnp.sqrt(sum(jnp.sum(u * u) for u in jax.tree_util.tree_leaves(direction)))
            params = jax.tree_util.tree_map(lambda w, u: w + (radius / norm) * u, params, direction)
        return params, fixed

    recent[key] = compute()
    while len(recent) > RECENT_WEIGHTS_KEPT:
        recent.popitem(last=False)
    return recent[key]


def hessian_estimate(
    net,
    seed: int,
    width: int,
    dtype,
    *,
    input_index: int = 0,
    component: int = 0,
    radius: float = 0.0,
    tol: float,
    max_iters: int,
    inner: bool = False,
    reorth: str = "auto",
) -> HessianNorm:
    """The Hessian of output ``component`` at input ``input_index``, by Lanczos (memoized).

    ``inner=True`` measures the inner linear-output network f of f~ = phi(f) (Eq. 11); ``reorth``
    is passed to ``hessian_spectral_norm``.
    """
    key = ("hessian_norm", net, jnp.dtype(dtype).name, width, seed, radius, input_index, component, inner, tol, max_iters, reorth)

    def compute():
        params, fixed = weights(net, seed, width, dtype, radius)
        x = inputs(seed, width, net.input_dim, input_index + 1, dtype)[input_index]
        fn = net.inner_component if inner else net.output_component
        lanczos_key = jax.random.fold_in(point_key(seed, width, "lanczos"), input_index)
        return hessian_spectral_norm(
            fn, params, fixed, x, component, key=lanczos_key, tol=tol, max_iters=max_iters, reorth=reorth
        )

    return memoized(key, compute)


def hessian_norm(net, seed: int, width: int, dtype, **kwargs) -> float:
    """``hessian_estimate(...).spectral_norm``."""
    return hessian_estimate(net, seed, width, dtype, **kwargs).spectral_norm


def max_hessian_norm(
    net, seed: int, width: int, dtype, *, n_inputs: int, tol: float, max_iters: int, reorth: str = "auto"
) -> float:
    """The largest Hessian norm over the first ``n_inputs`` inputs and every output component."""
    return float(
        np.max(
            [
                hessian_norm(
                    net, seed, width, dtype, input_index=i, component=k, tol=tol, max_iters=max_iters, reorth=reorth
                )
                for i in range(n_inputs)
                for k in range(net.num_out)
            ]
        )
    )


#: Networks per compiled call of ``kernel_diagonals`` (the last batch is padded to this size, so
#: one program serves a whole width), fewer when their weights would exceed KERNEL_BATCH_BYTES.
KERNEL_BATCH = 64
KERNEL_BATCH_BYTES = 256 * 2**20
_BATCHED_DIAGONALS: dict = {}


def kernel_diagonals(net, seeds, width: int, n_inputs: int, dtype) -> np.ndarray:
    """K(x_i, x_i) at the first ``n_inputs`` inputs of each seed's point, shape (seeds, diagonal).

    The same weights and inputs as ``weights`` and ``inputs`` (drawn on the host, one point after
    the other), then ``kernel_diagonal`` of a batch of networks in one compiled call (``jax.vmap``
    over the seeds): a sweep of cheap points (a fully-connected network's diagonal costs one
    backward pass) otherwise spends most of its time dispatching one small call per seed. Equal to
    the per-seed ``kernel_diagonal`` to round-off (tests/test_measure.py).
    """
    from harness.kernel import kernel_diagonal

    seeds = [int(s) for s in seeds]
    key = (net, jnp.dtype(dtype).name)
    if key not in _BATCHED_DIAGONALS:
        _BATCHED_DIAGONALS[key] = jax.jit(jax.vmap(lambda p, f, xs: kernel_diagonal(net, p, f, xs)))
    compiled = _BATCHED_DIAGONALS[key]
    first = net.init(point_key(seeds[0], width, "init"), dtype)[0]
    point_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(first))
    batch = max(1, min(KERNEL_BATCH, KERNEL_BATCH_BYTES // max(point_bytes, 1)))
    out = []
    for start in range(0, len(seeds), batch):
        chunk = seeds[start : start + batch]
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        draws = [net.init(point_key(s, width, "init"), dtype) for s in padded]
        params = _stacked([d[0] for d in draws])
        fixed = _stacked([d[1] for d in draws])
        xs = np.stack([np.asarray(inputs(s, width, net.input_dim, n_inputs, dtype)) for s in padded])
        out.append(np.asarray(compiled(params, fixed, xs), dtype=np.float64)[: len(chunk)])
    return np.concatenate(out)


def _stacked(trees):
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)
