"""fit's extras (issue "A learner's first hour", items 5, 6 and 8): what fit records besides the loss.

- Active latent units (Burda et al. 2016: Var_x(mu_k(x)) > 0.01) and the KL per dimension after every
  epoch, checked against NumPy on the final model; a warning when every unit is inactive at the end.
- Validation data: evaluated with the same noise every epoch, without changing the training by a bit.
- EarlyStopping, a learning-rate schedule, checkpoints that keep the new fields (and old ones without).
- The summary line fit leaves on stderr.

Tolerances: the per-dimension KL of a float64 model is compared with NumPy's at rtol 1e-12 (the same
formula on the same float64 mu and logvar, summed in a different order); everything else is bitwise.
"""
import json
import re
import warnings

import numpy as np
import pytest

import vaecore
from vaecore import train
from vaecore.io import _digest

X = vaecore.datasets.two_spirals(n=300, seed=0)[0]          # (300, 2)
X_VAL = vaecore.datasets.two_spirals(n=60, seed=1)[0]       # (60, 2)
RUN = dict(epochs=6, batch_size=32, beta=0.05, seed=3, progress=False)


def model(cls=vaecore.VAE, dtype="float64", seed=0, **kw):
    return cls(2, 2, hidden=(16, 16), dtype=dtype, seed=seed, **kw)


def reference_latents(m, x):
    """(active units, KL per dimension) of m on x, computed here in float64 NumPy."""
    mu, logvar = m.encode(x)
    mu = mu.astype(np.float64)
    active = int((mu.var(axis=0) > 0.01).sum())
    if logvar is None:
        return active, np.zeros(m.latent_dim)
    lv = logvar.astype(np.float64)
    return active, (-0.5 * (1 + lv - mu ** 2 - np.exp(lv))).mean(axis=0)


ALL_KEYS = ("loss", "recon", "kl", "beta", "lr", "active_units", "kl_per_dim", "val_loss", "val_recon", "val_kl")


def history_bytes(h):
    return {k: (getattr(h, k).dtype, getattr(h, k).shape, getattr(h, k).tobytes()) for k in ALL_KEYS}


# ------------------------------------------------------------ active units and KL per dimension
@pytest.mark.parametrize("cls", [vaecore.VAE, vaecore.AE])
def test_active_units_and_kl_per_dim_are_those_of_the_model_after_each_epoch(cls):
    m = model(cls)
    seen = []
    h = vaecore.fit(m, X, callbacks=[lambda e, s, mm: seen.append((s["active_units"], reference_latents(mm, X)))],
                    **RUN)
    assert h.active_units.dtype == np.int64 and h.active_units.shape == (6,)
    assert h.kl_per_dim.dtype == np.float64 and h.kl_per_dim.shape == (6, 2)
    for e, (stat, (active, kl)) in enumerate(seen):
        assert h.active_units[e] == stat == active
        np.testing.assert_allclose(h.kl_per_dim[e], kl, rtol=1e-12, atol=0)
    assert 0 < h.active_units[-1] <= 2   # the spirals need both units
    if cls is vaecore.AE:
        assert not h.kl_per_dim.any()      # an AE has no KL: zeros, like its hist.kl
    else:
        assert (h.kl_per_dim > 0).all()


def test_active_units_are_measured_on_2000_evenly_spaced_rows_of_large_data():
    big = vaecore.datasets.two_spirals(n=5000, seed=2)[0]
    m = model()
    h = vaecore.fit(m, big, **{**RUN, "epochs": 1, "batch_size": 500})
    rows = np.linspace(0, 4999, 2000).round().astype(int)
    active, kl = reference_latents(m, big[rows])
    assert h.active_units[0] == active
    np.testing.assert_allclose(h.kl_per_dim[0], kl, rtol=1e-12, atol=0)
    _, kl_all = reference_latents(m, big)
    assert not np.allclose(h.kl_per_dim[0], kl_all, rtol=1e-12, atol=0)   # not all 5000 rows


def collapsing_run(**kw):
    """A VAE on data of variance ~1e-6 at beta = 4: the KL wins and every unit goes inactive."""
    m = model()
    return m, dict(X=X * 1e-3, **{**RUN, "epochs": 20, "beta": 4.0, **kw})


