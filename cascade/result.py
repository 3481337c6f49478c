"""Run results: per-step frame, per-position records, summary, plots and files on disk."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

import cascade
from cascade.analysis.branching import branching_column, branching_summary
from cascade.engine import (
    COLUMNS,
    KIND_BACKSTOP,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_PARTIAL,
    KIND_STOP,
    L_OFF,
    S_BAD,
    S_FREAL,
    S_FUND,
    S_FUNDPAID_L,
    S_FUNDPAID_S,
    S_INV,
    S_INVCOST,
    S_OFFCASH,
    S_OFFCOIN,
    S_OFFLOAD,
    S_TAKEOVER,
    EngineState,
)
from cascade.engine.state import concat_records
from cascade.io.files import write_atomic
from cascade.model.market import step_times


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the cascade checkout ('+dirty' if modified), or 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, text=True, capture_output=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _max_window_sum(x: np.ndarray, window: int) -> float:
    if x.size == 0:
        return 0.0
    c = np.concatenate([[0.0], np.cumsum(x)])
    w = min(window, x.size)
    return float(np.max(c[w:] - c[:-w]))


def max_drawdown_pct(price: np.ndarray, p0: float) -> float:
    """Largest fall from a running peak (the start price included), in percent."""
    if price.size == 0:
        return 0.0
    peak = np.maximum.accumulate(np.concatenate([[p0], price]))[1:]
    return float(np.max((1.0 - price / peak) * 100.0))


@dataclasses.dataclass
class Result:
    """What a run produced.

    steps : DataFrame, one row per step, UTC DatetimeIndex (step start), columns ``COLUMNS``
        (USD unless the name says otherwise; flows signed, + buy)
    records : structured array (k,) of :data:`cascade.engine.RECORD_DTYPE`, one row per
        triggered position in trigger order (``pos`` indexes the population rows; built on
        first use from ``record_source``)
    population : the :class:`~cascade.model.population.Population` the run used
    summary : dict of headline figures (see README "Outputs")
    liq_map : DataFrame, notional liquidated at each price level before the shock (built on
        first use, from ``liq_map_fn``)
    positions : DataFrame, every position's final state (positions.parquet; built on first use
        from ``position_table``, a :class:`cascade.outputs.PositionTable`)
    heatmap : DataFrame or None, the liquidation heatmap recorded from the live ladder when the
        run asked for it (``cascade.run(..., heatmap=True)``; columns in
        :mod:`cascade.analysis.heatmap`)

    The per-position frames cost O(positions) to build (seconds at 1e7 rows), so a run builds
    them only when they are read or written, from the engine's final arrays.
    """

    scenario: object
    steps: pd.DataFrame
    record_source: object  # a RecordSource: the run's records, concatenated on first use
    population: object
    summary: dict
    liq_map_fn: object = dataclasses.field(default=None, repr=False)
    reference: pd.DataFrame | None = None
    populations: list | None = None  # one per venue (the first is ``population``)
    heatmap: pd.DataFrame | None = None
    position_table: object = dataclasses.field(default=None, repr=False)
    _liq_map: pd.DataFrame | None = dataclasses.field(default=None, init=False, repr=False)
    _positions: pd.DataFrame | None = dataclasses.field(default=None, init=False, repr=False)
    _records: np.ndarray | None = dataclasses.field(default=None, init=False, repr=False)

    @property
    def records(self) -> np.ndarray:
        """RECORD_DTYPE (k,): every venue's records (venue by venue, each in trigger order),
        ``pos`` indexing the population rows, ``venue`` set; built on first use."""
        if self._records is None and self.record_source is not None:
            self._records = self.record_source.records()
        return self._records

    @records.setter
    def records(self, rec: np.ndarray) -> None:
        self._records = rec

    @property
    def liq_map(self) -> pd.DataFrame:
        """Notional liquidated at each price level before the shock (DataFrame indexed by price,
        columns long_usd, short_usd), built on first use."""
        if self._liq_map is None and self.liq_map_fn is not None:
            self._liq_map = self.liq_map_fn()
        return self._liq_map

    @liq_map.setter
    def liq_map(self, frame: pd.DataFrame) -> None:
        self._liq_map = frame

    @property
    def positions(self) -> pd.DataFrame | None:
        """Every position's final state (columns :data:`cascade.outputs.POSITION_COLUMNS`),
        built on first use."""
        if self._positions is None and self.position_table is not None:
            self._positions = self.position_table.frame()
        return self._positions

    @positions.setter
    def positions(self, frame: pd.DataFrame) -> None:
        self._positions = frame

    @classmethod
    def assemble(cls, sc, specs, pops, state: EngineState, liquidation_map, *,
                 oi_start: list, funding: list):
        """Result of a run of V venues (``specs``, ``pops``: one each; ``oi_start``: each
        venue's open interest at the start, USD; ``funding``: the payments made).

        A scenario written with ``[[venues]]`` gets the market's columns (prices, mark, index,
        fill and funding rate of the first venue; sums of flows, liquidations, funds and counts;
        the most iterations) and each venue's columns prefixed ``<venue>.``, and its summary a
        ``venues`` mapping with each venue's figures and the funding payments made. The
        single-venue shorthand keeps the columns and summary a one-venue run always had."""
        if not sc.venues:
            return cls._assemble_shorthand(sc, specs[0], pops[0], state, liquidation_map,
                                           oi_start=oi_start[0])
        frames = [_frame(state.outs[v], sc) for v in range(len(specs))]
        first = {"last_price", "mark_price", "fill_price", "index_price", "funding_rate"}
        cols = {}  # built whole, then framed once (column by column fragments the frame)
        for col in COLUMNS:
            if col in first:
                cols[col] = frames[0][col]
            elif col == "iterations":
                cols[col] = np.max([f[col].to_numpy() for f in frames], axis=0)
            else:
                cols[col] = sum(f[col] for f in frames)
        for spec, f in zip(specs, frames):
            for col in COLUMNS:
                cols[f"{spec.name}.{col}"] = f[col]
        steps = pd.DataFrame(cols, index=frames[0].index)
        steps["branching_ratio"] = branching_column(steps)
        src = RecordSource(state)
        summary = _summary(sc, steps, src.fields(), pops, oi_start=float(sum(oi_start)))
        fund0 = float(sum(s.insurance_fund_usd for s in specs))
        _fund_summary(summary, steps, fund0, state.st.sum(axis=0))
        venues = {}
        for v, (spec, f) in enumerate(zip(specs, frames)):
            one = _summary(sc, f, src.views[v], [pops[v]], oi_start=oi_start[v])
            _fund_summary(one, f, float(spec.insurance_fund_usd), state.st[v])
            one.update({"rules": spec.rules, "symbol": spec.symbol,
                        "bracket_table_from": str(spec.table.valid_from),
                        "population_share": spec.population_share,
                        "depth_share": spec.depth_share})
            venues[spec.name] = {k: one[k] for k in VENUE_KEYS + (
                "rules", "symbol", "bracket_table_from", "population_share", "depth_share")}
        summary.update({"venue": ",".join(s.name for s in specs),
                        "symbol": specs[0].symbol, "venues": venues, "funding_payments": funding})
        return cls(scenario=sc, steps=steps, record_source=src, population=pops[0],
                   liq_map_fn=functools.partial(_liq_map, liquidation_map, list(pops)),
                   summary=summary, populations=list(pops),
                   position_table=_positions(state, pops, [s.name for s in specs], summary))

    @classmethod
    def _assemble_shorthand(cls, sc, spec, popu, state: EngineState, liquidation_map, *,
                            oi_start: float):
        steps = _frame(state.outs[0], sc)
        steps["branching_ratio"] = branching_column(steps)
        src = RecordSource(state)
        summary = _summary(sc, steps, src.fields(), [popu], oi_start=oi_start)
        summary.update({"venue": spec.name, "symbol": spec.symbol,
                        "bracket_table_from": str(spec.table.valid_from)})
        _fund_summary(summary, steps, float(spec.insurance_fund_usd), state.st[0])
        return cls(scenario=sc, steps=steps, record_source=src, population=popu,
                   liq_map_fn=functools.partial(_liq_map, liquidation_map, [popu]),
                   summary=summary, populations=[popu],
                   position_table=_positions(state, [popu], [""], summary))

    # ------------------------------------------------------------------------------------------
    def add_amplification(self, base: Result) -> None:
        """Record the drawdown of the same scenario and seed with feedback off."""
        dd0 = base.summary["max_drawdown_pct"]
        dd1 = self.summary["max_drawdown_pct"]
        self.summary["drawdown_no_feedback_pct"] = dd0
        self.summary["liquidated_no_feedback_usd"] = base.summary["liquidated_notional_usd"]
        self.summary["amplification"] = dd1 / dd0 if dd0 > 0 else None

    def add_reference(self, klines: pd.DataFrame, source: str = "") -> None:
        """Compare with a real kline path (:func:`cascade.io.klines.read_klines` frame).

        Adds ``path_rmse_pct``: the root mean square of log(simulated / real) close price over the
        minutes both cover, in percent, and ``reference_minutes``; keeps the candles for the plot.
        """
        from cascade.errors import CascadeError
        from cascade.io.klines import path_log_diff, path_rmse_pct

        minutes = path_log_diff(self.steps["last_price"], klines).size
        if minutes == 0:
            raise CascadeError(f"--reference {source}: expected candles inside the scenario window "
                               f"{self.steps.index[0]} to {self.steps.index[-1]}, got "
                               f"{klines.index[0]} to {klines.index[-1]}")
        self.summary["path_rmse_pct"] = path_rmse_pct(self.steps["last_price"], klines)
        self.summary["reference_minutes"] = minutes
        self.reference = klines

    @property
    def liquidations(self) -> pd.DataFrame:
        """One row per record: liquidations (whole, partial, backstop), stops, ADL closes and
        conditional entries (a position opened during the run has an entry row and, if it was
        closed, a liquidation row); columns :data:`cascade.outputs.LIQUIDATION_COLUMNS`."""
        from cascade.outputs import liquidations_frame

        src = self.position_table if self._positions is None else self._positions
        if src is None:
            src = self.positions
        return liquidations_frame(self.records, src, step_times(self.scenario))

    def table(self) -> str:
        """A short human-readable summary table."""
        from cascade.plots.waterfall import format_usd

        s = self.summary
        rows = [
            ("scenario", f"{s['scenario']} (seed {s['seed']}, {s['positions']:,} positions"
                         + (f"; {s['positions_note']})" if s.get("positions_note") else ")")),
            ("price", f"{s['price_start']:,.1f} -> min {s['price_min']:,.1f} at "
                      f"{s['price_min_time']} -> end {s['price_end']:,.1f}"),
            ("max drawdown", f"{s['max_drawdown_pct']:.2f}%"),
            ("liquidated", f"{format_usd(s['liquidated_notional_usd'])} "
                           f"(long {format_usd(s['liquidated_long_usd'])}, short "
                           f"{format_usd(s['liquidated_short_usd'])}), "
                           f"{s['accounts_liquidated']:,} accounts"),
            ("peak 1 min / 45 min", f"{format_usd(s['max_liquidation_1m_usd'])} / "
                                    f"{format_usd(s['max_liquidation_45m_usd'])}"),
            ("stop-loss orders", f"{format_usd(s['stop_loss_usd'])} ({s['stops_executed']:,})"),
            ("open interest", f"{format_usd(s['open_interest_start_usd'])} -> "
                              f"{format_usd(s['open_interest_end_usd'])}"),
            ("insurance fund", f"{format_usd(s['insurance_fund_start_usd'])} -> "
                               f"{format_usd(s['insurance_fund_end_usd'])} (min "
                               f"{format_usd(s['insurance_fund_min_usd'])}), bad debt "
                               f"{format_usd(s['bad_debt_usd'])}"),
        ]
        if s.get("partial_liquidations") or s.get("adl_count") or s.get("backstop_usd"):
            rows.append(("partial / backstop / ADL",
                         f"{s['partial_liquidations']:,} partials, backstop "
                         f"{format_usd(s['backstop_usd'])}, ADL "
                         f"{format_usd(s['adl_notional_usd'])} ({s['adl_count']:,} positions)"))
        if s.get("takeover_usd"):
            rows.append(("fund inventory", f"taken over {format_usd(s['takeover_usd'])}, "
                                           f"offloaded {format_usd(s['fund_offload_usd'])}, "
                                           f"peak {format_usd(s['fund_inventory_peak_usd'])}, "
                                           f"end {format_usd(s['fund_inventory_end_usd'])}, "
                                           f"realised {format_usd(s['fund_realised_pnl_usd'])}"))
        for name, v in (s.get("venues") or {}).items():
            rows.append((f"  {name} ({v['rules']})",
                         f"liquidated {format_usd(v['liquidated_notional_usd'])}, ADL "
                         f"{format_usd(v['adl_notional_usd'])} ({v['adl_count']:,}), fund "
                         f"{format_usd(v['insurance_fund_start_usd'])} -> min "
                         f"{format_usd(v['insurance_fund_min_usd'])} -> "
                         f"{format_usd(v['insurance_fund_end_usd'])}, bad debt "
                         f"{format_usd(v['bad_debt_usd'])}"))
        if "path_rmse_pct" in s:
            rows.append(("path vs reference", f"RMSE {s['path_rmse_pct']:.2f}% of price over "
                                              f"{s['reference_minutes']:,} minutes"))
        if "amplification" in s:
            amp = s["amplification"]
            rows.append(("amplification", (f"{amp:.2f}x" if amp is not None else "n/a")
                         + f" (drawdown without feedback {s['drawdown_no_feedback_pct']:.2f}%)"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def plot(self, kind: str = "waterfall", path=None, *, reference=None, window=None,
             at=None):
        """Draw a plot; kind 'waterfall', 'liquidation_map', 'insurance', 'heatmap' (runs with
        ``heatmap=True``) or, for a multi-venue run, 'venues' (each venue's price, insurance
        fund and ADL over time).

        With ``path``, saves the image there (PNG unless the suffix says otherwise) and returns
        the path; without, returns the matplotlib Figure (Jupyter shows it inline).
        ``window=(start, end)`` zooms the waterfall or the heatmap on a time span (UTC);
        ``at=TIME`` draws the heatmap's ladder at one instant as a horizontal profile.
        """
        from cascade.plots import waterfall as plots

        if kind == "waterfall":
            ref = self.reference if reference is None else reference
            return plots.plot_waterfall(self.steps, self.summary, path, reference=ref,
                                        window=window)
        if kind == "heatmap":
            from cascade.plots.heatmap import plot_heatmap, plot_ladder

            if self.heatmap is None:
                raise ValueError("no heatmap recorded: run with cascade.run(..., heatmap=True)")
            if at is not None:
                from cascade.analysis.heatmap import parse_instant

                t = parse_instant(at, self.scenario, "at")
                last = self.steps["last_price"]
                price = float(last.iloc[max(0, int(last.index.searchsorted(t, "right")) - 1)])
                return plot_ladder(self.heatmap, t, price, path,
                                   title=f"{self.scenario.name}: liquidation ladder at "
                                         f"{t:%Y-%m-%d %H:%M:%S} UTC")
            return plot_heatmap(self.heatmap, self.steps, path, window=window,
                                title=f"{self.scenario.name}: liquidation heatmap (seed "
                                      f"{self.summary['seed']}, "
                                      f"{self.summary['positions']:,} positions)")
        if kind == "liquidation_map":
            return plots.plot_liquidation_map(self.liq_map, self.summary["price_start"], path)
        if kind == "insurance":
            return plots.plot_insurance(self.steps, path)
        if kind == "venues" and self.summary.get("venues"):
            from cascade.plots.venues import plot_venues

            return plot_venues(self.steps, list(self.summary["venues"]), path,
                               title=f"{self.scenario.name}: venues, insurance funds and ADL")
        raise ValueError(f"unknown plot kind {kind!r}: expected waterfall, liquidation_map, "
                         "insurance, heatmap or (multi-venue runs) venues")

    def save(self, out_dir, *, reference=None, window=None) -> dict:
        """Write summary.json, steps.parquet, liquidations.parquet, positions.parquet, the PNG
        plots (venues.png too for a multi-venue run; heatmap.parquet and heatmap.png for a run
        that recorded the heatmap) and manifest.json (last). ``window=(start, end)`` zooms the
        waterfall.

        The run is whole or absent: the files are written into a temporary folder beside
        ``out_dir`` that then takes its place in one rename
        (:func:`cascade.io.files.write_run_folder`). Returns {name: path}.
        """
        # Every writer's modules are loaded before the temporary folder exists: a Ctrl-C that
        # lands inside an import (in the import lock's weakref callback) is printed and
        # swallowed by CPython, so the run would go on after the user stopped it.
        import matplotlib.dates  # noqa: F401
        import matplotlib.ticker  # noqa: F401
        import pyarrow.parquet  # noqa: F401  (pandas' to_parquet engine)

        import cascade.plots._figure  # noqa: F401
        import cascade.plots.venues  # noqa: F401
        import cascade.plots.waterfall  # noqa: F401
        from cascade.io.files import write_run_folder
        if self.heatmap is not None:
            import matplotlib.colors  # noqa: F401
            import matplotlib.lines  # noqa: F401
            import matplotlib.patches  # noqa: F401

            import cascade.plots.heatmap  # noqa: F401

        def write(folder: Path) -> dict:
            paths = {}

            def atomic(name, fn):
                paths[name] = write_atomic(folder, name, fn)

            atomic("steps.parquet", lambda p: self.steps.to_parquet(p))
            atomic("liquidations.parquet", lambda p: self.liquidations.to_parquet(p))
            atomic("positions.parquet", lambda p: self.positions.to_parquet(p))
            atomic("waterfall.png", lambda p: self.plot("waterfall", p, reference=reference,
                                                        window=window))
            atomic("liquidation_map.png", lambda p: self.plot("liquidation_map", p))
            atomic("insurance.png", lambda p: self.plot("insurance", p))
            if self.summary.get("venues"):
                atomic("venues.png", lambda p: self.plot("venues", p))
            if self.heatmap is not None:
                atomic("heatmap.parquet", lambda p: self.heatmap.to_parquet(p, index=False))
                atomic("heatmap.png", lambda p: self.plot("heatmap", p))
            atomic("summary.json", lambda p: p.write_text(json.dumps(_jsonable(self.summary),
                                                                     indent=2) + "\n"))
            return paths

        return write_run_folder(out_dir, write)


# figures reported per venue in summary["venues"]
VENUE_KEYS = ("price_min", "price_min_time", "max_drawdown_pct", "liquidated_notional_usd",
              "liquidated_long_usd", "liquidated_short_usd", "long_share", "accounts_liquidated",
              "partial_liquidations", "backstop_usd", "adl_notional_usd", "adl_count",
              "open_interest_start_usd", "open_interest_end_usd", "insurance_fund_start_usd",
              "insurance_fund_end_usd", "insurance_fund_min_usd", "bad_debt_usd",
              "funding_paid_long_usd", "funding_paid_short_usd", "funding_to_others_usd",
              "takeover_usd", "fund_offload_usd", "fund_inventory_peak_usd",
              "fund_inventory_end_usd", "fund_inventory_end_coin", "fund_inventory_cost_usd",
              "fund_realised_pnl_usd", "fund_equity_end_usd", "fund_equity_min_usd",
              "fund_offload_net_coin", "fund_offload_net_usd")


class RecordSource:
    """A run's records as the engine left them: each venue's (``views``, ``pos`` venue-local,
    views of the engine's buffer, which they alone keep alive); :meth:`records` concatenates
    them as ``EngineState.records`` does, :meth:`fields` a few fields only."""

    def __init__(self, state):
        self.views = [state.venue_records(v) for v in range(state.lay.shape[0])]
        self.offsets = [int(state.lay[v, L_OFF]) for v in range(state.lay.shape[0])]

    def fields(self, names=("fill_price", "kind", "fee")) -> dict:
        """{name: the field of every venue's records, concatenated in venue order}."""
        return {k: np.concatenate([r[k] for r in self.views]) for k in names}

    def records(self) -> np.ndarray:
        """RECORD_DTYPE (k,): every venue's records, ``pos`` global and ``venue`` set."""
        return concat_records(self.views, self.offsets)


def _positions(state, pops, names, summary: dict):
    """positions.parquet's source, a :class:`cascade.outputs.PositionTable`; adds
    ``funding_paid_open_usd``, the funding paid by the positions still held at the end (status
    open or closing), to the summary."""
    from cascade.outputs import PositionTable

    table = PositionTable(state, pops, names)
    summary["funding_paid_open_usd"] = float(table.funding_paid[table.held_mask()].sum())
    return table


def _liq_map(liquidation_map, pops: list) -> pd.DataFrame:
    """The liquidation map of one venue, or of several summed on the first one's grid."""
    if len(pops) == 1:
        return liquidation_map(pops[0])
    return _sum_maps([liquidation_map(p) for p in pops])


def _frame(out: np.ndarray, sc) -> pd.DataFrame:
    steps = pd.DataFrame(out, index=step_times(sc), columns=list(COLUMNS))
    for col in ("liq_count", "iterations", "adl_count", "partial_count"):
        steps[col] = steps[col].astype(np.int64)
    return steps


def _sum_maps(maps):
    """Liquidation maps of several venues on one grid (each venue's own grid re-binned)."""
    base = maps[0].copy()
    for m in maps[1:]:
        idx = np.clip(np.searchsorted(base.index.to_numpy(), m.index.to_numpy()), 0,
                      len(base) - 1)
        for col in base.columns:
            np.add.at(base[col].to_numpy(), idx, m[col].to_numpy())
    return base


def _summary(sc, steps: pd.DataFrame, rec, pops: list, *, oi_start: float) -> dict:
    """Headline figures of a run (or of one venue of it) from its steps and records (``rec``:
    RECORD_DTYPE records, or a dict of their fields fill_price, kind and fee)."""
    fill, kind, fee = rec["fill_price"], rec["kind"], rec["fee"]
    filled = ~np.isnan(fill)
    price = steps["last_price"].to_numpy()
    liq = steps["liq_long_usd"].to_numpy() + steps["liq_short_usd"].to_numpy()
    step_s = sc.scenario.step_s
    liq_long = float(steps["liq_long_usd"].sum())
    liq_short = float(steps["liq_short_usd"].sum())
    total = liq_long + liq_short
    p0 = pops[0].price_start
    imin = int(np.argmin(price)) if price.size else 0
    kinds = kind[filled]
    return {
        "scenario": sc.name,
        "seed": sc.scenario.seed,
        "positions": int(sum(p.n_ladder for p in pops)),
        "positions_requested": int(sum(p.requested for p in pops)),
        "positions_dropped_prestart": int(sum(p.dropped_prestart for p in pops)),
        "positions_built": int(sum(p.n_ladder for p in pops)),
        "positions_note": positions_note(pops),
        "version": cascade.__version__,
        "git_commit": git_commit(),
        "scenario_digest": sc.digest,
        "feedback": bool(sc.engine.feedback),
        "start": sc.scenario.start.isoformat(),
        "end": sc.scenario.end.isoformat(),
        "step_s": step_s,
        "steps": sc.n_steps,
        "price_start": p0,
        "price_min": float(price[imin]) if price.size else p0,
        "price_min_time": steps.index[imin].isoformat() if price.size else None,
        "price_end": float(price[-1]) if price.size else p0,
        "max_drawdown_pct": max_drawdown_pct(price, p0),
        "liquidated_notional_usd": total,
        "liquidated_long_usd": liq_long,
        "liquidated_short_usd": liq_short,
        "long_share": liq_long / total if total > 0 else None,
        "accounts_liquidated": int(np.count_nonzero((kinds == KIND_LIQ)
                                                    | (kinds == KIND_BACKSTOP))),
        "partial_liquidations": int(np.count_nonzero(kinds == KIND_PARTIAL)),
        "backstop_usd": float(steps["backstop_usd"].sum()),
        "adl_notional_usd": float(steps["adl_usd"].sum()),
        "adl_count": int(steps["adl_count"].sum()),
        "liquidations_pending_at_end": int(np.count_nonzero(~filled)),
        "stop_loss_usd": float(steps["stop_usd"].sum()),
        "stops_executed": int(np.count_nonzero(kinds == KIND_STOP)),
        "max_liquidation_1m_usd": _max_window_sum(liq, max(1, round(60 / step_s))),
        "max_liquidation_45m_usd": _max_window_sum(liq, max(1, round(2700 / step_s))),
        "entry_orders": int(sum(p.n_entries for p in pops)),
        "entries_opened": int(np.count_nonzero(kinds == KIND_ENTRY)),
        "entry_opened_usd": float(steps["entry_usd"].sum()),
        "exogenous_sold_usd": float(-steps["exo_flow_usd"].clip(upper=0).sum()),
        "exogenous_bought_usd": float(steps["exo_flow_usd"].clip(lower=0).sum()),
        "dip_bought_usd": float(steps["dip_flow_usd"].sum()),
        "open_interest_start_usd": oi_start,
        "open_interest_end_usd": float(steps["open_interest_usd"].iloc[-1])
        if len(steps) else oi_start,
        "clearance_fees_usd": float(fee[filled][kinds == KIND_LIQ].sum()),
        "max_iterations_used": int(steps["iterations"].max()) if len(steps) else 0,
        **branching_summary(steps),
    }


def positions_note(pops) -> str:
    """Why the positions built differ from those asked for ('' when they do not)."""
    asked = sum(p.requested for p in pops)
    built = sum(p.n_ladder for p in pops)
    if asked == built:
        return ""
    why = []
    short = sum(p.short_of_candidates for p in pops)
    rescaled = sum(p.dropped_rescaled for p in pops)
    if rescaled:
        why.append(f"{rescaled:,} dropped: rescaling sizes to the open interest put their "
                   "liquidation price or stop on the wrong side of the price history")
    if short:
        why.append(f"{short:,} missing: too few candidates survived the price history")
    return f"{built:,} of {asked:,} positions built; " + "; ".join(why)


def _fund_summary(summary: dict, steps: pd.DataFrame, fund0: float, st: np.ndarray) -> None:
    """Insurance fund, bad debt and funding figures from a venue's (or the summed) state."""
    summary.update({
        "insurance_fund_start_usd": fund0,
        "insurance_fund_end_usd": float(st[S_FUND]),
        "insurance_fund_min_usd": float(min(fund0, steps["insurance_fund_usd"].min()))
        if len(steps) else fund0,
        "bad_debt_usd": float(st[S_BAD]),
        "funding_paid_long_usd": float(st[S_FUNDPAID_L]),
        "funding_paid_short_usd": float(st[S_FUNDPAID_S]),
        # the unmodelled counterparties receive what the modelled traders paid in total
        "funding_to_others_usd": -float(st[S_FUNDPAID_L] + st[S_FUNDPAID_S]),
        # the fund's (vault's) inventory taken over from liquidations (liquidation_order
        # ioc_bankruptcy / backstop): notional taken and offloaded, its value at the mark
        # (signed: + long), its cost (signed coin x average entry), the PnL it realised (in the
        # cash above) and the fund's equity, cash + inventory at mark - cost
        "takeover_usd": float(st[S_TAKEOVER]),
        "fund_offload_usd": float(st[S_OFFLOAD]),
        "fund_inventory_peak_usd": float(steps["fund_inventory_usd"].abs().max())
        if len(steps) else 0.0,
        "fund_inventory_end_usd": float(steps["fund_inventory_usd"].iloc[-1])
        if len(steps) else 0.0,
        "fund_inventory_end_coin": float(st[S_INV]),
        "fund_inventory_cost_usd": float(st[S_INVCOST]),
        "fund_realised_pnl_usd": float(st[S_FREAL]),
        "fund_equity_end_usd": float(steps["fund_equity_usd"].iloc[-1]) if len(steps)
        else fund0,
        "fund_equity_min_usd": float(min(fund0, steps["fund_equity_usd"].min()))
        if len(steps) else fund0,
        # the offloads signed (+ bought, - sold): coin, and coin x fill (USD); with the
        # takeovers of liquidations.parquet (fund_qty at fund_price) they rebuild the inventory
        # and its PnL from the files
        "fund_offload_net_coin": float(st[S_OFFCOIN]),
        "fund_offload_net_usd": float(st[S_OFFCASH]),
    })


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj
