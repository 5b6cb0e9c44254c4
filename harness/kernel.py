"""Tangent kernels ``K(w)_{ij} = grad f(w; x_i) . grad f(w; x_j)`` (paper Eq. 1).

For a model with c outputs the kernel is the (n c) x (n c) matrix over (input, output) pairs,
ordered input-major: row ``i * c + a`` is output a at input x_i.

One function, ``tangent_kernel(model, params, fixed, xs, method=...)``, several implementations,
each tested against the others:

* ``"jacobian"``: the full Jacobian J (n c x p) and J J^T. The reference; memory n c p.
* ``"blocked"``: the same product over blocks of inputs, each block's Jacobian kept within
  ``memory_budget`` bytes; works for any model. Memory: two blocks.
* ``"structured"``: for fully-connected layers, ``df/dW_l = s_l g_l a_{l-1}^T`` (s_l the layer's
  scale, g_l the gradient with respect to its pre-activation, a_{l-1} its input), so
  ``K = sum_l s_l^2 (A_{l-1} A_{l-1}^T) * (G_l G_l^T)`` elementwise. Memory of order n c sum(m_l)
  instead of n c p, and a cost of one backward pass per input and output plus n x n Gram matrices.
* ``"auto"``: structured when the model offers it, blocked otherwise.

A model is any object with ``apply(params, fixed, x)`` (and ``logits`` for the inner network of a
non-linear head) and ``num_out``; fully-connected networks also provide ``forward`` with taps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from harness.hessian import cacheable
from harness.models import FullyConnected

METHODS = ("auto", "structured", "blocked", "jacobian")

#: Default memory allowed for one block of Jacobian rows, in bytes.
DEFAULT_MEMORY_BUDGET = 512 * 1024**2


def _output_fn(model, inner: bool):
    return cacheable(model.logits if inner else model.apply)


def _num_params(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


def _itemsize(params) -> int:
    return jax.tree_util.tree_leaves(params)[0].dtype.itemsize


@functools.partial(jax.jit, static_argnames=("fn",))
def _jacobian_rows(fn, params, fixed, xs):
    """Jacobian of fn at each input, flattened to (n * c, p)."""

    def one(x):
        jac = jax.jacrev(fn)(params, fixed, x)  # pytree of (c?, *leaf.shape)
        leaves = jax.tree_util.tree_leaves(jac)
        out = fn(params, fixed, x)
        c = 1 if out.ndim == 0 else out.shape[0]
        return jnp.concatenate([leaf.reshape(c, -1) for leaf in leaves], axis=1)

    rows = jax.vmap(one)(xs)  # (n, c, p)
    return rows.reshape(-1, rows.shape[-1])


@jax.jit
def _gram(a, b):
    return a @ b.T


def _check_inputs(model, xs) -> None:
    if xs.ndim != 2:
        raise ValueError(f"xs must be a batch of inputs of shape (n, d), got shape {xs.shape}")
    if xs.shape[0] < 1:
        raise ValueError("xs must hold at least one input")


def tangent_kernel(
    model,
    params,
    fixed,
    xs: jax.Array,
    *,
    inner: bool = False,
    method: str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> jax.Array:
    """The tangent kernel of ``model`` at weights ``params`` on the inputs ``xs``.

    Args:
      model: a network (``FullyConnected`` or any model with ``apply``/``logits``/``num_out``).
      params, fixed: trained and frozen weights; the kernel is over the trained ones.
      xs: inputs of shape (n, d).
      inner: use the inner linear-output network f instead of the model output phi(f) (Eq. 11).
      method: ``"auto"``, ``"structured"``, ``"blocked"`` or ``"jacobian"``.
      memory_budget: bytes allowed for one block of Jacobian rows (``"blocked"``) or of
        per-layer gradients (``"structured"``).

    Returns:
      (n c) x (n c) kernel, or n x n for a scalar output.
    """
    if method not in METHODS:
        raise ValueError(f"unknown kernel method {method!r}; valid: {', '.join(METHODS)}")
    _check_inputs(model, xs)
    if method == "auto":
        method = "structured" if isinstance(model, FullyConnected) else "blocked"
    if method == "structured":
        if not isinstance(model, FullyConnected):
            raise ValueError(f"the structured kernel needs fully-connected layers, got {type(model).__name__}")
        return _structured_kernel(model, params, fixed, xs, inner, memory_budget)
    fn = _output_fn(model, inner)
    if method == "jacobian":
        jac = _jacobian_rows(fn, params, fixed, xs)
        return _gram(jac, jac)
    return _blocked_kernel(fn, model.num_out, params, fixed, xs, memory_budget)


def _blocked_kernel(fn, num_out: int, params, fixed, xs, memory_budget: int) -> jax.Array:
    n = xs.shape[0]
    row_bytes = num_out * _num_params(params) * _itemsize(params)
    block = max(1, min(n, memory_budget // max(row_bytes, 1)))
    starts = list(range(0, n, block))
    c = num_out
    kernel = np.zeros((n * c, n * c), dtype=np.float64)
    for ai, a in enumerate(starts):
        ja = _jacobian_rows(fn, params, fixed, xs[a : a + block])
        for b in starts[ai:]:
            jb = ja if b == a else _jacobian_rows(fn, params, fixed, xs[b : b + block])
            kab = np.asarray(_gram(ja, jb), dtype=np.float64)
            kernel[a * c : a * c + kab.shape[0], b * c : b * c + kab.shape[1]] = kab
            kernel[b * c : b * c + kab.shape[1], a * c : a * c + kab.shape[0]] = kab.T
    return jnp.asarray(kernel, dtype=jax.tree_util.tree_leaves(params)[0].dtype)


@functools.partial(jax.jit, static_argnames=("net", "inner"))
def _layer_factors(net: FullyConnected, params, fixed, xs, inner: bool):
    """Per input: the inputs of each weight layer and the output's gradients w.r.t. its pre-activation.

    Returns ``(inputs, grads)``: ``inputs[l]`` of shape (n, fan_in_l), ``grads[l]`` of shape
    (n, c, fan_out_l).
    """
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    pre0, _ = net.zero_taps(dtype)

    def one(x):
        def out(pre):
            logits, _ = net.forward(params, fixed, x, pre_taps=pre)
            y = logits if inner else net.apply_head(logits)
            return jnp.atleast_1d(y)

        grads = jax.jacrev(out)(pre0)  # list of (c, m_l) or (c,) for a scalar read-out
        grads = [g.reshape(g.shape[0], -1) for g in grads]
        _, inputs = net.forward(params, fixed, x)
        return inputs, grads

    return jax.vmap(one)(xs)


@functools.partial(jax.jit, static_argnames=("net",))
def _structured_from_factors(net: FullyConnected, inputs, grads):
    n, c = grads[0].shape[0], grads[0].shape[1]
    total = jnp.zeros((n * c, n * c), dtype=inputs[0].dtype)
    for l, name in enumerate(net.layer_names):
        if not net.is_trained(name):
            continue
        scale2 = net._scale(net.fan_ins[l]) ** 2
        a_gram = inputs[l] @ inputs[l].T  # (n, n)
        g = grads[l].reshape(n * c, -1)
        g_gram = g @ g.T  # (n c, n c)
        total = total + scale2 * jnp.repeat(jnp.repeat(a_gram, c, axis=0), c, axis=1) * g_gram
    return total


def _factors(net: FullyConnected, params, fixed, xs, inner: bool, memory_budget: int):
    """``_layer_factors`` over blocks of inputs that keep the per-layer gradients within budget."""
    n = xs.shape[0]
    per_input = net.num_out * (sum(net.hidden_widths) + net.num_out) + sum(net.fan_ins)
    block = max(1, min(n, memory_budget // max(per_input * _itemsize(params), 1)))
    if block >= n:
        return _layer_factors(net, params, fixed, xs, inner)
    parts = [_layer_factors(net, params, fixed, xs[a : a + block], inner) for a in range(0, n, block)]
    layers = range(len(net.layer_names))
    inputs = [jnp.concatenate([p[0][l] for p in parts]) for l in layers]
    grads = [jnp.concatenate([p[1][l] for p in parts]) for l in layers]
    return inputs, grads


def _structured_kernel(net: FullyConnected, params, fixed, xs, inner: bool, memory_budget: int) -> jax.Array:
    inputs, grads = _factors(net, params, fixed, xs, inner, memory_budget)
    return _structured_from_factors(net, inputs, grads)


@functools.partial(jax.jit, static_argnames=("fn",))
def _diag_block(fn, params, fixed, xs):
    def one(x):
        jac = jax.jacrev(lambda p: jnp.atleast_1d(fn(p, fixed, x)))(params)  # leaves (c, *shape)
        return sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree_util.tree_leaves(jac))

    return jax.vmap(one)(xs).reshape(-1)


@functools.partial(jax.jit, static_argnames=("net",))
def _structured_diagonal_from_factors(net: FullyConnected, inputs, grads):
    n, c = grads[0].shape[0], grads[0].shape[1]
    total = jnp.zeros((n, c), dtype=inputs[0].dtype)
    for l, name in enumerate(net.layer_names):
        if net.is_trained(name):
            scale2 = net._scale(net.fan_ins[l]) ** 2
            total = total + scale2 * jnp.sum(inputs[l] ** 2, axis=1)[:, None] * jnp.sum(grads[l] ** 2, axis=2)
    return total.reshape(-1)


def kernel_diagonal(model, params, fixed, xs: jax.Array, *, inner: bool = False, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> jax.Array:
    """``K(x_i, x_i) = ||grad f(w; x_i)||^2`` for each input (and output), without the full kernel.

    Fully-connected networks use the layer structure: ``sum_l s_l^2 ||g_l||^2 ||a_{l-1}||^2``.
    """
    _check_inputs(model, xs)
    if isinstance(model, FullyConnected):
        inputs, grads = _factors(model, params, fixed, xs, inner, memory_budget)
        return _structured_diagonal_from_factors(model, inputs, grads)
    fn = _output_fn(model, inner)
    n = xs.shape[0]
    row_bytes = model.num_out * _num_params(params) * _itemsize(params)
    block = max(1, min(n, memory_budget // max(row_bytes, 1)))
    parts = [_diag_block(fn, params, fixed, xs[a : a + block]) for a in range(0, n, block)]
    return jnp.concatenate(parts)


def relative_kernel_change(k0: jax.Array, k: jax.Array) -> float:
    """``||K - K0||_F / ||K0||_F`` (Sec. 6)."""
    k0 = np.asarray(k0, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if k0.shape != k.shape:
        raise ValueError(f"kernel shapes differ: {k0.shape} vs {k.shape}")
    denom = np.linalg.norm(k0)
    if not denom > 0:
        raise ValueError("the reference kernel K0 is zero: the relative change is undefined")
    return float(np.linalg.norm(k - k0) / denom)


def gaussian_expectation(fn, points: int = 8001, half_width: float = 12.0) -> float:
    """E[fn(z)] for z ~ N(0, 1), fn vectorized over a jnp array.

    Trapezoidal rule on [-12, 12]: for a smooth integrand times the Gaussian density the rule
    converges exponentially in the number of points (the integrand and all its derivatives vanish
    at the ends), so 8001 points give float64 round-off for the activations used here, where
    Gauss-Hermite rules of moderate order lose accuracy on sharply peaked integrands.
    """
    z = np.linspace(-half_width, half_width, points)
    density = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    values = np.asarray(fn(jnp.asarray(z, dtype=jnp.float64)), dtype=np.float64)
    return float(np.trapezoid(values * density, z))


def infinite_width_shallow_diagonal(activation: str, radius: float) -> float:
    """Limit of K(x, x) for the shallow net of Eq. 4 with ||x|| / sqrt(d) = radius (Sec. 3.1).

    ``K(x,x) -> r^2 E[sigma'(r z)^2]``, z ~ N(0, 1) (for d = 1 and x = r this is the paper's
    ``x^2 E[sigma'(w x)^2]``).
    """
    from harness.models import ACTIVATIONS

    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    dsigma = jax.vmap(jax.grad(ACTIVATIONS[activation]))
    return radius**2 * gaussian_expectation(lambda z: dsigma(radius * z) ** 2)
