"""Axis limits that are always drawable: matplotlib refuses NaN or infinite limits (a model
breakdown is stopped before plotting; this guards the plots of any frame given to them)."""

from __future__ import annotations

import math


def axis_limits(set_lim, lo=None, hi=None) -> None:
    """Call ``set_lim(lo, hi)`` (an axis' ``set_xlim`` / ``set_ylim``) with finite limits: a
    limit that is not a finite number is left to matplotlib's autoscaling, and an empty or
    inverted range is widened around its value."""
    def ok(x):
        try:
            return x is not None and math.isfinite(float(x))
        except (TypeError, ValueError):
            return True  # dates and other non-numeric limits: matplotlib converts them
    lo = lo if ok(lo) else None
    hi = hi if ok(hi) else None
    try:
        if lo is not None and hi is not None and float(lo) >= float(hi):
            mid, pad = float(lo), max(abs(float(lo)) * 0.05, 1e-12)
            lo, hi = mid - pad, mid + pad
    except (TypeError, ValueError):
        pass
    set_lim(lo, hi)
