"""Sweeps: grids of training runs on every local core, or on a Dask cluster.

Researchers train grids of models (beta x latent size x seed), because one run
says little: whether a beta-VAE disentangles depends on its seed as much as on
beta (Locatello et al. 2019, "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations"). :func:`sweep` runs
such a grid. Each run is small and independent of the others, so the runs go
to worker processes, one per core (``concurrent.futures.ProcessPoolExecutor``),
or to a Dask cluster (a ``dask.distributed.Client``; Dask is an optional
extra), or to any ``concurrent.futures.Executor``. vaecore schedules nothing
itself.

A run is one config: a dict of one grid point plus ``seed``. It is exactly
``fit(build(cfg), X, seed=cfg["seed"], **fit_args)``, where ``fit_args`` are the
sweep's fit arguments overridden by the config's keys that name one (``beta``,
``lr``, ``epochs``, ``batch_size``), so its result is bitwise the same wherever
and in whatever order it runs. The worker sends back a record and the model's
bytes; the calling process writes both into ``out/``, each atomically (a
temporary file renamed into place), so an interrupted sweep leaves whole files
or none. Calling the same sweep again reuses every record that checks out (it
parses, its checksum matches, it belongs to this run of this sweep, its model
file is intact) and redoes the others.

A record (``out/<run id>.json``) is a JSON object with the fields

==============  ==============================================================
format          "vaecore-sweep-record"
version         1
run_id          the file name stem: the config as key=value pairs and a hash
key             SHA-256 of what determines the run: config, the sweep's fit
                arguments, the data, and ``build`` and ``metrics`` by name
                (after changing their code, use a new ``out``)
config          the config (grid point + seed)
status          "ok" or "failed"
error           None, or "ExceptionType: message" of a failed run
history         the ``History`` arrays as lists (loss, recon, kl, beta, lr,
                active_units, kl_per_dim, and val_* with validation data);
                no per-epoch times. None for a failed run
metrics         final loss, recon, kl, active_units; val_elbo (mean ELBO of
                the validation data, one sample of z drawn with the run's
                seed; VAEs only) with validation data; then ``metrics``'s
warnings        the warnings the run raised, as "Category: message"
model           the model file's name in ``out/`` (None for a failed run)
model_sha256    SHA-256 of the model's content (configuration, parameters,
                generator state), the same digest its file is checked with
checksum        SHA-256 of the record without seconds, host and checksum
seconds         wall-clock time of the run in its worker
host            the worker's host name
==============  ==============================================================

Two executions of the same sweep give records equal in every field but
``seconds`` and ``host`` (see :data:`COMPARED_FIELDS`).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import inspect
import io
import itertools
import json
import math
import os
import pickle
import re
import socket
import sys
import time
import warnings
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np

from ._checks import SEED_MAX, check_int, check_real, check_seed
from .io import _atomic_write, _checked_load, _digest
from .model import AE, VAE
from .train import _HoldInterrupt, fit

__all__ = ["sweep", "sweep_frame", "ModelBuilder", "COMPARED_FIELDS", "RECORD_FIELDS"]

RECORD_FORMAT, RECORD_VERSION = "vaecore-sweep-record", 1
#: every field of a record, in the order written
RECORD_FIELDS = ("format", "version", "run_id", "key", "config", "status", "error", "history", "metrics",
                 "warnings", "model", "model_sha256", "checksum", "seconds", "host")
#: the fields that are bitwise the same however and wherever a sweep runs (all but seconds and host)
COMPARED_FIELDS = tuple(f for f in RECORD_FIELDS if f not in ("seconds", "host"))
_UNCHECKED = ("seconds", "host", "checksum")   # what the record's checksum leaves out

#: fit arguments a sweep passes on; the first four may also be grid keys
FIT_ARGS = ("epochs", "batch_size", "lr", "beta", "validation_data")
_GRID_FIT_ARGS = FIT_ARGS[:4]
_SWEEP_OWNS = ("model", "X", "seed", "progress", "optimizer", "checkpoint", "checkpoint_every", "resume",
               "callbacks")
_DEFAULT_METRICS = ("loss", "recon", "kl", "active_units", "val_elbo")


class ModelBuilder:
    """A picklable ``build`` for :func:`sweep`: config -> a new VAE or AE.

    ``ModelBuilder("VAE", input_dim=64, latent_dim=10, hidden=(256, 256))(cfg)``
    is ``VAE(input_dim=64, latent_dim=10, hidden=(256, 256), seed=cfg["seed"])``,
    where any config key that names an argument of the model's constructor
    (``latent_dim``, ``likelihood``, ``activation``, ...) replaces the value
    given here. Worker processes must import ``build``, so a function defined
    in a notebook or an interactive session cannot be one (Dask's cloudpickle
    can send it, local processes cannot); this class can.

    Parameters
    ----------
    kind : {"VAE", "AE"}, default "VAE"
    **kwargs
        Arguments of ``VAE(...)`` / ``AE(...)`` (all but ``seed``).
    """

    def __init__(self, kind="VAE", /, **kwargs):
        if kind not in ("VAE", "AE"):
            raise ValueError(f"kind must be 'VAE' or 'AE', got {kind!r}")
        self.kind = kind
        allowed = self._arguments()
        for key in kwargs:
            if key not in allowed or key == "seed":
                raise TypeError(f"ModelBuilder: {key!r} is not an argument of {kind}() that a config may "
                                f"not set; the arguments are {sorted(allowed - {'seed'})}")
        self.kwargs = kwargs

    def _arguments(self):
        return set(inspect.signature(VAE.__init__).parameters) - {"self"}

    def __call__(self, cfg):
        allowed = self._arguments()
        kwargs = dict(self.kwargs, **{k: v for k, v in cfg.items() if k in allowed})
        return (VAE if self.kind == "VAE" else AE)(**kwargs)

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"ModelBuilder({self.kind!r}{args})"


# ---------------------------------------------------------------- checks, configs and names

def _scalar(value, name):
    """A grid value as a JSON scalar (bool, int, float, str or None), numpy scalars converted."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return value
    raise TypeError(f"{name} must be a bool, int, float, str or None (a config is stored as JSON), "
                    f"got {type(value).__name__} {value!r}")


