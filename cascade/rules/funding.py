r"""Funding: premium index, funding rate, payments, and their effect on liquidation prices.

Every formula and constant comes from ``../shared/reference/mechanics.md`` (read on 2026-11-21),
which condenses the venues' documentation; the section is cited next to each.

Binance (mechanics.md section 1 "Index, mark, funding"; Binance FAQ 360033525031)::

    Premium P = [max(0, ImpactBid - Index) - max(0, Index - ImpactAsk)] / Index, sampled every 5 s
    F         = Pbar + clamp(I - Pbar, -0.05%, +0.05%),  I = 0.01% per 8 h
    |F|      <= 0.75 * tier-1 MMR  (BTCUSDT: 0.3%)
    payment   = Q * Mark * F every 8 h (00, 08, 16 UTC); longs pay shorts when F > 0

Hyperliquid (mechanics.md section 3)::

    F8h = Pbar + clamp(I - Pbar, +-0.05%), paid hourly as F8h/8 on size x oracle

Simplification without an order book: with ``ImpactBid = ImpactAsk = last`` the documented
premium reduces to ``(last - Index) / Index`` (:func:`premium_from_last_nb`); that is the
premium the engine can compute, the documented formula (:func:`premium_index_nb`) takes the impact
prices as inputs.

Ladder offset: funding as a per-side constant shift of liquidation prices
------------------------------------------------------------------------------
A funding payment is the same *per unit of size* for every position of a side: the wallet of a
position of side ``s`` and size ``Q`` changes by ``Q * d_s`` with ``d_s = -s * Mark * F`` (USD per
coin; Hyperliquid ``-s * oracle * F8h / 8``). Binance's liquidation price (cascade.rules.margin)::

    LP = (WB - TMM1 + UPNL1 + cum_b - s*Q*EP) / (Q*(MMR_b - s)),   b: bracket containing Q*LP

is affine in ``WB`` inside one bracket, with slope ``1 / (Q*(MMR_b - s))``. Replacing ``WB`` by
``WB + Q*d`` therefore moves LP by::

    dLP = d / (MMR_b - s) = -s * d / (1 - s*MMR_b)        (USD per coin)

which does not depend on ``Q``, ``EP``, ``WB`` or ``cum_b``: it is the same for every position of
a side *whose bracket at the liquidation price is the same*. (Long paying ``p`` per coin,
``d = -p``: LP rises by ``p / (1 - MMR_b)``; short paying ``p``: LP falls by ``p / (1 + MMR_b)``.
mechanics.md section 1 states "moves LP toward the entry price by payment / Q", which is the
``MMR -> 0`` limit of this; the exact Binance shift carries the ``1/(1 -+ MMR)`` factor. The
bankruptcy price ``EP - s*WB/Q`` moves by exactly ``-s*d``.)

So, keeping per side the cumulative wallet change per coin ``C_s`` (sum of ``d_s`` over the
funding events since the ladder was built), the exact liquidation price of a position is::

    LP = key + C_s / (MMR_b - s)          key: the LP it had at C_s = 0, b: its bracket then

and no position needs rewriting, **as long as the notional at the shifted LP stays inside
bracket b** (the boundaries themselves are safe: maintenance margin is continuous in the notional,
so both neighbouring formulas agree there). When ``Q * LP`` leaves ``[floor_b, cap_b]`` the
formula of another bracket applies and the shift is no longer ``C_s/(MMR_b - s)``: such a position
must be recomputed (:func:`effective_lp_nb` flags it, :func:`funding_c_range_nb` gives for every
position the interval of ``C_s`` over which it stays exact, so an engine can find the positions to
recompute by walking a sorted list instead of scanning everything, and :func:`refresh_keys_nb`
recomputes them). Two more consequences:

* Positions of one side in different brackets shift by different amounts (``1/(1 - MMR_b)`` is
  1.004 for MMR 0.4 % and 2 for MMR 50 %), so one offset per side keeps the ladder's order only
  inside a bracket: the offset is per (side, bracket) (:func:`ladder_offsets_nb`).
* A long that cannot be liquidated (LP clamped to 0 by cascade.rules.margin) is kept with its unclamped
  bracket-0 value as key (negative), and its LP is ``max(key + shift, 0)``; that is exact too
  (bracket 0 holds all notionals <= its cap, negative ones included).

It holds for isolated positions and for cross positions whose account holds no other position
in the symbol (``TMM1 = UPNL1 = 0``, the engine's population). For a cross account with other
positions, their funding changes the shared wallet too and their ``TMM1``/``UPNL1`` move with the
mark, so the per-side offset is not exact there.
"""

