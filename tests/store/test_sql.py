"""The SQL store, checked on both backends: SQLite (a file) and PostgreSQL (a real server, one schema per test)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from modelway.auth.keys import ApiKey
from modelway.errors import ConfigError
from modelway.store import SQLStore
from modelway.store.migrations import SCHEMA_VERSION
from modelway.usage import UsageRecord

#: 2023-11-15 00:00:00 UTC
MIDNIGHT = 1_700_006_400.0
DAY = 86_400.0


def make_key(n: int, **fields: Any) -> ApiKey:
    return ApiKey(
        id=f"key_{n:04d}",
        name=f"key {n}",
        key_hash=f"{n:064x}",
        prefix=f"mw-{n:04d}",
        created_at=1_700_000_000.25 + n,
        **fields,
    )


def usage(ts: float, rid: str, key_id: str | None, model: str, deployment: str | None, **fields: Any) -> UsageRecord:
    fields.setdefault("stream", False)
    return UsageRecord(
        ts=ts, request_id=rid, key_id=key_id, model=model, deployment=deployment, endpoint="chat", **fields
    )


#: five requests around a UTC midnight; costs are binary fractions, so every sum is exact
R1 = usage(
    MIDNIGHT - 10,
    "r1",
    "k1",
    "gpt",
    "openai/gpt",
    prompt_tokens=10,
    completion_tokens=5,
    total_tokens=15,
    cost=0.5,
    latency_ms=120.5,
)
R2 = usage(
    MIDNIGHT - 5,
    "r2",
    "k1",
    "glm",
    "zhipu/glm",
    prompt_tokens=20,
    completion_tokens=10,
    total_tokens=30,
    cost=1.25,
    status=500,
    error="upstream_error",
    stream=True,
    ttft_ms=33.25,
)
R3 = usage(MIDNIGHT, "r3", "k2", "gpt", "openai/gpt", prompt_tokens=1, completion_tokens=1, total_tokens=2, cost=0.25)
R4 = usage(MIDNIGHT + 3600, "r4", None, "gpt", None, status=429, error="rate_limited")
R5 = usage(
    MIDNIGHT + 7200, "r5", "k2", "glm", "zhipu/glm", prompt_tokens=100, completion_tokens=50, total_tokens=150, cost=2.0
)
RECORDS = [R1, R2, R3, R4, R5]


#: what a usage summary row holds besides the totals
LATENCY_FIELDS = ("p50_ms", "p95_ms", "ttft_p50_ms", "key_name")


def totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows without their percentiles and key names (checked on their own)."""
    return [{k: v for k, v in r.items() if k not in LATENCY_FIELDS} for r in rows]


def row(group: str | None, requests: int, errors: int, pt: int, ct: int, cost: float) -> dict[str, Any]:
    return {
        "group": group,
        "requests": requests,
        "errors": errors,
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "total_tokens": pt + ct,
        "cost": cost,
    }


def test_importing_modelway_does_not_import_sqlalchemy() -> None:
    code = "import sys, modelway, modelway.usage, modelway.store; sys.exit('sqlalchemy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


