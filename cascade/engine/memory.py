"""How much memory a run needs, estimated before anything is allocated, against what the machine
has: a run that cannot fit is refused up front instead of dying in the middle."""

from __future__ import annotations

import os
from pathlib import Path

from cascade.engine.layout import COLUMNS

# Bytes per population row over a whole run: the population build (candidates drawn with
# oversampling, sized and sorted), the engine's copies (rows, heaps, ADL buffers, records),
# positions.parquet. Measured with tracemalloc on 20k-80k positions: 540 B one venue, 490 B two
# venues (slope between the two sizes); rounded up for the arrow copies tracemalloc misses.
BYTES_PER_POSITION = 700


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


def estimate_bytes(sc) -> dict:
    """{'steps', 'per_step', 'positions', 'per_position', 'total'} of a scenario's run."""
    nv = max(1, len(sc.venues))
    per_step = bytes_per_step(nv, len(sc.spot))
    pop = sc.population
    rows = int(pop.positions * (1.0 + pop.entry_order_share))
    total = sc.n_steps * per_step + rows * BYTES_PER_POSITION
    return {"steps": sc.n_steps, "per_step": per_step, "positions": rows,
            "per_position": BYTES_PER_POSITION, "total": total}


def check_memory(sc, available: int | None = None) -> dict:
    """Raise :class:`~cascade.errors.CascadeError` when the run's estimate exceeds the memory
    available (``available``: bytes, default :func:`available_bytes`); returns the estimate."""
    from cascade.errors import CascadeError

    est = estimate_bytes(sc)
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
