"""Slow, obvious reference for the multi-venue step loop (:mod:`cascade.engine` with ``[[venues]]``).

Plain Python floats and lists. Every iteration of every step rescans ALL positions of a venue (no
ladder, no pointers, no heaps); the last prices, basis samples and premiums are kept as plain
lists; funding is paid by a loop over the positions. Written from the model as the docstrings of
:mod:`cascade.engine`, :mod:`cascade.model.market` and :mod:`cascade.model.venues` describe it and the rules
of ``../shared/reference/mechanics.md``; the exchange rules themselves come from the slow
references in :mod:`tests.naive.rules` and :mod:`tests.naive.margin`.

Where the engine's choice of rounding decides an order, the reference rounds the same way, and
says so: the two window means of the mark are running sums (checked against the plain means of
the lists at every step), because ADL ranks of positions opened in one step at one leverage tie
but for the last bit of the mark; the composite and the arbitrage sums add in venue order.

The model, per step ``t`` (``step_s`` seconds):

* the background log price ``x`` takes its noise; every spot venue's own deviation and book
  imbalance decay, its share of the flow moves it; its price is the composite of the perpetual
  venues ``lag + 1`` steps ago (the start price before that) times its deviation and noise; the
  index is their weighted mean (no spot venue: the previous composite), times the index wick,
  and the oracle of Hyperliquid-rule venues their weighted median (rules.weighted_median);
* each venue, in turn, from its price before orders (``x + perm + trans``), dip buying,
  arbitrage orders due now and forced orders due now, finds the fixed point of triggers and
  impact: the mark by the venue's rule, every open position whose liquidation price the mark has
  crossed and every order on last price that last has crossed; then fills what is due at the
  step's average fill price, books it (partial liquidation, backstop, ADL) and updates its state;
* the composite is the depth-weighted mean of the venues' log prices; arbitrage orders, sized by
  the depth times the gap beyond the band less the orders already on their way, and capped,
  reach the books ``max(delay, 1)`` steps later (the step that saw the gap is over);
* a liquidation the fund cannot pay hands part of the position to the best-ranked opposite
  positions (ranked once per step and side) at the ADL price: the bankruptcy price (Binance),
  the mark before the fill's step, or for a backstop (taken by the vault at its trigger's mark)
  the mark before the trigger's step (Hyperliquid);
* funding is paid before the step of a funding instant (multiples of the interval since the
  epoch), on the previous step's mark (Binance) or index (Hyperliquid), at the rate of the
  average premium ``(last - index) / index`` of the steps since the previous payment.

Only for small populations.
"""

from __future__ import annotations

import math

from tests.naive import rules
from tests.naive.engine import (  # the same impact law and order flows as one venue
    average_entry_trade,
    counter_trend,
    curve,
    ioc,
    mean_impact,
    permanent_share,
)
from tests.naive.margin import bankruptcy_price, liq_price

# the engine's codes, so statuses and records compare directly
OPEN, TRIGGERED, LIQUIDATED, STOPPED, DORMANT, HEAPED, DELEVERAGED = range(7)
LIQ, STOP, ENTRY, PARTIAL, BACKSTOP, ADL = range(1, 7)

BINANCE_INTEREST_8H = 0.0001  # mechanics.md section 1
CLAMP = 0.0005


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def time_to_next_funding(t_s, interval_s):
    return interval_s - (t_s - math.floor(t_s / interval_s) * interval_s)


