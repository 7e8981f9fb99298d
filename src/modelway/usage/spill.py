"""The ledger's spill file: usage records the store could not take, as JSON lines, shared by worker processes.

Several worker processes may share one spill file. Each holds an exclusive flock while it appends, and while it
imports the file, from reading it until it has removed it; a process that finds the file locked does not wait
(the event loop must not block) and tries again later. A process that opened the file and then got the lock
after another one removed it opens the new file instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from .records import UsageRecord, record_from_dict

if sys.platform != "win32":
    import fcntl

__all__ = ["append_lines", "append_spill", "claim_spill"]


def _lock(f: BinaryIO) -> bool:
    if sys.platform == "win32":  # no flock: one process per spill file
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_locked(path: Path, mode: str) -> BinaryIO | None:
    """``path`` opened (``ab`` or ``rb``) and locked; ``None`` while another process holds it."""
    while True:
        f = cast(BinaryIO, open(path, mode))  # noqa: SIM115 (returned open, or closed here)
        try:
            if not _lock(f):
                f.close()
                return None
            if os.path.samestat(os.fstat(f.fileno()), os.stat(path)):
                return f
        except FileNotFoundError:
            pass
        except BaseException:
            f.close()
            raise
        f.close()  # imported and removed meanwhile: open the file that replaced it


def append_spill(path: Path, data: bytes) -> bool:
    """Append ``data`` durably; ``False`` when the file is locked. On an error the file is cut back (no half line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = _open_locked(path, "ab")
    if f is None:
        return False
    with f:
        start = f.seek(0, os.SEEK_END)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(start)
            raise
    return True


def claim_spill(path: Path) -> tuple[BinaryIO, list[UsageRecord], list[bytes]] | None:
    """The spill file (or a journal segment), locked, with its records and the lines that are not records; ``None``:
    no file, or locked."""
    try:
        f = _open_locked(path, "rb")
    except FileNotFoundError:
        return None
    if f is None:
        return None
    records: list[UsageRecord] = []
    rejected: list[bytes] = []
    try:
        for line in f:
            if b"\0" in line:  # a journal segment's unused, zeroed tail (see .journal): the end of its records
                line = line[: line.index(b"\0")]
                if line.strip():  # a record cut short by a crash while it was being written
                    rejected.append(line + b"\n")
                break
            if not line.strip():
                continue
            try:
                records.append(_record_from_json(orjson.loads(line)))
            except (TypeError, ValueError):
                rejected.append(line if line.endswith(b"\n") else line + b"\n")
    except BaseException:
        f.close()
        raise
    return f, records, rejected


def append_lines(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as f:
        f.writelines(lines)


def _record_from_json(obj: Any) -> UsageRecord:
    if not isinstance(obj, dict):
        raise TypeError("not a JSON object")
    return record_from_dict(obj)
