"""A bottleneck [m, 3, m] (paper Sec. 4): one narrow hidden layer keeps ||H|| of order one: "no".

Any fixed bottleneck width does; with 3 units the seed-to-seed spread is a third of a single
unit's (whose layer stays as random as one Gaussian variable at every m), so a few seeds decide.

    linearity-claims check examples/bottleneck.py:build --widths 64,256,1024
"""

import jax
import jax.numpy as jnp

from mlp_linear_head import INPUT_DIM, inputs, mlp

BOTTLENECK = 3


def build(width, key):
    k_params, k_data = jax.random.split(key)
    sizes = [INPUT_DIM, width, BOTTLENECK, width, 1]
    keys = jax.random.split(k_params, len(sizes) - 1)
    params = [jax.random.normal(k, (a, b), dtype=jnp.float64) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    return mlp, params, inputs(k_data)
