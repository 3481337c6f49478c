"""The benchmark suite: configuration, the sections, the targets. Run by ``python -m benchmarks``.

Every measurement runs in a fresh subprocess (:mod:`benchmarks.worker`), one size per process,
after a tiny warm-up run there, so compilation is never timed (except in the start-up section,
which times it on purpose) and the peak RSS of a size is that size's alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import DEMO, RESULTS, ROOT, cpu_busy, median, mem_available

SECTIONS = ("startup", "end_to_end", "october", "memory", "steps_scaling", "baseline", "threads",
            "sweep", "dexsim")
# dex-sim's own figure for the same workload shape on this machine (issue 12, as filed): about
# 18-19 s per CLI run, of which about 4.6 s is JIT compilation it does not cache. Not measured
# here (dex-sim is not a dependency): quoted beside ours.
DEXSIM_QUOTED_S = (18.0, 19.0)
OCTOBER = ROOT / "scenarios" / "oct2025.toml"
OCTOBER_MIN = 20_000  # fewer positions cannot hold the October open interest (max_notional_share)
TARGETS = {
    "speedup": 1_000.0,      # engine vs naive baseline, 1e6 positions x 3,600 steps
    "threads": 1.6,          # parallel kernel speed-up on 2 threads
    "phases_threads": 1.7,   # issue 12: the parallel phases (population build, ladder) on 2 threads
    "bytes_per_position": 64.0,  # peak RSS growth per position at 1e7
    "import_s": 0.5,
    "size_ratio": 12.0,      # time(1e7) / time(1e6)
    "e2e_1e7_s": 5.0,        # 1e7 positions x 86,400 steps, end to end, no compilation
    "sweep_1000_s": 300.0,   # 1,000 one-day scenarios at 1e6 positions on this machine (issue 11)
    # issue 12, on the October scenario (two venues, funding on, warm cache)
    "oct_loop_ratio": 2.0,   # step loop time(1e7) / time(1e6)
    "oct_phases_1e7_s": 3.0,  # 1e7 x 86,400: population + ladder + state + loop + settle + assembly
    "oct_size_ratio": 11.0,  # time(1e7) / time(1e6), end to end (simulate)
}


@dataclasses.dataclass
class Config:
    sizes: list
    steps: int
    quick: bool = False
    huge: bool = False
    out: Path = RESULTS
    repeats: int | None = None       # None: 3 up to 1e7 positions, 1 above (2 with --quick)
    baseline_sizes: list = dataclasses.field(default_factory=lambda: [100_000, 1_000_000])
    baseline_steps: int = 3_600
    baseline_budget_s: float = 600.0
    sweep_n: int = 1_000_000
    sweep_steps: list = dataclasses.field(default_factory=lambda: [3_600, 21_600])
    threads_pop_n: int = 1_000_000
    threads_kernel_n: int = 10_000_000
    sweep_pos: int = 1_000_000    # sweep section: positions x steps per task
    sweep_task_steps: int = 86_400
    sweep_depths: int = 8         # grid of market.depth_usd values ...
    sweep_seeds: int = 4          # ... x seeds = tasks
    sweep_serial: int = 4         # tasks of the serial loop over cascade.run
    sweep_workers: tuple = (1, 2)
    kernel_repeats: int = 9
    pop_repeats: int = 3
    import_repeats: int = 5
    sections: tuple = SECTIONS
    scenario: Path = DEMO
    october_sizes: list = dataclasses.field(
        default_factory=lambda: [100_000, 1_000_000, 10_000_000])
    october_repeats: int = 1
    october: Path = OCTOBER
    dexsim: tuple = (2_000, 100, 7_200)  # traders, paths, steps

    def repeats_for(self, n: int) -> int:
        if self.repeats is not None:
            return self.repeats
        if self.quick:
            return 2
        return 3 if n <= 10_000_000 else 1

    @classmethod
    def make(cls, *, quick=False, sizes=None, steps=None, huge=False, out=None, repeats=None,
             baseline_budget_s=None, sections=None, scenario=None) -> Config:
        from benchmarks.common import min_steps

        scenario = Path(scenario) if scenario else DEMO
        if quick:
            cfg = cls(sizes=[2_000, 20_000], steps=3_600, quick=True, baseline_sizes=[20_000],
                      sweep_n=20_000, sweep_steps=[], threads_pop_n=20_000,
                      threads_kernel_n=200_000, kernel_repeats=3, pop_repeats=1,
                      import_repeats=3, sweep_pos=20_000, sweep_task_steps=3_600, sweep_depths=3,
                      sweep_seeds=2, sweep_serial=2, october_sizes=[20_000, 50_000],
                      dexsim=(2_000, 5, 3_600))
        else:
            cfg = cls(sizes=[100_000, 1_000_000, 10_000_000], steps=86_400)
        cfg.scenario = scenario
        if sizes:
            cfg.sizes = sorted({int(s) for s in sizes})
            cfg.october_sizes = [n for n in cfg.sizes if OCTOBER_MIN <= n <= 10_000_000]
        if steps:
            cfg.steps = int(steps)
        lo = min_steps(scenario)
        if cfg.steps < lo:
            raise SystemExit(f"--steps {cfg.steps}: the scenario's flows start up to step "
                             f"{lo - 1}; use at least {lo} steps")
        if huge and 100_000_000 not in cfg.sizes:
            cfg.sizes.append(100_000_000)
        cfg.huge = huge
        if out:
            cfg.out = Path(out)
        if repeats:
            cfg.repeats = int(repeats)
        if baseline_budget_s:
            cfg.baseline_budget_s = float(baseline_budget_s)
        if sections:
            unknown = set(sections) - set(SECTIONS)
            if unknown:
                raise SystemExit(f"--sections: unknown {sorted(unknown)}; expected some of "
                                 + ", ".join(SECTIONS))
            cfg.sections = tuple(s for s in SECTIONS if s in sections)
        top = max(cfg.sizes)
        cfg.baseline_sizes = [n for n in cfg.baseline_sizes if n <= top] or [min(cfg.sizes)]
        cfg.baseline_steps = max(min(cfg.baseline_steps, cfg.steps), lo)
        if cfg.sweep_n not in cfg.sizes:  # 1e6 if run, else the largest size up to 1e7
            cfg.sweep_n = max([n for n in cfg.sizes if n <= 10_000_000] or [min(cfg.sizes)])
        sweep = [s for s in cfg.sweep_steps if lo <= s < cfg.steps]
        if not sweep and cfg.steps * 2 // 3 >= lo:
            sweep = [cfg.steps * 2 // 3]
        cfg.sweep_steps = sweep
        if not cfg.quick:  # the kernel at the largest size up to 1e7, on real population rows
            cfg.threads_kernel_n = min(cfg.threads_kernel_n, top)
        cfg.threads_pop_n = min(cfg.threads_pop_n, top)
        return cfg

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        d["scenario"] = str(self.scenario)
        d["october"] = str(self.october)
        d["sections"] = list(self.sections)
        return d


class WorkerError(RuntimeError):
    pass


def run_worker(task: str, args: dict, env: dict | None = None, timeout: float | None = None):
    """Run ``python -m benchmarks.worker TASK`` in a fresh process; return its JSON result."""
    fd, path = tempfile.mkstemp(prefix=f"cascade-bench-{task}-", suffix=".json")
    os.close(fd)
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    if env:
        e.update(env)
    cmd = [sys.executable, "-m", "benchmarks.worker", task, "--args", json.dumps(args),
           "--result", path]
    try:
        proc = subprocess.run(cmd, check=False, cwd=ROOT, env=e, timeout=timeout)
        if proc.returncode != 0:
            why = " (killed by signal 9: out of memory?)" if proc.returncode == -9 else ""
            raise WorkerError(f"worker {task} {json.dumps(args)} exited with status "
                              f"{proc.returncode}{why}")
        with open(path) as f:
            return json.load(f)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
def section_startup(cfg: Config) -> dict:
    out = {}
    scen = str(cfg.scenario)
    _say("[start-up] import cascade in fresh interpreters")
    runs = [run_worker("import", {}) for _ in range(cfg.import_repeats)]
    first = runs[0]
    out["import"] = {
        "import_cascade_s": median([r["import_cascade_s"] for r in runs]),
        "import_cascade_runs_s": [r["import_cascade_s"] for r in runs],
        "cascade_run_attribute_s": median([r["cascade_run_attribute_s"] for r in runs]),
        "import_all_modules_s": median([r["import_all_modules_s"] for r in runs]),
        "loaded_by_import_cascade": first["loaded_by_import_cascade"],
        "kernels": first["kernels"],
        "compiled_at_import": sorted({k for r in runs for k in r["compiled_at_import"]}),
    }
    # whole processes, interpreter start-up included
    proc = {}
    for label, code in (("python -c pass", "pass"), ("python -c 'import cascade'", "import cascade")):
        ts = []
        for _ in range(cfg.import_repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
            ts.append(time.perf_counter() - t)
        proc[label] = median(ts)
    out["process_wall_s"] = proc
    imp = out["import"]
    _say(f"    import cascade {imp['import_cascade_s'] * 1e3:.1f} ms (median of {len(runs)}); "
         f"kernels compiled at import: {imp['compiled_at_import'] or 'none'}")
    with tempfile.TemporaryDirectory(prefix="cascade-numba-cache-") as cache:
        _say("[start-up] first call with a cold numba cache (empty NUMBA_CACHE_DIR)")
        cold = run_worker("compile", {"scenario": scen}, env={"NUMBA_CACHE_DIR": cache})
        _say(f"    first call {cold['first_call_s']:.2f} s, second {cold['second_call_s']:.3f} s")
        _say("[start-up] first call with the same cache, now warm")
        warm = run_worker("compile", {"scenario": scen}, env={"NUMBA_CACHE_DIR": cache})
        _say(f"    first call {warm['first_call_s']:.2f} s, second {warm['second_call_s']:.3f} s")
    out["compile_cold"] = cold
    out["compile_warm"] = warm
    out["cache_disabled_by_env"] = os.environ.get("CASCADE_NUMBA_CACHE", "1") == "0"
    return out


def section_end_to_end(cfg: Config, results: dict) -> dict:
    """One fresh worker per size; the sweep size also runs the shorter windows."""
    rows, workers, skipped = [], {}, []
    per_pos = None
    for n in sorted(cfg.sizes):
        sweep = n == cfg.sweep_n and "steps_scaling" in cfg.sections
        steps = [cfg.steps] + (cfg.sweep_steps if sweep else [])
        if per_pos is not None and n >= 50_000_000:
            avail = mem_available()
            need = per_pos * n * 1.15
            if avail is not None and need > avail:
                why = (f"skipped: projected peak {need / 2**30:.1f} GiB (from "
                       f"{per_pos:.0f} B/position measured at the previous size) exceeds the "
                       f"{avail / 2**30:.1f} GiB available")
                _say(f"[end-to-end] N={n:,}: {why}")
                skipped.append({"n_requested": n, "reason": why})
                continue
        _say(f"[end-to-end] N={n:,} x {cfg.steps:,} steps, {cfg.repeats_for(n)} repeat(s)"
             + (f"; then {', '.join(f'{s:,}' for s in cfg.sweep_steps)} steps" if len(steps) > 1
                else ""))
        try:
            w = run_worker("e2e", {"n": n, "steps": steps, "repeats": cfg.repeats_for(n),
                                   "phases": True, "scenario": str(cfg.scenario)})
        except WorkerError as exc:
            _say(f"    FAILED: {exc}")
            skipped.append({"n_requested": n, "reason": str(exc)})
            continue
        workers[n] = w
        rows.append(_e2e_row(w, cfg.steps))
        per_pos = (w["peak_after_first_run_bytes"] - w["rss_after_imports_bytes"]) / w["positions"]
        r = rows[-1]
        _say(f"    total {r['wall_s']:.3f} s: population {r['population_s']:.3f}, ladder "
             f"{r['ladder_s']:.3f}, step loop {r['step_loop_s']:.4f}, assembly "
             f"{r['assembly_s']:.4f} (median of {r['repeats']})")
    results["_e2e_workers"] = workers
    return {"steps": cfg.steps, "rows": rows, "skipped": skipped}


def section_october(cfg: Config) -> dict:
    """The October scenario (two venues, funding on) end to end at each size, one fresh worker
    per size: the phases, and the step loop's cost per step against N (flat when a step costs
    O(positions crossed))."""
    from benchmarks.common import load_steps

    steps = load_steps(cfg.october)
    rows, skipped = [], []
    for n in sorted(cfg.october_sizes):
        _say(f"[october] N={n:,} x {steps:,} steps, {cfg.october_repeats} repeat(s)")
        try:
            # the October market needs some 20,000 positions to hold its open interest
            w = run_worker("e2e", {"n": n, "steps": [steps], "repeats": cfg.october_repeats,
                                   "phases": False, "scenario": str(cfg.october),
                                   "warmup_positions": OCTOBER_MIN})
        except WorkerError as exc:
            _say(f"    FAILED: {exc}")
            skipped.append({"n_requested": n, "reason": str(exc)})
            continue
        r = _e2e_row(w, steps)
        r["peak_bytes_per_position"] = (w["peak_after_first_run_bytes"]
                                        - w["rss_after_imports_bytes"]) / w["positions"]
        rows.append(r)
        _say(f"    total {r['wall_s']:.3f} s: population {r['population_s']:.3f}, ladder "
             f"{r['ladder_s']:.3f}, engine state {r['engine_state_s']:.3f}, step loop "
             f"{r['step_loop_s']:.4f} ({r['step_loop_ns_per_step']:,.0f} ns/step), settle "
             f"{r['settle_s']:.4f}, assembly {r['assembly_s']:.4f}")
    return {"scenario": str(cfg.october), "steps": steps, "rows": rows, "skipped": skipped}


def _e2e_row(w: dict, steps: int) -> dict:
    runs = [r for r in w["runs"] if r["steps"] == steps]
    keys = ("population_s", "ladder_s", "engine_state_s", "step_loop_s", "settle_s",
            "assembly_s", "wall_s")
    row = {"n_requested": w["n_requested"], "positions": w["positions"], "steps": steps,
           "repeats": len(runs)}
    for k in keys:
        row[k] = median([r.get(k, 0.0) for r in runs])
    row["phases_sum_s"] = sum(row[k] for k in keys[:-1])
    row["wall_min_s"] = min(r["wall_s"] for r in runs)
    row["wall_first_s"] = runs[0]["wall_s"]
    row["step_loop_ns_per_step"] = row["step_loop_s"] / steps * 1e9
    for k in ("accounts_liquidated", "iterations_total", "max_iterations_used",
              "max_drawdown_pct"):
        row[k] = runs[0][k]
    return row


def section_memory(cfg: Config, results: dict) -> dict:
    workers = results.get("_e2e_workers") or {}
    if not workers:  # end_to_end not selected: run the sizes for memory only
        for n in sorted(cfg.sizes):
            _say(f"[memory] N={n:,}")
            try:
                workers[n] = run_worker("e2e", {"n": n, "steps": [cfg.steps], "repeats": 2,
                                                "phases": True, "scenario": str(cfg.scenario)})
            except WorkerError as exc:
                _say(f"    FAILED: {exc}")
    rows = []
    for n, w in sorted(workers.items()):
        pos = w["positions"]
        peak = w["peak_after_first_run_bytes"]
        row = {"n_requested": n, "positions": pos, "steps": cfg.steps,
               "rss_after_imports_bytes": w["rss_after_imports_bytes"],
               "rss_after_warmup_bytes": w["rss_after_warmup_bytes"], "peak_bytes": peak,
               "bytes_per_position": (peak - w["rss_after_imports_bytes"]) / pos,
               "bytes_per_position_after_warmup": (peak - w["rss_after_warmup_bytes"]) / pos,
               "population_bytes_per_position": w["population_bytes"] / pos,
               "engine_state_bytes": w["state_bytes"]}
        ph = next((r["memory_phases"] for r in w["runs"] if "memory_phases" in r), None)
        if ph:
            base = ph["rss_at_start_bytes"]
            row["population_build_peak_per_position"] = (
                ph["population_build_peak_bytes"] - base) / pos
            row["rest_of_run_peak_per_position"] = (ph["rest_of_run_peak_bytes"] - base) / pos
            row["memory_phases"] = ph
        rows.append(row)
        _say(f"[memory] N={pos:,}: peak {peak / 2**20:,.0f} MiB, "
             f"{row['bytes_per_position']:.0f} B/position over the RSS after imports")
    return {"rows": rows}


def section_steps_scaling(cfg: Config, results: dict) -> dict:
    w = (results.get("_e2e_workers") or {}).get(cfg.sweep_n)
    if w is None:
        _say(f"[steps] N={cfg.sweep_n:,}")
        w = run_worker("e2e", {"n": cfg.sweep_n, "steps": [cfg.steps] + cfg.sweep_steps,
                               "repeats": cfg.repeats_for(cfg.sweep_n), "phases": False,
                               "scenario": str(cfg.scenario)})
    rows = [_e2e_row(w, s) for s in sorted({r["steps"] for r in w["runs"]})]
    return {"n": cfg.sweep_n, "rows": rows}


def section_baseline(cfg: Config) -> dict:
    rows = []
    for n in cfg.baseline_sizes:
        _say(f"[baseline] N={n:,} x {cfg.baseline_steps:,} steps: engine step loop vs naive "
             f"NumPy (budget {cfg.baseline_budget_s:.0f} s)")
        try:
            rows.append(run_worker("baseline", {"n": n, "steps": cfg.baseline_steps,
                                                "budget_s": cfg.baseline_budget_s,
                                                "scenario": str(cfg.scenario)}))
        except WorkerError as exc:
            _say(f"    FAILED: {exc}")
            rows.append({"n_requested": n, "error": str(exc)})
    return {"steps": cfg.baseline_steps, "budget_s": cfg.baseline_budget_s, "rows": rows}


def section_threads(cfg: Config) -> dict:
    _say(f"[threads] liq_prices_nb at N={cfg.threads_kernel_n:,}, population build at "
         f"N={cfg.threads_pop_n:,}, control kernel")
    w = run_worker("threads", {"pop_n": cfg.threads_pop_n, "kernel_n": cfg.threads_kernel_n,
                               "kernel_repeats": cfg.kernel_repeats,
                               "pop_repeats": cfg.pop_repeats, "steps": cfg.baseline_steps,
                               "scenario": str(cfg.scenario)})
    t1k = w["kernel"]["1"]["median_s"]
    t1p = w["population"]["1"]["wall_s"]
    t1c = w["control"]["1"]["median_s"]
    m1k, m1c = w["kernel"]["1"]["min_s"], w["control"]["1"]["min_s"]
    for k in w["threads"]:
        w["kernel"][str(k)]["speedup"] = t1k / w["kernel"][str(k)]["median_s"]
        w["kernel"][str(k)]["speedup_best"] = m1k / w["kernel"][str(k)]["min_s"]
        w["control"][str(k)]["speedup_best"] = m1c / w["control"][str(k)]["min_s"]
        w["population"][str(k)]["speedup"] = t1p / w["population"][str(k)]["wall_s"]
        w["control"][str(k)]["speedup"] = t1c / w["control"][str(k)]["median_s"]
    return w


def section_sweep(cfg: Config) -> dict:
    _say(f"[sweep] {cfg.sweep_depths} depths x {cfg.sweep_seeds} seeds at N={cfg.sweep_pos:,} x "
         f"{cfg.sweep_task_steps:,} steps: serial loop over cascade.run, then cascade sweep on "
         + ", ".join(str(k) for k in cfg.sweep_workers) + " worker(s)")
    w = run_worker("sweep", {"n": cfg.sweep_pos, "steps": cfg.sweep_task_steps,
                             "depths": cfg.sweep_depths, "seeds": cfg.sweep_seeds,
                             "serial": cfg.sweep_serial, "workers": list(cfg.sweep_workers),
                             "scenario": str(cfg.scenario)})
    for s in w["sweeps"]:
        s["speedup_vs_serial"] = s["tasks_per_min"] / w["serial"]["tasks_per_min"]
        s["extrapolated_1000_s"] = 1000 * 60.0 / s["tasks_per_min"]
    return w


def section_dexsim(cfg: Config) -> dict:
    traders, paths, steps = cfg.dexsim
    args = {"traders": traders, "paths": paths, "steps": steps, "scenario": str(cfg.scenario)}
    if cfg.quick:  # compiling everything takes minutes: --quick times the warm cache only
        _say(f"[dexsim] {paths} seeds x {traders:,} positions x {steps:,} steps in one process")
        return {"cold": None, "warm": run_worker("dexsim", args),
                "quoted_dexsim_s": list(DEXSIM_QUOTED_S)}
    _say(f"[dexsim] {paths} seeds x {traders:,} positions x {steps:,} steps in one process: "
         "with a cold numba cache, then a warm one")
    with tempfile.TemporaryDirectory(prefix="cascade-bench-dexsim-") as cache:
        cold = run_worker("dexsim", args, env={"NUMBA_CACHE_DIR": cache})
        warm = run_worker("dexsim", args, env={"NUMBA_CACHE_DIR": cache})
    return {"cold": cold, "warm": warm, "quoted_dexsim_s": list(DEXSIM_QUOTED_S)}


# ---------------------------------------------------------------------------------------------
def _target(name, goal, measured, met, note=""):
    return {"target": name, "goal": goal, "measured": measured, "met": met, "note": note}


def evaluate_targets(res: dict) -> list:
    T = TARGETS
    out = []
    rows = {r["n_requested"]: r for r in (res.get("baseline") or {}).get("rows", [])
            if "speedup" in r}
    r = rows.get(1_000_000)
    if r and r["steps"] == 3_600:
        note = ("extrapolated baseline" if r["extrapolated"] else "baseline measured in full") + \
            f"; including the engine's ladder sort: {r['speedup_incl_ladder']:,.0f}x"
        out.append(_target("engine vs naive baseline, 1e6 positions x 3,600 steps",
                           f">= {T['speedup']:,.0f}x", f"{r['speedup']:,.0f}x",
                           r["speedup"] >= T["speedup"], note))
    else:
        out.append(_target("engine vs naive baseline, 1e6 positions x 3,600 steps",
                           f">= {T['speedup']:,.0f}x", None, None, "not measured in this run"))

    th = res.get("threads") or {}
    if "kernel" in th and "2" in th["kernel"]:
        sp = th["kernel"]["2"]["speedup"]
        ctl = th.get("control", {}).get("2", {}).get("speedup")
        best = th["kernel"]["2"].get("speedup_best")
        out.append(_target("parallel kernel (liq_prices_nb) on 2 threads", f">= {T['threads']}x",
                           f"{sp:.2f}x", sp >= T["threads"],
                           (f"median of {len(th['kernel']['2']['runs'])}, N={th['kernel_n']:,}; "
                            f"best-of runs {best:.2f}x; machine ceiling (compute-only control "
                            f"kernel) {ctl:.2f}x") if ctl else ""))
    else:
        out.append(_target("parallel kernel (liq_prices_nb) on 2 threads", f">= {T['threads']}x",
                           None, None, "fewer than 2 numba threads, or not measured"))

    pop = th.get("population") or {}
    name = "parallel phases (population build + ladder sort) on 2 threads"
    if "1" in pop and "2" in pop:
        sp = pop["1"]["wall_s"] / pop["2"]["wall_s"]
        out.append(_target(name, f">= {T['phases_threads']}x", f"{sp:.2f}x",
                           sp >= T["phases_threads"],
                           f"N={th.get('pop_n', 0):,}: population {pop['1']['population_s']:.3f} "
                           f"-> {pop['2']['population_s']:.3f} s, ladder "
                           f"{pop['1']['ladder_s']:.3f} -> {pop['2']['ladder_s']:.3f} s; the "
                           "draws are counter-based and parallel, the survivors' selection, "
                           "rescaling and conditional entries serial NumPy"))
    else:
        out.append(_target(name, f">= {T['phases_threads']}x", None, None,
                           "fewer than 2 numba threads, or not measured"))

    mem = {r["n_requested"]: r for r in (res.get("memory") or {}).get("rows", [])}
    m = mem.get(10_000_000)
    out.append(_target("peak memory per position at 1e7", f"<= {T['bytes_per_position']:.0f} B",
                       f"{m['bytes_per_position']:.0f} B" if m else None,
                       (m["bytes_per_position"] <= T["bytes_per_position"]) if m else None,
                       "peak RSS minus RSS after imports, fresh process" if m
                       else "not measured in this run"))

    st = res.get("startup") or {}
    imp = st.get("import")
    out.append(_target("import cascade", f"< {T['import_s']} s",
                       f"{imp['import_cascade_s'] * 1e3:.1f} ms" if imp else None,
                       (imp["import_cascade_s"] < T["import_s"]) if imp else None,
                       "in a fresh interpreter (median)" if imp else "not measured"))
    out.append(_target("nothing compiled at import", "0 kernels",
                       f"{len(imp['compiled_at_import'])} of {len(imp['kernels'])} kernels"
                       if imp else None, (not imp["compiled_at_import"]) if imp else None,
                       "after importing every cascade module" if imp else "not measured"))

    e2e = {r["n_requested"]: r for r in (res.get("end_to_end") or {}).get("rows", [])}
    a, b = e2e.get(1_000_000), e2e.get(10_000_000)
    if a and b:
        ratio = b["wall_s"] / a["wall_s"]
        out.append(_target("time(1e7) / time(1e6), end to end", f"<= {T['size_ratio']:.0f}x",
                           f"{ratio:.1f}x", ratio <= T["size_ratio"],
                           f"{b['wall_s']:.2f} s / {a['wall_s']:.2f} s; step loop alone "
                           f"{b['step_loop_s'] / a['step_loop_s']:.1f}x"))
    else:
        out.append(_target("time(1e7) / time(1e6), end to end", f"<= {T['size_ratio']:.0f}x",
                           None, None, "not measured in this run"))
    if b and b["steps"] == 86_400:
        out.append(_target("1e7 positions x 86,400 steps end to end (no compilation)",
                           f"<= {T['e2e_1e7_s']:.0f} s", f"{b['wall_s']:.2f} s",
                           b["wall_s"] <= T["e2e_1e7_s"],
                           f"population {b['population_s']:.2f} s + ladder {b['ladder_s']:.2f} s "
                           f"+ step loop {b['step_loop_s']:.3f} s + assembly "
                           f"{b['assembly_s']:.3f} s"))
    else:
        out.append(_target("1e7 positions x 86,400 steps end to end (no compilation)",
                           f"<= {T['e2e_1e7_s']:.0f} s", None, None, "not measured in this run"))

    out += _october_targets(res.get("october") or {})

    sw = res.get("sweep") or {}
    best = max(sw.get("sweeps", []), key=lambda s: s["tasks_per_min"], default=None)
    name = "1,000 one-day scenarios at 1e6 positions (cascade sweep)"
    if best and sw["n"] == 1_000_000 and sw["steps"] == 86_400:
        x = best["extrapolated_1000_s"]
        out.append(_target(name, f"< {T['sweep_1000_s']:.0f} s", f"{x:.0f} s", x < T["sweep_1000_s"],
                           (f"extrapolated from a {sw['tasks']}-task sweep ({sw['depths']} depths x "
                            f"{sw['seeds']} seeds) on {best['workers']} workers: "
                            f"{best['tasks_per_min']:.0f} tasks/min, cluster start-up included; "
                            f"serial loop over cascade.run {sw['serial']['tasks_per_min']:.0f} "
                            "tasks/min")))
    else:
        out.append(_target(name, f"< {T['sweep_1000_s']:.0f} s", None, None,
                           "not measured at 1e6 x 86,400 in this run"))
    return out


def _per_liq_us(row: dict) -> float:
    """Step-loop time per liquidated account, µs (nan when none was)."""
    n = row.get("accounts_liquidated") or 0
    return 1e6 * row["step_loop_s"] / n if n else float("nan")


def _october_targets(oc: dict) -> list:
    """Issue 12's targets on the October scenario, from the october section's rows."""
    T = TARGETS
    rows = {r["n_requested"]: r for r in oc.get("rows", [])}
    a, b = rows.get(1_000_000), rows.get(10_000_000)
    full = oc.get("steps") == 86_400
    out = []
    name = "October: step loop time(1e7) / time(1e6)"
    if a and b:
        ratio = b["step_loop_s"] / a["step_loop_s"]
        out.append(_target(name, f"<= {T['oct_loop_ratio']:.0f}x", f"{ratio:.2f}x",
                           ratio <= T["oct_loop_ratio"],
                           f"{b['step_loop_s']:.3f} s / {a['step_loop_s']:.3f} s; "
                           f"{b['step_loop_ns_per_step']:,.0f} against "
                           f"{a['step_loop_ns_per_step']:,.0f} ns per step (both venues); "
                           f"per liquidated position {_per_liq_us(b):.1f} against "
                           f"{_per_liq_us(a):.1f} µs"))
    else:
        out.append(_target(name, f"<= {T['oct_loop_ratio']:.0f}x", None, None,
                           "not measured in this run"))
    name = "October: 1e7 x 86,400, population + ladder + state + loop + settle + assembly"
    if b and full:
        out.append(_target(name, f"<= {T['oct_phases_1e7_s']:.0f} s (goal 1.5 s)",
                           f"{b['phases_sum_s']:.2f} s", b["phases_sum_s"] <= T["oct_phases_1e7_s"],
                           f"population {b['population_s']:.2f} s, ladder {b['ladder_s']:.2f} s, "
                           f"engine state {b['engine_state_s']:.2f} s, step loop "
                           f"{b['step_loop_s']:.2f} s, settle {b['settle_s']:.2f} s, assembly "
                           f"{b['assembly_s']:.2f} s"))
    else:
        out.append(_target(name, f"<= {T['oct_phases_1e7_s']:.0f} s", None, None,
                           "not measured at 1e7 x 86,400 in this run"))
    name = "October: time(1e7) / time(1e6), end to end"
    if a and b:
        ratio = b["wall_s"] / a["wall_s"]
        out.append(_target(name, f"<= {T['oct_size_ratio']:.0f}x", f"{ratio:.1f}x",
                           ratio <= T["oct_size_ratio"],
                           f"simulate: {b['wall_s']:.2f} s / {a['wall_s']:.2f} s"))
    else:
        out.append(_target(name, f"<= {T['oct_size_ratio']:.0f}x", None, None,
                           "not measured in this run"))
    return out


def run_suite(cfg: Config, argv: list | None = None) -> tuple[dict, dict]:
    """Run the selected sections; return (results, paths written)."""
    from benchmarks import report
    from benchmarks.common import machine_info

    t0 = time.perf_counter()
    res = {"meta": {**machine_info(), "command": " ".join(["python -m benchmarks", *(argv or [])]),
                    "config": cfg.as_dict(), "cpu_busy_before": cpu_busy()}}
    m = res["meta"]
    _say(f"cascade {m['cascade_version']} ({m['git_commit']}) on {m['cpu_model']}, "
         f"{m['cores_available']} cores, {m['numba_threads']} numba threads; sizes "
         f"{', '.join(f'{n:,}' for n in cfg.sizes)} x {cfg.steps:,} steps")
    steps = [
        ("startup", lambda: section_startup(cfg)),
        ("end_to_end", lambda: section_end_to_end(cfg, res)),
        ("october", lambda: section_october(cfg)),
        ("memory", lambda: section_memory(cfg, res)),
        ("steps_scaling", lambda: section_steps_scaling(cfg, res)),
        ("baseline", lambda: section_baseline(cfg)),
        ("threads", lambda: section_threads(cfg)),
        ("sweep", lambda: section_sweep(cfg)),
        ("dexsim", lambda: section_dexsim(cfg)),
    ]
    for name, fn in steps:
        if name not in cfg.sections:
            continue
        try:
            res[name] = fn()
        except Exception as exc:  # noqa: BLE001  (a failed section is reported; the rest run)
            _say(f"[{name}] FAILED: {type(exc).__name__}: {exc}")
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
    res.pop("_e2e_workers", None)
    res["meta"]["cpu_busy_after"] = cpu_busy()
    res["targets"] = evaluate_targets(res)
    res["meta"]["suite_wall_s"] = time.perf_counter() - t0
    paths = report.write(res, cfg.out)
    return res, paths
