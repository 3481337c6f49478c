"""`cascade calibrate`: the miss function, parameter parsing and its errors, serial = parallel,
recovery of a parameter from a synthetic event made by the engine itself, and the files."""

from __future__ import annotations

import datetime as dt
import json
import sys

import pandas as pd
import pytest

from cascade.analysis import calibrate as C
from cascade.analysis import targets as T
from cascade.cli import main
from cascade.errors import CascadeError
from cascade.model.scenario import parse_scenario

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TRUE_DEPTH = 12e6


def _target(**kw):
    return T.parse_target("t", {"source": "s", **kw}, "f.toml")


def test_miss_is_zero_inside_and_scaled_outside():
    band = _target(metric="price_low", min=100.0, max=110.0)
    assert C.miss(band, 105.0) == 0.0 and C.miss(band, 100.0) == 0.0
    assert C.miss(band, 95.0) == pytest.approx(0.5) and C.miss(band, 130.0) == pytest.approx(1.0)  # capped
    tol = _target(metric="price_low", value=100.0, tolerance_pct=3.0)  # band 97..103, width 6
    assert C.miss(tol, 94.0) == pytest.approx(0.5) and C.miss(tol, 101.0) == 0.0
    low = _target(metric="liquidated_usd", min=4e9)
    assert C.miss(low, 2e9) == pytest.approx(0.5) and C.miss(low, 5e9) == 0.0
    high = _target(metric="oi_change_pct", max=-10.0)
    assert C.miss(high, -5.0) == pytest.approx(0.5)
    assert C.miss(band, None) == 1.0 and C.miss(band, float("nan")) == 1.0
    when = _target(metric="time_of_low", min="2025-10-10T21:00:00Z", max="2025-10-10T21:30:00Z")
    assert C.miss(when, pd.Timestamp("2025-10-10 22:00", tz="UTC")) == pytest.approx(1.0)
    after = _target(metric="time_of_low", min="2025-10-10T21:00:00Z")
    assert C.miss(after, pd.Timestamp("2025-10-10 20:30", tz="UTC")) == pytest.approx(0.5)


def test_margin_use_is_zero_in_the_middle_and_one_at_a_bound():
    band = _target(metric="price_low", min=100.0, max=110.0)
    assert C.margin_use(band, 105.0) == 0.0 and C.margin_use(band, 110.0) == 1.0
    assert C.margin_use(band, 102.5) == pytest.approx(0.5)
    assert C.margin_use(band, 95.0) == 1.0 and C.margin_use(band, None) == 1.0
    low = _target(metric="liquidated_usd", min=4e9)  # one-sided: scale |bound|
    assert C.margin_use(low, 5e9) == pytest.approx(0.75) and C.margin_use(low, 9e9) == 0.0
    high = _target(metric="path_rmse_pct", max=2.0)
    assert C.margin_use(high, 1.5) == pytest.approx(0.75) and C.margin_use(high, 0.0) == 0.0
    when = _target(metric="time_of_low", min="2025-10-10T21:00:00Z", max="2025-10-10T21:30:00Z")
    assert C.margin_use(when, pd.Timestamp("2025-10-10 21:15", tz="UTC")) == 0.0
    assert C.margin_use(when, pd.Timestamp("2025-10-10 21:24", tz="UTC")) == pytest.approx(0.6)
    after = _target(metric="time_of_low", min="2025-10-10T21:00:00Z")  # 60-minute scale
    assert C.margin_use(after, pd.Timestamp("2025-10-10 21:15", tz="UTC")) == pytest.approx(0.75)
    # the objective: misses plus the weight times margin use, summed over targets and seeds
    ev = C.Event(scenario=None, targets=[band], seeds=[1, 2], reference=None, skipped={})
    values = [{"t": [105.0, 95.0]}]
    assert C.objective_value([ev], values, 0.0) == pytest.approx(0.5)
    assert C.objective_value([ev], values, 0.1) == pytest.approx(0.5 + 0.1 * (0.0 + 1.0))


