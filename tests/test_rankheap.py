"""The ADL queue's heap (cascade.engine.rankheap) against np.argsort(kind="stable"): popping
every row gives the stable sort's order, on random, tied, sorted, reversed and infinite keys, and
the engine's ADL walk, which takes only a few rows per step, agrees with the full sort it
replaced (tests/test_engine.py and the naive references cover the walk itself)."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.engine.rankheap import rank_heap_pop_nb, rank_heapify_nb


def _keys(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = rng.standard_normal(n)
    if kind == "random":
        return x
    if kind == "sorted":
        return np.sort(x)
    if kind == "reversed":
        return np.sort(x)[::-1].copy()
    if kind == "tied":
        return np.round(x, 0)
    if kind == "constant":
        return np.zeros(n)
    if kind == "infinite":  # ADL ranks of -inf (no equity) are negated to +inf: they come last
        x[::3] = np.inf
        x[::5] = -0.0
        x[::7] = 0.0
        return x
    raise ValueError(kind)


def _pop_all(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    k, r = keys.copy(), rows.copy()
    size = len(k)
    rank_heapify_nb(k, r, size)
    out = []
    while size > 0:
        out.append(r[0])
        size = rank_heap_pop_nb(k, r, size)
    return np.array(out, dtype=rows.dtype)


@pytest.mark.parametrize("kind", ["random", "sorted", "reversed", "tied", "constant", "infinite"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1000])
def test_pop_order_is_the_stable_sort(kind, n):
    keys = _keys(kind, n)
    rows = np.arange(n, dtype=np.int32) * 3 + 5  # increasing, like the venue's rows
    got = _pop_all(keys, rows)
    want = rows[np.argsort(keys, kind="stable")]
    np.testing.assert_array_equal(got, want)


def test_partial_pops_then_rest():
    """Taking a few rows and stopping leaves a heap whose remaining order is still sorted."""
    keys = _keys("tied", 500)
    rows = np.arange(500, dtype=np.int32)
    k, r = keys.copy(), rows.copy()
    rank_heapify_nb(k, r, 500)
    size, taken = 500, []
    for _ in range(37):
        taken.append(r[0])
        size = rank_heap_pop_nb(k, r, size)
    rest = _pop_all(k[:size], r[:size])
    np.testing.assert_array_equal(np.r_[taken, rest], np.argsort(keys, kind="stable"))
