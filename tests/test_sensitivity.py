"""`cascade sensitivity`: variants, honesty of the base run, directions, files and CLI errors."""

from __future__ import annotations

import json

import pytest

import cascade.cli
from cascade.analysis.sensitivity import (
    FLOWS_SCALE,
    LEVERAGE_SCALE,
    PARAMS,
    build_variant,
    max_leverage,
    resolve_params,
    sensitivity,
    skip_reason,
)
from cascade.errors import CascadeError
from cascade.model.scenario import SCHEMA
from cascade.runner import run
from tests.conftest import BASE, make_scenario

DEMO = "scenarios/demo.toml"
SELL_ONLY = [BASE["flows"][0]]  # the sell program, without the later squeeze


def _raw_without(sc, section, key):
    raw = {s: (dict(v) if isinstance(v, dict) else v) for s, v in sc.raw.items()}
    raw.get(section, {}).pop(key, None)
    return raw


# --- parameter names -----------------------------------------------------------------------------

def test_default_params_and_subsets():
    assert resolve_params() == list(PARAMS) and len(PARAMS) == 23
    assert FLOWS_SCALE in PARAMS and LEVERAGE_SCALE in PARAMS
    assert resolve_params("market.depth_usd, flows.scale") == ["market.depth_usd", "flows.scale"]
    with pytest.raises(CascadeError) as info:
        resolve_params("market.depth", option="--params")
    msg = str(info.value)
    assert msg.startswith("--params: unknown parameter 'market.depth'")
    assert all(p in msg for p in PARAMS)
    with pytest.raises(CascadeError, match="given twice"):
        resolve_params(["flows.scale", "flows.scale"])
    with pytest.raises(CascadeError, match="got none"):
        resolve_params(" , ")


# --- the variant builder -------------------------------------------------------------------------

def test_plain_key_is_scaled_exactly_and_nothing_else_changes(small):
    for factor, want in ((0.5, 6e6), (1.5, 18e6)):
        v = build_variant(small, "market.depth_usd", factor)
        assert v.scenario.market.depth_usd == want and v.value == want and not v.clipped
        assert _raw_without(v.scenario, "market", "depth_usd") == \
            _raw_without(small, "market", "depth_usd")
    v = build_variant(small, "population.cross_share", 0.5)
    assert v.scenario.population.cross_share == pytest.approx(0.2)
    # a key the scenario leaves at its default is scaled from the default
    v = build_variant(small, "market.depth_liq_sensitivity", 1.5)
    assert v.scenario.market.depth_liq_sensitivity == pytest.approx(
        1.5 * SCHEMA["market"]["depth_liq_sensitivity"].default)


def test_values_outside_the_schema_range_are_clipped(small):
    v = build_variant(small, "population.long_share", 1.5)  # 0.6 -> 0.9: inside
    assert v.value == pytest.approx(0.9) and not v.clipped
    v = build_variant(small, "population.long_share", 1.9)  # 1.14 -> 1
    assert v.scenario.population.long_share == 1.0 and v.clipped
    assert "clipped to 1" in v.note
    v = build_variant(small, "market.impact_exponent", 3.0)  # 1.8 -> 1.0 (schema maximum)
    assert v.scenario.market.impact_exponent == 1.0 and v.clipped


def test_flows_scale_multiplies_every_flow(small):
    v = build_variant(small, FLOWS_SCALE, 1.5)
    assert v.value == 1.5 and not v.clipped
    assert [f.usd_per_min for f in v.scenario.flows] == [9e6, 37.5e6]
    for a, b in zip(v.scenario.flows, small.flows):
        assert (a.start, a.duration_min, a.side, a.label) == (b.start, b.duration_min, b.side,
                                                              b.label)
    assert small.flows[0].usd_per_min == 6e6  # the base scenario is untouched
    assert v.scenario.market == small.market and v.scenario.population == small.population


