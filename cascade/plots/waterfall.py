"""Charts of a simulated cascade: price/liquidation waterfall, liquidation map, insurance fund.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas, so no
pyplot state is created or leaked, and writes one image file (PNG unless the path says
otherwise). matplotlib, numpy and pandas are imported inside the functions: ``import
cascade.plots.waterfall`` stays cheap, and :func:`format_usd` works without any of them.

Public names: :func:`plot_waterfall`, :func:`plot_liquidation_map`, :func:`plot_insurance`,
:func:`format_usd`.
"""

from __future__ import annotations

import datetime as _dt
import math
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cascade.plots.limits import axis_limits

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["format_usd", "plot_insurance", "plot_liquidation_map", "plot_waterfall"]

_UTC = _dt.timezone.utc
_DPI = 120

# colours: red = longs liquidated (price falling), green = shorts liquidated (price rising)
_RED = "#d62728"
_DARK_RED = "#8c1616"
_GREEN = "#2ca02c"
_DARK_GREEN = "#17641b"
_PRICE = "#1f3b73"
_MARK = "#ff7f0e"
_STOP = "#6a3d9a"
_OI = "#1f77b4"
_GREY = "#7f7f7f"

_NEGLIGIBLE_USD = 1.0  # below a dollar a panel counts as empty ("no liquidations")
_UNITS = ((1e3, "K", 1), (1e6, "M", 1), (1e9, "B", 2), (1e12, "T", 2))  # ascending


# --------------------------------------------------------------------------------------------
# number formatting
# --------------------------------------------------------------------------------------------


def format_usd(x: Any) -> str:
    """Format a USD amount compactly: ``1.23B``, ``456.7M``, ``12.3K``, ``950``.

    Parameters
    ----------
    x : float-like
        Amount in USD. Negative amounts keep their sign (``-12.3K``).

    Returns
    -------
    str
        Two decimals for billions and trillions, one for millions and thousands, a whole
        number below 1,000. No currency symbol (callers add ``$`` where they want it). A value
        that would round up to 1000 of a unit moves to the next unit (``999_960`` ->
        ``1.0M``). ``nan`` and infinities come back as ``"nan"``, ``"inf"``, ``"-inf"``.

    Examples
    --------
    >>> format_usd(1_234_000_000), format_usd(456_700_000), format_usd(-12_345), format_usd(950)
    ('1.23B', '456.7M', '-12.3K', '950')
    """
    v = float(x)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    a = abs(v)
    if round(a) < 1000:
        text = f"{a:.0f}"
    else:
        i = max((k for k, (scale, _, _) in enumerate(_UNITS) if a >= scale), default=0)
        scaled = round(a / _UNITS[i][0], _UNITS[i][2])
        if scaled >= 1000 and i + 1 < len(_UNITS):  # 999_960 -> 1.0M, not 1000.0K
            i += 1
            scaled = round(a / _UNITS[i][0], _UNITS[i][2])
        text = f"{scaled:.{_UNITS[i][2]}f}{_UNITS[i][1]}"
    if text == "0":  # -0.3 -> "0", not "-0"
        return text
    return ("-" if v < 0 else "") + text


def _esc(text: str) -> str:
    """Escape ``$`` so matplotlib draws it literally instead of starting mathtext."""
    return text.replace("$", r"\$")


def _usd_tick(x: float, _pos: Any = None) -> str:
    """Axis tick label for a USD amount: ``$250M``, ``$1.25B``, ``-$3K``, ``$0``."""
    if x == 0 or not math.isfinite(x):
        return "$0" if x == 0 else format_usd(x)
    a = abs(x)
    if a < 1000 and a != round(a):
        body = f"{a:.2f}".rstrip("0").rstrip(".")
    else:
        body = format_usd(a)
        if "." in body:
            num, suffix = body[:-1], body[-1]
            if num[-1].isdigit() and suffix.isalpha():
                body = num.rstrip("0").rstrip(".") + suffix
    return ("-$" if x < 0 else "$") + body


def _usd_tick_labels(values) -> list[str]:
    """Labels for a set of USD ticks: one unit (that of the largest tick) and as many decimals
    as the spacing needs, the same for all, e.g. ``$7.850B $7.875B $7.900B`` or ``$0 $5M $10M``.
    """
    vals = [float(v) for v in values]
    finite = [abs(v) for v in vals if math.isfinite(v)]
    top = max(finite, default=0.0)
    scale, suffix = 1.0, ""
    for sc, suf, _ in _UNITS:
        if top >= sc:
            scale, suffix = sc, suf
    scaled = [v / scale for v in vals]
    digits = 0
    while digits < 4 and any(
        math.isfinite(x) and abs(x - round(x, digits)) > 1e-6 * max(1.0, abs(x)) for x in scaled
    ):
        digits += 1
    labels = []
    for v, x in zip(vals, scaled):
        if not math.isfinite(v):
            labels.append(format_usd(v))
        elif round(x, digits) == 0:
            labels.append("$0")
        else:
            labels.append(("-$" if x < 0 else "$") + f"{abs(x):,.{digits}f}{suffix}")
    return labels


def _usd_axis_formatter():
    """A matplotlib tick formatter using :func:`_usd_tick_labels`."""
    from matplotlib.ticker import Formatter

    class _USDFormatter(Formatter):
        def format_ticks(self, values):
            return _usd_tick_labels(values)

        def __call__(self, x, pos=None):
            return _usd_tick(x)

    return _USDFormatter()


