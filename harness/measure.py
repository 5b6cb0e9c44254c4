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

from harness import worst_hessian
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


#: Networks per compiled call of ``over_networks`` (the last batch is padded to this size, so one
#: program serves a whole width), fewer when their weights would exceed BATCH_BYTES: a batched
#: program pays off where a network alone cannot keep the processor busy (measured for C19's
#: tangent kernels on 2 cores: 1.3-1.7x faster per network up to width 256 at depth 2, 0.6-0.8x
#: from 512 on in batches of 64, where a batch of 4 MB networks is slower than one at a time).
BATCH_NETWORKS = 64
BATCH_BYTES = 8 * 2**20
_BATCHED: dict = {}


def over_networks(name: str, net, compute, seeds, width: int, dtype, per_seed=None, shared=None) -> np.ndarray:
    """``compute(params, fixed, per_seed(seed), shared)`` at each seed's weights, stacked over seeds.

    The weights are those of ``weights`` (drawn on the host, one point after the other); the
    computation runs on a batch of networks in one compiled call (``jax.vmap`` over the seeds): a
    sweep of cheap points (a fully-connected network's kernel costs a backward pass or two)
    otherwise spends most of its time dispatching one small call per seed. ``name`` names the
    computation (with the network and dtype, the key of its compiled program); ``per_seed(seed)``
    gives the seed's own data (its inputs), ``shared`` the data common to all (None for none).
    Equal to the per-seed computation to round-off (tests/test_sweep.py).
    """
    seeds = [int(s) for s in seeds]
    first = weights(net, seeds[0], width, dtype)[0]
    point_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(first))
    batch = max(1, min(BATCH_NETWORKS, BATCH_BYTES // max(point_bytes, 1)))
    key = (name, net, jnp.dtype(dtype).name, batch > 1)
    if key not in _BATCHED:
        axes = (0, 0, 0 if per_seed is not None else None, None)
        _BATCHED[key] = jax.jit(jax.vmap(compute, in_axes=axes) if batch > 1 else compute)
    compiled = _BATCHED[key]
    if batch == 1:  # a network big enough to keep the device busy alone: no stacking copies
        return np.stack([
            np.asarray(compiled(*weights(net, s, width, dtype), None if per_seed is None else per_seed(s), shared), dtype=np.float64)
            for s in seeds
        ])
    out = []
    for start in range(0, len(seeds), batch):
        chunk = seeds[start : start + batch]
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        draws = [net.init(point_key(s, width, "init"), dtype) for s in padded]
        data = None if per_seed is None else np.stack([np.asarray(per_seed(s)) for s in padded])
        result = compiled(_stacked([d[0] for d in draws]), _stacked([d[1] for d in draws]), data, shared)
        out.append(np.asarray(result, dtype=np.float64)[: len(chunk)])
    return np.concatenate(out)


def kernel_diagonals(net, seeds, width: int, n_inputs: int, dtype) -> np.ndarray:
    """K(x_i, x_i) at the first ``n_inputs`` inputs of each seed's point, shape (seeds, diagonal):
    ``kernel_diagonal`` over a batch of networks (``over_networks``)."""
    from harness.kernel import kernel_diagonal

    return over_networks(
        "kernel_diagonal", net, lambda p, f, xs, _: kernel_diagonal(net, p, f, xs), seeds, width, dtype,
        per_seed=lambda s: inputs(s, width, net.input_dim, n_inputs, dtype),
    )


def _stacked(trees):
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def worst_hessian_estimate(net, seed: int, width: int, dtype, *, radius: float, tol: float, max_iters: int,
                           steps: int | None = None) -> dict:
    """C4 at the worst point found: ``harness.worst_hessian`` searched B(W0, radius) at input 0,
    output 0, from its four starts (the random one is this point's ``"direction"`` stream, the same
    point ``weights(..., radius)`` gives), then the winner measured by Lanczos (memoized).

    Returns the winner's Lanczos estimate (``hessian``), the search's lower bound, the winning start
    and each start's value before and after its ascent."""
    steps = worst_hessian.DEFAULT_STEPS if steps is None else steps
    key = ("worst_hessian", net, jnp.dtype(dtype).name, width, seed, radius, tol, max_iters, steps)

    def compute():
        params, fixed = weights(net, seed, width, dtype)
        xs = inputs(seed, width, net.input_dim, worst_hessian.GD_INPUTS, dtype)
        search_key = jax.random.fold_in(point_key(seed, width, "lanczos"), 10_000)
        targets = np.asarray(normal_like(point_key(seed, width, "labels"), jnp.zeros((len(xs),), jnp.float64)))
        starts = worst_hessian.start_directions(
            net, params, fixed, xs[0], normal_like(point_key(seed, width, "direction"), params),
            jax.random.fold_in(search_key, 0), xs, targets,
        )
        found = worst_hessian.worst_hessian_norm(
            net.output_component, params, (fixed, xs[0], 0), radius, starts, jax.random.fold_in(search_key, 1), steps
        )
        moved = jax.tree_util.tree_map(jnp.add, params, found.displacement)
        estimate = hessian_spectral_norm(
            net.output_component, moved, fixed, xs[0], 0, key=jax.random.fold_in(point_key(seed, width, "lanczos"), 0),
            tol=tol, max_iters=max_iters,
        )
        return {"hessian": estimate, "lower_bound": found.lower_bound, "start": found.start,
                "by_start": found.by_start, "at_start": found.at_start}

    return memoized(key, compute)
