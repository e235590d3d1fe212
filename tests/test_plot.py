"""Tests for vaecore.plot: every function returns a drawable, titled Figure.

Each figure is rendered to PNG in memory, so drawing errors (and, with
pytest's filterwarnings = error, layout warnings) surface here. The figures
are not registered with pyplot, so nothing needs closing.
"""

import io
import types

import numpy as np
import pytest
from matplotlib.figure import Figure

from vaecore import plot

PIL_Image = pytest.importorskip("PIL.Image", reason="Pillow (the `test` extra) reads the GIFs back")

RNG = np.random.default_rng(0)
PTS = RNG.standard_normal((60, 2))  # (60, 2) points
IMGS = RNG.random((12, 64))  # (12, 64) 8x8 images
RECT = RNG.random((5, 6 * 4))  # (5, 24) 6x4 images


def _check(fig, n_titled=1):
    """A rendered Figure whose plotting axes carry titles and axis labels."""
    assert isinstance(fig, Figure)
    assert fig.canvas.manager is None  # not registered with pyplot: never shown, no leak
    fig.savefig(io.BytesIO(), format="png", dpi=30)
    main = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]
    assert len(main) >= 1
    titled = [ax for ax in main if ax.get_title()]
    assert len(titled) >= n_titled
    # every figure labels its axes (grids label their outer panels only)
    assert any(ax.get_xlabel() for ax in main) and any(ax.get_ylabel() or ax.get_yticklabels() for ax in main)
    return main


def _suptitle(fig):
    # Figure.get_suptitle is matplotlib >= 3.8; the runtime bound is 3.7
    return fig.get_suptitle() if hasattr(fig, "get_suptitle") else fig._suptitle.get_text()


def _has_legend(fig):
    return any(ax.get_legend() is not None for ax in fig.axes)


def _has_colorbar(fig):
    return any(ax.get_label() == "<colorbar>" for ax in fig.axes)


# ---------------------------------------------------------------------------
# latent space


