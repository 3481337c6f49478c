"""`cascade sweep` and the one engine of multi-run commands (cascade.analysis.parallel): a sweep on
worker processes gives the rows of a serial loop over cascade.run bit for bit, resumes, survives
a killed worker, rejects bad --grid/--sample/--scheduler; validate and sensitivity give the same
results in parallel as serially. Dask tests are few: each cluster start costs seconds."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cascade.analysis import parallel
from cascade.analysis import sweep as S
from cascade.cli import main
from tests.conftest import BASE, START, make_scenario

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "scenarios" / "demo.toml")


def _tiny(minutes: float = 12.0, **over):
    """The small scenario (3,000 positions) cut to ``minutes``, keeping the flows inside it."""
    flows = [f for f in BASE["flows"] if f["start"] < START + dt.timedelta(minutes=minutes)]
    return make_scenario(**{"scenario.end": START + dt.timedelta(minutes=minutes),
                            "flows": flows, **over})


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 worker processes for this module's dask tests (each start costs
    seconds); the test that kills a worker runs last."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as c, Client(c) as client:
        yield c, client


def _same(a, b) -> bool:
    """Equal values, NaN equal to NaN, arrays element by element (bit for bit for floats)."""
    if isinstance(a, (list, np.ndarray)) or isinstance(b, (list, np.ndarray)):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def _assert_rows_equal(rows, expected: list[dict]):
    assert len(rows) == len(expected)
    for (_, got), want in zip(rows.iterrows(), expected):
        assert set(want) <= set(got.index), set(want) - set(got.index)
        for k, v in want.items():
            assert _same(got[k], v), (want["task"], k, got[k], v)


def test_cluster_rows_equal_a_serial_loop_over_run_bit_for_bit(tmp_path, cluster):
    from cascade.runner import run

    sc = _tiny()
    grid = [("market.depth_usd", [8e6, 12e6]), ("engine.feedback", [True])]
    res = S.sweep(sc, seeds=2, grid=grid, scheduler=cluster[0].scheduler_address,
                  out=tmp_path / "a", amplification=True)
    assert len(res.rows) == 4 and res.skipped == 0
    # the serial reference: one fresh cascade.run per task (no population reuse), in reverse
    # order, so neither the worker, the order nor the reuse can matter
    expected = {t.name: S.task_row(t, run(t.resolved(), amplification=True))
                for t in reversed(res.tasks)}
    _assert_rows_equal(res.rows, [expected[t.name] for t in res.tasks])
    assert sorted(res.rows["seed"]) == [3, 3, 4, 4]
    assert len(res.rows[S.PATH_COLUMN].iloc[0]) == 12  # one price per minute
    table = res.table()
    assert list(table["runs"]) == [2, 2] and res.rows["amplification"].notna().all()
    d = res.rows.groupby("grid_point", sort=False)["max_drawdown_pct"]
    assert np.allclose(table["drawdown median"], d.median())
    paths = S.save_outputs(res)
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert "| grid point | runs | drawdown median" in paths["sweep.md"].read_text()


def test_resume_skips_done_tasks(tmp_path, monkeypatch):
    sc = _tiny(minutes=6)
    out = tmp_path / "s"
    first = S.sweep(sc, seeds=3, workers=1, out=out)
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3
    files[0].unlink()
    kept = {p: p.stat().st_mtime_ns for p in files[1:]}
    calls = []
    real = S.simulate_task
    monkeypatch.setattr(S, "simulate_task", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = S.sweep(sc, seeds=3, workers=1, out=out)
    assert again.skipped == 2 and len(calls) == 1
    assert all(p.stat().st_mtime_ns == m for p, m in kept.items())
    _assert_rows_equal(again.rows, first.rows.to_dict("records"))


@pytest.mark.parametrize("args, option, needle", [
    (["--grid", "market.depth_usd"], "--grid", "expected KEY=V1,V2"),
    (["--grid", "market.nope=1,2"], "--grid", "nope"),
    (["--grid", "market.depth_usd=-5,1e7"], "--grid", "depth_usd"),
    (["--grid", "market.depth_usd=1e7", "--grid", "market.depth_usd=2e7"], "--grid", "twice"),
    (["--sample", "market.depth_usd=5e7:1e7", "--samples", "3"], "--sample", "LOW < HIGH"),
    (["--sample", "market.depth_usd=a:b", "--samples", "3"], "--sample", "KEY=LOW:HIGH"),
    (["--sample", "market.depth_usd=1e7:5e7"], "--samples", "expected the number"),
    (["--samples", "4"], "--samples", "without --sample"),
    (["--sample", "market.impact_exponent=0.1:5", "--samples", "8"], "--sample", "impact"),
    (["--scheduler", "not an address"], "--scheduler", "tcp://127.0.0.1:8786"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler", "no dask scheduler answered"),
])
def test_bad_grid_sample_scheduler_name_the_argument(args, option, needle, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1)
    rc = main(["sweep", DEMO, "--positions", "500", "--quiet", "--out", str(tmp_path / "o"),
               *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"cascade: error: {option}"), err
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not list((tmp_path / "o").glob("*.parquet"))


def test_latin_hypercube_is_seeded_and_stratified():
    sample = [("market.depth_usd", 1e7, 5e7), ("population.positions", 100, 200)]
    a = S.latin_hypercube(sample, 10, seed=7)
    assert a == S.latin_hypercube(sample, 10, seed=7) != S.latin_hypercube(sample, 10, seed=8)
    depth = np.array([dict(p)["market.depth_usd"] for p in a])
    # one point in each tenth of the range
    assert sorted(((depth - 1e7) / 4e6).astype(int)) == list(range(10))
    assert all(isinstance(dict(p)["population.positions"], int) for p in a)


def test_validate_and_sensitivity_parallel_equal_serial(tmp_path, cluster):
    from cascade.analysis.sensitivity import sensitivity
    from cascade.analysis.targets import validate

    sc = _tiny(minutes=20)
    kw = dict(params=["market.depth_usd", "population.long_share"], positions=2000, seed=5)
    serial = sensitivity(sc, workers=1, **kw).to_dict()
    para = sensitivity(sc, scheduler=cluster[0].scheduler_address, **kw).to_dict()
    for d in (serial, para):
        d.pop("elapsed_s", None)
    assert para == serial

    text = Path(DEMO).read_text() + (
        '\n[targets.low]\nmetric = "price_low"\nmax = 108000.0\nsource = "test"\n')
    path = tmp_path / "t.toml"
    path.write_text(text)
    one = validate(path, seeds=3, positions=3000, workers=1).to_dict()
    two = validate(path, seeds=3, positions=3000, scheduler=cluster[0].scheduler_address
                   ).to_dict()
    assert one == two and len(one["seeds"]) == 3


def test_a_killed_worker_loses_and_duplicates_no_task(tmp_path, cluster):
    sc = _tiny(minutes=30, **{"population.positions": 60_000})
    out = tmp_path / "k"
    n_tasks = 16
    c, client = cluster
    pids = client.run(os.getpid)
    killed = {}

    def kill_when_started():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = len(list(out.glob("*.parquet"))) if out.exists() else 0
            if done >= 1:
                victim = sorted(pids.values())[0]
                killed["done_before"] = done
                os.kill(victim, signal.SIGKILL)
                killed["pid"] = victim
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_when_started)
    watcher.start()
    res = S.sweep(sc, seeds=n_tasks, workers=2, scheduler=c.scheduler_address, out=out)
    watcher.join()
    after = client.run(os.getpid)
    assert "pid" in killed and killed["done_before"] < n_tasks  # killed mid-sweep
    assert killed["pid"] not in after.values()  # the nanny replaced the killed process
    names = sorted(p.stem for p in out.glob("*.parquet"))
    assert names == sorted(t.name for t in res.tasks)  # every task exactly once
    assert not list(out.glob(".*.tmp"))
    assert len(res.rows) == n_tasks and res.rows["task"].is_unique
    assert sorted(res.rows["seed"]) == list(range(3, 3 + n_tasks))


def test_batches_keep_keys_together_and_feed_every_worker():
    from cascade.analysis.parallel import batches

    keys = ["a"] * 8 + ["b"] * 8 + ["c"] * 3
    parts = batches(keys, 2)  # at most ceil(19 / 4) = 5 per batch
    assert sorted(i for p in parts for i in p) == list(range(19))
    assert all(len({keys[i] for i in p}) == 1 and len(p) <= 5 for p in parts)
    assert batches(["x"] * 10, 2) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert batches(list("abcdefgh"), 2) == [[i] for i in range(8)]
