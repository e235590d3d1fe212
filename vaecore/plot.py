"""Figures for looking at a VAE: latent spaces, reconstructions, samples.

Every function builds and returns a :class:`matplotlib.figure.Figure`
created directly (not through ``pyplot``), so it works headless, is never
shown, and needs no closing: save it with ``fig.savefig(path)``, or let a
notebook display it. Functions that draw data accept either 2-D points
(``x`` of shape (n, 2)) or flattened images (shape (n, h * w)); images are
recognised by ``image_shape=(h, w)``, or, when it is omitted and the width
is not 2, by the width being a perfect square.

- :func:`latent_scatter`, :func:`latent_snapshots`, :func:`latent_animation`
  -- the latent codes, once, over training as a grid, or as a GIF.
- :func:`order_curve` -- how ordered the latent space is (a k-NN accuracy)
  and how wide its Gaussian clouds are, over training.
- :func:`reconstructions`, :func:`samples`, :func:`interpolation` -- data
  against what the model makes of it.
- :func:`manifold_grid`, :func:`traversals` -- the decoder on a grid of a
  2-D latent space (Kingma & Welling 2014, fig. 4) and along one latent
  dimension at a time (Higgins et al. 2017).
- :func:`curves` -- loss, reconstruction term and KL term per epoch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._checks import check_int, check_real

__all__ = [
    "latent_scatter",
    "latent_snapshots",
    "latent_animation",
    "order_curve",
    "reconstructions",
    "samples",
    "interpolation",
    "manifold_grid",
    "traversals",
    "curves",
]

_MAX_CLASSES = 20  # integer colour labels with at most this many values get a legend
_DATA_COLOR = "0.6"  # grey for data in the background
_MODEL_COLOR = "tab:red"  # the model's points


# ---------------------------------------------------------------------------
# argument checks


def _as_matrix(name, a, min_cols=1):
    """``a`` as a finite float64 array of shape (n, d) with n >= 1, d >= min_cols."""
    arr = np.asarray(a)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D of shape (n, d), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < min_cols:
        raise ValueError(f"{name} must have at least 1 row and {min_cols} column(s), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    return arr


def _check_title(title, name="title"):
    if not isinstance(title, str):
        raise TypeError(f"{name} must be a str, got {type(title).__name__} ({title!r})")
    return title


def _image_shape(d, image_shape, name="x"):
    """None for 2-D points, else the (h, w) of the flattened images of width d."""
    if image_shape is None:
        if d == 2:
            return None
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(
                f"{name} has width {d}: expected 2 (points) or a perfect square (square images); "
                "pass image_shape=(h, w) for other images"
            )
        return (side, side)
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in image_shape)
    ):
        raise ValueError(f"image_shape must be a pair of positive ints (h, w), got {image_shape!r}")
    h, w = int(image_shape[0]), int(image_shape[1])
    if h * w != d:
        raise ValueError(f"image_shape {(h, w)} holds {h * w} pixels but {name} has width {d}")
    return (h, w)


def _check_colors(c, n):
    """Return (values, classes): classes is the sorted unique labels if c is categorical, else None."""
    if c is None:
        return None, None
    c = np.asarray(c)
    if c.ndim != 1 or len(c) != n:
        raise ValueError(f"c must be 1-D with one value per point ({n}), got shape {c.shape}")
    if c.dtype == np.bool_:
        c = c.astype(np.int64)
    if np.issubdtype(c.dtype, np.integer):
        classes = np.unique(c)
        if len(classes) <= _MAX_CLASSES:
            return c, classes
        return c.astype(np.float64), None
    if not np.issubdtype(c.dtype, np.floating):
        raise TypeError(f"c must hold real numbers or integer class labels, got dtype {c.dtype}")
    if not np.all(np.isfinite(c)):
        raise ValueError("c must be finite, got NaN or infinity")
    return c, None


def _check_snapshots(snapshots, c):
    """Validate a list of (epoch, z); returns the list of (epoch, (n, 2) array)."""
    if isinstance(snapshots, (str, bytes)) or not hasattr(snapshots, "__len__"):
        raise TypeError(f"snapshots must be a list of (epoch, z) pairs, got {type(snapshots).__name__}")
    if len(snapshots) == 0:
        raise ValueError("snapshots must hold at least one (epoch, z) pair, got an empty list")
    out = []
    for i, item in enumerate(snapshots):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"snapshots[{i}] must be an (epoch, z) pair, got {type(item).__name__}")
        epoch, z = item
        z = _as_matrix(f"snapshots[{i}] z", z, min_cols=2)
        if out and len(z) != len(out[0][1]):
            raise ValueError(
                f"snapshots[{i}] z has {len(z)} rows but snapshots[0] z has {len(out[0][1])}: "
                "expected the same points at every epoch"
            )
        out.append((epoch, z[:, :2]))
    _check_colors(c, len(out[0][1]))
    return out


# ---------------------------------------------------------------------------
# drawing helpers


def _new_figure(width, height):
    return Figure(figsize=(width, height), layout="constrained")


def _scatter(ax, z, c, classes, cmap, s=8, norm_range=None):
    """Scatter z[:, 0] against z[:, 1], coloured by c; returns the PathCollection."""
    if c is None:
        return ax.scatter(z[:, 0], z[:, 1], s=s, color="tab:blue", alpha=0.7, linewidths=0)
    if classes is not None:  # categorical: one colour per class, consistent across panels
        codes = np.searchsorted(classes, c)
        if cmap is None:  # the first len(classes) colours of a qualitative map, one per class
            from matplotlib import colormaps
            from matplotlib.colors import ListedColormap

            base = colormaps["tab10" if len(classes) <= 10 else "tab20"]
            cmap = ListedColormap(base.colors[: len(classes)])
        return ax.scatter(
            z[:, 0], z[:, 1], c=codes, s=s, cmap=cmap, vmin=-0.5, vmax=len(classes) - 0.5, alpha=0.8, linewidths=0
        )
    lo, hi = norm_range if norm_range is not None else (float(np.min(c)), float(np.max(c)))
    return ax.scatter(z[:, 0], z[:, 1], c=c, s=s, cmap=cmap or "viridis", vmin=lo, vmax=hi, alpha=0.8, linewidths=0)


def _legend_or_colorbar(fig, axes, mappable, classes, label="c"):
    """A class legend for categorical colours, else a colorbar labelled ``label``."""
    if classes is not None:
        handles = [
            Line2D([], [], marker="o", linestyle="", color=mappable.cmap(mappable.norm(i)), label=str(v))
            for i, v in enumerate(classes)
        ]
        axes[-1].legend(handles=handles, title=label, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    else:
        cbar = fig.colorbar(mappable, ax=axes)
        cbar.set_label(label)


def _padded_limits(arrays, pad=0.05):
    """Shared (xlim, ylim) covering every (n, 2) array, padded by ``pad`` of the span."""
    stacked = np.concatenate(arrays, axis=0)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    return (lo[0], hi[0]), (lo[1], hi[1])


def _value_range(*arrays):
    """Grey-scale limits: [0, 1] widened to include every value."""
    lo = min(0.0, *(float(a.min()) for a in arrays if a.size))
    hi = max(1.0, *(float(a.max()) for a in arrays if a.size))
    return lo, hi


def _mosaic(rows, h, w, pad=1):
    """Tile images into one 2-D array with NaN gutters.

    rows is a list of (m_r, h * w) arrays, one per row of tiles; shorter rows
    are left blank at the end. Returns (R * (h + pad) - pad, C * (w + pad) - pad).
    """
    n_cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) - pad, n_cols * (w + pad) - pad), np.nan)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = img.reshape(h, w)
    return out


def _show_mosaic(fig, ax, rows, h, w, row_labels, col_labels=None, xlabel=None, ylabel=None):
    """Draw a mosaic of image rows on ``ax`` with labelled rows, plus a colorbar."""
    lo, hi = _value_range(*rows)
    im = ax.imshow(_mosaic(rows, h, w), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_yticks([i * (h + 1) + (h - 1) / 2 for i in range(len(rows))], row_labels)
    n_cols = max(len(r) for r in rows)
    if col_labels is None:
        ax.set_xticks([])
    else:
        ax.set_xticks([j * (w + 1) + (w - 1) / 2 for j in range(n_cols)], col_labels)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("pixel value")
    return im


def _tile_width(n_cols, h, w, n_rows):
    """Figure (width, height) in inches for a mosaic: tiles of at most 0.6 inch, at most ~16 inches."""
    aspect = w / h
    tile = min(0.6, 14.0 / (n_cols * aspect), 14.0 / n_rows)  # tile height in inches
    return 1.8 + tile * aspect * n_cols, max(1.6, 0.9 + tile * n_rows)


# ---------------------------------------------------------------------------
# latent space


def latent_scatter(z, c=None, ax=None, title="Latent space", cmap=None, dims=(0, 1), clabel="c"):
    """Scatter plot of latent codes in two chosen latent dimensions.

    Parameters
    ----------
    z : array_like, shape (n, latent_dim)
        Latent codes (e.g. encoder means), latent_dim >= 2.
    c : array_like, shape (n,), optional
        Colour per point. Integer labels with at most 20 distinct values are
        drawn as classes with a legend; other numbers on a continuous scale
        with a colorbar.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new Figure with one Axes is made.
    title : str, default "Latent space"
        Axes title.
    cmap : str or matplotlib.colors.Colormap, optional
        Colour map; defaults to "tab10"/"tab20" for classes, "viridis"
        otherwise.
    dims : pair of int, default (0, 1)
        The latent dimensions on the horizontal and vertical axes.
    clabel : str, default "c"
        What ``c`` is, shown as the legend title or colorbar label.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the plot (``ax.figure`` when ``ax`` is given).
    """
    z = _as_matrix("z", z, min_cols=2)
    title = _check_title(title)
    clabel = _check_title(clabel, "clabel")
    if (
        not isinstance(dims, (tuple, list))
        or len(dims) != 2
        or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims)
    ):
        raise TypeError(f"dims must be a pair of ints, got {dims!r}")
    for d in dims:
        if not 0 <= d < z.shape[1]:
            raise ValueError(f"dims must index the {z.shape[1]} latent dimensions of z, got {tuple(dims)}")
    c, classes = _check_colors(c, len(z))
    if ax is None:
        fig = _new_figure(5.5 if c is not None else 4.5, 4.5)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    sc = _scatter(ax, z[:, list(dims)], c, classes, cmap)
    if c is not None:
        _legend_or_colorbar(fig, [ax], sc, classes, clabel)
    ax.set_title(title)
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def _check_colorings(c, clabel, n):
    """``c`` as a list of (label, values, classes): one entry, or one per item of a mapping."""
    if isinstance(c, Mapping):
        if not c:
            raise ValueError("c must hold at least one colouring when it is a mapping, got an empty mapping")
        out = []
        for label, values in c.items():
            label = _check_title(label, "c's keys")
            if values is None:
                raise ValueError(f"c[{label!r}] must be an array of colours, got None")
            out.append((label, *_check_colors(values, n)))
        return out
    return [(clabel, *_check_colors(c, n))]


def _check_order(order, m):
    """``order`` as two float arrays (accuracy, sigma) of length m, or None."""
    if order is None:
        return None
    if not isinstance(order, (tuple, list)) or len(order) != 2:
        raise TypeError(f"order must be a pair (accuracy, sigma) of sequences, got {type(order).__name__}")
    out = []
    for name, values in zip(("accuracy", "sigma"), order, strict=True):
        arr = _as_matrix(f"order's {name}", np.asarray(values, dtype=np.float64).reshape(-1, 1))[:, 0]
        if len(arr) != m:
            raise ValueError(f"order's {name} must have one value per snapshot ({m}), got {len(arr)}")
        out.append(arr)
    return out


def latent_snapshots(
    snapshots, c=None, ncols=4, title="Latent space during training", cmap=None, clabel="c", order=None
):
    """A grid of latent scatter plots, one per training snapshot, on shared axes.

    Parameters
    ----------
    snapshots : list of (epoch, z)
        ``z`` is an array of shape (n, latent_dim) with latent_dim >= 2 and
        the same n in every snapshot; the first two dimensions are drawn.
    c : array_like of shape (n,), or mapping of str to array_like, optional
        Colour per point, as in :func:`latent_scatter`, the same for all
        panels. A mapping ``{label: colours}`` draws every snapshot once per
        colouring: the panels of one snapshot are stacked in a column, one
        row per colouring, each row with its own legend or colorbar titled
        with the label (e.g. ``{"arm": arm, "position t": t}``).
    ncols : int, default 4
        Number of snapshots per row, >= 1.
    title : str, default "Latent space during training"
        Figure title; each panel is titled with its epoch.
    cmap : str or matplotlib.colors.Colormap, optional
        Colour map, as in :func:`latent_scatter`.
    clabel : str, default "c"
        What ``c`` is, shown as the legend title or colorbar label (when
        ``c`` is a mapping its keys are the labels).
    order : pair of sequences (accuracy, sigma), optional
        Two numbers per snapshot, e.g. the k-NN accuracy of predicting a
        label from z and the mean posterior standard deviation (see
        :func:`order_curve`): each panel's title shows them, and both are
        drawn as curves against the epoch in a panel to the right.

    Returns
    -------
    matplotlib.figure.Figure
    """
    snaps = _check_snapshots(snapshots, c if not isinstance(c, Mapping) else None)
    ncols = check_int(ncols, "ncols", low=1)
    title = _check_title(title)
    clabel = _check_title(clabel, "clabel")
    colorings = _check_colorings(c, clabel, len(snaps[0][1]))
    order = _check_order(order, len(snaps))
    coloured = colorings[0][1] is not None
    ncols = min(ncols, len(snaps))
    nwrap = math.ceil(len(snaps) / ncols)  # rows of snapshots
    nrows = nwrap * len(colorings)  # each row of snapshots is drawn once per colouring
    width = 2.8 * ncols + (1.2 if coloured else 0.0)
    height = 2.8 * nrows + 0.4
    if order is None:
        fig = panels = _new_figure(width, height)
    else:
        fig = _new_figure(width + 4.2, height)
        panels, right = fig.subfigures(1, 2, width_ratios=[width, 4.2])
    axes = panels.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    xlim, ylim = _padded_limits([z for _, z in snaps])
    for row in range(nrows):
        wrap, which = divmod(row, len(colorings))
        label, values, classes = colorings[which]
        crange = (float(np.min(values)), float(np.max(values))) if values is not None and classes is None else None
        sc, used = None, []
        for col in range(ncols):
            ax, k = axes[row, col], wrap * ncols + col
            if k >= len(snaps):
                ax.set_axis_off()
                continue
            epoch, z = snaps[k]
            sc = _scatter(ax, z, values, classes, cmap, s=5, norm_range=crange)
            used.append(ax)
            if which == 0:
                head = f"epoch {epoch}"
                if order is not None:
                    head += f"\nacc {order[0][k]:.2f}, mean σ {order[1][k]:.2f}"
                ax.set_title(head, fontsize="medium" if order is None else "small")
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            if col == 0:
                ax.set_ylabel("z[1]")
            if row == nrows - 1 or k + ncols >= len(snaps) and which == len(colorings) - 1:
                ax.set_xlabel("z[0]")
                ax.xaxis.set_tick_params(labelbottom=True)
        if values is not None:  # on the whole row, used or not, so that every row keeps the same width
            _legend_or_colorbar(panels, list(axes[row]), sc, classes, label)
    if order is not None:  # the curves in the middle half of the right-hand column
        ax = right.add_subplot(right.add_gridspec(4, 1)[1:3] if nrows >= 3 else 111)
        _draw_order(ax, [e for e, _ in snaps], order[0], order[1])
    fig.suptitle(title)
    return fig


def _draw_order(ax, epochs, accuracy, sigma, chance=0.5, accuracy_label="k-NN accuracy", sigma_label="mean σ"):
    """Accuracy (left axis) and mean sigma (right axis) against the epoch, on a symlog epoch axis."""
    epochs = np.asarray(epochs, dtype=np.float64)
    marker = "o" if len(epochs) <= 60 else None
    a = ax.plot(epochs, accuracy, color="tab:green", marker=marker, markersize=3, label=accuracy_label)
    handles = a
    if chance is not None:
        handles += [ax.axhline(chance, color="tab:green", linestyle=":", linewidth=1, label=f"chance ({chance:g})")]
    ax.set_ylim(min(0.0 if chance is None else chance - 0.05, float(np.min(accuracy)) - 0.02), 1.02)
    ax.set_ylabel(accuracy_label, color="tab:green")
    twin = ax.twinx()
    handles += twin.plot(epochs, sigma, color="tab:purple", marker=marker, markersize=3, label=sigma_label)
    twin.set_ylim(0.0, max(1e-12, float(np.max(sigma))) * 1.08)
    twin.set_ylabel(sigma_label, color="tab:purple")
    # symlog: linear from 0 to 1, logarithmic beyond, so epoch 0 and epoch 600 share one readable axis
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0.0)
    ax.set_xlabel("epoch (linear to 1, then logarithmic)")
    ax.grid(True, alpha=0.3)
    # below the axes, where it hides no curve
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="small")


def order_curve(epochs, accuracy, sigma, chance=0.5, title="From chaos to order",
                accuracy_label="k-NN accuracy", sigma_label="mean σ"):
    """How ordered a latent space is, and how wide its clouds are, over training.

    Two curves against the epoch (on a "symlog" axis: linear up to 1, then
    logarithmic, so that the first epochs, where most happens, are not
    squeezed): ``accuracy``, e.g. the k-nearest-neighbour accuracy of
    predicting a label from sampled z (0.5 is chance for two balanced
    classes: the clouds of the classes are mixed; 1 means they are apart),
    on the left axis, and ``sigma``, the mean posterior standard deviation
    of the encoder's Gaussian clouds, on the right axis.

    Parameters
    ----------
    epochs : array_like, shape (m,)
        The epoch of each measurement, >= 0 (fractions allowed).
    accuracy : array_like, shape (m,)
        The accuracy at each epoch, in [0, 1].
    sigma : array_like, shape (m,)
        The mean posterior standard deviation at each epoch, >= 0.
    chance : float or None, default 0.5
        Accuracy of guessing, drawn as a dotted line; None draws none.
    title : str, default "From chaos to order"
        Axes title.
    accuracy_label, sigma_label : str
        Axis labels of the two curves.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cols = {}
    for name, values in (("epochs", epochs), ("accuracy", accuracy), ("sigma", sigma)):
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one value per measurement), got shape {arr.shape}")
        cols[name] = _as_matrix(name, arr[:, None])[:, 0]
    m = len(cols["epochs"])
    for name in ("accuracy", "sigma"):
        if len(cols[name]) != m:
            raise ValueError(f"{name} must have one value per epoch ({m}), got {len(cols[name])}")
    if np.any(cols["epochs"] < 0):
        raise ValueError(f"epochs must be >= 0, got {cols['epochs'].min()}")
    if np.any((cols["accuracy"] < 0) | (cols["accuracy"] > 1)):
        raise ValueError("accuracy must lie in [0, 1]")
    if np.any(cols["sigma"] < 0):
        raise ValueError(f"sigma must be >= 0, got {cols['sigma'].min()}")
    if chance is not None:
        if isinstance(chance, bool) or not isinstance(chance, (int, float, np.integer, np.floating)):
            raise TypeError(f"chance must be a number in [0, 1] or None, got {type(chance).__name__}")
        if not 0.0 <= chance <= 1.0:
            raise ValueError(f"chance must be in [0, 1], got {chance}")
    title = _check_title(title)
    accuracy_label = _check_title(accuracy_label, "accuracy_label")
    sigma_label = _check_title(sigma_label, "sigma_label")
    fig = _new_figure(5.5, 3.8)
    ax = fig.add_subplot()
    _draw_order(ax, cols["epochs"], cols["accuracy"], cols["sigma"], chance, accuracy_label, sigma_label)
    ax.set_title(title)
    return fig


