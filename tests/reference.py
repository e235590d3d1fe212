"""A pure-NumPy float64 reference VAE, written from the formulas alone.

It shares no code with vaecore (no import of it, no C): the tests compute the
same thing here and through the C core and compare. It is written to be read
and checked by eye, not to be fast: one small function per formula, and a
backward pass that walks the forward pass in reverse, line by line.

What it implements:
- the VAE of Kingma & Welling 2014, "Auto-Encoding Variational Bayes"
  (Gaussian encoder, reparameterization z = mu + exp(logvar / 2) * eps,
  closed-form KL to N(0, I)), with the KL weighted by beta as in
  Higgins et al. 2017, "beta-VAE";
- the plain autoencoder (variational=False): no logvar head, z = mu, no KL;
- Adam (Kingma & Ba 2015) and SGD with momentum, both with PyTorch's update
  rules (torch.optim.Adam, torch.optim.SGD with dampening 0 and no Nesterov),
  and global-norm clipping as torch.nn.utils.clip_grad_norm_.

What it deliberately is not: a trainer. It has no random numbers (the caller
passes eps), no initialisation scheme and no float32 path.

Dimension letters: B = batch, D = input width, H = a hidden width,
K = latent width, I / O = a layer's input / output width, P = number of
parameters.

Parameter layout (the same as vaecore's m.params / m.named_params()):
    enc.0.W (D, H0), enc.0.b (H0,), ..., enc.mu.W (H_last, K), enc.mu.b (K,),
    enc.logvar.W (H_last, K), enc.logvar.b (K,)      [VAE only]
    dec.0.W (K, G0), dec.0.b (G0,), ..., dec.out.W (G_last, D), dec.out.b (D,)
each W and b stored row-major, one after the other, in this order. A layer
computes y = x @ W + b; hidden layers then apply the activation, the heads
(mu, logvar) and dec.out are linear.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATIONS = ("tanh", "relu", "leaky_relu", "sigmoid", "elu")
LIKELIHOODS = ("gaussian", "bernoulli")
LEAKY_SLOPE = 0.01  # leaky_relu: y = 0.01 * a for a <= 0
CLIP_EPS = 1e-6     # clip_grad_norm_: coef = max_norm / (total_norm + 1e-6)


@dataclass
class Config:
    activation: str = "tanh"     # of every hidden layer, one of ACTIVATIONS
    likelihood: str = "gaussian"  # "gaussian": squared error of the linear output; "bernoulli": logits
    beta: float = 1.0            # weight of the KL term (beta-VAE); unused when variational=False
    variational: bool = True     # False: the plain autoencoder (z = mu, no logvar head, no KL)

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")


# ---------------------------------------------------------------------------
# elementwise functions

def sigmoid(a):
    """1 / (1 + exp(-a)) without overflow: exp is only taken of -|a| <= 0."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(a):
    """log(1 + exp(a)) = max(a, 0) + log1p(exp(-|a|)), stable for either sign."""
    return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))


def activation_forward(a, name):
    """y = f(a) for the pre-activation a (any shape)."""
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.where(a > 0, a, 0.0)
    if name == "leaky_relu":
        return np.where(a > 0, a, LEAKY_SLOPE * a)
    if name == "sigmoid":
        return sigmoid(a)
    if name == "elu":
        # exp(a) - 1 for a <= 0; min(a, 0) keeps expm1 away from overflow on the unused branch
        return np.where(a > 0, a, np.expm1(np.minimum(a, 0.0)))
    raise ValueError(f"unknown activation {name!r}")


def activation_backward(dy, a, name):
    """da = dy * f'(a), with f' written as a function of the pre-activation a."""
    if name == "tanh":
        return dy * (1.0 - np.tanh(a) ** 2)
    if name == "relu":
        return dy * (a > 0)
    if name == "leaky_relu":
        return dy * np.where(a > 0, 1.0, LEAKY_SLOPE)
    if name == "sigmoid":
        s = sigmoid(a)
        return dy * s * (1.0 - s)
    if name == "elu":
        return dy * np.where(a > 0, 1.0, np.exp(np.minimum(a, 0.0)))
    raise ValueError(f"unknown activation {name!r}")


# ---------------------------------------------------------------------------
# per-example losses, each (B, D) or (B, K) -> (B,)

def gaussian_recon(x, out):
    """sum_j (x_ij - out_ij)^2: x, out (B, D) -> (B,)"""
    return np.sum((x - out) ** 2, axis=1)


def bernoulli_recon(x, logits):
    """sum_j softplus(l_ij) - x_ij * l_ij, the Bernoulli negative log-likelihood of x
    under p = sigmoid(l): x, logits (B, D) -> (B,)"""
    return np.sum(softplus(logits) - x * logits, axis=1)


def gaussian_kl(mu, logvar):
    """KL( N(mu, exp(logvar)) || N(0, 1) ) summed over k: mu, logvar (B, K) -> (B,)"""
    return -0.5 * np.sum(1.0 + logvar - mu ** 2 - np.exp(logvar), axis=1)


# ---------------------------------------------------------------------------
# linear layers

def linear_forward(inp, W, b):
    """inp (B, I), W (I, O), b (O,) -> out (B, O)"""
    return inp @ W + b


def linear_backward(dout, inp, W):
    """dout (B, O), inp (B, I), W (I, O) -> dinp (B, I), dW (I, O), db (O,)"""
    dinp = dout @ W.T     # (B, I)
    dW = inp.T @ dout     # (I, O)
    db = dout.sum(axis=0)  # (O,)
    return dinp, dW, db


# ---------------------------------------------------------------------------
# 2-D convolution layers (NCHW), as torch.nn.functional.conv2d and
# conv_transpose2d (no dilation, no groups, output_padding 0).
# Letters: B batch, C input channels, H x W input, O output channels,
# HO x WO output, KH x KW kernel; stride = (SH, SW), padding = (PH, PW).
# Written as one einsum per kernel tap (kh, kw), not im2col: the tap reads
# (or, transposed, writes) the pixels kh + SH*ho, kw + SW*wo of the padded image.

