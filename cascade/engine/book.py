"""The order book's impact law: price move and mean fill of a market order against an outstanding
imbalance (:mod:`cascade.model.market` states the model)."""

from __future__ import annotations

from cascade._numba import jit


@jit
def impact_curve_nb(y, depth, alpha):
    """G(y): log-price impact of a net imbalance y (USD, + buy) against depth (USD per 1%).

    ``1% * sign(y) * g(|y| / depth)`` with g(u) = u below u = 1 (a book swept at constant
    density) and u ** alpha above (the concave law of large orders); continuous at u = 1."""
    u = abs(y) / depth
    g = u if u < 1.0 else u ** alpha
    return 0.01 * g if y >= 0.0 else -0.01 * g


@jit
def impact_integral_nb(y, depth, alpha):
    """H(y) = integral of G from 0 to y (even in y), USD x log units."""
    u = abs(y) / depth
    if u < 1.0:
        h = 0.5 * u * u
    else:
        h = 0.5 + (u ** (alpha + 1.0) - 1.0) / (alpha + 1.0)
    return 0.01 * depth * h


@jit
def impact_nb(y, flow, depth, alpha):
    """Log-price impact of a step's net flow (USD, + buy) on top of the outstanding imbalance y:
    ``G(y + flow) - G(y)``. Concave in the imbalance, so a block split over several steps moves
    the price as much as the block at once (less whatever the book refilled in between)."""
    return impact_curve_nb(y + flow, depth, alpha) - impact_curve_nb(y, depth, alpha)


@jit
def mean_impact_nb(y, flow, depth, alpha, imp):
    """Average impact over the fill of ``flow``: the mean of G(u) - G(y) for u from y to
    y + flow, i.e. (H(y + flow) - H(y)) / flow - G(y). Falls back to ``imp / 2`` when the flow is
    too small against y for the difference to be accurate."""
    if abs(flow) <= 1e-9 * (abs(y) + depth):
        return 0.5 * imp
    return ((impact_integral_nb(y + flow, depth, alpha) - impact_integral_nb(y, depth, alpha))
            / flow - impact_curve_nb(y, depth, alpha))


@jit
def impact_inverse_nb(g, depth, alpha):
    """The imbalance y (USD) whose impact G(y) is ``g`` (log units): G is odd and strictly
    increasing, so ``|y| = depth * u`` with ``u = |g| / 1%`` below 1 and ``u ** (1 / alpha)``
    beyond."""
    u = abs(g) / 0.01
    a = u if u < 1.0 else u ** (1.0 / alpha)
    return depth * a if g >= 0.0 else -depth * a


@jit
def limit_flow_nb(y0, y_run, limit_log, depth, alpha, sell):
    """The largest flow an order can trade from the imbalance ``y_run`` before the marginal price
    reaches its limit, USD (signed: sells negative; 0.0 if the price is already at or beyond it).

    The marginal price after a flow F is ``p_pre * exp(G(y_run + F) - G(y0))`` (``y0``: the
    step's imbalance before any order, ``p_pre`` its price), so with ``limit_log = log(limit /
    p_pre)`` a sell stops at ``G(y_run + F) = G(y0) + limit_log``: F = G^-1(that) - y_run.
    A flow below 1e-9 of ``|y_run| + depth`` is the rounding of an order at its limit: 0.0.
    """
    g_star = impact_curve_nb(y0, depth, alpha) + limit_log
    g_now = impact_curve_nb(y_run, depth, alpha)
    if (g_now <= g_star) if sell else (g_now >= g_star):
        return 0.0
    f = impact_inverse_nb(g_star, depth, alpha) - y_run
    if abs(f) <= 1e-9 * (abs(y_run) + depth):
        return 0.0  # at the limit, but for the rounding of the inverse
    return min(f, 0.0) if sell else max(f, 0.0)
