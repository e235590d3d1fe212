"""vaecore: Variational Autoencoders with a small, readable C core.

Learn, teach and experiment with VAEs (Kingma & Welling 2014) and beta-VAEs
(Higgins et al. 2017) on an ordinary CPU, and GANs (Goodfellow et al. 2014) on the
same core to compare them with. The C core (``vaecore._core``) does
the forward pass, the exact backward pass, reparameterized sampling, the losses
and the optimizers on contiguous float32/float64 NumPy arrays; this package
holds the models' Python API, the training loop, data sets and plots.

>>> import vaecore
>>> X, t, arm = vaecore.datasets.two_spirals()
>>> m = vaecore.VAE(2, 2, hidden=(64, 64))
>>> hist = vaecore.fit(m, X, epochs=5, beta=0.05, progress=False)
"""
from . import datasets, layers, metrics
from ._core import get_num_threads, set_num_threads
from .latent import interpolate
from .model import AE, SGD, VAE, Adam, Optimizer, VAEConfig, load
from .gan import GAN, GANHistory, fit_gan
from .vqvae import VQHistory, VQVAE, fit_vq
from .priors import AutoregressivePrior, IndependentPrior
from .sweep import ModelBuilder, sweep, sweep_frame
from .train import EarlyStopping, History, fit

__version__ = "0.1.0"

__all__ = ["VAE", "AE", "GAN", "GANHistory", "VQVAE", "VQHistory", "fit_vq", "IndependentPrior", "AutoregressivePrior", "VAEConfig", "load", "Adam", "SGD", "Optimizer", "fit", "fit_gan",
           "History", "EarlyStopping", "interpolate", "datasets", "sweep", "sweep_frame", "ModelBuilder", "layers",
           "metrics", "plot", "set_num_threads", "get_num_threads", "__version__"]


def __getattr__(name):
    # plotting needs matplotlib; import it only when asked for
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module 'vaecore' has no attribute {name!r}")
