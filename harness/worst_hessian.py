"""The largest Hessian norm a search finds in the ball B(W0, R) (C4 at the worst point).

Theorem 3.2 bounds ||H(W)|| for every W in B(W0, R). A point W0 + R u along one dense random
direction u moves each weight by about R / sqrt(p), where the curvature of a wide net averages out:
it is the most benign point of the ball. ``worst_hessian_norm`` climbs instead.

Its objective is the extreme eigenvalue of s H(W) (s = +1 for lambda_max, -1 for lambda_min, the
one of larger modulus at the start). For a simple eigenvalue with unit eigenvector v, the gradient
of lambda(W) in W is the gradient of the quadratic form v . H(W) v with v held fixed (Hellmann-
Feynman): a contraction of the third derivative of f with v twice, which JAX forms directly as
reverse mode over two forward derivatives along v. Each step moves W along that gradient
(normalized, projected back into the ball), then refreshes v by a short Lanczos run started at the
old v: its extreme Ritz value is at least the old Rayleigh quotient (the old v lies in the Krylov
space) and at most the new extreme eigenvalue (Cauchy interlacing), so every accepted value is a
lower bound on ||H|| at a point of the ball. A step that does not raise it is halved, one that does
is doubled (up to R). The winner is then measured by the suite's own Lanczos estimator.

Starts (each of norm R):

* ``"random"``: the dense random direction of C4's earlier random point (``harness.measure``);
* ``"one-neuron"``: all of R on the incoming first-layer weights of one neuron, along the input
  (``harness.taylor.one_neuron_direction``: the neuron with the largest |sigma'' df/dalpha|);
* ``"top-eigenvector"``: the eigenvector of H(W0) of largest |eigenvalue|;
* ``"gd-path"``: where gradient descent takes W on the square loss of the point's first
  ``GD_INPUTS`` inputs with standard-normal targets. In the lazy regime the path ends at
  W0 + J^T K^-1 (y - f(W0)) (gradient flow of the linearized model, K = J J^T), the direction used.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from harness.fit import CONFIRMED, INCONCLUSIVE, Verdict
from harness.hessian import F64, _tree_axpy, _tree_dot, _tree_norm, _tree_scale, _tree_unit, cacheable, hessian_vector_product
from harness.models import FullyConnected
from harness.rng import normal_like
from harness.taylor import check_search, one_neuron_direction

START_NAMES = ("random", "one-neuron", "top-eigenvector", "gd-path")

#: Ascent steps per start, Lanczos steps per evaluation (the start's and each refresh of v: one
#: length, so one compiled program per network shape), and the smallest step (relative to R)
#: before a start gives up.
DEFAULT_STEPS = 8
LANCZOS_STEPS = 12
MIN_STEP = 1.0 / 64
#: Inputs (and targets) of the gradient-descent start.
GD_INPUTS = 8
#: A worst-point slope is only the worst point's if the search still finds, on average over the
#: seeds of the widest net, at least 10% more than the random point of the ball (measured 1.4-1.8x
#: at m = 512 on the default tier): a search that stopped exploring there would steepen the slope.
MIN_SEARCH_GAIN = 1.10


class WorstHessian(NamedTuple):
    """The search's result: the displacement dW of the best point, the lower bound on ||H(W0 + dW)||
    it reached, which start won, and each start's value before and after its ascent."""

    displacement: object
    lower_bound: float
    start: str
    by_start: dict[str, float]
    at_start: dict[str, float]


