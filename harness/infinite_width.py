"""The analytic infinite-width tangent kernel of a deep fully-connected network (claim C19).

The network is ``harness.models.FullyConnected`` in the NTK parameterization, without biases:
``h_1 = W_1 x / sqrt(d)``, ``alpha_l = sigma(h_l)``, ``h_{l+1} = W_{l+1} alpha_l / sqrt(m_l)`` and
the linear read-out ``f = h_{L+1} = V alpha_L / sqrt(m_L)``, every weight N(0, 1) (paper Eq. 7, 9).
As the widths m_1, ..., m_L grow (Jacot et al., notes seed 003, Sec. 3 and 4, with beta = 0):

* the pre-activations of layer l are i.i.d. centred Gaussian processes of covariance Sigma^(l):
  ``Sigma^(1)(x, z) = x . z / d`` (the variance of ``sum_j W_ij x_j / sqrt d``; for inputs of norm
  sqrt(d) it is 1 on the diagonal) and ``Sigma^(l+1)(x, z) = E[sigma(u) sigma(v)]`` with
  ``(u, v) ~ N(0, [[Sigma^(l)(x,x), Sigma^(l)(x,z)], [Sigma^(l)(x,z), Sigma^(l)(z,z)]])``;
* with ``Sigma_dot^(l+1)(x, z) = E[sigma'(u) sigma'(v)]`` under the same law, the tangent kernel of
  ``h_l`` with respect to the weights below it tends to ``Theta^(l)``:
  ``Theta^(1) = Sigma^(1)``, ``Theta^(l+1) = Theta^(l) Sigma_dot^(l+1) + Sigma^(l+1)``.

Which term each weight matrix contributes, with our conventions: unrolled,
``Theta^(L+1) = sum_{l=1}^{L+1} Sigma^(l) prod_{k=l+1}^{L+1} Sigma_dot^(k)``, and the l-th term is
exactly the part of ``grad f(x) . grad f(z)`` that comes from the weights W_l (W_{L+1} = V):
``df/dW_l = g_l(x) alpha_{l-1}(x)^T / sqrt(m_{l-1})`` (g_l = df/dh_l, alpha_0 = x, m_0 = d), so that
layer's kernel is ``(alpha_{l-1}(x) . alpha_{l-1}(z) / m_{l-1}) (g_l(x) . g_l(z))``. The first factor
tends to Sigma^(l) (for l = 1 it *is* x . z / d: the first layer adds Sigma^(1) times the
back-propagated factors, no limit needed); the second, the kernel of the back-propagated signal,
tends to ``prod_{k > l} Sigma_dot^(k)`` (each layer above multiplies it by
``(1/m) sum_i V_i^2 sigma'(h_i(x)) sigma'(h_i(z))`` or its matrix analogue); for the read-out V,
``g_{L+1} = 1`` and the term is ``alpha_L . alpha_L / m_L -> Sigma^(L+1)``. So the read-out adds
Sigma^(L+1) with no Sigma_dot factor, and the kernel of a network whose read-out is frozen (the
shallow net of Sec. 3.1) lacks that term; a network with frozen hidden layers (random features)
keeps only it. Output signs v_i in {-1, +1} give the same limit as Gaussian v (only v_i^2 = 1
enters). With c linear outputs the limit is ``Theta (x) I_c`` (outputs are independent), ordered
input-major like ``harness.kernel.tangent_kernel``. The test suite checks all of this against
wide networks (tests/test_infinite_width.py).

The Gaussian expectations are computed by a tensor product rule after a Cholesky transform,
``u = l11 z1``, ``v = l21 z1 + l22 z2`` with z1, z2 i.i.d. N(0, 1) (``gaussian_pair_expectation``):
a 1-D rule for the conditional expectation E[h(v) | z1] inside a 1-D rule for E[g(u) ...]. The 1-D
rule is the trapezoidal rule on [-9, 9] (the Gaussian weight beyond is < 1e-18): for an integrand
analytic in the strip |Im z| < tau and decaying like the Gaussian, its error falls like
exp(-2 pi tau / h) with the spacing h (Trefethen & Weideman, SIAM Review 2014), faster than the
Gauss-Hermite rule of the same size, whose nodes spread out as sqrt(2N) and under-resolve the
centre (measured at variances up to 4 on tanh's Sigma_dot: 2e-5 with 96 Gauss-Hermite nodes, 4e-10
with 97 trapezoidal ones). sigma(sqrt(a) z) has its complex singularities at distance tau / sqrt(a)
(tau = pi/2 for tanh), so above variance 2 the node count grows like sqrt(a / 2); the error is then
below 1e-12 for tanh, erf, softplus, swish, GELU and sigmoid at variances 0.15 to 20 (tested; the
recursion's variances are O(1): 1 at the first layer for inputs of norm sqrt(d), below 1 after it
for tanh and erf). Closed forms cross-check it: for erf the arcsine kernel
``E[erf(u) erf(v)] = (2/pi) arcsin(2c / sqrt((1 + 2a)(1 + 2b)))`` and its derivative kernel
``E[erf'(u) erf'(v)] = (4/pi) / sqrt((1 + 2a)(1 + 2b) - 4c^2)`` (a Gaussian integral of
exp(-u^2 - v^2)); for ReLU, which the quadrature cannot integrate accurately (a kink), the
arc-cosine kernels of Cho & Saul (2009).

References: A. Jacot, F. Gabriel, C. Hongler, NeurIPS 2018 (Proposition 1, Theorem 1); C. Williams,
NeurIPS 1997 (the arcsine kernel of erf networks); Y. Cho, L. Saul, NeurIPS 2009.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from harness.models import ACTIVATIONS, NON_SMOOTH_ACTIVATIONS, FullyConnected

METHODS = ("auto", "quadrature", "closed_form")

#: Trapezoidal nodes per dimension of the 2-D rule up to variance ``REFERENCE_VARIANCE`` (97 x 97
#: evaluations per pair of inputs); larger variances get proportionally more (times sqrt(a / 2)).
DEFAULT_NODES = 97

#: Largest variance (of u or v) that ``DEFAULT_NODES`` nodes resolve to ~1e-13.
REFERENCE_VARIANCE = 2.0

#: The rule integrates over z in [-HALF_WIDTH, HALF_WIDTH]: the N(0, 1) weight beyond is < 1e-18.
HALF_WIDTH = 9.0

#: Activations with a closed-form pair of kernels (Sigma, Sigma_dot).
CLOSED_FORMS = ("erf", "relu")

#: Activation values are evaluated in chunks of this many points: one compilation per activation.
_CHUNK = 1 << 16


@dataclasses.dataclass(frozen=True)
class LayerKernels:
    """The covariance recursion of a deep network on n inputs (all n x n, float64).

    Attributes:
      sigma: ``sigma[l - 1]`` is Sigma^(l), l = 1 .. L + 1 (Sigma^(L+1) is the read-out's input kernel,
        also the covariance of the output f at initialization: the NNGP kernel).
      sigma_dot: ``sigma_dot[l - 2]`` is Sigma_dot^(l), l = 2 .. L + 1.
    """

    sigma: tuple[np.ndarray, ...]
    sigma_dot: tuple[np.ndarray, ...]


# --------------------------------------------------------------------------------------------------
# Gaussian expectations
@functools.cache
def _trapezoid(count: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(-HALF_WIDTH, HALF_WIDTH, count)
    w = (z[1] - z[0]) * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z, w


def standard_normal_rule(nodes: int = DEFAULT_NODES, max_variance: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z_i and weights w_i with ``sum_i w_i g(z_i) ~ E[g(z)]``, z ~ N(0, 1), for g(sqrt(a) z).

    The trapezoidal rule on [-9, 9] with ``nodes`` points, or ``nodes * sqrt(a / 2)`` points when the
    largest variance a it will be scaled by exceeds ``REFERENCE_VARIANCE`` (module docstring).
    """
    if not (isinstance(nodes, int) and nodes >= 3):
        raise ValueError(f"nodes must be an integer >= 3, got {nodes!r}")
    if not (math.isfinite(max_variance) and max_variance >= 0):
        raise ValueError(f"max_variance must be finite and >= 0, got {max_variance!r}")
    factor = max(1.0, math.sqrt(max_variance / REFERENCE_VARIANCE))
    count = int(math.ceil(nodes * factor))
    return _trapezoid(count | 1)  # odd: z = 0 is a node


