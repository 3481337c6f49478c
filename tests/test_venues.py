"""The multi-venue engine: wicks, funding, triggers, accounting, arbitrage, a slow reference, and
the schema errors of ``[[venues]]``.

Every scenario is built in code from ``tests.conftest.BASE`` (no data files): a Binance-like venue
``bn`` and a Hyperliquid-like venue ``hl`` sharing one background price, two spot venues in the
index, and small populations over short windows.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import math
from unittest import mock

import numpy as np
import pytest

from cascade import result as cresult
from cascade import runner
from cascade.engine import (
    C_ITER,
    C_LAST,
    C_MARK,
    COLUMNS,
    DELEVERAGED,
    HEAPED,
    J_FBASE,
    J_HL,
    J_HS,
    J_XL,
    J_XS,
    KIND_ADL,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_PARTIAL,
    KIND_STOP,
    L_END,
    L_HEND,
    L_HOFF,
    L_NLADDER,
    L_OFF,
    LIQUIDATED,
    OPEN,
    R_BRACKET,
    R_END,
    R_PTR,
    R_SIDE,
    R_START,
    RECORD_DTYPE,
    STOPPED,
    TRIGGERED,
    EngineState,
)
from cascade.errors import CascadeError
from cascade.model.market import LIQORD_IOC, LIQORD_TAKEOVER, P_LIQ_EQ
from cascade.model.scenario import load_scenario, parse_scenario
from cascade.model.venues import build_populations, venue_parameters, venue_specs
from cascade.runner import simulate
from tests.conftest import BASE, START, UTC
from tests.naive import engine as naive_engine
from tests.naive import rules as naive_rules
from tests.naive import venues as naive
from tests.naive.margin import liq_price
from tests.test_engine import fund_ledger

T0 = dt.datetime(2025, 10, 10, 20, 50, tzinfo=UTC)  # ten minutes before a funding instant
MIN = dt.timedelta(minutes=1)
LIQ_KINDS = (KIND_LIQ, KIND_PARTIAL, KIND_BACKSTOP)
ENTRIES = {"entry_order_share": 0.3, "entry_order_range_pct": [0.2, 3.0],
           "entry_order_leverages": [20.0, 30.0, 40.0],
           "entry_order_leverage_weights": [0.3, 0.4, 0.3]}


def market(minutes: float = 20, start: dt.datetime = T0, positions: int = 600) -> dict:
    """Raw scenario of a two-venue market: ``bn`` (Binance rules) and ``hl`` (Hyperliquid rules),
    both with empty insurance funds, two spot venues; a sell program at +2 min and a short
    squeeze at +12 min."""
    raw = copy.deepcopy(BASE)
    del raw["venue"]
    raw["scenario"].update(start=start, end=start + minutes * MIN)
    pop = raw["population"]
    pop.update(positions=positions, leverages=[3.0, 10.0, 25.0, 40.0],
               leverage_weights=[0.3, 0.3, 0.3, 0.1])
    pop["history"] = [[start - dt.timedelta(hours=12), 109000.0],
                      [start - dt.timedelta(hours=6), 111000.0], [start, 110000.0]]
    raw["venues"] = [
        {"name": "bn", "rules": "binance", "population_share": 0.6, "depth_share": 0.6,
         "insurance_fund_usd": 0.0},
        {"name": "hl", "rules": "hyperliquid", "population_share": 0.4, "depth_share": 0.4,
         "insurance_fund_usd": 0.0},
    ]
    raw["spot"] = [{"name": "bs", "weight": 3.0, "lag_s": 1.0, "noise_bps": 1.0},
                   {"name": "cb", "weight": 1.0, "lag_s": 3.0}]
    raw["flows"] = [
        {"start": start + 2 * MIN, "duration_min": 3.0, "usd_per_min": 8e6, "side": "sell"},
        {"start": start + 12 * MIN, "duration_min": 4.0, "usd_per_min": 20e6, "side": "buy"}]
    return raw


def venue(raw: dict, name: str) -> dict:
    return next(v for v in raw["venues"] if v["name"] == name)


@contextlib.contextmanager
def _capture(each_step=None):
    """Run :func:`cascade.runner.simulate` on its own code path, keeping the EngineState on the
    result (``res.state``). With ``each_step(state, t, advance)``, the step loop runs one step
    at a time (after any funding due at that step) and each step goes through it: it must call
    ``advance()`` itself, and may look at the state before and after."""
    orig = cresult.Result.assemble.__func__

    def assemble(cls, sc, specs, pops, state, *args, **kwargs):
        res = orig(cls, sc, specs, pops, state, *args, **kwargs)
        res.state = state
        return res

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(cresult.Result, "assemble",
                                              classmethod(assemble)))
        if each_step is not None:
            adv = runner._advance_or_explain

            def one_by_one(sc, state, exo, noise, prm, iprm, a, b):
                for t in range(a, b):
                    each_step(state, t, lambda: adv(sc, state, exo, noise, prm, iprm, t, t + 1))

            stack.enter_context(mock.patch.object(runner, "CHUNKS", 10 ** 9))
            stack.enter_context(mock.patch.object(runner, "_advance_or_explain", one_by_one))
        yield


def run(sc, populations=None, each_step=None):
    with _capture(each_step):
        return simulate(sc, population=populations)


def rows(state: EngineState, v: int) -> slice:
    return slice(int(state.lay[v, L_OFF]), int(state.lay[v, L_END]))


def crossed(side, lp, mark, liq_on_equal):
    """Liquidation triggered at ``mark``: longs lp >= mark, shorts lp <= mark (strict when the
    venue liquidates only below maintenance)."""
    side, lp, mark = np.asarray(side), np.asarray(lp, float), np.asarray(mark, float)
    eq = (lp == mark) & liq_on_equal
    return np.where(side > 0, lp > mark, lp < mark) | eq


def check_ladder_and_heaps(state: EngineState, v: int) -> int:
    """The engine's own bookkeeping of venue ``v``: every row held from the start and still
    open is in exactly one place: the part not yet walked of the run of its side and of its
    bracket now (the runs' offsets are exact only inside a bracket), or its side's stray heap;
    each run's part not yet walked, read at the current funding, is sorted by liquidation price
    (to rounding: its rows moved by one offset); the walked parts hold no open row; the stray
    heaps are in heap order of their keys, which are the open strays' liquidation prices; the
    heaps hold every heaped row and every opened entry still open, in heap order. Returns the
    number of rows in the heaps."""
    sl = rows(state, v)
    side, lp, status = state.side[sl], state.lp[sl], state.status[sl]
    qty, entry, wallet = state.qty[sl], state.entry[sl], state.wallet[sl]
    tb = state.tables[v]
    lay, ist = state.lay[v], state.ist[v]
    n_ladder = int(lay[L_NLADDER] - lay[L_OFF])
    order = state.order[sl]
    seen = np.zeros(len(side), np.int64)
    for run in state.runs[v]:
        a, b, ptr, br, sd = (int(run[k]) for k in (R_START, R_END, R_PTR, R_BRACKET, R_SIDE))
        if a == b:
            continue
        part = order[a:b]
        assert (side[part] == sd).all()
        todo, walked = (part[:ptr - a], part[ptr - a:]) if sd > 0 else \
            (part[ptr - a:], part[:ptr - a])
        assert not (status[walked] == OPEN).any()
        todo = todo[status[todo] == OPEN]
        seen[todo] += 1
        x = lp[todo]
        assert (np.diff(x) >= -1e-9 * np.abs(x[1:])).all()
        for i in todo.tolist():
            got = liq_price(int(side[i]), float(qty[i]), float(entry[i]), float(wallet[i]),
                            0.0, 0.0, tb.floor, tb.cap, tb.mmr, tb.cum)
            assert got[1] == br, (i, got, br)
    for heap_key, size_key, want, sgn in ((state.xheap_l, J_XL, 1, -1.0),
                                          (state.xheap_s, J_XS, -1, 1.0)):
        heap = heap_key[int(lay[L_HOFF]):int(lay[L_HEND])][:int(ist[size_key])]
        xkey = state.xkey[sl]
        key = sgn * xkey[heap]
        for k in range(1, len(heap)):
            parent = (k - 1) // 2
            assert key[parent] < key[k] or (key[parent] == key[k]
                                             and sgn * heap[parent] < sgn * heap[k])
        live = heap[status[heap] == OPEN]
        assert (side[live] == want).all()
        np.testing.assert_array_equal(xkey[live], lp[live])
        seen[live] += 1
    must = (status == OPEN) & (np.arange(len(side)) < n_ladder)
    np.testing.assert_array_equal(seen[must], 1)
    assert not seen[~must].any()
    held = 0
    for heap_key, size_key, want, sgn in ((state.heap_l, J_HL, 1, -1.0),
                                          (state.heap_s, J_HS, -1, 1.0)):
        heap = heap_key[int(lay[L_HOFF]):int(lay[L_HEND])][:int(ist[size_key])]
        key = sgn * lp[heap]
        for k in range(1, len(heap)):  # no child before its parent
            parent = (k - 1) // 2
            assert key[parent] < key[k] or (key[parent] == key[k]
                                             and sgn * heap[parent] < sgn * heap[k])
        idx = np.arange(len(side))
        must = (side == want) & ((status == HEAPED) | ((status == OPEN) & (idx >= n_ladder)))
        assert set(np.flatnonzero(must)) <= set(heap.tolist())
        held += len(heap)
    return held


# ------------------------------------------------------------------------------------- wicks
def test_venue_wick_liquidates_nobody_but_index_wick_does():
    """A 5 % one-second wick on bn's last price leaves its mark (median of P1, P2 and last) on
    the index: nobody is liquidated. The same wick on the index drags P1 and P2, hence the
    mark: bn liquidates many positions."""
    raw = market(minutes=4, positions=1500)
    raw["flows"] = []
    raw["population"].update(stop_loss_share=0.0, leverages=[10.0, 25.0, 50.0, 100.0],
                             leverage_weights=[0.25, 0.25, 0.25, 0.25])
    venue(raw, "hl")["leverages"] = [10.0, 20.0, 40.0]
    venue(raw, "hl")["leverage_weights"] = [0.4, 0.4, 0.2]
    at = T0 + MIN
    step = 60
    res = {}
    for target in (None, "bn", "index"):
        r = copy.deepcopy(raw)
        r["wicks"] = [] if target is None else [
            {"target": target, "start": at, "duration_s": 1.0, "depth_pct": 5.0}]
        res[target] = simulate(parse_scenario(r, source=f"<wick {target}>"))
    calm, on_venue, on_index = res[None], res["bn"], res["index"]
    # the venue wick is there: bn's last price 5 % down at that step, nothing else moved
    last = on_venue.steps["bn.last_price"].to_numpy()
    base = calm.steps["bn.last_price"].to_numpy()
    assert last[step] == pytest.approx(0.95 * base[step], rel=1e-12)
    np.testing.assert_array_equal(on_venue.steps["index_price"], calm.steps["index_price"])
    assert on_venue.steps["bn.mark_price"].iloc[step] > 0.999 * base[step]
    for r in (calm, on_venue):
        assert r.summary["accounts_liquidated"] == 0
        assert r.summary["liquidated_notional_usd"] == 0.0
    # the index wick: the index 5 % down at that step, and bn's mark with it
    idx = on_index.steps["index_price"].to_numpy()
    assert idx[step] == pytest.approx(0.95 * calm.steps["index_price"].iloc[step], rel=1e-3)
    assert on_index.steps["bn.mark_price"].iloc[step] < 0.96 * base[step]
    bn = on_index.summary["venues"]["bn"]
    assert bn["accounts_liquidated"] >= 50
    assert bn["liquidated_long_usd"] > 5e6
    liq = on_index.liquidations
    first = liq.loc[liq["kind"] == "liquidation", "trigger_time"]
    assert first.min() == on_index.steps.index[step]  # the wick itself, then what it set off
    assert (first == first.min()).mean() > 0.5


# ------------------------------------------------------------------------------------ funding
def funding_market():
    """Five hours over Binance's 00:00 UTC funding instant with steady buying, so the perps lead
    the lagging spot venues: a premium, and Hyperliquid rates above the interest rate."""
    start = dt.datetime(2025, 10, 10, 22, 0, tzinfo=UTC)
    raw = market(minutes=300, start=start, positions=1000)
    raw["scenario"]["step_s"] = 5.0
    raw["population"].update(stop_loss_share=0.0, leverages=[2.0, 3.0, 5.0],
                             leverage_weights=[0.4, 0.4, 0.2])
    raw["spot"] = [{"name": "bs", "weight": 3.0, "lag_s": 600.0},
                   {"name": "cb", "weight": 1.0, "lag_s": 900.0}]
    raw["flows"] = [{"start": start, "duration_min": 300.0, "usd_per_min": 3e5, "side": "buy"}]
    return raw


def test_funding_moves_wallets_and_liquidation_prices_exactly():
    """Four hourly payments on hl and the 00:00 one on bn: each at the documented instant,
    price and rate (from the premium average since the last payment); each split between the
    modelled longs and shorts as their sizes at that moment say, the rest to the unmodelled
    counterparties (the three sum to zero); and every position the run did not touch ends
    with its initial wallet less its payments and that wallet's liquidation price."""
    sc = parse_scenario(funding_market(), source="<funding>")
    snaps = []
    orig = EngineState.pay_funding

    def pay(self, v, rate, price):  # what each payment saw
        snaps.append((v, rate, price, self.status.copy(), self.qty.copy(), self.entry.copy()))
        return orig(self, v, rate, price)

    with mock.patch.object(EngineState, "pay_funding", pay):
        res = run(sc)
    state, s, steps = res.state, res.summary, res.steps
    pays = s["funding_payments"]
    specs = venue_specs(sc)
    names = [sp.name for sp in specs]
    # one payment per hour on hl, one at 00:00 on bn
    hl_steps = [p["step"] for p in pays if p["venue"] == "hl"]
    assert hl_steps == [720 * k for k in range(1, 5)]
    assert [p["step"] for p in pays if p["venue"] == "bn"] == [1440]
    # rates: from the average premium of the steps since the last payment, by the venue's rule
    prev = {}
    for p in pays:
        v = names.index(p["venue"])
        a, b = prev.get(v, 0), p["step"]
        last = steps[f"{p['venue']}.last_price"].to_numpy()[a:b]
        index = steps[f"{p['venue']}.index_price"].to_numpy()[a:b]
        pbar = math.fsum((last - index) / index) / (b - a)
        assert p["premium"] == pytest.approx(pbar, rel=1e-9, abs=1e-15)
        if p["venue"] == "hl":
            want = naive_rules.funding_rate(pbar, 1e-4, 5e-4, 0.0) / 8
            # Hyperliquid pays on its oracle (the spot venues' weighted median): its own
            # index_price column
            assert p["price"] == steps["hl.index_price"].iloc[b - 1]
        else:
            want = naive_rules.funding_rate(pbar, 1e-4, 5e-4, 0.75 * specs[v].table.mmr[0])
            assert p["price"] == steps["bn.mark_price"].iloc[b - 1]
        assert p["rate"] == pytest.approx(want, rel=1e-12)
        prev[v] = b
    hl_rates = [p["rate"] for p in pays if p["venue"] == "hl"]
    assert max(hl_rates) > 2 * 1.25e-5  # a premium beyond the interest-rate band
    # each payment: the live positions at that moment, side by side, sum to zero with to_others
    for p, (v, rate, price, status, qty, entry) in zip(pays, snaps):
        sl = rows(state, v)
        live = np.isin(status[sl], (OPEN, HEAPED)) | ((status[sl] == TRIGGERED)
                                                      & ~np.isnan(entry[sl]))
        side = state.side[sl]
        for key, mask in (("longs_paid_usd", live & (side > 0)),
                          ("shorts_paid_usd", live & (side < 0))):
            want = math.fsum(float(side[i]) * float(qty[sl][i]) * price * rate
                             for i in np.flatnonzero(mask))
            assert p[key] == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert abs(p["longs_paid_usd"] + p["shorts_paid_usd"] + p["to_others_usd"]) < 1e-9
        assert p["longs_paid_usd"] != 0.0
    total = sum(s[k] for k in ("funding_paid_long_usd", "funding_paid_short_usd",
                               "funding_to_others_usd"))
    assert abs(total) < 1e-6
    for name in names:
        mine = [p for p in pays if p["venue"] == name]
        sv = s["venues"][name]
        for key in ("longs_paid_usd", "shorts_paid_usd", "to_others_usd"):
            summary_key = {"longs_paid_usd": "funding_paid_long_usd",
                           "shorts_paid_usd": "funding_paid_short_usd",
                           "to_others_usd": "funding_to_others_usd"}[key]
            assert sv[summary_key] == pytest.approx(math.fsum(p[key] for p in mine), rel=1e-12)
    # every position untouched by the run: its initial wallet less each payment, and the
    # liquidation price of that wallet from scratch
    rec = state.records
    touched = np.zeros(len(state.side), bool)
    touched[rec["pos"]] = True
    checked = 0
    for v, (spec, popu) in enumerate(zip(specs, res.populations)):
        sl = rows(state, v)
        tb = spec.table
        mine = [p for p in pays if p["venue"] == spec.name]
        assert mine
        for i in range(popu.n_ladder):
            g = sl.start + i
            if touched[g]:
                continue
            assert state.status[g] == OPEN
            s_i, q, ep = int(popu.side[i]), float(popu.qty[i]), float(popu.entry[i])
            wallet = float(popu.wallet[i])
            for p in mine:
                wallet -= s_i * q * p["price"] * p["rate"]
            assert state.wallet[g] == pytest.approx(wallet, rel=1e-9)
            lp = liq_price(s_i, q, ep, wallet, 0.0, 0.0, tb.floor, tb.cap, tb.mmr, tb.cum)[0]
            assert state.lp[g] == pytest.approx(lp, rel=1e-9, abs=1e-9)
            checked += 1
    assert checked > 500
    moved = np.abs(state.lp[:len(res.populations[0].lp)] - res.populations[0].lp)
    assert np.count_nonzero(moved > 1e-6 * res.populations[0].price_start) > 100


def test_pay_funding_reorders_triggers_and_heaps_and_skips_unfilled_entries():
    """A payment moves a liquidation price by ``payment / (1 - s * MMR)`` per coin, so by
    different amounts in different brackets: positions close in liquidation price but in far
    brackets swap places. The ladder triggers them in their new order and both heaps come back
    in order; a triggered entry whose order has not filled yet (no position) pays nothing and
    keeps its margin."""
    from cascade.engine import J_NREC, VenueParams, heap_push_nb, scan_triggers_nb
    from cascade.model.market import I_BWIN, I_MARKW, N_IPARAMS, N_PARAMS
    from cascade.model.population import Population
    from cascade.rules.brackets import bracket_table

    tb = bracket_table("binance", "BTCUSDT")
    price, entry = 100_000.0, 100_000.0
    # notionals in brackets with MMR 10 % ... 0.4 % (longs), 0.4 % ... 10 % (shorts), rows 20 USD
    # apart in liquidation price: a 1 % payment moves longs up 1004 to 1111 USD, shorts up 909
    # to 996 USD, so the rows that move most overtake their neighbours
    qty = np.array([1.0, 50.0, 200.0, 1500.0, 3000.0])
    q_all = np.concatenate([qty[::-1], qty, [2.0]])
    side = np.array([1] * 5 + [-1] * 5 + [-1], np.int8)  # and a conditional (breakdown) short
    want_lp = [price * (1 - 0.04 * s_) + 20.0 * (k % 5) for k, s_ in enumerate(side[:-1])]
    wallet = []
    for s_, q, lp in zip(side[:-1], q_all[:-1], want_lp):
        b = int(np.searchsorted(tb.cap, q * lp))
        wallet.append(lp * q * (tb.mmr[b] - s_) - tb.cum[b] + s_ * q * entry)
    lps = [liq_price(int(s_), float(q), entry, w, 0.0, 0.0, tb.floor, tb.cap, tb.mmr, tb.cum)[0]
           for s_, q, w in zip(side[:-1], q_all[:-1], wallet)]
    np.testing.assert_allclose(lps, want_lp, rtol=1e-12)
    n = len(side)
    popu = Population(side=side, qty=q_all, entry=np.r_[np.full(n - 1, entry), np.nan],
                      wallet=np.r_[wallet, 0.05], lp=np.r_[lps, np.nan],
                      bracket=np.zeros(n, np.int8), cross=np.zeros(n, bool),
                      leverage=np.full(n, 10.0, np.float32), n_long=5,
                      stop_idx=np.array([n - 1], np.int32), stop_px=np.array([99_000.0]),
                      n_long_stops=1, price_start=price, n_ladder=n - 1,
                      entry_margin=np.array([0.05]))
    iprm = np.zeros((1, N_IPARAMS), np.int64)
    iprm[0, I_MARKW] = iprm[0, I_BWIN] = 1
    state = EngineState.for_venues([popu], [tb], 1, np.zeros((1, N_PARAMS)), iprm, [0.0])
    # rows 1, 3 (longs), 6 and 9 (shorts) were cut in part: heaped; the entry is triggered
    for i in (1, 3, 6, 9):
        state.status[i] = HEAPED
        key, sgn = (J_HL, -1.0) if side[i] > 0 else (J_HS, 1.0)
        heap = state.heap_l if side[i] > 0 else state.heap_s
        state.ist[0, key] = heap_push_nb(heap, int(state.ist[0, key]), i, state.lp, sgn)
    state.status[n - 1] = TRIGGERED
    check_ladder_and_heaps(state, 0)
    paid = state.pay_funding(0, 0.01, price)
    check_ladder_and_heaps(state, 0)
    # the payments: every position but the unfilled entry
    assert paid["longs_paid_usd"] == pytest.approx(qty.sum() * price * 0.01, rel=1e-12)
    assert paid["shorts_paid_usd"] == pytest.approx(-qty.sum() * price * 0.01, rel=1e-12)
    assert state.wallet[n - 1] == 0.05
    for i in range(n - 1):
        w = wallet[i] - side[i] * q_all[i] * price * 0.01
        assert state.wallet[i] == pytest.approx(w, rel=1e-12)
        assert state.lp[i] == pytest.approx(liq_price(int(side[i]), float(q_all[i]), entry, w,
                                                      0.0, 0.0, tb.floor, tb.cap, tb.mmr,
                                                      tb.cum)[0], rel=1e-12)
    # the order changed: the 10 % MMR long (row 0) now has the highest liquidation price,
    # the 5 % MMR short (row 8) passed the 2 % one (row 7); in the heaps, row 1 stays on top
    # of the longs and row 9 (10 % MMR) passes row 6 (1 %) at the top of the shorts
    assert state.lp[0] > state.lp[4] and state.lp[7] > state.lp[8]
    assert state.heap_l[0] == 1 and state.lp[1] > state.lp[3]
    assert state.heap_s[0] == 9 and state.lp[9] < state.lp[6]
    # no row was re-sorted, yet a mark beyond every row triggers the ladder's open rows in the
    # order of their new liquidation prices (longs down, shorts up), then the heaps'
    pos, lad, tab, vs = state._venue_views(0)
    vp = VenueParams(np.zeros(N_PARAMS), iprm[0])
    for mark, want_side in ((1.0, 1), (1e9, -1)):
        r0 = int(vs.ist[J_NREC])
        scan_triggers_nb(0, mark, mark, pos, lad, tab, vp, vs)
        got = state.venue_records(0)["pos"][r0:].tolist()
        ladder = [i for i in got if i < n - 1 and state.side[i] == want_side
                  and i not in (1, 3, 6, 9)]
        new_order = sorted(ladder, key=lambda i: -want_side * state.lp[i])
        assert ladder == new_order
        assert ladder != sorted(ladder, key=lambda i: -want_side * lps[i])
        assert got[len(ladder):] == ([1, 3] if want_side > 0 else [9, 6])


# ----------------------------------------------------------------------- a market in a storm
def storm_market():
    return parse_scenario(storm_raw(), source="<storm>")


def storm_raw():
    """Partial liquidations of both kinds (bn steps down a tier, hl cuts 20 %), ADL on both
    (small or empty funds), funding on both at 21:00, conditional entries, latency on bn."""
    raw = market(minutes=20, positions=800)
    raw["population"].update(ENTRIES)
    venue(raw, "bn").update(partial="step_down", insurance_fund_usd=1e3, funding_interval_h=1.0,
                            latency_s=1.0)
    raw["wicks"] = [{"target": "hl", "start": T0 + 3 * MIN, "duration_s": 2.0, "depth_pct": 5.0},
                    {"target": "index", "start": T0 + 3 * MIN, "duration_s": 2.0,
                     "depth_pct": 5.0}]
    raw["engine"] = {"max_iterations": 1000}
    return raw


# extra funding payments far beyond any real rate, made between steps: they move liquidation
# prices by different amounts across brackets, so the ladders and heaps must be re-sorted
SHOCKS = {300: 0.004, 420: -0.006, 650: 0.005, 900: -0.004, 1150: -0.1}


def shocked(sc, each_step=None, populations=None, shocks=None):
    """Run ``sc`` one step at a time, paying the ``shocks`` ({step: rate}, default SHOCKS) on
    every venue (on its last mark) before their steps; ``each_step(state, t, advance)`` as in
    :func:`run`."""
    shocks = SHOCKS if shocks is None else shocks

    def step(state, t, advance):
        if t in shocks:
            for v in range(state.lay.shape[0]):
                state.pay_funding(v, shocks[t], float(state.outs[v, t - 1, C_MARK]))
                check_ladder_and_heaps(state, v)
        if each_step is None:
            advance()
        else:
            each_step(state, t, advance)

    return run(sc, populations=populations, each_step=step)


@pytest.mark.parametrize("shock", [False, True], ids=["scheduled-funding", "funding-shocks"])
def test_no_trigger_is_ever_missed(shock):
    """After every step (the engine driven one step at a time): every open or heaped position
    whose liquidation price (as it stood when the step began, after any funding) the venue's
    final mark crossed was triggered in that step; every trigger was crossed at its own mark
    and was open; and no position left open after the step is beyond the mark unless this
    step's fills changed its liquidation price (a partial, an ADL cut, an entry)."""
    sc = storm_market()
    prm, _ = venue_parameters(sc, venue_specs(sc))
    nv = prm.shape[0]
    seen = {"steps": 0, "triggers": 0, "heaped": 0, "in_heaps": 0}
    low, high = [np.inf] * nv, [-np.inf] * nv
    levels = []  # per venue: {row: (level of its order on last price, sells on a fall)}
    for popu in build_populations(sc):
        sells = np.arange(len(popu.stop_idx)) < popu.n_long_stops
        levels.append({int(i): (float(px), bool(s))
                       for i, px, s in zip(popu.stop_idx, popu.stop_px, sells)})

    def check(state, t, advance):
        lp0, status0 = state.lp.copy(), state.status.copy()
        nrec0 = [len(state.venue_records(v)) for v in range(nv)]
        advance()
        seen["steps"] += 1
        for v in range(nv):
            sl = rows(state, v)
            eq = prm[v, P_LIQ_EQ] != 0
            mark = state.outs[v, t, C_MARK]
            last = state.outs[v, t, C_LAST]
            assert state.outs[v, t, C_ITER] < 1000
            side = state.side[sl]
            open0 = np.isin(status0[sl], (OPEN, HEAPED))
            new = state.venue_records(v)[nrec0[v]:]
            trig = new[np.isin(new["kind"], LIQ_KINDS) & (new["trigger_step"] == t)]
            pos = trig["pos"]
            # every trigger: open when the step began, beyond the mark it was triggered at
            assert open0[pos].all()
            assert crossed(side[pos], lp0[sl][pos], trig["trigger_price"], eq).all()
            assert len(set(pos.tolist())) == len(pos)
            # every position beyond the final mark was triggered
            missed = open0 & crossed(side, lp0[sl], mark, eq)
            missed[pos] = False
            assert not missed.any(), (v, t, np.flatnonzero(missed))
            # after the fills: beyond the mark only with a liquidation price changed this step
            lp1 = state.lp[sl]
            open1 = np.isin(state.status[sl], (OPEN, HEAPED))
            left = open1 & crossed(side, lp1, mark, eq) & (lp1 == lp0[sl])
            assert not left.any(), (v, t, np.flatnonzero(left))
            # orders on last price fire on their level: sells at or below it, buys at or above
            orders = new[np.isin(new["kind"], (KIND_STOP, KIND_ENTRY))]
            for r in orders:
                px, sells = levels[v][int(r["pos"])]
                assert (px >= r["trigger_price"]) if sells else (px <= r["trigger_price"])
            low[v], high[v] = min(low[v], last), max(high[v], last)
            seen["triggers"] += len(trig)
            seen["in_heaps"] += check_ladder_and_heaps(state, v)
            seen["heaped"] += int(np.count_nonzero(state.status[sl] == HEAPED))

    res = shocked(sc, check) if shock else run(sc, each_step=check)
    assert seen["steps"] == sc.n_steps
    s = res.summary
    for name in ("bn", "hl"):
        assert s["venues"][name]["partial_liquidations"] > 0
        assert s["venues"][name]["adl_count"] > 0
    assert len(s["funding_payments"]) == 2
    assert seen["triggers"] > 100 and seen["heaped"] > 0 and seen["in_heaps"] > 0
    # stops: every stop-loss whose level last crossed fired, unless a liquidation had the
    # position (its orders are cancelled) or it was closed before
    state = res.state
    for v, popu in enumerate(res.populations):
        rec = state.venue_records(v)
        stopped = set(rec["pos"][rec["kind"] == KIND_STOP].tolist())
        triggered = set(rec["pos"][np.isin(rec["kind"], LIQ_KINDS + (KIND_ADL,))].tolist())
        idx, px = popu.stop_idx, popu.stop_px
        sells = np.arange(len(idx)) < popu.n_long_stops
        hit = np.where(sells, px >= low[v], px <= high[v]) & (idx < popu.n_ladder)
        for i in idx[hit].tolist():
            assert i in stopped or i in triggered, (v, i)
    # checking every step changes nothing; without shocks neither does driving one at a time
    once = shocked(sc, populations=res.populations) if shock else \
        run(sc, populations=res.populations)
    np.testing.assert_array_equal(once.state.outs, state.outs)
    for field in RECORD_DTYPE.names:
        np.testing.assert_array_equal(once.records[field], res.records[field])


def ioc_raw():
    """IOC orders on bn against a thin book, both funds small: some orders fill in part, some
    not at all; bn's fund and hl's vault take the rest over, offload it, reach their caps, and
    ADL closes what is beyond."""
    raw = market()
    venue(raw, "bn")["insurance_fund_usd"] = 3e5
    venue(raw, "hl")["insurance_fund_usd"] = 1e5
    raw["flows"][0]["usd_per_min"] = 3e7
    return raw


@pytest.mark.parametrize("shock", [False, True, "ioc", "market", "takeover"],
                         ids=["scheduled-funding", "funding-shocks", "ioc-cap", "market-orders",
                              "takeover"])
def test_accounting_balances_to_the_cent(shock):
    """Per venue and in total: what the modelled traders lost (initial wallets and entry margins,
    less the wallets still open and what closed positions got back) plus the bad debt equals
    the insurance funds' change, plus what the other side of every closing trade gained against
    the trader's entry (the market at each fill, the vault at a backstop, the ADL'd positions at
    the ADL price, and the liquidated position towards them), plus the funding paid to the
    unmodelled counterparties."""
    if shock == "ioc":
        sc = parse_scenario(ioc_raw(), source="<ioc>")
    elif shock == "takeover":
        raw = ioc_raw()
        venue(raw, "bn")["liquidation_order"] = "takeover"
        sc = parse_scenario(raw, source="<takeover>")
    elif shock == "market":
        raw = storm_raw()
        for v in raw["venues"]:
            v["liquidation_order"] = "market"
        sc = parse_scenario(raw, source="<storm, market orders>")
    else:
        sc = storm_market()
    res = shocked(sc) if shock is True else run(sc)
    state, s = res.state, res.summary
    paid = s["funding_paid_long_usd"] + s["funding_paid_short_usd"]
    assert abs(paid) > (1e4 if shock is True else 0.0)
    real_total = unreal_total = 0.0
    specs = venue_specs(sc)
    totals = {"lost": [], "legs": []}
    for v, (spec, popu) in enumerate(zip(specs, res.populations)):
        sl = rows(state, v)
        rec = state.venue_records(v)
        done = rec[~np.isnan(rec["fill_price"])]
        side, qty, entry, wallet, status = (getattr(state, k)[sl] for k in
                                            ("side", "qty", "entry", "wallet", "status"))
        sv = s["venues"][spec.name]
        assert sv["adl_count"] > 0 and (shock in ("ioc", "takeover")
                                        or sv["partial_liquidations"] > 0)
        # what the traders put in: wallets at the start, margins of the entries opened
        put_in = [float(w) for w in popu.wallet[:popu.n_ladder]]
        ent = done[done["kind"] == KIND_ENTRY]
        n0 = popu.n_ladder
        put_in += [float(popu.qty[i]) * float(f) * float(popu.entry_margin[i - n0])
                   for i, f in zip(ent["pos"], ent["fill_price"])]
        holding = np.isin(status, (OPEN, HEAPED)) | ((status == TRIGGERED) & ~np.isnan(entry))
        kept = [float(w) for w in wallet[holding]]
        back = []  # what closed positions got back: a stop's or a full ADL's positive equity
        for r in done[done["kind"] == KIND_STOP]:
            i = r["pos"]
            back.append(max(wallet[i] + side[i] * qty[i] * (r["fill_price"] - entry[i]), 0.0))
        for r in done[(done["kind"] == KIND_ADL)]:
            i = r["pos"]
            if status[i] == DELEVERAGED and r["qty"] == qty[i]:
                back.append(max(wallet[i] + side[i] * qty[i] * (r["fill_price"] - entry[i]), 0.0))
        lost = math.fsum(put_in) - math.fsum(kept) - math.fsum(back)
        # the other side of every closing trade, against the trader's entry
        legs = []
        for r in done:
            i, k = r["pos"], r["kind"]
            sgn, ep = float(side[i]), float(entry[i])
            if k == KIND_ENTRY:
                continue
            if k in (KIND_STOP,):
                legs.append(sgn * qty[i] * (ep - r["fill_price"]))
            elif k == KIND_PARTIAL or k == KIND_ADL:
                legs.append(sgn * r["qty"] * (ep - r["fill_price"]))
            elif k == KIND_LIQ and spec.liquidation_order in (LIQORD_IOC, LIQORD_TAKEOVER):
                # the book above BP, the fund at BP, ADL'd positions at BP
                qf, bp = r["ioc_qty"], ep - sgn * float(wallet[i]) / float(qty[i])
                legs.append(sgn * qf * (ep - r["fill_price"]))
                legs.append(sgn * r["fund_qty"] * (ep - bp))
                legs.append(sgn * r["adl_qty"] * (ep - r["adl_price"]) if r["adl_qty"] else 0.0)
                assert r["fund_qty"] + r["adl_qty"] == pytest.approx(qty[i] - qf, rel=1e-12)
            else:  # whole liquidation or backstop: the market or vault, and ADL'd positions
                adl = r["adl_qty"]
                legs.append(sgn * (qty[i] - adl) * (ep - r["fill_price"]))
                if adl > 0:
                    legs.append(sgn * adl * (ep - r["adl_price"]))
        # the fund's inventory replayed from the records and columns alone: its value at the
        # mark is in the fund's change; the book holds the other side of it (-unreal) and
        # took the other side of its offloads against its entry (-real)
        ledger = fund_ledger(rec, side, qty, entry, wallet, res.steps, f"{spec.name}.")
        mark_end = res.steps[f"{spec.name}.mark_price"].iloc[-1]
        unreal = ledger.inv * mark_end - ledger.cost
        assert abs(ledger.real - sv["fund_realised_pnl_usd"]) < 0.01
        assert abs(ledger.inv * mark_end - sv["fund_inventory_end_usd"]) < 0.01
        assert abs(ledger.cost - sv["fund_inventory_cost_usd"]) < 0.01
        real_total += ledger.real
        unreal_total += unreal
        fund_change = sv["fund_equity_end_usd"] - sv["insurance_fund_start_usd"]
        cash_change = sv["insurance_fund_end_usd"] - sv["insurance_fund_start_usd"]
        assert abs(fund_change - cash_change - unreal) < 0.01
        funding_out = -sv["funding_to_others_usd"]
        right = fund_change + math.fsum(legs) - ledger.real - unreal + funding_out
        assert abs(lost + sv["bad_debt_usd"] - right) < 0.01, (spec.name, lost, right)
        # the funds: every booked delta and realised PnL, whatever the order, less what they
        # could not pay
        deltas = math.fsum(done["fund_delta"]) + ledger.real
        assert abs(deltas + sv["bad_debt_usd"] - cash_change) < 0.01
        if shock == "market":
            assert sv["takeover_usd"] == 0 and sv["fund_inventory_peak_usd"] == 0
        elif shock in ("ioc", "takeover"):
            assert sv["takeover_usd"] > 0 and sv["fund_offload_usd"] > 0
            assert ledger.real != 0
        # open interest at the end is what is still held
        last = res.steps.iloc[-1]
        oi_qty = last[f"{spec.name}.open_interest_usd"] / last[f"{spec.name}.mark_price"]
        assert oi_qty == pytest.approx(math.fsum(qty[holding]), rel=1e-9)
        # ADL: the coin handed by liquidated positions is the coin the ADL'd positions closed
        adl = done[done["kind"] == KIND_ADL]
        handed = done["adl_qty"][np.isin(done["kind"], (KIND_LIQ, KIND_BACKSTOP))]
        assert math.fsum(handed) == pytest.approx(math.fsum(adl["qty"]), rel=1e-12)
        assert sv["adl_notional_usd"] == pytest.approx(
            math.fsum(adl["qty"] * adl["fill_price"]), rel=1e-9)
        # statuses agree with the records
        assert set(np.flatnonzero(status == LIQUIDATED)) == set(
            done["pos"][np.isin(done["kind"], (KIND_LIQ, KIND_BACKSTOP))].tolist())
        assert set(np.flatnonzero(status == STOPPED)) == set(
            done["pos"][done["kind"] == KIND_STOP].tolist())
        totals["lost"].append(lost)
        totals["legs"] += legs
    # the market as a whole, from the summary's totals
    fund_change = s["insurance_fund_end_usd"] - s["insurance_fund_start_usd"]
    lost = math.fsum(totals["lost"]) + s["bad_debt_usd"]
    right = fund_change + math.fsum(totals["legs"]) - s["funding_to_others_usd"] - real_total
    assert abs(lost - right) < 0.01, (lost, right)
    assert abs(s["fund_equity_end_usd"] - s["insurance_fund_end_usd"] - unreal_total) < 0.01
    assert s["adl_count"] > 0
    if shock != "ioc":
        assert s["partial_liquidations"] > 0


# --------------------------------------------------------------------------------- arbitrage
@pytest.mark.parametrize("delay_s", [1.0, 3.0, 8.0])
def test_selling_on_one_venue_reaches_the_other_after_the_arbitrage_delay(delay_s):
    """Selling on bn only, against a control run without it (same seed, so the same background
    noise on both venues): hl's last price is bit for bit the control's until the arbitrage
    orders sent at the end of the first selling step arrive, ``delay_s`` later, and moves then
    (low leverage, no stops: nothing else can move hl's book before)."""
    raw = market(minutes=3, positions=400)
    raw["population"].update(stop_loss_share=0.0, leverages=[2.0, 3.0],
                             leverage_weights=[0.5, 0.5])
    raw["arbitrage"] = {"delay_s": delay_s, "band_bps": 1.0}
    at = 60
    sell = {"start": T0 + at * dt.timedelta(seconds=1), "duration_min": 0.5,
            "usd_per_min": 2e7, "side": "sell", "venue": "bn"}
    control = copy.deepcopy(raw)
    control["flows"] = []
    raw["flows"] = [sell]
    with_flow = simulate(parse_scenario(raw, source="<arb>"))
    without = simulate(parse_scenario(control, source="<arb control>"))
    d = int(delay_s)
    bn, bn0 = with_flow.steps["bn.last_price"].to_numpy(), without.steps["bn.last_price"]
    hl, hl0 = with_flow.steps["hl.last_price"].to_numpy(), without.steps["hl.last_price"]
    moved_bn = np.flatnonzero(bn != bn0.to_numpy())
    assert moved_bn[0] == at
    assert bn[at] < bn0.iloc[at] and bn[at + 29] < 0.995 * bn0.iloc[at + 29]
    # the other venue: bit for bit the control run until the arbitrage orders arrive
    np.testing.assert_array_equal(hl[:at + d], hl0.to_numpy()[:at + d])
    moved = np.flatnonzero(hl != hl0.to_numpy())
    assert moved[0] == at + d
    assert hl[at + d] < hl0.iloc[at + d]
    arb = with_flow.steps["hl.arb_flow_usd"].to_numpy()
    assert (arb[:at + d] == without.steps["hl.arb_flow_usd"].to_numpy()[:at + d]).all()
    assert arb[at + d] < 0  # arbitrageurs sell hl, where the price is higher
    assert with_flow.steps["bn.arb_flow_usd"].iloc[at + d] > 0
    # they close the gap without overshooting it (orders in flight count): the venues never
    # drift far apart, and a minute after the selling they are within a couple of bands
    gap = np.log(hl / bn)
    assert np.abs(gap).max() < 50e-4
    assert np.abs(gap[at + 90:]).max() < 3e-4
    assert with_flow.summary["accounts_liquidated"] == 0


# ------------------------------------------------------------------------- slow reference
def _naive_cases():
    a = market()
    # counter-trend orders both ways, news impact that stays, forced-flow thinning (issue 15)
    a["market"].update(dip_buy_threshold_pct=0.5, news_permanent_share=0.9, permanent_share=0.1,
                       depth_liq_sensitivity=50.0, depth_liq_threshold=2e-3)
    b = market()
    b["population"].update(ENTRIES)
    venue(b, "bn").update(partial="step_down", latency_s=2.0, mark="last_average",
                          funding_interval_h=1.0)
    venue(b, "hl").update(latency_s=1.0)
    b["arbitrage"] = {"delay_s": 3.0, "capacity_usd_per_s": 2e5, "band_bps": 1.0}
    c = market()
    venue(c, "bn").update(partial="hyperliquid", funding_interval_h=1.0, insurance_fund_usd=1e4)
    venue(c, "hl").update(mark="binance", partial="step_down")
    c["wicks"] = [{"target": "bn", "start": T0 + 7 * MIN, "duration_s": 3.0, "depth_pct": 3.0},
                  {"target": "index", "start": T0 + 8 * MIN, "duration_s": 2.0, "depth_pct": 2.0}]
    c["engine"] = {"max_iterations": 2}
    d = market()
    d["population"].update(ENTRIES)
    venue(d, "hl").update(latency_s=3.0)
    d["flows"] = [{"start": T0 + 9 * MIN + 58 * dt.timedelta(seconds=1), "duration_min": 1 / 60,
                   "usd_per_min": 2.4e9, "side": "sell"}]
    e = market(positions=800)
    e["flows"] = e["flows"][1:]  # the squeeze, part of it on the spot venues (flow_share)
    e["venues"].append({"name": "by", "rules": "binance", "population_share": 0.2,
                        "depth_share": 0.2, "partial": "step_down", "adl": False,
                        "insurance_fund_usd": 1e5})
    venue(e, "bn").update(population_share=0.5, depth_share=0.5)
    venue(e, "hl").update(population_share=0.3, depth_share=0.3)
    w = T0 + 3 * MIN
    e["wicks"] = [{"target": "hl", "start": w, "duration_s": 2.0, "depth_pct": 4.0},
                  {"target": "index", "start": w, "duration_s": 2.0, "depth_pct": 4.0}]
    e["spot"][1]["flow_share"] = 0.2
    f = storm_raw()
    venue(f, "bn")["latency_s"] = 0.0
    venue(f, "hl")["latency_s"] = 1.0
    g = market()
    g["scenario"]["step_s"] = 2.0
    g["engine"] = {"feedback": False}
    venue(g, "bn").update(latency_s=4.0, funding_interval_h=1.0)
    g["arbitrage"] = {"delay_s": 6.0}
    h = storm_raw()
    for v in h["venues"]:
        v["liquidation_order"] = "market"
    takeover = ioc_raw()
    venue(takeover, "bn")["liquidation_order"] = "takeover"  # Bybit / OKX: the fund takes all
    fair = copy.deepcopy(a)  # counter-trend traders lean against the transient impact only
    fair["market"].update(dip_buy_reference="fair", permanent_depth="normal")
    return {"ioc_takeover_offload_cap_adl": ioc_raw(), "takeover_offload_cap_adl": takeover,
            "market_orders_storm": h,
            "binance_and_hyperliquid": a, "fair_price_buyers_permanence_at_full_depth": fair,
            "entries_latency_step_down_last_average": b,
            "wicks_iteration_cap_swapped_rules": c, "entries_pending_at_funding": d,
            "three_venues_hyperliquid_adl": e, "storm_with_funding_shocks": storm_raw(),
            "hyperliquid_latency_backstop_adl": f, "two_second_steps_no_feedback": g}


NAIVE_CASES = _naive_cases()
ROW_FIELDS = ("qty", "wallet", "lp", "entry")


def assert_matches_naive(sc, pops, shocks=None):
    """Run ``sc`` on ``pops`` in the engine and in the slow reference (with funding ``shocks``
    paid on every venue, see :func:`shocked`) and check they agree: every per-step output, every
    record (positions, kinds and steps exactly; amounts to 1e-9), every row's status, size,
    wallet, liquidation price and entry, each venue's counts and fund, and every funding
    payment. Returns (the engine's result, its funding payments)."""
    ref = naive.run(sc, pops, shocks)
    res = shocked(sc, populations=pops, shocks=shocks) if shocks else \
        run(sc, populations=pops)
    state = res.state
    cols = {c: k for k, c in enumerate(COLUMNS)}
    for v, ven in enumerate(ref["venues"]):
        out = state.outs[v]
        for col, k in cols.items():
            want = np.array([o[col] for o in ven.out], float)
            # arbitrage sizes are depth x (gap - band): the last bits of two prices, times
            # 1e4; the reference finds an IOC order's limit by bisection, not the closed form
            atol = 1e-4 if col == "arb_flow_usd" else 1e-6
            np.testing.assert_allclose(out[:, k], want, rtol=1e-9, atol=atol,
                                       err_msg=f"{sc.name} {ven.name} {col}")
        rec = state.venue_records(v)
        assert len(rec) == len(ven.records), (ven.name, len(rec), len(ven.records))
        for field in ("pos", "kind", "trigger_step", "exec_step"):
            np.testing.assert_array_equal(rec[field], [r[field] for r in ven.records],
                                          err_msg=f"{sc.name} {ven.name} {field}")
        for field in ("trigger_price", "fill_price", "fund_delta", "fee", "qty", "adl_qty",
                      "adl_price", "ioc_qty", "ioc_fill", "fund_qty"):
            np.testing.assert_allclose(rec[field], [r[field] for r in ven.records], rtol=1e-9,
                                       atol=1e-6, err_msg=f"{sc.name} {ven.name} {field}")
        sl = rows(state, v)
        np.testing.assert_array_equal(state.status[sl], ven.status)
        for field in ROW_FIELDS:
            np.testing.assert_allclose(getattr(state, field)[sl], getattr(ven, field),
                                       rtol=1e-9, atol=1e-9, err_msg=f"{sc.name} {ven.name} {field}")
        sv = res.summary["venues"][ven.name]
        assert sv["adl_count"] == ven.adl_n
        assert sv["partial_liquidations"] == ven.n_partial
        assert sv["insurance_fund_end_usd"] == pytest.approx(ven.fund, rel=1e-9, abs=1e-6)
        assert sv["funding_paid_long_usd"] == pytest.approx(ven.paid_long, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(res.steps["index_price"], ref["index"], rtol=1e-12)
    got = res.summary["funding_payments"]
    assert [(p["step"], p["venue"]) for p in got] == [(p["step"], p["venue"])
                                                     for p in ref["funding"]]
    for p, q in zip(got, ref["funding"]):
        for key in ("rate", "price", "longs_paid_usd", "shorts_paid_usd", "to_others_usd"):
            assert p[key] == pytest.approx(q[key], rel=1e-9, abs=1e-9), (sc.name, key)
    return res, got


@pytest.mark.parametrize("case", list(NAIVE_CASES))
def test_engine_matches_the_slow_reference(case):
    sc = parse_scenario(NAIVE_CASES[case], source=f"<{case}>")
    shocks = SHOCKS if case == "storm_with_funding_shocks" else None
    res, got = assert_matches_naive(sc, build_populations(sc), shocks)
    state = res.state
    # each case makes its features happen
    s, sv = res.summary, res.summary["venues"]
    recs = res.records
    assert got, "funding paid"
    if case == "storm_with_funding_shocks":  # the -10 % shock left the runs' window
        assert (state.ist[:, J_FBASE] > 0).all()
    if case == "binance_and_hyperliquid":
        assert sv["bn"]["adl_count"] > 0 and sv["hl"]["partial_liquidations"] > 0
        assert sv["hl"]["backstop_usd"] > 0
        assert (res.steps["bn.mark_price"] != res.steps["bn.last_price"]).mean() > 0.5
    elif case == "fair_price_buyers_permanence_at_full_depth":
        assert (res.steps["bn.dip_flow_usd"] > 0).any() and (res.steps["hl.dip_flow_usd"] > 0).any()
        assert (res.steps["bn.depth_usd"] < 0.5 * res.steps["bn.depth_usd"].iloc[0]).any()
    elif case == "entries_latency_step_down_last_average":
        assert sv["bn"]["partial_liquidations"] > 0 and sv["bn"]["adl_count"] > 0
        assert s["entries_opened"] > 0
        assert np.isclose(np.abs(res.steps["hl.arb_flow_usd"]), 2e5).any()  # capacity binds
        assert (recs["exec_step"] > recs["trigger_step"]).any()
    elif case == "wicks_iteration_cap_swapped_rules":
        assert (res.steps["iterations"] == 2).any()
        assert sv["bn"]["partial_liquidations"] > 0 and sv["bn"]["backstop_usd"] > 0
    elif case == "entries_pending_at_funding":
        hl = state.venue_records(1)
        pend = hl[(hl["kind"] == KIND_ENTRY) & (hl["trigger_step"] < 600)
                  & (hl["exec_step"] >= 600)]
        assert len(pend) > 5  # entries triggered but not filled when funding was paid
    elif case == "storm_with_funding_shocks":
        for name in ("bn", "hl"):
            assert sv[name]["adl_count"] > 0 and sv[name]["partial_liquidations"] > 0
        assert abs(s["funding_paid_long_usd"]) > 1e4
    elif case == "hyperliquid_latency_backstop_adl":
        # backstops a step after their trigger, still covered by ADL at the mark before it
        hl = state.venue_records(1)
        late = hl[(hl["kind"] == KIND_BACKSTOP) & (hl["exec_step"] == hl["trigger_step"] + 1)]
        assert (late["adl_qty"] > 0).sum() > 0
        assert sv["hl"]["bad_debt_usd"] < 1.0
    elif case == "three_venues_hyperliquid_adl":
        assert sv["hl"]["adl_count"] > 0 and sv["by"]["accounts_liquidated"] > 0
        assert sv["by"]["adl_count"] == 0
        assert res.steps["by.exo_flow_usd"].sum() > 0
    elif case == "takeover_offload_cap_adl":
        bn = state.venue_records(0)
        liq = bn[bn["kind"] == KIND_LIQ]
        # no liquidation meets the book: the fund takes each over at the bankruptcy price, up to
        # its cap, ADL beyond; the fund's offloads are what reaches the book
        assert len(liq) > 0 and (liq["ioc_qty"] == 0).all()
        np.testing.assert_allclose((liq["fund_qty"] + liq["adl_qty"]), liq["qty"], rtol=1e-12)
        assert (liq["adl_qty"] > 0).any() and sv["bn"]["fund_offload_usd"] > 0
    elif case == "ioc_takeover_offload_cap_adl":
        bn, hl = state.venue_records(0), state.venue_records(1)
        liq = bn[bn["kind"] == KIND_LIQ]
        # a thin book fills some orders in part and some not at all; the fund takes the rest
        assert ((liq["ioc_qty"] > 0) & (liq["ioc_qty"] < liq["qty"] * (1 - 1e-9))).any()
        assert (liq["ioc_qty"] <= 0).any() and (liq["fund_qty"] > 0).any()
        # ... offloads it, reaches its cap, and ADL closes the rest at the bankruptcy price
        for name, r in (("bn", liq), ("hl", hl[hl["kind"] == KIND_BACKSTOP])):
            assert sv[name]["takeover_usd"] > 0 and sv[name]["fund_offload_usd"] > 0
            assert (r["adl_qty"] > 0).any(), name
        capped = liq[liq["adl_qty"] > 0]
        np.testing.assert_allclose(capped["adl_price"], naive_bp(state, 0, capped), rtol=1e-12)
        # an IOC order never fills beyond its limit
        filled = liq[liq["ioc_qty"] > 0]
        bp = naive_bp(state, 0, filled)
        sd = state.side[rows(state, 0)][filled["pos"]]
        assert np.all(np.where(sd > 0, filled["ioc_fill"] >= bp, filled["ioc_fill"] <= bp))
        # steps where the fund only offloads, with no liquidation
        st = res.steps
        assert ((st["bn.fund_offload_usd"] > 0) & (st["bn.liq_count"] == 0)).any()
        # the inventory is capped at the fund's balance (at the takeover price) when ADL can
        # take the rest: its notional never exceeds the fund by more than a step's moves
        inv = st["bn.fund_inventory_usd"].abs()
        assert (inv <= 1.05 * st["bn.insurance_fund_usd"] + 1.0).all()
    elif case == "market_orders_storm":
        for name in ("bn", "hl"):
            assert sv[name]["takeover_usd"] == 0 and sv[name]["adl_count"] > 0
    elif case == "two_second_steps_no_feedback":
        assert s["accounts_liquidated"] > 0 and (res.steps["forced_flow_usd"] != 0).any()
        assert len(got) == 2 and got[0]["step"] == 300


def naive_bp(state, v, recs):
    """Bankruptcy prices of records' positions from the final rows (closed rows keep theirs)."""
    sl = rows(state, v)
    i = recs["pos"]
    side, qty, entry, wallet = (getattr(state, k)[sl][i] for k in
                                ("side", "qty", "entry", "wallet"))
    return np.array([naive_engine.bankruptcy(int(s_), float(q), float(e), float(w))
                     for s_, q, e, w in zip(side, qty, entry, wallet)])


# ---------------------------------------------------------------------------- schema errors
def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in value) + "]"
    raise TypeError(type(value))


def write_toml(raw: dict, path) -> None:
    lines = []
    for section, body in raw.items():
        for table in (body if isinstance(body, list) else [body]):
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items() if v is not None]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def _shares(raw):
    venue(raw, "hl")["population_share"] = 0.3


