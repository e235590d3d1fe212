"""Model files (issue "A learner's first hour", item 7, and item 9's file objects).

- A saved model or checkpoint has the mode any new file of the process gets: 0o666 minus the umask
  (not tempfile's 0o600), also when it replaces an older file.
- AE.load of a VAE's file and VAE.load of an AE's refuse with ValueError; vaecore.load reads either.
- save and load take binary file objects (io.BytesIO, open(p, "wb")/"rb") as well as paths: the same
  archive, byte for byte; text-mode files are refused with TypeError.
"""
import io
import os
import stat

import numpy as np
import pytest

import vaecore
from vaecore import layers as L

X = vaecore.datasets.two_spirals(n=100, seed=0)[0]


def trained(cls=vaecore.VAE):
    m = cls(2, 2, hidden=(8,), seed=0)
    opt = vaecore.Adam(m, lr=3e-3)
    for i in range(3):
        m.train_step(X[32 * i:32 * i + 32], opt)
    return m, opt


def same_pair(a, b):
    (m, opt), (m2, opt2) = a, b
    return (type(m2) is type(m) and m2.config == m.config and m2.params.tobytes() == m.params.tobytes()
            and m2.rng_state == m.rng_state and repr(opt2) == repr(opt) and opt2.m.tobytes() == opt.m.tobytes()
            and opt2.v.tobytes() == opt.v.tobytes())


# ------------------------------------------------------------ the umask
@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027, 0o000])
def test_saved_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    m, opt = trained()
    path = tmp_path / "m.npz"
    m.save(path, optimizer=opt)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    path.chmod(0o600)
    m.save(path)                                       # a replaced file gets the mode of a new one
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    ck = tmp_path / "ck.npz"
    vaecore.fit(m, X, epochs=1, progress=False, checkpoint=ck)
    assert stat.S_IMODE(ck.stat().st_mode) == 0o666 & ~mask
    assert not list(tmp_path.glob(".vaecore-*"))


def test_saving_reads_the_umask_without_changing_it(tmp_path, umask, monkeypatch):
    umask(0o027)
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real(m))   # setting it is a race with threads
    trained()[0].save(tmp_path / "m.npz")
    monkeypatch.undo()
    assert calls == [] and os.umask(0o027) == 0o027


# ------------------------------------------------------------ the class in the file
@pytest.mark.parametrize("saved, loader", [(vaecore.VAE, vaecore.AE), (vaecore.AE, vaecore.VAE)])
def test_load_refuses_the_other_class(tmp_path, saved, loader):
    m, _ = trained(saved)
    path = tmp_path / "m.npz"
    m.save(path)
    a = {"VAE": "a VAE", "AE": "an AE"}
    with pytest.raises(ValueError, match=rf"m.npz' holds {a[saved.__name__]}, not {a[loader.__name__]}: load it "
                                         rf"with vaecore.{saved.__name__}.load or vaecore.load"):
        loader.load(path)
    assert type(saved.load(path)) is saved


@pytest.mark.parametrize("cls", [vaecore.VAE, vaecore.AE])
def test_vaecore_load_returns_what_the_file_holds(tmp_path, cls):
    m, opt = trained(cls)
    path = tmp_path / "m.npz"
    m.save(path, optimizer=opt)
    assert same_pair((m, opt), vaecore.load(path, with_optimizer=True))
    m2 = vaecore.load(path)
    assert type(m2) is cls and m2.params.tobytes() == m.params.tobytes()
    m.save(path)
    assert vaecore.load(path, with_optimizer=True)[1] is None


def test_vaecore_load_of_a_layer_model_and_a_checkpoint(tmp_path):
    m = vaecore.AE(input_shape=(1, 4, 4), latent_dim=2, encoder=[L.Flatten(), L.Linear(5), L.ReLU()],
                   decoder=[L.Linear(16), L.Reshape(1, 4, 4)], seed=0)
    ck = tmp_path / "ck.npz"
    h = vaecore.fit(m, np.random.default_rng(0).random((20, 16)), epochs=2, progress=False, checkpoint=ck)
    m2, opt2 = vaecore.load(ck, with_optimizer=True)
    assert type(m2) is vaecore.AE and m2.config == m.config and m2.params.tobytes() == m.params.tobytes()
    assert opt2.t == h.optimizer.t


def test_load_arguments(tmp_path):
    m, _ = trained()
    m.save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="with_optimizer must be True or False, got 1"):
        vaecore.load(tmp_path / "m.npz", with_optimizer=1)
    with pytest.raises(FileNotFoundError, match="no model file at"):
        vaecore.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError):
        vaecore.load(3)


# ------------------------------------------------------------ file objects
def test_save_and_load_through_bytesio(tmp_path):
    m, opt = trained()
    buf = io.BytesIO()
    m.save(buf, optimizer=opt)
    m.save(tmp_path / "m.npz", optimizer=opt)
    assert buf.getvalue() == (tmp_path / "m.npz").read_bytes()   # the same archive
    buf.seek(0)
    assert same_pair((m, opt), vaecore.VAE.load(buf, with_optimizer=True))
    buf.seek(0)
    assert same_pair((m, opt), vaecore.load(buf, with_optimizer=True))
    assert not buf.closed


def test_save_and_load_through_open_files(tmp_path):
    m, opt = trained(vaecore.AE)
    path = tmp_path / "two.bin"
    with open(path, "wb") as f:
        f.write(b"header")
        m.save(f, optimizer=opt)           # written at the position, file left open
        assert not f.closed
    with open(path, "rb") as f:
        assert f.read(6) == b"header"
        out = vaecore.AE.load(f, with_optimizer=True)
    assert same_pair((m, opt), out)


def test_file_object_errors():
    m, _ = trained()
    with pytest.raises(TypeError, match="path must be a path or a binary file object .* got a text-mode StringIO"):
        m.save(io.StringIO())
    with pytest.raises(TypeError, match="file must be a path or a binary file object .* got a text-mode StringIO"):
        vaecore.load(io.StringIO("x"))
    with pytest.raises(ValueError, match=r"'<BytesIO object>' is not a readable vaecore model file"):
        vaecore.VAE.load(io.BytesIO(b"junk"))
    buf = io.BytesIO()
    m.save(buf)
    buf.seek(0)
    with pytest.raises(ValueError, match=r"'<BytesIO object>' holds a VAE, not an AE"):
        vaecore.AE.load(buf)
    with pytest.raises(TypeError, match="path must be a str, bytes, os.PathLike or a binary file object, got int 3"):
        m.save(3)


def test_the_file_name_of_an_open_file_is_in_messages(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"junk")
    with open(path, "rb") as f, pytest.raises(ValueError, match="junk.npz' is not a readable vaecore model file"):
        vaecore.load(f)
