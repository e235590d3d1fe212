"""Walks in latent space, built on a model's ``encode`` and ``decode`` alone.

- :func:`interpolate` -- decode the straight line between the latent means
  of two examples (Kingma & Welling 2014 show such paths for faces and
  digits; Bowman et al. 2016 "Generating sentences from a continuous space"
  made "homotopies" between encodings a standard check that the latent
  space is smooth).

Any object with ``encode(x) -> (mu, logvar)`` and ``decode(z) -> x`` works,
so a :class:`vaecore.VAE` and a :class:`vaecore.AE` alike.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_int

__all__ = ["interpolate"]


def interpolate(model, x_a, x_b, steps=10):
    """Decode evenly spaced points on the line between the latent means of x_a and x_b.

    ``z_i = (1 - w_i) mu(x_a) + w_i mu(x_b)`` for ``w = linspace(0, 1,
    steps)``, both ends included, then ``decode(z_i)``: the first point is
    the reconstruction of x_a, the last that of x_b.

    Parameters
    ----------
    model : VAE or AE
        Anything with ``encode(x) -> (mu, logvar)`` and ``decode(z)``.
    x_a, x_b : array_like, shape (D,) or (n, D); for an image model also (C, H, W) or (n, C, H, W)
        Start and end: one example each, or two batches of n examples
        (row i of x_a is joined to row i of x_b). Same shape.
    steps : int, default 10
        Points on each path, >= 2.

    Returns
    -------
    ndarray, shape (steps, *input_shape) for single examples, (n, steps, *input_shape) for batches
        The decoded points, in the model's dtype.

    Raises
    ------
    TypeError
        If steps is not an int.
    ValueError
        If steps < 2, or x_a and x_b are not both 1-D or both 2-D of the
        same shape.

    Examples
    --------
    >>> import vaecore
    >>> X, t, arm = vaecore.datasets.two_spirals(n=200)
    >>> m = vaecore.VAE(2, 2, hidden=(16,))
    >>> vaecore.interpolate(m, X[0], X[1], steps=5).shape
    (5, 2)
    >>> vaecore.interpolate(m, X[:3], X[3:6], steps=5).shape
    (3, 5, 2)
    """
    steps = check_int(steps, "steps", low=2)   # the path includes both ends
    a, b = np.asarray(x_a), np.asarray(x_b)
    example = tuple(getattr(model, "input_shape", ())) or a.shape[-1:]   # (D,) or (C, H, W)
    single = a.ndim in (1, len(example)) and a.shape in (example, (int(np.prod(example)),))
    if not single and not (a.ndim == 2 or (a.ndim == len(example) + 1 and a.shape[1:] == example)):
        single = None
    if single is None or a.shape != b.shape:
        raise ValueError(
            "x_a and x_b must both have shape (D,) (one example each) or (n, D) (a batch each), "
            f"or an image model's (C, H, W) and (n, C, H, W), the same for both, got shapes {a.shape} and {b.shape}"
        )
    if single:
        a, b = a.reshape(1, -1), b.reshape(1, -1)  # (1, D)
    n = a.shape[0]
    mu_a = model.encode(a)[0]  # (n, K)
    mu_b = model.encode(b)[0]  # (n, K)
    w = np.linspace(0.0, 1.0, int(steps)).astype(mu_a.dtype)[None, :, None]  # (1, steps, 1)
    z = (1 - w) * mu_a[:, None, :] + w * mu_b[:, None, :]  # (n, steps, K)
    x = model.decode(z.reshape(n * steps, -1))  # (n * steps, *input_shape)
    x = x.reshape(n, steps, *x.shape[1:])  # (n, steps, *input_shape)
    return x[0] if single else x
