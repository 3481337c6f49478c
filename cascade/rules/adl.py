"""Auto-deleveraging (ADL): ranking of the opposite side and the closing walk, with accounting.

Every rule comes from ``../shared/reference/mechanics.md`` (read on 2026-11-21):

* Binance (section 1, "Liquidation process" step 5; Binance FAQ 360033525271): when the insurance
  fund cannot cover, ADL closes opposite-side positions **at the liquidated order's bankruptcy
  price**, ranked by::

      rank = PnL% * EffLev   if PnL% >= 0   else   PnL% / EffLev
      PnL% = uPnL / |notional|,   EffLev = |notional| / (WB + uPnL),   highest rank first

  Bybit ranks "by profit and effective leverage" and also fills at the bankruptcy price; OKX at
  mark (bankruptcy price when the fund is nearly empty), "ranked by PnL% x effective leverage"
  (section 2): the Binance rank and kernels serve them with the price as an input.
* Hyperliquid (section 3, "Auto-deleveraging"): when an account's value goes negative, the
  opposite side is ranked by ``(mark / entry) * (notional / account_value)`` and closed **at the
  previous mark price**.
* Section 5: "fund short -> ADL of the opposite side by rank, at BP (Binance, Bybit) | mark (OKX)
  | previous mark (Hyperliquid)"; "Accounting must balance: what traders lose, the fund and ADL'd
  counterparties gain, to the cent."

Deficit -> size (Binance): a liquidated position of side ``s`` filled at ``fill`` beyond its
bankruptcy price ``BP`` leaves ``s * (BP - fill)`` USD per coin to the fund. If the fund can pay
for only part of it, the remaining deficit ``D`` corresponds to ``D / |BP - fill|`` coin: those
coins are not sold to the market but handed to the ranked counterparties at ``BP``
(:func:`binance_adl_qty_nb`). Each closed coin then costs the counterparty ``|BP - fill|`` compared
with closing at ``fill``, so the counterparties together bear exactly ``D`` and no bad debt is left.

What mechanics.md does not say (gaps): whether the last counterparty is closed partially (the
kernels close only what is needed, so the last one usually is); what happens to a position whose
equity is <= 0 (its effective leverage is undefined; such a position is in liquidation itself, so
the ranks give it ``-inf``, never picked before any other); the tie order (lower row first); and,
for Hyperliquid, the formula is the same for both sides as written (a profitable short has
``mark / entry < 1``), with the account value of an isolated position taken as ``WB + uPnL``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cascade._numba import jit, pjit
from cascade.rules.margin import bankruptcy_price_nb

__all__ = [
    "adl_close_nb",
    "adl_order_nb",
    "binance_adl",
    "binance_adl_qty_nb",
    "binance_adl_rank_nb",
    "binance_adl_ranks_nb",
    "hl_adl",
    "hl_adl_rank_nb",
    "hl_adl_ranks_nb",
]


@jit
def binance_adl_rank_nb(side, qty, entry, wallet, mark):
    """Binance ADL ranking score of one position (higher is deleveraged first).

    ``PnL% = uPnL/|notional|``, ``EffLev = |notional|/(WB + uPnL)``; rank ``PnL% * EffLev`` when
    ``PnL% >= 0`` else ``PnL% / EffLev`` (mechanics.md section 1 step 5, Binance FAQ
    360033525271, read 2026-11-21), with ``uPnL = s*Q*(mark - EP)`` and ``|notional| = Q*mark``.

    Parameters
    ----------
    side : int, +1/-1
    qty, entry, wallet, mark : float64; coin (> 0), USD per coin, USD, USD per coin (> 0)

    Returns
    -------
    float64, dimensionless; ``-inf`` when the equity ``WB + uPnL <= 0`` (undefined EffLev) or
    there is no position (``qty <= 0``).
    """
    if not (qty > 0.0 and mark > 0.0):
        return -np.inf
    s = 1.0 if side > 0 else -1.0
    notional = qty * mark
    upnl = s * qty * (mark - entry)
    equity = wallet + upnl
    if not equity > 0.0:
        return -np.inf
    pnl_pct = upnl / notional
    eff_lev = notional / equity
    if pnl_pct >= 0.0:
        return pnl_pct * eff_lev
    return pnl_pct / eff_lev


@jit
def hl_adl_rank_nb(side, qty, entry, wallet, mark):
    """Hyperliquid ADL ranking score ``(mark / entry) * (notional / account_value)``.

    mechanics.md section 3 (Hyperliquid docs "Auto-deleveraging", read 2026-11-21), with
    ``notional = Q*mark`` and ``account_value = WB + s*Q*(mark - EP)`` (the position's equity).
    The formula is applied as written for both sides (see the module docstring).

    Parameters
    ----------
    side : int, +1/-1
    qty, entry, wallet, mark : float64; coin, USD per coin, USD, USD per coin

    Returns
    -------
    float64; ``-inf`` when the account value is <= 0 or there is no position (``qty <= 0``).
    """
    if not (qty > 0.0 and entry > 0.0):
        return -np.inf
    s = 1.0 if side > 0 else -1.0
    value = wallet + s * qty * (mark - entry)
    if not value > 0.0:
        return -np.inf
    return (mark / entry) * (qty * mark / value)


@pjit
def binance_adl_ranks_nb(side, qty, entry, wallet, mark, out):
    """:func:`binance_adl_rank_nb` for every row.

    Parameters
    ----------
    side : int8 array, shape (n,)
    qty, entry, wallet : float64 arrays, shape (n,); coin, USD per coin, USD
    mark : float64, USD per coin
    out : float64 array, shape (n,), written
    """
    for i in numba.prange(side.shape[0]):
        out[i] = binance_adl_rank_nb(side[i], qty[i], entry[i], wallet[i], mark)


@pjit
def hl_adl_ranks_nb(side, qty, entry, wallet, mark, out):
    """:func:`hl_adl_rank_nb` for every row (arguments as :func:`binance_adl_ranks_nb`)."""
    for i in numba.prange(side.shape[0]):
        out[i] = hl_adl_rank_nb(side[i], qty[i], entry[i], wallet[i], mark)


@jit
def adl_order_nb(rank, side, active, opposite_of):
    """Rows of the side opposite to ``opposite_of`` that are active, highest rank first.

    Ties keep the lower row first (stable sort); rows whose rank is ``-inf`` come last.

    Parameters
    ----------
    rank : float64 array, shape (n,)
    side : int8 array, shape (n,)
    active : bool array, shape (n,), open positions
    opposite_of : int, side of the liquidated position (+1/-1); rows of the other side are kept

    Returns
    -------
    int64 array, shape (m,), row indices
    """
    want = -1 if opposite_of > 0 else 1
    n = side.shape[0]
    m = 0
    for i in range(n):
        if active[i] and side[i] == want:
            m += 1
    rows = np.empty(m, np.int64)
    keys = np.empty(m, np.float64)
    j = 0
    for i in range(n):
        if active[i] and side[i] == want:
            rows[j] = i
            keys[j] = -rank[i]
            j += 1
    order = np.argsort(keys, kind="mergesort")
    return rows[order]


@jit
def adl_close_nb(order, side, qty, entry, qty_needed, price, out_rows, out_qty, out_pnl):
    """Walk the ranked rows and close them at ``price`` until ``qty_needed`` coin are closed.

    Each row is closed fully, except the last one, which is closed only by what is still
    needed. Nothing is modified in place.

    Parameters
    ----------
    order : int64 array, shape (m,), ranked rows (:func:`adl_order_nb`)
    side : int8 array, shape (n,)
    qty, entry : float64 arrays, shape (n,); coin, USD per coin
    qty_needed : float64, coin, >= 0
    price : float64, USD per coin (Binance: the liquidated order's bankruptcy price;
        Hyperliquid: the previous mark)
    out_rows : int64 array, shape (>= m,), written: rows closed, in order
    out_qty : float64 array, shape (>= m,), written: coin closed from each
    out_pnl : float64 array, shape (>= m,), written: realised PnL of each close,
        ``s_i * q_i * (price - EP_i)``, USD

    Returns
    -------
    (int64, float64): number of rows written, coin closed in total (< ``qty_needed`` only when
    the opposite side runs out).
    """
    left = qty_needed
    k = 0
    done = 0.0
    for j in range(order.shape[0]):
        if not left > 0.0:
            break
        i = order[j]
        c = min(qty[i], left)
        if not c > 0.0:
            continue
        s = 1.0 if side[i] > 0 else -1.0
        out_rows[k] = i
        out_qty[k] = c
        out_pnl[k] = s * c * (price - entry[i])
        k += 1
        done += c
        left = qty_needed - done
        if qty[i] > c:  # the last row, closed partially
            left = 0.0
    return np.int64(k), done


@jit
def binance_adl_qty_nb(deficit, bp, fill):
    """Coin of a liquidated position to hand to ADL so that a USD deficit is covered.

    ``D / |BP - fill|``: each coin closed at ``BP`` instead of ``fill`` saves ``|BP - fill|``
    (module docstring; mechanics.md sections 1 and 5).

    Parameters
    ----------
    deficit : float64, USD, >= 0 (what the fund cannot pay)
    bp : float64, bankruptcy price of the liquidated position, USD per coin
    fill : float64, its fill price, USD per coin (beyond ``bp``)

    Returns
    -------
    float64, coin; 0 when there is no deficit; ``inf`` when ``fill == bp`` and ``deficit > 0``.
    """
    if not deficit > 0.0:
        return 0.0
    gap = abs(bp - fill)
    if gap == 0.0:
        return np.inf
    return deficit / gap


def _close(rank, side, qty, entry, active, liq_side, qty_needed, price):
    side = np.ascontiguousarray(side, np.int8)
    qty = np.ascontiguousarray(qty, np.float64)
    entry = np.ascontiguousarray(entry, np.float64)
    active = np.ones(len(side), np.bool_) if active is None else \
        np.ascontiguousarray(active, np.bool_)
    order = adl_order_nb(rank, side, active, int(liq_side))
    m = len(order)
    rows = np.empty(m, np.int64)
    cq = np.empty(m, np.float64)
    pnl = np.empty(m, np.float64)
    k, done = adl_close_nb(order, side, qty, entry, float(qty_needed), float(price), rows, cq,
                           pnl)
    return order, rows[:k].copy(), cq[:k].copy(), pnl[:k].copy(), float(done)


def binance_adl(liq_side, liq_qty, liq_entry, liq_wallet, fill, fund, side, qty, entry, wallet,
                mark, active=None) -> dict:
    """Close one liquidation with the insurance fund and, where it falls short, ADL (Binance).

    The liquidated position (``liq_*``) is filled at ``fill``; its equity there is
    ``E = WB + s*Q*(fill - EP) = s*Q*(fill - BP)``. A positive ``E`` goes to the fund (clearance
    fee and surplus: cascade.engine's settlement, not repeated here). A negative ``E`` is paid by
    the fund; what the fund cannot pay, ``D``, is covered by ADL: ``q_adl = D/|BP - fill|`` coin of
    the liquidated position go to the opposite side, ranked by :func:`binance_adl_rank_nb` at
    ``mark``, at ``BP``, and only ``Q - q_adl`` coin reach the market.

    Parameters
    ----------
    liq_side : int, +1/-1
    liq_qty, liq_entry, liq_wallet : float; coin, USD per coin, USD
    fill : float, USD per coin, the market fill of the liquidation order
    fund : float, USD, insurance fund available, >= 0
    side : int8 array-like, shape (n,), the other positions
    qty, entry, wallet : float64 array-like, shape (n,); coin, USD per coin, USD
    mark : float, USD per coin, the mark used to rank
    active : bool array-like, shape (n,) or None (all open)

    Returns
    -------
    dict
        ``bankruptcy_price`` (USD per coin), ``equity_at_fill`` (USD, all of Q at fill),
        ``deficit`` (USD the fund could not pay, before ADL), ``adl_qty`` (coin asked of ADL),
        ``adl_filled_qty`` (coin ADL found), ``market_qty`` (coin sold/bought in the market),
        ``fund_change`` (USD: the equity when it is >= 0, else minus what the fund pays for the
        coins the market took), ``covered`` (USD of the deficit borne by the ADL'd
        positions), ``bad_debt`` (USD left uncovered when the opposite side runs out),
        ``rows``, ``closed_qty``, ``realized_pnl`` (arrays, shape (k,): ADL'd rows in rank order,
        coin closed, their realised PnL at BP in USD), ``order`` (int64 array, the full ranking).
    """
    s = 1.0 if liq_side > 0 else -1.0
    bp = float(bankruptcy_price_nb(liq_side, liq_qty, liq_entry, liq_wallet))
    equity = liq_wallet + s * liq_qty * (fill - liq_entry)
    loss = max(-equity, 0.0)
    deficit = max(loss - fund, 0.0)
    q_adl = min(float(binance_adl_qty_nb(deficit, bp, fill)), float(liq_qty))
    rank = np.empty(len(side), np.float64)
    binance_adl_ranks_nb(np.ascontiguousarray(side, np.int8), np.ascontiguousarray(qty, np.float64),
                         np.ascontiguousarray(entry, np.float64),
                         np.ascontiguousarray(wallet, np.float64), float(mark), rank)
    order, rows, cq, pnl, done = _close(rank, side, qty, entry, active, liq_side, q_adl, bp)
    gap = abs(bp - fill)
    covered = done * gap  # what the ADL'd positions give up against closing at `fill`
    market_qty = liq_qty - done
    if equity >= 0.0:
        fund_change, bad = equity, 0.0  # fee + surplus (split: cascade.engine.settle_nb)
    else:
        market_loss = loss - covered  # = (Q - done) * |BP - fill|: the coins the market took
        paid = min(market_loss, fund)
        fund_change, bad = -paid, market_loss - paid
    return {
        "bankruptcy_price": bp,
        "equity_at_fill": float(equity),
        "deficit": float(deficit),
        "adl_qty": float(q_adl),
        "adl_filled_qty": float(done),
        "market_qty": float(market_qty),
        "fund_change": float(fund_change),
        "covered": float(covered),
        "bad_debt": float(bad),
        "rows": rows,
        "closed_qty": cq,
        "realized_pnl": pnl,
        "order": order,
    }


def hl_adl(liq_side, liq_qty, liq_entry, liq_wallet, prev_mark, mark, side, qty, entry, wallet,
           active=None) -> dict:
    """Hyperliquid ADL of an account whose value went negative (mechanics.md section 3).

    The whole position (``liq_qty``) is closed against the opposite side, ranked by
    :func:`hl_adl_rank_nb` at ``mark``, at the previous mark price ``prev_mark``.

    Parameters
    ----------
    liq_side : int, +1/-1
    liq_qty, liq_entry, liq_wallet : float; coin, USD per coin, USD
    prev_mark, mark : float, USD per coin
    side, qty, entry, wallet, active : the other positions, as :func:`binance_adl`

    Returns
    -------
    dict
        ``account_value`` (USD, of the liquidated account at ``mark``), ``equity_at_price``
        (USD, at ``prev_mark``, what the liquidated account ends with), ``filled_qty`` (coin),
        ``covered`` (USD: the counterparties' PnL at ``mark`` minus at ``prev_mark`` on the
        closed size, i.e. how much of the loss at mark they bear), ``rows``, ``closed_qty``,
        ``realized_pnl`` (arrays, shape (k,)), ``order``.
    """
    s = 1.0 if liq_side > 0 else -1.0
    value = liq_wallet + s * liq_qty * (mark - liq_entry)
    rank = np.empty(len(side), np.float64)
    hl_adl_ranks_nb(np.ascontiguousarray(side, np.int8), np.ascontiguousarray(qty, np.float64),
                    np.ascontiguousarray(entry, np.float64),
                    np.ascontiguousarray(wallet, np.float64), float(mark), rank)
    order, rows, cq, pnl, done = _close(rank, side, qty, entry, active, liq_side, liq_qty,
                                        prev_mark)
    return {
        "account_value": float(value),
        "equity_at_price": float(liq_wallet + s * liq_qty * (prev_mark - liq_entry)),
        "filled_qty": float(done),
        "covered": float(math.fsum([s * c * (prev_mark - mark) for c in cq.tolist()])),
        "rows": rows,
        "closed_qty": cq,
        "realized_pnl": pnl,
        "order": order,
    }
