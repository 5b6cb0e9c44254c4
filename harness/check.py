"""Does *your* network transition to linearity? The suite's estimators and verdicts on any JAX model.

The contract is one function, ``build(width, key) -> (apply, params, xs)``:

* ``apply(params, x)``: the model output at one input x, a scalar (or a vector of ``outputs``
  numbers, of which each component is measured);
* ``params``: any pytree of arrays (the weights the Hessian and the kernel are taken over);
* ``xs``: an (n, d) array of inputs.

``check(build, widths)`` measures, at every width and seed, the spectral norm of the Hessian of the
output with respect to the weights (Lanczos, ``harness.hessian``; the largest over the first
``hessian_inputs`` inputs and every output component) and the tangent kernel's trace per input,
tr K / n = mean_i ||grad f(x_i)||^2; with ``train=True`` also Delta K, the sup over t of
||K(w_t) - K(w_0)||_F / ||K(w_0)||_F along full-batch gradient descent (``harness.train``) on a
target (default: sin(u . x) on the inputs, u a random unit vector). Each is fitted with the suite's
own estimator (``harness.fit.power_law_fit``) and the verdict is the paper's Table 1 row for that
network:

* the NTK exponent is judged against 0 (tr K / n = Theta(1), ``KERNEL_SLOPE_MARGIN``); when it is
  refuted (the kernel's scale moves with m, as in the standard parameterization) the Hessian is
  compared with the kernel's own scale: the verdict is then on ||H|| / (tr K / n);
* transition to linearity **yes** when ||H|| (relative to the kernel) vanishes: the upper end of
  its slope's 90% CI is below ``-VANISHING_SLOPE`` (the paper's rate is -1/2, ``O~`` factors make
  it -0.45 at small widths);
* **no** when ||H|| = Omega(1): ``harness.fit.omega1_verdict`` (a positive infinite-width limit of
  a + c m^(-1/2), no growth);
* **undetermined** otherwise: the confidence intervals do not decide at these widths and seeds.
  Add widths (a wider range moves the CI less than more decades do) or seeds.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
# Before any user module is loaded: imported later, pandas (under statsmodels, which harness.fit
# imports at its first fit) takes a user's module named like one of its optional dependencies
# (examples/bottleneck.py) for that dependency and fails (measured: tests/test_check.py).
import statsmodels.api  # noqa: F401

from harness.fit import CONFIRMED, REFUTED, PowerLawFit, Verdict, equality_verdict, omega1_verdict, upper_bound_verdict
from harness.hessian import hessian_spectral_norm
from harness.sweep import Series, run_sweep

#: Fewest widths a check accepts: a slope with a confidence interval needs three.
MIN_WIDTHS = 3

#: Kernel exponent band: tr K / n = Theta(1) when the slope's 90% CI lies within +-0.05 (as C3).
KERNEL_SLOPE_MARGIN = 0.05

#: "Vanishing": the upper end of the Hessian slope's 90% CI below -0.2. The paper's rate is -1/2;
#: any rate at least m^(-0.2) still makes the model linear in a fixed ball as m grows (Prop. 2.2).
VANISHING_SLOPE = 0.2

#: Omega(1): no growth beyond this slope (as C8), and a limit above this fraction of the level at
#: the smallest width (the absolute floor of ``omega1_verdict``).
GROWTH_MARGIN = 0.2
FLOOR_FRACTION = 1e-3

TRANSITIONS = ("yes", "no", "undetermined")


class BuildError(ValueError):
    """The user's build function broke the contract; the message is one line naming what is wrong."""


