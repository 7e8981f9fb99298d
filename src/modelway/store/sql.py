"""The SQL store: virtual keys and usage records in SQLite (one host) or PostgreSQL (shared by replicas).

SQLAlchemy Core with the async engine, and the drivers aiosqlite and asyncpg. The schema is created and upgraded
by :mod:`.migrations` when the store is opened. Floats are double precision; a key's ``models`` and ``metadata``
are JSON text, so both backends store them the same way.

SQLite notes: the file is put in WAL mode (readers never wait for the writer) and every connection waits up to
5 s for a lock instead of failing at once. pysqlite's own transaction handling is switched off, because it does
not begin a transaction before a ``SELECT``; the store emits ``BEGIN`` itself, and ``BEGIN IMMEDIATE`` for writes,
so a transaction that reads and then writes (the migration) holds the write lock from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Boolean, Double, Integer, String, event, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..auth.keys import ApiKey
from ..errors import ConfigError
from ..usage.records import FIELDS, GROUP_BY, RecordWithBodies, UsageRecord
from . import rollups, tables, usage_queries
from .driver import Statements
from .migrations import SCHEMA_VERSION, migrate, quote_schema
from .usage_queries import RecordFilter

__all__ = ["GROUP_BY", "RecordFilter", "SQLStore"]

log = logging.getLogger("modelway.store")

#: the URL schemes accepted, and the async driver each one uses
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
#: how long open() waits for another process's migration of the same SQLite file
MIGRATION_WAIT = 600.0
#: ApiKey fields fixed at creation: the id and the secret's hash and prefix identify the key
_FIXED_KEY_FIELDS = frozenset({"id", "key_hash", "prefix", "created_at"})
_KEY_FIELDS = tuple(f.name for f in dataclasses.fields(ApiKey))
_UPDATABLE = frozenset(_KEY_FIELDS) - _FIXED_KEY_FIELDS

_keys = tables.keys
_usage = tables.usage
#: the PostgreSQL type of each usage column, for the arrays of a batch insert (``unnest``)
_PG_ARRAY_TYPES = {Double: "float8", String: "text", Integer: "int4", Boolean: "bool"}


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _key_values(fields: dict[str, Any]) -> dict[str, Any]:
    """ApiKey field values as columns: ``models`` and ``metadata`` become JSON text."""
    out = dict(fields)
    if "models" in out and out["models"] is not None:
        out["models"] = _json(out["models"])
    if "metadata" in out:
        out["metadata"] = _json(out["metadata"])
    return out


def _key_from_row(row: Any) -> ApiKey:
    values = {name: row[name] for name in _KEY_FIELDS}
    if values["models"] is not None:
        values["models"] = orjson.loads(values["models"])
    values["metadata"] = orjson.loads(values["metadata"])
    return ApiKey(**values)


def _parse_url(url: str) -> tuple[URL, str | None]:
    """The async-driver URL for ``url``, and the PostgreSQL schema its ``?schema=`` names."""
    scheme = url.partition(":")[0]
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"the store URL (scheme {scheme!r}) is not a valid database URL: {exc}") from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"the store URL scheme {parsed.drivername!r} is not supported; use sqlite:///path.db, "
            "sqlite:///:memory:, postgresql://user@host:port/db (or postgres://, sqlite+aiosqlite://, "
            "postgresql+asyncpg://)"
        )
    schema = parsed.query.get("schema")
    if isinstance(schema, tuple):
        raise ConfigError("the store URL names more than one ?schema=")
    if schema is not None:
        if driver != "postgresql+asyncpg":
            raise ConfigError("?schema= in the store URL is for PostgreSQL only")
        quote_schema(schema)  # validates the name now, not at open()
        parsed = parsed.difference_update_query(["schema"])
    return parsed.set(drivername=driver), schema


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # pysqlite's implicit BEGIN off; see _sqlite_begin
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout = 5000")
    # switching to WAL takes the file's lock without waiting on the busy timeout: while another process creates
    # the same new database it can fail at once with "database is locked", so try again for a while (this runs
    # only when a connection is made, and WAL, once set, stays set in the file)
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except Exception as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.01)
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mw_write") else "BEGIN")


class SQLStore:
    """Keys and usage in a SQL database. Create it (no I/O), :meth:`open` it, :meth:`aclose` it."""

    def __init__(self, url: str) -> None:
        self._url, self._schema = _parse_url(url)
        self._sqlite = self._url.drivername.startswith("sqlite")
        self._memory = self._sqlite and self._url.database in (None, "", ":memory:")
        self._engine: AsyncEngine | None = None
        self._insert_sql: tuple[str, tuple[str, ...]] | None = None
        self._rollup_sql: list[tuple[str, tuple[int, ...] | None]] | None = None
        self._open_lock = asyncio.Lock()
        # an in-memory SQLite database is one connection, shared: one operation at a time on it
        self._serial = asyncio.Lock() if self._memory else None

    @property
    def url(self) -> str:
        """The URL the store connects to, password hidden (for logs and errors)."""
        if self._sqlite:  # render_as_string would escape ":memory:" to "%3Amemory%3A"
            return f"{self._url.drivername}:///{self._url.database or ':memory:'}"
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self._sqlite else "postgresql"

    async def open(self) -> None:
        """Connect and bring the schema up to date. Calling it again does nothing."""
        async with self._open_lock:
            if self._engine is not None:
                return
            engine = self._create_engine()
            try:
                before = await self._migrate(engine)
            except BaseException:
                await engine.dispose()
                raise
            self._engine = engine
            if before < SCHEMA_VERSION:
                log.info("store %s: schema migrated from version %d to %d", self.url, before, SCHEMA_VERSION)

    async def _migrate(self, engine: AsyncEngine) -> int:
        """Run the migrations; the schema version found. On SQLite, another process migrating the same file (a long
        step: filling the usage aggregates of a million records takes ~10 s) holds the write lock longer than the
        5 s a connection waits for it: wait on, up to :data:`MIGRATION_WAIT` seconds (PostgreSQL's lock waits)."""
        deadline = time.monotonic() + MIGRATION_WAIT
        waited = False
        while True:
            try:
                async with engine.connect() as conn:
                    await conn.execution_options(mw_write=True)
                    async with conn.begin():
                        return await migrate(conn, schema=self._schema)
            except OperationalError as exc:
                if not (self._sqlite and "locked" in str(exc)) or time.monotonic() >= deadline:
                    raise
                if not waited:
                    waited = True
                    log.info("store %s: another process holds the database (migrating it?): waiting", self.url)
                await asyncio.sleep(0.2)

    def _create_engine(self) -> AsyncEngine:
        if self._sqlite:
            if not self._memory and self._url.database:
                Path(self._url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(self._url)
            event.listen(engine.sync_engine, "connect", _sqlite_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            return engine
        connect_args: dict[str, Any] = {}
        if self._schema is not None:
            connect_args["server_settings"] = {"search_path": quote_schema(self._schema)}
        return create_async_engine(self._url, connect_args=connect_args, pool_pre_ping=True)

    async def ping(self) -> None:
        """Raise the database's error if it cannot answer a trivial query."""
        async with self._connect() as conn:
            await conn.execute(select(literal_column("1")))

    async def aclose(self) -> None:
        """Close every connection. The store can be opened again."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    @contextlib.asynccontextmanager
    async def _connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without an error."""
        if self._engine is None:
            raise RuntimeError("the store is not open: call SQLStore.open() first")
        async with contextlib.AsyncExitStack() as stack:
            if self._serial is not None:
                await stack.enter_async_context(self._serial)
            conn = await stack.enter_async_context(self._engine.connect())
            if write:
                await conn.execution_options(mw_write=True)
            await stack.enter_async_context(conn.begin())
            yield conn

    # -- keys -------------------------------------------------------------------------------------------------
    async def insert_key(self, key: ApiKey) -> None:
        """Store a new key. A duplicate id or hash raises :class:`sqlalchemy.exc.IntegrityError`."""
        values = _key_values({name: getattr(key, name) for name in _KEY_FIELDS})
        async with self._connect(write=True) as conn:
            await conn.execute(_keys.insert().values(values))

    async def get_key(self, key_id: str) -> ApiKey | None:
        async with self._connect() as conn:
            row = (await conn.execute(select(_keys).where(_keys.c.id == key_id))).mappings().first()
        return None if row is None else _key_from_row(row)

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose secret hashes to ``key_hash``, revoked or expired included (the caller decides)."""
        async with self._connect() as conn:
            row = (await conn.execute(select(_keys).where(_keys.c.key_hash == key_hash))).mappings().first()
        return None if row is None else _key_from_row(row)

    async def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        """Keys oldest first; expired keys are listed, revoked ones only with ``include_revoked``."""
        query = select(_keys).order_by(_keys.c.created_at, _keys.c.id)
        if not include_revoked:
            query = query.where(_keys.c.revoked_at.is_(None))
        async with self._connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_key_from_row(row) for row in rows]

    async def update_key(self, key_id: str, **fields: Any) -> ApiKey | None:
        """Change some fields of a key; the key as stored afterwards, or ``None`` when there is no such key.

        Raises :class:`ValueError` for a field that is not an :class:`ApiKey` field or that is fixed at
        creation (``id``, ``key_hash``, ``prefix``, ``created_at``).
        """
        wrong = sorted(set(fields) - _UPDATABLE)
        if wrong:
            raise ValueError(
                f"cannot update the key field(s) {', '.join(wrong)}; updatable: {', '.join(sorted(_UPDATABLE))}"
            )
        async with self._connect(write=True) as conn:
            if fields:
                result = await conn.execute(_keys.update().where(_keys.c.id == key_id).values(_key_values(fields)))
                if result.rowcount == 0:
                    return None
            row = (await conn.execute(select(_keys).where(_keys.c.id == key_id))).mappings().first()
        return None if row is None else _key_from_row(row)

    async def revoke_key(self, key_id: str, *, at: float) -> bool:
        """Mark a key revoked at ``at``; ``False`` when there is no such key or it was revoked already."""
        query = _keys.update().where(_keys.c.id == key_id, _keys.c.revoked_at.is_(None)).values(revoked_at=at)
        async with self._connect(write=True) as conn:
            result = await conn.execute(query)
        return bool(result.rowcount == 1)

    # -- usage ------------------------------------------------------------------------------------------------
    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        """Store ``records`` and add them to the aggregates (:mod:`.rollups`), in one transaction: all of it or, on an
        error, nothing. A record whose ``record_id`` is stored already is skipped, in the aggregates too (a replay
        after a crash stores nothing twice). The bodies of a :class:`RecordWithBodies` are stored beside it."""
        if not records:
            return
        async with self._connect(write=True) as conn:
            run = await Statements.of(conn, sqlite=self._sqlite)
            fresh = await (self._insert_sqlite(run, records) if self._sqlite else self._insert_postgresql(run, records))
            if not fresh:
                return
            bodies = [
                (r.record_id, r.ts, r.request_body, r.response_body)
                for r in fresh
                if isinstance(r, RecordWithBodies) and r.record_id is not None
            ]
            if bodies:
                await self._insert_bodies(run, bodies)
            for (sql, order), rows in zip(self._rollup_upserts(), rollups.deltas(fresh), strict=True):
                if order is not None:  # (None: the parameters are in the order of the delta tuples already)
                    rows = [tuple(row[i] for i in order) for row in rows]
                if rows:
                    await run.many(sql, rows)

    async def _insert_sqlite(self, run: Statements, records: Sequence[UsageRecord]) -> list[UsageRecord]:
        """Insert the records not stored yet (the write lock, taken by BEGIN IMMEDIATE, keeps anyone else from
        storing one meanwhile); those records."""
        ids = [r.record_id for r in records if r.record_id is not None]
        stored: set[str] = set()
        for at in range(0, len(ids), 512):  # (SQLite before 3.32 takes at most 999 parameters)
            chunk = ids[at : at + 512]
            # padded to a power of two with its last id: ten statement texts, not one per batch size (sqlite3 keeps
            # the last 128 it compiled on the connection: see store/driver.py)
            chunk += chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
            query = f"SELECT record_id FROM mw_usage WHERE record_id IN ({', '.join('?' * len(chunk))})"
            stored.update(row[0] for row in await run.rows(query, chunk))
        fresh = _first_of_each(records, stored)
        if fresh:
            sql, order = self._usage_insert()
            # tuples in the driver's own parameter style: SQLAlchemy's per-row parameter processing cost three times
            # more than the rest of the write (BENCHMARKS.md, decision 11); every value is already a plain type
            get = operator.attrgetter(*order)
            await run.insert(sql, [get(rec) for rec in fresh])
        return fresh

    async def _insert_postgresql(self, run: Statements, records: Sequence[UsageRecord]) -> list[UsageRecord]:
        """Insert the records in one statement (a column of values per array parameter) that says which it stored:
        a concurrent transaction storing the same record makes this one wait, then skip it."""
        cols = ", ".join(FIELDS)
        arrays = ", ".join(f"${i}::{_PG_ARRAY_TYPES[type(_usage.c[name].type)]}[]" for i, name in enumerate(FIELDS, 1))
        sql = (
            f"INSERT INTO mw_usage ({cols}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT (record_id) DO NOTHING RETURNING record_id"
        )
        params = tuple([getattr(rec, name) for rec in records] for name in FIELDS)
        inserted = {row[0] for row in await run.rows(sql, params)}
        return [r for r in _first_of_each(records, set()) if r.record_id is None or r.record_id in inserted]

    async def _insert_bodies(self, run: Statements, rows: list[tuple[str, float, str | None, str | None]]) -> None:
        """Store the bodies of records just stored (``(record_id, ts, request_body, response_body)`` each)."""
        cols = "record_id, ts, request_body, response_body"
        if self._sqlite:
            sql = f"INSERT INTO mw_usage_bodies ({cols}) VALUES (?, ?, ?, ?) ON CONFLICT (record_id) DO NOTHING"
            # a row at a time: sqlite3 keeps a compiled statement with the values last bound to it, which for a
            # multi-row statement would be up to 256 bodies of up to body_max_bytes each
            await run.many(sql, rows)
            return
        sql = (
            f"INSERT INTO mw_usage_bodies ({cols}) SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], "
            "$4::text[]) ON CONFLICT (record_id) DO NOTHING"
        )
        await run.many(sql, tuple(list(column) for column in zip(*rows, strict=True)))

    def _usage_insert(self) -> tuple[str, tuple[str, ...]]:
        """The usage INSERT compiled for this database's driver, and the record fields in its parameter order."""
        if self._insert_sql is None:
            assert self._engine is not None
            cols = list(FIELDS)
            dialect = self._engine.dialect
            insert = sqlite_insert if dialect.name == "sqlite" else pg_insert
            stmt = insert(_usage).on_conflict_do_nothing(index_elements=["record_id"])
            compiled = stmt.compile(dialect=dialect, column_keys=cols)
            order = tuple(compiled.positiontup or ())
            if sorted(order) != sorted(cols):  # a driver with named parameters: not expected for ours
                raise RuntimeError(f"cannot build a positional usage INSERT for {self._engine.dialect.name}")
            self._insert_sql = (str(compiled), order)
        return self._insert_sql

    def _rollup_upserts(self) -> list[tuple[str, tuple[int, ...] | None]]:
        """The upsert (add to the row, or create it) of each table of :data:`rollups.ROLLUPS` compiled for this
        database's driver, each with the positions in a :func:`rollups.deltas` tuple of its parameters."""
        if self._rollup_sql is None:
            assert self._engine is not None
            dialect = self._engine.dialect
            insert = sqlite_insert if dialect.name == "sqlite" else pg_insert
            self._rollup_sql = []
            for r in rollups.ROLLUPS:
                keys = [r.time_column, *r.dims]
                names = [*keys, *rollups.METRICS]
                stmt = insert(r.table)
                stmt = stmt.on_conflict_do_update(
                    index_elements=keys, set_={m: r.table.c[m] + stmt.excluded[m] for m in rollups.METRICS}
                )
                compiled = stmt.compile(dialect=dialect, column_keys=names)
                order = tuple(compiled.positiontup or ())
                if sorted(order) != sorted(names):
                    raise RuntimeError(f"cannot build a positional usage upsert for {dialect.name}")
                positions = tuple(names.index(n) for n in order)
                same = positions == tuple(range(len(names)))
                self._rollup_sql.append((str(compiled), None if same else positions))
        return self._rollup_sql

    async def spend(self, key_id: str, *, since: float) -> float:
        """What ``key_id`` spent in requests that arrived at ``since`` or later (from the aggregates: records deleted
        by the retention still count)."""
        async with self._connect() as conn:
            return await usage_queries.spend(conn, key_id, since)

    async def spends(self, since: dict[str, float]) -> dict[str, float]:
        """What each key spent from its own start (``since``: key id → Unix seconds), as :meth:`spend` reads it: one
        read of the aggregates per distinct start, in one transaction."""
        by_start: dict[float, list[str]] = {}
        for key_id, start in since.items():
            by_start.setdefault(start, []).append(key_id)
        out: dict[str, float] = {}
        async with self._connect() as conn:
            for start, key_ids in by_start.items():
                out.update(await usage_queries.spends(conn, key_ids, start))
        return out

    async def usage_summary(
        self,
        *,
        group_by: str,
        since: float | None = None,
        until: float | None = None,
        key_id: str | None = None,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        """Totals per key, model, deployment, endpoint, UTC day (``YYYY-MM-DD``) or hour (``YYYY-MM-DDTHH:00Z``),
        from the aggregates, most expensive first.

        ``since`` (inclusive) and ``until`` (exclusive) are rounded out to whole UTC hours. Each row: ``group``,
        ``requests``, ``errors`` (status 400 or more), ``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
        ``cost``, ``p50_ms``, ``p95_ms``, ``ttft_p50_ms`` (from the histograms; ``None`` without a value), and for
        ``key`` the ``key_name``. The deployment ``None`` is the group ``"(none)"``. Rows of equal cost are ordered by
        group (``None`` last). Raises :class:`ValueError` for another ``group_by``.
        """
        _since, _until, rows = await self.usage_totals(
            group_by=group_by, since=since, until=until, key_id=key_id, model=model
        )
        return rows

    async def usage_totals(
        self,
        *,
        group_by: str,
        since: float | None = None,
        until: float | None = None,
        key_id: str | None = None,
        model: str | None = None,
    ) -> tuple[int | None, int | None, list[dict[str, Any]]]:
        """:meth:`usage_summary`'s rows, after the range they cover: ``since`` and ``until`` at whole hours."""
        async with self._connect() as conn:
            plan, rows = await usage_queries.summary(
                conn, group_by=group_by, since=since, until=until, key_id=key_id, model=model
            )
        return plan.since, plan.until, rows

    async def usage_series(
        self,
        *,
        bucket: str,
        since: float,
        until: float,
        group_by: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Points per ``bucket`` (``hour`` or ``day``) for charts: see :func:`usage_queries.series`."""
        async with self._connect() as conn:
            return await usage_queries.series(
                conn,
                bucket=bucket,
                since=since,
                until=until,
                group_by=group_by,
                key_id=key_id,
                model=model,
                limit=limit,
            )

    async def usage_page(
        self, where: RecordFilter | None = None, *, limit: int = 100
    ) -> tuple[list[tuple[int, str | None, UsageRecord]], bool]:
        """The newest ``limit`` records ``where`` selects, newest (highest row id) first, each as ``(row id, the
        key's name, record)``; and whether older ones follow (ask again with ``before`` the last row id)."""
        async with self._connect() as conn:
            return await usage_queries.records_page(conn, where or RecordFilter(), limit)

    async def usage_records(
        self, *, limit: int = 100, key_id: str | None = None, since: float | None = None
    ) -> list[UsageRecord]:
        """The newest ``limit`` records (of ``key_id``, from ``since`` on), the last stored first."""
        rows, _more = await self.usage_page(RecordFilter(key_id=key_id, since=since), limit=limit)
        return [rec for _id, _name, rec in rows]

    async def usage_record(self, record_id: str) -> tuple[int, str | None, UsageRecord] | None:
        """The record with ``record_id`` as ``(row id, the key's name, record)``, or ``None``; a record stored with
        its bodies is a :class:`RecordWithBodies`."""
        async with self._connect() as conn:
            return await usage_queries.record(conn, record_id)

    async def delete_usage_before(self, cutoff: float, *, limit: int = 5000) -> int:
        """Delete at most ``limit`` records that arrived before ``cutoff``, and at most ``limit`` records' bodies, in
        one short transaction; how many records. The aggregates keep what they added up to."""
        async with self._connect(write=True) as conn:
            return await usage_queries.delete_before(conn, cutoff, limit)


def _first_of_each(records: Sequence[UsageRecord], skip: set[str]) -> list[UsageRecord]:
    """``records`` but those whose ``record_id`` is in ``skip`` and the repeats of a ``record_id``."""
    seen = set(skip)
    out = []
    for rec in records:
        rid = rec.record_id
        if rid is None:
            out.append(rec)
        elif rid not in seen:
            seen.add(rid)
            out.append(rec)
    return out
