"""vaecore's benchmark suite (issue 5): vaecore against NumPy and PyTorch, side by side.

    python bench/run.py                      # every workload, 1 thread and all cores
    python bench/run.py --quick              # a fast smoke run (short repeats, short guard)
    python bench/run.py --workloads spirals,digits --threads 1
    python bench/run.py --no-torch           # as if PyTorch were not installed
    python bench/run.py --workloads conv --threads 1 --peers vaecore,torch
                                             # the convolutional VAE (needs vaecore.layers)
    python bench/run.py --workloads vqvae --peers vaecore,torch
                                             # the VQ-VAE of issue 13 against its PyTorch twin

The same model, data, batch order, optimizer (Adam, lr 1e-3) and initial
parameters are trained by each peer (bench/peers.py): vaecore's ``train_step``,
a float32 NumPy VAE (bench/numpy_vae.py), PyTorch eager on the CPU and
``torch.compile`` (both optional: ``pip install 'vaecore[bench]'``). Every
peer runs in a process of its own (bench/worker.py) with the thread count set
before any library loads, and the timed repeats of the peers are interleaved
so that a machine whose load varies slows them alike. For each workload and thread count it reports
training steps per second (the median of several timed repeats after a
warm-up), vaecore's ratio to every peer, the achieved GFLOP/s of the matrix
products and their fraction of the measured FMA peak (bench/peak.py), and the
peak resident memory. A correctness guard trains vaecore, NumPy and PyTorch
from the same parameters with the same fixed noise and checks that they reach
the same loss. A peer that cannot run a workload (NumPy has no
convolutions) is listed as skipped; a workload vaecore cannot build yet (the
conv workload before vaecore has its layer API) is left out with a note. A matrix-multiply micro-benchmark times vaecore's GEMM kernel
alone (when the C core exposes ``gemm_bench``) against NumPy's and PyTorch's.

Writes bench/results/latest.md (printed too), latest.json (every raw number)
and latest.png (steps/s relative to PyTorch eager). Exits with status 1 if
the correctness guard fails.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peak import machine_info, measure_peaks  # noqa: E402
from peers import PEERS, TORCH_PEERS, skip_reason  # noqa: E402
from report import guard_verdict, write_outputs  # noqa: E402
from workloads import WORKLOADS, ConvWorkload, epoch_batches, flops_per_step, load_data, num_params  # noqa: E402
from workloads import VQWorkload  # noqa: E402

GEMM_SHAPE = (256, 1024, 1024)  # M, N, K: C (M, N) = A (M, K) @ B (K, N)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short repeats and a short guard: a smoke run, not a measurement")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {', '.join(PEERS)} (default: all)")
    ap.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = every usable core (default: 1,all)")
    ap.add_argument("--no-torch", action="store_true", help="benchmark as if PyTorch were not installed")
    ap.add_argument("--torch-adam", choices=("default", "foreach", "fused"), default="fused",
                    help="which torch.optim.Adam implementation PyTorch gets (default: fused, its fastest on the CPU here)")
    ap.add_argument("--seconds", type=float, help="length of one timed repeat (default 1.0; --quick 0.05)")
    ap.add_argument("--repeats", type=int, help="timed repeats per measurement (default 5; --quick 2)")
    ap.add_argument("--guard-steps", type=int, help="steps of the correctness guard (default: per workload, 60-300; --quick 20)")
    ap.add_argument("--no-gemm", action="store_true", help="skip the matrix-multiply micro-benchmark")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-phase profile of vaecore's step")
    ap.add_argument("--no-sweep", action="store_true", help="skip the sweep line (bench/sweep_bench.py)")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for latest.md/.json/.png (default bench/results)")
    ap.add_argument("--render", metavar="JSON", help="measure nothing: rewrite the table and chart from a latest.json")
    args = ap.parse_args(argv)
    if args.render:
        return args

    args.workloads = [s.strip() for s in args.workloads.split(",") if s.strip()]
    bad = [s for s in args.workloads if s not in WORKLOADS]
    if bad or not args.workloads:
        ap.error(f"--workloads: unknown {bad}; choose from {', '.join(WORKLOADS)}")
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    bad = [s for s in args.peers if s not in PEERS]
    if bad or "vaecore" not in args.peers:
        ap.error(f"--peers: must include vaecore and come from {', '.join(PEERS)}; got {args.peers}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = []
    for s in args.threads.split(","):
        s = s.strip()
        try:
            n = cores if s == "all" else int(s)
        except ValueError:
            ap.error(f"--threads: expected integers or 'all', got {s!r}")
        if n < 1:
            ap.error(f"--threads: must be >= 1, got {n}")
        if n not in threads:
            threads.append(n)
    args.threads = threads
    args.cores = cores
    if (args.seconds is not None and not args.seconds > 0) or (args.repeats is not None and args.repeats < 1) \
            or (args.guard_steps is not None and args.guard_steps < 1):
        ap.error("--seconds must be > 0, --repeats and --guard-steps >= 1")
    args.seconds = args.seconds or (0.05 if args.quick else 1.0)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.warmup = 0.05 if args.quick else 0.5
    return args


def versions(torch_ok):
    v = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        v["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        v["numpy_blas"] = "unknown"
    import vaecore

    v["vaecore"] = getattr(vaecore, "__version__", "?")
    v["vaecore_set_num_threads"] = hasattr(vaecore, "set_num_threads")
    v["vaecore_gemm_bench"] = hasattr(vaecore._core, "gemm_bench")
    if torch_ok:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__); "
                              "print(torch.backends.cpu.get_cpu_capability())"],
                             capture_output=True, text=True, timeout=300)
        lines = out.stdout.split()
        v["torch"] = lines[0] if lines else f"import failed: {out.stderr.strip()[-200:]}"
        v["torch_cpu_capability"] = lines[1] if len(lines) > 1 else "?"
    try:
        cc = subprocess.run(["cc", "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()
        v["cc"] = cc[0] if cc else "?"
    except OSError:
        v["cc"] = "none"
    try:
        with open(Path(vaecore.__file__).resolve().parent.parent / ".git" / "HEAD") as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            ref = Path(vaecore.__file__).resolve().parent.parent / ".git" / head[5:]
            head = ref.read_text().strip() if ref.exists() else head
        v["git"] = head[:12]
    except OSError:
        pass
    return v


def _busy_seconds():
    """CPU seconds the whole machine has spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_profile(names, threads, seconds, torch=False, rounds=6, timeout=1800):
    """bench/phases.py's per-phase profile of vaecore's step, in a fresh process at `threads` threads:
    a list of rows (milliseconds per step), or one row with an 'error'. With torch, also the rows of
    its interleaved comparison with PyTorch eager's step (marked 'compare')."""
    with tempfile.TemporaryDirectory(prefix="vaecore-phases-") as tmp:
        out = os.path.join(tmp, "phases.json")
        cmd = [sys.executable, str(Path(__file__).with_name("phases.py")), "--workloads", ",".join(names),
               "--threads", str(threads), "--seconds", str(seconds), "--json", out]
        if torch:
            cmd += ["--torch", "--rounds", str(rounds)]
        r = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            return [{"threads": threads, "error": (r.stderr or r.stdout).strip()[-500:]}]
        return json.loads(Path(out).read_text())


