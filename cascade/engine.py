"""The step loop: one jitted driver that walks the liquidation and stop ladders each step.

Python builds every input before the loop and wraps the outputs after; nothing runs in Python per
step. The loop runs in chunks of steps only so that a progress bar can move between chunks; all
mutable state lives in the ``st``/``ist`` vectors and the arrays passed in, so chunking does not
change a single bit of the result.

Cost per step: O(positions crossed + iterations), never O(positions): the population is sorted by
liquidation price (see :mod:`cascade.population`), and a pointer per side only ever moves inward,
because a liquidated position never comes back.
"""

from __future__ import annotations

import dataclasses
from math import exp, log

import numpy as np

from cascade._numba import jit
from cascade.margin import liq_price_nb
from cascade.market import (
    I_LAT,
    I_MARKW,
    I_MAXIT,
    P_ALPHA,
    P_DECAY,
    P_DEPTH,
    P_DIPCAP,
    P_DIPRATE,
    P_DIPTHR,
    P_FEE,
    P_FEEDBACK,
    P_FLOOR,
    P_LIQ_EQ,
    P_LIQSENS,
    P_MEMDECAY,
    P_PHI,
    P_REFDECAY,
    P_VOLSENS,
)

# position status; DORMANT: a conditional entry (see cascade.population) not yet triggered
OPEN, TRIGGERED, LIQUIDATED, STOPPED, DORMANT = 0, 1, 2, 3, 4
# record kinds
KIND_LIQ, KIND_STOP, KIND_ENTRY = 1, 2, 3

# float state vector
(S_X, S_PERM, S_TRANS, S_PRICE, S_REF, S_RV, S_LF, S_FUND, S_BAD, S_OQL, S_OQS, S_MSUM,
 S_Y) = range(13)
N_STATE = 13
# integer state vector
(J_LPTR, J_SPTR, J_LSPTR, J_SSPTR, J_NREC, J_FPTR, J_RING, J_HL, J_HS) = range(9)
N_ISTATE = 9

# per-step output columns
COLUMNS = ("last_price", "mark_price", "liq_long_usd", "liq_short_usd", "liq_count", "stop_usd",
           "exo_flow_usd", "dip_flow_usd", "forced_flow_usd", "open_interest_usd", "depth_usd",
           "insurance_fund_usd", "bad_debt_usd", "iterations", "fill_price", "entry_usd")
(C_LAST, C_MARK, C_LIQL, C_LIQS, C_LIQN, C_STOP, C_EXO, C_DIP, C_FORCED, C_OI, C_DEPTH, C_FUND,
 C_BAD, C_ITER, C_FILL, C_ENTRY) = range(len(COLUMNS))

RECORD_DTYPE = np.dtype([("pos", np.int32), ("kind", np.int8), ("trigger_step", np.int32),
                         ("exec_step", np.int32), ("trigger_price", np.float64),
                         ("fill_price", np.float64), ("fund_delta", np.float64),
                         ("fee", np.float64)], align=True)


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
def _trigger(i, kind, t, lat, price, status, rec, ist):
    n = ist[J_NREC]
    rec[n].pos = i
    rec[n].kind = kind
    rec[n].trigger_step = t
    rec[n].exec_step = t + lat
    rec[n].trigger_price = price
    rec[n].fill_price = np.nan
    rec[n].fund_delta = 0.0
    rec[n].fee = 0.0
    ist[J_NREC] = n + 1
    status[i] = TRIGGERED


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
def heap_pop_nb(heap, size, lp, sgn):
    """Remove the top of ``heap[:size]`` (read it as ``heap[0]`` first); returns the new size."""
    size -= 1
    heap[0] = heap[size]
    k = 0
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
    return size


@jit
def _stop_or_entry(i, t, lat, last, status, rec, ist):
    """Trigger the conditional order of row ``i`` if it is still waiting: a stop-loss of an open
    position, or the entry of a dormant one. Returns True if it triggered."""
    if status[i] == OPEN:
        _trigger(i, KIND_STOP, t, lat, last, status, rec, ist)
        return True
    if status[i] == DORMANT:
        _trigger(i, KIND_ENTRY, t, lat, last, status, rec, ist)
        return True
    return False


