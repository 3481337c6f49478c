"""Binance USDⓈ-M futures kline (candlestick) CSV files: read, validate, write, interpolate.

The format is the one of Binance's public data dumps (``data.binance.vision``,
``futures/um/.../klines``): one candle per line, 12 comma-separated fields::

    open_time,open,high,low,close,volume,close_time,quote_volume,count,
    taker_buy_volume,taker_buy_quote_volume,ignore

* ``open_time`` / ``close_time``: epoch milliseconds, UTC (some newer spot dumps use
  microseconds; values above 1e14 are taken as microseconds).
  ``close_time = open_time + interval - 1`` (in the file's unit).
* ``open`` / ``high`` / ``low`` / ``close``: prices in the quote asset (USDT per coin).
* ``volume`` / ``taker_buy_volume``: base asset (coins); ``quote_volume`` /
  ``taker_buy_quote_volume``: quote asset (USDT); ``count``: number of trades.

The header line is optional (old dumps have none). With a header, columns are matched by name
and may come in any order; without one, the 12 columns above are expected in that order.

The in-memory shape used throughout the package (:func:`read_klines`' result) is a DataFrame
indexed by a tz-aware UTC :class:`pandas.DatetimeIndex` named ``open_time`` with the float64
columns ``open, high, low, close, volume, quote_volume, taker_buy_volume,
taker_buy_quote_volume`` and the int64 column ``count`` (order as in :data:`FRAME_COLUMNS`).
The candle length is kept in ``df.attrs["interval_s"]`` (seconds).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.errors import CascadeError

__all__ = [
    "FRAME_COLUMNS",
    "KLINE_COLUMNS",
    "candle_path",
    "price_path",
    "read_klines",
    "synthetic_klines",
    "write_klines",
]

KLINE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
"""The 12 columns of a Binance kline CSV, in file order."""

FRAME_COLUMNS: tuple[str, ...] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
"""The columns of :func:`read_klines`' DataFrame, in order (``count`` is int64, the rest float64)."""

# Columns a header must name; ``ignore`` (always 0) may be left out.
_REQUIRED = tuple(c for c in KLINE_COLUMNS if c != "ignore")
_INT_COLUMNS = ("open_time", "close_time", "count")
_PRICE_COLUMNS = ("open", "high", "low", "close")
_NONNEG_COLUMNS = ("volume", "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume")