class TestURL:
    @pytest.mark.parametrize(
        ("url", "dialect", "shown"),
        [
            ("sqlite:///relative/path.db", "sqlite", "sqlite+aiosqlite:///relative/path.db"),
            ("sqlite:////abs/path.db", "sqlite", "sqlite+aiosqlite:////abs/path.db"),
            ("sqlite:///:memory:", "sqlite", "sqlite+aiosqlite:///:memory:"),
            ("sqlite+aiosqlite:///x.db", "sqlite", "sqlite+aiosqlite:///x.db"),
            ("postgresql://u@h:5433/db", "postgresql", "postgresql+asyncpg://u@h:5433/db"),
            ("postgres://u:secret@h/db", "postgresql", "postgresql+asyncpg://u:***@h/db"),
            ("postgresql+asyncpg://u@h/db?schema=s1", "postgresql", "postgresql+asyncpg://u@h/db"),
        ],
    )
    def test_accepted_forms_map_to_async_drivers(self, url: str, dialect: str, shown: str) -> None:
        s = SQLStore(url)
        assert (s.dialect, s.url) == (dialect, shown)

    @pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "sqlite+pysqlite:///x.db"])
    def test_unknown_scheme_is_a_config_error_naming_it(self, url: str) -> None:
        scheme = url.partition(":")[0]
        with pytest.raises(ConfigError) as info:
            SQLStore(url)
        message = str(info.value)
        assert f"the store URL scheme {scheme!r} is not supported" in message
        assert "sqlite:///path.db" in message and "postgresql://user@host:port/db" in message

    def test_unparseable_url_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="scheme 'nonsense'"):
            SQLStore("nonsense:not a url")

    def test_schema_is_postgresql_only_and_must_be_an_identifier(self) -> None:
        with pytest.raises(ConfigError, match="for PostgreSQL only"):
            SQLStore("sqlite:///x.db?schema=s")
        with pytest.raises(ConfigError, match="invalid PostgreSQL schema name 'a;b'"):
            SQLStore("postgresql://u@h/db?schema=a;b")

    async def test_use_before_open_is_an_error(self) -> None:
        with pytest.raises(RuntimeError, match=r"call SQLStore.open\(\) first"):
            await SQLStore("sqlite:///:memory:").get_key("k")


