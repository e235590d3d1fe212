"""The PyTorch reference numbers of Fashion-MNIST that vaecore's README quotes.

    python bench/fashion_reference.py --arch conv --out conv.json
    python bench/fashion_reference.py --arch mlp --epochs 10 --threads 1

Trains a VAE (Kingma & Welling 2014) in PyTorch, float32, on the 60,000
Fashion-MNIST training images (grey levels in [0, 1], not binarised) and
evaluates it on the test images:

    --arch conv   the convolutional VAE of the ``conv`` workload (bench/torch_conv_vae.py)
    --arch mlp    784-400-20, relu, the decoder mirrored: the ``fashion`` workload (bench/torch_vae.py)

Training: Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8), batch 128, beta 1,
Bernoulli likelihood on the logits. Each epoch is shuffled with
``np.random.default_rng(seed)`` (one generator for the run, as ``vaecore.fit``)
and cut into batches of 128, the last one smaller (96), as ``vaecore.fit`` does.
Initialisation: torch's own defaults after ``torch.manual_seed(seed)``, or
vaecore's (``--init vaecore``, seed 0, needs vaecore's model of that
architecture). The training noise comes from torch's generator, seeded.

Evaluation, in nats, with noise from seeded NumPy generators:
    test -ELBO   mean over the 10,000 test images of
                 -log p(x|z) + KL(q(z|x) || N(0, I)), the KL in closed form and
                 one sample z = mu + sigma eps per image;
    IWAE         the importance-weighted estimate of log p(x) (Burda et al. 2016,
                 "Importance Weighted Autoencoders") with k = 1000 samples on the
                 first 1,000 test images, averaged:
                 log p(x) ~ logsumexp_j [log p(x|z_j) + log N(z_j; 0, I)
                            - log N(z_j; mu, sigma^2)] - log k,   z_j ~ q(z|x).
log p(x|z) = sum over pixels of x l - softplus(l), the Bernoulli log-likelihood
of the logits l evaluated at grey levels x in [0, 1] (the usual VAE objective on
non-binarised images: an unnormalised density, so these nats are not comparable
with those of binarised MNIST).

Writes the numbers, the seconds per epoch and the versions to --out as JSON.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LOG_2PI = math.log(2 * math.pi)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=("conv", "mlp"), default="conv", help="the model (default conv)")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--init", choices=("torch", "vaecore"), default="torch",
                    help="initial parameters: torch's defaults after torch.manual_seed(seed), or vaecore's "
                         "(seed 0) (default torch)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the initialisation, shuffling and noise (default 0)")
    ap.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    ap.add_argument("--k", type=int, default=1000, help="importance samples per image of the IWAE estimate (default 1000)")
    ap.add_argument("--iwae-images", type=int, default=1000, help="first test images of the IWAE estimate (default 1000)")
    ap.add_argument("--out", metavar="FILE.json", help="write the results here")
    args = ap.parse_args(argv)
    for name in ("epochs", "threads", "batch", "k", "iwae_images"):
        if getattr(args, name) < (0 if name == "epochs" else 1):
            ap.error(f"--{name.replace('_', '-')}: must be >= {0 if name == 'epochs' else 1}, got {getattr(args, name)}")
    return args


# ---------------------------------------------------------------- the two models, one interface
class ConvModel:
    """encode(x (n, 784)) -> mu, logvar (n, K); decode(z (n, K)) -> logits (n, 784); loss(x, eps)."""

    def __init__(self, init, seed):
        import torch
        from torch_conv_vae import TorchConvVAE

        named = None
        if init == "vaecore":
            from peers import skip_reason, vaecore_model
            from workloads import WORKLOADS

            why = skip_reason("vaecore", WORKLOADS["conv"])
            if why:
                raise SystemExit(f"--init vaecore --arch conv: {why}; use --init torch")
            named = [(n, a.copy()) for n, a in vaecore_model(WORKLOADS["conv"]).named_params()]
        torch.manual_seed(seed)
        self.net = TorchConvVAE(named, beta=1.0)
        self.latent_dim = self.net.latent_dim

    def encode(self, x):
        return self.net.encode(x)

    def decode(self, z):
        return self.net.decode(z).reshape(z.shape[0], -1)

    def loss(self, x, eps):
        return self.net(x, eps)


class MlpModel(ConvModel):
    """784-400-20 relu, mirrored decoder: bench/torch_vae.py's TorchVAE, the ``fashion`` workload."""

    def __init__(self, init, seed):
        import torch
        from torch import nn
        from torch_vae import TorchVAE
        from workloads import WORKLOADS, linear_layers

        w = WORKLOADS["fashion"]
        if init == "vaecore":
            from peers import vaecore_model

            named = [(n, a.copy()) for n, a in vaecore_model(w).named_params()]
        else:   # placeholders of the right shapes, replaced by torch's defaults below
            named = []
            for name, I, O, _ in linear_layers(w):
                named += [(name + ".W", np.zeros((I, O), np.float32)), (name + ".b", np.zeros(O, np.float32))]
        self.net = TorchVAE(named, w.activation, w.likelihood, beta=1.0)
        if init == "torch":
            torch.manual_seed(seed)
            for m in self.net.modules():         # in construction order: enc, mu, logvar, dec, out
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        self.latent_dim = w.latent_dim

    def encode(self, x):
        h = x
        for layer in self.net.enc:
            h = self.net.act(layer(h))
        return self.net.mu(h), self.net.logvar(h)

    def decode(self, z):
        g = z
        for layer in self.net.dec:
            g = self.net.act(layer(g))
        return self.net.out(g)


