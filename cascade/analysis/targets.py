"""Historical targets: metrics computed from a run, ``[targets.NAME]`` parsing, and validation.

A scenario's ``[targets.NAME]`` table names a ``metric`` (see :data:`METRICS`), a ``source`` (where
the figure comes from) and bounds: ``min`` and/or ``max`` (inclusive), or ``value`` with
``tolerance_pct`` (passes when ``|sim - value| <= |value| * tolerance_pct / 100``), plus the
metric's parameters. :func:`validate` runs the scenario on one or more seeds and checks every
target on each; a target passes when it holds for the first seed *and* for at least
``ceil(min_pass_share * seeds)`` seeds, and the scenario passes when every target does *and* at
least that many seeds meet all the targets at once (the joint count). A target on
``path_rmse_pct`` needs real candles (``references``); without them it is skipped, counted
neither as failing nor in the joint count.

Units: prices in USD (the contract's quote), notional in USD, percentages in percent (``7.0``
means 7%), shares as fractions (``0.87``), durations in minutes, times as UTC timestamps.
``python -m cascade.analysis.targets`` prints the metric reference as markdown.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cascade.errors import CascadeError
from cascade.io.klines import path_rmse_pct

# ---------------------------------------------------------------------------------------------
# Metrics. Each takes the per-step frame (UTC DatetimeIndex, columns of cascade.engine.COLUMNS)
# or the summary dict and returns a float, a pd.Timestamp, or None when it is undefined.
# ---------------------------------------------------------------------------------------------


def _window(steps: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    """Rows with start <= time < end (either bound may be None: open)."""
    mask = np.ones(len(steps), dtype=bool)
    if start is not None:
        mask &= steps.index >= pd.Timestamp(start)
    if end is not None:
        mask &= steps.index < pd.Timestamp(end)
    return steps[mask]


def price_low(steps: pd.DataFrame) -> float | None:
    """Lowest last price over the run, USD."""
    p = steps["last_price"]
    return float(p.min()) if len(p) else None


def time_of_low(steps: pd.DataFrame) -> pd.Timestamp | None:
    """Time (UTC) of the lowest last price; the first such step if it repeats."""
    p = steps["last_price"].to_numpy()
    return steps.index[int(np.argmin(p))] if p.size else None


def max_drop_pct(price: pd.Series, window_min: float) -> float | None:
    """Largest fall ``(1 - p2/p1) * 100`` over step pairs t1 < t2 with t2 - t1 <= window_min.

    Exact: a time-based rolling maximum over the closed window [t2 - window_min, t2] gives the
    best p1 for each t2. Percent; 0 when the price never falls; None for an empty series.
    """
    if len(price) == 0:
        return None
    peak = price.rolling(pd.Timedelta(minutes=window_min), closed="both").max()
    return float(max(0.0, np.nanmax((1.0 - price / peak).to_numpy()) * 100.0))


def rebound_high(steps: pd.DataFrame, within_min: float) -> float | None:
    """Highest last price in [time of low, time of low + within_min], USD.

    The window includes the low itself, so a low at the last step gives the low (no rebound).
    """
    t = time_of_low(steps)
    if t is None:
        return None
    p = steps["last_price"]
    return float(p[(p.index >= t) & (p.index <= t + pd.Timedelta(minutes=within_min))].max())


def liquidated_usd(steps: pd.DataFrame, start=None, end=None) -> float:
    """Notional liquidated (longs + shorts, at the fill) in [start, end), USD; 0 if none."""
    w = _window(steps, start, end)
    return float(w["liq_long_usd"].sum() + w["liq_short_usd"].sum())


def long_share(steps: pd.DataFrame, start=None, end=None) -> float | None:
    """Longs' share of the notional liquidated in [start, end), 0-1; None if nothing was."""
    w = _window(steps, start, end)
    longs = float(w["liq_long_usd"].sum())
    total = longs + float(w["liq_short_usd"].sum())
    return longs / total if total > 0 else None


def liquidated_share(steps: pd.DataFrame, start=None, end=None) -> float | None:
    """Share of the whole run's liquidated notional that fell in [start, end), 0-1; None if
    nothing was liquidated."""
    total = liquidated_usd(steps)
    return liquidated_usd(steps, start, end) / total if total > 0 else None


def oi_change_pct(summary: dict) -> float | None:
    """Open interest change over the run, percent: (end / start - 1) * 100."""
    oi0 = summary.get("open_interest_start_usd")
    oi1 = summary.get("open_interest_end_usd")
    if not oi0 or oi1 is None:
        return None
    return (oi1 / oi0 - 1.0) * 100.0


