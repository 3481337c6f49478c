"""Round 3 probes (docs/calibration/README.md): run October and/or February on a few seeds with
law overrides and news-flow sizes, and print every target's value (``!`` marks a miss).

    python docs/calibration/round3_probe.py '{"market.depth_liq_sensitivity": 800}' 0,1,2,3 \
        1000000 '{"oct2025": [null, null, 1.5e-3, 2.2e-3]}'

Arguments: law/population overrides (JSON, ``section.key``), seed offsets from each event's
default seed, positions, and per event either a list of ``oi_share_per_min`` (one per
[[flows]] entry, null keeps it) or a factor on every sell flow. EVS=oct2025 (environment) picks
the events. Two worker processes. ``path_rmse`` needs the candles: REFS=FILE[,FILE...] (environment,
Binance 1-minute klines, never in the repository) gives them; without, it is reported as None.
"""
import copy
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_SEED = {"oct2025": 20251010, "feb2026": 20260205}


def one(job):
    os.environ.setdefault("CASCADE_THREADS", "1")
    from cascade.analysis.targets import parse_targets
    from cascade.model.scenario import load_scenario, parse_scenario
    from cascade.runner import run

    ev, over, seed, positions, flows = job
    sc = load_scenario(ROOT / "scenarios" / f"{ev}.toml")
    if over:
        sc = sc.with_overrides(**over)
    if flows not in (None, 1.0):
        raw = copy.deepcopy(sc.raw)
        for i, f in enumerate(raw.get("flows", [])):
            if isinstance(flows, list):
                if i < len(flows) and flows[i] is not None:
                    f["oi_share_per_min"] = flows[i]
            elif f.get("side") == "sell":
                f["oi_share_per_min"] *= flows
        sc = parse_scenario(raw, source=str(sc.path), base_dir=sc.path.parent, path=sc.path)
    t = time.time()
    res = run(sc, positions=positions, seed=seed, amplification=True)
    if os.environ.get("REFS"):
        from cascade.analysis.targets import pick_reference, read_references

        frame, _ = pick_reference(sc, parse_targets(sc),
                                  read_references(os.environ["REFS"].split(",")), required=False)
        if frame is not None:
            res.add_reference(frame)
    out = {}
    for tg in parse_targets(sc):
        try:
            v = tg.compute(res)
        except Exception:  # a metric that needs the candles
            v = None
        out[tg.name] = (v if not hasattr(v, "isoformat") else v.strftime("%m-%d %H:%M"),
                        tg.check(v))
    s = res.summary
    out["_dd"] = round(s["max_drawdown_pct"], 2)
    out["_liq"] = round(s["liquidated_notional_usd"] / 1e9, 3)
    out["_t"] = round(time.time() - t, 1)
    return ev, seed, out


if __name__ == "__main__":
    over = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    seeds = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "0").split(",")]
    positions = int(sys.argv[3]) if len(sys.argv) > 3 else 50000
    flows = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    events = os.environ.get("EVS", "oct2025,feb2026").split(",")
    jobs = [(ev, over, BASE_SEED[ev] + s, positions, flows.get(ev)) for ev in events
            for s in seeds]
    with ProcessPoolExecutor(2) as ex:
        for ev, seed, out in ex.map(one, jobs):
            flag = " ".join(
                f"{k}={'%.4g' % v[0] if isinstance(v[0], float) else v[0]}{'' if v[1] else '!'}"
                for k, v in out.items() if not k.startswith("_"))
            print(ev, seed, {k: v for k, v in out.items() if k.startswith("_")}, flag, flush=True)
