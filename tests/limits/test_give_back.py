"""A refused acquire whose script Redis may still have run must not keep the key's place in flight for
``parallel_ttl``: the limiter gives it back (a real Redis behind a proxy that delays its replies)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from modelway.limits import LimiterUnavailableError, Limits
from modelway.limits import redis as redis_limits
from modelway.limits.redis import RedisLimiter
from modelway.limits.resp import RespClient
from services import REDIS_URL

pytestmark = pytest.mark.usefixtures("redis_server")


class DelayingProxy:
    """A TCP proxy to Redis whose replies arrive ``delay`` seconds late."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.handlers: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        host_port = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        rr, rw = await asyncio.open_connection(host or "127.0.0.1", int(port or 6379))

        async def up() -> None:
            while data := await cr.read(65536):
                rw.write(data)
            rw.close()  # the client left: so does the proxy's connection to Redis

        async def down() -> None:
            while data := await rr.read(65536):
                await asyncio.sleep(self.delay)
                cw.write(data)

        try:
            await asyncio.gather(up(), down(), return_exceptions=True)
        finally:
            for w in (cw, rw):
                w.close()
                await asyncio.gather(w.wait_closed(), return_exceptions=True)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await asyncio.gather(*self.handlers, return_exceptions=True)


async def test_a_timed_out_acquire_gives_its_place_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_limits, "GIVE_BACK_DELAY", 0.3)
    proxy = DelayingProxy(0.5)
    port = await proxy.start()
    prefix = f"mwtest:{uuid.uuid4().hex}:"
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0?socket_timeout=0.2", prefix=prefix)
    limits = Limits(max_parallel=1)
    try:
        with pytest.raises(LimiterUnavailableError):
            await limiter.acquire("key", limits)  # Redis is slow: refused (503), though the script runs
        proxy.delay = 0.0
        await asyncio.sleep(1.0)  # the reply comes, the place is given back
        permit = await limiter.acquire("key", limits)  # the key's only place is free again
        await limiter.release(permit)
    finally:
        await limiter.aclose()
        await proxy.stop()
        client = RespClient(REDIS_URL)
        keys = await client.execute("KEYS", prefix + "*")
        if keys:
            await client.execute("DEL", *keys)
        await client.aclose()