def amplification(summary: dict) -> float | None:
    """Drawdown with feedback / drawdown without (same scenario and seed), x."""
    if "amplification" not in summary:
        raise CascadeError("metric 'amplification': expected a run made with amplification=True "
                           "(cascade run --amplification)")
    return summary["amplification"]


def legs(steps: pd.DataFrame, min_drop_pct: float, min_rebound_pct: float,
         below: float | None = None) -> int:
    """Number of separate down-legs: see :func:`swings`; counts the down-swings falling at least
    ``min_drop_pct`` percent from their peak to a trough below ``below`` USD (any if None)."""
    n = 0
    for peak, trough, _, _ in swings(steps["last_price"], min_rebound_pct):
        if (1.0 - trough / peak) * 100.0 >= min_drop_pct and (below is None or trough < below):
            n += 1
    return n


def swings(price: pd.Series, reversal_pct: float) -> list[tuple]:
    """Down-swings of a zigzag over one-minute bars: [(peak, trough, peak_time, trough_time)].

    The price is resampled to one-minute bars (high = max, low = min of the steps in the
    minute; real candles give the same bars). Starting from the first bar's high, an up-swing
    extends its peak with higher highs and turns down when a bar's low is ``reversal_pct``
    below the peak; a down-swing extends its trough with lower lows and ends when a bar's high
    is ``reversal_pct`` above the trough. A bar that extends the current swing does not also
    reverse it (the order of its high and low is unknown). A down-swing still open at the end
    counts.
    """
    bars = price.resample("1min").agg(["max", "min"]).dropna()
    return _zigzag(bars["max"].to_numpy(), bars["min"].to_numpy(), bars.index, reversal_pct)


def _zigzag(high: np.ndarray, low: np.ndarray, times, reversal_pct: float) -> list[tuple]:
    out = []
    if len(high) == 0:
        return out
    r = reversal_pct / 100.0
    up, peak, ip, trough, it = True, high[0], 0, math.nan, 0
    for i in range(1, len(high)):
        if up:
            if high[i] > peak:
                peak, ip = high[i], i
            elif low[i] <= peak * (1.0 - r):
                up, trough, it = False, low[i], i
        elif low[i] < trough:
            trough, it = low[i], i
        elif high[i] >= trough * (1.0 + r):
            out.append((float(peak), float(trough), times[ip], times[it]))
            up, peak, ip = True, high[i], i
    if not up:
        out.append((float(peak), float(trough), times[ip], times[it]))
    return out


def venue_prefix(steps: pd.DataFrame, venue: str | None) -> str:
    """Column prefix of ``venue``: ``"<venue>."`` in a multi-venue run, ``""`` for the market
    (venue None) or a single-venue run (whose columns carry no prefix)."""
    if venue is None or f"{venue}.adl_usd" not in steps.columns and not any(
            "." in c for c in steps.columns):
        return ""
    if f"{venue}.adl_usd" not in steps.columns:
        names = sorted({c.split(".", 1)[0] for c in steps.columns if "." in c})
        raise CascadeError(f"venue {venue!r}: expected one of {', '.join(names)}")
    return f"{venue}."


def adl_usd(steps: pd.DataFrame, venue: str | None = None, start=None, end=None) -> float:
    """Notional auto-deleveraged on ``venue`` (None: all venues) in [start, end), USD: the
    positions closed by ADL, at the ADL price (the ``adl_usd`` step column)."""
    w = _window(steps, start, end)
    return float(w[venue_prefix(steps, venue) + "adl_usd"].sum())


def adl_delay_min(steps: pd.DataFrame, venue: str | None = None, start=None, end=None,
                  min_usd_per_min: float | None = None) -> float | None:
    """Minutes from the first liquidation on ``venue`` in [start, end) to its first ADL there.

    The first liquidation is the first step with liquidated notional (``liq_long_usd +
    liq_short_usd > 0``; backstop takeovers and partials count) inside the first clock minute
    whose liquidations reach ``min_usd_per_min`` (default: any minute with a liquidation): the
    start of a burst, not a lone liquidation before it. The first ADL is the first step at or
    after it with ``adl_usd > 0``. Both are step times. None when either never happens.
    """
    w = _window(steps, start, end)
    pre = venue_prefix(steps, venue)
    liq = w[pre + "liq_long_usd"] + w[pre + "liq_short_usd"]
    per_min = liq.groupby(liq.index.floor("1min")).sum()
    burst = per_min[(per_min > 0) & (per_min >= (min_usd_per_min or 0.0))]
    if burst.empty:
        return None
    m0 = burst.index[0]
    in_minute = (liq.index >= m0) & (liq.index < m0 + pd.Timedelta(minutes=1))
    i = int(np.argmax(in_minute & (liq.to_numpy() > 0)))
    adl = w[pre + "adl_usd"].to_numpy()[i:] > 0
    if not adl.any():
        return None
    j = i + int(np.argmax(adl))
    return float((w.index[j] - w.index[i]) / pd.Timedelta(minutes=1))


