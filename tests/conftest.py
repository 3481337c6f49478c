"""Shared fixtures: small scenarios built in code (no data files needed)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from cascade.model.scenario import parse_scenario

UTC = dt.timezone.utc
START = dt.datetime(2025, 10, 10, 20, 0, tzinfo=UTC)

BASE = {
    "scenario": {"name": "small", "start": START, "end": START + dt.timedelta(minutes=40),
                 "step_s": 1.0, "seed": 3},
    "venue": {"name": "binance", "symbol": "BTCUSDT", "insurance_fund_usd": 2e6},
    "population": {
        "positions": 3000, "open_interest_usd": 4e8, "long_share": 0.6,
        "leverages": [3.0, 10.0, 25.0, 50.0, 100.0], "leverage_weights": [0.3, 0.3, 0.2, 0.1, 0.1],
        "size_tail_index": 1.3, "cross_share": 0.4, "stop_loss_share": 0.2,
        "stop_loss_distance_pct": [0.5, 3.0], "entry_lookback_h": 12.0, "entry_age_mean_h": 4.0,
        "history": [[START - dt.timedelta(hours=12), 109000.0],
                    [START - dt.timedelta(hours=6), 111000.0], [START, 110000.0]],
    },
    "market": {"depth_usd": 12e6, "impact_exponent": 0.6, "permanent_share": 0.4,
               "resilience_half_life_s": 240.0, "volatility_annual_pct": 30.0,
               "dip_buy_usd_per_s_per_pct": 5e3, "dip_buy_threshold_pct": 3.0,
               # the schema's defaults before the shared law (issue 15) changed them
               "depth_floor": 0.05, "depth_vol_sensitivity": 2.0, "depth_memory_s": 60.0,
               "dip_buy_max_usd_per_s": 1e12, "reference_half_life_s": 3600.0},
    "engine": {},
    "flows": [
        {"start": START + dt.timedelta(minutes=5), "duration_min": 6.0, "usd_per_min": 6e6,
         "side": "sell", "label": "sell program"},
        {"start": START + dt.timedelta(minutes=20), "duration_min": 8.0, "usd_per_min": 25e6,
         "side": "buy", "label": "short squeeze"},
    ],
}


def make_scenario(**overrides):
    """The small scenario with ``"section.key": value`` overrides (``flows`` replaces the list)."""
    raw = copy.deepcopy(BASE)
    for dotted, value in overrides.items():
        if dotted == "flows":
            raw["flows"] = value
            continue
        section, key = dotted.split(".")
        raw[section][key] = value
    return parse_scenario(raw, source="<test>")


@pytest.fixture
def small():
    return make_scenario()
