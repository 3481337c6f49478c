"""Helpers shared by the orchestrator and the workers: scenario, machine stamp, memory readings.

Nothing here imports cascade (or numpy) at module level, so a worker can time ``import cascade``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEMO = ROOT / "scenarios" / "demo.toml"
RESULTS = HERE / "results"
WARMUP_POSITIONS = 1_000
WARMUP_STEPS = 3_600


def demo_scenario(positions: int, steps: int, path: str | Path = DEMO):
    """The demo scenario with ``positions`` positions over ``steps`` steps from its start.

    Built with ``Scenario.with_overrides`` (``scenario.end``, ``population.positions``); every
    ``[[flows]]`` start must fall inside the window, else ValueError says how many steps it needs.
    """
    from cascade.model.scenario import load_scenario

    sc = load_scenario(path)
    start = sc.scenario.start
    end = start + dt.timedelta(seconds=int(steps) * sc.scenario.step_s)
    for f in sc.flows:
        if not (start <= f.start < end):
            need = int((f.start - start).total_seconds() / sc.scenario.step_s) + 1
            raise ValueError(f"{path}: flow {f.label or '#'} starts at {f.start.isoformat()}, "
                             f"outside a window of {steps} steps; use at least {need} steps")
    return sc.with_overrides(**{"scenario.end": end, "population.positions": int(positions)})


def load_steps(path: str | Path) -> int:
    """The number of steps of a scenario's own window."""
    from cascade.model.scenario import load_scenario

    return int(load_scenario(path).n_steps)


def min_steps(path: str | Path = DEMO) -> int:
    """Fewest steps whose window contains the start of every flow of the scenario."""
    from cascade.model.scenario import load_scenario

    sc = load_scenario(path)
    if not sc.flows:
        return 1
    last = max((f.start - sc.scenario.start).total_seconds() for f in sc.flows)
    return int(last / sc.scenario.step_s) + 1


def rss_now() -> int:
    """Current resident set size, bytes (VmRSS)."""
    return _status_kb("VmRSS") * 1024


def rss_peak() -> int:
    """Peak resident set size of this process so far, bytes (``ru_maxrss``, KiB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def hwm_now() -> int:
    """High-water mark of the resident set (VmHWM), bytes; resettable with :func:`reset_hwm`."""
    return _status_kb("VmHWM") * 1024


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5). False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_available() -> int | None:
    """MemAvailable, bytes (None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def median(xs):
    return statistics.median(xs) if xs else None


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy (user + system + steal) over ``seconds`` while this process
    sleeps: the load other programs put on the machine while the benchmarks run."""
    import time

    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle

    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except (OSError, ValueError):
        return None
    return 1.0 - (i1 - i0) / (t1 - t0) if t1 > t0 else None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """Stamp for the report: machine, versions, commit, date. Imports cascade, numba, numpy."""
    import numba
    import numpy as np

    import cascade
    from cascade.result import git_commit

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = os.cpu_count()
    mem_total = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_available": affinity,
        "memory_total_bytes": mem_total,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "cascade_version": cascade.__version__,
        "git_commit": git_commit(),
    }
