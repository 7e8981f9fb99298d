"""The Redis limiter: the in-process limiter's semantics, exact across any number of worker processes and replicas.

Each acquire and each release is one Lua script (one round trip) that checks and counts atomically, so concurrent
workers can never admit more than a limit between a check and its count. Keys, all of one subject in one hash
slot (``{subject}``)::

    {prefix}{subject}:m:{minute start}   hash: req, tok            expires 120 s after its last write
    {prefix}{subject}:p                  sorted set: permit tokens in flight, scored by when they expire
    {prefix}{subject}:s:{period}:{start} spend (float)             expires a day after the period ends ("total": never)

As in :mod:`.memory`, only what a key's limits check is counted, and a call with nothing to check or count (a key
without limits) does not touch Redis. The spend counter is created only by :meth:`RedisLimiter.seed_spend` (SET NX,
with its expiry); a release adds its cost only while the counter exists (INCRBYFLOAT keeps the expiry), and an
acquire with a budget that finds no counter raises :class:`SpendNotSeeded` before counting anything. So when Redis
loses the counter (a restart without persistence, eviction, a failover), the next budget check asks for a re-seed
from the ledger instead of starting again from 0. A place in flight expires ``parallel_ttl`` seconds after its
acquire, so a worker that crashed before releasing cannot hold places forever; the next acquire removes expired
places. Time comes from the caller (``now``), not from Redis. When Redis fails, requests are refused with
:class:`LimiterUnavailableError`, never admitted unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from typing import Any, cast

from ..errors import ConfigError
from .base import Limiter, LimiterUnavailableError, Limits, Permit, SpendNotSeeded, minute_window, period_window
from .memory import budget_exceeded, max_parallel_exceeded, rate_exceeded
from .redis_url import redact_url
from .resp import Arg, RespClient, RespError, Script

log = logging.getLogger("modelway.limits")

#: seconds before a place taken by a refused or cancelled acquire is given back
GIVE_BACK_DELAY = 1.0

__all__ = ["RedisLimiter", "redact_url"]

# KEYS: minute hash, in-flight set, spend counter
# ARGV: now, rpm, tpm, max_parallel, budget ('' when not set), permit token, its expiry, in-flight set ttl
# returns {0, requests in the window after this one, tokens in the window} or {1 max_parallel | 2 rpm | 3 tpm,
# count} or {4, spend} when a limit is reached, or {5, 0} when a budget is set and the spend counter does not exist
# (not seeded); nothing is counted then
_ACQUIRE = """
local now = tonumber(ARGV[1])
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_parallel, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
if max_parallel then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max_parallel then return {1, n} end
end
local req, tok = 0, 0
if rpm or tpm then
  local c = redis.call('HMGET', KEYS[1], 'req', 'tok')
  req, tok = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  if rpm and req >= rpm then return {2, req} end
  if tpm and tok >= tpm then return {3, tok} end
end
if budget then
  local spent = redis.call('GET', KEYS[3])
  if not spent then return {5, 0} end
  if tonumber(spent) >= budget then return {4, spent} end
end
if rpm or tpm then
  redis.call('HINCRBY', KEYS[1], 'req', 1)
  redis.call('EXPIRE', KEYS[1], 120)
end
if max_parallel then
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
end
return {0, req + 1, tok}
"""

# KEYS: minute hash, in-flight set, spend counter
# ARGV: permit token ('' when not in flight), tokens, cost ('' for none)
# the cost is added only to an existing (seeded) spend counter; INCRBYFLOAT keeps its expiry
_RELEASE = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
local tokens = tonumber(ARGV[2])
if tokens ~= 0 then
  redis.call('HINCRBY', KEYS[1], 'tok', tokens)
  redis.call('EXPIRE', KEYS[1], 120)
end
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[3])
end
return 0
"""


_ACQUIRE_SCRIPT = Script(_ACQUIRE)
_RELEASE_SCRIPT = Script(_RELEASE)