def json_value(x):
    """A target value as JSON takes it: ISO time, float (None if not finite), int, or as is."""
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------------------------------------
# The metric table: parameters, units, and how each is computed from a Result.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Param:
    """A metric parameter: kind "minutes" | "usd" | "pct" (numbers > 0), "datetime" (UTC) or
    "venue" (a [[venues]] name, or the [venue] name of a single-venue scenario)."""

    kind: str
    required: bool
    doc: str

    def expectation(self) -> str:
        if self.kind == "datetime":
            return "a UTC date-time such as 2025-10-10T20:50:00Z"
        if self.kind == "venue":
            return "a venue name (a [[venues]] name)"
        return {"minutes": "a number of minutes, > 0", "usd": "a price in USD, > 0",
                "pct": "a percentage, > 0", "notional": "a notional in USD, > 0"}[self.kind]


@dataclasses.dataclass(frozen=True)
class Metric:
    """unit: how values and bounds are read and shown: "price" (USD), "usd" (notional USD),
    "time" (UTC), "pct" (percent), "share" (fraction 0-1), "ratio" (x), "count", "minutes".
    needs_reference: computed against real candles (``Result.reference``); skipped without."""

    unit: str
    doc: str
    params: dict
    compute: Callable[[Any, dict], Any]
    needs_reference: bool = False


_WINDOW = {"start": Param("datetime", False, "window start (inclusive), default: run start"),
           "end": Param("datetime", False, "window end (exclusive), default: run end")}
_VENUE = Param("venue", False, "the venue's name; default: all venues together")

METRICS: dict[str, Metric] = {
    "price_low": Metric("price", "Lowest last price over the run.", {},
                        lambda r, p: price_low(r.steps)),
    "time_of_low": Metric("time", "When the lowest last price occurred (bounds: TOML date-times).",
                          {}, lambda r, p: time_of_low(r.steps)),
    "max_drop_pct": Metric(
        "pct", "Largest fall (1 - p2/p1) * 100 between two steps at most window_min apart.",
        {"window_min": Param("minutes", True, "longest time between the two prices")},
        lambda r, p: max_drop_pct(r.steps["last_price"], p["window_min"])),
    "rebound_high": Metric(
        "price", "Highest last price in the within_min minutes from the low (the low included).",
        {"within_min": Param("minutes", True, "how long after the low to look")},
        lambda r, p: rebound_high(r.steps, p["within_min"])),
    "liquidated_usd": Metric(
        "usd", "Notional liquidated, longs + shorts at the fill, in [start, end).", _WINDOW,
        lambda r, p: liquidated_usd(r.steps, p.get("start"), p.get("end"))),
    "long_share": Metric(
        "share", "Longs' share of the notional liquidated in [start, end); fails if none was.",
        _WINDOW, lambda r, p: long_share(r.steps, p.get("start"), p.get("end"))),
    "liquidated_share": Metric(
        "share", "Share of the whole run's liquidated notional that fell in [start, end).",
        {"start": Param("datetime", True, "window start (inclusive)"),
         "end": Param("datetime", True, "window end (exclusive)")},
        lambda r, p: liquidated_share(r.steps, p["start"], p["end"])),
    "oi_change_pct": Metric(
        "pct", "Open interest change over the run, (end / start - 1) * 100.", {},
        lambda r, p: oi_change_pct(r.summary)),
    "amplification": Metric(
        "ratio", "Drawdown with feedback / drawdown without, same seed (adds a second run).", {},
        lambda r, p: amplification(r.summary)),
    "legs": Metric(
        "count", "Separate down-legs: zigzag over 1-minute bar highs/lows reversing at "
        "min_rebound_pct; counts swings of at least min_drop_pct whose trough is below `below`.",
        {"min_drop_pct": Param("pct", True, "smallest peak-to-trough fall that counts"),
         "min_rebound_pct": Param("pct", True, "rise from a trough that ends a leg (and fall "
                                  "from a peak that starts one)"),
         "below": Param("usd", False, "the trough must be below this price; default: any")},
        lambda r, p: legs(r.steps, p["min_drop_pct"], p["min_rebound_pct"], p.get("below"))),
    "path_rmse_pct": Metric(
        "pct", "Log-price RMSE of the 1-minute last price against the closes of the kline file "
        "given with --reference, over the minutes in [start, end) both cover; skipped without "
        "the file.", _WINDOW,
        lambda r, p: path_rmse_pct(r.steps["last_price"], r.reference, p.get("start"),
                                   p.get("end")), needs_reference=True),
    "adl_usd": Metric(
        "usd", "Notional auto-deleveraged on `venue` (default: all venues) in [start, end), at "
        "the ADL price.", {"venue": _VENUE, **_WINDOW},
        lambda r, p: adl_usd(r.steps, p.get("venue"), p.get("start"), p.get("end"))),
    "adl_delay_min": Metric(
        "minutes", "Minutes from the first liquidation on `venue` in [start, end) (in the first "
        "minute liquidating at least min_usd_per_min) to its first ADL; fails if either never "
        "happens.",
        {"venue": _VENUE, **_WINDOW,
         "min_usd_per_min": Param("notional", False, "liquidations in a minute that start the "
                                  "count; default: any")},
        lambda r, p: adl_delay_min(r.steps, p.get("venue"), p.get("start"), p.get("end"),
                                   p.get("min_usd_per_min"))),
}
BOUND_KEYS = ("min", "max", "value", "tolerance_pct")


