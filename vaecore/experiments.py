"""Ready-made experiments, shared by the command line (``python -m vaecore``),
the notebooks and the tests.

``spirals`` is the canonical first experiment: two interleaved spirals
compressed into a 2-D latent Gaussian cloud. With this library's loss
(squared error, a Gaussian decoder of variance 1/2) and spirals of radius 1,
the whole data set has a variance of only about 0.5 nats of reconstruction
error to explain, while every nat of information z carries about x costs a nat
of KL. At beta = 1 the cheapest solution is to ignore z (posterior collapse:
KL -> 0, every decoded point at the data mean). A small beta (the default
0.05), equivalently a sharper decoder or data scaled up, makes the code worth
its price.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import datasets
from .model import VAE, Adam
from .train import fit

__all__ = ["spirals", "SPIRALS_DEFAULTS", "nearest_distances"]

#: defaults of :func:`spirals` (and ``python -m vaecore spirals``)
SPIRALS_DEFAULTS = dict(epochs=600, beta=0.05, lr=1e-3, batch_size=64, hidden=(64, 64), n=2000, seed=0)


def nearest_distances(a, b):
    """Distance from each row of a (n, d) to its nearest row of b (m, d), shape (n,)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty(len(a))
    for i in range(0, len(a), 512):
        d = ((a[i:i + 512, None, :] - b[None, :, :]) ** 2).sum(-1)
        out[i:i + 512] = np.sqrt(d.min(axis=1))
    return out


def spirals(epochs=600, beta=0.05, out=None, seed=0, lr=1e-3, batch_size=64, hidden=(64, 64),
            n=2000, progress=True, snapshot_every=10, figures=True):
    """Train a VAE with a 2-D latent space on two interleaved spirals.

    Parameters
    ----------
    epochs, beta, lr, batch_size, hidden, n, seed
        The run (see :data:`SPIRALS_DEFAULTS`).
    out : str or os.PathLike, optional
        Folder for the figures; None writes none.
    progress : bool
        Show a progress bar.
    snapshot_every : int
        Record the latent means every this many epochs (for the animation).
    figures : bool
        Write the figures when ``out`` is given.

    Returns
    -------
    dict
        ``model``, ``history``, ``data`` (X, t, arm), ``snapshots`` (list of
        (epoch, mu)), ``summary`` (floats: recon_mse, sample_to_data,
        data_to_sample, arm_accuracy, kl, seconds) and ``files`` written.
    """
    X, t, arm = datasets.two_spirals(n=n, seed=seed)
    model = VAE(2, 2, hidden=hidden, activation="tanh", likelihood="gaussian", seed=seed)
    opt = Adam(model, lr=lr)
    snapshots = [(0, model.encode(X)[0])]
    marks = {1, 5, 20, 50, 100, 200, 300, 450, epochs}

    def record(epoch, stats, m):
        e = epoch + 1
        if e % snapshot_every == 0 or e in marks:
            snapshots.append((e, m.encode(X)[0]))

    hist = fit(model, X, epochs=epochs, batch_size=batch_size, optimizer=opt, beta=beta, seed=seed,
               callbacks=[record], progress=progress)
    summary = evaluate_spirals(model, X, arm)
    summary["kl"] = float(hist.kl[-1]) if len(hist) else float("nan")
    summary["seconds"] = hist.seconds
    result = dict(model=model, history=hist, data=(X, t, arm), snapshots=snapshots, summary=summary, files=[])
    if out is not None and figures:
        result["files"] = _spiral_figures(result, os.fspath(out), marks)
    return result


