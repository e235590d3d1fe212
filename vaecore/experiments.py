"""Ready-made experiments, shared by the command line (``python -m vaecore``),
the notebooks and the tests.

``spirals`` is the canonical first experiment: two interleaved spirals
compressed into a 2-D latent Gaussian cloud. With this library's loss
(squared error, a Gaussian decoder of variance 1/2) and spirals of radius 1,
the whole data set has a variance of only about 0.5 nats of reconstruction
error to explain, while every nat of information z carries about x costs a nat
of KL. At beta = 1 the cheapest solution is to ignore z (posterior collapse:
KL -> 0, every decoded point at the data mean). A small beta, equivalently a
sharper decoder or data scaled up, makes the code worth its price. The
default 0.01 is small enough for a second reason: the loss then weighs
squared error like a Gaussian decoder of standard deviation sqrt(beta / 2) =
0.07, well under the 0.32 between neighbouring arms, so each point's cloud
shrinks (mean sigma 0.16, seed 0) until the arms' clouds separate; at 0.05
(sigma 0.34) they overlap the neighbouring arm.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import datasets
from .model import VAE, Adam
from .train import fit

__all__ = ["spirals", "SPIRALS_DEFAULTS", "SNAPSHOT_EPOCHS", "FIGURES", "nearest_distances", "knn_accuracy"]

#: defaults of :func:`spirals` (and ``python -m vaecore spirals``)
SPIRALS_DEFAULTS = dict(epochs=600, beta=0.01, lr=1e-3, batch_size=64, hidden=(64, 64), n=2000, seed=0)

#: Epochs drawn as panels of latent_snapshots.png (those <= epochs, and the last one), spaced where the
#: clouds change. Measured with the defaults (seed 0; sampled-z 5-NN arm accuracy / mean sigma): epoch 0
#: 0.49 / 1.01, 1: 0.58 / 0.89, 2: 0.60 / 0.79, 3: 0.64 / 0.69, 4: 0.81 / 0.44, 5: 0.88 / 0.32,
#: 8: 0.94 / 0.19, 13: 0.95 / 0.15, then flat (0.95 / 0.15-0.16) until 600. Within epoch 0 (32 steps)
#: sigma only falls from 1.01 to 0.89 and the accuracy stays near chance (0.51, 0.53, 0.53, 0.55, 0.58
#: after steps 1, 5, 10, 20, 32): the first epoch does not decide it, so there are no per-step
#: snapshots. The change is in epochs 3 to 8, hence epoch 4 next to the Fibonacci-like spacing.
SNAPSHOT_EPOCHS = (0, 1, 2, 3, 4, 5, 8, 13, 20, 50, 100, 300, 600)

_GIF_FRAMES = 40  # frames of the animation besides the panels' epochs, spaced geometrically


def nearest_distances(a, b):
    """Distance from each row of a (n, d) to its nearest row of b (m, d), shape (n,)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty(len(a))
    for i in range(0, len(a), 512):
        d = ((a[i:i + 512, None, :] - b[None, :, :]) ** 2).sum(-1)
        out[i:i + 512] = np.sqrt(d.min(axis=1))
    return out


