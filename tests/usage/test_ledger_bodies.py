"""Records with bodies in the ledger: the bodies travel with the record through the journal and the spill file, are
bounded in memory while the store is down, and never cost a record the store would take without them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
from sqlalchemy.exc import DataError
from test_ledger import SpyStore, rec, store, stored

from modelway.store import SQLStore
from modelway.usage import Ledger, UsageRecord
from modelway.usage.records import RecordWithBodies

__all__ = ["store"]  # the fixture, shared with test_ledger


def bodied(i: int, request: str = "request", response: str | None = "answer") -> RecordWithBodies:
    return RecordWithBodies.of(rec(i), f"{request} {i}", None if response is None else f"{response} {i}")


async def bodies_of(store: SQLStore, record_id: str) -> tuple[str | None, str | None] | None:
    """The bodies stored with a record (``None``: the record has none, or is not stored)."""
    found = await store.usage_record(record_id)
    if found is None or not isinstance(found[2], RecordWithBodies):
        return None
    return found[2].request_body, found[2].response_body


async def test_bodies_go_through_the_spill_file_while_the_store_is_down(store: SpyStore, tmp_path: Path) -> None:
    spill = tmp_path / "usage.jsonl"
    ledger = Ledger(store, flush_interval=60, spill_path=spill)
    await ledger.start()
    ledger.record_with_bodies(bodied(1))
    ledger.record(rec(2))
    store.down = True
    await ledger.aclose()
    lines = [orjson.loads(line) for line in spill.read_bytes().splitlines()]
    assert [line.get("request_body") for line in lines] == ["request 1", None]
    store.down = False
    again = Ledger(store, flush_interval=60, spill_path=spill)
    await again.start()
    assert await stored(store) == ["r1", "r2"]
    assert await bodies_of(store, "rec-1") == ("request 1", "answer 1")
    assert await bodies_of(store, "rec-2") is None
    await again.aclose()


async def test_bodies_are_journaled_and_replayed_after_a_crash(store: SpyStore, tmp_path: Path) -> None:
    jdir = tmp_path / "journal"
    dead = Ledger(store, journal_dir=jdir)  # never started: nothing is written to the store
    dead.record_with_bodies(bodied(1, response=None))  # a stream: its request only
    assert dead.journal is not None
    dead.journal.close()  # the process dies: its segment stays, unlocked
    ledger = Ledger(store, journal_dir=jdir)
    await ledger.start()
    assert await bodies_of(store, "rec-1") == ("request 1", None)
    await ledger.aclose()


async def test_bodies_waiting_in_memory_are_bounded(store: SpyStore) -> None:
    ledger = Ledger(store, flush_interval=60, max_body_chars=25)
    for i in range(3):  # 10 characters each: the third would go over 25
        ledger.record_with_bodies(bodied(i, request="req", response="ans"))
    assert ledger.bodies_dropped == 1 and ledger.pending == 3
    await ledger.flush()
    assert await stored(store) == ["r0", "r1", "r2"]
    assert [await bodies_of(store, f"rec-{i}") for i in range(3)] == [("req 0", "ans 0"), ("req 1", "ans 1"), None]
    ledger.record_with_bodies(bodied(3, request="req", response="ans"))  # written: room again
    await ledger.flush()
    assert await bodies_of(store, "rec-3") == ("req 3", "ans 3") and ledger.bodies_dropped == 1
    await ledger.aclose()


class RefusesBodies(SpyStore):
    """A store that refuses any batch holding a record with bodies (as a database refusing a value would)."""

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        if any(isinstance(r, RecordWithBodies) for r in records):
            raise DataError("INSERT INTO mw_usage_bodies", None, ValueError("a value the database refuses"))
        await super().insert_usage(records)


async def test_a_record_refused_with_its_bodies_is_stored_without_them(tmp_path: Path) -> None:
    refusing = RefusesBodies(f"sqlite:///{tmp_path / 'u.db'}")
    await refusing.open()
    try:
        spill = tmp_path / "usage.jsonl"
        spill.write_bytes(orjson.dumps(bodied(9).to_dict()) + b"\n")  # from an earlier run
        ledger = Ledger(refusing, flush_interval=60, spill_path=spill)
        await ledger.start()
        ledger.record_with_bodies(bodied(1))
        ledger.record(rec(2))
        await ledger.flush()
        assert await stored(refusing) == ["r9", "r1", "r2"]  # (the spill file imported at the start)
        assert ledger.rejected == 0 and not spill.with_name("usage.jsonl.rejected").exists()
        assert await bodies_of(refusing, "rec-1") is None and await bodies_of(refusing, "rec-9") is None
        await ledger.aclose()
    finally:
        await refusing.aclose()
