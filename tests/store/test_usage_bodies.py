"""Records' bodies (``request_log.bodies``) in the store, on both backends: stored beside their record in its insert
transaction, read with it by its record_id, stored once, never for a record without them, deleted with the record
by the retention, in bounded batches."""

from __future__ import annotations

import pytest

from modelway.store import SQLStore
from modelway.usage.records import RecordWithBodies, UsageRecord

#: 2023-11-15 00:00:00 UTC
MIDNIGHT = 1_700_006_400.0


def plain(i: int, ts: float = MIDNIGHT) -> UsageRecord:
    return UsageRecord(
        ts=ts + i, request_id=f"r{i}", key_id="k1", model="gpt", deployment="openai/gpt", endpoint="chat",
        stream=False, total_tokens=i, cost=0.5, record_id=f"rid{i}",
    )  # fmt: skip


def bodied(i: int, request: str | None, response: str | None, ts: float = MIDNIGHT) -> RecordWithBodies:
    return RecordWithBodies.of(plain(i, ts), request, response)


async def body_rows(store: SQLStore) -> dict[str, tuple[float, str | None, str | None]]:
    async with store._connect() as conn:
        rows = await conn.exec_driver_sql("SELECT record_id, ts, request_body, response_body FROM mw_usage_bodies")
        return {r[0]: (r[1], r[2], r[3]) for r in rows.all()}


async def test_a_record_is_read_with_its_bodies_and_one_without_them_has_none(store: SQLStore) -> None:
    # text a database could mangle: quotes, backslashes, Chinese, an emoji, a long body (an overflowing row)
    request = '{"model": "gpt", "messages": [{"role": "user", "content": "引号 \\" \\\\ 🙂"}]}'
    response = '{"choices": [{"message": {"content": "' + "长" * 50_000 + '"}}]}'
    await store.insert_usage([bodied(1, request, response), plain(2), bodied(3, request, None)])
    found = await store.usage_record("rid1")
    assert found is not None
    _row_id, _name, rec = found
    assert isinstance(rec, RecordWithBodies)
    assert (rec.request_body, rec.response_body) == (request, response)
    assert rec.without_bodies() == plain(1)
    found = await store.usage_record("rid2")
    assert found is not None and type(found[2]) is UsageRecord and found[2] == plain(2)
    found = await store.usage_record("rid3")  # a stream: its request only
    assert found is not None and isinstance(found[2], RecordWithBodies) and found[2].response_body is None
    assert set(await body_rows(store)) == {"rid1", "rid3"}  # no row for the record without bodies
    # a page of records stays light: no bodies
    page, _more = await store.usage_page(limit=10)
    assert [type(r) for _i, _n, r in page] == [UsageRecord] * 3


async def test_a_replayed_record_keeps_the_bodies_stored_first(store: SQLStore) -> None:
    await store.insert_usage([bodied(1, "first", "answer")])
    await store.insert_usage([bodied(1, "again", "other"), bodied(1, "twice", None), bodied(2, "new", None)])
    rows = await body_rows(store)
    assert rows == {"rid1": (MIDNIGHT + 1, "first", "answer"), "rid2": (MIDNIGHT + 2, "new", None)}
    assert [r["requests"] for r in await store.usage_summary(group_by="model")] == [2]


async def test_a_refused_batch_stores_no_bodies(store: SQLStore) -> None:
    bad = UsageRecord(1.0, "bad", "k1", None, None, "chat", False)  # type: ignore[arg-type]  # model NOT NULL
    with pytest.raises(Exception, match="(?i)null"):
        await store.insert_usage([bodied(1, "kept?", "no"), bad])
    assert await body_rows(store) == {}


async def test_the_retention_deletes_bodies_with_their_records_in_bounded_batches(store: SQLStore) -> None:
    old = [bodied(i, f"old {i}", "x", ts=MIDNIGHT - 86_400) for i in range(25)]
    new = [bodied(i, f"new {i}", None) for i in range(100, 105)]
    await store.insert_usage([*old, *(plain(i, MIDNIGHT - 86_400) for i in range(50, 60)), *new])
    assert await store.delete_usage_before(MIDNIGHT, limit=10) == 10
    assert len(await body_rows(store)) == 30 - 10  # at most the batch of bodies too
    while await store.delete_usage_before(MIDNIGHT, limit=10):
        pass
    assert set(await body_rows(store)) == {f"rid{i}" for i in range(100, 105)}
    assert await store.usage_record("rid3") is None
    found = await store.usage_record("rid101")
    assert found is not None and isinstance(found[2], RecordWithBodies) and found[2].request_body == "new 101"
