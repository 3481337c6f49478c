"""Position counts are honoured or refused (issue 14): --positions 0, 1 and 2 on one-venue and
two-venue scenarios, through the command line."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import types

import pandas as pd
import pytest

from cascade import cli
from tests.conftest import BASE
from tests.test_venues import market, write_toml


def _write(path, raw):
    write_toml(raw, path)
    return path


def _one_venue(**pop):
    raw = copy.deepcopy(BASE)
    raw["population"].update(pop)
    return raw


def _two_venues(**pop):
    raw = market(minutes=15, positions=600)
    raw["population"].update(pop)
    return raw


def _cli(*args):
    """``cascade ARGS`` in this process (the numba kernels are compiled once for all cases)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as exc:
            rc = exc.code
    return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.mark.parametrize("make", [_one_venue, _two_venues], ids=["one-venue", "two-venues"])
def test_zero_positions_runs_an_empty_market(tmp_path, make):
    sc = _write(tmp_path / "s.toml", make())
    out = tmp_path / "out"
    r = _cli("run", sc, "--positions", 0, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["positions_requested"] == 0 and s["positions_built"] == 0 and s["positions"] == 0
    assert s["open_interest_start_usd"] == 0 and s["liquidated_notional_usd"] == 0
    steps = pd.read_parquet(out / "steps.parquet")
    assert len(steps) == s["steps"] and steps.drop(columns="branching_ratio").notna().all().all()
    assert steps["branching_ratio"].isna().all()  # no forced volume: undefined everywhere
    assert len(pd.read_parquet(out / "positions.parquet")) == 0
    assert math.isfinite(s["price_end"])


@pytest.mark.parametrize("make", [_one_venue, _two_venues], ids=["one-venue", "two-venues"])
@pytest.mark.parametrize("n", [1, 2])
def test_too_few_positions_for_the_cap_are_refused(tmp_path, make, n):
    sc = _write(tmp_path / "s.toml", make())
    r = _cli("run", sc, "--positions", n, "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "positions" in lines[0] and "max_notional_share" in lines[0]
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("make", [_one_venue, _two_venues], ids=["one-venue", "two-venues"])
@pytest.mark.parametrize("n", [1, 2])
def test_small_counts_the_cap_allows_are_honoured(tmp_path, make, n):
    """All longs and no cap: one position may hold its side's whole open interest (two venues
    need one position each: one position for two venues is refused)."""
    sc = _write(tmp_path / "s.toml", make(long_share=1.0, max_notional_share=1.0))
    out = tmp_path / "out"
    r = _cli("run", sc, "--positions", n, "--out", out, "--quiet")
    if make is _two_venues and n == 1:
        assert r.returncode == 2 and "positions" in r.stderr and "venues" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        return
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["positions_requested"] == n
    assert s["positions_built"] == s["positions"] == len(pd.read_parquet(out / "positions.parquet"))
    # what is built is what was asked for, or the summary says why not
    assert s["positions_built"] == n or s["positions_note"].startswith(
        f"{s['positions_built']:,} of {n:,}")
    if s.get("venues"):
        assert sum(1 for v in s["venues"].values() if v["open_interest_start_usd"] > 0) == \
            s["positions_built"]
