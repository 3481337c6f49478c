"""The step loop: one jitted driver that walks the liquidation and stop ladders of every venue.

Python builds every input before the loop and wraps the outputs after; nothing runs in Python per
step. The loop runs in chunks of steps only so that a progress bar can move between chunks and
funding can be paid at its instants (:meth:`EngineState.pay_funding`); all mutable state lives in
the ``st``/``ist``/``mst`` vectors and the arrays passed in, so chunking does not change a single
bit of the result.

Cost per step: O(positions crossed + iterations), never O(positions): each venue's positions are
sorted by liquidation price (see :mod:`cascade.population`), a pointer per side only ever moves
inward, and positions opened or re-queued during the run (conditional entries, survivors of a
partial liquidation or of a partial ADL) sit in a binary heap per side. Only three things touch
all of a venue's positions, and none runs every step: paying funding (at funding instants), and
ranking the opposite side for auto-deleveraging (once per step and side while the insurance fund
is exhausted).

Several venues share one background price (``M_X``); each has its own book (impact state), mark
rule, liquidation rules, insurance fund and latency. Arbitrage (:func:`_arbitrage`) and the index
of spot venues couple them.
"""

from __future__ import annotations

import dataclasses
from math import exp, log

import numpy as np

from cascade._numba import jit
from cascade.adl import binance_adl_rank_nb, hl_adl_rank_nb
from cascade.funding import time_to_next_funding_nb
from cascade.margin import bankruptcy_price_nb, liq_price_nb, liq_prices_nb
from cascade.mark import binance_mark_nb, median3_nb, weighted_median_nb
from cascade.market import (
    ADL_HYPERLIQUID,
    ADL_NONE,
    I_ADL,
    I_BWIN,
    I_LAT,
    I_MARK,
    I_MARKW,
    I_MAXIT,
    I_PARTIAL,
    MARK_BINANCE,
    MARK_HYPERLIQUID,
    MARK_LAST_AVERAGE,
    P_ALPHA,
    P_DECAY,
    P_DEPTH,
    P_DIPCAP,
    P_DIPRATE,
    P_DIPTHR,
    P_EMA,
    P_FEE,
    P_FEEDBACK,
    P_FINT_S,
    P_FLOOR,
    P_LIQ_EQ,
    P_LIQSENS,
    P_MEMDECAY,
    P_PHI,
    P_REFDECAY,
    P_STEP,
    P_T0,
    P_VOLSENS,
    PARTIAL_HYPERLIQUID,
    PARTIAL_STEP_DOWN,
)
from cascade.partial import (
    BYBIT_MAX_STEPS,
    BYBIT_MIN_TIER,
    BYBIT_TIERS_PER_STEP,
    HL_BACKSTOP,
    HL_PARTIAL,
    OUTCOME_PARTIAL,
    hl_liquidation_nb,
    tier_step_down_nb,
)

# position status. DORMANT: a conditional entry (see cascade.population) not yet triggered;
# HEAPED: open, but its liquidation price changed after the ladder was sorted (a partial
# liquidation or partial ADL), so its heap tracks it; DELEVERAGED: closed by ADL
OPEN, TRIGGERED, LIQUIDATED, STOPPED, DORMANT, HEAPED, DELEVERAGED = range(7)
# record kinds. PARTIAL: part of a position liquidated, the rest stays open; BACKSTOP: taken over
# by the liquidator vault (no market order); ADL: closed by auto-deleveraging
KIND_LIQ, KIND_STOP, KIND_ENTRY, KIND_PARTIAL, KIND_BACKSTOP, KIND_ADL = range(1, 7)

# float state vector, per venue
(S_PERM, S_TRANS, S_PRICE, S_REF, S_RV, S_LF, S_FUND, S_BAD, S_OQL, S_OQS, S_MSUM, S_Y, S_MARK,
 S_BSUM, S_EMA, S_PACC, S_PCNT, S_FLAST, S_ADLUSD, S_ADLN, S_NPART, S_BACKSTOP, S_FUNDPAID_L,
 S_FUNDPAID_S) = range(24)
N_STATE = 24
# integer state vector, per venue (J_ADLT/N/P: two slots each, longs then shorts)
(J_LPTR, J_SPTR, J_LSPTR, J_SSPTR, J_NREC, J_FPTR, J_RING, J_HL, J_HS, J_BRING, J_BCOUNT,
 J_ADLT, _J_ADLT2, J_ADLN, _J_ADLN2, J_ADLP, _J_ADLP2) = range(17)
N_ISTATE = 17
# market state: background log price, composite log price of the venues, index (weighted mean
# of the spot venues: Binance), sum of depths, oracle (weighted median: Hyperliquid)
M_X, M_COMP, M_INDEX, M_DEPTH_SUM, M_ORACLE = range(5)
N_MSTATE = 5
# market parameters: arbitrage capacity (USD per step), band (log), delay (steps); spot impact law
M_ARB_CAP, M_ARB_BAND, M_ARB_DELAY, M_SPOT_ALPHA = range(4)
N_MPARAMS = 4
# spot venue parameters: weight in the index, lag (steps), depth (USD per 1 %), impact decay and
# deviation decay per step
SP_WEIGHT, SP_LAG, SP_DEPTH, SP_DECAY, SP_REVERT = range(5)
N_SPOT = 5
# venue layout: row range and its parts, stop range (sell part first), heap and record ranges
(L_OFF, L_NLONG, L_NLADDER, L_END, L_SOFF, L_SLONG, L_SEND, L_HOFF, L_HEND, L_ROFF,
 L_REND) = range(11)
N_LAYOUT = 11

# per-step output columns (per venue)
COLUMNS = ("last_price", "mark_price", "liq_long_usd", "liq_short_usd", "liq_count", "stop_usd",
           "exo_flow_usd", "dip_flow_usd", "forced_flow_usd", "open_interest_usd", "depth_usd",
           "insurance_fund_usd", "bad_debt_usd", "iterations", "fill_price", "entry_usd",
           "index_price", "adl_usd", "adl_count", "partial_count", "funding_rate",
           "arb_flow_usd", "backstop_usd")
(C_LAST, C_MARK, C_LIQL, C_LIQS, C_LIQN, C_STOP, C_EXO, C_DIP, C_FORCED, C_OI, C_DEPTH, C_FUND,
 C_BAD, C_ITER, C_FILL, C_ENTRY, C_INDEX, C_ADL, C_ADLN, C_PART, C_FRATE, C_ARB,
 C_BACK) = range(len(COLUMNS))

