"""Fresh PostgreSQL schemas for store tests (``url`` in conftest.py, and the response store's fixture)."""

from __future__ import annotations

from services import PG_URL


async def drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
