"""The ladder kept as runs with funding paid lazily (cascade.engine.ladder): the lazy payment
against an eager one bit for bit, and the engine against the slow reference (every position
rescanned every step, funding paid to every position at once) on random populations with
funding, partial liquidations and ADL, through funding shocks that create strays and re-key the
runs."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.engine import (
    HEAPED,
    J_FBASE,
    J_NFEV,
    J_XL,
    J_XS,
    LIQUIDATED,
    OPEN,
    TRIGGERED,
    EngineState,
)
from cascade.engine import state as state_module
from cascade.engine.ladder import sync_row_nb
from cascade.engine.structs import Positions
from cascade.model.scenario import parse_scenario
from cascade.model.venues import build_populations
from cascade.rules.brackets import bracket_table
from cascade.rules.margin import liq_prices_nb
from tests.test_venues import assert_matches_naive, storm_raw


def test_lazy_payment_is_the_eager_payment_bit_for_bit():
    """Rows paid event by event as the engine paid them before (numpy over the live rows:
    ``wallet -= side * qty * price * rate``, then every liquidation price from scratch) and rows
    paid lazily, all events at once, hold the same bits: wallet, liquidation price, funding
    paid; rows without a position (closed, or an entry not yet filled) pay nothing."""
    rng = np.random.default_rng(7)
    tb = bracket_table("binance", "BTCUSDT")
    n = 4000
    side = np.where(rng.random(n) < 0.6, 1, -1).astype(np.int8)
    qty = np.exp(rng.normal(0.0, 2.0, n))
    entry = 100_000.0 * np.exp(rng.normal(0.0, 0.05, n))
    wallet = qty * entry / rng.choice([2.0, 5.0, 10.0, 50.0, 125.0], n)
    status = rng.choice([OPEN, HEAPED, TRIGGERED, LIQUIDATED], n, p=[0.7, 0.1, 0.1, 0.1])
    status = status.astype(np.int8)
    entry[(status == TRIGGERED) & (rng.random(n) < 0.5)] = np.nan  # entries not yet filled
    lp = np.empty(n)
    br = np.empty(n, np.int8)
    liq_prices_nb(side, qty, entry, wallet, tb.floor, tb.cap, tb.mmr, tb.cum, lp, br)
    events = np.column_stack([100_000.0 * np.exp(rng.normal(0, 0.02, 30)),
                              rng.normal(0.0, 3e-4, 30)])
    # eager: the engine's former pay_funding, event by event
    w_e, lp_e, fp_e = wallet.copy(), lp.copy(), np.zeros(n)
    live = np.flatnonzero((status == OPEN) | (status == HEAPED)
                          | ((status == TRIGGERED) & ~np.isnan(entry)))
    for price, rate in events:
        pay = side[live] * qty[live] * price * rate
        w_e[live] -= pay
        fp_e[live] += pay
        out_lp = np.empty(len(live))
        out_b = np.empty(len(live), np.int8)
        liq_prices_nb(side[live], qty[live], entry[live], w_e[live], tb.floor, tb.cap, tb.mmr,
                      tb.cum, out_lp, out_b)
        lp_e[live] = out_lp
    # lazy: some rows synced midway, all at the end
    w_l, lp_l, fp_l, fep = wallet.copy(), lp.copy(), np.zeros(n), np.zeros(n, np.int32)
    rows = Positions(side, qty, entry, w_l, lp_l, status, np.zeros(n), fep, fp_l)
    for i in rng.choice(n, 500, replace=False):
        sync_row_nb(i, rows, tb.arrays, events, 11)
    for i in range(n):
        sync_row_nb(i, rows, tb.arrays, events, len(events))
    np.testing.assert_array_equal(w_l, w_e)
    np.testing.assert_array_equal(lp_l, lp_e)
    np.testing.assert_array_equal(fp_l, fp_e)
    assert (fep == len(events)).all()
    dead = np.setdiff1d(np.arange(n), live)
    assert (fp_l[dead] == 0).all() and (w_l[dead] == wallet[dead]).all()


@pytest.mark.parametrize("seed,window", [(11, None), (12, 0.05), (13, 1e-7)],
                         ids=["default-window", "many-strays", "re-key-every-event"])
def test_random_populations_match_the_slow_reference_through_funding_shocks(seed, window,
                                                                            monkeypatch):
    """A storm (partial liquidations of both kinds, ADL on both venues, conditional entries,
    latency) on a population drawn from ``seed``, with scheduled funding and random funding
    shocks paid between steps (one of 2 % of the price): no trigger missed, the same records in
    the same order, the same fills, wallets and liquidation prices as the slow reference. The
    runs' funding window decides the path: the default one (re-keyed by the 2 % shock), a wide
    one (many strays, never re-keyed), a tiny one (re-keyed at every event)."""
    if window is not None:
        monkeypatch.setattr(state_module, "LADDER_FUNDING_WINDOW", window)
    strays = []
    pay = EngineState.pay_funding

    def counting(self, v, rate, price):
        out = pay(self, v, rate, price)
        strays.append(int(self.ist[v, J_XL] + self.ist[v, J_XS]))
        return out

    monkeypatch.setattr(EngineState, "pay_funding", counting)
    rng = np.random.default_rng(seed)
    raw = storm_raw()
    raw["scenario"]["seed"] = seed
    steps = np.sort(rng.choice(np.arange(100, 1150), 5, replace=False))
    shocks = {int(t): float(rng.normal(0.0, 0.004)) for t in steps}
    shocks[int(steps[2])] = float(rng.choice([-1.0, 1.0]) * 0.02)
    sc = parse_scenario(raw, source=f"<storm seed {seed}>")
    res, _ = assert_matches_naive(sc, build_populations(sc), shocks)
    state, sv = res.state, res.summary["venues"]
    assert sum(sv[v]["partial_liquidations"] for v in sv) > 0
    assert sum(sv[v]["adl_count"] for v in sv) > 0
    assert res.summary["accounts_liquidated"] > 50
    base, nev = state.ist[:, J_FBASE], state.ist[:, J_NFEV]
    if window is None:
        assert ((base > 0) & (base < nev)).all()
    elif window == 0.05:
        assert (base == 0).all() and max(strays) > 20
    else:
        np.testing.assert_array_equal(base, nev)


def test_runs_and_the_final_payment_are_the_same_on_1_and_2_threads():
    """The parallel kernels of the ladder (each row's run, paying every row its funding) give
    the same bits on any thread count."""
    import numba

    from cascade.engine.ladder import ladder_for, sync_rows_nb

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread only")
    rng = np.random.default_rng(3)
    tb = bracket_table("binance", "BTCUSDT")
    n = 200_000
    side = np.sort(np.where(rng.random(n) < 0.7, 1, -1).astype(np.int8))[::-1].copy()
    qty = np.exp(rng.normal(-2.0, 2.0, n))
    entry = 100_000.0 * np.exp(rng.normal(0.0, 0.03, n))
    wallet = qty * entry / rng.choice([2.0, 10.0, 50.0], n)
    lp = np.empty(n)
    br = np.empty(n, np.int8)
    liq_prices_nb(side, qty, entry, wallet, tb.floor, tb.cap, tb.mmr, tb.cum, lp, br)
    o = np.lexsort((np.arange(n), lp, -side))
    side, qty, entry, wallet, lp, br = (a[o] for a in (side, qty, entry, wallet, lp, br))
    events = np.array([[100_000.0, 2e-4], [99_000.0, -3e-4], [101_000.0, 1e-4]])
    out = []
    before = numba.get_num_threads()
    try:
        for k in (1, 2):
            numba.set_num_threads(k)
            lad, nxl, nxs = ladder_for(side, qty, lp, br, tb, np.zeros(0, np.int32),
                                       np.zeros(0), window=500.0)
            w, x, fp = wallet.copy(), lp.copy(), np.zeros(n)
            status = np.zeros(n, np.int8)
            sync_rows_nb(Positions(side, qty, entry, w, x, status, np.zeros(n),
                                   np.zeros(n, np.int32), fp), tb.arrays, events, len(events))
            out.append((lad.order[:n - nxl - nxs].copy(), lad.runs.copy(), nxl, nxs, w, x, fp))
    finally:
        numba.set_num_threads(before)
    (o1, r1, l1, s1, *a), (o2, r2, l2, s2, *b) = out
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert (l1, s1) == (l2, s2) and l1 + s1 > 0
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("keys", ["random", "tied", "sorted", "reversed"])
def test_trigger_order_against_lexsort(keys):
    """The crossed rows of several runs are triggered in (price, row) order, longs from the top
    and shorts from the bottom: against ``np.lexsort`` on random, tied and already-sorted keys."""
    from cascade.engine.ladder import _order_candidates

    rng = np.random.default_rng(5)
    n = 5_000
    lp = {"random": rng.normal(100.0, 5.0, n), "tied": rng.integers(0, 7, n).astype(float),
          "sorted": np.sort(rng.normal(100.0, 5.0, n)),
          "reversed": np.sort(rng.normal(100.0, 5.0, n))[::-1].copy()}[keys]
    for nc in (0, 1, 2, 17, 3_000):
        rows = rng.choice(n, nc, replace=False).astype(np.int32)
        for sgn in (1, -1):
            cand = np.concatenate([rows, np.full(5, -1, np.int32)])
            _order_candidates(cand, nc, lp, sgn)
            want = rows[np.lexsort((-rows, -lp[rows]))] if sgn > 0 else \
                rows[np.lexsort((rows, lp[rows]))]
            np.testing.assert_array_equal(cand[:nc], want)
            assert (cand[nc:] == -1).all()
