"""The step loop against the slow reference, accounting, determinism and feedback properties."""

from __future__ import annotations

import math

import numba
import numpy as np
import pandas as pd
import pytest

from cascade.engine import (
    J_LSPTR,
    J_NREC,
    J_SSPTR,
    J_XL,
    J_XS,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_STOP,
    LIQUIDATED,
    N_ISTATE,
    N_STATE,
    OPEN,
    RECORD_DTYPE,
    Positions,
    Tables,
    VenueParams,
    VenueState,
    ladder_for,
    scan_triggers_nb,
)
from cascade.engine.ladder import side_heads_nb
from cascade.model.market import (
    N_IPARAMS,
    N_PARAMS,
    P_LIQ_EQ,
    background_noise,
    exogenous_flow,
    parameters,
)
from cascade.model.population import build_population, venue_tables
from cascade.rules.brackets import bracket_table
from cascade.runner import simulate
from tests.conftest import START, make_scenario
from tests.naive import engine as naive

# conditional entries near the start price, so the small scenario's moves cross them both ways
ENTRIES = {"population.entry_order_share": 0.3, "population.entry_order_range_pct": [0.2, 3.0],
           "population.entry_order_leverages": [20.0, 50.0, 100.0],
           "population.entry_order_leverage_weights": [0.3, 0.4, 0.3]}


def _inputs(sc, popu):
    _, rules = venue_tables(sc)
    prm, iprm = parameters(sc, rules.liquidation_fee_rate, sc.engine.feedback,
                           rules.liquidate_on_equal)
    return exogenous_flow(sc), background_noise(sc, sc.scenario.seed), prm, iprm


def _compare_with_naive(sc):
    res = simulate(sc)
    popu = res.population
    exo, noise, prm, iprm = _inputs(sc, popu)
    table, _ = venue_tables(sc)
    ref = naive.run(popu, exo, noise, prm, iprm, sc.venue.insurance_fund_usd, table)
    steps = res.steps
    np.testing.assert_allclose(steps["last_price"], ref["last"], rtol=1e-10)
    np.testing.assert_allclose(steps["mark_price"], ref["mark"], rtol=1e-10)
    for col, key in (("liq_long_usd", "liq_long"), ("liq_short_usd", "liq_short"),
                     ("stop_usd", "stop"), ("insurance_fund_usd", "fund"),
                     ("bad_debt_usd", "bad"), ("takeover_usd", "takeover"),
                     ("fund_offload_usd", "offload")):
        np.testing.assert_allclose(steps[col], ref[key], rtol=1e-9, atol=1e-4, err_msg=col)
    np.testing.assert_allclose(steps["fund_inventory_usd"], ref["inv"] * steps["mark_price"],
                               rtol=1e-9, atol=1e-4)
    np.testing.assert_allclose(steps["open_interest_usd"], ref["oi_qty"] * steps["mark_price"],
                               rtol=1e-9, atol=1e-3)  # sums of sizes in another order
    done = ~np.isnan(res.records["fill_price"])
    ent = res.records[done & (res.records["kind"] == KIND_ENTRY)]
    rec = res.records[done & (res.records["kind"] != KIND_ENTRY)]
    got = {int(r["pos"]): (int(r["kind"]), int(r["trigger_step"])) for r in rec}
    want = {i: (v[0], v[1]) for i, v in ref["closed"].items()}
    assert got == want
    assert {int(r["pos"]): int(r["trigger_step"]) for r in ent} == \
        {i: v[0] for i, v in ref["opened"].items()}
    if len(ent):
        rows = np.sort(ent["pos"])
        np.testing.assert_allclose(popu.lp[rows], [ref["opened"][i][2] for i in rows],
                                   rtol=1e-12)
    fills = dict(zip(rec["pos"].tolist(), rec["fill_price"].tolist()))
    # an IOC order fills at the mean of its own segment of the book, so the order of the
    # liquidations of one step matters; the reference computes the liquidation prices of
    # positions opened during the run with its own rounding, so rows whose prices tie to the
    # last bits may trade places: those are compared through the per-step totals above
    trig = {i: v[1] for i, v in ref["closed"].items()}
    keys = sorted((trig[i], int(popu.side[i]), popu.lp[i], i) for i in want)
    tied = set()
    for a, b in zip(keys[:-1], keys[1:]):
        if a[:2] == b[:2] and abs(a[2] - b[2]) <= 1e-9 * abs(a[2]):
            tied |= {a[3], b[3]}
    rows = [i for i in sorted(want) if i not in tied or i < popu.n_ladder]
    np.testing.assert_allclose([fills[i] for i in rows],
                               [ref["closed"][i][2] for i in rows], rtol=1e-10)
    return res