def metric_markdown() -> str:
    """The metric reference as a markdown table (for the README)."""
    units = {"price": "USD", "usd": "USD", "time": "UTC time", "pct": "%", "share": "0-1",
             "ratio": "x", "count": "legs", "minutes": "min"}
    lines = ["| metric | parameters | measures | unit |", "|---|---|---|---|"]
    for name, m in METRICS.items():
        ps = ", ".join(f"`{k}`" + ("" if p.required else " (optional)")
                       for k, p in m.params.items()) or "—"
        lines.append(f"| `{name}` | {ps} | {m.doc} | {units[m.unit]} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Parsing [targets.NAME]
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
    """One validated ``[targets.NAME]`` table. Bounds are floats, or pd.Timestamps (UTC) for
    time metrics; ``params`` holds the metric's parameters (datetimes as pd.Timestamps)."""

    name: str
    metric: str
    source: str
    params: dict
    min: Any = None
    max: Any = None
    value: float | None = None
    tolerance_pct: float | None = None

    @property
    def unit(self) -> str:
        return METRICS[self.metric].unit

    def compute(self, result) -> Any:
        """The metric on a :class:`~cascade.result.Result` (anything with .steps and .summary)."""
        return METRICS[self.metric].compute(result, self.params)

    def check(self, x) -> bool:
        """True when the simulated value ``x`` meets the bounds (None or NaN never does)."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return False
        if self.value is not None:
            return abs(x - self.value) <= abs(self.value) * self.tolerance_pct / 100.0
        return (self.min is None or x >= self.min) and (self.max is None or x <= self.max)


def _number(value, where: str, what: str, lo: float | None = None, open_lo=False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (lo is None or value > lo or (value == lo and not open_lo)))
    if not ok:
        raise CascadeError(f"{where}: expected {what}, got {_shown(value)}")
    return float(value)


def _timestamp(value, where: str) -> pd.Timestamp:
    what = "a UTC date-time such as 2025-10-10T20:50:00Z"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise CascadeError(f"{where}: expected {what}, got {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise CascadeError(f"{where}: expected {what}, got {_shown(value)}")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _shown(value) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.time)) else repr(value)


def parse_target(name: str, table, source: str, window=None) -> Target:
    """Validate one ``[targets.NAME]`` table; ``source`` names the file in error messages and
    ``window`` is the scenario's (start, end) that a [start, end) parameter must overlap."""
    where = f"{source}: [targets.{name}]"
    if not isinstance(table, dict):
        raise CascadeError(f"{where}: expected a table with metric, source and bounds, got "
                           f"{_shown(table)}")
    if "metric" not in table:
        raise CascadeError(f"{where} missing key 'metric': expected one of "
                           + ", ".join(METRICS))
    metric = table["metric"]
    if not isinstance(metric, str) or metric not in METRICS:
        raise CascadeError(f"{where} metric: expected one of {', '.join(METRICS)}, got "
                           f"{_shown(metric)}")
    m = METRICS[metric]
    allowed = ["metric", "source", *BOUND_KEYS, *m.params]
    for key in table:
        if key not in allowed:
            raise CascadeError(f"{where} unknown key '{key}'; expected one of: "
                               + ", ".join(allowed))
    if "source" not in table:
        raise CascadeError(f"{where} missing key 'source': expected a string saying where the "
                           "figure comes from")
    src = table["source"]
    if not isinstance(src, str) or not src.strip():
        raise CascadeError(f"{where} source: expected a non-empty string saying where the figure "
                           f"comes from, got {_shown(src)}")

    params = {}
    for key, p in m.params.items():
        if key not in table:
            if p.required:
                raise CascadeError(f"{where} missing key '{key}': expected {p.expectation()} "
                                   f"({p.doc})")
            continue
        if p.kind == "datetime":
            params[key] = _timestamp(table[key], f"{where} {key}")
        elif p.kind == "venue":
            if not isinstance(table[key], str) or not table[key]:
                raise CascadeError(f"{where} {key}: expected {p.expectation()}, got "
                                   f"{_shown(table[key])}")
            params[key] = table[key]
        else:
            params[key] = _number(table[key], f"{where} {key}", p.expectation(), 0.0, True)
    if "start" in params and "end" in params and params["end"] <= params["start"]:
        raise CascadeError(f"{where} end: expected a time after start "
                           f"({params['start'].isoformat()}), got {params['end'].isoformat()}")
    if window is not None and ("start" in params or "end" in params):
        w0, w1 = pd.Timestamp(window[0]), pd.Timestamp(window[1])
        s, e = params.get("start", w0), params.get("end", w1)
        if s >= w1 or e <= w0:
            raise CascadeError(f"{where} start/end: expected a window overlapping the scenario's "
                               f"{w0.isoformat()} to {w1.isoformat()}, got {s.isoformat()} to "
                               f"{e.isoformat()}")

    has_range = "min" in table or "max" in table
    has_value = "value" in table or "tolerance_pct" in table
    if has_range and has_value:
        raise CascadeError(f"{where}: expected either min and/or max, or value with "
                           "tolerance_pct, not both")
    if not has_range and not has_value:
        raise CascadeError(f"{where}: expected bounds: min and/or max, or value with tolerance_pct")
    if m.unit == "time":
        if has_value:
            raise CascadeError(f"{where} {'value' if 'value' in table else 'tolerance_pct'}: "
                               "expected min and/or max date-times for a time metric")
        lo = _timestamp(table["min"], f"{where} min") if "min" in table else None
        hi = _timestamp(table["max"], f"{where} max") if "max" in table else None
        if lo is not None and hi is not None and hi < lo:
            raise CascadeError(f"{where} max: expected a time at or after min ({lo.isoformat()}), "
                               f"got {hi.isoformat()}")
        return Target(name, metric, src, params, min=lo, max=hi)
    if has_value:
        for key in ("value", "tolerance_pct"):
            if key not in table:
                other = "tolerance_pct" if key == "value" else "value"
                raise CascadeError(f"{where} missing key '{key}': expected it with {other}")
        value = _number(table["value"], f"{where} value", "a number")
        tol = _number(table["tolerance_pct"], f"{where} tolerance_pct", "a percentage, >= 0", 0.0)
        return Target(name, metric, src, params, value=value, tolerance_pct=tol)
    lo = _number(table["min"], f"{where} min", "a number") if "min" in table else None
    hi = _number(table["max"], f"{where} max", "a number") if "max" in table else None
    if lo is not None and hi is not None and hi < lo:
        raise CascadeError(f"{where} max: expected a number >= min ({lo:g}), got {hi:g}")
    return Target(name, metric, src, params, min=lo, max=hi)


def parse_targets(sc) -> list[Target]:
    """Every ``[targets.NAME]`` of a scenario, validated (all of them, before anything runs)."""
    source = str(sc.path) if sc.path is not None else sc.name
    if not sc.targets:
        raise CascadeError(f"{source}: [targets]: expected at least one [targets.NAME] table "
                           "with metric, source and bounds")
    window = (sc.scenario.start, sc.scenario.end)
    targets = [parse_target(name, table, source, window) for name, table in sc.targets.items()]
    names = [v.name for v in sc.venues] or [sc.venue.name]
    for t in targets:
        if "venue" in t.params and t.params["venue"] not in names:
            raise CascadeError(f"{source}: [targets.{t.name}] venue: expected one of the "
                               f"scenario's venues ({', '.join(names)}), got "
                               f"{t.params['venue']!r}")
    return targets


# ---------------------------------------------------------------------------------------------
# Evaluation over seeds
# ---------------------------------------------------------------------------------------------
def required_passes(min_pass_share: float, n_seeds: int) -> int:
    """Seeds that must pass: ceil(min_pass_share * n_seeds), robust to float rounding."""
    return max(0, math.ceil(min_pass_share * n_seeds - 1e-9))


@dataclasses.dataclass
class TargetResult:
    """One target over the seeds: ``values[i]`` and ``ok[i]`` for ``seeds[i]`` (the first is
    the default seed, or --seed-start). ``skipped``: why the target was not measured (e.g. no
    --reference candles), else None; a skipped target has no values and neither passes nor
    fails."""

    target: Target
    values: list
    ok: list
    required: int
    skipped: str | None = None

    @property
    def n_pass(self) -> int:
        return int(sum(self.ok))

    @property
    def passed(self) -> bool:
        return bool(self.ok) and bool(self.ok[0]) and self.n_pass >= self.required

    def stats(self) -> tuple:
        """(median, min, max) of the defined values; (None, None, None) if none is defined."""
        vals = [v for v in self.values if v is not None and not (isinstance(v, float)
                                                                 and math.isnan(v))]
        if not vals:
            return None, None, None
        if self.target.unit == "time":
            ns = np.array([v.value for v in vals], dtype=np.int64)
            med = pd.Timestamp(round(float(np.median(ns))), tz="UTC").round("s")
            return med, min(vals), max(vals)
        arr = np.asarray(vals, dtype=float)
        return float(np.median(arr)), float(arr.min()), float(arr.max())


def evaluate(targets: list[Target], values: dict[str, list], min_pass_share: float = 0.9,
             skipped: dict[str, str] | None = None) -> list[TargetResult]:
    """Check per-seed values ``{target name: [value per seed]}`` (default seed first);
    ``skipped`` maps the names of targets not measured to the reason."""
    out = []
    skipped = skipped or {}
    for t in targets:
        if t.name in skipped:
            out.append(TargetResult(t, [], [], 0, skipped=skipped[t.name]))
            continue
        vals = list(values[t.name])
        out.append(TargetResult(t, vals, [t.check(v) for v in vals],
                                required_passes(min_pass_share, len(vals))))
    return out


@dataclasses.dataclass
class ValidationReport:
    """What :func:`validate` found: ``.passed``, ``.table()``, ``.to_dict()``.

    ``joint_ok[i]``: seed ``seeds[i]`` met every target that ran (skipped ones left out);
    ``n_joint`` of them did. The report passes when every target that ran passes and
    ``n_joint >= ceil(min_pass_share * len(seeds))``.
    """

    scenario: str
    path: str | None
    positions: int
    seeds: list
    min_pass_share: float
    results: list
    start: Any = None

    @property
    def ran(self) -> list:
        """The target results that were measured (not skipped)."""
        return [r for r in self.results if r.skipped is None]

    @property
    def joint_ok(self) -> list[bool]:
        ran = self.ran
        return [all(r.ok[i] for r in ran) for i in range(len(self.seeds))]

    @property
    def n_joint(self) -> int:
        return int(sum(self.joint_ok))

    @property
    def joint_required(self) -> int:
        return required_passes(self.min_pass_share, len(self.seeds))

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.ran) and self.n_joint >= self.joint_required

    def table(self, source_width: int = 28) -> str:
        """The report as a text table, one row per target, and an overall line."""
        day = self.start.date() if self.start is not None else None
        head = ("target", "metric", "source", "simulated", "bounds", "seeds", "result")
        rows = []
        for r in self.results:
            t = r.target
            src = t.source if len(t.source) <= source_width else \
                t.source[: source_width - 3].rstrip() + "..."
            if r.skipped is not None:
                rows.append((t.name, t.metric, src, f"({r.skipped})", bounds_text(t, day), "-",
                             "SKIPPED"))
                continue
            rows.append((t.name, t.metric, src, simulated_text(r, day), bounds_text(t, day),
                         f"{r.n_pass}/{len(r.values)}", "PASS" if r.passed else "FAIL"))
        widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip()
                 for x in [head, tuple("-" * w for w in widths), *rows]]
        ran = self.ran
        n_ok = sum(r.passed for r in ran)
        k = len(self.seeds)
        n_skip = len(self.results) - len(ran)
        seeds = f"seed {self.seeds[0]}" if k == 1 else \
            f"seeds {self.seeds[0]}..{self.seeds[-1]}"
        rule = "" if k == 1 else (f"; a target passes when it holds for seed {self.seeds[0]} and "
                                  f"at least {self.joint_required} of {k} seeds")
        skip = f", {n_skip} skipped" if n_skip else ""
        overall = (f"{'PASS' if self.passed else 'FAIL'}: {n_ok} of {len(ran)} targets met"
                   f"{skip}; all {len(ran)} at once on {self.n_joint} of {k} seeds "
                   f"({self.joint_required} needed) ({self.scenario}, {self.positions:,} "
                   f"positions, {seeds}{rule})")
        lines += ["", overall]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        j = json_value
        targets = []
        for r in self.results:
            t = r.target
            med, lo, hi = r.stats()
            targets.append({
                "name": t.name, "metric": t.metric, "source": t.source,
                "params": {k: j(v) for k, v in t.params.items()},
                "bounds": {k: j(getattr(t, k)) for k in BOUND_KEYS if getattr(t, k) is not None},
                "skipped": r.skipped,
                "values": [j(v) for v in r.values], "median": j(med), "min": j(lo), "max": j(hi),
                "ok": [bool(x) for x in r.ok], "n_pass": r.n_pass, "n_required": r.required,
                "passed": None if r.skipped is not None else r.passed})
        return {"scenario": self.scenario, "path": self.path, "positions": self.positions,
                "seeds": list(self.seeds), "min_pass_share": self.min_pass_share,
                "targets": targets,
                "joint": {"ok": [bool(x) for x in self.joint_ok], "n_pass": self.n_joint,
                          "n_required": self.joint_required,
                          "targets": [r.target.name for r in self.ran]},
                "passed": self.passed}


