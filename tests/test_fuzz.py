"""Property-based tests (hypothesis): no input crashes Python, none is silently misread.

Every public function of vaecore (VAE and AE methods, the optimizers, fit,
save/load, datasets, metrics, the thread setters) and every method, property
and function of vaecore._core is called with random shapes (0, small, more rows
than the C core's 256-row chunk, impossibly large), dtypes (bool, int, float16,
float32, float64, byte-swapped floats, complex, object, str), layouts
(Fortran order, strided, negative strides, zero-stride broadcasts, read-only,
misaligned, ndarray subclasses, nested lists), arrays that alias each other or
the model's own buffers (params, optimizer state), NaN/Inf, huge values and
wrong types.

The rule each call is held to: it either works, and then its result is the
result of the same call on a clean copy of the input (a C-contiguous array of
the model's dtype; bitwise, since the same C code runs on the same numbers)
and it left its inputs alone; or it raises TypeError, ValueError, MemoryError
or FloatingPointError with a message, changing nothing. Which of the two is
decided independently of the code under test (`clean` and `core_ready` below
restate the documented contract), so a function that refused good input, or
accepted bad input, fails here. The low-level vaecore._core may also raise
OverflowError for an int beyond its C type (CPython's argument parser says
"signed integer is greater than maximum"); the public API never does.

Deterministic (derandomize=True, no example database) and bounded: a few
dozen examples per property, the whole file in about 20 s.
"""
import math
import os
import pathlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaecore
from vaecore import _core, datasets, metrics

ALLOWED = (TypeError, ValueError, MemoryError, FloatingPointError)
CORE_ALLOWED = ALLOWED + (OverflowError,)

D, K = 4, 2                      # every fuzzed model: 4 -> 5 -> (2, 2) -> 5 -> 4
CONFIGS = [(cls, lik, dt) for cls in (vaecore.VAE, vaecore.AE) for lik in ("gaussian", "bernoulli")
           for dt in ("float32", "float64")]