def _price_text(p: float) -> str:
    """A price as ``$49,210``, ``$12.35`` or ``$0.004512``."""
    a = abs(p)
    if a >= 1000:
        return f"${p:,.0f}"
    if a >= 1:
        return f"${p:,.2f}"
    return f"${p:.4g}"


def _price_tick(x: float, _pos: Any = None) -> str:
    a = abs(x)
    if a >= 1000:
        return f"${x:,.0f}"
    if a >= 1:
        return f"${x:,.2f}".rstrip("0").rstrip(".") if a >= 100 else f"${x:,.2f}"
    return f"${x:.4g}"


# --------------------------------------------------------------------------------------------
# time axis
# --------------------------------------------------------------------------------------------


def _utc_index(index: Any) -> pd.DatetimeIndex:
    """The index as a UTC DatetimeIndex (naive timestamps are taken to be UTC)."""
    import pandas as pd

    idx = pd.DatetimeIndex(index)
    return idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")


def _to_num(idx: pd.DatetimeIndex):
    """Matplotlib date numbers (float days) for a UTC DatetimeIndex."""
    import matplotlib.dates as mdates

    return mdates.date2num(idx.tz_localize(None).to_numpy())


def _make_time_formatter():
    """A tick formatter that writes ``HH:MM`` (``HH:MM:SS`` when ticks fall between minutes)
    and adds the date on a second line on the first tick and wherever the date changes, but
    only when the ticks span more than one calendar day."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import Formatter

    class _UTCTimeFormatter(Formatter):
        def _dates(self, values):
            return [mdates.num2date(v, tz=_UTC) for v in values]

        def format_ticks(self, values):
            if len(values) == 0:
                return []
            dates = self._dates(values)
            fmt = "%H:%M:%S" if any(d.second or d.microsecond for d in dates) else "%H:%M"
            several_days = len({d.date() for d in dates}) > 1
            labels, prev = [], None
            for d in dates:
                label = d.strftime(fmt)
                if several_days and (prev is None or d.date() != prev):
                    label += "\n" + d.strftime("%b %d").replace(" 0", " ")
                labels.append(label)
                prev = d.date()
            return labels

        def __call__(self, x, pos=None):
            return self.format_ticks([x])[0]

        def format_data_short(self, value):
            return mdates.num2date(value, tz=_UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    return _UTCTimeFormatter()


def _setup_time_axis(ax: Axes, t_lo: pd.Timestamp, t_hi: pd.Timestamp) -> None:
    """UTC date locator/formatter on ``ax`` and an x label naming the date of a one-day window."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=_UTC, minticks=5, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(_make_time_formatter())
    last = t_hi - _one_ns()
    if t_lo.date() == last.date():
        ax.set_xlabel(f"time (UTC, {t_lo:%Y-%m-%d})")
    else:
        ax.set_xlabel(f"time (UTC, {t_lo:%Y-%m-%d} to {last:%Y-%m-%d})")


def _one_ns():
    import pandas as pd

    return pd.Timedelta(1, "ns")


def _step_of(idx: pd.DatetimeIndex) -> pd.Timedelta:
    """The typical spacing of a time index (1 s when it cannot be told)."""
    import pandas as pd

    if len(idx) >= 2:
        d = pd.Series(idx[1:] - idx[:-1]).median()
        if d > pd.Timedelta(0):
            return d
    return pd.Timedelta(seconds=1)


# --------------------------------------------------------------------------------------------
# figure helpers
# --------------------------------------------------------------------------------------------


def _check_steps(steps: pd.DataFrame, columns) -> None:
    """ValueError unless ``steps`` has every one of ``columns`` and at least one row."""
    missing = [c for c in columns if c not in steps.columns]
    if missing:
        raise ValueError(f"steps is missing column(s): {', '.join(missing)}")
    if len(steps) == 0:
        raise ValueError("steps is empty: nothing to plot")


def _new_figure(width: float, height: float):
    """A pyplot-free figure with an Agg canvas and constrained layout, shown inline by Jupyter
    (:mod:`cascade.plots._figure`)."""
    from cascade.plots._figure import new_figure

    return new_figure(width, height, _DPI)


def _save(fig, path: Any):
    """Write ``fig`` to ``path`` (creating parent folders; the format follows the suffix) and
    return the path; with no path, return the figure itself (Jupyter shows it inline)."""
    if path is None:
        return fig
    out = pathlib.Path(path)
    if out.parent != pathlib.Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    fmt = out.suffix[1:].lower() or "png"
    fig.savefig(out, format=fmt, dpi=_DPI)
    return out


