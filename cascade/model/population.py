"""The synthetic population of leveraged positions, as structure-of-arrays.

Every position is one row across the arrays of :class:`Population`. Rows are sorted by side then by
liquidation price, so the population itself is the liquidation ladder: longs occupy rows
``[0, n_long)`` with ascending liquidation price (the engine walks them from the top down as the
mark falls), shorts occupy ``[n_long, n)`` ascending (walked from the bottom up as the mark rises).

The candidates' draws are counter-based (:mod:`cascade.model.draws`): candidate i's values are a
function of (seed, i) only, drawn in one parallel kernel, so the population is the same for a
seed whatever the thread count. The conditional entries (a few percent of the rows) use a seeded
``np.random.Generator``.
"""

from __future__ import annotations

import dataclasses
import time

import numba
import numpy as np

from cascade._numba import jit, pjit
from cascade.engine.sort import stable_argsort, take
from cascade.model.draws import CandidateLaw, draw_candidates
from cascade.model.history import GRID_S, history_grid, history_variance
from cascade.model.scenario import Scenario, venue_date
from cascade.rules.brackets import bracket_table, venue_rules
from cascade.rules.margin import liq_price_nb, liq_prices_nb

LONG, SHORT = 1, -1
SECONDS_PER_YEAR = 365.0 * 86400.0  # as cascade.model.history
OVERSAMPLE = 1.15  # extra candidates drawn to replace those liquidated before the start


@dataclasses.dataclass
class Population:
    """Synthetic positions, one row each, sorted as a ladder (see module docstring).

    Attributes (n = number of positions)
    ----------
    side : int8 (n,)      +1 long, -1 short
    qty : float64 (n,)    size in coin (> 0)
    entry : float64 (n,)  entry price, USD
    wallet : float64 (n,) margin behind the position, USD (isolated wallet, or the cross wallet)
    lp : float64 (n,)     liquidation price, USD (0 for a long that cannot be liquidated)
    bracket : int8 (n,)   index of the margin bracket containing qty * lp
    cross : bool (n,)     cross margin (else isolated)
    leverage : float32 (n,) leverage the position was opened with (after the bracket cap)
    n_long : int          rows [0, n_long) are longs
    n_ladder : int        rows [n_long, n_ladder) are shorts; rows [n_ladder, n) are conditional
                          entries: positions opened during the run when the last price crosses
                          their level (entry, wallet and lp are written by the run; before it,
                          entry and lp are NaN and wallet holds the initial-margin fraction)
    stop_idx : int32 (m,) rows with an order on last price: first those that sell on a fall (long
                          stop-losses and breakdown-short entries), then those that buy on a rise
                          (short stop-losses, breakout-long entries); each part sorted by price
    stop_px : float64 (m,) trigger price of those orders (on last price), USD, ascending per part
    n_long_stops : int    size of the first (sell) part
    price_start : float   USD
    requested : int       positions asked for; ``n`` may be a little lower (see ``dropped_prestart``)
    dropped_prestart : int candidates discarded because the history had already liquidated them
    leverage_capped : int positions whose leverage was lowered to their bracket's maximum
    """

    side: np.ndarray
    qty: np.ndarray
    entry: np.ndarray
    wallet: np.ndarray
    lp: np.ndarray
    bracket: np.ndarray
    cross: np.ndarray
    leverage: np.ndarray
    n_long: int
    stop_idx: np.ndarray
    stop_px: np.ndarray
    n_long_stops: int
    price_start: float
    requested: int = 0
    dropped_prestart: int = 0
    leverage_capped: int = 0
    n_ladder: int = -1
    entry_margin: np.ndarray | None = None  # float64 (n - n_ladder,): 1 / leverage of entries
    # why n_ladder < requested: too few candidates survived the history; or rows dropped because
    # rescaling to the open interest put their liquidation price or stop on the wrong side of it
    short_of_candidates: int = 0
    dropped_rescaled: int = 0

    def __post_init__(self):
        if self.n_ladder < 0:
            self.n_ladder = self.n
        if self.entry_margin is None:
            self.entry_margin = np.zeros(self.n - self.n_ladder)

    @property
    def n(self) -> int:
        return int(self.side.shape[0])

    @property
    def n_entries(self) -> int:
        """Number of conditional-entry rows."""
        return self.n - self.n_ladder

    def reset_entries(self) -> None:
        """Put the conditional-entry rows back in their state before a run."""
        a = self.n_ladder
        if a < self.n:
            self.entry[a:] = np.nan
            self.lp[a:] = np.nan
            self.wallet[a:] = self.entry_margin
            self.bracket[a:] = 0

    def fork(self) -> Population:
        """A population sharing the read-only arrays but with its own entry/wallet/lp/bracket
        (the arrays a run writes), so two runs can keep their results side by side."""
        if self.n_entries == 0:
            return self
        return dataclasses.replace(self, entry=self.entry.copy(), wallet=self.wallet.copy(),
                                   lp=self.lp.copy(), bracket=self.bracket.copy())

    @property
    def notional_start(self) -> np.ndarray:
        """float64 (n,): notional at the start price, USD."""
        return self.qty * self.price_start

    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), np.ndarray))


