"""The training loop: epochs of shuffled mini-batches, one C call per batch.

``fit`` is deliberately plain Python (nanoGPT's train loop is the model): shuffle,
slice, ``model.train_step``, record the epoch means, call the callbacks, show
progress, write a checkpoint. Everything numeric happens in the C core.

After each epoch ``fit`` also counts the active latent units (Burda et al.
2016, "Importance Weighted Autoencoders": a unit is active when the variance
over the data of its posterior mean, Cov_x(E_q[z_k]), exceeds 0.01), records
the KL of each latent dimension, and evaluates optional validation data with
noise fixed once for the whole run. When no unit is active at the end of a run
(posterior collapse) it says so with a warning. :class:`EarlyStopping` is a
ready callback that stops on a validation loss that stopped improving.

A checkpoint is an ordinary model file (``VAE.load`` reads it) that also holds
the optimizer, the model's noise generator, the shuffling generator, the epoch
and the history, so that an interrupted run resumed from it continues bitwise
as if it had never stopped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._checks import SEED_MAX, check_callbacks, check_int, check_real, check_seed
from .io import _atomic_savez, _checked_load
from .model import VAE
from .optim import Adam, Optimizer

__all__ = ["fit", "History", "EarlyStopping"]

ACTIVE_THRESHOLD = 0.01   # Burda et al. 2016: unit k is active when Cov_x(E_q[z_k]) > 0.01
PROBE_ROWS = 2000         # the active units and the KL per dimension are measured on at most this many rows


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
    lr : ndarray of float64, shape (epochs,)
        The optimizer's learning rate in each epoch (``fit``'s ``lr`` may be a schedule).
    active_units : ndarray of int64, shape (epochs,)
        The number of active latent units after each epoch (Burda et al.
        2016): dimensions k whose posterior mean varies over the data,
        Var_x(mu_k(x)) > 0.01, measured on the training data (at most 2000
        evenly spaced rows of it). For an AE, the dimensions of its codes
        that vary so. -1 for epochs of a checkpoint written before vaecore
        recorded it. 0 at the end of a run means posterior collapse.
    kl_per_dim : ndarray of float64, shape (epochs, latent_dim)
        The KL term of each latent dimension after each epoch, the mean over
        the same rows (nats; a collapsed dimension has ~0). Zeros for an AE,
        which has no KL; NaN rows for epochs of an older checkpoint.
    val_loss, val_recon, val_kl : ndarray of float64, shape (epochs,) or (0,)
        With ``fit(..., validation_data=X_val)``: the loss (with the epoch's
        beta), reconstruction and KL terms on X_val after each epoch, with the
        same noise in every epoch. Empty without validation data.
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
    lr: np.ndarray = field(default_factory=lambda: np.empty(0))
    active_units: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    kl_per_dim: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    val_loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_recon: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_kl: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __len__(self):
        return len(self.loss)

    def __repr__(self):
        if not len(self):
            return "History(epochs=0)"
        val = f", val_loss={self.val_loss[-1]:.4g}" if len(self.val_loss) else ""
        active = f", active_units={self.active_units[-1]}" if len(self.active_units) else ""
        return (f"History(epochs={len(self)}, loss={self.loss[-1]:.4g}, recon={self.recon[-1]:.4g}, "
                f"kl={self.kl[-1]:.4g}{val}{active}, seconds={self.seconds:.2f})")


def _schedule(value, name):
    """A function of the epoch giving the checked value of a constant or of a schedule (beta, lr)."""
    if callable(value):
        return lambda epoch: check_real(value(epoch), f"{name}({epoch})")
    value = check_real(value, name)
    return lambda epoch: value


_HISTORY_KEYS = ("loss", "recon", "kl", "beta", "epoch_seconds")   # in every checkpoint
_VAL_KEYS = ("val_loss", "val_recon", "val_kl")                      # with validation data only
_COLLAPSE_CURES = ("a lower beta, a KL warm-up (beta=lambda e: min(1.0, e / 100)), likelihood='gaussian_learned', "
                   "or data rescaled to unit variance")


def _probe_rows(n):
    """The PROBE_ROWS evenly spaced rows of n > PROBE_ROWS on which the latent units are measured."""
    return np.linspace(0, n - 1, PROBE_ROWS).round().astype(np.intp)


def _latent_stats(model, Xp):
    """(active units, KL per dimension (K,)) of the model on the rows Xp; the model's generator is not used."""
    mu, logvar = model._core.encode(Xp)                       # (m, K), (m, K) or None for an AE
    mu = mu.astype(np.float64)
    active = int((mu.var(axis=0) > ACTIVE_THRESHOLD).sum()) if len(mu) > 1 else 0
    if logvar is None:
        return active, np.zeros(mu.shape[1])
    lv = logvar.astype(np.float64)
    return active, (-0.5 * (1 + lv - mu ** 2 - np.exp(lv))).mean(axis=0)   # (K,)


