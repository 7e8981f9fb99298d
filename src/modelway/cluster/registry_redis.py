"""The worker registry in Redis (``store.redis_url``): every gateway replica sees the same registered workers.

Layout, under ``prefix`` (``modelway:cluster:``):

- ``workers``: a sorted set, worker name → time of its last heartbeat (the listing and the ``max_workers`` cap);
- ``w:<sha256 of the name>``: a hash per worker, ``info`` (its fields as JSON), ``queue``, ``hb``; it expires
  ``expiration`` seconds after the last heartbeat, so a worker nobody hears from disappears even when no gateway
  is running to sweep it.

Registration and heartbeats are Lua scripts (atomic: the cap is exact across replicas). A heartbeat for a worker
whose hash expired answers ``False``, and the worker registers again (FastChat's ``exist: false``).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace

import orjson

from ..limits.resp import RespClient, Script
from .registry import Registry, RegistryFullError, WorkerInfo

__all__ = ["RedisRegistry"]

_REGISTER = Script(
    """
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
if not redis.call('ZSCORE', KEYS[1], ARGV[4]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], 'info', ARGV[5], 'queue', ARGV[6], 'hb', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return 1
"""
)

_HEARTBEAT = Script(
    """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[2])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'queue', ARGV[3]) end
redis.call('HSET', KEYS[2], 'hb', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""
)

_ADD_QUEUE = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'queue', ARGV[1]) end
return 1
"""
)


class RedisRegistry(Registry):
    def __init__(self, url: str, *, expiration: float, max_workers: int, prefix: str = "modelway:cluster:") -> None:
        super().__init__(expiration=expiration, max_workers=max_workers)
        self.client = RespClient(url)
        self.prefix = prefix
        self._set = prefix + "workers"

    def _key(self, name: str) -> str:
        return self.prefix + "w:" + hashlib.sha256(name.encode()).hexdigest()[:32]

    def _ttl_ms(self) -> int:
        return max(1, int(self.expiration * 1000))

    async def register(self, info: WorkerInfo) -> None:
        static = orjson.dumps(replace(info, queue_length=0, last_heartbeat=0.0).to_dict())
        args: list[str | bytes | int | float] = [
            repr(info.last_heartbeat), repr(self.expiration), self.max_workers, info.name, static,
            info.queue_length, self._ttl_ms(),
        ]  # fmt: skip
        added = await self.client.run_script(_REGISTER, [self._set, self._key(info.name)], args)
        if not added:
            raise RegistryFullError(f"the controller holds {self.max_workers} workers already (cluster.max_workers)")

    async def heartbeat(self, name: str, queue_length: int | None, now: float) -> bool:
        q = "" if queue_length is None else str(queue_length)
        args: list[str | bytes | int | float] = [repr(now), name, q, self._ttl_ms()]
        return bool(await self.client.run_script(_HEARTBEAT, [self._set, self._key(name)], args))

    async def remove(self, name: str) -> bool:
        removed = await self.client.execute("ZREM", self._set, name)
        await self.client.execute("DEL", self._key(name))
        return bool(removed)

    async def workers(self, now: float | None = None) -> list[WorkerInfo]:
        t = time.time() if now is None else now
        names = await self.client.execute("ZRANGEBYSCORE", self._set, f"({t - self.expiration!r}", "+inf")
        rows = await asyncio.gather(
            *(self.client.execute("HMGET", self._key(n.decode()), "info", "queue", "hb") for n in names or ())
        )
        out = []
        for info, queue, hb in rows:
            if info is None:  # expired between the two reads
                continue
            w = WorkerInfo.from_dict(orjson.loads(info))
            out.append(replace(w, queue_length=int(queue or 0), last_heartbeat=float(hb or 0.0)))
        return sorted(out, key=lambda w: w.name)

    async def add_queue(self, name: str, n: int) -> None:
        await self.client.run_script(_ADD_QUEUE, [self._key(name)], [n])

    async def aclose(self) -> None:
        await self.client.aclose()
