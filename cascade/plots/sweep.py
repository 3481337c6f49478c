"""Charts of a sweep (:mod:`cascade.analysis.sweep`): a fan chart of the 1-minute price paths and
histograms of drawdown and liquidated notional, one colour per grid point.

Fan chart: the price in % of its start price against minutes from the start; for each grid point
the median path (line), the 25-75 % band and the 5-95 % band across its seeds (shaded). More than
``MAX_GROUPS`` grid points are pooled into one fan. Like :mod:`cascade.plots.waterfall`, it draws
on a pyplot-free Agg figure and imports matplotlib inside the functions.
"""

from __future__ import annotations

import numpy as np

from cascade.plots.waterfall import _esc, _new_figure, _save, _style, _usd_axis_formatter

__all__ = ["plot_fan", "plot_histograms"]

MAX_GROUPS = 6
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


PATH_COLUMN = "path_1m"  # the sweep rows' price path: list<float64>, last price each minute, USD


def _groups(rows):
    """[(label, rows of that grid point)], pooled into one group past MAX_GROUPS."""
    groups = list(rows.groupby("grid_point", sort=False))
    if len(groups) > MAX_GROUPS:
        return [(f"all {len(groups)} grid points", rows)]
    return groups


def _paths_pct(g) -> np.ndarray:
    """float64 (runs, minutes): each path in % of its start price (NaN-padded to one length)."""
    paths = [np.asarray(p, dtype=np.float64) for p in g[PATH_COLUMN]]
    p0 = g["price_start"].to_numpy(np.float64)
    n = max(len(p) for p in paths)
    out = np.full((len(paths), n), np.nan)
    for i, (p, s) in enumerate(zip(paths, p0)):
        out[i, : len(p)] = 100.0 * p / s
    return out


def plot_fan(rows, path):
    """Fan chart of the price paths of a sweep's ``rows``; written to ``path``."""
    fig = _new_figure(10, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    for (label, g), colour in zip(_groups(rows), _COLOURS):
        x = _paths_pct(g)
        minutes = np.arange(1, x.shape[1] + 1)
        q = np.nanquantile(x, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(minutes, q[0], q[4], color=colour, alpha=0.15, linewidth=0)
        ax.fill_between(minutes, q[1], q[3], color=colour, alpha=0.3, linewidth=0)
        ax.plot(minutes, q[2], color=colour, linewidth=1.2,
                label=_esc(f"{label} (median of {len(g)}; bands 25-75 %, 5-95 %)"))
    ax.axhline(100.0, color="#7f7f7f", linewidth=0.7, linestyle=":")
    ax.set_xlabel("minutes from the start")
    ax.set_ylabel("last price, % of the start price")
    name = str(rows["scenario"].iloc[0]) if "scenario" in rows else ""
    ax.set_title(_esc(f"{name}: price paths of {len(rows)} runs"), fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    _style(ax)
    return _save(fig, path)


def plot_histograms(rows, path):
    """Histograms of max drawdown and liquidated notional per grid point; written to ``path``."""
    fig = _new_figure(11, 4.2)
    panels = (("max_drawdown_pct", "max drawdown, %"),
              ("liquidated_notional_usd", "liquidated notional, USD"))
    groups = _groups(rows)
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        data = rows[key].astype(float).to_numpy()
        data = data[np.isfinite(data)]
        edges = np.histogram_bin_edges(data, bins=min(30, max(5, len(data) // 3))) if len(
            data) else 10
        for (label, g), colour in zip(groups, _COLOURS):
            x = g[key].astype(float).to_numpy()
            ax.hist(x[np.isfinite(x)], bins=edges, histtype="stepfilled", alpha=0.35,
                    color=colour, edgecolor=colour, label=_esc(f"{label} ({len(g)})"))
        ax.set_xlabel(title)
        ax.set_ylabel("runs")
        if key.endswith("_usd"):
            ax.xaxis.set_major_formatter(_usd_axis_formatter())
        _style(ax)
        if i == 0:
            ax.legend(fontsize=8)
    return _save(fig, path)