def format_value(x, unit: str, day: dt.date | None = None) -> str:
    """One value for display: $4.21B, 101,517 (one decimal below 10,000), 21:20 (date added when not ``day``), 7.25%,
    87.0%, 2.10x, 3; "n/a" when undefined."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if unit == "time":
        ts = pd.Timestamp(x).tz_convert("UTC")
        return ts.strftime("%H:%M" if ts.date() == day else "%Y-%m-%d %H:%M")
    if unit == "usd":
        from cascade.plots.waterfall import format_usd

        return ("-$" if x < 0 else "$") + format_usd(abs(x))
    if unit == "price":
        return f"{x:,.0f}" if abs(x) >= 10_000 else f"{x:,.1f}" if abs(x) >= 100 else f"{x:,.4g}"
    if unit == "pct":
        return f"{x:.2f}%"
    if unit == "share":
        return f"{x * 100:.1f}%"
    if unit == "ratio":
        return f"{x:.2f}x"
    if unit == "minutes":
        return f"{x:.2f} min"
    return f"{x:g}"


def _suffix(unit: str) -> str:
    return " UTC" if unit == "time" else ""


def simulated_text(r: TargetResult, day=None) -> str:
    """Median [min, max] over the seeds (the value alone for one seed)."""
    u = r.target.unit
    med, lo, hi = r.stats()
    if len(r.values) == 1 or med is None:
        return format_value(r.values[0] if len(r.values) == 1 else None, u, day) + \
            (_suffix(u) if med is not None else "")
    return (f"{format_value(med, u, day)} [{format_value(lo, u, day)}, "
            f"{format_value(hi, u, day)}]{_suffix(u)}")


def bounds_text(t: Target, day=None) -> str:
    """'>= x', '<= x', 'x to y' or 'x +/- n%'."""
    u = t.unit
    if t.value is not None:
        return f"{format_value(t.value, u, day)} +/- {t.tolerance_pct:g}%"
    if t.min is not None and t.max is not None:
        text = f"{format_value(t.min, u, day)} to {format_value(t.max, u, day)}"
    elif t.min is not None:
        text = f">= {format_value(t.min, u, day)}"
    else:
        text = f"<= {format_value(t.max, u, day)}"
    return text + _suffix(u)


def read_references(references) -> list[tuple[str, pd.DataFrame]]:
    """The kline files given with ``--reference``: [(name, frame)] of 1-minute candles.

    Each item is a path (read with :func:`cascade.io.klines.read_klines`) or a frame already
    read. A file that is not 1-minute candles is bad input."""
    from cascade.io.klines import read_klines

    out = []
    for ref in references or ():
        if isinstance(ref, pd.DataFrame):
            name, frame = "<klines>", ref
        else:
            name, frame = str(ref), read_klines(ref)
        interval = frame.attrs.get("interval_s", 60)
        if interval != 60:
            raise CascadeError(f"--reference {name}: expected 1-minute candles, got "
                               f"{interval} s candles")
        out.append((name, frame))
    return out


def _covered(frame: pd.DataFrame, t: Target, sc) -> int:
    """Minutes of ``t``'s window (inside the scenario's) that ``frame`` has a candle for."""
    lo = max(pd.Timestamp(sc.scenario.start), t.params.get("start", pd.Timestamp(sc.scenario.start)))
    hi = min(pd.Timestamp(sc.scenario.end), t.params.get("end", pd.Timestamp(sc.scenario.end)))
    idx = frame.index
    return int(((idx >= lo) & (idx < hi)).sum())


def pick_reference(sc, targets: list[Target], references: list, *, required: bool = True
                   ) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """The candles a scenario's reference targets use, and the targets to skip.

    ``references``: :func:`read_references` pairs. The frame covering the most minutes of the
    reference targets' windows is used. With no reference at all those targets are skipped
    ("no --reference"); with references that cover none of them, ``required`` makes that bad
    input (a wrong file), else they are skipped too. Returns (frame or None, {name: reason}).
    """
    wanted = [t for t in targets if METRICS[t.metric].needs_reference]
    if not wanted:
        return None, {}
    if not references:
        return None, {t.name: "no --reference" for t in wanted}
    cover = [sum(_covered(f, t, sc) for t in wanted) for _, f in references]
    best = int(np.argmax(cover))
    if cover[best] == 0:
        if required:
            got = "; ".join(f"{n}: {f.index[0].isoformat()} to {f.index[-1].isoformat()}"
                            for n, f in references)
            raise CascadeError(f"--reference: expected 1-minute candles covering the window of "
                               f"{sc.path or sc.name} [targets.{wanted[0].name}] "
                               f"({pd.Timestamp(sc.scenario.start).isoformat()} to "
                               f"{pd.Timestamp(sc.scenario.end).isoformat()}), got {got}")
        return None, {t.name: "no --reference covers it" for t in wanted}
    return references[best][1], {}


def measure(sc, targets: list[Target], seed: int, positions: int | None = None,
            reference: pd.DataFrame | None = None, skipped=()) -> dict[str, Any]:
    """Run ``sc`` on ``seed`` and compute every target not in ``skipped``: {name: value}.

    A target on ``amplification`` adds a no-feedback run; ``reference`` (1-minute candles) is
    what ``path_rmse_pct`` compares with."""
    from cascade.runner import run

    todo = [t for t in targets if t.name not in skipped]
    need_amp = any(t.metric == "amplification" for t in todo)
    res = run(sc, positions=positions, seed=seed, amplification=need_amp, progress=False)
    res.reference = reference
    return {t.name: t.compute(res) for t in todo}


def seed_list(sc, seeds: int, seed_start: int | None = None) -> list[int]:
    """Seeds S, S+1, ..., S+K-1 where S is ``seed_start`` or the scenario's seed."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise CascadeError(f"seeds: expected a whole number >= 1, got {seeds!r}")
    if seed_start is not None and (isinstance(seed_start, bool) or not isinstance(
            seed_start, (int, np.integer)) or seed_start < 0):
        raise CascadeError(f"--seed-start: expected a whole number >= 0, got {seed_start!r}")
    s0 = sc.scenario.seed if seed_start is None else int(seed_start)
    return [s0 + i for i in range(seeds)]


