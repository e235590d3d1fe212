"""The sweep line of the benchmark (issue 12): the same 20 small runs three ways, in runs per minute.

    python bench/sweep_bench.py            # 20 runs; prints a Markdown table
    python bench/sweep_bench.py --quick    # 4 short runs: a smoke run, not a measurement

The runs: a VAE 64 -> 128 -> 128 -> 8 (Bernoulli decoder) on the 1,500 training digits, 40 epochs,
batch 64, beta in {0.5, 1, 2, 4, 8} x 4 seeds. They are done

- serially, in this process, one after the other, on one vaecore thread (an in-process executor);
- by ``vaecore.sweep``'s default executor: a process per core (``ProcessPoolExecutor``, one thread
  each), the time counting the start of the processes;
- on a Dask ``LocalCluster`` of 2 worker processes with 1 thread each, the time counting the sweep
  (the cluster's start is reported on its own).

Each way writes into its own temporary folder, so nothing is reused, and the three give the same
records (checked: every field but seconds and host). ``bench/run.py`` calls :func:`measure` and puts
:func:`markdown`'s table into bench/results/latest.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import tempfile
import time


class _InProcess(cf.Executor):
    """Runs each submitted call at once, in this process (the serial baseline)."""

    def submit(self, fn, *args, **kwargs):
        fut = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:   # noqa: BLE001 - handed on through the future
            fut.set_exception(e)
        return fut


def _workload(quick):
    import vaecore

    X, _ = vaecore.datasets.digits("train")
    build = vaecore.ModelBuilder("VAE", input_dim=64, latent_dim=8, hidden=(128, 128), likelihood="bernoulli")
    grid = {"beta": [0.5, 1.0] if quick else [0.5, 1.0, 2.0, 4.0, 8.0]}
    seeds = range(2) if quick else range(4)
    return dict(build=build, X=X, grid=grid, seeds=seeds, epochs=3 if quick else 40, batch_size=64,
                progress=False)


def measure(quick=False, log=lambda msg: print(msg, file=sys.stderr, flush=True)):
    """Time the three ways; a dict of runs, epochs, cores and, per way, seconds and runs per minute."""
    import vaecore
    from vaecore.sweep import COMPARED_FIELDS

    kw = _workload(quick)
    n = len(kw["grid"]["beta"]) * len(kw["seeds"])
    out = {"runs": n, "epochs": kw["epochs"], "cores": len(os.sched_getaffinity(0)), "ways": {}, "notes": [],
           "load_before": os.getloadavg()[0]}
    records = {}
    with tempfile.TemporaryDirectory(prefix="vaecore-sweep-bench-") as tmp:
        def timed(name, cpu, **extra):
            log(f"sweep: {n} runs, {name} ...")
            c0, t0 = cpu(), time.perf_counter()
            records[name] = vaecore.sweep(out=os.path.join(tmp, name), **kw, **extra)
            s, c = time.perf_counter() - t0, cpu() - c0
            out["ways"][name] = {"seconds": s, "runs_per_min": 60 * n / s, "cpu_seconds": c,
                                 "run_seconds": sum(r["seconds"] for r in records[name]) / n}

        def children_cpu():   # the pool's processes are reaped when the sweep ends, so os.times counts them
            t = os.times()
            return t.children_user + t.children_system

        threads = vaecore.get_num_threads()
        vaecore.set_num_threads(1)
        try:
            timed("serial", time.process_time, executor=_InProcess())
        finally:
            vaecore.set_num_threads(threads)
        timed("processes", children_cpu)
        try:
            import distributed
        except ImportError:
            out["notes"].append("Dask not installed (pip install 'vaecore[dask]'): no LocalCluster row.")
        else:
            t0 = time.perf_counter()
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                          dashboard_address=None) as cluster, distributed.Client(cluster) as client:
                out["dask_start_seconds"] = time.perf_counter() - t0
                timed("dask", lambda: sum(client.run(time.process_time).values()), executor=client)
    out["load_after"] = os.getloadavg()[0]
    base = [{k: r[k] for k in COMPARED_FIELDS} for r in records["serial"]]
    out["same_records"] = all([{k: r[k] for k in COMPARED_FIELDS} for r in rs] == base for rs in records.values())
    out["failed"] = sum(r["status"] != "ok" for rs in records.values() for r in rs)
    return out


def markdown(s):
    """The sweep section of latest.md."""
    label = {"serial": "serially, in one process (1 thread)",
             "processes": f"vaecore.sweep default: a process per core ({s['cores']} cores)",
             "dask": "Dask LocalCluster, 2 worker processes x 1 thread"}
    serial = s["ways"]["serial"]["runs_per_min"]
    lines = ["### Sweeps: runs per minute", "",
             f"{s['runs']} runs of a small VAE on the digits ({s['epochs']} epochs each); records identical across "
             f"the executors: {'yes' if s['same_records'] else 'NO'}.", "",
             "| executor | seconds | runs per minute | vs serial | seconds per run, in its worker | CPU seconds | "
             "cores it got |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, w in s["ways"].items():
        lines.append(f"| {label[name]} | {w['seconds']:.1f} | {w['runs_per_min']:.1f} | "
                     f"{w['runs_per_min'] / serial:.2f}x | {w['run_seconds']:.2f} | {w['cpu_seconds']:.1f} | "
                     f"{w['cpu_seconds'] / w['seconds']:.2f} |")
    lines += ["", f"CPU seconds: of this process (serial), of the pool's processes, of the Dask workers. 1-minute "
              f"load average {s['load_before']:.1f} before, {s['load_after']:.1f} after (this benchmark adds up to "
              f"{s['cores']}). When other processes share the cores, the parallel rows get fewer than "
              f"{s['cores']} cores (last column) and their speed-up shrinks in proportion."]
    if "dask_start_seconds" in s:
        lines += ["", f"Starting the LocalCluster took {s['dask_start_seconds']:.1f} s (not in its row)."]
    lines += [f"{note}" for note in s["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 short runs: a smoke run, not a measurement")
    args = ap.parse_args(argv)
    s = measure(quick=args.quick)
    print(markdown(s))
    return 0 if s["same_records"] and not s["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
