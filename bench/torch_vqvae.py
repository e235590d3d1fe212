"""The PyTorch twin of vaecore.VQVAE, written as a PyTorch user would write a VQ-VAE.

The model of issue 13 (van den Oord, Vinyals and Kavukcuoglu 2017, "Neural
Discrete Representation Learning"), for the ``vqvae`` workload of the
benchmark and for the tests that check the twin against vaecore:

    encoder    z_e = enc(x)                       (B, d, h, w): S = h w positions (or (B, d): one)
    quantise   k_s = argmin_k |z_e,s - e_k|^2     by |z|^2 - 2 z.e + |e|^2 and ``argmin``
               (which returns the first minimum: ties go to the lowest k, as in vaecore)
    decoder    logits = dec(z_q)                  z_q the codebook rows themselves, exactly
    loss       mean over the batch of recon(x, logits) + commitment sum_s |z_e,s - sg(e_k_s)|^2
               (+ sum_s |sg(z_e,s) - e_k_s|^2 with codebook_update="loss")

recon is ``binary_cross_entropy_with_logits`` summed over the pixels
(bernoulli) or the squared error summed (gaussian), as in vaecore. The
straight-through estimator is written ``z_q + (z_e - z_e.detach())``: its
value is z_q exactly (vaecore decodes the codebook rows, not z_e + (z_q - z_e)
rounded), its gradient reaches z_e unchanged.

With ``codebook_update="ema"`` the codebook is a buffer, not a parameter, and
``ema_update`` moves it after the optimizer's step (csrc/vq.h; the paper's
appendix A.1): with n_k the batch's positions assigned to code k,

    N_k <- decay N_k + (1 - decay) n_k,   M_k <- decay M_k + (1 - decay) sum_{s: k_s = k} z_e,s
    e_k  = M_k / ((N_k + 1e-5) / (sum_j N_j + K 1e-5) * sum_j N_j)

N and M start at 1 and at the initial codebook. z_e and the codes are those
of the forward pass of the step (before the optimizer's update).

Parameters come from vaecore's ``named_params()`` (``enc.i.W``/``enc.i.b``,
``vq.codebook`` (K, d), ``dec.i.W``/``dec.i.b``, i the index in the layer
list): a Linear W is (in, out), the transpose of ``nn.Linear.weight``; Conv2d
W is (C_out, C_in, kH, kW) and ConvTranspose2d W (C_in, C_out, kH, kW), as
torch stores them. The layers are given as bench/workloads.py's ``Layer``
specs (kind, args, stride, padding), whose shapes workloads.walk_layers works
out: every array of named_params is checked against them.

This module imports torch; nothing else in bench/ does at import time.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from workloads import walk_layers

__all__ = ["TorchVQVAE", "EMA_EPS"]

EMA_EPS = 1e-5   # the Laplace smoothing of the averaged counts, vaecore.vqvae.EMA_EPS


class TorchVQVAE(nn.Module):
    """named_params: [(name, ndarray)] in vaecore's layout, copied in (Linear W transposed).

    input_shape: (C, H, W) or (D,); encoder, decoder: sequences of workloads.Layer specs.
    The module's dtype follows the arrays' (float32 or float64)."""

    def __init__(self, named_params, input_shape, encoder, decoder, likelihood="bernoulli", commitment=0.25,
                 codebook_update="ema", decay=0.99):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if codebook_update not in ("ema", "loss"):
            raise ValueError(f"codebook_update must be 'ema' or 'loss', got {codebook_update!r}")
        p = dict(named_params)
        rows = []                                                      # workloads.param_layers' rows
        code = walk_layers(rows, "enc", encoder, tuple(input_shape), True)
        end = walk_layers(rows, "dec", decoder, code, False)
        if tuple(end) != tuple(input_shape):
            raise ValueError(f"the decoder ends at shape {end}, expected input_shape {tuple(input_shape)}")
        want = {"vq.codebook": (p["vq.codebook"].shape[0] if "vq.codebook" in p else 0, code[0])}
        for name, _, _, _, W, b, _ in rows:
            want[name + ".W"], want[name + ".b"] = W, b
        if set(p) != set(want):
            raise ValueError(f"named_params: expected the names {sorted(want)}, got {sorted(p)}")
        for name, shape in want.items():
            if p[name].shape != shape:
                raise ValueError(f"named_params: {name} must have shape {shape}, got {p[name].shape}")
        self.encoder = nn.Sequential(*(self._layer(p, f"enc.{i}", l) for i, l in enumerate(encoder)))
        self.decoder = nn.Sequential(*(self._layer(p, f"dec.{i}", l) for i, l in enumerate(decoder)))
        cb = torch.from_numpy(p["vq.codebook"].copy())                 # (K, d)
        self.ema = codebook_update == "ema"
        if self.ema:   # no gradient: a buffer, with the averaged counts N (K) and sums M (K, d)
            self.register_buffer("codebook", cb)
            self.register_buffer("ema_count", torch.ones(cb.shape[0], dtype=cb.dtype))
            self.register_buffer("ema_sum", cb.clone())
        else:
            self.codebook = nn.Parameter(cb)
        self.input_shape = tuple(input_shape)
        self.bernoulli = likelihood == "bernoulli"
        self.commitment = float(commitment)
        self.decay = float(decay)
        self.to(cb.dtype)
        self._last = None   # (z_e rows (M, d), codes (M,)) of the last forward pass, for ema_update

    @staticmethod
    def _layer(p, name, spec):
        """The torch module of one workloads.Layer spec, its parameters copied from p[name + '.W'/'.b']
        (shapes already checked)."""
        if spec.kind == "ReLU":
            return nn.ReLU()
        if spec.kind == "Flatten":
            return nn.Flatten()
        if spec.kind == "Reshape":
            return nn.Unflatten(1, tuple(spec.args))
        W, b = p[name + ".W"], p[name + ".b"]
        if spec.kind == "Linear":                                      # W (in, out)
            m = nn.Linear(W.shape[0], W.shape[1])
        elif spec.kind == "Conv2d":                                    # W (C_out, C_in, k, k)
            m = nn.Conv2d(W.shape[1], W.shape[0], spec.args[1], stride=spec.stride, padding=spec.padding)
        elif spec.kind == "ConvTranspose2d":                           # W (C_in, C_out, k, k)
            m = nn.ConvTranspose2d(W.shape[0], W.shape[1], spec.args[1], stride=spec.stride, padding=spec.padding)
        else:
            raise ValueError(f"{name}: no torch twin for a {spec.kind} layer")
        m = m.to(torch.from_numpy(W[:0]).dtype)
        with torch.no_grad():
            Wt = torch.from_numpy(W.copy())
            m.weight.copy_(Wt.t() if spec.kind == "Linear" else Wt)    # nn.Linear stores (out, in)
            m.bias.copy_(torch.from_numpy(b.copy()))
        return m

    @staticmethod
    def _rows(z):
        """(B, d, h, w) -> (B h w, d): one row per position, in raster order within each example."""
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]) if z.ndim == 4 else z

    def nearest(self, rows):
        """codes (M,) of rows (M, d): the nearest codebook row, the first on a tie."""
        e = self.codebook.detach()
        dist = (rows * rows).sum(1, keepdim=True) - 2 * rows @ e.t() + (e * e).sum(1)   # (M, K)
        return dist.argmin(1)

    def forward(self, x):
        """x (B, D) or (B, *input_shape) -> the training loss, a scalar. Keeps z_e and the codes for
        ema_update."""
        x = x.reshape(-1, *self.input_shape)
        B = x.shape[0]
        z_e = self.encoder(x)                                          # (B, d, h, w) or (B, d)
        rows = self._rows(z_e)                                         # (M, d)
        codes = self.nearest(rows.detach())                            # (M,)
        q_rows = self.codebook[codes]                                  # (M, d), the codebook's rows
        z_q = (q_rows.reshape(B, z_e.shape[2], z_e.shape[3], -1).permute(0, 3, 1, 2)
               if z_e.ndim == 4 else q_rows)                           # z_e's layout
        out = self.decoder(z_q.detach() + (z_e - z_e.detach()))        # straight through; its value is z_q
        out = out.reshape(x.shape)
        if self.bernoulli:
            recon = F.binary_cross_entropy_with_logits(out, x, reduction="none").reshape(B, -1).sum(1)
        else:
            recon = ((x - out) ** 2).reshape(B, -1).sum(1)
        loss = recon.mean() + self.commitment * ((z_e - z_q.detach()) ** 2).sum() / B
        if not self.ema:
            loss = loss + ((rows.detach() - q_rows) ** 2).sum() / B
        self._last = (rows.detach(), codes)
        return loss

    @torch.no_grad()
    def ema_update(self):
        """The moving averages and the codebook after a step (see the module's docstring); a no-op
        with codebook_update="loss"."""
        if not self.ema:
            return
        rows, codes = self._last
        K = self.codebook.shape[0]
        counts = torch.bincount(codes, minlength=K).to(rows.dtype)                     # (K,)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, rows)              # (K, d)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + EMA_EPS) / (n + K * EMA_EPS) * n                  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    def vaecore_layers(self):
        """[(vaecore name, module)] of every layer with parameters, in vaecore's buffer order (the codebook
        comes between the encoder's and the decoder's)."""
        out = [(f"enc.{i}", m) for i, m in enumerate(self.encoder) if hasattr(m, "weight")]
        return out + [(f"dec.{i}", m) for i, m in enumerate(self.decoder) if hasattr(m, "weight")]

    def named_flat(self):
        """[(vaecore name, ndarray)] of the current parameters, in vaecore's layouts and order."""
        def flat(prefix):
            out = []
            for name, m in self.vaecore_layers():
                if name.startswith(prefix):
                    W = m.weight.detach()
                    out += [(name + ".W", (W.t() if isinstance(m, nn.Linear) else W).numpy().copy()),
                            (name + ".b", m.bias.detach().numpy().copy())]
            return out
        return [*flat("enc."), ("vq.codebook", self.codebook.detach().numpy().copy()), *flat("dec.")]


def make_optimizer(model, **kw):
    """torch.optim.Adam with PyTorch's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8), as vaecore.Adam's."""
    return torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **kw)


def train_step(model, opt, x):
    """One step: the loss (before the update) and its gradient, Adam, then the codebook's moving averages.
    Returns the loss as a float."""
    opt.zero_grad(set_to_none=True)
    loss = model(x)
    loss.backward()
    opt.step()
    model.ema_update()
    return float(loss.detach())
