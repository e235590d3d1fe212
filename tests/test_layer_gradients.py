"""Every layer of the C core's catalogue against central finite differences, alone and composed.

The models are built on vaecore._core.Model directly (stacks as int tuples, the encoding of
vaecore.layers), in float64, with odd geometries: non-square kernels, stride 3, padding 2, 1- and
5-channel inputs, batch 1 and an odd batch. The loss is a function of every parameter through
the whole model (encoder, heads, reparameterization with a fixed eps, decoder, likelihood, KL), so
a wrong gradient anywhere in a layer's backward shows in the blocks of that layer and below.

Tolerance: the finite-difference step, tolerance and per-block comparison of
tests/test_gradients.py (h = 5e-5, 1e-6 relative per parameter block, measured errors ~1e-8);
smooth activations (tanh, sigmoid, elu away from 0 has a kink only in its second derivative) keep
the difference quotient exact to O(h^2). ReLU's kink is covered by tests/test_gradients.py.
"""
import math

import numpy as np
import pytest

from reference import central_difference_grad, rel_error
from vaecore import _core

FD_STEP = 5e-5
FD_RTOL = 1e-6
TANH, SIGMOID, ELU = (3, 0), (3, 3), (3, 4)


def conv(o, kh, kw, sh=1, sw=1, ph=0, pw=0):
    return (1, o, kh, kw, sh, sw, ph, pw)


def convt(o, kh, kw, sh=1, sw=1, ph=0, pw=0):
    return (2, o, kh, kw, sh, sw, ph, pw)


# name: (input_shape, latent_dim, encoder, decoder, likelihood)
CASES = {
    # Conv2d alone: 5 channels, a 2x3 kernel, stride (3, 2), padding (2, 1): (5, 7, 6) -> (4, 4, 3)
    "conv2d": ((5, 7, 6), 3, [conv(4, 2, 3, 3, 2, 2, 1), (4,)], [(0, 210)], "gaussian"),
    # ConvTranspose2d alone: (2, 3, 4) -> (1, 7, 8) with a 3x2 kernel, stride (3, 2), padding (1, 0)
    "conv_transpose2d": ((1, 7, 8), 2, [(4,), (0, 5)], [(0, 24), (5, 2, 3, 4), convt(1, 3, 2, 3, 2, 1, 0)],
                         "bernoulli"),
    # stride 3 and padding 2 on a 1-channel input, a kernel that overlaps (5 > 3)
    "conv2d stride 3 padding 2": ((1, 9, 9), 2, [conv(3, 5, 5, 3, 3, 2, 2), TANH, (4,)], [(0, 81)], "gaussian"),
    # a kernel of 1, stride larger than the kernel (skips pixels)
    "conv2d kernel 1 stride 2": ((3, 5, 5), 2, [conv(2, 1, 1, 2, 2), (4,)], [(0, 75)], "gaussian"),
    # every kind composed: conv, activations, flatten, linear; linear, reshape, transposed convs
    "composed": ((1, 8, 8), 3,
                 [conv(3, 4, 4, 2, 2, 1, 1), ELU, conv(4, 3, 3, 2, 2, 1, 1), TANH, (4,), (0, 6), SIGMOID],
                 [(0, 7), TANH, (0, 32), ELU, (5, 2, 4, 4), convt(3, 4, 4, 2, 2, 1, 1), TANH,
                  convt(1, 3, 3, 1, 1, 1, 1)], "bernoulli"),
    # two activations in a row (the second needs the first's output), an activation on x itself
    "activations in a row": ((6,), 2, [TANH, (0, 5), SIGMOID, TANH], [(0, 4), ELU, SIGMOID, (0, 6)], "gaussian"),
    # col2im's image rows over several vectors (40 wide: 3 of AVX-512's float vectors, 5 of its
    # double ones, past the register plan of conv.inc's col2im_rows), in a conv2d's input gradient
    # and a transposed conv's forward
    "rows of several vectors": ((1, 4, 40), 2, [conv(2, 1, 1), TANH, conv(2, 3, 5, 2, 2, 1, 2), TANH, (4,)],
                                [(0, 80), TANH, (5, 2, 2, 20), convt(1, 4, 6, 2, 2, 1, 2)], "gaussian"),
    # rows (70) and a kernel (9) too wide for col2im_rows' plan at any width: the loop over taps
    "rows too wide for registers": ((1, 3, 70), 2, [conv(2, 1, 1), TANH, conv(3, 3, 9, 1, 3, 1, 4), TANH, (4,)],
                                    [(0, 216), TANH, (5, 3, 3, 24), convt(1, 3, 9, 1, 3, 1, 4)], "gaussian"),
    # the learned decoder variance under a conv decoder
    "learned variance": ((2, 4, 4), 2, [(4,), (0, 5), TANH], [(0, 8), (5, 2, 2, 2), convt(2, 2, 2, 2, 2)],
                         "gaussian_learned"),
}


def make(case, variational=True, seed=0):
    shape, K, enc, dec, lik = CASES[case]
    core = _core.Model(shape, K, enc, dec, lik, variational, "float64", 0)
    rng = np.random.default_rng(seed)
    core.params[:] = rng.uniform(-0.5, 0.5, core.num_params)
    return core, rng


def data(core, rng, n):
    D = math.prod(core.config["input_shape"])
    if core.config["likelihood"] == "bernoulli":
        return rng.random((n, D)), rng.standard_normal((n, core.config["latent_dim"]))
    return rng.standard_normal((n, D)), rng.standard_normal((n, core.config["latent_dim"]))