def run_worker(spec, threads, timeout=1800):
    """Run bench/worker.py with the spec in a fresh process with `threads` threads everywhere.

    Also measures how busy the rest of the machine was meanwhile: the machine's busy CPU
    time minus the worker's own, per second of wall time, in cores ("others_cores")."""
    busy0, wall0 = _busy_seconds(), time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        r = subprocess.run([sys.executable, str(HERE / "worker.py"), json.dumps(spec)], env=_env(threads),
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, wall = _busy_seconds(), time.perf_counter() - wall0
    lines = r.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        out = {"ok": False, "error": f"worker exited with {r.returncode}: {tail}"}
    if busy0 is not None and busy1 is not None and wall > 0:
        own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        out["others_cores"] = max(0.0, (busy1 - busy0 - own) / wall)
    return out


class PeerProcess:
    """A `serve` worker: one peer, built and warmed up in its own process, timing repeats on demand."""

    def __init__(self, spec, threads, timeout=1800):
        self.spec, self.error, self.info = spec, None, {}
        self.stderr = tempfile.TemporaryFile(mode="w+")    # a file, not a pipe: it can never fill up and block
        self.proc = subprocess.Popen([sys.executable, str(HERE / "worker.py"), json.dumps(spec)], env=_env(threads),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, bufsize=1)
        msg = self._read(timeout)           # the warm-up, torch.compile's compilation included
        if msg is not None and msg.get("ready"):
            self.info = msg

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else None
        try:
            msg = json.loads(line) if line else None
        except ValueError:
            msg = None
        if msg is None or msg.get("ok") is False:
            self.error = (msg or {}).get("error") or (self._stderr_tail() if ready else f"no answer in {timeout} s")
            self._kill()
            return None
        return msg

    def _stderr_tail(self):
        self._kill()
        self.stderr.seek(0)
        tail = self.stderr.read().strip().splitlines()
        return f"worker exited with {self.proc.returncode}: {tail[-1] if tail else 'no output'}"

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def repeat(self):
        """Time one repeat: (steps/s, cores the rest of the machine kept busy meanwhile) or None."""
        if self.error:
            return None
        busy0, t0 = _busy_seconds(), time.perf_counter()
        self.proc.stdin.write("repeat\n")
        self.proc.stdin.flush()
        msg = self._read(max(600.0, 100 * self.spec["seconds"]))
        wall = time.perf_counter() - t0
        if msg is None or "rate" not in msg:
            self.error = self.error or f"unexpected answer {msg}"
            return None
        busy1 = _busy_seconds()
        others = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0 - msg["cpu_s"]) / wall)
        return msg["rate"], others

    def finish(self):
        """The worker's final figures (memory) as a dict with ok=True, or ok=False and the error."""
        if self.error:
            return {"ok": False, "error": self.error}
        try:
            out, _ = self.proc.communicate("finish\n", timeout=600)
        except subprocess.TimeoutExpired:
            self._kill()
            return {"ok": False, "error": "no answer to finish in 600 s"}
        finally:
            self.stderr.close()
        try:
            return {**self.info, **json.loads(out.strip().splitlines()[-1])}
        except (IndexError, ValueError):
            return {"ok": False, "error": f"worker exited with {self.proc.returncode} at the end"}