def _as_data(model, value, name):
    """The validation data as the model's (n, D) array, errors naming ``name``."""
    try:
        x = model._x(value)
        model._bernoulli_check(x)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from None
    return x


class EarlyStopping:
    """A callback for :func:`fit` that stops training when a monitored value stops improving.

    Pass it in ``callbacks`` with ``validation_data``:
    ``fit(m, X, validation_data=X_val, callbacks=[vaecore.EarlyStopping(patience=20)])``.
    :func:`fit_vq` and :meth:`AutoregressivePrior.fit` take it the same way.

    Parameters
    ----------
    patience : int
        Epochs without improvement after which training stops.
    min_delta : float, default 0.0
        An epoch improves when its value is below the best so far minus this.
    monitor : str, default "val_loss"
        The key of the epoch statistics to watch (lower is better): "val_loss",
        "val_recon", "val_kl" (with validation data), "loss", "recon", "kl";
        for :func:`fit_vq` also its other terms ("val_commitment", ...); for
        :meth:`AutoregressivePrior.fit` "val_loss" and "loss" (the NLL).
    restore_best : bool, default True
        When it stops training, put back the parameters of the best epoch (a
        copy is kept at each improvement). The optimizer's state and the
        model's noise generator stay those of the last epoch. A run that ends
        by exhausting its epochs keeps its last parameters; call
        :meth:`restore` for the best ones.

    Attributes
    ----------
    best : float
        The best value seen (inf before the first epoch).
    best_epoch : int or None
        Its 0-based epoch.
    best_params : ndarray or None
        A copy of the parameters at ``best_epoch`` (``restore_best`` only).
    stopped_epoch : int or None
        The epoch after which it stopped training.

    Notes
    -----
    One instance follows one run: create a new one for each ``fit`` (its
    state is not part of ``fit``'s checkpoints).
    """

    def __init__(self, patience, min_delta=0.0, monitor="val_loss", restore_best=True):
        self.patience = check_int(patience, "patience")
        self.min_delta = check_real(min_delta, "min_delta")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str (a key of fit's epoch statistics, e.g. 'val_loss'), "
                            f"got {type(monitor).__name__} {monitor!r}")
        if restore_best is not True and restore_best is not False:
            raise TypeError(f"restore_best must be True or False, got {restore_best!r}")
        self.monitor = monitor
        self.restore_best = restore_best
        self.best = math.inf
        self.best_epoch = None
        self.best_params = None
        self.stopped_epoch = None
        self._wait = 0

    def __call__(self, epoch, stats, model):
        """Record the epoch's value; return True (stop) after ``patience`` epochs without improvement."""
        if self.monitor not in stats:
            hint = " (fit records val_* only with validation_data=)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the epoch statistics do not "
                             f"hold{hint}; they hold {sorted(stats)}")
        value = float(stats[self.monitor])
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best:
                self.best_params = np.array(model.params)
            return False
        self._wait += 1
        if self._wait < self.patience:
            return False
        self.stopped_epoch = epoch
        if self.restore_best:
            self.restore(model)
        return True

    def restore(self, model):
        """Put the parameters of the best epoch back into ``model`` (needs ``restore_best=True``)."""
        if self.best_params is None:
            raise ValueError("no best parameters to restore: EarlyStopping(restore_best=True) keeps them "
                             "once it has seen an epoch")
        model.params[...] = self.best_params

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, monitor={self.monitor!r}, "
                f"restore_best={self.restore_best}, best={self.best:.4g}, best_epoch={self.best_epoch})")


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


