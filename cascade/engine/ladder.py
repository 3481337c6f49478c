"""The ladder of triggers: records, the heaps of re-queued positions, the trigger scan that walks
the sorted liquidation and stop prices, conditional entries opening, and funding paid lazily.

Funding without re-sorting
--------------------------
A funding payment is the same per coin for every position of one side of a venue, so inside one
margin bracket it moves every liquidation price by the same amount (``C / (MMR_b - s)`` for a
cumulative wallet change ``C`` per coin, :func:`cascade.rules.funding.funding_lp_shift_nb`). The
ladder is therefore kept as *runs*, one per (side, bracket), each sorted by liquidation price
when it was keyed; a funding event changes no row and no order, only the per-side cumulative
``fcs`` from which each run's offset follows. A row's wallet, liquidation price and funding paid
are brought up to date (the payments replayed one by one, with the same arithmetic as an eager
payment, so bit for bit the same numbers) only when a kernel touches the row (:func:`sync_nb`).

The scan walks each run from its end nearest the mark while the row's *approximate* current
liquidation price (its last exact one plus the run's offset since) is within a relative band
``LADDER_BAND`` of the mark; each such row is synced and triggered if its exact price is crossed.
The crossed rows of all runs are then triggered in the order of their exact liquidation price,
ties by row (as the slow reference orders them; the former full re-sort kept the previous order
of rows that only became tied through rounding), so the result is that of a ladder re-sorted at
every funding event. Each run keeps its head (its unwalked row nearest the mark) and each side
the bound over its runs and strays (``st[S_HEADL]``, ``st[S_HEADS]``): a step whose mark is not
near any of them touches no row.

The offset is exact only while the notional at the liquidation price stays in the row's bracket.
Rows whose bracket could change before the cumulative funding moves ``LADDER_FUNDING_WINDOW`` x
the start price per coin away from where the runs were keyed are not put in a run: they are the
*strays*, kept in two small heaps, paid eagerly at each funding event (like the heaps of
re-queued rows) and merged into the ladder's candidates. If the cumulative funding does leave
the window, the venue's runs are keyed again (:func:`rekey_runs_nb`: every row paid, the rows
that may now change bracket moved to the strays; O(rows), no sort).

Cross margin: the engine's positions are isolated, or cross accounts holding a single position
each (their own wallet, spare margin included): for both the shift per (side, bracket) is exact.
A cross account holding several positions would share one wallet that its other positions move
(their funding, their PnL); such rows could not ride a run's offset and would have to be strays
(paid and re-heaped at each funding event, O(such rows)); the population draws none.
"""

from __future__ import annotations

import numba
import numpy as np