# counter-trend orders both ways (the squeeze lifts the price past the reference) and news flows
# whose impact stays while the forced orders' decays (issue 15)
COUNTER_TREND_NEWS = {"market.dip_buy_threshold_pct": 0.5, "market.news_permanent_share": 0.9,
                      "market.permanent_share": 0.1, "market.depth_liq_sensitivity": 50.0,
                      "market.depth_liq_threshold": 2e-3}


@pytest.mark.parametrize("overrides", [
    {},
    {"engine.feedback": False},
    {"engine.latency_s": 2.0},
    {"engine.max_iterations": 1},
    {"venue.name": "hyperliquid", "population.leverages": [3.0, 10.0, 20.0, 30.0, 40.0]},
    {"market.mark_window_s": 1.0, "population.cross_share": 1.0},
    ENTRIES,
    {**ENTRIES, "engine.latency_s": 2.0},
    {**ENTRIES, "engine.max_iterations": 1, "population.entry_order_long_share": 0.6},
    COUNTER_TREND_NEWS,
    {**COUNTER_TREND_NEWS, "market.dip_buy_reference": "fair"},
    {**COUNTER_TREND_NEWS, "market.dip_buy_reference": "fair", "market.permanent_depth": "normal"},
    {"venue.liquidation_order": "takeover"},
])
def test_step_loop_matches_naive(overrides):
    res = _compare_with_naive(make_scenario(**overrides))
    s = res.summary
    if "population.entry_order_share" in overrides:
        # entries of both sides open, and some of them are liquidated later in the run
        liq = res.liquidations
        opened = liq[liq["kind"] == "entry"]
        assert set(opened["side"]) == {"long", "short"}
        assert (liq["kind"].eq("liquidation") & liq["row"].isin(opened["row"])).any()
    if overrides is COUNTER_TREND_NEWS:
        dip = res.steps["dip_flow_usd"]
        assert (dip > 0).any() and (dip < 0).any()
    if overrides.get("market.dip_buy_reference") == "fair":
        assert (res.steps["dip_flow_usd"] > 0).any()  # they bought the forced orders' dip
    if overrides.get("market.permanent_depth") == "normal":
        assert (res.steps["depth_usd"] < 0.5 * res.scenario.market.depth_usd).any()  # it thinned
    if overrides.get("engine.feedback") is not False:
        # the scenario is built to liquidate both sides and fire stops
        assert s["liquidated_long_usd"] > 0 and s["liquidated_short_usd"] > 0
        assert s["stops_executed"] > 0


def test_no_positions():
    res = _compare_with_naive(make_scenario(**{"population.positions": 0}))
    assert res.summary["liquidated_notional_usd"] == 0
    assert res.summary["accounts_liquidated"] == 0
    assert res.summary["long_share"] is None


def test_everything_liquidated_in_one_step():
    crash = [{"start": START + pd.Timedelta(minutes=1), "duration_min": 1 / 60,
              "usd_per_min": 1e12, "side": "sell"}]
    sc = make_scenario(**{"flows": crash, "population.long_share": 1.0,
                          "population.leverages": [5.0], "population.leverage_weights": [1.0],
                          "population.stop_loss_share": 0.0, "market.dip_buy_usd_per_s_per_pct": 0.0,
                          "market.mark_window_s": 1.0, "population.cross_share": 0.0})
    res = _compare_with_naive(sc)
    liq_steps = res.steps.index[res.steps["liq_count"] > 0]
    assert len(liq_steps) == 1
    assert res.summary["accounts_liquidated"] == res.population.n
    assert res.summary["bad_debt_usd"] > 0  # filled far below bankruptcy