def evaluate_spirals(model, X, arm, seed=1):
    """Quality numbers of a spiral model.

    recon_mse: mean squared distance between x and decode(mu(x));
    sample_to_data: mean distance from a prior sample to the nearest data
    point (are samples plausible?); data_to_sample: mean distance from a data
    point to the nearest sample (is all the data covered? a collapsed model
    fails this); arm_accuracy: how often the 5 nearest latent means of a point
    lie mostly on its arm.
    """
    rec = model.reconstruct(X)
    new = model.sample(len(X), seed=seed)
    mu, _ = model.encode(X)
    mu = mu.astype(np.float64)
    d = ((mu[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :5]
    acc = float((np.round(arm[nn].mean(axis=1)) == arm).mean())
    return dict(recon_mse=float(((rec - X) ** 2).sum(1).mean()),
                sample_to_data=float(nearest_distances(new, X).mean()),
                data_to_sample=float(nearest_distances(X, new).mean()),
                arm_accuracy=acc)


def _spiral_figures(result, out, marks):
    from . import plot

    os.makedirs(out, exist_ok=True)
    model, hist, snaps = result["model"], result["history"], result["snapshots"]
    X, t, arm = result["data"]
    files = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        files.append(path)

    grid = [s for s in snaps if s[0] in marks or s[0] == 0]
    save(plot.latent_snapshots(grid, c=t, title="Latent means: from chaos to order"), "latent_snapshots.png")
    gif = os.path.join(out, "latent_animation.gif")
    plot.latent_animation(snaps, gif, c=t, fps=8)
    files.append(gif)
    idx = np.random.default_rng(0).choice(len(X), 300, replace=False)
    save(plot.reconstructions(X[idx], model.reconstruct(X[idx])), "reconstructions.png")
    save(plot.samples(X, model.sample(1000, seed=1)), "samples.png")
    # interpolate between the inner and the outer end of one arm
    a0 = np.flatnonzero(arm == 0)
    i, j = a0[np.argmin(t[a0])], a0[np.argmax(t[a0])]
    mu, _ = model.encode(X[[i, j]])
    w = np.linspace(0, 1, 25)[:, None]
    path = model.decode((1 - w) * mu[0] + w * mu[1])
    save(plot.interpolation(path, X), "interpolation.png")
    save(plot.manifold_grid(model.decode, extent=2.5, n=15), "manifold.png")
    save(plot.curves(hist), "curves.png")
    return files


def _format_summary(s):
    return (f"reconstruction MSE {s['recon_mse']:.4f} | sample->data {s['sample_to_data']:.4f} | "
            f"data->sample {s['data_to_sample']:.4f} | arm accuracy {s['arm_accuracy']:.3f} | "
            f"KL {s['kl']:.3f} nats | {s['seconds']:.1f} s")


def main(argv=None):
    """``python -m vaecore spirals [--epochs 600] [--beta B] [--out DIR] [--seed S] [--no-progress]``
    and ``python -m vaecore fashion [--arch conv|mlp] [--epochs N] [--out DIR]`` (vaecore/fashion.py)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m vaecore", description="vaecore experiments")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("spirals", help="train a 2-D-latent VAE on two interleaved spirals and plot it")
    s.add_argument("--epochs", type=int, default=SPIRALS_DEFAULTS["epochs"])
    s.add_argument("--beta", type=float, default=SPIRALS_DEFAULTS["beta"],
                   help="KL weight (default %(default)s; 1.0 collapses on this data, see the README)")
    s.add_argument("--lr", type=float, default=SPIRALS_DEFAULTS["lr"])
    s.add_argument("--seed", type=int, default=SPIRALS_DEFAULTS["seed"])
    s.add_argument("--out", default="out/spirals", help="folder for the figures (default %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    from . import fashion

    fashion.add_parser(sub)
    args = p.parse_args(argv)
    if args.command == "fashion":
        if args.epochs < 0:
            p.error(f"--epochs must be >= 0, got {args.epochs}")
        return fashion.run(args)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if not args.beta >= 0:
        p.error(f"--beta must be >= 0, got {args.beta}")
    start = time.perf_counter()
    r = spirals(epochs=args.epochs, beta=args.beta, lr=args.lr, seed=args.seed, out=args.out,
                progress=not args.no_progress)
    print(f"vaecore spirals: {args.epochs} epochs, beta {args.beta}, {r['model'].num_params} parameters")
    print("  " + _format_summary(r["summary"]))
    print(f"  wrote {len(r['files'])} files to {args.out} in {time.perf_counter() - start:.1f} s:")
    for f in r["files"]:
        print("   ", f)
    return 0
