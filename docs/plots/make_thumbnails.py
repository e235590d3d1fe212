"""Write the README's thumbnails of every vaecore.plot function into docs/plots/ (about 400 px wide).

    .venv/bin/python docs/plots/make_thumbnails.py

Two small models, trained here in a few seconds (no download): a 2-D-latent
Bernoulli VAE on scikit-learn's 8x8 digits for the image figures, and the
spiral experiment (100 epochs) for the point figures. Each figure is saved at
its own size and shrunk to WIDTH pixels with Pillow.
"""
from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import vaecore
from vaecore import plot
from vaecore.experiments import spirals

HERE = Path(__file__).resolve().parent
WIDTH = 400  # pixels


def save(fig, name):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    im = Image.open(buf).convert("RGB")
    im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(HERE / name, optimize=True)
    print(f"{name}: {im.width}x{im.height}")


def main():
    X, y = vaecore.datasets.digits("train")
    Xt, yt = vaecore.datasets.digits("test")
    m = vaecore.VAE(64, 2, hidden=(128,), activation="relu", likelihood="bernoulli", seed=0)
    vaecore.fit(m, X, epochs=60, batch_size=64, lr=2e-3, progress=False)
    mu, _ = m.encode(Xt)
    save(plot.latent_scatter(mu, c=yt, clabel="digit"), "latent_scatter.png")
    save(plot.reconstructions(Xt, m.reconstruct(Xt)), "reconstructions.png")
    save(plot.samples(Xt, m.sample(10, seed=1)), "samples.png")
    i3, i8 = np.flatnonzero(yt == 3)[0], np.flatnonzero(yt == 8)[0]
    save(plot.interpolation(vaecore.interpolate(m, Xt[i3], Xt[i8], steps=10)), "interpolation.png")
    save(plot.manifold_grid(m.decode, extent=2.0, n=11), "manifold_grid.png")
    save(plot.traversals(m.decode, mu[i3], values=np.linspace(-3, 3, 7)), "traversals.png")

    r = spirals(epochs=100, progress=False, figures=False)
    X2, t, arm = r["data"]
    at = [i for i, (e, _) in enumerate(r["clouds"]) if e in (0, 3, 5, 100)]
    grid = [r["clouds"][i] for i in at]
    order = (r["order"]["accuracy"][at], r["order"]["sigma"][at])
    save(plot.latent_snapshots(grid, c={"arm": arm, "position t": t}, order=order, title="Sampled z over training"),
         "latent_snapshots.png")
    with tempfile.TemporaryDirectory() as tmp:  # the GIF's figure shows its last frame
        save(plot.latent_animation(r["clouds"], Path(tmp) / "a.gif", c=t, clabel="position t"), "latent_animation.png")
    save(plot.order_curve(r["order"]["epochs"], r["order"]["accuracy"], r["order"]["sigma"]), "order_curve.png")
    save(plot.curves(r["history"]), "curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
