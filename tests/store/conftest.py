"""A database of its own for each store test: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from schemas import drop_schema

import services
from modelway.store import SQLStore


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to a database of its own: a SQLite file, or a fresh PostgreSQL schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    request.getfixturevalue("postgres_server")
    schema = "mw_test_" + secrets.token_hex(6)
    try:
        yield f"{services.PG_URL}?schema={schema}"  # (read now: conftests load before services.configure)
    finally:
        await drop_schema(schema)


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[SQLStore]:
    """A store opened on ``url``, closed when the block ends."""
    s = SQLStore(url)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def store(url: str) -> AsyncIterator[SQLStore]:
    """A store opened on :func:`url` (closed afterwards)."""
    async with opened(url) as s:
        yield s


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLStore]:
    """A store opened on a SQLite file of its own (for what only SQLite does), closed afterwards."""
    async with opened(f"sqlite:///{tmp_path / 'sqlite-only.db'}") as s:
        yield s
