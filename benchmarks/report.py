"""Benchmark output: ``latest.md``, ``latest.json``, timestamped copies and ``scaling.png``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path


def fmt_s(x) -> str:
    """Seconds, in the unit that reads best."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x >= 1.0:
        return f"{x:,.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:,.1f} ms"
    return f"{x * 1e6:,.0f} µs"


def fmt_b(x) -> str:
    if x is None:
        return "–"
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= div:
            return f"{x / div:,.1f} {unit}"
    return f"{x:,.0f} B"


def _pct(x) -> str:
    return "–" if x is None else f"{x * 100:.0f}%"


def _table(head, rows) -> list:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _err(sec) -> list:
    return [f"**FAILED**: {sec['error']}", ""] if isinstance(sec, dict) and "error" in sec else []


def targets_table(targets) -> list:
    rows = []
    for t in targets:
        met = {True: "met", False: "**NOT met**", None: "not measured"}[t["met"]]
        rows.append([t["target"], t["goal"], t["measured"] or "–", met, t["note"]])
    return _table(["target", "goal", "measured", "status", "note"], rows)


def to_markdown(res: dict) -> str:
    m = res["meta"]
    cfg = m["config"]
    L = ["# cascade benchmarks", "",
         f"- date: {m['date_utc']}", f"- command: `{m['command']}`",
         (f"- machine: {m['platform']}; CPU {m['cpu_model']}; {m['cores_available']} cores "
          f"available ({m['cpu_count']} CPUs); memory {fmt_b(m['memory_total_bytes'])}"),
         (f"- numba threads: {m['numba_threads']}; Python {m['python']}, numpy {m['numpy']}, "
          f"numba {m['numba']}"),
         f"- cascade {m['cascade_version']}, commit {m['git_commit']}",
         (f"- other load on the machine (share of all CPUs busy while the suite slept 1 s): "
          f"{_pct(m.get('cpu_busy_before'))} before, {_pct(m.get('cpu_busy_after'))} after"),
         (f"- scenario: `{Path(cfg['scenario']).name}` with population.positions and "
          f"scenario.end overridden; feedback on; one-second steps"), ""]
    L += ["## Targets", ""] + targets_table(res.get("targets", []))

    e2e = res.get("end_to_end")
    if e2e is not None:
        L += [f"## End-to-end engine ({cfg['steps']:,} steps)", "",
              ("Fresh process per size; a 1,000-position warm-up run first, so no compilation "
               "is timed. Phases from `summary[\"timings\"]`; total = wall time of `simulate` "
               "(also venue tables and the liquidation map). Median of the repeats."), ""]
        L += _err(e2e)
        rows = [[f"{r['positions']:,}", fmt_s(r["population_s"]), fmt_s(r["ladder_s"]),
                 fmt_s(r.get("engine_state_s")), fmt_s(r["step_loop_s"]),
                 fmt_s(r.get("settle_s")), fmt_s(r["assembly_s"]), fmt_s(r["wall_s"]),
                 f"{r['step_loop_ns_per_step']:,.0f}", f"{r['accounts_liquidated']:,}",
                 f"{r['iterations_total']:,}", r["repeats"]] for r in e2e.get("rows", [])]
        L += _table(["positions", "population", "ladder", "engine state", "step loop", "settle",
                     "assembly", "total", "step loop ns/step", "liquidated", "iterations",
                     "repeats"], rows)
        for s in e2e.get("skipped", []):
            L += [f"- N={s['n_requested']:,}: {s['reason']}"]
        if e2e.get("skipped"):
            L += [""]

    oc = res.get("october")
    if oc is not None:
        L += [f"## October scenario ({oc.get('steps', 0):,} steps, two venues, funding on)", "",
              ("`scenarios/oct2025.toml` at each size, fresh process per size after a warm-up "
               "run. *engine state*: copying the populations into the engine and laying out "
               "the ladder's runs; *step loop*: every step of both venues with the funding "
               "events (paid lazily); *settle*: paying every position the funding it still owes "
               "(once, O(positions)) and the final checks. A step costs O(positions crossed), "
               "so the step loop's cost per step grows with N only as far as the positions "
               "crossed do; October's waterfall crosses a fixed share of all positions, so the "
               "cost per liquidated account is the figure that should stay flat."), ""]
        L += _err(oc)
        rows = [[f"{r['positions']:,}", fmt_s(r["population_s"]), fmt_s(r["ladder_s"]),
                 fmt_s(r["engine_state_s"]), fmt_s(r["step_loop_s"]), fmt_s(r["settle_s"]),
                 fmt_s(r["assembly_s"]), fmt_s(r["wall_s"]),
                 f"{r['step_loop_ns_per_step']:,.0f}", f"{r['accounts_liquidated']:,}",
                 (f"{1e6 * r['step_loop_s'] / r['accounts_liquidated']:,.1f}"
                  if r['accounts_liquidated'] else "–"),
                 f"{r['peak_bytes_per_position']:,.0f}", r["repeats"]]
                for r in oc.get("rows", [])]
        L += _table(["positions", "population", "ladder", "engine state", "step loop", "settle",
                     "assembly", "total", "step loop ns/step", "liquidated",
                     "step loop µs per liquidated", "peak B/position", "repeats"], rows)
        for s in oc.get("skipped", []):
            L += [f"- N={s['n_requested']:,}: {s['reason']}"]
        if oc.get("skipped"):
            L += [""]

    ss = res.get("steps_scaling")
    if ss is not None:
        L += [f"## Scaling with the number of steps (N = {ss.get('n', 0):,})", ""] + _err(ss)
        rows = [[f"{r['steps']:,}", fmt_s(r["population_s"] + r["ladder_s"]),
                 fmt_s(r["step_loop_s"]), fmt_s(r["assembly_s"]), fmt_s(r["wall_s"]),
                 f"{r['step_loop_ns_per_step']:,.0f}"] for r in ss.get("rows", [])]
        L += _table(["steps", "population + ladder", "step loop", "assembly", "total",
                     "step loop ns/step"], rows)

    bl = res.get("baseline")
    if bl is not None:
        L += ["## Naive NumPy baseline vs engine", "",
              ("Same model (`benchmarks/baseline.py`), same population and inputs; the "
               "baseline scans every open position with boolean masks at every step and "
               "iteration, the engine walks the sorted ladder. Step loop only, state allocation "
               "included; engine median of 5. The engine also needs the ladder sort (shown), "
               "which the baseline does not."), ""] + _err(bl)
        rows = []
        for r in bl.get("rows", []):
            if "error" in r:
                rows.append([f"{r['n_requested']:,}", "–", "–", "–", "–", "–", "–", r["error"]])
                continue
            how = (f"extrapolated from {r['baseline_steps_run']:,} steps" if r["extrapolated"]
                   else "measured")
            agree = ("identical" if r.get("agree") else "DIFFER") if "agree" in r else "n/a"
            rows.append([f"{r['positions']:,}", f"{r['steps']:,}", fmt_s(r["engine_s"]),
                         fmt_s(r["ladder_s"]), fmt_s(r["baseline_s"]), how,
                         f"{r['speedup']:,.0f}x ({r['speedup_incl_ladder']:,.0f}x)",
                         (f"{agree}; {r.get('records', 0):,} triggered, "
                          f"{r['iterations_total']:,} iterations")])
        L += _table(["positions", "steps", "engine step loop", "engine ladder sort", "baseline",
                     "baseline", "speed-up (incl. ladder)", "results"], rows)

    th = res.get("threads")
    if th is not None:
        L += ["## Thread scaling", ""] + _err(th)
        if "kernel" in th:
            L += [("Median times (thread counts alternated run by run); speed-up against 1 "
                   "thread, and from the best runs in brackets. The step loop is serial. The "
                   "control kernel is compute only (no memory traffic): its speed-up is what this "
                   "machine gives any kernel at the time."), ""]
            rows = []
            for k in th["threads"]:
                k = str(k)
                kr, pr, cr = th["kernel"][k], th["population"][k], th["control"][k]
                rows.append([k, (f"{fmt_s(kr['median_s'])}: {kr['speedup']:.2f}x "
                                f"[{kr.get('speedup_best', float('nan')):.2f}x]"),
                             f"{fmt_s(pr['wall_s'])}: {pr['speedup']:.2f}x",
                             (f"{fmt_s(cr['median_s'])}: {cr['speedup']:.2f}x "
                             f"[{cr.get('speedup_best', float('nan')):.2f}x]")])
            L += _table(["threads", f"liq_prices_nb, N={th['kernel_n']:,}",
                         f"population build (all of it), N={th['pop_n']:,}",
                         "control kernel"], rows)

    sw = res.get("sweep")
    if sw is not None:
        L += [f"## Sweep throughput ({sw.get('n', 0):,} positions x {sw.get('steps', 0):,} steps "
              "per task)", "",
              (f"A grid of {sw.get('depths')} `market.depth_usd` values x {sw.get('seeds')} seeds "
               f"({sw.get('tasks')} tasks) through `cascade sweep` on a fresh LocalCluster per "
               "worker count (start-up included), against a serial loop over `cascade.run` "
               "(a fresh population per run) in the same process run. A worker reuses the "
               "population of tasks that share it (same seed, another depth). 1,000 tasks: "
               "extrapolated from the measured rate."), ""] + _err(sw)
        if "serial" in sw:
            s = sw["serial"]
            cores = m.get("cores_available") or 1
            rows = [["serial loop over `cascade.run`", f"{s['runs']}", fmt_s(s["wall_s"]),
                     f"{s['tasks_per_min']:.1f}", "1.00x",
                     fmt_s(1000 * 60.0 / s["tasks_per_min"]), fmt_s(s["cpu_s"] / s["runs"]),
                     fmt_s(1000 * s["cpu_s"] / s["runs"] / cores)]]
            for r in sw["sweeps"]:
                rows.append([f"`cascade sweep`, {r['workers']} worker(s)", f"{sw['tasks']}",
                             fmt_s(r["wall_s"]), f"{r['tasks_per_min']:.1f}",
                             f"{r['speedup_vs_serial']:.2f}x",
                             fmt_s(r["extrapolated_1000_s"]), fmt_s(r["cpu_s"] / sw["tasks"]),
                             fmt_s(1000 * r["cpu_s"] / sw["tasks"] / cores)])
            L += _table(["engine", "tasks", "wall", "tasks/min", "vs serial", "1,000 tasks",
                         "CPU per task", f"1,000 tasks on {cores} idle cores (CPU bound)"], rows)
            L += ["The last column divides the CPU time of the processes (the dask workers "
                  "included) by the cores: what 1,000 tasks would take with the cores to "
                  "themselves and no other overhead; the wall times above include whatever "
                  "else the machine ran (see 'other load').", ""]
            L += [f"Rows identical across worker counts: {'yes' if sw['agree_workers'] else 'NO'}; "
                  f"identical to the serial loop's: {'yes' if sw['agree_serial'] else 'NO'}.", ""]

    dx = res.get("dexsim")
    if dx is not None:
        w0 = dx.get("warm") or {}
        shape = (w0.get("paths"), w0.get("traders"), w0.get("steps"))
        cold = ("first with an empty numba cache (everything compiled), then with the cache it "
                "left" if dx.get("cold") else "with a warm numba cache only (--quick)")
        L += ["## dex-sim's workload shape", "",
              ("dex-sim's CLI simulates 2,000 traders on 100 price paths of 7,200 steps in one "
               f"process. Here: the demo at {shape[1] or 0:,} positions over {shape[2] or 0:,} "
               f"one-second steps, seeds 0 to {(shape[0] or 1) - 1} (a population and a noise "
               "path each), a serial loop of `cascade.run` in one fresh process, timed from "
               f"before the imports: {cold}. dex-sim is not installed here: its figure is the "
               "one quoted in issue 12 for this machine, not measured in this run."), ""] + _err(dx)
        if "warm" in dx:
            rows = []
            for label, w in (("cold numba cache", dx["cold"]), ("warm numba cache", dx["warm"])):
                if w is None:
                    continue
                rows.append([label, f"{w['paths']} x {w['traders']:,} x {w['steps']:,}",
                             fmt_s(w["import_s"]), fmt_s(w["first_run_s"]),
                             fmt_s(w["per_path_s"]), fmt_s(w["wall_s"])])
            lo, hi = dx["quoted_dexsim_s"]
            rows.append(["dex-sim (quoted, issue 12)", "100 x 2,000 x 7,200", "", "about 4.6 s JIT",
                         "", f"{lo:.0f}-{hi:.0f} s"])
            L += _table(["engine", "paths x positions x steps", "imports", "first path",
                         "each further path", "whole process"], rows)
            if shape == (100, 2_000, 7_200):
                w = dx["warm"]["wall_s"]
                L += [f"Warm cache: {0.5 * (lo + hi) / w:.1f}x faster than dex-sim's quoted time"
                      + (f"; cold cache: {0.5 * (lo + hi) / dx['cold']['wall_s']:.2f}x."
                         if dx.get("cold") else "."), ""]

    mem = res.get("memory")
    if mem is not None:
        L += ["## Memory", "",
              ("Fresh process per size: peak RSS (`ru_maxrss`) after the first run, minus the "
               "RSS after imports (and, second column, after the warm-up run). Phase peaks from "
               "the second run (VmHWM reset around the population build), over the RSS at its "
               "start."), ""] + _err(mem)
        rows = []
        for r in mem.get("rows", []):
            rows.append([f"{r['positions']:,}", fmt_b(r["peak_bytes"]),
                         f"{r['bytes_per_position']:,.0f}",
                         f"{r['bytes_per_position_after_warmup']:,.0f}",
                         f"{r.get('population_build_peak_per_position', float('nan')):,.0f}",
                         f"{r.get('rest_of_run_peak_per_position', float('nan')):,.0f}",
                         f"{r['population_bytes_per_position']:,.1f}"])
        L += _table(["positions", "peak RSS", "B/position", "B/position (after warm-up)",
                     "population build peak B/pos", "rest of run peak B/pos",
                     "Population arrays B/pos"], rows)

    st = res.get("startup")
    if st is not None:
        L += ["## Start-up", ""] + _err(st)
        if "import" in st:
            imp = st["import"]
            loaded = [k for k, v in imp["loaded_by_import_cascade"].items() if v]
            cold, warm = st["compile_cold"], st["compile_warm"]
            pw = st["process_wall_s"]
            rows = [
                ["`import cascade` (fresh interpreter, median)", fmt_s(imp["import_cascade_s"])],
                ["heavy modules loaded by `import cascade`", ", ".join(loaded) or "none"],
                ["first `cascade.run` attribute access (imports the runner, numpy)",
                 fmt_s(imp["cascade_run_attribute_s"])],
                ["import every cascade module (numba, pandas, matplotlib...)",
                 fmt_s(imp["import_all_modules_s"])],
                ["kernels compiled at import",
                 f"{len(imp['compiled_at_import'])} of {len(imp['kernels'])}"],
                ["process `python -c pass` / `python -c 'import cascade'`",
                 f"{fmt_s(pw['python -c pass'])} / {fmt_s(pw[next(k for k in pw if 'import' in k)])}"],
                ["first tiny run, cold numba cache (compiles)", fmt_s(cold["first_call_s"])],
                ["of which compilation (first minus second call)", fmt_s(cold["compile_s"])],
                ["first tiny run, warm cache (loads machine code)", fmt_s(warm["first_call_s"])],
                ["of which cache loading and one-time set-up", fmt_s(warm["compile_s"])],
                ["tiny run once loaded (1,000 positions x 3,600 steps)",
                 fmt_s(warm["second_call_s"])],
            ]
            L += _table(["measure", "value"], rows)

    if res.get("files", {}).get("plot"):
        L += ["## Scaling curves", "", "![scaling](scaling.png)", ""]
    L += [f"Suite wall time: {fmt_s(m.get('suite_wall_s'))}.", ""]
    return "\n".join(L)