def _style(ax: Axes) -> None:
    ax.grid(True, which="major", color="#e0e0e0", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top",):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


_CORNERS = ("upper left", "upper right", "lower left", "lower right", "center left",
            "center right")


def _quiet_corner(ax: Axes, series, candidates=_CORNERS) -> str:
    """The legend place of ``ax`` (a corner or the middle of a side) the data cover least.

    ``series`` is a list of ``(axes, x, y)``: data on ``ax`` or on a twin of it, each in its own
    axes' data coordinates. Call after all limits are final.
    """
    import numpy as np

    x0, x1 = ax.get_xlim()
    counts = dict.fromkeys(candidates, 0)
    for a, x, y in series:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.size == 0:
            continue
        y0, y1 = a.get_ylim()
        fx = (x - x0) / ((x1 - x0) or 1.0)
        fy = (y - y0) / ((y1 - y0) or 1.0)
        left, right = fx < 0.4, fx > 0.6
        low, mid, high = fy < 0.35, (fy > 0.3) & (fy < 0.7), fy > 0.65
        boxes = {"upper left": left & high, "upper right": right & high,
                 "lower left": left & low, "lower right": right & low,
                 "center left": left & mid, "center right": right & mid}
        for c in candidates:
            counts[c] += int(np.count_nonzero(boxes[c]))
    return min(candidates, key=lambda c: (counts[c], candidates.index(c)))


def _bars(ax: Axes, left, width: float, bottom, top, color: str, label: str) -> None:
    """Bars from ``bottom`` to ``top`` starting at ``left``, as one collection.

    Much faster than :meth:`Axes.bar` for the thousands of bars of a day of minutes; bars of
    zero height are left out. Does not touch the axes limits (callers set them).
    """
    import numpy as np
    from matplotlib.collections import PolyCollection

    left = np.asarray(left, dtype=float)
    bottom = np.broadcast_to(np.asarray(bottom, dtype=float), left.shape)
    top = np.asarray(top, dtype=float)
    keep = top != bottom
    x0, y0, y1 = left[keep], bottom[keep], top[keep]
    x1 = x0 + width
    verts = np.stack([np.column_stack(c) for c in ((x0, y0), (x0, y1), (x1, y1), (x1, y0))],
                     axis=1)
    ax.add_collection(PolyCollection(verts, facecolors=color, edgecolors="none", linewidths=0,
                                     label=label, zorder=2), autolim=False)


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=12,
            color=_GREY, style="italic", zorder=10,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "none"})


# --------------------------------------------------------------------------------------------
# summary -> title
# --------------------------------------------------------------------------------------------


def _num(summary: Mapping[str, Any], key: str) -> float | None:
    v = summary.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _waterfall_title(summary: Mapping[str, Any], title: str | None) -> str:
    if title is None:
        head = str(summary.get("scenario", "cascade"))
        bits = []
        if summary.get("seed") is not None:
            bits.append(f"seed {summary['seed']}")
        pos = _num(summary, "positions")
        if pos is not None:
            bits.append(f"{pos:,.0f} positions")
        if bits:
            head += " — " + ", ".join(bits)
    else:
        head = title
    stats = []
    dd = _num(summary, "max_drawdown_pct")
    if dd is not None:
        stats.append(f"max drawdown {abs(dd):.1f}%")
    liq = _num(summary, "liquidated_notional_usd")
    if liq is not None:
        text = f"liquidated ${format_usd(liq)}"
        share = _num(summary, "long_share")
        if share is not None and liq >= _NEGLIGIBLE_USD:
            pct = share * 100 if abs(share) <= 1 else share
            text += f" ({pct:.0f}% longs)"
        stats.append(text)
    amp = _num(summary, "amplification")
    if amp is not None:
        stats.append(f"amplification {amp:.2f}×")
    rmse = _num(summary, "path_rmse_pct")
    if rmse is not None:
        stats.append(f"path RMSE vs reference {rmse:.2f}%")
    return head + ("\n" + "  ·  ".join(stats) if stats else "")


def _summary_low(summary: Mapping[str, Any], last: pd.Series):
    """(time, price) of the low: from the summary when it is usable, else from ``last``."""
    import pandas as pd

    p = _num(summary, "price_min")
    t = summary.get("price_min_time")
    if p is not None and t is not None:
        try:
            ts = pd.Timestamp(t)
        except (TypeError, ValueError):
            ts = None
        if ts is not None and not pd.isna(ts):
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            return ts, p
    i = int(last.to_numpy().argmin())
    return last.index[i], float(last.iloc[i])


# --------------------------------------------------------------------------------------------
# waterfall
# --------------------------------------------------------------------------------------------

_AXES_PX = 1100  # about the width of a panel, pixels, in an 11 in figure at 120 dpi
_MIN_BAR_PX = 3.0  # narrowest bar drawn, pixels (2 px bars turned green when a viewer downscaled)


def _tallest_per_column(x, total, x0: float, col_w: float):
    """Bars of left edges ``x`` grouped in columns ``[x0 + c col_w, x0 + (c + 1) col_w)``: the
    index of the tallest bar of each column that holds a bar of non-zero ``total`` (the first
    on ties) and the column numbers, both int64 (m,)."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    total = np.asarray(total, dtype=float)
    nz = np.flatnonzero(total != 0)
    col = np.floor((x[nz] - x0) / col_w).astype(np.int64)
    order = np.lexsort((nz, -total[nz], col))  # by column, tallest first, then time
    _, first = np.unique(col[order], return_index=True)
    keep = nz[order[first]]
    return keep, col[order[first]]


def _in_window(data: pd.DataFrame, summary: Mapping[str, Any], window):
    """Rows of ``data`` in ``[start, end)`` and the summary with the low taken from them when
    the run's low lies outside the window."""
    import pandas as pd

    try:
        start, end = (pd.Timestamp(t) for t in window)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"window: expected (start, end) timestamps, got {window!r} ({exc})"
                         ) from None
    start, end = (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
                  for t in (start, end))
    part = data[(data.index >= start) & (data.index < end)]
    if len(part) == 0:
        raise ValueError(f"window: no step in [{start}, {end}); the steps run from "
                         f"{data.index[0]} to {data.index[-1]}")
    summary = dict(summary)
    t_low = summary.get("price_min_time")
    if t_low is None or not start <= _utc_index([pd.Timestamp(t_low)])[0] < end:
        i = int(part["last_price"].to_numpy().argmin())
        summary["price_min"] = float(part["last_price"].iloc[i])
        summary["price_min_time"] = part.index[i].isoformat()
    return part, summary


