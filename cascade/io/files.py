"""Writing result files so that an interrupted run never leaves a truncated one behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def write_atomic(folder: Path, name: str, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name in ``folder``, then rename it to ``name``.

    The temporary file is removed if ``write`` fails. Returns the final path."""
    final = folder / name
    tmp = folder / (f".{name}.tmp" + final.suffix)
    try:
        write(tmp)
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
