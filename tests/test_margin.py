"""Liquidation / bankruptcy price, maintenance margin and the bracket tables."""

from __future__ import annotations

import datetime
import itertools
import zlib

import numpy as np
import pytest

from cascade._numba import set_threads
from cascade.errors import CascadeError
from cascade.rules import brackets
from cascade.rules.brackets import BracketTable, bracket_table, bracket_tables, venue_rules
from cascade.rules.margin import (
    bankruptcy_price_nb,
    bracket_index_nb,
    liq_price_nb,
    liq_prices,
    liq_prices_nb,
    liquidation_price,
    maintenance_margin_nb,
)
from tests.naive import margin as naive

D = datetime.date
ALL_KEYS = [(v, s) for v in brackets.VENUES for s in ("BTCUSDT", "ETHUSDT")]
ALL_TABLES = [t for key in ALL_KEYS for t in bracket_tables(*key)]
TABLE_IDS = [f"{t.venue}-{t.symbol}-{t.valid_from}" for t in ALL_TABLES]


def arrays(t: BracketTable):
    return t.floor, t.cap, t.mmr, t.cum


# ---------------------------------------------------------------------------------------------
# Checked examples of mechanics.md section 1
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "side, on, lp, bp, bracket",
    [
        ("long", None, 61_997.99, 61_750.0, 1),               # 2025H2 tier 1 (latest table)
        ("long", D(2025, 9, 1), 61_997.99, 61_750.0, 1),      # 2025H2 tier 1, explicit date
        ("long", D(2025, 3, 1), 62_010.05, 61_750.0, 2),      # early 2025: tier 2, 0.5 %, cum 50
        ("short", None, 67_978.09, 68_250.0, 1),
    ],
)
def test_checked_examples(side, on, lp, bp, bracket):
    r = liquidation_price("binance", "BTCUSDT", side, entry=65_000, size=1, leverage=20,
                          margin="isolated", wallet=3_250, on=on)
    np.testing.assert_allclose(r["liquidation_price"], lp, atol=0.005)
    np.testing.assert_allclose(r["bankruptcy_price"], bp, atol=0.005)
    assert r["bracket"] == bracket
    assert r["wallet_usd"] == 3_250.0 and r["notional_usd"] == 65_000.0
    assert r["liquidation_fee_rate"] == 0.0125 and r["liquidate_on_equal"] is True
    # wallet None -> initial margin size*entry/leverage = 3,250: same answer
    r2 = liquidation_price("binance", "BTCUSDT", side, 65_000, 1, 20, on=on)
    assert r2["liquidation_price"] == r["liquidation_price"]


def test_result_fields():
    r = liquidation_price("binance", "BTCUSDT", "long", 65_000, 1, 20, on="2025-03-01")
    # the entry notional 65k is in early-2025 bracket 2 (50k..600k, 100x), so is the LP notional
    assert r["max_leverage"] == 100.0 and r["entry_bracket"] == 2
    assert r["mmr"] == 0.005 and r["maintenance_amount"] == 50.0
    assert r["table_valid_from"] == "2025-01-01" and r["table_valid_to"] == "2025-06-12"
    assert "leverageBracket" in r["table_source"]
    lp = r["liquidation_price"]
    np.testing.assert_allclose(r["maintenance_margin_at_liq_usd"], lp * 0.005 - 50.0, rtol=1e-12)
    # at LP, equity equals the maintenance margin
    np.testing.assert_allclose(3_250.0 + (lp - 65_000.0), r["maintenance_margin_at_liq_usd"],
                               rtol=1e-12)
    # entry notional 3.9 * 80,000 = 312,000 is in 2025H2 bracket 2 (100x, 0.5 %, cum 300), the
    # notional at LP (~297,600) in bracket 1 (0.4 %, cum 0): mmr/cum/bracket follow the LP,
    # max_leverage/entry_bracket the entry. LP = (15,600 - 312,000)/(3.9*(0.004-1)) = 76,305.22
    r = liquidation_price("binance", "BTCUSDT", "long", 80_000, 3.9, 20)
    assert (r["bracket"], r["mmr"], r["maintenance_amount"]) == (1, 0.004, 0.0)
    assert (r["entry_bracket"], r["max_leverage"]) == (2, 100.0)
    np.testing.assert_allclose(r["liquidation_price"], 296_400 / 3.8844, rtol=1e-12)
    for key in ("venue", "symbol", "side", "margin", "entry_price", "size", "leverage",
                "notional_usd", "wallet_usd", "liquidation_price", "bankruptcy_price", "mmr",
                "maintenance_amount", "bracket", "max_leverage", "maintenance_margin_at_liq_usd",
                "liquidation_fee_rate", "table_valid_from", "table_source"):
        assert key in r


