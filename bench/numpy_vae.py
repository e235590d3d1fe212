"""A float32 VAE in plain NumPy: the "what you would write instead" peer of the benchmark.

The same math as vaecore and as tests/reference.py (Kingma & Welling 2014, the
KL weighted by beta as in Higgins et al. 2017, Adam of Kingma & Ba 2015 with
PyTorch's update rule), written to be reasonably fast rather than to be read
line by line against the formulas: every product is a float32 ``@`` (NumPy's
BLAS), the parameters, the gradient and Adam's moments are flat float32 buffers
with one layout (vaecore's), and Adam is a handful of in-place vector
operations over the whole buffer.

Dimension letters: B = batch, D = input width, K = latent width, I / O = a
layer's input / output width, P = number of parameters.

What it deliberately is not: general. Hidden activations are tanh or relu
(the benchmark's workloads); there is no plain autoencoder and no clipping.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NumpyVAE", "NumpyAdam"]

F32 = np.float32


class NumpyVAE:
    """named_params: [(name, array)] in vaecore's layout (enc.0.W (D, H0), enc.0.b, ...)."""

    def __init__(self, named_params, activation, likelihood, beta, seed=0):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        self.activation, self.likelihood, self.beta = activation, likelihood, F32(beta)
        self.names = [n for n, _ in named_params]
        self.params = np.concatenate([np.asarray(a, F32).ravel() for _, a in named_params])  # (P,)
        self.grad = np.zeros_like(self.params)                                                # (P,)
        self.p, self.g, off = {}, {}, 0
        for name, a in named_params:
            n = a.size
            self.p[name] = self.params[off:off + n].reshape(a.shape)   # views into the flat buffers
            self.g[name] = self.grad[off:off + n].reshape(a.shape)
            off += n
        self.enc = [n[:-2] for n in self.names if n.startswith("enc.") and n.split(".")[1].isdigit() and n.endswith(".W")]
        self.dec = [n[:-2] for n in self.names if n.startswith("dec.") and n.split(".")[1].isdigit() and n.endswith(".W")]
        self.latent_dim = self.p["enc.mu.b"].shape[0]
        self.rng = np.random.default_rng(seed)

    # -- pieces
    def _linear(self, prefix, inp):
        """inp (B, I) @ W (I, O) + b (O,) -> (B, O)"""
        out = inp @ self.p[prefix + ".W"]
        out += self.p[prefix + ".b"]
        return out

    def _act(self, a):
        if self.activation == "tanh":
            return np.tanh(a)
        return np.maximum(a, F32(0))

    def _dact(self, dy, a, y):
        """dy * f'(a), using the output y = f(a)."""
        if self.activation == "tanh":
            return dy * (F32(1) - y * y)
        return dy * (a > 0)

    def _backward_linear(self, prefix, dout, inp, need_dinp=True):
        """dW = inp^T @ dout, db = sum over rows; returns dinp = dout @ W^T (B, I) or None."""
        np.matmul(inp.T, dout, out=self.g[prefix + ".W"])
        np.sum(dout, axis=0, out=self.g[prefix + ".b"])
        return dout @ self.p[prefix + ".W"].T if need_dinp else None

    # -- one step
    def loss_and_grad(self, x, eps=None):
        """x (B, D) float32, eps (B, K) or None (drawn here). Fills self.grad; returns the loss."""
        B = x.shape[0]
        if eps is None:
            eps = self.rng.standard_normal((B, self.latent_dim), dtype=F32)
        beta = self.beta
        # encoder
        h, cache = x, []
        for prefix in self.enc:
            a = self._linear(prefix, h)                       # (B, H) pre-activation
            y = self._act(a)
            cache.append((prefix, h, a, y))
            h = y
        mu = self._linear("enc.mu", h)                        # (B, K)
        logvar = self._linear("enc.logvar", h)                # (B, K)
        std = np.exp(F32(0.5) * logvar)                       # (B, K)
        z = mu + std * eps                                    # (B, K)
        # decoder
        g, dcache = z, []
        for prefix in self.dec:
            a = self._linear(prefix, g)
            y = self._act(a)
            dcache.append((prefix, g, a, y))
            g = y
        out = self._linear("dec.out", g)                      # (B, D)
        # loss = mean_i (recon_i + beta kl_i)
        ev = np.exp(logvar)
        kl = F32(-0.5) * np.sum(F32(1) + logvar - mu * mu - ev)   # summed over the batch
        if self.likelihood == "gaussian":
            diff = out - x
            recon = np.sum(diff * diff)
            dout = diff * F32(2.0 / B)                        # d/dout (x - out)^2 = 2 (out - x)
        else:
            # softplus(l) - x l, stably: max(l, 0) + log1p(exp(-|l|)) - x l
            e = np.exp(-np.abs(out))
            recon = np.sum(np.maximum(out, F32(0)) + np.log1p(e) - x * out)
            sig = np.where(out >= 0, F32(1) / (F32(1) + e), e / (F32(1) + e))
            dout = (sig - x) * F32(1.0 / B)                   # d/dl = sigmoid(l) - x
        loss = float(recon + beta * kl) / B
        # backward through the decoder
        dg = self._backward_linear("dec.out", dout, g)
        for prefix, inp, a, y in reversed(dcache):
            dg = self._backward_linear(prefix, self._dact(dg, a, y), inp)
        dz = dg                                               # (B, K)
        # z = mu + std eps; kl: d/dmu = mu, d/dlogvar = (exp(logvar) - 1) / 2
        kb = beta / F32(B)
        dmu = dz + kb * mu
        dlogvar = dz * eps * F32(0.5) * std + kb * F32(0.5) * (ev - F32(1))
        need = bool(self.enc)
        dh = self._backward_linear("enc.mu", dmu, h, need)
        dh2 = self._backward_linear("enc.logvar", dlogvar, h, need)
        if need:
            dh += dh2
            for i, (prefix, inp, a, y) in enumerate(reversed(cache)):
                dh = self._backward_linear(prefix, self._dact(dh, a, y), inp, i < len(cache) - 1)
        return loss


class NumpyAdam:
    """torch.optim.Adam's update on the flat buffers, in float32, in place."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.model, self.lr, (self.b1, self.b2), self.eps = model, lr, betas, eps
        self.m = np.zeros_like(model.params)   # (P,) first moment
        self.v = np.zeros_like(model.params)   # (P,) second moment
        self.tmp = np.empty_like(model.params)
        self.t = 0

    def step(self):
        g, m, v, tmp = self.model.grad, self.m, self.v, self.tmp
        self.t += 1
        m *= F32(self.b1)
        m += F32(1 - self.b1) * g
        np.multiply(g, g, out=tmp)
        v *= F32(self.b2)
        tmp *= F32(1 - self.b2)
        v += tmp
        # bias-correct both moments: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        bc1 = 1 - self.b1 ** self.t
        bc2 = 1 - self.b2 ** self.t
        np.sqrt(v, out=tmp)
        tmp *= F32(1 / np.sqrt(bc2))
        tmp += F32(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= F32(self.lr / bc1)
        self.model.params -= tmp

    def train_step(self, x, eps=None):
        loss = self.model.loss_and_grad(x, eps)
        self.step()
        return loss
