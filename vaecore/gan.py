"""Generative adversarial networks on vaecore's C core, to compare with its VAEs.

A GAN (Goodfellow et al. 2014, "Generative Adversarial Nets") pits a
generator G, which maps noise z ~ N(0, I) to data, against a discriminator D,
which maps data to one logit (real vs fake). With softplus(a) = log(1 + e^a)
(computed stably as max(a, 0) + log1p(exp(-|a|))), the batch losses are

    d_loss = mean_i softplus(-D(x_i)) + mean_j softplus(D(G(z_j)))
    g_loss = mean_j softplus(-D(G(z_j)))          (the non-saturating loss)

Training alternates k discriminator updates (a real batch and a fake batch
each) with one generator update, each network with its own Adam (betas (0.5,
0.999) by default, as DCGAN: Radford et al. 2016); one training step is one C
call. The networks are stacks of :mod:`vaecore.layers`, the same catalogue the
VAE uses, so the two models can be compared layer for layer
(``notebooks/07_vae_vs_gan.ipynb``).

The training loop is :func:`fit_gan` (``vaecore.fit`` sends a GAN there); its
record is a :class:`GANHistory`.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _core
from . import layers as L
from ._checks import SEED_MAX, check_callbacks, check_float_dtype, check_int, check_seed, check_widths
from .io import _atomic_savez, _check_save_path, _load_class, _model_state, _name, _restore
from .model import _MAX_ROWS, VAE, fixed, fixed_config, init_weights
from .optim import Adam, Optimizer
from .train import History, _HoldInterrupt, _schedule

__all__ = ["GAN", "GANHistory", "fit_gan", "GAN_BETAS"]

GAN_BETAS = (0.5, 0.999)     # Adam's betas for both networks (DCGAN, Radford et al. 2016)
_DEFAULT_HIDDEN = (128, 128)


class GAN:
    """A generative adversarial network: a generator stack and a discriminator stack.

    Two ways to describe the networks:

    - the layer form, ``GAN(data_dim=2, latent_dim=2, generator=[...],
      discriminator=[...])`` with layers of :mod:`vaecore.layers`: the
      generator maps z (latent_dim,) to the data's shape (or a flat row of
      its size), the discriminator maps an example to one logit;
    - the shortcut, ``GAN(data_dim, latent_dim, generator_hidden=(128, 128),
      discriminator_hidden=(128, 128), activation="relu")``: dense layers of
      those widths with one activation; the generator's last layer is
      ``Linear(data_dim)``, the discriminator's ``Linear(1)``.

    Parameters
    ----------
    data_dim : int
        Width D of the data (a synonym of ``data_shape=(D,)``).
    latent_dim : int
        Width K of the noise z.
    generator, discriminator : list of layers, optional
        The layer form (both or neither).
    generator_hidden, discriminator_hidden : tuple of int, default (128, 128)
        The shortcut's hidden widths.
    activation : {"tanh", "relu", "leaky_relu", "sigmoid", "elu"}, default "relu"
        The shortcut's hidden activation.
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initial weights and the GAN's own generator of noise.
    data_shape : tuple of int, optional
        The shape of one example, (D,) or (C, H, W) for images.

    Attributes
    ----------
    params : ndarray, shape (num_params,)
        The live parameter buffer: the generator's layers first, then the
        discriminator's (:meth:`named_params`).

    Notes
    -----
    Weights start as in :class:`vaecore.VAE` (Glorot's uniform rule, He's
    before a rectifier, zero biases).

    Examples
    --------
    >>> import vaecore
    >>> X, mode = vaecore.datasets.ring_of_gaussians(512, seed=0)
    >>> g = vaecore.GAN(2, 2, generator_hidden=(32,), discriminator_hidden=(32,), seed=0)
    >>> opt_g, opt_d = g.optimizers(lr=1e-3)
    >>> stats = g.train_step(X[:64], opt_g, opt_d)
    >>> g.generate(5, seed=1).shape
    (5, 2)
    """

    def __init__(self, data_dim=None, latent_dim=None, generator=None, discriminator=None, *,
                 generator_hidden=_DEFAULT_HIDDEN, discriminator_hidden=_DEFAULT_HIDDEN, activation="relu",
                 dtype="float32", seed=0, data_shape=None):
        if latent_dim is None:
            raise TypeError("latent_dim is required: the width K of the generator's noise")
        latent_dim = check_int(latent_dim, "latent_dim", high=_core.MAX_WIDTH)
        shape = VAE._shape(data_dim, data_shape)
        D = math.prod(shape)
        dt = check_float_dtype(dtype)
        seed = check_seed(seed, high=SEED_MAX)
        layer_form = generator is not None or discriminator is not None
        if layer_form:
            if generator is None or discriminator is None:
                raise TypeError("the layer form needs both generator= and discriminator= (lists of vaecore.layers)")
            if (generator_hidden is not _DEFAULT_HIDDEN or discriminator_hidden is not _DEFAULT_HIDDEN
                    or activation != "relu"):
                raise TypeError("generator_hidden, discriminator_hidden and activation belong to the shortcut "
                                "form; with generator= and discriminator= the layers say it all")
            gen_layers, disc_layers = list(generator), list(discriminator)
        else:
            generator_hidden = check_widths(generator_hidden, "generator_hidden", high=_core.MAX_WIDTH,
                                            max_len=_core.MAX_HIDDEN_LAYERS)
            discriminator_hidden = check_widths(discriminator_hidden, "discriminator_hidden", high=_core.MAX_WIDTH,
                                                max_len=_core.MAX_HIDDEN_LAYERS)
            if activation not in _core.ACTIVATIONS:
                raise ValueError(f"activation must be one of {_core.ACTIVATIONS}, got {activation!r}")
            gen_layers = L.mlp(generator_hidden, activation, D)
            disc_layers = ([L.Flatten()] if len(shape) == 3 else []) + L.mlp(discriminator_hidden, activation, 1)
        gen_infos = L.infer(gen_layers, (latent_dim,), "generator")
        disc_infos = L.infer(disc_layers, shape, "discriminator")
        out = gen_infos[-1].out_shape if gen_infos else (latent_dim,)
        if out != shape and out != (D,):
            where = f"generator[{len(gen_infos) - 1}] {gen_infos[-1].layer!r}" if gen_infos else "the empty generator"
            raise ValueError(f"the generator must give data: {where} outputs shape {out}, the data has shape "
                             f"{shape}" + (f" (or a flat ({D},))" if len(shape) == 3 else ""))
        logit = disc_infos[-1].out_shape if disc_infos else shape
        if math.prod(logit) != 1:
            where = (f"discriminator[{len(disc_infos) - 1}] {disc_infos[-1].layer!r}" if disc_infos
                     else "the empty discriminator")
            raise ValueError(f"the discriminator must give one logit per example: {where} outputs shape {logit}; "
                             f"end it with Linear(1)")
        self._core = _core.Gan(shape, latent_dim, L.encode(gen_infos), L.encode(disc_infos), dt.name, seed)
        self._fixed = fixed_config(self._core, ("data_shape",))
        self._infos = (gen_infos, disc_infos)
        self._layers = (tuple(gen_layers), tuple(disc_layers))
        self._shortcut = None if layer_form else dict(generator_hidden=generator_hidden,
                                                      discriminator_hidden=discriminator_hidden,
                                                      activation=activation)
        self.seed = seed
        init_weights(self._core, {"gen": gen_infos, "disc": disc_infos}, seed)

    # ------------------------------------------------------------ structure
    data_shape = fixed("data_shape", "tuple: the shape of one example, (D,) or (C, H, W).")
    data_dim = fixed("dim", "int: size D of one example.")
    latent_dim = fixed("latent_dim", "int: width K of the noise.")
    dtype = fixed("dtype", "numpy.dtype: float32 or float64.")
    # the helpers of VAE that only need these names (argument conversion, reshaping)
    input_shape = data_shape
    input_dim = data_dim
    _matrix = VAE._matrix
    _x = VAE._x
    _shaped = VAE._shaped

    @property
    def config(self):
        """dict: everything needed to rebuild the GAN (save/load and pickling use it)."""
        c = {"data_shape": list(self.data_shape), "latent_dim": self.latent_dim, "dtype": self.dtype.name,
             "seed": self.seed}
        if self._shortcut is not None:
            c.update(generator_hidden=list(self._shortcut["generator_hidden"]),
                     discriminator_hidden=list(self._shortcut["discriminator_hidden"]),
                     activation=self._shortcut["activation"])
        else:
            c.update(generator=[L.to_dict(x) for x in self._layers[0]],
                     discriminator=[L.to_dict(x) for x in self._layers[1]])
        return c

    params = VAE.params                 # (num_params,) the live buffer, the generator's part first
    num_params = VAE.num_params
    rng_state = VAE.rng_state           # the state of the GAN's noise generator (settable)
    _names = {}                         # VAE.named_params' renaming: none here

    @property
    def num_generator_params(self):
        """int: the generator's parameters, ``params[:num_generator_params]``; the discriminator's follow."""
        return self._core.num_gen_params

    def named_params(self, buffer=None):
        """The parameters by name, as views into :attr:`params` (or into ``buffer``, a (num_params,) array).

        Returns
        -------
        list of (str, ndarray)
            In buffer order: ``gen.i.W``, ``gen.i.b`` for each layer with
            parameters at index i of the generator list, then ``disc.i.W``,
            ``disc.i.b`` for the discriminator list. Linear W is (in, out),
            Conv2d W (C_out, C_in, kH, kW), ConvTranspose2d W (C_in, C_out,
            kH, kW), as in :meth:`vaecore.VAE.named_params`.
        """
        return VAE.named_params(self, buffer)

    def __repr__(self):
        head = (f"GAN(data_shape={self.data_shape}, latent_dim={self.latent_dim}, dtype={self.dtype.name!r})")
        rows = [(f"generator[{i.index}] {i.layer!r}", i.out_shape, i.num_params) for i in self._infos[0]]
        rows += [(f"discriminator[{i.index}] {i.layer!r}", i.out_shape, i.num_params) for i in self._infos[1]]
        width = max([len(r[0]) for r in rows] + [5]) + 2
        lines = [head, f"  {'layer':<{width}}{'output shape':<16}{'params':>10}"]
        lines += [f"  {name:<{width}}{str(shape):<16}{n:>10,}" for name, shape, n in rows]
        lines.append(f"  parameters: {self.num_params:,} (generator {self.num_generator_params:,})")
        return "\n".join(lines)

    # ------------------------------------------------------------ computing
    def _z(self, z):
        return self._matrix(z, "z", self.latent_dim)

    def generate(self, n=None, seed=None, *, z=None):
        """Samples G(z): ``generate(n, seed=None)`` draws z ~ N(0, I); ``generate(z=...)`` uses the given z.

        Parameters
        ----------
        n : int
            Number of samples (with z None).
        seed : int, optional
            Seeds a fresh noise generator; None uses (and advances) the GAN's.
        z : array_like, shape (m, latent_dim), optional

        Returns
        -------
        ndarray, shape (n, *data_shape)
        """
        if z is not None:
            if n is not None or seed is not None:
                raise TypeError("give n (and seed) or z, not both")
            return self._shaped(self._core.generate(self._z(z)))
        if n is None:
            raise TypeError("generate needs n (the number of samples) or z=")
        n = check_int(n, "n", low=0, high=_MAX_ROWS)
        seed = check_seed(seed, high=SEED_MAX, allow_none=True)
        if n == 0:
            return np.empty((0, *self.data_shape), dtype=self.dtype)
        return self._shaped(self._core.generate(self._core.normal(n, seed)))

    def discriminate(self, x):
        """D's logits for x (n, D) or (n, *data_shape): ndarray of shape (n,), > 0 meaning "real"."""
        return self._core.discriminate(self._x(x))[:, 0]

    def d_loss_and_grad(self, x, z):
        """The discriminator's loss on real rows x and fakes G(z), and its gradient.

        ``d_loss = mean_i softplus(-D(x_i)) + mean_j softplus(D(G(z_j)))``.

        Parameters
        ----------
        x : array_like, shape (n, data_dim)
        z : array_like, shape (m, latent_dim)

        Returns
        -------
        stats : dict
            ``d_loss``, ``acc_real`` (share of x with D(x) > 0) and
            ``acc_fake`` (share of G(z) with D(G(z)) < 0).
        grad : ndarray, shape (num_params,)
            d d_loss / d params in the layout of :attr:`params`, zero on the
            generator's part.
        """
        (d, ar, af), grad = self._core.d_loss(self._x(x), self._z(z), True)
        return {"d_loss": d, "acc_real": ar, "acc_fake": af}, grad

    def g_loss_and_grad(self, z):
        """The generator's (non-saturating) loss ``mean_j softplus(-D(G(z_j)))`` and its gradient.

        Returns
        -------
        stats : dict
            ``g_loss``.
        grad : ndarray, shape (num_params,)
            d g_loss / d params, zero on the discriminator's part (the
            gradient flows through D into G; D's own parameters get none).
        """
        g, grad = self._core.g_loss(self._z(z), True)
        return {"g_loss": g}, grad

    def optimizers(self, lr=2e-4, betas=GAN_BETAS, *, clip_norm=None):
        """(opt_g, opt_d): one :class:`vaecore.Adam` per network, with DCGAN's betas by default."""
        return (Adam(self, lr=lr, betas=betas, clip_norm=clip_norm),
                Adam(self, lr=lr, betas=betas, clip_norm=clip_norm))

    def train_step(self, x, opt_g, opt_d, *, k=1):
        """One training step in one C call: k discriminator updates, then one generator update.

        Each discriminator update uses a real batch (the next ``len(x) / k``
        rows of x) and as many fakes from fresh noise; the generator update
        uses the last fakes, scored by the updated discriminator.

        Parameters
        ----------
        x : array_like, shape (k * b, data_dim)
        opt_g, opt_d : Adam or SGD
            Two different optimizers created for this GAN (:meth:`optimizers`);
            each updates only its own network's parameters and counts its own steps.
        k : int, default 1

        Returns
        -------
        dict
            ``d_loss``, ``acc_real``, ``acc_fake`` (means over the k
            discriminator updates, each before its update) and ``g_loss``
            (before the generator's update).

        Raises
        ------
        FloatingPointError
            If a loss, a gradient or an update is NaN or Inf; then nothing
            changes (parameters, optimizers, noise generator).
        """
        for name, opt in (("opt_g", opt_g), ("opt_d", opt_d)):
            if not isinstance(opt, Optimizer):
                raise TypeError(f"{name} must be a vaecore.Adam or vaecore.SGD, got {type(opt).__name__}")
            if opt.model is not self:
                raise ValueError(f"{name} was created for another model; use GAN.optimizers()")
        if opt_g is opt_d:
            raise ValueError("opt_g and opt_d must be two optimizers (each network has its own)")
        k = check_int(k, "k")
        x = self._x(x)
        if x.shape[0] % k:
            raise ValueError(f"x must hold k = {k} real batches of equal size, got {x.shape[0]} rows")
        try:
            d, g, ar, af = self._core.train_step(x, k, opt_g._core_args(), opt_d._core_args())
        except FloatingPointError as e:
            raise FloatingPointError(f"step {opt_g.t + 1}: {e}") from None
        return {"d_loss": d, "g_loss": g, "acc_real": ar, "acc_fake": af}

    # ------------------------------------------------------------ files
    def save(self, path, optimizers=None):
        """Write the GAN (and optionally its two optimizers ``(opt_g, opt_d)``) to ``path``.

        The same archive as :meth:`vaecore.VAE.save` (atomic for a path,
        checksummed); :meth:`load` and ``vaecore.load`` read it.
        """
        _check_save_path(path)
        tagged = ()
        if optimizers is not None:
            pair = tuple(optimizers) if isinstance(optimizers, (tuple, list)) else ()
            if len(pair) != 2 or any(not isinstance(o, Optimizer) or o.model is not self for o in pair):
                raise ValueError("optimizers must be a pair (opt_g, opt_d) of vaecore optimizers of this GAN")
            tagged = tuple(zip(("g", "d"), pair))
        _atomic_savez(path, *_model_state(self, "GAN", tagged))

    @classmethod
    def load(cls, path, *, with_optimizers=False):
        """Read a GAN written by :meth:`save`: the GAN, or ``(gan, (opt_g, opt_d))`` (None if not saved)."""
        meta, arrays = _load_class(path, "GAN", with_optimizers, "with_optimizers")
        return _from_saved(meta, arrays, path, with_optimizers)

    # ------------------------------------------------------------ pickle and copy
    _BUILT = ("_core", "_fixed", "_infos", "_layers", "_shortcut", "seed")

    def __getstate__(self):
        """Configuration, parameters, noise generator state and any other attribute (the C object is rebuilt)."""
        extra = {k: v for k, v in self.__dict__.items() if k not in self._BUILT}
        return {"config": self.config, "params": np.array(self.params), "rng_state": self.rng_state,
                "extra": extra}

    def __setstate__(self, state):
        fresh = _from_config(state["config"])
        self.__dict__.update({k: fresh.__dict__[k] for k in self._BUILT})
        self.params[...] = state["params"]
        self.rng_state = state["rng_state"]
        self.__dict__.update(state["extra"])