def _check_fit_value(key, value, name):
    """Check a fit argument's value the way fit will, before anything runs."""
    if key in ("epochs", "batch_size"):
        check_int(value, name)
    elif key in ("lr", "beta") and not callable(value):
        check_real(value, name)


def _configs(grid, seeds):
    """The runs' configs: the grid's cartesian product (in key order) x seeds."""
    if grid is None:
        grid = {}
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of lists (key -> values), got {type(grid).__name__}")
    keys, columns = [], []
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"grid keys must be non-empty str, got {key!r}")
        if key == "seed":
            raise ValueError("grid may not hold 'seed': give the seeds as seeds=")
        if key in _SWEEP_OWNS or key == "validation_data":
            raise ValueError(f"grid key {key!r} names a fit argument that a config cannot set; the fit "
                             f"arguments a grid may set are {_GRID_FIT_ARGS}")
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
            raise TypeError(f"grid[{key!r}] must be a list of values, got {type(values).__name__} {values!r}")
        values = [_scalar(v, f"grid[{key!r}][{i}]") for i, v in enumerate(values)]
        if not values:
            raise ValueError(f"grid[{key!r}] is empty: every grid key needs at least one value")
        if len({json.dumps(v) for v in values}) != len(values):
            raise ValueError(f"grid[{key!r}] repeats a value: {values}")
        for i, v in enumerate(values):
            if key in _GRID_FIT_ARGS:
                _check_fit_value(key, v, f"grid[{key!r}][{i}]")
        keys.append(key)
        columns.append(values)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a list of ints (or a range), got {type(seeds).__name__} {seeds!r}")
    seeds = [check_seed(_scalar(s, f"seeds[{i}]"), f"seeds[{i}]", high=SEED_MAX) for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds is empty: a sweep needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeats a value: {seeds}")
    return [dict(zip(keys, point), seed=s) for point in itertools.product(*columns) for s in seeds]


def _run_id(cfg):
    """The file name stem of a run: readable key=value pairs and a hash of the exact config."""
    text = ",".join(f"{k}={v}" for k, v in cfg.items())
    text = re.sub(r"[^A-Za-z0-9.=,+-]", "_", text)[:120]
    return f"{text}.{_sha(_canonical(cfg))[:8]}"


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _sha(text):
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _data_sha(X):
    a = np.ascontiguousarray(X)
    return _sha(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def _describe(value):
    """A JSON-able description of a fit argument or a function, for the record key."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return "array " + _data_sha(value)
    if isinstance(value, ModelBuilder):
        return repr(value)
    name = getattr(value, "__qualname__", type(value).__qualname__)
    return f"{getattr(value, '__module__', '?')}.{name}"


def _check_picklable(obj, name):
    try:
        pickle.dumps(obj)
    except Exception as e:
        raise TypeError(f"{name} must be picklable (runs go to other processes): a module-level function, "
                        f"not a lambda or a nested function; pickling it failed with "
                        f"{type(e).__name__}: {e}") from None


def _check_importable(obj, name):
    """Local worker processes import functions by name: one from __main__ of a notebook cannot be."""
    main = sys.modules.get("__main__")
    if getattr(obj, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise TypeError(f"{name} {getattr(obj, '__qualname__', obj)!r} is defined in an interactive session "
                        f"(a notebook or the REPL), which worker processes cannot import: put it in a .py "
                        f"module, use vaecore.ModelBuilder, or pass a dask.distributed.Client as executor")


# ---------------------------------------------------------------- one run (in a worker)

def _default_metrics(model, hist, X_val, seed):
    out = {"loss": float(hist.loss[-1]), "recon": float(hist.recon[-1]), "kl": float(hist.kl[-1]),
           "active_units": int(hist.active_units[-1])}
    if X_val is not None and model._variational:
        out["val_elbo"] = float(np.mean(model.elbo(X_val, k=1, seed=seed)))
    return out


def _history(hist):
    out = {}
    for key in ("loss", "recon", "kl", "beta", "lr", "active_units", "kl_per_dim", "val_loss", "val_recon",
                "val_kl"):
        value = getattr(hist, key)
        if key.startswith("val_") and not len(value):
            continue
        out[key] = value.tolist()
    return out


def _finish(record):
    """Set the record's checksum and put the fields in RECORD_FIELDS order."""
    record["checksum"] = _sha(_canonical({k: v for k, v in record.items() if k not in _UNCHECKED}))
    return {k: record[k] for k in RECORD_FIELDS}


# In the worker processes of sweep's own pool (set by its initializer): this is one, and a Ctrl-C has
# stopped a run here. The pool has already queued the next runs for its workers; once a worker has been
# interrupted they are not started, so the sweep stops when the runs in flight have, not after the queued too.
_in_pool_worker = False
_worker_interrupted = False


def _init_pool_worker():
    global _in_pool_worker
    _in_pool_worker = True
    from ._core import set_num_threads
    set_num_threads(1)


def _run(task, X, X_val):
    """One run, in a worker: (record, model file bytes or None). The calling process writes both."""
    global _worker_interrupted
    if _worker_interrupted:
        raise KeyboardInterrupt("not started: Ctrl-C stopped a run in this worker")
    try:
        return _run_one(task, X, X_val)
    except KeyboardInterrupt:
        _worker_interrupted = _in_pool_worker   # elsewhere (this process, a user's executor) nothing is kept
        raise


def _run_one(task, X, X_val):
    """_run's work: build, fit, metrics, the record and the model's bytes."""
    build, cfg, fit_args, metrics, run_id, key, threads = task
    if threads is not None:
        from ._core import set_num_threads
        set_num_threads(threads)
    start = time.perf_counter()
    record = dict(format=RECORD_FORMAT, version=RECORD_VERSION, run_id=run_id, key=key, config=cfg,
                  status="ok", error=None, history=None, metrics={}, warnings=[], model=None, model_sha256=None)
    model_bytes = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = build(dict(cfg))
            if not isinstance(model, VAE):
                raise TypeError(f"build must return a vaecore.VAE or vaecore.AE, got {type(model).__name__}")
            args = {k: cfg.get(k, v) for k, v in fit_args.items()}
            for k in _GRID_FIT_ARGS:
                if k in cfg and k not in args:
                    args[k] = cfg[k]
            hist = fit(model, X, seed=cfg["seed"], progress=False, validation_data=X_val, **args)
            values = _default_metrics(model, hist, None if X_val is None else model._x(X_val), cfg["seed"])
            if metrics is not None:
                extra = metrics(model, dict(cfg))
                if not isinstance(extra, Mapping):
                    raise TypeError(f"metrics must return a dict of numbers, got {type(extra).__name__}")
                for name, value in extra.items():
                    if not isinstance(name, str) or name in values:
                        raise ValueError(f"metrics returned the key {name!r}, which is not a str or is one of "
                                         f"the default metrics {sorted(values)}")
                    values[name] = _scalar(value, f"metrics()[{name!r}]")
            meta, arrays = model._state()
            buf = io.BytesIO()
            model.save(buf)
            model_bytes = buf.getvalue()
            record.update(history=_history(hist), metrics=values, model=run_id + ".npz",
                          model_sha256=_digest(json.dumps(meta, sort_keys=True).encode(), arrays))
        except Exception as e:   # the run failed (divergence, a bad config): record it, the sweep goes on
            record.update(status="failed", error=f"{type(e).__name__}: {e}")
            model_bytes = None
    record["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    record["seconds"] = time.perf_counter() - start
    record["host"] = socket.gethostname()
    return _finish(record), model_bytes


# ---------------------------------------------------------------- records on disk

def _write_json(path, record):
    _atomic_write(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def _load_record(out, run_id, key):
    """The record of this run in ``out`` if it is whole and belongs to this sweep, else None."""
    path = os.path.join(out, run_id + ".json")
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if (not isinstance(record, dict) or tuple(record) != RECORD_FIELDS or record["format"] != RECORD_FORMAT
            or record["version"] != RECORD_VERSION or record["key"] != key or record["run_id"] != run_id
            or record["status"] not in ("ok", "failed")):
        return None
    try:
        if _finish(dict(record))["checksum"] != record["checksum"]:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    if record["status"] == "ok":
        if record["model"] != run_id + ".npz":
            return None
        try:
            meta, arrays = _checked_load(os.path.join(out, record["model"]))
        except (OSError, ValueError):
            return None
        if _digest(json.dumps(meta, sort_keys=True).encode(), arrays) != record["model_sha256"]:
            return None
    return record


def _lost(cfg, run_id, key, error):
    """The record of a run whose worker never answered (not written: calling the sweep again redoes it)."""
    record = dict(format=RECORD_FORMAT, version=RECORD_VERSION, run_id=run_id, key=key, config=cfg,
                  status="failed", error=f"not run: {type(error).__name__}: {error}", history=None, metrics={},
                  warnings=[], model=None, model_sha256=None, seconds=0.0, host=None)
    return _finish(record)


# ---------------------------------------------------------------- executors

def _is_dask_client(executor):
    return type(executor).__name__ == "Client" and type(executor).__module__.startswith("distributed")


def _local_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- the sweep

def sweep(build, X, grid=None, seeds=(0,), *, out, metrics=None, executor=None, retries=3, progress=True,
          **fit_args):
    """Train one model per config of ``grid`` x ``seeds``, in parallel; write and return their records.

    A run is ``fit(build(cfg), X, seed=cfg["seed"], **fit_args)``, where cfg
    is one grid point plus ``seed`` and fit_args are this call's fit
    arguments, overridden by the config's keys that name one. See the module
    docstring for the record format.

    Parameters
    ----------
    build : callable
        ``build(cfg) -> VAE or AE``; picklable and importable by the workers
        (a module-level function, or a :class:`ModelBuilder`).
    X : array_like, shape (n, input_dim)
        The training data of every run.
    grid : dict of str -> list, optional
        Values for each key; the runs are the cartesian product, in key
        order. Values are bool, int, float, str or None. Keys naming a fit
        argument (``epochs``, ``batch_size``, ``lr``, ``beta``) set it for
        the run; every key reaches ``build``.
    seeds : iterable of int, default (0,)
        One run per seed for every grid point; ``cfg["seed"]``.
    out : str or os.PathLike
        The folder for the records and model files (created). Calling the
        sweep again with the same ``out`` reuses the finished runs.
    metrics : callable, optional
        ``metrics(model, cfg) -> dict of str -> number``, evaluated in the
        worker after training, stored next to the default metrics.
    executor : None, dask.distributed.Client or concurrent.futures.Executor
        None: a process per local core (``ProcessPoolExecutor``, 'spawn'
        start method, one vaecore thread each). A Dask client: one task per
        run, with ``retries`` retries, the data scattered once. Any other
        executor: used as it is (left open).
    retries : int, default 3
        Dask only: how often a task is retried when it raises (a lost worker
        is rescheduled by Dask itself).
    progress : bool, default True
        A progress bar over runs and, at the end, a summary line on stderr
        naming the failed runs.
    **fit_args
        ``epochs``, ``batch_size``, ``lr``, ``beta`` and ``validation_data``,
        as for :func:`vaecore.fit` (callable schedules must be picklable).

    Returns
    -------
    list of dict
        One record per run, in config order (grid order, seeds innermost).
        A run whose worker was lost (e.g. a killed process pool) appears as
        a failed record whose error starts with "not run:"; it is not
        written, so calling the sweep again redoes it.

    Raises
    ------
    TypeError, ValueError
        Before anything runs: an unknown fit argument, an empty or malformed
        grid, a bad value of a fit argument, an unpicklable ``build``,
        ``metrics`` or schedule.
    KeyboardInterrupt
        On Ctrl-C (in the main thread, over Python's default handler), once
        the results already back are written; the runs not yet handed to a
        worker are cancelled. The worker processes of sweep's own pool
        (``executor=None``) that a Ctrl-C reaches (a terminal's reaches them
        all) stop their runs and start none of those queued for them; a
        Ctrl-C to this process alone waits for those runs. Calling the sweep
        again reuses what was written.
    """
    if not callable(build):
        raise TypeError(f"build must be a callable (config dict -> model), got {type(build).__name__}")
    if metrics is not None and not callable(metrics):
        raise TypeError(f"metrics must be None or a callable (model, cfg) -> dict, got {type(metrics).__name__}")
    for key, value in fit_args.items():
        if key in _SWEEP_OWNS:
            raise ValueError(f"sweep sets fit's {key!r} itself (seed comes from seeds=); the fit arguments it "
                             f"takes are {FIT_ARGS}")
        if key not in FIT_ARGS:
            raise TypeError(f"sweep got an unknown argument {key!r}; the fit arguments it takes are {FIT_ARGS}")
        _check_fit_value(key, value, key)
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a str or os.PathLike (a folder), got {type(out).__name__}")
    retries = check_int(retries, "retries", low=0)
    if progress is not True and progress is not False:
        raise TypeError(f"progress must be True or False, got {progress!r}")
    configs = _configs(grid, seeds)
    X = np.asarray(X)
    X_val = fit_args.pop("validation_data", None)
    X_val = None if X_val is None else np.asarray(X_val)
    dask = _is_dask_client(executor)
    if executor is not None and not dask and not isinstance(executor, cf.Executor):
        raise TypeError(f"executor must be None, a dask.distributed.Client or a concurrent.futures.Executor, "
                        f"got {type(executor).__name__}")
    _check_picklable(build, "build")
    if metrics is not None:
        _check_picklable(metrics, "metrics")
    for key, value in fit_args.items():
        if callable(value):
            _check_picklable(value, key)
    if executor is None:
        for obj, name in ((build, "build"), (metrics, "metrics"), *((v, k) for k, v in fit_args.items())):
            _check_importable(obj, name)

    base = dict(fit_args={k: _describe(v) for k, v in fit_args.items()}, data=_data_sha(X),
                validation=None if X_val is None else _data_sha(X_val), build=_describe(build),
                metrics=_describe(metrics))
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    runs = []
    for cfg in configs:
        run_id = _run_id(cfg)
        runs.append((cfg, run_id, _sha(_canonical(dict(base, config=cfg)))))
    records = [_load_record(out, run_id, key) for cfg, run_id, key in runs]
    todo = [i for i, r in enumerate(records) if r is None]
    reused = len(runs) - len(todo)
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(runs), initial=reused, desc="sweep", unit="run", leave=False)
    try:
        if todo:
            _execute(runs, todo, records, out, build, X, X_val, fit_args, metrics, executor, dask, retries, bar)
    finally:
        if bar is not None:
            bar.close()
    if progress:
        print(_summary(records, reused, time.perf_counter() - start), file=sys.stderr, flush=True)
    return records


def _execute(runs, todo, records, out, build, X, X_val, fit_args, metrics, executor, dask, retries, bar):
    """Submit the runs ``todo`` to the executor and write each result as it comes back."""
    threads = None
    if executor is None:
        import multiprocessing

        ex = cf.ProcessPoolExecutor(max_workers=min(_local_cores(), len(todo)),
                                    mp_context=multiprocessing.get_context("spawn"), initializer=_init_pool_worker)
        close = lambda ok: ex.shutdown(wait=True, cancel_futures=not ok)   # noqa: E731
        data = (X, X_val)
    elif dask:
        ex = executor.get_executor(retries=retries, pure=False)
        close = lambda ok: ex.shutdown(wait=ok)   # noqa: E731   (wait=False cancels)
        data = (executor.scatter(X, broadcast=True, hash=False),
                None if X_val is None else executor.scatter(X_val, broadcast=True, hash=False))
        threads = 1   # a Dask worker runs one task per thread
    else:
        ex, close, data = executor, None, (X, X_val)
    futures = {}
    ok = False
    try:
        for i in todo:
            cfg, run_id, key = runs[i]
            task = (build, cfg, fit_args, metrics, run_id, key, threads)
            futures[ex.submit(_run, task, *data)] = i
        # Ctrl-C only sets a flag here, read between results: raised at an arbitrary bytecode it could land
        # in a finalizer the pool runs in this thread, where CPython drops it, or between a record's writes.
        with _HoldInterrupt() as interrupt:
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
                stopped = [not _collect(fut, runs[futures[fut]], futures[fut], records, out, bar)
                           for fut in sorted(done, key=futures.get)]
                if any(stopped):   # Ctrl-C reached a worker: the batch's other results are written, then it stops
                    raise KeyboardInterrupt
                interrupt.check()
        ok = True
    finally:
        if not ok:
            for fut in futures:
                fut.cancel()
        if close is not None:
            close(ok)


def _collect(fut, run, i, records, out, bar):
    """Write the result of the finished future ``fut`` (run ``i``) into ``out/`` and ``records``; False if
    Ctrl-C stopped the run in its worker (nothing is written)."""
    cfg, run_id, key = run
    try:
        record, model_bytes = fut.result()
    except KeyboardInterrupt:
        return False
    except Exception as e:   # the worker was lost, not the run: report it, write nothing
        records[i] = _lost(cfg, run_id, key, e)
    else:
        if model_bytes is not None:
            _atomic_write(os.path.join(out, record["model"]), lambda f: f.write(model_bytes))
        _write_json(os.path.join(out, run_id + ".json"), record)
        records[i] = json.loads(json.dumps(record))   # what the file holds, as a reused record would be
    if bar is not None:
        bar.update(1)
        failed = sum(r is not None and r["status"] != "ok" for r in records)
        if failed:
            bar.set_postfix(failed=failed, refresh=False)
    return True


def _summary(records, reused, seconds):
    """The line ``sweep`` leaves on screen: counts, time, and the failed runs by name."""
    failed = [r for r in records if r["status"] != "ok"]
    line = (f"sweep: {len(records)} runs ({reused} reused from out/, {len(records) - reused} run) "
            f"in {seconds:.1f} s, {len(failed)} failed")
    for r in failed:
        line += f"\n  failed {r['run_id']}: {r['error']}"
    return line


def sweep_frame(runs):
    """The records of :func:`sweep` as a pandas DataFrame, one row per run.

    Columns: the config's keys, ``status``, ``error``, every metric, ``seconds``,
    ``host`` and ``run_id``. Needs pandas (``pip install pandas``).
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("sweep_frame needs pandas: pip install pandas") from None
    if isinstance(runs, Mapping) or not hasattr(runs, "__iter__"):
        raise TypeError(f"runs must be the list of records sweep returned, got {type(runs).__name__}")
    rows = []
    for i, r in enumerate(runs):
        if not isinstance(r, Mapping) or not {"config", "status", "metrics"} <= set(r):
            raise TypeError(f"runs[{i}] is not a sweep record (a dict with config, status and metrics)")
        row = dict(r["config"])
        row.update(status=r["status"], error=r.get("error"))
        row.update(r["metrics"])
        row.update(seconds=r.get("seconds"), host=r.get("host"), run_id=r.get("run_id"))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- python -m vaecore sweep CONFIG.toml

#: the tables and keys a sweep's TOML file may hold (see ``python -m vaecore sweep --help`` and the README)
TOML_KEYS = {"": ("out", "seeds", "build", "metrics", "data", "validation", "model", "fit", "grid"),
             "data": ("dataset", "args", "path"), "validation": ("dataset", "args", "path")}

TOML_HELP = """\
A sweep's TOML file (paths are relative to the file's folder):

    out = "sweeps/digits"        # folder of the records and model files
    seeds = [0, 1, 2, 3, 4]
    build = "mymodule:build"     # optional: an importable function cfg -> model, else [model]
    metrics = "mymodule:metrics" # optional: (model, cfg) -> dict of numbers

    [data]                       # a vaecore.datasets loader (its first array) or a .npy file
    dataset = "digits"
    args = { split = "train" }   # or: path = "X.npy"

    [validation]                 # optional, same form: held-out data for val_* and val_elbo
    dataset = "digits"
    args = { split = "test" }

    [model]                      # without build=: vaecore.ModelBuilder(kind, **the rest);
    kind = "VAE"                 # input_dim defaults to the data's width
    latent_dim = 10
    hidden = [256, 256]
    likelihood = "bernoulli"

    [fit]                        # epochs, batch_size, lr, beta (numbers)
    epochs = 50
    batch_size = 128

    [grid]                       # one list per key; keys naming a fit or model argument set it
    beta = [0.5, 1, 2, 4, 8]
    latent_dim = [2, 10]
"""


def _import(spec, name):
    """The object ``module:attribute`` names."""
    import importlib

    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"{name} must be 'module:function', got {spec!r}")
    module, attr = spec.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{name} = {spec!r} cannot be imported: {e}") from None


def _load_data(table, name, folder):
    from . import datasets

    if not isinstance(table, dict):
        raise ValueError(f"[{name}] must be a table with dataset= (and args=) or path=")
    if ("path" in table) == ("dataset" in table):
        raise ValueError(f"[{name}] needs exactly one of dataset= (a vaecore.datasets loader) and path= (.npy)")
    if "path" in table:
        return np.load(os.path.join(folder, table["path"]), allow_pickle=False)
    loader = table["dataset"]
    if not isinstance(loader, str) or loader.startswith("_") or not callable(getattr(datasets, loader, None)):
        raise ValueError(f"[{name}] dataset must name a vaecore.datasets loader (digits, shapes, two_spirals, "
                         f"...), got {loader!r}")
    args = table.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"[{name}] args must be a table of the loader's arguments, got {args!r}")
    result = getattr(datasets, loader)(**args)
    return result[0] if isinstance(result, tuple) else result


def load_config(path):
    """The keyword arguments of :func:`sweep` described by a TOML file (format: ``TOML_HELP``)."""
    try:
        import tomllib
    except ModuleNotFoundError:   # Python 3.10
        raise RuntimeError("reading a sweep's TOML file needs Python 3.11 or later (tomllib)") from None
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            cfg = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
    for table, allowed in TOML_KEYS.items():
        section = cfg if not table else cfg.get(table, {})
        if isinstance(section, dict):
            unknown = sorted(set(section) - set(allowed))
            if unknown:
                where = f"[{table}]" if table else "the top level"
                raise ValueError(f"{path}: unknown key(s) {unknown} at {where}; allowed: {list(allowed)}")
    for key in ("out", "data"):
        if key not in cfg:
            raise ValueError(f"{path}: {key} is required")
    folder = os.path.dirname(os.path.abspath(path))
    X = _load_data(cfg["data"], "data", folder)
    kwargs = dict(X=X, out=os.path.join(folder, cfg["out"]), grid=cfg.get("grid", {}),
                  seeds=cfg.get("seeds", [0]))
    fit_args = cfg.get("fit", {})
    if not isinstance(fit_args, dict):
        raise ValueError(f"{path}: [fit] must be a table")
    kwargs.update(fit_args)
    if "validation" in cfg:
        kwargs["validation_data"] = _load_data(cfg["validation"], "validation", folder)
    if "build" in cfg:
        if "model" in cfg:
            raise ValueError(f"{path}: give build= or [model], not both")
        kwargs["build"] = _import(cfg["build"], "build")
    else:
        model = dict(cfg.get("model", {}))
        if "latent_dim" not in model and "latent_dim" not in kwargs["grid"]:
            raise ValueError(f"{path}: [model] needs latent_dim (or the grid must set it), or give build=")
        model.setdefault("input_dim", int(np.shape(X)[1]))
        kwargs["build"] = ModelBuilder(model.pop("kind", "VAE"), **model)
    if "metrics" in cfg:
        kwargs["metrics"] = _import(cfg["metrics"], "metrics")
    return kwargs


def add_parser(sub):
    """The ``sweep`` sub-command of ``python -m vaecore``."""
    import argparse

    s = sub.add_parser("sweep", help="run a sweep described by a TOML file (on local cores or a Dask cluster)",
                       description=TOML_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("config", help="the sweep's TOML file")
    s.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="a Dask scheduler's address (tcp://host:8786): run there instead of on local cores")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    return s


def run(args):
    """Run the ``sweep`` sub-command from parsed arguments; prints one line per run. 0 when every run is ok."""
    try:
        kwargs = load_config(args.config)
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"python -m vaecore sweep: {e}", file=sys.stderr)
        return 2
    client = None
    if args.scheduler is not None:
        try:
            from distributed import Client
        except ImportError:
            print("python -m vaecore sweep: --scheduler needs Dask: pip install 'vaecore[dask]'", file=sys.stderr)
            return 2
        client = Client(args.scheduler)
    try:
        runs = sweep(executor=client, progress=not args.no_progress, **kwargs)
    except (ValueError, TypeError) as e:
        print(f"python -m vaecore sweep: {e}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
    width = max(len(r["run_id"]) for r in runs)
    print(f"vaecore sweep: {len(runs)} runs in {kwargs['out']}")
    for r in runs:
        if r["status"] == "ok":
            m = r["metrics"]
            text = "  ".join(f"{k} {m[k]:.4g}" for k in ("loss", "recon", "kl", "val_elbo") if k in m)
            text += f"  active units {m['active_units']}"
        else:
            text = r["error"]
        print(f"  {r['run_id']:<{width}}  {r['status']:<6}  {text}")
    return 0 if all(r["status"] == "ok" for r in runs) else 1