from cascade._numba import jit, pjit
from cascade.engine.layout import (
    DORMANT,
    HEAPED,
    J_FBASE,
    J_HL,
    J_HS,
    J_LSPTR,
    J_NFEV,
    J_NREC,
    J_SSPTR,
    J_XL,
    J_XS,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_PARTIAL,
    KIND_STOP,
    OPEN,
    R_BRACKET,
    R_END,
    R_PTR,
    R_SIDE,
    R_START,
    S_HEADL,
    S_HEADS,
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

# the scan checks the exact liquidation price of every run row whose approximate one (last exact
# price plus the run's offset since) is within this fraction of the mark: the approximation
# differs from the exact price by rounding only (about 1e-15 relative), so 1e-9 misses nothing
LADDER_BAND = 1e-9
# rows whose bracket could change before the cumulative funding per coin moves this fraction of
# the start price are strays (October: 0.15 % of the rows; funding adds up to about 0.06 % of the
# price in that day); beyond it the runs are keyed again (O(rows), no sort)
LADDER_FUNDING_WINDOW = 0.005


@jit
def sync_row_nb(i, pos, tab, fev, nev):
    """Pay row ``i`` of ``pos`` (:data:`~cascade.engine.structs.Positions`) the funding events
    ``pos.fep[i]..nev-1`` it has not paid yet, if it held a position (open, re-queued, or
    triggered with its order not yet filled; a conditional entry not yet filled holds none),
    exactly as an eager payment would: ``pay = s * qty * price * rate`` out of the wallet, into
    ``fpaid``, then its liquidation price from scratch in the bracket table ``tab``. Sets
    ``fep[i] = nev``. ``fev``: float64 (>= nev, 2) the events' (price, rate)."""
    fep = pos.fep
    k0 = fep[i]
    if k0 >= nev:
        return
    st = pos.status[i]
    if st == OPEN or st == HEAPED or (st == TRIGGERED and not np.isnan(pos.entry[i])):
        s = 1.0 if pos.side[i] > 0 else -1.0
        q = pos.qty[i]
        w = pos.wallet[i]
        fp = pos.fpaid[i]
        for k in range(k0, nev):
            pay = s * q * fev[k, 0] * fev[k, 1]
            w -= pay
            fp += pay
        pos.wallet[i] = w
        pos.fpaid[i] = fp
        pos.lp[i], _ = liq_price_nb(pos.side[i], q, pos.entry[i], w, 0.0, 0.0, tab.floor,
                                    tab.cap, tab.mmr, tab.cum)
    fep[i] = nev


@jit
def sync_nb(i, pos, tab, vs):
    """:func:`sync_row_nb` on the venue views (:mod:`cascade.engine.structs`). Callers test
    ``pos.fep[i] < vs.ist[J_NFEV]`` first: a call passing the views' arrays costs their reference
    counts (about 0.6 us measured), on every trigger and settlement otherwise."""
    sync_row_nb(i, pos, tab, vs.fev, vs.ist[J_NFEV])


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
    if pos.fep[i] < vs.ist[J_NFEV]:
        sync_nb(i, pos, tab, vs)
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
def _collect_ladder(sgn, mark, liq_on_equal, pos, lad, tab, vs):
    """Rows of the ladder's side ``sgn`` (+1 longs, -1 shorts) whose liquidation price ``mark``
    has crossed, into ``lad.cand``; returns their count. Called when the side's bound
    (``st[S_HEADL]`` / ``st[S_HEADS]``) is within the band of the mark.

    Each run of the side is walked from its pointer toward the far end (longs: down from the
    highest price, shorts: up from the lowest) while a row's approximate price is within the
    band of the mark; such rows are synced and kept if crossed. The pointer stops at the first
    open row not crossed (rows before it are no longer open). Then the side's stray heap gives
    its crossed rows (stale entries, rows no longer open, are dropped)."""
    band = LADDER_BAND * abs(mark)
    nc = 0
    nev = vs.ist[J_NFEV]
    row = 0 if sgn > 0 else 1
    c_now = vs.fcs[row, nev]
    c_base = vs.fcs[row, vs.ist[J_FBASE]]
    nb = tab.mmr.shape[0]
    for r in range(0 if sgn > 0 else nb, nb if sgn > 0 else 2 * nb):
        # the run's highest (longs) or lowest (shorts) unwalked key, moved by the run's offset:
        # a bound on every open row left in it, so a run far from the mark costs two loads
        head = lad.rkey[r, 0] + lad.rkey[r, 1]
        if (head < mark - band) if sgn > 0 else (head > mark + band):
            continue
        g = tab.mmr[lad.runs[r, R_BRACKET]] - sgn
        k = lad.runs[r, R_PTR]
        stop = -1
        # longs walk down from the pointer to R_START (row order[k - 1]), shorts up to R_END
        end = lad.runs[r, R_START] if sgn > 0 else lad.runs[r, R_END]
        while k != end:
            i = lad.order[k - 1] if sgn > 0 else lad.order[k]
            if pos.status[i] == OPEN:
                approx = pos.lp[i] + (c_now - vs.fcs[row, pos.fep[i]]) / g
                if (approx < mark - band) if sgn > 0 else (approx > mark + band):
                    break
                if pos.fep[i] < vs.ist[J_NFEV]:
                    sync_nb(i, pos, tab, vs)
                if (_crossed_long(pos.lp[i], mark, liq_on_equal) if sgn > 0
                        else _crossed_short(pos.lp[i], mark, liq_on_equal)):
                    lad.cand[nc] = i
                    nc += 1
                elif stop < 0:
                    stop = k
            k += -1 if sgn > 0 else 1
        p = stop if stop >= 0 else k
        lad.runs[r, R_PTR] = p
        # the new head: an open row (the walk stops on one) or none left
        if sgn > 0:
            if p > lad.runs[r, R_START]:
                i = lad.order[p - 1]
                lad.rkey[r, 0] = pos.lp[i] - (vs.fcs[row, pos.fep[i]] - c_base) / g
            else:
                lad.rkey[r, 0] = -np.inf
        elif p < lad.runs[r, R_END]:
            i = lad.order[p]
            lad.rkey[r, 0] = pos.lp[i] - (vs.fcs[row, pos.fep[i]] - c_base) / g
        else:
            lad.rkey[r, 0] = np.inf
    heap = lad.xheap_l if sgn > 0 else lad.xheap_s
    slot = J_XL if sgn > 0 else J_XS
    hs = -1.0 if sgn > 0 else 1.0
    size = vs.ist[slot]
    while size > 0:
        i = heap[0]
        if pos.status[i] != OPEN:
            size = heap_pop_nb(heap, size, lad.xkey, hs)
            continue
        if pos.fep[i] < vs.ist[J_NFEV]:
            sync_nb(i, pos, tab, vs)
        if not (_crossed_long(pos.lp[i], mark, liq_on_equal) if sgn > 0
                else _crossed_short(pos.lp[i], mark, liq_on_equal)):
            break
        size = heap_pop_nb(heap, size, lad.xkey, hs)
        lad.cand[nc] = i
        nc += 1
    vs.ist[slot] = size
    _side_head(sgn, lad, tab, vs)
    return nc


@jit
def _side_head(sgn, lad, tab, vs):
    """``st[S_HEADL]`` (longs, ``sgn`` +1): the highest of the long runs' heads moved by their
    offsets and of the long stray heap's top key; ``st[S_HEADS]``: the lowest for shorts."""
    nb = tab.mmr.shape[0]
    if sgn > 0:
        h = -np.inf
        for r in range(nb):
            h = max(h, lad.rkey[r, 0] + lad.rkey[r, 1])
        if vs.ist[J_XL] > 0:
            h = max(h, lad.xkey[lad.xheap_l[0]])
        vs.st[S_HEADL] = h
    else:
        h = np.inf
        for r in range(nb, 2 * nb):
            h = min(h, lad.rkey[r, 0] + lad.rkey[r, 1])
        if vs.ist[J_XS] > 0:
            h = min(h, lad.xkey[lad.xheap_s[0]])
        vs.st[S_HEADS] = h


@jit
def side_heads_nb(lad, tab, vs):
    """Both sides' bounds (:func:`_side_head`), after the runs, their offsets or the stray heaps
    changed outside a scan."""
    _side_head(1, lad, tab, vs)
    _side_head(-1, lad, tab, vs)


@jit
def _order_candidates(cand, nc, lp, sgn):
    """Sort ``cand[:nc]`` in trigger order: longs (``sgn`` +1) by liquidation price down, ties by
    row down; shorts up, ties by row up: the order of a ladder sorted by (price, row) walked
    from the mark."""
    if nc < 2:
        return
    rows = np.sort(cand[:nc])
    if sgn > 0:
        rows = rows[::-1].copy()
    key = np.empty(nc)
    for j in range(nc):
        key[j] = -lp[rows[j]] if sgn > 0 else lp[rows[j]]
    o = np.argsort(key, kind="mergesort")
    for j in range(nc):
        cand[j] = rows[o[j]]


@jit
def scan_triggers_nb(t, mark, last, pos, lad, tab, vp, vs):
    """Trigger every open position whose liquidation price the mark has crossed (longs:
    ``lp >= mark``, shorts: ``lp <= mark``; strict when the venue liquidates only below MM) and
    every conditional order the last price has crossed: sells on a fall (long stops, breakdown-
    short entries: ``px >= last``), buys on a rise (short stops, breakout-long entries:
    ``px <= last``).

    Order within a call: the ladder's longs (rows held from the start: runs and strays) from the
    highest liquidation price down, then its shorts from the lowest up (ties by row, in the same
    direction); then the heaps of positions opened or re-queued during the run (same order),
    then sells and buys on last price.

    Moves the run pointers and heap sizes; appends records. Returns the signed USD flow of the
    new market orders at ``last`` (sells negative).
    """
    liq_on_equal = vp.prm[P_LIQ_EQ] != 0.0
    lat = vp.iprm[I_LAT]
    flow = 0.0
    m = lad.stop_idx.shape[0]
    band = LADDER_BAND * abs(mark)
    for sgn in (1, -1):
        # the common step: no ladder row of this side near the mark (tested here: a call
        # passing the views costs their reference counts)
        if (vs.st[S_HEADL] < mark - band) if sgn > 0 else (vs.st[S_HEADS] > mark + band):
            continue
        nc = _collect_ladder(sgn, mark, liq_on_equal, pos, lad, tab, vs)
        _order_candidates(lad.cand, nc, pos.lp, sgn)
        for j in range(nc):
            flow += _liq_trigger(lad.cand[j], t, mark, last, pos, tab, vp, vs)
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
    if pos.fep[i] < vs.ist[J_NFEV]:
        sync_nb(i, pos, tab, vs)  # no position yet: it starts paying funding from now
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


# ------------------------------------------------------------------------- funding, the runs
@pjit
def sync_rows_nb(pos, tab, fev, nev):
    """:func:`sync_row_nb` on every row of one venue (each row in one iteration: the same
    numbers on any thread count)."""
    for i in numba.prange(pos.side.shape[0]):
        sync_row_nb(i, pos, tab, fev, nev)


@jit
def funding_event_nb(pos, lad, tab, vs):
    """After a funding event was appended to ``vs.fev``: pay it now to every row of the heaps of
    re-queued positions and of the strays (the rows the runs' offsets do not cover), and restore
    the four heaps' order (a stray's key ``xkey`` is its new liquidation price). O(heaps +
    strays). Moves every run's offset ``rkey[:, 1]``."""
    nev = vs.ist[J_NFEV]
    base = vs.ist[J_FBASE]
    for r in range(lad.runs.shape[0]):
        row = 0 if lad.runs[r, R_SIDE] > 0 else 1
        g = tab.mmr[lad.runs[r, R_BRACKET]] - (1.0 if row == 0 else -1.0)
        lad.rkey[r, 1] = (vs.fcs[row, nev] - vs.fcs[row, base]) / g
    for heap, slot, sgn in ((lad.heap_l, J_HL, -1.0), (lad.heap_s, J_HS, 1.0)):
        size = vs.ist[slot]
        for k in range(size):
            sync_nb(heap[k], pos, tab, vs)
        heapify_nb(heap, size, pos.lp, sgn)
    for heap, slot, sgn in ((lad.xheap_l, J_XL, -1.0), (lad.xheap_s, J_XS, 1.0)):
        size = vs.ist[slot]
        for k in range(size):
            i = heap[k]
            if pos.fep[i] < vs.ist[J_NFEV]:
                sync_nb(i, pos, tab, vs)
            if pos.status[i] == OPEN:
                lad.xkey[i] = pos.lp[i]
        heapify_nb(heap, size, lad.xkey, sgn)
    side_heads_nb(lad, tab, vs)


@jit
def _stays_in_bracket(side, q, lp, b, floor, cap, mmr, w):
    """Whether a row keeps bracket ``b`` while the cumulative wallet change per coin of its side
    moves anywhere in ``[-w, w]`` (the notional at ``lp + C / (MMR_b - s)`` stays in
    ``[floor_b, cap_b]``, :func:`cascade.rules.funding.funding_c_range_nb`).

    A long that cannot be liquidated (``lp`` clamped to 0; its unclamped price, in bracket 0,
    is below 0) stays in its run: its exact price ``max(unclamped + shift, 0)`` is at most the
    run's estimate ``0 + shift`` when longs pay, so the scan never stops above a row it should
    reach; when longs receive, the estimate is below 0 and so is the row's price, which no
    positive mark crosses."""
    s = 1.0 if side > 0 else -1.0
    g = mmr[b] - s
    d = w / abs(g)  # the largest move of the liquidation price
    hi = q * (lp + d)
    lo = q * (lp - d)
    return hi < cap[b] and (b == 0 or lo > floor[b])


@jit
def _run_heads(runs, order, lp, rkey):
    """``rkey[r] = (head, 0)``: the liquidation price of run ``r``'s row nearest the mark (its
    last for longs, first for shorts; -inf / inf if empty), every row paid (offset 0)."""
    for r in range(runs.shape[0]):
        a = runs[r, R_START]
        e = runs[r, R_END]
        if runs[r, R_SIDE] > 0:
            rkey[r, 0] = lp[order[runs[r, R_PTR] - 1]] if runs[r, R_PTR] > a else -np.inf
        else:
            rkey[r, 0] = lp[order[runs[r, R_PTR]]] if runs[r, R_PTR] < e else np.inf
        rkey[r, 1] = 0.0


@pjit
def _run_groups_nb(rows, side, qty, lp, br, floor, cap, mmr, w, out):
    """``out[j]``: the run of row ``rows[j]`` (``b`` for a long in bracket ``b``, ``nb + b`` for
    a short), or -1 for a stray (:func:`_stays_in_bracket`). One row per iteration: the same
    result on any thread count."""
    nb = mmr.shape[0]
    for j in numba.prange(rows.shape[0]):
        i = rows[j]
        b = np.int64(br[i])
        if _stays_in_bracket(side[i], qty[i], lp[i], b, floor, cap, mmr, w):
            out[j] = b if side[i] > 0 else nb + b
        else:
            out[j] = -1


_KEY_BLOCKS = 64  # fixed row blocks of the runs' counting sort: the same split on any thread count


@pjit
def _group_counts_nb(groups, hist):
    """``hist[k, g]``: rows of block ``k`` (of ``_KEY_BLOCKS`` equal blocks) in group ``g``
    (``groups`` int32 (m,), -1: none)."""
    m = groups.shape[0]
    size = (m + _KEY_BLOCKS - 1) // _KEY_BLOCKS
    for k in numba.prange(_KEY_BLOCKS):
        for j in range(k * size, min(m, (k + 1) * size)):
            g = groups[j]
            if g >= 0:
                hist[k, g] += 1


@pjit
def _group_scatter_nb(rows, groups, start, hist, order):
    """The stable counting sort's scatter: ``rows[j]`` of group ``groups[j] >= 0`` to
    ``order``, group ``g`` from ``start[g]`` on, each group in row order (block ``k`` after the
    blocks before it: ``hist`` the counts of :func:`_group_counts_nb`, overwritten)."""
    m = rows.shape[0]
    size = (m + _KEY_BLOCKS - 1) // _KEY_BLOCKS
    for g in range(hist.shape[1]):
        acc = start[g]
        for k in range(_KEY_BLOCKS):
            c = hist[k, g]
            hist[k, g] = acc
            acc += c
    for k in numba.prange(_KEY_BLOCKS):
        for j in range(k * size, min(m, (k + 1) * size)):
            g = groups[j]
            if g >= 0:
                order[hist[k, g]] = rows[j]
                hist[k, g] += 1


@jit
def key_runs_nb(rows, side, qty, lp, br, tab, lad, w):
    """Lay out a venue's ladder ``lad``: ``rows`` (int64 (m,), the ladder rows still open, sorted
    by (side long first, liquidation price, row)) of ``side`` / ``qty`` / ``lp`` (indexed by row;
    ``br`` int8 their brackets in ``tab``) go into ``lad.order`` as runs of one (side, bracket)
    (a stable counting sort, so each run stays sorted), except the strays (rows that may change
    bracket for a cumulative funding in ``[-w, w]`` USD per coin), which go into the stray heaps
    ``lad.xheap_l`` / ``lad.xheap_s`` keyed by ``lad.xkey``. Writes ``lad.runs`` (R, N_RUN),
    R >= 2 x brackets: runs ``b`` are longs in bracket ``b``, runs ``nb + b`` shorts, and their
    heads ``lad.rkey`` (:func:`_run_heads`); ``lad.cand`` (int32, >= m) holds each row's run.
    Returns the stray heaps' sizes."""
    order, runs, rkey, xheap_l, xheap_s, xkey, scratch = (lad.order, lad.runs, lad.rkey,
                                                          lad.xheap_l, lad.xheap_s, lad.xkey,
                                                          lad.cand)
    nb = tab.mmr.shape[0]
    _run_groups_nb(rows, side, qty, lp, br, tab.floor, tab.cap, tab.mmr, w, scratch)
    groups = scratch[: rows.shape[0]]
    hist = np.zeros((_KEY_BLOCKS, 2 * nb), np.int64)
    _group_counts_nb(groups, hist)
    count = np.zeros(2 * nb + 1, np.int64)
    for g in range(2 * nb):
        count[g + 1] = count[g] + hist[:, g].sum()
    nxl = 0
    nxs = 0
    if count[2 * nb] < rows.shape[0]:  # the strays, in row order
        for j in range(rows.shape[0]):
            if groups[j] < 0:
                i = rows[j]
                xkey[i] = lp[i]
                if side[i] > 0:
                    xheap_l[nxl] = i
                    nxl += 1
                else:
                    xheap_s[nxs] = i
                    nxs += 1
    runs[:, :] = 0
    for g in range(2 * nb):
        runs[g, R_START] = count[g]
        runs[g, R_END] = count[g + 1]
        runs[g, R_BRACKET] = g if g < nb else g - nb
        runs[g, R_SIDE] = 1 if g < nb else -1
        runs[g, R_PTR] = count[g + 1] if g < nb else count[g]
    _group_scatter_nb(rows, groups, count, hist, order)
    _run_heads(runs, order, lp, rkey)
    heapify_nb(xheap_l, nxl, xkey, -1.0)
    heapify_nb(xheap_s, nxs, xkey, 1.0)
    return nxl, nxs


def ladder_for(side, qty, lp, bracket, table, stop_idx, stop_px, *, window: float):
    """A venue's :class:`~cascade.engine.structs.Ladder` for rows ``side``/``qty``/``lp``
    (ladder rows only, sorted by side long first, then liquidation price, then row) in brackets
    ``bracket`` of ``table``, with the orders on last price ``stop_idx``/``stop_px``; strays for
    a funding ``window`` in USD per coin. Returns ``(ladder, strays_long, strays_short)``: the
    stray heaps' sizes go to ``ist[J_XL]``/``ist[J_XS]``. For kernels driven without an
    :class:`~cascade.engine.state.EngineState` (tests, benchmarks)."""
    from cascade.engine.layout import N_RUN
    from cascade.engine.structs import Ladder

    n = len(side)
    side = np.ascontiguousarray(side, np.int8)
    nr = 2 * len(table.mmr)
    lad = Ladder(int(np.count_nonzero(side > 0)), n, np.empty(n, np.int32),
                 np.ascontiguousarray(stop_idx, np.int32),
                 np.ascontiguousarray(stop_px, np.float64), np.empty(n, np.int32),
                 np.empty(n, np.int32), np.zeros((nr, N_RUN), np.int64), np.zeros((nr, 2)),
                 np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n), np.empty(n, np.int32))
    nxl, nxs = key_runs_nb(np.arange(n, dtype=np.int64), side, np.asarray(qty, np.float64),
                           np.asarray(lp, np.float64), np.ascontiguousarray(bracket, np.int8),
                           table.arrays, lad, float(window))
    return lad, int(nxl), int(nxs)


