"""Priors over a VQ-VAE's discrete code grids, to generate with it.

A VQ-VAE (van den Oord et al. 2017) turns each example into a grid of code
indices c = (c_0, ..., c_{L-1}), each in [0, K) (K = codebook_size), read in
raster order. Its decoder turns a grid back into data, so generating needs a
distribution p(c) over grids, fitted to the training set's grids after the
VQ-VAE is trained. Two are here, fitted on integer code arrays alone (they
know nothing of the VQ-VAE):

- :class:`IndependentPrior`: a categorical per position,
  p(c) = prod_i p_i(c_i), with additive (Laplace) smoothing a:
  p_i(k) = (count_i(k) + a) / (n + K a).
- :class:`AutoregressivePrior`: MADE (Germain et al. 2015, "MADE: Masked
  Autoencoder for Distribution Estimation"), p(c) = prod_i p(c_i | c_<i), a
  masked MLP over the one-hot grid whose output logits for position i see
  only the positions before it. Its layers run in vaecore's C core
  (``vaecore._core.Stack``); the masks and the softmax cross-entropy are
  NumPy.

Both give ``log_prob`` (natural log of each example's whole grid),
``nll_bits`` (the mean of -log2 p(c), bits per example) and ``sample``.
"""
from __future__ import annotations

import math
import sys
from numbers import Integral

import numpy as np

from . import _core
from . import layers as L
from ._checks import SEED_MAX, check_callbacks, check_float_dtype, check_int, check_real, check_seed, check_widths
from .io import FORMAT_VERSION, _MAGIC, _atomic_savez, _check_save_path, _load_class, _name
from .model import init_weights

__all__ = ["IndependentPrior", "AutoregressivePrior"]

_CHUNK = 1024   # rows per C call when scoring or sampling many grids (bounds the one-hot's memory)


# ------------------------------------------------------------------ codes
def _codes(codes, K, grid_shape=None, name="codes", min_rows=0):
    """``codes`` as an int64 array (n, *grid), checked: integers in [0, K), the grid shape of the fit."""
    if isinstance(codes, np.ndarray):
        a = codes
    else:
        try:
            a = np.asarray(codes)
        except (ValueError, TypeError) as e:
            raise TypeError(f"{name} must be an array of ints, got {type(codes).__name__} ({e})") from None
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an array of ints (code indices), got dtype {a.dtype}")
    if a.ndim < 1:
        raise ValueError(f"{name} must have shape (n,), (n, L) or (n, h, w), got a scalar")
    if grid_shape is not None and a.shape[1:] != tuple(grid_shape):
        raise ValueError(f"{name} must have shape (n, {', '.join(map(str, grid_shape))}) (n, *grid_shape of the "
                         f"fit), got {a.shape}" if grid_shape else
                         f"{name} must have shape (n,) (the fit's codes had one position), got {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} must hold at least {min_rows} example(s), got {a.shape[0]}")
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < 0 or hi >= K:
            bad = lo if lo < 0 else hi
            where = np.unravel_index(int(np.argmax(a == bad)), a.shape)
            raise ValueError(f"{name} must hold code indices in [0, {K}) (codebook_size {K}), got {int(bad)} at "
                             f"index {tuple(int(i) for i in where)}")
    return np.ascontiguousarray(a, dtype=np.int64)