_STEP_COLUMNS = ("last_price", "mark_price", "liq_long_usd", "liq_short_usd", "stop_usd",
                 "open_interest_usd")


def _bucket_for(n_minutes: float, step: pd.Timedelta) -> tuple[str, str]:
    """Resampling rule and its label: 1 minute, or coarser when the bars would be sub-pixel."""
    import pandas as pd

    for minutes, rule, label in ((1, "1min", "minute"), (5, "5min", "5 min"),
                                 (15, "15min", "15 min"), (60, "1h", "hour"),
                                 (240, "4h", "4 h"), (1440, "1D", "day")):
        if step <= pd.Timedelta(minutes=minutes) and n_minutes / minutes <= 2000:
            return rule, label
    return "1D", "day"


def plot_waterfall(steps: pd.DataFrame, summary: Mapping[str, Any], path: Any = None, *,
                   reference: pd.DataFrame | None = None, title: str | None = None,
                   window=None):
    """Draw the cascade "waterfall": price, liquidations per minute, cumulative liquidations.

    Three stacked panels share a UTC time axis (``HH:MM`` ticks, with dates when the window
    spans several days):

    1. last and mark price, with an optional reference overlay (grey close line and a light
       high-low band, "reference (Binance klines)") and the low annotated with price, drop from
       the start and time;
    2. liquidated notional per minute (1-minute sums; longs red, shorts green, stacked) and
       stop-loss volume per minute as a thin line; windows of more than ~2000 minutes are
       bucketed coarser (5 min, 15 min, ...) and the axis label says so. Where bars would be
       narrower than three pixels (a day of minutes), each three-pixel column draws the tallest
       bucket that falls in it, with that bucket's own long/short split, so a bar keeps its
       side's colour and no neighbour paints over it;
    3. cumulative liquidated notional (long, short, total) and open interest on a twin axis.

    Parameters
    ----------
    steps : pandas.DataFrame
        One row per simulation step, UTC DatetimeIndex (naive is taken as UTC), columns
        ``last_price``, ``mark_price``, ``liq_long_usd``, ``liq_short_usd``, ``stop_usd``,
        ``open_interest_usd`` (others are ignored). At least one row.
    summary : mapping
        Run summary; used for the title (``scenario``, ``seed``, ``positions``,
        ``max_drawdown_pct``, ``liquidated_notional_usd``, ``long_share``, and
        ``amplification`` / ``path_rmse_pct`` when present) and the low (``price_min``,
        ``price_min_time``, ``price_start``). Missing keys are left out of the title; the low
        falls back to the minimum of ``last_price``.
    path : str or path-like, optional
        Output file; PNG unless the suffix names another format. Parent folders are created.
        None: return the figure instead (Jupyter shows it inline).
    reference : pandas.DataFrame, optional
        Real 1-minute candles (DatetimeIndex of open times, columns ``open``, ``high``,
        ``low``, ``close``); only the part inside the simulated window is drawn.
    title : str, optional
        Replaces the first title line (scenario, seed, positions); the statistics line stays.
    window : (start, end), optional
        Zoom on the steps in ``[start, end)`` (timestamps or text pandas reads; naive is UTC).
        The title's figures stay those of the whole run.

    Returns
    -------
    pathlib.Path or Figure
        ``path``, written as an 11 x 9 in figure at 120 dpi (1320 x 1080 px); the figure when
        ``path`` is None.

    Raises
    ------
    ValueError
        If ``steps`` is empty or lacks one of the columns above, or ``window`` holds no step.
    """
    import numpy as np
    import pandas as pd

    _check_steps(steps, _STEP_COLUMNS)

    idx = _utc_index(steps.index)
    data = steps.loc[:, list(_STEP_COLUMNS)].astype(float).set_axis(idx)
    data = data.sort_index()
    if window is not None:
        data, summary = _in_window(data, summary, window)
    idx = data.index
    step = _step_of(idx)
    t_lo, t_hi = idx[0], idx[-1] + step

    n_minutes = (t_hi - t_lo) / pd.Timedelta(minutes=1)
    rule, bucket_label = _bucket_for(n_minutes, step)
    per = data[["liq_long_usd", "liq_short_usd", "stop_usd"]].resample(rule).sum()
    width = pd.Timedelta(rule)
    t_lo = min(t_lo, per.index[0])
    t_hi = max(t_hi, per.index[-1] + width)
    if len(idx) == 1:  # a lone step: show it in a minute-wide window
        t_hi = max(t_hi, t_lo + pd.Timedelta(minutes=1))

    fig = _new_figure(11, 9)
    ax_p, ax_l, ax_c, ax_b = fig.subplots(4, 1, sharex=True,
                                          gridspec_kw={"height_ratios": [3, 2, 2, 1.1]})
    for ax in (ax_p, ax_l, ax_c, ax_b):
        _style(ax)
    x = _to_num(idx)
    xlim = tuple(_to_num(pd.DatetimeIndex([t_lo, t_hi])))

    # (1) price ------------------------------------------------------------------------------
    last = data["last_price"]
    series_p = [(ax_p, x, last.to_numpy()), (ax_p, x, data["mark_price"].to_numpy())]
    if reference is not None and len(reference) > 0:
        ref = reference.copy()
        ref.index = _utc_index(ref.index)
        ref = ref.sort_index()
        ref = ref[(ref.index >= t_lo - pd.Timedelta(minutes=1)) & (ref.index <= t_hi)]
        if len(ref) > 0:
            rx = _to_num(ref.index)
            if {"high", "low"} <= set(ref.columns):
                edges = np.append(rx, rx[-1] + 1 / 1440)
                ax_p.fill_between(edges, np.append(ref["low"], ref["low"].iloc[-1]),
                                  np.append(ref["high"], ref["high"].iloc[-1]), step="post",
                                  color="#bdbdbd", alpha=0.45, linewidth=0, zorder=1)
            ax_p.plot(rx + 1 / 1440, ref["close"].to_numpy(dtype=float), color=_GREY,
                      linewidth=0.9, zorder=2, label="reference (Binance klines)")
            series_p.append((ax_p, rx, ref["close"].to_numpy(dtype=float)))
    lone = "o" if len(x) == 1 else None  # a single step draws no line: show a dot
    ax_p.plot(x, last.to_numpy(), color=_PRICE, linewidth=1.3, zorder=3, marker=lone,
              label="last price")
    ax_p.plot(x, data["mark_price"].to_numpy(), color=_MARK, linewidth=1.0, linestyle="--",
              zorder=4, label="mark price")
    axis_limits(ax_p.set_xlim, *xlim)
    ax_p.yaxis.set_major_formatter(_price_tick)
    ax_p.set_ylabel("price (USD)")

    t_low, p_low = _summary_low(summary, last)
    y0, y1 = ax_p.get_ylim()
    span = (y1 - y0) or abs(p_low) * 0.01 or 1.0
    axis_limits(ax_p.set_ylim, min(y0, p_low) - 0.12 * span, y1 + 0.04 * span)
    x_low = float(_to_num(pd.DatetimeIndex([t_low]))[0])
    start = _num(summary, "price_start")
    if start is None:
        start = float(last.iloc[0])
    label = f"low {_price_text(p_low)}"
    if start:
        label += f" ({(p_low / start - 1) * 100:+.1f}%)"
    several_days = t_lo.date() != (t_hi - _one_ns()).date()
    label += f" at {t_low:%b %d %H:%M:%S} UTC" if several_days else f" at {t_low:%H:%M:%S} UTC"
    frac = (x_low - xlim[0]) / ((xlim[1] - xlim[0]) or 1.0)
    right = frac < 0.6
    ax_p.plot([x_low], [p_low], marker="v", color=_DARK_RED, markersize=7, zorder=5,
              linestyle="none")
    ax_p.annotate(_esc(label), (x_low, p_low), xytext=(12 if right else -12, -4),
                  textcoords="offset points", ha="left" if right else "right", va="top",
                  fontsize=9, color=_DARK_RED, zorder=6,
                  bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "none", "alpha": 0.85})
    # keep the legend off the low's label too: it spans ~30% of the width beside the marker
    text_x = x_low + np.linspace(0, 0.3, 200) * (xlim[1] - xlim[0]) * (1 if right else -1)
    series_p.append((ax_p, text_x, np.full(text_x.shape, p_low)))
    ax_p.legend(loc=_quiet_corner(ax_p, series_p), fontsize=9, framealpha=0.9)

    # (2) liquidations per bucket --------------------------------------------------------------
    bx = _to_num(per.index)
    w = width / pd.Timedelta(days=1)
    longs = per["liq_long_usd"].to_numpy()
    shorts = per["liq_short_usd"].to_numpy()
    stops = per["stop_usd"].to_numpy()
    # gaps between bars only while bars are a few pixels wide (~1100 px of axes); thinner
    # bars with gaps would alias into stripes
    bar_px = _AXES_PX * w / (xlim[1] - xlim[0])
    bar_w = w * (0.9 if bar_px >= 4 else 1.0)
    bl, bL, bS = bx, longs, shorts
    if bar_px < _MIN_BAR_PX:  # sub-pixel bars: the tallest bucket of each 3-px column
        col_w = _MIN_BAR_PX * (xlim[1] - xlim[0]) / _AXES_PX
        keep, cols = _tallest_per_column(bx, longs + shorts, xlim[0], col_w)
        bl, bL, bS, bar_w = xlim[0] + cols * col_w, longs[keep], shorts[keep], col_w
    _bars(ax_l, bl, bar_w, np.zeros_like(bL), bL, _RED, "long liquidations")
    _bars(ax_l, bl, bar_w, bL, bL + bS, _GREEN, "short liquidations")
    ax_l.step(np.append(bx, bx[-1] + w), np.append(stops, stops[-1]), where="post", color=_STOP,
              linewidth=0.9, label="stop-loss orders")
    axis_limits(ax_l.set_xlim, *xlim)
    top = float(np.max(np.maximum(longs + shorts, stops))) if len(per) else 0.0
    if top < _NEGLIGIBLE_USD:
        axis_limits(ax_l.set_ylim, 0, 1)
        ax_l.set_yticks([0])
        _note(ax_l, "no liquidations")
    else:
        axis_limits(ax_l.set_ylim, 0, top * 1.12)
    ax_l.yaxis.set_major_formatter(_usd_axis_formatter())
    ax_l.set_ylabel(f"USD per {bucket_label}")
    ax_l.legend(loc=_quiet_corner(ax_l, [(ax_l, bx, longs + shorts), (ax_l, bx, stops)],
                                  ("upper right", "upper left")), fontsize=9, framealpha=0.9)

    # (3) cumulative -------------------------------------------------------------------------
    cum_long = data["liq_long_usd"].cumsum().to_numpy()
    cum_short = data["liq_short_usd"].cumsum().to_numpy()
    total = cum_long + cum_short
    ax_c.plot(x, total, color="black", linewidth=1.4, marker=lone, label="total liquidated")
    ax_c.plot(x, cum_long, color=_RED, linewidth=1.1, marker=lone, label="longs")
    ax_c.plot(x, cum_short, color=_GREEN, linewidth=1.1, marker=lone, label="shorts")
    if total[-1] < _NEGLIGIBLE_USD:
        axis_limits(ax_c.set_ylim, 0, 1)
        ax_c.set_yticks([0])
    else:
        axis_limits(ax_c.set_ylim, 0, total[-1] * 1.08)
    ax_c.yaxis.set_major_formatter(_usd_axis_formatter())
    ax_c.set_ylabel("cumulative liquidated")
    ax_oi = ax_c.twinx()
    oi = data["open_interest_usd"].to_numpy()
    ax_oi.plot(x, oi, color=_OI, linewidth=1.1, linestyle=":", marker=lone,
               label="open interest (right)")
    lo, hi = float(oi.min()), float(oi.max())
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    axis_limits(ax_oi.set_ylim, max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    ax_oi.yaxis.set_major_formatter(_usd_axis_formatter())
    ax_oi.set_ylabel("open interest", color=_OI)
    ax_oi.tick_params(axis="y", colors=_OI, labelsize=9)
    ax_oi.spines["top"].set_visible(False)
    axis_limits(ax_c.set_xlim, *xlim)
    handles = ax_c.get_legend_handles_labels()[0] + ax_oi.get_legend_handles_labels()[0]
    corner = _quiet_corner(ax_c, [(ax_c, x, total), (ax_c, x, cum_long), (ax_c, x, cum_short),
                                  (ax_oi, x, oi)])
    ax_c.legend(handles=handles, loc=corner, fontsize=9, framealpha=0.9, ncol=2)

    # (4) branching ratio ----------------------------------------------------------------------
    _branching_panel(ax_b, steps.set_axis(_utc_index(steps.index)).sort_index(), xlim)

    _setup_time_axis(ax_b, t_lo, t_hi)
    fig.suptitle(_esc(_waterfall_title(summary, title)), fontsize=12)
    return _save(fig, path)


def _branching_panel(ax: Axes, steps: pd.DataFrame, xlim) -> None:
    """Per-minute branching ratio n_m = L_m / V_{m-1} (cascade.analysis.branching) as dots on
    a log axis, with the critical line n = 1."""
    import numpy as np

    from cascade.analysis.branching import MIN_SHARE, branching_minutes

    per = branching_minutes(steps)
    n = per["branching_ratio"].dropna()
    ax.set_xlim(*xlim)
    ax.set_ylabel("branching\nratio", fontsize=9)
    if n.empty:
        ax.set_yticks([])
        _note(ax, "branching ratio: no minute with enough forced volume")
        return
    shown = n.clip(lower=1e-3)
    ax.set_yscale("log")
    ax.axhline(1.0, color=_GREY, linewidth=0.9, linestyle="--", zorder=1)
    ax.plot(_to_num(shown.index) + 0.5 / 1440, shown.to_numpy(), linestyle="none", marker="o",
            markersize=3.5, color=_DARK_RED, zorder=3)
    lo, hi = float(shown.min()), float(shown.max())
    ax.set_ylim(min(lo, 0.5) / 3, max(hi, 2.0) * 3)
    ax.text(xlim[0], 1.0, " critical (1)", fontsize=8, color=_GREY, va="bottom", ha="left")
    ax.text(0.995, 0.95, f"liquidated in minute m / forced volume in m-1 (where m-1 >= "
            f"{MIN_SHARE:.0%} of the peak minute); median {np.median(n):.2g}",
            transform=ax.transAxes, fontsize=8, ha="right", va="top",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})