# ---------------------------------------------------------------------------------------------
# Seed shorthand (cum = 0 bracket)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [20_000.0, 65_000.0, 123_456.78])
@pytest.mark.parametrize("lev", [2.0, 10.0, 20.0, 50.0, 125.0])
def test_seed_shorthand(entry, lev):
    """The seeds' shorthand long EP*(1-1/L+MMR), short EP*(1+1/L-MMR) is the Gate-style formula
    (mechanics.md section 4): maintenance margin taken at the ENTRY price. Binance takes it at the
    liquidation price, so in a cum = 0 bracket the exact LP is EP*(1-1/L)/(1-MMR) (long) and
    EP*(1+1/L)/(1+MMR) (short); the two differ by EP*MMR*(MMR-1/L)/(1-+MMR), a second-order term
    (about 12 USD for 1 BTC @ 65,000 at 20x)."""
    t = bracket_table("binance", "BTCUSDT")  # tier 1: 0..300k, MMR 0.4 %, cum 0
    qty = 1.0  # notional <= 123,457, LP notional < 300k: tier 1 throughout
    mmr = float(t.mmr[0])
    assert t.cum[0] == 0.0
    wb = qty * entry / lev
    for s in (1, -1):
        lp, b = liq_price_nb(s, qty, entry, wb, 0.0, 0.0, *arrays(t))
        assert b == 0
        shorthand = entry * (1 - s / lev + s * mmr)
        exact = entry * (1 - s / lev) / (1 - s * mmr)
        np.testing.assert_allclose(lp, exact, rtol=1e-12)
        np.testing.assert_allclose(lp - shorthand, entry * mmr * (mmr - 1 / lev) / (1 - s * mmr),
                                   rtol=1e-6, atol=1e-7)
        # the shorthand is exactly EP - s*(IM - MM_at_entry)/Q
        mm_entry = maintenance_margin_nb(qty, entry, *arrays(t))
        np.testing.assert_allclose(entry - s * (wb - mm_entry) / qty, shorthand, rtol=1e-12)


def test_gate_worked_example():
    # mechanics.md section 4: long 1 BTC @ 20,000, 50x, MMR 0.5 % -> IM 400, MM 100, LP 19,700
    # (MM at entry); short, same, with 3,000 added margin -> LP 23,300.
    t = bracket_table("binance", "BTCUSDT", D(2025, 3, 1))  # early 2025 tier 1: cap 50k, 0.4 %
    floor, cap = np.array([0.0]), np.array([np.inf])
    mmr, cum = np.array([0.005]), np.array([0.0])
    mm = maintenance_margin_nb(1.0, 20_000.0, floor, cap, mmr, cum)
    assert mm == pytest.approx(100.0)
    assert 20_000 - (400 - mm) == pytest.approx(19_700.0)
    assert 20_000 + (3_400 - mm) == pytest.approx(23_300.0)
    # and our bracket kernel gives 20k notional 0.4 % in the early-2025 table: 80 USD
    assert maintenance_margin_nb(1.0, 20_000.0, *arrays(t)) == pytest.approx(80.0)


# ---------------------------------------------------------------------------------------------
# Hyperliquid
# ---------------------------------------------------------------------------------------------

def test_hyperliquid_hand_worked():
    # BTC tier 1: max 40x -> MMR = 1/(2*40) = 0.0125, deduction 0.
    # Long 1 BTC @ 100,000 at 20x isolated: WB = 100,000/20 = 5,000.
    #   LP = (WB + 0 - Q*EP) / (Q*MMR - Q) = (5,000 - 100,000) / (0.0125 - 1)
    #      = 95,000 / 0.9875 = 96,202.531645...   BP = 100,000 - 5,000 = 95,000
    # Short, same: LP = (5,000 + 100,000) / (0.0125 + 1) = 105,000 / 1.0125 = 103,703.703703...
    #   BP = 105,000
    r = liquidation_price("hyperliquid", "BTC", "long", 100_000, 1, 20)
    np.testing.assert_allclose(r["liquidation_price"], 96_202.531645, atol=1e-5)
    assert r["bankruptcy_price"] == 95_000.0
    assert r["mmr"] == 0.0125 and r["maintenance_amount"] == 0.0 and r["bracket"] == 1
    assert r["liquidation_fee_rate"] == 0.0 and r["liquidate_on_equal"] is False
    assert r["symbol"] == "BTCUSDT" and r["max_leverage"] == 40.0
    r = liquidation_price("hyperliquid", "BTCUSDT", "short", 100_000, 1, 20)
    np.testing.assert_allclose(r["liquidation_price"], 103_703.703704, atol=1e-5)
    assert r["bankruptcy_price"] == 105_000.0