def test_leverage_scale_clips_to_one_and_the_bracket_maximum(small):
    top = max_leverage(small)
    assert top >= 100
    v = build_variant(small, LEVERAGE_SCALE, 0.5)
    assert v.scenario.population.leverages == [1.5, 5.0, 12.5, 25.0, 50.0] and not v.clipped
    v = build_variant(small, LEVERAGE_SCALE, 0.2)  # 3 x 0.2 = 0.6 -> 1
    assert v.scenario.population.leverages == [1.0, 2.0, 5.0, 10.0, 20.0] and v.clipped
    v = build_variant(small, LEVERAGE_SCALE, 3.0)  # 50 x 3, 100 x 3 -> the bracket maximum
    assert v.scenario.population.leverages == [9.0, 30.0, 75.0, min(150.0, top), top]
    assert v.clipped and f"{top:g}" in v.note
    assert v.scenario.population.leverage_weights == small.population.leverage_weights


def test_zero_values_and_missing_flows_are_skipped(capsys):
    sc = make_scenario(**{"market.depth_liq_sensitivity": 0.0, "flows": []})
    assert "cannot be scaled" in skip_reason(sc, "market.depth_liq_sensitivity")
    assert "flows" in skip_reason(sc, FLOWS_SCALE)
    with pytest.raises(CascadeError, match="cannot be scaled"):
        build_variant(sc, "market.depth_liq_sensitivity", 1.5)
    s = sensitivity(sc, params=["market.depth_liq_sensitivity", FLOWS_SCALE,
                                "market.permanent_share"], positions=500, progress=True)
    assert [r.name for r in s.rows] == ["market.permanent_share"]
    assert [k["name"] for k in s.skipped] == ["market.depth_liq_sensitivity", FLOWS_SCALE]
    assert s.runs == 3
    table = s.table_markdown()
    assert "skipped: value is 0: cannot be scaled" in table
    assert capsys.readouterr().out == ""


# --- the runs ------------------------------------------------------------------------------------

def test_base_run_is_a_plain_run_and_each_variant_its_own_run(small):
    s = sensitivity(small, params=["population.cross_share"], positions=1500, seed=11)
    plain = run(small, positions=1500, seed=11).summary
    plain.pop("timings")
    assert s.base_summary == plain
    assert s.base == {"max_drawdown_pct": plain["max_drawdown_pct"],
                      "liquidated_notional_usd": plain["liquidated_notional_usd"]}
    (row,) = s.rows
    alone = run(build_variant(small, "population.cross_share", 1.5).scenario, positions=1500,
                seed=11).summary
    assert row.high == {"max_drawdown_pct": alone["max_drawdown_pct"],
                        "liquidated_notional_usd": alone["liquidated_notional_usd"]}
    assert (s.seed, s.positions, s.step) == (11, 1500, 0.5)


def test_directions_that_hold_by_construction():
    """Feedback off, one sell program: the price is noise + the flow's impact, so a larger flow
    or a thinner book gives a strictly deeper drawdown."""
    sc = make_scenario(**{"engine.feedback": False, "flows": SELL_ONLY})
    s = sensitivity(sc, params=[FLOWS_SCALE, "market.depth_usd"], positions=1000, step=0.5)
    rows = {r.name: r for r in s.rows}
    dd = "max_drawdown_pct"
    flows, depth = rows[FLOWS_SCALE], rows["market.depth_usd"]
    assert flows.low[dd] < s.base[dd] < flows.high[dd]
    assert depth.high[dd] < s.base[dd] < depth.low[dd]


def test_depth_matters_with_feedback_on(small):
    """Checked on this scenario and seed (not a theorem with feedback): a deeper book does not
    deepen the cascade."""
    s = sensitivity(small, params=["market.depth_usd"], positions=3000, seed=3)
    (row,) = s.rows
    assert row.high["max_drawdown_pct"] <= row.low["max_drawdown_pct"]
    assert row.high["liquidated_notional_usd"] <= row.low["liquidated_notional_usd"]


def test_step_is_checked(small):
    for bad in (0, 1, 1.5, -0.2, float("nan"), "x"):
        with pytest.raises(CascadeError, match="expected a number > 0 and < 1"):
            sensitivity(small, params=["market.depth_usd"], step=bad, positions=100)


# --- table, JSON, chart --------------------------------------------------------------------------

