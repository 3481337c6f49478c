"""Plot of a multi-venue run: each venue's price against the index, insurance fund, and ADL."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cascade.plots.limits import axis_limits
from cascade.plots.waterfall import (
    _check_steps,
    _esc,
    _new_figure,
    _price_tick,
    _save,
    _setup_time_axis,
    _style,
    _to_num,
    _usd_axis_formatter,
    _usd_tick,
    _utc_index,
)

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def plot_venues(steps: pd.DataFrame, venues: list[str], path: Any = None, *,
                title: str | None = None):
    """Draw, per venue over time: last price (and the index), insurance fund (as a share of its
    start, so funds of very different sizes share an axis), the fund's (vault's) inventory at
    the mark, cumulative ADL and backstop notional and cumulative bad debt.

    Parameters
    ----------
    steps : pandas.DataFrame
        A multi-venue run's steps (:class:`cascade.result.Result`): UTC DatetimeIndex, column
        ``index_price`` and, per venue, ``<venue>.last_price``, ``<venue>.insurance_fund_usd``,
        ``<venue>.adl_usd`` (per step) and ``<venue>.bad_debt_usd`` (cumulative); if present,
        ``<venue>.fund_inventory_usd`` and ``<venue>.backstop_usd`` (per step) add a panel.
    venues : venue names, in the scenario's order
    path : output file (PNG unless the suffix names another format)
    title : figure title (default "Venues: price, insurance fund and ADL")

    Returns
    -------
    pathlib.Path, written as an 11 x 9 in figure (11 x 11 with inventories) at 120 dpi.
    """
    need = ["index_price"] + [f"{v}.{c}" for v in venues
                              for c in ("last_price", "insurance_fund_usd", "adl_usd",
                                        "bad_debt_usd")]
    _check_steps(steps, need)
    # the funds' inventories and the vaults' backstops, where the run has them
    extra = [f"{v}.{c}" for v in venues for c in ("fund_inventory_usd", "backstop_usd")]
    has_inv = all(c in steps.columns for c in extra)
    if has_inv:
        need = need + extra
    # one point per minute at most (max/min kept where it matters: price lows, fund lows)
    idx = _utc_index(steps.index)
    data = steps.loc[:, need].set_axis(idx)
    if len(data) > 3000:
        agg = {c: "min" for c in need}
        for v in venues:
            agg[f"{v}.adl_usd"] = "sum"
            agg[f"{v}.bad_debt_usd"] = "max"
            if has_inv:
                agg[f"{v}.backstop_usd"] = "sum"
                agg[f"{v}.fund_inventory_usd"] = "last"
        data = data.resample("1min").agg(agg)
    x = _to_num(data.index)
    fig = _new_figure(11, 11 if has_inv else 9)
    if has_inv:
        ax_p, ax_f, ax_i, ax_a = fig.subplots(4, 1, sharex=True,
                                              gridspec_kw={"height_ratios": [3, 2, 2, 2]})
    else:
        ax_p, ax_f, ax_a = fig.subplots(3, 1, sharex=True,
                                        gridspec_kw={"height_ratios": [3, 2, 2]})
    for ax in (ax_p, ax_f, ax_a) + ((ax_i,) if has_inv else ()):
        _style(ax)
    ax_p.plot(x, data["index_price"], color="black", linewidth=1.0, linestyle=":",
              label="index")
    for k, v in enumerate(venues):
        c = _COLORS[k % len(_COLORS)]
        ax_p.plot(x, data[f"{v}.last_price"], color=c, linewidth=1.1, label=f"{v} last")
        fund = data[f"{v}.insurance_fund_usd"].to_numpy()
        f0 = fund[0] if fund[0] > 0 else max(float(fund.max()), 1.0)
        ax_f.plot(x, fund / f0 * 100.0, color=c, linewidth=1.3,
                  label=_esc(f"{v} (start {_usd_tick(float(fund[0]))}, "
                             f"min {_usd_tick(float(fund.min()))})"))
        adl = np.cumsum(data[f"{v}.adl_usd"].to_numpy())
        ax_a.plot(x, adl, color=c, linewidth=1.3, label=f"{v} ADL")
        debt = data[f"{v}.bad_debt_usd"].to_numpy()
        if debt.max() > 0:
            ax_a.plot(x, debt, color=c, linewidth=1.0, linestyle="--", label=f"{v} bad debt")
        total = f"{v}: ADL {_usd_tick(float(adl[-1]))}"
        if has_inv:
            inv = data[f"{v}.fund_inventory_usd"].to_numpy()
            ax_i.plot(x, inv, color=c, linewidth=1.2,
                      label=_esc(f"{v} (peak {_usd_tick(float(np.abs(inv).max()))})"))
            back = np.cumsum(data[f"{v}.backstop_usd"].to_numpy())
            if back[-1] > 0:
                ax_a.plot(x, back, color=c, linewidth=1.0, linestyle=":",
                          label=f"{v} backstop")
                total += f", backstop {_usd_tick(float(back[-1]))}"
        ax_a.text(0.01, 0.92 - 0.1 * k, _esc(total), transform=ax_a.transAxes, ha="left",
                  va="top", fontsize=9, color=c)
    ax_p.yaxis.set_major_formatter(_price_tick_formatter())
    ax_p.set_ylabel("price (USD)")
    ax_p.legend(loc="lower left", fontsize=8, frameon=False)
    ax_f.set_ylabel("insurance fund, % of start")
    ax_f.legend(loc="lower left", fontsize=8, frameon=False)
    if has_inv:
        ax_i.axhline(0.0, color="grey", linewidth=0.6)
        ax_i.yaxis.set_major_formatter(_usd_axis_formatter())
        ax_i.set_ylabel("fund / vault inventory\nat mark (+ long)")
        ax_i.legend(loc="lower left", fontsize=8, frameon=False)
    ax_a.yaxis.set_major_formatter(_usd_axis_formatter())
    ax_a.set_ylabel("cumulative ADL\n(dotted: backstop)" if has_inv else "cumulative ADL")
    if not any(data[f"{v}.adl_usd"].sum() > 0 or data[f"{v}.bad_debt_usd"].max() > 0
               or (has_inv and data[f"{v}.backstop_usd"].sum() > 0) for v in venues):
        axis_limits(ax_a.set_ylim, 0, 1)
        ax_a.set_yticks([0])
    else:
        ax_a.set_ylim(bottom=0)
    step = idx[1] - idx[0] if len(idx) > 1 else pd.Timedelta(seconds=1)
    t_lo, t_hi = idx[0], idx[-1] + step
    axis_limits(ax_a.set_xlim, *_to_num(pd.DatetimeIndex([t_lo, t_hi])))
    _setup_time_axis(ax_a, t_lo, t_hi)
    fig.suptitle(_esc(title or "Venues: price, insurance fund and ADL"), fontsize=12)
    return _save(fig, path)


def _price_tick_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(_price_tick)
