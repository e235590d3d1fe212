"""Data sets for vaecore: small, deterministic and offline unless asked.

Every function here returns NumPy arrays and downloads nothing unless asked
(``fashion_mnist(download=True)``; no test and no default path uses the network).

Toy data in 2-D (float64 points, useful for watching a 2-D latent space)
    - :func:`two_spirals` -- two interleaved spirals, with the position
      along the spiral as a continuous label.
    - :func:`moons` -- two interleaving half circles.
    - :func:`rings` -- concentric circles.
    - :func:`gaussian_mixture` -- Gaussian blobs placed on a circle.

Images (float32, one flattened image per row)
    - :func:`digits` -- scikit-learn's bundled 8x8 handwritten digits
      (1,797 images; ships inside scikit-learn).
    - :func:`fashion_mnist` -- Fashion-MNIST, 28x28 grey-scale clothing
      (Xiao, Rasul & Vollgraf 2017), read from local IDX files (Debian's
      ``dataset-fashion-mnist`` package, or a folder of your own), or
      downloaded once with ``download=True`` and checked against
      :data:`FASHION_MNIST_SHA256`.
    - :func:`shapes` -- a procedurally generated dSprites-like set of binary
      images with known, independent generative factors (after Matthey,
      Higgins, Hassabis & Lerchner 2017, "dSprites: Disentanglement testing
      Sprites dataset"), for disentanglement metrics such as
      :func:`vaecore.metrics.mig`.

File format helper
    - :func:`load_idx` -- reads any IDX file (the MNIST file format),
      gzip-compressed or not.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ._checks import check_int, check_real, check_seed

__all__ = [
    "two_spirals",
    "moons",
    "rings",
    "gaussian_mixture",
    "ring_of_gaussians",
    "digits",
    "load_idx",
    "fashion_mnist",
    "FASHION_MNIST_URL",
    "FASHION_MNIST_SHA256",
    "shapes",
]


_MAX_SIZE = np.iinfo(np.intp).max  # a count or a size must fit an array's dimension


def _split_counts(n, parts):
    """Split n into ``parts`` near-equal counts (int64); the first ones get the extras."""
    base, extra = divmod(n, parts)
    counts = np.full(parts, base, dtype=np.int64)  # an impossible number of parts fails here, at once
    counts[:extra] += 1
    return counts


# ---------------------------------------------------------------------------
# 2-D toy data


def two_spirals(n=2000, noise=0.03, turns=1.5, seed=0):
    """Two interleaved spirals in the plane.

    Arm 0 is the curve ``r(t) = 0.05 + 0.95 t``, ``theta(t) = 2 pi turns t``
    for ``t`` in [0, 1]; arm 1 is arm 0 rotated by pi. The radius starts at
    0.05 rather than 0 so that the two arms do not meet at the centre, and
    ends at 1, so noise-free points lie in the unit disc. The parameters
    ``t`` are drawn so that points are uniformly dense along the arc length
    of the curve (not uniform in ``t``, which would crowd the centre): the
    arc length is integrated numerically on a fine grid and inverted by
    linear interpolation. Rows are shuffled, so any prefix of ``X`` mixes
    both arms.

    Parameters
    ----------
    n : int, default 2000
        Number of points, >= 2. Arm 0 gets ``n - n // 2`` points, arm 1 gets
        ``n // 2`` (so arm 0 gets the extra point when ``n`` is odd).
    noise : float, default 0.03
        Standard deviation of the isotropic Gaussian noise added to ``X``,
        >= 0.
    turns : float, default 1.5
        Number of full turns of each arm, > 0.
    seed : int, default 0
        Seed for ``np.random.default_rng``; the same seed gives the same
        arrays.

    Returns
    -------
    X : ndarray of float64, shape (n, 2)
        The points.
    t : ndarray of float64, shape (n,)
        Position along the spiral in [0, 1] (0 at the centre, 1 at the outer
        end); the noise-free radius is ``0.05 + 0.95 t``.
    arm : ndarray of int64, shape (n,)
        Which arm each point belongs to, 0 or 1.

    Examples
    --------
    >>> X, t, arm = two_spirals(n=500, seed=1)
    >>> X.shape, t.shape, arm.shape
    ((500, 2), (500,), (500,))
    """
    n = check_int(n, "n", low=2, high=_MAX_SIZE)
    noise = check_real(noise, "noise")
    turns = check_real(turns, "turns", allow_equal=False)
    if turns > 1e6:  # (2 pi turns)^2 must not overflow; the 4097-point arc-length grid is useless far earlier
        raise ValueError(f"turns must be <= 1e6, got {turns}")
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)

    r0 = 0.05
    omega = 2.0 * np.pi * turns  # d theta / d t
    # arc length s(t) on a fine grid: ds/dt = sqrt(r'(t)^2 + (r(t) theta'(t))^2)
    grid = np.linspace(0.0, 1.0, 4097)
    speed = np.sqrt((1.0 - r0) ** 2 + ((r0 + (1.0 - r0) * grid) * omega) ** 2)
    s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(grid))])
    s /= s[-1]  # normalised arc length, 0 .. 1

    counts = _split_counts(n, 2)  # arm 0 first, so it gets the extra point
    arm = np.repeat(np.arange(2, dtype=np.int64), counts)  # (n,)
    u = rng.random(n)  # uniform in arc length
    t = np.interp(u, s, grid)  # (n,) invert s(t)
    radius = r0 + (1.0 - r0) * t
    theta = omega * t + np.pi * arm  # arm 1 is arm 0 rotated by pi
    X = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)  # (n, 2)
    X += noise * rng.standard_normal((n, 2))

    order = rng.permutation(n)
    return X[order], t[order], arm[order]


def moons(n=2000, noise=0.05, seed=0):
    """Two interleaving half circles ("moons").

    Moon 0 is the upper half of the unit circle centred at (0, 0); moon 1 is
    the lower half of the unit circle centred at (1, 0.5), the classic
    layout. Both are then shifted by (-0.5, -0.25) so the data set is centred
    near the origin. Angles are drawn uniformly, Gaussian noise is added, and
    rows are shuffled.

    Parameters
    ----------
    n : int, default 2000
        Number of points, >= 2; moon 0 gets ``n - n // 2``, moon 1 gets
        ``n // 2``.
    noise : float, default 0.05
        Standard deviation of the Gaussian noise added to ``X``, >= 0.
    seed : int, default 0
        Seed for ``np.random.default_rng``.

    Returns
    -------
    X : ndarray of float64, shape (n, 2)
        The points.
    y : ndarray of int64, shape (n,)
        Which moon each point belongs to, 0 or 1.
    """
    n = check_int(n, "n", low=2, high=_MAX_SIZE)
    noise = check_real(noise, "noise")
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)

    y = np.repeat(np.arange(2, dtype=np.int64), _split_counts(n, 2))  # (n,)
    angle = np.pi * rng.random(n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    X = np.where((y == 0)[:, None], upper, lower) - np.array([0.5, 0.25])  # (n, 2)
    X += noise * rng.standard_normal((n, 2))

    order = rng.permutation(n)
    return X[order], y[order]


def rings(n=2000, noise=0.03, n_rings=2, seed=0):
    """Concentric circles centred at the origin.

    Ring ``i`` (0-based) has radius ``(i + 1) / n_rings``, so the outer ring
    is the unit circle. Each ring gets the same number of points (the first
    rings get one more when ``n`` is not divisible), at uniformly drawn
    angles; Gaussian noise is added and rows are shuffled.

    Parameters
    ----------
    n : int, default 2000
        Number of points, >= ``n_rings``.
    noise : float, default 0.03
        Standard deviation of the Gaussian noise added to ``X``, >= 0.
    n_rings : int, default 2
        Number of rings, >= 1.
    seed : int, default 0
        Seed for ``np.random.default_rng``.

    Returns
    -------
    X : ndarray of float64, shape (n, 2)
        The points.
    y : ndarray of int64, shape (n,)
        Ring index of each point, in ``0 .. n_rings - 1`` (0 is innermost).
    """
    n_rings = check_int(n_rings, "n_rings", low=1, high=_MAX_SIZE)
    n = check_int(n, "n", low=n_rings, high=_MAX_SIZE)
    noise = check_real(noise, "noise")
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)

    y = np.repeat(np.arange(n_rings, dtype=np.int64), _split_counts(n, n_rings))  # (n,)
    radius = (y + 1) / n_rings
    angle = 2.0 * np.pi * rng.random(n)
    X = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
    X += noise * rng.standard_normal((n, 2))

    order = rng.permutation(n)
    return X[order], y[order]


def gaussian_mixture(n=2000, k=8, radius=1.0, std=0.05, seed=0):
    """Isotropic Gaussian blobs with their means evenly spaced on a circle.

    Component ``j`` has mean ``radius * (cos(2 pi j / k), sin(2 pi j / k))``
    and covariance ``std**2 * I``. Each component gets the same number of
    points (the first ones get one more when ``n`` is not divisible by
    ``k``); rows are shuffled.

    Parameters
    ----------
    n : int, default 2000
        Number of points, >= ``k``.
    k : int, default 8
        Number of components, >= 1.
    radius : float, default 1.0
        Radius of the circle carrying the means, >= 0.
    std : float, default 0.05
        Standard deviation of each component, >= 0.
    seed : int, default 0
        Seed for ``np.random.default_rng``.

    Returns
    -------
    X : ndarray of float64, shape (n, 2)
        The points.
    y : ndarray of int64, shape (n,)
        Component index of each point, in ``0 .. k - 1``.
    """
    k = check_int(k, "k", low=1, high=_MAX_SIZE)
    n = check_int(n, "n", low=k, high=_MAX_SIZE)
    radius = check_real(radius, "radius")
    std = check_real(std, "std")
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)

    y = np.repeat(np.arange(k, dtype=np.int64), _split_counts(n, k))  # (n,)
    angle = 2.0 * np.pi * y / k
    X = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
    X += std * rng.standard_normal((n, 2))

    order = rng.permutation(n)
    return X[order], y[order]


def ring_of_gaussians(n=2000, modes=8, radius=2.0, std=0.02, seed=0):
    """The ring of Gaussians of Metz et al. 2017 ("Unrolled Generative Adversarial Networks").

    The benchmark of mode collapse: ``modes`` narrow Gaussians with means
    ``radius * (cos(2 pi j / modes), sin(2 pi j / modes))`` and standard
    deviation ``std``. It is :func:`gaussian_mixture` with that paper's
    defaults (8 modes on a circle of radius 2, std 0.02); the same seed gives
    the same arrays as ``gaussian_mixture(n, modes, radius, std, seed)``.
    Measure a model on it with :func:`vaecore.metrics.mode_coverage`.

    Parameters
    ----------
    n : int, default 2000
        Number of points, >= ``modes``.
    modes : int, default 8
        Number of Gaussians, >= 1.
    radius : float, default 2.0
        Radius of the circle of means, >= 0.
    std : float, default 0.02
        Standard deviation of each Gaussian, >= 0.
    seed : int, default 0
        Seed for ``np.random.default_rng``.

    Returns
    -------
    X : ndarray of float64, shape (n, 2)
    mode : ndarray of int64, shape (n,)
        The Gaussian each point was drawn from, in ``0 .. modes - 1``.

    Examples
    --------
    >>> X, mode = ring_of_gaussians(800, seed=1)
    >>> X.shape, int(mode.max())
    ((800, 2), 7)
    """
    modes = check_int(modes, "modes", low=1, high=_MAX_SIZE)
    return gaussian_mixture(n, modes, radius, std, seed)


# ---------------------------------------------------------------------------
# images


_DIGITS_N_TRAIN = 1500


def _check_split(split, allowed):
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, one of {allowed}, got {type(split).__name__} ({split!r})")
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")
    return split


def digits(split="train"):
    """scikit-learn's bundled 8x8 handwritten digits, scaled to [0, 1].

    The 1,797 images come with scikit-learn (``sklearn.datasets.load_digits``
    reads them from the installed package; nothing is downloaded). Pixel
    values 0..16 are divided by 16. The split is fixed: the images are
    permuted with ``np.random.default_rng(0).permutation``, the first 1,500
    form ``"train"`` and the remaining 297 form ``"test"``.

    Parameters
    ----------
    split : {"train", "test", "all"}, default "train"
        Which part to return; ``"all"`` gives all 1,797 images in the
        original order.

    Returns
    -------
    X : ndarray of float32, shape (n, 64)
        Images flattened row by row (reshape to (n, 8, 8)), values in [0, 1].
    y : ndarray of int64, shape (n,)
        Digit labels 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    split = _check_split(split, ("train", "test", "all"))
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        # not `pip install 'vaecore[test]'`: for an installed vaecore that brings pytest and the like, and
        # only by chance scikit-learn; from a source checkout the editable install with the extra does
        raise ImportError(
            "vaecore.datasets.digits needs scikit-learn, which ships the digits images: "
            "pip install scikit-learn (or, from a vaecore source checkout, pip install -e '.[test]')"
        ) from exc
    bunch = load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)  # (1797, 64)
    y = np.asarray(bunch.target).astype(np.int64)  # (1797,)
    if split == "all":
        return X, y
    order = np.random.default_rng(0).permutation(len(y))
    idx = order[:_DIGITS_N_TRAIN] if split == "train" else order[_DIGITS_N_TRAIN:]
    return X[idx], y[idx]


