"""Run results: per-step frame, per-position records, summary, plots and files on disk."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

import cascade
from cascade.engine import (
    COLUMNS,
    KIND_ENTRY,
    KIND_LIQ,
    KIND_STOP,
    S_BAD,
    S_FUND,
    EngineState,
)
from cascade.files import write_atomic
from cascade.market import step_times


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
        triggered position in trigger order (``pos`` indexes the population rows)
    population : the :class:`~cascade.population.Population` the run used
    liq_map : DataFrame, notional liquidated at each price level before the shock
    summary : dict of headline figures (see README "Outputs")
    """

    scenario: object
    steps: pd.DataFrame
    records: np.ndarray
    population: object
    liq_map: pd.DataFrame
    summary: dict
    reference: pd.DataFrame | None = None

    @classmethod
    def assemble(cls, sc, popu, state: EngineState, liq_map, *, oi_start: float, table, rules):
        steps = pd.DataFrame(state.out, index=step_times(sc), columns=list(COLUMNS))
        steps["liq_count"] = steps["liq_count"].astype(np.int64)
        steps["iterations"] = steps["iterations"].astype(np.int64)
        rec = state.records
        filled = rec[~np.isnan(rec["fill_price"])]
        price = steps["last_price"].to_numpy()
        liq = steps["liq_long_usd"].to_numpy() + steps["liq_short_usd"].to_numpy()
        step_s = sc.scenario.step_s
        liq_long = float(steps["liq_long_usd"].sum())
        liq_short = float(steps["liq_short_usd"].sum())
        total = liq_long + liq_short
        imin = int(np.argmin(price)) if price.size else 0
        summary = {
            "scenario": sc.name,
            "seed": sc.scenario.seed,
            "positions": popu.n_ladder,
            "positions_requested": popu.requested,
            "positions_dropped_prestart": popu.dropped_prestart,
            "version": cascade.__version__,
            "git_commit": git_commit(),
            "scenario_digest": sc.digest,
            "venue": sc.venue.name,
            "symbol": sc.venue.symbol,
            "bracket_table_from": str(table.valid_from),
            "feedback": bool(sc.engine.feedback),
            "start": sc.scenario.start.isoformat(),
            "end": sc.scenario.end.isoformat(),
            "step_s": step_s,
            "steps": sc.n_steps,
            "price_start": popu.price_start,
            "price_min": float(price[imin]) if price.size else popu.price_start,
            "price_min_time": steps.index[imin].isoformat() if price.size else None,
            "price_end": float(price[-1]) if price.size else popu.price_start,
            "max_drawdown_pct": max_drawdown_pct(price, popu.price_start),
            "liquidated_notional_usd": total,
            "liquidated_long_usd": liq_long,
            "liquidated_short_usd": liq_short,
            "long_share": liq_long / total if total > 0 else None,
            "accounts_liquidated": int(np.count_nonzero(filled["kind"] == KIND_LIQ)),
            "liquidations_pending_at_end": int(np.count_nonzero(np.isnan(rec["fill_price"]))),
            "stop_loss_usd": float(steps["stop_usd"].sum()),
            "stops_executed": int(np.count_nonzero(filled["kind"] == KIND_STOP)),
            "max_liquidation_1m_usd": _max_window_sum(liq, max(1, round(60 / step_s))),
            "max_liquidation_45m_usd": _max_window_sum(liq, max(1, round(2700 / step_s))),
            "entry_orders": popu.n_entries,
            "entries_opened": int(np.count_nonzero(filled["kind"] == KIND_ENTRY)),
            "entry_opened_usd": float(steps["entry_usd"].sum()),
            "exogenous_sold_usd": float(-steps["exo_flow_usd"].clip(upper=0).sum()),
            "exogenous_bought_usd": float(steps["exo_flow_usd"].clip(lower=0).sum()),
            "dip_bought_usd": float(steps["dip_flow_usd"].sum()),
            "open_interest_start_usd": oi_start,
            "open_interest_end_usd": float(steps["open_interest_usd"].iloc[-1])
            if len(steps) else oi_start,
            "insurance_fund_start_usd": float(sc.venue.insurance_fund_usd),
            "insurance_fund_end_usd": float(state.st[0, S_FUND]),
            "insurance_fund_min_usd": float(min(sc.venue.insurance_fund_usd,
                                                steps["insurance_fund_usd"].min()))
            if len(steps) else float(sc.venue.insurance_fund_usd),
            "clearance_fees_usd": float(filled["fee"][filled["kind"] == KIND_LIQ].sum()),
            "bad_debt_usd": float(state.st[0, S_BAD]),
            "max_iterations_used": int(steps["iterations"].max()) if len(steps) else 0,
        }
        return cls(scenario=sc, steps=steps, records=rec, population=popu, liq_map=liq_map,
                   summary=summary)

    # ------------------------------------------------------------------------------------------
    def add_amplification(self, base: Result) -> None:
        """Record the drawdown of the same scenario and seed with feedback off."""
        dd0 = base.summary["max_drawdown_pct"]
        dd1 = self.summary["max_drawdown_pct"]
        self.summary["drawdown_no_feedback_pct"] = dd0
        self.summary["liquidated_no_feedback_usd"] = base.summary["liquidated_notional_usd"]
        self.summary["amplification"] = dd1 / dd0 if dd0 > 0 else None

    def add_reference(self, klines: pd.DataFrame, source: str = "") -> None:
        """Compare with a real kline path (:func:`cascade.klines.read_klines` frame).

        Adds ``path_rmse_pct``: the root mean square of log(simulated / real) close price over the
        minutes both cover, in percent, and ``reference_minutes``; keeps the candles for the plot.
        """
        from cascade.errors import CascadeError

        sim = self.steps["last_price"].resample("1min").last()
        both = sim.index.intersection(klines.index)
        if len(both) == 0:
            raise CascadeError(f"--reference {source}: expected candles inside the scenario window "
                               f"{self.steps.index[0]} to {self.steps.index[-1]}, got "
                               f"{klines.index[0]} to {klines.index[-1]}")
        diff = np.log(sim.loc[both].to_numpy() / klines.loc[both, "close"].to_numpy())
        self.summary["path_rmse_pct"] = float(np.sqrt(np.mean(diff ** 2)) * 100.0)
        self.summary["reference_minutes"] = len(both)
        self.reference = klines

    @property
    def liquidations(self) -> pd.DataFrame:
        """One row per record: liquidations, stops and conditional entries (a position opened
        during the run has an entry row and, if it was closed, a liquidation row), with its
        population row."""
        rec = self.records
        p = self.population
        i = rec["pos"]
        times = step_times(self.scenario)
        df = pd.DataFrame({
            "trigger_time": times[rec["trigger_step"]],
            "kind": np.select([rec["kind"] == KIND_LIQ, rec["kind"] == KIND_STOP],
                              ["liquidation", "stop"], "entry"),
            "side": np.where(p.side[i] > 0, "long", "short"),
            "qty": p.qty[i], "entry_price": p.entry[i], "wallet_usd": p.wallet[i],
            "liquidation_price": p.lp[i], "trigger_price": rec["trigger_price"],
            "fill_price": rec["fill_price"], "fund_delta_usd": rec["fund_delta"],
            "clearance_fee_usd": rec["fee"], "row": i})
        return df

    def table(self) -> str:
        """A short human-readable summary table."""
        from cascade.plots import format_usd

        s = self.summary
        rows = [
            ("scenario", f"{s['scenario']} (seed {s['seed']}, {s['positions']:,} positions)"),
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
        if "path_rmse_pct" in s:
            rows.append(("path vs reference", f"RMSE {s['path_rmse_pct']:.2f}% of price over "
                                              f"{s['reference_minutes']:,} minutes"))
        if "amplification" in s:
            amp = s["amplification"]
            rows.append(("amplification", (f"{amp:.2f}x" if amp is not None else "n/a")
                         + f" (drawdown without feedback {s['drawdown_no_feedback_pct']:.2f}%)"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def plot(self, kind: str = "waterfall", path=None, *, reference=None):
        """Draw a plot; kind 'waterfall', 'liquidation_map' or 'insurance'.

        Saves a PNG at ``path`` (default: a temporary file) and returns its path; in Jupyter,
        ``IPython.display.Image(res.plot())`` shows it.
        """
        import tempfile

        from cascade import plots

        if path is None:
            path = Path(tempfile.mkdtemp(prefix="cascade-")) / f"{kind}.png"
        if kind == "waterfall":
            ref = self.reference if reference is None else reference
            return plots.plot_waterfall(self.steps, self.summary, path, reference=ref)
        if kind == "liquidation_map":
            return plots.plot_liquidation_map(self.liq_map, self.summary["price_start"], path)
        if kind == "insurance":
            return plots.plot_insurance(self.steps, path)
        raise ValueError(f"unknown plot kind {kind!r}: expected waterfall, liquidation_map or "
                         "insurance")

    def save(self, out_dir, *, reference=None) -> dict:
        """Write summary.json, steps.parquet, liquidations.parquet and the PNG plots.

        Each file is written to a temporary name and renamed, so an interrupted run never leaves a
        truncated file behind. Returns {name: path}.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}

        def atomic(name, write):
            paths[name] = write_atomic(out, name, write)

        atomic("steps.parquet", lambda p: self.steps.to_parquet(p))
        atomic("liquidations.parquet", lambda p: self.liquidations.to_parquet(p))
        atomic("waterfall.png", lambda p: self.plot("waterfall", p, reference=reference))
        atomic("liquidation_map.png", lambda p: self.plot("liquidation_map", p))
        atomic("insurance.png", lambda p: self.plot("insurance", p))
        atomic("summary.json", lambda p: p.write_text(json.dumps(_jsonable(self.summary),
                                                                 indent=2) + "\n"))
        return paths


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
