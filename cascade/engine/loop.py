"""The step loop: one jitted driver that walks the liquidation and stop ladders of every venue.

Python builds every input before the loop and wraps the outputs after; nothing runs in Python per
step. The loop runs in chunks of steps only so that a progress bar can move between chunks and
funding can be paid at its instants (:meth:`EngineState.pay_funding`); all mutable state lives in
the ``st``/``ist``/``mst`` vectors and the arrays passed in (grouped in the namedtuples of
:mod:`cascade.engine.structs`), so chunking does not change a single bit of the result.

Cost per step: O(positions crossed + iterations), never O(positions): each venue's positions are
sorted by liquidation price in runs of one side and bracket (see :mod:`cascade.engine.ladder`),
a pointer per run only ever moves inward, and positions opened or re-queued during the run
(conditional entries, survivors of a partial liquidation or of a partial ADL) sit in a binary
heap per side. Funding is paid lazily (a run's offset moves, a row pays when it is touched), so a
funding instant costs O(heaps + strays), not O(positions). One thing still touches all of a
venue's positions, and not every step: ranking the opposite side for auto-deleveraging (once per
step and side while the insurance fund is exhausted).

Several venues share one background price (``M_X``); each has its own book (impact state), mark
rule, liquidation rules, insurance fund and latency. Arbitrage (:func:`_arbitrage`) and the index
of spot venues couple them.
"""

from __future__ import annotations

from math import exp, log, sqrt

import numpy as np

