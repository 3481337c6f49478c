"""Funding (cascade.rules.funding): premium, rate, payments and the ladder offset of liquidation prices."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest

from cascade.rules.brackets import bracket_table
from cascade.rules.funding import (
    BINANCE_CLAMP,
    BINANCE_FUNDING_INTERVAL_S,
    BINANCE_INTEREST_8H,
    HL_FUNDING_INTERVAL_S,
    apply_funding_cross_nb,
    apply_funding_isolated_nb,
    binance_funding_cap,
    binance_funding_rate,
    effective_lps,
    effective_wallet_nb,
    funding_c_range_nb,
    funding_events_nb,
    funding_lp_shift,
    funding_lp_shift_nb,
    funding_payment_per_unit_nb,
    funding_rate_nb,
    hl_funding_rate_hourly_nb,
    ladder_key_nb,
    ladder_keys,
    ladder_offsets_nb,
    premium_accumulate_nb,
    premium_average_nb,
    premium_from_last_nb,
    premium_index_nb,
    refresh_keys_nb,
    time_to_next_funding_nb,
    wallet_change_per_unit_nb,
)
from cascade.rules.margin import liq_price_nb, liq_prices
from tests.naive import margin as naive_margin
from tests.naive import rules as naive

UTC = datetime.timezone.utc
T = bracket_table("binance", "BTCUSDT")  # 2025H2
ARR = (T.floor, T.cap, T.mmr, T.cum)


# ------------------------------------------------------------------------------ hand-worked

@pytest.mark.parametrize("pbar, expect", [
    # F = Pbar + clamp(I - Pbar, -0.05 %, +0.05 %), I = 0.01 %; |F| <= 0.75 * 0.40 % = 0.3 %
    (0.0002, 0.0001),    # I - P = -0.0001, inside the clamp: F = I = 0.0001
    (0.0001, 0.0001),    # I - P = 0: F = I
    (0.0008, 0.0003),    # I - P = -0.0007 -> -0.0005: F = 0.0008 - 0.0005 = 0.0003
    (-0.0003, 0.0001),   # I - P = +0.0004, inside: F = I = 0.0001
    (-0.0010, -0.0005),  # I - P = +0.0011 -> +0.0005: F = -0.0010 + 0.0005 = -0.0005
    (0.0100, 0.0030),    # 0.0100 - 0.0005 = 0.0095, capped at +0.3 %
    (-0.0100, -0.0030),  # -0.0100 + 0.0005 = -0.0095, capped at -0.3 %
])
def test_binance_funding_clamp_and_cap_hand_worked(pbar, expect):
    assert binance_funding_cap(T) == pytest.approx(0.003, abs=1e-18)
    assert binance_funding_rate(pbar) == pytest.approx(expect, abs=1e-15)
    assert binance_funding_rate(pbar, bracket_table("binance", "ETHUSDT",
                                                    datetime.date(2025, 3, 1))) == \
        pytest.approx(expect, abs=1e-15)  # early-2025 tier 1 is 0.40 % as well
    assert funding_rate_nb(pbar, BINANCE_INTEREST_8H, BINANCE_CLAMP, 0.003) == \
        naive.funding_rate(pbar, 0.0001, 0.0005, 0.003)


def test_hl_hourly_funding_hand_worked():
    # F8h = Pbar + clamp(I - Pbar, +-0.05 %), paid hourly as F8h / 8 (mechanics.md section 3).
    # Pbar 0.08 %, I 0.01 %: F8h = 0.0008 - 0.0005 = 0.0003 -> 0.0000375 per hour
    assert hl_funding_rate_hourly_nb(0.0008, 0.0001) == pytest.approx(0.0000375, abs=1e-18)
    # no cap documented for Hyperliquid: Pbar 2 % -> (0.02 - 0.0005)/8 = 0.0024375
    assert hl_funding_rate_hourly_nb(0.02, 0.0001) == pytest.approx(0.0024375, abs=1e-17)
    assert HL_FUNDING_INTERVAL_S == 3600 and BINANCE_FUNDING_INTERVAL_S == 8 * 3600


def test_premium_hand_worked():
    # P = [max(0, ImpactBid - Index) - max(0, Index - ImpactAsk)] / Index
    # bid 100,050, ask 100,070 over index 100,000: (50 - 0)/100,000 = 0.0005
    assert premium_index_nb(100_050.0, 100_070.0, 100_000.0) == pytest.approx(0.0005, abs=1e-18)
    # bid 99,950, ask 99,980: (0 - 20)/100,000 = -0.0002
    assert premium_index_nb(99_950.0, 99_980.0, 100_000.0) == pytest.approx(-0.0002, abs=1e-18)
    # index inside the spread: 0
    assert premium_index_nb(99_990.0, 100_010.0, 100_000.0) == 0.0
    # book-less simplification, ImpactBid = ImpactAsk = last: (last - index)/index
    assert premium_from_last_nb(100_030.0, 100_000.0) == pytest.approx(0.0003, abs=1e-18)
    assert premium_from_last_nb(99_970.0, 100_000.0) == pytest.approx(-0.0003, abs=1e-18)
    acc = np.zeros(2)
    for p in (0.0001, 0.0003, 0.0005):
        premium_accumulate_nb(acc, p, 1.0)
    assert premium_average_nb(acc) == pytest.approx(0.0003, abs=1e-18)
    assert premium_average_nb(np.zeros(2)) == 0.0


def test_payment_hand_worked():
    # payment = Q * Mark * F; longs pay shorts when F > 0. 2 BTC, mark 100,000, F 0.01 %:
    # the long pays 2 * 100,000 * 0.0001 = 20 USD (10 per coin), the short receives 20.
    assert funding_payment_per_unit_nb(1, 100_000.0, 0.0001) == pytest.approx(10.0, abs=1e-12)
    assert funding_payment_per_unit_nb(-1, 100_000.0, 0.0001) == pytest.approx(-10.0, abs=1e-12)
    assert wallet_change_per_unit_nb(1, 100_000.0, 0.0001) == pytest.approx(-10.0, abs=1e-12)
    side = np.array([1, -1, 1], np.int8)
    qty = np.array([2.0, 2.0, 5.0])
    wallet = np.array([1_000.0, 1_000.0, 1_000.0])
    active = np.array([True, True, False])
    tl, ts = apply_funding_isolated_nb(side, qty, wallet, active, -10.0, 10.0)
    np.testing.assert_allclose(wallet, [980.0, 1_020.0, 1_000.0])
    assert (tl, ts) == (-20.0, 20.0)
    # cross: the two positions share account 0's wallet; the third (account 1) is closed
    acc = np.array([5_000.0, 7.0])
    tl, ts = apply_funding_cross_nb(side, qty, np.array([0, 0, 1]), acc, active, -10.0, 10.0)
    np.testing.assert_allclose(acc, [5_000.0, 7.0])
    assert (tl, ts) == (-20.0, 20.0)


def test_funding_times_hand_worked():
    # Binance pays at 00, 08, 16 UTC. At 2025-10-10 20:50 UTC the next is 2025-10-11 00:00,
    # 3 h 10 min = 11,400 s away.
    t = datetime.datetime(2025, 10, 10, 20, 50, tzinfo=UTC).timestamp()
    assert time_to_next_funding_nb(t, 28_800.0) == 11_400.0
    at8 = datetime.datetime(2025, 10, 10, 8, 0, tzinfo=UTC).timestamp()
    assert time_to_next_funding_nb(at8, 28_800.0) == 28_800.0  # due now; next one 8 h away
    assert funding_events_nb(at8 - 1.0, at8, 28_800.0) == 1
    assert funding_events_nb(at8, at8 + 28_799.0, 28_800.0) == 0
    assert funding_events_nb(at8 - 1.0, at8 + 86_400.0, 28_800.0) == 4
    assert funding_events_nb(at8 + 0.5, at8 + 3_600.5, 3_600.0) == 1  # Hyperliquid, hourly
    rng = np.random.default_rng(1)
    for _ in range(200):
        a = float(rng.integers(0, 2_000_000_000)) + rng.choice([0.0, 0.25, 0.5])
        b = a + float(rng.integers(0, 200_000))
        iv = float(rng.choice([3_600.0, 28_800.0]))
        assert time_to_next_funding_nb(a, iv) == naive.time_to_next_funding(a, iv)
        assert funding_events_nb(a, b, iv) == naive.funding_events(a, b, iv)


def test_lp_shift_hand_worked():
    # Long 1 BTC @ 65,000, 20x, WB 3,250 (mechanics.md section 1 checked example):
    #   LP = (3,250 - 65,000) / (0.004 - 1) = 61,750 / 0.996 = 61,997.99
    # pays funding F = 0.01 % at mark 65,000: 6.5 USD per coin, d = -6.5:
    #   LP' = (3,243.5 - 65,000) / (0.004 - 1) = 61,756.5 / 0.996 = 62,004.518...
    #   shift = d / (MMR - s) = -6.5 / (0.004 - 1) = 6.5 / 0.996 = +6.5261...
    #   (mechanics.md's "payment / Q" = 6.5 is the MMR -> 0 limit)
    d = wallet_change_per_unit_nb(1, 65_000.0, 0.0001)
    assert d == pytest.approx(-6.5, abs=1e-12)
    lp0, b0 = liq_price_nb(1, 1.0, 65_000.0, 3_250.0, 0.0, 0.0, *ARR)
    lp1, b1 = liq_price_nb(1, 1.0, 65_000.0, 3_250.0 + d, 0.0, 0.0, *ARR)
    assert lp0 == pytest.approx(61_997.99, abs=0.005) and b0 == b1 == 0
    assert lp1 == pytest.approx(61_756.5 / 0.996, rel=1e-14)
    assert funding_lp_shift_nb(1, 0.004, d) == pytest.approx(6.5 / 0.996, rel=1e-14)
    assert lp1 - lp0 == pytest.approx(6.5 / 0.996, rel=1e-9)
    # Short, same, receives 6.5: LP = 68,250/1.004 = 67,978.09 -> 68,256.5/1.004; shift
    # = +6.5 / (0.004 + 1) = 6.4741...
    lp0, _ = liq_price_nb(-1, 1.0, 65_000.0, 3_250.0, 0.0, 0.0, *ARR)
    lp1, _ = liq_price_nb(-1, 1.0, 65_000.0, 3_256.5, 0.0, 0.0, *ARR)
    assert lp1 - lp0 == pytest.approx(funding_lp_shift_nb(-1, 0.004, 6.5), rel=1e-9)
    assert funding_lp_shift_nb(-1, 0.004, 6.5) == pytest.approx(6.5 / 1.004, rel=1e-14)
    np.testing.assert_allclose(funding_lp_shift([1, -1], [0, 3], T, 6.5),
                               [6.5 / (0.004 - 1), 6.5 / (0.01 + 1)], rtol=1e-15)
    out = np.empty((2, T.n))
    ladder_offsets_nb(-6.5, 6.5, T.mmr, out)
    np.testing.assert_allclose(out[0], -6.5 / (T.mmr - 1), rtol=1e-15)
    np.testing.assert_allclose(out[1], 6.5 / (T.mmr + 1), rtol=1e-15)


def test_lp_shift_breaks_across_a_bracket_hand_worked():
    # Long 3.9 BTC @ 80,000 at 20x (WB 15,600): LP = (15,600 - 312,000)/(3.9*(0.004 - 1))
    # = 76,305.22, notional 297,590 in bracket 1 (<= 300k), 2,410 USD below the cap.
    # Paying 1,000 USD per coin (d = -1,000) would shift LP by 1,000/0.996 = 1,004.02 in
    # bracket 1 -> 77,309.24, notional 301,506 > 300k: the bracket-2 formula applies
    # (MMR 0.5 %, cum 300): LP = (15,600 - 3,900 + 300 - 312,000)/(3.9*(0.005 - 1))
    # = 300,000/3.8805 = 77,309.63... which is NOT 77,309.24: the offset is inexact, and flagged.
    key, br = ladder_keys(T, [1], [3.9], [80_000.0], [15_600.0])
    assert br[0] == 0 and key[0] == pytest.approx(296_400 / 3.8844, rel=1e-13)
    lp, stale = effective_lps(T, [1], [3.9], key, br, -1_000.0, 0.0)
    assert stale[0]
    assert lp[0] == pytest.approx(296_400 / 3.8844 + 1_000 / 0.996, rel=1e-13)
    exact, b = liq_price_nb(1, 3.9, 80_000.0, 15_600.0 - 3_900.0, 0.0, 0.0, *ARR)
    assert b == 1 and exact == pytest.approx(300_000 / 3.8805, rel=1e-13)
    assert abs(exact - lp[0]) > 0.3
    refresh_keys_nb(np.array([0]), np.array([1], np.int8), np.array([3.9]),
                    np.array([80_000.0]), np.array([15_600.0]), -1_000.0, 0.0, *ARR, key, br)
    lp, stale = effective_lps(T, [1], [3.9], key, br, -1_000.0, 0.0)
    assert not stale[0] and br[0] == 1 and lp[0] == pytest.approx(exact, rel=1e-13)
    # the range of C over which the original key was exact: Q*LP from -inf ... to 300k,
    # i.e. C >= (300,000/3.9 - 76,305.22) * (0.004 - 1) = -2,410.1.../3.9*0.996 ...
    lo, hi = np.empty(1), np.empty(1)
    k0, b0 = ladder_keys(T, [1], [3.9], [80_000.0], [15_600.0])
    funding_c_range_nb(np.array([1], np.int8), np.array([3.9]), k0, b0, T.floor, T.cap, T.mmr,
                       lo, hi)
    assert hi[0] == np.inf
    assert lo[0] == pytest.approx((300_000 / 3.9 - 296_400 / 3.8844) * (0.004 - 1), rel=1e-12)
    assert -1_000.0 < lo[0]  # -1,000 per coin is outside: stale, as found above


# ------------------------------------------------------------ offset vs recompute from scratch

def random_population(rng, n):
    """Both sides, notionals 1k..2B (all brackets), leverage 0.8x..60x (a few longs that cannot
    be liquidated), entry 40k..120k."""
    entry = rng.uniform(40_000.0, 120_000.0, n)
    notional = np.exp(rng.uniform(np.log(1e3), np.log(2e9), n))
    qty = notional / entry
    lev = np.exp(rng.uniform(np.log(0.8), np.log(60.0), n))
    wallet = notional / lev
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    return side, qty, entry, wallet


def lp_tolerance(side, qty, entry, wallet, mmr):
    """Rounding slack of an LP: a few ulp of (|WB| + Q*EP) / (Q * |MMR - s|), plus 1e-12 rel."""
    s = np.where(side > 0, 1.0, -1.0)
    return 64 * np.finfo(np.float64).eps * (np.abs(wallet) + qty * entry) / (qty * np.abs(mmr - s))


def test_funding_offset_matches_recompute_over_many_intervals():
    """The issue's requirement: funding paid over several intervals moves liquidation prices
    exactly as recomputing every position from scratch would.

    Explicit path: every funding event is paid into every wallet and every LP is recomputed with
    cascade.rules.margin. Lazy path: only the per-side cumulative ``C_s`` moves; LPs come from the
    keys; rows flagged stale (their LP's notional left its bracket) are refreshed."""
    rng = np.random.default_rng(2026)
    n = 4_000
    side, qty, entry, wallet0 = random_population(rng, n)
    active = np.ones(n, np.bool_)
    wallet = wallet0.copy()                    # explicit path
    key, br = ladder_keys(T, side, qty, entry, wallet0)
    lp_start, _ = liq_prices(T, side, qty, entry, wallet0)
    np.testing.assert_allclose(np.where((side > 0) & (lp_start == 0), 0.0, key),
                               lp_start, rtol=1e-15)
    assert ((side > 0) & (lp_start == 0)).sum() > 10  # some longs cannot be liquidated
    c_long = c_short = 0.0
    mark = 100_000.0
    n_stale_total = 0
    n_wrong_if_ignored = 0
    rates = [0.0001, 0.003, 0.003, -0.0005, 0.003, 0.0001, -0.003, 0.003, 0.003, 0.0003,
             0.003, 0.003, 0.003, 0.003, 0.003, 0.003]
    for k, f in enumerate(rates):
        mark *= float(np.exp(rng.normal(0.0, 0.01)))
        d_long = float(wallet_change_per_unit_nb(1, mark, f))
        d_short = float(wallet_change_per_unit_nb(-1, mark, f))
        tl, ts = apply_funding_isolated_nb(side, qty, wallet, active, d_long, d_short)
        if k == 0:
            ref_w, (rtl, rts) = naive.apply_funding(side, qty, wallet0, active, d_long, d_short)
            np.testing.assert_allclose(wallet, ref_w, rtol=1e-15)
            assert tl == pytest.approx(rtl, rel=1e-12) and ts == pytest.approx(rts, rel=1e-12)
        c_long += d_long
        c_short += d_short
        lp_ref, _ = liq_prices(T, side, qty, entry, wallet)           # from scratch
        lp, stale = effective_lps(T, side, qty, key, br, c_long, c_short)
        tol = lp_tolerance(side, qty, entry, wallet, T.mmr[br]) + 1e-12 * np.abs(lp_ref)
        ok = ~stale
        bad = np.abs(lp[ok] - lp_ref[ok]) > tol[ok]
        assert not bad.any(), (k, np.flatnonzero(ok)[bad][:5], lp[ok][bad][:5],
                               lp_ref[ok][bad][:5])
        # a stale row's bracket-b value is generally wrong: the detection is needed
        n_stale_total += int(stale.sum())
        n_wrong_if_ignored += int((np.abs(lp[stale] - lp_ref[stale]) > tol[stale]).sum())
        # the C-range tells the same rows (away from rounding at the boundary)
        lo, hi = np.empty(n), np.empty(n)
        funding_c_range_nb(side, qty, key, br, T.floor, T.cap, T.mmr, lo, hi)
        c = np.where(side > 0, c_long, c_short)
        outside = (c < lo) | (c > hi)
        clear = np.minimum(np.abs(c - lo), np.abs(c - hi)) > 1e-9 * (1 + np.abs(c))
        np.testing.assert_array_equal(outside[clear], stale[clear])
        # refresh the stale rows: now every row is exact
        rows = np.flatnonzero(stale).astype(np.int64)
        refresh_keys_nb(rows, side, qty, entry, wallet0, c_long, c_short, *ARR, key, br)
        lp, stale = effective_lps(T, side, qty, key, br, c_long, c_short)
        assert not stale.any()
        bad = np.abs(lp - lp_ref) > tol
        assert not bad.any(), (k, np.flatnonzero(bad)[:5])
        # wallets: the lazy wallet is the explicit one
        w_lazy = np.array([effective_wallet_nb(side[i], qty[i], wallet0[i], c_long, c_short)
                           for i in range(0, n, 97)])
        np.testing.assert_allclose(w_lazy, wallet[::97], rtol=1e-12, atol=1e-6)
    assert n_stale_total > 20 and n_wrong_if_ignored > 10
    # the slow naive reference agrees with the lazy LPs on a subsample
    for i in range(0, n, 211):
        ref, _ = naive_margin.liq_price(int(side[i]), qty[i], entry[i], wallet[i], 0.0, 0.0,
                                        *ARR)
        assert lp[i] == pytest.approx(ref, rel=1e-9, abs=1e-6)


def test_offset_keeps_ladder_order_within_a_bracket():
    rng = np.random.default_rng(4)
    side, qty, entry, wallet = random_population(rng, 3_000)
    key, br = ladder_keys(T, side, qty, entry, wallet)
    for c_long, c_short in ((-150.0, 150.0), (-900.0, 900.0), (400.0, -400.0)):
        lp, stale = effective_lps(T, side, qty, key, br, c_long, c_short)
        for s in (1, -1):
            for b in range(T.n):
                m = (side == s) & (br == b) & ~stale
                if s > 0:
                    m &= lp > 0  # clamped longs all sit at 0
                if m.sum() < 2:
                    continue
                o = np.argsort(key[m], kind="mergesort")
                assert np.all(np.diff(lp[m][o]) >= 0)


def test_ladder_key_clamped_long():
    # long 1 BTC @ 65,000 with 70,000 wallet: never liquidated (LP 0); key = unclamped
    # (70,000 - 65,000)/(0.004 - 1) = -5,020.08. Paying 6,000 per coin: raw = -5,020.08
    # + (-6,000)/(0.004 - 1) = 1,004.02... > 0: LP (64,000 - 65,000)/(-0.996) = 1,004.016
    k, b = ladder_key_nb(1, 1.0, 65_000.0, 70_000.0, 0.0, *ARR)
    assert b == 0 and k == pytest.approx(-5_000.0 / 0.996, rel=1e-14)
    lp, stale = effective_lps(T, [1], [1.0], [k], [b], -6_000.0, 0.0)
    assert not stale[0] and lp[0] == pytest.approx(1_000.0 / 0.996, rel=1e-12)
    assert lp[0] == pytest.approx(liq_price_nb(1, 1.0, 65_000.0, 64_000.0, 0.0, 0.0, *ARR)[0],
                                  rel=1e-12)
    lp, _ = effective_lps(T, [1], [1.0], [k], [b], -2_000.0, 0.0)
    assert lp[0] == 0.0


def test_premium_rate_random_vs_naive():
    rng = np.random.default_rng(3)
    for _ in range(500):
        idx = rng.uniform(10_000.0, 150_000.0)
        bid = idx * (1 + rng.normal(0, 0.001))
        ask = bid * (1 + abs(rng.normal(0, 0.0005)))
        assert premium_index_nb(bid, ask, idx) == pytest.approx(
            naive.premium_index(bid, ask, idx), rel=1e-12, abs=1e-18)
        pbar = rng.normal(0.0, 0.002)
        cap = float(rng.choice([0.0, 0.003, 0.02]))
        assert funding_rate_nb(pbar, 0.0001, 0.0005, cap) == \
            naive.funding_rate(pbar, 0.0001, 0.0005, cap)
        assert math.isfinite(hl_funding_rate_hourly_nb(pbar, 0.0001))
