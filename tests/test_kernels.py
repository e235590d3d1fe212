"""The fast kernels of the C core against their plain references.

gemm (packed, register-blocked, threaded) against the triple loop it replaces
and against NumPy, for every instruction set this CPU runs, both dtypes,
transposes, edge sizes and thread counts; the vectorized exp-based
activations against NumPy's; whole training runs bitwise independent of the
thread count.
"""
import numpy as np
import pytest

import vaecore
from vaecore import _core

ISAS = [isa for isa in ("baseline", "avx2+fma", "avx512f+fma")
        if isa == "baseline" or _core.get_isa() in ("avx512f+fma",) or isa == _core.get_isa()]


@pytest.fixture(params=ISAS)
def isa(request):
    before = _core.get_isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


@pytest.fixture(params=[1, 2])
def threads(request):
    if request.param > 1 and not _core.HAVE_OPENMP:
        pytest.skip("this build has no OpenMP")
    before = _core.get_num_threads()
    _core.set_num_threads(request.param)
    yield request.param
    _core.set_num_threads(before)


# sizes around the micro-tile edges (MR = 6, 8 or 14, NR = 8..32), the depth
# block (KC = 256), thin products computed as C^T = B^T A^T (N of 1 to 5),
# and a case large enough to be split among threads
SHAPES = [(1, 1, 1), (5, 7, 3), (6, 8, 9), (14, 32, 1), (15, 33, 257), (29, 17, 300),
          (64, 64, 64), (130, 70, 513), (3, 1100, 20), (256, 300, 260),
          (64, 2, 64), (200, 5, 33), (33, 1, 300), (1500, 3, 40),
          # big tiles whose last rows (270 = 19 x 14 + 4) and last panel of columns (400 = 12 x 32 + 16,
          # one vector in float32 AVX-512) take the edge micro-kernels
          (270, 400, 300),
          # several blocks of A's rows (MC = 24 MR); tall (M >= 4 N), so threads split its rows
          (700, 96, 300),
          # mid-sized products that read A in place and pack B a panel at a time: few columns
          # (a last panel of 16, one float32 AVX-512 vector), and few rows
          (128, 48, 256), (12, 600, 300)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_reference_loop_and_numpy(isa, threads, dtype, ta, tb):
    rng = np.random.default_rng(0)
    for M, N, K in SHAPES:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
        exact = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        fast = _core.matmul(a, b, ta, tb)
        ref = _core.matmul(a, b, ta, tb, True)
        # both sum K products of N(0, 1) numbers: the rounding error grows like
        # sqrt(K) ulps of the terms; 8 sqrt(K) eps bounds it with room
        tol = 8 * np.sqrt(K) * np.finfo(dtype).eps
        assert fast.dtype == dtype and fast.shape == (M, N)
        assert np.abs(fast - exact).max() <= tol * max(1.0, np.abs(exact).max()), (M, N, K)
        assert np.abs(ref - exact).max() <= tol * max(1.0, np.abs(exact).max()), (M, N, K)


# products whose threads pack each block of A together, a share of its panels each (gemm_team_mr):
# one block of A's rows; three blocks (MC = 24 MR) over two depth blocks, so that both A buffers
# take turns; and columns per thread few enough for the short micro-tile (under 2^24 multiply-adds)
TEAM_SHAPES = [(300, 900, 700), (800, 700, 300), (64, 1100, 300)]
# tall products (M >= 4 N), whose threads split the rows (gemm_rows): parts of whole tall micro-tiles
# over two depth blocks, parts of short ones (under 2^24 multiply-adds, one clipped), and one panel
# of columns (N <= 32), which split nothing before
ROW_SHAPES = [(3000, 200, 300), (1000, 64, 130), (333, 20, 700)]


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True)])
def test_gemm_is_bitwise_independent_of_threads(isa, ta, tb):
    if not _core.HAVE_OPENMP:
        pytest.skip("this build has no OpenMP")
    rng = np.random.default_rng(1)
    for M, N, K in TEAM_SHAPES + ROW_SHAPES:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        out = []
        try:
            for t in (1, 2, 3):
                _core.set_num_threads(t)
                out.append(_core.matmul(a, b, ta, tb))
        finally:
            _core.set_num_threads(1)
        assert out[0].tobytes() == out[1].tobytes() == out[2].tobytes(), (M, N, K)
        # and right: the tolerance of test_gemm_matches_reference_loop_and_numpy
        exact = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        assert np.abs(out[1] - exact).max() <= 8 * np.sqrt(K) * np.finfo(np.float32).eps * np.abs(exact).max()


