"""Slow, obvious reference for the liquidation heatmap (:mod:`cascade.analysis.heatmap`).

Which positions are open before step ``s`` is read from the run's records, not from the engine's
status array: a row of the ladder is open from the start, a conditional entry from the step its
order filled (``exec_step``), and either is closed from the step a liquidation, stop or ADL was
triggered on it. Each open position adds ``qty * lp`` to the bin whose edges hold its
liquidation price, found by walking the edges. Plain Python loops; only for small runs without
funding or partial liquidations (their liquidation prices and sizes never change).
"""

from __future__ import annotations

LIQ, STOP, ENTRY, PARTIAL, BACKSTOP, ADL = 1, 2, 3, 4, 5, 6


def bin_of(x, edges):
    """Index k with edges[k] <= x < edges[k + 1], or None."""
    for k in range(len(edges) - 1):
        if edges[k] <= x < edges[k + 1]:
            return k
    return None


def open_rows(n, n_ladder, records, s):
    """Rows open before step ``s``, from the records (a list of dicts)."""
    opened = {i: (i < n_ladder) for i in range(n)}
    closed = set()
    for r in records:
        if r["kind"] == ENTRY and r["exec_step"] < s:
            opened[int(r["pos"])] = True
        if r["kind"] in (LIQ, STOP, BACKSTOP, ADL) and r["trigger_step"] < s:
            closed.add(int(r["pos"]))
    return [i for i in range(n) if opened[i] and i not in closed]


def heatmap_at(side, qty, lp, rows, edges):
    """[longs per bin, shorts per bin], USD, and [longs outside, shorts outside]."""
    k = len(edges) - 1
    longs, shorts = [0.0] * k, [0.0] * k
    out = [0.0, 0.0]
    for i in rows:
        w = float(qty[i]) * float(lp[i])
        b = bin_of(float(lp[i]), edges)
        if b is None:
            out[0 if side[i] > 0 else 1] += w
        elif side[i] > 0:
            longs[b] += w
        else:
            shorts[b] += w
    return [longs, shorts], out


def histogram(side, qty, lp, status, edges, open_statuses=(0, 5)):
    """The same count over rows whose engine status is open (OPEN or HEAPED)."""
    rows = [i for i in range(len(side)) if int(status[i]) in open_statuses]
    return heatmap_at(side, qty, lp, rows, edges)
