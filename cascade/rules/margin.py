"""Liquidation price, bankruptcy price and maintenance margin.

Formulas (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", also in
freqtrade ``freqtrade/exchange/binance.py``; Hyperliquid docs "Liquidations" give the same price
with MMR = 1/(2*max_leverage)), with ``s = +1`` long / ``-1`` short, ``Q`` the size in coin,
``EP`` the entry price and ``WB`` the wallet behind the position::

    MM = Q * mark * MMR_b - cum_b                 b: bracket containing Q * mark
    liquidated when  WB - TMM1 + UPNL1 + s*Q*(mark - EP) <= MM   (Hyperliquid: <)
    LP = (WB - TMM1 + UPNL1 + cum_b - s*Q*EP) / (Q*MMR_b - s*Q)   b: bracket containing Q * LP
    BP = EP - s*WB/Q                               (equity zero)

``TMM1``/``UPNL1`` are the maintenance margin and unrealized PnL of the account's other positions
(cross margin; 0 for isolated).

Kernels (numba, compiled lazily at the first call): :func:`liq_price_nb`,
:func:`liq_prices_nb` (parallel over positions), :func:`bankruptcy_price_nb`,
:func:`maintenance_margin_nb`, :func:`bracket_index_nb`. Calculator for people and the CLI:
:func:`liquidation_price`.
"""

from __future__ import annotations

import datetime
import math

import numba
import numpy as np

from cascade._numba import jit, pjit
from cascade.errors import CascadeError
from cascade.rules.brackets import bracket_table, normalize_symbol, venue_rules

__all__ = [
    "bankruptcy_price_nb",
    "bracket_index_nb",
    "liq_price_nb",
    "liq_prices",
    "liq_prices_nb",
    "liquidation_price",
    "maintenance_margin_nb",
    "parse_date",
]


@jit
def bracket_index_nb(notional, cap):
    """Index of the bracket containing ``notional``.

    Parameters
    ----------
    notional : float64, USD
    cap : float64 array, shape (n,), USD; bracket ``i`` is ``(cap[i-1], cap[i]]``, ``cap[-1]`` inf

    Returns
    -------
    int64
        The first ``i`` with ``notional <= cap[i]`` (0 for notionals <= 0); ``n - 1`` if none.
    """
    n = cap.shape[0]
    for i in range(n):
        if notional <= cap[i]:
            return i
    return n - 1


@jit
def liq_price_nb(side, qty, entry, wallet, other_mm, other_upnl, floor, cap, mmr, cum):
    """Liquidation price of one position (Binance formula, bracket-consistent).

    Parameters
    ----------
    side : int, +1 long / -1 short (any positive value counts as long)
    qty : float64, coin, > 0
    entry : float64, USD per coin
    wallet : float64, USD; the isolated wallet, or the cross wallet
    other_mm, other_upnl : float64, USD
        Maintenance margin and unrealized PnL of the account's other positions (0 for isolated).
    floor, cap, mmr, cum : float64 arrays, shape (n,)
        Bracket table (:class:`cascade.rules.brackets.BracketTable`); USD, USD, fraction, USD.

    Returns
    -------
    (float64, int64)
        Liquidation price in USD per coin, and the 0-based bracket containing ``qty * LP``.
        The LP is computed for every bracket from the lowest up and the first bracket whose
        notional range ``(floor, cap]`` contains ``qty * LP`` is kept (bracket 0 also takes
        notionals <= 0). A long whose LP <= 0 can never be liquidated: ``(0.0, 0)``.
        A short already liquidated at every positive price gets the bracket-0 formula value (<= 0).
        If rounding on a bracket boundary leaves no bracket exactly consistent, the LP with the
        smallest miss is kept, with the bracket that contains its notional.
        ``qty <= 0`` (no position): ``(nan, 0)``.
    """
    n = floor.shape[0]
    if not (qty > 0.0):
        return np.nan, np.int64(0)
    s = 1.0 if side > 0 else -1.0
    base = wallet - other_mm + other_upnl
    sqe = s * qty * entry
    best_lp = np.nan
    best_miss = np.inf
    for b in range(n):
        lp = (base + cum[b] - sqe) / (qty * mmr[b] - s * qty)
        if b == 0 and s > 0.0 and lp <= 0.0:
            return 0.0, np.int64(0)
        notional = qty * lp
        above_floor = b == 0 or notional > floor[b]
        below_cap = notional <= cap[b]
        if above_floor and below_cap:
            return lp, np.int64(b)
        if above_floor:
            miss = notional - cap[b]
        else:
            miss = floor[b] - notional
        if miss < best_miss:
            best_miss = miss
            best_lp = lp
    return best_lp, np.int64(bracket_index_nb(qty * best_lp, cap))


@jit
def bankruptcy_price_nb(side, qty, entry, wallet):
    """Bankruptcy price ``EP - s*WB/Q`` (equity zero), floored at 0 for longs.

    Parameters
    ----------
    side : int, +1 long / -1 short
    qty : float64, coin, > 0
    entry : float64, USD per coin
    wallet : float64, USD

    Returns
    -------
    float64, USD per coin
    """
    s = 1.0 if side > 0 else -1.0
    bp = entry - s * wallet / qty
    if s > 0.0 and bp < 0.0:
        bp = 0.0
    return bp


