"""The priors over code grids of issue 13: vaecore.IndependentPrior and vaecore.AutoregressivePrior (MADE).

- IndependentPrior against counting by hand;
- both priors normalised: on a tiny grid (K = 3 codes, L = 3 positions: 27 grids) exp(log_prob) sums to 1;
- MADE's autoregressive property, its loss gradient against central differences (float64) and against
  tests/reference.py's ReferenceMADE (float64 and float32), _core.Stack's Adam step against the reference Adam;
- sampling frequencies against the model's probabilities (a chi-square bound), fitting on dependent codes,
  bad input, pickling and determinism.
"""
import itertools
import math
import pickle

import numpy as np
import pytest

import vaecore
from vaecore import _core
from vaecore.priors import made_masks

from reference import Adam, ReferenceMADE, central_difference_grad, rel_error

K3, L3 = 3, 3
ALL27 = np.array(list(itertools.product(range(K3), repeat=L3)))          # (27, 3): every grid of the tiny case


def chain_codes(n, K, shape, seed=0):
    """Grids whose first code is uniform and each next one is the previous + 1 (mod K): log2 K bits each."""
    first = np.random.default_rng(seed).integers(0, K, size=n)
    L = math.prod(shape)
    return ((first[:, None] + np.arange(L)[None, :]) % K).reshape(n, *shape)


def tiny_made(dtype="float64", hidden=(5,), activation="tanh", seed=0, trained=False):
    p = vaecore.AutoregressivePrior(K3, hidden=hidden, activation=activation, dtype=dtype, seed=seed)
    codes = chain_codes(300, K3, (L3,), seed=1)
    p.fit(codes, epochs=3 if trained else 0, batch_size=32, lr=1e-2, progress=False)
    return p


# ------------------------------------------------------------------ independent prior
def test_independent_prior_matches_counting_by_hand():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=(40, 2, 3))
    codes[:, 0, 0] = 2                                   # a position where most codes are never seen
    a = 0.5
    p = vaecore.IndependentPrior(5, smoothing=a).fit(codes)
    assert p.grid_shape == (2, 3)
    test = rng.integers(0, 5, size=(7, 2, 3))
    want = np.zeros(7)
    for r in range(7):
        for i in range(2):
            for j in range(3):
                count = sum(1 for q in range(40) if codes[q, i, j] == test[r, i, j])
                want[r] += math.log((count + a) / (40 + 5 * a))
    # float64 sums of 6 logs: agree to rounding
    np.testing.assert_allclose(p.log_prob(test), want, rtol=1e-13, atol=1e-13)
    assert p.nll_bits(test) == pytest.approx(-want.mean() / math.log(2), rel=1e-13)
    # smoothing 0: an unseen code has probability 0
    p0 = vaecore.IndependentPrior(5, smoothing=0).fit(codes)
    test[0, 0, 0] = 4
    assert p0.log_prob(test)[0] == -np.inf


def test_flat_and_single_position_grids():
    p = vaecore.IndependentPrior(4).fit(np.array([0, 1, 1, 3]))
    assert p.grid_shape == ()
    np.testing.assert_allclose(np.exp(p.log_prob(np.arange(4))), [2 / 8, 3 / 8, 1 / 8, 2 / 8], rtol=1e-14)
    assert p.sample(3).shape == (3,)
    m = vaecore.AutoregressivePrior(4, hidden=(3,), dtype="float64").fit(np.array([0, 1, 1, 3]), epochs=2,
                                                                          progress=False)
    assert np.exp(m.log_prob(np.arange(4))).sum() == pytest.approx(1, abs=1e-12)
    assert m.sample(3).shape == (3,)


@pytest.mark.parametrize("make", [
    lambda: vaecore.IndependentPrior(K3, smoothing=0.3).fit(chain_codes(50, K3, (L3,))),
    lambda: tiny_made("float64"),
    lambda: tiny_made("float64", trained=True),
    lambda: tiny_made("float32", hidden=(7, 6), activation="relu", trained=True),
    lambda: tiny_made("float64", hidden=()),
], ids=["independent", "made-untrained", "made-trained", "made-float32-2-hidden", "made-no-hidden"])
def test_probabilities_over_all_grids_sum_to_one(make):
    p = make()
    total = np.exp(p.log_prob(ALL27)).sum()
    # float64 softmax: rounding of 27 * 3 terms; float32 logits are normalised in float64 too
    assert total == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------ MADE
