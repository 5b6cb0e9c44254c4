"""The (2,2,1)-norms of a fully-connected layer's second-derivative tensors (Theorem 3.1 (a)).

Paper Eq. 8: for an order-3 tensor T (d1 x d2 x d3),

    ||T||_{2,2,1} = sup_{||x|| = ||z|| = 1} sum_k | sum_{i,j} T_ijk x_i z_j |.

Theorem 3.1 (a) asks that the three tensors of each layer function phi_l(w; alpha) = sigma(s W alpha)
(Eq. 9; s = 1/sqrt(n), n the fan-in; sigma', sigma'' taken at the pre-activations z~ = s W alpha)
be O~(1) in the width. Written out, component k of each tensor applied to a pair of directions is

* d^2 phi / dW^2 at (A, B):      sigma''_k s^2 (A_k . alpha)(B_k . alpha);
* d^2 phi / dalpha^2 at (a, b):  sigma''_k s^2 (W_k . a)(W_k . b);
* d^2 phi / dalpha dW at (a, B): sigma''_k s^2 (W_k . a)(B_k . alpha) + sigma'_k s (B_k . a);

(A_k: row k of a direction A in weight space). Hence:

* ||d^2 phi / dW^2|| = s^2 ||alpha||^2 max_k |sigma''_k| exactly (Cauchy-Schwarz, attained by
  A = B = all of the unit norm on the row of the largest |sigma''_k|, along alpha);
* ||d^2 phi / dalpha dW|| = sqrt(lambda_max(Q)) exactly: component k depends on B through its row
  B_k alone, T_k = B_k . g_k(a) with g_k(a) = sigma''_k s^2 (W_k . a) alpha + sigma'_k s a, so the
  best B puts row k along +-g_k and the supremum over B is ||(g_k(a))_k|| = sqrt(a . Q a), with
  Q = sum_k M_k^T M_k, M_k = sigma''_k s^2 alpha W_k^T + sigma'_k s I (n x n);
* ||d^2 phi / dalpha^2|| <= s^2 ||W||_op^2 max_k |sigma''_k| (Cauchy-Schwarz); it has no such
  closed form (a maximum over sign patterns), so it is bracketed by this and an ascent's lower bound.

The lower bound comes from ``alternating_ascent``: for fixed signs c_k the objective
sum_k c_k T_k(x, z) is bilinear, maximized over x for fixed z and over z for fixed x in closed form;
then c_k = sign T_k(x, z). Every value it reports is the objective at a pair of unit directions,
so it is a lower bound whatever the ascent does. Computed in float64 with NumPy on the host.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import numpy as np
import scipy.linalg

from harness.models import ACTIVATIONS, FullyConnected

#: Outer rounds of the alternating ascent (signs, then both directions), and its stopping tolerance.
ASCENT_ROUNDS = 50
ASCENT_TOL = 1e-10
#: Alternations of x and z per round (power steps on the bilinear form of fixed signs).
INNER_STEPS = 10


class LayerTensorNorms(NamedTuple):
    """The three (2,2,1)-norms of one layer at one input: exact, or a lower and an upper bound."""

    ww: float
    aa_lower: float
    aa_upper: float
    aw: float


class LayerPoint(NamedTuple):
    """What the tensors of layer l depend on: its weights W (m x n), input alpha (n), scale s and
    sigma', sigma'' at its pre-activations (m)."""

    weights: np.ndarray
    alpha: np.ndarray
    scale: float
    d1: np.ndarray
    d2: np.ndarray


def layer_point(net: FullyConnected, params, fixed, x, layer: int) -> LayerPoint:
    """Layer ``layer`` (1-based hidden layer) of ``net`` at input x."""
    if not 1 <= layer <= net.depth:
        raise ValueError(f"layer must be a hidden layer 1..{net.depth}, got {layer!r}")
    if layer in net.linear_layers:
        raise ValueError(f"layer {layer} is linear: its second-derivative tensors are zero")
    alpha, d1, d2 = (np.asarray(a, dtype=np.float64) for a in _layer_arrays(net, params, fixed, x, layer))
    w = np.asarray({**fixed, **params}[f"W{layer}"], dtype=np.float64)
    return LayerPoint(w, alpha, net._scale(net.fan_ins[layer - 1]), d1, d2)


@functools.partial(jax.jit, static_argnames=("net", "layer"))
def _layer_arrays(net: FullyConnected, params, fixed, x, layer: int):
    """Layer ``layer``'s input alpha and sigma', sigma'' at its pre-activations (compiled: op by op
    the forward pass and the derivatives cost ~0.1 s per point in dispatch alone)."""
    _, inputs = net.forward(params, fixed, x)
    alpha = inputs[layer - 1]
    z = net._scale(net.fan_ins[layer - 1]) * ({**fixed, **params}[f"W{layer}"] @ alpha)
    act = ACTIVATIONS[net.activation]
    return alpha, jax.vmap(jax.grad(act))(z), jax.vmap(jax.grad(jax.grad(act)))(z)


