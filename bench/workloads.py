"""The four workloads of issue 5, their data, their batches and their FLOP counts.

A workload fixes everything every peer must share: the architecture, the
activation, the likelihood, beta, the batch size, the data and the order of the
batches. Each peer starts from the same initial parameters (vaecore's own
initialisation, seed 0) and trains with Adam (lr 1e-3, betas (0.9, 0.999),
eps 1e-8).

Batches: the data is shuffled once with ``np.random.default_rng(seed)`` (as
``vaecore.fit`` shuffles an epoch) and cut into full batches; the incomplete
last batch is dropped, for every peer alike, so that every step has the same
shape (``torch.compile`` would otherwise compile a second graph). Timed runs and
the correctness guard both cycle through this one epoch of batches.

What this is not: a data pipeline. The shuffled epoch is built before any clock
starts, so no peer pays for slicing or shuffling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Workload", "WORKLOADS", "load_data", "epoch_batches", "flops_per_step", "linear_layers"]


@dataclass(frozen=True)
class Workload:
    name: str
    input_dim: int             # D
    hidden: tuple              # encoder hidden widths; the decoder mirrors them
    latent_dim: int            # K
    activation: str            # of every hidden layer
    likelihood: str            # "gaussian" (squared error) or "bernoulli" (logits)
    batch: int                 # B
    beta: float                # weight of the KL term
    data: str                  # "spirals", "digits" or "fashion"
    guard_steps: int           # steps of the correctness guard (full run)

    @property
    def arch(self):
        """'784-1024-1024-64': input, encoder hidden widths, latent (the decoder mirrors it)."""
        return "-".join(str(w) for w in (self.input_dim, *self.hidden, self.latent_dim))

    def describe(self):
        return (f"{self.arch}, {self.activation}, {self.likelihood}, batch {self.batch}, "
                f"beta {self.beta:g}")


WORKLOADS = {
    w.name: w for w in (
        # the spiral experiment of the README (python -m vaecore spirals)
        Workload("spirals", 2, (64, 64), 2, "tanh", "gaussian", 64, 0.05, "spirals", 300),
        # scikit-learn's 8x8 digits; relu hidden layers
        Workload("digits", 64, (256, 256), 16, "relu", "bernoulli", 128, 1.0, "digits", 300),
        # the classic MNIST VAE of Kingma & Welling's experiments, on Fashion-MNIST
        Workload("fashion", 784, (400,), 20, "relu", "bernoulli", 128, 1.0, "fashion", 200),
        # wide layers to exercise the matrix kernels at full size (Fashion-MNIST data)
        Workload("wide", 784, (1024, 1024), 64, "relu", "bernoulli", 256, 1.0, "fashion", 60),
    )
}


def load_data(kind, seed=0):
    """(X float32 (n, D), note): the data set of a workload and where it came from.

    Fashion-MNIST falls back to synthetic data of the same shape (60,000 x 784
    in [0, 1]) when its files are absent, and the note says so.
    """
    import vaecore

    if kind == "spirals":
        X, _, _ = vaecore.datasets.two_spirals(n=2000, noise=0.03, turns=1.5, seed=seed)
        return np.ascontiguousarray(X, dtype=np.float32), "two_spirals(n=2000)"
    if kind == "digits":
        X, _ = vaecore.datasets.digits("train")
        return np.ascontiguousarray(X, dtype=np.float32), "scikit-learn digits, train split (1,500)"
    if kind == "fashion":
        try:
            X, _ = vaecore.datasets.fashion_mnist("train")
            return np.ascontiguousarray(X, dtype=np.float32), "Fashion-MNIST train (60,000)"
        except FileNotFoundError:
            rng = np.random.default_rng(seed)
            X = rng.random((60000, 784), dtype=np.float32) ** 3   # sparse-ish, like images
            return X, "SYNTHETIC uniform**3 data of Fashion-MNIST's shape (files absent)"
    raise ValueError(f"unknown data set {kind!r}")


def epoch_batches(X, batch, seed=0):
    """One shuffled epoch of full batches: a list of C-contiguous (batch, D) float32 arrays."""
    n = X.shape[0]
    if n < batch:
        raise ValueError(f"the data has {n} rows, fewer than one batch of {batch}")
    Xp = X[np.random.default_rng(seed).permutation(n)]     # (n, D), one shuffled copy
    return [Xp[i:i + batch] for i in range(0, n - batch + 1, batch)]


def linear_layers(w):
    """[(name, I, O, needs_dinp)] for every linear layer of the VAE, in forward order.

    needs_dinp is False for the layers that read the data x (the first encoder
    layer, or the heads when there is no hidden layer): x needs no gradient.
    """
    layers = []
    width = w.input_dim
    for i, h in enumerate(w.hidden):
        layers.append((f"enc.{i}", width, h, i > 0))
        width = h
    first = not w.hidden
    layers.append(("enc.mu", width, w.latent_dim, not first))
    layers.append(("enc.logvar", width, w.latent_dim, not first))
    width = w.latent_dim
    for i, h in enumerate(tuple(reversed(w.hidden))):
        layers.append((f"dec.{i}", width, h, True))   # dec.0 reads z, which needs its gradient
        width = h
    layers.append(("dec.out", width, w.input_dim, True))
    return layers


def flops_per_step(w):
    """Floating-point operations of one training step's matrix products.

    Counted: 2*B*I*O (a multiply and an add per multiply-add) for each linear
    layer's forward product, its dW = inp^T @ dout and its dinp = dout @ W^T
    (not for the layers that read x). Not counted: biases, activations, the
    sampling, the loss and Adam (all O(B*width) or O(P), a few per cent at most).
    """
    total = 0
    for _, I, O, needs_dinp in linear_layers(w):
        total += 2 * w.batch * I * O * (3 if needs_dinp else 2)
    return total


def num_params(w):
    """P: weights and biases of every layer."""
    return sum(I * O + O for _, I, O, _ in linear_layers(w))