def time_peers(name, n, peers, path, args, torch_ok, w, skipped=None):
    """Steps/s of every peer on one workload at n threads: each peer in its own process, warmed
    up one after the other, then the timed repeats interleaved round-robin (the order rotating).
    Peers in `skipped` ({peer: reason}) are not started; their rows say why."""
    skipped = skipped or {}
    runs = [{"ok": False, "skipped": why, "error": f"skipped: {why}", "workload": name, "peer": peer, "threads": n}
            for peer, why in skipped.items()]
    peers = [p for p in peers if p not in skipped]
    procs = {}
    for peer in peers:
        spec = {"kind": "serve", "workload": name, "peer": peer, "threads": n, "batches": path,
                "seconds": args.seconds, "warmup": args.warmup, "adam": args.torch_adam, "no_torch": not torch_ok}
        procs[peer] = PeerProcess(spec, n)
    rates = {p: [] for p in peers}
    others = {p: [] for p in peers}
    for k in range(args.repeats):
        order = peers[k % len(peers):] + peers[:k % len(peers)]
        for peer in order:
            got = procs[peer].repeat()
            if got is not None:
                rates[peer].append(got[0])
                if got[1] is not None:
                    others[peer].append(got[1])
    for peer in peers:
        r = procs[peer].finish()
        r.update(workload=name, peer=peer, threads=n)
        if r.get("ok") and rates[peer]:
            r["repeats"] = rates[peer]
            r["steps_per_s"] = float(np.median(rates[peer]))
            r["gflops"] = r["steps_per_s"] * flops_per_step(w) * 1e-9
            r["others_cores"] = float(np.mean(others[peer])) if others[peer] else 0.0
            log(f"{name:8s} {n} thr {peer:14s} {r['steps_per_s']:10.1f} steps/s  {r['gflops']:7.2f} GFLOP/s  "
                f"peak RSS {r['peak_rss_mb']:.0f} MiB  others busy {r['others_cores']:.2f} cores")
        else:
            r["ok"] = False
            r.setdefault("error", "no repeat finished")
            log(f"{name:8s} {n} thr {peer:14s} FAILED: {r.get('error')}")
        runs.append(r)
    return runs


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        print(write_outputs(results, Path(args.out)))
        return 0
    t_start = time.perf_counter()
    torch_installed = importlib.util.find_spec("torch") is not None
    torch_ok = torch_installed and not args.no_torch
    notes = []
    if not torch_ok:
        why = "--no-torch given" if torch_installed else "PyTorch is not installed (pip install 'vaecore[bench]')"
        notes.append(f"PyTorch peers skipped: {why}.")
    peers = [p for p in args.peers if torch_ok or p not in TORCH_PEERS]

    log("machine and peak ...")
    machine = machine_info()
    peak = measure_peaks(seconds=0.1 if args.quick else 0.5, repeats=1 if args.quick else 3)
    vers = versions(torch_ok)
    if not vers["vaecore_set_num_threads"]:
        notes.append("vaecore has no set_num_threads yet: its rows at more than one thread run its single-threaded core.")

    results = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "quick": args.quick,
        "machine": machine, "peak": peak, "versions": vers,
        "settings": {"seconds_per_repeat": args.seconds, "repeats": args.repeats, "warmup_s": args.warmup,
                     "threads": args.threads, "peers": peers, "torch_adam": args.torch_adam},
        "workloads": {}, "skipped_workloads": {}, "runs": [], "guard": {}, "gemm": None, "notes": notes,
    }

    with tempfile.TemporaryDirectory(prefix="vaecore-bench-") as tmp:
        for name in args.workloads:
            w = WORKLOADS[name]
            skipped = {p: why for p in peers if (why := skip_reason(p, w))}
            if "vaecore" in skipped:
                results["skipped_workloads"][name] = skipped["vaecore"]
                notes.append(f"{name}: not measured, {skipped['vaecore']}.")
                log(f"{name}: skipped, {skipped['vaecore']}")
                continue
            X, note = load_data(w.data)
            batches = np.stack(epoch_batches(X, w.batch))            # (n_batches, B, D)
            path = os.path.join(tmp, f"{name}.npy")
            np.save(path, batches)
            del X, batches
            results["workloads"][name] = {
                "arch": w.arch, "describe": w.describe(), "activation": w.activation, "likelihood": w.likelihood,
                "batch": w.batch, "beta": w.beta, "data": note, "num_params": num_params(w),
                "flops_per_step": flops_per_step(w), "path": path,
            }
            if isinstance(w, ConvWorkload):
                results["workloads"][name]["layers"] = {
                    "input_shape": list(w.input_shape), "latent_dim": w.latent_dim,
                    "encoder": [str(l) for l in w.encoder], "decoder": [str(l) for l in w.decoder]}
            if isinstance(w, VQWorkload):
                results["workloads"][name]["vq"] = {
                    "input_shape": list(w.input_shape), "codebook_size": w.codebook_size, "code_dim": w.code_dim,
                    "commitment": w.commitment, "codebook_update": w.codebook_update, "decay": w.decay,
                    "encoder": [str(l) for l in w.encoder], "decoder": [str(l) for l in w.decoder]}
            for p, why in skipped.items():
                notes.append(f"{name}: {p} skipped, {why}.")
            if "SYNTHETIC" in note:
                notes.append(f"{name}: Fashion-MNIST files absent, trained on synthetic data of the same shape.")

            # the correctness guard: same parameters, batches and eps; one thread
            steps = args.guard_steps or (20 if args.quick else w.guard_steps)
            gpeers = [p for p in ("vaecore", "numpy", "torch") if p in peers and p not in skipped]
            if len(gpeers) > 1:
                log(f"{name}: correctness guard, {steps} steps of {', '.join(gpeers)} ...")
                g = run_worker({"kind": "guard", "workload": name, "peers": gpeers, "batches": path, "steps": steps,
                                "seed": 1, "adam": args.torch_adam, "no_torch": not torch_ok}, 1)
                g["steps"] = steps
                g.update(guard_verdict(g))
                log(f"  {'passed' if g.get('passed') else 'FAILED'}: {g.get('summary')}")
            else:
                g = {"passed": None, "steps": 0, "rows": {}, "summary": "not run: neither numpy nor torch among --peers"}
                log(f"{name}: correctness guard {g['summary']}")
            results["guard"][name] = g

            for n in args.threads:
                results["runs"] += time_peers(name, n, peers, path, args, torch_ok, w, skipped)

    compiled = [r for r in results["runs"] if r["peer"] == "torch.compile" and r.get("ok")]
    if compiled:
        notes.append("torch.compile's first step (tracing and compiling, not timed) took "
                     + ", ".join(f"{r['first_step_s']:.1f} s ({r['workload']}, {r['threads']} thr)" for r in compiled) + ".")
    failed = [r for r in results["runs"] if r["peer"] == "torch.compile" and not r.get("ok") and not r.get("skipped")]
    if failed:
        notes.append("torch.compile failed: " + "; ".join(f"{r['workload']}, {r['threads']} thr: {r.get('error')}"
                                                         for r in failed) + ".")

    if not args.no_gemm:
        M, N, K = GEMM_SHAPE
        log(f"matrix multiply {M}x{N}x{K}, one thread ...")
        g = run_worker({"kind": "gemm", "M": M, "N": N, "K": K, "seconds": 0.2 if args.quick else 2.0,
                        "no_torch": not torch_ok}, 1)
        g["shape"] = GEMM_SHAPE
        results["gemm"] = g

    if not args.no_profile:
        results["profile"] = []
        for n in args.threads:
            log(f"per-phase profile of vaecore's step{' beside PyTorch eager' if torch_ok else ''}, {n} thr ...")
            rows = run_profile(args.workloads, n, 0.3 if args.quick else 2.0, torch_ok, 2 if args.quick else 6)
            results["profile"] += [r for r in rows if not r.get("compare")]
            results.setdefault("profile_compare", []).extend(r for r in rows if r.get("compare"))
    if not args.no_sweep:   # 20 runs: serial, vaecore.sweep's processes, a Dask LocalCluster
        from sweep_bench import measure as measure_sweep
        results["sweep"] = measure_sweep(quick=args.quick, log=log)

    results["seconds"] = time.perf_counter() - t_start
    out = Path(args.out)
    md = write_outputs(results, out)
    print(md)
    log(f"wrote {out / 'latest.md'}, {out / 'latest.json'}, {out / 'latest.png'} in {results['seconds']:.0f} s")
    return 1 if any(g.get("passed") is False for g in results["guard"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