def test_masks_are_autoregressive():
    for L, K, hidden in [(3, 3, (5,)), (4, 2, (3, 7)), (1, 4, (2,)), (5, 3, ())]:
        masks = made_masks(L, K, hidden)
        # connectivity of input position j to output position i: the product of the masks
        reach = masks[0]
        for m in masks[1:]:
            reach = (reach @ m > 0).astype(float)
        by_pos = reach.reshape(L, K, L, K).max(axis=(1, 3))          # (input position, output position)
        assert np.array_equal(by_pos > 0, np.triu(np.ones((L, L)), 1) > 0) or hidden == () or L < 3, (L, hidden)
        assert not np.any(np.tril(by_pos) > 0)                      # never from a position to itself or later


def test_logits_depend_only_on_earlier_positions():
    p = vaecore.AutoregressivePrior(4, hidden=(16, 12), activation="elu", dtype="float32", seed=3)
    p.fit(np.random.default_rng(0).integers(0, 4, size=(64, 2, 3)), epochs=1, progress=False)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 4, size=(8, 6))
    before = p._logits(base)                                        # (8, 6, 4)
    for j in range(6):
        changed = base.copy()
        changed[:, j] = (changed[:, j] + 1 + rng.integers(0, 3, size=8)) % 4
        after = p._logits(changed)
        # masked weights are exactly 0, so positions <= j see bitwise the same numbers
        np.testing.assert_array_equal(after[:, :j + 1], before[:, :j + 1])
        if j < 5:
            assert np.any(after[:, j + 1:] != before[:, j + 1:]), j


def test_masked_weights_stay_zero_through_training():
    p = tiny_made("float32", hidden=(6,), activation="relu", trained=True)
    for off, m in p._masks:
        w = p.params[off:off + m.size]
        assert np.all(w[m.ravel() == 0] == 0)
        assert np.count_nonzero(w[m.ravel() == 1]) > 0


@pytest.mark.parametrize("activation", ["tanh", "elu"])
def test_made_gradient_against_central_differences(activation):
    p = tiny_made("float64", hidden=(5, 4), activation=activation, seed=2)
    rng = np.random.default_rng(5)
    p.params[...] += rng.normal(scale=0.3, size=p.params.size)     # all entries, masked ones too
    codes = rng.integers(0, K3, size=(6, L3))
    x = p._onehot(codes)

    def loss():
        return p._loss_and_grad(codes)[0]

    # the raw C gradient (no mask) of the unmasked network, every entry
    logp = p._log_softmax(p._core.forward(x))
    d = np.exp(logp)
    d[np.arange(6)[:, None], np.arange(L3)[None, :], codes] -= 1
    raw = p._core.backward(x, d.reshape(6, -1) / 6)
    num = central_difference_grad(loss, p.params, 1e-5)
    # float64, h = 1e-5: truncation ~h^2 |f'''| ~ 1e-10, rounding ~1e-16 / 1e-5 = 1e-11
    assert rel_error(raw, num) < 1e-7
    # the prior's gradient is the raw one with each W's masked entries set to 0
    grad = p._loss_and_grad(codes)[1]
    mask = np.ones(p.params.size)
    for off, m in p._masks:
        mask[off:off + m.size] = m.ravel()
    np.testing.assert_array_equal(grad, raw * mask)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-6)])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_made_matches_the_numpy_reference(dtype, tol, activation):
    # tolerances (loss and log_prob: tol; the gradient: 10 tol): float64 differs from the reference only by
    # summation order (~1e-15 relative); float32 rounds each operation to 6e-8 relative (measured: loss 2e-9,
    # log_prob 6e-8, gradient 2e-7 relative to its largest entry), normalised in float64 by the prior
    p = vaecore.AutoregressivePrior(K3, hidden=(6, 5), activation=activation, dtype=dtype, seed=4)
    codes = np.random.default_rng(2).integers(0, K3, size=(20, L3))
    p.fit(codes, epochs=2, batch_size=8, lr=1e-2, progress=False)
    ref = ReferenceMADE(L3, K3, (6, 5), activation)
    flat = np.array(p.params, dtype=np.float64)
    loss, grad = p.loss_and_grad(codes)
    rloss, rgrad = ref.loss_and_grad(flat, codes)
    assert loss == pytest.approx(rloss, rel=tol)
    assert rel_error(grad, rgrad) < tol * 10
    np.testing.assert_allclose(p.log_prob(codes), ref.log_prob(flat, codes), rtol=tol, atol=tol)


