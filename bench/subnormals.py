"""How subnormal numbers slow a long run: vaecore (which flushes them, csrc/vae.h) against PyTorch
eager with its default IEEE subnormals and with ``torch.set_flush_denormal(True)``.

    python bench/subnormals.py [--workload digits] [--blocks 10] [--steps 200]

All three train the same workload from the same initial weights on one thread, in blocks of
`--steps` steps taken in turn, and the script prints each block's milliseconds per step, the
ratios, and how many of PyTorch's Adam first moments are subnormal. On digits the moments of the
weights fed by the always-blank corner pixels reach the subnormals after about 700 steps (0.9^t
from their first values); from then on IEEE arithmetic keeps them there. Needs PyTorch.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import peers  # noqa: E402
import workloads  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="digits", choices=sorted(workloads.WORKLOADS))
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="steps per block and peer")
    args = ap.parse_args()
    if args.blocks < 1 or args.steps < 1:
        ap.error("--blocks and --steps must be >= 1")
    import torch

    import vaecore

    torch.set_num_threads(1)
    vaecore.set_num_threads(1)
    w = workloads.WORKLOADS[args.workload]
    X, _ = workloads.load_data(w.data)
    batches = workloads.epoch_batches(X, w.batch)
    runs = [("vaecore", peers.VaecorePeer(w), False),
            ("torch", peers.TorchPeer(w, adam="fused"), False),
            ("torch+flush", peers.TorchPeer(w, adam="fused"), True)]
    tiny = np.finfo(np.float32).tiny
    print(f"{args.workload}, one thread, ms per step in blocks of {args.steps} steps")
    print("| steps | vaecore | torch | × torch | torch, flush_denormal | × torch, flush | torch's subnormal moments |")
    print("|---|---|---|---|---|---|---|")
    for b in range(args.blocks):
        ms = []
        for _, peer, flush in runs:
            torch.set_flush_denormal(flush)
            t0 = time.perf_counter()
            for i in range(args.steps):
                peer.step(batches[(b * args.steps + i) % len(batches)])
            ms.append(1e3 * (time.perf_counter() - t0) / args.steps)
        torch.set_flush_denormal(False)
        sub = sum(int(((s["exp_avg"] != 0) & (s["exp_avg"].abs() < tiny)).sum())
                  for s in runs[1][1].opt.state.values())
        print(f"| {(b + 1) * args.steps} | {ms[0]:.3f} | {ms[1]:.3f} | {ms[1] / ms[0]:.2f}× | {ms[2]:.3f} "
              f"| {ms[2] / ms[0]:.2f}× | {sub} |", flush=True)


if __name__ == "__main__":
    main()
