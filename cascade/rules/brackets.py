"""Dated margin-bracket tables and venue rules (Binance USDⓈ-M, Hyperliquid).

Brackets and fees change without notice, so every table here carries the dates it was in force
and where its numbers come from; nothing outside this module should hard-code a rate.

A bracket ``i`` covers position notionals ``floor[i] < notional <= cap[i]`` (USD), the way Binance
publishes them ("0 < Position <= 50,000", Binance Futures announcements on leverage and margin
tiers); notional 0 belongs to bracket 0. The published top cap is replaced by ``inf`` (the last
bracket is extended). Maintenance margin is ``MM = notional * mmr[i] - cum[i]``; the maintenance
amounts satisfy ``cum[i] = cum[i-1] + floor[i] * (mmr[i] - mmr[i-1])``, which makes MM continuous
in the notional, so a liquidation price does not depend on which side of a boundary a notional
exactly on it is counted.

Coverage (:func:`coverage_start`; :func:`bracket_table` raises
:class:`~cascade.errors.CascadeError` for an older date):

- Binance BTCUSDT and ETHUSDT: from 2020-01-01, one table per period in which Binance's brackets
  stayed the same.  Sourced from Binance's announcements of 2021-03-18 and 2021-06-22 (BTCUSDT)
  and freqtrade's dumps of Binance's leverageBracket (2021-09-16, then 2022-02-05 onwards).
  Before the earliest sourced table (BTCUSDT 2021-03-18, ETHUSDT 2021-09-16) that table is
  *assumed* (its ``source`` starts with "ASSUMED"); where a change falls between two dumps, the
  older table is kept until the first dump that shows the newer one (each ``source`` names its
  first and last dump).
- Hyperliquid BTC and ETH: from 2025-01-01.  Its perps launched in 2023; its 2023-2024 margin
  tiers are not sourced here, so older dates raise.
"""

from __future__ import annotations

import datetime
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from cascade.errors import CascadeError

VENUES: tuple[str, ...] = ("binance", "hyperliquid")

# Earliest date any table covers (Binance; Hyperliquid's tables start later, see
# :func:`coverage_start`).
COVERAGE_START = datetime.date(2020, 1, 1)


BracketArrays = namedtuple("BracketArrays", "floor cap mmr cum")
BracketArrays.__doc__ = """A margin bracket table as the jitted kernels take it: float64 (brackets,)
notional floor and cap, USD, maintenance margin rate, maintenance amount, USD
(:attr:`BracketTable.arrays`). In the engine several venues' tables may be concatenated (ranges
in ``tb_lay``)."""


@dataclass(frozen=True, eq=False)
class BracketTable:
    """Margin brackets of one symbol on one venue, in force over ``[valid_from, valid_to)``.

    Attributes
    ----------
    venue : str
        ``"binance"`` or ``"hyperliquid"``.
    symbol : str
        Canonical symbol, ``"BTCUSDT"`` or ``"ETHUSDT"`` (Hyperliquid's BTC and ETH perps are
        filed under the same names).
    valid_from : datetime.date
        First day the table is in force.
    valid_to : datetime.date or None
        First day it is no longer in force (exclusive); ``None``: still in force.
    source : str
        Where the numbers come from.
    floor : numpy.ndarray, float64, shape (n,), USD
        Notional floor of each bracket (exclusive, except ``floor[0] == 0``).
    cap : numpy.ndarray, float64, shape (n,), USD
        Notional cap of each bracket (inclusive); ``cap[i] == floor[i+1]``, ``cap[-1] == inf``.
    max_leverage : numpy.ndarray, float64, shape (n,)
        Maximum leverage allowed for a position whose notional lies in the bracket.
    mmr : numpy.ndarray, float64, shape (n,)
        Maintenance margin rate, a fraction (0.004 = 0.40 %).
    cum : numpy.ndarray, float64, shape (n,), USD
        Maintenance amount ("cum" on Binance, "deduction" on Hyperliquid).

    The arrays are read-only; pass them straight to the kernels of :mod:`cascade.rules.margin`.
    """

    venue: str
    symbol: str
    valid_from: datetime.date
    valid_to: datetime.date | None
    source: str
    floor: np.ndarray
    cap: np.ndarray
    max_leverage: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray

    def bracket_of(self, notional: float) -> int:
        """Index (0-based) of the bracket containing ``notional`` (USD, >= 0).

        Brackets are ``(floor, cap]``; 0 and anything below fall in bracket 0.
        """
        i = int(np.searchsorted(self.cap, notional, side="left"))
        return min(i, len(self.cap) - 1)

    def covers(self, on: datetime.date) -> bool:
        """Whether the table is in force on ``on``."""
        return self.valid_from <= on and (self.valid_to is None or on < self.valid_to)

    @property
    def arrays(self) -> BracketArrays:
        """floor, cap, mmr and cum as one :data:`BracketArrays` for the kernels."""
        return BracketArrays(self.floor, self.cap, self.mmr, self.cum)

    @property
    def n(self) -> int:
        """Number of brackets."""
        return len(self.floor)


