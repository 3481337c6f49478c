"""Tests for cascade.plots.waterfall: images are written, sized right, and degenerate inputs draw."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.plots import waterfall as plots
from cascade.plots.waterfall import format_usd, plot_insurance, plot_liquidation_map, plot_waterfall

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def make_steps(hours: float = 2.0, freq: str = "1s", start: str = "2024-08-05 00:00:00",
               liquidations: bool = True) -> pd.DataFrame:
    """Synthetic run: V-shaped price (60k -> 51k at 40% of the window -> 56k) with
    liquidations concentrated around the low, longs mostly."""
    idx = pd.date_range(start, periods=int(pd.Timedelta(hours=hours) / pd.Timedelta(freq)),
                        freq=freq, tz="UTC")
    n = len(idx)
    u = np.linspace(0.0, 1.0, n)
    low_at = 0.4
    price = np.where(u < low_at, 60_000 - 9_000 * u / low_at,
                     51_000 + 5_000 * (u - low_at) / (1 - low_at))
    rng = np.random.default_rng(7)
    price = price + rng.normal(0, 25, n)
    mark = pd.Series(price).rolling(30, min_periods=1).mean().to_numpy()
    near_low = np.exp(-(((u - low_at) / 0.05) ** 2))
    if liquidations:
        liq_long = near_low * rng.exponential(400_000, n)
        liq_short = 0.1 * np.exp(-(((u - 0.8) / 0.05) ** 2)) * rng.exponential(400_000, n)
        stops = 0.3 * near_low * rng.exponential(300_000, n)
    else:
        liq_long = liq_short = stops = np.zeros(n)
    liq_total = np.cumsum(liq_long + liq_short)
    bad = np.maximum(0.0, liq_total - 0.8 * liq_total[-1]) * 0.01 if liquidations else np.zeros(n)
    return pd.DataFrame(
        {
            "last_price": price,
            "mark_price": mark,
            "liq_long_usd": liq_long,
            "liq_short_usd": liq_short,
            "liq_count": (liq_long > 0).astype(float) * 3,
            "stop_usd": stops,
            "exo_flow_usd": -near_low * 1e5,
            "dip_flow_usd": near_low * 2e4,
            "open_interest_usd": 8e9 - liq_total,
            "depth_usd": 5e7 * (1 - 0.5 * near_low),
            "insurance_fund_usd": 5e8 - 0.02 * liq_total,
            "bad_debt_usd": bad,
        },
        index=idx,
    )


def make_summary(steps: pd.DataFrame, **extra) -> dict:
    last = steps["last_price"]
    liq = float(steps["liq_long_usd"].sum() + steps["liq_short_usd"].sum())
    summary = {
        "scenario": "aug-5-2024-unwind",
        "seed": 42,
        "positions": 100_000,
        "price_start": float(last.iloc[0]),
        "price_min": float(last.min()),
        "price_min_time": last.idxmin().isoformat(),
        "max_drawdown_pct": float((1 - last.min() / last.iloc[0]) * 100),
        "liquidated_notional_usd": liq,
        "long_share": float(steps["liq_long_usd"].sum() / liq) if liq else 0.0,
    }
    summary.update(extra)
    return summary


def make_reference(steps: pd.DataFrame) -> pd.DataFrame:
    close = steps["last_price"].resample("1min").last() * 1.003
    return pd.DataFrame({"open": close.shift(1).bfill(), "high": close + 120,
                         "low": close - 120, "close": close})


def make_liq_map(price: float = 60_000.0, n: int = 80) -> pd.DataFrame:
    levels = np.linspace(price * 0.7, price * 1.3, n)
    below = levels < price
    dist = np.abs(levels / price - 1)
    longs = np.where(below, 4e8 * np.exp(-dist / 0.08), 0.0)
    shorts = np.where(~below, 2e8 * np.exp(-dist / 0.1), 0.0)
    return pd.DataFrame({"long_usd": longs, "short_usd": shorts}, index=pd.Index(levels))


def read_png(path: Path, width_in: float, height_in: float, dpi: int = 120) -> np.ndarray:
    """Check the file is a non-empty PNG of the expected pixel size and return its pixels."""
    import matplotlib.image as mpimg

    raw = path.read_bytes()
    assert len(raw) > 10_000
    assert raw[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.shape[:2] == (round(height_in * dpi), round(width_in * dpi))
    rgb = img[..., :3]
    assert rgb.std() > 0.02, "image is (nearly) blank"
    return rgb


@pytest.fixture(scope="module")
def steps() -> pd.DataFrame:
    return make_steps()


# --------------------------------------------------------------------------------------------
# waterfall
# --------------------------------------------------------------------------------------------


def count_colour(img: np.ndarray, hex_colour: str) -> int:
    """Pixels of ``img`` (RGB floats) within 2% of ``hex_colour``."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(img - rgb).max(axis=-1) < 0.02).sum())


