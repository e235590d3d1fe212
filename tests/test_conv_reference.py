"""Tests of the float64 convolution reference (tests/reference.py: conv2d_forward,
conv2d_backward, conv_transpose2d_forward, conv_transpose2d_backward) itself.

The reference is what vaecore's convolution kernels are to be judged against, so
it is checked here three independent ways: its backward against central finite
differences of its forward, its transposed convolution as the exact adjoint of its
convolution, and (where PyTorch is installed) both against torch.nn.functional and
autograd. Shapes are small and odd (non-square kernels, stride 3, padding larger
than the kernel, H != W, one channel) so that every index path is exercised.
"""
import numpy as np
import pytest

from reference import (
    central_difference_grad,
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    rel_error,
)

# (B, C, H, W, O, KH, KW, stride, padding)
GEOMETRIES = [
    (2, 3, 5, 7, 2, 2, 3, (1, 1), (0, 0)),   # non-square kernel, H != W
    (1, 1, 8, 6, 3, 3, 2, (3, 2), (2, 1)),   # stride 3, padding 2, one input channel
    (3, 2, 6, 5, 1, 1, 1, (2, 3), (0, 0)),   # stride larger than the kernel, one output channel
    (2, 2, 4, 4, 2, 4, 4, (2, 2), (1, 1)),   # the model's k4 s2 p1
]
CONV_GEOMETRIES = GEOMETRIES + [
    (1, 2, 3, 4, 2, 2, 2, (1, 2), (3, 2)),   # padding larger than the kernel
]
# a transposed convolution with such padding needs a stride large enough to leave an output
TRANSPOSED_GEOMETRIES = GEOMETRIES + [
    (1, 2, 3, 4, 2, 2, 2, (4, 3), (3, 2)),
]
CASES = [(g, False) for g in CONV_GEOMETRIES] + [(g, True) for g in TRANSPOSED_GEOMETRIES]
CASE_IDS = [f"{'conv_transpose2d' if t else 'conv2d'}-{i}" for i, (_, t) in enumerate(CASES)]

# central differences of a quadratic-free (bilinear) loss in float64 with h = 1e-5:
# truncation error is 0, rounding ~ eps * |loss| / h ~ 1e-10 relative; 1e-7 leaves room
FD_TOL = 1e-7
# two float64 computations of the same sums in different orders: ~1e-15; 1e-12 leaves room
EXACT_TOL = 1e-12


def _problem(rng, geom, transposed):
    B, C, H, W, O, KH, KW, stride, padding = geom
    x = rng.standard_normal((B, C, H, W))
    Wt = rng.standard_normal((C, O, KH, KW) if transposed else (O, C, KH, KW))
    b = rng.standard_normal(O)
    return x, Wt, b, stride, padding


@pytest.mark.parametrize("geom, transposed", CASES, ids=CASE_IDS)
def test_conv_backward_matches_finite_differences(geom, transposed):
    rng = np.random.default_rng(0)
    x, Wt, b, stride, padding = _problem(rng, geom, transposed)
    forward = conv_transpose2d_forward if transposed else conv2d_forward
    backward = conv_transpose2d_backward if transposed else conv2d_backward
    dout = rng.standard_normal(forward(x, Wt, b, stride, padding).shape)

    def loss():  # the fake loss (out * dout).sum(): every output element matters
        return float((forward(x, Wt, b, stride, padding) * dout).sum())

    dx, dW, db = backward(dout, x, Wt, stride, padding)
    assert dx.shape == x.shape and dW.shape == Wt.shape and db.shape == b.shape
    for name, got, buf in (("dx", dx, x), ("dW", dW, Wt), ("db", db, b)):
        want = central_difference_grad(loss, buf, 1e-5)
        assert rel_error(got, want) < FD_TOL, name


@pytest.mark.parametrize("geom", CONV_GEOMETRIES)
def test_conv_transpose_is_the_adjoint_of_conv(geom):
    """<conv2d(x, W), y> = <x, conv_transpose2d(y, W)> with no bias: the two are defined
    independently here, so this ties their index conventions to each other."""
    rng = np.random.default_rng(1)
    B, C, H, W, O, KH, KW, stride, padding = geom
    x = rng.standard_normal((B, C, H, W))
    Wt = rng.standard_normal((O, C, KH, KW))
    y = conv2d_forward(x, Wt, np.zeros(O), stride, padding)
    z = rng.standard_normal(y.shape)
    # conv_transpose2d of z (B, O, HO, WO) with W read as (O, C, KH, KW) gives (B, C, H', W'):
    # H' > H by rows conv2d's floor dropped, or H' < H when the stride skips the last rows;
    # pixels conv2d never reads get gradient 0
    back = conv_transpose2d_forward(z, Wt, np.zeros(C), stride, padding)
    adj = np.zeros(x.shape)
    h, w = min(H, back.shape[2]), min(W, back.shape[3])
    adj[:, :, :h, :w] = back[:, :, :h, :w]
    lhs, rhs = float((y * z).sum()), float((x * adj).sum())
    assert abs(lhs - rhs) <= EXACT_TOL * max(abs(lhs), 1.0)


@pytest.mark.parametrize("geom, transposed", CASES, ids=CASE_IDS)
def test_conv_matches_torch(geom, transposed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, Wt, b, stride, padding = _problem(rng, geom, transposed)
    forward = conv_transpose2d_forward if transposed else conv2d_forward
    backward = conv_transpose2d_backward if transposed else conv2d_backward
    tfun = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    out = forward(x, Wt, b, stride, padding)
    dout = rng.standard_normal(out.shape)
    tx, tW, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, Wt, b))
    ty = tfun(tx, tW, tb, stride, padding)
    ty.backward(torch.tensor(dout))
    assert out.shape == tuple(ty.shape)
    assert rel_error(out, ty.detach().numpy()) < EXACT_TOL
    for name, got, t in zip(("dx", "dW", "db"), backward(dout, x, Wt, stride, padding), (tx, tW, tb)):
        assert rel_error(got, t.grad.numpy()) < EXACT_TOL, name


def test_conv_reference_rejects_empty_outputs():
    x = np.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="larger than the padded image"):
        conv2d_forward(x, np.zeros((1, 1, 5, 5)), np.zeros(1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="would be empty"):
        conv_transpose2d_forward(x, np.zeros((1, 1, 2, 2)), np.zeros(1), (1, 1), (2, 2))
