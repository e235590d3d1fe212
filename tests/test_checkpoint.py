"""Nothing is lost: divergence, Ctrl-C and crashes leave a consistent model, and checkpoints resume bitwise.

- A diverging step raises FloatingPointError and fit stops with the last good model: bitwise the model
  after the steps that succeeded (replayed independently), never NaN weights; a huge learning rate too.
- save writes a temporary file and renames it: an exception in the middle of writing, or the process
  killed (SIGKILL) in the middle, leaves the previous file complete and loadable.
- fit(checkpoint=..., resume=True): a run interrupted at any epoch and resumed gives bitwise the
  parameters, optimizer state, noise generator and history of the uninterrupted run.
- Ctrl-C during fit (a KeyboardInterrupt from a callback, or SIGINT while the C core computes a step)
  leaves the parameters and the optimizer at the same step.
- The VQ-VAE's fit (fit_vq) resumes bitwise too: moving averages, restarts of dead codes and the
  validation history included.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import vaecore
from vaecore import _core

X = vaecore.datasets.two_spirals(n=300, seed=0)[0]   # (300, 2)
RUN = dict(epochs=12, batch_size=32, beta=lambda e: 0.05 + 0.01 * e, seed=3, progress=False)
STEPS_PER_EPOCH = 10                                  # ceil(300 / 32)


def child_env():
    """The environment of a child Python that imports this very vaecore (and its sanitizers, if any)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(vaecore.__file__).parents[1]),
                                                    env.get("PYTHONPATH")) if p)
    return env


def model(cls=vaecore.VAE, dtype="float32", seed=0):
    return cls(2, 2, hidden=(16, 16), dtype=dtype, seed=seed)


OPTIMIZERS = {
    "adam": lambda m: vaecore.Adam(m, lr=3e-3),
    "sgd": lambda m: vaecore.SGD(m, 0.05, momentum=0.9),
    "adam_clip": lambda m: vaecore.Adam(m, lr=3e-3, betas=(0.8, 0.99), clip_norm=0.5),
}


def state(m, opt, hist=None):
    """Everything that must match bitwise: parameters, noise generator, optimizer state, history."""
    s = {"params": m.params.tobytes(), "rng": m.rng_state, "t": opt.t}
    s.update({k: a.tobytes() for k, a in opt._arrays().items()})
    if hist is not None:
        s.update({k: getattr(hist, k).tobytes() for k in ("loss", "recon", "kl", "beta")})
    return s


class Stop(Exception):
    """Raised by `replay` to end a run after a given number of steps."""


def replay(steps, make_model, make_opt, X_=X, **run):
    """A fresh model trained by fit for exactly `steps` steps (the same batches, the same noise)."""
    m = make_model()
    opt = make_opt(m)
    real, done = m.train_step, []

    def counted(*a, **k):
        if len(done) == steps:
            raise Stop
        done.append(1)
        return real(*a, **k)
    m.train_step = counted
    try:
        vaecore.fit(m, X_, optimizer=opt, **{**RUN, **run})
    except Stop:
        pass
    assert len(done) == steps
    return m, opt


# ----------------------------------------------------------------- divergence
DIVERGING = dict(X_=X * 5, make_opt=lambda m: vaecore.SGD(m, 0.1, momentum=0.9))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_stops_with_the_error_and_the_last_good_model(dtype):
    m = model(dtype=dtype)
    opt = DIVERGING["make_opt"](m)
    with pytest.raises(FloatingPointError) as e:
        vaecore.fit(m, DIVERGING["X_"], optimizer=opt, **{**RUN, "epochs": 30})
    msg = str(e.value)
    found = re.match(r"epoch (\d+), batch (\d+): step (\d+): train_step: the (loss|gradient) .*NaN or Inf; "
                     r"the update was not applied", msg)
    assert found, msg
    epoch, batch, step = map(int, found.groups()[:3])
    assert epoch >= 1 and step == opt.t + 1 == epoch * STEPS_PER_EPOCH + batch + 1
    # the model is the one after the last good step, computed again independently
    good, good_opt = replay(opt.t, lambda: model(dtype=dtype), DIVERGING["make_opt"], X_=DIVERGING["X_"],
                            epochs=30)
    assert state(m, opt) == state(good, good_opt)
    assert np.isfinite(m.params).all() and np.isfinite(opt.buf).all()


