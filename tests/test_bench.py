"""The benchmark suite (bench/run.py) runs, writes its outputs and its correctness guard passes.

No timing is asserted anywhere: speed depends on the machine and on what else
runs on it. These tests check that the benchmark works (a --quick run on the
smallest workload, with and without PyTorch) and that its guard is able to
fail (a trajectory that differs by 1% is rejected).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"
HAVE_TORCH = importlib.util.find_spec("torch") is not None

# bench/ is part of the repository, not of the package: a copy of tests/ without it has nothing to test
pytestmark = pytest.mark.skipif(not RUN.exists(), reason=f"no benchmark suite at {RUN.parent}")


def run_bench(out, *extra):
    cmd = [sys.executable, str(RUN), "--quick", "--workloads", "spirals", "--threads", "1", "--out", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, f"bench/run.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def check_outputs(out, r):
    md = (out / "latest.md").read_text()
    assert md in r.stdout                                       # the table is printed too
    results = json.loads((out / "latest.json").read_text())
    png = (out / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the guard ran on the workload and passed, with every peer's loss trajectory recorded
    g = results["guard"]["spirals"]
    assert g["passed"] is True, g["summary"]
    assert "| spirals | 20 |" in md and "✓" in md and "✗" not in md
    assert set(g["losses"]) >= {"vaecore", "numpy"}
    assert all(len(v) == 20 for v in g["losses"].values())
    # one timed measurement per peer, each a positive rate
    runs = {r["peer"]: r for r in results["runs"]}
    assert runs["vaecore"]["ok"] and runs["numpy"]["ok"]
    for r_ in runs.values():
        if r_["ok"]:
            assert r_["steps_per_s"] > 0 and r_["gflops"] > 0 and r_["peak_rss_mb"] > 0
    assert "### Training steps per second" in md and "| spirals | 1 |" in md
    # the per-phase profile of vaecore's step: one row per workload and thread count, phases that add
    # up to no more than the step, and its table in the report
    (prof,) = results["profile"]
    assert "error" not in prof, prof
    assert prof["workload"] == "spirals" and prof["threads"] == 1 and prof["steps"] >= 3
    phases = ("noise", "forward", "loss", "backward", "optimizer")
    assert all(prof[ph] >= 0 for ph in phases) and prof["forward"] > 0 and prof["backward"] > 0
    assert sum(prof[ph] for ph in phases) <= prof["step_ms"] * 1.05
    assert "### Where vaecore's step spends its time" in md
    return md, results


@pytest.mark.slow
def test_quick_run_writes_table_json_png_and_guard_passes(tmp_path):
    out = tmp_path / "results"
    r = run_bench(out, "--peers", "vaecore,numpy,torch")       # torch.compile is too slow to compile here
    md, results = check_outputs(out, r)
    # the sweep line (bench/sweep_bench.py): 4 quick runs three ways, the same records from each
    s = results["sweep"]
    assert s["same_records"] and s["failed"] == 0 and set(s["ways"]) == {"serial", "processes", "dask"}
    assert all(w["runs_per_min"] > 0 for w in s["ways"].values())
    assert "### Sweeps: runs per minute" in md and "identical across the executors: yes" in md
    if HAVE_TORCH:
        assert set(results["guard"]["spirals"]["losses"]) == {"vaecore", "numpy", "torch"}
        assert any(r["peer"] == "torch" and r["ok"] for r in results["runs"])
        assert "× torch" in md
        # vaecore's profile beside PyTorch's, interleaved in one process: a row of each, whose parts
        # are within their step, and its table in the report
        rows = {r["peer"]: r for r in results["profile_compare"]}
        vc, tc = rows["vaecore"], rows["torch"]
        assert vc["workload"] == tc["workload"] == "spirals" and vc["steps"] >= 1 and tc["steps"] >= 1
        assert 0 < vc["forward_gemm"] <= vc["forward"] and 0 < vc["check"] <= vc["optimizer"]
        assert sum(vc[ph] for ph in ("noise", "forward", "loss", "backward", "optimizer")) <= vc["step_ms"] * 1.05
        assert tc["products"] > 0 and tc["adam"] > 0 and tc["products"] + tc["adam"] <= tc["step_ms"]
        assert "### vaecore's step beside PyTorch eager's" in md and "| spirals | 1 |" in md
    else:
        assert "PyTorch peers skipped: PyTorch is not installed" in md
        assert "profile_compare" not in results or not results["profile_compare"]
    assert results["workloads"]["spirals"]["flops_per_step"] > 0


def test_profile_rows_are_sums_of_profiles_per_step():
    # bench/phases.py's row from _core.profile's dicts: per step, summed over stretches by add_profile
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import phases
    finally:
        sys.path.remove(str(ROOT / "bench"))
    ph = dict.fromkeys(phases.PHASES, 0.0)
    p1 = {"steps": 2, "total": {**ph, "forward": 0.004, "backward": 0.006}, "gemm": {**ph, "forward": 0.002},
          "pack": {**ph, "forward": 0.001}, "check": 0.0005, "norm": 0.0002}
    p2 = {"steps": 3, "total": {**ph, "forward": 0.006, "backward": 0.009}, "gemm": {**ph, "forward": 0.003},
          "pack": {**ph, "forward": 0.0005}, "check": 0.001, "norm": 0.0003}
    acc = phases.add_profile(phases.add_profile(None, p1), p2)
    assert p1["total"]["forward"] == 0.004   # the first profile is copied, not summed into
    row = phases.vaecore_row("spirals", 1, 5, 0.05, acc)
    assert row["steps"] == 5 and row["step_ms"] == pytest.approx(10.0)
    assert row["forward"] == pytest.approx(2.0) and row["backward"] == pytest.approx(3.0)
    assert row["forward_gemm"] == pytest.approx(1.0) and row["forward_pack"] == pytest.approx(0.3)
    assert row["check"] == pytest.approx(0.3) and row["norm"] == pytest.approx(0.1)
    assert row["python_ms"] == pytest.approx(5.0)


@pytest.mark.slow
def test_quick_run_without_torch(tmp_path):
    out = tmp_path / "results"
    r = run_bench(out, "--no-torch", "--no-gemm", "--no-sweep")
    md, results = check_outputs(out, r)
    assert "sweep" not in results and "### Sweeps" not in md
    assert "PyTorch peers skipped" in md
    assert {r["peer"] for r in results["runs"]} == {"vaecore", "numpy"}
    assert "numpy" in results["settings"]["peers"] and "torch" not in results["settings"]["peers"]


def test_guard_rejects_a_different_loss():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from report import GUARD_END_TOL, GUARD_FIRST_TOL, guard_verdict
    finally:
        sys.path.remove(str(ROOT / "bench"))
    ref = list(np.linspace(10.0, 5.0, 100))
    near = [x * (1 + 1e-5) for x in ref]
    assert guard_verdict({"ok": True, "losses": {"vaecore": ref, "numpy": near}})["passed"]
    # 1% off at the end: wrong math somewhere in training
    late = ref[:90] + [x * 1.01 for x in ref[90:]]
    assert 0.01 > GUARD_END_TOL
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref, "numpy": late}})["passed"]
    # a different first loss: a wrong forward pass
    first = [ref[0] * (1 + 10 * GUARD_FIRST_TOL)] + ref[1:]
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref, "numpy": first}})["passed"]
    # nobody trained: equal, but the loss did not fall
    flat = [10.0] * 100
    assert not guard_verdict({"ok": True, "losses": {"vaecore": flat, "numpy": flat}})["passed"]
    # a peer that failed, or no peer at all
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref, "torch": "RuntimeError: x"}})["passed"]
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref}})["passed"]
    assert not guard_verdict({"ok": False, "error": "boom"})["passed"]


# ---------------------------------------------------------------- the conv workload
def _bench_import(*names):
    """Modules of bench/ (not a package), imported with bench/ on sys.path."""
    import importlib

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return [importlib.import_module(n) for n in names]
    finally:
        sys.path.remove(str(ROOT / "bench"))


# the layers of the conv workload, worked out by hand: (name, W shape, forward multiply-adds per example)
CONV_LAYERS = [
    ("enc.0", (32, 1, 4, 4), 14 * 14 * 32 * 1 * 16),        # Conv2d: every output pixel, C_in*4*4 taps
    ("enc.2", (64, 32, 4, 4), 7 * 7 * 64 * 32 * 16),
    ("enc.5", (3136, 256), 3136 * 256),                     # Linear (in, out)
    ("enc.mu", (256, 20), 256 * 20),
    ("enc.logvar", (256, 20), 256 * 20),
    ("dec.0", (20, 256), 20 * 256),
    ("dec.2", (256, 3136), 256 * 3136),
    ("dec.5", (64, 32, 4, 4), 7 * 7 * 64 * 32 * 16),        # ConvTranspose2d: every input pixel, C_out*4*4 taps
    ("dec.7", (32, 1, 4, 4), 14 * 14 * 32 * 1 * 16),
]


def test_conv_workload_layers_flops_and_params_by_hand():
    (workloads,) = _bench_import("workloads")
    w = workloads.WORKLOADS["conv"]
    layers = workloads.param_layers(w)
    assert [(l[0], l[4]) for l in layers] == [(n, s) for n, s, _ in CONV_LAYERS]
    assert [workloads.macs_per_example(l) for l in layers] == [m for _, _, m in CONV_LAYERS]
    assert [l[6] for l in layers] == [False] + [True] * 8                # enc.0 reads x: no dinp
    assert layers[1][3] == (64, 7, 7) and layers[-1][3] == (1, 28, 28)
    # forward, dW and dinp products, 2 flops per multiply-add, batch 128; enc.0 has no dinp
    macs = sum(m for _, _, m in CONV_LAYERS)
    assert macs == 5_032_960
    assert workloads.flops_per_step(w) == 2 * 128 * (3 * macs - 14 * 14 * 32 * 16) == 3_839_623_168
    # weights and biases; a bias per output channel or width
    assert workloads.num_params(w) == 544 + 32_832 + 803_072 + 2 * 5_140 + 5_376 + 805_952 + 32_800 + 513 == 1_691_369
    assert w.input_dim == 784 and w.arch == "1x28x28-c32-c64-256-20"
    # the MLP workloads keep their counts: fashion by hand, 784-400-20-400-784 at batch 128
    f = workloads.WORKLOADS["fashion"]
    assert workloads.flops_per_step(f) == 2 * 128 * (784 * 400 * 2 + 400 * 20 * 2 * 3 + 20 * 400 * 3 + 400 * 784 * 3)
    assert workloads.num_params(f) == 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784


def test_conv_layer_lists_that_do_not_chain_are_rejected():
    (workloads,) = _bench_import("workloads")
    import dataclasses

    w = workloads.WORKLOADS["conv"]
    dec = list(w.decoder)
    dec[4] = workloads.Layer("Reshape", (64, 8, 8))                      # 4096 from 3136
    with pytest.raises(ValueError, match=r"dec.4: Reshape\(64, 8, 8\)"):
        workloads.param_layers(dataclasses.replace(w, decoder=tuple(dec)))
    with pytest.raises(ValueError, match=r"decoder ends at shape \(32, 14, 14\)"):
        workloads.param_layers(dataclasses.replace(w, decoder=w.decoder[:-2]))


def test_numpy_skips_the_conv_workload_with_a_reason():
    (peers, workloads) = _bench_import("peers", "workloads")
    assert "no convolutions" in peers.skip_reason("numpy", workloads.WORKLOADS["conv"])
    assert peers.skip_reason("numpy", workloads.WORKLOADS["fashion"]) is None
    assert peers.skip_reason("torch", workloads.WORKLOADS["conv"]) is None


def test_report_shows_a_skipped_peer_and_the_conv_layers():
    (report, workloads) = _bench_import("report", "workloads")
    w = workloads.WORKLOADS["conv"]
    run = {"ok": True, "workload": "conv", "threads": 1, "steps_per_s": 10.0, "gflops": 38.4, "repeats": [9.0, 11.0],
           "peak_rss_mb": 300.0, "rss_before_model_mb": 100.0}
    results = {
        "date": "2025-01-01T00:00:00+00:00", "argv": ["--workloads", "conv"], "quick": False, "seconds": 1.0,
        "machine": {"cpu": "test CPU", "usable_cpus": 2, "threads_per_core": 1, "mhz": 2000.0},
        "peak": {"notes": ["not measured in this test"]},
        "versions": {"python": "3", "numpy": "2", "numpy_blas": "blas", "vaecore": "0", "cc": "cc"},
        "settings": {"peers": ["vaecore", "numpy", "torch"], "threads": [1], "repeats": 2, "seconds_per_repeat": 1.0,
                     "warmup_s": 0.5, "torch_adam": "fused"},
        "workloads": {"conv": {"arch": w.arch, "activation": "relu", "likelihood": "bernoulli", "batch": 128,
                               "beta": 1.0, "data": "Fashion-MNIST train (60,000)", "num_params": workloads.num_params(w),
                               "flops_per_step": workloads.flops_per_step(w),
                               "layers": {"input_shape": [1, 28, 28], "latent_dim": 20,
                                          "encoder": [str(l) for l in w.encoder], "decoder": [str(l) for l in w.decoder]}}},
        "runs": [{**run, "peer": "vaecore"}, {**run, "peer": "torch", "steps_per_s": 5.0},
                 {"ok": False, "skipped": "bench/numpy_vae.py has no convolutions", "workload": "conv", "threads": 1,
                  "peer": "numpy"}],
        "guard": {"conv": {"passed": True, "steps": 60, "rows": {}}}, "gemm": None, "notes": [],
    }
    md = report.markdown(results)
    assert "| conv | 1 | 10.0 | skipped | 2.00× |" in md                   # × numpy, × torch
    assert "| conv | 1 | numpy | skipped: bench/numpy_vae.py has no convolutions |" in md
    assert "Conv2d(32, 4, stride=2, padding=1), ReLU(), Conv2d(64, 4, stride=2, padding=1)" in md
    assert "ConvTranspose2d(1, 4, stride=2, padding=1)" in md and "failed" not in md


# An independent float64 NumPy reference of the conv VAE: im2col by slicing, every backward by hand.
def _gather(A, k, s, Ho, Wo):
    """A (B, C, Hp, Wp) -> P (B, C, k, k, Ho, Wo) with P[b, c, i, j, h, w] = A[b, c, h*s + i, w*s + j]."""
    P = np.empty((*A.shape[:2], k, k, Ho, Wo))
    for i in range(k):
        for j in range(k):
            P[:, :, i, j] = A[:, :, i:i + s * (Ho - 1) + 1:s, j:j + s * (Wo - 1) + 1:s]
    return P


def _scatter(P, Hp, Wp, s):
    """The adjoint of _gather: P (B, C, k, k, Ho, Wo) summed back into (B, C, Hp, Wp)."""
    B, C, k, _, Ho, Wo = P.shape
    A = np.zeros((B, C, Hp, Wp))
    for i in range(k):
        for j in range(k):
            A[:, :, i:i + s * (Ho - 1) + 1:s, j:j + s * (Wo - 1) + 1:s] += P[:, :, i, j]
    return A


def _conv(x, W, b, s=2, p=1):
    """Conv2d: x (B, C, H, W), W (O, C, k, k) -> y (B, O, Ho, Wo), and the patches for backward."""
    k, H = W.shape[2], x.shape[2]
    Ho = (H + 2 * p - k) // s + 1
    P = _gather(np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))), k, s, Ho, Ho)
    return np.einsum("bcijhw,ocij->bohw", P, W) + b[:, None, None], P


def _conv_backward(dy, P, W, H, s=2, p=1):
    """-> dx (B, C, H, H), dW, db of _conv."""
    dx = _scatter(np.einsum("ocij,bohw->bcijhw", W, dy), H + 2 * p, H + 2 * p, s)[:, :, p:p + H, p:p + H]
    return dx, np.einsum("bcijhw,bohw->ocij", P, dy), dy.sum((0, 2, 3))


def _conv_t(x, W, b, s=2, p=1):
    """ConvTranspose2d: x (B, C, H, W), W (C, O, k, k) -> y (B, O, (H-1)s - 2p + k, ...): every input pixel
    adds W[c, :, i, j] * x at (h*s + i, w*s + j) of the uncropped output, which then loses p on each side."""
    k, H = W.shape[2], x.shape[2]
    Hf = (H - 1) * s + k
    full = _scatter(np.einsum("bchw,coij->boijhw", x, W), Hf, Hf, s)
    return full[:, :, p:Hf - p, p:Hf - p] + b[:, None, None]


def _conv_t_backward(dy, x, W, s=2, p=1):
    """-> dx, dW, db of _conv_t."""
    k, H = W.shape[2], x.shape[2]
    D = _gather(np.pad(dy, ((0, 0), (0, 0), (p, p), (p, p))), k, s, H, H)   # (B, O, k, k, H, H)
    return np.einsum("boijhw,coij->bchw", D, W), np.einsum("bchw,boijhw->coij", x, D), dy.sum((0, 2, 3))


def numpy_conv_vae(p, x, eps, beta):
    """Loss and gradient {name: array} of the conv VAE, float64. p: {vaecore name: array}; x (B, 784); eps (B, K)."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    B = x.shape[0]
    x4 = np.asarray(x, np.float64).reshape(B, 1, 28, 28)
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    a0, P0 = _conv(x4, p["enc.0.W"], p["enc.0.b"])                            # (B, 32, 14, 14)
    h0 = relu(a0)
    a2, P2 = _conv(h0, p["enc.2.W"], p["enc.2.b"])                            # (B, 64, 7, 7)
    f = relu(a2).reshape(B, -1)                                               # (B, 3136)
    a5 = f @ p["enc.5.W"] + p["enc.5.b"]
    h5 = relu(a5)                                                             # (B, 256)
    mu, lv = h5 @ p["enc.mu.W"] + p["enc.mu.b"], h5 @ p["enc.logvar.W"] + p["enc.logvar.b"]
    std = np.exp(0.5 * lv)
    z = mu + std * eps                                                        # (B, K)
    d0 = z @ p["dec.0.W"] + p["dec.0.b"]
    g0 = relu(d0)                                                             # (B, 256)
    d2 = g0 @ p["dec.2.W"] + p["dec.2.b"]
    g2 = relu(d2).reshape(B, 64, 7, 7)
    c5 = _conv_t(g2, p["dec.5.W"], p["dec.5.b"])                              # (B, 32, 14, 14)
    g5 = relu(c5)
    logits = _conv_t(g5, p["dec.7.W"], p["dec.7.b"])                          # (B, 1, 28, 28)
    recon = (np.logaddexp(0, logits) - x4 * logits).sum((1, 2, 3))            # softplus(l) - x l
    kl = -0.5 * (1 + lv - mu ** 2 - np.exp(lv)).sum(1)
    loss = float((recon + beta * kl).mean())

    g = {}
    dl = (1 / (1 + np.exp(-logits)) - x4) / B                                  # d recon / d logits, batch mean
    dg5, g["dec.7.W"], g["dec.7.b"] = _conv_t_backward(dl, g5, p["dec.7.W"])
    dg2, g["dec.5.W"], g["dec.5.b"] = _conv_t_backward(dg5 * (c5 > 0), g2, p["dec.5.W"])
    dd2 = dg2.reshape(B, -1) * (d2 > 0)
    g["dec.2.W"], g["dec.2.b"] = g0.T @ dd2, dd2.sum(0)
    dd0 = (dd2 @ p["dec.2.W"].T) * (d0 > 0)
    g["dec.0.W"], g["dec.0.b"] = z.T @ dd0, dd0.sum(0)
    dz = dd0 @ p["dec.0.W"].T
    dmu = dz + beta * mu / B                                                   # d/dmu of the KL is mu
    dlv = dz * eps * std / 2 + beta * 0.5 * (np.exp(lv) - 1) / B               # z = mu + exp(lv/2) eps
    g["enc.mu.W"], g["enc.mu.b"] = h5.T @ dmu, dmu.sum(0)
    g["enc.logvar.W"], g["enc.logvar.b"] = h5.T @ dlv, dlv.sum(0)
    da5 = (dmu @ p["enc.mu.W"].T + dlv @ p["enc.logvar.W"].T) * (a5 > 0)
    g["enc.5.W"], g["enc.5.b"] = f.T @ da5, da5.sum(0)
    da2 = (da5 @ p["enc.5.W"].T).reshape(B, 64, 7, 7) * (a2 > 0)
    dh0, g["enc.2.W"], g["enc.2.b"] = _conv_backward(da2, P2, p["enc.2.W"], 14)
    _, g["enc.0.W"], g["enc.0.b"] = _conv_backward(dh0 * (a0 > 0), P0, p["enc.0.W"], 28)
    return loss, g


