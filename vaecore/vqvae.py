"""Vector-quantised autoencoders (VQ-VAE) on vaecore's C core: where VAEs went next.

A VQ-VAE (van den Oord, Vinyals and Kavukcuoglu 2017, "Neural Discrete
Representation Learning") swaps the VAE's Gaussian cloud for a learned
codebook of K vectors e_1..e_K. The encoder gives a grid of code_dim-vectors
z_e (one per position: ``(code_dim, h, w)`` for a conv encoder, one vector for
flat data); each is replaced by its nearest codebook row, z_q = e_k with
k = argmin_k |z_e - e_k|^2, and the decoder reconstructs from z_q. The loss of
one example is

    recon(x, dec(z_q)) + commitment * sum_s |z_e,s - sg(e_k_s)|^2
                       (+ sum_s |sg(z_e,s) - e_k_s|^2  with codebook_update="loss")

with sg the stop-gradient; the argmin has no gradient, so the decoder's
gradient at z_q is passed to z_e unchanged (the straight-through estimator).
With ``codebook_update="ema"`` the codebook instead follows exponential
moving averages of the counts and sums of the encoder outputs assigned to
each code (the paper's appendix A.1) and gets no gradient.

A VQ-VAE has no prior to sample from: to generate, fit a prior over its code
grids (:class:`vaecore.IndependentPrior`, :class:`vaecore.AutoregressivePrior`)
and decode what it draws (:meth:`VQVAE.sample`). ``vaecore.fit`` trains a
VQ-VAE with :func:`fit_vq`, which records the codebook's perplexity and
restarts dead codes.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _core
from . import layers as L
from ._checks import SEED_MAX, check_callbacks, check_float_dtype, check_int, check_real, check_seed, check_widths
from .io import _atomic_savez, _check_save_path, _load_class, _model_state, _name, _restore
from .model import _MAX_ROWS, VAE, fixed, fixed_config, init_weights
from .optim import Adam, Optimizer
from .train import (History, _check_checkpoint_args, _data_digest, _HoldInterrupt, _resume_state, _save_checkpoint,
                    _schedule)

__all__ = ["VQVAE", "VQHistory", "fit_vq", "EMA_EPS"]

EMA_EPS = 1e-5                   # the Laplace smoothing of the averaged counts (csrc/vq.h)
_UPDATES = ("ema", "loss")
_DEFAULT_HIDDEN = (128,)


class VQVAE:
    """A vector-quantised autoencoder: encoder stack, codebook, decoder stack.

    Two ways to describe the networks:

    - the layer form, ``VQVAE(input_shape=(1, 28, 28), codebook_size=64,
      code_dim=16, encoder=[...], decoder=[...])`` with layers of
      :mod:`vaecore.layers`: the encoder must end with ``code_dim`` values per
      example (flat models: one code) or ``code_dim`` channels (conv models:
      an h x w grid of codes); the decoder maps that shape back to the data;
    - the shortcut for flat data, ``VQVAE(input_dim, codebook_size, code_dim,
      hidden=(128,), activation="relu")``: dense layers of those widths
      (``Linear(code_dim)`` last in the encoder, ``Linear(input_dim)`` in the
      decoder, the widths reversed).

    Parameters
    ----------
    input_dim : int
        Width D of flat data (a synonym of ``input_shape=(D,)``).
    codebook_size : int
        K, the number of codes.
    code_dim : int
        The width of one code.
    encoder, decoder : list of layers, optional
        The layer form (both or neither).
    likelihood : {"gaussian", "bernoulli", "gaussian_learned"}, default "gaussian"
        The reconstruction term, as in :class:`vaecore.VAE`: squared error,
        Bernoulli on logits (x in [0, 1]), or a Gaussian with a learned
        per-dimension log-variance ``dec.logvar`` (started at 0).
    commitment : float, default 0.25
        The weight of the commitment term (the paper's beta).
    codebook_update : {"ema", "loss"}, default "ema"
        How the codebook learns: moving averages, or the gradient of the
        codebook term through the optimizer.
    decay : float, default 0.99
        The moving averages' decay (``codebook_update="ema"``).
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initial weights and codebook.
    input_shape : tuple of int, optional
        The shape of one example, (D,) or (C, H, W).
    hidden : tuple of int, default (128,)
        The shortcut's hidden widths.
    activation : str, default "relu"
        The shortcut's hidden activation.

    Attributes
    ----------
    params : ndarray, shape (num_params,)
        The live parameter buffer: ``enc.i.W``/``enc.i.b``, ``vq.codebook``
        (codebook_size, code_dim), ``dec.i.W``/``dec.i.b`` (:meth:`named_params`).
    ema_count, ema_sum : ndarray or None
        With EMA, the averaged counts (codebook_size,) and sums
        (codebook_size, code_dim); they start at 1 and at the initial
        codebook, so that an unused code keeps its vector. None with
        ``codebook_update="loss"``.

    Notes
    -----
    Weights start as in :class:`vaecore.VAE`; the codebook is drawn from
    Glorot's uniform rule for a (codebook_size, code_dim) matrix.
    The codes are searched in C with one matrix product per block of
    positions, ``|e_k|^2 - 2 z.e_k`` (``|z|^2`` is common to all k), the
    lowest k winning a tie.

    Examples
    --------
    >>> import vaecore
    >>> X, t, arm = vaecore.datasets.two_spirals(256, seed=0)
    >>> q = vaecore.VQVAE(2, codebook_size=16, code_dim=2, hidden=(32,), seed=0)
    >>> q.encode(X[:3]).shape
    (3,)
    """

    def __init__(self, input_dim=None, codebook_size=None, code_dim=None, encoder=None, decoder=None, *,
                 likelihood="gaussian", commitment=0.25, codebook_update="ema", decay=0.99, dtype="float32", seed=0,
                 input_shape=None, hidden=_DEFAULT_HIDDEN, activation="relu"):
        if codebook_size is None or code_dim is None:
            raise TypeError("codebook_size and code_dim are required: the number of codes and the width of one")
        K = check_int(codebook_size, "codebook_size", high=_core.MAX_WIDTH)
        d = check_int(code_dim, "code_dim", high=_core.MAX_WIDTH)
        shape = VAE._shape(input_dim, input_shape)
        D = math.prod(shape)
        if likelihood not in _core.LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {_core.LIKELIHOODS}, got {likelihood!r}")
        if codebook_update not in _UPDATES:
            raise ValueError(f"codebook_update must be 'ema' or 'loss', got {codebook_update!r}")
        self.commitment = check_real(commitment, "commitment")
        self.decay = check_real(decay, "decay")
        if not self.decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        dt = check_float_dtype(dtype)
        seed = check_seed(seed, high=SEED_MAX)
        layer_form = encoder is not None or decoder is not None
        if layer_form:
            if encoder is None or decoder is None:
                raise TypeError("the layer form needs both encoder= and decoder= (lists of vaecore.layers)")
            if hidden is not _DEFAULT_HIDDEN or activation != "relu":
                raise TypeError("hidden and activation belong to the shortcut form; with encoder= and decoder= "
                                "the layers say it all")
            enc_layers, dec_layers = list(encoder), list(decoder)
        else:
            if len(shape) != 1:
                raise TypeError("images need the layer form: encoder= and decoder= lists of vaecore.layers")
            hidden = check_widths(hidden, "hidden", high=_core.MAX_WIDTH, max_len=_core.MAX_HIDDEN_LAYERS)
            if activation not in _core.ACTIVATIONS:
                raise ValueError(f"activation must be one of {_core.ACTIVATIONS}, got {activation!r}")
            enc_layers = L.mlp(hidden, activation, d)
            dec_layers = L.mlp(tuple(reversed(hidden)), activation, D)
        enc_infos = L.infer(enc_layers, shape, "encoder")
        code = enc_infos[-1].out_shape if enc_infos else shape
        if not (code[0] == d and len(code) in (1, 3)):
            where = f"encoder[{len(enc_infos) - 1}] {enc_infos[-1].layer!r}" if enc_infos else "the empty encoder"
            raise ValueError(f"the encoder must give code_dim = {d} values per example or {d} channels: {where} "
                             f"outputs shape {code}")
        dec_infos = L.infer(dec_layers, code, "decoder")
        out = dec_infos[-1].out_shape if dec_infos else code
        if out != shape and out != (D,):
            where = f"decoder[{len(dec_infos) - 1}] {dec_infos[-1].layer!r}" if dec_infos else "the empty decoder"
            raise ValueError(f"the decoder must give back the data: {where} outputs shape {out}, the data has "
                             f"shape {shape}")
        self._core = _core.VqVae(shape, K, d, L.encode(enc_infos), L.encode(dec_infos), likelihood,
                                 codebook_update == "ema", dt.name, seed)
        self._fixed = fixed_config(self._core, ("input_shape", "grid"))
        self._infos = (enc_infos, dec_infos)
        self._layers = (tuple(enc_layers), tuple(dec_layers))
        self._shortcut = None if layer_form else dict(hidden=hidden, activation=activation)
        self.codebook_update = codebook_update
        self.seed = seed
        init_weights(self._core, {"enc": enc_infos, "dec": dec_infos}, seed, fill={"dec.logvar": 0.0})
        self._ema = None
        if codebook_update == "ema":
            self._ema = np.empty(K * (1 + d), dtype=dt)
            self.reset_ema()

    # ------------------------------------------------------------ structure
    input_shape = fixed("input_shape", "tuple: the shape of one example, (D,) or (C, H, W).")
    input_dim = fixed("dim", "int: size D of one example.")
    codebook_size = fixed("codebook_size", "int: K, the number of codes.")
    code_dim = fixed("code_dim", "int: the width of one code.")
    grid_shape = fixed("grid", "tuple: the code grid of one example, (h, w), or () for one code per example.")
    likelihood = fixed("likelihood", "str: the reconstruction term.")
    dtype = fixed("dtype", "numpy.dtype: float32 or float64.")
    _matrix = VAE._matrix
    _x = VAE._x
    _shaped = VAE._shaped
    params = VAE.params
    num_params = VAE.num_params
    rng_state = VAE.rng_state
    _names = {}

    @property
    def positions(self):
        """int: codes per example (h * w, or 1)."""
        return math.prod(self.grid_shape)

    @property
    def codebook(self):
        """ndarray, shape (codebook_size, code_dim): the codebook, a view into :attr:`params`."""
        return dict(self.named_params())["vq.codebook"]

    @property
    def ema_count(self):
        """ndarray (codebook_size,) or None: the averaged code counts N_k of the EMA update (a live view)."""
        return None if self._ema is None else self._ema[:self.codebook_size]

    @property
    def ema_sum(self):
        """ndarray (codebook_size, code_dim) or None: the averaged sums M_k of the encoder outputs coded k."""
        return None if self._ema is None else self._ema[self.codebook_size:].reshape(self.codebook_size,
                                                                                      self.code_dim)

    def reset_ema(self):
        """Restart the moving averages from the current codebook: counts 1, sums the codebook."""
        if self._ema is None:
            raise ValueError("this model's codebook learns by gradient (codebook_update='loss'): it has no "
                             "moving averages")
        self.ema_count[...] = 1
        self.ema_sum[...] = self.codebook

    @property
    def config(self):
        """dict: everything needed to rebuild the model (save/load and pickling use it)."""
        c = {"input_shape": list(self.input_shape), "codebook_size": self.codebook_size, "code_dim": self.code_dim,
             "likelihood": self.likelihood, "commitment": self.commitment, "codebook_update": self.codebook_update,
             "decay": self.decay, "dtype": self.dtype.name, "seed": self.seed}
        if self._shortcut is not None:
            c.update(hidden=list(self._shortcut["hidden"]), activation=self._shortcut["activation"])
        else:
            c.update(encoder=[L.to_dict(x) for x in self._layers[0]], decoder=[L.to_dict(x) for x in self._layers[1]])
        return c

    def named_params(self, buffer=None):
        """The parameters by name, as views into :attr:`params` (or into ``buffer``, a (num_params,) array).

        Returns
        -------
        list of (str, ndarray)
            In buffer order: ``enc.i.W``, ``enc.i.b`` for each encoder layer
            with parameters at index i, ``vq.codebook`` (codebook_size,
            code_dim), ``dec.i.W``, ``dec.i.b``, and ``dec.logvar`` (D,) with
            the learned variance. Shapes as in :meth:`vaecore.VAE.named_params`.
        """
        return VAE.named_params(self, buffer)

    def __repr__(self):
        head = (f"VQVAE(input_shape={self.input_shape}, codebook_size={self.codebook_size}, "
                f"code_dim={self.code_dim}, grid={self.grid_shape}, likelihood={self.likelihood!r}, "
                f"codebook_update={self.codebook_update!r}, dtype={self.dtype.name!r})")
        rows = [(f"encoder[{i.index}] {i.layer!r}", i.out_shape, i.num_params) for i in self._infos[0]]
        rows.append(("codebook", (self.codebook_size, self.code_dim), self.codebook_size * self.code_dim))
        rows += [(f"decoder[{i.index}] {i.layer!r}", i.out_shape, i.num_params) for i in self._infos[1]]
        width = max([len(r[0]) for r in rows] + [5]) + 2
        lines = [head, f"  {'layer':<{width}}{'output shape':<16}{'params':>10}"]
        lines += [f"  {name:<{width}}{str(shape):<16}{n:>10,}" for name, shape, n in rows]
        lines.append(f"  parameters: {self.num_params:,}")
        return "\n".join(lines)

    # ------------------------------------------------------------ computing
    def _code_shape(self, n):
        return (n, *self.grid_shape)

    def _ze_shape(self, n):
        return (n, self.code_dim, *self.grid_shape)

    def encoder_output(self, x):
        """The encoder's output z_e for x: shape (n, code_dim, h, w), or (n, code_dim) for one code per example."""
        x = self._x(x)
        return self._core.encode(x).reshape(self._ze_shape(x.shape[0]))

    def _ze(self, z_e):
        grid = self._ze_shape(0)[1:]
        if len(grid) > 1 and np.ndim(z_e) == 1 + len(grid):   # (n, code_dim, h, w) -> (n, E)
            z_e = np.asarray(z_e)
            if z_e.shape[1:] != grid:
                raise ValueError(f"z_e must have shape (n, {', '.join(map(str, grid))}), got {z_e.shape}")
            z_e = z_e.reshape(z_e.shape[0], -1)
        return self._matrix(z_e, "z_e", self.code_dim * self.positions)

    def nearest(self, z_e):
        """(codes, dist): the nearest code of every position of z_e and its squared distance, each (n, *grid)."""
        z = self._ze(z_e)
        codes, dist = self._core.nearest(z)
        return codes.reshape(self._code_shape(z.shape[0])), dist.reshape(self._code_shape(z.shape[0]))

    def quantize(self, z_e):
        """z_q: every position of z_e (the shape :meth:`encoder_output` gives) replaced by its nearest code."""
        z = self._ze(z_e)
        codes, _ = self._core.nearest(z)
        zq = self.codebook[codes]                       # (n, S, d)
        n = z.shape[0]
        return np.ascontiguousarray(np.moveaxis(zq, 2, 1)).reshape(self._ze_shape(n))

    def encode(self, x):
        """The code indices of x: int64 array of shape (n, h, w), or (n,) for one code per example."""
        return self.nearest(self._core.encode(self._x(x)))[0]

    def _codes(self, codes):
        a = np.asarray(codes)
        if a.dtype.kind not in "iu":
            raise TypeError(f"codes must be an integer array, got dtype {a.dtype}")
        grid = self.grid_shape
        if a.ndim == 0 or a.shape[1:] != grid:
            raise ValueError(f"codes must have shape {('n', *grid)}, got {a.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"codes must have at least one row, got shape {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got values in [{a.min()}, {a.max()}]")
        return np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.int64)

    def decode_codes(self, codes, logits=False):
        """The decoder's output for a grid of codes, shape (n, *input_shape).

        The mean (gaussian likelihoods) or the probabilities (bernoulli; the
        logits with ``logits=True``).
        """
        return self._shaped(self._core.decode(self._codes(codes), bool(logits)))

    def reconstruct(self, x):
        """decode_codes(encode(x)): x through its nearest codes, shape (n, *input_shape)."""
        return self.decode_codes(self.encode(x))

    def _stats(self, t):
        return dict(zip(("loss", "recon", "commitment", "codebook", "perplexity"), t))

    def loss(self, x):
        """The batch's stats (see :meth:`loss_and_grad`) without the gradient."""
        stats, _ = self._core.loss(self._x(x), self.commitment, False)
        return self._stats(stats)

    def loss_and_grad(self, x):
        """The loss of a batch and its gradient.

        Returns
        -------
        stats : dict
            Batch means: ``recon``; ``commitment`` (commitment times the sum
            over positions of |z_e - sg(e)|^2); ``codebook`` (the sum of
            |sg(z_e) - e|^2 with ``codebook_update="loss"``, 0 with EMA);
            ``loss``, their sum; and ``perplexity``, exp of the entropy of the
            batch's code frequencies (K when all codes are used equally, 1
            when one code takes everything).
        grad : ndarray, shape (num_params,)
            d loss / d params in the layout of :attr:`params`, straight
            through the quantiser; zero on the codebook with EMA.
        """
        stats, grad = self._core.loss(self._x(x), self.commitment, True)
        return self._stats(stats), grad

    def train_step(self, x, optimizer, usage=None):
        """One training step in one C call: forward, backward, the optimizer's update and the EMA update.

        Parameters
        ----------
        x : array_like, shape (n, input_dim) or (n, *input_shape)
        optimizer : Adam or SGD
            Created for this model.
        usage : ndarray of int64, shape (codebook_size,), optional
            Gets the batch's code counts added (:func:`fit_vq` counts an epoch's).

        Returns
        -------
        dict
            The stats of :meth:`loss_and_grad`, before the update.

        Raises
        ------
        FloatingPointError
            If the loss, the gradient or an update is NaN or Inf; then nothing changes.
        """
        if not isinstance(optimizer, Optimizer) or optimizer.model is not self:
            raise ValueError("optimizer must be a vaecore.Adam or vaecore.SGD created for this model")
        try:
            stats = self._core.train_step(self._x(x), self.commitment, self.decay, *optimizer._core_args(),
                                          self._ema, usage)
        except FloatingPointError as e:
            raise FloatingPointError(f"step {optimizer.t + 1}: {e}") from None
        return self._stats(stats)

    def restart_codes(self, codes, x, rng):
        """Move the given codes onto encoder outputs of x drawn at random (without replacement when there
        are enough); with EMA their averages restart there too (count 1); returns how many moved."""
        codes = np.asarray(codes, dtype=np.int64).ravel()
        if codes.size == 0:
            return 0
        z = self.encoder_output(x)
        rows = (np.moveaxis(z.reshape(z.shape[0], self.code_dim, -1), 1, 2).reshape(-1, self.code_dim)
                if z.ndim > 2 else z)
        pick = rng.choice(len(rows), size=codes.size, replace=codes.size > len(rows))
        self.codebook[codes] = rows[pick]
        if self._ema is not None:
            self.ema_count[codes] = 1
            self.ema_sum[codes] = rows[pick]
        return int(codes.size)

    def sample(self, n, prior, seed=None):
        """n new examples: code grids drawn from a fitted prior, decoded; shape (n, *input_shape).

        Parameters
        ----------
        n : int
        prior : IndependentPrior or AutoregressivePrior
            Fitted on this model's code grids (``prior.fit(q.encode(X))``).
        seed : int, optional
            Seeds the prior's draws.
        """
        n = check_int(n, "n", low=0, high=_MAX_ROWS)
        if not hasattr(prior, "sample"):
            raise TypeError(f"prior must be a fitted vaecore prior (IndependentPrior, AutoregressivePrior), "
                            f"got {type(prior).__name__}")
        if n == 0:
            return np.empty((0, *self.input_shape), dtype=self.dtype)
        codes = prior.sample(n, seed=seed)
        return self.decode_codes(np.asarray(codes).reshape(self._code_shape(n)))

    # ------------------------------------------------------------ files
    def save(self, path, optimizer=None):
        """Write the model (its parameters, moving averages, and optionally its optimizer) to ``path``.

        The archive of :meth:`vaecore.VAE.save` (atomic, checksummed); :meth:`load` and
        ``vaecore.load`` read it, and training resumes bitwise.
        """
        _check_save_path(path)
        if optimizer is not None and (not isinstance(optimizer, Optimizer) or optimizer.model is not self):
            raise ValueError("optimizer must be a vaecore optimizer of this model")
        _atomic_savez(path, *self._state(optimizer))

    def _state(self, optimizer=None):
        """(meta, arrays) of the model's file: save's, and the start of fit's checkpoints."""
        meta, arrays = _model_state(self, "VQVAE", () if optimizer is None else (("", optimizer),))
        if self._ema is not None:
            arrays["ema"] = np.array(self._ema)
        return meta, arrays

    @classmethod
    def load(cls, path, *, with_optimizer=False):
        """Read a model written by :meth:`save`: the model, or ``(model, optimizer)`` (None if not saved)."""
        meta, arrays = _load_class(path, "VQVAE", with_optimizer, "with_optimizer")
        return _from_saved(meta, arrays, path, with_optimizer)

    # ------------------------------------------------------------ pickle and copy
    _BUILT = ("_core", "_fixed", "_infos", "_layers", "_shortcut", "seed", "_ema", "codebook_update")

    def __getstate__(self):
        """Configuration, parameters, moving averages and any other attribute (the C object is rebuilt)."""
        extra = {k: v for k, v in self.__dict__.items() if k not in self._BUILT}
        return {"config": self.config, "params": np.array(self.params), "rng_state": self.rng_state,
                "ema": None if self._ema is None else np.array(self._ema), "extra": extra}

    def __setstate__(self, state):
        fresh = _from_config(state["config"])
        self.__dict__.update({k: fresh.__dict__[k] for k in self._BUILT})
        self.params[...] = state["params"]
        self.rng_state = state["rng_state"]
        if self._ema is not None:
            self._ema[...] = state["ema"]
        self.__dict__.update(state["extra"])


def _from_config(c, path=None):
    try:
        common = dict(input_shape=tuple(c["input_shape"]), codebook_size=c["codebook_size"], code_dim=c["code_dim"],
                      likelihood=c["likelihood"], commitment=c["commitment"], codebook_update=c["codebook_update"],
                      decay=c["decay"], dtype=c["dtype"], seed=c["seed"])
        if "encoder" in c:
            return VQVAE(encoder=[L.from_dict(d) for d in c["encoder"]], decoder=[L.from_dict(d) for d in c["decoder"]],
                         **common)
        return VQVAE(hidden=tuple(c["hidden"]), activation=c["activation"], **common)
    except (KeyError, TypeError) as e:
        where = "the configuration" if path is None else _name(path)
        raise ValueError(f"{where}: the VQVAE configuration is damaged ({e!r})") from None


def _from_saved(meta, arrays, path, with_optimizer):
    """The model (and optimizer) of a checked archive; vaecore.load comes here for class VQVAE."""
    q = _from_config(meta["config"], path)
    _restore(q, meta, arrays, _name(path))
    if q._ema is not None:
        ema = arrays.get("ema")
        if ema is None or ema.shape != q._ema.shape:
            raise ValueError(f"{_name(path)}: the moving averages are missing or do not fit the configuration")
        q._ema[...] = ema
    if not with_optimizer:
        return q
    if "optimizer" not in meta:
        return q, None
    opt = Optimizer._from_saved(q, dict(meta["optimizer"]),
                                {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")})
    return q, opt


# ------------------------------------------------------------------ training
@dataclass
class VQHistory(History):
    """What :func:`fit_vq` records, one entry per finished epoch (a :class:`vaecore.History`).

    Attributes
    ----------
    loss, recon, commitment, codebook : ndarray of float64, shape (epochs,)
        Epoch means of the batch stats (:meth:`VQVAE.loss_and_grad`).
    perplexity : ndarray of float64, shape (epochs,)
        exp of the entropy of the epoch's code usage (all positions of all
        batches): K when every code is used equally, 1 when one takes all.
    codes_used : ndarray of int64, shape (epochs,)
        Codes used at least once in the epoch.
    restarts : ndarray of int64, shape (epochs,)
        Dead codes (unused for the whole epoch) restarted at its end.
    usage : ndarray of int64, shape (epochs, codebook_size)
        Each epoch's code counts.
    val_loss, val_recon, val_commitment, val_codebook, val_perplexity : ndarray of float64, shape (epochs,) or (0,)
        With ``validation_data``: :meth:`VQVAE.loss` on it after each epoch
        (its restarts included); empty without. (``val_kl`` stays empty.)
    epoch_seconds, lr, seconds, stopped_early, optimizer
        As in :class:`vaecore.History`.
    """

    commitment: np.ndarray = field(default_factory=lambda: np.empty(0))
    codebook: np.ndarray = field(default_factory=lambda: np.empty(0))
    perplexity: np.ndarray = field(default_factory=lambda: np.empty(0))
    codes_used: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    restarts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    usage: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.int64))
    val_commitment: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_codebook: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_perplexity: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __repr__(self):
        if not len(self):
            return "VQHistory(epochs=0)"
        val = f", val_loss={self.val_loss[-1]:.4g}" if len(self.val_loss) else ""
        return (f"VQHistory(epochs={len(self)}, loss={self.loss[-1]:.4g}, recon={self.recon[-1]:.4g}{val}, "
                f"perplexity={self.perplexity[-1]:.3g}, codes_used={self.codes_used[-1]}, "
                f"restarts={int(self.restarts.sum())}, seconds={self.seconds:.2f})")


_VQ_KEYS = ("loss", "recon", "commitment", "codebook")


def _vq_history_arrays(rows, K):
    """fit_vq's history rows (lists) as VQHistory's arrays (and a checkpoint's fit_* arrays)."""
    out = {}
    for key, value in rows.items():
        if key == "usage":
            out[key] = np.array(value, dtype=np.int64).reshape(len(value), K)
        elif key in ("codes_used", "restarts"):
            out[key] = np.asarray(value, dtype=np.int64)
        else:
            out[key] = np.asarray(value, dtype=np.float64)
    return out


def _vq_resume(path, model, optimizer, rng, run, rows):
    """Restore model (its moving averages too), optimizer, generators and history rows (the keys of rows)
    from a checkpoint of this run. Returns (epochs done, rows, seconds, optimizer)."""
    def check(meta, arrays, done):   # before _resume_state puts anything back
        ema = arrays.get("ema")
        if model._ema is not None and (ema is None or ema.shape != model._ema.shape):
            raise ValueError(f"checkpoint {os.fspath(path)!r}: the moving averages are missing or do not fit")
        for key in rows:
            arr = arrays.get("fit_" + key)
            if arr is None or len(arr) != done:
                raise ValueError(f"checkpoint {os.fspath(path)!r}: its history lacks {key!r} for its {done} epochs")

    meta, arrays, done, seconds, optimizer = _resume_state(path, model, optimizer, rng, run, check)
    if model._ema is not None:
        model._ema[...] = arrays["ema"]
    out = {key: list(arrays["fit_" + key]) if key == "usage" else arrays["fit_" + key].tolist() for key in rows}
    return done, out, seconds, optimizer


def _perplexity(counts):
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def fit_vq(model, X, epochs=20, batch_size=64, optimizer=None, lr=1e-3, seed=0, callbacks=(), progress=True, *,
           restart_dead=True, validation_data=None, checkpoint=None, checkpoint_every=1, resume=False):
    """Train a VQ-VAE on X with shuffled mini-batches (``vaecore.fit`` calls this for a VQVAE).

    Every step is one C call (:meth:`VQVAE.train_step`). At the end of every
    epoch, codes that no position used during it are, with ``restart_dead``,
    moved onto random encoder outputs of the epoch's last batch (and counted
    in ``VQHistory.restarts``).

    Parameters
    ----------
    model : VQVAE
    X : array_like, shape (n, input_dim) or (n, *input_shape)
    epochs : int, default 20
    batch_size : int, default 64
    optimizer : Adam or SGD, optional
        None creates ``vaecore.Adam(model, lr)``.
    lr : float or callable, default 1e-3
        With optimizer None, its learning rate; a function of the 0-based
        epoch sets it at the start of every epoch.
    seed : int, default 0
        Seeds the shuffling and the restarts.
    callbacks : sequence of callables, one callable, or None (no callbacks)
        ``cb(epoch, stats, model)`` after every epoch with the epoch's stats
        (loss, recon, commitment, codebook, perplexity, codes_used, restarts,
        lr, seconds, and the val_* ones with ``validation_data``); True stops.
    progress : bool, default True
        A tqdm progress bar, and a summary line on stderr at the end.
    restart_dead : bool, default True
        Move the codes no position used during an epoch onto encoder outputs
        at its end (their optimizer moments start afresh).
    validation_data : array_like, shape (m, input_dim) or (m, *input_shape), optional
        After every epoch, :meth:`VQVAE.loss` on it (m >= 1) goes into the
        epoch's stats and the history as ``val_loss``, ``val_recon``,
        ``val_commitment``, ``val_codebook`` and ``val_perplexity``, so that
        :class:`vaecore.EarlyStopping` can watch them.
    checkpoint, checkpoint_every, resume
        As in :func:`vaecore.fit`: a checkpoint (the model with its moving
        averages, the optimizer, the generators, the epoch and the history;
        also a model file for ``VQVAE.load``) after every ``checkpoint_every``
        epochs and when training ends, and ``resume=True`` goes on from it
        bitwise as if training had never stopped. The checkpoint must come
        from this model configuration, data, validation data, ``batch_size``,
        ``seed`` and ``restart_dead``.

    Returns
    -------
    VQHistory

    Raises
    ------
    FloatingPointError
        If a step diverges: the model keeps its last good parameters and the
        message names the epoch and batch.
    """
    if not isinstance(model, VQVAE):
        raise TypeError(f"model must be a vaecore.VQVAE, got {type(model).__name__}")
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size")
    seed = check_seed(seed, high=SEED_MAX, allow_none=True)
    if restart_dead is not True and restart_dead is not False:
        raise TypeError(f"restart_dead must be True or False, got {restart_dead!r}")
    checkpoint_every = _check_checkpoint_args(checkpoint, checkpoint_every, resume)
    X = model._x(X)
    if not np.isfinite(X).all():
        raise ValueError("X must be finite")
    X_val = None
    if validation_data is not None:
        try:
            X_val = model._x(validation_data)
        except (TypeError, ValueError) as e:
            raise type(e)(f"validation_data: {e}") from None
        if not np.isfinite(X_val).all():
            raise ValueError("validation_data must be finite")
        if model.likelihood == "bernoulli" and ((X_val < 0) | (X_val > 1)).any():   # refused now, not after an epoch
            raise ValueError("validation_data must lie in [0, 1] for the bernoulli likelihood")
    lr_schedule = _schedule(lr, "lr") if callable(lr) else None
    if optimizer is not None and (not isinstance(optimizer, Optimizer) or optimizer.model is not model):
        raise ValueError("optimizer must be a vaecore.Adam or vaecore.SGD created for this model")
    callbacks = check_callbacks(callbacks)
    rng = np.random.default_rng(seed)
    n, K = X.shape[0], model.codebook_size
    val_keys = () if X_val is None else tuple(f"val_{key}" for key in (*_VQ_KEYS, "perplexity"))
    rows = {key: [] for key in (*_VQ_KEYS, "perplexity", "codes_used", "restarts", "usage", "lr", "epoch_seconds",
                                *val_keys)}
    done, seconds_before = 0, 0.0
    run = dict(n=n, batch_size=batch_size, seed=seed, restart_dead=restart_dead,
               val_sha256=None if X_val is None else _data_digest(X_val))
    if checkpoint is not None:
        run["data_sha256"] = _data_digest(X)
        if resume and os.path.exists(checkpoint):
            done, rows, seconds_before, optimizer = _vq_resume(checkpoint, model, optimizer, rng, run, rows)
    if optimizer is None:
        optimizer = Adam(model, lr=1e-3 if lr_schedule is not None else lr)
    hist = VQHistory(optimizer=optimizer)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, initial=min(done, epochs), desc="fit VQ-VAE", unit="epoch", leave=False)
    start = time.perf_counter()
    saved = done

    def save(epochs_done):
        _save_checkpoint(checkpoint, model, optimizer, rng, epochs_done, _vq_history_arrays(rows, K), run,
                         seconds_before + time.perf_counter() - start)

    try:
        with _HoldInterrupt() as interrupt:
            for epoch in range(done, epochs):
                t0 = time.perf_counter()
                if lr_schedule is not None:
                    optimizer.lr = lr_schedule(epoch)
                Xp = X[rng.permutation(n)]
                usage = np.zeros(K, dtype=np.int64)
                sums, seen, last = np.zeros(len(_VQ_KEYS)), 0, None
                for i in range(0, n, batch_size):
                    xb = Xp[i:i + batch_size]
                    try:
                        s = model.train_step(xb, optimizer, usage)
                    except FloatingPointError as e:
                        raise FloatingPointError(f"epoch {epoch}, batch {i // batch_size}: {e}") from None
                    sums += len(xb) * np.array([s[key] for key in _VQ_KEYS])
                    seen += len(xb)
                    last = xb
                    interrupt.check()
                sums /= max(seen, 1)
                dead = np.flatnonzero(usage == 0)
                restarted = model.restart_codes(dead, last, rng) if restart_dead and last is not None else 0
                if restarted:
                    for arr in optimizer._arrays().values():   # their moments start afresh too
                        dict(model.named_params(arr))["vq.codebook"][dead] = 0
                dt = time.perf_counter() - t0
                stats = dict(zip(_VQ_KEYS, sums), perplexity=_perplexity(usage), codes_used=int((usage > 0).sum()),
                             restarts=restarted, lr=optimizer.lr, seconds=dt)
                if X_val is not None:   # after the restarts: the model the next epoch starts from
                    stats.update((f"val_{key}", value) for key, value in model.loss(X_val).items())
                for key in (*_VQ_KEYS, "perplexity", "codes_used", "restarts", *val_keys):
                    rows[key].append(stats[key])
                rows["usage"].append(usage)
                rows["lr"].append(optimizer.lr)
                rows["epoch_seconds"].append(dt)
                if checkpoint is not None and (epoch + 1) % checkpoint_every == 0:
                    save(epoch + 1)
                    saved = epoch + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(recon=f"{sums[1]:.4g}", perplexity=f"{stats['perplexity']:.3g}", refresh=False)
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
        for key, value in _vq_history_arrays(rows, K).items():
            setattr(hist, key, value)
        hist.seconds = seconds_before + time.perf_counter() - start
    if progress:
        line = f"fit VQ-VAE: {len(hist)} epochs in {hist.seconds:.1f} s"
        if len(hist):
            line += (f", recon {hist.recon[-1]:.4g}, perplexity {hist.perplexity[-1]:.3g}, "
                     f"{hist.codes_used[-1]} of {K} codes used, {int(hist.restarts.sum())} restarts")
        print(line, file=sys.stderr, flush=True)
    return hist
