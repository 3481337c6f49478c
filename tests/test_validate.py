"""`cascade validate` and cascade.analysis.targets: metrics on hand-made series, [targets] parsing and
its errors, the pass rule over seeds, and the command end to end on the historical scenarios
(at a reduced size; their pass/fail is not asserted, calibration is separate work)."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.analysis import targets as T
from cascade.cli import main
from cascade.errors import CascadeError
from cascade.model.scenario import load_scenario

UTC = dt.timezone.utc
T0 = pd.Timestamp("2025-10-10 20:00", tz="UTC")
ROOT = Path(__file__).resolve().parents[1]


def frame(prices, step_s=60.0, liq_long=None, liq_short=None, start=T0) -> pd.DataFrame:
    """A steps frame with a regular UTC index."""
    n = len(prices)
    idx = pd.DatetimeIndex([start + pd.Timedelta(seconds=step_s * i) for i in range(n)])
    zeros = np.zeros(n)
    return pd.DataFrame({"last_price": np.asarray(prices, dtype=float),
                         "liq_long_usd": zeros if liq_long is None else np.asarray(liq_long, float),
                         "liq_short_usd": zeros if liq_short is None else np.asarray(liq_short,
                                                                                     float)},
                        index=idx)


def minute(i: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=i)


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def test_price_low_time_of_low_and_rebound():
    f = frame([100, 104, 90, 95, 90, 110, 130, 120])  # low 90 first at minute 2
    assert T.price_low(f) == 90.0
    assert T.time_of_low(f) == minute(2)
    assert T.rebound_high(f, 3.0) == 110.0  # minutes 2..5 inclusive
    assert T.rebound_high(f, 2.9) == 95.0
    assert T.rebound_high(f, 60.0) == 130.0


def test_low_at_last_step_rebound_is_the_low_itself():
    f = frame([100, 99, 98, 97])
    assert T.time_of_low(f) == minute(3)
    assert T.rebound_high(f, 60.0) == 97.0
    empty = frame([])
    assert T.price_low(empty) is None and T.time_of_low(empty) is None
    assert T.rebound_high(empty, 5.0) is None and T.max_drop_pct(empty["last_price"], 5) is None


def test_max_drop_pct_hand_made():
    p = frame([100, 110, 99, 105, 95])["last_price"]
    assert T.max_drop_pct(p, 1.0) == pytest.approx(10.0)  # 110 -> 99 (105 -> 95 is 9.5%)
    assert T.max_drop_pct(p, 3.0) == pytest.approx(100 * 15 / 110)  # 110 -> 95
    assert T.max_drop_pct(p, 0.5) == 0.0  # no two steps that close
    assert T.max_drop_pct(frame([1, 2, 3])["last_price"], 10.0) == 0.0  # never falls


def _drop_brute(price: pd.Series, window_min: float) -> float:
    t = price.index.as_unit("ns").asi8
    p = price.to_numpy()
    w = pd.Timedelta(minutes=window_min).value
    best = 0.0
    for j in range(len(p)):
        i = j - 1
        while i >= 0 and t[j] - t[i] <= w:
            best = max(best, (1 - p[j] / p[i]) * 100)
            i -= 1
    return best


@pytest.mark.parametrize("seed", range(6))
def test_max_drop_pct_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 300
    if seed % 2:  # irregular spacing (1-40 s)
        gaps = rng.integers(1, 41, n)
        idx = T0 + pd.to_timedelta(np.cumsum(gaps), unit="s")
    else:  # regular 5 s steps
        idx = T0 + pd.to_timedelta(np.arange(n) * 5, unit="s")
    price = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), index=idx)
    for w in (0.25, 1.0, 7 / 6, 3.0):  # 7/6 min = 70 s: a window edge falls on a step
        assert T.max_drop_pct(price, w) == pytest.approx(_drop_brute(price, w), abs=1e-12)


def test_liquidation_windows_are_half_open():
    f = frame([100] * 6, liq_long=[1, 2, 3, 0, 0, 4], liq_short=[0, 0, 1, 0, 0, 0])
    assert T.liquidated_usd(f) == 11.0
    assert T.liquidated_usd(f, minute(1), minute(3)) == 6.0  # minutes 1 and 2, not 3
    assert T.liquidated_usd(f, start=minute(5)) == 4.0
    assert T.liquidated_usd(f, end=minute(1)) == 1.0
    assert T.long_share(f) == pytest.approx(10 / 11)
    assert T.long_share(f, minute(2), minute(3)) == pytest.approx(0.75)
    assert T.liquidated_share(f, minute(0), minute(2)) == pytest.approx(3 / 11)


def test_empty_window_and_no_liquidations():
    f = frame([100] * 6, liq_long=[1, 2, 3, 0, 0, 4])
    assert T.liquidated_usd(f, minute(3), minute(5)) == 0.0
    assert T.long_share(f, minute(3), minute(5)) is None  # nothing liquidated: undefined
    assert T.liquidated_usd(f, minute(10), minute(20)) == 0.0
    none = frame([100] * 6)
    assert T.long_share(none) is None and T.liquidated_share(none, minute(0), minute(2)) is None
    t = T.parse_target("s", {"metric": "long_share", "min": 0.0, "source": "x"}, "f.toml")
    assert not t.check(T.long_share(none)) and not t.check(float("nan"))


def test_summary_metrics():
    s = {"open_interest_start_usd": 70e9, "open_interest_end_usd": 58e9, "amplification": 2.5}
    assert T.oi_change_pct(s) == pytest.approx(-100 * 12 / 70)
    assert T.amplification(s) == 2.5
    with pytest.raises(CascadeError, match="amplification=True"):
        T.amplification({})
    assert T.oi_change_pct({"open_interest_start_usd": 0.0, "open_interest_end_usd": 1.0}) is None


def _path(points, step_s=10.0):
    """Linear path through (minute, price) points, sampled every step_s seconds."""
    mins = np.array([m for m, _ in points], float)
    t = np.arange(0, mins[-1] * 60 + 1e-9, step_s) / 60
    return frame(np.interp(t, mins, [p for _, p in points]), step_s=step_s)


ZIGZAG = [(0, 72000), (10, 71500), (20, 69000),  # leg 1: 72,000 -> 69,000 (-4.2%)
          (30, 70500),                            # +2.2%: leg ends
          (40, 70000), (45, 70900),               # -0.7%, +1.3%: too small, one up-swing
          (60, 66000),                            # leg 2: 70,900 -> 66,000 (-6.9%)
          (65, 66900),                            # +1.4%: not a reversal, leg 2 goes on
          (80, 64000),                            # leg 2 trough 64,000 (-9.7%)
          (90, 66000),                            # +3.1%
          (100, 64500),                           # -2.3%: a down-swing, but under 3%
          (110, 68000),                           # +5.4%
          (120, 65000)]                           # leg 3, open at the end: 68,000 -> 65,000


def test_zigzag_swings_on_a_hand_built_path():
    sw = T.swings(_path(ZIGZAG)["last_price"], 2.0)
    assert [(round(a), round(b)) for a, b, _, _ in sw] == [
        (72000, 69000), (70900, 64000), (66000, 64500), (68000, 65000)]
    assert sw[1][2] == minute(45) and sw[1][3] == minute(80)


def test_legs_counts_deep_enough_swings_below_the_level():
    f = _path(ZIGZAG)
    assert T.legs(f, min_drop_pct=3.0, min_rebound_pct=2.0) == 3
    assert T.legs(f, 3.0, 2.0, below=70000) == 3
    assert T.legs(f, 3.0, 2.0, below=66000) == 2  # 69,000 is not below 66,000
    assert T.legs(f, 5.0, 2.0) == 1  # only the 9.7% leg
    assert T.legs(f, 1.0, 2.0) == 4
    assert T.legs(f, 3.0, 10.0) == 1  # no rebound of 10%: one leg 72,000 -> 64,000
    assert T.legs(_path(ZIGZAG, step_s=60.0), 3.0, 2.0) == 3  # minute steps alike
    assert T.legs(frame([100.0]), 3.0, 2.0) == 0
    assert T.legs(frame([]), 3.0, 2.0) == 0


# ---------------------------------------------------------------------------------------------
# [targets] parsing
# ---------------------------------------------------------------------------------------------
def test_historical_scenarios_targets_parse():
    oct_ = {t.name: t for t in T.parse_targets(load_scenario(ROOT / "scenarios/oct2025.toml"))}
    assert oct_["low"].value == 101_500.0 and oct_["low"].tolerance_pct == 3.0
    assert oct_["low_time"].min == pd.Timestamp("2025-10-10 21:05", tz="UTC")
    assert oct_["fastest_drop"].params == {"window_min": 7.0}
    assert oct_["liquidations"].params["end"] == pd.Timestamp("2025-10-11 12:00", tz="UTC")
    feb = {t.name: t for t in T.parse_targets(load_scenario(ROOT / "scenarios/feb2026.toml"))}
    assert feb["legs"].params == {"below": 70000.0, "min_drop_pct": 3.0, "min_rebound_pct": 2.0}
    assert feb["legs"].min == 2.0 and feb["legs"].max is None


def test_bounds_checks():
    def tgt(**kw):
        return T.parse_target("x", {"metric": "price_low", "source": "s", **kw}, "f.toml")

    t = tgt(value=100.0, tolerance_pct=3.0)
    assert t.check(97.0) and t.check(103.0) and not t.check(96.9) and not t.check(None)
    t = tgt(min=1, max=2)
    assert t.check(1.0) and t.check(2.0) and not t.check(0.99) and not t.check(2.01)
    assert tgt(max=5).check(-1e9) and not tgt(min=5).check(4.9)
    w = T.parse_target("w", {"metric": "time_of_low", "source": "s",
                             "min": dt.datetime(2025, 10, 10, 21, 5, tzinfo=UTC),
                             "max": "2025-10-10T21:35:00Z"}, "f.toml")
    assert w.check(pd.Timestamp("2025-10-10 21:20", tz="UTC"))
    assert w.check(pd.Timestamp("2025-10-10 21:35", tz="UTC"))
    assert not w.check(pd.Timestamp("2025-10-10 21:35:01", tz="UTC"))


GOOD = {"metric": "price_low", "value": 100.0, "tolerance_pct": 3.0, "source": "candles"}
WINDOW = (dt.datetime(2025, 10, 10, 12, tzinfo=UTC), dt.datetime(2025, 10, 11, 12, tzinfo=UTC))


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("table, key, expected", [
    (5, "", "expected a table"),
    (_without(GOOD, "metric"), "missing key 'metric'", "expected one of price_low"),
    ({**GOOD, "metric": "price_hi"}, "metric", "expected one of price_low, time_of_low"),
    ({**GOOD, "metric": 3}, "metric", "got 3"),
    ({**GOOD, "window": 7}, "unknown key 'window'", "expected one of: metric, source, min"),
    (_without(GOOD, "source"), "missing key 'source'", "expected a string"),
    ({**GOOD, "source": ""}, "source", "expected a non-empty string"),
    ({**GOOD, "tolerance_pct": -1.0}, "tolerance_pct", "expected a percentage, >= 0, got -1.0"),
    ({**GOOD, "tolerance_pct": "3%"}, "tolerance_pct", "got '3%'"),
    (_without(GOOD, "tolerance_pct"), "missing key 'tolerance_pct'", "expected it with value"),
    (_without(GOOD, "value"), "missing key 'value'", "expected it with tolerance_pct"),
    ({**GOOD, "value": True}, "value", "expected a number, got True"),
    ({**GOOD, "min": 1.0}, "", "expected either min and/or max, or value with tolerance_pct"),
    ({"metric": "price_low", "source": "s"}, "", "expected bounds: min and/or max"),
    ({"metric": "price_low", "source": "s", "min": float("nan")}, "min", "expected a number"),
    ({"metric": "price_low", "source": "s", "min": 5, "max": 4}, "max",
     "expected a number >= min (5), got 4"),
    ({"metric": "max_drop_pct", "source": "s", "min": 7}, "missing key 'window_min'",
     "expected a number of minutes, > 0"),
    ({"metric": "max_drop_pct", "source": "s", "min": 7, "window_min": 0}, "window_min",
     "expected a number of minutes, > 0, got 0"),
    ({"metric": "legs", "source": "s", "min": 2, "min_drop_pct": 3}, "missing key 'min_rebound_pct'",
     "expected a percentage, > 0"),
    ({"metric": "legs", "source": "s", "min": 2, "min_drop_pct": 3, "min_rebound_pct": 2,
      "below": -1}, "below", "expected a price in USD, > 0, got -1"),
    ({"metric": "liquidated_share", "source": "s", "min": 0.5, "start": WINDOW[0]},
     "missing key 'end'", "expected a UTC date-time"),
    ({"metric": "liquidated_usd", "source": "s", "min": 1, "start": "yesterday"}, "start",
     "expected a UTC date-time such as 2025-10-10T20:50:00Z, got 'yesterday'"),
    ({"metric": "liquidated_usd", "source": "s", "min": 1, "start": dt.date(2025, 10, 10)},
     "start", "got 2025-10-10"),
    ({"metric": "liquidated_usd", "source": "s", "min": 1, "start": WINDOW[1], "end": WINDOW[0]},
     "end", "expected a time after start"),
    ({"metric": "liquidated_usd", "source": "s", "min": 1,  # naive date-times are UTC
      "start": dt.datetime(2024, 1, 1), "end": dt.datetime(2024, 1, 2)},
     "start/end", "expected a window overlapping the scenario's"),
    ({"metric": "time_of_low", "source": "s", "min": 5.0}, "min", "expected a UTC date-time"),
    ({"metric": "time_of_low", "source": "s", "value": WINDOW[0], "tolerance_pct": 1}, "value",
     "expected min and/or max date-times"),
    ({"metric": "time_of_low", "source": "s", "min": WINDOW[1], "max": WINDOW[0]}, "max",
     "expected a time at or after min"),
])
def test_bad_target_names_file_key_and_expectation(table, key, expected):
    with pytest.raises(CascadeError) as err:
        T.parse_target("low", table, "scenarios/x.toml", WINDOW)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"scenarios/x.toml: [targets.low]{' ' + key if key else ''}"), msg
    assert expected in msg, msg


def test_scenario_without_targets_is_bad_input(tmp_path, capsys):
    text = (ROOT / "scenarios/feb2026.toml").read_text()
    path = tmp_path / "none.toml"
    shutil.copytree(ROOT / "scenarios/markets", tmp_path / "markets")  # extends
    path.write_text(text.split("[targets.", 1)[0])
    assert main(["validate", str(path), "--positions", "100", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cascade: error:") and "none.toml: [targets]" in err


def test_bad_targets_fail_before_any_run(tmp_path, capsys, monkeypatch):
    import cascade.runner

    def boom(*a, **k):
        raise AssertionError("ran a simulation before checking the targets")

    monkeypatch.setattr(cascade.runner, "run", boom)
    text = (ROOT / "scenarios/oct2025.toml").read_text()
    path = tmp_path / "bad.toml"
    shutil.copytree(ROOT / "scenarios/markets", tmp_path / "markets")  # extends
    # a good first target, then a bad one further down: all are checked before running
    path.write_text(text + '\n[targets.zz]\nmetric = "rebound_high"\nwithin_min = "1h"\n'
                           'min = 1.0\nsource = "test"\n')
    assert main(["validate", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cascade: error: {path}: [targets.zz] within_min: expected a number of "
                   "minutes, > 0, got '1h'")


@pytest.mark.parametrize("args", [["--seeds", "0"], ["--min-pass-share", "1.5"],
                                  ["--min-pass-share", "x"], ["--positions", "-3"]])
def test_bad_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "scenarios/oct2025.toml", *args])
    assert exc.value.code == 2
    assert "cascade: error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# pass rule over seeds
# ---------------------------------------------------------------------------------------------
def test_required_passes_rounds_up_without_float_surprises():
    assert T.required_passes(0.9, 20) == 18
    assert T.required_passes(0.7, 10) == 7  # 0.7 * 10 = 7.000000000000001 in floats
    assert T.required_passes(0.9, 1) == 1
    assert T.required_passes(0.5, 3) == 2
    assert T.required_passes(0.0, 5) == 0 and T.required_passes(1.0, 5) == 5


def test_default_seed_must_pass_and_share_rule():
    t = T.parse_target("x", {"metric": "price_low", "min": 10.0, "source": "s"}, "f.toml")
    ok, bad = 11.0, 9.0

    def passed(values, share=0.9):
        return T.evaluate([t], {"x": values}, share)[0].passed

    assert passed([ok] * 20)
    assert passed([ok] * 18 + [bad] * 2)  # 18/20 >= ceil(0.9 * 20)
    assert not passed([ok] * 17 + [bad] * 3)
    assert not passed([bad] + [ok] * 19)  # the default seed fails: FAIL even at 19/20
    assert not passed([bad] + [ok] * 19, share=0.0)
    assert passed([ok] + [bad] * 19, share=0.0)
    assert passed([ok, bad], share=0.5) and not passed([ok, None], share=0.6)
    r = T.evaluate([t], {"x": [ok, None, bad, 12.0]}, 0.5)[0]
    assert (r.n_pass, r.required, r.passed) == (2, 2, True)
    assert r.stats() == (11.0, 9.0, 12.0)  # the undefined value is left out


def _report(values_by_target, targets, seeds):
    res = T.evaluate(targets, values_by_target, 0.9)
    return T.ValidationReport("oct2025", "scenarios/oct2025.toml", 20000, seeds, 0.9, res,
                              start=pd.Timestamp("2025-10-10 12:00", tz="UTC"))


def test_table_and_dict_formatting():
    low = T.parse_target("low", {"metric": "price_low", "value": 101_500.0, "tolerance_pct": 3.0,
                                 "source": "Binance BTCUSDT perp 1m candles: low 101,516.5 at "
                                           "21:20 UTC Oct 10 (events.md)"}, "f.toml")
    when = T.parse_target("low_time", {"metric": "time_of_low", "source": "candles",
                                       "min": "2025-10-10T21:05:00Z",
                                       "max": "2025-10-11T01:00:00Z"}, "f.toml")
    liq = T.parse_target("liq", {"metric": "liquidated_usd", "min": 4e9, "max": 7e9,
                                 "source": "CoinGlass"}, "f.toml")
    share = T.parse_target("ls", {"metric": "long_share", "min": 0.8, "source": "CoinGlass"},
                           "f.toml")
    t1, t2 = pd.Timestamp("2025-10-10 21:20", tz="UTC"), pd.Timestamp("2025-10-11 00:10",
                                                                      tz="UTC")
    rep = _report({"low": [100_000.0, 104_000.0], "low_time": [t1, t2],
                   "liq": [4.21e9, 3.9e9], "ls": [None, 0.9]}, [low, when, liq, share],
                  [7, 8])
    text = rep.table()
    lines = text.splitlines()
    assert lines[0].split() == ["target", "metric", "source", "simulated", "bounds", "seeds",
                                "result"]
    row = {ln.split()[0]: ln for ln in lines[2:6]}
    assert "102,000 [100,000, 104,000]" in row["low"] and "101,500 +/- 3%" in row["low"]
    assert "Binance BTCUSDT perp 1m c..." in row["low"]
    assert "2/2" in row["low"] and row["low"].rstrip().endswith("PASS")
    assert "22:45 [21:20, 2025-10-11 00:10] UTC" in row["low_time"]
    assert "21:05 to 2025-10-11 01:00 UTC" in row["low_time"]
    assert "$4.05B [$3.90B, $4.21B]" in row["liq"] and "$4.00B to $7.00B" in row["liq"]
    assert "1/2" in row["liq"] and row["liq"].endswith("FAIL")
    assert "90.0% [90.0%, 90.0%]" in row["ls"] and ">= 80.0%" in row["ls"]
    assert row["ls"].endswith("FAIL")  # default seed undefined
    assert lines[-1].startswith("FAIL: 2 of 4 targets met; all 4 at once on 0 of 2 seeds (2 "
                                "needed) (oct2025, 20,000 positions, seeds 7..8")
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["passed"] is False and d["seeds"] == [7, 8] and d["positions"] == 20000
    assert d["joint"] == {"ok": [False, False], "n_pass": 0, "n_required": 2,
                          "targets": ["low", "low_time", "liq", "ls"]}
    by = {t["name"]: t for t in d["targets"]}
    assert by["low_time"]["values"] == ["2025-10-10T21:20:00+00:00", "2025-10-11T00:10:00+00:00"]
    assert by["low_time"]["bounds"]["min"] == "2025-10-10T21:05:00+00:00"
    assert by["low"]["bounds"] == {"value": 101_500.0, "tolerance_pct": 3.0}
    assert by["ls"]["values"] == [None, 0.9] and by["ls"]["n_pass"] == 1
    assert by["liq"]["median"] == pytest.approx(4.055e9)


def test_format_value():
    assert T.format_value(4.21e9, "usd") == "$4.21B"
    assert T.format_value(-1.5e6, "usd") == "-$1.5M"
    assert T.format_value(101_516.7, "price") == "101,517"
    assert T.format_value(4_321.25, "price") == "4,321.2"
    assert T.format_value(-14.312, "pct") == "-14.31%"
    assert T.format_value(0.874, "share") == "87.4%"
    assert T.format_value(2.1, "ratio") == "2.10x"
    assert T.format_value(3, "count") == "3"
    assert T.format_value(None, "price") == "n/a" and T.format_value(math.nan, "pct") == "n/a"


def test_metric_reference_lists_every_metric():
    md = T.metric_markdown()
    for name in T.METRICS:
        assert f"| `{name}` |" in md


# ---------------------------------------------------------------------------------------------
# end to end (reduced size; the historical scenarios are not yet calibrated, so pass/fail is
# only checked for consistency with the exit status)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["scenarios/oct2025.toml", "scenarios/feb2026.toml"])
def test_validate_cli_on_historical_scenarios(scenario, capsys):
    rc = main(["validate", scenario, "--positions", "20000", "--quiet"])
    out = capsys.readouterr().out
    names = list(load_scenario(scenario).targets)
    lines = out.strip().splitlines()
    assert lines[0].split()[0] == "target" and len(lines) == len(names) + 4
    for name, line in zip(names, lines[2:]):
        assert line.split()[0] == name and line.rstrip().endswith(("PASS", "FAIL", "SKIPPED"))
        # without --reference the path target is skipped, the others are measured
        assert line.rstrip().endswith("SKIPPED") == (name == "path_rmse")
    all_pass = all(line.rstrip().endswith(("PASS", "SKIPPED"))
                   for line in lines[2:2 + len(names)])
    assert ", 1 skipped; all " in lines[-1]
    assert lines[-1].startswith("PASS:" if all_pass else "FAIL:")  # one seed: joint = all pass
    assert rc == (0 if all_pass else 1)


def test_impossible_target_fails_with_exit_1_and_json(tmp_path, capsys):
    text = (ROOT / "scenarios/feb2026.toml").read_text()
    path = tmp_path / "impossible.toml"
    shutil.copytree(ROOT / "scenarios/markets", tmp_path / "markets")  # extends
    path.write_text(text + '\n[targets.impossible]\nmetric = "price_low"\nmin = 1e9\n'
                           'source = "test"\n')
    rc = main(["validate", str(path), "--positions", "20000", "--seeds", "2", "--json",
               "--quiet", "--min-pass-share", "0.5"])
    assert rc == 1
    d = json.loads(capsys.readouterr().out)
    assert d["passed"] is False and d["seeds"] == [20260205, 20260206]
    assert d["positions"] == 20000 and d["min_pass_share"] == 0.5
    by = {t["name"]: t for t in d["targets"]}
    assert list(by) == list(load_scenario(path).targets)
    imp = by["impossible"]
    assert imp["passed"] is False and imp["n_pass"] == 0 and imp["n_required"] == 1
    assert len(imp["values"]) == 2 and imp["min"] <= imp["median"] <= imp["max"] < 1e9
    assert by["amplification"]["values"][0] is not None  # the no-feedback run was made
    for t in d["targets"]:
        assert t["n_pass"] == sum(t["ok"])
        if t["skipped"]:  # path_rmse without --reference
            assert t["name"] == "path_rmse" and t["passed"] is None and not t["values"]
            continue
        assert t["passed"] == (t["ok"][0] and t["n_pass"] >= t["n_required"])


def test_python_api(small):
    raw = {**small.raw, "targets": {"drop": {"metric": "max_drop_pct", "window_min": 5.0,
                                             "min": 0.0, "source": "test"},
                                    "liq": {"metric": "liquidated_usd", "max": 0.0,
                                            "source": "test"}}}
    from cascade.model.scenario import parse_scenario

    sc = parse_scenario(raw, source="<test>")
    rep = T.validate(sc, seeds=2, positions=2000)
    assert rep.seeds == [3, 4] and rep.positions == 2000
    drop, liq = rep.results
    assert drop.passed and drop.n_pass == 2 and all(v >= 0 for v in drop.values)
    assert not liq.passed and all(v > 0 for v in liq.values)
    assert rep.passed is False and "FAIL: 1 of 2 targets met" in rep.table()
    with pytest.raises(CascadeError, match="seeds"):
        T.validate(sc, seeds=0)


# ---------------------------------------------------------------------------------------------
# issue 15: joint count, --seed-start, path_rmse_pct with --reference, ADL metrics
# ---------------------------------------------------------------------------------------------
def _price_target(name="p", lo=10.0):
    return T.parse_target(name, {"metric": "price_low", "min": lo, "source": "s"}, "f.toml")


def test_joint_count_needs_the_same_seeds_to_meet_every_target():
    a, b = _price_target("a"), _price_target("b")
    ok, bad = 11.0, 9.0
    # each target passes 18 of 20 on its own, but on different seeds: 16 meet both at once
    va = [ok] * 18 + [bad] * 2
    vb = [ok] * 16 + [bad] * 2 + [ok] * 2
    rep = _report({"a": va, "b": vb}, [a, b], list(range(20)))
    assert all(r.passed for r in rep.results)
    assert rep.n_joint == 16 and rep.joint_required == 18 and not rep.passed
    assert rep.joint_ok == [True] * 16 + [False] * 4
    assert "FAIL: 2 of 2 targets met; all 2 at once on 16 of 20 seeds (18 needed)" in \
        rep.table().splitlines()[-1]
    rep = _report({"a": va, "b": va}, [a, b], list(range(20)))  # same seeds fail: 18 joint
    assert rep.n_joint == 18 and rep.passed
    assert rep.to_dict()["joint"]["n_pass"] == 18 and rep.to_dict()["passed"] is True


def test_skipped_target_neither_fails_nor_counts_in_the_joint_count():
    a = _price_target("a")
    path = T.parse_target("path", {"metric": "path_rmse_pct", "max": 2.0, "source": "s"},
                          "f.toml")
    res = T.evaluate([a, path], {"a": [11.0, 12.0]}, 0.9, skipped={"path": "no --reference"})
    rep = T.ValidationReport("x", None, 100, [1, 2], 0.9, res)
    assert rep.passed and rep.n_joint == 2
    lines = rep.table().splitlines()
    row = [ln for ln in lines if ln.startswith("path")][0]
    assert "(no --reference)" in row and row.rstrip().endswith("SKIPPED") and " - " in row
    assert lines[-1].startswith("PASS: 1 of 1 targets met, 1 skipped; all 1 at once on 2 of 2")
    d = rep.to_dict()
    by = {t["name"]: t for t in d["targets"]}
    assert by["path"]["skipped"] == "no --reference" and by["path"]["passed"] is None
    assert by["path"]["values"] == [] and d["joint"]["targets"] == ["a"]


def test_path_rmse_pct_by_hand():
    idx = pd.date_range(T0, periods=180, freq="20s")  # 60 minutes of 20 s steps
    price = pd.Series(100.0, index=idx)
    price[idx >= minute(30)] = 110.0
    closes = np.full(60, 100.0)
    closes[10] = 100.0 * math.exp(0.02)  # sim 2% (log) below the candle in minute 10
    from cascade.io.klines import synthetic_klines

    kl = synthetic_klines(T0, closes)
    # minutes 30..59: log(110/100) each; minute 10: 0.02
    expected = math.sqrt((30 * math.log(1.1) ** 2 + 0.02 ** 2) / 60) * 100
    assert T.path_rmse_pct(price, kl) == pytest.approx(expected)
    assert T.path_rmse_pct(price, kl, end=minute(30)) == pytest.approx(
        math.sqrt(0.02 ** 2 / 30) * 100)
    assert T.path_rmse_pct(price, kl, start=minute(30)) == pytest.approx(math.log(1.1) * 100)
    assert T.path_rmse_pct(price, kl, start=minute(11), end=minute(30)) == 0.0
    assert T.path_rmse_pct(price, synthetic_klines(minute(600), [1.0, 2.0])) is None


def test_path_rmse_pct_agrees_with_result_add_reference(small):
    from cascade.io.klines import synthetic_klines
    from cascade.runner import run

    res = run(small, positions=1000)
    close = res.steps["last_price"].resample("1min").last().to_numpy() * np.exp(
        np.linspace(-0.03, 0.03, 40))
    kl = synthetic_klines(small.scenario.start, close)
    res.add_reference(kl)
    assert T.path_rmse_pct(res.steps["last_price"], kl) == pytest.approx(
        res.summary["path_rmse_pct"], rel=1e-12)


def _venue_frame():
    """Two venues over 10 minutes of 30 s steps: hl liquidates from minute 2 (a $1 trickle),
    $50M at minute 4, ADL from minute 5.5; cex liquidates only."""
    idx = pd.date_range(T0, periods=20, freq="30s")
    z = np.zeros(20)
    hl_liq = z.copy()
    hl_liq[4] = 1.0
    hl_liq[8] = 50e6
    hl_adl = z.copy()
    hl_adl[11], hl_adl[12] = 3e6, 4e6
    cex_liq = z.copy()
    cex_liq[2] = 1e9
    return pd.DataFrame({"last_price": np.full(20, 100.0),
                         "liq_long_usd": hl_liq + cex_liq, "liq_short_usd": z,
                         "adl_usd": hl_adl,
                         "hl.liq_long_usd": hl_liq, "hl.liq_short_usd": z, "hl.adl_usd": hl_adl,
                         "cex.liq_long_usd": cex_liq, "cex.liq_short_usd": z,
                         "cex.adl_usd": z}, index=idx)


def test_adl_metrics_per_venue_and_window():
    f = _venue_frame()
    assert T.adl_usd(f, "hl") == 7e6 and T.adl_usd(f) == 7e6 and T.adl_usd(f, "cex") == 0.0
    assert T.adl_usd(f, "hl", start=minute(6)) == 4e6
    assert T.adl_usd(f, "hl", end=minute(6)) == 3e6
    assert T.adl_delay_min(f, "hl") == pytest.approx(3.5)  # minute 2 -> 5.5
    assert T.adl_delay_min(f, "hl", min_usd_per_min=10e6) == pytest.approx(1.5)  # 4 -> 5.5
    assert T.adl_delay_min(f, "hl", start=minute(4.5)) is None  # no liquidation in the window
    assert T.adl_delay_min(f, "cex") is None  # liquidations, no ADL
    assert T.adl_delay_min(f, "hl", min_usd_per_min=1e9) is None
    assert T.adl_delay_min(f) == pytest.approx(4.5)  # market: cex's minute 1 -> 5.5
    with pytest.raises(CascadeError, match="venue 'okx': expected one of cex, hl"):
        T.adl_usd(f, "okx")
    single = f[["last_price", "liq_long_usd", "liq_short_usd", "adl_usd"]]
    assert T.adl_usd(single, "binance") == 7e6  # a single-venue run has no prefixed columns


def test_oct2025_adl_targets_parse_and_name_the_hyperliquid_venue():
    sc = load_scenario(ROOT / "scenarios/oct2025.toml")
    by = {t.name: t for t in T.parse_targets(sc)}
    hl = [v.name for v in sc.venues if v.rules == "hyperliquid"]
    assert by["hyperliquid_adl"].params["venue"] in hl
    assert (by["hyperliquid_adl"].min, by["hyperliquid_adl"].max) == (0.3e9, 1.2e9)
    assert by["hyperliquid_adl_delay"].max == 3.0
    assert by["path_rmse"].max == 2.0 and by["path_rmse"].params["end"] == pd.Timestamp(
        "2025-10-10 23:00", tz="UTC")
    feb = {t.name: t for t in T.parse_targets(load_scenario(ROOT / "scenarios/feb2026.toml"))}
    assert feb["path_rmse"].max == 3.0


def test_unknown_venue_in_a_target_is_bad_input(small):
    from cascade.model.scenario import parse_scenario

    raw = {**small.raw, "targets": {"adl": {"metric": "adl_usd", "venue": "okx", "min": 1.0,
                                            "source": "s"}}}
    with pytest.raises(CascadeError) as err:
        T.parse_targets(parse_scenario(raw, source="x.toml"))
    assert str(err.value) == ("small: [targets.adl] venue: expected one of the scenario's "
                              "venues (binance), got 'okx'")


def _path_scenario(tmp_path, small, max_pct=50.0):
    """The small scenario as a file, with a path target over its first 30 minutes."""
    from cascade.model.scenario import parse_scenario

    raw = {**small.raw, "targets": {
        "drop": {"metric": "max_drop_pct", "window_min": 5.0, "min": 0.0, "source": "test"},
        "path": {"metric": "path_rmse_pct", "start": small.scenario.start,
                 "end": small.scenario.start + dt.timedelta(minutes=30), "max": max_pct,
                 "source": "test"}}}
    return parse_scenario(raw, source="<test>")


def test_validate_with_reference_and_seed_start(tmp_path, small):
    from cascade.io.klines import synthetic_klines, write_klines

    sc = _path_scenario(tmp_path, small)
    kl = synthetic_klines(small.scenario.start, np.full(40, 110_000.0))
    path = tmp_path / "klines.csv"
    write_klines(kl, path)
    rep = T.validate(sc, seeds=2, positions=1000, seed_start=1_000_000, references=[path])
    assert rep.seeds == [1_000_000, 1_000_001]
    drop, p = rep.results
    assert p.skipped is None and len(p.values) == 2 and all(0 < v < 50 for v in p.values)
    from cascade.runner import run

    res = run(sc, positions=1000, seed=1_000_001)
    assert p.values[1] == pytest.approx(T.path_rmse_pct(res.steps["last_price"], kl,
                                                        end=minute(30)))
    assert rep.passed and rep.n_joint == 2
    rep = T.validate(sc, positions=1000)  # no reference: skipped, the rest decides
    assert rep.seeds == [3] and rep.results[1].skipped == "no --reference" and rep.passed
    with pytest.raises(CascadeError, match="--seed-start: expected a whole number >= 0"):
        T.validate(sc, seed_start=-1)


def test_validate_cli_reference_errors(tmp_path, small, capsys):
    import shutil

    from cascade.io.klines import synthetic_klines, write_klines

    text = (ROOT / "scenarios/feb2026.toml").read_text()
    scen = tmp_path / "feb.toml"
    scen.write_text(text)
    shutil.copytree(ROOT / "scenarios/markets", tmp_path / "markets")  # its shared law
    far = tmp_path / "far.csv"
    write_klines(synthetic_klines("2024-01-01T00:00:00Z", [1.0, 2.0, 3.0]), far)
    assert main(["validate", str(scen), "--positions", "100", "--quiet", "--reference",
                 str(far)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cascade: error: --reference: expected 1-minute candles covering")
    assert "[targets.path_rmse]" in err and str(far) in err
    five = tmp_path / "five.csv"
    write_klines(synthetic_klines("2026-02-05T00:00:00Z", [1.0, 2.0, 3.0], interval_s=300),
                 five)
    assert main(["validate", str(scen), "--quiet", "--reference", str(five)]) == 2
    assert f"--reference {five}: expected 1-minute candles, got 300 s candles" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(scen), "--seed-start", "-4"])
    assert exc.value.code == 2


def test_validate_cli_json_joint_and_seed_start(tmp_path, capsys):
    from cascade.io.klines import synthetic_klines, write_klines

    scen = ROOT / "scenarios/feb2026.toml"
    ref = tmp_path / "ref.csv"
    write_klines(synthetic_klines("2026-02-05T00:00:00Z", np.full(1800, 70_000.0)), ref)
    rc = main(["validate", str(scen), "--positions", "2000", "--seeds", "2", "--seed-start",
               "1000000", "--reference", str(ref), "--json", "--quiet"])
    d = json.loads(capsys.readouterr().out)
    assert d["seeds"] == [1_000_000, 1_000_001]
    by = {t["name"]: t for t in d["targets"]}
    assert by["path_rmse"]["skipped"] is None and len(by["path_rmse"]["values"]) == 2
    joint = [all(t["ok"][i] for t in d["targets"]) for i in range(2)]
    assert d["joint"]["ok"] == joint and d["joint"]["n_pass"] == sum(joint)
    assert rc == (0 if d["passed"] else 1)
    assert d["passed"] == (all(t["passed"] for t in d["targets"]) and sum(joint) >= 2)


def test_help_documents_the_exit_rule(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "AND at least ceil(SHARE * K) seeds meet all of them at once (the joint count" in out
    assert "--seed-start S" in out and "--reference FILE" in out and "SKIPPED" in out
