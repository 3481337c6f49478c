"""``cascade replay SCENARIO.toml --klines FILE.csv``: liquidations along a real price path."""

from __future__ import annotations

import sys
from pathlib import Path

from cascade.cli.run import positive_int, thread_count

NAME = "replay"
HELP = ("Drive the scenario's population along a kline path (no feedback) and report the "
        "liquidations along it.")


def add_arguments(p) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file (its population and window)")
    p.add_argument("--klines", type=Path, required=True, metavar="FILE.csv",
                   help="Binance kline CSV covering the scenario window (data.binance.vision "
                        "format)")
    p.add_argument("--positions", type=positive_int, help="number of synthetic positions")
    p.add_argument("--seed", type=positive_int, help="random seed")
    p.add_argument("--out", type=Path,
                   help="output folder (default: runs/<scenario name>-replay), replaced whole by "
                        "the new run; it must be empty or a previous run's folder")
    p.add_argument("--threads", type=thread_count,
                   help="numba threads, 1 to the number of cores (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cascade.analysis.replay import replay
    from cascade.errors import CascadeError
    from cascade.model.scenario import load_scenario

    sc = load_scenario(args.scenario)
    out = args.out or Path("runs") / f"{sc.name}-replay"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    res = replay(sc, args.klines, positions=args.positions, seed=args.seed,
                 progress=not args.quiet, threads=args.threads or None)
    paths = res.save(out)
    print(f"replay of {args.klines} (no feedback, mark = last price)")
    print(res.table())
    print()
    for name, path in paths.items():  # every file written, manifest.json last
        print(f"{name:<20} {path}")
    sys.stdout.flush()
    return 0
