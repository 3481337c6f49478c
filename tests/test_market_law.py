"""Issue 15: one shared market law. ``extends`` (chains, loops, errors), the scale-free law
(depth from open interest, dip buying and flows as shares), the shared BTC law and the two
historical scenarios that take it, and populations without walls of triggers under the start."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from cascade.errors import CascadeError
from cascade.model.market import dip_buying_usd, exogenous_flow
from cascade.model.scenario import SCHEMA, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
LAW = SCENARIOS / "markets" / "btc-perp.toml"

SCENARIO = """\
{extends}
[scenario]
name = "small"
start = 2025-10-10T20:00:00Z
end = 2025-10-10T21:00:00Z

[population]
open_interest_usd = 1e9
history = [[2025-10-07T20:00:00Z, 100000.0], [2025-10-10T20:00:00Z, 100000.0]]
{market}
[[flows]]
start = 2025-10-10T20:10:00Z
duration_min = 2.0
oi_share_per_min = 0.001
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def scenario(tmp_path, extends="markets/law.toml", market="") -> Path:
    ext = f'extends = "{extends}"' if extends else ""
    return write(tmp_path, "s.toml", SCENARIO.format(extends=ext, market=market))


# --- extends -----------------------------------------------------------------------------------

def test_extends_takes_the_shared_law_and_overrides_key_by_key(tmp_path):
    write(tmp_path, "markets/law.toml", "[market]\nimpact_exponent = 0.6\n"
          "permanent_share = 0.2\ndepth_oi_ratio = 0.004\n")
    sc = load_scenario(scenario(tmp_path, market="[market]\npermanent_share = 0.4\n"))
    assert sc.market.impact_exponent == 0.6           # from the shared file
    assert sc.market.permanent_share == 0.4           # the scenario's own key wins
    assert sc.market.depth_usd == pytest.approx(4e6)  # 0.004 x $1B, no depth_usd in the event
    assert sc.extends == (tmp_path / "markets/law.toml",)
    assert sc.law_overrides == ("permanent_share",)
    assert "extends" not in sc.raw and sc.raw["market"]["impact_exponent"] == 0.6
    # overrides keep the provenance
    sc2 = sc.with_overrides(**{"population.positions": 10})
    assert sc2.extends == sc.extends and sc2.market.impact_exponent == 0.6


def test_extends_chain_nearest_file_wins(tmp_path):
    write(tmp_path, "markets/base.toml", "[market]\nimpact_exponent = 0.5\nresilience_half_life_s "
          "= 300.0\n")
    write(tmp_path, "markets/law.toml", 'extends = "base.toml"\n[market]\nimpact_exponent = 0.7\n')
    sc = load_scenario(scenario(tmp_path))
    assert sc.market.impact_exponent == 0.7 and sc.market.resilience_half_life_s == 300.0
    assert [p.name for p in sc.extends] == ["law.toml", "base.toml"]


def test_digest_covers_the_resolved_law(tmp_path):
    law = write(tmp_path, "markets/law.toml", "[market]\nimpact_exponent = 0.6\n")
    path = scenario(tmp_path)
    d1 = load_scenario(path).digest
    law.write_text("[market]\nimpact_exponent = 0.65\n", encoding="utf-8")
    d2 = load_scenario(path).digest
    assert d1 != d2  # the scenario file did not change, the law did
    # the same law written into the scenario itself gives the same digest as through extends
    inline = write(tmp_path, "inline.toml", SCENARIO.format(
        extends="", market="[market]\nimpact_exponent = 0.65\n"))
    assert load_scenario(inline).digest == d2


