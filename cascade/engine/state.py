"""EngineState: every array the step loop reads and mutates, built once per run, advanced chunk
by chunk, with funding payments between chunks."""

from __future__ import annotations

import dataclasses
from math import log

import numpy as np

from cascade.engine.ladder import (
    LADDER_FUNDING_WINDOW,
    funding_event_nb,
    key_runs_nb,
    rekey_runs_nb,
    side_heads_nb,
    sync_rows_nb,
)
from cascade.engine.layout import (
    COLUMNS,
    DORMANT,
    J_FBASE,
    J_LSPTR,
    J_NFEV,
    J_NREC,
    J_SSPTR,
    J_XL,
    J_XS,
    L_END,
    L_HEND,
    L_HOFF,
    L_NLADDER,
    L_NLONG,
    L_OFF,
    L_REND,
    L_ROFF,
    L_SEND,
    L_SLONG,
    L_SOFF,
    M_COMP,
    M_DEPTH_SUM,
    M_INDEX,
    M_X,
    N_ISTATE,
    N_LAYOUT,
    N_MPARAMS,
    N_MSTATE,
    N_RUN,
    N_SPOT,
    N_STATE,
    RECORD_DTYPE,
    S_DEPTHNOW,
    S_FUND,
    S_FUNDPAID_L,
    S_FUNDPAID_S,
    S_MARK,
    S_MSUM,
    S_OQL,
    S_OQS,
    S_PRICE,
    S_REF,
    SP_LAG,
)
from cascade.engine.loop import step_loop_nb
from cascade.engine.memory import lazy_empty
from cascade.engine.structs import (
    Inputs,
    Ladder,
    Market,
    Positions,
    Tables,
    VenueParams,
    VenueState,
)
from cascade.model.market import (
    I_BWIN,
    I_LAT,
    I_MARKW,
    I_PARTIAL,
    P_DEPTH,
    PARTIAL_HYPERLIQUID,
    PARTIAL_STEP_DOWN,
)

# funding events the state has room for before it grows its log
_FEV0 = 64


def _partial_bound(popu, table, rule) -> int:
    """Most partial-liquidation records the rows of one venue can produce (records are
    preallocated): Hyperliquid cuts 20 % at a time down to 100k USDC, so a position of notional N
    takes at most log(N / 100k) / log(1 / 0.8) partials; a step-down at most one per tier. The
    notional is taken at three times the start price, far beyond any path we run."""
    if rule == PARTIAL_HYPERLIQUID:
        n = popu.qty * popu.price_start * 3.0
        big = n > 1e5
        return int(np.ceil(np.log(n[big] / 1e5) / np.log(1.0 / 0.8)).sum()) + int(big.sum())
    if rule == PARTIAL_STEP_DOWN:
        b = np.searchsorted(table.cap, popu.qty * popu.price_start * 3.0)
        return int(np.minimum(b, len(table.cap) - 1).sum())
    return 0


