"""Variational autoencoders (and plain autoencoders) on vaecore's C core.

A VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes") encodes x into
a Gaussian cloud q(z|x) = N(mu, diag(exp(logvar))), samples z = mu + sigma*eps
with the reparameterization trick, and decodes z back into data. It is trained
by minimising, per example,

    recon_i + beta * kl_i,   kl_i = -1/2 sum_k (1 + logvar - mu^2 - exp(logvar))

with beta = 1 the negative ELBO and beta > 1 the beta-VAE (Higgins et al.
2017). The reconstruction terms are

    gaussian   recon_i = sum_j (x_ij - xhat_ij)^2
               = -log p(x|z) - (D/2) log(pi)   (a Gaussian of variance 1/2 around xhat)
    bernoulli  recon_i = sum_j softplus(l_ij) - x_ij l_ij = -log p(x|z)   (l: logits)

``log_likelihood`` is the importance-weighted bound of Burda et al. 2016
("Importance Weighted Autoencoders").

Every heavy step (forward, backward, sampling, optimizer update) is one call
into ``vaecore._core``; this module converts and checks arguments and
initialises weights. The optimizers are in ``optim.py``, the file format in
``io.py``, the argument checks in ``_checks.py``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from . import _core
from . import layers as L
from ._checks import SEED_MAX, check_int, check_real, check_float_dtype, check_seed, check_widths
from .io import FORMAT_VERSION, _a, _atomic_savez, _check_save_path, _checked_load, _model_state, _name, _restore
from .optim import SGD, Adam, Optimizer   # also re-exported: vaecore.model.Adam etc. keep working

__all__ = ["VAE", "AE", "VAEConfig", "load", "Adam", "SGD", "Optimizer", "FORMAT_VERSION"]

_LOG_PI = math.log(math.pi)
_LOG_2PI = math.log(2 * math.pi)
_MAX_ROWS = 2**63 - 1   # the C core counts rows in a Py_ssize_t


_RECTIFIERS = (L.ReLU, L.LeakyReLU, L.ELU)
_DEFAULT_HIDDEN = (64, 64)


def fixed_config(core, shape_keys):
    """A model's C configuration read once: its C object builds the dict afresh on each
    access (about 2 us, a few % of a spiral step), and every call checks its arrays
    against it. The shapes under shape_keys become tuples, the first one's size is added
    as "dim" and "dtype" becomes a numpy.dtype."""
    c = dict(core.config)
    for k in shape_keys:
        c[k] = tuple(c[k])
    c["dim"] = math.prod(c[shape_keys[0]])
    c["dtype"] = np.dtype(c["dtype"])
    return c


def fixed(key, doc):
    """A read-only property: the value under key of the model's fixed_config."""
    return property(lambda self: self._fixed[key], doc=doc)


def init_weights(core, sides, seed, fill=None):
    """Initialise a C model's parameters in place, in layout order, from ``np.random.default_rng(seed)``.

    Weights get Glorot's uniform rule (Glorot & Bengio 2010), or He's (He et
    al. 2015) for a layer followed by relu, leaky_relu or elu; fan-in and
    fan-out of a convolution count its kernel; biases start at zero.
    ``sides`` maps a layout prefix ("enc", "gen", ...) to its stack's
    LayerInfos; ``fill`` maps names to a constant (``dec.logvar``).
    """
    rng = np.random.default_rng(seed)
    rectified = set()   # layers followed by a rectifier get He's bound
    for side, infos in sides.items():
        for info, nxt in zip(infos, infos[1:]):
            if info.params and isinstance(nxt.layer, _RECTIFIERS):
                rectified.add(f"{side}.{info.index}.W")
    for name, off, shape in core.layout():
        view = core.params[off:off + math.prod(shape)].reshape(shape)
        if fill and name in fill:
            view[...] = fill[name]
        elif name.endswith(".b"):
            view[...] = 0
        else:
            if len(shape) == 2:
                fan_in, fan_out = shape
            else:   # Conv2d (O, C, kh, kw) or ConvTranspose2d (C, O, kh, kw): count the kernel
                k = shape[2] * shape[3]
                side, index = name.split(".")[:2]
                conv_t = isinstance(sides[side][int(index)].layer, L.ConvTranspose2d)
                fan_in, fan_out = (shape[0] * k, shape[1] * k) if conv_t else (shape[1] * k, shape[0] * k)
            # He's rule keeps the variance through rectifiers; Glorot's for the rest
            bound = math.sqrt(6.0 / fan_in) if name in rectified else math.sqrt(6.0 / (fan_in + fan_out))
            view[...] = rng.uniform(-bound, bound, size=shape)


