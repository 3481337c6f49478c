"""Slow, obvious pure-Python references for :mod:`cascade.rules.margin` (plain loops, no numba).

Arrays are converted to Python lists of floats first; everything after is scalar arithmetic.
"""

from __future__ import annotations

import math


def _floats(a):
    return [float(x) for x in a]


def bracket_of(notional, cap):
    """First bracket whose (inclusive) cap is >= notional; brackets are (floor, cap]."""
    cap = _floats(cap)
    for i in range(len(cap)):
        if notional <= cap[i]:
            return i
    return len(cap) - 1


def maintenance_margin(qty, mark, floor, cap, mmr, cum):
    """MM = Q*mark*MMR_b - cum_b, b the bracket of the notional Q*mark."""
    notional = qty * mark
    b = bracket_of(notional, cap)
    return notional * float(mmr[b]) - float(cum[b])


def bankruptcy_price(side, qty, entry, wallet):
    """BP = EP - s*WB/Q, floored at 0 for longs."""
    s = 1.0 if side > 0 else -1.0
    bp = entry - s * wallet / qty
    if s > 0 and bp < 0:
        bp = 0.0
    return bp


def liq_price(side, qty, entry, wallet, other_mm, other_upnl, floor, cap, mmr, cum):
    """Binance LP formula tried in every bracket, lowest first; keep the first consistent one.

    Same conventions as ``cascade.rules.margin.liq_price_nb``: bracket i holds notionals in
    (floor_i, cap_i] (bracket 0 also everything <= 0); a long with LP <= 0 -> (0.0, 0); no
    consistent bracket (rounding on a boundary) -> the LP with the smallest miss, with the bracket
    that contains its notional; qty <= 0 -> (nan, 0).
    """
    floor, cap, mmr, cum = _floats(floor), _floats(cap), _floats(mmr), _floats(cum)
    if not qty > 0:
        return math.nan, 0
    s = 1.0 if side > 0 else -1.0
    candidates = []  # (miss, bracket, lp)
    for b in range(len(floor)):
        numerator = (wallet - other_mm + other_upnl) + cum[b] - s * qty * entry
        denominator = qty * mmr[b] - s * qty
        lp = numerator / denominator
        if b == 0 and s > 0 and lp <= 0:
            return 0.0, 0
        notional = qty * lp
        lower_ok = b == 0 or notional > floor[b]
        upper_ok = notional <= cap[b]
        if lower_ok and upper_ok:
            return lp, b
        miss = notional - cap[b] if lower_ok else floor[b] - notional
        candidates.append((miss, b, lp))
    best = candidates[0]
    for c in candidates[1:]:
        if c[0] < best[0]:
            best = c
    lp = best[2]
    return lp, bracket_of(qty * lp, cap)


def liq_price_bisect(side, qty, entry, wallet, floor, cap, mmr, cum, iters=200):
    """Independent check: bisection on f(P) = equity(P) - MM(P) (isolated position).

    Long: f increases in P; returns 0.0 when f(0) >= 0 (never liquidated). Short: f decreases;
    returns None when f(0) <= 0 (already liquidated at every positive price).
    """
    s = 1.0 if side > 0 else -1.0

    def f(p):
        return wallet + s * qty * (p - entry) - maintenance_margin(qty, p, floor, cap, mmr, cum)

    if s > 0 and f(0.0) >= 0:
        return 0.0
    if s < 0 and f(0.0) <= 0:
        return None
    lo, hi = 0.0, max(entry, 1.0)
    while s * f(hi) < 0:  # grow until the sign flips (f(0) and f(hi) differ)
        hi *= 2.0
    # invariant: s*f(lo) < 0 <= s*f(hi)   (long: f(lo) < 0 <= f(hi); short mirrored)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        if s * f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