def test_stack_adam_step_matches_the_reference_adam():
    p = tiny_made("float64", hidden=(4,), seed=1)
    core = p._core
    P = core.num_params
    rng = np.random.default_rng(0)
    core.params[...] = rng.normal(size=P)
    ref_params = np.array(core.params)
    ref = Adam(types := type("M", (), {"params": ref_params}), lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    m, v, t = np.zeros(P), np.zeros(P), np.zeros(1, np.int64)
    for _ in range(4):
        g = rng.normal(size=P)
        core.adam_step(g, m, v, t, 0.01, 0.8, 0.99, 1e-6)
        ref.step(ref_params, g)
    assert t[0] == 4
    np.testing.assert_allclose(core.params, ref_params, rtol=1e-13, atol=1e-15)
    del types
    # a gradient with a NaN, or an update that overflows, changes nothing
    before = (np.array(core.params), m.copy(), v.copy(), t.copy())
    bad = rng.normal(size=P)
    bad[3] = np.nan
    with pytest.raises(FloatingPointError, match="gradient holds NaN"):
        core.adam_step(bad, m, v, t, 0.01, 0.8, 0.99, 1e-6)
    with pytest.raises(FloatingPointError, match="update would leave NaN"):
        core.adam_step(np.full(P, 1e300), m, v, t, 1e300, 0.8, 0.99, 1e-300)
    for a, b in zip(before, (core.params, m, v, t)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ sampling and fitting
@pytest.mark.parametrize("which", ["independent", "made"])
def test_sample_frequencies_match_probabilities(which):
    codes = chain_codes(300, K3, (L3,), seed=1)
    codes[::2] = np.random.default_rng(2).integers(0, K3, size=(150, L3))   # half noise: no grid is rare
    if which == "independent":
        p = vaecore.IndependentPrior(K3).fit(codes)
    else:
        p = vaecore.AutoregressivePrior(K3, hidden=(8,), dtype="float64").fit(codes, epochs=5, batch_size=32,
                                                                              lr=2e-2, progress=False)
    probs = np.exp(p.log_prob(ALL27))                   # (27,)
    N = 30_000
    s = p.sample(N, seed=7)
    assert s.shape == (N, L3) and s.dtype == np.int64
    idx = (s * np.array([9, 3, 1])).sum(axis=1)         # each grid's index in ALL27 (base-3 digits)
    freq = np.bincount(idx, minlength=27)
    # Pearson's chi-square over the 27 cells (all expected counts are >= 5 here) has 26 degrees of freedom:
    # mean 26, sd sqrt(52) = 7.2; 80 is 7.5 sd above the mean (p < 1e-9), so a correct sampler passes with
    # any seed, and a sampler off by a few percent in one cell fails (checked below on a wrong distribution)
    assert np.all(N * probs >= 5)
    chi2 = np.sum((freq - N * probs) ** 2 / (N * probs))
    assert chi2 < 80, chi2
    # the bound has power: the same samples against a slightly different distribution fail it
    other = probs * (1 + 0.1 * (np.arange(27) % 2 - 0.5))
    other /= other.sum()
    assert np.sum((freq - N * other) ** 2 / (N * other)) > 80


def test_fit_learns_dependence_the_independent_prior_cannot():
    K, shape = 8, (2, 3)
    train, test = chain_codes(3000, K, shape, seed=0), chain_codes(500, K, shape, seed=1)
    ind = vaecore.IndependentPrior(K).fit(train)
    made = vaecore.AutoregressivePrior(K, hidden=(64,), seed=0).fit(train, epochs=15, batch_size=64, lr=1e-2,
                                                                    progress=False)
    # the independent prior pays log2 8 = 3 bits per position (18 bits); the truth is 3 bits per grid
    assert ind.nll_bits(test) == pytest.approx(18, abs=0.05)
    assert made.nll_bits(test) < 3.5
    assert len(made.history) == 15 and made.history[-1] < made.history[0]
    # history is in nats per example: the last epoch's training NLL is near the test NLL
    assert made.history[-1] / math.log(2) == pytest.approx(made.nll_bits(train), abs=0.5)
    # its samples keep the chain: each code is the previous + 1
    s = made.sample(200, seed=0).reshape(200, -1)
    assert np.mean(np.all((s[:, 1:] - s[:, :-1]) % K == 1, axis=1)) > 0.9


def test_fit_evaluates_validation_data_and_stops_early():
    K, shape = 6, (2, 2)
    train, held = chain_codes(400, K, shape, seed=0), chain_codes(150, K, shape, seed=1)

    def made():
        return vaecore.AutoregressivePrior(K, hidden=(32,), seed=0)
    plain = made().fit(train, epochs=6, batch_size=32, lr=1e-2, progress=False)
    seen = []
    p = made().fit(train, epochs=6, batch_size=32, lr=1e-2, progress=False, validation_data=held,
                   callbacks=[lambda epoch, stats, prior: seen.append((epoch, dict(stats), prior)) and False])
    # training is bitwise the same with validation data; each epoch's value is -mean log_prob after that epoch
    np.testing.assert_array_equal(p.params, plain.params)
    assert p.history == plain.history and plain.val_history == []
    assert len(p.val_history) == 6
    assert p.val_history[-1] == -np.mean(p.log_prob(held))
    assert p.val_history[-1] / math.log(2) == pytest.approx(p.nll_bits(held), rel=1e-12)
    assert [e for e, _, _ in seen] == list(range(6)) and all(q is p for _, _, q in seen)
    assert [st for _, st, _ in seen] == [{"loss": h, "val_loss": v} for h, v in zip(p.history, p.val_history)]
    # EarlyStopping watches val_loss: a callback that stops after epoch 2 ends the run there
    stop = made().fit(train, epochs=6, batch_size=32, lr=1e-2, progress=False, validation_data=held,
                      callbacks=[lambda epoch, stats, prior: epoch == 2])
    assert len(stop.history) == len(stop.val_history) == 3
    es = vaecore.EarlyStopping(patience=1, min_delta=1e9)   # no epoch after the first improves by 1e9 nats
    q = made().fit(train, epochs=6, batch_size=32, lr=1e-2, progress=False, validation_data=held, callbacks=[es])
    assert len(q.history) == 2 and es.best_epoch == 0 and es.stopped_epoch == 1
    assert -np.mean(q.log_prob(held)) == q.val_history[0]     # the best epoch's weights are back
    # saved and loaded with the prior
    assert vaecore.AutoregressivePrior.load(_saved(p)).val_history == p.val_history


def _saved(p):
    import io
    f = io.BytesIO()
    p.save(f)
    f.seek(0)
    return f


def test_fit_refuses_bad_validation_data_and_callbacks():
    p = vaecore.AutoregressivePrior(4, hidden=(4,))
    codes = np.zeros((5, 2, 2), int)
    for bad, exc, match in [(np.zeros((3, 4), int), ValueError, r"validation_data must have shape \(n, 2, 2\)"),
                            (np.full((3, 2, 2), 4), ValueError, r"validation_data must hold code indices in \[0, 4\)"),
                            (np.zeros((0, 2, 2), int), ValueError, "validation_data must hold at least 1"),
                            (np.zeros((3, 2, 2)), TypeError, "validation_data must be an array of ints")]:
        with pytest.raises(exc, match=match):
            p.fit(codes, epochs=1, progress=False, validation_data=bad)
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be callable, got int 3"):
        p.fit(codes, epochs=1, progress=False, callbacks=[3])
    assert p.grid_shape is None   # refused before anything was built


def test_fit_shows_progress(capsys):
    vaecore.AutoregressivePrior(3, hidden=(4,)).fit(chain_codes(20, 3, (3,)), epochs=2)
    err = capsys.readouterr().err
    assert "fit AutoregressivePrior" in err and "training NLL" in err and "validation" not in err
    vaecore.AutoregressivePrior(3, hidden=(4,)).fit(chain_codes(20, 3, (3,)), epochs=2,
                                                    validation_data=chain_codes(5, 3, (3,)))
    assert "validation NLL" in capsys.readouterr().err


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("make", [lambda: vaecore.IndependentPrior(4), lambda: vaecore.AutoregressivePrior(4)])
def test_bad_codes_and_unfitted_use(make):
    p = make()
    for call in (lambda: p.log_prob([[0]]), lambda: p.nll_bits([[0]]), lambda: p.sample(2)):
        with pytest.raises(RuntimeError, match=r"not fitted; call fit\(codes\) first"):
            call()
    fit = (lambda c: p.fit(c)) if isinstance(p, vaecore.IndependentPrior) else (lambda c: p.fit(c, progress=False,
                                                                                               epochs=1))
    with pytest.raises(ValueError, match=r"codes must hold code indices in \[0, 4\) \(codebook_size 4\), got 4 "
                                         r"at index \(1, 0\)"):
        fit(np.array([[0, 1], [4, 2]]))
    with pytest.raises(ValueError, match=r"in \[0, 4\).*got -1"):
        fit(np.array([[0, -1]]))
    with pytest.raises(TypeError, match="codes must be an array of ints .*got dtype float64"):
        fit(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="got dtype bool"):
        fit(np.zeros((3, 2), bool))
    with pytest.raises(ValueError, match="at least 1 example"):
        fit(np.zeros((0, 2), int))
    with pytest.raises(ValueError, match="got a scalar"):
        fit(np.int64(3))
    fit(np.array([[0, 1], [3, 2]]))
    with pytest.raises(ValueError, match=r"codes must have shape \(n, 2\) .*got \(1, 3\)"):
        p.log_prob(np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="at least 1 example"):
        p.nll_bits(np.zeros((0, 2), int))
    assert p.log_prob(np.zeros((0, 2), int)).shape == (0,)
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        p.sample(-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        p.sample(2, seed=1.5)
    assert p.sample(0).shape == (0, 2)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: vaecore.IndependentPrior(0), ValueError, "codebook_size must be >= 1, got 0"),
    (lambda: vaecore.IndependentPrior(2.0), TypeError, "codebook_size must be an int"),
    (lambda: vaecore.IndependentPrior(4, smoothing=-1), ValueError, "smoothing must be a finite number >= 0"),
    (lambda: vaecore.IndependentPrior(4, smoothing=float("nan")), ValueError, "smoothing must be"),
    (lambda: vaecore.AutoregressivePrior(4, hidden=(0,)), ValueError, r"hidden\[0\] must be >= 1"),
    (lambda: vaecore.AutoregressivePrior(4, hidden=8), TypeError, "hidden must be a tuple of positive ints"),
    (lambda: vaecore.AutoregressivePrior(4, activation="gelu"), ValueError, "activation must be one of"),
    (lambda: vaecore.AutoregressivePrior(4, dtype="int8"), ValueError, "dtype must be 'float32' or 'float64'"),
    (lambda: vaecore.AutoregressivePrior(4, seed=-1), ValueError, "seed must be >= 0"),
    (lambda: vaecore.AutoregressivePrior(4).fit([[0]], epochs=-1), ValueError, "epochs must be >= 0"),
    (lambda: vaecore.AutoregressivePrior(4).fit([[0]], batch_size=0), ValueError, "batch_size must be >= 1"),
    (lambda: vaecore.AutoregressivePrior(4).fit([[0]], lr=0.0), ValueError, "lr must be a finite number > 0"),
    (lambda: vaecore.AutoregressivePrior(4).fit([[0]], progress="yes"), TypeError, "progress must be True or"),
    (lambda: vaecore.AutoregressivePrior(4).fit([[0]], seed=None), TypeError, "seed must be an int"),
    (lambda: vaecore.AutoregressivePrior(4097).fit(np.zeros((1, 64, 64), int)), ValueError,
     "one-hot grid, 4096 positions x codebook_size 4097, must have at most"),
])
def test_bad_hyperparameters(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_stack_refuses_bad_arrays():
    core = tiny_made("float64")._core
    P, D = core.num_params, core.input_dim
    x = np.zeros((2, D))
    with pytest.raises(TypeError, match="x must have dtype float64"):
        core.forward(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 9\), got \(3, 9\)"):
        core.backward(x, np.zeros((3, 9)))
    with pytest.raises(ValueError, match="dout must be finite"):
        core.backward(x, np.full((2, 9), np.inf))
    m, v, t = np.zeros(P), np.zeros(P), np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=rf"grads must be .*shape \({P},\)"):
        core.adam_step(np.zeros(P + 1), m, v, t, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="m must not share memory with v"):
        core.adam_step(np.zeros(P), m, m, t, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="grads must not share memory with params"):
        core.adam_step(core.params, m, v, t, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="Adam needs 0 <= beta1, beta2 < 1"):
        core.adam_step(np.zeros(P), m, v, t, 1e-3, 1.0, 0.999, 1e-8)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        core.adam_step(np.zeros(P), m, v, t, float("nan"), 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="invalid model configuration"):
        _core.Stack((4,), [(5, 2, 2, 2)], "float64", 0)   # a reshape of 4 values into 8