def test_latent_scatter_variants():
    main = _check(plot.latent_scatter(PTS, title="My latents"))
    assert main[0].get_title() == "My latents"
    assert main[0].get_xlabel() == "z[0]" and main[0].get_ylabel() == "z[1]"
    fig = plot.latent_scatter(PTS, c=np.arange(60) % 3)  # classes: a legend
    _check(fig)
    assert _has_legend(fig) and not _has_colorbar(fig)
    assert len(fig.axes[0].get_legend().get_texts()) == 3
    fig = plot.latent_scatter(PTS, c=np.linspace(0, 1, 60), cmap="plasma", clabel="t")  # continuous: a colorbar
    _check(fig)
    assert _has_colorbar(fig)
    (cbar_ax,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert cbar_ax.get_ylabel() == "t"
    fig = plot.latent_scatter(RNG.standard_normal((60, 5)), dims=(3, 1))
    assert fig.axes[0].get_xlabel() == "z[3]"


def test_latent_scatter_on_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot.latent_scatter(PTS, ax=ax) is fig
    assert ax.get_title() == "Latent space"


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((np.zeros((5, 1)),), {}, ValueError, "at least 1 row and 2 column"),
        ((np.zeros(5),), {}, ValueError, "z must be 2-D"),
        ((PTS,), {"c": np.zeros(3)}, ValueError, "one value per point"),
        ((PTS,), {"c": np.array(["a"] * 60)}, TypeError, "c must hold"),
        ((PTS,), {"dims": (0, 2)}, ValueError, "dims"),
        ((PTS,), {"title": 3}, TypeError, "title"),
        ((PTS,), {"clabel": None}, TypeError, "clabel"),
        ((np.full((5, 2), np.inf),), {}, ValueError, "finite"),
    ],
)
def test_latent_scatter_validation(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot.latent_scatter(*args, **kwargs)


def _snapshots(k=5):
    return [(10 * e, PTS * (1 + e) + e) for e in range(k)]


def test_latent_snapshots_grid_and_shared_limits():
    fig = plot.latent_snapshots(_snapshots(5), c=np.arange(60) % 2, ncols=3)
    main = _check(fig, n_titled=5)
    assert _suptitle(fig)
    assert [ax.get_title() for ax in main] == [f"epoch {10 * e}" for e in range(5)]
    assert len({ax.get_xlim() for ax in main}) == 1 and len({ax.get_ylim() for ax in main}) == 1
    # the shared limits cover every snapshot
    lo, hi = main[0].get_xlim()
    assert lo <= min(z[:, 0].min() for _, z in _snapshots(5)) and hi >= max(z[:, 0].max() for _, z in _snapshots(5))
    assert _has_legend(fig)
    fig = plot.latent_snapshots(_snapshots(2), c=np.linspace(0, 1, 60))
    _check(fig, n_titled=2)
    assert _has_colorbar(fig)


@pytest.mark.parametrize(
    "snaps, exc, match",
    [
        ([], ValueError, "at least one"),
        ("abc", TypeError, "snapshots"),
        ([(0, PTS), (1, PTS[:10])], ValueError, "same points"),
        ([(0, PTS, 1)], ValueError, "pair"),
        ([(0, np.zeros((5, 1)))], ValueError, "2 column"),
    ],
)
def test_latent_snapshots_validation(snaps, exc, match):
    with pytest.raises(exc, match=match):
        plot.latent_snapshots(snaps)


def test_latent_snapshots_one_row_per_colouring_and_order_panel():
    arm, t = np.arange(60) % 2, np.linspace(0, 1, 60)
    acc, sigma = [0.5, 0.6, 0.7, 0.8, 0.9], [1.0, 0.8, 0.6, 0.4, 0.2]
    fig = plot.latent_snapshots(_snapshots(5), c={"arm": arm, "position t": t}, ncols=3, order=(acc, sigma))
    main = _check(fig, n_titled=5)
    scatters = [ax for ax in main if ax.collections and ax.get_xlim() == main[0].get_xlim()]
    # 5 snapshots x 2 colourings, in rows of 3: arm, t, arm, t
    assert len(scatters) == 10
    titles = [ax.get_title() for ax in scatters if ax.get_title()]
    assert titles == [f"epoch {10 * e}\nacc {a:.2f}, mean σ {s:.2f}" for e, a, s in zip(range(5), acc, sigma)]
    assert _has_legend(fig) and _has_colorbar(fig)
    cbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert {cb.get_ylabel() for cb in cbars} == {"position t"}
    # the order panel: accuracy on the left axis, sigma on its twin, against the epochs
    curves = [ax for ax in fig.axes if ax.lines and ax.get_xscale() == "symlog"]
    assert [ax.get_ylabel() for ax in curves] == ["k-NN accuracy", "mean σ"]  # the twin shares the x axis
    acc_line = curves[0].lines[0]
    np.testing.assert_array_equal(acc_line.get_xdata(), [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(acc_line.get_ydata(), acc)
    np.testing.assert_array_equal(curves[1].lines[0].get_ydata(), sigma)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(c={}), ValueError, "at least one colouring"),
        (dict(c={"arm": np.arange(3)}), ValueError, "one value per point"),
        (dict(c={1: np.arange(60)}), TypeError, "c's keys"),
        (dict(order=[0.5, 0.6]), ValueError, "one value per snapshot"),
        (dict(order=np.zeros((2, 2))), TypeError, "pair"),
        (dict(order=([0.5, np.nan], [1, 1])), ValueError, "finite"),
    ],
)
def test_latent_snapshots_colourings_and_order_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot.latent_snapshots(_snapshots(2), **kwargs)


