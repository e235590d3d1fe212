"""vaecore.sweep on local processes (issue 12): records, resume, failures, argument errors.

The contract: a run is exactly ``fit(build(cfg), X, seed=cfg["seed"], **fit_args)``, so its record is
bitwise the same whatever executes it. The comparisons here are exact (==, no tolerance): the same
float operations in the same order give the same bits, and the records hold float64 values that JSON
round-trips exactly. The Dask executor is tested in test_sweep_dask.py.
"""
import concurrent.futures as cf
import gc
import json
import os
import re
import signal
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import sweep_workload as W

import vaecore
from vaecore.sweep import COMPARED_FIELDS, RECORD_FIELDS

GRID = {"beta": [0.5, 2.0], "latent": [2, 3]}


class InProcess(cf.Executor):
    """A serial executor: each submitted call runs at once, in this process."""

    def submit(self, fn, *args, **kwargs):
        fut = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:   # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(e)
        return fut


def compared(records):
    return [{k: r[k] for k in COMPARED_FIELDS} for r in records]


def assert_no_new_processes(before, timeout=30):
    """No child process but those in ``before`` (pids) and the stdlib's resource tracker, after at most timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before
                and "resource_tracker" not in " ".join(p.cmdline())]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes left behind: {[p.cmdline() for p in left]}"


@pytest.fixture(autouse=True)
def no_processes_left():
    """Every worker process a test starts is gone when it ends."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    assert_no_new_processes(before)


def test_runs_are_the_in_process_fit_calls_bitwise(tmp_path):
    X, X_val = W.data()
    runs = vaecore.sweep(W.build, X, GRID, seeds=[0, 1], out=tmp_path / "a", epochs=W.EPOCHS, batch_size=32,
                         lr=3e-3, validation_data=X_val, metrics=W.metrics, progress=False)
    assert [r["config"] for r in runs] == [dict(beta=b, latent=k, seed=s) for b in (0.5, 2.0) for k in (2, 3)
                                           for s in (0, 1)]
    for r in runs:
        assert tuple(r) == RECORD_FIELDS and r["status"] == "ok" and r["error"] is None
        model, hist = W.in_process(r["config"], X, X_val, epochs=W.EPOCHS, batch_size=32, lr=3e-3)
        for key in ("loss", "recon", "kl", "beta", "lr", "val_loss", "val_recon", "val_kl"):
            assert r["history"][key] == getattr(hist, key).tolist(), key
        assert r["history"]["kl_per_dim"] == hist.kl_per_dim.tolist()
        assert r["history"]["active_units"] == hist.active_units.tolist()
        assert r["history"]["beta"] == [r["config"]["beta"]] * W.EPOCHS     # the grid's beta reached fit
        assert r["metrics"] == {"loss": hist.loss[-1], "recon": hist.recon[-1], "kl": hist.kl[-1],
                                "active_units": int(hist.active_units[-1]),
                                "val_elbo": float(np.mean(model.elbo(X_val, k=1, seed=r["config"]["seed"]))),
                                **W.metrics(model, r["config"])}
        saved = vaecore.load(tmp_path / "a" / r["model"])                   # the model file is the trained model
        assert np.array_equal(saved.params, model.params) and saved.rng_state == model.rng_state
        assert saved.latent_dim == r["config"]["latent"]
        with open(tmp_path / "a" / (r["run_id"] + ".json")) as f:
            assert json.load(f) == r                                         # returned == written
    # the same sweep in this process, serially, through any concurrent.futures executor: equal records
    serial = vaecore.sweep(W.build, X, GRID, seeds=[0, 1], out=tmp_path / "b", epochs=W.EPOCHS, batch_size=32,
                           lr=3e-3, validation_data=X_val, metrics=W.metrics, progress=False, executor=InProcess())
    assert compared(serial) == compared(runs)