def test_waterfall_png_size_colours_and_reference_overlay(steps, tmp_path):
    summary = make_summary(steps, amplification=2.37, path_rmse_pct=1.8)
    plain = plot_waterfall(steps, summary, tmp_path / "plain.png")
    overlay = plot_waterfall(steps, summary, tmp_path / "wf.png", reference=make_reference(steps))
    assert overlay == tmp_path / "wf.png"
    assert isinstance(overlay, Path)
    a, b = read_png(plain, 11, 9), read_png(overlay, 11, 9)
    assert np.abs(a - b).max() > 0.2  # the reference overlay is drawn
    # long bars red, short bars green: far more than the legend swatches (~300 px each)
    assert count_colour(b, "#d62728") > 5000
    assert count_colour(b, "#2ca02c") > 1000


def test_waterfall_str_path_naive_index_bare_summary_and_no_pyplot_state(steps, tmp_path):
    naive = steps.iloc[:300].tz_localize(None)  # naive timestamps are taken as UTC
    target = tmp_path / "sub" / "dir" / "wf.png"
    pyplot_loaded = "matplotlib.pyplot" in sys.modules  # another test module may have loaded it
    figs_before = sys.modules["matplotlib.pyplot"].get_fignums() if pyplot_loaded else []
    out = plot_waterfall(naive, {"scenario": "bare"}, str(target), title="custom title")
    assert out == target
    read_png(out, 11, 9)
    if pyplot_loaded:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == figs_before
    else:
        assert "matplotlib.pyplot" not in sys.modules


