"""Full-batch gradient descent on the square loss, tracking how far the tangent kernel moves (Sec. 6).

The experiments of Sec. 6 train a network by gradient descent on synthetic data until convergence
and measure the relative change of its tangent kernel,

    Delta K(t) = ||K(w_t) - K(w_0)||_F / ||K(w_0)||_F,      Delta K = sup_t Delta K(t),

with K the tangent kernel of the model output (Eq. 1; for a softmax head the (n c) x (n c) kernel
over (input, class) pairs). ``train`` runs

    w_{t+1} = w_t - eta grad L(w_t),      L(w) = 1/2 sum_i ||f~(w; x_i) - y_i||^2,

as a compiled ``lax.scan`` over chunks of steps with one host synchronisation per chunk. The loss
is recorded at every step; after every chunk (the first ones 1, 1, 2, 4, ... steps long, then
``chunk`` steps) the run records K(w_t), the change of the weights in 2-norm and infinity-norm
and, with ``track_inner``, the extreme eigenvalues of the kernel of the inner network f and the
smallest |phi'(f(w_t; x_i))| (Theorem 5.1).

Learning-rate rule (one rule for every claim)::

    eta = lr_factor / (g^2 lambda_max(K_f(w_0))),

with K_f the tangent kernel of the inner linear-output network f (Eq. 11) and g the largest gain
of the output head: 1 for a linear head, 1/2 for softmax (its Jacobian diag(p) - p p^T has
v^T J v = Var_p(v) <= 1/2 for a unit vector v), sup |phi'| over R for a scalar phi (found
numerically: 1.0998 for swish, 1 for tanh_linear). For a linear head the rule is
``lr_factor / lambda_max(K(w_0))``. Since the output kernel is K_{f~} = D K_f D^T with ||D|| <= g,
g^2 lambda_max(K_f) bounds its top eigenvalue wherever the inner kernel keeps its initial size,
which it does for wide nets (Sec. 3), whatever values phi' takes along the path. The linearized
dynamics r_{t+1} = (I - eta K) r_t are stable for eta lambda_max < 2; ``lr_factor = 1`` keeps a
factor 2 of headroom for a kernel that grows during training (bottlenecks). The output kernel at
w_0 would not do: for the swish head (phi'(0) = 1/2, sup phi' = 1.1) it gives a step 4.8 times
ours, which leaves the stable range (eta lambda_max > 2) once phi'(f) approaches its maximum.

Stopping rule: the run stops at the first step t with L(w_t) <= rel_tol L(w_0) ("tolerance") or
after ``max_steps`` updates ("cap"); ``TrainResult.stopped`` says which. Inside a compiled chunk the
steps after the tolerance is met leave the weights unchanged, so the final weights are exactly w_t.

Divergence: a non-finite loss, or one above ``DIVERGENCE_FACTOR * L(w_0)``, raises
``TrainingDivergedError`` naming the width, the seed and the first bad step: never a silent pass.

Synthetic data (the paper's Appendix C is not among our sources, so the setup is our own): n points
uniform on the sphere of radius sqrt(d) in R^d; scalar heads get y = phi(g(x)) with the smooth
g(x) = sin(u . x) (the same inner target for every head), a softmax head one-hot labels of a
random linear partition into c classes (``synthetic_dataset``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from harness import rng
from harness.kernel import relative_kernel_change, tangent_kernel
from harness.models import OUTPUT_FUNCTIONS, FullyConnected, sphere_points
from harness.sweep import memoized, point_key

#: A loss this many times its initial value means the run diverged: gradient descent with a stable
#: step never gets near it, and an exploding run passes it within a few steps.
DIVERGENCE_FACTOR = 1e3

#: Largest gain of the softmax head: the spectral norm of diag(p) - p p^T is at most 1/2.
SOFTMAX_GAIN = 0.5

STOP_TOLERANCE = "tolerance"
STOP_CAP = "cap"


class TrainingDivergedError(RuntimeError):
    """Gradient descent produced a non-finite or exploding loss; the message names width, seed, step."""


# --------------------------------------------------------------------------------------------------
# Data
@dataclasses.dataclass(frozen=True)
class Dataset:
    """Training inputs, targets and a description of how they were made.

    Attributes:
      xs: inputs, shape (n, d), on the sphere of radius sqrt(d).
      ys: targets, shape (n,) for a scalar output, (n, c) for c outputs (one-hot labels).
      description: what the data are (recorded in the claims' records).
    """

    xs: jax.Array
    ys: jax.Array
    description: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.xs.shape[0])


def inner_target(xs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The smooth target of the inner network: g(x) = sin(u . x), u a unit vector.

    For x on the sphere of radius sqrt(d), u . x has mean 0 and variance 1, so g is of order one.
    """
    return np.sin(xs @ u)


def synthetic_dataset(
    key: jax.Array, n: int, dim: int, head: str = "linear", num_classes: int = 1, dtype=jnp.float64
) -> Dataset:
    """n points uniform on the sphere of radius sqrt(dim) in R^dim with a smooth target.

    Scalar heads: y = phi(g(x)) with g(x) = sin(u . x) (``inner_target``), u a random unit vector
    and phi the head (identity for a linear head). Every head thus asks the inner network f of
    Eq. 11 to learn the same smooth g, and every target lies in the head's range (swish takes no
    value below -0.28; g >= -1 keeps phi(g) on its increasing branch). Softmax head: one-hot labels
    of the class argmax_k (U x)_k, U a random Gaussian c x d matrix (a linear partition of the
    sphere into c classes).

    Args:
      key: the data key (``point_key(seed, width, "data")``); the same key gives the same data.
      n: number of points; dim: input dimension d.
      head: the model's output head ("linear", "softmax" or a key of ``OUTPUT_FUNCTIONS``).
      num_classes: c >= 2 for a softmax head, 1 otherwise.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 and dim >= 1; got n={n}, dim={dim}")
    if head not in ("linear", "softmax", *OUTPUT_FUNCTIONS):
        raise ValueError(f"unknown output head {head!r}; valid: linear, softmax, {', '.join(OUTPUT_FUNCTIONS)}")
    if (head == "softmax") != (num_classes >= 2):
        raise ValueError(f"a softmax head needs num_classes >= 2, any other head 1; got {head!r} with {num_classes}")
    kx, ky = jax.random.split(key)
    xs = sphere_points(kx, n, dim, dtype=dtype)
    x = np.asarray(xs, dtype=np.float64)
    gen = rng.generator(ky)
    description: dict[str, Any] = {
        "inputs": f"{n} points uniform on the sphere of radius sqrt(d) in R^{dim}",
        "n": n,
        "input_dim": dim,
        "num_classes": num_classes,
    }
    if head == "softmax":
        u = gen.standard_normal((num_classes, dim))
        labels = np.argmax(x @ u.T, axis=1)
        ys = np.eye(num_classes)[labels]
        description["target"] = f"one-hot labels, class = argmax_k (U x)_k, U Gaussian {num_classes}x{dim}"
        description["class_counts"] = [int(c) for c in np.bincount(labels, minlength=num_classes)]
    else:
        u = gen.standard_normal(dim)
        u /= np.linalg.norm(u)
        ys = inner_target(x, u)
        if head == "linear":
            description["target"] = "y = g(x) = sin(u . x), u a random unit vector"
        else:
            ys = np.asarray(OUTPUT_FUNCTIONS[head](jnp.asarray(ys)), dtype=np.float64)
            description["target"] = f"y = phi(g(x)), g(x) = sin(u . x), phi the {head} head, u a random unit vector"
    return Dataset(xs=xs, ys=jnp.asarray(ys, dtype=dtype), description=description)


# --------------------------------------------------------------------------------------------------
# Configuration and result
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a run trains and what it records (frozen and hashable: it keys the run cache).

    Attributes:
      lr_factor: c in eta = c / (g^2 lambda_max(K_f(w_0))) (module docstring); must lie in (0, 2).
      learning_rate: an explicit eta overriding the rule (tests, divergence checks).
      rel_tol: stop at the first t with L(w_t) <= rel_tol L(w_0).
      max_steps: the step cap.
      chunk: steps per compiled chunk; the kernel and the weight change are recorded after every
        chunk. The first chunks are shorter (1, 1, 2, 4, ... steps, ``_chunk_size``) so that the
        early rise of Delta K(t) is resolved.
      kernel_method: ``tangent_kernel`` method ("auto": structured for fully-connected nets).
      track_inner: also record the inner kernel's extreme eigenvalues and min |phi'(f)| (Thm 5.1).
      segment_points: if > 0, the gradient norms ||grad f~(w; x_i)|| at this many equally spaced
        points of the segment [w_0, w_T] (ends included), for the mean-value bound of Eq. 2.
    """

    lr_factor: float = 1.0
    learning_rate: float | None = None
    rel_tol: float = 1e-6
    max_steps: int = 4000
    chunk: int = 50
    kernel_method: str = "auto"
    track_inner: bool = False
    segment_points: int = 0

    def __post_init__(self) -> None:
        if self.learning_rate is None and not (0.0 < self.lr_factor < 2.0):
            raise ValueError(f"lr_factor must lie in (0, 2) (stability of the linearized dynamics), got {self.lr_factor!r}")
        if self.learning_rate is not None and not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive finite number, got {self.learning_rate!r}")
        if not (0.0 <= self.rel_tol < 1.0):
            raise ValueError(f"rel_tol must lie in [0, 1), got {self.rel_tol!r}")
        for name in ("max_steps", "chunk"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.segment_points == 1 or self.segment_points < 0:
            raise ValueError(f"segment_points must be 0 or >= 2, got {self.segment_points!r}")


@dataclasses.dataclass
class TrainResult:
    """What one gradient-descent run recorded.

    Attributes:
      width, seed: the sweep point (named in errors).
      learning_rate: the eta used; lr_rule: how it was set; lambda_max0: lambda_max(K_f(w_0));
        head_gain: g = sup |phi'| of the head.
      steps: number of updates T; stopped: "tolerance" or "cap".
      loss: L(w_t) for t = 0..T (length T + 1).
      kernel_steps: steps at which the kernel was recorded: 0, 1, 2, 4, ... (doubling up to
        ``chunk``), then every ``chunk`` steps, and T.
      kernel_change: Delta K(t) at those steps.
      weight_change_2, weight_change_inf: ||w_t - w_0||_2 and ||w_t - w_0||_inf at kernel_steps.
      inner_eig_min, inner_eig_max: extreme eigenvalues of the inner kernel K_f at kernel_steps
        (``track_inner`` only, else None).
      head_slope_min: min over inputs of |phi'(f(w_t; x_i))| at kernel_steps (scalar non-linear
        heads with ``track_inner`` only, else None).
      outputs0, outputs: model outputs on the training inputs at w_0 and w_T; targets: the y_i.
      segment_grad_norms: (segment_points, n c) gradient norms ||grad f~_k(w_s; x_i)|| along the
        segment [w_0, w_T], or None.
      data: the dataset's description.
      params0, params, fixed: the weights at w_0 and w_T and the frozen ones (None once compacted).
    """

    width: int
    seed: int
    learning_rate: float
    lr_rule: str
    lambda_max0: float
    head_gain: float
    steps: int
    stopped: str
    loss: np.ndarray
    kernel_steps: np.ndarray
    kernel_change: np.ndarray
    weight_change_2: np.ndarray
    weight_change_inf: np.ndarray
    inner_eig_min: np.ndarray | None
    inner_eig_max: np.ndarray | None
    head_slope_min: np.ndarray | None
    outputs0: np.ndarray
    outputs: np.ndarray
    targets: np.ndarray
    segment_grad_norms: np.ndarray | None
    data: dict[str, Any]
    params0: Any = None
    params: Any = None
    fixed: Any = None

    @property
    def delta_k(self) -> float:
        """sup_t Delta K(t) over the recorded steps (never above the sup over every step)."""
        return float(np.max(self.kernel_change))

    @property
    def relative_loss(self) -> float:
        """L(w_T) / L(w_0)."""
        return float(self.loss[-1] / self.loss[0])

    @property
    def final_weight_change_2(self) -> float:
        return float(self.weight_change_2[-1])

    @property
    def final_weight_change_inf(self) -> float:
        return float(self.weight_change_inf[-1])

    def compact(self) -> TrainResult:
        """The same record without the weights (what the run cache keeps)."""
        return dataclasses.replace(self, params0=None, params=None, fixed=None)


# --------------------------------------------------------------------------------------------------
# The learning-rate rule
@functools.lru_cache(maxsize=None)
def head_gain(head: str) -> float:
    """g = sup |phi'| of an output head: 1 (linear), 1/2 (softmax), sup over R for a scalar phi.

    For a scalar phi the supremum is found on a grid over [-20, 20] and refined by a bounded scalar
    search; every phi of ``OUTPUT_FUNCTIONS`` has |phi'| tending to a constant outside that range.
    """
    if head == "linear":
        return 1.0
    if head == "softmax":
        return SOFTMAX_GAIN
    if head not in OUTPUT_FUNCTIONS:
        raise ValueError(f"unknown output head {head!r}; valid: linear, softmax, {', '.join(OUTPUT_FUNCTIONS)}")
    from scipy.optimize import minimize_scalar

    d1 = jax.grad(OUTPUT_FUNCTIONS[head])
    z = np.linspace(-20.0, 20.0, 40001)
    values = np.abs(np.asarray(jax.jit(jax.vmap(d1))(jnp.asarray(z, dtype=jnp.float64))))
    i = int(np.argmax(values))
    lo, hi = z[max(i - 1, 0)], z[min(i + 1, len(z) - 1)]
    one = jax.jit(d1)
    best = minimize_scalar(lambda t: -abs(float(one(jnp.float64(t)))), bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return max(float(values[i]), -float(best.fun))


def learning_rate_rule(model, params, fixed, xs, lr_factor: float = 1.0, kernel_method: str = "auto") -> tuple[float, float, float]:
    """eta = lr_factor / (g^2 lambda_max(K_f(w_0))) (module docstring).

    Returns:
      ``(eta, lambda_max(K_f(w_0)), g)``.
    """
    gain = head_gain(getattr(model, "head", "linear"))
    k0 = np.asarray(tangent_kernel(model, params, fixed, xs, inner=_has_inner(model), method=kernel_method), dtype=np.float64)
    if not np.all(np.isfinite(k0)):
        raise ValueError("the tangent kernel at w0 is not finite: no learning rate can be derived from it")
    lam = float(np.linalg.eigvalsh(k0)[-1])
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"the tangent kernel at w0 has lambda_max = {lam}: no learning rate can be derived from it")
    return lr_factor / (gain**2 * lam), lam, gain


# --------------------------------------------------------------------------------------------------
# Compiled pieces (each compiles once per model; the fewer per model, the cheaper a width grid)
def _batch_outputs(model, params, fixed, xs):
    return jax.vmap(model.apply, in_axes=(None, None, 0))(params, fixed, xs)


def _loss(model, params, fixed, xs, ys):
    r = _batch_outputs(model, params, fixed, xs) - ys
    return 0.5 * jnp.sum(r * r)


def _change_norms(params, params0):
    diffs = [jnp.ravel(a - b) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(params0))]
    two = jnp.sqrt(sum(jnp.sum(d.astype(jnp.float64) ** 2) for d in diffs))
    inf = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(d)) for d in diffs])
    return two, inf