def candidate_law(pop) -> CandidateLaw:
    """The [population] values the candidates' draws follow (:class:`CandidateLaw`)."""
    w = np.asarray(pop.leverage_weights, dtype=np.float64)
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    lo, hi = pop.stop_loss_distance_pct
    return CandidateLaw(
        long_share=float(pop.long_share), xm=float(pop.min_notional_usd),
        tail=float(pop.size_tail_index), lev_cdf=cdf,
        lev_values=np.asarray(pop.leverages, dtype=np.float64),
        lookback_s=float(pop.entry_lookback_h * 3600.0),
        mean_age_s=float(pop.entry_age_mean_h * 3600.0),
        noise_sigma=float(pop.entry_noise_pct / 100.0), cross_share=float(pop.cross_share),
        spare_mean=float(pop.cross_spare_margin_mean), stop_share=float(pop.stop_loss_share),
        dist_lo=lo / 100.0, dist_hi=hi / 100.0)


def _entry_stream(seed: int) -> np.random.Generator:
    """The conditional entries' generator (serial NumPy: m rows, a few percent of n)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0xCA5CADE, 1])))


def build_population(sc: Scenario, positions: int | None = None, seed: int | None = None,
                     *, sort: bool = True, timings: dict | None = None) -> Population:
    """Draw the synthetic population of a scenario.

    Parameters
    ----------
    sc : Scenario
    positions : number of positions (default: ``sc.population.positions``)
    seed : default ``sc.scenario.seed``
    sort : sort rows as the ladder (the engine needs it; tests may turn it off)
    timings : if given, receives ``population_s`` (drawing, sizing, margin) and ``ladder_s``
        (sorting rows and stops), wall seconds
    """
    t_start = time.perf_counter()
    pop = sc.population
    n_req = int(pop.positions if positions is None else positions)
    seed = int(sc.scenario.seed if seed is None else seed)
    table = bracket_table(sc.venue.name, sc.venue.symbol, venue_date(sc))
    n_paths = pop.history_paths if pop.history is not None else 1
    grids = [history_grid(sc, seed, path=j) for j in range(n_paths)]
    age_grid = grids[0][0]
    p0 = float(grids[0][1][-1])
    # running extremes of each history path from each grid point to the start (paths end to end):
    # a position opened at that point would already have been liquidated (or stopped) if its path
    # crossed its trigger
    suffix_min = np.concatenate([np.minimum.accumulate(g[2][::-1])[::-1] for g in grids])
    suffix_max = np.concatenate([np.maximum.accumulate(g[3][::-1])[::-1] for g in grids])

    n_cand = int(np.ceil(n_req * OVERSAMPLE)) + 16 if n_req else 0
    # every candidate's draws in one parallel kernel, counter-based: the same on any thread count
    cand = draw_candidates(seed, n_cand, candidate_law(pop))
    age = cand.age
    lb = pop.entry_lookback_h * 3600.0
    # gk: the grid point of the entry on the candidate's history path (the paths' grids end to
    # end; candidates take the paths in turn)
    gk = np.clip(np.rint((lb - age) / (lb / (len(age_grid) - 1))), 0,
                 len(age_grid) - 1).astype(np.int32) if len(age_grid) > 1 else \
        np.zeros(n_cand, np.int32)
    if n_paths == 1:
        entry = interp(-age, -age_grid, grids[0][1])
    else:  # candidate i takes path i % n_paths: path j's candidates are the slice [j::n_paths]
        entry = np.empty(n_cand)
        for j in range(n_paths):
            entry[j::n_paths] = interp(-age[j::n_paths], -age_grid, grids[j][1])
            gk[j::n_paths] += np.int32(j * len(age_grid))
    del age, grids
    entry *= cand.noise

    targets = {LONG: sc.population.open_interest_usd * pop.long_share,
               SHORT: sc.population.open_interest_usd * (1.0 - pop.long_share)}

    c = {"side": cand.side, "shape": cand.notional, "leverage": cand.leverage, "gk": gk,
         "entry": entry, "cross": cand.cross, "spare": cand.spare, "has_stop": cand.has_stop,
         "stop_dist": cand.stop_dist, "u_survive": cand.u_survive}
    del cand, gk, entry
    # a waypoint history is one smooth path: test survival against the paths it stands for too
    var_to_start = history_variance(sc)
    bridge = None if var_to_start is None else (
        var_to_start, (sc.market.volatility_annual_pct / 100.0) ** 2 / SECONDS_PER_YEAR * GRID_S)
    derived = _derive(c, table, targets, pop.max_notional_share, p0, lev=False)
    qty, lp = derived["qty"], derived["lp"]
    del derived  # only the sizes and liquidation prices decide who survived
    alive = _survived(c, qty, lp, suffix_min, suffix_max, p0, bridge)
    del qty, lp
    # keep the first n_req survivors in draw order, then re-derive sizes for exactly that set
    first = np.flatnonzero(alive)[:n_req]
    del alive
    considered = int(first[-1]) + 1 if first.size == n_req and n_req else n_cand
    for k in list(c):  # one array at a time, each old one freed as its survivors are taken
        c[k] = take(c[k], first)
    short_of = n_req - int(first.size)
    del first
    _check_side_counts(sc, c["side"], targets, n_req)
    d = _derive(c, table, targets, pop.max_notional_share, p0)
    capped = int(np.count_nonzero(d["lev"] < c["leverage"]))
    for k in ("shape", "leverage", "spare"):  # sized: not needed any more
        del c[k]
    # rescaling moved a few brackets: drop any that now fall on the wrong side of the history
    keep = _survived(c, d["qty"], d["lp"], suffix_min, suffix_max, p0, bridge)
    dropped = (considered - keep.size) + (keep.size - int(keep.sum()))
    side, entry, stop_dist, has_stop, cross = (c[k] for k in
                                               ("side", "entry", "stop_dist", "has_stop", "cross"))
    qty, lev, wallet, lp, br = (d[k] for k in ("qty", "lev", "wallet", "lp", "br"))
    del c, d

    rows = np.flatnonzero(keep)
    ent = _entries(sc, table, _entry_stream(seed), n_req, p0)
    t_ladder = time.perf_counter()
    # the ladder's sorts and gathers: parallel kernels, exactly np.argsort(kind="stable") and
    # fancy indexing (cascade.engine.sort)

    if sort and rows.size:
        is_long = take(side, rows) == LONG
        longs, shorts = rows[is_long], rows[~is_long]
        del is_long
        rows = np.concatenate([take(longs, stable_argsort(take(lp, longs))),
                               take(shorts, stable_argsort(take(lp, shorts)))])
        del longs, shorts
    side_r = take(side, rows)
    stop_rows = np.flatnonzero(take(has_stop, rows))
    n_long = int(np.count_nonzero(side_r == LONG))
    n_ladder = rows.size
    m = ent["side"].size
    # stop prices of the rows with a stop (only those are read)
    stop_px = np.zeros(n_ladder + m)
    held = rows[stop_rows]
    stop_px[stop_rows] = entry[held] * (1.0 - side[held] * stop_dist[held])
    del held
    if m:  # entries join the orders on last price: breakdown shorts sell, breakout longs buy
        stop_px[n_ladder:] = ent["level"]
        stop_rows = np.concatenate([stop_rows, n_ladder + np.arange(m)])
        side_r = np.concatenate([side_r, ent["side"]])
    sells = stop_rows[(side_r[stop_rows] == LONG) == (stop_rows < n_ladder)]
    buys = stop_rows[(side_r[stop_rows] == LONG) != (stop_rows < n_ladder)]
    ls = take(sells, stable_argsort(take(stop_px, sells)))
    ss = take(buys, stable_argsort(take(stop_px, buys)))
    stop_idx = np.concatenate([ls, ss]).astype(np.int32)
    n_long_stops = ls.size
    del side, stop_dist, has_stop, ls, ss, stop_rows, sells, buys
    stop_px = take(stop_px, stop_idx)
    # gather one array at a time so at most one extra copy is alive, straight into the rows
    # of the ladder, the entries after them
    qty = _gathered(qty, rows, m, ent["qty"])
    entry = _gathered(entry, rows, m, np.nan)
    wallet = _gathered(wallet, rows, m, 1.0 / ent["lev"])
    lp = _gathered(lp, rows, m, np.nan)
    br = _gathered(br, rows, m, 0)
    cross = _gathered(cross, rows, m, False)
    lev = _gathered(lev, rows, m, ent["lev"], np.float32)
    popu = Population(
        side=side_r, qty=qty, entry=entry, wallet=wallet, lp=lp, bracket=br, cross=cross,
        leverage=lev, n_long=n_long, stop_idx=stop_idx, stop_px=stop_px,
        n_long_stops=int(n_long_stops), price_start=p0, requested=n_req,
        dropped_prestart=dropped, leverage_capped=capped, n_ladder=n_ladder,
        entry_margin=1.0 / ent["lev"], short_of_candidates=short_of,
        dropped_rescaled=int(keep.size - int(keep.sum())))
    if timings is not None:
        timings["ladder_s"] = time.perf_counter() - t_ladder
        timings["population_s"] = t_ladder - t_start
    return popu


def interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp(x, xp, fp)`` (``xp`` increasing, at least 2 points), in parallel: the same
    numbers (NumPy's formula, its exact-hit and NaN rules; tests/test_population_kernels.py)."""
    x = np.ascontiguousarray(x, np.float64)
    xp = np.ascontiguousarray(xp, np.float64)
    fp = np.ascontiguousarray(fp, np.float64)
    if xp.size < 2 or x.size < (1 << 15):
        return np.interp(x, xp, fp)
    out = np.empty(x.size)
    with np.errstate(all="ignore"):  # as np.interp: an infinite slope is no error
        slopes = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    _interp_nb(x, xp, fp, slopes, out)
    return out