def test_hyperliquid_second_tier():
    # Long 2,000 BTC @ 100,000 (200M notional, tier 2: above 150M, 20x, MMR 1/40 = 0.025),
    # 10x: WB = 20M. Deduction of tier 2 = 150M * (0.025 - 0.0125) = 1,875,000.
    # Tier 1 would give LP = (20M - 200M)/(2000*(0.0125-1)) = 91,139.24 -> notional 182.3M > 150M,
    # not tier 1. Tier 2: LP = (20M + 1.875M - 200M) / (2000*(0.025-1)) = 178.125M / 1,950
    #    = 91,346.153846...  -> notional 182.7M, in tier 2: consistent.
    r = liquidation_price("hyperliquid", "BTC", "long", 100_000, 2_000, 10)
    np.testing.assert_allclose(r["liquidation_price"], 91_346.153846, atol=1e-5)
    assert r["bracket"] == 2 and r["maintenance_amount"] == pytest.approx(1_875_000.0)
    assert r["max_leverage"] == 20.0
    with pytest.raises(CascadeError, match=r"40x .*bracket 2"):
        liquidation_price("hyperliquid", "BTC", "long", 100_000, 2_000, 40)


def test_hyperliquid_eth_table():
    t = bracket_table("hyperliquid", "ETH")
    np.testing.assert_array_equal(t.max_leverage, [25.0, 15.0])
    np.testing.assert_allclose(t.mmr, [0.02, 1 / 30], rtol=1e-15)
    np.testing.assert_allclose(t.cum, [0.0, 100e6 * (1 / 30 - 0.02)], rtol=1e-12)
    np.testing.assert_allclose(t.cum[1], 1_333_333.333333, atol=1e-5)
    assert bracket_table("hyperliquid", "ETHUSDT") is t
    with pytest.raises(CascadeError, match="30x"):
        liquidation_price("hyperliquid", "ETH", "long", 3_000, 1, 30)


# ---------------------------------------------------------------------------------------------
# Kernels against the naive reference
# ---------------------------------------------------------------------------------------------

def random_population(rng, n):
    """Notionals 10 USD..3B (all brackets), both sides, leverage 0.8x..150x plus extra margin."""
    entry = rng.uniform(500.0, 150_000.0, n)
    notional = np.exp(rng.uniform(np.log(10.0), np.log(3e9), n))
    qty = notional / entry
    lev = np.exp(rng.uniform(np.log(0.8), np.log(150.0), n))
    extra = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 1.0, n) * notional / lev, 0.0)
    wallet = notional / lev + extra
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    return side, qty, entry, wallet


def naive_population(side, qty, entry, wallet, t):
    out = [naive.liq_price(int(s), float(q), float(e), float(w), 0.0, 0.0, *arrays(t))
           for s, q, e, w in zip(side, qty, entry, wallet)]
    return (np.array([o[0] for o in out], dtype=np.float64),
            np.array([o[1] for o in out], dtype=np.int64))


def check_defining_property(side, qty, entry, wallet, lp, br, t):
    """At LP: WB + s*Q*(LP-EP) == Q*LP*MMR_b - cum_b, b the bracket containing Q*LP.

    rtol 1e-12 on the maintenance margin; the absolute slack 8 ulp of (WB + Q*EP) covers the
    rounding of the inputs' own magnitude (a 1.01x long has LP ~ EP/100, so Q*EP is 100 times the
    notional at LP and its rounding alone is larger than 1e-12 of the maintenance margin).
    """
    live = ~((side > 0) & (lp == 0.0))
    s = side[live].astype(np.float64)
    q, e, w, p, b = qty[live], entry[live], wallet[live], lp[live], br[live].astype(np.int64)
    expect_b = np.array([naive.bracket_of(x, t.cap) for x in q * p])
    np.testing.assert_array_equal(b, expect_b)
    lhs = w + s * q * (p - e)
    rhs = q * p * t.mmr[b] - t.cum[b]
    slack = 1e-12 * np.abs(rhs) + 8 * np.finfo(np.float64).eps * (np.abs(w) + q * e)
    bad = np.abs(lhs - rhs) > slack
    assert not bad.any(), (lhs[bad][:5], rhs[bad][:5])
    return live


