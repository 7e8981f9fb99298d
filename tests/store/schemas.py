"""Fresh PostgreSQL schemas for store tests (``url`` in conftest.py, and the response store's fixture)."""

from __future__ import annotations

import services


async def drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(services.PG_URL)  # (read now: a conftest imports this before it is set)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
