"""Input files (issue 14 item 5, issue 13 special files): a UTF-8 byte-order mark is accepted, a
file that is not UTF-8 is reported with the line and byte where it fails, a FIFO or device gets a
clear error without blocking; and the memory estimate refuses a run that cannot fit, before
allocating anything."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest

from cascade.engine import memory
from cascade.errors import CascadeError
from cascade.io.klines import read_klines
from cascade.model.scenario import load_scenario
from tests.conftest import START, make_scenario

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "demo.toml"


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "cascade.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_scenario_with_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEMO.read_bytes())
    assert load_scenario(path).digest == load_scenario(DEMO).digest


def test_scenario_not_utf8_names_the_line_and_byte(tmp_path):
    text = DEMO.read_bytes().splitlines(keepends=True)
    k = next(i for i, line in enumerate(text) if line.startswith(b"description"))
    col = text[k].index(b"$") + 1
    text[k] = text[k].replace(b"$", b"\xa3")  # a pound sign in latin-1
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"".join(text))
    with pytest.raises(CascadeError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: line {k + 1}, byte {col}: not valid UTF-8 (byte 0xa3)"), msg
    r = _cli("validate", path)
    assert r.returncode == 2 and f"line {k + 1}, byte {col}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("what", ["scenario", "reference"])
def test_a_fifo_is_refused_without_blocking(tmp_path, what):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(CascadeError, match="not a regular file"):
        load_scenario(fifo) if what == "scenario" else read_klines(fifo)
    args = ["run", fifo] if what == "scenario" else ["run", DEMO, "--reference", fifo,
                                                     "--positions", "0"]
    r = _cli(*args, "--out", tmp_path / "out", "--quiet", timeout=60)  # a hang fails here
    assert r.returncode == 2, r.stderr
    assert "not a regular file" in r.stderr and str(fifo) in r.stderr
    assert "Traceback" not in r.stderr


def test_a_device_is_refused():
    with pytest.raises(CascadeError, match="not a regular file"):
        load_scenario("/dev/zero")


# ---------------------------------------------------------------------------- memory estimate
def test_too_many_steps_are_refused_before_allocating():
    """30 minutes at step_s = 3.6e-5 s: 50,000,000 steps (the schema's limit); with 8 GB
    available the run is refused, naming step_s, the window and --positions and giving the
    estimate, before the population or the engine state is built."""
    sc = make_scenario(**{"scenario.end": START + dt.timedelta(minutes=30),
                          "scenario.step_s": 3.6e-5, "population.positions": 1000, "flows": []})
    assert sc.n_steps == 50_000_000
    est = memory.estimate_bytes(sc)
    assert est["total"] == 50_000_000 * est["per_step"] + est["positions"] * est["per_position"]
    from cascade import runner

    tracemalloc.start()
    with mock.patch.object(memory, "available_bytes", return_value=8 * 10**9), \
            mock.patch("cascade.model.population.build_population",
                       side_effect=AssertionError("allocated")), \
            mock.patch("cascade.engine.EngineState.for_venues",
                       side_effect=AssertionError("allocated")), \
            pytest.raises(CascadeError) as info:
        runner.simulate(sc)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing per step was allocated
    msg = str(info.value)
    for needle in ("step_s", "window", "--positions", "50,000,000 steps", "GB", "8.0 GB"):
        assert needle in msg, (needle, msg)
    # within the memory it fits, the estimate passes
    assert memory.check_memory(sc, available=10**12)["total"] == est["total"]


def test_per_step_estimate_covers_the_outputs():
    from cascade.engine import COLUMNS

    # at least the engine's array, one frame and its parquet copy, per venue
    for v in (1, 2, 3):
        assert memory.bytes_per_step(v) >= 3 * 8 * len(COLUMNS) * v
    assert memory.bytes_per_step(2, 2) > memory.bytes_per_step(2) > memory.bytes_per_step(1)


def test_too_many_positions_are_refused_on_this_machine(tmp_path):
    """2e9 positions (the schema's limit) need far more memory than any machine here has."""
    r = _cli("run", DEMO, "--positions", "2_000_000_000", "--out", tmp_path / "out", "--quiet")
    assert r.returncode == 2, r.stderr
    assert "--positions" in r.stderr and "GB" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_estimate_counts_the_positions_it_writes(tmp_path):
    """`cascade run` writes positions.parquet: its estimate per position is the saved one, and a
    run that would fit only without writing them is refused before anything is built."""
    sc = make_scenario(**{"population.positions": 1000})
    plain, saved = memory.estimate_bytes(sc), memory.estimate_bytes(sc, save=True)
    assert saved["per_position"] == memory.BYTES_PER_POSITION_SAVED > plain["per_position"]
    between = (plain["total"] + saved["total"]) // 2
    assert memory.check_memory(sc, available=between)["total"] == plain["total"]
    with pytest.raises(CascadeError, match="GB of memory available"):
        memory.check_memory(sc, available=between, save=True)


def test_lazy_empty_buffers():
    """A worst-case buffer larger than the machine's memory is mapped without being counted
    (Linux): only the pages written become resident. Small ones are plain np.empty."""
    import sys

    from cascade.engine.layout import RECORD_DTYPE

    small = memory.lazy_empty(10, RECORD_DTYPE)
    assert small.shape == (10,) and small.dtype == RECORD_DTYPE and small.flags.writeable
    if not sys.platform.startswith("linux"):
        return
    total = memory.available_bytes() or 2**34
    n = int(2 * total // RECORD_DTYPE.itemsize) + 1  # twice what the machine has
    big = memory.lazy_empty(n, RECORD_DTYPE)
    assert big.shape == (n,) and big.flags.writeable
    big["qty"][0], big["qty"][n - 1] = 1.5, 2.5
    assert big["qty"][0] == 1.5 and big["qty"][n - 1] == 2.5