def test_waterfall_bad_input_raises(steps, tmp_path):
    with pytest.raises(ValueError, match="open_interest_usd"):
        plot_waterfall(steps.drop(columns="open_interest_usd"), {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_waterfall(steps.iloc[:0], {}, tmp_path / "y.png")
    assert not (tmp_path / "x.png").exists()


def test_waterfall_no_liquidations(tmp_path):
    quiet = make_steps(hours=0.5, liquidations=False)
    out = plot_waterfall(quiet, make_summary(quiet), tmp_path / "quiet.png")
    img = read_png(out, 11, 9)
    assert count_colour(img, "#d62728") < 1000  # legend swatch only, no bars


def test_waterfall_single_step(tmp_path):
    one = make_steps(hours=1 / 3600)
    assert len(one) == 1
    out = plot_waterfall(one, make_summary(one), tmp_path / "one.png")
    read_png(out, 11, 9)


def test_waterfall_several_days_coarse_steps(tmp_path):
    multi = make_steps(hours=72, freq="30s", start="2024-08-03 12:00")
    out = plot_waterfall(multi, make_summary(multi), tmp_path / "multi.png")
    read_png(out, 11, 9)


def test_time_labels_add_dates_only_across_days():
    import matplotlib.dates as mdates

    fmt = plots._make_time_formatter()
    one_day = mdates.date2num(pd.date_range("2024-08-05 10:00", periods=4, freq="15min")
                              .to_numpy())
    assert fmt.format_ticks(one_day) == ["10:00", "10:15", "10:30", "10:45"]
    days = mdates.date2num(pd.date_range("2024-08-04 12:00", periods=4, freq="12h").to_numpy())
    assert fmt.format_ticks(days) == ["12:00\nAug 4", "00:00\nAug 5", "12:00", "00:00\nAug 6"]
    secs = mdates.date2num(pd.date_range("2024-08-05 10:00", periods=3, freq="10s").to_numpy())
    assert fmt.format_ticks(secs) == ["10:00:00", "10:00:10", "10:00:20"]


# --------------------------------------------------------------------------------------------
# liquidation map and insurance
# --------------------------------------------------------------------------------------------


def test_liquidation_map_png(tmp_path):
    out = plot_liquidation_map(make_liq_map(), 60_000.0, tmp_path / "map.png")
    img = read_png(out, 11, 6)
    assert count_colour(img, "#d62728") > 5000
    assert count_colour(img, "#2ca02c") > 5000


def test_liquidation_map_empty_and_single_level(tmp_path):
    empty = pd.DataFrame({"long_usd": [], "short_usd": []}, index=pd.Index([], dtype=float))
    blank = read_png(plot_liquidation_map(empty, 60_000, tmp_path / "empty.png"), 11, 6)
    one = pd.DataFrame({"long_usd": [5e7], "short_usd": [0.0]}, index=pd.Index([55_000.0]))
    single = read_png(plot_liquidation_map(one, 60_000, tmp_path / "one.png", title="one"),
                      11, 6)
    assert np.abs(blank - single).max() > 0.2
    with pytest.raises(ValueError):
        plot_liquidation_map(make_liq_map(), 0.0, tmp_path / "bad.png")


def test_insurance_png_and_single_step(steps, tmp_path):
    read_png(plot_insurance(steps, tmp_path / "ins.png"), 11, 6)
    one_step_no_debt = steps.iloc[:1].assign(bad_debt_usd=0.0)
    read_png(plot_insurance(one_step_no_debt, tmp_path / "ins1.png", title="one step"), 11, 6)


# --------------------------------------------------------------------------------------------
# format_usd
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (950, "950"),
        (999.4, "999"),
        (999.6, "1.0K"),
        (12_345, "12.3K"),
        (999_940, "999.9K"),
        (999_960, "1.0M"),
        (456_700_000, "456.7M"),
        (1_234_000_000, "1.23B"),
        (2.5e12, "2.50T"),
        (-950, "-950"),
        (-12_345, "-12.3K"),
        (-456_700_000, "-456.7M"),
        (-1_234_000_000, "-1.23B"),
        (-0.3, "0"),
        (np.float32(1.5e6), "1.5M"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_format_usd(value, expected):
    assert format_usd(value) == expected


def test_usd_tick_labels_are_compact_and_consistent():
    assert [plots._usd_tick(v) for v in (0, 250e6, 1e9, 1.25e9, -3e3)] == [
        "$0", "$250M", "$1B", "$1.25B", "-$3K"]
    assert plots._usd_tick_labels([7.85e9, 7.875e9, 7.9e9]) == ["$7.850B", "$7.875B", "$7.900B"]
    assert plots._usd_tick_labels([0, 5e6, 10e6]) == ["$0", "$5M", "$10M"]
    assert plots._usd_tick_labels([-2e6, 0, 2e6]) == ["-$2M", "$0", "$2M"]


# --------------------------------------------------------------------------------------------
# imports and pyplot state
# --------------------------------------------------------------------------------------------


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_does_not_load_matplotlib_or_pandas():
    out = run_python("import sys, cascade.plots.waterfall; "
                     "print('matplotlib' in sys.modules, 'pandas' in sys.modules)")
    assert out == "False False"
