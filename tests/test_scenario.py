"""Scenario files: demo.toml, defaults, n_steps, overrides, digest, schema reference and
cross-checks."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest

from cascade.errors import CascadeError
from cascade.scenario import (
    ARRAY_SECTIONS,
    REQUIRED,
    SCHEMA,
    load_scenario,
    parse_scenario,
    schema_markdown,
    venue_date,
)

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "demo.toml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
UTC = dt.timezone.utc

# only the required keys (and a history, which a cross-check requires); everything else defaults
MINIMAL = """\
[scenario]
name = "minimal"
start = 2025-10-10T20:00:00Z
end = 2025-10-10T21:00:00Z

[population]
open_interest_usd = 1e9
history = [[2025-10-07T20:00:00Z, 100000.0], [2025-10-10T20:00:00Z, 100000.0]]

[market]
depth_usd = 1e7
"""


def edited(*pairs: tuple[str, str], text: str = DEMO_TEXT) -> str:
    """``text`` with each ``old`` replaced by ``new``; ``old`` must occur exactly once."""
    for old, new in pairs:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the demo"
        text = text.replace(old, new)
    return text


def write(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str):
    return load_scenario(write(tmp_path, text))


def fails(tmp_path: Path, text: str, *needles: str) -> str:
    """Loading ``text`` raises CascadeError naming the file and every needle; returns the
    message."""
    path = write(tmp_path, text)
    with pytest.raises(CascadeError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# --- demo.toml and defaults ------------------------------------------------------------------

def test_demo_loads():
    sc = load_scenario(DEMO)
    assert sc.name == "demo" and sc.path == DEMO
    assert sc.scenario.start == dt.datetime(2025, 10, 10, 20, tzinfo=UTC)
    assert sc.scenario.end == dt.datetime(2025, 10, 10, 22, tzinfo=UTC)
    assert sc.scenario.step_s == 1.0 and sc.scenario.seed == 42
    assert sc.venue.name == "binance" and sc.venue.symbol == "BTCUSDT"
    assert sc.population.positions == 200_000
    assert sc.population.leverages == [2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    assert sc.population.stop_loss_distance_pct == [1.0, 5.0]
    assert sc.population.history[0] == (dt.datetime(2025, 10, 8, 20, tzinfo=UTC), 104000.0)
    assert sc.market.depth_usd == 65e6 and sc.engine.feedback is True
    assert len(sc.flows) == 1
    f = sc.flows[0]
    assert (f.label, f.side, f.duration_min, f.usd_per_min) == ("headline sell program", "sell",
                                                                10.0, 50e6)
    assert f.start == dt.datetime(2025, 10, 10, 20, 30, tzinfo=UTC)
    assert sc.targets == {}


def test_demo_defaults_for_omitted_keys():
    sc = load_scenario(DEMO)
    assert "bracket_date" not in sc.raw["venue"] and "history_klines" not in sc.raw["population"]
    assert sc.venue.bracket_date is None
    assert venue_date(sc) == dt.date(2025, 10, 10)          # default: the start date
    assert sc.population.history_klines is None


def test_every_omitted_key_gets_its_documented_default(tmp_path):
    sc = load_text(tmp_path, MINIMAL)
    checked = 0
    for section, fields in SCHEMA.items():
        if section in ARRAY_SECTIONS:
            continue
        ns = getattr(sc, section)
        for key, field in fields.items():
            if key in sc.raw.get(section, {}):
                continue
            assert field.default is not REQUIRED, f"{section}.{key} is required"
            assert getattr(ns, key) == field.default, f"{section}.{key}"
            checked += 1
    given = sum(len(sc.raw[s]) for s in sc.raw)
    assert given == 6
    assert checked == sum(len(f) for s, f in SCHEMA.items() if s not in ARRAY_SECTIONS) - given
    # spot checks against the documented values
    assert sc.scenario.step_s == 1.0 and sc.scenario.seed == 0 and sc.scenario.description == ""
    assert sc.venue.name == "binance" and sc.venue.symbol == "BTCUSDT"
    assert sc.venue.insurance_fund_usd == 1e9
    assert sc.population.positions == 100_000 and sc.population.entry_lookback_h == 72.0
    assert sc.population.leverage_weights == [0.3, 0.3, 0.2, 0.1, 0.07, 0.03]
    assert sc.market.impact_exponent == 0.5 and sc.engine.max_iterations == 20
    assert sc.engine.latency_s == 0.0 and sc.engine.feedback is True
    assert sc.flows == ()


def test_flow_defaults(tmp_path):
    text = MINIMAL + ("\n[[flows]]\nstart = 2025-10-10T20:10:00Z\nduration_min = 5\n"
                      "usd_per_min = 1e6\n")
    (f,) = load_text(tmp_path, text).flows
    assert f.side == "sell" and f.label == "" and f.duration_min == 5.0


def test_default_lists_are_not_shared_with_the_schema(tmp_path):
    sc = load_text(tmp_path, MINIMAL)
    sc.population.leverages.append(125.0)
    assert SCHEMA["population"]["leverages"].default == [2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    assert load_text(tmp_path, MINIMAL).population.leverages[-1] == 100.0


def test_parse_scenario_from_a_dict(tmp_path):
    import tomllib

    sc = parse_scenario(tomllib.loads(MINIMAL))
    assert sc.path is None and sc.name == "minimal"
    with pytest.raises(CascadeError, match=r"^<dict>: \[market\] missing key 'depth_usd'"):
        parse_scenario(tomllib.loads(MINIMAL.replace("depth_usd = 1e7", "")))


# --- n_steps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("step_s, end, n", [
    ("1.0", "2025-10-10T22:00:00Z", 7200),
    ("2.0", "2025-10-10T22:00:00Z", 3600),
    ("0.5", "2025-10-10T22:00:00Z", 14400),
    ("7.5", "2025-10-10T22:00:00Z", 960),
    ("1.0", "2025-10-10T20:00:01Z", 1),
])
def test_n_steps(tmp_path, step_s, end, n):
    text = edited(("step_s = 1.0", f"step_s = {step_s}"),
                  ("end = 2025-10-10T22:00:00Z", f"end = {end}"),
                  ("start = 2025-10-10T20:30:00Z", "start = 2025-10-10T20:00:00Z"))  # the flow
    assert load_text(tmp_path, text).n_steps == n


# --- with_overrides ----------------------------------------------------------------------------

def test_with_overrides_applies_and_leaves_the_original_alone():
    sc = load_scenario(DEMO)
    sc2 = sc.with_overrides(**{"population.positions": 10, "scenario.seed": 7,
                               "engine.feedback": False})
    assert (sc2.population.positions, sc2.scenario.seed, sc2.engine.feedback) == (10, 7, False)
    assert sc2.path == DEMO and sc2.market.depth_usd == sc.market.depth_usd
    assert (sc.population.positions, sc.scenario.seed, sc.engine.feedback) == (200_000, 42, True)
    assert sc.raw["population"]["positions"] == 200_000


def test_load_scenario_with_overrides():
    sc = load_scenario(DEMO, **{"market.depth_usd": 1e8})
    assert sc.market.depth_usd == 1e8


@pytest.mark.parametrize("overrides, needles", [
    ({"population.positions": -1}, ["[population] positions", "expected an integer", "-1"]),
    ({"population.positions": 3_000_000_000}, ["[population] positions", "<= 2e+09"]),
    ({"market.depth_usd": 0.0}, ["[market] depth_usd", "> 0"]),
    ({"engine.feedback": "yes"}, ["[engine] feedback", "true or false"]),
    ({"scenario.end": dt.datetime(2025, 10, 10, 19, tzinfo=UTC)},
     ["[scenario] end", "expected a time after start"]),
    ({"population.leverage_weights": [0.5, 0.5, 0, 0, 0, 0.1]},
     ["[population] leverage_weights", "summing to 1"]),
    ({"population.leverages": [2, 5, 10, 20, 50, 200]},
     ["[population] leverages", "bracket maximum 150x"]),
    ({"market.dpeth_usd": 1.0}, ["[market] unknown key 'dpeth_usd'", "expected one of"]),
    ({"bogus.key": 1}, ["unknown section [bogus]"]),
])
def test_with_overrides_revalidates(overrides, needles):
    sc = load_scenario(DEMO)
    with pytest.raises(CascadeError) as info:
        sc.with_overrides(**overrides)
    msg = str(info.value)
    assert str(DEMO) in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


@pytest.mark.parametrize("dotted", ["positions", "population.positions.x", "flows.start"])
def test_with_overrides_bad_name(dotted):
    with pytest.raises(CascadeError, match=r"expected 'section\.key'"):
        load_scenario(DEMO).with_overrides(**{dotted: 1})


# --- digest ------------------------------------------------------------------------------------

def test_digest_stable():
    a, b = load_scenario(DEMO), load_scenario(DEMO)
    assert re.fullmatch(r"[0-9a-f]{12}", a.digest)
    assert a.digest == b.digest
    assert a.with_overrides(**{"population.positions": 200_000}).digest == a.digest


def test_digest_ignores_comments_and_layout(tmp_path):
    text = "# a comment\n\n" + DEMO_TEXT.replace("seed = 42", "seed    =   42   # spaced")
    assert load_text(tmp_path, text).digest == load_scenario(DEMO).digest


@pytest.mark.parametrize("old, new", [
    ("depth_usd = 65_000_000", "depth_usd = 65_000_001"),
    ("seed = 42", "seed = 43"),
    ('label = "headline sell program"', 'label = "another label"'),
    ("[2025-10-10T16:00:00Z, 110500.0]", "[2025-10-10T16:00:00Z, 110600.0]"),
    ("[engine]", "[targets]\nmax_drawdown_pct = 10.0\n\n[engine]"),
])
def test_digest_changes_with_a_value(tmp_path, old, new):
    assert load_text(tmp_path, edited((old, new))).digest != load_scenario(DEMO).digest


def test_digest_changes_with_an_override():
    sc = load_scenario(DEMO)
    assert sc.with_overrides(**{"population.positions": 1000}).digest != sc.digest
    assert sc.with_overrides(**{"venue.bracket_date": dt.date(2025, 6, 1)}).digest != sc.digest


# --- schema reference ----------------------------------------------------------------------------

def test_schema_markdown_lists_every_key():
    md = schema_markdown()
    heading = r"#### `\[*(\w+)\]*`\n(.*?)(?=\n#### |\Z)"
    blocks = dict(re.findall(heading, md, flags=re.DOTALL))
    assert list(blocks) == list(SCHEMA)
    assert "#### `[[flows]]`" in md and "#### `[market]`" in md
    for section, fields in SCHEMA.items():
        rows = re.findall(r"^\| `(\w+)` \|", blocks[section], flags=re.MULTILINE)
        assert rows == list(fields), section
        for key, field in fields.items():
            row = next(line for line in blocks[section].splitlines()
                       if line.startswith(f"| `{key}` |"))
            assert field.expectation() in row
            assert ("required" in row) == (field.default is REQUIRED), f"{section}.{key}"


# --- cross-checks --------------------------------------------------------------------------------

def test_history_must_cover_the_lookback(tmp_path):
    # the demo history starts exactly 48 h before the start
    assert load_text(tmp_path, DEMO_TEXT).population.entry_lookback_h == 48.0
    fails(tmp_path, edited(("entry_lookback_h = 48.0", "entry_lookback_h = 49.0")),
          "[population] history", "expected waypoints covering",
          "2025-10-08T19:00:00+00:00 to 2025-10-10T20:00:00+00:00",
          "got 2025-10-08T20:00:00+00:00 to 2025-10-10T20:00:00+00:00")


def test_history_must_reach_the_start(tmp_path):
    fails(tmp_path, edited(("[2025-10-10T20:00:00Z, 110000.0],", "")),
          "[population] history", "expected waypoints covering",
          "got 2025-10-08T20:00:00+00:00 to 2025-10-10T16:00:00+00:00")


def test_history_times_must_increase(tmp_path):
    text = edited(("[2025-10-09T20:00:00Z, 107500.0]", "[2025-10-10T17:00:00Z, 107500.0]"))
    fails(tmp_path, text,
          "[population] history", "expected strictly increasing waypoint times")


@pytest.mark.parametrize("start", ["2025-10-10T19:59:59Z", "2025-10-10T22:00:00Z",
                                   "2025-10-11T00:00:00Z"])
def test_flow_start_outside_the_window(tmp_path, start):
    fails(tmp_path, edited(("start = 2025-10-10T20:30:00Z", f"start = {start}")),
          "[[flows]] #1 start", "expected a time inside the window",
          "2025-10-10T20:00:00+00:00 to 2025-10-10T22:00:00+00:00")


@pytest.mark.parametrize("start", ["2025-10-10T20:00:00Z", "2025-10-10T21:59:59Z"])
def test_flow_start_inside_the_window(tmp_path, start):
    sc = load_text(tmp_path, edited(("start = 2025-10-10T20:30:00Z", f"start = {start}")))
    assert sc.flows[0].start == dt.datetime.fromisoformat(start.replace("Z", "+00:00"))


def test_second_flow_is_numbered(tmp_path):
    text = DEMO_TEXT + ("\n[[flows]]\nstart = 2025-10-11T00:00:00Z\nduration_min = 1\n"
                        "usd_per_min = 1\n")
    fails(tmp_path, text, "[[flows]] #2 start")


@pytest.mark.parametrize("step_s", ["7.0", "0.7", "3601"])
def test_step_must_divide_the_window(tmp_path, step_s):
    fails(tmp_path, edited(("step_s = 1.0", f"step_s = {step_s}")),
          "[scenario] step_s", "expected")


def test_step_must_divide_the_window_message(tmp_path):
    fails(tmp_path, edited(("step_s = 1.0", "step_s = 7.0")),
          "[scenario] step_s: expected a divisor of the window (7200 s), got 7")


def test_latency_must_be_a_multiple_of_the_step(tmp_path):
    text = edited(("step_s = 1.0", "step_s = 2.0"), ("latency_s = 0.0", "latency_s = 3.0"))
    fails(tmp_path, text, "[engine] latency_s", "expected a multiple of step_s (2), got 3")
    text = edited(("step_s = 1.0", "step_s = 2.0"), ("latency_s = 0.0", "latency_s = 4.0"))
    assert load_text(tmp_path, text).engine.latency_s == 4.0


def test_latency_must_fit_the_window(tmp_path):
    fails(tmp_path, edited(("latency_s = 0.0", "latency_s = 7201.0")),
          "[engine] latency_s", "expected at most the window (7200 s), got 7201")
    assert load_text(tmp_path, edited(("latency_s = 0.0", "latency_s = 7200.0"))).engine.latency_s


# --- [targets] -----------------------------------------------------------------------------------

def test_targets_is_a_free_form_table(tmp_path):
    text = DEMO_TEXT.replace("[engine]", "[targets]\nmax_drawdown_pct = 12.5\nnote = \"x\"\n"
                             "anything = { a = 1, b = [1, 2] }\n\n[engine]", 1)
    sc = load_text(tmp_path, text)
    assert sc.targets == {"max_drawdown_pct": 12.5, "note": "x",
                          "anything": {"a": 1, "b": [1, 2]}}


def test_targets_must_be_a_table(tmp_path):
    fails(tmp_path, "targets = 3\n" + DEMO_TEXT, "[targets] must be a table")


# --- date-times ----------------------------------------------------------------------------------

def _with_dates(fmt) -> str:
    """The demo with every date-time rewritten by ``fmt``, a function of its
    'YYYY-MM-DDTHH:MM:SS'."""
    text, n = re.subn(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z", lambda m: fmt(m.group(1)), DEMO_TEXT)
    assert n == 7
    return text


def _dates(sc):
    return (sc.scenario.start, sc.scenario.end, [t for t, _ in sc.population.history],
            [f.start for f in sc.flows])


@pytest.mark.parametrize("fmt", [
    lambda s: f'"{s}Z"',              # ISO string with Z
    lambda s: f'"{s}+00:00"',         # ISO string with an offset
    lambda s: s,                      # TOML local date-time (naive): UTC
    lambda s: f'"{s}"',               # naive ISO string: UTC
], ids=["iso-z", "iso-offset", "toml-naive", "iso-naive"])
def test_date_forms_agree(tmp_path, fmt):
    sc = load_text(tmp_path, _with_dates(fmt))
    assert _dates(sc) == _dates(load_scenario(DEMO))
    assert sc.scenario.start.tzinfo == UTC and sc.scenario.start.utcoffset() == dt.timedelta(0)
    assert sc.n_steps == 7200


def test_offsets_are_converted_to_utc(tmp_path):
    text = edited(("start = 2025-10-10T20:00:00Z", "start = 2025-10-10T22:00:00+02:00"),
                  ("end = 2025-10-10T22:00:00Z", 'end = "2025-10-10T17:00:00-05:00"'))
    sc = load_text(tmp_path, text)
    assert sc.scenario.start == dt.datetime(2025, 10, 10, 20, tzinfo=UTC)
    assert sc.scenario.start.tzinfo == UTC
    assert sc.scenario.end.isoformat() == "2025-10-10T22:00:00+00:00"


def test_naive_datetime_is_utc_not_local(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    if hasattr(time, "tzset"):
        time.tzset()
    try:
        sc = load_text(tmp_path, edited(("start = 2025-10-10T20:00:00Z",
                                         "start = 2025-10-10T20:00:00")))
    finally:
        monkeypatch.undo()
        if hasattr(time, "tzset"):
            time.tzset()
    assert sc.scenario.start == dt.datetime(2025, 10, 10, 20, tzinfo=UTC)


def test_bracket_date_forms(tmp_path):
    for value in ("2025-06-01", '"2025-06-01"', "2025-06-01T12:00:00Z"):
        text = edited(('symbol = "BTCUSDT"', f'symbol = "BTCUSDT"\nbracket_date = {value}'))
        sc = load_text(tmp_path, text)
        assert sc.venue.bracket_date == dt.date(2025, 6, 1)
        assert venue_date(sc) == dt.date(2025, 6, 1)
