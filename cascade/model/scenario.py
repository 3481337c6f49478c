"""Scenario files: the TOML schema, its validation, and the :class:`Scenario` object.

One declarative table, :data:`SCHEMA`, lists every section and key with its type, default, allowed
range, unit and meaning. It drives validation (every error names the file, the key and what was
expected), defaults, and the parameter reference in the README (``python -m cascade.model.scenario``
prints it as markdown).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cascade.errors import CascadeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REQUIRED = object()
# date-times must fit pandas' nanosecond timestamps (1677-09-21 to 2262-04-11), with room for the
# entry lookback before the start
DT_MIN = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
DT_MAX = dt.datetime(2262, 1, 1, tzinfo=dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Field:
    """One scenario key.

    kind: "float" | "int" | "bool" | "str" | "datetime" | "date" | "choice" | "floats" | "waypoints"
          | "path" | "range"
    lo, hi: inclusive bounds for numbers (None: unbounded); lo_open/hi_open make them exclusive.
    """

    kind: str
    default: Any = REQUIRED
    doc: str = ""
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()

    def expectation(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        base = {
            "float": "a number",
            "int": "an integer",
            "bool": "true or false",
            "str": "a string",
            "datetime": "a UTC date-time from 1970 to 2261 such as 2025-10-10T20:50:00Z",
            "date": "a date such as 2025-10-10",
            "floats": "a list of numbers",
            "waypoints": 'a list of [date-time, price] pairs such as [["2025-10-10T12:00:00Z", 121500.0]]',
            "path": "a file path (relative to the scenario file)",
            "range": "a pair [low, high] of numbers with low <= high",
        }[self.kind]
        bounds = []
        if self.lo is not None:
            bounds.append((">" if self.lo_open else ">=") + f" {self.lo:g}")
        if self.hi is not None:
            bounds.append(("<" if self.hi_open else "<=") + f" {self.hi:g}")
        if bounds:
            what = "each element " if self.kind in ("floats", "range") else ""
            base += f", {what}" + " and ".join(bounds)
        return base


F = Field
# Upper bounds that keep every product of the engine finite and far beyond any real market:
# USD amounts (open interest, depth, funds, flows) up to 1e13 (BTC perpetual open interest is
# about 1e11), times up to a year, prices of the history from 1e-8 to 1e12 USD.
MAX_USD = 1e13
MAX_S = 365 * 86_400.0
PRICE_LO, PRICE_HI = 1e-8, 1e12
# ---------------------------------------------------------------------------------------------
# The schema. Sections are TOML tables; "flows" is an array of tables ([[flows]]).
# ---------------------------------------------------------------------------------------------
SCHEMA: dict[str, dict[str, Field]] = {
    "scenario": {
        "name": F("str", doc="Short name, used in plots and summaries."),
        "description": F("str", "", doc="Free text."),
        "start": F("datetime", doc="First simulated instant (UTC)."),
        "end": F("datetime", doc="End of the simulated window (UTC, exclusive); after start."),
        "step_s": F("float", 1.0, "Length of one engine step.", "s", lo=0, lo_open=True, hi=3600),
        "seed": F("int", 0, "Seed of every random draw (population and market noise).", lo=0),
    },
    "venue": {
        "name": F("choice", "binance", "Rule set for margin, brackets and fees.",
                  choices=("binance", "hyperliquid")),
        "symbol": F("str", "BTCUSDT", "Contract whose bracket table applies (BTCUSDT, ETHUSDT)."),
        "bracket_date": F("date", None, "Date whose bracket table applies (default: the start date)."),
        "insurance_fund_usd": F("float", 1e9, "Insurance fund balance at the start.", "USD", lo=0,
                                hi=MAX_USD),
        "liquidation_order": F("choice", "rules", "How a liquidation is executed: "
                               "'ioc_bankruptcy' (one IOC order limited at the bankruptcy price, "
                               "the fund takes over the rest; Binance), 'market' (a market order "
                               "without limit); 'rules': binance -> ioc_bankruptcy, hyperliquid "
                               "-> market; 'takeover' (the fund takes the whole position over at the "
                               "bankruptcy price and offloads it; Bybit, OKX).",
                               choices=("rules", "market", "ioc_bankruptcy", "takeover")),
    },
    "population": {
        "positions": F("int", 100_000, "Number of synthetic positions.", lo=0, hi=2_000_000_000),
        "open_interest_usd": F("float", doc="Total notional of the synthetic positions at the start "
                               "price, both sides together.", unit="USD", lo=0, lo_open=True, hi=MAX_USD),
        "long_share": F("float", 0.5, "Share of that notional held by longs.", lo=0, hi=1),
        "leverages": F("floats", [2.0, 5.0, 10.0, 20.0, 50.0, 100.0],
                       "Leverages traders open with.", "x", lo=1),
        "leverage_weights": F("floats", [0.3, 0.3, 0.2, 0.1, 0.07, 0.03],
                              "Share of positions (by count) at each leverage; sums to 1.", lo=0),
        "size_tail_index": F("float", 1.5, "Pareto tail index of position notional (smaller: more "
                             "whales).", lo=0.5, hi=10),
        "min_notional_usd": F("float", 100.0, "Smallest position notional (Pareto scale) before "
                              "rescaling to open_interest_usd.", "USD", lo=0, lo_open=True, hi=1e9),
        "max_notional_share": F("float", 0.02, "Largest single position as a share of its side's "
                                "notional (caps the Pareto tail).", lo=0, lo_open=True, hi=1),
        "cross_share": F("float", 0.5, "Share of positions in cross margin.", lo=0, hi=1),
        "cross_spare_margin_mean": F("float", 1.0, "Mean spare wallet behind a cross position, as a "
                                     "multiple of its initial margin (exponential).", lo=0, hi=1000),
        "stop_loss_share": F("float", 0.2, "Share of positions with a stop-loss market order.",
                             lo=0, hi=1),
        "stop_loss_distance_pct": F("range", [1.0, 6.0], "Stop distance from the entry price, "
                                    "uniform in this range.", "%", lo=0, lo_open=True, hi=100),
        "entry_lookback_h": F("float", 72.0, "Entries are opened within this window before the start.",
                              "h", lo=0, lo_open=True, hi=87_600),
        "entry_age_mean_h": F("float", 24.0, "Mean age of a position at the start (exponential, "
                              "truncated at the lookback).", "h", lo=0, lo_open=True, hi=87_600),
        "history_paths": F("int", 1, "Waypoint history only: the number of independent "
                           "bridges drawn between the waypoints; each position takes its entry "
                           "(and the path it must have survived) from one of them, so the "
                           "population stands for the paths the waypoints allow rather than for "
                           "one of them.", lo=1, hi=256),
        "entry_noise_pct": F("float", 0.1, "Dispersion of entry prices around the path price "
                             "(normal, one sigma).", "%", lo=0, hi=50),
        "entry_order_share": F("float", 0.0, "Conditional entries: traders who open a position "
                               "during the window when the last price crosses their level, as a "
                               "share of open_interest_usd (notional at the start price).",
                               lo=0, hi=10),
        "entry_order_long_share": F("float", 0.3, "Share of the conditional-entry notional that "
                                    "buys breakouts above the start price; the rest shorts "
                                    "breakdowns below it.", lo=0, hi=1),
        "entry_order_range_pct": F("range", [1.0, 20.0], "Entry levels lie this far from the start "
                                   "price, uniform in log price.", "%", lo=0, lo_open=True, hi=90),
        "entry_order_leverages": F("floats", [10.0, 20.0, 50.0], "Leverages of conditional "
                                   "entries (isolated margin; capped at the bracket maximum).",
                                   "x", lo=1),
        "entry_order_leverage_weights": F("floats", [0.4, 0.4, 0.2], "Share of conditional entries "
                                          "(by count) at each of entry_order_leverages.", lo=0),
        "history": F("waypoints", None, "Price path before the start, as waypoints linearly "
                     "interpolated; must cover [start - entry_lookback_h, start]."),
        "history_klines": F("path", None, "Alternative to history: a Binance kline CSV covering the "
                            "lookback (close prices are used)."),
    },
    # defaults: the shared BTC perpetual law (scenarios/markets/btc-perp.toml, where each value's
    # anchor is cited) as first written; calm with no flows (cascade validate --no-flows)
    "market": {
        "depth_usd": F("float", None, "Resting depth: net market-order imbalance that moves the "
                       "price 1% (before thinning; see the impact law). A cited figure for the "
                       "event; absent: depth_oi_ratio times [population] open_interest_usd.",
                       unit="USD", lo=0, lo_open=True, hi=MAX_USD),
        "depth_oi_ratio": F("float", 0.015, "Depth as a share of open interest, used when the "
                            "event gives no depth_usd (one ratio for every event: the law is "
                            "scale-free).", lo=0, lo_open=True, hi=1),
        "impact_exponent": F("float", 0.75, "Impact law exponent beyond depth_usd: move = 1% * "
                             "(imbalance/depth)^exponent (0.5 square-root law; about 0.9 for "
                             "liquidation bursts); linear below depth_usd.",
                             lo=0, lo_open=True, hi=1.0),
        "permanent_share": F("float", 0.35, "Share of each step's impact that is permanent; the rest "
                             "is transient and decays.", lo=0, hi=1),
        "news_permanent_share": F("float", None, "Share of the impact of the scenario's "
                                  "exogenous [[flows]] (news: informed orders) that is permanent; "
                                  "the impact of forced, fund, arbitrage and counter-trend orders "
                                  "(uninformed) keeps permanent_share. Absent: permanent_share.",
                                  lo=0, hi=1),
        "noise_permanent_share": F("float", None, "Share of the background noise that is "
                                   "permanent. The noise stands for uninformed order flow: the "
                                   "rest of each shock is transient and decays with "
                                   "resilience_half_life_s, so the noise keeps its volatility "
                                   "over seconds and minutes and wanders less over hours. "
                                   "Absent: 1 (a random walk).", lo=0, hi=1),
        "resilience_half_life_s": F("float", 900.0, "Half-life of transient impact (book refill).",
                                    "s", lo=0, lo_open=True, hi=MAX_S),
        "depth_floor": F("float", 0.009, "Depth never thins below this share of depth_usd.",
                         lo=0, lo_open=True, hi=1),
        "depth_vol_sensitivity": F("float", 1.0, "Depth thinning per 0.1% of recent absolute price "
                                   "change per step, divided by the square root of step_s in "
                                   "seconds (the noise's scale): depth = depth_usd / (1 + "
                                   "vol_sens*v + liq_sens*l).", lo=0, hi=1e6),
        "depth_liq_sensitivity": F("float", 1.0, "Depth thinning per unit of recent forced flow "
                                   "(per second, as a multiple of depth_usd).", lo=0, hi=1e6),
        "depth_liq_threshold": F("float", 0.0, "Forced flow per second, as a share of depth_usd, "
                                 "that the book absorbs without thinning: thinning counts "
                                 "liq_sens * max(l - threshold, 0), so a trickle of liquidations "
                                 "leaves the book alone and a burst pulls it.", lo=0, hi=1),
        "depth_memory_s": F("float", 120.0, "Half-life of the recent volatility and forced-flow "
                            "averages that thin depth.", "s", lo=0, lo_open=True,
                            hi=MAX_S),
        "volatility_annual_pct": F("float", 40.0, "Background volatility (Gaussian log-returns).",
                                   "% per year", lo=0, hi=1000),
        "mark_window_s": F("float", 5.0, "Mark price = mean of last price over this window.",
                           "s", lo=0, lo_open=True, hi=3600),
        "dip_buy_depth_share_per_pct": F("float", 0.05, "Counter-trend orders per second, as a "
                                         "share of the venue's current (thinned) depth, for each "
                                         "percent the price is below the reference past the "
                                         "threshold (buys), or above it (sells); scale-free.",
                                         "1/s per %", lo=0, hi=1e3),
        "dip_buy_max_depth_share": F("float", 0.5, "Cap on counter-trend orders per second, as a "
                                     "share of the current depth.", "1/s", lo=0, hi=1e3),
        "dip_buy_usd_per_s_per_pct": F("float", None, "Legacy, absolute form of "
                                       "dip_buy_depth_share_per_pct (not scale-free; only one of "
                                       "the two).", "USD/s per %", lo=0, hi=MAX_USD),
        "dip_buy_threshold_pct": F("float", 10.0, "Counter-trend traders start this far below (buy) "
                                   "or above (sell) the reference.",
                                   "%", lo=0, hi=100),
        "dip_buy_max_usd_per_s": F("float", None, "Legacy, absolute form of "
                                   "dip_buy_max_depth_share (only one of the two).", "USD/s",
                                   lo=0, hi=MAX_USD),
        "permanent_depth": F("choice", "current", "The book against which the permanent part "
                             "of a step's impact is measured: 'current', the book as thin as it "
                             "is now (all of the impact splits by permanent_share and "
                             "news_permanent_share); 'normal', the book at depth_usd, so what a "
                             "thinned book adds to a move is transient.",
                             choices=("current", "normal")),
        "dip_buy_reference": F("choice", "average", "The counter-trend traders' reference "
                               "price: 'average', the slow moving average of the price "
                               "(reference_half_life_s); 'fair', the price without its transient "
                               "impact (what it would be once the book refilled), so they lean "
                               "against dislocations by uninformed orders and not against news.",
                               choices=("average", "fair")),
        "reference_half_life_s": F("float", 43200.0, "Half-life of the slow moving average used as "
                                   "the dip buyers' reference price.", "s", lo=0, lo_open=True,
                                   hi=MAX_S),
        # Binance FAQ 360033525371 says only that the fund offloads "slowly, by a preset
        # algorithm"; assumption: a tenth of the book's 1% depth per minute, so a full depth of
        # inventory takes about 10 minutes and moves the price about 0.1% a minute
        "fund_offload_depth_share_per_min": F("float", 0.1, "The insurance fund (or vault) "
                                              "offloads its inventory into the book as market "
                                              "orders at this share of the venue's current depth "
                                              "per minute (scale-free).", "1/min", lo=0, hi=60),
        # Binance FAQ 360033525371: the fund's net position is capped at a predefined notional,
        # "by default 100% of the fund's size"; positions beyond it go to ADL
        "fund_cap_multiple": F("float", 1.0, "The fund's (Hyperliquid: the vault's) net inventory "
                               "notional may reach this multiple of its balance; beyond it, "
                               "positions go to auto-deleveraging.", "x", lo=0, hi=1e6),
    },
    "engine": {
        "feedback": F("bool", True, "Forced orders (liquidations, stops) move the price."),
        "latency_s": F("float", 0.0, "Delay between a trigger and its market order (0: same step, "
                       "iterated to a fixed point).", "s", lo=0, hi=MAX_S),
        "max_iterations": F("int", 20, "Cap on same-step trigger/impact iterations.", lo=1, hi=10_000),
    },
    "flows": {
        "start": F("datetime", doc="When the flow starts (UTC)."),
        "duration_min": F("float", doc="How long it lasts.", unit="min", lo=0, lo_open=True,
                          hi=MAX_S / 60),
        "usd_per_min": F("float", None, "Rate of market orders (give this or oi_share_per_min).",
                         "USD/min", lo=0, hi=MAX_USD),
        "oi_share_per_min": F("float", None, "Rate of market orders as a share of [population] "
                              "open_interest_usd per minute, so that shocks compare across "
                              "events (give this or usd_per_min).", "1/min", lo=0, hi=1),
        "side": F("choice", "sell", "Direction of the orders.", choices=("sell", "buy")),
        "label": F("str", "", "What the flow stands for (e.g. 'tariff headline selling')."),
        "venue": F("str", "", "Only on this venue (a [[venues]] name); empty: split over the "
                   "venues by their flow_share, after the spot venues take their flow_share."),
    },
    # ---- several venues in one market (issue 3); absent: one venue from [venue] ----
    "venues": {
        "name": F("str", doc="Unique label of the venue, used in columns and summaries."),
        "rules": F("choice", doc="Rule set: brackets, fees, trigger equality, and the defaults of "
                   "mark, partial, adl and funding_interval_h.",
                   choices=("binance", "hyperliquid")),
        "symbol": F("str", "BTCUSDT", "Contract whose bracket table applies."),
        "bracket_date": F("date", None, "Date whose bracket table applies (default: the start "
                          "date)."),
        "population_share": F("float", doc="Share of [population] positions and open interest on "
                              "this venue; the venues' shares sum to 1.", lo=0, lo_open=True,
                              hi=1),
        "depth_share": F("float", doc="Share of [market] depth_usd (and of dip buying) resting on "
                         "this venue's book; sums to 1.", lo=0, lo_open=True, hi=1),
        "flow_share": F("float", None, "Share of the [[flows]] without a venue that hits this "
                        "venue (default: depth_share); sums to 1.", lo=0, hi=1),
        "leverages": F("floats", None, "Leverages on this venue (default: [population] "
                       "leverages).", "x", lo=1),
        "leverage_weights": F("floats", None, "Weights of those leverages (default: "
                              "[population] leverage_weights).", lo=0),
        "insurance_fund_usd": F("float", 1e9, "Insurance fund (Hyperliquid: the liquidator "
                                "vault) at the start.", "USD", lo=0, hi=MAX_USD),
        "latency_s": F("float", 0.0, "Delay between a trigger and its market order on this "
                       "venue.", "s", lo=0, hi=MAX_S),
        "mark": F("choice", "rules", "Mark price: 'binance' median(P1, P2, last); "
                  "'hyperliquid' median(oracle + basis EMA, last, other venues' last); "
                  "'last_average' mean of last over [market] mark_window_s; 'rules': the rule "
                  "set's own.", choices=("rules", "binance", "hyperliquid", "last_average")),
        "partial": F("choice", "rules", "Partial liquidation: 'none' (whole position; Binance "
                     "documents no partial), 'step_down' (Bybit: one tier down, then the rest), "
                     "'hyperliquid' (20% above 100k USDC, 30 s rule, backstop vault below 2/3 of "
                     "MM); 'rules': binance -> none, hyperliquid -> hyperliquid.",
                     choices=("rules", "none", "step_down", "hyperliquid")),
        "liquidation_order": F("choice", "rules", "How a liquidation is executed: "
                               "'ioc_bankruptcy' (one IOC order limited at the bankruptcy price; "
                               "the fund takes over the rest within its cap, ADL beyond; "
                               "Binance), 'backstop' (market orders, then the vault holds "
                               "backstopped positions within its cap, ADL beyond; needs partial "
                               "'hyperliquid'), 'market' (market orders without limit, the vault "
                               "uncapped); 'rules': binance -> ioc_bankruptcy, hyperliquid -> "
                               "backstop; 'takeover' (the fund takes the whole position over "
                               "at the bankruptcy price within its cap and offloads it, ADL "
                               "beyond; Bybit, OKX: mechanics.md section 2).",
                               choices=("rules", "market", "ioc_bankruptcy", "backstop",
                                        "takeover")),
        # Hyperliquid publishes no cap for the liquidator vault (HLP); assumption: the same 1x
        # of its equity that Binance documents for its fund, so the vault's inventory cannot
        # cost it more than its equity before prices halve
        "fund_cap_multiple": F("float", None, "This venue's fund (vault) may hold a net "
                               "inventory notional of this multiple of its balance (default: "
                               "[market] fund_cap_multiple).", "x", lo=0, hi=1e6),
        "adl": F("bool", True, "Auto-deleverage the opposite side when the fund cannot pay a "
                 "deficit (else it is bad debt)."),
        "funding": F("bool", True, "Pay funding at the venue's interval."),
        "funding_interval_h": F("float", None, "Funding interval (default: binance 8, "
                                "hyperliquid 1).", "h", lo=0, lo_open=True, hi=24),
    },
    "spot": {
        "name": F("str", doc="Spot venue whose price enters the index."),
        "weight": F("float", 1.0, "Weight in the index (weighted mean, Binance) and the oracle "
                    "(weighted median, Hyperliquid; its weights: Binance 3, OKX 2, Bybit 2, "
                    "others 1).", lo=0, lo_open=True, hi=1e6),
        "lag_s": F("float", 1.0, "How far this spot price lags the perpetuals.", "s", lo=0,
                   hi=3600),
        "noise_bps": F("float", 0.0, "Own noise of this spot price (one sigma per step).",
                       "bp", lo=0, hi=1000),
        "flow_share": F("float", 0.0, "Share of the [[flows]] without a venue sold/bought on this "
                        "spot venue instead of the perpetuals.", lo=0, hi=1, hi_open=True),
        "depth_usd": F("float", 50e6, "Spot book depth: imbalance that moves this spot price "
                       "1%.", "USD", lo=0, lo_open=True, hi=MAX_USD),
    },
    "index": {
        "reversion_half_life_s": F("float", 30.0, "Half-life of a spot venue's own deviation "
                                   "from the perpetuals (spot-perp arbitrage).", "s", lo=0,
                                   lo_open=True, hi=MAX_S),
        "resilience_half_life_s": F("float", 120.0, "Half-life of a spot book's outstanding "
                                    "imbalance.", "s", lo=0, lo_open=True, hi=MAX_S),
    },
    "arbitrage": {
        "capacity_usd_per_s": F("float", 20e6, "Arbitrage capital that can move between venues, "
                                "each way.", "USD/s", lo=0, hi=MAX_USD),
        "band_bps": F("float", 2.0, "Price gap between a venue and the depth-weighted composite "
                      "that arbitrage leaves alone (fees).", "bp", lo=0, hi=1e4),
        "delay_s": F("float", 1.0, "Delay before arbitrage orders reach the books.", "s", lo=0,
                     hi=3600),
    },
    "wicks": {
        "target": F("str", doc="A [[venues]] name (its last price only) or 'index' (every spot "
                    "price in the index)."),
        "start": F("datetime", doc="When the wick starts (UTC)."),
        "duration_s": F("float", doc="How long it lasts.", unit="s", lo=0, lo_open=True, hi=MAX_S),
        "depth_pct": F("float", doc="How far the price is pushed (positive: down).", unit="%",
                       lo=-90, hi=90),
    },
}
ARRAY_SECTIONS = {"flows", "venues", "spot", "wicks"}
# sections owned by later features: accepted as free-form tables, validated by their own modules
FREEFORM_SECTIONS = {"targets"}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated scenario. Sections are attribute namespaces: ``sc.market.depth_usd``.

    ``flows`` is a tuple of namespaces; ``path`` the file it came from (None if built from a dict);
    ``digest`` a short hash of the validated content (stamped on results).
    """

    scenario: SimpleNamespace
    venue: SimpleNamespace
    population: SimpleNamespace
    market: SimpleNamespace
    engine: SimpleNamespace
    flows: tuple
    venues: tuple
    spot: tuple
    index: SimpleNamespace
    arbitrage: SimpleNamespace
    wicks: tuple
    targets: dict
    path: Path | None
    raw: dict
    extends: tuple = ()  # shared market files the [market] table came from, nearest first
    law_overrides: tuple = ()  # [market] keys the scenario itself sets over its shared law

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def n_steps(self) -> int:
        return int(round((self.scenario.end - self.scenario.start).total_seconds()
                         / self.scenario.step_s))

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr(_canonical(self.raw)).encode()).hexdigest()[:12]

    def with_overrides(self, **overrides) -> Scenario:
        """Copy with ``section.key`` overrides, e.g. ``{"population.positions": 10**6}``;
        re-validated like the file."""
        raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.raw.items()}
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if not key or "." in key or section in ARRAY_SECTIONS:
                raise CascadeError(f"override {dotted!r}: expected 'section.key' naming a key of "
                                   "a table, such as 'population.positions'")
            raw.setdefault(section, {})[key] = value
        sc = parse_scenario(raw, source=str(self.path) if self.path else "<overrides>",
                            base_dir=self.path.parent if self.path else None, path=self.path)
        return dataclasses.replace(sc, extends=self.extends, law_overrides=self.law_overrides)