def stub_named_params(seed=0):
    """Stands in for vaecore's layer-API model until it lands: random parameters of the shapes
    of workloads.param_layers, in its order (uniform, +-sqrt(6 / fan_in); biases small, not zero)."""
    (workloads,) = _bench_import("workloads")
    rng = np.random.default_rng(seed)
    out = []
    for name, kind, _, _, W, b, _ in workloads.param_layers(workloads.WORKLOADS["conv"]):
        fan_in = W[0] if kind == "Linear" else int(np.prod(W[1:]))
        out.append((name + ".W", rng.uniform(-1, 1, W).astype(np.float32) * np.float32(np.sqrt(6 / fan_in))))
        out.append((name + ".b", rng.uniform(-0.1, 0.1, b).astype(np.float32)))
    return out


def test_torch_conv_vae_loss_and_gradient_match_numpy():
    torch = pytest.importorskip("torch")
    (tcv,) = _bench_import("torch_conv_vae")
    named = stub_named_params()
    rng = np.random.default_rng(1)
    x = rng.random((3, 784))                                                  # (B, 784) in [0, 1]
    eps = rng.standard_normal((3, 20))
    beta = 0.7                                                                # != 1: the KL weight matters
    m = tcv.TorchConvVAE(named, beta).double()
    loss = m(torch.from_numpy(x), torch.from_numpy(eps))
    loss.backward()
    ref_loss, ref_grad = numpy_conv_vae(dict(named), x, eps, beta)
    # float64 on both sides, different summation orders: agreement to ~1e-13 relative; 1e-9 leaves room
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-9)
    for name, mod in m.vaecore_layers():
        gW = mod.weight.grad.numpy()
        gW = gW.T if isinstance(mod, torch.nn.Linear) else gW                 # back to vaecore's (in, out)
        scale = np.abs(ref_grad[name + ".W"]).max()
        assert scale > 0, name
        np.testing.assert_allclose(gW, ref_grad[name + ".W"], rtol=1e-9, atol=1e-9 * scale, err_msg=name + ".W")
        np.testing.assert_allclose(mod.bias.grad.numpy(), ref_grad[name + ".b"], rtol=1e-9,
                                   atol=1e-9 * np.abs(ref_grad[name + ".b"]).max(), err_msg=name + ".b")