class _Prior:
    """What both priors share: the codebook size, the grid shape of the fit, nll_bits and the checks."""

    def __init__(self, codebook_size):
        self.codebook_size = check_int(codebook_size, "codebook_size", high=_core.MAX_WIDTH)
        self.grid_shape = None     # set by fit

    @property
    def num_positions(self):
        """int: L, the positions of one grid (the product of grid_shape); None before fit."""
        return None if self.grid_shape is None else math.prod(self.grid_shape)

    def _fitted(self, what):
        if self.grid_shape is None:
            raise RuntimeError(f"{type(self).__name__}.{what}: the prior is not fitted; call fit(codes) first")

    def _check(self, codes, what):
        self._fitted(what)
        return _codes(codes, self.codebook_size, self.grid_shape).reshape(-1, self.num_positions)   # (n, L)

    def nll_bits(self, codes):
        """The mean over the examples of -log2 p(codes): the negative log-likelihood in bits per example.

        Parameters
        ----------
        codes : int array, shape (n, *grid_shape), n >= 1

        Returns
        -------
        float
        """
        self._fitted("nll_bits")
        lp = self.log_prob(codes)
        if lp.size == 0:
            raise ValueError("codes must hold at least 1 example for a mean, got 0")
        return float(-np.mean(lp) / math.log(2))

    def _n_seed(self, n, seed):
        self._fitted("sample")
        return check_int(n, "n", low=0), check_seed(seed, high=None)

    # ------------------------------------------------------------ files
    def save(self, path):
        """Write the prior (its configuration and, once fitted, what the fit learned) to ``path``.

        The archive of :meth:`vaecore.VAE.save` (atomic, checksummed): :meth:`load` and
        ``vaecore.load`` read it back, and the prior they return gives bitwise the same
        ``log_prob`` and ``sample``. An unfitted prior saves its configuration alone.

        Parameters
        ----------
        path : str, bytes, os.PathLike or binary file object
        """
        _check_save_path(path)
        meta = {"magic": _MAGIC, "format_version": FORMAT_VERSION, "class": type(self).__name__,
                "config": self.config, "grid_shape": None if self.grid_shape is None else list(self.grid_shape)}
        arrays = self._fit_arrays(meta) if self.grid_shape is not None else {}
        _atomic_savez(path, meta, arrays)

    @classmethod
    def load(cls, path):
        """Read a prior of this class written by :meth:`save`.

        Raises FileNotFoundError for a missing file and ValueError for one that is not a
        vaecore file, is damaged, or holds another class (``vaecore.load`` returns
        whatever a file holds).
        """
        meta, arrays = _load_class(path, cls.__name__, False, "with_optimizer")
        return _from_saved(meta, arrays, path)


# ------------------------------------------------------------------ independent
class IndependentPrior(_Prior):
    """A categorical distribution per grid position, fitted by counting with additive smoothing.

    p(c) = prod_i p_i(c_i),  p_i(k) = (count_i(k) + a) / (n + K a),

    where count_i(k) is how many of the n fitted grids hold code k at
    position i, K = codebook_size and a = smoothing (a = 1 is Laplace's rule).
    It ignores every dependence between positions, so its samples have the
    right codes in each place but no coherence between places.

    Parameters
    ----------
    codebook_size : int
        K, the number of codes; codes are ints in [0, K).
    smoothing : float, default 1.0
        a >= 0, added to every count. With a = 0 a code never seen at a
        position has probability 0 there (log_prob -inf).

    Attributes
    ----------
    grid_shape : tuple of int
        The shape of one example's codes at fit ((h, w), (L,) or ()).
    counts : ndarray (L, K) of int64
        The counts of the fit.
    log_probs : ndarray (L, K) of float64
        log p_i(k).

    Examples
    --------
    >>> import numpy as np, vaecore
    >>> codes = np.random.default_rng(0).integers(0, 8, size=(100, 4, 4))
    >>> p = vaecore.IndependentPrior(8).fit(codes)
    >>> p.sample(2, seed=0).shape
    (2, 4, 4)
    """

    def __init__(self, codebook_size, smoothing=1.0):
        super().__init__(codebook_size)
        self.smoothing = check_real(smoothing, "smoothing")
        self.counts = None
        self.log_probs = None

    def __repr__(self):
        return (f"IndependentPrior(codebook_size={self.codebook_size}, smoothing={self.smoothing}, "
                f"grid_shape={self.grid_shape})")

    @property
    def config(self):
        """dict: the constructor's arguments (``IndependentPrior(**config)`` is an unfitted twin)."""
        return {"codebook_size": self.codebook_size, "smoothing": self.smoothing}

    def _fit_arrays(self, meta):
        """The arrays of what fit learned, for save (meta gets the rest: nothing here)."""
        return {"counts": np.array(self.counts)}

    def _set_counts(self, counts, n):
        """What fit keeps of counts (L, K) of n grids: the counts and log p_i(k)."""
        a, K = self.smoothing, self.codebook_size
        with np.errstate(divide="ignore"):   # a = 0: log 0 = -inf for a code never seen at a position
            self.log_probs = np.log(counts + a) - np.log(n + K * a)         # (L, K); n >= 1, so n + K a > 0
        self.counts = counts

    def _restore_fit(self, meta, arrays, name):
        """What _fit_arrays saved, checked against the configuration, put back (ValueError if it does not fit)."""
        counts = arrays.get("counts")
        ok = (counts is not None and counts.dtype == np.int64 and counts.shape == (self.num_positions,
                                                                                    self.codebook_size)
              and not (counts < 0).any())
        # every position counts the same n >= 1 grids (a grid of no positions leaves no trace of n)
        n = int(counts[0].sum()) if ok and counts.shape[0] else 1
        if not ok or n < 1 or (counts.sum(axis=1) != n).any():
            raise ValueError(f"{name}: the counts are missing or do not fit the configuration")
        self._set_counts(counts, n)

    def fit(self, codes):
        """Count the codes of each position: codes is an int array (n, *grid), n >= 1. Returns self."""
        c = _codes(codes, self.codebook_size, min_rows=1)
        n, K = c.shape[0], self.codebook_size
        flat = c.reshape(n, -1)                                              # (n, L)
        Lpos = flat.shape[1]
        counts = np.zeros((Lpos, K), dtype=np.int64)                         # (L, K)
        np.add.at(counts, (np.broadcast_to(np.arange(Lpos), flat.shape), flat), 1)
        self._set_counts(counts, n)
        self.grid_shape = tuple(c.shape[1:])
        return self

    def log_prob(self, codes):
        """log p(codes) (natural log) of each example's whole grid: codes (n, *grid_shape) -> (n,) float64."""
        c = self._check(codes, "log_prob")                                   # (n, L)
        return self.log_probs[np.arange(c.shape[1]), c].sum(axis=1)

    def sample(self, n, seed=0):
        """n grids drawn from the prior: an int64 array (n, *grid_shape), the same for the same seed."""
        n, seed = self._n_seed(n, seed)
        rng = np.random.default_rng(seed)
        probs = np.exp(self.log_probs)                                       # (L, K)
        cdf = np.cumsum(probs, axis=1)
        cdf /= cdf[:, -1:]
        u = rng.random((n, probs.shape[0]))                                  # (n, L)
        out = np.empty((n, probs.shape[0]), dtype=np.int64)
        for i in range(probs.shape[0]):
            out[:, i] = np.minimum(np.searchsorted(cdf[i], u[:, i], side="right"), self.codebook_size - 1)
        return out.reshape((n, *self.grid_shape))