@pytest.mark.parametrize("dtype, lr", [("float32", 1e10), ("float32", 1e30), ("float64", 1e10), ("float64", 1e30),
                                       ("float64", 1e300)])
@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_huge_learning_rate_is_a_clean_error_not_nan_weights(dtype, lr, kind):
    m = model(dtype=dtype)
    opt = {"sgd": lambda: vaecore.SGD(m, lr), "momentum": lambda: vaecore.SGD(m, lr, momentum=0.9),
           "adam": lambda: vaecore.Adam(m, lr=lr)}[kind]()
    with pytest.raises(FloatingPointError, match="NaN or Inf; the update was not applied"):
        vaecore.fit(m, X, optimizer=opt, **RUN)
    assert opt.t >= 1 and np.isfinite(m.params).all()
    assert all(np.isfinite(a).all() for a in opt._arrays().values())


# The fused step checks the update it applies, not only the loss and the gradient (csrc/optim.inc): a
# finite gradient times a huge learning rate, a learning rate beyond float32's range, Adam's second moment
# g*g overflowing float32, or an eps that rounds to 0 in float32 (0/0 for a zero gradient) would each leave
# non-finite parameters or state; the step refuses them with FloatingPointError and changes nothing.
UPDATE_GAPS = {   # dtype, activation, optimizer, value of every x
    "float32 lr beyond float32": ("float32", "tanh", lambda m: vaecore.SGD(m, 1e39), 0.5),
    "lr times gradient overflows (float32)": ("float32", "tanh", lambda m: vaecore.SGD(m, 1e30), 1e10),
    "lr times gradient overflows (float64)": ("float64", "tanh", lambda m: vaecore.SGD(m, 1e300), 1e10),
    "Adam's g*g overflows float32": ("float32", "tanh", lambda m: vaecore.Adam(m, betas=(0.9, 0.0)), 1e19),
    "Adam eps rounds to 0 in float32": ("float32", "relu", lambda m: vaecore.Adam(m, eps=1e-50), 0.5),
}


@pytest.mark.parametrize("case", list(UPDATE_GAPS))
def test_a_step_never_leaves_non_finite_parameters(case):
    dtype, activation, make_opt, value = UPDATE_GAPS[case]
    m = vaecore.VAE(2, 2, hidden=(4,), activation=activation, dtype=dtype, seed=0)
    if activation == "relu":
        m.params[:] = 0   # dead units: exactly zero gradients
    opt = make_opt(m)
    before = state(m, opt)
    with pytest.raises(FloatingPointError, match="update would leave NaN or Inf"):
        m.train_step(np.full((4, 2), value), opt, eps=np.zeros((4, 2)))
    assert state(m, opt) == before


@pytest.mark.parametrize("lr, p_scale, x_value", [(1e30, 1.0, 0.5), (1e-3, 1e38, 1e38), (1e-3, 1.0, 1e18)])
def test_an_adam_step_the_quick_test_cannot_vouch_for_is_checked_exactly_and_applied(lr, p_scale, x_value):
    # csrc/optim.inc's Adam first runs a cheap test that implies every new value is finite
    # (|p| + |m'| max(step, step / eps) below a quarter of float32's range, 8.5e37, the moments bounded
    # through the gradient's norm: 2 sum g^2 below it too); lr = 1e30 (step / eps ~ 1e39), a parameter at
    # 1e38, or data at 1e18 (gradients ~2e18: 2 sum g^2 ~ 2e37 * 8 > 8.5e37, although each (1 - beta2) g^2
    # is ~5e33) fails it although every new value is finite. The exact check must then pass the step, and
    # it must be Adam's at t = 1, with the betas as float32 holds them (1 - 0.999 is 1.3e-5 off in
    # float32). Tolerance 1e-6 relative: the float32 rounding of the moments and the quotient (a few
    # ulps), far below any wrong update.
    m = vaecore.VAE(2, 2, hidden=(4,), activation="tanh", dtype="float32", seed=0)
    x, eps = np.full((4, 2), x_value, np.float32), np.zeros((4, 2), np.float32)
    if p_scale != 1.0:
        # the decoder's output bias (the last 2 parameters) and the data at 1e38: out = x exactly
        # (the rest of out is far below 1e38's ulp), so the loss and its gradient stay finite
        m.params[-2:] = p_scale
    _, g = m.loss_and_grad(x, eps=eps)
    if x_value == 1e18:
        assert 2 * (g.astype(np.float64) ** 2).sum() > 2.0**125 > (1 - 0.999) * g.astype(np.float64).max() ** 2
    p0, g = m.params.astype(np.float64), g.astype(np.float64)
    opt = vaecore.Adam(m, lr=lr)
    m.train_step(x, opt, eps=eps)
    assert opt.t == 1 and np.isfinite(m.params).all()
    b1, b2 = np.float64(np.float32(0.9)), np.float64(np.float32(0.999))
    m1, v1 = (1 - b1) * g, (1 - b2) * g * g
    step = p0 - lr / (1 - 0.9) * m1 / (np.sqrt(v1) / np.sqrt(1 - 0.999) + 1e-8)
    np.testing.assert_allclose(m.params, step, rtol=1e-6, atol=0)


