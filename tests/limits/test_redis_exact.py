"""The Redis limiter is exact across processes, expires lost places, and refuses requests when Redis is down."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from uuid import uuid4

import pytest
import redis

from modelway.limits import LimiterUnavailableError, LimitExceededError, Limits, SpendNotSeeded
from modelway.limits.redis import RedisLimiter, redact_url
from services import REDIS_URL

T = 1_000_000_020
PROCESSES = 4
ATTEMPTS = 200
Outcome = tuple[int, list[str], int, list[str]]


needs_redis = pytest.mark.usefixtures("redis_server")


async def contend(prefix: str, start_at: float) -> Outcome:
    """One worker: ``ATTEMPTS`` concurrent acquires under rpm=250, then under max_parallel=10 (never released)."""
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    try:
        await lim.spent("warm-up", "total")  # connect before the start, so that the workers really contend
        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = []
        for subject, limits in (("rpm", Limits(rpm=250)), ("par", Limits(max_parallel=10))):
            outcomes = await asyncio.gather(
                *(lim.acquire(subject, limits, now=T + 5) for _ in range(ATTEMPTS)), return_exceptions=True
            )
            admitted, refused = 0, []
            for o in outcomes:
                if isinstance(o, LimitExceededError):
                    refused.append(o.code or "")
                elif isinstance(o, BaseException):
                    refused.append(repr(o))
                else:
                    admitted += 1
            results.append((admitted, refused))
        (rpm_admitted, rpm_refused), (par_admitted, par_refused) = results
        return rpm_admitted, rpm_refused, par_admitted, par_refused
    finally:
        await lim.aclose()


def worker(prefix: str, start_at: float) -> Outcome:
    return asyncio.run(contend(prefix, start_at))


@pytest.fixture(scope="module")
def sync_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def prefix(sync_redis: redis.Redis) -> Iterator[str]:
    prefix = f"mwtest:{uuid4().hex}:"
    yield prefix
    keys = list(sync_redis.scan_iter(match=prefix + "*"))
    if keys:
        sync_redis.delete(*keys)


@pytest.fixture(scope="module")
def contention(sync_redis: redis.Redis) -> Iterator[tuple[str, list[Outcome]]]:
    """4 OS processes, each with its own event loop and limiter, acquiring at once against one subject."""
    prefix = f"mwtest:{uuid4().hex}:"
    start_at = time.time() + 1.5
    try:
        with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(worker, prefix, start_at) for _ in range(PROCESSES)]
            results = [f.result(timeout=30) for f in futures]
        yield prefix, results
    finally:
        keys = list(sync_redis.scan_iter(match=prefix + "*"))
        if keys:
            sync_redis.delete(*keys)


@needs_redis
class TestAcrossProcesses:
    def test_rpm_is_exact(self, contention: tuple[str, list[Outcome]], sync_redis: redis.Redis) -> None:
        prefix, results = contention
        assert sum(r[0] for r in results) == 250
        refused = [code for r in results for code in r[1]]
        assert refused == ["rate_limit_exceeded"] * (PROCESSES * ATTEMPTS - 250)
        assert sync_redis.hget(f"{prefix}{{rpm}}:m:{T}", "req") == b"250"

    def test_max_parallel_is_exact(self, contention: tuple[str, list[Outcome]], sync_redis: redis.Redis) -> None:
        prefix, results = contention
        assert sum(r[2] for r in results) == 10
        refused = [code for r in results for code in r[3]]
        assert refused == ["max_parallel_exceeded"] * (PROCESSES * ATTEMPTS - 10)
        assert sync_redis.zcard(f"{prefix}{{par}}:p") == 10


@needs_redis
class TestKeys:
    async def test_lost_places_expire_after_parallel_ttl(self, prefix: str) -> None:
        lim = RedisLimiter(REDIS_URL, prefix=prefix, parallel_ttl=10)
        try:
            limits = Limits(max_parallel=1)
            await lim.acquire("k", limits, now=T)  # its worker crashed: never released
            with pytest.raises(LimitExceededError):
                await lim.acquire("k", limits, now=T + 9.9)
            p = await lim.acquire("k", limits, now=T + 10)
            await lim.release(p, now=T + 11)
            await lim.acquire("k", limits, now=T + 11)
        finally:
            await lim.aclose()

    async def test_keys_and_their_expiry(self, prefix: str, sync_redis: redis.Redis) -> None:
        lim = RedisLimiter(REDIS_URL, prefix=prefix)
        now = time.time()
        try:
            await lim.seed_spend("k", "day", 0.0, now=now)
            await lim.seed_spend("k", "total", 0.0, now=now)
            p = await lim.acquire("k", Limits(rpm=5, max_parallel=2, budget=1.0, budget_period="day"), now=now)
            await lim.release(p, tokens=7, cost=0.5, now=now)
            p = await lim.acquire("k", Limits(max_parallel=2), now=now)
            await lim.release(p, cost=0.25, now=now)
            await lim.seed_spend("k", "month", 3.0, now=now)
        finally:
            await lim.aclose()
        window = int(now) - int(now) % 60
        day = int(now) - int(now) % 86400
        assert sync_redis.hgetall(f"{prefix}{{k}}:m:{window}") == {b"req": b"1"}  # tokens only count with tpm
        assert 115 <= sync_redis.ttl(f"{prefix}{{k}}:m:{window}") <= 120
        assert sync_redis.zcard(f"{prefix}{{k}}:p") == 0
        assert sync_redis.get(f"{prefix}{{k}}:s:day:{day}") == b"0.5"
        assert 86400 < sync_redis.ttl(f"{prefix}{{k}}:s:day:{day}") <= 2 * 86400
        assert sync_redis.get(f"{prefix}{{k}}:s:total:0") == b"0.25"
        assert len(list(sync_redis.scan_iter(match=f"{prefix}{{k}}:s:*"))) == 3
        assert sync_redis.ttl(f"{prefix}{{k}}:s:total:0") == -1
        assert 86400 < sync_redis.ttl(next(iter(sync_redis.scan_iter(match=f"{prefix}{{k}}:s:month:*")))) <= 32 * 86400

    async def test_a_lost_spend_counter_is_seeded_again(self, prefix: str, sync_redis: redis.Redis) -> None:
        lim = RedisLimiter(REDIS_URL, prefix=prefix)
        limits = Limits(rpm=10, max_parallel=2, budget=5.0)
        key = f"{prefix}{{k}}:s:total:0"
        try:
            await lim.seed_spend("k", "total", 4.0, now=T)
            p = await lim.acquire("k", limits, now=T)
            await lim.release(p, cost=0.5, now=T)
            assert sync_redis.get(key) == b"4.5"
            sync_redis.delete(key)  # Redis lost its data: restart without persistence, eviction, failover
            p = await lim.acquire("k", Limits(rpm=10, max_parallel=2), now=T + 1)  # in flight when the data went
            with pytest.raises(SpendNotSeeded) as info:
                await lim.acquire("k", limits, now=T + 1)
            assert (info.value.subject, info.value.period, info.value.period_start) == ("k", "total", 0)
            await lim.release(p, cost=0.25, now=T + 1)  # does not start the counter again from 0
            assert sync_redis.exists(key) == 0
            assert await lim.spent("k", "total", now=T + 1) == 0.0
            with pytest.raises(SpendNotSeeded):
                await lim.acquire("k", limits, now=T + 2)
            assert sync_redis.hget(f"{prefix}{{k}}:m:{T}", "req") == b"2"
            assert sync_redis.zcard(f"{prefix}{{k}}:p") == 0
            await lim.seed_spend("k", "total", 4.75, now=T + 3)  # the ledger's sum
            p = await lim.acquire("k", limits, now=T + 3)
            await lim.release(p, cost=0.25, now=T + 3)
            with pytest.raises(LimitExceededError) as exceeded:
                await lim.acquire("k", limits, now=T + 4)
            assert exceeded.value.limit == "budget"
            assert sync_redis.get(key) == b"5"
        finally:
            await lim.aclose()

    async def test_release_keeps_the_seeded_expiry(self, prefix: str, sync_redis: redis.Redis) -> None:
        lim = RedisLimiter(REDIS_URL, prefix=prefix)
        now = time.time()
        day = int(now) - int(now) % 86400
        key = f"{prefix}{{k}}:s:day:{day}"
        try:
            await lim.seed_spend("k", "day", 1.0, now=now)
            ttl = sync_redis.ttl(key)
            assert 86400 < ttl <= 2 * 86400
            p = await lim.acquire("k", Limits(budget=2.0, budget_period="day"), now=now)
            await lim.release(p, cost=0.5, now=now)
        finally:
            await lim.aclose()
        assert sync_redis.get(key) == b"1.5"
        assert ttl - 2 <= sync_redis.ttl(key) <= ttl


class TestRedisDown:
    async def test_acquire_raises_limiter_unavailable(self) -> None:
        lim = RedisLimiter("redis://:hunter2@127.0.0.1:1/0")
        try:
            with pytest.raises(LimiterUnavailableError) as info:
                await lim.acquire("k", Limits(rpm=10))
            for call in (
                lim.seed_spend("k", "total", 1.0),
                lim.spent("k", "total"),
                lim.acquire("k", Limits(budget=1.0)),
            ):
                with pytest.raises(LimiterUnavailableError):
                    await call
        finally:
            await lim.aclose()
        err = info.value
        assert (err.http_status, err.error_type) == (503, "unavailable")
        assert "redis://:***@127.0.0.1:1/0" in str(err)
        assert "hunter2" not in str(err)
        assert "Error 111 connecting to 127.0.0.1:1" in str(err)

    async def test_nothing_to_count_needs_no_redis(self) -> None:
        lim = RedisLimiter("redis://127.0.0.1:1")
        try:
            p = await lim.acquire("k", Limits())
            await lim.release(p, tokens=10)
        finally:
            await lim.aclose()

    def test_invalid_url_is_a_config_error(self) -> None:
        from modelway.errors import ConfigError

        with pytest.raises(ConfigError, match="invalid Redis URL http://:\\*\\*\\*@h/"):
            RedisLimiter("http://:pw@h/")


def test_redact_url() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://user:s3cret@redis.internal:6380/2") == "redis://user:***@redis.internal:6380/2"
    assert redact_url("rediss://:s3cret@h") == "rediss://:***@h"
    assert redact_url("unix:///run/redis.sock?db=1&password=s3cret") == "unix:///run/redis.sock?db=1&password=***"