def _tap(kh, kw, n_h, n_w, stride):
    """the slice of a padded image that kernel tap (kh, kw) touches at n_h x n_w positions"""
    sh, sw = stride
    return (slice(None), slice(None), slice(kh, kh + sh * (n_h - 1) + 1, sh),
            slice(kw, kw + sw * (n_w - 1) + 1, sw))


def _conv2d_out_size(H, W, KH, KW, stride, padding):
    if H + 2 * padding[0] < KH or W + 2 * padding[1] < KW:
        raise ValueError(f"kernel {(KH, KW)} larger than the padded image {(H, W)} + 2 * {padding}")
    return (H + 2 * padding[0] - KH) // stride[0] + 1, (W + 2 * padding[1] - KW) // stride[1] + 1


def _conv_transpose2d_out_size(H, W, KH, KW, stride, padding):
    HO, WO = (H - 1) * stride[0] - 2 * padding[0] + KH, (W - 1) * stride[1] - 2 * padding[1] + KW
    if HO < 1 or WO < 1:
        raise ValueError(f"conv_transpose2d of {(H, W)} with kernel {(KH, KW)}, stride {stride}, "
                         f"padding {padding} would be empty: {(HO, WO)}")
    return HO, WO


def conv2d_forward(x, W, b, stride, padding):
    """x (B, C, H, W), W (O, C, KH, KW), b (O,) -> out (B, O, HO, WO), the cross-correlation
    out[b, o, ho, wo] = b[o] + sum_{c, kh, kw} x[b, c, SH*ho - PH + kh, SW*wo - PW + kw] W[o, c, kh, kw],
    x read as 0 outside the image"""
    B, C, H, Wd = x.shape
    O, _, KH, KW = W.shape
    HO, WO = _conv2d_out_size(H, Wd, KH, KW, stride, padding)
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (B, C, H + 2PH, W + 2PW)
    out = np.zeros((B, O, HO, WO)) + b[None, :, None, None]
    for kh in range(KH):
        for kw in range(KW):
            out += np.einsum("bchw,oc->bohw", xp[_tap(kh, kw, HO, WO, stride)], W[:, :, kh, kw])
    return out


def conv2d_backward(dout, x, W, stride, padding):
    """dout (B, O, HO, WO), x (B, C, H, W), W (O, C, KH, KW) -> dx (B, C, H, W), dW (O, C, KH, KW),
    db (O,): each tap's einsum of conv2d_forward differentiated, dx cropped from the padded image"""
    B, C, H, Wd = x.shape
    O, _, KH, KW = W.shape
    HO, WO = dout.shape[2:]
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxp = np.zeros_like(xp)  # gradient of the padded image
    dW = np.zeros(W.shape)
    for kh in range(KH):
        for kw in range(KW):
            tap = _tap(kh, kw, HO, WO, stride)
            dW[:, :, kh, kw] = np.einsum("bohw,bchw->oc", dout, xp[tap])
            dxp[tap] += np.einsum("bohw,oc->bchw", dout, W[:, :, kh, kw])
    dx = dxp[:, :, ph:ph + H, pw:pw + Wd]  # the padding has no gradient to pass on
    db = dout.sum(axis=(0, 2, 3))
    return dx, dW, db


def conv_transpose2d_forward(x, W, b, stride, padding):
    """x (B, C, H, W), W (C, O, KH, KW), b (O,) -> out (B, O, HO, WO): each input pixel
    x[b, c, h, w] adds x * W[c, o, kh, kw] onto output pixel (SH*h - PH + kh, SW*w - PW + kw);
    what lands outside the output (in the padding) is dropped"""
    B, C, H, Wd = x.shape
    _, O, KH, KW = W.shape
    HO, WO = _conv_transpose2d_out_size(H, Wd, KH, KW, stride, padding)
    ph, pw = padding
    full = np.zeros((B, O, (H - 1) * stride[0] + KH, (Wd - 1) * stride[1] + KW))  # before cropping
    for kh in range(KH):
        for kw in range(KW):
            full[_tap(kh, kw, H, Wd, stride)] += np.einsum("bchw,co->bohw", x, W[:, :, kh, kw])
    return full[:, :, ph:ph + HO, pw:pw + WO] + b[None, :, None, None]


def conv_transpose2d_backward(dout, x, W, stride, padding):
    """dout (B, O, HO, WO), x (B, C, H, W), W (C, O, KH, KW) -> dx (B, C, H, W), dW (C, O, KH, KW),
    db (O,): the cropped-away border of the full output has gradient 0"""
    B, C, H, Wd = x.shape
    _, O, KH, KW = W.shape
    HO, WO = dout.shape[2:]
    ph, pw = padding
    dfull = np.zeros((B, O, (H - 1) * stride[0] + KH, (Wd - 1) * stride[1] + KW))
    dfull[:, :, ph:ph + HO, pw:pw + WO] = dout
    dx = np.zeros(x.shape)
    dW = np.zeros(W.shape)
    for kh in range(KH):
        for kw in range(KW):
            d = dfull[_tap(kh, kw, H, Wd, stride)]  # (B, O, H, W): what tap (kh, kw) wrote
            dx += np.einsum("bohw,co->bchw", d, W[:, :, kh, kw])
            dW[:, :, kh, kw] = np.einsum("bchw,bohw->co", x, d)
    db = dout.sum(axis=(0, 2, 3))
    return dx, dW, db


# ---------------------------------------------------------------------------
# the parameter layout

def param_layout(input_dim, latent_dim, hidden, decoder_hidden=None, variational=True):
    """[(name, shape)] in the order of m.params; decoder_hidden=None means reversed(hidden)."""
    hidden = tuple(hidden)
    decoder_hidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
    layout = []
    width = input_dim
    for i, h in enumerate(hidden):
        layout += [(f"enc.{i}.W", (width, h)), (f"enc.{i}.b", (h,))]
        width = h
    layout += [("enc.mu.W", (width, latent_dim)), ("enc.mu.b", (latent_dim,))]
    if variational:
        layout += [("enc.logvar.W", (width, latent_dim)), ("enc.logvar.b", (latent_dim,))]
    width = latent_dim
    for i, h in enumerate(decoder_hidden):
        layout += [(f"dec.{i}.W", (width, h)), (f"dec.{i}.b", (h,))]
        width = h
    layout += [("dec.out.W", (width, input_dim)), ("dec.out.b", (input_dim,))]
    return layout