def _flow_venue(raw):
    raw["flows"][1]["venue"] = "okx"


def _wick_target(raw):
    raw["wicks"] = [{"target": "hyperliquid", "start": T0 + MIN, "duration_s": 1.0,
                     "depth_pct": 2.0}]


def _both(raw):
    raw["venue"] = {"name": "binance", "symbol": "BTCUSDT"}


def _spot_alone(raw):
    _both(raw)
    del raw["venues"]
    raw["flows"] = []


def _same_names(raw):
    venue(raw, "hl")["name"] = "bn"


def _flow_venue_alone(raw):
    _both(raw)
    for key in ("venues", "spot"):
        del raw[key]
    raw["flows"][0]["venue"] = "bn"


def _wick_outside(raw):
    raw["wicks"] = [{"target": "bn", "start": T0 - MIN, "duration_s": 1.0, "depth_pct": 2.0}]


def _latency(raw):
    venue(raw, "hl")["latency_s"] = 1.5


def _hl_leverage(raw):
    venue(raw, "hl")["leverages"] = [3.0, 50.0]
    venue(raw, "hl")["leverage_weights"] = [0.5, 0.5]


def _hl_weights(raw):
    venue(raw, "hl")["leverages"] = [3.0, 20.0]
    venue(raw, "hl")["leverage_weights"] = [1.0]


