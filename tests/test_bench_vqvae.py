"""The benchmark's VQ-VAE workload (issue 13): its layers, FLOP and parameter counts by hand, its peers,
its lines in the report, and the PyTorch twin (bench/torch_vqvae.py) against vaecore.VQVAE.

The twin is checked in float64 on the issue's conv model at a small size: one loss and gradient, then a
few training steps (Adam and the codebook's moving averages) must give the same numbers as vaecore to
rounding. No timing is asserted anywhere. Without PyTorch (as in CI) the twin's tests skip; the rest
runs in well under a second.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import vaecore
from vaecore import layers as L

from test_bench import ROOT
from test_bench import _bench_import as bench   # modules of bench/ (not a package), imported from there

pytestmark = pytest.mark.skipif(not (ROOT / "bench" / "run.py").exists(), reason="no benchmark suite in bench/")


# ---------------------------------------------------------------- the workload
def test_vqvae_workload_is_the_issues_model_with_its_counts_by_hand():
    (workloads, peers) = bench("workloads", "peers")
    w = workloads.WORKLOADS["vqvae"]
    assert (w.input_shape, w.codebook_size, w.code_dim, w.likelihood, w.commitment, w.codebook_update, w.decay,
            w.batch) == ((1, 28, 28), 64, 16, "bernoulli", 0.25, "ema", 0.99, 128)
    assert [str(l) for l in w.encoder] == ["Conv2d(32, 4, stride=2, padding=1)", "ReLU()",
                                          "Conv2d(16, 4, stride=2, padding=1)"]
    assert [str(l) for l in w.decoder] == ["ConvTranspose2d(32, 4, stride=2, padding=1)", "ReLU()",
                                          "ConvTranspose2d(1, 4, stride=2, padding=1)"]
    layers, code = workloads.vq_layers(w)
    assert code == (16, 7, 7)                                                  # 49 codes of 16 values
    # (name, W shape, forward multiply-adds per example, needs dinp), worked out by hand
    want = [("enc.0", (32, 1, 4, 4), 14 * 14 * 32 * 1 * 16, False),           # reads x
            ("enc.2", (16, 32, 4, 4), 7 * 7 * 16 * 32 * 16, True),
            ("dec.0", (16, 32, 4, 4), 7 * 7 * 16 * 32 * 16, True),            # reads z_q: straight through
            ("dec.2", (32, 1, 4, 4), 14 * 14 * 32 * 1 * 16, True)]
    assert [(l[0], l[4], workloads.macs_per_example(l), l[6]) for l in layers] == want
    macs = sum(m for _, _, m, _ in want)
    search = 2 * 128 * 49 * 64 * 16                                           # (6272, 16) @ (16, 64)
    assert workloads.flops_per_step(w) == 2 * 128 * (3 * macs - 14 * 14 * 32 * 16) + search == 757_858_304
    assert workloads.num_params(w) == 544 + 8_208 + 64 * 16 + 8_224 + 513 == 18_513
    assert w.arch == "1x28x28-c32-c16-vq64x16" and w.input_dim == 784 and w.beta == w.commitment
    # vaecore's model of the workload has exactly these parameters
    q = peers.vaecore_model(w)
    assert isinstance(q, vaecore.VQVAE) and q.num_params == workloads.num_params(w)
    assert [(n, a.shape) for n, a in q.named_params()] == [
        ("enc.0.W", (32, 1, 4, 4)), ("enc.0.b", (32,)), ("enc.2.W", (16, 32, 4, 4)), ("enc.2.b", (16,)),
        ("vq.codebook", (64, 16)), ("dec.0.W", (16, 32, 4, 4)), ("dec.0.b", (32,)), ("dec.2.W", (32, 1, 4, 4)),
        ("dec.2.b", (1,))]
    assert (q.grid_shape, q.likelihood, q.codebook_update, q.dtype) == ((7, 7), "bernoulli", "ema", np.float32)
    # the other workloads keep their counts
    assert workloads.flops_per_step(workloads.WORKLOADS["conv"]) == 3_839_623_168


def test_vqvae_layer_lists_that_do_not_fit_are_rejected():
    (workloads,) = bench("workloads")
    import dataclasses

    w = workloads.WORKLOADS["vqvae"]
    with pytest.raises(ValueError, match=r"encoder ends at shape \(16, 7, 7\), expected code_dim = 8"):
        workloads.vq_layers(dataclasses.replace(w, code_dim=8))
    with pytest.raises(ValueError, match=r"decoder ends at shape \(32, 14, 14\)"):
        workloads.vq_layers(dataclasses.replace(w, decoder=w.decoder[:1]))


def test_vqvae_peers_and_skips():
    (peers, workloads) = bench("peers", "workloads")
    w = workloads.WORKLOADS["vqvae"]
    assert "no VQ-VAE" in peers.skip_reason("numpy", w)
    assert "eager only" in peers.skip_reason("torch.compile", w)
    assert peers.skip_reason("vaecore", w) is None and peers.skip_reason("torch", w) is None
    # the vaecore peer trains the workload's model on (B, D) batches; no noise, so eps is ignored
    p = peers.make_peer("vaecore", w)
    x = np.random.default_rng(0).random((w.batch, w.input_dim), dtype=np.float32)
    before = p.m.codebook.copy()
    loss = p.step_eps(x, np.empty((w.batch, 0), np.float32))
    assert np.isfinite(loss) and loss > 0 and p.opt.t == 1
    assert not np.array_equal(before, p.m.codebook)                          # the moving averages moved it


def test_vqvae_phases_profile_its_step(tmp_path):
    # the VQ-VAE's step feeds the C core's per-phase profile: phases.py gives it a row like any other
    import json

    (phases,) = bench("phases")
    out = tmp_path / "p.json"
    phases.main(["--workloads", "vqvae", "--threads", "1", "--seconds", "0.2", "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row["workload"] == "vqvae" and row["threads"] == 1 and row["steps"] >= 3
    assert 0 < row["forward_gemm"] <= row["forward"] and 0 < row["backward_gemm"] <= row["backward"]
    assert row["loss"] > 0 and row["optimizer"] > 0 and 0 < row["check"] <= row["optimizer"]
    assert sum(row[ph] for ph in phases.PHASES) <= row["step_ms"] * 1.05
    assert row["gemm_gflops"] > 0


def test_report_shows_the_vqvae_line_and_its_model():
    (report, workloads) = bench("report", "workloads")
    w = workloads.WORKLOADS["vqvae"]
    run = {"ok": True, "workload": "vqvae", "threads": 2, "steps_per_s": 30.0, "gflops": 22.7, "repeats": [29.0, 31.0],
           "peak_rss_mb": 300.0, "rss_before_model_mb": 100.0}
    skipped = {"ok": False, "workload": "vqvae", "threads": 2}
    results = {
        "date": "2025-01-01T00:00:00+00:00", "argv": ["--workloads", "vqvae"], "quick": False, "seconds": 1.0,
        "machine": {"cpu": "test CPU", "usable_cpus": 2, "threads_per_core": 1, "mhz": 2000.0},
        "peak": {"notes": ["not measured in this test"]},
        "versions": {"python": "3", "numpy": "2", "numpy_blas": "blas", "vaecore": "0", "cc": "cc"},
        "settings": {"peers": ["vaecore", "numpy", "torch", "torch.compile"], "threads": [2], "repeats": 2,
                     "seconds_per_repeat": 1.0, "warmup_s": 0.5, "torch_adam": "fused"},
        "workloads": {"vqvae": {"arch": w.arch, "activation": "relu", "likelihood": "bernoulli", "batch": 128,
                                "beta": w.beta, "data": "Fashion-MNIST train (60,000)",
                                "num_params": workloads.num_params(w), "flops_per_step": workloads.flops_per_step(w),
                                "vq": {"input_shape": [1, 28, 28], "codebook_size": 64, "code_dim": 16,
                                       "commitment": 0.25, "codebook_update": "ema", "decay": 0.99,
                                       "encoder": [str(l) for l in w.encoder],
                                       "decoder": [str(l) for l in w.decoder]}}},
        "runs": [{**run, "peer": "vaecore"}, {**run, "peer": "torch", "steps_per_s": 20.0},
                 {**skipped, "peer": "numpy", "skipped": "bench/numpy_vae.py has no VQ-VAE"},
                 {**skipped, "peer": "torch.compile", "skipped": "the VQ-VAE is compared with PyTorch eager only"}],
        "guard": {"vqvae": {"passed": True, "steps": 60, "rows": {}}}, "gemm": None, "notes": [],
    }
    md = report.markdown(results)
    assert "| vqvae | 2 | 30.0 | skipped | 1.50× | skipped |" in md             # × numpy, × torch, × compile
    assert "| vqvae | 2 | torch | 20.0 ±5% | 1.50× |" in md
    assert "| vqvae | 1x28x28-c32-c16-vq64x16 | relu | bernoulli | 128 | 0.25 |" in md
    assert "nearest of 64 codes of 16 values" in md and "bench/torch_vqvae.py" in md
    assert "ConvTranspose2d(1, 4, stride=2, padding=1)" in md and "moving averages (decay 0.99)" in md
    assert "failed" not in md


# ---------------------------------------------------------------- the PyTorch twin against vaecore
def small_model(update, seed=0):
    """The issue's conv VQ-VAE at a small size, float64: 1x8x8 images, a 2x2 grid of 4-value codes, 8 codes.
    The biases get random values (vaecore starts them at 0) so that their gradients and copies matter."""
    (workloads,) = bench("workloads")
    Layer = workloads.Layer
    enc = (Layer("Conv2d", (6, 4), 2, 1), Layer("ReLU"), Layer("Conv2d", (4, 4), 2, 1))
    dec = (Layer("ConvTranspose2d", (6, 4), 2, 1), Layer("ReLU"), Layer("ConvTranspose2d", (1, 4), 2, 1))
    q = vaecore.VQVAE(input_shape=(1, 8, 8), codebook_size=8, code_dim=4, likelihood="bernoulli", commitment=0.3,
                      encoder=[L.Conv2d(6, 4, stride=2, padding=1), L.ReLU(), L.Conv2d(4, 4, stride=2, padding=1)],
                      decoder=[L.ConvTranspose2d(6, 4, stride=2, padding=1), L.ReLU(),
                               L.ConvTranspose2d(1, 4, stride=2, padding=1)],
                      codebook_update=update, decay=0.9, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name, a in q.named_params():
        if name.endswith(".b"):
            a[...] = rng.uniform(-0.2, 0.2, a.shape)
    if update == "ema":
        q.reset_ema()
    return q, enc, dec, rng


def twin(q, enc, dec):
    (tvq,) = bench("torch_vqvae")
    return tvq.TorchVQVAE(q.named_params(), q.input_shape, enc, dec, q.likelihood, q.commitment, q.codebook_update,
                          q.decay)


def assert_close(got, want, rel, what):
    """|got - want| <= rel * max|want| elementwise: relative to the array's scale."""
    scale = np.abs(want).max()
    assert scale > 0, what
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * scale, err_msg=what)


