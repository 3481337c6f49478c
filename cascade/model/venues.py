"""The market of a scenario as N venues: from its ``[[venues]]`` (or the single-venue
shorthand ``[venue]``), ``[[spot]]``, ``[index]``, ``[arbitrage]`` and ``[[wicks]]`` to the
inputs of :func:`cascade.engine.step_loop_nb` (:func:`cascade.runner.simulate` runs them).

Each venue draws its own population (a share of ``[population]`` positions and open interest,
its own bracket table and leverages), rests a share of ``[market]`` depth and dip buying, and
receives a share of the exogenous flow. The rules a venue follows by default come from its rule
set (mechanics.md, read 2026-11-21):

=============  ==============================  =========================  ==============  ========
rules          mark                            partial liquidation        ADL price       funding
=============  ==============================  =========================  ==============  ========
binance        median(P1, P2, last) (sect. 1)  none: whole position       bankruptcy      8 h
hyperliquid    median(oracle + EMA, last, ..)  20 % / 30 s / backstop     previous mark   1 h
=============  ==============================  =========================  ==============  ========

Liquidation order (``liquidation_order``): binance ``ioc_bankruptcy`` (one IOC order limited at
the bankruptcy price, the fund takes over the rest within its cap, ADL beyond), hyperliquid
``backstop`` (market orders, then the vault holds what it backstops within its cap, ADL beyond).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cascade.model.scenario import Scenario, parse_scenario
from cascade.rules.brackets import bracket_table, venue_rules

SEED_STRIDE = 1_000_003  # venue v draws its population with seed + v * SEED_STRIDE


@dataclasses.dataclass(frozen=True)
class VenueSpec:
    """One venue of a market, with every default resolved.

    mark, partial, adl : int codes (cascade.model.market MARK_*, PARTIAL_*, ADL_*)
    funding_interval_s : seconds; funding : whether it is paid
    """

    name: str
    rules: str
    symbol: str
    date: object
    population_share: float
    depth_share: float
    flow_share: float
    insurance_fund_usd: float
    latency_s: float
    mark: int
    partial: int
    adl: int
    funding: bool
    funding_interval_s: float
    liquidation_order: int
    fund_cap_multiple: float | None
    leverages: list | None
    leverage_weights: list | None

    @property
    def table(self):
        return bracket_table(self.rules, self.symbol, self.date)

    @property
    def venue_rules(self):
        return venue_rules(self.rules, self.symbol)


def venue_specs(sc: Scenario) -> list[VenueSpec]:
    """The venues of a scenario, defaults resolved: its ``[[venues]]``, or for the single-venue
    shorthand (``[venue]``) one venue holding the whole market, with the rules a single-venue
    run has always had (mark = mean of last price over ``mark_window_s``, whole-position
    liquidation, no ADL, no funding)."""
    from cascade.model import market as m

    if not sc.venues:
        return [_shorthand_spec(sc)]

    marks = {"binance": m.MARK_BINANCE, "hyperliquid": m.MARK_HYPERLIQUID,
             "last_average": m.MARK_LAST_AVERAGE}
    partials = {"none": m.PARTIAL_NONE, "step_down": m.PARTIAL_STEP_DOWN,
                "hyperliquid": m.PARTIAL_HYPERLIQUID}
    specs = []
    for v in sc.venues:
        hl = v.rules == "hyperliquid"
        mark = v.rules if v.mark == "rules" else v.mark
        partial = ("hyperliquid" if hl else "none") if v.partial == "rules" else v.partial
        adl = (m.ADL_HYPERLIQUID if hl else m.ADL_BINANCE) if v.adl else m.ADL_NONE
        hours = v.funding_interval_h or (1.0 if hl else 8.0)
        order = v.liquidation_order
        if order == "rules":
            order = "backstop" if hl and partial == "hyperliquid" else \
                ("market" if hl else "ioc_bankruptcy")
        specs.append(VenueSpec(
            name=v.name, rules=v.rules, symbol=v.symbol,
            date=v.bracket_date or sc.scenario.start.date(),
            population_share=v.population_share, depth_share=v.depth_share,
            flow_share=v.depth_share if v.flow_share is None else v.flow_share,
            insurance_fund_usd=v.insurance_fund_usd, latency_s=v.latency_s,
            mark=marks[mark], partial=partials[partial], adl=adl, funding=v.funding,
            funding_interval_s=hours * 3600.0,
            liquidation_order=m.LIQUIDATION_ORDERS[order],
            fund_cap_multiple=v.fund_cap_multiple, leverages=v.leverages,
            leverage_weights=v.leverage_weights))
    return specs


def _shorthand_spec(sc: Scenario) -> VenueSpec:
    from cascade.model import market as m
    from cascade.model.scenario import venue_date

    return VenueSpec(
        name=sc.venue.name, rules=sc.venue.name, symbol=sc.venue.symbol, date=venue_date(sc),
        population_share=1.0, depth_share=1.0, flow_share=1.0,
        insurance_fund_usd=sc.venue.insurance_fund_usd, latency_s=sc.engine.latency_s,
        mark=m.MARK_LAST_AVERAGE, partial=m.PARTIAL_NONE, adl=m.ADL_NONE, funding=False,
        funding_interval_s=0.0,
        liquidation_order=m.LIQUIDATION_ORDERS[m.single_venue_liquidation_order(sc)],
        fund_cap_multiple=None, leverages=None, leverage_weights=None)


def split_count(total: int, shares) -> list[int]:
    """``total`` split by ``shares`` (largest remainder): whole counts summing to ``total``."""
    w = np.asarray(shares, float) / float(sum(shares))
    raw = total * w
    out = np.floor(raw).astype(np.int64)
    rest = int(total - out.sum())
    out[np.argsort(-(raw - out), kind="stable")[:rest]] += 1
    return [int(x) for x in out]


def venue_scenario(sc: Scenario, spec: VenueSpec, positions: int | None = None) -> Scenario:
    """A single-venue scenario holding one venue's share of the population (for drawing it)."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in sc.raw.items()
           if k not in ("venues", "spot", "index", "arbitrage", "wicks", "targets")}
    raw["flows"] = [{k: v for k, v in f.items() if k != "venue"} for f in sc.raw.get("flows", [])]
    raw["venue"] = {"name": spec.rules, "symbol": spec.symbol, "bracket_date": spec.date,
                    "insurance_fund_usd": spec.insurance_fund_usd}
    pop = dict(raw.get("population", {}))
    pop["positions"] = int(round(sc.population.positions * spec.population_share)) \
        if positions is None else int(positions)
    pop["open_interest_usd"] = sc.population.open_interest_usd * spec.population_share
    if spec.leverages:
        pop["leverages"] = spec.leverages
    if spec.leverage_weights:
        pop["leverage_weights"] = spec.leverage_weights
    raw["population"] = pop
    where = f"{sc.path or sc.name} [[venues]] {spec.name}"
    return parse_scenario(raw, source=where, base_dir=sc.path.parent if sc.path else None)


