"""The per-record and per-position output tables (liquidations.parquet, positions.parquet), with
the meaning of every column: one meaning per column, the same for every row.

With both files and summary.json a user can rebuild a run's accounting: what the traders put in
(``positions``: ``wallet_open_usd``) less what they hold at the end or got back, plus the bad
debt, plus what the funds' own trades made on their inventory (taken over at ``fund_price``,
offloaded: summary ``fund_offload_net_usd``, or held at the final mark), equals the change of
the funds' equity (cash + inventory at the final mark - its cost), the other side of every
closing trade against the trader's entry (``liquidations``: book and IOC fills, the funds'
takeovers, ADL) and the funding paid to the counterparties we do not model (``positions``:
``funding_paid_usd``). tests/test_outputs.py ``check_accounting`` derives it.
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

# column -> meaning (README "Outputs" states the same); USD unless the name says otherwise
LIQUIDATION_COLUMNS = {
    "trigger_time": "UTC start of the step the record was triggered in",
    "kind": "liquidation, partial, backstop, stop, adl (a position closed by auto-deleveraging) "
            "or entry (a conditional entry order that opened a position)",
    "venue": "venue name (empty for a single-venue run)",
    "side": "long or short: the position's side",
    "qty": "coin closed by this record (opened, for an entry); a partial or partial ADL closes "
           "part of the position. A liquidation or backstop closes qty = book part (qty - "
           "fund_qty - adl_qty, at fill_price) + fund_qty (at fund_price) + adl_qty (at "
           "adl_price)",
    "entry_price": "the position's entry price (NaN for an entry order not yet filled)",
    "wallet_open_usd": "the position's wallet when it opened: at the start of the run, or, for "
                       "an entry, qty x fill x initial margin at its fill (NaN if not filled)",
    "wallet_close_usd": "the position's wallet when it closed, after funding and the realised PnL "
                        "of partial closes; NaN while it is still open at the end",
    "funding_paid_usd": "funding the position paid over the run up to its close or the end "
                        "(negative: received)",
    "liquidation_price_open": "the position's liquidation price when it opened (NaN if not "
                              "filled)",
    "trigger_price": "the mark (liquidations) or last price (stops, entries) that triggered it",
    "fill_price": "price the order filled at (NaN: still pending at the end); for a backstop the "
                  "mark at takeover, for ADL the ADL price, for an IOC liquidation the mean fill "
                  "of its ioc_qty (the bankruptcy price if nothing filled)",
    "fund_delta_usd": "what this record added to the venue's insurance fund (negative: paid out)",
    "clearance_fee_usd": "liquidation clearance fee kept by the fund (part of fund_delta_usd)",
    "adl_qty": "coin of a liquidated position handed to auto-deleveraged positions",
    "adl_price": "price of that ADL hand-over (NaN if none)",
    "ioc_qty": "coin of an IOC liquidation order (limited at the bankruptcy price: "
               "liquidation_order ioc_bankruptcy) filled in the book; 0 for other records and "
               "for an IOC order the book did not fill",
    "ioc_fill_price": "mean price of those ioc_qty coin (NaN if ioc_qty is 0)",
    "fund_qty": "coin of the position the insurance fund (or vault) took into its inventory: "
                "the part of an IOC order the book did not fill and ADL did not cover, or the "
                "position held by the vault in a backstop (liquidation_order backstop); 0 "
                "otherwise",
    "fund_price": "price the fund took fund_qty at: the bankruptcy price (IOC liquidation) or "
                  "the mark at the trigger (backstop); NaN if fund_qty is 0",
    "row": "index of the position in positions.parquet",
}

POSITION_COLUMNS = {
    "row": "index of the position (the row of liquidations.parquet)",
    "venue": "venue name (empty for a single-venue run)",
    "origin": "held (open at the start of the run) or entry (a conditional entry order)",
    "side": "long or short",
    "status": "open (held at the end), closing (triggered, order pending at the end), "
              "liquidated, stopped, deleveraged (closed by ADL), or not_opened (an entry order "
              "never filled)",
    "qty_start": "coin at the start of the run (ordered, for an entry)",
    "qty": "coin held at the end, or when closed (after partial closes)",
    "entry_price": "entry price (NaN if never opened)",
    "wallet_open_usd": "wallet when the position opened (NaN if never opened)",
    "wallet_usd": "wallet at the end, or when closed: wallet_open_usd - funding_paid_usd + "
                  "realised PnL of partial closes (NaN if never opened)",
    "funding_paid_usd": "funding paid over the run (negative: received)",
    "liquidation_price_open": "liquidation price when the position opened (NaN if never opened)",
    "liquidation_price": "liquidation price at the end, or when closed (NaN if never opened)",
}

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
