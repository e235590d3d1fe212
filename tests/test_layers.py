"""vaecore.layers: the layer dataclasses, their checks, shape inference and the encoding for the C core.

Shapes are checked against the formulas of the PyTorch documentation and,
independently, against a brute-force count of where a kernel fits (conv2d)
or which output pixels a scatter touches (conv_transpose2d). Every error path
is asserted with its exact message: the layer's place (``decoder[4]``), its
repr, the shape it needed and the shape it got.
"""
import dataclasses
import itertools
import pickle
import re

import numpy as np
import pytest

from vaecore import layers as L

ENCODER = [L.Conv2d(32, 4, stride=2, padding=1), L.ReLU(), L.Conv2d(64, 4, stride=2, padding=1), L.ReLU(),
           L.Flatten(), L.Linear(256), L.ReLU()]
DECODER = [L.Linear(256), L.ReLU(), L.Linear(3136), L.ReLU(), L.Reshape(64, 7, 7),
           L.ConvTranspose2d(32, 4, stride=2, padding=1), L.ReLU(), L.ConvTranspose2d(1, 4, stride=2, padding=1)]


def fails(exc, message, fn, *args, **kwargs):
    """fn(*args, **kwargs) raises exc with exactly this message."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


# ------------------------------------------------------------------ fields
def test_fields_are_the_constructor_arguments():
    assert L.Linear(256).out_features == 256
    c = L.Conv2d(32, 4, stride=2, padding=1)
    assert (c.out_channels, c.kernel_size, c.stride, c.padding) == (32, 4, 2, 1)
    assert L.Conv2d(32, 4, 2, 1) == c                   # positional, in the order of the fields
    assert L.Conv2d(8, 3).stride == 1 and L.Conv2d(8, 3).padding == 0
    t = L.ConvTranspose2d(1, (4, 3), stride=(2, 1), padding=(1, 0))
    assert (t.out_channels, t.kernel_size, t.stride, t.padding) == (1, (4, 3), (2, 1), (1, 0))
    assert L.Conv2d(8, [3, 5]).kernel_size == (3, 5)     # a list pair is kept as a tuple (hashable)
    assert type(L.Conv2d(np.int64(8), np.int32(3)).kernel_size) is int
    assert L.Reshape(64, 7, 7).shape == (64, 7, 7)
    assert [f.name for f in dataclasses.fields(L.Conv2d)] == ["out_channels", "kernel_size", "stride", "padding"]
    assert [f.name for f in dataclasses.fields(L.Linear)] == ["out_features"]
    assert [f.name for f in dataclasses.fields(L.Reshape)] == ["shape"]
    for cls in (L.ReLU, L.LeakyReLU, L.Tanh, L.Sigmoid, L.ELU, L.Flatten):
        assert dataclasses.fields(cls) == () and cls() == cls()
    assert L.LeakyReLU.negative_slope == 0.01 and L.ELU.alpha == 1.0


def test_layers_are_frozen_hashable_values():
    with pytest.raises(dataclasses.FrozenInstanceError):
        L.Conv2d(32, 4, stride=2, padding=1).stride = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        L.Reshape(1, 2, 3).shape = (6,)
    for layer in [*ENCODER, *DECODER, L.ELU(), L.Sigmoid(), L.LeakyReLU(), L.Tanh()]:
        name = dataclasses.fields(layer)[0].name if dataclasses.fields(layer) else "extra"
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(layer, name, 1)
    assert len({L.Conv2d(1, 3), L.Conv2d(1, 3), L.ConvTranspose2d(1, 3), L.ReLU(), L.ReLU(), L.Tanh()}) == 4
    assert L.Conv2d(1, 3) != L.ConvTranspose2d(1, 3)     # same fields, another layer
    assert L.Conv2d(1, 3) != L.Conv2d(1, (3, 3))         # the field keeps the form it was given in
    for layer in [*ENCODER, *DECODER, L.ELU(), L.Sigmoid(), L.LeakyReLU(), L.Tanh()]:
        assert pickle.loads(pickle.dumps(layer)) == layer


@pytest.mark.parametrize("layer, text", [
    (L.Conv2d(32, 4, stride=2, padding=1), "Conv2d(32, 4, stride=2, padding=1)"),
    (L.Conv2d(8, 3), "Conv2d(8, 3)"),
    (L.Conv2d(8, (3, 5), padding=(0, 2)), "Conv2d(8, (3, 5), padding=(0, 2))"),
    (L.ConvTranspose2d(1, 4, stride=3), "ConvTranspose2d(1, 4, stride=3)"),
    (L.Linear(256), "Linear(256)"), (L.Reshape(64, 7, 7), "Reshape(64, 7, 7)"), (L.Flatten(), "Flatten()"),
    (L.ReLU(), "ReLU()"), (L.LeakyReLU(), "LeakyReLU()"), (L.Tanh(), "Tanh()"), (L.Sigmoid(), "Sigmoid()"),
    (L.ELU(), "ELU()"),
])
def test_repr_rebuilds_the_layer(layer, text):
    assert repr(layer) == text
    assert eval(text, vars(L)) == layer


def test_every_public_name_exists_and_has_a_docstring():
    for name in L.__all__:
        obj = getattr(L, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
    assert "cross-correlation" in L.Conv2d.__doc__ and "(out_channels, C, kh, kw)" in L.Conv2d.__doc__
    assert "(C, out_channels, kh, kw)" in L.ConvTranspose2d.__doc__
    assert "x @ W + b" in L.Linear.__doc__ and "(I, out_features)" in L.Linear.__doc__


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("make, exc, message", [
    (lambda: L.Linear(0), ValueError, "Linear out_features must be >= 1, got 0"),
    (lambda: L.Linear(2.0), TypeError, "Linear out_features must be an int, got float 2.0"),
    (lambda: L.Linear(True), TypeError, "Linear out_features must be an int, got bool True"),
    (lambda: L.Conv2d(0, 3), ValueError, "Conv2d out_channels must be >= 1, got 0"),
    (lambda: L.Conv2d("8", 3), TypeError, "Conv2d out_channels must be an int, got str '8'"),
    (lambda: L.Conv2d(8, 0), ValueError, "Conv2d kernel_size must be >= 1, got 0"),
    (lambda: L.Conv2d(8, 3.0), TypeError,
     "Conv2d kernel_size must be an int or an (h, w) pair of ints, got float 3.0"),
    (lambda: L.Conv2d(8, False), TypeError,
     "Conv2d kernel_size must be an int or an (h, w) pair of ints, got bool False"),
    (lambda: L.Conv2d(8, None), TypeError,
     "Conv2d kernel_size must be an int or an (h, w) pair of ints, got NoneType None"),
    (lambda: L.Conv2d(8, (3, 3, 3)), ValueError,
     "Conv2d kernel_size must be an int or an (h, w) pair of ints, got 3 values (3, 3, 3)"),
    (lambda: L.Conv2d(8, (3, 0)), ValueError, "Conv2d kernel_size[1] must be >= 1, got 0"),
    (lambda: L.Conv2d(8, (3, 1.5)), TypeError, "Conv2d kernel_size[1] must be an int, got float 1.5"),
    (lambda: L.Conv2d(8, 3, stride=0), ValueError, "Conv2d stride must be >= 1, got 0"),
    (lambda: L.Conv2d(8, 3, stride=(True, 1)), TypeError, "Conv2d stride[0] must be an int, got bool True"),
    (lambda: L.Conv2d(8, 3, padding=-1), ValueError, "Conv2d padding must be >= 0, got -1"),
    (lambda: L.Conv2d(8, 3, padding=(0, -2)), ValueError, "Conv2d padding[1] must be >= 0, got -2"),
    (lambda: L.ConvTranspose2d(8, 3, stride=-1), ValueError, "ConvTranspose2d stride must be >= 1, got -1"),
    (lambda: L.ConvTranspose2d(8, 3, padding="1"), TypeError,
     "ConvTranspose2d padding must be an int or an (h, w) pair of ints, got str '1'"),
    (lambda: L.Reshape(64, 0, 7), ValueError, "Reshape H must be >= 1, got 0"),
    (lambda: L.Reshape(64, 7, 7.0), TypeError, "Reshape W must be an int, got float 7.0"),
])
def test_constructor_checks(make, exc, message):
    fails(exc, message, make)


def test_padding_zero_and_one_by_one_kernels_are_fine():
    assert L.Conv2d(1, 1, padding=0).padding == 0
    assert L.ConvTranspose2d(1, (1, 1), padding=(0, 0)).padding == (0, 0)


def test_reshape_takes_exactly_c_h_w():
    with pytest.raises(TypeError):
        L.Reshape((64, 7, 7))
    with pytest.raises(TypeError):
        L.Reshape(3136)
    with pytest.raises(TypeError):
        L.Reshape(1, 2, 3, 4)


# ------------------------------------------------------------------ shape inference
def test_infer_the_convolutional_vae():
    enc = L.infer(ENCODER, (1, 28, 28), "encoder")
    assert [i.out_shape for i in enc] == [(32, 14, 14), (32, 14, 14), (64, 7, 7), (64, 7, 7), (3136,), (256,), (256,)]
    assert [i.in_shape for i in enc] == [(1, 28, 28)] + [i.out_shape for i in enc[:-1]]
    assert [i.index for i in enc] == list(range(len(ENCODER))) and [i.layer for i in enc] == ENCODER
    assert enc[0].params == [("W", (32, 1, 4, 4)), ("b", (32,))]
    assert enc[2].params == [("W", (64, 32, 4, 4)), ("b", (64,))]
    assert enc[5].params == [("W", (3136, 256)), ("b", (256,))]
    assert all(i.params == [] and i.num_params == 0 for i in enc if i.index in (1, 3, 4, 6))
    assert [i.num_params for i in enc] == [32 * 16 + 32, 0, 64 * 32 * 16 + 64, 0, 0, 3136 * 256 + 256, 0]

    dec = L.infer(DECODER, (20,), "decoder")
    assert [i.out_shape for i in dec] == [(256,), (256,), (3136,), (3136,), (64, 7, 7), (32, 14, 14), (32, 14, 14),
                                          (1, 28, 28)]
    assert dec[0].params == [("W", (20, 256)), ("b", (256,))]
    assert dec[5].params == [("W", (64, 32, 4, 4)), ("b", (32,))]      # (C_in, C_out, kh, kw)
    assert dec[7].params == [("W", (32, 1, 4, 4)), ("b", (1,))]
    assert sum(i.num_params for i in dec) == (20 * 256 + 256) + (256 * 3136 + 3136) + (64 * 32 * 16 + 32) + (32 * 16 + 1)


def test_infer_empty_and_activation_only_stacks():
    assert L.infer([], (5,), "encoder") == []
    assert L.infer((), (3, 4, 4), "decoder") == []
    infos = L.infer([L.Tanh(), L.Sigmoid(), L.ELU(), L.LeakyReLU(), L.ReLU()], (3, 4, 5), "encoder")
    assert all(i.in_shape == i.out_shape == (3, 4, 5) and i.num_params == 0 for i in infos)
    assert L.infer([L.Tanh()], [7], "encoder")[0].out_shape == (7,)     # a list shape is read as a tuple


def conv_out_brute(n, k, s, p):
    """How many placements i*s of a k-wide kernel fit in n + 2p: conv2d's output length, by counting."""
    return sum(1 for start in range(0, n + 2 * p, s) if start + k <= n + 2 * p)


