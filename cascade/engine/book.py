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
