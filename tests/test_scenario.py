"""Scenario files: demo.toml, defaults, n_steps, overrides, digest, schema reference and
cross-checks.

The demo's numbers are tuned by other work, so the tests edit it key by key (:func:`set_key`)
and take times and values from the file itself rather than hard-coding them.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from pathlib import Path

import pytest

from cascade.errors import CascadeError
from cascade.model.scenario import (
    ARRAY_SECTIONS,
    REQUIRED,
    SCHEMA,
    load_scenario,
    parse_scenario,
    schema_markdown,
    venue_date,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEMO = Path(__file__).resolve().parents[1] / "scenarios" / "demo.toml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
DEMO_RAW = tomllib.loads(DEMO_TEXT)
UTC = dt.timezone.utc
START = DEMO_RAW["scenario"]["start"].astimezone(UTC)
END = DEMO_RAW["scenario"]["end"].astimezone(UTC)
HOUR = dt.timedelta(hours=1)

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


# --- editing the demo, key by key --------------------------------------------------------------

_HEADER = re.compile(r"^\[\[?\s*([\w.]+)\s*\]\]?\s*(#.*)?$")


def iso(t: dt.datetime) -> str:
    """A TOML offset date-time in UTC, e.g. ``2025-10-10T20:00:00Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _depth(line: str) -> int:
    code = line.split("#", 1)[0]
    return code.count("[") - code.count("]")


def set_key(text: str, section: str, key: str, value: str | None, *, nth: int = 0,
            must_exist: bool = True) -> str:
    """``text`` with ``key`` of table ``section`` (the ``nth`` one, for ``[[flows]]``) set to the
    raw TOML ``value`` (inserted after the header if absent), or removed when ``value`` is None.
    Multi-line array values are replaced whole."""
    lines = text.splitlines(keepends=True)
    body = end = None
    seen = -1
    for i, line in enumerate(lines):
        m = _HEADER.match(line.rstrip("\n"))
        if not m:
            continue
        if body is not None:
            end = i
            break
        if m.group(1) == section:
            seen += 1
            if seen == nth:
                body = i + 1
    assert body is not None, f"no [{section}] #{nth} in the text"
    end = len(lines) if end is None else end
    key_re = re.compile(rf"^{re.escape(key)}\s*=")
    for i in range(body, end):
        if key_re.match(lines[i]):
            j, depth = i, _depth(lines[i].split("=", 1)[1])
            while depth > 0:
                j += 1
                depth += _depth(lines[j])
            new = [] if value is None else [f"{key} = {value}\n"]
            return "".join(lines[:i] + new + lines[j + 1:])
    if value is None:
        assert not must_exist, f"no {key} in [{section}]"
        return text
    return "".join(lines[:body] + [f"{key} = {value}\n"] + lines[body:])


def edit(text: str = DEMO_TEXT, **changes: str | None) -> str:
    """Several :func:`set_key` edits: ``edit(market__depth_usd="1e6", flows__start=None)``."""
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        text = set_key(text, section, key, value)
    return text


def history(*points: tuple[dt.datetime, float]) -> str:
    return "[" + ", ".join(f"[{iso(t)}, {p!r}]" for t, p in points) + "]"


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


def test_set_key_edits_what_it_names():
    text = edit(market__depth_usd="123.0", engine__latency_s=None, venue__bracket_date="2025-06-01")
    raw = tomllib.loads(text)
    assert raw["market"]["depth_usd"] == 123.0 and "latency_s" not in raw["engine"]
    assert raw["venue"]["bracket_date"] == dt.date(2025, 6, 1)
    raw = tomllib.loads(set_key(DEMO_TEXT, "population", "history", history((START, 1.0))))
    assert raw["population"]["history"] == [[START, 1.0]]
    raw = tomllib.loads(set_key(DEMO_TEXT, "flows", "side", '"buy"'))
    assert raw["flows"][0]["side"] == "buy" and raw["scenario"]["name"] == "demo"


# --- demo.toml and defaults ------------------------------------------------------------------