@functools.partial(jax.jit, static_argnames=("fn", "iters"))
def _extreme_pair(fn: Callable, params, args, start, iters: int):
    """Lanczos for ``iters`` steps from ``start`` (a pytree like params): both extreme Ritz values
    (float64) and their unit Ritz vectors.

    The three-term recurrence alone, no re-orthogonalization: orthogonality is lost only once a Ritz
    value converges, which adds copies of it but moves no extreme (Paige 1976), and T's extreme
    eigenvalues bound its (0, 0) entry, the start's Rayleigh quotient, whatever the rounding, so
    a refresh never returns less than the old Rayleigh quotient. A pass against the stored basis
    cost 5x the Hessian-vector product at width 512 (12 rows of 2.7e5 float64 numbers, twice).
    Vectors stay pytrees: on flat vectors the ravel and unravel around each product made it 6x
    slower on a CPU (5.3 against 0.9 ms at width 512, depth 2)."""
    hvp = hessian_vector_product(fn, params, *args)
    q0 = _tree_unit(start)
    basis = jax.tree_util.tree_map(lambda x: jnp.zeros((iters, *x.shape), x.dtype).at[0].set(x), q0)

    def step(j, state):
        basis, alphas, betas, alive = state
        q = jax.tree_util.tree_map(lambda b: b[j], basis)
        q_prev = jax.tree_util.tree_map(lambda b: b[jnp.maximum(j - 1, 0)], basis)
        beta_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0.0)
        w = hvp(q)
        alpha = _tree_dot(q, w)
        w = _tree_axpy(-beta_prev, q_prev, _tree_axpy(-alpha, q, w))
        w = _tree_axpy(-_tree_dot(q, w), q, w)  # local re-orthogonalization against q_j
        beta = jnp.sqrt(_tree_dot(w, w))
        # After an invariant subspace (beta is round-off) the remaining diagonal holds alpha_0, a
        # Rayleigh quotient inside the Ritz interval that never becomes an extreme, as in
        # harness.hessian; the off-diagonal stays 0.
        alpha = jnp.where(alive, alpha, alphas[0])
        alive = alive & (beta > 1e-12 * jnp.maximum(jnp.abs(alpha), jnp.max(jnp.abs(alphas))))
        beta = jnp.where(alive, beta, 0.0)
        scale = jnp.where(alive, 1.0 / jnp.where(alive, beta, 1.0), 0.0)
        row = jnp.minimum(j + 1, iters - 1)
        basis = jax.tree_util.tree_map(
            lambda b, x: b.at[row].set(jnp.where(j + 1 < iters, scale.astype(x.dtype) * x, b[row])), basis, w
        )
        return basis, alphas.at[j].set(alpha), betas.at[j].set(beta), alive

    zeros = jnp.zeros((iters,), F64)
    basis, alphas, betas, _ = lax.fori_loop(0, iters, step, (basis, zeros, zeros, jnp.asarray(True)))
    t = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    evals, evecs = jnp.linalg.eigh(t)

    def ritz_vector(s):
        return jax.tree_util.tree_map(lambda b: jnp.tensordot(s.astype(b.dtype), b, axes=1), basis)

    return evals[-1], _tree_unit(ritz_vector(evecs[:, -1])), evals[0], _tree_unit(ritz_vector(evecs[:, 0]))


@functools.partial(jax.jit, static_argnames=("fn",))
def _eigenvalue_gradient(fn: Callable, params, args, v):
    """The gradient in the weights of v . H(W) v, v fixed: the third derivative of f contracted
    with v twice (reverse mode over two forward derivatives along v)."""

    def quadratic_form(p):
        first = lambda u: jax.jvp(lambda w: fn(w, *args), (u,), (v,))[1]
        return jax.jvp(first, (p,), (v,))[1]

    return jax.grad(quadratic_form)(params)


@jax.jit
def _ascent_trial(dw, g, step_length, radius):
    """dw + step_length g / ||g||, projected into the ball of the radius."""
    trial = _tree_axpy(step_length / _tree_norm(g), g, dw)
    norm = _tree_norm(trial)
    return _tree_scale(jnp.minimum(1.0, radius / norm), trial)


def _moved(params, dw):
    return jax.tree_util.tree_map(jnp.add, params, dw)


def _ascend(fn, params, args, dw, radius: float, steps: int, key: jax.Array):
    """Projected, normalized ascent of the extreme eigenvalue (the one of larger modulus at the start)
    from displacement ``dw``: returns (best displacement, its lower bound on ||H||, start value)."""
    top, v_top, bottom, v_bottom = _extreme_pair(fn, _moved(params, dw), args, normal_like(key, params), LANCZOS_STEPS)
    top, bottom = float(top), float(bottom)
    sign, best, v = (1.0, top, v_top) if abs(top) >= abs(bottom) else (-1.0, -bottom, v_bottom)
    at_start, step = best, 0.5
    for _ in range(steps):
        if step < MIN_STEP:
            break
        g = _tree_scale(jnp.asarray(sign), _eigenvalue_gradient(fn, _moved(params, dw), args, v))
        if not float(_tree_norm(g)) > 0:
            break
        trial = _ascent_trial(dw, g, jnp.asarray(step * radius, F64), jnp.asarray(radius, F64))
        top, v_top, bottom, v_bottom = _extreme_pair(fn, _moved(params, trial), args, v, LANCZOS_STEPS)
        value, v_trial = (float(top), v_top) if sign > 0 else (-float(bottom), v_bottom)
        if value > best:
            dw, v, best, step = trial, v_trial, value, min(2 * step, 1.0)
        else:
            step /= 2
    return dw, best, at_start


