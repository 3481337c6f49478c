"""cascade: a liquidation cascade simulator for crypto perpetual futures.

``import cascade`` is cheap: heavy modules (numba kernels, pandas, matplotlib) load on first use,
and so do the subpackages, which tab completion lists all the same.

>>> res = cascade.run("scenarios/demo.toml", positions=100_000, seed=1)   # doctest: +SKIP
>>> res.steps, res.summary, res.plot()                                     # doctest: +SKIP
>>> report = cascade.validate("scenarios/oct2025.toml", seeds=2)          # doctest: +SKIP

Layout: :mod:`cascade.rules` (exchange rules), :mod:`cascade.model` (scenario, population,
market inputs), :mod:`cascade.engine` (the step loop), :mod:`cascade.analysis` (validate,
sensitivity, replay), :mod:`cascade.io`, :mod:`cascade.plots`, :mod:`cascade.cli`;
:mod:`cascade.runner` and :mod:`cascade.result` tie them together.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public functions: name -> (module, attribute)
_FUNCTIONS = {
    "run": ("cascade.runner", "run"),
    "load_scenario": ("cascade.model.scenario", "load_scenario"),
    "liquidation_price": ("cascade.rules.margin", "liquidation_price"),
    "validate": ("cascade.analysis.targets", "validate"),
    "sensitivity": ("cascade.analysis.sensitivity", "sensitivity"),
    "replay": ("cascade.analysis.replay", "replay"),
    "CascadeError": ("cascade.errors", "CascadeError"),
}
# submodules reachable as attributes after a plain ``import cascade``; the analysis modules are
# also reachable by their short names (``cascade.targets.validate``)
_SUBMODULES = {
    "rules": "cascade.rules", "model": "cascade.model", "engine": "cascade.engine",
    "analysis": "cascade.analysis", "io": "cascade.io", "plots": "cascade.plots",
    "cli": "cascade.cli", "runner": "cascade.runner", "result": "cascade.result",
    "errors": "cascade.errors", "targets": "cascade.analysis.targets",
    "scenario": "cascade.model.scenario", "klines": "cascade.io.klines",
}

__all__ = ["__version__", *_FUNCTIONS, *_SUBMODULES]


def __getattr__(name):
    if name in _FUNCTIONS:
        module, attr = _FUNCTIONS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'cascade' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
