"""Index, oracle and mark prices (Binance USDⓈ-M, Hyperliquid): small pure numba kernels.

Every formula and constant below comes from ``../shared/reference/mechanics.md`` (read on
2026-11-21), which condenses the venues' own documentation; the section is cited next to each.

Binance (mechanics.md section 1, "Index, mark, funding"; Binance FAQ 360033525071 and
360033525031; announcement of 2025-09-18)::

    Index = volume-weighted average of spot venues (outlier-guarded)
    Mark  = median(P1, P2, LastPrice)
    P1    = Index * (1 + lastFunding * time_to_next_funding / funding_interval)
    P2    = Index + mean over the last 30 one-second samples of (mid - Index)  (60 s before 2025-09-18)

Hyperliquid (mechanics.md section 3, Hyperliquid docs "Oracle")::

    Oracle = weighted median of spot prices (Binance 3, OKX 2, Bybit 2, others 1), every 3 s
    Mark   = median(oracle + 150 s EMA of (mid - oracle), median(bid, ask, last),
                    median of CEX perp mids)

What mechanics.md leaves open, and what this module does about it (each listed as a gap):

* Binance's outlier guard on the index is named but not specified: :func:`index_price_nb` is the
  plain weighted mean; a caller that wants to drop a venue gives it weight 0.
* The weighted-median tie rule (total weight split exactly in half) is not given:
  :func:`weighted_median_nb` returns the midpoint of the minimising interval, which for integer
  weights is the ordinary median of the list with each price repeated ``weight`` times.
* The "150 s EMA" is not defined further (time constant or half-life, discretisation, start):
  :func:`ema_update_nb` is the continuous-time EMA with time constant ``tau`` (150 s) sampled at
  arbitrary steps, ``ema += (1 - exp(-dt/tau)) * (sample - ema)``, started from the first sample.
* We model no order book: "mid" (Binance P2, Hyperliquid basis) and bid/ask are inputs; the
  documented simplification for a book-less engine is to pass the last price for each of them.
"""

from __future__ import annotations

import datetime
import math

import numpy as np

from cascade._numba import jit

__all__ = [
    "BINANCE_BASIS_WINDOW",
    "BINANCE_BASIS_WINDOW_BEFORE_2025_09_18",
    "BINANCE_BASIS_WINDOW_CHANGE",
    "HL_MARK_EMA_TAU_S",
    "HL_ORACLE_PERIOD_S",
    "HL_ORACLE_WEIGHTS",
    "HL_ORACLE_WEIGHT_OTHER",
    "basis_ring_new",
    "basis_ring_push_nb",
    "binance_basis_window",
    "binance_mark_nb",
    "binance_p1_nb",
    "binance_p2_nb",
    "ema_update_nb",
    "hl_mark_nb",
    "hl_oracle_nb",
    "hl_oracle_weights",
    "index_price_nb",
    "median3_nb",
    "median_nb",
    "weighted_median_nb",
]

# --- constants (source: mechanics.md, read 2026-11-21) ----------------------------------------
# P2's basis average: the last 30 one-second samples of (mid - Index); 60 s before 2025-09-18.
# mechanics.md section 1 "Index, mark, funding" (Binance FAQ 360033525071; announcement of
# 2025-09-18).
BINANCE_BASIS_WINDOW = 30
BINANCE_BASIS_WINDOW_BEFORE_2025_09_18 = 60
BINANCE_BASIS_WINDOW_CHANGE = datetime.date(2025, 9, 18)

# Hyperliquid oracle weights: Binance 3, OKX 2, Bybit 2, others 1; oracle updated every 3 s.
# mechanics.md section 3 (Hyperliquid docs "Oracle").
HL_ORACLE_WEIGHTS = {"binance": 3.0, "okx": 2.0, "bybit": 2.0}
HL_ORACLE_WEIGHT_OTHER = 1.0
HL_ORACLE_PERIOD_S = 3.0
# Hyperliquid mark: 150 s EMA of (mid - oracle). mechanics.md section 3 (Hyperliquid docs
# "Oracle"). Used here as the EMA's time constant (mechanics.md does not say; see module doc).
HL_MARK_EMA_TAU_S = 150.0


