"""Property-based robustness (issue 13): hypothesis generates scenario files, command lines and
kline files, valid and invalid. Every example ends in one of two ways:

- a clean error: exit status 2 (CascadeError), one line naming the file, key or line and what
  was expected, never a traceback; or
- a run whose outputs are all finite and whose accounting balances (the loss identity of
  tests/test_outputs.py, from the output tables alone).

Small and deterministic (derandomize: the same examples in every run, so CI is stable; no
example database), tiny populations and windows so it runs in about a minute.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import datetime as dt
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cascade
from cascade import cli
from cascade.errors import CascadeError
from cascade.io.klines import read_klines
from cascade.model.scenario import SCHEMA, load_scenario
from tests.conftest import BASE, START
from tests.test_klines import HEADER, _rows
from tests.test_outputs import check_accounting
from tests.test_venues import write_toml

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _tiny() -> dict:
    """A 4-minute, 400-position scenario with a sell program: liquidations and stops happen."""
    raw = copy.deepcopy(BASE)
    raw["scenario"].update(end=START + dt.timedelta(minutes=4), step_s=2.0)
    raw["population"].update(positions=400, open_interest_usd=4e8)
    raw["market"]["depth_usd"] = 3e6
    raw["flows"] = [{"start": START + dt.timedelta(minutes=1), "duration_min": 2.0,
                     "usd_per_min": 2e7, "side": "sell"}]
    return raw


# values of every kind a user might write: in range, at the edges, absurd, of the wrong type
ODD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 0.5, 1e-300, 1e308, 2**63, 10**30, 0.01, 100.0]),
    st.text(max_size=5), st.booleans(), st.lists(st.floats(0, 200), max_size=4),
)
NUMERIC_KEYS = [(sec, key, f) for sec, fields in SCHEMA.items()
                if sec in ("scenario", "population", "market", "engine", "venue")
                for key, f in fields.items() if f.kind in ("float", "int", "range", "floats")]


def _in_range(f) -> st.SearchStrategy:
    lo = f.lo if f.lo is not None else -1e6
    hi = f.hi if f.hi is not None else lo + 1e6
    hi = min(hi, lo + 1e6)
    if f.kind == "int":
        return st.integers(int(math.ceil(lo)), int(hi))
    one = st.floats(lo, hi, allow_nan=False, exclude_min=bool(f.lo_open),
                    exclude_max=bool(f.hi_open))
    if f.kind == "range":
        return st.tuples(one, one).map(lambda t: sorted(t))
    if f.kind == "floats":
        return st.lists(one, min_size=1, max_size=3)
    return one


@st.composite
def scenarios(draw) -> dict:
    raw = _tiny()
    for _ in range(draw(st.integers(0, 3))):
        sec, key, f = draw(st.sampled_from(NUMERIC_KEYS))
        if key in ("positions",):
            value = draw(st.one_of(st.integers(0, 600), ODD))
        else:
            value = draw(st.one_of(_in_range(f), ODD))
        raw[sec][key] = value
    if draw(st.booleans()):
        raw["flows"][0]["usd_per_min"] = draw(st.one_of(st.floats(0, 1e9), ODD))
    return raw


def _finite_run(res) -> None:
    steps = res.steps
    # branching_ratio is NaN by definition where the minute before had no forced volume
    assert np.isfinite(steps.drop(columns="branching_ratio").to_numpy(dtype=float)).all()
    pos = res.positions
    opened = pos["wallet_open_usd"].notna()
    for col in ("qty", "wallet_usd", "funding_paid_usd", "wallet_open_usd"):
        assert np.isfinite(pos.loc[opened, col].to_numpy()).all(), col
    for k, v in res.summary.items():
        if isinstance(v, float):
            assert math.isfinite(v), k
    scale = res.summary["open_interest_start_usd"] + res.summary["liquidated_notional_usd"]
    check_accounting(pos, res.liquidations, json.loads(json.dumps(res.summary, default=str)),
                     tol=0.01 + 1e-12 * scale)


def _clean_error(msg: str, *names: str) -> None:
    assert "\n" not in msg.strip(), msg
    assert "Traceback" not in msg
    assert any(n in msg for n in names), (names, msg)
    assert "expected" in msg.lower(), msg


@settings(max_examples=30, **SETTINGS)
@given(raw=scenarios())
def test_scenarios_give_a_clean_error_or_a_balanced_finite_run(raw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "scenario.toml"
        try:
            write_toml(raw, path)
        except (TypeError, ValueError):  # a value TOML cannot hold: nothing to test
            return
        try:
            sc = load_scenario(path)
            res = cascade.run(sc)
        except CascadeError as exc:
            _clean_error(str(exc), str(path))
            return
        _finite_run(res)


# ------------------------------------------------------------------------------ command lines
def _main(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


NUMS = st.one_of(st.sampled_from(["0", "1", "-1", "1e6", "2.5", "x", "", "nan", "inf", "1_000",
                                  "99999999999999999999"]),
                 st.integers(-5, 10**6).map(str))


@st.composite
def command_lines(draw, folder: Path):
    cmd = draw(st.sampled_from(["run", "liq-price", "validate", "replay", "sensitivity",
                                "nope"]))
    scen = draw(st.sampled_from([folder / "tiny.toml", folder / "missing.toml", folder,
                                 folder / "notes.txt"]))
    argv = [cmd]
    if cmd == "liq-price":
        for opt in ("--side", "--entry", "--size", "--leverage", "--wallet", "--venue",
                    "--date", "--margin"):
            if draw(st.integers(0, 4)):
                val = {"--side": st.sampled_from(["long", "short", "up"]),
                       "--venue": st.sampled_from(["binance", "hyperliquid", "ftx"]),
                       "--date": st.sampled_from(["2025-10-10", "2019-01-01", "10/10/2025"]),
                       "--margin": st.sampled_from(["isolated", "cross", "x"])}.get(opt, NUMS)
                argv += [opt, draw(val)]
        if draw(st.booleans()):
            argv.append("--json")
        return argv
    argv.append(scen)
    if cmd == "run":
        argv += ["--out", folder / "out", "--quiet"]
        if draw(st.booleans()):
            argv += ["--positions", draw(st.sampled_from(["0", "400", "1", "-3", "1e6x"]))]
        if draw(st.booleans()):
            argv += ["--threads", draw(st.sampled_from(["0", "1", "2", "9999", "a"]))]
        if draw(st.booleans()):
            argv += ["--seed", draw(NUMS)]
    elif cmd == "replay":
        argv += ["--klines", draw(st.sampled_from([folder / "k.csv", folder / "missing.csv"]))]
        argv += ["--positions", "0", "--out", folder / "rout", "--quiet"]
    elif cmd in ("validate", "sensitivity"):
        argv += ["--positions", draw(st.sampled_from(["0", "-1", "x"])), "--quiet"]
    return argv


_FOLDER = Path(tempfile.mkdtemp(prefix="cascade-props-"))
atexit.register(shutil.rmtree, _FOLDER, True)
write_toml(_tiny(), _FOLDER / "tiny.toml")
(_FOLDER / "notes.txt").write_text("not toml [\n")
(_FOLDER / "k.csv").write_text(HEADER + "\n" + "\n".join(",".join(r) for r in _rows(3)) + "\n")


@settings(max_examples=40, **SETTINGS)
@given(argv=command_lines(_FOLDER))
def test_command_lines_give_a_clean_error_or_a_finite_result(argv):
    rc, out, err = _main(argv)
    assert "Traceback" not in err, err
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        errors = [line for line in err.splitlines() if line.startswith("cascade: error:")]
        assert len(errors) == 1, err
        low = errors[0].lower()
        assert any(w in low for w in ("expected", "invalid choice", "required",
                                      "unrecognized")), errors[0]
        return
    if argv[0] == "run":
        s = json.loads((_FOLDER / "out" / "summary.json").read_text())
        check_accounting(pd.read_parquet(_FOLDER / "out" / "positions.parquet"),
                         pd.read_parquet(_FOLDER / "out" / "liquidations.parquet"), s)
        assert np.isfinite(pd.read_parquet(_FOLDER / "out" / "steps.parquet")
                           .drop(columns="branching_ratio").to_numpy(dtype=float)).all()
    if argv[0] == "liq-price" and "--json" in argv:
        r = json.loads(out)
        for k in ("entry_price", "size", "wallet_usd", "bankruptcy_price", "notional_usd"):
            assert math.isfinite(r[k]), (k, r)


# ------------------------------------------------------------------------------- kline files
FIELD = st.one_of(st.sampled_from(["", "nan", "inf", "-1", "0", "1e308", "abc", "121493.2",
                                   "1760097600000", '"1"', "1,2"]),
                  st.floats(allow_nan=False, allow_infinity=False).map(repr))


@st.composite
def kline_texts(draw) -> bytes:
    rows = _rows(draw(st.integers(1, 5)))
    for _ in range(draw(st.integers(0, 3))):
        r = draw(st.integers(0, len(rows) - 1))
        c = draw(st.integers(0, 11))
        rows[r][c] = draw(FIELD)
    if draw(st.booleans()):
        r = draw(st.integers(0, len(rows) - 1))
        rows[r] = rows[r][: draw(st.integers(0, 11))]
    lines = ([HEADER] if draw(st.booleans()) else []) + [",".join(r) for r in rows]
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    text = (sep.join(lines) + sep).encode()
    if draw(st.booleans()):
        text = b"\xef\xbb\xbf" + text
    if draw(st.integers(0, 5)) == 0:
        text = text[:-3] + b"\xff" + text[-3:]
    return text


@settings(max_examples=60, **SETTINGS)
@given(text=kline_texts())
def test_kline_files_give_a_clean_error_or_finite_candles(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "k.csv"
        path.write_bytes(text)
        try:
            df = read_klines(path)
        except CascadeError as exc:
            _clean_error(str(exc), str(path))
            return
        assert len(df) >= 1 and df.index.is_monotonic_increasing
        assert np.isfinite(df[["open", "high", "low", "close"]].to_numpy()).all()
        assert (df[["open", "high", "low", "close"]].to_numpy() > 0).all()