# --------------------------------------------------------------------------------------------
# liquidation map
# --------------------------------------------------------------------------------------------


def plot_liquidation_map(liq_map: pd.DataFrame, price: float, path: Any = None, *,
                         title: str | None = None):
    """Draw a liquidation map: notional that would be liquidated at each price level.

    Price runs along x. Bars show, per price bin, the long notional (red; normally below the
    current price) and the short notional (green; normally above) that a mark price at that
    level would liquidate. On a twin axis, the cumulative curves: for a level below the current
    price, all long notional liquidated if the price falls that far; for a level above, all
    short notional liquidated if it rises that far. A dashed vertical line marks the current
    price. An empty map gives an empty chart saying "no open positions".

    Parameters
    ----------
    liq_map : pandas.DataFrame
        Indexed by price level (bin centre, USD), columns ``long_usd`` and ``short_usd``.
    price : float
        Current (mark) price before the shock.
    path : str or path-like
        Output file; PNG unless the suffix names another format. Parent folders are created.
    title : str, optional
        Figure title; by default "Liquidation map" with the current price.

    Returns
    -------
    pathlib.Path
        ``path``, written as an 11 x 6 in figure at 120 dpi (1320 x 720 px).

    Raises
    ------
    ValueError
        If ``liq_map`` is not empty and lacks ``long_usd`` or ``short_usd``, or ``price`` is
        not a positive finite number.
    """
    import numpy as np

    price = float(price)
    if not math.isfinite(price) or price <= 0:
        raise ValueError(f"price must be a positive number, got {price!r}")
    fig = _new_figure(11, 6)
    ax = fig.subplots()
    _style(ax)
    ax.xaxis.set_major_formatter(_price_tick)
    ax.yaxis.set_major_formatter(_usd_axis_formatter())
    ax.set_xlabel("liquidation price (USD)")
    ax.set_ylabel("notional liquidated at level")
    fig.suptitle(_esc(title if title is not None else f"Liquidation map — current price "
                      f"{_price_text(price)}"), fontsize=12)

    if len(liq_map) > 0:
        missing = [c for c in ("long_usd", "short_usd") if c not in liq_map.columns]
        if missing:
            raise ValueError(f"liq_map is missing column(s): {', '.join(missing)}")
        m = liq_map.sort_index()
        levels = m.index.to_numpy(dtype=float)
        longs = m["long_usd"].to_numpy(dtype=float)
        shorts = m["short_usd"].to_numpy(dtype=float)
    else:
        levels = longs = shorts = np.zeros(0)

    ax.axvline(price, color="black", linestyle="--", linewidth=1.1, zorder=5,
               label=_esc(f"current price {_price_text(price)}"))
    if levels.size == 0 or longs.sum() + shorts.sum() < _NEGLIGIBLE_USD:
        axis_limits(ax.set_xlim, price * 0.9, price * 1.1)
        axis_limits(ax.set_ylim, 0, 1)
        ax.set_yticks([0])
        _note(ax, "no open positions")
        ax.legend(loc="upper right", fontsize=9)
        return _save(fig, path)

    diffs = np.diff(levels)
    diffs = diffs[diffs > 0]
    width = float(np.median(diffs)) if diffs.size else abs(levels[0]) * 0.002 or 1.0
    left = levels - width * 0.45
    _bars(ax, left, width * 0.9, np.zeros_like(longs), longs, _RED, "longs liquidated")
    _bars(ax, left, width * 0.9, longs, longs + shorts, _GREEN, "shorts liquidated")
    lo = min(levels[0] - width, price - width)
    hi = max(levels[-1] + width, price + width)
    axis_limits(ax.set_xlim, lo, hi)
    axis_limits(ax.set_ylim, 0, float((longs + shorts).max()) * 1.12)

    # cumulative: longs liquidated if the price falls to L = sum of longs at levels >= L
    ax_c = ax.twinx()
    below = levels <= price
    above = levels >= price
    long_cum = np.cumsum(longs[::-1])[::-1]  # sum over levels >= L
    short_cum = np.cumsum(shorts)  # sum over levels <= L
    long_at_price = float(longs[levels >= price].sum())
    short_at_price = float(shorts[levels <= price].sum())
    lx = np.append(levels[below], price)
    ly = np.append(long_cum[below], long_at_price)
    sx = np.insert(levels[above], 0, price)
    sy = np.insert(short_cum[above], 0, short_at_price)
    ax_c.plot(lx, ly, color=_DARK_RED, linewidth=1.6, label="cumulative longs if price falls (right)")
    ax_c.plot(sx, sy, color=_DARK_GREEN, linewidth=1.6, label="cumulative shorts if price rises (right)")
    cmax = max(float(ly.max()) if ly.size else 0.0, float(sy.max()) if sy.size else 0.0)
    axis_limits(ax_c.set_ylim, 0, (cmax or 1.0) * 1.12)
    ax_c.yaxis.set_major_formatter(_usd_axis_formatter())
    ax_c.set_ylabel("cumulative notional liquidated")
    ax_c.tick_params(labelsize=9)
    ax_c.spines["top"].set_visible(False)

    handles = ax.get_legend_handles_labels()[0] + ax_c.get_legend_handles_labels()[0]
    corner = _quiet_corner(ax, [(ax, levels, longs + shorts), (ax_c, lx, ly), (ax_c, sx, sy)],
                           ("upper left", "upper right"))
    ax.legend(handles=handles, loc=corner, fontsize=9, framealpha=0.9)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# insurance fund