from cascade._numba import jit
from cascade.engine.book import impact_curve_nb, impact_nb, limit_flow_nb, mean_impact_nb
from cascade.engine.ladder import heapify_nb, open_nb, scan_triggers_nb
from cascade.engine.layout import (
    C_ADL,
    C_ADLN,
    C_ARB,
    C_BACK,
    C_BAD,
    C_DEPTH,
    C_DIP,
    C_ENTRY,
    C_EXO,
    C_FEQ,
    C_FILL,
    C_FINV,
    C_FORCED,
    C_FRATE,
    C_FUND,
    C_INDEX,
    C_ITER,
    C_LAST,
    C_LIQL,
    C_LIQN,
    C_LIQS,
    C_MARK,
    C_OFFL,
    C_OI,
    C_PART,
    C_STOP,
    C_TAKE,
    J_BCOUNT,
    J_BRING,
    J_FPTR,
    J_HDIRTY,
    J_HL,
    J_HS,
    J_NREC,
    J_RING,
    KIND_ADL,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_PARTIAL,
    KIND_STOP,
    L_END,
    L_HEND,
    L_HOFF,
    L_OFF,
    L_REND,
    L_ROFF,
    L_SEND,
    L_SOFF,
    M_ARB_BAND,
    M_ARB_CAP,
    M_ARB_DELAY,
    M_COMP,
    M_DEPTH_SUM,
    M_INDEX,
    M_ORACLE,
    M_SPOT_ALPHA,
    M_X,
    S_ADLN,
    S_ADLUSD,
    S_BACKSTOP,
    S_BAD,
    S_BSUM,
    S_DEPTHNOW,
    S_EMA,
    S_FLAST,
    S_FUND,
    S_INV,
    S_INVCOST,
    S_LF,
    S_MARK,
    S_MSUM,
    S_NPART,
    S_OFFCASH,
    S_OFFCOIN,
    S_OFFLOAD,
    S_OQL,
    S_OQS,
    S_PACC,
    S_PCNT,
    S_PERM,
    S_PRICE,
    S_REF,
    S_RV,
    S_TAKEOVER,
    S_TRANS,
    S_Y,
    SP_DECAY,
    SP_DEPTH,
    SP_LAG,
    SP_REVERT,
    SP_WEIGHT,
)
from cascade.engine.settle import (
    backstop_hold_nb,
    fund_trade_nb,
    liquidate_ioc_nb,
    liquidate_nb,
    settle_nb,
)
from cascade.engine.structs import Ladder, Positions, Tables, VenueParams, VenueState
from cascade.model.market import (
    I_BWIN,
    I_LAT,
    I_LIQORD,
    I_MARK,
    I_MARKW,
    I_MAXIT,
    LIQORD_BACKSTOP,
    LIQORD_IOC,
    LIQORD_TAKEOVER,
    MARK_BINANCE,
    MARK_HYPERLIQUID,
    MARK_LAST_AVERAGE,
    P_ALPHA,
    P_DECAY,
    P_DEPTH,
    P_DIPCAP,
    P_DIPFAIR,
    P_DIPRATE,
    P_DIPTHR,
    P_EMA,
    P_FEEDBACK,
    P_FINT_S,
    P_FLOOR,
    P_LIQSENS,
    P_LIQTHR,
    P_MEMDECAY,
    P_NEWSPHI,
    P_OFFLOAD,
    P_PERMNORMAL,
    P_PHI,
    P_REFDECAY,
    P_STEP,
    P_T0,
    P_VOLSENS,
)
from cascade.rules.funding import time_to_next_funding_nb
from cascade.rules.margin import bankruptcy_price_nb
from cascade.rules.mark import binance_mark_nb, median3_nb, weighted_median_nb


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
def step_loop_nb(t_begin, t_end, lay, tb_lay, pos, lad, tab, vp, vs, mk, inp, out):
    """Advance the market (one or more venues) from step ``t_begin`` to ``t_end`` (exclusive).

    Parameters (V venues, n rows over all venues, J spot venues, T steps)
    ----------
    lay : int64 (V, N_LAYOUT) row, stop, heap and record ranges of each venue (``L_*``); inside
        a venue, rows are as :class:`cascade.model.population.Population` (ladder longs, ladder
        shorts, conditional entries) and every index (``lad.order``, ``lad.stop_idx``, heaps,
        records' ``pos``) is relative to the venue's first row
    tb_lay : int64 (V, 2) range of each venue's bracket table in ``tab``
    pos : :class:`~cascade.engine.structs.Positions` (n,) rows, in/out
    lad : :class:`~cascade.engine.structs.Ladder`, ``n_long``/``n_ladder`` int64 (V,) per venue
        (relative to its first row); ``runs`` (V, R, N_RUN)
    tab : :class:`~cascade.engine.structs.Tables` the venues' bracket tables, concatenated
    vp : :class:`~cascade.engine.structs.VenueParams` float64 (V, N_PARAMS), int64
        (V, N_IPARAMS) (:func:`cascade.model.market.parameters`)
    vs : :class:`~cascade.engine.structs.VenueState` per-venue state, leading axis V; ``rec``
        per venue ranges, ``adl_buf`` int32 (2, n), ``adl_rank`` float64 (2, n), ``fev`` (V, E, 2),
        ``fcs`` (V, 2, E + 1); in/out
    mk : :class:`~cascade.engine.structs.Market` market parameters and state, in/out
    inp : :class:`~cascade.engine.structs.Inputs` exogenous paths
    out : float64 (V, T, len(COLUMNS)) per-step results, written for t_begin..t_end-1
    """
    nv = lay.shape[0]
    spot = mk.spot
    sst = mk.sst
    mst = mk.mst
    comp_ring = mk.comp_ring
    nsp = spot.shape[0]
    sp_px = np.empty(nsp)
    sp_w = spot[:, SP_WEIGHT].copy()
    last_all = np.empty(nv)
    scratch = np.empty(nv)  # other venues' prices (Hyperliquid mark), arbitrage needs
    npc = comp_ring.shape[0]
    for t in range(t_begin, t_end):
        mst[M_X] += inp.noise[t]
        # index: spot venues follow the perpetuals' composite price with a lag, plus their own
        # deviation (their share of the flow on their own book, decaying) and noise
        if nsp > 0:
            for j in range(nsp):
                sst[j, 1] *= spot[j, SP_DECAY]
                sst[j, 0] *= spot[j, SP_REVERT]
                f = inp.spot_exo[j, t]
                if f != 0.0:
                    sst[j, 0] += impact_nb(sst[j, 1], f, spot[j, SP_DEPTH],
                                           mk.mprm[M_SPOT_ALPHA])
                    sst[j, 1] += f
                lag = int(spot[j, SP_LAG])
                c = comp_ring[(t - 1 - lag) % npc] if t - 1 - lag >= 0 else comp_ring[npc - 1]
                sp_px[j] = exp(c + sst[j, 0] + inp.spot_noise[j, t])
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
        index *= inp.wick[nv, t]
        oracle *= inp.wick[nv, t]
        mst[M_ORACLE] = oracle
        mst[M_INDEX] = index
        for v in range(nv):
            last_all[v] = vs.st[v, S_PRICE]
        for v in range(nv):
            ref = index
            if vp.iprm[v, I_MARK] == MARK_HYPERLIQUID:
                ref = oracle
            a = lay[v, L_OFF]
            b = lay[v, L_END]
            s0 = lay[v, L_SOFF]
            s1 = lay[v, L_SEND]
            h0 = lay[v, L_HOFF]
            h1 = lay[v, L_HEND]
            ta = tb_lay[v, 0]
            tb = tb_lay[v, 1]
            _venue_step(
                t, v, ref, last_all, scratch,
                Positions(pos.side[a:b], pos.qty[a:b], pos.entry[a:b], pos.wallet[a:b],
                          pos.lp[a:b], pos.status[a:b], pos.tlp[a:b], pos.fep[a:b],
                          pos.fpaid[a:b]),
                Ladder(lad.n_long[v], lad.n_ladder[v], lad.order[a:b], lad.stop_idx[s0:s1],
                       lad.stop_px[s0:s1], lad.heap_l[h0:h1], lad.heap_s[h0:h1], lad.runs[v],
                       lad.rkey[v], lad.xheap_l[h0:h1], lad.xheap_s[h0:h1], lad.xkey[a:b],
                       lad.cand[a:b]),
                Tables(tab.floor[ta:tb], tab.cap[ta:tb], tab.mmr[ta:tb], tab.cum[ta:tb]),
                VenueParams(vp.prm[v], vp.iprm[v]),
                VenueState(vs.st[v], vs.ist[v], vs.rec[lay[v, L_ROFF]:lay[v, L_REND]],
                           vs.adl_buf[:, a:b], vs.adl_rank[:, a:b], vs.ring[v], vs.bring[v],
                           vs.pend[v], vs.marks[v], vs.arb[v], vs.fev[v], vs.fcs[v]),
                mst, inp.exo[v, t], inp.wick[v, t], out[v, t])
        # composite of the perpetual venues (depth-weighted log price), and arbitrage between them
        comp = 0.0
        for v in range(nv):
            comp += vp.prm[v, P_DEPTH] * log(vs.st[v, S_PRICE])
        comp /= mst[M_DEPTH_SUM]
        mst[M_COMP] = comp
        comp_ring[t % npc] = comp
        if nv > 1:
            _arbitrage(t, nv, comp, vp.prm, mk.mprm, vs.st, vs.arb, scratch)


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
            needs[v] = min(-(gap - band) * 100.0 * st[v, S_DEPTHNOW] - sent, 0.0)
            need_sell -= needs[v]
        elif gap < -band:
            needs[v] = max((-gap - band) * 100.0 * st[v, S_DEPTHNOW] - sent, 0.0)
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
def _ioc_orders(r0, r1, y0, y_run, p_pre, wick_t, last, depth, alpha, feedback, pos, rec,
                takeover=False):
    """Flow of the orders of records ``r0..r1-1`` (just triggered, in record order) when
    liquidations are IOC orders limited at the bankruptcy price (liquidation_order
    'ioc_bankruptcy'); returns the signed USD flow (sells negative).

    Each order meets the book in record order, from the imbalance ``y_run`` (the step's
    ``y0`` plus the external flow and the orders before it). A liquidation of ``q`` coin
    (``q * last`` USD) fills ``F = min(q * last, what the book takes before the marginal last
    price p_pre * exp(G(y_run + F) - G(y0)) * wick reaches BP)`` (closed form:
    :func:`cascade.engine.book.limit_flow_nb`), at the mean price of its own segment of the book;
    ``rec.ioc_qty`` / ``rec.ioc_fill`` keep the coin filled and that price. A long with BP <= 0
    has no limit. Other orders are market orders of their whole size. Without feedback, orders
    do not move the price: a liquidation fills whole if the price is beyond its limit, else not
    at all. ``takeover`` (liquidation_order 'takeover'): no liquidation meets the book; the
    fund takes each one over whole at the bankruptcy price (its offloads reach the book later)."""
    flow = 0.0
    g0 = impact_curve_nb(y0, depth, alpha)
    for r in range(r0, r1):
        kind = rec[r].kind
        i = rec[r].pos
        s = pos.side[i]
        if kind == KIND_LIQ:
            q = pos.qty[i]
            full = -s * q * last
            bp = bankruptcy_price_nb(s, q, pos.entry[i], pos.wallet[i])
            if takeover:
                f = 0.0
            elif s > 0 and bp <= 0.0:
                f = full
            else:
                lim = log(bp / (p_pre * wick_t))
                if feedback:
                    f = limit_flow_nb(y0, y_run, lim, depth, alpha, s > 0)
                    f = max(full, f) if s > 0 else min(full, f)
                else:
                    g = impact_curve_nb(y_run, depth, alpha) - g0
                    f = full if (g >= lim if s > 0 else g <= lim) else 0.0
            qf = q * (f / full)
            rec[r].ioc_qty = qf
            if qf > 0.0:
                gr = impact_curve_nb(y_run, depth, alpha)
                if feedback:
                    seg = impact_curve_nb(y_run + f, depth, alpha) - gr
                    m = mean_impact_nb(y_run, f, depth, alpha, seg) + gr - g0
                else:
                    m = gr - g0
                px = p_pre * exp(m) * wick_t
                # the mean of a segment whose marginal price stays beyond BP: beyond BP too
                # (up to rounding)
                rec[r].ioc_fill = max(px, bp) if s > 0 else min(px, bp)
        elif kind == KIND_ENTRY:
            f = s * rec[r].qty * last
        elif kind == KIND_STOP or kind == KIND_PARTIAL:
            f = -s * rec[r].qty * last
        else:
            f = 0.0
        flow += f
        if feedback:
            y_run += f
    return flow


