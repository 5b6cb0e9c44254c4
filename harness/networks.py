"""The networks of Section 4 and the seeds of their sweeps, shared by C8, C9 and Table 1 (C10).

Table 1 reads the Hessian norms that C8 and C9 measured (``harness.sweep.memoized``): the same
network description, width, seed and inputs, so the same points.
"""

from __future__ import annotations

from harness.models import FullyConnected
from harness.sweep import seeds_by_width
from harness.tiers import SIZED_SWEEPS

#: Inputs per network: the Hessian norm at one input has a heavy lower tail (phi''(f) vanishes at
#: f = 0 for tanh and sigmoid heads), the largest over 4 inputs does not.
N_INPUTS = 4

#: Classes of the softmax head.
N_CLASSES = 3


def section4_network(kind: str, width: int, head: str, input_dim: int) -> FullyConnected:
    """The two networks of Sec. 4: the shallow net of Sec. 3.1 (fixed +-1 output weights,
    d-dimensional input) and a 2-hidden-layer net with all layers trained; tanh hidden units."""
    c = N_CLASSES if head == "softmax" else 1
    if kind == "shallow":
        return FullyConnected(input_dim, (width,), "tanh", head=head, num_outputs=c, train_output=False, output_init="sign")
    if kind == "deep":
        return FullyConnected(input_dim, (width, width), "tanh", head=head, num_outputs=c)
    raise ValueError(f"unknown network kind {kind!r}; valid: shallow, deep")


def section4_widths(tier, kind: str, head: str) -> tuple[int, ...]:
    """The widths of C8's sweep: the shallow grid, or the depth-2 grid of C4 unless the tier gives
    the head a grid of its own (``Sec4Grid.deep_head_grids``)."""
    grid = tier.grid("sec4")
    if kind == "shallow":
        return grid.shallow_widths
    return dict(grid.deep_head_grids).get(head, tier.deep_widths[2])


def section4_seeds(tier, kind: str, head: str, base_seed: int, judged: bool = True) -> dict[int, tuple[int, ...]]:
    """The seeds of C8's sweeps by width (``seeds_by_width``; Table 1 reuses the deep swish ones):
    the head's own count where the tier sizes it ("C8 shallow-swish"), else the kind's ("C8 deep"). A
    record that is measured but not judged needs no power: a quarter of the seeds (at least 2)."""
    widths = section4_widths(tier, kind, head)
    count = tier.sweep_seed_count(f"C8 {kind}", tier.n_hessian_seeds)
    sized = f"C8 {kind}-{head}"
    if sized in SIZED_SWEEPS:
        count = tier.sweep_seed_count(sized, count)
    return seeds_by_width(widths, base_seed, count if judged else max(2, count // 4))


def bottleneck_network(width: int, bottleneck: int, input_dim: int, linear: bool = False) -> FullyConnected:
    """Three hidden tanh layers [m, m_b, m], all trained, linear output (paper Sec. 4 and Fig. 2);
    ``linear``: the bottleneck layer without its activation (Sec. 1: "even if it is linear")."""
    return FullyConnected(input_dim, (width, bottleneck, width), "tanh", linear_layers=(2,) if linear else ())


def bottleneck_seeds(tier, base_seed: int) -> tuple[int, ...]:
    """The seeds of C9's Hessian sweeps (and Table 1's bottleneck row)."""
    return tuple(base_seed + i for i in range(tier.grid("sec4").bottleneck_seed_factor * tier.n_hessian_seeds))
