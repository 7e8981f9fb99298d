"""Are rate limits exact across workers? ``modelway serve --workers 2`` with Redis, a virtual key with an rpm
limit, and three times as many requests as it allows, all at once: exactly the limit must be admitted.

Which worker answered is read off each response's ``x-request-id`` (a per-process prefix and a counter), so the
phase also shows that both workers took part. This is a correctness check, not a load test: a Python client is fine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from .payloads import chat_body
from .targets import Context, create_virtual_key, modelway_control_plane_config, start_modelway

__all__ = ["LimitsResult", "measure_limits"]

REDIS_URL = os.environ.get("MODELWAY_BENCH_REDIS", "redis://127.0.0.1:6379/15")


@dataclass
class LimitsResult:
    workers: int
    rpm: int
    sent: int
    admitted: int
    refused: int
    other: dict[int, int] = field(default_factory=dict)
    per_worker: list[int] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.admitted == self.rpm and self.refused == self.sent - self.rpm and not self.other


def _redis_up(url: str) -> bool:
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=1):
            return True
    except OSError:
        return False


async def _fire(url: str, key: str, n: int) -> tuple[Counter[int], Counter[str]]:
    statuses: Counter[int] = Counter()
    workers: Counter[str] = Counter()
    body = chat_body()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn = aiohttp.TCPConnector(limit=64, force_close=True)  # a connection each: both workers take part
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one() -> None:
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
                statuses[r.status] += 1
                if r.status == 200:
                    workers[r.headers.get("x-request-id", "")[:12]] += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return statuses, workers


def measure_limits(ctx: Context, *, say: Callable[[str], None], rpm: int = 300, workers: int = 2) -> LimitsResult:
    if not _redis_up(REDIS_URL):
        raise RuntimeError(f"Redis is not reachable at {REDIS_URL} (set MODELWAY_BENCH_REDIS)")
    name = "modelway-limits"
    config = modelway_control_plane_config(ctx, name)
    store = config["store"]
    assert isinstance(store, dict)
    store["redis_url"] = REDIS_URL
    cfg = ctx.work / f"{name}.yaml"
    cfg.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    key = create_virtual_key(ctx, cfg, rpm=rpm)
    say(f"starting modelway --workers {workers} with Redis; a key with rpm {rpm}")
    server = start_modelway(ctx, config=config, workers=workers, name=name)
    try:
        time.sleep(1.0)  # every worker up
        left = 60 - time.time() % 60
        if left < 15:  # keep the burst inside one calendar minute
            time.sleep(left + 0.5)
        sent = rpm * 3
        say(f"{sent} requests at once")
        url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
        statuses, per_worker = asyncio.run(_fire(url, key, sent))
    finally:
        if server.child is not None:
            ctx.procs.stop(server.child)
    other = {s: n for s, n in statuses.items() if s not in (200, 429)}
    return LimitsResult(workers, rpm, sent, statuses[200], statuses[429], other, sorted(per_worker.values()))