@jit
def _venue_step(t, v, index, last_all, scratch, pos, lad, tab, vp, vs, mst, exo_t, wick_t, o):
    """One step of one venue: price before orders, the trigger/impact fixed point, fills and
    settlement, state updates and the output row ``o``. ``index`` is the venue's reference
    spot price: the index (weighted mean of the spot venues, Binance) or, for the Hyperliquid
    mark rule, the oracle (their weighted median). ``pos``, ``lad``, ``tab``, ``vp``, ``vs``:
    the venue's views (:mod:`cascade.engine.structs`); ``last_all`` float64 (V,) every venue's
    last price before this step; ``scratch`` float64 (>= V,); ``mst`` the market state
    (``M_*``); ``exo_t`` its exogenous flow, USD; ``wick_t`` its wick multiplier."""
    alpha = vp.prm[P_ALPHA]
    phi = vp.prm[P_PHI]
    decay = vp.prm[P_DECAY]
    depth0 = vp.prm[P_DEPTH]
    memd = vp.prm[P_MEMDECAY]
    refd = vp.prm[P_REFDECAY]
    feedback = vp.prm[P_FEEDBACK] != 0.0
    w = vp.iprm[I_MARKW]
    lat = vp.iprm[I_LAT]
    maxit = vp.iprm[I_MAXIT]
    rule = vp.iprm[I_MARK]
    liqord = vp.iprm[I_LIQORD]
    npend = vs.pend.shape[0]
    p_prev = vs.st[S_PRICE]
    prev_mark = vs.st[S_MARK]
    # the book thins with recent volatility and with recent forced flow beyond what market makers
    # absorb (P_LIQTHR of depth per second)
    lf_x = max(vs.st[S_LF] - vp.prm[P_LIQTHR], 0.0)
    mult = 1.0 / (1.0 + vp.prm[P_VOLSENS] * vs.st[S_RV] / 0.1 + vp.prm[P_LIQSENS] * lf_x)
    mult = max(mult, vp.prm[P_FLOOR])
    depth = depth0 * mult
    vs.st[S_TRANS] *= decay
    vs.st[S_Y] *= decay
    y = vs.st[S_Y]
    p_pre = exp(mst[M_X] + vs.st[S_PERM] + vs.st[S_TRANS])
    # counter-trend traders: buy below their reference, sell above it, beyond the threshold, in
    # proportion to the depth the book has now; the reference is the slow average, or the fair
    # price (the price once the book refilled: no transient impact)
    ref = exp(mst[M_X] + vs.st[S_PERM]) if vp.prm[P_DIPFAIR] != 0.0 else vs.st[S_REF]
    dd = (ref - p_pre) / ref * 100.0 - vp.prm[P_DIPTHR]
    dip = 0.0
    if dd > 0.0:
        dip = min(vp.prm[P_DIPRATE] * dd, vp.prm[P_DIPCAP]) * mult
    else:
        du = (p_pre - ref) / ref * 100.0 - vp.prm[P_DIPTHR]
        if du > 0.0:
            dip = -min(vp.prm[P_DIPRATE] * du, vp.prm[P_DIPCAP]) * mult
    slot = t % npend
    forced = vs.pend[slot]
    vs.pend[slot] = 0.0
    aslot = t % vs.arb.shape[0]
    arb_in = vs.arb[aslot]
    vs.arb[aslot] = 0.0
    ext = exo_t + dip + arb_in
    # the fund (or vault) offloads its inventory: a market order of P_OFFLOAD x depth per minute
    off_c = 0.0
    inv = vs.st[S_INV]
    if inv != 0.0 and vp.prm[P_OFFLOAD] > 0.0:
        off_c = min(abs(inv), vp.prm[P_OFFLOAD] * depth * vp.prm[P_STEP] / 60.0 / p_pre)
        forced += (-off_c if inv > 0.0 else off_c) * p_pre
    take0 = vs.st[S_TAKEOVER]
    off0 = vs.st[S_OFFLOAD]
    ri = vs.ist[J_RING]
    old = vs.ring[ri]
    msum = vs.st[S_MSUM]
    # Binance P1 / P2 and Hyperliquid's basis EMA use the samples of previous steps
    nb = vs.ist[J_BCOUNT]
    basis_mean = vs.st[S_BSUM] / nb if nb > 0 else 0.0
    interval = vp.prm[P_FINT_S]
    tau = 0.0
    if interval > 0.0:
        tau = time_to_next_funding_nb(vp.prm[P_T0] + t * vp.prm[P_STEP], interval)
    others = np.nan
    if rule == MARK_HYPERLIQUID:
        others = _median_others(v, last_all, last_all.shape[0], scratch)
    it = 0
    while True:
        imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
        p = p_pre * exp(imp)
        last = p * wick_t
        mark = _mark_nb(rule, last, index, basis_mean, vs.st[S_EMA], vs.st[S_FLAST], tau, interval,
                        others, msum, old, w)
        before = vs.ist[J_NREC]
        new_flow = scan_triggers_nb(t, mark, last, pos, lad, tab, vp, vs)
        it += 1
        if vs.ist[J_NREC] == before:
            break
        if liqord == LIQORD_IOC or liqord == LIQORD_TAKEOVER:
            y_run = y + ext + (forced if feedback else 0.0)
            new_flow = _ioc_orders(before, vs.ist[J_NREC], y, y_run, p_pre, wick_t, last, depth,
                                   alpha, feedback, pos, vs.rec, liqord == LIQORD_TAKEOVER)
        if lat == 0:
            forced += new_flow
        else:
            vs.pend[(t + lat) % npend] += new_flow
        if it >= maxit or not feedback or lat > 0:
            # triggers found at the cap carry their flow; those not yet found wait a step
            imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
            p = p_pre * exp(imp)
            last = p * wick_t
            mark = _mark_nb(rule, last, index, basis_mean, vs.st[S_EMA], vs.st[S_FLAST], tau,
                            interval, others, msum, old, w)
            break
    net = ext + forced if feedback else ext
    fill = p_pre * exp(mean_impact_nb(y, net, depth, alpha, imp)) * wick_t
    liq_l = 0.0
    liq_s = 0.0
    stop_usd = 0.0
    entry_usd = 0.0
    adl_usd0 = vs.st[S_ADLUSD]
    adl_n0 = vs.st[S_ADLN]
    part0 = vs.st[S_NPART]
    back0 = vs.st[S_BACKSTOP]
    handed = 0.0
    nliq = 0
    r = vs.ist[J_FPTR]
    while r < vs.ist[J_NREC] and vs.rec[r].exec_step <= t:
        kind = vs.rec[r].kind
        if kind == KIND_ENTRY:
            entry_usd += open_nb(r, fill, pos, lad, tab, vs)
        elif kind == KIND_STOP:
            stop_usd += settle_nb(r, fill, pos, tab, vp, vs)
        elif kind == KIND_LIQ and (liqord == LIQORD_IOC or liqord == LIQORD_TAKEOVER):
            usd = liquidate_ioc_nb(r, mark, pos, lad, tab, vp, vs)
            nliq += 1
            if pos.side[vs.rec[r].pos] > 0:
                liq_l += usd
            else:
                liq_s += usd
        elif kind == KIND_BACKSTOP and liqord == LIQORD_BACKSTOP:
            pm = prev_mark
            if vs.rec[r].trigger_step < t:  # as below: the mark before its trigger's
                nm = vs.marks.shape[0]
                pm = vs.marks[(vs.rec[r].trigger_step - 1 + nm) % nm]
            usd = backstop_hold_nb(r, mark, pm, pos, lad, tab, vp, vs)
            nliq += 1
            if pos.side[vs.rec[r].pos] > 0:
                liq_l += usd
            else:
                liq_s += usd
        elif kind != KIND_ADL:
            pm = prev_mark
            if kind == KIND_BACKSTOP and vs.rec[r].trigger_step < t:
                # the vault took the position at the mark of its trigger (latency): the mark
                # before that one, not the one before this step, is its previous mark
                nm = vs.marks.shape[0]
                pm = vs.marks[(vs.rec[r].trigger_step - 1 + nm) % nm]
            usd, _, done = liquidate_nb(r, fill, mark, pm, pos, lad, tab, vp, vs)
            handed += -pos.side[vs.rec[r].pos] * done * fill
            if kind != KIND_PARTIAL:
                nliq += 1
            if pos.side[vs.rec[r].pos] > 0:
                liq_l += usd
            else:
                liq_s += usd
        r += 1
    vs.ist[J_FPTR] = r
    if vs.ist[J_HDIRTY]:  # ADL closed heaped rows in part: their keys changed
        heapify_nb(lad.heap_l, vs.ist[J_HL], pos.lp, -1.0)
        heapify_nb(lad.heap_s, vs.ist[J_HS], pos.lp, 1.0)
        vs.ist[J_HDIRTY] = 0
    if off_c > 0.0:
        d_off = -off_c if inv > 0.0 else off_c
        fund_trade_nb(vs.st, d_off, fill)
        vs.st[S_OFFLOAD] += off_c * fill
        vs.st[S_OFFCOIN] += d_off
        vs.st[S_OFFCASH] += d_off * fill
    # state updates: the news flows' share of this step's order flow is informed, its impact
    # keeps P_NEWSPHI; the rest (forced, fund, arbitrage, counter-trend orders) keeps phi
    phi_t = phi
    if exo_t * net > 0.0:
        phi_t += (vp.prm[P_NEWSPHI] - phi) * min(exo_t / net, 1.0)
    # measured against the book at full depth, a thinned book's extra move is all transient
    imp_p = impact_nb(y, net, depth0, alpha) if vp.prm[P_PERMNORMAL] != 0.0 else imp
    vs.st[S_PERM] += phi_t * imp_p
    vs.st[S_TRANS] += imp - phi_t * imp_p
    # coins handed to ADL never reached the book: take them off the outstanding imbalance
    vs.st[S_Y] = y + net - (handed if feedback else 0.0)
    vs.st[S_PRICE] = p
    vs.st[S_MARK] = mark
    vs.marks[t % vs.marks.shape[0]] = mark
    vs.ring[ri] = last
    msum += last - old
    ri += 1
    if ri == w:
        ri = 0
        msum = 0.0
        for j in range(w):  # exact re-sum once per window: no drift over long runs
            msum += vs.ring[j]
    vs.ist[J_RING] = ri
    vs.st[S_MSUM] = msum
    if rule != MARK_LAST_AVERAGE:
        sample = last - index
        bw = vp.iprm[I_BWIN]
        k = vs.ist[J_BRING]
        if nb >= bw:
            vs.st[S_BSUM] -= vs.bring[k]
        else:
            vs.ist[J_BCOUNT] = nb + 1
        vs.bring[k] = sample
        vs.st[S_BSUM] += sample
        vs.ist[J_BRING] = (k + 1) % bw
        vs.st[S_EMA] += vp.prm[P_EMA] * (sample - vs.st[S_EMA])
        vs.st[S_PACC] += (last - index) / index
        vs.st[S_PCNT] += 1.0
    # |return| per square-root second, in %: the background noise gives the same v at any step_s
    vs.st[S_RV] = (memd * vs.st[S_RV]
                   + (1.0 - memd) * abs(log(p / p_prev)) * 100.0 / sqrt(vp.prm[P_STEP]))
    if feedback:
        # forced flow per second as a share of depth: the law's keys do not depend on step_s
        vs.st[S_LF] = memd * vs.st[S_LF] + (1.0 - memd) * abs(forced) / depth0 / vp.prm[P_STEP]
    vs.st[S_REF] = refd * vs.st[S_REF] + (1.0 - refd) * p
    o[C_LAST] = last
    o[C_MARK] = mark
    o[C_LIQL] = liq_l
    o[C_LIQS] = liq_s
    o[C_LIQN] = nliq
    o[C_STOP] = stop_usd
    o[C_EXO] = exo_t
    o[C_DIP] = dip
    o[C_FORCED] = forced
    o[C_OI] = (vs.st[S_OQL] + vs.st[S_OQS]) * mark
    o[C_DEPTH] = depth
    vs.st[S_DEPTHNOW] = depth
    o[C_FUND] = vs.st[S_FUND]
    o[C_BAD] = vs.st[S_BAD]
    o[C_ITER] = it
    o[C_FILL] = fill
    o[C_ENTRY] = entry_usd
    o[C_INDEX] = index
    o[C_ADL] = vs.st[S_ADLUSD] - adl_usd0
    o[C_ADLN] = vs.st[S_ADLN] - adl_n0
    o[C_PART] = vs.st[S_NPART] - part0
    o[C_FRATE] = vs.st[S_FLAST]
    o[C_ARB] = arb_in
    o[C_BACK] = vs.st[S_BACKSTOP] - back0
    o[C_FINV] = vs.st[S_INV] * mark
    o[C_FEQ] = vs.st[S_FUND] + vs.st[S_INV] * mark - vs.st[S_INVCOST]
    o[C_TAKE] = vs.st[S_TAKEOVER] - take0
    o[C_OFFL] = vs.st[S_OFFLOAD] - off0
