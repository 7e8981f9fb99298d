"""The usage journal: every record is on disk before its request's answer completes, so a killed process loses none.

The ledger writes records to the store in batches, a second or so after their requests ended; a process killed
meanwhile (SIGKILL, the OOM killer, a crash) would lose the batch. So each record is also copied, when the ledger
receives it, into a journal file mapped into memory (``mmap``, shared): the file's pages belong to the kernel's page
cache, not to the process, so what was copied outlives the process however it dies, and the kernel writes it out
(only a crash of the machine itself can lose the last seconds; nothing is ``fsync``-ed per record). A copy into the
map costs a fraction of a ``write`` system call (BENCHMARKS.md, decision 16).

Layout: a directory of segment files ``journal-<pid>-<random>-<n>.jsonl`` of a fixed size (``segment_bytes``),
reserved on disk when made (so a full disk is found then, not as a SIGBUS when a page is first written), holding
JSON lines (one record each, the spill file's format) followed by zeros. Each process writes its own segments and
holds an exclusive ``flock`` on each as long as it lives; the kernel drops the lock when the process dies, however
it dies. A segment is created under a temporary name and renamed once locked, so no other process can see it
unlocked.

Records leave the journal in the order they entered it, as the ledger stores them (or moves them to its spill
file): :meth:`Journal.done` counts them off, oldest first. A segment all of whose records are stored is removed,
or zeroed and written again from its start when it is the one being written. At start, :func:`orphans` lists the
segments of processes that are gone (those that can be locked); the ledger imports them like a spill file, up to
their zeros. The store keeps one row per ``record_id``, so a record that was stored and then replayed (the process
died between the two) is stored once.
"""

from __future__ import annotations

import logging
import mmap
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
    map: mmap.mmap | None = None
    #: records appended to this segment, and those of them not stored yet
    written: int = 0
    pending: int = 0
    #: bytes of records in the map (the next record goes there)
    used: int = 0
    #: the map's size (``len(map)``, kept: asked at every record)
    size: int = 0


class Journal:
    """One process's journal in ``directory``; see the module docstring.

    ``append`` and ``done`` never raise: a journal that cannot write logs an ERROR (once, until it can write again)
    and the records stay in memory only, as they would without a journal.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = 4 * 1024 * 1024) -> None:
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
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
        """Copy ``rec`` into the journal (call it in the order the records are queued for the store)."""
        line = orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
        n = len(line)
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg.map is not None and seg.used + n > seg.size or seg.map is None and seg.written:
            seg = self._new_segment(n)
        seg.written += 1
        seg.pending += 1
        m, used = seg.map, seg.used
        if m is not None and used + n <= seg.size:
            m[used : used + n] = line
            seg.used = used + n

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
            if len(segments) == 1 and seg.map is not None:
                # the segment being written holds nothing unsaved: zero what it holds (a crash meanwhile replays
                # only records the store has, which it skips) and write it again from the start
                seg.map[: seg.used] = bytes(seg.used)
                seg.used = seg.written = 0
                return
            segments.popleft()  # all its records are stored: gone
            self._remove(seg)

    def close(self) -> None:
        """Stop writing. Segments all of whose records were stored are removed; the others stay for the next start."""
        self.closed = True
        while self._segments:
            seg = self._segments.popleft()
            if seg.pending:
                self._release(seg)  # (the lock goes with it: the next start imports the file)
                log.warning("usage journal: %d usage records kept in %s for the next start", seg.pending, seg.path)
            else:
                self._remove(seg)

    def _new_segment(self, need: int) -> _Segment:
        self._seq += 1
        final = self.directory / f"journal-{self._tag}-{self._seq}.jsonl"
        tmp = self.directory / f".{final.name}.new"
        size = max(self.segment_bytes, need)
        fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _reserve(fd, size)
            m = mmap.mmap(fd, size)
            os.replace(tmp, final)
        except OSError as exc:
            if fd is not None:
                _close(fd)
            self._fail(f"cannot create a segment in {self.directory}", exc)
            seg = _Segment(None, None)
        else:
            seg = _Segment(final, fd, m, size=size)
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
            self._release(seg)

    @staticmethod
    def _release(seg: _Segment) -> None:
        if seg.map is not None:
            seg.map.close()
            seg.map = None
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


def _reserve(fd: int, size: int) -> None:
    """Give the file ``size`` bytes of disk now (zeros): written through the map later, a page of a sparse file on
    a full disk would kill the process with SIGBUS."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
        return
    zeros = bytes(65536)  # (macOS has no posix_fallocate: write the zeros)
    for _ in range(0, size, len(zeros)):
        os.write(fd, zeros)
    os.ftruncate(fd, size)


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
