"""Parameter sweeps: many (parameter set, seed) runs of one scenario, one Parquet row each.

A sweep is the product of its grid points (``--grid`` values, crossed; ``--sample`` points of a
Latin hypercube) and its seeds. Each task is one (overrides, seed) pair, a pure function of
(scenario, overrides, seed, positions), run by :func:`cascade.analysis.parallel.run_many` and
written as one row to ``DIR/<task>.parquet``, where ``<task>`` hashes those inputs: a file is
written under a temporary name and renamed, so it is either whole or absent. Rerunning a sweep
skips the tasks whose file exists; a task that runs twice (a worker killed after writing it)
writes the same bits to the same name.

Throughput: a worker keeps the populations it built (keyed by everything that draws them: the
scenario's venue, population, start, seed and the history's volatility), so tasks that differ
only in market, engine or flow parameters reuse one population (its rows are the sorted ladder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.analysis.populations import population_key, shared_population
from cascade.errors import CascadeError
from cascade.model.scenario import Scenario
from cascade.plots.sweep import PATH_COLUMN

METRICS = (("max_drawdown_pct", "drawdown", "%"),
           ("liquidated_notional_usd", "liquidated", "USD"),
           ("long_share", "long share", ""),
           ("amplification", "amplification", "x"))
QUANTILES = (0.5, 0.05, 0.95)


@dataclasses.dataclass(frozen=True)
class Task:
    """One run of a sweep: ``scenario`` with ``overrides`` (sorted (key, value) pairs), on
    ``seed``, at ``positions`` (None: the scenario's), written under ``out``."""

    scenario: Scenario
    overrides: tuple
    seed: int
    positions: int | None
    out: str
    amplification: bool = False

    @property
    def name(self) -> str:
        """The task's file stem: a hash of (scenario digest, overrides, seed, positions,
        amplification)."""
        key = repr((self.scenario.digest, self.overrides, self.seed, self.positions,
                    self.amplification))
        return hashlib.sha256(key.encode()).hexdigest()[:20]

    @property
    def path(self) -> Path:
        return Path(self.out) / f"{self.name}.parquet"

    def resolved(self) -> Scenario:
        """The scenario this task runs (validated)."""
        over = dict(self.overrides)
        over["scenario.seed"] = int(self.seed)
        if self.positions is not None:
            over["population.positions"] = int(self.positions)
        return self.scenario.with_overrides(**over)


def grid_label(overrides) -> str:
    """``key=value`` pairs of a grid point, ``base`` for none."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in overrides) or "base"


# --------------------------------------------------------------------------------------------
# Parsing and validating --grid / --sample
# --------------------------------------------------------------------------------------------

def parse_value(text: str):
    """A TOML value (``4.5e7``, ``45_000_000``, ``true``, ``"x"``); a bare word stays a string."""
    from cascade.model.scenario import tomllib

    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_grid(specs) -> list[tuple[str, list]]:
    """``["KEY=V1,V2", ...]`` -> ``[(KEY, [V1, V2]), ...]`` (CascadeError naming ``--grid``)."""
    out = []
    for spec in specs or ():
        key, eq, values = str(spec).partition("=")
        key = key.strip()
        vals = [v for v in values.split(",") if v.strip()] if eq else []
        if not key or not vals:
            raise CascadeError(f"--grid {spec!r}: expected KEY=V1,V2,... such as "
                               "market.depth_usd=3e7,4.5e7")
        if key in (k for k, _ in out):
            raise CascadeError(f"--grid {spec!r}: key {key} is given twice; expected each key once")
        out.append((key, [parse_value(v) for v in vals]))
    return out


def parse_sample(specs) -> list[tuple[str, float, float]]:
    """``["KEY=LOW:HIGH", ...]`` -> ``[(KEY, LOW, HIGH), ...]`` (CascadeError naming
    ``--sample``)."""
    out = []
    for spec in specs or ():
        key, eq, rng = str(spec).partition("=")
        key = key.strip()
        lo_text, colon, hi_text = rng.partition(":")
        try:
            lo, hi = float(lo_text), float(hi_text)
            ok = bool(key) and bool(eq) and bool(colon) and np.isfinite([lo, hi]).all() and lo < hi
        except ValueError:
            ok = False
        if not ok:
            raise CascadeError(f"--sample {spec!r}: expected KEY=LOW:HIGH with numbers LOW < HIGH, "
                               "such as market.depth_usd=2e7:8e7")
        if key in (k for k, _, _ in out):
            raise CascadeError(f"--sample {spec!r}: key {key} is given twice; expected each key "
                               "once")
        out.append((key, lo, hi))
    return out


def _field(key: str):
    from cascade.model.scenario import SCHEMA

    section, _, name = key.partition(".")
    return SCHEMA.get(section, {}).get(name)


def latin_hypercube(sample, n: int, seed: int) -> list[tuple]:
    """``n`` points of a Latin hypercube over the ``sample`` ranges (scipy.stats.qmc, seeded,
    so the same sweep draws the same points). Integer keys are rounded."""
    from scipy.stats import qmc

    if not sample:
        return []
    unit = qmc.LatinHypercube(d=len(sample), seed=np.random.default_rng([seed, 0x5EE9])).random(n)
    lo = np.array([s[1] for s in sample])
    hi = np.array([s[2] for s in sample])
    pts = qmc.scale(unit, lo, hi)
    out = []
    for row in pts:
        point = []
        for (key, _, _), v in zip(sample, row):
            f = _field(key)
            point.append((key, int(round(v)) if f is not None and f.kind == "int" else float(v)))
        out.append(tuple(point))
    return out


def grid_points(sc: Scenario, grid, sample=(), samples: int | None = None) -> list[tuple]:
    """Every parameter set of the sweep (sorted (key, value) tuples), each validated through
    :meth:`Scenario.with_overrides` so that a bad key or value fails before any run."""
    if sample and not samples:
        raise CascadeError("--samples: expected the number of Latin hypercube points (>= 1) "
                           "when --sample is given")
    if samples and not sample:
        raise CascadeError("--samples: given without --sample KEY=LOW:HIGH; expected both")
    both = {k for k, _ in grid} & {k for k, _, _ in sample}
    if both:
        raise CascadeError(f"--sample {sorted(both)[0]}: the key is also in --grid; expected it "
                           "in one of them")
    crossed = [tuple(zip([k for k, _ in grid], vals))
               for vals in itertools.product(*[v for _, v in grid])] if grid else [()]
    drawn = latin_hypercube(sample, int(samples), sc.scenario.seed) if sample else [()]
    for opt, part in (("--grid", crossed), ("--sample", drawn)):
        for p in part:  # each option's values alone first, so the error names the right one
            try:
                sc.with_overrides(**dict(p))
            except CascadeError as exc:
                raise CascadeError(f"{opt} {grid_label(p)}: {exc}") from None
    points = [tuple(sorted(g + s)) for g in crossed for s in drawn]
    for p in points:
        try:
            sc.with_overrides(**dict(p))
        except CascadeError as exc:
            raise CascadeError(f"--grid/--sample {grid_label(p)}: {exc}") from None
    return points


def plan(sc: Scenario, points, seeds: int, *, positions: int | None, out, amplification=False
         ) -> list[Task]:
    """The tasks of a sweep, seeds S..S+seeds-1 (S the scenario's seed) for every point; ordered
    so that tasks sharing a population (same seed) are adjacent."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise CascadeError(f"--seeds {seeds!r}: expected a whole number >= 1")
    s0 = int(sc.scenario.seed)
    return [Task(sc, tuple(p), s0 + i, positions, str(out), amplification)
            for i in range(seeds) for p in points]


# --------------------------------------------------------------------------------------------
# Running one task (in a worker)
# --------------------------------------------------------------------------------------------

def simulate_task(sc: Scenario, amplification: bool = False):
    """``cascade.run(sc, amplification=...)``, with the populations from
    :func:`shared_population`."""
    from cascade.runner import simulate

    res = simulate(sc, population=shared_population(sc))
    if amplification:
        base = simulate(sc.with_overrides(**{"engine.feedback": False}),
                        population=shared_population(sc))
        res.add_amplification(base)
    return res


def minute_path(res) -> np.ndarray:
    """float64 (minutes,): the last price at the end of each minute of the run (the last,
    partial minute included), USD."""
    price = res.steps["last_price"].to_numpy(np.float64)
    per_min = max(1, int(round(60.0 / float(res.summary["step_s"]))))
    ends = np.arange(per_min - 1, len(price), per_min)
    if len(price) and (not len(ends) or ends[-1] != len(price) - 1):
        ends = np.append(ends, len(price) - 1)
    return price[ends]


def task_row(task: Task, res) -> dict:
    """The task's row: its parameters, seed, positions, every scalar summary figure (not the
    wall-clock timings) and the 1-minute price path."""
    row = {"task": task.name, "grid_point": grid_label(task.overrides)}
    for k, v in task.overrides:
        row[k] = v
    row["positions_arg"] = -1 if task.positions is None else int(task.positions)
    for k, v in res.summary.items():
        if k == "timings" or k in row:
            continue
        if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating, str)) or v is None:
            row[k] = v
    row[PATH_COLUMN] = minute_path(res)
    return row


