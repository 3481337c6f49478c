"""``cascade.run``: scenario -> population -> step loop -> :class:`cascade.result.Result`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cascade.errors import CascadeError
from cascade.model.scenario import Scenario, load_scenario

CHUNKS = 100  # progress-bar granularity: the step loop is called this many times


def _as_scenario(scenario) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, (str, Path)):
        return load_scenario(scenario)
    raise CascadeError(f"expected a scenario file path or a Scenario, got {type(scenario).__name__}")


def with_run_options(sc: Scenario, positions: int | None = None, seed: int | None = None,
                     feedback: bool | None = None) -> Scenario:
    """The scenario with the command-line overrides that are not None applied."""
    overrides = {}
    if positions is not None:
        overrides["population.positions"] = int(positions)
    if seed is not None:
        overrides["scenario.seed"] = int(seed)
    if feedback is not None:
        overrides["engine.feedback"] = bool(feedback)
    return sc.with_overrides(**overrides) if overrides else sc


def run(scenario, positions: int | None = None, seed: int | None = None, *,
        feedback: bool | None = None, amplification: bool = False, progress: bool = False,
        out: str | Path | None = None, threads: int | None = None,
        reference: str | Path | None = None, heatmap=False):
    """Run a scenario and return a :class:`~cascade.result.Result`.

    Parameters
    ----------
    scenario : path to a TOML file, or a :class:`~cascade.model.scenario.Scenario`
    positions, seed : override ``[population] positions`` / ``[scenario] seed``
    feedback : override ``[engine] feedback`` (False: forced orders do not move the price)
    amplification : also run with feedback off on the same seed and report
        ``amplification = drawdown(feedback) / drawdown(no feedback)`` in the summary
    progress : show progress bars (stderr)
    out : if given, write summary.json, steps.parquet and PNG plots there
    threads : numba threads for the parallel kernels (default: all)
    reference : a Binance kline CSV of the real path: overlaid on the waterfall plot, and
        ``path_rmse_pct`` added to the summary
    heatmap : True, or a dict of :class:`~cascade.analysis.heatmap.HeatmapSpec` fields (bins,
        span, every_s, at): also record the liquidation heatmap from the live ladder
        (``res.heatmap``, ``res.plot("heatmap")``, heatmap.parquet when saved)
    """
    from cascade._numba import set_threads

    sc = with_run_options(_as_scenario(scenario), positions, seed, feedback)
    set_threads(threads)
    klines = None
    if reference is not None:  # read first: a bad file fails before a long run, not after
        from cascade.io.klines import read_klines

        klines = read_klines(reference)
    spec = None
    if heatmap is not False and heatmap is not None:
        from cascade.analysis.heatmap import as_spec

        spec = as_spec(heatmap)
    result = simulate(sc, progress=progress, heatmap=spec)
    if amplification:
        base = simulate(sc.with_overrides(**{"engine.feedback": False}), progress=progress,
                        population=[p.fork() for p in result.populations])
        result.add_amplification(base)
    if klines is not None:
        result.add_reference(klines, str(reference))
    if out is not None:
        result.save(out)
    return result


def simulate(sc: Scenario, *, progress: bool = False, population=None, exo=None, noise=None,
             heatmap=None):
    """One engine run of a validated scenario (no overrides, no amplification).

    Every scenario is a market of V venues (:func:`cascade.model.venues.venue_specs`; a scenario
    without ``[[venues]]`` is the one-venue shorthand) and takes this one path: populations,
    parameters, flows, the step loop in chunks (funding paid between them), one result assembly.

    population : a :class:`~cascade.model.population.Population` or a list of V of them (one per
        venue) to reuse instead of drawing them; they are not modified
    exo : replaces the scenario's exogenous flow, USD per step (+ buy): float64 (T,) for a
        one-venue market, or the pair (float64 (V, T) on the venues, float64 (J, T) on the spot
        venues); replay uses it with ``noise`` (float64 (T,), background log increments) to drive
        the engine along a given path
    heatmap : a :class:`~cascade.analysis.heatmap.HeatmapSpec`: snapshot the ladder between
        chunks into ``result.heatmap`` (None: no snapshots, no extra chunk boundaries)

    A run whose memory estimate exceeds the memory available is refused before allocating.
    """
    from cascade.engine import M_ORACLE, S_FLAST, S_MARK, S_PACC, S_PCNT, EngineState
    from cascade.engine.memory import check_memory
    from cascade.model.market import background_noise
    from cascade.model.population import liquidation_map
    from cascade.model.venues import (
        build_populations,
        flows_by_venue,
        funding_rate,
        funding_steps,
        market_parameters,
        spot_inputs,
        venue_parameters,
        venue_specs,
        wick_multipliers,
    )
    from cascade.result import Result

    check_memory(sc)
    timings = {}
    t = time.perf_counter()
    specs = venue_specs(sc)
    if population is None:
        pops = build_populations(sc, specs, timings=timings)
    else:
        pops = list(population) if isinstance(population, (list, tuple)) else [population]
    timings.setdefault("population_s", time.perf_counter() - t)

    t = time.perf_counter()
    n_steps = sc.n_steps
    seed = sc.scenario.seed
    prm, iprm = venue_parameters(sc, specs)
    if exo is None:
        exo_v, spot_exo = flows_by_venue(sc, specs)
    elif isinstance(exo, tuple):
        exo_v, spot_exo = exo
    else:
        exo_v, spot_exo = np.atleast_2d(exo), np.zeros((len(sc.spot), n_steps))
    noise = background_noise(sc, seed) if noise is None else noise
    spot, spot_noise = spot_inputs(sc, seed)
    state = EngineState.for_venues(
        pops, [s.table for s in specs], n_steps, prm, iprm, [s.insurance_fund_usd for s in specs],
        mprm=market_parameters(sc), spot=spot, spot_exo=spot_exo, spot_noise=spot_noise,
        wick=wick_multipliers(sc, specs),
        arb_delay=int(round(sc.arbitrage.delay_s / sc.scenario.step_s)))
    timings["engine_state_s"] = time.perf_counter() - t
    t = time.perf_counter()
    oi0 = [float(p.qty[: p.n_ladder].sum() * p.price_start) for p in pops]
    pay = funding_steps(sc, specs)
    funding_log = []

    def pay_funding(step: int) -> None:
        for v in pay.get(step, []):
            st = state.st[v]
            pbar = st[S_PACC] / st[S_PCNT] if st[S_PCNT] > 0 else 0.0
            rate = funding_rate(specs[v], pbar)
            price = state.mst[M_ORACLE] if specs[v].rules == "hyperliquid" else st[S_MARK]
            paid = state.pay_funding(v, rate, float(price))
            st[S_FLAST] = rate
            st[S_PACC] = st[S_PCNT] = 0.0
            funding_log.append({"step": step, "venue": specs[v].name, "rate": rate,
                                "premium": pbar, "price": float(price), **paid})

    desc = f"{sc.name}: steps" + (f" ({len(specs)} venues)" if len(specs) > 1 else "")
    stops, before, recorder = pay, pay_funding, None
    if heatmap is not None:
        from cascade.analysis.heatmap import LadderRecorder

        recorder = LadderRecorder(sc, state, heatmap)
        stops = set(pay) | set(recorder.steps.tolist())

        def before(step: int) -> None:
            pay_funding(step)
            recorder.record(step)

    advance_all(sc, state, exo_v, noise, prm, iprm, progress=progress, desc=desc, stops=stops,
                before=before, finish=False)
    timings["step_loop_s"] = time.perf_counter() - t
    t = time.perf_counter()
    finish_run(sc, state)
    if recorder is not None:
        recorder.record(n_steps)  # the ladder left at the end
    timings["settle_s"] = time.perf_counter() - t

    t = time.perf_counter()
    res = Result.assemble(sc, specs, pops, state, liquidation_map, oi_start=oi0,
                          funding=funding_log)
    timings["assembly_s"] = time.perf_counter() - t
    if recorder is not None:
        res.heatmap = recorder.frame()
    res.summary["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return res


def advance_all(sc: Scenario, state, exo, noise, prm, iprm, *, progress: bool, desc: str,
                stops=(), before=None, finish: bool = True) -> None:
    """Run every step of ``state`` in chunks (for the progress bar), cutting a chunk at each step
    of ``stops`` and calling ``before(step)`` at the start of every chunk (funding is paid
    there); then, unless ``finish`` is False, :func:`finish_run`."""
    from cascade.engine.checks import check_steps

    names = [v.name for v in sc.venues] or [""]
    n_steps = sc.n_steps
    bounds = set(np.linspace(0, n_steps, min(CHUNKS, n_steps) + 1).astype(np.int64).tolist())
    bounds = sorted(bounds | set(stops))
    bar = _progress(progress, n_steps, desc + ("" if sc.engine.feedback else " (no feedback)"))
    for a, b in zip(bounds[:-1], bounds[1:]):
        if before is not None:
            before(a)
        _advance_or_explain(sc, state, exo, noise, prm, iprm, int(a), int(b))
        check_steps(sc, state.outs, int(a), int(b), names)
        if bar is not None:
            bar.update(int(b - a))
    if bar is not None:
        bar.close()
    if finish:
        finish_run(sc, state)


def finish_run(sc: Scenario, state) -> None:
    """After the last step: pay every position the funding it still owes (funding is paid lazily,
    O(positions) once), check the positions are finite, and write the opened conditional entries
    back into the populations."""
    from cascade.engine.checks import check_positions

    state.sync()
    check_positions(sc, state)
    state.write_back_entries()


def _advance_or_explain(sc: Scenario, state, exo, noise, prm, iprm, a: int, b: int) -> None:
    """``state.advance`` over steps [a, b), with a clear error when the price leaves the floats."""
    try:
        state.advance(exo, noise, prm, iprm, a, b)
    except (ZeroDivisionError, ValueError) as exc:
        # the same-step trigger/impact iteration diverged (e.g. a short squeeze whose buy
        # orders, worth qty * price, grow faster than the price they push): the price left
        # the floats, and the loop failed on it
        prices = state.outs[:, :b, 0]
        bad = np.flatnonzero((~np.isfinite(prices) | (prices <= 0)).any(axis=0))
        where = f"step {bad[0]}" if bad.size else f"steps {a}-{b}"
        raise CascadeError(
            f"{sc.path or sc.name}: the price diverged at {where} ({type(exc).__name__}: "
            f"{exc}); expected [market] parameters that keep the price finite (impact_exponent "
            f"= {sc.market.impact_exponent:g}, depth_usd = {sc.market.depth_usd:g}, "
            f"depth_floor = {sc.market.depth_floor:g})") from None


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal, silent when stderr is a file or a pipe (CI logs)
    return tqdm(total=total, desc=desc, unit="step", unit_scale=True, leave=False,
                mininterval=0.5, disable=None)