@jit
def scan_triggers_nb(t, mark, last, side, qty, lp, status, n_long, n_ladder, stop_idx, stop_px,
                     n_long_stops, heap_l, heap_s, liq_on_equal, lat, rec, ist):
    """Trigger every open position whose liquidation price the mark has crossed (longs:
    ``lp >= mark``, shorts: ``lp <= mark``; strict when ``liq_on_equal`` is False) and every
    conditional order the last price has crossed: sells on a fall (long stops, breakdown-short
    entries: ``px >= last``), buys on a rise (short stops, breakout-long entries: ``px <= last``).

    Order within a call: ladder longs from the highest liquidation price down, ladder shorts from
    the lowest up, then positions opened during the run (held in the heaps ``heap_l``/``heap_s``,
    same order), then sells and buys on last price.

    Moves the ladder pointers and heap sizes in ``ist``; appends records. Returns the signed USD
    flow of the new market orders at ``last`` (sells negative).
    """
    flow = 0.0
    m = stop_idx.shape[0]
    k = ist[J_LPTR]
    while k > 0 and (lp[k - 1] > mark or (liq_on_equal and lp[k - 1] == mark)):
        k -= 1
        if status[k] == OPEN:
            _trigger(k, KIND_LIQ, t, lat, mark, status, rec, ist)
            flow -= qty[k] * last
    ist[J_LPTR] = k
    k = ist[J_SPTR]
    while k < n_ladder and (lp[k] < mark or (liq_on_equal and lp[k] == mark)):
        if status[k] == OPEN:
            _trigger(k, KIND_LIQ, t, lat, mark, status, rec, ist)
            flow += qty[k] * last
        k += 1
    ist[J_SPTR] = k
    size = ist[J_HL]
    while size > 0 and (lp[heap_l[0]] > mark or (liq_on_equal and lp[heap_l[0]] == mark)):
        i = heap_l[0]
        size = heap_pop_nb(heap_l, size, lp, -1.0)
        if status[i] == OPEN:
            _trigger(i, KIND_LIQ, t, lat, mark, status, rec, ist)
            flow -= qty[i] * last
    ist[J_HL] = size
    size = ist[J_HS]
    while size > 0 and (lp[heap_s[0]] < mark or (liq_on_equal and lp[heap_s[0]] == mark)):
        i = heap_s[0]
        size = heap_pop_nb(heap_s, size, lp, 1.0)
        if status[i] == OPEN:
            _trigger(i, KIND_LIQ, t, lat, mark, status, rec, ist)
            flow += qty[i] * last
    ist[J_HS] = size
    k = ist[J_LSPTR]
    while k > 0 and stop_px[k - 1] >= last:
        k -= 1
        i = stop_idx[k]
        if _stop_or_entry(i, t, lat, last, status, rec, ist):
            flow -= qty[i] * last
    ist[J_LSPTR] = k
    k = ist[J_SSPTR]
    while k < m and stop_px[k] <= last:
        i = stop_idx[k]
        if _stop_or_entry(i, t, lat, last, status, rec, ist):
            flow += qty[i] * last
        k += 1
    ist[J_SSPTR] = k
    return flow


@jit
def open_nb(r, fill, side, qty, entry, wallet, lp, status, heap_l, heap_s, floor, cap, mmr, cum,
            rec, st, ist):
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
    status[i] = OPEN
    rec[r].fill_price = fill
    if side[i] > 0:
        st[S_OQL] += q
        ist[J_HL] = heap_push_nb(heap_l, ist[J_HL], i, lp, -1.0)
    else:
        st[S_OQS] += q
        ist[J_HS] = heap_push_nb(heap_s, ist[J_HS], i, lp, 1.0)
    return q * fill