@pytest.mark.parametrize("t", ALL_TABLES, ids=TABLE_IDS)
def test_liq_prices_nb_random_vs_naive(t):
    rng = np.random.default_rng(zlib.crc32(f"{t.venue}{t.symbol}{t.valid_from}".encode()))
    side, qty, entry, wallet = random_population(rng, 1500)
    lp, br = liq_prices(t, side, qty, entry, wallet)
    assert lp.dtype == np.float64 and br.dtype == np.int8
    nlp, nbr = naive_population(side, qty, entry, wallet, t)
    np.testing.assert_array_equal(br, nbr)
    np.testing.assert_allclose(lp, nlp, rtol=1e-12, atol=0)
    # the population really spans the table and both regimes
    assert len(np.unique(br)) >= min(t.n, 4)
    assert ((side > 0) & (lp == 0.0)).any() and ((side > 0) & (lp > 0.0)).any()
    live = check_defining_property(side, qty, entry, wallet, lp, br, t)
    # independent check by bisection on equity - MM, on a subsample
    for i in np.flatnonzero(live)[:150]:
        ref = naive.liq_price_bisect(int(side[i]), qty[i], entry[i], wallet[i], *arrays(t))
        np.testing.assert_allclose(lp[i], ref, rtol=1e-9)


def test_liq_prices_nb_matches_scalar_kernel_bitwise():
    t = bracket_table("binance", "BTCUSDT")
    side, qty, entry, wallet = random_population(np.random.default_rng(7), 500)
    lp, br = liq_prices(t, side, qty, entry, wallet)
    for i in range(len(side)):
        slp, sb = liq_price_nb(side[i], qty[i], entry[i], wallet[i], 0.0, 0.0, *arrays(t))
        assert lp[i] == slp and br[i] == sb


def test_liq_prices_nb_thread_count_invariant():
    t = bracket_table("binance", "ETHUSDT", D(2025, 3, 1))
    side, qty, entry, wallet = random_population(np.random.default_rng(11), 20_000)
    before = set_threads(None)
    try:
        set_threads(1)
        lp1, br1 = liq_prices(t, side, qty, entry, wallet)
        set_threads(2)
        lp2, br2 = liq_prices(t, side, qty, entry, wallet)
    finally:
        set_threads(before)
    assert lp1.tobytes() == lp2.tobytes()
    assert br1.tobytes() == br2.tobytes()


def test_liq_prices_nb_empty():
    t = bracket_table("binance", "BTCUSDT")
    out_lp = np.empty(0, np.float64)
    out_br = np.empty(0, np.int8)
    e = np.empty(0, np.float64)
    liq_prices_nb(np.empty(0, np.int8), e, e, e, *arrays(t), out_lp, out_br)
    lp, br = liq_prices(t, [], [], [], [])
    assert lp.shape == (0,) and br.shape == (0,)


def test_long_never_liquidated():
    t = bracket_table("binance", "BTCUSDT")
    # wallet >= notional: equity stays >= MM down to price 0
    for wallet in (65_000.0, 65_000.01, 1e6):
        assert liq_price_nb(1, 1.0, 65_000.0, wallet, 0.0, 0.0, *arrays(t)) == (0.0, 0)
        assert naive.liq_price(1, 1.0, 65_000.0, wallet, 0.0, 0.0, *arrays(t)) == (0.0, 0)
        assert naive.liq_price_bisect(1, 1.0, 65_000.0, wallet, *arrays(t)) == 0.0
    lp, br = liq_prices(t, [1, 1, -1], [1.0, 2.0, 1.0], [65_000.0] * 3, [70_000.0, 1e3, 7e4])
    assert lp[0] == 0.0 and br[0] == 0 and lp[1] > 0 and lp[2] > 65_000
    r = liquidation_price("binance", "BTCUSDT", "long", 65_000, 1, 1, wallet=70_000)
    assert r["liquidation_price"] == 0.0 and r["liquidatable"] is False
    assert r["maintenance_margin_at_liq_usd"] == 0.0
    # a wallet just short of the notional: liquidated at a tiny positive price
    lp, b = liq_price_nb(1, 1.0, 65_000.0, 64_999.0, 0.0, 0.0, *arrays(t))
    np.testing.assert_allclose(lp, 1.0 / 0.996, rtol=1e-9)
    assert b == 0


