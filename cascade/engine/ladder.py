"""The ladder of triggers: records, the heaps of re-queued positions, the trigger scan that walks
the sorted liquidation and stop prices, and conditional entries opening."""

from __future__ import annotations

import numpy as np

from cascade._numba import jit
from cascade.engine.layout import (
    DORMANT,
    HEAPED,
    J_HL,
    J_HS,
    J_LPTR,
    J_LSPTR,
    J_NREC,
    J_SPTR,
    J_SSPTR,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_PARTIAL,
    KIND_STOP,
    OPEN,
    S_OQL,
    S_OQS,
    TRIGGERED,
)
from cascade.model.market import (
    I_LAT,
    I_PARTIAL,
    P_LIQ_EQ,
    P_STEP,
    P_T0,
    PARTIAL_HYPERLIQUID,
    PARTIAL_STEP_DOWN,
)
from cascade.rules.margin import liq_price_nb
from cascade.rules.partial import (
    BYBIT_MAX_STEPS,
    BYBIT_MIN_TIER,
    BYBIT_TIERS_PER_STEP,
    HL_BACKSTOP,
    HL_PARTIAL,
    OUTCOME_PARTIAL,
    StepDownRule,
    hl_liquidation_nb,
    tier_step_down_nb,
)


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
    rec[n].ioc_qty = 0.0
    rec[n].ioc_fill = np.nan
    rec[n].fund_qty = 0.0
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
def _requeue(i, pos, lad, vs):
    """Track row ``i`` (still open, with a new liquidation price) in its side's heap."""
    if i < lad.n_ladder:
        pos.status[i] = HEAPED
    else:
        pos.status[i] = OPEN
    if pos.side[i] > 0:
        vs.ist[J_HL] = heap_push_nb(lad.heap_l, vs.ist[J_HL], i, pos.lp, -1.0)
    else:
        vs.ist[J_HS] = heap_push_nb(lad.heap_s, vs.ist[J_HS], i, pos.lp, 1.0)


@jit
def _liq_trigger(i, t, mark, last, pos, tab, vp, vs):
    """Trigger the liquidation of open row ``i`` by the venue's rule; returns its market flow.

    PARTIAL_NONE: one order for the whole position. PARTIAL_STEP_DOWN (Bybit, mechanics.md
    section 2): step down one tier; if that is not enough the whole position goes (the reduction
    and the takeover of the rest are one order here). PARTIAL_HYPERLIQUID (section 3): below 2/3
    of MM the vault takes the position (no market order); above 100k USDC notional, 20 % at a
    time unless a partial was made in the last 30 s; else the whole position."""
    lat = vp.iprm[I_LAT]
    rule = vp.iprm[I_PARTIAL]
    q = pos.qty[i]
    kind = KIND_LIQ
    qc = q
    if rule == PARTIAL_HYPERLIQUID:
        t_s = vp.prm[P_T0] + t * vp.prm[P_STEP]
        action, c, _, _ = hl_liquidation_nb(pos.side[i], q, pos.entry[i], pos.wallet[i], mark,
                                            t_s, pos.tlp[i], tab.floor, tab.cap, tab.mmr,
                                            tab.cum)
        if action == HL_BACKSTOP:
            kind = KIND_BACKSTOP
        elif action == HL_PARTIAL:
            kind = KIND_PARTIAL
            qc = c
            pos.tlp[i] = t_s
    elif rule == PARTIAL_STEP_DOWN:
        outcome, _, closed, _, _, _, _ = tier_step_down_nb(
            pos.side[i], q, pos.entry[i], pos.wallet[i], mark, mark, tab,
            StepDownRule(BYBIT_TIERS_PER_STEP, BYBIT_MIN_TIER, BYBIT_MAX_STEPS, False, 0.0, True,
                         vp.prm[P_LIQ_EQ] != 0.0))
        if outcome == OUTCOME_PARTIAL:
            kind = KIND_PARTIAL
            qc = closed
    _record(vs.rec, vs.ist, i, kind, t, lat, mark, qc)
    pos.status[i] = TRIGGERED
    if kind == KIND_BACKSTOP:
        return 0.0
    return -pos.side[i] * qc * last


@jit
def _crossed_long(x, mark, liq_on_equal):
    return x > mark or (liq_on_equal and x == mark)