def test_a_diverging_run_is_recorded_as_failed_and_the_others_complete(tmp_path, capsys):
    X, _ = W.data()
    runs = vaecore.sweep(W.build, X, {"lr": [1e-3, 1e9]}, seeds=[0, 1], out=tmp_path, epochs=W.EPOCHS)
    status = {(r["config"]["lr"], r["config"]["seed"]): r["status"] for r in runs}
    assert status == {(1e-3, 0): "ok", (1e-3, 1): "ok", (1e9, 0): "failed", (1e9, 1): "failed"}
    for r in runs[2:]:
        assert r["error"].startswith("FloatingPointError: epoch 0") and r["model"] is None and r["history"] is None
        assert not os.path.exists(tmp_path / (r["run_id"] + ".npz"))
    err = capsys.readouterr().err
    assert "4 runs (0 reused from out/, 4 run)" in err and ", 2 failed" in err
    for r in runs[2:]:
        assert f"failed {r['run_id']}: FloatingPointError" in err              # the summary names them
    # failed runs are finished runs: calling again redoes nothing
    again = vaecore.sweep(W.build, X, {"lr": [1e-3, 1e9]}, seeds=[0, 1], out=tmp_path, epochs=W.EPOCHS)
    assert again == runs and "4 reused from out/, 0 run" in capsys.readouterr().err


def test_a_bad_config_fails_its_run_only(tmp_path):
    X, _ = W.data()
    runs = vaecore.sweep(W.build, X, {"latent": [2, 0]}, out=tmp_path, epochs=1, progress=False)
    assert [r["status"] for r in runs] == ["ok", "failed"]
    assert runs[1]["error"] == "ValueError: latent_dim must be >= 1, got 0"


def test_warnings_of_a_run_are_recorded(tmp_path):
    X, _ = W.data()
    (r,) = vaecore.sweep(W.build, X, {"beta": [50.0]}, out=tmp_path, epochs=20, lr=1e-2, progress=False)
    assert r["status"] == "ok" and r["metrics"]["active_units"] == 0
    assert len(r["warnings"]) == 1 and r["warnings"][0].startswith("UserWarning: posterior collapse")


def inodes(folder):
    return {name: os.stat(folder / name).st_ino for name in os.listdir(folder)}