# ------------------------------------------------------------------ pickle and determinism
@pytest.mark.parametrize("make", [
    lambda: vaecore.IndependentPrior(K3, smoothing=0.2).fit(chain_codes(40, K3, (L3,))),
    lambda: tiny_made("float32", trained=True),
    lambda: vaecore.AutoregressivePrior(K3),           # unfitted
])
def test_pickle_round_trip(make):
    p = make()
    q = pickle.loads(pickle.dumps(p))
    assert repr(q) == repr(p)
    if p.grid_shape is None:
        with pytest.raises(RuntimeError, match="not fitted"):
            q.log_prob(ALL27)
        return
    np.testing.assert_array_equal(q.log_prob(ALL27), p.log_prob(ALL27))
    np.testing.assert_array_equal(q.sample(50, seed=3), p.sample(50, seed=3))


# ------------------------------------------------------------------ files
PRIORS_TO_SAVE = [
    lambda: vaecore.IndependentPrior(K3, smoothing=0.2).fit(chain_codes(40, K3, (L3,))),
    lambda: vaecore.IndependentPrior(4, smoothing=0.0).fit(np.zeros((5, 2, 3), dtype=np.int64)),   # -inf
    lambda: tiny_made("float32", trained=True),
    lambda: tiny_made("float64", hidden=(), activation="relu", trained=True),
    lambda: vaecore.IndependentPrior(K3),              # unfitted
    lambda: vaecore.AutoregressivePrior(K3, hidden=(7, 5), seed=4),
]