from __future__ import annotations

import numba
import numpy as np

from cascade._numba import jit, pjit
from cascade.rules.margin import liq_price_nb

__all__ = [
    "BINANCE_CAP_TIER1_MMR_FRACTION",
    "BINANCE_CLAMP",
    "BINANCE_FUNDING_INTERVAL_S",
    "BINANCE_INTEREST_8H",
    "BINANCE_PREMIUM_SAMPLE_S",
    "HL_CLAMP",
    "HL_FUNDING_INTERVAL_S",
    "HL_HOURLY_DIVISOR",
    "apply_funding_cross_nb",
    "apply_funding_isolated_nb",
    "binance_funding_cap",
    "binance_funding_rate",
    "effective_lp_nb",
    "effective_lps",
    "effective_wallet_nb",
    "funding_c_range_nb",
    "funding_events_nb",
    "funding_lp_shift",
    "funding_lp_shift_nb",
    "funding_payment_per_unit_nb",
    "funding_rate_nb",
    "hl_funding_rate_hourly_nb",
    "ladder_key_nb",
    "ladder_keys",
    "ladder_offsets_nb",
    "premium_accumulate_nb",
    "premium_average_nb",
    "premium_from_last_nb",
    "premium_index_nb",
    "refresh_keys_nb",
    "time_to_next_funding_nb",
    "wallet_change_per_unit_nb",
]

# --- constants (source: mechanics.md, read 2026-11-21) ----------------------------------------
# Binance funding every 8 h at 00, 08, 16 UTC (mechanics.md section 1 "Index, mark, funding",
# Binance FAQ 360033525031). Multiples of 8 h since the Unix epoch fall on 00/08/16 UTC.
BINANCE_FUNDING_INTERVAL_S = 8 * 3600
# Interest rate I = 0.01 % per 8 h (= 0.03 % per day) (mechanics.md section 1).
BINANCE_INTEREST_8H = 0.0001
# clamp(I - Pbar, -0.05 %, +0.05 %) (mechanics.md section 1).
BINANCE_CLAMP = 0.0005
# |F| <= 0.75 * tier-1 MMR (BTCUSDT: 0.75 * 0.40 % = 0.3 %) (mechanics.md section 1).
BINANCE_CAP_TIER1_MMR_FRACTION = 0.75
# Premium index sampled every 5 s (mechanics.md section 1).
BINANCE_PREMIUM_SAMPLE_S = 5
# Hyperliquid: paid hourly as F8h / 8 (mechanics.md section 3).
HL_FUNDING_INTERVAL_S = 3600
HL_HOURLY_DIVISOR = 8
# Hyperliquid clamp(I - Pbar, +-0.05 %) (mechanics.md section 3).
HL_CLAMP = 0.0005


# --- premium ----------------------------------------------------------------------------------

@jit
def premium_index_nb(impact_bid, impact_ask, index):
    """Binance premium index (documented form, with impact prices).

    ``P = [max(0, ImpactBid - Index) - max(0, Index - ImpactAsk)] / Index``; mechanics.md
    section 1 "Index, mark, funding" (Binance FAQ 360033525031, read 2026-11-21); sampled every
    5 s (:data:`BINANCE_PREMIUM_SAMPLE_S`).

    Parameters
    ----------
    impact_bid, impact_ask : float64, USD per coin (average fill price of a market sell / buy of
        the venue's impact notional; not modelled by the engine)
    index : float64, USD per coin, > 0

    Returns
    -------
    float64, fraction (0.0001 = 0.01 %)
    """
    return (max(0.0, impact_bid - index) - max(0.0, index - impact_ask)) / index