def plot(res: dict, path: Path) -> Path | None:
    """scaling.png: time against N and against the number of steps, log-log."""
    e2e = (res.get("end_to_end") or {}).get("rows") or []
    ss = (res.get("steps_scaling") or {}).get("rows") or []
    if not e2e and not ss and not (res.get("october") or {}).get("rows"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    if e2e:
        n = [r["positions"] for r in e2e]
        a.loglog(n, [r["wall_s"] for r in e2e], "o-", label="total")
        a.loglog(n, [r["population_s"] + r["ladder_s"] for r in e2e], "s--",
                 label="population + ladder")
        a.loglog(n, [r["step_loop_s"] for r in e2e], "^-", label="step loop")
    oc = (res.get("october") or {}).get("rows") or []
    if oc:
        a.loglog([r["positions"] for r in oc], [r["step_loop_s"] for r in oc], "v:",
                 label="step loop, October")
        a.loglog([r["positions"] for r in oc], [r["wall_s"] for r in oc], "D:",
                 label="total, October")
    if e2e or oc:
        a.set_xlabel("positions")
        a.set_ylabel("seconds")
        a.set_title(f"against N ({(e2e or oc)[0]['steps']:,} steps)")
        a.grid(True, which="both", alpha=0.3)
        a.legend()
    if ss:
        s = [r["steps"] for r in ss]
        b.loglog(s, [r["wall_s"] for r in ss], "o-", label="total")
        b.loglog(s, [r["step_loop_s"] for r in ss], "^-", label="step loop")
        b.set_xlabel("steps")
        b.set_title(f"against steps (N = {res['steps_scaling']['n']:,})")
        b.grid(True, which="both", alpha=0.3)
        b.legend()
    fig.suptitle(f"cascade {res['meta']['cascade_version']} on {res['meta']['cpu_model']}, "
                 f"{res['meta']['numba_threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(res: dict, out_dir) -> dict:
    """Write latest.{md,json}, scaling.png and timestamped copies into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = res["meta"]["date_utc"].replace(":", "").replace("+0000", "Z")
    paths = {}
    try:
        p = plot(res, out / "scaling.png")
    except Exception as exc:  # noqa: BLE001  (the numbers matter more than the picture)
        res["plot_error"] = f"{type(exc).__name__}: {exc}"
        p = None
    res["files"] = {"plot": p.name if p else None}
    md = to_markdown(res)
    (out / "latest.md").write_text(md)
    (out / "latest.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    paths["md"], paths["json"] = out / "latest.md", out / "latest.json"
    shutil.copyfile(out / "latest.md", out / f"{stamp}.md")
    shutil.copyfile(out / "latest.json", out / f"{stamp}.json")
    paths["md_stamped"], paths["json_stamped"] = out / f"{stamp}.md", out / f"{stamp}.json"
    if p:
        shutil.copyfile(p, out / f"{stamp}-scaling.png")
        paths["plot"] = p
    return paths