class RedisLimiter(Limiter):
    """Counts in Redis at ``url`` (``redis://``, ``rediss://``, ``unix://`` or through Sentinel:
    :mod:`.redis_url`), under keys starting with ``prefix``.

    Every command goes over one pipelined connection (:mod:`.resp`), made on first use in the running event loop
    and again after it broke: a command waits up to 2 s for the connection and 2 s for Redis to answer (the URL's
    ``socket_connect_timeout`` and ``socket_timeout`` win). One connection does tens of thousands of scripts a
    second, so no pool is needed, and a slow Redis cannot be flooded with new connections. A connection found
    broken before a command is written is replaced; a command is never retried after it was written (a timeout or a
    connection lost while waiting): the script may have run.
    """

    def __init__(self, url: str, *, prefix: str = "mw:", parallel_ttl: float = 900.0) -> None:
        try:
            self._client = RespClient(url, timeout=2.0, connect_timeout=2.0)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {redact_url(url)}: {exc}") from exc
        self.url = url
        self.prefix = prefix
        self.parallel_ttl = parallel_ttl
        self._safe_url = redact_url(url)
        self._set_ttl = math.ceil(parallel_ttl) + 60
        # permit tokens are unique across processes: a random id per limiter, then a counter
        self._id = secrets.token_hex(6) + ":"
        self._seq = 0
        self._pending: set[asyncio.Task[None]] = set()

    async def _call(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self._client.run_script(script, keys, args)
        except (RespError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def ping(self) -> None:
        try:
            await self._client.execute("PING")
        except (RespError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> LimiterUnavailableError:
        return LimiterUnavailableError(
            f"rate limits and budgets cannot be checked: Redis at {self._safe_url} is unavailable "
            f"({type(exc).__name__}: {exc})"
        )

    def _spend_key(self, subject: str, period: str, now: float) -> tuple[str, int | None]:
        """The spend counter of the period holding ``now`` and its time to live (``None``: keep it)."""
        start, end = period_window(period, now)
        ttl = None if end is None else max(1, math.ceil(end + 86400 - now))
        return f"{self.prefix}{{{subject}}}:s:{period}:{start}", ttl

    async def acquire(self, subject: str, limits: Limits, *, now: float | None = None) -> Permit:
        if now is None:
            now = time.time()
        window = minute_window(now)
        self._seq += 1
        token = f"{self._id}{self._seq}"
        if not limits.any:
            return Permit(subject, limits, token, window, None, None, window + 60 - now)
        rpm, tpm, max_parallel, budget = limits.rpm, limits.tpm, limits.max_parallel, limits.budget
        head = f"{self.prefix}{{{subject}}}:"
        spend_key, start, end = head + "s", 0, None
        if budget is not None:
            start, end = period_window(limits.budget_period, now)
            spend_key = f"{head}s:{limits.budget_period}:{start}"
        try:
            result = await self._call(
                _ACQUIRE_SCRIPT,
                [f"{head}m:{window}", head + "p", spend_key],
                [
                    repr(now),
                    "" if rpm is None else rpm,
                    "" if tpm is None else tpm,
                    "" if max_parallel is None else max_parallel,
                    "" if budget is None else repr(float(budget)),
                    token,
                    repr(now + self.parallel_ttl),
                    self._set_ttl,
                ],
            )
        except BaseException:
            if max_parallel is not None:
                # a timeout or a cancellation after the script was sent: it may have taken a place in flight for a
                # request that will not run. Give it back (ZREM of this request's own token: harmless if it never
                # ran); the rpm count it may have made stays, which errs on the side of admitting less.
                self._give_back(head + "p", token)
            raise
        status = int(result[0])
        if status == 0:
            req, tok = int(result[1]), int(result[2])
            return Permit(
                subject,
                limits,
                token,
                window,
                None if rpm is None else rpm - req,
                None if tpm is None else tpm - tok,
                window + 60 - now,
            )
        if status == 1:
            raise max_parallel_exceeded(subject, cast(int, max_parallel))
        if status == 2:
            raise rate_exceeded(subject, "rpm", cast(int, rpm), window, now)
        if status == 3:
            raise rate_exceeded(subject, "tpm", cast(int, tpm), window, now)
        if status == 5:
            raise SpendNotSeeded(subject, limits.budget_period, start)
        raise budget_exceeded(subject, limits.budget_period, cast(float, budget), float(result[1]), end, now)

    async def release(self, permit: Permit, *, tokens: int = 0, cost: float = 0.0, now: float | None = None) -> None:
        if permit.released:
            return
        limits = permit.limits
        inflight = limits.max_parallel is not None
        tokens = tokens if limits.tpm is not None else 0
        if not inflight and not tokens and not cost:
            permit.released = True
            return
        try:
            await self._client.connect()
        except (RespError, OSError) as exc:
            raise self._unavailable(exc) from exc
        # from here the script is written at once: a release cancelled while it waits for the reply has been
        # counted (a cancel before this line left the permit unreleased, for a second release to do it)
        permit.released = True
        if now is None:
            now = time.time()
        head = f"{self.prefix}{{{permit.subject}}}:"
        spend_key = head + "s"
        if cost:
            spend_key = f"{head}s:{limits.budget_period}:{period_window(limits.budget_period, now)[0]}"
        await self._call(
            _RELEASE_SCRIPT,
            [f"{head}m:{minute_window(now)}", head + "p", spend_key],
            [
                permit.token if inflight else "",
                tokens,
                repr(float(cost)) if cost else "",
            ],
        )

    def _give_back(self, inflight_key: str, token: str) -> None:
        async def give_back() -> None:
            await asyncio.sleep(GIVE_BACK_DELAY)  # after the timed-out command, which Redis may still be running
            try:
                await self._client.execute("ZREM", inflight_key, token)
            except (RespError, OSError) as exc:
                log.warning("could not give back a place in flight (%s); it expires on its own: %s", token, exc)

        task = asyncio.get_running_loop().create_task(give_back())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def seed_spend(self, subject: str, period: str, amount: float, *, now: float | None = None) -> None:
        key, ttl = self._spend_key(subject, period, time.time() if now is None else now)
        expiry: list[Arg] = [] if ttl is None else ["EX", ttl]
        try:
            await self._client.execute("SET", key, repr(float(amount)), "NX", *expiry)
        except (RespError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def spent(self, subject: str, period: str, *, now: float | None = None) -> float:
        key, _ = self._spend_key(subject, period, time.time() if now is None else now)
        try:
            value = await self._client.execute("GET", key)
        except (RespError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return 0.0 if value is None else float(value)

    async def aclose(self) -> None:
        for task in list(self._pending):  # at shutdown, places not given back yet expire on their own (parallel_ttl)
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._client.aclose()
