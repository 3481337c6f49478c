"""``cascade validate SCENARIO.toml``: run a scenario on one or more seeds and check its
``[targets.*]`` (see :mod:`cascade.analysis.targets`). Exit status 0 when every target passes and
enough seeds meet all of them at once, 1 otherwise, 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cascade.cli.run import positive_int
from cascade.cli.sweep import add_engine_arguments

NAME = "validate"
HELP = ("Check a scenario against its historical [targets]: run it on K seeds, print each "
        "target's simulated value, bounds and PASS/FAIL, and how many seeds meet all targets "
        "at once.")
EPILOG = ("Exit status: 0 when every target that ran passes (it holds for the first seed S and "
          "for at least ceil(SHARE * K) seeds) AND at least ceil(SHARE * K) seeds meet all of "
          "them at once (the joint count, in the closing line); 1 otherwise; 2 on bad input. "
          "path_rmse_pct targets need --reference and are SKIPPED without it: a skipped target "
          "neither fails nor enters the joint count.")


def _seeds(text: str) -> int:
    import argparse

    value = positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _seed_start(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _share(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def add_arguments(p) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file with [targets.NAME] tables")
    p.epilog = EPILOG
    p.add_argument("--seeds", type=_seeds, default=1, metavar="K",
                   help="run seeds S, S+1, ..., S+K-1 where S is the scenario's seed or "
                        "--seed-start (default 1)")
    p.add_argument("--seed-start", type=_seed_start, metavar="S",
                   help="first seed (default: the scenario's [scenario] seed), e.g. 1000000 for "
                        "seeds never used in tuning; the 'holds for the first seed' rule then "
                        "applies to S")
    p.add_argument("--reference", type=Path, action="append", default=[], metavar="FILE",
                   help="Binance 1-minute kline CSV of the real path, for path_rmse_pct targets "
                        "(repeatable: each scenario uses the file covering its window); "
                        "without it those targets are skipped")
    p.add_argument("--positions", type=positive_int, metavar="N",
                   help="number of synthetic positions (default: the scenario's)")
    p.add_argument("--min-pass-share", type=_share, default=0.9, metavar="SHARE",
                   help="a target passes when it holds for the first seed and for at least "
                        "ceil(SHARE * K) seeds; the scenario also needs ceil(SHARE * K) seeds "
                        "meeting all targets at once (default 0.9)")
    add_engine_arguments(p)
    p.add_argument("--no-flows", action="store_true",
                   help="stability check instead of the targets: remove every [[flows]] and "
                        "[[wicks]] and require, on every seed, liquidations at most 1%% of open "
                        "interest and a drawdown at most 1.25x the same seed's drawdown with "
                        "feedback off")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cascade.analysis.targets import validate

    if args.no_flows:
        from cascade.analysis.calm import calm_check

        calm = calm_check(args.scenario, seeds=args.seeds, positions=args.positions,
                          progress=not args.quiet, seed_start=args.seed_start,
                          workers=args.workers, scheduler=args.scheduler)
        print(json.dumps(calm.to_dict(), indent=2) if args.json else calm.table())
        sys.stdout.flush()
        return 0 if calm.passed else 1
    report = validate(args.scenario, seeds=args.seeds, positions=args.positions,
                      min_pass_share=args.min_pass_share, progress=not args.quiet,
                      seed_start=args.seed_start, references=args.reference,
                      workers=args.workers, scheduler=args.scheduler)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
    sys.stdout.flush()
    return 0 if report.passed else 1