def write_row(row: dict, path: Path) -> Path:
    """Write ``row`` as a one-row Parquet file at ``path``, atomically (unique temporary name in
    the same folder, then rename: two writers of the same task cannot collide)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: [v] for k, v in row.items() if k != PATH_COLUMN}
    table = pa.table(cols)
    table = table.append_column(PATH_COLUMN, pa.array([row[PATH_COLUMN]],
                                                      type=pa.list_(pa.float64())))
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def run_task(task: Task) -> str:
    """Run one task and write its row, unless its file exists (resume; a retried task). Returns
    the task's name."""
    path = task.path
    if not path.exists():
        res = simulate_task(task.resolved(), task.amplification)
        write_row(task_row(task, res), path)
    return task.name


# --------------------------------------------------------------------------------------------
# The sweep and its outputs
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepResult:
    """A finished sweep: ``rows`` (one per task, in plan order), what ran and what was skipped."""

    rows: pd.DataFrame
    tasks: list
    skipped: int
    out: Path
    amplification: bool = False

    def table(self) -> pd.DataFrame:
        return summary_table(self.rows, self.amplification)

    def table_markdown(self) -> str:
        return table_markdown(self.table())


def sweep(scenario, *, seeds: int = 1, grid=(), sample=(), samples: int | None = None,
          positions: int | None = None, workers: int | None = None, scheduler: str | None = None,
          out, amplification: bool = False, progress: bool = False) -> SweepResult:
    """Run every (grid point, seed) task not already in ``out`` and read the rows back.

    Parameters
    ----------
    scenario : path or Scenario
    seeds : seeds S, S+1, ..., S+seeds-1 (S: the scenario's seed) per grid point
    grid : [(key, [values])] crossed; sample : [(key, low, high)] with ``samples`` points
    positions : ``[population] positions`` override
    workers, scheduler : the engine (see :func:`cascade.analysis.parallel.run_many`)
    out : the dataset folder (created)
    """
    from cascade.analysis.parallel import check_scheduler, check_workers, run_many
    from cascade.runner import _as_scenario

    sc = _as_scenario(scenario)
    if scheduler is not None:
        scheduler = check_scheduler(scheduler)
    workers = check_workers(workers)
    points = grid_points(sc, list(grid), list(sample), samples)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    tasks = plan(sc, points, seeds, positions=positions, out=out.resolve(),
                 amplification=amplification)
    todo = [t for t in tasks if not t.path.exists()]
    run_many(run_task, todo, workers=workers, scheduler=scheduler, progress=progress,
             desc=f"{sc.name}: sweep", unit="task", key=lambda t: population_key(t.resolved()))
    for stale in out.glob(".*.tmp"):  # left by a worker killed while writing
        stale.unlink(missing_ok=True)
    rows = read_rows(tasks)
    return SweepResult(rows, tasks, len(tasks) - len(todo), out, amplification)