@jit
def premium_from_last_nb(last, index):
    """Premium without an order book: :func:`premium_index_nb` with ImpactBid = ImpactAsk = last.

    ``[max(0, last - I) - max(0, I - last)] / I = (last - I) / I`` (the documented simplification
    of this module; see the module docstring).

    Parameters
    ----------
    last, index : float64, USD per coin, index > 0

    Returns
    -------
    float64, fraction
    """
    return premium_index_nb(last, last, index)


@jit
def premium_accumulate_nb(acc, premium, weight):
    """Add one premium sample to a weighted-average accumulator.

    mechanics.md writes ``Pbar`` for the interval's average premium without defining the
    weighting (a gap): the caller chooses it (``weight = 1`` for a plain mean of the 5 s samples).

    Parameters
    ----------
    acc : float64 array, shape (2,), in/out: sum of weight*premium, sum of weights
    premium : float64, fraction
    weight : float64, >= 0
    """
    acc[0] += weight * premium
    acc[1] += weight


@jit
def premium_average_nb(acc):
    """``Pbar`` from an accumulator filled by :func:`premium_accumulate_nb`.

    Parameters
    ----------
    acc : float64 array, shape (2,)

    Returns
    -------
    float64, fraction; 0.0 when no weight was added.
    """
    if acc[1] <= 0.0:
        return 0.0
    return acc[0] / acc[1]


# --- funding rate -----------------------------------------------------------------------------

@jit
def funding_rate_nb(pbar, interest, clamp, cap):
    """Funding rate ``F = Pbar + clamp(I - Pbar, -clamp, +clamp)``, then ``|F| <= cap``.

    Source: mechanics.md section 1 "Index, mark, funding" (Binance FAQ 360033525031, read
    2026-11-21); section 3 gives the same form for Hyperliquid's 8-hour rate.

    Parameters
    ----------
    pbar : float64, average premium over the interval, fraction
    interest : float64, interest rate per interval, fraction (Binance: 0.0001 per 8 h)
    clamp : float64, >= 0, fraction (Binance and Hyperliquid: 0.0005)
    cap : float64, fraction; ``|F|`` is capped at ``cap`` when ``cap > 0`` (Binance:
        0.75 x tier-1 MMR); ``cap <= 0``: no cap

    Returns
    -------
    float64, fraction per interval; > 0: longs pay shorts.
    """
    d = interest - pbar
    if d > clamp:
        d = clamp
    elif d < -clamp:
        d = -clamp
    f = pbar + d
    if cap > 0.0:
        if f > cap:
            f = cap
        elif f < -cap:
            f = -cap
    return f


def binance_funding_cap(table) -> float:
    """Binance funding cap ``0.75 * tier-1 MMR`` (BTCUSDT: 0.3 %).

    Source: mechanics.md section 1 "Index, mark, funding" (read 2026-11-21).

    Parameters
    ----------
    table : cascade.rules.brackets.BracketTable (Binance)

    Returns
    -------
    float, fraction per 8 h
    """
    return BINANCE_CAP_TIER1_MMR_FRACTION * float(table.mmr[0])


def binance_funding_rate(pbar: float, table=None, interest: float = BINANCE_INTEREST_8H,
                         clamp: float = BINANCE_CLAMP) -> float:
    """Binance 8-hour funding rate from the average premium, with interest, clamp and cap.

    Parameters
    ----------
    pbar : float, average premium index over the interval, fraction
    table : cascade.rules.brackets.BracketTable or None; its tier-1 MMR sets the cap
        (:func:`binance_funding_cap`). None: the latest Binance BTCUSDT table.
    interest, clamp : float, fractions per 8 h (defaults: 0.01 % and 0.05 %, mechanics.md
        section 1)

    Returns
    -------
    float, fraction per 8 h
    """
    if table is None:
        from cascade.rules.brackets import bracket_table

        table = bracket_table("binance", "BTCUSDT")
    return float(funding_rate_nb(float(pbar), float(interest), float(clamp),
                                 binance_funding_cap(table)))


