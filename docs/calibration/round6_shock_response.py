"""Round 6 (docs/calibration/README.md): how deep does one sell shock take October's market?

October's population and the shared law, every flow of the event replaced by one news shock: a
sell flow of ``r`` (share of open interest per minute) for ``D`` minutes from 20:50 UTC. For
each shock this prints and tabulates the low and the price at the end of the run (both relative
to the 20:50 price), the amplification (drawdown with feedback over without, same seed) and the
share of open interest liquidated, under the shared law as it is and under round 5's law (before round 6 changed it).

    python docs/calibration/round6_shock_response.py [POSITIONS] [SEEDS]
    python docs/calibration/round6_shock_response.py plot    # redraw from the CSV

Defaults: 300,000 positions, seeds 1,2,3 (none of them used in any calibration). Two worker
processes. Writes docs/calibration/round6/shock_response.csv and shock_response.png. About four
minutes on two cores.

Why: a law for every crash must let more selling take the price further. A counter-trend bid
that grows without bound below a slow average is a wall: past it no shock of any size moves the
price, and a deep crash cannot be reproduced with a sensible shock.
"""
import copy
import datetime as dt
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "calibration" / "round6"
START = dt.datetime(2025, 10, 10, 20, 50, tzinfo=dt.timezone.utc)
RATES = (0.0005, 0.001, 0.002, 0.004, 0.008)  # share of open interest per minute
DURATIONS = (10.0, 60.0, 180.0)  # minutes
# the shared law as it is, and round 5's law (its keys as they were before round 6)
ROUND5 = {"dip_buy_reference": "average", "permanent_depth": "current",
          "permanent_share": 0.12568044561093933, "dip_buy_threshold_pct": 7.863,
          "depth_liq_sensitivity": 976.0924160875036}
VARIANTS = {
    "shared law (round 6: dip buyers against the fair price)": {},
    "round 5 law (dip buyers against a 6 h average)": ROUND5,
}


def one(job):
    os.environ.setdefault("CASCADE_THREADS", "1")
    from cascade.model.scenario import load_scenario, parse_scenario
    from cascade.runner import run

    variant, r, d, seed, positions = job
    sc = load_scenario(ROOT / "scenarios" / "oct2025.toml")
    raw = copy.deepcopy(sc.raw)
    raw["flows"] = [{"label": "shock", "start": START, "duration_min": d,
                     "oi_share_per_min": r, "side": "sell"}]
    if VARIANTS[variant]:
        raw.setdefault("market", {}).update(VARIANTS[variant])
    sc = parse_scenario(raw, source=str(sc.path), base_dir=sc.path.parent, path=sc.path)
    res = run(sc, positions=positions, seed=seed, amplification=True)
    price = res.steps["last_price"]
    p0 = float(price.loc[:START].iloc[-1])
    m = res.summary
    return {"variant": variant, "oi_share_per_min": r, "duration_min": d,
            "total_oi_share": r * d, "seed": seed,
            "low_pct": 100.0 * (float(price.loc[START:].min()) / p0 - 1.0),
            "end_pct": 100.0 * (float(price.iloc[-1]) / p0 - 1.0),
            "amplification": float(m["amplification"]),
            "liquidated_oi_pct": 100.0 * m["liquidated_notional_usd"] / m["open_interest_start_usd"]}


def main():
    import pandas as pd

    if sys.argv[1:2] == ["plot"]:  # redraw from the table of an earlier run
        df = pd.read_csv(OUT / "shock_response.csv")
        med = df.groupby(["variant", "duration_min", "oi_share_per_min"]).median(numeric_only=True)
        plot(med.reset_index(), OUT / "shock_response.png", 300_000, [1, 2, 3])
        return
    positions = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    seeds = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1, 2, 3]
    jobs = [(v, r, d, s, positions) for v in VARIANTS for d in DURATIONS for r in RATES
            for s in seeds]
    rows = []
    with ProcessPoolExecutor(2) as ex:
        for row in ex.map(one, jobs):
            rows.append(row)
            print(f"{row['variant'][:24]:24s} r={100 * row['oi_share_per_min']:.2f}%/min "
                  f"D={row['duration_min']:.0f} min seed={row['seed']}: low "
                  f"{row['low_pct']:.1f}%, end {row['end_pct']:.1f}%, amplification "
                  f"{row['amplification']:.2f}x, liquidated {row['liquidated_oi_pct']:.2f}% of OI",
                  flush=True)
    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "shock_response.csv", index=False, float_format="%.6g")
    med = df.groupby(["variant", "duration_min", "oi_share_per_min"]).median(numeric_only=True)
    print(med[["low_pct", "end_pct", "amplification", "liquidated_oi_pct"]].round(2).to_string())
    plot(med.reset_index(), OUT / "shock_response.png", positions, seeds)


def plot(med, path, positions, seeds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, col, title in ((axes[0], "low_pct", "low after 20:50"),
                           (axes[1], "end_pct", "price at the end of the run")):
        for (variant, d), g in med.groupby(["variant", "duration_min"]):
            style = "-" if variant.startswith("shared") else "--"
            color = f"C{DURATIONS.index(d)}"
            ax.plot(100 * g["total_oi_share"], g[col], style, marker="o", color=color,
                    label=f"{variant}, {d:.0f} min")
        ax.set_xscale("log")
        ax.set_xlabel("selling, % of open interest in all")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% from the 20:50 price")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"October's market, one sell shock from 20:50 (median of seeds {seeds}, "
                 f"{positions:,} positions)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