@dataclass(frozen=True)
class VAEConfig:
    """The configuration of a :class:`VAE` or :class:`AE`: its constructor's arguments.

    ``VAE.cfg`` returns it resolved (decoder_hidden a tuple, dtype a name);
    ``VAE.config`` is the same as a dict, which is what a model file stores.
    The model checks the values; this class only holds them. A model has
    either the MLP form (input_dim, hidden, decoder_hidden, activation) or the
    layer form (input_shape, encoder, decoder); the other form's fields are None.
    """

    input_dim: int | None                   # D, width of the data (MLP form)
    latent_dim: int                         # K, width of the latent space
    hidden: tuple | None = (64, 64)         # widths of the encoder's hidden layers; () for none (MLP form)
    decoder_hidden: tuple | None = None     # widths of the decoder's hidden layers; None mirrors hidden
    activation: str | None = "tanh"         # of every hidden layer: tanh, relu, leaky_relu, sigmoid, elu
    likelihood: str = "gaussian"            # gaussian (mean), bernoulli (logits) or gaussian_learned
    dtype: str = "float32"                  # of the parameters and every computation: float32 or float64
    seed: int = 0                           # of the initial weights and of the model's noise generator
    input_shape: tuple | None = None        # (D,) or (C, H, W) (layer form)
    encoder: tuple | None = None            # layers from the data to the heads' input (layer form)
    decoder: tuple | None = None            # layers from z to the data (layer form)
    decoder_logvar: float = -4.0            # initial dec.logvar of likelihood="gaussian_learned"

    def to_dict(self):
        """The dict a model file stores: the MLP form's keys as they always were, the layer form with each
        layer as {"type": name, **fields}; decoder_logvar only for the learned variance."""
        d = dataclasses.asdict(self)
        if self.encoder is None:
            for key in ("input_shape", "encoder", "decoder"):
                d.pop(key)
        else:
            for key in ("input_dim", "hidden", "decoder_hidden", "activation"):
                d.pop(key)
            d["input_shape"] = list(self.input_shape)
            d["encoder"] = [L.to_dict(layer) for layer in self.encoder]
            d["decoder"] = [L.to_dict(layer) for layer in self.decoder]
        if self.likelihood != "gaussian_learned":
            d.pop("decoder_logvar")
        return d