def test_posterior_collapse_warns_once_naming_the_cures():
    m, run = collapsing_run()
    x = run.pop("X")
    with pytest.warns(UserWarning) as record:
        h = vaecore.fit(m, x, **run)
    assert len(record) == 1 and record[0].filename == __file__   # once, pointing at the call
    msg = str(record[0].message)
    assert msg.startswith("posterior collapse: none of the 2 latent units")
    for cure in ("lower beta", "KL warm-up", "likelihood='gaussian_learned'", "rescaled"):
        assert cure in msg, cure
    assert (h.active_units[-2:] == 0).all() and h.kl[-1] < 0.01


def scripted_latents(active_by_epoch):
    """A stand-in for train._latent_stats reporting the given active-unit counts epoch after epoch."""
    calls = iter(active_by_epoch)

    def fake(model, x):
        return next(calls), np.zeros(model.latent_dim)
    return fake


@pytest.mark.parametrize("active, warns", [
    ([2] * 18 + [0] * 2, True),      # the last 10% of 20 epochs: 2 epochs
    ([2] * 19 + [0], False),         # only the last epoch: not yet 10%
    ([0] * 18 + [1, 0], False),      # one unit came back within the last 10%
    ([2, 2, 0], True),               # 10% of 3 epochs is less than one: at least the last epoch
    ([1] * 20, False),
])
def test_the_warning_looks_at_the_last_tenth_of_the_epochs(monkeypatch, active, warns):
    monkeypatch.setattr(train, "_latent_stats", scripted_latents(active))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        h = vaecore.fit(model(), X, **{**RUN, "epochs": len(active)})
    assert h.active_units.tolist() == active
    assert [str(w.message)[:18] for w in record] == (["posterior collapse"] if warns else [])


def test_an_autoencoder_never_warns():
    m = model(vaecore.AE)
    h = vaecore.fit(m, X * 1e-3, **{**RUN, "epochs": 3})   # codes of variance << 0.01; pytest errors on a warning
    assert (h.active_units == 0).all() and not h.kl_per_dim.any()


def test_a_run_that_stops_with_an_error_does_not_warn(monkeypatch):
    monkeypatch.setattr(train, "_latent_stats", scripted_latents([0] * 5))

    def boom(e, s, m):
        if e == 3:
            raise RuntimeError("stop")
    with pytest.raises(RuntimeError, match="stop"):
        vaecore.fit(model(), X, callbacks=[boom], **RUN)


# ------------------------------------------------------------ validation data
def test_validation_changes_nothing_in_the_training():
    plain, val = model(), model()
    h0 = vaecore.fit(plain, X, **RUN)
    h1 = vaecore.fit(val, X, validation_data=X_VAL, **RUN)
    assert plain.params.tobytes() == val.params.tobytes() and plain.rng_state == val.rng_state
    for key in ("loss", "recon", "kl", "active_units", "kl_per_dim"):
        assert getattr(h0, key).tobytes() == getattr(h1, key).tobytes(), key
    assert h0.val_loss.shape == h0.val_recon.shape == h0.val_kl.shape == (0,)   # none without validation data
    assert h1.val_loss.shape == h1.val_recon.shape == h1.val_kl.shape == (6,)


def test_validation_uses_the_same_noise_every_epoch():
    # with a learning rate of 0 the model never changes, so fixed noise gives the same numbers in every
    # epoch; noise drawn afresh (from the model's generator) would not
    m = model()
    h = vaecore.fit(m, X, validation_data=X_VAL, optimizer=vaecore.SGD(m, 0.0), **RUN)
    assert len(set(h.val_loss.tolist())) == 1 and len(set(h.val_recon.tolist())) == 1
    assert h.val_kl[-1] == m.loss(X_VAL, eps=np.zeros((60, 2)))["kl"]   # the KL does not depend on the noise
    np.testing.assert_allclose(h.val_loss, h.val_recon + 0.05 * h.val_kl, rtol=1e-12)
    fresh = [m.loss(X_VAL, beta=0.05)["recon"] for _ in range(3)]   # the model's own noise: different each time
    assert len(set(fresh)) == 3
    # the noise is seeded by fit's seed: another seed, other noise; the same seed, the same
    again = vaecore.fit(m, X, validation_data=X_VAL, optimizer=vaecore.SGD(m, 0.0), **RUN)
    other = vaecore.fit(m, X, validation_data=X_VAL, optimizer=vaecore.SGD(m, 0.0), **{**RUN, "seed": 4})
    assert again.val_recon.tobytes() == h.val_recon.tobytes() and other.val_recon[0] != h.val_recon[0]