# --- generic order statistics -----------------------------------------------------------------

@jit
def median3_nb(a, b, c):
    """Median of three numbers.

    Parameters
    ----------
    a, b, c : float64

    Returns
    -------
    float64 (NaN if any input is NaN)
    """
    if math.isnan(a) or math.isnan(b) or math.isnan(c):
        return np.nan
    return max(min(a, b), min(max(a, b), c))


@jit
def median_nb(values):
    """Median of a 1-d array (mean of the two middle values for an even count).

    Parameters
    ----------
    values : float64 array, shape (n,)

    Returns
    -------
    float64; NaN when ``n == 0``.
    """
    n = values.shape[0]
    if n == 0:
        return np.nan
    v = np.sort(values)
    h = n // 2
    if n % 2 == 1:
        return v[h]
    return 0.5 * (v[h - 1] + v[h])


@jit
def weighted_median_nb(values, weights):
    """Weighted median: the minimiser of ``sum_i w_i * |values_i - m|``.

    Entries with a weight <= 0 or a non-finite value or weight are ignored. When the minimiser
    is an interval (the weights below and above split exactly in half) its midpoint is returned,
    so for integer weights the result is the ordinary median of the list with every value
    repeated ``weight`` times (tie rule not in mechanics.md; see module docstring).

    Parameters
    ----------
    values : float64 array, shape (n,), e.g. USD per coin
    weights : float64 array, shape (n,), >= 0

    Returns
    -------
    float64, in the unit of ``values``; NaN when no entry is usable.
    """
    n = values.shape[0]
    keep = np.zeros(n, np.bool_)
    total = 0.0
    for i in range(n):
        if weights[i] > 0.0 and np.isfinite(weights[i]) and np.isfinite(values[i]):
            keep[i] = True
            total += weights[i]
    if total <= 0.0:
        return np.nan
    v = values[keep]
    w = weights[keep]
    order = np.argsort(v, kind="mergesort")
    half = 0.5 * total
    cumw = 0.0
    m = v.shape[0]
    for j in range(m):
        k = order[j]
        cumw += w[k]
        if cumw > half:
            return v[k]
        if cumw == half:
            return 0.5 * (v[k] + v[order[j + 1]])
    return v[order[m - 1]]  # rounding left the running sum a hair below half


# --- Binance ----------------------------------------------------------------------------------

@jit
def index_price_nb(prices, weights):
    """Index price: weighted average of spot venue prices (Binance "volume-weighted average").

    Source: mechanics.md section 1 "Index, mark, funding" (Binance FAQ 360033525071, read
    2026-11-21): ``Index = volume-weighted average of spot venues (outlier-guarded)``. The outlier
    guard is not specified there, so none is applied (a gap); venues with a weight <= 0 or a
    non-finite price are left out and the other weights renormalised.

    Parameters
    ----------
    prices : float64 array, shape (v,), USD per coin, one per spot venue
    weights : float64 array, shape (v,), >= 0 (e.g. each venue's traded volume)

    Returns
    -------
    float64, USD per coin; NaN when no venue is usable.
    """
    num = 0.0
    den = 0.0
    for i in range(prices.shape[0]):
        w = weights[i]
        p = prices[i]
        if w > 0.0 and np.isfinite(w) and np.isfinite(p):
            num += w * p
            den += w
    if den <= 0.0:
        return np.nan
    return num / den


@jit
def binance_p1_nb(index, last_funding, time_to_next_s, interval_s):
    """Binance mark component P1 = Index * (1 + lastFunding * time_to_next_funding / interval).

    Source: mechanics.md section 1 "Index, mark, funding" (Binance FAQ 360033525071, read
    2026-11-21).

    Parameters
    ----------
    index : float64, USD per coin
    last_funding : float64, funding rate of the current interval (fraction, 0.0001 = 0.01 %)
    time_to_next_s : float64, seconds to the next funding time (see
        :func:`cascade.rules.funding.time_to_next_funding_nb`)
    interval_s : float64, funding interval in seconds (Binance BTCUSDT: 8 h = 28,800 s)

    Returns
    -------
    float64, USD per coin
    """
    return index * (1.0 + last_funding * time_to_next_s / interval_s)