def build_populations(sc: Scenario, specs=None, *, timings: dict | None = None) -> list:
    """One :class:`~cascade.model.population.Population` per venue (seed + v * SEED_STRIDE);
    the single-venue shorthand draws the scenario's own population."""
    from cascade.model.population import build_population

    if not sc.venues:
        return [build_population(sc, timings=timings)]
    specs = venue_specs(sc) if specs is None else specs
    pops = []
    counts = split_count(sc.population.positions, [s.population_share for s in specs])
    if sc.population.positions and min(counts) == 0:
        from cascade.errors import CascadeError

        raise CascadeError(
            f"{sc.path or sc.name}: [population] positions = {sc.population.positions:,} splits "
            f"into {counts} across the venues {[s.name for s in specs]} by population_share: "
            "every venue needs positions to hold its open interest; expected more positions, "
            "or 0 for an empty market (see also [population] max_notional_share)")
    for v, spec in enumerate(specs):
        tm = {}
        pops.append(build_population(venue_scenario(sc, spec, counts[v]),
                                     seed=sc.scenario.seed + v * SEED_STRIDE, timings=tm))
        if timings is not None:
            for k, x in tm.items():
                timings[k] = timings.get(k, 0.0) + x
    return pops


def venue_parameters(sc: Scenario, specs) -> tuple[np.ndarray, np.ndarray]:
    """(float64 (V, N_PARAMS), int64 (V, N_IPARAMS)) parameter arrays of the step loop."""
    from cascade.model import market as m
    from cascade.rules.mark import HL_MARK_EMA_TAU_S, binance_basis_window

    dt = sc.scenario.step_s
    prms, iprms = [], []
    for spec in specs:
        rules = spec.venue_rules
        prm, iprm = m.parameters(sc, rules.liquidation_fee_rate, sc.engine.feedback,
                                 rules.liquidate_on_equal)
        prm[m.P_DEPTH] *= spec.depth_share
        prm[m.P_DIPRATE] *= spec.depth_share
        prm[m.P_DIPCAP] *= spec.depth_share
        iprm[m.I_LAT] = int(round(spec.latency_s / dt))
        iprm[m.I_MARK] = spec.mark
        iprm[m.I_PARTIAL] = spec.partial
        iprm[m.I_ADL] = spec.adl
        iprm[m.I_LIQORD] = spec.liquidation_order
        if spec.fund_cap_multiple is not None:
            prm[m.P_FUNDCAP] = spec.fund_cap_multiple
        if sc.venues:  # the shorthand's mark has no basis samples, EMA or funding
            prm[m.P_EMA] = 1.0 - math.exp(-dt / HL_MARK_EMA_TAU_S)
            prm[m.P_FINT_S] = spec.funding_interval_s
            iprm[m.I_BWIN] = max(1, int(round(binance_basis_window(sc.scenario.start.date())
                                              / dt)))
        prms.append(prm)
        iprms.append(iprm)
    return np.array(prms), np.array(iprms)


