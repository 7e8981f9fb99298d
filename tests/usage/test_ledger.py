"""The usage ledger over a real SQLite store: batching, retries, the spill file, and that no record is lost."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from modelway.store import SQLStore
from modelway.usage import Ledger, UsageRecord


class SpyStore(SQLStore):
    """A real store that counts its writes, can be taken down, fail a number of times, or hold writes at a gate."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[int] = []
        self.down = False
        self.fail_next = 0
        self.gate: asyncio.Event | None = None

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        self.calls.append(len(records))
        if self.gate is not None:
            await self.gate.wait()
        if self.down or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            raise ConnectionError("store down")
        await super().insert_usage(records)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SpyStore]:
    s = SpyStore(f"sqlite:///{tmp_path / 'usage.db'}")
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
def spill(tmp_path: Path) -> Path:
    return tmp_path / "spill" / "usage.jsonl"


def rec(i: int) -> UsageRecord:
    return UsageRecord(
        ts=1_700_000_000.0 + i,
        request_id=f"r{i}",
        key_id="k1",
        model="glm",
        deployment="zhipu/glm",
        endpoint="chat",
        stream=i % 2 == 0,
        total_tokens=i,
        cost=0.25,
        record_id=f"rec-{i}",
    )


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll ``cond`` until it holds (the loop under test runs meanwhile); fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            if cond():
                return
            await asyncio.sleep(0.002)


async def stored(store: SQLStore) -> list[str]:
    """Request ids in the store, oldest first (duplicates would show)."""
    return [r.request_id for r in reversed(await store.usage_records(limit=10_000))]


def ids(n: int, start: int = 0) -> list[str]:
    return [f"r{i}" for i in range(start, start + n)]


# small synchronous file helpers (the tests are async, and file I/O in them is deliberate and tiny)
def spill_lines(path: Path) -> list[UsageRecord]:
    return [UsageRecord(**orjson.loads(line)) for line in path.read_bytes().splitlines()]


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def spill_text(path: Path) -> bytes:
    return path.read_bytes()


def exists(path: Path) -> bool:
    return path.exists()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``path``'s flock, as another process importing the spill file does."""
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


class TestBatching:
    async def test_batch_size_wakes_the_flusher_and_batches_are_bounded(self, store: SpyStore) -> None:
        ledger = Ledger(store, flush_interval=60, batch_size=10)
        await ledger.start()
        for i in range(25):
            ledger.record(rec(i))
        assert ledger.pending == 25
        await until(lambda: ledger.written == 25)
        assert store.calls == [10, 10, 5]
        assert await stored(store) == ids(25)
        assert (ledger.pending, ledger.failures, ledger.spilled) == (0, 0, 0)
        await ledger.aclose()
        assert store.calls == [10, 10, 5]  # nothing left to write, no empty write

    async def test_interval_flushes_a_small_batch_and_idle_ticks_do_not_write(self, store: SpyStore) -> None:
        ledger = Ledger(store, flush_interval=0.01, batch_size=100)
        await ledger.start()
        await asyncio.sleep(0.05)
        assert store.calls == []
        for i in range(3):
            ledger.record(rec(i))
        await until(lambda: ledger.written == 3)
        assert store.calls == [3]
        await ledger.aclose()

    async def test_aclose_writes_everything(self, store: SpyStore) -> None:
        ledger = Ledger(store, flush_interval=60, batch_size=4)
        await ledger.start()
        for i in range(3):
            ledger.record(rec(i))
        await ledger.aclose()
        assert store.calls == [3]
        assert await stored(store) == ids(3)
        assert (ledger.pending, ledger.written) == (0, 3)

    async def test_flush_writes_now_without_a_loop(self, store: SpyStore) -> None:
        ledger = Ledger(store, batch_size=2)
        for i in range(5):
            ledger.record(rec(i))
        await ledger.flush()
        assert store.calls == [2, 2, 1]
        assert await stored(store) == ids(5)
        await ledger.aclose()


