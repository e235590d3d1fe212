"""The training loop: epochs of shuffled mini-batches, one C call per batch.

``fit`` is deliberately plain Python (nanoGPT's train loop is the model): shuffle,
slice, ``model.train_step``, record the epoch means, call the callbacks, show
progress. Everything numeric happens in the C core.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .model import VAE, Adam, Optimizer, _check_int, _check_real, _check_seed

__all__ = ["fit", "History"]


@dataclass
class History:
    """What :func:`fit` records, one entry per finished epoch.

    Attributes
    ----------
    loss, recon, kl : ndarray of float64, shape (epochs,)
        Epoch means of the batch statistics (weighted by batch size).
    beta : ndarray of float64, shape (epochs,)
        The beta used in each epoch.
    seconds : float
        Wall-clock time of the whole run.
    epoch_seconds : ndarray of float64, shape (epochs,)
        Wall-clock time of each epoch.
    optimizer : Optimizer
        The optimizer that was used (pass it to a later ``fit`` to continue).
    stopped_early : bool
        True when a callback asked to stop.
    """

    loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    recon: np.ndarray = field(default_factory=lambda: np.empty(0))
    kl: np.ndarray = field(default_factory=lambda: np.empty(0))
    beta: np.ndarray = field(default_factory=lambda: np.empty(0))
    seconds: float = 0.0
    epoch_seconds: np.ndarray = field(default_factory=lambda: np.empty(0))
    optimizer: Optimizer | None = None
    stopped_early: bool = False

    def __len__(self):
        return len(self.loss)

    def __repr__(self):
        if not len(self):
            return "History(epochs=0)"
        return (f"History(epochs={len(self)}, loss={self.loss[-1]:.4g}, recon={self.recon[-1]:.4g}, "
                f"kl={self.kl[-1]:.4g}, seconds={self.seconds:.2f})")


def _beta_schedule(beta):
    if callable(beta):
        return lambda epoch: _check_real(beta(epoch), f"beta({epoch})")
    value = _check_real(beta, "beta")
    return lambda epoch: value


def fit(model, X, epochs=600, batch_size=64, optimizer=None, lr=1e-3, beta=1.0,
        seed=0, callbacks=(), progress=True):
    """Train a model on X with shuffled mini-batches.

    Parameters
    ----------
    model : VAE or AE
    X : array_like, shape (n, input_dim)
        The training data (checked once, converted to the model's dtype).
    epochs : int, default 600
    batch_size : int, default 64
        The last batch of an epoch may be smaller.
    optimizer : Adam or SGD, optional
        None creates ``Adam(model, lr=lr)``.
    lr : float, default 1e-3
        Used only when ``optimizer`` is None.
    beta : float or callable, default 1.0
        Weight of the KL term, or a function of the 0-based epoch index
        returning it (KL warm-up: ``lambda e: min(1.0, e / 100)``).
    seed : int, default 0
        Seeds the shuffling (the noise comes from the model's own generator).
    callbacks : sequence of callables
        Each is called after every epoch as ``cb(epoch, stats, model)`` with
        the 0-based epoch index and a dict of the epoch's loss, recon, kl,
        beta and seconds. A callback that returns True stops training.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    History

    Raises
    ------
    FloatingPointError
        If a step diverges (NaN or Inf); the model keeps its last good
        parameters and the message names the epoch and batch.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vaecore.VAE or vaecore.AE, got {type(model).__name__}")
    epochs = _check_int(epochs, "epochs", low=0)
    batch_size = _check_int(batch_size, "batch_size")
    seed = _check_seed(seed)
    X = model._x(X)
    model._bernoulli_check(X)
    if optimizer is None:
        optimizer = Adam(model, lr=lr)
    elif not isinstance(optimizer, Optimizer) or optimizer.model is not model:
        raise ValueError("optimizer must be a vaecore optimizer created for this model")
    schedule = _beta_schedule(beta)
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {type(cb).__name__}")

    rng = np.random.default_rng(seed)
    n = X.shape[0]
    rows = {k: [] for k in ("loss", "recon", "kl", "beta", "epoch_seconds")}
    hist = History(optimizer=optimizer)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, desc=f"fit {type(model).__name__}", unit="epoch", leave=False)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            b = schedule(epoch)
            Xp = X[rng.permutation(n)]        # one shuffled copy; batches are contiguous views
            sums = np.zeros(3)
            for i in range(0, n, batch_size):
                xb = Xp[i:i + batch_size]
                try:
                    s = model.train_step(xb, optimizer, beta=b)
                except FloatingPointError as e:
                    raise FloatingPointError(f"epoch {epoch}, batch {i // batch_size}: {e}") from None
                sums += xb.shape[0] * np.array((s["loss"], s["recon"], s["kl"]))
            sums /= n
            dt = time.perf_counter() - t0
            for key, value in zip(("loss", "recon", "kl", "beta", "epoch_seconds"), (*sums, b, dt)):
                rows[key].append(value)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums[0]:.4g}", kl=f"{sums[2]:.3g}", refresh=False)
            stats = {"loss": sums[0], "recon": sums[1], "kl": sums[2], "beta": b, "seconds": dt}
            if any([cb(epoch, stats, model) is True for cb in callbacks]):
                hist.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
        for key, values in rows.items():
            setattr(hist, key, np.asarray(values, dtype=np.float64))
        hist.seconds = time.perf_counter() - start
    return hist