@dataclasses.dataclass(frozen=True)
class UserModel:
    """A user's ``apply(params, x)`` in the form the harness's estimators and trainer take."""

    fn: Callable
    num_out: int = 1

    def apply(self, params, fixed, x):
        return self.fn(params, x)

    def output_component(self, params, fixed, x, k):
        out = self.fn(params, x)
        return out if self.num_out == 1 and jnp.ndim(out) == 0 else jnp.reshape(out, (-1,))[k]

    def describe(self) -> str:
        return getattr(self.fn, "__qualname__", "user model")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The Table 1 row of a network, with every point measured.

    Attributes:
      transition: "yes", "no" or "undetermined"; reason: why.
      hessian, kernel: the fits (``PowerLawFit``) of ||H|| and tr K / n; kernel_change: of Delta K
        (``train=True`` only).
      verdicts: the verdict of each fit (Hessian as "vanishing" and as "Omega(1)", kernel).
      points: one dict per (width, seed).
    """

    transition: str
    reason: str
    hessian: PowerLawFit
    kernel: PowerLawFit
    judged: PowerLawFit
    judged_quantity: str
    verdicts: dict[str, Verdict]
    points: list[dict[str, float]]
    kernel_change: PowerLawFit | None = None
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def hessian_slope(self) -> float:
        return self.hessian.slope

    @property
    def kernel_slope(self) -> float:
        return self.kernel.slope

    def to_json(self) -> dict[str, Any]:
        def fit(f: PowerLawFit | None):
            return None if f is None else {"slope": f.slope, "ci90": list(f.ci90), "ci95": list(f.ci95), "stderr": f.stderr}

        return {
            "transition": self.transition,
            "reason": self.reason,
            "hessian_slope": self.hessian.slope,
            "hessian_ci": list(self.hessian.ci90),
            "kernel_slope": self.kernel.slope,
            "kernel_ci": list(self.kernel.ci90),
            "kernel_change_slope": None if self.kernel_change is None else self.kernel_change.slope,
            "kernel_change_ci": None if self.kernel_change is None else list(self.kernel_change.ci90),
            "judged_quantity": self.judged_quantity,
            "fits": {"hessian": fit(self.hessian), "kernel": fit(self.kernel), "judged": fit(self.judged), "kernel_change": fit(self.kernel_change)},
            "verdicts": {name: {"verdict": v.verdict, "reason": v.reason, "p_confirm": v.p_confirm} for name, v in self.verdicts.items()},
            "settings": self.settings,
            "points": self.points,
        }


# --------------------------------------------------------------------------------------------------
# The contract
def _call_build(build: Callable, width: int, key: jax.Array, outputs: int):
    """``build(width, key)``, checked: (UserModel, params, xs) or a BuildError."""
    try:
        built = build(width, key)
    except BuildError:
        raise
    except Exception as err:  # the user's code: name where it broke, in one line
        raise BuildError(f"build({width}, key) raised {type(err).__name__}: {err}") from err
    if not isinstance(built, tuple) or len(built) != 3:
        raise BuildError(f"build({width}, key) must return (apply, params, xs), got {type(built).__name__}"
                         + (f" of length {len(built)}" if isinstance(built, tuple) else ""))
    apply, params, xs = built
    if not callable(apply):
        raise BuildError(f"build({width}, key): apply is not callable ({type(apply).__name__})")
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or not all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves):
        raise BuildError(f"build({width}, key): params must be a non-empty pytree of arrays")
    if not all(jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in leaves):
        raise BuildError(f"build({width}, key): every leaf of params must be a floating-point array")
    xs = jnp.asarray(xs)
    if xs.ndim != 2 or xs.shape[0] < 1:
        raise BuildError(f"build({width}, key): xs must be an (n, d) array of inputs, got shape {tuple(xs.shape)}")
    if not bool(jnp.all(jnp.isfinite(xs))):
        raise BuildError(f"build({width}, key): xs holds non-finite values")
    for leaf in leaves:
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise BuildError(f"build({width}, key): params hold non-finite values")
    try:
        out = jnp.asarray(apply(params, xs[0]))
    except Exception as err:
        raise BuildError(f"build({width}, key): apply(params, xs[0]) raised {type(err).__name__}: {err}") from err
    expected = () if outputs == 1 else (outputs,)
    if out.shape != expected:
        what = "a scalar" if outputs == 1 else f"a vector of {outputs} outputs"
        hint = "" if outputs != 1 or out.ndim != 1 else f" (pass outputs={out.shape[0]} / --output {out.shape[0]} to measure each component)"
        raise BuildError(f"build({width}, key): apply(params, x) must return {what}, got shape {tuple(out.shape)}{hint}")
    if not bool(jnp.all(jnp.isfinite(out))):
        raise BuildError(f"build({width}, key): apply(params, xs[0]) is not finite ({out})")
    return UserModel(apply, outputs), params, xs


def _check_arguments(widths: Sequence[int], seeds: int, hessian_inputs: int) -> list[int]:
    try:
        widths = [int(w) for w in widths]
    except (TypeError, ValueError):
        raise BuildError(f"widths must be integers, got {widths!r}") from None
    if len(set(widths)) < MIN_WIDTHS:
        raise BuildError(f"a check needs at least {MIN_WIDTHS} distinct widths for a slope, got {sorted(set(widths))}")
    if min(widths) < 1:
        raise BuildError(f"widths must be positive, got {widths}")
    if int(seeds) < 2:
        raise BuildError(f"a check needs at least 2 seeds per width for a confidence interval, got {seeds}")
    if int(hessian_inputs) < 1:
        raise BuildError(f"hessian_inputs must be at least 1, got {hessian_inputs}")
    return sorted(set(widths))


def _default_target(xs: jax.Array, key: jax.Array, outputs: int) -> jax.Array:
    """sin(u . x / ||x|| * sqrt(d)) for a random unit vector u (one per output): smooth, order one."""
    d = xs.shape[1]
    u = jax.random.normal(key, (d, outputs), dtype=xs.dtype)
    u = u / jnp.linalg.norm(u, axis=0, keepdims=True)
    radius = jnp.linalg.norm(xs, axis=1, keepdims=True) / math.sqrt(d)
    ys = jnp.sin((xs / jnp.where(radius > 0, radius, 1.0)) @ u)
    return ys[:, 0] if outputs == 1 else ys


# --------------------------------------------------------------------------------------------------
# Measuring one point
def _measure_point(build, width, seed, *, outputs, hessian_inputs, tol, max_iters, train, target, train_config):
    key = jax.random.fold_in(jax.random.key(seed), width)
    model, params, xs = _call_build(build, width, jax.random.fold_in(key, 0), outputs)
    lanczos_key = jax.random.fold_in(key, 1)
    norms = []
    for i in range(min(hessian_inputs, xs.shape[0])):
        for k in range(outputs):
            est = hessian_spectral_norm(
                model.output_component, params, None, xs[i], k,
                key=jax.random.fold_in(lanczos_key, i * outputs + k), tol=tol, max_iters=max_iters,
            )
            norms.append(est)
    from harness.kernel import kernel_diagonal

    diag = np.asarray(kernel_diagonal(model, params, None, xs))
    trace = float(np.mean(diag))
    point = {
        "hessian_norm": max(e.spectral_norm for e in norms),
        "kernel_trace_per_input": trace,
        "hessian_over_kernel": max(e.spectral_norm for e in norms) / trace if trace > 0 else math.inf,
        "lanczos_converged": float(all(e.converged for e in norms)),
        "lanczos_iterations": float(max(e.iterations for e in norms)),
    }
    if train:
        from harness.train import Dataset, train as run_gd

        ys = target(xs) if target is not None else _default_target(xs, jax.random.fold_in(key, 2), outputs)
        ys = jnp.asarray(ys, dtype=xs.dtype)
        data = Dataset(xs, ys, {"target": "user" if target is not None else "sin(u . x)"})
        result = run_gd(model, params, None, data, train_config, seed=seed, width=width)
        point["kernel_change"] = float(np.max(result.kernel_change))
        point["train_steps"] = float(result.steps)
        point["train_converged"] = float(result.stopped == "tolerance")
    return point


# --------------------------------------------------------------------------------------------------
# The verdict
def _transition(judged: PowerLawFit, kernel: PowerLawFit, kernel_ok: Verdict) -> tuple[str, str, dict[str, Verdict]]:
    vanishing = upper_bound_verdict(judged, -0.5, 0.5 - VANISHING_SLOPE)
    floor = FLOOR_FRACTION * judged.level_at_smallest() if judged.level_at_smallest() > 0 else 1e-12
    order_one = omega1_verdict(judged, GROWTH_MARGIN, floor)
    verdicts = {"hessian_vanishing": vanishing, "hessian_order_one": order_one, "kernel_order_one": kernel_ok}
    if vanishing.verdict == CONFIRMED and order_one.verdict != CONFIRMED:
        return "yes", f"the Hessian vanishes: {vanishing.reason}", verdicts
    if order_one.verdict == CONFIRMED and vanishing.verdict != CONFIRMED:
        return "no", f"the Hessian stays of order one: {order_one.reason}", verdicts
    return (
        "undetermined",
        f"neither decided at these widths and seeds (vanishing: {vanishing.verdict}; Omega(1): "
        f"{order_one.verdict}): add widths or seeds",
        verdicts,
    )


def check(
    build: Callable,
    widths: Sequence[int],
    *,
    seeds: int = 8,
    outputs: int = 1,
    hessian_inputs: int = 4,
    train: bool = False,
    target: Callable | None = None,
    tol: float = 1e-3,
    max_iters: int = 100,
    base_seed: int = 0,
    train_config=None,
    progress: Callable[[str], None] | None = None,
) -> CheckResult:
    """Measure, fit and judge whether the networks ``build`` makes transition to linearity.

    Args:
      build: ``build(width, key) -> (apply, params, xs)`` (module docstring).
      widths: at least three widths.
      seeds: networks per width (seeds ``base_seed .. base_seed + seeds - 1``).
      outputs: number of output components of ``apply`` (1: a scalar).
      hessian_inputs: the Hessian norm is the largest over this many of the first inputs (and
        every component): one input's norm has a heavy lower tail for some heads.
      train: also train each network by full-batch GD and fit Delta K.
      target: ``target(xs) -> ys`` for training (default sin(u . x), see ``_default_target``).
      tol, max_iters: Lanczos stopping tolerance and cap.
      train_config: a ``harness.train.TrainConfig`` (default: its defaults).
      progress: receives a line per width.

    Raises:
      BuildError: a malformed build function, too few widths or seeds (before any measurement).
    """
    widths = _check_arguments(widths, seeds, hessian_inputs)
    if outputs < 1:
        raise BuildError(f"outputs must be at least 1, got {outputs}")
    _call_build(build, widths[0], jax.random.key(base_seed), outputs)  # fail fast, before the sweep
    if train and train_config is None:
        from harness.train import TrainConfig

        train_config = TrainConfig()
    seed_list = [base_seed + i for i in range(int(seeds))]

    def measure(width, seed):
        return _measure_point(
            build, width, seed, outputs=outputs, hessian_inputs=hessian_inputs, tol=tol, max_iters=max_iters,
            train=train, target=target, train_config=train_config,
        )

    start = time.time()
    series: Series = run_sweep(widths, seed_list, measure, progress, "check")
    hessian = series.fit("hessian_norm")
    kernel = series.fit("kernel_trace_per_input")
    kernel_ok = equality_verdict(kernel, 0.0, KERNEL_SLOPE_MARGIN)
    if kernel_ok.verdict == REFUTED:
        judged, quantity = series.fit("hessian_over_kernel"), "||H|| / (tr K / n)"
    else:
        judged, quantity = hessian, "||H||"
    transition, reason, verdicts = _transition(judged, kernel, kernel_ok)
    change = series.fit("kernel_change") if train else None
    points = [
        {"width": w, "seed": s, **{name: values[i] for name, values in series.values.items()}}
        for i, (w, s) in enumerate(zip(series.widths, series.seeds))
    ]
    settings = {
        "widths": widths, "seeds": seed_list, "outputs": outputs, "hessian_inputs": hessian_inputs,
        "train": train, "lanczos_tol": tol, "lanczos_max_iters": max_iters, "seconds": round(time.time() - start, 1),
        "vanishing_slope": -VANISHING_SLOPE, "kernel_slope_margin": KERNEL_SLOPE_MARGIN, "growth_margin": GROWTH_MARGIN,
    }
    return CheckResult(transition, f"{quantity}: {reason}", hessian, kernel, judged, quantity, verdicts, points, change, settings)


# --------------------------------------------------------------------------------------------------
# Loading a build function named on the command line
def load_build(spec: str) -> Callable:
    """``module.path:function`` or ``path/to/file.py:function`` -> the function (BuildError if not).

    A file's directory is put first on ``sys.path``, so that it can import the modules beside it.
    """
    if ":" not in spec:
        raise BuildError(f"name the build function as MODULE:FUNCTION or FILE.py:FUNCTION, got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py") or Path(where).suffix == ".py":
        path = Path(where)
        if not path.is_file():
            raise BuildError(f"no such file: {where}")
        if str(path.resolve().parent) not in sys.path:
            sys.path.insert(0, str(path.resolve().parent))
        module_name = f"_linearity_user_{path.stem}"
        spec_obj = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[module_name] = module
        try:
            spec_obj.loader.exec_module(module)
        except Exception as err:
            raise BuildError(f"importing {where} raised {type(err).__name__}: {err}") from err
    else:
        try:
            module = importlib.import_module(where)
        except Exception as err:
            raise BuildError(f"cannot import module {where!r}: {type(err).__name__}: {err}") from err
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise BuildError(f"{where} has no function {name!r}")
    return fn


# --------------------------------------------------------------------------------------------------
# Output: a table row, a JSON record and a figure
def table_row(result: CheckResult) -> str:
    """The network's row of the paper's Table 1, as a Markdown table with its header."""
    h, k = result.hessian, result.kernel
    lines = [
        "| Hessian exponent (90% CI) | NTK exponent (90% CI) | transition to linearity |",
        "|---|---|---|",
        f"| {h.slope:+.3f} [{h.ci90[0]:+.3f}, {h.ci90[1]:+.3f}] | {k.slope:+.3f} [{k.ci90[0]:+.3f}, {k.ci90[1]:+.3f}] "
        f"| {result.transition} |",
    ]
    if result.kernel_change is not None:
        c = result.kernel_change
        lines.append("")
        lines.append(f"Delta K along gradient descent: exponent {c.slope:+.3f} [{c.ci90[0]:+.3f}, {c.ci90[1]:+.3f}]")
    lines += ["", f"Reason: {result.reason}"]
    return "\n".join(lines)


def write_json(result: CheckResult, path: Path) -> Path:
    from harness.records import atomic_write_text, json_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json_text(result.to_json()))
    return path


def plot(result: CheckResult, path: Path, title: str = "") -> Path:
    """||H|| and tr K / n against width (log-log), the points and each fitted law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, fit, name in ((axes[0], result.hessian, "||H||"), (axes[1], result.kernel, "tr K / n")):
        ax.loglog(fit.widths, fit.values, "o", ms=3, alpha=0.5, label="seeds")
        grid = np.geomspace(min(fit.widths), max(fit.widths), 50)
        ax.loglog(grid, [fit.predict(w) for w in grid], "-", label=f"fit: slope {fit.slope:+.3f}")
        ticks = sorted(set(fit.widths))
        ax.set_xticks(ticks, [f"{w:g}" for w in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("width m")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} transition to linearity: {result.transition}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
