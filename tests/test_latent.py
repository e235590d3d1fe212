"""vaecore.interpolate against the same path computed by hand in NumPy (float64).

Tolerance: the model decodes in its own dtype; float32 agrees with the
float64 reference to 1e-5 here (a 2-16-2 decoder on values of order 1),
float64 to 1e-12.
"""
import numpy as np
import pytest

import vaecore
from vaecore.latent import interpolate

TOL = {np.float32: 1e-5, np.float64: 1e-12}


class Linear:
    """A model that is only encode and decode: mu = x A, decode(z) = z B (float64)."""

    def __init__(self, d=3, k=2, seed=0):
        rng = np.random.default_rng(seed)
        self.A, self.B = rng.standard_normal((d, k)), rng.standard_normal((k, d))

    def encode(self, x):
        mu = np.asarray(x, dtype=np.float64) @ self.A
        return mu, np.zeros_like(mu)

    def decode(self, z):
        return np.asarray(z) @ self.B


def test_path_of_a_linear_model_by_hand():
    m = Linear()
    xa, xb = np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 0.0])
    path = interpolate(m, xa, xb, steps=5)
    assert path.shape == (5, 3)
    za, zb = xa @ m.A, xb @ m.A
    want = np.array([((1 - w) * za + w * zb) @ m.B for w in (0, 0.25, 0.5, 0.75, 1.0)])
    np.testing.assert_allclose(path, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vae_ends_are_reconstructions_and_batches_match_singles(dtype):
    X, _, _ = vaecore.datasets.two_spirals(n=50, seed=1)
    m = vaecore.VAE(2, 2, hidden=(16,), dtype=dtype, seed=0)
    xa, xb = X[:4].copy(), X[4:8].copy()
    before = (xa.copy(), xb.copy())
    paths = vaecore.interpolate(m, xa, xb, steps=7)
    assert paths.shape == (4, 7, 2) and paths.dtype == dtype
    np.testing.assert_array_equal(xa, before[0])  # inputs untouched
    np.testing.assert_array_equal(xb, before[1])
    tol = TOL[dtype]
    np.testing.assert_allclose(paths[:, 0], m.reconstruct(xa), atol=tol)
    np.testing.assert_allclose(paths[:, -1], m.reconstruct(xb), atol=tol)
    # the middle point decodes the midpoint of the two means
    mid = m.decode((m.encode(xa)[0].astype(np.float64) + m.encode(xb)[0]) / 2)
    np.testing.assert_allclose(paths[:, 3], mid, atol=tol)
    for i in range(4):  # row i of a batch is the single-example path of row i
        np.testing.assert_allclose(vaecore.interpolate(m, xa[i], xb[i], steps=7), paths[i], atol=tol)


def test_default_steps_and_ae():
    X, _, _ = vaecore.datasets.two_spirals(n=20, seed=2)
    path = vaecore.interpolate(vaecore.AE(2, 2, hidden=(8,)), X[0], X[1])
    assert path.shape == (10, 2)


@pytest.mark.parametrize(
    "a, b, kwargs, exc, match",
    [
        (np.zeros(3), np.zeros(3), dict(steps=1), ValueError, "steps must be >= 2"),
        (np.zeros(3), np.zeros(3), dict(steps=2.0), TypeError, "steps must be an int"),
        (np.zeros(3), np.zeros(3), dict(steps=True), TypeError, "steps must be an int"),
        (np.zeros(3), np.zeros((1, 3)), {}, ValueError, r"shapes \(3,\) and \(1, 3\)"),
        (np.zeros((2, 3)), np.zeros((3, 3)), {}, ValueError, "same for both"),
        (np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), {}, ValueError, r"\(D,\)"),
    ],
)
def test_validation(a, b, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        interpolate(Linear(), a, b, **kwargs)


def test_exported():
    assert vaecore.interpolate is interpolate and "interpolate" in vaecore.__all__
    assert interpolate.__doc__