def test_demo_loads():
    sc = load_scenario(DEMO)
    assert sc.name == "demo" and sc.path == DEMO and sc.raw == DEMO_RAW
    assert sc.scenario.start == START and sc.scenario.end == END
    assert sc.scenario.start.tzinfo == UTC
    for section, table in DEMO_RAW.items():
        if section in ARRAY_SECTIONS or section == "targets":
            continue
        ns = getattr(sc, section)
        for key, value in table.items():
            got = getattr(ns, key)
            if key == "history":
                assert got == [(t.astimezone(UTC), float(p)) for t, p in value]
            else:
                assert got == value, f"{section}.{key}"
            kind = SCHEMA[section][key].kind
            if kind in ("float", "int"):
                assert type(got) is {"float": float, "int": int}[kind], f"{section}.{key}"
            if kind in ("floats", "range"):
                assert all(type(v) is float for v in got), f"{section}.{key}"
    assert isinstance(sc.market.depth_usd, float) and isinstance(sc.population.positions, int)
    assert len(sc.flows) == len(DEMO_RAW["flows"]) >= 1
    for f, raw in zip(sc.flows, DEMO_RAW["flows"]):
        assert f.start == raw["start"] and f.usd_per_min == raw["usd_per_min"]
    assert sc.n_steps == round((END - START).total_seconds() / sc.scenario.step_s)


def test_demo_defaults_for_omitted_keys():
    sc = load_scenario(DEMO)
    omitted = [(s, k) for s, fields in SCHEMA.items() if s not in ARRAY_SECTIONS
               for k in fields if k not in DEMO_RAW.get(s, {})]
    for section, key in omitted:
        assert getattr(getattr(sc, section), key) == SCHEMA[section][key].default
    if ("venue", "bracket_date") in omitted:
        assert sc.venue.bracket_date is None
        assert venue_date(sc) == START.date()          # default: the start date
    for f, raw in zip(sc.flows, DEMO_RAW["flows"]):
        for key, field in SCHEMA["flows"].items():
            if key not in raw:
                assert getattr(f, key) == field.default


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
    assert sc.venue.insurance_fund_usd == 1e9 and sc.venue.bracket_date is None
    assert sc.population.positions == 100_000 and sc.population.entry_lookback_h == 72.0
    assert sc.population.leverage_weights == [0.3, 0.3, 0.2, 0.1, 0.07, 0.03]
    assert sc.population.history_klines is None
    assert sc.market.impact_exponent == 0.75 and sc.engine.max_iterations == 20
    # the market defaults are the shared BTC law as first written (scenarios/markets/btc-perp.toml)
    assert sc.market.depth_oi_ratio == 0.015 and sc.market.dip_buy_threshold_pct == 10.0
    assert sc.engine.latency_s == 0.0 and sc.engine.feedback is True
    assert sc.flows == () and sc.targets == {}


def test_flow_defaults(tmp_path):
    text = MINIMAL + ("\n[[flows]]\nstart = 2025-10-10T20:10:00Z\nduration_min = 5\n"
                      "usd_per_min = 1e6\n")
    (f,) = load_text(tmp_path, text).flows
    assert f.side == "sell" and f.label == "" and f.duration_min == 5.0


def test_default_lists_are_not_shared_with_the_schema(tmp_path):
    default = SCHEMA["population"]["leverages"].default
    saved = list(default)
    try:
        sc = load_text(tmp_path, MINIMAL)
        sc.population.leverages.append(125.0)
        assert default == [2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        assert load_text(tmp_path, MINIMAL).population.leverages[-1] == 100.0
    finally:
        default[:] = saved  # keep other tests clean even when this one fails


def test_parse_scenario_from_a_dict():
    sc = parse_scenario(tomllib.loads(MINIMAL))
    assert sc.path is None and sc.name == "minimal"
    with pytest.raises(CascadeError, match=r"^<dict>: \[scenario\] missing key 'start'"):
        parse_scenario(tomllib.loads(MINIMAL.replace("start = 2025-10-10T20:00:00Z\n", "")))
    # without depth_usd the depth is the law's ratio to open interest
    sc = parse_scenario(tomllib.loads(MINIMAL.replace("depth_usd = 1e7", "depth_oi_ratio = 0.002")))
    assert sc.market.depth_usd == pytest.approx(2e6) and sc.market.depth_from_oi


# --- n_steps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("step_s, seconds, n", [
    ("1.0", 7200, 7200),
    ("2.0", 7200, 3600),
    ("0.5", 7200, 14400),
    ("7.5", 7200, 960),
    ("1.0", 1, 1),
    ("60", 86400, 1440),
])
def test_n_steps(tmp_path, step_s, seconds, n):
    text = edit(scenario__step_s=step_s, scenario__end=iso(START + dt.timedelta(seconds=seconds)),
                flows__start=iso(START), engine__latency_s="0.0")
    assert load_text(tmp_path, text).n_steps == n


# --- with_overrides ----------------------------------------------------------------------------

