"""`cascade run` end to end: files written, their columns and keys, the Python API."""

import json

import pandas as pd
import pytest

from cascade.cli import main

STEP_COLUMNS = ["last_price", "mark_price", "liq_long_usd", "liq_short_usd", "liq_count",
                "stop_usd", "exo_flow_usd", "open_interest_usd", "depth_usd",
                "insurance_fund_usd"]
SUMMARY_KEYS = ["scenario", "seed", "positions", "version", "git_commit", "price_start",
                "price_min", "price_min_time", "price_end", "max_drawdown_pct",
                "liquidated_notional_usd", "liquidated_long_usd", "liquidated_short_usd",
                "long_share", "accounts_liquidated", "max_liquidation_1m_usd",
                "max_liquidation_45m_usd", "open_interest_start_usd", "open_interest_end_usd",
                "insurance_fund_start_usd", "insurance_fund_end_usd", "bad_debt_usd"]


def test_run_writes_summary_steps_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", "scenarios/demo.toml", "--positions", "20000", "--seed", "5", "--out",
               str(out), "--amplification", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "max drawdown" in printed and str(out / "waterfall.png") in printed
    summary = json.loads((out / "summary.json").read_text())
    for key in SUMMARY_KEYS + ["amplification"]:
        assert key in summary, key
    assert summary["positions"] <= 20000 and summary["seed"] == 5
    assert summary["amplification"] >= 1.0
    steps = pd.read_parquet(out / "steps.parquet")
    assert set(STEP_COLUMNS) <= set(steps.columns)
    assert str(steps.index.tz) == "UTC" and len(steps) == 7200
    for png in ("waterfall.png", "liquidation_map.png", "insurance.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind


def test_python_api_matches_cli_run(tmp_path):
    import cascade

    res = cascade.run("scenarios/demo.toml", positions=20000, seed=5, out=tmp_path / "api")
    disk = pd.read_parquet(tmp_path / "api" / "steps.parquet")
    pd.testing.assert_frame_equal(res.steps, disk, check_freq=False)
    assert res.plot(path=tmp_path / "w.png") == tmp_path / "w.png"  # with a path: saved there
    assert (tmp_path / "w.png").read_bytes().startswith(b"\x89PNG")
    assert res.plot()._repr_png_().startswith(b"\x89PNG")  # without: a Figure, shown inline


def test_bad_reference_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "ref.csv"
    bad.write_text("open_time,open,high\n1,2,3\n")
    rc = main(["run", "scenarios/demo.toml", "--positions", "1000", "--quiet", "--out",
               str(tmp_path / "o"), "--reference", str(bad)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("cascade: error:") and "ref.csv" in err


def test_run_window_zooms_the_waterfall(tmp_path, capsys, monkeypatch):
    """--window draws the waterfall over that span only (the x limits of the drawn figure)."""
    from cascade.plots import waterfall

    seen = []
    real = waterfall.plot_waterfall

    def spy(steps, summary, path, **kwargs):
        seen.append(real(steps, summary, None, **kwargs).axes[0].get_xlim())
        return real(steps, summary, path, **kwargs)

    monkeypatch.setattr(waterfall, "plot_waterfall", spy)
    rc = main(["run", "scenarios/demo.toml", "--positions", "2000", "--out", str(tmp_path),
               "--window", "20:25,21:05", "--quiet"])
    assert rc == 0 and (tmp_path / "waterfall.png").exists()
    lo, hi = seen[0]
    assert (hi - lo) * 24 * 60 == pytest.approx(40, abs=1)
    for bad, key in (("21:05,20:25", "expected START before END"),
                     ("19:00,20:30", "expected a time inside the scenario window"),
                     ("20:25", "expected START,END")):
        rc = main(["run", "scenarios/demo.toml", "--positions", "100", "--out", str(tmp_path),
                   "--window", bad, "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "--window" in err and key in err and "Traceback" not in err, err