def _from_config(c, path=None):
    try:
        common = dict(data_shape=tuple(c["data_shape"]), latent_dim=c["latent_dim"], dtype=c["dtype"], seed=c["seed"])
        if "generator" in c:
            return GAN(generator=[L.from_dict(d) for d in c["generator"]],
                       discriminator=[L.from_dict(d) for d in c["discriminator"]], **common)
        return GAN(generator_hidden=tuple(c["generator_hidden"]),
                   discriminator_hidden=tuple(c["discriminator_hidden"]), activation=c["activation"], **common)
    except (KeyError, TypeError) as e:
        where = "the configuration" if path is None else _name(path)
        raise ValueError(f"{where}: the GAN configuration is damaged ({e!r})") from None


def _from_saved(meta, arrays, path, with_optimizers):
    """The GAN (and optimizers) of a checked archive; vaecore.load comes here for class GAN."""
    g = _from_config(meta["config"], path)
    _restore(g, meta, arrays, _name(path))
    if not with_optimizers:
        return g
    if "optimizer_g" not in meta:
        return g, None
    opts = tuple(Optimizer._from_saved(g, dict(meta[f"optimizer_{tag}"]),
                                       {k[5:]: v for k, v in arrays.items() if k.startswith(f"opt{tag}_")})
                 for tag in ("g", "d"))
    return g, opts


