"""Slow, obvious reference for the output tables (:mod:`cascade.outputs`): the frames built the
way they first were, position by venue with Python strings and ``DataFrame.iloc``, from the
engine state after a run. :class:`cascade.outputs.PositionTable` builds them lazily, for all rows
or only the records' rows; tests/test_outputs.py checks both give identical frames and files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cascade.engine.layout import (
    DELEVERAGED,
    DORMANT,
    HEAPED,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    L_END,
    L_OFF,
    LIQUIDATED,
    OPEN,
    STOPPED,
    TRIGGERED,
)
from cascade.outputs import LIQUIDATION_COLUMNS, POSITION_COLUMNS

_STATUS = {OPEN: "open", HEAPED: "open", LIQUIDATED: "liquidated", STOPPED: "stopped",
           DELEVERAGED: "deleveraged", DORMANT: "not_opened"}


def positions_frame(state, pops, names: list[str]) -> pd.DataFrame:
    """Every position's final state, columns :data:`POSITION_COLUMNS`, one row per population row
    (venues in order, as ``records['pos']``).

    state : the :class:`~cascade.engine.EngineState` after the run; pops : its populations;
    names : venue names ('' for a single-venue run)."""
    from cascade.rules.margin import liq_prices_nb

    parts = []
    rec = state.records
    for v, p in enumerate(pops):
        a, b = int(state.lay[v, L_OFF]), int(state.lay[v, L_END])
        n0 = p.n_ladder
        status = state.status[a:b]
        entry = state.entry[a:b].copy()
        opened = np.ones(b - a, bool)
        opened[n0:] = ~np.isnan(entry[n0:])
        wallet_open = np.full(b - a, np.nan)
        wallet_open[:n0] = p.wallet[:n0]
        lp_open = np.full(b - a, np.nan)
        lp_open[:n0] = p.lp[:n0]
        mine = rec[(rec["venue"] == v) & (rec["kind"] == KIND_ENTRY)
                   & ~np.isnan(rec["fill_price"])]
        if mine.size:
            i = mine["pos"] - a
            wallet_open[i] = p.qty[i] * mine["fill_price"] * p.entry_margin[i - n0]
            tb = state.tables[v]
            out_b = np.empty(i.size, np.int8)
            out_lp = np.empty(i.size)
            liq_prices_nb(p.side[i], p.qty[i], mine["fill_price"].astype(np.float64),
                          wallet_open[i], tb.floor, tb.cap, tb.mmr, tb.cum, out_lp, out_b)
            lp_open[i] = out_lp
        text = np.array([_STATUS.get(int(s), "") for s in range(7)], dtype=object)[status]
        text[(status == TRIGGERED) & opened] = "closing"
        text[(status == TRIGGERED) & ~opened] = "not_opened"
        parts.append(pd.DataFrame({
            "row": np.arange(a, b, dtype=np.int64),
            "venue": names[v] if v < len(names) else "",
            "origin": np.where(np.arange(b - a) < n0, "held", "entry"),
            "side": np.where(p.side > 0, "long", "short"),
            "status": text.astype(str),
            "qty_start": p.qty.astype(np.float64),
            "qty": state.qty[a:b],
            "entry_price": np.where(opened, entry, np.nan),
            "wallet_open_usd": wallet_open,
            "wallet_usd": np.where(opened, state.wallet[a:b], np.nan),
            "funding_paid_usd": state.funding_paid[a:b],
            "liquidation_price_open": lp_open,
            "liquidation_price": np.where(opened, state.lp[a:b], np.nan),
        }))
    if not parts:
        return pd.DataFrame({k: [] for k in POSITION_COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(POSITION_COLUMNS)]


def _fund_price(rec: np.ndarray, pos: pd.DataFrame) -> np.ndarray:
    """Price of each record's takeover into the fund's inventory (NaN where ``fund_qty`` is 0):
    a backstop's is its fill (the mark at its trigger); an IOC liquidation's, the bankruptcy
    price of the position as it was liquidated (its last qty, entry and wallet: those of
    ``pos``, the position's row), computed as the engine computed it."""
    from cascade.rules.margin import bankruptcy_price_nb

    out = np.full(rec.size, np.nan)
    took = rec["fund_qty"] > 0
    back = took & (rec["kind"] == KIND_BACKSTOP)
    out[back] = rec["fill_price"][back]
    ioc = np.flatnonzero(took & (rec["kind"] == KIND_LIQ))
    if ioc.size:
        p = pos.iloc[ioc]
        sgn = np.where(p["side"].to_numpy() == "long", 1, -1)
        for j, s, q, ep, w in zip(ioc, sgn, p["qty"].to_numpy(), p["entry_price"].to_numpy(),
                                  p["wallet_usd"].to_numpy()):
            out[j] = bankruptcy_price_nb(s, q, ep, w)
    return out


def liquidations_frame(rec: np.ndarray, positions: pd.DataFrame, times) -> pd.DataFrame:
    """One row per record (RECORD_DTYPE (k,), ``pos`` global), columns
    :data:`LIQUIDATION_COLUMNS`; the position's fields come from ``positions``
    (:func:`positions_frame`); ``times``: the step start times."""
    i = rec["pos"].astype(np.int64)
    pos = positions.iloc[i] if len(positions) else positions
    closed = ~pos["status"].isin(["open", "closing", "not_opened"]).to_numpy()
    kind = np.array(["", "liquidation", "stop", "entry", "partial", "backstop", "adl"])
    df = pd.DataFrame({
        "trigger_time": np.asarray(times)[rec["trigger_step"]],
        "kind": kind[rec["kind"]],
        "venue": pos["venue"].to_numpy(),
        "side": pos["side"].to_numpy(),
        "qty": rec["qty"],
        "entry_price": pos["entry_price"].to_numpy(),
        "wallet_open_usd": pos["wallet_open_usd"].to_numpy(),
        "wallet_close_usd": np.where(closed, pos["wallet_usd"].to_numpy(), np.nan),
        "funding_paid_usd": pos["funding_paid_usd"].to_numpy(),
        "liquidation_price_open": pos["liquidation_price_open"].to_numpy(),
        "trigger_price": rec["trigger_price"],
        "fill_price": rec["fill_price"],
        "fund_delta_usd": rec["fund_delta"],
        "clearance_fee_usd": rec["fee"],
        "adl_qty": rec["adl_qty"],
        "adl_price": rec["adl_price"],
        "ioc_qty": rec["ioc_qty"],
        "ioc_fill_price": np.where(rec["ioc_qty"] > 0, rec["ioc_fill"], np.nan),
        "fund_qty": rec["fund_qty"],
        "fund_price": _fund_price(rec, pos),
        "row": i,
    })
    return df[list(LIQUIDATION_COLUMNS)]
