"""Where a vaecore training step spends its time: a per-phase profile (issue 10).

For each workload, trains vaecore's model (float32, Adam, the workload's batches)
with the C core's profile on (``vaecore._core.profile``) and splits the wall time
of a step into its phases: drawing the noise, the forward pass, the loss, the
backward pass and the optimizer (clipping and Adam). Within the forward and the
backward pass it separates the matrix products (``gemm``, packing included),
their packing (copying blocks of the operands into the micro-kernel's panels,
im2col included) and everything else (bias, activations, col2im, the
reparameterization and KL pieces). The GFLOP/s column is the products' flops
(workloads.flops_per_step) over the time spent in gemm. The VQ-VAE's step has the
same phases but no noise: its forward pass includes the nearest-code search, its
loss the code counts, and its optimizer the codebook's moving averages.

Two parts of what is not gemm are timed on their own: Adam's finiteness check
(the pass over the parameters and both moments before any value is stored, part
of the optimizer) and the gradient's squared norm (part of the backward pass).

With ``--torch`` it also profiles PyTorch eager's step on the same workload
(``torch.profiler``, self CPU time per operator) and sorts its operators the same
way: the matrix products and convolutions, the fused Adam, and the rest of the
step. ``compare_table`` sets the two side by side: that is where a gap between
the peers lies, measured rather than argued.

Run it alone (``python bench/phases.py --workloads wide --threads 1 --torch``) or
as part of ``bench/run.py``, which adds its tables to the report. What this is
not: the comparison of speeds (that is run.py's job, interleaved; the profiles
here run one after the other, so their steps are not the table's).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import workloads  # noqa: E402
from peers import make_peer  # noqa: E402

PHASES = ("noise", "forward", "loss", "backward", "optimizer")


def profile_workload(name, threads, seconds=2.0, warmup=0.5):
    """The profile of `name` at `threads` threads: a dict of milliseconds per step."""
    import vaecore
    from vaecore import _core

    vaecore.set_num_threads(threads)
    w = workloads.WORKLOADS[name]
    X, _ = workloads.load_data(w.data)
    batches = workloads.epoch_batches(X, w.batch)
    peer = make_peer("vaecore", w)
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
    out = vaecore_row(name, threads, n, wall, p)
    gemm_s = sum(p["gemm"][ph] for ph in PHASES) / p["steps"]
    out["gemm_gflops"] = workloads.flops_per_step(w) / gemm_s / 1e9 if gemm_s > 0 else float("nan")
    return out


def add_profile(acc, p):
    """acc += p, for profiles as _core.profile returns them (acc None starts a sum); returns acc."""
    if acc is None:
        return {k: dict(v) if isinstance(v, dict) else v for k, v in p.items()}
    for k, v in p.items():
        if isinstance(v, dict):
            for ph in v:
                acc[k][ph] += v[ph]
        else:
            acc[k] += v
    return acc


def vaecore_row(name, threads, n, wall, p):
    """A row of milliseconds per step from the profile p of n steps that took `wall` seconds: each
    phase with its products and their packing, Adam's check, the gradient's norm, and the rest of the
    wall time (the Python call)."""
    ms = lambda v: 1e3 * v / p["steps"]  # noqa: E731
    row = {"workload": name, "threads": threads, "steps": p["steps"], "step_ms": 1e3 * wall / n}
    for ph in PHASES:
        row[ph] = ms(p["total"][ph])
        row[ph + "_gemm"] = ms(p["gemm"][ph])
        row[ph + "_pack"] = ms(p["pack"][ph])
    row["check"] = ms(p["check"])   # Adam's check pass, within "optimizer"
    row["norm"] = ms(p["norm"])     # the gradient's squared norm, within "backward"
    row["python_ms"] = row["step_ms"] - sum(row[ph] for ph in PHASES)
    return row


# PyTorch operators that are matrix products or convolutions (their backward included)
TORCH_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
TORCH_ADAM = ("aten::_fused_adam_", "aten::_fused_adam")


def torch_op_kind(name):
    """'products', 'adam' or 'other' for a PyTorch operator's profiler name."""
    if name in TORCH_PRODUCTS or ("conv" in name and name.startswith("aten::")):
        return "products"
    return "adam" if name in TORCH_ADAM else "other"


