"""``cascade run SCENARIO.toml``: simulate, print a summary, write files and plots."""

from __future__ import annotations

import sys
from pathlib import Path

NAME = "run"
HELP = ("Run a scenario: simulate the cascade, print a summary, write summary.json, steps, "
        "liquidations and positions (parquet), plots and manifest.json into --out, whole.")


def positive_int(text: str) -> int:
    """A whole number >= 0: ``1000000``, ``1_000_000`` or ``1e6``."""
    import argparse
    import math

    t = text.strip().replace("_", "")
    try:
        value = int(t)
    except ValueError:
        try:  # scientific notation, when it names a whole number exactly (benchmarks write 1e6)
            f = float(t)
        except ValueError:
            f = math.nan
        if not (math.isfinite(f) and f == int(f) and abs(f) < 2 ** 53):
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        value = int(f)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """``--threads``: a whole number >= 1; above this machine's cores it is lowered to them, with
    a warning on stderr (numba cannot start more threads than it was configured for)."""
    import argparse

    import numba

    value = positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of threads >= 1, got {text!r}")
    cores = int(numba.config.NUMBA_NUM_THREADS)
    if value > cores:
        print(f"cascade: warning: --threads {value}: this machine runs at most {cores} threads; "
              f"using {cores}", file=sys.stderr)
        value = cores
    return value


def add_arguments(p) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file")
    p.add_argument("--positions", type=positive_int,
                   help="number of synthetic positions (1e6 and 1_000_000 accepted; 0: an empty "
                        "market; too few for [population] max_notional_share is refused)")
    p.add_argument("--seed", type=positive_int, help="random seed")
    p.add_argument("--out", type=Path,
                   help="output folder (default: runs/<scenario name>), replaced whole by the "
                        "new run; it must be empty or a previous run's folder")
    p.add_argument("--no-feedback", action="store_true",
                   help="forced orders do not move the price (the exogenous path only)")
    p.add_argument("--amplification", action="store_true",
                   help="also run without feedback and report drawdown amplification")
    p.add_argument("--threads", type=thread_count,
                   help="numba threads, 1 to the number of cores (default: all cores; more are "
                        "lowered to the cores, with a warning)")
    p.add_argument("--reference", type=Path, metavar="KLINES.csv",
                   help="real path (Binance kline CSV) to overlay and score (path_rmse_pct)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cascade.errors import CascadeError
    from cascade.model.scenario import load_scenario
    from cascade.runner import run

    sc = load_scenario(args.scenario)
    out = args.out or Path("runs") / sc.name
    try:  # before the run, so a bad --out fails at once, not after the simulation
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    res = run(sc, positions=args.positions, seed=args.seed,
              feedback=False if args.no_feedback else None, amplification=args.amplification,
              progress=not args.quiet, threads=args.threads or None, reference=args.reference)
    paths = res.save(out)
    print(res.table())
    print()
    for name, path in paths.items():  # every file written, manifest.json last
        print(f"{name:<20} {path}")
    sys.stdout.flush()
    return 0
