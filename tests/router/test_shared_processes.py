"""Two OS processes, each with its own event loop, router and Redis connection, sending real HTTP requests to one
upstream that counts requests in flight: a deployment's ``max_concurrent=2`` holds across both processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from uuid import uuid4

from aiohttp import web

from modelway.providers import PROVIDERS
from modelway.providers.base import ProviderSettings
from modelway.retry import RetryPolicy
from modelway.router import Deployment, ModelGroup, Quota, Router, RoutingPolicy
from modelway.router.shared_redis import RedisRouterState
from modelway.transport import Transport
from modelway.types import ChatRequest

PER_PROCESS = 15


async def _send(upstream: str, redis_url: str, prefix: str, start_at: float) -> list[str]:
    transport = Transport()
    adapter = PROVIDERS["openai"](ProviderSettings(api_key="k", base_url=upstream))
    group = ModelGroup(
        "m", [Deployment(adapter, "gpt", quota=Quota(max_concurrent=2))], policy=RoutingPolicy(queue_wait=20)
    )
    router = Router(
        {"m": group},
        transport=transport,
        retry=RetryPolicy(0),
        timeout=10,
        shared=RedisRouterState(redis_url, prefix=prefix, sync_interval=0.1),
    )
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        answers = await asyncio.gather(*(router.complete("m", req) for _ in range(PER_PROCESS)), return_exceptions=True)
        return [a.choices[0].message.content if not isinstance(a, BaseException) else repr(a) for a in answers]  # type: ignore[union-attr]
    finally:
        await router.aclose()
        await transport.aclose()


def child(upstream: str, redis_url: str, prefix: str, start_at: float) -> list[str]:
    return asyncio.run(_send(upstream, redis_url, prefix, start_at))


async def test_max_concurrent_holds_across_two_processes(redis_url: str) -> None:
    now = peak = served = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal now, peak, served
        now += 1
        peak = max(peak, now)
        try:
            await asyncio.sleep(0.03)
        finally:
            now -= 1
        served += 1
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    try:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            start_at = time.time() + 3.0  # both processes started and imported by then
            prefix = f"mwtest:{uuid4().hex}:"
            args = (f"http://127.0.0.1:{port}/v1", redis_url, prefix, start_at)
            results = await asyncio.gather(*(loop.run_in_executor(pool, child, *args) for _ in range(2)))
    finally:
        await runner.cleanup()
    assert [a for r in results for a in r] == ["ok"] * (2 * PER_PROCESS)
    assert served == 2 * PER_PROCESS and peak == 2  # each process alone would have let 2 in: together never 3
