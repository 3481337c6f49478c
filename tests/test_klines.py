"""Tests for cascade.io.klines: Binance kline CSV reading, validation, writing and interpolation.

Every file is made here, in tmp_path, from hand-written rows or synthetic prices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascade.errors import CascadeError
from cascade.io.klines import (
    FRAME_COLUMNS,
    KLINE_COLUMNS,
    price_path,
    read_klines,
    synthetic_klines,
    write_klines,
)

HEADER = ",".join(KLINE_COLUMNS)
T0 = 1760097600000  # 2025-10-10T12:00:00Z in epoch ms
T0_ISO = "2025-10-10T12:00:00Z"
MIN = 60_000


def _rows(n: int = 6) -> list[list[str]]:
    """n valid 1-minute candles as lists of 12 field strings (Binance's format)."""
    rows = []
    price = 121493.2
    for i in range(n):
        o, c = price, price + (10.5 if i % 2 == 0 else -4.25)
        price = c
        t = T0 + i * MIN
        rows.append(
            [
                str(t),
                f"{o:.2f}",
                f"{max(o, c) + 3:.2f}",
                f"{min(o, c) - 2:.2f}",
                f"{c:.2f}",
                "512.345",
                str(t + MIN - 1),
                "62234567.12",
                str(10234 + i),
                "250.1",
                "30381234.5",
                "0",
            ]
        )
    return rows


def _write(path, rows, header=True, text=None):
    if text is None:
        lines = ([HEADER] if header else []) + [",".join(r) for r in rows]
        text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def _expect_error(path, *fragments, **kwargs):
    with pytest.raises(CascadeError) as info:
        read_klines(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# --- the good path -----------------------------------------------------------------------------


def test_columns_constant():
    assert KLINE_COLUMNS == (
        "open_time", "open", "high", "low", "close", "volume", "close_time",
        "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
    )  # fmt: skip
    assert set(FRAME_COLUMNS) == set(KLINE_COLUMNS) - {"open_time", "close_time", "ignore"}


@pytest.mark.parametrize("header", [True, False])
def test_read_hand_written_file(tmp_path, header):
    rows = _rows(4)
    df = read_klines(_write(tmp_path / "k.csv", rows, header=header))
    assert list(df.columns) == list(FRAME_COLUMNS)
    assert df.index.name == "open_time"
    assert str(df.index.dtype) == "datetime64[ns, UTC]"
    assert df.index[0] == pd.Timestamp(T0_ISO)
    assert df.index[-1] == pd.Timestamp("2025-10-10T12:03:00Z")
    assert df["count"].dtype == np.int64
    assert all(df[c].dtype == np.float64 for c in FRAME_COLUMNS if c != "count")
    assert df["open"].iloc[0] == 121493.2
    assert df["close"].iloc[0] == 121503.7
    assert df["count"].tolist() == [10234, 10235, 10236, 10237]
    assert df.attrs["interval_s"] == 60


@pytest.mark.parametrize("header", [True, False])
def test_round_trip(tmp_path, header):
    rng = np.random.default_rng(7)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, 200)))
    src = synthetic_klines("2024-03-01T00:00:00Z", prices, interval_s=300)
    src["volume"] = rng.random(200) * 1e3  # awkward floats must survive the text round trip
    src["count"] = rng.integers(0, 10**6, 200)
    path = tmp_path / "rt.csv"
    write_klines(src, path, header=header)
    first = path.read_text().splitlines()[0]
    assert (first == HEADER) is header
    back = read_klines(path)
    pd.testing.assert_frame_equal(back, src, check_exact=True)
    assert back.attrs["interval_s"] == 300
    # interval given explicitly gives the same
    pd.testing.assert_frame_equal(read_klines(path, interval_s=300), src, check_exact=True)


