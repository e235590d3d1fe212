"""Optimizers for vaecore models: Adam (Kingma & Ba 2015) and SGD with momentum.

An optimizer holds its hyperparameters and its state (moments, momentum
buffer, step count) in buffers with the layout of ``model.params``; the update
itself runs inside the C core, in the same call as the forward and backward
pass (``VAE.train_step``). Both follow PyTorch's semantics, so results can be
compared with ``torch.optim`` step for step.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_int, check_real

__all__ = ["Optimizer", "Adam", "SGD"]


class Optimizer:
    """Base of :class:`Adam` and :class:`SGD`: state that shares the layout of ``model.params``.

    Attributes
    ----------
    model : VAE, AE, GAN or VQVAE
        For a GAN, create one optimizer per network (``GAN.optimizers()``):
        the state spans the whole buffer, and each updates only its network's part.
    lr : float
    clip_norm : float or None
        If set, gradients are rescaled so that their global L2 norm is at
        most this (as ``torch.nn.utils.clip_grad_norm_``).
    t : int
        Steps taken. The counter lives in a one-element int64 array that the C
        core's training step advances itself, in the same call as the update,
        so it can never disagree with the parameters (not even after a Ctrl-C).
    """

    def __init__(self, model, lr, clip_norm):
        if type(self) is Optimizer:
            raise TypeError("Optimizer is the base class of the optimizers: create a vaecore.Adam or vaecore.SGD")
        from .gan import GAN     # here, not at the top: model.py, gan.py and vqvae.py import this module
        from .model import VAE
        from .vqvae import VQVAE

        if not isinstance(model, (VAE, GAN, VQVAE)):
            raise TypeError(f"model must be a vaecore.VAE, vaecore.AE, vaecore.GAN or vaecore.VQVAE, "
                            f"got {type(model).__name__}")
        self.model = model
        self.lr = check_real(lr, "lr")
        self.clip_norm = None if clip_norm is None else check_real(clip_norm, "clip_norm", allow_equal=False)
        self._t = np.zeros(1, dtype=np.int64)   # the step counter, advanced by the C step itself

    @property
    def t(self):
        return int(self._t[0])

    @t.setter
    def t(self, value):
        self._t[0] = check_int(value, "t", low=0)

    def _zeros(self):
        return np.zeros_like(self.model.params)

    def _clip(self):
        return 0.0 if self.clip_norm is None else self.clip_norm

    @staticmethod
    def _from_saved(model, meta, arrays):
        kind = meta.pop("kind")
        t = meta.pop("t")
        opt = Adam(model, **meta) if kind == "Adam" else SGD(model, **meta)
        opt.t = int(t)
        for key, arr in arrays.items():
            getattr(opt, key)[...] = arr
        return opt


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's semantics, bias correction included.

    Parameters
    ----------
    model : VAE
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    clip_norm : float, optional
        Global-norm gradient clipping before the update.

    Attributes
    ----------
    m, v : ndarray, shape (num_params,)
        First and second moment estimates, in the layout of ``model.params``.
    """

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, *, clip_norm=None):
        super().__init__(model, lr, clip_norm)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of floats, got {betas!r}") from None
        self.betas = (check_real(b1, "betas[0]"), check_real(b2, "betas[1]"))
        if not (self.betas[0] < 1 and self.betas[1] < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        self.eps = check_real(eps, "eps", allow_equal=False)
        self.m = self._zeros()
        self.v = self._zeros()

    def _core_args(self):
        return (1, self.lr, self.betas[0], self.betas[1], self.eps, 0.0, self._clip(), self._t, self.m, self.v)

    def _meta(self):
        return {"kind": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "clip_norm": self.clip_norm, "t": self.t}

    def _arrays(self):
        return {"m": self.m, "v": self.v}

    def __repr__(self):
        return f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, clip_norm={self.clip_norm}, t={self.t})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, PyTorch's semantics (dampening 0).

    ``buf = momentum * buf + grad; params -= lr * buf``.

    Parameters
    ----------
    model : VAE
    lr : float
    momentum : float, default 0.0
    clip_norm : float, optional
        Global-norm gradient clipping before the update.

    Attributes
    ----------
    buf : ndarray, shape (num_params,)
        The momentum buffer, in the layout of ``model.params``.
    """

    def __init__(self, model, lr, momentum=0.0, *, clip_norm=None):
        super().__init__(model, lr, clip_norm)
        self.momentum = check_real(momentum, "momentum")
        self.buf = self._zeros()

    def _core_args(self):
        return (0, self.lr, 0.0, 0.0, 1.0, self.momentum, self._clip(), self._t, self.buf, None)

    def _meta(self):
        return {"kind": "SGD", "lr": self.lr, "momentum": self.momentum, "clip_norm": self.clip_norm, "t": self.t}

    def _arrays(self):
        return {"buf": self.buf}

    def __repr__(self):
        return f"SGD(lr={self.lr}, momentum={self.momentum}, clip_norm={self.clip_norm}, t={self.t})"
