"""``cascade sensitivity SCENARIO.toml``: one-at-a-time sensitivity, tornado chart and table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cascade.cli.run import positive_int
from cascade.cli.sweep import add_engine_arguments

NAME = "sensitivity"
HELP = ("One-at-a-time sensitivity: rerun a scenario with each assumed parameter at -/+ step "
        "and chart the effect on drawdown and liquidations (tornado).")


def add_arguments(p) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file")
    p.add_argument("--positions", type=positive_int, help="number of synthetic positions")
    p.add_argument("--seed", type=positive_int, help="random seed (the same for every run)")
    p.add_argument("--params", metavar="A,B,...",
                   help="parameters to vary (default: all assumed ones), comma-separated")
    p.add_argument("--step", default="0.5", metavar="FRACTION",
                   help="relative variation: runs at (1 - step) and (1 + step) times each value "
                        "(default 0.5)")
    p.add_argument("--out", type=Path,
                   help="output folder (default: runs/<scenario name>/sensitivity)")
    add_engine_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from cascade.analysis.sensitivity import check_step, resolve_params, sensitivity
    from cascade.errors import CascadeError
    from cascade.model.scenario import load_scenario

    step = check_step(args.step, option="--step")
    sc = load_scenario(args.scenario)
    params = resolve_params(args.params, option="--params") if args.params is not None else None
    out = args.out or Path("runs") / sc.name / "sensitivity"
    try:  # before the runs, so a bad --out fails at once, not after them
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    res = sensitivity(sc, params=params, step=step, positions=args.positions,
                      seed=args.seed, progress=not args.quiet, workers=args.workers,
                      scheduler=args.scheduler)
    paths = res.save(out)
    if args.json:
        doc = res.to_dict()
        doc["files"] = {k: str(v) for k, v in paths.items()}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(res.table_markdown())
        for name in ("sensitivity.md", "sensitivity.json", "tornado.png"):
            print(f"{name:<18} {paths[name]}")
    sys.stdout.flush()
    return 0