def test_written_rows_follow_binance_format(tmp_path):
    df = synthetic_klines(T0_ISO, [100.0, 101.5])
    path = tmp_path / "w.csv"
    write_klines(df, path)
    lines = path.read_text().splitlines()
    assert lines == [
        HEADER,
        f"{T0},100.0,100.0,100.0,100.0,1.0,{T0 + MIN - 1},100.0,1,0.5,50.0,0",
        f"{T0 + MIN},100.0,101.5,100.0,101.5,1.0,{T0 + 2 * MIN - 1},101.5,1,0.5,50.75,0",
    ]


def test_microsecond_timestamps(tmp_path):
    rows = _rows(5)
    for r in rows:
        r[0] = str(int(r[0]) * 1000)  # open_time in µs
        r[6] = str(int(r[0]) + MIN * 1000 - 1)  # close_time = open + 59,999,999 µs
    df_us = read_klines(_write(tmp_path / "us.csv", rows, header=False))
    df_ms = read_klines(_write(tmp_path / "ms.csv", _rows(5), header=False))
    pd.testing.assert_frame_equal(df_us, df_ms, check_exact=True)
    assert df_us.index[1] == pd.Timestamp("2025-10-10T12:01:00Z")
    assert df_us.attrs["interval_s"] == 60


def test_microsecond_close_time_checked_in_microseconds(tmp_path):
    rows = _rows(4)
    for r in rows:
        r[0] = str(int(r[0]) * 1000)
        r[6] = str(int(r[0]) + MIN * 1000 - 1000)  # off by 999 µs: the ms rule applied to µs
    _expect_error(_write(tmp_path / "us.csv", rows), "line 2", "close_time", "µs")


def test_sub_millisecond_index_is_written_in_microseconds(tmp_path):
    src = synthetic_klines("2024-01-01T00:00:00.000500Z", [1.0, 2.0, 3.0])
    path = tmp_path / "us.csv"
    write_klines(src, path, header=False)
    first = path.read_text().splitlines()[0].split(",")
    assert first[0] == "1704067200000500"
    assert first[6] == str(1704067200000500 + 60_000_000 - 1)
    pd.testing.assert_frame_equal(read_klines(path), src, check_exact=True)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "\n").encode() + b"\xff\xfe,1\n")
    _expect_error(path, "line 2, byte 1:", "UTF-8")


def test_header_in_any_order_crlf_bom_and_trailing_blank_lines(tmp_path):
    rows = _rows(3)
    order = list(reversed(KLINE_COLUMNS))
    lines = [",".join(order)] + [",".join(reversed(r)) for r in rows]
    text = "\ufeff" + "\r\n".join(lines) + "\r\n\r\n\n"
    df = read_klines(_write(tmp_path / "rev.csv", None, text=text))
    expected = read_klines(_write(tmp_path / "plain.csv", rows))
    pd.testing.assert_frame_equal(df, expected, check_exact=True)


def test_header_without_ignore_column(tmp_path):
    rows = [r[:-1] for r in _rows(3)]
    text = "\n".join([HEADER.rsplit(",", 1)[0]] + [",".join(r) for r in rows]) + "\n"
    df = read_klines(_write(tmp_path / "noignore.csv", None, text=text))
    assert len(df) == 3


def test_50k_rows(tmp_path):
    n = 50_000
    rng = np.random.default_rng(3)
    prices = 50_000.0 * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    src = synthetic_klines("2025-01-01T00:00:00Z", prices)
    path = tmp_path / "big.csv"
    write_klines(src, path, header=False)
    df = read_klines(path)
    assert df.shape == (n, len(FRAME_COLUMNS))
    assert df.index[-1] == pd.Timestamp("2025-01-01T00:00:00Z") + pd.Timedelta(minutes=n - 1)
    np.testing.assert_array_equal(df["close"].to_numpy(), prices)


# --- malformed files ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.csv", "no such file")


def test_directory_instead_of_file(tmp_path):
    _expect_error(tmp_path, "not a regular file")


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_file(tmp_path, text):
    _expect_error(_write(tmp_path / "empty.csv", None, text=text), "empty")


