"""The PyTorch peer: the same VAE, written as a PyTorch user would write it.

``torch.nn.Linear`` layers (y = x W^T + b with the weight stored as (O, I): the
initial values are vaecore's W (I, O) transposed), the hidden activation, the
loss of vaecore's README ("The loss, exactly": summed over dimensions, averaged
over the batch, beta times the closed-form KL), and ``torch.optim.Adam`` with
lr 1e-3, betas (0.9, 0.999), eps 1e-8. The Bernoulli term is
``binary_cross_entropy_with_logits``, which is softplus(l) - x l computed
stably, the same formula as vaecore's.

This module imports torch; nothing else in bench/ does at import time.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["TorchVAE", "make_optimizer", "ADAM_KW"]

# the implementation of torch.optim.Adam the benchmark uses: PyTorch's default
# on the CPU (neither foreach nor fused), unless run.py chose another (see there)
ADAM_KW = {}


class TorchVAE(nn.Module):
    """named_params: [(name, ndarray)] in vaecore's layout; copied, W transposed into nn.Linear."""

    def __init__(self, named_params, activation, likelihood, beta):
        super().__init__()
        p = dict(named_params)
        enc = sorted({n.split(".")[1] for n in p if n.startswith("enc.") and n.split(".")[1].isdigit()}, key=int)
        dec = sorted({n.split(".")[1] for n in p if n.startswith("dec.") and n.split(".")[1].isdigit()}, key=int)

        def linear(prefix):
            W, b = p[prefix + ".W"], p[prefix + ".b"]           # (I, O), (O,)
            layer = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(W.T.copy()))  # nn.Linear stores (O, I)
                layer.bias.copy_(torch.from_numpy(b.copy()))
            return layer

        self.enc = nn.ModuleList(linear(f"enc.{i}") for i in enc)
        self.mu = linear("enc.mu")
        self.logvar = linear("enc.logvar")
        self.dec = nn.ModuleList(linear(f"dec.{i}") for i in dec)
        self.out = linear("dec.out")
        self.act = {"tanh": torch.tanh, "relu": F.relu}[activation]
        self.bernoulli = likelihood == "bernoulli"
        self.beta = float(beta)
        self.latent_dim = self.mu.out_features

    def forward(self, x, eps):
        """x (B, D), eps (B, K) -> the training loss, a scalar."""
        h = x
        for layer in self.enc:
            h = self.act(layer(h))
        mu, logvar = self.mu(h), self.logvar(h)                 # (B, K) each
        z = mu + torch.exp(0.5 * logvar) * eps                  # reparameterization
        g = z
        for layer in self.dec:
            g = self.act(layer(g))
        out = self.out(g)                                       # (B, D)
        if self.bernoulli:
            recon = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
        else:
            recon = ((x - out) ** 2).sum(1)
        kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1)
        return (recon + self.beta * kl).mean()

    def flat_params(self):
        """The parameters as one float32 tensor in vaecore's layout (W back to (I, O))."""
        parts = []
        for layer in [*self.enc, self.mu, self.logvar, *self.dec, self.out]:
            parts += [layer.weight.detach().t().reshape(-1), layer.bias.detach().reshape(-1)]
        return torch.cat(parts)


def make_optimizer(model, **kw):
    return torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **(kw or ADAM_KW))