def _check_checkpoint_args(checkpoint, checkpoint_every, resume):
    """fit's checkpoint, checkpoint_every and resume checked (TypeError or ValueError naming the argument);
    returns checkpoint_every as an int."""
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be None, a str or an os.PathLike, got {type(checkpoint).__name__}")
    if resume is not True and resume is not False:
        raise TypeError(f"resume must be True or False, got {resume!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint= (the file to resume from)")
    return checkpoint_every


def _data_digest(X):
    return hashlib.sha256(np.ascontiguousarray(X).data).hexdigest()


def _history_arrays(rows, K):
    """The history rows (lists) as History's arrays (and a checkpoint's fit_* arrays)."""
    out = {}
    for key, values in rows.items():
        if key == "active_units":
            out[key] = np.asarray(values, dtype=np.int64)
        elif key == "kl_per_dim":
            out[key] = np.asarray(values, dtype=np.float64).reshape(len(values), K)
        else:
            out[key] = np.asarray(values, dtype=np.float64)
    return out


def _save_checkpoint(path, model, optimizer, rng, epoch, history, run, seconds):
    """Write a fit checkpoint: the model file of model._state(optimizer), plus the run (its arguments' digests,
    the epochs done, the seconds, the shuffling generator) in meta["fit"] and the history arrays as fit_*."""
    meta, arrays = model._state(optimizer)
    meta["fit"] = dict(run, epoch=epoch, seconds=seconds, shuffle_state=rng.bit_generator.state)
    for key, arr in history.items():
        arrays["fit_" + key] = arr
    _atomic_savez(path, meta, arrays)


# what a checkpoint's run records and a resumed run must match, as an error names it
_RUN_CHECKS = (("n", "rows of X"), ("data_sha256", "data X"), ("batch_size", "batch_size"), ("seed", "seed"),
               ("val_sha256", "validation_data"), ("restart_dead", "restart_dead"))


def _resume_state(path, model, optimizer, rng, run, check=None):
    """Put back model, optimizer and generators from a checkpoint of this run (model's class and configuration,
    run's data and arguments; ValueError otherwise). check(meta, arrays, epochs done), when given, runs before
    anything is put back, so that a ValueError from it too leaves the model as it was. Returns (meta, arrays,
    epochs done, seconds, optimizer): the history's fit_* arrays are the caller's to read."""
    meta, arrays = _checked_load(path)
    name = os.fspath(path)
    saved = meta.get("fit")
    if not isinstance(saved, dict) or "optimizer" not in meta:
        raise ValueError(f"checkpoint {name!r} is a model file but not a fit checkpoint")

    def plain(config):   # as JSON has it (tuples as lists, at any depth), without the seed
        return json.loads(json.dumps({k: v for k, v in config.items() if k != "seed"}))
    config, saved_config = plain(model.config), plain(meta["config"])
    if meta.get("class") != type(model).__name__ or saved_config != config:
        raise ValueError(f"checkpoint {name!r} holds a {meta.get('class')} with {saved_config}, "
                         f"which is not this {type(model).__name__} with {config}")
    for key, what in _RUN_CHECKS:
        if key in run and saved.get(key) != run[key]:
            raise ValueError(f"checkpoint {name!r} was written for other {what} ({saved.get(key)!r}, "
                             f"now {run[key]!r}); resume with the same data and arguments")
    if check is not None:
        check(meta, arrays, int(saved["epoch"]))
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
    return meta, arrays, int(saved["epoch"]), float(saved["seconds"]), optimizer