@jit
def hl_funding_rate_hourly_nb(pbar, interest_8h):
    """Hyperliquid hourly funding rate ``F8h / 8``, ``F8h = Pbar + clamp(I - Pbar, +-0.05 %)``.

    Source: mechanics.md section 3 (Hyperliquid docs, read 2026-11-21). mechanics.md gives no
    value of ``I`` and no cap for Hyperliquid (gaps): ``interest_8h`` is an input (section 1's
    Binance value is 0.0001 per 8 h) and no cap is applied.

    Parameters
    ----------
    pbar : float64, average premium, fraction (per 8 h)
    interest_8h : float64, fraction per 8 h

    Returns
    -------
    float64, fraction per hour, paid on size x oracle
    """
    return funding_rate_nb(pbar, interest_8h, HL_CLAMP, 0.0) / HL_HOURLY_DIVISOR


# --- timing -----------------------------------------------------------------------------------

@jit
def time_to_next_funding_nb(t_s, interval_s):
    """Seconds from ``t_s`` to the next funding time (multiples of the interval since the epoch).

    Binance pays at 00, 08, 16 UTC (8 h interval), Hyperliquid every hour (mechanics.md
    sections 1 and 3). At a funding instant itself the payment is due now and the next one is a
    full interval away: the result lies in ``(0, interval_s]``.

    Parameters
    ----------
    t_s : float64, seconds since 1970-01-01 UTC
    interval_s : float64, seconds, > 0

    Returns
    -------
    float64, seconds
    """
    r = t_s - np.floor(t_s / interval_s) * interval_s
    return interval_s - r


@jit
def funding_events_nb(t_prev_s, t_now_s, interval_s):
    """Number of funding instants ``k * interval_s`` in ``(t_prev_s, t_now_s]``.

    Parameters
    ----------
    t_prev_s, t_now_s : float64, seconds since the epoch, ``t_prev_s <= t_now_s``
    interval_s : float64, seconds

    Returns
    -------
    int64
    """
    return np.int64(np.floor(t_now_s / interval_s) - np.floor(t_prev_s / interval_s))


# --- payments ---------------------------------------------------------------------------------

@jit
def funding_payment_per_unit_nb(side, price, rate):
    """What a position of ``side`` pays per coin of size: ``s * price * F``.

    Binance ``payment = Q * Mark * F``, longs pay shorts when F > 0 (mechanics.md section 1
    "Index, mark, funding", read 2026-11-21); Hyperliquid pays ``F8h/8`` on size x oracle
    (section 3): pass the oracle and the hourly rate.

    Parameters
    ----------
    side : int, +1 long / -1 short
    price : float64, USD per coin (Binance: mark; Hyperliquid: oracle)
    rate : float64, fraction per interval

    Returns
    -------
    float64, USD per coin; > 0 paid, < 0 received.
    """
    s = 1.0 if side > 0 else -1.0
    return s * price * rate


@jit
def wallet_change_per_unit_nb(side, price, rate):
    """Wallet change per coin of size at a funding event: ``d = -s * price * F``.

    Source as :func:`funding_payment_per_unit_nb` (mechanics.md sections 1 and 3, read
    2026-11-21).

    Parameters
    ----------
    side : int, +1 long / -1 short
    price : float64, USD per coin (Binance: mark; Hyperliquid: oracle)
    rate : float64, fraction per interval

    Returns
    -------
    float64, USD per coin; < 0 when the side pays.
    """
    return -funding_payment_per_unit_nb(side, price, rate)


@jit
def apply_funding_isolated_nb(side, qty, wallet, active, d_long, d_short):
    """Pay one funding event into every active position's own wallet: ``WB += Q * d_s``.

    Isolated positions, and cross positions whose cross wallet backs only them (the engine's
    population).

    Parameters
    ----------
    side : int8 array, shape (n,), +1 long / -1 short
    qty : float64 array, shape (n,), coin
    wallet : float64 array, shape (n,), in/out, USD
    active : bool array, shape (n,); inactive rows (closed positions) are left alone
    d_long, d_short : float64, wallet change per coin of a long / short, USD per coin
        (:func:`wallet_change_per_unit_nb`)

    Returns
    -------
    (float64, float64): total wallet change of the longs and of the shorts, USD.
    """
    # an isolated position is a cross account of its own
    return apply_funding_cross_nb(side, qty, np.arange(side.shape[0]), wallet, active, d_long,
                                  d_short)