def random_named_params(rng, input_dim, latent_dim, hidden, decoder_hidden=None,
                        variational=True, bias_scale=0.5):
    """[(name, array)] in the contract's layout: W ~ N(0, 1/I), b ~ N(0, bias_scale^2).
    Non-zero biases and unit-variance pre-activations keep every gradient entry lively."""
    out = []
    for name, shape in param_layout(input_dim, latent_dim, hidden, decoder_hidden, variational):
        if name.endswith(".W"):
            out.append((name, rng.normal(0.0, 1.0 / np.sqrt(shape[0]), size=shape)))
        else:
            out.append((name, rng.normal(0.0, bias_scale, size=shape)))
    return out


def _layer_names(names, side):
    """The hidden-layer prefixes 'enc.0', 'enc.1', ... present in names, checked to be 0..n-1."""
    idx = sorted(int(n.split(".")[1]) for n in names
                 if n.startswith(side + ".") and n.split(".")[1].isdigit() and n.endswith(".W"))
    if idx != list(range(len(idx))):
        raise ValueError(f"{side} hidden layers must be numbered 0..n-1, got {idx}")
    return [f"{side}.{i}" for i in idx]


# ---------------------------------------------------------------------------
# the model

class ReferenceVAE:
    """The reference model. params is a flat float64 copy of the given parameters, in
    their order; self.p[name] are views into it, so an optimizer step on params shows
    in every layer, as it does for vaecore's live m.params."""

    def __init__(self, named_params, config=None):
        self.config = Config() if config is None else config
        names = [name for name, _ in named_params]
        arrays = [np.asarray(a, dtype=np.float64) for _, a in named_params]
        self.names = names
        self.shapes = [a.shape for a in arrays]
        self.params = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)  # (P,)
        self.p = self.unflatten(self.params)

        # the architecture follows from the names; check it is exactly the contract's layout
        self.enc_layers = _layer_names(names, "enc")
        self.dec_layers = _layer_names(names, "dec")
        if "dec.out.b" not in self.p or "enc.mu.b" not in self.p:
            raise ValueError(f"parameters {names} do not follow the layout: no enc.mu or dec.out")
        self.input_dim = self.p["dec.out.b"].shape[0]
        self.latent_dim = self.p["enc.mu.b"].shape[0]
        hidden = [self.p[n + ".W"].shape[-1] for n in self.enc_layers]
        dec_hidden = [self.p[n + ".W"].shape[-1] for n in self.dec_layers]
        expected = param_layout(self.input_dim, self.latent_dim, hidden, dec_hidden,
                                self.config.variational)
        if expected != list(zip(self.names, self.shapes)):
            raise ValueError(f"parameters {list(zip(self.names, self.shapes))} do not follow "
                             f"the layout {expected} (variational={self.config.variational})")

    # -- flat buffer <-> named views
    def unflatten(self, flat):
        """{name: view of flat with that parameter's shape} for a (P,) buffer in our layout."""
        views, offset = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = int(np.prod(shape))
            views[name] = flat[offset:offset + n].reshape(shape)
            offset += n
        assert offset == flat.size
        return views

    def layer(self, prefix):
        return self.p[prefix + ".W"], self.p[prefix + ".b"]

    def _layer_backward(self, prefix, dout, inp, grads):
        """linear_backward of one layer: writes its dW, db into grads, returns dinp (B, I)."""
        dinp, grads[prefix + ".W"][...], grads[prefix + ".b"][...] = \
            linear_backward(dout, inp, self.p[prefix + ".W"])
        return dinp

    # -- the hidden stacks
    def _hidden_forward(self, h, prefixes):
        """h (B, I) through the hidden layers; returns the output and a cache per layer."""
        cache = []
        for prefix in prefixes:
            W, b = self.layer(prefix)
            a = linear_forward(h, W, b)                              # (B, H) pre-activation
            y = activation_forward(a, self.config.activation)        # (B, H)
            cache.append((prefix, h, a))
            h = y
        return h, cache

    def _hidden_backward(self, dh, cache, grads):
        """Gradient of the stack's output dh (B, H_last) -> its input's gradient;
        writes dW, db of every layer into grads."""
        for prefix, inp, a in reversed(cache):
            da = activation_backward(dh, a, self.config.activation)  # (B, H)
            dh = self._layer_backward(prefix, da, inp, grads)        # (B, I)
        return dh

    # -- the public forward pieces, mirroring vaecore's API
    def encode(self, x):
        """x (B, D) -> mu (B, K), logvar (B, K) or None for the autoencoder"""
        h, _ = self._hidden_forward(np.asarray(x, np.float64), self.enc_layers)
        mu = linear_forward(h, *self.layer("enc.mu"))
        logvar = linear_forward(h, *self.layer("enc.logvar")) if self.config.variational else None
        return mu, logvar

    @staticmethod
    def reparameterize(mu, logvar, eps):
        """z = mu + exp(logvar / 2) * eps: all (B, K)"""
        return mu + np.exp(0.5 * logvar) * eps

    def decode_output(self, z):
        """z (B, K) -> the linear output of dec.out (B, D): the mean (gaussian) or logits (bernoulli)"""
        g, _ = self._hidden_forward(np.asarray(z, np.float64), self.dec_layers)
        return linear_forward(g, *self.layer("dec.out"))

    def decode(self, z):
        """z (B, K) -> x_mean (B, D): the mean (gaussian) or the probabilities sigmoid(logits)"""
        out = self.decode_output(z)
        return sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def preactivations(self, x, eps=None):
        """Every hidden layer's pre-activation (B, H) for the batch x, for kink checks."""
        _, cache = self._forward(x, eps)
        return [a for _, _, a in cache["enc"] + cache["dec"]]

    # -- loss and gradient
    def _check_eps(self, x, eps):
        if not self.config.variational:
            if eps is not None:
                raise ValueError("eps: the autoencoder takes no noise, got an array")
            return None
        if eps is None:
            raise ValueError("eps: the reference has no random numbers; pass eps of shape (B, K)")
        eps = np.asarray(eps, np.float64)
        if eps.shape != (x.shape[0], self.latent_dim):
            raise ValueError(f"eps: expected shape {(x.shape[0], self.latent_dim)}, got {eps.shape}")
        return eps

    def _forward(self, x, eps):
        x = np.asarray(x, np.float64)                                # (B, D)
        eps = self._check_eps(x, eps)
        cfg = self.config
        h, enc_cache = self._hidden_forward(x, self.enc_layers)      # (B, H_last)
        mu = linear_forward(h, *self.layer("enc.mu"))                # (B, K)
        if cfg.variational:
            logvar = linear_forward(h, *self.layer("enc.logvar"))    # (B, K)
            std = np.exp(0.5 * logvar)                               # (B, K)
            z = mu + std * eps                                       # (B, K)
        else:
            logvar = std = None
            z = mu                                                   # (B, K)
        g, dec_cache = self._hidden_forward(z, self.dec_layers)      # (B, G_last)
        out = linear_forward(g, *self.layer("dec.out"))              # (B, D)

        if cfg.likelihood == "gaussian":
            recon = gaussian_recon(x, out)                           # (B,)
        else:
            recon = bernoulli_recon(x, out)                          # (B,)
        kl = gaussian_kl(mu, logvar) if cfg.variational else np.zeros_like(recon)  # (B,)
        beta = cfg.beta if cfg.variational else 0.0
        stats = {
            "loss": float(np.mean(recon + beta * kl)),
            "recon": float(np.mean(recon)),
            "kl": float(np.mean(kl)),
        }
        cache = dict(x=x, eps=eps, h=h, mu=mu, logvar=logvar, std=std, z=z, g=g, out=out,
                     enc=enc_cache, dec=dec_cache)
        return stats, cache

    def loss(self, x, eps=None):
        """{'loss', 'recon', 'kl'}: batch means; loss = mean_i(recon_i + beta * kl_i)."""
        return self._forward(x, eps)[0]

    def loss_and_grad(self, x, eps=None):
        """The loss stats and d loss / d params as a flat (P,) float64 vector in our layout."""
        stats, c = self._forward(x, eps)
        cfg = self.config
        x, out = c["x"], c["out"]
        B = x.shape[0]
        grad = np.zeros_like(self.params)                            # (P,)
        grads = self.unflatten(grad)

        # loss = (1/B) sum_i recon_i + (beta/B) sum_i kl_i
        if cfg.likelihood == "gaussian":
            dout = 2.0 * (out - x) / B                               # d/dout (x - out)^2 = 2 (out - x)
        else:
            dout = (sigmoid(out) - x) / B                            # d/dl softplus(l) - x l = sigmoid(l) - x
        dg = self._layer_backward("dec.out", dout, c["g"], grads)    # (B, G_last)
        dz = self._hidden_backward(dg, c["dec"], grads)              # (B, K)

        if cfg.variational:
            mu, logvar, std, eps = c["mu"], c["logvar"], c["std"], c["eps"]
            # z = mu + std * eps with std = exp(logvar / 2): dz/dmu = 1, dz/dlogvar = eps * std / 2
            # kl = -1/2 (1 + logvar - mu^2 - exp(logvar)): dkl/dmu = mu, dkl/dlogvar = (exp(logvar) - 1) / 2
            dmu = dz + (cfg.beta / B) * mu                           # (B, K)
            dlogvar = dz * eps * 0.5 * std + (cfg.beta / B) * 0.5 * (np.exp(logvar) - 1.0)  # (B, K)
            dh = (self._layer_backward("enc.mu", dmu, c["h"], grads)    # (B, H_last): h feeds
                  + self._layer_backward("enc.logvar", dlogvar, c["h"], grads))  # both heads
        else:
            dmu = dz                                                 # z = mu
            dh = self._layer_backward("enc.mu", dmu, c["h"], grads)  # (B, H_last)
        self._hidden_backward(dh, c["enc"], grads)                   # d/dx is not needed
        return stats, grad

    def train_step(self, x, opt, eps=None):
        """Forward, backward, (clip and) update self.params in place; returns the stats of
        the forward pass, i.e. before the update."""
        stats, grad = self.loss_and_grad(x, eps)
        opt.step(self.params, grad)
        return stats