@dataclasses.dataclass
class EngineState:
    """Everything the step loop reads and mutates, so a run can be advanced chunk by chunk.

    The populations are copied in (``qty``, ``entry``, ``wallet``, ``lp`` change during a run:
    partial liquidations, ADL, funding, conditional entries), so a population can serve several
    runs. Arrays are described in :func:`step_loop_nb`; ``outs`` is (V, T, len(COLUMNS)).

    Funding is paid lazily (:mod:`cascade.engine.ladder`): ``wallet``, ``lp`` and
    ``funding_paid`` are properties that first pay every row what it owes (O(n), only when
    funding was paid since the last time), so what they return is always current; the kernels
    work on ``_wallet``, ``_lp`` and ``_fpaid``.
    """

    lay: np.ndarray
    side: np.ndarray
    qty: np.ndarray
    entry: np.ndarray
    _wallet: np.ndarray
    _lp: np.ndarray
    status: np.ndarray
    order: np.ndarray
    tlp: np.ndarray
    stop_idx: np.ndarray
    stop_px: np.ndarray
    heap_l: np.ndarray
    heap_s: np.ndarray
    tb_lay: np.ndarray
    floor: np.ndarray
    cap: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    st: np.ndarray
    ist: np.ndarray
    mst: np.ndarray
    sst: np.ndarray
    ring: np.ndarray
    bring: np.ndarray
    pend: np.ndarray
    marks: np.ndarray
    arb: np.ndarray
    comp_ring: np.ndarray
    rec: np.ndarray
    adl_buf: np.ndarray
    adl_rank: np.ndarray
    outs: np.ndarray
    wick: np.ndarray
    mprm: np.ndarray
    spot: np.ndarray
    spot_exo: np.ndarray
    spot_noise: np.ndarray
    tables: list
    pops: list
    _fpaid: np.ndarray  # (n,) float64: funding each row paid so far, USD (+ paid)
    fep: np.ndarray  # (n,) int32: funding events each row has paid
    fev: np.ndarray  # (V, E, 2): funding events (price, rate) of each venue
    fcs: np.ndarray  # (V, 2, E + 1): cumulative wallet change per coin, longs and shorts
    runs: np.ndarray  # (V, R, N_RUN) the ladder's runs
    rkey: np.ndarray  # (V, R, 2) each run's head and offset
    xheap_l: np.ndarray
    xheap_s: np.ndarray
    xkey: np.ndarray
    cand: np.ndarray
    _synced: int = 0  # funding events (all venues) every row had paid at the last full sync

    @classmethod
    def for_venues(cls, pops, tables, n_steps: int, prm: np.ndarray, iprm: np.ndarray, funds,
                   *, mprm=None, spot=None, spot_exo=None, spot_noise=None, wick=None,
                   arb_delay: int = 0) -> EngineState:
        """Fresh state at the start price for V venues.

        pops, tables : per venue, a :class:`~cascade.model.population.Population` (all with the same
            start price) and its :class:`~cascade.rules.brackets.BracketTable`
        prm, iprm : (V, N_PARAMS), (V, N_IPARAMS); funds : V insurance funds at the start, USD
        mprm : (N_MPARAMS,) market parameters (default: no arbitrage)
        spot : (J, N_SPOT) spot venues of the index, with spot_exo and spot_noise (J, T)
        wick : (V + 1, T) multipliers of each venue's last price and of the index (default 1)
        """
        nv = len(pops)
        p0 = pops[0].price_start
        if any(p.price_start != p0 for p in pops):
            raise ValueError("every venue's population must start at the same price")
        for p in pops:
            p.reset_entries()
        n = np.array([p.n for p in pops], np.int64)
        m = np.array([len(p.stop_idx) for p in pops], np.int64)
        ent = np.array([p.n_entries for p in pops], np.int64)
        lay = np.zeros((nv, N_LAYOUT), np.int64)
        lay[:, L_OFF] = np.concatenate([[0], np.cumsum(n)[:-1]])
        lay[:, L_END] = lay[:, L_OFF] + n
        lay[:, L_NLONG] = lay[:, L_OFF] + [p.n_long for p in pops]
        lay[:, L_NLADDER] = lay[:, L_OFF] + [p.n_ladder for p in pops]
        lay[:, L_SOFF] = np.concatenate([[0], np.cumsum(m)[:-1]])
        lay[:, L_SEND] = lay[:, L_SOFF] + m
        lay[:, L_SLONG] = lay[:, L_SOFF] + [p.n_long_stops for p in pops]
        lay[:, L_HOFF] = lay[:, L_OFF]
        lay[:, L_HEND] = lay[:, L_END]
        # an entry opens and may later close; ADL may cut one position in part per liquidation
        caps = np.array([3 * (p.n + e + _partial_bound(p, tb, int(ip[I_PARTIAL]))) + 16
                         for p, e, tb, ip in zip(pops, ent, tables, iprm)], np.int64)
        lay[:, L_ROFF] = np.concatenate([[0], np.cumsum(caps)[:-1]])
        lay[:, L_REND] = lay[:, L_ROFF] + caps
        status = np.zeros(int(n.sum()), np.int8)
        for v, p in enumerate(pops):
            status[lay[v, L_OFF] + p.n_ladder: lay[v, L_END]] = DORMANT
        tb_n = np.array([len(t.cap) for t in tables], np.int64)
        tb_lay = np.zeros((nv, 2), np.int64)
        tb_lay[:, 0] = np.concatenate([[0], np.cumsum(tb_n)[:-1]])
        tb_lay[:, 1] = tb_lay[:, 0] + tb_n
        st = np.zeros((nv, N_STATE))
        ist = np.zeros((nv, N_ISTATE), np.int64)
        wmax = int(iprm[:, I_MARKW].max())
        for v, p in enumerate(pops):
            st[v, S_PRICE] = st[v, S_REF] = st[v, S_MARK] = p0
            st[v, S_FUND] = funds[v]
            st[v, S_DEPTHNOW] = prm[v, P_DEPTH]
            st[v, S_OQL] = float(p.qty[: p.n_long].sum())
            st[v, S_OQS] = float(p.qty[p.n_long: p.n_ladder].sum())
            st[v, S_MSUM] = p0 * int(iprm[v, I_MARKW])
            ist[v, J_LSPTR] = ist[v, J_SSPTR] = p.n_long_stops
        mst = np.zeros(N_MSTATE)
        mst[M_X] = mst[M_COMP] = log(p0)
        mst[M_INDEX] = p0
        mst[M_DEPTH_SUM] = float(prm[:, P_DEPTH].sum())
        spot = np.zeros((0, N_SPOT)) if spot is None else np.ascontiguousarray(spot, np.float64)
        nsp = spot.shape[0]
        maxlag = int(spot[:, SP_LAG].max()) if nsp else 0
        cat = np.concatenate
        n_all = int(n.sum())
        state = cls(
            lay=lay, side=cat([p.side for p in pops]), qty=cat([p.qty for p in pops]),
            entry=cat([p.entry for p in pops]), _wallet=cat([p.wallet for p in pops]),
            _lp=cat([p.lp for p in pops]), status=status,
            order=np.empty(n_all, np.int32),
            tlp=np.full(int(n.sum()), -np.inf),
            stop_idx=cat([p.stop_idx for p in pops]).astype(np.int32),
            stop_px=cat([p.stop_px for p in pops]).astype(np.float64),
            # np.empty maps memory lazily: only what a run touches becomes resident
            heap_l=np.empty(int(n.sum()), np.int32), heap_s=np.empty(int(n.sum()), np.int32),
            tb_lay=tb_lay, floor=cat([t.floor for t in tables]), cap=cat([t.cap for t in tables]),
            mmr=cat([t.mmr for t in tables]), cum=cat([t.cum for t in tables]),
            st=st, ist=ist, mst=mst, sst=np.zeros((nsp, 2)), ring=np.full((nv, wmax), p0),
            bring=np.zeros((nv, max(1, int(iprm[:, I_BWIN].max())))),
            pend=np.zeros((nv, int(iprm[:, I_LAT].max()) + 1)),
            marks=np.full((nv, int(iprm[:, I_LAT].max()) + 2), p0),
            arb=np.zeros((nv, int(arb_delay) + 1)),
            comp_ring=np.full(maxlag + 2, log(p0)), rec=lazy_empty(int(caps.sum()), RECORD_DTYPE),
            adl_buf=np.empty((2, int(n.sum())), np.int32),
            adl_rank=np.empty((2, int(n.sum()))), outs=np.zeros((nv, n_steps, len(COLUMNS))),
            wick=np.ones((nv + 1, n_steps)) if wick is None else wick,
            mprm=np.zeros(N_MPARAMS) if mprm is None else mprm, spot=spot,
            spot_exo=np.zeros((nsp, n_steps)) if spot_exo is None else spot_exo,
            spot_noise=np.zeros((nsp, n_steps)) if spot_noise is None else spot_noise,
            tables=list(tables), pops=list(pops), _fpaid=np.zeros(n_all),
            fep=np.zeros(n_all, np.int32), fev=np.zeros((nv, _FEV0, 2)),
            fcs=np.zeros((nv, 2, _FEV0 + 1)),
            runs=np.zeros((nv, 2 * int(tb_n.max()), N_RUN), np.int64),
            rkey=np.zeros((nv, 2 * int(tb_n.max()), 2)),
            xheap_l=np.empty(n_all, np.int32), xheap_s=np.empty(n_all, np.int32),
            xkey=np.empty(n_all), cand=np.empty(n_all, np.int32))
        for v, p in enumerate(pops):
            state._key_runs(v, np.arange(p.n_ladder, dtype=np.int64), p.bracket)
        return state

    def advance(self, exo, noise, prm, iprm, t_begin: int, t_end: int) -> None:
        """Run steps ``[t_begin, t_end)``. ``exo``: (T,) or (V, T) USD per step; ``noise``: (T,)
        log increments; ``prm``/``iprm``: one venue's vectors or (V, ...) arrays."""
        lay = self.lay
        step_loop_nb(
            t_begin, t_end, lay, self.tb_lay,
            Positions(self.side, self.qty, self.entry, self._wallet, self._lp, self.status,
                      self.tlp, self.fep, self._fpaid),
            Ladder(lay[:, L_NLONG] - lay[:, L_OFF], lay[:, L_NLADDER] - lay[:, L_OFF],
                   self.order, self.stop_idx, self.stop_px, self.heap_l, self.heap_s,
                   self.runs, self.rkey, self.xheap_l, self.xheap_s, self.xkey, self.cand),
            Tables(self.floor, self.cap, self.mmr, self.cum),
            VenueParams(np.atleast_2d(prm), np.atleast_2d(iprm)),
            VenueState(self.st, self.ist, self.rec, self.adl_buf, self.adl_rank, self.ring,
                       self.bring, self.pend, self.marks, self.arb, self.fev, self.fcs),
            Market(self.mprm, self.spot, self.mst, self.sst, self.comp_ring),
            Inputs(np.atleast_2d(exo), noise, self.wick, self.spot_exo, self.spot_noise),
            self.outs)

    # ------------------------------------------------------------------------------ funding
    def _venue_views(self, v: int):
        """(Positions, Ladder, Tables, VenueState) views of venue ``v``, as the step loop builds
        them."""
        a, b = int(self.lay[v, L_OFF]), int(self.lay[v, L_END])
        h0, h1 = int(self.lay[v, L_HOFF]), int(self.lay[v, L_HEND])
        s0, s1 = int(self.lay[v, L_SOFF]), int(self.lay[v, L_SEND])
        ta, tb = int(self.tb_lay[v, 0]), int(self.tb_lay[v, 1])
        pos = Positions(self.side[a:b], self.qty[a:b], self.entry[a:b], self._wallet[a:b],
                        self._lp[a:b], self.status[a:b], self.tlp[a:b], self.fep[a:b],
                        self._fpaid[a:b])
        lad = Ladder(int(self.lay[v, L_NLONG]) - a, int(self.lay[v, L_NLADDER]) - a,
                     self.order[a:b], self.stop_idx[s0:s1], self.stop_px[s0:s1],
                     self.heap_l[h0:h1], self.heap_s[h0:h1], self.runs[v], self.rkey[v],
                     self.xheap_l[h0:h1], self.xheap_s[h0:h1], self.xkey[a:b], self.cand[a:b])
        tab = Tables(self.floor[ta:tb], self.cap[ta:tb], self.mmr[ta:tb], self.cum[ta:tb])
        r0, r1 = int(self.lay[v, L_ROFF]), int(self.lay[v, L_REND])
        vs = VenueState(self.st[v], self.ist[v], self.rec[r0:r1], self.adl_buf[:, a:b],
                        self.adl_rank[:, a:b], self.ring[v], self.bring[v], self.pend[v],
                        self.marks[v], self.arb[v], self.fev[v], self.fcs[v])
        return pos, lad, tab, vs

    def _window(self, v: int) -> float:
        """Cumulative funding per coin, USD, over which venue ``v``'s runs stay exact."""
        return LADDER_FUNDING_WINDOW * float(self.pops[v].price_start)

    def _key_runs(self, v: int, rows: np.ndarray, bracket: np.ndarray) -> None:
        """Lay out venue ``v``'s ladder afresh from ``rows`` (venue-local int64, the ladder rows
        still open, sorted by side long first, then liquidation price, then row) whose bracket
        at their current liquidation price is ``bracket`` (indexed by row); every row has paid
        its funding. The runs' offsets count from the current funding event."""
        pos, lad, tab, vs = self._venue_views(v)
        nxl, nxs = key_runs_nb(rows, pos.side, pos.qty, pos.lp, bracket, tab, lad,
                               self._window(v))
        self.ist[v, J_XL], self.ist[v, J_XS] = nxl, nxs
        self.ist[v, J_FBASE] = self.ist[v, J_NFEV]
        side_heads_nb(lad, tab, vs)

    def _rekey(self, v: int) -> None:
        """Key venue ``v``'s runs again at the current funding (the cumulative funding left the
        window the strays were chosen for): :func:`cascade.engine.ladder.rekey_runs_nb`."""
        rekey_runs_nb(*self._venue_views(v), self._window(v))

    def _sync_venue(self, v: int) -> None:
        pos, lad, tab, vs = self._venue_views(v)
        sync_rows_nb(pos, tab, vs.fev, int(vs.ist[J_NFEV]))

    def sync(self) -> None:
        """Pay every row the funding it owes (rows are otherwise paid when the engine touches
        them), so ``_wallet``, ``_lp`` and ``_fpaid`` are current. O(n) when funding was paid
        since the last call, else free."""
        total = int(self.ist[:, J_NFEV].sum())
        if total == self._synced:
            return
        for v in range(self.lay.shape[0]):
            self._sync_venue(v)
        self._synced = total

    @property
    def wallet(self) -> np.ndarray:
        """(n,) float64 wallets now (funding paid), USD."""
        self.sync()
        return self._wallet

    @property
    def lp(self) -> np.ndarray:
        """(n,) float64 liquidation prices now (funding paid), USD."""
        self.sync()
        return self._lp

    @property
    def funding_paid(self) -> np.ndarray:
        """(n,) float64 funding each row paid so far, USD (+ paid)."""
        self.sync()
        return self._fpaid

    def pay_funding(self, v: int, rate: float, price: float) -> dict:
        """Pay funding on venue ``v``: every open position pays ``s * qty * price * rate`` USD
        out of its wallet (``rate`` > 0: longs pay) and its liquidation price moves.

        Nothing is rewritten per position: the event joins the venue's log and the per-side
        cumulative wallet change per coin, which moves every run's offset; the heaps of
        re-queued rows and of strays are paid now and re-heaped (O(heaps + strays)); every
        other row pays when the engine next touches it (:func:`cascade.engine.ladder.sync_nb`).
        A triggered row still holds its position until its order fills and pays; a conditional
        entry triggered but not yet filled holds none and pays nothing. If the cumulative
        funding leaves the window the runs were keyed for, they are keyed again.

        The population is one side of each trade only: what the modelled longs pay and the
        modelled shorts receive differ by the funding of the counterparties we do not model
        (``to_others``), so the three sum to zero. Returns them in USD (the sides' open sizes,
        kept as running totals, times ``price * rate``)."""
        nev = int(self.ist[v, J_NFEV])
        if nev + 1 > self.fev.shape[1]:
            grow = max(2 * self.fev.shape[1], nev + 1)
            fev = np.zeros((self.fev.shape[0], grow, 2))
            fev[:, :nev] = self.fev[:, :nev]
            fcs = np.zeros((self.fcs.shape[0], 2, grow + 1))
            fcs[:, :, :nev + 1] = self.fcs[:, :, :nev + 1]
            self.fev, self.fcs = fev, fcs
        self.fev[v, nev, 0] = price
        self.fev[v, nev, 1] = rate
        self.fcs[v, 0, nev + 1] = self.fcs[v, 0, nev] - price * rate
        self.fcs[v, 1, nev + 1] = self.fcs[v, 1, nev] + price * rate
        self.ist[v, J_NFEV] = nev + 1
        paid_l = float(self.st[v, S_OQL]) * price * rate
        paid_s = -float(self.st[v, S_OQS]) * price * rate
        self.st[v, S_FUNDPAID_L] += paid_l
        self.st[v, S_FUNDPAID_S] += paid_s
        funding_event_nb(*self._venue_views(v))
        base = int(self.ist[v, J_FBASE])
        moved = np.abs(self.fcs[v, :, nev + 1] - self.fcs[v, :, base]).max()
        if moved > self._window(v):
            self._rekey(v)
        return {"longs_paid_usd": paid_l, "shorts_paid_usd": paid_s,
                "to_others_usd": -(paid_l + paid_s)}

    # ------------------------------------------------------------------------------ results
    @property
    def out(self) -> np.ndarray:
        """(T, len(COLUMNS)) per-step results of the first venue."""
        return self.outs[0]

    def venue_records(self, v: int) -> np.ndarray:
        """RECORD_DTYPE (k,) records of venue ``v`` in the order written, ``pos`` venue-local."""
        r0 = int(self.lay[v, L_ROFF])
        return self.rec[r0: r0 + int(self.ist[v, J_NREC])]

    @property
    def records(self) -> np.ndarray:
        """RECORD_DTYPE (k,): every venue's records (venue by venue, each in the order written),
        ``pos`` indexing the concatenated rows and ``venue`` set."""
        nv = self.lay.shape[0]
        return concat_records([self.venue_records(v) for v in range(nv)],
                              [int(self.lay[v, L_OFF]) for v in range(nv)])

    def write_back_entries(self) -> None:
        """Copy the opened conditional entries' entry, wallet and liquidation price into each
        venue's population (rows ``[n_ladder, n)``), as results and plots read them there."""
        for v, p in enumerate(self.pops):
            a = int(self.lay[v, L_OFF])
            if p.n_entries:
                sl = slice(a + p.n_ladder, a + p.n)
                p.entry[p.n_ladder:] = self.entry[sl]
                p.wallet[p.n_ladder:] = self.wallet[sl]
                p.lp[p.n_ladder:] = self.lp[sl]


def concat_records(views: list, offsets: list) -> np.ndarray:
    """RECORD_DTYPE (k,): the venues' records (``views``, ``pos`` venue-local) one venue after the
    other, ``pos`` shifted by the venue's row offset and ``venue`` set. Written in place: one
    copy of the records, not two."""
    out = np.empty(sum(r.shape[0] for r in views), RECORD_DTYPE)
    a = 0
    for v, (r, off) in enumerate(zip(views, offsets)):
        b = a + r.shape[0]
        out[a:b] = r
        out["pos"][a:b] += off
        out["venue"][a:b] = v
        a = b
    return out