class Venue:
    """One venue: its rows as Python lists and its market state."""

    def __init__(self, name, rules_name, popu, table, prm, iprm, fund, funding_interval_s,
                 pays_funding):
        from cascade.model import market as m

        self.name = name
        self.rules = rules_name
        self.side = [int(s) for s in popu.side]
        self.qty, self.entry, self.wallet, self.lp = (
            [float(x) for x in a] for a in (popu.qty, popu.entry, popu.wallet, popu.lp))
        self.n = len(self.side)
        self.n_ladder = popu.n_ladder
        self.status = [OPEN] * self.n_ladder + [DORMANT] * (self.n - self.n_ladder)
        for i in range(self.n_ladder, self.n):  # before the run: wallet = 1 / leverage
            self.entry[i] = self.lp[i] = math.nan
            self.wallet[i] = float(popu.entry_margin[i - self.n_ladder])
        # rows opened or re-queued during the run: scanned after those held from the start
        self.late = [False] * self.n_ladder + [True] * (self.n - self.n_ladder)
        self.t_partial = [-math.inf] * self.n
        self.stop_rows = [int(i) for i in popu.stop_idx]
        self.stop_px = [float(x) for x in popu.stop_px]
        self.consumed = [False] * len(self.stop_rows)
        self.table = table
        self.floor, self.cap, self.mmr, self.cum = (list(map(float, a)) for a in
                                                    (table.floor, table.cap, table.mmr,
                                                     table.cum))
        g = {k: float(prm[getattr(m, k)]) for k in (
            "P_STEP", "P_DEPTH", "P_ALPHA", "P_PHI", "P_DECAY", "P_FLOOR", "P_VOLSENS",
            "P_LIQSENS", "P_MEMDECAY", "P_DIPRATE", "P_DIPTHR", "P_DIPCAP", "P_DIPFAIR",
            "P_REFDECAY", "P_FEE", "P_FEEDBACK", "P_LIQ_EQ", "P_EMA", "P_FINT_S", "P_T0",
            "P_OFFLOAD", "P_FUNDCAP", "P_NEWSPHI", "P_LIQTHR", "P_PERMNORMAL")}
        self.p = g
        self.window = int(iprm[m.I_MARKW])
        self.lat = int(iprm[m.I_LAT])
        self.maxit = int(iprm[m.I_MAXIT])
        self.mark_rule = {m.MARK_LAST_AVERAGE: "last_average", m.MARK_BINANCE: "binance",
                          m.MARK_HYPERLIQUID: "hyperliquid"}[int(iprm[m.I_MARK])]
        self.partial = {m.PARTIAL_NONE: "none", m.PARTIAL_STEP_DOWN: "step_down",
                        m.PARTIAL_HYPERLIQUID: "hyperliquid"}[int(iprm[m.I_PARTIAL])]
        self.adl_rule = {m.ADL_NONE: "none", m.ADL_BINANCE: "binance",
                    m.ADL_HYPERLIQUID: "hyperliquid"}[int(iprm[m.I_ADL])]
        self.basis_window = int(iprm[m.I_BWIN])
        self.liq_order = {m.LIQORD_MARKET: "market", m.LIQORD_IOC: "ioc",
                          m.LIQORD_BACKSTOP: "backstop",
                          m.LIQORD_TAKEOVER: "ioc"}[int(iprm[m.I_LIQORD])]
        # takeover: an IOC order that never meets the book (the fund takes every one over whole)
        self.takeover = int(iprm[m.I_LIQORD]) == m.LIQORD_TAKEOVER
        self.liq_eq = g["P_LIQ_EQ"] != 0
        self.feedback = g["P_FEEDBACK"] != 0
        self.funding_interval_s = funding_interval_s
        self.pays_funding = pays_funding
        p0 = float(popu.price_start)
        self.p0 = p0
        self.perm = self.trans = self.y = self.rv = self.lf = 0.0
        self.price = self.ref = self.mark = p0
        self.marks = []  # the mark at the end of every step
        self.fund, self.bad = float(fund), 0.0
        # the fund's inventory: signed coin, its cost (coin x average entry), PnL realised
        self.inv = self.cost = self.real = self.taken = self.offloaded = 0.0
        self.lasts = [p0] * self.window  # last prices, oldest first
        # the same windows as running sums, in the order the venue adds and drops: ADL ranks of
        # positions opened in one step at one leverage tie but for the last bit of the mark, so
        # the reference must round its marks like the engine to walk them in the same order
        # (each running mean is checked against the plain one, :meth:`window_means`)
        self.ring_sum = p0 * self.window
        self.ring_pos = 0
        self.basis = []  # last - index, every step
        self.basis_sum = 0.0
        self.ema = 0.0
        self.premiums = []  # (last - index) / index since the last funding payment
        self.f_last = 0.0
        self.adl_usd = self.adl_n = self.n_partial = self.backstop = 0.0
        self.paid_long = self.paid_short = 0.0
        self.records = []  # dicts, in the order the engine writes them
        self.queue = []  # record indices waiting for their fill
        self.forced_due = {}  # step -> forced flow USD
        self.arb_due = {}  # step -> arbitrage flow USD
        self.depth_now = g["P_DEPTH"]  # depth of the last step (thinned): arbitrage sizes by it
        self.adl_cache = {}  # (trigger step, side) -> [rows in rank order, next place]
        self.out = []

    # ------------------------------------------------------------------ rules on one position
    def crossed(self, i, mark):
        x = self.lp[i]
        if self.side[i] > 0:
            return x > mark or (self.liq_eq and x == mark)
        return x < mark or (self.liq_eq and x == mark)

    def new_lp(self, i):
        self.lp[i] = liq_price(self.side[i], self.qty[i], self.entry[i], self.wallet[i], 0.0, 0.0,
                               self.floor, self.cap, self.mmr, self.cum)[0]

    def requeue(self, i):
        self.status[i] = HEAPED if i < self.n_ladder else OPEN
        self.late[i] = True

    def record(self, i, kind, t, exec_step, price, q):
        self.records.append({"pos": i, "kind": kind, "trigger_step": t, "exec_step": exec_step,
                             "trigger_price": price, "fill_price": math.nan, "fund_delta": 0.0,
                             "fee": 0.0, "qty": q, "adl_qty": 0.0, "adl_price": math.nan,
                             "ioc_qty": 0.0, "ioc_fill": math.nan, "fund_qty": 0.0})
        return len(self.records) - 1

    def book_fund(self, delta):
        self.fund += delta
        if self.fund < 0:
            self.bad -= self.fund
            self.fund = 0.0

    def fund_trade(self, d, price):
        """The fund buys d coin (sells if negative) at price, average-entry accounting; the PnL
        of what it closes goes to its cash."""
        if d == 0:
            return
        self.inv, self.cost, real = average_entry_trade(self.inv, self.cost, d, price)
        self.real += real
        self.book_fund(real)

    def fund_room(self, s, px):
        """Coin of side s the fund can still take at px: net notional <= P_FUNDCAP x cash."""
        return max(self.p["P_FUNDCAP"] * self.fund / px - s * self.inv, 0.0) if px > 0 else 0.0

    def take_over(self, r, u, px, p_adl, mark):
        """The fund takes u coin of record r's position at px within its room; ADL at p_adl
        beyond (what it cannot cover the fund takes anyway). Returns (taken, ADL'd)."""
        s = self.side[self.records[r]["pos"]]
        take, done = u, 0.0
        if self.adl_rule != "none":
            take = min(u, self.fund_room(s, px))
            if u - take > 0:
                done = self.adl(r, self.records[r]["trigger_step"], u - take, 1.0, p_adl, mark)
                take = u - done
                self.records[r]["adl_qty"], self.records[r]["adl_price"] = done, p_adl
        self.fund_trade(s * take, px)
        self.taken += take * px
        self.records[r]["fund_qty"] = take
        return take, done

    def ioc_flows(self, n0, y0, y_run, p_pre, wick, last, depth):
        """Flow of records n0.. (just triggered) as IOC liquidations and market orders, each
        meeting the book in record order (tests.naive.engine.ioc)."""
        flow = 0.0
        for rec in self.records[n0:]:
            i, kind = rec["pos"], rec["kind"]
            s = self.side[i]
            if kind == LIQ and self.takeover:
                f = 0.0
                rec["ioc_qty"], rec["ioc_fill"] = 0.0, math.nan
            elif kind == LIQ:
                f, qf, px = ioc(s, self.qty[i], self.entry[i], self.wallet[i], y0, y_run, p_pre,
                                wick, last, depth, self.p["P_ALPHA"], self.feedback)
                rec["ioc_qty"], rec["ioc_fill"] = qf, px
            elif kind == ENTRY:
                f = s * rec["qty"] * last
            elif kind in (STOP, PARTIAL):
                f = -s * rec["qty"] * last
            else:
                f = 0.0
            flow += f
            if self.feedback:
                y_run += f
        return flow

    def is_open(self, i):
        return self.status[i] in (OPEN, HEAPED)

    # ------------------------------------------------------------------------------- triggers
    def trigger_liquidation(self, i, t, mark, last):
        """Decide what the liquidator does with row i (venue's partial rule); returns flow."""
        s, q = self.side[i], self.qty[i]
        kind, qc = LIQ, q
        if self.partial == "hyperliquid":
            t_s = self.p["P_T0"] + t * self.p["P_STEP"]
            action, c, _, _ = rules.hl_liquidation(s, q, self.entry[i], self.wallet[i], mark, t_s,
                                                   self.t_partial[i], self.floor, self.cap,
                                                   self.mmr, self.cum)
            if action == 3:
                kind = BACKSTOP
            elif action == 1:
                kind, qc = PARTIAL, c
                self.t_partial[i] = t_s
        elif self.partial == "step_down":
            outcome, _, closed, *_ = rules.tier_step_down(
                s, q, self.entry[i], self.wallet[i], mark, mark, self.floor, self.cap, self.mmr,
                self.cum, 1, 1, 1, False, 0.0, True, self.liq_eq)
            if outcome == 1:
                kind, qc = PARTIAL, closed
        self.record(i, kind, t, t + self.lat, mark, qc)
        self.status[i] = TRIGGERED
        self.queue.append(len(self.records) - 1)
        return 0.0 if kind == BACKSTOP else -s * qc * last

    def scan(self, t, mark, last):
        """Every trigger crossed now, in the exchange's order: positions held from the start
        (longs from the highest liquidation price down, shorts from the lowest up), then those
        opened or re-queued during the run (same order), then the orders on last price that sell
        on a fall (highest level first), then those that buy on a rise (lowest first). Returns
        (found anything, flow USD)."""
        n0 = len(self.records)
        flow = 0.0
        for late in (False, True):
            rows = [i for i in range(self.n) if self.is_open(i) and self.late[i] == late
                    and self.crossed(i, mark)]
            longs = sorted((i for i in rows if self.side[i] > 0),
                           key=lambda i: (-self.lp[i], -i))
            shorts = sorted((i for i in rows if self.side[i] < 0), key=lambda i: (self.lp[i], i))
            for i in longs + shorts:
                flow += self.trigger_liquidation(i, t, mark, last)

        def sells_on_fall(i):  # a long's stop, or a short's entry
            return (self.side[i] > 0) == (i < self.n_ladder)

        orders = list(enumerate(zip(self.stop_rows, self.stop_px)))
        sells = [(px, k, i) for k, (i, px) in orders
                 if not self.consumed[k] and sells_on_fall(i) and px >= last]
        buys = [(px, k, i) for k, (i, px) in orders
                if not self.consumed[k] and not sells_on_fall(i) and px <= last]
        for group, sign in ((sorted(sells, key=lambda x: (-x[0], -x[1])), -1.0),
                            (sorted(buys), 1.0)):
            for _, k, i in group:
                self.consumed[k] = True
                if self.is_open(i):
                    self.record(i, STOP, t, t + self.lat, last, self.qty[i])
                elif self.status[i] == DORMANT:
                    self.record(i, ENTRY, t, t + self.lat, last, self.qty[i])
                else:
                    continue
                self.status[i] = TRIGGERED
                self.queue.append(len(self.records) - 1)
                flow += sign * self.qty[i] * last
        return len(self.records) > n0, flow

    # ----------------------------------------------------------------------------- the mark
    def window_means(self, last):
        """(mean of the last ``window`` last prices with ``last`` as the newest, mean of the
        basis samples of the previous ``basis_window`` steps (0.0 before the first)), from the
        running sums; checked against the plain means."""
        oldest = self.lasts[0]
        avg = (self.ring_sum - oldest + last) / self.window
        plain = math.fsum(self.lasts[1:] + [last]) / self.window
        assert math.isclose(avg, plain, rel_tol=1e-12), (avg, plain)
        bw = self.basis[-self.basis_window:]
        basis_mean = self.basis_sum / len(bw) if bw else 0.0
        if bw:
            assert math.isclose(basis_mean, math.fsum(bw) / len(bw), rel_tol=1e-9,
                                abs_tol=1e-9 * abs(last)), (basis_mean, bw)
        return avg, basis_mean

    def push_windows(self, last, sample):
        oldest = self.lasts[0]
        self.lasts = self.lasts[1:] + [last]
        self.ring_sum += last - oldest
        self.ring_pos += 1
        if self.ring_pos == self.window:  # re-summed once per window, in slot order
            self.ring_pos = 0
            s = 0.0
            for x in self.lasts:  # slot order = age order right after a wrap
                s += x
            self.ring_sum = s
        if sample is not None:
            if len(self.basis) >= self.basis_window:
                self.basis_sum -= self.basis[-self.basis_window]
            self.basis.append(sample)
            self.basis_sum += sample

    def mark_of(self, t, last, index, others):
        avg, basis_mean = self.window_means(last)
        if self.mark_rule == "binance":
            tau = time_to_next_funding(self.p["P_T0"] + t * self.p["P_STEP"],
                                       self.funding_interval_s)
            return rules.binance_mark(index, self.f_last, tau, self.funding_interval_s,
                                      basis_mean, last)
        if self.mark_rule == "hyperliquid":
            # no book: bid = ask = last; the other venues' previous last prices as CEX mids
            mids = others if others else [last]
            return rules.hl_mark(index, self.ema, last, last, last, mids)
        return avg

    # ---------------------------------------------------------------------------- settlement
    def adl(self, r, t_trig, deficit, gap, price, mark):
        """Close the best-ranked opposite positions at ``price`` until ``deficit / gap`` coin
        are covered; the ranking is made once per step and side (at that step's mark) and
        walked. Returns the coin covered."""
        i0 = self.records[r]["pos"]
        want = -1 if self.side[i0] > 0 else 1
        need = min(deficit / gap, self.records[r]["qty"])
        key = (t_trig, want)
        if key not in self.adl_cache:
            self.adl_cache = {k: v for k, v in self.adl_cache.items() if k[1] != want}
            rank = rules.hl_rank if self.adl_rule == "hyperliquid" else rules.binance_rank
            rows = [i for i in range(self.n) if self.side[i] == want and self.is_open(i)]
            ranks = {i: rank(self.side[i], self.qty[i], self.entry[i], self.wallet[i], mark)
                     for i in rows}
            self.adl_cache[key] = [sorted(rows, key=lambda i: (-ranks[i], i)), 0]
        walk = self.adl_cache[key]
        done = 0.0
        while done < need and walk[1] < len(walk[0]):
            i = walk[0][walk[1]]
            if not self.is_open(i):
                walk[1] += 1
                continue
            c = min(self.qty[i], need - done)
            n = self.record(i, ADL, t_trig, t_trig, price, c)
            self.records[n]["fill_price"] = price
            s = self.side[i]
            self.adl_usd += c * price
            self.adl_n += 1
            if c < self.qty[i]:
                self.wallet[i] += s * c * (price - self.entry[i])
                self.qty[i] -= c
                self.new_lp(i)
                self.requeue(i)
            else:
                eq = self.wallet[i] + s * c * (price - self.entry[i])
                if eq < 0:
                    self.records[n]["fund_delta"] = eq
                    self.book_fund(eq)
                self.status[i] = DELEVERAGED
                walk[1] += 1
            done += c
        return done

    def execute(self, r, fill, mark, prev_mark):
        """Fill record r; returns (kind, notional USD, coin handed to ADL)."""
        rec = self.records[r]
        i, kind = rec["pos"], rec["kind"]
        s = self.side[i]
        rec["fill_price"] = fill
        if kind == ENTRY:  # isolated, margin = notional / leverage
            self.entry[i] = fill
            self.wallet[i] = self.qty[i] * fill * self.wallet[i]
            self.new_lp(i)
            self.requeue(i)
            return kind, self.qty[i] * fill, 0.0
        if kind == STOP:
            q = self.qty[i]
            equity = self.wallet[i] + s * q * (fill - self.entry[i])
            rec["fund_delta"] = min(equity, 0.0)
            self.book_fund(rec["fund_delta"])
            self.status[i] = STOPPED
            return kind, q * fill, 0.0
        if kind == PARTIAL:
            c = rec["qty"]
            self.wallet[i] += s * c * (fill - self.entry[i])
            self.qty[i] -= c
            self.new_lp(i)
            self.requeue(i)
            self.n_partial += 1
            return kind, c * fill, 0.0
        q = self.qty[i]
        if kind == LIQ and self.liq_order == "ioc":
            # the book took ioc_qty coin above BP; the fund takes the rest at BP (ADL beyond
            # its cap); the trader's equity left, s * qf * (fill - BP), goes to the fund
            qf = rec["ioc_qty"]
            u = q - qf
            bp = bankruptcy_price(s, q, self.entry[i], self.wallet[i])
            f = rec["ioc_fill"] if qf > 0 else bp
            rec["fill_price"] = f
            if u > 0:
                self.take_over(r, u, bp, bp, mark)
            equity = self.wallet[i] + s * qf * (f - self.entry[i]) + s * u * (bp - self.entry[i])
            rec["fund_delta"] = equity
            rec["fee"] = min(self.p["P_FEE"] * qf * f, max(equity, 0.0))
            self.status[i] = LIQUIDATED
            self.book_fund(equity)
            return kind, qf * f + u * bp, 0.0
        if kind == BACKSTOP and self.liq_order == "backstop":
            # the vault holds the position at the trigger's mark within its cap, ADL at the
            # previous mark (of the trigger's step) beyond; the margin goes to the vault
            px = rec["trigger_price"]
            rec["fill_price"] = px
            t0 = rec["trigger_step"]
            p_adl = self.marks[t0 - 1] if t0 >= 1 else self.p0
            take, done = self.take_over(r, q, px, p_adl, mark)
            equity = self.wallet[i] + s * take * (px - self.entry[i])
            if done > 0:
                equity += s * done * (p_adl - self.entry[i])
            rec["fund_delta"] = equity
            self.status[i] = LIQUIDATED
            self.book_fund(equity)
            self.backstop += q * px
            return kind, q * px, 0.0
        px = rec["trigger_price"] if kind == BACKSTOP else fill  # the vault takes it at mark
        rec["fill_price"] = px
        equity = self.wallet[i] + s * q * (px - self.entry[i])
        fee = min(self.p["P_FEE"] * q * px, max(equity, 0.0)) if kind == LIQ else 0.0
        done = 0.0
        if equity < 0 and -equity > self.fund and self.adl_rule != "none":
            if self.adl_rule == "binance":
                p_adl = bankruptcy_price(s, q, self.entry[i], self.wallet[i])
            elif kind == BACKSTOP:  # the mark before the one the vault took it at
                t0 = rec["trigger_step"]
                p_adl = self.marks[t0 - 1] if t0 >= 1 else self.p0
            else:  # the mark before this step's
                p_adl = prev_mark
            gap = s * (p_adl - px)
            if gap > 0:
                done = self.adl(r, rec["trigger_step"], -equity - self.fund, gap, p_adl, mark)
                equity += s * done * (p_adl - px)
                rec["adl_qty"], rec["adl_price"] = done, p_adl
        rec["fund_delta"], rec["fee"] = equity, fee
        self.status[i] = LIQUIDATED
        self.book_fund(equity)
        if kind == BACKSTOP:
            self.backstop += q * px
            return kind, q * px, 0.0
        return kind, q * fill, done

    def open_qty(self):
        return math.fsum(self.qty[i] for i in range(self.n) if self.holds(i))

    def holds(self, i):
        """Row i holds a position (open, or waiting for its closing fill)."""
        st = self.status[i]
        if st in (OPEN, HEAPED):
            return True
        if st != TRIGGERED:
            return False
        return not math.isnan(self.entry[i])  # a triggered entry is not open yet

    # ---------------------------------------------------------------------------------- step
    def step(self, t, x, index, others, exo_t, wick_t):
        g = self.p
        p_prev, prev_mark = self.price, self.mark
        mult = max(g["P_FLOOR"], 1.0 / (1.0 + g["P_VOLSENS"] * self.rv / 0.1
                                        + g["P_LIQSENS"] * max(self.lf - g["P_LIQTHR"], 0.0)))
        depth = g["P_DEPTH"] * mult
        self.trans *= g["P_DECAY"]
        self.y *= g["P_DECAY"]
        y = self.y
        p_pre = math.exp(x + self.perm + self.trans)
        ref = math.exp(x + self.perm) if g["P_DIPFAIR"] else self.ref  # fair: no transient
        dip = counter_trend(ref, p_pre, g["P_DIPTHR"], g["P_DIPRATE"], g["P_DIPCAP"], mult)
        forced = self.forced_due.pop(t, 0.0)
        arb_in = self.arb_due.pop(t, 0.0)
        ext = exo_t + dip + arb_in
        alpha = g["P_ALPHA"]
        off, inv0 = 0.0, self.inv  # the fund offloads: P_OFFLOAD x depth per minute
        if inv0 != 0 and g["P_OFFLOAD"] > 0:
            off = min(abs(inv0), g["P_OFFLOAD"] * depth * g["P_STEP"] / 60.0 / p_pre)
            forced += (-off if inv0 > 0 else off) * p_pre
        taken0, offl0 = self.taken, self.offloaded

        def price_of(forced):
            net = ext + forced if self.feedback else ext
            imp = curve(y + net, depth, alpha) - curve(y, depth, alpha)
            p = p_pre * math.exp(imp)
            last = p * wick_t
            return imp, p, last, self.mark_of(t, last, index, others)

        it = 0
        while True:
            imp, p, last, mark = price_of(forced)
            n0 = len(self.records)
            found, new = self.scan(t, mark, last)
            it += 1
            if not found:
                break
            if self.liq_order == "ioc":
                new = self.ioc_flows(n0, y, y + ext + (forced if self.feedback else 0.0), p_pre,
                                     wick_t, last, depth)
            if self.lat == 0:
                forced += new
            else:
                self.forced_due[t + self.lat] = self.forced_due.get(t + self.lat, 0.0) + new
            if it >= self.maxit or not self.feedback or self.lat > 0:
                imp, p, last, mark = price_of(forced)
                break
        net = ext + forced if self.feedback else ext
        fill = p_pre * math.exp(mean_impact(y, net, depth, alpha, imp)) * wick_t
        liq_l = liq_s = stop_usd = entry_usd = handed = 0.0
        nliq = 0
        adl0, adln0, part0, back0 = self.adl_usd, self.adl_n, self.n_partial, self.backstop
        for r in [r for r in self.queue if self.records[r]["exec_step"] == t]:
            self.queue.remove(r)
            kind, usd, done = self.execute(r, fill, mark, prev_mark)
            i = self.records[r]["pos"]
            if kind == ENTRY:
                entry_usd += usd
            elif kind == STOP:
                stop_usd += usd
            else:
                handed += -self.side[i] * done * fill
                nliq += kind != PARTIAL
                if self.side[i] > 0:
                    liq_l += usd
                else:
                    liq_s += usd
        if off > 0:
            self.fund_trade(-off if inv0 > 0 else off, fill)
            self.offloaded += off * fill
        phi_t = permanent_share(g["P_PHI"], g["P_NEWSPHI"], exo_t, net)
        # permanent_depth = "normal": the permanent part as if the book had its full depth
        imp_p = (curve(y + net, g["P_DEPTH"], alpha) - curve(y, g["P_DEPTH"], alpha)
                 if g["P_PERMNORMAL"] else imp)
        self.perm += phi_t * imp_p
        self.trans += imp - phi_t * imp_p
        self.depth_now = depth
        self.y = y + net - (handed if self.feedback else 0.0)
        self.price, self.mark = p, mark
        self.marks.append(mark)
        self.push_windows(last, None if self.mark_rule == "last_average" else last - index)
        if self.mark_rule != "last_average":
            self.ema += g["P_EMA"] * ((last - index) - self.ema)
            self.premiums.append((last - index) / index)
        self.rv = (g["P_MEMDECAY"] * self.rv + (1 - g["P_MEMDECAY"])
                   * abs(math.log(p / p_prev)) * 100 / math.sqrt(g["P_STEP"]))
        if self.feedback:
            self.lf = (g["P_MEMDECAY"] * self.lf
                       + (1 - g["P_MEMDECAY"]) * abs(forced) / g["P_DEPTH"] / g["P_STEP"])
        self.ref = g["P_REFDECAY"] * self.ref + (1 - g["P_REFDECAY"]) * p
        self.out.append({
            "last_price": last, "mark_price": mark, "liq_long_usd": liq_l, "liq_short_usd": liq_s,
            "liq_count": nliq, "stop_usd": stop_usd, "exo_flow_usd": exo_t, "dip_flow_usd": dip,
            "forced_flow_usd": forced, "open_interest_usd": self.open_qty() * mark,
            "depth_usd": depth, "insurance_fund_usd": self.fund, "bad_debt_usd": self.bad,
            "iterations": it, "fill_price": fill, "entry_usd": entry_usd, "index_price": index,
            "adl_usd": self.adl_usd - adl0, "adl_count": self.adl_n - adln0,
            "partial_count": self.n_partial - part0, "funding_rate": self.f_last,
            "arb_flow_usd": arb_in, "backstop_usd": self.backstop - back0,
            "fund_inventory_usd": self.inv * mark,
            "fund_equity_usd": self.fund + self.inv * mark - self.cost,
            "takeover_usd": self.taken - taken0, "fund_offload_usd": self.offloaded - offl0})

    # ------------------------------------------------------------------------------- funding
    def funding_rate(self):
        """Rate of one interval from the average premium since the last payment."""
        pbar = math.fsum(self.premiums) / len(self.premiums) if self.premiums else 0.0
        if self.rules == "hyperliquid":  # F8h / 8, no cap
            return rules.funding_rate(pbar, BINANCE_INTEREST_8H, CLAMP, 0.0) / 8
        interest = BINANCE_INTEREST_8H * self.funding_interval_s / (8 * 3600.0)
        return rules.funding_rate(pbar, interest, CLAMP, 0.75 * self.mmr[0])

    def pay_funding(self, price, rate=None):
        """Pay a funding interval at ``price`` (``rate``: given, else the scheduled one, which
        also becomes the last rate and restarts the premium average)."""
        scheduled = rate is None
        rate = self.funding_rate() if scheduled else rate
        paid_l = paid_s = 0.0
        for i in range(self.n):
            if self.status[i] in (OPEN, HEAPED, TRIGGERED) and not math.isnan(self.entry[i]):
                pay = self.side[i] * self.qty[i] * price * rate
                self.wallet[i] -= pay
                self.new_lp(i)
                if self.side[i] > 0:
                    paid_l += pay
                else:
                    paid_s += pay
        self.paid_long += paid_l
        self.paid_short += paid_s
        if scheduled:
            self.f_last = rate
            self.premiums = []
        return {"venue": self.name, "rate": rate, "price": price, "longs_paid_usd": paid_l,
                "shorts_paid_usd": paid_s, "to_others_usd": -(paid_l + paid_s)}