_NS_PER_MS = 1_000_000
_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000
# open_time above this is in microseconds (epoch ms reach 1e14 only in the year 5138)
_US_THRESHOLD = 1e14


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def read_klines(path: str | os.PathLike, *, interval_s: int | None = None) -> pd.DataFrame:
    """Read and validate a Binance kline CSV file.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, with or without Binance's header line.
    interval_s : int, optional
        Expected candle length in seconds (60 for ``1m`` klines). ``None`` infers it from the
        data: the most common spacing between consecutive ``open_time`` values (for a clean
        file, the spacing of the first two rows).

    Returns
    -------
    pandas.DataFrame, shape (n_candles, 9)
        Indexed by a tz-aware UTC ``DatetimeIndex`` (ns resolution) named ``open_time``,
        strictly increasing with a constant step. Columns, in this order:
        ``open, high, low, close`` (float64, quote asset per base unit, e.g. USDT/BTC),
        ``volume`` (float64, base units), ``quote_volume`` (float64, quote units),
        ``count`` (int64, trades), ``taker_buy_volume`` (float64, base units),
        ``taker_buy_quote_volume`` (float64, quote units).
        ``attrs["interval_s"]`` holds the candle length in seconds (int, or float for
        sub-second candles).

    Raises
    ------
    CascadeError
        Naming the file and the 1-based line number, for: a missing or empty file; a header
        that lacks required columns (all of :data:`KLINE_COLUMNS` but ``ignore``); a row with
        the wrong number of fields; a non-numeric or non-finite value, or a non-integer time
        or trade count (naming the column); non-positive prices; negative volumes or counts;
        ``high < max(open, close)`` or ``low > min(open, close)``; fewer than 2 candles;
        unsorted or duplicate ``open_time``; a gap or a misaligned candle (naming the
        expected and the found time, ISO 8601 UTC); ``close_time`` other than
        ``open_time + interval - 1`` (ms, or µs for microsecond files).

    Notes
    -----
    All checks are vectorized; the offending row is located only once a check has failed,
    so a 50,000-row file reads in a fraction of a second. Only fixed-length intervals are
    supported (not Binance's ``1M`` monthly candles).
    """
    if interval_s is not None and (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, (int, np.integer))
        or interval_s <= 0
    ):
        raise ValueError(
            f"interval_s must be a positive integer number of seconds, got {interval_s!r}"
        )

    path = Path(path)
    name = str(path)
    text = _read_text(path, name)

    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    if not lines:
        raise CascadeError(f"{name}: the file is empty; expected Binance kline CSV rows")

    # --- header --------------------------------------------------------------------------
    first = [f.strip().lower() for f in lines[0].split(",")]
    has_header = any(f in KLINE_COLUMNS for f in first)
    if has_header:
        _check_header(first, name)
        names = first
        data_lines = lines[1:]
        first_line_no = 2
    else:
        names = list(KLINE_COLUMNS)
        data_lines = lines
        first_line_no = 1

    n = len(data_lines)
    if n < 2:
        raise CascadeError(
            f"{name}: {n} kline row(s) after line {first_line_no - 1}; expected at least 2 candles"
        )

    def line_of(i: int) -> int:
        return first_line_no + int(i)

    # --- field count -----------------------------------------------------------------------
    n_fields = len(names)
    commas = np.fromiter((ln.count(",") for ln in data_lines), dtype=np.int64, count=n)
    bad = np.flatnonzero(commas != n_fields - 1)
    if bad.size:
        i = bad[0]
        raise CascadeError(
            f"{name}: line {line_of(i)}: {commas[i] + 1} field(s), expected {n_fields} "
            f"({','.join(names)})"
        )

    # --- numbers -------------------------------------------------------------------------
    cols = _parse_numbers(data_lines, names, name, line_of)

    o, h, lo, c = (cols[k] for k in _PRICE_COLUMNS)

    # --- prices and volumes ------------------------------------------------------------------
    for col in _PRICE_COLUMNS:
        bad = np.flatnonzero(cols[col] <= 0)
        if bad.size:
            i = bad[0]
            raise CascadeError(
                f"{name}: line {line_of(i)}: column '{col}' is {_num(cols[col][i])}; "
                "expected a positive price"
            )
    for col in _NONNEG_COLUMNS:
        bad = np.flatnonzero(cols[col] < 0)
        if bad.size:
            i = bad[0]
            raise CascadeError(
                f"{name}: line {line_of(i)}: column '{col}' is {_num(cols[col][i])}; "
                "expected a value >= 0"
            )
    bad = np.flatnonzero(h < np.maximum(o, c))
    if bad.size:
        i = bad[0]
        raise CascadeError(
            f"{name}: line {line_of(i)}: high {_num(h[i])} is below max(open, close) = "
            f"max({_num(o[i])}, {_num(c[i])}); expected high >= open, close"
        )
    bad = np.flatnonzero(lo > np.minimum(o, c))
    if bad.size:
        i = bad[0]
        raise CascadeError(
            f"{name}: line {line_of(i)}: low {_num(lo[i])} is above min(open, close) = "
            f"min({_num(o[i])}, {_num(c[i])}); expected low <= open, close"
        )

    # --- times -----------------------------------------------------------------------------
    ot = cols["open_time"]
    ct = cols["close_time"]
    if ot.max() > _US_THRESHOLD:
        unit_ns, unit = _NS_PER_US, "µs"
    else:
        unit_ns, unit = _NS_PER_MS, "ms"
    # ns since the epoch must fit in int64 (until 2262)
    limit = np.iinfo(np.int64).max // unit_ns
    bad = np.flatnonzero((ot < 0) | (ot > limit))
    if bad.size:
        i = bad[0]
        raise CascadeError(
            f"{name}: line {line_of(i)}: open_time {ot[i]} is out of range; "
            f"expected epoch {unit} between 1970 and 2262"
        )

    def iso(t_units) -> str:
        return _iso(int(t_units) * unit_ns)

    step = np.diff(ot)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        i = bad[0]
        here = f"open_time {ot[i + 1]} ({iso(ot[i + 1])})"
        if step[i] == 0:
            what = f"duplicate {here}, same as line {line_of(i)}"
        else:
            what = f"unsorted {here} is before {ot[i]} ({iso(ot[i])}) on line {line_of(i)}"
        raise CascadeError(
            f"{name}: line {line_of(i + 1)}: {what}; expected strictly increasing open_time"
        )

    if interval_s is not None:
        interval_ns = int(interval_s) * _NS_PER_S
        if interval_ns % unit_ns:
            raise ValueError(f"interval_s={interval_s} is not a whole number of {unit}")
        interval = interval_ns // unit_ns
    else:
        values, counts = np.unique(step, return_counts=True)
        interval = int(values[np.argmax(counts)])

    bad = np.flatnonzero(step != interval)
    if bad.size:
        i = bad[0]
        expected = ot[i] + interval
        found = ot[i + 1]
        if found > expected and (found - ot[i]) % interval == 0:
            what = f"gap in open_time ({(found - ot[i]) // interval - 1} candle(s) missing)"
        elif found > expected:
            what = "gap in open_time"
        else:
            what = "misaligned open_time"
        raise CascadeError(
            f"{name}: line {line_of(i + 1)}: {what}: expected {iso(expected)} "
            f"({expected}), found {iso(found)} ({found}); candles every "
            f"{_fmt_interval(interval * unit_ns)}"
        )

    bad = np.flatnonzero(ct != ot + (interval - 1))
    if bad.size:
        i = bad[0]
        raise CascadeError(
            f"{name}: line {line_of(i)}: close_time {ct[i]}; expected open_time + interval - 1 "
            f"{unit} = {ot[i] + interval - 1}"
        )

    # --- frame -----------------------------------------------------------------------------
    index = pd.DatetimeIndex(
        pd.to_datetime(ot * unit_ns, unit="ns", utc=True), name="open_time"
    ).as_unit("ns")
    data = {
        k: (cols[k].astype(np.int64) if k == "count" else cols[k].astype(np.float64))
        for k in FRAME_COLUMNS
    }
    df = pd.DataFrame(data, index=index, columns=list(FRAME_COLUMNS))
    df.attrs["interval_s"] = _interval_s(interval * unit_ns)
    return df


