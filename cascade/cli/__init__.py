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
    previous = _stop_on_sigterm()
    try:
        rc = int(args._main(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return rc
    except BrokenPipeError:
        return _broken_pipe()
    except CascadeError as exc:
        print(f"cascade: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cascade: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """SIGTERM ends the command as Ctrl-C does (exit 143 instead of 130), so a run being written
    removes its temporary folder; SIGKILL cannot be caught, and the next run removes it."""
    import signal
    import threading

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, stop)


def _broken_pipe() -> int:
    """The reader of stdout went away (``cascade run ... | head -4``): stop quietly with the
    status of a process ended by SIGPIPE (128 + 13), as other command-line tools do. stdout is
    pointed at /dev/null so Python's own flush at exit does not complain again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


if __name__ == "__main__":
    raise SystemExit(main())
