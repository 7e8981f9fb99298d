"""The usage journal: every record is on disk before its request's answer completes, so a killed process loses none.

The ledger writes records to the store in batches, a second or so after their requests ended; a process killed
meanwhile (SIGKILL, the OOM killer, a crash) would lose the batch. So each record is also appended to a journal
file with one ``write`` system call when the ledger receives it. A written file outlives its process: the data is
in the kernel's page cache, and the kernel writes it out whatever happens to the process (only a crash of the
machine itself can lose what was written in its last seconds; no ``fsync`` is made per record).

Layout: a directory of segment files ``journal-<pid>-<random>-<n>.jsonl``, JSON lines (one record each, the spill
file's format). Each process writes its own segments and holds an exclusive ``flock`` on each as long as it lives;
the kernel drops the lock when the process dies, however it dies. A segment is created under a temporary name
and renamed once locked, so no other process can see it unlocked.

Records leave the journal in the order they entered it, as the ledger stores them (or moves them to its spill
file): :meth:`Journal.done` counts them off, oldest first. A segment all of whose records are stored is removed,
or emptied when it is the one being written. At start, :func:`orphans` lists the segments of processes that are
gone (those that can be locked); the ledger imports them like a spill file. The store keeps one row per
``record_id``, so a record that was stored and then replayed (the process died between the two) is stored once.

Cost: one ``orjson.dumps`` and one ``write`` per request, a few microseconds (BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import orjson

from .records import UsageRecord

if sys.platform != "win32":
    import fcntl

__all__ = ["Journal", "orphans"]

log = logging.getLogger("modelway.usage")

_PATTERN = "journal-*.jsonl"


@dataclass(slots=True)
class _Segment:
    path: Path | None
    fd: int | None
    #: records appended to this segment, and those of them not stored yet
    written: int = 0
    pending: int = 0
    #: the file's size after the last whole record (a failed write is cut back to it)
    size: int = 0


class Journal:
    """One process's journal in ``directory``; see the module docstring.

    ``append`` and ``done`` never raise: a journal that cannot write logs an ERROR (once, until it can write again)
    and the records stay in memory only, as they would without a journal.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_records: int = 8192) -> None:
        if segment_records < 1:
            raise ValueError("segment_records must be positive")
        self.directory = Path(directory)
        self.segment_records = segment_records
        self._segments: deque[_Segment] = deque()
        self._tag = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self._failed = False
        self.closed = False

    @property
    def files(self) -> list[Path]:
        """The segment files this journal holds now."""
        return [s.path for s in self._segments if s.path is not None]

    def append(self, rec: UsageRecord) -> None:
        """Write ``rec`` (call it in the order the records are queued for the store)."""
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.written >= self.segment_records:
            seg = self._new_segment()
        seg.written += 1
        seg.pending += 1
        if seg.fd is None:
            return
        line = orjson.dumps(rec) + b"\n"
        try:
            _write_all(seg.fd, line)
        except OSError as exc:
            self._fail(f"cannot write to {seg.path}", exc)
            try:  # no half line left for the next record to be glued onto
                os.ftruncate(seg.fd, seg.size)
            except OSError:
                _close(seg.fd)  # a file we cannot repair is not written again
                seg.fd = None
            return
        seg.size += len(line)

    def done(self, n: int) -> None:
        """The ``n`` oldest records not counted off yet are stored (or spilled): drop them from the journal."""
        segments = self._segments
        while n > 0 and segments:
            seg = segments[0]
            k = min(n, seg.pending)
            seg.pending -= k
            n -= k
            if seg.pending:
                break
            if len(segments) > 1 or seg.written >= self.segment_records:
                segments.popleft()
                self._remove(seg)
            elif seg.fd is not None and seg.written:
                # the segment being written holds nothing unsaved: empty it, and go on writing to it
                try:
                    os.ftruncate(seg.fd, 0)
                    seg.written = seg.size = 0
                except OSError as exc:
                    self._fail(f"cannot empty {seg.path}", exc)

    def close(self) -> None:
        """Stop writing. Segments all of whose records were stored are removed; the others stay for the next start."""
        self.closed = True
        while self._segments:
            seg = self._segments.popleft()
            if seg.pending:
                if seg.fd is not None:
                    os.close(seg.fd)  # (the lock goes with it: the next start imports the file)
                    log.warning("usage journal: %d usage records kept in %s for the next start", seg.pending, seg.path)
            else:
                self._remove(seg)

    def _new_segment(self) -> _Segment:
        self._seq += 1
        final = self.directory / f"journal-{self._tag}-{self._seq}.jsonl"
        tmp = self.directory / f".{final.name}.new"
        fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, final)
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            self._fail(f"cannot create a segment in {self.directory}", exc)
            seg = _Segment(None, None)
        else:
            seg = _Segment(final, fd)
            if self._failed:
                self._failed = False
                log.warning("usage journal: writing again, to %s", final)
        self._segments.append(seg)
        return seg

    def _remove(self, seg: _Segment) -> None:
        try:
            if seg.path is not None:
                seg.path.unlink()
        except OSError as exc:
            self._fail(f"cannot remove {seg.path}", exc)
        finally:
            if seg.fd is not None:
                _close(seg.fd)
                seg.fd = None

    def _fail(self, what: str, exc: OSError) -> None:
        """Log a failure once until the journal works again (a new segment could be made)."""
        if not self._failed:
            self._failed = True
            log.error("usage journal: %s (%s); usage records are kept in memory only until this is fixed", what, exc)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)
    if n < len(data):  # a short write (the disk is nearly full): the rest, or the OSError that explains it
        view = memoryview(data)[n:]
        while view:
            view = view[os.write(fd, view) :]


def _remove_stale_new(directory: Path) -> None:
    """Remove segments a process never finished creating (it died between creating and renaming one: the file is
    empty, nothing was written to it) once no process holds them."""
    for tmp in directory.glob(".journal-*.jsonl.new"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            tmp.unlink()
        except OSError:
            pass  # held by a live process (or gone already)
        finally:
            os.close(fd)


def orphans(directory: str | os.PathLike[str]) -> list[Path]:
    """The segment files in ``directory``, oldest first. Those of live processes are among them: the caller claims
    each with a non-blocking lock before importing it, which fails for a live process's segment."""
    found: list[tuple[float, Path]] = []
    try:
        paths = list(Path(directory).glob(_PATTERN))
        _remove_stale_new(Path(directory))
    except OSError:
        return []
    for p in paths:
        try:
            found.append((p.stat().st_mtime, p))
        except OSError:  # imported and removed by another process meanwhile
            continue
    return [p for _, p in sorted(found)]