@jit
def binance_p2_nb(index, basis_mean):
    """Binance mark component P2 = Index + moving average of (mid - Index).

    Source: mechanics.md section 1 "Index, mark, funding" (Binance FAQ 360033525071, announcement
    of 2025-09-18, read 2026-11-21). ``basis_mean`` is the mean over the last 30 one-second
    samples (60 before 2025-09-18), kept by :func:`basis_ring_push_nb`.

    Parameters
    ----------
    index : float64, USD per coin
    basis_mean : float64, USD per coin

    Returns
    -------
    float64, USD per coin
    """
    return index + basis_mean


@jit
def binance_mark_nb(index, last_funding, time_to_next_s, interval_s, basis_mean, last):
    """Binance mark price ``median(P1, P2, last)``.

    Source: mechanics.md section 1 "Index, mark, funding" (Binance FAQ 360033525071, read
    2026-11-21). See :func:`binance_p1_nb` and :func:`binance_p2_nb` for the components.

    Parameters
    ----------
    index : float64, USD per coin
    last_funding : float64, fraction per funding interval
    time_to_next_s, interval_s : float64, seconds
    basis_mean : float64, USD per coin, mean of (mid - index) over the basis window
    last : float64, last traded price of the perpetual, USD per coin

    Returns
    -------
    float64, USD per coin
    """
    p1 = binance_p1_nb(index, last_funding, time_to_next_s, interval_s)
    p2 = binance_p2_nb(index, basis_mean)
    return median3_nb(p1, p2, last)


def binance_basis_window(on: datetime.date | None = None) -> int:
    """Number of one-second basis samples P2 averages over on ``on`` (None: today's rule).

    30 from 2025-09-18, 60 before (mechanics.md section 1 "Index, mark, funding"; Binance
    announcement of 2025-09-18, read 2026-11-21).

    Parameters
    ----------
    on : datetime.date, datetime.datetime or None

    Returns
    -------
    int, samples (one per second)
    """
    if on is None:
        return BINANCE_BASIS_WINDOW
    if isinstance(on, datetime.datetime):
        on = on.date()
    return BINANCE_BASIS_WINDOW if on >= BINANCE_BASIS_WINDOW_CHANGE else \
        BINANCE_BASIS_WINDOW_BEFORE_2025_09_18


# state vector of the basis ring
R_SUM, R_POS, R_COUNT = 0, 1, 2


def basis_ring_new(window: int = BINANCE_BASIS_WINDOW, fill: float | None = None):
    """A fresh ring buffer for the moving average of the basis (mid - Index).

    Parameters
    ----------
    window : int, number of samples averaged (one per second on Binance: 30, or 60 before
        2025-09-18, see :func:`binance_basis_window`)
    fill : float or None, USD per coin. None: empty ring (the mean covers the samples pushed so
        far). A number: the ring starts full of that value (as the engine starts its mark ring
        full of the start price).

    Returns
    -------
    ring : float64 array, shape (window,), USD per coin
    state : float64 array, shape (3,): running sum (USD per coin), next slot, samples held
    """
    window = int(window)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ring = np.zeros(window, np.float64)
    state = np.zeros(3, np.float64)
    if fill is not None:
        ring[:] = float(fill)
        s = 0.0
        for x in ring.tolist():  # slot order, as basis_ring_push_nb re-sums
            s += x
        state[R_SUM] = s
        state[R_COUNT] = window
    return ring, state


@jit
def basis_ring_push_nb(ring, state, sample):
    """Push one basis sample and return the moving average over the ring.

    The running sum is updated by ``+ sample - oldest``; every time the write position wraps to
    slot 0 the sum is recomputed exactly from the ring (in slot order), as the engine does for
    its mark ring, so rounding never drifts over long runs.

    Parameters
    ----------
    ring : float64 array, shape (w,), in/out, USD per coin (from :func:`basis_ring_new`)
    state : float64 array, shape (3,), in/out: running sum, next slot, samples held
    sample : float64, USD per coin, e.g. ``mid - index`` (or ``last - index`` without a book)

    Returns
    -------
    float64, USD per coin: mean of the last ``min(samples pushed, w)`` samples (of the ring's
    content when it was started full).
    """
    w = ring.shape[0]
    pos = int(state[R_POS])
    old = ring[pos]
    ring[pos] = sample
    s = state[R_SUM] + sample - old
    pos += 1
    if pos == w:
        pos = 0
        s = 0.0
        for j in range(w):
            s += ring[j]
    state[R_SUM] = s
    state[R_POS] = pos
    count = state[R_COUNT] + 1.0
    if count > w:
        count = float(w)
    state[R_COUNT] = count
    return s / count


