"""Partial liquidation: tier step-down (Bybit, OKX) and Hyperliquid's 20 % / backstop rules.

Every rule comes from ``../shared/reference/mechanics.md`` (read on 2026-11-21), which condenses
the venues' documentation; the section is cited next to each.

* Binance (section 1, "Liquidation process"): one IOC order for the **whole** position, limit at
  the bankruptcy price. mechanics.md documents no partial liquidation for Binance, so there is no
  Binance kernel here (the engine's full close is the documented behaviour).
* Bybit (section 2, "Liquidation Process (USDT Contract)"): in the lowest risk tier the engine
  takes over at the bankruptcy price; in higher tiers it first lowers the risk limit, then sends a
  fill-or-kill order for the part above the lower tier's allowance, then takes over the rest.
* OKX (section 2, "Introduction to Auto-deleveraging"): margin ratio
  ``(margin + UPL) / (|n| * face * mark * (MMR_tier + taker fee))``, liquidated at <= 100 %;
  tier >= 3 and still above the tier-1 requirement: reduce by two tiers, recheck, repeat;
  otherwise full takeover at the bankruptcy price.
* Section 5 (all venues): "(tiered venues) step down tiers; recheck".
* Hyperliquid (section 3, "Liquidations"): liquidated when equity < MM at mark; positions above
  100k USDC notional are liquidated 20 % at a time; for 30 s after a partial, liquidation orders
  are for the whole position; below 2/3 of MM the liquidator vault (HLP) takes the position and
  its margin.

How the kernels read those rules where mechanics.md is silent (each listed as a gap):

* A tier's "allowance" is its notional cap at the mark price: stepping down to tier ``j`` closes
  ``Q - cap_j / mark`` coin, so the rest sits exactly at ``cap_j`` (inside tier ``j``; brackets are
  ``(floor, cap]``).
* The closed part is filled at ``fill`` (an input: the market's price for that order); its
  realised PnL ``s * q_closed * (fill - EP)`` is booked into the wallet, which stays with the
  remaining position (nothing is said about margin released by a forced reduction; keeping it is
  what makes the "recheck" meaningful, since with ``fill == mark`` the equity is unchanged and only
  the maintenance margin falls). No fee is charged on the reduction (none documented).
* Bybit lowers the risk limit by one tier and rechecks once (``max_steps = 1``); if still
  liquidatable, the rest is taken over. How many tiers the limit drops, and whether it repeats, is
  not documented. Bybit's maintenance margin uses ``MM = N * MMR_b - cum_b`` (the notation of
  mechanics.md); Bybit's own MM formula and trigger equality are not given (``<=`` is used).
* OKX: "tier >= 3" is 1-based (0-based ``b >= 2``); "above the tier-1 requirement" is read as a
  margin ratio above 100 % with the tier-1 MMR; OKX's requirement has no maintenance amount (cum)
  and is computed on the notional at mark. OKX defines tiers by position size; the tables here are
  by notional (the project's convention). The taker fee is an input (no value in mechanics.md).
* OKX's requirement has no maintenance amount, so it jumps where the notional crosses a tier
  boundary and cascade.rules.margin's single-root LP does not apply; a position stepped down to exactly
  the lower tier's cap is liquidated again as soon as its notional exceeds that cap (a short on
  any rise; a long too, on a rise) unless its equity covers the higher tier's requirement there.
  :func:`okx_liq_prices_nb` gives the exact first crossing in each direction.
* Hyperliquid: "within 30 s after a partial" is ``t - t_last_partial < 30``; 20 % is of the
  current size; the backstop check comes first; on a partial the wallet keeps the closed part's
  realised PnL as above.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from cascade._numba import jit
from cascade.rules.margin import bankruptcy_price_nb, bracket_index_nb, liq_price_nb

__all__ = [
    "BYBIT_MAX_STEPS",
    "BYBIT_MIN_TIER",
    "BYBIT_TIERS_PER_STEP",
    "HL_BACKSTOP",
    "HL_BACKSTOP_FRACTION",
    "HL_COOLDOWN_S",
    "HL_FULL",
    "HL_NONE",
    "HL_PARTIAL",
    "HL_PARTIAL_FRACTION",
    "HL_PARTIAL_MIN_NOTIONAL",
    "OKX_MIN_TIER",
    "OKX_TIERS_PER_STEP",
    "OUTCOME_NONE",
    "OUTCOME_PARTIAL",
    "OUTCOME_TAKEOVER",
    "bybit_partial",
    "hl_backstop_nb",
    "hl_liquidation_nb",
    "okx_liq_prices_nb",
    "okx_partial",
    "StepDownRule",
    "tier_step_down_nb",
]

# --- outcomes of tier_step_down_nb ---
OUTCOME_NONE = 0      # not liquidatable: nothing happens
OUTCOME_PARTIAL = 1   # reduced; the rest is no longer liquidatable and stays open
OUTCOME_TAKEOVER = 2  # the rest (after any reductions) is taken over at its bankruptcy price

# --- constants (source: mechanics.md, read 2026-11-21) ----------------------------------------
# Bybit: partial only above the lowest risk tier; lowers the risk limit to "the lower tier"
# (mechanics.md section 2, Bybit "Liquidation Process (USDT Contract)"). One tier, one recheck:
# our reading (the number of tiers and repetitions is not documented).
BYBIT_MIN_TIER = 1          # 0-based: any tier above the lowest
BYBIT_TIERS_PER_STEP = 1
BYBIT_MAX_STEPS = 1
# OKX: "Tier >= 3 ... reduce by two tiers, recheck, repeat" (mechanics.md section 2, OKX
# "Introduction to Auto-deleveraging"); tier 3 is 0-based 2.
OKX_MIN_TIER = 2
OKX_TIERS_PER_STEP = 2
# Hyperliquid (mechanics.md section 3, Hyperliquid docs "Liquidations"):
HL_PARTIAL_MIN_NOTIONAL = 100_000.0  # USDC; positions above it are liquidated 20 % at a time
HL_PARTIAL_FRACTION = 0.2            # 20 % of the position per liquidation order
HL_COOLDOWN_S = 30.0                 # for 30 s after a partial, orders are for the whole position
HL_BACKSTOP_FRACTION = 2.0 / 3.0     # below 2/3 of MM the liquidator vault takes over

# --- actions of hl_liquidation_nb ---
HL_NONE = 0      # equity >= MM: not liquidatable
HL_PARTIAL = 1   # market order for 20 % of the size
HL_FULL = 2      # market order for the whole position
HL_BACKSTOP = 3  # the liquidator vault takes the position and its margin


@jit
def _requirement(notional, b, mmr, cum, fee_rate, use_cum):
    """Maintenance requirement of a notional in bracket ``b``: N*(MMR_b + fee) - cum_b."""
    r = notional * (mmr[b] + fee_rate)
    if use_cum:
        r -= cum[b]
    return r


@jit
def _liquidatable(equity, requirement, liq_on_equal):
    return equity < requirement or (liq_on_equal and equity == requirement)


StepDownRule = namedtuple("StepDownRule", "tiers_per_step min_tier max_steps tier1_guard "
                                          "fee_rate use_cum liq_on_equal")
StepDownRule.__doc__ = """The parameters of a tiered step-down (:func:`tier_step_down_nb`):
tiers_per_step, min_tier, max_steps : int; tier1_guard : bool; fee_rate : float64, fraction
added to every tier's MMR (OKX taker fee; 0 otherwise); use_cum : bool, subtract the tier's
maintenance amount; liq_on_equal : bool, liquidated when equity == requirement."""


@jit
def tier_step_down_nb(side, qty, entry, wallet, mark, fill, tab, rule):
    """Tiered partial liquidation ("step down tiers; recheck", mechanics.md sections 2 and 5,
    read 2026-11-21).

    With ``b`` the tier of the notional ``Q * mark``, equity ``E = WB + s*Q*(mark - EP)`` and the
    requirement ``R_b = Q*mark*(MMR_b + fee_rate) - (cum_b if use_cum)``:

    1. ``E > R_b`` (or ``==`` when not ``liq_on_equal``): not liquidatable, nothing happens.
    2. While liquidatable: if ``b < min_tier``, or ``max_steps`` reductions were made, or
       ``tier1_guard`` and ``E <= R`` computed with tier 0: the rest is taken over at its
       bankruptcy price. Otherwise step down to ``t = max(b - tiers_per_step, 0)``: keep
       ``cap_t / mark`` coin, close the rest at ``fill`` (realised PnL into the wallet), recompute
       ``E`` and ``b`` and recheck.

    Presets (:data:`StepDownRule` fields in order): Bybit ``(1, 1, 1, False, 0.0, True, True)``,
    OKX ``(2, 2, large, True, taker fee, False, True)`` (see :func:`bybit_partial`,
    :func:`okx_partial`).

    Parameters
    ----------
    side : int, +1 long / -1 short
    qty, entry, wallet : float64; coin (> 0), USD per coin, USD (isolated wallet)
    mark : float64, USD per coin, > 0; the price the check and the tier use
    fill : float64, USD per coin; the price the reductions fill at
    tab : :data:`cascade.rules.brackets.BracketArrays`, the tier table (notional, USD)
    rule : :data:`StepDownRule`

    Returns
    -------
    (outcome, steps, closed_qty, qty_left, wallet_left, realized_pnl, tier_left)
        outcome : int, OUTCOME_NONE / OUTCOME_PARTIAL / OUTCOME_TAKEOVER
        steps : int, reductions made
        closed_qty : float64, coin sold (long) / bought (short) at ``fill`` by the reductions
        qty_left : float64, coin: the surviving position (PARTIAL, NONE) or the part taken over
            at its bankruptcy price ``EP - s*wallet_left/qty_left`` (TAKEOVER)
        wallet_left : float64, USD, wallet after the reductions' realised PnL
        realized_pnl : float64, USD, ``s * closed_qty * (fill - EP)``, summed over the steps
        tier_left : int, tier of ``qty_left * mark``
    """
    cap, mmr, cum = tab.cap, tab.mmr, tab.cum
    tiers_per_step, min_tier, max_steps, tier1_guard, fee_rate, use_cum, liq_on_equal = rule
    s = 1.0 if side > 0 else -1.0
    q = qty
    w = wallet
    b = bracket_index_nb(q * mark, cap)
    equity = w + s * q * (mark - entry)
    if not _liquidatable(equity, _requirement(q * mark, b, mmr, cum, fee_rate, use_cum),
                         liq_on_equal):
        return OUTCOME_NONE, 0, 0.0, q, w, 0.0, b
    steps = 0
    closed = 0.0
    realized = 0.0
    while True:
        if b < min_tier or steps >= max_steps:
            return OUTCOME_TAKEOVER, steps, closed, q, w, realized, b
        if tier1_guard and not (equity > _requirement(q * mark, 0, mmr, cum, fee_rate, use_cum)):
            return OUTCOME_TAKEOVER, steps, closed, q, w, realized, b
        t = b - tiers_per_step
        t = max(t, 0)
        q_new = cap[t] / mark
        while q_new * mark > cap[t]:  # keep the rest inside tier t despite rounding
            q_new = np.nextafter(q_new, 0.0)
        if q_new >= q:  # already within the allowance (cannot happen for b > t)
            return OUTCOME_TAKEOVER, steps, closed, q, w, realized, b
        qc = q - q_new
        pnl = s * qc * (fill - entry)
        w += pnl
        realized += pnl
        closed += qc
        q = q_new
        steps += 1
        b = bracket_index_nb(q * mark, cap)
        equity = w + s * q * (mark - entry)
        if not _liquidatable(equity, _requirement(q * mark, b, mmr, cum, fee_rate, use_cum),
                             liq_on_equal):
            return OUTCOME_PARTIAL, steps, closed, q, w, realized, b


@jit
def _ratio_gap(side, qty, entry, wallet, price, b, mmr, fee_rate):
    """OKX: equity - requirement at ``price`` in tier ``b`` (no maintenance amount)."""
    s = 1.0 if side > 0 else -1.0
    return wallet + s * qty * (price - entry) - qty * price * (mmr[b] + fee_rate)


@jit
def okx_liq_prices_nb(side, qty, entry, wallet, mark, floor, cap, mmr, fee_rate):
    """Prices at which OKX's documented margin ratio first reaches 100 %, below and above mark.

    Requirement ``Q*P*(MMR_b + fee)`` with ``b`` the tier of ``Q*P`` (mechanics.md section 2,
    OKX). Without a maintenance amount this requirement **jumps** where the notional crosses a
    tier boundary, so cascade.rules.margin's single-root formula does not apply: a position can become
    liquidatable exactly as its notional enters a higher tier. That matters right after a
    step-down, which leaves the notional exactly at the lower tier's cap: a short (and a long, if
    the price rises) is liquidated again as soon as the notional exceeds that cap, unless its
    equity covers the higher tier's requirement there.

    Walking the tiers away from the mark in each direction, the first price where
    ``equity <= requirement`` is returned (at a tier's lower boundary, the price where the notional
    enters that tier).

    Parameters
    ----------
    side : int, +1/-1
    qty, entry, wallet, mark : float64; coin, USD per coin, USD, USD per coin
    floor, cap, mmr : float64 arrays, shape (k,), tier table by notional
    fee_rate : float64, taker fee added to the MMR, fraction

    Returns
    -------
    (float64, float64): ``(down, up)``, USD per coin. ``down``: highest price <= mark at which the
    position is liquidatable (0.0 if none above 0); ``up``: lowest price >= mark (``inf`` if
    none). ``down == up == mark`` when it is liquidatable at the mark.
    """
    s = 1.0 if side > 0 else -1.0
    b0 = bracket_index_nb(qty * mark, cap)
    down = 0.0
    b = b0
    hi = mark
    while b >= 0:
        if _ratio_gap(side, qty, entry, wallet, hi, b, mmr, fee_rate) <= 0.0:
            down = hi
            break
        lo = floor[b] / qty if b > 0 else 0.0
        if s > 0.0:  # equity - requirement rises with the price inside a tier: one root
            r = (wallet - qty * entry) / (qty * (mmr[b] + fee_rate - 1.0))
            if r >= lo and r < hi:
                down = max(r, 0.0)
                break
        b -= 1
        hi = min(lo, mark)
    up = np.inf
    b = b0
    lo = mark
    n = cap.shape[0]
    while b < n:
        if _ratio_gap(side, qty, entry, wallet, lo, b, mmr, fee_rate) <= 0.0:
            up = lo
            break
        top = cap[b] / qty
        if s < 0.0:  # equity - requirement falls with the price inside a tier: one root
            r = (wallet + qty * entry) / (qty * (mmr[b] + fee_rate + 1.0))
            if r > lo and r <= top:
                up = r
                break
        b += 1
        lo = max(top, mark)  # rounding can leave cap/Q a hair below the mark
    return down, up


_OUTCOME_NAMES = {OUTCOME_NONE: "none", OUTCOME_PARTIAL: "partial", OUTCOME_TAKEOVER: "takeover"}


def _result(res, side, entry, mark, table_arrays):
    outcome, steps, closed, q, w, realized, tier = res
    out = {
        "outcome": _OUTCOME_NAMES[int(outcome)],
        "steps": int(steps),
        "closed_qty": float(closed),
        "qty_left": float(q),
        "wallet_left": float(w),
        "realized_pnl": float(realized),
        "tier_left": int(tier),
        "equity_left": float(w + (1.0 if side > 0 else -1.0) * q * (mark - entry)),
        "bankruptcy_price": float(bankruptcy_price_nb(side, q, entry, w)),
        "liquidation_price": np.nan,
    }
    if outcome == OUTCOME_PARTIAL and table_arrays is not None:
        lp, _ = liq_price_nb(side, q, entry, w, 0.0, 0.0, *table_arrays)
        out["liquidation_price"] = float(lp)
    return out


def bybit_partial(side, qty, entry, wallet, mark, fill=None, table=None) -> dict:
    """Bybit-style step-down (mechanics.md section 2): one tier down, recheck, else takeover.

    Parameters
    ----------
    side : int, +1 long / -1 short
    qty, entry, wallet : float; coin, USD per coin, USD
    mark : float, USD per coin
    fill : float or None, USD per coin, price of the fill-or-kill reduction (None: ``mark``)
    table : cascade.rules.brackets.BracketTable or None. mechanics.md gives no Bybit risk-limit table;
        None uses the latest Binance BTCUSDT table as a stand-in (same notional-tier form).

    Returns
    -------
    dict: ``outcome`` ("none" / "partial" / "takeover"), ``steps``, ``closed_qty`` (coin),
    ``qty_left`` (coin), ``wallet_left``, ``realized_pnl``, ``equity_left`` (USD), ``tier_left``
    (0-based), ``bankruptcy_price`` of what is left (USD per coin; the takeover price for
    "takeover"), ``liquidation_price`` of the surviving position ("partial" only, else NaN; same
    formula as cascade.rules.margin).
    """
    table = _default_table(table)
    arrays = table.arrays
    res = tier_step_down_nb(int(side), float(qty), float(entry), float(wallet), float(mark),
                            float(mark if fill is None else fill), arrays,
                            StepDownRule(BYBIT_TIERS_PER_STEP, BYBIT_MIN_TIER, BYBIT_MAX_STEPS,
                                         False, 0.0, True, True))
    return _result(res, side, entry, mark, arrays)


def okx_partial(side, qty, entry, wallet, mark, fill=None, table=None, taker_fee=0.0) -> dict:
    """OKX-style step-down (mechanics.md section 2): two tiers at a time while tier >= 3 and the
    equity is above the tier-1 requirement; otherwise full takeover at the bankruptcy price.

    The requirement is ``N * (MMR_tier + taker_fee)`` (OKX margin ratio <= 100 %), no cum.

    Parameters
    ----------
    side, qty, entry, wallet, mark, fill : as :func:`bybit_partial`
    table : cascade.rules.brackets.BracketTable or None; only floor, cap and mmr are used. mechanics.md
        gives no OKX tier table; None uses the latest Binance BTCUSDT table as a stand-in.
    taker_fee : float, fraction (not given in mechanics.md)

    Returns
    -------
    dict, as :func:`bybit_partial`; for "partial", ``liquidation_price`` is the first price in
    the adverse direction at which the margin ratio reaches 100 % (:func:`okx_liq_prices_nb`),
    and ``liquidation_price_up`` (long) / ``liquidation_price_down`` (short) the first one in the
    other direction (a tier jump can liquidate a long on a rise; ``inf`` / 0.0 if none).
    """
    table = _default_table(table)
    res = tier_step_down_nb(int(side), float(qty), float(entry), float(wallet), float(mark),
                            float(mark if fill is None else fill), table.arrays,
                            StepDownRule(OKX_TIERS_PER_STEP, OKX_MIN_TIER,
                                         int(np.iinfo(np.int64).max), True, float(taker_fee),
                                         False, True))
    out = _result(res, side, entry, mark, None)
    if res[0] == OUTCOME_PARTIAL:
        down, up = okx_liq_prices_nb(int(side), out["qty_left"], float(entry),
                                     out["wallet_left"], float(mark), table.floor, table.cap,
                                     table.mmr, float(taker_fee))
        out["liquidation_price"] = float(down if side > 0 else up)
        out["liquidation_price_up" if side > 0 else "liquidation_price_down"] = \
            float(up if side > 0 else down)
    return out


def _default_table(table):
    if table is None:
        from cascade.rules.brackets import bracket_table

        table = bracket_table("binance", "BTCUSDT")
    return table


# --- Hyperliquid ------------------------------------------------------------------------------

@jit
def hl_liquidation_nb(side, qty, entry, wallet, mark, t_s, t_last_partial_s, floor, cap, mmr,
                      cum):
    """What Hyperliquid's liquidator does with a position at one check.

    mechanics.md section 3 (Hyperliquid docs "Liquidations", read 2026-11-21), with
    ``E = WB + s*Q*(mark - EP)`` and ``MM = Q*mark*MMR_b - deduction_b``:

    * ``E >= MM``: not liquidatable (HL_NONE; Hyperliquid liquidates on ``E < MM``).
    * ``E < 2/3 * MM``: the liquidator vault takes the position and its margin (HL_BACKSTOP).
    * notional ``Q*mark > 100,000`` USDC and ``t_s - t_last_partial_s >= 30``: a market order for
      20 % of the size (HL_PARTIAL).
    * otherwise (small position, or within 30 s of a partial): a market order for the whole
      position (HL_FULL).

    Parameters
    ----------
    side : int, +1/-1
    qty, entry, wallet : float64; coin, USD per coin, USD
    mark : float64, USD per coin
    t_s : float64, seconds (any origin)
    t_last_partial_s : float64, seconds, time of this position's last partial liquidation
        (``-inf``: none)
    floor, cap, mmr, cum : float64 arrays, shape (k,), Hyperliquid tier table

    Returns
    -------
    (action, close_qty, equity, mm)
        action : int, HL_NONE / HL_PARTIAL / HL_FULL / HL_BACKSTOP
        close_qty : float64, coin sent to the book (0 for NONE; the whole size for BACKSTOP,
            which the vault takes instead of the book)
        equity, mm : float64, USD
    """
    s = 1.0 if side > 0 else -1.0
    notional = qty * mark
    b = bracket_index_nb(notional, cap)
    mm = notional * mmr[b] - cum[b]
    equity = wallet + s * qty * (mark - entry)
    if not equity < mm:
        return HL_NONE, 0.0, equity, mm
    if equity < HL_BACKSTOP_FRACTION * mm:
        return HL_BACKSTOP, qty, equity, mm
    if notional > HL_PARTIAL_MIN_NOTIONAL and t_s - t_last_partial_s >= HL_COOLDOWN_S:
        return HL_PARTIAL, HL_PARTIAL_FRACTION * qty, equity, mm
    return HL_FULL, qty, equity, mm


@jit
def hl_backstop_nb(side, qty, entry, wallet, mark):
    """Value the liquidator vault receives when it takes a position and its margin.

    mechanics.md section 3: "below 2/3 of MM the liquidator vault (HLP) takes the position and its
    margin". The trader loses the wallet; the vault gets the position (size ``qty`` at ``entry``)
    plus the wallet, worth ``E = WB + s*Q*(mark - EP)`` at mark (may be negative).

    Parameters
    ----------
    side : int, +1/-1
    qty, entry, wallet, mark : float64; coin, USD per coin, USD, USD per coin

    Returns
    -------
    float64, USD
    """
    s = 1.0 if side > 0 else -1.0
    return wallet + s * qty * (mark - entry)
