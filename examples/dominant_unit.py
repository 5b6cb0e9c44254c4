"""An "assembly" of sub-models in which one hidden unit does not shrink with width (Liu, Zhu &
Belkin, ICLR 2022): linearity emerges only when no sub-model dominates, so here it does not: "no".

The output is the usual 1/sqrt(m) average over m tanh units plus one unit whose output weight is
of order one. The Hessian of that unit's term, v0 tanh''(w0 . x) x x^T, has norm of order one at
every width, so ||H|| = Omega(1) while the kernel stays of order one.

    linearity-claims check examples/dominant_unit.py:build --widths 64,256,1024
"""

import jax
import jax.numpy as jnp

from mlp_linear_head import INPUT_DIM, inputs


def assembly(params, x):
    w, v, w0 = params["w"], params["v"], params["w0"]
    crowd = jnp.tanh(x @ w / jnp.sqrt(x.shape[0])) @ v / jnp.sqrt(v.shape[0])
    # One unit with an order-one output weight; its pre-activation is shifted so that
    # tanh'' (zero at 0) is not small at typical inputs.
    lead = jnp.tanh(x @ w0 / jnp.sqrt(x.shape[0]) + 0.7)
    return crowd + lead


def build(width, key):
    k_w, k_v, k_0, k_data = jax.random.split(key, 4)
    params = {
        "w": jax.random.normal(k_w, (INPUT_DIM, width), dtype=jnp.float64),
        "v": jax.random.normal(k_v, (width,), dtype=jnp.float64),
        "w0": jax.random.normal(k_0, (INPUT_DIM,), dtype=jnp.float64),
    }
    return assembly, params, inputs(k_data)