def run(sc, pops, shocks=None):
    """Run a multi-venue scenario slowly from its populations (one per venue, as
    :func:`cascade.model.venues.build_populations` draws them; they are not modified). ``shocks``:
    {step: rate} of extra funding payments on every venue before that step (after any
    scheduled one), on the venue's previous mark; they move wallets only (not the rate the
    Binance mark uses, nor the premium average).

    Returns {"venues": [Venue], "index": [...], "composite": [...], "funding": [payment dicts
    with their step]}; each Venue has ``out`` (one dict of the engine's columns per step),
    ``records`` and its final rows."""
    from cascade.model.market import background_noise
    from cascade.model.venues import flows_by_venue, spot_inputs, venue_parameters, venue_specs

    specs = venue_specs(sc)
    prm, iprm = venue_parameters(sc, specs)
    exo, spot_exo = flows_by_venue(sc, specs)
    seed = sc.scenario.seed
    noise = [float(z) for z in background_noise(sc, seed)]
    _, spot_noise = spot_inputs(sc, seed)
    dt = sc.scenario.step_s
    n_steps = sc.n_steps
    t0 = sc.scenario.start.timestamp()
    venues = [Venue(s.name, s.rules, p, s.table, prm[v], iprm[v], s.insurance_fund_usd,
                    s.funding_interval_s, s.funding)
              for v, (s, p) in enumerate(zip(specs, pops))]
    names = [s.name for s in specs]
    nv = len(venues)
    p0 = float(pops[0].price_start)
    # wicks: a multiplier of one venue's last price, or of the index, over their steps
    wick = [[1.0] * n_steps for _ in range(nv + 1)]
    for w in sc.wicks:
        a = math.floor((w.start.timestamp() - t0) / dt)
        row = nv if w.target == "index" else names.index(w.target)
        for k in range(a, min(n_steps, a + max(1, round(w.duration_s / dt)))):
            wick[row][k] *= 1 - w.depth_pct / 100
    # funding instants: multiples of each venue's interval since the epoch, inside the window
    pay_at = {}
    for v, ven in enumerate(venues):
        if not ven.pays_funding:
            continue
        iv = ven.funding_interval_s
        for step in range(1, n_steps):
            t_s = t0 + step * dt
            if t_s % iv == 0:
                pay_at.setdefault(step, []).append(v)
    spots = [{"w": s.weight, "lag": round(s.lag_s / dt), "depth": s.depth_usd,
              "decay": 2.0 ** (-dt / sc.index.resilience_half_life_s),
              "revert": 2.0 ** (-dt / sc.index.reversion_half_life_s), "dev": 0.0, "imb": 0.0}
             for s in sc.spot]
    alpha = sc.market.impact_exponent
    arb_cap = sc.arbitrage.capacity_usd_per_s * dt
    band = sc.arbitrage.band_bps / 1e4
    delay = max(1, round(sc.arbitrage.delay_s / dt))
    depth_total = 0.0
    for ven in venues:
        depth_total += ven.p["P_DEPTH"]
    x = math.log(p0)
    composite = []  # log composite after each step
    index_path = []
    oracle_path = []
    funding = []
    for t in range(n_steps):
        for v in pay_at.get(t, []):
            ven = venues[v]
            price = oracle_path[-1] if ven.rules == "hyperliquid" else ven.mark
            funding.append({"step": t, **ven.pay_funding(price)})
        for ven in venues if shocks and t in shocks else ():
            ven.pay_funding(ven.mark, shocks[t])
        x += noise[t]
        if spots:
            num = den = 0.0
            prices = []
            for j, s in enumerate(spots):
                s["imb"] *= s["decay"]
                s["dev"] *= s["revert"]
                f = float(spot_exo[j, t])
                if f != 0.0:
                    s["dev"] += curve(s["imb"] + f, s["depth"], alpha) - curve(s["imb"], s["depth"],
                                                                              alpha)
                    s["imb"] += f
                back = t - 1 - s["lag"]
                c = composite[back] if back >= 0 else math.log(p0)
                prices.append(math.exp(c + s["dev"] + float(spot_noise[j, t])))
                num += s["w"] * prices[-1]
                den += s["w"]
            index = num / den
            oracle = rules.weighted_median(prices, [s["w"] for s in spots])
        else:
            index = math.exp(composite[-1]) if composite else p0
            oracle = index
        index *= wick[nv][t]
        oracle *= wick[nv][t]
        index_path.append(index)
        oracle_path.append(oracle)
        before = [ven.price for ven in venues]
        for v, ven in enumerate(venues):
            others = [before[u] for u in range(nv) if u != v]
            ref = oracle if ven.mark_rule == "hyperliquid" else index
            ven.step(t, x, ref, others, float(exo[v, t]), wick[v][t])
        comp = 0.0  # summed in venue order, as the engine does (arbitrage sizes are gaps
        for ven in venues:  # beyond the band: their last digits depend on it)
            comp += ven.p["P_DEPTH"] * math.log(ven.price)
        comp /= depth_total
        composite.append(comp)
        if nv > 1:  # arbitrage: buy the venues below the composite, sell those above
            needs = []
            for ven in venues:
                gap = math.log(ven.price) - comp
                sent = math.fsum(ven.arb_due.values())  # their orders not arrived yet
                if gap > band:
                    needs.append(min(-(gap - band) * 100 * ven.depth_now - sent, 0.0))
                elif gap < -band:
                    needs.append(max((-gap - band) * 100 * ven.depth_now - sent, 0.0))
                else:
                    needs.append(0.0)
            buy = sell = 0.0
            for need in needs:
                if need > 0:
                    buy += need
                elif need < 0:
                    sell -= need
            matched = min(buy, sell, arb_cap)
            if matched > 0:
                for ven, need in zip(venues, needs):
                    if need != 0:
                        amount = need / (buy if need > 0 else sell) * matched
                        ven.arb_due[t + delay] = ven.arb_due.get(t + delay, 0.0) + amount
    return {"venues": venues, "index": index_path, "composite": composite, "funding": funding}
