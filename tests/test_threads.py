"""Many Python threads on one model: no crash, no exception, no corruption (issue 4, item 5).

Calls that mutate a model (train_step, and everything that draws from the model's noise generator) are
serialised by a per-model lock: N threads x M steps with one optimizer end exactly where N*M steps in
one thread end, bitwise. Read-only calls (encode, decode, loss with given noise) take no lock and run
in parallel with the GIL released: the main thread runs Python code while another thread is inside a
long encode. Every thread is joined with a timeout, so a deadlock fails the test instead of hanging it.
"""
import threading
import time

import numpy as np
import pytest

import vaecore
from vaecore import _core

TIMEOUT = 120   # seconds for any thread to finish: far above the few ms each run takes
THREAD_COUNTS = [1, 2] if _core.HAVE_OPENMP else [1]


def run_threads(target, n, *args):
    """Run target(i, *args) in n threads started together; return the exceptions they raised."""
    errors, start = [], threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            target(i, *args)
        except BaseException as e:   # noqa: BLE001 - any exception in a thread is a failure of the test
            errors.append(e)
    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread is stuck: deadlock"
    return errors


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"omp{n}")
def omp_threads(request):
    before = _core.get_num_threads()
    _core.set_num_threads(request.param)
    yield request.param
    _core.set_num_threads(before)


def model(dtype="float32", cls=vaecore.VAE):
    return cls(6, 3, hidden=(32, 16), dtype=dtype, seed=0)


DATA = np.random.default_rng(0).random((64, 6))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_concurrent_train_steps_are_serialised_exactly(dtype, omp_threads):
    # N threads x M steps on one model with one Adam, the noise drawn from the model's generator, while
    # other threads read (encode, decode, loss and loss_and_grad with given noise, rng_state): the result
    # is bitwise that of N*M steps in one thread, because each step runs whole under the model's lock and
    # draws its noise there, in step order
    N, M = 8, 25
    m = model(dtype)
    opt = vaecore.Adam(m, lr=1e-2)
    x = DATA.astype(dtype)
    eps = np.random.default_rng(1).normal(size=(64, 3))

    def work(i):
        for j in range(M):
            if i % 2 == 0:
                st = m.train_step(x, opt, beta=0.5)
                assert np.isfinite(st["loss"])
            else:   # readers; their own results depend on when they ran, only their sanity is checked
                mu, logvar = m.encode(x)
                assert mu.shape == (64, 3) and logvar.shape == (64, 3)
                assert m.decode(mu).shape == (64, 6)
                assert np.isfinite(m.loss(x, eps=eps)["loss"])
                assert m.loss_and_grad(x, eps=eps)[1].shape == m.params.shape
                assert len(m.rng_state) == 4
                st = m.train_step(x, opt, beta=0.5)
                assert np.isfinite(st["loss"])
    assert run_threads(work, N) == []
    assert opt.t == N * M
    ref = model(dtype)
    ref_opt = vaecore.Adam(ref, lr=1e-2)
    for _ in range(N * M):
        ref.train_step(x, ref_opt, beta=0.5)
    assert m.params.tobytes() == ref.params.tobytes() and m.rng_state == ref.rng_state
    assert opt.m.tobytes() == ref_opt.m.tobytes() and opt.v.tobytes() == ref_opt.v.tobytes()


def test_the_c_lock_alone_serialises_core_steps(omp_threads):
    # Straight to vaecore._core (VAE.train_step has no lock of its own: the model's C lock is the only one):
    # SGD without momentum and with fixed noise makes every step the same function of the parameters, so any
    # interleaving of whole steps gives the sequential result, and any torn step (two updates mixing) would
    # not. The threads share one step counter, which each step advances inside the lock: a lost or doubled
    # increment would show in its final count.
    N, M = 8, 25
    m = model("float64")
    core, x = m._core, DATA.copy()
    eps = np.random.default_rng(2).normal(size=(64, 3))
    t = np.zeros(1, np.int64)

    def args(t):   # kind 0: SGD, no state
        return (x, 0.5, eps, 0, 1e-2, 0.0, 0.0, 1.0, 0.0, 0.0, t, None, None)

    def work(i):
        for _ in range(M):
            core.train_step(*args(t))
    assert run_threads(work, N) == []
    ref, ref_t = model("float64"), np.zeros(1, np.int64)
    for _ in range(N * M):
        ref._core.train_step(*args(ref_t))
    assert core.params.tobytes() == ref._core.params.tobytes()
    assert t[0] == ref_t[0] == N * M


