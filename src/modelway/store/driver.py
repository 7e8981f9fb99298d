"""The statements of the usage write, sent on the driver's own connection where that is cheaper.

On SQLite every statement SQLAlchemy runs through aiosqlite crosses to aiosqlite's thread and back four to six
times (a cursor, the statement, its result, closing the cursor), and each crossing wakes the event loop: a batch
of usage records took ~40 crossings, which cost more CPU than its rows for a small batch (BENCHMARKS.md, decision
33).
:class:`Statements` sends each statement to aiosqlite's connection itself, one crossing, inside the transaction
SQLAlchemy began (and will commit or roll back) on that same connection. sqlite3's errors, and aiosqlite's for a
connection it lost, come out as SQLAlchemy wraps them, so :func:`~modelway.store.errors.refused` and
``unreachable`` judge them as before; a lost connection is dropped from the pool, as SQLAlchemy drops it. Elsewhere
(PostgreSQL through asyncpg) the statements go through SQLAlchemy as they are.

:meth:`Statements.insert` sends the rows of an INSERT as few multi-row statements (``VALUES (...), (...)``) on
SQLite. ``executemany`` runs one ``sqlite3_step`` per row, and sqlite3 gives up the GIL around each: under load the
writer thread then waits for the event loop's thread once per row: a saturated server's ledger fell tens of
thousands of records behind, and keeps up with multi-row statements (BENCHMARKS.md, decision 36). A statement
carries 500 rows (a full batch) or a power of two (256, 128 ... for the rest), so a table has at most ten statement
texts: sqlite3 keeps the last 128 it compiled on each connection, each holding the values last bound to it, and a
text per batch size would fill that cache with large statements and compile a new one for almost every batch. Each
statement is a round trip to aiosqlite's thread, which under load waits for the busy event loop: a full batch in
six statements (256 + 128 + ... + 4) left twice as many records unwritten as in one.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Statements", "row_counts"]


class Statements:
    """Run the statements of one transaction on ``conn`` (driver-level SQL, the driver's parameter style)."""

    __slots__ = ("conn", "sqlite")

    def __init__(self, conn: AsyncConnection, sqlite: Any | None) -> None:
        self.conn = conn
        #: aiosqlite's connection under ``conn`` (SQLite only)
        self.sqlite = sqlite

    @classmethod
    async def of(cls, conn: AsyncConnection, *, sqlite: bool) -> Statements:
        """The statements of ``conn``'s transaction; on SQLite, sent on aiosqlite's connection beneath it."""
        if not sqlite:
            return cls(conn, None)
        raw = await conn.get_raw_connection()
        return cls(conn, raw.driver_connection)

    async def many(self, sql: str, rows: Sequence[Sequence[Any]] | Sequence[Any]) -> None:
        """``sql`` once per row of ``rows`` (on PostgreSQL, ``rows`` may be one set of array parameters)."""
        if self.sqlite is None:
            await self.conn.exec_driver_sql(sql, rows)
            return
        try:
            await self.sqlite.executemany(sql, rows)
        except (sqlite3.Error, ValueError) as exc:
            raise await self._failed(sql, rows, exc) from exc

    async def insert(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """The single-row INSERT ``sql`` (``... VALUES (?, ..., ?) ...``) for every row of ``rows``: on SQLite, as
        a few statements of many rows each (see the module docstring); elsewhere as :meth:`many`."""
        if self.sqlite is None or len(rows) < 2:
            await self.many(sql, rows)
            return
        head, group, tail = _values(sql)
        at = 0
        for size in row_counts(len(rows), max_variables() // max(1, len(rows[0]))):
            multi = f"{head}{', '.join([group] * size)}{tail}"
            params = [v for row in rows[at : at + size] for v in row]
            at += size
            try:
                await self.sqlite.execute(multi, params)
            except (sqlite3.Error, ValueError) as exc:
                raise await self._failed(multi, params, exc) from exc

    async def rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """The rows ``sql`` answers."""
        if self.sqlite is None:
            return list((await self.conn.exec_driver_sql(sql, tuple(params))).all())
        try:
            return list(await self.sqlite.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:
            raise await self._failed(sql, params, exc) from exc

    async def _failed(self, sql: str, params: Any, exc: sqlite3.Error | ValueError) -> BaseException:
        """``exc`` as SQLAlchemy raises it for the same failure (``IntegrityError``, ``OperationalError`` ...); a
        connection found lost is invalidated first. A ``ValueError`` other than aiosqlite's lost connection is
        raised as it is, as SQLAlchemy raises it."""
        if isinstance(exc, ValueError):
            if not exc.args or str(exc.args[0]).lower() not in _LOST:
                raise exc
            exc = sqlite3.OperationalError(exc.args[0])
        conn = self.conn
        lost = conn.dialect.is_disconnect(exc, None, None)  # type: ignore[arg-type]  # (sqlite3 is that DBAPI)
        if lost:
            await conn.invalidate(exc)
        return DBAPIError.instance(
            sql,
            params,
            exc,
            sqlite3.Error,
            hide_parameters=conn.sync_engine.hide_parameters,
            connection_invalidated=lost,
            dialect=conn.dialect,
        )


#: the most rows one multi-row INSERT carries: the ledger's default batch size, so a full batch is one statement
MAX_ROWS = 500


def row_counts(n: int, most: int) -> list[int]:
    """The rows of each statement that sends ``n`` rows, at most ``most`` in one: :data:`MAX_ROWS` (or, where the
    library takes fewer parameters, the largest power of two that fits) as often as it fits, then a power of two for
    each binary digit of the rest, largest first. Ten row counts in all, so ten statement texts per table."""
    top = MAX_ROWS if most >= MAX_ROWS else 1 << (max(1, most).bit_length() - 1)
    counts = [top] * (n // top)
    rest = n % top
    while rest:
        counts.append(1 << (rest.bit_length() - 1))
        rest -= counts[-1]
    return counts


@functools.cache
def max_variables() -> int:
    """The most ``?`` parameters one statement takes in the SQLite library this process runs: 32,766 from 3.32, 999
    before, less where it was built so. A connection starts at that limit, and the store never lowers it."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


_VALUES = re.compile(r"\bVALUES\s*(\([?,\s]*\))", re.IGNORECASE)


def _values(sql: str) -> tuple[str, str, str]:
    """``sql`` cut around its ``VALUES`` row: what comes before the row, the row (``(?, ?)``), what follows."""
    m = _VALUES.search(sql)
    if m is None:
        raise ValueError(f"not a single-row INSERT with ? parameters: {sql[:200]!r}")
    return sql[: m.start(1)], m.group(1), sql[m.end(1) :]


#: what aiosqlite raises (a ``ValueError``) for a connection it has lost
_LOST = frozenset({"no active connection", "connection closed"})