@jit
def apply_funding_cross_nb(side, qty, account, account_wallet, active, d_long, d_short):
    """Pay one funding event into cross wallets shared by several positions.

    ``account_wallet[account[i]] += Q_i * d_{s_i}`` for every active position ``i``.

    Parameters
    ----------
    side : int8 array, shape (n,)
    qty : float64 array, shape (n,), coin
    account : int64 array, shape (n,), index of each position's account in ``account_wallet``
    account_wallet : float64 array, shape (a,), in/out, USD
    active : bool array, shape (n,)
    d_long, d_short : float64, USD per coin

    Returns
    -------
    (float64, float64): total wallet change of the longs and of the shorts, USD.
    """
    tl = 0.0
    ts = 0.0
    for i in range(side.shape[0]):
        if not active[i]:
            continue
        if side[i] > 0:
            x = qty[i] * d_long
            tl += x
        else:
            x = qty[i] * d_short
            ts += x
        account_wallet[account[i]] += x
    return tl, ts


# --- ladder offset ----------------------------------------------------------------------------

@jit
def funding_lp_shift_nb(side, mmr_b, d):
    """Exact move of a liquidation price when the wallet changes by ``d`` per coin of size.

    ``dLP = d / (MMR_b - s)`` (derived from cascade.rules.margin's LP formula; see the module
    docstring); valid while the notional at the new LP stays in bracket ``b``.

    Parameters
    ----------
    side : int, +1 long / -1 short
    mmr_b : float64, MMR of the bracket containing the notional at the liquidation price
    d : float64, wallet change per coin, USD per coin (e.g. a cumulative ``C_s``)

    Returns
    -------
    float64, USD per coin
    """
    s = 1.0 if side > 0 else -1.0
    return d / (mmr_b - s)


def funding_lp_shift(side, bracket, table, d):
    """Vectorised :func:`funding_lp_shift_nb`.

    Parameters
    ----------
    side : array-like, shape (n,), +1/-1
    bracket : array-like of int, shape (n,), bracket at the liquidation price (0-based)
    table : cascade.rules.brackets.BracketTable
    d : float or array-like, shape (n,), USD per coin

    Returns
    -------
    float64 array, shape (n,), USD per coin
    """
    s = np.where(np.asarray(side) > 0, 1.0, -1.0)
    return np.asarray(d, np.float64) / (table.mmr[np.asarray(bracket, np.int64)] - s)


@jit
def ladder_offsets_nb(c_long, c_short, mmr, out):
    """Per (side, bracket) offset added to the ladder keys: ``C_s / (MMR_b - s)``.

    Parameters
    ----------
    c_long, c_short : float64, cumulative wallet change per coin of longs / shorts since the
        keys were built, USD per coin
    mmr : float64 array, shape (k,), bracket MMRs
    out : float64 array, shape (2, k), written: row 0 longs, row 1 shorts, USD per coin
    """
    for b in range(mmr.shape[0]):
        out[0, b] = c_long / (mmr[b] - 1.0)
        out[1, b] = c_short / (mmr[b] + 1.0)


@jit
def effective_wallet_nb(side, qty, wallet_key, c_long, c_short):
    """A position's wallet after the funding accumulated in ``C_s``: ``WB_key + Q * C_s``.

    Parameters
    ----------
    side : int, +1/-1
    qty : float64, coin
    wallet_key : float64, USD, the wallet when ``C_s`` was 0
    c_long, c_short : float64, USD per coin

    Returns
    -------
    float64, USD
    """
    return wallet_key + qty * (c_long if side > 0 else c_short)


