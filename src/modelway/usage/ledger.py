"""The usage ledger: requests hand their records over without waiting, and a background task writes them in batches.

No record is lost. A record leaves memory only once the store has committed it or it has been appended to the
spill file (JSON lines, one :meth:`UsageRecord.to_dict` per line). While the store fails, the ledger keeps the
records in order, backs off (doubling up to 30 s) and retries; beyond ``max_pending`` it moves the oldest to the
spill file. :meth:`Ledger.aclose` spills whatever the store would not take, and :meth:`Ledger.start` (or the
first successful write after an outage) imports the spill file into the store and removes it.

A batch is written by a task of its own that nothing here cancels: if the flush loop or :meth:`Ledger.aclose` is
cancelled while a batch is being written, the write still finishes, and its outcome is settled before the next
one. So a batch is never both kept for a retry and committed, and never dropped without being committed.
One window remains: a crash between importing the spill file and removing it imports it twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import orjson

from .records import UsageRecord

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from ..store.sql import SQLStore

__all__ = ["Ledger"]

log = logging.getLogger("modelway.usage")

#: the longest wait between two attempts while the store fails
MAX_BACKOFF = 30.0
#: how long aclose() waits for another process that holds the spill file (it is importing it)
SPILL_LOCK_WAIT = 10.0


class Ledger:
    """Batches :class:`UsageRecord` s into ``store``; see the module docstring for what happens on failures."""

    def __init__(
        self,
        store: SQLStore,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_pending: int = 100_000,
        spill_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if flush_interval <= 0 or batch_size < 1 or max_pending < 1:
            raise ValueError("flush_interval, batch_size and max_pending must be positive")
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.spill_path = Path(spill_path) if spill_path is not None else None
        #: records written to the store, store writes that failed, records appended to the spill file
        self.written = 0
        self.failures = 0
        self.spilled = 0
        # oldest first; a batch being written stays at the front until the store has committed it
        self._queue: deque[UsageRecord] = deque()
        self._inflight: tuple[asyncio.Task[None], int] | None = None
        self._lock = asyncio.Lock()  # one writer at a time: the loop, flush() or aclose()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._overflow_warned = False
        self._spill_waiting = False  # records were spilled since the file was last imported
        self._closed = False
        self._late_warned = False

    @property
    def pending(self) -> int:
        """Records not yet written (nor spilled)."""
        return len(self._queue)

    def record(self, rec: UsageRecord) -> None:
        """Queue ``rec`` for writing. Never blocks and never raises; call it from the event loop's thread."""
        try:
            self._queue.append(rec)
            n = len(self._queue)
            # wake the loop once per threshold crossed, not once per record
            if n == self.batch_size or n == self.max_pending + 1:
                self._wake.set()
            if self._closed and not self._late_warned:
                self._late_warned = True
                log.warning("usage ledger: records arrived after aclose(); they are written only if flush() is called")
        except Exception:  # the request that produced the record must not fail because of the ledger
            log.exception("usage ledger: could not queue a usage record: %r", rec)

    async def start(self) -> None:
        """Import a spill file left by an earlier run, then start the flush loop. Calling it again does nothing.

        Raises the store's error if the spill file cannot be imported (the file is kept).
        """
        if self._closed:
            raise RuntimeError("the usage ledger is closed")
        if self._task is not None:
            return
        async with self._lock:
            exc = await self._import()
        if exc is not None:
            raise exc
        self._task = asyncio.create_task(self._run(), name="modelway-usage-ledger")
        self._task.add_done_callback(self._loop_done)

    async def flush(self) -> None:
        """Write every pending record now. Raises the store's error (the records stay pending)."""
        async with self._lock:
            exc = await self._drain()
        if exc is not None:
            raise exc

    async def aclose(self) -> None:
        """Stop the loop and write everything; what the store will not take goes to the spill file (ERROR log)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # a write in flight goes on and is settled by _drain below
        async with self._lock:
            exc = await self._drain()
            if exc is None:
                if self._spill_waiting:
                    exc = await self._import()
                    if exc is not None:
                        log.warning(
                            "usage ledger: could not import %s (%r); it is imported at the next start",
                            self.spill_path,
                            exc,
                        )
                return
            count = len(self._queue)
            if self.spill_path is None:
                log.error(
                    "usage ledger: the store failed (%r); %d usage records were not written and are lost when the "
                    "process exits (set a spill_path to keep them)",
                    exc,
                    count,
                )
                return
            if await self._spill_at_close(self.spill_path):
                log.error(
                    "usage ledger: the store failed (%r); %d usage records were appended to %s, to be imported "
                    "at the next start",
                    exc,
                    count,
                    self.spill_path,
                )

    async def _spill_at_close(self, path: Path) -> bool:
        """Spill every pending record, waiting (a while) for another process that is importing the file."""
        deadline = asyncio.get_running_loop().time() + SPILL_LOCK_WAIT
        while True:
            try:
                if self._spill(path, len(self._queue)):
                    return True
            except OSError:
                log.exception(
                    "usage ledger: could not append %d usage records to %s; they are lost when the process exits",
                    len(self._queue),
                    path,
                )
                return False
            if asyncio.get_running_loop().time() >= deadline:
                log.error(
                    "usage ledger: %s stayed locked by another process for %.0f s; %d usage records are lost when "
                    "the process exits",
                    path,
                    SPILL_LOCK_WAIT,
                    len(self._queue),
                )
                return False
            await asyncio.sleep(0.05)

    # -- the flush loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.flush_interval
        while True:
            deadline = loop.time() + wait
            # while the store fails, a wake-up only keeps memory bounded: the next attempt waits for the deadline
            while self._failing or len(self._queue) < self.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._wake.wait()
                except TimeoutError:
                    break
                if self._failing:
                    async with self._lock:
                        self._overflow()
            async with self._lock:
                exc = await self._drain()
                if exc is None and self._spill_waiting:
                    exc = await self._import()
                if exc is not None:
                    self._overflow()
            if exc is None:
                self._failing = False
                wait = self.flush_interval
            else:
                self._failing = True
                wait = max(self.flush_interval, min(2 * wait, MAX_BACKOFF))
                log.warning(
                    "usage ledger: writing usage records failed (%r); %d pending, retrying in %.2f s",
                    exc,
                    len(self._queue),
                    wait,
                )

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "usage ledger: the flush loop stopped; records are kept until aclose()", exc_info=task.exception()
            )

    # -- writing (all with self._lock held) -------------------------------------------------------------------
    async def _drain(self) -> BaseException | None:
        """Write batches until none is pending; the store's error, once one fails."""
        exc = await self._settle()
        while exc is None and self._queue:
            batch = list(itertools.islice(self._queue, self.batch_size))
            self._inflight = asyncio.ensure_future(self.store.insert_usage(batch)), len(batch)
            exc = await self._settle()
        return exc

    async def _settle(self) -> BaseException | None:
        """Wait for the write in flight (if any) without ever cancelling it, and account for its outcome."""
        if self._inflight is None:
            return None
        task, n = self._inflight
        await asyncio.wait({task})  # if *we* are cancelled here, the write goes on and stays in _inflight
        self._inflight = None
        if task.cancelled():
            exc: BaseException | None = asyncio.CancelledError("the usage write was cancelled")
        else:
            exc = task.exception()
        if exc is not None:
            self.failures += 1
            return exc
        for _ in range(n):
            self._queue.popleft()
        self.written += n
        if len(self._queue) <= self.max_pending:
            self._overflow_warned = False
        return None

    def _overflow(self) -> None:
        """The store fails and too many records are pending: move the oldest to the spill file."""
        if len(self._queue) <= self.max_pending or self._inflight is not None:
            return  # (a write still in flight, after a cancelled flush(), holds the oldest: settle it first)
        if self.spill_path is None:
            if not self._overflow_warned:
                self._overflow_warned = True
                log.warning(
                    "usage ledger: over %d usage records pending while the store fails and no spill_path is set; "
                    "keeping them in memory",
                    self.max_pending,
                )
            return
        # spill down to a batch below the limit, so that the next spill is a batch of records away, not one
        count = len(self._queue) - max(0, self.max_pending - self.batch_size)
        try:
            self._spill(self.spill_path, count)  # (if another process is importing the file: next time)
        except OSError:
            log.exception(
                "usage ledger: could not append %d usage records to %s; they stay in memory", count, self.spill_path
            )

    def _spill(self, path: Path, count: int) -> bool:
        """Append the ``count`` oldest pending records to the spill file and forget them.

        ``False`` (nothing done) while another process holds the file to import it; raises :class:`OSError`.
        The write is synchronous: it is rare (the store is down) and must happen entirely or not at all before
        the records leave the queue.
        """
        data = b"".join(orjson.dumps(rec.to_dict()) + b"\n" for rec in itertools.islice(self._queue, count))
        if not _append_spill(path, data):
            return False
        for _ in range(count):
            self._queue.popleft()
        self.spilled += count
        self._spill_waiting = True
        return True

    async def _import(self) -> BaseException | None:
        """Import the spill file in a task of its own (like a batch: never cancelled half-way); its error."""
        exc = await self._settle()
        if exc is not None:
            return exc
        self._inflight = asyncio.ensure_future(self._import_spill()), 0
        return await self._settle()

    async def _import_spill(self) -> None:
        """Write the spill file's records to the store in one transaction, then remove the file.

        Lines that are not a usage record (a line cut short by a crash) are moved to ``<spill>.rejected`` and
        logged at ERROR, so that one bad line cannot keep the rest out of the store.
        """
        path = self.spill_path
        claimed = None if path is None else await asyncio.to_thread(_claim_spill, path)
        self._spill_waiting = False
        if path is None or claimed is None:
            return  # no file, or another process is importing it
        f, records, rejected = claimed
        with f:  # locked until the records are in the store and the file is gone
            await self.store.insert_usage(records)
            if rejected:
                bad = path.with_name(path.name + ".rejected")
                await asyncio.to_thread(_append_lines, bad, rejected)
                log.error(
                    "usage ledger: %d lines of %s are not usage records; moved them to %s", len(rejected), path, bad
                )
            path.unlink()
        self.written += len(records)
        log.info("usage ledger: imported %d usage records from %s", len(records), path)


# -- the spill file ---------------------------------------------------------------------------------------------
# Several worker processes may share one spill file. Each holds an exclusive flock while it appends, and while it
# imports the file, from reading it until it has removed it; a process that finds the file locked does not wait
# (the event loop must not block) and tries again later. A process that opened the file and then got the lock
# after another one removed it opens the new file instead.


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


def _append_spill(path: Path, data: bytes) -> bool:
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


def _claim_spill(path: Path) -> tuple[BinaryIO, list[UsageRecord], list[bytes]] | None:
    """The spill file, locked, with its records and the lines that are not records; ``None``: no file, or locked."""
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


def _append_lines(path: Path, lines: list[bytes]) -> None:
    with open(path, "ab") as f:
        f.writelines(lines)


def _record_from_json(obj: Any) -> UsageRecord:
    if not isinstance(obj, dict):
        raise TypeError("not a JSON object")
    return UsageRecord(**obj)
