"""A parallel stable argsort of float64 keys (an LSD radix sort), for the ladder's sorts.

``stable_argsort(keys)`` returns exactly ``np.argsort(keys, kind="stable")``: a stable sort's
order is unique (keys ascending, ties in index order), NumPy's conventions included (-0.0 equals
0.0, NaNs last in index order), so the result does not depend on the algorithm nor on the thread
count. Each key becomes a 64-bit unsigned integer with the same order (:func:`_sortable_nb`),
sorted by 11-bit digits from the lowest, six passes at most; a pass whose digit is the same for
every key is skipped. Each pass counts digits per fixed block of rows in parallel, then scatters
each block, in order, to its slots (stable). O(n) per pass against NumPy's serial O(n log n)
timsort; tests/naive compares it with ``np.argsort`` on random, tied, sorted and special keys.
"""

from __future__ import annotations

import numba
import numpy as np

from cascade._numba import pjit

_BITS = 11
_RADIX = 1 << _BITS
_PASSES = 6  # 6 x 11 bits >= 64
_BLOCKS = 64  # fixed row blocks (not threads): the same work split on any thread count
SMALL = 1 << 15  # below this many keys, NumPy's sort is as fast


@pjit
def _sortable_nb(keys, bits, out):
    """``out[i]``: uint64 whose unsigned order is NumPy's order of ``keys`` (float64, ``bits``
    the same memory as uint64): -0.0 as 0.0, every NaN the largest."""
    top = np.uint64(1) << np.uint64(63)
    for i in numba.prange(keys.shape[0]):
        b = bits[i]
        if keys[i] != keys[i]:
            out[i] = np.uint64(0xFFFFFFFFFFFFFFFF)
        elif b == top:  # -0.0
            out[i] = top
        elif b & top:
            out[i] = ~b
        else:
            out[i] = b | top


@pjit
def _radix_argsort_nb(u, idx, u2, idx2):
    """Stable LSD radix sort of ``u`` (uint64 (n,)), carrying ``idx`` (int64 (n,)); ``u2`` and
    ``idx2`` are scratch of the same shapes. Returns 0 if the result lies in ``u``/``idx``, 1 if
    in ``u2``/``idx2``."""
    n = u.shape[0]
    size = (n + _BLOCKS - 1) // _BLOCKS
    hist = np.zeros((_BLOCKS, _RADIX), np.int64)
    where = 0
    for p in range(_PASSES):
        shift = np.uint64(p * _BITS)
        mask = np.uint64(_RADIX - 1)
        src_u, src_i, dst_u, dst_i = (u, idx, u2, idx2) if where == 0 else (u2, idx2, u, idx)
        for blk in numba.prange(_BLOCKS):
            h = hist[blk]
            h[:] = 0
            for i in range(blk * size, min(n, (blk + 1) * size)):
                h[(src_u[i] >> shift) & mask] += 1
        # the pass is a no-op when one digit holds every key
        total0 = 0
        for blk in range(_BLOCKS):
            total0 += hist[blk, (src_u[0] >> shift) & mask]
        if total0 == n:
            continue
        # exclusive offsets, digit major, block minor: stable
        acc = 0
        for d in range(_RADIX):
            for blk in range(_BLOCKS):
                c = hist[blk, d]
                hist[blk, d] = acc
                acc += c
        for blk in numba.prange(_BLOCKS):
            h = hist[blk]
            for i in range(blk * size, min(n, (blk + 1) * size)):
                d = (src_u[i] >> shift) & mask
                k = h[d]
                h[d] = k + 1
                dst_u[k] = src_u[i]
                dst_i[k] = src_i[i]
        where = 1 - where
    return where


@pjit
def _iota_nb(out):
    for i in numba.prange(out.shape[0]):
        out[i] = i


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """int64 (n,): the indices that sort ``keys`` (float64 (n,)) stably, exactly
    ``np.argsort(keys, kind="stable")``."""
    keys = np.ascontiguousarray(keys, np.float64)
    n = keys.shape[0]
    if n < SMALL:
        return np.argsort(keys, kind="stable")
    u = np.empty(n, np.uint64)
    _sortable_nb(keys, keys.view(np.uint64), u)
    idx = np.empty(n, np.int64)
    _iota_nb(idx)
    u2 = np.empty(n, np.uint64)
    idx2 = np.empty(n, np.int64)
    return idx2 if _radix_argsort_nb(u, idx, u2, idx2) else idx


@pjit
def take_nb(values, rows, out):
    """``out[j] = values[rows[j]]`` (``values[rows]``, gathered in parallel)."""
    for j in numba.prange(rows.shape[0]):
        out[j] = values[rows[j]]


def take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` for a 1-d array and int indices in range, gathered in parallel."""
    if rows.shape[0] < SMALL:
        return values[rows]
    out = np.empty(rows.shape[0], values.dtype)
    take_nb(values, rows, out)
    return out


def take_into(values: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = values[rows]`` (cast to ``out``'s dtype as NumPy casts), gathered in parallel
    when the dtypes agree."""
    if rows.shape[0] < SMALL or out.dtype != values.dtype:
        out[:] = values[rows]
    else:
        take_nb(values, rows, out)
