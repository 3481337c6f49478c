"""Numba policy for the whole package, in one place (the numbagg pattern).

Every kernel is declared with :func:`jit` (serial) or :func:`pjit` (may use ``prange``).
Nothing is compiled at import: numba compiles lazily at the first call, and ``cache=True``
keeps the machine code in ``__pycache__`` so later processes skip the compilation.

Environment overrides
---------------------
CASCADE_NUMBA_CACHE=0   disable the on-disk cache (e.g. read-only installs)
CASCADE_THREADS=N       numba threads used by parallel kernels (default: all cores)
OMP_WAIT_POLICY         set to PASSIVE unless already set (see below)
"""

from __future__ import annotations

import os

import numba

_CACHE = os.environ.get("CASCADE_NUMBA_CACHE", "1") != "0"

# numba's OpenMP threading layer (libgomp, read when numba first runs a parallel kernel) lets a
# thread that finished its share spin for its next one by default. On a machine whose cores are
# busy with other work, the spinning thread takes the core its slower sibling needs: measured
# on 2 busy cores, the ladder sort of 1e6 positions took 0.82 s on 2 threads against 0.11 s on
# 1 thread, and 0.11 s on 2 threads with passive waiting. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