# ------------------------------------------------------------------ training
@dataclass
class GANHistory(History):
    """What :func:`fit_gan` records, one entry per finished epoch (a :class:`vaecore.History`).

    Attributes
    ----------
    d_loss, g_loss : ndarray of float64, shape (epochs,)
        Epoch means of the steps' discriminator and generator losses.
    acc_real, acc_fake : ndarray of float64, shape (epochs,)
        Epoch means of D's accuracy on the real and on the fake rows (D(x) > 0
        counts as "real").
    epoch_seconds, lr, seconds, stopped_early
        As in :class:`vaecore.History`.
    optimizer : (Adam, Adam)
        ``(opt_g, opt_d)``; pass them to a later fit to continue.
    """

    d_loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    g_loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    acc_real: np.ndarray = field(default_factory=lambda: np.empty(0))
    acc_fake: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __len__(self):
        return len(self.d_loss)

    def __repr__(self):
        if not len(self):
            return "GANHistory(epochs=0)"
        return (f"GANHistory(epochs={len(self)}, d_loss={self.d_loss[-1]:.4g}, g_loss={self.g_loss[-1]:.4g}, "
                f"acc_real={self.acc_real[-1]:.3f}, acc_fake={self.acc_fake[-1]:.3f}, seconds={self.seconds:.2f})")