@pjit
def _interp_nb(x, xp, fp, slopes, out):
    """NumPy's ``arr_interp`` row by row (numpy/_core/src/multiarray/compiled_base.c): the
    interval ``xp[j] <= x < xp[j + 1]`` by binary search; ``fp[0]`` / ``fp[-1]`` outside;
    ``fp[j]`` on an exact hit; else ``slope * (x - xp[j]) + fp[j]``, from the other end if
    that is NaN."""
    n = xp.shape[0]
    for i in numba.prange(x.shape[0]):
        v = x[i]
        if v != v:
            out[i] = v
            continue
        if v < xp[0]:
            out[i] = fp[0]
            continue
        if v > xp[n - 1]:
            out[i] = fp[n - 1]
            continue
        lo, hi = 0, n - 1  # xp[lo] <= v, and v < xp[hi] or hi == n - 1
        if v >= xp[n - 1]:
            lo = n - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if xp[mid] <= v:
                lo = mid
            else:
                hi = mid
        j = lo
        if j == n - 1 or xp[j] == v:
            out[i] = fp[j]
            continue
        slope = slopes[j]
        r = slope * (v - xp[j]) + fp[j]
        if r != r:
            r = slope * (v - xp[j + 1]) + fp[j + 1]
            if r != r and fp[j] == fp[j + 1]:
                r = fp[j]
        out[i] = r


