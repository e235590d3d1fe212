"""The peers of the benchmark: one training step of the same VAE, four ways.

Each peer is built from vaecore's initial parameters (``vaecore.VAE(...,
seed=0)``, so every peer starts from the same point) and offers

    step(x)            one training step on the batch x (B, D) float32, with
                       noise eps ~ N(0, I) that the peer draws itself;
    step_eps(x, eps)   the same with the given eps (B, K) float32; returns the
                       loss of the batch before the update, as a float.

Peers:
    vaecore        ``m.train_step`` (one C call: forward, backward, Adam), float32;
    numpy          bench/numpy_vae.py, float32, every product a BLAS ``@``
                   (multilayer perceptrons only: it skips the conv workload);
    torch          PyTorch eager on the CPU, ``torch.optim.Adam``
                   (bench/torch_vae.py, or bench/torch_conv_vae.py for conv);
    torch.compile  the same module through ``torch.compile`` (default mode; the
                   forward and its AOT-autograd backward are compiled, Adam stays
                   eager, as PyTorch's tutorials do).

The conv workload (workloads.ConvWorkload) needs vaecore's layer API:

    vaecore.VAE(input_shape=(C, H, W), latent_dim=K, encoder=[vaecore.layers...],
                decoder=[...], likelihood=..., dtype="float32", seed=0)

whose ``named_params()`` are those of workloads.param_layers, and whose
``train_step(x, opt, beta=, eps=)`` takes x as (B, C, H, W) (the peer passes a
view of the (B, D) batch) and eps (B, K). Until vaecore has ``vaecore.layers``
``skip_reason`` says so and run.py leaves the workload out.

The vqvae workload (workloads.VQWorkload) needs ``vaecore.VQVAE`` (issue 13);
its peers are vaecore's ``train_step`` (one C call: forward, backward, Adam and
the codebook's moving averages) and PyTorch eager (bench/torch_vqvae.py: the
step, then ``ema_update``). A VQ-VAE has no noise: ``step_eps`` ignores eps.

Thread counts are the caller's business (bench/worker.py sets them before
anything is imported).
"""
from __future__ import annotations

import numpy as np

__all__ = ["PEERS", "TORCH_PEERS", "make_peer", "vaecore_model", "skip_reason"]

PEERS = ("vaecore", "numpy", "torch", "torch.compile")
TORCH_PEERS = ("torch", "torch.compile")


def skip_reason(peer, w):
    """Why `peer` cannot run workload `w` (a sentence), or None when it can."""
    from workloads import ConvWorkload, VQWorkload

    if isinstance(w, VQWorkload):
        if peer == "numpy":
            return "bench/numpy_vae.py has no VQ-VAE"
        if peer == "torch.compile":
            return "the VQ-VAE is compared with PyTorch eager only"
        if peer == "vaecore":
            import vaecore

            if not hasattr(vaecore, "VQVAE"):
                return "this vaecore has no VQ-VAE (vaecore.VQVAE) yet"
        return None
    if not isinstance(w, ConvWorkload):
        return None
    if peer == "numpy":
        return "bench/numpy_vae.py has no convolutions"
    if peer == "vaecore":
        import vaecore

        if not hasattr(vaecore, "layers"):
            return "this vaecore has no layer API (vaecore.layers) yet"
    return None


def vaecore_layers(specs, pkg=None):
    """[vaecore.layers objects] from workloads.Layer specs (of the package pkg: vaecore by default,
    another build of it for bench/ab.py)."""
    if pkg is None:
        import vaecore as pkg
    L = pkg.layers

    out = []
    for l in specs:
        cls = getattr(L, l.kind)
        conv = l.kind in ("Conv2d", "ConvTranspose2d")
        out.append(cls(*l.args, stride=l.stride, padding=l.padding) if conv else cls(*l.args))
    return out


def vaecore_model(w, pkg=None):
    """vaecore's model of workload w, seed 0 (built by the package pkg: vaecore by default)."""
    if pkg is None:
        import vaecore as pkg
    vaecore = pkg
    from workloads import ConvWorkload, VQWorkload

    if isinstance(w, VQWorkload):
        return vaecore.VQVAE(input_shape=tuple(w.input_shape), codebook_size=w.codebook_size, code_dim=w.code_dim,
                             encoder=vaecore_layers(w.encoder, pkg), decoder=vaecore_layers(w.decoder, pkg),
                             likelihood=w.likelihood, commitment=w.commitment, codebook_update=w.codebook_update,
                             decay=w.decay, dtype="float32", seed=0)
    if isinstance(w, ConvWorkload):
        return vaecore.VAE(input_shape=tuple(w.input_shape), latent_dim=w.latent_dim,
                           encoder=vaecore_layers(w.encoder, pkg), decoder=vaecore_layers(w.decoder, pkg),
                           likelihood=w.likelihood, dtype="float32", seed=0)
    return vaecore.VAE(w.input_dim, w.latent_dim, hidden=w.hidden, activation=w.activation,
                       likelihood=w.likelihood, dtype="float32", seed=0)


