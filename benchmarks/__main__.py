"""``python -m benchmarks [--quick] [--sizes 1e5,1e6,1e7] [--steps 86400] [--huge] [--out DIR]``.

Writes ``latest.md``, ``latest.json``, ``scaling.png`` and timestamped copies into
``benchmarks/results/`` (or ``--out DIR``). Exit status 1 if a section failed.
"""

from __future__ import annotations

import argparse
import sys


def _sizes(text: str) -> list:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 1e5,1e6, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    from benchmarks.suite import SECTIONS

    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="Run the cascade benchmarks and write the report "
                                            "(see benchmarks/README.md).")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (2e3, 2e4) x 3,600 steps: a smoke run of every section")
    p.add_argument("--sizes", type=_sizes, help="positions, comma-separated (default 1e5,1e6,1e7)")
    p.add_argument("--steps", type=lambda s: int(float(s)),
                   help="one-second steps of the end-to-end runs (default 86,400 = 24 h)")
    p.add_argument("--huge", action="store_true",
                   help="also 1e8 positions (skipped if the projected peak memory does not fit)")
    p.add_argument("--out", help="output folder (default benchmarks/results)")
    p.add_argument("--repeats", type=int, help="repeats per size (default 3; 1 above 1e7)")
    p.add_argument("--baseline-budget", type=float, dest="baseline_budget",
                   help="seconds the naive baseline may run per size before it is stopped and "
                        "extrapolated (default 600)")
    p.add_argument("--sections", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated subset of: " + ", ".join(SECTIONS))
    p.add_argument("--scenario", help="scenario file (default scenarios/demo.toml)")
    return p


def main(argv=None) -> int:
    from benchmarks.suite import Config, run_suite

    argv = sys.argv[1:] if argv is None else list(argv)
    ns = build_parser().parse_args(argv)
    cfg = Config.make(quick=ns.quick, sizes=ns.sizes, steps=ns.steps, huge=ns.huge, out=ns.out,
                      repeats=ns.repeats, baseline_budget_s=ns.baseline_budget,
                      sections=ns.sections, scenario=ns.scenario)
    res, paths = run_suite(cfg, argv)
    print()
    print("\n".join(_targets_lines(res)))
    print(f"\nwrote {paths['md']}, {paths['json']}" + (f", {paths['plot']}" if "plot" in paths
                                                     else ""))
    failed = [k for k, v in res.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


def _targets_lines(res) -> list:
    from benchmarks.report import targets_table

    return targets_table(res.get("targets", []))


if __name__ == "__main__":
    raise SystemExit(main())
