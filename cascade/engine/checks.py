"""Model breakdowns stop with a clear error instead of writing non-finite or absurd numbers:
checked once per chunk of steps on the per-step outputs (vectorised, outside the jitted loop),
and once at the end on the positions."""

from __future__ import annotations

import datetime as dt

import numpy as np

from cascade.engine.layout import (
    C_BAD,
    C_DEPTH,
    C_FUND,
    C_INDEX,
    C_LAST,
    C_MARK,
    C_OI,
    COLUMNS,
)

_PRICES = (C_LAST, C_MARK, C_INDEX)
_NON_NEGATIVE = (C_OI, C_FUND, C_BAD)
# the largest price the engine keeps: beyond it the products qty * price * impact leave float64
PRICE_MAX = 1e150


def _fail(sc, names, t: int, v: int, what: str, value: float, why: str):
    from cascade.errors import CascadeError

    when = sc.scenario.start + dt.timedelta(seconds=t * sc.scenario.step_s)
    venue = f" on venue {names[v]}" if len(names) > 1 else ""
    m = sc.market
    return CascadeError(
        f"{sc.path or sc.name}: the model broke down at step {t} ({when.isoformat()}){venue}: "
        f"{what} = {value:g} ({why}); expected [market] parameters, flows and a population that "
        f"keep the market finite (depth_usd = {m.depth_usd:g}, impact_exponent = "
        f"{m.impact_exponent:g}, depth_floor = {m.depth_floor:g})")


def check_steps(sc, outs: np.ndarray, a: int, b: int, names=("",)) -> None:
    """Raise :class:`~cascade.errors.CascadeError` at the first step of ``[a, b)`` whose outputs
    (``outs``: (V, T, len(COLUMNS)) float64) hold a non-finite number, a price not in
    (0, PRICE_MAX], a depth not above 0, or a negative open interest, fund or bad debt; the
    message names the step, its time, the venue and the quantity."""
    block = outs[:, a:b, :]
    bad = ~np.isfinite(block)
    price = block[:, :, _PRICES]
    bad[:, :, _PRICES] |= (price <= 0.0) | (price > PRICE_MAX)
    bad[:, :, C_DEPTH] |= block[:, :, C_DEPTH] <= 0.0
    scale = np.abs(block[:, :, _NON_NEGATIVE]).max(initial=1.0)
    bad[:, :, _NON_NEGATIVE] |= block[:, :, _NON_NEGATIVE] < -1e-9 * scale
    if not bad.any():
        return
    # the first step with a problem, then its first venue and quantity
    t_rel = int(np.flatnonzero(bad.any(axis=(0, 2)))[0])
    v = int(np.flatnonzero(bad[:, t_rel, :].any(axis=1))[0])
    c = int(np.flatnonzero(bad[v, t_rel])[0])
    x = float(block[v, t_rel, c])
    if not np.isfinite(x):
        reason = "not a finite number: it overflowed"
    elif c in _PRICES:
        reason = f"a price outside (0, {PRICE_MAX:g}]"
    elif c == C_DEPTH:
        reason = "depth must stay above 0"
    else:
        reason = "must not be negative"
    raise _fail(sc, list(names), a + t_rel, v, COLUMNS[c], x, reason)


def check_positions(sc, state) -> None:
    """Raise :class:`~cascade.errors.CascadeError` if a position's size, wallet or funding paid
    is not finite at the end of the run (rows never opened hold NaN entries and are skipped)."""
    from cascade.errors import CascadeError

    for name, arr in (("qty", state.qty), ("wallet", state.wallet),
                      ("funding paid", state.funding_paid)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise CascadeError(
                f"{sc.path or sc.name}: the model broke down: the {name} of position row "
                f"{int(bad[0])} is {float(arr[bad[0]]):g} (not a finite number); expected a "
                "[population] and [market] that keep every position finite")
