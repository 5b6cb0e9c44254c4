"""Random numbers from explicit JAX keys, drawn on the host with NumPy.

Every random quantity of the harness (weights at initialization, input points, Lanczos start
vectors, directions in weight space) comes from a ``jax.random`` key passed in explicitly. The
numbers themselves are drawn by NumPy's PCG64 generator seeded from the key's bits: compiling
JAX's counter-based generator for every new array shape costs about a second on a CPU, which a
sweep over many widths pays again and again, while NumPy draws 1e7 normals in a fraction of a
second with nothing to compile. The streams are platform independent and reproducible: the same
key gives the same numbers on any machine, in any dtype (values are drawn in float64 and cast).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def generator(key: jax.Array) -> np.random.Generator:
    """A NumPy generator seeded by all the bits of a JAX key."""
    bits = np.asarray(jax.random.key_data(key)).ravel()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(b) for b in bits])))


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float64) -> jax.Array:
    """Standard normal array of the given shape."""
    return jnp.asarray(generator(key).standard_normal(shape), dtype=dtype)


def rademacher(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float64) -> jax.Array:
    """Array of independent uniform signs in {-1, +1}."""
    return jnp.asarray(generator(key).integers(0, 2, size=shape) * 2 - 1, dtype=dtype)


def normal_like(key: jax.Array, tree):
    """A standard-normal pytree shaped like ``tree`` (each leaf in its own dtype)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    gen = generator(key)
    return treedef.unflatten([jnp.asarray(gen.standard_normal(x.shape), dtype=x.dtype) for x in leaves])
