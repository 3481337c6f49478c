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

Coverage: the earliest table of every venue starts on 2025-01-01; older dates are not covered
(:func:`bracket_table` raises :class:`~cascade.errors.CascadeError` for them).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from cascade.errors import CascadeError

VENUES: tuple[str, ...] = ("binance", "hyperliquid")

# Earliest date any table covers.
COVERAGE_START = datetime.date(2025, 1, 1)


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


# Dates: the freqtrade dumps show the early-2025 brackets until about 2025-06-12, the 125x
# variant of the 2025H2 brackets from about 2025-06-19, and tier 1 at 150x from about 2025-08-14.
# No dump covers 2025-06-12..2025-06-19; that gap is assigned to the 125x variant (the brackets
# are the 2025H2 ones there already, only tier 1's leverage is uncertain and 125x is the cautious
# choice).  ETHUSDT is given the same three periods as BTCUSDT (mechanics.md gives its early and
# 2025H2 tables; the 125x->150x change date is assumed the same as BTCUSDT's).
_EARLY_END = _D(2025, 6, 12)
_H2_START = _D(2025, 8, 14)

_TABLES: dict[tuple[str, str], tuple[BracketTable, ...]] = {}
for _sym, _h2 in (("BTCUSDT", _BTC_2025H2), ("ETHUSDT", _ETH_2025H2)):
    _TABLES[("binance", _sym)] = (
        _table("binance", _sym, COVERAGE_START, _EARLY_END,
               _SRC_BINANCE + "; early-2025 brackets (before ~2025-06-12); "
               "dates before 2025-01-01 are not covered", _early_2025(_h2)),
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
# One table each, valid from 2025-01-01 (older dates are not covered).
# ---------------------------------------------------------------------------------------------
_SRC_HL = (
    "Hyperliquid docs 'Margin tiers' and 'Liquidations' (MMR = 1/(2*max_leverage), "
    "deduction built like Binance cum); freqtrade/exchange/hyperliquid.py"
)


def _hl_rows(tiers):
    """``tiers``: (floor, cap, max_leverage) -> rows with MMR = 1/(2*max_leverage)."""
    return [(f, c, lev, 1.0 / (2.0 * lev)) for (f, c, lev) in tiers]


_TABLES[("hyperliquid", "BTCUSDT")] = (
    _table("hyperliquid", "BTCUSDT", COVERAGE_START, None, _SRC_HL + "; BTC perp",
           _hl_rows([(0, 150 * _M, 40), (150 * _M, np.inf, 20)])),
)
_TABLES[("hyperliquid", "ETHUSDT")] = (
    _table("hyperliquid", "ETHUSDT", COVERAGE_START, None, _SRC_HL + "; ETH perp",
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


def bracket_table(venue: str, symbol: str, on: datetime.date | None = None) -> BracketTable:
    """The bracket table of ``symbol`` on ``venue`` in force on ``on`` (None: the latest).

    Raises
    ------
    CascadeError
        Unknown venue or symbol (the message lists the accepted ones), or a date before the
        earliest table (2025-01-01).
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
    raise CascadeError(
        f"no {tables[0].venue} {tables[0].symbol} bracket table for {on.isoformat()}: "
        f"tables cover {first.isoformat()} onwards; older dates are not covered (expected a date from "
        f"{first.isoformat()} on)"
    )