# ---------------------------------------------------------------------------
# optimizers (PyTorch semantics), updating a flat float64 buffer in place

def clip_grad_norm(grad, max_norm):
    """torch.nn.utils.clip_grad_norm_ on one flat gradient: returns (clipped copy, total norm).
    The norm is the 2-norm over every parameter at once; scaled only when coef < 1."""
    total = float(np.sqrt(np.sum(grad * grad)))
    coef = max_norm / (total + CLIP_EPS)
    return (grad * coef if coef < 1.0 else grad.copy()), total


class Adam:
    """torch.optim.Adam (no weight decay, no amsgrad), with optional clipping first."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, clip_norm=None):
        self.lr, (self.beta1, self.beta2), self.eps, self.clip_norm = lr, betas, eps, clip_norm
        self.m = np.zeros_like(model.params)  # (P,) first moment
        self.v = np.zeros_like(model.params)  # (P,) second moment
        self.t = 0

    def step(self, params, grad):
        if self.clip_norm is not None:
            grad, _ = clip_grad_norm(grad, self.clip_norm)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        self.m = b1 * self.m + (1.0 - b1) * grad
        self.v = b2 * self.v + (1.0 - b2) * grad * grad
        m_hat = self.m / (1.0 - b1 ** self.t)  # bias-correct both moments
        v_hat = self.v / (1.0 - b2 ** self.t)
        params -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class SGD:
    """torch.optim.SGD (dampening 0, no Nesterov, no weight decay), with optional clipping first."""

    def __init__(self, model, lr, momentum=0.0, clip_norm=None):
        self.lr, self.momentum, self.clip_norm = lr, momentum, clip_norm
        self.buf = np.zeros_like(model.params)  # (P,) momentum buffer, starts at 0

    def step(self, params, grad):
        if self.clip_norm is not None:
            grad, _ = clip_grad_norm(grad, self.clip_norm)
        if self.momentum == 0.0:
            params -= self.lr * grad
        else:
            self.buf = self.momentum * self.buf + grad
            params -= self.lr * self.buf


# ---------------------------------------------------------------------------
# helpers for the tests

def central_difference_grad(f, params, h):
    """d f / d params by central differences, perturbing the buffer params in place and
    restoring every entry (also on error). The step divides by the difference of the
    two float64 points actually evaluated, not by 2h, so the rounding of p +- h is exact."""
    grad = np.zeros(params.shape, dtype=np.float64)
    flat = params.reshape(-1)  # a view: params must be contiguous
    assert np.shares_memory(flat, params)
    for i in range(flat.size):
        old = flat[i]
        try:
            flat[i] = old + h
            plus, f_plus = flat[i], f()
            flat[i] = old - h
            minus, f_minus = flat[i], f()
        finally:
            flat[i] = old
        grad.reshape(-1)[i] = (f_plus - f_minus) / (float(plus) - float(minus))
    return grad


def rel_error(a, b, floor=0.0, tiny=1e-300):
    """max|a - b| / max(max|a|, max|b|, floor, tiny): the error relative to the scale of the
    whole array (or to floor if that is larger), not of each entry; see blockwise_rel_error."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)),
                floor, tiny)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def blockwise_rel_error(a, b, model, floor_fraction=1e-3):
    """{name: relative error of that parameter's block} for two flat (P,) vectors in
    model's layout: each block's max |a - b| over its own largest |entry|, or over
    floor_fraction * the largest |entry| of the whole vector if that is larger.

    Why this and not the alternatives:
    - entrywise |a_j - b_j| / max(|a_j|, |b_j|) blows up on entries that are (near) zero
      by cancellation, where the unavoidable absolute error of a finite difference or of
      float32 arithmetic dominates: it fails correct code;
    - one norm over the whole vector lets a wrong small block (a late bias, the logvar
      head) hide under the big ones: it passes wrong code;
    - per block, each weight or bias tensor must be right at its own scale, which is what
      a bug in one layer's backward breaks. The floor is for blocks whose gradient is
      almost nothing (the first layer under four sigmoids, or behind mostly dead ReLUs:
      1e-5 of the largest entry), which a finite difference can't resolve to 1e-6 of their
      own size (its absolute noise is ~ eps_machine * |loss| / h). A wrong formula gives
      an error of the order of the block itself, so even a block at 1e-6 of the largest
      gradient still fails with an error of 1e-3, far above any tolerance used here."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    floor = floor_fraction * max(float(np.max(np.abs(a), initial=0.0)),
                                 float(np.max(np.abs(b), initial=0.0)))
    va, vb = model.unflatten(a), model.unflatten(b)
    return {name: rel_error(va[name], vb[name], floor) for name in model.names}


# ---------------------------------------------------------------------------
# a VAE of layer stacks (the layers issue): stacks as the C core's int tuples
# (kind, args...), the same encoding as vaecore.layers: Linear (0, out), Conv2d
# (1, O, KH, KW, SH, SW, PH, PW), ConvTranspose2d (2, ...), activation (3, act),
# Flatten (4,), Reshape (5, C, H, W). Written from the definitions: each layer
# a forward function of its input and a backward of (dout, input, pre-activation).

STACK_ACTIVATIONS = ("tanh", "relu", "leaky_relu", "sigmoid", "elu")


def _stack_params(spec, in_shape):
    """(out_shape, [(suffix, shape)]) of one layer given its input's shape (per example)."""
    kind, a = spec[0], spec[1:]
    if kind == 0:
        return (a[0],), [("W", (in_shape[0], a[0])), ("b", (a[0],))]
    if kind in (1, 2):
        O, KH, KW, SH, SW, PH, PW = a
        C, H, W = in_shape
        if kind == 1:
            HO, WO = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
            return (O, HO, WO), [("W", (O, C, KH, KW)), ("b", (O,))]
        HO, WO = (H - 1) * SH - 2 * PH + KH, (W - 1) * SW - 2 * PW + KW
        return (O, HO, WO), [("W", (C, O, KH, KW)), ("b", (O,))]
    if kind == 3:
        return in_shape, []
    if kind == 4:
        return (int(np.prod(in_shape)),), []
    if kind == 5:
        return tuple(a), []
    raise ValueError(f"unknown layer kind {kind}")