def _read_text(path: Path, name: str) -> str:
    from cascade.io.files import read_user_text

    return read_user_text(path, name, "a Binance kline CSV file")


def _check_header(names: list[str], file: str) -> None:
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise CascadeError(
            f"{file}: line 1: header lacks column(s) {', '.join(missing)}; expected "
            f"{','.join(KLINE_COLUMNS)}"
        )
    seen: set[str] = set()
    for f in names:
        if f in seen and f in KLINE_COLUMNS:
            raise CascadeError(f"{file}: line 1: header names column '{f}' twice")
        seen.add(f)


def _parse_numbers(data_lines, names, file, line_of) -> dict[str, np.ndarray]:
    """Parse the needed columns: int64 for times and count, float64 for the rest.

    Fast path: pandas' C parser with fixed dtypes. When it fails, or yields non-finite
    floats, the text is re-read as strings to locate and quote the first bad cell.
    """
    wanted = list(_REQUIRED)
    text = "\n".join(data_lines)
    dtypes = {c: ("int64" if c in _INT_COLUMNS else "float64") for c in wanted}
    try:
        with warnings.catch_warnings():  # a cast of inf/NaN to int64 warns: take the slow path
            warnings.simplefilter("error", RuntimeWarning)
            frame = pd.read_csv(
                io.StringIO(text),
                header=None,
                names=names,
                usecols=wanted,
                dtype=dtypes,
                skip_blank_lines=False,
                engine="c",
            )
    except (ValueError, OverflowError, TypeError, RuntimeWarning):
        frame = None
    if frame is not None and len(frame) == len(data_lines):
        cols = {c: frame[c].to_numpy() for c in wanted}
        if all(np.isfinite(cols[c]).all() for c in wanted if c not in _INT_COLUMNS):
            return cols
    return _parse_slow(text, names, wanted, file, line_of)


