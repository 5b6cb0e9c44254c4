"""Spectral norm of the Hessian of a model output with respect to its weights.

"Hessian" always means ``H = d^2 f(w; x) / dw^2`` of the model output, never of a loss, and its
spectral norm is ``max(|lambda_max|, |lambda_min|)``: H is indefinite (CLAIMS.md, conventions).

Three methods behind one function, ``hessian_spectral_norm(..., method=...)``:

* ``"lanczos"`` (default): Lanczos on Hessian-vector products, the vectors on the device and the
  scalar bookkeeping on the host (``lanczos_extremes``). Each step costs one Hessian-vector product by
  forward-over-reverse differentiation (``jvp`` of ``grad``), about two to three gradients. The
  Krylov basis is kept for partial re-orthogonalization (Simon's omega recurrence decides when a
  modified Gram-Schmidt pass is needed; ``reorth="full"`` does it every step) unless it would not fit
  the memory budget, in which case the plain three-term recurrence runs (``reorth="none"``, see
  ``lanczos_extremes``); dot products, norms and the tridiagonal eigenproblem are done in
  float64 whatever the model dtype. The iteration stops when the error bounds of both extreme Ritz
  values fall below ``tol`` times the current norm estimate, or at the iteration cap. A Ritz value
  with residual r = ``beta_j |s_j|`` lies within r of an eigenvalue, and within r^2 / gap when the
  gap to the rest of the spectrum is ``gap`` (Kato-Temple; the neighbouring Ritz value gives the
  gap): ``ritz_error_bound``. Stopping on r alone ran to errors 100-1000 times below tol. Stopping on the relative
  change between steps is unsafe here: the spectra are nearly symmetric about 0 with clustered top
  eigenvalues, and the estimate can stall for a few steps before moving on.
* ``"power"``: power iteration on H stopped on the relative change of |Rayleigh quotient|: the
  obvious baseline, kept for benchmarks and never used by a claim.
* ``"dense"``: the full Hessian by ``jax.hessian`` and ``numpy.linalg.eigvalsh``: exact, for small
  models only (it is the reference the other methods are tested against).

References: C. Lanczos (1950); Golub & Van Loan, *Matrix Computations*, Sec. 10.1 (Ritz residual
bound) and Sec. 10.3 (re-orthogonalization); Parlett, *The Symmetric Eigenvalue Problem*, Ch. 13.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax
from jax.flatten_util import ravel_pytree

from harness import rng

#: Largest number of trained parameters for which the dense Hessian (p x p float64) is formed.
DENSE_MAX_PARAMS = 6000

#: Default memory allowed for the stored Krylov basis, in bytes (``reorth="auto"``).
DEFAULT_BASIS_BUDGET = 2 * 1024**3

METHODS = ("lanczos", "power", "dense")

F64 = jnp.float64


@dataclasses.dataclass(frozen=True)
class HessianNorm:
    """Result of a spectral-norm estimate.

    Attributes:
      spectral_norm: ``max(|lambda_max|, |lambda_min|)``.
      lambda_max, lambda_min: the extreme eigenvalues (for ``"power"`` only the dominant one is
        estimated and both fields hold the signed dominant eigenvalue's bounds: see ``method``).
      iterations: Hessian-vector products used (0 for ``"dense"``).
      residual: convergence measure: the largest Ritz residual of the two extreme Ritz pairs divided
        by the norm estimate (Lanczos), the last relative change (power), 0 (dense).
      error_bound: Lanczos: the larger error bound of the two extreme Ritz values
        (``ritz_error_bound``) divided by the norm estimate, what the stopping rule compares with
        tol; the residual for the other methods.
      converged: whether the stopping rule was met before the iteration cap.
      method: the method that produced it.
      reorthogonalizations: Lanczos steps that re-orthogonalized against the stored basis.
    """

    spectral_norm: float
    lambda_max: float
    lambda_min: float
    iterations: int
    residual: float
    converged: bool
    method: str
    reorthogonalizations: int = 0
    error_bound: float | None = None


@dataclasses.dataclass(frozen=True)
class _MethodRef:
    """A bound method that compares by value: ``net.apply`` of two equal networks is one key."""

    obj: object
    func: Callable

    def __call__(self, *args, **kwargs):
        return self.func(self.obj, *args, **kwargs)


def cacheable(fn: Callable) -> Callable:
    """``fn`` in a form that ``jax.jit`` can use as a static argument without recompiling.

    Python compares bound methods by the identity of their object, so ``net.apply`` of a network
    rebuilt with the same description would miss the compilation cache; a frozen network compared
    by value does not.
    """
    obj, func = getattr(fn, "__self__", None), getattr(fn, "__func__", None)
    if obj is None or func is None:
        return fn
    try:
        hash(obj)
    except TypeError:
        return fn
    return _MethodRef(obj, func)


def _flat_fn(fn: Callable, params, args) -> tuple[Callable, jax.Array]:
    flat, unravel = ravel_pytree(params)
    return (lambda w: fn(unravel(w), *args)), flat


def hessian_vector_product(fn: Callable, params, *args) -> Callable:
    """``v -> H v`` on pytrees shaped like params (forward-over-reverse, no flattening)."""
    grad = jax.grad(lambda p: fn(p, *args))

    def hvp(v):
        return jax.jvp(grad, (params,), (v,))[1]

    return hvp


@functools.partial(jax.jit, static_argnames=("fn",))
def _hessian_matrix(fn: Callable, params, *args) -> jax.Array:
    f, flat = _flat_fn(fn, params, args)
    return jax.hessian(f)(flat)


def hessian_matrix(fn: Callable, params, *args) -> jax.Array:
    """The full Hessian (p x p) of the scalar ``fn(params, *args)`` w.r.t. the flattened params.

    Rows and columns follow ``jax.flatten_util.ravel_pytree(params)`` (dict keys sorted).
    """
    return _hessian_matrix(cacheable(fn), params, *args)


def _leaf_dot(x: jax.Array, y: jax.Array) -> jax.Array:
    """x . y accumulated in float64.

    For narrower leaves the products are formed in the leaf dtype and summed in float64: each
    product's rounding is at most eps/2 of it, so the error is at most eps/2 sum |x_i y_i| <= eps/2
    |x| |y|, independent of the length, the same order as storing the vectors in that dtype. On a CPU
    this is three times faster than ``vdot(..., preferred_element_type=float64)``, which converts
    both operands before multiplying (1.7 ms against 0.57 ms for 2.1e6 float32 numbers, 2 cores).
    """
    if x.dtype == F64:
        return jnp.vdot(x.ravel(), y.ravel())
    return jnp.sum(x * y, dtype=F64)


def _tree_dot(a, b) -> jax.Array:
    """Inner product of two pytrees of the same structure, accumulated in float64."""
    leaves = [_leaf_dot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]
    return functools.reduce(jnp.add, leaves)


def _tree_axpy(alpha: jax.Array, x, y):
    """y + alpha x, with the scalar cast to each leaf's dtype."""
    return jax.tree_util.tree_map(lambda xi, yi: yi + alpha.astype(yi.dtype) * xi, x, y)


def _tree_scale(alpha: jax.Array, x):
    return jax.tree_util.tree_map(lambda xi: alpha.astype(xi.dtype) * xi, x)


def _project_out(basis, w, count: jax.Array):
    """w minus its projections on the first ``count`` stored basis vectors (modified Gram-Schmidt).

    Only the filled rows are read, so the cost grows with the Lanczos step, not with the cap. A
    classical Gram-Schmidt pass written as two blocked matrix-vector products (coefficients, then
    update) was tried and is 2x slower on a CPU (106 ms against 53 ms for 38 float32 rows of 2.1e6
    numbers): XLA's float64-accumulating reductions over stacked rows run far below memory
    bandwidth, while this loop's per-row dot and axpy stream.
    """

    def body(i, w):
        row = jax.tree_util.tree_map(lambda b: b[i], basis)
        return _tree_axpy(-_tree_dot(row, w), row, w)

    return lax.fori_loop(0, count, body, w)


REORTH_MODES = ("partial", "full", "none")
#: Lanczos stopping rules (``lanczos_extremes``).
STOP_RULES = ("error-bound", "residual")

def ritz_error_bound(residual: float, gap: float) -> float:
    """Bound on the distance from a Ritz value to an eigenvalue: ``min(r, r^2 / gap)``.

    ``r = beta_j |s_j|`` is the Ritz pair's residual norm: some eigenvalue lies within r (Golub &
    Van Loan, Thm 8.1.15), and within r^2 / gap when no other eigenvalue is closer than ``gap``
    (Kato-Temple; Parlett, *The Symmetric Eigenvalue Problem*, Thm 11.7.1). The gap used is the
    distance to the neighbouring Ritz value: the standard estimate of the spectral gap, exact once the
    neighbour has converged, too large while an eigenvalue close to the extreme one has not been
    found yet (then r^2 / gap is optimistic; the residual r alone is a bound without assumptions).
    """
    residual, gap = float(residual), float(gap)
    return min(residual, residual**2 / gap) if gap > 0 else residual


class LanczosSettings(NamedTuple):
    """What a Lanczos run is asked for."""

    max_iters: int  # k: the iteration cap and the number of stored basis vectors
    reorth: str  # "partial", "full" or "none"
    stop: str  # "error-bound" or "residual"
    dtype_eps: float  # machine epsilon of the vectors' dtype
    psi: float  # rounding added to the omega recurrence at each step

    @property
    def stores_basis(self) -> bool:
        return self.reorth != "none"


def lanczos_settings(v0, max_iters: int, reorth: str, stop: str) -> LanczosSettings:
    """The settings of a run from its start vector (its dtypes and size) and the user's choices."""
    if max_iters < 2:
        raise ValueError(f"max_iters must be >= 2, got {max_iters}")
    if reorth not in REORTH_MODES:
        raise ValueError(f"unknown reorth mode {reorth!r}; valid: {', '.join(REORTH_MODES)}")
    if stop not in STOP_RULES:
        raise ValueError(f"unknown stop rule {stop!r}; valid: {', '.join(STOP_RULES)}")
    leaves = jax.tree_util.tree_leaves(v0)
    dtype_eps = max(float(jnp.finfo(leaf.dtype).eps) for leaf in leaves)
    num_params = sum(leaf.size for leaf in leaves)
    # Rounding added to the omega recurrence at each step. Simon (1984) and Larsen's PROPACK take
    # eps * sqrt(p) / 2, the error of a length-p inner product accumulated in working precision: kept
    # when the vectors are float64 (dot products are then accumulated in their own precision). With
    # narrower vectors the dot products are accumulated in float64 and the local loss of
    # orthogonality is the rounding of the stored vectors, |q_k . delta| <= eps |delta| ~ eps: psi =
    # eps. Measured on depth 1-3 tanh / swish networks of 1.3e5 to 8.4e6 float32 weights over 50-60
    # steps without re-orthogonalization, this estimate stays 2 to 6 times above the actual
    # max_k |q_{j+1} . q_k| at every step, while eps * sqrt(p) / 2 overestimates it 300- to
    # 4000-fold and made partial re-orthogonalization fire on most steps (tests/test_hessian.py
    # checks that the stored basis stays semi-orthogonal, in float32 and float64, under this psi).
    wider_dots = dtype_eps > float(jnp.finfo(F64).eps)
    psi = dtype_eps if wider_dots else dtype_eps * math.sqrt(num_params) / 2
    return LanczosSettings(int(max_iters), reorth, stop, dtype_eps, psi)


def _three_term(matvec, operands, q, q_prev, beta_prev):
    """r = A q_j - alpha_j q_j - beta_{j-1} q_{j-1} with alpha_j = q_j . A q_j, beta_j = ||r|| (dot
    products in float64), and q_{j+1} = r / beta_j (Golub & Van Loan, Alg. 10.1.1): returns
    (q_{j+1}, [alpha_j, beta_j])."""
    r = matvec(q, *operands)
    alpha = _tree_dot(q, r)
    r = jax.tree_util.tree_map(
        lambda ri, qi, pi: ri - alpha.astype(ri.dtype) * qi - beta_prev.astype(ri.dtype) * pi, r, q, q_prev
    )
    beta = jnp.sqrt(_tree_dot(r, r))
    return _tree_scale(_safe_inverse(beta), r), jnp.stack([alpha, beta])


def _safe_inverse(x: jax.Array) -> jax.Array:
    return jnp.where(x > 0, 1.0 / jnp.where(x > 0, x, 1.0), 0.0)


def _row(basis, i):
    return jax.tree_util.tree_map(lambda b: lax.dynamic_index_in_dim(b, i, 0, keepdims=False), basis)


def _set_row(basis, i, vector):
    """``basis`` with row i set to ``vector``; i past the last row leaves it as it was."""
    last = jax.tree_util.tree_leaves(basis)[0].shape[0] - 1
    inside = i <= last
    return jax.tree_util.tree_map(
        lambda b, x: lax.dynamic_update_index_in_dim(b, jnp.where(inside, x, b[last]), jnp.minimum(i, last), 0),
        basis, vector,
    )


@functools.partial(jax.jit, static_argnames=("matvec",), donate_argnames=("q", "q_prev"))
def _ring_step(matvec, operands, q, q_prev, beta_prev):
    """Step j without a stored basis: (q_j, q_{j-1}) -> (q_j, q_{j+1}, [alpha_j, beta_j]). The
    donated buffers are reused in place (JAX pairs donated inputs with outputs in argument order):
    q_j passes through and q_{j+1} is written over q_{j-1}, which each element reads just before."""
    q_next, scalars = _three_term(matvec, operands, q, q_prev, beta_prev)
    return q, q_next, scalars


@functools.partial(jax.jit, static_argnames=("matvec",), donate_argnames=("basis",))
def _basis_step(matvec, operands, basis, beta_prev, j):
    """Step j with the vectors as rows of the basis: reads q_j and q_{j-1}, writes q_{j+1} into row
    j + 1 (not at the last step, which has no row for it). Each vector is written once: a separate
    copy into the basis cost as much again as the step's own vector operations."""
    q_next, scalars = _three_term(matvec, operands, _row(basis, j), _row(basis, jnp.maximum(j - 1, 0)), beta_prev)
    return _set_row(basis, j + 1, q_next), scalars


@functools.partial(jax.jit, static_argnames=("passes",), donate_argnames=("basis",))
def _reorthogonalize_row(basis, j, passes: int):
    """Row j projected ``passes`` times against rows 0 .. j - 1 and renormalized, in place; also the
    norm of the projection (the residual's norm is beta_{j-1} times it)."""
    q = _row(basis, j)
    for _ in range(passes):
        q = _project_out(basis, q, j)
    norm = jnp.sqrt(_tree_dot(q, q))
    return _set_row(basis, j, _tree_scale(_safe_inverse(norm), q)), norm


def _tree_norm(tree) -> jax.Array:
    return jnp.sqrt(_tree_dot(tree, tree))


def _tree_unit(tree):
    return _tree_scale(1.0 / _tree_norm(tree), tree)


@jax.jit
def _start_vectors(v0):
    """q_0 = v0 / ||v0|| (a new array) and q_{-1} = 0: one small program per shape (eagerly, the
    scaling and the zeros were compiled one operation and one leaf at a time)."""
    return _tree_unit(v0), jax.tree_util.tree_map(jnp.zeros_like, v0)


@functools.partial(jax.jit, donate_argnames=("basis",))
def _start_basis(v0, basis):
    """``basis`` with q_0 = v0 / ||v0|| in row 0."""
    return _set_row(basis, 0, _tree_unit(v0))


def _empty_basis(v0, rows: int):
    """Storage for ``rows`` basis vectors shaped like v0, made on the host and moved to v0's device
    (zeros compiled on the device cost 45 ms per leaf shape; rows not yet written are never read)."""
    def empty(x):
        return jax.device_put(np.zeros((rows, *x.shape), x.dtype), next(iter(x.devices())))

    return jax.tree_util.tree_map(empty, v0)


class _RingVectors:
    """The vectors of a run without a stored basis: q_j and q_{j-1} only (memory O(p))."""

    def __init__(self, matvec, operands, v0):
        self.matvec, self.operands = matvec, operands
        self.q, self.q_prev = _start_vectors(v0)
        self.basis = None

    def step(self, beta_prev: float, j: int) -> np.ndarray:
        self.q_prev, self.q, scalars = _ring_step(self.matvec, self.operands, self.q, self.q_prev, np.float64(beta_prev))
        return np.asarray(scalars)


class _BasisVectors:
    """The vectors of a run as the rows of its stored basis (q_j in row j)."""

    def __init__(self, matvec, operands, v0, basis, rows: int):
        self.matvec, self.operands = matvec, operands
        self.basis = _start_basis(v0, _empty_basis(v0, rows) if basis is None else basis)

    def step(self, beta_prev: float, j: int) -> np.ndarray:
        self.basis, scalars = _basis_step(self.matvec, self.operands, self.basis, np.float64(beta_prev), np.int32(j))
        return np.asarray(scalars)

    def reorthogonalize(self, j: int, passes: int) -> float:
        self.basis, kept = _reorthogonalize_row(self.basis, np.int32(j), passes)
        return float(kept)


class Tridiagonal:
    """The scalars of a run on the host after j steps: T_j and the orthogonality estimates.

    ``alphas[i]``, ``betas[i]`` (i < j) are the diagonal and the off-diagonal (beta_i = ||r_i||, the
    norm of step i's residual vector); ``omega`` and ``omega_prev`` are Simon's estimates of
    q_j . q_i and q_{j-1} . q_i; ``force``: re-orthogonalize the next vector too (Simon: after a
    re-orthogonalization the next one is done as well); ``reorthogonalizations``: steps that
    projected their vector against the basis; ``bound``: the largest Gershgorin row sum of T so far,
    an upper bound on ||T|| that needs no eigenproblem.
    """

    def __init__(self, settings: LanczosSettings):
        k = settings.max_iters
        self.settings = settings
        self.j = 0
        self.alphas, self.betas = np.zeros(k), np.zeros(k)
        self.omega, self.omega_prev = np.zeros(k), np.zeros(k)
        self.force = False
        self.reorthogonalizations = 0
        self.bound = 0.0

    def beta_prev(self) -> float:
        return float(self.betas[self.j - 1]) if self.j > 0 else 0.0

    def omega_next(self, alpha: float, beta: float) -> np.ndarray:
        """Simon's recurrence: the estimates omega_{j+1,i} of q_{j+1} . q_i (i <= j) after step j.

        The unit diagonal omega_{j,j} = 1 is stored as 0 at every step, the initial one included: it
        enters only through beta_{j-1} omega_{j,j} - beta_{j-1} omega_{j-1,j-1}, which cancels when
        both follow one convention (a 1 stored at step 0 alone showed an O(1) loss at step 1 and
        forced two needless re-orthogonalizations in every run). omega_{j+1,j} is the rounding psi.
        """
        j, omega, betas, alphas, psi = self.j, self.omega, self.betas, self.alphas, self.settings.psi
        omega_next = np.zeros_like(omega)
        if j > 0:  # entries i < j: beta_i omega_{j,i+1} + (alpha_i - alpha_j) omega_{j,i}
            # + beta_{i-1} omega_{j,i-1} - beta_{j-1} omega_{j-1,i}, rounded outwards by psi
            t = betas[:j] * omega[1 : j + 1] + (alphas[:j] - alpha) * omega[:j] - self.beta_prev() * self.omega_prev[:j]
            t[1:] += betas[: j - 1] * omega[: j - 1]
            t += np.where(t >= 0, psi, -psi) * (betas[:j] + beta)
            omega_next[:j] = t / (beta if beta > 0 else 1.0)
        omega_next[j] = psi
        return omega_next

    def reorthogonalize_now(self, omega_next: np.ndarray) -> bool:
        """Whether step j projects its vector against the stored basis: every step ("full"), when
        the estimated loss of orthogonality exceeds sqrt(eps) or the previous step did it
        ("partial")."""
        if self.settings.reorth == "full":
            return True
        if self.settings.reorth == "partial":
            return self.force or float(np.max(np.abs(omega_next))) > math.sqrt(self.settings.dtype_eps)
        return False

    def broke(self, alpha: float, beta: float) -> bool:
        """Invariant subspace reached (or the operator is 0): beta is round-off next to ||T||."""
        return beta <= 100.0 * self.settings.dtype_eps * max(self.bound, abs(alpha) + self.beta_prev())

    def append(self, alpha: float, beta: float, omega_next: np.ndarray, reorthogonalized: bool) -> None:
        j = self.j
        if reorthogonalized:
            omega_next = np.where(np.arange(len(omega_next)) <= j, self.settings.psi, 0.0)
        self.bound = max(self.bound, abs(alpha) + self.beta_prev() + beta)
        self.alphas[j], self.betas[j] = alpha, beta
        self.omega_prev, self.omega = self.omega, omega_next
        self.force = reorthogonalized and not self.force and self.settings.reorth == "partial"
        self.reorthogonalizations += int(reorthogonalized)
        self.j = j + 1


class RitzCheck(NamedTuple):
    """The stopping test after a step: the extreme Ritz values of T_{j+1} and their error bounds."""

    converged: bool
    theta_max: float
    theta_min: float
    residual: float  # relative to max(|theta|)
    error_bound: float  # relative to max(|theta|)


def ritz_check(tri: Tridiagonal, tol: float, broke: bool) -> RitzCheck:
    """The stopping test after step j = tri.j - 1 (T_{j+1} and beta_j): converged when the error
    bounds of both extreme Ritz values (``ritz_error_bound``, or their residuals for
    ``stop="residual"``) are <= tol * max|theta|, from step 1 on, or at once when step j broke down
    (its Ritz values are exact). T_{j+1} is at most max_iters wide: its eigenproblem is solved
    exactly, on the host."""
    size = tri.j
    beta = float(tri.betas[size - 1])
    # LAPACK's dstev wants an off-diagonal of length >= 1; at size 1 the extra entry is not read.
    evals, evecs, info = scipy.linalg.lapack.dstev(tri.alphas[:size], tri.betas[: max(size - 1, 1)])
    if info != 0:
        raise np.linalg.LinAlgError(f"the tridiagonal eigenproblem of Lanczos step {size - 1} did not converge (LAPACK info {info})")
    last = evecs[-1]
    theta_max, theta_min = float(evals[-1]), float(evals[0])
    gap_max, gap_min = (float(evals[-1] - evals[-2]), float(evals[1] - evals[0])) if size > 1 else (0.0, 0.0)
    r_max, r_min = beta * abs(float(last[-1])), beta * abs(float(last[0]))
    scale = max(abs(theta_max), abs(theta_min))
    residual = max(r_max, r_min)
    if tri.settings.stop == "residual":
        error = residual
    else:
        error = max(ritz_error_bound(r_max, gap_max), ritz_error_bound(r_min, gap_min))
    safe_scale = scale if scale > 0 else 1.0
    return RitzCheck(
        converged=broke or (size >= 2 and error <= tol * scale),
        theta_max=theta_max,
        theta_min=theta_min,
        residual=0.0 if broke else residual / safe_scale,
        error_bound=0.0 if broke else error / safe_scale,
    )


def lanczos_extremes(
    matvec: Callable,
    v0,
    *,
    max_iters: int,
    tol: float,
    operands: tuple = (),
    reorth: str = "partial",
    basis=None,
    stop: str = "error-bound",
) -> dict:
    """Extreme eigenvalues of a symmetric operator by Lanczos: the vectors on the device, the
    scalars on the host.

    Each step is one call of a compiled vector step (the matrix-vector product, two dot products and
    the three-term update, ``_three_term``; the vectors are the rows of the stored basis, or two
    buffers without one), then, on the host, Simon's orthogonality estimate, a re-orthogonalization
    when it asks for one (a second compiled call), and the Ritz check on the exact tridiagonal
    eigenproblem. Keeping the bookkeeping out of the compiled program makes it a product and a few
    vector operations: a whole run as one ``lax.while_loop``, with two padded eigenproblems and the
    re-orthogonalization branch inside, took 2.3-2.8 s to compile for each network shape (a suite
    run compiles about a hundred), the step and the re-orthogonalization 0.7-1.2 s together
    (measured on C4 swish depth 3 and C9 m_b = 3: 20.0 s against 11.6 s for their ten shapes). The
    host reads two float64 scalars per step, which the next step needs anyway; the values are those
    of the single-loop version to round-off (1.7e-15 relative on those records).

    Vectors are pytrees (the shape of the weights), which avoids flattening copies on every
    product; inner products and the tridiagonal eigenproblem are in float64.

    Args:
      matvec: ``(v, *operands) -> A v`` on pytrees shaped like v0; hashable (it is a static argument
        of the compiled step: a module-level function, or ``harness.hessian.cacheable`` of a method).
      v0: start vector (need not be normalized; it is not modified); its leaves' dtypes are the
        working dtypes.
      max_iters: iteration cap; also the number of stored basis vectors.
      tol: stop when the error bounds of both extreme Ritz values (``ritz_error_bound``: the
        smaller of the residual ``beta_j |s_j|`` and residual^2 / gap) are <= tol * max|theta|.
      operands: arrays passed to matvec (traced, so new values need no new compilation).
      stop: ``"error-bound"`` (default, as above) or ``"residual"``: the residuals themselves
        <= tol * max|theta| (the earlier rule, kept as the benchmarks' baseline).
      reorth: ``"full"``: two modified Gram-Schmidt passes against the stored basis every step
        (the reference; it costs O(j p) memory traffic per step, which dominates the cheap
        single-input Hessian-vector products). ``"partial"`` (default): Simon's partial
        re-orthogonalization: the loss of orthogonality ``omega_{j+1,k} ~ q_{j+1} . q_k`` is tracked
        by its scalar recurrence and a modified Gram-Schmidt pass against the stored basis is done,
        on two consecutive vectors, only when ``max_k |omega| > sqrt(eps)``: semi-orthogonality,
        which keeps the Ritz values as accurate as full re-orthogonalization does (Simon 1984).
        ``"none"``: three-term recurrence only, no stored basis: memory O(p) instead of
        O(max_iters p). Orthogonality is then lost once a Ritz value converges; that adds spurious
        copies of converged Ritz values but does not move the extremes (Paige 1976), so the norm
        stays right, while the residual test may stop a few steps late or early on a copy.
      basis: optional storage for the Krylov basis, a pytree with leaves of shape
        ``(max_iters, *leaf.shape)``, consumed (its buffers are reused); rows beyond the current
        step are never read, so a buffer recycled from an earlier run needs no zeroing.

    Returns:
      A dict: floats ``lambda_max``, ``lambda_min``, ``residual`` and ``error_bound`` (relative),
      ints ``iterations`` (matvecs) and ``reorthogonalizations``, bool ``converged``, and ``basis``
      (the storage, for reuse; None without one).
    """
    settings = lanczos_settings(v0, max_iters, reorth, stop)
    k = settings.max_iters
    vecs = _BasisVectors(matvec, operands, v0, basis, k) if settings.stores_basis else _RingVectors(matvec, operands, v0)
    tri = Tridiagonal(settings)
    passes = 2 if reorth == "full" else 1  # "twice is enough" (Kahan-Parlett) for full; one pass
    # restores the semi-orthogonality that partial re-orthogonalization promises
    while True:
        j = tri.j
        alpha, beta = (float(s) for s in vecs.step(tri.beta_prev(), j))
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            return _lanczos_result(tri, None, vecs.basis)  # the operator overflowed
        omega_next = tri.omega_next(alpha, beta)
        # At the cap q_{j+1} has no row and is never used: its projection would only shrink beta_j,
        # so the last residual bound is left as the larger, cautious one.
        reorthogonalized = settings.stores_basis and j + 1 < k and tri.reorthogonalize_now(omega_next)
        if reorthogonalized:
            beta *= vecs.reorthogonalize(j + 1, passes)
        broke = tri.broke(alpha, beta)
        tri.append(alpha, beta, omega_next, reorthogonalized)
        check = ritz_check(tri, float(tol), broke)
        if check.converged or tri.j >= k:
            return _lanczos_result(tri, check, vecs.basis)


def _lanczos_result(tri: Tridiagonal, check: RitzCheck | None, basis) -> dict:
    """What ``lanczos_extremes`` returns; check None: a step was not finite (NaN values)."""
    iterations = tri.j + (check is None)  # a non-finite step is counted, though not appended
    if check is None:
        check = RitzCheck(False, *(float("nan"),) * 4)
    return {
        "lambda_max": check.theta_max,
        "lambda_min": check.theta_min,
        "iterations": iterations,
        "residual": check.residual,
        "error_bound": check.error_bound,
        "converged": check.converged,
        "reorthogonalizations": tri.reorthogonalizations,
        "basis": basis,
    }


@dataclasses.dataclass(frozen=True)
class _HessianProduct:
    """``(v, params, args) -> H v`` for the Hessian of ``fn(params, *args)``: hashable by ``fn``."""

    fn: Callable

    def __call__(self, v, params, args):
        return hessian_vector_product(self.fn, params, *args)(v)


#: The Krylov basis of the last Lanczos run, kept for the next run of the same shapes: a fresh
#: max_iters x p buffer per call costs more than a short run itself (page faults on first touch),
#: while a donated buffer is reused in place. One entry per thread (a sweep
#: spread over several devices runs one thread per device, ``harness.sweep``), as sweeps go width
#: by width.
_BASIS_POOL = threading.local()


def _take_basis(params, rows: int):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    key = (treedef, tuple((leaf.shape, leaf.dtype.name) for leaf in leaves), rows)
    pool = _basis_pool()
    basis = pool.pop(key, None)
    if basis is None:
        pool.clear()  # free the old shape's buffer; lanczos_extremes allocates the new one
    return key, basis


def _basis_pool() -> dict:
    if not hasattr(_BASIS_POOL, "buffers"):
        _BASIS_POOL.buffers = {}
    return _BASIS_POOL.buffers


@functools.partial(jax.jit, static_argnames=("fn", "max_iters"))
def _power_hessian(fn, params, args, v0, tol, max_iters):
    hvp = hessian_vector_product(fn, params, *args)
    v0 = _tree_scale(1.0 / jnp.sqrt(_tree_dot(v0, v0)), v0)

    def body(state):
        i, v, lam, _ = state
        w = hvp(v)
        new = _tree_dot(v, w)  # signed Rayleigh quotient
        change = jnp.abs(jnp.abs(new) - jnp.abs(lam)) / jnp.maximum(jnp.abs(new), 1e-300)
        norm = jnp.sqrt(_tree_dot(w, w))
        v = _tree_scale(1.0 / jnp.where(norm > 0, norm, 1.0), w)
        return i + 1, v, new, change

    def cond(state):
        i, _, _, change = state
        return (i < max_iters) & (change > tol)

    init = (jnp.zeros((), jnp.int32), v0, jnp.zeros((), F64), jnp.asarray(jnp.inf, F64))
    i, _, lam, change = lax.while_loop(cond, body, init)
    return {"lam": lam, "iterations": i, "residual": change, "converged": change <= tol}


def _resolve_reorth(reorth: str, num_params: int, max_iters: int, itemsize: int, budget: int) -> str:
    if reorth == "auto":
        return "partial" if max_iters * num_params * itemsize <= budget else "none"
    if reorth not in REORTH_MODES:
        raise ValueError(f"unknown reorth mode {reorth!r}; valid: auto, {', '.join(REORTH_MODES)}")
    return reorth


def hessian_spectral_norm(
    fn: Callable,
    params,
    *args,
    method: str = "lanczos",
    key: jax.Array | None = None,
    tol: float = 1e-6,
    max_iters: int = 100,
    reorth: str = "auto",
    basis_budget: int = DEFAULT_BASIS_BUDGET,
    stop: str = "error-bound",
) -> HessianNorm:
    """Spectral norm ``max(|lambda_max|, |lambda_min|)`` of the Hessian of ``fn`` w.r.t. ``params``.

    Args:
      fn: ``fn(params, *args) -> scalar``, e.g. ``net.output_component`` with args
        ``(fixed, x, k)``. It must be hashable and stable across calls (a module-level function or a
        bound method of a frozen network object) so that the compiled estimator is reused.
      params: pytree of the weights the Hessian is taken with respect to (the trained ones).
      *args: further arguments of ``fn``, passed through as traced values.
      method: ``"lanczos"``, ``"power"`` (baseline) or ``"dense"`` (exact, small models only).
      key: PRNG key for the random start vector (iterative methods); ``jax.random.key(0)`` if None,
        so the same call always gives the same numbers.
      tol: relative stopping tolerance (Ritz residual for Lanczos, relative change for power).
      max_iters: cap on Hessian-vector products.
      reorth: Lanczos re-orthogonalization, see ``lanczos_extremes``: ``"partial"``, ``"full"``,
        ``"none"`` (no stored basis), or ``"auto"``: partial when the basis (max_iters vectors) fits
        ``basis_budget`` bytes, else none.
      stop: Lanczos stopping rule, ``"error-bound"`` or ``"residual"`` (see ``lanczos_extremes``).

    Returns:
      A ``HessianNorm``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown Hessian method {method!r}; valid: {', '.join(METHODS)}")
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params is empty: there is no weight to differentiate")
    num_params = sum(int(np.prod(leaf.shape)) for leaf in leaves)
    if method == "dense":
        return _dense_norm(fn, params, args, num_params)
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    max_iters = int(min(max_iters, num_params)) if method == "lanczos" else int(max_iters)
    if max_iters < 2:
        raise ValueError(f"max_iters must be >= 2 (and the model needs >= 2 parameters), got {max_iters}")
    if stop not in STOP_RULES:
        raise ValueError(f"unknown stop rule {stop!r}; valid: {', '.join(STOP_RULES)}")
    mode = _resolve_reorth(reorth, num_params, max_iters, leaves[0].dtype.itemsize, basis_budget)
    start = rng.normal_like(jax.random.key(0) if key is None else key, params)
    estimate = _power_norm if method == "power" else functools.partial(_lanczos_norm, mode=mode, stop=stop)
    result = estimate(cacheable(fn), params, args, start, tol, max_iters)
    if not math.isfinite(result.spectral_norm):
        raise FloatingPointError(f"Hessian norm estimate is not finite ({result.spectral_norm}); the model output or its derivatives overflowed")
    return result


def _dense_norm(fn, params, args, num_params: int) -> HessianNorm:
    """The exact norm from the dense Hessian (small models only: DENSE_MAX_PARAMS)."""
    if num_params > DENSE_MAX_PARAMS:
        raise ValueError(f"dense Hessian of {num_params} parameters refused (limit {DENSE_MAX_PARAMS}); use method='lanczos'")
    h = np.asarray(hessian_matrix(fn, params, *args), dtype=np.float64)
    if not np.all(np.isfinite(h)):
        raise FloatingPointError("the dense Hessian contains NaN or inf")
    evals = np.linalg.eigvalsh(0.5 * (h + h.T))
    lo, hi = float(evals[0]), float(evals[-1])
    return HessianNorm(max(abs(lo), abs(hi)), hi, lo, 0, 0.0, True, "dense", error_bound=0.0)


def _power_norm(fn, params, args, start, tol, max_iters: int) -> HessianNorm:
    """Power iteration (the baseline): |lambda| of largest modulus; error bound = last relative change."""
    out = jax.device_get(_power_hessian(fn, params, args, start, jnp.asarray(tol, F64), max_iters))
    lam, change = float(out["lam"]), float(out["residual"])
    return HessianNorm(abs(lam), lam, lam, int(out["iterations"]), change, bool(out["converged"]), "power", error_bound=change)


def _lanczos_norm(fn, params, args, start, tol, max_iters: int, *, mode: str, stop: str) -> HessianNorm:
    """Lanczos (``lanczos_extremes``) with a recycled basis buffer when ``mode`` stores one."""
    pool_key, basis = (None, None) if mode == "none" else _take_basis(params, max_iters)
    out = lanczos_extremes(_HessianProduct(fn), start, operands=(params, args), max_iters=max_iters, tol=tol,
                           reorth=mode, basis=basis, stop=stop)
    if pool_key is not None:
        _basis_pool()[pool_key] = out["basis"]
    hi, lo = out["lambda_max"], out["lambda_min"]
    return HessianNorm(
        max(abs(hi), abs(lo)), hi, lo, out["iterations"], out["residual"],
        out["converged"], "lanczos", out["reorthogonalizations"], out["error_bound"],
    )