@dataclass(frozen=True)
class VenueRules:
    """Rules of a venue that are not brackets.

    Attributes
    ----------
    name : str
        Venue name.
    liquidation_fee_rate : float
        Clearance fee charged on the liquidated notional, a fraction (0.0125 = 1.25 %).
    liquidate_on_equal : bool
        ``True``: liquidated when equity <= MM (Binance); ``False``: when equity < MM
        (Hyperliquid).
    """

    name: str
    liquidation_fee_rate: float
    liquidate_on_equal: bool


def _ro(values) -> np.ndarray:
    a = np.array(values, dtype=np.float64)
    a.setflags(write=False)
    return a


def _table(venue, symbol, valid_from, valid_to, source, rows, cum=None) -> BracketTable:
    """Build a table from ``rows`` of ``(floor, cap, max_leverage, mmr[, cum])``.

    The last cap is replaced by ``inf``. When ``cum`` is None and rows have no cum column, cum is
    built from the identity ``cum_n = cum_{n-1} + floor_n * (mmr_n - mmr_{n-1})``.
    """
    floor = [float(r[0]) for r in rows]
    cap = [float(r[1]) for r in rows]
    cap[-1] = np.inf  # extend the last bracket: no position is refused for size
    max_lev = [float(r[2]) for r in rows]
    mmr = [float(r[3]) for r in rows]
    if len(rows[0]) >= 5:
        cum = [float(r[4]) for r in rows]
    else:
        cum = [0.0]
        for i in range(1, len(rows)):
            cum.append(cum[-1] + floor[i] * (mmr[i] - mmr[i - 1]))
    return BracketTable(
        venue=venue,
        symbol=symbol,
        valid_from=valid_from,
        valid_to=valid_to,
        source=source,
        floor=_ro(floor),
        cap=_ro(cap),
        max_leverage=_ro(max_lev),
        mmr=_ro(mmr),
        cum=_ro(cum),
    )


_D = datetime.date
_K = 1e3
_M = 1e6
_B = 1e9

# ---------------------------------------------------------------------------------------------
# Binance USDⓈ-M.  Source of every row below: freqtrade's dumps of Binance's
# GET /fapi/v1/leverageBracket (freqtrade/exchange/binance_leverage_tiers.json), condensed in
# /work/shared/reference/mechanics.md section 1.  Columns: notional floor, notional cap (USD),
# max leverage, maintenance margin rate, cum (USD).
# ---------------------------------------------------------------------------------------------
_SRC_BINANCE = (
    "freqtrade dumps of Binance GET /fapi/v1/leverageBracket "
    "(freqtrade/exchange/binance_leverage_tiers.json); formula: Binance FAQ "
    "'How to Calculate Liquidation Price of USDⓈ-M Futures Contracts'"
)

# BTCUSDT, second half of 2025 (in force from about 2025-08-14; tier-1 max leverage 150x).
_BTC_2025H2 = [
    (0, 300 * _K, 150, 0.004, 0),
    (300 * _K, 800 * _K, 100, 0.005, 300),
    (800 * _K, 3 * _M, 75, 0.0065, 1_500),
    (3 * _M, 12 * _M, 50, 0.010, 12_000),
    (12 * _M, 70 * _M, 25, 0.020, 132_000),
    (70 * _M, 100 * _M, 20, 0.025, 482_000),
    (100 * _M, 230 * _M, 10, 0.050, 2_982_000),
    (230 * _M, 480 * _M, 5, 0.100, 14_482_000),
    (480 * _M, 600 * _M, 4, 0.125, 26_482_000),
    (600 * _M, 800 * _M, 3, 0.150, 41_482_000),
    (800 * _M, 1.2 * _B, 2, 0.250, 121_482_000),
    (1.2 * _B, 1.8 * _B, 1, 0.500, 421_482_000),  # published cap 1.8B, extended to inf
]

# ETHUSDT, second half of 2025: the first four rows are BTCUSDT's, then its own tail.
_ETH_2025H2 = _BTC_2025H2[:4] + [
    (12 * _M, 50 * _M, 25, 0.020, 132_000),
    (50 * _M, 65 * _M, 20, 0.025, 382_000),
    (65 * _M, 150 * _M, 10, 0.050, 2_007_000),
    (150 * _M, 320 * _M, 5, 0.100, 9_507_000),
    (320 * _M, 400 * _M, 4, 0.125, 17_507_000),
    (400 * _M, 530 * _M, 3, 0.150, 27_507_000),
    (530 * _M, 800 * _M, 2, 0.250, 80_507_000),
    (800 * _M, 1.2 * _B, 1, 0.500, 280_507_000),  # published cap 1.2B, extended to inf
]


def _early_2025(h2_rows):
    """Brackets before about 2025-06-12 (BTCUSDT and ETHUSDT alike, per the freqtrade dumps):
    tiers 1-3 were (0, 50k, 125x, 0.40 %, 0), (50k, 600k, 100x, 0.50 %, 50),
    (600k, 3M, 75x, 0.65 %, 950); higher tiers had the 2025H2 bounds, leverages and rates with
    every cum 550 lower."""
    head = [
        (0, 50 * _K, 125, 0.004, 0),
        (50 * _K, 600 * _K, 100, 0.005, 50),
        (600 * _K, 3 * _M, 75, 0.0065, 950),
    ]
    tail = [(f, c, lev, m, cum - 550) for (f, c, lev, m, cum) in h2_rows[3:]]
    return head + tail