@jit
def ladder_key_nb(side, qty, entry, wallet, c_side, floor, cap, mmr, cum):
    """Ladder key and bracket of one position at the current cumulative funding ``c_side``.

    ``key = LP - C_s/(MMR_b - s)`` with ``LP`` the exact liquidation price for ``wallet`` (the
    position's wallet *now*, funding included), so that ``key + C_s/(MMR_b - s)`` gives the LP back
    while the bracket holds. A long that cannot be liquidated gets its unclamped bracket-0 value
    (<= 0) as LP.

    Parameters
    ----------
    side : int, +1/-1
    qty, entry, wallet : float64; coin, USD per coin, USD
    c_side : float64, cumulative wallet change per coin of the position's side, USD per coin
    floor, cap, mmr, cum : float64 arrays, shape (k,), bracket table

    Returns
    -------
    (float64, int64): key (USD per coin), bracket (0-based)
    """
    s = 1.0 if side > 0 else -1.0
    lp, b = liq_price_nb(side, qty, entry, wallet, 0.0, 0.0, floor, cap, mmr, cum)
    if s > 0.0 and lp == 0.0:
        lp = (wallet + cum[0] - qty * entry) / (qty * mmr[0] - qty)
        b = np.int64(0)
    return lp - c_side / (mmr[b] - s), b


def ladder_keys(table, side, qty, entry, wallet, c_long=0.0, c_short=0.0):
    """Keys and brackets of many positions (:func:`ladder_key_nb` in a loop).

    Parameters
    ----------
    table : cascade.rules.brackets.BracketTable
    side : array-like, shape (n,), +1/-1
    qty, entry, wallet : array-like, shape (n,); coin, USD per coin, USD (current wallets)
    c_long, c_short : float, USD per coin

    Returns
    -------
    key : float64 array, shape (n,), USD per coin
    bracket : int8 array, shape (n,)
    """
    side = np.ascontiguousarray(side, np.int8)
    qty = np.ascontiguousarray(qty, np.float64)
    entry = np.ascontiguousarray(entry, np.float64)
    wallet = np.ascontiguousarray(wallet, np.float64)
    key = np.empty(side.shape[0], np.float64)
    br = np.empty(side.shape[0], np.int8)
    _ladder_keys_nb(side, qty, entry, wallet, float(c_long), float(c_short), table.floor,
                    table.cap, table.mmr, table.cum, key, br)
    return key, br


@pjit
def _ladder_keys_nb(side, qty, entry, wallet, c_long, c_short, floor, cap, mmr, cum, out_key,
                    out_br):
    for i in numba.prange(side.shape[0]):
        c = c_long if side[i] > 0 else c_short
        k, b = ladder_key_nb(side[i], qty[i], entry[i], wallet[i], c, floor, cap, mmr, cum)
        out_key[i] = k
        out_br[i] = np.int8(b)


@pjit
def effective_lp_nb(side, qty, key, bracket, c_long, c_short, floor, cap, mmr, out_lp,
                    out_stale):
    """Liquidation prices from the ladder keys and the per-side cumulative funding.

    ``LP = key + C_s/(MMR_b - s)`` (longs: ``max(., 0)``), exact while ``Q * (key + shift)`` lies
    in ``[floor_b, cap_b]`` (bracket 0: ``<= cap_0``). Rows where it does not are flagged stale:
    their ``out_lp`` is the bracket-``b`` value, which is *not* their liquidation price; recompute
    them (:func:`refresh_keys_nb`).

    Parameters
    ----------
    side : int8 array, shape (n,)
    qty : float64 array, shape (n,), coin
    key : float64 array, shape (n,), USD per coin (:func:`ladder_key_nb`)
    bracket : int8 array, shape (n,), bracket of each key
    c_long, c_short : float64, USD per coin
    floor, cap, mmr : float64 arrays, shape (k,)
    out_lp : float64 array, shape (n,), written, USD per coin
    out_stale : bool array, shape (n,), written
    """
    for i in numba.prange(side.shape[0]):
        b = bracket[i]
        if side[i] > 0:
            raw = key[i] + c_long / (mmr[b] - 1.0)
        else:
            raw = key[i] + c_short / (mmr[b] + 1.0)
        notional = qty[i] * raw
        stale = notional > cap[b] or (b > 0 and notional < floor[b])
        out_stale[i] = stale
        out_lp[i] = max(raw, 0.0) if side[i] > 0 else raw