class ReferenceStackVAE:
    """loss and gradient of a layer-stack VAE in float64, from a flat params vector laid out as the
    C core's layout(): the encoder's parameter layers, enc.mu, enc.logvar, the decoder's, dec.logvar."""

    def __init__(self, input_shape, latent_dim, encoder, decoder, likelihood):
        self.input_shape, self.K, self.lik = tuple(input_shape), latent_dim, likelihood
        self.enc, self.dec = list(encoder), list(decoder)
        self.names, self.shapes = [], []
        shape = self.input_shape
        for i, spec in enumerate(self.enc):
            shape, ps = _stack_params(spec, shape)
            self._add(f"enc.{i}", ps)
        F = int(np.prod(shape))
        self._add("enc.mu", [("W", (F, latent_dim)), ("b", (latent_dim,))])
        self._add("enc.logvar", [("W", (F, latent_dim)), ("b", (latent_dim,))])
        shape = (latent_dim,)
        for i, spec in enumerate(self.dec):
            shape, ps = _stack_params(spec, shape)
            self._add(f"dec.{i}", ps)
        if likelihood == "gaussian_learned":
            self.names.append("dec.logvar")
            self.shapes.append((int(np.prod(self.input_shape)),))

    def _add(self, prefix, ps):
        for suffix, shape in ps:
            self.names.append(f"{prefix}.{suffix}")
            self.shapes.append(shape)

    def unflatten(self, flat):
        out, off = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = int(np.prod(shape))
            out[name] = flat[off:off + n].reshape(shape)
            off += n
        assert off == flat.size
        return out

    def _forward(self, prefix, stack, p, h):
        """h (B, ...) through a stack; returns the output and the tape [(spec, input, pre-activation)]."""
        tape = []
        for i, spec in enumerate(stack):
            kind, a = spec[0], spec[1:]
            inp = h
            if kind == 0:
                h = linear_forward(h, p[f"{prefix}.{i}.W"], p[f"{prefix}.{i}.b"])
            elif kind == 1:
                h = conv2d_forward(h, p[f"{prefix}.{i}.W"], p[f"{prefix}.{i}.b"], a[3:5], a[5:7])
            elif kind == 2:
                h = conv_transpose2d_forward(h, p[f"{prefix}.{i}.W"], p[f"{prefix}.{i}.b"], a[3:5], a[5:7])
            elif kind == 3:
                h = activation_forward(h, STACK_ACTIVATIONS[a[0]])
            elif kind == 4:
                h = h.reshape(h.shape[0], -1)
            else:
                h = h.reshape(h.shape[0], *a)
            tape.append((i, spec, inp))
        return h, tape

    def _backward(self, prefix, p, g, tape, grads):
        for i, spec, inp in reversed(tape):
            kind, a = spec[0], spec[1:]
            if kind == 0:
                g, grads[f"{prefix}.{i}.W"], grads[f"{prefix}.{i}.b"] = linear_backward(g, inp, p[f"{prefix}.{i}.W"])
            elif kind == 1:
                g, grads[f"{prefix}.{i}.W"], grads[f"{prefix}.{i}.b"] = conv2d_backward(
                    g, inp, p[f"{prefix}.{i}.W"], a[3:5], a[5:7])
            elif kind == 2:
                g, grads[f"{prefix}.{i}.W"], grads[f"{prefix}.{i}.b"] = conv_transpose2d_backward(
                    g, inp, p[f"{prefix}.{i}.W"], a[3:5], a[5:7])
            elif kind == 3:
                g = activation_backward(g, inp, STACK_ACTIVATIONS[a[0]])
            else:
                g = g.reshape(inp.shape)
        return g

    def loss_and_grad(self, flat, x, eps, beta):
        """((loss, recon, kl), grad (P,)) for x (B, D) and eps (B, K), batch means."""
        p = self.unflatten(np.asarray(flat, np.float64))
        B = x.shape[0]
        h, enc_tape = self._forward("enc", self.enc, p, x.reshape(B, *self.input_shape))
        hf = h.reshape(B, -1)
        mu = linear_forward(hf, p["enc.mu.W"], p["enc.mu.b"])
        lv = linear_forward(hf, p["enc.logvar.W"], p["enc.logvar.b"])
        sigma = np.exp(0.5 * lv)
        z = mu + sigma * eps
        out_shaped, dec_tape = self._forward("dec", self.dec, p, z)
        out = out_shaped.reshape(B, -1)
        grads = {}
        if self.lik == "gaussian":
            recon = gaussian_recon(x, out)
            dout = 2 * (out - x)
        elif self.lik == "bernoulli":
            recon = bernoulli_recon(x, out)
            dout = sigmoid(out) - x
        else:
            dlv = p["dec.logvar"]
            recon = np.sum((x - out) ** 2 / (2 * np.exp(dlv)) + dlv / 2 + 0.5 * np.log(2 * np.pi), axis=1)
            dout = (out - x) / np.exp(dlv)
            grads["dec.logvar"] = np.sum(0.5 - (x - out) ** 2 / (2 * np.exp(dlv)), axis=0) / B
        kl = gaussian_kl(mu, lv)
        dz = self._backward("dec", p, dout.reshape(out_shaped.shape) / B, dec_tape, grads)
        dz = dz.reshape(B, -1)
        dmu = dz + beta * mu / B
        dlogvar = dz * eps * 0.5 * sigma + beta * 0.5 * (np.exp(lv) - 1) / B
        dh1, grads["enc.mu.W"], grads["enc.mu.b"] = linear_backward(dmu, hf, p["enc.mu.W"])
        dh2, grads["enc.logvar.W"], grads["enc.logvar.b"] = linear_backward(dlogvar, hf, p["enc.logvar.W"])
        self._backward("enc", p, (dh1 + dh2).reshape(h.shape), enc_tape, grads)
        flat_grad = np.concatenate([grads[name].reshape(-1) for name in self.names])
        stats = (float(np.mean(recon + beta * kl)), float(np.mean(recon)), float(np.mean(kl)))
        return stats, flat_grad


