"""The benchmark's outputs: the guard's verdict, the Markdown table, the JSON and the bar chart."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["guard_verdict", "write_outputs", "GUARD_FIRST_TOL", "GUARD_END_TOL"]

# The correctness guard. All peers train from the same parameters on the same batches with the
# same eps, so they differ only by float32 rounding (summation order, exp/tanh implementations),
# which grows slowly along a trajectory. Measured when this was written, over 60-600 steps: the
# first step's losses agree to ~1e-6 and the last-10% means to <= 5e-4. A wrong formula (a KL
# weight, a gradient, Adam's bias correction) moves them by percents.
GUARD_FIRST_TOL = 1e-3   # |loss_0 - loss_0(vaecore)| / |loss_0(vaecore)|: the forward pass alone
GUARD_END_TOL = 5e-3     # the same for the mean loss of the last 10% of steps (at least 5 steps)

# a measurement is flagged when other processes kept more than this many cores busy meanwhile
BUSY_CORES = 0.25


def guard_verdict(g):
    """{'passed', 'summary', 'rows'} from a guard worker's result."""
    if not g.get("ok"):
        return {"passed": False, "summary": f"guard did not run: {g.get('error')}", "rows": {}}
    losses = g["losses"]
    ref = losses.get("vaecore")
    if not isinstance(ref, list):
        return {"passed": False, "summary": f"vaecore failed: {ref}", "rows": {}}
    steps = len(ref)
    tail = max(min(5, steps), steps // 10)
    ref = np.asarray(ref)
    rows, passed, parts = {}, True, []
    for peer, L in losses.items():
        if not isinstance(L, list):
            rows[peer] = {"error": L}
            passed = False
            parts.append(f"{peer} failed: {L}")
            continue
        L = np.asarray(L)
        first_rel = abs(L[0] - ref[0]) / abs(ref[0])
        end = float(L[-tail:].mean())
        end_rel = abs(end - ref[-tail:].mean()) / abs(ref[-tail:].mean())
        trained = end < L[0]
        ok = bool(np.all(np.isfinite(L)) and first_rel <= GUARD_FIRST_TOL and end_rel <= GUARD_END_TOL and trained)
        rows[peer] = {"first": float(L[0]), "end": end, "first_rel": float(first_rel), "end_rel": float(end_rel),
                      "trained": bool(trained), "ok": ok}
        passed &= ok
    others = [p for p in rows if p != "vaecore" and "end_rel" in rows[p]]
    worst = max((rows[p]["end_rel"] for p in others), default=0.0)
    if len(rows) < 2:
        passed = False
        parts.append("no peer to compare vaecore with")
    parts.insert(0, f"{steps} steps, loss {rows['vaecore']['first']:.4g} -> {rows['vaecore']['end']:.4g}, "
                    f"largest end difference to {', '.join(others) or 'nobody'} {worst:.1e}")
    return {"passed": bool(passed), "summary": "; ".join(parts), "rows": rows, "tail": tail}


# ---------------------------------------------------------------- formatting
def _f(x, digits=3):
    """A number with `digits` significant digits, without scientific notation for ordinary sizes."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    return f"{x:.{max(0, digits - 1 - mag)}f}"


def _row(cells):
    """A Markdown table row from a list of cells."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _peak_for(peak, threads, cores):
    """The machine's FMA peak for `threads` threads: one core's peak with its widest vectors
    (AVX-512 where the CPU has it, which vaecore's kernels and MKL use; else AVX2) times the
    cores they can use."""
    one = peak.get("avx512") or peak.get("avx2")
    return None if one is None else one * min(threads, cores)


def _runs_by(results):
    return {(r["workload"], r["threads"], r["peer"]): r for r in results["runs"]}


def markdown(results):
    m, pk, v = results["machine"], results["peak"], results["versions"]
    cores = m["usable_cpus"]
    peers = results["settings"]["peers"]
    others = [p for p in peers if p != "vaecore"]
    runs = _runs_by(results)
    L = []
    L.append("## Benchmark: vaecore vs NumPy and PyTorch" + (" (--quick: a smoke run, not a measurement)" if results["quick"] else ""))
    L.append("")
    tpc = m["threads_per_core"]
    real = ""
    if pk.get("avx2") and pk.get("all_cores_avx2") and cores > 1:
        x = pk["all_cores_avx2"] / pk["avx2"]
        verdict = ("so they are real cores" if x >= 0.85 * cores else
                   "so they share execution units, or other processes were busy (see below)")
        real = (f"the FMA loop on all {cores} cores at once gave {_f(pk['all_cores_avx2'])} GFLOP/s, "
                f"{_f(x, 2)}× one core, {verdict}")
    L.append(f"**Machine**: {m['cpu']}{' (' + m['hypervisor'] + ' guest)' if m.get('hypervisor') else ''}, "
             f"{cores} cores, {tpc if tpc is not None else '?'} thread per core{'; ' + real if real else ''}. "
             f"**Date**: {results['date']}.")
    L.append("")
    if pk.get("avx2"):
        s = (f"**FP32 peak of one core, measured** (bench/fma_peak.c: 12 independent chains of vector FMAs, "
             f"`cc {pk.get('flags')}`): **{_f(pk['avx2'])} GFLOP/s** with 8-wide AVX2 FMA")
        if pk.get("nominal_avx2"):
            s += (f" (the nominal {m['mhz']:.0f} MHz × 8 lanes × 2 flops × 2 FMA units would be "
                  f"{_f(pk['nominal_avx2'])}: the core runs at about {pk['avx2'] / 32 * 1e3:.0f} MHz under turbo)")
        if pk.get("avx512"):
            s += (f"; **{_f(pk['avx512'])} GFLOP/s** with 16-wide AVX-512, which this CPU also has and which "
                  "vaecore's kernels and MKL/oneDNN (PyTorch) use")
        L.append(s + ". \"% peak\" below is of the widest-vector figure (AVX-512 where present) times the "
                 "threads used.")
    else:
        L.append("**FP32 peak**: not measured (" + "; ".join(pk.get("notes") or ["no compiler"]) + "); no % of peak.")
    L.append("")
    ver = [f"Python {v['python']}", f"NumPy {v['numpy']} ({v['numpy_blas']})", f"vaecore {v['vaecore']}"
           + (f" (git {v['git']})" if v.get("git") else "")]
    if "torch" in v:
        ver.append(f"PyTorch {v['torch']} (CPU capability {v.get('torch_cpu_capability')})")
    ver.append(v.get("cc", "cc ?"))
    L.append("**Versions**: " + ", ".join(ver) + ".")
    L.append("")

    # ---- the summary: vaecore's steps/s and its ratio to every peer
    L.append("### Training steps per second: vaecore and its speed-up over each peer")
    L.append("")
    head = ["workload", "threads", "vaecore steps/s", *(f"× {p}" for p in others), "vaecore GFLOP/s", "% peak", "same loss"]
    L.append(_row(head))
    L.append(_row(["---"] * len(head)))
    for name in results["workloads"]:
        g = results["guard"].get(name, {})
        mark = {True: "✓", False: "✗"}.get(g.get("passed"), "–")
        for n in results["settings"]["threads"]:
            r = runs.get((name, n, "vaecore"))
            if not r or not r.get("ok"):
                L.append(_row([name, n, "failed", *("–" for _ in others), "–", "–", mark]))
                continue
            cells = []
            for p in others:
                q = runs.get((name, n, p))
                cells.append(f"{_f(r['steps_per_s'] / q['steps_per_s'], 3)}×" if q and q.get("ok")
                             else "skipped" if q and q.get("skipped") else "failed")
            pk_n = _peak_for(pk, n, cores)
            pct = f"{100 * r['gflops'] / pk_n:.1f}%" if pk_n else "–"
            busy = any(q.get("others_cores", 0.0) > BUSY_CORES for (w_, n_, _), q in runs.items() if (w_, n_) == (name, n))
            L.append(_row([name, f"{n}{' ⚠' if busy else ''}", _f(r["steps_per_s"]), *cells, _f(r["gflops"]), pct, mark]))
    L.append("")
    L.append("× peer = vaecore's steps/s ÷ the peer's, same workload and thread count (> 1: vaecore is faster). "
             "⚠: other processes were busy during these measurements (see below).")
    L.append("")

    # ---- every measurement
    L.append("### Every measurement")
    L.append("")
    L.append("| workload | threads | peer | steps/s | vaecore × | GFLOP/s | % peak | peak RSS MiB | Δ RSS MiB |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for name in results["workloads"]:
        for n in results["settings"]["threads"]:
            base = runs.get((name, n, "vaecore"))
            for p in peers:
                r = runs.get((name, n, p))
                if r is None:
                    continue
                if r.get("skipped"):
                    L.append(f"| {name} | {n} | {p} | skipped: {r['skipped']} | | | | | |")
                    continue
                if not r.get("ok"):
                    err = str(r.get("error", "?")).replace("|", "/").splitlines()[0][:120]
                    L.append(f"| {name} | {n} | {p} | failed: {err} | | | | | |")
                    continue
                ratio = (f"{_f(base['steps_per_s'] / r['steps_per_s'], 3)}×"
                         if base and base.get("ok") and p != "vaecore" else "")
                pk_n = _peak_for(pk, n, cores)
                pct = f"{100 * r['gflops'] / pk_n:.1f}%" if pk_n else "–"
                spread = (max(r["repeats"]) - min(r["repeats"])) / r["steps_per_s"]
                busy = r.get("others_cores", 0.0) > BUSY_CORES
                L.append(f"| {name} | {n} | {p} | {_f(r['steps_per_s'])} ±{100 * spread / 2:.0f}%{' ⚠' if busy else ''} | {ratio} | "
                         f"{_f(r['gflops'])} | {pct} | {r['peak_rss_mb']:.0f} | "
                         f"{r['peak_rss_mb'] - r['rss_before_model_mb']:.1f} |")
    L.append("")
    s = results["settings"]
    busy = [r for r in results["runs"] if r.get("others_cores", 0.0) > BUSY_CORES]
    if busy:
        L.append(f"⚠ Other processes kept on average more than {BUSY_CORES} of the {cores} cores busy during "
                 f"{len(busy)} of {len(results['runs'])} measurements (the worst: "
                 f"{max(r['others_cores'] for r in busy):.2f} cores): those numbers are slower than on an idle "
                 "machine, multi-threaded ones most (a thread that waits at a barrier for a descheduled sibling "
                 "loses a time slice).")
        L.append("")
    L.append(f"steps/s: median of {s['repeats']} timed repeats of ~{s['seconds_per_repeat']:g} s each, after a "
             f"warm-up of ≥ {s['warmup_s']:g} s (and ≥ 3 steps; torch.compile compiles in its first step); every "
             "peer runs in its own process and the repeats of the peers of one row group are interleaved "
             "round-robin, so that they meet the same load; ± is half the spread of the repeats. GFLOP/s counts only the matrix products: per linear layer "
             "2·B·I·O for the forward product, 2·B·I·O for dW = inpᵀ·dout and 2·B·I·O for dinp = dout·Wᵀ (not "
             "for the first encoder layer, whose input x needs no gradient); biases, activations, sampling, loss "
             "and Adam are not counted. Convolutions count the same three products of their im2col matrix "
             "product, 2·B·MACs each: Conv2d B·Ho·Wo·O·C·kh·kw MACs, ConvTranspose2d B·H·W·C·O·kh·kw (H, W of "
             "its input), the products with the zero padding included; the im2col/col2im copies are not counted. Peak RSS: the peer process's peak resident memory from just before the "
             "model is built to the end (Linux VmHWM, reset there), which includes Python, the libraries and one "
             "shuffled epoch of data; Δ RSS: that peak minus the resident memory just before the model was built: "
             "what the model, its optimizer, their first use (lazy library initialisation) and training add.")
    L.append("")

    # ---- workloads
    L.append("### Workloads")
    L.append("")
    L.append("| workload | encoder (decoder mirrors it) | hidden activation | likelihood | batch | β | data | parameters | "
             "GFLOP/step | params+grad+Adam MiB |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, w in results["workloads"].items():
        L.append(f"| {name} | {w['arch']} | {w['activation']} | {w['likelihood']} | {w['batch']} | {w['beta']:g} | "
                 f"{w['data']} | {w['num_params']:,} | {_f(w['flops_per_step'] * 1e-9)} | "
                 f"{4 * 4 * w['num_params'] / 2**20:.1f} |")
    L.append("")
    for name, w in results["workloads"].items():
        lay = w.get("layers")
        if lay:
            L.append(f"{name}: input {'×'.join(map(str, lay['input_shape']))}; encoder "
                     f"`{', '.join(lay['encoder'])}`; heads mu, logvar: Linear({lay['latent_dim']}) each on the "
                     f"encoder's output; decoder `{', '.join(lay['decoder'])}` (Bernoulli logits); "
                     f"c32 in the arch column: a convolution with 32 output channels. PyTorch: "
                     f"bench/torch_conv_vae.py (`nn.Conv2d`, `nn.ConvTranspose2d`, `nn.Linear`).")
            L.append("")
        vq = w.get("vq")
        if vq:
            update = ("moving averages (decay " + format(vq["decay"], "g") + ")" if vq["codebook_update"] == "ema"
                      else "its loss term's gradient")
            L.append(f"{name}: a VQ-VAE (vaecore.VQVAE), input {'×'.join(map(str, vq['input_shape']))}; encoder "
                     f"`{', '.join(vq['encoder'])}`; every position of its output replaced by the nearest of "
                     f"{vq['codebook_size']} codes of {vq['code_dim']} values (straight-through gradient); decoder "
                     f"`{', '.join(vq['decoder'])}` (Bernoulli logits); codebook by {update}; the β column is "
                     f"the commitment weight (there is no KL term, and no noise). GFLOP/step adds the nearest-code "
                     f"search's product. PyTorch: bench/torch_vqvae.py, eager "
                     f"(`nn.Conv2d`, `nn.ConvTranspose2d`, `argmin` over |z|² − 2 z·e + |e|², the moving "
                     f"averages after `optimizer.step()`).")
            L.append("")
    L.append(f"Every peer starts from vaecore's initial parameters (seed 0), trains in float32 with Adam (lr 1e-3, "
             f"betas (0.9, 0.999), eps 1e-8) on the same batches in the same order: the data shuffled once, cut "
             f"into full batches (the incomplete last one dropped for every peer), cycled. In timed runs each peer "
             f"draws its own noise eps. PyTorch: `torch.nn.Linear` layers, the loss of the README written in torch "
             f"ops, `torch.optim.Adam({'' if s['torch_adam'] == 'default' else s['torch_adam'] + '=True'})`; "
             f"torch.compile compiles the model (forward and backward), Adam stays eager. NumPy: bench/numpy_vae.py, "
             f"float32, products through NumPy's BLAS. Each measurement runs in a fresh process with "
             f"OMP/OPENBLAS/MKL_NUM_THREADS, `torch.set_num_threads` and (when it exists) "
             f"`vaecore.set_num_threads` set to the thread count.")
    L.append("")

    # ---- the guard
    L.append("### Correctness guard: the same loss from the same start")
    L.append("")
    gpeers = sorted({p for g in results["guard"].values() for p in g.get("rows", {})}, key=lambda p: (p != "vaecore", p))
    head = ["workload", "steps", *(f"{p} first → end" for p in gpeers), "largest difference", "verdict"]
    L.append(_row(head))
    L.append(_row(["---"] * len(head)))
    for name, g in results["guard"].items():
        cells = []
        for p in gpeers:
            r = g.get("rows", {}).get(p)
            cells.append("–" if r is None else ("failed" if "error" in r else f"{_f(r['first'], 4)} → {_f(r['end'], 4)}"))
        rows = [r for p, r in g.get("rows", {}).items() if p != "vaecore" and "end_rel" in r]
        worst = (f"first {max(r['first_rel'] for r in rows):.1e}, end {max(r['end_rel'] for r in rows):.1e}"
                 if rows else "–")
        verdict = {True: "✓", False: "✗"}.get(g.get("passed"), g.get("summary", "–"))
        L.append(_row([name, g.get("steps"), *cells, worst, verdict]))
    L.append("")
    L.append(f"vaecore, NumPy and PyTorch eager (torch.compile is not guarded) train for the stated steps at one "
             f"thread from the same parameters, on the same batches, with the same fixed eps sequence. end = mean "
             f"loss of the last 10% of steps (at least 5). ✓ when, for every peer, the first step's loss (a pure "
             f"forward pass) is within {GUARD_FIRST_TOL:.0e} of vaecore's, the end loss within {GUARD_END_TOL:.0e} "
             f"(relative), and the loss fell. They differ only by float32 rounding, which grows along the "
             f"trajectory.")
    L.append("")

    # ---- gemm
    g = results.get("gemm")
    if g:
        M, N, K = g["shape"]
        flop = 2.0 * M * N * K
        L.append(f"### Matrix multiply alone: C ({M}, {N}) = A ({M}, {K}) @ B ({K}, {N}), float32, one thread")
        L.append("")
        L.append("| kernel | ms per call | GFLOP/s | % of one core's AVX2 peak | % of its AVX-512 peak |")
        L.append("|---|---|---|---|---|")
        if not g.get("ok"):
            L.append(f"| all | failed: {g.get('error')} | | | |")
        else:
            for name, label in (("vaecore", "vaecore (`_core.gemm_bench`)"), ("numpy", "NumPy `@` (" +
                                 results["versions"]["numpy_blas"] + ")"), ("torch", "PyTorch `torch.mm`")):
                t = g.get(name)
                if isinstance(t, (int, float)) and t > 0:
                    gf = flop / t * 1e-9
                    a2 = f"{100 * gf / pk['avx2']:.0f}%" if pk.get("avx2") else "–"
                    a5 = f"{100 * gf / pk['avx512']:.0f}%" if pk.get("avx512") else "–"
                    L.append(f"| {label} | {_f(t * 1e3)} | {_f(gf)} | {a2} | {a5} |")
                elif t is not None:
                    L.append(f"| {label} | {t} | | | |")
        L.append("")
        L.append("Best of 5 timed batches of calls; 2·M·N·K flops per call.")
        L.append("")

    prof = results.get("profile")
    if prof:
        from phases import table as phases_table
        L.append("### Where vaecore's step spends its time (bench/phases.py)")
        L.append("")
        ok = [r for r in prof if "error" not in r]
        if ok:
            L.append(phases_table(ok))
            L.append("")
        for r in prof:
            if "error" in r:
                L.append(f"Profile at {r['threads']} thr failed: {r['error']}")
                L.append("")
        L.append("Milliseconds per training step, from the C core's profile (`_core.profile`) over ~2 s of "
                 "steps. forward and backward: their time in the matrix products (gemm, of which the packing "
                 "of operands into panels, im2col included, is in parentheses) + everything else (bias, "
                 "activations, col2im, the reparameterization and KL pieces). optimizer: clipping and Adam. "
                 "Python + call: the rest of the step's wall time (argument checks, the Python wrapper). "
                 "gemm GFLOP/s: the products' flops over the time in gemm. The VQ-VAE has no noise; its "
                 "forward includes the nearest-code search (its product in gemm), its loss the code counts, "
                 "its optimizer the codebook's moving averages.")
        L.append("")
    comp = results.get("profile_compare")
    if comp:
        from phases import compare_table
        L.append("### vaecore's step beside PyTorch eager's (bench/phases.py --torch)")
        L.append("")
        L.append(compare_table([r for r in comp if r["peer"] == "vaecore"], [r for r in comp if r["peer"] == "torch"]))
        L.append("")
        L.append("Milliseconds per training step, both peers in one process, interleaved (6 rounds of ~0.5 s "
                 "each), so that they meet the same machine; not the timed table's steps. products: vaecore's "
                 "time in gemm (packing and im2col included); PyTorch's self CPU time in its matrix products "
                 "and convolutions (torch.profiler). Adam: vaecore's optimizer phase, of which its finiteness "
                 "check before storing; PyTorch's fused Adam. rest: the step minus both, for vaecore including "
                 "the gradient's squared norm; PyTorch's includes the profiler's own cost per operator.")
        L.append("")

    if results.get("sweep"):   # bench/sweep_bench.py
        from sweep_bench import markdown as sweep_markdown
        L.append(sweep_markdown(results["sweep"]))

    if results["notes"]:
        L.append("**Notes**: " + " ".join(results["notes"]))
        L.append("")
    cmd = " ".join(["python bench/run.py", *results["argv"]])
    L.append(f"Produced by `{cmd}` in {results['seconds']:.0f} s.")
    return "\n".join(L) + "\n"


def plot(results, path):
    """Bars: each peer's steps/s relative to PyTorch eager (or to NumPy without PyTorch), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs_by(results)
    peers = results["settings"]["peers"]
    ref = "torch" if "torch" in peers else "numpy"
    shown = [p for p in peers if p != ref]
    groups = [(w, n) for w in results["workloads"] for n in results["settings"]["threads"]]
    colors = {"vaecore": "#d62728", "numpy": "#1f77b4", "torch": "#7f7f7f", "torch.compile": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups) + 2), 4.5))
    width = 0.8 / max(1, len(shown))
    x = np.arange(len(groups))
    for k, p in enumerate(shown):
        vals = []
        for w, n in groups:
            a, b = runs.get((w, n, p)), runs.get((w, n, ref))
            ok = a and b and a.get("ok") and b.get("ok")
            vals.append(a["steps_per_s"] / b["steps_per_s"] if ok else np.nan)
        bars = ax.bar(x + (k - (len(shown) - 1) / 2) * width, vals, width, label=p, color=colors.get(p))
        for rect, v in zip(bars, vals):
            if np.isfinite(v):
                ax.annotate(f"{_f(v, 2)}×", (rect.get_x() + rect.get_width() / 2, v), ha="center",
                            va="bottom" if v >= 1 else "top", fontsize=7, xytext=(0, 2 if v >= 1 else -2),
                            textcoords="offset points")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    def busy(w, n):
        return any(r.get("others_cores", 0.0) > BUSY_CORES for (w_, n_, _), r in runs.items() if (w_, n_) == (w, n))

    ax.set_xticks(x, [f"{w}\n{n} thread{'s' if n > 1 else ''}{' ⚠' if busy(w, n) else ''}" for w, n in groups])
    ax.set_ylabel(f"training steps/s ÷ {'PyTorch eager' if ref == 'torch' else 'NumPy'}'s")
    title = (f"Training steps/s relative to {'PyTorch eager' if ref == 'torch' else 'NumPy (PyTorch absent)'}"
             f"{' [--quick]' if results['quick'] else ''}\n{results['machine']['cpu']}, {results['date'][:10]}"
             + (" (⚠: other processes were busy)" if any(busy(w, n) for w, n in groups) else ""))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results, out):
    """Write latest.md, latest.json and latest.png into `out`; return the Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for w in results["workloads"].values():
        w.pop("path", None)
    md = markdown(results)
    (out / "latest.md").write_text(md)
    (out / "latest.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    plot(results, out / "latest.png")
    return md
