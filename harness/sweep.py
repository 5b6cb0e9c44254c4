"""Sweeps over (width, seed): keys, devices, progress, and the error that names where a sweep broke.

A sweep measures one quantity at every (width, seed) pair. Each pair gets its own PRNG key,
``fold_in(fold_in(key(seed), width), stream)``, so a point can be recomputed alone and the same seed
always gives the same numbers, whatever else the run measured, and wherever it ran: when JAX sees
several devices (a multi-GPU machine, or ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` on a
CPU), the seeds of each width are spread over them, one thread per device.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from harness.fit import PowerLawFit, power_law_fit

#: Independent random streams of one (width, seed) point.
STREAMS = {"init": 0, "data": 1, "probe": 2, "direction": 3, "lanczos": 4, "labels": 5}


#: Measurements made in this process, by key (see ``memoized``).
_MEMO: dict = {}


def memoized(key: tuple, compute: Callable[[], object]):
    """The value computed earlier in this process under ``key``, or ``compute()`` stored under it.

    Claims that measure the same thing (the same network description, width, seed, input and
    estimator settings: the key must name all of them) share one computation, e.g. Table 1 (C10)
    reuses the Hessian norms of C8 and C9. Every input to the measurement is derived from the key,
    so a reused value is exactly the value a fresh computation would give.
    """
    if key not in _MEMO:
        _MEMO[key] = compute()
    return _MEMO[key]


class MeasurementError(RuntimeError):
    """A measurement failed or produced a non-finite value; the message names width and seed."""


def point_key(seed: int, width: int, stream: str) -> jax.Array:
    """The PRNG key of one random stream at one (width, seed) point."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; valid: {', '.join(STREAMS)}")
    key = jax.random.fold_in(jax.random.key(seed), width)
    return jax.random.fold_in(key, STREAMS[stream])


@dataclasses.dataclass
class Series:
    """Measured values of one or several named quantities at (width, seed) points."""

    widths: list[float] = dataclasses.field(default_factory=list)
    seeds: list[int] = dataclasses.field(default_factory=list)
    values: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, width: float, seed: int, measured: dict[str, float]) -> None:
        if self.values and set(measured) != set(self.values):
            raise ValueError(f"measured {sorted(measured)} but the series holds {sorted(self.values)}")
        self.widths.append(width)
        self.seeds.append(seed)
        for name, value in measured.items():
            self.values.setdefault(name, []).append(float(value))

    def fit(self, name: str) -> PowerLawFit:
        return power_law_fit(self.widths, self.values[name], self.seeds)

    def at(self, name: str, width: float) -> np.ndarray:
        return np.array([v for w, v in zip(self.widths, self.values[name]) if w == width])


#: Most extra seeds ``seeds_by_width`` gives the smallest width, as a multiple of the largest's.
MAX_SEED_FACTOR = 4


def seeds_by_width(widths: Sequence[int], base_seed: int, count: int) -> dict[int, tuple[int, ...]]:
    """Seeds of a sweep whose spread between seeds falls with the width: ``count`` at the largest
    width, ``ceil(sqrt(m_max / m))`` times as many (at most MAX_SEED_FACTOR times) at width m.

    The Hessian norms and kernels measured here are averages over ~m units, so their relative spread
    between seeds falls with m (measured: the coefficient of variation of C8's deep softmax ||H~||
    is 0.15 at m = 32 and 0.06 at m = 512): with equal seeds the smallest widths carry most of the
    noise of a fit, while their points are the cheapest (a point costs ~m). sqrt(m_max / m) seeds
    balance the two (equal relative precision would need m_max / m, and the smallest width would then
    hold most of the sweep's points). Seeds are consecutive from ``base_seed``, so every width shares
    the first ``count``.
    """
    if count < 1:
        raise ValueError(f"a sweep needs at least one seed per width, got {count}")
    largest = max(widths)
    return {
        int(m): tuple(base_seed + i for i in range(count * min(MAX_SEED_FACTOR, math.ceil(math.sqrt(largest / m) - 1e-9))))
        for m in widths
    }


def sweep_devices() -> list:
    """The devices a sweep spreads its seeds over: the local devices of JAX's default backend."""
    return list(jax.local_devices())


