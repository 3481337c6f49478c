"""Branching ratio along the path: liquidations triggered per unit of forced volume, per minute.

Definition (issue 15 item 5). Over clock minutes ``m`` (UTC, 1-minute bars of the steps):

- ``L_m``: notional liquidated in minute ``m`` (``liq_long_usd + liq_short_usd``, at the fill;
  partial liquidations and backstop takeovers included), USD;
- ``V_m``: forced volume executed in minute ``m``: every position closed by force, liquidations
  (``L_m``), stop-loss orders (``stop_usd``) and auto-deleveraging (``adl_usd``), USD, gross
  (a long's sale and a short's purchase both count);
- ``n_m = L_m / V_{m-1}``: the liquidations of minute ``m`` per dollar forced through the market
  in the minute before.

Why a one-minute lag: liquidations are the children of forced volume that moved the price
first, so the children are counted in the minute after their parents (``L_m`` is part of
``V_m``, so a same-minute ratio would be bounded by 1 and say nothing). It is the ratio
estimator of a branching process, generation = minute: a cascade whose ``n`` stays below 1 is
subcritical (each forced dollar liquidates less than a dollar more, so without new outside
selling it dies out geometrically, total ``shock / (1 - n)``); ``n >= 1`` is self-sustaining.
Liquidations that the exogenous flow alone triggers also land in ``L_m``, so ``n_m`` is an
upper bound on the endogenous branching ratio, and it misses contagion inside one minute (the
engine's same-step fixed point).

``n_m`` is defined only where ``V_{m-1}`` is at least ``min_share`` (default 1%) of the run's
largest minute of forced volume: a ratio over a trickle is noise. The summary gives the median
and the peak of ``n_m`` over those minutes, the pooled ratio ``sum L_m / sum V_{m-1}`` over
them, and their count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# step columns (USD) whose sum is the forced volume V; liquidations are the first two
LIQ_COLUMNS = ("liq_long_usd", "liq_short_usd")
FORCED_COLUMNS = LIQ_COLUMNS + ("stop_usd", "adl_usd")
MIN_SHARE = 0.01


def branching_minutes(steps: pd.DataFrame, min_share: float = MIN_SHARE) -> pd.DataFrame:
    """Per-minute liquidations, forced volume and branching ratio.

    Parameters
    ----------
    steps : DataFrame, UTC DatetimeIndex, the step columns of :data:`FORCED_COLUMNS` (a missing
        one counts as zero; the two liquidation columns are required)
    min_share : ``n_m`` is NaN where the previous minute's forced volume is below this share of
        the largest minute's (and always where it is below 1 USD)

    Returns
    -------
    DataFrame, one row per clock minute (index: minute start, UTC), columns
    ``liquidated_usd`` (L_m), ``forced_usd`` (V_m), ``forced_prev_usd`` (V_{m-1}, 0 for the
    first minute) and ``branching_ratio`` (n_m, NaN where undefined).
    """
    cols = [c for c in FORCED_COLUMNS if c in steps.columns]
    per = steps[cols].resample("1min").sum()
    liq = per[list(LIQ_COLUMNS)].sum(axis=1)
    forced = per[cols].sum(axis=1)
    prev = forced.shift(1, fill_value=0.0)
    floor = max(min_share * float(forced.max()) if len(forced) else 0.0, 1.0)
    ratio = (liq / prev.where(prev >= floor)).astype(float)
    return pd.DataFrame({"liquidated_usd": liq, "forced_usd": forced, "forced_prev_usd": prev,
                         "branching_ratio": ratio})


def branching_column(steps: pd.DataFrame, min_share: float = MIN_SHARE) -> np.ndarray:
    """float64 (n_steps,): each step's ``n_m`` for the clock minute it falls in (NaN where
    undefined); the ``branching_ratio`` column of a run's steps."""
    per = branching_minutes(steps, min_share)["branching_ratio"]
    return per.reindex(steps.index.floor("1min")).to_numpy(dtype=float)


def branching_summary(steps: pd.DataFrame, min_share: float = MIN_SHARE) -> dict:
    """``branching_ratio_median``, ``branching_ratio_peak``, ``branching_ratio_pooled`` (None
    when no minute qualifies) and ``branching_minutes`` (how many minutes qualify)."""
    per = branching_minutes(steps, min_share)
    ok = per["branching_ratio"].notna()
    n = per.loc[ok, "branching_ratio"]
    if n.empty:
        return {"branching_ratio_median": None, "branching_ratio_peak": None,
                "branching_ratio_pooled": None, "branching_minutes": 0}
    return {"branching_ratio_median": float(n.median()),
            "branching_ratio_peak": float(n.max()),
            "branching_ratio_pooled": float(per.loc[ok, "liquidated_usd"].sum()
                                            / per.loc[ok, "forced_prev_usd"].sum()),
            "branching_minutes": int(ok.sum())}
