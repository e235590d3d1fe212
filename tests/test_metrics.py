"""Tests for vaecore.metrics: MIG and the mutual-information matrix.

The reference below computes the same plug-in estimate another way
(bin edges from np.histogram_bin_edges, I = H(a) + H(b) - H(a, b)), so
agreement to 1e-10 checks the arithmetic; the known cases (MIG ~1, ~0, a
zero gap) check the meaning.
"""

import numpy as np
import pytest

from vaecore import metrics

N = 5000


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return -np.sum(p * np.log(p))


def _reference_mi(latents, factors, n_bins):
    """I(z_j; v_k) as H(z_j) + H(v_k) - H(z_j, v_k), with np.digitize bins."""
    out = np.zeros((latents.shape[1], factors.shape[1]))
    for j in range(latents.shape[1]):
        edges = np.histogram_bin_edges(latents[:, j], bins=n_bins)
        zb = np.digitize(latents[:, j], edges[1:-1])  # 0 .. n_bins-1, max in the last bin
        for k in range(factors.shape[1]):
            _, v = np.unique(factors[:, k], return_inverse=True)
            joint = np.zeros((n_bins, v.max() + 1))
            np.add.at(joint, (zb, v), 1)
            out[j, k] = _entropy(joint.sum(1)) + _entropy(joint.sum(0)) - _entropy(joint.ravel())
    return out


@pytest.fixture
def factors():
    return np.random.default_rng(0).integers(0, 5, size=(N, 3))  # (N, 3) independent, 5 values each


def test_mutual_information_matches_reference(factors):
    rng = np.random.default_rng(1)
    latents = np.column_stack(
        [factors[:, 0] + 0.3 * rng.standard_normal(N), rng.standard_normal(N), np.sin(factors[:, 2]) + rng.random(N)]
    )
    for n_bins in (2, 7, 20):
        mi = metrics.mutual_information(latents, factors, n_bins=n_bins)
        assert mi.shape == (3, 3) and mi.dtype == np.float64
        np.testing.assert_allclose(mi, _reference_mi(latents, factors, n_bins), rtol=0, atol=1e-10)


def test_mutual_information_bounds(factors):
    latents = np.random.default_rng(2).standard_normal((N, 4))
    latents[:, 1] = factors[:, 1]
    mi = metrics.mutual_information(latents, factors)
    entropies = np.array([_entropy(np.bincount(factors[:, k])) for k in range(3)])
    assert np.all(mi >= 0)
    assert np.all(mi <= entropies[None, :] + 1e-12)
    # a latent equal to a factor carries all of its entropy
    np.testing.assert_allclose(mi[1, 1], entropies[1], atol=1e-12)


def test_mig_latents_equal_factors(factors):
    score = metrics.mig(factors.astype(np.float64), factors)
    assert isinstance(score, float)
    assert 0.97 < score <= 1.0


def test_mig_independent_noise(factors):
    latents = np.random.default_rng(3).standard_normal((N, 3))
    assert 0.0 <= metrics.mig(latents, factors) < 0.03


def test_mig_two_latents_copy_one_factor(factors):
    one = factors[:, :1]
    latents = np.column_stack([one, one]).astype(np.float64)
    # the two largest MIs are equal, so the gap is 0
    assert metrics.mig(latents, one) == pytest.approx(0.0, abs=1e-12)
    # factor 0 copied twice (gap 0), factor 1 once (gap ~1), factor 2 not at all (gap ~0)
    latents = np.column_stack([factors[:, 0], factors[:, 0], factors[:, 1]]).astype(np.float64)
    assert metrics.mig(latents, factors) == pytest.approx(1 / 3, abs=0.02)


def test_mig_single_latent_gap_is_the_mi_itself(factors):
    latents = factors[:, :1].astype(np.float64)  # (N, 1)
    mi = metrics.mutual_information(latents, factors)
    entropies = np.array([_entropy(np.bincount(factors[:, k])) for k in range(3)])
    expected = np.mean(mi[0] / entropies)
    assert metrics.mig(latents, factors) == pytest.approx(expected, abs=1e-12)
    assert metrics.mig(latents, factors[:, :1]) == pytest.approx(1.0, abs=1e-12)


