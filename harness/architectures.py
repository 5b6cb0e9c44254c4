"""Convolutional, residual and mixed networks in the NTK parameterization (paper Sec. 3.3, App. H).

The paper's Eq. 7 is a stack of layer maps ``alpha_l = phi_l(w_l; alpha_{l-1})`` closed by a linear
read-out ``f = v . alpha_L / sqrt(m)``; Theorem 3.1 holds for any layer types that satisfy its
conditions (a) and (b), and the paper states (end of Sec. 3.3, Appendix H) that convolutional and
residual layers, and stacks mixing them with fully-connected layers, do. The models here follow the
conventions of ``harness.models.FullyConnected`` so that every estimator of the harness works on
them unchanged:

* every weight is drawn from N(0, 1) and every layer divides its pre-activation by sqrt(fan_in):
  ``C_in k^s`` for a convolution with a ``k^s`` window (s spatial dimensions), the input size for a
  dense layer; no biases;
* the width m is the number of channels of the hidden convolutions (and the width of the dense
  hidden layers of the mixed net);
* one input is a flat vector ``x`` of size ``input_dim = prod(input_shape)``, read as an image of
  shape ``input_shape = (C_in, *spatial)`` (1 or 2 spatial dimensions). Keeping inputs flat lets
  ``harness.kernel`` (batches of shape (n, d)) and ``harness.models.sphere_points`` (points of norm
  sqrt(d), so every entry is O(1) like a normalized image) serve them as they are;
* convolutions are stride 1 with "SAME" zero padding, an odd window and no dilation, computed as
  one matrix product with the patch matrix and tested against ``lax.conv_general_dilated``
  (``reference_conv``), which is 20 times slower inside the Lanczos loop on a CPU;
* the read-out is linear (Eq. 7): ``V . features / sqrt(fan_in)`` on the flattened features
  (``readout="flatten"``, fan-in ``C P`` with P positions) or on their average over positions
  (``readout="pool"``, global average pooling, fan-in C);
* ``init(key, dtype) -> (params, fixed)`` with every weight trained (``fixed`` is empty),
  ``apply(params, fixed, x)`` for one input, ``logits`` (the same: the head is linear),
  ``output_component``, ``num_out``, ``num_params``, ``describe()``, ``within_theory``.

``SoftmaxHiddenNet`` is the exploratory case of the authors' rebuttal (to R2): a fully-connected net
whose hidden non-linearity is a softmax across the units of a layer, so each activation depends on
every pre-activation of its layer: the "sparse dependence" behind condition (b) of Theorem 3.1 is
gone. It is outside the theory and never judged.

Matrix products and convolutions ask for ``lax.Precision.HIGHEST`` so that float32 runs on a GPU do
not silently drop to TF32 (10-bit mantissa), which would swamp Hessian norms of order 1e-2.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from harness import rng
from harness.models import ACTIVATIONS, NON_SMOOTH_ACTIVATIONS

Array = jax.Array
Params = dict[str, Array]

_HIGHEST = lax.Precision.HIGHEST

READOUTS = ("flatten", "pool")


# --------------------------------------------------------------------------------------------------
# Validation
def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _int_tuple(name: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of integers >= 1, got {values!r}")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must name at least one layer")
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"every entry of {name} must be an integer >= 1, got {v!r}")
    return values


def _check_activation(activation: object) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")


def _check_image_shape(input_shape: tuple[int, ...]) -> None:
    if len(input_shape) not in (2, 3):
        raise ValueError(
            f"input_shape must be (channels, length) or (channels, height, width), got {input_shape!r}"
        )


def _check_kernel_size(kernel_size: object) -> None:
    _positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (symmetric 'SAME' padding), got {kernel_size}")


def _check_readout(readout: object) -> None:
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; valid: {', '.join(READOUTS)}")


# --------------------------------------------------------------------------------------------------
# Layers
@functools.lru_cache(maxsize=None)
def _patch_indices(spatial: tuple[int, ...], window: tuple[int, ...]) -> np.ndarray:
    """Flat indices into the zero-padded input of every (window offset, output position) pair."""
    padded = tuple(n + 2 * (k // 2) for n, k in zip(spatial, window))
    positions = np.stack(np.meshgrid(*(np.arange(n) for n in spatial), indexing="ij"), axis=-1).reshape(-1, len(spatial))
    offsets = np.array(list(itertools.product(*(range(k) for k in window))))
    coords = offsets[:, None, :] + positions[None, :, :]  # (k^s, P, s)
    return np.ravel_multi_index(tuple(np.moveaxis(coords, -1, 0)), padded)  # (k^s, P)


def _conv(w: Array, a: Array) -> Array:
    """NTK convolution ``(w * a) / sqrt(C_in k^s)``: stride 1, "SAME" zero padding, no kernel flip.

    a is (C_in, *spatial), w is (C_out, C_in, *k). Computed as one matrix product with the patch
    matrix (im2col: one gather from the zero-padded input), which equals
    ``lax.conv_general_dilated(a[None], w, (1,) * s, "SAME")[0]`` (tested to round-off) and is
    20 times faster inside the Lanczos loop on a CPU: measured 10 ms against 230 ms per
    Hessian-vector product of a 3-layer 128-channel CNN on 8x8 images in float64, where XLA's
    convolution (and its transposes) runs far slower inside a ``while_loop`` body than outside.
    A gather compiles faster than k^s shifted slices (1.4 s against 2.0 s for that loop).
    """
    window = w.shape[2:]
    spatial = a.shape[1:]
    fan_in = math.prod(w.shape[1:])
    padded = jnp.pad(a, ((0, 0), *((k // 2, k // 2) for k in window)))
    index = _patch_indices(tuple(spatial), tuple(window))
    patches = padded.reshape(a.shape[0], -1)[:, index].reshape(fan_in, -1)  # row c_in * k^s + offset
    out = jnp.matmul(w.reshape(w.shape[0], fan_in), patches, precision=_HIGHEST)
    return out.reshape(w.shape[0], *spatial) * (1.0 / math.sqrt(fan_in))


def reference_conv(w: Array, a: Array) -> Array:
    """``_conv`` by ``lax.conv_general_dilated``: the reference it is tested against."""
    fan_in = math.prod(w.shape[1:])
    out = lax.conv_general_dilated(a[None], w, window_strides=(1,) * (a.ndim - 1), padding="SAME", precision=_HIGHEST)
    return out[0] * (1.0 / math.sqrt(fan_in))


def _dense(w: Array, a: Array) -> Array:
    """NTK dense layer: ``w a / sqrt(fan_in)`` (paper Eq. 9 before the activation)."""
    return jnp.matmul(w, a, precision=_HIGHEST) * (1.0 / math.sqrt(a.shape[0]))


def _readout(v: Array, features: Array, readout: str) -> Array:
    """Linear read-out ``V . phi / sqrt(fan_in)`` (Eq. 7) of flattened or position-averaged features."""
    if readout == "pool":
        phi = jnp.mean(features, axis=tuple(range(1, features.ndim)))
    else:
        phi = features.reshape(-1)
    return _dense(v, phi)


class _Model:
    """Shared plumbing of the models below: initialization, outputs, sizes.

    Subclasses are frozen dataclasses that define ``layer_shapes`` (weight name -> shape, in forward
    order, the read-out ``V`` last), ``num_outputs``, ``activation``, ``input_dim`` and ``logits``.
    """

    num_outputs: int
    activation: str

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _readout_shape(self, fan_in: int) -> tuple[int, ...]:
        return (fan_in,) if self.num_outputs == 1 else (self.num_outputs, fan_in)

    @property
    def num_params(self) -> int:
        """Number of trained parameters p (every weight is trained)."""
        return sum(math.prod(shape) for shape in self.layer_shapes.values())

    @property
    def num_out(self) -> int:
        """Size of the model output: 1 for a scalar output, c otherwise."""
        return self.num_outputs

    @property
    def depth(self) -> int:
        """Number of hidden weight layers (the read-out not counted)."""
        return len(self.layer_shapes) - 1

    @property
    def within_theory(self) -> bool:
        """False for activations outside the smoothness assumption of Theorem 3.1 (ReLU)."""
        return self.activation not in NON_SMOOTH_ACTIVATIONS

    def init(self, key: Array, dtype=jnp.float64) -> tuple[Params, Params]:
        """Weights at initialization W0: i.i.d. N(0, 1), one key per layer (NTK parameterization).

        Returns:
          ``(params, fixed)``: every weight is trained, ``fixed`` is empty.
        """
        keys = jax.random.split(key, len(self.layer_shapes))
        params = {name: rng.normal(k, shape, dtype) for k, (name, shape) in zip(keys, self.layer_shapes.items())}
        return params, {}

    def _check_input(self, x: Array) -> None:
        if x.shape != (self.input_dim,):
            raise ValueError(
                f"{self.describe()} takes one flat input of shape ({self.input_dim},), got {x.shape}; "
                "use jax.vmap for a batch"
            )

    def _check_params(self, params: Mapping[str, Array]) -> None:
        missing = [name for name in self.layer_shapes if name not in params]
        if missing:
            raise ValueError(f"{self.describe()}: params lack {', '.join(missing)}")
        for name, shape in self.layer_shapes.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(
                    f"{self.describe()}: weight {name} has shape {tuple(params[name].shape)}, expected {shape}"
                )

    def apply(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The model output (linear head): shape () for one output, (c,) for c outputs."""
        return self.logits(params, fixed, x)

    def output_component(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array, k: Array | int) -> Array:
        """Scalar output k (k is ignored for a scalar-output network)."""
        out = self.apply(params, fixed, x)
        return out if out.ndim == 0 else out[k]