def test_validation_of_an_autoencoder_and_the_callback_stats():
    m = model(vaecore.AE)
    stats = []
    h = vaecore.fit(m, X, validation_data=X_VAL, callbacks=[lambda e, s, mm: stats.append(dict(s))], **RUN)
    assert not h.val_kl.any() and h.val_loss.tobytes() == h.val_recon.tobytes()
    assert h.val_loss[-1] == m.loss(X_VAL)["loss"]                     # no noise: exactly the final model's loss
    assert set(stats[0]) == {"loss", "recon", "kl", "beta", "lr", "seconds", "active_units", "val_loss",
                             "val_recon", "val_kl"}
    assert [s["val_loss"] for s in stats] == h.val_loss.tolist()


def test_images_validate_in_their_own_shape():
    m = vaecore.VAE(input_shape=(1, 4, 4), latent_dim=2, hidden=(8,), likelihood="bernoulli", seed=0)
    x = np.random.default_rng(0).random((40, 1, 4, 4)).round()
    h = vaecore.fit(m, x, validation_data=x[:10], **{**RUN, "epochs": 2})
    assert h.val_loss.shape == (2,) and np.isfinite(h.val_loss).all()


@pytest.mark.parametrize("val, exc, match", [
    (np.zeros((5, 3)), ValueError, r"validation_data: x must have shape \(n, 2\), got \(5, 3\)"),
    (np.full((5, 2), np.nan), ValueError, "validation_data: x must be finite: row 0, column 0"),
    (np.zeros((0, 2)), ValueError, "validation_data: x must have at least one row"),
    ("data", TypeError, "validation_data: x must hold real numbers"),
])
def test_bad_validation_data(val, exc, match):
    m = model()
    before = m.params.copy()
    with pytest.raises(exc, match=match):
        vaecore.fit(m, X, validation_data=val, **RUN)
    assert m.params.tobytes() == before.tobytes()


def test_bernoulli_validation_data_must_lie_in_the_unit_interval():
    m = model(likelihood="bernoulli")
    with pytest.raises(ValueError, match=r"validation_data: x must lie in \[0, 1\]"):
        vaecore.fit(m, X.clip(0, 1), validation_data=X_VAL * 3, **RUN)


def test_curves_draw_validation_dashed_in_the_training_colour():
    from vaecore import plot

    h = vaecore.fit(model(), X, validation_data=X_VAL, **RUN)
    fig = plot.curves(h)
    for ax in fig.axes[:3]:
        train_line, val_line = ax.lines
        assert val_line.get_linestyle() == "--" and train_line.get_linestyle() == "-"
        assert val_line.get_color() == train_line.get_color()
    np.testing.assert_array_equal(fig.axes[0].lines[1].get_ydata(), h.val_loss)
    plain = plot.curves(vaecore.fit(model(), X, **RUN))          # empty val_* arrays: no validation lines
    assert [len(ax.lines) for ax in plain.axes[:3]] == [1, 1, 1]


# ------------------------------------------------------------ EarlyStopping
class Params:
    """The one attribute EarlyStopping uses of a model."""

    def __init__(self):
        self.params = np.zeros(3)


def test_early_stopping_counts_patience_and_restores_the_best():
    es = vaecore.EarlyStopping(patience=2)
    m = Params()
    verdicts = []
    for e, v in enumerate([5.0, 4.0, 4.5, 3.9, 3.95, 4.0, 1.0]):
        m.params[:] = e
        verdicts.append(es(e, {"val_loss": v}, m))
        if verdicts[-1]:
            break
    assert verdicts == [False, False, False, False, False, True]
    assert (es.best, es.best_epoch, es.stopped_epoch) == (3.9, 3, 5)
    assert m.params.tolist() == [3.0, 3.0, 3.0]   # the parameters of epoch 3 are back


def test_early_stopping_min_delta_and_no_restore():
    es = vaecore.EarlyStopping(patience=1, min_delta=0.5, monitor="loss", restore_best=False)
    m = Params()
    assert es(0, {"loss": 5.0}, m) is False
    m.params[:] = 7
    assert es(1, {"loss": 4.6}, m) is True          # better by less than min_delta: no improvement
    assert m.params.tolist() == [7.0] * 3 and es.best_params is None and es.best == 5.0
    with pytest.raises(ValueError, match="no best parameters to restore"):
        es.restore(m)