def test_table_dict_and_chart(small, tmp_path):
    from cascade.plots.waterfall import format_usd

    sc = make_scenario(**{"population.long_share": 0.8})
    s = sensitivity(sc, params=["population.long_share", LEVERAGE_SCALE, "market.depth_usd"],
                    positions=800, step=0.4)
    table = s.table_markdown()
    lines = table.splitlines()
    assert lines[2].startswith("| parameter | low | base | high | drawdown low")
    long_row = next(x for x in lines if x.startswith("| `population.long_share`"))
    assert "| 0.48 | 0.8 | 1† |" in long_row  # 0.8 x 1.4 = 1.12, clipped to 1
    assert "† clipped to the schema's range" in table
    depth_row = next(x for x in lines if x.startswith("| `market.depth_usd`"))
    r = next(r for r in s.rows if r.name == "market.depth_usd")
    assert f"${format_usd(r.low['liquidated_notional_usd'])}" in depth_row
    assert f"{r.high['max_drawdown_pct']:.2f}%" in depth_row
    d = json.loads(json.dumps(s.to_dict()))
    assert d["factors"] == [pytest.approx(0.6), pytest.approx(1.4)]
    assert {p["name"] for p in d["parameters"]} == {"population.long_share", LEVERAGE_SCALE,
                                                    "market.depth_usd"}
    swings = [p["swing_drawdown_pct"] for p in d["parameters"]]
    assert swings == sorted(swings, reverse=True)
    png = s.plot(tmp_path / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the command line ----------------------------------------------------------------------------

def cli(argv, capsys):
    try:
        rc = cascade.cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_writes_table_json_and_tornado(tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "sens"
    rc, printed, err = cli(["sensitivity", DEMO, "--positions", "2000", "--seed", "5",
                            "--params", "market.depth_usd,flows.scale", "--out", out,
                            "--quiet"], capsys)
    assert rc == 0, err
    assert "| `market.depth_usd` |" in printed and "| `flows.scale` |" in printed
    for name in ("sensitivity.md", "sensitivity.json", "tornado.png"):
        assert (out / name).exists() and str(out / name) in printed
    assert (out / "sensitivity.md").read_text().startswith("One-at-a-time sensitivity of `demo`")
    doc = json.loads((out / "sensitivity.json").read_text())
    assert doc["seed"] == 5 and doc["positions"] == 2000 and len(doc["parameters"]) == 2
    img = matplotlib.image.imread(out / "tornado.png")
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 1000
    assert not list(out.glob(".*tmp*"))

    rc, printed, err = cli(["sensitivity", DEMO, "--positions", "1000", "--params",
                            "population.stop_loss_share", "--step", "0.25", "--out", out,
                            "--json", "--quiet"], capsys)
    assert rc == 0, err
    doc = json.loads(printed)
    assert doc["step"] == 0.25 and doc["files"]["tornado.png"] == str(out / "tornado.png")
    (p,) = doc["parameters"]
    assert p["low_value"] == pytest.approx(0.06) and p["high_value"] == pytest.approx(0.10)


def test_cli_default_out_folder(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    demo = Path(DEMO).resolve()
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(["sensitivity", demo, "--positions", "500", "--params", "market.depth_floor",
                      "--quiet"], capsys)
    assert rc == 0, err
    assert (tmp_path / "runs" / "demo" / "sensitivity" / "tornado.png").exists()


@pytest.mark.parametrize("extra, needles", [
    (["--params", "depth_usd"], ["--params: unknown parameter 'depth_usd'", "market.depth_usd",
                                 "population.leverage_scale"]),
    (["--params", ""], ["--params:", "got none"]),
    (["--step", "1.5"], ["--step: expected a number > 0 and < 1", "'1.5'"]),
    (["--step", "0"], ["--step: expected a number > 0 and < 1"]),
    (["--step", "abc"], ["--step: expected a number > 0 and < 1", "'abc'"]),
])
def test_cli_bad_params_and_step(extra, needles, tmp_path, capsys):
    out = tmp_path / "o"
    rc, printed, err = cli(["sensitivity", DEMO, "--quiet", "--out", out, *extra], capsys)
    assert rc == 2 and printed == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascade: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists()  # failed before any run
