"""The response store of /v1/responses: in memory, and in SQL on both backends (SQLite in a file, PostgreSQL in a
schema of its own per test)."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from schemas import drop_schema

import throwaway
from modelway.store import SQLStore
from modelway.store import responses as rs
from modelway.store.responses import (
    DAY,
    MemoryResponseStore,
    ResponseStore,
    ResponseStoreUnavailableError,
    SQLResponseStore,
    StoredResponse,
)
from services import PG_URL


def rec(
    rid: str, key_id: str | None = "k1", *, previous: str | None = None, age: float = 0.0, text: str = "hi"
) -> StoredResponse:
    user = {"type": "message", "id": f"msg_in_{rid}", "role": "user", "content": [{"type": "input_text", "text": text}]}
    out = {
        "type": "message",
        "id": f"msg_out_{rid}",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "ok"}],
    }
    body = {"id": rid, "object": "response", "output": [out], "metadata": {"n": rid}}
    return StoredResponse(rid, key_id, time.time() - age, previous, [user], [out], body)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseStore]:
    """A response store of each kind, with a 10-day retention and a 4 KiB bound on one response."""
    if request.param == "memory":
        yield MemoryResponseStore(max_items=100, retention=10 * DAY, max_bytes=4096)
        return
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        request.getfixturevalue("postgres_server")
        schema = "mw_test_" + secrets.token_hex(6)
        url = f"{PG_URL}?schema={schema}"
    sql = SQLStore(url)
    await sql.open()
    try:
        yield SQLResponseStore(sql, retention=10 * DAY, max_bytes=4096)
    finally:
        await sql.aclose()
        if schema is not None:
            await drop_schema(schema)


async def test_kept_and_read_back(store: ResponseStore) -> None:
    r = rec("resp_1")
    assert await store.put(r)
    got = await store.get("resp_1", "k1")
    assert got is not None
    assert (got.id, got.key_id, got.previous_id, got.input, got.output, got.body) == (
        r.id,
        r.key_id,
        r.previous_id,
        r.input,
        r.output,
        r.body,
    )
    assert abs(got.created_at - r.created_at) < 1e-3
    assert await store.get("resp_2", "k1") is None


async def test_scoped_by_key(store: ResponseStore) -> None:
    await store.put(rec("resp_k", "k1"))
    await store.put(rec("resp_none", None))
    assert await store.get("resp_k", "k2") is None
    assert await store.get("resp_k", None) is None  # no key is not every key
    assert await store.get("resp_none", "k1") is None
    assert (await store.get("resp_none", None)) is not None
    assert not await store.delete("resp_k", "k2")
    assert not await store.delete("resp_k", None)
    assert (await store.get("resp_k", "k1")) is not None
    assert await store.delete("resp_k", "k1")
    assert await store.get("resp_k", "k1") is None
    assert not await store.delete("resp_k", "k1")


async def test_expired_responses_are_never_served(store: ResponseStore) -> None:
    await store.put(rec("resp_old", age=11 * DAY))
    await store.put(rec("resp_new", age=9 * DAY))
    assert await store.get("resp_old", "k1") is None
    assert not await store.delete("resp_old", "k1")
    assert (await store.get("resp_new", "k1")) is not None


async def test_too_large_is_not_kept(store: ResponseStore) -> None:
    big = rec("resp_big", text="x" * 5000)
    assert store.encode(big) is None
    assert not await store.put(big)
    assert await store.get("resp_big", "k1") is None


async def test_a_chain_oldest_first(store: ResponseStore) -> None:
    await store.put(rec("resp_a"))
    await store.put(rec("resp_b", previous="resp_a"))
    await store.put(rec("resp_c", previous="resp_b"))
    chain = await store.chain("resp_c", "k1")
    assert chain is not None and [r.id for r in chain] == ["resp_a", "resp_b", "resp_c"]
    assert await store.chain("resp_c", "k2") is None
    assert await store.chain("resp_nope", "k1") is None
    await store.delete("resp_a", "k1")  # a link gone further back ends the chain there
    chain = await store.chain("resp_c", "k1")
    assert chain is not None and [r.id for r in chain] == ["resp_b", "resp_c"]


async def test_writing_again_replaces(store: ResponseStore) -> None:
    await store.put(rec("resp_1", text="first"))
    await store.put(rec("resp_1", text="second"))
    got = await store.get("resp_1", "k1")
    assert got is not None and got.input[0]["content"][0]["text"] == "second"


async def test_memory_store_drops_the_least_recently_used() -> None:
    store = MemoryResponseStore(max_items=3)
    for n in range(3):
        await store.put(rec(f"resp_{n}"))
    assert await store.get("resp_0", "k1") is not None  # used: now the most recent
    await store.put(rec("resp_3"))
    assert len(store) == 3
    assert await store.get("resp_1", "k1") is None
    assert all([await store.get(f"resp_{n}", "k1") for n in (0, 2, 3)])


async def test_sql_store_deletes_expired_rows_on_a_write_at_most_once_a_minute(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    sql = SQLStore(f"sqlite:///{db}")
    await sql.open()
    try:
        store = SQLResponseStore(sql, retention=10 * DAY)
        store._purged = time.monotonic()  # as if it had just purged
        await store.put(rec("resp_old1", age=20 * DAY))
        await store.put(rec("resp_old2", age=20 * DAY))
        await store.put(rec("resp_new"))

        def rows() -> list[str]:
            with sqlite3.connect(db) as conn:
                return sorted(r[0] for r in conn.execute("SELECT id FROM mw_responses"))

        assert rows() == ["resp_new", "resp_old1", "resp_old2"]  # (never served, deleted later)
        store._purged -= rs.PURGE_EVERY  # a minute later
        await store.put(rec("resp_newer"))
        assert rows() == ["resp_new", "resp_newer"]
    finally:
        await sql.aclose()


async def test_sql_outage_is_a_503() -> None:
    sql = SQLStore(f"postgresql://nobody@127.0.0.1:{throwaway.free_port()}/none")
    sql._engine = sql._create_engine()  # "opened" against a server that is not there
    store = SQLResponseStore(sql)
    try:
        for call in (store.get("resp_1", "k1"), store.put(rec("resp_1")), store.delete("resp_1", None)):
            with pytest.raises(ResponseStoreUnavailableError) as info:
                await call
            assert info.value.http_status == 503 and info.value.code == "store_unavailable"
    finally:
        await sql.aclose()


async def test_the_migration_creates_the_table(tmp_path: Path) -> None:
    sql = SQLStore(f"sqlite:///{tmp_path / 'm.db'}")
    await sql.open()
    await sql.aclose()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        cols: list[Any] = [r[1] for r in conn.execute("PRAGMA table_info(mw_responses)")]
    assert cols == ["id", "key_id", "created_at", "previous_id", "data"]
