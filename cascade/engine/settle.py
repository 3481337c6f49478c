"""Settlement: closing positions at their fill, the insurance fund, bad debt and auto-deleveraging."""

from __future__ import annotations

import numpy as np

from cascade._numba import jit
from cascade.engine.adlqueue import select_batch_nb
from cascade.engine.ladder import _record, _requeue, sync_nb
from cascade.engine.layout import (
    DELEVERAGED,
    HEAPED,
    J_ADLK,
    J_ADLN,
    J_ADLP,
    J_ADLT,
    J_HDIRTY,
    J_NFEV,
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
    S_FREAL,
    S_FUND,
    S_INV,
    S_INVCOST,
    S_NPART,
    S_OQL,
    S_OQS,
    S_TAKEOVER,
    STOPPED,
)
from cascade.model.market import (
    ADL_HYPERLIQUID,
    ADL_NONE,
    I_ADL,
    P_FEE,
    P_FUNDCAP,
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
def settle_nb(r, fill, pos, tab, vp, vs):
    """Close record ``r`` (a whole position: liquidation or stop-loss) at ``fill`` and book it.

    Liquidation (Binance rules, mechanics.md section 1): the trader loses the whole wallet; the
    equity left at the fill, ``E = WB + s*Q*(fill - EP)``, goes to the insurance fund (clearance
    fee ``min(fee_rate*Q*fill, E)``, ``fee_rate = vp.prm[P_FEE]``, first, the rest as surplus); a negative ``E`` is paid by the
    fund. Stop-loss: the trader keeps ``E`` when positive; a negative ``E`` is paid by the fund.
    What the fund cannot pay becomes bad debt (see :func:`liquidate_nb` for ADL). Returns the
    notional at the fill, USD.

    Arguments: :class:`~cascade.engine.structs.Positions` ``pos``,
    :class:`~cascade.engine.structs.VenueParams` ``vp`` and
    :class:`~cascade.engine.structs.VenueState` ``vs`` of one venue (views; as every kernel
    below, with :class:`~cascade.engine.structs.Ladder` ``lad`` and
    :class:`~cascade.engine.structs.Tables` ``tab``).
    """
    i = vs.rec[r].pos
    if pos.fep[i] < vs.ist[J_NFEV]:
        sync_nb(i, pos, tab, vs)
    s = pos.side[i]
    q = pos.qty[i]
    equity = pos.wallet[i] + s * q * (fill - pos.entry[i])
    if vs.rec[r].kind == KIND_LIQ:
        fee = min(vp.prm[P_FEE] * q * fill, max(equity, 0.0))
        delta = equity
        pos.status[i] = LIQUIDATED
    else:
        fee = 0.0
        delta = min(equity, 0.0)
        pos.status[i] = STOPPED
    vs.rec[r].fill_price = fill
    vs.rec[r].fund_delta = delta
    vs.rec[r].fee = fee
    _book_fund(vs.st, delta)
    _close_qty(vs.st, s, q)
    return q * fill


ADL_BATCH = 4096  # rows in a step's first ADL batch; later batches double


@jit
def _adl_keys_nb(want, mark, pos, tab, vp, vs, keys):
    """Key every row for the ADL queue of side ``want``: ``-rank`` for its open rows, NaN for
    the others (one sequential pass). Rank: Binance ``PnL% * EffLev`` (``PnL% / EffLev`` at a
    loss), Hyperliquid ``(mark/entry) * (notional/account value)`` (cascade.rules.adl); ``-inf``
    ranks (no equity) key ``+inf`` and come last."""
    hl = vp.iprm[I_ADL] == ADL_HYPERLIQUID
    for i in range(pos.side.shape[0]):
        if pos.side[i] == want and (pos.status[i] == OPEN or pos.status[i] == HEAPED):
            if pos.fep[i] < vs.ist[J_NFEV]:
                sync_nb(i, pos, tab, vs)
            if hl:
                keys[i] = -hl_adl_rank_nb(pos.side[i], pos.qty[i], pos.entry[i], pos.wallet[i],
                                          mark)
            else:
                keys[i] = -binance_adl_rank_nb(pos.side[i], pos.qty[i], pos.entry[i],
                                               pos.wallet[i], mark)
        else:
            keys[i] = np.nan


@jit
def _adl_next_nb(slot, keys, rows, vs):
    """Make ``rows[ist[J_ADLP + slot]]`` the queue's next row, taking a new batch when the
    current one is used up; False when the queue is empty."""
    if vs.ist[J_ADLP + slot] < vs.ist[J_ADLN + slot]:
        return True
    n, cap = vs.ist[J_ADLN + slot], vs.ist[J_ADLK + slot]
    if n < cap:  # the last batch was not full: nothing is left
        return False
    last = rows[n - 1]
    cap = min(2 * cap, rows.shape[0])
    vs.ist[J_ADLN + slot] = select_batch_nb(keys, rows, cap, True, keys[last], last)
    vs.ist[J_ADLK + slot] = cap
    vs.ist[J_ADLP + slot] = 0
    return vs.ist[J_ADLN + slot] > 0


@jit
def _adl_nb(r, t, deficit, gap, price, mark, pos, lad, tab, vp, vs):
    """Close opposite-side positions of record ``r``'s position, best rank first, at ``price``
    until ``deficit / gap`` coin are covered (each coin closed at ``price`` instead of the
    market fill saves ``gap`` USD). The last one may be closed in part: it stays open with its
    realised PnL in its wallet and a new liquidation price. Returns the coin covered."""
    i0 = vs.rec[r].pos
    want = -1 if pos.side[i0] > 0 else 1
    need = min(deficit / gap, vs.rec[r].qty)
    # the ranking is computed once per step and side (at that call's mark), then walked
    slot = 0 if want > 0 else 1
    keys = vs.adl_rank[slot]
    rows = vs.adl_buf[slot]
    if vs.ist[J_ADLT + slot] != t + 1:
        _adl_keys_nb(want, mark, pos, tab, vp, vs, keys)
        cap = max(1, min(ADL_BATCH, rows.shape[0]))
        vs.ist[J_ADLN + slot] = select_batch_nb(keys, rows, cap, False, 0.0, 0)
        vs.ist[J_ADLK + slot] = cap
        vs.ist[J_ADLP + slot] = 0
        vs.ist[J_ADLT + slot] = t + 1
    done = 0.0
    while done < need and _adl_next_nb(slot, keys, rows, vs):
        i = rows[vs.ist[J_ADLP + slot]]
        if not (pos.status[i] == OPEN or pos.status[i] == HEAPED):
            vs.ist[J_ADLP + slot] += 1
            continue
        c = min(pos.qty[i], need - done)
        n = _record(vs.rec, vs.ist, i, KIND_ADL, t, 0, price, c)
        vs.rec[n].exec_step = t
        vs.rec[n].fill_price = price
        s = pos.side[i]
        vs.st[S_ADLUSD] += c * price
        vs.st[S_ADLN] += 1.0
        _close_qty(vs.st, s, c)
        if c < pos.qty[i]:  # closed in part: realised PnL into the wallet, a new liquidation price
            pos.wallet[i] += s * c * (price - pos.entry[i])
            pos.qty[i] -= c
            pos.lp[i], _ = liq_price_nb(s, pos.qty[i], pos.entry[i], pos.wallet[i], 0.0, 0.0,
                                        tab.floor, tab.cap, tab.mmr, tab.cum)
            if pos.status[i] == HEAPED or i >= lad.n_ladder:
                # its key in a heap changed: the step rebuilds the heaps once after its
                # executions (nothing reads them before; one rebuild per call was O(heap) each)
                vs.ist[J_HDIRTY] = 1
            else:
                _requeue(i, pos, lad, vs)
        else:
            eq = pos.wallet[i] + s * c * (price - pos.entry[i])
            if eq < 0.0:  # ranked last, but a losing position can be reached: the fund pays
                vs.rec[n].fund_delta = eq
                _book_fund(vs.st, eq)
            pos.status[i] = DELEVERAGED
            vs.ist[J_ADLP + slot] += 1
        done += c
    return done


@jit
def liquidate_nb(r, fill, mark, prev_mark, pos, lad, tab, vp, vs):
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
    i = vs.rec[r].pos
    if pos.fep[i] < vs.ist[J_NFEV]:
        sync_nb(i, pos, tab, vs)
    s = pos.side[i]
    kind = vs.rec[r].kind
    vs.rec[r].fill_price = fill
    if kind == KIND_PARTIAL:
        c = vs.rec[r].qty
        pos.wallet[i] += s * c * (fill - pos.entry[i])
        pos.qty[i] -= c
        _close_qty(vs.st, s, c)
        pos.lp[i], _ = liq_price_nb(s, pos.qty[i], pos.entry[i], pos.wallet[i], 0.0, 0.0, tab.floor,
                                    tab.cap, tab.mmr, tab.cum)
        _requeue(i, pos, lad, vs)
        vs.st[S_NPART] += 1.0
        return c * fill, c, 0.0
    q = pos.qty[i]
    px = fill
    if kind == KIND_BACKSTOP:
        px = vs.rec[r].trigger_price
        vs.rec[r].fill_price = px
    equity = pos.wallet[i] + s * q * (px - pos.entry[i])
    fee = 0.0
    if kind == KIND_LIQ:
        fee = min(vp.prm[P_FEE] * q * px, max(equity, 0.0))
    done = 0.0
    if equity < 0.0 and -equity > vs.st[S_FUND] and vp.iprm[I_ADL] != ADL_NONE:
        if vp.iprm[I_ADL] == ADL_HYPERLIQUID:
            p_adl = prev_mark
        else:
            p_adl = bankruptcy_price_nb(s, q, pos.entry[i], pos.wallet[i])
        gap = s * (p_adl - px)
        if gap > 0.0:
            done = _adl_nb(r, vs.rec[r].trigger_step, -equity - vs.st[S_FUND], gap, p_adl, mark,
                           pos, lad, tab, vp, vs)
            equity += s * done * (p_adl - px)
            vs.rec[r].adl_qty = done
            vs.rec[r].adl_price = p_adl
    vs.rec[r].fund_delta = equity
    vs.rec[r].fee = fee
    pos.status[i] = LIQUIDATED
    _book_fund(vs.st, equity)
    _close_qty(vs.st, s, q)
    if kind == KIND_BACKSTOP:
        vs.st[S_BACKSTOP] += q * px
        return q * px, 0.0, 0.0
    return q * fill, q - done, done


@jit
def fund_trade_nb(st, d, price):
    """The fund (or vault) trades ``d`` coin (signed, + buys) at ``price`` (USD) against its
    inventory ``st[S_INV]`` (signed coin) of cost ``st[S_INVCOST]`` (signed coin x average
    entry). Adding to the inventory (or opening it) adds to the cost; reducing it realises
    ``sign(inv) * c * (price - average entry)`` on the ``c`` coin closed, into the fund's cash
    (bad debt if it cannot pay) and ``st[S_FREAL]``; a flip opens the rest at ``price``.
    Returns the PnL realised, USD."""
    inv = st[S_INV]
    if d == 0.0:
        return 0.0
    if inv == 0.0 or (inv > 0.0) == (d > 0.0):
        st[S_INV] = inv + d
        st[S_INVCOST] += d * price
        return 0.0
    sgn = 1.0 if inv > 0.0 else -1.0
    c = min(abs(d), abs(inv))
    avg = st[S_INVCOST] / inv
    real = sgn * c * (price - avg)
    if c >= abs(inv):
        rest = d + inv  # opposite signs: what is left of the trade after closing the inventory
        st[S_INV] = rest
        st[S_INVCOST] = rest * price
    else:
        st[S_INV] = inv - sgn * c
        st[S_INVCOST] = avg * st[S_INV]
    st[S_FREAL] += real
    _book_fund(st, real)
    return real


@jit
def _fund_room(s, px, prm, st):
    """Coin of side ``s`` the fund can still take at ``px`` before its net inventory notional
    reaches ``P_FUNDCAP`` x its balance (FAQ 360033525371: by default 100 % of the fund)."""
    if px <= 0.0:
        return 0.0
    return max(prm[P_FUNDCAP] * st[S_FUND] / px - s * st[S_INV], 0.0)


@jit
def liquidate_ioc_nb(r, mark, pos, lad, tab, vp, vs):
    """Execute liquidation record ``r`` of an IOC order limited at the bankruptcy price ``BP``
    (Binance, mechanics.md sections 1 and 5; FAQ 360033525371). Returns the notional
    liquidated, USD (filled part at its fill, the rest at BP).

    ``rec.ioc_qty`` coin filled in the book at their mean ``rec.ioc_fill`` (set when the order
    met the book, :func:`cascade.engine.loop._ioc_orders`); the unfilled rest ``u`` is taken
    over by the fund at ``BP`` up to its room (its net inventory notional at most ``P_FUNDCAP``
    x its balance); beyond, opposite-side positions are auto-deleveraged at ``BP`` (ranked as
    Binance ranks them); what ADL cannot cover the fund takes anyway. The trader's equity is
    ``E = WB + s*q_f*(fill - EP) + s*u*(BP - EP) = s*q_f*(fill - BP) >= 0``: it goes to the fund,
    the clearance fee ``min(fee_rate * q_f * fill, E)`` first (none on the part taken over).
    """
    i = vs.rec[r].pos
    if pos.fep[i] < vs.ist[J_NFEV]:
        sync_nb(i, pos, tab, vs)
    s = pos.side[i]
    q = pos.qty[i]
    qf = vs.rec[r].ioc_qty
    u = q - qf
    bp = bankruptcy_price_nb(s, q, pos.entry[i], pos.wallet[i])
    f = vs.rec[r].ioc_fill if qf > 0.0 else bp
    vs.rec[r].fill_price = f
    take = u
    done = 0.0
    if u > 0.0:
        if vp.iprm[I_ADL] != ADL_NONE:
            take = min(u, _fund_room(s, bp, vp.prm, vs.st))
            if u - take > 0.0:
                done = _adl_nb(r, vs.rec[r].trigger_step, u - take, 1.0, bp, mark, pos, lad, tab,
                               vp, vs)
                take = u - done
                vs.rec[r].adl_qty = done
                vs.rec[r].adl_price = bp
        fund_trade_nb(vs.st, s * take, bp)
        vs.st[S_TAKEOVER] += take * bp
    vs.rec[r].fund_qty = take
    equity = pos.wallet[i] + s * qf * (f - pos.entry[i]) + s * u * (bp - pos.entry[i])
    vs.rec[r].fund_delta = equity
    vs.rec[r].fee = min(vp.prm[P_FEE] * qf * f, max(equity, 0.0))
    pos.status[i] = LIQUIDATED
    _book_fund(vs.st, equity)
    _close_qty(vs.st, s, q)
    return qf * f + u * bp


@jit
def backstop_hold_nb(r, mark, prev_mark, pos, lad, tab, vp, vs):
    """Execute backstop record ``r`` with the vault holding what it takes (liquidation_order
    'backstop', mechanics.md section 3): the vault takes the position at the mark of its trigger
    ``px`` into its inventory, within its room (net inventory notional at most ``P_FUNDCAP`` x its
    balance); beyond, opposite-side positions are auto-deleveraged at the previous mark
    ``prev_mark`` (Hyperliquid's ADL price); what ADL cannot cover the vault takes anyway. The
    trader's equity ``WB + s*t*(px - EP) + s*a*(prev_mark - EP)`` (its margin) goes to the
    vault. Returns the notional backstopped, USD (at ``px``)."""
    i = vs.rec[r].pos
    if pos.fep[i] < vs.ist[J_NFEV]:
        sync_nb(i, pos, tab, vs)
    s = pos.side[i]
    q = pos.qty[i]
    px = vs.rec[r].trigger_price
    vs.rec[r].fill_price = px
    take = q
    done = 0.0
    if vp.iprm[I_ADL] != ADL_NONE:
        take = min(q, _fund_room(s, px, vp.prm, vs.st))
        if q - take > 0.0:
            done = _adl_nb(r, vs.rec[r].trigger_step, q - take, 1.0, prev_mark, mark, pos, lad,
                           tab, vp, vs)
            take = q - done
            vs.rec[r].adl_qty = done
            vs.rec[r].adl_price = prev_mark
    fund_trade_nb(vs.st, s * take, px)
    vs.st[S_TAKEOVER] += take * px
    vs.rec[r].fund_qty = take
    equity = pos.wallet[i] + s * take * (px - pos.entry[i])
    if done > 0.0:
        equity += s * done * (prev_mark - pos.entry[i])
    vs.rec[r].fund_delta = equity
    pos.status[i] = LIQUIDATED
    _book_fund(vs.st, equity)
    _close_qty(vs.st, s, q)
    vs.st[S_BACKSTOP] += q * px
    return q * px