def _tier1_125x(h2_rows):
    """2025H2 brackets with tier-1 max leverage 125x instead of 150x (about 2025-06-19 to
    2025-08-14 per the freqtrade dumps)."""
    f, c, _lev, m, cum = h2_rows[0]
    return [(f, c, 125, m, cum)] + list(h2_rows[1:])


# ---------------------------------------------------------------------------------------------
# Binance USDⓈ-M, 2020-01-01 .. 2025-01-01.
#
# Sources, in the order of the tables:
#   [A21] Binance announcement "Updates to Leverage and Margin Tiers of Binance Futures Contracts
#         (2021-03-18)" (binance.com/en/support/announcement/86cf9aa472574b8cb2e05bb751c2a9a6):
#         new BTCUSDT tiers from 2021-03-18 09:00 UTC, for positions opened from then on
#         ("existing positions will not be affected"); leverage, notional bounds and MMR per tier.
#   [J21] Binance announcement "Updates on Leverage and Margin Tiers of Binance Futures Contracts
#         (2021-06-22)" (binance.com/en/support/announcement/f55d25695ca8453ab4c132c1fd4dc36a):
#         BTCUSDT tiers changed 2021-06-22 03:30 UTC, existing positions affected; its "before"
#         column is the 2021-03-18 table.
#   [F21] freqtrade commit 57c7926515 (2021-09-16), freqtrade/data/leverage_brackets.json: a dump
#         of Binance's leverage brackets as [notional floor, MMR] pairs (no leverage, no cum).
#   [FAQ] Binance FAQ 360033162192 "Leverage and Margin of USDⓈ-M Futures", an undated version
#         whose BTCUSDT leverage table is [J21]'s; it gives ETHUSDT's leverage per tier.
#   [Fxx] freqtrade/exchange/binance_leverage_tiers.json, dumps of Binance
#         GET /fapi/v1/leverageBracket with floor, cap, leverage, MMR and cum; the commit and its
#         date are named at each table.  Every cum below is the dump's; each satisfies the
#         continuity identity of the module docstring (tests/test_brackets_history.py).
#
# Rule for dates between dumps: a table stays in force until the first dump that shows its
# successor (freqtrade's commit date), unless an announcement dates the change.  Each table's
# source says "first seen"/"last seen" so the uncertainty of its bounds is visible.
# Before the earliest sourced table of a symbol (BTCUSDT 2021-03-18, ETHUSDT 2021-09-16) no
# source was found; that span uses the earliest sourced table, labelled ASSUMED in `source`.
# ---------------------------------------------------------------------------------------------
_FT = "freqtrade/exchange/binance_leverage_tiers.json"