_LADDERS = {}  # id(ist) -> (ist, ladder, st) of that scan's inputs, kept across calls as a state


def _scan(t, mark, last, side, qty, lp, status, n_long, sidx, spx, nls, liq_on_equal, rec, ist):
    """scan_triggers_nb on a population with no conditional entries, no latency, whole-position
    liquidations (the ladder sorted in row order, every row in bracket 0; ``nls``, the size of
    the sell part, is in ``ist``)."""
    n = len(side)
    prm = np.zeros(N_PARAMS)
    prm[P_LIQ_EQ] = 1.0 if liq_on_equal else 0.0
    iprm = np.zeros(N_IPARAMS, np.int64)
    table = bracket_table("binance", "BTCUSDT")
    pos = Positions(side, qty, np.full(n, 100.0), np.full(n, 10.0), lp, status,
                    np.full(n, -np.inf), np.zeros(n, np.int32), np.zeros(n))
    tab = Tables(table.floor, table.cap, table.mmr, table.cum)
    fresh = id(ist) not in _LADDERS
    if fresh:
        lad, ist[J_XL], ist[J_XS] = ladder_for(side, qty, lp, np.zeros(n, np.int8), table, sidx,
                                               spx, window=0.0)
        _LADDERS[id(ist)] = (ist, lad, np.zeros(N_STATE))
    _, lad, st = _LADDERS[id(ist)]
    vs = VenueState(st, ist, rec, np.zeros((2, n), np.int32), np.zeros(n), np.zeros(1),
                    np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros((1, 2)),
                    np.zeros((2, 2)))
    if fresh:
        side_heads_nb(lad, tab, vs)
    return scan_triggers_nb(t, mark, last, pos, lad, tab, VenueParams(prm, iprm), vs)


def _scan_inputs(side, lp, stop_rows=(), stop_px=()):
    side = np.asarray(side, np.int8)
    lp = np.asarray(lp, float)
    n_long = int((side > 0).sum())
    stop_idx = np.asarray(stop_rows, np.int32)
    stop_px = np.asarray(stop_px, float)
    n_long_stops = int((side[stop_idx] > 0).sum()) if stop_idx.size else 0
    ist = np.zeros(N_ISTATE, np.int64)
    ist[J_LSPTR] = ist[J_SSPTR] = n_long_stops
    return side, lp, n_long, stop_idx, stop_px, n_long_stops, ist


@pytest.mark.parametrize("mark,last", [(100.0, 100.0), (95.0, 104.0), (90.0, 90.0),
                                       (120.0, 120.0), (0.5, 0.5), (1e9, 1e9)])
def test_scan_kernel_both_sides_and_ties(mark, last):
    # longs then shorts, each ascending; ties on purpose (100.0 twice), a long that cannot be
    # liquidated (lp 0), a position already closed
    side = [1, 1, 1, 1, 1, -1, -1, -1, -1]
    lp = [0.0, 90.0, 95.0, 100.0, 100.0, 96.0, 100.0, 104.0, 130.0]
    stops_rows, stops_px = [1, 4, 3, 5, 8], [92.0, 99.0, 101.0, 97.0, 104.0]
    side, lp, n_long, sidx, spx, nls, ist = _scan_inputs(side, lp, stops_rows, stops_px)
    qty = np.arange(1.0, 10.0)
    status = np.zeros(9, np.int8)
    status[2] = LIQUIDATED
    rec = np.empty(9, RECORD_DTYPE)
    flow = _scan(7, mark, last, side, qty, lp, status, n_long, sidx, spx, nls, True, rec, ist)
    status_ref = [OPEN] * 9
    status_ref[2] = LIQUIDATED
    want = naive.scan(mark, last, list(side), list(lp), status_ref, list(sidx), list(spx))
    got = [(int(r["pos"]), int(r["kind"])) for r in rec[: ist[J_NREC]]]
    assert got == want
    assert math.isclose(flow, sum(-side[i] * qty[i] * last for i, _ in want), rel_tol=1e-12,
                        abs_tol=1e-12)
    # a second scan at the same prices finds nothing new
    n = ist[J_NREC]
    _scan(8, mark, last, side, qty, lp, status, n_long, sidx, spx, nls, True, rec, ist)
    assert ist[J_NREC] == n


