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

TIER_NAMES = ("smoke", "default", "paper")
ENV_VAR = "LINEARITY_SCALE"


class UnknownTierError(ValueError):
    """A tier name that is not one of ``TIER_NAMES``."""


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
      radii: distances R from W0 at which C4 measures the Hessian (0 is W0 itself).
      lanczos_tol: Ritz-residual tolerance of the Hessian norm (relative); seed-to-seed spread of
        the norm is several percent, so 1e-3 is well below the noise of a fit.
      lanczos_max_iters: cap on Hessian-vector products per norm.
      groups: grids of the other claim groups by name: "sec4" (C7-C10), "training" (C11-C16),
        "theory" (C17-C19), "architectures" (C6 and exploratory records).
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
    radii: tuple[float, ...]
    lanczos_tol: float
    lanczos_max_iters: int
    groups: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def grid(self, group: str) -> dict[str, Any]:
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
        """Whether a non-confirmed verdict fails the test (all tiers but smoke)."""
        return self.name != "smoke"


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
        radii=(0.0, 1.0),
        lanczos_tol=1e-3,
        lanczos_max_iters=60,
        groups={
            # Section 4 at initialization (C7-C10): non-linear output heads and bottlenecks.
            "sec4": {
                "identity_widths": (3, 6),
                "shallow_widths": (16, 64, 256),
                "deep_widths": (8, 16, 32),
                "bottleneck_widths": (8, 16, 32),
                "bottleneck_sizes": (1, 3),
            },
            # -- training grid (issue 4: C11-C16) --
            # -- theory grid (issue 5: C17-C19) --
            # -- architectures grid (issue 6: C6, exploratory) --
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
        radii=(0.0, 1.0, 4.0),
        lanczos_tol=1e-3,
        lanczos_max_iters=100,
        groups={
            # Section 4 at initialization (C7-C10): non-linear output heads and bottlenecks.
            "sec4": {
                "identity_widths": (4, 16),
                "shallow_widths": (100, 316, 1000, 3162, 10000, 31623),
                "deep_widths": (32, 64, 128, 256, 512),
                "bottleneck_widths": (32, 64, 128, 256, 512),
                "bottleneck_sizes": (1, 3),
            },
            # -- training grid (issue 4: C11-C16) --
            # -- theory grid (issue 5: C17-C19) --
            # -- architectures grid (issue 6: C6, exploratory) --
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
        radii=(0.0, 1.0, 4.0),
        lanczos_tol=1e-3,
        lanczos_max_iters=100,
        groups={
            # Section 4 at initialization (C7-C10): non-linear output heads and bottlenecks.
            "sec4": {
                "identity_widths": (4, 16),
                "shallow_widths": (30, 100, 1000, 10000, 100000, 1000000),
                "deep_widths": (64, 256, 1024, 4096, 10000),
                "bottleneck_widths": (64, 256, 1024, 4096, 10000),
                "bottleneck_sizes": (1, 3),
            },
            # -- training grid (issue 4: C11-C16) --
            # -- theory grid (issue 5: C17-C19) --
            # -- architectures grid (issue 6: C6, exploratory) --
        },
    ),
}


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