@jit
def maintenance_margin_nb(qty, mark, floor, cap, mmr, cum):
    """Maintenance margin ``Q*mark*MMR_b - cum_b``, bracket ``b`` by the notional ``Q*mark``.

    Parameters
    ----------
    qty : float64, coin (absolute size)
    mark : float64, USD per coin
    floor, cap, mmr, cum : float64 arrays, shape (n,); bracket table

    Returns
    -------
    float64, USD
    """
    notional = qty * mark
    b = bracket_index_nb(notional, cap)
    return notional * mmr[b] - cum[b]


@pjit
def liq_prices_nb(side, qty, entry, wallet, floor, cap, mmr, cum, out_lp, out_bracket):
    """Liquidation prices of many isolated positions (or cross with no other positions).

    Parameters
    ----------
    side : int8 array, shape (n,), +1 long / -1 short
    qty, entry, wallet : float64 arrays, shape (n,); coin, USD per coin, USD
    floor, cap, mmr, cum : float64 arrays, shape (k,); bracket table
    out_lp : float64 array, shape (n,), written: liquidation price, USD per coin
    out_bracket : int8 array, shape (n,), written: 0-based bracket containing ``qty * LP``

    Each element is computed by :func:`liq_price_nb` in exactly one iteration, so results are
    bit-identical to the scalar kernel and to any thread count.
    """
    n = side.shape[0]
    for i in numba.prange(n):
        lp, b = liq_price_nb(side[i], qty[i], entry[i], wallet[i], 0.0, 0.0, floor, cap, mmr, cum)
        out_lp[i] = lp
        out_bracket[i] = np.int8(b)


def liq_prices(table, side, qty, entry, wallet):
    """Convenience wrapper of :func:`liq_prices_nb` that allocates the outputs.

    Parameters
    ----------
    table : cascade.rules.brackets.BracketTable
    side : array-like, shape (n,), +1/-1 (converted to int8)
    qty, entry, wallet : array-like, shape (n,), float64; coin, USD per coin, USD

    Returns
    -------
    lp : float64 array, shape (n,), USD per coin
    bracket : int8 array, shape (n,), 0-based
    """
    side = np.ascontiguousarray(side, dtype=np.int8)
    qty = np.ascontiguousarray(qty, dtype=np.float64)
    entry = np.ascontiguousarray(entry, dtype=np.float64)
    wallet = np.ascontiguousarray(wallet, dtype=np.float64)
    n = side.shape[0]
    if not (qty.shape == entry.shape == wallet.shape == (n,)):
        raise ValueError("side, qty, entry and wallet must be 1-d arrays of the same length")
    out_lp = np.empty(n, dtype=np.float64)
    out_bracket = np.empty(n, dtype=np.int8)
    liq_prices_nb(side, qty, entry, wallet, table.floor, table.cap, table.mmr, table.cum,
                  out_lp, out_bracket)
    return out_lp, out_bracket


def parse_date(value, what: str = "date") -> datetime.date | None:
    """``None``, a :class:`datetime.date` or a ``YYYY-MM-DD`` string -> date (or None).

    Raises :class:`CascadeError` naming the value when it is not a date.
    """
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.datetime.strptime(value.strip(), "%Y-%m-%d").date()
        except ValueError:
            pass
    raise CascadeError(f"{what} {value!r}: expected a date in YYYY-MM-DD form")


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CascadeError(f"{name} {value!r}: expected a number") from None
    if not math.isfinite(v) or v <= 0.0:
        raise CascadeError(f"{name}: expected a positive number, got {value!r}")
    return v


