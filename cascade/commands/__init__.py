"""CLI subcommands: each module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``. :mod:`cascade.cli` lists them in ``SUBCOMMANDS``."""