def map_on_devices(items: Sequence, work: Callable, devices: Sequence | None = None) -> list:
    """``work(item)`` for each item, in order; with n devices, item i on device i mod n.

    One device: one after the other. Several: each device's items, in order, in a thread of its
    own under ``jax.default_device`` (the keys, weights and inputs an item creates are made there,
    and JAX releases the interpreter while a device computes). An item's numbers do not depend on
    where it ran (the same program on the same kind of device); side effects of ``work`` happen in
    any order across devices.
    """
    devices = sweep_devices() if devices is None else list(devices)
    if len(devices) <= 1:
        return [work(item) for item in items]

    def on_device(d: int) -> list:
        with jax.default_device(devices[d]):
            return [work(item) for item in items[d :: len(devices)]]

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(devices)) as pool:
        shares = list(pool.map(on_device, range(len(devices))))
    return [shares[i % len(devices)][i // len(devices)] for i in range(len(items))]


def _checked(label: str, where: str, measured: Mapping[str, float]) -> Mapping[str, float]:
    bad = {k: v for k, v in measured.items() if not math.isfinite(float(v))}
    if bad:
        raise MeasurementError(f"{label} {where}: non-finite value(s) {bad}")
    return measured


def measure_on_devices(
    points: Sequence, measure: Callable[..., dict[str, float]], devices: Sequence | None = None, label: str = ""
) -> list[dict[str, float]]:
    """``measure(*point)`` for each point (a (width, seed) pair), in order, spread over the devices
    by ``map_on_devices``. Errors are ``MeasurementError`` naming the point; non-finite values are
    errors."""

    def one(point) -> dict[str, float]:
        try:
            measured = measure(*point)
        except MeasurementError:
            raise
        except Exception as err:
            raise MeasurementError(f"{label} {_where(point)}: {type(err).__name__}: {err}") from err
        return _checked(label, _where(point), measured)

    return map_on_devices(points, one, devices)


def _where(point) -> str:
    return f"width {point[0]}, seed {point[1]}" if len(point) == 2 else f"point {point}"


def run_sweep(
    widths: Sequence[int],
    seeds: Sequence[int] | Mapping[int, Sequence[int]],
    measure: Callable[[int, int], dict[str, float]],
    progress: Callable[[str], None] | None = None,
    label: str = "",
    devices: Sequence | None = None,
) -> Series:
    """Call ``measure(width, seed)`` at every point; return the series of what it measured.

    ``seeds`` is one sequence for every width, or a mapping from width to its seeds
    (``seeds_by_width``). ``measure`` returns a dict of named scalar values. A non-finite value or an
    exception inside it is re-raised as a ``MeasurementError`` naming the width and the seed. The
    seeds of a width are spread over ``devices`` (default: ``sweep_devices()``; see
    ``measure_on_devices``); the series is in the same order whatever the number of devices.
    """
    series = Series()
    for width in widths:
        start = time.time()
        width_seeds = list(seeds[width] if isinstance(seeds, Mapping) else seeds)
        points = [(width, seed) for seed in width_seeds]
        for (_, seed), measured in zip(points, measure_on_devices(points, measure, devices, label)):
            series.add(width, seed, measured)
        if progress is not None:
            _progress_line(progress, series, label, width, len(width_seeds), start)
    return series


def _progress_line(progress, series: Series, label: str, width: int, count: int, start: float) -> None:
    means = ", ".join(f"{k}={np.exp(np.mean(np.log(np.abs(series.at(k, width)) + 1e-300))):.4g}" for k in series.values)
    progress(f"{label} width {width}: {count} seeds in {time.time() - start:.1f} s ({means})")


def run_batched_sweep(
    widths: Sequence[int],
    seeds: Sequence[int] | Mapping[int, Sequence[int]],
    measure_batch: Callable[[int, tuple[int, ...]], dict[str, np.ndarray]],
    progress: Callable[[str], None] | None = None,
    label: str = "",
    devices: Sequence | None = None,
) -> Series:
    """``run_sweep`` for a quantity measured on many seeds at once: ``measure_batch(width, seeds)``
    returns, per name, an array with one value per seed (for example ``measure.kernel_diagonals``,
    one compiled call over a batch of networks where a point alone costs less than its dispatch).
    With n devices, each gets every n-th seed of a width. The series is the one ``run_sweep`` would
    give, point for point in the same order; errors and non-finite values name the point.
    """
    n_devices = max(1, len(sweep_devices() if devices is None else devices))
    series = Series()
    for width in widths:
        start = time.time()
        width_seeds = list(seeds[width] if isinstance(seeds, Mapping) else seeds)
        shares = [tuple(width_seeds[d::n_devices]) for d in range(n_devices)]

        def batch(share: tuple[int, ...]) -> dict[str, np.ndarray]:
            try:
                return {k: np.asarray(v, dtype=np.float64) for k, v in measure_batch(width, share).items()} if share else {}
            except MeasurementError:
                raise
            except Exception as err:
                raise MeasurementError(f"{label} width {width}, seeds {share[0]}..{share[-1]}: {type(err).__name__}: {err}") from err

        measured = map_on_devices(shares, batch, devices)
        for i, seed in enumerate(width_seeds):
            values = {k: float(v[i // n_devices]) for k, v in measured[i % n_devices].items()}
            series.add(width, seed, _checked(label, f"width {width}, seed {seed}", values))
        if progress is not None:
            _progress_line(progress, series, label, width, len(width_seeds), start)
    return series