@pytest.mark.parametrize("make", PRIORS_TO_SAVE)
def test_save_and_load_round_trip(make, tmp_path):
    p = make()
    path = tmp_path / "prior.npz"
    p.save(path)
    for q in (type(p).load(path), vaecore.load(path), vaecore.load(str(path), with_optimizer=True)[0]):
        assert type(q) is type(p) and repr(q) == repr(p)
        assert q.config == p.config and q.grid_shape == p.grid_shape
        if p.grid_shape is None:
            with pytest.raises(RuntimeError, match="not fitted"):
                q.sample(1)
            continue
        grids = ALL27.reshape(-1, *p.grid_shape) if p.num_positions == L3 else p.sample(20, seed=1)
        np.testing.assert_array_equal(q.log_prob(grids), p.log_prob(grids))          # bitwise
        np.testing.assert_array_equal(q.sample(50, seed=3), p.sample(50, seed=3))
        if isinstance(p, vaecore.AutoregressivePrior):
            np.testing.assert_array_equal(q.params, p.params)
            assert q.history == p.history and q.params is not p.params
        else:
            np.testing.assert_array_equal(q.counts, p.counts)
            np.testing.assert_array_equal(q.log_probs, p.log_probs)
    assert vaecore.load(path, with_optimizer=True)[1] is None   # a prior's file holds no optimizer


