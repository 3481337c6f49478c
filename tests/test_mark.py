"""Index, oracle and mark prices (cascade.rules.mark) against hand-worked examples and tests/naive."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest

from cascade.rules.mark import (
    BINANCE_BASIS_WINDOW,
    basis_ring_new,
    basis_ring_push_nb,
    binance_basis_window,
    binance_mark_nb,
    binance_p1_nb,
    binance_p2_nb,
    ema_update_nb,
    hl_mark_nb,
    hl_oracle_nb,
    hl_oracle_weights,
    index_price_nb,
    median3_nb,
    median_nb,
    weighted_median_nb,
)
from tests.naive import rules as naive

A = np.array


# ------------------------------------------------------------------------------ hand-worked

def test_binance_mark_median_hand_worked():
    # mechanics.md section 1: Mark = median(P1, P2, last).
    # Index 100,000; last funding 0.01 %; 2 h to the next funding of an 8 h interval:
    #   P1 = 100,000 * (1 + 0.0001 * 7,200 / 28,800) = 100,000 * 1.000025 = 100,002.5
    # basis mean (mid - index) = +5:  P2 = 100,005
    p1 = binance_p1_nb(100_000.0, 0.0001, 7_200.0, 28_800.0)
    assert p1 == pytest.approx(100_002.5, abs=1e-9)
    assert binance_p2_nb(100_000.0, 5.0) == 100_005.0
    # last 100,020: sorted (100,002.5, 100,005, 100,020) -> 100,005 (P2)
    assert binance_mark_nb(100_000.0, 0.0001, 7_200.0, 28_800.0, 5.0, 100_020.0) == \
        pytest.approx(100_005.0, abs=1e-9)
    # last 100,001: sorted (100,001, 100,002.5, 100,005) -> 100,002.5 (P1)
    assert binance_mark_nb(100_000.0, 0.0001, 7_200.0, 28_800.0, 5.0, 100_001.0) == \
        pytest.approx(100_002.5, abs=1e-9)
    # basis -3 (P2 = 99,997), last 99,990: sorted (99,990, 99,997, 100,002.5) -> 99,997 (P2)
    assert binance_mark_nb(100_000.0, 0.0001, 7_200.0, 28_800.0, -3.0, 99_990.0) == \
        pytest.approx(99_997.0, abs=1e-9)
    # a crash in last price alone does not drag the mark: last 90,000 -> 99,997 (P2)
    assert binance_mark_nb(100_000.0, 0.0001, 7_200.0, 28_800.0, -3.0, 90_000.0) == \
        pytest.approx(99_997.0, abs=1e-9)


def test_index_weighted_mean_hand_worked():
    # (5 * 100,000 + 3 * 100,100 + 2 * 99,900) / (5 + 3 + 2) = 1,000,100 / 10 = 100,010
    assert index_price_nb(A([100_000.0, 100_100.0, 99_900.0]), A([5.0, 3.0, 2.0])) == \
        pytest.approx(100_010.0, abs=1e-9)
    # a venue with weight 0 or no price is left out: (5*100,000 + 3*100,100) / 8 = 100,037.5
    assert index_price_nb(A([100_000.0, 100_100.0, np.nan, 1.0]), A([5.0, 3.0, 2.0, 0.0])) == \
        pytest.approx(100_037.5, abs=1e-9)
    assert math.isnan(index_price_nb(A([1.0, 2.0]), A([0.0, 0.0])))


def test_hl_oracle_weighted_median_hand_worked():
    # mechanics.md section 3: weights Binance 3, OKX 2, Bybit 2, others 1.
    venues = ["Binance", "okx", "BYBIT", "coinbase", "kraken"]
    w = hl_oracle_weights(venues)
    np.testing.assert_array_equal(w, [3.0, 2.0, 2.0, 1.0, 1.0])
    # sorted: 99,000 (1, cum 1), 99,980 (2, cum 3), 100,000 (3, cum 6 > 9/2) -> 100,000
    prices = A([100_000.0, 100_050.0, 99_980.0, 100_200.0, 99_000.0])
    assert hl_oracle_nb(prices, w) == 100_000.0
    # total 8, half 4: 99 (1, cum 1), 100 (3, cum 4 == half) -> interval [100, 101], midpoint
    # 100.5 (= median of 99,100,100,100,101,101,102,102)
    assert hl_oracle_nb(A([100.0, 101.0, 102.0, 99.0]), hl_oracle_weights(
        ["binance", "okx", "bybit", "gate"])) == 100.5
    assert naive.weighted_median([100.0, 101.0, 102.0, 99.0], [3, 2, 2, 1]) == 100.5


def test_hl_mark_hand_worked():
    # oracle 100,000 + basis EMA 12 = 100,012; median(bid 100,005, ask 100,015, last 100,030)
    # = 100,015; median of CEX perp mids (100,008, 100,011, 100,040) = 100,011.
    # median(100,012, 100,015, 100,011) = 100,012
    assert hl_mark_nb(100_000.0, 12.0, 100_005.0, 100_015.0, 100_030.0,
                      A([100_008.0, 100_011.0, 100_040.0])) == 100_012.0
    # even number of CEX mids: their median is the mean of the middle two, (100,008+100,040)/2
    # = 100,024; median(100,012, 100,015, 100,024) = 100,015
    assert hl_mark_nb(100_000.0, 12.0, 100_005.0, 100_015.0, 100_030.0,
                      A([100_008.0, 100_040.0])) == 100_015.0
    assert math.isnan(hl_mark_nb(1.0, 0.0, 1.0, 1.0, 1.0, np.empty(0)))


def test_ema_hand_worked():
    # tau 150 s, one step of 150 s from 0 towards 10: 10 * (1 - e^-1) = 6.321205588...
    assert ema_update_nb(0.0, 10.0, 150.0, 150.0) == pytest.approx(6.321205588285577, rel=1e-15)
    assert ema_update_nb(np.nan, 7.0, 1.0, 150.0) == 7.0  # first sample starts the average
    assert ema_update_nb(3.0, 10.0, 0.0, 150.0) == 3.0    # no time, no move
    # two 75 s steps equal one 150 s step (continuous time): 1 - (e^-0.5)^2 = 1 - e^-1
    e = ema_update_nb(ema_update_nb(0.0, 10.0, 75.0, 150.0), 10.0, 75.0, 150.0)
    assert e == pytest.approx(6.321205588285577, rel=1e-14)


def test_basis_window_by_date():
    # mechanics.md section 1: 30 one-second samples, 60 before 2025-09-18
    assert binance_basis_window(datetime.date(2025, 9, 17)) == 60
    assert binance_basis_window(datetime.date(2025, 9, 18)) == 30
    assert binance_basis_window(datetime.datetime(2025, 10, 10, 21)) == 30
    assert binance_basis_window() == BINANCE_BASIS_WINDOW == 30


def test_basis_ring_hand_worked():
    # push 1, 2, ..., 40 into a 30-sample ring: after k pushes the mean is that of the last
    # min(k, 30) samples; after 40 it is mean(11..40) = 25.5
    ring, state = basis_ring_new(30)
    means = [basis_ring_push_nb(ring, state, float(k)) for k in range(1, 41)]
    assert means[0] == 1.0 and means[1] == 1.5 and means[29] == 15.5 and means[39] == 25.5
    # started full of 4.0: after pushing 10 the mean is (29*4 + 10)/30 = 4.2
    ring, state = basis_ring_new(30, fill=4.0)
    assert basis_ring_push_nb(ring, state, 10.0) == pytest.approx(4.2, abs=1e-12)
    with pytest.raises(ValueError):
        basis_ring_new(0)


# ------------------------------------------------------------------------ against the naive

def test_weighted_median_random_vs_naive():
    rng = np.random.default_rng(5)
    for trial in range(400):
        n = int(rng.integers(1, 9))
        values = rng.choice(A([99.0, 100.0, 100.5, 101.0, 103.0]), n) if trial % 2 else \
            rng.uniform(90.0, 110.0, n)
        weights = rng.integers(0, 4, n).astype(np.float64) if trial % 3 else \
            rng.uniform(0.0, 3.0, n)
        got = weighted_median_nb(values, weights)
        ref = naive.weighted_median(values, weights)
        if math.isnan(ref):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(ref, rel=1e-15), (values, weights)


def test_medians_and_index_random_vs_naive():
    rng = np.random.default_rng(6)
    for _ in range(300):
        n = int(rng.integers(0, 7))
        v = rng.uniform(-5.0, 5.0, n)
        w = rng.uniform(0.0, 2.0, n)
        got_m, ref_m = median_nb(v), naive.median(v)
        assert (math.isnan(got_m) and math.isnan(ref_m)) or got_m == ref_m
        got_i, ref_i = index_price_nb(v, w), naive.index_price(v, w)
        assert (math.isnan(got_i) and math.isnan(ref_i)) or got_i == pytest.approx(ref_i,
                                                                                   abs=1e-12)
        a, b, c = rng.uniform(0.0, 1.0, 3)
        assert median3_nb(a, b, c) == sorted([a, b, c])[1]
    assert math.isnan(median3_nb(1.0, np.nan, 2.0))


def test_binance_mark_random_vs_naive():
    rng = np.random.default_rng(7)
    for _ in range(500):
        index = rng.uniform(20_000.0, 150_000.0)
        lf = rng.uniform(-0.003, 0.003)
        interval = 28_800.0
        ttn = rng.uniform(0.0, interval)
        basis = rng.normal(0.0, 50.0)
        last = index * (1 + rng.normal(0.0, 0.002))
        got = binance_mark_nb(index, lf, ttn, interval, basis, last)
        assert got == pytest.approx(naive.binance_mark(index, lf, ttn, interval, basis, last),
                                    rel=1e-15)


@pytest.mark.parametrize("window, fill", [(30, None), (60, None), (30, -7.5), (1, None)])
def test_basis_ring_random_vs_naive(window, fill):
    rng = np.random.default_rng(window)
    samples = rng.normal(0.0, 40.0, 2_000) + 3.0
    ring, state = basis_ring_new(window, fill)
    for k, x in enumerate(samples):
        got = basis_ring_push_nb(ring, state, x)
        ref = naive.moving_average(samples[: k + 1].tolist(), window, fill)
        assert got == pytest.approx(ref, abs=1e-10)
        if state[1] == 0:  # just wrapped: the running sum was recomputed exactly, slot order
            s = 0.0
            for y in ring.tolist():
                s += y
            assert state[0] == s


def test_ema_random_vs_naive():
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 30.0, 500)
    dts = rng.uniform(0.5, 5.0, 500)
    ref = naive.ema(x.tolist(), dts.tolist(), 150.0)
    e = np.nan
    for k in range(500):
        e = ema_update_nb(e, x[k], dts[k], 150.0)
        assert e == pytest.approx(ref[k], rel=1e-12, abs=1e-12)


def test_hl_mark_random_vs_naive():
    rng = np.random.default_rng(9)
    for _ in range(300):
        o = rng.uniform(50_000.0, 120_000.0)
        k = int(rng.integers(1, 5))
        args = (o, rng.normal(0, 30), o + rng.normal(0, 40), o + rng.normal(0, 40),
                o + rng.normal(0, 60))
        mids = o + rng.normal(0, 40, k)
        assert hl_mark_nb(*args, mids) == naive.hl_mark(*args, mids.tolist())
