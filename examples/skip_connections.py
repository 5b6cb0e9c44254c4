"""A network whose layers read from every earlier layer (a DenseNet-style graph; Zhu, Liu & Belkin,
NeurIPS 2022): the width that matters is the minimum in-degree of the neurons, here m, and with it
||H|| = O~(1/sqrt m): "yes".

Layer l takes the concatenation of the input and every earlier hidden layer, scaled by
1/sqrt(fan_in), so each neuron's in-degree grows with m even though the graph is not a chain.

    linearity-claims check examples/skip_connections.py:build --widths 64,256,1024
"""

import jax
import jax.numpy as jnp

from mlp_linear_head import INPUT_DIM, inputs

LAYERS = 3


def dense_graph(params, x):
    features = [x]
    for w in params[:-1]:
        h = jnp.concatenate(features)
        features.append(jnp.tanh(h @ w / jnp.sqrt(h.shape[0])))
    h = jnp.concatenate(features[1:])  # the read-out sees every hidden layer
    return (h @ params[-1] / jnp.sqrt(h.shape[0]))[0]


def build(width, key):
    k_params, k_data = jax.random.split(key)
    keys = jax.random.split(k_params, LAYERS + 1)
    params, fan_in = [], INPUT_DIM
    for k in keys[:-1]:
        params.append(jax.random.normal(k, (fan_in, width), dtype=jnp.float64))
        fan_in += width
    params.append(jax.random.normal(keys[-1], (LAYERS * width, 1), dtype=jnp.float64))
    return dense_graph, params, inputs(k_data)