@jit
def _crossed_short(x, mark, liq_on_equal):
    return x < mark or (liq_on_equal and x == mark)


@jit
def _stop_or_entry(i, t, lat, last, pos, vs):
    """Trigger the conditional order of row ``i`` if it is still waiting: a stop-loss of an open
    position, or the entry of a dormant one. Returns True if it triggered."""
    s = pos.status[i]
    if s == OPEN or s == HEAPED:
        _record(vs.rec, vs.ist, i, KIND_STOP, t, lat, last, pos.qty[i])
        pos.status[i] = TRIGGERED
        return True
    if s == DORMANT:
        _record(vs.rec, vs.ist, i, KIND_ENTRY, t, lat, last, pos.qty[i])
        pos.status[i] = TRIGGERED
        return True
    return False


@jit
def scan_triggers_nb(t, mark, last, pos, lad, tab, vp, vs):
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
    liq_on_equal = vp.prm[P_LIQ_EQ] != 0.0
    lat = vp.iprm[I_LAT]
    flow = 0.0
    m = lad.stop_idx.shape[0]
    k = vs.ist[J_LPTR]
    while k > 0:
        i = lad.order[k - 1]
        if pos.status[i] == OPEN:
            if not _crossed_long(pos.lp[i], mark, liq_on_equal):
                break
            flow += _liq_trigger(i, t, mark, last, pos, tab, vp, vs)
        k -= 1
    vs.ist[J_LPTR] = k
    k = vs.ist[J_SPTR]
    while k < lad.n_ladder:
        i = lad.order[k]
        if pos.status[i] == OPEN:
            if not _crossed_short(pos.lp[i], mark, liq_on_equal):
                break
            flow += _liq_trigger(i, t, mark, last, pos, tab, vp, vs)
        k += 1
    vs.ist[J_SPTR] = k
    size = vs.ist[J_HL]
    while size > 0 and _crossed_long(pos.lp[lad.heap_l[0]], mark, liq_on_equal):
        i = lad.heap_l[0]
        size = heap_pop_nb(lad.heap_l, size, pos.lp, -1.0)
        vs.ist[J_HL] = size
        if pos.status[i] == OPEN or pos.status[i] == HEAPED:
            flow += _liq_trigger(i, t, mark, last, pos, tab, vp, vs)
    size = vs.ist[J_HS]
    while size > 0 and _crossed_short(pos.lp[lad.heap_s[0]], mark, liq_on_equal):
        i = lad.heap_s[0]
        size = heap_pop_nb(lad.heap_s, size, pos.lp, 1.0)
        vs.ist[J_HS] = size
        if pos.status[i] == OPEN or pos.status[i] == HEAPED:
            flow += _liq_trigger(i, t, mark, last, pos, tab, vp, vs)
    k = vs.ist[J_LSPTR]
    while k > 0 and lad.stop_px[k - 1] >= last:
        k -= 1
        i = lad.stop_idx[k]
        if _stop_or_entry(i, t, lat, last, pos, vs):
            flow -= pos.qty[i] * last
    vs.ist[J_LSPTR] = k
    k = vs.ist[J_SSPTR]
    while k < m and lad.stop_px[k] <= last:
        i = lad.stop_idx[k]
        if _stop_or_entry(i, t, lat, last, pos, vs):
            flow += pos.qty[i] * last
        k += 1
    vs.ist[J_SSPTR] = k
    return flow


@jit
def open_nb(r, fill, pos, lad, tab, vs):
    """Open the dormant position of entry record ``r`` at ``fill``: isolated margin
    ``qty * fill * wallet`` (before entry, ``wallet`` holds the initial-margin fraction
    1 / leverage), its liquidation price from the bracket table, and onto the heap of its side.
    Returns the notional opened, USD."""
    i = vs.rec[r].pos
    q = pos.qty[i]
    pos.entry[i] = fill
    pos.wallet[i] = q * fill * pos.wallet[i]
    p, _ = liq_price_nb(pos.side[i], q, fill, pos.wallet[i], 0.0, 0.0, tab.floor, tab.cap,
                        tab.mmr, tab.cum)
    pos.lp[i] = p
    vs.rec[r].fill_price = fill
    if pos.side[i] > 0:
        vs.st[S_OQL] += q
    else:
        vs.st[S_OQS] += q
    _requeue(i, pos, lad, vs)
    return q * fill