def test_header_missing_columns(tmp_path):
    cols = [c for c in KLINE_COLUMNS if c not in ("close", "count")]
    rows = [[v for c, v in zip(KLINE_COLUMNS, r) if c in cols] for r in _rows(3)]
    text = "\n".join([",".join(cols)] + [",".join(r) for r in rows]) + "\n"
    msg = _expect_error(_write(tmp_path / "h.csv", None, text=text), "line 1", "close, count")
    assert "lacks column(s) close, count;" in msg


def test_header_duplicate_column(tmp_path):
    text = HEADER + ",volume\n" + "\n".join(",".join(r + ["1"]) for r in _rows(3)) + "\n"
    _expect_error(_write(tmp_path / "dup.csv", None, text=text), "line 1", "'volume' twice")


@pytest.mark.parametrize("header, n", [(True, 0), (True, 1), (False, 1)])
def test_fewer_than_two_rows(tmp_path, header, n):
    path = _write(tmp_path / "short.csv", _rows(n), header=header)
    _expect_error(path, f"{n} kline row(s)", "at least 2")


def _case(fn):
    """Apply fn to a fresh set of 6 rows and return (rows, bad row index)."""
    rows = _rows(6)
    i = fn(rows)
    return rows, i


def _set(i, col, value):
    def fn(rows):
        rows[i][KLINE_COLUMNS.index(col)] = value
        return i

    return fn


def _too_few_fields(rows):
    rows[3] = rows[3][:-1]
    return 3


def _too_many_fields(rows):
    rows[2] = rows[2] + ["7"]
    return 2


def _blank_line(rows):
    rows[4] = [""]
    return 4


def _swap(rows):
    rows[3], rows[4] = rows[4], rows[3]
    return 4  # row 4 now holds 12:03, before 12:04 on row 3


def _duplicate(rows):
    rows[4] = list(rows[3])
    return 4


def _gap(rows):
    del rows[3]  # 12:03 missing: row 3 holds 12:04
    return 3


def _gap_after_first(rows):
    del rows[1]  # inferred interval must still be 1 minute
    return 1


def _misaligned(rows):
    t = T0 + 3 * MIN - 30_000
    rows[3][0], rows[3][6] = str(t), str(t + MIN - 1)
    return 3


