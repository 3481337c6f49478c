"""Populations kept per process, so that runs sharing one (same seed and population settings,
other market or flow parameters) build it once: :func:`shared_population` returns a fork of
the kept copy. Used by :mod:`cascade.analysis.parallel` and its callers (sweep, validate,
sensitivity)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from cascade.model.scenario import Scenario

POPULATION_CACHE = 2  # populations a process keeps (1e6 positions: about 40 MB each)

_POPULATIONS: OrderedDict = OrderedDict()  # per process: population key -> population(s)


def forget_populations() -> None:
    """Drop the populations this process keeps (after a serial, in-process batch of runs)."""
    _POPULATIONS.clear()


def population_key(sc: Scenario) -> str:
    """Hash of everything :func:`build_population` reads: the scenario without the sections
    and keys that only the run uses (market except the history's volatility, engine, flows,
    wicks, targets, the end and the name)."""
    raw = dict(sc.raw)
    for section in ("engine", "flows", "wicks", "targets"):
        raw.pop(section, None)
    raw["market"] = {"volatility_annual_pct": sc.market.volatility_annual_pct}
    raw["scenario"] = {"start": sc.scenario.start, "step_s": sc.scenario.step_s,
                       "seed": sc.scenario.seed}
    raw["population"] = vars(sc.population)
    from cascade.model.scenario import _canonical

    return hashlib.sha256(repr(_canonical(raw)).encode()).hexdigest()


def _fresh(pops):
    return [p.fork() for p in pops] if isinstance(pops, list) else pops.fork()


def shared_population(sc: Scenario):
    """The scenario's population (a list per venue for ``[[venues]]``), built once per process
    and reused by later tasks with the same :func:`population_key`; each caller gets a fork."""
    key = population_key(sc)
    pops = _POPULATIONS.get(key)
    if pops is None:
        if sc.venues:
            from cascade.model.venues import build_populations

            pops = build_populations(sc)
        else:
            from cascade.model.population import build_population

            pops = build_population(sc)
        _POPULATIONS[key] = pops
        while len(_POPULATIONS) > POPULATION_CACHE:
            _POPULATIONS.popitem(last=False)
    else:
        _POPULATIONS.move_to_end(key)
    return _fresh(pops)


