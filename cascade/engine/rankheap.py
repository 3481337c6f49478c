"""A binary min-heap of (key, row) pairs: the ADL queue of one side.

Auto-deleveraging needs the opposite side's positions best rank first, but a step rarely closes
more than a few of them. Sorting every position of the side (O(m log m)) at each ADL step cost
most of October's step loop at 1e7 positions; building a heap is O(m) and each position taken
from it O(log m). The pop order is exactly a stable sort's: smallest key first, ties by row.
Keys must not be NaN (ADL ranks are finite or ``-inf``, negated here).
"""

from __future__ import annotations

from cascade._numba import jit


@jit
def _before(keys, rows, a, b):
    """Slot ``a`` pops before slot ``b``: smaller key, ties by smaller row."""
    return keys[a] < keys[b] or (keys[a] == keys[b] and rows[a] < rows[b])


@jit
def _sift_down(keys, rows, size, k):
    while True:
        left = 2 * k + 1
        if left >= size:
            break
        best = left
        if left + 1 < size and _before(keys, rows, left + 1, left):
            best = left + 1
        if _before(keys, rows, best, k):
            keys[k], keys[best] = keys[best], keys[k]
            rows[k], rows[best] = rows[best], rows[k]
            k = best
        else:
            break


@jit
def rank_heapify_nb(keys, rows, size):
    """Arrange ``keys[:size]``, ``rows[:size]`` (float64, int32/int64) as a heap in place;
    the next row is then ``rows[0]``."""
    for k in range(size // 2 - 1, -1, -1):
        _sift_down(keys, rows, size, k)


@jit
def rank_heap_pop_nb(keys, rows, size):
    """Remove the top pair (read ``rows[0]`` first); returns the new size."""
    size -= 1
    if size > 0:
        keys[0] = keys[size]
        rows[0] = rows[size]
        _sift_down(keys, rows, size, 0)
    return size
