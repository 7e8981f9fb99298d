"""The limiter contract, checked on both limiters: the in-process one and the Redis one (against a real server)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from modelway.limits import Limiter, LimitExceededError, Limits, MemoryLimiter, SpendNotSeeded
from services import REDIS_URL

#: the start of a minute window (1_000_000_020 % 60 == 0)
T = 1_000_000_020
KEY = "key_ab12"


async def delete_keys(prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    request.getfixturevalue("redis_server")
    from modelway.limits.redis import RedisLimiter

    prefix = f"mwtest:{uuid4().hex}:"
    lim = RedisLimiter(REDIS_URL, prefix=prefix)
    try:
        yield lim
    finally:
        await lim.aclose()
        await delete_keys(prefix)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


async def refused(lim: Limiter, limits: Limits, now: float, subject: str = KEY) -> LimitExceededError:
    with pytest.raises(LimitExceededError) as info:
        await lim.acquire(subject, limits, now=now)
    return info.value


class TestRpm:
    async def test_admits_exactly_rpm_then_refuses(self, limiter: Limiter) -> None:
        limits = Limits(rpm=3)
        permits = [await limiter.acquire(KEY, limits, now=T + 1) for _ in range(3)]
        assert [p.remaining_requests for p in permits] == [2, 1, 0]
        assert [p.window for p in permits] == [T, T, T]
        err = await refused(limiter, limits, T + 1)
        assert (err.code, err.limit, err.retry_after, err.http_status) == ("rate_limit_exceeded", "rpm", 59.0, 429)
        assert str(err) == "key key_ab12 reached its limit of 3 requests per minute; try again in 59 s"

    async def test_retry_after_is_whole_seconds_to_the_window_end(self, limiter: Limiter) -> None:
        limits = Limits(rpm=1)
        await limiter.acquire(KEY, limits, now=T)
        assert (await refused(limiter, limits, T + 36.5)).retry_after == 24.0
        err = await refused(limiter, limits, T + 37)
        assert err.retry_after == 23.0
        assert str(err) == "key key_ab12 reached its limit of 1 requests per minute; try again in 23 s"
        assert (await refused(limiter, limits, T + 59.9)).retry_after == 1.0

    async def test_window_rolls_over_at_the_minute(self, limiter: Limiter) -> None:
        limits = Limits(rpm=2)
        await limiter.acquire(KEY, limits, now=T)
        await limiter.acquire(KEY, limits, now=T + 59)
        await refused(limiter, limits, T + 59.999)
        p = await limiter.acquire(KEY, limits, now=T + 60)
        assert (p.window, p.remaining_requests, p.reset) == (T + 60, 1, 60.0)
        await limiter.acquire(KEY, limits, now=T + 61)
        await refused(limiter, limits, T + 62)

    async def test_refused_requests_are_not_counted(self, limiter: Limiter) -> None:
        limits = Limits(rpm=5, max_parallel=1)
        p = await limiter.acquire(KEY, limits, now=T)
        for _ in range(3):
            assert (await refused(limiter, limits, T)).limit == "max_parallel"
        await limiter.release(p, now=T)
        assert (await limiter.acquire(KEY, limits, now=T)).remaining_requests == 3

    async def test_subjects_count_apart(self, limiter: Limiter) -> None:
        limits = Limits(rpm=1)
        await limiter.acquire("key_a", limits, now=T)
        await limiter.acquire("key_b", limits, now=T)
        await refused(limiter, limits, T, "key_a")

    async def test_remaining_and_reset(self, limiter: Limiter) -> None:
        p = await limiter.acquire(KEY, Limits(rpm=10, tpm=1000), now=T + 15.25)
        assert (p.subject, p.window, p.remaining_requests, p.remaining_tokens, p.reset) == (KEY, T, 9, 1000, 44.75)
        await limiter.release(p, tokens=300, now=T + 16)
        p = await limiter.acquire(KEY, Limits(rpm=10, tpm=1000), now=T + 30)
        assert (p.remaining_requests, p.remaining_tokens, p.reset) == (8, 700, 30.0)
        p = await limiter.acquire(KEY, Limits(tpm=1000), now=T + 30)
        assert (p.remaining_requests, p.remaining_tokens) == (None, 700)


class TestTpm:
    async def test_tokens_counted_at_release_refuse_once_reached(self, limiter: Limiter) -> None:
        limits = Limits(tpm=100)
        p = await limiter.acquire(KEY, limits, now=T)
        assert p.remaining_tokens == 100
        await limiter.release(p, tokens=60, now=T + 1)
        p = await limiter.acquire(KEY, limits, now=T + 2)
        assert p.remaining_tokens == 40
        await limiter.release(p, tokens=39, now=T + 3)
        p = await limiter.acquire(KEY, limits, now=T + 4)
        assert p.remaining_tokens == 1
        # the request in flight when the limit is reached may go over it; the next one is refused
        await limiter.release(p, tokens=50, now=T + 5)
        err = await refused(limiter, limits, T + 20)
        assert (err.code, err.limit, err.retry_after) == ("rate_limit_exceeded", "tpm", 40.0)
        assert str(err) == "key key_ab12 reached its limit of 100 tokens per minute; try again in 40 s"
        p = await limiter.acquire(KEY, limits, now=T + 60)
        assert p.remaining_tokens == 100

    async def test_tokens_go_to_the_window_of_the_release(self, limiter: Limiter) -> None:
        limits = Limits(tpm=100)
        p = await limiter.acquire(KEY, limits, now=T + 50)
        await limiter.release(p, tokens=100, now=T + 65)
        assert (await refused(limiter, limits, T + 70)).limit == "tpm"
        assert (await limiter.acquire(KEY, limits, now=T + 120)).remaining_tokens == 100


class TestMaxParallel:
    async def test_release_frees_a_place(self, limiter: Limiter) -> None:
        limits = Limits(max_parallel=2)
        p1 = await limiter.acquire(KEY, limits, now=T)
        await limiter.acquire(KEY, limits, now=T)
        err = await refused(limiter, limits, T)
        assert (err.code, err.limit, err.retry_after) == ("max_parallel_exceeded", "max_parallel", 1.0)
        assert str(err) == (
            "key key_ab12 reached its limit of 2 requests in flight at once; try again when one of them has finished"
        )
        await limiter.release(p1, now=T + 1)
        await limiter.acquire(KEY, limits, now=T + 1)
        await refused(limiter, limits, T + 1)

    async def test_checked_before_rpm(self, limiter: Limiter) -> None:
        limits = Limits(rpm=1, max_parallel=1)
        p = await limiter.acquire(KEY, limits, now=T)
        assert (await refused(limiter, limits, T)).limit == "max_parallel"
        await limiter.release(p, now=T)
        assert (await refused(limiter, limits, T)).limit == "rpm"

    async def test_double_release_frees_one_place(self, limiter: Limiter) -> None:
        limits = Limits(max_parallel=2)
        p1 = await limiter.acquire(KEY, limits, now=T)
        await limiter.acquire(KEY, limits, now=T)
        await limiter.release(p1, now=T)
        await limiter.release(p1, now=T)
        assert p1.released
        await limiter.acquire(KEY, limits, now=T)
        await refused(limiter, limits, T)


async def not_seeded(lim: Limiter, limits: Limits, now: float, subject: str = KEY) -> SpendNotSeeded:
    with pytest.raises(SpendNotSeeded) as info:
        await lim.acquire(subject, limits, now=now)
    return info.value


class TestBudget:
    async def test_total(self, limiter: Limiter) -> None:
        limits = Limits(budget=1.0)
        await limiter.seed_spend(KEY, "total", 0.0, now=T)
        p = await limiter.acquire(KEY, limits, now=T)
        await limiter.release(p, cost=0.75, now=T)
        p = await limiter.acquire(KEY, limits, now=T + 1)
        await limiter.release(p, cost=0.5, now=T + 1)
        assert await limiter.spent(KEY, "total", now=T + 2) == 1.25
        err = await refused(limiter, limits, T + 2)
        assert (err.code, err.limit, err.retry_after) == ("budget_exceeded", "budget", None)
        assert str(err) == (
            "key key_ab12 reached its total budget of 1 (spent 1.25); it does not reset; raise the budget to continue"
        )
        await refused(limiter, limits, T + 400 * 86400)
        assert (await limiter.acquire(KEY, Limits(budget=1.5), now=T + 3)).subject == KEY

    async def test_day_rolls_over_at_utc_midnight(self, limiter: Limiter) -> None:
        limits = Limits(budget=2.0, budget_period="day")
        await limiter.seed_spend(KEY, "day", 0.0, now=utc(2024, 3, 10, 8))
        p = await limiter.acquire(KEY, limits, now=utc(2024, 3, 10, 8))
        await limiter.release(p, cost=2.0, now=utc(2024, 3, 10, 9))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 10, 23, 59, 30)) == 2.0
        assert await limiter.spent(KEY, "total", now=utc(2024, 3, 10, 23, 59, 30)) == 0.0
        err = await refused(limiter, limits, utc(2024, 3, 10, 23, 59, 30))
        assert (err.code, err.limit, err.retry_after) == ("budget_exceeded", "budget", 30.0)
        assert str(err) == (
            "key key_ab12 reached its daily budget of 2 (spent 2); it resets at midnight UTC; try again in 30 s"
        )
        err2 = await not_seeded(limiter, limits, utc(2024, 3, 11))
        assert (err2.subject, err2.period, err2.period_start) == (KEY, "day", int(utc(2024, 3, 11)))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 11)) == 0.0
        await limiter.seed_spend(KEY, "day", 0.0, now=utc(2024, 3, 11))
        p = await limiter.acquire(KEY, limits, now=utc(2024, 3, 11))
        await limiter.release(p, cost=0.25, now=utc(2024, 3, 11, 0, 1))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 11, 23, 59, 59)) == 0.25

    async def test_month_rolls_over_december_to_january(self, limiter: Limiter) -> None:
        limits = Limits(budget=10.0, budget_period="month")
        await limiter.seed_spend(KEY, "month", 0.0, now=utc(2023, 12, 1))
        p = await limiter.acquire(KEY, limits, now=utc(2023, 12, 1))
        await limiter.release(p, cost=6.0, now=utc(2023, 12, 1))
        p = await limiter.acquire(KEY, limits, now=utc(2023, 12, 15))
        await limiter.release(p, cost=4.5, now=utc(2023, 12, 31, 22))
        err = await refused(limiter, limits, utc(2023, 12, 31, 23))
        assert (err.code, err.limit, err.retry_after) == ("budget_exceeded", "budget", 3600.0)
        assert str(err) == (
            "key key_ab12 reached its monthly budget of 10 (spent 10.5); "
            "it resets on the 1st of the month at midnight UTC; try again in 3600 s"
        )
        err2 = await not_seeded(limiter, limits, utc(2024, 1, 1))
        assert (err2.period, err2.period_start) == ("month", int(utc(2024, 1, 1)))
        await limiter.seed_spend(KEY, "month", 1.0, now=utc(2024, 1, 1))
        p = await limiter.acquire(KEY, limits, now=utc(2024, 1, 1))
        await limiter.release(p, cost=2.0, now=utc(2024, 1, 2))
        assert await limiter.spent(KEY, "month", now=utc(2024, 1, 31, 23, 59)) == 3.0

    async def test_spend_is_counted_without_a_budget_once_seeded(self, limiter: Limiter) -> None:
        await limiter.seed_spend(KEY, "total", 0.25, now=T)
        p = await limiter.acquire(KEY, Limits(rpm=100), now=T)
        await limiter.release(p, cost=0.5, now=T)
        p = await limiter.acquire(KEY, Limits(), now=T)
        await limiter.release(p, cost=0.25, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 1.0
        assert (await refused(limiter, Limits(budget=1.0), T)).limit == "budget"

    async def test_a_budget_added_later_starts_from_the_seed(self, limiter: Limiter) -> None:
        # spend released before any seed is not counted (the ledger has it): a budget added later is seeded
        # from the ledger's sum, which is not ignored
        p = await limiter.acquire(KEY, Limits(rpm=100), now=T)
        await limiter.release(p, cost=5.0, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 0.0
        limits = Limits(budget=6.0)
        await not_seeded(limiter, limits, T + 1)
        await limiter.seed_spend(KEY, "total", 5.0, now=T + 1)
        p = await limiter.acquire(KEY, limits, now=T + 1)
        await limiter.release(p, cost=1.0, now=T + 2)
        assert (await refused(limiter, limits, T + 3)).limit == "budget"

    async def test_seed_spend_sets_only_an_absent_counter(self, limiter: Limiter) -> None:
        await limiter.seed_spend(KEY, "day", 5.0, now=utc(2024, 3, 10, 12))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 10, 13)) == 5.0
        await limiter.seed_spend(KEY, "day", 7.0, now=utc(2024, 3, 10, 13))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 10, 13)) == 5.0
        limits = Limits(budget=5.25, budget_period="day")
        p = await limiter.acquire(KEY, limits, now=utc(2024, 3, 10, 14))
        await limiter.release(p, cost=0.25, now=utc(2024, 3, 10, 14))
        assert (await refused(limiter, limits, utc(2024, 3, 10, 15))).limit == "budget"
        # releases since the seed are kept by a later seed too
        await limiter.seed_spend("key_b", "total", 1.0, now=T)
        p = await limiter.acquire("key_b", Limits(), now=T)
        await limiter.release(p, cost=1.5, now=T)
        await limiter.seed_spend("key_b", "total", 100.0, now=T)
        assert await limiter.spent("key_b", "total", now=T) == 2.5
        # nor does a seed of another period or day touch this one
        await limiter.seed_spend(KEY, "day", 9.0, now=utc(2024, 3, 11, 1))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 11, 2)) == 9.0
        assert await limiter.spent(KEY, "month", now=utc(2024, 3, 11, 2)) == 0.0


class TestSpendNotSeeded:
    async def test_acquire_with_a_budget_on_an_unseeded_counter_counts_nothing(self, limiter: Limiter) -> None:
        limits = Limits(rpm=2, max_parallel=1, budget=1.0, budget_period="day")
        for _ in range(3):
            err = await not_seeded(limiter, limits, T + 1)
            assert (err.subject, err.period, err.period_start) == (KEY, "day", T - T % 86400)
            assert not isinstance(err, LimitExceededError)
        # no request and no place in flight were counted
        p = await limiter.acquire(KEY, Limits(rpm=2, max_parallel=1), now=T + 2)
        assert p.remaining_requests == 1
        await limiter.release(p, now=T + 2)
        await limiter.seed_spend(KEY, "day", 0.0, now=T + 3)
        p = await limiter.acquire(KEY, limits, now=T + 3)
        assert p.remaining_requests == 0
        assert (await refused(limiter, limits, T + 3)).limit == "max_parallel"
        await limiter.release(p, now=T + 3)
        assert (await refused(limiter, limits, T + 3)).limit == "rpm"

    async def test_other_limits_are_checked_first(self, limiter: Limiter) -> None:
        await limiter.acquire(KEY, Limits(max_parallel=1), now=T)
        assert (await refused(limiter, Limits(max_parallel=1, budget=1.0), T)).limit == "max_parallel"
        await not_seeded(limiter, Limits(budget=1.0), T)

    async def test_release_does_not_create_the_counter(self, limiter: Limiter) -> None:
        limits = Limits(budget=1.0)
        await limiter.seed_spend(KEY, "day", 0.0, now=T)  # another period's counter
        p = await limiter.acquire(KEY, Limits(tpm=100, max_parallel=1), now=T)
        await limiter.release(p, tokens=5, cost=2.0, now=T)
        p = await limiter.acquire(KEY, Limits(), now=T)
        await limiter.release(p, cost=2.0, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 0.0
        assert await limiter.spent(KEY, "day", now=T) == 0.0
        await not_seeded(limiter, limits, T)
        # the request's place and tokens were still released and counted
        p = await limiter.acquire(KEY, Limits(tpm=100, max_parallel=1), now=T)
        assert p.remaining_tokens == 95

    async def test_releases_add_once_seeded(self, limiter: Limiter) -> None:
        limits = Limits(budget=1.0)
        await limiter.seed_spend(KEY, "total", 0.25, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 0.25
        p = await limiter.acquire(KEY, limits, now=T)
        await limiter.release(p, cost=0.5, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 0.75
        p = await limiter.acquire(KEY, limits, now=T)
        await limiter.release(p, cost=0.25, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 1.0
        assert (await refused(limiter, limits, T)).limit == "budget"

    async def test_a_new_period_needs_a_new_seed(self, limiter: Limiter) -> None:
        limits = Limits(budget=5.0, budget_period="day")
        await limiter.seed_spend(KEY, "day", 1.0, now=utc(2024, 3, 10, 12))
        p = await limiter.acquire(KEY, limits, now=utc(2024, 3, 10, 23, 59, 59))
        # released in the new period, before its counter was seeded: not counted anywhere
        await limiter.release(p, cost=2.0, now=utc(2024, 3, 11, 0, 0, 1))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 11, 0, 0, 2)) == 0.0
        err = await not_seeded(limiter, limits, utc(2024, 3, 11, 0, 0, 2))
        assert (err.period, err.period_start) == ("day", int(utc(2024, 3, 11)))
        await limiter.seed_spend(KEY, "day", 2.0, now=utc(2024, 3, 11, 0, 0, 3))
        p = await limiter.acquire(KEY, limits, now=utc(2024, 3, 11, 0, 0, 3))
        await limiter.release(p, cost=0.5, now=utc(2024, 3, 11, 0, 0, 4))
        assert await limiter.spent(KEY, "day", now=utc(2024, 3, 11, 0, 0, 5)) == 2.5


class TestRelease:
    async def test_double_release_is_a_no_op(self, limiter: Limiter) -> None:
        limits = Limits(tpm=100, budget=10.0)
        await limiter.seed_spend(KEY, "total", 0.0, now=T)
        p = await limiter.acquire(KEY, limits, now=T)
        await limiter.release(p, tokens=30, cost=1.5, now=T)
        await limiter.release(p, tokens=30, cost=1.5, now=T)
        assert await limiter.spent(KEY, "total", now=T) == 1.5
        assert (await limiter.acquire(KEY, limits, now=T)).remaining_tokens == 70


async def test_no_limits_admit_everything(limiter: Limiter) -> None:
    permits = [await limiter.acquire(KEY, Limits(), now=T + 7) for _ in range(500)]
    assert len({p.token for p in permits}) == 500
    assert {(p.window, p.remaining_requests, p.remaining_tokens, p.reset) for p in permits} == {(T, None, None, 53.0)}
    for p in permits:
        await limiter.release(p, tokens=1000, now=T + 8)
    assert (await limiter.acquire(KEY, Limits(), now=T + 9)).remaining_tokens is None


async def test_no_time_given_uses_the_clock(limiter: Limiter) -> None:
    await limiter.seed_spend(KEY, "total", 0.0)
    p = await limiter.acquire(KEY, Limits(rpm=1))
    assert 0 < p.reset <= 60
    await limiter.release(p, cost=0.5)
    assert await limiter.spent(KEY, "day") == 0.0
    assert await limiter.spent(KEY, "total") == 0.5


def test_importing_limits_does_not_import_redis() -> None:
    code = "import sys, modelway.limits; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
