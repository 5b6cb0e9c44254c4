"""The Taylor remainder of a network in a ball around W0, at the worst point a search finds (C20).

Transition to linearity (paper Sec. 1) is a statement about f itself: on B(w0, R),

    |f(w) - f(w0) - grad f(w0) . (w - w0)| <= (1/2) sup_{B(w0, R)} ||H|| R^2,

so a Hessian norm that falls like m^(-1/2) makes f linear in its weights. A remainder at one random
point of the ball says little: a dense random direction spreads R over all weights, where the
curvature of a wide net averages out. ``worst_remainder`` instead climbs the remainder r and -r on
the sphere ||w - w0|| = R (projected, normalized gradient ascent with step halving) from several
starts and keeps the largest |r| found:

* ``"random"``: a dense Gaussian direction (what a single random probe would measure);
* ``"one-neuron"``: all of R on the incoming weights of one first-layer neuron, the one with the
  largest |sigma''(z_i) df/dalpha_i| (along the input x). For the shallow net of Sec. 3.1 this is
  exactly the top eigenvector of its block-diagonal Hessian (C1): blocks v_i sigma''(z_i) x x^T /
  (d sqrt m);
* ``"gradient"``: along grad f(w0), where a non-linear output f~ = phi(f) keeps its Omega(1) part
  (1/2) phi''(f) (grad f . dw)^2, which random directions hide.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from harness.hessian import cacheable
from harness.models import ACTIVATIONS, FullyConnected
from harness.rng import normal_like

#: Ascent steps from each start, and the smallest step (relative to R) before a start stops.
DEFAULT_STEPS = 30
MIN_STEP = 1e-4

START_NAMES = ("random", "one-neuron", "gradient")


class WorstPoint(NamedTuple):
    """The largest |remainder| found on the sphere of radius R, which start reached it, and the
    remainder each start reached (its starting value and its value after the ascent)."""

    remainder: float
    start: str
    by_start: dict[str, float]
    at_start: dict[str, float]


def _tree_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(tree)))


def _on_sphere(tree, radius: float):
    """``tree`` scaled to norm ``radius``."""
    scale = radius / _tree_norm(tree)
    return jax.tree_util.tree_map(lambda x: scale.astype(x.dtype) * x, tree)


@functools.partial(jax.jit, static_argnames=("fn",))
def _remainder_and_gradient(fn: Callable, params, args, grad0, f0, dw):
    """The remainder r(dw) = f(w0 + dw) - f(w0) - grad f(w0) . dw and its gradient in dw."""

    def remainder(d):
        moved = jax.tree_util.tree_map(jnp.add, params, d)
        linear = sum(jnp.vdot(g, x) for g, x in zip(jax.tree_util.tree_leaves(grad0), jax.tree_util.tree_leaves(d)))
        return fn(moved, *args) - f0 - linear

    return jax.value_and_grad(remainder)(dw)


@functools.partial(jax.jit, static_argnames=("fn",))
def _value_and_gradient(fn: Callable, params, args):
    return jax.value_and_grad(lambda p: fn(p, *args))(params)


def taylor_remainder(fn: Callable, params, args: tuple, dw) -> float:
    """|f(w0 + dw) - f(w0) - grad f(w0) . dw| for ``f = fn(params, *args)`` (a scalar)."""
    fn = cacheable(fn)
    f0, grad0 = _value_and_gradient(fn, params, args)
    return abs(float(_remainder_and_gradient(fn, params, args, grad0, f0, dw)[0]))


def _ascend(fn, params, args, grad0, f0, dw, radius: float, steps: int, sign: float) -> float:
    """The largest ``sign * r`` reached by projected, normalized gradient ascent on the sphere from
    ``dw`` (a step that does not raise it is halved, one that does is doubled, up to R)."""
    r, g = _remainder_and_gradient(fn, params, args, grad0, f0, dw)
    best, step = sign * float(r), 0.5
    for _ in range(steps):
        norm = _tree_norm(g)
        if not float(norm) > 0 or step < MIN_STEP:
            break
        move = (sign * step * radius / norm)
        trial = _on_sphere(jax.tree_util.tree_map(lambda d, x: d + move.astype(x.dtype) * x, dw, g), radius)
        r_trial, g_trial = _remainder_and_gradient(fn, params, args, grad0, f0, trial)
        if sign * float(r_trial) > best:
            dw, g, best = trial, g_trial, sign * float(r_trial)
            step = min(2 * step, 1.0)
        else:
            step /= 2
    return best


@functools.partial(jax.jit, static_argnames=("net", "k"))
def one_neuron_direction(net: FullyConnected, params, fixed, x, k: int = 0):
    """All weight on one first-layer neuron's incoming weights, along the input: the neuron with the
    largest |sigma''(z_i) df/dalpha_i| (the dominant term of d^2 f / dz_i^2). Compiled: run op by
    op it cost 2.4 s of small compilations per network shape."""
    z = params["W1"] @ x * net._scale(net.input_dim)
    d2 = jax.vmap(jax.grad(jax.grad(ACTIVATIONS[net.activation])))(z)
    score = jnp.abs(d2 * net.activation_gradients(params, fixed, x, k)[0])
    direction = jax.tree_util.tree_map(jnp.zeros_like, params)
    direction["W1"] = direction["W1"].at[jnp.argmax(score)].set(x / jnp.linalg.norm(x))
    return direction


def start_directions(net: FullyConnected, params, fixed, x, key: jax.Array, k: int = 0) -> dict:
    """The three starting directions of ``worst_remainder`` (module docstring), unnormalized."""
    if "W1" not in params:
        raise ValueError("the one-neuron start moves the first layer's weights, which this network does not train")
    gradient = jax.grad(lambda p: net.output_component(p, fixed, x, k))(params)
    return {"random": normal_like(key, params), "one-neuron": one_neuron_direction(net, params, fixed, x, k), "gradient": gradient}


def check_search(radius: float, steps: int, starts: dict, what: str) -> None:
    """The arguments of a search in a ball (``worst_remainder``, ``harness.worst_hessian``), refused
    with a one-line error before any work."""
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps!r}")
    if not starts:
        raise ValueError(f"{what} needs at least one start direction")


def worst_remainder(fn: Callable, params, args: tuple, radius: float, starts: dict, steps: int = DEFAULT_STEPS) -> WorstPoint:
    """The largest |Taylor remainder| of ``fn(params, *args)`` found on ||dw|| = ``radius`` by
    gradient ascent from each of ``starts`` (name -> direction pytree, any norm)."""
    check_search(radius, steps, starts, "worst_remainder")
    fn = cacheable(fn)
    f0, grad0 = _value_and_gradient(fn, params, args)
    at_start, reached = {}, {}
    for name, direction in starts.items():
        if not float(_tree_norm(direction)) > 0:
            raise ValueError(f"start direction {name!r} is zero")
        dw = _on_sphere(direction, radius)
        at_start[name] = abs(float(_remainder_and_gradient(fn, params, args, grad0, f0, dw)[0]))
        # sup |r| = max(sup r, sup -r): a local ascent of |r| keeps the sign it starts with, so both
        # signs are climbed (on a quadratic, -r from any start reaches the most negative curvature).
        reached[name] = max(_ascend(fn, params, args, grad0, f0, dw, radius, steps, sign) for sign in (1.0, -1.0))
    best = max(reached, key=reached.get)
    return WorstPoint(reached[best], best, reached, at_start)
