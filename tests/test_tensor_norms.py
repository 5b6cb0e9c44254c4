"""The (2,2,1)-norms of Theorem 3.1 (a) (harness.tensor_norms) against brute force on tiny layers."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import tensor_norms as tn
from harness.models import ACTIVATIONS, FullyConnected, sphere_points


def _point(activation="tanh", width=5, depth=2, d=3, seed=0, layer=2):
    net = FullyConnected(d, (width,) * depth, activation)
    params, fixed = net.init(jax.random.key(seed), jnp.float64)
    x = sphere_points(jax.random.key(seed + 1), 1, d)[0]
    return net, params, fixed, x, tn.layer_point(net, params, fixed, x, layer)


def _layer_function(net, p):
    act = ACTIVATIONS[net.activation]
    return lambda w, alpha: act(p.scale * (w @ alpha))


def _brute_force(matrices_by_signs, m):
    """sup over unit (x, z) of sum_k |T_k(x, z)| = max over signs c of the top singular value of the
    matrix of the bilinear form sum_k c_k T_k."""
    return max(np.linalg.norm(matrices_by_signs(np.array(c)), 2) for c in itertools.product((-1.0, 1.0), repeat=m))


@pytest.mark.parametrize("activation", ["tanh", "swish"])
def test_components_are_the_autodiff_tensors(activation):
    """aa_components and aw_components equal the second derivatives of phi(W, alpha) = sigma(s W
    alpha) by jax.hessian contracted with the same directions (what the formulas are of)."""
    net, params, fixed, x, p = _point(activation)
    phi = _layer_function(net, p)
    w, alpha = jnp.asarray(p.weights), jnp.asarray(p.alpha)
    gen = np.random.default_rng(0)
    a, b = gen.standard_normal(alpha.size), gen.standard_normal(alpha.size)
    A, B = gen.standard_normal(p.weights.shape), gen.standard_normal(p.weights.shape)
    t_aa = np.asarray(jax.jacfwd(jax.jacrev(phi, argnums=1), argnums=1)(w, alpha))  # (k, i, j)
    t_aw = np.asarray(jax.jacfwd(jax.jacrev(phi, argnums=1), argnums=0)(w, alpha))  # (k, i, r, c)
    t_ww = np.asarray(jax.jacfwd(jax.jacrev(phi, argnums=0), argnums=0)(w, alpha))  # (k, r, c, r', c')
    np.testing.assert_allclose(np.einsum("kij,i,j->k", t_aa, a, b), tn.aa_components(p, a, b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.einsum("kirc,i,rc->k", t_aw, a, B), tn.aw_components(p, a, B), rtol=1e-12, atol=1e-14)
    ww = np.einsum("krcst,rc,st->k", t_ww, A, B)
    expected = p.d2 * p.scale**2 * (A @ p.alpha) * (B @ p.alpha)
    np.testing.assert_allclose(ww, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("activation", ["tanh", "swish"])
def test_norms_against_brute_force_over_all_signs(activation, seed):
    """On a 5-neuron layer: ww and aw are the brute-force norms to round-off; aa lies between its
    bounds, and the ascent's lower bound reaches it (to 1e-6, from its starts)."""
    net, params, fixed, x, p = _point(activation, seed=seed)
    m, n = p.weights.shape
    s, w, alpha = p.scale, p.weights, p.alpha
    norms = tn.layer_tensor_norms(p, np.random.default_rng(seed))

    def ww_matrix(c):  # rows (k, i), columns (k', j)
        return np.kron(np.diag(c * p.d2 * s**2), np.outer(alpha, alpha))

    def aa_matrix(c):
        return w.T @ np.diag(c * p.d2 * s**2) @ w

    def aw_matrix(c):  # rows i (alpha), columns (k, j) (W)
        return (np.einsum("k,ki,j->ikj", c * p.d2 * s**2, w, alpha)
                + np.einsum("k,ij->ikj", c * p.d1 * s, np.eye(n))).reshape(n, m * n)

    ww, aa, aw = (_brute_force(f, m) for f in (ww_matrix, aa_matrix, aw_matrix))
    assert abs(norms.ww - ww) <= 1e-12 * ww
    assert norms.aa_lower <= aa * (1 + 1e-12) and aa <= norms.aa_upper * (1 + 1e-12)
    assert abs(norms.aw - aw) <= 1e-10 * aw
    assert norms.aa_lower >= aa * (1 - 1e-6), (norms.aa_lower, aa)


def test_the_21_norm_is_not_the_spectral_norm_of_the_summed_tensor():
    """The nearest wrong variant, ||sum_k T_k||_op (all signs +1), is below the norm when the
    sigma''_k have both signs: the definition's sum of absolute values matters."""
    net, params, fixed, x, p = _point("tanh", seed=0)
    assert np.any(p.d2 > 0) and np.any(p.d2 < 0)
    summed = np.linalg.norm(p.weights.T @ np.diag(p.d2 * p.scale**2) @ p.weights, 2)
    assert summed < tn.layer_tensor_norms(p, np.random.default_rng(0)).aa_lower * 0.99


def test_bad_layer_is_refused():
    net, params, fixed, x, _ = _point()
    with pytest.raises(ValueError, match="hidden layer 1..2"):
        tn.layer_point(net, params, fixed, x, 3)
    linear = FullyConnected(3, (5, 5), "tanh", linear_layers=(2,))
    lp, lf = linear.init(jax.random.key(0))
    with pytest.raises(ValueError, match="is linear"):
        tn.layer_point(linear, lp, lf, x, 2)


def test_largest_singular_value_and_the_cheap_form():
    gen = np.random.default_rng(3)
    for shape in [(7, 4), (4, 7), (6, 6)]:
        w = gen.standard_normal(shape)
        assert abs(tn.largest_singular_value(w) - np.linalg.norm(w, 2)) <= 1e-12 * np.linalg.norm(w, 2)
    *_, p = _point("swish")
    cheap, full = tn.layer_tensor_norms(p), tn.layer_tensor_norms(p, np.random.default_rng(0))
    assert np.isnan(cheap.aa_lower) and not np.isnan(full.aa_lower)
    assert (cheap.ww, cheap.aa_upper, cheap.aw) == (full.ww, full.aa_upper, full.aw)