class ReferenceGAN:
    """The GAN of Goodfellow et al. 2014 with the non-saturating generator loss, in float64, from a flat
    params vector laid out as the C core's Gan.layout(): the generator's parameter layers (gen.i.W,
    gen.i.b), then the discriminator's (disc.i.W, disc.i.b). Stacks as in ReferenceStackVAE.

        d_loss = mean_i softplus(-D(x_i)) + mean_j softplus(D(G(z_j)))
        g_loss = mean_j softplus(-D(G(z_j)))
    """

    def __init__(self, data_shape, latent_dim, generator, discriminator):
        self.data_shape, self.K = tuple(data_shape), latent_dim
        self.gen, self.disc = list(generator), list(discriminator)
        self._stacks = ReferenceStackVAE.__new__(ReferenceStackVAE)   # only its stack forward/backward
        self.names, self.shapes = [], []
        shape = (latent_dim,)
        for i, spec in enumerate(self.gen):
            shape, ps = _stack_params(spec, shape)
            self._add(f"gen.{i}", ps)
        self.num_gen = sum(int(np.prod(s)) for s in self.shapes)
        shape = self.data_shape
        for i, spec in enumerate(self.disc):
            shape, ps = _stack_params(spec, shape)
            self._add(f"disc.{i}", ps)

    _add = ReferenceStackVAE._add
    unflatten = ReferenceStackVAE.unflatten

    def _G(self, p, z):
        out, tape = self._stacks._forward("gen", self.gen, p, z)
        return out.reshape(z.shape[0], *self.data_shape), tape

    def _D(self, p, x):
        l, tape = self._stacks._forward("disc", self.disc, p, x.reshape(x.shape[0], *self.data_shape))
        return l.reshape(-1), tape

    def _flat(self, grads):
        return np.concatenate([grads[n].reshape(-1) if n in grads else np.zeros(int(np.prod(s)))
                               for n, s in zip(self.names, self.shapes)])

    def generate(self, flat, z):
        return self._G(self.unflatten(np.asarray(flat, np.float64)), z)[0].reshape(z.shape[0], -1)

    def discriminate(self, flat, x):
        return self._D(self.unflatten(np.asarray(flat, np.float64)), x)[0]

    def d_loss_and_grad(self, flat, x, z):
        """((d_loss, acc_real, acc_fake), grad (P,)) for real x (R, D) and noise z (B, K); the grad is
        zero on the generator's part (G's output is a constant for D's update)."""
        p = self.unflatten(np.asarray(flat, np.float64))
        R, B = x.shape[0], z.shape[0]
        fake, _ = self._G(p, z)
        xd = np.concatenate([x.reshape(R, *self.data_shape), fake])
        l, tape = self._D(p, xd)
        lr_, lf = l[:R], l[R:]
        d_loss = softplus(-lr_).mean() + softplus(lf).mean()
        dl = np.concatenate([(sigmoid(lr_) - 1) / R, sigmoid(lf) / B])   # d softplus(-l)/dl = sigmoid(l) - 1
        grads = {}
        self._stacks._backward("disc", p, dl.reshape(R + B, 1), tape, grads)
        return (float(d_loss), float((lr_ > 0).mean()), float((lf < 0).mean())), self._flat(grads)

    def g_loss_and_grad(self, flat, z):
        """(g_loss, grad (P,)) for noise z (B, K); zero on the discriminator's part."""
        p = self.unflatten(np.asarray(flat, np.float64))
        B = z.shape[0]
        raw, gtape = self._stacks._forward("gen", self.gen, p, z)     # G's output, flat or image-shaped
        l, dtape = self._D(p, raw.reshape(B, *self.data_shape))
        g_loss = softplus(-l).mean()
        d_grads, grads = {}, {}
        dfake = self._stacks._backward("disc", p, ((sigmoid(l) - 1) / B).reshape(B, 1), dtape, d_grads)
        self._stacks._backward("gen", p, dfake.reshape(raw.shape), gtape, grads)
        return float(g_loss), self._flat(grads)

    def train_step(self, flat, x, zs, opt_g, opt_d):
        """One step as the C core takes it: for each z in zs (k of them) a discriminator update on the
        matching real batch of x (k B rows) and G(z); then a generator update on the last z, scored by
        the updated discriminator. opt_g / opt_d are reference optimizers (Adam, SGD) stepping the whole
        buffer with a gradient that is zero off their own network, so only the moments of their own
        part move. Returns (mean d_loss, g_loss) and updates flat in place."""
        k, B = len(zs), zs[0].shape[0]
        G = self.num_gen
        d_sum = 0.0
        for s, z in enumerate(zs):
            (d, _, _), grad = self.d_loss_and_grad(flat, x[s * B:(s + 1) * B], z)
            d_sum += d
            part = flat[G:]                    # a view: the optimizer updates D's part only
            opt_d.step_part(part, grad[G:], G)
        g, grad = self.g_loss_and_grad(flat, zs[-1])
        opt_g.step_part(flat[:G], grad[:G], 0)
        return d_sum / k, g


