"""vaecore.VQVAE: the nearest-code search against brute force, the straight-through, commitment and
codebook gradients against finite differences and the NumPy reference, the EMA update and the training
step against the reference, the API contract, bad input, all-or-nothing steps, determinism, files,
pickling, dead-code restarts and training quality on the spirals."""
import copy
import io
import pickle

import numpy as np
import pytest

import vaecore
from vaecore import _core
from vaecore import layers as L

from reference import Adam as RefAdam
from reference import ReferenceVQVAE, central_difference_grad, rel_error

# stacks as the C core takes them (kind, args...): 0 linear, 1 conv2d, 2 conv_transpose2d, 3 activation
# (0 tanh, 1 relu, 2 leaky_relu, 3 sigmoid, 4 elu), 4 flatten, 5 reshape
CASES = {
    # flat data, one code per example, smooth activations (finite differences need no kinks)
    "mlp": ((3,), 5, 2, [(0, 7), (3, 0), (0, 2)], [(0, 6), (3, 4), (0, 3)], "gaussian"),
    # images: a 3 x 3 grid of 3-dim codes, bernoulli
    "conv": ((1, 6, 6), 6, 3, [(1, 4, 3, 3, 2, 2, 1, 1), (3, 0), (1, 3, 3, 3, 1, 1, 1, 1)],
             [(2, 4, 4, 4, 2, 2, 1, 1), (3, 3), (1, 1, 3, 3, 1, 1, 1, 1)], "bernoulli"),
    # the learned decoder variance, an empty decoder tail after a reshape
    "learned": ((4,), 4, 2, [(0, 5), (3, 4), (0, 2)], [(0, 4)], "gaussian_learned"),
}


def core_vq(case, ema, dtype="float64", scale=0.6, seed=3):
    shape, K, d, enc, dec, lik = CASES[case]
    q = _core.VqVae(shape, K, d, enc, dec, lik, ema, dtype, 0)
    rng = np.random.default_rng(seed)
    q.params[:] = rng.uniform(-scale, scale, q.num_params)
    return q, rng


def data(q, rng, B=6):
    D = int(np.prod(q.config["input_shape"]))
    x = rng.random((B, D)) if q.config["likelihood"] == "bernoulli" else rng.standard_normal((B, D))
    return x.astype(q.dtype)


def reference(case, ema):
    shape, K, d, enc, dec, lik = CASES[case]
    return ReferenceVQVAE(shape, K, d, enc, dec, lik, ema)


# ---------------------------------------------------------------- the search
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("K,d,M", [(1, 3, 5), (7, 1, 40), (64, 16, 700), (300, 5, 257)])
def test_nearest_code_matches_brute_force(dtype, K, d, M):
    q = _core.VqVae((d,), K, d, [], [], "gaussian", False, dtype, 0)
    rng = np.random.default_rng(K + d)
    q.params[:K * d] = rng.standard_normal(K * d)
    z = rng.standard_normal((M, d)).astype(dtype)
    codes, dist = q.nearest(z)
    cb = q.params[:K * d].reshape(K, d).astype(np.float64)
    ref_codes, ref_dist = ReferenceVQVAE.nearest(z.astype(np.float64), cb)
    # the gemm's expansion |e|^2 - 2 z.e rounds differently from the direct sum: a near-tie may flip, but
    # then both codes are nearest to within rounding; exact agreement on all but such rows
    agree = codes[:, 0] == ref_codes
    all_dist = ((z.astype(np.float64)[:, None] - cb[None]) ** 2).sum(2)
    gap = all_dist[np.arange(M), codes[:, 0]] - ref_dist
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert np.all(agree | (np.abs(gap) <= tol * (1 + ref_dist)))
    assert agree.mean() > 0.99
    # the reported distance is |z - e|^2 of the chosen code, computed directly
    np.testing.assert_allclose(dist[:, 0], all_dist[np.arange(M), codes[:, 0]], rtol=1e-5 if dtype == "float32"
                               else 1e-12, atol=1e-6)


def test_ties_go_to_the_lowest_code():
    q = _core.VqVae((2,), 4, 2, [], [], "gaussian", False, "float64", 0)
    q.params[:] = [1, 0, 0, 1, 1, 0, 0, 1]        # rows 2 and 3 repeat rows 0 and 1
    codes, _ = q.nearest(np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]))
    assert codes[:, 0].tolist() == [0, 1, 0]       # (0.5, 0.5) is as far from all four


