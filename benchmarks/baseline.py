"""A naive, vectorized NumPy engine: the reference the ladder engine is benchmarked against.

It implements the same model as :func:`cascade.engine.step_loop_nb` (the price model of
:mod:`cascade.model.market`, the same fixed-point iteration of triggers and impact, the same mark window,
the same liquidation and stop rules, the same settlement into the insurance fund) but it does
NOT use the sorted ladder: at every step and every iteration it scans ALL positions with numpy
boolean masks (``open & (lp >= mark)`` and so on). Cost per iteration: O(positions).

Ordering. When several positions trigger in the same iteration the engine records them in ladder
order: long liquidations from the highest liquidation price down, short liquidations from the
lowest up, then long stops from the highest stop price down, short stops from the lowest up. The
baseline takes the rows its masks select in that same order, so the records (and their sum of
flows) come out identically; sums are accumulated left to right (``np.cumsum``) as the engine's
scalar loops do, so the price path normally matches to the last bit.

The price model itself (the impact law G and the mean impact over a fill) is taken from
:mod:`cascade.engine` (``impact_nb``, ``mean_impact_nb``: scalar functions, called from Python
here), so that both sides price every step with the very same formula; everything else, the
per-step state, the iteration, the scans, the triggers and the settlement, is written here.

Use :func:`run_baseline` (prepared inputs, like :meth:`cascade.engine.EngineState.advance`) or
:func:`simulate_baseline` (a scenario, like :func:`cascade.runner.simulate`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cascade.engine import (
    C_BAD,
    C_DEPTH,
    C_DIP,
    C_EXO,
    C_FILL,
    C_FORCED,
    C_FUND,
    C_ITER,
    C_LAST,
    C_LIQL,
    C_LIQN,
    C_LIQS,
    C_MARK,
    C_OI,
    C_STOP,
    COLUMNS,
    KIND_LIQ,
    KIND_STOP,
    LIQUIDATED,
    OPEN,
    RECORD_DTYPE,
    STOPPED,
    TRIGGERED,
    impact_nb,
    mean_impact_nb,
)
from cascade.model.market import (
    I_LAT,
    I_MARKW,
    I_MAXIT,
    P_ALPHA,
    P_DECAY,
    P_DEPTH,
    P_DIPCAP,
    P_DIPRATE,
    P_DIPTHR,
    P_FEE,
    P_FEEDBACK,
    P_FLOOR,
    P_LIQ_EQ,
    P_LIQSENS,
    P_LIQTHR,
    P_MEMDECAY,
    P_NEWSPHI,
    P_PHI,
    P_REFDECAY,
    P_STEP,
    P_VOLSENS,
)

__all__ = ["BaselineResult", "NaiveEngine", "prepare_inputs", "run_baseline", "simulate_baseline"]


def _seqsum(start: float, values: np.ndarray) -> float:
    """``start + v[0] + v[1] + ...`` added left to right (numpy's ``sum`` is pairwise)."""
    if values.size == 0:
        return start
    return float(np.cumsum(np.concatenate(([start], values)))[-1])


@dataclasses.dataclass
class BaselineResult:
    """What :func:`run_baseline` returns.

    out : float64 (n_steps, len(COLUMNS)) per-step outputs, columns ``cascade.engine.COLUMNS``
    records : RECORD_DTYPE (k,) one row per triggered position, in trigger order
    status : int8 (n,) final status of every population row (OPEN/TRIGGERED/LIQUIDATED/STOPPED)
    iterations : total scan iterations over all steps (each one scanned every position)
    steps_run : steps actually simulated
    """

    out: np.ndarray
    records: np.ndarray
    status: np.ndarray
    iterations: int
    steps_run: int

    @property
    def liquidated(self) -> np.ndarray:
        """Population rows liquidated (settled), sorted."""
        r = self.records
        return np.sort(r["pos"][(r["kind"] == KIND_LIQ) & ~np.isnan(r["fill_price"])])


class NaiveEngine:
    """The step loop, with full boolean-mask scans instead of ladder pointers.

    Mirrors :class:`cascade.engine.EngineState`: build it, then :meth:`advance` over step ranges.
    """

    def __init__(self, popu, n_steps: int, prm: np.ndarray, iprm: np.ndarray, fund_usd: float):
        if popu.n_entries:
            raise ValueError("the baseline does not model conditional entries "
                             "(population.entry_order_share must be 0)")
        self.qty = popu.qty
        self.side = popu.side
        self.entry = popu.entry
        self.wallet = popu.wallet
        nl = popu.n_long
        self.n_long = nl
        self.lp_long = popu.lp[:nl]
        self.lp_short = popu.lp[nl:]
        ls = popu.n_long_stops
        self.stop_idx_long = popu.stop_idx[:ls].astype(np.int64)
        self.stop_idx_short = popu.stop_idx[ls:].astype(np.int64)
        self.stop_px_long = popu.stop_px[:ls]
        self.stop_px_short = popu.stop_px[ls:]
        n = popu.n
        self.is_open = np.ones(n, bool)
        self.open_long = self.is_open[:nl]   # views: updated with is_open
        self.open_short = self.is_open[nl:]
        self.status = np.full(n, OPEN, np.int8)
        self.rec = np.empty(n, RECORD_DTYPE)
        self.nrec = 0
        self.fptr = 0
        self.out = np.zeros((n_steps, len(COLUMNS)))
        self.iterations = 0
        self.steps_run = 0

        p = [float(v) for v in prm]
        self.alpha, self.phi, self.decay = p[P_ALPHA], p[P_PHI], p[P_DECAY]
        self.depth0, self.memd, self.refd = p[P_DEPTH], p[P_MEMDECAY], p[P_REFDECAY]
        self.fee_rate, self.floor = p[P_FEE], p[P_FLOOR]
        self.volsens, self.liqsens = p[P_VOLSENS], p[P_LIQSENS]
        self.liqthr, self.newsphi = p[P_LIQTHR], p[P_NEWSPHI]
        self.step_s = p[P_STEP]
        self.diprate, self.dipthr, self.dipcap = p[P_DIPRATE], p[P_DIPTHR], p[P_DIPCAP]
        self.feedback = p[P_FEEDBACK] != 0.0
        self.liq_on_equal = p[P_LIQ_EQ] != 0.0
        self.w = int(iprm[I_MARKW])
        self.lat = int(iprm[I_LAT])
        self.maxit = int(iprm[I_MAXIT])

        # state, as in EngineState.initial
        p0 = float(popu.price_start)
        self.x = math.log(p0)
        self.perm = 0.0
        self.trans = 0.0
        self.y = 0.0
        self.price = p0
        self.ref = p0
        self.rv = 0.0
        self.lf = 0.0
        self.fund = float(fund_usd)
        self.bad = 0.0
        self.oql = float(popu.qty[:nl].sum()) if nl else 0.0
        self.oqs = float(popu.qty[nl:].sum())
        self.ring = [p0] * self.w
        self.ri = 0
        self.msum = p0 * self.w
        self.pend = [0.0] * (self.lat + 1)

    # ------------------------------------------------------------------------------------------
    def _record(self, rows: np.ndarray, kind: int, t: int, price: float) -> None:
        k = rows.size
        if k == 0:
            return
        a, b = self.nrec, self.nrec + k
        rec = self.rec
        rec["pos"][a:b] = rows
        rec["kind"][a:b] = kind
        rec["trigger_step"][a:b] = t
        rec["exec_step"][a:b] = t + self.lat
        rec["trigger_price"][a:b] = price
        rec["fill_price"][a:b] = np.nan
        rec["fund_delta"][a:b] = 0.0
        rec["fee"][a:b] = 0.0
        self.nrec = b
        self.is_open[rows] = False
        self.status[rows] = TRIGGERED

    def _scan(self, t: int, mark: float, last: float) -> float:
        """Trigger every open position the mark (liquidations) or last price (stops) has
        crossed, by scanning all of them. Returns the signed USD flow of the new orders."""
        qty = self.qty
        # long liquidations: lp >= mark (strictly > when liquidate_on_equal is off), top down
        crossed = (self.lp_long >= mark) if self.liq_on_equal else (self.lp_long > mark)
        ll = np.flatnonzero(self.open_long & crossed)[::-1]
        self._record(ll, KIND_LIQ, t, mark)
        # short liquidations: lp <= mark, bottom up
        crossed = (self.lp_short <= mark) if self.liq_on_equal else (self.lp_short < mark)
        sl = np.flatnonzero(self.open_short & crossed) + self.n_long
        self._record(sl, KIND_LIQ, t, mark)
        # long stops on the last price: stop >= last, highest stop first
        k = np.flatnonzero(self.is_open[self.stop_idx_long] & (self.stop_px_long >= last))
        lsr = self.stop_idx_long[k[::-1]]
        self._record(lsr, KIND_STOP, t, last)
        # short stops: stop <= last, lowest first
        k = np.flatnonzero(self.is_open[self.stop_idx_short] & (self.stop_px_short <= last))
        ssr = self.stop_idx_short[k]
        self._record(ssr, KIND_STOP, t, last)
        if ll.size + sl.size + lsr.size + ssr.size == 0:
            return 0.0
        flows = np.concatenate([-(qty[ll] * last), qty[sl] * last, -(qty[lsr] * last),
                                qty[ssr] * last])
        return _seqsum(0.0, flows)

    def _settle(self, t: int, fill: float):
        """Close every record due at step t at ``fill``. Returns (long liq USD, short liq USD,
        stop USD, number of liquidations)."""
        r0 = self.fptr
        due = self.rec["exec_step"][r0:self.nrec]
        r1 = r0 + int(np.searchsorted(due, t, side="right"))  # exec steps never decrease
        if r1 == r0:
            return 0.0, 0.0, 0.0, 0
        rec = self.rec[r0:r1]
        i = rec["pos"].astype(np.int64)
        is_liq = rec["kind"] == KIND_LIQ
        s = self.side[i]
        q = self.qty[i]
        equity = self.wallet[i] + s * q * (fill - self.entry[i])
        fee = np.where(is_liq, np.minimum(self.fee_rate * q * fill, np.maximum(equity, 0.0)), 0.0)
        delta = np.where(is_liq, equity, np.minimum(equity, 0.0))
        self.status[i] = np.where(is_liq, LIQUIDATED, STOPPED).astype(np.int8)
        rec["fill_price"] = fill
        rec["fund_delta"] = delta
        rec["fee"] = fee
        # insurance fund: what it cannot pay becomes bad debt (order matters once it hits zero)
        path = np.cumsum(np.concatenate(([self.fund], delta)))
        if path.min() >= 0.0:
            self.fund = float(path[-1])
        else:
            fund, bad = self.fund, self.bad
            for d in delta.tolist():
                fund += d
                if fund < 0.0:
                    bad += -fund
                    fund = 0.0
            self.fund, self.bad = fund, bad
        long = s > 0
        self.oql = _seqsum(self.oql, -q[long])
        self.oqs = _seqsum(self.oqs, -q[~long])
        usd = q * fill
        self.fptr = r1
        return (_seqsum(0.0, usd[is_liq & long]), _seqsum(0.0, usd[is_liq & ~long]),
                _seqsum(0.0, usd[~is_liq]), int(np.count_nonzero(is_liq)))

    def step(self, t: int, exo_t: float, noise_t: float) -> None:
        """One step: price before orders, fixed-point iteration of triggers and impact, fills."""
        alpha, feedback, w, lat = self.alpha, self.feedback, self.w, self.lat
        p_prev = self.price
        mult = 1.0 / (1.0 + self.volsens * self.rv / 0.1
                      + self.liqsens * max(self.lf - self.liqthr, 0.0))
        mult = max(mult, self.floor)
        depth = self.depth0 * mult
        self.x += noise_t
        self.trans *= self.decay
        self.y *= self.decay
        y = self.y
        p_pre = math.exp(self.x + self.perm + self.trans)
        ref = self.ref
        dd = (ref - p_pre) / ref * 100.0 - self.dipthr
        du = (p_pre - ref) / ref * 100.0 - self.dipthr
        dip = 0.0
        if dd > 0.0:  # counter-trend orders, in proportion to the depth the book has now
            dip = min(self.diprate * dd, self.dipcap) * mult
        elif du > 0.0:
            dip = -min(self.diprate * du, self.dipcap) * mult
        npend = len(self.pend)
        slot = t % npend
        forced = self.pend[slot]
        self.pend[slot] = 0.0
        ext = exo_t + dip
        ri = self.ri
        old = self.ring[ri]
        msum = self.msum
        it = 0
        while True:
            imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
            p = p_pre * math.exp(imp)
            mark = (msum - old + p) / w
            before = self.nrec
            new_flow = self._scan(t, mark, p)
            it += 1
            if self.nrec == before:
                break
            if lat == 0:
                forced += new_flow
            else:
                self.pend[(t + lat) % npend] += new_flow
            if it >= self.maxit or not feedback or lat > 0:
                imp = impact_nb(y, ext + forced if feedback else ext, depth, alpha)
                p = p_pre * math.exp(imp)
                mark = (msum - old + p) / w
                break
        self.iterations += it
        net = ext + forced if feedback else ext
        fill = p_pre * math.exp(mean_impact_nb(y, net, depth, alpha, imp))
        liq_l, liq_s, stop_usd, nliq = self._settle(t, fill)

        phi = self.phi  # the news flow's share of the net flow keeps the news permanent share
        if exo_t * net > 0.0:
            phi += (self.newsphi - self.phi) * min(exo_t / net, 1.0)
        self.perm += phi * imp
        self.trans += (1.0 - phi) * imp
        self.y = y + net
        self.price = p
        self.ring[ri] = p
        msum += p - old
        ri += 1
        if ri == w:
            ri = 0
            msum = 0.0
            for v in self.ring:
                msum += v
        self.ri = ri
        self.msum = msum
        memd = self.memd
        self.rv = (memd * self.rv
                   + (1.0 - memd) * abs(math.log(p / p_prev)) * 100.0 / math.sqrt(self.step_s))
        if feedback:
            self.lf = memd * self.lf + (1.0 - memd) * abs(forced) / self.depth0 / self.step_s
        self.ref = self.refd * self.ref + (1.0 - self.refd) * p
        o = self.out[t]
        o[C_LAST] = p
        o[C_MARK] = mark
        o[C_LIQL] = liq_l
        o[C_LIQS] = liq_s
        o[C_LIQN] = nliq
        o[C_STOP] = stop_usd
        o[C_EXO] = exo_t
        o[C_DIP] = dip
        o[C_FORCED] = forced
        o[C_OI] = (self.oql + self.oqs) * mark
        o[C_DEPTH] = depth
        o[C_FUND] = self.fund
        o[C_BAD] = self.bad
        o[C_ITER] = it
        o[C_FILL] = fill
        self.steps_run = t + 1

    def advance(self, exo: np.ndarray, noise: np.ndarray, t_begin: int, t_end: int) -> None:
        exo_l = exo[t_begin:t_end].tolist()
        noise_l = noise[t_begin:t_end].tolist()
        for k, t in enumerate(range(t_begin, t_end)):
            self.step(t, exo_l[k], noise_l[k])

    def result(self) -> BaselineResult:
        return BaselineResult(out=self.out, records=self.rec[: self.nrec].copy(),
                              status=self.status.copy(), iterations=self.iterations,
                              steps_run=self.steps_run)


def prepare_inputs(sc, popu):
    """(exo, noise, prm, iprm, fund_usd) for a scenario, exactly as :func:`cascade.runner.simulate`
    builds them."""
    from cascade.model.market import background_noise, exogenous_flow, parameters
    from cascade.model.population import venue_tables

    _, rules = venue_tables(sc)
    exo = exogenous_flow(sc)
    noise = background_noise(sc, sc.scenario.seed)
    prm, iprm = parameters(sc, rules.liquidation_fee_rate, sc.engine.feedback,
                           rules.liquidate_on_equal)
    return exo, noise, prm, iprm, float(sc.venue.insurance_fund_usd)


def run_baseline(popu, exo, noise, prm, iprm, fund_usd: float, n_steps: int | None = None,
                 ) -> BaselineResult:
    """Run the naive engine over ``n_steps`` (default: all of ``exo``)."""
    n_total = exo.shape[0]
    n_steps = n_total if n_steps is None else min(int(n_steps), n_total)
    eng = NaiveEngine(popu, n_total, prm, iprm, fund_usd)
    eng.advance(exo, noise, 0, n_steps)
    return eng.result()


def simulate_baseline(sc, population=None) -> tuple[BaselineResult, object]:
    """Build (or take) the population of ``sc`` and run the naive engine over the whole window.
    Returns (result, population)."""
    from cascade.model.population import build_population

    popu = population if population is not None else build_population(sc)
    return run_baseline(popu, *prepare_inputs(sc, popu)), popu