# BTCUSDT [A21], cum derived (the announcement gives none; the derived cums equal the dump of
# freqtrade 963cc17c18, 2022-05-21, which shows the same tiers).  Published top cap 500M.
_BTC_2021_03 = [
    (0, 50 * _K, 125, 0.004),
    (50 * _K, 250 * _K, 100, 0.005),
    (250 * _K, 1 * _M, 50, 0.010),
    (1 * _M, 10 * _M, 20, 0.025),
    (10 * _M, 20 * _M, 10, 0.050),
    (20 * _M, 50 * _M, 5, 0.100),
    (50 * _M, 100 * _M, 4, 0.125),
    (100 * _M, 200 * _M, 3, 0.150),
    (200 * _M, 300 * _M, 2, 0.250),
    (300 * _M, 500 * _M, 1, 0.500),
]
# BTCUSDT [J21] (leverage, bounds, MMR; the truncated last row and its MMR from [F21], whose
# floors and MMRs are exactly these); cum derived.
_BTC_2021_06 = [
    (0, 50 * _K, 125, 0.004),
    (50 * _K, 250 * _K, 100, 0.005),
    (250 * _K, 1 * _M, 50, 0.010),
    (1 * _M, 5 * _M, 20, 0.025),
    (5 * _M, 20 * _M, 10, 0.050),
    (20 * _M, 50 * _M, 5, 0.100),
    (50 * _M, 100 * _M, 4, 0.125),
    (100 * _M, 200 * _M, 3, 0.150),
    (200 * _M, 300 * _M, 2, 0.250),
    (300 * _M, 500 * _M, 1, 0.500),
]
# BTCUSDT, freqtrade a99cf2eeed (2022-02-05; the same tiers in ccxt PR 11937, 2022-02-11, and,
# by their cums, in freqtrade 591a2fb7fc, 2022-04-16).
_BTC_2022_02 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 250 * _K, 100, 0.005, 50),
    (250 * _K, 1 * _M, 50, 0.010, 1_300),
    (1 * _M, 7.5 * _M, 20, 0.025, 16_300),
    (7.5 * _M, 40 * _M, 10, 0.050, 203_800),
    (40 * _M, 100 * _M, 5, 0.100, 2_203_800),
    (100 * _M, 200 * _M, 4, 0.125, 4_703_800),
    (200 * _M, 400 * _M, 3, 0.150, 9_703_800),
    (400 * _M, 600 * _M, 2, 0.250, 49_703_800),
    (600 * _M, 1 * _B, 1, 0.500, 199_703_800),
]
# BTCUSDT, freqtrade 963cc17c18 (2022-05-21) .. 24c1d8498 (2022-09-27), and again 31c7b3e136
# (2023-02-17): the [A21] tiers with the dump's cums.
_BTC_2022_05 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 250 * _K, 100, 0.005, 50),
    (250 * _K, 1 * _M, 50, 0.010, 1_300),
    (1 * _M, 10 * _M, 20, 0.025, 16_300),
    (10 * _M, 20 * _M, 10, 0.050, 266_300),
    (20 * _M, 50 * _M, 5, 0.100, 1_266_300),
    (50 * _M, 100 * _M, 4, 0.125, 2_516_300),
    (100 * _M, 200 * _M, 3, 0.150, 5_016_300),
    (200 * _M, 300 * _M, 2, 0.250, 25_016_300),
    (300 * _M, 500 * _M, 1, 0.500, 100_016_300),
]
# BTCUSDT, freqtrade b8d1862ca8 (2022-11-25) .. 47b50a8a2 (2023-01-13): the same bounds, MMRs
# and cums with tiers 3 and 4 lowered to 25x and 15x.
_BTC_2022_11 = [
    (f, c, {1 * _M: 25, 10 * _M: 15}.get(c, lev), m, cum) for (f, c, lev, m, cum) in _BTC_2022_05
]
# BTCUSDT, freqtrade 0e663a5bf8 (2023-03-13) .. 9c39fd6e9 (2023-07-18).
_BTC_2023_03 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 250 * _K, 100, 0.005, 50),
    (250 * _K, 3 * _M, 50, 0.010, 1_300),
    (3 * _M, 15 * _M, 20, 0.025, 46_300),
    (15 * _M, 30 * _M, 10, 0.050, 421_300),
    (30 * _M, 80 * _M, 5, 0.100, 1_921_300),
    (80 * _M, 100 * _M, 4, 0.125, 3_921_300),
    (100 * _M, 200 * _M, 3, 0.150, 6_421_300),
    (200 * _M, 300 * _M, 2, 0.250, 26_421_300),
    (300 * _M, 500 * _M, 1, 0.500, 101_421_300),
]
# BTCUSDT, freqtrade 78670602dd (2023-08-01) .. 26aa14dbfc (2023-10-30).
_BTC_2023_08 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 250 * _K, 100, 0.005, 50),
    (250 * _K, 3 * _M, 50, 0.010, 1_300),
    (3 * _M, 20 * _M, 20, 0.025, 46_300),
    (20 * _M, 40 * _M, 10, 0.050, 546_300),
    (40 * _M, 100 * _M, 5, 0.100, 2_546_300),
    (100 * _M, 120 * _M, 4, 0.125, 5_046_300),
    (120 * _M, 200 * _M, 3, 0.150, 8_046_300),
    (200 * _M, 300 * _M, 2, 0.250, 28_046_300),
    (300 * _M, 500 * _M, 1, 0.500, 103_046_300),
]
# BTCUSDT, freqtrade c9f43587ec (2023-12-12), the only dump with these tiers.
_BTC_2023_12 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 500 * _K, 100, 0.005, 50),
    (500 * _K, 8 * _M, 50, 0.010, 2_550),
    (8 * _M, 50 * _M, 20, 0.025, 122_550),
    (50 * _M, 80 * _M, 10, 0.050, 1_372_550),
    (80 * _M, 100 * _M, 5, 0.100, 5_372_550),
    (100 * _M, 120 * _M, 4, 0.125, 7_872_550),
    (120 * _M, 200 * _M, 3, 0.150, 10_872_550),
    (200 * _M, 300 * _M, 2, 0.250, 30_872_550),
    (300 * _M, 500 * _M, 1, 0.500, 105_872_550),
]
# BTCUSDT, freqtrade 2989b42760 (2024-02-03) .. d59422159 (2024-05-23).
_BTC_2024_02 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 500 * _K, 100, 0.005, 50),
    (500 * _K, 10 * _M, 50, 0.010, 2_550),
    (10 * _M, 80 * _M, 20, 0.025, 152_550),
    (80 * _M, 150 * _M, 10, 0.050, 2_152_550),
    (150 * _M, 300 * _M, 5, 0.100, 9_652_550),
    (300 * _M, 450 * _M, 4, 0.125, 17_152_550),
    (450 * _M, 600 * _M, 3, 0.150, 28_402_550),
    (600 * _M, 800 * _M, 2, 0.250, 88_402_550),
    (800 * _M, 1 * _B, 1, 0.500, 288_402_550),
]