def ww_norm(p: LayerPoint) -> float:
    """||d^2 phi / dW^2||_{2,2,1} = s^2 ||alpha||^2 max_k |sigma''_k| (exact, module docstring)."""
    return p.scale**2 * float(p.alpha @ p.alpha) * float(np.max(np.abs(p.d2)))


def aa_components(p: LayerPoint, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component k of d^2 phi / dalpha^2 at (a, b)."""
    return p.d2 * p.scale**2 * (p.weights @ a) * (p.weights @ b)


def aw_components(p: LayerPoint, a: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Component k of d^2 phi / dalpha dW at (a, B), B shaped like W."""
    return p.d2 * p.scale**2 * (p.weights @ a) * (B @ p.alpha) + p.d1 * p.scale * (B @ a)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def alternating_ascent(components: Callable, best_x: Callable, best_z: Callable, x, z, rounds: int = ASCENT_ROUNDS) -> float:
    """The largest sum_k |T_k(x, z)| reached from (x, z): signs c = sign T(x, z), then
    ``INNER_STEPS`` times x <- best_x(c, z), z <- best_z(c, x) (each the unit maximizer of the
    bilinear form sum_k c_k T_k for the other fixed), until the value stops rising."""
    x, z = _unit(x), _unit(z)
    best = float(np.sum(np.abs(components(x, z))))
    for _ in range(rounds):
        signs = np.sign(components(x, z))
        for _ in range(INNER_STEPS):  # power steps on the bilinear form of these signs
            x = _unit(best_x(signs, z))
            z = _unit(best_z(signs, x))
        value = float(np.sum(np.abs(components(x, z))))
        if value <= best * (1 + ASCENT_TOL):
            best = max(best, value)
            break
        best = value
    return best


def aa_lower(p: LayerPoint, starts) -> float:
    """Lower bound on ||d^2 phi / dalpha^2||_{2,2,1}: the best ascent over ``starts`` (vectors a = b)."""
    w, s2 = p.weights, p.scale**2

    def best_x(c, z):  # maximizer over x of x . W^T diag(c sigma'' s^2) W z
        return w.T @ (c * p.d2 * s2 * (w @ z))

    return max(alternating_ascent(lambda a, b: aa_components(p, a, b), best_x, best_x, v, v) for v in starts)


def aw_norm(p: LayerPoint) -> float:
    """||d^2 phi / dalpha dW||_{2,2,1} = sqrt(lambda_max(Q)) (exact, module docstring)."""
    w, s, a2 = p.weights, p.scale, float(p.alpha @ p.alpha)
    cross = w.T @ (p.d2 * p.d1)
    q = (s**4 * a2) * (w.T * p.d2**2) @ w + s**3 * (np.outer(cross, p.alpha) + np.outer(p.alpha, cross))
    q += s**2 * float(np.sum(p.d1**2)) * np.eye(w.shape[1])
    return math.sqrt(max(_top_eigenvalue(q), 0.0))


def ascent_starts(p: LayerPoint, top: np.ndarray, rng: np.random.Generator, random_starts: int = 2) -> list[np.ndarray]:
    """Directions in the layer's input space: ``top`` (W's top right singular vector), the row of the
    neuron with the largest |sigma''_k| ||W_k||^2, alpha itself and ``random_starts`` Gaussian ones."""
    neuron = int(np.argmax(np.abs(p.d2) * np.sum(p.weights**2, axis=1)))
    return [top, p.weights[neuron], p.alpha, *(rng.standard_normal(p.alpha.size) for _ in range(random_starts))]


def _top_eigenvalue(sym: np.ndarray) -> float:
    """The largest eigenvalue of a symmetric matrix alone (LAPACK's syevr on one index)."""
    n = sym.shape[0]
    return float(scipy.linalg.eigh(sym, eigvals_only=True, subset_by_index=[n - 1, n - 1])[0])


def largest_singular_value(w: np.ndarray) -> float:
    """||W||_op, from the largest eigenvalue of W^T W (5-10x faster than a full SVD at m = 512)."""
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return math.sqrt(max(_top_eigenvalue(gram), 0.0))


def layer_tensor_norms(p: LayerPoint, rng: np.random.Generator | None = None) -> LayerTensorNorms:
    """The three norms of the module docstring at one layer point; ``aa_lower`` (the ascent, the one
    costly part) is NaN when no generator for its random starts is given."""
    aa_lower_bound = math.nan
    if rng is not None:
        top = np.linalg.svd(p.weights, full_matrices=False)[2][0]
        aa_lower_bound = aa_lower(p, ascent_starts(p, top, rng))
    return LayerTensorNorms(
        ww=ww_norm(p),
        aa_lower=aa_lower_bound,
        aa_upper=p.scale**2 * largest_singular_value(p.weights) ** 2 * float(np.max(np.abs(p.d2))),
        aw=aw_norm(p),
    )
