"""Slow, obvious references for the population build's kernels: the NumPy originals, whole
arrays at once, of the survival test (:func:`cascade.model.population._survived`) of the
sizes, leverage caps and wallets (:func:`cascade.model.population._derive`) and of the
water-filling of sizes under a cap (:func:`cascade.model.population._rescale_capped`)."""

from __future__ import annotations

import numpy as np

from cascade.model.population import _rescale_capped
from cascade.rules.margin import liq_prices_nb

LONG, SHORT = 1, -1


def survived(c: dict, qty, lp, suffix_min, suffix_max, p0: float, bridge=None) -> np.ndarray:
    """:func:`cascade.model.population._survived` (the model is in its docstring), whole arrays
    at once: bool (n,)."""
    side = c["side"]
    long = side == LONG
    path_lo, path_hi = suffix_min[c["gk"]], suffix_max[c["gk"]]  # its own history path
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
            var = np.maximum(var_grid[c["gk"] % var_grid.size], var_min)  # >= the grid's minute
            p_clear = -np.expm1(-2.0 * d_entry * d_start / var)
        alive &= np.where(np.isfinite(p_clear) & (trig > 0), c["u_survive"] < p_clear, True)
    return alive



def derive(c: dict, table, targets: dict, max_share: float, p0: float) -> dict:
    """Sizes scaled to the open-interest targets, leverage capped to the bracket, wallets, LPs.

    ``c`` holds the candidate arrays (n,): side, shape (notional before scaling), leverage, entry,
    cross, spare. Returns qty (coin), lev, wallet (USD), lp (USD), br (bracket index), all (n,).
    """
    side = c["side"]
    notional = c["shape"].copy()
    for s in (LONG, SHORT):
        _rescale_capped(notional, side == s, targets[s], max_share)
    qty = notional / p0  # the target is notional at the start price
    del notional
    entry_notional = qty * c["entry"]
    b_entry = np.searchsorted(table.cap, entry_notional, side="left")  # floor < n <= cap
    lev = np.minimum(c["leverage"], table.max_leverage[b_entry])
    del b_entry
    wallet = entry_notional / lev
    del entry_notional
    cross = c["cross"]
    wallet[cross] *= 1.0 + c["spare"][cross]
    lp = np.empty(qty.size)
    br = np.empty(qty.size, np.int8)
    liq_prices_nb(side, qty, c["entry"], wallet, table.floor, table.cap, table.mmr, table.cum,
                  lp, br)
    return {"qty": qty, "lev": lev, "wallet": wallet, "lp": lp, "br": br}



def rescale_capped(notional, mask, target, max_share) -> None:
    """Scale ``notional[mask]`` (in place) to sum to ``target``, no element above
    ``max_share * target``. Water-filling: capped elements stay at the cap, the rest are rescaled."""
    idx = np.flatnonzero(mask & (notional > 0))
    if idx.size == 0:
        return
    vals = notional[idx]
    cap = max_share * target
    if cap * idx.size < target:  # too few positions to reach the target under the cap
        cap = target / idx.size
    capped = np.zeros(idx.size, bool)
    for _ in range(64):
        free_target = target - cap * np.count_nonzero(capped)
        free = ~capped
        if not free.any():  # every element at the cap: the cap times the count is the target
            break
        vals[free] *= free_target / vals[free].sum()
        over = free & (vals > cap)
        if not over.any():
            break
        vals[over] = cap
        capped |= over
    notional[idx] = vals