# ETHUSDT [F21]: floors and MMRs of the 2021-09-16 dump (top floor 20M at 25 %, extended to inf);
# the dump holds no leverage.  The leverages are those of Binance FAQ 360033162192 "Leverage and
# Margin of USDⓈ-M Futures" in a version whose BTCUSDT table is the 2021-06-22 one (20x up to
# 5M): ETHUSDT 100x <= 10k, 75x <= 100k, 50x <= 500k, 25x <= 1M, 10x <= 2M, 5x <= 5M, 4x <= 10M,
# 3x <= 20M, 2x above (the same bounds as the dump's floors; the 2022-02-05 dump gives the same
# leverage to each MMR).  cum derived.
_ETH_2021_09 = [
    (0, 10 * _K, 100, 0.005),
    (10 * _K, 100 * _K, 75, 0.0065),
    (100 * _K, 500 * _K, 50, 0.010),
    (500 * _K, 1 * _M, 25, 0.020),
    (1 * _M, 2 * _M, 10, 0.050),
    (2 * _M, 5 * _M, 5, 0.100),
    (5 * _M, 10 * _M, 4, 0.125),
    (10 * _M, 20 * _M, 3, 0.150),
    (20 * _M, 40 * _M, 2, 0.250),
]
# ETHUSDT, freqtrade a99cf2eeed (2022-02-05) .. 9313a2d29 (2022-07-10).
_ETH_2022_02 = [
    (0, 10 * _K, 100, 0.005, 0),
    (10 * _K, 100 * _K, 75, 0.0065, 15),
    (100 * _K, 500 * _K, 50, 0.010, 365),
    (500 * _K, 1.5 * _M, 25, 0.020, 5_365),
    (1.5 * _M, 4 * _M, 10, 0.050, 50_365),
    (4 * _M, 10 * _M, 5, 0.100, 250_365),
    (10 * _M, 20 * _M, 4, 0.125, 500_365),
    (20 * _M, 40 * _M, 3, 0.150, 1_000_365),
    (40 * _M, 150 * _M, 2, 0.250, 5_000_365),
    (150 * _M, 500 * _M, 1, 0.500, 42_500_365),
]
# ETHUSDT, freqtrade 52ec0d1046 (2022-08-20) .. 24c1d8498 (2022-09-27).
_ETH_2022_08 = [
    (0, 100 * _K, 100, 0.005, 0),
    (100 * _K, 250 * _K, 75, 0.0065, 150),
    (250 * _K, 1 * _M, 50, 0.010, 1_025),
    (1 * _M, 5 * _M, 25, 0.020, 11_025),
    (5 * _M, 10 * _M, 10, 0.050, 161_025),
    (10 * _M, 20 * _M, 5, 0.100, 661_025),
    (20 * _M, 40 * _M, 4, 0.125, 1_161_025),
    (40 * _M, 80 * _M, 3, 0.150, 2_161_025),
    (80 * _M, 150 * _M, 2, 0.250, 10_161_025),
    (150 * _M, 300 * _M, 1, 0.500, 47_661_025),
]
# ETHUSDT, freqtrade b8d1862ca8 (2022-11-25) .. 47b50a8a2 (2023-01-13): tiers 3 and 4 at 25x
# and 15x; and 31c7b3e136 (2023-02-17): tier 4 at 20x.  Bounds, MMRs and cums as 2022-08.
_ETH_2022_11 = [
    (f, c, {1 * _M: 25, 5 * _M: 15}.get(c, lev), m, cum) for (f, c, lev, m, cum) in _ETH_2022_08
]
_ETH_2023_02 = [
    (f, c, {5 * _M: 20}.get(c, lev), m, cum) for (f, c, lev, m, cum) in _ETH_2022_08
]
# ETHUSDT, freqtrade 0e663a5bf8 (2023-03-13) .. 9c39fd6e9 (2023-07-18).
_ETH_2023_03 = [
    (0, 100 * _K, 100, 0.005, 0),
    (100 * _K, 250 * _K, 75, 0.0065, 150),
    (250 * _K, 2 * _M, 50, 0.010, 1_025),
    (2 * _M, 10 * _M, 20, 0.020, 21_025),
    (10 * _M, 25 * _M, 10, 0.050, 321_025),
    (25 * _M, 50 * _M, 5, 0.100, 1_571_025),
    (50 * _M, 60 * _M, 4, 0.125, 2_821_025),
    (60 * _M, 80 * _M, 3, 0.150, 4_321_025),
    (80 * _M, 150 * _M, 2, 0.250, 12_321_025),
    (150 * _M, 300 * _M, 1, 0.500, 49_821_025),
]
# ETHUSDT, freqtrade 78670602dd (2023-08-01) .. 26aa14dbfc (2023-10-30).
_ETH_2023_08 = [
    (0, 100 * _K, 100, 0.005, 0),
    (100 * _K, 250 * _K, 75, 0.0065, 150),
    (250 * _K, 2 * _M, 50, 0.010, 1_025),
    (2 * _M, 15 * _M, 20, 0.020, 21_025),
    (15 * _M, 30 * _M, 10, 0.050, 471_025),
    (30 * _M, 60 * _M, 5, 0.100, 1_971_025),
    (60 * _M, 80 * _M, 4, 0.125, 3_471_025),
    (80 * _M, 100 * _M, 3, 0.150, 5_471_025),
    (100 * _M, 150 * _M, 2, 0.250, 15_471_025),
    (150 * _M, 300 * _M, 1, 0.500, 52_971_025),
]
# ETHUSDT, freqtrade c9f43587ec (2023-12-12), the only dump with these tiers.
_ETH_2023_12 = [
    (0, 200 * _K, 100, 0.005, 0),
    (200 * _K, 800 * _K, 75, 0.0065, 300),
    (800 * _K, 5 * _M, 50, 0.010, 3_100),
    (5 * _M, 30 * _M, 20, 0.020, 53_100),
    (30 * _M, 50 * _M, 10, 0.050, 953_100),
    (50 * _M, 70 * _M, 5, 0.100, 3_453_100),
    (70 * _M, 80 * _M, 4, 0.125, 5_203_100),
    (80 * _M, 100 * _M, 3, 0.150, 7_203_100),
    (100 * _M, 150 * _M, 2, 0.250, 17_203_100),
    (150 * _M, 300 * _M, 1, 0.500, 54_703_100),
]
# ETHUSDT, freqtrade 2989b42760 (2024-02-03) .. d59422159 (2024-05-23).
_ETH_2024_02 = [
    (0, 50 * _K, 125, 0.004, 0),
    (50 * _K, 500 * _K, 100, 0.005, 50),
    (500 * _K, 1 * _M, 75, 0.0065, 800),
    (1 * _M, 5 * _M, 50, 0.010, 4_300),
    (5 * _M, 50 * _M, 20, 0.020, 54_300),
    (50 * _M, 100 * _M, 10, 0.050, 1_554_300),
    (100 * _M, 150 * _M, 5, 0.100, 6_554_300),
    (150 * _M, 300 * _M, 4, 0.125, 10_304_300),
    (300 * _M, 400 * _M, 3, 0.150, 17_804_300),
    (400 * _M, 500 * _M, 2, 0.250, 57_804_300),
    (500 * _M, 800 * _M, 1, 0.500, 182_804_300),
]
# From freqtrade d983572358 (2024-05-30) through 3d9514d26 (2024-10-24, the newest dump in the
# snapshot read) both symbols show exactly the early-2025 brackets of mechanics.md (same bounds,
# leverages, MMRs and cums), so _early_2025() below serves 2024-05-30 .. 2025-01-01 too.