# ----------------------------------------------------------------- atomic save
def temp_files(folder):
    return [p for p in os.listdir(folder) if p.startswith(".vaecore-")]


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_crash_mid_save_leaves_the_old_file_intact(tmp_path, monkeypatch, error):
    m = model()
    opt = vaecore.Adam(m)
    path = tmp_path / "m.npz"
    m.save(path, optimizer=opt)
    old = path.read_bytes()
    m.train_step(X[:32], opt)
    real = np.savez

    def dies_midway(f, **arrays):   # the archive is half written when the error strikes
        real(f, **arrays)
        f.truncate(f.tell() // 2)
        raise error
    monkeypatch.setattr(np, "savez", dies_midway)
    with pytest.raises(type(error)):
        m.save(path, optimizer=opt)
    monkeypatch.undo()
    assert path.read_bytes() == old and not temp_files(tmp_path)
    m_old = vaecore.VAE.load(path)
    assert m_old.params.tobytes() != m.params.tobytes()   # the old model, not the new one
    m.save(path, optimizer=opt)                            # and the next save works
    assert vaecore.VAE.load(path).params.tobytes() == m.params.tobytes()


def test_save_killed_mid_write_leaves_a_complete_file(tmp_path):
    # A child process saves a 32 MB model over and over, each time with every parameter set to the save's
    # number k, and says when it starts writing the archive; it is killed with SIGKILL (no Python cleanup
    # runs) 0, 2 and 5 ms into a write, which takes ~20 ms. The file must then hold one complete save:
    # loadable, checksum valid, every parameter equal to one k (that of the last save finished before the
    # kill: 2, or a later one if the kill came late).
    path = tmp_path / "big.npz"
    child = textwrap.dedent(f"""
        import numpy as np, vaecore
        write = np.savez
        def announced(f, **arrays):
            print("writing", flush=True)
            write(f, **arrays)
        np.savez = announced
        m = vaecore.VAE(1000, 10, hidden=(1000, 1000), dtype="float64", seed=0)
        k = 0
        while True:
            k += 1
            m.params[:] = k
            m.save({str(path)!r})
            print("saved", k, flush=True)
    """)
    for delay_ms in (0, 2, 5):
        with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                              env=child_env()) as p:
            try:
                lines = [p.stdout.readline() for _ in range(4)]   # writing, saved 1, writing, saved 2
                assert lines[-1] == "saved 2\n", lines
                assert p.stdout.readline() == "writing\n"       # the third save has begun writing
                time.sleep(delay_ms / 1000)
            finally:
                p.kill()                                          # SIGKILL
        values = np.unique(vaecore.VAE.load(path).params)
        assert len(values) == 1 and values[0] >= 2, values


# ----------------------------------------------------------- checkpoint/resume
def reference_run(make_model, make_opt, **run):
    """The uninterrupted run, with a snapshot of the model after every epoch."""
    m = make_model()
    opt = make_opt(m)
    snaps = []
    hist = vaecore.fit(m, X, optimizer=opt, callbacks=[lambda e, s, mm: snaps.append(state(mm, opt))],
                       **{**RUN, **run})
    return m, opt, hist, snaps


def interrupt_at(epoch):
    def cb(e, stats, m):
        if e == epoch:
            raise KeyboardInterrupt
    return cb


@pytest.mark.parametrize("cls, dtype, opt_name", [(vaecore.VAE, "float32", "adam"), (vaecore.VAE, "float64", "sgd"),
                                                  (vaecore.AE, "float32", "adam_clip")])
