"""Settlement: closing positions at their fill, the insurance fund, bad debt and auto-deleveraging."""

from __future__ import annotations

import numpy as np

from cascade._numba import jit
from cascade.engine.ladder import _record, _requeue, heapify_nb
from cascade.engine.layout import (
    DELEVERAGED,
    HEAPED,
    J_ADLN,
    J_ADLP,
    J_ADLT,
    J_HL,
    J_HS,
    KIND_ADL,
    KIND_BACKSTOP,
    KIND_LIQ,
    KIND_PARTIAL,
    LIQUIDATED,
    OPEN,
    S_ADLN,
    S_ADLUSD,
    S_BACKSTOP,
    S_BAD,
    S_FUND,
    S_NPART,
    S_OQL,
    S_OQS,
    STOPPED,
)
from cascade.model.market import (
    ADL_HYPERLIQUID,
    ADL_NONE,
    I_ADL,
)
from cascade.rules.adl import binance_adl_rank_nb, hl_adl_rank_nb
from cascade.rules.margin import bankruptcy_price_nb, liq_price_nb


@jit
def _book_fund(st, delta):
    """Add ``delta`` (USD) to the insurance fund; what it cannot pay becomes bad debt."""
    fund = st[S_FUND] + delta
    if fund < 0.0:
        st[S_BAD] += -fund
        fund = 0.0
    st[S_FUND] = fund


@jit
def _close_qty(st, s, q):
    if s > 0:
        st[S_OQL] -= q
    else:
        st[S_OQS] -= q


@jit
def settle_nb(r, fill, side, qty, entry, wallet, fee_rate, status, rec, st):
    """Close record ``r`` (a whole position: liquidation or stop-loss) at ``fill`` and book it.

    Liquidation (Binance rules, mechanics.md section 1): the trader loses the whole wallet; the
    equity left at the fill, ``E = WB + s*Q*(fill - EP)``, goes to the insurance fund (clearance
    fee ``min(fee_rate*Q*fill, E)`` first, the rest as surplus); a negative ``E`` is paid by the
    fund. Stop-loss: the trader keeps ``E`` when positive; a negative ``E`` is paid by the fund.
    What the fund cannot pay becomes bad debt (see :func:`_liquidate_nb` for ADL). Returns the
    notional at the fill, USD.
    """
    i = rec[r].pos
    s = side[i]
    q = qty[i]
    equity = wallet[i] + s * q * (fill - entry[i])
    if rec[r].kind == KIND_LIQ:
        fee = min(fee_rate * q * fill, max(equity, 0.0))
        delta = equity
        status[i] = LIQUIDATED
    else:
        fee = 0.0
        delta = min(equity, 0.0)
        status[i] = STOPPED
    rec[r].fill_price = fill
    rec[r].fund_delta = delta
    rec[r].fee = fee
    _book_fund(st, delta)
    _close_qty(st, s, q)
    return q * fill


@jit
def _adl_order_nb(want, t, mark, side, qty, entry, wallet, status, rank, buf, iprm):
    """Rows of side ``want`` that are open, best ADL rank first, into ``buf``; returns the count.
    Rank: Binance ``PnL% * EffLev`` (``PnL% / EffLev`` at a loss), Hyperliquid
    ``(mark/entry) * (notional/account value)`` (cascade.rules.adl)."""
    m = 0
    hl = iprm[I_ADL] == ADL_HYPERLIQUID
    for i in range(side.shape[0]):
        if side[i] == want and (status[i] == OPEN or status[i] == HEAPED):
            if hl:
                rank[m] = -hl_adl_rank_nb(side[i], qty[i], entry[i], wallet[i], mark)
            else:
                rank[m] = -binance_adl_rank_nb(side[i], qty[i], entry[i], wallet[i], mark)
            buf[m] = i
            m += 1
    o = np.argsort(rank[:m], kind="mergesort")
    tmp = buf[:m].copy()
    for j in range(m):
        buf[j] = tmp[o[j]]
    return m