def latent_animation(
    snapshots, path, c=None, fps=10, title="Latent space during training", cmap=None, dpi=80, clabel="c"
):
    """Write an animated GIF of the latent codes over training.

    One frame per snapshot, on fixed axes covering every snapshot, titled
    with the epoch; written with :class:`matplotlib.animation.PillowWriter`
    (needs Pillow). Pillow merges consecutive identical frames.

    Parameters
    ----------
    snapshots : list of (epoch, z)
        As in :func:`latent_snapshots`.
    path : str or os.PathLike
        Output file; must end in ".gif" and its directory must exist.
    c : array_like, shape (n,), optional
        Colour per point, as in :func:`latent_scatter`.
    fps : int, default 10
        Frames per second, >= 1.
    title : str, default "Latent space during training"
        Title prefix; each frame's title adds the epoch.
    cmap : str or matplotlib.colors.Colormap, optional
        Colour map, as in :func:`latent_scatter`.
    dpi : int, default 80
        Resolution of the frames.
    clabel : str, default "c"
        What ``c`` is, shown as the legend title or colorbar label.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, showing the last frame.
    """
    from matplotlib.animation import PillowWriter

    snaps = _check_snapshots(snapshots, c)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path's directory {str(path.parent)!r} does not exist")
    fps = check_int(fps, "fps", low=1)
    dpi = check_int(dpi, "dpi", low=10)
    title = _check_title(title)
    clabel = _check_title(clabel, "clabel")
    c, classes = _check_colors(c, len(snaps[0][1]))

    fig = _new_figure(5.5 if c is not None else 4.5, 4.5)
    ax = fig.add_subplot()
    xlim, ylim = _padded_limits([z for _, z in snaps])
    sc = _scatter(ax, snaps[0][1], c, classes, cmap)
    if c is not None:
        _legend_or_colorbar(fig, [ax], sc, classes, clabel)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi):
        for epoch, z in snaps:
            sc.set_offsets(z)
            ax.set_title(f"{title}: epoch {epoch}")
            writer.grab_frame()
    return fig