def read_rows(tasks) -> pd.DataFrame:
    """The rows of ``tasks`` from their files, in task order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(t.path) for t in tasks]
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def summary_table(rows: pd.DataFrame, amplification: bool = False) -> pd.DataFrame:
    """Per grid point (in first-seen order): tasks, and the median, 5 % and 95 % of drawdown,
    liquidated notional, long share (and amplification)."""
    metrics = [m for m in METRICS if m[0] != "amplification" or amplification]
    out = []
    for label, g in rows.groupby("grid_point", sort=False):
        rec = {"grid point": label, "runs": len(g)}
        for key, name, _ in metrics:
            x = g[key].astype(float).to_numpy() if key in g else np.full(len(g), np.nan)
            x = x[np.isfinite(x)]
            for q, tag in zip(QUANTILES, ("median", "p5", "p95")):
                rec[f"{name} {tag}"] = float(np.quantile(x, q)) if len(x) else float("nan")
        out.append(rec)
    return pd.DataFrame(out)


def _fmt(col: str, v) -> str:
    if isinstance(v, str):
        return v
    if not np.isfinite(v):
        return "n/a"
    if col.startswith("runs"):
        return f"{int(v)}"
    if col.startswith("drawdown"):
        return f"{v:.2f}%"
    if col.startswith("liquidated"):
        from cascade.plots.waterfall import format_usd

        return format_usd(v)
    if col.startswith("amplification"):
        return f"{v:.2f}x"
    return f"{v:.2f}"


def table_markdown(table: pd.DataFrame) -> str:
    """The per-grid-point table as markdown."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_fmt(c, r[c]) for c in cols) + " |")
    return "\n".join(lines)


def save_outputs(res: SweepResult) -> dict[str, Path]:
    """Write ``sweep.md``, ``sweep.csv``, ``fan.png`` and ``histograms.png`` into the sweep's
    folder (atomically); returns their paths."""
    from cascade.io.files import write_atomic
    from cascade.plots.sweep import plot_fan, plot_histograms

    table = res.table()
    out = res.out
    paths = {
        "sweep.md": write_atomic(out, "sweep.md", lambda p: p.write_text(
            table_markdown(table) + "\n")),
        "sweep.csv": write_atomic(out, "sweep.csv", lambda p: table.to_csv(p, index=False)),
        "fan.png": write_atomic(out, "fan.png", lambda p: plot_fan(res.rows, p)),
        "histograms.png": write_atomic(out, "histograms.png",
                                       lambda p: plot_histograms(res.rows, p)),
    }
    return paths
