"""Engine layout: position statuses, record kinds, the indices of the state vectors, the per-step
output columns and the record dtype."""

from __future__ import annotations

import numpy as np

# position status. DORMANT: a conditional entry (see cascade.model.population) not yet triggered;
# HEAPED: open, but its liquidation price changed after the ladder was sorted (a partial
# liquidation or partial ADL), so its heap tracks it; DELEVERAGED: closed by ADL
OPEN, TRIGGERED, LIQUIDATED, STOPPED, DORMANT, HEAPED, DELEVERAGED = range(7)
# record kinds. PARTIAL: part of a position liquidated, the rest stays open; BACKSTOP: taken over
# by the liquidator vault (no market order); ADL: closed by auto-deleveraging
KIND_LIQ, KIND_STOP, KIND_ENTRY, KIND_PARTIAL, KIND_BACKSTOP, KIND_ADL = range(1, 7)

# float state vector, per venue
(S_PERM, S_TRANS, S_PRICE, S_REF, S_RV, S_LF, S_FUND, S_BAD, S_OQL, S_OQS, S_MSUM, S_Y, S_MARK,
 S_BSUM, S_EMA, S_PACC, S_PCNT, S_FLAST, S_ADLUSD, S_ADLN, S_NPART, S_BACKSTOP, S_FUNDPAID_L,
 S_FUNDPAID_S, S_INV, S_INVCOST, S_FREAL, S_TAKEOVER, S_OFFLOAD, S_OFFCOIN, S_OFFCASH, S_HEADL,
 S_HEADS, S_DEPTHNOW) = range(34)
N_STATE = 34
# S_HEADL / S_HEADS: the highest liquidation price any open ladder long may have (over the runs'
# heads and the long stray heap's top), the lowest any ladder short may have: a scan whose mark
# is beyond neither touches no ladder row (cascade.engine.ladder)
# S_INV: the fund's (or vault's) inventory, signed coin (+ long), taken over from liquidated
# positions; S_INVCOST: its cost, signed coin x average entry, USD; S_FREAL: realised PnL of the
# inventory (already in S_FUND), USD; S_TAKEOVER / S_OFFLOAD: notional taken over (at the
# bankruptcy price or the backstop mark) / offloaded into the book (at the fill), cumulative USD;
# S_OFFCOIN / S_OFFCASH: the offloads signed (+ bought): coin, and coin x fill, USD
# S_DEPTHNOW: the venue's depth per 1 % in its last step (thinned), USD; arbitrage sizes by it
# integer state vector, per venue (J_ADLT/N/P/K: two slots each, longs then shorts;
# J_ADLT: the step + 1 whose ADL queue is keyed, J_ADLN: rows in its current batch, J_ADLP: the
# next place in that batch, J_ADLK: the batch's capacity; cascade.engine.adlqueue). J_NFEV:
# funding events paid so far; J_FBASE: the event at which the ladder runs were keyed (their
# offsets count from there); J_XL / J_XS: sizes of the stray heaps (cascade.engine.ladder);
# J_HDIRTY: 1 when ADL changed the key of a heaped row this step (the heaps are rebuilt once,
# after the step's executions)
(J_NFEV, J_FBASE, J_LSPTR, J_SSPTR, J_NREC, J_FPTR, J_RING, J_HL, J_HS, J_BRING, J_BCOUNT,
 J_ADLT, _J_ADLT2, J_ADLN, _J_ADLN2, J_ADLP, _J_ADLP2, J_ADLK, _J_ADLK2, J_XL, J_XS,
 J_HDIRTY) = range(22)
N_ISTATE = 22
# the ladder's runs, per venue: one row per (side, bracket) with its place range in ``order``,
# its walk pointer (longs walk down from R_END, shorts up from R_START), bracket and side
R_START, R_END, R_PTR, R_BRACKET, R_SIDE = range(5)
N_RUN = 5
# market state: background log price, composite log price of the venues, index (weighted mean
# of the spot venues: Binance), sum of depths, oracle (weighted median: Hyperliquid)
M_X, M_COMP, M_INDEX, M_DEPTH_SUM, M_ORACLE = range(5)
N_MSTATE = 5
# market parameters: arbitrage capacity (USD per step), band (log), delay (steps); spot impact law
M_ARB_CAP, M_ARB_BAND, M_ARB_DELAY, M_SPOT_ALPHA = range(4)
N_MPARAMS = 4
# spot venue parameters: weight in the index, lag (steps), depth (USD per 1 %), impact decay and
# deviation decay per step
SP_WEIGHT, SP_LAG, SP_DEPTH, SP_DECAY, SP_REVERT = range(5)
N_SPOT = 5
# venue layout: row range and its parts, stop range (sell part first), heap and record ranges
(L_OFF, L_NLONG, L_NLADDER, L_END, L_SOFF, L_SLONG, L_SEND, L_HOFF, L_HEND, L_ROFF,
 L_REND) = range(11)
N_LAYOUT = 11

# per-step output columns (per venue)
COLUMNS = ("last_price", "mark_price", "liq_long_usd", "liq_short_usd", "liq_count", "stop_usd",
           "exo_flow_usd", "dip_flow_usd", "forced_flow_usd", "open_interest_usd", "depth_usd",
           "insurance_fund_usd", "bad_debt_usd", "iterations", "fill_price", "entry_usd",
           "index_price", "adl_usd", "adl_count", "partial_count", "funding_rate",
           "arb_flow_usd", "backstop_usd", "fund_inventory_usd", "fund_equity_usd",
           "takeover_usd", "fund_offload_usd")
(C_LAST, C_MARK, C_LIQL, C_LIQS, C_LIQN, C_STOP, C_EXO, C_DIP, C_FORCED, C_OI, C_DEPTH, C_FUND,
 C_BAD, C_ITER, C_FILL, C_ENTRY, C_INDEX, C_ADL, C_ADLN, C_PART, C_FRATE, C_ARB,
 C_BACK, C_FINV, C_FEQ, C_TAKE, C_OFFL) = range(len(COLUMNS))

RECORD_DTYPE = np.dtype([("pos", np.int32), ("kind", np.int8), ("venue", np.int8),
                         ("trigger_step", np.int32), ("exec_step", np.int32),
                         ("trigger_price", np.float64), ("fill_price", np.float64),
                         ("fund_delta", np.float64), ("fee", np.float64), ("qty", np.float64),
                         ("adl_qty", np.float64), ("adl_price", np.float64),
                         ("ioc_qty", np.float64), ("ioc_fill", np.float64),
                         ("fund_qty", np.float64)], align=True)
# ioc_qty / ioc_fill: coin of an IOC liquidation order (liquidation_order "ioc_bankruptcy") that
# filled in the book above its limit, and their mean fill price (NaN if none); fund_qty: coin
# the insurance fund (or the vault) took into its inventory

__all__ = sorted(n for n in dir() if n.isupper())