def compare_workload(name, threads, rounds=6, seconds=0.5, warmup=0.5):
    """vaecore's profile (as profile_workload) and PyTorch eager's (fused Adam, as run.py times it)
    on `name` at `threads` threads, in one process and interleaved: `rounds` times a stretch of
    `seconds` of vaecore's steps, then one of PyTorch's, so that both meet the same machine. PyTorch's
    step is split by torch.profiler's self CPU time per operator into the matrix products and
    convolutions, the fused Adam, and the rest (its profiled wall time minus those two, so the
    profiler's own cost per operator lands there). Returns (vaecore's row, PyTorch's row), each in
    milliseconds per step over all its rounds."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import vaecore
    from vaecore import _core

    vaecore.set_num_threads(threads)
    torch.set_num_threads(threads)
    w = workloads.WORKLOADS[name]
    X, _ = workloads.load_data(w.data)
    batches = workloads.epoch_batches(X, w.batch)
    peers = {"vaecore": make_peer("vaecore", w), "torch": make_peer("torch", w, adam="fused")}
    done = {"vaecore": 0, "torch": 0}

    def run(peer, secs, least=1):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < secs or n < least:
            peers[peer].step(batches[(done[peer] + n) % len(batches)])
            n += 1
        done[peer] += n
        return n, time.perf_counter() - t0

    for peer in peers:
        run(peer, warmup, 3)
    vc, vc_steps, vc_wall = None, 0, 0.0
    tc = {"steps": 0, "wall": 0.0, "products": 0.0, "adam": 0.0}
    for _ in range(rounds):
        _core.profile(True)
        n, wall = run("vaecore", seconds)
        vc = add_profile(vc, _core.profile(False))
        vc_steps += n
        vc_wall += wall
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            n, wall = run("torch", seconds)
        tc["steps"] += n
        tc["wall"] += wall
        for e in prof.key_averages():
            kind = torch_op_kind(e.key)
            if kind != "other":
                tc[kind] += e.self_cpu_time_total / 1e6   # microseconds
    ms = lambda v, n: 1e3 * v / n  # noqa: E731
    row = {**vaecore_row(name, threads, vc_steps, vc_wall, vc), "peer": "vaecore"}
    trow = {"workload": name, "threads": threads, "peer": "torch", "steps": tc["steps"],
            "step_ms": ms(tc["wall"], tc["steps"]), "products": ms(tc["products"], tc["steps"]),
            "adam": ms(tc["adam"], tc["steps"])}
    trow["rest"] = trow["step_ms"] - trow["products"] - trow["adam"]
    return row, trow


def compare_table(vc_rows, torch_rows):
    """A Markdown table, vaecore's profile beside PyTorch's, milliseconds per step."""
    tr = {(r["workload"], r["threads"]): r for r in torch_rows}
    lines = ["| workload | threads | step: vaecore / PyTorch | products: vaecore / PyTorch | "
             "Adam: vaecore (of it the check) / PyTorch | rest: vaecore (of it the norm) / PyTorch |",
             "|" + "---|" * 6]
    for r in vc_rows:
        t = tr.get((r["workload"], r["threads"]))
        if not t:
            continue
        prod = sum(r[ph + "_gemm"] for ph in PHASES)
        rest = r["step_ms"] - prod - r["optimizer"]
        f = lambda v: f"{v:.3g}"  # noqa: E731
        lines.append(f"| {r['workload']} | {r['threads']} | {f(r['step_ms'])} / {f(t['step_ms'])} | "
                     f"{f(prod)} / {f(t['products'])} | {f(r['optimizer'])} ({f(r['check'])}) / {f(t['adam'])} | "
                     f"{f(rest)} ({f(r['norm'])}) / {f(t['rest'])} |")
    return "\n".join(lines)


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
    ap.add_argument("--torch", action="store_true", help="also profile PyTorch eager's step, and compare")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds of the comparison (--torch)")
    args = ap.parse_args(argv)
    names = [n for n in args.workloads.split(",") if n]
    rows = [profile_workload(n, int(t), args.seconds) for t in args.threads.split(",") for n in names]
    print(table(rows))
    if args.torch:
        pairs = [compare_workload(n, int(t), args.rounds, min(0.5, args.seconds / 4))
                 for t in args.threads.split(",") for n in names]
        print()
        print(compare_table([v for v, _ in pairs], [t for _, t in pairs]))
        rows += [dict(r, compare=True) for pair in pairs for r in pair]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
