"""Exploratory: how far the tangent kernel moves in training outside the theory (records X1-X3).

Measured and reported, never pass/fail (CLAIMS.md, "Exploratory"). The Hessian-norm side of these
cases is in test_appH_architectures.py; here each network is trained like the Fig. 1 runs of
Sec. 6 (full-batch gradient descent on the square loss, harness.train, the same data, step rule and
stopping rule) and Delta K = sup_t ||K(w_t) - K(w_0)||_F / ||K(w_0)||_F is fitted against the width:

* X1: a ReLU hidden layer (outside the smoothness assumption; the authors' rebuttal to R3 expects the
  kink to matter);
* X2: a softmax across the units of the hidden layer (rebuttal to R2: outside the analysis);
* X3: output rescaling alpha (f(w) - f(w0)) as in lazy training (Sec. 1, Appendix A): Delta K
  against the width at a fixed alpha, and against alpha at a fixed width (the lazy regime predicts
  Delta K ~ 1/alpha at any width, a different mechanism from the Hessian's 1/sqrt(m)).
"""

from __future__ import annotations

from harness.architectures import SoftmaxHiddenNet
from harness.fit import power_law_fit, upper_bound_verdict
from harness.models import FullyConnected, ScaledOutput
from harness.records import exploratory_record, scaling_record
from harness.sweep import run_sweep
from harness.train import TrainConfig, section6_network, train_point

#: The smooth linear-output law of Fig. 1 (C11), shown beside each exploratory slope for reference.
REFERENCE_SLOPE = -0.5

#: Output scales of X3's sweep in alpha, at one width.
ALPHAS = (1.0, 3.0, 10.0, 30.0)

#: The fixed alpha of X3's sweep in width.
LAZY_ALPHA = 10.0


def _config(grid) -> TrainConfig:
    return TrainConfig(rel_tol=grid.rel_tol, max_steps=grid.max_steps, chunk=grid.chunk)


def _grid(tier):
    grid = tier.grid("training")
    widths = grid.exploratory_widths
    seeds = grid.exploratory_seeds
    return grid, widths, seeds


def _sweep(tier, base_seed, dtype, progress, label, build):
    grid, widths, n_seeds = _grid(tier)
    seeds = tuple(base_seed + i for i in range(n_seeds))

    def measure(width, seed):
        r = train_point(build(width, grid), seed=seed, width=width, n=grid.n_train, dtype=dtype, config=_config(grid))
        return {"delta_k": r.delta_k, "steps": r.steps}

    return run_sweep(widths, seeds, measure, progress, label), grid


def _record(claim, variant, title, series, grid, model_text):
    fit = series.fit("delta_k")
    record = scaling_record(
        claim,
        variant,
        title=title,
        quantity="Delta K = sup_t ||K(w_t) - K(w_0)||_F / ||K(w_0)||_F",
        law=f"none (outside the theory); smooth linear output: slope <= {REFERENCE_SLOPE}",
        target=REFERENCE_SLOPE,
        margin=0.0,
        fit=fit,
        verdict=upper_bound_verdict(fit, REFERENCE_SLOPE, 0.0),
        extra={"model": model_text, "training": "as Fig. 1 (harness.train)", "max_steps_taken": max(series.values["steps"])},
    )
    return exploratory_record(record)


def test_x1_relu_hidden_layer_kernel_change(tier, base_seed, dtype, judge, progress):
    """X1 (rebuttal to R3): Delta K vs width for a ReLU hidden layer, linear output."""
    series, grid = _sweep(
        tier, base_seed, dtype, progress, "X1 relu training",
        lambda m, g: FullyConnected(g.input_dim, (m,), "relu"),
    )
    judge(_record("X1", "relu-training", "ReLU hidden layer: Delta K vs width (exploratory)", series, grid,
                  "1 hidden ReLU layer, linear output"))


def test_x2_softmax_hidden_layer_kernel_change(tier, base_seed, dtype, judge, progress):
    """X2 (rebuttal to R2): Delta K vs width for a softmax hidden layer, linear output."""
    series, grid = _sweep(
        tier, base_seed, dtype, progress, "X2 softmax-hidden training",
        lambda m, g: SoftmaxHiddenNet(g.input_dim, (m,)),
    )
    judge(_record("X2", "softmax-hidden-training", "softmax hidden layer: Delta K vs width (exploratory)", series,
                  grid, "1 hidden layer m softmax(z), linear output"))


def test_x3_output_rescaling_kernel_change(tier, base_seed, dtype, judge, progress):
    """X3 (Appendix A): alpha (f - f(w0)) trained by GD; Delta K vs width at alpha = 10, and vs alpha."""
    series, grid = _sweep(
        tier, base_seed, dtype, progress, f"X3 alpha={LAZY_ALPHA:g} training",
        lambda m, g: ScaledOutput(section6_network(m, g.input_dim), LAZY_ALPHA),
    )
    width = max(_grid(tier)[1])
    seeds = tuple(base_seed + i for i in range(_grid(tier)[2]))
    alphas, values, point_seeds = [], [], []
    for alpha in ALPHAS:
        for seed in seeds:
            model = ScaledOutput(section6_network(width, grid.input_dim), alpha)
            r = train_point(model, seed=seed, width=width, n=grid.n_train, dtype=dtype, config=_config(grid))
            alphas.append(alpha)
            values.append(r.delta_k)
            point_seeds.append(seed)
        progress(f"X3 width {width}, alpha {alpha:g}: Delta K {values[-1]:.3g}")
    fit_alpha = power_law_fit(alphas, values, point_seeds)
    by_alpha = scaling_record(
        "X3",
        f"rescaled-vs-alpha-m{width}",
        title=f"output rescaling: Delta K vs alpha at m = {width} (exploratory)",
        quantity="Delta K",
        law="lazy training: slope -1 in alpha",
        target=-1.0,
        margin=0.0,
        fit=fit_alpha,
        verdict=upper_bound_verdict(fit_alpha, -1.0, 0.0),
        size_name="alpha",
        extra={"alphas": list(ALPHAS), "width": width},
    )
    judge(
        _record("X3", f"rescaled-alpha{LAZY_ALPHA:g}-training", f"alpha = {LAZY_ALPHA:g}: Delta K vs width (exploratory)",
                series, grid, f"{LAZY_ALPHA:g} x (f - f(w0)), 1 hidden tanh layer"),
        exploratory_record(by_alpha),
    )
