"""The convolutional VAE of the ``conv`` workload, written as a PyTorch user would write it.

The model of vaecore's layer API issue, on 28x28 grey-scale images (Fashion-MNIST):

    encoder  x (B, 1, 28, 28) -> Conv2d 32, 4x4, stride 2, pad 1 -> ReLU     (B, 32, 14, 14)
                              -> Conv2d 64, 4x4, stride 2, pad 1 -> ReLU     (B, 64, 7, 7)
                              -> Flatten -> Linear 256 -> ReLU               (B, 256)
    heads    mu, logvar = Linear 20 each on the encoder's output              (B, 20)
    decoder  z (B, 20) -> Linear 256 -> ReLU -> Linear 3136 -> ReLU
                       -> Reshape (64, 7, 7)
                       -> ConvTranspose2d 32, 4x4, stride 2, pad 1 -> ReLU   (B, 32, 14, 14)
                       -> ConvTranspose2d 1, 4x4, stride 2, pad 1            (B, 1, 28, 28) Bernoulli logits

and the loss of vaecore's README (Kingma & Welling 2014): per example
recon = sum over pixels of softplus(l) - x l (``binary_cross_entropy_with_logits``
summed) plus beta times the closed-form KL(N(mu, exp(logvar)) || N(0, I)),
averaged over the batch, with z = mu + exp(logvar / 2) * eps.

Parameters by vaecore's names, in vaecore's buffer order: ``enc.i.W``, ``enc.i.b``
for the layer at index i of the encoder list (0, 2 and 5 here: the indices of
``self.encoder`` are the same), ``enc.mu.*``, ``enc.logvar.*``, then ``dec.i.*``
(0, 2, 5, 7). Layouts: a Linear W is (in, out), the transpose of
``nn.Linear.weight``; Conv2d W is (C_out, C_in, kH, kW) and ConvTranspose2d W is
(C_in, C_out, kH, kW), both exactly as torch stores them.

Used by the benchmark (bench/peers.py, from vaecore's initial parameters) and by
bench/fashion_reference.py (from torch's own default initialisation).
This module imports torch; nothing else in bench/ does at import time.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TorchConvVAE", "INPUT_SHAPE", "LATENT_DIM"]

INPUT_SHAPE = (1, 28, 28)   # (C, H, W)
LATENT_DIM = 20             # K


class TorchConvVAE(nn.Module):
    """named_params: [(name, ndarray)] in vaecore's layout, copied in (Linear W transposed);
    None keeps torch's own default initialisation (seed it with torch.manual_seed first)."""

    def __init__(self, named_params=None, beta=1.0):
        super().__init__()
        K = LATENT_DIM
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ReLU(),              # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),             # (B, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),              # (B, 256)
        )
        self.mu = nn.Linear(256, K)
        self.logvar = nn.Linear(256, K)
        self.decoder = nn.Sequential(
            nn.Linear(K, 256), nn.ReLU(), nn.Linear(256, 64 * 7 * 7), nn.ReLU(),
            nn.Unflatten(1, (64, 7, 7)),                                      # (B, 64, 7, 7)
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),    # (B, 32, 14, 14)
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1),                # (B, 1, 28, 28) logits
        )
        self.beta = float(beta)
        self.latent_dim = K
        if named_params is not None:
            self.load_vaecore(named_params)

    def vaecore_layers(self):
        """[(vaecore name, module)] of every layer with parameters, in vaecore's buffer order."""
        out = [(f"enc.{i}", m) for i, m in enumerate(self.encoder) if isinstance(m, (nn.Linear, nn.Conv2d))]
        out += [("enc.mu", self.mu), ("enc.logvar", self.logvar)]
        out += [(f"dec.{i}", m) for i, m in enumerate(self.decoder)
                if isinstance(m, (nn.Linear, nn.ConvTranspose2d))]
        return out

    def load_vaecore(self, named_params):
        """Copy vaecore's parameters in: Linear W (in, out) transposed, conv weights as they are."""
        p = dict(named_params)
        want = {}
        for name, m in self.vaecore_layers():
            W = tuple(m.weight.shape[::-1]) if isinstance(m, nn.Linear) else tuple(m.weight.shape)
            want[name + ".W"], want[name + ".b"] = W, tuple(m.bias.shape)
        if set(p) != set(want):
            raise ValueError(f"named_params: expected the names {sorted(want)}, got {sorted(p)}")
        for name, shape in want.items():
            if tuple(p[name].shape) != shape:
                raise ValueError(f"named_params: {name} must have shape {shape}, got {tuple(p[name].shape)}")
        with torch.no_grad():
            for name, m in self.vaecore_layers():
                W = torch.from_numpy(p[name + ".W"].copy())
                m.weight.copy_(W.t() if isinstance(m, nn.Linear) else W)   # nn.Linear stores (out, in)
                m.bias.copy_(torch.from_numpy(p[name + ".b"].copy()))

    def encode(self, x):
        """x (B, 784) or (B, 1, 28, 28) in [0, 1] -> mu, logvar (B, K) each."""
        h = self.encoder(x.reshape(-1, *INPUT_SHAPE))                 # (B, 256)
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        """z (B, K) -> Bernoulli logits (B, 1, 28, 28)."""
        return self.decoder(z)

    def forward(self, x, eps):
        """x (B, 784) or (B, 1, 28, 28), eps (B, K) -> the training loss, a scalar."""
        x = x.reshape(-1, *INPUT_SHAPE)
        mu, logvar = self.encode(x)                                   # (B, K) each
        z = mu + torch.exp(0.5 * logvar) * eps                        # reparameterization
        logits = self.decode(z)                                       # (B, 1, 28, 28)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1)
        return (recon + self.beta * kl).mean()

    def flat_params(self):
        """The parameters as one tensor in vaecore's layout (Linear W back to (in, out))."""
        parts = []
        for _, m in self.vaecore_layers():
            W = m.weight.detach()
            parts += [(W.t() if isinstance(m, nn.Linear) else W).reshape(-1), m.bias.detach().reshape(-1)]
        return torch.cat(parts)