def _spot_flow(raw):
    for sp in raw["spot"]:
        sp["flow_share"] = 0.5


@pytest.mark.parametrize("edit,needles", [
    (_same_names, ["[[venues]] #2 name", "expected a unique name", "got 'bn'"]),
    (_flow_venue_alone, ["[[flows]] #1 venue",
                         "expected no venue in a scenario without [[venues]]", "got 'bn'"]),
    (_wick_outside, ["[[wicks]] #1 start", "expected a time inside the window"]),
    (_latency, ["[[venues]] #2 (hl) latency_s", "expected a multiple of step_s", "got 1.5"]),
    (_hl_leverage, ["[[venues]] #2 (hl) leverages", "expected leverages up to the bracket maximum",
                    "40x of hyperliquid", "got 50"]),
    (_hl_weights, ["[[venues]] #2 (hl) leverage_weights", "expected 2 weights", "got 1"]),
    (_spot_flow, ["[[spot]] flow_share", "expected shares summing to less than 1", "got 1"]),
    (_shares, ["[[venues]] population_share", "expected shares summing to 1 over the venues",
               "got 0.9"]),
    (_flow_venue, ["[[flows]] #2 venue", "expected one of ['bn', 'hl']", "got 'okx'"]),
    (_wick_target, ["[[wicks]] #1 target", "expected one of ['bn', 'hl', 'index']",
                    "got 'hyperliquid'"]),
    (_both, ["[venue]", "expected either [venue] (one venue) or [[venues]] (several), not both"]),
    (_spot_alone, ["[[spot]]", "expected [[venues]] to be declared too"]),
], ids=["same-names", "flow-venue-alone", "wick-outside", "latency", "hl-leverage",
        "hl-weights", "spot-flow", "shares", "flow-venue", "wick-target", "venue-and-venues", "spot-without-venues"])