@functools.partial(jax.jit, static_argnames=("model", "length"))
def _gd_chunk(model, params, params0, fixed, xs, ys, eta, tol_abs, active, length: int):
    """Up to ``length`` GD steps: step i runs while i < active and the loss is above tol_abs.

    Returns the weights after the chunk, L(w_t) before each step that ran (entries of steps that
    did not run are meaningless), and ||w - w_0||_2 and ||w - w_0||_inf after it. A fixed
    ``length`` with a traced ``active`` compiles the chunk once per model whatever the chunk's
    actual size; steps that do not run are skipped by ``lax.cond`` and cost nothing.
    """
    value_and_grad = jax.value_and_grad(lambda p: _loss(model, p, fixed, xs, ys))

    def run(p):
        loss, grad = value_and_grad(p)
        stop = loss <= tol_abs
        p = jax.tree_util.tree_map(lambda w, g: jnp.where(stop, w, w - eta * g), p, grad)
        return p, loss, stop

    def skip(p):
        return p, jnp.zeros((), dtype=tol_abs.dtype), jnp.asarray(True)

    def step(carry, i):
        p, done = carry
        p, loss, stop = lax.cond(done | (i >= active), skip, run, p)
        return (p, done | stop), loss

    (params, _), losses = lax.scan(step, (params, jnp.asarray(False)), jnp.arange(length))
    two, inf = _change_norms(params, params0)
    return params, losses, two, inf