class TestFailures:
    async def test_failing_store_loses_and_duplicates_nothing(
        self, store: SpyStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        store.fail_next = 3
        ledger = Ledger(store, flush_interval=0.005, batch_size=4)
        await ledger.start()
        for i in range(10):
            ledger.record(rec(i))
        await until(lambda: ledger.written == 10)
        assert store.calls == [4, 4, 4, 4, 4, 2]  # the first batch three times, kept in order, then the rest
        assert await stored(store) == ids(10)
        assert (ledger.failures, ledger.pending, ledger.spilled) == (3, 0, 0)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 3 and all("ConnectionError('store down')" in r.getMessage() for r in warnings)
        assert "retrying in 0.01 s" in warnings[0].getMessage()  # the wait doubles: 0.01, 0.02, 0.04
        assert "retrying in 0.04 s" in warnings[2].getMessage()
        await ledger.aclose()

    async def test_flush_raises_the_store_error_and_keeps_the_records(self, store: SpyStore) -> None:
        ledger = Ledger(store, batch_size=2)
        for i in range(3):
            ledger.record(rec(i))
        store.fail_next = 1
        with pytest.raises(ConnectionError, match="store down"):
            await ledger.flush()
        assert (ledger.pending, ledger.failures, ledger.written) == (3, 1, 0)
        await ledger.flush()
        assert await stored(store) == ids(3)
        await ledger.aclose()

    async def test_cancelled_flush_settles_a_write_that_committed(self, store: SpyStore) -> None:
        ledger = Ledger(store, batch_size=10)
        for i in range(4):
            ledger.record(rec(i))
        store.gate = asyncio.Event()
        flushing = asyncio.create_task(ledger.flush())
        await until(lambda: store.calls == [4])
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        ledger.record(rec(4))
        store.gate.set()  # the write handed to the store goes on and commits
        await ledger.flush()
        assert store.calls == [4, 1]  # the committed batch is not written again
        assert await stored(store) == ids(5)
        assert (ledger.written, ledger.pending) == (5, 0)
        await ledger.aclose()

    async def test_cancelled_flush_keeps_a_write_that_failed(self, store: SpyStore) -> None:
        ledger = Ledger(store, batch_size=10)
        for i in range(4):
            ledger.record(rec(i))
        store.gate = asyncio.Event()
        store.fail_next = 1
        flushing = asyncio.create_task(ledger.flush())
        await until(lambda: store.calls == [4])
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        store.gate.set()
        with pytest.raises(ConnectionError):
            await ledger.flush()  # settles the failed write (the records stay), then writes nothing more
        assert (ledger.pending, ledger.failures) == (4, 1)
        await ledger.flush()
        assert store.calls == [4, 4]
        assert await stored(store) == ids(4)
        await ledger.aclose()

    async def test_aclose_during_a_write_waits_for_its_outcome(self, store: SpyStore) -> None:
        ledger = Ledger(store, flush_interval=60, batch_size=3)
        store.gate = asyncio.Event()
        await ledger.start()
        for i in range(4):
            ledger.record(rec(i))
        await until(lambda: store.calls == [3])
        closing = asyncio.create_task(ledger.aclose())
        await asyncio.sleep(0.01)
        assert not closing.done()
        store.gate.set()
        await closing
        assert store.calls == [3, 1]
        assert await stored(store) == ids(4)


class TestSpill:
    async def test_aclose_spills_what_the_store_will_not_take(
        self, store: SpyStore, spill: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        store.down = True
        ledger = Ledger(store, flush_interval=60, spill_path=spill)
        await ledger.start()
        records = [rec(i) for i in range(5)]
        for r in records:
            ledger.record(r)
        await ledger.aclose()
        assert spill_lines(spill) == records
        assert (ledger.pending, ledger.spilled, ledger.written, ledger.failures) == (0, 5, 0, 1)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and f"5 usage records were appended to {spill}" in errors[0]

        store.down = False  # the next run imports the file, then removes it
        again = Ledger(store, spill_path=spill)
        await again.start()
        assert not exists(spill)
        assert await store.usage_records(limit=10) == records[::-1]
        assert again.written == 5
        await again.aclose()
        assert await stored(store) == ids(5)

    async def test_start_keeps_the_file_and_raises_when_the_store_is_down(self, store: SpyStore, spill: Path) -> None:
        write(spill, orjson.dumps(rec(0).to_dict()) + b"\n")
        store.down = True
        ledger = Ledger(store, spill_path=spill)
        with pytest.raises(ConnectionError):
            await ledger.start()
        assert spill_lines(spill) == [rec(0)]

    async def test_lines_that_are_not_records_are_set_aside(
        self, store: SpyStore, spill: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        good = orjson.dumps(rec(0).to_dict()) + b"\n" + orjson.dumps(rec(1).to_dict()) + b"\n"
        write(spill, good + b'{"ts": 1.0, "request_id": "cut sh')  # a line cut short by a crash
        ledger = Ledger(store, spill_path=spill)
        await ledger.start()
        await ledger.aclose()
        assert await stored(store) == ids(2)
        assert not exists(spill)
        assert spill_text(spill.with_name("usage.jsonl.rejected")) == b'{"ts": 1.0, "request_id": "cut sh\n'
        assert any("1 usage records set aside" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)

    async def test_overflow_goes_to_the_spill_file_and_comes_back_after_recovery(
        self, store: SpyStore, spill: Path
    ) -> None:
        store.down = True
        ledger = Ledger(store, flush_interval=0.005, batch_size=4, max_pending=10, spill_path=spill)
        await ledger.start()
        for i in range(11):
            ledger.record(rec(i))
        # the first write fails; over max_pending, the oldest go to the file, down to a batch under the limit
        await until(lambda: ledger.spilled == 5)
        assert ledger.pending == 6
        assert spill_lines(spill) == [rec(i) for i in range(5)]
        for i in range(11, 16):
            ledger.record(rec(i))  # 11 pending again: wakes the loop, which spills without waiting for its retry
        await until(lambda: ledger.spilled == 10)
        assert ledger.pending == 6
        assert spill_lines(spill) == [rec(i) for i in range(10)]

        store.down = False
        await until(lambda: not exists(spill) and ledger.pending == 0)
        assert ledger.written == 16
        assert sorted(await stored(store), key=lambda s: int(s[1:])) == ids(16)  # each exactly once
        await ledger.aclose()

    async def test_overflow_without_a_spill_path_stays_in_memory(
        self, store: SpyStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        store.down = True
        ledger = Ledger(store, flush_interval=0.005, batch_size=2, max_pending=3)
        await ledger.start()
        for i in range(5):
            ledger.record(rec(i))
        await until(lambda: ledger.failures >= 2)
        for i in range(5, 8):
            ledger.record(rec(i))
        await until(lambda: ledger.failures >= 4)
        assert (ledger.pending, ledger.spilled) == (8, 0)
        overflow = [r for r in caplog.records if "keeping them in memory" in r.getMessage()]
        assert len(overflow) == 1 and overflow[0].levelno == logging.WARNING
        store.down = False
        await until(lambda: ledger.written == 8)
        assert await stored(store) == ids(8)
        await ledger.aclose()

    async def test_aclose_waits_for_another_process_importing_the_file(self, store: SpyStore, spill: Path) -> None:
        write(spill, b"")
        store.down = True
        ledger = Ledger(store, spill_path=spill)
        ledger.record(rec(0))
        with locked(spill):
            closing = asyncio.create_task(ledger.aclose())
            await asyncio.sleep(0.08)
            assert not closing.done() and ledger.pending == 1
        await closing
        assert spill_lines(spill) == [rec(0)]
        assert ledger.pending == 0


class TestRecord:
    def test_record_outside_an_event_loop(self, tmp_path: Path) -> None:
        ledger = Ledger(SQLStore(f"sqlite:///{tmp_path / 'x.db'}"), batch_size=1)
        ledger.record(rec(0))  # reaches the batch size: wakes a flusher that does not run yet
        ledger.record(rec(1))
        assert ledger.pending == 2

    async def test_record_never_raises(self, store: SpyStore, caplog: pytest.LogCaptureFixture) -> None:
        ledger = Ledger(store, batch_size=1)

        def broken() -> None:
            raise RuntimeError("wake-up failed")

        ledger._wake.set = broken  # type: ignore[method-assign]
        ledger.record(rec(0))  # kept, and the failure logged
        assert ledger.pending == 1
        assert any("could not queue" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)

    async def test_record_while_down_and_after_aclose(self, store: SpyStore, caplog: pytest.LogCaptureFixture) -> None:
        store.down = True
        ledger = Ledger(store, flush_interval=0.005, batch_size=1)
        await ledger.start()
        ledger.record(rec(0))
        await until(lambda: ledger.failures >= 1)
        store.down = False
        await ledger.aclose()
        ledger.record(rec(1))
        ledger.record(rec(2))
        assert ledger.pending == 2
        assert sum("after aclose()" in r.getMessage() for r in caplog.records) == 1
        await ledger.flush()
        assert await stored(store) == ids(3)


class TestSpend:
    async def test_spend_counts_written_and_pending_records_once(self, store: SpyStore) -> None:
        ledger = Ledger(store, flush_interval=3600, batch_size=2)
        await ledger.start()
        try:
            for i in range(3):
                ledger.record(rec(i))
            await ledger.flush()  # 3 written
            for i in range(3, 5):
                ledger.record(rec(i))  # 2 pending
            assert await ledger.spend("k1", since=0) == 5 * 0.25
            assert await ledger.spend("k1", since=1_700_000_000.0 + 4) == 0.25
            assert await ledger.spend("other", since=0) == 0.0
        finally:
            await ledger.aclose()

    async def test_a_write_in_flight_is_counted_once(self, store: SpyStore) -> None:
        """A batch committed while spend() reads must be in the store's sum or the pending part, not both."""
        ledger = Ledger(store, flush_interval=3600, batch_size=10)
        await ledger.start()
        try:
            for i in range(4):
                ledger.record(rec(i))
            store.gate = asyncio.Event()
            flushing = asyncio.ensure_future(ledger.flush())
            await until(lambda: bool(store.calls))  # the batch is being written, still pending
            reading = asyncio.ensure_future(ledger.spend("k1", since=0))
            await asyncio.sleep(0.05)
            assert not reading.done()  # waits for the write to settle
            store.gate.set()
            await flushing
            assert await reading == 4 * 0.25
        finally:
            store.gate = None
            await ledger.aclose()


class PurgeSpy(SpyStore):
    """Counts deletions, and can hold one at a gate or make them fail."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.deletes: list[int] = []
        self.delete_gate: asyncio.Event | None = None
        self.delete_fails = False

    async def delete_usage_before(self, cutoff: float, *, limit: int = 5000) -> int:
        if self.delete_gate is not None:
            await self.delete_gate.wait()
        if self.delete_fails:
            raise ConnectionError("store down")
        n = await super().delete_usage_before(cutoff, limit=limit)
        self.deletes.append(n)
        return n


@pytest.fixture
async def purging(tmp_path: Path) -> AsyncIterator[PurgeSpy]:
    s = PurgeSpy(f"sqlite:///{tmp_path / 'purge.db'}")
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


def aged(i: int, age_days: float) -> UsageRecord:
    r = rec(i)
    r.ts = time.time() - age_days * 86_400
    return r


class TestRetention:
    async def test_old_records_go_in_bounded_batches_and_the_aggregates_stay(self, purging: PurgeSpy) -> None:
        await purging.insert_usage([aged(i, 40) for i in range(25)] + [aged(i, 1) for i in range(25, 30)])
        before = await purging.usage_summary(group_by="day")
        ledger = Ledger(purging, flush_interval=0.01, retention=30 * 86_400, purge_batch=10)
        await ledger.start()
        try:
            await until(lambda: ledger.purged == 25)
            assert purging.deletes[:3] == [10, 10, 5]  # a full batch means a backlog: the next flush goes on
            await asyncio.sleep(0.05)
            assert len(purging.deletes) == 3  # then once a minute (PURGE_EVERY)
            assert await stored(purging) == ids(5, 25)
            assert await purging.usage_summary(group_by="day") == before
            ledger.record(aged(99, 0))
            await until(lambda: ledger.written == 1)  # records keep being written meanwhile
        finally:
            await ledger.aclose()

    async def test_no_retention_deletes_nothing(self, purging: PurgeSpy) -> None:
        await purging.insert_usage([aged(i, 4000) for i in range(3)])
        ledger = Ledger(purging, flush_interval=0.01)
        await ledger.start()
        await asyncio.sleep(0.05)
        await ledger.aclose()
        assert purging.deletes == [] and len(await stored(purging)) == 3

    async def test_a_failed_deletion_is_logged_and_tried_later(
        self, purging: PurgeSpy, caplog: pytest.LogCaptureFixture
    ) -> None:
        await purging.insert_usage([aged(i, 40) for i in range(3)])
        purging.delete_fails = True
        ledger = Ledger(purging, flush_interval=0.01, retention=86_400)
        await ledger.start()
        try:
            await until(lambda: "could not delete usage records past their retention" in caplog.text)
            ledger.record(aged(7, 0))
            await until(lambda: ledger.written == 1)  # the writer goes on
            purging.delete_fails = False
            ledger._next_purge = 0.0  # (the minute is up)
            await until(lambda: ledger.purged == 3)
        finally:
            await ledger.aclose()

    async def test_spend_does_not_wait_for_a_deletion(self, purging: PurgeSpy) -> None:
        await purging.insert_usage([aged(i, 40) for i in range(3)] + [aged(9, 0)])
        purging.delete_gate = asyncio.Event()
        ledger = Ledger(purging, flush_interval=0.01, retention=86_400)
        await ledger.start()
        try:
            await until(lambda: ledger._purging is not None)
            async with asyncio.timeout(1):
                assert await ledger.spend("k1", since=0) == 4 * 0.25
        finally:
            closing = asyncio.ensure_future(ledger.aclose())
            await asyncio.sleep(0.05)
            assert not closing.done()  # aclose waits for the deletion under way, it does not cut it off
            purging.delete_gate.set()
            await closing
        assert ledger.purged == 3

    def test_retention_must_be_positive(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="retention must be positive"):
            Ledger(SQLStore(f"sqlite:///{tmp_path / 'x.db'}"), retention=0)
