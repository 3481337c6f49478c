"""Measurements that need a fresh process: ``python -m benchmarks.worker TASK --args JSON --result FILE``.

Tasks
-----
e2e       end-to-end runs of the demo at one size (and memory: peak RSS of the first run)
baseline  engine step loop vs the naive NumPy baseline at one size, same inputs
threads   the parallel kernels and the population phase at 1, 2, ... numba threads
import    ``import cascade`` time; which kernels (if any) are compiled at import
compile   first call of a tiny run, then a second call (run with NUMBA_CACHE_DIR set by the parent)
dexsim    dex-sim's workload shape: 100 seeds of 2,000 positions x 7,200 steps, one process,
          imports and (under an empty NUMBA_CACHE_DIR) compilation counted
sweep     tasks per minute of ``cascade sweep`` on 1, 2, ... worker processes against a serial
          loop over ``cascade.run``, and whether their rows agree bit for bit

Each task writes one JSON object to FILE; progress goes to stderr. Nothing from cascade is
imported before a task starts, so ``import`` measures a cold interpreter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _log(msg: str) -> None:
    print(f"    {msg}", file=sys.stderr, flush=True)


def _import_all() -> float:
    t = time.perf_counter()
    import numba  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    import cascade.engine
    import cascade.model.population
    import cascade.result
    import cascade.rules.margin
    import cascade.runner  # noqa: F401
    return time.perf_counter() - t


def _warm_up(scenario: str, positions: int | None = None) -> float:
    """A tiny run, so that compilation (or loading from the cache) is out of every timing."""
    from benchmarks.common import WARMUP_POSITIONS, WARMUP_STEPS, demo_scenario, min_steps
    from cascade.runner import simulate

    t = time.perf_counter()
    simulate(demo_scenario(positions or WARMUP_POSITIONS,
                           max(WARMUP_STEPS, min_steps(scenario)), scenario))
    return time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
def task_e2e(a: dict) -> dict:
    """End to end at ``n`` positions, for each entry of ``steps`` (the first also measures memory).

    Timings come from ``summary["timings"]`` (population_s, ladder_s, engine_state_s,
    step_loop_s, settle_s, assembly_s)
    plus the wall time of ``simulate``. Memory: ``ru_maxrss`` after the first run minus the RSS
    after imports. With ``phases``, the second repeat resets the high-water mark around the
    population build to split the peak into "population build" and "rest of the run".
    """
    t_import = _import_all()
    import cascade.model.population as population_mod
    from benchmarks.common import demo_scenario, hwm_now, reset_hwm, rss_now, rss_peak
    from cascade.runner import simulate

    rss_imports = rss_now()
    peak_imports = rss_peak()
    t_warm = _warm_up(a["scenario"], a.get("warmup_positions"))
    rss_warm = rss_now()
    n = int(a["n"])
    out = {"n_requested": n, "import_s": t_import, "warmup_s": t_warm,
           "rss_after_imports_bytes": rss_imports, "peak_after_imports_bytes": peak_imports,
           "rss_after_warmup_bytes": rss_warm, "runs": []}
    first = True
    for steps in a["steps"]:
        sc = demo_scenario(n, steps, a["scenario"])
        for r in range(int(a["repeats"])):
            instrument = bool(a.get("phases")) and r == 1 and steps == a["steps"][0]
            phase = {}
            orig = population_mod.build_population
            patched = instrument and reset_hwm()
            if patched:
                phase["rss_at_start_bytes"] = rss_now()

                def build(*args, _orig=orig, _phase=phase, **kw):
                    popu = _orig(*args, **kw)
                    _phase["population_build_peak_bytes"] = hwm_now()
                    _phase["population_bytes"] = int(popu.nbytes())
                    _phase["rss_after_population_bytes"] = rss_now()
                    reset_hwm()
                    return popu

                population_mod.build_population = build
            try:
                t = time.perf_counter()
                res = simulate(sc)
                wall = time.perf_counter() - t
            finally:
                population_mod.build_population = orig
            if phase:
                phase["rest_of_run_peak_bytes"] = hwm_now()
            tm = dict(res.summary["timings"])
            run = {"steps": steps, "repeat": r, "wall_s": wall, **tm,
                   "positions": int(res.summary["positions"]),
                   "accounts_liquidated": int(res.summary["accounts_liquidated"]),
                   "max_iterations_used": int(res.summary["max_iterations_used"]),
                   "iterations_total": int(res.steps["iterations"].sum()),
                   "max_drawdown_pct": float(res.summary["max_drawdown_pct"])}
            if phase:
                run["memory_phases"] = phase
            if first:
                out["peak_after_first_run_bytes"] = rss_peak()
                out["positions"] = run["positions"]
                out["population_bytes"] = int(sum(p.nbytes() for p in res.populations))
                out["state_bytes"] = _state_bytes(res)
                first = False
            out["runs"].append(run)
            _log(f"N={n:,} steps={steps:,} repeat {r + 1}: wall {wall:.3f} s "
                 f"(population {tm.get('population_s', 0):.3f}, ladder {tm.get('ladder_s', 0):.3f},"
                 f" state {tm.get('engine_state_s', 0):.3f}, step loop "
                 f"{tm.get('step_loop_s', 0):.3f}, settle {tm.get('settle_s', 0):.3f}, assembly "
                 f"{tm.get('assembly_s', 0):.3f})")
            del res
    return out


def _state_bytes(res) -> dict:
    """What the engine keeps besides the population (resident or not)."""
    n = sum(p.n for p in res.populations)
    k = len(res.records)
    from cascade.engine import COLUMNS, RECORD_DTYPE

    return {"status": n, "records_written": k * RECORD_DTYPE.itemsize,
            "records_reserved": n * RECORD_DTYPE.itemsize,
            "per_step_outputs": len(res.steps) * len(COLUMNS) * 8}


# ---------------------------------------------------------------------------------------------
def task_baseline(a: dict) -> dict:
    """Engine step loop vs the naive baseline at ``n`` positions over ``steps`` steps.

    Both get the same population and the same prepared inputs (flows, noise, parameters); each
    timing includes allocating its state. The baseline runs in chunks; if the projected time
    (elapsed / iterations done x iterations of the whole run, from the engine) exceeds
    ``budget_s``, it stops and the total is extrapolated.
    """
    import numpy as np

    from benchmarks.baseline import NaiveEngine, prepare_inputs
    from benchmarks.common import demo_scenario, median
    from cascade.engine import C_ITER, C_LAST, EngineState
    from cascade.model.population import build_population, venue_tables

    _import_all()
    _warm_up(a["scenario"])
    n, steps = int(a["n"]), int(a["steps"])
    # the naive baseline sends liquidations as market orders: compare like with like
    sc = demo_scenario(n, steps, a["scenario"])
    if not sc.venues:
        sc = sc.with_overrides(**{"venue.liquidation_order": "market"})
    tm = {}
    popu = build_population(sc, timings=tm)
    exo, noise, prm, iprm, fund = prepare_inputs(sc, popu)
    # warm the baseline's scalar helpers on a throwaway copy of the run
    NaiveEngine(popu, steps, prm, iprm, fund).advance(exo, noise, 0, 2)

    times = []
    state = None
    for _ in range(int(a.get("engine_repeats", 5))):
        t = time.perf_counter()
        state = EngineState.for_venues([popu], [venue_tables(sc)[0]], steps, np.atleast_2d(prm),
                                       np.atleast_2d(iprm), [fund])
        state.advance(exo, noise, prm, iprm, 0, steps)
        times.append(time.perf_counter() - t)
    engine_s = median(times)
    iters = state.out[:, C_ITER]
    iters_cum = np.cumsum(iters)
    iters_total = float(iters_cum[-1])
    _log(f"N={popu.n:,} x {steps:,} steps: engine step loop {engine_s * 1e3:.2f} ms "
         f"(median of {len(times)}), {int(iters_total):,} iterations")

    budget = float(a.get("budget_s", 600.0))
    chunk = max(1, steps // 100)
    eng = NaiveEngine(popu, steps, prm, iprm, fund)
    t0 = time.perf_counter()
    done = 0
    next_log = t0 + 10.0
    extrapolated = False
    while done < steps:
        b = min(steps, done + chunk)
        eng.advance(exo, noise, done, b)
        done = b
        el = time.perf_counter() - t0
        projected = el / float(iters_cum[done - 1]) * iters_total
        if done < steps and projected > budget:
            extrapolated = True
            break
        if time.perf_counter() > next_log:
            _log(f"baseline: {done:,}/{steps:,} steps in {el:.1f} s, projected {projected:.0f} s")
            next_log = time.perf_counter() + 10.0
    measured = time.perf_counter() - t0
    baseline_s = measured / float(iters_cum[done - 1]) * iters_total if extrapolated else measured
    out = {"n_requested": n, "positions": popu.n, "steps": steps, "engine_s": engine_s,
           "engine_repeats": times, "ladder_s": tm.get("ladder_s"),
           "iterations_total": int(iters_total), "baseline_s": baseline_s,
           "baseline_measured_s": measured, "baseline_steps_run": done,
           "baseline_iterations_run": int(eng.iterations), "extrapolated": extrapolated,
           "speedup": baseline_s / engine_s,
           "speedup_incl_ladder": baseline_s / (engine_s + (tm.get("ladder_s") or 0.0))}
    if not extrapolated:
        res = eng.result()
        erec = state.records
        same_records = bool(len(erec) == len(res.records) and np.array_equal(
            erec[["pos", "kind", "trigger_step"]], res.records[["pos", "kind", "trigger_step"]]))
        fe, fb = erec["fill_price"], res.records["fill_price"]
        fill_diff = float(np.nanmax(np.abs(fe - fb) / fe)) if same_records and len(fe) else 0.0
        last_diff = float(np.max(np.abs(state.out[:, C_LAST] - res.out[:, C_LAST])
                                 / state.out[:, C_LAST]))
        out.update(same_records=same_records, records=len(erec),
                   max_rel_diff_fill=fill_diff, max_rel_diff_last_price=last_diff,
                   agree=same_records and fill_diff <= 1e-9 and last_diff <= 1e-9)
    _log(f"baseline {'~' if extrapolated else ''}{baseline_s:.2f} s"
         f"{f' (extrapolated from {done} steps)' if extrapolated else ''}: speed-up "
         f"{out['speedup']:,.0f}x" + (f", agree={out['agree']}" if "agree" in out else ""))
    return out


# ---------------------------------------------------------------------------------------------
def task_threads(a: dict) -> dict:
    """``liq_prices_nb`` (the parallel margin kernel) and the whole population phase at each
    thread count. The step loop is serial and is not measured here."""
    import numba
    import numpy as np

    from benchmarks.common import demo_scenario, median
    from cascade._numba import set_threads
    from cascade.model.population import build_population, venue_tables
    from cascade.rules.margin import liq_prices_nb

    _import_all()
    _warm_up(a["scenario"])
    top = numba.config.NUMBA_NUM_THREADS
    counts = sorted({1, top} | {2 ** k for k in range(1, 16) if 2 ** k < top})
    out = {"threads": counts, "numba_num_threads": top, "kernel": {}, "population": {}}

    sc = demo_scenario(int(a["pop_n"]), int(a["steps"]), a["scenario"])
    base = build_population(sc)
    table, _ = venue_tables(sc)
    kn = int(a["kernel_n"])
    reps = -(-kn // base.n)
    side = np.tile(base.side, reps)[:kn]
    qty = np.tile(base.qty, reps)[:kn]
    entry = np.tile(base.entry, reps)[:kn]
    wallet = np.tile(base.wallet, reps)[:kn]
    lp = np.empty(kn)
    br = np.empty(kn, np.int8)
    def kernel():
        liq_prices_nb(side, qty, entry, wallet, table.floor, table.cap, table.mmr, table.cum, lp,
                      br)

    ref = None
    identical = True
    for k in counts:  # warm every thread count; results must not depend on it
        set_threads(k)
        kernel()
        if ref is None:
            ref = lp.copy()
        identical &= bool(np.array_equal(lp, ref))
    for k, ts in _interleaved(counts, int(a["kernel_repeats"]), kernel).items():
        out["kernel"][str(k)] = {"median_s": median(ts), "min_s": min(ts), "runs": ts,
                                 "identical_to_1_thread": identical}
        _log(f"liq_prices_nb N={kn:,} threads={k}: {median(ts) * 1e3:.1f} ms "
             f"(min {min(ts) * 1e3:.1f})")
    out["kernel_n"] = kn
    rows = {k: [] for k in counts}
    for _ in range(int(a["pop_repeats"])):
        for k in counts:
            set_threads(k)
            tm = {}
            t = time.perf_counter()
            build_population(sc, timings=tm)
            rows[k].append({"wall_s": time.perf_counter() - t, **tm})
    for k in counts:
        r = rows[k]
        out["population"][str(k)] = {
            "population_s": median([x["population_s"] for x in r]),
            "ladder_s": median([x["ladder_s"] for x in r]),
            "wall_s": median([x["wall_s"] for x in r]), "runs": r}
        _log(f"build_population N={base.n:,} threads={k}: "
             f"{out['population'][str(k)]['wall_s']:.3f} s")
    out["pop_n"] = base.n
    out["control"] = _control_scaling(counts, int(a["kernel_repeats"]))
    return out


def _control_scaling(counts, repeats: int) -> dict:
    """What the machine itself gives: a trivially parallel, compute-only numba kernel (no memory
    traffic, no reduction) at each thread count. Its speed-up is the ceiling for any kernel."""
    import numba
    import numpy as np

    from benchmarks.common import median
    from cascade._numba import set_threads

    @numba.njit(parallel=True, cache=False)
    def spin(x, out):
        for i in numba.prange(x.shape[0]):
            v = x[i]
            for _ in range(64):
                v = v * 0.999999 + 1e-3 / (v + 1.0)
            out[i] = v

    x = np.linspace(0.5, 1.5, 2_000_000)
    y = np.empty_like(x)
    res = {}
    for k in counts:
        set_threads(k)
        spin(x, y)
    for k, ts in _interleaved(counts, repeats, lambda: spin(x, y)).items():
        res[str(k)] = {"median_s": median(ts), "min_s": min(ts), "runs": ts}
        _log(f"control kernel threads={k}: {median(ts) * 1e3:.1f} ms (min {min(ts) * 1e3:.1f})")
    return res


def _interleaved(counts, repeats: int, fn) -> dict:
    """Time ``fn`` ``repeats`` times at each thread count, alternating the counts (1, 2, 1, 2...)
    so that load from other programs hits every count alike. {count: [seconds, ...]}."""
    from cascade._numba import set_threads

    ts = {k: [] for k in counts}
    for _ in range(repeats):
        for k in counts:
            set_threads(k)
            t = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t)
    return ts


# ---------------------------------------------------------------------------------------------
def task_import(a: dict) -> dict:
    """Time ``import cascade`` (first thing in this process), then import every kernel module and
    list the numba dispatchers that already hold compiled code (there should be none)."""
    t = time.perf_counter()
    import cascade

    import_s = time.perf_counter() - t
    light = {m: m in sys.modules for m in ("numpy", "numba", "pandas", "matplotlib")}
    t = time.perf_counter()
    cascade.run  # noqa: B018  (lazy attribute: imports cascade.runner)
    run_attr_s = time.perf_counter() - t
    t = time.perf_counter()
    import importlib
    import pkgutil

    mods = {}
    for info in pkgutil.iter_modules(cascade.__path__):
        if info.name in ("cli",) or info.ispkg:
            continue
        mods[info.name] = importlib.import_module(f"cascade.{info.name}")
    modules_s = time.perf_counter() - t
    from numba.core.registry import CPUDispatcher

    kernels, compiled = [], []
    for name, mod in mods.items():
        for attr, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and getattr(obj, "__module__", "") == mod.__name__:
                kernels.append(f"{name}.{attr}")
                if obj.signatures:
                    compiled.append(f"{name}.{attr}")
    return {"import_cascade_s": import_s, "loaded_by_import_cascade": light,
            "cascade_run_attribute_s": run_attr_s, "import_all_modules_s": modules_s, "modules": sorted(mods), "kernels": sorted(kernels),
            "compiled_at_import": sorted(compiled)}


def task_compile(a: dict) -> dict:
    """First and second call of a tiny run, after all imports. Run under NUMBA_CACHE_DIR."""
    import os

    t_import = _import_all()
    t = time.perf_counter()
    _warm_up(a["scenario"])
    first = time.perf_counter() - t
    t = time.perf_counter()
    _warm_up(a["scenario"])
    second = time.perf_counter() - t
    cache = os.environ.get("NUMBA_CACHE_DIR")
    files = sum(len(f) for _, _, f in os.walk(cache)) if cache else None
    return {"import_s": t_import, "first_call_s": first, "second_call_s": second,
            "compile_s": first - second, "cache_dir": cache, "cache_files_after": files}


def _cpu_s() -> float:
    """CPU seconds used so far by this process and all its descendants (the dask workers), live
    or ended: what the work costs whatever else the machine runs."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, children's user and system (ended ones)
    for ch in me.children(recursive=True):
        try:
            total += sum(ch.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def task_sweep(a: dict) -> dict:
    """A grid over ``market.depth_usd`` (``depths`` values) x ``seeds`` seeds at ``n`` positions
    x ``steps`` steps: first a serial loop of ``cascade.run`` over the first ``serial`` tasks
    (a fresh population each, as a user's own loop would do), then the whole sweep on each
    count of ``workers`` (a fresh LocalCluster each, its start-up included in the wall time, a
    fresh output folder each). Rows of every sweep are compared with each other and with the
    serial loop's, every column, bit for bit."""
    import tempfile

    import numpy as np

    from benchmarks.common import demo_scenario
    from cascade.analysis import sweep as S
    from cascade.runner import run

    _warm_up(a["scenario"])
    sc = demo_scenario(a["n"], a["steps"], a["scenario"])
    base = sc.market.depth_usd
    grid = [("market.depth_usd", [base * f for f in np.linspace(0.6, 1.4, a["depths"])])]
    out = {"n": a["n"], "steps": a["steps"], "tasks": a["depths"] * a["seeds"],
           "depths": a["depths"], "seeds": a["seeds"], "serial": {}, "sweeps": []}
    with tempfile.TemporaryDirectory(prefix="cascade-bench-sweep-") as tmp:
        tasks = S.plan(sc, S.grid_points(sc, grid), a["seeds"], positions=None, out=tmp)
        _log(f"serial loop over cascade.run: {a['serial']} tasks")
        t, c = time.perf_counter(), _cpu_s()
        serial_rows = [S.task_row(task, run(task.resolved())) for task in tasks[: a["serial"]]]
        wall, cpu = time.perf_counter() - t, _cpu_s() - c
        out["serial"] = {"runs": a["serial"], "wall_s": wall, "cpu_s": cpu,
                         "tasks_per_min": 60.0 * a["serial"] / wall}
        rows_by = {}
        for k in a["workers"]:
            _log(f"sweep of {len(tasks)} tasks on {k} worker process(es)")
            folder = f"{tmp}/w{k}"
            t, c = time.perf_counter(), _cpu_s()
            res = S.sweep(sc, seeds=a["seeds"], grid=grid, workers=k, out=folder)
            wall, cpu = time.perf_counter() - t, _cpu_s() - c
            rows_by[k] = res.rows
            out["sweeps"].append({"workers": k, "wall_s": wall, "cpu_s": cpu,
                                  "tasks_per_min": 60.0 * len(tasks) / wall})

    def same(x, y) -> bool:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            return np.asarray(x).tobytes() == np.asarray(y).tobytes()
        return x == y or (x != x and y != y)

    first = rows_by[a["workers"][0]]
    recs = first.to_dict("records")
    out["agree_workers"] = all(
        len(r) == len(first) and all(same(u[c], v[c]) for u, v in zip(recs, r.to_dict("records"))
                                     for c in first.columns) for r in rows_by.values())
    out["agree_serial"] = all(same(recs[i][c], v) for i, row in enumerate(serial_rows)
                              for c, v in row.items())
    return out


def task_dexsim(a: dict) -> dict:
    """dex-sim's workload shape (its CLI: ``traders`` traders x ``paths`` price paths x ``steps``
    steps in one process): ``paths`` runs of the demo at ``traders`` positions over ``steps``
    one-second steps, seeds 0, 1, ..., each with its own population and noise path, as a serial
    loop of ``cascade.run`` (a sweep of seeds). The wall time counts from before the imports, so
    compilation counts too when the parent gives an empty NUMBA_CACHE_DIR."""
    t0 = time.perf_counter()
    t_import = _import_all()

    from benchmarks.common import demo_scenario
    from cascade.runner import run

    sc = demo_scenario(a["traders"], a["steps"], a["scenario"])
    t = time.perf_counter()
    first = run(sc, seed=0)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    liq = float(first.summary["liquidated_notional_usd"])
    for seed in range(1, a["paths"]):
        liq += float(run(sc, seed=seed).summary["liquidated_notional_usd"])
    rest = time.perf_counter() - t
    return {"traders": a["traders"], "paths": a["paths"], "steps": a["steps"],
            "import_s": t_import, "first_run_s": t_first, "rest_s": rest,
            "per_path_s": rest / max(1, a["paths"] - 1),
            "wall_s": time.perf_counter() - t0, "liquidated_usd_all_paths": liq}


TASKS = {"dexsim": task_dexsim, "e2e": task_e2e, "baseline": task_baseline, "threads": task_threads,
         "import": task_import, "compile": task_compile, "sweep": task_sweep}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--args", default="{}", help="JSON object of task arguments")
    p.add_argument("--result", required=True, help="file that receives the JSON result")
    ns = p.parse_args(argv)
    res = TASKS[ns.task](json.loads(ns.args))
    with open(ns.result, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