def knn_accuracy(z, labels, k=5):
    """Leave-one-out k-nearest-neighbour accuracy of predicting ``labels`` from ``z``, in NumPy.

    Each point is classified by the majority label of its k nearest other
    points (Euclidean distance; a tie goes to the smaller label) and the
    fraction classified correctly is returned. For two balanced classes,
    0.5 means the classes are mixed in z, 1.0 that they are apart.

    Parameters
    ----------
    z : array_like, shape (n, d)
        The points, n > k.
    labels : array_like of int, shape (n,)
        Class labels, >= 0.
    k : int, default 5
        Number of neighbours (odd avoids ties between two classes).

    Returns
    -------
    float
    """
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels)
    if z.ndim != 2 or labels.shape != (len(z),):
        raise ValueError(f"z must be (n, d) and labels (n,), got shapes {z.shape} and {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(f"labels must be integers >= 0, got dtype {labels.dtype}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < len(z):
        raise ValueError(f"k must be an int in [1, n - 1] = [1, {len(z) - 1}], got {k!r}")
    n_classes = int(labels.max()) + 1
    correct = 0
    sq = (z * z).sum(1)  # (n,)
    for i in range(0, len(z), 512):
        d = sq[i:i + 512, None] - 2.0 * z[i:i + 512] @ z.T + sq[None, :]  # (b, n) squared distances
        d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf  # leave the point itself out
        nn = np.argpartition(d, k - 1, axis=1)[:, :k]  # (b, k) the k nearest
        votes = (labels[nn][:, :, None] == np.arange(n_classes)).sum(1)  # (b, n_classes)
        correct += int((votes.argmax(1) == labels[i:i + 512]).sum())
    return correct / len(z)


def spirals(epochs=600, beta=0.01, out=None, seed=0, lr=1e-3, batch_size=64, hidden=(64, 64),
            n=2000, progress=True, snapshot_every=None, figures=True):
    """Train a VAE with a 2-D latent space on two interleaved spirals.

    Besides the latent means, every snapshot records what the VAE really
    holds about each point: a Gaussian cloud, drawn as the sampled code
    ``z = mu + sigma * eps`` with one fixed ``eps`` per point for the whole
    run (so what moves is the model, not the noise), and two numbers: how
    ordered the clouds are, the 5-NN accuracy of predicting the arm from
    the sampled z (:func:`knn_accuracy`; 0.5 is chance), and their mean
    sigma. At epoch 0 the clouds are wide (sigma ~ 1) and the arms mixed;
    as sigma shrinks, order appears. The loss weighs squared error like a
    Gaussian decoder of standard deviation sqrt(beta / 2), and the arms are
    only 0.32 apart in x. With the default beta = 0.01 (sqrt(beta / 2) =
    0.07) the clouds shrink to a mean sigma of 0.16 by epoch 10 and the
    accuracy reaches 0.95 (seed 0; 0.64 at epoch 3, 0.88 at epoch 5). With
    beta = 0.05 (0.16) the model keeps clouds about 0.34 wide that overlap
    the neighbouring arm, and the accuracy levels off near 0.7; at beta = 1
    the posterior collapses (see the module docstring).

    Parameters
    ----------
    epochs, beta, lr, batch_size, hidden, n, seed
        The run (see :data:`SPIRALS_DEFAULTS`).
    out : str or os.PathLike, optional
        Folder for the figures; None writes none.
    progress : bool
        Show a progress bar.
    snapshot_every : int, optional
        Also take a snapshot every this many epochs; by default snapshots
        are taken at :data:`SNAPSHOT_EPOCHS` and at about 40 geometrically
        spaced epochs (the frames of the animation).
    figures : bool
        Write the figures when ``out`` is given.

    Returns
    -------
    dict
        ``model``, ``history``, ``data`` (X, t, arm), ``snapshots`` (list of
        (epoch, mu)), ``clouds`` (list of (epoch, sampled z), the same
        epochs), ``order`` (dict of arrays over the snapshots: ``epochs``,
        ``accuracy``, ``sigma``), ``panels`` (the epochs drawn as panels),
        ``summary`` (floats: recon_mse, sample_to_data, data_to_sample,
        arm_accuracy, order_epoch0, order, sigma_epoch0, sigma, kl,
        seconds) and ``files`` written.
    """
    X, t, arm = datasets.two_spirals(n=n, seed=seed)
    model = VAE(2, 2, hidden=hidden, activation="tanh", likelihood="gaussian", seed=seed)
    opt = Adam(model, lr=lr)
    eps = np.random.default_rng([seed, 1]).standard_normal((n, 2))  # (n, 2) one fixed draw per point
    panels = sorted({e for e in SNAPSHOT_EPOCHS if e <= epochs} | {epochs})
    frames = set(panels) | {int(e) for e in np.round(np.geomspace(1, max(epochs, 1), _GIF_FRAMES))}
    if snapshot_every is not None:
        frames |= set(range(0, epochs + 1, int(snapshot_every)))
    snapshots, clouds, order = [], [], dict(epochs=[], accuracy=[], sigma=[])

    def snap(e, m):
        mu, logvar = m.encode(X)  # (n, 2) each
        sigma = np.exp(0.5 * logvar.astype(np.float64))  # (n, 2)
        z = mu + sigma * eps  # (n, 2) a sample from each point's cloud
        snapshots.append((e, mu))
        clouds.append((e, z))
        order["epochs"].append(e)
        order["accuracy"].append(knn_accuracy(z, arm, k=5))
        order["sigma"].append(float(sigma.mean()))

    def record(epoch, stats, m):
        if epoch + 1 in frames:
            snap(epoch + 1, m)

    snap(0, model)
    hist = fit(model, X, epochs=epochs, batch_size=batch_size, optimizer=opt, beta=beta, seed=seed,
               callbacks=[record], progress=progress)
    order = {key: np.asarray(v) for key, v in order.items()}
    summary = evaluate_spirals(model, X, arm)
    summary.update(order_epoch0=float(order["accuracy"][0]), order=float(order["accuracy"][-1]),
                   sigma_epoch0=float(order["sigma"][0]), sigma=float(order["sigma"][-1]))
    summary["kl"] = float(hist.kl[-1]) if len(hist) else float("nan")
    summary["seconds"] = hist.seconds
    result = dict(model=model, history=hist, data=(X, t, arm), snapshots=snapshots, clouds=clouds, order=order,
                  panels=panels, summary=summary, files=[])
    if out is not None and figures:
        result["files"] = _spiral_figures(result, os.fspath(out))
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


#: what each file of the spiral experiment shows, as printed by ``python -m vaecore spirals``
FIGURES = {
    "latent_snapshots.png": "each point's Gaussian cloud, as one sampled z = mu + sigma*eps (same eps "
                            "throughout), at epochs spaced where it changes, coloured by arm and, in the row "
                            "below, by position t along the spiral, beside the order and mean-sigma curves",
    "latent_animation.gif": "the same sampled z over about 40 epochs, coloured by t",
    "reconstructions.png": "300 data points joined to decode(mu(x))",
    "samples.png": "1,000 brand-new samples (decoded z ~ N(0, I)) over the data",
    "interpolation.png": "decode() along the straight latent line from the inner to the outer end of arm 0",
    "manifold.png": "the decoder's image of a latent grid over [-2.5, 2.5]^2",
    "curves.png": "loss, reconstruction term and KL per epoch",
}


def _spiral_figures(result, out):
    from . import plot
    from .latent import interpolate

    os.makedirs(out, exist_ok=True)
    model, hist, clouds, order = result["model"], result["history"], result["clouds"], result["order"]
    X, t, arm = result["data"]
    files = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        files.append(path)

    at = [i for i, (e, _) in enumerate(clouds) if e in result["panels"]]
    grid = [clouds[i] for i in at]
    title = ("The Gaussian clouds, from chaos to order: sampled z = μ + σ·ε of every point; "
             "acc = 5-NN arm accuracy from z (0.5 = chance)")
    save(plot.latent_snapshots(grid, c={"arm": arm, "position t": t}, ncols=7, title=title,
                               order=(order["accuracy"][at], order["sigma"][at])), "latent_snapshots.png")
    gif = os.path.join(out, "latent_animation.gif")
    plot.latent_animation(clouds, gif, c=t, fps=6, clabel="position t", title="Sampled z = μ + σ·ε")
    files.append(gif)
    idx = np.random.default_rng(0).choice(len(X), 300, replace=False)
    save(plot.reconstructions(X[idx], model.reconstruct(X[idx])), "reconstructions.png")
    save(plot.samples(X, model.sample(1000, seed=1)), "samples.png")
    # interpolate between the inner and the outer end of one arm
    a0 = np.flatnonzero(arm == 0)
    i, j = a0[np.argmin(t[a0])], a0[np.argmax(t[a0])]
    save(plot.interpolation(interpolate(model, X[i], X[j], steps=25), X), "interpolation.png")
    save(plot.manifold_grid(model.decode, extent=2.5, n=15), "manifold.png")
    save(plot.curves(hist), "curves.png")
    return files


#: (summary key, format, what the number is), in the order ``python -m vaecore spirals`` prints them
SUMMARY_LINES = (
    ("recon_mse", "reconstruction MSE {:.4f}", "mean squared distance from a point x to decode(mu(x))"),
    ("sample_to_data", "samples->data {:.4f}",
     "mean distance from a brand-new sample to the nearest data point (are samples plausible?)"),
    ("data_to_sample", "data->samples {:.4f}",
     "mean distance from a data point to the nearest of 2,000 samples (is all the data covered?)"),
    ("arm_accuracy", "arm accuracy {:.3f}",
     "5-NN arm vote among the latent MEANS (do the means keep the arms apart?)"),
    ("order", "order {:.3f}",
     "5-NN arm accuracy from SAMPLED z = mu + sigma*eps (0.5 = chance; at epoch 0: {order_epoch0:.3f})"),
    ("sigma", "mean sigma {:.3f}", "mean width of the Gaussian clouds (at epoch 0: {sigma_epoch0:.3f})"),
    ("kl", "KL {:.3f} nats", "information z carries about x, per point"),
    ("seconds", "{:.1f} s", "training time"),
)


def _format_summary(s):
    return " | ".join(fmt.format(s[key]) for key, fmt, _ in SUMMARY_LINES)


def _explain_summary(s):
    """One line per number: the value, then what it means."""
    width = max(len(fmt.format(s[key])) for key, fmt, _ in SUMMARY_LINES)
    return [f"{fmt.format(s[key]):<{width}}  {what.format(**s)}" for key, fmt, what in SUMMARY_LINES]


def main(argv=None):
    """``python -m vaecore spirals [--epochs 600] [--beta B] [--out DIR] [--seed S] [--no-progress]``
    and ``python -m vaecore fashion [--arch conv|mlp] [--epochs N] [--out DIR]`` (vaecore/fashion.py)
    and ``python -m vaecore sweep CONFIG.toml [--scheduler ADDRESS]`` (vaecore/sweep.py)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m vaecore", description="vaecore experiments")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("spirals", help="train a 2-D-latent VAE on two interleaved spirals and plot it")
    s.add_argument("--epochs", type=int, default=SPIRALS_DEFAULTS["epochs"])
    s.add_argument("--beta", type=float, default=SPIRALS_DEFAULTS["beta"],
                   help="KL weight (default %(default)s: small enough for the arms' clouds to separate; "
                        "1.0 collapses on this data, see the README)")
    s.add_argument("--lr", type=float, default=SPIRALS_DEFAULTS["lr"])
    s.add_argument("--seed", type=int, default=SPIRALS_DEFAULTS["seed"])
    s.add_argument("--out", default="out/spirals", help="folder for the figures (default %(default)s)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    from . import fashion
    from .sweep import add_parser as add_sweep_parser
    from .sweep import run as run_sweep

    fashion.add_parser(sub)
    add_sweep_parser(sub)
    args = p.parse_args(argv)
    if args.command == "sweep":
        return run_sweep(args)
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
    for line in _explain_summary(r["summary"]):
        print("  " + line)
    print(f"  wrote {len(r['files'])} files to {args.out} in {time.perf_counter() - start:.1f} s:")
    width = max(len(f) for f in r["files"])
    for f in r["files"]:
        print(f"    {f:<{width}}  {FIGURES[os.path.basename(f)]}")
    return 0
