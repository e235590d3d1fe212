"""Layers as data: small frozen dataclasses that describe an encoder or a decoder.

A network is a list of layers, e.g. the convolutional VAE of Kingma & Welling
(2014) style for 28x28 images:

    from vaecore import layers as L
    encoder = [L.Conv2d(32, 4, stride=2, padding=1), L.ReLU(),     # (32, 14, 14)
               L.Conv2d(64, 4, stride=2, padding=1), L.ReLU(),     # (64, 7, 7)
               L.Flatten(), L.Linear(256), L.ReLU()]               # (256,)
    decoder = [L.Linear(256), L.ReLU(), L.Linear(3136), L.ReLU(),
               L.Reshape(64, 7, 7),
               L.ConvTranspose2d(32, 4, stride=2, padding=1), L.ReLU(),   # (32, 14, 14)
               L.ConvTranspose2d(1, 4, stride=2, padding=1)]              # (1, 28, 28)

A layer holds only what its constructor was given; the input width (or
channels) is inferred. :func:`infer` walks a stack from an input shape, checks
that every layer fits the shape it receives and returns one :class:`LayerInfo`
per layer (shapes and parameter shapes); :func:`encode` turns those into the
tuples of ints the C core reads; :func:`summary_rows` gives the rows of a
Keras-like table for a model's ``repr``.

Conventions: a batch of data is (B, D) for flat data or (B, C, H, W) for
images, NCHW, C-ordered, as PyTorch. Every layer computes exactly what the
PyTorch layer of the same name computes (``torch.nn.functional.linear`` with
``W.T``, ``conv2d``, ``conv_transpose2d``, ``flatten(1)``, ``view``), so
PyTorch serves as the reference in tests. This module describes networks; it
computes nothing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from numbers import Integral
from typing import ClassVar

from ._checks import check_int

__all__ = [
    "Layer", "Linear", "Conv2d", "ConvTranspose2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU",
    "Flatten", "Reshape", "LayerInfo", "infer", "encode", "summary_rows", "activation_layer",
    "activation_name", "mlp", "to_dict", "from_dict",
    "KIND_LINEAR", "KIND_CONV2D", "KIND_CONV_TRANSPOSE2D", "KIND_ACTIVATION", "KIND_FLATTEN", "KIND_RESHAPE",
    "ACT_TANH", "ACT_RELU", "ACT_LEAKY_RELU", "ACT_SIGMOID", "ACT_ELU",
]

# the first int of each tuple :func:`encode` hands to the C core
KIND_LINEAR = 0              # (0, out)
KIND_CONV2D = 1              # (1, O, kh, kw, sh, sw, ph, pw)
KIND_CONV_TRANSPOSE2D = 2    # (2, O, kh, kw, sh, sw, ph, pw)
KIND_ACTIVATION = 3          # (3, act)
KIND_FLATTEN = 4             # (4,)
KIND_RESHAPE = 5             # (5, C, H, W)

# activation numbers: the C core's ACT_* enum (csrc/vae.h), in the order of _core.ACTIVATIONS
ACT_TANH = 0
ACT_RELU = 1
ACT_LEAKY_RELU = 2
ACT_SIGMOID = 3
ACT_ELU = 4


# ------------------------------------------------------------------ checks
def _size(value, cls, name, low):
    """An int >= low, or an (h, w) pair of them (a list becomes a tuple); plain ints either way."""
    where = f"{cls} {name}"
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where} must be an int or an (h, w) pair of ints, got {len(value)} values {value!r}")
        return (check_int(value[0], f"{where}[0]", low=low), check_int(value[1], f"{where}[1]", low=low))
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{where} must be an int or an (h, w) pair of ints, got {type(value).__name__} {value!r}")
    return check_int(value, where, low=low)


def _pair(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


# ------------------------------------------------------------------ layers
class Layer:
    """Base of every layer (a marker: :func:`infer` knows each kind by its class)."""

    __slots__ = ()

    def __repr__(self):
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=False)
class Linear(Layer):
    """Fully connected: y = x @ W + b.

    x is (B, I), W is (I, out_features), b is (out_features,), y is
    (B, out_features). I is the width of the input, inferred. The input must be
    flat: put :class:`Flatten` after a convolution.
    """

    out_features: int   # O, the output width

    def __post_init__(self):
        object.__setattr__(self, "out_features", check_int(self.out_features, "Linear out_features"))

    def __repr__(self):
        return f"Linear({self.out_features})"


@dataclass(frozen=True, repr=False)
class _Conv(Layer):
    out_channels: int                   # O
    kernel_size: int | tuple[int, int]  # k or (kh, kw)
    stride: int | tuple[int, int] = 1   # s or (sh, sw)
    padding: int | tuple[int, int] = 0  # p or (ph, pw), zeros on each side

    def __post_init__(self):
        cls = type(self).__name__
        object.__setattr__(self, "out_channels", check_int(self.out_channels, f"{cls} out_channels"))
        object.__setattr__(self, "kernel_size", _size(self.kernel_size, cls, "kernel_size", 1))
        object.__setattr__(self, "stride", _size(self.stride, cls, "stride", 1))
        object.__setattr__(self, "padding", _size(self.padding, cls, "padding", 0))

    def __repr__(self):
        extra = "".join(f", {name}={getattr(self, name)!r}" for name, default in (("stride", 1), ("padding", 0))
                        if getattr(self, name) != default)
        return f"{type(self).__name__}({self.out_channels}, {self.kernel_size!r}{extra})"


@dataclass(frozen=True, repr=False)
class Conv2d(_Conv):
    """2-D convolution, exactly ``torch.nn.functional.conv2d`` (a cross-correlation, zero padding).

        y[b, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xp[b, c, i*sh + u, j*sw + v]

    x is (B, C, H, W) (NCHW), xp is x with ph rows and pw columns of zeros on
    each side, W is (out_channels, C, kh, kw), b is (out_channels,), y is
    (B, out_channels, Ho, Wo) with Ho = (H + 2*ph - kh) // sh + 1 and
    Wo = (W + 2*pw - kw) // sw + 1; the kernel must fit the padded input
    (H + 2*ph >= kh, W + 2*pw >= kw). C is inferred.

    kernel_size, stride and padding are an int (the same for height and width)
    or an (h, w) pair; the fields keep the form they were given in.
    """


@dataclass(frozen=True, repr=False)
class ConvTranspose2d(_Conv):
    """2-D transposed convolution, exactly ``torch.nn.functional.conv_transpose2d`` (output_padding 0).

    The gradient of :class:`Conv2d` with respect to its input: each input
    pixel scatters a kernel-sized patch into the output,

        yp[b, o, i*sh + u, j*sw + v] += x[b, c, i, j] * W[c, o, u, v];  y = yp cropped by (ph, pw) + b[o]

    x is (B, C, H, W), W is (C, out_channels, kh, kw), b is (out_channels,),
    y is (B, out_channels, Ho, Wo) with Ho = (H - 1)*sh - 2*ph + kh and
    Wo = (W - 1)*sw - 2*pw + kw, both of which must be >= 1. C is inferred.

    kernel_size, stride and padding are an int or an (h, w) pair, as for
    :class:`Conv2d`.
    """


@dataclass(frozen=True, repr=False)
class ReLU(Layer):
    """y = max(x, 0), elementwise; any shape."""


@dataclass(frozen=True, repr=False)
class LeakyReLU(Layer):
    """y = x if x > 0 else 0.01 * x, elementwise; any shape (the slope is fixed)."""

    negative_slope: ClassVar[float] = 0.01


@dataclass(frozen=True, repr=False)
class Tanh(Layer):
    """y = tanh(x), elementwise; any shape."""


@dataclass(frozen=True, repr=False)
class Sigmoid(Layer):
    """y = 1 / (1 + exp(-x)), elementwise; any shape."""


@dataclass(frozen=True, repr=False)
class ELU(Layer):
    """y = x if x > 0 else exp(x) - 1 (alpha fixed at 1), elementwise; any shape."""

    alpha: ClassVar[float] = 1.0


@dataclass(frozen=True, repr=False)
class Flatten(Layer):
    """(B, C, H, W) -> (B, C*H*W) in C order, as ``torch.flatten(x, 1)``; copies nothing.

    The input must be an image (C, H, W): a flat input is an error, not a no-op.
    """


@dataclass(frozen=True, repr=False, init=False)
class Reshape(Layer):
    """(B, C*H*W) -> (B, C, H, W), the inverse of :class:`Flatten`; copies nothing.

    Takes C, H and W positionally: ``Reshape(64, 7, 7).shape == (64, 7, 7)``.
    The input must be flat, of width exactly C*H*W.
    """

    shape: tuple[int, int, int]   # (C, H, W)

    def __init__(self, C, H, W):
        shape = tuple(check_int(v, f"Reshape {letter}") for v, letter in zip((C, H, W), "CHW"))
        object.__setattr__(self, "shape", shape)

    def __repr__(self):
        return "Reshape({}, {}, {})".format(*self.shape)


_ACTIVATIONS = {"tanh": (Tanh, ACT_TANH), "relu": (ReLU, ACT_RELU), "leaky_relu": (LeakyReLU, ACT_LEAKY_RELU),
                "sigmoid": (Sigmoid, ACT_SIGMOID), "elu": (ELU, ACT_ELU)}
_ACTIVATION_NAMES = {cls: name for name, (cls, _) in _ACTIVATIONS.items()}
_KINDS = (Linear, Conv2d, ConvTranspose2d, ReLU, LeakyReLU, Tanh, Sigmoid, ELU, Flatten, Reshape)


def activation_layer(name):
    """The layer of an activation name: ``activation_layer("tanh") == Tanh()``.

    name is one of "tanh", "relu", "leaky_relu", "sigmoid", "elu" (the names of
    ``vaecore._core.ACTIVATIONS``).
    """
    if not isinstance(name, str):
        raise TypeError(f"activation must be a str, one of {tuple(_ACTIVATIONS)}, got {type(name).__name__} {name!r}")
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name][0]()


def activation_name(layer):
    """The name of an activation layer: ``activation_name(Tanh()) == "tanh"``; the reverse of activation_layer."""
    name = _ACTIVATION_NAMES.get(type(layer))
    if name is None:
        raise ValueError(f"layer must be an activation layer ({', '.join(c.__name__ + '()' for c in _ACTIVATION_NAMES)}), "
                         f"got {layer!r}")
    return name


def mlp(widths, activation, out_features=None):
    """[Linear(w), act] for each width, then Linear(out_features) if given.

    The stacks of ``VAE(input_dim, latent_dim, hidden, activation=...)``:
    ``mlp(hidden, activation)`` is its encoder (the mu and logvar heads come
    after it) and ``mlp(reversed(hidden), activation, input_dim)`` its decoder.
    """
    act = activation_layer(activation)
    stack = []
    for w in widths:
        stack += [Linear(w), act]
    if out_features is not None:
        stack.append(Linear(out_features))
    return stack


# ------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class LayerInfo:
    """What :func:`infer` learns about one layer of a stack."""

    layer: Layer                 # the layer itself
    index: int                   # its position in the stack
    in_shape: tuple              # (D,) or (C, H, W), one example
    out_shape: tuple             # (D,) or (C, H, W), one example
    params: list                 # [(suffix, shape)]: [("W", ...), ("b", ...)] or []
    num_params: int              # sum of the sizes of params


def _needs(where, i, layer, need, got):
    return ValueError(f"{where}[{i}] {layer!r} needs {need}, got shape {got}")


def _conv_out(where, i, layer, shape):
    """(out_shape, params) of a Conv2d or ConvTranspose2d on a (C, H, W) input."""
    if len(shape) != 3:
        raise _needs(where, i, layer, "a (C, H, W) input", f"{shape}: add Reshape(C, H, W) before it")
    C, H, W = shape
    O = layer.out_channels
    (kh, kw), (sh, sw), (ph, pw) = _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding)
    if isinstance(layer, Conv2d):
        if H + 2 * ph < kh or W + 2 * pw < kw:   # the kernel must fit the padded input
            need = (f"an input of height >= {max(1, kh - 2 * ph)} and width >= {max(1, kw - 2 * pw)} "
                    f"(kernel {kh}x{kw}, padding {ph}x{pw})")
            raise _needs(where, i, layer, need, shape)
        out = (O, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)
        return out, [("W", (O, C, kh, kw)), ("b", (O,))]
    Ho, Wo = (H - 1) * sh - 2 * ph + kh, (W - 1) * sw - 2 * pw + kw
    if Ho < 1 or Wo < 1:   # the padding crops away the whole output
        hmin = 1 + max(0, -(-(2 * ph + 1 - kh) // sh))   # least H with (H - 1)*sh - 2*ph + kh >= 1
        wmin = 1 + max(0, -(-(2 * pw + 1 - kw) // sw))
        need = (f"an input of height >= {hmin} and width >= {wmin} (padding {ph}x{pw} would crop the "
                f"{Ho}x{Wo} output away)")
        raise _needs(where, i, layer, need, shape)
    return (O, Ho, Wo), [("W", (C, O, kh, kw)), ("b", (O,))]


def _layer_out(where, i, layer, shape):
    """(out_shape, params) of one layer given its input shape, or a ValueError naming where[i]."""
    if isinstance(layer, Linear):
        if len(shape) != 1:
            raise _needs(where, i, layer, "a flat input (D,)", f"{shape}: add Flatten() before it")
        return (layer.out_features,), [("W", (shape[0], layer.out_features)), ("b", (layer.out_features,))]
    if isinstance(layer, (Conv2d, ConvTranspose2d)):
        return _conv_out(where, i, layer, shape)
    if isinstance(layer, Flatten):
        if len(shape) != 3:
            raise _needs(where, i, layer, "a (C, H, W) input", f"{shape}: it is already flat; remove Flatten()")
        return (shape[0] * shape[1] * shape[2],), []
    if isinstance(layer, Reshape):
        C, H, W = layer.shape
        if shape != (C * H * W,):
            raise _needs(where, i, layer, f"a flat input of width {C * H * W}", shape)
        return layer.shape, []
    return shape, []   # an activation


def _check_shape(input_shape, where):
    name = f"{where} input_shape"
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"{name} must be a tuple (D,) or (C, H, W), got {type(input_shape).__name__} {input_shape!r}")
    if len(input_shape) not in (1, 3):
        raise ValueError(f"{name} must be (D,) or (C, H, W), got {len(input_shape)} dimensions {tuple(input_shape)}")
    return tuple(check_int(v, f"{name}[{j}]") for j, v in enumerate(input_shape))


def infer(stack, input_shape, where):
    """Check a stack of layers from an input shape; one :class:`LayerInfo` per layer.

    Parameters
    ----------
    stack : list of layers
        May be empty (then the result is []).
    input_shape : tuple of int
        One example: (D,) for flat data, (C, H, W) for images.
    where : str
        The stack's name in messages, e.g. "encoder": a layer is named
        ``encoder[3]``.

    Returns
    -------
    list of LayerInfo

    Raises
    ------
    TypeError
        If the stack is not a list or tuple, or an item is not a layer.
    ValueError
        If a layer does not fit the shape it receives; the message names the
        layer (``decoder[4] Reshape(64, 7, 7)``), the input it needs and the
        shape it got.
    """
    if not isinstance(stack, (list, tuple)):
        raise TypeError(f"{where} must be a list of layers, got {type(stack).__name__} {stack!r}")
    shape = _check_shape(input_shape, where)
    infos = []
    for i, layer in enumerate(stack):
        if isinstance(layer, type) and issubclass(layer, Layer):
            args = "..." if dataclasses.is_dataclass(layer) and dataclasses.fields(layer) else ""
            raise TypeError(f"{where}[{i}] must be a layer, got the class {layer.__name__}: "
                            f"write {layer.__name__}({args})")
        if not isinstance(layer, _KINDS):
            raise TypeError(f"{where}[{i}] must be a layer ({', '.join(c.__name__ for c in _KINDS)}), "
                            f"got {type(layer).__name__} {layer!r}")
        out, params = _layer_out(where, i, layer, shape)
        num = sum(_prod(s) for _, s in params)
        infos.append(LayerInfo(layer=layer, index=i, in_shape=shape, out_shape=out, params=params, num_params=num))
        shape = out
    return infos


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# ------------------------------------------------------------------ to and from files
def to_dict(layer):
    """A layer as a JSON-ready dict: {"type": its class name, **its fields} (pairs as lists)."""
    if not isinstance(layer, _KINDS):
        raise TypeError(f"layer must be a vaecore layer, got {type(layer).__name__} {layer!r}")
    fields = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)} if dataclasses.is_dataclass(layer) else {}
    return {"type": type(layer).__name__, **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}


def from_dict(d):
    """The layer :func:`to_dict` describes; ValueError for an unknown type or fields."""
    kinds = {cls.__name__: cls for cls in _KINDS}
    if not isinstance(d, dict) or d.get("type") not in kinds:
        raise ValueError(f"not a vaecore layer description: {d!r}")
    cls = kinds[d["type"]]
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "type"}
    try:
        if cls is Reshape:
            return Reshape(*args["shape"])
        return cls(**args)
    except (TypeError, KeyError) as e:
        raise ValueError(f"not a vaecore layer description: {d!r} ({e})") from None


# ------------------------------------------------------------------ to the C core, to people
def encode(stack_infos):
    """The stack as tuples of ints for the C core, one per layer (from :func:`infer`'s result).

    Linear (KIND_LINEAR, out), Conv2d (KIND_CONV2D, O, kh, kw, sh, sw, ph, pw),
    ConvTranspose2d (KIND_CONV_TRANSPOSE2D, O, kh, kw, sh, sw, ph, pw), an
    activation (KIND_ACTIVATION, ACT_*), Flatten (KIND_FLATTEN,), Reshape
    (KIND_RESHAPE, C, H, W).
    """
    out = []
    for j, info in enumerate(stack_infos):
        if not isinstance(info, LayerInfo):
            raise TypeError(f"stack_infos[{j}] must be a LayerInfo from layers.infer, got {type(info).__name__}")
        layer = info.layer
        if isinstance(layer, Linear):
            out.append((KIND_LINEAR, layer.out_features))
        elif isinstance(layer, (Conv2d, ConvTranspose2d)):
            kind = KIND_CONV2D if isinstance(layer, Conv2d) else KIND_CONV_TRANSPOSE2D
            out.append((kind, layer.out_channels, *_pair(layer.kernel_size), *_pair(layer.stride),
                        *_pair(layer.padding)))
        elif isinstance(layer, Flatten):
            out.append((KIND_FLATTEN,))
        elif isinstance(layer, Reshape):
            out.append((KIND_RESHAPE, *layer.shape))
        else:
            out.append((KIND_ACTIVATION, _ACTIVATIONS[activation_name(layer)][1]))
    return out


def summary_rows(infos):
    """(name, output shape, parameter count) per layer: the rows of a Keras-like table.

    >>> for name, shape, n in summary_rows(infer([Linear(3), Tanh()], (2,), "encoder")):
    ...     print(f"{name:<12}{str(shape):<8}{n}")
    Linear(3)   (3,)    9
    Tanh()      (3,)    0
    """
    return [(repr(info.layer), info.out_shape, info.num_params) for info in infos]