class PartAdam(Adam):
    """Adam on one part [off, off + n) of a flat buffer, its moments kept for that part only."""

    def step_part(self, part, grad, off):
        n = part.size
        if self.clip_norm is not None:
            grad, _ = clip_grad_norm(grad, self.clip_norm)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        m, v = self.m[off:off + n], self.v[off:off + n]
        m[...] = b1 * m + (1.0 - b1) * grad
        v[...] = b2 * v + (1.0 - b2) * grad * grad
        part -= self.lr * (m / (1.0 - b1 ** self.t)) / (np.sqrt(v / (1.0 - b2 ** self.t)) + self.eps)


class ReferenceVQVAE(ReferenceStackVAE):
    """The VQ-VAE of van den Oord et al. 2017 in float64, from a flat params vector laid out as the C
    core's VqVae.layout(): the encoder's parameter layers, vq.codebook (K, d), the decoder's, dec.logvar.
    The nearest code is searched by brute force (every squared distance, np.argmin: the lowest k on a tie),
    the gradient is straight through z_q, and the EMA update is written from the paper's appendix A.1."""

    def __init__(self, input_shape, codebook_size, code_dim, encoder, decoder, likelihood, ema):
        self.input_shape, self.K, self.d, self.lik, self.ema = (tuple(input_shape), codebook_size, code_dim,
                                                               likelihood, ema)
        self.enc, self.dec = list(encoder), list(decoder)
        self.names, self.shapes = [], []
        shape = self.input_shape
        for i, spec in enumerate(self.enc):
            shape, ps = _stack_params(spec, shape)
            self._add(f"enc.{i}", ps)
        self.code_shape = shape
        self.names.append("vq.codebook")
        self.shapes.append((codebook_size, code_dim))
        for i, spec in enumerate(self.dec):
            shape, ps = _stack_params(spec, shape)
            self._add(f"dec.{i}", ps)
        if likelihood == "gaussian_learned":
            self.names.append("dec.logvar")
            self.shapes.append((int(np.prod(self.input_shape)),))

    @staticmethod
    def rows(ze):
        """(B, d, h, w) or (B, d) -> (B S, d): one row per position, positions in raster order."""
        if ze.ndim == 2:
            return ze
        return np.moveaxis(ze.reshape(ze.shape[0], ze.shape[1], -1), 1, 2).reshape(-1, ze.shape[1])

    @staticmethod
    def nearest(z, codebook):
        """codes (M,) and squared distances (M,) of rows z (M, d), by brute force."""
        dist = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(axis=2)
        codes = np.argmin(dist, axis=1)
        return codes, dist[np.arange(len(z)), codes]

    def loss_and_grad(self, flat, x, commitment):
        """(stats dict, grad (P,), codes (M,), z rows (M, d)) for x (B, D), batch means."""
        p = self.unflatten(np.asarray(flat, np.float64))
        B = x.shape[0]
        ze, enc_tape = self._forward("enc", self.enc, p, x.reshape(B, *self.input_shape))
        z = self.rows(ze)
        cb = p["vq.codebook"]
        codes, _ = self.nearest(z, cb)
        zq_rows = cb[codes]
        if ze.ndim == 2:
            zq = zq_rows
        else:
            zq = np.moveaxis(zq_rows.reshape(B, -1, self.d), 2, 1).reshape(ze.shape)
        out_shaped, dec_tape = self._forward("dec", self.dec, p, zq)
        out = out_shaped.reshape(B, -1)
        grads = {}
        if self.lik == "gaussian":
            recon, dout = gaussian_recon(x, out), 2 * (out - x)
        elif self.lik == "bernoulli":
            recon, dout = bernoulli_recon(x, out), sigmoid(out) - x
        else:
            dlv = p["dec.logvar"]
            recon = np.sum((x - out) ** 2 / (2 * np.exp(dlv)) + dlv / 2 + 0.5 * np.log(2 * np.pi), axis=1)
            dout = (out - x) / np.exp(dlv)
            grads["dec.logvar"] = np.sum(0.5 - (x - out) ** 2 / (2 * np.exp(dlv)), axis=0) / B
        sq = float(((ze - zq) ** 2).sum()) / B
        dzq = self._backward("dec", p, dout.reshape(out_shaped.shape) / B, dec_tape, grads)
        dze = dzq.reshape(ze.shape) + 2 * commitment * (ze - zq) / B     # straight through, + commitment
        self._backward("enc", p, dze, enc_tape, grads)
        gcb = np.zeros_like(cb)
        if not self.ema:
            np.add.at(gcb, codes, 2 * (zq_rows - z) / B)
        grads["vq.codebook"] = gcb
        counts = np.bincount(codes, minlength=self.K)
        freq = counts[counts > 0] / counts.sum()
        stats = {"recon": float(np.mean(recon)), "commitment": commitment * sq,
                 "codebook": 0.0 if self.ema else sq, "perplexity": float(np.exp(-(freq * np.log(freq)).sum()))}
        stats["loss"] = stats["recon"] + stats["commitment"] + stats["codebook"]
        flat_grad = np.concatenate([grads[name].reshape(-1) for name in self.names])
        return stats, flat_grad, codes, z

    def ema_update(self, count, sums, codes, z, decay, eps=1e-5):
        """(count, sums, codebook) after one EMA step on the batch's codes (M,) and rows z (M, d)."""
        n_k = np.bincount(codes, minlength=self.K).astype(np.float64)
        s_k = np.zeros((self.K, self.d))
        np.add.at(s_k, codes, z)
        count = decay * count + (1 - decay) * n_k
        sums = decay * sums + (1 - decay) * s_k
        n = count.sum()
        smoothed = (count + eps) / (n + self.K * eps) * n
        return count, sums, sums / smoothed[:, None]
