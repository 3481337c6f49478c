"""Replay: drive the engine along a given kline path, with no feedback.

The price is the kline path (:func:`cascade.io.klines.candle_path`: each minute through open, high,
low and close) instead of the market model; forced orders do not move it, there is no exogenous
flow, no dip buying and no background noise, and the mark price is the last price (a window of
one step). What is left is the population: which positions the real path liquidates or stops out,
and at what cost to the insurance fund. Comparing a replay with a simulated run separates errors of
the population (the replay is already wrong) from errors of the market model (only the
simulation is).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade.errors import CascadeError
from cascade.model.scenario import Scenario


def replay_inputs(sc: Scenario, klines, price_start: float):
    """(exo, noise) driving the step loop along the klines: float64 (n_steps,) each.

    With no flow the engine's price is ``exp(log(price_start) + cumsum(noise))``, so
    ``noise`` is the path's log increments, starting from the population's start price."""
    from cascade.io.klines import candle_path
    from cascade.model.market import step_times

    path = candle_path(klines, step_times(sc))
    logp = np.log(path)
    noise = np.diff(logp, prepend=np.log(price_start))
    return np.zeros(sc.n_steps), noise


def replay_scenario(sc: Scenario) -> Scenario:
    """The scenario as replay runs it: no feedback, mark = last price, no dip buyers; with
    several venues, every venue on the same path (no index, no wicks, no funding)."""
    sc = sc.with_overrides(**{
        "engine.feedback": False,
        "market.mark_window_s": sc.scenario.step_s,
        # whichever form of the dip-buying rate the law gives (both at once is an error)
        ("market.dip_buy_usd_per_s_per_pct" if "dip_buy_usd_per_s_per_pct" in
         sc.raw.get("market", {}) else "market.dip_buy_depth_share_per_pct"): 0.0,
    })
    if not sc.venues:
        return sc
    import copy

    from cascade.model.scenario import parse_scenario

    raw = copy.deepcopy(sc.raw)
    for v in raw["venues"]:
        v.update({"mark": "last_average", "funding": False})
    raw.pop("spot", None)
    raw.pop("wicks", None)
    return parse_scenario(raw, source=str(sc.path or "<scenario>"),
                          base_dir=sc.path.parent if sc.path else None, path=sc.path)


def replay(scenario, klines, positions: int | None = None, seed: int | None = None, *,
           progress: bool = False, out: str | Path | None = None, threads: int | None = None):
    """Replay ``klines`` (a path to a Binance kline CSV, or a :func:`read_klines` frame) through
    the scenario's population. Returns a :class:`~cascade.result.Result` whose summary has
    ``mode = "replay"`` and ``klines``; the candles are kept as the plot's reference."""
    from cascade._numba import set_threads
    from cascade.io.klines import read_klines
    from cascade.model.venues import build_populations
    from cascade.runner import _as_scenario, simulate, with_run_options

    sc = with_run_options(_as_scenario(scenario), positions, seed)
    source = "<DataFrame>"
    if not hasattr(klines, "columns"):  # read first: a bad file fails before the population
        source = str(klines)
        klines = read_klines(klines)
    interval_s = klines.attrs.get("interval_s", 60)
    if sc.scenario.step_s * 4 > interval_s:
        raise CascadeError(f"{sc.path or '<scenario>'}: [scenario] step_s = {sc.scenario.step_s:g}"
                           f"; replay expects at least 4 steps per candle of {source}, i.e. "
                           f"step_s <= {interval_s / 4:g}")
    set_threads(threads)
    rsc = replay_scenario(sc)
    try:
        pops = build_populations(rsc)
        exo, noise = replay_inputs(rsc, klines, pops[0].price_start)
        if rsc.venues:  # the path drives every venue: no flow of their own
            exo = (np.zeros((len(pops), rsc.n_steps)), np.zeros((0, rsc.n_steps)))
    except CascadeError as exc:
        raise CascadeError(f"--klines {source}: {exc}") from None
    res = simulate(rsc, progress=progress, population=pops, exo=exo, noise=noise)
    res.summary["mode"] = "replay"
    res.summary["klines"] = source
    res.add_reference(klines, source)
    if out is not None:
        res.save(out)
    return res