def test_save_to_a_file_object_and_the_configuration():
    import io
    p = tiny_made("float64", hidden=(6,), activation="elu", seed=2, trained=True)
    f = io.BytesIO()
    p.save(f)
    f.seek(0)
    q = vaecore.AutoregressivePrior.load(f)
    assert q.config == {"codebook_size": K3, "hidden": [6], "activation": "elu", "dtype": "float64", "seed": 2}
    assert vaecore.AutoregressivePrior(**q.config).hidden == (6,)
    np.testing.assert_array_equal(q.log_prob(ALL27), p.log_prob(ALL27))
    # a loaded prior fits again as a fresh one of its configuration would
    codes = chain_codes(60, K3, (L3,), seed=5)
    q.fit(codes, epochs=2, batch_size=16, progress=False)
    r = vaecore.AutoregressivePrior(**q.config).fit(codes, epochs=2, batch_size=16, progress=False)
    np.testing.assert_array_equal(q.params, r.params)
    assert vaecore.IndependentPrior(5, smoothing=0.5).config == {"codebook_size": 5, "smoothing": 0.5}


def test_load_refuses_other_classes_and_damaged_files(tmp_path):
    from vaecore.io import _atomic_savez, _checked_load
    ind, made = tmp_path / "ind.npz", tmp_path / "made.npz"
    vaecore.IndependentPrior(K3).fit(ALL27).save(ind)
    tiny_made().save(made)
    with pytest.raises(ValueError, match="holds 'AutoregressivePrior', not an IndependentPrior"):
        vaecore.IndependentPrior.load(made)
    with pytest.raises(ValueError, match="holds an IndependentPrior, not a VAE: load it with "
                                         "vaecore.IndependentPrior.load"):
        vaecore.VAE.load(ind)
    model = tmp_path / "vae.npz"
    vaecore.VAE(3, hidden=(4,), latent_dim=2).save(model)
    with pytest.raises(ValueError, match="holds 'VAE', not an AutoregressivePrior"):
        vaecore.AutoregressivePrior.load(model)
    with pytest.raises(FileNotFoundError):
        vaecore.IndependentPrior.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="path must be"):
        vaecore.IndependentPrior(K3).save(3.5)
    # files whose checksum holds but whose contents do not fit (written by hand)
    meta, arrays = _checked_load(ind)

    def damaged(name, meta_change=None, **array_change):
        m, a = dict(meta), dict(arrays)
        m.update(meta_change or {})
        a.update(array_change)
        a = {k: v for k, v in a.items() if v is not None}
        path = tmp_path / name
        _atomic_savez(path, m, a)
        return path

    counts = arrays["counts"]
    for path in (damaged("neg.npz", counts=-counts), damaged("short.npz", counts=counts[:2]),
                 damaged("float.npz", counts=counts.astype(np.float64)), damaged("none.npz", counts=None),
                 damaged("uneven.npz", counts=counts + (np.arange(counts.size) == 0).reshape(counts.shape))):
        with pytest.raises(ValueError, match="counts are missing or do not fit"):
            vaecore.load(path)
    for change in ({"grid_shape": [-1]}, {"grid_shape": "ab"}, {"config": {"codebook_size": 0}},
                   {"config": {"codebook_size": 3, "colour": 1}}, {"config": None}):
        with pytest.raises(ValueError, match="configuration is damaged"):
            vaecore.load(damaged("meta.npz", change))
    meta, arrays = _checked_load(made)
    for path in (damaged("p32.npz", params=arrays["params"].astype(np.float32)),
                 damaged("p_short.npz", params=arrays["params"][:-1]), damaged("p_none.npz", params=None)):
        with pytest.raises(ValueError, match="parameters are missing or do not fit"):
            vaecore.load(path)
    with pytest.raises(ValueError, match="history is damaged"):
        vaecore.load(damaged("hist.npz", {"history": ["x"]}))
    with pytest.raises(ValueError, match="history is damaged"):
        vaecore.load(damaged("val_hist.npz", {"val_history": 3}))