_INT_RE = r"[+-]?\d+"


def _parse_slow(text, names, wanted, file, line_of) -> dict[str, np.ndarray]:
    """Column by column from strings; raise on the earliest bad cell (line, then column)."""
    raw = pd.read_csv(
        io.StringIO(text),
        header=None,
        names=names,
        usecols=wanted,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=False,
        engine="c",
    )
    cols: dict[str, np.ndarray] = {}
    best: tuple[int, int, str, str] | None = None  # (row, column order, column, expectation)
    for order, col in enumerate(wanted):
        s = pd.Series(raw[col].to_numpy(dtype=object), dtype=object).str.strip()
        if col in _INT_COLUMNS:
            expect = "an integer"
            bad = ~s.str.fullmatch(_INT_RE).to_numpy(dtype=bool)
            if not bad.any():
                try:
                    cols[col] = s.astype(np.int64).to_numpy()
                except (ValueError, OverflowError):  # beyond int64: locate the culprit
                    v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)
                    bad = ~(np.abs(v) < 2.0**62)
                    expect = "an integer within int64 range"
        else:
            expect = "a finite number"
            v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            bad = ~np.isfinite(v)
            cols[col] = v
        idx = np.flatnonzero(bad)
        if idx.size and (best is None or (idx[0], order) < best[:2]):
            best = (int(idx[0]), order, col, expect)
    if best is not None:
        i, _, col, expect = best
        value = str(raw[col].iloc[i])
        raise CascadeError(
            f"{file}: line {line_of(i)}: column '{col}' is {value!r}; expected {expect}"
        )
    return cols


# ---------------------------------------------------------------------------------------------
# writing and building
# ---------------------------------------------------------------------------------------------


def write_klines(df: pd.DataFrame, path: str | os.PathLike, *, header: bool = True) -> None:
    """Write a kline DataFrame in Binance's CSV format.

    Parameters
    ----------
    df : pandas.DataFrame, shape (n_candles, 9)
        Shaped like :func:`read_klines`' result: a tz-aware ``DatetimeIndex`` of open times
        and the columns of :data:`FRAME_COLUMNS`. The candle length is taken from
        ``df.attrs["interval_s"]`` when present, else from the spacing of the index.
    path : str or os.PathLike
        Output file (overwritten).
    header : bool, default True
        Write Binance's header line first (old dumps have none).

    Notes
    -----
    Times are written as epoch milliseconds (microseconds if the index has sub-millisecond
    parts) with ``close_time = open_time + interval - 1`` and ``ignore = 0``. Floats are
    written with Python's shortest round-trip representation, so ``read_klines`` gives back
    the same values.
    """
    missing = [c for c in FRAME_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"write_klines: DataFrame lacks column(s) {', '.join(missing)}")
    t_ns = _index_ns(df.index, "write_klines: df.index")
    interval_ns = _frame_interval_ns(df, t_ns)
    unit_ns = (
        _NS_PER_MS
        if not (t_ns % _NS_PER_MS).any() and interval_ns % _NS_PER_MS == 0
        else _NS_PER_US
    )
    ot = t_ns // unit_ns
    columns = {
        "open_time": ot,
        "close_time": ot + interval_ns // unit_ns - 1,
        "count": df["count"].to_numpy(np.int64),
        "ignore": np.zeros(len(ot), dtype=np.int64),
    }
    for col in FRAME_COLUMNS:
        if col != "count":
            columns[col] = df[col].to_numpy(np.float64)
    # str(int) and repr(float) (shortest round-trip text) per column, then one join per row:
    # several times faster than DataFrame.to_csv for the same output.
    texts = [
        list(map(str if columns[c].dtype.kind == "i" else repr, columns[c].tolist()))
        for c in KLINE_COLUMNS
    ]
    body = "\n".join(map(",".join, zip(*texts)))
    lines = ([",".join(KLINE_COLUMNS)] if header else []) + ([body] if body else [])
    with open(Path(path), "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")