def test_short_already_liquidated_and_no_position():
    t = bracket_table("binance", "BTCUSDT")
    # short whose wallet is so negative that equity < MM at every positive price: the formula
    # as is, bracket 0, LP <= 0 (so any positive mark liquidates it)
    lp, b = liq_price_nb(-1, 1.0, 100.0, -200.0, 0.0, 0.0, *arrays(t))
    np.testing.assert_allclose(lp, (-200.0 + 100.0) / 1.004, rtol=1e-15)
    assert b == 0 and (lp, b) == naive.liq_price(-1, 1.0, 100.0, -200.0, 0.0, 0.0, *arrays(t))
    lp, b = liq_price_nb(1, 0.0, 100.0, 10.0, 0.0, 0.0, *arrays(t))
    assert np.isnan(lp) and b == 0


@pytest.mark.parametrize("t", [bracket_table("binance", "BTCUSDT"),
                               bracket_table("binance", "ETHUSDT", D(2025, 2, 1)),
                               bracket_table("hyperliquid", "BTC")],
                         ids=["binance-btc-h2", "binance-eth-early", "hl-btc"])
def test_lp_exactly_on_bracket_boundary(t):
    """Positions built so that Q*LP is exactly a bracket cap (MM is continuous there)."""
    rows = []
    for k in range(t.n - 1):
        boundary = float(t.cap[k])
        for s in (1, -1):
            for qty in (boundary / 97_000.0, 3.0, 1_000.0):
                lp_target = boundary / qty
                entry = lp_target * (1.0 + 0.1 * s)  # long enters above, short below its LP
                mm = boundary * float(t.mmr[k]) - float(t.cum[k])
                wallet = mm - s * qty * (lp_target - entry)
                rows.append((s, qty, entry, wallet, lp_target, k))
    side = np.array([r[0] for r in rows], np.int8)
    qty, entry, wallet, target = (np.array([r[i] for r in rows]) for i in (1, 2, 3, 4))
    lp, br = liq_prices(t, side, qty, entry, wallet)
    np.testing.assert_allclose(lp, target, rtol=1e-12)
    k = np.array([r[5] for r in rows])
    assert np.all((br == k) | (br == k + 1))
    assert (br == k).any()  # exact hits are counted in the lower bracket, (floor, cap]
    nlp, nbr = naive_population(side, qty, entry, wallet, t)
    np.testing.assert_array_equal(br, nbr)
    np.testing.assert_allclose(lp, nlp, rtol=1e-12, atol=0)
    check_defining_property(side, qty, entry, wallet, lp, br, t)


def test_lp_notional_crosses_several_brackets():
    t = bracket_table("binance", "BTCUSDT")  # 2025H2
    # short 5 BTC @ 50,000 (250k, bracket 1) with a 20M wallet: LP ~ 4.0M per coin, notional
    # ~20M at LP -> bracket 5 (12M..70M, 2 %, cum 132,000): four brackets above the entry's.
    lp, b = liq_price_nb(-1, 5.0, 50_000.0, 20e6, 0.0, 0.0, *arrays(t))
    assert t.bracket_of(5 * 50_000.0) == 0 and b == 4
    np.testing.assert_allclose(lp, (20e6 + 132_000 + 250_000) / (5 * (0.02 + 1)), rtol=1e-14)
    # long 100 BTC @ 100,000 (10M, bracket 4) at 1.01x: LP ~ 990 per coin, notional ~99k at LP
    # -> bracket 1 (0..300k): three brackets below the entry's.
    wallet = 10e6 / 1.01
    lp, b = liq_price_nb(1, 100.0, 100_000.0, wallet, 0.0, 0.0, *arrays(t))
    assert t.bracket_of(10e6) == 3 and b == 0
    np.testing.assert_allclose(lp, (wallet - 10e6) / (100 * (0.004 - 1)), rtol=1e-12)
    for s, q, e, w in ((-1, 5.0, 50_000.0, 20e6), (1, 100.0, 100_000.0, wallet)):
        assert liq_price_nb(s, q, e, w, 0.0, 0.0, *arrays(t)) == \
            naive.liq_price(s, q, e, w, 0.0, 0.0, *arrays(t))
        np.testing.assert_allclose(liq_price_nb(s, q, e, w, 0.0, 0.0, *arrays(t))[0],
                                   naive.liq_price_bisect(s, q, e, w, *arrays(t)), rtol=1e-9)


