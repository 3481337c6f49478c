"""Tornado chart of a one-at-a-time sensitivity (:mod:`cascade.analysis.sensitivity`).

Two panels side by side, max drawdown and liquidated notional. Each parameter gets a pair of
bars starting at the base run's value (the vertical axis line): the run at ``(1 - step)`` times
the parameter, and the run at ``(1 + step)`` times it, in two colours. Rows are sorted by the
swing (the spread of low, base and high outcomes), largest on top, and labelled with the
parameter's name and its low / base / high values (``†``: clipped to the schema's range).

Like :mod:`cascade.plots.waterfall`, it draws on a pyplot-free Agg figure and imports matplotlib inside
the function.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

from cascade.plots.limits import axis_limits
from cascade.plots.waterfall import (
    _GREY,
    _MARK,
    _OI,
    _esc,
    _new_figure,
    _note,
    _save,
    _style,
    _usd_axis_formatter,
    format_usd,
)

__all__ = ["plot_tornado"]

_LOW = _OI  # blue: parameter at (1 - step)
_HIGH = _MARK  # orange: parameter at (1 + step)
_PANELS = (("max_drawdown_pct", "max drawdown", "swing_drawdown_pct"),
           ("liquidated_notional_usd", "liquidated notional", "swing_liquidated_usd"))


CLIP_MARK = "†"  # after a value clipped to the schema's range


def format_value(v: float, unit: str = "", *, synthetic: bool = False) -> str:
    """A parameter value for the table and the chart: ``x0.5``, ``$45.0M``, ``0.35``, ``300``."""
    from cascade.plots.waterfall import format_usd

    if synthetic:
        return f"x{v:g}"
    if v != 0 and abs(v) >= 1e4:
        text = format_usd(v)
    else:
        text = f"{v:.4g}"
    return ("$" + text) if unit.startswith("USD") else text


def _value_text(v: float, unit: str, synthetic: bool) -> str:
    return format_value(v, unit, synthetic=synthetic)


def _label(p: Mapping[str, Any]) -> str:
    syn = bool(p.get("synthetic"))
    lo = _value_text(p["low_value"], p.get("unit", ""), syn) + (CLIP_MARK if p["low_clipped"]
                                                                else "")
    hi = _value_text(p["high_value"], p.get("unit", ""), syn) + (CLIP_MARK if p["high_clipped"]
                                                                 else "")
    base = _value_text(p["base_value"], p.get("unit", ""), syn)
    return _esc(f"{p['name']}\n{lo} / {base} / {hi}")


def _out_text(output: str, v: float) -> str:
    if output == "max_drawdown_pct":
        return f"{v:.2f}%"
    return "$" + format_usd(v)


def plot_tornado(data: Mapping[str, Any], path: Any, *, title: str | None = None) -> pathlib.Path:
    """Draw the tornado chart of a sensitivity result.

    Parameters
    ----------
    data : mapping
        :meth:`cascade.analysis.sensitivity.SensitivityResult.to_dict`: ``scenario``, ``seed``,
        ``positions``, ``step``, ``base`` ({output: value}), ``parameters`` (each with ``name``,
        ``unit``, ``low_value``, ``base_value``, ``high_value``, ``low_clipped``,
        ``high_clipped``, ``low`` and ``high`` ({output: value})) and ``skipped``.
    path : str or path-like
        Output file; PNG unless the suffix names another format. Parent folders are created.
    title : str, optional
        Figure title; by default the scenario, seed, positions and the variation.

    Returns
    -------
    pathlib.Path
        ``path``, a 14 in wide figure at 120 dpi, taller with more parameters.
    """
    import numpy as np

    params = list(data.get("parameters", []))
    base = data["base"]
    step = float(data.get("step", 0.5))
    n = len(params)
    fig = _new_figure(14, max(3.2, 1.6 + 0.55 * n))
    axes = fig.subplots(1, 2)
    lo_f, hi_f = 1.0 - step, 1.0 + step
    for ax, (output, name, swing_key) in zip(axes, _PANELS):
        _style(ax)
        ax.grid(True, axis="x", color="#e0e0e0", linewidth=0.7)
        ax.grid(False, axis="y")
        b = float(base[output])
        ax.axvline(b, color="black", linewidth=1.2, zorder=4)
        ax.set_xlabel(_esc(f"{name}  (base run {_out_text(output, b)})"))
        if output == "liquidated_notional_usd":
            ax.xaxis.set_major_formatter(_usd_axis_formatter())
        else:
            ax.xaxis.set_major_formatter(lambda x, _pos=None: f"{x:g}%")
        if n == 0:
            ax.set_yticks([])
            pad = abs(b) * 0.1 or 1.0
            axis_limits(ax.set_xlim, b - pad, b + pad)
            _note(ax, "no parameters varied")
            continue
        rows = sorted(params, key=lambda p: -float(p.get(swing_key, 0.0)))
        y = np.arange(n)[::-1].astype(float)  # largest swing on top
        lows = np.array([float(p["low"][output]) for p in rows])
        highs = np.array([float(p["high"][output]) for p in rows])
        h = 0.36
        ax.barh(y + h / 2, lows - b, left=b, height=h, color=_LOW, zorder=3,
                label=f"parameter x{lo_f:g}")
        ax.barh(y - h / 2, highs - b, left=b, height=h, color=_HIGH, zorder=3,
                label=f"parameter x{hi_f:g}")
        vals = np.concatenate([lows, highs, [b]])
        vals = vals[np.isfinite(vals)]  # a variant with no result (model broke down) has no bar
        span = float(vals.max() - vals.min()) or (abs(b) * 0.02 or 1.0)
        x0, x1 = float(vals.min()) - 0.22 * span, float(vals.max()) + 0.22 * span
        axis_limits(ax.set_xlim, x0, x1)
        if vals.min() >= 0 > x0:  # room for the value labels, but no negative ticks
            ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= x1])
            axis_limits(ax.set_xlim, x0, x1)
        for yy, v, off in [(yy, v, h / 2) for yy, v in zip(y, lows)] + \
                          [(yy, v, -h / 2) for yy, v in zip(y, highs)]:
            right = v >= b
            ax.text(v + (0.01 if right else -0.01) * span, yy + off, _esc(_out_text(output, v)),
                    ha="left" if right else "right", va="center", fontsize=7.5, color="#333333",
                    zorder=5)
        ax.set_yticks(y)
        ax.set_yticklabels([_label(p) for p in rows], fontsize=8)
        axis_limits(ax.set_ylim, -0.7, n - 0.3)
        ax.tick_params(axis="y", length=0)
        ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    if title is None:
        title = (f"Sensitivity of {data.get('scenario', 'scenario')} — seed {data.get('seed')}, "
                 f"{int(data.get('positions', 0)):,} positions; each parameter at x{lo_f:g} and "
                 f"x{hi_f:g}, one at a time")
    foot = []
    skipped = data.get("skipped", [])
    if skipped:
        foot.append("skipped: " + "; ".join(f"{s['name']} ({s['reason']})" for s in skipped))
    if any(p["low_clipped"] or p["high_clipped"] for p in params):
        foot.append("† clipped to the schema's range")
    foot.append("labels: low / base / high value of the parameter; bars start at the base "
                "run's outcome")
    fig.suptitle(_esc(title), fontsize=12)
    fig.supxlabel(_esc("\n".join(foot)), fontsize=8, color=_GREY)
    return _save(fig, path)