def test_scan_kernel_empty():
    side, lp, n_long, sidx, spx, nls, ist = _scan_inputs([], [])
    rec = np.empty(0, RECORD_DTYPE)
    flow = _scan(0, 1.0, 1.0, side, np.zeros(0), lp, np.zeros(0, np.int8), n_long, sidx, spx,
                 nls, True, rec, ist)
    assert flow == 0.0 and ist[J_NREC] == 0


def test_strict_trigger_for_hyperliquid():
    side, lp, n_long, sidx, spx, nls, ist = _scan_inputs([1, -1], [100.0, 100.0])
    rec = np.empty(2, RECORD_DTYPE)
    status = np.zeros(2, np.int8)
    _scan(0, 100.0, 100.0, side, np.ones(2), lp, status, n_long, sidx, spx, nls, False, rec, ist)
    assert ist[J_NREC] == 0  # equity == MM is not yet a liquidation on Hyperliquid
    _scan(0, 100.0, 100.0, side, np.ones(2), lp, status, n_long, sidx, spx, nls, True, rec, ist)
    assert ist[J_NREC] == 2  # ...but it is on Binance (WB + UPNL <= MM)


# --------------------------------------------------------------------------------- accounting
def fund_ledger(rec, side, qty, entry, wallet, steps, prefix=""):
    """The fund's inventory replayed from the records and the step columns alone: each
    takeover (``fund_qty`` coin at the bankruptcy price, or at the trigger mark for a backstop)
    in record order, then the step's offload (``fund_offload_usd / fill_price`` coin against
    the inventory held at the step's start, at the fill). Returns the naive Fund (its ``real``,
    ``inv``, ``cost``; its cash moves only by the realised PnL)."""
    fund = naive.Fund(1e30)
    taken = rec[rec["fund_qty"] > 0]
    by_step = {}
    for r in taken:
        by_step.setdefault(int(r["exec_step"]), []).append(r)
    off = steps[prefix + "fund_offload_usd"].to_numpy()
    fills = steps[prefix + "fill_price"].to_numpy()
    for t in range(len(steps)):
        inv0 = fund.inv
        for r in by_step.get(t, []):
            i = int(r["pos"])
            px = r["trigger_price"] if r["kind"] == KIND_BACKSTOP else \
                naive.bankruptcy(side[i], qty[i], entry[i], wallet[i])
            fund.trade(side[i] * r["fund_qty"], px)
        if off[t] > 0:
            c = off[t] / fills[t]
            fund.trade(-c if inv0 > 0 else c, fills[t])
    return fund


@pytest.mark.parametrize("overrides", [
    {}, {"engine.latency_s": 3.0}, {"venue.insurance_fund_usd": 0.0}, ENTRIES,
    {"venue.liquidation_order": "market"}, {"market.fund_offload_depth_share_per_min": 0.0},
    {"venue.liquidation_order": "takeover"}])
