"""vaecore's file format: one ``.npz`` archive per model or checkpoint.

An archive holds the arrays a caller passes (``params``, the optimizer's
``opt_*`` state, ``fit``'s ``fit_*`` history) plus two uint8 arrays:

    meta       the JSON of a dict: ``magic`` (always "vaecore-model"),
               ``format_version``, the model's ``class`` and ``config``, ...
    checksum   the SHA-256 hex digest of the meta bytes and of every array
               (name, dtype, shape and bytes, in sorted name order)

Files are written to a temporary file in the same folder and renamed into
place, so an interrupted write leaves any earlier file intact. Reading checks
the magic, the version and the checksum before anything is used.
``VAE.save``/``VAE.load`` and ``vaecore.fit``'s checkpoints both go through
here. What goes into ``meta`` is theirs; this module only stores and checks it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

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


def _atomic_savez(path, meta, arrays):
    """Write meta (a JSON-able dict), arrays and their checksum to path, atomically."""
    path = os.fsdecode(os.fspath(path))
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    payload = dict(arrays)
    payload["meta"] = np.frombuffer(meta_bytes, dtype=np.uint8)
    payload["checksum"] = np.frombuffer(_digest(meta_bytes, arrays).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".vaecore-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
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

    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"no model file at {name!r}")
    try:
        with open(name, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise ValueError(f"{name!r} is not a readable vaecore model file (truncated or foreign): {e}") from None
    except Exception as e:  # zipfile's NotImplementedError, RuntimeError... on damaged headers
        raise ValueError(f"{name!r} is not a readable vaecore model file (damaged): "
                         f"{type(e).__name__}: {e}") from None
    if "meta" not in arrays or "checksum" not in arrays:
        raise ValueError(f"{name!r} is not a vaecore model file (no metadata)")
    meta_bytes = arrays.pop("meta").tobytes()
    checksum = arrays.pop("checksum").tobytes().decode("ascii", "replace")
    try:
        meta = json.loads(meta_bytes)
    except ValueError:
        raise ValueError(f"{name!r}: corrupted metadata") from None
    if not isinstance(meta, dict) or meta.get("magic") != _MAGIC:
        raise ValueError(f"{name!r} is not a vaecore model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{name!r} has format version {version!r}; this vaecore reads up to "
                         f"{FORMAT_VERSION}: upgrade vaecore")
    if _digest(meta_bytes, arrays) != checksum:
        raise ValueError(f"{name!r} is corrupted: its checksum does not match its contents")
    return meta, arrays