def test_schema_errors_name_file_key_and_expectation(tmp_path, edit, needles):
    good = market()
    path = tmp_path / "good.toml"
    write_toml(good, path)
    assert [v.name for v in load_scenario(path).venues] == ["bn", "hl"]
    bad = copy.deepcopy(good)
    edit(bad)
    path = tmp_path / "bad.toml"
    write_toml(bad, path)
    with pytest.raises(CascadeError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert "\n" not in msg


# ------------------------------------------------------------------------- replay, sensitivity
def test_replay_of_a_two_venue_market_liquidates_exactly_the_positions_beyond_the_path():
    """Every venue follows the kline path: on each venue exactly the positions whose
    liquidation price the path's low (longs) or high (shorts) crossed are liquidated (partial
    rules still apply on Hyperliquid, so a position may take several records)."""
    from cascade.analysis.replay import replay
    from cascade.io.klines import synthetic_klines

    raw = market(minutes=40, start=START)
    for v in raw["venues"]:
        v["insurance_fund_usd"] = 1e9
    raw["population"]["stop_loss_share"] = 0.0
    raw["population"]["entry_order_share"] = 0.0
    sc = parse_scenario(raw, source="<replay>")
    close = 110000.0 * np.r_[np.linspace(1.0, 0.9, 20), np.linspace(0.9, 0.97, 20)]
    k = synthetic_klines(START, close)
    res = replay(sc, k)
    price = res.steps["last_price"].to_numpy()
    for name in ("bn", "hl"):
        np.testing.assert_allclose(res.steps[f"{name}.last_price"], price, rtol=1e-12)
    lo, hi = price.min(), price.max()
    rec = res.records
    liq = np.isin(rec["kind"], LIQ_KINDS)
    side = np.concatenate([p.side for p in res.populations])
    lp = np.concatenate([p.lp for p in res.populations])
    n_ladder = np.concatenate([np.arange(p.n) < p.n_ladder for p in res.populations])
    want = np.flatnonzero(n_ladder & (((side > 0) & (lp >= lo)) | ((side < 0) & (lp <= hi))))
    assert set(rec["pos"][liq].tolist()) == set(want.tolist())
    assert len(want) > 20 and set(rec["venue"][liq].tolist()) == {0, 1}


def test_sensitivity_scales_each_venues_own_leverages_within_its_table():
    from cascade.analysis.sensitivity import LEVERAGE_SCALE, build_variant

    raw = market()
    venue(raw, "hl")["leverages"] = [3.0, 10.0, 40.0]
    venue(raw, "hl")["leverage_weights"] = [0.4, 0.4, 0.2]
    sc = parse_scenario(raw, source="<sens>")
    var = build_variant(sc, LEVERAGE_SCALE, 1.5)
    assert var.scenario.population.leverages == [4.5, 15.0, 37.5, 60.0]
    hl = next(v for v in var.scenario.venues if v.name == "hl")
    assert hl.leverages == [4.5, 15.0, 40.0]  # Hyperliquid BTC stops at 40x
    assert var.clipped and "venue hl" in var.note