@functools.cache
def _value_and_derivative(activation: str) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    act = ACTIVATIONS[activation]
    return jax.jit(jax.vmap(jax.value_and_grad(act)))


def _evaluate(activation: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigma(z) and sigma'(z) elementwise (float64), in fixed-size chunks (one compilation)."""
    fn = _value_and_derivative(activation)
    flat = np.ascontiguousarray(z, dtype=np.float64).ravel()
    values = np.empty_like(flat)
    derivs = np.empty_like(flat)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        padded = np.zeros(_CHUNK) if part.size < _CHUNK else part
        if part.size < _CHUNK:
            padded[: part.size] = part
        v, d = fn(jnp.asarray(padded, dtype=jnp.float64))
        values[start : start + part.size] = np.asarray(v)[: part.size]
        derivs[start : start + part.size] = np.asarray(d)[: part.size]
    return values.reshape(z.shape), derivs.reshape(z.shape)


def _cholesky_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L = [[l11, 0], [l21, l22]] with L L^T = [[a, c], [c, b]], elementwise; rank-1 pairs allowed."""
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("a covariance matrix needs non-negative variances")
    l11 = np.sqrt(a)
    safe = np.where(l11 > 0, l11, 1.0)
    l21 = np.where(l11 > 0, c / safe, 0.0)
    # b - c^2 / a >= 0 up to round-off for a valid covariance; x = z gives exactly 0.
    l22 = np.sqrt(np.maximum(b - l21 * l21, 0.0))
    return l11, l21, l22


def gaussian_pair_expectation(
    g: Callable[[np.ndarray], np.ndarray],
    h: Callable[[np.ndarray], np.ndarray],
    a: np.ndarray | float,
    b: np.ndarray | float,
    c: np.ndarray | float,
    nodes: int = DEFAULT_NODES,
) -> np.ndarray:
    """``E[g(u) h(v)]`` for ``(u, v) ~ N(0, [[a, c], [c, b]])``, elementwise over arrays a, b, c.

    Tensor trapezoidal rule (``standard_normal_rule``) after the Cholesky transform ``u = l11 z1``,
    ``v = l21 z1 + l22 z2``: ``sum_i w_i g(u_i) sum_j w_j h(v_ij)``. ``g`` and ``h`` act elementwise
    on NumPy arrays.

    Raises:
      ValueError: a negative variance or a covariance with |c| > sqrt(a b) (beyond round-off).
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(t, dtype=np.float64) for t in (a, b, c)))
    _check_covariance(a, b, c)
    z, w = standard_normal_rule(nodes, float(max(np.max(a, initial=0.0), np.max(b, initial=0.0))))
    l11, l21, l22 = _cholesky_2x2(a, b, c)
    u = l11[..., None] * z
    v = (l21[..., None] * z)[..., None] + (l22[..., None] * z)[..., None, :]
    inner = np.asarray(h(v)) @ w  # E[h(v) | z1 = z_i]
    return np.sum(w * np.asarray(g(u)) * inner, axis=-1)