@pytest.mark.parametrize("every", [1, 3])
def test_interrupted_and_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, cls, dtype, opt_name, every):
    make_model, make_opt = lambda seed=0: model(cls, dtype, seed), OPTIMIZERS[opt_name]
    ref, ref_opt, ref_hist, snaps = reference_run(make_model, make_opt)
    path = tmp_path / "ck.npz"

    m = make_model()
    opt = make_opt(m)
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(m, X, optimizer=opt, checkpoint=path, checkpoint_every=every, callbacks=[interrupt_at(7)],
                    **RUN)
    assert state(m, opt) == snaps[7]   # Ctrl-C after epoch 7: the model is exactly the one after epoch 7

    # resume into a new process's worth of objects: another seed, a fresh optimizer, interrupted once more
    m2 = make_model(seed=99)
    opt2 = make_opt(m2)
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(m2, X, optimizer=opt2, checkpoint=path, checkpoint_every=every, resume=True,
                    callbacks=[interrupt_at(9)], **RUN)
    assert state(m2, opt2) == snaps[9]
    m3 = make_model(seed=7)
    hist = vaecore.fit(m3, X, checkpoint=path, checkpoint_every=every, resume=True, **RUN)  # optimizer from file
    assert type(hist.optimizer) is type(ref_opt) and len(hist) == 12
    assert state(m3, hist.optimizer, hist) == state(ref, ref_opt, ref_hist)
    assert hist.epoch_seconds.shape == (12,) and hist.seconds > 0


def test_checkpoint_timing_contents_and_model_file(tmp_path):
    path = tmp_path / "ck.npz"
    seen = []

    def look(epoch, stats, m):   # called after the epoch's checkpoint is written
        if path.exists():
            meta = json.loads(np.load(path)["meta"].tobytes())
            seen.append((epoch, meta["fit"]["epoch"]))
        else:
            seen.append((epoch, None))
    m = model()
    hist = vaecore.fit(m, X, checkpoint=path, checkpoint_every=5, callbacks=[look], **RUN)
    assert seen == [(e, None if e < 4 else 5 if e < 9 else 10) for e in range(12)]
    m2, opt2 = vaecore.VAE.load(path, with_optimizer=True)     # the checkpoint is an ordinary model file
    assert m2.params.tobytes() == m.params.tobytes() and opt2.t == hist.optimizer.t == 120
    with np.load(path) as f:
        assert f["fit_loss"].tobytes() == hist.loss.tobytes()
        meta = json.loads(f["meta"].tobytes())
    assert meta["fit"]["epoch"] == 12 and meta["format_version"] == vaecore.model.FORMAT_VERSION


def test_resume_edge_cases(tmp_path):
    path = tmp_path / "ck.npz"
    ref, ref_opt, ref_hist, _ = reference_run(model, OPTIMIZERS["adam"])
    # no checkpoint yet: resume starts afresh (so one command both starts and continues a run)
    m = model()
    hist = vaecore.fit(m, X, optimizer=OPTIMIZERS["adam"](m), checkpoint=path, resume=True, **RUN)
    assert state(m, hist.optimizer, hist) == state(ref, ref_opt, ref_hist)
    # a finished run: resuming trains nothing and returns the whole history
    m2 = model(seed=5)
    hist2 = vaecore.fit(m2, X, checkpoint=path, resume=True, **RUN)
    assert state(m2, hist2.optimizer, hist2) == state(ref, ref_opt, ref_hist)
    # asking for more epochs continues from there, exactly as one longer run
    longer, longer_opt, longer_hist, _ = reference_run(model, OPTIMIZERS["adam"], epochs=15)
    m3 = model()
    hist3 = vaecore.fit(m3, X, checkpoint=path, resume=True, **{**RUN, "epochs": 15})
    assert state(m3, hist3.optimizer, hist3) == state(longer, longer_opt, longer_hist)