# (id, mutation, fragments that the message must contain besides file and line)
MALFORMED = [
    ("too-few-fields", _too_few_fields, ["11 field(s)", "expected 12"]),
    ("too-many-fields", _too_many_fields, ["13 field(s)", "expected 12"]),
    ("blank-line", _blank_line, ["1 field(s)", "expected 12"]),
    ("non-numeric", _set(2, "high", "abc"), ["'high'", "'abc'", "finite number"]),
    ("empty-value", _set(3, "quote_volume", ""), ["'quote_volume'", "''"]),
    ("nan", _set(1, "volume", "nan"), ["'volume'", "'nan'", "finite"]),
    ("inf", _set(4, "close", "inf"), ["'close'", "'inf'", "finite"]),
    ("NA-text", _set(4, "taker_buy_volume", "NA"), ["'taker_buy_volume'", "'NA'"]),
    ("non-integer-count", _set(2, "count", "1.5"), ["'count'", "'1.5'", "integer"]),
    ("non-numeric-time", _set(3, "open_time", "12:03"), ["'open_time'", "'12:03'"]),
    ("count-overflow", _set(2, "count", "9" * 25), ["'count'", "int64 range"]),
    ("negative-time", _set(0, "open_time", "-60000"), ["open_time -60000", "out of range"]),
    ("zero-price", _set(2, "open", "0"), ["'open'", "0.0", "positive price"]),
    ("negative-price", _set(5, "low", "-1.5"), ["'low'", "-1.5", "positive price"]),
    ("negative-volume", _set(1, "volume", "-2"), ["'volume'", "-2.0", ">= 0"]),
    ("high-below-close", _set(2, "high", "121499.00"), ["high 121499.0", "max(open, close)"]),
    ("low-above-open", _set(3, "low", "121506.00"), ["low 121506.0", "min(open, close)"]),
    ("unsorted", _swap, ["unsorted", "2025-10-10T12:03:00Z", "2025-10-10T12:04:00Z"]),
    ("duplicate", _duplicate, ["duplicate", "2025-10-10T12:03:00Z"]),
    (
        "gap",
        _gap,
        ["gap", "expected 2025-10-10T12:03:00Z", "found 2025-10-10T12:04:00Z", "1 candle(s)"],
    ),
    (
        "gap-after-first",
        _gap_after_first,
        ["gap", "expected 2025-10-10T12:01:00Z", "found 2025-10-10T12:02:00Z"],
    ),
    (
        "misaligned",
        _misaligned,
        ["misaligned", "expected 2025-10-10T12:03:00Z", "found 2025-10-10T12:02:30Z"],
    ),
    ("close-time", _set(4, "close_time", str(T0 + 4 * MIN + MIN)), ["close_time", "+ interval"]),
]


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
@pytest.mark.parametrize(
    "mutate, fragments", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_row(tmp_path, header, mutate, fragments):
    rows, i = _case(mutate)
    path = _write(tmp_path / "bad.csv", rows, header=header)
    line = i + 1 + int(header)
    _expect_error(path, f"line {line}:", *fragments)


def test_first_bad_cell_is_reported_by_line_then_column(tmp_path):
    rows = _rows(6)
    rows[4][KLINE_COLUMNS.index("open")] = "x"
    rows[2][KLINE_COLUMNS.index("volume")] = "y"
    rows[2][KLINE_COLUMNS.index("close")] = "z"
    _expect_error(_write(tmp_path / "bad.csv", rows), "line 4:", "'close'", "'z'")


def test_wrong_explicit_interval(tmp_path):
    path = _write(tmp_path / "k.csv", _rows(4))
    _expect_error(
        path,
        "line 3:",
        "expected 2025-10-10T12:05:00Z",
        "found 2025-10-10T12:01:00Z",
        "every 300 s",
        interval_s=300,
    )


def test_close_time_message_names_value(tmp_path):
    rows = _rows(4)
    rows[2][6] = str(T0 + 2 * MIN + 59_000)
    msg = _expect_error(_write(tmp_path / "c.csv", rows, header=False), "line 3:")
    assert f"close_time {T0 + 2 * MIN + 59_000}" in msg
    assert f"= {T0 + 2 * MIN + MIN - 1}" in msg


def test_bad_interval_argument(tmp_path):
    path = _write(tmp_path / "k.csv", _rows(3))
    with pytest.raises(ValueError, match="interval_s"):
        read_klines(path, interval_s=0)


# --- synthetic_klines ---------------------------------------------------------------------------


def test_synthetic_klines_shape_and_values():
    df = synthetic_klines(pd.Timestamp("2024-01-01 01:00", tz="Europe/Paris"), [100, 110, 90], 30)
    assert list(df.columns) == list(FRAME_COLUMNS)
    assert str(df.index.dtype) == "datetime64[ns, UTC]"
    assert df.index.name == "open_time"
    assert list(df.index) == list(pd.date_range("2024-01-01T00:00Z", periods=3, freq="30s"))
    np.testing.assert_array_equal(df["open"], [100, 100, 110])
    np.testing.assert_array_equal(df["high"], [100, 110, 110])
    np.testing.assert_array_equal(df["low"], [100, 100, 90])
    np.testing.assert_array_equal(df["close"], [100, 110, 90])
    np.testing.assert_array_equal(df["volume"], [1.0, 1.0, 1.0])
    assert df["count"].tolist() == [1, 1, 1]
    assert df.attrs["interval_s"] == 30


def test_synthetic_klines_naive_iso_string_is_utc():
    df = synthetic_klines("2024-01-01T00:00", [1.0, 2.0])
    assert df.index[0] == pd.Timestamp("2024-01-01T00:00Z")


@pytest.mark.parametrize(
    "start, prices",
    [
        (pd.Timestamp("2024-01-01"), [1.0]),  # naive timestamp
        ("2024-01-01", []),
        ("2024-01-01", [1.0, -1.0]),
        ("2024-01-01", [1.0, np.nan]),
    ],
)
def test_synthetic_klines_rejects_bad_input(start, prices):
    with pytest.raises(ValueError):
        synthetic_klines(start, prices)


# --- price_path ---------------------------------------------------------------------------------


@pytest.fixture
def hand_df(tmp_path):
    """3 one-minute candles from 12:00: open 98 -> close 100, then 110, then 90."""
    text = "\n".join(
        [
            f"{T0},98,101,97,100,1,{T0 + MIN - 1},100,1,0.5,50,0",
            f"{T0 + MIN},100,111,99,110,1,{T0 + 2 * MIN - 1},100,1,0.5,50,0",
            f"{T0 + 2 * MIN},110,112,89,90,1,{T0 + 3 * MIN - 1},100,1,0.5,50,0",
        ]
    )
    return read_klines(_write(tmp_path / "hand.csv", None, text=text))


def test_price_path_hand_computed(hand_df):
    # knots: 12:00 -> 98 (first open), 12:01 -> 100, 12:02 -> 110, 12:03 -> 90 (closes)
    times = pd.DatetimeIndex(
        ["12:00:00", "12:00:30", "12:01:00", "12:01:15", "12:02:30", "12:02:45", "12:03:00"]
    )
    times = pd.DatetimeIndex("2025-10-10T" + times.strftime("%H:%M:%S"), tz="UTC")
    got = price_path(hand_df, times)
    assert got.shape == (7,)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [98, 99, 100, 102.5, 100, 95, 90], rtol=0, atol=1e-12)