def blocks(core, a, b):
    """{name: error of that block relative to its own scale (floored at 1e-3 of the whole)}"""
    floor = 1e-3 * max(np.abs(a).max(), np.abs(b).max())
    return {name: rel_error(a[off:off + math.prod(s)], b[off:off + math.prod(s)], floor)
            for name, off, s in core.layout()}


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_matches_finite_differences(case, n):
    core, rng = make(case)
    x, eps = data(core, rng, n)
    beta = 0.7
    (_, _, _), grad = core.loss_and_grad(x, beta, eps)
    fd = central_difference_grad(lambda: core.loss(x, beta, eps)[0], core.params, FD_STEP)
    errors = blocks(core, grad, fd)
    assert max(errors.values()) < FD_RTOL, {k: f"{v:.1e}" for k, v in errors.items() if v >= FD_RTOL}


@pytest.mark.parametrize("case", ["composed", "conv2d"])
def test_autoencoder_gradient_matches_finite_differences(case):
    core, rng = make(case, variational=False)
    x, _ = data(core, rng, 2)
    (_, _, kl), grad = core.loss_and_grad(x, 1.0, None)
    assert kl == 0
    fd = central_difference_grad(lambda: core.loss(x, 1.0, None)[0], core.params, FD_STEP)
    assert max(blocks(core, grad, fd).values()) < FD_RTOL


def test_the_gradient_check_catches_a_wrong_block():
    # the comparison must fail when one block is off: scale the first conv's dW by 1.001
    core, rng = make("composed")
    x, eps = data(core, rng, 2)
    (_, _, _), grad = core.loss_and_grad(x, 0.7, eps)
    fd = central_difference_grad(lambda: core.loss(x, 0.7, eps)[0], core.params, FD_STEP)
    name, off, shape = core.layout()[0]
    assert name == "enc.0.W" and shape == (3, 1, 4, 4)
    grad[off:off + math.prod(shape)] *= 1.001
    errors = blocks(core, grad, fd)
    assert errors["enc.0.W"] > 100 * FD_RTOL and max(v for k, v in errors.items() if k != "enc.0.W") < FD_RTOL


def test_learned_variance_is_the_gaussian_negative_log_likelihood():
    # recon_i = sum_j (x - xhat)^2 / (2 exp(lv_j)) + lv_j / 2 + log(2 pi) / 2, exactly -log N(x; xhat, exp(lv))
    core, rng = make("learned variance")
    x, eps = data(core, rng, 5)
    lv = dict((n, (o, s)) for n, o, s in core.layout())["dec.logvar"]
    off, (D,) = lv
    logvar = rng.uniform(-3, 1, D)
    core.params[off:off + D] = logvar
    z = core.reparameterize(*core.encode(x), eps)
    xhat = core.decode(z)
    nll = ((x - xhat) ** 2 / (2 * np.exp(logvar)) + logvar / 2 + 0.5 * math.log(2 * math.pi)).sum(1)
    # the same, as the log-density of a diagonal Gaussian
    var = np.exp(logvar)
    logpdf = -0.5 * (((x - xhat) ** 2) / var + np.log(2 * math.pi * var)).sum(1)
    loss, recon, kl = core.loss(x, 1.0, eps)
    assert abs(recon - nll.mean()) <= 1e-12 * abs(recon)
    assert abs(recon + logpdf.mean()) <= 1e-12 * abs(recon)
    assert core.layout()[-1][0] == "dec.logvar"   # placed after the decoder's parameters


def test_flatten_and_reshape_copy_nothing_and_keep_c_order():
    # an encoder of Flatten alone feeds x (C, H, W) flattened in C order to the heads: mu = x @ W + b
    core = _core.Model((2, 3, 4), 2, [(4,)], [(0, 24), (5, 2, 3, 4)], "gaussian", True, "float64", 0)
    rng = np.random.default_rng(1)
    core.params[:] = rng.standard_normal(core.num_params)
    x = rng.standard_normal((3, 2, 3, 4))
    W = core.params[:48].reshape(24, 2)
    b = core.params[48:50]
    mu, _ = core.encode(x.reshape(3, 24))
    assert np.allclose(mu, x.reshape(3, -1) @ W + b, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- the NumPy reference
# tests/reference.py's ReferenceStackVAE computes the same loss and gradient from the definitions in
# float64, with conv2d and conv_transpose2d written tap by tap (not im2col). Tolerances as in
# tests/test_gradients.py: 1e-10 relative in float64 (measured differences ~1e-15), 1e-4 in float32
# against the reference fed the float32 numbers (measured ~1e-6: float32 rounding alone).

@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("case", list(CASES))
def test_core_matches_the_numpy_reference(case, dtype, rtol):
    from reference import ReferenceStackVAE

    shape, K, enc, dec, lik = CASES[case]
    core = _core.Model(shape, K, enc, dec, lik, True, dtype, 0)
    rng = np.random.default_rng(3)
    core.params[:] = rng.uniform(-0.5, 0.5, core.num_params)
    x, eps = data(core, rng, 5)
    x, eps = x.astype(dtype), eps.astype(dtype)
    ref = ReferenceStackVAE(shape, K, enc, dec, lik)
    assert ref.names == [n for n, _, _ in core.layout()]
    assert [tuple(s) for s in ref.shapes] == [tuple(s) for _, _, s in core.layout()]
    (loss, recon, kl), grad = core.loss_and_grad(x, 0.7, eps)
    (rloss, rrecon, rkl), rgrad = ref.loss_and_grad(core.params.astype(np.float64), x.astype(np.float64),
                                                     eps.astype(np.float64), 0.7)
    for a, b in ((loss, rloss), (recon, rrecon), (kl, rkl)):
        assert abs(a - b) <= rtol * max(abs(a), abs(b))
    errors = blocks(core, grad.astype(np.float64), rgrad)
    assert max(errors.values()) < rtol, {k: f"{v:.1e}" for k, v in errors.items() if v >= rtol}