def test_with_overrides_applies_and_leaves_the_original_alone():
    sc = load_scenario(DEMO)
    before = (sc.population.positions, sc.scenario.seed, sc.engine.feedback)
    sc2 = sc.with_overrides(**{"population.positions": 10, "scenario.seed": 7,
                               "engine.feedback": not sc.engine.feedback})
    assert (sc2.population.positions, sc2.scenario.seed, sc2.engine.feedback) == \
        (10, 7, not sc.engine.feedback)
    assert sc2.path == DEMO and sc2.market.depth_usd == sc.market.depth_usd
    assert (sc.population.positions, sc.scenario.seed, sc.engine.feedback) == before
    assert sc.raw == DEMO_RAW


def test_load_scenario_with_overrides():
    sc = load_scenario(DEMO, **{"market.depth_usd": 1.5e8, "population.positions": 11})
    assert sc.market.depth_usd == 1.5e8 and sc.population.positions == 11


@pytest.mark.parametrize("overrides, needles", [
    ({"population.positions": -1}, ["[population] positions", "expected an integer", "-1"]),
    ({"population.positions": 3_000_000_000}, ["[population] positions", "<= 2e+09"]),
    ({"market.depth_usd": 0.0}, ["[market] depth_usd", "> 0"]),
    ({"market.depth_usd": float("nan")}, ["[market] depth_usd", "got nan"]),
    ({"engine.feedback": "yes"}, ["[engine] feedback", "true or false"]),
    ({"scenario.end": START - HOUR}, ["[scenario] end", "expected a time after start"]),
    ({"population.leverages": [2, 5], "population.leverage_weights": [0.5, 0.4]},
     ["[population] leverage_weights", "summing to 1"]),
    ({"population.leverages": [2, 500], "population.leverage_weights": [0.5, 0.5]},
     ["[population] leverages", "bracket maximum"]),
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
    same = a.with_overrides(**{"population.positions": DEMO_RAW["population"]["positions"]})
    assert same.digest == a.digest


def test_digest_ignores_comments_and_layout(tmp_path):
    text = "# a comment\n\n" + edit(scenario__seed=f"   {DEMO_RAW['scenario']['seed']}   # x")
    assert load_text(tmp_path, text).digest == load_scenario(DEMO).digest


@pytest.mark.parametrize("section, key, value", [
    ("market", "depth_usd", lambda v: repr(v * 1.01)),
    ("scenario", "seed", lambda v: str(v + 1)),
    ("flows", "usd_per_min", lambda v: repr(v * 2.0)),
    ("population", "history", lambda v: history(*[(t, p * 1.01) for t, p in v])),
    ("targets", "max_drawdown_pct", None),
])
def test_digest_changes_with_a_value(tmp_path, section, key, value):
    if value is None:
        text = DEMO_TEXT + f"\n[{section}]\n{key} = 10.0\n"
    else:
        text = set_key(DEMO_TEXT, section, key, value(
            (DEMO_RAW[section][0] if section in ARRAY_SECTIONS else DEMO_RAW[section])[key]))
    assert load_text(tmp_path, text).digest != load_scenario(DEMO).digest


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
    exact = edit(population__entry_lookback_h="48.0",
                 population__history=history((START - 48 * HOUR, 100.0), (START, 110.0)))
    assert load_text(tmp_path, exact).population.entry_lookback_h == 48.0
    fails(tmp_path, set_key(exact, "population", "entry_lookback_h", "49.0"),
          "[population] history", "expected waypoints covering",
          f"{(START - 49 * HOUR).isoformat()} to {START.isoformat()}",
          f"got {(START - 48 * HOUR).isoformat()} to {START.isoformat()}")


def test_history_must_reach_the_start(tmp_path):
    text = edit(population__entry_lookback_h="48.0",
                population__history=history((START - 48 * HOUR, 100.0), (START - HOUR, 110.0)))
    fails(tmp_path, text, "[population] history", "expected waypoints covering",
          f"got {(START - 48 * HOUR).isoformat()} to {(START - HOUR).isoformat()}")


def test_history_times_must_increase(tmp_path):
    text = edit(population__entry_lookback_h="48.0",
                population__history=history((START - 48 * HOUR, 100.0), (START, 110.0),
                                            (START - HOUR, 105.0)))
    fails(tmp_path, text, "[population] history", "expected strictly increasing waypoint times")


@pytest.mark.parametrize("when", [START - dt.timedelta(seconds=1), END, END + HOUR])
def test_flow_start_outside_the_window(tmp_path, when):
    fails(tmp_path, edit(flows__start=iso(when)),
          "[[flows]] #1 start", "expected a time inside the window",
          f"{START.isoformat()} to {END.isoformat()}", f"got {when.isoformat()}")


@pytest.mark.parametrize("when", [START, END - dt.timedelta(seconds=1)])
def test_flow_start_inside_the_window(tmp_path, when):
    assert load_text(tmp_path, edit(flows__start=iso(when))).flows[0].start == when


def test_later_flow_is_numbered(tmp_path):
    n = len(DEMO_RAW["flows"])
    text = DEMO_TEXT + f"\n[[flows]]\nstart = {iso(END)}\nduration_min = 1\nusd_per_min = 1\n"
    fails(tmp_path, text, f"[[flows]] #{n + 1} start")


@pytest.mark.parametrize("step_s", ["7.0", "0.7", "3601"])
def test_step_must_divide_the_window(tmp_path, step_s):
    text = edit(scenario__end=iso(START + 2 * HOUR), scenario__step_s=step_s,
                flows__start=iso(START), engine__latency_s="0.0")
    fails(tmp_path, text, "[scenario] step_s", "expected")


def test_step_must_divide_the_window_message(tmp_path):
    text = edit(scenario__end=iso(START + 2 * HOUR), scenario__step_s="7.0",
                flows__start=iso(START), engine__latency_s="0.0")
    fails(tmp_path, text, "[scenario] step_s: expected a divisor of the window (7200 s), got 7")


def test_latency_must_be_a_multiple_of_the_step(tmp_path):
    text = edit(scenario__end=iso(START + 2 * HOUR), scenario__step_s="2.0",
                flows__start=iso(START), engine__latency_s="3.0")
    fails(tmp_path, text, "[engine] latency_s", "expected a multiple of step_s (2), got 3")
    text = set_key(text, "engine", "latency_s", "4.0")
    assert load_text(tmp_path, text).engine.latency_s == 4.0


def test_latency_must_fit_the_window(tmp_path):
    base = edit(scenario__end=iso(START + 2 * HOUR), scenario__step_s="1.0",
                flows__start=iso(START))
    fails(tmp_path, set_key(base, "engine", "latency_s", "7201.0"),
          "[engine] latency_s", "expected at most the window (7200 s), got 7201")
    text = set_key(base, "engine", "latency_s", "7200.0")
    assert load_text(tmp_path, text).engine.latency_s == 7200.0


# --- [targets] -----------------------------------------------------------------------------------

def test_targets_is_a_free_form_table(tmp_path):
    text = DEMO_TEXT + ('\n[targets]\nmax_drawdown_pct = 12.5\nnote = "x"\n'
                        "anything = { a = 1, b = [1, 2] }\n")
    sc = load_text(tmp_path, text)
    assert sc.targets == {"max_drawdown_pct": 12.5, "note": "x",
                          "anything": {"a": 1, "b": [1, 2]}}


def test_targets_must_be_a_table(tmp_path):
    fails(tmp_path, "targets = 3\n" + DEMO_TEXT, "[targets] must be a table")


# --- date-times ----------------------------------------------------------------------------------

_DATETIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z")


def _with_dates(fmt) -> str:
    """The demo with every date-time rewritten by ``fmt``, a function of its
    'YYYY-MM-DDTHH:MM:SS'."""
    text, n = _DATETIME.subn(lambda m: fmt(m.group(1)), DEMO_TEXT)
    assert n >= 4  # start, end, history, flows
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
    ref = load_scenario(DEMO)
    assert _dates(sc) == _dates(ref)
    assert all(t.tzinfo == UTC for t in (sc.scenario.start, sc.scenario.end))
    assert sc.n_steps == ref.n_steps


def test_offsets_are_converted_to_utc(tmp_path):
    plus2 = (START + 2 * HOUR).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    minus5 = (END - 5 * HOUR).strftime("%Y-%m-%dT%H:%M:%S-05:00")
    sc = load_text(tmp_path, edit(scenario__start=plus2, scenario__end=f'"{minus5}"'))
    assert sc.scenario.start == START and sc.scenario.start.tzinfo == UTC
    assert sc.scenario.end.isoformat() == END.isoformat()


def test_naive_datetime_is_utc_not_local(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    if hasattr(time, "tzset"):
        time.tzset()
    try:
        naive = START.strftime("%Y-%m-%dT%H:%M:%S")
        sc = load_text(tmp_path, edit(scenario__start=naive))
    finally:
        monkeypatch.undo()
        if hasattr(time, "tzset"):
            time.tzset()
    assert sc.scenario.start == START and sc.scenario.start.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("value", ["2025-06-01", '"2025-06-01"', "2025-06-01T12:00:00Z"])
def test_bracket_date_forms(tmp_path, value):
    sc = load_text(tmp_path, edit(venue__bracket_date=value))
    assert sc.venue.bracket_date == dt.date(2025, 6, 1)
    assert venue_date(sc) == dt.date(2025, 6, 1)
