"""Width and seed grids per scale tier, in one place (CLAIMS.md, "Scale tiers").

* ``smoke``: seconds of work per claim, for wiring; verdicts are recorded, a claim that is not
  confirmed at this scale is skipped, not failed (the grids are too small to judge).
* ``default``: what ``pytest claims/`` and CI run on a 2-core CPU in float64: shallow nets up to
  width ~3e4, deep nets up to 512-1024.
* ``paper``: the paper's own widths (Fig. 1: m up to 1e6; Fig. 2: m = 1e4) in float32, for a GPU.

Seeds are offsets added to the run's base seed (``--seed``), so a tier names how many seeds it
uses and a run names where they start.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

TIER_NAMES = ("smoke", "default", "paper", "paper-dry")

#: Sweeps whose seeds are sized per variant (see ``Tier.sweep_seeds``).
SIZED_SWEEPS = frozenset(
    [f"C3 {a}-depth{d}" for a in ("tanh", "swish") for d in (2, 3)]
    + [f"C4 {a}-depth{d}{w}" for a in ("tanh", "swish") for d in (2, 3) for w in ("", "-worst")]
    + ["C2", "C5", "C8 shallow", "C8 deep", "C10 linear-output", "C17", "C18", "C19"]
    + ["C8 shallow-swish", "C8 shallow-softmax", "C8 shallow-tanh"]
    + [f"C5 {q}-{a}" for q in ("tensors", "ww-tensor", "mechanism") for a in ("tanh", "swish")]
    + [f"C6 {a}-{q}" for a in ("cnn", "resnet", "mixed") for q in ("hessian", "kernel")]
)
ENV_VAR = "LINEARITY_SCALE"


class UnknownTierError(ValueError):
    """A tier name that is not one of ``TIER_NAMES``."""


# ------------------------------------------------------------------------------------------------
# The grids of the claim groups, one typed record per group: a misspelt field is an error where the
# tier is defined (at import), and a claim reads ``grid.field``. Each field is documented once here;
# the power argument for a tier's values stands next to them in TIERS.
@dataclasses.dataclass(frozen=True)
class Sec4Grid:
    """Section 4 at initialization (C7-C10): non-linear output heads and bottlenecks.

    Attributes:
      identity_widths: widths at which C7's exact identities (Eq. 12, 13) are checked.
      shallow_widths: widths of the shallow phi(f) nets of C8.
      deep_judged_heads: heads of the deep phi(f) nets (C8) judged at this tier; the others are
        recorded as exploratory (pre-asymptotic).
      deep_head_grids: (head, widths) pairs: deep phi(f) heads measured on widths of their own
        instead of the depth-2 grid (``harness.networks.section4_widths``).
      bottleneck_widths: wide widths m of the bottleneck nets [m, m_b, m] (C9, C10).
      bottleneck_sizes: the bottleneck widths m_b.
      bottleneck_seed_factor: seeds per bottleneck point, as a multiple of the Hessian seeds.
    """

    identity_widths: tuple[int, ...]
    shallow_widths: tuple[int, ...]
    deep_judged_heads: tuple[str, ...]
    bottleneck_widths: tuple[int, ...]
    bottleneck_sizes: tuple[int, ...]
    bottleneck_seed_factor: int
    deep_head_grids: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclasses.dataclass(frozen=True)
class TrainingGrid:
    """Sec. 6 training (C11-C16, ``harness.train``): full-batch GD on n points of the sphere in R^d.

    Attributes:
      input_dim, n_train, num_classes: the data (d, n) and the softmax head's classes.
      seeds, linear_seeds, softmax_seeds: seeds of the Fig. 1 sweeps (``harness.train.fig1_seeds``):
        non-linear heads and C15, the linear head, the softmax head.
      rel_tol, max_steps, chunk: the stopping rule (L(w_T) <= rel_tol L(w_0)), the step cap and the
        steps per compiled chunk of the Fig. 1 runs.
      fig1_widths: widths of the one-hidden-layer nets of Fig. 1 (C11; C14 and C16 reuse their runs).
      exploratory_widths, exploratory_seeds: X1-X3's training sweeps.
      curve_width: the width of Fig. 1 right's Delta K(t) curves (C12, one of fig1_widths).
      bottleneck_wide, bottleneck_sizes, bottleneck_seeds: Fig. 2 (C13): three hidden layers
        (wide, m_b, wide).
      narrow_wide_widths, narrow_seeds: wide widths and seeds at which C13's narrowest bottleneck is
        trained (its Omega(1) limit in m).
      convergence_widths, convergence_max_steps: Theorem 5.1 (C15).
      linear_model_widths: widths of C16's linear model and its network partner (Fig. 1 runs).
      dtype: the dtype of the training runs if not the tier's (None: the tier's).
    """

    input_dim: int
    n_train: int
    num_classes: int
    seeds: int
    linear_seeds: int
    softmax_seeds: int
    rel_tol: float
    max_steps: int
    chunk: int
    fig1_widths: tuple[int, ...]
    exploratory_widths: tuple[int, ...]
    exploratory_seeds: int
    curve_width: int
    bottleneck_wide: int
    bottleneck_sizes: tuple[int, ...]
    bottleneck_seeds: int
    narrow_wide_widths: tuple[int, ...]
    narrow_seeds: int
    convergence_widths: tuple[int, ...]
    convergence_max_steps: int
    linear_model_widths: tuple[int, ...]
    dtype: str | None = None


@dataclasses.dataclass(frozen=True)
class TheoryGrid:
    """C17-C19: Prop. 2.2 on segments from W0, the standard parameterization, the infinite-width NTK.

    Attributes:
      bound_widths, bound_seeds: C17's widths and seeds (28 Lanczos runs per width and seed).
      lanczos_max_iters: the Lanczos cap of C17 and C18.
      param_seeds: C18's seeds (standard vs NTK parameterization on C4's depth-2 widths).
      limit_widths, limit_seeds, limit_points: C19's widths, seeds and inputs (kernels only).
      pd_points: points on the sphere at which C19's limiting kernel is checked positive definite.
      taylor_seeds, taylor_radius, taylor_steps: C20's seeds per width (the shallow widths), the
        radius R of the ball and the ascent steps from each start (``harness.taylor``).
    """

    bound_widths: tuple[int, ...]
    bound_seeds: int
    lanczos_max_iters: int
    param_seeds: int
    limit_widths: tuple[int, ...]
    limit_seeds: int
    limit_points: int
    pd_points: int
    taylor_seeds: int
    taylor_radius: float
    taylor_steps: int


@dataclasses.dataclass(frozen=True)
class ArchitecturesGrid:
    """C6 and the exploratory X1-X3 (``harness.architectures``).

    Attributes:
      cnn_input, resnet_input, mixed_input: input shapes (channels, *spatial) of the three nets.
      cnn_layers, resnet_blocks, mixed_conv_layers: their depths.
      input_dim, dense_depth: the dense exploratory nets (X1, X2): input dimension and depth.
      widths: width (channel) grids by architecture ("cnn", "resnet", "mixed", "relu", "softmax").
      hessian_seeds, kernel_seeds, kernel_inputs: C6's Hessian seeds, kernel seeds and inputs per
        network (counts sized by power in ``Tier.sweep_seeds``).
      exploratory_seeds: seeds of X1 and X2.
    """

    cnn_input: tuple[int, ...]
    cnn_layers: int
    resnet_input: tuple[int, ...]
    resnet_blocks: int
    mixed_input: tuple[int, ...]
    mixed_conv_layers: int
    input_dim: int
    dense_depth: int
    widths: dict[str, tuple[int, ...]]
    hessian_seeds: int
    kernel_seeds: int
    kernel_inputs: int
    exploratory_seeds: int

    def input_shape(self, architecture: str) -> tuple[int, ...]:
        """The input shape of a convolutional architecture ("cnn", "resnet" or "mixed")."""
        shapes = {"cnn": self.cnn_input, "resnet": self.resnet_input, "mixed": self.mixed_input}
        if architecture not in shapes:
            raise KeyError(f"no input shape for architecture {architecture!r}; valid: {', '.join(shapes)}")
        return tuple(shapes[architecture])


#: The grid type of each claim group.
GRID_TYPES: dict[str, type] = {
    "sec4": Sec4Grid,
    "training": TrainingGrid,
    "theory": TheoryGrid,
    "architectures": ArchitecturesGrid,
}
Grid = Sec4Grid | TrainingGrid | TheoryGrid | ArchitecturesGrid


@dataclasses.dataclass(frozen=True)
class Tier:
    """Everything a claim needs to know about the scale it runs at.

    Attributes:
      name: the tier's name.
      dtype: floating dtype of the weights ("float64" on CPU, "float32" at paper scale on a GPU).
      n_seeds: seeds for sweeps whose points are cheap (gradients, shallow nets).
      n_hessian_seeds: seeds for deep-network Hessian sweeps (one Lanczos run per point).
      input_dim: d, the input dimension of deep networks (inputs on the sphere of radius sqrt d).
      exact_widths: widths of the shallow nets whose dense Hessian is formed (C1).
      shallow_widths: width grid of the shallow net of Sec. 3.1 (C2, C3).
      deep_widths: width grid of deep fully-connected nets, by depth (C3, C4).
      gradient_widths: width grid for per-layer gradient norms (C5), which cost one gradient.
      ball_radius: R of the ball B(W0, R) that C4 searches for its worst point, fixed as m grows
        (the theorem's R).
      lanczos_tol: Ritz-residual tolerance of the Hessian norm (relative); seed-to-seed spread of
        the norm is several percent, so 1e-3 is well below the noise of a fit.
      lanczos_max_iters: cap on Hessian-vector products per norm.
      groups: grids of the other claim groups by name: "sec4" (C7-C10), "training" (C11-C16),
        "theory" (C17-C19), "architectures" (C6 and exploratory records).
      sweep_seeds: seeds of the sweeps sized by their own power, by "<claim> <variant>".
    """

    name: str
    dtype: str
    n_seeds: int
    n_hessian_seeds: int
    input_dim: int
    exact_widths: tuple[int, ...]
    shallow_widths: tuple[int, ...]
    deep_widths: dict[int, tuple[int, ...]]
    gradient_widths: tuple[int, ...]
    ball_radius: float
    lanczos_tol: float
    lanczos_max_iters: int
    groups: dict[str, Grid] = dataclasses.field(default_factory=dict)
    sweep_seeds: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for group, grid in self.groups.items():
            expected = GRID_TYPES.get(group)
            if expected is None:
                raise KeyError(f"tier {self.name!r}: unknown claim group {group!r}; valid: {', '.join(GRID_TYPES)}")
            if not isinstance(grid, expected):
                raise TypeError(f"tier {self.name!r}: the {group!r} grid must be a {expected.__name__}, got {type(grid).__name__}")
        for sweep in self.sweep_seeds:
            if sweep not in SIZED_SWEEPS:
                raise KeyError(f"tier {self.name!r}: unknown sized sweep {sweep!r}")

    def sweep_seed_count(self, sweep: str, default: int) -> int:
        """Seeds of a sweep sized by its own power (``sweep_seeds``), else ``default``.

        Names are "<claim> <variant>" (e.g. "C4 tanh-depth2") and must be in ``SIZED_SWEEPS``, so a
        misspelt name is an error; a tier that does not size a listed sweep uses ``default``.
        """
        if sweep not in SIZED_SWEEPS:
            raise KeyError(f"unknown sweep {sweep!r}; sized sweeps: {', '.join(sorted(SIZED_SWEEPS))}")
        return self.sweep_seeds.get(sweep, default)

    def grid(self, group: str) -> Grid:
        """The grid of a claim group ("sec4", "training", "theory", "architectures")."""
        if group not in self.groups:
            raise KeyError(f"tier {self.name!r} has no grid for {group!r}; it has {sorted(self.groups)}")
        return self.groups[group]

    def seeds(self, base: int, hessian: bool = False) -> tuple[int, ...]:
        """The seeds of a sweep: ``base, base + 1, ...``."""
        count = self.n_hessian_seeds if hessian else self.n_seeds
        return tuple(base + i for i in range(count))

    @property
    def judged(self) -> bool:
        """Whether a non-confirmed scaling verdict fails the test (not at smoke and paper-dry, whose
        grids are too small to judge a slope; an identity or inequality is judged at every tier)."""
        return self.name not in ("smoke", "paper-dry")


TIERS: dict[str, Tier] = {
    "smoke": Tier(
        name="smoke",
        dtype="float64",
        n_seeds=2,
        n_hessian_seeds=2,
        input_dim=4,
        exact_widths=(3, 6),
        shallow_widths=(16, 64, 256),
        deep_widths={2: (8, 16, 32), 3: (8, 16, 32)},
        gradient_widths=(16, 64, 256),
        ball_radius=4.0,
        lanczos_tol=1e-3,
        lanczos_max_iters=60,
        groups={
            "sec4": Sec4Grid(
                identity_widths=(3, 6),
                shallow_widths=(64, 256, 1024),
                deep_judged_heads=("swish", "softmax"),
                bottleneck_widths=(16, 64, 256),
                bottleneck_sizes=(1, 3),
                bottleneck_seed_factor=1,
            ),
            # max_steps caps the Fig. 1 runs (swish and softmax heads stop there: the smoke tier does
            # not judge scale-dependent records, and a capped run's record says so).
            "training": TrainingGrid(
                input_dim=4,
                n_train=8,
                num_classes=3,
                seeds=2,
                linear_seeds=2,
                softmax_seeds=2,
                rel_tol=1e-6,
                max_steps=300,
                chunk=20,
                fig1_widths=(16, 64, 256),
                # The exploratory training records need three widths for a slope.
                exploratory_widths=(16, 64, 256),
                exploratory_seeds=3,
                curve_width=256,
                bottleneck_wide=64,
                bottleneck_sizes=(2, 4, 8),
                bottleneck_seeds=2,
                # The Omega(1) limit in m needs three widths.
                narrow_wide_widths=(32, 64, 128),
                narrow_seeds=2,
                convergence_widths=(16, 64, 256),
                convergence_max_steps=1000,
                linear_model_widths=(64,),
            ),
            # Lanczos capped at 60 steps (C4 needs <= 47 at these widths; a capped run's Ritz values
            # only underestimate ||H||).
            "theory": TheoryGrid(
                bound_widths=(8, 16, 32),
                bound_seeds=2,
                lanczos_max_iters=60,
                param_seeds=2,
                limit_widths=(32, 64, 128),
                limit_seeds=8,
                limit_points=6,
                pd_points=12,
                taylor_seeds=2,
                taylor_radius=1.0,
                taylor_steps=10,
            ),
            # Tiny images and signals, for wiring.
            "architectures": ArchitecturesGrid(
                cnn_input=(2, 4, 4),
                cnn_layers=2,
                resnet_input=(2, 4, 4),
                resnet_blocks=1,
                mixed_input=(2, 8),
                mixed_conv_layers=1,
                input_dim=4,
                dense_depth=2,
                widths={"cnn": (4, 8, 16), "resnet": (4, 8, 16), "mixed": (4, 8, 16), "relu": (8, 16, 32), "softmax": (8, 16, 32)},
                hessian_seeds=2,
                kernel_seeds=2,
                kernel_inputs=4,
                exploratory_seeds=2,
            ),
        },
    ),
    "default": Tier(
        name="default",
        dtype="float64",
        n_seeds=8,
        n_hessian_seeds=8,
        input_dim=8,
        exact_widths=(4, 16, 64),
        shallow_widths=(100, 316, 1000, 3162, 10000, 31623),
        deep_widths={2: (32, 64, 128, 256, 512), 3: (32, 64, 128, 256, 512)},
        gradient_widths=(32, 64, 128, 256, 512, 1024, 2048),
        # R = 1 is not measured: its slopes equalled those of R = 0 and R = 4 to 0.01 (the same
        # measurement); the seeds it cost went to the variants that needed power.
        ball_radius=4.0,
        lanczos_tol=1e-3,
        lanczos_max_iters=100,
        # Seeds by power. A judged slope is confirmed again with probability p_confirm >= 0.999 when
        # its distance D from the estimate to the band's nearest edge is at least (t_0.95 + z_0.999)
        # = 4.74 standard errors; with n0 points giving standard error s0 that needs
        # n >= n0 (4.74 s0 / D)^2 points. The figures below are those of base-seed-0 runs with the
        # Gamma-GLM fit (first with 8 seeds or the count named, then with the counts here); each
        # count is that n with a safety factor of 1.2-1.6 for the spread of D between runs, and
        # "edge" is the resulting distance of the CI's end from the band's (p_confirm ~ Phi(edge)).
        # Sweeps whose points are spread more at small widths (Hessian norms, kernels, gradient
        # norms: averages over ~m units) take ``harness.sweep.seeds_by_width``: the count here is the
        # largest width's, and width m gets ceil(sqrt(m_max / m)) times as many (at most 4x). For a
        # slope fitted over 32..512, where the relative spread is ~2.5x larger at 32 than at 512, the
        # slope's variance is ~(6 + 1) / n with n seeds everywhere and ~(6 / 4 + 1) / n' with the
        # schedule: half the count at the largest width still gains power, and costs less (a point
        # costs ~m). So the counts of sweeps with room to spare (mean edge >= 3.5 over the five
        # robustness runs and seed 0) were halved; the weaker ones kept theirs, or more where the
        # schedule alone left the mean edge below ~4 (C8 deep, C6 resnet-hessian).
        # Then, to keep the claims under 10 minutes on 2 cores (1290 s of worker time at seed 0 with
        # the counts before): counts cut where the smallest edge over seed 0 and base seeds 60042 and
        # 70049 was >= 6 (halving n leaves edge' = (edge + 1.645) / sqrt(2) - 1.645 >= 4, a third off
        # leaves >= 4.6), named "then" below.
        sweep_seeds={
            # C2: Eq. 5 is exact for the shallow net, the slope's standard error is < 1e-4. Then:
            # smallest edge 1718 with 4 seeds; 2 (the fewest that have a spread).
            "C2": 2,
            # C8 shallow phi(f) heads (8 seeds): the smallest edge was 7.3 (sigmoid), 4 leave 4.7.
            # Then the swish and softmax heads' smallest edges were 18.3 and 18.8: 2 seeds (~12).
            "C8 shallow": 4,
            "C8 shallow-swish": 2,
            "C8 shallow-softmax": 2,
            # Then the tanh head's edge was 31.1 with 4 (its smallest p_confirm over the five base
            # seeds of reports/default/robustness.md 1.0000): 2 seeds leave about 21.
            "C8 shallow-tanh": 2,
            # C3 deep, tr K / n (64 seeds): x1.39 (swish-2), x1.09 (tanh-3), x2.26 (swish-3).
            "C3 tanh-depth2": 32,
            "C3 swish-depth2": 96,
            "C3 tanh-depth3": 48,
            "C3 swish-depth3": 160,
            # C4: slope -0.436 +- 0.018 for tanh-depth2 (the O~ log factor leaves D = 0.036): x5.8;
            # swish-depth3 -0.498 +- 0.032: x2.5; tanh-depth3 -0.479 +- 0.018: x1.13; swish-depth2 x<1.
            # With 48 seeds tanh-depth2 gave -0.444 +- 0.0063 (edge 5.3); 32 gave -0.436 +- 0.0086
            # (edge 2.5): the estimate itself moves by a standard error, so 48.
            # Then swish-depth3 and tanh-depth3 had smallest edges 6.0 and 6.2: a third off (4.6, 4.8).
            "C4 tanh-depth2": 24,
            "C4 swish-depth3": 16,
            "C4 tanh-depth3": 8,
            "C4 swish-depth2": 8,
            # C4 at the worst point of B(W0, 4) (upper bound slope <= -0.4; a search costs ~15 norms):
            # at 8 seeds (96 points) the edges were 8.6 (tanh-2, slope -0.565 +- 0.016), 12.2
            # (tanh-3), 21.2 (swish-2), 27.1 (swish-3); a fraction 1/k of the points leaves
            # (edge + 1.645) / sqrt(k) - 1.645: 5.6 at 4 seeds, 5.3 at 2, 8.4 and 10.5 at 2.
            "C4 tanh-depth2-worst": 4,
            "C4 tanh-depth3-worst": 2,
            "C4 swish-depth2-worst": 2,
            "C4 swish-depth3-worst": 2,
            # C5 two-norms: tanh-layer2 +0.024 +- 0.0115 against the band's edge 0.05: x4.4. With 48
            # seeds the smallest edge was 4.8 (swish-layer1-two): 32 leave 3.6. Then, at 24, the
            # smallest was 5.5 (swish-layer1-two): 16 leave 4.2.
            "C5": 16,
            # C5 tensor norms (closed forms, no Hessian-vector product) on C4's depth-3 grid: at C4's
            # seeds (tanh 8, swish 16) the smallest edges were 7.8 (tanh ww) and 1.8 (swish layer-3
            # ww: s^2 ||alpha||^2 max |sigma''|, whose spread between seeds is 0.6 of its mean at
            # m = 32 and 0.2 at 512 for swish, 0.14 and 0.04 for tanh); 48 swish seeds give
            # (1.8 + 1.645) sqrt(3) - 1.645 = 4.3 (measured 3.5 and 5.6 at base seed 0). ww costs a
            # forward pass; the other two an n x n eigenproblem per layer (0.1-0.3 s at m = 512), and
            # at 48 seeds their edges were 24-30 (swish) and 25-45 (tanh at 8): at 8 swish seeds
            # (24 + 1.645) / sqrt(6) - 1.645 = 8.8 (measured at base seed 0: aa 5.9 and 8.4, aw 10.7
            # and 11.0; the C5 tensor tests went from 237 s to 57 s).
            "C5 ww-tensor-tanh": 8,
            "C5 ww-tensor-swish": 48,
            "C5 tensors-tanh": 8,
            "C5 tensors-swish": 8,
            # C5 ||H|| / mechanism bound (the aa ascent and a Lanczos estimate per point; the first of
            # C4's seeds, whose estimates it reuses): at C4's 16 swish and 8 tanh seeds the edges were
            # 13.2 and 15.7; 4 seeds leave (13.2 + 1.645) / 2 - 1.645 = 5.8 and 10.6 (measured at
            # base seed 0: 9.2 and 10.5; at 350213, 590309, 830411 tanh 7.5-10.5 but swish 4.7, 6.2
            # and 3.0, its slope's error 0.03-0.044: 8 swish seeds give (3.0 + 1.645) sqrt(2) - 1.645
            # = 5.0 at the worst).
            "C5 mechanism-tanh": 4,
            "C5 mechanism-swish": 8,
            # C6 (16 Hessian, 48 kernel seeds): mixed x3.1 and x3.3, cnn x1.26 and x1.7, resnet x1.03.
            # Then cnn-hessian at 24 seeds moved to -0.522 +- 0.021 (edge 2.1): 48 give 3.65;
            # mixed-hessian at 56 seeds -0.486 +- 0.012 (edge 5.4), at 32 -0.471 +- 0.016 (edge 2.9):
            # 48; cnn-kernel at 96 edge 3.0: 128 give 3.75.
            "C6 cnn-hessian": 48,
            "C6 resnet-hessian": 28,
            "C6 mixed-hessian": 24,
            # Then 4 inputs per network instead of 16 (the architectures grid): x1.375, x1.5, x1.25.
            "C6 cnn-kernel": 176,
            "C6 resnet-kernel": 72,
            "C6 mixed-kernel": 240,
            # C8 deep phi(f) heads (the Omega(1) limit of a + c m^(-1/2)): with 8 seeds the softmax
            # head's limit lay 2.4 standard errors (mean over six runs) inside the required level,
            # the noise of the m = 32 mean being half the limit's error: the schedule and 12 seeds.
            # (Halving the swish head's count, whose smallest edge was 10.6 with 12, gave edges 7.4,
            # 7.4, 2.2 and 5.5 at base seeds 140098-170119: the required level, half the mean at
            # m = 32, is itself noisy. Back to 12.)
            "C8 deep": 12,
            # C10 linear output (max over 4 inputs of ||H||): -0.453 +- 0.013: x1.4; at 16 seeds
            # -0.450 +- 0.011 (edge 2.8): 24.
            "C10 linear-output": 24,
            # C17 kernel change along the GD path (8 seeds): -0.86 +- 0.15 vs bound -0.35: x1.35.
            "C17": 12,
            # C18 ratios ||H|| / ||K||: x1.6 at 8 seeds; at 16 the smallest edge was 4.6: 12 give 3.8.
            "C18": 12,
            # C19 (32 seeds): the one-seed variance estimates are heavy-tailed, x6.1 (erf-depth3);
            # at 256 seeds erf-depth3's variance slope was -1.034 +- 0.019: 192. Their tail is
            # heaviest at the smallest width (erf depth 3, m = 64: one seed at 27x the mean at base
            # seed 70049, CV 2.0, against 0.6 at m = 1024), so the count is the largest width's and
            # the schedule (4x at m = 64) applies: edges 0.9, 3.1, 3.3, 4.3 at base seeds 70049,
            # 90063, 110077, 130091 with 192 seeds everywhere; 4.2, 6.1, 6.6, 6.4 with the schedule.
            "C19": 192,
        },
        groups={
            "sec4": Sec4Grid(
                identity_widths=(4, 16),
                # phi(f) heads need widths where the decaying part phi'(f) H of Eq. 13 (~0.77/sqrt m
                # for the shallow net) is small next to the rank-one term (0.03-0.3): from 1e3 on.
                # Three widths over two decades: with the max over 4 inputs the slope's 90% CI was
                # within +-0.05 on five widths, a quarter of the Omega(1) band; two fewer compiles.
                shallow_widths=(1000, 10000, 100000),
                # Deep phi(f) nets reuse the depth-2 grid of C4 (32-512). The tanh head, recorded
                # with a quarter of the seeds, had its limit 2.4 standard errors inside the required
                # level: judged with the deep seeds. The sigmoid head (|sigmoid''| <= 0.1) is
                # pre-asymptotic here: its record gives the measured parts of Eq. 13 (see paper).
                deep_judged_heads=("swish", "tanh", "softmax"),
                # A bottleneck net [m, m_b, m] has ~(d + 2 m_b + 1) m weights: cheap up to 16384.
                bottleneck_widths=(64, 256, 1024, 4096, 16384),
                bottleneck_sizes=(1, 3),
                # Seeds per point, as a multiple of the Hessian seeds. A scalar bottleneck makes
                # every quantity as noisy as one Gaussian variable, but with twice the seeds the
                # smallest edge was 6.1 (C9 mb1 bottleneck gradient, C10 bottleneck 6.7): one
                # factor leaves 4.1 and 4.2.
                bottleneck_seed_factor=1,
            ),
            # Default trims the paper's grids to the 2-core CPU budget (~300 s for C11-C16): Fig. 1
            # widths 32..8192 (the paper: 30..1e6), 6 seeds (the swish Delta K varies ~30% between
            # seeds; 30 points put the Omega(1) slope's 90% CI within +-0.06); Fig. 2 with wide
            # layers of 1024 (paper 1e4) and m_b up to 100 (the paper's 500 and 1000 are not narrow
            # next to 1024), 4 seeds.
            "training": TrainingGrid(
                input_dim=8,
                n_train=16,
                num_classes=3,
                # Seeds by power (see sweep_seeds above). Non-linear heads and C15: with 6 seeds the
                # smallest edges were 2.4 (C15 kernel change's limit), 2.6 (C14 swish inf-norm) and 3.1
                # (C11 swish): 10 seeds give 3.6 or more. After the swish head trained to the
                # tolerance (mirrored init): C14 swish inf-norm -0.508 (mean of 6 base seeds, spread
                # 0.016) +- 0.019 against -0.4: p_confirm 0.9999 at that slope, plug-in 0.986 to 1.0.
                seeds=10,
                # Linear head (C11 Delta K, C14 weight norms): ||w* - w0||_inf / log factor gave
                # -0.475 +- 0.025 on 6 seeds against the bound -0.4 (x2.6); at 20 seeds edge 4.9, so 16.
                linear_seeds=16,
                # Softmax head (C11, C12) on a teacher's soft labels: with 4 seeds the Omega(1) limit's
                # edge was 4.22, 4.61, 3.35, 4.62, 2.53 at base seeds 0, 230161-260182 (p_confirm down to
                # 0.994); 6 seeds scale an edge e to (e + 1.645) sqrt(1.5) - 1.645: 3.5 at the worst.
                softmax_seeds=6,
                rel_tol=1e-6,
                # Every Fig. 1 run trains to the tolerance: the slowest measured took 6377 steps
                # (softmax, m = 32) and, over the 300 swish runs of base seeds 0, 230161, 350213,
                # 470281, 590309 and 710329 (from its mirrored init: harness.train.SWISH_INIT), 8203
                # (m = 32; the slowest of each base seed 6360-8203). The cap costs nothing in a
                # run that converges before it: 20000 leaves x2.4 over the slowest seen.
                max_steps=20000,
                chunk=20,
                fig1_widths=(32, 128, 512, 2048, 8192),
                # X1-X3 (exploratory training): Fig. 1's widths without the most expensive one.
                exploratory_widths=(32, 128, 512, 2048),
                # Exploratory records are measured, never judged: the fewest seeds with a spread.
                exploratory_seeds=2,
                curve_width=8192,
                bottleneck_wide=1024,
                bottleneck_sizes=(3, 5, 10, 50, 100),
                bottleneck_seeds=4,
                # C13's narrowest bottleneck: 64x in m (a positive limit over 16x would accept decays
                # up to m^-0.18; the small widths are cheap). With 16 seeds the limit's edge was 6.8,
                # 2.0, 2.2 at base seeds 0, 230161, 350213: 28 seeds scale 2.0 to 3.2.
                narrow_wide_widths=(64, 256, 1024, 4096),
                narrow_seeds=28,
                convergence_widths=(32, 128, 512, 2048, 8192),
                # C13 and C15 train to the tolerance: the slowest run seen needed more than 4000 steps
                # (C13 at m_b = 3, base seed 230161: relative loss 3.5e-6 at 4000).
                convergence_max_steps=10000,
                linear_model_widths=(512, 2048),
            ),
            # Lanczos has the tier's cap (C4 needs
            # <= 47 steps at these widths): with the same cap, the NTK-parameterized nets of C17 and
            # C18 are the same compiled programs as C4's tanh depth-2 nets (compiled once per width
            # for the three claims; a program is a function of the cap, among others).
            "theory": TheoryGrid(
                bound_widths=(32, 64, 128, 256),
                bound_seeds=8,
                lanczos_max_iters=100,
                param_seeds=8,
                limit_widths=(64, 128, 256, 512, 1024),
                limit_seeds=32,
                limit_points=8,
                pd_points=16,
                # C20 on the shallow net (C2's widths), gradients only. With 16 seeds the edges were
                # 439 (linear output) and 14.3 (swish, whose remainder varies with phi''(f(w0))) at
                # base seed 0; with 4, swish's were 9.6, 2.9 and 7.8 at base seeds 0, 230161, 350213:
                # 8 seeds scale 2.9 to (2.9 + 1.645) sqrt(2) - 1.645 = 4.8.
                taylor_seeds=8,
                taylor_radius=1.0,
                taylor_steps=30,
            ),
            # C6 and X1-X3 (claims/test_appH_architectures.py): 146 s wall, 149 s CPU measured on the
            # shared 2-core CPU (load 3-4). Compiling the Lanczos loop and the kernel (~3-5 s per new
            # shape) is about 60% of it, so 4 widths per architecture (3 for the exploratory nets),
            # from 32 as in C4. Inputs are 1-D signals (2 channels, length 16): an 8x8 image costs 12
            # times more per Hessian-vector product (64 positions x 3x3 windows against 16 x 3), which
            # would not leave room for widths to 256 and the seeds below (2-D convolutions are tested,
            # and run at the smoke and paper tiers).
            # Seeds by a power argument: log ||H|| of the swish nets spreads by 0.1-0.25 between seeds
            # (measured), so 4 widths x 16 seeds put the slope's 90% CI within about +-0.04 (6 seeds
            # left +-0.08), room for the ~0.05 of log factor the margin allows; tr K / n (16 inputs)
            # spreads by up to 0.24 at width 32, so 48 seeds (+-0.025; a kernel costs one gradient per
            # input). The exploratory nets (X1, X2), never judged, get 4 seeds.
            # Inputs per network: the spread of tr K / n between networks has a part that more inputs
            # do not remove (the weights'), sigma_s, beside the inputs' sigma_i / sqrt(n). Measured at
            # base seed 0 (64 networks at m = 32, 24 at 256, 16 inputs each; coefficients of variation
            # sigma_s, sigma_i): cnn 0.15, 0.20 and 0.09, 0.10; resnet 0.10, 0.14 and 0.04, 0.07; mixed
            # 0.23, 0.25 and 0.11, 0.11. Going from 16 inputs to 4 raises the variance of a point 1.2-1.3
            # times (mixed), 1.2-1.3 (cnn), 1.3-1.45 (resnet) and cuts its cost 2.5-3 times (a point
            # costs its weights' draw plus one gradient per input: 93 ms at 16 inputs, 31 ms at 4, for
            # the cnn at m = 256), so 4 inputs with 1.25x, 1.375x and 1.5x the seeds keep each
            # kernel slope's standard error for about half the time ("C6 *-kernel" below).
            "architectures": ArchitecturesGrid(
                cnn_input=(2, 16),
                cnn_layers=3,
                resnet_input=(2, 16),
                resnet_blocks=2,
                mixed_input=(2, 16),
                mixed_conv_layers=2,
                input_dim=8,
                dense_depth=2,
                widths={
                    "cnn": (32, 64, 128, 256),
                    "resnet": (32, 64, 128, 256),
                    "mixed": (32, 64, 128, 256),
                    "relu": (64, 128, 256),
                    "softmax": (64, 128, 256),
                },
                hessian_seeds=16,
                kernel_seeds=48,
                kernel_inputs=4,
                exploratory_seeds=2,  # measured, never judged
            ),
        },
    ),
    "paper": Tier(
        name="paper",
        dtype="float32",
        n_seeds=16,
        n_hessian_seeds=8,
        input_dim=8,
        exact_widths=(4, 16, 64),
        shallow_widths=(30, 100, 1000, 10000, 100000, 1000000),
        deep_widths={2: (64, 256, 1024, 4096, 10000), 3: (64, 256, 1024, 4096, 10000)},
        gradient_widths=(64, 256, 1024, 4096, 16384),
        ball_radius=4.0,
        lanczos_tol=1e-3,
        lanczos_max_iters=100,
        groups={
            "sec4": Sec4Grid(
                identity_widths=(4, 16),
                shallow_widths=(1000, 10000, 100000, 1000000),
                deep_judged_heads=("swish", "tanh", "sigmoid", "softmax"),
                # The sigmoid head's Omega(1) part is small (|sigmoid''| <= 0.1): measured at the
                # default tier, the decaying part |phi'(f)| ||H|| of Eq. 13 equals it near m ~ 200-400
                # and is 3-4 times larger at m = 32, so the limit of a + c m^(-1/2) stays below half
                # the level at a small width. Judged from m = 1024, past that crossover.
                deep_head_grids=(("sigmoid", (1024, 4096, 10000)),),
                bottleneck_widths=(64, 256, 1024, 4096, 16384, 65536),
                bottleneck_sizes=(1, 3),
                bottleneck_seed_factor=2,
            ),
            # The paper's widths (Fig. 1: 30..1e6 at curve width 1e4; Fig. 2: m = 1e4). Training runs
            # in float64 even here: the linear output's Delta K falls like 1/m, to ~1e-6 at m = 1e6,
            # below the round-off that float32 weight updates leave in the kernel.
            "training": TrainingGrid(
                dtype="float64",
                input_dim=8,
                n_train=16,
                num_classes=3,
                seeds=8,
                linear_seeds=16,
                softmax_seeds=8,
                rel_tol=1e-6,
                # The default tier's cap and reason (its smallest width, 32, took up to 8203 steps).
                max_steps=20000,
                chunk=20,
                fig1_widths=(30, 100, 1000, 10000, 100000, 1000000),
                exploratory_widths=(30, 100, 1000, 10000, 100000),
                exploratory_seeds=3,
                curve_width=10000,
                bottleneck_wide=10000,
                bottleneck_sizes=(3, 5, 10, 50, 100, 500, 1000),
                bottleneck_seeds=8,
                narrow_wide_widths=(1000, 10000, 100000),
                narrow_seeds=16,
                convergence_widths=(30, 100, 1000, 10000, 100000, 1000000),
                convergence_max_steps=10000,
                linear_model_widths=(1000, 10000),
            ),
            # Lanczos capped at 60 steps (C4 needs <= 47 at these widths; a capped run's Ritz values
            # only underestimate ||H||).
            "theory": TheoryGrid(
                bound_widths=(128, 512, 2048, 8192),
                bound_seeds=8,
                lanczos_max_iters=60,
                param_seeds=8,
                limit_widths=(256, 512, 1024, 2048, 4096),
                limit_seeds=32,
                limit_points=8,
                pd_points=16,
                taylor_seeds=16,
                taylor_radius=1.0,
                taylor_steps=30,
            ),
            # C6 and X1-X3 on a GPU in float32: 16x16 images for the CNN and the ResNet (4 blocks),
            # channels to 512 (the mixed net, on signals of length 32, to 1024).
            "architectures": ArchitecturesGrid(
                cnn_input=(3, 16, 16),
                cnn_layers=3,
                resnet_input=(3, 16, 16),
                resnet_blocks=4,
                mixed_input=(2, 32),
                mixed_conv_layers=2,
                input_dim=8,
                dense_depth=2,
                widths={
                    "cnn": (32, 64, 128, 256, 512),
                    "resnet": (32, 64, 128, 256, 512),
                    "mixed": (64, 128, 256, 512, 1024),
                    "relu": (64, 256, 1024, 4096),
                    "softmax": (64, 256, 1024, 4096),
                },
                hessian_seeds=16,
                kernel_seeds=64,
                kernel_inputs=32,
                exploratory_seeds=8,
            ),
        },
    ),
}


#: The paper tier's dry run: seeds per point (one: a dry run exercises code paths and is never judged,
#: so it needs no spread; the seed schedule still gives small widths up to 4) and widths per grid.
DRY_RUN_SEEDS = 1
DRY_RUN_WIDTHS = 3
#: Seed counts a claim needs more of than DRY_RUN_SEEDS: C19's variance over seeds needs two per width.
_DRY_RUN_SEED_FLOORS = {"limit_seeds": 2}
#: Grid entries that count seeds (every other integer entry is a size or a cap and is kept).
_SEED_KEYS = frozenset(
    {"seeds", "linear_seeds", "softmax_seeds", "bottleneck_seeds", "narrow_seeds", "bound_seeds", "param_seeds", "limit_seeds", "taylor_seeds",
     "hessian_seeds", "kernel_seeds", "exploratory_seeds"}
)


def _smallest(widths) -> Any:
    """A width grid cut to its smallest DRY_RUN_WIDTHS widths (a dict of grids: each of them)."""
    if isinstance(widths, dict):
        return {k: _smallest(v) for k, v in widths.items()}
    return tuple(sorted(widths)[:DRY_RUN_WIDTHS])


def _cut_grid(grid: Grid) -> Grid:
    """A grid with every width grid cut (``_smallest``), every seed count set to DRY_RUN_SEEDS (or
    its floor) and a seed-scaling factor to 1; sizes and caps are kept."""
    changes = {}
    for field in dataclasses.fields(grid):
        key, value = field.name, getattr(grid, field.name)
        if key.endswith("widths"):
            changes[key] = _smallest(value)
        elif key in _SEED_KEYS:
            changes[key] = min(int(value), max(DRY_RUN_SEEDS, _DRY_RUN_SEED_FLOORS.get(key, 0)))
        elif key.endswith("seed_factor"):
            changes[key] = 1
    return dataclasses.replace(grid, **changes)


def dry_run_of(tier: Tier, name: str = "paper-dry") -> Tier:
    """``tier``'s code paths at the cost of a CPU test: its dtypes, estimator settings (Lanczos
    tolerance and cap, training rule and caps), inputs and architectures, with every width grid cut to
    its smallest three widths, every seed count set to DRY_RUN_SEEDS (or the floor a claim needs; a
    seed-scaling factor to 1),
    and the widths a grid names alone (Fig. 1's curve, Fig. 2's wide layers) capped at the largest
    width left in Fig. 1's grid, the bottleneck sizes to those below it; a deep head measured on
    widths of its own (``Sec4Grid.deep_head_grids``) is measured on the cut deep grid. What it runs
    is what the nightly job runs, on fewer points: its slopes are recorded, never judged
    (``Tier.judged``)."""
    groups = {group: _cut_grid(grid) for group, grid in tier.groups.items()}
    sec4 = groups.get("sec4")
    if sec4 is not None and sec4.deep_head_grids:
        # The sigmoid head's own grid is the paper's 1024, 4096 and 10000 (judged past a crossover;
        # a dry run judges nothing): kept whole, its three points were 166 of the 784 worker-seconds
        # of every claim's dry run on 2 cores, the other heads' (64, 256, 1024) 10-17 s.
        deep = _smallest(tier.deep_widths[2])
        groups["sec4"] = dataclasses.replace(sec4, deep_head_grids=tuple((head, deep) for head, _ in sec4.deep_head_grids))
    training = groups.get("training")
    if training is not None:
        cap = max(training.fig1_widths)
        # C16's network partner is one of Fig. 1's runs.
        kept = tuple(w for w in training.linear_model_widths if w in training.fig1_widths)
        groups["training"] = dataclasses.replace(
            training,
            curve_width=min(training.curve_width, cap),
            bottleneck_wide=min(training.bottleneck_wide, cap),
            bottleneck_sizes=_smallest(tuple(b for b in training.bottleneck_sizes if b < cap)),
            linear_model_widths=kept or (cap,),
        )
    return dataclasses.replace(
        tier,
        name=name,
        n_seeds=min(tier.n_seeds, DRY_RUN_SEEDS),
        n_hessian_seeds=min(tier.n_hessian_seeds, DRY_RUN_SEEDS),
        shallow_widths=_smallest(tier.shallow_widths),
        deep_widths=_smallest(tier.deep_widths),
        gradient_widths=_smallest(tier.gradient_widths),
        groups=groups,
        sweep_seeds={k: min(v, DRY_RUN_SEEDS) for k, v in tier.sweep_seeds.items()},
    )


TIERS["paper-dry"] = dry_run_of(TIERS["paper"])


def get_tier(name: str | None = None) -> Tier:
    """The tier of that name (default: ``$LINEARITY_SCALE`` or ``"default"``).

    Raises:
      UnknownTierError: the name is not a tier; the message names the valid ones.
    """
    if name is None:
        name = os.environ.get(ENV_VAR) or "default"
    if name not in TIERS:
        raise UnknownTierError(f"unknown scale tier {name!r}; valid tiers: {', '.join(TIER_NAMES)}")
    return TIERS[name]