def test_torch_conv_vae_copies_vaecore_layout_and_rejects_others():
    torch = pytest.importorskip("torch")
    (tcv, workloads) = _bench_import("torch_conv_vae", "workloads")
    named = stub_named_params()
    before = [a.copy() for _, a in named]
    m = tcv.TorchConvVAE(named, 1.0)
    assert all(np.array_equal(a, b) for (_, a), b in zip(named, before))      # inputs not modified
    # flat_params gives back exactly vaecore's buffer: the concatenation in named_params order
    np.testing.assert_array_equal(m.flat_params().numpy(), np.concatenate([a.ravel() for _, a in named]))
    assert m.encoder[5].weight.shape == (256, 3136)                          # nn.Linear stores (out, in)
    # the torch twin's layers are the workload's, by name and shape
    want = [(n, W) for n, _, _, _, W, _, _ in workloads.param_layers(workloads.WORKLOADS["conv"])]
    got = [(n, tuple(mod.weight.shape[::-1]) if isinstance(mod, torch.nn.Linear) else tuple(mod.weight.shape))
           for n, mod in m.vaecore_layers()]
    assert got == want
    bad = [(n, a.T if n == "enc.5.W" else a) for n, a in named]
    with pytest.raises(ValueError, match=r"enc.5.W must have shape \(3136, 256\), got \(256, 3136\)"):
        tcv.TorchConvVAE(bad, 1.0)
    with pytest.raises(ValueError, match="expected the names"):
        tcv.TorchConvVAE(named[:-2], 1.0)


