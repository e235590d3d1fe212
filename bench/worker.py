"""One measurement in a fresh process: run.py starts one of these per (workload, peer, threads).

A fresh process per measurement gives each peer its own thread settings (the
BLAS libraries read OPENBLAS_NUM_THREADS / MKL_NUM_THREADS / OMP_NUM_THREADS
when they load, which run.py sets before starting us), its own peak resident
memory, and no warm caches or imported libraries from another peer.

    python bench/worker.py JSON_SPEC     prints one JSON object on its last line

Kinds of spec:
    {"kind": "serve", "workload", "peer", "threads", "batches" (a .npy path),
     "seconds" (per repeat), "warmup" (seconds), "adam"}
        -> times one repeat per "repeat" line on stdin (see serve), then memory
    {"kind": "guard", "workload", "peers", "batches", "steps", "seed", "adam"}
        -> the loss of every step of every peer, trained on the same batches
           from the same parameters with the same fixed eps
    {"kind": "gemm", "M", "N", "K", "seconds"}
        -> seconds per C = A @ B of vaecore's kernel (if it has gemm_bench),
           NumPy and PyTorch, one thread
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import TORCH_PEERS, make_peer  # noqa: E402
from workloads import WORKLOADS  # noqa: E402


def _status_mb(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb():
    """The current resident set size, in MiB."""
    r = _status_mb("VmRSS")
    return peak_rss_mb() if r is None else r


def peak_rss_mb():
    """The peak resident set size of this process, in MiB: VmHWM, which belongs to this
    process's own address space. (getrusage's ru_maxrss is not used where VmHWM exists:
    Linux carries it across exec, so a child started by a big parent inherits its peak.)"""
    r = _status_mb("VmHWM")
    if r is not None:
        return r
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def reset_peak_rss():
    """Restart VmHWM from the current RSS (Linux >= 4.0: write 5 to clear_refs); True if done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def set_threads(peer, n):
    """Give the peer n threads; returns what was set."""
    done = []
    if peer in TORCH_PEERS:
        import torch

        torch.set_num_threads(n)
        done.append(f"torch.set_num_threads({n})")
    if peer == "numpy":
        done.append(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    if peer == "vaecore":
        import vaecore

        if hasattr(vaecore, "set_num_threads"):
            vaecore.set_num_threads(n)
            done.append(f"vaecore.set_num_threads({n})")
        else:
            done.append("vaecore has no set_num_threads: single-threaded C core")
    return done


def serve(spec):
    """Build one peer, warm it up, then time repeats on request, so that run.py can interleave
    the repeats of every peer (each then meets the same varying load of the machine).

    Protocol, one JSON object per line: we print {"ready": ...} after the warm-up; then for each
    line "repeat" on stdin we time `steps_per_repeat` steps and print {"rate", "cpu_s", "wall_s"};
    on "finish" (or end of input) we return the memory figures, which main() prints."""
    w = WORKLOADS[spec["workload"]]
    peer = spec["peer"]
    batches = list(np.load(spec["batches"]))          # views of one (n_batches, B, D) float32 epoch
    threads = set_threads(peer, spec["threads"])
    rss0 = rss_mb()
    peak_reset = reset_peak_rss()                     # the peak from here on: model, optimizer, steps
    p = make_peer(peer, w, spec.get("adam"))
    nb = len(batches)

    # warm-up: at least 3 steps and `warmup` seconds; the first step includes any compilation
    t0 = time.perf_counter()
    p.step(batches[0])
    first = time.perf_counter() - t0
    i, t1 = 1, time.perf_counter()
    while i < 3 or time.perf_counter() - t0 < spec["warmup"] + first:
        p.step(batches[i % nb])
        i += 1
    per_step = (time.perf_counter() - t1) / (i - 1)
    n = max(1, round(spec["seconds"] / per_step))     # steps per timed repeat
    print(json.dumps({"ready": True, "steps_per_repeat": n, "first_step_s": first}), flush=True)

    rates = []
    for line in sys.stdin:
        if line.strip() != "repeat":
            break
        c, t = time.process_time(), time.perf_counter()
        for _ in range(n):
            p.step(batches[i % nb])
            i += 1
        wall = time.perf_counter() - t
        rates.append(n / wall)
        print(json.dumps({"rate": rates[-1], "cpu_s": time.process_time() - c, "wall_s": wall}), flush=True)
    rss_after = rss_mb()
    # one more repeat's worth of steps: resident memory should not grow any further
    for _ in range(n):
        p.step(batches[i % nb])
        i += 1
    return {
        "steps_per_repeat": n,
        "first_step_s": first,
        "threads_set": threads,
        "rss_before_model_mb": rss0,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_reset": peak_reset,
        "rss_after_mb": rss_after,
        "rss_growth_mb": rss_mb() - rss_after,
    }


def guard(spec):
    """Every peer trains `steps` steps from the same parameters, on the same batches, with the
    same eps sequence; the loss of each step (before its update) is returned per peer."""
    w = WORKLOADS[spec["workload"]]
    batches = list(np.load(spec["batches"]))
    nb = len(batches)
    rng = np.random.default_rng(spec["seed"])
    K = getattr(w, "latent_dim", 0)                   # a VQ-VAE has no noise: eps (B, 0), unused
    eps = [rng.standard_normal((w.batch, K), dtype=np.float32) for _ in range(spec["steps"])]
    out = {}
    for peer in spec["peers"]:
        try:
            set_threads(peer, 1)
            p = make_peer(peer, w, spec.get("adam"))
            out[peer] = [p.step_eps(batches[s % nb], eps[s]) for s in range(spec["steps"])]
        except Exception as e:  # a failing peer is reported, not fatal
            out[peer] = f"{type(e).__name__}: {e}"
    return {"losses": out}


def gemm(spec):
    M, N, K, seconds = spec["M"], spec["N"], spec["K"], spec["seconds"]
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, K), dtype=np.float32)
    B = rng.standard_normal((K, N), dtype=np.float32)
    C = np.empty((M, N), dtype=np.float32)

    def best_time(fn):
        fn()                                              # warm-up
        t = time.perf_counter()
        fn()
        once = time.perf_counter() - t
        reps = max(1, int(seconds / 5 / max(once, 1e-9)))
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, (time.perf_counter() - t) / reps)
        return best

    res = {}
    import vaecore

    if hasattr(vaecore._core, "gemm_bench"):
        reps = max(1, int(seconds * 20))
        try:
            vaecore._core.gemm_bench(M, N, K, 1)              # warm-up
            # the kernel times itself: seconds per call, the best of its repeats (or their mean)
            res["vaecore"] = min(float(vaecore._core.gemm_bench(M, N, K, max(1, reps // 5))) for _ in range(5))
        except Exception as e:
            res["vaecore"] = f"{type(e).__name__}: {e}"
    else:
        res["vaecore"] = "vaecore._core has no gemm_bench yet: skipped"
    res["numpy"] = best_time(lambda: np.matmul(A, B, out=C))
    try:
        import torch

        torch.set_num_threads(1)
        At, Bt, Ct = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C)
        res["torch"] = best_time(lambda: torch.mm(At, Bt, out=Ct))
    except ImportError:
        res["torch"] = "PyTorch not installed"
    return res


def main():
    spec = json.loads(sys.argv[1])
    if spec.get("no_torch"):
        sys.modules["torch"] = None        # behave exactly as if PyTorch were not installed
    try:
        result = {"serve": serve, "guard": guard, "gemm": gemm}[spec["kind"]](spec)
        result["ok"] = True
    except Exception as e:
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