# ---------------------------------------------------------------- training and evaluation
def train(model, X, epochs, batch, lr, seed, log):
    """Adam on shuffled batches; returns [(mean loss, seconds)] per epoch."""
    import torch

    opt = torch.optim.Adam(model.net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    Xt = torch.from_numpy(X)
    n, K = X.shape[0], model.latent_dim
    out = []
    for e in range(epochs):
        t0 = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for s in range(0, n, batch):
            x = Xt[perm[s:s + batch]]                                 # (b, 784)
            eps = torch.randn(x.shape[0], K, generator=gen)           # (b, K)
            opt.zero_grad(set_to_none=True)
            loss = model.loss(x, eps)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x.shape[0]
        secs = time.perf_counter() - t0
        out.append((total / n, secs))
        log(f"epoch {e + 1}/{epochs}: train loss {total / n:.3f} nats/image, {secs:.1f} s")
    return out


def log_px(x, logits):
    """Bernoulli log-likelihood sum_j x l - softplus(l), float64, over the last axis."""
    import torch

    l = logits.double()
    return (x.double() * l - torch.nn.functional.softplus(l)).sum(-1)


def elbo_per_image(model, X, seed, rows=1000):
    """The one-sample ELBO of every row of X (float64, nats): log p(x|z) - KL, KL in closed form."""
    import torch

    rng = np.random.default_rng([seed, 1])
    eps = rng.standard_normal((X.shape[0], model.latent_dim), dtype=np.float32)
    out = np.empty(X.shape[0])
    with torch.no_grad():
        for s in range(0, X.shape[0], rows):
            x = torch.from_numpy(X[s:s + rows])                       # (r, 784)
            mu, logvar = model.encode(x)                              # (r, K)
            z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps[s:s + rows])
            m64, lv64 = mu.double(), logvar.double()
            kl = -0.5 * (1 + lv64 - m64 ** 2 - lv64.exp()).sum(1)
            out[s:s + rows] = (log_px(x, model.decode(z)) - kl).numpy()
    return out


