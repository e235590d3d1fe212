"""A small deterministic workload for the sweep tests (tests/test_sweep*.py).

Worker processes import ``build`` and ``metrics`` by name, so they live in a
module of their own rather than in a test file. Each run trains a VAE of 8
inputs on 400 rows for a few epochs: milliseconds, or about a quarter of a
second with EPOCHS_SLOW, for the tests that interrupt a sweep in the middle.
"""
import os

import numpy as np

import vaecore

EPOCHS, EPOCHS_SLOW = 3, 500


def data(n=400, seed=0):
    """(X, X_val): two clouds in 8 dimensions, float32."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, 8)) + np.repeat([[1.0], [-1.0]], n // 2, axis=0)).astype(np.float32)
    X_val = rng.standard_normal((100, 8)).astype(np.float32)
    return X, X_val


def build(cfg):
    return vaecore.VAE(8, cfg.get("latent", 2), hidden=(16,), seed=cfg["seed"])


def build_noting_start(cfg):
    """build, after leaving a file named after the run's seed in the folder ``cfg["marks"]``."""
    with open(os.path.join(cfg["marks"], f"started-{cfg['seed']}"), "w"):
        pass
    return build(cfg)


def metrics(model, cfg):
    """One extra metric: the mean absolute posterior mean of the first 50 rows."""
    mu, _ = model.encode(data()[0][:50])
    return {"mean_abs_mu": float(np.abs(mu).mean())}


def in_process(cfg, X, X_val=None, **fit_args):
    """The run as the issue defines it, done here: fit(build(cfg), X, seed=cfg["seed"], **fit_args)."""
    args = dict(fit_args)
    args.update({k: cfg[k] for k in ("epochs", "batch_size", "lr", "beta") if k in cfg})
    model = build(cfg)
    hist = vaecore.fit(model, X, seed=cfg["seed"], progress=False, validation_data=X_val, **args)
    return model, hist
