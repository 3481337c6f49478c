"""The liquidation heatmap: notional that would be liquidated at each price level, over time.

During a run, :class:`LadderRecorder` takes snapshots of the live ladder between chunks of the
step loop (:func:`cascade.runner.advance_all` calls it before a chunk starts): for every open
position (status OPEN or HEAPED), its liquidation price, weighted by its notional at that price
(``qty * lp``, as :func:`cascade.model.population.liquidation_map`), summed per price bin and
side. A snapshot taken before step ``s`` shows the ladder in force during step ``s`` (after any
funding paid at ``s``); the last one, at step ``T``, the ladder left at the end.

Bins are fixed for the whole run: ``bins`` equal bins over ``price_start * (1 -/+ span)``, each
half-open ``[low, high)``; notional whose liquidation price falls outside them (a long with a
liquidation price at or below zero, say) is left out of the map and counted per snapshot in the
frame's ``attrs`` (``outside_long_usd``, ``outside_short_usd``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from cascade._numba import jit
from cascade.engine.layout import HEAPED, OPEN
from cascade.errors import CascadeError

SNAPSHOTS_MAX = 300  # default spacing: about this many snapshots per run, whole minutes
COLUMNS = ("time", "price", "price_low", "price_high", "long_usd", "short_usd")


@dataclasses.dataclass(frozen=True)
class HeatmapSpec:
    """What to record.

    bins : number of price bins; span : half-width of the price range, fraction of the start
    price; every_s : seconds between snapshots (None: whole minutes, about ``SNAPSHOTS_MAX``
    per run); at : extra instants (UTC timestamps) at which to take a snapshot too
    """

    bins: int = 240
    span: float = 0.30
    every_s: float | None = None
    at: tuple = ()

    def check(self, source: str = "heatmap") -> None:
        if int(self.bins) < 1:
            raise CascadeError(f"{source}: bins expected a whole number >= 1, got {self.bins!r}")
        if not 0 < float(self.span) < 1:
            raise CascadeError(f"{source}: span expected a fraction of the start price in "
                               f"(0, 1), got {self.span!r}")
        if self.every_s is not None and not float(self.every_s) > 0:
            raise CascadeError(f"{source}: every expected a number of seconds > 0, got "
                               f"{self.every_s!r}")


def as_spec(heatmap) -> HeatmapSpec | None:
    """``cascade.run(heatmap=...)``: False/None (no map), True (defaults), a mapping of
    :class:`HeatmapSpec` fields, or a spec."""
    if heatmap is None or heatmap is False:
        return None
    if heatmap is True:
        spec = HeatmapSpec()
    elif isinstance(heatmap, HeatmapSpec):
        spec = heatmap
    elif isinstance(heatmap, dict):
        unknown = set(heatmap) - {f.name for f in dataclasses.fields(HeatmapSpec)}
        if unknown:
            raise CascadeError(f"heatmap: unknown key(s) {', '.join(sorted(unknown))}; expected "
                               "bins, span, every_s, at")
        spec = HeatmapSpec(**{k: (tuple(v) if k == "at" else v) for k, v in heatmap.items()})
    else:
        raise CascadeError(f"heatmap: expected True, a dict or a HeatmapSpec, got "
                           f"{type(heatmap).__name__}")
    spec.check()
    return spec


def price_edges(price_start: float, bins: int, span: float) -> np.ndarray:
    """float64 (bins + 1,) bin edges, USD: ``bins`` equal bins over ``price_start * (1 -/+
    span)``."""
    return np.linspace(price_start * (1.0 - span), price_start * (1.0 + span), int(bins) + 1)


def ladder_histogram(side, qty, lp, status, edges) -> tuple[np.ndarray, np.ndarray]:
    """Notional of the open rows per price bin and side.

    Parameters
    ----------
    side : int8 (n,) +1 long, -1 short; qty : float64 (n,) coins; lp : float64 (n,) liquidation
        price, USD; status : int8 (n,) engine status (only OPEN and HEAPED rows count)
    edges : float64 (K + 1,) equally spaced ascending bin edges, USD; bin k is
        ``[edges[k], edges[k + 1])``

    Returns
    -------
    hist : float64 (2, K): row 0 longs, row 1 shorts, ``qty * lp`` USD per bin
    outside : float64 (2,): notional of open longs / shorts whose price is outside the bins
    """
    hist = np.zeros((2, len(edges) - 1))
    outside = np.zeros(2)
    _histogram_nb(side, qty, lp, status, np.ascontiguousarray(edges, np.float64), hist, outside)
    return hist, outside


@jit
def _histogram_nb(side, qty, lp, status, edges, hist, outside):
    """One pass over the rows (a numpy version made ~10 temporary arrays of n and took ~60 ms
    per million rows; this takes a few). Slow reference: tests/naive/heatmap.py."""
    k = edges.shape[0] - 1
    lo = edges[0]
    hi = edges[k]
    scale = k / (hi - lo)
    for i in range(side.shape[0]):
        s = status[i]
        if s != OPEN and s != HEAPED:
            continue
        x = lp[i]
        w = qty[i] * x
        j = 0 if side[i] > 0 else 1
        if not (x >= lo and x < hi):  # NaN too
            outside[j] += w
            continue
        # the bin by arithmetic, moved by one where rounding crossed an edge: exact against
        # the edges themselves
        b = min(max(int((x - lo) * scale), 0), k - 1)
        if x < edges[b]:
            b -= 1
        elif x >= edges[b + 1]:
            b += 1
        hist[j, b] += w


def snapshot_steps(sc, spec: HeatmapSpec) -> np.ndarray:
    """int64 sorted steps before which to take a snapshot, in ``[0, T]`` (``T``: the end)."""
    n, step_s = sc.n_steps, float(sc.scenario.step_s)
    every = spec.every_s
    if every is None:
        every = max(60.0, 60.0 * np.ceil(n * step_s / SNAPSHOTS_MAX / 60.0))
    stride = max(1, int(round(float(every) / step_s)))
    steps = set(range(0, n, stride)) | {n}
    steps |= {at_step(sc, t) for t in spec.at}
    return np.array(sorted(steps), np.int64)


def at_step(sc, when) -> int:
    """Step (0..T) at or before the instant ``when`` (a timestamp or text, UTC); CascadeError
    naming ``--at`` when it is outside the scenario window."""
    t = parse_instant(when, sc, "--at")
    start = pd.Timestamp(sc.scenario.start)
    return int((t - start) / pd.Timedelta(seconds=sc.scenario.step_s))


def parse_instant(when, sc, option: str) -> pd.Timestamp:
    """A UTC timestamp from ``when``: a timestamp, ISO text (``2025-10-10T21:15``; naive is
    UTC) or a time of day (``21:15``, ``21:15:30``: its first occurrence at or after the
    scenario start). CascadeError naming ``option`` unless it lies in ``[start, end]``."""
    start = _utc(pd.Timestamp(sc.scenario.start))
    end = _utc(pd.Timestamp(sc.scenario.end))
    try:
        if isinstance(when, str) and len(when.strip()) <= 8 and ":" in when:
            tod = dt.time.fromisoformat(when.strip())
            t = start.normalize() + pd.Timedelta(hours=tod.hour, minutes=tod.minute,
                                                 seconds=tod.second)
            if t < start:
                t += pd.Timedelta(days=1)
        else:
            t = _utc(pd.Timestamp(when))
    except (ValueError, TypeError):
        raise CascadeError(f"{option} {when}: expected a UTC time such as 2025-10-10T21:15 or "
                           "21:15") from None
    if pd.isna(t) or not start <= t <= end:
        raise CascadeError(f"{option} {when}: expected a time inside the scenario window "
                           f"{start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC")
    return t


def _utc(t: pd.Timestamp) -> pd.Timestamp:
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


class LadderRecorder:
    """Snapshots of one run's ladder (all venues summed), taken by ``record(step)``.

    Built before the run from the scenario, the :class:`~cascade.engine.EngineState` and the
    spec; ``steps`` are the steps at which the runner must stop the loop and call ``record``.
    """

    def __init__(self, sc, state, spec: HeatmapSpec):
        self.sc, self.state, self.spec = sc, state, spec
        self.edges = price_edges(state.pops[0].price_start, spec.bins, spec.span)
        self.steps = snapshot_steps(sc, spec)
        self._slot = {int(s): j for j, s in enumerate(self.steps)}
        self.hist = np.zeros((len(self.steps), 2, spec.bins))
        self.outside = np.zeros((len(self.steps), 2))
        self.taken = np.zeros(len(self.steps), bool)

    def record(self, step: int) -> None:
        """Snapshot the ladder before ``step`` if it is one of ``steps`` (else nothing)."""
        j = self._slot.get(int(step))
        if j is None:
            return
        s = self.state
        self.hist[j], self.outside[j] = ladder_histogram(s.side, s.qty, s.lp, s.status,
                                                         self.edges)
        self.taken[j] = True

    def frame(self) -> pd.DataFrame:
        """The map as a long DataFrame, one row per (snapshot, price bin): ``time`` (UTC),
        ``price`` (bin centre), ``price_low``, ``price_high`` (USD), ``long_usd``,
        ``short_usd``; ``attrs``: ``bin_width_usd``, ``every_s``, ``outside_long_usd`` and
        ``outside_short_usd`` (one per snapshot)."""
        if not self.taken.all():
            raise RuntimeError(f"heatmap: snapshots at steps {self.steps[~self.taken][:5]} were "
                               "not taken (the runner did not stop there)")
        times = pd.Timestamp(self.sc.scenario.start) + pd.to_timedelta(
            self.steps * float(self.sc.scenario.step_s), unit="s")
        return heatmap_frame(times, self.edges, self.hist, self.outside,
                             every_s=float(np.median(np.diff(self.steps))) * float(
                                 self.sc.scenario.step_s) if len(self.steps) > 1 else 0.0)


def heatmap_frame(times, edges, hist, outside, *, every_s: float) -> pd.DataFrame:
    """Long frame of ``hist`` (S, 2, K) at ``times`` (S,) on ``edges`` (K + 1,)."""
    s, _, k = hist.shape
    lo, hi = edges[:-1], edges[1:]
    times = pd.DatetimeIndex(times)
    times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    df = pd.DataFrame({
        "time": times.repeat(k),
        "price": np.tile(0.5 * (lo + hi), s),
        "price_low": np.tile(lo, s), "price_high": np.tile(hi, s),
        "long_usd": hist[:, 0, :].ravel(), "short_usd": hist[:, 1, :].ravel()})
    df.attrs.update({"bin_width_usd": float(edges[1] - edges[0]), "every_s": float(every_s),
                     "outside_long_usd": [float(v) for v in outside[:, 0]],
                     "outside_short_usd": [float(v) for v in outside[:, 1]]})
    return df


def grid(heatmap: pd.DataFrame) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """(times (S,), edges (K + 1,), values (S, 2, K)) of a frame made by :func:`heatmap_frame`."""
    times = pd.DatetimeIndex(heatmap["time"].unique())
    lows = heatmap["price_low"].to_numpy()[: len(heatmap) // max(1, len(times))]
    edges = np.append(lows, heatmap["price_high"].to_numpy()[len(lows) - 1])
    vals = heatmap[["long_usd", "short_usd"]].to_numpy().reshape(len(times), len(lows), 2)
    return times, edges, vals.transpose(0, 2, 1)


def profile_at(heatmap: pd.DataFrame, when) -> tuple[pd.Timestamp, pd.DataFrame]:
    """The snapshot at or just before ``when`` (UTC): (its time, frame of its bins)."""
    times = pd.DatetimeIndex(heatmap["time"].unique())
    t = _utc(pd.Timestamp(when))
    j = int(np.searchsorted(times, t, side="right")) - 1
    if j < 0:
        raise CascadeError(f"--at {when}: expected a time at or after the first snapshot "
                           f"{times[0]:%Y-%m-%d %H:%M:%S} UTC")
    return times[j], heatmap[heatmap["time"] == times[j]].reset_index(drop=True)


def parse_window(text: str, sc, option: str = "--window") -> tuple[pd.Timestamp, pd.Timestamp]:
    """``START,END`` (each as :func:`parse_instant` reads it) -> two UTC timestamps, START before
    END; CascadeError naming ``option`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(parts):
        raise CascadeError(f"{option} {text}: expected START,END such as 21:00,21:30 or "
                           "2025-10-10T21:00,2025-10-10T21:30")
    start, end = (parse_instant(p, sc, option) for p in parts)
    if not start < end:
        raise CascadeError(f"{option} {text}: expected START before END")
    return start, end