@jit
def _adl_nb(r, t, deficit, gap, price, mark, side, qty, entry, wallet, lp, status, n_ladder,
            heap_l, heap_s, floor, cap, mmr, cum, iprm, rec, st, ist, adl_buf, adl_rank):
    """Close opposite-side positions of record ``r``'s position, best rank first, at ``price``
    until ``deficit / gap`` coin are covered (each coin closed at ``price`` instead of the
    market fill saves ``gap`` USD). The last one may be closed in part: it stays open with its
    realised PnL in its wallet and a new liquidation price. Returns the coin covered."""
    i0 = rec[r].pos
    want = -1 if side[i0] > 0 else 1
    need = min(deficit / gap, rec[r].qty)
    # the ranking is computed once per step and side, then walked
    slot = 0 if want > 0 else 1
    if ist[J_ADLT + slot] != t + 1:
        ist[J_ADLN + slot] = _adl_order_nb(want, t, mark, side, qty, entry, wallet, status,
                                           adl_rank, adl_buf[slot], iprm)
        ist[J_ADLP + slot] = 0
        ist[J_ADLT + slot] = t + 1
    buf = adl_buf[slot]
    done = 0.0
    touched_heap = False
    while done < need and ist[J_ADLP + slot] < ist[J_ADLN + slot]:
        i = buf[ist[J_ADLP + slot]]
        if not (status[i] == OPEN or status[i] == HEAPED):
            ist[J_ADLP + slot] += 1
            continue
        c = min(qty[i], need - done)
        n = _record(rec, ist, i, KIND_ADL, t, 0, price, c)
        rec[n].exec_step = t
        rec[n].fill_price = price
        s = side[i]
        st[S_ADLUSD] += c * price
        st[S_ADLN] += 1.0
        _close_qty(st, s, c)
        if c < qty[i]:  # closed in part: realised PnL into the wallet, a new liquidation price
            wallet[i] += s * c * (price - entry[i])
            qty[i] -= c
            lp[i], _ = liq_price_nb(s, qty[i], entry[i], wallet[i], 0.0, 0.0, floor, cap, mmr,
                                    cum)
            if status[i] == HEAPED or i >= n_ladder:
                touched_heap = True
            else:
                _requeue(i, side, lp, status, n_ladder, heap_l, heap_s, ist)
        else:
            eq = wallet[i] + s * c * (price - entry[i])
            if eq < 0.0:  # ranked last, but a losing position can be reached: the fund pays
                rec[n].fund_delta = eq
                _book_fund(st, eq)
            status[i] = DELEVERAGED
            ist[J_ADLP + slot] += 1
        done += c
    if touched_heap:
        heapify_nb(heap_l, ist[J_HL], lp, -1.0)
        heapify_nb(heap_s, ist[J_HS], lp, 1.0)
    return done


@jit
def liquidate_nb(r, fill, mark, prev_mark, side, qty, entry, wallet, lp, status, n_ladder,
                 heap_l, heap_s, floor, cap, mmr, cum, fee_rate, prm, iprm, rec, st, ist,
                 adl_buf, adl_rank):
    """Execute liquidation record ``r`` at ``fill``; returns (notional liquidated, USD, coin
    closed in the market, coin handed to ADL).

    KIND_LIQ: the whole position; equity ``E = WB + s*Q*(fill - EP)`` goes to the fund (fee
    first), a negative one is paid by it. When the fund cannot pay and the venue has ADL, the
    deficit ``D`` is covered by opposite-side positions closed at the ADL price ``P`` (Binance:
    the bankruptcy price; Hyperliquid: the previous mark ``prev_mark``, which the caller gives as
    the mark before this step, or for a backstop the mark before its trigger's):
    ``D / (s*(P - fill))`` coin of the position are handed to them instead of the market
    (mechanics.md sections 1, 3 and 5).
    KIND_PARTIAL: ``rec.qty`` coin close at ``fill``, their realised PnL stays in the wallet, and
    the rest is re-queued with a new liquidation price. KIND_BACKSTOP: the vault takes position
    and margin at the mark of the trigger (``E`` at that mark to the fund), no market order.
    """
    i = rec[r].pos
    s = side[i]
    kind = rec[r].kind
    rec[r].fill_price = fill
    if kind == KIND_PARTIAL:
        c = rec[r].qty
        wallet[i] += s * c * (fill - entry[i])
        qty[i] -= c
        _close_qty(st, s, c)
        lp[i], _ = liq_price_nb(s, qty[i], entry[i], wallet[i], 0.0, 0.0, floor, cap, mmr, cum)
        _requeue(i, side, lp, status, n_ladder, heap_l, heap_s, ist)
        st[S_NPART] += 1.0
        return c * fill, c, 0.0
    q = qty[i]
    px = fill
    if kind == KIND_BACKSTOP:
        px = rec[r].trigger_price
        rec[r].fill_price = px
    equity = wallet[i] + s * q * (px - entry[i])
    fee = 0.0
    if kind == KIND_LIQ:
        fee = min(fee_rate * q * px, max(equity, 0.0))
    done = 0.0
    if equity < 0.0 and -equity > st[S_FUND] and iprm[I_ADL] != ADL_NONE:
        if iprm[I_ADL] == ADL_HYPERLIQUID:
            p_adl = prev_mark
        else:
            p_adl = bankruptcy_price_nb(s, q, entry[i], wallet[i])
        gap = s * (p_adl - px)
        if gap > 0.0:
            done = _adl_nb(r, rec[r].trigger_step, -equity - st[S_FUND], gap, p_adl, mark, side,
                           qty, entry, wallet, lp, status, n_ladder, heap_l, heap_s, floor, cap,
                           mmr, cum, iprm, rec, st, ist, adl_buf, adl_rank)
            equity += s * done * (p_adl - px)
            rec[r].adl_qty = done
            rec[r].adl_price = p_adl
    rec[r].fund_delta = equity
    rec[r].fee = fee
    status[i] = LIQUIDATED
    _book_fund(st, equity)
    _close_qty(st, s, q)
    if kind == KIND_BACKSTOP:
        st[S_BACKSTOP] += q * px
        return q * px, 0.0, 0.0
    return q * fill, q - done, done
