"""The ``cascade`` command line: ``cascade run``, ``cascade liq-price`` and friends.

User errors (:class:`cascade.errors.CascadeError`, bad arguments) print one line on stderr and
exit with status 2; there is never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module name under cascade.commands, in the order shown by --help
SUBCOMMANDS = ["run", "map", "sweep", "validate", "replay", "sensitivity", "calibrate",
               "liq_price"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default also exits 2, but prints usage first
        self.print_usage(sys.stderr)
        print(f"cascade: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from cascade import __version__

    parser = _Parser(prog="cascade", description="Liquidation cascade simulator for crypto perps.")
    parser.add_argument("--version", action="version", version=f"cascade {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMANDS:
        mod = importlib.import_module(f"cascade.cli.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cascade.errors import CascadeError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except CascadeError as exc:
        print(f"cascade: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cascade: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
