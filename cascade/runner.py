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
        reference: str | Path | None = None):
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
    """
    from cascade._numba import set_threads

    sc = with_run_options(_as_scenario(scenario), positions, seed, feedback)
    set_threads(threads)
    klines = None
    if reference is not None:  # read first: a bad file fails before a long run, not after
        from cascade.io.klines import read_klines

        klines = read_klines(reference)
    result = simulate(sc, progress=progress)
    if amplification:
        base = simulate(sc.with_overrides(**{"engine.feedback": False}), progress=progress,
                        population=[p.fork() for p in result.populations] if sc.venues
                        else result.population.fork())
        result.add_amplification(base)
    if klines is not None:
        result.add_reference(klines, str(reference))
    if out is not None:
        result.save(out)
    return result


def simulate(sc: Scenario, *, progress: bool = False, population=None, exo=None, noise=None):
    """One engine run of a validated scenario (no overrides, no amplification).

    ``exo`` / ``noise`` (float64 (n_steps,)) replace the scenario's exogenous flow (USD per step)
    and background log increments; replay uses them to drive the engine along a given path.
    A scenario with ``[[venues]]`` runs :func:`cascade.model.venues.simulate_venues` (``population``:
    the list of per-venue populations; ``exo``: its (flows, spot flows) pair).
    A run whose memory estimate exceeds the memory available is refused before allocating."""
    from cascade.engine.memory import check_memory

    check_memory(sc)
    if sc.venues:
        from cascade.model.venues import simulate_venues

        return simulate_venues(sc, progress=progress, populations=population, exo=exo,
                               noise=noise)
    from cascade.engine import EngineState
    from cascade.model.market import background_noise, exogenous_flow, parameters
    from cascade.model.population import build_population, liquidation_map, venue_tables
    from cascade.result import Result

    timings = {}
    seed = sc.scenario.seed
    t = time.perf_counter()
    table, rules = venue_tables(sc)
    popu = population if population is not None else build_population(sc, timings=timings)
    timings.setdefault("population_s", time.perf_counter() - t)

    t = time.perf_counter()
    n_steps = sc.n_steps
    exo = exogenous_flow(sc) if exo is None else exo
    noise = background_noise(sc, seed) if noise is None else noise
    prm, iprm = parameters(sc, rules.liquidation_fee_rate, sc.engine.feedback,
                           rules.liquidate_on_equal)
    state = EngineState.initial(popu, n_steps, iprm, sc.venue.insurance_fund_usd, table, prm)
    oi0 = float((popu.qty[: popu.n_ladder].sum()) * popu.price_start)
    advance_all(sc, state, exo, noise, prm, iprm, progress=progress, desc=f"{sc.name}: steps")
    timings["step_loop_s"] = time.perf_counter() - t

    t = time.perf_counter()
    liq_map = liquidation_map(popu)
    res = Result.assemble(sc, popu, state, liq_map, oi_start=oi0, table=table, rules=rules)
    timings["assembly_s"] = time.perf_counter() - t
    res.summary["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return res


def advance_all(sc: Scenario, state, exo, noise, prm, iprm, *, progress: bool, desc: str,
                stops=(), before=None) -> None:
    """Run every step of ``state`` in chunks (for the progress bar), cutting a chunk at each step
    of ``stops`` and calling ``before(step)`` at the start of every chunk (funding is paid
    there); then write the opened conditional entries back into the populations."""
    from cascade.engine.checks import check_positions, check_steps

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
    check_positions(sc, state)
    state.write_back_entries()


def _advance_or_explain(sc: Scenario, state, exo, noise, prm, iprm, a: int, b: int) -> None:
    """``state.advance`` over steps [a, b), with a clear error when the price leaves the floats."""
    try:
        state.advance(None, exo, noise, prm, iprm, a, b)
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
