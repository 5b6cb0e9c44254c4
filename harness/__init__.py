"""linearity-claims harness: models, Hessian-norm and tangent-kernel estimators, fits, reports.

Importing the package enables JAX's 64-bit mode: the estimators accumulate inner products and solve
their small eigenproblems in float64 even when a model runs in float32, and the default tier runs
models in float64 on the CPU. Model dtypes are always explicit (``init(key, dtype=...)``).
"""

import jax

jax.config.update("jax_enable_x64", True)

from harness.fit import PowerLawFit, Verdict, equality_verdict, omega1_verdict, power_law_fit, upper_bound_verdict  # noqa: E402
from harness.hessian import HessianNorm, hessian_spectral_norm  # noqa: E402
from harness.kernel import kernel_diagonal, relative_kernel_change, tangent_kernel  # noqa: E402
from harness.models import FullyConnected, shallow_network, sphere_points  # noqa: E402
from harness.tiers import Tier, get_tier  # noqa: E402

__all__ = [
    "FullyConnected",
    "HessianNorm",
    "PowerLawFit",
    "Tier",
    "Verdict",
    "equality_verdict",
    "get_tier",
    "hessian_spectral_norm",
    "kernel_diagonal",
    "power_law_fit",
    "omega1_verdict",
    "relative_kernel_change",
    "shallow_network",
    "sphere_points",
    "tangent_kernel",
    "upper_bound_verdict",
]
