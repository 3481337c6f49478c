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


def read_user_text(path: Path, name: str, expected: str) -> str:
    """The text of a user's file, decoded as UTF-8 (a leading byte-order mark is dropped).

    Raises :class:`~cascade.errors.CascadeError` naming ``name`` and ``expected`` when the file is
    missing, not a regular file (a folder, a FIFO, a device: checked before opening, so nothing
    blocks), unreadable, or not UTF-8 (with the line and the byte in it where decoding fails).
    """
    import os
    import stat

    from cascade.errors import CascadeError

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CascadeError(f"{name}: no such file; expected {expected}") from None
    except OSError as exc:
        raise CascadeError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise CascadeError(f"{name}: not a regular file (a directory); expected {expected}")
    if not stat.S_ISREG(mode):
        raise CascadeError(f"{name}: not a regular file (a pipe, socket or device); "
                           f"expected {expected}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CascadeError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CascadeError(
            f"{name}: line {line}, byte {col}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); "
            f"expected {expected} in UTF-8") from None
