"""``cascade validate SCENARIO.toml``: run a scenario on one or more seeds and check its
``[targets.*]`` (see :mod:`cascade.analysis.targets`). Exit status 0 when every target passes, 1 when one
fails, 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cascade.cli.run import positive_int

NAME = "validate"
HELP = ("Check a scenario against its historical [targets]: run it on K seeds, print each "
        "target's simulated value, bounds and PASS/FAIL.")


def _seeds(text: str) -> int:
    import argparse

    value = positive_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
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
    p.add_argument("--seeds", type=_seeds, default=1, metavar="K",
                   help="run seeds S, S+1, ..., S+K-1 where S is the scenario's seed (default 1)")
    p.add_argument("--positions", type=positive_int, metavar="N",
                   help="number of synthetic positions (default: the scenario's)")
    p.add_argument("--min-pass-share", type=_share, default=0.9, metavar="SHARE",
                   help="a target passes when it holds for the scenario's seed and for at least "
                        "ceil(SHARE * K) seeds (default 0.9)")
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
                          progress=not args.quiet)
        print(json.dumps(calm.to_dict(), indent=2) if args.json else calm.table())
        sys.stdout.flush()
        return 0 if calm.passed else 1
    report = validate(args.scenario, seeds=args.seeds, positions=args.positions,
                      min_pass_share=args.min_pass_share, progress=not args.quiet)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.table())
    sys.stdout.flush()
    return 0 if report.passed else 1
