"""Numba policy for the whole package, in one place (the numbagg pattern).

Every kernel is declared with :func:`jit` (serial) or :func:`pjit` (may use ``prange``).
Nothing is compiled at import: numba compiles lazily at the first call, and ``cache=True``
keeps the machine code in ``__pycache__`` so later processes skip the compilation.

Environment overrides
---------------------
CASCADE_NUMBA_CACHE=0   disable the on-disk cache (e.g. read-only installs)
NUMBA_CACHE_DIR         numba's own setting; when it is not set, the cache goes to
                        ``cascade/__pycache__/numba-<stamp>`` (see below)
CASCADE_THREADS=N       numba threads used by parallel kernels (default: all cores)
OMP_WAIT_POLICY         set to PASSIVE unless already set (see below)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

_CACHE = os.environ.get("CASCADE_NUMBA_CACHE", "1") != "0"


def _source_stamp(root: Path) -> str:
    """A digest of every module's path, size and modification time (stat only, about 1 ms)."""
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def _stamped_cache_dir() -> None:
    """Key the on-disk cache by the whole package's sources.

    numba invalidates a cached kernel only when the kernel's own file changes, but the kernels
    read constants from other modules (the state layout in cascade.engine.layout, the parameter
    indices in cascade.model.market) and freeze them at compile time. After a checkout that
    changed only such a module, a stale kernel would index the state arrays with old offsets:
    wrong results or a crash. One cache folder per state of the sources makes that impossible
    (an edit compiles everything once, about a minute). A user's NUMBA_CACHE_DIR wins; an
    unwritable install falls back to numba's default."""
    if not _CACHE or os.environ.get("NUMBA_CACHE_DIR"):
        return
    root = Path(__file__).resolve().parent
    path = root / "__pycache__" / f"numba-{_source_stamp(root)}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return
    numba.config.CACHE_DIR = str(path)
    _prune(path)


def _prune(current: Path, older_than_s: float = 86_400.0) -> None:
    """Delete the caches of earlier states of the sources (about 12 MB each) once they are a day
    old: a process of another checkout that still runs uses its own, younger, folder."""
    import shutil
    import time

    cutoff = time.time() - older_than_s
    for old in current.parent.glob("numba-*"):
        try:
            if old != current and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


_stamped_cache_dir()

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
