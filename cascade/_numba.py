"""Numba policy for the whole package, in one place (the numbagg pattern).

Every kernel is declared with :func:`jit` (serial) or :func:`pjit` (may use ``prange``).
Nothing is compiled at import: numba compiles lazily at the first call, and ``cache=True``
keeps the machine code in ``__pycache__`` so later processes skip the compilation.

Environment overrides
---------------------
CASCADE_NUMBA_CACHE=0   disable the on-disk cache (e.g. read-only installs)
CASCADE_THREADS=N       numba threads used by parallel kernels (default: all cores)
"""

from __future__ import annotations

import os

import numba

_CACHE = os.environ.get("CASCADE_NUMBA_CACHE", "1") != "0"


def jit(func=None, **kwargs):
    """Serial ``numba.njit`` with the package's defaults (no fastmath: results must be exact)."""
    opts = dict(cache=_CACHE, nogil=True, fastmath=False)
    opts.update(kwargs)
    if func is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(func)


def pjit(func=None, **kwargs):
    """Parallel ``numba.njit``: loops written with ``numba.prange`` run on all threads.

    Kernels declared this way write each output element from exactly one iteration and reduce
    partial sums per fixed-size block in block order, so results do not depend on the thread count.
    """
    return jit(func, parallel=True, **kwargs)


def set_threads(n: int | None) -> int:
    """Set the numba thread count (``None``: leave as is). Returns the count in force."""
    if n is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    return numba.get_num_threads()


def _apply_env_threads() -> None:
    env = os.environ.get("CASCADE_THREADS")
    if env:
        set_threads(int(env))


_apply_env_threads()
