"""Slow, obvious reference for the engine kernels (:mod:`cascade.engine`).

Plain Python floats and loops; every step rescans ALL positions with no ladder and no pointers, and
the mark is re-summed from its window each time. Written from the model's description in
:mod:`cascade.model.market` and the settlement rules in mechanics.md, not from the kernel's code.
Only for small populations.
"""

from __future__ import annotations

import math

import numpy as np

OPEN, TRIGGERED, LIQUIDATED, STOPPED, DORMANT = 0, 1, 2, 3, 4
LIQ, STOP, ENTRY = 1, 2, 3


def counter_trend(ref, p_pre, threshold, rate, cap, mult):
    """Counter-trend orders, USD (+ buy): beyond ``threshold`` % under the reference they buy
    ``rate`` per further %, above it they sell alike, at most ``cap``; all times the depth
    multiplier ``mult`` (the book as thin as it is now)."""
    below = (ref - p_pre) / ref * 100.0 - threshold
    above = (p_pre - ref) / ref * 100.0 - threshold
    if below > 0:
        return min(rate * below, cap) * mult
    if above > 0:
        return -min(rate * above, cap) * mult
    return 0.0


def permanent_share(phi, news_phi, exo, net):
    """Permanent share of a step's impact: the news flow's share of the net flow (when they
    agree in sign, at most 1) keeps ``news_phi``, the rest ``phi``."""
    if exo * net > 0:
        return phi + (news_phi - phi) * min(exo / net, 1.0)
    return phi


def curve(y, depth, alpha):
    """Impact of imbalance y: linear up to 1% at y = depth, then power law."""
    u = abs(y) / depth
    g = u if u < 1 else u ** alpha
    return 0.01 * g if y >= 0 else -0.01 * g


def integral(y, depth, alpha):
    """Integral of curve from 0 to |y|, by cases."""
    u = abs(y) / depth
    h = u * u / 2 if u < 1 else 0.5 + (u ** (alpha + 1) - 1) / (alpha + 1)
    return 0.01 * depth * h


def mean_impact(y, f, depth, alpha, imp):
    if abs(f) <= 1e-9 * (abs(y) + depth):
        return 0.5 * imp
    return (integral(y + f, depth, alpha) - integral(y, depth, alpha)) / f - curve(y, depth, alpha)


def bankruptcy(s, q, ep, wb):
    """Price where the position's equity is zero (mechanics.md section 1)."""
    return ep - s * wb / q


def inverse(g, depth, alpha):
    """The imbalance whose impact (curve) is g: linear below 1 %, then the power law inverted."""
    u = abs(g) / 0.01
    a = u if u < 1 else u ** (1 / alpha)
    return depth * a if g >= 0 else -depth * a


def limit_flow_bisect(y0, y_run, limit_log, depth, alpha, sell):
    """The largest flow from ``y_run`` whose marginal log price ``curve(y_run + F) - curve(y0)``
    stays at or beyond ``limit_log``, by bisection (checks the closed form of ioc)."""
    def ok(f):
        g = curve(y_run + f, depth, alpha) - curve(y0, depth, alpha)
        return g >= limit_log if sell else g <= limit_log

    if not ok(0.0):
        return 0.0
    good, bad = 0.0, (-1.0 if sell else 1.0) * depth
    while ok(bad):
        good, bad = bad, 2 * bad
    for _ in range(400):
        mid = (good + bad) / 2
        if mid in (good, bad):
            break
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def ioc(s, q, ep, wb, y0, y_run, p_pre, wick, last, depth, alpha, feedback):
    """An IOC liquidation order of ``q`` coin limited at the bankruptcy price BP, meeting the book
    at the imbalance ``y_run``: (flow USD, coin filled, their mean fill price or nan).

    The book's marginal price after a flow F is ``p_pre * exp(curve(y_run + F) - curve(y0)) *
    wick``; the order trades ``q * last`` USD or up to where that price reaches BP: with
    ``g* = curve(y0) + log(BP / (p_pre * wick))``, ``F = inverse(g*) - y_run`` (nothing if the
    price is already at or beyond BP; a long with BP <= 0 has no limit). Its fill is the mean
    price over its own segment. Without feedback the price does not move: all or nothing."""
    full = -s * q * last
    bp = bankruptcy(s, q, ep, wb)
    sell = s > 0
    if sell and bp <= 0:
        f = full
    else:
        lim = math.log(bp / (p_pre * wick))
        g_now = curve(y_run, depth, alpha)
        g_star = curve(y0, depth, alpha) + lim
        if not feedback:
            g = g_now - curve(y0, depth, alpha)
            f = full if (g >= lim if sell else g <= lim) else 0.0
        elif (g_now <= g_star) if sell else (g_now >= g_star):
            f = 0.0
        else:
            f = inverse(g_star, depth, alpha) - y_run
            if abs(f) <= 1e-9 * (abs(y_run) + depth):  # at its limit but for rounding
                f = 0.0
            f = max(full, min(f, 0.0)) if sell else min(full, max(f, 0.0))
    qf = q * (f / full)
    if qf <= 0:
        return f, 0.0, math.nan
    gr = curve(y_run, depth, alpha)
    if feedback:
        seg = curve(y_run + f, depth, alpha) - gr
        m = mean_impact(y_run, f, depth, alpha, seg) + gr - curve(y0, depth, alpha)
    else:
        m = gr - curve(y0, depth, alpha)
    px = p_pre * math.exp(m) * wick
    return f, qf, (max(px, bp) if sell else min(px, bp))


