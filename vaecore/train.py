"""The training loop: epochs of shuffled mini-batches, one C call per batch.

``fit`` is deliberately plain Python (nanoGPT's train loop is the model): shuffle,
slice, ``model.train_step``, record the epoch means, call the callbacks, show
progress, write a checkpoint. Everything numeric happens in the C core.

A checkpoint is an ordinary model file (``VAE.load`` reads it) that also holds
the optimizer, the model's noise generator, the shuffling generator, the epoch
and the history, so that an interrupted run resumed from it continues bitwise
as if it had never stopped.
"""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ._checks import SEED_MAX, check_int, check_real, check_seed
from .io import _atomic_savez, _checked_load
from .model import VAE
from .optim import Adam, Optimizer

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
        return lambda epoch: check_real(beta(epoch), f"beta({epoch})")
    value = check_real(beta, "beta")
    return lambda epoch: value


_HISTORY_KEYS = ("loss", "recon", "kl", "beta", "epoch_seconds")


class _HoldInterrupt:
    """Hold Ctrl-C back until the current training step is fully recorded.

    A step is one C call that updates the parameters and the optimizer state
    together, but ``opt.t`` is counted in Python after the call returns, and
    Python raises KeyboardInterrupt at the first bytecode after a C call, so an
    unguarded Ctrl-C would leave the parameters one step ahead of ``opt.t``.
    While training, SIGINT only sets a flag; :meth:`check` raises the
    KeyboardInterrupt between steps. Only in the main thread (the only one
    Python delivers signals to) and only over Python's default handler.
    """

    def __init__(self):
        self.pending = False
        self.previous = None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def check(self):
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _data_digest(X):
    return hashlib.sha256(np.ascontiguousarray(X).data).hexdigest()


def _save_checkpoint(path, model, optimizer, rng, epoch, rows, run, seconds):
    meta, arrays = model._state(optimizer)
    meta["fit"] = dict(run, epoch=epoch, seconds=seconds, shuffle_state=rng.bit_generator.state)
    for key in _HISTORY_KEYS:
        arrays["fit_" + key] = np.asarray(rows[key], dtype=np.float64)
    _atomic_savez(path, meta, arrays)


def _resume(path, model, optimizer, rng, run):
    """Restore model, optimizer, generators and history from a checkpoint of this run.

    Returns (epochs done, history rows, seconds, optimizer)."""
    meta, arrays = _checked_load(path)
    name = os.fspath(path)
    saved = meta.get("fit")
    if not isinstance(saved, dict) or "optimizer" not in meta:
        raise ValueError(f"checkpoint {name!r} is a model file but not a fit checkpoint")
    config = {k: v for k, v in model.config.items() if k != "seed"}
    saved_config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["config"].items() if k != "seed"}
    if meta.get("class") != type(model).__name__ or saved_config != config:
        raise ValueError(f"checkpoint {name!r} holds a {meta.get('class')} with {saved_config}, "
                         f"which is not this {type(model).__name__} with {config}")
    for key, what in (("n", "rows of X"), ("data_sha256", "data X"), ("batch_size", "batch_size"), ("seed", "seed")):
        if saved.get(key) != run[key]:
            raise ValueError(f"checkpoint {name!r} was written for other {what} ({saved.get(key)!r}, "
                             f"now {run[key]!r}); resume with the same data and arguments")
    kind = meta["optimizer"]["kind"]
    opt_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")}
    if optimizer is None:
        optimizer = Optimizer._from_saved(model, dict(meta["optimizer"]), opt_arrays)
    elif type(optimizer).__name__ != kind:
        raise ValueError(f"checkpoint {name!r} holds a {kind} optimizer, got {type(optimizer).__name__}")
    else:  # keep the caller's hyperparameters, restore the state
        for key, arr in opt_arrays.items():
            getattr(optimizer, key)[...] = arr
        optimizer.t = int(meta["optimizer"]["t"])
    model.params[...] = arrays["params"]
    model.rng_state = tuple(int(s) for s in meta["rng_state"])
    rng.bit_generator.state = saved["shuffle_state"]
    rows = {key: [float(v) for v in arrays["fit_" + key]] for key in _HISTORY_KEYS}
    return int(saved["epoch"]), rows, float(saved["seconds"]), optimizer