class VAE:
    """A variational autoencoder: an encoder, two linear heads (mu, logvar), a decoder.

    Two ways to describe the networks:

    - the MLP form, ``VAE(input_dim, latent_dim, hidden=(64, 64), activation="tanh")``:
      dense layers of the given widths with one activation, the decoder
      mirroring the encoder;
    - the layer form, ``VAE(input_shape=(1, 28, 28), latent_dim=20, encoder=[...],
      decoder=[...])`` with layers of :mod:`vaecore.layers` (Linear, Conv2d,
      ConvTranspose2d, activations, Flatten, Reshape).

    Parameters
    ----------
    input_dim : int
        Width D of the data (a synonym of ``input_shape=(D,)``).
    latent_dim : int
        Width K of the latent space.
    hidden : tuple of int, default (64, 64)
        MLP form: widths of the encoder's hidden layers; ``()`` makes the heads read x.
    decoder_hidden : tuple of int or None
        MLP form: widths of the decoder's hidden layers; None mirrors the
        encoder (``reversed(hidden)``).
    activation : {"tanh", "relu", "leaky_relu", "sigmoid", "elu"}
        MLP form: activation of every hidden layer (leaky_relu has slope 0.01, elu alpha 1).
    likelihood : {"gaussian", "bernoulli", "gaussian_learned"}
        The decoder's output: the mean of a Gaussian of variance 1/2 (squared
        error loss), the logits of independent Bernoullis (x in [0, 1]), or
        the mean of a Gaussian whose per-dimension log-variance ``dec.logvar``
        (D,) is learned: recon_i = sum_j (x_ij - xhat_ij)^2 / (2 exp(lv_j))
        + lv_j / 2 + log(2 pi) / 2, the exact negative log-likelihood.
    dtype : {"float32", "float64"}
        Precision of the parameters and of every computation.
    seed : int
        Seeds the initial weights and the model's own generator of noise.
    input_shape : tuple of int, optional
        Layer form: the shape of one example, (D,) or (C, H, W) (NCHW images).
    encoder, decoder : list of layers, optional
        Layer form: the encoder maps an example to a vector or a (C, H, W)
        map (flattened for the heads); the decoder maps z to the data's shape
        (or to a flat row of its size). A stack that does not fit raises
        ValueError naming the layer (``decoder[5]``) and the shapes.
    decoder_logvar : float, default -4.0
        The initial value of every entry of ``dec.logvar`` (likelihood
        "gaussian_learned"). A small variance makes the reconstruction term
        worth the KL from the start: on the two spirals at beta = 1, log
        sigma^2 = 0 collapses the posterior (KL ~ 0.2 nats) while -4 keeps a
        2-nat code (see the README).

    Attributes
    ----------
    params : ndarray, shape (num_params,)
        Every weight and bias in one contiguous buffer, the live one: writing
        to it changes the model. The layout is :meth:`named_params`.

    Notes
    -----
    Weights are drawn with Glorot's uniform rule (Glorot & Bengio 2010), or
    He's (He et al. 2015) for a layer followed by relu, leaky_relu or elu;
    fan-in and fan-out of a convolution count its kernel (C * kH * kW and
    O * kH * kW); biases start at zero. The noise eps comes from xoshiro256**
    with the Box-Muller transform, inside the C core.

    Examples
    --------
    >>> import vaecore
    >>> X, t, arm = vaecore.datasets.two_spirals(n=500)
    >>> m = vaecore.VAE(2, 2, hidden=(32, 32), seed=0)
    >>> opt = vaecore.Adam(m, lr=1e-3)
    >>> stats = m.train_step(X[:64], opt)
    """

    _variational = True

    def __init__(self, input_dim=None, latent_dim=None, hidden=_DEFAULT_HIDDEN, *, decoder_hidden=None,
                 activation="tanh", likelihood="gaussian", dtype="float32", seed=0, input_shape=None,
                 encoder=None, decoder=None, decoder_logvar=-4.0):
        if latent_dim is None:
            raise TypeError("latent_dim is required: the width K of the latent space")
        latent_dim = check_int(latent_dim, "latent_dim", high=_core.MAX_WIDTH)
        shape = self._shape(input_dim, input_shape)
        D = math.prod(shape)
        if likelihood not in _core.LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {_core.LIKELIHOODS}, got {likelihood!r}")
        dt = check_float_dtype(dtype)
        seed = check_seed(seed, high=SEED_MAX)
        decoder_logvar = check_real(decoder_logvar, "decoder_logvar", low=-math.inf)
        layer_form = encoder is not None or decoder is not None
        if layer_form:
            if encoder is None or decoder is None:
                raise TypeError("the layer form needs both encoder= and decoder= (lists of vaecore.layers)")
            if hidden is not _DEFAULT_HIDDEN or decoder_hidden is not None or activation != "tanh":
                raise TypeError("hidden, decoder_hidden and activation belong to the MLP form; with encoder= "
                                "and decoder= the layers say it all")
            enc_layers, dec_layers = list(encoder), list(decoder)
        else:
            hidden = check_widths(hidden, "hidden", high=_core.MAX_WIDTH, max_len=_core.MAX_HIDDEN_LAYERS)
            decoder_hidden = (tuple(reversed(hidden)) if decoder_hidden is None else
                              check_widths(decoder_hidden, "decoder_hidden", high=_core.MAX_WIDTH,
                                           max_len=_core.MAX_HIDDEN_LAYERS))
            if activation not in _core.ACTIVATIONS:
                raise ValueError(f"activation must be one of {_core.ACTIVATIONS}, got {activation!r}")
            flatten = [L.Flatten()] if len(shape) == 3 else []
            enc_layers = flatten + L.mlp(hidden, activation)
            dec_layers = L.mlp(decoder_hidden, activation, D)
        enc_infos = L.infer(enc_layers, shape, "encoder")
        dec_infos = L.infer(dec_layers, (latent_dim,), "decoder")
        out = dec_infos[-1].out_shape if dec_infos else (latent_dim,)
        if out != shape and out != (D,):
            where = f"decoder[{len(dec_infos) - 1}] {dec_infos[-1].layer!r}" if dec_infos else "the empty decoder"
            raise ValueError(f"the decoder must give back the data: {where} outputs shape {out}, "
                             f"the data has shape {shape}" + (f" (or a flat ({D},))" if len(shape) == 3 else ""))
        self._core = _core.Model(shape, latent_dim, L.encode(enc_infos), L.encode(dec_infos), likelihood,
                                 self._variational, dt.name, seed)
        self._fixed = fixed_config(self._core, ("input_shape",))
        self._infos = (enc_infos, dec_infos)
        if layer_form:
            self._cfg = VAEConfig(None, latent_dim, None, None, None, likelihood, dt.name, seed,
                                  input_shape=shape, encoder=tuple(enc_layers), decoder=tuple(dec_layers),
                                  decoder_logvar=decoder_logvar)
            self._names = {}
        else:
            self._cfg = VAEConfig(D, latent_dim, hidden, decoder_hidden, activation, likelihood, dt.name, seed,
                                  decoder_logvar=decoder_logvar)
            self._names = self._mlp_names(enc_infos, dec_infos)
        self.seed = seed
        self._init_params(seed)

    @staticmethod
    def _shape(input_dim, input_shape):
        if input_shape is None:
            if input_dim is None:
                raise TypeError("give input_dim (flat data) or input_shape ((D,) or (C, H, W))")
            return (check_int(input_dim, "input_dim", high=_core.MAX_WIDTH),)
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (1, 3):
            raise ValueError(f"input_shape must be (D,) or (C, H, W), got {input_shape!r}")
        shape = tuple(check_int(v, f"input_shape[{i}]", high=_core.MAX_WIDTH) for i, v in enumerate(input_shape))
        if math.prod(shape) > _core.MAX_WIDTH:
            raise ValueError(f"input_shape must hold at most {_core.MAX_WIDTH} values, got {shape}")
        if input_dim is not None and check_int(input_dim, "input_dim") != math.prod(shape):
            raise ValueError(f"input_dim ({input_dim}) must be the size of input_shape {shape} "
                             f"({math.prod(shape)}); give one of them")
        return shape

    @staticmethod
    def _mlp_names(enc_infos, dec_infos):
        """The MLP form's names: its dense layers count 0, 1, ... on each side, the decoder's last is dec.out."""
        names = {}
        for side, infos in (("enc", enc_infos), ("dec", dec_infos)):
            dense = [info.index for info in infos if info.params]
            for k, i in enumerate(dense):
                label = "out" if side == "dec" and k == len(dense) - 1 else str(k)
                for part in ("W", "b"):
                    names[f"{side}.{i}.{part}"] = f"{side}.{label}.{part}"
        return names

    # ------------------------------------------------------------ structure
    @property
    def cfg(self):
        """VAEConfig: the model's configuration, resolved (decoder_hidden and dtype spelled out)."""
        return self._cfg

    @property
    def config(self):
        """dict: everything needed to rebuild the model (save/load use it); see :meth:`VAEConfig.to_dict`."""
        return self._cfg.to_dict()

    input_shape = fixed("input_shape", "tuple: the shape of one example, (D,) or (C, H, W).")
    input_dim = fixed("dim", "int: size D of one example (C*H*W for images).")
    latent_dim = fixed("latent_dim", "int: width K of the latent space.")
    likelihood = fixed("likelihood", "str: 'gaussian', 'bernoulli' or 'gaussian_learned'.")
    activation = property(lambda self: self._cfg.activation,
                          doc="str or None: the hidden activation of the MLP form (None for the layer form).")
    dtype = fixed("dtype", "numpy.dtype: float32 or float64.")

    @property
    def params(self):
        """ndarray, shape (num_params,): the live parameter buffer."""
        return self._core.params

    @property
    def num_params(self):
        """int: the number of parameters."""
        return self._core.num_params

    @property
    def rng_state(self):
        """tuple of 4 ints: the state of the model's noise generator (settable)."""
        return self._core.rng_state

    @rng_state.setter
    def rng_state(self, state):
        self._core.rng_state = tuple(state)

    def named_params(self, buffer=None):
        """The parameters by name, as views into :attr:`params`.

        Parameters
        ----------
        buffer : ndarray, shape (num_params,), optional
            Another buffer in the same layout, e.g. a gradient from
            :meth:`loss_and_grad` or an optimizer's moments: its parts are
            returned by name instead.

        Returns
        -------
        list of (str, ndarray)
            In buffer order. MLP form: ``enc.0.W`` (input_dim, h0), ``enc.0.b``
            (h0,), ..., ``enc.mu.W``, ``enc.mu.b``, ``enc.logvar.W``,
            ``enc.logvar.b``, ``dec.0.W`` (latent_dim, d0), ``dec.0.b``, ...,
            ``dec.out.W``, ``dec.out.b``. Layer form: ``enc.i.W``, ``enc.i.b``
            for each layer with parameters at index i of the encoder list, the
            heads, then ``dec.i.W``, ``dec.i.b`` for the decoder list. Linear W
            is (in, out) (``y = x @ W + b``), Conv2d W (C_out, C_in, kH, kW),
            ConvTranspose2d W (C_in, C_out, kH, kW). With the learned variance,
            ``dec.logvar`` (D,) comes last.
        """
        p = self._core.params
        if buffer is not None:
            if not isinstance(buffer, np.ndarray) or buffer.shape != (self.num_params,):
                got = buffer.shape if isinstance(buffer, np.ndarray) else type(buffer).__name__
                raise ValueError(f"buffer must be an ndarray of shape ({self.num_params},), got {got}")
            p = buffer
        return [(self._names.get(name, name), p[off:off + math.prod(shape)].reshape(shape))
                for name, off, shape in self._core.layout()]

    def _init_params(self, seed):
        enc_infos, dec_infos = self._infos
        init_weights(self._core, {"enc": enc_infos, "dec": dec_infos}, seed,
                     fill={"dec.logvar": self._cfg.decoder_logvar})

    def _layer_of(self, name):
        side, index = name.split(".")[:2]
        return self._infos[0 if side == "enc" else 1][int(index)].layer

    def __repr__(self):
        c = self._cfg
        kind = type(self).__name__
        if c.encoder is None:
            head = (f"{kind}(input_dim={c.input_dim}, latent_dim={c.latent_dim}, hidden={c.hidden}, "
                    f"decoder_hidden={c.decoder_hidden}, activation={c.activation!r}, "
                    f"likelihood={c.likelihood!r}, dtype={c.dtype!r})")
            enc = " -> ".join(str(w) for w in (c.input_dim, *c.hidden))
            heads = f"mu {c.latent_dim}, logvar {c.latent_dim}" if self._variational else f"z {c.latent_dim}"
            dec = " -> ".join(str(w) for w in (c.latent_dim, *c.decoder_hidden, c.input_dim))
            lines = [f"  encoder: {enc} -> {heads} ({c.activation})",
                     f"  decoder: {dec} ({c.likelihood} {'logits' if c.likelihood == 'bernoulli' else 'mean'})"]
        else:
            head = (f"{kind}(input_shape={c.input_shape}, latent_dim={c.latent_dim}, "
                    f"likelihood={c.likelihood!r}, dtype={c.dtype!r})")
            lines = []
        # the Keras-like table: every layer with its output shape and parameter count
        enc_infos, dec_infos = self._infos
        F = math.prod(enc_infos[-1].out_shape) if enc_infos else self.input_dim
        K = c.latent_dim
        rows = [(f"encoder[{i.index}] {i.layer!r}", i.out_shape, i.num_params) for i in enc_infos]
        rows.append((f"enc.mu Linear({K})", (K,), F * K + K))
        if self._variational:
            rows.append((f"enc.logvar Linear({K})", (K,), F * K + K))
        rows += [(f"decoder[{i.index}] {i.layer!r}", i.out_shape, i.num_params) for i in dec_infos]
        if c.likelihood == "gaussian_learned":
            rows.append(("dec.logvar", (self.input_dim,), self.input_dim))
        width = max(len(r[0]) for r in rows) + 2
        lines.append(f"  {'layer':<{width}}{'output shape':<16}{'params':>10}")
        lines += [f"  {name:<{width}}{str(shape):<16}{n:>10,}" for name, shape, n in rows]
        lines.append(f"  parameters: {self.num_params:,}")
        return "\n".join([head, *lines])

    # ---------------------------------------------------------- arguments
    def _matrix(self, a, name, cols, rows=None):
        """a as a C-contiguous (rows, cols) array of the model's dtype, or an error."""
        # few attribute reads on the usual path, a training step's batch (the checks cost 1.5 us
        # where 0.8 suffice, 0.5% of a spiral step): one read of the flags, one of the shape
        dt = self._fixed["dtype"]
        if not (isinstance(a, np.ndarray) and a.dtype == dt and (f := a.flags).c_contiguous and f.aligned):
            try:
                arr = np.asarray(a)
            except Exception as e:  # ragged lists and the like
                raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__}: {e}") from None
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype {arr.dtype}")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
                a = np.ascontiguousarray(arr, dtype=dt)
            if not a.flags.aligned:   # ascontiguousarray leaves a misaligned buffer as it is
                a = a.copy()
        s = a.shape
        if len(s) == 2 and s[1] == cols and s[0] and (rows is None or s[0] == rows):
            return a
        shape = f"({'n' if rows is None else rows}, {cols})"
        if len(s) != 2:
            raise ValueError(f"{name} must be 2-D of shape {shape}, got shape {s}")
        if s[1] != cols or (rows is not None and s[0] != rows):
            raise ValueError(f"{name} must have shape {shape}, got {s}")
        raise ValueError(f"{name} must have at least one row, got shape {s}")

    def _x(self, x):
        """x (n, D), or (n, *input_shape) for images, as a C-contiguous (n, D) array of the model's dtype."""
        shape = self.input_shape
        if len(shape) == 3 and np.ndim(x) == 4:
            if not isinstance(x, np.ndarray):
                x = np.asarray(x)
            if x.shape[1:] != shape:
                raise ValueError(f"x must have shape (n, {self.input_dim}) or (n, {', '.join(map(str, shape))}), "
                                 f"got {x.shape}")
            x = x.reshape(x.shape[0], -1)   # a view when x is contiguous
        return self._matrix(x, "x", self.input_dim)

    def _shaped(self, a):
        """(n, D) -> (n, *input_shape): the data's own shape (a view)."""
        return a.reshape(a.shape[0], *self.input_shape) if len(self.input_shape) == 3 else a

    def _eps(self, eps, n):
        if eps is None:
            return self._core.normal(n)
        return self._matrix(eps, "eps", self.latent_dim, rows=n)

    # ------------------------------------------------------------ forward
    def encode(self, x):
        """Encode data into the parameters of q(z|x).

        Parameters
        ----------
        x : array_like, shape (n, input_dim)

        Returns
        -------
        mu, logvar : ndarray, shape (n, latent_dim)
            Mean and log-variance of the Gaussian cloud of each example.
        """
        return self._core.encode(self._x(x))

    def reparameterize(self, mu, logvar, eps=None):
        """Sample z = mu + exp(logvar / 2) * eps, differentiably in mu and logvar.

        Parameters
        ----------
        mu, logvar : array_like, shape (n, latent_dim)
        eps : array_like, shape (n, latent_dim), optional
            The standard-normal noise; None draws it from the model's generator.

        Returns
        -------
        z : ndarray, shape (n, latent_dim)
        """
        mu = self._matrix(mu, "mu", self.latent_dim)
        logvar = self._matrix(logvar, "logvar", self.latent_dim, rows=mu.shape[0])
        return self._core.reparameterize(mu, logvar, self._eps(eps, mu.shape[0]))

    def decode(self, z):
        """Decode latent points into data space.

        Parameters
        ----------
        z : array_like, shape (n, latent_dim)

        Returns
        -------
        ndarray, shape (n, *input_shape)
            The mean (gaussian) or the probabilities (bernoulli).
        """
        return self._shaped(self._core.decode(self._matrix(z, "z", self.latent_dim)))

    def decode_logits(self, z):
        """The decoder's raw output: logits (bernoulli) or the mean (gaussian), shape (n, *input_shape)."""
        return self._shaped(self._core.decode(self._matrix(z, "z", self.latent_dim), True))

    def _beta(self, beta):
        return check_real(beta, "beta")

    def loss(self, x, *, beta=1.0, eps=None):
        """The training loss on a batch, without gradients.

        Parameters
        ----------
        x : array_like, shape (n, input_dim)
        beta : float, default 1.0
            Weight of the KL term (beta-VAE when > 1).
        eps : array_like, shape (n, latent_dim), optional
            Fixed noise; None draws it from the model's generator.

        Returns
        -------
        dict
            ``loss`` = mean(recon_i + beta kl_i), ``recon`` and ``kl`` (batch
            means), as floats.
        """
        x = self._x(x)
        beta = self._beta(beta)
        eps = self._eps(eps, x.shape[0]) if self._variational else self._no_eps(eps)
        loss, recon, kl = self._core.loss(x, beta, eps)
        return {"loss": loss, "recon": recon, "kl": kl}

    def loss_and_grad(self, x, *, beta=1.0, eps=None):
        """The loss and its exact gradient with respect to every parameter.

        Parameters
        ----------
        x, beta, eps
            As in :meth:`loss`.

        Returns
        -------
        stats : dict
            As :meth:`loss` returns.
        grad : ndarray, shape (num_params,)
            d loss / d params, in the layout of :attr:`params`.
        """
        x = self._x(x)
        beta = self._beta(beta)
        eps = self._eps(eps, x.shape[0]) if self._variational else self._no_eps(eps)
        (loss, recon, kl), grad = self._core.loss_and_grad(x, beta, eps)
        return {"loss": loss, "recon": recon, "kl": kl}, grad

    def _no_eps(self, eps):
        if eps is not None:
            raise TypeError("eps must be None for a plain autoencoder (it has no noise)")
        return None

    def train_step(self, x, opt, *, beta=1.0, eps=None):
        """One optimisation step: forward, backward and update, in one C call.

        Parameters
        ----------
        x : array_like, shape (n, input_dim)
            A mini-batch.
        opt : Adam or SGD
            An optimizer created for this model.
        beta : float, default 1.0
        eps : array_like, shape (n, latent_dim), optional
            Fixed noise; None draws it from the model's generator.

        Returns
        -------
        dict
            loss, recon and kl of the batch before the update.

        Raises
        ------
        FloatingPointError
            If the loss or a gradient is NaN or Inf; then nothing is updated.
        """
        if not isinstance(opt, Optimizer):
            raise TypeError(f"opt must be a vaecore.Adam or vaecore.SGD, got {type(opt).__name__}")
        if opt.model is not self:
            raise ValueError("opt was created for another model; create one with vaecore.Adam(model)")
        x = self._x(x)
        beta = self._beta(beta)
        if eps is not None:
            if not self._variational:
                self._no_eps(eps)
            eps = self._matrix(eps, "eps", self.latent_dim, rows=x.shape[0])
        try:
            loss, recon, kl = self._core.train_step(x, beta, eps, *opt._core_args())
        except FloatingPointError as e:
            raise FloatingPointError(f"step {opt.t + 1}: {e}") from None
        return {"loss": loss, "recon": recon, "kl": kl}

    # ---------------------------------------------------------- generation
    def sample(self, n, seed=None):
        """Brand-new data: decode n points z ~ N(0, I) drawn from the prior.

        Parameters
        ----------
        n : int
        seed : int, optional
            Seeds a fresh generator; None uses (and advances) the model's.

        Returns
        -------
        ndarray, shape (n, *input_shape)
            ``n = 0`` gives an empty (0, *input_shape) array, as NumPy would.
        """
        n = check_int(n, "n", low=0, high=_MAX_ROWS)
        seed = check_seed(seed, high=SEED_MAX, allow_none=True)
        if n == 0:   # the C decoder refuses 0 rows; nothing to draw, the generator stays where it is
            return np.empty((0, *self.input_shape), dtype=self.dtype)
        return self._shaped(self._core.decode(self._core.normal(n, seed)))

    def reconstruct(self, x):
        """decode(mu(x)): the reconstruction of x from its most likely code, shape (n, *input_shape)."""
        mu, _ = self.encode(x)
        return self._shaped(self._core.decode(mu))

    def _log_px_given_z(self, x, out):
        """log p(x|z) per row, float64, from the decoder's raw output (B, D)."""
        x = x.astype(np.float64, copy=False)
        out = out.astype(np.float64, copy=False)
        if self.likelihood == "gaussian":
            return -((x - out) ** 2).sum(axis=-1) - 0.5 * x.shape[-1] * _LOG_PI
        if self.likelihood == "gaussian_learned":
            lv = dict(self.named_params())["dec.logvar"].astype(np.float64)
            return -((x - out) ** 2 / (2 * np.exp(lv)) + 0.5 * lv + 0.5 * _LOG_2PI).sum(axis=-1)
        softplus = np.logaddexp(0.0, out)
        return -(softplus - x * out).sum(axis=-1)

    def _bernoulli_check(self, x):
        """x must be finite, and in [0, 1] for a Bernoulli likelihood (messages as the C core's)."""
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            r, c = bad[0]
            raise ValueError(f"x must be finite: row {r}, column {c} has {float(x[r, c])!r}")
        if self.likelihood == "bernoulli":
            bad = np.argwhere((x < 0) | (x > 1))
            if len(bad):
                r, c = bad[0]
                top = float(x.max())
                fix = (f"divide x by its maximum ({top!r} here)" if top > 1 else "rescale x into [0, 1]")
                raise ValueError(f"x must lie in [0, 1] for the bernoulli likelihood: row {r}, column {c} has "
                                 f"{float(x[r, c])!r} ({fix}, or use likelihood='gaussian')")

    def log_likelihood(self, x, k=100, seed=None):
        """Importance-weighted estimate of log p(x) per example (Burda et al. 2016).

        log p(x) ~ logsumexp_j [log p(x|z_j) + log p(z_j) - log q(z_j|x)] - log k,
        z_j ~ q(z|x). It is a lower bound whose expectation rises with k towards
        log p(x); k = 1 is a one-sample ELBO.

        Parameters
        ----------
        x : array_like, shape (n, input_dim)
        k : int, default 100
            Importance samples per example.
        seed : int, optional
            Seeds a fresh generator; None uses (and advances) the model's.

        Returns
        -------
        ndarray of float64, shape (n,)
            In nats, with the Gaussian constant -(D/2) log(pi) included.
        """
        x = self._x(x)
        k = check_int(k, "k", high=_MAX_ROWS)
        self._bernoulli_check(x)
        seed = check_seed(seed, high=SEED_MAX, allow_none=True)
        rng_seed = seed
        n, K = x.shape[0], self.latent_dim
        mu, logvar = self._core.encode(x)
        out = np.empty(n)
        rows = max(1, 65536 // k)  # bound the decoded block to ~65k rows
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            b = stop - start
            if rng_seed is None:
                eps = self._core.normal(b * k)
            else:
                eps = self._core.normal(b * k, (rng_seed + start) % 2**64)
            eps = eps.reshape(b, k, K)
            m_, lv = mu[start:stop, None, :], logvar[start:stop, None, :]
            z = (m_ + np.exp(0.5 * lv) * eps).astype(self.dtype)               # (b, k, K)
            dec = self._core.decode(z.reshape(b * k, K), True).reshape(b, k, -1)
            log_px = self._log_px_given_z(x[start:stop, None, :], dec)       # (b, k)
            z64, e64 = z.astype(np.float64), eps.astype(np.float64)
            log_pz = -0.5 * (z64 ** 2).sum(-1) - 0.5 * K * _LOG_2PI
            log_qz = -0.5 * (e64 ** 2 + lv.astype(np.float64) + _LOG_2PI).sum(-1)
            log_w = log_px + log_pz - log_qz
            top = log_w.max(axis=1, keepdims=True)
            out[start:stop] = top[:, 0] + np.log(np.exp(log_w - top).mean(axis=1))
        return out

    def elbo(self, x, k=1, seed=None):
        """The evidence lower bound per example, with the analytic KL.

        ELBO_i = E_q[log p(x_i|z)] - KL(q(z|x_i) || N(0, I)), the expectation
        averaged over k samples of z.

        Parameters
        ----------
        x : array_like, shape (n, input_dim)
        k : int, default 1
        seed : int, optional

        Returns
        -------
        ndarray of float64, shape (n,)
            In nats, the same units as :meth:`log_likelihood`.
        """
        x = self._x(x)
        k = check_int(k, "k", high=_MAX_ROWS // x.shape[0])   # n * k noise rows
        self._bernoulli_check(x)
        seed = check_seed(seed, high=SEED_MAX, allow_none=True)
        n, K = x.shape[0], self.latent_dim
        mu, logvar = self._core.encode(x)
        eps = self._core.normal(n * k, seed).reshape(n, k, K)
        z = (mu[:, None] + np.exp(0.5 * logvar[:, None]) * eps).astype(self.dtype)
        dec = self._core.decode(z.reshape(n * k, K), True).reshape(n, k, -1)
        log_px = self._log_px_given_z(x[:, None, :], dec).mean(axis=1)
        m64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
        kl = -0.5 * (1 + lv64 - m64 ** 2 - np.exp(lv64)).sum(axis=1)
        return log_px - kl

    # ------------------------------------------------------------ files
    def save(self, path, optimizer=None):
        """Write the model (and optionally its optimizer) to ``path``.

        The file is a NumPy ``.npz`` archive holding the format version, the
        configuration, the parameters, the generator state, the optimizer's
        state if given, and a SHA-256 checksum of all of it. A path is written
        to a temporary file and renamed into place, so an interrupted save
        leaves any earlier file intact; the new file's mode follows the umask
        (0o644 under the usual 022), as for any file the process creates.

        Parameters
        ----------
        path : str, bytes, os.PathLike or binary file object
            A file object (``io.BytesIO``, ``open(p, "wb")``) receives the same
            archive at its current position; it is not closed, and the write
            is not atomic.
        optimizer : Adam or SGD, optional
        """
        _check_save_path(path)
        _atomic_savez(path, *self._state(optimizer))

    def _state(self, optimizer=None):
        """(meta, arrays): what :meth:`save` writes (``vaecore.fit`` adds its checkpoint to them)."""
        if optimizer is not None and (not isinstance(optimizer, Optimizer) or optimizer.model is not self):
            raise ValueError("optimizer must be a vaecore optimizer created for this model")
        return _model_state(self, type(self).__name__, () if optimizer is None else (("", optimizer),))

    @classmethod
    def load(cls, path, *, with_optimizer=False):
        """Read a model of this class written by :meth:`save` (``vaecore.load`` reads either class).

        Parameters
        ----------
        path : str, bytes, os.PathLike or binary file object
            A file object (``io.BytesIO``, ``open(p, "rb")``) is read from its
            current position and not closed.
        with_optimizer : bool, default False
            Also return the saved optimizer (None if none was saved).

        Returns
        -------
        VAE or AE, or (model, optimizer) when ``with_optimizer``

        Raises
        ------
        FileNotFoundError
            If there is no such file.
        ValueError
            If the file is truncated, corrupted, not a vaecore model, of a
            newer format version, or holds the other class (``AE.load`` of a
            VAE's file and ``VAE.load`` of an AE's).
        """
        return _load(path, with_optimizer, cls)

    # ------------------------------------------------------------ pickle and copy
    _BUILT = ("_core", "_fixed", "_infos", "_cfg", "_names", "seed")   # what __init__ makes from the configuration

    def __getstate__(self):
        """The picklable state: configuration, parameters, generator state and any attribute set on the model.

        The C object is not pickled: :meth:`__setstate__` rebuilds it from the
        configuration, so ``pickle``, ``copy.deepcopy`` and multiprocessing
        give a model that continues bitwise like this one.
        """
        extra = {k: v for k, v in self.__dict__.items() if k not in self._BUILT}
        return {"config": self.config, "params": np.array(self.params), "rng_state": self.rng_state,
                "extra": extra}

    def __setstate__(self, state):
        """Rebuild the model from :meth:`__getstate__`'s state (a new C object, the saved parameters)."""
        fresh = type(self)._from_config(state["config"])
        self.__dict__.update({k: fresh.__dict__[k] for k in self._BUILT})
        self.params[...] = state["params"]
        self.rng_state = state["rng_state"]
        self.__dict__.update(state["extra"])

    @classmethod
    def _from_config(cls, c, path=None):
        """A new model of class cls from the dict :attr:`config` gave (both forms, files of any version)."""
        try:
            common = dict(likelihood=c["likelihood"], dtype=c["dtype"], seed=c["seed"])
            if "decoder_logvar" in c:
                common["decoder_logvar"] = c["decoder_logvar"]
            if "encoder" in c:
                return cls(input_shape=tuple(c["input_shape"]), latent_dim=c["latent_dim"],
                           encoder=[L.from_dict(d) for d in c["encoder"]],
                           decoder=[L.from_dict(d) for d in c["decoder"]], **common)
            return cls(c["input_dim"], c["latent_dim"], tuple(c["hidden"]), decoder_hidden=tuple(c["decoder_hidden"]),
                       activation=c["activation"], **common)
        except (KeyError, TypeError) as e:
            where = "the configuration" if path is None else _name(path)
            raise ValueError(f"{where}: the model configuration is damaged ({e!r})") from None


class AE(VAE):
    """A plain (deterministic) autoencoder on the same core: z = mu, no noise, no KL.

    It has the layers of :class:`VAE` without the ``enc.logvar`` head, and its
    loss is the reconstruction term alone. :meth:`encode` returns
    ``(z, None)``. :meth:`sample` still decodes z ~ N(0, I), to show why a
    plain autoencoder cannot generate: nothing made its codes look like N(0, I).

    Parameters
    ----------
    input_dim, latent_dim, hidden, decoder_hidden, activation, likelihood, dtype, seed
        As for :class:`VAE`.
    """

    _variational = False

    def reparameterize(self, mu, logvar=None, eps=None):
        """z = mu: a plain autoencoder has no noise (logvar and eps must be None)."""
        if logvar is not None or eps is not None:
            raise TypeError("a plain autoencoder has no noise: logvar and eps must be None")
        return self._matrix(mu, "mu", self.latent_dim).copy()

    def log_likelihood(self, x, k=100, seed=None):
        """Not defined: a plain autoencoder is not a probabilistic model of x."""
        raise NotImplementedError("a plain autoencoder defines no density p(x); use a VAE")

    def elbo(self, x, k=1, seed=None):
        """Not defined: a plain autoencoder has no posterior and no ELBO."""
        raise NotImplementedError("a plain autoencoder has no ELBO; use a VAE")


def _load(path, with_optimizer, cls=None):
    """VAE.load (cls the class the file must hold) and vaecore.load (cls None: either)."""
    if with_optimizer is not True and with_optimizer is not False:
        raise TypeError(f"with_optimizer must be True or False, got {with_optimizer!r}")
    meta, arrays = _checked_load(path)
    name = _name(path)
    saved = meta.get("class")
    if saved in ("GAN", "VQVAE", "IndependentPrior", "AutoregressivePrior"):
        if cls is not None:
            raise ValueError(f"{name} holds {_a(saved)}, not {_a(cls.__name__)}: load it with vaecore.{saved}.load "
                             f"or vaecore.load")
        if saved == "GAN":   # vaecore.load returns the GAN (and its two optimizers)
            from .gan import _from_saved as _gan_from_saved

            return _gan_from_saved(meta, arrays, path, with_optimizer)
        if saved == "VQVAE":
            from .vqvae import _from_saved as _vq_from_saved

            return _vq_from_saved(meta, arrays, path, with_optimizer)
        from .priors import _from_saved as _prior_from_saved

        prior = _prior_from_saved(meta, arrays, path)
        return (prior, None) if with_optimizer else prior   # a prior's file holds no optimizer
    kind = {"VAE": VAE, "AE": AE}.get(saved)
    if kind is None:
        raise ValueError(f"{name}: unknown model class {saved!r}")
    if cls is not None and kind is not cls:
        raise ValueError(f"{name} holds {_a(saved)}, not {_a(cls.__name__)}: load it with vaecore.{saved}.load "
                         f"or vaecore.load (which returns whatever the file holds)")
    m = kind._from_config(meta["config"], path)
    _restore(m, meta, arrays, name)
    if not with_optimizer:
        return m
    opt = None
    if "optimizer" in meta:
        opt = Optimizer._from_saved(m, meta["optimizer"],
                                    {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")})
    return m, opt


def load(path, *, with_optimizer=False):
    """Read a file written by any vaecore ``save`` or by ``fit``'s checkpoint, whichever class it holds.

    Parameters
    ----------
    path : str, bytes, os.PathLike or binary file object
    with_optimizer : bool, default False
        Also return the saved optimizer (None if none was saved; always None for a
        prior, whose file holds none).

    Returns
    -------
    VAE, AE, VQVAE, IndependentPrior or AutoregressivePrior, or (model, optimizer) when
    ``with_optimizer``; a GAN as :meth:`GAN.load` returns it

    Raises
    ------
    FileNotFoundError, ValueError
        As :meth:`VAE.load`.
    """
    return _load(path, with_optimizer)
