"""A plain-JAX MLP with a linear output layer (paper Sec. 3): transition to linearity, "yes".

    linearity-claims check examples/mlp_linear_head.py:build --widths 64,256,1024
"""

import jax
import jax.numpy as jnp

INPUT_DIM = 8
N_INPUTS = 16
DEPTH = 2


def inputs(key, n=N_INPUTS, d=INPUT_DIM):
    """n points on the sphere of radius sqrt(d): first-layer pre-activations are N(0, 1)."""
    x = jax.random.normal(key, (n, d), dtype=jnp.float64)
    return jnp.sqrt(d) * x / jnp.linalg.norm(x, axis=1, keepdims=True)


def mlp_params(key, width, depth=DEPTH, d=INPUT_DIM):
    """NTK parameterization: N(0, 1) weights, each layer divided by sqrt(fan_in) in ``mlp``."""
    sizes = [d] + [width] * depth + [1]
    keys = jax.random.split(key, len(sizes) - 1)
    return [jax.random.normal(k, (a, b), dtype=jnp.float64) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(params, x, activation=jnp.tanh):
    h = x
    for w in params[:-1]:
        h = activation(h @ w / jnp.sqrt(w.shape[0]))
    return (h @ params[-1] / jnp.sqrt(params[-1].shape[0]))[0]


def build(width, key):
    k_params, k_data = jax.random.split(key)
    return mlp, mlp_params(k_params, width), inputs(k_data)