def test_accounting_balances_to_the_cent(overrides):
    """Traders' losses (+ what nobody covered) = the fund's change (cash + inventory at the
    mark) + the other side of every closing trade against the trader's entry (the book at an
    IOC fill, the fund at the bankruptcy price for what it took over) + the book's side of the
    fund's offloads against the fund's entry + the book holding the other side of the fund's
    inventory at the mark."""
    res = simulate(make_scenario(**overrides))
    popu, rec, s = res.population, res.records, res.summary
    ioc = overrides.get("venue.liquidation_order") != "market"
    closed = rec[~np.isnan(rec["fill_price"]) & (rec["kind"] != KIND_ENTRY)]
    i = closed["pos"]
    sd, q, ep, wb, fill = popu.side[i], popu.qty[i], popu.entry[i], popu.wallet[i], \
        closed["fill_price"]
    liq = closed["kind"] == KIND_LIQ
    bp = ep - sd * wb / q
    qf = np.where(liq & ioc, closed["ioc_qty"], q)  # coin that traded in the book
    u = q - qf  # taken over by the fund at BP (one venue: no ADL)
    np.testing.assert_allclose(closed["fund_qty"], u, rtol=1e-12, atol=1e-12)
    equity = wb + sd * qf * (fill - ep) + sd * u * (bp - ep)
    returned = np.where(closed["kind"] == KIND_STOP, np.maximum(equity, 0.0), 0.0)
    traders_lost = math.fsum(wb - returned)
    legs = math.fsum(sd * qf * (ep - fill)) + math.fsum(sd * u * (ep - bp))
    ledger = fund_ledger(rec, popu.side, popu.qty, popu.entry, popu.wallet, res.steps)
    mark_end = res.steps["mark_price"].iloc[-1]
    unreal = ledger.inv * mark_end - ledger.cost
    assert abs(ledger.real - s["fund_realised_pnl_usd"]) < 0.01
    assert abs(ledger.inv * mark_end - s["fund_inventory_end_usd"]) < 0.01
    assert abs(ledger.cost - s["fund_inventory_cost_usd"]) < 0.01
    fund_change = s["fund_equity_end_usd"] - s["insurance_fund_start_usd"]
    assert abs(fund_change - (s["insurance_fund_end_usd"] - s["insurance_fund_start_usd"]
                              + unreal)) < 0.01
    assert s["liquidated_notional_usd"] > 0
    if ioc:
        assert s["takeover_usd"] > 0
        if overrides.get("venue.liquidation_order") == "takeover":
            assert np.all(qf[liq] == 0)  # the fund takes each position over whole
        else:
            assert np.any(qf[liq] > 0)
        if overrides.get("market.fund_offload_depth_share_per_min") != 0.0:
            assert s["fund_offload_usd"] > 0 and ledger.real != 0.0
        else:  # it still realises PnL when it takes over the other side (the squeeze)
            assert s["fund_offload_usd"] == 0
    else:
        assert s["takeover_usd"] == 0 and s["fund_inventory_peak_usd"] == 0
    assert abs(traders_lost + s["bad_debt_usd"]
               - (fund_change + legs - ledger.real - unreal)) < 0.01
    # the fund's cash: every booked delta and realised PnL, less what it could not pay
    booked = math.fsum(closed["fund_delta"]) + ledger.real
    assert abs(booked + s["bad_debt_usd"]
               - (s["insurance_fund_end_usd"] - s["insurance_fund_start_usd"])) < 0.01
    # an IOC order never fills beyond the bankruptcy price: no deficit, the fee fits the equity
    assert np.all(closed["fee"][liq] <= np.maximum(equity[liq], 0) + 1e-9)
    np.testing.assert_allclose(closed["fund_delta"][liq], equity[liq], rtol=1e-12, atol=1e-6)
    if ioc:
        assert np.all(equity[liq] >= -1e-6)
        assert np.all(np.where(sd > 0, fill >= bp, fill <= bp)[liq])
    # notional by side matches the records
    long_liq = math.fsum((qf * fill + u * bp)[liq & (sd > 0)])
    assert abs(long_liq - s["liquidated_long_usd"]) < 0.01


def test_open_interest_falls_by_what_was_closed(small):
    res = simulate(small)
    popu = res.population
    rec = res.records
    closed = rec[~np.isnan(rec["fill_price"])]
    qty_closed = math.fsum(popu.qty[closed["pos"]])
    qty_start = math.fsum(popu.qty)
    last = res.steps.iloc[-1]
    qty_end = last["open_interest_usd"] / last["mark_price"]
    np.testing.assert_allclose(qty_end, qty_start - qty_closed, rtol=1e-12)
    status_open = np.ones(popu.n, bool)
    status_open[closed["pos"]] = False
    np.testing.assert_allclose(qty_end, math.fsum(popu.qty[status_open]), rtol=1e-12)
    assert set(np.flatnonzero(~status_open)) == set(closed["pos"].tolist())