@pytest.mark.parametrize("text, expected", [
    ("market.depth", "--params 'market.depth': unknown key 'depth' in [market]; expected one of: "
                     "depth_usd"),
    ("depth_usd", "--params 'depth_usd': expected a key 'section.key' of one of the tables"),
    ("flows.usd_per_min", "--params 'flows.usd_per_min': expected a key 'section.key'"),
    ("market.impact_exponent=0.9:0.4", "--params 'market.impact_exponent=0.9:0.4': expected a "
                                       "range LOW:HIGH of two numbers with LOW < HIGH, got "
                                       "'0.9:0.4'"),
    ("market.impact_exponent=a:b", "expected a range LOW:HIGH of two numbers"),
    ("market.impact_exponent=0.5", "expected a range LOW:HIGH"),
    ("market.impact_exponent=0.2:1.5", "expected a range inside the schema's for "
                                       "market.impact_exponent (a number, > 0 and <= 1), got "
                                       "'0.2:1.5'"),
    ("market.permanent_share,market.permanent_share", "market.permanent_share is given twice"),
    ("engine.max_iterations", "expected a key holding a number (a float key), but "
                              "engine.max_iterations is an integer"),
    ("market.impact_exponent,", "expected KEY or KEY=LOW:HIGH items separated by commas"),
])
def test_bad_params_name_the_argument(text, expected):
    with pytest.raises(CascadeError) as err:
        C.parse_params(text)
    assert expected in str(err.value) and str(err.value).startswith("--params")


def test_a_key_without_an_upper_bound_needs_a_range(monkeypatch):
    import dataclasses

    from cascade.model import scenario as S

    market = dict(S.SCHEMA["market"])
    market["depth_usd"] = dataclasses.replace(market["depth_usd"], hi=None)
    monkeypatch.setitem(S.SCHEMA, "market", market)
    with pytest.raises(CascadeError, match=r"--params 'market.depth_usd': the schema gives "
                                           r"market.depth_usd no upper bound \(a number, > 0\); "
                                           r"expected market.depth_usd=LOW:HIGH"):
        C.parse_params("market.depth_usd")
    assert C.parse_params("market.depth_usd=1e8:2e8")[0].hi == 2e8


def test_params_take_the_schema_bounds_or_the_given_range():
    a, b, c = C.parse_params("market.permanent_share, market.impact_exponent,"
                             "market.depth_usd=1e8:4e8")
    assert (a.key, a.lo, a.hi) == ("market.permanent_share", 0.0, 1.0)
    assert b.key == "market.impact_exponent" and 0.0 < b.lo < 1e-5 and b.hi == 1.0  # (0, 1]
    assert (c.lo, c.hi) == (1e8, 4e8)


def _event(small, depth=25e6):
    """The synthetic event: the engine's own run at depth TRUE_DEPTH gives the targets (low
    within 0.3%, liquidations within 10%); the scenario itself starts at ``depth``."""
    from cascade.runner import run

    base = small.with_overrides(**{"scenario.end": small.scenario.start + dt.timedelta(minutes=30),
                                   "population.positions": 1500})
    truth = run(base.with_overrides(**{"market.depth_usd": TRUE_DEPTH}))
    raw = {**base.raw, "market": {**base.raw["market"], "depth_usd": depth}, "targets": {
        "low": {"metric": "price_low", "value": T.price_low(truth.steps), "tolerance_pct": 0.3,
                "source": "synthetic: the engine at depth 12M"},
        "liq": {"metric": "liquidated_usd", "value": T.liquidated_usd(truth.steps),
                "tolerance_pct": 10.0, "source": "synthetic: the engine at depth 12M"}}}
    return parse_scenario(raw, source="<synthetic>")


def test_calibrate_recovers_the_depth_of_a_synthetic_event(small):
    ev = _event(small)
    lines = []
    fit = C.calibrate([ev], C.parse_params("market.depth_usd=4e6:4e7"), seeds=1, maxiter=8,
                      popsize=6, log=lines.append)
    assert fit.start == {"market.depth_usd": 25e6} and fit.start_objective > 1.0
    assert fit.misses == 0.0 and 0.0 <= fit.objective <= C.MARGIN_WEIGHT * 2
    assert fit.fitted["market.depth_usd"] == pytest.approx(TRUE_DEPTH, rel=0.1)
    assert lines[0].startswith("note: 1 seed(s) per event: a fit on few seeds follows their "
                               "noise") and "use --seeds 20 or more" in lines[0]
    assert lines[1].startswith("  parameter set 1: objective") and "=2.5e+07" in lines[1]
    assert lines[2].startswith("start: objective")
    gens = [ln for ln in lines if ln.startswith("generation ")]
    assert gens and gens[0].startswith("generation 1/8: best objective")
    assert len([ln for ln in lines if ln.startswith("  parameter set")]) == fit.evaluations
    # deterministic: the same call gives the same fit
    again = C.calibrate([ev], C.parse_params("market.depth_usd=4e6:4e7"), seeds=1, maxiter=8,
                        popsize=6)
    assert again.fitted == fit.fitted and again.evaluations == fit.evaluations
    # the objective at the fit is evaluate_params' value there
    assert C.evaluate_params([ev], fit.fitted, 1) == pytest.approx(fit.objective)
    assert C.evaluate_params([ev], fit.fitted, 1, margin_weight=0.0) == 0.0
    assert C.evaluate_params([ev], {"market.depth_usd": 25e6}, 1) == pytest.approx(
        fit.start_objective)


