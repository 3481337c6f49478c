"""Bad input gives one clear line naming the file, the key and what was expected, and exit 2.

Each case is a broken copy of ``scenarios/demo.toml``. It is checked three ways: ``load_scenario``
raises :class:`CascadeError` with the right message; ``cascade.cli.main`` prints one
``cascade: error:`` line and returns 2; and, for a few cases, a real ``python -m cascade.cli``
subprocess shows that no traceback reaches the terminal.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import cascade.cli
from cascade.errors import CascadeError
from cascade.model.scenario import load_scenario
from tests.test_scenario import DEMO, DEMO_TEXT, HOUR, START, edit, history, iso, set_key


def sub(**changes: str | None) -> Callable[[str], str]:
    """Key-by-key edit of the demo (see :func:`tests.test_scenario.edit`)."""
    return lambda text: edit(text, **changes)


def append(extra: str) -> Callable[[str], str]:
    return lambda text: text + extra


def header_line(text: str, header: str) -> int:
    """1-based number of the line that is exactly ``header``."""
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == header]
    assert len(lines) == 1
    return lines[0]


def key_line(text: str, section: str, key: str) -> int:
    marked = set_key(text, section, key, "'@@here@@'")
    return next(i + 1 for i, line in enumerate(marked.splitlines()) if "@@here@@" in line)


def drop_history(text: str) -> str:
    return set_key(text, "population", "history", None)


def shift_years(text: str, years: int) -> str:
    """Every date and date-time in ``text`` moved by ``years``."""
    out, n = re.subn(r"\b(\d{4})-(\d\d-\d\d)", lambda m: f"{int(m[1]) + years}-{m[2]}", text)
    assert n >= 4
    return out


LEVERAGES = "[2, 5, 10, 20, 50, 100]"
WEIGHTS = "[0.35, 0.3, 0.18, 0.1, 0.05, 0.02]"
START_ISO = iso(START)
NAN_PRICE = history((START - 48 * HOUR, 104000.0), (START - HOUR, 1.0), (START, 110000.0))
NAN_PRICE = NAN_PRICE.replace(", 1.0]", ", nan]")


@dataclass
class Case:
    id: str
    make: Callable[[str], str] | None   # demo text -> bad text; None: see `special`
    key: list[str]                      # what names the key (besides the file path)
    expect: list[str]                   # what says what was expected (and what was found)
    special: str = ""                   # "missing", "directory", "latin1": not a text edit


UNCLOSED_LINE = header_line(DEMO_TEXT, "[market]")
NAME_LINE = key_line(DEMO_TEXT, "scenario", "name")
ONCE = "expected each key and table to be defined only once"

CASES = [
    # unknown key in each section, and an unknown section
    Case("unknown-key-scenario", sub(scenario__stepsize="2"),
         ["[scenario]", "'stepsize'"], ["unknown key", "expected one of", "step_s"]),
    Case("unknown-key-venue", sub(venue__exchange='"x"'),
         ["[venue]", "'exchange'"], ["unknown key", "expected one of", "bracket_date"]),
    Case("unknown-key-population", sub(population__positons="200_000"),
         ["[population]", "'positons'"], ["unknown key", "expected one of", "positions"]),
    Case("unknown-key-market", sub(market__dpeth_usd="65_000_000"),
         ["[market]", "'dpeth_usd'"], ["unknown key", "expected one of", "depth_usd"]),
    Case("unknown-key-engine", sub(engine__latency="1"),
         ["[engine]", "'latency'"], ["unknown key", "expected one of", "latency_s"]),
    Case("unknown-key-flows", sub(flows__rate_usd="1"),
         ["[[flows]] #1", "'rate_usd'"], ["unknown key", "expected one of", "usd_per_min"]),
    Case("unknown-section", append("\n[markets]\ndepth_usd = 1\n"),
         ["[markets]"], ["unknown section", "expected one of", "[market]"]),
    Case("top-level-key", lambda t: "seed = 42\n" + t,
         ["seed"], ["unknown section", "expected one of", "[scenario]"]),
    # wrong types
    Case("string-for-number", sub(market__depth_usd='"65M"'),
         ["[market] depth_usd"], ["expected a number", "got '65M'"]),
    Case("float-for-int", sub(population__positions="1000.5"),
         ["[population] positions"], ["expected an integer", "got 1000.5"]),
    Case("float-for-int-seed", sub(scenario__seed="4.2"),
         ["[scenario] seed"], ["expected an integer", "got 4.2"]),
    Case("number-for-bool", sub(engine__feedback="1"),
         ["[engine] feedback"], ["expected true or false", "got 1"]),
    Case("bool-for-number", sub(scenario__step_s="true"),
         ["[scenario] step_s"], ["expected a number", "got True"]),
    Case("string-for-list", sub(population__leverages='"2,5"'),
         ["[population] leverages"], ["expected a list of numbers", "got '2,5'"]),
    Case("string-for-datetime", sub(scenario__start='"yesterday"'),
         ["[scenario] start"], ["expected a UTC date-time", "got 'yesterday'"]),
    Case("section-not-a-table", lambda t: t.replace("[scenario]", "[[scenario]]", 1),
         ["[scenario]"], ["must be a table"]),
    # out of range
    Case("negative-depth", sub(market__depth_usd="-1"),
         ["[market] depth_usd"], ["expected a number, > 0", "got -1"]),
    Case("zero-depth", sub(market__depth_usd="0"),
         ["[market] depth_usd"], ["expected a number, > 0", "got 0"]),
    Case("share-above-1", sub(population__long_share="1.5"),
         ["[population] long_share"], ["<= 1", "got 1.5"]),
    Case("weights-sum-0.9", sub(population__leverages=LEVERAGES,
                                population__leverage_weights="[0.35, 0.3, 0.18, 0.05, 0.0, 0.02]"),
         ["[population] leverage_weights"], ["expected weights summing to 1", "got 0.9"]),
    Case("weights-wrong-length", sub(population__leverages=LEVERAGES,
                                     population__leverage_weights="[0.5, 0.5]"),
         ["[population] leverage_weights"], ["expected 6 weights, one per leverage", "got 2"]),
    Case("entry-weights-sum-0.5", sub(population__entry_order_leverage_weights="[0.2, 0.2, 0.1]"),
         ["[population] entry_order_leverage_weights"],
         ["expected weights summing to 1", "got 0.5"]),
    Case("entry-weights-wrong-length", sub(population__entry_order_leverage_weights="[1.0]"),
         ["[population] entry_order_leverage_weights"],
         ["expected 3 weights, one per leverage", "got 1"]),
    Case("leverage-200", sub(venue__name='"binance"', venue__symbol='"BTCUSDT"',
                             venue__bracket_date="2025-10-10",
                             population__leverages="[2, 5, 10, 20, 50, 200]",
                             population__leverage_weights=WEIGHTS),
         ["[population] leverages"], ["expected leverages up to the bracket maximum 150x",
                                      "binance BTCUSDT", "got 200"]),
    Case("leverage-below-1", sub(population__leverages="[0.5, 5, 10, 20, 50, 100]",
                                 population__leverage_weights=WEIGHTS),
         ["[population] leverages"], ["each element >= 1", "got 0.5"]),
    Case("end-before-start", sub(scenario__end=iso(START - HOUR)),
         ["[scenario] end"], [f"expected a time after start ({START.isoformat()})",
                              f"got {(START - HOUR).isoformat()}"]),
    Case("end-equals-start", sub(scenario__end=START_ISO),
         ["[scenario] end"], ["expected a time after start", f"got {START.isoformat()}"]),
    Case("stop-range-reversed", sub(population__stop_loss_distance_pct="[5.0, 1.0]"),
         ["[population] stop_loss_distance_pct"], ["low <= high", "got [5.0, 1.0]"]),
    Case("year-out-of-range", sub(scenario__end="2300-01-01T00:00:00Z"),
         ["[scenario] end"], ["expected a UTC date-time from 1970 to 2261", "got 2300-01-01"]),
    Case("lookback-huge", sub(population__entry_lookback_h="1e300"),
         ["[population] entry_lookback_h"], ["<= 87600", "got 1e+300"]),
    Case("latency-beyond-window", sub(engine__latency_s="1e300"),
         ["[engine] latency_s"], ["expected a number, >= 0 and <= 3.1536e+07"]),
    # NaN and infinities (TOML allows nan and inf)
    Case("nan", sub(market__depth_usd="nan"),
         ["[market] depth_usd"], ["expected a number", "got nan"]),
    Case("inf", sub(venue__insurance_fund_usd="inf"),
         ["[venue] insurance_fund_usd"], ["expected a number", "got inf"]),
    Case("minus-inf", sub(market__dip_buy_threshold_pct="-inf"),
         ["[market] dip_buy_threshold_pct"], ["expected a number", "got -inf"]),
    Case("nan-in-list", sub(population__leverages=LEVERAGES,
                            population__leverage_weights="[0.35, 0.3, 0.18, 0.1, 0.05, nan]"),
         ["[population] leverage_weights"], ["expected a list of numbers", "got nan"]),
    Case("nan-price", sub(population__entry_lookback_h="48.0",
                          population__history=NAN_PRICE),
         ["[population] history price"], ["expected a number, >= 1e-08", "got nan"]),
    # malformed TOML: the message quotes the offending line, which names the key
    Case("unclosed-bracket", lambda t: t.replace("\n[market]", "\n[market", 1),
         ["'[market'"], ["not valid TOML", "Expected ']'", f"line {UNCLOSED_LINE}"]),
    Case("duplicate-key", lambda t: set_key(t, "scenario", "seed", "42\nseed = 43"),
         ["'seed = 43'"], ["not valid TOML", ONCE]),
    Case("duplicate-table", append("\n[engine]\nfeedback = false\n"),
         ["'[engine]'"], ["not valid TOML", ONCE]),
    Case("unterminated-string", sub(scenario__name='"demo'),
         ["'name = \"demo'"], ["not valid TOML", f"line {NAME_LINE}"]),
    # missing keys
    Case("flow-without-rate", sub(flows__usd_per_min=None),
         ["[[flows]] #1 usd_per_min"], ["expected exactly one of usd_per_min", "got neither"]),
    Case("flow-with-both-rates", sub(flows__oi_share_per_min="0.001"),
         ["[[flows]] #1 usd_per_min"], ["expected exactly one of usd_per_min", "got both"]),
    Case("flow-share-above-one", sub(flows__oi_share_per_min="2"),
         ["[[flows]] #1 oi_share_per_min"], ["expected a number, >= 0 and <= 1", "got 2"]),
    Case("dip-in-both-forms", sub(market__dip_buy_depth_share_per_pct="0.01"),
         ["[market] dip_buy_usd_per_s_per_pct"], ["expected only one of", "got both"]),
    Case("missing-start", sub(scenario__start=None),
         ["[scenario]", "missing key 'start'"], ["expected a UTC date-time"]),
    Case("missing-history", drop_history,
         ["[population] history"], ["expected a price history before the start",
                                    "history_klines"]),
    Case("history-klines-not-found",
         lambda t: set_key(drop_history(t), "population", "history_klines", '"no-such.csv"'),
         ["[population] history_klines"], ["expected a file path", "'no-such.csv'",
                                           "not found"]),
    Case("bad-dip-buy-reference", sub(market__dip_buy_reference='"fare"'),
         ["[market] dip_buy_reference"], ["expected one of 'average', 'fair'", "got 'fare'"]),
    Case("bad-permanent-depth", sub(market__permanent_depth='"full"'),
         ["[market] permanent_depth"], ["expected one of 'current', 'normal'", "got 'full'"]),
    # venue
    Case("unknown-venue", sub(venue__name='"bybit"'),
         ["[venue] name"], ["expected one of 'binance', 'hyperliquid'", "got 'bybit'"]),
    Case("bad-symbol", sub(venue__name='"binance"', venue__symbol='"DOGEUSDT"'),
         ["[venue] symbol"], ["expected a contract of binance", "'DOGEUSDT'",
                              "BTCUSDT, ETHUSDT"]),
    Case("bracket-date-2019", sub(venue__bracket_date="2019-12-31"),
         ["[venue] bracket_date"], ["expected a date from 2020-01-01 on", "2019-12-31"]),
    Case("bracket-date-not-a-date", sub(venue__bracket_date='"soon"'),
         ["[venue] bracket_date"], ["expected a date such as 2025-10-10", "got 'soon'"]),
    Case("start-before-brackets",
         lambda t: shift_years(set_key(t, "venue", "bracket_date", None, must_exist=False),
                               2019 - START.year),
         ["[scenario] start", "bracket_date"], ["expected a date from 2020-01-01 on",
                                                f"2019-{START:%m-%d}"]),
    # the file itself
    Case("missing-file", None, [], ["no such file; expected a scenario .toml file"],
         special="missing"),
    Case("directory", None, [], ["not a regular file (a directory); expected a scenario .toml "
                                 "file"], special="directory"),
    Case("not-utf8", None, [], ["not valid UTF-8", "expected a scenario .toml file"],
         special="latin1"),
]
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES)


def make_bad(case: Case, tmp_path: Path) -> Path:
    """Write the bad scenario of ``case`` under ``tmp_path``; return its path."""
    path = tmp_path / f"{case.id}.toml"
    if case.special == "missing":
        return path
    if case.special == "directory":
        path.mkdir()
        return path
    if case.special == "latin1":
        path.write_bytes(set_key(DEMO_TEXT, "scenario", "name", '"démo"').encode("latin-1"))
        return path
    text = case.make(DEMO_TEXT)
    assert text != DEMO_TEXT
    path.write_text(text, encoding="utf-8")
    return path


def check_message(msg: str, path: Path, case: Case) -> None:
    assert str(path) in msg, f"file not named: {msg!r}"
    for needle in case.key:
        assert needle in msg, f"key {needle!r} not named: {msg!r}"
    for needle in case.expect:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert "\n" not in msg


def test_the_demo_itself_loads():
    """The cases edit a valid file: any error comes from the edit."""
    assert load_scenario(DEMO).name == "demo"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_load_scenario_message(case, tmp_path):
    path = make_bad(case, tmp_path)
    with pytest.raises(CascadeError) as info:
        load_scenario(path)
    check_message(str(info.value), path, case)


def cli(argv, capsys) -> tuple[int, str, str]:
    """``cascade.cli.main`` in-process; argparse errors raise SystemExit."""
    try:
        rc = cascade.cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cascade: error: ")
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_run_exit_2(case, tmp_path, capsys):
    path = make_bad(case, tmp_path)
    out_dir = tmp_path / "o"
    rc, out, err = cli(["run", path, "--quiet", "--out", out_dir], capsys)
    assert rc == 2
    assert out == ""
    line = one_error_line(err)
    check_message(line.removeprefix("cascade: error: "), path, case)
    assert not out_dir.exists()  # failed before the run started


SUBPROCESS_CASES = ["unknown-key-market", "duplicate-key", "leverage-200", "nan", "not-utf8",
                    "missing-history"]


def run_subprocess(argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cascade.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_subprocess_run_no_traceback(case_id, tmp_path):
    case = BY_ID[case_id]
    path = make_bad(case, tmp_path)
    proc = run_subprocess(["run", path, "--quiet", "--out", tmp_path / "o"])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    line = one_error_line(proc.stderr)
    check_message(line.removeprefix("cascade: error: "), path, case)


# --- bad command-line arguments ----------------------------------------------------------

@pytest.mark.parametrize("argv, needles", [
    (["run", DEMO, "--positions", "-5"], ["argument --positions", "expected a number >= 0",
                                          "'-5'"]),
    (["run", DEMO, "--positions", "abc"], ["argument --positions", "expected a whole number",
                                           "'abc'"]),
    (["run", DEMO, "--positions", "2.5e0"], ["argument --positions", "expected a whole number"]),
    (["run", DEMO, "--seed", "x"], ["argument --seed", "expected a whole number", "'x'"]),
    (["run", DEMO, "--threads", "-1"], ["argument --threads", "expected a number >= 0"]),
    (["run", DEMO, "--bogus"], ["unrecognized arguments: --bogus"]),
    (["run"], ["required", "scenario"]),
    ([], ["required", "COMMAND"]),
    (["simulate", DEMO], ["invalid choice: 'simulate'"]),
])
def test_bad_cli_arguments(argv, needles, capsys):
    rc, out, err = cli(argv, capsys)
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cascade: error: ")
    for needle in needles:
        assert needle in last, f"{needle!r} not in {last!r}"


def test_positions_above_the_schema_maximum(tmp_path, capsys):
    """--positions passes the CLI parser but not the scenario schema: still one line, exit 2."""
    rc, out, err = cli(["run", DEMO, "--quiet", "--out", tmp_path / "o", "--positions",
                        "3_000_000_000"], capsys)
    assert rc == 2 and out == ""
    line = one_error_line(err)
    assert str(DEMO) in line and "[population] positions" in line and "<= 2e+09" in line


def test_out_is_a_file(tmp_path, capsys):
    """A bad --out fails at once with one line, not with a traceback after the simulation."""
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    rc, out, err = cli(["run", DEMO, "--quiet", "--out", not_a_dir], capsys)
    assert rc == 2 and out == ""
    line = one_error_line(err)
    assert f"--out {not_a_dir}" in line and "expected a folder" in line


@pytest.mark.parametrize("argv, needle", [
    (["run", DEMO, "--positions", "-5"], "argument --positions: expected a number >= 0"),
    (["run", DEMO, "--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
    (["run", DEMO, "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["run"], "the following arguments are required: scenario"),
    (["liq-price", "--side", "long", "--entry", "65000", "--size", "1", "--leverage", "200"],
     "leverage 200x is above the maximum 150x"),
])
def test_subprocess_bad_arguments_no_traceback(argv, needle):
    proc = run_subprocess(argv)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cascade: error: ") and needle in last