# float64 on both sides, the same formulas, different summation orders (im2col gemm vs oneDNN or
# torch's own loops): measured agreement ~5e-16 relative for one gradient and through 10 steps.
# 1e-10 leaves room for that to grow; a wrong formula (the commitment weight, the straight-through
# path, the EMA's decay or smoothing, Adam's bias correction) moves the numbers by 1e-5 or far more.
REL = 1e-10


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_torch_twin_loss_and_gradient_match_vaecore(update):
    torch = pytest.importorskip("torch")
    q, enc, dec, rng = small_model(update)
    t = twin(q, enc, dec)
    assert t.codebook.dtype == torch.float64 and t.codebook.requires_grad == (update == "loss")
    x = rng.random((5, 1, 8, 8))                                               # (B, 1, 8, 8) in [0, 1]
    stats, grad = q.loss_and_grad(x)
    assert stats["perplexity"] > 2                                            # several codes in play
    loss = t(torch.from_numpy(x))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(stats["loss"], rel=REL)
    g = dict(q.named_params(grad))
    for name, m in t.vaecore_layers():
        assert_close(m.weight.grad.numpy(), g[name + ".W"], REL, name + ".W")
        assert_close(m.bias.grad.numpy(), g[name + ".b"], REL, name + ".b")
    if update == "loss":
        assert_close(t.codebook.grad.numpy(), g["vq.codebook"], REL, "vq.codebook")
    else:
        assert not g["vq.codebook"].any()                                      # EMA: no gradient
    # the codes, and what the decoder reads, are exactly vaecore's
    rows, codes = t._last
    np.testing.assert_array_equal(codes.numpy(), q.encode(x).reshape(-1))
    np.testing.assert_allclose(rows.numpy().reshape(5, 2, 2, 4), np.moveaxis(q.encoder_output(x), 1, 3),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_torch_twin_trains_like_vaecore(update):
    torch = pytest.importorskip("torch")
    (tvq,) = bench("torch_vqvae")
    q, enc, dec, rng = small_model(update)
    t = twin(q, enc, dec)
    opt, topt = vaecore.Adam(q), tvq.make_optimizer(t)
    start = [a.copy() for _, a in q.named_params()]
    for step in range(8):
        x = rng.random((5, 1, 8, 8))
        want = q.train_step(x, opt)["loss"]
        got = tvq.train_step(t, topt, torch.from_numpy(x))
        assert got == pytest.approx(want, rel=REL), step
    for (name, a), (tname, b), a0 in zip(q.named_params(), t.named_flat(), start):
        assert name == tname
        assert not np.array_equal(a, a0), f"{name} did not move: the comparison would be vacuous"
        assert_close(b, a, REL, name)
    if update == "ema":
        assert_close(t.ema_count.numpy(), q.ema_count, REL, "ema_count")
        assert_close(t.ema_sum.numpy(), q.ema_sum, REL, "ema_sum")
        assert not np.allclose(q.ema_count, 1)                                 # the counts moved apart


def test_torch_twin_copies_vaecore_and_rejects_other_layouts():
    pytest.importorskip("torch")
    (tvq,) = bench("torch_vqvae")
    q, enc, dec, _ = small_model("ema")
    named = q.named_params()
    before = [a.copy() for _, a in named]
    t = twin(q, enc, dec)
    assert all(np.array_equal(a, b) for (_, a), b in zip(named, before))      # inputs not modified
    assert [(n, a.shape) for n, a in t.named_flat()] == [(n, a.shape) for n, a in named]
    for (_, a), (_, b) in zip(t.named_flat(), named):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(t.ema_count.numpy(), 1)
    np.testing.assert_array_equal(t.ema_sum.numpy(), q.codebook)
    bad = [(n, a[:, :3] if n == "enc.2.W" else a) for n, a in named]
    with pytest.raises(ValueError, match=r"enc.2.W must have shape \(4, 6, 4, 4\), got \(4, 3, 4, 4\)"):
        tvq.TorchVQVAE(bad, q.input_shape, enc, dec)
    with pytest.raises(ValueError, match="expected the names"):
        tvq.TorchVQVAE(named + [("dec.9.W", named[0][1])], q.input_shape, enc, dec)
    with pytest.raises(ValueError, match="expected the names"):
        tvq.TorchVQVAE(named[:-2], q.input_shape, enc, dec)
    bad = [(n, a[:, :3] if n == "vq.codebook" else a) for n, a in named]
    with pytest.raises(ValueError, match=r"vq.codebook must have shape \(8, 4\), got \(8, 3\)"):
        tvq.TorchVQVAE(bad, q.input_shape, enc, dec)
    with pytest.raises(ValueError, match=r"decoder ends at shape \(6, 4, 4\), expected input_shape \(1, 8, 8\)"):
        tvq.TorchVQVAE(named[:-2], q.input_shape, enc, dec[:1])
    with pytest.raises(ValueError, match="likelihood must be"):
        tvq.TorchVQVAE(named, q.input_shape, enc, dec, likelihood="gaussian_learned")


def test_torch_peer_follows_vaecore_on_the_workload():
    # the float32 peers of the benchmark, three steps of the full workload on random images: the same
    # losses to float32 rounding (the guard of bench/run.py checks longer runs on the real data)
    pytest.importorskip("torch")
    (peers, workloads) = bench("peers", "workloads")
    w = workloads.WORKLOADS["vqvae"]
    a, b = peers.make_peer("vaecore", w), peers.make_peer("torch", w, "default")
    rng = np.random.default_rng(0)
    eps = np.empty((w.batch, 0), np.float32)
    for step in range(3):
        x = rng.random((w.batch, w.input_dim), dtype=np.float32) ** 3
        assert b.step_eps(x, eps) == pytest.approx(a.step_eps(x, eps), rel=1e-5), step
    assert_close(b.model.codebook.numpy(), a.m.codebook, 1e-4, "codebook after 3 steps")


@pytest.mark.slow
def test_quick_run_of_the_vqvae_workload_prints_its_line(tmp_path):
    # bench/run.py end to end on the vqvae workload alone, the smallest settings (~5 s without PyTorch,
    # ~15 s with it: the guard then trains both peers 20 steps)
    import json
    import subprocess

    from test_bench import HAVE_TORCH, RUN

    out = tmp_path / "results"
    peers = ["--peers", "vaecore,torch"] if HAVE_TORCH else ["--no-torch"]
    cmd = [sys.executable, str(RUN), "--quick", "--workloads", "vqvae", "--threads", "1", "--no-gemm", "--no-sweep",
           "--no-profile", "--out", str(out), *peers]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, f"bench/run.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    md = (out / "latest.md").read_text()
    assert md in r.stdout
    results = json.loads((out / "latest.json").read_text())
    assert results["workloads"]["vqvae"]["vq"]["codebook_size"] == 64
    assert results["workloads"]["vqvae"]["flops_per_step"] == 757_858_304
    runs = {q["peer"]: q for q in results["runs"]}
    assert runs["vaecore"]["ok"] and runs["vaecore"]["steps_per_s"] > 0
    assert "| vqvae | 1" in md and "nearest of 64 codes of 16 values" in md and "failed" not in md
    if HAVE_TORCH:
        assert results["guard"]["vqvae"]["passed"] is True, results["guard"]["vqvae"]["summary"]
        assert runs["torch"]["ok"] and "× torch" in md
        assert "| vqvae | 20 |" in md and "✓" in md and "✗" not in md
    else:
        assert "PyTorch peers skipped" in md
