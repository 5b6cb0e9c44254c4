"""The figures of a run, redrawn from the records (CLAIMS.md: Hessian norm vs width, the paper's
Fig. 1 left and right, Fig. 2), all listed in ``FIGURES``.

Each figure receives the merged records of the tier (not only this run's, so a ``-k`` run redraws
every figure consistently) and the report directory, draws only from what the records hold (their
``points`` and ``extra``), and returns the paths it wrote, or [] when its records are absent.

* ``hessian_scaling.png``: ||H|| at W0 vs width for the linear-output nets (C2, C4 at R = 0).
* ``hessian_ball.png``: C4 per net: ||H|| at W0, at the random point of B(W0, R) and at the worst
  point the search found, means per width, with the worst point's fit.
* ``hessian_three_kinds.png``: ||H|| vs width for the three networks of Table 1 (C10).

* ``fig1_left.png``: Delta K from init to convergence vs the width m, log-log, one series per output
  (C11): every (width, seed) point, the geometric mean per width, the fitted power law.
* ``fig1_right.png``: Delta K(t) along training at one large width, per output (C12): the median
  curve over seeds and the band between the smallest and largest.
* ``fig2_bottleneck.png``: Delta K vs the bottleneck width m_b (C13), log-log, with the fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.records import atomic_write_bytes

#: One colour per output head, the same in every figure.
HEAD_COLORS = {"linear": "#1f77b4", "softmax": "#d62728", "swish": "#2ca02c", "tanh_linear": "#9467bd"}
HEAD_ORDER = ("linear", "softmax", "swish", "tanh_linear")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_scaling(
    records: Sequence[Mapping[str, Any]], title: str, ylabel: str, path: Path, reference_slope: float | None = None
) -> bool:
    """Log-log plot of the points of each record with its fitted line; the slope in the legend."""
    if not records:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(records):
        color = colors[i % len(colors)]
        w = np.array([p["width"] for p in r["points"]], dtype=float)
        v = np.array([p["value"] for p in r["points"]], dtype=float)
        ax.scatter(w, v, s=9, alpha=0.45, color=color)
        grid = np.geomspace(w.min(), w.max(), 50)
        label = f"{r['claim']} {r['variant']}: slope {r['slope']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        ax.plot(grid, np.exp(r["intercept"]) * grid ** r["slope"], color=color, lw=1.6, label=label)
    if reference_slope is not None:
        all_w = np.array([p["width"] for r in records for p in r["points"]], dtype=float)
        all_v = np.array([p["value"] for r in records for p in r["points"]], dtype=float)
        grid = np.geomspace(all_w.min(), all_w.max(), 50)
        anchor = np.exp(np.mean(np.log(all_v))) * 1.6
        ax.plot(grid, anchor * (grid / np.exp(np.mean(np.log(all_w)))) ** reference_slope, "k--", lw=1,
                label=f"reference slope {reference_slope:+.1f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(records[0].get("size_name", "width") + " m")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return True


def save_figure(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def hessian_scaling_figure(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Hessian norm vs width at W0 for the linear-output networks (C2 and C4 at R = 0)."""
    chosen = [
        r
        for r in records
        if r["kind"] == "scaling" and r["quantity"] == "hessian_norm" and r["claim"] in ("C2", "C4")
        and r.get("extra", {}).get("radius", 0.0) == 0.0
    ]
    path = Path(directory) / "hessian_scaling.png"
    title = "Linear output: ||H|| at W0 vs width (paper Eq. 5, Thm 3.2: slope -1/2)"
    return [path] if _plot_scaling(chosen, title, "spectral norm of the Hessian ||H||", path, reference_slope=-0.5) else []