@jit
def rekey_runs_nb(pos, lad, tab, vs, w):
    """Key a venue's runs again at the current funding (the cumulative funding per coin left the
    window ``w`` the strays were chosen for): every open row of a run not yet walked is paid what
    it owes; those still in the run's bracket with room ``w`` either side stay, in their order
    (one offset moved them all, so the run stays sorted to rounding), compacted to the start of
    the run; the others join the stray heaps. O(rows), no sort."""
    nxl = vs.ist[J_XL]
    nxs = vs.ist[J_XS]
    for r in range(lad.runs.shape[0]):
        a = lad.runs[r, R_START]
        e = lad.runs[r, R_END]
        if a == e:
            continue
        sd = lad.runs[r, R_SIDE]
        b = lad.runs[r, R_BRACKET]
        lo, hi = (a, lad.runs[r, R_PTR]) if sd > 0 else (lad.runs[r, R_PTR], e)
        m = a
        for k in range(lo, hi):
            i = lad.order[k]
            if pos.status[i] != OPEN:
                continue
            if pos.fep[i] < vs.ist[J_NFEV]:
                sync_nb(i, pos, tab, vs)
            _, bn = liq_price_nb(pos.side[i], pos.qty[i], pos.entry[i], pos.wallet[i], 0.0, 0.0,
                                 tab.floor, tab.cap, tab.mmr, tab.cum)
            if bn == b and _stays_in_bracket(pos.side[i], pos.qty[i], pos.lp[i], b, tab.floor,
                                             tab.cap, tab.mmr, w):
                lad.order[m] = i
                m += 1
            elif sd > 0:
                lad.xkey[i] = pos.lp[i]
                nxl = heap_push_nb(lad.xheap_l, nxl, i, lad.xkey, -1.0)
            else:
                lad.xkey[i] = pos.lp[i]
                nxs = heap_push_nb(lad.xheap_s, nxs, i, lad.xkey, 1.0)
        lad.runs[r, R_END] = m
        lad.runs[r, R_PTR] = m if sd > 0 else a
    _run_heads(lad.runs, lad.order, pos.lp, lad.rkey)
    vs.ist[J_XL] = nxl
    vs.ist[J_XS] = nxs
    vs.ist[J_FBASE] = vs.ist[J_NFEV]
    side_heads_nb(lad, tab, vs)
