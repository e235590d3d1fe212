"""Argument checks shared by every vaecore module: one check per kind of argument.

Each check takes the value first and its name second, returns the value in
its plain Python type (int or float) and otherwise raises TypeError for a
value of the wrong type or ValueError for a value out of range, with a message
that names the argument, what was expected and what was given. Array
contracts (dtype, shape, layout) are not here: the model and the C binding own
those.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

__all__ = ["check_int", "check_real", "check_seed", "check_widths", "check_float_dtype", "check_callbacks",
           "SEED_MAX"]

SEED_MAX = 2**64 - 1   # the largest seed of the C core's generator (a uint64)


def check_int(value, name, low=1, high=None):
    """``value`` as an int in [low, high] (no upper bound if high is None); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return int(value)


def check_real(value, name, low=0.0, allow_equal=True):
    """``value`` as a finite float >= low (> low when not allow_equal); bools are refused."""
    if type(value) is not float:   # a plain float skips the ABC check of Real (0.5 us, every training step)
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
        value = float(value)
    if not math.isfinite(value) or value < low or (not allow_equal and value == low):
        op = ">=" if allow_equal else ">"
        raise ValueError(f"{name} must be a finite number {op} {low}, got {value!r}")
    return value


def check_seed(seed, name="seed", high=None, allow_none=False):
    """``seed`` as an int in [0, high] (any size if high is None), or None when allow_none.

    The C core's generator takes a uint64 (high = SEED_MAX); NumPy's
    ``default_rng`` takes any int >= 0 (high None).
    """
    if seed is None and allow_none:
        return None
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        expected = "None or an int" if allow_none else "an int"
        raise TypeError(f"{name} must be {expected}, got {type(seed).__name__} {seed!r}")
    return check_int(seed, name, low=0, high=high)


def check_widths(widths, name, high=None, max_len=None):
    """``widths`` as a tuple of ints in [1, high], at most max_len of them (layer widths)."""
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise TypeError(f"{name} must be a tuple of positive ints, got {type(widths).__name__} {widths!r}")
    out = tuple(widths)
    for i, w in enumerate(out):
        check_int(w, f"{name}[{i}]", high=high)
    if max_len is not None and len(out) > max_len:
        raise ValueError(f"{name} may have at most {max_len} layers, got {len(out)}")
    return out


def check_float_dtype(dtype, name="dtype"):
    """``dtype`` as np.dtype float32 or float64 (a name, a type or a dtype); ValueError otherwise."""
    try:
        dt = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):   # (None == float64 in NumPy)
        raise ValueError(f"{name} must be 'float32' or 'float64', got {dtype!r}")
    return dt


def check_callbacks(callbacks, name="callbacks"):
    """``callbacks`` as a tuple of callables: None is no callbacks, one callable is a tuple of one.

    Anything else must be an iterable of callables; a string, or an element that
    is not callable, raises TypeError naming the argument.
    """
    if callbacks is None:
        return ()
    if callable(callbacks):
        return (callbacks,)
    if isinstance(callbacks, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of callables, got {type(callbacks).__name__} {callbacks!r}")
    try:
        callbacks = tuple(callbacks)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of callables, got {type(callbacks).__name__} "
                        f"{callbacks!r}") from None
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"{name}[{i}] must be callable, got {type(cb).__name__} {cb!r}")
    return callbacks