@functools.partial(jax.jit, static_argnames=("fn",))
def gd_path_direction(fn: Callable, params, args: tuple, inputs, targets):
    """Where gradient flow of the linearized model takes W on sum_i (f(W; x_i) - y_i)^2 / 2:
    J^T K^-1 (y - f(W0)), J the Jacobian over the inputs, K = J J^T (a pytree like params).

    ``fn(params, *args[:1], x, *args[1:])`` is the scalar output at input x (``args`` = (fixed, k)
    for ``net.output_component``)."""
    value_and_grad = jax.vmap(jax.value_and_grad(lambda p, x: fn(p, args[0], x, *args[1:])), in_axes=(None, 0))
    outputs, grads = value_and_grad(params, inputs)
    jac = jnp.concatenate([g.reshape(len(inputs), -1).astype(F64) for g in jax.tree_util.tree_leaves(grads)], axis=1)
    coef = jnp.linalg.solve(jac @ jac.T, jnp.asarray(targets, F64) - outputs.astype(F64))
    return jax.tree_util.tree_map(lambda g, p: jnp.tensordot(coef.astype(g.dtype), g, axes=1).astype(p.dtype), grads, params)


def worst_hessian_norm(fn: Callable, params, args: tuple, radius: float, starts: dict, key: jax.Array,
                       steps: int = DEFAULT_STEPS) -> WorstHessian:
    """The largest lower bound on ||H(W)|| = ||d^2 fn(W, *args) / dW^2|| found in B(params, radius)
    by the ascent of the module docstring from each of ``starts`` (name -> direction pytree, any
    norm; a direction is scaled to norm ``radius``)."""
    check_search(radius, steps, starts, "worst_hessian_norm")
    fn = cacheable(fn)
    best_dw, by_start, at_start = {}, {}, {}
    for i, (name, direction) in enumerate(starts.items()):
        norm = float(_tree_norm(direction))
        if not norm > 0:
            raise ValueError(f"start direction {name!r} is zero")
        dw = _tree_scale(jnp.asarray(radius / norm, F64), direction)
        best_dw[name], by_start[name], at_start[name] = _ascend(fn, params, args, dw, radius, steps, jax.random.fold_in(key, i))
    winner = max(by_start, key=by_start.get)
    return WorstHessian(best_dw[winner], by_start[winner], winner, by_start, at_start)


def top_eigenvector_direction(fn: Callable, params, args: tuple, key: jax.Array):
    """The eigenvector of H(params) of largest |eigenvalue| (``LANCZOS_STEPS`` Lanczos steps), as a pytree."""
    top, v_top, bottom, v_bottom = _extreme_pair(cacheable(fn), params, args, normal_like(key, params), LANCZOS_STEPS)
    return v_top if abs(float(top)) >= abs(float(bottom)) else v_bottom


def start_directions(net: FullyConnected, params, fixed, x, random_direction, key: jax.Array, gd_inputs, gd_targets,
                     k: int = 0) -> dict:
    """The four starts of the module docstring for output component ``k`` of ``net`` at input x."""
    return {
        "random": random_direction,
        "one-neuron": one_neuron_direction(net, params, fixed, x, k),
        "top-eigenvector": top_eigenvector_direction(net.output_component, params, (fixed, x, k), key),
        "gd-path": gd_path_direction(cacheable(net.output_component), params, (fixed, k), gd_inputs, gd_targets),
    }


#: Hessian-vector products one third-derivative gradient costs, about (reverse over two forwards).
GRADIENT_HVPS = 3


def search_hvps(starts: int = len(START_NAMES), steps: int = DEFAULT_STEPS) -> int:
    """The most Hessian-vector products (and equivalents) ``worst_hessian_norm`` spends: per start a
    Lanczos run, then per step a gradient and a refresh; plus the top-eigenvector start's run."""
    return starts * (LANCZOS_STEPS + steps * (GRADIENT_HVPS + LANCZOS_STEPS)) + LANCZOS_STEPS


def worst_point_verdict(verdict: Verdict, gains_by_width: dict[int, float]) -> Verdict:
    """``verdict`` on a worst-point slope, made inconclusive when the search's mean gain over the
    random point at the widest net is below ``MIN_SEARCH_GAIN``."""
    widest = max(gains_by_width)
    gain = gains_by_width[widest]
    if verdict.verdict != CONFIRMED or gain >= MIN_SEARCH_GAIN:
        return verdict
    return dataclasses.replace(verdict, verdict=INCONCLUSIVE, reason=(
        f"{verdict.reason}; but at m = {widest} the search found only {gain:.3f}x the random point's "
        f"norm (< {MIN_SEARCH_GAIN}): the slope is not that of the worst point"))