def test_early_stopping_in_fit_stops_and_restores():
    # the monitored value is scripted (val_loss improves until epoch 2, then not); the parameters are real
    m = model()
    es = vaecore.EarlyStopping(patience=3)
    script = [3.0, 2.0, 1.0, 1.5, 1.2, 1.1, 0.5, 0.4]
    snaps = []
    h = vaecore.fit(m, X, validation_data=X_VAL,
                    callbacks=[lambda e, s, mm: snaps.append(mm.params.copy()),
                               lambda e, s, mm: es(e, {**s, "val_loss": script[e]}, mm)], **{**RUN, "epochs": 8})
    assert h.stopped_early and len(h) == 6 and es.best_epoch == 2 and es.stopped_epoch == 5
    assert m.params.tobytes() == snaps[2].tobytes() != snaps[5].tobytes()


def test_early_stopping_on_real_validation_loss():
    m = model()
    es = vaecore.EarlyStopping(patience=2)
    h = vaecore.fit(m, X, validation_data=X_VAL, optimizer=vaecore.SGD(m, 0.0), callbacks=[es], **RUN)
    assert h.stopped_early and len(h) == 3 and es.best_epoch == 0   # a frozen model never improves


def test_early_stopping_without_validation_data_says_so():
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*only with validation_data=.*'active_units'"):
        vaecore.fit(model(), X, callbacks=[vaecore.EarlyStopping(patience=2)], **RUN)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(patience=0), ValueError, "patience must be >= 1, got 0"),
    (dict(patience=2.0), TypeError, "patience must be an int, got float 2.0"),
    (dict(patience=2, min_delta=-0.1), ValueError, "min_delta must be a finite number >= 0.0, got -0.1"),
    (dict(patience=2, monitor=3), TypeError, "monitor must be a str .* got int 3"),
    (dict(patience=2, restore_best="yes"), TypeError, "restore_best must be True or False, got 'yes'"),
])
def test_early_stopping_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        vaecore.EarlyStopping(**kwargs)


# ------------------------------------------------------------ learning-rate schedule
def lr_schedule(e):
    return 3e-3 if e < 3 else 1e-3 / (e - 1)


def test_lr_schedule_sets_the_optimizer_lr_at_each_epoch_start():
    m = model()
    seen = []
    h = vaecore.fit(m, X, lr=lr_schedule, callbacks=[lambda e, s, mm: seen.append(s["lr"])], **RUN)
    expected = [lr_schedule(e) for e in range(6)]
    assert h.lr.tolist() == seen == expected and h.optimizer.lr == expected[-1]
    # the same as setting opt.lr by hand between epochs
    m2 = model()
    opt = vaecore.Adam(m2, lr=lr_schedule(0))

    def by_hand(e, s, mm):
        opt.lr = lr_schedule(e + 1)
    h2 = vaecore.fit(m2, X, optimizer=opt, callbacks=[by_hand], **RUN)
    assert m2.params.tobytes() == m.params.tobytes() and h2.loss.tobytes() == h.loss.tobytes()


def test_lr_schedule_drives_a_given_optimizer_and_a_constant_is_recorded():
    m = model()
    opt = vaecore.SGD(m, 0.5, momentum=0.9)
    h = vaecore.fit(m, X, optimizer=opt, lr=lambda e: 0.01 * (e + 1), **RUN)
    assert h.lr.tolist() == [0.01 * (e + 1) for e in range(6)] and opt.lr == 0.06
    h2 = vaecore.fit(model(), X, lr=2e-3, **RUN)
    assert h2.lr.tolist() == [2e-3] * 6


@pytest.mark.parametrize("lr, exc, match", [
    (lambda e: -1.0, ValueError, r"lr\(0\) must be a finite number >= 0.0, got -1.0"),
    (lambda e: "x", TypeError, r"lr\(0\) must be a real number, got str 'x'"),
    (lambda e: 1e-3 if e < 2 else float("nan"), ValueError, r"lr\(2\) must be a finite number"),
])
def test_lr_schedule_values_are_checked(lr, exc, match):
    m = model()
    opt = vaecore.Adam(m)
    with pytest.raises(exc, match=match):
        vaecore.fit(m, X, optimizer=opt, lr=lr, **RUN)
    assert opt.t == (20 if r"(2\)" in match else 0)   # the epochs before the bad value were trained


