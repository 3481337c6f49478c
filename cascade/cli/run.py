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
    p.add_argument("--window", metavar="START,END",
                   help="zoom the waterfall on this time span (UTC, e.g. 21:00,21:30 or "
                        "2025-10-10T21:00,2025-10-10T21:30)")
    p.add_argument("--seeds", type=positive_int, metavar="N",
                   help="run seeds S..S+N-1 (S: --seed or the scenario's) as a sweep and print "
                        "the distribution (median, 5%%, 95%%) instead of one path")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=positive_int, metavar="K",
                   help="with --seeds: worker processes (default: all cores; 1: serial)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --seeds: a dask scheduler's address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main_seeds(args, sc, out: Path) -> int:
    """``--seeds N``: the seeds as a sweep (:mod:`cascade.analysis.sweep`) into ``out/seeds``."""
    from cascade.analysis.sweep import save_outputs, sweep
    from cascade.errors import CascadeError
    from cascade.runner import with_run_options

    if args.reference is not None:
        raise CascadeError("--reference: not available with --seeds (it scores one path); "
                           "expected one of them")
    sc = with_run_options(sc, seed=args.seed)
    grid = [("engine.feedback", [False])] if args.no_feedback else []
    res = sweep(sc, seeds=max(1, args.seeds), grid=grid, positions=args.positions,
                workers=args.workers, scheduler=args.scheduler, out=out / "seeds",
                amplification=args.amplification, progress=not args.quiet)
    paths = save_outputs(res)
    print(res.table_markdown())
    print()
    print(f"{len(res.tasks)} seeds ({res.skipped} already done), rows in {res.out}/*.parquet")
    for name, path in paths.items():
        print(f"{name:<20} {path}")
    sys.stdout.flush()
    return 0


def main(args) -> int:
    from cascade.errors import CascadeError
    from cascade.model.scenario import load_scenario
    from cascade.runner import run

    sc = load_scenario(args.scenario)
    window = None
    if args.window:  # before the run, like --out
        from cascade.analysis.heatmap import parse_window

        window = parse_window(args.window, sc)
    out = args.out or Path("runs") / sc.name
    try:  # before the run, so a bad --out fails at once, not after the simulation
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    if args.seeds is not None:
        return main_seeds(args, sc, out)
    if args.workers is not None or args.scheduler is not None:
        raise CascadeError("--workers/--scheduler: only with --seeds N; expected --seeds too")
    from cascade.engine.memory import check_memory
    from cascade.runner import with_run_options

    # the run and the positions it writes, refused before anything is built if they cannot fit
    check_memory(with_run_options(sc, args.positions), save=True)
    res = run(sc, positions=args.positions, seed=args.seed,
              feedback=False if args.no_feedback else None, amplification=args.amplification,
              progress=not args.quiet, threads=args.threads or None, reference=args.reference)
    paths = res.save(out, window=window)
    print(res.table())
    print()
    for name, path in paths.items():  # every file written, manifest.json last
        print(f"{name:<20} {path}")
    sys.stdout.flush()
    return 0