def _finite(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CascadeError(f"{name} {value!r}: expected a number") from None
    if not math.isfinite(v):
        raise CascadeError(f"{name}: expected a finite number, got {value!r}")
    return v


def _fmt_usd(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:,.0f}"


def liquidation_price(venue, symbol, side, entry, size, leverage, margin="isolated", wallet=None,
                      on=None, other_mm=0.0, other_upnl=0.0) -> dict:
    """Liquidation and bankruptcy price of one position, with the bracket it falls in.

    Parameters
    ----------
    venue : str
        ``"binance"`` or ``"hyperliquid"``.
    symbol : str
        ``"BTCUSDT"``/``"ETHUSDT"`` (Hyperliquid also ``"BTC"``/``"ETH"``).
    side : str
        ``"long"`` or ``"short"``.
    entry : float
        Entry price, USD per coin, > 0.
    size : float
        Position size, coin, > 0.
    leverage : float
        Leverage, >= 1 and at most the maximum of the bracket containing ``size * entry``.
    margin : str
        ``"isolated"`` or ``"cross"``.
    wallet : float or None
        Wallet behind the position, USD (isolated wallet, or cross wallet). None: the initial
        margin ``size * entry / leverage``.
    on : datetime.date, str ``YYYY-MM-DD`` or None
        Date whose bracket table applies (None: the latest table).
    other_mm, other_upnl : float
        Cross margin only: maintenance margin and unrealized PnL of the account's other
        positions, USD.

    Returns
    -------
    dict
        ``venue, symbol, side, margin, entry_price, size, leverage, notional_usd, wallet_usd,
        other_mm_usd, other_upnl_usd, liquidation_price, liquidatable, bankruptcy_price, mmr,
        maintenance_amount, bracket, entry_bracket, max_leverage, maintenance_margin_at_liq_usd,
        liquidation_fee_rate, liquidate_on_equal, table_valid_from, table_valid_to,
        table_source``. ``mmr``, ``maintenance_amount`` and ``bracket`` (1-based) are those of
        the bracket containing the notional at the liquidation price; ``max_leverage`` and
        ``entry_bracket`` (1-based) those of the bracket containing the entry notional.
        A long that cannot be liquidated at any positive price has ``liquidation_price`` 0.0
        and ``liquidatable`` False. Dates are ISO strings.

    Raises
    ------
    CascadeError
        Unknown venue, symbol, side or margin mode; non-positive entry, size, leverage or wallet;
        leverage above the bracket's maximum; a date before the earliest table.
    """
    side_s = str(side).strip().lower()
    if side_s not in ("long", "short"):
        raise CascadeError(f"unknown side {side!r}; expected long or short")
    margin_s = str(margin).strip().lower()
    if margin_s not in ("isolated", "cross"):
        raise CascadeError(f"unknown margin mode {margin!r}; expected isolated or cross")
    entry_f = _positive("entry price", entry)
    size_f = _positive("size", size)
    lev_f = _positive("leverage", leverage)
    if lev_f < 1.0:
        raise CascadeError(f"leverage {leverage!r} is below 1x; expected 1x up to the "
                           "bracket maximum")
    other_mm_f = _finite("other maintenance margin", other_mm)
    other_upnl_f = _finite("other uPnL", other_upnl)
    if other_mm_f < 0.0:
        raise CascadeError(f"other maintenance margin: expected a number >= 0, got {other_mm!r}")
    if margin_s == "isolated" and (other_mm_f != 0.0 or other_upnl_f != 0.0):
        raise CascadeError("other maintenance margin / uPnL apply only to cross margin; expected 0 "
                           f"with isolated margin (got {other_mm_f:g} / {other_upnl_f:g} with isolated margin)")
    date = parse_date(on)

    venue_s = str(venue).strip().lower()
    symbol_s = normalize_symbol(venue_s, symbol)  # raises for an unknown venue/symbol
    rules = venue_rules(venue_s, symbol_s)
    table = bracket_table(venue_s, symbol_s, date)

    notional = size_f * entry_f
    eb = table.bracket_of(notional)
    max_lev = float(table.max_leverage[eb])
    if lev_f > max_lev:
        raise CascadeError(
            f"leverage {lev_f:g}x is above the maximum {max_lev:g}x for a notional of "
            f"{notional:,.2f} USD on {venue_s} {symbol_s}: bracket {eb + 1} "
            f"({_fmt_usd(table.floor[eb])} to {_fmt_usd(table.cap[eb])} USD) allows at most "
            f"{max_lev:g}x; expected a leverage up to {max_lev:g}x"
        )
    if wallet is None:
        wallet_f = notional / lev_f
    else:
        wallet_f = _positive("wallet", wallet)

    s = 1 if side_s == "long" else -1
    lp, b = liq_price_nb(s, size_f, entry_f, wallet_f, other_mm_f, other_upnl_f,
                         table.floor, table.cap, table.mmr, table.cum)
    lp = float(lp)
    b = int(b)
    liquidatable = not (s > 0 and lp == 0.0)
    # Bankruptcy: equity (wallet + other positions' uPnL + this position's PnL) reaches zero.
    bp = float(bankruptcy_price_nb(s, size_f, entry_f, wallet_f + other_upnl_f))
    mm_at_liq = size_f * lp * float(table.mmr[b]) - float(table.cum[b])

    return {
        "venue": venue_s,
        "symbol": symbol_s,
        "side": side_s,
        "margin": margin_s,
        "entry_price": entry_f,
        "size": size_f,
        "leverage": lev_f,
        "notional_usd": notional,
        "wallet_usd": wallet_f,
        "other_mm_usd": other_mm_f,
        "other_upnl_usd": other_upnl_f,
        "liquidation_price": lp,
        "liquidatable": liquidatable,
        "bankruptcy_price": bp,
        "mmr": float(table.mmr[b]),
        "maintenance_amount": float(table.cum[b]),
        "bracket": b + 1,
        "entry_bracket": eb + 1,
        "max_leverage": max_lev,
        "maintenance_margin_at_liq_usd": mm_at_liq,
        "liquidation_fee_rate": rules.liquidation_fee_rate,
        "liquidate_on_equal": rules.liquidate_on_equal,
        "table_valid_from": table.valid_from.isoformat(),
        "table_valid_to": None if table.valid_to is None else table.valid_to.isoformat(),
        "table_source": table.source,
    }