def _gathered(values: np.ndarray, rows: np.ndarray, m: int, tail, dtype=None) -> np.ndarray:
    """``values[rows]`` (as ``dtype``, default the values'), followed by ``m`` entries' ``tail``
    (an array of m, or a scalar for each): one array of ``rows.size + m``, gathered in place."""
    from cascade.engine.sort import take_into

    out = np.empty(rows.size + m, values.dtype if dtype is None else dtype)
    take_into(values, rows, out[: rows.size])
    out[rows.size:] = tail
    return out


def _entries(sc: Scenario, table, rng: np.random.Generator, n_req: int, p0: float) -> dict:
    """Conditional entries: side int8, level (trigger on last price, USD), qty (coin), lev, all
    (m,) in draw order, m = round(positions * entry_order_share).

    Sizes follow the population's Pareto law, rescaled per side to the entry notional at the
    start price; levels are uniform in log price between ``entry_order_range_pct`` below (shorts)
    or above (longs) the start price; leverage is capped at the bracket maximum of the notional at
    the level."""
    pop = sc.population
    m = int(round(n_req * pop.entry_order_share)) if pop.entry_order_share > 0 else 0
    if m == 0:
        return {"side": np.zeros(0, np.int8), "level": np.zeros(0), "qty": np.zeros(0),
                "lev": np.ones(0)}
    r_side, r_size, r_lev, r_level = rng.spawn(4)
    side = np.where(r_side.random(m) < pop.entry_order_long_share, LONG, SHORT).astype(np.int8)
    notional = pop.min_notional_usd * (1.0 + r_size.pareto(pop.size_tail_index, m))
    total = pop.open_interest_usd * pop.entry_order_share
    for s, share in ((LONG, pop.entry_order_long_share), (SHORT, 1 - pop.entry_order_long_share)):
        _rescale_capped(notional, side == s, total * share, pop.max_notional_share)
    lo, hi = pop.entry_order_range_pct
    u = r_level.random(m)
    d_lo = np.where(side == LONG, np.log1p(lo / 100.0), np.log1p(-lo / 100.0))
    d_hi = np.where(side == LONG, np.log1p(hi / 100.0), np.log1p(-hi / 100.0))
    level = p0 * np.exp(d_lo + (d_hi - d_lo) * u)
    choices = np.asarray(pop.entry_order_leverages, dtype=np.float64)
    weights = np.asarray(pop.entry_order_leverage_weights) / sum(pop.entry_order_leverage_weights)
    lev = choices[r_lev.choice(len(choices), size=m, p=weights)]
    qty = notional / p0
    b = np.searchsorted(table.cap, qty * level, side="left")
    lev = np.minimum(lev, table.max_leverage[np.minimum(b, len(table.cap) - 1)])
    return {"side": side, "level": level, "qty": qty, "lev": lev}


