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


# what a run folder may hold: anything else in --out means it is not a run's folder to replace
RUN_FILES = frozenset({"summary.json", "steps.parquet", "liquidations.parquet",
                       "positions.parquet", "waterfall.png", "liquidation_map.png",
                       "insurance.png", "venues.png", "manifest.json"})


def write_run_folder(out, write: Callable[[Path], dict]) -> dict:
    """Write a whole run folder: ``write(tmp)`` fills a fresh folder ``.NAME.tmp-PID`` beside
    ``out`` and returns {file name: path}; ``manifest.json`` (every file's size and SHA-256) is
    written last; then the folder takes the place of ``out`` in one rename (Linux
    ``renameat2(RENAME_EXCHANGE)``, else two renames). An interruption at any moment leaves
    ``out`` as the previous complete run or the new one (with the fallback, for an instant, no
    folder); leftovers of killed runs (``.NAME.tmp-PID``, ``.NAME.old-PID`` of processes no
    longer alive) are removed by the next run. ``out`` must be absent, empty, or a previous
    run's folder (only :data:`RUN_FILES`): a folder holding anything else is refused, never
    replaced. Returns {file name: final path}."""
    import json
    import os
    import shutil

    from cascade.errors import CascadeError

    out = Path(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CascadeError(f"--out {out}: expected a folder that can be created and written to "
                           f"({exc.strerror or exc})") from None
    remove_leftovers(out)
    if out.exists() and not out.is_dir():
        raise CascadeError(f"--out {out}: is a file; expected a folder for the run's files")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
        if foreign:
            raise CascadeError(f"--out {out}: holds {foreign[0]!r}, which no run writes; expected "
                               "an empty folder or a previous run's folder (it is replaced whole)")
    tmp = parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        names = dict(write(tmp))
        manifest = {name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                    for name, p in sorted(names.items())}
        write_atomic(tmp, "manifest.json",
                     lambda p: p.write_text(json.dumps({"files": manifest}, indent=2) + "\n"))
        names["manifest.json"] = tmp / "manifest.json"
        if out.is_dir():
            if _exchange(tmp, out):
                shutil.rmtree(tmp)  # it now holds the previous run
            else:
                old = parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
                os.rename(tmp, out)
                shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: out / name for name in names}


def remove_leftovers(out) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` / ``.NAME.old-PID`` folders beside ``out`` left by runs whose
    process is gone; returns them."""
    import os
    import re
    import shutil

    out = Path(out)
    gone = []
    if not out.parent.is_dir():
        return gone
    pat = re.compile(rf"^\.{re.escape(out.name)}\.(tmp|old)-(\d+)$")
    for p in out.parent.iterdir():
        m = pat.match(p.name)
        if not m:
            continue
        pid = int(m.group(2))
        if pid != os.getpid() and _alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True)
        gone.append(p)
    return gone


def check_run_folder(out) -> bool:
    """True if ``out`` is a complete run folder: its manifest.json lists every other file, with
    the size and SHA-256 it has."""
    import json

    out = Path(out)
    try:
        files = json.loads((out / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    present = {p.name for p in out.iterdir()} - {"manifest.json"}
    if present != set(files):
        return False
    return all((out / n).stat().st_size == f["bytes"] and _sha256(out / n) == f["sha256"]
               for n, f in files.items())


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    return rc == 0
