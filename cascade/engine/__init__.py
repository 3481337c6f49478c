"""The engine: one step loop for a market of one or several venues.

- :mod:`~cascade.engine.layout`: position statuses, record kinds, state-vector indices, the
  per-step output columns and the record dtype;
- :mod:`~cascade.engine.book`: the impact law of the order book;
- :mod:`~cascade.engine.ladder`: records, heaps and the trigger scan over the sorted ladder;
- :mod:`~cascade.engine.settle`: fills, the insurance fund, bad debt and ADL;
- :mod:`~cascade.engine.structs`: the named structures the kernels take (namedtuples of arrays:
  :class:`Positions`, :class:`Ladder`, :class:`Tables`, :class:`VenueParams`, :class:`VenueState`,
  :class:`Market`, :class:`Inputs`);
- :mod:`~cascade.engine.loop`: the jitted step loop (:func:`step_loop_nb`);
- :mod:`~cascade.engine.state`: :class:`EngineState`, built once per run and advanced in chunks.

Nothing compiles at import: the kernels are compiled (or loaded from numba's cache) on first call.
"""

from cascade.engine.book import impact_curve_nb, impact_integral_nb, impact_nb, mean_impact_nb
from cascade.engine.ladder import (
    heap_pop_nb,
    heap_push_nb,
    heapify_nb,
    ladder_for,
    open_nb,
    scan_triggers_nb,
)
from cascade.engine.layout import *  # noqa: F403 - statuses, kinds, indices, COLUMNS, RECORD_DTYPE
from cascade.engine.layout import __all__ as _layout_names
from cascade.engine.loop import step_loop_nb
from cascade.engine.settle import liquidate_nb, settle_nb
from cascade.engine.state import EngineState
from cascade.engine.structs import (
    Inputs,
    Ladder,
    Market,
    Positions,
    Tables,
    VenueParams,
    VenueState,
)

__all__ = [*_layout_names, "EngineState", "Inputs", "Ladder", "Market", "Positions", "Tables",
           "VenueParams", "VenueState", "heap_pop_nb", "heap_push_nb", "heapify_nb",
           "impact_curve_nb", "impact_integral_nb", "impact_nb", "ladder_for", "liquidate_nb",
           "mean_impact_nb",
           "open_nb", "scan_triggers_nb", "settle_nb", "step_loop_nb"]
