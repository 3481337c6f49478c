"""Charts of the liquidation heatmap (:mod:`cascade.analysis.heatmap`): the map over time with
the price path on top, and the ladder at one instant as a horizontal profile.

Drawn like :mod:`cascade.plots.waterfall`: a figure of its own with an Agg canvas, no pyplot
state; written to ``path`` (PNG unless the suffix says otherwise) or, with no path, returned
so that Jupyter shows it inline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cascade.plots.waterfall import (
    _DARK_GREEN,
    _DARK_RED,
    _GREEN,
    _PRICE,
    _RED,
    _esc,
    _new_figure,
    _note,
    _price_text,
    _price_tick,
    _save,
    _setup_time_axis,
    _style,
    _to_num,
    _usd_axis_formatter,
    _usd_tick,
    _utc_index,
)

__all__ = ["plot_heatmap", "plot_ladder"]

_NEGLIGIBLE_USD = 1.0


def _grid(heatmap: pd.DataFrame):
    from cascade.analysis.heatmap import grid

    if len(heatmap) == 0:
        raise ValueError("heatmap is empty: nothing to plot")
    missing = [c for c in ("time", "price_low", "price_high", "long_usd", "short_usd")
               if c not in heatmap.columns]
    if missing:
        raise ValueError(f"heatmap is missing column(s): {', '.join(missing)}")
    return grid(heatmap)


def _bin_text(heatmap: pd.DataFrame, edges: np.ndarray, price0: float) -> str:
    width = float(heatmap.attrs.get("bin_width_usd", edges[1] - edges[0]))
    return f"bin width {_price_text(width)} ({width / price0 * 100:.2g}% of {_price_text(price0)})"


def plot_heatmap(heatmap: pd.DataFrame, steps: pd.DataFrame, path: Any = None, *,
                 title: str | None = None, window=None):
    """Draw the liquidation heatmap: longs (top) and shorts (bottom) that would be liquidated
    at each price level (y) over time (x), colour = notional per bin, with the last price on
    top of both.

    Parameters
    ----------
    heatmap : pandas.DataFrame
        :attr:`cascade.result.Result.heatmap`: one row per (snapshot time, price bin), columns
        ``time``, ``price_low``, ``price_high``, ``long_usd``, ``short_usd``.
    steps : pandas.DataFrame
        The run's steps (UTC DatetimeIndex, column ``last_price``).
    path : str or path-like, optional
        Output file; None returns the figure.
    title : str, optional
    window : (start, end), optional
        Zoom on ``[start, end)`` (timestamps or text; naive is UTC).

    Returns
    -------
    pathlib.Path or Figure
        ``path`` (11 x 8 in at 120 dpi), or the figure when ``path`` is None.
    """
    from matplotlib.colors import LinearSegmentedColormap, PowerNorm
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    times, edges, vals = _grid(heatmap)
    every = pd.Timedelta(seconds=float(heatmap.attrs.get("every_s") or 60.0))
    t_edges = times.append(pd.DatetimeIndex([times[-1] + every]))
    last = steps["last_price"].astype(float)
    last.index = _utc_index(last.index)
    if window is not None:
        lo_t, hi_t = (pd.Timestamp(t) for t in window)
        lo_t, hi_t = (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
                      for t in (lo_t, hi_t))
        last = last[(last.index >= lo_t) & (last.index < hi_t)]
        if len(last) == 0:
            raise ValueError(f"window: no step in [{lo_t}, {hi_t})")
    else:
        lo_t, hi_t = t_edges[0], t_edges[-1]
    price0 = float(steps["last_price"].iloc[0])
    p_lo, p_hi = float(last.min()), float(last.max())
    pad = 0.08 * price0
    y_lo, y_hi = max(edges[0], p_lo - pad), min(edges[-1], p_hi + pad)

    fig = _new_figure(11, 8)
    axes = fig.subplots(2, 1, sharex=True)
    xt = _to_num(t_edges)
    for ax, j, name, colour, dark in ((axes[0], 0, "longs", _RED, _DARK_RED),
                                      (axes[1], 1, "shorts", _GREEN, _DARK_GREEN)):
        _style(ax)
        z = vals[:, j, :].T  # (K, S): price bins by snapshots
        zmax = float(z.max()) if z.size else 0.0
        cmap = LinearSegmentedColormap.from_list(name, ["#ffffff", colour, dark])
        if zmax >= _NEGLIGIBLE_USD:
            # square-root colours: the thin rungs of the ladder stay visible next to a wall
            mesh = ax.pcolormesh(xt, edges, np.ma.masked_less_equal(z, 0.0), cmap=cmap,
                                 norm=PowerNorm(0.5, vmin=0.0, vmax=zmax), shading="flat",
                                 rasterized=True, zorder=1)
            cb = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.05)
            cb.ax.yaxis.set_major_formatter(_usd_axis_formatter())
            cb.set_label("USD per bin", fontsize=9)
            cb.ax.tick_params(labelsize=8)
        else:
            _note(ax, f"no open {name} in the price range")
        ax.plot(_to_num(last.index), last.to_numpy(), color=_PRICE, linewidth=1.1, zorder=3)
        ax.set_ylim(y_lo, y_hi)
        ax.set_xlim(*_to_num(pd.DatetimeIndex([lo_t, hi_t])))
        ax.yaxis.set_major_formatter(_price_tick)
        ax.set_ylabel(f"{name}: liquidation price")
        handles = [Line2D([], [], color=_PRICE, linewidth=1.1, label="last price"),
                   Patch(facecolor=colour, label=_esc(f"{name} that would be liquidated")),
                   Patch(facecolor="none", edgecolor="none",
                         label=_esc(_bin_text(heatmap, edges, price0))),
                   Patch(facecolor="none", edgecolor="none",
                         label=f"ladder every {_duration(every)}")]
        ax.legend(handles=handles, loc="upper right" if j == 0 else "lower right", fontsize=8,
                  framealpha=0.85)
    _setup_time_axis(axes[1], lo_t, hi_t)
    fig.suptitle(_esc(title or "Liquidation heatmap: open positions' liquidation prices over "
                      "time"), fontsize=12)
    return _save(fig, path)


def _duration(td: pd.Timedelta) -> str:
    s = td.total_seconds()
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g} h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g} min"
    return f"{s:g} s"


def plot_ladder(heatmap: pd.DataFrame, when, price: float, path: Any = None, *,
                title: str | None = None):
    """Draw the ladder at one instant as a horizontal profile: notional that would be
    liquidated at each price level (y), longs red and shorts green, the price then dashed.

    ``when``: the instant (the snapshot at or just before it is drawn); ``price``: the last
    price then (USD). Returns ``path`` (11 x 7 in) or, with no path, the figure.
    """
    from cascade.analysis.heatmap import profile_at

    _grid(heatmap)
    t, prof = profile_at(heatmap, when)
    lo = prof["price_low"].to_numpy()
    hi = prof["price_high"].to_numpy()
    longs = prof["long_usd"].to_numpy()
    shorts = prof["short_usd"].to_numpy()
    edges = np.append(lo, hi[-1])
    fig = _new_figure(11, 7)
    ax = fig.subplots()
    _style(ax)
    h = hi - lo
    ax.barh(lo, longs, height=h, align="edge", color=_RED, linewidth=0, label="longs")
    ax.barh(lo, shorts, height=h, align="edge", left=longs, color=_GREEN, linewidth=0,
            label="shorts")
    ax.axhline(price, color="black", linestyle="--", linewidth=1.1,
               label=_esc(f"last price {_price_text(price)}"))
    total = longs + shorts
    pad = 0.15 * price
    y_lo, y_hi = max(edges[0], price - pad), min(edges[-1], price + pad)
    shown = total[(hi > y_lo) & (lo < y_hi)]
    if float(total.sum()) < _NEGLIGIBLE_USD:
        _note(ax, "no open positions in the price range")
        ax.set_xlim(0, 1)
    else:
        ax.set_xlim(0, float(shown.max() if shown.size and shown.max() > 0 else total.max())
                    * 1.1)
    ax.set_ylim(y_lo, y_hi)
    ax.yaxis.set_major_formatter(_price_tick)
    ax.xaxis.set_major_formatter(_usd_axis_formatter())
    ax.set_ylabel("liquidation price (USD)")
    ax.set_xlabel("notional that would be liquidated, USD per bin")
    below = float(longs[hi <= price].sum())
    above = float(shorts[lo >= price].sum())
    ax.plot([], [], " ", label=_esc(_bin_text(heatmap, edges, price)))
    ax.plot([], [], " ", label=_esc(f"longs below: {_usd_tick(below)}, shorts above: "
                                    f"{_usd_tick(above)}"))
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    fig.suptitle(_esc(title or f"Liquidation ladder at {t:%Y-%m-%d %H:%M:%S} UTC"), fontsize=12)
    return _save(fig, path)