def conv_t_out_brute(n, k, s, p):
    """conv_transpose2d's output length: the pixels the scatter touches, i*s + u, cropped by p on each side."""
    touched = {i * s + u for i in range(n) for u in range(k)}
    return max(touched) + 1 - 2 * p


GEOMETRIES = [((3, 9, 11), (2, 3), (1, 1), (0, 0)), ((2, 10, 10), 3, 3, 0), ((2, 10, 7), 3, 3, 2),
              ((1, 5, 5), 5, 1, 0), ((1, 5, 6), (5, 1), (1, 2), (0, 3)), ((4, 8, 8), (1, 7), (3, 2), (2, 1)),
              ((1, 1, 1), 3, 2, 1), ((2, 13, 4), 4, (3, 1), (2, 0)),
              ((1, 1, 3), 2, 1, 1), ((1, 2, 2), 1, 2, (1, 0))]   # the last two: a transposed output of 0 rows


@pytest.mark.parametrize("shape, k, s, p", GEOMETRIES)
def test_odd_geometries(shape, k, s, p):
    (kh, kw), (sh, sw), (ph, pw) = [(v, v) if isinstance(v, int) else v for v in (k, s, p)]
    C, H, W = shape
    (conv,) = L.infer([L.Conv2d(6, k, stride=s, padding=p)], shape, "encoder")
    assert conv.out_shape == (6, conv_out_brute(H, kh, sh, ph), conv_out_brute(W, kw, sw, pw))
    assert conv.params == [("W", (6, C, kh, kw)), ("b", (6,))] and conv.num_params == 6 * C * kh * kw + 6
    ho, wo = conv_t_out_brute(H, kh, sh, ph), conv_t_out_brute(W, kw, sw, pw)
    if ho >= 1 and wo >= 1:
        (tconv,) = L.infer([L.ConvTranspose2d(5, k, stride=s, padding=p)], shape, "decoder")
        assert tconv.out_shape == (5, ho, wo)
        assert tconv.params == [("W", (C, 5, kh, kw)), ("b", (5,))] and tconv.num_params == C * 5 * kh * kw + 5
    else:   # the padding crops away every row or column
        with pytest.raises(ValueError, match=re.escape(f"would crop the {ho}x{wo} output away")):
            L.infer([L.ConvTranspose2d(5, k, stride=s, padding=p)], shape, "decoder")