def test_codes_of_a_grid_are_in_raster_order():
    q = vaecore.VQVAE(input_shape=(1, 4, 4), codebook_size=8, code_dim=3, dtype="float64", seed=1,
                      encoder=[L.Conv2d(3, 2, stride=2)], decoder=[L.ConvTranspose2d(1, 2, stride=2)])
    x = np.random.default_rng(0).random((5, 1, 4, 4))
    ze = q.encoder_output(x)
    assert ze.shape == (5, 3, 2, 2) and q.grid_shape == (2, 2)
    codes = q.encode(x)
    ref, _ = ReferenceVQVAE.nearest(ReferenceVQVAE.rows(ze), q.codebook)
    assert codes.shape == (5, 2, 2) and codes.dtype == np.int64
    np.testing.assert_array_equal(codes.reshape(-1), ref)
    zq = q.quantize(ze)
    np.testing.assert_array_equal(zq, np.moveaxis(q.codebook[codes], 3, 1))


# ---------------------------------------------------------------- gradients
def straight_through_loss(ref, flat, x, commitment, codes, ze0, zq0):
    """recon(dec(zq0 + ze - ze0)) + commitment |ze - zq0|^2 (+ |ze0 - e_codes|^2 with the loss update),
    batch means: a function whose true gradient is the VQ-VAE's straight-through gradient at the point
    where ze = ze0 (the codes held fixed)."""
    p = ref.unflatten(flat)
    B = x.shape[0]
    ze, _ = ref._forward("enc", ref.enc, p, x.reshape(B, *ref.input_shape))
    out, _ = ref._forward("dec", ref.dec, p, zq0 + ze - ze0)
    out = out.reshape(B, -1)
    if ref.lik == "gaussian":
        recon = ((x - out) ** 2).sum(1)
    elif ref.lik == "bernoulli":
        recon = (np.logaddexp(0, out) - x * out).sum(1)
    else:
        lv = p["dec.logvar"]
        recon = ((x - out) ** 2 / (2 * np.exp(lv)) + lv / 2 + 0.5 * np.log(2 * np.pi)).sum(1)
    loss = recon.mean() + commitment * ((ze - zq0) ** 2).sum() / B
    if not ref.ema:
        e = p["vq.codebook"][codes]
        loss += ((ReferenceVQVAE.rows(ze0) - e) ** 2).sum() / B
    return loss


