"""vaecore's file format: one ``.npz`` archive per model or checkpoint.

An archive holds the arrays a caller passes (``params``, the optimizer's
``opt_*`` state, ``fit``'s ``fit_*`` history) plus two uint8 arrays:

    meta       the JSON of a dict: ``magic`` (always "vaecore-model"),
               ``format_version``, the model's ``class`` and ``config``, ...
    checksum   the SHA-256 hex digest of the meta bytes and of every array
               (name, dtype, shape and bytes, in sorted name order)

Files are written to a temporary file in the same folder and renamed into
place, so an interrupted write leaves any earlier file intact; the file's
mode follows the umask, as for any file the process creates. A binary file
object (``io.BytesIO``, ``open(path, "wb")``) takes the same archive,
written at its position (no atomicity: that is the caller's). Reading checks
the magic, the version and the checksum before anything is used.
Every model's and prior's ``save``/``load`` and ``vaecore.fit``'s checkpoints go through
here. What goes into ``meta`` is theirs; this module only stores and checks it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets

import numpy as np

__all__ = ["FORMAT_VERSION"]

#: version of the file format written by :meth:`VAE.save`
FORMAT_VERSION = 1
_MAGIC = "vaecore-model"


def _digest(meta_bytes, arrays):
    """SHA-256 hex digest of the meta bytes and of every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256(meta_bytes)
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype.str).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _is_file(obj):
    """True for a binary file object (something with read or write), which save/load take besides paths."""
    return hasattr(obj, "write") or hasattr(obj, "read")


def _name(file):
    """How messages name a path or a file object."""
    if _is_file(file):
        return repr(getattr(file, "name", f"<{type(file).__name__} object>"))
    return repr(os.fspath(file))


def _check_binary(file, name="file"):
    """A text-mode file object (open(..., "w"), io.StringIO) cannot hold an archive: TypeError."""
    if isinstance(file, io.TextIOBase):
        raise TypeError(f"{name} must be a path or a binary file object (opened with 'wb' or 'rb', or an "
                        f"io.BytesIO), got a text-mode {type(file).__name__}")


def _archive(meta, arrays):
    """The arrays np.savez writes: the caller's, the JSON meta and the checksum of both."""
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    payload = dict(arrays)
    payload["meta"] = np.frombuffer(meta_bytes, dtype=np.uint8)
    payload["checksum"] = np.frombuffer(_digest(meta_bytes, arrays).encode(), dtype=np.uint8)
    return payload


def _temp_file(folder):
    """(fd, path) of a new, empty file in folder, created with mode 0o666 so the kernel applies the umask.

    ``tempfile.mkstemp`` creates 0o600 files, which the rename would hand on to the model file; creating
    the file with 0o666 lets the process's umask (and a folder's default ACL) decide, as ``open(path, "w")``
    does, without reading the umask (``os.umask`` can only be read by setting it, a race with other threads).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".vaecore-{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder!r}")


def _atomic_savez(path, meta, arrays):
    """Write meta (a JSON-able dict), arrays and their checksum to path, atomically.

    ``path`` may also be a binary file object: the same archive is written into it at its current
    position (atomicity is the caller's business then).
    """
    if _is_file(path):
        _check_binary(path)
        np.savez(path, **_archive(meta, arrays))
        return
    payload = _archive(meta, arrays)
    _atomic_write(path, lambda f: np.savez(f, **payload))


def _atomic_write(path, write):
    """Call ``write(f)`` on a new binary file next to ``path`` and rename it into place (also used by sweeps).

    An interrupted write leaves any earlier file at ``path`` intact and no temporary file behind.
    """
    path = os.fsdecode(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = _temp_file(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (best effort: not every file system allows it)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _checked_load(path):
    """(meta, arrays) of a file written by :func:`_atomic_savez`, or ValueError/FileNotFoundError."""
    import zipfile

    if _is_file(path):
        _check_binary(path)
        name, opened = _name(path), lambda: contextlib.nullcontext(path)   # the caller's file stays open
    else:
        name = repr(os.fspath(path))
        if not os.path.exists(os.fspath(path)):
            raise FileNotFoundError(f"no model file at {name}")
        opened = lambda: open(os.fspath(path), "rb")   # noqa: E731
    try:
        with opened() as fh, np.load(fh, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise ValueError(f"{name} is not a readable vaecore model file (truncated or foreign): {e}") from None
    except Exception as e:  # zipfile's NotImplementedError, RuntimeError... on damaged headers
        raise ValueError(f"{name} is not a readable vaecore model file (damaged): "
                         f"{type(e).__name__}: {e}") from None
    if "meta" not in arrays or "checksum" not in arrays:
        raise ValueError(f"{name} is not a vaecore model file (no metadata)")
    meta_bytes = arrays.pop("meta").tobytes()
    checksum = arrays.pop("checksum").tobytes().decode("ascii", "replace")
    try:
        meta = json.loads(meta_bytes)
    except ValueError:
        raise ValueError(f"{name}: corrupted metadata") from None
    if not isinstance(meta, dict) or meta.get("magic") != _MAGIC:
        raise ValueError(f"{name} is not a vaecore model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{name} has format version {version!r}; this vaecore reads up to "
                         f"{FORMAT_VERSION}: upgrade vaecore")
    if _digest(meta_bytes, arrays) != checksum:
        raise ValueError(f"{name} is corrupted: its checksum does not match its contents")
    return meta, arrays


def _restore(m, meta, arrays, name):
    """Copy a checked archive's parameters and noise generator state into m, a model (or GAN) just
    built from the archive's configuration; ValueError when the parameters do not fit it."""
    params = arrays["params"]
    if params.shape != m.params.shape or params.dtype != m.params.dtype:
        raise ValueError(f"{name}: parameters of shape {params.shape} and dtype {params.dtype} do not fit "
                         f"the configuration")
    m.params[...] = params
    m.rng_state = tuple(int(s) for s in meta["rng_state"])


def _check_save_path(path):
    """What every model's save accepts: a str, bytes or os.PathLike path, or a binary file object."""
    if not _is_file(path) and not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str, bytes, os.PathLike or a binary file object, "
                        f"got {type(path).__name__} {path!r}")
    _check_binary(path, "path")


def _model_state(m, class_name, optimizers=()):
    """(meta, arrays) that every model's archive holds: the header, m's configuration, parameters and
    generator state, and for each (tag, optimizer) its settings (``optimizer`` or ``optimizer_<tag>``)
    and its arrays (``opt_<key>`` or ``opt<tag>_<key>``)."""
    arrays = {"params": np.array(m.params)}
    meta = {"magic": _MAGIC, "format_version": FORMAT_VERSION, "class": class_name, "config": m.config,
            "rng_state": [str(s) for s in m.rng_state]}
    for tag, opt in optimizers:
        meta["optimizer" + (f"_{tag}" if tag else "")] = opt._meta()
        for key, arr in opt._arrays().items():
            arrays[f"opt{tag}_{key}"] = np.array(arr)
    return meta, arrays


def _a(name):
    """'a VAE', 'an AE': the article as one reads the class name aloud."""
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"


def _load_class(path, class_name, flag, flag_name):
    """(meta, arrays) of a checked archive that must hold a class_name; flag (with_optimizer[s]) a bool."""
    if flag is not True and flag is not False:
        raise TypeError(f"{flag_name} must be True or False, got {flag!r}")
    meta, arrays = _checked_load(path)
    if meta.get("class") != class_name:
        raise ValueError(f"{_name(path)} holds {meta.get('class')!r}, not {_a(class_name)}: read it with vaecore.load")
    return meta, arrays