def effective_lps(table, side, qty, key, bracket, c_long, c_short):
    """Convenience wrapper of :func:`effective_lp_nb` that allocates the outputs.

    Parameters
    ----------
    table : cascade.rules.brackets.BracketTable
    side : array-like, shape (n,), +1/-1
    qty : array-like, shape (n,), coin
    key : array-like, shape (n,), USD per coin (:func:`ladder_keys`)
    bracket : array-like of int, shape (n,), bracket of each key
    c_long, c_short : float, cumulative wallet change per coin since the keys, USD per coin

    Returns
    -------
    lp : float64 array, shape (n,), USD per coin
    stale : bool array, shape (n,)
    """
    n = len(side)
    out_lp = np.empty(n, np.float64)
    out_stale = np.empty(n, np.bool_)
    effective_lp_nb(np.ascontiguousarray(side, np.int8), np.ascontiguousarray(qty, np.float64),
                    np.ascontiguousarray(key, np.float64), np.ascontiguousarray(bracket, np.int8),
                    float(c_long), float(c_short), table.floor, table.cap, table.mmr, out_lp,
                    out_stale)
    return out_lp, out_stale


@pjit
def funding_c_range_nb(side, qty, key, bracket, floor, cap, mmr, out_lo, out_hi):
    """Interval of cumulative funding ``C_s`` over which each key stays exact.

    The key of row ``i`` gives its exact LP for every ``C_s`` in ``[out_lo[i], out_hi[i]]``
    (solving ``floor_b <= Q*(key + C/(MMR_b - s)) <= cap_b`` for ``C``; ``-inf``/``inf`` where a
    side is unbounded). An engine can sort rows by these bounds per side and, as ``C_s`` moves,
    walk the sorted bounds to find the rows to recompute, O(rows found) per funding event.

    Parameters
    ----------
    side : int8 array, shape (n,)
    qty, key : float64 arrays, shape (n,); coin, USD per coin
    bracket : int8 array, shape (n,)
    floor, cap, mmr : float64 arrays, shape (k,)
    out_lo, out_hi : float64 arrays, shape (n,), written, USD per coin
    """
    for i in numba.prange(side.shape[0]):
        if not qty[i] > 0.0:  # no position: nothing to keep exact
            out_lo[i] = -np.inf
            out_hi[i] = np.inf
            continue
        b = bracket[i]
        s = 1.0 if side[i] > 0 else -1.0
        g = mmr[b] - s  # LP = key + C / g; g < 0 for longs, > 0 for shorts
        c_cap = (cap[b] / qty[i] - key[i]) * g  # C at which Q*LP == cap_b
        if b == 0:
            c_floor = -np.inf * g  # no lower notional bound: C -> -inf*g side is free
        else:
            c_floor = (floor[b] / qty[i] - key[i]) * g
        if np.isinf(cap[b]):
            c_cap = np.inf * g
        lo = min(c_cap, c_floor)
        hi = max(c_cap, c_floor)
        out_lo[i] = lo
        out_hi[i] = hi


@jit
def refresh_keys_nb(rows, side, qty, entry, wallet_key, c_long, c_short, floor, cap, mmr, cum,
                    key, bracket):
    """Recompute the keys of ``rows`` (stale positions) at the current cumulative funding.

    The position's wallet now is ``wallet_key + Q * C_s`` (:func:`effective_wallet_nb`); its exact
    LP and bracket are recomputed with cascade.rules.margin's kernel and stored back as a key of the new
    bracket (:func:`ladder_key_nb`), so ``key + C_s/(MMR_b - s)`` is exact again. ``wallet_key`` is
    left as is.

    Parameters
    ----------
    rows : int64 array, shape (m,), positions to refresh
    side : int8 array, shape (n,)
    qty, entry, wallet_key : float64 arrays, shape (n,); coin, USD per coin, USD
    c_long, c_short : float64, USD per coin
    floor, cap, mmr, cum : float64 arrays, shape (k,)
    key : float64 array, shape (n,), in/out
    bracket : int8 array, shape (n,), in/out
    """
    for j in range(rows.shape[0]):
        i = rows[j]
        c = c_long if side[i] > 0 else c_short
        w = wallet_key[i] + qty[i] * c
        k, b = ladder_key_nb(side[i], qty[i], entry[i], w, c, floor, cap, mmr, cum)
        key[i] = k
        bracket[i] = np.int8(b)
