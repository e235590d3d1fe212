"""Where a vaecore training step spends its time: a per-phase profile (issue 10).

For each workload, trains vaecore's model (float32, Adam, the workload's batches)
with the C core's profile on (``vaecore._core.profile``) and splits the wall time
of a step into its phases: drawing the noise, the forward pass, the loss, the
backward pass and the optimizer (clipping and Adam). Within the forward and the
backward pass it separates the matrix products (``gemm``, packing included),
their packing (copying blocks of the operands into the micro-kernel's panels,
im2col included) and everything else (bias, activations, col2im, the
reparameterization and KL pieces). The GFLOP/s column is the products' flops
(workloads.flops_per_step) over the time spent in gemm.

Run it alone (``python bench/phases.py --workloads wide --threads 1``) or as
part of ``bench/run.py``, which adds its table to the report. What this is not:
a comparison with the peers (that is run.py's job), nor a profile of PyTorch.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import workloads  # noqa: E402
from peers import VaecorePeer  # noqa: E402

PHASES = ("noise", "forward", "loss", "backward", "optimizer")


def profile_workload(name, threads, seconds=2.0, warmup=0.5):
    """The profile of `name` at `threads` threads: a dict of milliseconds per step."""
    import vaecore
    from vaecore import _core

    vaecore.set_num_threads(threads)
    w = workloads.WORKLOADS[name]
    X, _ = workloads.load_data(w.data)
    batches = workloads.epoch_batches(X, w.batch)
    peer = VaecorePeer(w)
    i, t_end = 0, time.perf_counter() + warmup
    while time.perf_counter() < t_end or i < 3:
        peer.step(batches[i % len(batches)])
        i += 1
    _core.profile(True)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n < 3:
        peer.step(batches[(i + n) % len(batches)])
        n += 1
    wall = time.perf_counter() - t0
    p = _core.profile(False)
    steps = p["steps"]
    ms = lambda v: 1e3 * v / steps  # noqa: E731
    out = {"workload": name, "threads": threads, "steps": steps, "step_ms": 1e3 * wall / n}
    for ph in PHASES:
        out[ph] = ms(p["total"][ph])
        out[ph + "_gemm"] = ms(p["gemm"][ph])
        out[ph + "_pack"] = ms(p["pack"][ph])
    out["python_ms"] = out["step_ms"] - sum(out[ph] for ph in PHASES)
    gemm_s = sum(p["gemm"][ph] for ph in PHASES) / steps
    out["gemm_gflops"] = workloads.flops_per_step(w) / gemm_s / 1e9 if gemm_s > 0 else float("nan")
    return out


def table(rows):
    """A Markdown table of profiles (milliseconds per step)."""
    head = ("| workload | threads | step ms | noise | forward: gemm (pack) + other | loss | "
            "backward: gemm (pack) + other | optimizer | Python + call | gemm GFLOP/s |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        def split(ph):
            g, pk, tot = r[ph + "_gemm"], r[ph + "_pack"], r[ph]
            return f"{tot:.2f} = {g:.2f} ({pk:.2f}) + {tot - g:.2f}"
        lines.append(f"| {r['workload']} | {r['threads']} | {r['step_ms']:.2f} | {r['noise']:.3f} | "
                     f"{split('forward')} | {r['loss']:.3f} | {split('backward')} | {r['optimizer']:.2f} | "
                     f"{r['python_ms']:.3f} | {r['gemm_gflops']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(workloads.WORKLOADS))
    ap.add_argument("--threads", default="1")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    # the VQ-VAE's step (vq.inc) does not feed the C core's profile: left out
    names = [n for n in args.workloads.split(",") if n and not isinstance(workloads.WORKLOADS[n], workloads.VQWorkload)]
    rows = [profile_workload(n, int(t), args.seconds) for t in args.threads.split(",") for n in names]
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