@pytest.mark.parametrize("overrides", [{}, ENTRIES, {**ENTRIES, "engine.latency_s": 2.0}])
def test_no_trigger_is_ever_missed(overrides):
    """Full scan after the fact: each position is liquidated at the first step its mark crossed
    its liquidation price while it was open (from the start, or from the step after its entry
    filled), unless its stop closed it first; a position still open never saw such a step.
    The same-step fixed point must converge for that (at the iteration cap, triggers not yet
    found wait a step by design), hence a cap no step reaches."""
    res = simulate(make_scenario(**{"engine.max_iterations": 10_000, **overrides}))
    assert res.steps["iterations"].max() < 10_000
    popu, rec = res.population, res.records
    mark = res.steps["mark_price"].to_numpy()
    n_steps = mark.size
    first_open = np.zeros(popu.n, np.int64)
    first_open[popu.n_ladder:] = n_steps  # never opened
    ent = rec[rec["kind"] == KIND_ENTRY]
    first_open[ent["pos"]] = ent["exec_step"] + 1
    liq_step = np.full(popu.n, -1)
    liq = rec[rec["kind"] == KIND_LIQ]
    liq_step[liq["pos"]] = liq["trigger_step"]
    trig_px = np.full(popu.n, np.nan)
    trig_px[liq["pos"]] = liq["trigger_price"]
    early = 0
    stop_step = np.full(popu.n, n_steps)
    stops = rec[rec["kind"] == KIND_STOP]
    stop_step[stops["pos"]] = stops["trigger_step"]
    checked = 0
    for i in range(popu.n):
        if first_open[i] >= n_steps or np.isnan(popu.lp[i]):
            continue
        m = mark[first_open[i]:]
        crossed = m <= popu.lp[i] if popu.side[i] > 0 else m >= popu.lp[i]
        hits = np.flatnonzero(crossed)
        want = first_open[i] + hits[0] if hits.size else -1
        if want >= 0 and stop_step[i] <= want:
            assert liq_step[i] == -1  # its stop closed it first
            continue
        if liq_step[i] != want and liq_step[i] >= first_open[i] and \
                (want < 0 or liq_step[i] < want):
            # triggered at an iteration's mark that crossed, before orders of the other side
            # (short liquidations filling while the longs' IOC orders did not) lifted the
            # step's final mark back: allowed, if the mark it triggered at did cross
            px = trig_px[i]
            assert (px <= popu.lp[i]) if popu.side[i] > 0 else (px >= popu.lp[i]), i
            early += 1
            continue
        assert liq_step[i] == want, (i, liq_step[i], want)
        checked += want >= 0
    assert checked > 0 and early <= checked // 10


# ------------------------------------------------------------------------------ determinism
def test_same_seed_same_steps(small):
    a = simulate(small).steps
    b = simulate(small).steps
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    c = simulate(small.with_overrides(**{"scenario.seed": 4})).steps
    assert not np.array_equal(a["last_price"].to_numpy(), c["last_price"].to_numpy())


def test_serial_and_parallel_identical(small):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = simulate(small)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        parallel = simulate(small)
    finally:
        numba.set_num_threads(before)
    pd.testing.assert_frame_equal(serial.steps, parallel.steps, check_exact=True)
    np.testing.assert_array_equal(serial.population.lp, parallel.population.lp)
    for field in RECORD_DTYPE.names:  # field by field: NaN (no ADL price) equals NaN there
        np.testing.assert_array_equal(serial.records[field], parallel.records[field])


def test_chunking_does_not_change_results(small, monkeypatch):
    from cascade import runner

    a = simulate(small).steps
    monkeypatch.setattr(runner, "CHUNKS", 7)
    b = simulate(small).steps
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# --------------------------------------------------------------------------------- feedback
def test_no_feedback_has_no_endogenous_price_move():
    sc = make_scenario(**{"engine.feedback": False})
    a = simulate(sc)
    b = simulate(sc.with_overrides(**{"population.positions": 500, "population.long_share": 0.2}))
    empty = simulate(sc.with_overrides(**{"population.positions": 0}))
    assert a.summary["liquidated_notional_usd"] > 0  # liquidations happen, but move nothing
    np.testing.assert_array_equal(a.steps["last_price"], empty.steps["last_price"])
    np.testing.assert_array_equal(b.steps["last_price"], empty.steps["last_price"])
    np.testing.assert_array_equal(a.steps["depth_usd"], empty.steps["depth_usd"])


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_feedback_deepens_or_equals_drawdown(seed):
    sc = make_scenario(**{"scenario.seed": seed})
    on = simulate(sc)
    off = simulate(sc.with_overrides(**{"engine.feedback": False}), population=on.population)
    assert on.summary["max_drawdown_pct"] >= off.summary["max_drawdown_pct"]
    # positions, not USD: an IOC order's unfilled part counts at the bankruptcy price, below
    # the price a market without feedback fills at
    assert on.summary["accounts_liquidated"] >= off.summary["accounts_liquidated"]
    mk = {"venue.liquidation_order": "market"}
    on = simulate(sc.with_overrides(**mk), population=on.population)
    off = simulate(sc.with_overrides(**mk, **{"engine.feedback": False}),
                   population=on.population)
    assert on.summary["liquidated_notional_usd"] >= off.summary["liquidated_notional_usd"]


