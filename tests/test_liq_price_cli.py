"""``cascade liq-price``: output, checked examples, and bad input -> one line, exit 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

import cascade.cli
from cascade.cli import liq_price
from cascade.errors import CascadeError

BASE = ["--venue", "binance", "--symbol", "BTCUSDT", "--entry", "65000", "--size", "1",
        "--leverage", "20", "--margin", "isolated", "--wallet", "3250"]


def run_subcommand(argv, capsys):
    """Parse with a parser holding only this subcommand's arguments and run it."""
    p = argparse.ArgumentParser()
    liq_price.add_arguments(p)
    rc = liq_price.main(p.parse_args(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_cli(argv, capsys):
    """Through ``cascade.cli.main``; argparse errors raise SystemExit, CascadeError returns 2."""
    try:
        rc = cascade.cli.main(["liq-price", *argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_module_protocol():
    assert liq_price.NAME == "liq-price" and liq_price.HELP
    assert "liq_price" in cascade.cli.SUBCOMMANDS


@pytest.mark.parametrize(
    "extra, lp, bp",
    [
        (["--side", "long"], 61_997.99, 61_750.0),
        (["--side", "long", "--date", "2025-09-01"], 61_997.99, 61_750.0),
        (["--side", "long", "--date", "2025-03-01"], 62_010.05, 61_750.0),
        (["--side", "short"], 67_978.09, 68_250.0),
    ],
)
def test_checked_examples_json(extra, lp, bp, capsys):
    rc, out, err = run_subcommand([*BASE, *extra, "--json"], capsys)
    assert rc == 0 and err == ""
    r = json.loads(out)
    np.testing.assert_allclose(r["liquidation_price"], lp, atol=0.005)
    np.testing.assert_allclose(r["bankruptcy_price"], bp, atol=0.005)
    assert r["venue"] == "binance" and r["symbol"] == "BTCUSDT" and r["wallet_usd"] == 3250.0


def test_human_table(capsys):
    rc, out, err = run_subcommand([*BASE, "--side", "long"], capsys)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert any(line.startswith("liquidation price") and line.endswith("61,997.99")
               for line in lines)
    assert any(line.startswith("bankruptcy price") and line.endswith("61,750.00")
               for line in lines)
    # aligned: every value starts in the same column
    cols = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in lines}
    assert len(cols) == 1


def test_hyperliquid_and_cross(capsys):
    rc, out, _ = run_subcommand(["--venue", "hyperliquid", "--symbol", "BTC", "--side", "long",
                                 "--entry", "100000", "--size", "1", "--leverage", "20",
                                 "--json"], capsys)
    assert rc == 0
    r = json.loads(out)
    # (5,000 - 100,000) / (1/80 - 1) = 96,202.53 (see test_margin.test_hyperliquid_hand_worked)
    np.testing.assert_allclose(r["liquidation_price"], 95_000 / 0.9875, atol=0.005)
    assert r["liquidation_fee_rate"] == 0.0
    rc, out, _ = run_subcommand([*BASE, "--side", "long", "--margin", "cross", "--wallet",
                                 "10000", "--other-mm", "500", "--other-upnl", "-1500", "--json"],
                                capsys)
    r = json.loads(out)
    np.testing.assert_allclose(r["liquidation_price"], 57_000 / 0.996, atol=0.005)
    rc, out, _ = run_subcommand([*BASE, "--side", "long", "--margin", "cross", "--wallet",
                                 "10000", "--other-mm", "500"], capsys)
    assert "other positions MM" in out


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--leverage", "200"], r"leverage 200x .*maximum 150x"),
        (["--date", "2025-3-x"], r"--date '2025-3-x': expected a date"),
        (["--date", "2019-12-31"], r"2019-12-31"),
        (["--symbol", "DOGEUSDT"], r"unknown symbol 'DOGEUSDT'"),
        (["--entry", "-5"], r"entry price: expected a positive number, got -5"),
    ],
)
def test_bad_input_raises_cascade_error(argv, pattern, capsys):
    with pytest.raises(CascadeError, match=pattern):
        run_subcommand([*BASE, "--side", "long", *argv], capsys)


# --- through the real dispatcher (cascade.cli.main) ------------------------------------------

def test_cli_main_json(capsys):
    rc, out, err = run_cli([*BASE, "--side", "short", "--json"], capsys)
    assert rc == 0 and err == ""
    np.testing.assert_allclose(json.loads(out)["liquidation_price"], 67_978.09, atol=0.005)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--leverage", "200"], "200x"),
        # 50 BTC @ 100,000 = 5M notional, bracket 4 allows 50x
        (["--entry", "100000", "--size", "50", "--leverage", "100"], "5,000,000.00 USD"),
        (["--entry", "-5"], "-5"),
        (["--symbol", "XRPUSDT"], "'XRPUSDT'"),
        (["--date", "2019-12-31"], "2019-12-31"),
        (["--date", "31/12/2025"], "'31/12/2025'"),
        (["--venue", "bybit"], "'bybit'"),        # argparse choices
        (["--entry", "abc"], "'abc'"),             # argparse type
    ],
)
def test_cli_main_bad_input_exit_2(argv, needle, capsys):
    rc, out, err = run_cli([*BASE, "--side", "long", *argv], capsys)
    assert rc == 2
    assert out == ""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("cascade: error:") and needle in last


def test_cli_subprocess_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "cascade.cli", "liq-price", *BASE, "--side", "long",
         "--date", "2025-02-30"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("cascade: error: --date '2025-02-30': expected a date in "
                                   "YYYY-MM-DD form")
