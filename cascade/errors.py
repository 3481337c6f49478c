"""Errors a user can cause, reported as one clear line and a non-zero exit by the CLI."""


class CascadeError(Exception):
    """Bad input from a user: a scenario file, a CLI argument or a data file.

    The message names the file (when there is one), the key or line, and what was expected.
    The CLI prints it without a traceback and exits with status 2.
    """