def test_order_curve():
    epochs, acc, sigma = [0, 1, 2, 5, 100, 600], [0.5, 0.52, 0.6, 0.9, 0.97, 0.99], [1.0, 0.9, 0.7, 0.3, 0.1, 0.1]
    fig = plot.order_curve(epochs, acc, sigma)
    main = _check(fig)
    ax = next(a for a in main if a.get_title())
    assert ax.get_title() == "From chaos to order" and ax.get_xscale() == "symlog"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), acc)
    assert ax.lines[1].get_ydata()[0] == 0.5  # the chance line
    twin = next(a for a in main if a is not ax)
    np.testing.assert_array_equal(twin.lines[0].get_ydata(), sigma)
    assert ax.get_legend() is not None
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"k-NN accuracy", "chance (0.5)", "mean σ"}
    fig = plot.order_curve(epochs, acc, sigma, chance=None, title="t", accuracy_label="a", sigma_label="s")
    assert len(next(a for a in fig.axes if a.get_title() == "t").lines) == 1  # no chance line


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (([0, 1], [0.5], [1, 1]), {}, ValueError, "accuracy must have one value per epoch"),
        (([0, 1], [0.5, 0.6], [1]), {}, ValueError, "sigma must have one value"),
        (([0, 1], [0.5, 1.5], [1, 1]), {}, ValueError, r"accuracy must lie in \[0, 1\]"),
        (([0, 1], [0.5, 0.6], [1, -1]), {}, ValueError, "sigma must be >= 0"),
        (([-1, 1], [0.5, 0.6], [1, 1]), {}, ValueError, "epochs must be >= 0"),
        (([[0, 1]], [0.5, 0.6], [1, 1]), {}, ValueError, "epochs must be 1-D"),
        (([0, 1], [0.5, 0.6], [1, 1]), dict(chance=2), ValueError, "chance"),
        (([0, 1], [0.5, 0.6], [1, 1]), dict(chance="half"), TypeError, "chance"),
    ],
)
def test_order_curve_validation(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot.order_curve(*args, **kwargs)


def test_latent_animation_writes_gif(tmp_path):
    path = tmp_path / "latents.gif"
    fig = plot.latent_animation(_snapshots(4), path, c=np.arange(60) % 3, fps=5)
    _check(fig)
    assert path.exists() and path.stat().st_size > 0
    with PIL_Image.open(path) as im:
        assert im.format == "GIF"
        assert im.n_frames == 4
    assert fig.axes[0].get_title().endswith("epoch 30")  # left on the last frame


def test_latent_animation_validation(tmp_path):
    with pytest.raises(ValueError, match=r"\.gif"):
        plot.latent_animation(_snapshots(2), tmp_path / "latents.mp4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot.latent_animation(_snapshots(2), tmp_path / "missing" / "latents.gif")
    with pytest.raises(ValueError, match="fps"):
        plot.latent_animation(_snapshots(2), tmp_path / "a.gif", fps=0)
    with pytest.raises(TypeError, match="path"):
        plot.latent_animation(_snapshots(2), 42)


# ---------------------------------------------------------------------------
# data against the model


def test_reconstructions_points():
    fig = plot.reconstructions(PTS, PTS + 0.1)
    (ax,) = _check(fig)
    assert ax.get_title() == "Reconstructions" and ax.get_xlabel() == "x[0]"
    assert _has_legend(fig)
    # one line segment per pair, joining each point to its reconstruction
    (lines,) = ax.collections[:1]
    segs = lines.get_segments()
    assert len(segs) == 60
    np.testing.assert_allclose(segs[0], [PTS[0], PTS[0] + 0.1])


def test_reconstructions_images():
    fig = plot.reconstructions(IMGS, 1 - IMGS, n=7)
    (ax,) = _check(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "reconstruction"]
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (2 * 8 + 1, 7 * 8 + 6)  # two rows of seven 8x8 tiles, 1-pixel gutters
    np.testing.assert_allclose(mosaic[:8, :8], IMGS[0].reshape(8, 8))
    np.testing.assert_allclose(mosaic[9:, 9:17], 1 - IMGS[1].reshape(8, 8))
    fig = plot.reconstructions(RECT, RECT, image_shape=(6, 4))  # non-square images
    assert fig.axes[0].images[0].get_array().shape == (2 * 6 + 1, 5 * 4 + 4)
    _check(fig)


@pytest.mark.parametrize(
    "x, x_rec, kwargs, match",
    [
        (PTS, PTS[:5], {}, "same shape"),
        (RECT, RECT, {}, "perfect square"),
        (IMGS, IMGS, {"image_shape": (4, 4)}, "holds 16 pixels"),
        (IMGS, IMGS, {"image_shape": (8,)}, "pair of positive ints"),
        (IMGS, IMGS, {"n": 0}, "n must be >= 1"),
    ],
)
def test_reconstructions_validation(x, x_rec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot.reconstructions(x, x_rec, **kwargs)


def test_samples():
    fig = plot.samples(PTS, RNG.standard_normal((40, 2)))
    (ax,) = _check(fig)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"data", "samples"}
    fig = plot.samples(IMGS, IMGS[:4])  # rows of different lengths
    (ax,) = _check(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["data", "samples"]
    with pytest.raises(ValueError, match="same width"):
        plot.samples(PTS, IMGS)


def test_interpolation():
    path = np.linspace(PTS[0], PTS[1], 9)
    fig = plot.interpolation(path, x=PTS)
    (ax,) = _check(fig)
    assert _has_legend(fig) and _has_colorbar(fig)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"data", "start", "end"}
    _check(plot.interpolation(path))  # without data
    fig = plot.interpolation(np.linspace(IMGS[0], IMGS[1], 6), x=IMGS)
    (ax,) = _check(fig)
    assert ax.images[0].get_array().shape == (8, 6 * 8 + 5)
    assert ax.get_xlabel() == "step"
    with pytest.raises(ValueError, match="same width"):
        plot.interpolation(path, x=IMGS)


# ---------------------------------------------------------------------------
# the decoder


def _recording_decoder(out_dim):
    """A smooth decoder z -> x that records every z it is given."""
    calls = []
    W = np.random.default_rng(1).standard_normal((8, out_dim))

    def decode(z):
        calls.append(np.array(z))
        x = np.tanh(z @ W[: z.shape[1]])
        return x if out_dim == 2 else 1 / (1 + np.exp(-3 * x))

    return decode, calls


def test_manifold_grid_images():
    decode, calls = _recording_decoder(64)
    fig = plot.manifold_grid(decode, extent=2.0, n=5)
    (ax,) = _check(fig)
    assert ax.get_xlabel() == "z[0]" and ax.get_ylabel() == "z[1]"
    (z,) = calls
    assert z.shape == (25, 2)
    grid = np.linspace(-2, 2, 5)
    np.testing.assert_allclose(z[:5, 0], grid)  # first row: z[0] left to right
    np.testing.assert_allclose(z[::5, 1], grid[::-1])  # first column: z[1] top to bottom
    assert ax.images[0].get_array().shape == (5 * 9 - 1, 5 * 9 - 1)


def test_manifold_grid_points():
    decode, _ = _recording_decoder(2)
    fig = plot.manifold_grid(decode, n=6)
    (ax,) = _check(fig)
    assert len(ax.lines) == 12  # six lines of constant z[1], six of constant z[0]
    assert _has_legend(fig)


@pytest.mark.parametrize(
    "decode, kwargs, exc, match",
    [
        ("not callable", {}, TypeError, "decode must be a callable"),
        (lambda z: z[:3], {}, ValueError, "decode must return an array of shape"),
        (lambda z: z[:, 0], {}, ValueError, "decode must return an array of shape"),
        (lambda z: z, {"extent": 0}, ValueError, "extent"),
        (lambda z: z, {"extent": "2"}, TypeError, "extent"),
        (lambda z: z, {"n": 1}, ValueError, "n must be >= 2"),
        (lambda z: np.column_stack([z, z[:, :1]]), {}, ValueError, "perfect square"),
    ],
)
def test_manifold_grid_validation(decode, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot.manifold_grid(decode, **kwargs)


def test_traversals_images():
    decode, calls = _recording_decoder(64)
    z0 = np.array([0.5, -0.25, 1.0])
    fig = plot.traversals(decode, z0, dims=[2, 0], values=[-1.0, 0.0, 1.0, 2.0])
    (ax,) = _check(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z[2]", "z[0]"]
    (z,) = calls
    assert z.shape == (8, 3)
    np.testing.assert_allclose(z[:4, 2], [-1, 0, 1, 2])  # dimension 2 varies in row 0 ...
    np.testing.assert_allclose(z[:4, :2], np.tile(z0[:2], (4, 1)))  # ... the rest is z0
    np.testing.assert_allclose(z[4:, 0], [-1, 0, 1, 2])
    np.testing.assert_allclose(z[4:, 1:], np.tile(z0[1:], (4, 1)))
    # defaults: every dimension, values linspace(-3, 3, 9); a (1, K) z0 is accepted
    decode, calls = _recording_decoder(64)
    _check(plot.traversals(decode, z0[None, :]))
    assert calls[0].shape == (27, 3)
    np.testing.assert_allclose(calls[0][:9, 0], np.linspace(-3, 3, 9))


def test_traversals_points():
    decode, _ = _recording_decoder(2)
    fig = plot.traversals(decode, np.zeros(3), dims=[0, 1])
    (ax,) = _check(fig)
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert labels == {"z[0]", "z[1]", "decode(z0)"}


@pytest.mark.parametrize(
    "z0, kwargs, exc, match",
    [
        (np.zeros((2, 3)), {}, ValueError, "z0 must have shape"),
        (np.zeros(3), {"dims": [3]}, ValueError, r"dims must be in \[0, 3\)"),
        (np.zeros(3), {"dims": []}, ValueError, "at least one"),
        (np.zeros(3), {"dims": [0.5]}, TypeError, "dims must hold ints"),
        (np.zeros(3), {"values": np.zeros((2, 2))}, ValueError, "values must be 1-D"),
        (np.zeros(3), {"values": [0.0, np.nan]}, ValueError, "finite"),
    ],
)
def test_traversals_validation(z0, kwargs, exc, match):
    decode, _ = _recording_decoder(64)
    with pytest.raises(exc, match=match):
        plot.traversals(decode, z0, **kwargs)


# ---------------------------------------------------------------------------
# training curves


def test_curves_three_panels():
    hist = types.SimpleNamespace(loss=np.linspace(5, 1, 40), recon=np.linspace(4, 0.6, 40), kl=np.linspace(1, 0.4, 40))
    fig = plot.curves(hist)
    main = _check(fig, n_titled=3)
    assert len(main) == 3 and _suptitle(fig)
    assert [ax.get_title() for ax in main] == ["Loss (negative ELBO)", "Reconstruction term", "KL term"]
    assert all(ax.get_xlabel() == "epoch" for ax in main)
    x, y = main[2].lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(1, 41))  # epochs are 1-based
    np.testing.assert_allclose(y, hist.kl)


@pytest.mark.parametrize(
    "beta, title",
    [
        (None, "Loss (negative ELBO)"),
        (np.ones(3), "Loss (negative ELBO)"),
        (np.full(3, 0.05), "Loss (recon + beta KL)"),
        (np.array([0.0, 0.5, 1.0]), "Loss (recon + beta KL)"),  # KL warm-up
    ],
)
def test_curves_loss_title_follows_beta(beta, title):
    hist = {"loss": [3, 2, 1], "recon": [2, 1.5, 0.8], "kl": [1, 0.5, 0.2]}
    if beta is not None:
        hist["beta"] = beta
    main = _check(plot.curves(hist), n_titled=3)
    assert main[0].get_title() == title


def test_curves_mapping_with_validation_series():
    hist = dict(loss=[3, 2, 1], recon=[2, 1.5, 0.8], kl=[1, 0.5, 0.2], val_loss=[3.2, 2.4, 1.5])
    fig = plot.curves(hist)
    main = _check(fig, n_titled=3)
    assert len(main[0].lines) == 2 and len(main[1].lines) == 1
    assert [t.get_text() for t in main[0].get_legend().get_texts()] == ["train", "validation"]


@pytest.mark.parametrize(
    "hist, match",
    [
        (types.SimpleNamespace(loss=[1.0], recon=[1.0]), "'kl'"),
        (dict(loss=[1, 2], recon=[1, 2], kl=[1]), "same length"),
        (dict(loss=[], recon=[], kl=[]), "no epochs"),
        (dict(loss=[[1, 2]], recon=[[1, 2]], kl=[[1, 2]]), "1-D"),
        (dict(loss=[1, 2], recon=[1, 2], kl=[1, 2], val_kl=[1]), "val_kl"),
    ],
)
def test_curves_validation(hist, match):
    with pytest.raises(ValueError, match=match):
        plot.curves(hist)


def test_docstrings():
    for name in plot.__all__:
        doc = getattr(plot, name).__doc__
        assert doc and "Returns" in doc, name


def test_readme_plots_section(tmp_path, monkeypatch):
    # every function has its line and its thumbnail, and the recipes run as written
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Plots\n")[1].split("\n## ")[0]
    for name in plot.__all__:
        assert f"| `{name}(" in section, name
    for src in __import__("re").findall(r'src="(docs/plots/[^"]+)"', section):
        with PIL_Image.open(root / src) as im:
            assert 300 <= im.width <= 500, src  # small thumbnails
    recipe = section.split("```python\n")[1].split("```")[0]
    assert recipe.count("\n") == 11  # three recipes of three lines, two blank lines between
    import vaecore

    X = np.random.default_rng(0).random((40, 64)).round()  # 8x8 binary "images"
    m = vaecore.VAE(64, 2, hidden=(16,), likelihood="bernoulli", seed=0)
    monkeypatch.chdir(tmp_path)
    exec(recipe, {"vaecore": vaecore, "m": m, "X": X, "y": np.arange(40) % 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interpolation.png", "latent.png", "samples.png"]