def flows_by_venue(sc: Scenario, specs) -> tuple[np.ndarray, np.ndarray]:
    """Exogenous flow per step: (float64 (V, T) on the venues, float64 (J, T) on the spot
    venues), USD, + buy. A flow with ``venue`` goes to that venue only; the others go first to
    the spot venues (their ``flow_share``), the rest to the venues by ``flow_share``."""
    from cascade.model.market import exogenous_flow

    names = [s.name for s in specs]
    share = np.array([s.flow_share for s in specs])
    spot_share = np.array([s.flow_share for s in sc.spot])
    exo = np.zeros((len(specs), sc.n_steps))
    spot = np.zeros((len(sc.spot), sc.n_steps))
    for f in sc.flows:
        one = exogenous_flow(_with_flows(sc, [f]))
        if f.venue:
            exo[names.index(f.venue)] += one
        else:
            spot += spot_share[:, None] * one
            exo += (1.0 - spot_share.sum()) * share[:, None] * one
    return exo, spot


def _with_flows(sc: Scenario, flows) -> Scenario:
    return dataclasses.replace(sc, flows=tuple(flows))


def spot_inputs(sc: Scenario, seed: int):
    """(spot (J, N_SPOT), spot_noise (J, T)) for the index of spot venues."""
    from cascade.engine import N_SPOT, SP_DECAY, SP_DEPTH, SP_LAG, SP_REVERT, SP_WEIGHT

    dt = sc.scenario.step_s
    spot = np.zeros((len(sc.spot), N_SPOT))
    noise = np.zeros((len(sc.spot), sc.n_steps))
    for j, s in enumerate(sc.spot):
        spot[j, SP_WEIGHT] = s.weight
        spot[j, SP_LAG] = int(round(s.lag_s / dt))
        spot[j, SP_DEPTH] = s.depth_usd
        spot[j, SP_DECAY] = 2.0 ** (-dt / sc.index.resilience_half_life_s)
        spot[j, SP_REVERT] = 2.0 ** (-dt / sc.index.reversion_half_life_s)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0x53504F54, j])))
        noise[j] = rng.standard_normal(sc.n_steps) * s.noise_bps / 1e4
    return spot, noise


def wick_multipliers(sc: Scenario, specs) -> np.ndarray:
    """float64 (V + 1, T): each venue's last-price multiplier, and the index's (last row)."""
    names = [s.name for s in specs]
    wick = np.ones((len(specs) + 1, sc.n_steps))
    t0, dt = sc.scenario.start.timestamp(), sc.scenario.step_s
    for w in sc.wicks:
        a = int(math.floor((w.start.timestamp() - t0) / dt))
        b = min(sc.n_steps, a + max(1, int(round(w.duration_s / dt))))
        row = len(specs) if w.target == "index" else names.index(w.target)
        wick[row, a:b] *= 1.0 - w.depth_pct / 100.0
    return wick


def market_parameters(sc: Scenario) -> np.ndarray:
    from cascade.engine import M_ARB_BAND, M_ARB_CAP, M_ARB_DELAY, M_SPOT_ALPHA, N_MPARAMS

    dt = sc.scenario.step_s
    mprm = np.zeros(N_MPARAMS)
    mprm[M_ARB_CAP] = sc.arbitrage.capacity_usd_per_s * dt
    mprm[M_ARB_BAND] = sc.arbitrage.band_bps / 1e4
    mprm[M_ARB_DELAY] = int(round(sc.arbitrage.delay_s / dt))
    mprm[M_SPOT_ALPHA] = sc.market.impact_exponent
    return mprm


def funding_steps(sc: Scenario, specs) -> dict[int, list[int]]:
    """{step: [venues paying funding just before that step]}: funding instants (multiples of each
    venue's interval since the epoch, so 00/08/16 UTC on Binance) inside the window."""
    t0, t1, dt = sc.scenario.start.timestamp(), sc.scenario.end.timestamp(), sc.scenario.step_s
    out: dict[int, list[int]] = {}
    for v, spec in enumerate(specs):
        if not spec.funding:
            continue
        iv = spec.funding_interval_s
        k = math.floor(t0 / iv) + 1
        while k * iv < t1:
            step = int(round((k * iv - t0) / dt))
            if 0 < step < sc.n_steps:
                out.setdefault(step, []).append(v)
            k += 1
    return out


def funding_rate(spec: VenueSpec, pbar: float) -> float:
    """The rate a venue pays for one of its intervals from the average premium ``pbar``
    (mechanics.md sections 1 and 3: Binance clamp and cap; Hyperliquid F8h / 8, no cap)."""
    from cascade.rules.funding import (
        BINANCE_CLAMP,
        BINANCE_INTEREST_8H,
        binance_funding_cap,
        funding_rate_nb,
        hl_funding_rate_hourly_nb,
    )

    if spec.rules == "hyperliquid":
        return float(hl_funding_rate_hourly_nb(pbar, BINANCE_INTEREST_8H))
    interest = BINANCE_INTEREST_8H * spec.funding_interval_s / (8 * 3600.0)
    return float(funding_rate_nb(pbar, interest, BINANCE_CLAMP, binance_funding_cap(spec.table)))