def iwae(model, X, k, seed, rows=4000):
    """The importance-weighted estimate of log p(x) for every row of X (float64, nats), k samples each."""
    import torch

    rng = np.random.default_rng([seed, 2])
    K = model.latent_dim
    per = max(1, rows // k)                                           # images per decoded block
    out = np.empty(X.shape[0])
    with torch.no_grad():
        for s in range(0, X.shape[0], per):
            x = torch.from_numpy(X[s:s + per])                        # (b, 784)
            b = x.shape[0]
            mu, logvar = model.encode(x)                              # (b, K)
            eps = torch.from_numpy(rng.standard_normal((b, k, K), dtype=np.float32))
            z = mu[:, None] + torch.exp(0.5 * logvar[:, None]) * eps  # (b, k, K)
            logits = model.decode(z.reshape(b * k, K)).reshape(b, k, -1)
            z64, e64, lv64 = z.double(), eps.double(), logvar.double()[:, None]
            log_pz = -0.5 * (z64 ** 2).sum(-1) - 0.5 * K * LOG_2PI                # log N(z; 0, I)
            log_qz = -0.5 * (e64 ** 2 + lv64 + LOG_2PI).sum(-1)                   # log N(z; mu, sigma^2)
            log_w = log_px(x[:, None, :], logits) + log_pz - log_qz                # (b, k)
            out[s:s + b] = (torch.logsumexp(log_w, 1) - math.log(k)).numpy()
    return out


def versions():
    import torch

    import vaecore

    v = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
         "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
         "vaecore": getattr(vaecore, "__version__", "?")}
    try:
        v["git"] = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short=12", "HEAD"],
                                  capture_output=True, text=True, timeout=30).stdout.strip() or "?"
    except OSError:
        v["git"] = "?"
    return v


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv=None):
    args = parse_args(argv)
    import torch

    import vaecore

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    vers = versions()                  # before training: the git commit of the code that runs
    X, _ = vaecore.datasets.fashion_mnist("train")                    # (60000, 784) float32 in [0, 1]
    Xte, _ = vaecore.datasets.fashion_mnist("test")                   # (10000, 784)
    X, Xte = np.ascontiguousarray(X, np.float32), np.ascontiguousarray(Xte, np.float32)
    model = (ConvModel if args.arch == "conv" else MlpModel)(args.init, args.seed)
    num_params = sum(p.numel() for p in model.net.parameters())
    log(f"{args.arch}: {num_params:,} parameters, init {args.init}, {args.epochs} epochs of batch {args.batch} "
        f"on {X.shape[0]:,} images, {args.threads} thread(s)")

    epochs = train(model, X, args.epochs, args.batch, args.lr, args.seed, log)
    model.net.eval()
    t0 = time.perf_counter()
    elbo = elbo_per_image(model, Xte, args.seed)
    t_elbo = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll = iwae(model, Xte[:args.iwae_images], args.k, args.seed)
    t_iwae = time.perf_counter() - t0
    res = {
        "arch": args.arch,
        "model": ("conv: 1x28x28 -> Conv2d(32, 4, s2, p1) -> ReLU -> Conv2d(64, 4, s2, p1) -> ReLU -> Flatten -> "
                  "Linear(256) -> ReLU -> mu, logvar Linear(20); decoder mirrored with ConvTranspose2d"
                  if args.arch == "conv" else "mlp: 784-400-20, relu, decoder mirrored (the fashion workload)"),
        "num_params": num_params,
        "init": args.init, "seed": args.seed, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
        "optimizer": "torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8)", "beta": 1.0, "dtype": "float32",
        "threads": args.threads,
        "train_images": int(X.shape[0]), "test_images": int(Xte.shape[0]),
        "test_neg_elbo": float(-elbo.mean()),
        "test_neg_elbo_sem": float(elbo.std(ddof=1) / math.sqrt(len(elbo))),
        "iwae_k": args.k, "iwae_images": int(min(args.iwae_images, Xte.shape[0])),
        "iwae_log_likelihood": float(ll.mean()),
        "iwae_log_likelihood_sem": float(ll.std(ddof=1) / math.sqrt(len(ll))) if len(ll) > 1 else None,
        "neg_elbo_same_images": float(-elbo[:len(ll)].mean()),
        "train_loss_per_epoch": [e[0] for e in epochs],
        "seconds_per_epoch": [e[1] for e in epochs],
        "seconds_per_epoch_median": float(np.median([e[1] for e in epochs])) if epochs else None,
        "seconds_test_elbo": t_elbo, "seconds_iwae": t_iwae,
        "units": "nats per image; log p(x|z) = sum_j x_j l_j - softplus(l_j) on grey levels in [0, 1]",
        "cpu": cpu_name(),
        "versions": vers,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
    }
    log(f"test -ELBO {res['test_neg_elbo']:.2f} nats (one sample, {len(elbo):,} images); "
        f"IWAE k={args.k} log p(x) {res['iwae_log_likelihood']:.2f} nats (first {len(ll):,} images; "
        f"their -ELBO {res['neg_elbo_same_images']:.2f})")
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