RECORD_DTYPE = np.dtype([("pos", np.int32), ("kind", np.int8), ("venue", np.int8),
                         ("trigger_step", np.int32), ("exec_step", np.int32),
                         ("trigger_price", np.float64), ("fill_price", np.float64),
                         ("fund_delta", np.float64), ("fee", np.float64), ("qty", np.float64),
                         ("adl_qty", np.float64), ("adl_price", np.float64)], align=True)


@jit
def impact_curve_nb(y, depth, alpha):
    """G(y): log-price impact of a net imbalance y (USD, + buy) against depth (USD per 1%).

    ``1% * sign(y) * g(|y| / depth)`` with g(u) = u below u = 1 (a book swept at constant
    density) and u ** alpha above (the concave law of large orders); continuous at u = 1."""
    u = abs(y) / depth
    g = u if u < 1.0 else u ** alpha
    return 0.01 * g if y >= 0.0 else -0.01 * g


@jit
def impact_integral_nb(y, depth, alpha):
    """H(y) = integral of G from 0 to y (even in y), USD x log units."""
    u = abs(y) / depth
    if u < 1.0:
        h = 0.5 * u * u
    else:
        h = 0.5 + (u ** (alpha + 1.0) - 1.0) / (alpha + 1.0)
    return 0.01 * depth * h


@jit
def impact_nb(y, flow, depth, alpha):
    """Log-price impact of a step's net flow (USD, + buy) on top of the outstanding imbalance y:
    ``G(y + flow) - G(y)``. Concave in the imbalance, so a block split over several steps moves
    the price as much as the block at once (less whatever the book refilled in between)."""
    return impact_curve_nb(y + flow, depth, alpha) - impact_curve_nb(y, depth, alpha)


@jit
def mean_impact_nb(y, flow, depth, alpha, imp):
    """Average impact over the fill of ``flow``: the mean of G(u) - G(y) for u from y to
    y + flow, i.e. (H(y + flow) - H(y)) / flow - G(y). Falls back to ``imp / 2`` when the flow is
    too small against y for the difference to be accurate."""
    if abs(flow) <= 1e-9 * (abs(y) + depth):
        return 0.5 * imp
    return ((impact_integral_nb(y + flow, depth, alpha) - impact_integral_nb(y, depth, alpha))
            / flow - impact_curve_nb(y, depth, alpha))


@jit
def _record(rec, ist, i, kind, t, lat, price, q):
    n = ist[J_NREC]
    if n >= rec.shape[0]:
        # a bug in the capacity bound of EngineState.for_venues, not a market that diverged
        raise RuntimeError("record buffer full")
    rec[n].pos = i
    rec[n].kind = kind
    rec[n].trigger_step = t
    rec[n].exec_step = t + lat
    rec[n].trigger_price = price
    rec[n].fill_price = np.nan
    rec[n].fund_delta = 0.0
    rec[n].fee = 0.0
    rec[n].qty = q
    rec[n].adl_qty = 0.0
    rec[n].adl_price = np.nan
    ist[J_NREC] = n + 1
    return n


@jit
def _heap_before(a, b, lp, sgn):
    """Heap order of rows a, b: shorts (sgn 1) lowest liquidation price first, longs (sgn -1)
    highest first; ties by row, in the same direction."""
    ka = sgn * lp[a]
    kb = sgn * lp[b]
    return ka < kb or (ka == kb and sgn * a < sgn * b)


@jit
def heap_push_nb(heap, size, i, lp, sgn):
    """Push row ``i`` onto the binary heap ``heap[:size]``; returns the new size."""
    k = size
    heap[k] = i
    while k > 0:
        parent = (k - 1) // 2
        if _heap_before(heap[k], heap[parent], lp, sgn):
            heap[k], heap[parent] = heap[parent], heap[k]
            k = parent
        else:
            break
    return size + 1


@jit
def _sift_down(heap, size, k, lp, sgn):
    while True:
        left = 2 * k + 1
        if left >= size:
            break
        best = left
        if left + 1 < size and _heap_before(heap[left + 1], heap[left], lp, sgn):
            best = left + 1
        if _heap_before(heap[best], heap[k], lp, sgn):
            heap[k], heap[best] = heap[best], heap[k]
            k = best
        else:
            break


@jit
def heap_pop_nb(heap, size, lp, sgn):
    """Remove the top of ``heap[:size]`` (read it as ``heap[0]`` first); returns the new size."""
    size -= 1
    heap[0] = heap[size]
    _sift_down(heap, size, 0, lp, sgn)
    return size


@jit
def heapify_nb(heap, size, lp, sgn):
    """Restore the heap order of ``heap[:size]`` after liquidation prices changed in place."""
    for k in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, k, lp, sgn)


@jit
def _requeue(i, side, lp, status, n_ladder, heap_l, heap_s, ist):
    """Track row ``i`` (still open, with a new liquidation price) in its side's heap."""
    if i < n_ladder:
        status[i] = HEAPED
    else:
        status[i] = OPEN
    if side[i] > 0:
        ist[J_HL] = heap_push_nb(heap_l, ist[J_HL], i, lp, -1.0)
    else:
        ist[J_HS] = heap_push_nb(heap_s, ist[J_HS], i, lp, 1.0)


@jit
def _liq_trigger(i, t, mark, last, side, qty, entry, wallet, status, tlp, floor, cap, mmr, cum,
                 prm, iprm, rec, ist):
    """Trigger the liquidation of open row ``i`` by the venue's rule; returns its market flow.

    PARTIAL_NONE: one order for the whole position. PARTIAL_STEP_DOWN (Bybit, mechanics.md
    section 2): step down one tier; if that is not enough the whole position goes (the reduction
    and the takeover of the rest are one order here). PARTIAL_HYPERLIQUID (section 3): below 2/3
    of MM the vault takes the position (no market order); above 100k USDC notional, 20 % at a
    time unless a partial was made in the last 30 s; else the whole position."""
    lat = iprm[I_LAT]
    rule = iprm[I_PARTIAL]
    q = qty[i]
    kind = KIND_LIQ
    qc = q
    if rule == PARTIAL_HYPERLIQUID:
        t_s = prm[P_T0] + t * prm[P_STEP]
        action, c, _, _ = hl_liquidation_nb(side[i], q, entry[i], wallet[i], mark, t_s, tlp[i],
                                            floor, cap, mmr, cum)
        if action == HL_BACKSTOP:
            kind = KIND_BACKSTOP
        elif action == HL_PARTIAL:
            kind = KIND_PARTIAL
            qc = c
            tlp[i] = t_s
    elif rule == PARTIAL_STEP_DOWN:
        outcome, _, closed, _, _, _, _ = tier_step_down_nb(
            side[i], q, entry[i], wallet[i], mark, mark, floor, cap, mmr, cum,
            BYBIT_TIERS_PER_STEP, BYBIT_MIN_TIER, BYBIT_MAX_STEPS, False, 0.0, True,
            prm[P_LIQ_EQ] != 0.0)
        if outcome == OUTCOME_PARTIAL:
            kind = KIND_PARTIAL
            qc = closed
    _record(rec, ist, i, kind, t, lat, mark, qc)
    status[i] = TRIGGERED
    if kind == KIND_BACKSTOP:
        return 0.0
    return -side[i] * qc * last