# ---------------------------------------------------------------------------
# data against the model


def _pair_rows(n, default_images, default_points, is_points, name="n"):
    if n is None:
        return default_points if is_points else default_images
    return check_int(n, name, low=1)


def reconstructions(x, x_rec, image_shape=None, n=None, title="Reconstructions"):
    """Data next to its reconstructions.

    For 2-D points: the data and the reconstructions as two scatters, with a
    line joining each point to its reconstruction. For images: two rows of
    tiles, the data above and the reconstructions below.

    Parameters
    ----------
    x : array_like, shape (m, d)
        Data: points (d = 2) or flattened images.
    x_rec : array_like, shape (m, d)
        Reconstructions, row for row.
    image_shape : pair of int, optional
        (h, w) of the images; inferred for square images.
    n : int, optional
        How many pairs to show: the first n rows; by default 10 images or up
        to 500 points.
    title : str, default "Reconstructions"
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _as_matrix("x", x)
    x_rec = _as_matrix("x_rec", x_rec)
    if x.shape != x_rec.shape:
        raise ValueError(f"x and x_rec must have the same shape, got {x.shape} and {x_rec.shape}")
    title = _check_title(title)
    shape = _image_shape(x.shape[1], image_shape)
    n = min(len(x), _pair_rows(n, 10, 500, shape is None))
    x, x_rec = x[:n], x_rec[:n]
    if shape is None:
        from matplotlib.collections import LineCollection

        fig = _new_figure(5.0, 4.5)
        ax = fig.add_subplot()
        segments = np.stack([x, x_rec], axis=1)  # (n, 2 ends, 2 coords)
        ax.add_collection(LineCollection(segments, colors="0.5", linewidths=0.6, alpha=0.6, label="pairs"))
        ax.scatter(x[:, 0], x[:, 1], s=10, color=_DATA_COLOR, label="data", linewidths=0)
        ax.scatter(x_rec[:, 0], x_rec[:, 1], s=10, color=_MODEL_COLOR, label="reconstruction", linewidths=0)
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.legend(loc="best", fontsize="small")
        ax.set_aspect("equal", adjustable="datalim")
    else:
        h, w = shape
        fig = _new_figure(*_tile_width(n, h, w, 2))
        ax = fig.add_subplot()
        _show_mosaic(fig, ax, [x, x_rec], h, w, ["data", "reconstruction"], xlabel="example")
    ax.set_title(title)
    return fig


def samples(x, x_new, image_shape=None, n=None, title="Data and new samples"):
    """Data next to brand-new samples from the model.

    For 2-D points: the data in grey under the samples in colour. For
    images: a row of data images above a row of samples.

    Parameters
    ----------
    x : array_like, shape (m, d)
        Data: points (d = 2) or flattened images.
    x_new : array_like, shape (k, d)
        Samples, e.g. the decoder applied to z drawn from the prior.
    image_shape : pair of int, optional
        (h, w) of the images; inferred for square images.
    n : int, optional
        How many of each to show (the first n rows); by default 10 images or
        up to 2,000 points.
    title : str, default "Data and new samples"
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = _as_matrix("x", x)
    x_new = _as_matrix("x_new", x_new)
    if x.shape[1] != x_new.shape[1]:
        raise ValueError(f"x and x_new must have the same width, got {x.shape[1]} and {x_new.shape[1]}")
    title = _check_title(title)
    shape = _image_shape(x.shape[1], image_shape)
    n = _pair_rows(n, 10, 2000, shape is None)
    x, x_new = x[:n], x_new[:n]
    if shape is None:
        fig = _new_figure(5.0, 4.5)
        ax = fig.add_subplot()
        ax.scatter(x[:, 0], x[:, 1], s=8, color=_DATA_COLOR, label="data", linewidths=0)
        ax.scatter(x_new[:, 0], x_new[:, 1], s=8, color=_MODEL_COLOR, alpha=0.7, label="samples", linewidths=0)
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.legend(loc="best", fontsize="small")
        ax.set_aspect("equal", adjustable="datalim")
    else:
        h, w = shape
        fig = _new_figure(*_tile_width(max(len(x), len(x_new)), h, w, 2))
        ax = fig.add_subplot()
        _show_mosaic(fig, ax, [x, x_new], h, w, ["data", "samples"], xlabel="example")
    ax.set_title(title)
    return fig