# IDX type codes -> big-endian NumPy dtypes (LeCun's MNIST file format)
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_idx(path):
    """Read an IDX file, the format of the MNIST and Fashion-MNIST files.

    The layout is: two zero bytes; a type code byte (0x08 uint8, 0x09 int8,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64); a byte giving the
    number of dimensions ``ndim``; ``ndim`` big-endian uint32 sizes; then
    the data, big-endian, in C (row-major) order. A gzip-compressed file is
    recognised by its magic bytes (1f 8b), whatever its name.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    ndarray
        A new, writable, native-endian array with the file's dtype and shape.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a well-formed IDX file: bad magic bytes, unknown
        type code, zero dimensions, a header cut short, fewer or more data
        bytes than the sizes call for, or a corrupt gzip stream. The message
        names the file and the problem.
    TypeError
        If ``path`` is not a str or os.PathLike.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} ({path!r})")
    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError for a missing file
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from exc

    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file: only {len(raw)} bytes, the header needs at least 4")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: bad magic, expected the first two bytes 00 00, got {raw[:2].hex(' ')}"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}, expected one of {known}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header gives 0 dimensions, expected at least 1")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"the file has {len(raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header_len
    if got < expected:
        raise ValueError(
            f"{path}: truncated IDX data: shape {shape} of {dtype.newbyteorder('=').name} needs "
            f"{expected} data bytes, the file has {got}"
        )
    if got > expected:
        raise ValueError(
            f"{path}: IDX file too long: shape {shape} of {dtype.newbyteorder('=').name} needs "
            f"{expected} data bytes, the file has {got} ({got - expected} extra)"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header_len)
    return data.reshape(shape).astype(dtype.newbyteorder("="))  # copies: writable, native order


_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

#: Where ``fashion_mnist(download=True)`` fetches ``<name>.gz`` from: the download location named in
#: Zalando's README (github.com/zalandoresearch/fashion-mnist, "Get the Data"; the same README ships
#: in Debian's dataset-fashion-mnist as /usr/share/doc/dataset-fashion-mnist/README.md.gz).
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

#: SHA-256 of each file's decompressed content (the IDX bytes, not the .gz: Debian's package holds
#: the same content recompressed, so only this digest is shared by both copies). Computed from
#: Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 with `zcat FILE.gz | sha256sum`.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

_CHUNK = 1 << 16  # bytes read at a time while downloading and hashing


def _fashion_root(root):
    """The folder downloads go to: ``root``, else $VAECORE_DATA, else ~/.cache/vaecore."""
    if root is not None:
        return Path(root)
    if os.environ.get("VAECORE_DATA"):
        return Path(os.environ["VAECORE_DATA"])
    return Path.home() / ".cache" / "vaecore"


def _fashion_candidate_dirs(root, system):
    """The directories fashion_mnist looks in, in order: root, root/fashion-mnist, then Debian's."""
    dirs = [root, root / "fashion-mnist"]
    return dirs + [Path(_FASHION_SYSTEM_DIR)] if system else dirs