def test_determinism():
    codes = chain_codes(200, 5, (2, 2), seed=3)

    def fit(seed=0, fit_seed=0):
        return vaecore.AutoregressivePrior(5, hidden=(16,), seed=seed).fit(codes, epochs=3, batch_size=32,
                                                                            progress=False, seed=fit_seed)
    a, b = fit(), fit()
    np.testing.assert_array_equal(a.params, b.params)
    assert a.history == b.history
    np.testing.assert_array_equal(a.sample(30, seed=1), b.sample(30, seed=1))
    assert not np.array_equal(a.sample(30, seed=1), a.sample(30, seed=2))
    assert not np.array_equal(fit(seed=1).params, a.params)
    assert not np.array_equal(fit(fit_seed=1).params, a.params)
    # fitting again starts afresh: the same result
    a.fit(codes, epochs=3, batch_size=32, progress=False)
    np.testing.assert_array_equal(a.params, b.params)
    i = vaecore.IndependentPrior(5).fit(codes)
    np.testing.assert_array_equal(i.sample(30, seed=4), i.sample(30, seed=4))


def test_stack_backward_over_many_rows_is_the_sum_over_parts():
    # the C core works in chunks of 256 rows: 600 rows span three, and each row's gradient adds up
    p = tiny_made("float64", hidden=(5,), seed=3)
    core = p._core
    rng = np.random.default_rng(0)
    x = p._onehot(rng.integers(0, K3, size=(600, L3)))
    dout = rng.normal(size=(600, 9))
    whole = core.backward(x, dout)
    parts = sum(core.backward(x[s:s + 100], dout[s:s + 100]) for s in range(0, 600, 100))
    np.testing.assert_allclose(whole, parts, rtol=1e-12, atol=1e-12)   # float64, sums in another order
    np.testing.assert_array_equal(core.forward(x)[300:400], core.forward(x[300:400]))
    # against the backward of out = tanh(x W1 + b1) W2 + b2 written out in NumPy (float64: summation order only)
    (_, o1, s1), (_, o2, s2) = core.layout()[0], core.layout()[2]
    W1, b1 = core.params[o1:o1 + 45].reshape(s1), core.params[o1 + 45:o1 + 50]
    W2, b2 = core.params[o2:o2 + 45].reshape(s2), core.params[o2 + 45:o2 + 54]
    h = np.tanh(x @ W1 + b1)
    np.testing.assert_allclose(core.forward(x), h @ W2 + b2, rtol=1e-12, atol=1e-12)
    dh = dout @ W2.T * (1 - h * h)
    want = np.concatenate([(x.T @ dh).ravel(), dh.sum(0), (h.T @ dout).ravel(), dout.sum(0)])
    np.testing.assert_allclose(whole, want, rtol=1e-12, atol=1e-12)
    # backward runs its own forward pass: a forward of other rows in between changes nothing
    core.forward(p._onehot(rng.integers(0, K3, size=(600, L3))))
    np.testing.assert_array_equal(core.backward(x, dout), whole)


def test_public_names_are_exported_and_documented():
    assert {"IndependentPrior", "AutoregressivePrior"} <= set(vaecore.__all__)
    assert vaecore.IndependentPrior is vaecore.priors.IndependentPrior
    for cls in (vaecore.IndependentPrior, vaecore.AutoregressivePrior):
        assert cls.__doc__ and len(cls.__doc__) > 200
        for name in ("fit", "log_prob", "nll_bits", "sample", "save", "load", "config"):
            assert getattr(cls, name).__doc__, (cls, name)
    for name in ("forward", "backward", "adam_step", "layout"):
        fn = getattr(_core.Stack, name)
        assert fn.__doc__ and fn.__text_signature__.startswith("($self"), name
    assert "Germain et al. 2015" in vaecore.priors.__doc__


def test_docstring_examples_run():
    import doctest
    assert doctest.testmod(vaecore.priors, raise_on_error=False).failed == 0
