"""Models and optimizers travel (issue "A learner's first hour", item 9): pickle, deepcopy, processes.

A copy holds the configuration, the parameters, the noise generator's state and, for an optimizer, its
moments and step count; it is rebuilt through the configuration (the C object is never pickled) and
continues bitwise like the original: both are trained three more steps with the model's own noise and
compared byte for byte. Copied together, the optimizer's model is the copied model.
"""
import copy
import multiprocessing
import pickle

import numpy as np
import pytest

import vaecore
from vaecore import layers as L

X = vaecore.datasets.two_spirals(n=200, seed=0)[0]      # (200, 2)
IMAGES = np.random.default_rng(0).random((16, 2, 6, 5))  # (16, 2, 6, 5)


def conv(cls=vaecore.VAE, **kw):
    return cls(input_shape=(2, 6, 5), latent_dim=3,
               encoder=[L.Conv2d(4, (3, 2), stride=(2, 1), padding=1), L.Tanh(), L.Flatten(), L.Linear(7), L.ELU()],
               decoder=[L.Linear(40), L.Sigmoid(), L.Reshape(2, 4, 5), L.ConvTranspose2d(2, (3, 1)),
                        L.Tanh(), L.Conv2d(2, 3, padding=1)], dtype="float64", seed=1, **kw)


MODELS = {   # name: (model factory, its data)
    "VAE mlp float32": (lambda: vaecore.VAE(2, 2, hidden=(16, 16), seed=0), X),
    "VAE mlp float64 learned variance": (lambda: vaecore.VAE(2, 2, hidden=(8,), activation="elu", dtype="float64",
                                                             likelihood="gaussian_learned", seed=2), X),
    "AE mlp": (lambda: vaecore.AE(2, 2, hidden=(16,), seed=0), X),
    "VAE layers": (conv, IMAGES),
    "AE layers": (lambda: conv(vaecore.AE), IMAGES),
}
OPTIMIZERS = {
    "adam": lambda m: vaecore.Adam(m, lr=3e-3, betas=(0.8, 0.99), clip_norm=1.0),
    "sgd": lambda m: vaecore.SGD(m, 0.01, momentum=0.9),
}


def batch(x, i):
    """The i-th batch of 8 rows of x, cycling through its 16 first rows."""
    return x[(4 * i) % 8:(4 * i) % 8 + 8]


def trained(name, opt_name, steps=4):
    make, x = MODELS[name]
    m = make()
    opt = OPTIMIZERS[opt_name](m)
    for i in range(steps):
        m.train_step(batch(x, i), opt)
    return m, opt, x


def state(m, opt):
    s = {"params": m.params.tobytes(), "rng": m.rng_state, "config": m.config, "class": type(m),
         "dtype": m.params.dtype}
    if opt is not None:
        s.update(t=opt.t, kind=type(opt), hyper=repr(opt), **{k: a.tobytes() for k, a in opt._arrays().items()})
    return s


def three_more_steps(m, opt, x):
    for i in range(3):
        m.train_step(batch(x, 5 + i), opt)   # the model's own noise
    return state(m, opt)


COPIES = {
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "pickle protocol 2": lambda obj: pickle.loads(pickle.dumps(obj, protocol=2)),
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(MODELS))
def test_a_copied_pair_continues_bitwise(name, opt_name, how):
    m, opt, x = trained(name, opt_name)
    m2, opt2 = COPIES[how]((m, opt))
    assert type(m2) is type(m) and m2 is not m and opt2.model is m2
    assert m2._core is not m._core and not np.shares_memory(m2.params, m.params)
    assert state(m2, opt2) == state(m, opt)
    assert three_more_steps(m2, opt2, x) == three_more_steps(m, opt, x)
    assert opt2.t == 7


@pytest.mark.parametrize("name", list(MODELS))
def test_a_copied_model_alone_samples_and_trains_like_the_original(name):
    m, opt, x = trained(name, "adam")
    m2 = COPIES["pickle"](m)
    assert repr(m2) == repr(m) and m2.cfg == m.cfg
    assert m2.sample(5).tobytes() == m.sample(5).tobytes()   # the generator's state travelled
    opt2 = vaecore.Adam(m2, lr=3e-3, betas=(0.8, 0.99), clip_norm=1.0)
    opt2.m[...], opt2.v[...], opt2.t = opt.m, opt.v, opt.t
    assert three_more_steps(m2, opt2, x) == three_more_steps(m, opt, x)


def test_an_optimizer_copied_alone_brings_a_copy_of_its_model():
    m, opt, x = trained("VAE mlp float32", "sgd")
    opt2 = copy.deepcopy(opt)
    assert opt2.model is not m and opt2.model.params.tobytes() == m.params.tobytes()
    assert three_more_steps(opt2.model, opt2, x) == three_more_steps(m, opt, x)


def test_copies_are_independent():
    m, opt, x = trained("VAE mlp float32", "adam")
    before = state(m, opt)
    for how in COPIES.values():
        m2, opt2 = how((m, opt))
        three_more_steps(m2, opt2, x)
        m2.params[:] = 0
        opt2.m[:] = 1
        assert state(m, opt) == before


def test_copy_copy_and_attributes_set_on_the_model():
    m, _, _ = trained("AE mlp", "adam")
    m.note = {"run": 3}
    m2 = copy.copy(m)
    assert m2.note == {"run": 3} and m2.params.tobytes() == m.params.tobytes()
    m2.params[:] = 0
    assert m.params.any()   # even a shallow copy has its own C object and parameters
    m3 = copy.deepcopy(m)
    assert m3.note == m.note and m3.note is not m.note


def test_the_pickle_holds_no_c_object():
    m, opt, _ = trained("VAE layers", "adam")
    data = pickle.dumps((m, opt))
    assert b"_core\nModel" not in data and b"vaecore._core" not in data
    assert set(m.__getstate__()) == {"config", "params", "rng_state", "extra"}


def _train_in_a_worker(args):
    m, opt, threads = args
    vaecore.set_num_threads(threads)   # the parent's: a sum over other threads could round differently
    x = vaecore.datasets.two_spirals(n=200, seed=0)[0]
    for i in range(3):
        m.train_step(x[(4 * (5 + i)) % 8:(4 * (5 + i)) % 8 + 8], opt)   # as three_more_steps
    return m, opt


def test_a_model_goes_through_multiprocessing():
    m, opt, x = trained("VAE mlp float32", "adam")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        m2, opt2 = pool.map(_train_in_a_worker, [(m, opt, vaecore.get_num_threads())])[0]
    assert state(m2, opt2) == three_more_steps(m, opt, x)


def test_early_stopping_can_keep_a_whole_model():
    # what a callback can do now: keep the best model so far as a deep copy
    m = vaecore.VAE(2, 2, hidden=(16,), seed=0)
    best = {}

    def keep(e, stats, model):
        if e == 2:
            best["model"] = copy.deepcopy(model)
    vaecore.fit(m, X, epochs=5, progress=False, callbacks=[keep])
    assert best["model"].params.tobytes() != m.params.tobytes() and best["model"].config == m.config


# ------------------------------------------------------------ sample(0)
@pytest.mark.parametrize("name", list(MODELS))
def test_sample_of_zero_is_empty_as_numpy_would(name):
    m = MODELS[name][0]()
    rng = m.rng_state
    for seed in (None, 5):
        out = m.sample(0, seed=seed)
        assert out.shape == (0, *m.input_shape) and out.dtype == m.dtype
    assert m.rng_state == rng   # nothing drawn
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        m.sample(-1)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        m.sample(0, seed=-1)