class VaecorePeer:
    def __init__(self, w):
        import vaecore

        self.m = vaecore_model(w)
        self.opt = vaecore.Adam(self.m, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        self.beta = w.beta
        # a layer-API model takes images (B, C, H, W): a view of the (B, D) batch, no copy
        self.shape = (-1, *w.input_shape) if hasattr(w, "input_shape") else None

    def step(self, x):
        self.m.train_step(x if self.shape is None else x.reshape(self.shape), self.opt, beta=self.beta)

    def step_eps(self, x, eps):
        x = x if self.shape is None else x.reshape(self.shape)
        return self.m.train_step(x, self.opt, beta=self.beta, eps=eps)["loss"]


class VaecoreVQPeer:
    """vaecore.VQVAE's train_step on images (B, C, H, W): a view of the (B, D) batch."""

    def __init__(self, w):
        import vaecore

        self.m = vaecore_model(w)
        self.opt = vaecore.Adam(self.m, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        self.shape = (-1, *w.input_shape)

    def step(self, x):
        self.m.train_step(x.reshape(self.shape), self.opt)

    def step_eps(self, x, eps):
        return self.m.train_step(x.reshape(self.shape), self.opt)["loss"]


class NumpyPeer:
    def __init__(self, w):
        from numpy_vae import NumpyAdam, NumpyVAE

        why = skip_reason("numpy", w)
        if why:
            raise NotImplementedError(why)
        self.model = NumpyVAE(vaecore_model(w).named_params(), w.activation, w.likelihood, w.beta, seed=0)
        self.opt = NumpyAdam(self.model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def step(self, x):
        self.opt.train_step(x)

    def step_eps(self, x, eps):
        return self.opt.train_step(x, eps)


class TorchPeer:
    def __init__(self, w, compiled=False, adam=None):
        import torch
        from torch_vae import TorchVAE, make_optimizer
        from workloads import ConvWorkload

        self.torch = torch
        named = vaecore_model(w).named_params()
        if isinstance(w, ConvWorkload):
            from torch_conv_vae import TorchConvVAE

            self.model = TorchConvVAE(named, w.beta)
        else:
            self.model = TorchVAE(named, w.activation, w.likelihood, w.beta)
        kw = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[adam or "default"]
        self.opt = make_optimizer(self.model, **kw)
        self.loss = torch.compile(self.model) if compiled else self.model
        self.K = self.model.latent_dim
        self._cache = {}

    def _tensor(self, x):
        # the batches are fixed arrays: wrap each once (from_numpy shares the memory)
        t = self._cache.get(id(x))
        if t is None or t[0] is not x:
            t = self._cache[id(x)] = (x, self.torch.from_numpy(x))
        return t[1]

    def step(self, x):
        xt = self._tensor(x)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(xt, self.torch.randn(xt.shape[0], self.K))
        loss.backward()
        self.opt.step()

    def step_eps(self, x, eps):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.torch.from_numpy(x), self.torch.from_numpy(eps))
        loss.backward()
        self.opt.step()
        return float(loss.detach())


class TorchVQPeer(TorchPeer):
    """bench/torch_vqvae.py in eager PyTorch from vaecore's initial parameters (its moving averages start
    as vaecore's: counts 1, sums the codebook)."""

    def __init__(self, w, adam=None):
        import torch
        from torch_vqvae import TorchVQVAE, make_optimizer, train_step

        self.torch, self.train_step = torch, train_step
        self.model = TorchVQVAE(vaecore_model(w).named_params(), w.input_shape, w.encoder, w.decoder, w.likelihood,
                                w.commitment, w.codebook_update, w.decay)
        kw = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[adam or "default"]
        self.opt = make_optimizer(self.model, **kw)
        self._cache = {}

    def step(self, x):
        self.train_step(self.model, self.opt, self._tensor(x))

    def step_eps(self, x, eps):
        return self.train_step(self.model, self.opt, self.torch.from_numpy(x))


def make_peer(name, w, adam=None):
    from workloads import VQWorkload

    if isinstance(w, VQWorkload) and name in ("vaecore", "torch"):
        return VaecoreVQPeer(w) if name == "vaecore" else TorchVQPeer(w, adam)
    if name == "vaecore":
        return VaecorePeer(w)
    if name == "numpy":
        return NumpyPeer(w)
    if name == "torch":
        return TorchPeer(w, compiled=False, adam=adam)
    if name == "torch.compile":
        return TorchPeer(w, compiled=True, adam=adam)
    raise ValueError(f"unknown peer {name!r}; expected one of {PEERS}")
