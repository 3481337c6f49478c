"""The liquidation heatmap against a slow reference (tests/naive/heatmap.py), its edge cases, the
run it rides on (unchanged by the snapshots), ``res.heatmap``/``res.plot`` and ``cascade map``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cascade
from cascade.analysis.heatmap import (
    HeatmapSpec,
    grid,
    ladder_histogram,
    parse_instant,
    price_edges,
    snapshot_steps,
)
from cascade.engine.layout import DORMANT, HEAPED, LIQUIDATED, OPEN, TRIGGERED
from cascade.errors import CascadeError
from tests.naive import heatmap as naive

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "demo.toml"
# the demo with conditional entries (shorts of the breakdown, a few breakout longs) and a 2 s
# latency, so that entries open mid-run and triggered orders wait before they fill
ENTRIES = {"population.entry_order_share": 0.1, "population.entry_order_long_share": 0.3,
           "population.entry_order_range_pct": [1.0, 8.0],
           "population.entry_order_leverages": [10, 20],
           "population.entry_order_leverage_weights": [0.5, 0.5], "engine.latency_s": 2.0}


@pytest.fixture(scope="module")
def small_run():
    sc = cascade.load_scenario(DEMO).with_overrides(**ENTRIES)
    return cascade.run(sc, positions=3000, heatmap={"every_s": 60, "bins": 120, "span": 0.2})


def test_heatmap_matches_brute_force_count_at_instants(small_run):
    res = small_run
    rec = res.records
    kinds = set(np.unique(rec["kind"]).tolist())
    # the reference assumes sizes and liquidation prices never change during the run
    assert kinds <= {naive.LIQ, naive.STOP, naive.ENTRY}, kinds
    assert naive.ENTRY in kinds and naive.LIQ in kinds and naive.STOP in kinds
    assert not res.summary.get("funding_payments")
    pop = res.population
    records = [dict(zip(rec.dtype.names, r)) for r in rec.tolist()]
    times, edges, vals = grid(res.heatmap)
    assert np.allclose(edges, price_edges(pop.price_start, 120, 0.2))
    step_s = res.scenario.scenario.step_s
    steps = ((times - times[0]) / pd.Timedelta(seconds=step_s)).astype(int)
    low = int(np.argmin(res.steps["last_price"].to_numpy()))
    checked = 0
    for s in (0, 29 * 60, low - low % 60, low - low % 60 + 60, 90 * 60, res.scenario.n_steps):
        j = int(np.flatnonzero(steps == s)[0])
        rows = naive.open_rows(pop.n, pop.n_ladder, records, s)
        want, out = naive.heatmap_at(pop.side, pop.qty, pop.lp, rows, edges)
        np.testing.assert_allclose(vals[j], np.array(want), rtol=1e-9, atol=1e-3)
        np.testing.assert_allclose([res.heatmap.attrs["outside_long_usd"][j],
                                    res.heatmap.attrs["outside_short_usd"][j]], out,
                                   rtol=1e-9, atol=1e-3)
        checked += 1
    assert checked == 6
    # the ladder changed: longs were liquidated, entries opened
    assert vals[-1, 0].sum() < vals[0, 0].sum()
    assert not np.array_equal(vals[0, 1], vals[-1, 1])


def test_first_snapshot_is_the_liquidation_map():
    res = cascade.run(DEMO, positions=2000, heatmap=True)
    first = res.heatmap[res.heatmap["time"] == res.heatmap["time"].iloc[0]]
    np.testing.assert_allclose(first["long_usd"].to_numpy(), res.liq_map["long_usd"].to_numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(first["short_usd"].to_numpy(),
                               res.liq_map["short_usd"].to_numpy(), rtol=1e-12)


def test_snapshots_do_not_change_the_run(small_run):
    """Extra chunk boundaries for snapshots leave every step and record as they were."""
    sc = cascade.load_scenario(DEMO).with_overrides(**ENTRIES)
    plain = cascade.run(sc, positions=3000)
    assert plain.heatmap is None
    pd.testing.assert_frame_equal(plain.steps, small_run.steps)
    for name in plain.records.dtype.names:  # field by field: the padding bytes are not set
        assert np.array_equal(plain.records[name], small_run.records[name], equal_nan=True), name


def _rows(lp, side=None, status=None, qty=None):
    lp = np.asarray(lp, float)
    n = len(lp)
    return (np.ones(n, np.int8) if side is None else np.asarray(side, np.int8),
            np.ones(n) if qty is None else np.asarray(qty, float), lp,
            np.full(n, OPEN, np.int8) if status is None else np.asarray(status, np.int8))


@pytest.mark.parametrize("case", ["none_open", "one_bin", "outside", "statuses", "random"])
def test_ladder_histogram_edge_cases_against_brute_force(case):
    edges = np.linspace(90.0, 110.0, 21)
    rng = np.random.default_rng(3)
    if case == "none_open":  # every position closed or waiting: an empty map
        side, qty, lp, status = _rows([95.0, 105.0], [1, -1], [LIQUIDATED, TRIGGERED])
    elif case == "one_bin":
        side, qty, lp, status = _rows([100.2, 100.5, 100.9], [1, -1, 1], qty=[1.0, 2.0, 3.0])
    elif case == "outside":  # below, above, on the top edge, at or under zero, on the low edge
        side, qty, lp, status = _rows([50.0, 150.0, 110.0, 0.0, -3.0, 90.0], [1, -1, -1, 1, 1, 1])
    elif case == "statuses":  # only OPEN and HEAPED rows count
        side, qty, lp, status = _rows([95.0] * 5, status=[OPEN, HEAPED, DORMANT, TRIGGERED,
                                                            LIQUIDATED])
    else:
        n = 500
        side, qty, lp, status = _rows(rng.uniform(80, 120, n), rng.choice([1, -1], n),
                                      rng.choice([OPEN, HEAPED, LIQUIDATED, DORMANT], n),
                                      rng.uniform(0.01, 5, n))
        lp[:20] = edges[rng.integers(0, 21, 20)]  # exactly on edges
    hist, outside = ladder_histogram(side, qty, lp, status, edges)
    want, want_out = naive.histogram(side, qty, lp, status, edges)
    np.testing.assert_allclose(hist, np.array(want), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outside, want_out, rtol=1e-12, atol=1e-12)
    if case == "none_open":
        assert hist.sum() == 0 and outside.sum() == 0
    if case == "one_bin":
        assert np.count_nonzero(hist) == 2 and hist[0, 10] == pytest.approx(100.2 + 3 * 100.9)
    if case == "outside":
        assert hist.sum() == pytest.approx(90.0)  # only the row on the low edge is inside
        assert outside.tolist() == pytest.approx([50.0 + 0.0 - 3.0, 150.0 + 110.0])
    if case == "statuses":
        assert hist.sum() == pytest.approx(2 * 95.0)


def test_snapshot_steps_and_instants():
    sc = cascade.load_scenario(DEMO)
    steps = snapshot_steps(sc, HeatmapSpec(every_s=600, at=("20:35:30",)))
    assert steps[0] == 0 and steps[-1] == sc.n_steps and 35 * 60 + 30 in steps
    assert len(snapshot_steps(sc, HeatmapSpec())) <= 300 + 2
    assert parse_instant("2025-10-10T21:15", sc, "--at") == pd.Timestamp("2025-10-10 21:15Z")
    with pytest.raises(CascadeError, match="--at 23:30: expected a time inside"):
        parse_instant("23:30", sc, "--at")
    with pytest.raises(CascadeError, match="--at soon: expected a UTC time"):
        parse_instant("soon", sc, "--at")
    with pytest.raises(CascadeError, match="heatmap: unknown key"):
        cascade.run(DEMO, positions=100, heatmap={"binz": 3})


def test_result_heatmap_plots(small_run, tmp_path):
    from matplotlib.figure import Figure

    fig = small_run.plot("heatmap")
    assert isinstance(fig, Figure) and fig._repr_png_().startswith(b"\x89PNG")
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    width = small_run.heatmap.attrs["bin_width_usd"]
    assert width == pytest.approx(0.4 * small_run.summary["price_start"] / 120)
    assert f"bin width \\${width:,.2f}" in legend
    fig = small_run.plot("heatmap", at="20:45")
    assert "ladder at 2025-10-10 20:45:00 UTC" in fig._suptitle.get_text()
    ys = fig.axes[0].get_ylim()
    assert ys[0] < small_run.steps.loc["2025-10-10 20:45:00+00:00", "last_price"] < ys[1]
    paths = small_run.save(tmp_path)
    back = pd.read_parquet(paths["heatmap.parquet"])
    pd.testing.assert_frame_equal(back, small_run.heatmap, check_like=False)
    assert paths["heatmap.png"].read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="heatmap=True"):
        cascade.run(DEMO, positions=2000).plot("heatmap")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cascade.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cascade_map_cli(tmp_path):
    out = tmp_path / "map"
    p = _cli("map", DEMO, "--positions", 2000, "--out", out, "--at", "20:40", "--bins", 80,
             "--every", 300, "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "heatmap.parquet" in p.stdout and "ladder.png" in p.stdout
    hm = pd.read_parquet(out / "heatmap.parquet")
    # every 5 min over 2 h, the end, and the extra instant 20:40 (already on the grid)
    assert hm["time"].nunique() == 25 and len(hm) == 25 * 80
    assert (out / "heatmap.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "ladder.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("args,key", [(("--at", "23:00"), "--at 23:00: expected a time inside"),
                                      (("--every", "0"), "argument --every: expected"),
                                      (("--window", "21:00"), "--window 21:00: expected START"),
                                      (("--bins", "x"), "argument --bins: expected")])
def test_cascade_map_bad_input_is_one_line(args, key, tmp_path, capsys):
    from cascade.cli import main

    try:
        rc = main(["map", str(DEMO), "--positions", "100", "--out", str(tmp_path), *args])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and key in err and "Traceback" not in err, err


def test_plots_of_an_empty_map_say_so():
    from cascade.analysis.heatmap import heatmap_frame
    from cascade.plots.heatmap import plot_heatmap, plot_ladder

    times = pd.date_range("2025-10-10 20:00", periods=3, freq="1min", tz="UTC")
    edges = price_edges(100.0, 10, 0.1)
    hm = heatmap_frame(times, edges, np.zeros((3, 2, 10)), np.zeros((3, 2)), every_s=60.0)
    steps = pd.DataFrame({"last_price": [100.0, 99.0, 98.0]}, index=times)
    fig = plot_heatmap(hm, steps)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "no open longs in the price range" in notes and "no open shorts in the price range" in notes
    fig = plot_ladder(hm, times[1], 99.0)
    assert "no open positions in the price range" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(ValueError, match="heatmap is empty"):
        plot_heatmap(hm.iloc[:0], steps)
