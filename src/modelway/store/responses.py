"""The response store of ``/v1/responses``: what a response with ``store: true`` keeps, so that it can be retrieved
(``GET /v1/responses/{id}``, its ``input_items``), deleted, and continued (``previous_response_id``).

A stored response is readable only by the key that made it (``key_id``; ``None`` for the master key and for a
gateway without auth: one scope of their own). It is kept for ``responses.retention_days``: an older one is never
served, and expired rows are deleted on a write, at most once a minute. One response larger than
``responses.max_stored_bytes`` (its input, output and body as JSON) is not kept: :meth:`ResponseStore.put` says so
and the caller is answered all the same, with ``store: false``.

Two backends: :class:`SQLResponseStore` in the gateway's SQL store (table ``mw_responses``, SQLite or PostgreSQL:
shared by workers and replicas), and :class:`MemoryResponseStore` when no store is configured (one process; the
least recently used responses are dropped beyond ``responses.memory_max_items``). A database that cannot be reached
raises :class:`ResponseStoreUnavailableError` (answered 503). SQLAlchemy is imported only by the SQL backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ServiceUnavailableError
from .errors import unreachable

if TYPE_CHECKING:
    from sqlalchemy import Table

    from ..config import ResponsesConfig
    from .sql import SQLStore

__all__ = [
    "open_response_store",
    "MemoryResponseStore",
    "ResponseStore",
    "ResponseStoreUnavailableError",
    "SQLResponseStore",
    "StoredResponse",
]

log = logging.getLogger("modelway.store")

DAY = 86_400.0
#: seconds between two deletions of expired responses by one store object
PURGE_EVERY = 60.0
#: the longest chain of ``previous_response_id`` links followed back
MAX_CHAIN = 1000


class ResponseStoreUnavailableError(ServiceUnavailableError):
    """The response store's database could not be reached (503)."""

    code = "store_unavailable"


@dataclass(slots=True)
class StoredResponse:
    """One kept response: the request's own input items (with ids), the output items, and the whole Response
    object as it was sent (``body``)."""

    id: str
    key_id: str | None
    created_at: float
    previous_id: str | None
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    body: dict[str, Any]

    def data(self) -> bytes:
        return orjson.dumps({"input": self.input, "output": self.output, "body": self.body})

    @classmethod
    def from_data(
        cls, id: str, key_id: str | None, created_at: float, previous_id: str | None, data: bytes | str
    ) -> StoredResponse:
        d = orjson.loads(data)
        return cls(id, key_id, float(created_at), previous_id, d["input"], d["output"], d["body"])


