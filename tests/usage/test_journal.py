"""The usage journal: records on disk before the ledger returns, removed once stored, replayed after a crash, and
stored once however often they are replayed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from test_ledger import SpyStore, ids, rec, store, stored, until

from modelway.usage import Ledger, UsageRecord
from modelway.usage.journal import Journal, orphans


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jsonl"))


def lines(directory: Path) -> list[str]:
    """Request ids of every journaled record, in file order (a segment's records end where its zeros begin)."""
    return [
        orjson.loads(line)["request_id"]
        for p in segments(directory)
        for line in p.read_bytes().partition(b"\0")[0].splitlines()
    ]


class TestJournal:
    def test_append_writes_at_once_and_done_empties_the_segment(self, tmp_path: Path) -> None:
        j = Journal(tmp_path / "j")
        for i in range(3):
            j.append(rec(i))
        assert lines(tmp_path / "j") == ids(3)  # in the file, no flush needed
        assert segments(tmp_path / "j")[0].stat().st_size == j.segment_bytes  # reserved on disk when made
        j.done(2)
        assert lines(tmp_path / "j") == ids(3)  # a segment is emptied only when all its records are stored
        j.done(1)
        assert lines(tmp_path / "j") == [] and len(segments(tmp_path / "j")) == 1  # zeroed, kept for writing
        j.append(rec(3))
        assert lines(tmp_path / "j") == ["r3"]
        j.done(1)
        j.close()
        assert segments(tmp_path / "j") == []

    def test_full_segments_rotate_and_are_removed_once_stored(self, tmp_path: Path) -> None:
        one = len(orjson.dumps(rec(0))) + 1
        j = Journal(tmp_path, segment_bytes=max(4096, one))
        j.segment_bytes = 2 * one + 1  # (below the floor the constructor allows: two records a segment, for the test)
        for i in range(5):
            j.append(rec(i))
        assert len(segments(tmp_path)) == 3 and lines(tmp_path) == ids(5)
        j.done(3)  # the first segment is all stored: removed; the second half stored
        assert lines(tmp_path) == ids(3, 2)
        j.done(2)
        assert lines(tmp_path) == []
        j.close()
        assert segments(tmp_path) == []

    def test_close_keeps_what_was_not_stored(self, tmp_path: Path) -> None:
        j = Journal(tmp_path)
        j.append(rec(0))
        j.append(rec(1))
        j.done(1)
        j.close()
        assert lines(tmp_path) == ids(2)  # the segment stays whole: the store skips the record it has

    def test_a_live_journal_cannot_be_claimed_and_a_closed_one_can(self, tmp_path: Path) -> None:
        from modelway.usage.spill import claim_spill

        j = Journal(tmp_path)
        j.append(rec(0))
        (path,) = orphans(tmp_path)
        assert claim_spill(path) is None  # its writer holds the lock
        j.close()
        claimed = claim_spill(path)
        assert claimed is not None
        f, records, rejected = claimed
        f.close()
        assert [r.request_id for r in records] == ["r0"] and rejected == []

    def test_an_unwritable_directory_is_logged_and_counting_stays_aligned(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")
        j = Journal(blocker / "j")  # a directory under a file: cannot be created
        j.append(rec(0))
        j.append(rec(1))
        j.done(2)
        j.close()
        assert "cannot create a segment" in caplog.text


__all__ = ["store"]  # the fixture, shared with test_ledger


class TestLedgerJournal:
    async def test_records_are_journaled_when_record_returns_and_gone_once_stored(
        self, store: SpyStore, tmp_path: Path
    ) -> None:
        jdir = tmp_path / "journal"
        ledger = Ledger(store, flush_interval=0.05, journal_dir=jdir)
        await ledger.start()
        for i in range(4):
            ledger.record(rec(i))
        assert lines(jdir) == ids(4)
        await until(lambda: ledger.pending == 0)
        assert lines(jdir) == []
        await ledger.aclose()
        assert segments(jdir) == [] and await stored(store) == ids(4)

    async def test_a_store_down_at_close_leaves_the_records_for_the_next_start(
        self, store: SpyStore, tmp_path: Path
    ) -> None:
        jdir = tmp_path / "journal"
        ledger = Ledger(store, flush_interval=60, journal_dir=jdir)  # no spill file
        await ledger.start()
        for i in range(3):
            ledger.record(rec(i))
        store.down = True
        await ledger.aclose()
        assert lines(jdir) == ids(3)
        store.down = False
        again = Ledger(store, flush_interval=60, journal_dir=jdir)
        await again.start()
        assert await stored(store) == ids(3) and segments(jdir) == []
        await again.aclose()

    async def test_a_replay_of_stored_records_stores_nothing_twice(self, store: SpyStore, tmp_path: Path) -> None:
        await store.insert_usage([rec(0), rec(1)])
        jdir = tmp_path / "journal"
        jdir.mkdir()
        # a process died after storing r0 and r1, before it could forget them: its segment still holds them
        (jdir / "journal-1-dead-1.jsonl").write_bytes(b"".join(orjson.dumps(rec(i)) + b"\n" for i in range(3)))
        ledger = Ledger(store, journal_dir=jdir)
        await ledger.start()
        assert await stored(store) == ids(3)
        await ledger.aclose()

    async def test_a_live_processs_segments_are_left_alone(self, store: SpyStore, tmp_path: Path) -> None:
        jdir = tmp_path / "journal"
        other = Journal(jdir)  # another worker, alive
        other.append(rec(7))
        ledger = Ledger(store, journal_dir=jdir)
        await ledger.start()
        assert await stored(store) == [] and lines(jdir) == ["r7"]
        await ledger.aclose()
        other.close()


def test_a_killed_process_loses_no_record(tmp_path: Path) -> None:
    """A child records 50 usage records (the store is never reached: a long flush interval) and is killed with
    SIGKILL; the next ledger's start stores all 50, once."""
    db = tmp_path / "u.db"
    jdir = tmp_path / "journal"
    child = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_ledger import rec
        from modelway.store import SQLStore
        from modelway.usage import Ledger

        async def main():
            store = SQLStore("sqlite:///{db}")
            await store.open()
            ledger = Ledger(store, flush_interval=3600, journal_dir={str(jdir)!r})
            await ledger.start()
            for i in range(50):
                ledger.record(rec(i))
            print("recorded", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    p = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL and "recorded" in p.stdout, p.stderr

    async def restart() -> list[str]:
        from modelway.store import SQLStore

        store = SQLStore(f"sqlite:///{db}")
        await store.open()
        ledger = Ledger(store, journal_dir=jdir)
        await ledger.start()
        await ledger.aclose()
        out = await stored(store)
        await store.aclose()
        return out

    import asyncio

    assert asyncio.run(restart()) == ids(50)
    assert segments(jdir) == []


def test_record_ids_are_unique_and_default() -> None:
    a = UsageRecord(ts=0, request_id="x", key_id=None, model="m", deployment=None, endpoint="chat", stream=False)
    b = UsageRecord(ts=0, request_id="x", key_id=None, model="m", deployment=None, endpoint="chat", stream=False)
    assert a.record_id and b.record_id and a.record_id != b.record_id


_FULL_DISK_CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from test_ledger import rec
    from modelway.usage.journal import Journal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    j = Journal(sys.argv[1], segment_bytes=4096)
    j.append(rec(0))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # the disk is full
    for i in range(1, 20):
        j.append(rec(i))  # r0's segment fills, and no new one can be reserved: logged, kept in memory only
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is back
    j.append(rec(20))  # a new segment
    os._exit(0)  # killed: nothing stored, nothing closed
    """
)


def test_a_full_disk_is_found_when_a_segment_is_made_and_writing_resumes(tmp_path: Path) -> None:
    """A segment's space is reserved when it is made: a full disk then costs the records that find no segment (in
    memory only, as without a journal) and never a SIGBUS; the journal writes again once there is room."""
    from modelway.usage.spill import claim_spill

    p = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path / "j"), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and "cannot create a segment" in p.stderr and "writing again" in p.stderr, p.stderr
    replayed: list[str] = []
    for segment in orphans(tmp_path / "j"):
        claimed = claim_spill(segment)
        assert claimed is not None
        f, records, rejected = claimed
        f.close()
        assert rejected == []
        replayed += [r.request_id for r in records]
    per_segment = 4096 // (len(orjson.dumps(rec(0))) + 1)
    assert replayed == ids(per_segment) + ["r20"]


def test_a_forked_process_draws_its_own_record_ids() -> None:
    """Record ids are a per-process prefix and a counter: a process forked after the import (a pre-loading server)
    drew its parent's ids, and the store dropped one of each pair as a replay."""
    import os

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, (rec(0).record_id or "").encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 100).decode()
    os.close(r)
    os.close(w)
    assert child and child[:16] != (rec(1).record_id or "")[:16]