def test_price_path_accepts_other_containers_and_time_zones(hand_df):
    utc = pd.DatetimeIndex(["2025-10-10T12:01:15Z", "2025-10-10T12:02:45Z"])
    expected = [102.5, 95.0]
    np.testing.assert_allclose(price_path(hand_df, utc), expected)
    np.testing.assert_allclose(price_path(hand_df, pd.Series(utc)), expected)
    np.testing.assert_allclose(price_path(hand_df, utc.tz_convert("Asia/Tokyo")), expected)
    np.testing.assert_allclose(price_path(hand_df, np.asarray(utc)), expected)
    np.testing.assert_allclose(price_path(hand_df, utc.array), expected)
    np.testing.assert_allclose(price_path(hand_df, utc[0]), expected[:1])
    assert price_path(hand_df, utc[:0]).shape == (0,)


def test_price_path_on_synthetic_klines_hits_prices_at_close_times():
    prices = [100.0, 104.0, 96.0, 120.0]
    df = synthetic_klines("2024-01-01T00:00Z", prices, interval_s=60)
    closes = df.index + pd.Timedelta(seconds=60)
    np.testing.assert_array_equal(price_path(df, closes), prices)
    mid = df.index[:-1] + pd.Timedelta(seconds=90)  # halfway between consecutive closes
    np.testing.assert_allclose(price_path(df, mid), [102.0, 100.0, 108.0])


@pytest.mark.parametrize("when", ["2025-10-10T11:59:59Z", "2025-10-10T12:03:00.001Z"])
def test_price_path_outside_range(hand_df, when):
    times = pd.DatetimeIndex(["2025-10-10T12:01:00Z", when])
    with pytest.raises(CascadeError) as info:
        price_path(hand_df, times)
    msg = str(info.value)
    assert "2025-10-10T12:00:00Z to 2025-10-10T12:03:00Z" in msg
    assert pd.Timestamp(when).isoformat().replace("+00:00", "Z") in msg


def test_price_path_rejects_naive_times(hand_df):
    with pytest.raises(TypeError, match="tz-aware"):
        price_path(hand_df, pd.DatetimeIndex(["2025-10-10T12:01:00"]))