def average_entry_trade(inv, cost, d, price):
    """An inventory of ``inv`` coin that cost ``cost`` USD (average entry) buys ``d`` coin (sells
    if negative) at ``price``: (new inventory, new cost, realised PnL of what it closed)."""
    if inv == 0 or (inv > 0) == (d > 0):
        return inv + d, cost + d * price, 0.0
    sgn = 1.0 if inv > 0 else -1.0
    c = min(abs(d), abs(inv))
    avg = cost / inv
    real = sgn * c * (price - avg)
    if c >= abs(inv):
        rest = d + inv
        return rest, rest * price, real
    inv -= sgn * c
    return inv, avg * inv, real


class Fund:
    """Insurance fund (or vault): cash, bad debt, and an inventory (signed coin, its cost)."""

    def __init__(self, cash):
        self.cash, self.bad, self.inv, self.cost, self.real = float(cash), 0.0, 0.0, 0.0, 0.0

    def book(self, delta):
        self.cash += delta
        if self.cash < 0:
            self.bad -= self.cash
            self.cash = 0.0

    def trade(self, d, price):
        """Buy ``d`` coin (sell if negative) at ``price``, at average-entry accounting."""
        if d == 0:
            return
        self.inv, self.cost, real = average_entry_trade(self.inv, self.cost, d, price)
        self.real += real
        self.book(real)

    def room(self, s, px, multiple):
        """Coin of side s it can still take at px within its cap (multiple x balance)."""
        return max(multiple * self.cash / px - s * self.inv, 0.0) if px > 0 else 0.0


def scan(mark, last, side, lp, status, stop_rows, stop_px, liq_on_equal=True, n_ladder=None,
         consumed=None):
    """Every open position whose trigger is crossed, in the order an exchange would process them:
    long liquidations from the highest liquidation price down, short ones from the lowest up
    (positions held from the start first, then those opened during the run), then the orders on
    last price that sell on a fall (long stops, breakdown-short entries) from the highest level
    down, and those that buy on a rise from the lowest up. Rows from ``n_ladder`` on are
    conditional entries; each order on last price fires at most once (``consumed``, by its index
    in ``stop_rows``).

    Returns a list of (row, kind)."""
    out = []
    n = len(side)
    n_ladder = n if n_ladder is None else n_ladder
    consumed = [False] * len(stop_rows) if consumed is None else consumed

    def crossed_long(x):
        return x > mark or (liq_on_equal and x == mark)

    def crossed_short(x):
        return x < mark or (liq_on_equal and x == mark)

    for rows in (range(n_ladder), range(n_ladder, n)):
        longs = [i for i in rows if status[i] == OPEN and side[i] > 0 and crossed_long(lp[i])]
        shorts = [i for i in rows if status[i] == OPEN and side[i] < 0 and crossed_short(lp[i])]
        out += [(i, LIQ) for i in sorted(longs, key=lambda i: (-lp[i], -i))]
        out += [(i, LIQ) for i in sorted(shorts, key=lambda i: (lp[i], i))]
    for i, _ in out:
        status[i] = TRIGGERED

    def sells_on_fall(i):  # a long's stop, or a short's entry
        return (side[i] > 0) == (i < n_ladder)

    sells = [(px, k, i) for k, (i, px) in enumerate(zip(stop_rows, stop_px))
             if not consumed[k] and sells_on_fall(i) and px >= last]
    buys = [(px, k, i) for k, (i, px) in enumerate(zip(stop_rows, stop_px))
            if not consumed[k] and not sells_on_fall(i) and px <= last]
    for group in (sorted(sells, key=lambda x: (-x[0], -x[1])), sorted(buys)):
        for _, k, i in group:
            consumed[k] = True
            if status[i] == OPEN:
                out.append((i, STOP))
                status[i] = TRIGGERED
            elif status[i] == DORMANT:
                out.append((i, ENTRY))
                status[i] = TRIGGERED
    return out