# ------------------------------------------------------------ checkpoints keep the new fields
def interrupt_at(epoch):
    def cb(e, stats, m):
        if e == epoch:
            raise KeyboardInterrupt
    return cb


FULL = dict(RUN, epochs=8, lr=lambda e: 3e-3 / (1 + e), beta=lambda e: 0.05 + 0.01 * e)


def test_resumed_run_is_bitwise_the_uninterrupted_one_new_fields_included(tmp_path):
    ref = model()
    ref_hist = vaecore.fit(ref, X, validation_data=X_VAL, **FULL)
    path = tmp_path / "ck.npz"
    m = model()
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(m, X, validation_data=X_VAL, checkpoint=path, callbacks=[interrupt_at(4)], **FULL)
    m2 = model(seed=9)
    h = vaecore.fit(m2, X, validation_data=X_VAL, checkpoint=path, resume=True, **FULL)
    assert m2.params.tobytes() == ref.params.tobytes() and m2.rng_state == ref.rng_state
    assert history_bytes(h) == history_bytes(ref_hist)
    with np.load(path) as f:
        assert f["fit_active_units"].dtype == np.int64 and f["fit_kl_per_dim"].shape == (8, 2)
        assert f["fit_val_loss"].tobytes() == ref_hist.val_loss.tobytes()


def test_resume_refuses_other_validation_data(tmp_path):
    path = tmp_path / "ck.npz"
    vaecore.fit(model(), X, validation_data=X_VAL, checkpoint=path, **{**RUN, "epochs": 2})
    for val in (None, X_VAL + 1):
        with pytest.raises(ValueError, match="was written for other validation_data"):
            vaecore.fit(model(), X, validation_data=val, checkpoint=path, resume=True, **RUN)


def test_validation_noise_survives_a_resume_without_seed(tmp_path):
    # seed=None: the validation noise comes from fresh entropy, which the checkpoint keeps
    path = tmp_path / "ck.npz"
    m = model()
    run = {**RUN, "seed": None}
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(m, X, validation_data=X_VAL, optimizer=vaecore.SGD(m, 0.0), checkpoint=path,
                    callbacks=[interrupt_at(2)], **run)
    h = vaecore.fit(m, X, validation_data=X_VAL, optimizer=vaecore.SGD(m, 0.0), checkpoint=path, resume=True, **run)
    assert len(h) == 6 and len(set(h.val_loss.tolist())) == 1


def strip_to_old_format(path):
    """Rewrite a checkpoint as vaecore wrote it before lr, active units, KL per dimension and validation."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k not in ("meta", "checksum", "fit_lr", "fit_active_units",
                                                         "fit_kl_per_dim")}
        meta = json.loads(f["meta"].tobytes())
    for key in ("val_sha256", "val_entropy"):
        del meta["fit"][key]
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    np.savez(path, meta=np.frombuffer(meta_bytes, np.uint8),
             checksum=np.frombuffer(_digest(meta_bytes, arrays).encode(), np.uint8), **arrays)


def test_an_old_checkpoint_still_resumes(tmp_path):
    run = {**RUN, "epochs": 8}
    ref = model()
    ref_hist = vaecore.fit(ref, X, **run)
    path = tmp_path / "ck.npz"
    m = model()
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(m, X, checkpoint=path, callbacks=[interrupt_at(4)], **run)
    strip_to_old_format(path)
    m2 = model()
    h = vaecore.fit(m2, X, checkpoint=path, resume=True, **run)
    assert m2.params.tobytes() == ref.params.tobytes()
    for key in ("loss", "recon", "kl", "beta", "lr"):
        assert getattr(h, key).tobytes() == getattr(ref_hist, key).tobytes(), key
    assert h.active_units.tolist() == [-1] * 5 + ref_hist.active_units[5:].tolist()   # unknown before
    assert np.isnan(h.kl_per_dim[:5]).all() and h.kl_per_dim[5:].tobytes() == ref_hist.kl_per_dim[5:].tobytes()
    assert h.val_loss.shape == (0,)


# ------------------------------------------------------------ the summary line
def summary_line(err):
    """The text after the progress bar's last carriage return: what stays on screen."""
    return err.split("\r")[-1]


