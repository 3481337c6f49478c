"""The one engine behind every multi-run command (``sweep``, ``validate --seeds``,
``sensitivity``, ``run --seeds``): map a function over independent runs, serially in this
process, on a ``dask.distributed`` LocalCluster of worker processes, or on an existing scheduler.

Each run must be a pure function of its argument (a scenario, its overrides and its seed), so the
results do not depend on where or in which order the runs execute: :func:`run_many` returns them
in the order of ``items`` whatever the engine. In worker processes numba runs on one thread (the
processes are the parallelism); results do not depend on the thread count (see
:mod:`cascade._numba`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from cascade.errors import CascadeError

# [scheme://]host:port, as dask.distributed accepts it
_ADDRESS = re.compile(r"^(?:(tcp|tls|inproc|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[\w.\-]+):(\d+)$")
CONNECT_TIMEOUT_S = 10


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_workers(workers, *, option: str = "--workers") -> int:
    """``workers`` as a whole number >= 1 (None: all cores), else a CascadeError naming it."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CascadeError(f"{option} {workers!r}: expected a whole number of worker processes "
                           ">= 1")
    return workers


def check_scheduler(address, *, option: str = "--scheduler") -> str:
    """A scheduler address ``[tcp://]host:port``, else a CascadeError naming ``option``."""
    text = str(address).strip()
    m = _ADDRESS.match(text)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise CascadeError(f"{option} {address!r}: expected a dask scheduler address such as "
                           "tcp://127.0.0.1:8786")
    return text if m.group(1) else "tcp://" + text


def _in_worker(func: Callable, batch: list) -> list:
    """``[func(x) for x in batch]`` in a worker process, numba on one thread (the processes
    share the cores)."""
    from cascade._numba import set_threads

    set_threads(1)
    return [func(x) for x in batch]


def batches(keys: Sequence, n_workers: int) -> list[list[int]]:
    """Indices of the items, cut into batches that each run on one worker: items with the same
    key stay together (they share what the worker builds once, e.g. a population), in pieces of
    at most ``ceil(n / (2 * n_workers))`` so that every worker gets work."""
    n = len(keys)
    limit = max(1, -(-n // (2 * max(1, n_workers))))
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return [g[a: a + limit] for g in groups.values() for a in range(0, len(g), limit)]


class _Engine:
    """A dask client on a LocalCluster of ``workers`` processes or on ``scheduler``; a context
    manager that closes what it opened."""

    def __init__(self, workers: int, scheduler: str | None):
        self.workers, self.scheduler = workers, scheduler
        self.cluster = self.client = None

    def __enter__(self):
        import logging

        from distributed import Client, LocalCluster

        if self.scheduler is not None:
            try:
                self.client = Client(self.scheduler, timeout=CONNECT_TIMEOUT_S,
                                     set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise CascadeError(f"--scheduler {self.scheduler}: no dask scheduler answered "
                                   f"within {CONNECT_TIMEOUT_S} s ({exc}); expected the address "
                                   "of a running `dask scheduler`") from None
        else:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                        processes=True, dashboard_address=":0",  # None: 8787
                                        silence_logs=logging.CRITICAL)
            self.client = Client(self.cluster, set_as_default=False)
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def run_many(func: Callable, items: Sequence, *, workers: int | None = None,
             scheduler: str | None = None, progress: bool = False, desc: str = "runs",
             unit: str = "run", key: Callable | None = None) -> list:
    """``[func(x) for x in items]``, in that order, computed by the chosen engine.

    Parameters
    ----------
    func : a module-level function (pickled to the workers) of one item
    items : the runs' arguments (picklable)
    workers : worker processes of a LocalCluster (default: all cores); 1 runs serially in this
        process, with no cluster
    scheduler : address of a running dask scheduler (``tcp://host:port``); ``workers`` is then
        ignored
    progress : a progress bar over the runs (stderr, shown on a terminal only)
    key : items with the same ``key(item)`` run on one worker where possible (see
        :func:`batches`); default: one dask task per item

    A CascadeError raised by a run is raised here. A worker that dies is replaced and its runs
    are computed again (dask's retries), so ``func`` must be idempotent.
    """
    items = list(items)
    scheduler = check_scheduler(scheduler) if scheduler is not None else None
    workers = check_workers(workers)
    bar = None
    if progress and items:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit=unit, leave=False, disable=None)
    try:
        if scheduler is None and (workers == 1 or len(items) <= 1):
            from cascade.analysis.populations import forget_populations

            out = []
            try:
                for x in items:
                    out.append(func(x))
                    if bar is not None:
                        bar.update(1)
            finally:
                forget_populations()  # in-process: do not keep them past this batch
            return out
        from distributed import as_completed

        with _Engine(min(workers, len(items)), scheduler) as client:
            n_workers = max(1, sum(client.nthreads().values()))
            parts = (batches([key(x) for x in items], n_workers) if key is not None
                     else [[i] for i in range(len(items))])
            futures = client.map(_in_worker, [func] * len(parts),
                                 [[items[i] for i in p] for p in parts], pure=False)
            size = {f.key: len(p) for f, p in zip(futures, parts)}
            for fut in as_completed(futures, loop=client.loop):
                if fut.status == "error":
                    client.cancel(futures)
                    fut.result()  # raises the run's own exception
                if bar is not None:
                    bar.update(size[fut.key])
            out = [None] * len(items)
            for p, res in zip(parts, client.gather(futures)):
                for i, r in zip(p, res):
                    out[i] = r
            return out
    finally:
        if bar is not None:
            bar.close()
