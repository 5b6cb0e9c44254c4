"""Section 2: a small Hessian bounds the change of the tangent kernel (claim C17, Proposition 2.2).

Read next to the paper's Sec. 2 (Eq. 1, Proposition 2.2, Eq. 3; the proof is in its Appendix E,
not among our sources, so the constant is derived here) and Sec. 3.2-3.3 (Theorem 3.2: ||H|| =
O~(1/sqrt m) in a ball of fixed radius).

The constant. Let w = w0 + R u with ||u|| = 1 and k(t) = K_(x,z)(w0 + t u) = grad f(x)^T grad f(z)
along the segment, t in [0, R]. Differentiating the product,

    k'(t) = u^T H(x) grad f(z) + grad f(x)^T H(z) u,

with H(x) the Hessian of f(.; x) at w0 + t u, so |k'(t)| <= ||H(x)|| ||grad f(z)|| + ||H(z)||
||grad f(x)|| (Cauchy-Schwarz, spectral norms) and, integrating,

    |K_(x,z)(w) - K_(x,z)(w0)| <= R sup_{t in [0, R]} (||H(x)|| ||grad f(z)|| + ||H(z)|| ||grad f(x)||).

With ||H|| <= eps on the ball and ||grad f|| <= G there, this is 2 G eps R: Eq. 3's O(eps R) with the
constant 2 G (G = Theta(1) by Eq. 6). The inequality holds for every w in B(w0, R) and all inputs.

What is measured (``kernel_change_bound``): the right side with the sup replaced by a maximum over
a few points of the segment, at each of which ||H(x)||, ||H(z)|| are Lanczos estimates and the
gradient norms sqrt(K(x,x)), sqrt(K(z,z)) are exact. Both approximations can only make the bound
*smaller* than the proven one: a maximum over samples is at most the sup, and Lanczos' extreme Ritz
values lie inside the spectrum. So the check "measured <= bound" is stricter than the proposition;
a violation would be a real counter-example or a bug, never an artefact of sampling. How many
points: 3 to 6 per segment (ends, midpoint, and for the random ray the nested distances 1/4, 1/2,
1, 2, 4), since ||H|| and the gradient norms vary by a few percent over B(w0, 4) at these widths
(C4: ||H|| at R = 4 within the seed spread of R = 0) and each point costs two Lanczos runs.

Directions: a random one (uniform on the unit sphere of weight space), and the path of plain
gradient descent on the square loss of a small synthetic data set (written here: the harness's
training code tracks kernels, not the weights at given distances): w_R is the point of the
piecewise-linear GD path at distance exactly R from w0, and the segment [w0, w_R] its chord. The
loss decreases along the path (a stable step eta = 1/lambda_max(K(w0)), as harness/train.py's rule
for a linear head). With labels +-2 the path passes R = 4 within a few steps (at most 6 at the
default tier), so the small radii lie on its first step: the negative gradient direction at w0.

Scaling. The bound side falls like m^(-1/2) (||H|| does, the gradient norms are Theta(1)). The
measured side is only claimed to be O(eps R): it falls at least as fast. Along the training
direction u ~ sum_k r_k grad f(x_k) the first-order term sum_k r_k grad f(x_k)^T H(x) grad f(z) is a
contraction of H with gradients, O(1/m) rather than ||H|| ||grad f||^2 = O(1/sqrt m) (Dyer &
Gur-Ari, ICLR 2020: dK/dt = O(1/m)), and along a random direction u^T H grad f is smaller still;
so the measured change is judged by an upper bound on its slope (<= -1/2 + margin) and its fitted
slope is recorded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from harness import rng
from harness.fit import bound_verdict, upper_bound_verdict
from harness.hessian import hessian_spectral_norm
from harness.kernel import tangent_kernel
from harness.models import FullyConnected, sphere_points
from harness.records import bound_record, scaling_record
from harness.sweep import point_key, run_sweep

# ------------------------------------------------------------------------------------------------
# Margins and constants. Each is fixed before looking at data; the reason is on the line.

#: Proposition 2.2 is an inequality: measured / bound <= 1 at every sample, with no slack (the
#: sampled bound is already below the proven one, see the module docstring).
BOUND_RATIO_LIMIT = 1.0

#: The measured change must fall at least like m^(-1/2): upper bound -1/2 + margin, the same
#: allowance for the log factor of O~ and finite-width drift as the bound side.
CHANGE_SLOPE_MARGIN = 0.15

#: Radii of Proposition 2.2's ball (fixed, independent of m).
RADII = (0.5, 1.0, 2.0, 4.0)

#: The radius at which both sides are fitted against the width.
SCALING_RADIUS = 1.0

#: Distances sampled on the random ray: every segment [0, R] holds its end, its midpoint and 0.
RANDOM_DISTANCES = (0.25, 0.5, 1.0, 2.0, 4.0)

#: Fractions of the chord [w0, w_R] sampled for the training direction.
PATH_FRACTIONS = (0.5, 1.0)

#: Synthetic data: n points of the sphere, labels +-LABEL_SCALE. With +-1 labels the GD path ends
#: (interpolates) at distance 3.3 to 7 from w0 on 8 points, sometimes inside R = 4; +-2 doubles it.
TRAIN_POINTS = 8
LABEL_SCALE = 2.0

#: GD steps allowed to reach distance max(RADII): the fast eigendirections of K cover it in ~10.
MAX_GD_STEPS = 500

ACTIVATION = "tanh"
DEPTH = 2


# ------------------------------------------------------------------------------------------------
# The bound
@dataclasses.dataclass(frozen=True)
class PointMeasurement:
    """What Proposition 2.2 needs at one weight vector w, for inputs x_1..x_n.

    Attributes:
      hessian_norms: ||H(x_i)|| at w, shape (n,).
      kernel: K(w) on the inputs, shape (n, n).
      converged: whether every Hessian norm met its tolerance.
    """

    hessian_norms: np.ndarray
    kernel: np.ndarray
    converged: bool

    @property
    def gradient_norms(self) -> np.ndarray:
        """||grad f(w; x_i)|| = sqrt(K(x_i, x_i))."""
        return np.sqrt(np.diag(self.kernel))


def measure_point(
    net: FullyConnected, params, fixed, xs, *, key, tol: float, max_iters: int, method: str = "lanczos"
) -> PointMeasurement:
    """Hessian norms (by ``method``) and the tangent kernel of a scalar-output network at ``params``."""
    if net.num_out != 1:
        raise ValueError(f"Proposition 2.2 is stated for a scalar output, the network has {net.num_out} outputs")
    norms, converged = [], True
    for i in range(xs.shape[0]):
        est = hessian_spectral_norm(
            net.output_component, params, fixed, xs[i], 0,
            method=method, key=jax.random.fold_in(key, i), tol=tol, max_iters=max_iters,
        )
        norms.append(est.spectral_norm)
        converged &= est.converged
    kernel = np.asarray(tangent_kernel(net, params, fixed, xs), dtype=np.float64)
    return PointMeasurement(np.asarray(norms, dtype=np.float64), kernel, bool(converged))


def kernel_change_bound(points: Sequence[PointMeasurement], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of Proposition 2.2 on a segment [w0, w] of length ``radius``.

    Args:
      points: measurements at points of the segment, ``points[0]`` at w0 and ``points[-1]`` at w
        (the others anywhere on it).
      radius: ||w - w0||.

    Returns:
      ``(measured, bound)``, both (n, n): ``|K(w) - K(w0)|`` entrywise, and
      ``R max_k (||H_k(x_i)|| ||g_k(x_j)|| + ||H_k(x_j)|| ||g_k(x_i)||)`` over the sampled points k.
    """
    if len(points) < 2:
        raise ValueError("a segment needs measurements at both ends (at least 2 points)")
    if not (radius >= 0 and math.isfinite(radius)):
        raise ValueError(f"radius must be finite and >= 0, got {radius!r}")
    measured = np.abs(points[-1].kernel - points[0].kernel)
    derivative_bounds = [
        np.outer(p.hessian_norms, p.gradient_norms) + np.outer(p.gradient_norms, p.hessian_norms) for p in points
    ]
    return measured, radius * np.max(derivative_bounds, axis=0)


