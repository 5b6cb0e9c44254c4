"""Spectral norm of the Hessian of a model output with respect to its weights.

"Hessian" always means ``H = d^2 f(w; x) / dw^2`` of the model output, never of a loss, and its
spectral norm is ``max(|lambda_max|, |lambda_min|)``: H is indefinite (CLAIMS.md, conventions).

Three methods behind one function, ``hessian_spectral_norm(..., method=...)``:

* ``"lanczos"`` (default): Lanczos on Hessian-vector products, entirely on the device inside one
  ``lax.while_loop`` (no host round trip per step). Each step costs one Hessian-vector product by
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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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

#: Size of the small tridiagonal eigenproblem solved during the first Lanczos steps.
SMALL_TRIDIAGONAL = 24


def ritz_error_bound(residual: jax.Array, gap: jax.Array) -> jax.Array:
    """Bound on the distance from a Ritz value to an eigenvalue: ``min(r, r^2 / gap)``.

    ``r = beta_j |s_j|`` is the Ritz pair's residual norm: some eigenvalue lies within r (Golub &
    Van Loan, Thm 8.1.15), and within r^2 / gap when no other eigenvalue is closer than ``gap``
    (Kato-Temple; Parlett, *The Symmetric Eigenvalue Problem*, Thm 11.7.1). The gap used is the
    distance to the neighbouring Ritz value: the standard estimate of the spectral gap, exact once the
    neighbour has converged, too large while an eigenvalue close to the extreme one has not been
    found yet (then r^2 / gap is optimistic; the residual r alone is a bound without assumptions).
    """
    safe_gap = jnp.where(gap > 0, gap, 1.0)
    return jnp.where(gap > 0, jnp.minimum(residual, residual**2 / safe_gap), residual)


class LanczosSettings(NamedTuple):
    """What a Lanczos run is asked for (static: each setting is compiled in)."""

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


class LanczosVectors(NamedTuple):
    """The vectors of a run, each shaped like the weights.

    ``ring`` holds q_j and q_{j-1} in rows j mod 2 and 1 - j mod 2; step j writes q_{j+1} over
    q_{j-1} (carrying them as two variables made XLA copy both on every step to shift them, a third
    of a step's time at width 1024 in float32). ``basis`` holds q_0 ... q_{j} (row i is q_i) when
    the settings store it, else a dummy scalar.
    """

    ring: Any
    basis: Any


class Tridiagonal(NamedTuple):
    """The scalars of a run after j steps: the tridiagonal T_j and the orthogonality estimates.

    ``alphas[i]``, ``betas[i]`` (i < j) are the diagonal and the off-diagonal (beta_i = ||r_i||, the
    norm of step i's residual vector); ``omega`` and ``omega_prev`` are Simon's estimates of
    q_{j} . q_i and q_{j-1} . q_i; ``force``: re-orthogonalize the next vector too (Simon: after a
    re-orthogonalization the next one is done as well); ``reorthogonalized[i]``: step i projected
its vector against the basis; ``broke[i]``: step i reached an invariant
    subspace (its beta is round-off), so T_{i+1}'s Ritz values are exact; ``bound``: the largest
    Gershgorin row sum of T so far, an upper bound on ||T|| that needs no eigenproblem.
    """

    j: jax.Array
    alphas: jax.Array
    betas: jax.Array
    omega: jax.Array
    omega_prev: jax.Array
    force: jax.Array
    reorthogonalized: jax.Array
    broke: jax.Array
    bound: jax.Array


class RitzCheck(NamedTuple):
    """The stopping test at one step: the extreme Ritz values of T_{j+1} and their error bounds."""

    converged: jax.Array
    theta_max: jax.Array
    theta_min: jax.Array
    residual: jax.Array  # relative to max(|theta|)
    error_bound: jax.Array  # relative to max(|theta|)


def lanczos_start(v0, settings: LanczosSettings, basis=None) -> tuple[LanczosVectors, Tridiagonal]:
    """q_0 = v0 / ||v0|| and an empty T. ``basis``: storage to reuse (rows beyond j are never read)."""
    k = settings.max_iters
    q0 = _tree_scale(1.0 / jnp.sqrt(_tree_dot(v0, v0)), v0)
    ring = jax.tree_util.tree_map(lambda x: jnp.stack([x, jnp.zeros_like(x)]), q0)
    if not settings.stores_basis:
        basis = jnp.zeros((), F64)
    elif basis is None:
        basis = jax.tree_util.tree_map(lambda x: jnp.zeros((k, *x.shape), x.dtype), v0)
    zeros_k = jnp.zeros((k,), F64)
    tri = Tridiagonal(
        j=jnp.zeros((), jnp.int32), alphas=zeros_k, betas=zeros_k, omega=zeros_k, omega_prev=zeros_k,
        force=jnp.asarray(False), reorthogonalized=jnp.zeros((k,), bool),
        broke=jnp.zeros((k,), bool), bound=jnp.zeros((), F64),
    )
    return LanczosVectors(ring, basis), tri


def _omega_update(tri: Tridiagonal, alpha, beta, settings: LanczosSettings) -> jax.Array:
    """Simon's recurrence: the estimates omega_{j+1,i} of q_{j+1} . q_i (i <= j) after step j.

    The unit diagonal omega_{j,j} = 1 is stored as 0 at every step, the initial one included: it
    enters only through beta_{j-1} omega_{j,j} - beta_{j-1} omega_{j-1,j-1}, which cancels when both
    follow one convention (a 1 stored at step 0 alone showed an O(1) loss at step 1 and forced two
    needless re-orthogonalizations in every run). omega_{j+1,j} is the rounding psi.
    """
    j, omega, betas, psi = tri.j, tri.omega, tri.betas, settings.psi
    idx = jnp.arange(settings.max_iters)
    beta_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0.0)
    up = jnp.concatenate([omega[1:], jnp.zeros((1,), F64)])  # omega_{j,i+1}
    down = jnp.concatenate([jnp.zeros((1,), F64), omega[:-1]])  # omega_{j,i-1}
    betas_down = jnp.concatenate([jnp.zeros((1,), F64), betas[:-1]])  # beta_{i-1}
    t = betas * up + (tri.alphas - alpha) * omega + betas_down * down - beta_prev * tri.omega_prev
    t = t + jnp.where(t >= 0, psi, -psi) * (betas + beta)
    omega_next = jnp.where(idx < j, t / jnp.where(beta > 0, beta, 1.0), 0.0)
    return jnp.where(idx == j, psi, omega_next)


def _reorthogonalize_now(tri: Tridiagonal, omega_next, settings: LanczosSettings) -> jax.Array:
    """Whether step j projects its vector against the stored basis: every step ("full"), when the
    estimated loss of orthogonality exceeds sqrt(eps) or the previous step did it ("partial")."""
    if settings.reorth == "full":
        return jnp.asarray(True)
    if settings.reorth == "partial":
        return tri.force | (jnp.max(jnp.abs(omega_next)) > math.sqrt(settings.dtype_eps))
    return jnp.asarray(False)


def _project_twice_if_full(basis, w, count, settings: LanczosSettings):
    w = _project_out(basis, w, count)
    # Full re-orthogonalization repeats the pass ("twice is enough", Kahan-Parlett); partial
    # re-orthogonalization only has to restore semi-orthogonality, which one pass does.
    return _project_out(basis, w, count) if settings.reorth == "full" else w


def lanczos_step(matvec: Callable, vecs: LanczosVectors, tri: Tridiagonal, settings: LanczosSettings):
    """Step j: r = A q_j - alpha_j q_j - beta_{j-1} q_{j-1}, re-orthogonalized if needed, and
    q_{j+1} = r / beta_j with beta_j = ||r|| (Golub & Van Loan, Alg. 10.1.1; Simon 1984)."""
    j, k = tri.j, settings.max_iters
    cur = j % 2
    q = jax.tree_util.tree_map(lambda r: r[cur], vecs.ring)
    q_prev = jax.tree_util.tree_map(lambda r: r[1 - cur], vecs.ring)
    basis = vecs.basis
    if settings.stores_basis:
        basis = jax.tree_util.tree_map(lambda b, x: b.at[j].set(x), basis, q)
    beta_prev = jnp.where(j > 0, tri.betas[jnp.maximum(j - 1, 0)], 0.0)
    w = matvec(q)
    alpha = _tree_dot(q, w)
    w = jax.tree_util.tree_map(
        lambda wi, qi, pi: wi - alpha.astype(wi.dtype) * qi - beta_prev.astype(wi.dtype) * pi, w, q, q_prev
    )
    beta = jnp.sqrt(_tree_dot(w, w))
    omega_next = _omega_update(tri, alpha, beta, settings)
    do_reorth = _reorthogonalize_now(tri, omega_next, settings)
    if settings.stores_basis:
        w, beta = lax.cond(
            do_reorth,
            lambda w: (lambda w2: (w2, jnp.sqrt(_tree_dot(w2, w2))))(_project_twice_if_full(basis, w, j + 1, settings)),
            lambda w: (w, beta),
            w,
        )
        omega_next = jnp.where(do_reorth, jnp.where(jnp.arange(k) <= j, settings.psi, 0.0), omega_next)
    bound = jnp.maximum(tri.bound, jnp.abs(alpha) + beta_prev + beta)
    # Invariant subspace reached (or the operator is 0): beta is round-off next to ||T||.
    broke = beta <= 100.0 * settings.dtype_eps * jnp.maximum(tri.bound, jnp.abs(alpha) + beta_prev)
    inv_beta = jnp.where(broke, 0.0, 1.0 / jnp.where(broke, 1.0, beta))
    ring = jax.tree_util.tree_map(lambda r, wi: r.at[1 - cur].set(inv_beta.astype(wi.dtype) * wi), vecs.ring, w)
    tri = Tridiagonal(
        j=j + 1,
        alphas=tri.alphas.at[j].set(alpha),
        betas=tri.betas.at[j].set(beta),
        omega=omega_next,
        omega_prev=tri.omega,
        force=do_reorth & ~tri.force if settings.reorth == "partial" else jnp.asarray(False),
        reorthogonalized=tri.reorthogonalized.at[j].set(do_reorth),
        broke=tri.broke.at[j].set(broke),
        bound=bound,
    )
    return LanczosVectors(ring, basis), tri


def _extreme_ritz_pairs(alphas, betas, j, size: int):
    """Extreme eigenvalues of T_{j+1}, the last components of their eigenvectors and their gaps to
    the neighbouring Ritz values, from a size x size eigenproblem (j < size).

    T_{j+1} is embedded in a size x size matrix whose unused diagonal holds alpha_0: alpha_0 is a
    Rayleigh quotient, inside the Ritz interval, so it never becomes an extreme; a padding copy of
    it can only make a gap smaller (the bound more cautious).
    """
    i = jnp.arange(size)
    diag = jnp.where(i <= j, alphas[:size], alphas[0])
    off = jnp.where(i[:-1] < j, betas[: size - 1], 0.0)
    t = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
    evals, evecs = jnp.linalg.eigh(t)
    last = evecs[jnp.minimum(j, size - 1)]
    return evals[-1], evals[0], last[-1], last[0], evals[-1] - evals[-2], evals[1] - evals[0]


def ritz_check(tri: Tridiagonal, j, tol, settings: LanczosSettings) -> RitzCheck:
    """The stopping test after step j (T_{j+1} and beta_j): converged when the error bounds of both
    extreme Ritz values (``ritz_error_bound``, or their residuals for ``stop="residual"``) are
    <= tol * max|theta|, from step 1 on, or at once when step j broke down (exact Ritz values).

    The eigenproblem is solved at size 24 while T_{j+1} fits, then at the cap: a dense eigh costs
    O(size^3) and most runs stop within 24 steps; more sizes would cost compile time (each is a
    separately compiled branch) for little run time.
    """
    k = settings.max_iters
    sizes = [SMALL_TRIDIAGONAL, k] if k > SMALL_TRIDIAGONAL else [k]
    branches = [functools.partial(_extreme_ritz_pairs, size=size) for size in sizes]
    bucket = jnp.sum(jnp.asarray(sizes) < j + 1)  # the first size >= j + 1
    theta_max, theta_min, s_max, s_min, gap_max, gap_min = lax.switch(bucket, branches, tri.alphas, tri.betas, j)
    beta = tri.betas[j]
    scale = jnp.maximum(jnp.abs(theta_max), jnp.abs(theta_min))
    residual = beta * jnp.maximum(jnp.abs(s_max), jnp.abs(s_min))
    if settings.stop == "residual":
        error = residual
    else:
        error = jnp.maximum(ritz_error_bound(beta * jnp.abs(s_max), gap_max), ritz_error_bound(beta * jnp.abs(s_min), gap_min))
    broke = tri.broke[j]
    safe_scale = jnp.where(scale > 0, scale, 1.0)
    return RitzCheck(
        converged=broke | ((j >= 1) & (error <= tol * scale)),
        theta_max=theta_max,
        theta_min=theta_min,
        residual=jnp.where(broke, 0.0, residual / safe_scale),
        error_bound=jnp.where(broke, 0.0, error / safe_scale),
    )


def _result(tri: Tridiagonal, check: RitzCheck, basis) -> dict[str, jax.Array]:
    """What a run returns after ``tri.j`` steps (steps done past it, by a block, are not counted)."""
    counted = jnp.arange(tri.alphas.shape[0]) < tri.j
    return {
        "lambda_max": check.theta_max,
        "lambda_min": check.theta_min,
        "iterations": tri.j,
        "residual": check.residual,
        "error_bound": check.error_bound,
        "converged": check.converged,
        "reorthogonalizations": jnp.sum(counted & tri.reorthogonalized, dtype=jnp.int32),
        "basis": basis,
    }


def lanczos_extremes(
    matvec: Callable,
    v0,
    *,
    max_iters: int,
    tol: float | jax.Array,
    reorth: str = "partial",
    basis=None,
    stop: str = "error-bound",
) -> dict[str, jax.Array]:
    """Extreme eigenvalues of a symmetric operator by Lanczos, in one traceable loop (call inside
    ``jit``): ``lanczos_step`` then ``ritz_check`` until converged or at the cap.

    Vectors are pytrees (the shape of the weights), which avoids flattening copies on every
    Hessian-vector product; inner products and the tridiagonal eigenproblem are in float64.

    Args:
      matvec: ``v -> A v`` on pytrees shaped like v0.
      v0: start vector (need not be normalized); its leaves' dtypes are the working dtypes.
      max_iters: iteration cap (static); also the number of stored basis vectors.
      tol: stop when the error bounds of both extreme Ritz values (``ritz_error_bound``: the
        smaller of the residual ``beta_j |s_j|`` and residual^2 / gap) are <= tol * max|theta|.
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
        ``(max_iters, *leaf.shape)``; rows beyond the current step are never read, so a buffer
        recycled from an earlier run (donated, see ``_lanczos_hessian``) needs no zeroing.

    Returns:
      A dict: device scalars ``lambda_max``, ``lambda_min``, ``iterations`` (matvecs),
      ``residual`` and ``error_bound`` (relative), ``converged``, ``reorthogonalizations``, and
      ``basis`` (the storage, for reuse).
    """
    settings = lanczos_settings(v0, max_iters, reorth, stop)
    vecs, tri = lanczos_start(v0, settings, basis)
    never = RitzCheck(jnp.asarray(False), *(jnp.zeros((), F64),) * 2, *(jnp.asarray(jnp.inf, F64),) * 2)

    def body(state):
        vecs, tri, _ = state
        vecs, tri = lanczos_step(matvec, vecs, tri, settings)
        return vecs, tri, ritz_check(tri, tri.j - 1, tol, settings)

    def cond(state):
        _, tri, check = state
        return (tri.j < settings.max_iters) & ~check.converged

    vecs, tri, check = lax.while_loop(cond, body, (vecs, tri, never))
    return _result(tri, check, vecs.basis)


@functools.partial(jax.jit, static_argnames=("fn", "max_iters", "reorth", "stop"), donate_argnames=("basis",))
def _lanczos_hessian(fn, params, args, v0, tol, max_iters, reorth, basis, stop="error-bound"):
    hvp = hessian_vector_product(fn, params, *args)
    return lanczos_extremes(hvp, v0, max_iters=max_iters, tol=tol, reorth=reorth, basis=basis, stop=stop)


#: The Krylov basis of the last Lanczos run, kept for the next run of the same shapes: allocating
#: and zero-filling max_iters x p numbers per call costs more than a short run itself (page faults
#: on a fresh buffer), while a donated buffer is reused in place. One entry per thread (a sweep
#: spread over several devices runs one thread per device, ``harness.sweep``), as sweeps go width
#: by width.
_BASIS_POOL = threading.local()


def _take_basis(params, rows: int):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    key = (treedef, tuple((leaf.shape, leaf.dtype.name) for leaf in leaves), rows)
    pool = _basis_pool()
    basis = pool.pop(key, None)
    if basis is None:
        pool.clear()  # free the old shape's buffer before allocating a new one
        basis = jax.tree_util.tree_map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), params)
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
    result = estimate(cacheable(fn), params, args, start, jnp.asarray(tol, F64), max_iters)
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
    out = jax.device_get(_power_hessian(fn, params, args, start, tol, max_iters))
    lam, change = float(out["lam"]), float(out["residual"])
    return HessianNorm(abs(lam), lam, lam, int(out["iterations"]), change, bool(out["converged"]), "power", error_bound=change)


def _lanczos_norm(fn, params, args, start, tol, max_iters: int, *, mode: str, stop: str) -> HessianNorm:
    """Lanczos (``lanczos_extremes``) with a recycled basis buffer when ``mode`` stores one."""
    pool_key, basis = (None, jnp.zeros((), F64)) if mode == "none" else _take_basis(params, max_iters)
    out = _lanczos_hessian(fn, params, args, start, tol, max_iters, mode, basis, stop)
    basis = out.pop("basis")
    if pool_key is not None:
        _basis_pool()[pool_key] = basis
    out = jax.device_get(out)
    hi, lo = float(out["lambda_max"]), float(out["lambda_min"])
    return HessianNorm(
        max(abs(hi), abs(lo)), hi, lo, int(out["iterations"]), float(out["residual"]),
        bool(out["converged"]), "lanczos", int(out["reorthogonalizations"]), float(out["error_bound"]),
    )
