"""Slow, obvious pure-Python references for the exchange-rule kernels.

Covers :mod:`cascade.rules.mark`, :mod:`cascade.rules.funding`, :mod:`cascade.rules.partial` and
:mod:`cascade.rules.adl`. Plain loops over Python floats (exact fractions where a tie rule matters); no
numba, no NumPy arithmetic. Formulas as in ``../shared/reference/mechanics.md`` (read 2026-11-21).
"""

from __future__ import annotations

import math
from fractions import Fraction

from tests.naive.margin import bracket_of


def _floats(a):
    return [float(x) for x in a]


# ------------------------------------------------------------------------------- mark / index

def index_price(prices, weights):
    """Weighted mean over venues with weight > 0 and a finite price; NaN if none."""
    num = 0.0
    den = 0.0
    for p, w in zip(_floats(prices), _floats(weights)):
        if w > 0 and math.isfinite(w) and math.isfinite(p):
            num += w * p
            den += w
    return num / den if den > 0 else math.nan


def weighted_median(values, weights):
    """Minimiser of sum w|v - m| by brute force over the data points, in exact fractions;
    midpoint of the minimising interval when it is not a single point."""
    pts = [(Fraction(v), Fraction(w)) for v, w in zip(_floats(values), _floats(weights))
           if w > 0 and math.isfinite(w) and math.isfinite(v)]
    if not pts:
        return math.nan

    def cost(m):
        return sum(w * abs(v - m) for v, w in pts)

    costs = [(cost(v), v) for v, _ in pts]
    best = min(c for c, _ in costs)
    arg = [v for c, v in costs if c == best]
    return float((min(arg) + max(arg)) / 2)


def median(values):
    v = sorted(_floats(values))
    n = len(v)
    if n == 0:
        return math.nan
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def binance_mark(index, last_funding, time_to_next_s, interval_s, basis_mean, last):
    p1 = index * (1 + last_funding * time_to_next_s / interval_s)
    p2 = index + basis_mean
    return sorted([p1, p2, last])[1]


def moving_average(samples, window, fill=None):
    """Mean of the last ``window`` values of ``[fill]*window + samples`` (``fill`` None: of the
    samples so far)."""
    hist = ([fill] * window if fill is not None else []) + list(samples)
    last = hist[-window:]
    return math.fsum(last) / len(last)


def ema(samples, dts, tau):
    """Continuous-time EMA: first sample as start, then e += (1 - exp(-dt/tau)) (x - e)."""
    e = None
    out = []
    for x, dt in zip(samples, dts):
        e = x if e is None else e + (1 - math.exp(-dt / tau)) * (x - e)
        out.append(e)
    return out


def hl_mark(oracle, basis_ema, bid, ask, last, cex_mids):
    if len(cex_mids) == 0:
        return math.nan
    return sorted([oracle + basis_ema, sorted([bid, ask, last])[1], median(cex_mids)])[1]


# ---------------------------------------------------------------------------------- funding

def premium_index(impact_bid, impact_ask, index):
    up = impact_bid - index if impact_bid > index else 0.0
    down = index - impact_ask if index > impact_ask else 0.0
    return (up - down) / index


def funding_rate(pbar, interest, clamp, cap):
    d = interest - pbar
    if d > clamp:
        d = clamp
    if d < -clamp:
        d = -clamp
    f = pbar + d
    if cap > 0:
        if f > cap:
            f = cap
        if f < -cap:
            f = -cap
    return f


def time_to_next_funding(t_s, interval_s):
    """Exact in fractions: next multiple of the interval strictly after t, minus t."""
    t = Fraction(t_s)
    iv = Fraction(interval_s)
    k = math.floor(t / iv) + 1
    return float(k * iv - t)


def funding_events(t_prev_s, t_now_s, interval_s):
    iv = Fraction(interval_s)
    return sum(1 for k in range(math.floor(Fraction(t_prev_s) / iv) - 1,
                                math.floor(Fraction(t_now_s) / iv) + 2)
               if Fraction(t_prev_s) < k * iv <= Fraction(t_now_s))


def apply_funding(side, qty, wallet, active, d_long, d_short):
    """Returns new wallets and (total long change, total short change)."""
    out = []
    tl = ts = 0.0
    for s, q, w, a in zip(side, _floats(qty), _floats(wallet), active):
        if a:
            x = q * (d_long if s > 0 else d_short)
            if s > 0:
                tl += x
            else:
                ts += x
            w = w + x
        out.append(w)
    return out, (tl, ts)