# ------------------------------------------------------------------------------------------------
# Directions
def _tree_norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(leaf * leaf) for leaf in jax.tree_util.tree_leaves(tree))))


def _random_unit_direction(params, key):
    u = rng.normal_like(key, params)
    norm = _tree_norm(u)
    return jax.tree_util.tree_map(lambda leaf: leaf / norm, u)


_STEP_FNS: dict = {}


def _gd_step(net: FullyConnected, unravel):
    """Compiled ``w -> (w - eta grad L(w), L(w))`` on flat weights, L = 1/2 sum (f(x_i) - y_i)^2."""
    if net not in _STEP_FNS:

        def loss(w, fixed, xs, ys):
            out = jax.vmap(lambda x: net.apply(unravel(w), fixed, x))(xs)
            return 0.5 * jnp.sum((out - ys) ** 2)

        def step(w, fixed, xs, ys, eta):
            value, grad = jax.value_and_grad(loss)(w, fixed, xs, ys)
            return w - eta * grad, value

        _STEP_FNS[net] = jax.jit(step)
    return _STEP_FNS[net]


def training_path_points(net: FullyConnected, params0, fixed, xs, ys, radii: Sequence[float], max_steps: int = MAX_GD_STEPS):
    """Points at distance exactly R from w0 on the piecewise-linear path of plain gradient descent.

    eta = 1 / lambda_max(K(w0)) on the training inputs. Returns ``(points, losses, eta, steps)``:
    ``points[R]`` a params pytree, ``losses[R]`` the loss at the GD iterate just past distance R,
    and ``losses[0.0]`` the initial loss.

    Raises:
      RuntimeError: the path did not reach distance max(radii) within ``max_steps`` steps.
    """
    flat0, unravel = ravel_pytree(params0)
    eta = 1.0 / float(np.linalg.eigvalsh(np.asarray(tangent_kernel(net, params0, fixed, xs), dtype=np.float64))[-1])
    step = _gd_step(net, unravel)
    w0 = np.asarray(flat0, dtype=np.float64)
    prev = w0
    todo = sorted(radii)
    points, losses = {}, {}
    w = flat0
    for t in range(1, max_steps + 1):
        w, loss = step(w, fixed, xs, ys, eta)
        if t == 1:
            losses[0.0] = float(loss)
        new = np.asarray(w, dtype=np.float64)
        dist = float(np.linalg.norm(new - w0))
        while todo and dist >= todo[0]:
            radius = todo.pop(0)
            # ||prev + s (new - prev) - w0|| = R, s in [0, 1]: the larger root of a quadratic in s.
            delta, offset = new - prev, prev - w0
            a, b, c = delta @ delta, 2.0 * (offset @ delta), offset @ offset - radius**2
            s = (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
            points[radius] = unravel(jnp.asarray(prev + s * delta, dtype=flat0.dtype))
            losses[radius] = float(step(w, fixed, xs, ys, eta)[1])
        if not todo:
            return points, losses, eta, t
        prev = new
    raise RuntimeError(
        f"gradient descent reached distance {float(np.linalg.norm(prev - w0)):.3g} < {max(radii)} from w0 in "
        f"{max_steps} steps; raise LABEL_SCALE or the step cap"
    )


def _along(params0, direction, distance):
    return jax.tree_util.tree_map(lambda w, u: w + distance * u, params0, direction)


def _midpoint_chain(params0, end, fractions):
    return [jax.tree_util.tree_map(lambda a, b: a + f * (b - a), params0, end) for f in fractions]


# ------------------------------------------------------------------------------------------------
# C17
def test_c17_hessian_norm_bounds_the_kernel_change(tier, base_seed, dtype, judge, progress):
    """C17 (Prop. 2.2, Eq. 3): |K_(x,z)(w) - K_(x,z)(w0)| <= R sup_[w0,w] (||H(x)|| ||g(z)|| + ||H(z)|| ||g(x)||).

    Checked for the three entries (x,x), (x,z), (z,z) at R in {0.5, 1, 2, 4} along a random
    direction and along the gradient-descent path, at every (width, seed): the worst ratio
    measured / bound is the record. At R = 1 both sides are fitted against the width.
    """
    grid = tier.grid("theory")
    d = tier.input_dim
    tol, max_iters = tier.lanczos_tol, grid.lanczos_max_iters
    worst = {"ratio": 0.0, "where": ""}
    tallies = {"samples": 0, "unconverged_points": 0, "points": 0, "loss_increases": 0, "gd_steps_max": 0}

    def measure(width, seed):
        net = FullyConnected(d, (width,) * DEPTH, ACTIVATION)
        params0, fixed = net.init(point_key(seed, width, "init"), dtype)
        xs = sphere_points(point_key(seed, width, "data"), TRAIN_POINTS, d, dtype=dtype)
        ys = LABEL_SCALE * rng.rademacher(point_key(seed, width, "labels"), (TRAIN_POINTS,), dtype)
        probes = xs[:2]  # x and z
        lanczos_key = point_key(seed, width, "lanczos")
        counter = iter(range(10_000))

        def at(params):
            key = jax.random.fold_in(lanczos_key, next(counter))
            point = measure_point(net, params, fixed, probes, key=key, tol=tol, max_iters=max_iters)
            tallies["points"] += 1
            tallies["unconverged_points"] += not point.converged
            return point

        start = at(params0)
        segments = {}
        u = _random_unit_direction(params0, point_key(seed, width, "direction"))
        ray = {s: at(_along(params0, u, s)) for s in RANDOM_DISTANCES}
        for radius in RADII:
            segments[("random", radius)] = [start, *[ray[s] for s in RANDOM_DISTANCES if s <= radius]]
        ends, losses, _, steps = training_path_points(net, params0, fixed, xs, ys, RADII)
        tallies["gd_steps_max"] = max(tallies["gd_steps_max"], steps)
        for radius in RADII:
            segments[("path", radius)] = [start, *[at(p) for p in _midpoint_chain(params0, ends[radius], PATH_FRACTIONS)]]
            tallies["loss_increases"] += losses[radius] > losses[0.0]
        out = {}
        for (direction, radius), points in segments.items():
            measured, bound = kernel_change_bound(points, radius)
            ratio = float(np.max(measured / bound))
            tallies["samples"] += 3  # (x,x), (x,z), (z,z)
            if ratio > worst["ratio"]:
                worst.update(ratio=ratio, where=f"width {width}, seed {seed}, {direction}, R={radius:g}")
            out[f"{direction}_R{radius:g}_ratio"] = ratio
            if radius == SCALING_RADIUS:
                out[f"{direction}_change"] = float(np.linalg.norm(measured))
                out[f"{direction}_bound"] = float(np.linalg.norm(bound))
        return out

    seeds = tuple(base_seed + i for i in range(tier.sweep_seed_count("C17", grid.bound_seeds)))
    series = run_sweep(grid.bound_widths, seeds, measure, progress, f"C17 {ACTIVATION}-depth{DEPTH}")
    variant = f"{ACTIVATION}-depth{DEPTH}"
    common = {
        "activation": ACTIVATION,
        "depth": DEPTH,
        "radii": list(RADII),
        "random_distances": list(RANDOM_DISTANCES),
        "path_fractions": [0.0, *PATH_FRACTIONS],
        "labels": f"+-{LABEL_SCALE:g} on {TRAIN_POINTS} sphere points",
        "gd_steps_max": tallies["gd_steps_max"],
        "loss_increases_on_path": tallies["loss_increases"],
        "unconverged_lanczos_points": tallies["unconverged_points"],
        "measured_points": tallies["points"],
    }
    worst_by = {
        key.removesuffix("_ratio"): max(values) for key, values in series.values.items() if key.endswith("_ratio")
    }
    records = [
        bound_record(
            "C17",
            f"{variant}-inequality",
            title="|K(w) - K(w0)| <= R sup (||H(x)|| ||g(z)|| + ||H(z)|| ||g(x)||) on B(w0, R) (Prop 2.2)",
            quantity="max over samples of |K_(x,z)(w) - K_(x,z)(w0)| / bound, entries (x,x), (x,z), (z,z)",
            law="ratio <= 1 at every sample",
            worst=worst["ratio"],
            limit=BOUND_RATIO_LIMIT,
            verdict=bound_verdict(worst["ratio"], BOUND_RATIO_LIMIT, "worst measured / bound"),
            samples=tallies["samples"],
            extra={**common, "worst_at": worst["where"], "worst_by_direction_and_radius": worst_by},
        )
    ]
    # The bound's own slope is C4's law (sup ||H|| on a segment of B(w0, R), times Theta(1) gradient
    # norms) measured again on these four widths: recorded beside the change, judged in C4, whose
    # seeds are sized for the O~ log factor of this depth-2 tanh net (here -0.43 +- 0.03).
    for direction in ("path", "random"):
        fit_bound = series.fit(f"{direction}_bound")
        fit_change = series.fit(f"{direction}_change")
        extra = {**common, "radius": SCALING_RADIUS, "direction": direction}
        records += [
            scaling_record(
                "C17",
                f"{variant}-{direction}-R{SCALING_RADIUS:g}-change",
                title=f"kernel change at R = {SCALING_RADIUS:g} ({direction}) = O(eps R) = O~(m^-1/2)",
                quantity="||K(w) - K(w0)||_F on {x, z}",
                law="slope <= -1/2 (+margin)",
                target=-0.5,
                margin=CHANGE_SLOPE_MARGIN,
                fit=fit_change,
                verdict=upper_bound_verdict(fit_change, -0.5, CHANGE_SLOPE_MARGIN),
                extra={**extra, "bound_side_slope": fit_bound.slope, "bound_side_ci95": list(fit_bound.ci95),
                       "bound_side_points": [{"width": w, "seed": s, "value": v}
                                             for w, s, v in zip(fit_bound.widths, fit_bound.seeds, fit_bound.values)]},
            ),
        ]
    judge(*records)