# (M, N, K) products that read A in place (gemm.inc's gemm_path: few columns, under the ISA's
# limit of multiply-adds, 2^24 or in float32 on AVX2 2^26) and, with 8x the rows, are packed
# instead: two under 2^24 on every ISA (the first with a last partial panel and depth block), then
# two between the limits (33.5M and 19.2M multiply-adds)
PATH_SHAPES = [(120, 250, 500), (100, 40, 300), (256, 128, 1024), (200, 64, 1500)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True)])
def test_gemm_paths_sum_alike(isa, threads, dtype, ta, tb):
    # Rows of C are independent, so the first M rows of (8M x K) @ B are A @ B. The big product
    # packs A, the small one reads it in place; both give every element the same chain of
    # multiply-adds, so they agree to the bit. That is what lets each ISA choose its own limit
    # between the paths for speed alone.
    rng = np.random.default_rng(3)
    for M, N, K in PATH_SHAPES:
        big = rng.standard_normal((8 * M, K)).astype(dtype)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
        a_big, a = (np.ascontiguousarray(big.T), np.ascontiguousarray(big[:M].T)) if ta else (big, big[:M])
        assert _core.matmul(a, b, ta, tb).tobytes() == _core.matmul(a_big, b, ta, tb)[:M].tobytes(), (M, N, K)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tb", [False, True])
def test_thin_products_sum_every_row_alike(isa, dtype, tb):
    # A product of at most 4 columns (gemm.inc's gemm_thin: the spiral VAE's heads and output)
    # adds the lanes of a vector's rows at a time, transposed, and those of the last M % VL rows
    # one row at a time, in the same order. So the last rows, copies of the first ones, must give
    # bitwise the same elements of C. 19 rows leave a remainder for every vector width (VL = 2 to
    # 16); K = 64 ends on whole vectors, 37 and 5 leave the terms added one by one.
    rng = np.random.default_rng(7)
    for N in (1, 2, 3, 4):
        for K in (64, 37, 5):
            a = rng.standard_normal((19, K)).astype(dtype)
            a[16:] = a[:3]
            a[18] = a[1]   # row 18 is in the remainder for every VL up to 16; 16 and 17 are not for VL = 2
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            c = _core.matmul(a, b, False, tb)
            assert c[16:].tobytes() == c[[0, 1, 1]].tobytes(), (N, K)
            exact = a.astype(np.float64) @ (b.T if tb else b).astype(np.float64)
            assert np.abs(c - exact).max() <= 8 * np.sqrt(K) * np.finfo(dtype).eps * np.abs(exact).max(), (N, K)


