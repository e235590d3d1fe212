"""Disentanglement metrics for learned latent codes.

- :func:`mutual_information` -- the matrix of mutual informations between
  each (discretised) latent dimension and each discrete generative factor.
- :func:`mig` -- the Mutual Information Gap of Chen, Li, Grosse & Duvenaud
  (2018), "Isolating Sources of Disentanglement in Variational
  Autoencoders" (NeurIPS).

Chen et al. estimate I(z_j; v_k) from the encoder distribution q(z|x). Like
Locatello et al. (2019), "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations" (ICML), this module
instead uses a plug-in estimate: each latent dimension (typically the
posterior means) is discretised into equal-width bins and the mutual
information of the two discrete variables is computed from their empirical
joint histogram. All quantities are in nats.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mutual_information", "mig", "mode_coverage"]


def _check_inputs(latents, factors, n_bins):
    """Validate and convert the arguments shared by both public functions."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
        raise TypeError(f"n_bins must be an int, got {type(n_bins).__name__} ({n_bins!r})")
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    if n_bins > 2**52:  # bin indices are computed in float64, exact up to 2**53
        raise ValueError(f"n_bins must be <= 2**52, got {n_bins}")

    latents = np.asarray(latents)
    factors = np.asarray(factors)
    # (np.bool_ is not a subtype of np.integer, so booleans are rejected too)
    if not (np.issubdtype(latents.dtype, np.floating) or np.issubdtype(latents.dtype, np.integer)):
        raise TypeError(f"latents must be an array of real numbers, got dtype {latents.dtype}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise TypeError(
            f"factors must be an array of integer factor indices, got dtype {factors.dtype} "
            "(convert class labels with np.unique(..., return_inverse=True))"
        )
    if latents.ndim != 2:
        raise ValueError(
            f"latents must be 2-D of shape (n, latent_dim), got shape {latents.shape} "
            "(use latents.reshape(-1, 1) for a single dimension)"
        )
    if factors.ndim != 2:
        raise ValueError(
            f"factors must be 2-D of shape (n, n_factors), got shape {factors.shape} "
            "(use factors.reshape(-1, 1) for a single factor)"
        )
    if latents.shape[0] != factors.shape[0]:
        raise ValueError(
            f"latents and factors must have the same number of rows, got {latents.shape[0]} and {factors.shape[0]}"
        )
    if latents.shape[0] < 1:
        raise ValueError("latents and factors must have at least one row, got 0")
    if latents.shape[1] < 1:
        raise ValueError(f"latents must have at least one column, got shape {latents.shape}")
    if factors.shape[1] < 1:
        raise ValueError(f"factors must have at least one column, got shape {factors.shape}")
    latents = latents.astype(np.float64)
    if not np.all(np.isfinite(latents)):
        raise ValueError("latents must be finite, got NaN or infinity")
    return latents, factors


def _discretise(latents, n_bins):
    """Equal-width bin index of every entry, per column; (n, L) int64 in [0, n_bins)."""
    lo = latents.min(axis=0)  # (L,)
    width = latents.max(axis=0) - lo  # (L,)
    safe = np.where(width > 0, width, 1.0)  # a constant column lands in bin 0
    idx = np.floor((latents - lo) / safe * n_bins).astype(np.int64)
    return np.clip(idx, 0, n_bins - 1)  # the maximum belongs to the last bin


def _codes(column):
    """Map the values of one discrete column to 0..m-1; returns (codes, m)."""
    values, codes = np.unique(column, return_inverse=True)
    return codes.reshape(-1), len(values)


def _mi_discrete(a, na, b, nb):
    """Plug-in mutual information (nats) of two code vectors with na, nb values."""
    n = len(a)
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / n  # p(a, b)
    pa = joint.sum(axis=1, keepdims=True)  # p(a)
    pb = joint.sum(axis=0, keepdims=True)  # p(b)
    nz = joint > 0
    # I = sum p(a, b) log(p(a, b) / (p(a) p(b))) over the non-empty cells
    mi = np.sum(joint[nz] * np.log(joint[nz] / (pa @ pb)[nz]))
    return max(float(mi), 0.0)  # clip round-off below zero


def _entropy(codes, m):
    """Plug-in entropy (nats) of a code vector with m values."""
    p = np.bincount(codes, minlength=m) / len(codes)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def mutual_information(latents, factors, n_bins=20):
    """Mutual information between every latent dimension and every factor.

    Each latent dimension is discretised into ``n_bins`` equal-width bins
    spanning its observed range (a constant dimension falls in a single bin
    and has zero mutual information with everything); factors are treated
    as discrete variables with the values they take. The mutual information
    is the plug-in estimate from the empirical joint histogram, in nats.

    Parameters
    ----------
    latents : array_like of real numbers, shape (n, latent_dim)
        One latent code per row, e.g. the encoder means.
    factors : array_like of integers, shape (n, n_factors)
        The true generative factor indices of each row.
    n_bins : int, default 20
        Number of equal-width bins per latent dimension, >= 2.

    Returns
    -------
    ndarray of float64, shape (latent_dim, n_factors)
        ``I[j, k]`` is the mutual information (nats) between latent dimension
        ``j`` and factor ``k``; it is >= 0 and at most the entropy of
        factor ``k``.

    Raises
    ------
    TypeError
        If ``latents`` is not real, ``factors`` is not integer, or ``n_bins``
        is not an int.
    ValueError
        If the arrays are not 2-D, differ in length, are empty, hold NaN or
        infinity, or ``n_bins < 2``.
    """
    latents, factors = _check_inputs(latents, factors, n_bins)
    bins = _discretise(latents, n_bins)  # (n, L)
    factor_codes = [_codes(factors[:, k]) for k in range(factors.shape[1])]
    out = np.zeros((latents.shape[1], factors.shape[1]))  # (L, F)
    for j in range(latents.shape[1]):
        zj, nz = _codes(bins[:, j])
        for k, (vk, nv) in enumerate(factor_codes):
            out[j, k] = _mi_discrete(zj, nz, vk, nv)
    return out


