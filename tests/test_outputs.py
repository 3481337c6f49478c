"""The output files alone account for every dollar of a run (issue 14): funding per position,
one meaning per column, entries and held positions alike."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import cascade
from cascade.model.scenario import parse_scenario
from cascade.model.venues import venue_specs
from cascade.outputs import LIQUIDATION_COLUMNS, POSITION_COLUMNS
from cascade.rules.margin import liq_prices_nb
from tests.test_venues import storm_raw


@pytest.fixture(scope="module")
def storm_files(tmp_path_factory):
    """A two-venue run with funding at 21:00 on both venues inside its window, partial
    liquidations of both kinds, ADL and conditional entries, written to disk."""
    sc = parse_scenario(storm_raw(), source="<storm>")
    out = tmp_path_factory.mktemp("storm")
    cascade.run(sc, out=out)
    return sc, out


@pytest.fixture(scope="module")
def storm_held_files(tmp_path_factory):
    """The storm with a fund (and vault) that offloads a tenth as fast (1 % of depth a minute):
    both still hold an inventory at the end."""
    raw = storm_raw()
    raw["market"]["fund_offload_depth_share_per_min"] = 0.01
    sc = parse_scenario(raw, source="<storm-held>")
    out = tmp_path_factory.mktemp("storm-held")
    cascade.run(sc, out=out)
    return sc, out


def _read(out):
    return (pd.read_parquet(out / "positions.parquet"), pd.read_parquet(out / "liquidations.parquet"),
            json.loads((out / "summary.json").read_text()))


def check_accounting(pos: pd.DataFrame, liq: pd.DataFrame, s: dict, tol: float = 0.01) -> dict:
    """The loss identity of a run from its output tables and summary alone, per venue and in
    total (a single-venue run is one venue named ''), within ``tol`` USD; returns the fund's
    figures rebuilt from the files, summed over the venues (``takeover_usd``,
    ``inventory_pnl_usd``).

    Per venue, with s = +1 long / -1 short and EP the position's entry:

    - L, the traders' loss: what they put in (wallets at opening) less what the open positions
      hold (their wallets) and what the closed ones got back;
    - every close of c coin at price P (book fills, including an IOC order's ioc_qty at
      ioc_fill_price; the fund's takeovers fund_qty at fund_price, the bankruptcy price or the
      backstop's mark; ADL hand-overs adl_qty at adl_price; partials, stops) gives the other
      side ``s*c*(EP - P)`` against the trader's entry: their sum is C;
    - F: the funding the traders paid; the fund's cash moves by its booked deltas D
      (fund_delta_usd), the PnL R its own inventory realised, and the bad debt B (what it could
      not pay): ``cash_end - cash_start = D + R + B``;
    - each trader's wallet account closes as ``W0 - kept - back = F_i + C_i + D_i``, so
      ``L = F + C + D``, that is ``L + B = (cash_end - cash_start) - R + C + F``;
    - the fund's equity is its cash plus its inventory at the final mark less its cost:
      ``E = cash + U`` with ``U = I_coin x mark_end - cost``, and the inventory starts empty;
    - the fund's own trades: it bought ``s*fund_qty`` at fund_price (takeovers, in C above as
      the other side of the traders' closes) and traded ``d`` coin at the fill in its offloads
      (summary fund_offload_net_coin / _usd, signed, + bought); what they made, realised and
      open, is ``T = R + U = I_coin x mark_end - sum(s*fund_qty*fund_price) - sum(d*fill)``
      (rebuilt from the files and checked against the summary), and the coin balance
      ``sum(s*fund_qty) + sum(d) = I_coin``. T is the book's and the mark's contribution to
      the fund, not the traders', so it enters on both sides:

          L + B + T = (E_end - E_start) + C + F

    with ``E_end - E_start = fund_equity_end_usd - insurance_fund_start_usd``. Without
    inventory (market liquidations) T = 0 and E = cash: the identity of issue 14.
    """
    venues = s.get("venues") or {"": s}
    done = liq[liq["fill_price"].notna()]
    totals = {"left": 0.0, "right": 0.0, "takeover_usd": 0.0, "inventory_pnl_usd": 0.0}
    for name, sv in venues.items():
        p = pos[pos["venue"] == name].set_index("row")
        d = done[done["venue"] == name]
        sgn = np.where(p["side"] == "long", 1.0, -1.0)
        p = p.assign(sgn=sgn)
        opened = p["wallet_open_usd"].notna()
        put_in = math.fsum(p["wallet_open_usd"][opened])
        held = p["status"].isin(["open", "closing"])
        kept = math.fsum(p["wallet_usd"][held])
        back = []
        legs = []
        take_coin, take_usd, take_cash = [], [], []
        for r in d.itertuples():
            q = p.loc[r.row]
            if r.kind == "entry":
                continue
            if r.kind == "stop":
                back.append(max(r.wallet_close_usd + q.sgn * q.qty * (r.fill_price
                                                                      - q.entry_price), 0.0))
                legs.append(q.sgn * q.qty * (q.entry_price - r.fill_price))
            elif r.kind == "adl":
                legs.append(q.sgn * r.qty * (q.entry_price - r.fill_price))
                if q.status == "deleveraged" and r.qty == q.qty:  # closed in full by ADL
                    back.append(max(r.wallet_close_usd + q.sgn * q.qty * (r.fill_price
                                                                          - q.entry_price), 0.0))
            elif r.kind == "partial":
                legs.append(q.sgn * r.qty * (q.entry_price - r.fill_price))
            else:  # a whole liquidation or a backstop: the book (or the vault), the fund, ADL
                book = q.qty - r.fund_qty - r.adl_qty
                assert book >= -1e-9 * q.qty, r
                if r.ioc_qty > 0:  # an IOC order: its filled part is the book's
                    assert book == pytest.approx(r.ioc_qty, rel=1e-9), r
                    assert r.fill_price == r.ioc_fill_price
                legs.append(q.sgn * book * (q.entry_price - r.fill_price))
                if r.fund_qty > 0:
                    legs.append(q.sgn * r.fund_qty * (q.entry_price - r.fund_price))
                    take_coin.append(q.sgn * r.fund_qty)
                    take_usd.append(r.fund_qty * r.fund_price)
                    take_cash.append(q.sgn * r.fund_qty * r.fund_price)
                else:
                    assert np.isnan(r.fund_price), r
                if r.adl_qty > 0:
                    legs.append(q.sgn * r.adl_qty * (q.entry_price - r.adl_price))
        lost = put_in - kept - math.fsum(back)
        cash = sv["insurance_fund_end_usd"] - sv["insurance_fund_start_usd"]
        real = sv["fund_realised_pnl_usd"]
        inv_coin = sv["fund_inventory_end_coin"]
        inv_usd = sv["fund_inventory_end_usd"]  # at the final mark
        # the fund's inventory from the files: coin, notional taken over, its PnL
        assert math.fsum(take_usd) == pytest.approx(sv["takeover_usd"], rel=1e-9, abs=tol)
        coin_scale = 1.0 + math.fsum(abs(c) for c in take_coin)
        assert abs(math.fsum(take_coin) + sv["fund_offload_net_coin"] - inv_coin) \
            < 1e-9 * coin_scale, (name, math.fsum(take_coin), sv["fund_offload_net_coin"])
        pnl = inv_usd - math.fsum(take_cash) - sv["fund_offload_net_usd"]  # T
        unreal = inv_usd - sv["fund_inventory_cost_usd"]  # U
        assert abs(pnl - (real + unreal)) < tol, (name, pnl, real, unreal)
        equity = sv["fund_equity_end_usd"] - sv["insurance_fund_start_usd"]
        assert abs(equity - (cash + unreal)) < tol, (name, equity, cash, unreal)
        funding = math.fsum(p["funding_paid_usd"])
        assert abs(funding - (sv["funding_paid_long_usd"] + sv["funding_paid_short_usd"])) < tol
        left = lost + sv["bad_debt_usd"] + pnl
        right = equity + math.fsum(legs) + funding
        assert abs(left - right) < tol, (name, left, right)
        # the fund's cash: every booked delta and the PnL its inventory realised, less what it
        # could not pay
        assert abs(math.fsum(d["fund_delta_usd"]) + real + sv["bad_debt_usd"] - cash) < tol
        totals["left"] += left
        totals["right"] += right
        totals["takeover_usd"] += math.fsum(take_usd)
        totals["inventory_pnl_usd"] += pnl
    assert abs(totals["left"] - totals["right"]) < 2 * tol
    assert s["bad_debt_usd"] >= 0
    return totals


@pytest.mark.parametrize("which", ["offloaded", "held"])
def test_loss_identity_from_the_files_alone(which, storm_files, storm_held_files):
    """For each venue and in total (the identity of :func:`check_accounting`): what the traders
    put in (wallets at opening), less what they hold at the end and what closed positions got
    back, plus the bad debt, plus what the fund's own trades made on its inventory (offloads
    into the book and the inventory left at the final mark, against the takeover prices),
    equals the change of the funds' equity (cash + inventory at the final mark - its cost),
    plus what the other side of every closing trade gained against the trader's entry (book
    fills, IOC fills, the fund's takeovers at the bankruptcy price or the vault's at the mark,
    ADL), plus the funding the traders paid (to the counterparties we do not model): to the
    cent, read from positions.parquet, liquidations.parquet and summary.json only. Binance
    (bn) liquidates with IOC orders limited at the bankruptcy price, the fund taking over the
    rest; Hyperliquid's (hl) vault holds what it backstops; both offload; 'held': both still
    hold an inventory at the end."""
    _, out = storm_files if which == "offloaded" else storm_held_files
    pos, liq, s = _read(out)
    assert list(pos.columns) == list(POSITION_COLUMNS)
    assert list(liq.columns) == list(LIQUIDATION_COLUMNS)
    done = liq[liq["fill_price"].notna()]
    kinds = set(done["kind"])
    assert {"partial", "adl", "entry", "liquidation", "stop", "backstop"} <= kinds, kinds
    assert (pos["funding_paid_usd"] != 0).sum() > 100  # funding was paid, by many positions
    # funding: the positions' payments are what the summary says went to the others
    assert math.fsum(pos["funding_paid_usd"]) == pytest.approx(-s["funding_to_others_usd"],
                                                               abs=0.01)
    # takeovers happened on both rule sets, and the funds traded their inventories
    bn, hl = done[done["venue"] == "bn"], done[done["venue"] == "hl"]
    ioc = bn[bn["kind"] == "liquidation"]
    assert (ioc["ioc_qty"] > 0).any() and (ioc["fund_qty"] > 0).any()
    assert ((ioc["ioc_qty"] > 0) & (ioc["fund_qty"] > 0)).any()  # split between book and fund
    assert (hl.loc[hl["kind"] == "backstop", "fund_qty"] > 0).any()
    for name, sv in s["venues"].items():
        assert sv["takeover_usd"] > 0 and sv["fund_offload_usd"] > 0, name
        if which == "held":
            assert abs(sv["fund_inventory_end_usd"]) > 1e4, name
            assert sv["fund_equity_end_usd"] != sv["insurance_fund_end_usd"], name
        else:
            assert sv["fund_inventory_end_coin"] == 0, name
    fund = check_accounting(pos, liq, s)
    assert fund["takeover_usd"] == pytest.approx(s["takeover_usd"], rel=1e-9)
    assert abs(fund["inventory_pnl_usd"]) > 1.0  # the fund's trades entered the identity


def test_columns_mean_the_same_for_entries_and_held_positions(storm_files):
    """Every row, whether a position held from the start or a conditional entry: the wallet at
    opening and the liquidation price at opening agree (recomputed with the venue's brackets);
    the wallet at close is the opening wallet less funding plus the realised PnL of the partial
    closes; NaN exactly while the position is still open; the same for every record of a
    position; and an entry's entry price is its fill."""
    sc, out = storm_files
    pos, liq, _ = _read(out)
    specs = {s.name: s for s in venue_specs(sc)}
    for origin in ("held", "entry"):
        p = pos[(pos["origin"] == origin) & pos["wallet_open_usd"].notna()]
        assert len(p) > 10, origin
        for name, spec in specs.items():
            q = p[p["venue"] == name]
            tb = spec.table
            lp = np.empty(len(q))
            liq_prices_nb(np.where(q["side"] == "long", 1, -1).astype(np.int8),
                          q["qty_start"].to_numpy(), q["entry_price"].to_numpy(),
                          q["wallet_open_usd"].to_numpy(), tb.floor, tb.cap, tb.mmr, tb.cum, lp,
                          np.empty(len(q), np.int8))
            np.testing.assert_allclose(lp, q["liquidation_price_open"], rtol=1e-12, atol=1e-9)
    # entries never opened (none here, if every level was crossed) carry no wallet or entry
    never = pos[pos["status"] == "not_opened"]
    assert never[["wallet_open_usd", "wallet_usd", "entry_price"]].isna().all().all()
    assert (never["funding_paid_usd"] == 0).all()
    # wallet at close/end = opening wallet - funding + realised PnL of partial closes
    done = liq[liq["fill_price"].notna()]
    cuts = done[done["kind"].isin(["partial", "adl"])]
    # a position closed in full by ADL: its last ADL record closes it (not a partial close)
    status = cuts["row"].map(pos.set_index("row")["status"])
    last = ~cuts["row"].duplicated(keep="last")
    cuts = cuts[~((status == "deleveraged") & last & (cuts["kind"] == "adl"))]
    sgn = np.where(cuts["side"] == "long", 1.0, -1.0)
    realised = pd.Series(sgn * cuts["qty"] * (cuts["fill_price"] - cuts["entry_price"]),
                         index=cuts.index).groupby(cuts["row"]).sum()
    opened = pos[pos["wallet_open_usd"].notna()].set_index("row")
    want = (opened["wallet_open_usd"] - opened["funding_paid_usd"]
            + realised.reindex(opened.index, fill_value=0.0))
    np.testing.assert_allclose(opened["wallet_usd"], want, rtol=0, atol=0.01)
    assert len(realised) > 0
    # liquidations.parquet: the position's columns agree with positions.parquet, row by row
    by_row = pos.set_index("row")
    for col in ("wallet_open_usd", "funding_paid_usd", "liquidation_price_open", "entry_price"):
        np.testing.assert_array_equal(liq[col].to_numpy(), by_row.loc[liq["row"], col].to_numpy())
    still = by_row.loc[liq["row"], "status"].isin(["open", "closing"]).to_numpy()
    assert liq["wallet_close_usd"].isna().to_numpy()[still].all()
    closed = ~still
    np.testing.assert_array_equal(liq["wallet_close_usd"].to_numpy()[closed],
                                  by_row.loc[liq["row"], "wallet_usd"].to_numpy()[closed])
    ent = liq[(liq["kind"] == "entry") & liq["fill_price"].notna()]
    np.testing.assert_array_equal(ent["entry_price"], ent["fill_price"])
    # an entry row and the later liquidation of the same position: the same opening wallet
    twice = liq[liq["row"].isin(ent["row"]) & (liq["kind"] != "entry")]
    assert len(twice) > 0
    assert (twice["wallet_open_usd"].to_numpy()
            == by_row.loc[twice["row"], "wallet_open_usd"].to_numpy()).all()


@pytest.mark.skipif(not __import__("os").environ.get("CASCADE_AUDIT_OCTOBER"),
                    reason="a full October run (1M positions, 86,400 steps, about 2 minutes on 2 "
                           "cores): set CASCADE_AUDIT_OCTOBER=1")
def test_full_october_run_balances_from_its_files(tmp_path):
    """Issue 14's 'done when': every dollar of the full October run, funding included, from
    its output files alone, to the cent."""
    from pathlib import Path

    sc = Path(__file__).resolve().parents[1] / "scenarios" / "oct2025.toml"
    cascade.run(sc, out=tmp_path / "oct")
    pos, liq, s = _read(tmp_path / "oct")
    assert abs(math.fsum(pos["funding_paid_usd"]) + s["funding_to_others_usd"]) < 0.01
    assert s["funding_paid_long_usd"] != 0
    check_accounting(pos, liq, s)


def _run_keeping_state(sc, monkeypatch):
    """``cascade.run`` of ``sc`` and the engine state, populations and venue names it assembled
    its result from."""
    from cascade.result import Result

    seen = {}
    assemble = Result.assemble.__func__

    def grab(cls, sc_, specs, pops, state, *args, **kw):
        seen.update(state=state, pops=pops,
                    names=[s.name for s in specs] if sc_.venues else [""])
        return assemble(cls, sc_, specs, pops, state, *args, **kw)

    monkeypatch.setattr(Result, "assemble", classmethod(grab))
    res = cascade.run(sc)
    return res, seen["state"], seen["pops"], seen["names"]


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf)
    return buf.getvalue()