def test_matmul_rejects_bad_input():
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        _core.matmul(a, a)
    with pytest.raises(TypeError, match="same dtype"):
        _core.matmul(a, np.zeros((4, 2)))
    with pytest.raises(TypeError, match="2-D C-contiguous"):
        _core.matmul(a.T, a)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        _core.matmul([[1.0]], a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_are_accurate(isa, dtype):
    # The exp-based tanh, sigmoid and elu have outputs in [-1, 1] (elu's
    # negative side); their absolute error, measured at most 0.75 eps (float32)
    # and 1.0 eps (float64) on this grid, must stay within 2 eps. The rectifiers
    # and elu's positive side are exact.
    x = np.concatenate([np.linspace(-30, 30, 20001), np.geomspace(1e-12, 1, 500),
                        -np.geomspace(1e-12, 1, 500), [0.0, -0.0, 80.0, -80.0, 200.0, -200.0]])
    x = x.astype(dtype)[None, :]
    x64 = x.astype(np.float64)
    eps = np.finfo(dtype).eps
    truth = {
        "tanh": np.tanh(x64),
        "sigmoid": 1 / (1 + np.exp(-x64)),
        "elu": np.where(x64 > 0, x64, np.expm1(np.minimum(x64, 0))),
        "relu": np.maximum(x64, 0),
        "leaky_relu": np.where(x64 > 0, x64, x.astype(np.float64) * np.float64(dtype(0.01))),
    }
    for name, want in truth.items():
        got = _core.activation(x, name).astype(np.float64)
        bounded = np.abs(want) <= 1
        assert np.abs(got - want)[bounded].max() <= 2 * eps, name
        # and relative to the value itself, also near 0, where tanh and elu's e^x - 1 switch to their
        # Taylor series (|x| < 1/4): measured at most 2.0 eps; the fuzz tests allow 4 eps
        tiny = np.abs(want) > np.finfo(dtype).tiny
        assert (np.abs(got - want)[tiny] / np.abs(want)[tiny]).max() <= 2.5 * eps, name
        exact = ~bounded
        if name in ("relu", "elu"):
            assert np.array_equal(got[exact], want[exact]), name
        elif name == "leaky_relu":
            assert np.allclose(got[exact], want[exact], rtol=eps, atol=0), name
    for name in ("tanh", "sigmoid", "elu"):
        assert np.isnan(_core.activation(np.array([[np.nan]], dtype), name)[0, 0]), name


def test_softplus_loss_is_accurate_for_extreme_logits(isa):
    # a decoder whose logits are huge and tiny: the Bernoulli loss stays exact
    m = vaecore.VAE(3, 1, hidden=(), decoder_hidden=(), likelihood="bernoulli", dtype="float64")
    named = dict(m.named_params())
    named["dec.out.W"][...] = 0
    named["dec.out.b"][...] = [-60.0, 0.5, 45.0]
    x = np.array([[1.0, 0.3, 0.0]])
    st = m.loss(x, eps=np.zeros((1, 1)))
    l = named["dec.out.b"]
    want = np.sum(np.logaddexp(0, l) - x[0] * l)
    assert st["recon"] == pytest.approx(want, rel=1e-13)


# clip_norm 0.01 clips every step, so the gradient's norm (summed in chunks, on threads for a
# layer of 2^16 values or more: 300 x 512 here) sets every update's scale to its last bit
@pytest.mark.parametrize("clip", [None, 0.01])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_is_bitwise_independent_of_threads(dtype, clip):
    if not _core.HAVE_OPENMP:
        pytest.skip("this build has no OpenMP")
    X = np.random.default_rng(0).random((512, 300))
    results = []
    try:
        for t in (1, 2, 3):
            vaecore.set_num_threads(t)
            m = vaecore.VAE(300, 8, hidden=(512, 256), activation="relu", dtype=dtype, seed=2)
            vaecore.fit(m, X, epochs=2, batch_size=256, progress=False,
                        optimizer=vaecore.Adam(m, lr=1e-3, clip_norm=clip))
            results.append(m.params.tobytes())
    finally:
        vaecore.set_num_threads(1)
    assert results[0] == results[1] == results[2]


def test_every_isa_trains_to_the_same_gradients():
    # the ISAs differ only by rounding (FMA, summation order inside gemm); a model picks its
    # kernels when it is made, so each ISA gets a model of its own (the same seed, the same weights)
    x = (np.random.default_rng(0).random((33, 7)) > 0.5).astype(float)
    eps = np.random.default_rng(1).standard_normal((33, 3))
    before = _core.get_isa()
    grads = {}
    for isa in ISAS:
        _core.set_isa(isa)
        m = vaecore.VAE(7, 3, hidden=(40, 20), activation="elu", likelihood="bernoulli", dtype="float64", seed=1)
        grads[isa] = m.loss_and_grad(x, beta=0.3, eps=eps)[1]
    _core.set_isa(before)
    assert len(set(g.tobytes() for g in grads.values())) > 1 or len(ISAS) == 1   # the kernels really differ
    g0 = grads["baseline"]
    for g in grads.values():
        assert np.abs(g - g0).max() <= 1e-12 * np.abs(g0).max()


def test_threads_and_isa_api():
    assert vaecore.get_num_threads() >= 1
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 256\]"):
        vaecore.set_num_threads(0)
    with pytest.raises(ValueError):
        vaecore.set_num_threads(True)
    with pytest.raises(ValueError, match="name must be 'baseline'"):
        _core.set_isa("sse9")
    with pytest.raises(TypeError):
        _core.set_isa(3)
    assert _core.get_isa() in ("baseline", "avx2+fma", "avx512f+fma")


