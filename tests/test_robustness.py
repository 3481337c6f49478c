"""Robustness (issue 13), one test per failure class: values the schema cannot work with are
refused, model breakdowns stop with an error naming the step and the quantity, plots survive
non-finite frames, broken pipes end quietly, implausible liq-price inputs warn, thread counts
are checked, and an interrupted run leaves its folder whole (the previous run or the new one)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from cascade.cli.run import positive_int
from cascade.engine import COLUMNS
from cascade.engine.checks import PRICE_MAX, check_steps
from cascade.errors import CascadeError
from cascade.io.files import check_run_folder, remove_leftovers
from tests.conftest import BASE, START, make_scenario
from tests.test_venues import write_toml

H = dt.timedelta(hours=1)


def _cli(*args, stdout=subprocess.PIPE, timeout=300):
    return subprocess.run([sys.executable, "-m", "cascade.cli", *map(str, args)],
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout)


def _cli_here(*args):
    """``cascade ARGS`` in this process (no interpreter start, kernels compiled once)."""
    import contextlib
    import io
    import types

    from cascade import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as exc:
            rc = exc.code
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


def _small_raw(minutes=10, positions=300, **extra):
    raw = copy.deepcopy(BASE)
    raw["scenario"]["end"] = START + dt.timedelta(minutes=minutes)
    raw["population"]["positions"] = positions
    raw["flows"] = [{"start": START + dt.timedelta(minutes=2), "duration_min": 4.0,
                     "usd_per_min": 8e6, "side": "sell"}]
    for dotted, v in extra.items():
        section, key = dotted.split(".")
        raw[section][key] = v
    return raw


# ------------------------------------------------------------------------------- huge values
HUGE = [
    ({"flows": [{"start": START + dt.timedelta(minutes=5), "duration_min": 1e308,
                 "usd_per_min": 1e6}]}, "duration_min"),
    ({"flows": [{"start": START + dt.timedelta(minutes=5), "duration_min": 5.0,
                 "usd_per_min": 1e308}]}, "usd_per_min"),
    ({"population.min_notional_usd": 1e308}, "min_notional_usd"),
    ({"population.cross_spare_margin_mean": 1e308}, "cross_spare_margin_mean"),
    ({"population.open_interest_usd": 1e308}, "open_interest_usd"),
    ({"population.entry_age_mean_h": 1e308}, "entry_age_mean_h"),
    ({"market.depth_usd": 1e308}, "depth_usd"),
    ({"market.resilience_half_life_s": 1e308}, "resilience_half_life_s"),
    ({"market.dip_buy_usd_per_s_per_pct": 1e308}, "dip_buy_usd_per_s_per_pct"),
    ({"venue.insurance_fund_usd": 1e308}, "insurance_fund_usd"),
    ({"engine.latency_s": 1e308}, "latency_s"),
    ({"population.history": [[START - 12 * H, 1e300], [START, 1e300]]}, "history"),
    ({"population.history": [[START - 12 * H, 1e-300], [START, 1e-300]]}, "history"),
]


@pytest.mark.parametrize("overrides,key", HUGE, ids=[f"{k}-{i}" for i, (_, k) in enumerate(HUGE)])
def test_values_that_cannot_work_are_refused_by_the_schema(overrides, key):
    with pytest.raises(CascadeError) as info:
        make_scenario(**overrides)
    msg = str(info.value)
    assert key in msg and "expected" in msg and ("<=" in msg or ">=" in msg), msg


# ---------------------------------------------------------------------------- model breakdowns
def _outs(t=20):
    outs = np.ones((2, t, len(COLUMNS)))
    return outs


@pytest.mark.parametrize("col,value,reason", [
    ("last_price", np.inf, "not a finite number"),
    ("mark_price", np.nan, "not a finite number"),
    ("index_price", PRICE_MAX * 10, "a price outside"),
    ("last_price", -1.0, "a price outside"),
    ("depth_usd", np.inf, "not a finite number"),
    ("depth_usd", 0.0, "depth must stay above 0"),
    ("open_interest_usd", -5.0, "must not be negative"),
    ("insurance_fund_usd", np.nan, "not a finite number"),
    ("forced_flow_usd", -np.inf, "not a finite number"),
])
def test_a_breakdown_names_the_step_and_the_quantity(col, value, reason):
    sc = make_scenario(**{"population.positions": 10})
    outs = _outs()
    check_steps(sc, outs, 0, 20, ["a", "b"])  # all fine
    outs[1, 13, COLUMNS.index(col)] = value
    outs[0, 17, COLUMNS.index("last_price")] = np.inf  # a later one is not the one reported
    check_steps(sc, outs, 0, 13, ["a", "b"])  # not in the chunk checked
    with pytest.raises(CascadeError) as info:
        check_steps(sc, outs, 10, 20, ["a", "b"])
    msg = str(info.value)
    assert "step 13 (2025-10-10T20:00:13+00:00) on venue b" in msg and f"{col} = " in msg, msg
    assert reason in msg


def test_a_diverging_market_stops_with_an_error_and_writes_nothing(tmp_path):
    """A buy program of 1e13 USD per minute into a book of 0.001 USD per 1 %: the price leaves
    the floats; the run stops with one line naming the step and the quantity, and no output
    file holds a non-finite number because none is written."""
    raw = _small_raw(**{"market.depth_usd": 1e-3})
    raw["flows"] = [{"start": START + dt.timedelta(minutes=1), "duration_min": 5.0,
                     "usd_per_min": 1e13, "side": "buy"}]
    write_toml(raw, tmp_path / "s.toml")
    r = _cli_here("run", tmp_path / "s.toml", "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "step 60" in lines[0] and "last_price" in lines[0] and "s.toml" in lines[0]
    assert not (tmp_path / "out" / "summary.json").exists()


# ------------------------------------------------------------------------------------- plots
def test_plots_draw_frames_with_non_finite_values(tmp_path):
    import cascade

    res = cascade.run(make_scenario(**{"population.positions": 300}))
    steps = res.steps
    steps.iloc[5:9, steps.columns.get_loc("last_price")] = np.inf
    steps.iloc[3:4, steps.columns.get_loc("mark_price")] = -np.inf
    steps.iloc[10:12, steps.columns.get_loc("open_interest_usd")] = np.nan
    steps.iloc[10:12, steps.columns.get_loc("insurance_fund_usd")] = np.inf
    for kind in ("waterfall", "insurance", "liquidation_map"):
        path = res.plot(kind, tmp_path / f"{kind}.png")
        assert path.stat().st_size > 1000


# ------------------------------------------------------------------------------------- pipes
def _closed_pipe():
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write fails with EPIPE
    return w


def test_liq_price_into_a_closed_pipe_exits_quietly():
    w = _closed_pipe()
    try:
        r = _cli("liq-price", "--side", "long", "--entry", "100000", "--size", "1",
                 "--leverage", "10", stdout=w)
    finally:
        os.close(w)
    assert r.returncode == 141 and r.stderr == "", r.stderr


def test_run_into_a_closed_pipe_exits_quietly_with_its_files_whole(tmp_path):
    """Also: --threads above the cores is lowered to them, with one warning line."""
    write_toml(_small_raw(), tmp_path / "s.toml")
    w = _closed_pipe()
    try:
        r = _cli("run", tmp_path / "s.toml", "--out", tmp_path / "out", "--quiet",
                 "--threads", "100000", stdout=w)
    finally:
        os.close(w)
    assert r.returncode == 141, r.stderr
    assert "Traceback" not in r.stderr and "Error" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascade: warning: --threads 100000")
    assert check_run_folder(tmp_path / "out")


# ---------------------------------------------------------------------------- liq-price, CLI
def test_liq_price_warns_when_the_wallet_cannot_hold_the_position():
    args = ["liq-price", "--side", "long", "--entry", "100000", "--size", "1", "--leverage",
            "10", "--json"]
    ok = _cli_here(*args)
    assert ok.returncode == 0 and ok.stderr == ""
    assert json.loads(ok.stdout)["liquidated_at_entry"] is False
    bad = _cli_here(*args, "--wallet", "100")
    assert bad.returncode == 0
    out = json.loads(bad.stdout)
    assert out["liquidated_at_entry"] is True and out["liquidation_price"] > 100000
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cascade: warning: --wallet")
    short = _cli_here("liq-price", "--side", "short", "--entry", "100000", "--size", "1",
                 "--leverage", "10", "--wallet", "100", "--json")
    assert json.loads(short.stdout)["liquidated_at_entry"] is True and "below" in short.stderr


def test_thread_counts_and_whole_numbers():
    r = _cli_here("run", "scenarios/demo.toml", "--threads", "0")
    assert r.returncode == 2 and "--threads" in r.stderr and ">= 1" in r.stderr
    assert positive_int("1e6") == 10**6 and positive_int("1_000") == 1000
    for bad in ("1.5", "1e-3", "x", "-1", "inf", "nan"):
        with pytest.raises(Exception):
            positive_int(bad)


# ---------------------------------------------------------------------- whole or absent runs
def _wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_interrupted_runs_leave_the_previous_run_or_the_new_one(tmp_path):
    """Real signals in subprocesses writing over a previous complete run (seed 1): SIGKILL in
    the step loop and at three moments of writing, SIGTERM and SIGINT while writing. Each folder
    is afterwards a complete run (its manifest matches every file): the previous one or the new
    one (seed 2), never a mix; leftovers of killed runs are removed by the next run."""
    scen = tmp_path / "s.toml"
    write_toml(_small_raw(minutes=20, positions=2000), scen)
    first = tmp_path / "first"
    assert _cli("run", scen, "--out", first, "--quiet", "--seed", 1).returncode == 0
    assert check_run_folder(first)
    plans = [("kill-in-loop", signal.SIGKILL, None, 0.5),
             ("kill-at-tmp", signal.SIGKILL, "tmp", 0.0),
             ("kill-tmp+0.2", signal.SIGKILL, "tmp", 0.2),
             ("kill-tmp+0.6", signal.SIGKILL, "tmp", 0.6),
             ("term-tmp+0.1", signal.SIGTERM, "tmp", 0.1),
             ("int-tmp+0.3", signal.SIGINT, "tmp", 0.3),
             ("kill-late", signal.SIGKILL, "tmp", 30.0)]  # most likely after it finished
    procs = []
    for name, sig, when, delay in plans:
        out = tmp_path / "runs" / name
        out.parent.mkdir(exist_ok=True)
        shutil.copytree(first, out)
        p = subprocess.Popen([sys.executable, "-m", "cascade.cli", "run", str(scen), "--out",
                              str(out), "--quiet", "--seed", "2"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append((name, sig, when, delay, out, p))
    t0 = time.monotonic()
    seen = {}  # name -> when its temporary folder first appeared
    pending = list(procs)
    while pending and time.monotonic() - t0 < 240:
        now = time.monotonic()
        for item in list(pending):
            name, sig, when, delay, out, p = item
            if name not in seen and any(q.name.startswith(f".{out.name}.tmp-")
                                        for q in out.parent.iterdir()):
                seen[name] = now
            if p.poll() is not None:
                pending.remove(item)
            elif (when is None and now - t0 > delay) or (when == "tmp" and name in seen
                                                           and now - seen[name] >= delay):
                p.send_signal(sig)
                pending.remove(item)
        time.sleep(0.005)
    outcomes = {}
    for name, sig, when, delay, out, p in procs:
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err, (name, err)
        assert check_run_folder(out), name  # whole: every file the manifest lists, as listed
        s = json.loads((out / "summary.json").read_text())
        steps = pd.read_parquet(out / "steps.parquet")
        # the steps and the summary come from the same run
        assert abs(steps["liq_long_usd"].sum() + steps["liq_short_usd"].sum()
                   - s["liquidated_notional_usd"]) < 0.01, name
        outcomes[name] = (s["seed"], p.returncode)
        if sig == signal.SIGINT and p.returncode == 130:
            assert s["seed"] == 1  # interrupted before the swap: the previous run
        if sig in (signal.SIGINT, signal.SIGTERM):  # caught: its temporary folder removed
            assert not any(q.name.startswith(f".{name}.") for q in out.parent.iterdir())
    print(outcomes)
    assert all(seed in (1, 2) for seed, _ in outcomes.values()), outcomes
    assert outcomes["kill-in-loop"][0] == 1  # killed long before writing
    assert outcomes["kill-late"] == (2, 0)  # finished before its signal: the new run
    # the next run into a killed run's folder removes every leftover of dead runs beside it
    runs = tmp_path / "runs"
    for out in sorted(runs.iterdir()):
        if not out.name.startswith("."):
            remove_leftovers(out)
    assert sorted(p.name for p in runs.iterdir()) == sorted(name for name, *_ in plans)
    # and a run over a folder holding a foreign file is refused, never replaced
    (runs / "kill-at-tmp" / "notes.txt").write_text("mine")
    r = _cli("run", scen, "--out", runs / "kill-at-tmp", "--quiet", "--positions", "0")
    assert r.returncode == 2 and "notes.txt" in r.stderr
    assert (runs / "kill-at-tmp" / "notes.txt").read_text() == "mine"


def test_help_texts_say_what_run_writes_and_accepts():
    r = _cli_here("run", "--help")
    text = " ".join(r.stdout.split())
    for needle in ("summary.json", "liquidations", "positions", "manifest.json", "whole",
                   "1e6", "0: an empty market", "max_notional_share", "1 to the number of cores",
                   "empty or a previous run's folder"):
        assert needle in text, needle
    r = _cli_here("replay", "--help")
    assert "empty or a previous run's folder" in " ".join(r.stdout.split())
