"""Auto-deleveraging (cascade.rules.adl): ranking, the closing walk, and accounting to the cent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cascade.rules.adl import (
    adl_close_nb,
    adl_order_nb,
    binance_adl,
    binance_adl_qty_nb,
    binance_adl_rank_nb,
    binance_adl_ranks_nb,
    hl_adl,
    hl_adl_rank_nb,
    hl_adl_ranks_nb,
)
from cascade.rules.margin import bankruptcy_price_nb
from tests.naive import rules as naive

MARK = 100_000.0
# Shorts A..E, F (bankrupt) and one long G (the liquidated side; never ADL'd for a long).
#            A         B         C         D        E        F        G
SIDE = np.array([-1, -1, -1, -1, -1, -1, 1], np.int8)
QTY = np.array([1.0, 1.2, 1.0, 1.0, 0.5, 1.0, 3.0])
ENTRY = np.array([110_000.0, 105_000.0, 100_500.0, 95_000.0, 90_000.0, 80_000.0, 99_000.0])
WALLET = np.array([5_500.0, 2_000.0, 20_000.0, 10_000.0, 10_000.0, 10_000.0, 5_000.0])


# ------------------------------------------------------------------------------ hand-worked

def test_binance_ranking_order_hand_worked():
    # mark 100,000; uPnL = s*Q*(mark - EP); notional = Q*mark; PnL% = uPnL/notional;
    # EffLev = notional/(WB + uPnL); rank = PnL%*EffLev if PnL% >= 0 else PnL%/EffLev
    # A: uPnL +10,000, PnL% 0.10, EffLev 100,000/15,500 = 6.4516   -> 0.645161
    # B: uPnL  +6,000, PnL% 0.05, EffLev 120,000/8,000  = 15       -> 0.75
    # C: uPnL    +500, PnL% 0.005, EffLev 100,000/20,500 = 4.878   -> 0.0243902
    # D: uPnL  -5,000, PnL% -0.05, EffLev 100,000/5,000 = 20       -> -0.0025
    # E: uPnL  -5,000, PnL% -0.10, EffLev 50,000/5,000 = 10        -> -0.01
    # F: uPnL -20,000, equity -10,000 <= 0: EffLev undefined        -> -inf (last)
    expect = [0.1 * 100_000 / 15_500, 0.75, 0.005 * 100_000 / 20_500, -0.0025, -0.01, -np.inf]
    out = np.empty(7)
    binance_adl_ranks_nb(SIDE, QTY, ENTRY, WALLET, MARK, out)
    np.testing.assert_allclose(out[:6], expect, rtol=1e-14)
    order = adl_order_nb(out, SIDE, np.ones(7, np.bool_), 1)  # a long was liquidated
    assert order.tolist() == [1, 0, 2, 3, 4, 5]  # B, A, C, D, E, F; G (long) excluded
    # a closed position is skipped (B closed: A comes first)
    active = np.array([True, False, True, True, True, True, True])
    assert adl_order_nb(out, SIDE, active, 1).tolist() == [0, 2, 3, 4, 5]
    # for a liquidated short, only the long G is a counterparty
    assert adl_order_nb(out, SIDE, np.ones(7, np.bool_), -1).tolist() == [6]


def test_hl_ranking_order_hand_worked():
    # (mark/entry) * (notional/account_value), account_value = WB + uPnL
    # A: (100/110) * (100,000/15,500) = 5.8651   B: (100/105) * (120,000/8,000) = 14.2857
    # C: (100/100.5) * (100,000/20,500) = 4.8538 D: (100/95) * (100,000/5,000) = 21.0526
    # E: (100/90) * (50,000/5,000) = 11.1111     F: account value -10,000 -> -inf
    expect = [100 / 110 * 100_000 / 15_500, 100 / 105 * 15, 100 / 100.5 * 100_000 / 20_500,
              100 / 95 * 20, 100 / 90 * 10, -np.inf]
    out = np.empty(7)
    hl_adl_ranks_nb(SIDE, QTY, ENTRY, WALLET, MARK, out)
    np.testing.assert_allclose(out[:6], expect, rtol=1e-14)
    assert adl_order_nb(out, SIDE, np.ones(7, np.bool_), 1).tolist() == [3, 1, 4, 0, 2, 5]


def test_binance_adl_walk_and_accounting_hand_worked():
    # Liquidated long 2 BTC @ 105,000, WB 4,000: BP = 105,000 - 4,000/2 = 103,000.
    # Filled at 101,000: equity = 4,000 + 2*(101,000 - 105,000) = -4,000 = 2*(101,000 - BP).
    # Fund 1,000 pays 1,000; deficit D = 3,000 -> q_adl = 3,000/(103,000 - 101,000) = 1.5 BTC.
    # Ranked shorts: B (1.2 BTC, closed fully), then A (0.3 of its 1 BTC), at BP 103,000:
    #   B realises 1.2*(105,000 - 103,000) = 2,400;  A realises 0.3*(110,000 - 103,000) = 2,100
    # The market takes 0.5 BTC at 101,000, a loss of 0.5*2,000 = 1,000: the whole fund.
    r = binance_adl(1, 2.0, 105_000.0, 4_000.0, 101_000.0, 1_000.0, SIDE, QTY, ENTRY, WALLET,
                    MARK)
    assert r["bankruptcy_price"] == 103_000.0 and r["equity_at_fill"] == -4_000.0
    assert r["deficit"] == 3_000.0 and r["adl_qty"] == 1.5 and r["adl_filled_qty"] == 1.5
    assert r["rows"].tolist() == [1, 0]
    np.testing.assert_allclose(r["closed_qty"], [1.2, 0.3], rtol=1e-14)
    np.testing.assert_allclose(r["realized_pnl"], [2_400.0, 2_100.0], rtol=1e-12)
    assert r["market_qty"] == pytest.approx(0.5, rel=1e-14)
    assert r["fund_change"] == pytest.approx(-1_000.0, abs=0.005)
    assert r["covered"] == pytest.approx(3_000.0, abs=0.005) and r["bad_debt"] == 0.0
    # accounting (mechanics.md section 5), the engine's identity with the ADL part added:
    # traders lost 4,000 (+ bad debt 0) = fund change -1,000 + market counterparties
    # 0.5*(105,000 - 101,000) = 2,000 + ADL transfer 1.5*(105,000 - 103,000) = 3,000
    lost = 4_000.0
    market = 1 * r["market_qty"] * (105_000.0 - 101_000.0)
    transfer = 1 * r["adl_filled_qty"] * (105_000.0 - r["bankruptcy_price"])
    assert abs(lost + r["bad_debt"] - (r["fund_change"] + market + transfer)) < 0.01
    # the ADL'd shorts bear exactly the deficit: at fill they would have realised
    # 1.2*4,000 + 0.3*9,000 = 7,500; at BP 4,500; difference 3,000 = D
    at_fill = 1.2 * (105_000 - 101_000) + 0.3 * (110_000 - 101_000)
    assert abs(at_fill - math.fsum(r["realized_pnl"]) - r["deficit"]) < 0.01
    # without ADL the same liquidation leaves 3,000 of bad debt
    assert r["deficit"] == -(4_000.0 + 2 * (101_000.0 - 105_000.0)) - 1_000.0


def test_hl_adl_hand_worked():
    # Long 2 BTC @ 105,000, WB 4,000 at mark 100,000: account value 4,000 - 10,000 = -6,000.
    # Closed at the previous mark 101,000 against the ranked shorts D (1 BTC), then B (1 of 1.2):
    #   D realises 1*(95,000 - 101,000) = -6,000; B 1*(105,000 - 101,000) = 4,000.
    # The liquidated account ends at 4,000 + 2*(101,000 - 105,000) = -4,000; the shorts bear
    # 2*(101,000 - 100,000) = 2,000 of the loss at mark.
    r = hl_adl(1, 2.0, 105_000.0, 4_000.0, 101_000.0, MARK, SIDE, QTY, ENTRY, WALLET)
    assert r["account_value"] == -6_000.0 and r["equity_at_price"] == -4_000.0
    assert r["rows"].tolist() == [3, 1] and r["filled_qty"] == 2.0
    np.testing.assert_allclose(r["closed_qty"], [1.0, 1.0])
    np.testing.assert_allclose(r["realized_pnl"], [-6_000.0, 4_000.0])
    assert r["covered"] == 2_000.0
    assert r["equity_at_price"] == pytest.approx(r["account_value"] + r["covered"], abs=1e-9)


def test_adl_qty_for_deficit():
    # D / |BP - fill|: 3,000 / 2,000 = 1.5 coin; shorts mirrored: BP 97,000, fill 99,000
    assert binance_adl_qty_nb(3_000.0, 103_000.0, 101_000.0) == 1.5
    assert binance_adl_qty_nb(3_000.0, 97_000.0, 99_000.0) == 1.5
    assert binance_adl_qty_nb(0.0, 103_000.0, 101_000.0) == 0.0
    assert binance_adl_qty_nb(1.0, 100.0, 100.0) == np.inf
    # a liquidation with positive equity needs no ADL; the fund receives the equity
    r = binance_adl(1, 2.0, 105_000.0, 4_000.0, 104_000.0, 0.0, SIDE, QTY, ENTRY, WALLET, MARK)
    assert r["adl_qty"] == 0.0 and r["rows"].size == 0 and r["fund_change"] == 2_000.0
    # the opposite side runs out: what ADL cannot find stays bad debt
    r = binance_adl(-1, 50.0, 100_000.0, 10_000.0, 101_000.0, 0.0, SIDE, QTY, ENTRY, WALLET,
                    MARK)
    # short BP = 100,000 + 10,000/50 = 100,200; loss 50*800 = 40,000; q_adl 50, only 3 (G) found
    assert r["adl_qty"] == 50.0 and r["adl_filled_qty"] == 3.0 and r["rows"].tolist() == [6]
    assert r["bad_debt"] == pytest.approx(47 * 800.0, abs=1e-6)
    assert r["covered"] == pytest.approx(3 * 800.0, abs=1e-6)


# ------------------------------------------------------------------------ against the naive

def random_book(rng, n):
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    entry = rng.uniform(80_000.0, 120_000.0, n)
    qty = np.exp(rng.uniform(np.log(0.01), np.log(50.0), n))
    wallet = qty * entry / np.exp(rng.uniform(np.log(1.0), np.log(100.0), n))
    return side, qty, entry, wallet


def test_ranks_and_walk_random_vs_naive():
    rng = np.random.default_rng(21)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        side, qty, entry, wallet = random_book(rng, n)
        if trial % 5 == 0:  # ties: equal positions
            side[:] = -1
            qty[:], entry[:], wallet[:] = 1.0, 100_000.0, 10_000.0
        mark = float(rng.uniform(85_000.0, 115_000.0))
        active = rng.random(n) < 0.9
        for kernel, ref in ((binance_adl_ranks_nb, naive.binance_rank),
                            (hl_adl_ranks_nb, naive.hl_rank)):
            out = np.empty(n)
            kernel(side, qty, entry, wallet, mark, out)
            exp = np.array([ref(int(side[i]), qty[i], entry[i], wallet[i], mark)
                            for i in range(n)])
            np.testing.assert_allclose(out, exp, rtol=1e-13)
            scalar = binance_adl_rank_nb if kernel is binance_adl_ranks_nb else hl_adl_rank_nb
            assert all(scalar(side[i], qty[i], entry[i], wallet[i], mark) == out[i]
                       for i in range(0, n, 7))  # the array kernel is the scalar one, bitwise
            for liq_side in (1, -1):
                order = adl_order_nb(out, side, active, liq_side)
                need = float(rng.uniform(0.0, 1.2) * qty.sum() / 2)
                rows = np.empty(n, np.int64)
                cq = np.empty(n)
                pnl = np.empty(n)
                price = mark * (1 + rng.normal(0.0, 0.01))
                k, done = adl_close_nb(order, side, qty, entry, need, price, rows, cq, pnl)
                r_order, r_out, r_done = naive.adl_walk(out.tolist(), side.tolist(), qty,
                                                        entry, active.tolist(), liq_side, need,
                                                        price)
                assert order.tolist() == r_order
                assert rows[:k].tolist() == [x[0] for x in r_out]
                np.testing.assert_allclose(cq[:k], [x[1] for x in r_out], rtol=1e-12)
                np.testing.assert_allclose(pnl[:k], [x[2] for x in r_out], rtol=1e-12,
                                           atol=1e-9)
                assert done == pytest.approx(r_done, rel=1e-12, abs=1e-12)
                assert done <= need * (1 + 1e-12) + 1e-12
                avail = float(qty[order].sum())
                assert done == pytest.approx(min(need, avail), rel=1e-9, abs=1e-12)
                assert np.all(cq[:k] <= qty[rows[:k]])
                assert np.all(cq[: max(k - 1, 0)] == qty[rows[: max(k - 1, 0)]])  # all but last


def test_accounting_balances_to_the_cent_over_many_liquidations():
    """A book of positions; one after another, positions are liquidated at fills beyond their
    bankruptcy price with a small insurance fund; ADL covers what the fund cannot. After every
    event and over the run: traders' losses + bad debt = fund change + market counterparties +
    ADL transfer (mechanics.md section 5), to the cent; the ADL'd positions' realised PnL falls
    short of what they would have realised at the fill by exactly the deficit covered; the fund
    never goes negative and no bad debt arises while the opposite side has size."""
    rng = np.random.default_rng(99)
    n = 3_000
    side, qty, entry, wallet = random_book(rng, n)
    active = np.ones(n, np.bool_)
    fund = 50_000.0
    fund0 = fund
    lost, bad, fund_ch, market, transfer, adl_short = [], [], [], [], [], []
    paid_out = []  # equity returned to fully ADL'd traders (their position closed)
    mark = 100_000.0
    for _ in range(400):
        live = np.flatnonzero(active)
        i = int(rng.choice(live))
        s = 1.0 if side[i] > 0 else -1.0
        bp = float(bankruptcy_price_nb(side[i], qty[i], entry[i], wallet[i]))
        fill = bp * (1 - s * rng.uniform(-0.002, 0.01))  # mostly beyond BP
        mark = fill
        active[i] = False  # the liquidated position is no counterparty of itself
        r = binance_adl(int(side[i]), qty[i], entry[i], wallet[i], fill, fund, side, qty, entry,
                        wallet, mark, active)
        # the event's ledger
        lost.append(wallet[i])
        bad.append(r["bad_debt"])
        fund_ch.append(r["fund_change"])
        market.append(s * r["market_qty"] * (entry[i] - fill))
        transfer.append(s * r["adl_filled_qty"] * (entry[i] - r["bankruptcy_price"]))
        ev = [wallet[i], r["bad_debt"], -r["fund_change"], -market[-1], -transfer[-1]]
        assert abs(math.fsum(ev)) < 0.01
        fund += r["fund_change"]
        assert fund >= -1e-6
        fund = max(fund, 0.0)
        if r["deficit"] > 0:
            cq, pnl, rows = r["closed_qty"], r["realized_pnl"], r["rows"]
            at_fill = math.fsum(float(side[j]) * c * (fill - entry[j]) for j, c in zip(rows, cq))
            assert abs(at_fill - math.fsum(pnl) - r["covered"]) < 0.01
            if r["adl_filled_qty"] == pytest.approx(r["adl_qty"], rel=1e-12):
                assert abs(r["covered"] - r["deficit"]) < 0.01 and r["bad_debt"] < 0.01
            adl_short.append(math.fsum(float(side[j]) * c * (fill - r["bankruptcy_price"])
                                       for j, c in zip(rows, cq)))
            # book the ADL: realised PnL into the wallet, size down; closed rows leave
            for j, c, p in zip(rows, cq, pnl):
                wallet[j] += p
                qty[j] -= c
                if not qty[j] > 1e-12:
                    active[j] = False
                    paid_out.append(wallet[j])
        if active.sum() < 50:
            break
    # over the whole run
    assert sum(1 for x in adl_short if x > 0) > 20  # ADL really happened, many times
    total = math.fsum(lost) + math.fsum(bad) - math.fsum(fund_ch) - math.fsum(market) \
        - math.fsum(transfer)
    assert abs(total) < 0.01
    assert abs((fund - fund0) - math.fsum(fund_ch)) < 0.01
    assert math.fsum(bad) < 0.01  # the opposite side never ran out in this book
