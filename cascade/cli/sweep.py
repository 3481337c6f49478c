"""``cascade sweep SCENARIO.toml``: many (parameter set, seed) runs on dask, one Parquet row each,
then a table per grid point, a fan chart and histograms (see :mod:`cascade.analysis.sweep`)."""

from __future__ import annotations

import sys
from pathlib import Path

from cascade.cli.run import positive_int

NAME = "sweep"
HELP = ("Sweep a scenario over seeds and parameters (--grid, --sample) on local worker processes "
        "or a dask scheduler; one Parquet row per run, a table per grid point, a fan chart.")


def add_engine_arguments(p) -> None:
    """--workers / --scheduler, shared by every multi-run command."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=positive_int, metavar="K",
                   help="worker processes on this machine (default: all cores; 1: serial, in "
                        "this process)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing dask scheduler, e.g. tcp://127.0.0.1:8786")


def add_arguments(p) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                   help="seeds S, S+1, ..., S+N-1 per grid point, S the scenario's seed "
                        "(default 1)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a scenario key and its values, e.g. market.depth_usd=3e7,4.5e7; "
                        "repeat to cross several keys")
    p.add_argument("--sample", action="append", default=[], metavar="KEY=LOW:HIGH",
                   help="a key drawn from [LOW, HIGH] by a Latin hypercube (with --samples)")
    p.add_argument("--samples", type=positive_int, metavar="M",
                   help="number of Latin hypercube points over the --sample keys")
    p.add_argument("--positions", type=positive_int, metavar="N",
                   help="number of synthetic positions (default: the scenario's)")
    add_engine_arguments(p)
    p.add_argument("--amplification", action="store_true",
                   help="also run each task without feedback and report amplification")
    p.add_argument("--out", type=Path,
                   help="dataset folder (default: runs/<scenario name>/sweep)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cascade.analysis.sweep import parse_grid, parse_sample, save_outputs, sweep
    from cascade.model.scenario import load_scenario

    grid = parse_grid(args.grid)
    sample = parse_sample(args.sample)
    sc = load_scenario(args.scenario)
    out = args.out or Path("runs") / sc.name / "sweep"
    res = sweep(sc, seeds=args.seeds, grid=grid, sample=sample, samples=args.samples,
                positions=args.positions, workers=args.workers, scheduler=args.scheduler,
                out=out, amplification=args.amplification, progress=not args.quiet)
    paths = save_outputs(res)
    print(res.table_markdown())
    print()
    print(f"{len(res.tasks)} tasks ({res.skipped} already done), rows in {res.out}/*.parquet")
    for name, path in paths.items():
        print(f"{name:<16} {path}")
    sys.stdout.flush()
    return 0