@pytest.mark.parametrize("files, extends, expect", [
    ({}, "markets/none.toml", ["s.toml: extends", "'markets/none.toml'", "not found"]),
    ({"markets/law.toml": 'extends = "other.toml"\n[market]\n',
      "markets/other.toml": 'extends = "law.toml"\n[market]\n'},
     "markets/law.toml", ["other.toml: extends", "'law.toml'", "closes a loop"]),
    ({"markets/law.toml": 'extends = "law.toml"\n'}, "markets/law.toml",
     ["law.toml: extends", "closes a loop"]),
    ({"markets/law.toml": "[market]\ndepht_oi_ratio = 0.01\n"}, "markets/law.toml",
     ["law.toml: [market] unknown key 'depht_oi_ratio'", "depth_oi_ratio"]),
    ({"markets/law.toml": "[market]\nimpact_exponent = 0.5\n[population]\nlong_share = 0.5\n"},
     "markets/law.toml", ["law.toml: [population]", "expected only a [market] table"]),
    ({"markets/law.toml": "[market]\nimpact_exponent = 1.5\n"}, "markets/law.toml",
     ["law.toml: [market] impact_exponent", "<= 1", "got 1.5"]),
    ({"markets/law.toml": '[market]\ndepth_oi_ratio = "0.3%"\n'}, "markets/law.toml",
     ["law.toml: [market] depth_oi_ratio", "expected a number", "got '0.3%'"]),
    ({"markets/law.toml": "[market\n"}, "markets/law.toml", ["law.toml: not valid TOML"]),
    ({}, 5, ["s.toml: extends", "expected a path", "got 5"]),
])
def test_extends_errors_name_the_file_and_the_key(tmp_path, files, extends, expect):
    for name, text in files.items():
        write(tmp_path, name, text)
    if isinstance(extends, str):
        path = scenario(tmp_path, extends=extends)
    else:
        path = write(tmp_path, "s.toml", f"extends = {extends}\n" + SCENARIO.format(
            extends="", market=""))
    with pytest.raises(CascadeError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert "\n" not in msg
    for part in expect:
        assert part in msg, (part, msg)


def test_extends_error_exits_2_on_the_command_line(tmp_path):
    import subprocess

    path = scenario(tmp_path, extends="markets/none.toml")
    out = subprocess.run([sys.executable, "-m", "cascade.cli", "run", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "extends" in out.stderr and "none.toml" in out.stderr


# --- a scale-free law --------------------------------------------------------------------------

def _small(tmp_path, oi: float, law="") -> object:
    text = SCENARIO.format(extends="", market="[market]\ndepth_oi_ratio = 0.005\n"
                           "dip_buy_depth_share_per_pct = 0.02\ndip_buy_max_depth_share = 0.3\n"
                           + law)
    return parse_scenario(tomllib.loads(text.replace("open_interest_usd = 1e9",
                                                     f"open_interest_usd = {oi}")))


def test_usd_quantities_scale_with_open_interest(tmp_path):
    a, b = _small(tmp_path, 2e9), _small(tmp_path, 1e9)
    assert a.market.depth_usd == pytest.approx(2 * b.market.depth_usd)
    assert np.allclose(dip_buying_usd(a.market), 2 * np.asarray(dip_buying_usd(b.market)))
    assert np.allclose(exogenous_flow(a), 2 * exogenous_flow(b))
    assert exogenous_flow(b).sum() == pytest.approx(-0.001 * 1e9 * 2.0)  # 2 min at 0.1% of OI


def test_legacy_absolute_dip_buying_still_works():
    demo = load_scenario(SCENARIOS / "demo.toml")
    assert dip_buying_usd(demo.market) == (150_000.0, 2_000_000.0)


def test_a_half_size_market_follows_the_same_path(tmp_path):
    """Same law, same shares: a market with half the open interest (and so half the depth, dip
    buying and shock) moves by the same percentages, step by step. Feedback off: the positions
    are not scale-free (bracket tables are in USD, exchange rules), the market law is."""
    from cascade.runner import run

    law = ("impact_exponent = 0.7\nvolatility_annual_pct = 30.0\nmark_window_s = 1.0\n"
           "dip_buy_threshold_pct = 0.5\n")
    res = [run(_small(tmp_path, oi, law), positions=3000, seed=5, feedback=False)
           for oi in (2e9, 1e9)]
    a, b = (r.steps for r in res)
    assert res[0].summary["max_drawdown_pct"] > 0.5
    assert np.allclose(a["last_price"], b["last_price"], rtol=1e-9)
    assert (a["dip_flow_usd"] > 0).any()
    assert np.allclose(a["dip_flow_usd"], 2 * b["dip_flow_usd"], rtol=1e-9)
    assert np.allclose(a["exo_flow_usd"], 2 * b["exo_flow_usd"], rtol=1e-9)


# --- the shared BTC law and the two events -----------------------------------------------------

def test_btc_law_holds_only_market_keys_each_with_an_anchor():
    doc = tomllib.loads(LAW.read_text(encoding="utf-8"))
    assert set(doc) == {"market"}
    assert set(doc["market"]) <= set(SCHEMA["market"])
    assert "depth_usd" not in doc["market"]  # depth is a ratio to open interest in the law
    text = LAW.read_text(encoding="utf-8")
    assert "Donier" in text and "0.875" in text and "244M" in text and "110x" in text
    for key in ("dip_buy_usd_per_s_per_pct", "dip_buy_max_usd_per_s"):
        assert key not in doc["market"]  # no absolute USD in the shared law


@pytest.mark.parametrize("name", ["oct2025", "feb2026"])
def test_historical_scenarios_share_the_law_and_override_none_of_it(name):
    raw = tomllib.loads((SCENARIOS / f"{name}.toml").read_text(encoding="utf-8"))
    assert raw["extends"] == "markets/btc-perp.toml"
    assert "market" not in raw  # no override, no cited depth either: the law's ratio applies
    assert all("usd_per_min" not in f and f["oi_share_per_min"] > 0 for f in raw["flows"])
    assert not any(f.get("label") == "panic" for f in raw["flows"])
    sc = load_scenario(SCENARIOS / f"{name}.toml")
    assert sc.law_overrides == () and sc.extends == (LAW,)
    law = tomllib.loads(LAW.read_text(encoding="utf-8"))["market"]
    for key, value in law.items():
        assert getattr(sc.market, key) == value
    assert sc.market.depth_usd == pytest.approx(law["depth_oi_ratio"]
                                                * sc.population.open_interest_usd)


# --- no wall of triggers under the start price -------------------------------------------------

WALL = """\
[scenario]
name = "wall"
start = 2025-10-10T20:00:00Z
end = 2025-10-10T21:00:00Z
[population]
positions = 60000
open_interest_usd = 1e9
long_share = 0.6
leverages = [2, 5, 10, 20, 50, 100]
leverage_weights = [0.3, 0.3, 0.2, 0.1, 0.07, 0.03]
size_tail_index = 4.0
max_notional_share = 0.001
entry_lookback_h = 72.0
history = [[2025-10-07T20:00:00Z, {p:.1f}], [2025-10-10T19:00:00Z, {p:.1f}],
           [2025-10-10T20:00:00Z, 100000.0]]
[market]
depth_usd = 1e7
"""


def _near_far(popu) -> float:
    """Count density of 20x-and-above long liquidation prices 0-1% under the start price, over
    their mean density per 1% from 1% to 10% under it."""
    a = popu.n_ladder
    sel = (popu.side[:a] == 1) & (popu.leverage[:a] >= 20)
    d = (1.0 - popu.lp[:a][sel] / popu.price_start) * 100.0
    near = np.count_nonzero((d >= 0) & (d < 1))
    far = np.count_nonzero((d >= 1) & (d < 10)) / 9.0
    return near / far


@pytest.mark.parametrize("lev", [20, 50])
def test_no_wall_of_triggers_under_the_start_price(lev):
    """Three days flat, then a drop of 1/leverage in the last hour: the drawn path would leave
    that leverage's whole ladder of longs just under the start price (the density near the start
    was 2.7-4.1x the density further down at 20x before the fix); paths that the smooth history
    stands for would have liquidated most of them."""
    from cascade.model.population import build_population

    p_flat = 100000.0 / (1.0 - 1.0 / lev + 0.004) + 150.0
    sc = parse_scenario(tomllib.loads(WALL.format(p=p_flat)))
    for seed in (1, 2, 3):
        popu = build_population(sc, seed=seed)
        assert _near_far(popu) <= 1.5, seed


@pytest.mark.parametrize("lev", [20, 50])
def test_no_wall_with_several_history_paths(lev):
    """Each position must have survived its own history path: with 8 paths there is no wall
    either."""
    from cascade.model.population import build_population

    p_flat = 100000.0 / (1.0 - 1.0 / lev + 0.004) + 150.0
    raw = tomllib.loads(WALL.format(p=p_flat))
    raw["population"]["history_paths"] = 8
    sc = parse_scenario(raw)
    for seed in (1, 2):
        assert _near_far(build_population(sc, seed=seed)) <= 1.5, seed


def _map(sc, seed, bins):
    from cascade.model.population import build_population

    popu = build_population(sc, seed=seed, sort=False)
    a = popu.n_ladder
    long = popu.side[:a] == 1
    h, _ = np.histogram(popu.lp[:a][long], bins=bins,
                        weights=(popu.qty[:a] * popu.entry[:a])[long])
    return h / h.sum()


def test_history_paths_one_is_the_single_path_and_more_paths_smooth_the_map():
    """history_paths = 1 is the one bridge of earlier versions; with 16 the liquidation map of a
    seed varies less from seed to seed (it stands for the paths the waypoints allow)."""
    from cascade.model.history import history_grid
    from cascade.model.population import build_population

    raw = tomllib.loads(WALL.format(p=104000.0))
    raw["population"].update(positions=20000, size_tail_index=4.0)
    one = parse_scenario(raw)
    raw["population"]["history_paths"] = 1
    explicit = parse_scenario(raw)
    a, b = build_population(one, seed=5), build_population(explicit, seed=5)
    assert np.array_equal(a.lp, b.lp) and np.array_equal(a.entry, b.entry)
    assert not np.array_equal(history_grid(one, 5, path=0)[1], history_grid(one, 5, path=1)[1])
    raw["population"]["history_paths"] = 16
    many = parse_scenario(raw)
    bins = np.linspace(80000, 100000, 21)
    spread = {}
    for name, sc in (("one", one), ("many", many)):
        maps = np.array([_map(sc, seed, bins) for seed in range(6)])
        spread[name] = float(np.mean(np.std(maps, axis=0)))
    assert spread["many"] < 0.7 * spread["one"], spread


def test_history_variance_adds_each_segments_move():
    from cascade.model.history import SECONDS_PER_YEAR, history_variance

    sc = parse_scenario(tomllib.loads(WALL.format(p=105000.0)))
    v = history_variance(sc)
    base = 0.40 ** 2 / SECONDS_PER_YEAR  # the schema's default background volatility
    assert v[-1] == 0.0
    assert v[0] == pytest.approx(base * 72 * 3600 + np.log(105000 / 100000) ** 2, rel=1e-9)
    assert np.all(np.diff(v) <= 0)


# --- calm when nothing happens -----------------------------------------------------------------

CALM = """\
[scenario]
name = "calm"
start = 2025-10-10T12:00:00Z
end = 2025-10-10T18:00:00Z
seed = 11
[population]
positions = 4000
open_interest_usd = 5e9
long_share = 0.6
# leverage mix and stops as October's (the schema's default mix, 10% of positions at 50-100x, is not
# calm with any depth we tried: see the module's report in the README)
leverages = [2, 3, 4, 7, 10, 20, 50, 100]
leverage_weights = [0.36, 0.22, 0.20, 0.10, 0.09, 0.02, 0.008, 0.002]
size_tail_index = 2.0
max_notional_share = 0.005
stop_loss_share = 0.02
stop_loss_distance_pct = [3.0, 12.0]
history = [[2025-10-07T00:00:00Z, 101000.0], [2025-10-09T00:00:00Z, 103000.0],
           [2025-10-10T12:00:00Z, 100000.0]]
{market}
[[flows]]
start = 2025-10-10T13:00:00Z
duration_min = 10.0
oi_share_per_min = 0.002
"""


def test_default_law_is_calm_without_flows():
    """The schema's default [market] values (the shared law), no flows: three seeds stay calm.
    The flow in the file is removed by the check."""
    from cascade.analysis.calm import calm_check

    sc = parse_scenario(tomllib.loads(CALM.format(market="")))
    report = calm_check(sc, seeds=3)
    assert report.passed, report.table()
    assert all(s.drawdown_no_feedback_pct > 0 for s in report.seeds)


def test_shared_law_is_calm_without_flows():
    """The fitted shared law (scenarios/markets/btc-perp.toml, through ``extends``), no flows:
    three seeds stay calm; the same market with its 10-minute shock (the flow in the file) falls
    further than any calm seed, so the law does move when something happens."""
    from cascade.analysis.calm import calm_check
    from cascade.runner import run

    law = ROOT / "scenarios" / "markets" / "btc-perp.toml"
    text = f'extends = "{law.as_posix()}"\n' + CALM.format(market="")
    sc = parse_scenario(tomllib.loads(text), base_dir=ROOT)
    assert sc.market.depth_liq_threshold > 0 and sc.market.news_permanent_share == 1.0
    report = calm_check(sc, seeds=3)
    assert report.passed, report.table()
    res = run(sc, seed=11)
    assert res.summary["max_drawdown_pct"] > max(s.drawdown_pct for s in report.seeds)


def test_calm_check_fails_a_market_that_cascades_on_its_own():
    from cascade.analysis.calm import calm_check

    thin = "[market]\ndepth_oi_ratio = 0.001\nimpact_exponent = 1.0\nvolatility_annual_pct = 80.0\n"
    sc = parse_scenario(tomllib.loads(CALM.format(market=thin)))
    report = calm_check(sc, seeds=2)
    assert not report.passed
    assert max(s.liquidated_share for s in report.seeds) > 0.01 or \
        max(s.drawdown_ratio for s in report.seeds) > 1.25


def test_validate_no_flows_on_the_command_line(tmp_path):
    import json
    import subprocess

    path = write(tmp_path, "calm.toml", CALM.format(market=""))
    out = subprocess.run([sys.executable, "-m", "cascade.cli", "validate", str(path),
                          "--no-flows", "--seeds", "2", "--seed-start", "7", "--positions",
                          "2000", "--workers", "1", "--json", "--quiet"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["passed"] and data["positions"] == 2000
    assert [s["seed"] for s in data["seeds"]] == [7, 8]


def _news_run(reference: str, usd_per_min: float, news_permanent_share: float = 1.0):
    """The small scenario, feedback off, one 20-minute sell flow of ``usd_per_min`` against
    counter-trend traders as strong as the shared law's (6% of the depth a second per %, capped
    at half of it), 3% from their ``reference``: (drop at the end in %, their flow in USD)."""
    import datetime as dt

    from cascade.runner import run
    from tests.conftest import START, make_scenario

    sc = make_scenario(**{
        "market.dip_buy_reference": reference, "market.news_permanent_share": news_permanent_share,
        "market.permanent_share": 0.1, "market.dip_buy_usd_per_s_per_pct": 0.06 * 12e6,
        "market.dip_buy_max_usd_per_s": 0.5 * 12e6, "engine.feedback": False,
        "flows": [{"start": START + dt.timedelta(minutes=2), "duration_min": 20.0,
                   "usd_per_min": usd_per_min, "side": "sell", "label": "news"}]})
    steps = run(sc, seed=3).steps
    p = steps["last_price"]
    return 100.0 * (1.0 - p.iloc[-1] / p.iloc[0]), float(steps["dip_flow_usd"].sum())


def test_counter_trend_against_the_average_is_a_wall_and_against_the_fair_price_is_not():
    """Round 6 (docs/calibration/README.md): against the slow average the counter-trend bid
    outgrows any news flow, so three times the selling barely moves the price further; against
    the fair price (the price less its transient impact) news passes and the bid stays out."""
    avg1, avg_dip1 = _news_run("average", 20e6)
    avg3, _ = _news_run("average", 60e6)
    fair1, fair_dip1 = _news_run("fair", 20e6)
    fair3, fair_dip3 = _news_run("fair", 60e6)
    assert avg_dip1 > 0 and avg3 < 1.3 * avg1  # the wall: 4.1% and 4.6%
    assert fair_dip1 == fair_dip3 == 0.0  # news leaves no dislocation to buy
    assert fair3 > 1.8 * fair1 and fair1 > 2 * avg1  # 10.8% and 21.5%


def test_fair_price_buyers_lean_against_uninformed_selling():
    """The same flow, but uninformed (its impact decays): it dislocates the price from the fair
    one and the counter-trend traders buy it."""
    _, dip = _news_run("fair", 60e6, news_permanent_share=0.0)
    assert dip > 0


def _october_with_one_shock(oi_share_per_min: float):
    """October's scenario and the shared law, its flows replaced by one sell shock of
    ``oi_share_per_min`` for 180 minutes from 20:50 (docs/calibration/round6_shock_response.py):
    the end price relative to the 20:50 price, in %."""
    import copy
    import datetime as dt

    from cascade.runner import run

    sc = load_scenario(SCENARIOS / "oct2025.toml")
    raw = copy.deepcopy(sc.raw)
    start = dt.datetime(2025, 10, 10, 20, 50, tzinfo=dt.timezone.utc)
    raw["flows"] = [{"label": "shock", "start": start, "duration_min": 180.0,
                     "oi_share_per_min": oi_share_per_min, "side": "sell"}]
    sc = parse_scenario(raw, source=str(sc.path), base_dir=sc.path.parent, path=sc.path)
    price = run(sc, positions=20_000, seed=1).steps["last_price"]
    return 100.0 * (float(price.iloc[-1]) / float(price.loc[:start].iloc[-1]) - 1.0)


def test_the_shared_law_lets_more_selling_take_the_price_further():
    """Issue 15, round 6: under round 5's law 18% and 72% of open interest sold over three hours
    both ended about 10% down (the counter-trend bid was a wall); the shared law must let four
    times the selling take the price much further (round 6: -12% and -29% at 300,000 positions)."""
    end_18 = _october_with_one_shock(0.001)
    end_72 = _october_with_one_shock(0.004)
    assert end_72 < end_18 - 10.0
    assert end_72 < -20.0