def _check_side_counts(sc: Scenario, side: np.ndarray, targets: dict, n_req: int) -> None:
    """Refuse a population too small to hold each side's open interest with no position above
    ``max_notional_share`` of it (it would silently put a side's whole notional on a few rows)."""
    from cascade.errors import CascadeError

    if n_req == 0:  # an empty market: no open interest to hold
        return
    share = sc.population.max_notional_share
    need = int(np.ceil(1.0 / share - 1e-9))
    for s, name in ((LONG, "long"), (SHORT, "short")):
        k = int(np.count_nonzero(side == s))
        if targets[s] > 0 and k < need:
            raise CascadeError(
                f"{sc.path or sc.name}: [population] positions = {n_req:,} gives {k} {name} "
                f"position(s), too few to hold the {name} open interest of {targets[s]:,.0f} USD "
                f"with none above [population] max_notional_share = {share:g} of it; expected at "
                f"least {need} {name} positions (more positions, or a larger max_notional_share; "
                f"positions = 0 runs an empty market)")


def _derive(c: dict, table, targets: dict, max_share: float, p0: float, *,
            lev: bool = True) -> dict:
    """Sizes scaled to the open-interest targets, leverage capped to the bracket, wallets, LPs.

    ``c`` holds the candidate arrays (n,): side, shape (notional before scaling), leverage, entry,
    cross, spare. Returns qty (coin), lev, wallet (USD), lp (USD), br (bracket index), all (n,);
    without ``lev``, only qty and lp (the sizes written over a copy of the shapes: two arrays
    instead of six at the peak of the build).
    """
    side = c["side"]
    notional = c["shape"].copy()
    for s in (LONG, SHORT):
        _rescale_capped(notional, side == s, targets[s], max_share)
    if not lev:  # sizes and liquidation prices only: the sizes over the notionals
        lp = np.empty(notional.size)
        beyond = _size_lp_nb(notional, float(p0), c["entry"], c["leverage"], c["cross"],
                             c["spare"], side, table.floor, table.cap, table.mmr, table.cum,
                             table.max_leverage, lp)
        _check_beyond(beyond)
        return {"qty": notional, "lp": lp}
    qty = np.empty(notional.size)
    lev_out = np.empty(notional.size)
    wallet = np.empty(notional.size)
    beyond = _size_nb(notional, float(p0), c["entry"], c["leverage"], c["cross"], c["spare"],
                      table.cap, table.max_leverage, qty, lev_out, wallet)
    _check_beyond(beyond)
    del notional
    lp = np.empty(qty.size)
    br = np.empty(qty.size, np.int8)
    liq_prices_nb(side, qty, c["entry"], wallet, table.floor, table.cap, table.mmr, table.cum,
                  lp, br)
    return {"qty": qty, "lev": lev_out, "wallet": wallet, "lp": lp, "br": br}