@pytest.mark.parametrize("change, match", [
    (dict(X=X[:-1]), "rows of X"), (dict(X=X + 1), "data X"), (dict(batch_size=16), "batch_size"),
    (dict(seed=4), "seed"), (dict(model=lambda: model(dtype="float64")), "which is not this VAE"),
    (dict(model=lambda: model(vaecore.AE)), "holds a VAE"),
    (dict(optimizer=lambda m: vaecore.SGD(m, 0.1)), "holds a Adam optimizer, got SGD"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, match):
    path = tmp_path / "ck.npz"
    vaecore.fit(model(), X, checkpoint=path, **{**RUN, "epochs": 2})
    m = change.get("model", model)()
    before = m.params.copy()
    opt = change["optimizer"](m) if "optimizer" in change else None
    run = {**RUN, **{k: v for k, v in change.items() if k in ("batch_size", "seed")}}
    with pytest.raises(ValueError, match=match):
        vaecore.fit(m, change.get("X", X), optimizer=opt, checkpoint=path, resume=True, **run)
    assert m.params.tobytes() == before.tobytes()


def test_bad_checkpoint_arguments(tmp_path):
    m = model()
    with pytest.raises(ValueError, match="resume=True needs checkpoint="):
        vaecore.fit(m, X, resume=True, **RUN)
    with pytest.raises(TypeError, match="checkpoint must be"):
        vaecore.fit(m, X, checkpoint=3, **RUN)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        vaecore.fit(m, X, checkpoint=tmp_path / "c.npz", checkpoint_every=0, **RUN)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable vaecore model file"):
        vaecore.fit(m, X, checkpoint=tmp_path / "junk.npz", resume=True, **RUN)
    m.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="not a fit checkpoint"):
        vaecore.fit(m, X, checkpoint=tmp_path / "plain.npz", resume=True, **RUN)


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    ref, ref_opt, ref_hist, _ = reference_run(model, OPTIMIZERS["adam"])
    path = tmp_path / "ck.npz"
    real, calls = np.savez, []

    def full_disk_on_the_fifth(f, **arrays):
        calls.append(1)
        real(f, **arrays)
        if len(calls) == 5:
            f.truncate(100)
            raise OSError("No space left on device")
    monkeypatch.setattr(np, "savez", full_disk_on_the_fifth)
    m0 = model()
    with pytest.raises(OSError):
        vaecore.fit(m0, X, optimizer=OPTIMIZERS["adam"](m0), checkpoint=path, **RUN)
    monkeypatch.undo()
    assert json.loads(np.load(path)["meta"].tobytes())["fit"]["epoch"] == 4 and not temp_files(tmp_path)
    m = model()
    hist = vaecore.fit(m, X, checkpoint=path, resume=True, **RUN)
    assert state(m, hist.optimizer, hist) == state(ref, ref_opt, ref_hist)


def test_divergence_after_a_checkpoint_resumes_to_the_same_error(tmp_path):
    path = tmp_path / "ck.npz"
    run = dict(optimizer=None, checkpoint=path, **{**RUN, "epochs": 30})
    m = model()
    with pytest.raises(FloatingPointError) as first:
        vaecore.fit(m, DIVERGING["X_"], **{**run, "optimizer": DIVERGING["make_opt"](m)})
    done = json.loads(np.load(path)["meta"].tobytes())["fit"]["epoch"]
    assert done == int(re.match(r"epoch (\d+)", str(first.value)).group(1))   # the last complete epoch
    m2 = model()
    with pytest.raises(FloatingPointError) as again:
        vaecore.fit(m2, DIVERGING["X_"], resume=True, **{**run, "optimizer": DIVERGING["make_opt"](m2)})
    assert str(again.value) == str(first.value) and m2.params.tobytes() == m.params.tobytes()


# ------------------------------------------------------------------- Ctrl-C
class CoreThatIsInterrupted:
    """The model's C core, except that step number `at` is hit by SIGINT while it computes: the signal is
    raised just as the C call returns, which is when CPython delivers a SIGINT that arrived during it."""

    def __init__(self, core, at):
        self._real, self._at, self.calls = core, at, 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def train_step(self, *args):
        self.calls += 1
        out = self._real.train_step(*args)
        if self.calls == self._at:
            signal.raise_signal(signal.SIGINT)
        return out


@pytest.mark.parametrize("at", [1, 17, 40])
def test_ctrl_c_during_a_step_leaves_params_and_optimizer_at_the_same_step(at):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    m = model()
    opt = vaecore.Adam(m, lr=3e-3)
    m._core = CoreThatIsInterrupted(m._core, at)
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(m, X, optimizer=opt, **RUN)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # fit put Python's handler back
    assert opt.t == at and np.isfinite(m.params).all()
    good, good_opt = replay(at, model, lambda mm: vaecore.Adam(mm, lr=3e-3))
    assert state(m, opt) == state(good, good_opt)


def test_real_sigint_during_fit_in_a_subprocess(tmp_path):
    # The real thing, in a child process (a stray SIGINT must not reach this test session): a thread sends
    # SIGINT while fit trains a model whose steps take milliseconds in C; the child then checks that the
    # parameters and the optimizer agree with an independent replay of opt.t steps.
    code = textwrap.dedent("""
        import json, os, signal, threading, numpy as np, vaecore
        X = np.random.default_rng(0).random((2048, 64))
        def make():
            m = vaecore.VAE(64, 4, hidden=(256, 256), dtype="float64", seed=0)
            return m, vaecore.Adam(m, lr=1e-3)
        m, opt = make()
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            vaecore.fit(m, X, optimizer=opt, epochs=1000, batch_size=512, seed=1, progress=False)
            print(json.dumps({"interrupted": False}))
        except KeyboardInterrupt:
            r, ropt = make()
            real, n = r.train_step, [0]
            class Stop(Exception): pass
            def counted(*a, **k):
                if n[0] == opt.t: raise Stop
                n[0] += 1
                return real(*a, **k)
            r.train_step = counted
            try:
                vaecore.fit(r, X, optimizer=ropt, epochs=1000, batch_size=512, seed=1, progress=False)
            except Stop:
                pass
            print(json.dumps({"interrupted": True, "t": opt.t, "finite": bool(np.isfinite(m.params).all()),
                              "same": r.params.tobytes() == m.params.tobytes() and ropt.m.tobytes() == opt.m.tobytes()
                                      and ropt.v.tobytes() == opt.v.tobytes() and ropt.t == opt.t}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=child_env())
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["interrupted"] and r["t"] >= 1 and r["finite"] and r["same"], r


def test_fit_leaves_a_custom_sigint_handler_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        m = model()
        m._core = CoreThatIsInterrupted(m._core, 3)
        vaecore.fit(m, X, **{**RUN, "epochs": 1})     # the user's handler runs; fit does not raise
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_as_train_step_returns_leaves_params_and_optimizer_at_the_same_step():
    m = model()
    opt = vaecore.Adam(m, lr=3e-3)
    m._core = CoreThatIsInterrupted(m._core, 1)
    with pytest.raises(KeyboardInterrupt):
        m.train_step(X[:32], opt)
    assert isinstance(m._core._real, _core.Model)
    good = model()
    good_opt = vaecore.Adam(good, lr=3e-3)
    good.train_step(X[:32], good_opt)
    assert state(m, opt) == state(good, good_opt)   # the C step advanced opt.t with the parameters


# ------------------------------------------------------------------ the VQ-VAE's fit (vaecore.fit_vq)
VQ_RUN = dict(epochs=8, batch_size=32, seed=3, progress=False, lr=lambda e: 3e-3 / (1 + e))
VQ_HISTORY = ("loss", "recon", "commitment", "codebook", "perplexity", "codes_used", "restarts", "usage", "lr",
              "val_loss", "val_recon", "val_commitment", "val_codebook", "val_perplexity")


def vq_model(update="ema", seed=0):
    q = vaecore.VQVAE(2, codebook_size=12, code_dim=2, hidden=(16,), codebook_update=update, seed=seed)
    q.codebook[6:] = 50.0 + seed   # far from every encoder output: dead, so the epochs restart codes
    if update == "ema":
        q.reset_ema()
    return q


def vq_state(q, opt, hist=None):
    """Everything of a VQ-VAE run that must match bitwise: parameters, moving averages, generator, optimizer,
    history."""
    s = {"params": q.params.tobytes(), "rng": q.rng_state, "t": opt.t,
         "ema": None if q.ema_count is None else (q.ema_count.tobytes(), q.ema_sum.tobytes())}
    s.update({k: a.tobytes() for k, a in opt._arrays().items()})
    if hist is not None:
        s.update({k: getattr(hist, k).tobytes() for k in VQ_HISTORY})
    return s


@pytest.mark.parametrize("update, every", [("ema", 1), ("loss", 3)])
def test_vq_interrupted_and_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, update, every):
    X_val = X[::7]
    ref = vq_model(update)
    snaps = []
    ref_opt = vaecore.Adam(ref)
    ref_hist = vaecore.fit(ref, X, optimizer=ref_opt, validation_data=X_val,
                           callbacks=[lambda e, s, q: snaps.append(vq_state(q, ref_opt))], **VQ_RUN)
    assert ref_hist.restarts.sum() > 0   # the restarts draw from the generator the checkpoint keeps
    path = tmp_path / "ck.npz"
    q = vq_model(update)
    opt = vaecore.Adam(q)
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(q, X, optimizer=opt, validation_data=X_val, checkpoint=path, checkpoint_every=every,
                    callbacks=[interrupt_at(4)], **VQ_RUN)
    assert vq_state(q, opt) == snaps[4]
    q2 = vq_model(update, seed=9)   # other weights, codebook and averages: all replaced by the checkpoint's
    hist = vaecore.fit(q2, X, validation_data=X_val, checkpoint=path, checkpoint_every=every, resume=True, **VQ_RUN)
    assert isinstance(hist, vaecore.VQHistory) and len(hist) == 8 and hist.seconds > 0
    assert vq_state(q2, hist.optimizer, hist) == vq_state(ref, ref_opt, ref_hist)
    q3, opt3 = vaecore.VQVAE.load(path, with_optimizer=True)     # the checkpoint is an ordinary model file
    assert vq_state(q3, opt3) == vq_state(ref, ref_opt)
    with np.load(path) as f:
        assert f["fit_usage"].tobytes() == ref_hist.usage.tobytes()
    # a finished run resumes to itself, and more epochs continue it as one longer run would
    hist_again = vaecore.fit(vq_model(update, seed=5), X, validation_data=X_val, checkpoint=path, resume=True,
                             **VQ_RUN)
    assert hist_again.val_loss.tobytes() == ref_hist.val_loss.tobytes()
    longer = vq_model(update)
    longer_hist = vaecore.fit(longer, X, validation_data=X_val, **{**VQ_RUN, "epochs": 10})
    q4 = vq_model(update)
    hist4 = vaecore.fit(q4, X, validation_data=X_val, checkpoint=path, resume=True, **{**VQ_RUN, "epochs": 10})
    assert vq_state(q4, hist4.optimizer, hist4) == vq_state(longer, longer_hist.optimizer, longer_hist)


@pytest.mark.parametrize("change, match", [
    (dict(X=X[:-1]), "rows of X"), (dict(batch_size=16), "batch_size"), (dict(seed=4), "seed"),
    (dict(restart_dead=False), "restart_dead"), (dict(validation_data=None), "validation_data"),
    (dict(model=lambda: vaecore.VQVAE(2, 12, 2, hidden=(16,), commitment=0.5)), "which is not this VQVAE"),
    (dict(model=lambda: model()), "holds a VQVAE"),
])
def test_vq_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, match):
    path = tmp_path / "ck.npz"
    vaecore.fit(vq_model(), X, validation_data=X[::7], checkpoint=path, **{**VQ_RUN, "epochs": 2})
    m = change.get("model", vq_model)()
    before = m.params.copy()
    run = {**VQ_RUN, "validation_data": X[::7], **{k: v for k, v in change.items() if k not in ("X", "model")}}
    if isinstance(m, vaecore.VQVAE):
        run["restart_dead"] = run.get("restart_dead", True)
    else:
        run = {**RUN}
    with pytest.raises(ValueError, match=match):
        vaecore.fit(m, change.get("X", X), checkpoint=path, resume=True, **run)
    assert m.params.tobytes() == before.tobytes()
    with pytest.raises(ValueError, match="resume=True needs checkpoint="):
        vaecore.fit(vq_model(), X, resume=True, **VQ_RUN)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        vaecore.fit(vq_model(), X, checkpoint=path, checkpoint_every=0, **VQ_RUN)


def test_vq_resume_refuses_a_damaged_checkpoint_before_changing_anything(tmp_path):
    from vaecore.io import _atomic_savez, _checked_load
    path = tmp_path / "ck.npz"
    vaecore.fit(vq_model(), X, checkpoint=path, **{**VQ_RUN, "epochs": 2})
    meta, arrays = _checked_load(path)
    for drop, match in (("ema", "moving averages are missing"), ("fit_usage", "history lacks 'usage'")):
        _atomic_savez(tmp_path / "bad.npz", meta, {k: v for k, v in arrays.items() if k != drop})
        q = vq_model(seed=4)
        opt = vaecore.Adam(q)
        before = vq_state(q, opt)
        with pytest.raises(ValueError, match=match):
            vaecore.fit(q, X, optimizer=opt, checkpoint=tmp_path / "bad.npz", resume=True, **VQ_RUN)
        assert vq_state(q, opt) == before
