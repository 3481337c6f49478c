"""``cascade calibrate SCENARIO... --params KEY,...``: fit parameters shared by several events to
all their [targets] at once (see :mod:`cascade.analysis.calibrate`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from cascade.cli.run import positive_int

NAME = "calibrate"
HELP = ("Fit parameters shared by several events (e.g. the [market] law) to all their [targets] "
        "at once with scipy's differential evolution; writes market.toml, fit.md and fit.json.")
EPILOG = ("Objective: each target's miss (0 inside its bounds, else the distance to the nearest "
          "bound over the band's width, or over |bound| for a one-sided target, at most 1; 1 "
          "when undefined) summed over events, targets and seeds, plus --margin-weight times each "
          "target's margin use (0 at the middle of its band, 1 at a bound), which picks the "
          "middle of a region where no target misses. Deterministic: a fixed list of "
          "seeds and a fixed optimiser seed; --workers changes the speed, not the result.")


def add_arguments(p) -> None:
    from cascade.cli.validate import _seed_start, _seeds

    p.epilog = EPILOG
    p.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO",
                   help="scenario TOML files with [targets.NAME] tables (the events)")
    p.add_argument("--params", required=True, metavar="KEY[=LOW:HIGH],...",
                   help="dotted scenario keys to fit, shared by every event, e.g. "
                        "market.impact_exponent,market.depth_usd=1e8:4e8; bounds default to "
                        "the schema's range (a key it leaves unbounded needs =LOW:HIGH)")
    p.add_argument("--reference", type=Path, action="extend", nargs="+", default=[],
                   metavar="FILE", help="1-minute kline CSVs for path_rmse_pct targets; each "
                   "event uses the file covering its window, and skips the target without one")
    p.add_argument("--seeds", type=_seeds, default=3, metavar="K",
                   help="seeds per event: S..S+K-1, S the scenario's seed (default 3)")
    p.add_argument("--seed-start", type=_seed_start, metavar="S",
                   help="first seed of every event instead of the scenario's")
    p.add_argument("--positions", type=positive_int, metavar="N",
                   help="synthetic positions per run (default: each scenario's)")
    p.add_argument("--maxiter", type=_seeds, default=20, metavar="N",
                   help="generations of differential evolution (default 20)")
    p.add_argument("--popsize", type=_seeds, default=5, metavar="N",
                   help="individuals per fitted parameter in a generation (default 5)")
    p.add_argument("--margin-weight", type=_margin_weight, default=None, metavar="W",
                   help="weight of the margin term in the objective (default 0.02; 0: misses "
                        "only)")
    p.add_argument("--workers", type=_seeds, default=1, metavar="W",
                   help="processes running the seeds of one parameter set (default 1)")
    p.add_argument("--out", type=Path, default=Path("runs") / "calibrate", metavar="DIR",
                   help="output folder (default runs/calibrate)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _margin_weight(text: str) -> float:
    import argparse
    import math

    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def main(args) -> int:
    from cascade.analysis.calibrate import MARGIN_WEIGHT, calibrate, parse_params, stderr_log
    from cascade.errors import CascadeError

    params = parse_params(args.params, option="--params")
    try:  # before the runs, so a bad --out fails at once, not after them
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {args.out}: expected a folder that can be created and "
                           f"written to ({exc.strerror or exc})") from None
    command = "cascade " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] \
        else "cascade calibrate"
    fit = calibrate(args.scenarios, params, seeds=args.seeds, seed_start=args.seed_start,
                    positions=args.positions, references=args.reference, maxiter=args.maxiter,
                    popsize=args.popsize, workers=args.workers, command=command,
                    margin_weight=(MARGIN_WEIGHT if args.margin_weight is None
                                   else args.margin_weight),
                    log=None if args.quiet else stderr_log)
    paths = fit.save(args.out)
    print(fit.markdown())
    for name, path in paths.items():
        print(f"{name:<12} {path}")
    sys.stdout.flush()
    return 0