@jit
def _crossed_long(x, mark, liq_on_equal):
    return x > mark or (liq_on_equal and x == mark)


@jit
def _crossed_short(x, mark, liq_on_equal):
    return x < mark or (liq_on_equal and x == mark)


@jit
def _stop_or_entry(i, t, lat, last, status, qty, rec, ist):
    """Trigger the conditional order of row ``i`` if it is still waiting: a stop-loss of an open
    position, or the entry of a dormant one. Returns True if it triggered."""
    s = status[i]
    if s == OPEN or s == HEAPED:
        _record(rec, ist, i, KIND_STOP, t, lat, last, qty[i])
        status[i] = TRIGGERED
        return True
    if s == DORMANT:
        _record(rec, ist, i, KIND_ENTRY, t, lat, last, qty[i])
        status[i] = TRIGGERED
        return True
    return False


@jit
def scan_triggers_nb(t, mark, last, side, qty, entry, wallet, lp, status, order, tlp, n_long,
                     n_ladder, stop_idx, stop_px, heap_l, heap_s, floor, cap, mmr, cum, prm,
                     iprm, rec, ist):
    """Trigger every open position whose liquidation price the mark has crossed (longs:
    ``lp >= mark``, shorts: ``lp <= mark``; strict when the venue liquidates only below MM) and
    every conditional order the last price has crossed: sells on a fall (long stops, breakdown-
    short entries: ``px >= last``), buys on a rise (short stops, breakout-long entries:
    ``px <= last``).

    Order within a call: ladder longs from the highest liquidation price down, ladder shorts from
    the lowest up (``order[k]`` is the row at ladder place ``k``; rows no longer OPEN there are
    passed over: they were closed, or are tracked in a heap), then the heaps of positions opened
    or re-queued during the run (same order), then sells and buys on last price.

    Moves the ladder pointers and heap sizes in ``ist``; appends records. Returns the signed USD
    flow of the new market orders at ``last`` (sells negative).
    """
    liq_on_equal = prm[P_LIQ_EQ] != 0.0
    lat = iprm[I_LAT]
    flow = 0.0
    m = stop_idx.shape[0]
    k = ist[J_LPTR]
    while k > 0:
        i = order[k - 1]
        if status[i] == OPEN:
            if not _crossed_long(lp[i], mark, liq_on_equal):
                break
            flow += _liq_trigger(i, t, mark, last, side, qty, entry, wallet, status, tlp, floor,
                                 cap, mmr, cum, prm, iprm, rec, ist)
        k -= 1
    ist[J_LPTR] = k
    k = ist[J_SPTR]
    while k < n_ladder:
        i = order[k]
        if status[i] == OPEN:
            if not _crossed_short(lp[i], mark, liq_on_equal):
                break
            flow += _liq_trigger(i, t, mark, last, side, qty, entry, wallet, status, tlp, floor,
                                 cap, mmr, cum, prm, iprm, rec, ist)
        k += 1
    ist[J_SPTR] = k
    size = ist[J_HL]
    while size > 0 and _crossed_long(lp[heap_l[0]], mark, liq_on_equal):
        i = heap_l[0]
        size = heap_pop_nb(heap_l, size, lp, -1.0)
        ist[J_HL] = size
        if status[i] == OPEN or status[i] == HEAPED:
            flow += _liq_trigger(i, t, mark, last, side, qty, entry, wallet, status, tlp, floor,
                                 cap, mmr, cum, prm, iprm, rec, ist)
    size = ist[J_HS]
    while size > 0 and _crossed_short(lp[heap_s[0]], mark, liq_on_equal):
        i = heap_s[0]
        size = heap_pop_nb(heap_s, size, lp, 1.0)
        ist[J_HS] = size
        if status[i] == OPEN or status[i] == HEAPED:
            flow += _liq_trigger(i, t, mark, last, side, qty, entry, wallet, status, tlp, floor,
                                 cap, mmr, cum, prm, iprm, rec, ist)
    k = ist[J_LSPTR]
    while k > 0 and stop_px[k - 1] >= last:
        k -= 1
        i = stop_idx[k]
        if _stop_or_entry(i, t, lat, last, status, qty, rec, ist):
            flow -= qty[i] * last
    ist[J_LSPTR] = k
    k = ist[J_SSPTR]
    while k < m and stop_px[k] <= last:
        i = stop_idx[k]
        if _stop_or_entry(i, t, lat, last, status, qty, rec, ist):
            flow += qty[i] * last
        k += 1
    ist[J_SSPTR] = k
    return flow