# --- Hyperliquid ------------------------------------------------------------------------------

def hl_oracle_weights(venues) -> np.ndarray:
    """Hyperliquid oracle weight of each spot venue named in ``venues``.

    Binance 3, OKX 2, Bybit 2, others 1 (mechanics.md section 3, Hyperliquid docs "Oracle",
    read 2026-11-21).

    Parameters
    ----------
    venues : sequence of str, shape (v,), venue names (case-insensitive)

    Returns
    -------
    float64 array, shape (v,)
    """
    return np.array([HL_ORACLE_WEIGHTS.get(str(v).strip().lower(), HL_ORACLE_WEIGHT_OTHER)
                     for v in venues], dtype=np.float64)


@jit
def hl_oracle_nb(prices, weights):
    """Hyperliquid oracle price: weighted median of spot venue prices.

    Source: mechanics.md section 3 (Hyperliquid docs "Oracle", read 2026-11-21); weights from
    :func:`hl_oracle_weights`; recomputed every 3 s (:data:`HL_ORACLE_PERIOD_S`).

    Parameters
    ----------
    prices : float64 array, shape (v,), USD per coin
    weights : float64 array, shape (v,)

    Returns
    -------
    float64, USD per coin (NaN when no venue is usable); tie rule: see
    :func:`weighted_median_nb`.
    """
    return weighted_median_nb(prices, weights)


@jit
def ema_update_nb(ema, sample, dt, tau):
    """One step of a continuous-time exponential moving average.

    ``ema + (1 - exp(-dt/tau)) * (sample - ema)``; a NaN ``ema`` (not started) returns
    ``sample``. The 150 s of Hyperliquid's mark basis (mechanics.md section 3) is used as ``tau``;
    mechanics.md does not define the EMA further (gap, see module docstring).

    Parameters
    ----------
    ema : float64, previous average (NaN: none yet), unit of ``sample``
    sample : float64, e.g. USD per coin (``mid - oracle``)
    dt : float64, seconds since the previous sample, >= 0
    tau : float64, seconds, > 0 (:data:`HL_MARK_EMA_TAU_S`)

    Returns
    -------
    float64, unit of ``sample``
    """
    if math.isnan(ema):
        return sample
    a = -math.expm1(-dt / tau)
    return ema + a * (sample - ema)


@jit
def hl_mark_nb(oracle, basis_ema, bid, ask, last, cex_perp_mids):
    """Hyperliquid mark price.

    ``median(oracle + basis_ema, median(bid, ask, last), median(cex_perp_mids))``; source:
    mechanics.md section 3 (Hyperliquid docs "Oracle", read 2026-11-21), where ``basis_ema`` is
    the 150 s EMA of (mid - oracle) (:func:`ema_update_nb`).

    Parameters
    ----------
    oracle : float64, USD per coin (:func:`hl_oracle_nb`)
    basis_ema : float64, USD per coin
    bid, ask, last : float64, Hyperliquid best bid, best ask and last trade, USD per coin (a
        book-less engine passes its last price for all three)
    cex_perp_mids : float64 array, shape (k,), mid prices of the perpetual on centralised
        exchanges, USD per coin, k >= 1

    Returns
    -------
    float64, USD per coin; NaN when ``cex_perp_mids`` is empty (the documented formula needs it).
    """
    if cex_perp_mids.shape[0] == 0:
        return np.nan
    a = oracle + basis_ema
    b = median3_nb(bid, ask, last)
    c = median_nb(cex_perp_mids)
    return median3_nb(a, b, c)
