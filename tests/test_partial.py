"""Partial liquidation (cascade.rules.partial): tier step-down, Hyperliquid 20 % rule and backstop."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.rules.brackets import BracketArrays, bracket_table
from cascade.rules.margin import bankruptcy_price_nb, liq_price_nb, maintenance_margin_nb
from cascade.rules.partial import (
    BYBIT_MAX_STEPS,
    BYBIT_MIN_TIER,
    BYBIT_TIERS_PER_STEP,
    HL_BACKSTOP,
    HL_FULL,
    HL_NONE,
    HL_PARTIAL,
    OKX_MIN_TIER,
    OKX_TIERS_PER_STEP,
    OUTCOME_NONE,
    OUTCOME_PARTIAL,
    OUTCOME_TAKEOVER,
    StepDownRule,
    bybit_partial,
    hl_backstop_nb,
    hl_liquidation_nb,
    okx_liq_prices_nb,
    okx_partial,
    tier_step_down_nb,
)
from tests.naive import rules as naive

T = bracket_table("binance", "BTCUSDT")  # 2025H2, stand-in tier table for Bybit/OKX
HL = bracket_table("hyperliquid", "BTC")
ARR = (T.floor, T.cap, T.mmr, T.cum)
HLA = (HL.floor, HL.cap, HL.mmr, HL.cum)
BIG = np.iinfo(np.int64).max


# ---------------------------------------------------------------------- step-down, hand-worked

def test_bybit_step_down_hand_worked():
    # Long 10 BTC @ 100,000, mark 95,000: notional 950,000 in tier 2 (0-based; 800k..3M,
    # MMR 0.65 %, cum 1,500): MM = 950,000 * 0.0065 - 1,500 = 4,675.
    # WB 54,000: equity = 54,000 + 10 * (95,000 - 100,000) = 4,000 <= 4,675: liquidatable.
    # One tier down (tier 1: 300k..800k, MMR 0.5 %, cum 300): keep 800,000 / 95,000
    # = 8.421053 BTC, close 1.578947 BTC at the mark: realised -1.578947 * 5,000 = -7,894.74,
    # wallet 46,105.26; equity unchanged 4,000 > MM' = 800,000 * 0.005 - 300 = 3,700: survives.
    # New LP (tier 1): (46,105.26 + 300 - 8.421053 * 100,000) / (8.421053 * (0.005 - 1))
    #   = -795,700 / -8.378947 = 95,000 * 795,700 / 796,000 = 94,964.196
    r = bybit_partial(1, 10.0, 100_000.0, 54_000.0, 95_000.0)
    assert r["outcome"] == "partial" and r["steps"] == 1 and r["tier_left"] == 1
    assert r["qty_left"] == pytest.approx(800_000 / 95_000, rel=1e-15)
    assert r["closed_qty"] == pytest.approx(10 - 800_000 / 95_000, rel=1e-14)
    assert r["realized_pnl"] == pytest.approx(-(10 - 800_000 / 95_000) * 5_000, rel=1e-12)
    assert r["wallet_left"] == pytest.approx(46_105.263157894, rel=1e-12)
    assert r["equity_left"] == pytest.approx(4_000.0, rel=1e-12)
    assert r["liquidation_price"] == pytest.approx(95_000 * 795_700 / 796_000, rel=1e-12)
    assert r["liquidation_price"] < 95_000.0
    # WB 53,000: equity 3,000; after the step 3,000 < 3,700: still liquidatable -> the rest
    # (8.421053 BTC, wallet 45,105.26) is taken over at BP = 100,000 - 45,105.26/8.421053
    #   = 100,000 - 45,105.26 * 95,000/800,000 = 100,000 - 5,356.25 = 94,643.75
    r = bybit_partial(1, 10.0, 100_000.0, 53_000.0, 95_000.0)
    assert r["outcome"] == "takeover" and r["steps"] == 1
    assert r["bankruptcy_price"] == pytest.approx(94_643.75, rel=1e-12)
    # a fill 100 below the mark costs the closed part 1.578947 * 100 = 157.89: equity 3,842.11,
    # still above 3,700
    r = bybit_partial(1, 10.0, 100_000.0, 54_000.0, 95_000.0, fill=94_900.0)
    assert r["outcome"] == "partial"
    assert r["equity_left"] == pytest.approx(4_000 - (10 - 800_000 / 95_000) * 100, rel=1e-12)
    # lowest tier: long 1 BTC @ 100,000, WB 5,300, mark 95,000: equity 300 <= MM
    # 95,000 * 0.004 = 380 -> taken over at once at BP = 100,000 - 5,300 = 94,700
    r = bybit_partial(1, 1.0, 100_000.0, 5_300.0, 95_000.0)
    assert (r["outcome"], r["steps"], r["closed_qty"]) == ("takeover", 0, 0.0)
    assert r["bankruptcy_price"] == 94_700.0
    # not liquidatable: WB 60,000, equity 10,000 > 4,675
    assert bybit_partial(1, 10.0, 100_000.0, 60_000.0, 95_000.0)["outcome"] == "none"


def test_okx_step_down_hand_worked():
    # Same long 10 BTC @ 100,000, mark 95,000, tier 3 (1-based), taker fee 0, no cum:
    # requirement 950,000 * 0.0065 = 6,175; WB 54,000: equity 4,000 <= 6,175: liquidatable;
    # tier-1 requirement 950,000 * 0.004 = 3,800 < 4,000: reduce by two tiers, to tier 1
    # (cap 300k): keep 300,000/95,000 = 3.157895 BTC, close 6.842105 at 95,000;
    # equity 4,000 > 300,000 * 0.004 = 1,200: survives.
    # LP = (WB' - Q'*EP)/(Q'*(0.004 - 1)) with WB' - Q'*EP = 4,000 - 95,000*Q' = -296,000
    #    = 296,000 * 95,000 / (300,000 * 0.996) = 94,109.77
    r = okx_partial(1, 10.0, 100_000.0, 54_000.0, 95_000.0)
    assert r["outcome"] == "partial" and r["steps"] == 1 and r["tier_left"] == 0
    assert r["qty_left"] == pytest.approx(300_000 / 95_000, rel=1e-15)
    assert r["wallet_left"] == pytest.approx(54_000 - (10 - 300_000 / 95_000) * 5_000, rel=1e-12)
    assert r["liquidation_price"] == pytest.approx(296_000 * 95_000 / (300_000 * 0.996),
                                                   rel=1e-12)
    # WB 53,500: equity 3,500 <= 3,800 (tier-1 requirement): full takeover at
    # BP = 100,000 - 53,500/10 = 94,650
    r = okx_partial(1, 10.0, 100_000.0, 53_500.0, 95_000.0)
    assert (r["outcome"], r["steps"], r["closed_qty"]) == ("takeover", 0, 0.0)
    assert r["bankruptcy_price"] == 94_650.0
    # tier 2 (1-based; 300k..800k): no partial on OKX -> takeover. Long 5 BTC @ 100,000 at mark
    # 95,000 (475k), WB 27,000: equity 2,000 <= 475,000*0.005 = 2,375
    r = okx_partial(1, 5.0, 100_000.0, 27_000.0, 95_000.0)
    assert (r["outcome"], r["tier_left"]) == ("takeover", 1)
    # taker fee 0.05 % raises the requirement: 950,000 * (0.0065 + 0.0005) = 6,650
    r = okx_partial(1, 10.0, 100_000.0, 56_500.0, 95_000.0, taker_fee=0.0005)
    assert r["outcome"] == "partial"  # equity 6,500 <= 6,650; > tier-1 950,000*0.0045 = 4,275
    assert okx_partial(1, 10.0, 100_000.0, 56_500.0, 95_000.0)["outcome"] == "none"


def test_okx_repeats_two_tiers_at_a_time():
    # Short 200 BTC @ 100,000 at mark 104,000: notional 20.8M in tier 4 (0-based; 12M..70M).
    # WB 1,150,000: equity 1,150,000 - 800,000 = 350,000 <= 20.8M * 0.02 = 416,000.
    # Two tiers down to tier 2 (cap 3M): equity 350,000 > 3M * 0.0065 = 19,500: one step.
    r = okx_partial(-1, 200.0, 100_000.0, 1_150_000.0, 104_000.0)
    assert r["outcome"] == "partial" and r["steps"] == 1 and r["tier_left"] == 2
    assert r["qty_left"] * 104_000.0 <= 3e6
    # With a fill 10 % worse the reduction itself eats the equity: keep stepping or take over
    res = tier_step_down_nb(-1, 200.0, 100_000.0, 1_150_000.0, 104_000.0, 106_000.0,
                            BracketArrays(*ARR),
                            StepDownRule(OKX_TIERS_PER_STEP, OKX_MIN_TIER, BIG, True, 0.0, False,
                                         True))
    ref = naive.tier_step_down(-1, 200.0, 100_000.0, 1_150_000.0, 104_000.0, 106_000.0, *ARR,
                               OKX_TIERS_PER_STEP, OKX_MIN_TIER, BIG, True, 0.0, False, True)
    assert tuple(res) == pytest.approx(ref, rel=1e-15)


# ------------------------------------------------------------------------- step-down, random

def check_okx_crossing(side, q, entry, w, mark, table, fee, down, up, grid=400):
    """Naive check of okx_liq_prices_nb: no liquidation on a dense grid between the mark and
    each returned price, a liquidation at (just beyond) it."""
    def liquidatable(p):
        return naive.okx_gap(side, q, entry, w, p, table.cap, table.mmr, fee) <= 0

    if 0.0 < down < mark:
        for p in np.linspace(down, mark, grid)[1:]:
            assert not liquidatable(p)
        assert liquidatable(down) or liquidatable(down * (1 - 1e-12))
    if mark < up < np.inf:
        for p in np.linspace(mark, up, grid)[:-1]:
            assert not liquidatable(p)
        assert liquidatable(up) or liquidatable(up * (1 + 1e-12))


def test_okx_liquidation_price_jumps_at_tier_boundary():
    # Short 200 BTC @ 100,000 reduced to 3M notional at mark 104,000 (tier 3, 0-based 2,
    # MMR 0.65 %): q = 3,000,000/104,000 = 28.846 BTC. With equity E(P) = w - q*(P - 100,000):
    # choose w so that E(104,000) = 20,000 > 3M * 0.0065 = 19,500 but E < 3M * 0.01 = 30,000
    # (tier 4's requirement on just over 3M): the first price above 104,000 at which the notional
    # exceeds 3M, i.e. 104,000 itself, liquidates it. Within tier 3 alone (continuous formula)
    # the LP would be (w + q*100,000)/(q*1.0065) > 104,000.
    q = 3e6 / 104_000.0
    w = 20_000.0 + q * 4_000.0
    down, up = okx_liq_prices_nb(-1, q, 100_000.0, w, 104_000.0, T.floor, T.cap, T.mmr, 0.0)
    assert up == pytest.approx(104_000.0, rel=1e-15) and down == 0.0
    within_tier = (w + q * 100_000.0) / (q * 1.0065)
    assert within_tier == pytest.approx(104_000.0 + 500.0 / (q * 1.0065), rel=1e-12)
    # a long left at 3M is liquidated by a price RISE into tier 4 when E < 1 % of 3M:
    # long q @ 100,000 at mark 104,000 with E(104,000) = 20,000: E at 104,000+ ~ 20,000 < 30,000
    w = 20_000.0 - q * 4_000.0
    down, up = okx_liq_prices_nb(1, q, 100_000.0, w, 104_000.0, T.floor, T.cap, T.mmr, 0.0)
    assert up == pytest.approx(104_000.0, rel=1e-15)
    # ... and below the mark at the tier-3 root: (w - q*100,000)/(q*(0.0065 - 1))
    assert down == pytest.approx((w - q * 100_000.0) / (q * (0.0065 - 1.0)), rel=1e-12)
    check_okx_crossing(1, q, 100_000.0, w, 104_000.0, T, 0.0, down, np.inf)


PRESETS = {
    "bybit": (BYBIT_TIERS_PER_STEP, BYBIT_MIN_TIER, BYBIT_MAX_STEPS, False, 0.0, True, True),
    "okx": (OKX_TIERS_PER_STEP, OKX_MIN_TIER, BIG, True, 0.0005, False, True),
    "one-tier-repeat": (1, 1, BIG, False, 0.0, True, False),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("table", [T, bracket_table("binance", "ETHUSDT"), HL],
                         ids=["binance-btc", "binance-eth", "hl-btc"])
def test_step_down_random_vs_naive(preset, table):
    rng = np.random.default_rng(len(preset) * 7 + table.n)
    arr = (table.floor, table.cap, table.mmr, table.cum)
    params = PRESETS[preset]
    counts = {OUTCOME_NONE: 0, OUTCOME_PARTIAL: 0, OUTCOME_TAKEOVER: 0}
    for _ in range(400):
        side = int(rng.choice([-1, 1]))
        mark = float(rng.uniform(20_000.0, 120_000.0))
        notional = float(np.exp(rng.uniform(np.log(1e4), np.log(1.5e9))))
        qty = notional / mark
        entry = mark * (1 + side * rng.uniform(0.0, 0.08))
        b = table.bracket_of(notional)
        mm = notional * table.mmr[b] - table.cum[b]
        # equity around the maintenance margin: from 0.3 MM to 1.3 MM
        equity = mm * rng.uniform(0.3, 1.3)
        wallet = equity - side * qty * (mark - entry)
        fill = mark * (1 - side * abs(rng.normal(0.0, 0.002)))
        got = tier_step_down_nb(side, qty, entry, wallet, mark, fill, BracketArrays(*arr),
                                StepDownRule(*params))
        ref = naive.tier_step_down(side, qty, entry, wallet, mark, fill, *arr, *params)
        assert got[0] == ref[0] and got[1] == ref[1] and got[6] == ref[6]
        np.testing.assert_allclose(got[2:6], ref[2:6], rtol=1e-12, atol=1e-9)
        outcome, steps, closed, q, w, realized, tier = got
        counts[outcome] += 1
        # conservation: size and wallet
        assert closed + q == pytest.approx(qty, rel=1e-12)
        assert w == pytest.approx(wallet + realized, rel=1e-12, abs=1e-6)
        if outcome == OUTCOME_PARTIAL:
            s = 1.0 if side > 0 else -1.0
            e = w + s * q * (mark - entry)
            fee, use_cum = params[4], params[5]
            req = q * mark * (table.mmr[tier] + fee) - (table.cum[tier] if use_cum else 0.0)
            assert e >= req and table.bracket_of(q * mark) == tier
            # the survivor's liquidation price is beyond the mark (not liquidatable there)
            if use_cum:  # continuous requirement: cascade.rules.margin's LP
                lp, _ = liq_price_nb(side, q, entry, w, 0.0, 0.0, *arr)
            else:  # OKX: no maintenance amount, the requirement jumps at tier boundaries
                down, up = okx_liq_prices_nb(side, q, entry, w, mark, table.floor, table.cap,
                                             table.mmr, fee)
                check_okx_crossing(side, q, entry, w, mark, table, fee, down, up)
                lp = down if side > 0 else up
            # (OKX survivors can sit exactly at the threshold: the tier jump, see
            # test_okx_liquidation_price_jumps_at_tier_boundary)
            assert (lp <= mark) if side > 0 else (lp >= mark)
        if outcome == OUTCOME_TAKEOVER:
            bp = bankruptcy_price_nb(side, q, entry, w)
            assert abs(w + (1 if side > 0 else -1) * q * (bp - entry)) < 1e-6 * (1 + abs(w)) \
                or bp == 0.0
    assert counts[OUTCOME_NONE] > 0 and counts[OUTCOME_TAKEOVER] > 0
    if table is not HL or preset != "okx":  # HL has only two tiers: OKX never steps there
        assert counts[OUTCOME_PARTIAL] > 0


# ------------------------------------------------------------------------------- Hyperliquid

def test_hl_20_percent_rule_and_backstop_hand_worked():
    # Long 5 BTC @ 100,000, mark 96,000: notional 480,000 > 100k USDC; tier 1 (40x):
    # MM = 480,000 * 1/(2*40) = 6,000; backstop below 2/3 * 6,000 = 4,000.
    # WB 25,000: equity = 25,000 + 5 * (96,000 - 100,000) = 5,000: 4,000 <= 5,000 < 6,000
    act, q, e, mm = hl_liquidation_nb(1, 5.0, 100_000.0, 25_000.0, 96_000.0, 0.0, -np.inf, *HLA)
    assert (act, e, mm) == (HL_PARTIAL, 5_000.0, 6_000.0)
    assert q == pytest.approx(1.0, rel=1e-15)  # 20 % of 5 BTC
    # the partial closes 1 BTC at 96,000: wallet 25,000 - 4,000 = 21,000, 4 BTC left; equity
    # still 5,000 > MM 384,000 * 0.0125 = 4,800: not liquidatable at 96,000
    act, *_ = hl_liquidation_nb(1, 4.0, 100_000.0, 21_000.0, 96_000.0, 1.0, 0.0, *HLA)
    assert act == HL_NONE
    # mark 95,900 ten seconds later: equity 21,000 - 4 * 4,100 = 4,600 < MM 4 * 95,900 *
    # 0.0125 = 4,795 (and >= 2/3 of it): within 30 s of the partial -> the whole position
    act, q, e, mm = hl_liquidation_nb(1, 4.0, 100_000.0, 21_000.0, 95_900.0, 10.0, 0.0, *HLA)
    assert (act, q) == (HL_FULL, 4.0)
    assert e == pytest.approx(4_600.0, abs=1e-9) and mm == pytest.approx(4_795.0, abs=1e-9)
    # the same 30 s after the partial: 20 % again, 0.8 BTC
    act, q, *_ = hl_liquidation_nb(1, 4.0, 100_000.0, 21_000.0, 95_900.0, 30.0, 0.0, *HLA)
    assert act == HL_PARTIAL and q == pytest.approx(0.8, rel=1e-15)
    # WB 23,000: equity 3,000 < 4,000: the vault takes the position and its margin, worth 3,000
    act, q, e, _ = hl_liquidation_nb(1, 5.0, 100_000.0, 23_000.0, 96_000.0, 0.0, -np.inf, *HLA)
    assert (act, q, e) == (HL_BACKSTOP, 5.0, 3_000.0)
    assert hl_backstop_nb(1, 5.0, 100_000.0, 23_000.0, 96_000.0) == 3_000.0
    # exactly 2/3: WB 24,000, equity 4,000 = 2/3 * 6,000 (up to rounding of 2/3): not below
    act, *_ = hl_liquidation_nb(1, 5.0, 100_000.0, 24_000.0 + 1e-9, 96_000.0, 0.0, -np.inf,
                                *HLA)
    assert act == HL_PARTIAL
    # equity == MM is not a liquidation on Hyperliquid (strict <): WB 26,000
    act, *_ = hl_liquidation_nb(1, 5.0, 100_000.0, 26_000.0, 96_000.0, 0.0, -np.inf, *HLA)
    assert act == HL_NONE
    # at or below 100k USDC: the whole position. 1 BTC @ 100,000 at 96,000 (96k):
    # MM 1,200, WB 5,000 -> equity 1,000 (>= 800): full
    act, q, *_ = hl_liquidation_nb(1, 1.0, 100_000.0, 5_000.0, 96_000.0, 0.0, -np.inf, *HLA)
    assert (act, q) == (HL_FULL, 1.0)
    # short mirrored: short 5 @ 100,000, mark 104,000 (520k, MM 6,500), WB 25,000 -> equity
    # 5,000: 4,333.33 <= 5,000 < 6,500: partial
    act, q, e, mm = hl_liquidation_nb(-1, 5.0, 100_000.0, 25_000.0, 104_000.0, 0.0, -np.inf,
                                      *HLA)
    assert (act, e, mm) == (HL_PARTIAL, 5_000.0, 6_500.0)


def test_hl_random_vs_naive():
    rng = np.random.default_rng(12)
    seen = set()
    for _ in range(1_500):
        side = int(rng.choice([-1, 1]))
        mark = float(rng.uniform(20_000.0, 120_000.0))
        qty = float(np.exp(rng.uniform(np.log(0.1), np.log(5_000.0))))
        entry = mark * (1 + side * rng.uniform(0.0, 0.05))
        mm = float(maintenance_margin_nb(qty, mark, *HLA))
        wallet = mm * rng.uniform(0.4, 1.2) - side * qty * (mark - entry)
        t = float(rng.uniform(0.0, 100.0))
        t_last = float(rng.choice([-np.inf, t - rng.uniform(0.0, 60.0), t - 30.0]))
        got = hl_liquidation_nb(side, qty, entry, wallet, mark, t, t_last, *HLA)
        ref = naive.hl_liquidation(side, qty, entry, wallet, mark, t, t_last, *HLA)
        assert got[0] == ref[0]
        np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-15)
        seen.add(int(got[0]))
    assert seen == {HL_NONE, HL_PARTIAL, HL_FULL, HL_BACKSTOP}


@pytest.mark.parametrize("rate, jump_at", [(0.9999, None), (0.9996, None), (0.9999, 400)])
def test_hl_liquidation_sequence(rate, jump_at):
    """A falling mark (x ``rate`` per second; a 3 % gap down at ``jump_at``), one check per
    second: the kernel and the naive rules drive the same position (long 40 BTC @ 100,000,
    WB 200,000) through partials, full orders within the 30 s window, the backstop. Partials
    fill at the mark; the wallet keeps the realised PnL."""
    def run(rule):
        q, w, t_last = 40.0, 200_000.0, -np.inf
        log = []
        mark = 100_000.0
        for t in range(0, 3_000):
            mark *= rate * (0.97 if t == jump_at else 1.0)
            act, cq, e, mm = rule(1, q, 100_000.0, w, mark, float(t), t_last, *HLA)
            if act == HL_NONE:
                continue
            log.append((t, int(act), cq, q * mark))
            if act == HL_PARTIAL:
                w += cq * (mark - 100_000.0)
                q -= cq
                t_last = float(t)
            else:
                break
        return log

    log = run(hl_liquidation_nb)
    ref = run(naive.hl_liquidation)
    assert [x[:2] for x in log] == [x[:2] for x in ref]
    np.testing.assert_allclose([x[2:] for x in log], [x[2:] for x in ref], rtol=1e-15)
    acts = [a for _, a, _, _ in log]
    tp = [t for t, a, _, _ in log if a == HL_PARTIAL]
    assert all(b - a >= 30 for a, b in zip(tp, tp[1:]))  # partials at least 30 s apart
    assert all(n > 100_000 for _, a, _, n in log if a == HL_PARTIAL)  # only above 100k USDC
    if jump_at is not None:
        assert acts[-1] == HL_BACKSTOP  # the gap takes equity below 2/3 of MM at once
    elif rate == 0.9999:
        # slow fall: each partial restores the margin; 20 % after 20 % until the notional is
        # at or below 100k, then the whole position
        assert acts.count(HL_PARTIAL) > 10 and acts[-1] == HL_FULL and log[-1][3] <= 100_000
    else:
        # fast fall: liquidatable again within 30 s of the first partial -> whole position
        assert acts == [HL_PARTIAL, HL_FULL] and log[1][0] - log[0][0] < 30
