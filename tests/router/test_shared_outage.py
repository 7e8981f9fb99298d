"""Shared router state fails open: Redis going down mid-run fails no request (each router routes on its own view,
says so once), and when Redis is back the state is shared again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from uuid import uuid4

import pytest
from routerkit import dep, group, make_router

import throwaway
from modelway.errors import UpstreamServerError
from modelway.router import CircuitSettings, Deployment, Quota, Router, RoutingPolicy
from modelway.router.shared_redis import RedisRouterState

CIRCUIT = CircuitSettings(failures=2, error_rate=1.0, min_requests=100, cooldown=30)


@pytest.fixture
def server() -> Iterator[list[throwaway.Server]]:
    """A Redis of this test's own, which the test stops and starts again (``[0]``: the one running)."""
    port = throwaway.free_port()
    servers = [throwaway.start_redis(port)]
    try:
        yield servers
    finally:
        servers[-1].stop()


def routers(url: str) -> tuple[Router, Router]:
    prefix = f"mwtest:{uuid4().hex}:"
    out = []
    for _ in range(2):
        policy = RoutingPolicy(strategy="priority", circuit=CIRCUIT, queue_wait=5)
        r = make_router(
            [group("m", [dep("x", tier=0, quota=Quota(max_concurrent=3, rpm=100_000)), dep("y", tier=1)], policy)]
        )
        r.shared = RedisRouterState(url, prefix=prefix, sync_interval=0.05, retry=0.2, timeout=0.3)
        r.shared.bind(r)
        out.append(r)
    return out[0], out[1]


async def test_redis_going_down_fails_no_request_and_sharing_comes_back(
    server: list[throwaway.Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelway.router")
    a, b = routers(server[0].url)
    states = [r.shared for r in (a, b)]
    assert all(isinstance(s, RedisRouterState) for s in states)
    failing: set[str] = set()

    async def call(d: Deployment, timeout: float | None) -> str:
        await asyncio.sleep(0.005)
        if d.model in failing:
            raise UpstreamServerError("boom", status_code=500)
        return d.model

    async def serve(r: Router) -> str:
        value, att = await r.route("m", None, lambda g: call)
        att.finish(None)
        return value

    answers: list[str] = []
    stopped_at = None
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 1.5:
            answers += await asyncio.gather(*(serve(r) for r in (a, b) for _ in range(4)))
            if stopped_at is None and time.monotonic() - t0 > 0.5:
                server[0].stop()  # mid-run
                stopped_at = len(answers)
        assert stopped_at is not None and len(answers) > stopped_at + 40  # requests went on after it stopped
        assert set(answers) <= {"x", "y"}  # every request was answered
        assert not any(s.available for s in states)  # type: ignore[union-attr]
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 2  # once per router, not once per request

        server.append(throwaway.start_redis(int(server[0].url.rsplit(":", 1)[1].split("/")[0])))
        deadline = time.monotonic() + 3
        while not all(s.available for s in states):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the shared state did not come back"
            await asyncio.sleep(0.02)
        assert len([r for r in caplog.records if "answers again" in r.getMessage()]) == 2

        failing.add("x")  # shared again: a opens x's circuit, b skips x without trying it
        assert [await serve(a), await serve(a)] == ["y", "y"]
        await asyncio.sleep(0.05)
        sent: list[str] = []

        async def counting(d: Deployment, timeout: float | None) -> str:
            sent.append(d.model)
            return await call(d, timeout)

        value, att = await b.route("m", None, lambda g: counting)
        att.finish(None)
        assert value == "y" and sent == ["y"]
    finally:
        for s in states:
            await s.aclose()  # type: ignore[union-attr]
