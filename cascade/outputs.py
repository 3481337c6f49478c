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

# status text of positions.parquet: the engine's status codes (OPEN..DELEVERAGED), then a
# triggered row that held a position ("closing") or was an entry order that never filled
_STATUS = {OPEN: "open", HEAPED: "open", LIQUIDATED: "liquidated", STOPPED: "stopped",
           DELEVERAGED: "deleveraged", DORMANT: "not_opened", TRIGGERED: ""}
_CLOSING = len(_STATUS)
_LABELS = tuple(_STATUS[k] for k in range(_CLOSING)) + ("closing",)


def _text(labels, codes: np.ndarray):
    """A pandas string array of ``labels[codes]`` (the dtype pandas gives Python strings), built
    by one take instead of one Python object per row."""
    return pd.array(list(labels), dtype="str").take(np.asarray(codes, np.intp))


class PositionTable:
    """Every position's final state, kept as the engine left it (its arrays, no copies): the
    frames of positions.parquet and liquidations.parquet are built from it on demand, for every
    row or only for some (O(rows asked)).

    state : the :class:`~cascade.engine.EngineState` after the run (funding settled); pops : its
    populations; names : venue names ('' for a single-venue run).
    """

    def __init__(self, state, pops, names: list[str]):
        from cascade.rules.margin import liq_prices_nb

        self.off = state.lay[:, L_OFF].astype(np.int64)
        self.end = state.lay[:, L_END].astype(np.int64)
        self.n_ladder = np.array([p.n_ladder for p in pops], np.int64)
        self.pops = list(pops)
        self.names = [names[v] if v < len(names) else "" for v in range(len(pops))]
        self.status, self.side, self.qty, self.entry = (state.status, state.side, state.qty,
                                                        state.entry)
        self.wallet, self.lp, self.funding_paid = state.wallet, state.lp, state.funding_paid
        # the conditional entries that opened: wallet and liquidation price at their fill
        rows, wallets, lps = [], [], []
        for v, p in enumerate(self.pops):
            rec = state.venue_records(v)  # ``pos`` venue-local
            mine = rec[(rec["kind"] == KIND_ENTRY) & ~np.isnan(rec["fill_price"])]
            if not mine.size:
                continue
            a, n0 = int(self.off[v]), p.n_ladder
            i = mine["pos"].astype(np.int64)
            w = p.qty[i] * mine["fill_price"] * p.entry_margin[i - n0]
            tb = state.tables[v]
            out_b = np.empty(i.size, np.int8)
            out_lp = np.empty(i.size)
            liq_prices_nb(p.side[i], p.qty[i], mine["fill_price"].astype(np.float64), w,
                          tb.floor, tb.cap, tb.mmr, tb.cum, out_lp, out_b)
            rows.append(i + a)
            wallets.append(w)
            lps.append(out_lp)
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        # one value per row, the last written (as an indexed assignment keeps it)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        last = np.ones(srt.size, bool)
        last[:-1] = srt[1:] != srt[:-1]
        self._erows = srt[last]
        pick = order[last]
        self._ewallet = (np.concatenate(wallets) if wallets else np.zeros(0))[pick]
        self._elp = (np.concatenate(lps) if lps else np.zeros(0))[pick]

    def __len__(self) -> int:
        return int(self.end[-1]) if self.end.size else 0

    def _opened(self, rows: np.ndarray, venue: np.ndarray) -> np.ndarray:
        """bool: the row held a position at some time (a held row, or an entry that filled)."""
        held = rows < self.off[venue] + self.n_ladder[venue]
        return held | ~np.isnan(self.entry[rows])

    def held_mask(self) -> np.ndarray:
        """bool (n,): positions still held at the end (status open or closing)."""
        st = self.status
        out = (st == OPEN) | (st == HEAPED)
        trig = np.flatnonzero(st == TRIGGERED)
        if trig.size:
            venue = np.searchsorted(self.end, trig, side="right")
            out[trig] = self._opened(trig, venue)
        return out

    def frame(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The positions frame (columns :data:`POSITION_COLUMNS`), of every row (``rows`` None:
        positions.parquet) or of ``rows`` (int64 global row indices, any order, repeats allowed),
        in that order with a fresh RangeIndex."""
        every = rows is None
        if every:
            rows = np.arange(len(self), dtype=np.int64)
            venue = np.repeat(np.arange(len(self.pops), dtype=np.int64), self.end - self.off)
        else:
            rows = np.asarray(rows, np.int64)
            venue = np.searchsorted(self.end, rows, side="right")
        local = rows - self.off[venue]
        held = local < self.n_ladder[venue]
        entry = self.entry.copy() if every else self.entry[rows]
        opened = held | ~np.isnan(entry)
        qty_start = np.empty(rows.size)
        wallet_open = np.full(rows.size, np.nan)
        lp_open = np.full(rows.size, np.nan)
        for v, p in enumerate(self.pops):
            if every:  # each venue's rows are one slice
                a, n0 = int(self.off[v]), p.n_ladder
                qty_start[a: int(self.end[v])] = p.qty
                wallet_open[a: a + n0] = p.wallet[:n0]
                lp_open[a: a + n0] = p.lp[:n0]
                continue
            at = venue == v
            qty_start[at] = p.qty[local[at]]
            h = at & held
            wallet_open[h] = p.wallet[local[h]]
            lp_open[h] = p.lp[local[h]]
        if self._erows.size:
            k = np.clip(np.searchsorted(self._erows, rows), 0, self._erows.size - 1)
            hit = self._erows[k] == rows
            wallet_open[hit] = self._ewallet[k[hit]]
            lp_open[hit] = self._elp[k[hit]]
        code = (self.status if every else self.status[rows]).astype(np.intp)
        trig = code == TRIGGERED
        code[trig & opened] = _CLOSING
        code[trig & ~opened] = DORMANT
        return pd.DataFrame({
            "row": rows.copy(),
            "venue": _text(self.names, venue),
            "origin": _text(("entry", "held"), held),
            "side": _text(("short", "long"), (self.side if every else self.side[rows]) > 0),
            "status": _text(_LABELS, code),
            "qty_start": qty_start,
            "qty": self.qty.copy() if every else self.qty[rows],
            "entry_price": np.where(opened, entry, np.nan),
            "wallet_open_usd": wallet_open,
            "wallet_usd": np.where(opened, self.wallet if every else self.wallet[rows], np.nan),
            "funding_paid_usd": self.funding_paid.copy() if every else self.funding_paid[rows],
            "liquidation_price_open": lp_open,
            "liquidation_price": np.where(opened, self.lp if every else self.lp[rows], np.nan),
        })


def positions_frame(state, pops, names: list[str]) -> pd.DataFrame:
    """Every position's final state, columns :data:`POSITION_COLUMNS`, one row per population row
    (venues in order, as ``records['pos']``).

    state : the :class:`~cascade.engine.EngineState` after the run; pops : its populations;
    names : venue names ('' for a single-venue run)."""
    return PositionTable(state, pops, names).frame()


def _fund_price(rec: np.ndarray, pos: pd.DataFrame) -> np.ndarray:
    """Price of each record's takeover into the fund's inventory (NaN where ``fund_qty`` is 0):
    a backstop's is its fill (the mark at its trigger); an IOC liquidation's, the bankruptcy
    price of the position as it was liquidated (its last qty, entry and wallet: those of
    ``pos``, the record's position row), computed as the engine computed it."""
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


def liquidations_frame(rec: np.ndarray, positions, times) -> pd.DataFrame:
    """One row per record (RECORD_DTYPE (k,), ``pos`` global), columns
    :data:`LIQUIDATION_COLUMNS`; the position's fields come from ``positions`` (a
    :class:`PositionTable`, read for the records' rows only, or the positions frame);
    ``times``: the step start times."""
    i = rec["pos"].astype(np.int64)
    if isinstance(positions, PositionTable):
        pos = positions.frame(i)
    else:
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
