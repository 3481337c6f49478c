"""The branching ratio (cascade.analysis.branching): hand-made minutes, the threshold, the per-step
column and the summary of a real run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascade.analysis.branching import branching_column, branching_minutes, branching_summary

T0 = pd.Timestamp("2025-10-10 21:00", tz="UTC")


def frame(minutes: list[tuple]) -> pd.DataFrame:
    """Steps every 15 s; each minute's (longs, shorts, stops, adl) spread over its 4 steps."""
    idx = pd.date_range(T0, periods=4 * len(minutes), freq="15s")
    rows = np.repeat(np.asarray(minutes, dtype=float) / 4.0, 4, axis=0)
    return pd.DataFrame(rows, index=idx,
                        columns=["liq_long_usd", "liq_short_usd", "stop_usd", "adl_usd"])


def test_ratio_is_liquidations_over_the_previous_minutes_forced_volume():
    f = frame([(0, 0, 100e6, 0),       # a stop run: forced 100M, nothing liquidated
               (40e6, 10e6, 0, 0),     # 50M liquidated: n = 50/100
               (20e6, 0, 5e6, 5e6),    # 20M liquidated after 50M forced: n = 0.4
               (0, 0, 0, 0),           # nothing after 30M forced: n = 0
               (1e6, 0, 0, 0)])        # after a minute with no forced volume: undefined
    per = branching_minutes(f)
    assert per["forced_usd"].tolist() == [100e6, 50e6, 30e6, 0.0, 1e6]
    assert per["forced_prev_usd"].tolist() == [0.0, 100e6, 50e6, 30e6, 0.0]
    n = per["branching_ratio"].tolist()
    assert np.isnan(n[0]) and n[1:4] == pytest.approx([0.5, 0.4, 0.0]) and np.isnan(n[4])
    s = branching_summary(f)
    assert s["branching_minutes"] == 3
    assert s["branching_ratio_median"] == pytest.approx(0.4)
    assert s["branching_ratio_peak"] == pytest.approx(0.5)
    assert s["branching_ratio_pooled"] == pytest.approx(70 / 180)
    col = branching_column(f)
    assert col.shape == (20,) and np.isnan(col[:4]).all() and np.isnan(col[16:]).all()
    assert col[4:8] == pytest.approx([0.5] * 4) and col[12:16] == pytest.approx([0.0] * 4)


def test_threshold_leaves_out_a_trickle_and_supercritical_minutes_show():
    f = frame([(0, 0, 1e9, 0), (2e9, 0, 0, 0), (0, 0, 5e6, 0), (4e6, 0, 0, 0)])
    per = branching_minutes(f, min_share=0.01)  # floor: 1% of the 2B peak = 20M
    assert per["branching_ratio"].iloc[1] == pytest.approx(2.0)  # supercritical minute
    assert per["branching_ratio"].iloc[2] == 0.0
    assert np.isnan(per["branching_ratio"].iloc[3])  # 5M forced before: below the floor
    assert branching_minutes(f, min_share=0.0)["branching_ratio"].iloc[3] == pytest.approx(0.8)
    s = branching_summary(f, min_share=0.01)
    assert s["branching_ratio_peak"] == pytest.approx(2.0) and s["branching_minutes"] == 2


def test_quiet_run_has_no_ratio_and_missing_columns_count_as_zero():
    f = frame([(0, 0, 0, 0)] * 3)
    assert branching_summary(f) == {"branching_ratio_median": None,
                                    "branching_ratio_peak": None,
                                    "branching_ratio_pooled": None, "branching_minutes": 0}
    g = frame([(0, 0, 10e6, 0), (3e6, 0, 0, 0)]).drop(columns=["adl_usd"])
    assert branching_minutes(g)["branching_ratio"].iloc[1] == pytest.approx(0.3)


def test_a_run_carries_the_column_and_the_summary(small):
    from cascade.runner import run

    res = run(small, positions=2000)
    assert "branching_ratio" in res.steps.columns
    per = branching_minutes(res.steps)
    assert per["liquidated_usd"].sum() == pytest.approx(
        res.steps["liq_long_usd"].sum() + res.steps["liq_short_usd"].sum())
    s = res.summary
    assert s["branching_minutes"] == int(per["branching_ratio"].notna().sum()) > 0
    assert s["branching_ratio_median"] == pytest.approx(per["branching_ratio"].median())
    col = res.steps["branching_ratio"].to_numpy()
    minute_of = res.steps.index.floor("1min")
    expect = per["branching_ratio"].reindex(minute_of).to_numpy()
    assert np.array_equal(np.isnan(col), np.isnan(expect))
    assert col[~np.isnan(col)] == pytest.approx(expect[~np.isnan(expect)])