@functools.partial(jax.jit, static_argnames=("model",))
def _evaluate(model, params, fixed, xs):
    """(inner outputs f, model outputs f~) on the inputs; both the model output without an inner net."""
    outputs = _batch_outputs(model, params, fixed, xs)
    if not hasattr(model, "logits"):
        return outputs, outputs
    return jax.vmap(model.logits, in_axes=(None, None, 0))(params, fixed, xs), outputs


@jax.jit
def _interpolate(params0, params, s):
    return jax.tree_util.tree_map(lambda a, b: a + s * (b - a), params0, params)


@functools.lru_cache(maxsize=None)
def _phi_prime(head: str):
    # Elementwise on the n inner outputs: compiled once per head, whatever the width.
    return jax.jit(jax.vmap(jax.grad(OUTPUT_FUNCTIONS[head])))


def _chunk_size(index: int, chunk: int) -> int:
    """Steps of the index-th chunk: 1, 1, 2, 4, ... doubling up to ``chunk``, then ``chunk``.

    The kernel is recorded after every chunk, so Delta K(t) is sampled at t = 1, 2, 4, 8, ...
    early on, where it rises fastest, and every ``chunk`` steps after that.
    """
    return min(chunk, 1 if index == 0 else 2 ** (index - 1))


def _host_loss(outputs, ys) -> float:
    r = np.asarray(outputs, dtype=np.float64) - np.asarray(ys, dtype=np.float64)
    return 0.5 * float(np.sum(r * r))


