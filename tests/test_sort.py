"""The ladder's parallel stable argsort and gather (cascade.engine.sort) against np.argsort,
fancy indexing and the slow reference, on random, tied, sorted and special keys, on 1 and 2
threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cascade.engine.sort import SMALL, stable_argsort, take
from tests.naive import sort as naive

N = SMALL + 12_345  # above SMALL: the radix path


def _keys(kind: str, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.random(n) * 1e5 + 5e4
    if kind == "random":
        return x
    if kind == "sorted":
        return np.sort(x)
    if kind == "reversed":
        return np.sort(x)[::-1].copy()
    if kind == "tied":  # few distinct values: long runs of ties keep index order
        return np.round(x, -4)
    if kind == "constant":
        return np.full(n, 123.5)
    if kind == "special":  # signs, zeros of both signs, infinities, NaNs
        y = rng.standard_normal(n) * 1e3
        y[::7], y[::11], y[::13], y[::17], y[::19] = -0.0, 0.0, np.nan, np.inf, -np.inf
        y[::23] = 5e-324  # the smallest subnormal
        return y
    raise ValueError(kind)


KINDS = ["random", "sorted", "reversed", "tied", "constant", "special"]


@pytest.mark.parametrize("kind", KINDS)
def test_stable_argsort_is_numpy_stable_argsort(kind):
    x = _keys(kind)
    want = np.argsort(x, kind="stable")
    for threads in (1, 2):
        before = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            got = stable_argsort(x)
        finally:
            numba.set_num_threads(before)
        assert got.dtype == np.int64 and np.array_equal(got, want)


@pytest.mark.parametrize("kind", ["random", "tied", "special"])
def test_stable_argsort_matches_the_slow_reference(kind):
    x = _keys(kind)
    assert stable_argsort(x).tolist() == naive.stable_argsort(x)


@pytest.mark.parametrize("n", [0, 1, 2, 100])
def test_stable_argsort_small_and_empty(n):
    x = _keys("tied", max(n, 1))[:n]
    assert stable_argsort(x).tolist() == naive.stable_argsort(x)


def test_take_is_fancy_indexing():
    rng = np.random.default_rng(3)
    rows = rng.integers(0, N, N + 5)
    for values in (rng.random(N), rng.integers(-5, 5, N).astype(np.int8), rng.random(N) < 0.3,
                   rng.integers(0, 10**9, N)):
        got = take(values, rows)
        assert got.dtype == values.dtype and np.array_equal(got, values[rows])
