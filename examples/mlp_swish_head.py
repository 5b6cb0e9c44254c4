"""The same MLP with a swish output f~ = swish(f) (paper Sec. 4, Eq. 11-14): "no".

The rank-one term phi''(f) grad f grad f^T of Eq. 13 keeps ||H~|| of order one at every width.

    linearity-claims check examples/mlp_swish_head.py:build --widths 64,256,1024
"""

import jax

from mlp_linear_head import inputs, mlp, mlp_params


def swish_head(params, x):
    return jax.nn.swish(mlp(params, x))


def build(width, key):
    k_params, k_data = jax.random.split(key)
    return swish_head, mlp_params(k_params, width), inputs(k_data)