def _chain(venue, symbol, periods, until) -> tuple[BracketTable, ...]:
    """Tables from ``periods`` of ``(valid_from, source, rows)``, oldest first; each is in force
    until the next one's ``valid_from``, the last until ``until``."""
    out = []
    for i, (start, source, rows) in enumerate(periods):
        end = periods[i + 1][0] if i + 1 < len(periods) else until
        out.append(_table(venue, symbol, start, end, source, rows))
    return tuple(out)


def _ft(commit, first, last=None):
    """Source text of a freqtrade dump (or a run of identical dumps)."""
    seen = f"first seen {first}" + (f", last seen {last}" if last else ", the only dump")
    return f"freqtrade {_FT} @ {commit} ({seen}; Binance GET /fapi/v1/leverageBracket)"


_Y2025 = _D(2025, 1, 1)
_GAP = "; the span to the next table's first dump is assigned to this table"
_A21 = ("Binance announcement 'Updates to Leverage and Margin Tiers of Binance Futures Contracts "
        "(2021-03-18)', BTCUSDT tiers from 2021-03-18 09:00 UTC; cum derived")
_J21 = ("Binance announcement 'Updates on Leverage and Margin Tiers of Binance Futures Contracts "
        "(2021-06-22)', BTCUSDT tiers from 2021-06-22 03:30 UTC; floors and MMRs also in freqtrade "
        "57c7926515 (2021-09-16) freqtrade/data/leverage_brackets.json; cum derived" + _GAP)
_F21_ETH = ("freqtrade 57c7926515 (2021-09-16) freqtrade/data/leverage_brackets.json (floors and "
            "MMRs of Binance's ETHUSDT brackets); max leverage per tier from Binance FAQ "
            "360033162192 'Leverage and Margin of USDⓈ-M Futures' (version with the 2021-06-22 "
            "BTCUSDT tiers); cum derived")