def _image_input(model, x: Array) -> Array:
    model._check_input(x)
    return x.reshape(model.input_shape)


def _spatial_size(input_shape: tuple[int, ...]) -> int:
    return math.prod(input_shape[1:])


def _conv_stack_shapes(input_shape: tuple[int, ...], channels: tuple[int, ...], kernel_size: int) -> dict[str, tuple[int, ...]]:
    """Weights W1..WL of a stack of convolutions (C_out, C_in, k, ..., k), one k per spatial axis."""
    window = (kernel_size,) * (len(input_shape) - 1)
    ins = (input_shape[0], *channels[:-1])
    return {f"W{l + 1}": (c_out, c_in, *window) for l, (c_out, c_in) in enumerate(zip(channels, ins))}


def _describe_shape(input_shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in input_shape)


# --------------------------------------------------------------------------------------------------
# CNN
@dataclasses.dataclass(frozen=True)
class ConvNet(_Model):
    """A CNN ``x -> conv -> sigma -> ... -> conv -> sigma -> linear read-out`` (App. H).

    ``alpha_l = sigma(W_l * alpha_{l-1} / sqrt(C_{l-1} k^s))``, ``f = V . phi(alpha_L) / sqrt(fan_in)``
    with phi the flattening or the global average over positions.

    Attributes:
      input_shape: ``(C_in, length)`` or ``(C_in, height, width)`` of one (flattened) input.
      channels: channels C_1, ..., C_L of the convolutions (the width m).
      activation: hidden non-linearity, a key of ``harness.models.ACTIVATIONS``.
      kernel_size: odd window size k (k^s weights per channel pair).
      readout: ``"flatten"`` or ``"pool"`` (see the module docstring).
      num_outputs: c, the number of linear outputs.
    """

    input_shape: tuple[int, ...]
    channels: tuple[int, ...]
    activation: str = "tanh"
    kernel_size: int = 3
    readout: str = "flatten"
    num_outputs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _int_tuple("input_shape", self.input_shape))
        object.__setattr__(self, "channels", _int_tuple("channels", self.channels))
        _check_image_shape(self.input_shape)
        _check_activation(self.activation)
        _check_kernel_size(self.kernel_size)
        _check_readout(self.readout)
        _positive_int("num_outputs", self.num_outputs)

    architecture = "cnn"

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = _conv_stack_shapes(self.input_shape, self.channels, self.kernel_size)
        positions = 1 if self.readout == "pool" else _spatial_size(self.input_shape)
        shapes["V"] = self._readout_shape(self.channels[-1] * positions)
        return shapes

    def describe(self) -> str:
        k = "x".join([str(self.kernel_size)] * (len(self.input_shape) - 1))
        chans = "-".join(str(c) for c in self.channels)
        return f"cnn[{self.activation}; {k}; {chans}; {self.readout}; in {_describe_shape(self.input_shape)}]"

    def features(self, params: Mapping[str, Array], x: Array) -> Array:
        """alpha_L, the last convolution's activations, of shape (C_L, *spatial)."""
        act = ACTIVATIONS[self.activation]
        a = _image_input(self, x)
        for l in range(len(self.channels)):
            a = act(_conv(params[f"W{l + 1}"], a))
        return a

    def logits(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The linear read-out f (Eq. 7)."""
        self._check_params(params)
        return _readout(params["V"], self.features(params, x), self.readout)


# --------------------------------------------------------------------------------------------------
# ResNet
@dataclasses.dataclass(frozen=True)
class ResNet(_Model):
    """A convolutional ResNet: a stem convolution, residual blocks, a linear read-out.

    ``alpha_0 = sigma(W_1 * x / sqrt(C_in k^s))`` (the stem maps C_in to m channels, so it cannot be
    residual), then for b = 1..B::

        alpha_b = alpha_{b-1} + sigma(W_{b+1} * alpha_{b-1} / sqrt(m k^s)) / sqrt(B)

    and ``f = V . phi(alpha_B) / sqrt(fan_in)``. Why the branches carry 1/sqrt(B): an identity skip
    plus an O(1) branch multiplies the mean square of the activations by about (1 + c) per block,
    geometrically in the depth; with 1/sqrt(B) it grows by at most about e^c whatever B, so the
    output and the kernel stay Theta(1) at any depth. At fixed depth the factor is a constant and
    cannot change an exponent in m. The skip is the identity, whose second derivative is zero, so
    Theorem 3.1 (a) holds blockwise as for a dense layer; and
    ``df/dalpha_{b-1} = df/dalpha_b + (1/sqrt(B)) (1/sqrt(m k^s)) W^T * (sigma' . df/dalpha_b)``
    carries the O~(1/sqrt m) infinity norm of condition (b) down the blocks (the skip passes it
    unchanged, the branch adds O~(1/sqrt m) per entry). (The appendices of the paper are not in the
    source text we have, so this is our own choice, not a copy of App. H's form.)

    Attributes:
      input_shape: ``(C_in, length)`` or ``(C_in, height, width)`` of one (flattened) input.
      width: m, the channels of the stem and of every block.
      blocks: B, the number of residual blocks (one convolution each).
      activation, kernel_size, readout, num_outputs: as for ``ConvNet``. Global average pooling
        (``readout="pool"``, the usual ResNet head) is available; on random inputs it averages
        features of random sign over the positions, which makes f and K small and noisy (tr K / n
        spread by 40% between seeds at width 16, against 4% flattened), so the default is
        ``"flatten"``.
    """

    input_shape: tuple[int, ...]
    width: int
    blocks: int = 2
    activation: str = "tanh"
    kernel_size: int = 3
    readout: str = "flatten"
    num_outputs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _int_tuple("input_shape", self.input_shape))
        _check_image_shape(self.input_shape)
        _positive_int("width", self.width)
        _positive_int("blocks", self.blocks)
        _check_activation(self.activation)
        _check_kernel_size(self.kernel_size)
        _check_readout(self.readout)
        _positive_int("num_outputs", self.num_outputs)

    architecture = "resnet"

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def branch_scale(self) -> float:
        """1/sqrt(B), the factor on every residual branch."""
        return 1.0 / math.sqrt(self.blocks)

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        window = (self.kernel_size,) * (len(self.input_shape) - 1)
        shapes = {"W1": (self.width, self.input_shape[0], *window)}
        for b in range(self.blocks):
            shapes[f"W{b + 2}"] = (self.width, self.width, *window)
        positions = 1 if self.readout == "pool" else _spatial_size(self.input_shape)
        shapes["V"] = self._readout_shape(self.width * positions)
        return shapes

    def describe(self) -> str:
        k = "x".join([str(self.kernel_size)] * (len(self.input_shape) - 1))
        return (
            f"resnet[{self.activation}; {k}; width {self.width}; {self.blocks} blocks; {self.readout}; "
            f"in {_describe_shape(self.input_shape)}]"
        )

    def features(self, params: Mapping[str, Array], x: Array) -> Array:
        """alpha_B, the output of the last residual block, of shape (m, *spatial)."""
        act = ACTIVATIONS[self.activation]
        a = act(_conv(params["W1"], _image_input(self, x)))
        for b in range(self.blocks):
            a = a + self.branch_scale * act(_conv(params[f"W{b + 2}"], a))
        return a

    def logits(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The linear read-out f (Eq. 7)."""
        self._check_params(params)
        return _readout(params["V"], self.features(params, x), self.readout)


# --------------------------------------------------------------------------------------------------
# Mixed: convolutions then dense layers
@dataclasses.dataclass(frozen=True)
class ConvDenseNet(_Model):
    """Convolutions, then dense layers on the flattened features, then a linear read-out (Sec. 3.3).

    "Architecture with mixed layer types" (end of Sec. 3.3, App. H.3): the conditions of Theorem 3.1
    are layer-wise, so a stack of convolutional then fully-connected layers inherits them.
    ``alpha_l = sigma(W_l * alpha_{l-1} / sqrt(C_{l-1} k^s))`` for the convolutions,
    ``beta_1 = sigma(U_1 flat(alpha_L) / sqrt(C_L P))``, ``beta_j = sigma(U_j beta_{j-1} / sqrt(m))``,
    ``f = V . beta_J / sqrt(m_J)``. Weights are named ``W1..WL`` (convolutions), ``U1..UJ`` (dense).

    Attributes:
      input_shape: ``(C_in, length)`` or ``(C_in, height, width)`` of one (flattened) input.
      channels: channels of the convolutions.
      hidden_widths: widths of the dense hidden layers (at least one).
      activation, kernel_size, num_outputs: as for ``ConvNet``.
    """

    input_shape: tuple[int, ...]
    channels: tuple[int, ...]
    hidden_widths: tuple[int, ...]
    activation: str = "tanh"
    kernel_size: int = 3
    num_outputs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", _int_tuple("input_shape", self.input_shape))
        object.__setattr__(self, "channels", _int_tuple("channels", self.channels))
        object.__setattr__(self, "hidden_widths", _int_tuple("hidden_widths", self.hidden_widths))
        _check_image_shape(self.input_shape)
        _check_activation(self.activation)
        _check_kernel_size(self.kernel_size)
        _positive_int("num_outputs", self.num_outputs)

    architecture = "mixed"

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = _conv_stack_shapes(self.input_shape, self.channels, self.kernel_size)
        fan_ins = (self.channels[-1] * _spatial_size(self.input_shape), *self.hidden_widths[:-1])
        for j, (m_out, m_in) in enumerate(zip(self.hidden_widths, fan_ins)):
            shapes[f"U{j + 1}"] = (m_out, m_in)
        shapes["V"] = self._readout_shape(self.hidden_widths[-1])
        return shapes

    def describe(self) -> str:
        k = "x".join([str(self.kernel_size)] * (len(self.input_shape) - 1))
        chans = "-".join(str(c) for c in self.channels)
        dense = "-".join(str(m) for m in self.hidden_widths)
        return f"mixed[{self.activation}; {k}; conv {chans}; dense {dense}; in {_describe_shape(self.input_shape)}]"

    def logits(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The linear read-out f (Eq. 7)."""
        self._check_params(params)
        act = ACTIVATIONS[self.activation]
        a = _image_input(self, x)
        for l in range(len(self.channels)):
            a = act(_conv(params[f"W{l + 1}"], a))
        a = a.reshape(-1)
        for j in range(len(self.hidden_widths)):
            a = act(_dense(params[f"U{j + 1}"], a))
        return _dense(params["V"], a)


# --------------------------------------------------------------------------------------------------
# Softmax hidden non-linearity (exploratory)
@dataclasses.dataclass(frozen=True)
class SoftmaxHiddenNet(_Model):
    """A fully-connected net whose hidden non-linearity is a softmax across a layer's units.

    A softmax layer is ``alpha_l = m_l softmax(W_l alpha_{l-1} / sqrt(m_{l-1}))``, i.e.
    ``alpha_{l,i} = exp(z_i) / mean_j exp(z_j)``: the factor m_l keeps every unit O(1) (mean 1), as a
    tanh unit is, instead of O(1/m_l). Other hidden layers apply ``activation`` elementwise; the
    read-out is linear, ``f = V . alpha_L / sqrt(m_L)``. Each softmax unit depends on every
    pre-activation of its layer, which removes the sparse dependence behind condition (b) of Theorem
    3.1 (rebuttal to R2: "these non-linearities do not fit in our current analysis"): the model is
    outside the theory, measured only.

    Attributes:
      input_dim: d.
      hidden_widths: m_1, ..., m_L.
      softmax_layers: 1-based indices of the softmax layers; None (default) for every hidden layer.
      activation: elementwise non-linearity of the other hidden layers.
      num_outputs: c.
    """

    input_dim: int
    hidden_widths: tuple[int, ...]
    softmax_layers: tuple[int, ...] | None = None
    activation: str = "tanh"
    num_outputs: int = 1

    def __post_init__(self) -> None:
        _positive_int("input_dim", self.input_dim)
        object.__setattr__(self, "hidden_widths", _int_tuple("hidden_widths", self.hidden_widths))
        if self.softmax_layers is None:
            object.__setattr__(self, "softmax_layers", tuple(range(1, len(self.hidden_widths) + 1)))
        layers = _int_tuple("softmax_layers", self.softmax_layers)
        if any(l > len(self.hidden_widths) for l in layers) or len(set(layers)) != len(layers):
            raise ValueError(
                f"softmax_layers must be distinct hidden-layer indices in 1..{len(self.hidden_widths)}, got {layers!r}"
            )
        object.__setattr__(self, "softmax_layers", tuple(sorted(layers)))
        _check_activation(self.activation)
        _positive_int("num_outputs", self.num_outputs)

    architecture = "softmax-hidden"

    @property
    def within_theory(self) -> bool:
        """Always False: a softmax couples all units of a layer (outside Theorem 3.1's analysis)."""
        return False

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        fan_ins = (self.input_dim, *self.hidden_widths[:-1])
        shapes = {f"W{l + 1}": (m, f) for l, (m, f) in enumerate(zip(self.hidden_widths, fan_ins))}
        shapes["V"] = self._readout_shape(self.hidden_widths[-1])
        return shapes

    def describe(self) -> str:
        widths = "-".join(str(m) for m in self.hidden_widths)
        layers = ",".join(str(l) for l in self.softmax_layers)
        return f"softmax-hidden[layers {layers}; others {self.activation}; {widths}]"

    def logits(self, params: Mapping[str, Array], fixed: Mapping[str, Array], x: Array) -> Array:
        """The linear read-out f (Eq. 7)."""
        self._check_params(params)
        self._check_input(x)
        act = ACTIVATIONS[self.activation]
        a = x
        for l in range(len(self.hidden_widths)):
            z = _dense(params[f"W{l + 1}"], a)
            a = z.shape[0] * jax.nn.softmax(z) if (l + 1) in self.softmax_layers else act(z)
        return _dense(params["V"], a)


#: The architectures of C6 and the exploratory X1 / X2 records, by name (``build_architecture``).
ARCHITECTURE_NAMES = ("cnn", "resnet", "mixed", "relu", "softmax")


def build_architecture(architecture: str, width: int, grid: Mapping, activation: str = "swish"):
    """The network of one architecture at width m (channels; and dense width for the mixed net), as
    an "architectures" grid of ``harness.tiers`` describes it (C6, X1, X2 and the resource estimates)."""
    from harness.models import FullyConnected

    if architecture == "cnn":
        return ConvNet(grid.cnn_input, (width,) * grid.cnn_layers, activation, readout="flatten")
    if architecture == "resnet":
        return ResNet(grid.resnet_input, width, grid.resnet_blocks, activation, readout="flatten")
    if architecture == "mixed":
        return ConvDenseNet(grid.mixed_input, (width,) * grid.mixed_conv_layers, (width,), activation)
    if architecture == "relu":
        return FullyConnected(grid.input_dim, (width,) * grid.dense_depth, "relu")
    if architecture == "softmax":
        return SoftmaxHiddenNet(grid.input_dim, (width,) * grid.dense_depth)
    raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURE_NAMES)}")
