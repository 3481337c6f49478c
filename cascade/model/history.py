"""The price history before the scenario starts, from which entry prices are drawn.

Either waypoints in the scenario (``[population] history``) or a Binance kline CSV
(``history_klines``), reduced to a one-minute grid of (seconds before start, close, low, high).

Waypoints give only the trend. A real path wiggles between them, and those wiggles have already
liquidated (or stopped out) the positions sitting closest to the price; without them a smooth
history would leave an unrealistic wall of triggers just under the start price. So between
waypoints the grid follows a Brownian bridge at the scenario's background volatility (pinned to
every waypoint, seeded), and each minute's low/high spans one standard deviation of a minute's
move either side. A kline history brings its own lows and highs.

A waypoint history is still one smooth path through the trend; :func:`history_variance` gives the
variance of log price that the real paths it stands for accumulated from each grid point to the
start (the background variance, plus each segment's own squared move spread over it: a segment
that fell 5% in an hour was a volatile hour). The population uses it to remove positions that
almost any such path would have liquidated (see ``cascade.model.population._survived``).
"""

from __future__ import annotations

import numpy as np

from cascade.errors import CascadeError

GRID_S = 60.0  # resolution of the history grid: one point a minute
SECONDS_PER_YEAR = 365.0 * 86400.0


def history_grid(sc, seed: int | None = None, path: int = 0):
    """Price history on a one-minute grid covering the entry lookback, ending at the start.

    ``path`` numbers the independent bridges of a waypoint history (``[population]
    history_paths``); path 0 is the one every earlier version drew.

    Returns
    -------
    age_s : float64 (m,), seconds before the start, decreasing from the lookback to 0
    close : float64 (m,), USD, the price at each grid point; ``close[-1]`` is the start price
    low, high : float64 (m,), USD, the lowest / highest price of the minute ending at each point
    """
    pop, start = sc.population, sc.scenario.start
    seed = sc.scenario.seed if seed is None else seed
    lookback_s = pop.entry_lookback_h * 3600.0
    m = int(np.ceil(lookback_s / GRID_S)) + 1
    age = np.linspace(lookback_s, 0.0, m)
    t_epoch = start.timestamp() - age
    if pop.history is not None:
        wt = np.array([t.timestamp() for t, _ in pop.history])
        wp = np.log(np.array([p for _, p in pop.history]))
        sigma_min = sc.market.volatility_annual_pct / 100.0 * np.sqrt(GRID_S / SECONDS_PER_YEAR)
        key = [seed, 0x4849535] if path == 0 else [seed, 0x4849535, path]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))
        logp = np.interp(t_epoch, wt, wp) + _bridge(t_epoch, wt, sigma_min, rng)
        close = np.exp(logp)
        low, high = close * np.exp(-sigma_min), close * np.exp(sigma_min)
        low[-1] = high[-1] = close[-1]  # the start price is exact
    else:
        import pandas as pd

        from cascade.io.klines import price_path, read_klines

        kl = read_klines(pop.history_klines)
        times = pd.to_datetime(t_epoch * 1e9, utc=True)
        try:
            close = price_path(kl, times)
        except CascadeError as exc:
            raise CascadeError(f"[population] history_klines {pop.history_klines}: {exc}") from None
        # the candle whose minute ends at (or contains) each grid point
        idx = np.clip(np.searchsorted(kl.index.asi8, times.asi8, side="left") - 1, 0, len(kl) - 1)
        low = np.minimum(kl["low"].to_numpy()[idx], close)
        high = np.maximum(kl["high"].to_numpy()[idx], close)
        low[-1] = high[-1] = close[-1]
    return age, np.asarray(close, np.float64), low, high


def _bridge(t, wt, sigma_step, rng) -> np.ndarray:
    """Brownian bridge on grid times ``t`` pinned to 0 at every waypoint time in ``wt``.

    Steps are one grid interval with standard deviation ``sigma_step``; shape (len(t),)."""
    walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(len(t) - 1) * sigma_step)])
    out = np.zeros_like(walk)
    seg = np.searchsorted(wt, t, side="right") - 1  # waypoint segment of each grid point
    for k in np.unique(seg):
        if k < 0 or k >= len(wt) - 1:
            continue
        idx = np.flatnonzero(seg == k)
        a, b = wt[k], wt[k + 1]
        wa, wb = np.interp([a, b], t, walk)
        frac = (t[idx] - a) / (b - a)
        out[idx] = walk[idx] - (wa + frac * (wb - wa))
    return out



def history_variance(sc) -> np.ndarray | None:
    """Variance of log price accumulated from each point of the :func:`history_grid` to the start,
    float64 (m,), dimensionless (log units squared); None for a kline history (its own lows and
    highs already record the real path).

    Per second, within waypoint segment k of log move d_k over T_k seconds, the rate is
    ``sigma ** 2 / year + d_k ** 2 / T_k``: the background volatility plus the segment's move
    spread over its length (so a segment accumulates ``d_k ** 2`` on top of the background)."""
    pop, start = sc.population, sc.scenario.start
    if pop.history is None:
        return None
    lookback_s = pop.entry_lookback_h * 3600.0
    m = int(np.ceil(lookback_s / GRID_S)) + 1
    age = np.linspace(lookback_s, 0.0, m)
    t_epoch = start.timestamp() - age
    wt = np.array([t.timestamp() for t, _ in pop.history])
    wp = np.log(np.array([p for _, p in pop.history]))
    base = (sc.market.volatility_annual_pct / 100.0) ** 2 / SECONDS_PER_YEAR
    seg_rate = np.diff(wp) ** 2 / np.diff(wt)  # d_k ** 2 / T_k per second
    mid = 0.5 * (t_epoch[1:] + t_epoch[:-1])
    k = np.clip(np.searchsorted(wt, mid, side="right") - 1, 0, len(seg_rate) - 1)
    rate = base + seg_rate[k]
    inc = rate * np.diff(t_epoch)  # variance of each grid interval
    out = np.zeros(m)
    out[:-1] = np.cumsum(inc[::-1])[::-1]
    return out