_TABLES: dict[tuple[str, str], tuple[BracketTable, ...]] = {}
_TABLES[("binance", "BTCUSDT")] = _chain("binance", "BTCUSDT", [
    (COVERAGE_START, "ASSUMED: no source found for BTCUSDT brackets before 2021-03-18; the "
     "earliest sourced table is used. Its source: " + _A21, _BTC_2021_03),
    (_D(2021, 3, 18), _A21, _BTC_2021_03),
    (_D(2021, 6, 22), _J21, _BTC_2021_06),
    (_D(2022, 2, 5), _ft("a99cf2eeed", "2022-02-05", "2022-04-16 (591a2fb7fc, by its cums)")
     + _GAP, _BTC_2022_02),
    (_D(2022, 5, 21), _ft("963cc17c18", "2022-05-21", "2022-09-27") + _GAP, _BTC_2022_05),
    (_D(2022, 11, 25), _ft("b8d1862ca8", "2022-11-25", "2023-01-13") + _GAP, _BTC_2022_11),
    (_D(2023, 2, 17), _ft("31c7b3e136", "2023-02-17") + _GAP, _BTC_2022_05),
    (_D(2023, 3, 13), _ft("0e663a5bf8", "2023-03-13", "2023-07-18") + _GAP, _BTC_2023_03),
    (_D(2023, 8, 1), _ft("78670602dd", "2023-08-01", "2023-10-30") + _GAP, _BTC_2023_08),
    (_D(2023, 12, 12), _ft("c9f43587ec", "2023-12-12") + _GAP, _BTC_2023_12),
    (_D(2024, 2, 3), _ft("2989b42760", "2024-02-03", "2024-05-23") + _GAP, _BTC_2024_02),
    (_D(2024, 5, 30), _ft("d983572358", "2024-05-30", "2024-10-24")
     + "; the same brackets as the early-2025 table", _early_2025(_BTC_2025H2)),
], until=_Y2025)
_TABLES[("binance", "ETHUSDT")] = _chain("binance", "ETHUSDT", [
    (COVERAGE_START, "ASSUMED: no source found for ETHUSDT brackets before 2021-09-16; the "
     "earliest sourced table is used. Its source: " + _F21_ETH, _ETH_2021_09),
    (_D(2021, 9, 16), _F21_ETH + _GAP, _ETH_2021_09),
    (_D(2022, 2, 5), _ft("a99cf2eeed", "2022-02-05", "2022-07-10") + _GAP, _ETH_2022_02),
    (_D(2022, 8, 20), _ft("52ec0d1046", "2022-08-20", "2022-09-27") + _GAP, _ETH_2022_08),
    (_D(2022, 11, 25), _ft("b8d1862ca8", "2022-11-25", "2023-01-13") + _GAP, _ETH_2022_11),
    (_D(2023, 2, 17), _ft("31c7b3e136", "2023-02-17") + _GAP, _ETH_2023_02),
    (_D(2023, 3, 13), _ft("0e663a5bf8", "2023-03-13", "2023-07-18") + _GAP, _ETH_2023_03),
    (_D(2023, 8, 1), _ft("78670602dd", "2023-08-01", "2023-10-30") + _GAP, _ETH_2023_08),
    (_D(2023, 12, 12), _ft("c9f43587ec", "2023-12-12") + _GAP, _ETH_2023_12),
    (_D(2024, 2, 3), _ft("2989b42760", "2024-02-03", "2024-05-23") + _GAP, _ETH_2024_02),
    (_D(2024, 5, 30), _ft("d983572358", "2024-05-30", "2024-10-24")
     + "; the same brackets as the early-2025 table", _early_2025(_ETH_2025H2)),
], until=_Y2025)

# 2025 on.  Dates: the freqtrade dumps show the early-2025 brackets until about 2025-06-12, the
# 125x variant of the 2025H2 brackets from about 2025-06-19, and tier 1 at 150x from about
# 2025-08-14.  No dump covers 2025-06-12..2025-06-19; that gap is assigned to the 125x variant
# (the brackets are the 2025H2 ones there already, only tier 1's leverage is uncertain and 125x is
# the cautious choice).  ETHUSDT is given the same three periods as BTCUSDT (mechanics.md gives
# its early and 2025H2 tables; the 125x->150x change date is assumed the same as BTCUSDT's).
_EARLY_END = _D(2025, 6, 12)
_H2_START = _D(2025, 8, 14)

for _sym, _h2 in (("BTCUSDT", _BTC_2025H2), ("ETHUSDT", _ETH_2025H2)):
    _TABLES[("binance", _sym)] += (
        _table("binance", _sym, _Y2025, _EARLY_END,
               _SRC_BINANCE + "; early-2025 brackets (before ~2025-06-12)", _early_2025(_h2)),
        _table("binance", _sym, _EARLY_END, _H2_START,
               _SRC_BINANCE + "; 2025H2 brackets with tier-1 max leverage 125x "
               "(~2025-06-19..2025-08-14; also used for the 2025-06-12..06-19 gap)",
               _tier1_125x(_h2)),
        _table("binance", _sym, _H2_START, None,
               _SRC_BINANCE + "; 2025H2 brackets, tier-1 max leverage 150x (from ~2025-08-14)",
               _h2),
    )
# ---------------------------------------------------------------------------------------------
# Hyperliquid.  Source: Hyperliquid docs "Margin tiers" (max leverage per notional tier) and
# "Liquidations" (maintenance margin = half the initial margin at max leverage, i.e.
# MMR = 1 / (2 * max_leverage); MM = notional * MMR - deduction, the deduction built like
# Binance's cum so MM is continuous); freqtrade/exchange/hyperliquid.py implements the same.
#   BTC: 0-150M at 40x (MMR 1.25 %); above 150M at 20x (2.5 %)
#   ETH: 0-100M at 25x (2 %);        above 100M at 15x (3.33 %)
# One table each, valid from 2025-01-01.  Hyperliquid's perps launched in 2023; no dated history
# of its tiers was found, so dates before 2025-01-01 are not covered (they raise).
# ---------------------------------------------------------------------------------------------
_SRC_HL = (
    "Hyperliquid docs 'Margin tiers' and 'Liquidations' (MMR = 1/(2*max_leverage), "
    "deduction built like Binance cum); freqtrade/exchange/hyperliquid.py"
)


def _hl_rows(tiers):
    """``tiers``: (floor, cap, max_leverage) -> rows with MMR = 1/(2*max_leverage)."""
    return [(f, c, lev, 1.0 / (2.0 * lev)) for (f, c, lev) in tiers]