class ReferenceMADE:
    """MADE (Germain et al. 2015, "MADE: Masked Autoencoder for Distribution Estimation") over grids of
    L positions with K codes each, written from the paper's degree rules, in float64.

    The one-hot input unit of position j has degree j + 1, the output logits of position i degree i + 1;
    hidden unit u of each hidden layer has degree 1 + (u mod max(L - 1, 1)) (vaecore's deterministic
    choice of degrees). A weight from a unit of degree a to a hidden unit of degree b exists when b >= a,
    to an output unit of degree b when b > a. Layers: [Linear(h), act] per hidden width, then
    Linear(L K); log p(c) = sum_i log softmax(logits_i)[c_i]; the loss is -mean_n log p(c_n).

    Parameters are a list [(W (I, O), b (O,)), ...]; flat(params) packs them as vaecore's layout does
    (W, b per layer). The masks multiply W in the forward pass, so a weight off the mask has no effect
    and gets gradient 0 whatever its value.
    """

    def __init__(self, L, K, hidden, activation):
        self.L, self.K, self.hidden, self.activation = L, K, tuple(hidden), activation
        deg_in = [j // K + 1 for j in range(L * K)]
        layers_deg = [deg_in] + [[1 + u % max(L - 1, 1) for u in range(h)] for h in self.hidden]
        self.masks = []
        for below, above in zip(layers_deg, layers_deg[1:]):
            self.masks.append(np.array([[1.0 if b >= a else 0.0 for b in above] for a in below]))
        last = layers_deg[-1]
        self.masks.append(np.array([[1.0 if b > a else 0.0 for b in deg_in] for a in last]))
        widths = [L * K] + list(self.hidden) + [L * K]
        self.shapes = [((i, o), (o,)) for i, o in zip(widths, widths[1:])]

    def unflat(self, flat):
        out, at = [], 0
        for (ws, bs) in self.shapes:
            nw, nb = ws[0] * ws[1], bs[0]
            out.append((flat[at:at + nw].reshape(ws), flat[at + nw:at + nw + nb]))
            at += nw + nb
        return out

    def onehot(self, codes):
        """codes (n, L) -> x (n, L K)"""
        n = codes.shape[0]
        x = np.zeros((n, self.L * self.K))
        for r in range(n):
            for i in range(self.L):
                x[r, i * self.K + codes[r, i]] = 1.0
        return x

    def logits(self, flat, codes):
        """(n, L, K) logits and the tape of pre-activations for the backward pass."""
        params = self.unflat(flat)
        h = self.onehot(codes)
        tape = []
        for li, ((W, b), M) in enumerate(zip(params, self.masks)):
            a = linear_forward(h, W * M, b)
            tape.append((h, a))
            h = activation_forward(a, self.activation) if li < len(params) - 1 else a
        return h.reshape(-1, self.L, self.K), tape

    def log_softmax(self, z):
        z = z - z.max(axis=2, keepdims=True)
        return z - np.log(np.sum(np.exp(z), axis=2, keepdims=True))

    def log_prob(self, flat, codes):
        """(n,) natural-log probability of each grid."""
        lp = self.log_softmax(self.logits(flat, codes)[0])
        return np.array([sum(lp[r, i, codes[r, i]] for i in range(self.L)) for r in range(codes.shape[0])])

    def loss_and_grad(self, flat, codes):
        """(-mean log p(codes), its gradient (P,) in the flat layout)."""
        n = codes.shape[0]
        z, tape = self.logits(flat, codes)
        p = np.exp(self.log_softmax(z))
        loss = -float(np.mean(self.log_prob(flat, codes)))
        # d loss / d logits = (softmax - onehot) / n, per position
        dz = (p - self.onehot(codes).reshape(n, self.L, self.K)) / n
        g = dz.reshape(n, -1)
        params = self.unflat(flat)
        grads = [None] * len(params)
        for li in range(len(params) - 1, -1, -1):
            (W, b), M = params[li], self.masks[li]
            inp, a = tape[li]
            if li < len(params) - 1:
                g = activation_backward(g, a, self.activation)
            dinp, dW, db = linear_backward(g, inp, W * M)
            grads[li] = (dW * M, db)   # d/dW of (W * M) is M
            g = dinp
        return loss, np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
