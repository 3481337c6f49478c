"""Slow, obvious reference for :mod:`cascade.engine.sort`: Python's stable ``sorted`` on the
keys, with NumPy's conventions (-0.0 equals 0.0, NaNs last, ties in index order)."""

from __future__ import annotations

import math


def stable_argsort(keys) -> list[int]:
    """Indices that sort ``keys`` (floats) stably, NaNs last."""
    def key(i):
        x = float(keys[i])
        return (1, 0.0) if math.isnan(x) else (0, x)

    return sorted(range(len(keys)), key=key)