def mig(latents, factors, n_bins=20):
    """Mutual Information Gap (Chen et al. 2018), a disentanglement score.

    For each factor ``v_k``, the latent dimensions are ranked by their mutual
    information with it (see :func:`mutual_information`), and the gap between
    the largest and the second-largest mutual information is divided by the
    factor's entropy ``H(v_k)``; MIG is the mean of these normalised gaps over
    the factors. A score near 1 means each factor is captured by exactly one
    latent dimension; near 0 means factors are not captured, or are spread
    over several dimensions.

    Conventions:

    - With a single latent dimension there is no second-largest value, so the
      gap of a factor is its mutual information with that dimension.
    - A factor that is constant over the given rows has zero entropy and
      nothing to capture; it is left out of the average. If every factor is
      constant, MIG is undefined and a ValueError is raised.

    Because discretised mutual information never exceeds the factor's
    entropy, every normalised gap lies in [0, 1] and so does the result
    (clipped against round-off). The plug-in estimate is biased upwards by
    roughly ``(n_bins - 1) (m - 1) / (2 n)`` nats for a factor with ``m``
    values and ``n`` rows, so use thousands of rows.

    Parameters
    ----------
    latents : array_like of real numbers, shape (n, latent_dim)
        One latent code per row, e.g. the encoder means.
    factors : array_like of integers, shape (n, n_factors)
        The true generative factor indices of each row.
    n_bins : int, default 20
        Number of equal-width bins per latent dimension, >= 2.

    Returns
    -------
    float
        The Mutual Information Gap, in [0, 1].

    Raises
    ------
    TypeError, ValueError
        As :func:`mutual_information`; also ValueError if every factor is
        constant.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> v = rng.integers(0, 4, size=(2000, 2))
    >>> round(mig(v.astype(float), v), 2) > 0.95
    True
    """
    mi = mutual_information(latents, factors, n_bins)  # (L, F), also validates
    factors = np.asarray(factors)
    gaps = []
    for k in range(factors.shape[1]):
        h = _entropy(*_codes(factors[:, k]))
        if h <= 0.0:
            continue  # a constant factor: skipped, see the docstring
        ranked = np.sort(mi[:, k])[::-1]
        gap = ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0]
        gaps.append(gap / h)
    if not gaps:
        raise ValueError(
            f"factors: every one of the {factors.shape[1]} factors is constant over the {factors.shape[0]} rows, "
            "so MIG is undefined; expected at least one factor taking two or more values"
        )
    return float(np.clip(np.mean(gaps), 0.0, 1.0))


def mode_coverage(samples, modes=8, radius=2.0, std=0.02, n_std=3.0, min_share=0.01):
    """How many modes of a ring of Gaussians the samples cover, and how many samples are good.

    The measures of mode collapse on :func:`vaecore.datasets.ring_of_gaussians`
    (Metz et al. 2017; Srivastava et al. 2017, "VEEGAN"): a sample is of
    *high quality* when it lies within ``n_std`` standard deviations of the
    nearest mode's mean, and a mode is *covered* when at least ``min_share``
    of all samples are high-quality samples at that mode (at least one).

    Parameters
    ----------
    samples : array_like, shape (n, 2)
    modes, radius, std : as for ``ring_of_gaussians``
    n_std : float, default 3.0
    min_share : float, default 0.01

    Returns
    -------
    dict
        ``modes_covered`` (int, of ``modes``), ``high_quality`` (float, the
        share of high-quality samples) and ``per_mode`` (ndarray of int64,
        shape (modes,): the high-quality samples at each mode).
    """
    S = np.asarray(samples, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] != 2 or S.shape[0] < 1:
        raise ValueError(f"samples must have shape (n, 2) with n >= 1, got {S.shape}")
    if not np.isfinite(S).all():
        raise ValueError("samples must be finite")
    if isinstance(modes, bool) or not isinstance(modes, (int, np.integer)) or modes < 1:
        raise ValueError(f"modes must be an int >= 1, got {modes!r}")
    angle = 2.0 * np.pi * np.arange(modes) / modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)          # (modes, 2)
    dist = np.linalg.norm(S[:, None, :] - centres[None, :, :], axis=2)           # (n, modes)
    nearest = dist.argmin(axis=1)
    good = dist[np.arange(len(S)), nearest] <= n_std * std
    per_mode = np.bincount(nearest[good], minlength=modes).astype(np.int64)
    need = max(1, int(np.ceil(min_share * len(S))))
    return {"modes_covered": int((per_mode >= need).sum()), "high_quality": float(good.mean()),
            "per_mode": per_mode}