def _canonical(obj):
    if isinstance(obj, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return tuple(_canonical(v) for v in obj)
    return repr(obj)


def load_scenario(path, **overrides) -> Scenario:
    """Read and validate a scenario TOML file. Raises CascadeError on any problem."""
    from cascade.io.files import read_user_text

    path = Path(path)
    text = read_user_text(path, str(path), "a scenario .toml file")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CascadeError(f"{path}: not valid TOML: {_toml_error(exc, text)}") from None
    sc = parse_scenario(raw, source=str(path), base_dir=path.parent, path=path)
    return sc.with_overrides(**overrides) if overrides else sc


def _toml_error(exc: Exception, text: str) -> str:
    """tomllib's message, plus the offending line (it names the key) and what TOML expects."""
    msg = str(exc)
    m = re.search(r"\(at line (\d+), column \d+\)", msg)
    lines = text.splitlines()
    if m and 1 <= int(m.group(1)) <= len(lines):
        msg += f": {lines[int(m.group(1)) - 1].strip()!r}"
    if msg.startswith(("Cannot overwrite", "Cannot declare")):
        msg += "; expected each key and table to be defined only once"
    elif "expected" not in msg.lower():
        msg += "; expected TOML syntax (https://toml.io)"
    return msg


def parse_scenario(raw: dict, *, source: str = "<dict>", base_dir: Path | None = None,
                   path: Path | None = None) -> Scenario:
    """Validate a parsed TOML document (a dict) against :data:`SCHEMA`.

    A top-level ``extends = "FILE"`` takes the [market] table from a shared market file (relative
    to ``base_dir``); the document's own [market] keys override it key by key. The Scenario's
    ``raw`` holds the resolved document (no ``extends``, the merged [market]), so its digest covers
    the law that was actually used."""
    if not isinstance(raw, dict):
        raise CascadeError(f"{source}: expected a TOML document")
    chain, overrides = (), ()
    if "extends" in raw:
        own = raw.get("market", {})
        if not isinstance(own, dict):
            raise CascadeError(f"{source}: [market] must be a table")
        seen = [Path(path).resolve()] if path is not None else []
        law, files = _shared_market(raw["extends"], f"{source}:", base_dir, seen)
        raw = {k: v for k, v in raw.items() if k != "extends"}
        raw["market"] = {**law, **own}
        chain, overrides = tuple(files), tuple(k for k in own if k in law)
    for section in raw:
        if section not in SCHEMA and section not in FREEFORM_SECTIONS:
            known = ", ".join(f"[{s}]" for s in list(SCHEMA) + sorted(FREEFORM_SECTIONS))
            raise CascadeError(f"{source}: unknown section [{section}]; expected one of {known}")
    out = {}
    for section, fields in SCHEMA.items():
        value = raw.get(section, [] if section in ARRAY_SECTIONS else {})
        if section in ARRAY_SECTIONS:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise CascadeError(f"{source}: [[{section}]] must be an array of tables")
            out[section] = tuple(
                _parse_section(v, fields, f"{source}: [[{section}]] #{i + 1}", base_dir)
                for i, v in enumerate(value))
        else:
            if not isinstance(value, dict):
                raise CascadeError(f"{source}: [{section}] must be a table")
            out[section] = _parse_section(value, fields, f"{source}: [{section}]", base_dir)
    targets = raw.get("targets", {})
    if not isinstance(targets, dict):
        raise CascadeError(f"{source}: [targets] must be a table")
    sc = Scenario(**out, targets=targets, path=path, raw=raw, extends=chain,
                  law_overrides=overrides)
    _cross_checks(sc, source)
    _resolve_scale_free(sc, source)
    return sc


def _read_toml(path: Path, what: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CascadeError(f"{path}: not a UTF-8 text file; expected {what}") from None
    except OSError as exc:
        raise CascadeError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CascadeError(f"{path}: not valid TOML: {_toml_error(exc, text)}") from None


def _shared_market(value, where: str, base_dir, seen: list) -> tuple[dict, list]:
    """The [market] table of the shared market file ``value`` merged over the files it extends in
    turn (the nearer file wins key by key), each key validated against the schema in the file that
    sets it. Returns (table, [files, nearest first]); ``seen`` (resolved paths) catches loops."""
    if not isinstance(value, str) or not value:
        raise CascadeError(f"{where} extends: expected a path (relative to this file) of a shared "
                           f"market file such as 'markets/btc-perp.toml', got {value!r}")
    p = Path(value)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    key = p.resolve()
    if key in seen:
        loop = " -> ".join(str(s) for s in seen + [key])
        raise CascadeError(f"{where} extends: {value!r} closes a loop ({loop}); expected a chain "
                           "of shared market files that ends")
    if not p.is_file():
        raise CascadeError(f"{where} extends: expected a shared market file, got {value!r} "
                           f"({p} {'is a directory' if p.is_dir() else 'not found'})")
    doc = _read_toml(p, "a shared market file with a [market] table")
    for section in doc:
        if section not in ("market", "extends"):
            raise CascadeError(f"{p}: [{section}]: expected only a [market] table (and extends) "
                               "in a shared market file")
    table = doc.get("market", {})
    if not isinstance(table, dict):
        raise CascadeError(f"{p}: [market] must be a table")
    fields = SCHEMA["market"]
    for k, v in table.items():
        if k not in fields:
            raise CascadeError(f"{p}: [market] unknown key '{k}'; expected one of: "
                               + ", ".join(fields))
        _coerce(v, fields[k], f"{p}: [market] {k}", p.parent)
    merged, files = {}, [p]
    if "extends" in doc:
        merged, more = _shared_market(doc["extends"], f"{p}:", p.parent, seen + [key])
        files += more
    merged.update(table)
    return merged, files


def _resolve_scale_free(sc: Scenario, source: str) -> None:
    """Fill in the USD figures that a scale-free law states as shares: ``market.depth_usd`` from
    ``depth_oi_ratio`` when the event gives none, and each flow's ``usd_per_min`` from its
    ``oi_share_per_min``; reject a law that gives both forms of one quantity."""
    m, oi = sc.market, sc.population.open_interest_usd
    given = sc.raw.get("market", {})
    m.depth_from_oi = m.depth_usd is None
    if m.depth_from_oi:
        m.depth_usd = m.depth_oi_ratio * oi
    for absolute, share in (("dip_buy_usd_per_s_per_pct", "dip_buy_depth_share_per_pct"),
                            ("dip_buy_max_usd_per_s", "dip_buy_max_depth_share")):
        if absolute in given and share in given:
            raise CascadeError(f"{source}: [market] {absolute}: expected only one of {absolute} "
                               f"(USD) and {share} (share of depth_usd), got both")
    for i, f in enumerate(sc.flows):
        if (f.usd_per_min is None) == (f.oi_share_per_min is None):
            raise CascadeError(f"{source}: [[flows]] #{i + 1} usd_per_min: expected exactly one "
                               "of usd_per_min (USD/min) and oi_share_per_min (share of "
                               "open_interest_usd per minute), got "
                               + ("neither" if f.usd_per_min is None else "both"))
        if f.usd_per_min is None:
            f.usd_per_min = f.oi_share_per_min * oi


def _parse_section(table: dict, fields: dict[str, Field], where: str, base_dir) -> SimpleNamespace:
    for key in table:
        if key not in fields:
            raise CascadeError(f"{where} unknown key '{key}'; expected one of: "
                               + ", ".join(fields))
    values = {}
    for key, field in fields.items():
        if key in table:
            values[key] = _coerce(table[key], field, f"{where} {key}", base_dir)
        elif field.default is REQUIRED:
            raise CascadeError(f"{where} missing key '{key}': expected {field.expectation()}"
                               + (f" ({field.doc})" if field.doc else ""))
        else:  # a copy: a scenario must not share (and so mutate) SCHEMA's default lists
            values[key] = list(field.default) if isinstance(field.default, list) else field.default
    return SimpleNamespace(**values)


def _fail(where: str, field: Field, value) -> CascadeError:
    shown = value.isoformat() if isinstance(value, (dt.date, dt.time)) else repr(value)
    return CascadeError(f"{where}: expected {field.expectation()}, got {shown}")


def _number(value, field: Field, where: str, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, field, value)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise _fail(where, field, value)
    if not math.isfinite(value):
        raise _fail(where, field, value)
    if field.lo is not None and (value < field.lo or (field.lo_open and value == field.lo)):
        raise _fail(where, field, value)
    if field.hi is not None and (value > field.hi or (field.hi_open and value == field.hi)):
        raise _fail(where, field, value)
    return int(value) if integer else float(value)


def _datetime(value, field: Field, where: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(where, field, value) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        try:
            value = value.astimezone(dt.timezone.utc)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
            raise _fail(where, field, value) from None
        if DT_MIN <= value < DT_MAX:
            return value
    raise _fail(where, field, value)


def _coerce(value, field: Field, where: str, base_dir):
    k = field.kind
    if value is None and field.default is None:
        return None
    if k == "float":
        return _number(value, field, where)
    if k == "int":
        return _number(value, field, where, integer=True)
    if k == "bool":
        if not isinstance(value, bool):
            raise _fail(where, field, value)
        return value
    if k == "str":
        if not isinstance(value, str):
            raise _fail(where, field, value)
        return value
    if k == "choice":
        if value not in field.choices:
            raise _fail(where, field, value)
        return value
    if k == "datetime":
        return _datetime(value, field, where)
    if k == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise _fail(where, field, value)
    if k in ("floats", "range"):
        if not isinstance(value, list) or not value:
            raise _fail(where, field, value)
        nums = [_number(v, field, where) for v in value]
        if k == "range" and (len(nums) != 2 or nums[0] > nums[1]):
            raise _fail(where, field, value)
        return nums
    if k == "waypoints":
        if not isinstance(value, list) or len(value) < 2:
            raise _fail(where, field, value)
        pts = []
        for v in value:
            if not isinstance(v, list) or len(v) != 2:
                raise _fail(where, field, v)
            t = _datetime(v[0], field, where)
            p = _number(v[1], Field("float", lo=PRICE_LO, hi=PRICE_HI), f"{where} price")
            pts.append((t, p))
        times = [t for t, _ in pts]
        if any(b <= a for a, b in zip(times, times[1:])):
            raise CascadeError(f"{where}: expected strictly increasing waypoint times, got "
                               f"{[t.isoformat() for t in times]}")
        return pts
    if k == "path":
        if not isinstance(value, str) or not value:
            raise _fail(where, field, value)
        p = Path(value)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.exists():
            raise CascadeError(f"{where}: expected {field.expectation()}, got {value!r} "
                               f"({p} not found)")
        return p
    raise AssertionError(k)  # pragma: no cover


def _cross_checks(sc: Scenario, source: str) -> None:
    s, pop, eng = sc.scenario, sc.population, sc.engine
    if s.end <= s.start:
        raise CascadeError(f"{source}: [scenario] end: expected a time after start "
                           f"({s.start.isoformat()}), got {s.end.isoformat()}")
    n = (s.end - s.start).total_seconds() / s.step_s
    if not math.isfinite(n) or n > 50_000_000.5:
        raise CascadeError(f"{source}: [scenario] step_s: the window has "
                           f"{n:.3g} steps of {s.step_s:g} s; expected at most 50,000,000")
    if abs(n - round(n)) > 1e-9:
        raise CascadeError(f"{source}: [scenario] step_s: expected a divisor of the window "
                           f"({(s.end - s.start).total_seconds():g} s), got {s.step_s:g}")
    if round(n) > 50_000_000:
        raise CascadeError(f"{source}: [scenario] step_s: the window has {round(n)} steps; "
                           "expected at most 50,000,000")
    for levs, weights in (("leverages", "leverage_weights"),
                          ("entry_order_leverages", "entry_order_leverage_weights")):
        n_lev, w = len(getattr(pop, levs)), getattr(pop, weights)
        if n_lev != len(w):
            raise CascadeError(f"{source}: [population] {weights}: expected {n_lev} weights, "
                               f"one per leverage, got {len(w)}")
        if abs(sum(w) - 1.0) > 1e-6:
            raise CascadeError(f"{source}: [population] {weights}: expected weights summing "
                               f"to 1, got {sum(w):g}")
    if pop.history is None and pop.history_klines is None:
        raise CascadeError(f"{source}: [population] history: expected a price history before the "
                           "start, either history = [[time, price], ...] or history_klines = 'file.csv'")
    if pop.history is not None and pop.history_klines is not None:
        raise CascadeError(f"{source}: [population] history and history_klines: expected only one "
                           "of them")
    if pop.history is not None:
        first, last = pop.history[0][0], pop.history[-1][0]
        need = s.start - dt.timedelta(hours=pop.entry_lookback_h)
        if first > need or last < s.start:
            raise CascadeError(
                f"{source}: [population] history: expected waypoints covering "
                f"{need.isoformat()} to {s.start.isoformat()} (entry_lookback_h before the start), "
                f"got {first.isoformat()} to {last.isoformat()}")
    if eng.latency_s > (s.end - s.start).total_seconds():
        raise CascadeError(f"{source}: [engine] latency_s: expected at most the window "
                           f"({(s.end - s.start).total_seconds():g} s), got {eng.latency_s:g}")
    if eng.latency_s:
        lat = eng.latency_s / s.step_s
        if abs(lat - round(lat)) > 1e-9:
            raise CascadeError(f"{source}: [engine] latency_s: expected a multiple of step_s "
                               f"({s.step_s:g}), got {eng.latency_s:g}")
    for i, f in enumerate(sc.flows):
        if not (s.start <= f.start < s.end):
            raise CascadeError(f"{source}: [[flows]] #{i + 1} start: expected a time inside the "
                               f"window {s.start.isoformat()} to {s.end.isoformat()}, got "
                               f"{f.start.isoformat()}")
    if sc.venues:
        _check_venues(sc, source)
    else:
        _check_venue(sc, source)
        for key, rows in (("[[spot]]", sc.spot), ("[[wicks]]", sc.wicks)):
            if rows:
                raise CascadeError(f"{source}: {key}: expected [[venues]] to be declared too "
                                   "(the index and wicks belong to a multi-venue market)")
        for i, f in enumerate(sc.flows):
            if f.venue:
                raise CascadeError(f"{source}: [[flows]] #{i + 1} venue: expected no venue in a "
                                   f"scenario without [[venues]], got {f.venue!r}")


def _check_venues(sc: Scenario, source: str) -> None:
    """Cross-checks of a multi-venue market: unique names, shares summing to 1, known targets of
    flows and wicks, each venue's leverages within its bracket table."""
    from cascade.rules.brackets import bracket_table, coverage_start, normalize_symbol

    if "venue" in sc.raw:
        raise CascadeError(f"{source}: [venue]: expected either [venue] (one venue) or "
                           "[[venues]] (several), not both")
    names = [v.name for v in sc.venues]
    for i, name in enumerate(names):
        if not name or name == "index" or names.index(name) != i or "." in name:
            raise CascadeError(f"{source}: [[venues]] #{i + 1} name: expected a unique name "
                               f"other than 'index', without dots, got {name!r}")
    for key in ("population_share", "depth_share", "flow_share"):
        vals = [getattr(v, key) if getattr(v, key) is not None else v.depth_share
                for v in sc.venues]
        if abs(sum(vals) - 1.0) > 1e-6:
            raise CascadeError(f"{source}: [[venues]] {key}: expected shares summing to 1 over "
                               f"the venues, got {sum(vals):g} ({vals})")
    if sum(s.flow_share for s in sc.spot) >= 1.0:
        raise CascadeError(f"{source}: [[spot]] flow_share: expected shares summing to less than "
                           f"1, got {sum(s.flow_share for s in sc.spot):g}")
    for i, f in enumerate(sc.flows):
        if f.venue and f.venue not in names:
            raise CascadeError(f"{source}: [[flows]] #{i + 1} venue: expected one of {names}, "
                               f"got {f.venue!r}")
    s = sc.scenario
    for i, w in enumerate(sc.wicks):
        if w.target not in names + ["index"]:
            raise CascadeError(f"{source}: [[wicks]] #{i + 1} target: expected one of "
                               f"{names + ['index']}, got {w.target!r}")
        if not (s.start <= w.start < s.end):
            raise CascadeError(f"{source}: [[wicks]] #{i + 1} start: expected a time inside the "
                               f"window {s.start.isoformat()} to {s.end.isoformat()}, got "
                               f"{w.start.isoformat()}")
    for i, v in enumerate(sc.venues):
        where = f"{source}: [[venues]] #{i + 1} ({v.name})"
        partial = ("hyperliquid" if v.rules == "hyperliquid" else "none") \
            if v.partial == "rules" else v.partial
        if v.liquidation_order == "backstop" and partial != "hyperliquid":
            raise CascadeError(f"{where} liquidation_order: expected 'backstop' only with partial "
                               f"'hyperliquid' (the rule that hands positions to the vault), got "
                               f"partial {partial!r}; use 'market', 'ioc_bankruptcy' or 'takeover'")
        lat = v.latency_s / s.step_s
        if abs(lat - round(lat)) > 1e-9:
            raise CascadeError(f"{where} latency_s: expected a multiple of step_s "
                               f"({s.step_s:g}), got {v.latency_s:g}")
        try:
            normalize_symbol(v.rules, v.symbol)
        except CascadeError as exc:
            raise CascadeError(f"{where} symbol: expected a contract of {v.rules}: {exc}") \
                from None
        try:
            table = bracket_table(v.rules, v.symbol, v.bracket_date or s.start.date())
        except CascadeError as exc:
            raise CascadeError(f"{where} bracket_date: expected a date from "
                               f"{coverage_start(v.rules, v.symbol)} on: {exc}") from None
        levs = v.leverages or sc.population.leverages
        weights = v.leverage_weights or sc.population.leverage_weights
        if len(levs) != len(weights):
            raise CascadeError(f"{where} leverage_weights: expected {len(levs)} weights, one per "
                               f"leverage, got {len(weights)}")
        if abs(sum(weights) - 1.0) > 1e-6:
            raise CascadeError(f"{where} leverage_weights: expected weights summing to 1, got "
                               f"{sum(weights):g}")
        top = float(table.max_leverage[0])
        for lev in levs:
            if lev > top:
                raise CascadeError(f"{where} leverages: expected leverages up to the bracket "
                                   f"maximum {top:g}x of {v.rules} {v.symbol}, got {lev:g}")


def _check_venue(sc: Scenario, source: str) -> None:
    from cascade.rules.brackets import bracket_table, coverage_start, normalize_symbol

    try:
        normalize_symbol(sc.venue.name, sc.venue.symbol)
    except CascadeError as exc:
        raise CascadeError(f"{source}: [venue] symbol: expected a contract of {sc.venue.name}: "
                           f"{exc}") from None
    key = "[venue] bracket_date" if sc.venue.bracket_date else \
        "[scenario] start (its date picks the bracket table unless [venue] bracket_date is set)"
    try:
        table = bracket_table(sc.venue.name, sc.venue.symbol, venue_date(sc))
    except CascadeError as exc:
        raise CascadeError(f"{source}: {key}: expected a date from "
                           f"{coverage_start(sc.venue.name, sc.venue.symbol)} on: {exc}") from None
    top = float(table.max_leverage[0])
    for lev in sc.population.leverages:
        if lev > top:
            raise CascadeError(
                f"{source}: [population] leverages: expected leverages up to the bracket maximum "
                f"{top:g}x of {sc.venue.name} {sc.venue.symbol} on {table.valid_from}, got {lev:g}")


def venue_date(sc: Scenario) -> dt.date:
    """Date whose bracket table applies: ``venue.bracket_date`` or the scenario's start date."""
    return sc.venue.bracket_date or sc.scenario.start.date()


def schema_markdown() -> str:
    """The parameter reference as markdown tables (pasted into the README)."""
    lines = []
    for section, fields in SCHEMA.items():
        head = f"[[{section}]]" if section in ARRAY_SECTIONS else f"[{section}]"
        lines += [f"#### `{head}`", "", "| key | unit | default | meaning |", "|---|---|---|---|"]
        for key, f in fields.items():
            default = "required" if f.default is REQUIRED else (
                "—" if f.default is None else f"`{f.default}`")
            lines.append(f"| `{key}` | {f.unit} | {default} | {f.doc} Expected: {f.expectation()}. |")
        lines.append("")
    return "\n".join(lines)



if __name__ == "__main__":  # pragma: no cover
    print(schema_markdown())
