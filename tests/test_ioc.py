"""Liquidation orders as the venues execute them: the IOC limit at the bankruptcy price (closed
form against bisection, orders at and beyond their limit), the fund with no balance, and the
schema of ``liquidation_order``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cascade.engine.book import impact_curve_nb, impact_inverse_nb, limit_flow_nb
from cascade.errors import CascadeError
from cascade.model.scenario import parse_scenario
from cascade.runner import simulate
from tests.conftest import make_scenario
from tests.naive import engine as naive
from tests.test_venues import KIND_LIQ, market, run, venue


@pytest.mark.parametrize("alpha", [0.5, 0.75, 1.0])
def test_limit_flow_closed_form_matches_bisection(alpha):
    rng = np.random.default_rng(7)
    depth = 5e6
    for _ in range(300):
        y0 = rng.normal(0, 2) * depth
        y_run = y0 + rng.normal(0, 1.5) * depth
        sell = bool(rng.integers(2))
        # limits on both sides of the current marginal price, in both regimes of the law
        lim = impact_curve_nb(y_run, depth, alpha) - impact_curve_nb(y0, depth, alpha) \
            + (-1 if sell else 1) * abs(rng.normal(0, 0.02))
        got = limit_flow_nb(y0, y_run, lim, depth, alpha, sell)
        want = naive.limit_flow_bisect(y0, y_run, lim, depth, alpha, sell)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-3 * depth * 1e-6)
        assert (got <= 0) if sell else (got >= 0)
        # the marginal price at the end of the fill is the limit
        end = impact_curve_nb(y_run + got, depth, alpha) - impact_curve_nb(y0, depth, alpha)
        assert end == pytest.approx(lim, abs=1e-12)
    for g in (-0.3, -0.01, -1e-4, 0.0, 1e-4, 0.01, 0.3):
        assert impact_curve_nb(impact_inverse_nb(g, depth, alpha), depth, alpha) == \
            pytest.approx(g, abs=1e-15)


@pytest.mark.parametrize("sell", [True, False])
def test_an_order_at_or_beyond_its_limit_fills_nothing(sell):
    depth, alpha, y0 = 4e6, 0.6, -1e6
    for y_run in (-3e6, 0.0, 2e6):
        at = impact_curve_nb(y_run, depth, alpha) - impact_curve_nb(y0, depth, alpha)
        assert limit_flow_nb(y0, y_run, at, depth, alpha, sell) == 0.0
        beyond = at + (0.001 if sell else -0.001)  # the book already past the limit
        assert limit_flow_nb(y0, y_run, beyond, depth, alpha, sell) == 0.0
        inside = at - (0.001 if sell else -0.001)
        assert limit_flow_nb(y0, y_run, inside, depth, alpha, sell) != 0.0


def test_ioc_reference_fill_stays_above_the_bankruptcy_price():
    """The slow reference's IOC order: a long whose limit the book reaches fills in part at a
    mean price above BP; one whose limit is already passed fills nothing; a long whose BP is
    at or below zero has no limit."""
    p, depth, alpha = 100_000.0, 2e6, 0.7
    f, qf, px = naive.ioc(1, 300.0, 101_000.0, 101_000.0 * 300 / 20, 0.0, -1e6, p, 1.0, p,
                          depth, alpha, True)
    bp = naive.bankruptcy(1, 300.0, 101_000.0, 101_000.0 * 300 / 20)
    assert 0 < qf < 300.0 and px >= bp and f < 0
    f, qf, px = naive.ioc(1, 1.0, 110_000.0, 110_000.0 / 100, 0.0, 0.0, p, 1.0, p, depth, alpha,
                          True)
    assert qf == 0.0 and f == 0.0 and math.isnan(px)
    f, qf, _ = naive.ioc(1, 1.0, 100_000.0, 2e5, 0.0, 0.0, p, 1.0, p, depth, alpha, True)
    assert qf == 1.0 and f == -p


def test_a_fund_with_no_balance_hands_everything_unfilled_to_adl():
    """bn's fund is empty: its cap is zero, so every coin an IOC order did not fill is closed by
    ADL at the bankruptcy price, except what ADL could not find (then the fund takes it)."""
    res = run(parse_scenario(market(), source="<empty funds>"))
    rec = res.state.venue_records(0)
    liq = rec[rec["kind"] == KIND_LIQ]
    unfilled = liq["qty"] - liq["ioc_qty"]
    assert (unfilled > 0).any() and (liq["adl_qty"] > 0).any()
    np.testing.assert_allclose(liq["adl_qty"] + liq["fund_qty"], unfilled, rtol=1e-12)
    # the fund took only what ADL could not find: when it did, no open opposite position was
    # left to deleverage at the end of that step's walk (the ranking is walked to its end)
    assert liq["adl_qty"].sum() > 0
    took = liq[liq["fund_qty"] > 0]
    assert (took["adl_qty"] < took["qty"] - took["ioc_qty"]).all()


def test_single_venue_binance_defaults_to_ioc_and_market_is_the_old_engine():
    ioc = simulate(make_scenario())
    mk = simulate(make_scenario(**{"venue.liquidation_order": "market"}))
    assert ioc.summary["takeover_usd"] > 0 and mk.summary["takeover_usd"] == 0
    assert (mk.records["ioc_qty"] == 0).all() and (mk.records["fund_qty"] == 0).all()
    # the fund takes over instead of selling below the bankruptcy price: a shallower fall
    assert ioc.summary["max_drawdown_pct"] < mk.summary["max_drawdown_pct"]
    hl = simulate(make_scenario(**{"venue.name": "hyperliquid",
                                   "population.leverages": [3.0, 10.0, 20.0, 30.0, 40.0]}))
    assert hl.summary["takeover_usd"] == 0  # one Hyperliquid venue: market orders


def test_liquidation_order_schema_errors():
    with pytest.raises(CascadeError, match=r"\[venue\] liquidation_order: expected one of"):
        make_scenario(**{"venue.liquidation_order": "backstop"})
    raw = market()
    venue(raw, "bn")["liquidation_order"] = "backstop"
    with pytest.raises(CascadeError, match=r"\[\[venues\]\] #1 \(bn\) liquidation_order: "
                                           r"expected 'backstop' only with partial"):
        parse_scenario(raw, source="<x>")
    with pytest.raises(CascadeError, match=r"fund_offload_depth_share_per_min"):
        make_scenario(**{"market.fund_offload_depth_share_per_min": -0.1})


def test_plots_show_fund_inventory_backstop_and_adl(tmp_path):
    from matplotlib.image import imread

    from cascade.plots.venues import plot_venues
    from cascade.plots.waterfall import plot_insurance
    from tests.test_venues import ioc_raw

    res = run(parse_scenario(ioc_raw(), source="<ioc>"))
    p = plot_venues(res.steps, ["bn", "hl"], tmp_path / "venues.png")
    assert imread(p).shape[:2] == (1320, 1320)  # the inventory panel makes it taller
    one = res.steps[[c for c in res.steps.columns if c.startswith("bn.")]]
    p = plot_insurance(one.rename(columns=lambda c: c[3:]), tmp_path / "insurance.png")
    assert imread(p).shape[:2] == (720, 1320)