# --------------------------------------------------------------------------------------------


def plot_insurance(steps: pd.DataFrame, path: Any = None, *, title: str | None = None):
    """Draw the insurance fund balance over time and cumulative bad debt below it.

    Parameters
    ----------
    steps : pandas.DataFrame
        One row per step, UTC DatetimeIndex, columns ``insurance_fund_usd`` and
        ``bad_debt_usd`` (cumulative). At least one row.
    path : str or path-like
        Output file; PNG unless the suffix names another format. Parent folders are created.
    title : str, optional
        Figure title; by default "Insurance fund and bad debt".

    Returns
    -------
    pathlib.Path
        ``path``, written as an 11 x 6 in figure at 120 dpi (1320 x 720 px).

    Raises
    ------
    ValueError
        If ``steps`` is empty or lacks one of the two columns.
    """
    import pandas as pd

    _check_steps(steps, ("insurance_fund_usd", "bad_debt_usd"))
    idx = _utc_index(steps.index)
    cols = ["insurance_fund_usd", "bad_debt_usd"]
    # the fund's inventory taken over from liquidations (IOC or backstop), if it ever held one
    inv_cols = ["fund_inventory_usd", "fund_equity_usd"]
    has_inv = all(c in steps.columns for c in inv_cols) and \
        bool((steps["fund_inventory_usd"].astype(float) != 0).any())
    if has_inv:
        cols += inv_cols
    data = steps.loc[:, cols].astype(float).set_axis(idx)
    data = data.sort_index()
    idx = data.index
    step = _step_of(idx)
    t_lo, t_hi = idx[0], idx[-1] + step
    if len(idx) == 1:
        t_hi = max(t_hi, t_lo + pd.Timedelta(minutes=1))
    x = _to_num(idx)
    xlim = tuple(_to_num(pd.DatetimeIndex([t_lo, t_hi])))

    fig = _new_figure(11, 6)
    if has_inv:
        ax_f, ax_i, ax_b = fig.subplots(3, 1, sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 2]})
    else:
        ax_f, ax_b = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for ax in (ax_f, ax_b) + ((ax_i,) if has_inv else ()):
        _style(ax)
        ax.yaxis.set_major_formatter(_usd_axis_formatter())
    fund = data["insurance_fund_usd"].to_numpy()
    debt = data["bad_debt_usd"].to_numpy()

    lone = "o" if len(x) == 1 else None  # a single step draws no line: show a dot
    ax_f.plot(x, fund, color=_OI, linewidth=1.4, marker=lone, label="insurance fund")
    # zoomed on the fund's range (not from zero) so that a drawdown of a few % is visible
    lo, hi = float(fund.min()), float(fund.max())
    if has_inv:
        equity = data["fund_equity_usd"].to_numpy()
        ax_f.plot(x, equity, color=_OI, linewidth=1.0, linestyle="--",
                  label="fund equity (cash + inventory at mark)")
        ax_f.legend(loc="upper left", fontsize=8, frameon=False)
        lo, hi = min(lo, float(equity.min())), max(hi, float(equity.max()))
        inv = data["fund_inventory_usd"].to_numpy()
        ax_i.plot(x, inv, color=_DARK_RED, linewidth=1.2)
        ax_i.fill_between(x, 0, inv, color=_DARK_RED, alpha=0.12, linewidth=0)
        ax_i.axhline(0.0, color="grey", linewidth=0.6)
        ax_i.set_ylabel("inventory at mark\n(+ long)")
        ax_i.text(0.01, 0.92, _esc(f"peak {_usd_tick(float(abs(inv).max()))}"),
                  transform=ax_i.transAxes, ha="left", va="top", fontsize=9)
        ax_i.set_xlim(*xlim)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.02 or 1.0
    axis_limits(ax_f.set_ylim, lo - pad, hi + pad)
    axis_limits(ax_f.set_xlim, *xlim)
    ax_f.set_ylabel("insurance fund")
    f0, f1 = fund[0], fund[-1]
    change = f"{_usd_tick(f0)} → {_usd_tick(f1)}"
    if f0 > 0:
        change += f" ({(f1 / f0 - 1) * 100:+.1f}%)"
    ax_f.text(0.99, 0.04, _esc(change), transform=ax_f.transAxes, ha="right", va="bottom",
              fontsize=9, bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "none",
                                "alpha": 0.85})

    ax_b.plot(x, debt, color=_RED, linewidth=1.4, marker=lone, label="cumulative bad debt")
    ax_b.fill_between(x, 0, debt, color=_RED, alpha=0.12, linewidth=0)
    dmax = float(debt.max())
    if dmax < _NEGLIGIBLE_USD:
        axis_limits(ax_b.set_ylim, 0, 1)
        ax_b.set_yticks([0])
        _note(ax_b, "no bad debt")
    else:
        axis_limits(ax_b.set_ylim, 0, dmax * 1.12)
        ax_b.text(0.01, 0.92, _esc(f"total {_usd_tick(float(debt[-1]))}"),
                  transform=ax_b.transAxes, ha="left", va="top", fontsize=9, color=_DARK_RED,
                  bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "none",
                        "alpha": 0.85})
    ax_b.set_ylabel("cumulative bad debt")
    axis_limits(ax_b.set_xlim, *xlim)
    _setup_time_axis(ax_b, t_lo, t_hi)
    fig.suptitle(_esc(title if title is not None else "Insurance fund and bad debt"),
                 fontsize=12)
    return _save(fig, path)