def fit(model, X, epochs=600, batch_size=64, optimizer=None, lr=1e-3, beta=1.0,
        seed=0, callbacks=(), progress=True, *, checkpoint=None, checkpoint_every=1, resume=False):
    """Train a model on X with shuffled mini-batches.

    Parameters
    ----------
    model : VAE or AE
    X : array_like, shape (n, input_dim)
        The training data (checked once, converted to the model's dtype).
    epochs : int, default 600
        The total number of epochs of the run (a resumed run counts the
        epochs done before it).
    batch_size : int, default 64
        The last batch of an epoch may be smaller.
    optimizer : Adam or SGD, optional
        None creates ``Adam(model, lr=lr)`` (or, when resuming, the
        checkpoint's optimizer).
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
    checkpoint : str or os.PathLike, optional
        A file to write a checkpoint to after every ``checkpoint_every``
        epochs and when training ends: the model, the optimizer, the model's
        noise generator, the shuffling generator, the epoch and the history.
        It is written atomically and is also a model file for ``VAE.load``.
    checkpoint_every : int, default 1
        Epochs between checkpoints.
    resume : bool, default False
        Continue from ``checkpoint`` if that file exists (else start afresh):
        its parameters, optimizer state (into ``optimizer`` if given, keeping
        that optimizer's hyperparameters), generators and history replace the
        model's, and training goes on at the next epoch, bitwise as if it had
        never stopped. The checkpoint must come from this model
        configuration, data, ``batch_size`` and ``seed``.

    Returns
    -------
    History
        The whole run's, a resumed run's included.

    Raises
    ------
    FloatingPointError
        If a step diverges (NaN or Inf); the model keeps its last good
        parameters and the message names the epoch and batch.
    KeyboardInterrupt
        Ctrl-C is held back until the current step is recorded, so the model
        and its optimizer are always at the same step; the checkpoint file
        keeps the last checkpointed epoch.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vaecore.VAE or vaecore.AE, got {type(model).__name__}")
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size")
    seed = check_seed(seed, high=SEED_MAX, allow_none=True)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be None, a str or an os.PathLike, got {type(checkpoint).__name__}")
    if resume is not True and resume is not False:
        raise TypeError(f"resume must be True or False, got {resume!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint= (the file to resume from)")
    X = model._x(X)
    model._bernoulli_check(X)
    if optimizer is not None and (not isinstance(optimizer, Optimizer) or optimizer.model is not model):
        raise ValueError("optimizer must be a vaecore optimizer created for this model")
    schedule = _beta_schedule(beta)
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {type(cb).__name__}")

    rng = np.random.default_rng(seed)
    n = X.shape[0]
    rows = {key: [] for key in _HISTORY_KEYS}
    done, seconds_before = 0, 0.0
    run = None
    if checkpoint is not None:
        run = dict(n=n, data_sha256=_data_digest(X), batch_size=batch_size, seed=seed)
        if resume and os.path.exists(checkpoint):
            done, rows, seconds_before, optimizer = _resume(checkpoint, model, optimizer, rng, run)
    if optimizer is None:
        optimizer = Adam(model, lr=lr)
    hist = History(optimizer=optimizer)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, initial=min(done, epochs), desc=f"fit {type(model).__name__}", unit="epoch",
                   leave=False)
    start = time.perf_counter()
    saved = done

    def save(epochs_done):
        _save_checkpoint(checkpoint, model, optimizer, rng, epochs_done, rows, run,
                         seconds_before + time.perf_counter() - start)

    try:
        with _HoldInterrupt() as interrupt:
            for epoch in range(done, epochs):
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
                    interrupt.check()
                sums /= n
                dt = time.perf_counter() - t0
                for key, value in zip(_HISTORY_KEYS, (*sums, b, dt)):
                    rows[key].append(value)
                if checkpoint is not None and (epoch + 1) % checkpoint_every == 0:
                    save(epoch + 1)
                    saved = epoch + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{sums[0]:.4g}", kl=f"{sums[2]:.3g}", refresh=False)
                stats = {"loss": sums[0], "recon": sums[1], "kl": sums[2], "beta": b, "seconds": dt}
                if any([cb(epoch, stats, model) is True for cb in callbacks]):
                    hist.stopped_early = True
                    break
                interrupt.check()
            if checkpoint is not None and saved != len(rows["loss"]):
                save(len(rows["loss"]))
            interrupt.check()
    finally:
        if bar is not None:
            bar.close()
        for key, values in rows.items():
            setattr(hist, key, np.asarray(values, dtype=np.float64))
        hist.seconds = seconds_before + time.perf_counter() - start
    return hist