def _target_values(job) -> dict[str, Any]:
    """One seed's value of every target: ``job`` is (scenario, targets, seed, positions,
    reference, skipped), the arguments of :func:`measure`; run by
    :func:`cascade.analysis.parallel.run_many`."""
    return measure(*job)


def validate(scenario, seeds: int = 1, positions: int | None = None, *,
             min_pass_share: float = 0.9, progress: bool = False, seed_start: int | None = None,
             references=(), workers: int | None = 1,
             scheduler: str | None = None) -> ValidationReport:
    """Run ``scenario`` (a path or a Scenario) on ``seeds`` seeds and check its targets.

    Seeds S, S+1, ..., S+K-1 where S = ``seed_start`` (default: the scenario's seed); the
    per-target rule "holds for the first seed" applies to S. ``positions`` overrides
    ``[population] positions``. ``references``: kline files (paths or frames) for the
    ``path_rmse_pct`` targets; without one those targets are skipped. The seeds run through
    :func:`cascade.analysis.parallel.run_many` (``workers``: local processes, None all cores,
    default 1: serial; ``scheduler``: a dask scheduler's address); results do not depend on it.
    """
    from cascade.analysis.parallel import run_many
    from cascade.model.scenario import Scenario, load_scenario

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
    targets = parse_targets(sc)
    seed_ids = seed_list(sc, seeds, seed_start)
    if not (isinstance(min_pass_share, (int, float)) and 0.0 <= min_pass_share <= 1.0):
        raise CascadeError(f"min_pass_share: expected a number from 0 to 1, got {min_pass_share!r}")
    klines, skipped = pick_reference(sc, targets, read_references(references))
    per_seed = run_many(_target_values,
                        [(sc, targets, s, positions, klines, skipped) for s in seed_ids],
                        workers=workers, scheduler=scheduler, progress=progress,
                        desc=f"{sc.name}: seeds", unit="seed")
    values = {t.name: [v[t.name] for v in per_seed] for t in targets if t.name not in skipped}
    n = int(positions) if positions is not None else int(sc.population.positions)
    return ValidationReport(sc.name, str(sc.path) if sc.path else None, n, seed_ids,
                            float(min_pass_share),
                            evaluate(targets, values, min_pass_share, skipped),
                            start=pd.Timestamp(sc.scenario.start))


if __name__ == "__main__":  # pragma: no cover
    print(metric_markdown())