def test_a_training_step_allocates_nothing():
    # after the first step the work buffers are reused: NumPy allocates no
    # array and the C core no buffer (its buffers are counted by the resident
    # memory test of tests/test_leaks.py; here tracemalloc sees NumPy's)
    import tracemalloc

    m = vaecore.VAE(50, 4, hidden=(64, 32), dtype="float32")
    opt = vaecore.Adam(m)
    x = np.random.default_rng(0).random((32, 50)).astype(np.float32)
    eps = np.zeros((32, 4), np.float32)
    for _ in range(3):
        m.train_step(x, opt)
        m.train_step(x, opt, eps=eps)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            m.train_step(x, opt)
            m.train_step(x, opt, eps=eps)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    # a few hundred bytes of interpreter bookkeeping at most; one leaked
    # (32, 4) eps array per step would be 200 * 512 bytes
    assert grown < 4096, grown


def test_profile_times_the_phases_of_training_steps_only_while_on():
    # _core.profile (csrc/hooks.c, vae.h's VaeProfile): while on, each training step adds its phases'
    # wall time, and the matrix products their own time (packing included) to the phase they run in.
    # Inclusions that must hold whatever the machine: pack <= gemm <= phase total; the loss, the noise
    # and the optimizer call no gemm. Off, nothing is added; turning it on starts from zero.
    m = vaecore.VAE(64, 8, hidden=(128, 128), seed=0)
    opt = vaecore.Adam(m)
    x = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    _core.profile(True)
    for _ in range(4):
        m.train_step(x, opt)
    p = _core.profile(False)
    assert p["steps"] == 4
    for ph in ("forward", "backward"):
        assert 0 < p["pack"][ph] <= p["gemm"][ph] <= p["total"][ph]
    for ph in ("noise", "loss", "optimizer"):
        assert p["gemm"][ph] == 0 and p["pack"][ph] == 0 and p["total"][ph] > 0
    # Adam's check pass lies within the optimizer's time, the gradient's norm within the backward
    # pass's time outside its products
    assert 0 < p["check"] < p["total"]["optimizer"]
    assert 0 < p["norm"] < p["total"]["backward"] - p["gemm"]["backward"]
    m.train_step(x, opt)                       # off: the counters stay as they were
    assert _core.profile(False) == p
    assert _core.profile(True)["steps"] == 4   # returns what it held, then starts from zero
    assert _core.profile(False)["steps"] == 0


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-4)])
def test_every_isa_packs_convolutions_alike(dtype, tol):
    # im2col is packed straight into gemm's panels, with masked vector gathers on AVX-512 and AVX2
    # (zeros where the kernel overhangs the image) and a scalar loop otherwise. Packing only moves
    # numbers, so the ISAs' gradients differ by gemm's rounding alone; one wrong lane of a mask would
    # put a pixel where padding belongs (or drop one) and differ by far more. Strides 1 and 2, padding
    # on every side, and channels of 1 and 6 cover the masks' edge cases; the batch of 12 images makes
    # the products big enough to be packed.
    from vaecore import layers as L
    rng = np.random.default_rng(2)
    x = rng.random((12, 1, 28, 28)).astype(dtype)
    eps = rng.standard_normal((12, 4))
    before = _core.get_isa()
    grads = {}
    for isa in ISAS:
        _core.set_isa(isa)
        m = vaecore.VAE(input_shape=(1, 28, 28), latent_dim=4,
                        encoder=[L.Conv2d(6, 3, padding=1), L.ReLU(), L.Conv2d(8, 4, stride=2, padding=1), L.ReLU()],
                        decoder=[L.Linear(6 * 14 * 14), L.Reshape(6, 14, 14), L.ReLU(),
                                 L.ConvTranspose2d(4, 4, stride=2, padding=1), L.ReLU(), L.Conv2d(1, 5, padding=2)],
                        likelihood="bernoulli", dtype=dtype, seed=3)
        grads[isa] = m.loss_and_grad(x, beta=1.0, eps=eps)[1]
    _core.set_isa(before)
    g0 = grads["baseline"]
    for isa, g in grads.items():
        assert np.abs(g - g0).max() <= tol * np.abs(g0).max(), isa
