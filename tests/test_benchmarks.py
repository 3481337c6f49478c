"""The benchmark suite: the naive baseline agrees with the engine; ``python -m benchmarks`` runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks.baseline import simulate_baseline  # noqa: E402
from cascade.engine import KIND_LIQ, KIND_STOP  # noqa: E402
from cascade.model.scenario import parse_scenario  # noqa: E402
from cascade.runner import simulate  # noqa: E402

# A self-contained 30-minute scenario: a sell program, then a larger buy program that squeezes the
# shorts, so both sides are liquidated and stops fire both ways. The small insurance fund runs dry
# with feedback on, so the bad-debt path of the settlement is exercised too.
SCENARIO = """
[scenario]
name = "bench-equivalence"
start = 2025-10-10T20:00:00Z
end = 2025-10-10T20:30:00Z
step_s = 1.0
seed = 7

[venue]
name = "binance"
symbol = "BTCUSDT"
insurance_fund_usd = 1_000_000
liquidation_order = "market"  # the naive baseline walks the book with market orders

[population]
positions = 4_000
open_interest_usd = 8.0e9
long_share = 0.6
leverages = [2, 5, 10, 20, 50, 100]
leverage_weights = [0.3, 0.3, 0.2, 0.1, 0.07, 0.03]
size_tail_index = 1.4
min_notional_usd = 200.0
max_notional_share = 0.01
cross_share = 0.4
cross_spare_margin_mean = 0.8
stop_loss_share = 0.15
stop_loss_distance_pct = [1.0, 5.0]
entry_lookback_h = 48.0
entry_age_mean_h = 16.0
entry_noise_pct = 0.2
history = [
  [2025-10-08T20:00:00Z, 104000.0],
  [2025-10-10T12:00:00Z, 111000.0],
  [2025-10-10T15:00:00Z, 109000.0],
  [2025-10-10T18:00:00Z, 110800.0],
  [2025-10-10T20:00:00Z, 110000.0],
]

[market]
depth_usd = 45_000_000
impact_exponent = 0.6
permanent_share = 0.35
resilience_half_life_s = 300.0
depth_floor = 0.1
depth_vol_sensitivity = 0.5
depth_liq_sensitivity = 0.5
depth_memory_s = 60.0
volatility_annual_pct = 35.0
mark_window_s = 5.0
dip_buy_usd_per_s_per_pct = 150_000
dip_buy_threshold_pct = 2.0
dip_buy_max_usd_per_s = 2_000_000
reference_half_life_s = 1800.0

[engine]
feedback = true
latency_s = 0.0
max_iterations = 20

[[flows]]
label = "sell program"
start = 2025-10-10T20:02:00Z
duration_min = 6.0
usd_per_min = 60_000_000
side = "sell"