def settle(kind, side, qty, entry, wallet, fill, fee_rate):
    """(fund_delta, fee, trader_returned) of closing one position at ``fill``."""
    equity = wallet + side * qty * (fill - entry)
    if kind == LIQ:
        return equity, min(fee_rate * qty * fill, max(equity, 0.0)), 0.0
    return min(equity, 0.0), 0.0, max(equity, 0.0)


def run(popu, exo, noise, prm, iprm, fund0, table=None):
    """Simulate like :func:`cascade.engine.step_loop_nb`, slowly.

    Returns dict with ``last`` / ``mark`` / ``liq_long`` / ``liq_short`` / ``stop`` / ``fund`` /
    ``bad`` / ``oi_qty`` / ``inv`` (fund inventory, coin) / ``takeover`` / ``offload`` (USD) per
    step (arrays), ``closed``: {row: (kind, trigger_step, fill_price,
    fund_delta, fee)} for liquidations and stops, and ``opened``: {row: (trigger_step, fill, lp)}
    for conditional entries (``table``: the bracket table, needed when there are entries).
    """
    from cascade.model import market as m
    from tests.naive.margin import liq_price

    side = [int(s) for s in popu.side]
    qty, entry, wallet, lp = (list(map(float, a)) for a in
                              (popu.qty, popu.entry, popu.wallet, popu.lp))
    stop_rows = [int(i) for i in popu.stop_idx]
    stop_px = [float(x) for x in popu.stop_px]
    n_ladder = popu.n_ladder
    status = [OPEN] * n_ladder + [DORMANT] * (len(side) - n_ladder)
    for i in range(n_ladder, len(side)):
        entry[i], lp[i], wallet[i] = math.nan, math.nan, float(popu.entry_margin[i - n_ladder])
    consumed = [False] * len(stop_rows)
    oi_qty = sum(qty[:n_ladder])
    alpha, phi, decay, depth0 = prm[m.P_ALPHA], prm[m.P_PHI], prm[m.P_DECAY], prm[m.P_DEPTH]
    feedback = prm[m.P_FEEDBACK] != 0
    liq_eq = prm[m.P_LIQ_EQ] != 0
    w, lat, maxit = int(iprm[m.I_MARKW]), int(iprm[m.I_LAT]), int(iprm[m.I_MAXIT])
    p0 = popu.price_start
    x, perm, trans, y, price, ref, rv, lf = math.log(p0), 0.0, 0.0, 0.0, p0, p0, 0.0, 0.0
    fund = Fund(fund0)
    take_all = int(iprm[m.I_LIQORD]) == m.LIQORD_TAKEOVER  # the fund takes every one over whole
    ioc_mode = int(iprm[m.I_LIQORD]) in (m.LIQORD_IOC, m.LIQORD_TAKEOVER)
    ioc_of = {}  # row -> (coin filled, mean fill) of its IOC order
    window = [p0] * w  # last w prices, oldest first
    queue = {}  # exec step -> list of (row, kind, trigger_step, trigger_price)
    flow_at = {}  # exec step -> forced flow USD
    out = {k: [] for k in ("last", "mark", "liq_long", "liq_short", "stop", "fund", "bad",
                           "oi_qty", "inv", "takeover", "offload")}
    closed = {}
    opened = {}
    for t in range(len(exo)):
        p_prev = price
        depth = depth0 * max(prm[m.P_FLOOR], 1.0 / (1.0 + prm[m.P_VOLSENS] * rv / 0.1
                                                     + prm[m.P_LIQSENS] * max(lf - prm[m.P_LIQTHR], 0.0)))
        x += noise[t]
        trans *= decay
        y *= decay
        p_pre = math.exp(x + perm + trans)
        ref_t = math.exp(x + perm) if prm[m.P_DIPFAIR] else ref  # fair: no transient impact
        dip = counter_trend(ref_t, p_pre, prm[m.P_DIPTHR], prm[m.P_DIPRATE], prm[m.P_DIPCAP],
                            depth / depth0)
        ext = exo[t] + dip
        forced = flow_at.pop(t, 0.0)
        off = 0.0  # the fund offloads its inventory: P_OFFLOAD x depth per minute
        inv0 = fund.inv
        if inv0 != 0 and prm[m.P_OFFLOAD] > 0:
            off = min(abs(inv0), prm[m.P_OFFLOAD] * depth * prm[m.P_STEP] / 60.0 / p_pre)
            forced += (-off if inv0 > 0 else off) * p_pre
        it = 0
        while True:
            net = ext + forced if feedback else ext
            imp = curve(y + net, depth, alpha) - curve(y, depth, alpha)
            p = p_pre * math.exp(imp)
            mark = (sum(window[1:]) + p) / w
            found = scan(mark, p, side, lp, status, stop_rows, stop_px, liq_eq, n_ladder,
                         consumed)
            it += 1
            if not found:
                break
            if ioc_mode:  # each order meets the book in turn
                y_run = y + ext + (forced if feedback else 0.0)
                new = 0.0
                for i, kind in found:
                    if kind == LIQ and take_all:
                        f = 0.0
                        ioc_of[i] = (0.0, math.nan)
                    elif kind == LIQ:
                        f, qf, px = ioc(side[i], qty[i], entry[i], wallet[i], y, y_run, p_pre,
                                        1.0, p, depth, alpha, feedback)
                        ioc_of[i] = (qf, px)
                    else:
                        f = (side[i] if kind == ENTRY else -side[i]) * qty[i] * p
                    new += f
                    if feedback:
                        y_run += f
            else:
                new = sum((side[i] if kind == ENTRY else -side[i]) * qty[i] * p
                          for i, kind in found)
            for i, kind in found:
                queue.setdefault(t + lat, []).append((i, kind, t, mark if kind == LIQ else p))
            if lat == 0:
                forced += new
            else:
                flow_at[t + lat] = flow_at.get(t + lat, 0.0) + new
            if it >= maxit or not feedback or lat > 0:
                net = ext + forced if feedback else ext
                imp = curve(y + net, depth, alpha) - curve(y, depth, alpha)
                p = p_pre * math.exp(imp)
                mark = (sum(window[1:]) + p) / w
                break
        net = ext + forced if feedback else ext
        fill = p_pre * math.exp(mean_impact(y, net, depth, alpha, imp))
        ll = ls = st = takeover = 0.0
        for i, kind, t_trig, _ in queue.pop(t, []):
            if kind == ENTRY:  # open at the fill, isolated, margin = notional / leverage
                entry[i] = fill
                wallet[i] = qty[i] * fill * wallet[i]
                lp[i] = liq_price(side[i], qty[i], fill, wallet[i], 0.0, 0.0, table.floor,
                                  table.cap, table.mmr, table.cum)[0]
                status[i] = OPEN
                oi_qty += qty[i]
                opened[i] = (t_trig, fill, lp[i])
                continue
            oi_qty -= qty[i]
            if kind == LIQ and ioc_mode:
                # the book took qf coin above BP; the fund takes the rest at BP (one venue: no
                # ADL, so no cap); the trader's equity left goes to the fund
                qf, px = ioc_of.pop(i)
                s_, q = side[i], qty[i]
                bp = bankruptcy(s_, q, entry[i], wallet[i])
                f_i = px if qf > 0 else bp
                fund.trade(s_ * (q - qf), bp)
                takeover += (q - qf) * bp
                delta = wallet[i] + s_ * qf * (f_i - entry[i]) + s_ * (q - qf) * (bp - entry[i])
                fee = min(prm[m.P_FEE] * qf * f_i, max(delta, 0.0))
                usd = qf * f_i + (q - qf) * bp
            else:
                f_i = fill
                delta, fee, _ = settle(kind, side[i], qty[i], entry[i], wallet[i], fill,
                                       prm[m.P_FEE])
                usd = qty[i] * fill
            status[i] = LIQUIDATED if kind == LIQ else STOPPED
            fund.book(delta)
            closed[i] = (kind, t_trig, f_i, delta, fee)
            if kind == STOP:
                st += usd
            elif side[i] > 0:
                ll += usd
            else:
                ls += usd
        if off > 0:
            fund.trade(-off if inv0 > 0 else off, fill)
        phi_t = permanent_share(phi, prm[m.P_NEWSPHI], exo[t], net)
        # permanent_depth = "normal": the permanent part as if the book had its full depth
        imp_p = (curve(y + net, depth0, alpha) - curve(y, depth0, alpha)
                 if prm[m.P_PERMNORMAL] else imp)
        perm += phi_t * imp_p
        trans += imp - phi_t * imp_p
        y += net
        price = p
        window = window[1:] + [p]
        rv = (prm[m.P_MEMDECAY] * rv + (1 - prm[m.P_MEMDECAY]) * abs(math.log(p / p_prev)) * 100
              / math.sqrt(prm[m.P_STEP]))
        if feedback:
            lf = (prm[m.P_MEMDECAY] * lf
                  + (1 - prm[m.P_MEMDECAY]) * abs(forced) / depth0 / prm[m.P_STEP])
        ref = prm[m.P_REFDECAY] * ref + (1 - prm[m.P_REFDECAY]) * p
        for k, v in (("last", p), ("mark", mark), ("liq_long", ll), ("liq_short", ls),
                     ("stop", st), ("fund", fund.cash), ("bad", fund.bad), ("oi_qty", oi_qty),
                     ("inv", fund.inv), ("takeover", takeover), ("offload", off * fill)):
            out[k].append(v)
    out = {k: np.array(v) for k, v in out.items()}
    out["closed"] = closed
    out["opened"] = opened
    return out
