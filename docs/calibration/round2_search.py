"""Calibration round 2, step 1: search the shared law and one scale per event's news flows.

`cascade calibrate` fits keys every event shares; the size of each event's news selling is a
fact of that event, so it cannot be a shared key. This script (run once, by hand; not part of
the package or the tests) searched both at once with scipy's differential evolution over the
same objective as `cascade calibrate` (:func:`cascade.analysis.calibrate.total_miss`). Its best
point set the `oi_share_per_min` of the scenarios' flows; `cascade calibrate` then fitted the
law with those flows fixed (docs/calibration/README.md has both commands).

    python docs/calibration/round2_search.py OCT_KLINES.csv FEB_KLINES.csv [POSITIONS] [SEEDS]

Scaled flows: October's "100% tariff post" and "selling goes on" (one scale) and "afternoon
de-risking" (another); February's two legs (one scale) and the final flush (another).
"""

import copy
import json
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy.optimize import differential_evolution

from cascade.analysis.calibrate import Event, evaluate_events, prepare_events, total_miss
from cascade.model.scenario import parse_scenario

# (key, low, high, search in log space)
PARAMS = [("market.depth_vol_sensitivity", 0.1, 10, True),
          ("market.depth_liq_sensitivity", 500, 10000, True),
          ("market.depth_floor", 0.03, 0.2, True),
          ("market.depth_liq_threshold", 5e-5, 3e-3, True),
          ("market.permanent_share", 0.03, 0.4, True),
          ("market.resilience_half_life_s", 100, 1200, True),
          ("market.depth_memory_s", 30, 600, True),
          ("market.dip_buy_threshold_pct", 3, 15, False),
          ("market.dip_buy_depth_share_per_pct", 0.005, 0.5, True),
          ("market.reference_half_life_s", 1800, 43200, True),
          ("oct_news", 0.3, 2.5, True), ("oct_drift", 0.7, 1.5, False),
          ("feb_legs", 0.6, 2.0, False), ("feb_flush", 0.3, 2.0, True)]
# flow indices each scale multiplies
SCALES = {"oct2025": {"oct_news": [2, 3], "oct_drift": [1]},
          "feb2026": {"feb_legs": [1, 2], "feb_flush": [3]}}


def decode(x) -> dict:
    return {n: float(np.exp(v)) if lg else float(v) for (n, _, _, lg), v in zip(PARAMS, x)}


def scaled(event: Event, d: dict) -> Event:
    raw = copy.deepcopy(event.scenario.raw)
    for name, flows in SCALES[event.name].items():
        for i in flows:
            raw["flows"][i]["oi_share_per_min"] *= d[name]
    sc = parse_scenario(raw, source=str(event.scenario.path), base_dir=event.scenario.path.parent,
                        path=event.scenario.path)
    return Event(sc, event.targets, event.seeds, event.reference, event.skipped)


def main() -> None:
    refs = sys.argv[1:3]
    positions = int(sys.argv[3]) if len(sys.argv) > 3 else 150_000
    seeds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    base = prepare_events(["scenarios/oct2025.toml", "scenarios/feb2026.toml"], seeds, refs)
    pool = ProcessPoolExecutor(2)
    best = [np.inf]

    def objective(x) -> float:
        d = decode(x)
        law = {k: v for k, v in d.items() if k.startswith("market.")}
        law["market.news_permanent_share"] = 1.0
        events = [scaled(e, d) for e in base]
        miss = total_miss(events, evaluate_events(events, law, positions, executor=pool))
        if miss < best[0]:
            best[0] = miss
            print(f"objective {miss:.3f} at {json.dumps(d)}", flush=True)
        return miss

    bounds = [(np.log(lo), np.log(hi)) if lg else (lo, hi) for _, lo, hi, lg in PARAMS]
    r = differential_evolution(objective, bounds, popsize=4, maxiter=40, seed=1, polish=False,
                               tol=0, init="sobol", updating="immediate")
    print("best", r.fun, json.dumps(decode(r.x)))


if __name__ == "__main__":
    main()
