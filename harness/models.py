"""Fully-connected networks in the NTK parameterization, with explicit PRNG keys.

The networks follow the conventions of the paper (Liu, Zhu & Belkin 2020) and of CLAIMS.md:

* every weight is drawn from N(0, 1) and each layer divides its pre-activation by sqrt(fan_in)
  (Eq. 9: ``alpha_l = sigma(W_l alpha_{l-1} / sqrt(m_{l-1}))``), the linear read-out is
  ``f = V alpha_L / sqrt(m_L)`` (Eq. 7);
* no biases (the paper's networks have none);
* the shallow network of Sec. 3.1, Eq. 4, is the one-hidden-layer case with a fixed output layer
  ``v in {-1, +1}^m`` (``shallow_network``);
* a bottleneck is a narrow entry in ``hidden_widths`` (Sec. 4);
* the output head is linear, a scalar function ``phi`` of the linear output (Eq. 11) or a softmax
  over ``num_outputs`` classes.

A network object is a frozen, hashable description; weights live in two dicts: ``params`` (trained)
and ``fixed`` (frozen weights such as the output signs of the shallow net). Every forward function
takes ``(params, fixed, x)`` with a single input ``x`` of shape ``(input_dim,)``.

The "standard" (LeCun) parameterization of Appendix B draws weights from N(0, 1/fan_in) and drops the
explicit 1/sqrt(fan_in) factor: the function at initialization has the same law, its derivatives do
not (see claim C18).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

from harness import rng

Array = jax.Array
Params = dict[str, Array]


def _swish(z: Array) -> Array:
    return z * jax.nn.sigmoid(z)


def _gelu(z: Array) -> Array:
    return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))


def _softplus(z: Array) -> Array:
    return jnp.logaddexp(z, 0.0)


#: Hidden-layer activations by name. All but ``relu`` are smooth and Lipschitz, as Theorem 3.1 needs.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "softplus": _softplus,
    "swish": _swish,
    "gelu": _gelu,
    "erf": erf,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
}

#: Activations outside the smoothness assumption of the theory: measured, never pass/fail.
NON_SMOOTH_ACTIVATIONS = frozenset({"relu"})

#: Constant in the output function ``phi(z) = z + a tanh(z)`` (claim C15): phi' lies in [1 - |a|, 1],
#: so phi' is bounded below by rho = 1 - |a| = 0.5 as Theorem 5.1 requires.
TANH_LINEAR_A = -0.5


def _tanh_linear(z: Array) -> Array:
    return z + TANH_LINEAR_A * jnp.tanh(z)


#: Scalar output functions phi for a non-linear output layer f~ = phi(f) (Eq. 11).
OUTPUT_FUNCTIONS: dict[str, Callable[[Array], Array]] = {
    "swish": _swish,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "tanh_linear": _tanh_linear,
}

HEADS = ("linear", "softmax", *OUTPUT_FUNCTIONS)
PARAMETERIZATIONS = ("ntk", "standard")
OUTPUT_INITS = ("gaussian", "sign", "mirrored")


def _known(kind: str, name: object, valid: Sequence[str]) -> None:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")


@dataclasses.dataclass(frozen=True)
class FullyConnected:
    """A fully-connected network ``x -> head(V alpha_L / sqrt(m_L))`` (paper Eq. 7 and 9).

    Attributes:
      input_dim: d, the dimension of an input.
      hidden_widths: widths m_1, ..., m_L of the hidden layers (a bottleneck is a small entry).
      activation: hidden non-linearity, a key of ``ACTIVATIONS``.
      head: ``"linear"``, ``"softmax"`` or a key of ``OUTPUT_FUNCTIONS`` (f~ = phi(f), Eq. 11).
      num_outputs: c, the number of linear outputs (classes for softmax); phi heads need c = 1.
      parameterization: ``"ntk"`` (paper) or ``"standard"`` (LeCun, Appendix B).
      train_hidden: whether the hidden weights are trained (False gives a random-features model,
        linear in its trained weights: Prop. 2.1, claim C16).
      train_output: whether the output layer is trained (False for the shallow net of Sec. 3.1).
      output_init: ``"gaussian"`` (N(0, 1)), ``"sign"`` (v_i uniform in {-1, +1}, Sec. 3.1) or
        ``"mirrored"`` (one hidden layer of even width m): Gaussian, in mirrored halves (W = [A; A],
        V = [b, -b]), so that f(w_0; x) = 0 for every x while each half is an ordinary Gaussian net of
        width m / 2 (the "doubling trick"). A head phi then starts every input at phi(0) (the swish
        runs of Fig. 1, ``harness.train.SWISH_INIT``).
      linear_layers: hidden layers l (1-based) with the identity in place of the activation, e.g. a
        linear bottleneck (Sec. 1: a bottleneck breaks linearity "even if it is linear").
    """

    input_dim: int
    hidden_widths: tuple[int, ...]
    activation: str = "tanh"
    head: str = "linear"
    num_outputs: int = 1
    parameterization: str = "ntk"
    train_hidden: bool = True
    train_output: bool = True
    output_init: str = "gaussian"
    linear_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_widths", tuple(self.hidden_widths))
        object.__setattr__(self, "linear_layers", tuple(self.linear_layers))
        _known("activation", self.activation, tuple(ACTIVATIONS))
        _known("output head", self.head, HEADS)
        _known("parameterization", self.parameterization, PARAMETERIZATIONS)
        _known("output initialization", self.output_init, OUTPUT_INITS)
        for name, value in [("input_dim", self.input_dim), ("num_outputs", self.num_outputs)]:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.hidden_widths:
            raise ValueError("hidden_widths must name at least one hidden layer")
        bad = [l for l in self.linear_layers if not isinstance(l, int) or isinstance(l, bool) or not 1 <= l <= len(self.hidden_widths)]
        if bad:
            raise ValueError(f"linear_layers must be hidden layer numbers 1..{len(self.hidden_widths)}, got {bad!r}")
        for width in self.hidden_widths:
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ValueError(f"every hidden width must be an integer >= 1, got {width!r}")
        if self.head == "softmax" and self.num_outputs < 2:
            raise ValueError("a softmax head needs num_outputs >= 2")
        if self.head in OUTPUT_FUNCTIONS and self.num_outputs != 1:
            raise ValueError(f"the scalar output function {self.head!r} needs num_outputs == 1")
        if not (self.train_hidden or self.train_output):
            raise ValueError("a network must train at least one layer")
        if self.output_init == "mirrored" and (len(self.hidden_widths) != 1 or self.hidden_widths[0] % 2):
            # Deeper, the mirrored halves cancel df/dalpha_{L-1} at w_0: the earlier layers get no gradient.
            raise ValueError(f"a mirrored output initialization needs one hidden layer of even width, got {self.hidden_widths}")

    # ----------------------------------------------------------------------------------------------
    # Description
    @property
    def depth(self) -> int:
        """L, the number of hidden layers."""
        return len(self.hidden_widths)

    @property
    def within_theory(self) -> bool:
        """False for activations outside the smoothness assumption (ReLU): exploratory only."""
        return self.activation not in NON_SMOOTH_ACTIVATIONS

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Weight names in forward order: ``W1 .. WL`` then the read-out ``V``."""
        return (*(f"W{l + 1}" for l in range(self.depth)), "V")

    @property
    def fan_ins(self) -> tuple[int, ...]:
        return (self.input_dim, *self.hidden_widths)

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        outs = (*self.hidden_widths, self.num_outputs)
        shapes = {name: (o, i) for name, o, i in zip(self.layer_names, outs, self.fan_ins)}
        if self.num_outputs == 1:
            shapes["V"] = (self.hidden_widths[-1],)
        return shapes

    def is_trained(self, name: str) -> bool:
        return self.train_output if name == "V" else self.train_hidden

    @property
    def num_params(self) -> int:
        """Number of trained parameters p."""
        return sum(
            math.prod(shape) for name, shape in self.layer_shapes.items() if self.is_trained(name)
        )

    @property
    def num_out(self) -> int:
        """Size of the model output: 1 for a scalar output, c otherwise."""
        return self.num_outputs

    def describe(self) -> str:
        widths = "-".join(str(m) for m in self.hidden_widths)
        linear = f"; linear layers {','.join(map(str, self.linear_layers))}" if self.linear_layers else ""
        mirrored = "; mirrored init" if self.output_init == "mirrored" else ""
        return f"fc[{self.activation}{linear}; {widths}; head={self.head}; {self.parameterization}{mirrored}]"

    # ----------------------------------------------------------------------------------------------
    # Initialization
    def init(self, key: Array, dtype=jnp.float64) -> tuple[Params, Params]:
        """Draw the weights at initialization W0.

        Args:
          key: a ``jax.random`` key; the same key gives the same weights.
          dtype: floating dtype of the weights (and of every computation on them).

        Returns:
          ``(params, fixed)``: the trained weights and the frozen ones, each a dict by layer name.
        """
        keys = jax.random.split(key, len(self.layer_names))
        params: Params = {}
        fixed: Params = {}
        for k, (name, shape) in zip(keys, self.layer_shapes.items()):
            if name == "V" and self.output_init == "sign":
                w = rng.rademacher(k, shape, dtype)
            else:
                w = rng.normal(k, shape, dtype)
                if self.parameterization == "standard":
                    w = w / math.sqrt(shape[-1])
            (params if self.is_trained(name) else fixed)[name] = w
        if self.output_init == "mirrored":
            self._mirror_last_layer(params, fixed)
        return params, fixed

    def _mirror_last_layer(self, params: Params, fixed: Params) -> None:
        """W1 = [A; A] and V = [b, -b] from the first halves of the drawn W1 and V (in place)."""
        last = self.layer_names[0]
        half = self.hidden_widths[0] // 2
        for store in (params, fixed):
            if last in store:
                a = store[last][:half]
                store[last] = jnp.concatenate([a, a], axis=0)
            if "V" in store:
                b = store["V"][..., :half]
                store["V"] = jnp.concatenate([b, -b], axis=-1)

    # ----------------------------------------------------------------------------------------------
    # Forward passes
    def _scale(self, fan_in: int) -> float:
        return 1.0 / math.sqrt(fan_in) if self.parameterization == "ntk" else 1.0

    def _check_input(self, x: Array) -> None:
        if x.shape != (self.input_dim,):
            raise ValueError(
                f"{self.describe()} takes one input of shape ({self.input_dim},), got {x.shape}; "
                "use jax.vmap for a batch"
            )

    def forward(
        self,
        params: Mapping[str, Array],
        fixed: Mapping[str, Array],
        x: Array,
        pre_taps: Sequence[Array] | None = None,
        post_taps: Sequence[Array] | None = None,
    ) -> tuple[Array, list[Array]]:
        """Linear read-out and the layer inputs.

        ``pre_taps[l]`` is added to the pre-activation of layer l+1 (the last entry to the read-out),
        ``post_taps[l]`` to the activation alpha_{l+1}; differentiating at zero taps gives
        df/dpre-activation and df/dalpha (Sec. 3.3) without touching the weights.

        Returns:
          ``(logits, layer_inputs)``: logits of shape () for c = 1 else (c,); ``layer_inputs[l]`` is
          the input of weight ``layer_names[l]``: x, alpha_1, ..., alpha_L.
        """
        self._check_input(x)
        w = {**fixed, **params}
        act = ACTIVATIONS[self.activation]
        a = x
        inputs = []
        for l, name in enumerate(self.layer_names):
            inputs.append(a)
            z = (w[name] @ a) * self._scale(self.fan_ins[l])
            if pre_taps is not None:
                z = z + pre_taps[l]
            if name == "V":
                return z, inputs
            a = z if l + 1 in self.linear_layers else act(z)
            if post_taps is not None:
                a = a + post_taps[l]
        raise AssertionError("unreachable")

    def apply_head(self, logits: Array) -> Array:
        """The output layer's non-linearity: identity, softmax, or phi (Eq. 11)."""
        if self.head == "linear":
            return logits
        if self.head == "softmax":
            return jax.nn.softmax(logits)
        return OUTPUT_FUNCTIONS[self.head](logits)

    def logits(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The inner network f of Eq. 11 (the linear read-out, before the head)."""
        return self.forward(params, fixed, x)[0]

    def apply(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The model output: shape () for one output, (c,) for c outputs."""
        return self.apply_head(self.logits(params, fixed, x))

    def output_component(
        self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array, k: Array | int
    ) -> Array:
        """Scalar output k (k is ignored for a scalar-output network)."""
        out = self.apply(params, fixed, x)
        return out if out.ndim == 0 else out[k]

    def inner_component(
        self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array, k: Array | int
    ) -> Array:
        """Scalar component k of the inner linear-output network f."""
        out = self.logits(params, fixed, x)
        return out if out.ndim == 0 else out[k]

    def zero_taps(self, dtype=jnp.float64) -> tuple[list[Array], list[Array]]:
        """Zero pre-activation taps (one per layer incl. the read-out) and activation taps."""
        pre = [jnp.zeros((m,), dtype) for m in (*self.hidden_widths, self.num_outputs)]
        if self.num_outputs == 1:
            pre[-1] = jnp.zeros((), dtype)
        post = [jnp.zeros((m,), dtype) for m in self.hidden_widths]
        return pre, post

    def activation_gradients(
        self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array, k: Array | int = 0
    ) -> list[Array]:
        """df/dalpha_l for every hidden layer l (Thm 3.1 (b)), for scalar output component k."""
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        pre, post = self.zero_taps(dtype)

        def out(post_taps):
            y = self.apply_head(self.forward(params, fixed, x, pre_taps=None, post_taps=post_taps)[0])
            return y if y.ndim == 0 else y[k]

        return jax.grad(out)(post)


def sup_abs_second_derivative(activation: str) -> float:
    """beta_sigma = sup |sigma''| (Eq. 5): grid search on [-10, 10], then refined to round-off."""
    from scipy.optimize import minimize_scalar

    d2 = jax.jit(jax.grad(jax.grad(ACTIVATIONS[activation])))
    z = np.linspace(-10.0, 10.0, 20001)
    values = np.abs(np.asarray(jax.vmap(d2)(jnp.asarray(z))))
    i = int(np.argmax(values))
    lo, hi = z[max(i - 1, 0)], z[min(i + 1, len(z) - 1)]
    best = minimize_scalar(lambda t: -abs(float(d2(t))), bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return max(float(values[i]), -float(best.fun))


def shallow_network(width: int, input_dim: int = 1, activation: str = "tanh", head: str = "linear") -> FullyConnected:
    """The shallow network of Sec. 3.1, Eq. 4: ``f = (1/sqrt m) sum_i v_i sigma(w_i . x / sqrt d)``.

    The output weights v_i in {-1, +1} are fixed; only the hidden weights w are trained. With
    ``input_dim = 1`` this is exactly Eq. 4 (x in R).
    """
    return FullyConnected(
        input_dim=input_dim,
        hidden_widths=(width,),
        activation=activation,
        head=head,
        train_output=False,
        output_init="sign",
    )


def sphere_points(key: Array, n: int, dim: int, radius: float | None = None, dtype=jnp.float64) -> Array:
    """n points drawn uniformly on the sphere of the given radius in R^dim (default sqrt(dim)).

    The default radius sqrt(d) makes every first-layer pre-activation ``w . x / sqrt(d)`` exactly
    N(0, 1) at initialization, whatever d.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"need n >= 1 and dim >= 1, got n={n}, dim={dim}")
    g = rng.generator(key).standard_normal((n, dim))
    r = math.sqrt(dim) if radius is None else radius
    return jnp.asarray(r * g / np.linalg.norm(g, axis=1, keepdims=True), dtype=dtype)


@dataclasses.dataclass(frozen=True)
class ScaledOutput:
    """Output rescaling as in lazy training (paper Sec. 1 and Appendix A): ``alpha (f(w) - f(w0))``.

    Centring at the initial weights keeps the output at w0 equal to zero whatever alpha, as lazy
    training does, so a large alpha does not start the square loss at alpha^2 |f(w0)|^2. At any w
    the Hessian is alpha times that of f and the tangent kernel alpha^2 times; gradient descent with
    the kernel-based step of harness.train therefore takes steps 1/alpha^2 as large. The base weights
    w0 travel in ``fixed`` (``{"w0": ..., "fixed": ...}``) so the model stays a hashable description.
    """

    net: FullyConnected
    alpha: float

    def __post_init__(self) -> None:
        if self.net.head != "linear":
            raise ValueError(f"output rescaling needs a linear head, got {self.net.head!r}")
        if not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a positive finite number, got {self.alpha!r}")

    @property
    def num_out(self) -> int:
        return self.net.num_out

    @property
    def input_dim(self) -> int:
        return self.net.input_dim

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return self.net.hidden_widths

    @property
    def within_theory(self) -> bool:
        return self.net.within_theory

    @property
    def num_params(self) -> int:
        return self.net.num_params

    def describe(self) -> str:
        return f"{self.alpha:g} x (f - f(w0)), f = {self.net.describe()}"

    def init(self, key: Array, dtype=jnp.float64) -> tuple[Params, dict]:
        params, fixed = self.net.init(key, dtype)
        return params, {"w0": params, "fixed": fixed}

    def apply(self, params: Mapping[str, Array], fixed: Mapping, x: Array) -> Array:
        base = self.net.apply(params, fixed["fixed"], x) - self.net.apply(fixed["w0"], fixed["fixed"], x)
        return self.alpha * base

    def logits(self, params: Mapping[str, Array], fixed: Mapping, x: Array) -> Array:
        return self.apply(params, fixed, x)

    def output_component(self, params: Mapping[str, Array], fixed: Mapping, x: Array, k: Array | int) -> Array:
        out = self.apply(params, fixed, x)
        return out if out.ndim == 0 else out[k]
