"""The ADL queue's batches (cascade.engine.adlqueue) against np.argsort(kind="stable"): taking
batch after batch gives the stable sort's order of (key, row), on random, tied, sorted,
reversed, constant and infinite keys, with rows out of the queue (NaN keys) and every batch
size. The engine's ADL walk over them is compared with the slow reference engine in
tests/test_venues.py and tests/test_ioc.py."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.engine.adlqueue import select_batch_nb


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


def _take_all(keys: np.ndarray, cap0: int) -> np.ndarray:
    """Batches as the engine takes them: cap0 rows, then twice as many after the last, ..."""
    out = np.empty(len(keys), np.int32)
    got, cap, floor = [], cap0, None
    while True:
        cap = max(1, min(cap, len(keys)))
        m = (select_batch_nb(keys, out, cap, False, 0.0, 0) if floor is None
             else select_batch_nb(keys, out, cap, True, keys[floor], floor))
        got.extend(out[:m].tolist())
        if m < cap or m == 0:
            return np.array(got, np.int64)
        floor = int(out[m - 1])
        cap *= 2


@pytest.mark.parametrize("kind", ["random", "sorted", "reversed", "tied", "constant", "infinite"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1000])
@pytest.mark.parametrize("cap0", [1, 2, 7, 4096])
def test_batches_give_the_stable_sort(kind, n, cap0):
    keys = _keys(kind, n)
    want = np.argsort(keys, kind="stable")
    np.testing.assert_array_equal(_take_all(keys, cap0), want)


@pytest.mark.parametrize("cap0", [1, 5, 64])
def test_rows_out_of_the_queue_are_skipped(cap0):
    keys = _keys("tied", 500)
    keys[::4] = np.nan  # the other side, or closed rows
    inside = np.flatnonzero(~np.isnan(keys))
    want = inside[np.argsort(keys[inside], kind="stable")]
    np.testing.assert_array_equal(_take_all(keys, cap0), want)


def test_a_batch_is_the_smallest_pairs_after_the_floor():
    keys = np.array([3.0, 1.0, 2.0, 1.0, 0.5, 2.0])
    out = np.empty(6, np.int64)
    assert select_batch_nb(keys, out, 2, True, 1.0, 1) == 2  # after (1.0, row 1)
    assert out[:2].tolist() == [3, 2]                          # (1.0, 3), (2.0, 2)
