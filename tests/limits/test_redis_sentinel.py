"""The limiter through Redis Sentinel, against real servers: a master and a replica (password ``pw``) watched by a
Sentinel (password ``spw``). The master is found by service name; when it dies, or Sentinel is told to fail over,
the limiter goes on against the new master within a bounded time, and what was in flight meanwhile fails with the
limiter's unavailable error, never hangs.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from redis_servers import SERVICE, Sentinels, command, port_of, start_sentinels

import throwaway
from modelway.limits import LimiterUnavailableError, Limits
from modelway.limits.redis import RedisLimiter

LIMITS = Limits(rpm=1_000_000, max_parallel=1000)
#: the longest one acquire + release may take while the master is away: the URL's connect and reply timeouts
#: (1 s each) for the Sentinel and for the master, and some slack for a loaded machine
BOUND = 4.5
#: seconds from SENTINEL FAILOVER to counts on the new master (here ~1 s; the old master is demoted ~10 s later)
SWITCH = 5.0


@pytest.fixture
def fleet() -> Iterator[Sentinels]:
    fleet = start_sentinels()
    try:
        yield fleet
    finally:
        fleet.stop()


def _prefix() -> str:
    return f"mw:test:{uuid.uuid4().hex[:12]}:"


def _count(port: int, prefix: str) -> int:
    """Keys under ``prefix`` in database 3 of the server on ``port``."""
    return int(command(port, "EVAL", f"return #redis.call('KEYS', '{prefix}*')", "0", password="pw", db=3))


@dataclass
class Load:
    """acquire + release in a loop while a failover happens: every outcome, and how long each took."""

    limiter: RedisLimiter
    ok: list[float] = field(default_factory=list)  # when each success ended (monotonic)
    began: list[float] = field(default_factory=list)  # when each success started
    errors: list[BaseException] = field(default_factory=list)
    slowest: float = 0.0
    stop: bool = False

    async def run(self) -> None:
        while not self.stop:
            started = time.monotonic()
            try:
                permit = await self.limiter.acquire("k", LIMITS)
                await self.limiter.release(permit)
                self.began.append(started)
                self.ok.append(time.monotonic())
            except Exception as exc:
                self.errors.append(exc)
                await asyncio.sleep(0.05)
            self.slowest = max(self.slowest, time.monotonic() - started)
            await asyncio.sleep(0.01)

    def check(self) -> None:
        wrong = [e for e in self.errors if not isinstance(e, LimiterUnavailableError)]
        assert not wrong, wrong[:3]
        assert self.slowest < BOUND, f"a call took {self.slowest:.2f} s"


def _counted(port: int, prefix: str) -> int:
    """Requests counted in the current minute under ``prefix`` on the server on ``port`` (database 3)."""
    script = (
        f"local n = 0 for _, k in ipairs(redis.call('KEYS', '{prefix}*:m:*')) do "
        "n = n + redis.call('HGET', k, 'req') end return n"
    )
    return int(command(port, "EVAL", script, "0", password="pw", db=3))


async def _goes_on(load: Load, since: float, seconds: float) -> float:
    """Seconds from ``since`` until the end of the load's first success that started after it (then it goes on
    succeeding). (A call that started before ``since`` may end after it, on the old master: it does not count.)"""
    while not load.began or load.began[-1] <= since:
        assert time.monotonic() - since < seconds, f"no success {seconds} s after the failover began"
        await asyncio.sleep(0.05)
    took = next(t for b, t in zip(load.began, load.ok, strict=True) if b > since) - since
    n = len(load.ok)
    await asyncio.sleep(0.5)
    assert len(load.ok) > n, "the load does not go on against the new master"
    return took


def test_the_master_is_found_by_service_name(fleet: Sentinels) -> None:
    prefix = _prefix()

    async def main() -> None:
        # the first Sentinel listed does not answer: the next one is asked
        limiter = RedisLimiter(fleet.url(dead_first=throwaway.free_port()), prefix=prefix)
        try:
            await limiter.ping()
            permit = await limiter.acquire("k", Limits(rpm=10))
            assert permit.remaining_requests == 9
            await limiter.release(permit)
            await limiter.seed_spend("k", "total", 2.0)
            assert await limiter.spent("k", "total") == 2.0
        finally:
            await limiter.aclose()

    asyncio.run(main())
    assert _count(port_of(fleet.master), prefix) == 2  # the minute and the spend, in database 3 of the master


def test_what_sentinel_cannot_answer_is_a_clear_error(fleet: Sentinels) -> None:
    async def refused(url: str) -> str:
        limiter = RedisLimiter(url)
        try:
            with pytest.raises(LimiterUnavailableError) as info:
                await limiter.acquire("k", Limits(rpm=10))
            return str(info.value)
        finally:
            await limiter.aclose()

    sentinel = f"127.0.0.1:{port_of(fleet.sentinels[0])}"
    message = asyncio.run(refused(fleet.url().replace(f"/{SERVICE}/", "/nope/")))
    assert f"no Sentinel named the master of 'nope': {sentinel}: knows no master named 'nope'" in message
    message = asyncio.run(refused(fleet.url().replace("sentinel_password=spw", "sentinel_password=wrong-s3cret")))
    assert f"Sentinel {sentinel} answered WRONGPASS" in message and "wrong-s3cret" not in message
    dead = throwaway.free_port()
    message = asyncio.run(refused(fleet.url().replace(sentinel, f"127.0.0.1:{dead}")))
    assert f"no Sentinel named the master of 'mymaster': 127.0.0.1:{dead}: Error 111 connecting to" in message


def test_failover_when_the_master_dies(fleet: Sentinels) -> None:
    prefix = _prefix()
    old, new = port_of(fleet.master), port_of(fleet.replica)

    async def main() -> float:
        limiter = RedisLimiter(fleet.url(), prefix=prefix)
        load = Load(limiter)
        task = asyncio.create_task(load.run())
        try:
            await asyncio.sleep(0.3)
            assert load.ok and not load.errors
            fleet.master.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(fleet.master.proc.wait, 10)  # (dead, not dying: it answers no more calls)
            killed = time.monotonic()
            took = await _goes_on(load, killed, 30)  # the old master is dead: these succeed on the new one
            counted = _counted(new, prefix)
            await asyncio.sleep(0.3)
            assert _counted(new, prefix) > counted
        finally:
            load.stop = True
            await task
            await limiter.aclose()
        load.check()
        assert load.errors, "the master died, yet nothing failed"
        kinds = sorted({str(e)[-90:] for e in load.errors})
        print(f"errors meanwhile: {len(load.errors)} ({kinds}); slowest call {load.slowest:.2f} s")
        return took

    took = asyncio.run(main())
    assert fleet.master_port() == new != old
    assert command(new, "ROLE", password="pw").startswith("master")
    print(f"writes on the new master {took:.1f} s after the old one was killed")


def test_failover_ordered_through_sentinel(fleet: Sentinels) -> None:
    prefix = _prefix()
    new = port_of(fleet.replica)

    async def main() -> float:
        limiter = RedisLimiter(fleet.url(), prefix=prefix)
        load = Load(limiter)
        task = asyncio.create_task(load.run())
        try:
            await asyncio.sleep(0.3)
            assert load.ok and not load.errors
            ordered = time.monotonic()
            assert command(port_of(fleet.sentinels[0]), "SENTINEL", "FAILOVER", SERVICE, password="spw") == "OK"
            # once promoted, the new master no longer copies the old one: what it counts then, the limiter wrote
            # there. The old master stays a master for seconds more (until Sentinel demotes it): the limiter must
            # not wait for that.
            while True:
                assert time.monotonic() - ordered < SWITCH, f"no count on the new master {SWITCH} s after FAILOVER"
                if command(new, "ROLE", password="pw").startswith("master"):
                    counted = _counted(new, prefix)
                    await asyncio.sleep(0.2)
                    if _counted(new, prefix) > counted:
                        break
                await asyncio.sleep(0.05)
            took = time.monotonic() - ordered
        finally:
            load.stop = True
            await task
            await limiter.aclose()
        load.check()
        print(f"errors meanwhile: {len(load.errors)}; slowest call {load.slowest:.2f} s")
        return took

    took = asyncio.run(main())
    assert fleet.master_port() == new
    print(f"writes on the new master {took:.1f} s after SENTINEL FAILOVER")
