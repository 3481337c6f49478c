"""``cascade map SCENARIO.toml``: run with the liquidation heatmap recorded from the live ladder;
write heatmap.parquet and heatmap.png (and ladder.png with ``--at``)."""

from __future__ import annotations

import sys
from pathlib import Path

from cascade.cli.run import positive_int

NAME = "map"
HELP = ("Liquidation heatmap: notional that would be liquidated at each price level over time, "
        "from the live ladder of a run (heatmap.parquet, heatmap.png).")


def positive_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def add_arguments(p) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file")
    p.add_argument("--at", metavar="TIME",
                   help="also draw the ladder at this instant (UTC, e.g. 21:15 or "
                        "2025-10-10T21:15) as a horizontal profile: ladder.png")
    p.add_argument("--out", type=Path, help="output folder (default: runs/<scenario name>)")
    p.add_argument("--positions", type=positive_int, help="number of synthetic positions")
    p.add_argument("--seed", type=positive_int, help="random seed")
    p.add_argument("--bins", type=positive_int, default=240,
                   help="price bins over the start price +/- 30%% (default 240)")
    p.add_argument("--every", type=positive_float, metavar="SECONDS",
                   help="seconds between ladder snapshots (default: whole minutes, about 300 "
                        "snapshots per run)")
    p.add_argument("--window", metavar="START,END", help="zoom the chart on this time span")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cascade.analysis.heatmap import HeatmapSpec, parse_instant, parse_window
    from cascade.errors import CascadeError
    from cascade.io.files import write_atomic
    from cascade.model.scenario import load_scenario
    from cascade.runner import run

    sc = load_scenario(args.scenario)
    if args.bins < 1:
        raise CascadeError(f"--bins {args.bins}: expected a whole number >= 1")
    at = parse_instant(args.at, sc, "--at") if args.at else None  # fail before the run
    window = parse_window(args.window, sc) if args.window else None
    out = args.out or Path("runs") / sc.name
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    spec = HeatmapSpec(bins=args.bins, every_s=args.every, at=(at,) if at is not None else ())
    res = run(sc, positions=args.positions, seed=args.seed, progress=not args.quiet,
              heatmap=spec)
    hm = res.heatmap
    paths = {"heatmap.parquet": write_atomic(out, "heatmap.parquet",
                                             lambda p: hm.to_parquet(p, index=False)),
             "heatmap.png": write_atomic(out, "heatmap.png",
                                         lambda p: res.plot("heatmap", p, window=window))}
    if at is not None:
        paths["ladder.png"] = write_atomic(out, "ladder.png",
                                           lambda p: res.plot("heatmap", p, at=at))
    n_snap = hm["time"].nunique()
    print(f"{sc.name}: {n_snap} ladder snapshots x {args.bins} price bins of "
          f"${hm.attrs['bin_width_usd']:,.2f}, every {hm.attrs['every_s']:g} s")
    for name, path in paths.items():
        print(f"{name:<20} {path}")
    sys.stdout.flush()
    return 0