def test_parallel_evaluation_equals_serial(small):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ev = _event(small)
    serial = C.evaluate_params([ev], {"market.depth_usd": 9e6}, 2)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        parallel = C.evaluate_params([ev], {"market.depth_usd": 9e6}, 2, executor=ex)
    assert serial == parallel > 0


def _write_toml(raw: dict, path) -> None:
    lines = []
    for section, table in raw.items():
        rows = table if isinstance(table, list) else [table]
        for row in rows:
            if section == "targets":
                for name, t in row.items():
                    lines.append(f"[targets.{name}]")
                    lines += [f"{k} = {C._toml_value(v)}" for k, v in t.items()]
                continue
            lines.append(f"[[{section}]]" if isinstance(table, list) else f"[{section}]")
            lines += [f"{k} = {C._toml_value(v)}" for k, v in row.items()]
    path.write_text("\n".join(lines) + "\n")


def test_calibrate_cli_writes_the_law_and_the_fit_table(small, tmp_path, capsys):
    ev = _event(small)
    scen = tmp_path / "synthetic.toml"
    _write_toml(ev.raw, scen)
    out = tmp_path / "fit"
    rc = main(["calibrate", str(scen), "--params", "market.depth_usd=4e6:4e7", "--seeds", "1",
               "--maxiter", "8", "--popsize", "6", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| small | low | price_low |" in text
    law = (out / "market.toml").read_text()
    assert law.startswith("# Fitted by `cascade ") and "(target misses 0 " in law
    doc = tomllib.loads(law)
    assert list(doc) == ["market"]  # only the [market] table, as the shared law file
    from cascade.model.scenario import SCHEMA

    assert set(doc["market"]) <= set(SCHEMA["market"])  # usable as an `extends` file as written
    assert doc["market"]["depth_usd"] == pytest.approx(TRUE_DEPTH, rel=0.1)
    assert doc["market"]["impact_exponent"] == ev.market.impact_exponent  # unfitted, shared
    fit = json.loads((out / "fit.json").read_text())
    assert fit["misses"] == 0.0 and fit["params"][0]["key"] == "market.depth_usd"
    assert 0.0 <= fit["objective"] <= 2 * C.MARGIN_WEIGHT and fit["margin_weight"] == C.MARGIN_WEIGHT
    assert {r["target"] for r in fit["targets"]} == {"low", "liq"}
    assert all(r["miss"] == 0.0 and r["n_pass"] == 1 for r in fit["targets"])
    assert "| parameter | bounds | start | fitted |" in (out / "fit.md").read_text()
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary file


def test_calibrate_cli_bad_input_exits_2(small, tmp_path, capsys):
    ev = _event(small)
    scen = tmp_path / "synthetic.toml"
    _write_toml(ev.raw, scen)
    assert main(["calibrate", str(scen), "--params", "market.nope", "--quiet",
                 "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().startswith(
        "cascade: error: --params 'market.nope': unknown key 'nope' in [market]")
    assert main(["calibrate", str(scen), "--params", "market.permanent_share=0.8:0.2",
                 "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "expected a range LOW:HIGH of two numbers with LOW < HIGH, got '0.8:0.2'" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's own error: usage, then the message
        main(["calibrate", str(scen), "--params", "market.permanent_share",
              "--margin-weight", "-1", "--quiet", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "argument --margin-weight: expected a number >= 0, got '-1'" in \
        capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "missing.toml"), "--params",
                 "market.permanent_share", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "missing.toml: no such file; expected a scenario .toml file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", str(scen)])  # --params is required
    assert exc.value.code == 2