def interpolation(path_x, x=None, image_shape=None, title="Interpolation in latent space"):
    """The decoded points along a path in latent space.

    For 2-D points: the path as a line of markers coloured by step, over the
    data ``x`` in grey, with its start and end marked. For images: a strip
    of the decoded images, step by step; ``x`` is not drawn (it is accepted
    so the same call works for both kinds of data).

    Parameters
    ----------
    path_x : array_like, shape (m, d)
        Decoded points along the path, in order, m >= 1.
    x : array_like, shape (k, d), optional
        Data to draw under a 2-D path.
    image_shape : pair of int, optional
        (h, w) of the images; inferred for square images.
    title : str, default "Interpolation in latent space"
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    path_x = _as_matrix("path_x", path_x)
    if x is not None:
        x = _as_matrix("x", x)
        if x.shape[1] != path_x.shape[1]:
            raise ValueError(f"x and path_x must have the same width, got {x.shape[1]} and {path_x.shape[1]}")
    title = _check_title(title)
    shape = _image_shape(path_x.shape[1], image_shape, name="path_x")
    m = len(path_x)
    if shape is None:
        fig = _new_figure(5.5, 4.5)
        ax = fig.add_subplot()
        if x is not None:
            ax.scatter(x[:, 0], x[:, 1], s=6, color=_DATA_COLOR, alpha=0.6, label="data", linewidths=0)
        ax.plot(path_x[:, 0], path_x[:, 1], color="0.2", linewidth=1.0, zorder=2)
        sc = ax.scatter(path_x[:, 0], path_x[:, 1], c=np.arange(m), cmap="viridis", s=25, zorder=3, linewidths=0)
        ax.scatter(*path_x[0], marker="o", s=90, facecolors="none", edgecolors="k", zorder=4, label="start")
        ax.scatter(*path_x[-1], marker="s", s=90, facecolors="none", edgecolors="k", zorder=4, label="end")
        cbar = fig.colorbar(sc, ax=ax)
        cbar.set_label("step")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.legend(loc="best", fontsize="small")
        ax.set_aspect("equal", adjustable="datalim")
    else:
        h, w = shape
        fig = _new_figure(*_tile_width(m, h, w, 1))
        ax = fig.add_subplot()
        labels = [str(i) if m <= 12 or i in (0, m - 1) else "" for i in range(m)]
        _show_mosaic(fig, ax, [path_x], h, w, ["path"], col_labels=labels, xlabel="step")
    ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------
# the decoder


def _check_decode(decode):
    if not callable(decode):
        raise TypeError(f"decode must be a callable z -> x, got {type(decode).__name__}")


def _decoded(decode, z):
    """decode(z) checked to be a finite (len(z), d) array."""
    out = np.asarray(decode(z))
    if out.ndim != 2 or out.shape[0] != len(z):
        raise ValueError(
            f"decode must return an array of shape ({len(z)}, d) for z of shape {z.shape}, got shape {out.shape}"
        )
    return _as_matrix("decode(z)", out)


def manifold_grid(decode, extent=2.5, n=15, image_shape=None, title="Decoder on a latent grid"):
    """Decode a regular grid of a 2-D latent space.

    ``z`` runs over ``np.linspace(-extent, extent, n)`` in each dimension.
    For images the decoded images are tiled with z[0] increasing to the right
    and z[1] increasing upwards (Kingma & Welling 2014, fig. 4). For 2-D
    points the grid lines of latent space are drawn as the curves they map
    to in data space, showing how the decoder bends the plane.

    Parameters
    ----------
    decode : callable
        Maps z, a float64 array of shape (n * n, 2), to x of shape
        (n * n, d), e.g. a trained model's decoder mean.
    extent : float, default 2.5
        Half-width of the grid, > 0 (2.5 covers about 99% of a standard
        normal prior per dimension).
    n : int, default 15
        Grid points per dimension, >= 2.
    image_shape : pair of int, optional
        (h, w) of the decoded images; inferred for square images.
    title : str, default "Decoder on a latent grid"
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_decode(decode)
    extent = check_real(extent, "extent", allow_equal=False)
    n = check_int(n, "n", low=2)
    title = _check_title(title)
    grid = np.linspace(-extent, extent, n)
    z0, z1 = np.meshgrid(grid, grid[::-1])  # row 0 is the top: largest z[1]
    z = np.stack([z0.ravel(), z1.ravel()], axis=1)  # (n * n, 2)
    x = _decoded(decode, z)  # (n * n, d)
    shape = _image_shape(x.shape[1], image_shape, name="decode(z)")
    if shape is None:
        fig = _new_figure(5.5, 4.5)
        ax = fig.add_subplot()
        pts = x.reshape(n, n, 2)  # [row (z[1] from top), column (z[0])]
        for i in range(n):
            ax.plot(pts[i, :, 0], pts[i, :, 1], color="tab:blue", linewidth=0.8, alpha=0.8)
            ax.plot(pts[:, i, 0], pts[:, i, 1], color="tab:orange", linewidth=0.8, alpha=0.8)
        ax.legend(
            handles=[
                Line2D([], [], color="tab:blue", label="z[1] fixed, z[0] varies"),
                Line2D([], [], color="tab:orange", label="z[0] fixed, z[1] varies"),
            ],
            loc="best",
            fontsize="small",
        )
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.set_aspect("equal", adjustable="datalim")
    else:
        h, w = shape
        fig = _new_figure(*_tile_width(n, h, w, n))
        ax = fig.add_subplot()
        rows = [x[i * n : (i + 1) * n] for i in range(n)]
        ticks = [f"{v:.1f}" if i in (0, n // 2, n - 1) else "" for i, v in enumerate(grid)]
        _show_mosaic(fig, ax, rows, h, w, ticks[::-1], col_labels=ticks, xlabel="z[0]", ylabel="z[1]")
    ax.set_title(title)
    return fig


def traversals(decode, z0, dims=None, values=None, image_shape=None, title="Latent traversals"):
    """Decode ``z0`` with one latent dimension at a time set to each value.

    Row ``i`` holds ``decode(z)`` for ``z = z0`` with ``z[dims[i]]`` replaced
    by each of ``values`` in turn (Higgins et al. 2017). For images, the rows
    are rows of tiles; for 2-D points, each row is a curve in data space,
    with ``decode(z0)`` marked.

    Parameters
    ----------
    decode : callable
        Maps z, a float64 array of shape (m, latent_dim), to x of shape
        (m, d).
    z0 : array_like, shape (latent_dim,) or (1, latent_dim)
        The latent code to start from, e.g. the encoding of one data point,
        or zeros (the prior mean).
    dims : sequence of int, optional
        Latent dimensions to traverse; all of them by default.
    values : array_like, shape (k,), optional
        Values to set, default ``np.linspace(-3, 3, 9)``.
    image_shape : pair of int, optional
        (h, w) of the decoded images; inferred for square images.
    title : str, default "Latent traversals"
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_decode(decode)
    title = _check_title(title)
    z0 = np.asarray(z0)
    if z0.ndim == 2 and z0.shape[0] == 1:
        z0 = z0[0]
    if z0.ndim != 1:
        raise ValueError(f"z0 must have shape (latent_dim,) or (1, latent_dim), got {z0.shape}")
    z0 = _as_matrix("z0", z0[None, :])[0]  # (K,)
    k = len(z0)
    if dims is None:
        dims = list(range(k))
    else:
        if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
            raise TypeError(f"dims must be a sequence of ints, got {type(dims).__name__}")
        dims = list(dims)
        if not dims:
            raise ValueError("dims must name at least one latent dimension, got an empty sequence")
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
                raise TypeError(f"dims must hold ints, got {d!r}")
            if not 0 <= d < k:
                raise ValueError(f"dims must be in [0, {k}) for z0 of length {k}, got {d}")
        dims = [int(d) for d in dims]
    values = np.linspace(-3.0, 3.0, 9) if values is None else np.asarray(values)
    if values.ndim != 1 or len(values) < 1:
        raise ValueError(f"values must be 1-D and non-empty, got shape {values.shape}")
    values = _as_matrix("values", values[:, None])[:, 0]

    z = np.repeat(z0[None, :], len(dims) * len(values), axis=0)  # (len(dims) * len(values), K)
    for i, d in enumerate(dims):
        z[i * len(values) : (i + 1) * len(values), d] = values
    x = _decoded(decode, z)  # (len(dims) * len(values), d)
    shape = _image_shape(x.shape[1], image_shape, name="decode(z)")
    rows = [x[i * len(values) : (i + 1) * len(values)] for i in range(len(dims))]
    if shape is None:
        fig = _new_figure(5.5, 4.5)
        ax = fig.add_subplot()
        for d, row in zip(dims, rows, strict=True):
            ax.plot(row[:, 0], row[:, 1], marker="o", markersize=3, linewidth=1.0, label=f"z[{d}]")
        start = _decoded(decode, z0[None, :])[0]
        ax.scatter(*start, marker="*", s=150, color="k", zorder=4, label="decode(z0)")
        ax.legend(loc="best", fontsize="small", title="varied dimension")
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
        ax.set_aspect("equal", adjustable="datalim")
    else:
        h, w = shape
        fig = _new_figure(*_tile_width(len(values), h, w, len(dims)))
        ax = fig.add_subplot()
        _show_mosaic(
            fig,
            ax,
            rows,
            h,
            w,
            [f"z[{d}]" for d in dims],
            col_labels=[f"{v:g}" for v in values],
            xlabel="value of the varied dimension",
        )
    ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------
# training curves

_CURVE_PANELS = (  # (attribute, panel title, y label)
    ("loss", "Loss (negative ELBO)", "loss per example"),
    ("recon", "Reconstruction term", "reconstruction loss per example"),
    ("kl", "KL term", "KL(q(z|x) || p(z)) per example"),
)


def _history_field(hist, name):
    """hist.name or hist[name] as a 1-D float array, or None when absent."""
    if isinstance(hist, Mapping):
        value = hist.get(name)
    else:
        value = getattr(hist, name, None)
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"hist.{name} must be 1-D (one value per epoch), got shape {arr.shape}")
    return arr


def curves(hist, title="Training curves"):
    """Loss, reconstruction term and KL term per epoch, in three panels.

    Parameters
    ----------
    hist : object or mapping
        Training history with 1-D array attributes (or keys) ``loss``,
        ``recon`` and ``kl`` of equal length, one value per epoch. If it
        also has ``val_loss``, ``val_recon`` or ``val_kl`` of the same
        length (``fit(..., validation_data=...)`` records them), they are
        drawn dashed in the training curve's colour as "validation"; empty
        ones are ignored. If it has ``beta``
        (as :class:`vaecore.History` does) and beta is not 1 in every
        epoch, the loss panel is titled "Loss (recon + beta KL)" rather
        than "Loss (negative ELBO)", which it then is not.
    title : str, default "Training curves"
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    title = _check_title(title)
    series = {}
    for key, _, _ in _CURVE_PANELS:
        arr = _history_field(hist, key)
        if arr is None:
            raise ValueError(
                f"hist must have a {key!r} attribute or key (one value per epoch), "
                f"got {type(hist).__name__} without it"
            )
        series[key] = arr
    lengths = {len(a) for a in series.values()}
    if len(lengths) != 1:
        got = [len(series[k]) for k, _, _ in _CURVE_PANELS]
        raise ValueError(f"hist.loss, hist.recon and hist.kl must have the same length, got lengths {got}")
    n_epochs = lengths.pop()
    if n_epochs < 1:
        raise ValueError("hist holds no epochs: loss, recon and kl are empty")
    epochs = np.arange(1, n_epochs + 1)
    panels = list(_CURVE_PANELS)
    beta = _history_field(hist, "beta")
    if beta is not None and len(beta) == n_epochs and np.any(beta != 1.0):
        panels[0] = ("loss", "Loss (recon + beta KL)", panels[0][2])  # the negative ELBO only when beta = 1
    fig = _new_figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    marker = "o" if n_epochs <= 30 else None  # markers only while they do not crowd
    for ax, (key, label, ylabel) in zip(axes, panels, strict=True):
        (train,) = ax.plot(epochs, series[key], marker=marker, markersize=3, label="train")
        val = _history_field(hist, "val_" + key)
        if val is not None and len(val):   # a History without validation data has empty val_* arrays
            if len(val) != n_epochs:
                raise ValueError(f"hist.val_{key} must have {n_epochs} values like hist.{key}, got {len(val)}")
            ax.plot(epochs, val, linestyle="--", marker=marker, markersize=3, color=train.get_color(),
                    label="validation")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(loc="best", fontsize="small")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    return fig
