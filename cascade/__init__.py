"""cascade: a liquidation cascade simulator for crypto perpetual futures.

``import cascade`` is cheap: heavy modules (numba kernels, pandas, matplotlib) load on first use.

>>> res = cascade.run("scenarios/demo.toml", positions=100_000, seed=1)   # doctest: +SKIP
>>> res.steps, res.summary, res.plot()                                     # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["CascadeError", "__version__", "liquidation_price", "load_scenario", "run"]


def __getattr__(name):
    if name == "run":
        from cascade.runner import run

        return run
    if name == "load_scenario":
        from cascade.scenario import load_scenario

        return load_scenario
    if name == "liquidation_price":
        from cascade.margin import liquidation_price

        return liquidation_price
    if name == "CascadeError":
        from cascade.errors import CascadeError

        return CascadeError
    raise AttributeError(f"module 'cascade' has no attribute {name!r}")
