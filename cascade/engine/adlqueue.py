"""The ADL queue of one side: its rows in (key, row) order, taken in batches.

Auto-deleveraging needs the opposite side's positions best rank first, but a step seldom closes
more than a few of them. Sorting every position of the side (O(n log n)) at each ADL step, or
heapifying it (O(n) random accesses), cost most of October's step loop at 1e7 positions.
Instead the step computes every row's key once, in one sequential pass, and takes the rows in
batches: the ``cap`` smallest (key, row) pairs after the previous batch's last, selected with a
bounded max-heap in one more pass and sorted. Batches double, so a step that takes k rows of n
costs O(n log(k / cap0) + k log k). The order is exactly a stable sort's: smallest key first,
ties by smaller row. A NaN key marks a row that is not in the queue.
"""

from __future__ import annotations

from cascade._numba import jit


@jit
def _after(ka, ra, kb, rb):
    """Pair (ka, ra) comes after (kb, rb) in the queue."""
    return ka > kb or (ka == kb and ra > rb)


@jit
def _sift_down_max(keys, out, size, j):
    """Restore the max-heap order of ``out[:size]`` below slot ``j`` (by (keys[row], row))."""
    while True:
        left = 2 * j + 1
        if left >= size:
            break
        big = left
        if left + 1 < size and _after(keys[out[left + 1]], out[left + 1], keys[out[left]],
                                      out[left]):
            big = left + 1
        if _after(keys[out[big]], out[big], keys[out[j]], out[j]):
            out[j], out[big] = out[big], out[j]
            j = big
        else:
            break


@jit
def select_batch_nb(keys, out, cap, has_floor, floor_key, floor_row):
    """The next batch of the queue.

    Parameters
    ----------
    keys : float64 (n,), the key of each row (NaN: not in the queue)
    out : int32 or int64 (>= min(cap, n),), written: the batch's rows, in queue order
    cap : int, the most rows to take
    has_floor : bool; floor_key (float64), floor_row (int): take only rows after this pair (the
        previous batch's last), every row when ``has_floor`` is False

    Returns
    -------
    int, the rows written (fewer than ``cap`` only when the queue has no more)
    """
    m = 0
    for i in range(keys.shape[0]):
        k = keys[i]
        if k != k:
            continue
        if has_floor and not _after(k, i, floor_key, floor_row):
            continue
        if m < cap:  # push onto the max-heap out[:m]
            j = m
            m += 1
            while j > 0:
                p = (j - 1) // 2
                if _after(k, i, keys[out[p]], out[p]):
                    out[j] = out[p]
                    j = p
                else:
                    break
            out[j] = i
        elif _after(keys[out[0]], out[0], k, i):  # before the batch's current last: replace it
            out[0] = i
            _sift_down_max(keys, out, m, 0)
    for end in range(m - 1, 0, -1):  # heapsort: ascending
        out[0], out[end] = out[end], out[0]
        _sift_down_max(keys, out, end, 0)
    return m
