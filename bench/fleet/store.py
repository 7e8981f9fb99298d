"""What the fleet's shared services hold: the usage records in PostgreSQL, a key's spend counter in Redis."""

from __future__ import annotations

import asyncio
import time

from modelway.limits.redis import RedisLimiter
from modelway.store.sql import SQLStore
from modelway.usage.records import UsageRecord

__all__ = ["records", "redis_spend", "wait_records"]


async def _records(url: str, key_id: str | None) -> list[UsageRecord]:
    store = SQLStore(url)
    await store.open()
    try:
        return await store.usage_records(limit=10_000_000, key_id=key_id)
    finally:
        await store.aclose()


def records(url: str, key_id: str | None = None) -> list[UsageRecord]:
    """Every usage record in the store (of ``key_id``)."""
    return asyncio.run(_records(url, key_id))


def wait_records(url: str, key_id: str, count: int, timeout: float = 10.0) -> list[UsageRecord]:
    """The records of ``key_id`` once there are at least ``count`` (the replicas write theirs every
    ``usage.flush_interval``), or what there is after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(url, key_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


async def _spend(url: str, key_id: str, period: str) -> float:
    limiter = RedisLimiter(url)
    try:
        return await limiter.spent(key_id, period)
    finally:
        await limiter.aclose()


def redis_spend(url: str, key_id: str, period: str = "total") -> float:
    """The spend counter every worker checks a budget against (0.0 when it does not exist)."""
    return asyncio.run(_spend(url, key_id, period))
