"""Tests for vaecore.datasets: shapes, dtypes, ranges, determinism, file reading.

References here are computed independently of the module: arc lengths from a
fine polyline of the curve, IDX files from a small writer below, factor
independence from a plain 2-D histogram.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from vaecore import datasets

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------
# helpers


def _write_idx(path, arr, compress=False, code=None):
    """Write ``arr`` as an IDX file (big-endian), optionally gzip-compressed."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    arr = np.asarray(arr)
    if code is None:
        code = codes[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    Path(path).write_bytes(gzip.compress(payload) if compress else payload)
    return path


def _write_fake_fashion(directory, n_train=5, n_test=3, compress=True, seed=0):
    """A tiny Fashion-MNIST look-alike; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        _write_idx(directory / f"{stem}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(directory / f"{stem}-labels-idx1-ubyte{suffix}", labels, compress)
        out[split] = (images, labels)
    return out


def _mi_nats(a, b):
    """Plug-in mutual information of two integer label vectors, via a 2-D histogram."""
    joint, _, _ = np.histogram2d(a, b, bins=[np.arange(a.max() + 2), np.arange(b.max() + 2)])
    p = joint / joint.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa * pb)[nz])))


# ---------------------------------------------------------------------------
# 2-D toy data


@pytest.mark.parametrize("n", [2, 7, 2000])
def test_two_spirals_shapes_dtypes_counts(n):
    X, t, arm = datasets.two_spirals(n=n)
    assert X.shape == (n, 2) and X.dtype == np.float64
    assert t.shape == (n,) and t.dtype == np.float64
    assert arm.shape == (n,) and arm.dtype == np.int64
    assert set(np.unique(arm)) <= {0, 1}
    # n // 2 per arm, the first arm gets the extra point
    assert np.bincount(arm, minlength=2).tolist() == [n - n // 2, n // 2]
    assert t.min() >= 0.0 and t.max() <= 1.0


def test_two_spirals_noise_free_geometry():
    X, t, arm = datasets.two_spirals(n=4000, noise=0.0, turns=1.5)
    r = np.hypot(X[:, 0], X[:, 1])
    # within the unit disc, radius 0.05 + 0.95 t, exactly (up to round-off)
    assert r.max() <= 1.0 + 1e-12
    np.testing.assert_allclose(r, 0.05 + 0.95 * t, rtol=0, atol=1e-12)
    # t monotone along the radius: sorting by t sorts by radius
    assert np.all(np.diff(r[np.argsort(t)]) >= 0)
    # arm 1 is arm 0 rotated by pi: angle = 2 pi turns t + pi arm (mod 2 pi)
    angle = np.arctan2(X[:, 1], X[:, 0])
    expected = 2 * np.pi * 1.5 * t + np.pi * arm
    wrapped = np.angle(np.exp(1j * (angle - expected)))
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-9)


def test_two_spirals_arms_separable():
    # noise-free: the arms never come closer than the 0.1 gap at the centre (minus a little)
    X, _, arm = datasets.two_spirals(n=1500, noise=0.0)
    a, b = X[arm == 0], X[arm == 1]
    cross = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    assert cross.min() > 0.08
    # default noise: a point's nearest neighbour is on its own arm almost always
    X, _, arm = datasets.two_spirals(n=1500)
    d = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    agree = np.mean(arm[np.argmin(d, axis=1)] == arm)
    assert agree > 0.99


def test_two_spirals_uniform_along_arc_length():
    # fraction of points with t < 0.5 should match the arc-length fraction of
    # the first half of the curve, measured on a fine polyline
    turns = 1.5
    tt = np.linspace(0, 1, 200001)
    r = 0.05 + 0.95 * tt
    pts = np.stack([r * np.cos(2 * np.pi * turns * tt), r * np.sin(2 * np.pi * turns * tt)], 1)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0], np.cumsum(seg)]) / seg.sum()
    expected = np.interp(0.5, tt, s)  # ~0.26: the inner half of t is short
    _, t, _ = datasets.two_spirals(n=40000, noise=0.0, turns=turns)
    # binomial std with n=40000 is ~0.0022; allow 5 std
    assert abs(np.mean(t < 0.5) - expected) < 0.011
    assert expected < 0.35  # i.e. clearly not uniform in t


def test_two_spirals_noise_and_determinism():
    X0, t0, a0 = datasets.two_spirals(n=500, noise=0.0, seed=3)
    X1, t1, a1 = datasets.two_spirals(n=500, noise=0.1, seed=3)
    # same seed: same t and arms; the noise is an added perturbation of std 0.1
    np.testing.assert_array_equal(t0, t1)
    np.testing.assert_array_equal(a0, a1)
    assert 0.08 < np.std(X1 - X0) < 0.12
    X2, t2, a2 = datasets.two_spirals(n=500, noise=0.1, seed=3)
    np.testing.assert_array_equal(X1, X2)
    X3, _, _ = datasets.two_spirals(n=500, noise=0.1, seed=4)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(n=1), ValueError),
        (dict(n=2.0), TypeError),
        (dict(n=True), TypeError),
        (dict(noise=-0.1), ValueError),
        (dict(noise=float("nan")), ValueError),
        (dict(noise="0.1"), TypeError),
        (dict(turns=0), ValueError),
        (dict(turns=-1.0), ValueError),
        (dict(seed=-1), ValueError),
        (dict(seed=None), TypeError),
        (dict(seed=1.5), TypeError),
    ],
)
def test_two_spirals_validation(kwargs, exc):
    with pytest.raises(exc, match=next(iter(kwargs))):
        datasets.two_spirals(**kwargs)


def test_moons():
    X, y = datasets.moons(n=1001, noise=0.0, seed=1)
    assert X.shape == (1001, 2) and X.dtype == np.float64
    assert y.shape == (1001,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [501, 500]
    P = X + np.array([0.5, 0.25])  # undo the centring shift
    up, lo = P[y == 0], P[y == 1]
    np.testing.assert_allclose(np.hypot(up[:, 0], up[:, 1]), 1.0, atol=1e-12)
    assert up[:, 1].min() >= -1e-12  # upper half circle
    np.testing.assert_allclose(np.hypot(lo[:, 0] - 1.0, lo[:, 1] - 0.5), 1.0, atol=1e-12)
    assert lo[:, 1].max() <= 0.5 + 1e-12  # lower half circle
    np.testing.assert_array_equal(datasets.moons(n=300, seed=2)[0], datasets.moons(n=300, seed=2)[0])
    assert not np.array_equal(datasets.moons(n=300, seed=2)[0], datasets.moons(n=300, seed=5)[0])
    with pytest.raises(ValueError, match="noise"):
        datasets.moons(noise=-1)
    with pytest.raises(ValueError, match="n must be >= 2"):
        datasets.moons(n=1)


@pytest.mark.parametrize("n_rings", [1, 2, 3])
def test_rings(n_rings):
    X, y = datasets.rings(n=1000, noise=0.0, n_rings=n_rings, seed=0)
    assert X.shape == (1000, 2) and X.dtype == np.float64 and y.dtype == np.int64
    counts = np.bincount(y, minlength=n_rings)
    assert counts.sum() == 1000 and counts.max() - counts.min() <= 1
    np.testing.assert_allclose(np.hypot(X[:, 0], X[:, 1]), (y + 1) / n_rings, atol=1e-12)
    np.testing.assert_array_equal(datasets.rings(n=50, seed=1)[0], datasets.rings(n=50, seed=1)[0])


def test_rings_validation():
    with pytest.raises(ValueError, match="n_rings"):
        datasets.rings(n_rings=0)
    with pytest.raises(ValueError, match="n must be >= 3"):
        datasets.rings(n=2, n_rings=3)
    with pytest.raises(TypeError, match="n_rings"):
        datasets.rings(n_rings=2.0)


def test_gaussian_mixture():
    X, y = datasets.gaussian_mixture(n=803, k=8, radius=2.0, std=0.0, seed=0)
    assert X.shape == (803, 2) and X.dtype == np.float64 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [101, 101, 101, 100, 100, 100, 100, 100]
    angle = 2 * np.pi * y / 8
    np.testing.assert_allclose(X, 2.0 * np.stack([np.cos(angle), np.sin(angle)], 1), atol=1e-12)
    X, y = datasets.gaussian_mixture(n=8000, k=4, std=0.1, seed=0)
    centres = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=float)
    resid = X - centres[y]
    assert abs(resid.std() - 0.1) < 0.005
    np.testing.assert_array_equal(datasets.gaussian_mixture(seed=9)[0], datasets.gaussian_mixture(seed=9)[0])
    with pytest.raises(ValueError, match="k must be >= 1"):
        datasets.gaussian_mixture(k=0)
    with pytest.raises(ValueError, match="std"):
        datasets.gaussian_mixture(std=-0.1)
    with pytest.raises(ValueError, match="radius"):
        datasets.gaussian_mixture(radius=-1)


# ---------------------------------------------------------------------------
# digits


def test_digits_splits():
    pytest.importorskip("sklearn", reason="scikit-learn (the `test` extra) ships the digits images")
    X, y = datasets.digits("train")
    Xt, yt = datasets.digits("test")
    Xa, ya = datasets.digits("all")
    assert X.shape == (1500, 64) and Xt.shape == (297, 64) and Xa.shape == (1797, 64)
    for a in (X, Xt, Xa):
        assert a.dtype == np.float32 and a.min() == 0.0 and a.max() == 1.0
    for b in (y, yt, ya):
        assert b.dtype == np.int64 and set(np.unique(b)) <= set(range(10))
    # the fixed split is the seed-0 permutation of "all"
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(X, Xa[order[:1500]])
    np.testing.assert_array_equal(yt, ya[order[1500:]])
    # pixel values are 0..16 divided by 16
    np.testing.assert_array_equal(np.round(Xa * 16), Xa * 16)
    np.testing.assert_array_equal(datasets.digits()[0], X)  # default is train, deterministic


def test_digits_validation():
    with pytest.raises(ValueError, match="split"):
        datasets.digits("validation")
    with pytest.raises(TypeError, match="split"):
        datasets.digits(0)


# ---------------------------------------------------------------------------
# load_idx

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5), (1, 1, 1, 2)])
def test_load_idx_round_trip(tmp_path, dtype, compress, shape):
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.standard_normal(shape).astype(dtype)
    path = _write_idx(tmp_path / "x.idx", arr, compress)
    out = datasets.load_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable
    out_str = datasets.load_idx(str(path))  # str paths work too
    np.testing.assert_array_equal(out_str, arr)


def test_load_idx_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    plain_named_gz = _write_idx(tmp_path / "plain.gz", arr, compress=False)
    gz_named_plain = _write_idx(tmp_path / "compressed-idx2-short", arr, compress=True)
    np.testing.assert_array_equal(datasets.load_idx(plain_named_gz), arr)
    np.testing.assert_array_equal(datasets.load_idx(gz_named_plain), arr)


def test_load_idx_empty_dimension(tmp_path):
    arr = np.zeros((0, 28, 28), dtype=np.uint8)
    out = datasets.load_idx(_write_idx(tmp_path / "empty.idx", arr))
    assert out.shape == (0, 28, 28) and out.dtype == np.uint8


def _valid_idx_bytes():
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    return bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3) + arr.astype(">i4").tobytes()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated IDX data"),
        (lambda b: b + b"\x00", "too long"),
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:1] + b"\x07" + b[2:], "bad magic"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX type code 0x0A"),
        (lambda b: b[:3] + b"\x00", "0 dimensions"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b[:3], "header needs at least 4"),
        (lambda b: b"", "only 0 bytes"),
        (lambda b: gzip.compress(b)[:-12], "gzip"),
    ],
)
def test_load_idx_malformed(tmp_path, mutate, message):
    good = tmp_path / "good.idx"
    good.write_bytes(_valid_idx_bytes())
    np.testing.assert_array_equal(datasets.load_idx(good), np.arange(6).reshape(2, 3))
    bad = tmp_path / "bad-file.idx"
    bad.write_bytes(mutate(_valid_idx_bytes()))
    with pytest.raises(ValueError, match=message) as info:
        datasets.load_idx(bad)
    assert "bad-file.idx" in str(info.value)  # the message names the file


def test_load_idx_malformed_inside_gzip(tmp_path):
    bad = tmp_path / "short.gz"
    bad.write_bytes(gzip.compress(_valid_idx_bytes()[:-4]))
    with pytest.raises(ValueError, match="truncated IDX data"):
        datasets.load_idx(bad)


def test_load_idx_missing_and_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(tmp_path / "nope.idx")
    with pytest.raises(TypeError, match="path"):
        datasets.load_idx(123)


# ---------------------------------------------------------------------------
# Fashion-MNIST


def test_fashion_mnist_real_files():
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    if not all((FASHION_DIR / s).exists() or (FASHION_DIR / (s + ".gz")).exists() for s in stems):
        pytest.skip(f"Fashion-MNIST not in {FASHION_DIR}: sudo apt-get install dataset-fashion-mnist")
    X, y = datasets.fashion_mnist("test", path=FASHION_DIR)
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)  # balanced classes
    np.testing.assert_allclose(np.round(X * 255), X * 255, atol=1e-4)  # bytes / 255
    X, y = datasets.fashion_mnist("train", path=FASHION_DIR)
    assert X.shape == (60000, 784) and y.shape == (60000,)
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_fake_set_via_path(tmp_path, monkeypatch, compress):
    monkeypatch.delenv("VAECORE_DATA", raising=False)
    written = _write_fake_fashion(tmp_path, compress=compress)
    for split in ("train", "test"):
        X, y = datasets.fashion_mnist(split, path=tmp_path)
        images, labels = written[split]
        assert X.dtype == np.float32 and y.dtype == np.int64
        assert X.shape == (len(images), 784)
        np.testing.assert_allclose(X, images.reshape(len(images), -1) / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(y, labels)


def test_fashion_mnist_via_environment(tmp_path, monkeypatch):
    written = _write_fake_fashion(tmp_path / "fashion-mnist", n_test=4)  # the subdirectory form
    monkeypatch.setenv("VAECORE_DATA", str(tmp_path))
    X, y = datasets.fashion_mnist("test")
    np.testing.assert_array_equal(y, written["test"][1])
    # the directory itself also works, and path= wins over the variable
    other = _write_fake_fashion(tmp_path / "direct", n_test=2, seed=1)
    monkeypatch.setenv("VAECORE_DATA", str(tmp_path / "direct"))
    np.testing.assert_array_equal(datasets.fashion_mnist("test")[1], other["test"][1])
    np.testing.assert_array_equal(datasets.fashion_mnist("test", path=tmp_path)[1], written["test"][1])


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    """Hide Debian's copy (it may be installed here) and any VAECORE_DATA of the caller."""
    monkeypatch.setattr(datasets, "_FASHION_SYSTEM_DIR", str(tmp_path / "no-debian-copy"))
    monkeypatch.delenv("VAECORE_DATA", raising=False)


def test_fashion_mnist_missing(tmp_path, monkeypatch, no_system_copy):
    # an explicit path= (the former name of root) does not fall back to the system directory
    with pytest.raises(FileNotFoundError) as info:
        datasets.fashion_mnist("train", path=tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "no-debian-copy" not in msg.split("looked in:")[1].split(".")[0]
    # the message names all three routes, and the folder the files would go in
    routes = ("download=True", "sudo apt-get install dataset-fashion-mnist", f"put the four IDX files in {tmp_path}")
    for route in routes:
        assert route in msg, route
    assert "VAECORE_DATA" in msg
    # root= and $VAECORE_DATA: root, root/fashion-mnist, then Debian's folder
    monkeypatch.setenv("VAECORE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="looked in") as info:
        datasets.fashion_mnist("test")
    looked = info.value.args[0].split("looked in: ")[1].split(". ")[0]
    assert looked == ", ".join([str(tmp_path), str(tmp_path / "fashion-mnist"), datasets._FASHION_SYSTEM_DIR])
    # one of the two files is not enough
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        datasets.fashion_mnist("test")


def test_fashion_mnist_default_root_is_the_cache(tmp_path, monkeypatch, no_system_copy):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        datasets.fashion_mnist("test")
    assert f"looked in: {tmp_path / '.cache' / 'vaecore'}, " in str(info.value)
    written = _write_fake_fashion(tmp_path / ".cache" / "vaecore" / "fashion-mnist", n_test=2)
    np.testing.assert_array_equal(datasets.fashion_mnist("test")[1], written["test"][1])


def test_fashion_mnist_root_then_debian(tmp_path, monkeypatch, no_system_copy):
    debian = _write_fake_fashion(tmp_path / "debian", n_test=3, seed=1)
    monkeypatch.setattr(datasets, "_FASHION_SYSTEM_DIR", str(tmp_path / "debian"))
    root = tmp_path / "root"
    root.mkdir()
    np.testing.assert_array_equal(datasets.fashion_mnist("test", root=root)[1], debian["test"][1])
    mine = _write_fake_fashion(root, n_test=2, seed=2)  # root comes first
    np.testing.assert_array_equal(datasets.fashion_mnist("test", root=root)[1], mine["test"][1])
    with pytest.raises(ValueError, match="not both"):
        datasets.fashion_mnist("test", root=root, path=root)
    with pytest.raises(TypeError, match="download"):
        datasets.fashion_mnist("test", download="yes", root=root)
    with pytest.raises(TypeError, match="root"):
        datasets.fashion_mnist("test", root=3)


def test_fashion_mnist_sha256_table_matches_debian_copy():
    if not all((FASHION_DIR / (s + ".gz")).exists() for s in datasets.FASHION_MNIST_SHA256):
        pytest.skip(f"Fashion-MNIST not in {FASHION_DIR}: sudo apt-get install dataset-fashion-mnist")
    import hashlib

    for stem, want in datasets.FASHION_MNIST_SHA256.items():
        with gzip.open(FASHION_DIR / (stem + ".gz"), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == want, stem


# ---------------------------------------------------------------------------
# Fashion-MNIST download, from a local HTTP server on 127.0.0.1 (never the internet)


class _Server:
    """An http.server in a thread serving files of a folder; ``cut`` names files sent half and dropped."""

    def __init__(self, folder):
        import functools
        import http.server
        import threading

        self.requests, self.cut = [], set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.lstrip("/")
                if name in server.cut:  # promise the whole file, send half, close the connection
                    body = (Path(folder) / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path, monkeypatch, no_system_copy):
    """A fake Fashion-MNIST served on 127.0.0.1, with FASHION_MNIST_URL and _SHA256 pointing at it."""
    import hashlib

    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "server"
    written = _write_fake_fashion(folder, n_train=5, n_test=3, compress=True)
    table = {}
    for f in folder.iterdir():
        table[f.name[: -len(".gz")]] = hashlib.sha256(gzip.decompress(f.read_bytes())).hexdigest()
    server = _Server(folder)
    monkeypatch.setattr(datasets, "FASHION_MNIST_URL", server.url)
    monkeypatch.setattr(datasets, "FASHION_MNIST_SHA256", table)
    yield server, folder, written
    server.close()


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())


def test_fashion_mnist_download(tmp_path, served):
    server, folder, written = served
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="download=True"):  # nothing is fetched unless asked
        datasets.fashion_mnist("test", root=root)
    assert server.requests == []
    X, y = datasets.fashion_mnist("test", download=True, root=root)
    np.testing.assert_array_equal(y, written["test"][1])
    np.testing.assert_allclose(X, written["test"][0].reshape(3, -1) / 255.0, rtol=1e-6)
    stems = sorted(datasets.FASHION_MNIST_SHA256)
    assert _files(root) == [f"fashion-mnist/{s}.gz" for s in stems]  # all four, no temporary file left
    assert sorted(server.requests) == [f"/{s}.gz" for s in stems]
    # the files are there now: no second download, with or without download=True
    np.testing.assert_array_equal(datasets.fashion_mnist("train", download=True, root=root)[1], written["train"][1])
    np.testing.assert_array_equal(datasets.fashion_mnist("train", root=root)[1], written["train"][1])
    assert len(server.requests) == 4


def test_fashion_mnist_download_into_vaecore_data(tmp_path, served, monkeypatch):
    monkeypatch.setenv("VAECORE_DATA", str(tmp_path / "data"))
    datasets.fashion_mnist("test", download=True)
    assert len(_files(tmp_path / "data" / "fashion-mnist")) == 4


@pytest.mark.parametrize("how", ["corrupt", "not-gzip", "cut", "missing"])
def test_fashion_mnist_failed_download_leaves_nothing(tmp_path, served, how):
    server, folder, _ = served
    victim = "t10k-labels-idx1-ubyte.gz"
    if how == "corrupt":  # valid gzip, one byte of content changed
        raw = bytearray(gzip.decompress((folder / victim).read_bytes()))
        raw[-1] ^= 1
        (folder / victim).write_bytes(gzip.compress(bytes(raw)))
        exc, match = ValueError, "corrupt: the SHA-256 of its content is"
    elif how == "not-gzip":  # a tiny broken file with gzip's magic bytes
        (folder / victim).write_bytes(b"\x1f\x8b\x08garbage")
        exc, match = ValueError, "not valid gzip data"
    elif how == "cut":  # the connection drops half way
        server.cut.add(victim)
        exc, match = OSError, "could not download .*t10k-labels-idx1-ubyte.gz"
    else:
        (folder / victim).unlink()
        exc, match = OSError, "could not download .*404"
    root = tmp_path / "root"
    with pytest.raises(exc, match=match) as info:
        datasets.fashion_mnist("test", download=True, root=root)
    assert "nothing was written" in str(info.value)
    assert victim not in _files(root) and f"fashion-mnist/{victim}" not in _files(root)
    assert not [f for f in _files(root) if f.endswith(".part") or "/." in f]  # no partial file
    assert server.requests[-1] == "/" + victim  # it failed on that file and stopped there


def test_fashion_mnist_inconsistent_files(tmp_path, monkeypatch):
    monkeypatch.delenv("VAECORE_DATA", raising=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        datasets.fashion_mnist("test", path=tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 14, 14), np.uint8))
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        datasets.fashion_mnist("test", path=tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        datasets.fashion_mnist("test", path=tmp_path)
    with pytest.raises(ValueError, match="split"):
        datasets.fashion_mnist("all", path=tmp_path)
    with pytest.raises(TypeError, match="path"):
        datasets.fashion_mnist("test", path=3)


# ---------------------------------------------------------------------------
# shapes

SIZES = (3, 6, 10, 16, 16)


@pytest.fixture(scope="module")
def shapes_32():
    return datasets.shapes(n=10000, size=32, seed=0)


def test_shapes_arrays(shapes_32):
    X, factors, names = shapes_32
    assert X.shape == (10000, 32 * 32) and X.dtype == np.float32
    assert set(np.unique(X)) == {0.0, 1.0}
    assert factors.shape == (10000, 5) and factors.dtype == np.int64
    assert names == ("shape", "scale", "rotation", "pos_x", "pos_y")
    for k, size in enumerate(SIZES):  # each factor covers its whole range
        assert np.array_equal(np.unique(factors[:, k]), np.arange(size)), names[k]
    imgs = X.reshape(-1, 32, 32)
    assert imgs.sum(axis=(1, 2)).min() > 0  # every image shows something
    # shapes stay inside the image: the one-pixel border is always empty
    assert imgs[:, 0, :].sum() == 0 and imgs[:, -1, :].sum() == 0
    assert imgs[:, :, 0].sum() == 0 and imgs[:, :, -1].sum() == 0


def test_shapes_factors_independent_and_uniform(shapes_32):
    _, factors, _ = shapes_32
    n = len(factors)
    for k, size in enumerate(SIZES):
        counts = np.bincount(factors[:, k], minlength=size)
        # each count ~ Binomial(n, 1/size): within 5 standard deviations
        sd = np.sqrt(n / size * (1 - 1 / size))
        assert np.all(np.abs(counts - n / size) < 5 * sd)
    for i in range(5):
        for j in range(i + 1, 5):
            # plug-in MI of independent factors is ~ (a-1)(b-1)/(2n) nats <= 0.012 here
            assert _mi_nats(factors[:, i], factors[:, j]) < 0.025, (i, j)


def test_shapes_deterministic():
    a = datasets.shapes(n=200, seed=5)
    b = datasets.shapes(n=200, seed=5)
    c = datasets.shapes(n=200, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def _one_factor_pairs(factors, k):
    """Index pairs of rows equal in every factor but k, and different in k."""
    others = [j for j in range(5) if j != k]
    key = np.ravel_multi_index(tuple(factors[:, j] for j in others), tuple(SIZES[j] for j in others))
    order = np.lexsort((factors[:, k], key))
    same_rest = key[order][1:] == key[order][:-1]
    diff_k = factors[order, k][1:] != factors[order, k][:-1]
    pick = same_rest & diff_k
    return order[:-1][pick], order[1:][pick]


def test_shapes_images_change_with_each_factor(shapes_32):
    X, factors, names = shapes_32
    for k in range(5):
        i, j = _one_factor_pairs(factors, k)
        assert len(i) > 100, names[k]
        differ = np.any(X[i] != X[j], axis=1)
        # at 32x32 a few tiny shapes look alike at neighbouring scales/rotations (documented)
        assert differ.mean() > 0.99, names[k]
        if names[k] in ("shape", "pos_x", "pos_y"):
            assert differ.all(), names[k]
    X64, f64, _ = datasets.shapes(n=3000, size=64, seed=1)
    for k in range(5):
        i, j = _one_factor_pairs(f64, k)
        assert len(i) > 50 and np.all(np.any(X64[i] != X64[j], axis=1)), names[k]


def test_shapes_factor_meanings(shapes_32):
    X, factors, _ = shapes_32
    imgs = X.reshape(-1, 32, 32)
    area = imgs.sum(axis=(1, 2))
    rows, cols = np.arange(32)[None, :, None], np.arange(32)[None, None, :]
    cy = (imgs * rows).sum(axis=(1, 2)) / area
    cx = (imgs * cols).sum(axis=(1, 2)) / area
    # pos_x moves the shape right, pos_y moves it down
    assert np.corrcoef(factors[:, 3], cx)[0, 1] > 0.97
    assert np.corrcoef(factors[:, 4], cy)[0, 1] > 0.97
    # scale grows the area, for each shape
    for s in range(3):
        sel = factors[:, 0] == s
        mean_area = [area[sel & (factors[:, 1] == v)].mean() for v in range(6)]
        assert np.all(np.diff(mean_area) > 0), s


@pytest.mark.parametrize(
    "kwargs, exc",
    [(dict(n=0), ValueError), (dict(size=8), ValueError), (dict(size=32.0), TypeError), (dict(seed="x"), TypeError)],
)
def test_shapes_validation(kwargs, exc):
    with pytest.raises(exc, match=next(iter(kwargs))):
        datasets.shapes(**kwargs)


def test_shapes_fast():
    import time

    t0 = time.perf_counter()
    datasets.shapes(n=10000, size=32, seed=3)
    assert time.perf_counter() - t0 < 3.0


def test_module_docstring_lists_every_data_set():
    doc = datasets.__doc__
    for name in ("two_spirals", "moons", "rings", "gaussian_mixture", "digits", "fashion_mnist", "shapes", "load_idx"):
        assert name in doc
    assert "Matthey" in doc
    for name in datasets.__all__:
        assert getattr(datasets, name).__doc__, name



def test_digits_without_scikit_learn_says_what_to_install(monkeypatch):
    # None in sys.modules makes `from sklearn.datasets import ...` raise ImportError, as if not installed
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError) as info:
        datasets.digits()
    msg = str(info.value)
    assert "pip install scikit-learn" in msg and "pip install -e '.[test]'" in msg
    assert "vaecore[test]" not in msg  # installs nothing useful for someone who installed vaecore