# ------------------------------------------------------------------ MADE
def made_masks(L_pos, K, hidden):
    """MADE's connectivity masks (Germain et al. 2015) for L positions of K codes each.

    The input unit of position j (its K one-hot units) has degree j + 1, the
    output logits of position i degree i + 1; hidden unit u of every hidden
    layer has degree m(u) = 1 + (u mod (L - 1)) (1 when L = 1), so every
    degree in [1, L - 1] is used. A hidden unit sees the units below of
    degree <= its own; an output sees the units below of degree strictly
    below its own. So the logits of position i depend only on positions < i,
    and those of position 0 on the biases alone.

    Returns a list of float64 arrays (I, O), one per Linear layer, in the
    layout of W (out = inp @ W + b).
    """
    d_in = np.repeat(np.arange(1, L_pos + 1), K)                             # (L K,)
    masks, below = [], d_in
    for h in hidden:
        m = 1 + np.arange(h) % max(L_pos - 1, 1)                             # (h,)
        masks.append((m[None, :] >= below[:, None]).astype(np.float64))
        below = m
    masks.append((d_in[None, :] > below[:, None]).astype(np.float64))      # (last, L K)
    return masks


class AutoregressivePrior(_Prior):
    """MADE: an autoregressive prior p(c) = prod_i p(c_i | c_<i) as one masked MLP.

    The grid is flattened in raster order to L positions and one-hot encoded,
    x (n, L K); a masked MLP (Germain et al. 2015, "MADE: Masked Autoencoder
    for Distribution Estimation") maps it to logits (n, L, K), and
    p(c_i = k | c_<i) = softmax_k(logits_i). The masks (:func:`made_masks`)
    make the logits of position i depend only on positions < i, so one pass
    gives every conditional at once:

        log p(c) = sum_i log softmax(logits_i)[c_i]

    Training minimises the cross-entropy -mean log p(c) over minibatches
    with Adam. The MLP's forward and backward passes run in vaecore's C core
    (``_core.Stack``, the layer stacks of the VAE and the GAN); masked weights
    start at 0 and their gradients are multiplied by the mask, so they stay
    exactly 0. Sampling draws the positions one by one (L passes).

    Parameters
    ----------
    codebook_size : int
        K, the number of codes.
    hidden : tuple of int, default (512,)
        Hidden widths of the MLP (may be empty: one masked linear layer).
    activation : {"tanh", "relu", "leaky_relu", "sigmoid", "elu"}, default "relu"
    dtype : {"float32", "float64"}, default "float32"
    seed : int, default 0
        Seeds the initial weights (Glorot's or He's uniform rule, then masked).

    Attributes
    ----------
    grid_shape : tuple of int
        The shape of one example's codes at fit.
    history : list of float
        Per epoch of the last fit: the mean training NLL in nats per example
        (each minibatch's loss before its update, weighted by its rows).
    val_history : list of float
        Per epoch of the last fit with ``validation_data``: the held-out
        codes' mean NLL in nats per example after that epoch (else empty).
    params : ndarray
        The MLP's live parameter buffer (after fit).

    Examples
    --------
    >>> import numpy as np, vaecore
    >>> codes = np.random.default_rng(0).integers(0, 4, size=(64, 3, 3))
    >>> p = vaecore.AutoregressivePrior(4, hidden=(32,)).fit(codes, epochs=2, progress=False)
    >>> p.sample(2, seed=0).shape
    (2, 3, 3)
    """

    def __init__(self, codebook_size, hidden=(512,), activation="relu", dtype="float32", seed=0):
        super().__init__(codebook_size)
        self.hidden = check_widths(hidden, "hidden", high=_core.MAX_WIDTH, max_len=_core.MAX_HIDDEN_LAYERS)
        if not isinstance(activation, str) or activation not in _core.ACTIVATIONS:
            raise ValueError(f"activation must be one of {_core.ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.dtype = check_float_dtype(dtype)
        self.seed = check_seed(seed, high=SEED_MAX)
        self.history = []
        self.val_history = []
        self._core = None
        self._masks = None      # [(offset, mask (I, O))] of each W in the parameter buffer

    def __repr__(self):
        n = "" if self._core is None else f", parameters={self._core.num_params:,}"
        return (f"AutoregressivePrior(codebook_size={self.codebook_size}, hidden={self.hidden}, "
                f"activation={self.activation!r}, dtype={self.dtype.name!r}, grid_shape={self.grid_shape}{n})")

    @property
    def config(self):
        """dict: the constructor's arguments (``AutoregressivePrior(**config)`` is an unfitted twin)."""
        return {"codebook_size": self.codebook_size, "hidden": list(self.hidden), "activation": self.activation,
                "dtype": self.dtype.name, "seed": self.seed}

    def _fit_arrays(self, meta):
        """The arrays of what fit learned, for save; meta gets the rest (the training history)."""
        meta["history"] = [float(h) for h in self.history]
        meta["val_history"] = [float(h) for h in self.val_history]
        return {"params": np.array(self._core.params)}

    def _restore_fit(self, meta, arrays, name):
        """What _fit_arrays saved, checked against the configuration, put back (ValueError if it does not fit)."""
        self._build(self.grid_shape)
        params = arrays.get("params")
        if params is None or params.shape != self._core.params.shape or params.dtype != self._core.params.dtype:
            raise ValueError(f"{name}: the parameters are missing or do not fit the configuration")
        try:
            history = [float(h) for h in meta.get("history", [])]
            val_history = [float(h) for h in meta.get("val_history", [])]
        except (TypeError, ValueError):
            raise ValueError(f"{name}: the training history is damaged") from None
        self._core.params[...] = params
        self.history, self.val_history = history, val_history

    @property
    def params(self):
        """ndarray (num_params,): the MLP's live parameter buffer (masked weights are 0)."""
        self._fitted("params")
        return self._core.params

    def _build(self, grid_shape):
        """A fresh MLP for grids of grid_shape, its weights initialised from self.seed and masked."""
        Lpos, K = math.prod(grid_shape), self.codebook_size
        if Lpos * K > _core.MAX_WIDTH:
            raise ValueError(f"codes: the one-hot grid, {Lpos} positions x codebook_size {K}, must have at most "
                             f"{_core.MAX_WIDTH} values, got {Lpos * K}")
        layers = L.mlp(self.hidden, self.activation, Lpos * K)
        infos = L.infer(layers, (Lpos * K,), "MADE")
        core = _core.Stack((Lpos * K,), L.encode(infos), self.dtype.name, self.seed)
        init_weights(core, {"net": infos}, self.seed)
        masks = made_masks(Lpos, K, self.hidden)
        weights = [(off, shape) for name, off, shape in core.layout() if name.endswith(".W")]
        self._masks = [(off, m.astype(self.dtype)) for (off, shape), m in zip(weights, masks)]
        for off, m in self._masks:
            core.params[off:off + m.size] *= m.ravel()
        self._core = core
        self.grid_shape = tuple(grid_shape)

    def _onehot(self, c):
        """c (n, L) int -> x (n, L K) of the MLP's dtype."""
        n, Lpos = c.shape
        K = self.codebook_size
        x = np.zeros((n, Lpos * K), dtype=self.dtype)
        x[np.arange(n)[:, None], np.arange(Lpos) * K + c] = 1
        return x

    def _log_softmax(self, logits):
        """logits (n, L K) -> log-probabilities (n, L, K) in float64."""
        z = logits.reshape(logits.shape[0], -1, self.codebook_size).astype(np.float64)
        z = z - z.max(axis=2, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=2, keepdims=True))

    def _logits(self, c):
        """The MLP's logits (n, L, K) for codes c (n, L) (checked)."""
        return self._core.forward(self._onehot(c)).reshape(c.shape[0], -1, self.codebook_size)

    def loss_and_grad(self, codes):
        """(loss, grad): loss = -mean_n log p(codes_n) (nats), grad (num_params,) its gradient (masked).

        The gradient of the cross-entropy with respect to the logits is
        (softmax(logits) - onehot(codes)) / n; the C core carries it back
        through the MLP, then each W's gradient is multiplied by its mask.
        """
        c = self._check(codes, "loss_and_grad")
        if c.shape[0] < 1:
            raise ValueError("codes must hold at least 1 example(s), got 0")
        return self._loss_and_grad(c)

    def _loss_and_grad(self, c):
        n = c.shape[0]
        x = self._onehot(c)                                                  # (n, L K)
        logp = self._log_softmax(self._core.forward(x))                      # (n, L, K)
        rows, pos = np.arange(n)[:, None], np.arange(c.shape[1])[None, :]
        loss = -logp[rows, pos, c].sum() / n
        dlogits = np.exp(logp)                                               # softmax
        dlogits[rows, pos, c] -= 1
        dlogits /= n
        grad = self._core.backward(x, dlogits.reshape(n, -1).astype(self.dtype))
        for off, m in self._masks:
            grad[off:off + m.size] *= m.ravel()
        return float(loss), grad

    def fit(self, codes, epochs=20, batch_size=128, lr=1e-3, progress=True, seed=0, *, validation_data=None,
            callbacks=()):
        """Train the MLP from fresh weights (seeded by the constructor's seed) on codes (n, *grid), n >= 1.

        Minibatches of batch_size rows in an order shuffled per epoch by
        ``seed``; Adam (betas (0.9, 0.999), eps 1e-8) with learning rate lr.
        Records :attr:`history` (and :attr:`val_history`); a progress bar
        while training when progress. Returns self. Raises
        FloatingPointError, keeping the last good weights, if a gradient or
        an update is not finite.

        Parameters
        ----------
        validation_data : int array, shape (m, *grid), m >= 1, optional
            Held-out codes of the same grid: after every epoch their mean NLL
            (nats per example, ``-mean log_prob``) goes into
            :attr:`val_history` and the epoch's statistics as ``val_loss``.
            Training is the same with or without them.
        callbacks : sequence of callables, one callable, or None (no callbacks)
            Each called after every epoch as ``cb(epoch, stats, prior)`` with
            stats ``{"loss": training NLL, "val_loss": validation NLL (with
            validation_data)}``; training stops after an epoch for which one
            returns True. ``vaecore.EarlyStopping(patience)`` watches
            ``val_loss`` and puts the best epoch's weights back.
        """
        c = _codes(codes, self.codebook_size, min_rows=1)
        epochs = check_int(epochs, "epochs", low=0)
        batch_size = check_int(batch_size, "batch_size")
        lr = check_real(lr, "lr", allow_equal=False)
        seed = check_seed(seed, high=None)
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        val = None if validation_data is None else _codes(validation_data, self.codebook_size, c.shape[1:],
                                                          "validation_data", min_rows=1)
        callbacks = check_callbacks(callbacks)
        self._build(c.shape[1:])
        flat = c.reshape(c.shape[0], -1)                                     # (n, L)
        n = flat.shape[0]
        P = self._core.num_params
        m, v, t = np.zeros(P, self.dtype), np.zeros(P, self.dtype), np.zeros(1, np.int64)
        rng = np.random.default_rng(seed)
        self.history, self.val_history = [], []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=epochs, desc="fit AutoregressivePrior", unit="epoch", leave=False)
        try:
            for epoch in range(epochs):
                order = rng.permutation(n)
                total = 0.0
                for s in range(0, n, batch_size):
                    batch = flat[order[s:s + batch_size]]
                    loss, grad = self._loss_and_grad(batch)
                    self._core.adam_step(grad, m, v, t, lr, 0.9, 0.999, 1e-8)
                    total += loss * batch.shape[0]
                self.history.append(total / n)
                stats = {"loss": self.history[-1]}
                if val is not None:
                    self.val_history.append(float(-np.mean(self.log_prob(val))))
                    stats["val_loss"] = self.val_history[-1]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({("nll" if k == "loss" else "val_nll"): f"{x:.3f}" for k, x in stats.items()})
                if any([cb(epoch, stats, self) is True for cb in callbacks]):
                    break
        finally:
            if bar is not None:
                bar.close()
        if progress and self.history:
            val_part = (f", validation NLL {self.val_history[-1]:.4f} ({self.val_history[-1] / math.log(2):.2f} "
                        f"bits)" if self.val_history else "")
            print(f"AutoregressivePrior: {len(self.history)} epochs, training NLL {self.history[-1]:.4f} nats per "
                  f"example ({self.history[-1] / math.log(2):.2f} bits){val_part}", file=sys.stderr, flush=True)
        return self

    def log_prob(self, codes):
        """log p(codes) (natural log) of each example's whole grid: codes (n, *grid_shape) -> (n,) float64."""
        c = self._check(codes, "log_prob")                                   # (n, L)
        out = np.empty(c.shape[0])
        pos = np.arange(c.shape[1])[None, :]
        for s in range(0, c.shape[0], _CHUNK):
            part = c[s:s + _CHUNK]
            logp = self._log_softmax(self._core.forward(self._onehot(part)))   # (rows, L, K)
            out[s:s + _CHUNK] = logp[np.arange(part.shape[0])[:, None], pos, part].sum(axis=1)
        return out

    def sample(self, n, seed=0):
        """n grids drawn position by position: an int64 array (n, *grid_shape), the same for the same seed."""
        n, seed = self._n_seed(n, seed)
        rng = np.random.default_rng(seed)
        Lpos, K = self.num_positions, self.codebook_size
        out = np.zeros((n, Lpos), dtype=np.int64)
        u = rng.random((n, Lpos))                                            # (n, L): one uniform per draw
        for s in range(0, n, _CHUNK):
            part = out[s:s + _CHUNK]
            for i in range(Lpos):
                # position i's conditional depends only on positions < i, which are drawn already
                logp = self._log_softmax(self._core.forward(self._onehot(part)))[:, i]   # (rows, K)
                cdf = np.cumsum(np.exp(logp), axis=1)
                cdf /= cdf[:, -1:]
                part[:, i] = np.minimum((cdf < u[s:s + _CHUNK, i:i + 1]).sum(axis=1), K - 1)
        return out.reshape((n, *self.grid_shape))

    # ------------------------------------------------------------ pickle
    def __getstate__(self):
        """Everything but the C object, which is rebuilt from the configuration and the parameters."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_core", "_masks")}
        state["dtype"] = self.dtype.name          # plain values pickle without NumPy's reconstructors
        state["params"] = None if self._core is None else np.array(self._core.params)
        return state

    def __setstate__(self, state):
        state = dict(state)
        params = state.pop("params")
        state.setdefault("val_history", [])   # pickled before fit had validation_data
        self.__dict__.update(state)
        self.dtype = np.dtype(self.dtype)
        self._core = self._masks = None
        if self.grid_shape is not None:
            self._build(self.grid_shape)
            self._core.params[...] = params


def _from_saved(meta, arrays, path):
    """The prior of a checked archive (class IndependentPrior or AutoregressivePrior); vaecore.load comes
    here for those classes."""
    name = _name(path)
    cls = {"IndependentPrior": IndependentPrior, "AutoregressivePrior": AutoregressivePrior}[meta["class"]]
    try:
        config = dict(meta["config"])
        if "hidden" in config:
            config["hidden"] = tuple(config["hidden"])
        prior = cls(**config)
        grid = meta["grid_shape"]
        if grid is not None:
            if not all(isinstance(g, int) and g >= 0 for g in grid):
                raise ValueError(f"grid_shape must be a list of ints >= 0, got {grid!r}")
            prior.grid_shape = tuple(grid)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: the prior's configuration is damaged: {e}") from None
    if prior.grid_shape is not None:
        prior._restore_fit(meta, arrays, name)
    return prior