def _resume(path, model, optimizer, rng, run):
    """Restore model, optimizer, generators and history from a checkpoint of this run (a VAE's or an AE's).

    Returns (epochs done, history rows, seconds, optimizer)."""
    meta, arrays, done, seconds, optimizer = _resume_state(path, model, optimizer, rng, run)
    saved = meta["fit"]
    rows = {key: [float(v) for v in arrays["fit_" + key]] for key in _HISTORY_KEYS}
    # fields added later: a checkpoint without them had a constant lr and did not measure the latent units
    rows["lr"] = ([float(v) for v in arrays["fit_lr"]] if "fit_lr" in arrays
                  else [float(meta["optimizer"]["lr"])] * done)
    rows["active_units"] = ([int(v) for v in arrays["fit_active_units"]] if "fit_active_units" in arrays
                            else [-1] * done)
    rows["kl_per_dim"] = (list(arrays["fit_kl_per_dim"].astype(np.float64)) if "fit_kl_per_dim" in arrays
                          else [np.full(model.latent_dim, np.nan)] * done)
    if run["val_sha256"] is not None:   # the same validation data as the checkpoint's (checked above)
        for key in _VAL_KEYS:
            rows[key] = [float(v) for v in arrays["fit_" + key]]
    if "val_entropy" in saved:
        run["val_entropy"] = saved["val_entropy"]
    return done, rows, seconds, optimizer