def test_cross_margin_other_positions():
    t = bracket_table("binance", "BTCUSDT")
    rng = np.random.default_rng(3)
    for _ in range(300):
        s = int(rng.choice([-1, 1]))
        qty = float(np.exp(rng.uniform(np.log(0.01), np.log(20_000))))
        entry = float(rng.uniform(10_000, 120_000))
        wallet = float(qty * entry / rng.uniform(1, 40))
        other_mm = float(rng.uniform(0, 0.3) * wallet)
        other_upnl = float(rng.uniform(-0.3, 0.3) * wallet)
        got = liq_price_nb(s, qty, entry, wallet, other_mm, other_upnl, *arrays(t))
        ref = naive.liq_price(s, qty, entry, wallet, other_mm, other_upnl, *arrays(t))
        assert got[1] == ref[1]
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
        # cross with others == isolated with the wallet the others leave (WB - TMM1 + UPNL1)
        iso = liq_price_nb(s, qty, entry, wallet - other_mm + other_upnl, 0.0, 0.0, *arrays(t))
        assert iso[1] == got[1]
        np.testing.assert_allclose(iso[0], got[0], rtol=1e-12)
    # through the calculator: cross wallet 10,000, others' MM 500, uPnL -1,500
    r = liquidation_price("binance", "BTCUSDT", "long", 65_000, 1, 20, margin="cross",
                          wallet=10_000, other_mm=500, other_upnl=-1_500)
    np.testing.assert_allclose(r["liquidation_price"], (8_000 - 65_000) / (0.004 - 1), rtol=1e-12)
    np.testing.assert_allclose(r["bankruptcy_price"], 65_000 - 8_500, rtol=1e-12)
    # cross with wallet None: the initial margin, same as isolated
    a = liquidation_price("binance", "BTCUSDT", "short", 65_000, 1, 20, margin="cross")
    assert a["liquidation_price"] == liquidation_price(
        "binance", "BTCUSDT", "short", 65_000, 1, 20)["liquidation_price"]


def test_bankruptcy_and_maintenance_vs_naive():
    t = bracket_table("binance", "BTCUSDT")
    rng = np.random.default_rng(5)
    for _ in range(300):
        s = int(rng.choice([-1, 1]))
        qty = float(np.exp(rng.uniform(np.log(1e-3), np.log(3e4))))
        price = float(rng.uniform(100, 200_000))
        wallet = float(rng.uniform(0, 2) * qty * price)
        assert bankruptcy_price_nb(s, qty, price, wallet) == \
            naive.bankruptcy_price(s, qty, price, wallet)
        assert maintenance_margin_nb(qty, price, *arrays(t)) == \
            naive.maintenance_margin(qty, price, *arrays(t))
    assert bankruptcy_price_nb(1, 1.0, 100.0, 150.0) == 0.0  # floored for longs
    assert bankruptcy_price_nb(-1, 1.0, 100.0, 150.0) == 250.0
    # 2025H2, 1M notional: bracket 3 (800k..3M), 0.65 %, cum 1,500 -> 6,500 - 1,500 = 5,000
    assert maintenance_margin_nb(10.0, 100_000.0, *arrays(t)) == pytest.approx(5_000.0)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", ALL_TABLES, ids=TABLE_IDS)
def test_table_invariants(t):
    n = t.n
    for a in (t.floor, t.cap, t.max_leverage, t.mmr, t.cum):
        assert a.dtype == np.float64 and a.shape == (n,) and not a.flags.writeable
    assert t.floor[0] == 0.0 and t.cum[0] == 0.0
    assert np.all(np.diff(t.floor) > 0)
    np.testing.assert_array_equal(t.cap[:-1], t.floor[1:])
    assert t.cap[-1] == np.inf and np.all(np.isfinite(t.cap[:-1]))
    assert np.all(np.diff(t.mmr) > 0) and np.all(t.mmr > 0) and np.all(t.mmr < 1)
    assert np.all(np.diff(t.max_leverage) < 0)
    # cum identity, computed here by a plain loop
    expect = [0.0]
    for i in range(1, n):
        expect.append(expect[-1] + t.floor[i] * (t.mmr[i] - t.mmr[i - 1]))
    np.testing.assert_allclose(t.cum, expect, rtol=1e-12, atol=1e-6)
    # MM continuous across every boundary
    for i in range(n - 1):
        c = t.cap[i]
        np.testing.assert_allclose(c * t.mmr[i] - t.cum[i], c * t.mmr[i + 1] - t.cum[i + 1],
                                   rtol=1e-12)
    if t.venue == "hyperliquid":
        np.testing.assert_allclose(t.mmr, 1 / (2 * t.max_leverage), rtol=1e-15)