def synthetic_klines(
    start: pd.Timestamp | datetime | str,
    prices: Sequence[float] | np.ndarray,
    interval_s: int = 60,
) -> pd.DataFrame:
    """Build a kline DataFrame from a sequence of close prices (for tests and examples).

    Parameters
    ----------
    start : pandas.Timestamp, datetime or str
        Open time of the first candle: a tz-aware timestamp, or an ISO 8601 string (read as
        UTC when it carries no offset).
    prices : array_like, shape (n_candles,)
        Close prices (quote units per base unit), finite and > 0; at least one.
    interval_s : int, default 60
        Candle length in seconds.

    Returns
    -------
    pandas.DataFrame, shape (n_candles, 9)
        :func:`read_klines`' shape. Candle ``k`` opens at ``start + k * interval_s`` with
        ``open`` = the previous close (the first candle opens at its own close),
        ``high``/``low`` = max/min of open and close, ``volume`` 1.0, ``quote_volume`` = close,
        ``count`` 1, ``taker_buy_volume`` 0.5 and ``taker_buy_quote_volume`` = close / 2.
    """
    if (
        isinstance(interval_s, bool)
        or not isinstance(interval_s, (int, np.integer))
        or interval_s <= 0
    ):
        raise ValueError(f"interval_s must be a positive integer, got {interval_s!r}")
    close = np.asarray(prices, dtype=np.float64)
    if close.ndim != 1 or close.size == 0:
        raise ValueError(f"prices must be a non-empty 1-D sequence, got shape {close.shape}")
    if not (np.isfinite(close).all() and (close > 0).all()):
        raise ValueError("prices must be finite and > 0")
    t0 = _to_utc_timestamp(start)
    t_ns = t0.as_unit("ns").value + np.arange(close.size, dtype=np.int64) * (
        int(interval_s) * _NS_PER_S
    )
    index = pd.DatetimeIndex(pd.to_datetime(t_ns, unit="ns", utc=True), name="open_time")
    open_ = np.concatenate([close[:1], close[:-1]])
    df = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close),
            "low": np.minimum(open_, close),
            "close": close,
            "volume": np.ones_like(close),
            "quote_volume": close.copy(),
            "count": np.ones(close.size, dtype=np.int64),
            "taker_buy_volume": np.full_like(close, 0.5),
            "taker_buy_quote_volume": close / 2.0,
        },
        index=index,
        columns=list(FRAME_COLUMNS),
    )
    df.attrs["interval_s"] = int(interval_s)
    return df


# ---------------------------------------------------------------------------------------------
# interpolation
# ---------------------------------------------------------------------------------------------


def path_log_diff(price: pd.Series, klines: pd.DataFrame, start=None, end=None) -> np.ndarray:
    """float64 (minutes,): ``log(sim_m / close_m)`` over the minutes ``m`` in [start, end) that
    both cover, where ``sim_m`` is the last simulated price of minute ``m`` (``price``, a per-step
    series with a UTC index, resampled to 1-minute bars labelled by their start like Binance's
    open times) and ``close_m`` the candle's close (``klines``: a :func:`read_klines` frame of
    1-minute candles)."""
    sim = price.resample("1min").last().dropna()
    close = klines["close"]
    both = sim.index.intersection(close.index)
    if start is not None:
        both = both[both >= pd.Timestamp(start)]
    if end is not None:
        both = both[both < pd.Timestamp(end)]
    return np.log(sim.loc[both].to_numpy() / close.loc[both].to_numpy(dtype=float))


def path_rmse_pct(price: pd.Series, klines: pd.DataFrame, start=None, end=None
                  ) -> float | None:
    """Log-price RMSE against real candles, percent: ``sqrt(mean(d^2)) * 100`` over
    :func:`path_log_diff`'s minutes ``d``; None when no minute is covered by both."""
    diff = path_log_diff(price, klines, start, end)
    if diff.size == 0:
        return None
    return float(np.sqrt(np.mean(diff ** 2)) * 100.0)