@jit
def settle_nb(r, fill, side, qty, entry, wallet, fee_rate, status, rec, st):
    """Close record ``r`` at ``fill`` and book it.

    Liquidation (Binance rules, mechanics.md section 1): the trader loses the whole wallet; the
    equity left at the fill, ``E = WB + s*Q*(fill - EP)``, goes to the insurance fund (clearance fee
    ``min(fee_rate*Q*fill, E)`` first, the rest as surplus); a negative ``E`` is paid by the fund.
    Stop-loss: the trader keeps ``E`` when positive; a negative ``E`` is paid by the fund.
    What the fund cannot pay becomes bad debt. Returns the notional at the fill, USD.
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
    fund = st[S_FUND] + delta
    if fund < 0.0:
        st[S_BAD] += -fund
        fund = 0.0
    st[S_FUND] = fund
    if s > 0:
        st[S_OQL] -= q
    else:
        st[S_OQS] -= q
    return q * fill


@jit
def step_loop_nb(t_begin, t_end, side, qty, entry, wallet, lp, status, n_long, n_ladder, stop_idx,
                 stop_px, n_long_stops, heap_l, heap_s, floor, cap, mmr, cum, exo, noise, prm,
                 iprm, st, ist, ring, pend, rec, out):
    """Advance the market from step ``t_begin`` to ``t_end`` (exclusive).

    Parameters
    ----------
    side, qty, entry, wallet, lp : (n,) population rows (int8, float64 x4); rows [0, n_ladder)
        sorted as the ladder, rows [n_ladder, n) conditional entries (entry, wallet, lp written
        when they open)
    status : int8 (n,) in/out, OPEN / TRIGGERED / LIQUIDATED / STOPPED / DORMANT
    n_long : rows [0, n_long) are longs
    n_ladder : rows [n_long, n_ladder) are shorts
    stop_idx : int32 (m,), stop_px : float64 (m,); conditional orders on last price, sells on a
        fall first (long stops and breakdown-short entries), then buys on a rise, each ascending
    n_long_stops : int, size of the sell part
    heap_l, heap_s : int32 (n - n_ladder,) heaps of the opened entries, in/out (sizes in ``ist``)
    floor, cap, mmr, cum : float64 (k,) bracket table, for the liquidation price of entries
    exo, noise : float64 (n_steps,), exogenous flow (USD) and background log increments
    prm, iprm : parameter vectors (:func:`cascade.market.parameters`)
    st, ist : float64 / int64 state vectors, in/out (``S_*`` / ``J_*``)
    ring : float64 (mark window,) last prices, in/out
    pend : float64 (latency + 1,) forced flow queued for coming steps, USD, in/out
    rec : RECORD_DTYPE (n,) in/out, one record per triggered position, in trigger order
    out : float64 (n_steps, len(COLUMNS)) per-step results, written for rows t_begin..t_end-1
    """
    alpha = prm[P_ALPHA]
    phi = prm[P_PHI]
    decay = prm[P_DECAY]
    depth0 = prm[P_DEPTH]
    memd = prm[P_MEMDECAY]
    refd = prm[P_REFDECAY]
    fee_rate = prm[P_FEE]
    feedback = prm[P_FEEDBACK] != 0.0
    liq_on_equal = prm[P_LIQ_EQ] != 0.0
    w = iprm[I_MARKW]
    lat = iprm[I_LAT]
    maxit = iprm[I_MAXIT]
    npend = pend.shape[0]
    for t in range(t_begin, t_end):
        p_prev = st[S_PRICE]
        mult = 1.0 / (1.0 + prm[P_VOLSENS] * st[S_RV] / 0.1 + prm[P_LIQSENS] * st[S_LF])
        mult = max(mult, prm[P_FLOOR])
        depth = depth0 * mult
        st[S_X] += noise[t]
        st[S_TRANS] *= decay
        st[S_Y] *= decay
        y = st[S_Y]
        p_pre = exp(st[S_X] + st[S_PERM] + st[S_TRANS])
        ref = st[S_REF]
        dd = (ref - p_pre) / ref * 100.0 - prm[P_DIPTHR]
        dip = 0.0
        if dd > 0.0:
            dip = min(prm[P_DIPRATE] * dd, prm[P_DIPCAP])
        slot = t % npend
        forced = pend[slot]
        pend[slot] = 0.0
        ext = exo[t] + dip
        ri = ist[J_RING]
        old = ring[ri]
        msum = st[S_MSUM]
        it = 0
        while True:
            imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
            p = p_pre * exp(imp)
            mark = (msum - old + p) / w
            before = ist[J_NREC]
            new_flow = scan_triggers_nb(t, mark, p, side, qty, lp, status, n_long, n_ladder,
                                        stop_idx, stop_px, n_long_stops, heap_l, heap_s,
                                        liq_on_equal, lat, rec, ist)
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
                mark = (msum - old + p) / w
                break
        net = ext + forced if feedback else ext
        fill = p_pre * exp(mean_impact_nb(y, net, depth, alpha, imp))
        liq_l = 0.0
        liq_s = 0.0
        stop_usd = 0.0
        entry_usd = 0.0
        nliq = 0
        r = ist[J_FPTR]
        nrec = ist[J_NREC]
        while r < nrec and rec[r].exec_step <= t:
            if rec[r].kind == KIND_ENTRY:
                entry_usd += open_nb(r, fill, side, qty, entry, wallet, lp, status, heap_l,
                                     heap_s, floor, cap, mmr, cum, rec, st, ist)
                r += 1
                continue
            usd = settle_nb(r, fill, side, qty, entry, wallet, fee_rate, status, rec, st)
            if rec[r].kind == KIND_LIQ:
                nliq += 1
                if side[rec[r].pos] > 0:
                    liq_l += usd
                else:
                    liq_s += usd
            else:
                stop_usd += usd
            r += 1
        ist[J_FPTR] = r
        # state updates
        st[S_PERM] += phi * imp
        st[S_TRANS] += (1.0 - phi) * imp
        st[S_Y] = y + net
        st[S_PRICE] = p
        ring[ri] = p
        msum += p - old
        ri += 1
        if ri == w:
            ri = 0
            msum = 0.0
            for j in range(w):  # exact re-sum once per window: no drift over long runs
                msum += ring[j]
        ist[J_RING] = ri
        st[S_MSUM] = msum
        st[S_RV] = memd * st[S_RV] + (1.0 - memd) * abs(log(p / p_prev)) * 100.0
        if feedback:
            st[S_LF] = memd * st[S_LF] + (1.0 - memd) * abs(forced) / depth0
        st[S_REF] = refd * st[S_REF] + (1.0 - refd) * p
        o = out[t]
        o[C_LAST] = p
        o[C_MARK] = mark
        o[C_LIQL] = liq_l
        o[C_LIQS] = liq_s
        o[C_LIQN] = nliq
        o[C_STOP] = stop_usd
        o[C_EXO] = exo[t]
        o[C_DIP] = dip
        o[C_FORCED] = forced
        o[C_OI] = (st[S_OQL] + st[S_OQS]) * mark
        o[C_DEPTH] = depth
        o[C_FUND] = st[S_FUND]
        o[C_BAD] = st[S_BAD]
        o[C_ITER] = it
        o[C_FILL] = fill
        o[C_ENTRY] = entry_usd


@dataclasses.dataclass
class EngineState:
    """Everything the step loop mutates, so a run can be advanced chunk by chunk."""

    status: np.ndarray
    st: np.ndarray
    ist: np.ndarray
    ring: np.ndarray
    pend: np.ndarray
    rec: np.ndarray
    out: np.ndarray
    heap_l: np.ndarray
    heap_s: np.ndarray
    table: object

    @classmethod
    def initial(cls, popu, n_steps: int, iprm: np.ndarray, fund_usd: float,
                table) -> EngineState:
        """Fresh state at the start price; resets the population's conditional entries (their
        rows are written by a run), so a population can serve several runs in turn.
        ``table``: the venue's :class:`~cascade.brackets.BracketTable`."""
        popu.reset_entries()
        p0 = popu.price_start
        st = np.zeros(N_STATE)
        st[S_X] = log(p0)
        st[S_PRICE] = p0
        st[S_REF] = p0
        st[S_FUND] = fund_usd
        st[S_OQL] = float(popu.qty[: popu.n_long].sum())
        st[S_OQS] = float(popu.qty[popu.n_long: popu.n_ladder].sum())
        w = int(iprm[I_MARKW])
        st[S_MSUM] = p0 * w
        ist = np.zeros(N_ISTATE, np.int64)
        ist[J_LPTR] = popu.n_long
        ist[J_SPTR] = popu.n_long
        ist[J_LSPTR] = popu.n_long_stops
        ist[J_SSPTR] = popu.n_long_stops
        # np.empty maps memory lazily: only the records actually written become resident
        # (an entry opens and may later close: up to two records per entrant row)
        m = popu.n - popu.n_ladder
        rec = np.empty(popu.n + m, RECORD_DTYPE)
        status = np.zeros(popu.n, np.int8)
        status[popu.n_ladder:] = DORMANT
        return cls(status=status, st=st, ist=ist, ring=np.full(w, p0),
                   pend=np.zeros(int(iprm[I_LAT]) + 1), rec=rec,
                   out=np.zeros((n_steps, len(COLUMNS))), heap_l=np.zeros(m, np.int32),
                   heap_s=np.zeros(m, np.int32), table=table)

    def advance(self, popu, exo, noise, prm, iprm, t_begin: int, t_end: int) -> None:
        tb = self.table
        step_loop_nb(t_begin, t_end, popu.side, popu.qty, popu.entry, popu.wallet, popu.lp,
                     self.status, popu.n_long, popu.n_ladder, popu.stop_idx, popu.stop_px,
                     popu.n_long_stops, self.heap_l, self.heap_s, tb.floor, tb.cap, tb.mmr,
                     tb.cum, exo, noise, prm, iprm, self.st, self.ist, self.ring, self.pend,
                     self.rec, self.out)

    @property
    def records(self) -> np.ndarray:
        """RECORD_DTYPE (k,): one row per triggered position, in trigger order."""
        return self.rec[: self.ist[J_NREC]]