def fit(model, X, epochs=600, batch_size=64, optimizer=None, lr=1e-3, beta=1.0,
        seed=0, callbacks=(), progress=True, *, validation_data=None, checkpoint=None, checkpoint_every=1,
        resume=False, k=1, restart_dead=None):
    """Train a model on X with shuffled mini-batches.

    Parameters
    ----------
    model : VAE, AE, GAN or VQVAE
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
    lr : float or callable, default 1e-3
        A float is used only when ``optimizer`` is None. A function of the
        0-based epoch index sets the learning rate of the optimizer (given or
        created) at the start of every epoch, e.g. a step decay
        ``lambda e: 1e-3 if e < 300 else 1e-4``; each value is checked.
    beta : float or callable, default 1.0
        Weight of the KL term, or a function of the 0-based epoch index
        returning it (KL warm-up: ``lambda e: min(1.0, e / 100)``).
    seed : int, default 0
        Seeds the shuffling and the fixed noise of the validation data (the
        training noise comes from the model's own generator).
    callbacks : sequence of callables, one callable, or None (no callbacks)
        Each is called after every epoch as ``cb(epoch, stats, model)`` with
        the 0-based epoch index and a dict of the epoch's loss, recon, kl,
        beta, lr, seconds and active_units, plus val_loss, val_recon and
        val_kl with validation data. A callback that returns True stops
        training (:class:`EarlyStopping` is one).
    progress : bool, default True
        Show a tqdm progress bar while training, and at the end one summary
        line on stderr (epochs, seconds, the last epoch's loss, recon, KL,
        val_loss, active units).
    validation_data : array_like, shape (m, input_dim), optional
        Evaluated after every epoch into ``History.val_loss``, ``val_recon``
        and ``val_kl``, with the epoch's beta and the same noise eps in every
        epoch (drawn once from a generator seeded by ``seed``, not from the
        model's), so the curves are smooth and the training is bitwise the
        same as without validation data. For a VQ-VAE, :func:`fit_vq`'s
        ``val_*`` stats instead.
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
        configuration, data, validation data, ``batch_size`` and ``seed``.

    k : int, default 1
        A GAN only: discriminator updates per generator update.

    A :class:`vaecore.GAN` is trained by :func:`vaecore.gan.fit_gan` with
    epochs, batch_size, optimizer (a pair ``(opt_g, opt_d)``), lr, seed,
    callbacks, progress and k; it returns a :class:`vaecore.gan.GANHistory`.

    restart_dead : bool, default True
        A VQ-VAE only: restart the codes no position used during an epoch.

    A :class:`vaecore.VQVAE` is trained by :func:`vaecore.vqvae.fit_vq` with
    epochs, batch_size, optimizer, lr, seed, callbacks, progress,
    validation_data, checkpoint, checkpoint_every, resume and restart_dead;
    it returns a :class:`vaecore.VQHistory`.

    Returns
    -------
    History
        The whole run's, a resumed run's included.

    Warns
    -----
    UserWarning
        When every latent unit of a VAE is inactive (see
        ``History.active_units``) in the last 10% of the epochs (at least the
        last one): posterior collapse. The message names the cures.

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
    from .gan import GAN, fit_gan
    from .vqvae import VQVAE, fit_vq

    if isinstance(model, VQVAE):   # a VQ-VAE too (vaecore/vqvae.py)
        if beta != 1.0 or k != 1:
            raise TypeError("beta and k are not for a VQ-VAE; it takes epochs, batch_size, optimizer, lr, seed, "
                            "callbacks, progress, validation_data, checkpoint, checkpoint_every, resume and "
                            "restart_dead")
        return fit_vq(model, X, epochs, batch_size, optimizer, lr, seed, callbacks, progress,
                      restart_dead=True if restart_dead is None else restart_dead, validation_data=validation_data,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume)
    if restart_dead is not None:
        raise TypeError("restart_dead (restarting unused codes) is for a VQ-VAE")
    if isinstance(model, GAN):   # a GAN trains in its own loop (vaecore/gan.py)
        if beta != 1.0 or validation_data is not None or checkpoint is not None or resume:
            raise TypeError("beta, validation_data, checkpoint and resume are for a VAE; a GAN takes epochs, "
                            "batch_size, optimizer=(opt_g, opt_d), lr, seed, callbacks, progress and k")
        return fit_gan(model, X, epochs, batch_size, optimizer, lr, seed, callbacks, progress, k=k)
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a vaecore.VAE, vaecore.AE, vaecore.GAN or vaecore.VQVAE, "
                        f"got {type(model).__name__}")
    if k != 1:
        raise TypeError("k (discriminator steps per generator step) is for a GAN")
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size")
    seed = check_seed(seed, high=SEED_MAX, allow_none=True)
    checkpoint_every = _check_checkpoint_args(checkpoint, checkpoint_every, resume)
    X = model._x(X)
    model._bernoulli_check(X)
    X_val = None if validation_data is None else _as_data(model, validation_data, "validation_data")
    if optimizer is not None and (not isinstance(optimizer, Optimizer) or optimizer.model is not model):
        raise ValueError("optimizer must be a vaecore optimizer created for this model")
    schedule = _schedule(beta, "beta")
    lr_schedule = _schedule(lr, "lr") if callable(lr) else None
    callbacks = check_callbacks(callbacks)

    rng = np.random.default_rng(seed)
    n, K = X.shape[0], model.latent_dim
    keys = (*_HISTORY_KEYS, "lr", "active_units", "kl_per_dim") + (_VAL_KEYS if X_val is not None else ())
    rows = {key: [] for key in keys}
    done, seconds_before = 0, 0.0
    # the validation noise has its own generator, seeded by fit's seed (or, for seed=None, by fresh entropy
    # that a checkpoint keeps), so validating draws nothing from the model's generator or the shuffling one
    run = dict(n=n, batch_size=batch_size, seed=seed,
               val_sha256=None if X_val is None else _data_digest(X_val),
               val_entropy=seed if seed is not None else np.random.SeedSequence().entropy)
    if checkpoint is not None:
        run["data_sha256"] = _data_digest(X)
        if resume and os.path.exists(checkpoint):
            done, rows, seconds_before, optimizer = _resume(checkpoint, model, optimizer, rng, run)
    if optimizer is None:
        optimizer = Adam(model, lr=1e-3 if lr_schedule is not None else lr)
    eps_val = None
    if X_val is not None and model._variational:
        val_rng = np.random.default_rng(np.random.SeedSequence(run["val_entropy"], spawn_key=(1,)))
        eps_val = val_rng.standard_normal((X_val.shape[0], K)).astype(model.dtype)   # (m, K)
    X_probe = X if n <= PROBE_ROWS else X[_probe_rows(n)]                                 # (<= 2000, D)
    hist = History(optimizer=optimizer)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, initial=min(done, epochs), desc=f"fit {type(model).__name__}", unit="epoch",
                   leave=False)
    start = time.perf_counter()
    saved = done

    def save(epochs_done):
        _save_checkpoint(checkpoint, model, optimizer, rng, epochs_done, _history_arrays(rows, K), run,
                         seconds_before + time.perf_counter() - start)

    try:
        with _HoldInterrupt() as interrupt:
            for epoch in range(done, epochs):
                t0 = time.perf_counter()
                b = schedule(epoch)
                if lr_schedule is not None:
                    optimizer.lr = lr_schedule(epoch)
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
                active, kl_dims = _latent_stats(model, X_probe)
                stats = {"loss": sums[0], "recon": sums[1], "kl": sums[2], "beta": b, "seconds": dt,
                         "lr": optimizer.lr, "active_units": active}
                if X_val is not None:
                    v = model.loss(X_val, beta=b, eps=eps_val)
                    stats.update(val_loss=v["loss"], val_recon=v["recon"], val_kl=v["kl"])
                for key, value in zip(_HISTORY_KEYS, (*sums, b, dt)):
                    rows[key].append(value)
                rows["lr"].append(optimizer.lr)
                rows["active_units"].append(active)
                rows["kl_per_dim"].append(kl_dims)
                for key in _VAL_KEYS if X_val is not None else ():
                    rows[key].append(stats[key])
                if checkpoint is not None and (epoch + 1) % checkpoint_every == 0:
                    save(epoch + 1)
                    saved = epoch + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{sums[0]:.4g}", kl=f"{sums[2]:.3g}", refresh=False)
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
        for key, value in _history_arrays(rows, K).items():
            setattr(hist, key, value)
        hist.seconds = seconds_before + time.perf_counter() - start
    if progress:
        print(_summary(model, hist), file=sys.stderr, flush=True)
    if model._variational:   # not reached when training raised
        _warn_on_collapse(hist, K)
    return hist


def _summary(model, hist):
    """The line ``fit`` leaves on screen: epochs, seconds and the last epoch's numbers."""
    line = f"fit {type(model).__name__}: {len(hist)} epochs in {hist.seconds:.2f} s"
    if len(hist):
        line += f", loss {hist.loss[-1]:.4g}, recon {hist.recon[-1]:.4g}, kl {hist.kl[-1]:.4g}"
        if len(hist.val_loss):
            line += f", val_loss {hist.val_loss[-1]:.4g}"
        if hist.active_units[-1] >= 0:
            line += f", active units {hist.active_units[-1]}/{model.latent_dim}"
    if hist.stopped_early:
        line += " (stopped early)"
    return line


def _warn_on_collapse(hist, K):
    """One UserWarning when no latent unit was active in the last 10% of the epochs (at least one)."""
    last = max(1, math.ceil(0.1 * len(hist)))
    if len(hist) and np.all(hist.active_units[-last:] == 0):
        warnings.warn(f"posterior collapse: none of the {K} latent units has been active (Var_x of its mean "
                      f"> {ACTIVE_THRESHOLD}, Burda et al. 2016) in the last {last} epoch(s); the KL is "
                      f"{hist.kl[-1]:.3g} nats. The codes carry no information about x. Cures: {_COLLAPSE_CURES}.",
                      UserWarning, stacklevel=3)