def test_resume_reuses_whole_records_and_redoes_damaged_ones(tmp_path):
    X, _ = W.data()
    kw = dict(seeds=[0, 1, 2], out=tmp_path, epochs=W.EPOCHS, progress=False)
    first = vaecore.sweep(W.build, X, {"beta": [1.0]}, **kw)
    before = inodes(tmp_path)
    assert len(before) == 6 and not any(n.startswith(".") for n in before)   # no temporary file left
    assert vaecore.sweep(W.build, X, {"beta": [1.0]}, **kw) == first and inodes(tmp_path) == before
    ids = [r["run_id"] for r in first]
    # damage: a truncated record, an edited number (checksum), a corrupted model file
    path0 = tmp_path / (ids[0] + ".json")
    path0.write_bytes(path0.read_bytes()[:100])
    path1 = tmp_path / (ids[1] + ".json")
    rec = json.loads(path1.read_text())
    rec["metrics"]["loss"] += 1.0
    path1.write_text(json.dumps(rec))
    model2 = tmp_path / (ids[2] + ".npz")
    blob = bytearray(model2.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model2.write_bytes(bytes(blob))
    damaged = inodes(tmp_path)
    again = vaecore.sweep(W.build, X, {"beta": [1.0]}, **kw)
    assert compared(again) == compared(first)
    after = inodes(tmp_path)
    assert all(after[n] != damaged[n] for n in (ids[0] + ".json", ids[1] + ".json", ids[2] + ".json"))
    # a record of another sweep (other fit arguments) in the same folder is not reused
    other = vaecore.sweep(W.build, X, {"beta": [1.0]}, **dict(kw, epochs=W.EPOCHS + 1))
    assert [len(r["history"]["loss"]) for r in other] == [W.EPOCHS + 1] * 3


# The tests that interrupt a sweep on local processes run it on a pool of 2 workers, whatever the
# machine: with as many workers as runs, every run would start at once and none would be left to test.
@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(sys.modules["vaecore.sweep"], "_local_cores", lambda: 2)   # vaecore.sweep is the function


# One SIGINT is enough: sweep holds it until the results already back are written, then raises it.
# Before it did, the KeyboardInterrupt was raised at an arbitrary bytecode of the main thread: inside
# the process pool's own bookkeeping (a CI run saw an unclosed FileIO, mode 'wb', reported by the garbage
# collector as a ResourceWarning in whichever test ran next), or inside a finalizer, where CPython drops
# it (a CI run under the sanitizers saw "DID NOT RAISE"; the test below forces that case). The filters
# and the collection stay, so that anything the cancelled pool still leaves cannot spill into the next
# test. vaecore's own files are checked here (the finished records untouched), its temporary files in
# test_files.py and its leaks in test_leaks.py.
def interrupted_sweep(X, **kw):
    """Run ``vaecore.sweep(W.build, X, **kw)`` and press Ctrl-C (a real SIGINT) once its first record is in
    ``kw["out"]``; the sweep must raise KeyboardInterrupt."""
    out = kw["out"]

    def interrupt_after_first_record():
        deadline = time.monotonic() + 120
        while not any(n.endswith(".json") for n in os.listdir(out)) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    os.makedirs(out, exist_ok=True)
    t = threading.Thread(target=interrupt_after_first_record)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        vaecore.sweep(W.build, X, **kw)
    t.join()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("two_workers")
def test_an_interrupted_sweep_finishes_only_the_missing_runs(tmp_path):
    X, _ = W.data()
    kw = dict(seeds=range(8), out=tmp_path, epochs=W.EPOCHS_SLOW, progress=False)
    interrupted_sweep(X, **kw)
    gc.collect()   # what the interrupt left to the collector, collected while the filters above apply
    done = {n: ino for n, ino in inodes(tmp_path).items() if n.endswith(".json")}
    assert 1 <= len(done) < 8, f"{len(done)} records: the interrupt came too late to test anything"
    runs = vaecore.sweep(W.build, X, **kw)
    assert [r["status"] for r in runs] == ["ok"] * 8
    after = inodes(tmp_path)
    assert all(after[n] == ino for n, ino in done.items())   # the finished runs were not redone
    serial = vaecore.sweep(W.build, X, **dict(kw, out=tmp_path / "serial", executor=InProcess()))
    assert compared(serial) == compared(runs)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.usefixtures("two_workers")
def test_a_ctrl_c_to_the_workers_too_starts_no_queued_run(tmp_path):
    # A terminal's Ctrl-C reaches the sweep and its worker processes. The pool has already queued runs
    # for its workers; once a worker has been interrupted it starts none of them (each would be a whole
    # run before the sweep could return). Every run leaves a file in marks/ as it starts.
    X, _ = W.data()
    marks, out = tmp_path / "marks", tmp_path / "out"
    marks.mkdir()
    out.mkdir()
    started = []

    def ctrl_c_after_first_record():
        deadline = time.monotonic() + 120
        while not any(n.endswith(".json") for n in os.listdir(out)) and time.monotonic() < deadline:
            time.sleep(0.01)
        for p in psutil.Process().children():
            if "spawn_main" in " ".join(p.cmdline()):   # the pool's workers, not its resource tracker
                os.kill(p.pid, signal.SIGINT)
        started.append(len(os.listdir(marks)))
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=ctrl_c_after_first_record)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        vaecore.sweep(W.build_noting_start, X, {"marks": [str(marks)]}, seeds=range(12), out=out,
                      epochs=W.EPOCHS_SLOW, progress=False)
    t.join()
    # + 1: a worker that had taken its next run just before its signal arrived (the pool queues 3 more)
    assert len(os.listdir(marks)) <= started[0] + 1 < 12
    runs = vaecore.sweep(W.build_noting_start, X, {"marks": [str(marks)]}, seeds=range(12), out=out,
                         epochs=W.EPOCHS_SLOW, progress=False)
    assert [r["status"] for r in runs] == ["ok"] * 12


class FirstRunInterrupted(InProcess):
    """InProcess, but Ctrl-C stopped the first run in its worker: its future holds a KeyboardInterrupt."""

    def __init__(self):
        self.first = True

    def submit(self, fn, *args, **kwargs):
        if not self.first:
            return super().submit(fn, *args, **kwargs)
        self.first = False
        fut = cf.Future()
        fut.set_exception(KeyboardInterrupt())
        return fut