def fuzz(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def make(cls=vaecore.VAE, lik="gaussian", dt="float64", seed=1):
    return cls(D, K, hidden=(5,), likelihood=lik, dtype=dt, seed=seed)


def attempt(fn, *args, allowed=ALLOWED, **kwargs):
    """(True, result) or (False, exception) for an allowed exception with a message; anything else propagates."""
    try:
        return True, fn(*args, **kwargs)
    except allowed as e:
        assert str(e).strip(), f"{type(e).__name__} raised without a message"
        return False, e


def same(a, b):
    """Bitwise equality of results: arrays (dtype, shape, bytes, NaN included), tuples, dicts, floats."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    return a == b


# ------------------------------------------------------------------ inputs
class Sub(np.ndarray):
    """An ndarray subclass: passes PyArray_Check like the real thing."""


DTYPES = ["float64"] * 4 + ["float32"] * 4 + ["float16", "int8", "int64", "uint8", "bool", ">f8", ">f4",
                                              "complex128", "object", "<U3"]
LAYOUTS = ["C"] * 6 + ["F", "rows2", "cols2", "neg", "broadcast", "readonly", "unaligned", "subclass", "list",
                       "1d", "3d", "scalar"]
VALUES = ["unit"] * 4 + ["normal"] * 3 + ["nan", "inf", "huge", "negative"]


def build(n, d, dtype, layout, values, seed):
    """An (n, d) input of the given dtype, memory layout and values (or a deliberately wrong-shaped one)."""
    rng = np.random.default_rng(seed)
    base = rng.random((n, d)) if values == "unit" else rng.normal(size=(n, d)) * 2
    if values == "negative":
        base = -np.abs(base) - 0.5          # outside [0, 1]: bad targets for a Bernoulli model
    if values in ("nan", "inf", "huge") and base.size:
        base.flat[rng.integers(base.size)] = {"nan": np.nan, "inf": -np.inf, "huge": 1e300}[values]
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            base = np.nan_to_num(np.round(base), posinf=100, neginf=-100).clip(-100, 100)
        a = base.astype(dtype)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "rows2":
        return np.repeat(a, 2, axis=0)[::2]
    if layout == "cols2":
        return np.repeat(a, 2, axis=1)[:, ::2]
    if layout == "neg":
        return a[::-1, ::-1]
    if layout == "broadcast":
        return np.broadcast_to(a[:1], a.shape) if n else a
    if layout == "readonly":
        a.flags.writeable = False
        return a
    if layout == "unaligned" and a.dtype.kind != "O" and a.dtype.itemsize > 1:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        out = buf[1:].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out
    if layout == "subclass":
        return a.view(Sub)
    if layout == "list":
        return a.tolist()
    if layout == "1d":
        return a.ravel()
    if layout == "3d":
        return a[..., None]
    if layout == "scalar":
        return a.flat[0] if a.size else 1.5
    return a


WRONG = [None, "abc", 3, 2.5, b"xx", {"a": 1}, [[1, 2], [3]], [[]], object(), np.float64(1.0), (1, 2, 3, 4),
         [[1.0, "a", 2.0, 3.0]], [[2**70, 1, 2, 3]], np.datetime64("2020-01-01")]


@st.composite
def matrices(draw, cols, rows=None):
    """Mostly (n, cols) arrays of assorted dtypes, layouts and values; sometimes the wrong shape or type."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(WRONG))
    if rows is None:
        n = draw(st.sampled_from([1, 2, 3, 8, 8, 300, 0]))
    else:
        n = draw(st.sampled_from([rows] * 6 + [rows + 1, 0]))
    d = draw(st.sampled_from([cols] * 8 + [cols + 1, cols - 1, 0]))
    return build(n, d, draw(st.sampled_from(DTYPES)), draw(st.sampled_from(LAYOUTS)),
                 draw(st.sampled_from(VALUES)), draw(st.integers(0, 2**32 - 1)))


def alias_of(draw, buffers, cols, rows=None):
    """A view into one of the given buffers (the model's params, an optimizer state) shaped (n, cols)."""
    buf = draw(st.sampled_from(buffers))
    n = rows if rows is not None else draw(st.integers(1, max(1, buf.size // cols)))
    if n * cols > buf.size:
        return buf[: (buf.size // cols) * cols].reshape(-1, cols)
    return buf[:n * cols].reshape(n, cols)


def clean(a, dtype, cols, rows=None):
    """The contract of every array argument of the Python API: what it must be converted to (a C-contiguous
    (rows, cols) array of the model's dtype), or None when the call must be refused."""
    try:
        arr = np.asarray(a)
    except Exception:
        return None
    if arr.dtype.kind not in "biuf":
        return None
    with np.errstate(all="ignore"):
        arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.ndim != 2 or arr.shape[1] != cols or arr.shape[0] == 0 or (rows is not None and arr.shape[0] != rows):
        return None
    return arr


def core_ready(a, dtype, cols, rows=None):
    """The contract of vaecore._core: only the exact thing, never a conversion."""
    return (isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype) and a.flags.c_contiguous
            and a.flags.aligned and a.ndim == 2 and a.shape[1] == cols and a.shape[0] >= 1
            and (rows is None or a.shape[0] == rows))


def finite(a):
    return a is not None and bool(np.isfinite(a).all())


def targets_ok(m, a):
    return finite(a) and (m.likelihood == "gaussian" or bool(((a >= 0) & (a <= 1)).all()))


def snapshot(a):
    return a.copy() if isinstance(a, np.ndarray) and a.dtype.kind != "O" else None


def untouched(a, snap):
    return snap is None or (a.tobytes() == snap.tobytes() and a.dtype == snap.dtype)


configs = st.sampled_from(CONFIGS)
betas = st.sampled_from([0.0, 0.5, 1, 2.0, np.float32(0.3), -1.0, float("nan"), float("inf"), "1", None, True,
                         1 + 0j])


def beta_ok(b):
    return (not isinstance(b, bool) and isinstance(b, (int, float, np.floating))
            and math.isfinite(float(b)) and float(b) >= 0)


# ------------------------------------------------------------- VAE / AE
def check_forward(m, which, a):
    """encode / reconstruct / decode / decode_logits of a: works as on the clean copy, or refuses."""
    cols = D if which in ("encode", "reconstruct") else K
    snap, before = snapshot(a), m.params.copy()
    ok, out = attempt(getattr(m, which), a)
    c = clean(a, m.dtype, cols)
    assert ok == finite(c), (which, a, out)
    if ok:
        assert same(out, getattr(m, which)(c))
    assert untouched(a, snap) and m.params.tobytes() == before.tobytes()


def check_loss(m, which, x, eps, beta):
    """loss / loss_and_grad: works as on clean copies (same noise), or refuses."""
    cx = clean(x, m.dtype, D)
    n = cx.shape[0] if cx is not None else 3
    ce = None if eps is None else clean(eps, m.dtype, K, rows=n)
    state, before = m.rng_state, m.params.copy()
    ok, out = attempt(getattr(m, which), x, beta=beta, eps=eps)
    eps_ok = eps is None if not m._variational else (eps is None or finite(ce))
    assert ok == (targets_ok(m, cx) and beta_ok(beta) and eps_ok), (which, x, eps, beta, out)
    if ok:
        after = m.rng_state
        m.rng_state = state
        assert same(out, getattr(m, which)(cx, beta=beta, eps=ce)) and m.rng_state == after
    # (a refused call with eps=None may have drawn its noise already: the generator is not part of "nothing")
    assert m.params.tobytes() == before.tobytes()


def check_reparameterize(m, mu, logvar, eps):
    cm = clean(mu, m.dtype, K)
    n = cm.shape[0] if cm is not None else 3
    state = m.rng_state
    ok, z = attempt(m.reparameterize, mu, logvar, eps)
    if not m._variational:
        assert ok == (cm is not None and logvar is None and eps is None), (mu, logvar, eps, z)
        if ok:
            assert same(z, cm) and not np.shares_memory(z, mu)
        return
    cl, ce = clean(logvar, m.dtype, K, rows=n), None if eps is None else clean(eps, m.dtype, K, rows=n)
    assert ok == (finite(cm) and finite(cl) and (eps is None or finite(ce))), (mu, logvar, eps, z)
    if ok:
        m.rng_state = state
        assert same(z, m.reparameterize(cm, cl, ce))
        if eps is not None:   # the formula by NumPy in the model's dtype, to 4 ulp of its terms (exp may differ)
            with np.errstate(over="ignore", invalid="ignore"):
                spread = np.exp(cl * m.dtype.type(0.5)) * ce
                expect, scale = cm + spread, np.abs(cm) + np.abs(spread)
            fin = np.isfinite(expect)
            assert np.array_equal(np.isfinite(z), fin)
            assert np.all(np.abs(z[fin] - expect[fin]) <= 4 * np.finfo(m.dtype).eps * scale[fin])


def twin(m, opt):
    """An independent copy of a model and its optimizer, state included."""
    c = m.config
    m2 = type(m)(c["input_dim"], c["latent_dim"], c["hidden"], decoder_hidden=c["decoder_hidden"],
                 activation=c["activation"], likelihood=c["likelihood"], dtype=c["dtype"], seed=c["seed"])
    m2.params[...] = m.params
    m2.rng_state = m.rng_state
    if isinstance(opt, vaecore.Adam):
        o2 = vaecore.Adam(m2, lr=opt.lr, betas=opt.betas, eps=opt.eps, clip_norm=opt.clip_norm)
    else:
        o2 = vaecore.SGD(m2, opt.lr, momentum=opt.momentum, clip_norm=opt.clip_norm)
    for key, arr in opt._arrays().items():
        getattr(o2, key)[...] = arr
    o2.t = opt.t
    return m2, o2


def state_of(m, opt):
    """Parameters, optimizer state and step count (the noise generator apart)."""
    return (m.params.tobytes(), opt.t, *(a.tobytes() for a in opt._arrays().values()))


def trained(cfg, adam):
    m = make(*cfg)
    opt = vaecore.Adam(m, lr=1e-2) if adam else vaecore.SGD(m, 0.1, momentum=0.5, clip_norm=1.0)
    m.train_step(np.full((2, D), 0.5), opt)          # non-zero optimizer state
    return m, opt


def check_train_step(m, opt, x, eps, beta):
    """train_step: works exactly as on clean copies, or raises and changes nothing: FloatingPointError only
    where the same step on clean copies diverges too, ValueError for an alias of the model's buffers."""
    buffers = [m.params, *opt._arrays().values()]
    cx = clean(x, m.dtype, D)
    n = cx.shape[0] if cx is not None else 3
    ce = None if eps is None else clean(eps, m.dtype, K, rows=n)
    m2, o2 = twin(m, opt)
    before, rng, snap_x, snap_e = state_of(m, opt), m.rng_state, snapshot(x), snapshot(eps)
    ok, out = attempt(m.train_step, x, opt, beta=beta, eps=eps)
    valid = targets_ok(m, cx) and beta_ok(beta) and (eps is None or (m._variational and finite(ce)))
    aliased = any(isinstance(a, np.ndarray) and any(np.shares_memory(a, b) for b in buffers) for a in (x, eps))
    if ok:
        assert valid, (x, eps, beta)
        assert same(out, m2.train_step(cx, o2, beta=beta, eps=ce))
        assert state_of(m, opt) == state_of(m2, o2) and m.rng_state == m2.rng_state
        assert np.isfinite(m.params).all()
    elif isinstance(out, FloatingPointError):
        assert valid and state_of(m, opt) == before
        with pytest.raises(FloatingPointError):
            m2.train_step(cx, o2, beta=beta, eps=ce)
    else:
        assert not valid or (aliased and isinstance(out, ValueError) and "share memory" in str(out)), (x, eps, out)
        assert state_of(m, opt) == before and m.rng_state == rng
    if not aliased:
        assert untouched(x, snap_x) and untouched(eps, snap_e)


@fuzz(120)
@given(cfg=configs, which=st.sampled_from(["encode", "reconstruct", "decode", "decode_logits"]), data=st.data())
def test_forward_calls_work_or_refuse(cfg, which, data):
    m = make(*cfg)
    cols = D if which in ("encode", "reconstruct") else K
    alias = data.draw(st.integers(0, 5)) == 0
    check_forward(m, which, alias_of(data.draw, [m.params], cols) if alias else data.draw(matrices(cols)))


@fuzz(150)
@given(cfg=configs, which=st.sampled_from(["loss", "loss_and_grad"]), data=st.data())
def test_losses_work_or_refuse(cfg, which, data):
    m = make(*cfg)
    x = data.draw(matrices(D))
    cx = clean(x, m.dtype, D)
    eps = data.draw(st.one_of(st.none(), matrices(K, rows=cx.shape[0] if cx is not None else 3)))
    check_loss(m, which, x, eps, data.draw(betas))


@fuzz(100)
@given(cfg=configs, data=st.data())
def test_reparameterize_works_or_refuses(cfg, data):
    m = make(*cfg)
    mu = data.draw(matrices(K))
    cm = clean(mu, m.dtype, K)
    n = cm.shape[0] if cm is not None else 3
    check_reparameterize(m, mu, data.draw(st.one_of(st.none(), matrices(K, rows=n))),
                         data.draw(st.one_of(st.none(), matrices(K, rows=n))))


@fuzz(150)
@given(cfg=configs, adam=st.booleans(), data=st.data())
def test_train_step_works_or_changes_nothing(cfg, adam, data):
    m, opt = trained(cfg, adam)
    buffers = [m.params, *opt._arrays().values()]
    x = alias_of(data.draw, buffers, D) if data.draw(st.integers(0, 5)) == 0 else data.draw(matrices(D))
    cx = clean(x, m.dtype, D)
    n = cx.shape[0] if cx is not None else 3
    if data.draw(st.integers(0, 5)) == 0:
        eps = alias_of(data.draw, buffers, K, rows=n)
    else:
        eps = data.draw(st.one_of(st.none(), matrices(K, rows=n)))
    check_train_step(m, opt, x, eps, data.draw(betas))


# Hypothesis explores combinations; this sweep guarantees that every kind of input reaches every array
# argument of every model configuration (each with valid partners for the other arguments): every dtype x
# kind of value in C order, every layout x kind of value in the model's own dtype, and every wrong type.
def sweep(cols, rows=3):
    i = 0
    for cfg in CONFIGS:
        for val in dict.fromkeys(VALUES):
            for dt in dict.fromkeys(DTYPES):
                i += 1
                yield cfg, build(rows, cols, dt, "C", val, i)
            for lay in dict.fromkeys(LAYOUTS):
                i += 1
                yield cfg, build(rows, cols, cfg[2], lay, val, i)
        for wrong in WRONG:
            yield cfg, wrong


def valid_x(m, rows=3):
    return np.random.default_rng(rows).random((rows, D)).astype(m.dtype)


def valid_k(m, rows=3, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, K)).astype(m.dtype)


@pytest.mark.parametrize("target", ["encode", "reconstruct", "decode", "decode_logits", "loss.x", "loss.eps",
                                    "loss_and_grad.x", "loss_and_grad.eps", "reparameterize.mu",
                                    "reparameterize.logvar", "reparameterize.eps", "train_step.x",
                                    "train_step.eps"])
def test_every_kind_of_input_reaches_every_argument(target):
    which, _, arg = target.partition(".")
    cols = D if arg == "x" or which in ("encode", "reconstruct") else K
    for i, (cfg, a) in enumerate(sweep(cols)):
        if which == "train_step":
            m, opt = trained(cfg, adam=i % 2 == 0)
            if arg == "x":
                check_train_step(m, opt, a, None if i % 3 else valid_k(m), 0.5)
            elif m._variational:
                check_train_step(m, opt, valid_x(m), a, 0.5)
            continue
        m = make(*cfg)
        if not arg:
            check_forward(m, which, a)
        elif which in ("loss", "loss_and_grad"):
            if arg == "x":
                check_loss(m, which, a, valid_k(m) if m._variational and i % 3 else None, 0.5)
            elif m._variational:
                check_loss(m, which, valid_x(m), a, 0.5)
        elif m._variational:
            args = {"mu": valid_k(m), "logvar": valid_k(m, seed=1), "eps": valid_k(m, seed=2)}
            args[arg] = a
            check_reparameterize(m, args["mu"], args["logvar"], args["eps"])


SIZES = st.sampled_from([1, 2, 3, 7, 0, -1, 2**45, 2**62, 2**63, 2**100, 2.0, "3", None, True, np.int64(4)])
SEEDS = st.sampled_from([None, 0, 5, 2**64 - 1, 2**64, -1, 1.5, "1", np.uint64(3), True])


def size_ok(n):
    return not isinstance(n, bool) and isinstance(n, (int, np.integer)) and n >= 1


def seed_ok(s):
    return s is None or (not isinstance(s, bool) and isinstance(s, (int, np.integer)) and 0 <= s < 2**64)


@fuzz(80)
@given(cfg=configs, n=SIZES, seed=SEEDS)
def test_sample_works_or_refuses(cfg, n, seed):
    m = make(*cfg)
    ok, out = attempt(m.sample, n, seed)
    if (n == 0 and not isinstance(n, bool) and isinstance(n, (int, np.integer))) and seed_ok(seed):
        assert ok and out.shape == (0, D) and out.dtype == m.dtype, (n, seed, out)   # empty, as NumPy would
    elif not (size_ok(n) and seed_ok(seed)):
        assert not ok and not isinstance(out, MemoryError), (n, seed, out)
    elif n >= 2**40:   # terabytes: refused cleanly
        assert not ok and isinstance(out, (MemoryError, ValueError)), (n, out)
    else:
        assert ok and out.shape == (n, D) and out.dtype == m.dtype
        if seed is not None:
            assert same(out, m.sample(int(n), seed=int(seed)))


@fuzz(80)
@given(cfg=configs, which=st.sampled_from(["log_likelihood", "elbo"]), k=SIZES, seed=SEEDS, data=st.data())
def test_likelihood_bounds_work_or_refuse(cfg, which, k, seed, data):
    m = make(*cfg)
    x = data.draw(matrices(D))
    fn = getattr(m, which)
    if not m._variational:   # documented: a plain autoencoder has no density and no ELBO
        with pytest.raises(NotImplementedError):
            fn(x, k, seed)
        return
    cx = clean(x, m.dtype, D)
    if size_ok(k) and k >= 2**40 and targets_ok(m, cx) and seed_ok(seed):
        ok, out = attempt(fn, x, k, seed)
        assert not ok and isinstance(out, (MemoryError, ValueError)), (k, out)
        return
    if size_ok(k) and k > 7:
        k = 7   # keep the valid ones cheap
    ok, out = attempt(fn, x, k, seed)
    assert ok == (targets_ok(m, cx) and size_ok(k) and seed_ok(seed)), (x, k, seed, out)
    if ok:
        assert out.shape == (cx.shape[0],) and out.dtype == np.float64
        if seed is not None:
            assert same(out, fn(cx, int(k), int(seed)))
            assert np.all(np.isfinite(out) | (np.abs(cx).max() > 1e30))


@fuzz(60)
@given(cfg=configs, state=st.sampled_from([(1, 2, 3, 4), [5, 6, 7, 8], (0, 0, 0, 0), (1, 2, 3), (2**64 - 1,) * 4,
                                           (2**64, 1, 1, 1), (-1, 1, 1, 1), (1.0, 2, 3, 4), "abcd", None, 7,
                                           (np.uint64(9), 1, 1, 1), (True, 1, 1, 1)]))
def test_rng_state_round_trips_or_refuses(cfg, state):
    m = make(*cfg)
    before = m.rng_state
    ok, err = attempt(setattr, m, "rng_state", state)
    try:
        items = tuple(state)
    except TypeError:
        items = None
    valid = (items is not None and len(items) == 4 and all(isinstance(v, int) and 0 <= v < 2**64 for v in items)
             and any(items))
    assert ok == valid, (state, err)
    assert m.rng_state == (tuple(int(v) for v in items) if ok else before)
    if ok:   # the generator continues from exactly that state
        z1 = m.sample(3)
        m.rng_state = items
        assert same(z1, m.sample(3))


GOOD_DTYPES = ("float32", "float64", np.float32, np.dtype("float64"))


@fuzz(100)
@given(cls=st.sampled_from([vaecore.VAE, vaecore.AE]),
       dims=st.tuples(SIZES, SIZES),
       hidden=st.sampled_from([(), (3,), (3, 4), [2], (0,), (-1,), (2**24 + 1,), (2**24,) * 3,
                               (2,) * 33, (2.5,), ("a",), 5, "ab", None, np.array([3, 2]), (True,)]),
       activation=st.sampled_from(list(_core.ACTIVATIONS) + ["swish", None, 3]),
       likelihood=st.sampled_from(["gaussian", "bernoulli", "poisson", None]),
       dtype=st.sampled_from([*GOOD_DTYPES, "float16", "int8", None, "nonsense", 3]),
       seed=SEEDS)
def test_constructor_builds_or_refuses(cls, dims, hidden, activation, likelihood, dtype, seed):
    ok, m = attempt(cls, dims[0], dims[1], hidden, activation=activation, likelihood=likelihood, dtype=dtype,
                    seed=seed)
    try:
        widths = [int(w) for w in hidden] if all(size_ok(w) for w in hidden) else None
    except TypeError:
        widths = None
    valid = (all(size_ok(v) and v <= 2**24 for v in dims) and widths is not None and len(widths) <= 32
             and not isinstance(hidden, (str, bytes)) and all(w <= 2**24 for w in widths)
             and activation in _core.ACTIVATIONS and likelihood in _core.LIKELIHOODS
             and any(dtype is d for d in GOOD_DTYPES) and seed is not None and seed_ok(seed))
    if not valid:
        assert not ok, (dims, hidden, activation, likelihood, dtype, seed)
        return
    widths_all = [dims[0], *widths, dims[1]]
    big = max(a * b for a, b in zip(widths_all, widths_all[1:])) > 2**30
    if big:   # petabytes of parameters: MemoryError, never a crash
        assert not ok and isinstance(m, MemoryError), m
        return
    assert ok, m
    P = sum((a + 1) * b for a, b in zip([dims[0], *widths][:-1] or [], widths))  # encoder hidden layers
    last = widths[-1] if widths else dims[0]
    P += (last + 1) * dims[1] * (2 if cls is vaecore.VAE else 1)
    dec = [dims[1], *reversed(widths), dims[0]]
    P += sum((a + 1) * b for a, b in zip(dec, dec[1:]))
    assert m.num_params == P == m.params.size and np.isfinite(m.params).all()
    assert f"{P:,}" in repr(m) and m.config["hidden"] == tuple(widths)
    assert sum(p.size for _, p in m.named_params()) == P


@fuzz(100)
@given(kind=st.sampled_from(["Adam", "SGD", "Optimizer"]),
       lr=st.sampled_from([1e-3, 0, 0.5, -1.0, float("nan"), float("inf"), "0.1", None, True, np.float32(0.01)]),
       extra=st.sampled_from([(), ((0.9, 0.999),), ((0.9, 1.0),), ((0.5,),), ("ab",), (None,), ((-0.1, 0.9),)]),
       second=st.sampled_from([None, 1e-8, 0.0, -1e-8, float("nan"), 0.9, "x"]),
       clip=st.sampled_from([None, 1.0, 0.0, -1.0, float("inf"), "1"]),
       model=st.sampled_from(["model", "other", None, "str"]))
def test_optimizers_build_and_step_or_refuse(kind, lr, extra, second, clip, model):
    m = make(dt="float32")
    target = {"model": m, "other": make(), None: None, "str": "model"}[model]
    cls = getattr(vaecore, kind)
    args = (target, lr) + (extra if kind == "Adam" else ())
    kwargs = {"clip_norm": clip}
    if second is not None:
        kwargs["eps" if kind == "Adam" else "momentum"] = second
    if kind == "Optimizer":
        args, kwargs = (target, lr, clip), {}
    ok, opt = attempt(cls, *args, **kwargs)

    def real_ok(v, low=0.0, strict=False):
        return (not isinstance(v, bool) and isinstance(v, (int, float, np.floating)) and math.isfinite(float(v))
                and (float(v) > low if strict else float(v) >= low))
    valid = kind != "Optimizer" and isinstance(target, vaecore.VAE) and real_ok(lr) and (
        clip is None or real_ok(clip, strict=True))
    if kind == "Adam":
        betas = extra[0] if extra else (0.9, 0.999)
        valid = valid and isinstance(betas, tuple) and len(betas) == 2 and all(real_ok(b) and b < 1 for b in betas)
        valid = valid and (second is None or real_ok(second, strict=True))
    elif kind == "SGD":
        valid = valid and (second is None or real_ok(second))
    assert ok == valid, (kind, args, kwargs, opt)
    if ok and target is m:
        before = m.params.copy()
        st_ = m.train_step(np.full((3, D), 0.25), opt)
        assert opt.t == 1 and np.isfinite(st_["loss"]) and np.isfinite(m.params).all()
        assert float(lr) == 0 or not np.array_equal(before, m.params)


@fuzz(60)
@given(cfg=configs, data=st.data(),
       epochs=st.sampled_from([0, 1, 2, 2, -1, 2.0, None]),
       batch_size=st.sampled_from([1, 3, 64, 64, 2**62, 0, -2, 1.5]),
       beta=st.sampled_from([0.5, 1.0, lambda e: 0.1 * e, lambda e: -1.0, lambda e: "x", -1.0, float("nan"), "b"]),
       seed=SEEDS,
       callbacks=st.sampled_from([(), (lambda e, s, m: None,), (lambda e, s, m: True,), (3,), None]),
       checkpoint=st.sampled_from([None, None, "file", 3, b"bytes"]),
       every=st.sampled_from([1, 2, 0, -1, 1.5]),
       resume=st.sampled_from([False, True, "yes"]))
def test_fit_trains_or_refuses(tmp_path_factory, cfg, data, epochs, batch_size, beta, seed, callbacks, checkpoint,
                               every, resume):
    m = make(*cfg)
    X = data.draw(matrices(D))
    cx = clean(X, m.dtype, D)
    ck = str(tmp_path_factory.mktemp("fit") / "ck.npz") if checkpoint == "file" else checkpoint
    before = m.params.copy()
    ok, h = attempt(vaecore.fit, m, X, epochs=epochs, batch_size=batch_size, beta=beta, seed=seed,
                    callbacks=callbacks, progress=False, checkpoint=ck, checkpoint_every=every, resume=resume)
    bad_beta = beta in (-1.0, "b") or (isinstance(beta, float) and math.isnan(beta))
    bad_schedule = callable(beta) and epochs not in (0, None, -1, 2.0) and beta(0) in (-1.0, "x")
    valid = (targets_ok(m, cx) and (size_ok(epochs) or (epochs == 0 and not isinstance(epochs, bool)))
             and size_ok(batch_size) and not bad_beta and not bad_schedule and seed_ok(seed)
             and callbacks is not None and all(callable(c) for c in callbacks)
             and (checkpoint in (None, "file")) and size_ok(every) and resume in (False, True)
             and not (resume and ck is None))
    assert ok == valid, (X, epochs, batch_size, beta, seed, callbacks, checkpoint, every, resume, h)
    if ok:
        stop = 1 if callbacks and callbacks[0](0, {}, m) is True else epochs
        n = cx.shape[0]
        assert len(h) == stop and h.optimizer.t == stop * math.ceil(n / min(batch_size, n))
        assert np.isfinite(h.loss).all() and np.isfinite(m.params).all()
        if ck is not None and stop:
            assert type(m).load(ck).params.tobytes() == m.params.tobytes()
    elif not isinstance(h, FloatingPointError):
        assert m.params.tobytes() == before.tobytes()


# -------------------------------------------------------------- save/load
@fuzz(40)
@given(cfg=configs, where=st.sampled_from(["str", "path", "bytes", "int", "none", "dir", "missing_dir"]),
       with_opt=st.sampled_from([None, "own", "other", "junk"]))
def test_save_writes_or_refuses(tmp_path_factory, cfg, where, with_opt):
    m = make(*cfg)
    d = tmp_path_factory.mktemp("save")
    path = {"str": str(d / "m.npz"), "path": d / "m.npz", "bytes": os.fsencode(d / "m.npz"), "int": 3,
            "none": None, "dir": d, "missing_dir": d / "nope" / "m.npz"}[where]
    opt = {None: None, "own": vaecore.Adam(m), "other": vaecore.Adam(make()), "junk": "adam"}[with_opt]
    ok, err = attempt(m.save, path, optimizer=opt, allowed=ALLOWED + (OSError,))   # OSError: a folder
    assert ok == (where in ("str", "path", "bytes") and with_opt in (None, "own")), (where, with_opt, err)
    if ok:
        m2 = type(m).load(path)
        assert m2.params.tobytes() == m.params.tobytes() and m2.config == m.config
    assert not list(pathlib.Path(d).glob(".vaecore-*"))   # no temporary file left behind


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory):
    m = make(lik="bernoulli", dt="float32")
    opt = vaecore.Adam(m)
    m.train_step(np.full((2, D), 0.5), opt)
    path = tmp_path_factory.mktemp("good") / "good.npz"
    m.save(path, optimizer=opt)
    return m, opt, path.read_bytes()


@fuzz(150)
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.sampled_from([None] * 6 + [0, 1, 30, 0.5, 0.99]), tail=st.sampled_from([b""] * 5 + [b"x", b"\0" * 99]))
def test_damaged_files_load_exactly_or_not_at_all(tmp_path_factory, saved_file, edits, cut, tail):
    m, opt, raw = saved_file
    b = bytearray(raw)
    for where, value in edits:
        b[int(where * len(b))] = value
    if cut is not None:
        b = b[: int(cut * len(b)) if isinstance(cut, float) else cut]
    path = tmp_path_factory.mktemp("bad") / "bad.npz"
    path.write_bytes(bytes(b) + tail)
    ok, out = attempt(vaecore.VAE.load, path, with_optimizer=True)
    if ok:   # the damage hit bytes nothing reads (zip timestamps, padding): the model comes back exactly
        m2, opt2 = out
        assert m2.params.tobytes() == m.params.tobytes() and m2.rng_state == m.rng_state
        assert opt2.m.tobytes() == opt.m.tobytes() and opt2.v.tobytes() == opt.v.tobytes() and opt2.t == opt.t
    else:
        assert isinstance(out, ValueError), out


def test_load_refuses_non_files(tmp_path):
    for path, exc in [(tmp_path, ValueError), (tmp_path / "missing.npz", FileNotFoundError), (3, TypeError),
                      (None, TypeError)]:
        with pytest.raises(exc):
            vaecore.VAE.load(path)


# ----------------------------------------------------------- vaecore._core
def core_model(cfg):
    return make(*cfg)._core


def check_core_forward(m, which, a):
    core = m._core
    cols = D if which == "encode" else K
    call = {"encode": core.encode, "decode": core.decode, "decode_logits": lambda z: core.decode(z, True)}[which]
    snap = snapshot(a)
    ok, out = attempt(call, a, allowed=CORE_ALLOWED)
    assert ok == (core_ready(a, m.dtype, cols) and finite(a)), (which, a, out)
    if ok:
        assert same(out, call(np.array(a)))
    assert untouched(a, snap)


def check_core_loss(m, which, args):
    core = m._core
    if which == "reparameterize":
        ready = (all(core_ready(a, m.dtype, K) and finite(a) for a in args)
                 and len({a.shape[0] for a in args}) == 1)
    else:
        x, beta, eps = args
        n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim == 2 else 3
        ready = (core_ready(x, m.dtype, D) and targets_ok(m, x) and isinstance(beta, (int, float))
                 and beta_ok(beta) and (eps is None if not m._variational
                                        else core_ready(eps, m.dtype, K, rows=n) and finite(eps)))
    state = core.rng_state
    ok, out = attempt(getattr(core, which), *args, allowed=CORE_ALLOWED)
    assert ok == ready, (which, args, out)
    assert core.rng_state == state   # eps is given: the generator is not touched
    if ok:
        assert same(out, getattr(core, which)(*[np.array(a) if isinstance(a, np.ndarray) else a for a in args]))


# Each fault makes exactly one argument of _core.train_step wrong, the others valid, so that every check is
# reached (the checks run in order and stop at the first failure). A fault returns False where it does not
# apply (SGD ignores Adam's hyperparameters and s2; an autoencoder takes no eps). Each comes with the exception
# it must raise when x and eps are valid (with a bad x or eps the first refusal may be theirs) and, where only
# one check can catch it, a regex its message must match.
def _set(key, value):
    def fault(a, m, sgd):
        a[key] = value(a, m) if callable(value) else value
        return True
    return fault


def _adam_only(key, value):
    def fault(a, m, sgd):
        a[key] = value
        return not sgd
    return fault


def _eps_view(of):
    def fault(a, m, sgd):
        buf = a["s2"] if of == "s2" else m._core.params
        n = a["x"].shape[0] if isinstance(a["x"], np.ndarray) and a["x"].ndim == 2 else 0
        if not m._variational or buf is None or n * K > buf.size or n == 0:
            return False
        a["eps"] = buf[:n * K].reshape(n, K)
        return True
    return fault


def _overlapping_states(a, m, sgd):
    both = np.zeros(m.num_params + 1, m.dtype)
    a["s1"], a["s2"] = both[:-1], both[1:]
    return not sgd


def _readonly_s1(a, m, sgd):
    a["s1"].flags.writeable = False
    return True


def _counter(value, dtype=np.int64):
    """A fresh step counter array (each call builds its own, since the step writes to it)."""
    return lambda a, m: np.array(value, dtype)


def _readonly_counter(a, m):
    t = np.array([3], np.int64)
    t.flags.writeable = False
    return t


def _unaligned_counter(a, m):
    raw = np.zeros(9, np.uint8)
    t = raw[1:].view(np.int64)
    t[0] = 3
    return t


def _counter_in(which):
    """t as an int64 view of 8 bytes of the params or of s1, at a place where it reads as a count >= 0 (so
    that only the aliasing check can refuse it)."""
    def fault(a, m, sgd):
        buf = m._core.params if which == "params" else a["s1"]
        if not isinstance(buf, np.ndarray):
            return False
        words = buf[: buf.nbytes // 8 * 8 // buf.itemsize].view(np.int64)   # 8-byte aligned words
        good = np.flatnonzero(words >= 0)
        if not len(good):
            return False
        a["t"] = words[good[0]:good[0] + 1]
        return True
    return fault


_SHARE = "share memory"
_T_TYPE = r"t must be a writeable numpy int64 array of shape \(1,\)"
_T_RANGE = r"t must be in \[0, 2\*\*63 - 2\] \(the step advances it by one\), got "
FAULTS = {   # name -> (fault, exception, message regex or None)
    None: (lambda a, m, sgd: False, None, None),
    "kind": (_set("kind", 2), ValueError, "kind must be 0"),
    "kind_big": (_set("kind", 2**40), OverflowError, None),
    "lr": (_set("lr", -1.0), ValueError, "lr must be"), "lr_nan": (_set("lr", np.nan), ValueError, "lr must be"),
    "lr_str": (_set("lr", "x"), TypeError, None),
    "beta": (_set("beta", -0.5), ValueError, "beta must be"), "beta_big": (_set("beta", 2**2000), OverflowError, None),
    "beta1": (_adam_only("beta1", 1.0), ValueError, "Adam needs"),
    "beta2_nan": (_adam_only("beta2", np.nan), ValueError, "Adam needs"),
    "adam_eps": (_adam_only("adam_eps", 0.0), ValueError, "Adam needs"),
    "adam_eps_inf": (_adam_only("adam_eps", np.inf), ValueError, "Adam needs"),
    "momentum": (_set("momentum", -0.1), ValueError, "momentum must be"),
    "momentum_nan": (_set("momentum", np.nan), ValueError, "momentum must be"),
    "clip_nan": (_set("clip", np.nan), ValueError, "clip_norm must be"),
    # the step counter: a writeable, aligned, native int64 array of shape (1,), >= 0, apart from the buffers
    "t_neg": (_set("t", _counter([-1])), ValueError, _T_RANGE),
    "t_int": (_set("t", 3), TypeError, _T_TYPE), "t_big": (_set("t", 2**63), TypeError, _T_TYPE),
    "t_none": (_set("t", None), TypeError, _T_TYPE), "t_list": (_set("t", [3]), TypeError, _T_TYPE),
    "t_numpy_int": (_set("t", np.int64(3)), TypeError, _T_TYPE),
    "t_0d": (_set("t", _counter(3)), TypeError, _T_TYPE),
    "t_2d": (_set("t", _counter([[3]])), TypeError, _T_TYPE),
    "t_two": (_set("t", _counter([3, 4])), TypeError, _T_TYPE),
    "t_empty": (_set("t", _counter([])), TypeError, _T_TYPE),
    "t_int32": (_set("t", _counter([3], np.int32)), TypeError, _T_TYPE),
    "t_uint64": (_set("t", _counter([3], np.uint64)), TypeError, _T_TYPE),
    "t_float": (_set("t", _counter([3.0], np.float64)), TypeError, _T_TYPE),
    "t_swapped": (_set("t", _counter([3], np.dtype(">i8"))), TypeError, _T_TYPE),
    "t_readonly": (_set("t", _readonly_counter), TypeError, _T_TYPE),
    "t_unaligned": (_set("t", _unaligned_counter), TypeError, _T_TYPE),
    "t_params": (_counter_in("params"), ValueError, "t must not share memory"),
    "t_s1": (_counter_in("s1"), ValueError, "t must not share memory"),
    # the last count, which the step could not advance (it used to wrap to -2**63)
    "t_max": (_set("t", _counter([2**63 - 1])), ValueError, _T_RANGE),
    "s1_params": (_set("s1", lambda a, m: m._core.params), ValueError, _SHARE),
    "s1_params_part": (_set("s1", lambda a, m: m._core.params[1:]), ValueError, None),
    "s2_none": (_adam_only("s2", None), TypeError, "s2 must be a numpy.ndarray"),
    "s2_same": (lambda a, m, sgd: (a.__setitem__("s2", a["s1"]), not sgd)[1], ValueError,
                "s1 and s2 must not share memory"),
    "s2_overlap": (_overlapping_states, ValueError, "s1 and s2 must not share memory"),
    "s1_readonly": (_readonly_s1, ValueError, "s1 must be a writeable"),
    "s1_dtype": (_set("s1", lambda a, m: a["s1"].astype(np.float32 if m.dtype == np.float64 else np.float64)),
                 ValueError, "s1 must be a writeable"),
    "s1_short": (_set("s1", lambda a, m: a["s1"][:-1]), ValueError, "s1 must be a writeable"),
    "s1_2d": (_set("s1", lambda a, m: a["s1"].reshape(1, -1)), ValueError, "s1 must be a writeable"),
    "s1_strided": (_set("s1", lambda a, m: np.repeat(a["s1"], 2)[::2]), ValueError, "s1 must be a writeable"),
    "s1_swapped": (_set("s1", lambda a, m: a["s1"].astype(m.dtype.newbyteorder())), ValueError,
                   "s1 must be a writeable"),
    "s1_list": (_set("s1", lambda a, m: list(a["s1"])), TypeError, "s1 must be a numpy.ndarray"),
    # SGD without a buffer is allowed
    "s1_none": (lambda a, m, sgd: (a.__setitem__("s1", None), not sgd)[1], TypeError, "s1 must be a numpy.ndarray"),
    "x_params": (_set("x", lambda a, m: m._core.params[:(m.num_params // D) * D].reshape(-1, D)), ValueError, None),
    "x_s1": (_set("x", lambda a, m: a["s1"][:2 * D].reshape(2, D)), ValueError, _SHARE),
    "eps_s2": (_eps_view("s2"), ValueError, _SHARE), "eps_params": (_eps_view("params"), ValueError, _SHARE),
    "eps_rows": (lambda a, m, sgd: (a.__setitem__("eps", np.zeros((a["x"].shape[0] + 1, K), m.dtype)), True)[1]
                 if isinstance(a["x"], np.ndarray) and a["x"].ndim == 2 else False, ValueError, "eps must have shape"),
    "too_few": (lambda a, m, sgd: True, TypeError, None), "too_many": (lambda a, m, sgd: True, TypeError, None),
}
ORDER = ["x", "beta", "eps", "kind", "lr", "beta1", "beta2", "adam_eps", "momentum", "clip", "t", "s1", "s2"]


def check_core_train_step(m, x, eps, fault, sgd):
    """_core.train_step with x, eps as given and one fault (or none) in the other arguments: it trains and
    advances the step counter t by one, or it raises (FloatingPointError only with nothing wrong; with x and
    eps valid, the fault's own exception) and changes nothing, t included."""
    core, P = m._core, m.num_params
    s1, s2 = np.full(P, 0.01, m.dtype), np.full(P, 0.02, m.dtype)
    t = np.array([3], np.int64)
    a = dict(x=x, beta=0.5, eps=eps, kind=0 if sgd else 1, lr=1e-2, beta1=0.9, beta2=0.999, adam_eps=1e-8,
             momentum=0.9, clip=1.0, t=t, s1=s1, s2=None if sgd else s2)
    make_fault, exc, match = FAULTS[fault]
    applies = make_fault(a, m, sgd)
    call = [a[k] for k in ORDER]
    call = call[:-1] if fault == "too_few" else call + [None] if fault == "too_many" else call
    n = a["x"].shape[0] if isinstance(a["x"], np.ndarray) and a["x"].ndim == 2 else 3
    arrays_ok = (core_ready(a["x"], m.dtype, D) and targets_ok(m, a["x"])
                 and (a["eps"] is None or (m._variational and core_ready(a["eps"], m.dtype, K, rows=n)
                                           and finite(a["eps"]))))
    states = [v for v in (a["s1"], a["s2"], s1, s2) if isinstance(v, np.ndarray)]
    counters = [v for v in (a["t"], t) if isinstance(v, np.ndarray) and v.dtype.kind != "O"]

    def now():
        return (core.params.tobytes(), core.rng_state, *(v.tobytes() for v in states),
                *(v.tobytes() for v in counters))
    before = now()
    ok, out = attempt(core.train_step, *call, allowed=CORE_ALLOWED)
    if arrays_ok and not applies:
        assert ok or isinstance(out, FloatingPointError), (fault, a["x"], a["eps"], out)
        if ok:
            assert len(out) == 3 and np.isfinite(core.params).all() and now()[0] != before[0]
            if isinstance(a["s1"], np.ndarray):   # the optimizer state moved too
                assert a["s1"].tobytes() != before[2]
            assert t[0] == 4, t   # the step counted itself, once
        else:
            assert now()[0] == before[0] and now()[2:] == before[2:] and t[0] == 3
    else:
        assert not ok and not isinstance(out, FloatingPointError), (fault, a["x"], a["eps"], out)
        if arrays_ok:
            assert isinstance(out, exc), (fault, out)
            assert match is None or re.search(match, str(out)), (fault, out)
        assert now() == before
    return applies


@fuzz(100)
@given(cfg=configs, which=st.sampled_from(["encode", "decode", "decode_logits"]), data=st.data())
def test_core_forward_takes_exact_arrays_only(cfg, which, data):
    m = make(*cfg)
    cols = D if which == "encode" else K
    alias = data.draw(st.integers(0, 5)) == 0
    check_core_forward(m, which, alias_of(data.draw, [m._core.params], cols) if alias else data.draw(matrices(cols)))


@fuzz(120)
@given(cfg=configs, which=st.sampled_from(["loss", "loss_and_grad", "reparameterize"]), data=st.data())
def test_core_losses_take_exact_arrays_only(cfg, which, data):
    m = make(*cfg)
    if which == "reparameterize":
        args = [data.draw(matrices(K)), data.draw(matrices(K, rows=3)), data.draw(matrices(K, rows=3))]
    else:
        x = data.draw(matrices(D))
        n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim == 2 else 3
        eps = data.draw(st.one_of(st.none(), matrices(K, rows=n)))
        beta = data.draw(st.sampled_from([0.0, 1.0, 0.5, -1.0, float("nan"), float("inf"), 2**2000, "1", None]))
        args = [x, beta, eps]
    check_core_loss(m, which, args)


@fuzz(150)
@given(cfg=configs, sgd=st.booleans(), fault=st.sampled_from([None] * 8 + list(FAULTS)), data=st.data())
def test_core_train_step_takes_exact_arguments_only(cfg, sgd, fault, data):
    m = make(*cfg)
    if data.draw(st.integers(0, 2)):
        x = valid_x(m, data.draw(st.sampled_from([1, 3, 300])))
        eps = valid_k(m, x.shape[0]) if m._variational and data.draw(st.booleans()) else None
    else:
        x = data.draw(matrices(D))
        n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim == 2 else 3
        eps = data.draw(st.one_of(st.none(), matrices(K, rows=n)))
    check_core_train_step(m, x, eps, fault, sgd)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_of_core_train_step_is_refused(fault):
    applied = []
    for i, cfg in enumerate(CONFIGS):
        m = make(*cfg)
        x = valid_x(m)
        applied.append(check_core_train_step(m, x, valid_k(m) if m._variational and i % 2 else None, fault,
                                             sgd=i % 4 < 2))
    assert any(applied) == (fault is not None)   # every fault is reached somewhere


@pytest.mark.parametrize("target", ["encode", "decode", "decode_logits", "loss.x", "loss.eps", "loss_and_grad.x",
                                    "reparameterize.mu", "reparameterize.eps", "train_step.x", "train_step.eps"])
def test_every_kind_of_input_reaches_every_core_argument(target):
    which, _, arg = target.partition(".")
    cols = D if arg == "x" or which == "encode" else K
    for i, (cfg, a) in enumerate(sweep(cols)):
        m = make(*cfg)
        if not arg:
            check_core_forward(m, which, a)
        elif which == "train_step":
            if arg == "x":
                check_core_train_step(m, a, None, None, sgd=i % 2 == 0)
            elif m._variational:
                check_core_train_step(m, valid_x(m), a, None, sgd=i % 2 == 0)
        elif which == "reparameterize":
            args = [valid_k(m), valid_k(m, seed=1), valid_k(m, seed=2)]
            args[0 if arg == "mu" else 2] = a
            check_core_loss(m, which, args)
        elif arg == "x":
            check_core_loss(m, which, [a, 0.5, valid_k(m) if m._variational else None])
        elif m._variational:
            check_core_loss(m, which, [valid_x(m), 0.5, a])


# The constructor's contract, restated from the documentation of vaecore._core.Model (not from its code):
# input_shape a tuple (D,) or (C, H, W) of Python ints >= 1 with at most MAX_WIDTH values in all; each stack a
# list or tuple of at most MAX_LAYERS tuples (kind, args...) of Python ints in [0, MAX_WIDTH]; every layer must
# fit the shape it receives; the decoder must give back D values (the same image shape if it ends in an image).
# Returns the parameter layout [(name, shape)] the model must report, or None for a configuration to refuse.
_ACTS = range(len(_core.ACTIVATIONS))


def _conv_out(kind, c, h, w, args):
    O, KH, KW, SH, SW, PH, PW = args
    if min(O, KH, KW, SH, SW) < 1:
        return None
    if kind == 1:   # conv2d (torch's): the kernel inside the padded input
        if h + 2 * PH < KH or w + 2 * PW < KW:
            return None
        ho, wo = (h + 2 * PH - KH) // SH + 1, (w + 2 * PW - KW) // SW + 1
    else:           # conv_transpose2d, output_padding 0
        ho, wo = (h - 1) * SH - 2 * PH + KH, (w - 1) * SW - 2 * PW + KW
    if not (1 <= ho <= 2**24 and 1 <= wo <= 2**24) or O * ho * wo > 2**24:
        return None
    return O, ho, wo


def _stack_layout(stack, shape, side):
    """(the layout entries of a stack, its output shape), or None."""
    if not isinstance(stack, (list, tuple)) or len(stack) > _core.MAX_LAYERS:
        return None
    entries = []
    for i, layer in enumerate(stack):
        if not (isinstance(layer, tuple) and 1 <= len(layer) <= 8
                and all(type(v) is int and 0 <= v <= 2**24 for v in layer)):
            return None
        kind, args = layer[0], layer[1:]
        nargs = {0: 1, 1: 7, 2: 7, 3: 1, 4: 0, 5: 3}.get(kind)
        if nargs is None or len(args) != nargs:
            return None
        if kind == 0:
            if len(shape) != 1 or args[0] < 1:
                return None
            entries += [(f"{side}.{i}.W", (shape[0], args[0])), (f"{side}.{i}.b", (args[0],))]
            shape = (args[0],)
        elif kind in (1, 2):
            out = _conv_out(kind, *shape, args) if len(shape) == 3 else None
            if out is None:
                return None
            C, O, KH, KW = shape[0], args[0], args[1], args[2]
            entries += [(f"{side}.{i}.W", (O, C, KH, KW) if kind == 1 else (C, O, KH, KW)), (f"{side}.{i}.b", (O,))]
            shape = out
        elif kind == 3:
            if args[0] not in _ACTS:
                return None
        elif kind == 4:
            if len(shape) != 3:
                return None
            shape = (math.prod(shape),)
        else:
            if len(shape) != 1 or min(args) < 1 or math.prod(args) != shape[0]:
                return None
            shape = tuple(args)
    return entries, shape


def core_layout(input_shape, K, enc, dec, lik, variational):
    if not (isinstance(input_shape, tuple) and len(input_shape) in (1, 3)
            and all(type(v) is int and v >= 1 for v in input_shape) and math.prod(input_shape) <= 2**24):
        return None
    D_ = math.prod(input_shape)
    if not (isinstance(K, (int, np.integer)) and 1 <= K <= 2**24) or lik not in _core.LIKELIHOODS:
        return None
    e, d = _stack_layout(enc, input_shape, "enc"), _stack_layout(dec, (int(K),), "dec")
    if e is None or d is None:
        return None
    (entries, h), (dec_entries, out) = e, d
    if math.prod(out) != D_ or (len(out) == 3 and out != input_shape):
        return None
    F = math.prod(h)
    entries += [("enc.mu.W", (F, int(K))), ("enc.mu.b", (int(K),))]
    if variational:
        entries += [("enc.logvar.W", (F, int(K))), ("enc.logvar.b", (int(K),))]
    entries += dec_entries + ([("dec.logvar", (D_,))] if lik == "gaussian_learned" else [])
    return entries


# valid architectures (input_shape, latent_dim, encoder, decoder), MLP and convolutional, each with every
# kind of layer somewhere; the fuzzer spoils one argument of them at a time, with bad values and with
# stacks that fit some architectures and not others
ARCHS = [
    ((4,), 2, [(0, 8), (3, 0)], [(0, 8), (3, 0), (0, 4)]),                   # the MLP 4 -> 8 -> 2 -> 8 -> 4
    ((4,), 2, [], [(0, 4)]),
    ((3,), 1, ((0, 5), (3, 1), (0, 3), (3, 4)), ((0, 4), (3, 2), (0, 3), (3, 3))),
    ((1, 6, 6), 2, [(1, 2, 3, 3, 1, 1, 1, 1), (3, 1), (4,)], [(0, 72), (5, 2, 6, 6), (2, 1, 3, 3, 1, 1, 1, 1)]),
    ((2, 5, 5), 3, [(1, 4, 3, 3, 2, 2, 1, 1), (3, 2), (4,), (0, 6), (3, 3)],
     [(0, 36), (3, 4), (5, 4, 3, 3), (2, 2, 3, 3, 2, 2, 1, 1)]),
    ((1, 4, 4), 2, [(4,)], [(0, 16)]),                                       # an image in, a flat row out
    ((1, 4, 4), 2, [], [(0, 16), (5, 1, 4, 4)]),
    ((2**24,), 2**24, [(0, 2**24)], [(0, 2**24)]),                           # petabytes of parameters
]
BAD_SHAPES = [(0,), (4, 4), [4], 4, None, (2.5,), (True,), (np.int64(4),), (2**24 + 1,), (2**12, 2**12, 2),
              (2**70,), (1, 6, 6), (4,), (-1,)]
STACKS = [5, "ab", None, [[0, 8]], [()], [(0,) * 9], [(0, 8.0)], [(0, True)], [(0, np.int64(8))], [(9,)],
              [(0, 8)] * (_core.MAX_LAYERS + 1), [(0, 0)], [(0, -1)], [(0, 2**24 + 1)], [(0, 2**70)], [(3, 5)],
              [(4,)], [(5, 2, 2, 2)], [(1, 2, 3, 3, 1, 1, 0, 0)], [(2, 2, 3, 3, 1, 1, 0, 0)],
              [(1, 2, 9, 9, 1, 1, 0, 0), (4,)], [(1, 2, 3, 3, 0, 1, 0, 0), (4,)], [(2, 2, 1, 1, 1, 1, 5, 5), (4,)],
              [(0, 3)], [(0, 4), (3, 3)], [(0, 8)] * _core.MAX_LAYERS]


SPOILERS = {0: BAD_SHAPES, 2: STACKS, 3: STACKS, 4: ["x", None, b"gaussian", "Gaussian", "gaussian_learned"],
            5: [0, 1, "yes", None, ""], 6: ["float16", None, 3, "float"],
            7: [None, 2**64, -1, 1.5, "1", np.uint64(3), True]}


@st.composite
def core_model_args(draw):
    """A valid configuration, or one with one argument spoiled (which may still be valid)."""
    shape, K_, enc, dec = draw(st.sampled_from(ARCHS))
    args = [shape, K_, enc, dec, draw(st.sampled_from(_core.LIKELIHOODS)), draw(st.booleans()),
            draw(st.sampled_from(["float32", "float64"])), draw(st.sampled_from([0, 7, 2**64 - 1]))]
    spoil = draw(st.sampled_from([None, None, 0, 1, 2, 2, 3, 3, 4, 5, 6, 7]))
    if spoil == 1:
        args[1] = draw(SIZES)
    elif spoil is not None:
        args[spoil] = draw(st.sampled_from(SPOILERS[spoil]))
    return tuple(args)


@fuzz(150)
@given(args=core_model_args())
def test_core_model_constructor_builds_or_refuses(args):
    ok, core = attempt(_core.Model, *args, allowed=CORE_ALLOWED)
    shape, K_, enc, dec, lik, var, dt, seed = args
    layout = core_layout(shape, K_, enc, dec, lik, var)
    valid = (layout is not None and dt in ("float32", "float64")
             and isinstance(seed, int) and 0 <= seed < 2**64)   # to the C API a bool is an int
    P = sum(math.prod(s) for _, s in layout) if layout is not None else 0
    if valid and P > 2**40:   # petabytes: refused cleanly
        assert not ok and isinstance(core, (MemoryError, ValueError)), (args, core)
        return
    assert ok == valid, (args, core)
    if not ok:
        return
    c = core.config
    assert c == {"input_shape": shape, "latent_dim": int(K_), "encoder": tuple(enc), "decoder": tuple(dec),
                 "likelihood": lik, "variational": bool(var), "dtype": dt}, c
    assert core.dtype == dt and core.num_params == P
    assert core.params.shape == (P,) and core.params.dtype == np.dtype(dt) and not core.params.any()
    assert core.params is core.params
    offsets = np.cumsum([0] + [math.prod(s) for _, s in layout])[:-1].tolist()
    assert core.layout() == [(name, off, s) for (name, s), off in zip(layout, offsets)]
    again = _core.Model(c["input_shape"], c["latent_dim"], c["encoder"], c["decoder"], c["likelihood"],
                        c["variational"], c["dtype"], 1)   # the config builds the same model
    assert again.config == c and again.layout() == core.layout()


@fuzz(60)
@given(cfg=configs, n=SIZES, seed=SEEDS)
def test_core_normal_draws_or_refuses(cfg, n, seed):
    core = core_model(cfg)
    state = core.rng_state
    ok, out = attempt(core.normal, n, seed, allowed=CORE_ALLOWED)
    int_like = lambda v: isinstance(v, (int, np.integer))  # to the C API a bool is an int
    if ok:   # n = 0 included: an empty (0, K) array, as NumPy gives, and nothing drawn
        assert int_like(n) and 0 <= n < 2**40 and (seed is None or int_like(seed) and 0 <= seed < 2**64)
        assert out.shape == (n, K) and out.dtype == core.params.dtype
        assert (core.rng_state == state) == (seed is not None or n == 0)
        if seed is not None:
            assert same(out, core.normal(int(n), int(seed)))
    else:
        assert core.rng_state == state
        assert not (type(n) is int and 0 <= n < 2**40 and seed_ok(seed) and type(seed) in (int, type(None))), (
            n, seed, out)
        if type(n) is int and n < 0:
            assert isinstance(out, ValueError), out


@fuzz(100)
@given(shapes=st.tuples(st.sampled_from([0, 1, 3, 7, 17, 33]), st.sampled_from([0, 1, 5, 16, 31]),
                        st.sampled_from([0, 1, 4, 9, 40])),
       ta=st.booleans(), tb=st.booleans(), ref=st.booleans(),
       dtypes=st.sampled_from([("float64", "float64"), ("float32", "float32"), ("float32", "float64"),
                               (">f8", ">f8"), ("int64", "int64"), ("float16", "float16")]),
       layout=st.sampled_from(["C"] * 5 + ["F", "neg", "readonly", "unaligned", "list", "1d"]),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1))
def test_core_matmul_multiplies_or_refuses(shapes, ta, tb, ref, dtypes, layout, threads, seed):
    M, Kd, N = shapes
    a_shape = (Kd, M) if ta else (M, Kd)
    b_shape = (N, Kd) if tb else (Kd, N)
    a = build(*a_shape, dtypes[0], layout, "normal", seed)
    b = build(*b_shape, dtypes[1], "C", "normal", seed + 1)
    before = _core.get_num_threads()
    if threads > 1 and not _core.HAVE_OPENMP:
        threads = 1
    _core.set_num_threads(threads)
    try:
        ok, c = attempt(_core.matmul, a, b, ta, tb, ref, allowed=CORE_ALLOWED)
    finally:
        _core.set_num_threads(before)
    ready = (all(isinstance(v, np.ndarray) and v.dtype in (np.dtype("float32"), np.dtype("float64"))
                 and v.ndim == 2 and v.flags.c_contiguous and v.flags.aligned for v in (a, b))
             and a.dtype == b.dtype)
    assert ok == ready, (a, b, c)
    if ok:
        A, B = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
        expect = A @ B
        assert c.shape == (M, N) and c.dtype == a.dtype
        tol = 8 * np.finfo(a.dtype).eps * (max(Kd, 1) * (np.abs(A).max(initial=0) * np.abs(B).max(initial=0)) + 1)
        np.testing.assert_allclose(c, expect, rtol=0, atol=tol)


@fuzz(60)
@given(name=st.sampled_from(list(_core.ACTIVATIONS) + ["swish", ""]), dtype=st.sampled_from(
    ["float32", "float64", ">f8", "int32"]), layout=st.sampled_from(["C", "C", "F", "neg", "list"]),
       values=st.sampled_from(["normal", "normal", "huge"]), seed=st.integers(0, 2**32 - 1))
def test_core_activation_matches_numpy_or_refuses(name, dtype, layout, values, seed):
    a = build(3, 5, dtype, layout, values, seed)
    ok, out = attempt(_core.activation, a, name, allowed=CORE_ALLOWED)
    ready = (isinstance(a, np.ndarray) and a.dtype in (np.dtype("float32"), np.dtype("float64")) and a.ndim == 2
             and a.flags.c_contiguous and name in _core.ACTIVATIONS)
    assert ok == ready, (a, name, out)
    if ok:
        x = a.astype(np.float64)
        with np.errstate(over="ignore"):
            expect = {"tanh": np.tanh(x), "relu": np.maximum(x, 0), "leaky_relu": np.where(x > 0, x, 0.01 * x),
                      "sigmoid": 1 / (1 + np.exp(-x)), "elu": np.where(x > 0, x, np.expm1(x))}[name]
        np.testing.assert_allclose(out, expect, rtol=4 * np.finfo(a.dtype).eps, atol=np.finfo(a.dtype).tiny)
        assert not np.shares_memory(out, a)


@fuzz(40)
@given(n=st.sampled_from([1, 2, 256, 0, 257, -1, 2**70, 1.0, "2", None, True]),
       isa=st.sampled_from(["baseline", "avx2+fma", "avx512f+fma", "sse", "", None, 3]))
def test_core_thread_and_isa_setters(n, isa):
    threads, best = _core.get_num_threads(), _core.get_isa()
    try:
        ok, _ = attempt(vaecore.set_num_threads, n, allowed=CORE_ALLOWED)
        plain = type(n) is int and 1 <= n <= 256 and (n == 1 or _core.HAVE_OPENMP)
        assert ok == plain
        assert _core.get_num_threads() == (n if ok else threads)
        ok, _ = attempt(_core.set_isa, isa, allowed=CORE_ALLOWED)
        order = ["baseline", "avx2+fma", "avx512f+fma"]
        assert ok == (isa in order and order.index(isa) <= order.index(best))
        assert _core.get_isa() == (isa if ok else best)
    finally:
        _core.set_num_threads(threads)
        _core.set_isa(best)


# ---------------------------------------------------------- data sets
NUMBERS = st.sampled_from([0.0, 0.03, 1, 2.5, -0.1, float("nan"), float("inf"), "0.1", None, True, 1e300])
COUNTS = st.sampled_from([1, 2, 3, 10, 0, -1, 2**45, 2**63, 2**100, 2.0, "5", None, True, np.int32(6)])
DSEEDS = st.sampled_from([0, 7, -1, 2**70, None, 1.5, "0", np.int64(3)])


def count_ok(v, low):
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low


def float_ok(v, low=0.0, strict=False):
    return (not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
            and math.isfinite(float(v)) and (float(v) > low if strict else float(v) >= low))


@fuzz(150)
@given(which=st.sampled_from(["two_spirals", "moons", "rings", "gaussian_mixture"]),
       n=COUNTS, a=NUMBERS, b=NUMBERS, c=COUNTS, seed=DSEEDS)
def test_toy_data_sets_generate_or_refuse(which, n, a, b, c, seed):
    fn = getattr(datasets, which)
    kwargs = {"two_spirals": dict(n=n, noise=a, turns=b, seed=seed), "moons": dict(n=n, noise=a, seed=seed),
              "rings": dict(n=n, noise=a, n_rings=c, seed=seed),
              "gaussian_mixture": dict(n=n, k=c, radius=b, std=a, seed=seed)}[which]
    ok, out = attempt(fn, **kwargs)
    seed_valid = count_ok(seed, 0)
    if which == "two_spirals":
        valid = count_ok(n, 2) and float_ok(a) and float_ok(b, strict=True) and float(b) <= 1e6 and seed_valid
    elif which == "moons":
        valid = count_ok(n, 2) and float_ok(a) and seed_valid
    elif which == "rings":
        valid = count_ok(c, 1) and count_ok(n, c if count_ok(c, 1) else 1) and float_ok(a) and seed_valid
    else:
        valid = (count_ok(c, 1) and count_ok(n, c if count_ok(c, 1) else 1) and float_ok(b) and float_ok(a)
                 and seed_valid)
    if valid and (n >= 2**40 or (which in ("rings", "gaussian_mixture") and c >= 2**40)):
        assert not ok and isinstance(out, (MemoryError, ValueError)), out
        return
    assert ok == valid, (which, kwargs, out)
    if ok:
        X, y = out[0], out[-1]
        assert X.shape == (n, 2) and X.dtype == np.float64 and y.shape == (n,) and y.dtype == np.int64
        assert np.isfinite(X).all() or max(float(a), float(b)) > 1e100
        assert same(out, fn(**kwargs))


@fuzz(25)
@given(n=st.sampled_from([1, 2, 5, 0, -1, 2**45, 2.0, None]), size=st.sampled_from([16, 17, 15, 2**45, 0, "16"]),
       seed=DSEEDS)
def test_shapes_generate_or_refuse(n, size, seed):
    ok, out = attempt(datasets.shapes, n=n, size=size, seed=seed)
    valid = count_ok(n, 1) and count_ok(size, 16) and count_ok(seed, 0)
    if valid and (n >= 2**40 or size >= 2**20):
        assert not ok and isinstance(out, (MemoryError, ValueError)), out
        return
    assert ok == valid, (n, size, seed, out)
    if ok:
        X, factors, _ = out
        assert X.shape == (n, size * size) and set(np.unique(X)) <= {0.0, 1.0} and factors.shape == (n, 5)


@fuzz(100)
@given(header=st.sampled_from([b"\0\0\x08\x01", b"\0\0\x08\x02", b"\0\0\x0d\x01", b"\0\0\x0e\x03", b"\0\0\x07\x01",
                               b"\0\0\x08\x00", b"\1\0\x08\x01", b"\0\0\x08", b""]),
       dims=st.lists(st.sampled_from([0, 1, 2, 3, 2**31, 2**32 - 1]), max_size=4),
       payload=st.binary(max_size=64), gz=st.booleans(), junk=st.booleans())
def test_load_idx_reads_or_refuses(tmp_path_factory, header, dims, payload, gz, junk):
    import gzip
    import struct
    raw = header + b"".join(struct.pack(">I", d) for d in dims) + payload
    if gz:
        raw = gzip.compress(raw)
        if junk:
            raw = raw[:-3]
    path = tmp_path_factory.mktemp("idx") / "f.idx"
    path.write_bytes(raw)
    ok, out = attempt(datasets.load_idx, path)
    if ok:
        assert isinstance(out, np.ndarray) and out.flags.writeable and out.dtype.isnative
    else:
        assert isinstance(out, ValueError), out


@fuzz(20)
@given(split=st.sampled_from(["train", "test", "all", "valid", None, 0]),
       path=st.sampled_from(["empty", "missing", 3, None]))
def test_digits_and_fashion_mnist_refuse_bad_arguments(tmp_path_factory, split, path):
    ok, out = attempt(datasets.digits, split)
    assert ok == (split in ("train", "test", "all"))
    if ok:
        assert out[0].shape[1] == 64 and out[0].dtype == np.float32
    where = {"empty": tmp_path_factory.mktemp("fm"), "missing": "/nonexistent/fm", 3: 3, None: None}[path]
    if where is None:
        return   # the system copy: test_datasets covers it
    # path= (keyword only since fashion_mnist gained download=) reads that folder only, never Debian's
    ok, out = attempt(datasets.fashion_mnist, split, path=where, allowed=ALLOWED + (FileNotFoundError,))
    assert not ok
    assert isinstance(out, FileNotFoundError) == (split in ("train", "test") and path in ("empty", "missing"))


# ------------------------------------------------------------- metrics
@fuzz(100)
@given(which=st.sampled_from(["mutual_information", "mig"]), data=st.data(),
       n_bins=st.sampled_from([2, 5, 20, 20, 1, 0, 2**40, 2**70, 2.0, None, True]))
def test_metrics_score_or_refuse(which, data, n_bins):
    latents = data.draw(matrices(3))
    n = len(latents) if isinstance(latents, np.ndarray) and latents.ndim == 2 else 4
    kind = data.draw(st.sampled_from(["int", "int", "float", "bool", "1d", "rows"]))
    rng = np.random.default_rng(n)
    factors = {"int": rng.integers(0, 3, (n, 2)), "float": rng.random((n, 2)), "bool": rng.random((n, 2)) > 0.5,
               "1d": rng.integers(0, 3, n), "rows": rng.integers(0, 3, (n + 1, 2))}[kind]
    ok, out = attempt(getattr(metrics, which), latents, factors, n_bins)
    try:
        lat = np.asarray(latents)
    except Exception:
        lat = np.asarray(None)
    valid = (lat.dtype.kind in "iuf" and lat.ndim == 2 and lat.shape[0] >= 1 and lat.shape[1] >= 1
             and np.isfinite(lat.astype(np.float64)).all() and kind == "int" and count_ok(n_bins, 2)
             and n_bins <= 2**52)
    if ok:
        assert valid
        if which == "mig":
            assert 0 <= out <= 1
        else:
            assert out.shape == (lat.shape[1], 2) and (out >= 0).all() and np.isfinite(out).all()
    else:
        # the one refusal of valid input: MIG is undefined when every factor is constant
        assert not valid or (which == "mig" and all(len(np.unique(f)) == 1 for f in factors.T)), out


# ------------------------------------------------------------- priors over codes (issue 13)
import functools   # noqa: E402
import pickle      # noqa: E402

# vaecore._core.Stack takes exactly the arrays of its dtype (core_ready), as _core.Model does; the priors
# take code grids: anything np.asarray makes into an integer array (bool refused) of shape (n, *grid_shape)
# with every value in [0, codebook_size), restated here from their documentation.
CODE_DTYPES = ["int64"] * 4 + ["int32", "uint8", "int8", ">i8", "float64", "float32", "bool", "object", "<U3"]
CODE_LAYOUTS = ["C"] * 4 + ["F", "neg", "broadcast", "readonly", "list", "flat", "extra", "scalar"]
CODE_VALUES = ["ok"] * 4 + ["negative", "too big", "huge"]


@st.composite
def code_grids(draw, K=3):
    """Mostly (n, 2, 2) grids of codes in [0, K), of assorted dtypes, layouts and values; sometimes wrong."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(WRONG))
    n = draw(st.sampled_from([1, 2, 5, 5, 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.integers(0, K, size=(n, 2, 2))
    values = draw(st.sampled_from(CODE_VALUES))
    if values != "ok" and a.size:
        a.flat[rng.integers(a.size)] = {"negative": -1, "too big": K, "huge": 2**40}[values]
    dt = draw(st.sampled_from(CODE_DTYPES))
    with np.errstate(all="ignore"):
        a = a.astype(dt) if not (dt in ("int8", "uint8", "int32") and values == "huge") else a
    layout = draw(st.sampled_from(CODE_LAYOUTS))
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "neg":
        return a[::-1, ::-1]
    if layout == "broadcast":
        return np.broadcast_to(a[:1], a.shape) if n else a
    if layout == "readonly":
        a.flags.writeable = False
        return a
    if layout == "list":
        return a.tolist()
    if layout == "flat":
        return a.reshape(n, 4)
    if layout == "extra":
        return a[..., None]
    if layout == "scalar":
        return a.flat[0] if a.size else 1
    return a


def codes_ok(a, K=3, grid=(2, 2)):
    try:
        arr = np.asarray(a)
    except Exception:
        return None
    if arr.dtype.kind not in "iu" or arr.ndim < 1 or arr.shape[1:] != grid:
        return None
    if arr.size and (arr.min() < 0 or arr.max() >= K):
        return None
    return np.ascontiguousarray(arr, dtype=np.int64)


@functools.cache
def fitted_priors():
    codes = np.random.default_rng(0).integers(0, 3, size=(30, 2, 2))
    made = vaecore.AutoregressivePrior(3, hidden=(5,), dtype="float64", seed=0).fit(codes, epochs=1, progress=False)
    return vaecore.IndependentPrior(3).fit(codes), made


@fuzz(60)
@given(which=st.sampled_from([0, 1]), method=st.sampled_from(["log_prob", "nll_bits", "fit"]), codes=code_grids())
def test_prior_methods_work_or_refuse(which, method, codes):
    p = fitted_priors()[which]
    snap = snapshot(codes)
    clean_codes = codes_ok(codes)
    if method == "fit":
        p = pickle.loads(pickle.dumps(p))     # a copy: fitting must not disturb the shared priors
        kwargs = {} if which == 0 else dict(epochs=1, progress=False)
        ok, out = attempt(p.fit, codes, **kwargs)
        # fit takes any grid shape (the shape of its codes becomes the prior's), at least one example
        clean_codes = codes_ok(codes, grid=np.shape(codes)[1:] if np.ndim(codes) >= 1 else None)
        assert ok == (clean_codes is not None and clean_codes.shape[0] >= 1), (codes, out)
        if ok:
            assert p.grid_shape == clean_codes.shape[1:]
            twin = type(p)(3) if which == 0 else vaecore.AutoregressivePrior(3, hidden=(5,), dtype="float64")
            twin.fit(clean_codes, **kwargs)
            assert same(p.log_prob(clean_codes), twin.log_prob(clean_codes))
    else:
        ok, out = attempt(getattr(p, method), codes)
        want_ok = clean_codes is not None and (method == "log_prob" or clean_codes.shape[0] >= 1)
        assert ok == want_ok, (codes, out)
        if ok:
            assert same(out, getattr(p, method)(clean_codes))
    assert untouched(codes, snap) if isinstance(codes, np.ndarray) else True


def stack_inputs(rows, cols, dt):
    """Every kind of input for one array argument of _core.Stack: each dtype x kind of value in C order,
    each layout x kind of value in the stack's dtype, and every wrong type."""
    i = 0
    for val in dict.fromkeys(VALUES):
        for d in dict.fromkeys(DTYPES):
            i += 1
            yield build(rows, cols, d, "C", val, i)
        for lay in dict.fromkeys(LAYOUTS):
            i += 1
            yield build(rows, cols, dt, lay, val, i)
    yield from WRONG


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("which", ["forward", "backward.x", "backward.dout", "adam_step.grads", "adam_step.m"])
def test_stack_calls_work_or_refuse(which, dt):
    core = vaecore.AutoregressivePrior(2, hidden=(3,), dtype=dt).fit(np.zeros((2, 2), int), epochs=0,
                                                                       progress=False)._core
    D, P = core.input_dim, core.num_params
    rng = np.random.default_rng(0)
    x, dout = rng.random((3, D)).astype(dt), rng.normal(size=(3, D)).astype(dt)
    fn, _, arg = which.partition(".")
    if fn == "adam_step":
        m, v = np.zeros(P, dt), np.zeros(P, dt)
        grads = rng.normal(size=P).astype(dt) * 1e-3
        pool = [a.ravel() if isinstance(a, np.ndarray) and a.ndim == 2 else a for a in stack_inputs(1, P, dt)]
        pool += [np.zeros(P + 1, dt), np.zeros((P, 1), dt), core.params, core.params[::-1], m, v, m[::-1]]
        for a in pool:
            args = {"grads": grads, "m": m}
            args[arg] = a
            before, t = np.array(core.params), np.zeros(1, np.int64)
            ok, out = attempt(core.adam_step, args["grads"], args["m"], v, t, 1e-3, 0.9, 0.999, 1e-8,
                              allowed=CORE_ALLOWED)
            g, mm = args["grads"], args["m"]
            ready = all(isinstance(b, np.ndarray) and b.dtype == np.dtype(dt) and b.shape == (P,)
                        and b.flags.c_contiguous and b.flags.aligned for b in (g, mm))
            ready = (ready and mm.flags.writeable and finite(g)
                     and not any(np.shares_memory(b, c) for b, c in [(g, core.params), (mm, core.params), (g, mm),
                                                                       (g, v), (mm, v)]))
            # huge gradients, or a NaN, Inf or huge value in the moment m, make the update overflow: then a
            # FloatingPointError is right
            overflows = ready and (not finite(mm) or max(float(np.max(np.abs(b), initial=0)) for b in (g, mm)) > 1e30)
            if overflows and not ok:
                assert isinstance(out, FloatingPointError), out
            else:
                assert ok == ready, (which, a, out)
            assert t[0] == (1 if ok else 0)
            if not ok:
                np.testing.assert_array_equal(core.params, before)
        return
    for a in stack_inputs(3, D, dt):
        snap = snapshot(a)
        if fn == "forward":
            ok, out = attempt(core.forward, a, allowed=CORE_ALLOWED)
            assert ok == (core_ready(a, dt, D) and finite(a)), (which, a, out)
            if ok:
                assert same(out, core.forward(np.array(a)))
        else:
            args = {"x": x, "dout": dout}
            args[arg] = a
            ok, out = attempt(core.backward, args["x"], args["dout"], allowed=CORE_ALLOWED)
            ready = (core_ready(args["x"], dt, D, rows=3) and finite(args["x"])
                     and core_ready(args["dout"], dt, D, rows=3) and finite(args["dout"]))
            assert ok == ready, (which, a, out)
            if ok:
                assert same(out, core.backward(np.array(args["x"]), np.array(args["dout"])))
        assert untouched(a, snap)