@pytest.mark.parametrize("key", ALL_KEYS, ids=[f"{v}-{s}" for v, s in ALL_KEYS])
def test_tables_are_contiguous_from_coverage_start(key):
    tables = bracket_tables(*key)
    # Binance from 2020 (tests/test_brackets_history.py); Hyperliquid from 2025
    assert tables[0].valid_from == (D(2020, 1, 1) if key[0] == "binance" else D(2025, 1, 1))
    assert tables[-1].valid_to is None
    for a, b in itertools.pairwise(tables):
        assert a.valid_to == b.valid_from
    for t in tables:
        assert t.venue == key[0] and t.symbol == key[1] and t.source
    assert bracket_table(*key) is tables[-1]


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_binance_date_selection(symbol):
    early = bracket_table("binance", symbol, D(2025, 1, 1))
    assert early is bracket_table("binance", symbol, D(2025, 6, 11))
    assert early.cap[0] == 50e3 and early.max_leverage[0] == 125 and early.cum[1] == 50
    mid = bracket_table("binance", symbol, D(2025, 6, 12))  # gap 06-12..06-19 -> 125x variant
    assert mid is bracket_table("binance", symbol, D(2025, 6, 19))
    assert mid is bracket_table("binance", symbol, D(2025, 8, 13))
    assert mid.cap[0] == 300e3 and mid.max_leverage[0] == 125
    h2 = bracket_table("binance", symbol, D(2025, 8, 14))
    assert h2.cap[0] == 300e3 and h2.max_leverage[0] == 150
    assert h2 is bracket_table("binance", symbol, None)
    assert h2 is bracket_table("binance", symbol, D(2030, 1, 1))
    assert h2 is bracket_table("binance", symbol, datetime.datetime(2025, 8, 14, 0, 0))
    np.testing.assert_array_equal(mid.mmr, h2.mmr)
    np.testing.assert_array_equal(mid.cum, h2.cum)
    np.testing.assert_array_equal(mid.max_leverage[1:], h2.max_leverage[1:])
    # early tiers 4+ = 2025H2 tiers 4+ with cum 550 lower
    np.testing.assert_array_equal(early.floor[3:], h2.floor[3:])
    np.testing.assert_array_equal(early.mmr[3:], h2.mmr[3:])
    np.testing.assert_array_equal(early.cum[3:], h2.cum[3:] - 550)
    with pytest.raises(CascadeError, match=r"2019-12-31.*2020-01-01"):
        bracket_table("binance", symbol, D(2019, 12, 31))


def test_published_rows():
    btc = bracket_table("binance", "BTCUSDT")
    # mechanics.md BTCUSDT 2025H2 table
    np.testing.assert_array_equal(
        btc.floor, [0, 300e3, 800e3, 3e6, 12e6, 70e6, 100e6, 230e6, 480e6, 600e6, 800e6, 1.2e9])
    np.testing.assert_array_equal(btc.max_leverage, [150, 100, 75, 50, 25, 20, 10, 5, 4, 3, 2, 1])
    np.testing.assert_array_equal(
        btc.cum, [0, 300, 1_500, 12_000, 132_000, 482_000, 2_982_000, 14_482_000, 26_482_000,
                  41_482_000, 121_482_000, 421_482_000])
    eth = bracket_table("binance", "ETHUSDT")
    np.testing.assert_array_equal(
        eth.floor, [0, 300e3, 800e3, 3e6, 12e6, 50e6, 65e6, 150e6, 320e6, 400e6, 530e6, 800e6])
    np.testing.assert_array_equal(
        eth.cum, [0, 300, 1_500, 12_000, 132_000, 382_000, 2_007_000, 9_507_000, 17_507_000,
                  27_507_000, 80_507_000, 280_507_000])
    hl = bracket_table("hyperliquid", "BTC")
    np.testing.assert_array_equal(hl.floor, [0, 150e6])
    np.testing.assert_array_equal(hl.mmr, [0.0125, 0.025])
    np.testing.assert_allclose(hl.cum, [0, 1_875_000], rtol=1e-15)