def test_ab_loads_two_builds_in_one_process_and_compares_them(tmp_path):
    # bench/ab.py: this checkout's built package twice (no build step), one short round on the spirals
    # and on the products; each build is imported as a package of its own, and the table has a row per
    # workload with both builds' times and a ratio
    ab = ROOT / "bench" / "ab.py"
    cmd = [sys.executable, str(ab), str(ROOT), str(ROOT), "--workloads", "spirals", "--rounds", "1",
           "--seconds", "0.02", "--gemm"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line.split("|") for line in r.stdout.splitlines() if line.startswith("| spirals |")]
    assert len(rows) == 1
    a, b, ratio = float(rows[0][3]), float(rows[0][4]), rows[0][5].strip()
    assert a > 0 and b > 0 and ratio.endswith("×") and abs(float(ratio[:-1]) - a / b) < 1e-3 * a / b + 1e-3
    assert r.stdout.count("| (") == 5   # the five products

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import ab as ab_mod
    finally:
        sys.path.pop(0)
    m1, m2 = ab_mod.load(ROOT, "vaecore_test_ab1"), ab_mod.load(ROOT, "vaecore_test_ab2")
    assert m1 is not m2 and m1._core is not m2._core and m1.VAE is not m2.VAE
    # a directory without a built core, or an unknown workload, is a clear error
    with pytest.raises(FileNotFoundError, match="no built core"):
        ab_mod.load(tmp_path, "vaecore_test_ab3")
    r = subprocess.run([sys.executable, str(ab), str(ROOT), str(ROOT), "--workloads", "nope"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "'nope' is not one of" in r.stderr