class TestOpen:
    async def test_open_twice_and_reopen_keep_the_data(self, url: str) -> None:
        s = SQLStore(url)
        await s.open()
        await s.open()
        await s.insert_key(make_key(1))
        await s.aclose()
        await s.aclose()
        await s.open()
        try:
            assert await s.get_key("key_0001") == make_key(1)
        finally:
            await s.aclose()

    async def test_two_stores_migrating_at_once_both_succeed(self, url: str) -> None:
        a, b = SQLStore(url), SQLStore(url)
        try:
            await asyncio.gather(a.open(), b.open())
            await a.insert_key(make_key(1))
            await b.insert_usage([R1])
            assert await b.get_key("key_0001") == make_key(1)
            assert await a.usage_records() == [R1]
        finally:
            await a.aclose()
            await b.aclose()

    async def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "new.db"
        s = SQLStore(f"sqlite:///{path}")
        await s.open()
        await s.aclose()
        with sqlite3.connect(path) as db:
            db.execute("UPDATE mw_schema_version SET version = 99")
        db.close()
        with pytest.raises(ConfigError, match="schema is at version 99, newer than this modelway knows"):
            await s.open()

    async def test_sqlite_file_is_in_wal_mode_and_parent_dirs_are_created(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "store.db"
        s = SQLStore(f"sqlite:///{path}")
        await s.open()
        await s.aclose()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("SELECT version FROM mw_schema_version").fetchall() == [(SCHEMA_VERSION,)]
        db.close()

    async def test_in_memory_database_serves_concurrent_calls(self) -> None:
        s = SQLStore("sqlite:///:memory:")
        await s.open()
        try:
            writes = (s.insert_usage([usage(float(i), f"r{i}", "k", "m", None, cost=0.25)]) for i in range(20))
            await asyncio.gather(*writes)
            spends = await asyncio.gather(*(s.spend("k", since=0) for _ in range(5)))
            assert spends == [5.0] * 5
            assert [r.request_id for r in await s.usage_records(limit=50)] == [f"r{i}" for i in range(19, -1, -1)]
        finally:
            await s.aclose()


class TestKeys:
    async def test_insert_and_read_back_every_field(self, store: SQLStore) -> None:
        key = make_key(
            1,
            models=["zhipu/glm-4", "gpt"],
            rpm=60,
            tpm=100_000,
            max_parallel=4,
            budget=12.5,
            budget_period="month",
            expires_at=1_800_000_000.5,
            metadata={"team": "数据", "tags": ["a", "b"], "n": 1},
        )
        await store.insert_key(key)
        await store.insert_key(make_key(2))  # models None, metadata {}
        assert await store.get_key("key_0001") == key
        assert await store.key_by_hash(key.key_hash) == key
        assert await store.get_key("key_0002") == make_key(2)
        assert await store.get_key("nope") is None
        assert await store.key_by_hash("0" * 63 + "f") is None

    async def test_duplicate_id_or_hash_is_refused(self, store: SQLStore) -> None:
        await store.insert_key(make_key(1))
        with pytest.raises(IntegrityError):
            await store.insert_key(make_key(1))
        other = make_key(2)
        other.key_hash = make_key(1).key_hash
        with pytest.raises(IntegrityError):
            await store.insert_key(other)
        assert [k.id for k in await store.list_keys()] == ["key_0001"]

    async def test_list_keys_oldest_first_and_revoked_only_when_asked(self, store: SQLStore) -> None:
        for n in (3, 1, 2):
            await store.insert_key(make_key(n))
        assert await store.revoke_key("key_0002", at=5.0) is True
        assert [k.id for k in await store.list_keys()] == ["key_0001", "key_0003"]
        listed = await store.list_keys(include_revoked=True)
        assert [(k.id, k.revoked_at) for k in listed] == [("key_0001", None), ("key_0002", 5.0), ("key_0003", None)]

    async def test_update_changes_only_the_given_fields(self, store: SQLStore) -> None:
        await store.insert_key(make_key(1, models=["a"], rpm=10, metadata={"x": 1}))
        updated = await store.update_key("key_0001", name="renamed", models=None, budget=3.5, metadata={"y": [2]})
        expected = make_key(1, rpm=10, budget=3.5, metadata={"y": [2]})
        expected.name = "renamed"
        assert updated == expected
        assert await store.get_key("key_0001") == expected
        updated = await store.update_key("key_0001", models=["b", "c"], rpm=None, expires_at=9.0)
        assert updated is not None and (updated.models, updated.rpm, updated.expires_at) == (["b", "c"], None, 9.0)
        assert await store.update_key("key_0001") == updated  # no fields: the key as it is

    async def test_update_of_a_missing_key_is_none(self, store: SQLStore) -> None:
        assert await store.update_key("nope", rpm=1) is None
        assert await store.update_key("nope") is None

    @pytest.mark.parametrize("field", ["colour", "key_hash", "id", "prefix", "created_at"])
    async def test_update_refuses_unknown_and_fixed_fields(self, store: SQLStore, field: str) -> None:
        await store.insert_key(make_key(1))
        with pytest.raises(ValueError, match=f"cannot update the key field\\(s\\) {field};"):
            await store.update_key("key_0001", **{field: "x"})
        assert await store.get_key("key_0001") == make_key(1)

    async def test_revoke_once(self, store: SQLStore) -> None:
        await store.insert_key(make_key(1))
        assert await store.revoke_key("key_0001", at=100.5) is True
        assert await store.revoke_key("key_0001", at=200.0) is False  # already revoked: the first time stays
        key = await store.get_key("key_0001")
        assert key is not None and key.revoked_at == 100.5 and not key.active(now=0)
        assert await store.revoke_key("nope", at=1.0) is False


class TestUsage:
    async def test_records_round_trip_newest_first(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        await store.insert_usage([])
        assert await store.usage_records() == [R5, R4, R3, R2, R1]
        assert await store.usage_records(limit=2) == [R5, R4]
        assert await store.usage_records(key_id="k1") == [R2, R1]
        assert await store.usage_records(since=MIDNIGHT) == [R5, R4, R3]
        assert await store.usage_records(key_id="k2", since=MIDNIGHT + 1, limit=10) == [R5]

    async def test_insert_is_all_or_nothing(self, store: SQLStore) -> None:
        bad = usage(1.0, "bad", "k1", None, None)  # type: ignore[arg-type]  # model is NOT NULL
        with pytest.raises(IntegrityError):
            await store.insert_usage([R1, bad, R2])
        assert await store.usage_records() == []

    async def test_spend_since_is_inclusive(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        assert await store.spend("k1", since=0) == 1.75
        assert await store.spend("k1", since=MIDNIGHT - 5) == 1.25
        assert await store.spend("k1", since=MIDNIGHT - 4) == 0.0
        assert await store.spend("k2", since=MIDNIGHT) == 2.25
        assert await store.spend("nobody", since=0) == 0.0

    async def test_summary_by_key(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        assert totals(await store.usage_summary(group_by="key")) == [
            row("k2", 2, 0, 101, 51, 2.25),
            row("k1", 2, 1, 30, 15, 1.75),
            row(None, 1, 1, 0, 0, 0.0),
        ]

    async def test_summary_by_model(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        assert totals(await store.usage_summary(group_by="model")) == [
            row("glm", 2, 1, 120, 60, 3.25),
            row("gpt", 3, 1, 11, 6, 0.75),
        ]

    async def test_summary_by_deployment(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        assert totals(await store.usage_summary(group_by="deployment")) == [
            row("zhipu/glm", 2, 1, 120, 60, 3.25),
            row("openai/gpt", 2, 0, 11, 6, 0.75),
            row("(none)", 1, 1, 0, 0, 0.0),  # refused before any deployment: never None
        ]

    async def test_summary_by_day_splits_at_utc_midnight(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        assert totals(await store.usage_summary(group_by="day")) == [
            row("2023-11-15", 3, 1, 101, 51, 2.25),
            row("2023-11-14", 2, 1, 30, 15, 1.75),
        ]

    async def test_day_boundaries_to_the_fraction_of_a_second(self, store: SQLStore) -> None:
        stamps = [MIDNIGHT - 0.5, MIDNIGHT, MIDNIGHT + DAY - 0.5, MIDNIGHT + DAY]
        await store.insert_usage([usage(ts, f"r{i}", "k", "m", None, cost=2.0**-i) for i, ts in enumerate(stamps)])
        rows = await store.usage_summary(group_by="day")
        assert [(r["group"], r["requests"], r["cost"]) for r in rows] == [
            ("2023-11-14", 1, 1.0),
            ("2023-11-15", 2, 0.75),
            ("2023-11-16", 1, 0.125),
        ]

    async def test_summary_filters(self, store: SQLStore) -> None:
        await store.insert_usage(RECORDS)
        assert totals(await store.usage_summary(group_by="key", since=MIDNIGHT)) == [
            row("k2", 2, 0, 101, 51, 2.25),
            row(None, 1, 1, 0, 0, 0.0),
        ]
        assert totals(await store.usage_summary(group_by="key", until=MIDNIGHT)) == [row("k1", 2, 1, 30, 15, 1.75)]
        assert totals(await store.usage_summary(group_by="model", key_id="k1")) == [
            row("glm", 1, 1, 20, 10, 1.25),
            row("gpt", 1, 0, 10, 5, 0.5),
        ]
        assert totals(await store.usage_summary(group_by="day", model="gpt")) == [
            row("2023-11-14", 1, 0, 10, 5, 0.5),
            row("2023-11-15", 2, 1, 1, 1, 0.25),
        ]
        # at whole hours: MIDNIGHT + 1 is rounded down to MIDNIGHT, MIDNIGHT + 7199 up to MIDNIGHT + 7200
        assert totals(await store.usage_summary(group_by="model", since=MIDNIGHT + 3600, until=MIDNIGHT + 7200)) == [
            row("gpt", 1, 1, 0, 0, 0.0)
        ]
        assert totals(await store.usage_summary(group_by="model", since=MIDNIGHT + 1, until=MIDNIGHT + 7199)) == [
            row("gpt", 2, 1, 1, 1, 0.25)
        ]
        assert totals(await store.usage_summary(group_by="model", key_id="nobody")) == []

    async def test_equal_costs_are_ordered_by_group_with_none_last(self, store: SQLStore) -> None:
        await store.insert_usage(
            [
                usage(1.0, "a", None, "b-model", None, cost=1.0),
                usage(2.0, "b", "k", "B-model", "x", cost=1.0),
                usage(3.0, "c", "k", "a-model", "y", cost=1.0),
            ]
        )
        rows = await store.usage_summary(group_by="model")
        assert [r["group"] for r in rows] == ["B-model", "a-model", "b-model"]  # code point order on both backends
        rows = await store.usage_summary(group_by="key")
        assert [(r["group"], r["cost"]) for r in rows] == [("k", 2.0), (None, 1.0)]
        rows = await store.usage_summary(group_by="deployment")
        assert [r["group"] for r in rows] == ["x", "y", "(none)"]

    async def test_a_sqlite_batch_crosses_to_the_driver_s_thread_once_per_statement(
        self, sqlite_store: SQLStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # a batch's statements go straight to aiosqlite's connection (modelway.store.driver): ~13 crossings to its
        # thread instead of ~40 through SQLAlchemy's cursors, each of which wakes the event loop
        import aiosqlite

        crossings = 0
        run = aiosqlite.Connection._execute

        async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal crossings
            crossings += 1
            return await run(self, fn, *args, **kwargs)

        s = sqlite_store
        await s.insert_usage([R1])  # (the connection is made, and the statements compiled, once)
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        await s.insert_usage([R2, R3, R4, R5])
        assert crossings <= 16, crossings
        monkeypatch.undo()
        assert await s.usage_records() == [R5, R4, R3, R2, R1]
        assert await s.spend("k1", since=0) == 1.75

    async def test_a_sqlite_batch_is_a_few_multi_row_statements(
        self, sqlite_store: SQLStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # executemany steps once per row and sqlite3 gives up the GIL around each step: under load the writer then
        # waits for the event loop's thread once per row; a batch goes as multi-row INSERTs instead (decision 36)
        from modelway.store import driver

        s = sqlite_store
        await s.insert_usage([R1])
        assert s._engine is not None
        async with s._engine.connect() as conn:
            aio = (await conn.get_raw_connection()).driver_connection
        sent: list[tuple[str, int]] = []
        for name in ("execute", "execute_fetchall"):

            def recorder(run: Any) -> Any:
                async def recorded(sql: str, params: Any = None) -> Any:
                    sent.append((sql, len(params or ())))
                    return await run(sql, params)

                return recorded

            monkeypatch.setattr(aio, name, recorder(getattr(aio, name)))
        traced: list[str] = []
        await aio._execute(aio._connection.set_trace_callback, traced.append)
        records = [usage(10.0 + i, f"m{i}", "kb", "gpt", "d", cost=0.5) for i in range(1200)]
        try:
            await s.insert_usage(records)
        finally:
            await aio._execute(aio._connection.set_trace_callback, None)
        inserts = [params for sql, params in sent if sql.startswith("INSERT INTO mw_usage ")]
        columns = inserts[0] // 500
        assert [params // columns for params in inserts] == [500, 500, 128, 64, 8]  # 1,200 rows
        assert len(traced) < 40, traced[:50]  # (executemany traces every row: 1,200 and more)
        assert await s.spend("kb", since=0) == 600.0

        # batches of every size from 1 to 300 rows: a few statement texts per table, not one per size (sqlite3 keeps
        # the last 128 it compiled on a connection, with the values bound to each)
        sent.clear()
        at = 20_000.0
        for n in range(1, 301):
            await s.insert_usage([usage(at + i, f"v{n}-{i}", f"kv{i % 3}", "gpt", "d", cost=0.25) for i in range(n)])
            at += n
        texts: dict[str, set[str]] = {}
        for sql, _ in sent:
            texts.setdefault(sql.split("(")[0].split(" WHERE ")[0], set()).add(sql)
        assert texts.keys() >= {"INSERT INTO mw_usage ", "SELECT record_id FROM mw_usage"}
        assert max(len(t) for t in texts.values()) <= 10, {k: len(t) for k, t in texts.items()}
        assert await s.spend("kv0", since=0) == 0.25 * sum(len(range(0, n, 3)) for n in range(1, 301))

        # a library that takes fewer parameters a statement (999 before SQLite 3.32): fewer rows each, none over it
        sent.clear()
        monkeypatch.setattr(driver, "max_variables", lambda: 2 * columns + 3)
        more = [usage(5000.0 + i, f"n{i}", "k2", "gpt", None, cost=0.25) for i in range(5)]
        await s.insert_usage(more)
        assert [params for sql, params in sent if sql.startswith("INSERT INTO mw_usage ")] == [2 * columns] * 2 + [
            columns
        ]
        assert max(params for _, params in sent) <= 2 * columns + 3
        assert await s.spend("k2", since=0) == 1.25
        assert [r.record_id for r in (await s.usage_records())[:5]] == [r.record_id for r in reversed(more)]
        totals = {row["group"]: row for row in await s.usage_summary(group_by="key")}
        assert totals["k2"]["requests"] == 5 and totals["kb"]["requests"] == 1200

    async def test_a_sqlite_refusal_is_sqlalchemy_s_error_and_stores_nothing(self, sqlite_store: SQLStore) -> None:
        from modelway.store.errors import refused, unreachable

        s = sqlite_store
        bad = usage(1.0, "bad", "k1", None, None)  # type: ignore[arg-type]  # model is NOT NULL
        with pytest.raises(IntegrityError) as err:
            await s.insert_usage([R1, bad])
        assert refused(err.value) and not unreachable(err.value)
        assert isinstance(err.value.orig, sqlite3.IntegrityError)
        await s.insert_usage([R2])  # the refused batch's transaction was rolled back: the next one goes through
        assert await s.usage_records() == [R2]

    async def test_a_sqlite_connection_lost_in_a_batch_is_unreachable_and_leaves_the_pool(
        self, sqlite_store: SQLStore
    ) -> None:
        # aiosqlite says "Connection closed" with a ValueError: it must come out as SQLAlchemy's OperationalError (the
        # ledger keeps the batch for later), and the dead connection must not be handed to the next caller
        from sqlalchemy import event

        from modelway.store.errors import unreachable

        s = sqlite_store
        await s.insert_usage([R1])
        armed = [True]

        def lose_it(conn: Any) -> None:  # the driver's connection dies inside the write transaction
            if armed[0] and conn.get_execution_options().get("mw_write"):
                armed[0] = False
                aio = conn.connection.driver_connection
                aio._connection.close()  # (its transaction and write lock go with it, as with a real loss)
                aio._connection = None

        assert s._engine is not None
        event.listen(s._engine.sync_engine, "begin", lose_it)
        with pytest.raises(OperationalError) as err:
            await s.insert_usage([R2])
        assert unreachable(err.value) and err.value.connection_invalidated
        assert await s.get_key("nope") is None  # a fresh connection, not the dead one
        await s.insert_usage([R2])
        assert await s.usage_records() == [R2, R1]

    async def test_unknown_group_by(self, store: SQLStore) -> None:
        with pytest.raises(ValueError, match="cannot group usage by 'week'; use one of: key, model, deployment, end"):
            await store.usage_summary(group_by="week")


async def test_open_waits_for_another_process_migrating_the_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A migration longer than a connection's busy timeout (5 s; 0.1 s here) held by another process: open() waits
    for it rather than failing with "database is locked"."""
    import logging
    import threading
    import time

    import modelway.store.sql as sql

    def short_timeout(dbapi_conn: Any, record: Any) -> None:
        connect(dbapi_conn, record)
        dbapi_conn.execute("PRAGMA busy_timeout = 100")

    connect = sql._sqlite_connect
    monkeypatch.setattr(sql, "_sqlite_connect", short_timeout)
    path = tmp_path / "busy.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
    db.close()
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(1.0)
        other.execute("COMMIT")
        other.close()
        done.set()

    threading.Thread(target=hold).start()
    held.wait()
    s = SQLStore(f"sqlite:///{path}")
    with caplog.at_level(logging.INFO, logger="modelway.store"):
        await s.open()
    try:
        assert done.is_set() and "another process holds the database" in caplog.text
        await s.insert_usage([R1])
        assert await s.usage_records() == [R1]
    finally:
        await s.aclose()
