"""Two builds of vaecore's core compared in one process, turn and turn about (issue 10).

A change to the core is judged by its effect on whole training steps, but this
project's machine is shared: its speed drifts by 10 to 30% within minutes, so two
builds timed one after the other, or even in alternating processes, mostly
measure the drift. Here both builds live in the same process, each loaded under
a package name of its own (the package's modules import each other relatively,
and an extension's init function is named after the last part of its module
name, so ``abN._core`` loads as well as ``vaecore._core``). Their steps then
alternate in stretches of a fraction of a second, on the same batches, and every
round gives each build the same machine.

    python bench/ab.py BUILD_A BUILD_B [--workloads spirals,fashion] [--threads 1] [--rounds 10]
    python bench/ab.py HEAD~1 . --gemm          # also single products, as in make bench

A build is a directory that holds a built ``vaecore`` package (``.`` is this
checkout once ``make install`` has built it in place), or a git revision, which
is exported and built into a temporary directory (a minute or so each). Prints,
per workload and thread count, the median milliseconds per step of each build
and B's speed-up over A (> 1: B is faster). What it is not: a comparison with
the peers (bench/run.py), nor a check that the builds compute the same numbers
(the tests do that).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads  # noqa: E402
from peers import vaecore_model  # noqa: E402

GEMM_SHAPES = ((256, 1024, 1024, False, False), (128, 400, 784, False, False), (128, 784, 400, False, True),
               (1024, 1024, 256, True, False), (64, 64, 64, False, True))


def build(rev, into):
    """Export git revision rev of this repository into the directory `into` and build its core
    there in place; returns `into`."""
    root = HERE.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    r = subprocess.run([sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=into,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building {rev} failed:\n{r.stderr[-2000:]}")
    return into


def load(directory, name):
    """The vaecore package under `directory`, imported as the package `name`."""
    pkg = Path(directory) / "vaecore"
    if not any(pkg.glob("_core*.so")) and not any(pkg.glob("_core*.pyd")):
        raise FileNotFoundError(f"{pkg} holds no built core (_core*.so): run 'make install' there, or give a git revision")
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def resolve(builds, tmp):
    """(label, directory) for each build: a directory as it is, a git revision built in tmp."""
    out = []
    for i, b in enumerate(builds):
        if Path(b).is_dir():
            out.append((b, Path(b).resolve()))
        else:
            d = Path(tmp) / f"build{i}"
            d.mkdir()
            print(f"building {b} ...", file=sys.stderr, flush=True)
            out.append((b, build(b, d)))
    return out


def compare_steps(mods, name, threads, rounds, seconds):
    """Median milliseconds per step of each module's model of workload `name`, alternating."""
    w = workloads.WORKLOADS[name]
    X, _ = workloads.load_data(w.data)
    batches = workloads.epoch_batches(X, w.batch)
    shape = (-1, *w.input_shape) if hasattr(w, "input_shape") else None
    runs = []
    for mod in mods:
        mod.set_num_threads(threads)
        m = vaecore_model(w, mod)
        opt = mod.Adam(m, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        beta = getattr(w, "beta", 1.0)
        if isinstance(w, workloads.VQWorkload):
            step = lambda x, m=m, opt=opt: m.train_step(x.reshape(shape), opt)  # noqa: E731
        else:
            step = lambda x, m=m, opt=opt: m.train_step(x if shape is None else x.reshape(shape), opt,  # noqa: E731
                                                         beta=beta)
        runs.append(step)
    done = [0] * len(mods)
    times = [[] for _ in mods]

    def stretch(k, secs, least=1):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < secs or n < least:
            runs[k](batches[(done[k] + n) % len(batches)])
            n += 1
        done[k] += n
        return (time.perf_counter() - t0) / n

    for k in range(len(mods)):
        stretch(k, 0.3, 3)   # warm-up: buffers, caches, the OpenMP threads
    for r in range(rounds):
        order = range(len(mods)) if r % 2 == 0 else reversed(range(len(mods)))
        for k in order:
            times[k].append(1e3 * stretch(k, seconds))
    return [statistics.median(t) for t in times]


def compare_gemm(mods, rounds):
    """Median microseconds per call of each module's gemm on GEMM_SHAPES, alternating."""
    times = {(k, s): [] for k in range(len(mods)) for s in GEMM_SHAPES}
    for r in range(rounds):
        for s in GEMM_SHAPES:
            M, N, K, ta, tb = s
            for k in (range(len(mods)) if r % 2 == 0 else reversed(range(len(mods)))):
                reps = 5 if M * N * K > 1e6 else 200
                times[(k, s)].append(1e6 * mods[k]._core.gemm_bench(M, N, K, reps, "float32", ta, tb))
    return {s: [statistics.median(times[(k, s)]) for k in range(len(mods))] for s in GEMM_SHAPES}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs=2, help="two builds: directories with a built vaecore package, or git revisions")
    ap.add_argument("--workloads", default="spirals,digits,fashion",
                    help="comma-separated, from " + ", ".join(workloads.WORKLOADS))
    ap.add_argument("--threads", default="1", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds (default 10)")
    ap.add_argument("--seconds", type=float, default=0.3, help="length of one stretch of steps (default 0.3 s)")
    ap.add_argument("--gemm", action="store_true", help="also compare single products (_core.gemm_bench)")
    args = ap.parse_args(argv)
    names = [n for n in args.workloads.split(",") if n]
    for n in names:
        if n not in workloads.WORKLOADS:
            ap.error(f"--workloads: {n!r} is not one of {', '.join(workloads.WORKLOADS)}")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="vaecore-ab-") as tmp:
        builds = resolve(args.builds, tmp)
        mods = [load(d, f"vaecore_ab{i}") for i, (_, d) in enumerate(builds)]
        (la, _), (lb, _) = builds
        print(f"A = {la}, B = {lb}; {args.rounds} alternating rounds; B's speed-up over A (> 1: B is faster)")
        print("| workload | threads | A ms/step | B ms/step | B over A |")
        print("|---|---|---|---|---|")
        for t in args.threads.split(","):
            for n in names:
                a, b = compare_steps(mods, n, int(t), args.rounds, args.seconds)
                print(f"| {n} | {t} | {a:.4g} | {b:.4g} | {a / b:.3f}× |", flush=True)
        if args.gemm:
            print()
            print("| product (M, N, K, A transposed, B transposed) | A µs | B µs | B over A |")
            print("|---|---|---|---|")
            for s, (a, b) in compare_gemm(mods, args.rounds).items():
                print(f"| {s} | {a:.4g} | {b:.4g} | {a / b:.3f}× |", flush=True)


if __name__ == "__main__":
    main()