def ball_figure(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """C4: the Hessian norm at W0, at the random point and at the worst point found in the ball."""
    worst = {r["variant"].rsplit("-R", 1)[0]: r for r in records if r["claim"] == "C4" and r["variant"].endswith("-worst")}
    at_w0 = {r["variant"][: -len("-R0")]: r for r in records if r["claim"] == "C4" and r["variant"].endswith("-R0")}
    if not worst:
        return []
    plt = _pyplot()
    nets = sorted(worst)
    fig, axes = plt.subplots(1, len(nets), figsize=(3.6 * len(nets), 3.6), dpi=120, squeeze=False)
    for ax, net in zip(axes[0], nets):
        r = worst[net]
        widths = sorted({p["width"] for p in r["points"]})
        mean = [np.mean([p["value"] for p in r["points"] if p["width"] == w]) for w in widths]
        ax.plot(widths, mean, "o-", color="#d62728", label=f"worst found: slope {r['slope']:+.2f}")
        random_means = r["extra"].get("random_point_mean_by_width", {})
        if random_means:
            ax.plot(widths, [random_means[str(int(w))] for w in widths], "s--", color="#1f77b4",
                    label=f"random point: slope {r['extra']['random_point_slope']:+.2f}")
        if net in at_w0:
            r0 = at_w0[net]
            w0_means = [np.mean([p["value"] for p in r0["points"] if p["width"] == w]) for w in widths]
            ax.plot(widths, w0_means, "^:", color="#555555", label=f"W0: slope {r0['slope']:+.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{net}, R = {r['extra']['radius']:g}", fontsize=9)
        ax.set_xlabel("width m")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("||H||, mean over seeds")
    fig.suptitle("C4 (Thm 3.2): the Hessian norm in the ball B(W0, R)", fontsize=10)
    fig.tight_layout()
    path = Path(directory) / "hessian_ball.png"
    save_figure(fig, path)
    plt.close(fig)
    return [path]


def section4_figure(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Hessian norm vs width for the three kinds of network of Table 1 (C10), one log-log plot."""
    chosen = [r for r in records if r["claim"] == "C10" and r["kind"] == "scaling"]
    path = Path(directory) / "hessian_three_kinds.png"
    title = "Table 1: ||H|| vs width for linear output, phi(f) output and bottleneck"
    return [path] if _plot_scaling(chosen, title, "max over inputs of ||H||", path) else []


def _select(records: Sequence[Mapping[str, Any]], claim: str) -> list[Mapping[str, Any]]:
    chosen = [r for r in records if r["claim"] == claim]
    order = {h: i for i, h in enumerate(HEAD_ORDER)}
    return sorted(chosen, key=lambda r: (order.get(r["variant"], len(order)), r["variant"]))


def _points(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    w = np.array([p["width"] for p in record["points"]], dtype=float)
    v = np.array([p["value"] for p in record["points"]], dtype=float)
    return w, v


def _geometric_means(w: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.unique(w)
    return sizes, np.array([np.exp(np.mean(np.log(v[w == s]))) for s in sizes])


def _verdict_tag(record: Mapping[str, Any]) -> str:
    return {"confirmed": "", "exploratory": " (exploratory)"}.get(record["verdict"], f" ({record['verdict']})")


def fig1_left(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Paper Fig. 1 left: Delta K vs m (log-log) for linear, softmax and swish outputs (C11)."""
    chosen = [r for r in _select(records, "C11") if r["kind"] == "scaling"]
    if not chosen:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=130)
    for r in chosen:
        color = HEAD_COLORS.get(r["variant"], "0.3")
        w, v = _points(r)
        sizes, means = _geometric_means(w, v)
        ax.scatter(w, v, s=10, alpha=0.35, color=color, linewidths=0)
        ax.plot(sizes, means, "o", color=color, ms=5)
        grid = np.geomspace(w.min(), w.max(), 50)
        label = (
            f"{r['variant']} output: slope {r['slope']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
            f"{_verdict_tag(r)}"
        )
        ax.plot(grid, np.exp(r["intercept"]) * grid ** r["slope"], "-", color=color, lw=1.6, label=label)
    w_all = np.concatenate([_points(r)[0] for r in chosen])
    ref = np.geomspace(w_all.min(), w_all.max(), 50)
    linear = [r for r in chosen if r["variant"] == "linear"]
    if linear:
        # The m^(-1/2) law of the paper through the linear output's first geometric mean.
        sizes, means = _geometric_means(*_points(linear[0]))
        ax.plot(ref, means[0] * (ref / sizes[0]) ** -0.5, ":", color="0.4", lw=1.2, label="m^(-1/2) (paper's bound)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width m")
    ax.set_ylabel(r"$\Delta K = \sup_t \|K(w_t)-K(w_0)\|_F / \|K(w_0)\|_F$")
    ax.set_title("Fig. 1 left: kernel change from init to convergence (C11)", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    path = Path(directory) / "fig1_left.png"
    save_figure(fig, path)
    plt.close(fig)
    return [path]


def fig1_right(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Paper Fig. 1 right: Delta K(t) vs gradient-descent step at one large width (C12).

    Left panel as in the paper (linear Delta K axis); right panel the same curves on a log axis,
    where the linear output's curve, ~1e-3 or below, is visible. The step axis is logarithmic
    past step 1: Delta K(t) of the non-linear outputs rises within the first tens of steps.
    """
    chosen = [r for r in _select(records, "C12") if r.get("extra", {}).get("curves")]
    if not chosen:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4), dpi=130)
    last = 0
    for r in chosen:
        color = HEAD_COLORS.get(r["variant"], "0.3")
        curves = r["extra"]["curves"]
        last = max(last, max(c["steps"][-1] for c in curves))
        # Seeds stop at different steps; a stopped run keeps its final kernel, so its curve is
        # extended flat to the longest run before taking the median and the band.
        steps = np.unique(np.concatenate([np.asarray(c["steps"]) for c in curves]))
        stack = np.stack([np.interp(steps, c["steps"], c["delta_k"]) for c in curves])
        label = f"{r['variant']} output{_verdict_tag(r)}"
        for ax, keep in zip(axes, (steps >= 0, steps > 0)):  # Delta K(0) = 0 has no place on a log axis
            lo, hi, mid = stack.min(axis=0)[keep], stack.max(axis=0)[keep], np.median(stack, axis=0)[keep]
            ax.fill_between(steps[keep], lo, hi, color=color, alpha=0.18, linewidth=0)
            ax.plot(steps[keep], mid, color=color, lw=1.8, label=label)
    width = chosen[0]["extra"]["width"]
    seeds = len(chosen[0]["extra"]["curves"])
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(0, last)
        ax.set_xlabel("gradient-descent step t (full batch: one step = one epoch)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel(r"$\Delta K(t) = \|K(w_t)-K(w_0)\|_F / \|K(w_0)\|_F$")
    axes[0].set_title(f"Fig. 1 right: kernel change along training, m = {width} (C12)", fontsize=10)
    axes[0].legend(fontsize=8, loc="center left")
    axes[1].set_yscale("log")
    axes[1].set_ylim(bottom=max(1e-6, axes[1].get_ylim()[0]))
    axes[1].set_title(f"the same, log scale (median and range of {seeds} seeds)", fontsize=10)
    fig.tight_layout()
    path = Path(directory) / "fig1_right.png"
    save_figure(fig, path)
    plt.close(fig)
    return [path]


def fig2_bottleneck(records: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """Paper Fig. 2: Delta K vs the bottleneck width m_b (C13)."""
    chosen = [r for r in records if r["claim"] == "C13" and r["kind"] == "scaling"]
    if not chosen:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=130)
    r = chosen[0]
    w, v = _points(r)
    sizes, means = _geometric_means(w, v)
    ax.scatter(w, v, s=12, alpha=0.4, color="#1f77b4", linewidths=0, label="each seed")
    ax.plot(sizes, means, "o-", color="#1f77b4", ms=5, lw=1.0, label="geometric mean over seeds")
    grid = np.geomspace(w.min(), w.max(), 50)
    ax.plot(grid, np.exp(r["intercept"]) * grid ** r["slope"], "--", color="#d62728", lw=1.4,
            label=f"fit: slope {r['slope']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]{_verdict_tag(r)}")
    wide = r.get("extra", {}).get("wide_width")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bottleneck width $m_b$")
    ax.set_ylabel(r"$\Delta K$ from init to convergence")
    title = "Fig. 2: networks with a bottleneck (C13)"
    if wide:
        title += f", other hidden layers m = {wide}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(directory) / "fig2_bottleneck.png"
    save_figure(fig, path)
    plt.close(fig)
    return [path]


#: Every figure of a run, in the order they are drawn: (records, directory) -> paths written.
FIGURES = (hessian_scaling_figure, ball_figure, section4_figure, fig1_left, fig1_right, fig2_bottleneck)