@jit
def open_nb(r, fill, side, qty, entry, wallet, lp, status, n_ladder, heap_l, heap_s, floor, cap,
            mmr, cum, rec, st, ist):
    """Open the dormant position of entry record ``r`` at ``fill``: isolated margin
    ``qty * fill * wallet`` (before entry, ``wallet`` holds the initial-margin fraction
    1 / leverage), its liquidation price from the bracket table, and onto the heap of its side.
    Returns the notional opened, USD."""
    i = rec[r].pos
    q = qty[i]
    entry[i] = fill
    wallet[i] = q * fill * wallet[i]
    p, _ = liq_price_nb(side[i], q, fill, wallet[i], 0.0, 0.0, floor, cap, mmr, cum)
    lp[i] = p
    rec[r].fill_price = fill
    if side[i] > 0:
        st[S_OQL] += q
    else:
        st[S_OQS] += q
    _requeue(i, side, lp, status, n_ladder, heap_l, heap_s, ist)
    return q * fill


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
    ``(mark/entry) * (notional/account value)`` (cascade.adl)."""
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


@jit
def _median_others(v, last_all, nv, scratch):
    """Median of the other venues' last prices (Hyperliquid's 'median of CEX perp mids'), sorted
    in ``scratch`` (float64 (>= nv - 1,)) so the step loop allocates nothing; NaN if none."""
    m = nv - 1
    if m <= 0:
        return np.nan
    j = 0
    for u in range(nv):
        if u != v:
            x = last_all[u]
            k = j
            while k > 0 and scratch[k - 1] > x:  # insertion sort: a handful of venues
                scratch[k] = scratch[k - 1]
                k -= 1
            scratch[k] = x
            j += 1
    h = m // 2
    if m % 2 == 1:
        return scratch[h]
    return 0.5 * (scratch[h - 1] + scratch[h])


@jit
def _mark_nb(rule, p, index, basis_mean, ema, f_last, tau, interval, others, msum, old, w):
    if rule == MARK_BINANCE:
        return binance_mark_nb(index, f_last, tau, interval, basis_mean, p)
    if rule == MARK_HYPERLIQUID:
        # median(oracle + basis EMA, median(bid, ask, last), CEX perp mids); no book: bid = ask
        # = last, and the other venues' last prices stand for the CEX perp mids
        if np.isnan(others):
            others = p
        return median3_nb(index + ema, p, others)
    return (msum - old + p) / w


@jit
def step_loop_nb(t_begin, t_end, lay, side, qty, entry, wallet, lp, status, order, tlp, stop_idx,
                 stop_px, heap_l, heap_s, tb_lay, floor, cap, mmr, cum, exo, noise, wick, prm,
                 iprm, mprm, spot, spot_exo, spot_noise, st, ist, mst, sst, ring, bring, pend,
                 marks, arb, comp_ring, rec, adl_buf, adl_rank, out):
    """Advance the market (one or more venues) from step ``t_begin`` to ``t_end`` (exclusive).

    Parameters (V venues, n rows over all venues, J spot venues, T steps)
    ----------
    lay : int64 (V, N_LAYOUT) row, stop, heap and record ranges of each venue (``L_*``); inside
        a venue, rows are as :class:`cascade.population.Population` (ladder longs, ladder shorts,
        conditional entries) and every index (``order``, ``stop_idx``, heaps, records' ``pos``)
        is relative to the venue's first row
    side, qty, entry, wallet, lp : (n,) rows (int8, float64 x4), in/out
    status : int8 (n,) in/out, OPEN / TRIGGERED / LIQUIDATED / STOPPED / DORMANT / HEAPED /
        DELEVERAGED
    order : int32 (n,) ladder place -> row (re-sorted when funding moves liquidation prices)
    tlp : float64 (n,) time of each row's last partial liquidation (Hyperliquid 30 s rule), s
    stop_idx, stop_px : orders on last price, per venue: sells on a fall, then buys on a rise
    heap_l, heap_s : int32 heaps of positions opened or re-queued during the run
    tb_lay : int64 (V, 2) range of each venue's bracket table in floor, cap, mmr, cum
    exo : float64 (V, T) exogenous flow per venue, USD; noise : float64 (T,) log increments
    wick : float64 (V + 1, T) multiplier of each venue's last price (row V: of every spot price,
        so of the index and the oracle)
    prm, iprm : float64 (V, N_PARAMS), int64 (V, N_IPARAMS) (:func:`cascade.market.parameters`)
    mprm : float64 (N_MPARAMS,) market-wide parameters (``M_*``)
    spot : float64 (J, N_SPOT) spot venues of the index (``SP_*``); spot_exo, spot_noise (J, T)
    st, ist : float64 (V, N_STATE), int64 (V, N_ISTATE) per-venue state, in/out
    mst : float64 (N_MSTATE,) market state; sst : float64 (J, 2) spot state (deviation, imbalance)
    ring : (V, max window) last prices; bring : (V, basis window) basis samples (last - index)
    pend : (V, max latency + 1) forced flow queued; arb : (V, arbitrage delay + 1) arbitrage flow
    marks : (V, max latency + 2) each venue's mark at the end of recent steps (slot t % width; the
        start price before the first step), for the previous mark of a trigger executed later
    comp_ring : (max spot lag + 1,) log composite price of the perpetual venues, by step
    rec : RECORD_DTYPE records, per venue ranges; adl_buf : int32 (2, n) ; adl_rank : float64 (n,)
    out : float64 (V, T, len(COLUMNS)) per-step results, written for t_begin..t_end-1
    """
    nv = lay.shape[0]
    nsp = spot.shape[0]
    sp_px = np.empty(nsp)
    sp_w = spot[:, SP_WEIGHT].copy()
    last_all = np.empty(nv)
    scratch = np.empty(nv)  # other venues' prices (Hyperliquid mark), arbitrage needs
    npc = comp_ring.shape[0]
    for t in range(t_begin, t_end):
        mst[M_X] += noise[t]
        # index: spot venues follow the perpetuals' composite price with a lag, plus their own
        # deviation (their share of the flow on their own book, decaying) and noise
        if nsp > 0:
            for j in range(nsp):
                sst[j, 1] *= spot[j, SP_DECAY]
                sst[j, 0] *= spot[j, SP_REVERT]
                f = spot_exo[j, t]
                if f != 0.0:
                    sst[j, 0] += impact_nb(sst[j, 1], f, spot[j, SP_DEPTH], mprm[M_SPOT_ALPHA])
                    sst[j, 1] += f
                lag = int(spot[j, SP_LAG])
                c = comp_ring[(t - 1 - lag) % npc] if t - 1 - lag >= 0 else comp_ring[npc - 1]
                sp_px[j] = exp(c + sst[j, 0] + spot_noise[j, t])
            index = 0.0
            den = 0.0
            for j in range(nsp):
                index += spot[j, SP_WEIGHT] * sp_px[j]
                den += spot[j, SP_WEIGHT]
            index /= den
            oracle = weighted_median_nb(sp_px, sp_w)
        else:
            index = exp(mst[M_COMP])
            oracle = index
        index *= wick[nv, t]
        oracle *= wick[nv, t]
        mst[M_ORACLE] = oracle
        mst[M_INDEX] = index
        for v in range(nv):
            last_all[v] = st[v, S_PRICE]
        for v in range(nv):
            a = lay[v, L_OFF]
            b = lay[v, L_END]
            ta = tb_lay[v, 0]
            tb = tb_lay[v, 1]
            ref = index
            if iprm[v, I_MARK] == MARK_HYPERLIQUID:
                ref = oracle
            _venue_step(t, v, nv, ref, last_all, side[a:b], qty[a:b], entry[a:b], wallet[a:b],
                        lp[a:b], status[a:b], order[a:b], tlp[a:b],
                        lay[v, L_NLONG] - a, lay[v, L_NLADDER] - a,
                        stop_idx[lay[v, L_SOFF]:lay[v, L_SEND]],
                        stop_px[lay[v, L_SOFF]:lay[v, L_SEND]],
                        heap_l[lay[v, L_HOFF]:lay[v, L_HEND]],
                        heap_s[lay[v, L_HOFF]:lay[v, L_HEND]],
                        floor[ta:tb], cap[ta:tb], mmr[ta:tb], cum[ta:tb], exo[v, t], noise[t],
                        wick[v, t], prm[v], iprm[v], mprm, st[v], ist[v], mst, ring[v],
                        bring[v], pend[v], marks[v], arb[v], rec[lay[v, L_ROFF]:lay[v, L_REND]],
                        adl_buf[:, a:b], adl_rank[a:b], scratch, out[v, t])
        # composite of the perpetual venues (depth-weighted log price), and arbitrage between them
        comp = 0.0
        for v in range(nv):
            comp += prm[v, P_DEPTH] * log(st[v, S_PRICE])
        comp /= mst[M_DEPTH_SUM]
        mst[M_COMP] = comp
        comp_ring[t % npc] = comp
        if nv > 1:
            _arbitrage(t, nv, comp, prm, mprm, st, arb, scratch)


@jit
def _arbitrage(t, nv, comp, prm, mprm, st, arb, needs):
    """Arbitrageurs buy the venues below the composite and sell those above it, beyond a band of
    ``band`` (log units), at most ``capacity`` USD per step each way; their orders reach the
    books ``delay`` steps later. The USD a venue needs to close its gap is its depth per 1 %
    times the gap in %, less what they already sent that way and has not arrived yet (with a
    delay of two steps or more, re-sending the whole gap every step would overshoot it ``delay``
    times and the venues would oscillate apart); buys and sells match before the cap and are
    scaled to match after. ``needs``: float64 (>= nv,) scratch."""
    band = mprm[M_ARB_BAND]
    need_buy = 0.0
    need_sell = 0.0
    for v in range(nv):
        needs[v] = 0.0
        gap = log(st[v, S_PRICE]) - comp
        # orders still in flight (every slot holds future arrivals: this step's was read)
        sent = 0.0
        for k in range(arb.shape[1]):
            sent += arb[v, k]
        if gap > band:
            needs[v] = min(-(gap - band) * 100.0 * prm[v, P_DEPTH] - sent, 0.0)
            need_sell -= needs[v]
        elif gap < -band:
            needs[v] = max((-gap - band) * 100.0 * prm[v, P_DEPTH] - sent, 0.0)
            need_buy += needs[v]
    matched = min(need_buy, need_sell, mprm[M_ARB_CAP])
    if matched <= 0.0:
        return
    d = arb.shape[1]
    slot = (t + int(mprm[M_ARB_DELAY])) % d
    for v in range(nv):
        if needs[v] > 0.0:
            arb[v, slot] += needs[v] / need_buy * matched
        elif needs[v] < 0.0:
            arb[v, slot] += needs[v] / need_sell * matched


@jit
def _venue_step(t, v, nv, index, last_all, side, qty, entry, wallet, lp, status, order, tlp,
                n_long, n_ladder, stop_idx, stop_px, heap_l, heap_s, floor, cap, mmr, cum, exo_t,
                noise_t, wick_t, prm, iprm, mprm, st, ist, mst, ring, bring, pend, marks, arb, rec,
                adl_buf, adl_rank, scratch, o):
    """One step of one venue: price before orders, the trigger/impact fixed point, fills and
    settlement, state updates and the output row ``o``. ``index`` is the venue's reference
    spot price: the index (weighted mean of the spot venues, Binance) or, for the Hyperliquid
    mark rule, the oracle (their weighted median)."""
    alpha = prm[P_ALPHA]
    phi = prm[P_PHI]
    decay = prm[P_DECAY]
    depth0 = prm[P_DEPTH]
    memd = prm[P_MEMDECAY]
    refd = prm[P_REFDECAY]
    fee_rate = prm[P_FEE]
    feedback = prm[P_FEEDBACK] != 0.0
    w = iprm[I_MARKW]
    lat = iprm[I_LAT]
    maxit = iprm[I_MAXIT]
    rule = iprm[I_MARK]
    npend = pend.shape[0]
    p_prev = st[S_PRICE]
    prev_mark = st[S_MARK]
    mult = 1.0 / (1.0 + prm[P_VOLSENS] * st[S_RV] / 0.1 + prm[P_LIQSENS] * st[S_LF])
    mult = max(mult, prm[P_FLOOR])
    depth = depth0 * mult
    st[S_TRANS] *= decay
    st[S_Y] *= decay
    y = st[S_Y]
    p_pre = exp(mst[M_X] + st[S_PERM] + st[S_TRANS])
    ref = st[S_REF]
    dd = (ref - p_pre) / ref * 100.0 - prm[P_DIPTHR]
    dip = 0.0
    if dd > 0.0:
        dip = min(prm[P_DIPRATE] * dd, prm[P_DIPCAP])
    slot = t % npend
    forced = pend[slot]
    pend[slot] = 0.0
    aslot = t % arb.shape[0]
    arb_in = arb[aslot]
    arb[aslot] = 0.0
    ext = exo_t + dip + arb_in
    ri = ist[J_RING]
    old = ring[ri]
    msum = st[S_MSUM]
    # Binance P1 / P2 and Hyperliquid's basis EMA use the samples of previous steps
    nb = ist[J_BCOUNT]
    basis_mean = st[S_BSUM] / nb if nb > 0 else 0.0
    interval = prm[P_FINT_S]
    tau = 0.0
    if interval > 0.0:
        tau = time_to_next_funding_nb(prm[P_T0] + t * prm[P_STEP], interval)
    others = np.nan
    if rule == MARK_HYPERLIQUID:
        others = _median_others(v, last_all, nv, scratch)
    it = 0
    while True:
        imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
        p = p_pre * exp(imp)
        last = p * wick_t
        mark = _mark_nb(rule, last, index, basis_mean, st[S_EMA], st[S_FLAST], tau, interval,
                        others, msum, old, w)
        before = ist[J_NREC]
        new_flow = scan_triggers_nb(t, mark, last, side, qty, entry, wallet, lp, status, order,
                                    tlp, n_long, n_ladder, stop_idx, stop_px, heap_l, heap_s,
                                    floor, cap, mmr, cum, prm, iprm, rec, ist)
        it += 1
        if ist[J_NREC] == before:
            break
        if lat == 0:
            forced += new_flow
        else:
            pend[(t + lat) % npend] += new_flow
        if it >= maxit or not feedback or lat > 0:
            # triggers found at the cap carry their flow; those not yet found wait a step
            imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
            p = p_pre * exp(imp)
            last = p * wick_t
            mark = _mark_nb(rule, last, index, basis_mean, st[S_EMA], st[S_FLAST], tau,
                            interval, others, msum, old, w)
            break
    net = ext + forced if feedback else ext
    fill = p_pre * exp(mean_impact_nb(y, net, depth, alpha, imp)) * wick_t
    liq_l = 0.0
    liq_s = 0.0
    stop_usd = 0.0
    entry_usd = 0.0
    adl_usd0 = st[S_ADLUSD]
    adl_n0 = st[S_ADLN]
    part0 = st[S_NPART]
    back0 = st[S_BACKSTOP]
    handed = 0.0
    nliq = 0
    r = ist[J_FPTR]
    while r < ist[J_NREC] and rec[r].exec_step <= t:
        kind = rec[r].kind
        if kind == KIND_ENTRY:
            entry_usd += open_nb(r, fill, side, qty, entry, wallet, lp, status, n_ladder, heap_l,
                                 heap_s, floor, cap, mmr, cum, rec, st, ist)
        elif kind == KIND_STOP:
            stop_usd += settle_nb(r, fill, side, qty, entry, wallet, fee_rate, status, rec, st)
        elif kind != KIND_ADL:
            pm = prev_mark
            if kind == KIND_BACKSTOP and rec[r].trigger_step < t:
                # the vault took the position at the mark of its trigger (latency): the mark
                # before that one, not the one before this step, is its previous mark
                nm = marks.shape[0]
                pm = marks[(rec[r].trigger_step - 1 + nm) % nm]
            usd, _, done = liquidate_nb(r, fill, mark, pm, side, qty, entry, wallet, lp,
                                        status, n_ladder, heap_l, heap_s, floor, cap, mmr, cum,
                                        fee_rate, prm, iprm, rec, st, ist, adl_buf, adl_rank)
            handed += -side[rec[r].pos] * done * fill
            if kind != KIND_PARTIAL:
                nliq += 1
            if side[rec[r].pos] > 0:
                liq_l += usd
            else:
                liq_s += usd
        r += 1
    ist[J_FPTR] = r
    # state updates
    st[S_PERM] += phi * imp
    st[S_TRANS] += (1.0 - phi) * imp
    # coins handed to ADL never reached the book: take them off the outstanding imbalance
    st[S_Y] = y + net - (handed if feedback else 0.0)
    st[S_PRICE] = p
    st[S_MARK] = mark
    marks[t % marks.shape[0]] = mark
    ring[ri] = last
    msum += last - old
    ri += 1
    if ri == w:
        ri = 0
        msum = 0.0
        for j in range(w):  # exact re-sum once per window: no drift over long runs
            msum += ring[j]
    ist[J_RING] = ri
    st[S_MSUM] = msum
    if rule != MARK_LAST_AVERAGE:
        sample = last - index
        bw = iprm[I_BWIN]
        k = ist[J_BRING]
        if nb >= bw:
            st[S_BSUM] -= bring[k]
        else:
            ist[J_BCOUNT] = nb + 1
        bring[k] = sample
        st[S_BSUM] += sample
        ist[J_BRING] = (k + 1) % bw
        st[S_EMA] += prm[P_EMA] * (sample - st[S_EMA])
        st[S_PACC] += (last - index) / index
        st[S_PCNT] += 1.0
    st[S_RV] = memd * st[S_RV] + (1.0 - memd) * abs(log(p / p_prev)) * 100.0
    if feedback:
        st[S_LF] = memd * st[S_LF] + (1.0 - memd) * abs(forced) / depth0
    st[S_REF] = refd * st[S_REF] + (1.0 - refd) * p
    o[C_LAST] = last
    o[C_MARK] = mark
    o[C_LIQL] = liq_l
    o[C_LIQS] = liq_s
    o[C_LIQN] = nliq
    o[C_STOP] = stop_usd
    o[C_EXO] = exo_t
    o[C_DIP] = dip
    o[C_FORCED] = forced
    o[C_OI] = (st[S_OQL] + st[S_OQS]) * mark
    o[C_DEPTH] = depth
    o[C_FUND] = st[S_FUND]
    o[C_BAD] = st[S_BAD]
    o[C_ITER] = it
    o[C_FILL] = fill
    o[C_ENTRY] = entry_usd
    o[C_INDEX] = index
    o[C_ADL] = st[S_ADLUSD] - adl_usd0
    o[C_ADLN] = st[S_ADLN] - adl_n0
    o[C_PART] = st[S_NPART] - part0
    o[C_FRATE] = st[S_FLAST]
    o[C_ARB] = arb_in
    o[C_BACK] = st[S_BACKSTOP] - back0


def _partial_bound(popu, table, rule) -> int:
    """Most partial-liquidation records the rows of one venue can produce (records are
    preallocated): Hyperliquid cuts 20 % at a time down to 100k USDC, so a position of notional N
    takes at most log(N / 100k) / log(1 / 0.8) partials; a step-down at most one per tier. The
    notional is taken at three times the start price, far beyond any path we run."""
    if rule == PARTIAL_HYPERLIQUID:
        n = popu.qty * popu.price_start * 3.0
        big = n > 1e5
        return int(np.ceil(np.log(n[big] / 1e5) / np.log(1.0 / 0.8)).sum()) + int(big.sum())
    if rule == PARTIAL_STEP_DOWN:
        b = np.searchsorted(table.cap, popu.qty * popu.price_start * 3.0)
        return int(np.minimum(b, len(table.cap) - 1).sum())
    return 0


@dataclasses.dataclass
class EngineState:
    """Everything the step loop reads and mutates, so a run can be advanced chunk by chunk.

    The populations are copied in (``qty``, ``entry``, ``wallet``, ``lp`` change during a run:
    partial liquidations, ADL, funding, conditional entries), so a population can serve several
    runs. Arrays are described in :func:`step_loop_nb`; ``outs`` is (V, T, len(COLUMNS)).
    """

    lay: np.ndarray
    side: np.ndarray
    qty: np.ndarray
    entry: np.ndarray
    wallet: np.ndarray
    lp: np.ndarray
    status: np.ndarray
    order: np.ndarray
    tlp: np.ndarray
    stop_idx: np.ndarray
    stop_px: np.ndarray
    heap_l: np.ndarray
    heap_s: np.ndarray
    tb_lay: np.ndarray
    floor: np.ndarray
    cap: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    st: np.ndarray
    ist: np.ndarray
    mst: np.ndarray
    sst: np.ndarray
    ring: np.ndarray
    bring: np.ndarray
    pend: np.ndarray
    marks: np.ndarray
    arb: np.ndarray
    comp_ring: np.ndarray
    rec: np.ndarray
    adl_buf: np.ndarray
    adl_rank: np.ndarray
    outs: np.ndarray
    wick: np.ndarray
    mprm: np.ndarray
    spot: np.ndarray
    spot_exo: np.ndarray
    spot_noise: np.ndarray
    tables: list
    pops: list

    @classmethod
    def for_venues(cls, pops, tables, n_steps: int, prm: np.ndarray, iprm: np.ndarray, funds,
                   *, mprm=None, spot=None, spot_exo=None, spot_noise=None, wick=None,
                   arb_delay: int = 0) -> EngineState:
        """Fresh state at the start price for V venues.

        pops, tables : per venue, a :class:`~cascade.population.Population` (all with the same
            start price) and its :class:`~cascade.brackets.BracketTable`
        prm, iprm : (V, N_PARAMS), (V, N_IPARAMS); funds : V insurance funds at the start, USD
        mprm : (N_MPARAMS,) market parameters (default: no arbitrage)
        spot : (J, N_SPOT) spot venues of the index, with spot_exo and spot_noise (J, T)
        wick : (V + 1, T) multipliers of each venue's last price and of the index (default 1)
        """
        nv = len(pops)
        p0 = pops[0].price_start
        if any(p.price_start != p0 for p in pops):
            raise ValueError("every venue's population must start at the same price")
        for p in pops:
            p.reset_entries()
        n = np.array([p.n for p in pops], np.int64)
        m = np.array([len(p.stop_idx) for p in pops], np.int64)
        ent = np.array([p.n_entries for p in pops], np.int64)
        lay = np.zeros((nv, N_LAYOUT), np.int64)
        lay[:, L_OFF] = np.concatenate([[0], np.cumsum(n)[:-1]])
        lay[:, L_END] = lay[:, L_OFF] + n
        lay[:, L_NLONG] = lay[:, L_OFF] + [p.n_long for p in pops]
        lay[:, L_NLADDER] = lay[:, L_OFF] + [p.n_ladder for p in pops]
        lay[:, L_SOFF] = np.concatenate([[0], np.cumsum(m)[:-1]])
        lay[:, L_SEND] = lay[:, L_SOFF] + m
        lay[:, L_SLONG] = lay[:, L_SOFF] + [p.n_long_stops for p in pops]
        lay[:, L_HOFF] = lay[:, L_OFF]
        lay[:, L_HEND] = lay[:, L_END]
        # an entry opens and may later close; ADL may cut one position in part per liquidation
        caps = np.array([3 * (p.n + e + _partial_bound(p, tb, int(ip[I_PARTIAL]))) + 16
                         for p, e, tb, ip in zip(pops, ent, tables, iprm)], np.int64)
        lay[:, L_ROFF] = np.concatenate([[0], np.cumsum(caps)[:-1]])
        lay[:, L_REND] = lay[:, L_ROFF] + caps
        status = np.zeros(int(n.sum()), np.int8)
        for v, p in enumerate(pops):
            status[lay[v, L_OFF] + p.n_ladder: lay[v, L_END]] = DORMANT
        tb_n = np.array([len(t.cap) for t in tables], np.int64)
        tb_lay = np.zeros((nv, 2), np.int64)
        tb_lay[:, 0] = np.concatenate([[0], np.cumsum(tb_n)[:-1]])
        tb_lay[:, 1] = tb_lay[:, 0] + tb_n
        st = np.zeros((nv, N_STATE))
        ist = np.zeros((nv, N_ISTATE), np.int64)
        wmax = int(iprm[:, I_MARKW].max())
        for v, p in enumerate(pops):
            st[v, S_PRICE] = st[v, S_REF] = st[v, S_MARK] = p0
            st[v, S_FUND] = funds[v]
            st[v, S_OQL] = float(p.qty[: p.n_long].sum())
            st[v, S_OQS] = float(p.qty[p.n_long: p.n_ladder].sum())
            st[v, S_MSUM] = p0 * int(iprm[v, I_MARKW])
            ist[v, J_LPTR] = ist[v, J_SPTR] = p.n_long
            ist[v, J_LSPTR] = ist[v, J_SSPTR] = p.n_long_stops
        mst = np.zeros(N_MSTATE)
        mst[M_X] = mst[M_COMP] = log(p0)
        mst[M_INDEX] = p0
        mst[M_DEPTH_SUM] = float(prm[:, P_DEPTH].sum())
        spot = np.zeros((0, N_SPOT)) if spot is None else np.ascontiguousarray(spot, np.float64)
        nsp = spot.shape[0]
        maxlag = int(spot[:, SP_LAG].max()) if nsp else 0
        cat = np.concatenate
        return cls(
            lay=lay, side=cat([p.side for p in pops]), qty=cat([p.qty for p in pops]),
            entry=cat([p.entry for p in pops]), wallet=cat([p.wallet for p in pops]),
            lp=cat([p.lp for p in pops]), status=status,
            order=cat([np.arange(p.n, dtype=np.int32) for p in pops]),
            tlp=np.full(int(n.sum()), -np.inf),
            stop_idx=cat([p.stop_idx for p in pops]).astype(np.int32),
            stop_px=cat([p.stop_px for p in pops]).astype(np.float64),
            # np.empty maps memory lazily: only what a run touches becomes resident
            heap_l=np.empty(int(n.sum()), np.int32), heap_s=np.empty(int(n.sum()), np.int32),
            tb_lay=tb_lay, floor=cat([t.floor for t in tables]), cap=cat([t.cap for t in tables]),
            mmr=cat([t.mmr for t in tables]), cum=cat([t.cum for t in tables]),
            st=st, ist=ist, mst=mst, sst=np.zeros((nsp, 2)), ring=np.full((nv, wmax), p0),
            bring=np.zeros((nv, max(1, int(iprm[:, I_BWIN].max())))),
            pend=np.zeros((nv, int(iprm[:, I_LAT].max()) + 1)),
            marks=np.full((nv, int(iprm[:, I_LAT].max()) + 2), p0),
            arb=np.zeros((nv, int(arb_delay) + 1)),
            comp_ring=np.full(maxlag + 2, log(p0)), rec=np.empty(int(caps.sum()), RECORD_DTYPE),
            adl_buf=np.empty((2, int(n.sum())), np.int32),
            adl_rank=np.empty(int(n.sum())), outs=np.zeros((nv, n_steps, len(COLUMNS))),
            wick=np.ones((nv + 1, n_steps)) if wick is None else wick,
            mprm=np.zeros(N_MPARAMS) if mprm is None else mprm, spot=spot,
            spot_exo=np.zeros((nsp, n_steps)) if spot_exo is None else spot_exo,
            spot_noise=np.zeros((nsp, n_steps)) if spot_noise is None else spot_noise,
            tables=list(tables), pops=list(pops))

    @classmethod
    def initial(cls, popu, n_steps: int, iprm: np.ndarray, fund_usd: float, table,
                prm: np.ndarray | None = None) -> EngineState:
        """Fresh state of a single-venue run (``iprm`` from :func:`cascade.market.parameters`;
        ``table``: the venue's :class:`~cascade.brackets.BracketTable`)."""
        prm2 = np.ones((1, P_T0 + 1)) if prm is None else np.atleast_2d(prm)
        return cls.for_venues([popu], [table], n_steps, prm2, np.atleast_2d(iprm), [fund_usd])

    def advance(self, popu, exo, noise, prm, iprm, t_begin: int, t_end: int) -> None:
        """Run steps ``[t_begin, t_end)``. ``exo``: (T,) or (V, T) USD per step; ``prm``/``iprm``:
        one venue's vectors or (V, ...) arrays. ``popu`` is unused (kept for callers that pass
        the single-venue population)."""
        step_loop_nb(t_begin, t_end, self.lay, self.side, self.qty, self.entry, self.wallet,
                     self.lp, self.status, self.order, self.tlp, self.stop_idx, self.stop_px,
                     self.heap_l, self.heap_s, self.tb_lay, self.floor, self.cap, self.mmr,
                     self.cum, np.atleast_2d(exo), noise, self.wick, np.atleast_2d(prm),
                     np.atleast_2d(iprm), self.mprm, self.spot, self.spot_exo, self.spot_noise,
                     self.st, self.ist, self.mst, self.sst, self.ring, self.bring, self.pend,
                     self.marks, self.arb, self.comp_ring, self.rec, self.adl_buf, self.adl_rank,
                     self.outs)

    # ------------------------------------------------------------------------------ funding
    def pay_funding(self, v: int, rate: float, price: float) -> dict:
        """Pay funding on venue ``v``: every open position pays ``s * qty * price * rate`` USD
        out of its wallet (``rate`` > 0: longs pay), the liquidation prices move, and the ladder
        and heaps are re-sorted (a payment per coin is the same for a whole side, but the move
        of the liquidation price is ``d / (MMR_b - s)``, so it differs across brackets).

        The population is one side of each trade only: what the modelled longs pay and the
        modelled shorts receive differ by the funding of the counterparties we do not model
        (``to_others``), so the three sum to zero. Returns them in USD."""
        a, b = int(self.lay[v, L_OFF]), int(self.lay[v, L_END])
        status = self.status[a:b]
        # a triggered row still holds its position until its order fills, unless the trigger was
        # a conditional entry not yet filled (latency): no position yet, and its wallet still
        # holds the initial-margin fraction (entry NaN until open_nb)
        live = np.flatnonzero((status == OPEN) | (status == HEAPED)
                              | ((status == TRIGGERED) & ~np.isnan(self.entry[a:b])))
        side = self.side[a:b]
        pay = side[live] * self.qty[a:b][live] * price * rate
        self.wallet[a:b][live] -= pay
        long = side[live] > 0
        paid_l = float(pay[long].sum())
        paid_s = float(pay[~long].sum())
        self.st[v, S_FUNDPAID_L] += paid_l
        self.st[v, S_FUNDPAID_S] += paid_s
        self._refresh_ladder(v, live)
        return {"longs_paid_usd": paid_l, "shorts_paid_usd": paid_s,
                "to_others_usd": -(paid_l + paid_s)}

    def _refresh_ladder(self, v: int, rows: np.ndarray) -> None:
        """Recompute the liquidation prices of ``rows`` (venue-local) and restore the order of
        the part of the ladder not yet walked, and of the heaps."""
        a, b = int(self.lay[v, L_OFF]), int(self.lay[v, L_END])
        tb = self.tables[v]
        lp = self.lp[a:b]
        out_b = np.empty(len(rows), np.int8)
        out_lp = np.empty(len(rows))
        liq_prices_nb(self.side[a:b][rows], self.qty[a:b][rows], self.entry[a:b][rows],
                      self.wallet[a:b][rows], tb.floor, tb.cap, tb.mmr, tb.cum, out_lp, out_b)
        lp[rows] = out_lp
        order = self.order[a:b]
        lo, hi = int(self.ist[v, J_LPTR]), int(self.ist[v, J_SPTR])
        n_ladder = int(self.lay[v, L_NLADDER] - a)
        for s0, s1 in ((0, lo), (hi, n_ladder)):  # the unwalked longs, the unwalked shorts
            part = order[s0:s1]
            order[s0:s1] = part[np.argsort(lp[part], kind="stable")]
        ha, hb = int(self.lay[v, L_HOFF]), int(self.lay[v, L_HEND])
        heapify_nb(self.heap_l[ha:hb], int(self.ist[v, J_HL]), lp, -1.0)
        heapify_nb(self.heap_s[ha:hb], int(self.ist[v, J_HS]), lp, 1.0)

    # ------------------------------------------------------------------------------ results
    @property
    def out(self) -> np.ndarray:
        """(T, len(COLUMNS)) per-step results of the first venue."""
        return self.outs[0]

    def venue_records(self, v: int) -> np.ndarray:
        """RECORD_DTYPE (k,) records of venue ``v`` in the order written, ``pos`` venue-local."""
        r0 = int(self.lay[v, L_ROFF])
        return self.rec[r0: r0 + int(self.ist[v, J_NREC])]

    @property
    def records(self) -> np.ndarray:
        """RECORD_DTYPE (k,): every venue's records (venue by venue, each in the order written),
        ``pos`` indexing the concatenated rows and ``venue`` set."""
        parts = []
        for v in range(self.lay.shape[0]):
            r = self.venue_records(v).copy()
            r["pos"] += self.lay[v, L_OFF]
            r["venue"] = v
            parts.append(r)
        return np.concatenate(parts) if parts else np.empty(0, RECORD_DTYPE)

    def write_back_entries(self) -> None:
        """Copy the opened conditional entries' entry, wallet and liquidation price into each
        venue's population (rows ``[n_ladder, n)``), as results and plots read them there."""
        for v, p in enumerate(self.pops):
            a = int(self.lay[v, L_OFF])
            if p.n_entries:
                sl = slice(a + p.n_ladder, a + p.n)
                p.entry[p.n_ladder:] = self.entry[sl]
                p.wallet[p.n_ladder:] = self.wallet[sl]
                p.lp[p.n_ladder:] = self.lp[sl]
