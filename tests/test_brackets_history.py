"""Dated bracket tables back to 2020 (issue 15): shape of every table, the dates each one covers,
published rows, hand-checked liquidation prices on 2021 tables, and scenarios dated 2020/2021.

The hand-worked liquidation prices use mechanics.md section 1 (Binance FAQ "How to Calculate
Liquidation Price of USDⓈ-M Futures Contracts"), isolated margin, one-way mode:

    LP = (WB + cum - s*Q*EP) / (Q*MMR - s*Q),   s = +1 long, -1 short,

with the bracket the one containing Q*LP.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cascade.cli
from cascade.errors import CascadeError
from cascade.model.scenario import load_scenario, parse_scenario, venue_date
from cascade.rules.brackets import (
    COVERAGE_START,
    VENUES,
    bracket_table,
    bracket_tables,
    coverage_start,
)
from cascade.rules.margin import liquidation_price
from tests.test_bad_input import shift_years
from tests.test_scenario import DEMO_TEXT, START, edit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

D = dt.date
KEYS = [(v, s) for v in VENUES for s in ("BTCUSDT", "ETHUSDT")]
TABLES = [t for key in KEYS for t in bracket_tables(*key)]
TINY_2021 = Path(__file__).parent / "scenarios" / "btc_2021_05_19.toml"

# Historical BTC crashes the project is checked on, with the Binance BTCUSDT table each resolves
# to (valid_from).  The mapping follows the rules in cascade/rules/brackets.py: announcements date
# a change exactly; between two dumps the older table holds until the first dump of the newer
# one; before 2021-03-18 the 2021-03-18 table is assumed.
CRASHES = {
    D(2020, 3, 12): D(2020, 1, 1),      # assumed
    D(2021, 1, 11): D(2020, 1, 1),      # assumed
    D(2021, 4, 18): D(2021, 3, 18),
    D(2021, 5, 19): D(2021, 3, 18),
    D(2021, 9, 7): D(2021, 6, 22),
    D(2021, 12, 4): D(2021, 6, 22),     # 2021-09-16 dump .. first 2022-02-05 dump
    D(2022, 5, 12): D(2022, 2, 5),      # last seen 2022-04-16, successor first seen 2022-05-21
    D(2022, 6, 13): D(2022, 5, 21),
    D(2022, 11, 8): D(2022, 5, 21),     # last seen 2022-09-27, successor first seen 2022-11-25
    D(2023, 8, 17): D(2023, 8, 1),
    D(2024, 3, 19): D(2024, 2, 3),
    D(2024, 8, 5): D(2024, 5, 30),
    D(2024, 12, 5): D(2024, 5, 30),
}


def _id(t):
    return f"{t.venue}-{t.symbol}-{t.valid_from}"


# --- every table: dates and shape --------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS, ids=[f"{v}-{s}" for v, s in KEYS])
def test_tables_are_contiguous_and_do_not_overlap(key):
    tables = bracket_tables(*key)
    assert tables[0].valid_from == coverage_start(*key)
    assert tables[-1].valid_to is None
    for t in tables[:-1]:
        assert t.valid_from < t.valid_to
    for a, b in itertools.pairwise(tables):
        assert a.valid_to == b.valid_from  # no gap, no overlap
    # every day from the first table on resolves to exactly one table
    day = tables[0].valid_from
    while day < D(2026, 1, 1):
        assert sum(t.covers(day) for t in tables) == 1, day
        day += dt.timedelta(days=1)


@pytest.mark.parametrize("t", TABLES, ids=_id)
def test_every_table_is_well_formed_and_cum_continuous(t):
    assert t.floor[0] == 0.0 and np.isinf(t.cap[-1])
    np.testing.assert_array_equal(t.cap[:-1], t.floor[1:])
    assert np.all(np.diff(t.floor) > 0) and np.all(np.diff(t.mmr) > 0)
    assert np.all(np.diff(t.max_leverage) <= 0) and t.max_leverage[-1] >= 1
    assert t.cum[0] == 0.0
    # cum_n = cum_{n-1} + floor_n * (mmr_n - mmr_{n-1}): MM continuous at every boundary
    np.testing.assert_allclose(t.cum[1:], t.cum[:-1] + t.floor[1:] * np.diff(t.mmr), rtol=0,
                               atol=1e-6)
    mm_below = t.cap[:-1] * t.mmr[:-1] - t.cum[:-1]
    mm_above = t.cap[:-1] * t.mmr[1:] - t.cum[1:]
    np.testing.assert_allclose(mm_below, mm_above, rtol=1e-12)
    assert t.source


def test_coverage_start():
    assert COVERAGE_START == D(2020, 1, 1)
    assert coverage_start("binance", "BTCUSDT") == coverage_start("binance", "ETHUSDT") \
        == D(2020, 1, 1)
    assert coverage_start("hyperliquid", "BTC") == D(2025, 1, 1)


# --- which table a date gets ---------------------------------------------------------------------

@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize("year", [2020, 2021, 2022, 2023, 2024])
def test_a_table_resolves_in_every_year(symbol, year):
    t = bracket_table("binance", symbol, D(year, 7, 1))
    assert t.covers(D(year, 7, 1)) and t.venue == "binance" and t.symbol == symbol


@pytest.mark.parametrize("day", sorted(CRASHES), ids=str)
def test_crash_dates_resolve(day):
    btc = bracket_table("binance", "BTCUSDT", day)
    assert btc.valid_from == CRASHES[day]
    assert btc is bracket_table("binance", "BTCUSDT", dt.datetime(day.year, day.month, day.day,
                                                                   13, 30))
    eth = bracket_table("binance", "ETHUSDT", day)
    assert eth.covers(day)


@pytest.mark.parametrize("t", [t for t in TABLES if t.venue == "binance"], ids=_id)
def test_every_source_says_how_certain_it_is(t):
    assumed = t.valid_from < D(2021, 3, 18) if t.symbol == "BTCUSDT" else \
        t.valid_from < D(2021, 9, 16)
    assert t.source.startswith("ASSUMED") == assumed
    if not assumed:
        # an announcement with its own date, or dumps named by commit and first/last date
        assert ("announcement" in t.source or "freqtrade" in t.source) and "20" in t.source


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_before_2020_raises_naming_the_first_date(symbol):
    with pytest.raises(CascadeError, match=r"2019-12-31.*2020-01-01 onwards.*no source"):
        bracket_table("binance", symbol, D(2019, 12, 31))


@pytest.mark.parametrize("day", [D(2021, 5, 19), D(2022, 6, 13), D(2024, 12, 31)], ids=str)
def test_hyperliquid_before_2025_keeps_a_clear_error(day):
    with pytest.raises(CascadeError, match=r"hyperliquid BTCUSDT .*2025-01-01 onwards.*2023"):
        bracket_table("hyperliquid", "BTC", day)


# --- published rows ------------------------------------------------------------------------------

def test_btcusdt_2021_announcements():
    # 2021-03-18 announcement: (cap, leverage, MMR) of each tier
    a = bracket_table("binance", "BTCUSDT", D(2021, 3, 18))
    assert a is bracket_table("binance", "BTCUSDT", D(2021, 6, 21))
    np.testing.assert_array_equal(a.cap[:-1], [5e4, 2.5e5, 1e6, 1e7, 2e7, 5e7, 1e8, 2e8, 3e8])
    np.testing.assert_array_equal(a.max_leverage, [125, 100, 50, 20, 10, 5, 4, 3, 2, 1])
    np.testing.assert_array_equal(a.mmr, [.004, .005, .01, .025, .05, .1, .125, .15, .25, .5])
    # its cums are derived; a later dump of the same tiers (freqtrade 963cc17c18, 2022-05-21)
    # publishes them, and they agree
    np.testing.assert_allclose(a.cum, bracket_table("binance", "BTCUSDT", D(2022, 6, 1)).cum,
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.cum, [0, 50, 1_300, 16_300, 266_300, 1_266_300, 2_516_300,
                                       5_016_300, 25_016_300, 100_016_300], rtol=0, atol=1e-6)
    # 2021-06-22 announcement: tier 4 shrank to 1M..5M and tier 5 grew to 5M..20M
    b = bracket_table("binance", "BTCUSDT", D(2021, 6, 22))
    assert b is not a and b.valid_from == D(2021, 6, 22)
    np.testing.assert_array_equal(b.cap[:-1], [5e4, 2.5e5, 1e6, 5e6, 2e7, 5e7, 1e8, 2e8, 3e8])
    np.testing.assert_array_equal(b.max_leverage, a.max_leverage)
    np.testing.assert_array_equal(b.mmr, a.mmr)
    assert b.cum[4] == pytest.approx(16_300 + 5e6 * 0.025)  # 141,300
    # before 2021-03-18: the same numbers, labelled as an assumption
    early = bracket_table("binance", "BTCUSDT", D(2021, 3, 17))
    assert early is not a and early.source.startswith("ASSUMED")
    np.testing.assert_array_equal(early.cap, a.cap)
    np.testing.assert_array_equal(early.cum, a.cum)


def test_dump_rows_spot_checks():
    # freqtrade a99cf2eeed (2022-02-05), BTCUSDT tier 5: 7.5M..40M, 10x, 5 %, cum 203,800
    t = bracket_table("binance", "BTCUSDT", D(2022, 3, 1))
    assert (t.floor[4], t.cap[4], t.max_leverage[4], t.mmr[4], t.cum[4]) == \
        (7.5e6, 4e7, 10, 0.05, 203_800)
    # freqtrade b8d1862ca8 (2022-11-25): tiers 3 and 4 at 25x and 15x
    np.testing.assert_array_equal(
        bracket_table("binance", "BTCUSDT", D(2022, 12, 1)).max_leverage[:5],
        [125, 100, 25, 15, 10])
    # ETHUSDT 2021-09-16 dump: 100x up to 10k at 0.5 %, 75x to 100k at 0.65 % (cum 15)
    e = bracket_table("binance", "ETHUSDT", D(2021, 12, 4))
    assert (e.cap[0], e.max_leverage[0], e.mmr[0]) == (1e4, 100, 0.005)
    assert (e.cap[1], e.max_leverage[1], e.mmr[1]) == (1e5, 75, 0.0065)
    assert e.cum[1] == pytest.approx(15, abs=1e-9)  # derived: 10,000 * (0.65 % - 0.5 %)
    # ETHUSDT reached 125x in tier 1 only with the 2024-02-03 dump
    assert bracket_table("binance", "ETHUSDT", D(2024, 2, 2)).max_leverage[0] == 100
    assert bracket_table("binance", "ETHUSDT", D(2024, 2, 3)).max_leverage[0] == 125
    # 2024-05-30 .. 2025-01-01: the early-2025 brackets (mechanics.md), in a table of its own
    late = bracket_table("binance", "BTCUSDT", D(2024, 12, 31))
    y25 = bracket_table("binance", "BTCUSDT", D(2025, 1, 1))
    assert late is not y25 and late.valid_to == y25.valid_from == D(2025, 1, 1)
    for name in ("floor", "cap", "max_leverage", "mmr", "cum"):
        np.testing.assert_array_equal(getattr(late, name), getattr(y25, name))


# --- hand-checked liquidation prices on 2021 tables -------------------------------------------

@pytest.mark.parametrize(
    "day, side, entry, size, leverage, wallet, expected, bracket",
    [
        # 2021-03-18 table. long 1 BTC @ 40,000, 20x, WB 2,000: tier 1 (0.4 %, cum 0)
        # LP = (2,000 + 0 - 40,000) / (0.004 - 1) = 38,000 / 0.996 = 38,152.6104...
        # Q*LP = 38,153 <= 50,000: tier 1, consistent.
        (D(2021, 5, 19), "long", 40_000, 1, 20, 2_000, 38_000 / 0.996, 1),
        # long 10 BTC @ 40,000 (400k), 10x, WB 40,000: at LP the notional is ~362k, tier 3
        # (250k..1M, 1 %, cum 1,300): LP = (40,000 + 1,300 - 400,000) / (10*0.01 - 10)
        # = 358,700 / 9.9 = 36,232.3232...; Q*LP = 362,323 in (250k, 1M], consistent.
        (D(2021, 5, 19), "long", 40_000, 10, 10, 40_000, 358_700 / 9.9, 3),
        # short 150 BTC @ 40,000 (6M), 5x, WB 1,200,000, 2021-03-18 table: tier 4 (1M..10M,
        # 2.5 %, cum 16,300): LP = (1,200,000 + 16,300 + 6,000,000) / (150*0.025 + 150)
        # = 7,216,300 / 153.75 = 46,935.2845...; Q*LP = 7.04M in (1M, 10M], consistent.
        (D(2021, 5, 19), "short", 40_000, 150, 5, 1_200_000, 7_216_300 / 153.75, 4),
        # the same short after the 2021-06-22 change: tier 5 is now 5M..20M (5 %,
        # cum = 16,300 + 5M*(0.05 - 0.025) = 141,300): LP = (1,200,000 + 141,300 + 6,000,000)
        # / (150*0.05 + 150) = 7,341,300 / 157.5 = 46,611.4285...; Q*LP = 6.99M in (5M, 20M].
        (D(2021, 7, 1), "short", 40_000, 150, 5, 1_200_000, 7_341_300 / 157.5, 5),
    ],
)
def test_liquidation_price_on_2021_tables(day, side, entry, size, leverage, wallet, expected,
                                          bracket):
    r = liquidation_price("binance", "BTCUSDT", side, entry, size, leverage, wallet=wallet,
                          on=day)
    assert r["liquidation_price"] == pytest.approx(expected, rel=1e-12)
    assert r["bracket"] == bracket


def test_liq_price_cli_on_2021_05_19(capsys):
    argv = ["liq-price", "--date", "2021-05-19", "--side", "long", "--entry", "40000", "--size",
            "10", "--leverage", "10", "--wallet", "40000", "--json"]
    assert cascade.cli.main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["liquidation_price"] == pytest.approx(358_700 / 9.9, rel=1e-12)
    assert r["table_valid_from"] == "2021-03-18" and r["table_valid_to"] == "2021-06-22"
    assert cascade.cli.main(argv[:-1]) == 0  # the table form names the table and its source
    out = capsys.readouterr().out
    assert "2021-03-18 to 2021-06-22" in out and "36,232.32" in out and "(2021-03-18)" in out
    # above the 2021 maximum: one clear line, exit 2
    bad = ["liq-price", "--date", "2021-05-19", "--side", "long", "--entry", "40000", "--size",
           "0.5", "--leverage", "150"]
    assert cascade.cli.main(bad) == 2
    err = capsys.readouterr().err
    assert "150x is above the maximum 125x" in err and "Traceback" not in err


# --- scenarios dated 2020 and 2021 ---------------------------------------------------------------

def _demo_in(year: int, leverages: str, symbol: str = "BTCUSDT") -> str:
    """The demo scenario moved to ``year`` with ``leverages`` (six of them)."""
    text = edit(DEMO_TEXT, population__leverages=leverages, venue__symbol=f'"{symbol}"')
    return shift_years(text, year - START.year)


def test_2020_scenario_with_125x_loads(tmp_path):
    path = tmp_path / "y2020.toml"
    path.write_text(_demo_in(2020, "[2, 5, 10, 20, 50, 125]"), encoding="utf-8")
    sc = load_scenario(path)
    assert venue_date(sc).year == 2020 and 125 in sc.population.leverages


def test_2020_scenario_above_the_dated_maximum_fails(tmp_path):
    path = tmp_path / "y2020.toml"
    path.write_text(_demo_in(2020, "[2, 5, 10, 20, 50, 126]"), encoding="utf-8")
    with pytest.raises(CascadeError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg and "[population] leverages" in msg
    assert "maximum 125x of binance BTCUSDT on 2020-01-01, got 126" in msg
    assert "\n" not in msg


def test_max_leverage_check_follows_the_date():
    # ETHUSDT tier 1 allowed 100x in 2021 and 125x from 2024-02-03
    ok = tomllib.loads(_demo_in(2024, "[2, 5, 10, 20, 50, 125]", "ETHUSDT"))
    parse_scenario(ok, source="eth2024")
    bad = tomllib.loads(_demo_in(2021, "[2, 5, 10, 20, 50, 125]", "ETHUSDT"))
    with pytest.raises(CascadeError, match=r"maximum 100x of binance ETHUSDT on 2021-09-16, "
                                           r"got 125"):
        parse_scenario(bad, source="eth2021")


def test_tiny_2021_scenario_loads_and_runs():
    from cascade.runner import run

    sc = load_scenario(TINY_2021)
    assert venue_date(sc) == D(2021, 5, 19)
    result = run(sc, positions=500)
    s = result.summary
    assert s["bracket_table_from"] == "2021-03-18"
    assert s["positions"] <= 500 and np.isfinite(s["price_min"])
    assert s["price_min"] < s["price_start"]  # the sell program moved the price down
