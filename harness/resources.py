"""Memory and time estimates of each claim family at a tier (for the paper tier and the GPU job).

The estimates are computed from the tier's grids, not measured: for each family, the largest
network it builds, its parameter count p, and the peak memory of the estimator it runs on it:

* Lanczos on Hessian-vector products: ~10 vectors of p numbers (the current, previous and next
  Lanczos vectors, the HVP's tangents and cotangents, the weights) plus the stored Krylov basis
  when partial re-orthogonalization keeps it (``reorth="auto"`` keeps it only when
  ``max_iters * p * itemsize`` fits 2 GiB, so the basis term is at most 2 GiB);
* the structured tangent kernel: the per-layer factors, n c sum(m_l) numbers, and the n c x n c
  kernel, never the n c x p Jacobian;
* gradient-descent training: the weights at W0 and at W_t, the gradient and the kernel factors.

Time is estimated from memory traffic, which bounds these single-input matrix-vector workloads: a
Lanczos step (one HVP and its vector updates) moves about 16 p numbers, a full-batch gradient step
about 4 p (the weights are read once per pass for the whole batch). Summed over every width, seed
and input of the family's grid at a nominal bandwidth, it is an order of magnitude: enough to tell
a user that the paper tier is hours on a CPU and minutes on a GPU, not a prediction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness.hessian import DEFAULT_BASIS_BUDGET
from harness.tiers import Tier
from harness.worst_hessian import search_hvps

#: Sustained memory bandwidths used for the time estimates (bytes/s): a 2-core cloud CPU, an H100.
CPU_RATE = 1e10
GPU_RATE = 2e12

#: Numbers moved per Lanczos step and per gradient-descent step, in units of p.
LANCZOS_STEP_TRAFFIC = 16
GD_STEP_TRAFFIC = 4

#: Lanczos steps assumed per Hessian norm (measured: 15-50 at tol 1e-3).
HVPS_PER_NORM = 40

GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class Estimate:
    family: str
    claims: str
    network: str
    params: int
    peak_bytes: int
    traffic_bytes: float

    def row(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "claims": self.claims,
            "largest_network": self.network,
            "params": self.params,
            "peak_GiB": round(self.peak_bytes / GiB, 3),
            "cpu_hours": round(self.traffic_bytes / CPU_RATE / 3600, 3),
            "gpu_minutes": round(self.traffic_bytes / GPU_RATE / 60, 2),
        }


def _mlp_params(d: int, widths: tuple[int, ...], outputs: int = 1) -> int:
    sizes = (d, *widths)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + widths[-1] * outputs


def _lanczos_bytes(p: int, itemsize: int, max_iters: int) -> int:
    basis = max_iters * p * itemsize
    return 10 * p * itemsize + (basis if basis <= DEFAULT_BASIS_BUDGET else 0)


def _hessian_family(name, claims, d, hidden, widths, repeats, tier, itemsize, outputs=1) -> Estimate:
    """A Hessian sweep: ``hidden(width)`` gives the hidden widths; ``repeats`` norms per width."""
    sizes = [_mlp_params(d, hidden(w), outputs) for w in widths]
    top = hidden(max(widths))
    p = max(sizes)
    traffic = sum(sizes) * repeats * HVPS_PER_NORM * LANCZOS_STEP_TRAFFIC * itemsize
    return Estimate(name, claims, f"fc {d}-{'-'.join(map(str, top))}", p, _lanczos_bytes(p, itemsize, tier.lanczos_max_iters), traffic)


def estimates(tier: Tier) -> list[Estimate]:
    """Per claim family: the largest network, its parameters, peak memory and traffic at this tier."""
    itemsize = 4 if tier.dtype == "float32" else 8
    d = tier.input_dim
    # C4 per seed: the norm at W0, and the worst-point search with the norms at its winner and at
    # the random point (harness.worst_hessian.search_hvps, in norms of HVPS_PER_NORM products).
    c4_norms = 2 * tier.n_hessian_seeds * (3 + search_hvps() / HVPS_PER_NORM)
    out = [
        _hessian_family("shallow Hessian", "C2", 1, lambda w: (w,), tier.shallow_widths, 2 * tier.n_seeds, tier, itemsize),
        _hessian_family("deep Hessian", "C4 depth 3", d, lambda w: (w,) * 3, tier.deep_widths[3], c4_norms, tier, itemsize),
        _hessian_family("deep Hessian", "C4 depth 2", d, lambda w: (w,) * 2, tier.deep_widths[2], c4_norms, tier, itemsize),
    ]
    if "sec4" in tier.groups:
        g = tier.grid("sec4")
        out.append(_hessian_family("phi(f) Hessian", "C8 shallow", d, lambda w: (w,), g.shallow_widths, 4 * 4 * tier.n_hessian_seeds, tier, itemsize, 3))
        out.append(_hessian_family("phi(f) Hessian", "C8 deep, C10", d, lambda w: (w, w), tier.deep_widths[2], 5 * 4 * tier.n_hessian_seeds, tier, itemsize, 3))
        mb = max(g.bottleneck_sizes)
        out.append(_hessian_family("bottleneck Hessian", "C9, C10", d, lambda w: (w, mb, w), g.bottleneck_widths, 3 * 4 * 2 * tier.n_hessian_seeds, tier, itemsize))
    if "training" in tier.groups:
        from harness.train import grid_dtype

        g = tier.grid("training")
        t_item = grid_dtype(g, tier.dtype).itemsize
        n, c = g.n_train, g.num_classes
        steps, seeds = g.max_steps, g.seeds
        widths = g.fig1_widths
        m = max(widths)
        p = _mlp_params(g.input_dim, (m,), c)
        factors = n * c * (m + c) + n * (d + m)
        traffic = sum(_mlp_params(d, (w,), c) for w in widths) * 3 * seeds * steps * GD_STEP_TRAFFIC * t_item
        out.append(Estimate("training, one hidden layer", "C11, C12, C14-C16", f"fc {d}-{m}-{c}", p, (6 * p + 4 * factors) * t_item, traffic))
        wide, mbs = g.bottleneck_wide, g.bottleneck_sizes
        p2 = _mlp_params(g.input_dim, (wide, max(mbs), wide))
        # The sweep in m_b, then the narrowest m_b over the wide widths (C13's Omega(1) limit in m).
        weights = sum(_mlp_params(d, (wide, b, wide)) for b in mbs) * g.bottleneck_seeds
        weights += sum(_mlp_params(d, (w, min(mbs), w)) for w in g.narrow_wide_widths) * g.narrow_seeds
        traffic = weights * steps * GD_STEP_TRAFFIC * t_item
        out.append(Estimate("training, bottleneck", "C13", f"fc {d}-{wide}-{max(mbs)}-{wide}", p2, (6 * p2 + 4 * n * (2 * wide + max(mbs))) * t_item, traffic))
    if "theory" in tier.groups:
        g = tier.grid("theory")
        out.append(_hessian_family("Prop. 2.2 segments", "C17", d, lambda w: (w, w), g.bound_widths, 28 * g.bound_seeds, tier, itemsize))
        # C20: shallow nets with 1-d inputs (m weights), 2 heads x 3 starts x 2 signs of ascent per point.
        m = max(tier.shallow_widths)
        ascents = 2 * 3 * 2 * (g.taylor_steps + 1) * g.taylor_seeds
        traffic = sum(tier.shallow_widths) * ascents * GD_STEP_TRAFFIC * itemsize
        out.append(Estimate("Taylor remainder", "C20", f"fc 1-{m}", m, 6 * m * itemsize, traffic))
    if "architectures" in tier.groups:
        out += [_architecture_family(name, tier, itemsize) for name in CONV_ARCHITECTURES]
    return out


#: The convolutional networks of C6 (``harness.architectures.build_architecture``).
CONV_ARCHITECTURES = ("cnn", "resnet", "mixed")


def _architecture_family(name: str, tier: Tier, itemsize: int) -> Estimate:
    """C6's Hessian sweep of one architecture: the parameter count of the very networks it builds
    (from the grid's input shape, layers and widths); activations: ~10 live copies of each hidden
    layer's feature map (forward, backward and tangent passes of a Hessian-vector product)."""
    from harness.architectures import build_architecture

    g = tier.grid("architectures")
    widths = g.widths[name]
    nets = [build_architecture(name, w, g) for w in widths]
    top = nets[-1]
    input_shape = g.input_shape(name)
    positions = math.prod(input_shape[1:])
    activations = 10 * top.depth * max(widths) * positions * itemsize
    sizes = [net.num_params for net in nets]
    seeds = tier.sweep_seed_count(f"C6 {name}-hessian", g.hessian_seeds)
    traffic = sum(sizes) * seeds * HVPS_PER_NORM * LANCZOS_STEP_TRAFFIC * itemsize
    peak = _lanczos_bytes(top.num_params, itemsize, tier.lanczos_max_iters) + activations
    return Estimate("convolutional Hessian", "C6", f"{name}, {max(widths)} channels, input {input_shape}", top.num_params, peak, traffic)


def summary(tier: Tier) -> dict[str, Any]:
    rows = [e.row() for e in estimates(tier)]
    return {
        "peak_GiB": max(r["peak_GiB"] for r in rows),
        "cpu_hours": round(sum(r["cpu_hours"] for r in rows), 2),
        "gpu_minutes": round(sum(r["gpu_minutes"] for r in rows), 1),
        "families": rows,
    }


def paper_tier_refusal(tier: Tier) -> str:
    """The one-line reason the paper tier refuses to start on a CPU."""
    s = summary(tier)
    largest = max(s["families"], key=lambda r: r["peak_GiB"])
    return (
        f"the {tier.name} tier is meant for a GPU: estimated {s['cpu_hours']:.0f} CPU hours "
        f"(about {s['gpu_minutes']:.0f} GPU minutes) and up to {s['peak_GiB']:.1f} GiB "
        f"({largest['claims']}, {largest['largest_network']}, {largest['params']:.2g} weights); "
        "this JAX has only a CPU. Install the CUDA extra (README, 'GPU') or pass --force-paper-on-cpu."
    )