def test_fit_leaves_one_summary_line(capsys):
    h = vaecore.fit(model(), X, validation_data=X_VAL, **{**RUN, "progress": True})
    err = capsys.readouterr().err
    line = summary_line(err)
    assert err.endswith("\n") and line.count("\n") == 1
    assert re.fullmatch(r"fit VAE: 6 epochs in \d+\.\d\d s, loss (\S+), recon (\S+), kl (\S+), val_loss (\S+), "
                        r"active units [0-2]/2\n", line), line
    assert f"loss {h.loss[-1]:.4g}," in line and f"val_loss {h.val_loss[-1]:.4g}," in line
    assert f"kl {h.kl[-1]:.4g}," in line


def test_summary_line_variants(capsys):
    vaecore.fit(model(vaecore.AE), X, callbacks=[lambda e, s, m: e == 1], **{**RUN, "progress": True})
    line = summary_line(capsys.readouterr().err)
    assert line.startswith("fit AE: 2 epochs in ") and "val_loss" not in line
    assert re.search(r", active units [0-2]/2 \(stopped early\)\n$", line), line
    vaecore.fit(model(), X, **{**RUN, "epochs": 0, "progress": True})
    assert re.fullmatch(r"fit VAE: 0 epochs in \d+\.\d\d s\n", summary_line(capsys.readouterr().err))
    vaecore.fit(model(), X, **RUN)                     # progress=False: nothing at all
    assert capsys.readouterr().err == ""


def test_no_summary_after_an_error(capsys):
    with pytest.raises(KeyboardInterrupt):
        vaecore.fit(model(), X, callbacks=[interrupt_at(1)], **{**RUN, "progress": True})
    assert "epochs in" not in capsys.readouterr().err


def test_history_repr_mentions_validation_and_active_units():
    h = vaecore.fit(model(), X, validation_data=X_VAL, **RUN)
    assert re.fullmatch(r"History\(epochs=6, loss=\S+, recon=\S+, kl=\S+, val_loss=\S+, active_units=\d, "
                        r"seconds=\S+\)", repr(h)), repr(h)


def test_new_public_names_are_exported_and_documented():
    assert {"load", "EarlyStopping"} <= set(vaecore.__all__)
    for obj in (vaecore.load, vaecore.EarlyStopping, vaecore.EarlyStopping.__call__, vaecore.EarlyStopping.restore,
                vaecore.VAE.__getstate__, vaecore.VAE.__setstate__):
        assert obj.__doc__ and obj.__doc__.strip(), obj
    for field in ("lr", "active_units", "kl_per_dim", "val_loss, val_recon, val_kl"):
        assert f"    {field} : ndarray" in vaecore.History.__doc__, field
    for arg in ("validation_data", "lr : float or callable"):
        assert arg in vaecore.fit.__doc__, arg


def _fits():
    """One tiny run of each fit: the VAE's, the GAN's, the VQ-VAE's and the autoregressive prior's."""
    codes = np.random.default_rng(0).integers(0, 4, size=(20, 2, 2))
    return {
        "vae": lambda cb: vaecore.fit(model(), X, callbacks=cb, **{**RUN, "epochs": 2}),
        "gan": lambda cb: vaecore.fit(vaecore.GAN(2, 2, generator_hidden=(8,), discriminator_hidden=(8,), seed=0),
                                      X, epochs=2, batch_size=64, progress=False, callbacks=cb),
        "vqvae": lambda cb: vaecore.fit(vaecore.VQVAE(2, codebook_size=8, code_dim=2, hidden=(16,), seed=0),
                                        X, epochs=2, batch_size=64, progress=False, callbacks=cb),
        "prior": lambda cb: vaecore.AutoregressivePrior(4, hidden=(4,)).fit(codes, epochs=2, progress=False,
                                                                           callbacks=cb),
    }


@pytest.mark.parametrize("kind", ["vae", "gan", "vqvae", "prior"])
def test_callbacks_may_be_none_one_callable_or_a_sequence(kind):
    run = _fits()[kind]
    run(None)                                     # no callbacks, as with ()
    seen = []
    run(lambda e, s, m: seen.append(e))           # one callable, not in a list
    assert seen == [0, 1]
    seen.clear()
    run((f for f in [lambda e, s, m: seen.append(e)]))   # any iterable
    assert seen == [0, 1]
    for bad, match in [(5, r"callbacks must be a sequence of callables, got int 5"),
                       ("abc", r"callbacks must be a sequence of callables, got str 'abc'"),
                       ([seen.append, None], r"callbacks\[1\] must be callable, got NoneType None")]:
        with pytest.raises(TypeError, match=match):
            run(bad)
