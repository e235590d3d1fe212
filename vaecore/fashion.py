"""``python -m vaecore fashion``: a VAE on Fashion-MNIST (Xiao et al. 2017), convolutional or MLP.

The convolutional architecture is the layers issue's: two stride-2 convolutions down to (64, 7, 7),
a 256-wide dense layer, a 20-dimensional latent space, and the mirror image up with transposed
convolutions, Bernoulli logits out. The MLP is the classic 784-400-20 of Kingma & Welling (2014).
Both train with Adam (lr 1e-3) on mini-batches of 128 and report, on the test set, the negative ELBO
and the importance-weighted estimate of -log p(x) (Burda et al. 2016) in nats: lower is better, and
the gap between the two is what a sharper bound recovers.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import datasets
from . import layers as L
from .model import VAE
from .train import fit

__all__ = ["conv_vae", "mlp_vae", "fashion", "FASHION_DEFAULTS"]

#: defaults of :func:`fashion` (and ``python -m vaecore fashion``)
FASHION_DEFAULTS = dict(arch="conv", epochs=10, batch_size=128, lr=1e-3, latent_dim=20, seed=0,
                        iw_samples=1000, iw_images=1000)


def conv_vae(latent_dim=20, dtype="float32", seed=0):
    """The convolutional VAE for (1, 28, 28) images: conv 32 and 64 (4x4, stride 2) down, the mirror up."""
    return VAE(input_shape=(1, 28, 28), latent_dim=latent_dim,
               encoder=[L.Conv2d(32, 4, stride=2, padding=1), L.ReLU(), L.Conv2d(64, 4, stride=2, padding=1),
                        L.ReLU(), L.Flatten(), L.Linear(256), L.ReLU()],
               decoder=[L.Linear(256), L.ReLU(), L.Linear(3136), L.ReLU(), L.Reshape(64, 7, 7),
                        L.ConvTranspose2d(32, 4, stride=2, padding=1), L.ReLU(),
                        L.ConvTranspose2d(1, 4, stride=2, padding=1)],
               likelihood="bernoulli", dtype=dtype, seed=seed)


def mlp_vae(latent_dim=20, dtype="float32", seed=0):
    """The 784-400-20 MLP VAE (ReLU), Bernoulli logits out."""
    return VAE(784, latent_dim, hidden=(400,), activation="relu", likelihood="bernoulli", dtype=dtype, seed=seed)


def fashion(arch="conv", epochs=10, batch_size=128, lr=1e-3, latent_dim=20, seed=0, n_train=None,
            iw_samples=1000, iw_images=1000, out=None, progress=True):
    """Train a VAE on Fashion-MNIST and evaluate it on the test set.

    Parameters
    ----------
    arch : {"conv", "mlp"}
    epochs, batch_size, lr, latent_dim, seed
        The run (see :data:`FASHION_DEFAULTS`).
    n_train : int, optional
        Train on the first n_train training images only (None: all 60,000).
    iw_samples, iw_images : int
        The importance-weighted bound uses this many samples per image, on the first iw_images test
        images.
    out : str or os.PathLike, optional
        Folder for samples.png, reconstructions.png and interpolation.png; None writes none.

    Returns
    -------
    dict
        ``model``, ``history``, ``test_elbo`` (mean ELBO over the 10,000 test images, nats),
        ``test_nll_iw`` (the importance-weighted -log p(x), nats), ``seconds`` and ``files``.
    """
    if arch not in ("conv", "mlp"):
        raise ValueError(f"arch must be 'conv' or 'mlp', got {arch!r}")
    X, _ = datasets.fashion_mnist("train")
    Xt, _ = datasets.fashion_mnist("test")
    if n_train is not None:
        X = X[:n_train]
    model = (conv_vae if arch == "conv" else mlp_vae)(latent_dim=latent_dim, seed=seed)
    hist = fit(model, X, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    elbo = model.elbo(Xt, seed=seed + 1)
    t0 = time.perf_counter()
    nll_iw = -model.log_likelihood(Xt[:iw_images], k=iw_samples, seed=seed + 2)
    result = dict(model=model, history=hist, test_elbo=float(elbo.mean()), test_nll_iw=float(nll_iw.mean()),
                  seconds=hist.seconds, iw_seconds=time.perf_counter() - t0, files=[])
    if out is not None:
        result["files"] = _figures(model, Xt, os.fspath(out))
    return result


def _figures(model, Xt, out):
    from . import plot

    os.makedirs(out, exist_ok=True)
    files = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        files.append(path)

    flat = Xt.reshape(len(Xt), -1)
    save(plot.samples(flat[:32], model.sample(32, seed=1).reshape(32, -1), image_shape=(28, 28)), "samples.png")
    save(plot.reconstructions(flat[:16], model.reconstruct(flat[:16]).reshape(16, -1), image_shape=(28, 28)),
         "reconstructions.png")
    mu, _ = model.encode(flat[[0, 1]])
    w = np.linspace(0, 1, 10)[:, None]
    path = model.decode(((1 - w) * mu[0] + w * mu[1]).astype(model.dtype)).reshape(10, -1)
    save(plot.interpolation(path, image_shape=(28, 28)), "interpolation.png")
    return files


def add_parser(sub):
    """The ``fashion`` sub-command of ``python -m vaecore``."""
    d = FASHION_DEFAULTS
    s = sub.add_parser("fashion", help="train a VAE (convolutional or MLP) on Fashion-MNIST and evaluate it")
    s.add_argument("--arch", choices=("conv", "mlp"), default=d["arch"])
    s.add_argument("--epochs", type=int, default=d["epochs"])
    s.add_argument("--batch-size", type=int, default=d["batch_size"])
    s.add_argument("--lr", type=float, default=d["lr"])
    s.add_argument("--seed", type=int, default=d["seed"])
    s.add_argument("--n-train", type=int, default=None, help="train on the first N images (default: all)")
    s.add_argument("--iw-samples", type=int, default=d["iw_samples"],
                   help="importance samples per test image (default %(default)s)")
    s.add_argument("--iw-images", type=int, default=d["iw_images"],
                   help="test images for the importance-weighted bound (default %(default)s)")
    s.add_argument("--out", default="out/fashion", help="folder for the figures (default %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    return s


def run(args):
    """Run the ``fashion`` sub-command from parsed arguments; prints the results."""
    r = fashion(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                n_train=args.n_train, iw_samples=args.iw_samples, iw_images=args.iw_images, out=args.out,
                progress=not args.no_progress)
    print(f"vaecore fashion: {args.arch}, {args.epochs} epochs, {r['model'].num_params:,} parameters, "
          f"{r['seconds']:.1f} s of training")
    print(f"  test -ELBO {-r['test_elbo']:.2f} nats (10,000 images, one sample of z)")
    print(f"  test -log p(x) <= {r['test_nll_iw']:.2f} nats (importance-weighted, k = {args.iw_samples}, "
          f"first {args.iw_images} images, {r['iw_seconds']:.1f} s)")
    for f in r["files"]:
        print("   ", f)
    return 0