def test_bracket_of_boundaries():
    t = bracket_table("binance", "BTCUSDT")
    cases = [(0.0, 0), (-5.0, 0), (1.0, 0), (300e3, 0), (300e3 + 0.01, 1), (800e3, 1),
             (3e6, 2), (5e6, 3), (1.2e9, 10), (1.8e9, 11), (1e15, 11), (np.inf, 11)]
    for notional, b in cases:
        assert t.bracket_of(notional) == b, notional
        assert bracket_index_nb(notional, t.cap) == b
        assert naive.bracket_of(notional, t.cap) == b


def test_venue_rules():
    assert venue_rules("binance") == brackets.VenueRules("binance", 0.0125, True)
    assert venue_rules("binance", "ETHUSDT").liquidation_fee_rate == 0.0125
    assert venue_rules("hyperliquid", "ETH") == brackets.VenueRules("hyperliquid", 0.0, False)
    assert venue_rules("Binance", "btcusdt").name == "binance"
    with pytest.raises(CascadeError, match=r"'bybit'.*binance, hyperliquid"):
        venue_rules("bybit")
    with pytest.raises(CascadeError, match=r"'XRPUSDT'.*BTCUSDT, ETHUSDT"):
        venue_rules("binance", "XRPUSDT")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"leverage": 200}, r"leverage 200x .*maximum 150x.*65,000\.00 USD.*bracket 1"),
        # 50 BTC @ 100,000 = 5M notional: bracket 4 (3M..12M), at most 50x
        ({"entry": 100_000, "size": 50, "leverage": 100},
         r"leverage 100x .*maximum 50x.*5,000,000\.00 USD.*bracket 4 \(3,000,000 to 12,000,000"),
        ({"entry": -1}, r"entry price: expected a positive number, got -1"),
        ({"entry": float("nan")}, r"entry price: expected a positive number"),
        ({"size": 0}, r"size: expected a positive number, got 0"),
        ({"leverage": 0}, r"leverage: expected a positive number, got 0"),
        ({"leverage": 0.5}, r"leverage 0.5 is below 1x"),
        ({"wallet": -10}, r"wallet: expected a positive number, got -10"),
        ({"side": "up"}, r"unknown side 'up'; expected long or short"),
        ({"margin": "portfolio"}, r"unknown margin mode 'portfolio'; expected isolated or cross"),
        ({"venue": "bybit"}, r"unknown venue 'bybit'; accepted: binance, hyperliquid"),
        ({"symbol": "SOLUSDT"}, (r"unknown symbol 'SOLUSDT' for venue binance; accepted: "
                                 r"BTCUSDT, ETHUSDT")),
        ({"venue": "hyperliquid", "symbol": "SOL"}, r"'SOL' for venue hyperliquid; accepted: BTC,"),
        ({"on": D(2019, 12, 31)}, r"2019-12-31.*2020-01-01 onwards"),
        ({"on": "2025-13-01"}, r"date '2025-13-01': expected a date in YYYY-MM-DD form"),
        ({"other_mm": 10.0}, r"apply only to cross margin"),
    ],
)
def test_bad_input(kwargs, pattern):
    args = {"venue": "binance", "symbol": "BTCUSDT", "side": "long", "entry": 65_000, "size": 1,
            "leverage": 20}
    args.update(kwargs)
    with pytest.raises(CascadeError, match=pattern):
        liquidation_price(**args)


def test_leverage_at_the_bracket_maximum_is_accepted():
    # 300,000 notional is still bracket 1 ((0, 300k]): 150x allowed; a cent more is bracket 2
    r = liquidation_price("binance", "BTCUSDT", "long", 100_000, 3, 150)
    assert r["max_leverage"] == 150 and r["entry_bracket"] == 1
    with pytest.raises(CascadeError, match="bracket 2"):
        liquidation_price("binance", "BTCUSDT", "long", 100_000.01, 3, 150)
    r = liquidation_price("binance", "BTCUSDT", "long", 65_000, 1, 125, on="2025-07-01")
    assert r["max_leverage"] == 125
    with pytest.raises(CascadeError, match="maximum 125x"):
        liquidation_price("binance", "BTCUSDT", "long", 65_000, 1, 150, on="2025-07-01")
