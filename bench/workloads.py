"""The workloads of the benchmark, their data, their batches and their FLOP counts.

The four multilayer-perceptron workloads of issue 5 (``Workload``), the
convolutional VAE of the layer-API issue (``ConvWorkload``, ``conv``) and the
VQ-VAE of issue 13 (``VQWorkload``, ``vqvae``).

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

__all__ = ["Workload", "ConvWorkload", "VQWorkload", "Layer", "WORKLOADS", "load_data", "epoch_batches",
           "flops_per_step", "linear_layers", "param_layers", "walk_layers", "vq_layers", "num_params"]


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


@dataclass(frozen=True)
class Layer:
    """One entry of a vaecore layer list: ``getattr(vaecore.layers, kind)(*args, stride=, padding=)``
    (stride and padding only for the two convolutions)."""
    kind: str                  # Conv2d, ConvTranspose2d, Linear, ReLU, Flatten or Reshape
    args: tuple = ()           # out channels and kernel size; out width; or the (C, H, W) of a Reshape
    stride: int = 1
    padding: int = 0

    def __str__(self):
        if self.kind in ("Conv2d", "ConvTranspose2d"):
            return f"{self.kind}({self.args[0]}, {self.args[1]}, stride={self.stride}, padding={self.padding})"
        return f"{self.kind}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class ConvWorkload:
    """A VAE built from layer lists (vaecore.layers): the encoder's flattened output feeds the
    two linear heads mu and logvar; the decoder maps z (B, K) back to logits of input_shape."""
    name: str
    input_shape: tuple         # (C, H, W)
    encoder: tuple             # Layer, ...
    decoder: tuple             # Layer, ...
    latent_dim: int            # K
    likelihood: str            # "bernoulli" (logits)
    batch: int                 # B
    beta: float                # weight of the KL term
    data: str                  # "fashion"
    guard_steps: int           # steps of the correctness guard (full run)
    activation: str = "relu"   # of every hidden layer (the report's column)

    @property
    def input_dim(self):
        """D = C * H * W: the width of a flattened example (the batches are (B, D))."""
        C, H, W = self.input_shape
        return C * H * W

    @property
    def arch(self):
        """'1x28x28-c32-c64-256-20': input, encoder (c: a convolution's channels), latent."""
        parts = ["x".join(map(str, self.input_shape))]
        parts += [f"c{l.args[0]}" if l.kind == "Conv2d" else str(l.args[0]) for l in self.encoder
                  if l.kind in ("Conv2d", "Linear")]
        return "-".join(parts + [str(self.latent_dim)])

    def describe(self):
        return (f"{self.arch} (4x4 stride-2 convolutions, transposed in the decoder), {self.activation}, "
                f"{self.likelihood}, batch {self.batch}, beta {self.beta:g}")


@dataclass(frozen=True)
class VQWorkload:
    """A VQ-VAE (vaecore.VQVAE) built from layer lists: the encoder gives (code_dim, h, w), every
    position is replaced by its nearest codebook row, the decoder maps that back to logits of
    input_shape. No noise: the peers' step needs no eps."""
    name: str
    input_shape: tuple         # (C, H, W)
    encoder: tuple             # Layer, ...
    decoder: tuple             # Layer, ...
    codebook_size: int         # K codes
    code_dim: int              # d, the width of one code
    likelihood: str            # "bernoulli" (logits)
    commitment: float          # the weight of the commitment term
    codebook_update: str       # "ema" or "loss"
    decay: float               # of the moving averages (ema)
    batch: int                 # B
    data: str                  # "fashion"
    guard_steps: int           # steps of the correctness guard (full run)
    activation: str = "relu"   # of every hidden layer (the report's column)

    input_dim = ConvWorkload.input_dim

    @property
    def beta(self):
        """The report's beta column: the commitment weight (a VQ-VAE has no KL term)."""
        return self.commitment

    @property
    def arch(self):
        """'1x28x28-c32-c16-vq64x16': input, encoder convolutions' channels, codebook K x d."""
        parts = ["x".join(map(str, self.input_shape))]
        parts += [f"c{l.args[0]}" if l.kind == "Conv2d" else str(l.args[0]) for l in self.encoder
                  if l.kind in ("Conv2d", "Linear")]
        return "-".join(parts + [f"vq{self.codebook_size}x{self.code_dim}"])

    def describe(self):
        return (f"{self.arch} (4x4 stride-2 convolutions, transposed in the decoder), {self.activation}, "
                f"{self.likelihood}, codebook {self.codebook_size} x {self.code_dim} ({self.codebook_update}, "
                f"decay {self.decay:g}), commitment {self.commitment:g}, batch {self.batch}")


# the convolutional VAE of the layer-API issue, exactly as the issue constructs it
CONV_ENCODER = (Layer("Conv2d", (32, 4), 2, 1), Layer("ReLU"), Layer("Conv2d", (64, 4), 2, 1), Layer("ReLU"),
                Layer("Flatten"), Layer("Linear", (256,)), Layer("ReLU"))
CONV_DECODER = (Layer("Linear", (256,)), Layer("ReLU"), Layer("Linear", (3136,)), Layer("ReLU"),
                Layer("Reshape", (64, 7, 7)), Layer("ConvTranspose2d", (32, 4), 2, 1), Layer("ReLU"),
                Layer("ConvTranspose2d", (1, 4), 2, 1))

# the VQ-VAE of issue 13, exactly as the issue constructs it: 49 codes of 16 values per image
VQ_ENCODER = (Layer("Conv2d", (32, 4), 2, 1), Layer("ReLU"), Layer("Conv2d", (16, 4), 2, 1))
VQ_DECODER = (Layer("ConvTranspose2d", (32, 4), 2, 1), Layer("ReLU"), Layer("ConvTranspose2d", (1, 4), 2, 1))

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
        # a convolutional VAE on Fashion-MNIST through vaecore's layer API
        ConvWorkload("conv", (1, 28, 28), CONV_ENCODER, CONV_DECODER, 20, "bernoulli", 128, 1.0, "fashion", 60),
        # the VQ-VAE of issue 13 on Fashion-MNIST: codebook 64 x 16, moving-average codebook updates
        VQWorkload("vqvae", (1, 28, 28), VQ_ENCODER, VQ_DECODER, 64, 16, "bernoulli", 0.25, "ema", 0.99, 128,
                   "fashion", 60),
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


def walk_layers(out, prefix, layers, shape, first_reads_x):
    """Append a row of param_layers to out for every layer with parameters of one stack that starts at
    per-example shape `shape`; returns the stack's output shape. first_reads_x: its first layer reads the
    data (no dinp) when out is still empty."""
    for i, l in enumerate(layers):
        needs_dinp = not (first_reads_x and not out)
        if l.kind == "Conv2d":
            C, H, W = shape
            O, k = l.args
            Ho, Wo = (H + 2 * l.padding - k) // l.stride + 1, (W + 2 * l.padding - k) // l.stride + 1
            new = (O, Ho, Wo)
            out.append((f"{prefix}.{i}", l.kind, shape, new, (O, C, k, k), (O,), needs_dinp))
        elif l.kind == "ConvTranspose2d":
            C, H, W = shape
            O, k = l.args
            new = (O, (H - 1) * l.stride - 2 * l.padding + k, (W - 1) * l.stride - 2 * l.padding + k)
            out.append((f"{prefix}.{i}", l.kind, shape, new, (C, O, k, k), (O,), needs_dinp))
        elif l.kind == "Linear":
            if len(shape) != 1:
                raise ValueError(f"{prefix}.{i}: Linear needs a flat input, got shape {shape} (add a Flatten)")
            new = (l.args[0],)
            out.append((f"{prefix}.{i}", l.kind, shape, new, (shape[0], l.args[0]), (l.args[0],), needs_dinp))
        elif l.kind == "Flatten":
            new = (int(np.prod(shape)),)
        elif l.kind == "Reshape":
            new = tuple(l.args)
            if int(np.prod(new)) != int(np.prod(shape)):
                raise ValueError(f"{prefix}.{i}: Reshape{new} of an input of shape {shape}")
        elif l.kind == "ReLU":
            new = shape
        else:
            raise ValueError(f"{prefix}.{i}: unknown layer kind {l.kind!r}")
        shape = new
    return shape


def param_layers(w):
    """[(name, kind, in_shape, out_shape, W_shape, b_shape, needs_dinp)] for every layer with
    parameters of a ConvWorkload, in vaecore's buffer order (its named_params), shapes per example.

    name is ``enc.i`` / ``dec.i`` with i the index in the layer list, or ``enc.mu`` / ``enc.logvar``.
    needs_dinp is False for the layer that reads the data x. Raises ValueError on a list whose
    shapes do not chain (a Reshape to another size, a decoder that does not end at input_shape).
    """
    out = []
    if isinstance(w, VQWorkload):
        return vq_layers(w)[0]
    h = walk_layers(out, "enc", w.encoder, tuple(w.input_shape), True)
    flat = (int(np.prod(h)),)
    for head in ("mu", "logvar"):
        out.append((f"enc.{head}", "Linear", flat, (w.latent_dim,), (flat[0], w.latent_dim), (w.latent_dim,), True))
    # dec's first layer reads z, which needs its gradient
    end = walk_layers(out, "dec", w.decoder, (w.latent_dim,), False)
    if tuple(end) != tuple(w.input_shape):
        raise ValueError(f"the decoder ends at shape {end}, expected input_shape {tuple(w.input_shape)}")
    return out


def vq_layers(w):
    """(param_layers rows, code shape) of a VQWorkload: the encoder's and the decoder's layers with
    parameters (the codebook, between them in vaecore's buffer, is not a row) and the encoder's output
    per example, (code_dim, h, w). The decoder's first layer reads z_q, whose gradient passes straight
    through to z_e: it needs dinp."""
    out = []
    code = walk_layers(out, "enc", w.encoder, tuple(w.input_shape), True)
    if code[0] != w.code_dim or len(code) not in (1, 3):
        raise ValueError(f"the encoder ends at shape {code}, expected code_dim = {w.code_dim} channels")
    end = walk_layers(out, "dec", w.decoder, code, False)
    if tuple(end) != tuple(w.input_shape):
        raise ValueError(f"the decoder ends at shape {end}, expected input_shape {tuple(w.input_shape)}")
    return out, code


def macs_per_example(layer):
    """Multiply-adds of one layer's forward product for one example: those of its matrix product
    in the im2col formulation (a convolution's zero padding included, as im2col multiplies it)."""
    _, kind, in_shape, out_shape, W_shape, _, _ = layer
    if kind == "Linear":
        return W_shape[0] * W_shape[1]                                  # I * O
    if kind == "Conv2d":
        O, C, kh, kw = W_shape
        return out_shape[1] * out_shape[2] * O * C * kh * kw           # every output pixel: C*kh*kw taps
    if kind == "ConvTranspose2d":
        C, O, kh, kw = W_shape
        return in_shape[1] * in_shape[2] * C * O * kh * kw             # every input pixel scatters O*kh*kw
    raise ValueError(f"no product in a {kind} layer")


def flops_per_step(w):
    """Floating-point operations of one training step's matrix products.

    Counted: 2*B*I*O (a multiply and an add per multiply-add) for each linear
    layer's forward product, its dW = inp^T @ dout and its dinp = dout @ W^T
    (not for the layers that read x). Not counted: biases, activations, the
    sampling, the loss and Adam (all O(B*width) or O(P), a few per cent at most).

    A ConvWorkload counts every layer with parameters the same way, 2*B*MACs for
    the forward, dW and dinp products each (no dinp for the first encoder layer),
    with MACs those of the im2col matrix product (``macs_per_example``): a
    Conv2d's B*Ho*Wo x (C*kh*kw) x O product, a ConvTranspose2d's
    B*H*W x C x (O*kh*kw) one. The zero padding's products are counted; the
    reshapes, im2col and col2im copies are not.

    A VQWorkload counts its layers the same way (the decoder's first layer has
    a dinp: the straight-through gradient reaches the encoder) plus the nearest-
    code search's product, 2*B*S*K*d (the (B S, d) positions against the (d, K)
    codebook); the distances' norms, the argmin and the moving averages are not
    counted.
    """
    if isinstance(w, ConvWorkload):
        return sum(2 * w.batch * macs_per_example(l) * (3 if l[6] else 2) for l in param_layers(w))
    if isinstance(w, VQWorkload):
        layers, code = vq_layers(w)
        positions = int(np.prod(code[1:]))                             # S codes per example
        search = 2 * w.batch * positions * w.codebook_size * w.code_dim   # (B S, d) @ (d, K)
        return search + sum(2 * w.batch * macs_per_example(l) * (3 if l[6] else 2) for l in layers)
    total = 0
    for _, I, O, needs_dinp in linear_layers(w):
        total += 2 * w.batch * I * O * (3 if needs_dinp else 2)
    return total


def num_params(w):
    """P: weights and biases of every layer (and the codebook of a VQ-VAE)."""
    if isinstance(w, VQWorkload):
        return w.codebook_size * w.code_dim + sum(int(np.prod(l[4])) + int(np.prod(l[5])) for l in vq_layers(w)[0])
    if isinstance(w, ConvWorkload):
        return sum(int(np.prod(l[4])) + int(np.prod(l[5])) for l in param_layers(w))
    return sum(I * O + O for _, I, O, _ in linear_layers(w))
