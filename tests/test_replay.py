"""Replay: the engine driven along a kline path, with no feedback."""

import datetime as dt
import json

import numpy as np
import pytest

from cascade.analysis.replay import replay, replay_inputs, replay_scenario
from cascade.cli import main
from cascade.engine import KIND_LIQ
from cascade.io.klines import candle_path, synthetic_klines, write_klines
from cascade.model.market import parameters
from tests.conftest import START, make_scenario
from tests.naive import engine as naive

MIN = dt.timedelta(minutes=1)


def _drop_klines(low_frac=0.9, minutes=40):
    """Candles over the small scenario's 40 minutes: flat, a fall to ``low_frac`` of the start
    price by minute 15, then a partial recovery."""
    p0 = 110000.0
    closes = np.concatenate([np.full(5, p0), np.geomspace(p0, p0 * low_frac, 10),
                             np.geomspace(p0 * low_frac, p0 * 0.97, minutes - 15)])
    k = synthetic_klines(START, closes)
    k.loc[k.index[14], "low"] = p0 * low_frac * 0.995  # a wick below the closes
    return k


def test_candle_path_visits_every_extreme_in_order():
    k = synthetic_klines(START, [100.0, 90.0, 95.0])
    k["high"] = [101.0, 100.5, 96.0]
    k["low"] = [99.0, 89.0, 89.5]
    times = [START + dt.timedelta(seconds=s) for s in range(180)]
    import pandas as pd

    p = candle_path(k, pd.DatetimeIndex(times))
    for j in range(3):
        minute = p[60 * j: 60 * (j + 1)]
        assert minute.min() == k["low"].iloc[j] and minute.max() == k["high"].iloc[j]
        assert minute[-1] == k["close"].iloc[j] and minute[0] == k["open"].iloc[j]
    # candle 1 closed down: the high comes before the low; candle 2 closed up: low first
    assert np.argmax(p[60:120]) < np.argmin(p[60:120])
    assert np.argmin(p[120:180]) < np.argmax(p[120:180])


def test_candle_path_rejects_coarse_steps_and_gaps():
    import pandas as pd

    from cascade.errors import CascadeError

    k = synthetic_klines(START, [100.0, 90.0])
    with pytest.raises(CascadeError, match="at least 4 steps per candle"):
        candle_path(k, pd.date_range(START, periods=4, freq="20s"))
    gappy = k.drop(k.index[0:0])
    gappy.index = pd.DatetimeIndex([START, START + 2 * MIN], name="open_time")
    with pytest.raises(CascadeError, match="jump from"):
        candle_path(gappy, pd.date_range(START, periods=120, freq="1s"))
    with pytest.raises(CascadeError, match="outside the kline data"):
        candle_path(k, pd.date_range(START, periods=200, freq="1s"))


def test_replay_follows_the_klines_exactly():
    k = _drop_klines()
    res = replay(make_scenario(), k)
    import pandas as pd

    want = candle_path(k, pd.DatetimeIndex(res.steps.index))
    np.testing.assert_allclose(res.steps["last_price"], want, rtol=1e-12)
    np.testing.assert_array_equal(res.steps["mark_price"], res.steps["last_price"])
    assert res.summary["mode"] == "replay" and res.summary["path_rmse_pct"] < 1e-9
    assert res.summary["exogenous_sold_usd"] == 0 and res.summary["dip_bought_usd"] == 0


@pytest.mark.parametrize("low_frac", [0.97, 0.9, 0.8])
def test_replay_liquidates_exactly_the_positions_above_the_low(low_frac):
    sc = make_scenario(**{"population.stop_loss_share": 0.0})
    k = _drop_klines(low_frac)
    res = replay(sc, k)
    popu = res.population
    price = res.steps["last_price"].to_numpy()
    lo, hi = price.min(), price.max()
    rec = res.records
    got = set(rec["pos"][rec["kind"] == KIND_LIQ].tolist())
    longs = np.flatnonzero((popu.side > 0) & (popu.lp >= lo))
    shorts = np.flatnonzero((popu.side < 0) & (popu.lp <= hi))
    assert got == set(longs.tolist()) | set(shorts.tolist())
    assert len(longs) > 0
    assert res.summary["liquidations_pending_at_end"] == 0


def test_replay_matches_naive_engine_with_stops():
    sc = make_scenario(**{"population.stop_loss_share": 0.3})
    k = _drop_klines(0.85)
    res = replay(sc, k)
    rsc = replay_scenario(sc)
    popu = res.population
    exo, noise = replay_inputs(rsc, k, popu.price_start)
    from cascade.model.population import venue_tables

    _, rules = venue_tables(rsc)
    prm, iprm = parameters(rsc, rules.liquidation_fee_rate, False, rules.liquidate_on_equal)
    ref = naive.run(popu, exo, noise, prm, iprm, rsc.venue.insurance_fund_usd)
    rec = res.records
    got = {int(r["pos"]): (int(r["kind"]), int(r["trigger_step"])) for r in rec}
    assert got == {i: (v[0], v[1]) for i, v in ref["closed"].items()}
    assert any(v[0] == naive.STOP for v in ref["closed"].values())
    np.testing.assert_allclose(res.steps["last_price"], ref["last"], rtol=1e-10)


def test_replay_cli(tmp_path, capsys):
    scen = tmp_path / "s.toml"
    scen.write_text(
        "[scenario]\nname='t'\nstart=2025-10-10T20:00:00Z\nend=2025-10-10T20:40:00Z\nseed=1\n"
        "[venue]\nname='binance'\nsymbol='BTCUSDT'\n"
        "[population]\npositions=5000\nopen_interest_usd=4e8\nlong_share=0.6\n"
        "entry_lookback_h=6.0\nentry_age_mean_h=2.0\n"
        "history=[[2025-10-10T08:00:00Z,109000.0],[2025-10-10T20:00:00Z,110000.0]]\n"
        "[market]\ndepth_usd=12e6\n")
    kfile = tmp_path / "k.csv"
    write_klines(_drop_klines(), kfile)
    out = tmp_path / "out"
    rc = main(["replay", str(scen), "--klines", str(kfile), "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "replay of" in printed and "liquidated" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "replay" and summary["liquidated_long_usd"] > 0
    assert (out / "waterfall.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("open_time,", "opentime,", 1), "open_time"),
    (lambda text: "\n".join(text.splitlines()[:10] + text.splitlines()[12:]), "line"),
])
def test_replay_cli_bad_klines(tmp_path, capsys, edit, message):
    kfile = tmp_path / "k.csv"
    write_klines(_drop_klines(), kfile)
    kfile.write_text(edit(kfile.read_text()))
    rc = main(["replay", "scenarios/demo.toml", "--klines", str(kfile), "--quiet",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(kfile) in err and message in err
    assert "Traceback" not in err


def test_replay_cli_klines_not_covering_the_window(tmp_path, capsys):
    kfile = tmp_path / "k.csv"
    write_klines(_drop_klines(), kfile)  # 20:00-20:40, demo runs 20:00-22:00
    rc = main(["replay", "scenarios/demo.toml", "--klines", str(kfile), "--quiet",
               "--positions", "2000", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "outside the kline data" in err and str(kfile) in err