def _check_beyond(beyond: int) -> None:
    if beyond:  # as NumPy's indexing of the bracket table would
        raise IndexError(f"{beyond} positions' entry notional lies beyond the bracket table's "
                         "last cap")


@jit
def _size_row(i, notional, p0, entry, leverage, cross, spare, cap, max_leverage):
    """(qty, leverage, wallet, beyond) of row ``i``: see :func:`_size_nb`."""
    nb = cap.shape[0]
    q = notional[i] / p0
    en = q * entry[i]
    if en != en:  # np.searchsorted puts NaN after every cap
        b = nb
    else:  # np.searchsorted(cap, en, side="left"): the first cap >= en
        lo, hi = 0, nb
        while lo < hi:
            mid = (lo + hi) // 2
            if cap[mid] < en:
                lo = mid + 1
            else:
                hi = mid
        b = lo
    beyond = 0
    if b >= nb:
        beyond = 1
        b = nb - 1
    lv = _nanmin(leverage[i], max_leverage[b])
    w = en / lv
    if cross[i]:
        w *= 1.0 + spare[i]
    return q, lv, w, beyond


@pjit
def _size_lp_nb(notional, p0, entry, leverage, cross, spare, side, floor, cap, mmr, cum,
                max_leverage, lp):
    """:func:`_size_nb` keeping only the sizes, written over ``notional``, and each row's
    liquidation price ``lp`` (as :func:`cascade.rules.margin.liq_prices_nb`)."""
    beyond = 0
    for i in numba.prange(notional.shape[0]):
        q, lv, w, out = _size_row(i, notional, p0, entry, leverage, cross, spare, cap,
                                  max_leverage)
        beyond += out
        notional[i] = q
        lp[i], _ = liq_price_nb(side[i], q, entry[i], w, 0.0, 0.0, floor, cap, mmr, cum)
    return beyond


