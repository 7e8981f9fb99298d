"""The usage ledger: requests hand their records over without waiting, and a background task writes them in batches.

No record is lost. A record leaves memory only once the store has committed it or it has been appended to the
spill file (JSON lines, one :meth:`UsageRecord.to_dict` per line). While the store fails, the ledger keeps the
records in order, backs off (doubling up to 30 s) and retries; beyond ``max_pending`` it moves the oldest to the
spill file. :meth:`Ledger.aclose` spills whatever the store would not take, and :meth:`Ledger.start` (or the
first successful write after an outage) imports the spill file into the store and removes it.

A batch is written by a task of its own that nothing here cancels: if the flush loop or :meth:`Ledger.aclose` is
cancelled while a batch is being written, the write still finishes, and its outcome is settled before the next
one. So a batch is never both kept for a retry and committed, and never dropped without being committed.

With a ``journal_dir``, every record is also on disk from the moment :meth:`Ledger.record` returns (see
:mod:`.journal`), so a process killed with records in memory loses none: the next start imports the journal
segments of processes that are gone, as it imports the spill file. The store keeps one row per ``record_id``, so
a crash between storing records and forgetting them (from the journal, or the spill file) stores nothing twice.

Records with bodies (:class:`RecordWithBodies`, ``request_log.bodies``) carry them through the journal and the spill
file like any other field, and the store keeps them beside the record. They are bounded in memory: while more than
``max_body_chars`` of bodies wait to be written (the store is down), further records are queued without their
bodies (:attr:`Ledger.bodies_dropped`). A record the store refuses is tried once more without its bodies before it
is set aside: a body never costs a usage record.

With a ``retention``, the writer also deletes the records older than that (the store's aggregates keep what they
added up to): one bounded batch per flush while there is a backlog, else one a minute, each in a short transaction
of its own and outside the writer's lock, so neither a request nor :meth:`Ledger.spend` waits for it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ..store.errors import refused
from .journal import Journal, orphans
from .records import RecordWithBodies, UsageRecord
from .spill import append_lines, append_spill, claim_spill

if TYPE_CHECKING:
    from ..store.sql import SQLStore

__all__ = ["Ledger"]

log = logging.getLogger("modelway.usage")

#: the longest wait between two attempts while the store fails
MAX_BACKOFF = 30.0
#: how long aclose() waits for another process that holds the spill file (it is importing it)
SPILL_LOCK_WAIT = 10.0
#: seconds between two deletions of records past their retention, once there is no backlog
PURGE_EVERY = 60.0
#: the most records one deletion removes (one short write transaction: ~25 ms at 1,000 in SQLite, BENCHMARKS.md)
PURGE_BATCH = 1000
#: the most characters of bodies held by the records waiting to be written (8,192 records at 4 KiB a body, both kept)
MAX_BODY_CHARS = 64 * 1024 * 1024


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
        journal_dir: str | os.PathLike[str] | None = None,
        retention: float | None = None,
        purge_batch: int = PURGE_BATCH,
        max_body_chars: int = MAX_BODY_CHARS,
    ) -> None:
        if flush_interval <= 0 or batch_size < 1 or max_pending < 1 or purge_batch < 1 or max_body_chars < 0:
            raise ValueError(
                "flush_interval, batch_size, max_pending and purge_batch must be positive, max_body_chars not negative"
            )
        if retention is not None and retention <= 0:
            raise ValueError("retention must be positive (None keeps the records forever)")
        self.store = store
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.spill_path = Path(spill_path) if spill_path is not None else None
        #: every record is also appended here before the request's answer completes (see .journal)
        self.journal = Journal(journal_dir) if journal_dir is not None else None
        #: records written to the store, store writes that failed, records appended to the spill file
        self.written = 0
        self.failures = 0
        self.spilled = 0
        #: records the store refused for their data, set aside in ``<spill>.rejected``
        self.rejected = 0
        #: seconds a record is kept in the store (``None``: forever), and the most deleted at once
        self.retention = retention
        self.purge_batch = purge_batch
        #: records deleted because they were older than the retention
        self.purged = 0
        #: the most characters of bodies pending records hold; records queued without their bodies past it
        self.max_body_chars = max_body_chars
        self.bodies_dropped = 0
        self._body_chars = 0
        self._purging: asyncio.Task[int] | None = None
        self._next_purge = 0.0  # loop time; 0: at the first flush
        self._purge_backlog = False
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
            if self.journal is not None and not self.journal.closed:
                self.journal.append(rec)
            n = len(self._queue)
            # wake the loop once per threshold crossed, not once per record
            if n == self.batch_size or n == self.max_pending + 1:
                self._wake.set()
            if self._closed and not self._late_warned:
                self._late_warned = True
                log.warning("usage ledger: records arrived after aclose(); they are written only if flush() is called")
        except Exception:  # the request that produced the record must not fail because of the ledger
            log.exception("usage ledger: could not queue a usage record: %r", rec)

    def record_with_bodies(self, rec: RecordWithBodies) -> None:
        """Queue a record with its bodies, or without them while the bodies pending are over ``max_body_chars``.
        Never blocks and never raises."""
        size = rec.body_size
        if self._body_chars + size > self.max_body_chars:
            self.bodies_dropped += 1
            if self.bodies_dropped == 1 or self.bodies_dropped % 10_000 == 0:
                log.warning(
                    "usage ledger: %d usage records queued without their bodies: over %d characters of bodies wait "
                    "to be written (is the store down?)",
                    self.bodies_dropped,
                    self.max_body_chars,
                )
            self.record(rec.without_bodies())
            return
        self._body_chars += size
        self.record(rec)

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
        """Stop the loop and write everything; what the store will not take goes to the spill file (ERROR log), and
        stays in the journal for the next start."""
        try:
            await self._close()
        finally:
            if self.journal is not None:
                self.journal.close()

    async def _close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # a write in flight goes on and is settled by _drain below
        purging = self._purging
        if purging is not None:  # a deletion the loop was waiting for when cancelled: let it end first
            await asyncio.wait({purging})
            self._purged_one(purging)
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
                if self.retention is not None:
                    await self._purge()
            else:
                self._failing = True
                wait = max(self.flush_interval, min(2 * wait, MAX_BACKOFF))
                log.warning(
                    "usage ledger: writing usage records failed (%r); %d pending, retrying in %.2f s",
                    exc,
                    len(self._queue),
                    wait,
                )

    async def _purge(self) -> None:
        """Delete one batch of records older than the retention, if one is due. The deletion runs in a task of its
        own that nothing cancels (like a batch of inserts); a failure is logged and tried again later."""
        assert self.retention is not None
        now = asyncio.get_running_loop().time()
        if not self._purge_backlog and now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY
        cutoff = time.time() - self.retention
        task = self._purging = asyncio.ensure_future(self.store.delete_usage_before(cutoff, limit=self.purge_batch))
        await asyncio.wait({task})  # if *we* are cancelled here, aclose() waits for it
        self._purged_one(task)

    def _purged_one(self, task: asyncio.Task[int]) -> None:
        """Account for a deletion that ended (once)."""
        if self._purging is not task:
            return
        self._purging = None
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            self._purge_backlog = False
            log.warning("usage ledger: could not delete usage records past their retention: %r", exc)
            return
        deleted = task.result()
        self.purged += deleted
        self._purge_backlog = deleted >= self.purge_batch
        if deleted:
            log.debug("usage ledger: deleted %d usage records older than the retention", deleted)

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "usage ledger: the flush loop stopped; records are kept until aclose()", exc_info=task.exception()
            )

    # -- writing (all with self._lock held) -------------------------------------------------------------------
    async def _drain(self) -> BaseException | None:
        """Write batches until none is pending; the store's error, once one fails."""
        exc = await self._settle()
        if exc is not None and refused(exc):
            exc = await self._one_by_one(self.batch_size)
        while exc is None and self._queue:
            batch = list(itertools.islice(self._queue, self.batch_size))
            self._inflight = asyncio.ensure_future(self.store.insert_usage(batch)), len(batch)
            exc = await self._settle()
            if exc is not None and refused(exc):
                exc = await self._one_by_one(len(batch))
        return exc

    async def _one_by_one(self, n: int) -> BaseException | None:
        """The store refused a batch for its data, not for an outage: write its ``n`` records one at a time and
        set aside each one the store refuses on its own, so that one bad record cannot hold up the rest."""
        for _ in range(min(n, len(self._queue))):
            rec = self._queue[0]
            self._inflight = asyncio.ensure_future(self.store.insert_usage([rec])), 1
            exc = await self._settle()
            if exc is not None and refused(exc) and isinstance(rec, RecordWithBodies):
                log.error(
                    "usage ledger: the store refused record %s with its bodies (%s): storing it without",
                    rec.record_id,
                    exc,
                )
                self._body_chars -= rec.body_size
                self._queue[0] = rec = rec.without_bodies()
                self._inflight = asyncio.ensure_future(self.store.insert_usage([rec])), 1
                exc = await self._settle()
            if exc is None:
                continue
            if not refused(exc):
                return exc
            self._forget(1)
            await self._reject([orjson.dumps(rec.to_dict()) + b"\n"], f"the store refused it: {exc}")
        return None

    async def _reject(self, lines: list[bytes], why: str) -> None:
        """Records the store will never take: to ``<spill>.rejected`` for a person to look at, and the log."""
        self.rejected += len(lines)
        if self.spill_path is None:
            log.error("usage ledger: dropping %d usage records (%s): %s", len(lines), why, b"".join(lines).decode())
            return
        bad = self.spill_path.with_name(self.spill_path.name + ".rejected")
        await asyncio.to_thread(append_lines, bad, lines)
        log.error("usage ledger: %d usage records set aside in %s (%s)", len(lines), bad, why)

    async def spend(self, key_id: str, *, since: float) -> float:
        """What ``key_id`` spent from ``since``: the store's sum plus the records not written yet.

        Taken with the writer's lock held, so a batch committed meanwhile is counted once, never twice or not at
        all (a write in flight after a cancelled flush is settled first)."""
        async with self._lock:
            exc = await self._settle()
            if exc is not None:
                raise exc
            stored = await self.store.spend(key_id, since=since)
            return stored + sum(r.cost for r in self._queue if r.key_id == key_id and r.ts >= since)

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
        self._forget(n)
        self.written += n
        if len(self._queue) <= self.max_pending:
            self._overflow_warned = False
        return None

    def _forget(self, n: int) -> None:
        """The ``n`` oldest pending records are stored, spilled or set aside: out of memory and the journal."""
        queue = self._queue
        if self._body_chars:
            for _ in range(n):
                rec = queue.popleft()
                if isinstance(rec, RecordWithBodies):
                    self._body_chars -= rec.body_size
        else:
            for _ in range(n):
                queue.popleft()
        if self.journal is not None:
            self.journal.done(n)

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
        if not append_spill(path, data):
            return False
        self._forget(count)
        self.spilled += count
        self._spill_waiting = True
        return True

    async def _import(self) -> BaseException | None:
        """Import the spill file, then the journal segments of processes that are gone, each in a task of its own
        (like a batch: never cancelled half-way); the store's error."""
        exc = await self._settle()
        if exc is not None:
            return exc
        paths: list[Path] = []
        if self.spill_path is not None:
            paths.append(self.spill_path)
            self._spill_waiting = False
        if self.journal is not None:
            own = set(self.journal.files)
            paths += [p for p in await asyncio.to_thread(orphans, self.journal.directory) if p not in own]
        for path in paths:
            self._inflight = asyncio.ensure_future(self._import_file(path)), 0
            exc = await self._settle()
            if exc is not None:
                if path == self.spill_path:
                    self._spill_waiting = True
                return exc
        return None

    async def _import_file(self, path: Path) -> None:
        """Write the records of a spill file or orphaned journal segment to the store in one transaction, then
        remove the file.

        Lines that are not a usage record (a line cut short by a crash) are moved to ``<spill>.rejected`` and
        logged at ERROR, so that one bad line cannot keep the rest out of the store.
        """
        claimed = await asyncio.to_thread(claim_spill, path)
        if claimed is None:
            return  # no file, or another process holds it (importing it, or writing it: a live journal)
        f, records, rejected = claimed
        with f:  # locked until the records are in the store and the file is gone
            try:
                await self.store.insert_usage(records)
            except Exception as exc:
                if not refused(exc):
                    raise
                # one record the store refuses must not keep the file out forever: one at a time
                kept: list[UsageRecord] = []
                for rec in records:
                    if await self._store_alone(rec):
                        kept.append(rec)
                    else:
                        rejected.append(orjson.dumps(rec.to_dict()) + b"\n")
                records = kept
            if rejected:
                await self._reject(rejected, f"lines of {path} that are not usage records, or that the store refused")
            self.written += len(records)  # (stored: counted before the file goes, which callers may watch for)
            await asyncio.to_thread(path.unlink)
        if records:
            log.info("usage ledger: imported %d usage records from %s", len(records), path)

    async def _store_alone(self, rec: UsageRecord) -> bool:
        """Store one record of a file being imported; ``False`` when the store refuses it for its data (with its
        bodies, and without them too). Raises the store's other errors."""
        try:
            await self.store.insert_usage([rec])
        except Exception as exc:
            if not refused(exc):
                raise
            if not isinstance(rec, RecordWithBodies):
                return False
            log.error(
                "usage ledger: the store refused record %s with its bodies (%s): storing it without", rec.record_id, exc
            )
            return await self._store_alone(rec.without_bodies())
        return True
