"""Named structures the jitted kernels take: namedtuples of arrays.

numba compiles a namedtuple of arrays into a plain struct of array descriptors passed by value:
``pos.qty[i]`` is a field load then the same indexed load as ``qty[i]``; packing a venue's views
into one allocates nothing, and the kernels are cached like any other. Measured against the
positional arguments and against ``numba.experimental.structref`` (issue 10, October step loop,
200,000 positions): the three run in the same time within noise, but a structref is a
heap-allocated, reference-counted object (building the per-venue views each step would allocate),
needs a registered type and proxy class per structure, and its generated constructor reserves the
name ``st``.

The same class holds the arrays of all venues (built once in Python by
:meth:`cascade.engine.state.EngineState.advance`) or one venue's views (built inside
:func:`cascade.engine.loop.step_loop_nb` for each venue and step: slicing and packing views is
free, no copy). Fields are described for one venue; at the market level every array has the
venues' rows concatenated, or a leading venue axis V where said. The tuples are immutable; their
arrays are mutated in place.
"""

from __future__ import annotations

from collections import namedtuple

from cascade.rules.brackets import BracketArrays

Positions = namedtuple("Positions", "side qty entry wallet lp status tlp fep fpaid")
Positions.__doc__ = """Positions, structure of arrays (n rows).

side : int8 +1 long / -1 short; qty : float64 coin; entry : float64 entry price, USD (NaN for a
conditional entry not yet filled); wallet : float64 isolated margin, USD (before entry: the
initial-margin fraction); lp : float64 liquidation price, USD; status : int8 OPEN / TRIGGERED /
LIQUIDATED / STOPPED / DORMANT / HEAPED / DELEVERAGED (:mod:`cascade.engine.layout`);
tlp : float64 time of the last partial liquidation (Hyperliquid 30 s rule), s.
fep : int32 funding events already paid into ``wallet`` (and ``lp``, ``fpaid``): funding is paid
lazily, row by row, when a kernel touches the row (:func:`cascade.engine.ladder.sync_nb`);
fpaid : float64 funding the row paid so far, USD (+ paid).
"""

Ladder = namedtuple("Ladder", "n_long n_ladder order stop_idx stop_px heap_l heap_s runs rkey "
                               "xheap_l xheap_s xkey cand")
Ladder.__doc__ = """The sorted triggers of a venue.

n_long, n_ladder : int rows of ladder longs, and of the whole ladder (longs then shorts; the
conditional entries follow); at the market level int64 (V,) per venue. order : int32 (n,) ladder
place -> row: the runs, one per (side, bracket), each sorted by liquidation price.
stop_idx, stop_px : int32, float64 orders on last price, sells on a fall then buys on a rise.
heap_l, heap_s : int32 binary heaps of positions opened or re-queued during the run (their sizes
in ``ist[J_HL]``, ``ist[J_HS]``). runs : int64 (R, N_RUN) the runs (``R_*`` columns; (V, R,
N_RUN) at the market level). rkey : float64 (R, 2) each run's head (the liquidation price,
at the funding the runs were keyed for, of its unwalked row nearest the mark) and its offset
since. xheap_l, xheap_s : int32 binary heaps of the ladder's strays (rows
whose bracket funding may change, keyed by ``xkey``; sizes in ``ist[J_XL]``, ``ist[J_XS]``).
xkey : float64 (n,) a stray's liquidation price at the last funding event. cand : int32 (n,)
scratch of the trigger scan. See :mod:`cascade.engine.ladder`.
"""

# a venue's margin bracket table; at the market level the venues' tables are concatenated
Tables = BracketArrays

VenueParams = namedtuple("VenueParams", "prm iprm")
VenueParams.__doc__ = """A venue's parameters: float64 (N_PARAMS,) ``P_*`` and int64
(N_IPARAMS,) ``I_*`` (:func:`cascade.model.market.parameters`); (V, ...) at the market level."""

VenueState = namedtuple("VenueState",
                        "st ist rec adl_buf adl_rank ring bring pend marks arb fev fcs")
VenueState.__doc__ = """A venue's mutable state (leading axis V at the market level).

st : float64 (N_STATE,) ``S_*``; ist : int64 (N_ISTATE,) ``J_*``; rec : RECORD_DTYPE records;
adl_rank : float64 (2, n) the ADL key (-rank) of every row for each side's queue, NaN out of it;
adl_buf : int32 (2, n) the queue's current batch of rows (:mod:`cascade.engine.adlqueue`); ring : last
prices (mark window); bring : basis samples (last - index); pend : forced flow queued (latency);
marks : the mark at the end of recent steps (slot t % width); arb : arbitrage flow in flight.
fev : float64 (E, 2) the funding events paid so far (price, rate), ``ist[J_NFEV]`` of them;
fcs : float64 (2, E + 1) cumulative wallet change per coin of a long (row 0) and of a short
(row 1) after each number of events, USD per coin.
"""

Market = namedtuple("Market", "mprm spot mst sst comp_ring")
Market.__doc__ = """What the venues share: mprm float64 (N_MPARAMS,) ``M_ARB_*``/``M_SPOT_ALPHA``;
spot float64 (J, N_SPOT) spot venues of the index (``SP_*``); mst float64 (N_MSTATE,) market
state (``M_X`` ...); sst float64 (J, 2) spot state (deviation, imbalance); comp_ring float64
(max spot lag + 2,) log composite price of the perpetual venues, by step."""

Inputs = namedtuple("Inputs", "exo noise wick spot_exo spot_noise")
Inputs.__doc__ = """Exogenous paths (T steps): exo float64 (V, T) flow per venue, USD; noise
float64 (T,) log increments of the background price; wick float64 (V + 1, T) multiplier of each
venue's last price (row V: of every spot price); spot_exo, spot_noise float64 (J, T)."""

__all__ = ["Inputs", "Ladder", "Market", "Positions", "Tables", "VenueParams", "VenueState"]
