"""Slow, obvious reference for the population's survival test
(:func:`cascade.model.population._survived`): the NumPy original, whole arrays at once."""

from __future__ import annotations

import numpy as np

LONG = 1


def survived(c: dict, qty, lp, suffix_min, suffix_max, p0: float, bridge=None) -> np.ndarray:
    """bool (n,): the position would still be open at the start, i.e. the history since its entry
    never crossed its liquidation price nor its stop.

    ``bridge`` = (variance of log price from each history grid point to the start (m,), the
    smallest variance to use): for a waypoint history, the position must also survive the paths
    the smooth history stands for. Every path from the entry to the start price converges on the
    start price, so the one drawn path leaves triggers just under (over) the start price that
    almost any real path would have crossed: after a drop of about 1/leverage, the whole ladder
    of that leverage sits there. A Brownian bridge in log price from the entry (ln E) to the
    start (ln p0) accumulating variance V stays clear of a trigger at ln l with probability
    ``1 - exp(-2 |ln E/l| |ln p0/l| / V)`` (the reflection principle, in the bridge's own time);
    each position keeps its draw ``u_survive`` below it. The density of triggers then falls to
    zero linearly at the start price, over a band that widens with the variance since entry
    (:func:`cascade.model.history.history_variance`) and narrows with the leverage."""
    side = c["side"]
    long = side == LONG
    path_lo, path_hi = suffix_min[c["gi"]], suffix_max[c["gi"]]
    ok = np.where(long, lp < np.minimum(path_lo, p0), lp > np.maximum(path_hi, p0))
    stop_px = c["entry"] * (1.0 - side * c["stop_dist"])
    stopped = c["has_stop"] & np.where(long, stop_px >= path_lo, stop_px <= path_hi)
    alive = ok & ~stopped & (qty > 0)
    if bridge is not None:
        var_grid, var_min = bridge
        # the nearest trigger: the stop when it lies between the entry and the liquidation price
        trig = np.where(c["has_stop"],
                        np.where(long, np.maximum(lp, stop_px), np.minimum(lp, stop_px)), lp)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_entry = np.abs(np.log(c["entry"] / trig))
            d_start = np.abs(np.log(p0 / trig))
            var = np.maximum(var_grid[c["gi"]], var_min)  # at least the grid's minute
            p_clear = -np.expm1(-2.0 * d_entry * d_start / var)
        alive &= np.where(np.isfinite(p_clear) & (trig > 0), c["u_survive"] < p_clear, True)
    return alive