_GAN_KEYS = ("d_loss", "g_loss", "acc_real", "acc_fake")


def fit_gan(model, X, epochs=100, batch_size=64, optimizer=None, lr=2e-4, seed=0, callbacks=(), progress=True, *,
            k=1):
    """Train a GAN on X with shuffled mini-batches (``vaecore.fit`` calls this for a GAN).

    Every step is one C call: k discriminator updates, each on a real batch of
    ``batch_size`` rows and as many fakes, then one generator update. An epoch
    is one pass over X in steps of ``k * batch_size`` rows (a shorter last
    step takes the rows left, rounded down to a multiple of k).

    Parameters
    ----------
    model : GAN
    X : array_like, shape (n, data_dim) or (n, *data_shape)
    epochs : int, default 100
    batch_size : int, default 64
    optimizer : (opt_g, opt_d), optional
        None creates ``model.optimizers(lr)``: Adam with betas (0.5, 0.999).
    lr : float or callable, default 2e-4
        With optimizer None, the learning rate of both; a function of the
        0-based epoch sets both optimizers' rate at the start of every epoch.
    seed : int, default 0
        Seeds the shuffling (the noise comes from the GAN's own generator).
    callbacks : sequence of callables, one callable, or None (no callbacks)
        ``cb(epoch, stats, model)`` after every epoch, stats a dict of the
        epoch's d_loss, g_loss, acc_real, acc_fake, lr and seconds; True stops.
    progress : bool, default True
        A tqdm progress bar, and a summary line on stderr at the end.
    k : int, default 1
        Discriminator updates per generator update.

    Returns
    -------
    GANHistory

    Raises
    ------
    FloatingPointError
        If a step diverges (NaN or Inf): the GAN keeps its last good
        parameters and the message names the epoch and batch.
    """
    if not isinstance(model, GAN):
        raise TypeError(f"model must be a vaecore.GAN, got {type(model).__name__}")
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size")
    k = check_int(k, "k")
    seed = check_seed(seed, high=SEED_MAX, allow_none=True)
    X = model._x(X)
    if not np.isfinite(X).all():
        raise ValueError("X must be finite")
    if X.shape[0] < k:
        raise ValueError(f"X must have at least k = {k} rows, got {X.shape[0]}")
    lr_schedule = _schedule(lr, "lr") if callable(lr) else None
    if optimizer is None:
        opt_g, opt_d = model.optimizers(lr=2e-4 if lr_schedule is not None else lr)
    else:
        pair = tuple(optimizer) if isinstance(optimizer, (tuple, list)) else ()
        if len(pair) != 2 or any(not isinstance(o, Optimizer) or o.model is not model for o in pair) \
                or pair[0] is pair[1]:
            raise ValueError("optimizer must be a pair (opt_g, opt_d) of two vaecore optimizers of this GAN")
        opt_g, opt_d = pair
    callbacks = check_callbacks(callbacks)
    rng = np.random.default_rng(seed)
    n, step = X.shape[0], k * batch_size
    rows = {key: [] for key in (*_GAN_KEYS, "lr", "epoch_seconds")}
    hist = GANHistory(optimizer=(opt_g, opt_d))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs, desc="fit GAN", unit="epoch", leave=False)
    start = time.perf_counter()
    try:
        with _HoldInterrupt() as interrupt:
            for epoch in range(epochs):
                t0 = time.perf_counter()
                if lr_schedule is not None:
                    opt_g.lr = opt_d.lr = lr_schedule(epoch)
                Xp = X[rng.permutation(n)]
                sums, seen = np.zeros(4), 0
                for i in range(0, n, step):
                    m = min(step, n - i) // k * k
                    if m == 0:
                        break
                    try:
                        s = model.train_step(Xp[i:i + m], opt_g, opt_d, k=k)
                    except FloatingPointError as e:
                        raise FloatingPointError(f"epoch {epoch}, batch {i // step}: {e}") from None
                    sums += m * np.array([s[key] for key in _GAN_KEYS])
                    seen += m
                    interrupt.check()
                sums /= seen
                dt = time.perf_counter() - t0
                stats = dict(zip(_GAN_KEYS, sums), lr=opt_d.lr, seconds=dt)
                for key in _GAN_KEYS:
                    rows[key].append(stats[key])
                rows["lr"].append(opt_d.lr)
                rows["epoch_seconds"].append(dt)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(d_loss=f"{sums[0]:.4g}", g_loss=f"{sums[1]:.4g}", refresh=False)
                if any([cb(epoch, stats, model) is True for cb in callbacks]):
                    hist.stopped_early = True
                    break
                interrupt.check()
    finally:
        if bar is not None:
            bar.close()
        for key, value in rows.items():
            setattr(hist, key, np.asarray(value, dtype=np.float64))
        hist.seconds = time.perf_counter() - start
    if progress:
        line = f"fit GAN: {len(hist)} epochs in {hist.seconds:.1f} s"
        if len(hist):
            line += (f", d_loss {hist.d_loss[-1]:.4g}, g_loss {hist.g_loss[-1]:.4g}, "
                     f"D accuracy real {hist.acc_real[-1]:.3f} fake {hist.acc_fake[-1]:.3f}")
        print(line, file=sys.stderr, flush=True)
    return hist