_TABLES[("hyperliquid", "BTCUSDT")] = (
    _table("hyperliquid", "BTCUSDT", _Y2025, None, _SRC_HL + "; BTC perp",
           _hl_rows([(0, 150 * _M, 40), (150 * _M, np.inf, 20)])),
)
_TABLES[("hyperliquid", "ETHUSDT")] = (
    _table("hyperliquid", "ETHUSDT", _Y2025, None, _SRC_HL + "; ETH perp",
           _hl_rows([(0, 100 * _M, 25), (100 * _M, np.inf, 15)])),
)

# Symbol spellings accepted per venue -> canonical symbol.
_ALIASES: dict[str, dict[str, str]] = {
    "binance": {"BTCUSDT": "BTCUSDT", "ETHUSDT": "ETHUSDT"},
    "hyperliquid": {"BTC": "BTCUSDT", "BTCUSDT": "BTCUSDT", "ETH": "ETHUSDT", "ETHUSDT": "ETHUSDT"},
}

# ---------------------------------------------------------------------------------------------
# Venue rules.
#   Binance: clearance fee = the symbol's `liquidationFee` in GET /fapi/v1/exchangeInfo, 1.25 %
#     for BTCUSDT and ETHUSDT (mechanics.md section 1 step 3, Binance FAQ 360033525271; a public
#     exchangeInfo dump shows "liquidationFee": "0.012500" for both); liquidated when
#     WB + UPNL <= MM (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures
#     Contracts").
#   Hyperliquid: no clearance fee, liquidations go to the book as market orders; liquidated when
#     equity < MM (Hyperliquid docs "Liquidations").
# ---------------------------------------------------------------------------------------------
_RULES: dict[tuple[str, str], VenueRules] = {
    ("binance", "BTCUSDT"): VenueRules("binance", 0.0125, True),
    ("binance", "ETHUSDT"): VenueRules("binance", 0.0125, True),
    ("hyperliquid", "BTCUSDT"): VenueRules("hyperliquid", 0.0, False),
    ("hyperliquid", "ETHUSDT"): VenueRules("hyperliquid", 0.0, False),
}


def _canonical(venue, symbol) -> tuple[str, str]:
    v = str(venue).strip().lower()
    if v not in VENUES:
        raise CascadeError(f"unknown venue {venue!r}; accepted: {', '.join(VENUES)} (expected one of them)")
    s = str(symbol).strip().upper()
    aliases = _ALIASES[v]
    if s not in aliases:
        raise CascadeError(
            f"unknown symbol {symbol!r} for venue {v}; accepted: {', '.join(aliases)} "
            "(expected one of them)"
        )
    return v, aliases[s]


def normalize_symbol(venue: str, symbol: str) -> str:
    """Canonical symbol (``"BTCUSDT"``/``"ETHUSDT"``) for ``symbol`` on ``venue``.

    Raises :class:`CascadeError` for an unknown venue or symbol.
    """
    return _canonical(venue, symbol)[1]


def venue_rules(venue: str, symbol: str = "BTCUSDT") -> VenueRules:
    """Liquidation fee and trigger rule of ``venue`` for ``symbol``.

    Raises :class:`CascadeError` for an unknown venue or symbol.
    """
    return _RULES[_canonical(venue, symbol)]


def bracket_tables(venue: str, symbol: str) -> tuple[BracketTable, ...]:
    """All dated tables of ``symbol`` on ``venue``, oldest first."""
    return _TABLES[_canonical(venue, symbol)]


def coverage_start(venue: str, symbol: str) -> datetime.date:
    """First date any table of ``symbol`` on ``venue`` covers."""
    return bracket_tables(venue, symbol)[0].valid_from


def bracket_table(venue: str, symbol: str, on: datetime.date | None = None) -> BracketTable:
    """The bracket table of ``symbol`` on ``venue`` in force on ``on`` (None: the latest).

    Raises
    ------
    CascadeError
        Unknown venue or symbol (the message lists the accepted ones), or a date before the
        earliest table (:func:`coverage_start`: 2020-01-01 on Binance, 2025-01-01 on
        Hyperliquid).
    """
    tables = bracket_tables(venue, symbol)
    if on is None:
        return tables[-1]
    if isinstance(on, datetime.datetime):
        on = on.date()
    if not isinstance(on, datetime.date):
        raise CascadeError(f"date {on!r} is not a datetime.date")
    for t in tables:
        if t.covers(on):
            return t
    first = tables[0].valid_from
    why = _NOT_COVERED.get(tables[0].venue, "older dates are not covered")
    raise CascadeError(
        f"no {tables[0].venue} {tables[0].symbol} bracket table for {on.isoformat()}: "
        f"tables cover {first.isoformat()} onwards; {why} (expected a date from "
        f"{first.isoformat()} on)"
    )


# Why dates before a venue's first table are not covered (the end of the error message).
_NOT_COVERED = {
    "binance": "older dates are not covered (no source found for them)",
    "hyperliquid": ("older dates are not covered (Hyperliquid's perps launched in 2023; "
                    "its margin tiers before 2025 are not sourced)"),
}