def _check_covariance(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    if np.any(~np.isfinite(a)) or np.any(~np.isfinite(b)) or np.any(~np.isfinite(c)):
        raise ValueError("the covariance holds non-finite entries")
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("a covariance matrix needs non-negative variances")
    excess = np.abs(c) - np.sqrt(a * b)
    if np.any(excess > 1e-9 * np.maximum(np.sqrt(a * b), 1e-300)):
        raise ValueError("|cov(u, v)| exceeds sqrt(var u var v): not a covariance matrix")


def _pair_kernels_quadrature(activation: str, a, b, c, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """(E[sigma(u) sigma(v)], E[sigma'(u) sigma'(v)]) for each pair, by the 2-D rule."""
    z, w = standard_normal_rule(nodes, float(max(np.max(a), np.max(b))))
    nodes = z.size
    l11, l21, l22 = _cholesky_2x2(a, b, c)
    out_s = np.empty(a.shape)
    out_d = np.empty(a.shape)
    # Pairs in blocks of ~2^20 evaluations: memory stays bounded for many inputs.
    per_block = max(1, (1 << 20) // (nodes * nodes))
    for start in range(0, a.size, per_block):
        sl = slice(start, start + per_block)
        u = l11[sl, None] * z
        v = (l21[sl, None] * z)[:, :, None] + (l22[sl, None] * z)[:, None, :]
        su, du = _evaluate(activation, u)
        sv, dv = _evaluate(activation, v)
        out_s[sl] = np.sum(w * su * (sv @ w), axis=-1)
        out_d[sl] = np.sum(w * du * (dv @ w), axis=-1)
    return out_s, out_d


def _pair_kernels_closed_form(activation: str, a, b, c) -> tuple[np.ndarray, np.ndarray]:
    if activation == "erf":
        p = (1.0 + 2.0 * a) * (1.0 + 2.0 * b)
        s = (2.0 / math.pi) * np.arcsin(np.clip(2.0 * c / np.sqrt(p), -1.0, 1.0))
        d = (4.0 / math.pi) / np.sqrt(p - 4.0 * c * c)
        return s, d
    if activation == "relu":
        norm = np.sqrt(a * b)
        safe = np.where(norm > 0, norm, 1.0)
        theta = np.arccos(np.clip(np.where(norm > 0, c / safe, 1.0), -1.0, 1.0))
        s = norm / (2.0 * math.pi) * (np.sin(theta) + (math.pi - theta) * np.cos(theta))
        d = (math.pi - theta) / (2.0 * math.pi)
        return s, d
    raise ValueError(f"no closed form for activation {activation!r}; closed forms exist for {', '.join(CLOSED_FORMS)}")


def _resolve_method(activation: str, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if method == "auto":
        return "closed_form" if activation in CLOSED_FORMS else "quadrature"
    if method == "closed_form" and activation not in CLOSED_FORMS:
        raise ValueError(f"no closed form for activation {activation!r}; closed forms exist for {', '.join(CLOSED_FORMS)}")
    if method == "quadrature" and activation in NON_SMOOTH_ACTIVATIONS:
        raise ValueError(
            f"the quadrature needs a smooth activation, {activation!r} has a kink; use method='closed_form'"
        )
    return method


# --------------------------------------------------------------------------------------------------
# The recursion
def layer_kernels(
    activation: str, depth: int, xs, *, method: str = "auto", nodes: int = DEFAULT_NODES
) -> LayerKernels:
    """Sigma^(1..L+1) and Sigma_dot^(2..L+1) of a depth-L network on the inputs xs (n, d).

    Args:
      activation: a key of ``harness.models.ACTIVATIONS``.
      depth: L >= 1, the number of hidden layers.
      xs: inputs, shape (n, d); Sigma^(1) = xs xs^T / d.
      method: ``"auto"`` (closed form for erf and relu, quadrature otherwise), ``"quadrature"`` or
        ``"closed_form"``.
      nodes: quadrature nodes per dimension up to variance 2 (``standard_normal_rule``).
    """
    method = _resolve_method(activation, method)
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if not (isinstance(nodes, int) and nodes >= 3):
        raise ValueError(f"nodes must be an integer >= 3, got {nodes!r}")
    x = np.asarray(xs, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"xs must be a batch of inputs of shape (n, d), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("xs holds non-finite entries")
    n, d = x.shape
    rows, cols = np.triu_indices(n)
    sigma = [x @ x.T / d]
    sigma_dot = []
    for _ in range(depth):
        s = sigma[-1]
        diag = np.diag(s)
        a, b, c = diag[rows], diag[cols], s[rows, cols]
        if method == "closed_form":
            ps, pd = _pair_kernels_closed_form(activation, a, b, c)
        else:
            ps, pd = _pair_kernels_quadrature(activation, a, b, c, nodes)
        sigma.append(_symmetric(n, rows, cols, ps))
        sigma_dot.append(_symmetric(n, rows, cols, pd))
    return LayerKernels(tuple(sigma), tuple(sigma_dot))


def _symmetric(n: int, rows: np.ndarray, cols: np.ndarray, upper: np.ndarray) -> np.ndarray:
    out = np.empty((n, n))
    out[rows, cols] = upper
    out[cols, rows] = upper
    return out


def infinite_width_ntk(
    net: FullyConnected, xs, *, method: str = "auto", nodes: int = DEFAULT_NODES
) -> np.ndarray:
    """The limit of ``tangent_kernel(net, params, fixed, xs)`` as every hidden width grows.

    ``Theta = sum over trained layers l of Sigma^(l) prod_{k > l} Sigma_dot^(k)`` (module docstring);
    with all layers trained this is the recursion ``Theta^(l+1) = Theta^(l) Sigma_dot^(l+1) +
    Sigma^(l+1)`` of the notes (Sec. 4). The widths of ``net`` play no role.

    Args:
      net: a ``FullyConnected`` network with the NTK parameterization and a linear head.
      xs: inputs, shape (n, d) with d = net.input_dim.
      method, nodes: see ``layer_kernels``.

    Returns:
      The (n c) x (n c) float64 kernel, input-major, ``Theta (x) I_c``.

    Raises:
      ValueError: standard parameterization (its kernel grows like m: no finite limit), a
        non-linear head (phi'(f) is random at every width: no deterministic limit), or bad inputs.
    """
    if not isinstance(net, FullyConnected):
        raise ValueError(f"the infinite-width kernel is derived for FullyConnected networks, got {type(net).__name__}")
    if net.parameterization != "ntk":
        raise ValueError(
            "the standard parameterization's tangent kernel grows like the width (Appendix B): "
            "it has no finite limit; use parameterization='ntk'"
        )
    if net.head != "linear":
        raise ValueError(f"the deterministic limit needs a linear head, got head={net.head!r}")
    if net.linear_layers:
        raise ValueError(f"the recursion here has one activation in every layer, got linear layers {net.linear_layers}")
    x = np.asarray(xs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != net.input_dim:
        raise ValueError(f"xs must have shape (n, {net.input_dim}), got {x.shape}")
    kernels = layer_kernels(net.activation, net.depth, x, method=method, nodes=nodes)
    theta = ntk_from_layer_kernels(kernels, net.depth, train_hidden=net.train_hidden, train_output=net.train_output)
    if net.num_outputs > 1:
        theta = np.kron(theta, np.eye(net.num_outputs))
    return theta


def ntk_from_layer_kernels(
    kernels: LayerKernels, depth: int, *, train_hidden: bool = True, train_output: bool = True
) -> np.ndarray:
    """Theta of a depth-L network (L <= the depth the kernels were computed for), scalar output.

    ``sum over trained layers l of Sigma^(l) prod_{l < k <= L+1} Sigma_dot^(k)``, evaluated as the
    recursion of the notes; a deeper recursion's first layers serve every shallower depth.
    """
    available = len(kernels.sigma_dot)
    if not isinstance(depth, int) or not 1 <= depth <= available:
        raise ValueError(f"depth must be an integer in [1, {available}], got {depth!r}")
    theta = np.zeros_like(kernels.sigma[0])
    for l in range(depth + 1):  # weights W_1 .. W_L, then the read-out V (l = L)
        if l > 0:
            theta = theta * kernels.sigma_dot[l - 1]
        if (train_output if l == depth else train_hidden):
            theta = theta + kernels.sigma[l]
    return theta