# ---------------------------------------------------------------------------------- partial

def requirement(notional, mmr, cum, cap, fee, use_cum):
    b = bracket_of(notional, cap)
    r = notional * (float(mmr[b]) + fee)
    return r - float(cum[b]) if use_cum else r


def tier_step_down(side, qty, entry, wallet, mark, fill, floor, cap, mmr, cum, tiers_per_step,
                   min_tier, max_steps, tier1_guard, fee, use_cum, liq_on_equal):
    """Step-down as a readable loop; returns the same 7-tuple as the kernel."""
    s = 1 if side > 0 else -1
    cap_l = _floats(cap)

    def liquidatable(e, r):
        return e < r or (liq_on_equal and e == r)

    q, w = qty, wallet
    e = w + s * q * (mark - entry)
    b = bracket_of(q * mark, cap_l)
    if not liquidatable(e, requirement(q * mark, mmr, cum, cap_l, fee, use_cum)):
        return 0, 0, 0.0, q, w, 0.0, b
    steps, closed, realized = 0, 0.0, 0.0
    while True:
        tier1_req = q * mark * (float(mmr[0]) + fee) - (float(cum[0]) if use_cum else 0.0)
        if b < min_tier or steps >= max_steps or (tier1_guard and not e > tier1_req):
            return 2, steps, closed, q, w, realized, b
        target = max(b - tiers_per_step, 0)
        keep = cap_l[target] / mark
        while keep * mark > cap_l[target]:
            keep = math.nextafter(keep, 0.0)
        gone = q - keep
        pnl = s * gone * (fill - entry)
        w, realized, closed, q, steps = w + pnl, realized + pnl, closed + gone, keep, steps + 1
        b = bracket_of(q * mark, cap_l)
        e = w + s * q * (mark - entry)
        if not liquidatable(e, requirement(q * mark, mmr, cum, cap_l, fee, use_cum)):
            return 1, steps, closed, q, w, realized, b


def okx_gap(side, qty, entry, wallet, price, cap, mmr, fee):
    """OKX: equity - Q*P*(MMR_tier + fee), tier of the notional Q*P (no maintenance amount)."""
    s = 1 if side > 0 else -1
    b = bracket_of(qty * price, cap)
    return wallet + s * qty * (price - entry) - qty * price * (float(mmr[b]) + fee)


def hl_liquidation(side, qty, entry, wallet, mark, t, t_last, floor, cap, mmr, cum):
    """0 none, 1 partial 20 %, 2 full, 3 backstop; returns (action, close_qty, equity, mm)."""
    s = 1 if side > 0 else -1
    notional = qty * mark
    b = bracket_of(notional, cap)
    mm = notional * float(mmr[b]) - float(cum[b])
    e = wallet + s * qty * (mark - entry)
    if e >= mm:
        return 0, 0.0, e, mm
    if e < mm * 2 / 3:
        return 3, qty, e, mm
    if notional > 100_000 and t - t_last >= 30:
        return 1, qty * 0.2, e, mm
    return 2, qty, e, mm


# -------------------------------------------------------------------------------------- ADL

def binance_rank(side, qty, entry, wallet, mark):
    s = 1 if side > 0 else -1
    notional = qty * mark
    upnl = s * qty * (mark - entry)
    if wallet + upnl <= 0:
        return -math.inf
    pnl_pct = upnl / notional
    eff_lev = notional / (wallet + upnl)
    return pnl_pct * eff_lev if pnl_pct >= 0 else pnl_pct / eff_lev


def hl_rank(side, qty, entry, wallet, mark):
    s = 1 if side > 0 else -1
    value = wallet + s * qty * (mark - entry)
    if value <= 0:
        return -math.inf
    return (mark / entry) * (qty * mark / value)


def adl_walk(ranks, side, qty, entry, active, liq_side, qty_needed, price):
    """Sort the other side by (-rank, row) and take rows until qty_needed is reached.

    Returns (order, [(row, closed_qty, pnl)], total closed)."""
    want = -1 if liq_side > 0 else 1
    rows = [i for i in range(len(side)) if active[i] and side[i] == want]
    order = sorted(rows, key=lambda i: (-ranks[i], i))
    out = []
    done = 0.0
    for i in order:
        left = qty_needed - done
        if left <= 0:
            break
        c = min(float(qty[i]), left)
        if c <= 0:
            continue
        s = 1 if side[i] > 0 else -1
        out.append((i, c, s * c * (price - float(entry[i]))))
        done += c
        if float(qty[i]) > c:
            break
    return order, out, done