class ResponseStore(ABC):
    """Where responses are kept. ``retention`` in seconds; ``max_bytes`` bounds one response."""

    def __init__(self, *, retention: float = 30 * DAY, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.retention = retention
        self.max_bytes = max_bytes

    def _oldest(self, now: float | None = None) -> float:
        """The ``created_at`` from which a response is still served."""
        return (time.time() if now is None else now) - self.retention

    def encode(self, rec: StoredResponse) -> bytes | None:
        """``rec`` as it is kept; ``None`` (logged) when it is larger than ``max_bytes`` and cannot be kept."""
        data = rec.data()
        if len(data) > self.max_bytes:
            log.warning(
                "response %s not stored: %d bytes, more than responses.max_stored_bytes (%d)",
                rec.id,
                len(data),
                self.max_bytes,
            )
            return None
        return data

    async def put(self, rec: StoredResponse, data: bytes | None = None) -> bool:
        """Keep ``rec`` (``data``: its :meth:`encode`, when done already); ``False`` when it is too large."""
        if data is None:
            data = self.encode(rec)
            if data is None:
                return False
        await self._put(rec, data)
        return True

    @abstractmethod
    async def _put(self, rec: StoredResponse, data: bytes) -> None: ...

    @abstractmethod
    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        """The response, when it exists, belongs to ``key_id`` and has not expired."""

    @abstractmethod
    async def delete(self, response_id: str, key_id: str | None) -> bool:
        """Delete the response; ``False`` when there is none for ``key_id``."""

    async def chain(self, response_id: str, key_id: str | None) -> list[StoredResponse] | None:
        """The response and every response it continues, oldest first; ``None`` when ``response_id`` is not
        found (for ``key_id``). A link further back that is gone (deleted, expired) ends the chain there."""
        out: list[StoredResponse] = []
        next_id: str | None = response_id
        while next_id is not None and len(out) < MAX_CHAIN:
            rec = await self.get(next_id, key_id)
            if rec is None:
                break
            out.append(rec)
            next_id = rec.previous_id
        if not out:
            return None
        out.reverse()
        return out


class MemoryResponseStore(ResponseStore):
    """Responses in this process's memory, at most ``max_items`` (least recently used dropped first)."""

    def __init__(self, *, max_items: int = 1000, retention: float = 30 * DAY, max_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(retention=retention, max_bytes=max_bytes)
        self.max_items = max_items
        # id → (key_id, created_at, previous_id, JSON data): kept serialised (compact, and never shared mutably)
        self._items: OrderedDict[str, tuple[str | None, float, str | None, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    async def _put(self, rec: StoredResponse, data: bytes) -> None:
        self._items[rec.id] = (rec.key_id, rec.created_at, rec.previous_id, data)
        self._items.move_to_end(rec.id)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def _find(self, response_id: str, key_id: str | None) -> tuple[str | None, float, str | None, bytes] | None:
        entry = self._items.get(response_id)
        if entry is None or entry[0] != key_id:
            return None
        if entry[1] < self._oldest():
            del self._items[response_id]
            return None
        return entry

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        entry = self._find(response_id, key_id)
        if entry is None:
            return None
        self._items.move_to_end(response_id)
        return StoredResponse.from_data(response_id, entry[0], entry[1], entry[2], entry[3])

    async def delete(self, response_id: str, key_id: str | None) -> bool:
        if self._find(response_id, key_id) is None:
            return False
        del self._items[response_id]
        return True


_TABLE: Table | None = None


def _table() -> Table:
    """``mw_responses`` (created by migration step 3): column types as values are bound and read."""
    global _TABLE
    if _TABLE is None:
        from sqlalchemy import Column, Double, MetaData, String, Table

        _TABLE = Table(
            "mw_responses",
            MetaData(),
            Column("id", String, primary_key=True),
            Column("key_id", String),
            Column("created_at", Double),
            Column("previous_id", String),
            Column("data", String),
        )
    return _TABLE


class SQLResponseStore(ResponseStore):
    """Responses in the gateway's SQL store (its connections, its transactions)."""

    def __init__(self, store: SQLStore, *, retention: float = 30 * DAY, max_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__(retention=retention, max_bytes=max_bytes)
        self.store = store
        self._purged = 0.0  # monotonic time of the last deletion of expired rows
        self._purging = asyncio.Lock()

    @staticmethod
    def _mine(response_id: str, key_id: str | None) -> Any:
        t = _table()
        owner = t.c.key_id.is_(None) if key_id is None else t.c.key_id == key_id
        return (t.c.id == response_id) & owner

    async def _put(self, rec: StoredResponse, data: bytes) -> None:
        t = _table()
        row = {
            "id": rec.id,
            "key_id": rec.key_id,
            "created_at": rec.created_at,
            "previous_id": rec.previous_id,
            "data": data.decode(),
        }
        with _guard():
            async with self.store._connect(write=True) as conn:
                await conn.execute(t.delete().where(self._mine(rec.id, rec.key_id)))
                await conn.execute(t.insert().values(row))
        await self._purge()

    async def _purge(self) -> None:
        """Delete expired rows, at most once a minute (a failure is logged: the write itself succeeded)."""
        now = time.monotonic()
        if now - self._purged < PURGE_EVERY or self._purging.locked():
            return
        async with self._purging:
            self._purged = now
            t = _table()
            try:
                async with self.store._connect(write=True) as conn:
                    result = await conn.execute(t.delete().where(t.c.created_at < self._oldest()))
            except Exception as exc:
                log.warning("could not delete expired responses: %s", exc)
                return
            if result.rowcount:
                log.info("deleted %d expired responses", result.rowcount)

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        from sqlalchemy import select

        t = _table()
        query = select(t).where(self._mine(response_id, key_id) & (t.c.created_at >= self._oldest()))
        with _guard():
            async with self.store._connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return StoredResponse.from_data(row["id"], row["key_id"], row["created_at"], row["previous_id"], row["data"])

    async def delete(self, response_id: str, key_id: str | None) -> bool:
        t = _table()
        query = t.delete().where(self._mine(response_id, key_id) & (t.c.created_at >= self._oldest()))
        with _guard():
            async with self.store._connect(write=True) as conn:
                result = await conn.execute(query)
        return bool(result.rowcount)


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """A database that cannot be reached becomes a 503 for the caller; any other error is raised as it is."""
    try:
        yield
    except Exception as exc:
        if not unreachable(exc):
            raise
        log.error("the response store is unreachable: %s", exc)
        raise ResponseStoreUnavailableError("the gateway's response store is unavailable; try again shortly") from exc


def open_response_store(cfg: ResponsesConfig, sql: SQLStore | None) -> ResponseStore:
    """The gateway's store of Responses: in its SQL store when it has one, else in this process's memory."""
    retention = cfg.retention_days * DAY
    if sql is not None:
        return SQLResponseStore(sql, retention=retention, max_bytes=cfg.max_stored_bytes)
    return MemoryResponseStore(max_items=cfg.memory_max_items, retention=retention, max_bytes=cfg.max_stored_bytes)