@pjit
def _size_nb(notional, p0, entry, leverage, cross, spare, cap, max_leverage, qty, lev, wallet):
    """Row by row: ``qty = notional / p0`` (the target is notional at the start price);
    leverage capped at the maximum of the bracket holding the entry notional ``qty * entry``
    (``floor < n <= cap``); ``wallet = qty * entry / lev``, times ``1 + spare`` for a cross
    account. Returns how many entry notionals lie beyond the last cap (NumPy's indexing would
    raise). tests/naive/population.py holds the NumPy original it equals."""
    beyond = 0
    for i in numba.prange(notional.shape[0]):
        q, lv, w, out = _size_row(i, notional, p0, entry, leverage, cross, spare, cap,
                                  max_leverage)
        beyond += out
        qty[i] = q
        lev[i] = lv
        wallet[i] = w
    return beyond


def _survived(c: dict, qty, lp, suffix_min, suffix_max, p0: float, bridge=None) -> np.ndarray:
    """bool (n,): the position would still be open at the start, i.e. the history since its entry
    never crossed its liquidation price nor its stop. ``suffix_min`` / ``suffix_max``: the lowest
    / highest price from each grid point to the start, float64 (paths x m,), the history paths'
    grids end to end, indexed by ``c["gk"]``.

    ``bridge`` = (variance of log price from each history grid point to the start (m,), the
    smallest variance to use): for a waypoint history, the position must also survive the paths
    the smooth history stands for. Every path from the entry to the start price converges on the
    start price, so the one drawn path leaves triggers just under (over) the start price that
    almost any real path would have crossed: after a drop of about 1/leverage, the whole ladder
    of that leverage sits there. A Brownian bridge in log price from the entry (ln E) to the
    start (ln p0) accumulating variance V stays clear of a trigger at ln l with probability
    ``1 - exp(-2 |ln E/l| |ln p0/l| / V)`` (the reflection principle, in the bridge's own time);
    each position keeps its draw ``u_survive`` below it. The density of triggers then falls to
    zero linearly at the start price, over a band that widens with the variance since entry
    (:func:`cascade.model.history.history_variance`) and narrows with the leverage."""
    alive = np.empty(qty.size, bool)
    _survive_path_nb(c["side"], c["gk"], c["entry"], c["stop_dist"], c["has_stop"], qty, lp,
                     suffix_min, suffix_max, float(p0), alive)
    if bridge is None:
        return alive
    var_grid, var_min = bridge
    # only the rows the path left alive can die on the bridge; in blocks, to bound temporaries
    side, entry, gk, u = c["side"], c["entry"], c["gk"], c["u_survive"]
    for a in range(0, qty.size, _BLOCK):
        i = a + np.flatnonzero(alive[a: a + _BLOCK])
        t = np.empty(i.size)  # the nearest trigger
        _trigger_nb(i, side, entry, c["stop_dist"], c["has_stop"], lp, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_entry = np.abs(np.log(entry[i] / t))
            d_start = np.abs(np.log(p0 / t))
            # the variance from the entry's grid point (on any path) to the start, at least
            # the grid's minute
            var = np.maximum(var_grid[gk[i] % var_grid.size], var_min)
            p_clear = -np.expm1(-2.0 * d_entry * d_start / var)
        alive[i] = np.where(np.isfinite(p_clear) & (t > 0), u[i] < p_clear, True)
    return alive


_BLOCK = 1 << 20  # rows per block of the bridge test (8 MiB per float64 temporary)


@jit
def _nanmin(a, b):
    """``np.minimum`` of two floats: NaN if either is NaN."""
    if a != a or b != b:
        return np.nan
    return a if a <= b else b


@jit
def _nanmax(a, b):
    """``np.maximum`` of two floats: NaN if either is NaN."""
    if a != a or b != b:
        return np.nan
    return a if a >= b else b


@pjit
def _survive_path_nb(side, gk, entry, stop_dist, has_stop, qty, lp, suffix_min, suffix_max, p0,
                     alive):
    """The drawn history's part of :func:`_survived`, row by row: ``alive[i]``, the row's size is
    positive and the path since its entry (grid point ``gk[i]`` of the history paths' grids end
    to end: ``suffix_min`` / ``suffix_max`` the lowest / highest price from there to the start,
    with the start price ``p0``) crossed neither its liquidation price ``lp[i]`` nor its stop
    (at ``entry * (1 - side * stop_dist)``, if ``has_stop``). tests/naive/population.py holds
    the NumPy original it equals."""
    for i in numba.prange(side.shape[0]):
        lo = suffix_min[gk[i]]
        hi = suffix_max[gk[i]]
        stop = entry[i] * (1.0 - side[i] * stop_dist[i])
        if side[i] == LONG:
            ok = lp[i] < _nanmin(lo, p0)
            stopped = has_stop[i] and stop >= lo
        else:
            ok = lp[i] > _nanmax(hi, p0)
            stopped = has_stop[i] and stop <= hi
        alive[i] = ok and not stopped and qty[i] > 0


@pjit
def _trigger_nb(rows, side, entry, stop_dist, has_stop, lp, out):
    """``out[k]``: the nearest trigger of row ``rows[k]``: its stop (at ``entry * (1 - side *
    stop_dist)``) when it has one lying between the entry and the liquidation price ``lp``, else
    ``lp`` (``np.maximum`` / ``np.minimum`` of the two, NaN if either is)."""
    for k in numba.prange(rows.shape[0]):
        i = rows[k]
        if has_stop[i]:
            stop = entry[i] * (1.0 - side[i] * stop_dist[i])
            out[k] = _nanmax(lp[i], stop) if side[i] == LONG else _nanmin(lp[i], stop)
        else:
            out[k] = lp[i]


def _rescale_capped(notional, mask, target, max_share) -> None:
    """Scale ``notional[mask]`` (in place) to sum to ``target``, no element above
    ``max_share * target``. Water-filling: capped elements stay at the cap, the rest are rescaled."""
    idx = np.flatnonzero(mask & (notional > 0))
    if idx.size == 0:
        return
    vals = notional[idx]
    cap = max_share * target
    if cap * idx.size < target:  # too few positions to reach the target under the cap
        cap = target / idx.size
    capped = np.zeros(idx.size, bool)
    n_capped = 0
    for _ in range(64):
        free_target = target - cap * n_capped
        if n_capped == idx.size:  # every element at the cap: the cap times the count is the target
            break
        # the free elements' sum, over them alone in order (all of vals while none is capped);
        # scaling every element then putting the capped back at the cap scales the free alone
        vals *= free_target / (vals.sum() if n_capped == 0 else vals[~capped].sum())
        if n_capped:
            vals[capped] = cap
        over = vals > cap  # a capped element holds the cap exactly: never above it
        n_over = int(np.count_nonzero(over))
        if not n_over:
            break
        vals[over] = cap
        capped |= over
        n_capped += n_over
    notional[idx] = vals


def liquidation_map(popu: Population, *, width_pct: float = 30.0, bins: int = 240):
    """Notional that would be liquidated at each price level, before the shock.

    Returns a DataFrame indexed by price level (bin centre, USD, ascending) with columns
    ``long_usd`` and ``short_usd`` (notional at the liquidation price).
    """
    import pandas as pd

    p0 = popu.price_start
    edges = np.linspace(p0 * (1 - width_pct / 100), p0 * (1 + width_pct / 100), bins + 1)
    a = popu.n_ladder  # conditional entries have no liquidation price before they open
    lp = popu.lp[:a]
    notional = popu.qty[:a] * lp
    long = popu.side[:a] == LONG
    hl, _ = np.histogram(lp[long], bins=edges, weights=notional[long])
    hs, _ = np.histogram(lp[~long], bins=edges, weights=notional[~long])
    centres = 0.5 * (edges[1:] + edges[:-1])
    return pd.DataFrame({"long_usd": hl, "short_usd": hs},
                        index=pd.Index(centres, name="price"))


def venue_tables(sc: Scenario):
    """(BracketTable, VenueRules) of the scenario's venue on its bracket date."""
    return (bracket_table(sc.venue.name, sc.venue.symbol, venue_date(sc)),
            venue_rules(sc.venue.name, sc.venue.symbol))
