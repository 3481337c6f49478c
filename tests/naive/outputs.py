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
    KIND_ENTRY,
    L_END,
    L_OFF,
    LIQUIDATED,
    OPEN,
    STOPPED,
    TRIGGERED,
)
from cascade.outputs import POSITION_COLUMNS
from cascade.outputs import liquidations_frame as _liquidations_frame

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


def liquidations_frame(rec: np.ndarray, positions: pd.DataFrame, times) -> pd.DataFrame:
    """The liquidations table as it was first built: from the whole positions frame
    (:func:`positions_frame`, read with ``DataFrame.iloc``), through
    :func:`cascade.outputs.liquidations_frame`, which takes a frame or a
    :class:`cascade.outputs.PositionTable`; the lazy table reads only the records' rows."""
    return _liquidations_frame(rec, positions, times)