def price_path(df: pd.DataFrame, times) -> np.ndarray:
    """Close price linearly interpolated at the given times.

    Each candle's ``close`` is placed at its close time ``open_time + interval``, and the
    first candle's ``open`` at its open time, so the path covers
    ``[first open_time, last open_time + interval]``.

    Parameters
    ----------
    df : pandas.DataFrame, shape (n_candles, 9)
        Shaped like :func:`read_klines`' result (needs ``open``, ``close`` and a tz-aware,
        strictly increasing index). The interval is ``df.attrs["interval_s"]`` when present,
        else the most common spacing of the index.
    times : pandas.DatetimeIndex, Series or array_like of tz-aware datetimes, shape (n_times,)
        Query times (any time zone; converted to UTC). A single timestamp is accepted too.

    Returns
    -------
    numpy.ndarray, shape (n_times,), float64
        Price (quote units per base unit) at each time.

    Raises
    ------
    CascadeError
        If a time lies outside the covered range (naming the first one and the range).
    TypeError
        If ``times`` are tz-naive.
    """
    if "close" not in df.columns or "open" not in df.columns:
        raise ValueError("price_path: df needs 'open' and 'close' columns")
    if len(df) == 0:
        raise ValueError("price_path: df has no candles")
    t_ns = _index_ns(df.index, "price_path: df.index")
    if len(t_ns) > 1 and (np.diff(t_ns) <= 0).any():
        raise ValueError("price_path: df.index must be strictly increasing")
    interval_ns = _frame_interval_ns(df, t_ns)

    if isinstance(times, (pd.Timestamp, datetime, np.datetime64, str)):
        times = [times]
    q = pd.DatetimeIndex(times)
    if q.tz is None and len(q):
        raise TypeError("price_path: times must be tz-aware (e.g. UTC)")
    q_ns = q.tz_convert("UTC").as_unit("ns").asi8 if len(q) else np.empty(0, np.int64)

    # knots: first open at t0, then each close at its close time; relative ns as float
    origin = int(t_ns[0])
    knots_t = np.concatenate([[0], t_ns - origin + interval_ns]).astype(np.float64)
    knots_p = np.concatenate(
        [df["open"].to_numpy(np.float64)[:1], df["close"].to_numpy(np.float64)]
    )
    lo, hi = origin, int(t_ns[-1]) + interval_ns
    bad = np.flatnonzero((q_ns < lo) | (q_ns > hi))
    if bad.size:
        raise CascadeError(
            f"price path: time {_iso(q_ns[bad[0]])} is outside the kline data, which covers "
            f"{_iso(lo)} to {_iso(hi)}; expected times within that range"
        )
    return np.interp((q_ns - origin).astype(np.float64), knots_t, knots_p)


