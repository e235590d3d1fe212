"""The C core flushes subnormal numbers to zero (csrc/vae.h, FLUSH_SUBNORMALS).

Why it matters: on x86 every operation on a subnormal float takes a microcode
assist, and training produces them. Adam's first moment of a weight whose
gradient is exactly 0 (here: the weights of an input that is always 0) decays
by beta1 per step into the subnormals and, without flushing, stays there,
because 0.9 times the smallest subnormal rounds back to it.

What is checked: a subnormal moment becomes exactly 0 after one step; a
subnormal input of a matrix product reads as 0 and a product that would be
subnormal is 0; the result stays bitwise the same on 1 and 2 threads (the mode
is per thread); and the caller's own mode comes back after every call, so that
NumPy keeps its IEEE subnormals.
"""
import platform

import numpy as np
import pytest

import vaecore
from vaecore import _core

# the mode is SSE's MXCSR (csrc/vae.h); elsewhere the core keeps IEEE subnormals
pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"),
                                reason="the core flushes subnormals on x86 only")

TINY = np.finfo(np.float32).tiny          # the smallest normal float32, 2^-126
SUB = np.float32(1e-40)                   # a subnormal float32


def numpy_keeps_subnormals():
    # a product computed by NumPy on this thread: subnormal unless the thread's FTZ mode is on
    return np.float32(1e-20) * np.float32(1e-20) != 0


def model_with_a_dead_input(seed=0):
    """A VAE whose input 0 is always 0: the weights it feeds get a gradient of exactly 0."""
    rng = np.random.default_rng(seed)
    x = rng.random((64, 300), dtype=np.float32)
    x[:, 0] = 0
    model = vaecore.VAE(300, 8, hidden=(256,), seed=seed)   # over 2^16 parameters: Adam runs on the threads
    opt = vaecore.Adam(model)
    _, grad = model.loss_and_grad(x, eps=np.zeros((64, 8), np.float32))
    dead = np.flatnonzero(grad == 0)
    assert dead.size >= 256, dead.size      # at least the row of weights from input 0
    return model, opt, x, dead


def test_a_subnormal_adam_moment_becomes_zero():
    model, opt, x, dead = model_with_a_dead_input()
    opt.m[dead] = SUB
    opt.v[dead] = SUB
    live = np.setdiff1d(np.arange(opt.m.size), dead)[:5]
    opt.m[live] = SUB                       # a live weight's moment: read as 0, then its gradient added
    model.train_step(x, opt, eps=np.zeros((64, 8), np.float32))
    # IEEE arithmetic would give 0.9 * 1e-40 and 0.999 * 1e-40, both nonzero
    assert np.all(opt.m[dead] == 0) and np.all(opt.v[dead] == 0)
    assert np.all((opt.m[live] == 0) | (np.abs(opt.m[live]) >= TINY))
    assert numpy_keeps_subnormals()


def test_matmul_reads_subnormals_as_zero_and_flushes_subnormal_results():
    one = np.ones((1, 1), np.float32)
    assert _core.matmul(np.full((1, 1), SUB), one)[0, 0] == 0
    assert _core.matmul(np.full((1, 1), 1e-20, np.float32), np.full((1, 1), 1e-20, np.float32))[0, 0] == 0
    # normal numbers are untouched: the smallest normal times 1 stays itself
    assert _core.matmul(np.full((1, 1), TINY), one)[0, 0] == TINY
    assert numpy_keeps_subnormals()


@pytest.mark.skipif(not _core.HAVE_OPENMP, reason="this build has no OpenMP")
def test_flushing_is_bitwise_the_same_on_one_and_two_threads():
    out = []
    before = _core.get_num_threads()
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            model, opt, x, dead = model_with_a_dead_input(seed=3)
            opt.m[::7] = SUB                  # subnormals spread over both threads' halves
            opt.v[::5] = SUB
            for step in range(3):
                model.train_step(x, opt, eps=np.full((64, 8), 0.5, np.float32))
            out.append((model.params.tobytes(), opt.m.tobytes(), opt.v.tobytes()))
            assert numpy_keeps_subnormals()
    finally:
        _core.set_num_threads(before)
    assert out[0] == out[1]