@pytest.mark.parametrize("cls", [vaecore.VAE, vaecore.AE])
def test_everything_at_once_never_crashes_or_corrupts(cls, omp_threads):
    # every public method of one model from 12 threads at once, mutating and reading, with the noise
    # generator state read and set underneath: no exception, finite parameters, every step counted
    m = cls(6, 3, hidden=(32, 16), dtype="float32", seed=0)
    adam, sgd = vaecore.Adam(m, lr=1e-3), vaecore.SGD(m, 1e-3, momentum=0.9)
    x = DATA.astype(np.float32)
    steps = {"adam": 0, "sgd": 0}
    count = threading.Lock()

    def work(i):
        rng = np.random.default_rng(i)
        for j in range(40):
            op = (i + j) % 12
            if op == 0:
                m.train_step(x, adam, beta=0.5)
                with count:
                    steps["adam"] += 1
            elif op == 1:
                m.train_step(x[:7], sgd)
                with count:
                    steps["sgd"] += 1
            elif op == 2:
                assert np.isfinite(m.loss(x)["loss"])             # draws noise (VAE)
            elif op == 3:
                st, g = m.loss_and_grad(x[:5])
                assert np.isfinite(st["loss"]) and np.isfinite(g).all()
            elif op == 4:
                assert np.isfinite(m.encode(x)[0]).all()
            elif op == 5:
                assert np.isfinite(m.decode(rng.normal(size=(9, 3)))).all()
            elif op == 6:
                assert np.isfinite(m.sample(11)).all()
            elif op == 7:
                assert np.isfinite(m.sample(3, seed=int(rng.integers(1000)))).all()
            elif op == 8:
                z = m.reparameterize(rng.normal(size=(4, 3)), *(() if cls is vaecore.AE else
                                                                (rng.normal(size=(4, 3)),)))
                assert np.isfinite(z).all()
            elif op == 9:
                state = m.rng_state
                assert len(state) == 4 and any(state)
                m.rng_state = tuple(int(v) for v in rng.integers(1, 2**63, size=4))
            elif op == 10:
                assert np.isfinite(m.reconstruct(x[:3])).all()
            else:
                if cls is vaecore.VAE:
                    assert np.isfinite(m.elbo(x[:4], seed=3)).all()
                assert len(m.named_params()) > 0 and m.num_params == m.params.size
    assert run_threads(work, 12) == []
    assert adam.t == steps["adam"] > 0 and sgd.t == steps["sgd"] > 0
    assert np.isfinite(m.params).all() and np.isfinite(adam.m).all() and np.isfinite(sgd.buf).all()
    m.train_step(x, adam)   # and the model still trains
    assert adam.t == steps["adam"] + 1


def test_read_only_calls_release_the_gil():
    # While one thread is inside a long encode (~0.3 s of C), the main thread keeps running Python code:
    # it records timestamps as fast as it can. With the GIL held during the C computation, no timestamp
    # could fall in the middle half of the call (at most a switch interval, 5 ms, after it began). Two
    # threads encoding at once must both finish (no deadlock) with the single-threaded result.
    m = vaecore.VAE(256, 8, hidden=(512, 512), dtype="float32", seed=0)
    x = np.random.default_rng(0).random((60000, 256), dtype=np.float32)
    expected = m.encode(x[:1000])[0]
    for attempt in range(3):   # a loaded machine may starve the main thread once; it cannot fake progress
        span, ticks, done = {}, [], threading.Event()

        def encode(span=span, done=done):
            span["enter"] = time.perf_counter()
            mu, _ = m.encode(x)
            span["exit"] = time.perf_counter()
            done.set()
            assert np.array_equal(mu[:1000], expected)
        t = threading.Thread(target=encode, daemon=True)
        t.start()
        while not done.is_set():
            ticks.append(time.perf_counter())
        t.join(TIMEOUT)
        length = span["exit"] - span["enter"]
        middle = [s for s in ticks if span["enter"] + length / 4 < s < span["exit"] - length / 4]
        if len(middle) > 100:
            break
    assert len(middle) > 100, (len(middle), length)

    results = {}

    def encode_into(i):
        results[i] = m.encode(x[:20000])[0]
    assert run_threads(encode_into, 2) == []
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0][:1000], expected)


# ----------------------------------------------- OpenMP threads inside one step: bitwise the same
L = vaecore.layers
BIG_MODELS = {   # each large enough that every elementwise pass runs on the threads (>= 65536 values)
    "mlp elu bernoulli": lambda: vaecore.VAE(784, 16, hidden=(512,), activation="elu", likelihood="bernoulli",
                                             seed=0),
    "mlp tanh gaussian": lambda: vaecore.VAE(784, 16, hidden=(512,), activation="tanh", seed=1),
    "conv": lambda: vaecore.VAE(
        input_shape=(1, 28, 28), latent_dim=8, likelihood="bernoulli", seed=2,
        encoder=[L.Conv2d(8, 3, padding=1), L.ReLU(), L.Conv2d(16, 4, stride=2, padding=1), L.ReLU(),
                 L.Flatten()],
        decoder=[L.Linear(16 * 14 * 14), L.ReLU(), L.Reshape(16, 14, 14),
                 L.ConvTranspose2d(1, 4, stride=2, padding=1)]),
}


@pytest.mark.skipif(not _core.HAVE_OPENMP, reason="this build has no OpenMP")
@pytest.mark.parametrize("name", list(BIG_MODELS))
def test_a_step_split_across_openmp_threads_is_bitwise_the_same(name):
    # Beyond the matrix products, the step's elementwise passes (bias, activations and their slopes, the
    # likelihood and its gradient, the im2col regrouping, col2im, the conv bias sums, Adam) split their
    # values across the threads (csrc/gemm.inc's elementwise_threads); each value gets the same
    # operations in the same order on any thread, and sums are added in a fixed order, so 1 and 2
    # threads must agree to the last bit, in the loss and in every parameter and moment.
    x = np.random.default_rng(0).random((128, 784), dtype=np.float32) ** 3

    def run(threads):
        before = _core.get_num_threads()
        _core.set_num_threads(threads)
        try:
            m = BIG_MODELS[name]()
            opt = vaecore.Adam(m, lr=1e-3)
            data = x.reshape((-1, *m.input_shape)) if hasattr(m, "input_shape") and len(m.input_shape) == 3 else x
            losses = [m.train_step(data, opt, eps=np.full((128, m.latent_dim), 0.3, np.float32))["loss"]
                      for _ in range(3)]
            return losses, m.params.tobytes(), opt.m.tobytes(), opt.v.tobytes()
        finally:
            _core.set_num_threads(before)
    assert run(1) == run(2)
