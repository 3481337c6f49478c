"""How much memory a run needs, estimated before anything is allocated, against what the machine
has: a run that cannot fit is refused up front instead of dying in the middle."""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

import numpy as np

from cascade.engine.layout import COLUMNS

# Bytes per population row over a whole run: the population build (candidates drawn with
# oversampling, sized and sorted), the engine's copies (rows, heaps, ADL queues, records).
# Measured 2026-12-06 as peak RSS in a fresh process (benchmarks/results/latest.md): 129 B at
# 1e7 on the demo, 182 B on October (two venues); rounded up.
BYTES_PER_POSITION = 200
# ... and when the run's positions frame is built and written to positions.parquet (`cascade run`
# with its output folder): October through the CLI peaked at 0.87 GB at 1e6 positions and 4.24 GB
# at 1e7, 376 B per row between the two (2026-12-06, /usr/bin/time); rounded up.
BYTES_PER_POSITION_SAVED = 450


def bytes_per_step(n_venues: int, n_spot: int = 0) -> int:
    """Per-step outputs: the engine's (V, T, len(COLUMNS)) float64 array, each venue's frame, the
    market frame of a multi-venue run (its own columns and each venue's) and the copy written
    to parquet, plus the per-step inputs (flows, noise, wick multipliers, spot flows and noise).
    One venue: 608 B; two venues and two spot venues: 2,320 B (tracemalloc measured 185 B and
    980 B: it misses the arrow copies made when writing parquet)."""
    v = int(n_venues)
    frames = v + (v + 1 if v > 1 else 0)
    return 8 * len(COLUMNS) * (v + 2 * frames) + 8 * (3 * v + 4 + 2 * int(n_spot))


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable of /proc/meminfo (else the free pages of
    os.sysconf), less a cgroup limit if one is lower; None when unknown."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def estimate_bytes(sc, save: bool = False) -> dict:
    """{'steps', 'per_step', 'positions', 'per_position', 'total'} of a scenario's run; ``save``:
    its positions are also written (positions.parquet)."""
    nv = max(1, len(sc.venues))
    per_step = bytes_per_step(nv, len(sc.spot))
    pop = sc.population
    rows = int(pop.positions * (1.0 + pop.entry_order_share))
    per_position = BYTES_PER_POSITION_SAVED if save else BYTES_PER_POSITION
    total = sc.n_steps * per_step + rows * per_position
    return {"steps": sc.n_steps, "per_step": per_step, "positions": rows,
            "per_position": per_position, "total": total}


def check_memory(sc, available: int | None = None, save: bool = False) -> dict:
    """Raise :class:`~cascade.errors.CascadeError` when the run's estimate exceeds the memory
    available (``available``: bytes, default :func:`available_bytes`; ``save``: the positions
    will be written too); returns the estimate."""
    from cascade.errors import CascadeError

    est = estimate_bytes(sc, save)
    avail = available_bytes() if available is None else available
    if avail is not None and est["total"] > avail:
        gb = 1e9
        raise CascadeError(
            f"{sc.path or sc.name}: the run needs about {est['total'] / gb:.1f} GB "
            f"({est['steps']:,} steps x {est['per_step']:,} B + {est['positions']:,} positions x "
            f"{est['per_position']:,} B), more than the {avail / gb:.1f} GB of memory available; "
            f"expected a larger [scenario] step_s (now {sc.scenario.step_s:g} s), a shorter "
            f"window ([scenario] start/end) or fewer --positions ([population] positions)")
    return est


_MAP_NORESERVE = 0x4000  # Linux; the mmap module does not export it
_LAZY_FROM = 1 << 30


def lazy_empty(n: int, dtype) -> np.ndarray:
    """``np.empty(n, dtype)`` for a buffer sized by a worst case that a run seldom fills (the
    liquidation records: three per position). np.empty maps memory lazily too, but Linux's
    default overcommit refuses one allocation larger than RAM + swap, even untouched: at 1e8
    positions the records' bound is 29 GB. From 1 GiB on Linux the buffer is an anonymous
    private mapping with MAP_NORESERVE, which that check does not count; only the pages a run
    writes become resident (check_memory bounds those). Elsewhere, or smaller: np.empty."""
    dtype = np.dtype(dtype)
    size = int(n) * dtype.itemsize
    if size < _LAZY_FROM or not sys.platform.startswith("linux"):
        return np.empty(int(n), dtype)
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    return np.frombuffer(buf, dtype, count=int(n))