@pytest.mark.parametrize("which", ["storm", "one_venue", "empty"])
def test_lazy_tables_equal_the_reference_frames(which, monkeypatch):
    """positions and liquidations, built lazily from the engine's arrays (for every row, or only
    for the records' rows), are the frames and parquet files the slow reference builds row by
    row from the same state; so is the held positions' funding in the summary."""
    from cascade.model.market import step_times
    from tests.conftest import make_scenario
    from tests.naive import outputs as naive

    if which == "storm":
        sc = parse_scenario(storm_raw(), source="<storm>")
    elif which == "one_venue":
        sc = make_scenario(**{"population.positions": 3000, "population.entry_order_share": 0.2})
    else:
        sc = make_scenario(**{"population.positions": 0})
    res, state, pops, names = _run_keeping_state(sc, monkeypatch)
    ref_pos = naive.positions_frame(state, pops, names)
    liq = res.liquidations  # before res.positions: read from the arrays for its rows only
    ref_liq = naive.liquidations_frame(res.records, ref_pos, step_times(sc))
    pd.testing.assert_frame_equal(liq, ref_liq, check_exact=True)
    pd.testing.assert_frame_equal(res.positions, ref_pos, check_exact=True)
    pd.testing.assert_frame_equal(res.liquidations, ref_liq, check_exact=True)
    assert _parquet_bytes(res.positions) == _parquet_bytes(ref_pos)
    assert _parquet_bytes(liq) == _parquet_bytes(ref_liq)
    held = ref_pos["status"].isin(["open", "closing"]).to_numpy()
    assert res.summary["funding_paid_open_usd"] == float(
        ref_pos["funding_paid_usd"].to_numpy()[held].sum())
    if which == "storm":
        assert set(ref_pos["status"]) >= {"open", "liquidated", "deleveraged", "stopped"}
        assert (ref_pos["origin"] == "entry").any() and len(ref_liq) > 0
    if which != "empty":
        # orders pending at the end: a held row and entries, opened (storm) or not, triggered
        from cascade.engine.layout import TRIGGERED
        from cascade.outputs import positions_frame

        entries = ref_pos.index[ref_pos["origin"] == "entry"]
        opened = list(entries[ref_pos.loc[entries, "entry_price"].notna()][:1])
        unopened = list(entries[ref_pos.loc[entries, "entry_price"].isna()][:1])
        assert opened if which == "storm" else unopened
        state.status[[0, *opened, *unopened, len(ref_pos) - 1]] = TRIGGERED
        ref = naive.positions_frame(state, pops, names)
        assert "closing" in set(ref["status"])
        pd.testing.assert_frame_equal(positions_frame(state, pops, names), ref, check_exact=True)