[[flows]]
label = "short squeeze"
start = 2025-10-10T20:12:00Z
duration_min = 10.0
usd_per_min = 150_000_000
side = "buy"
"""

BASE = parse_scenario(tomllib.loads(SCENARIO), source="<test_benchmarks>")
HYPERLIQUID = {"venue.name": "hyperliquid", "population.leverages": [2, 5, 10, 20, 40],
               "population.leverage_weights": [0.3, 0.3, 0.2, 0.12, 0.08]}

CASES = {
    "feedback-lat0": {"engine.feedback": True, "engine.latency_s": 0.0},
    "feedback-lat2": {"engine.feedback": True, "engine.latency_s": 2.0},
    "nofeedback-lat0": {"engine.feedback": False, "engine.latency_s": 0.0},
    "nofeedback-lat2": {"engine.feedback": False, "engine.latency_s": 2.0},
    "feedback-iteration-cap": {"engine.feedback": True, "engine.max_iterations": 2},
    "hyperliquid-strict-trigger": {"engine.feedback": True, **HYPERLIQUID},
}


def _by_pos(rec):
    order = np.argsort(rec["pos"], kind="stable")
    return rec[order]


@pytest.mark.parametrize("case", list(CASES))
def test_baseline_matches_engine(case):
    sc = BASE.with_overrides(**CASES[case])
    res = simulate(sc)
    popu = res.population
    base, _ = simulate_baseline(sc, population=popu)

    eng_rec, bl_rec = _by_pos(res.records), _by_pos(base.records)
    # same positions, same kinds, triggered at the same steps
    np.testing.assert_array_equal(eng_rec["pos"], bl_rec["pos"])
    np.testing.assert_array_equal(eng_rec["kind"], bl_rec["kind"])
    np.testing.assert_array_equal(eng_rec["trigger_step"], bl_rec["trigger_step"])
    np.testing.assert_array_equal(np.isnan(eng_rec["fill_price"]), np.isnan(bl_rec["fill_price"]))
    done = ~np.isnan(eng_rec["fill_price"])
    np.testing.assert_allclose(bl_rec["fill_price"][done], eng_rec["fill_price"][done], rtol=1e-9)
    np.testing.assert_allclose(bl_rec["trigger_price"], eng_rec["trigger_price"], rtol=1e-9)
    np.testing.assert_allclose(bl_rec["fund_delta"], eng_rec["fund_delta"], rtol=1e-9, atol=1e-6)

    # the liquidated set itself (population rows), and its kinds
    liq = eng_rec["pos"][(eng_rec["kind"] == KIND_LIQ) & done]
    np.testing.assert_array_equal(np.sort(liq), base.liquidated)

    # per-step price path and per-step sums
    steps = res.steps
    from cascade.engine import COLUMNS

    col = {c: k for k, c in enumerate(COLUMNS)}
    for name in ("last_price", "mark_price", "fill_price"):
        np.testing.assert_allclose(base.out[:, col[name]], steps[name].to_numpy(), rtol=1e-9,
                                   err_msg=name)
    for name in ("liq_long_usd", "liq_short_usd", "stop_usd", "forced_flow_usd",
                 "insurance_fund_usd", "bad_debt_usd", "open_interest_usd"):
        np.testing.assert_allclose(base.out[:, col[name]], steps[name].to_numpy(), rtol=1e-9,
                                   atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(base.out[:, col["liq_count"]], steps["liq_count"].to_numpy())
    np.testing.assert_array_equal(base.out[:, col["iterations"]], steps["iterations"].to_numpy())

    # the scenario does what it is meant to: both sides liquidated, stops on both sides
    side = popu.side[eng_rec["pos"]]
    is_liq = eng_rec["kind"] == KIND_LIQ
    assert np.count_nonzero(is_liq & (side > 0)) > 0
    assert np.count_nonzero(is_liq & (side < 0)) > 0
    assert np.count_nonzero(eng_rec["kind"] == KIND_STOP) > 0
    if case == "feedback-lat0":
        assert res.summary["bad_debt_usd"] > 0  # the fund ran dry: order-dependent settlement
    if case == "feedback-iteration-cap":
        assert res.summary["max_iterations_used"] == 2


def test_config_rejects_window_without_the_flows(tmp_path):
    from benchmarks.suite import Config

    with pytest.raises(SystemExit, match="at least"):
        Config.make(quick=True, steps=600, out=tmp_path)
    cfg = Config.make(quick=True, sizes=[1e3, 5e3], out=tmp_path)
    assert cfg.sizes == [1_000, 5_000] and cfg.baseline_sizes == [1_000]


@pytest.mark.slow
def test_benchmark_runner_quick(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "latest.json").read_text())
    for key in ("meta", "startup", "end_to_end", "october", "memory", "steps_scaling",
                "baseline", "threads", "sweep", "dexsim", "targets"):
        assert key in res, key
        assert not (isinstance(res[key], dict) and "error" in res[key]), res[key]
    meta = res["meta"]
    for key in ("platform", "cpu_model", "cores_available", "numba_threads", "cascade_version",
                "git_commit", "date_utc"):
        assert meta[key] not in (None, ""), key
    assert [r["n_requested"] for r in res["end_to_end"]["rows"]] == [2_000, 20_000]
    assert all(r["step_loop_s"] > 0 for r in res["end_to_end"]["rows"])
    assert [r["n_requested"] for r in res["october"]["rows"]] == [20_000, 50_000]
    assert res["october"]["steps"] == 86_400
    assert all(r["step_loop_ns_per_step"] > 0 and r["settle_s"] > 0
               for r in res["october"]["rows"])
    assert len(res["steps_scaling"]["rows"]) >= 2
    assert all(r["agree"] for r in res["baseline"]["rows"])
    assert res["startup"]["import"]["compiled_at_import"] == []
    assert res["sweep"]["agree_workers"] and res["sweep"]["agree_serial"]
    assert [s["workers"] for s in res["sweep"]["sweeps"]] == [1, 2]
    dx = res["dexsim"]["warm"]
    assert dx["paths"] == 5 and dx["per_path_s"] > 0 and dx["liquidated_usd_all_paths"] >= 0
    assert {t["target"] for t in res["targets"]} >= {"import cascade", "nothing compiled at import"}
    md = (out / "latest.md").read_text()
    assert "## Targets" in md and "| target | goal | measured | status | note |" in md
    assert "## End-to-end engine" in md and "## Naive NumPy baseline vs engine" in md
    assert "## October scenario" in md and "## dex-sim's workload shape" in md
    assert (out / "scaling.png").stat().st_size > 0
    assert len(list(out.glob("*Z.md"))) == 1 and len(list(out.glob("*Z.json"))) == 1