def _has_inner(model) -> bool:
    """Whether the model's inner network f differs from its output (a non-linear head)."""
    return hasattr(model, "logits") and getattr(model, "head", "linear") != "linear"


def _width_of(model) -> int:
    widths = getattr(model, "hidden_widths", None)
    return int(max(widths)) if widths else 0


def _scalar_head(model) -> bool:
    return getattr(model, "head", "linear") in OUTPUT_FUNCTIONS


# --------------------------------------------------------------------------------------------------
# A run
def train(
    model,
    params,
    fixed,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    seed: int,
    width: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``model`` from ``params`` by full-batch GD on the square loss, recording Delta K(t).

    Args:
      model: a ``FullyConnected`` network, or any frozen hashable model with ``apply(params, fixed,
        x)`` and ``num_out`` (``logits`` too for a non-linear head).
      params, fixed: trained and frozen weights at initialization w_0.
      data: the training set; ``data.ys`` must match the model's output shape.
      config: learning rate, stopping rule and recording (``TrainConfig``).
      seed, width: the sweep point, named in errors (width defaults to the widest hidden layer).
      progress: optional callable receiving one line per chunk.

    Returns:
      a ``TrainResult`` holding the weights (``.compact()`` drops them).

    Raises:
      ValueError: targets of the wrong shape, a degenerate kernel at w_0.
      TrainingDivergedError: a non-finite loss or kernel, or a loss above DIVERGENCE_FACTOR L(w_0).
    """
    width = _width_of(model) if width is None else int(width)
    xs, ys = data.xs, data.ys
    expected = (data.n,) if model.num_out == 1 else (data.n, model.num_out)
    if tuple(ys.shape) != expected:
        raise ValueError(f"targets have shape {tuple(ys.shape)}; the model's outputs on {data.n} inputs have shape {expected}")
    name = model.describe() if hasattr(model, "describe") else type(model).__name__
    where = f"width {width}, seed {seed} ({name})"

    params0 = params
    logits0, outputs0 = _evaluate(model, params0, fixed, xs)
    loss0 = _host_loss(outputs0, ys)
    if not math.isfinite(loss0):
        raise TrainingDivergedError(f"training diverged at {where}, step 0: the initial loss is {loss0}")

    if config.learning_rate is None:
        eta, lam0, gain = learning_rate_rule(model, params, fixed, xs, config.lr_factor, config.kernel_method)
        rule = f"eta = {config.lr_factor:g} / (g^2 lambda_max(K_f(w0))), g = sup|phi'| = {gain:.4g}"
    else:
        eta, lam0, gain = float(config.learning_rate), float("nan"), head_gain(getattr(model, "head", "linear"))
        rule = "explicit learning rate"

    has_inner = _has_inner(model)
    scalar_head = _scalar_head(model)

    def kernel(p, inner=False):
        return np.asarray(tangent_kernel(model, p, fixed, xs, inner=inner, method=config.kernel_method), dtype=np.float64)

    eig_min: list[float] = []
    eig_max: list[float] = []
    slope_min: list[float] = []

    def record_inner(p, k_out, logits):
        if not config.track_inner:
            return
        # For a linear head (or a model without an inner network) K_f is the output kernel itself.
        ev = np.linalg.eigvalsh(kernel(p, inner=True) if has_inner else k_out)
        eig_min.append(float(ev[0]))
        eig_max.append(float(ev[-1]))
        if scalar_head:
            slope_min.append(float(np.min(np.abs(np.asarray(_phi_prime(model.head)(logits))))))

    k0 = kernel(params0)
    if not np.all(np.isfinite(k0)):
        raise TrainingDivergedError(f"training diverged at {where}, step 0: the tangent kernel is not finite")
    tol_abs = config.rel_tol * loss0
    limit = DIVERGENCE_FACTOR * loss0
    record_inner(params0, k0, logits0)

    kernel_steps, kernel_change, change2, change_inf = [0], [0.0], [0.0], [0.0]
    losses: list[np.ndarray] = []
    t = 0
    stopped = None
    param_dtype = jax.tree_util.tree_leaves(params)[0].dtype
    eta_arr = jnp.asarray(eta, dtype=param_dtype)
    tol_arr = jnp.asarray(tol_abs, dtype=param_dtype)
    chunk_index = 0
    while stopped is None:
        active = min(_chunk_size(chunk_index, config.chunk), config.max_steps - t)
        chunk_index += 1
        new_params, chunk_losses, two, inf = _gd_chunk(
            model, params, params0, fixed, xs, ys, eta_arr, tol_arr, active, config.chunk
        )
        chunk_losses = np.asarray(chunk_losses, dtype=np.float64)[:active]
        bad = ~np.isfinite(chunk_losses) | (chunk_losses > limit)
        if bad.any():
            i = int(np.argmax(bad))
            raise TrainingDivergedError(
                f"training diverged at {where}, step {t + i}: loss {chunk_losses[i]:.4g} "
                f"(L(w0) = {loss0:.4g}, eta = {eta:.4g}; {rule})"
            )
        hit = np.nonzero(chunk_losses <= tol_abs)[0]
        params = new_params
        logits, outputs = _evaluate(model, params, fixed, xs)
        if hit.size:
            # From the first loss at or below the tolerance on, the chunk left the weights unchanged.
            losses.append(chunk_losses[: hit[0] + 1])
            t += int(hit[0])
            stopped = STOP_TOLERANCE
        else:
            losses.append(chunk_losses)
            t += active
            if t >= config.max_steps:
                final = _host_loss(outputs, ys)
                if not (math.isfinite(final) and final <= limit):
                    raise TrainingDivergedError(f"training diverged at {where}, step {t}: loss {final:.4g} (L(w0) = {loss0:.4g})")
                losses.append(np.array([final]))
                stopped = STOP_TOLERANCE if final <= tol_abs else STOP_CAP
        kt = kernel(params)
        if not np.all(np.isfinite(kt)):
            raise TrainingDivergedError(f"training diverged at {where}, step {t}: the tangent kernel is not finite")
        kernel_steps.append(t)
        kernel_change.append(relative_kernel_change(k0, kt))
        change2.append(float(two))
        change_inf.append(float(inf))
        record_inner(params, kt, logits)
        if progress is not None:
            progress(f"{where}: step {t}, loss {losses[-1][-1]:.3e}, Delta K(t) {kernel_change[-1]:.3g}")

    # Chunk k holds L(w_t) before each of its steps, so the pieces join into L(w_0), ..., L(w_T).
    loss = np.concatenate(losses)
    if loss.shape != (t + 1,):  # pragma: no cover - an internal invariant
        raise AssertionError(f"loss curve has {loss.shape[0]} entries for {t} steps")

    segment = None
    if config.segment_points:
        # ||grad f~(w; x_i)||^2 is the kernel's diagonal: the compiled kernel serves, nothing new.
        rows = [np.sqrt(np.diag(kernel(_interpolate(params0, params, s)))) for s in np.linspace(0.0, 1.0, config.segment_points)]
        segment = np.stack(rows)

    return TrainResult(
        width=width,
        seed=seed,
        learning_rate=eta,
        lr_rule=rule,
        lambda_max0=lam0,
        head_gain=gain,
        steps=t,
        stopped=stopped,
        loss=loss,
        kernel_steps=np.asarray(kernel_steps),
        kernel_change=np.asarray(kernel_change),
        weight_change_2=np.asarray(change2),
        weight_change_inf=np.asarray(change_inf),
        inner_eig_min=np.asarray(eig_min) if config.track_inner else None,
        inner_eig_max=np.asarray(eig_max) if config.track_inner else None,
        head_slope_min=np.asarray(slope_min) if config.track_inner and scalar_head else None,
        outputs0=np.asarray(outputs0, dtype=np.float64),
        outputs=np.asarray(outputs, dtype=np.float64),
        targets=np.asarray(ys, dtype=np.float64),
        segment_grad_norms=segment,
        data=dict(data.description),
        params0=params0,
        params=params,
        fixed=fixed,
    )


# --------------------------------------------------------------------------------------------------
# Sweep points, shared between claims
def section6_network(width: int, input_dim: int, head: str = "linear", num_classes: int = 3, **kwargs) -> FullyConnected:
    """The one-hidden-layer network of Sec. 6 (Fig. 1): tanh hidden layer of width m, both layers
    trained, Gaussian weights (NTK parameterization), and a linear, softmax or scalar-phi head."""
    return FullyConnected(
        input_dim, (width,), "tanh", head=head, num_outputs=num_classes if head == "softmax" else 1, **kwargs
    )


def train_point(model, *, seed: int, width: int, n: int, dtype, config: TrainConfig, progress=None) -> TrainResult:
    """Train ``model`` at one sweep point: weights from ``point_key(seed, width, "init")``, data
    from ``point_key(seed, width, "data")`` (``synthetic_dataset`` for the model's head).

    The compact result is memoized for the process (``harness.sweep.memoized``): several claims
    train the same network at the same point (Fig. 1 left and right, the lazy-training norms, the
    linear-model comparison) and the run is made once per pytest session. The key holds every
    argument that changes the run, so a reused result is exactly what a fresh run would give.
    """
    dtype = jnp.dtype(dtype)

    def compute() -> TrainResult:
        head = getattr(model, "head", "linear")
        data = synthetic_dataset(
            point_key(seed, width, "data"), n, model.input_dim, head, model.num_out if head == "softmax" else 1, dtype
        )
        params, fixed = model.init(point_key(seed, width, "init"), dtype)
        return train(model, params, fixed, data, config, seed=seed, width=width, progress=progress).compact()

    return memoized(("train", model, int(seed), int(width), int(n), dtype.name, config), compute)


#: Points of the segment [w_0, w_T] at which the Fig. 1 runs record gradient norms (Eq. 2, C14).
SEGMENT_POINTS = 9


def grid_dtype(grid, tier_dtype) -> jnp.dtype:
    """The dtype of a training grid's runs: its own "dtype" entry if any, else the tier's."""
    return jnp.dtype(grid.get("dtype", tier_dtype))


def fig1_seeds(grid: dict, base_seed: int, head: str) -> tuple[int, ...]:
    """Seeds of a Fig. 1 sweep (C11, C12, C14): ``grid["linear_seeds"]`` for the linear head, whose
    slopes need more power, ``grid["softmax_seeds"]`` for the softmax head, ``grid["seeds"]`` for the
    others (see the tiers' power arguments)."""
    count = {"linear": grid["linear_seeds"], "softmax": grid["softmax_seeds"]}.get(head, grid["seeds"])
    return tuple(base_seed + i for i in range(count))


def fig1_config(grid) -> TrainConfig:
    """The ``TrainConfig`` of the Fig. 1 runs of a tier's training grid.

    Every claim that reuses those runs (C11, C12, C14, C15's swish record, C16's partner) builds its
    config here, so that the memoized runs are found.
    """
    return TrainConfig(
        rel_tol=grid["rel_tol"], max_steps=grid["max_steps"], chunk=grid["chunk"], track_inner=True, segment_points=SEGMENT_POINTS
    )


def fig1_point(grid, head: str, width: int, seed: int, dtype, **net_kwargs) -> TrainResult:
    """One Fig. 1 run: ``section6_network`` of that width and head, trained with ``fig1_config``."""
    model = section6_network(width, grid["input_dim"], head, grid["num_classes"], **net_kwargs)
    return train_point(model, seed=seed, width=width, n=grid["n_train"], dtype=dtype, config=fig1_config(grid))


# --------------------------------------------------------------------------------------------------
# A model linear in its weights
@dataclasses.dataclass(frozen=True)
class LinearizedNetwork:
    """The first-order Taylor model of a network at its initialization (Prop. 2.1, claim C16):

        f_lin(w; x) = f(w_0; x) + grad f(w_0; x) . (w - w_0),

    linear in w by construction, so its tangent kernel is grad f(w_0; x) . grad f(w_0; z) at every
    w. The base weights w_0 travel in ``fixed`` (``{"w0": ..., "fixed": ...}``) so that the model
    itself stays a hashable description. Only a linear head is meaningful (the model output is f_lin).
    """

    net: FullyConnected

    def __post_init__(self) -> None:
        if self.net.head != "linear":
            raise ValueError(f"the linearized model needs a linear head, got {self.net.head!r}")

    @property
    def num_out(self) -> int:
        return self.net.num_out

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return self.net.hidden_widths

    @property
    def input_dim(self) -> int:
        return self.net.input_dim

    def describe(self) -> str:
        return f"linearized {self.net.describe()}"

    def init(self, key: jax.Array, dtype=jnp.float64):
        params, fixed = self.net.init(key, dtype)
        return params, {"w0": params, "fixed": fixed}

    def apply(self, params, fixed, x):
        w0 = fixed["w0"]
        delta = jax.tree_util.tree_map(lambda a, b: a - b, params, w0)
        value, tangent = jax.jvp(lambda p: self.net.apply(p, fixed["fixed"], x), (w0,), (delta,))
        return value + tangent


# --------------------------------------------------------------------------------------------------
# Exponential decay of the loss (Theorem 5.1)
@dataclasses.dataclass(frozen=True)
class DecayFit:
    """OLS fit of log L(t) = a - rate * t over t = 0..T.

    Attributes:
      rate: the fitted decay rate per step; ci95: its 95% confidence interval; r2: R^2 of the fit;
      steps: T. The residuals of a deterministic curve are correlated, so the CI describes the
      fit's spread around a straight line, not sampling noise.
    """

    rate: float
    ci95: tuple[float, float]
    r2: float
    steps: int


def loss_decay_fit(loss: np.ndarray) -> DecayFit:
    """Fit the linear decay of log L(t) (Theorem 5.1: log L(t) <= log L(0) + t log(1 - eta mu rho^2))."""
    import statsmodels.api as sm

    loss = np.asarray(loss, dtype=np.float64)
    if loss.ndim != 1 or loss.size < 3:
        raise ValueError(f"a decay fit needs a loss curve of at least 3 steps, got shape {loss.shape}")
    if not np.all(np.isfinite(loss)) or np.any(loss <= 0):
        raise ValueError("a decay fit needs finite positive losses")
    t = np.arange(loss.size, dtype=np.float64)
    result = sm.OLS(np.log(loss), sm.add_constant(t)).fit()
    lo, hi = result.conf_int(alpha=0.05)[1]
    return DecayFit(rate=float(-result.params[1]), ci95=(float(-hi), float(-lo)), r2=float(result.rsquared), steps=int(loss.size - 1))


def theorem51_bound_ratio(loss: np.ndarray, eta: float, mu: float, rho: float) -> np.ndarray:
    """L(w_t) / ((1 - eta mu rho^2)^t L(w_0)) for t = 1..T (Eq. 15 holds where this is <= 1).

    Computed in log space; needs 0 <= eta mu rho^2 < 1 (0 is the trivial bound L(w_t) <= L(w_0)).
    """
    q = eta * mu * rho**2
    if not (0.0 <= q < 1.0):
        raise ValueError(f"eta mu rho^2 must lie in [0, 1), got {q!r} (eta={eta}, mu={mu}, rho={rho})")
    loss = np.asarray(loss, dtype=np.float64)
    t = np.arange(1, loss.size)
    return np.exp(np.log(loss[1:]) - np.log(loss[0]) - t * math.log1p(-q))


def downsample(steps: np.ndarray, values: np.ndarray, points: int = 120) -> tuple[list[int], list[float]]:
    """At most ``points`` (step, value) pairs of a curve, ends kept, for the records' figures."""
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if steps.size <= points:
        idx = np.arange(steps.size)
    else:
        idx = np.unique(np.round(np.linspace(0, steps.size - 1, points)).astype(int))
    return [int(s) for s in steps[idx]], [float(v) for v in values[idx]]