def test_a_run_stopped_in_its_worker_stops_the_sweep_once_the_others_back_are_written(tmp_path):
    X, _ = W.data()
    with pytest.raises(KeyboardInterrupt):
        vaecore.sweep(W.build, X, seeds=range(3), out=tmp_path, epochs=1, progress=False,
                      executor=FirstRunInterrupted())
    assert sorted(n.split(".")[0] for n in os.listdir(tmp_path) if n.endswith(".json")) == ["seed=1", "seed=2"]


class _CtrlCInFinalizer:
    """Sends this process a SIGINT from its finalizer and waits there until Python has handled it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)   # interrupted by the signal: Python runs the SIGINT handler here, in the finalizer


class _InterruptedFuture(cf.Future):
    def result(self, timeout=None):
        _CtrlCInFinalizer()   # made and finalized at once, in the thread that collects the result
        return super().result(timeout)


class InterruptedInFinalizer(InProcess):
    """InProcess, but collecting a result runs a finalizer that catches a Ctrl-C (at most ``times`` times)."""

    def __init__(self, times):
        self.times = times

    def submit(self, fn, *args, **kwargs):
        done = super().submit(fn, *args, **kwargs)
        fut = _InterruptedFuture() if self.times > 0 else cf.Future()
        self.times -= 1
        fut.set_result(done.result())
        return fut


# CPython drops an exception raised in a finalizer (it reports it as unraisable), so a Ctrl-C raised
# there by Python's default handler would be lost and the sweep would go on. sweep holds it instead.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_landing_in_a_finalizer_still_stops_the_sweep(tmp_path):
    X, _ = W.data()
    with pytest.raises(KeyboardInterrupt):
        vaecore.sweep(W.build, X, {"beta": [0.5, 2.0]}, out=tmp_path, epochs=1, progress=False,
                      executor=InterruptedInFinalizer(times=1))
    written = {n: ino for n, ino in inodes(tmp_path).items() if n.endswith(".json")}
    assert written   # the results collected before the interrupt was raised are written, whole
    runs = vaecore.sweep(W.build, X, {"beta": [0.5, 2.0]}, out=tmp_path, epochs=1, progress=False,
                         executor=InProcess())
    assert [r["status"] for r in runs] == ["ok"] * 2
    after = inodes(tmp_path)
    assert all(after[n] == ino for n, ino in written.items())   # and reused


def test_sweep_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    X, _ = W.data()
    runs = vaecore.sweep(W.build, X, {"lr": [1e-3, 1e9]}, out=tmp_path, epochs=1, progress=False)
    df = vaecore.sweep_frame(runs)
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert list(df.columns[:4]) == ["lr", "seed", "status", "error"]
    assert list(df["status"]) == ["ok", "failed"] and df["loss"][0] == runs[0]["metrics"]["loss"]
    assert np.isnan(df["loss"][1])
    with pytest.raises(TypeError, match="runs must be the list of records"):
        vaecore.sweep_frame(runs[0])
    with pytest.raises(TypeError, match=r"runs\[0\] is not a sweep record"):
        vaecore.sweep_frame([{"a": 1}])


def test_model_builder(tmp_path):
    b = vaecore.ModelBuilder("VAE", input_dim=8, latent_dim=2, hidden=(16,), likelihood="gaussian")
    m = b({"latent_dim": 3, "beta": 2.0, "seed": 7})
    assert (m.latent_dim, m.seed, m.config["hidden"], m.config["likelihood"]) == (3, 7, (16,), "gaussian")
    assert repr(b) == "ModelBuilder('VAE', input_dim=8, latent_dim=2, hidden=(16,), likelihood='gaussian')"
    assert type(vaecore.ModelBuilder("AE", input_dim=8, latent_dim=2)({"seed": 0})) is vaecore.AE
    with pytest.raises(ValueError, match="kind must be 'VAE' or 'AE', got 'GAN'"):
        vaecore.ModelBuilder("GAN")
    with pytest.raises(TypeError, match="'latent' is not an argument of VAE"):
        vaecore.ModelBuilder(latent=2)
    with pytest.raises(TypeError, match="'seed' is not an argument"):
        vaecore.ModelBuilder(seed=2)
    X, _ = W.data()
    (r,) = vaecore.sweep(b, X, {"latent_dim": [3]}, out=tmp_path, epochs=1, progress=False)
    assert vaecore.load(tmp_path / r["model"]).latent_dim == 3


def nested_build():
    def build(cfg):
        return W.build(cfg)
    return build


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(grid={"beta": []}), ValueError, r"grid\['beta'\] is empty"),
    (dict(grid={"beta": [1.0, 1.0]}), ValueError, r"grid\['beta'\] repeats a value"),
    (dict(grid={"beta": 1.0}), TypeError, r"grid\['beta'\] must be a list of values"),
    (dict(grid={"beta": [-1.0]}), ValueError, r"grid\['beta'\]\[0\] must be a finite number >= 0"),
    (dict(grid={"epochs": [1.5]}), TypeError, r"grid\['epochs'\]\[0\] must be an int"),
    (dict(grid={"act": [[1, 2]]}), TypeError, r"grid\['act'\]\[0\] must be a bool, int, float, str or None"),
    (dict(grid={"beta": [float("nan")]}), ValueError, r"grid\['beta'\]\[0\] must be finite"),
    (dict(grid={"seed": [1]}), ValueError, "grid may not hold 'seed'"),
    (dict(grid={"optimizer": [1]}), ValueError, "grid key 'optimizer' names a fit argument"),
    (dict(grid={"validation_data": [1]}), ValueError, "grid key 'validation_data' names a fit argument"),
    (dict(grid=[("beta", [1])]), TypeError, "grid must be a dict"),
    (dict(seeds=[]), ValueError, "seeds is empty"),
    (dict(seeds=[1, 1]), ValueError, "seeds repeats a value"),
    (dict(seeds=[-1]), ValueError, r"seeds\[0\] must be >= 0"),
    (dict(seeds=3), TypeError, "seeds must be a list of ints"),
    (dict(epochs=10, epoch=10), TypeError, "unknown argument 'epoch'"),
    (dict(seed=3), ValueError, "sweep sets fit's 'seed' itself"),
    (dict(progress=False, callbacks=()), ValueError, "sweep sets fit's 'callbacks' itself"),
    (dict(lr=0.0 - 1), ValueError, "lr must be a finite number >= 0"),
    (dict(beta=lambda e: 1.0), TypeError, "beta must be picklable"),
    (dict(build=lambda cfg: None), TypeError, "build must be picklable"),
    (dict(metrics=lambda m, cfg: {}), TypeError, "metrics must be picklable"),
    (dict(build=nested_build()), TypeError, "build must be picklable"),
    (dict(build=3), TypeError, "build must be a callable"),
    (dict(metrics=3), TypeError, "metrics must be None or a callable"),
    (dict(executor=3), TypeError, "executor must be None, a dask.distributed.Client or a concurrent.futures"),
    (dict(out=3), TypeError, "out must be a str or os.PathLike"),
    (dict(retries=-1), ValueError, "retries must be >= 0"),
])
def test_bad_arguments_raise_before_anything_runs(tmp_path, kwargs, error, match):
    X, _ = W.data()
    args = dict(build=W.build, X=X, out=tmp_path / "out", epochs=1, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        vaecore.sweep(**args)
    assert not os.path.exists(tmp_path / "out")


def test_a_build_from_an_interactive_session_is_refused_for_local_processes(tmp_path, monkeypatch):
    import __main__

    def build(cfg):
        return W.build(cfg)

    build.__module__, build.__qualname__ = "__main__", "build"
    monkeypatch.setattr(__main__, "build", build, raising=False)
    monkeypatch.delattr(__main__, "__file__", raising=False)
    X, _ = W.data()
    with pytest.raises(TypeError, match="defined in an interactive session .* vaecore.ModelBuilder"):
        vaecore.sweep(build, X, out=tmp_path / "out", epochs=1, progress=False)
    assert not os.path.exists(tmp_path / "out")
    # an in-process executor can run it
    (r,) = vaecore.sweep(build, X, out=tmp_path / "out", epochs=1, progress=False, executor=InProcess())
    assert r["status"] == "ok"


def test_runs_of_a_killed_local_worker_are_reported_and_redone_by_the_next_call(tmp_path):
    # a process pool breaks when one of its processes dies: the runs it had not answered are reported
    # as failed with "not run: ..." and not written, so the next call runs them
    X, _ = W.data()
    kw = dict(seeds=range(8), out=tmp_path, epochs=W.EPOCHS_SLOW, progress=False)
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}

    def kill_a_worker_after_the_first_record():
        deadline = time.monotonic() + 120
        while not any(n.endswith(".json") for n in os.listdir(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = [p for p in me.children() if p.pid not in before
                   and "resource_tracker" not in " ".join(p.cmdline())]
        workers[0].kill()

    os.makedirs(tmp_path, exist_ok=True)
    t = threading.Thread(target=kill_a_worker_after_the_first_record)
    t.start()
    runs = vaecore.sweep(W.build, X, **kw)
    t.join()
    lost = [r for r in runs if r["status"] != "ok"]
    assert lost and all(r["error"].startswith("not run: BrokenProcessPool") for r in lost)
    assert all(not os.path.exists(tmp_path / (r["run_id"] + ".json")) for r in lost)
    again = vaecore.sweep(W.build, X, **kw)
    assert [r["status"] for r in again] == ["ok"] * 8


TOML = """\
out = "sweeps/test"
seeds = [0, 1]
[data]
path = "X.npy"
[validation]
path = "X_val.npy"
[model]
latent_dim = 2
hidden = [16]
[fit]
epochs = 3
batch_size = 32
[grid]
beta = [0.5, 2.0]
"""


def write_toml(folder, text=TOML):
    X, X_val = W.data()
    np.save(folder / "X.npy", X)
    np.save(folder / "X_val.npy", X_val)
    (folder / "sweep.toml").write_text(text)
    return folder / "sweep.toml"


def test_command_line_sweep_from_a_toml_file(tmp_path, capsys):
    from vaecore.experiments import main
    from vaecore.sweep import load_config

    path = write_toml(tmp_path)
    assert main(["sweep", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"vaecore sweep: 4 runs in {tmp_path / 'sweeps' / 'test'}\n")
    assert len(out.splitlines()) == 5 and out.count(" ok ") == 4 and "val_elbo" in out
    # the same sweep from Python: the records are those the command wrote (nothing is redone)
    kwargs = load_config(path)
    assert isinstance(kwargs.pop("build"), vaecore.ModelBuilder)
    X, X_val = W.data()
    runs = vaecore.sweep(vaecore.ModelBuilder(input_dim=8, latent_dim=2, hidden=[16]), X, {"beta": [0.5, 2.0]},
                         seeds=[0, 1], out=tmp_path / "sweeps" / "test", epochs=3, batch_size=32,
                         validation_data=X_val, progress=False)
    with open(tmp_path / "sweeps" / "test" / (runs[0]["run_id"] + ".json")) as f:
        assert json.load(f) == runs[0]
    # a failed run makes the exit status 1
    path.write_text(TOML.replace("beta = [0.5, 2.0]", "lr = [1e9]"))
    assert main(["sweep", str(path), "--no-progress"]) == 1
    assert "failed  FloatingPointError" in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (("seeds = [0, 1]", "seeds = [0, 1]\nsede = 3"), r"unknown key\(s\) \['sede'\] at the top level"),
    (("[fit]", "[fit]\nseed = 3"), "sweep sets fit's 'seed' itself"),
    (('path = "X.npy"', 'dataset = "nope"'), "dataset must name a vaecore.datasets loader"),
    (('out = "sweeps/test"', ""), "out is required"),
    (("latent_dim = 2", ""), r"\[model\] needs latent_dim"),
    (("seeds = [0, 1]", 'seeds = [0, 1]\nbuild = "sweep_workload:build"'), "give build= or \\[model\\], not both"),
    (("[grid]", "[grid"), "not valid TOML"),
    (("beta = [0.5, 2.0]", "beta = []"), r"grid\['beta'\] is empty"),
])
def test_command_line_errors(tmp_path, capsys, change, message):
    from vaecore.experiments import main

    path = write_toml(tmp_path, TOML.replace(*change))
    assert main(["sweep", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m vaecore sweep: ") and re.search(message, err), err
    assert not os.path.exists(tmp_path / "sweeps")
