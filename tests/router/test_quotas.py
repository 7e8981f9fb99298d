"""Per-deployment quotas: the concurrency cap under load, RPM and TPM windows, the bounded FIFO queue, 429 with
Retry-After after the wait, and slots that always come back (answer, error, cancellation)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from routerkit import dep, group, make_router

from modelway.errors import UpstreamServerError
from modelway.router import CircuitSettings, Deployment, DeploymentsBusyError, Quota, Router, RoutingPolicy
from modelway.router.quotas import QuotaUsage

Call = Callable[[Deployment, float | None], Awaitable[str]]


async def serve(router: Router, call: Call, tokens: int = 0, usage: int | None = None) -> str:
    value, att = await router.route("m", None, lambda g: call, tokens=lambda: tokens)
    att.finish(usage)
    return value


def test_usage_against_a_quota() -> None:
    u = QuotaUsage()
    q = Quota(max_concurrent=2, rpm=3, tpm=100)
    assert u.wait(q, 0.0, 40) == 0
    s1 = u.take(0.0, 40)
    u.take(1.0, 40)
    assert u.wait(q, 1.0, 10) == float("inf")  # two in flight
    s1.release()
    s1.release()  # once only
    assert u.concurrent == 1
    assert u.wait(q, 2.0, 30) == pytest.approx(58.0)  # 80 + 30 > 100 until the first 40 leave the window
    s1.settle(5)  # its answer used 5 tokens, not 40
    assert u.wait(q, 2.0, 30) == 0
    u.take(2.0, 1)
    rpm = Quota(rpm=3)
    assert u.wait(rpm, 3.0, 1) == pytest.approx(57.0)  # 3 requests this minute
    assert u.wait(rpm, 60.0, 1) == 0
    assert u.wait(None, 0.0, 10**9) == 0
    big = QuotaUsage()
    assert big.wait(Quota(tpm=10), 0.0, 50) == 0  # larger than the whole quota: fits an idle minute


async def test_the_concurrency_cap_holds_under_load() -> None:
    a, b = dep("a", quota=Quota(max_concurrent=2)), dep("b", quota=Quota(max_concurrent=1))
    router = make_router([group("m", [a, b], RoutingPolicy(strategy="least_busy", queue_wait=5))])
    now: Counter[str] = Counter()
    peak: Counter[str] = Counter()

    async def work(d: Deployment, timeout: float | None) -> str:
        now[d.model] += 1
        peak[d.model] = max(peak[d.model], now[d.model])
        await asyncio.sleep(0.01)
        now[d.model] -= 1
        return d.model

    got = Counter(await asyncio.gather(*(serve(router, work) for _ in range(30))))
    assert sum(got.values()) == 30 and got["a"] > got["b"] > 0
    assert peak == {"a": 2, "b": 1}
    assert a.usage.concurrent == b.usage.concurrent == 0 and a.stats.in_flight == b.stats.in_flight == 0


async def test_the_queue_is_first_come_first_served_and_bounded() -> None:
    a = dep("a", quota=Quota(max_concurrent=1))
    router = make_router([group("m", [a], RoutingPolicy(queue_depth=3, queue_wait=5))])
    gate = asyncio.Event()
    order: list[int] = []

    def held(i: int) -> Call:
        async def call(d: Deployment, timeout: float | None) -> str:
            order.append(i)
            await gate.wait()
            return str(i)

        return call

    first = asyncio.create_task(serve(router, held(0)))
    await asyncio.sleep(0.01)
    waiting = []
    for i in range(1, 4):
        waiting.append(asyncio.create_task(serve(router, held(i))))
        await asyncio.sleep(0.01)
    assert len(router.group("m").queue) == 3
    t0 = time.monotonic()
    with pytest.raises(DeploymentsBusyError) as e:  # the queue is full: refused at once
        await serve(router, held(9))
    assert time.monotonic() - t0 < 0.1 and e.value.retry_after is not None and e.value.retry_after >= 1
    gate.set()
    assert await asyncio.gather(first, *waiting) == ["0", "1", "2", "3"]
    assert order == [0, 1, 2, 3] and a.usage.concurrent == 0


async def test_a_caller_that_waited_too_long_gets_429_with_retry_after() -> None:
    a = dep("a", quota=Quota(rpm=2))
    router = make_router([group("m", [a], RoutingPolicy(queue_wait=0.2))])

    async def ok(d: Deployment, timeout: float | None) -> str:
        return d.model

    assert [await serve(router, ok), await serve(router, ok)] == ["a", "a"]
    t0 = time.monotonic()
    with pytest.raises(DeploymentsBusyError) as e:
        await serve(router, ok)
    assert 0.19 <= time.monotonic() - t0 < 1.0
    assert e.value.http_status == 429 and e.value.retry_after is not None and 55 <= e.value.retry_after <= 60


async def test_tokens_per_minute_count_the_answers_usage() -> None:
    a = dep("a", quota=Quota(tpm=100))
    router = make_router([group("m", [a], RoutingPolicy(queue_wait=0))])

    async def ok(d: Deployment, timeout: float | None) -> str:
        return d.model

    await serve(router, ok, tokens=80, usage=20)  # estimated 80 at admission, 20 used
    await serve(router, ok, tokens=70, usage=70)
    with pytest.raises(DeploymentsBusyError):
        await serve(router, ok, tokens=30)  # 90 used: 30 more does not fit
    assert a.usage.snapshot(a.quota, time.monotonic())["tokens_last_minute"] == 90


async def test_a_deployment_at_its_quota_is_skipped() -> None:
    a, b = dep("a", weight=1000, quota=Quota(max_concurrent=1)), dep("b", weight=0.001)
    router = make_router([group("m", [a, b])])
    gate = asyncio.Event()

    async def call(d: Deployment, timeout: float | None) -> str:
        if d is a:
            await gate.wait()
        return d.model

    held = asyncio.create_task(serve(router, call))
    await asyncio.sleep(0.01)
    assert [await serve(router, call) for _ in range(5)] == ["b"] * 5
    gate.set()
    assert await held == "a"


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_the_slot_comes_back_however_the_request_ends(how: str) -> None:
    a = dep("a", quota=Quota(max_concurrent=1))
    policy = RoutingPolicy(circuit=CircuitSettings(failures=1, cooldown=0), queue_wait=1)
    router = make_router([group("m", [a], policy)])
    started, fail = asyncio.Event(), asyncio.Event()

    async def call(d: Deployment, timeout: float | None) -> str:
        started.set()
        await fail.wait()
        raise UpstreamServerError("boom", status_code=500)

    task = asyncio.create_task(serve(router, call))
    await started.wait()
    assert a.usage.concurrent == 1 and a.stats.in_flight == 1
    if how == "cancelled":
        task.cancel()
    else:
        fail.set()
    with pytest.raises(asyncio.CancelledError if how == "cancelled" else UpstreamServerError):
        await task
    assert a.usage.concurrent == 0 and a.stats.in_flight == 0

    async def ok(d: Deployment, timeout: float | None) -> str:
        return d.model

    assert await serve(router, ok) == "a"  # the slot (and, after a failure, the probe) is free again


async def test_a_caller_cancelled_while_queued_leaves_the_queue() -> None:
    a = dep("a", quota=Quota(max_concurrent=1))
    router = make_router([group("m", [a], RoutingPolicy(queue_wait=5))])
    gate = asyncio.Event()

    async def held(d: Deployment, timeout: float | None) -> str:
        await gate.wait()
        return d.model

    first = asyncio.create_task(serve(router, held))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(serve(router, held))
    await asyncio.sleep(0.01)
    assert len(router.group("m").queue) == 1
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert len(router.group("m").queue) == 0 and a.usage.concurrent == 1
    gate.set()
    assert await first == "a" and a.usage.concurrent == 0
