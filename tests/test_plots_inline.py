"""Waterfall colours at any bar width, zoom windows, and figures returned for Jupyter."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cascade.plots.waterfall import _RED, _tallest_per_column, plot_waterfall


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i: i + 2], 16) for i in (1, 3, 5)])


def day_of_minutes(k_long: float = 96e6, k_short: float = 4e6, next_short: float = 60e6,
                   shift: int = 0):
    """A day of 1-minute steps, flat price; minute 720 + 37 liquidates ``k_long`` of longs and
    ``k_short`` of shorts, the two minutes before and after it ``next_short`` of shorts only
    (so that, drawn a day wide, some share its pixel column)."""
    idx = pd.date_range("2025-10-10 12:00", periods=1440, freq="1min", tz="UTC")
    df = pd.DataFrame({"last_price": 100.0, "mark_price": 100.0, "liq_long_usd": 0.0,
                       "liq_short_usd": 0.0, "stop_usd": 0.0, "open_interest_usd": 1e9},
                      index=idx)
    k = 720 + 37 + shift
    df.iloc[k, df.columns.get_loc("liq_long_usd")] = k_long
    df.iloc[k, df.columns.get_loc("liq_short_usd")] = k_short
    for j in (k - 2, k - 1, k + 1, k + 2):
        df.iloc[j, df.columns.get_loc("liq_short_usd")] = next_short
    return df


def side_pixels(fig, panel: int = 1, tallest: bool = False) -> tuple[int, int]:
    """(red, green) pixels inside the bars panel of a rendered PNG of ``fig``; with
    ``tallest``, only in the pixel columns of the tallest bar."""
    png = fig._repr_png_()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h = img.shape[0]
    bb = fig.axes[panel].get_window_extent()
    x0, x1 = int(bb.x0) + 2, int(bb.x1) - 2
    y0, y1 = h - int(bb.y1) + 2, h - int(bb.y0) - 2  # image rows run downwards
    part = img[y0:y1, x0:x1]
    # the legend's patches sit in the panel too: mask a box around the legend
    leg = fig.axes[panel].get_legend().get_window_extent()
    lx0, lx1 = int(leg.x0) - x0 - 2, int(leg.x1) - x0 + 2
    ly0, ly1 = h - int(leg.y1) - y0 - 2, h - int(leg.y0) - y0 + 2
    part = part.copy()
    part[max(0, ly0):max(0, ly1), max(0, lx0):max(0, lx1)] = 255
    red = np.abs(part - _rgb(_RED)).sum(-1) < 60
    green = np.abs(part - _rgb("#2ca02c")).sum(-1) < 60
    if tallest:
        bar = red | green
        top = np.where(bar.any(axis=0), bar.argmax(axis=0), bar.shape[0])
        cols = top <= top.min() + 1
        red, green = red[:, cols], green[:, cols]
    return int(red.sum()), int(green.sum())


def test_a_96_percent_long_minute_stays_red_on_a_day_wide_chart():
    """1440 one-minute bars in ~1100 px: each bar is under a pixel. The tallest minute is 96 %
    longs and its neighbour (same pixel column) all shorts; the drawn column must be red but
    for its 4 % top, not painted over by the neighbour's green."""
    for shift in range(6):  # where the bars fall on the pixel grid decides which overlap
        fig = plot_waterfall(day_of_minutes(shift=shift), {"scenario": "t"})
        red, green = side_pixels(fig, tallest=True)
        assert red > 100  # about 200 px tall, at least 2 px wide
        assert red / (red + green) > 0.9, (shift, red, green)


def test_a_96_percent_long_minute_stays_red_when_zoomed():
    fig = plot_waterfall(day_of_minutes(), {"scenario": "t"},
                         window=("2025-10-11 00:20", "2025-10-11 01:00"))
    red, green = side_pixels(fig)
    # zoomed, every minute is a wide bar: one of 96 red + 4 green, four of 60 green
    assert 96 / 344 - 0.05 < red / (red + green) < 96 / 344 + 0.05, (red, green)
    red, green = side_pixels(fig, tallest=True)
    assert 0.94 < red / (red + green) < 0.98, (red, green)


def test_tallest_per_column_keeps_each_columns_tallest_bar():
    x = np.array([0.0, 0.5, 1.0, 1.2, 2.5, 4.0])
    total = np.array([1.0, 3.0, 2.0, 2.0, 0.0, 5.0])
    keep, cols = _tallest_per_column(x, total, 0.0, 1.0)
    assert keep.tolist() == [1, 2, 5]  # column 1: a tie keeps the first; column 2 is empty
    assert cols.tolist() == [0, 1, 4]
    keep, cols = _tallest_per_column(x, np.zeros(6), 0.0, 1.0)
    assert keep.size == 0 and cols.size == 0


def test_window_zooms_and_bad_window_is_clear():
    steps = day_of_minutes()
    fig = plot_waterfall(steps, {"scenario": "t", "price_min_time": "2025-10-10T12:00:00+00:00",
                                 "price_min": 100.0}, window=("2025-10-11 00:00", "2025-10-11 01:00"))
    lo, hi = fig.axes[0].get_xlim()
    assert (hi - lo) * 24 * 60 == pytest.approx(60, abs=1)
    with pytest.raises(ValueError, match="window: no step"):
        plot_waterfall(steps, {}, window=("2030-01-01", "2030-01-02"))
    with pytest.raises(ValueError, match="window: expected"):
        plot_waterfall(steps, {}, window=("not a time", "2030-01-02"))


def test_plot_without_path_returns_an_inline_figure(tmp_path):
    from matplotlib.figure import Figure

    fig = plot_waterfall(day_of_minutes(), {"scenario": "t"})
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")
    out = plot_waterfall(day_of_minutes(), {"scenario": "t"}, tmp_path / "w.png")
    assert out == tmp_path / "w.png" and out.read_bytes().startswith(b"\x89PNG")