def candle_path(df: pd.DataFrame, times) -> np.ndarray:
    """A path through every candle's open, high, low and close, sampled at ``times``.

    Used by replay, where the extremes matter more than the closes: within each candle the path
    runs open -> high -> low -> close when the candle closed down (close < open), and
    open -> low -> high -> close otherwise (the usual assumption when only OHLC is known). The
    candle's samples are placed at offsets 0, n // 3, 2n // 3 and n - 1 of the n query times
    that fall inside it, and the path is linear in between, so each candle's high and low are
    sampled exactly and every sample lies within [low, high].

    Parameters
    ----------
    df : :func:`read_klines`-shaped DataFrame, strictly increasing, gap-free index
    times : tz-aware DatetimeIndex, shape (n_times,), increasing and evenly spaced, with at least
        4 times per candle

    Returns
    -------
    numpy.ndarray, shape (n_times,), float64, price in quote units per base unit

    Raises
    ------
    CascadeError
        A time outside the candles, or fewer than 4 times in a candle (naming it).
    """
    t_ns = _index_ns(df.index, "candle_path: df.index")
    interval_ns = _frame_interval_ns(df, t_ns)
    q = pd.DatetimeIndex(times)
    if q.tz is None and len(q):
        raise TypeError("candle_path: times must be tz-aware (e.g. UTC)")
    q_ns = q.tz_convert("UTC").as_unit("ns").asi8 if len(q) else np.empty(0, np.int64)
    if q_ns.size == 0:
        return np.empty(0)
    lo, hi = int(t_ns[0]), int(t_ns[-1]) + interval_ns
    bad = np.flatnonzero((q_ns < lo) | (q_ns >= hi))
    if bad.size:
        raise CascadeError(
            f"replay path: time {_iso(q_ns[bad[0]])} is outside the kline data, which covers "
            f"{_iso(lo)} to {_iso(hi)}; expected klines covering the whole scenario window")
    candle = np.searchsorted(t_ns, q_ns, side="right") - 1
    gaps = np.flatnonzero(np.diff(t_ns) != interval_ns)
    if gaps.size:
        gap = int(gaps[0])
        raise CascadeError(f"replay path: the klines jump from {_iso(t_ns[gap])} to "
                           f"{_iso(t_ns[gap + 1])}; expected one candle every "
                           f"{_fmt_interval(interval_ns)}")
    o, h, lw, c = (df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    out = np.empty(q_ns.size)
    bounds = np.flatnonzero(np.diff(candle)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [q_ns.size]])
    for a, b in zip(starts, ends):
        k = candle[a]
        n = b - a
        if n < 4:
            raise CascadeError(
                f"replay path: the candle opening {_iso(t_ns[k])} holds {n} steps; expected at "
                f"least 4 steps per candle (step_s <= {_interval_s(interval_ns) / 4:g})")
        first, second = (h[k], lw[k]) if c[k] < o[k] else (lw[k], h[k])
        knots = np.array([0, n // 3, (2 * n) // 3, n - 1], dtype=np.float64)
        out[a:b] = np.interp(np.arange(n, dtype=np.float64), knots,
                             np.array([o[k], first, second, c[k]]))
    return out


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _iso(t_ns) -> str:
    """ISO 8601 UTC text for epoch nanoseconds, e.g. ``2025-10-10T21:20:00Z``."""
    ts = pd.Timestamp(int(t_ns), unit="ns", tz="UTC")
    s = ts.isoformat().replace("+00:00", "Z")
    return s


def _num(x) -> str:
    """A parsed number as plain text (``-1.5``, ``3``), not numpy's ``np.float64(-1.5)``."""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def _fmt_interval(interval_ns: int) -> str:
    s = interval_ns / _NS_PER_S
    if s == int(s):
        return f"{int(s)} s"
    return f"{s:g} s"


def _interval_s(interval_ns: int) -> int | float:
    if interval_ns % _NS_PER_S == 0:
        return interval_ns // _NS_PER_S
    return interval_ns / _NS_PER_S


def _index_ns(index, what: str) -> np.ndarray:
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise TypeError(f"{what} must be a tz-aware DatetimeIndex")
    return index.tz_convert("UTC").as_unit("ns").asi8


def _frame_interval_ns(df: pd.DataFrame, t_ns: np.ndarray) -> int:
    iv = df.attrs.get("interval_s")
    if iv is not None:
        if not (
            isinstance(iv, (int, float, np.integer, np.floating)) and math.isfinite(iv) and iv > 0
        ):
            raise ValueError(f"df.attrs['interval_s'] must be a positive number, got {iv!r}")
        return round(float(iv) * _NS_PER_S)
    if len(t_ns) < 2:
        raise ValueError("a single candle needs df.attrs['interval_s'] to know its length")
    values, counts = np.unique(np.diff(t_ns), return_counts=True)
    return int(values[np.argmax(counts)])


def _to_utc_timestamp(start) -> pd.Timestamp:
    if isinstance(start, str):
        ts = pd.Timestamp(start)
        return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    ts = pd.Timestamp(start)
    if ts.tz is None:
        raise ValueError(f"start must be tz-aware (or an ISO string), got {start!r}")
    return ts.tz_convert("UTC")
