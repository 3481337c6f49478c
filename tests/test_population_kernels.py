"""The population build's kernels against their slow references (tests/naive/population.py):
the survival test on random candidates with every edge (NaN and non-positive liquidation
prices, zero sizes, stops on both sides, triggers at zero), on 1 and 2 threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cascade.model import population as P
from tests.naive import population as naive


def _candidates(n: int, seed: int):
    rng = np.random.default_rng(seed)
    m, paths = 200, 3  # history grid points, history paths (their grids end to end)
    start = 60_000 * np.exp(rng.normal(0, 0.01))
    smin, smax = [], []
    for _ in range(paths):  # each path ends at the start price
        lows = start * np.exp(np.cumsum(rng.normal(0, 0.01, m))[::-1] - rng.normal(0, 0.01))
        lows[-1] = start
        highs = lows * (1 + rng.random(m) * 0.01)
        highs[-1] = start
        smin.append(np.minimum.accumulate(lows[::-1])[::-1])
        smax.append(np.maximum.accumulate(highs[::-1])[::-1])
    smin, smax = np.concatenate(smin), np.concatenate(smax)
    p0 = float(start)
    side = np.where(rng.random(n) < 0.6, 1, -1).astype(np.int8)
    entry = p0 * np.exp(rng.normal(0, 0.05, n))
    lev = rng.choice([1.0, 2.0, 5.0, 20.0, 100.0], n)
    lp = entry * (1 - side / lev * 0.95)
    lp[::97] = np.nan
    lp[::89] = 0.0
    lp[::83] = -5.0
    lp[::79] = entry[::79]  # the trigger at the entry: log(entry / trig) is 0
    qty = rng.random(n)
    qty[::71] = 0.0
    gi = rng.integers(0, m, n).astype(np.int32)
    c = {"side": side, "gk": gi + m * rng.integers(0, paths, n).astype(np.int32),
         "entry": entry,
         "stop_dist": rng.random(n) * 0.1, "has_stop": rng.random(n) < 0.3,
         "u_survive": rng.random(n)}
    c["stop_dist"][::61] = 2.0  # a long's stop below zero, a short's far above
    var = np.abs(rng.normal(1e-4, 1e-4, m))
    var[::17] = 0.0
    return c, qty, lp, smin, smax, p0, (var, 1e-6)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("bridge", [True, False])
def test_survived_equals_the_numpy_original(seed, bridge, monkeypatch):
    c, qty, lp, smin, smax, p0, br = _candidates(50_000, seed)
    br = br if bridge else None
    want = naive.survived(c, qty, lp, smin, smax, p0, br)
    assert 0 < want.sum() < want.size
    if bridge:  # the bridge kills some the path left alive
        assert want.sum() < naive.survived(c, qty, lp, smin, smax, p0, None).sum()
    monkeypatch.setattr(P, "_BLOCK", 4096)  # several blocks of the bridge test
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            got = P._survived(c, qty, lp, smin, smax, p0, br)
            assert got.dtype == bool and np.array_equal(got, want)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("seed", [1, 2])
def test_derive_equals_the_numpy_original(seed):
    from cascade.rules.brackets import bracket_table

    c, *_ = _candidates(50_000, seed)
    rng = np.random.default_rng(seed)
    n = c["side"].size
    c["shape"] = 100.0 * (1.0 + rng.pareto(1.5, n))
    c["leverage"] = rng.choice([1.0, 3.0, 10.0, 50.0, 125.0], n)
    c["cross"] = rng.random(n) < 0.4
    c["spare"] = rng.exponential(1.0, n) * 0.5
    table = bracket_table("binance", "BTCUSDT", __import__("datetime").date(2025, 10, 10))
    targets = {1: 6e9, -1: 4e9}
    want = naive.derive(c, table, targets, 0.01, 60_000.0)
    got = P._derive(c, table, targets, 0.01, 60_000.0)
    assert np.count_nonzero(want["lev"] < c["leverage"]) > 0  # some leverage capped
    for k in ("qty", "lev", "wallet", "lp", "br"):
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    lean = P._derive(c, table, targets, 0.01, 60_000.0, lev=False)  # sizes and prices only
    assert set(lean) == {"qty", "lp"}
    for k in ("qty", "lp"):
        assert np.array_equal(lean[k], want[k]), k


@pytest.mark.parametrize("case", ["random", "hits", "flat", "steep"])
def test_interp_is_numpy_interp(case):
    rng = np.random.default_rng(5)
    xp = np.sort(rng.random(300)) * 100.0
    fp = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    x = rng.random(70_000) * 120.0 - 10.0  # some outside on both sides
    if case == "hits":
        x[::3] = xp[rng.integers(0, 300, x[::3].size)]  # exact grid points, the last included
        x[-1] = xp[-1]
    elif case == "flat":
        fp[100:200] = fp[100]
    elif case == "steep":  # infinite ends: the other end's formula, then the flat rule
        fp[149] = -np.inf
        fp[200] = fp[201] = np.inf
        x[7] = 0.5 * (xp[149] + xp[150])
        x[9] = 0.5 * (xp[200] + xp[201])
    x[::101] = np.nan
    want = np.interp(x, xp, fp)
    if case == "steep":
        assert want[7] == -np.inf and want[9] == np.inf
    assert np.array_equal(P.interp(x, xp, fp), want, equal_nan=True)


@pytest.mark.parametrize("case", ["tail", "few", "all_capped", "none_capped"])
def test_rescale_capped_equals_the_original(case):
    rng = np.random.default_rng(11)
    n = 20_000
    notional = 100.0 * (1.0 + rng.pareto(1.1, n))  # a heavy tail: several rounds of capping
    mask = rng.random(n) < 0.6
    notional[::50] = 0.0  # not rescaled
    share = {"tail": 0.002, "few": 0.5, "all_capped": 1e-6, "none_capped": 1.0}[case]
    if case == "few":
        mask[:] = False
        mask[:3] = True
    want = notional.copy()
    naive.rescale_capped(want, mask, 1e9, share)
    got = notional.copy()
    P._rescale_capped(got, mask, 1e9, share)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, notional)