def _find_file(directory, stem):
    """Return directory/stem or directory/stem.gz, whichever exists, else None."""
    for name in (stem, stem + ".gz"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _content_sha256(path):
    """SHA-256 of a file's content, decompressed first if it is gzip data."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(stem, directory):
    """Fetch FASHION_MNIST_URL + stem + ".gz" into directory, verified, atomically; returns the path.

    The bytes go to a hidden temporary file in ``directory``, which is renamed
    to ``stem.gz`` only once its decompressed content matches
    FASHION_MNIST_SHA256[stem]; on any failure it is removed, so a download
    either leaves the whole, verified file or nothing.
    """
    import http.client
    import tempfile
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    url = FASHION_MNIST_URL + stem + ".gz"
    final = directory / (stem + ".gz")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".part")
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                size = response.headers.get("Content-Length")
                size = int(size) if size else None
                got = 0
                with tqdm(total=size, unit="B", unit_scale=True, desc=final.name, leave=False) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                if size is not None and got != size:  # read(amt) returns b"" on a cut connection, raising nothing
                    raise http.client.IncompleteRead(b"", size - got)
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts, cut connections
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # an HTTPError holds the response, and so the socket, open
            raise OSError(f"could not download Fashion-MNIST file {url}: {exc!r}; nothing was written") from exc
        try:
            got = _content_sha256(tmp)
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated gzip stream
            raise ValueError(f"downloaded {url} is not valid gzip data ({exc}); nothing was written") from exc
        if got != FASHION_MNIST_SHA256[stem]:
            raise ValueError(
                f"downloaded {url} is corrupt: the SHA-256 of its content is {got}, expected "
                f"{FASHION_MNIST_SHA256[stem]} (FASHION_MNIST_SHA256); nothing was written"
            )
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def fashion_mnist(split="train", download=False, root=None, *, path=None):
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), read from IDX files, downloaded if asked.

    60,000 training and 10,000 test grey-scale images of 28x28 pixels, in
    ten clothing classes (0 T-shirt/top, 1 trouser, 2 pullover, 3 dress,
    4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot). The two
    files of the split are read from the first of these directories that
    holds both:

    1. ``root`` and ``root/fashion-mnist``, where ``root`` defaults to
       ``$VAECORE_DATA`` if set, else ``~/.cache/vaecore``;
    2. ``/usr/share/datasets/fashion-mnist``, where Debian's
       ``dataset-fashion-mnist`` package installs them.

    The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with or
    without a ``.gz`` suffix. Nothing is downloaded unless ``download=True``:
    then, if the split's files are in none of these places, the four ``.gz``
    files are fetched from :data:`FASHION_MNIST_URL` into
    ``root/fashion-mnist`` with a progress bar, each checked against
    :data:`FASHION_MNIST_SHA256` (of the decompressed content) and renamed
    into place only when whole and correct.

    Parameters
    ----------
    split : {"train", "test"}, default "train"
        Which part to return.
    download : bool, default False
        Fetch the files if they are not found.
    root : str or os.PathLike, optional
        The folder to look in first and to download into.
    path : str or os.PathLike, optional
        The former name of ``root`` (keyword only), with the former
        meaning: the files are read from ``path`` or ``path/fashion-mnist``
        only, never from Debian's folder. Not together with ``root``.

    Returns
    -------
    X : ndarray of float32, shape (n, 784)
        Images flattened row by row (reshape to (n, 28, 28)), pixel values
        divided by 255, so in [0, 1].
    y : ndarray of int64, shape (n,)
        Class labels 0..9.

    Raises
    ------
    FileNotFoundError
        If no searched directory holds both files and ``download`` is False;
        the message lists where it looked and the three ways to get the
        files.
    OSError
        If a download fails (no connection, HTTP error, connection cut).
    ValueError
        If a downloaded file does not match its SHA-256, or the files are
        malformed or inconsistent (see :func:`load_idx`), e.g. the images
        are not 28x28 uint8 or the image and label counts differ.
    """
    split = _check_split(split, ("train", "test"))
    if download is not True and download is not False:
        raise TypeError(f"download must be True or False, got {type(download).__name__} ({download!r})")
    for name, value in (("root", root), ("path", path)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"{name} must be a str, os.PathLike or None, got {type(value).__name__} ({value!r})")
    if path is not None and root is not None:
        raise ValueError("give root or its former name path, not both")
    base = _fashion_root(path if path is not None else root)
    dirs = _fashion_candidate_dirs(base, system=path is None)

    def find(stems):
        for directory in dirs:
            files = [_find_file(directory, stem) for stem in stems]
            if all(f is not None for f in files):
                return files
        return None

    image_stem, label_stem = _FASHION_FILES[split]
    files = find((image_stem, label_stem))
    if files is None and download:
        for stem in [s for pair in _FASHION_FILES.values() for s in pair]:
            if find((stem,)) is None:
                _download(stem, base / "fashion-mnist")
        files = find((image_stem, label_stem))
    if files is None:
        looked = ", ".join(str(d) for d in dirs)
        raise FileNotFoundError(
            f"Fashion-MNIST {split!r} files {image_stem}[.gz] and {label_stem}[.gz] not found; looked in: {looked}. "
            "Get them in one of three ways: (1) let vaecore download them, "
            f"vaecore.datasets.fashion_mnist({split!r}, download=True) (about 30 MB into {base / 'fashion-mnist'}); "
            "(2) install Debian's package: sudo apt-get install dataset-fashion-mnist "
            f"(into {_FASHION_SYSTEM_DIR}); (3) put the four IDX files in {base} yourself "
            "(or in another folder named by root= or the VAECORE_DATA variable)."
        )
    image_file, label_file = files

    images = load_idx(image_file)  # (n, 28, 28) uint8
    labels = load_idx(label_file)  # (n,) uint8
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{image_file}: expected uint8 images of shape (n, 28, 28), got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{label_file}: expected uint8 labels of shape (n,), got {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels"
        )
    X = images.reshape(len(images), 28 * 28).astype(np.float32) / np.float32(255.0)  # (n, 784)
    return X, labels.astype(np.int64)


# ---------------------------------------------------------------------------
# procedurally generated dSprites-like shapes

_SHAPE_NAMES = ("square", "ellipse", "heart")
_SHAPES_FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")
_SHAPES_FACTOR_SIZES = (3, 6, 10, 16, 16)
# rotation symmetry of each shape: square 90 degrees, ellipse 180, heart 360
_SHAPE_PERIODS = (np.pi / 2, np.pi, 2 * np.pi)
_SHAPES_MAX_RADIUS = 0.22  # bounding radius of the largest shape, as a fraction of the image size
_SHAPES_CHUNK = 1024  # images rasterised per vectorised step (bounds the memory use)


def _inside(shape_id, u, v):
    """Boolean mask of points (u, v) inside the unit-radius shape ``shape_id``.

    (u, v) are coordinates in the shape's own frame, y pointing up, scaled so
    that every shape fits in the unit disc whatever its rotation.
    """
    if shape_id == 0:  # square of half-side 1/sqrt(2): its corners touch the unit circle
        return np.maximum(np.abs(u), np.abs(v)) <= np.float32(1.0 / np.sqrt(2.0))
    if shape_id == 1:  # ellipse with semi-axes 1 and 1/2
        return u * u + 4.0 * v * v <= 1.0
    # heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0; its smallest enclosing circle has
    # centre (0, 0.25) and radius 1.25, so map the unit disc onto that circle.
    x = 1.25 * u
    y = 1.25 * v + 0.25
    q = x * x + y * y - 1.0
    return q * q * q - x * x * y * y * y <= 0.0


def shapes(n=10000, size=32, seed=0):
    """Binary images of simple shapes with independent generative factors.

    A small, procedurally generated stand-in for dSprites (Matthey, Higgins,
    Hassabis & Lerchner 2017). Each image shows one white shape on black,
    drawn from five factors, each sampled independently and uniformly over
    its index range:

    ========  ======  ==================================================
    factor    values  meaning of index ``i``
    ========  ======  ==================================================
    shape     3       0 square, 1 ellipse, 2 heart
    scale     6       bounding radius ``(0.5 + 0.1 i) * 0.22 * size``
    rotation  10      angle ``i / 10`` of the shape's symmetry period,
                      counter-clockwise: 90 degrees for the square, 180
                      for the ellipse, 360 for the heart (so every index
                      gives a different picture)
    pos_x     16      column of the centre, evenly spaced, left to right
    pos_y     16      row of the centre, evenly spaced, top to bottom
    ========  ======  ==================================================

    Centres are evenly spaced over ``[R + 1, size - 1 - R]`` pixels, where
    ``R`` is the largest bounding radius, so every shape, at every rotation,
    lies inside the image and the one-pixel border stays black. A pixel is
    on when its centre lies inside the shape (implicit functions evaluated
    on the pixel grid with NumPy, no anti-aliasing). At 32x32 the smallest
    shapes are only a few pixels wide, so a few neighbouring scale or
    rotation values rasterise to the same image (under 0.1% of pairs that
    differ in one of those factors); at ``size=64`` none were found among
    20,000 images.

    Parameters
    ----------
    n : int, default 10000
        Number of images, >= 1.
    size : int, default 32
        Image height and width in pixels, >= 16.
    seed : int, default 0
        Seed for ``np.random.default_rng``; the same seed gives the same
        arrays.

    Returns
    -------
    X : ndarray of float32, shape (n, size * size)
        Images flattened row by row (reshape to (n, size, size)); values are
        exactly 0 or 1.
    factors : ndarray of int64, shape (n, 5)
        Factor indices, columns in the order of ``factor_names``.
    factor_names : tuple of str
        ``("shape", "scale", "rotation", "pos_x", "pos_y")``.
    """
    n = check_int(n, "n", low=1, high=_MAX_SIZE)
    size = check_int(size, "size", low=16, high=_MAX_SIZE)
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)

    factors = np.stack([rng.integers(0, k, size=n) for k in _SHAPES_FACTOR_SIZES], axis=1).astype(np.int64)  # (n, 5)

    # factor indices -> physical values, in pixels and radians
    r_max = _SHAPES_MAX_RADIUS * size
    scale_values = (0.5 + 0.1 * np.arange(_SHAPES_FACTOR_SIZES[1])) * r_max  # (6,) bounding radius
    pos_values = np.linspace(r_max + 1.0, size - 1.0 - r_max, _SHAPES_FACTOR_SIZES[3])  # (16,)
    shape_id = factors[:, 0]
    radius = scale_values[factors[:, 1]]  # (n,)
    angle = np.asarray(_SHAPE_PERIODS)[shape_id] * factors[:, 2] / _SHAPES_FACTOR_SIZES[2]  # (n,)
    cx = pos_values[factors[:, 3]]  # (n,) column coordinate of the centre
    cy = pos_values[factors[:, 4]]  # (n,) row coordinate of the centre

    centres = np.arange(size, dtype=np.float32) + np.float32(0.5)  # pixel centres
    cx, cy = cx.astype(np.float32), cy.astype(np.float32)
    radius = radius.astype(np.float32)
    X = np.empty((n, size, size), dtype=np.float32)
    for start in range(0, n, _SHAPES_CHUNK):
        sl = slice(start, min(start + _SHAPES_CHUNK, n))
        m = sl.stop - sl.start
        # offsets from the centre in units of the bounding radius, y pointing up
        dx = (centres[None, None, :] - cx[sl, None, None]) / radius[sl, None, None]  # (m, 1, size)
        dy = (cy[sl, None, None] - centres[None, :, None]) / radius[sl, None, None]  # (m, size, 1)
        cos = np.cos(angle[sl]).astype(np.float32)[:, None, None]
        sin = np.sin(angle[sl]).astype(np.float32)[:, None, None]
        # rotate the pixel grid by -angle, which rotates the shape by +angle
        u = cos * dx + sin * dy  # (m, size, size)
        v = -sin * dx + cos * dy  # (m, size, size)
        mask = np.zeros((m, size, size), dtype=bool)
        for s in range(len(_SHAPE_NAMES)):
            rows = shape_id[sl] == s
            if rows.any():
                mask[rows] = _inside(s, u[rows], v[rows])
        X[sl] = mask
    return X.reshape(n, size * size), factors, _SHAPES_FACTOR_NAMES