def test_mig_skips_constant_factors(factors):
    latents = factors.astype(np.float64) + 0.1 * np.random.default_rng(4).standard_normal((N, 3))
    with_constant = np.column_stack([factors, np.full(N, 7)])
    assert metrics.mig(latents, with_constant) == pytest.approx(metrics.mig(latents, factors), abs=1e-12)
    with pytest.raises(ValueError, match="constant"):
        metrics.mig(latents, np.zeros((N, 2), dtype=np.int64))


def test_mig_invariances(factors):
    rng = np.random.default_rng(5)
    latents = factors.astype(np.float64) + 0.4 * rng.standard_normal((N, 3))
    base = metrics.mig(latents, factors)
    assert 0.0 <= base <= 1.0
    # permuting latent dimensions or factors, and relabelling factor values
    assert metrics.mig(latents[:, [2, 0, 1]], factors) == pytest.approx(base, abs=1e-12)
    assert metrics.mig(latents, factors[:, [1, 2, 0]]) == pytest.approx(base, abs=1e-12)
    assert metrics.mig(latents, 10 * factors - 3) == pytest.approx(base, abs=1e-12)
    # integer latents, float32 latents and int32 factors are accepted
    assert metrics.mig(factors, factors.astype(np.int32)) == pytest.approx(
        metrics.mig(factors.astype(np.float32), factors), abs=1e-12
    )
    # an extra constant latent dimension changes nothing (zero MI with everything)
    padded = np.column_stack([latents, np.ones(N)])
    assert metrics.mig(padded, factors) == pytest.approx(base, abs=1e-12)


def test_inputs_not_modified(factors):
    latents = np.random.default_rng(6).standard_normal((N, 3))
    latents_copy, factors_copy = latents.copy(), factors.copy()
    metrics.mig(latents, factors)
    metrics.mutual_information(latents, factors)
    np.testing.assert_array_equal(latents, latents_copy)
    np.testing.assert_array_equal(factors, factors_copy)


@pytest.mark.parametrize(
    "latents, factors, kwargs, exc, match",
    [
        (np.zeros(10), np.zeros((10, 1), int), {}, ValueError, "latents must be 2-D"),
        (np.zeros((10, 2)), np.zeros(10, int), {}, ValueError, "factors must be 2-D"),
        (np.zeros((10, 2)), np.zeros((9, 1), int), {}, ValueError, "same number of rows"),
        (np.zeros((0, 2)), np.zeros((0, 1), int), {}, ValueError, "at least one row"),
        (np.zeros((10, 0)), np.zeros((10, 1), int), {}, ValueError, "at least one column"),
        (np.zeros((10, 2)), np.zeros((10, 0), int), {}, ValueError, "at least one column"),
        (np.zeros((10, 2)), np.zeros((10, 1)), {}, TypeError, "factors must be an array of integer"),
        (np.zeros((10, 2), bool), np.zeros((10, 1), int), {}, TypeError, "latents must be an array of real"),
        (np.array([["a", "b"]]), np.zeros((1, 1), int), {}, TypeError, "latents"),
        (np.full((10, 2), np.nan), np.zeros((10, 1), int), {}, ValueError, "finite"),
        (np.zeros((10, 2)), np.zeros((10, 1), int), {"n_bins": 1}, ValueError, "n_bins must be >= 2"),
        (np.zeros((10, 2)), np.zeros((10, 1), int), {"n_bins": 2.0}, TypeError, "n_bins must be an int"),
    ],
)
@pytest.mark.parametrize("func", [metrics.mig, metrics.mutual_information])
def test_validation(func, latents, factors, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        func(latents, factors, **kwargs)


def test_docstrings():
    assert "Chen" in metrics.__doc__
    for name in metrics.__all__:
        assert getattr(metrics, name).__doc__, name
