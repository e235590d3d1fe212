"""vaecore.sweep on a real Dask cluster (issue 12): a LocalCluster of two worker processes on 127.0.0.1.

- the records are bitwise equal (every field but seconds and host) to the same runs done serially in
  this process;
- killing one worker process in the middle of a sweep loses no run (Dask reschedules the lost worker's
  tasks; its nanny starts a new worker process);
- a diverging run is recorded as failed, the others complete.
One cluster serves the module; it is closed at the end and no process of it may be left.
"""
import os
import signal
import threading
import time

import psutil
import pytest
import sweep_workload as W
from test_sweep import InProcess, assert_no_new_processes, compared, interrupted_sweep

import vaecore

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
    assert_no_new_processes(before)


def test_records_on_a_cluster_equal_the_serial_ones(client, tmp_path):
    X, X_val = W.data()
    kw = dict(grid={"beta": [0.5, 2.0], "latent": [2, 3]}, seeds=[0, 1], epochs=W.EPOCHS, batch_size=32,
              validation_data=X_val, metrics=W.metrics, progress=False)
    on_cluster = vaecore.sweep(W.build, X, out=tmp_path / "dask", executor=client, **kw)
    serial = vaecore.sweep(W.build, X, out=tmp_path / "serial", executor=InProcess(), **kw)
    assert [r["status"] for r in on_cluster] == ["ok"] * 8
    assert compared(on_cluster) == compared(serial)
    assert {r["host"] for r in on_cluster} == {r["host"] for r in serial}   # all on this machine
    # both workers took part (pids are not recorded, so count the tasks each worker ran)
    log = client.run(lambda dask_worker: len(dask_worker.state.log))
    assert len(log) == 2 and all(n > 0 for n in log.values())


def test_killing_a_worker_loses_no_run(client, tmp_path):
    X, _ = W.data()
    kw = dict(seeds=range(8), epochs=W.EPOCHS_SLOW, progress=False)
    pids = client.run(os.getpid)
    killed = []

    def kill_one_worker_after_the_first_record():
        deadline = time.monotonic() + 120
        while not os.path.isdir(tmp_path / "dask") or not any(
                n.endswith(".json") for n in os.listdir(tmp_path / "dask")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        killed.append(sum(n.endswith(".json") for n in os.listdir(tmp_path / "dask")))
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    t = threading.Thread(target=kill_one_worker_after_the_first_record)
    t.start()
    runs = vaecore.sweep(W.build, X, out=tmp_path / "dask", executor=client, **kw)
    t.join()
    assert killed and killed[0] < 8, "the worker was not killed in the middle of the sweep"
    assert [r["status"] for r in runs] == ["ok"] * 8
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != set(pids.values())   # a worker process was replaced
    serial = vaecore.sweep(W.build, X, out=tmp_path / "serial", executor=InProcess(), **kw)
    assert compared(runs) == compared(serial)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_interrupted_sweep_on_a_cluster_finishes_only_the_missing_runs(client, tmp_path):
    # a real SIGINT; sweep holds it, so it cannot be lost in one of distributed's garbage-collector callbacks
    # (its scheduler runs in this process), as it could be when it was raised wherever it landed
    X, _ = W.data()
    kw = dict(seeds=range(8), out=tmp_path, epochs=W.EPOCHS_SLOW, executor=client, progress=False)
    interrupted_sweep(X, **kw)
    done = {n: os.stat(tmp_path / n).st_ino for n in os.listdir(tmp_path) if n.endswith(".json")}
    assert 1 <= len(done) < 8, f"{len(done)} records: the interrupt came too late to test anything"
    runs = vaecore.sweep(W.build, X, **kw)
    assert [r["status"] for r in runs] == ["ok"] * 8
    assert all(os.stat(tmp_path / n).st_ino == ino for n, ino in done.items())   # not redone
    serial = vaecore.sweep(W.build, X, **dict(kw, out=tmp_path / "serial", executor=InProcess()))
    assert compared(serial) == compared(runs)


def test_a_diverging_run_is_recorded_as_failed_on_a_cluster(client, tmp_path):
    X, _ = W.data()
    runs = vaecore.sweep(W.build, X, {"lr": [1e-3, 1e9]}, seeds=[0, 1], out=tmp_path, epochs=W.EPOCHS,
                         executor=client, progress=False)
    assert [r["status"] for r in runs] == ["ok", "ok", "failed", "failed"]
    assert all(r["error"].startswith("FloatingPointError: epoch 0") for r in runs[2:])


def test_command_line_with_a_scheduler(client, tmp_path, capsys):
    from test_sweep import TOML, write_toml

    from vaecore.experiments import main

    text = TOML.replace("[model]\nlatent_dim = 2\nhidden = [16]\n", "")
    path = write_toml(tmp_path, 'build = "sweep_workload:build"\nmetrics = "sweep_workload:metrics"\n' + text)
    assert main(["sweep", str(path), "--scheduler", client.scheduler.address, "--no-progress"]) == 0
    assert capsys.readouterr().out.count(" ok ") == 4
    X, X_val = W.data()
    serial = vaecore.sweep(W.build, X, {"beta": [0.5, 2.0]}, seeds=[0, 1], epochs=3, batch_size=32,
                           validation_data=X_val, metrics=W.metrics, out=tmp_path / "serial", progress=False,
                           executor=InProcess())
    reused = vaecore.sweep(W.build, X, {"beta": [0.5, 2.0]}, seeds=[0, 1], epochs=3, batch_size=32,
                           validation_data=X_val, metrics=W.metrics, out=tmp_path / "sweeps" / "test",
                           progress=False, executor=InProcess())
    assert compared(reused) == compared(serial)