def test_stride_3_padding_2_by_the_formulas():
    (c,) = L.infer([L.Conv2d(4, (3, 5), stride=3, padding=2)], (2, 10, 11), "encoder")
    assert c.out_shape == (4, (10 + 4 - 3) // 3 + 1, (11 + 4 - 5) // 3 + 1) == (4, 4, 4)
    (t,) = L.infer([L.ConvTranspose2d(4, (3, 5), stride=3, padding=2)], (2, 4, 4), "decoder")
    assert t.out_shape == (4, (4 - 1) * 3 - 4 + 3, (4 - 1) * 3 - 4 + 5) == (4, 8, 10)


# ------------------------------------------------------------------ bad stacks
@pytest.mark.parametrize("stack, shape, where, message", [
    # a Reshape of the wrong size
    (DECODER[:4] + [L.Reshape(64, 7, 6)] + DECODER[5:], (20,), "decoder",
     "decoder[4] Reshape(64, 7, 6) needs a flat input of width 2688, got shape (3136,)"),
    ([L.Linear(256), L.ReLU(), L.Linear(3000), L.ReLU(), L.Reshape(64, 7, 7)], (20,), "decoder",
     "decoder[4] Reshape(64, 7, 7) needs a flat input of width 3136, got shape (3000,)"),
    ([L.Reshape(2, 3, 4)], (6,), "encoder", "encoder[0] Reshape(2, 3, 4) needs a flat input of width 24, got shape (6,)"),
    ([L.Reshape(1, 28, 28)], (1, 28, 28), "encoder",
     "encoder[0] Reshape(1, 28, 28) needs a flat input of width 784, got shape (1, 28, 28)"),
    # a kernel larger than its padded input
    (ENCODER[:4] + [L.Conv2d(8, 9)], (1, 28, 28), "encoder",
     "encoder[4] Conv2d(8, 9) needs an input of height >= 9 and width >= 9 (kernel 9x9, padding 0x0), "
     "got shape (64, 7, 7)"),
    ([L.Conv2d(8, (3, 8), padding=(0, 1))], (1, 5, 5), "encoder",
     "encoder[0] Conv2d(8, (3, 8), padding=(0, 1)) needs an input of height >= 3 and width >= 6 "
     "(kernel 3x8, padding 0x1), got shape (1, 5, 5)"),
    # a transposed convolution whose padding crops its output away
    ([L.ConvTranspose2d(1, 1, padding=2)], (3, 3, 3), "decoder",
     "decoder[0] ConvTranspose2d(1, 1, padding=2) needs an input of height >= 5 and width >= 5 "
     "(padding 2x2 would crop the -1x-1 output away), got shape (3, 3, 3)"),
    ([L.ConvTranspose2d(1, 2, stride=3, padding=(3, 0))], (3, 2, 9), "decoder",
     "decoder[0] ConvTranspose2d(1, 2, stride=3, padding=(3, 0)) needs an input of height >= 3 and width >= 1 "
     "(padding 3x0 would crop the -1x26 output away), got shape (3, 2, 9)"),
    # a Flatten before a conv, a Flatten of a flat input
    ([L.Conv2d(32, 4, 2, 1), L.Flatten(), L.Conv2d(64, 4, 2, 1)], (1, 28, 28), "encoder",
     "encoder[2] Conv2d(64, 4, stride=2, padding=1) needs a (C, H, W) input, got shape (6272,): "
     "add Reshape(C, H, W) before it"),
    ([L.Linear(10), L.Flatten()], (4,), "encoder",
     "encoder[1] Flatten() needs a (C, H, W) input, got shape (10,): it is already flat; remove Flatten()"),
    # Linear on a 3-D input
    (ENCODER[:4] + [L.Linear(256)], (1, 28, 28), "encoder",
     "encoder[4] Linear(256) needs a flat input (D,), got shape (64, 7, 7): add Flatten() before it"),
    ([L.ConvTranspose2d(1, 4)], (784,), "decoder",
     "decoder[0] ConvTranspose2d(1, 4) needs a (C, H, W) input, got shape (784,): add Reshape(C, H, W) before it"),
])
def test_bad_stacks_name_the_layer_and_both_shapes(stack, shape, where, message):
    fails(ValueError, message, L.infer, stack, shape, where)


@pytest.mark.parametrize("stack, message", [
    ([L.Linear(4), 3], "encoder[1] must be a layer (Linear, Conv2d, ConvTranspose2d, ReLU, LeakyReLU, Tanh, "
                       "Sigmoid, ELU, Flatten, Reshape), got int 3"),
    ([L.Linear(4), L.ReLU], "encoder[1] must be a layer, got the class ReLU: write ReLU()"),
    ([L.Linear], "encoder[0] must be a layer, got the class Linear: write Linear(...)"),
    ([L.Layer()], "encoder[0] must be a layer (Linear, Conv2d, ConvTranspose2d, ReLU, LeakyReLU, Tanh, "
                  "Sigmoid, ELU, Flatten, Reshape), got Layer Layer()"),
    ([None], "encoder[0] must be a layer (Linear, Conv2d, ConvTranspose2d, ReLU, LeakyReLU, Tanh, "
             "Sigmoid, ELU, Flatten, Reshape), got NoneType None"),
    (L.Linear(4), "encoder must be a list of layers, got Linear Linear(4)"),
    ("relu", "encoder must be a list of layers, got str 'relu'"),
])
def test_non_layers_are_type_errors(stack, message):
    fails(TypeError, message, L.infer, stack, (5,), "encoder")


@pytest.mark.parametrize("shape, exc, message", [
    ((), ValueError, "encoder input_shape must be (D,) or (C, H, W), got 0 dimensions ()"),
    ((28, 28), ValueError, "encoder input_shape must be (D,) or (C, H, W), got 2 dimensions (28, 28)"),
    ((1, 0, 28), ValueError, "encoder input_shape[1] must be >= 1, got 0"),
    ((2.0,), TypeError, "encoder input_shape[0] must be an int, got float 2.0"),
    (784, TypeError, "encoder input_shape must be a tuple (D,) or (C, H, W), got int 784"),
])
def test_bad_input_shapes(shape, exc, message):
    fails(exc, message, L.infer, [L.ReLU()], shape, "encoder")


# ------------------------------------------------------------------ encoding, summary, activations
def test_encode_the_convolutional_vae():
    assert L.encode(L.infer(ENCODER, (1, 28, 28), "encoder")) == [
        (1, 32, 4, 4, 2, 2, 1, 1), (3, 1), (1, 64, 4, 4, 2, 2, 1, 1), (3, 1), (4,), (0, 256), (3, 1)]
    assert L.encode(L.infer(DECODER, (20,), "decoder")) == [
        (0, 256), (3, 1), (0, 3136), (3, 1), (5, 64, 7, 7), (2, 32, 4, 4, 2, 2, 1, 1), (3, 1), (2, 1, 4, 4, 2, 2, 1, 1)]
    odd = [L.Conv2d(3, (2, 5), stride=(3, 1), padding=(0, 2)), L.Tanh(), L.LeakyReLU(), L.Sigmoid(), L.ELU()]
    assert L.encode(L.infer(odd, (1, 9, 9), "encoder")) == [(1, 3, 2, 5, 3, 1, 0, 2), (3, 0), (3, 2), (3, 3), (3, 4)]
    assert L.encode([]) == []
    with pytest.raises(TypeError, match=re.escape("stack_infos[0] must be a LayerInfo from layers.infer, got Linear")):
        L.encode([L.Linear(3)])


def test_kind_and_activation_numbers():
    from vaecore import _core

    assert (L.KIND_LINEAR, L.KIND_CONV2D, L.KIND_CONV_TRANSPOSE2D, L.KIND_ACTIVATION, L.KIND_FLATTEN,
            L.KIND_RESHAPE) == (0, 1, 2, 3, 4, 5)
    acts = (L.ACT_TANH, L.ACT_RELU, L.ACT_LEAKY_RELU, L.ACT_SIGMOID, L.ACT_ELU)
    assert acts == (0, 1, 2, 3, 4)
    # the C core numbers its activations in the order of _core.ACTIVATIONS
    for number, name in zip(acts, ("tanh", "relu", "leaky_relu", "sigmoid", "elu")):
        assert _core.ACTIVATIONS.index(name) == number


def test_activation_layer_and_back():
    pairs = [("tanh", L.Tanh()), ("relu", L.ReLU()), ("leaky_relu", L.LeakyReLU()), ("sigmoid", L.Sigmoid()),
             ("elu", L.ELU())]
    for name, layer in pairs:
        assert L.activation_layer(name) == layer and L.activation_name(layer) == name
    fails(ValueError, "activation must be one of ('tanh', 'relu', 'leaky_relu', 'sigmoid', 'elu'), got 'gelu'",
          L.activation_layer, "gelu")
    fails(TypeError, "activation must be a str, one of ('tanh', 'relu', 'leaky_relu', 'sigmoid', 'elu'), got "
          "NoneType None", L.activation_layer, None)
    fails(ValueError, "layer must be an activation layer (Tanh(), ReLU(), LeakyReLU(), Sigmoid(), ELU()), "
          "got Linear(3)", L.activation_name, L.Linear(3))


def test_mlp_expresses_the_existing_vae():
    assert L.mlp((64, 64), "tanh") == [L.Linear(64), L.Tanh(), L.Linear(64), L.Tanh()]
    assert L.mlp(reversed((64, 32)), "relu", 7) == [L.Linear(32), L.ReLU(), L.Linear(64), L.ReLU(), L.Linear(7)]
    assert L.mlp((), "elu") == [] and L.mlp((), "elu", 3) == [L.Linear(3)]
    # VAE(2, 2, hidden=(32, 32)): the encoder stack, its heads and the decoder hold the model's parameters
    enc = L.infer(L.mlp((32, 32), "tanh"), (2,), "encoder")
    dec = L.infer(L.mlp((32, 32), "tanh", 2), (2,), "decoder")
    heads = 2 * (32 * 2 + 2)
    from vaecore import VAE

    assert sum(i.num_params for i in enc + dec) + heads == VAE(2, 2, hidden=(32, 32)).num_params


def test_summary_rows():
    rows = L.summary_rows(L.infer(DECODER, (20,), "decoder"))
    assert rows[0] == ("Linear(256)", (256,), 20 * 256 + 256)
    assert rows[4] == ("Reshape(64, 7, 7)", (64, 7, 7), 0)
    assert rows[-1] == ("ConvTranspose2d(1, 4, stride=2, padding=1)", (1, 28, 28), 32 * 16 + 1)
    assert len(rows) == len(DECODER) and L.summary_rows([]) == []
