"""The price history before the scenario starts, from which entry prices are drawn.

Either waypoints in the scenario (``[population] history``) linearly interpolated, or a Binance
kline CSV (``history_klines``). Both are reduced to a regular grid of (seconds before start, price).
"""

from __future__ import annotations

import numpy as np

from cascade.errors import CascadeError

GRID_S = 60.0  # resolution of the history grid: one point a minute


def history_grid(sc) -> tuple[np.ndarray, np.ndarray]:
    """Price history on a regular grid covering the entry lookback, ending at the start.

    Returns
    -------
    age_s : float64 (m,), seconds before the start, decreasing from the lookback to 0
    price : float64 (m,), USD, the price at each grid point; ``price[-1]`` is the start price
    """
    pop, start = sc.population, sc.scenario.start
    lookback_s = pop.entry_lookback_h * 3600.0
    m = int(np.ceil(lookback_s / GRID_S)) + 1
    age = np.linspace(lookback_s, 0.0, m)
    t_epoch = start.timestamp() - age
    if pop.history is not None:
        wt = np.array([t.timestamp() for t, _ in pop.history])
        wp = np.array([p for _, p in pop.history])
        price = np.interp(t_epoch, wt, wp)
    else:
        import pandas as pd

        from cascade.klines import price_path, read_klines

        kl = read_klines(pop.history_klines)
        times = pd.to_datetime(t_epoch * 1e9, utc=True)
        try:
            price = price_path(kl, times)
        except CascadeError as exc:
            raise CascadeError(f"[population] history_klines {pop.history_klines}: {exc}") from None
    return age, np.asarray(price, dtype=np.float64)


def start_price(sc) -> float:
    """Price at the scenario start (USD): the end of the history."""
    return float(history_grid(sc)[1][-1])