@pytest.mark.parametrize("ema", [True, False], ids=["ema", "loss"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_matches_reference_and_finite_differences(case, ema):
    q, rng = core_vq(case, ema)
    x = data(q, rng)
    ref = reference(case, ema)
    commitment = 0.3
    (loss, recon, commit, cbterm, perp), grad = q.loss(x, commitment, True)
    want, ref_grad, codes, z = ref.loss_and_grad(q.params, x.astype(np.float64), commitment)
    # the same float64 arithmetic in another order: 1e-10 of the largest entry
    assert rel_error(grad, ref_grad) < 1e-10
    for key, got in zip(("loss", "recon", "commitment", "codebook", "perplexity"), (loss, recon, commit, cbterm, perp)):
        assert got == pytest.approx(want[key], rel=1e-12, abs=1e-12), key
    if ema:
        assert not grad[_codebook_slice(q)].any()
    # finite differences of the straight-through surrogate, with the codes held at the point's
    p = ref.unflatten(np.array(q.params))
    ze0, _ = ref._forward("enc", ref.enc, p, x.reshape(len(x), *ref.input_shape))
    zq_rows = p["vq.codebook"][codes]
    zq0 = zq_rows if ze0.ndim == 2 else np.moveaxis(zq_rows.reshape(len(x), -1, ref.d), 2, 1).reshape(ze0.shape)
    flat = np.array(q.params)
    fd = central_difference_grad(lambda: straight_through_loss(ref, flat, x, commitment, codes, ze0, zq0), flat, 1e-6)
    # central differences with h = 1e-6 in float64: truncation ~h^2 and rounding ~1e-16/h = 1e-10 of the scale
    assert rel_error(grad, fd) < 1e-7


def _codebook_slice(q):
    (off, shape), = [(o, s) for n, o, s in q.layout() if n == "vq.codebook"]
    return slice(off, off + shape[0] * shape[1])


def test_gradient_test_can_fail():
    # the straight-through gradient is not the gradient of the loss itself: finite differences of the true
    # loss (codes fixed, so the decoder sees z_q whatever the encoder does) disagree on the encoder's part
    q, rng = core_vq("mlp", False)
    x = data(q, rng)
    ref = reference("mlp", False)
    _, grad = q.loss(x, 0.3, True)
    flat = np.array(q.params)
    fd = central_difference_grad(lambda: ref.loss_and_grad(flat, x, 0.3)[0]["loss"], flat, 1e-6)
    assert rel_error(grad, fd) > 1e-2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ema", [True, False], ids=["ema", "loss"])
@pytest.mark.parametrize("case", list(CASES))
def test_many_rows_are_evaluated_in_chunks_with_the_same_result(case, ema, dtype):
    # 600 rows are three chunks of the C core's (256, 256 and 88): their sums, code counts and
    # gradients are added up, so the stats and the gradient are still those of all rows at once
    q, rng = core_vq(case, ema, dtype)
    x = data(q, rng, B=600)
    (loss, recon, commit, cbterm, perp), grad = q.loss(x, 0.3, True)
    want, ref_grad, _, _ = reference(case, ema).loss_and_grad(np.array(q.params, np.float64), x.astype(np.float64),
                                                             0.3)
    # float64: sums in another order, 1e-10 of the largest entry and 1e-12 relative for the stats;
    # float32: its rounding (6e-8) through a few layers and sums of 600 rows, 1e-5 (measured: below 1e-6)
    tol, rel = (1e-10, 1e-12) if dtype == "float64" else (1e-5, 1e-5)
    assert rel_error(grad, ref_grad) < tol
    for key, got in zip(("loss", "recon", "commitment", "codebook", "perplexity"), (loss, recon, commit, cbterm, perp)):
        assert got == pytest.approx(want[key], rel=rel, abs=rel), key
    # without the gradient: the same stats, bitwise
    assert q.loss(x, 0.3, False)[0] == (loss, recon, commit, cbterm, perp)


def test_the_loss_of_a_large_set_needs_little_memory():
    # 10,000 images through the notebook's convolutional VQ-VAE: one work buffer for all rows would be
    # ~600 MB; in chunks of 256 rows it is ~15 MB. The child reports how far its peak grew.
    code = """if True:
        import resource, numpy as np, vaecore, vaecore.layers as L
        q = vaecore.VQVAE(input_shape=(1, 28, 28), codebook_size=64, code_dim=16,
            encoder=[L.Conv2d(32, 4, stride=2, padding=1), L.ReLU(), L.Conv2d(16, 4, stride=2, padding=1)],
            decoder=[L.ConvTranspose2d(32, 4, stride=2, padding=1), L.ReLU(),
                     L.ConvTranspose2d(1, 4, stride=2, padding=1)], likelihood="bernoulli", dtype="float32")
        X = np.random.default_rng(0).random((10000, 1, 28, 28), dtype=np.float32)
        q.loss(X[:10])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        q.loss(X)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 100, f"q.loss on 10,000 images grew the peak memory by {r.stdout.strip()} MB"


# ---------------------------------------------------------------- the step
@pytest.mark.parametrize("case", list(CASES))
def test_ema_update_matches_the_numpy_implementation(case):
    q, rng = core_vq(case, True)
    x = data(q, rng)
    ref = reference(case, True)
    K, d = ref.K, ref.d
    ema = rng.uniform(0.5, 2, K * (1 + d))
    count, sums = ema[:K].copy(), ema[K:].reshape(K, d).copy()
    before = np.array(q.params)
    _, _, codes, z = ref.loss_and_grad(before, x, 0.25)
    t, buf = np.zeros(1, np.int64), np.zeros(q.num_params)
    usage = np.zeros(K, np.int64)
    q.train_step(x, 0.25, 0.9, 0, 0.0, 0, 0, 1, 0.0, 0.0, t, buf, None, ema, usage)   # SGD with lr 0
    want_count, want_sums, want_cb = ref.ema_update(count, sums, codes, z, 0.9)
    np.testing.assert_allclose(ema[:K], want_count, rtol=1e-13)
    np.testing.assert_allclose(ema[K:].reshape(K, d), want_sums, rtol=1e-12, atol=1e-15)
    cb = _codebook_slice(q)
    np.testing.assert_allclose(q.params[cb].reshape(K, d), want_cb, rtol=1e-12, atol=1e-15)
    rest = np.ones(q.num_params, bool)
    rest[cb] = False
    np.testing.assert_array_equal(q.params[rest], before[rest])     # lr 0: only the codebook moved
    np.testing.assert_array_equal(usage, np.bincount(codes, minlength=K))
    assert t[0] == 1


@pytest.mark.parametrize("ema", [True, False], ids=["ema", "loss"])
def test_training_steps_match_the_reference(ema):
    q, rng = core_vq("conv", ema)
    ref = reference("conv", ema)
    K, d = ref.K, ref.d
    params = np.array(q.params)
    opt = RefAdam(q, lr=1e-2)
    m, v, t = np.zeros(q.num_params), np.zeros(q.num_params), np.zeros(1, np.int64)
    ema_state = np.concatenate([np.ones(K), params[_codebook_slice(q)]]) if ema else None
    count, sums = (ema_state[:K].copy(), ema_state[K:].reshape(K, d).copy()) if ema else (None, None)
    for step in range(3):
        x = data(q, rng)
        stats = q.train_step(x, 0.25, 0.95, 1, 1e-2, 0.9, 0.999, 1e-8, 0.0, 0.0, t, m, v, ema_state, None)
        want, grad, codes, z = ref.loss_and_grad(params, x, 0.25)
        assert stats[0] == pytest.approx(want["loss"], rel=1e-12)
        opt.step(params, grad)
        if ema:
            count, sums, cb = ref.ema_update(count, sums, codes, z, 0.95)
            params[_codebook_slice(q)] = cb.reshape(-1)
        assert rel_error(q.params, params) < 1e-12, step
    assert t[0] == 3


def test_a_failing_step_changes_nothing():
    q, rng = core_vq("mlp", True)
    x = data(q, rng)
    ema = np.ones(5 * 3)
    t, m, v = np.zeros(1, np.int64), np.zeros(q.num_params), np.zeros(q.num_params)
    before = (np.array(q.params), ema.copy(), m.copy(), v.copy())
    with pytest.raises(FloatingPointError, match="not applied"):
        q.train_step(x, 0.25, 0.99, 1, 1e308, 0.9, 0.999, 1e-300, 0.0, 0.0, t, m, v, ema, None)
    for a, b in zip((q.params, ema, m, v), before):
        np.testing.assert_array_equal(a, b)
    assert t[0] == 0


# ---------------------------------------------------------------- the Python API
def issue_model(**kw):
    return vaecore.VQVAE(input_shape=(1, 28, 28), codebook_size=64, code_dim=16,
                         encoder=[L.Conv2d(32, 4, stride=2, padding=1), L.ReLU(), L.Conv2d(16, 4, stride=2, padding=1)],
                         decoder=[L.ConvTranspose2d(32, 4, stride=2, padding=1), L.ReLU(),
                                  L.ConvTranspose2d(1, 4, stride=2, padding=1)],
                         likelihood="bernoulli", commitment=0.25, codebook_update="ema", decay=0.99, dtype="float32",
                         seed=0, **kw)


def test_the_issues_model_has_the_contracts_names_and_shapes():
    q = issue_model()
    assert [(n, a.shape) for n, a in q.named_params()] == [
        ("enc.0.W", (32, 1, 4, 4)), ("enc.0.b", (32,)), ("enc.2.W", (16, 32, 4, 4)), ("enc.2.b", (16,)),
        ("vq.codebook", (64, 16)), ("dec.0.W", (16, 32, 4, 4)), ("dec.0.b", (32,)), ("dec.2.W", (32, 1, 4, 4)),
        ("dec.2.b", (1,))]
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    codes = q.encode(x)
    assert codes.shape == (3, 7, 7) and codes.dtype == np.int64 and q.grid_shape == (7, 7)
    assert q.encoder_output(x).shape == (3, 16, 7, 7)
    assert q.quantize(q.encoder_output(x)).shape == (3, 16, 7, 7)
    rec = q.reconstruct(x)
    assert rec.shape == (3, 1, 28, 28) and 0 <= rec.min() and rec.max() <= 1
    np.testing.assert_array_equal(rec, q.decode_codes(codes))
    stats, grad = q.loss_and_grad(x)
    assert set(stats) == {"loss", "recon", "commitment", "codebook", "perplexity"}
    assert grad.shape == q.params.shape and grad.dtype == np.float32
    assert stats["loss"] == pytest.approx(stats["recon"] + stats["commitment"] + stats["codebook"])
    assert stats["codebook"] == 0 and 1 <= stats["perplexity"] <= 64
    np.testing.assert_array_equal(q.ema_count, 1)
    np.testing.assert_array_equal(q.ema_sum, q.codebook)


def test_flat_models_have_one_code_per_example():
    q = vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(16,), seed=0)
    X = vaecore.datasets.two_spirals(50, seed=0)[0]
    assert q.encode(X).shape == (50,) and q.grid_shape == () and q.positions == 1
    assert q.encoder_output(X).shape == (50, 2)
    assert q.decode_codes(np.arange(8)).shape == (8, 2)


def test_loss_update_learns_the_codebook_by_gradient():
    q = vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(16,), codebook_update="loss", seed=0)
    X = vaecore.datasets.two_spirals(64, seed=0)[0]
    stats, grad = q.loss_and_grad(X)
    cb = dict(q.named_params(grad))["vq.codebook"]
    assert np.abs(cb).max() > 0 and stats["codebook"] > 0
    assert stats["commitment"] == pytest.approx(0.25 * stats["codebook"])
    assert q.ema_count is None
    with pytest.raises(ValueError, match="no moving averages"):
        q.reset_ema()


def test_fit_records_perplexity_usage_and_restarts_dead_codes():
    q = vaecore.VQVAE(2, codebook_size=16, code_dim=2, hidden=(32,), seed=0)
    q.codebook[8:] = 100.0          # far from every encoder output: dead from the start
    q.reset_ema()
    X = vaecore.datasets.two_spirals(256, seed=0)[0]
    hist = vaecore.fit(q, X, epochs=3, batch_size=64, progress=False)
    assert isinstance(hist, vaecore.VQHistory) and len(hist) == 3
    assert hist.usage.shape == (3, 16) and hist.usage[0].sum() == 256
    assert hist.restarts[0] >= 8 and hist.codes_used[0] <= 8
    assert np.abs(q.codebook).max() < 100          # the dead codes moved onto encoder outputs
    assert hist.perplexity[0] <= hist.codes_used[0] + 1e-9
    assert hist.codes_used[-1] > hist.codes_used[0]
    q2 = vaecore.VQVAE(2, codebook_size=16, code_dim=2, hidden=(32,), seed=0)
    q2.codebook[8:] = 100.0
    q2.reset_ema()
    hist2 = vaecore.fit(q2, X, epochs=3, batch_size=64, progress=False, restart_dead=False)
    assert hist2.restarts.sum() == 0 and hist2.codes_used[-1] <= 8


def test_fit_evaluates_validation_data_after_every_epoch():
    X = vaecore.datasets.two_spirals(256, seed=0)[0]
    X_val = vaecore.datasets.two_spirals(300, seed=1)[0]   # 300 rows: not a multiple of any batch size
    seen = []

    def record(epoch, stats, model):   # the model the stats describe: evaluated here, independently
        want = model.loss(X_val)
        seen.append({k: stats[f"val_{k}"] for k in want})
        assert seen[-1] == want

    q = vaecore.VQVAE(2, codebook_size=16, code_dim=2, hidden=(32,), seed=0)
    hist = vaecore.fit(q, X, epochs=4, batch_size=64, progress=False, validation_data=X_val, callbacks=[record])
    assert len(seen) == 4
    for key in ("loss", "recon", "commitment", "codebook", "perplexity"):
        np.testing.assert_array_equal(getattr(hist, f"val_{key}"), [s[key] for s in seen])
    assert hist.val_kl.size == 0 and "val_loss=" in repr(hist)
    assert hist.val_loss[-1] < hist.val_loss[0]
    # evaluating changes nothing of the training: bitwise the run without it
    q2 = vaecore.VQVAE(2, codebook_size=16, code_dim=2, hidden=(32,), seed=0)
    hist2 = vaecore.fit(q2, X, epochs=4, batch_size=64, progress=False)
    np.testing.assert_array_equal(q2.params, q.params)
    np.testing.assert_array_equal(hist2.loss, hist.loss)
    assert hist2.val_loss.size == 0 and "val_loss" not in repr(hist2)
    # EarlyStopping watches it
    q3 = vaecore.VQVAE(2, codebook_size=16, code_dim=2, hidden=(32,), seed=0)
    stop = vaecore.EarlyStopping(patience=1, min_delta=1e9)   # no epoch improves by 1e9: stops after two
    hist3 = vaecore.fit(q3, X, epochs=10, batch_size=64, progress=False, validation_data=X_val, callbacks=[stop])
    assert len(hist3) == 2 and hist3.stopped_early and stop.best == hist3.val_loss[0]
    with pytest.raises(ValueError, match="monitors 'val_loss'.*validation_data="):
        vaecore.fit(q3, X, epochs=1, progress=False, callbacks=[vaecore.EarlyStopping(patience=1)])
    # bad validation data, refused before any step
    before = q3.params.copy()
    for bad, exc, match in ((np.zeros((0, 2)), ValueError, "validation_data: .*at least one row"),
                            ([[np.nan, 0.0]], ValueError, "validation_data must be finite"),
                            (np.zeros((3, 5)), ValueError, r"validation_data: .*shape"),
                            ("spirals", TypeError, "validation_data")):
        with pytest.raises(exc, match=match):
            vaecore.fit(q3, X, epochs=1, progress=False, validation_data=bad)
    np.testing.assert_array_equal(q3.params, before)
    b = vaecore.VQVAE(2, codebook_size=4, code_dim=2, hidden=(8,), likelihood="bernoulli", seed=0)
    before = b.params.copy()
    with pytest.raises(ValueError, match=r"validation_data must lie in \[0, 1\]"):
        vaecore.fit(b, np.full((8, 2), 0.5), epochs=1, progress=False, validation_data=[[0.5, 1.5]])
    np.testing.assert_array_equal(b.params, before)


def test_short_training_reaches_the_documented_quality():
    # documented in the README: 50 epochs on 1024 spiral points, 32 codes of width 2: reconstruction error
    # (squared, per example) under 0.03 (the data spans about [-1, 1]^2) and the code perplexity above 20
    X = vaecore.datasets.two_spirals(1024, seed=0)[0]
    q = vaecore.VQVAE(2, codebook_size=32, code_dim=2, hidden=(64, 64), seed=0)
    hist = vaecore.fit(q, X, epochs=50, batch_size=64, progress=False)
    stats = q.loss(X)
    assert stats["recon"] < 0.03
    assert hist.perplexity[-1] > 20


def test_sample_decodes_what_a_prior_draws():
    q = vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(16,), seed=0)

    class Fixed:
        def sample(self, n, seed=None):
            return np.arange(n) % 8

    out = q.sample(5, Fixed(), seed=0)
    np.testing.assert_array_equal(out, q.decode_codes(np.arange(5) % 8))
    assert q.sample(0, Fixed()).shape == (0, 2)
    with pytest.raises(TypeError, match="prior"):
        q.sample(3, object())


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    q = vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(16,), seed=0)
    with pytest.raises(TypeError, match="codebook_size and code_dim"):
        vaecore.VQVAE(2)
    with pytest.raises(ValueError, match="codebook_update"):
        vaecore.VQVAE(2, 8, 2, codebook_update="kmeans")
    with pytest.raises(ValueError, match="decay"):
        vaecore.VQVAE(2, 8, 2, decay=1.0)
    with pytest.raises(ValueError, match="commitment"):
        vaecore.VQVAE(2, 8, 2, commitment=-1)
    with pytest.raises(ValueError, match="code_dim = 3"):
        vaecore.VQVAE(input_shape=(1, 4, 4), codebook_size=8, code_dim=3, encoder=[L.Conv2d(2, 2, stride=2)],
                      decoder=[L.ConvTranspose2d(1, 2, stride=2)])
    with pytest.raises(ValueError, match="give back the data"):
        vaecore.VQVAE(2, 8, 2, encoder=[L.Linear(2)], decoder=[L.Linear(3)])
    with pytest.raises(TypeError, match="layer form"):
        vaecore.VQVAE(input_shape=(1, 4, 4), codebook_size=8, code_dim=2)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 8\)"):
        q.decode_codes([1, 8])
    with pytest.raises(TypeError, match="integer"):
        q.decode_codes([1.5])
    with pytest.raises(ValueError, match="shape"):
        q.decode_codes(np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="finite"):
        q.encode([[np.nan, 0]])
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        q.encode(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="z_e must have shape"):
        q.quantize(np.zeros((3, 5)))
    b = vaecore.VQVAE(2, 8, 2, likelihood="bernoulli", seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        b.loss([[2.0, 0.5]])
    other = vaecore.VQVAE(2, 8, 2, seed=0)
    with pytest.raises(ValueError, match="created for this model"):
        q.train_step(np.zeros((2, 2)), vaecore.Adam(other))
    with pytest.raises(TypeError, match="not for a VQ-VAE"):
        vaecore.fit(q, np.zeros((4, 2)), beta=2.0)
    with pytest.raises(TypeError, match="is for a VQ-VAE"):
        vaecore.fit(vaecore.VAE(2, 2), np.zeros((4, 2)), restart_dead=False)


def test_core_arguments_are_checked():
    q, rng = core_vq("mlp", True)
    x = data(q, rng)
    t, m, v = np.zeros(1, np.int64), np.zeros(q.num_params), np.zeros(q.num_params)
    args = lambda **kw: dict(dict(x=x, c=0.25, decay=0.99, kind=1, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, mom=0.0,
                                  clip=0.0, t=t, s1=m, s2=v, ema=np.ones(15), usage=None), **kw)
    step = lambda a: q.train_step(*a.values())
    with pytest.raises(ValueError, match="ema must be"):
        step(args(ema=np.ones(14)))
    with pytest.raises(ValueError, match="usage must be"):
        step(args(usage=np.zeros(5, np.int32)))
    with pytest.raises(ValueError, match="decay must be in"):
        step(args(decay=1.5))
    with pytest.raises(ValueError, match="commitment must be"):
        step(args(c=float("nan")))
    with pytest.raises(ValueError, match="must not share memory"):
        step(args(s1=q.params))
    lq, _ = core_vq("mlp", False)
    with pytest.raises(TypeError, match="ema must be None"):
        lq.train_step(*args(ema=np.ones(15)).values())
    with pytest.raises(TypeError, match="int64"):
        q.decode(np.zeros((2, 1), np.int32))
    with pytest.raises(ValueError, match="codebook_size and code_dim"):
        _core.VqVae((2,), 0, 2, [], [], "gaussian", True, "float64", 0)
    with pytest.raises(ValueError, match="invalid model configuration"):
        _core.VqVae((2,), 4, 3, [], [], "gaussian", True, "float64", 0)   # the encoder gives 2, not 3


# ---------------------------------------------------------------- files, pickling, determinism
def _train(q, X, opt, steps, usage=None):
    for i in range(steps):
        q.train_step(X[16 * i:16 * i + 16], opt, usage)


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_save_load_and_pickle_resume_bitwise(tmp_path, update):
    X = vaecore.datasets.two_spirals(128, seed=0)[0]
    q = vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(16,), codebook_update=update, seed=0)
    opt = vaecore.Adam(q)
    _train(q, X, opt, 2)
    path = tmp_path / "q.npz"
    q.save(path, optimizer=opt)
    q2, opt2 = vaecore.VQVAE.load(path, with_optimizer=True)
    q3, opt3 = vaecore.load(path, with_optimizer=True)
    q4 = pickle.loads(pickle.dumps(q))
    opt4 = vaecore.Adam(q4)
    opt4.m[...], opt4.v[...], opt4.t = opt.m, opt.v, opt.t
    for other, o in ((q2, opt2), (q3, opt3), (q4, opt4)):
        np.testing.assert_array_equal(other.params, q.params)
        assert other.config == q.config
        if update == "ema":
            np.testing.assert_array_equal(other.ema_count, q.ema_count)
        _train(other, X[32:], o, 2)
    _train(q, X[32:], opt, 2)
    for other in (q2, q3, q4):
        np.testing.assert_array_equal(other.params, q.params)
    with pytest.raises(ValueError, match="not a VQVAE"):
        vaecore.GAN(2, 2).save(tmp_path / "g.npz") or vaecore.VQVAE.load(tmp_path / "g.npz")
    with pytest.raises(ValueError, match="holds a VQVAE"):
        vaecore.VAE.load(path)
    buf = io.BytesIO()
    q.save(buf)
    buf.seek(0)
    np.testing.assert_array_equal(vaecore.load(buf).params, q.params)
    np.testing.assert_array_equal(copy.deepcopy(q).codebook, q.codebook)


def test_training_is_deterministic_and_independent_of_threads():
    X = np.random.default_rng(0).random((64, 1, 28, 28)).astype(np.float32)
    before = _core.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1):
            _core.set_num_threads(threads) if _core.HAVE_OPENMP or threads == 1 else None
            q = issue_model()
            h = vaecore.fit(q, X, epochs=2, batch_size=32, progress=False)
            results.append((np.array(q.params), q.ema_count.copy(), h.loss.copy()))
    finally:
        _core.set_num_threads(before)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)



def test_profile_times_the_phases_of_vq_training_steps():
    # _core.profile (vae.h's VaeProfile) counts the VQ-VAE's training steps too, phase by phase as the
    # VAE's (tests/test_kernels.py): forward (encoder, nearest-code search, decoder), loss, backward,
    # optimizer (clipping, the moving averages, Adam); the products' time lands in the phase they run
    # in. Inclusions that hold on any machine: pack <= gemm <= total; no product in the loss or the
    # optimizer; Adam's check within the optimizer, the gradient's norm within the backward pass.
    q = issue_model()
    opt = vaecore.Adam(q)
    x = np.random.default_rng(0).random((32, 1, 28, 28)).astype(np.float32)
    q.train_step(x, opt)
    _core.profile(True)
    try:
        for _ in range(3):
            q.train_step(x, opt)
    finally:
        p = _core.profile(False)
    assert p["steps"] == 3
    for ph in ("forward", "backward"):
        assert 0 < p["pack"][ph] <= p["gemm"][ph] <= p["total"][ph]
    for ph in ("noise", "loss", "optimizer"):
        assert p["gemm"][ph] == 0 and p["pack"][ph] == 0
    assert p["total"]["loss"] > 0 and p["total"]["optimizer"] > 0
    assert 0 < p["check"] < p["total"]["optimizer"]
    assert 0 < p["norm"] < p["total"]["backward"] - p["gemm"]["backward"]
    q.train_step(x, opt)                       # off: nothing is added
    assert _core.profile(False) == p

# ---------------------------------------------------------------- fuzzing
from hypothesis import HealthCheck, given, settings   # noqa: E402
from hypothesis import strategies as st               # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def vqs(draw):
    """any fitting encoder / codebook / decoder: flat, or images with a grid of codes"""
    K, d = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    lik = draw(st.sampled_from(["gaussian", "bernoulli", "gaussian_learned"]))
    if draw(st.booleans()):
        D = draw(st.integers(1, 5))
        enc = [(0, draw(st.integers(1, 6))), (3, draw(st.sampled_from([0, 3, 4]))), (0, d)]
        dec = [(0, draw(st.integers(1, 6))), (3, draw(st.sampled_from([0, 3, 4]))), (0, D)]
        return (D,), K, d, enc, dec, lik
    C, H = draw(st.integers(1, 2)), draw(st.sampled_from([2, 4, 6]))
    enc = [(1, d, 2, 2, 2, 2, 0, 0)]
    dec = [(3, draw(st.sampled_from([0, 4]))), (2, C, 2, 2, 2, 2, 0, 0)]
    return (C, H, H), K, d, enc, dec, lik


@FUZZ
@given(cfg=vqs(), B=st.integers(1, 5), ema=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fuzzed_models_match_the_reference(cfg, B, ema, seed):
    # any fitting model: loss and gradient equal the reference's (float64, 1e-9 relative)
    shape, K, d, enc, dec, lik = cfg
    q = _core.VqVae(shape, K, d, enc, dec, lik, ema, "float64", 0)
    rng = np.random.default_rng(seed)
    q.params[:] = rng.uniform(-0.7, 0.7, q.num_params)
    D = int(np.prod(shape))
    x = rng.random((B, D)) if lik == "bernoulli" else rng.standard_normal((B, D))
    (loss, *_), grad = q.loss(x, 0.5, True)
    want, ref_grad, _, _ = ReferenceVQVAE(shape, K, d, enc, dec, lik, ema).loss_and_grad(q.params.copy(), x, 0.5)
    assert loss == pytest.approx(want["loss"], rel=1e-9) and rel_error(grad, ref_grad) < 1e-9


ARRAYS = st.one_of(
    st.builds(np.zeros, st.tuples(st.integers(0, 3), st.integers(0, 4))),
    st.builds(lambda n: np.full((n, 2), np.nan), st.integers(1, 3)),
    st.builds(lambda n: np.full((n, 2), np.inf), st.integers(1, 3)),
    st.builds(lambda n: np.ones((n, 2), np.float32), st.integers(1, 300)),
    st.builds(lambda n: np.ones((2, n), order="F"), st.integers(1, 3)),
    st.builds(lambda n: np.arange(2 * n).reshape(n, 2)[::-1], st.integers(1, 3)),
    st.builds(lambda n: np.ones((n, 2), ">f8"), st.integers(1, 3)),
    st.builds(lambda n: np.ones((n, 2), complex), st.integers(1, 3)),
    st.builds(lambda n: np.arange(n) - 1, st.integers(0, 12)),
    st.builds(lambda n: np.ones(n, np.uint8), st.integers(0, 3)),
    st.just([[1.0, 2.0], [3.0]]), st.just("x"), st.just(None), st.just(3),
)


@FUZZ
@given(a=ARRAYS)
def test_fuzzed_arguments_work_or_raise_cleanly(a):
    # every public method either works or raises TypeError, ValueError (or FloatingPointError for a step
    # that diverges), and leaves the model and its input as they were (but for a step that works)
    q = vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(5,), dtype="float64", seed=0)
    opt = vaecore.Adam(q)
    calls = [("encode", lambda: q.encode(a)), ("quantize", lambda: q.quantize(a)),
             ("decode_codes", lambda: q.decode_codes(a)), ("loss", lambda: q.loss_and_grad(a)),
             ("reconstruct", lambda: q.reconstruct(a)), ("nearest", lambda: q.nearest(a)),
             ("train_step", lambda: q.train_step(a, opt))]
    for name, call in calls:
        before = (q.params.copy(), q.ema_count.copy(), copy.deepcopy(a))
        try:
            call()
        except (TypeError, ValueError, FloatingPointError) as e:
            assert str(e)
            assert np.array_equal(q.params, before[0]) and np.array_equal(q.ema_count, before[1])
        else:
            if name != "train_step":
                assert np.array_equal(q.params, before[0])
        if isinstance(before[2], np.ndarray):
            assert np.array_equal(a, before[2], equal_nan=True)