def test_population_respects_bracket_max_leverage(small):
    from cascade.model.population import venue_tables

    popu = build_population(small)
    table, _ = venue_tables(small)
    b = np.searchsorted(table.cap, popu.qty * popu.entry, side="left")
    assert np.all(popu.leverage <= table.max_leverage[b] + 1e-6)
    eff = popu.qty * popu.entry / popu.wallet
    assert np.all(eff <= table.max_leverage[b] * (1 + 1e-9))


def test_history_from_kline_csv(tmp_path):
    """Entries drawn from a Binance kline CSV give the same start price as its last close."""
    from cascade.io.klines import synthetic_klines, write_klines

    closes = np.linspace(105000.0, 110000.0, 12 * 60 + 1)
    kl = synthetic_klines(START - pd.Timedelta(hours=12) - pd.Timedelta(minutes=1), closes)
    path = tmp_path / "hist.csv"
    write_klines(kl, path)
    raw_overrides = {"population.history": None, "population.history_klines": str(path)}
    sc = make_scenario(**raw_overrides)
    popu = build_population(sc)
    assert popu.n > 0
    np.testing.assert_allclose(popu.price_start, 110000.0, rtol=1e-9)
    # entries come from the path: none far outside its range
    assert popu.entry.min() > 105000.0 * 0.98 and popu.entry.max() < 110000.0 * 1.02


def test_reference_overlay_rmse(tmp_path, small):
    """path_rmse_pct is the RMS log difference per minute; zero against the run's own path."""
    from cascade.io.klines import synthetic_klines, write_klines
    from cascade.runner import run

    res = simulate(small)
    minute_close = res.steps["last_price"].resample("1min").last()
    # candles whose closes equal the simulated minute closes, then one shifted up 1%
    kl = synthetic_klines(minute_close.index[0], minute_close.to_numpy())
    res.add_reference(kl)
    assert res.summary["path_rmse_pct"] < 1e-9
    kl_up = synthetic_klines(minute_close.index[0], minute_close.to_numpy() * 1.01)
    path = tmp_path / "ref.csv"
    write_klines(kl_up, path)
    res2 = run(small, reference=path)
    np.testing.assert_allclose(res2.summary["path_rmse_pct"], 100 * np.log(1.01), rtol=1e-9)
    assert res2.summary["reference_minutes"] == len(minute_close)


def test_rescale_capped_with_too_few_positions_for_the_cap():
    """Fewer positions than 1 / max_share: every one ends at target / count, no 0/0."""
    from cascade.model.population import _rescale_capped

    notional = np.array([5.0, 1.0, 300.0, 2.0])
    _rescale_capped(notional, np.array([True, True, True, False]), 90.0, 0.005)
    np.testing.assert_allclose(notional, [30.0, 30.0, 30.0, 2.0])


def test_a_diverging_price_stops_with_a_clear_error():
    """A book far too thin for the flows: the same-step iteration runs the price out of the
    floats; the run stops with one line naming the scenario, the step and the parameters."""
    from cascade.errors import CascadeError

    # market orders without limit: IOC orders at the bankruptcy price keep this one finite
    sc = make_scenario(**{"market.impact_exponent": 1.0, "market.depth_usd": 1e5,
                          "venue.liquidation_order": "market"})
    with pytest.raises(CascadeError, match=r"small: the (price diverged|model broke down) at step "
                                           r"\d+ .*impact_exponent = 1"):
        simulate(sc)
