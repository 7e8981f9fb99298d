"""Router state in Redis, shared by every worker and replica using it (see :mod:`modelway.router.shared`).

One Lua script per operation (:mod:`modelway.router.shared_lua`), over one pipelined connection
(:class:`~modelway.limits.resp.RespClient`, the key limiter's client; a connection of its own, with short timeouts):

- **admission** (a deployment with a circuit or a quota): one script checks the circuit (and gives the half-open
  probe's pass to exactly one request of all processes), checks the quotas and takes the slot, atomically; the
  request waits for its answer (one round trip);
- a request with nothing to check, the **release** of a slot, a **verdict** for the circuit and an abandoned probe
  are sent without waiting (their replies update this process's view);
- every ``sync_interval`` seconds, one script per deployment extends this process's leases of requests in flight,
  publishes its latency averages and reads back the shared view: circuit, requests in flight, the mean of the
  processes' latency averages, the quota's last minute.

A slot (a place in flight) is a lease of ``lease`` seconds, extended while its request runs: a process that died
holds nothing for longer than that. A probe's pass lasts the attempt's timeout: if its process dies, another
request probes after it. A process that stops gracefully (:meth:`RedisRouterState.aclose`) holds nothing after it:
it sends the commands it queued, then gives back at once the places and probe passes of its requests still running
(within twice ``timeout``; when Redis does not answer, the leases expire as a dead process's).

**Fails open.** When Redis does not answer (down, unreachable, slower than ``timeout``), the router routes on
this process's own view: its circuits, its quotas (then per process, not across processes), its latency averages.
No request fails because routing state is unreachable. A warning is logged once; the sync loop checks Redis every
``retry`` seconds, logs once when it is back, and the shared state is used again (leases taken meanwhile were not
counted there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..limits.redis_url import redact_url
from ..limits.resp import Arg, RespClient, RespError, Script
from . import shared_lua as lua
from .circuit import CircuitState, is_account_failure
from .shared import REFUSED_BY_CIRCUIT, Admission, deployment_key

if TYPE_CHECKING:
    from ..errors import ModelwayError
    from .deployments import Deployment
    from .policy import CircuitSettings
    from .router import Router

__all__ = ["RedisRouterState"]

log = logging.getLogger("modelway.router")

#: seconds before a slot taken by an admission that was cancelled or timed out is given back
GIVE_BACK_DELAY = 1.0
#: commands sent without waiting, at most (more are dropped: the view is approximate then, never the requests)
MAX_PENDING = 10_000
_STATES = (CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN)


class RedisRouterState:
    """Shared router state in Redis at ``url``, under keys starting with ``prefix``.

    ``timeout``: seconds to connect and for each reply before Redis counts as unavailable; ``retry``: seconds between
    checks while it is; ``wall``: the clock whose seconds every process agrees on (tests may drive it).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "mw:router:",
        lease: float = 30.0,
        sync_interval: float = 1.0,
        timeout: float = 0.5,
        retry: float = 2.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        try:
            self._client = RespClient(url, timeout=timeout, connect_timeout=timeout)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {redact_url(url)}: {exc}") from exc
        self.prefix = prefix
        self.lease = lease
        self.sync_interval = sync_interval
        self.retry = retry
        self.wall = wall
        self._where = redact_url(url)
        self._ttl = math.ceil(lease) + 60
        self._id = secrets.token_hex(6)
        self._seq = 0
        self._router: Router | None = None
        self._keys: dict[Deployment, str] = {}
        #: leases of requests in flight in this process, per deployment key (extended by the sync), each with
        #: whether its request was admitted as the circuit's half-open probe
        self._live: dict[str, dict[str, bool]] = {}
        #: leases of admissions that were cancelled or failed, to give back after GIVE_BACK_DELAY: their keys
        self._giving_back: dict[str, str] = {}
        self._give_backs: set[asyncio.Task[None]] = set()
        self._timeout = timeout
        self._down = False
        self._retry_at = 0.0
        self._pending: set[asyncio.Task[Any]] = set()
        self._sync: asyncio.Task[None] | None = None
        self._closed = False

    # -- the seam ---------------------------------------------------------------------------------
    def bind(self, router: Router) -> None:
        self._router = router
        with contextlib.suppress(RuntimeError):  # no event loop yet: the sync starts with the first request
            asyncio.get_running_loop()
            self._start()

    @property
    def available(self) -> bool:
        """Whether the shared state is in use now (``False``: Redis is unavailable, this process's view rules)."""
        return not self._down

    def needs_admission(self, dep: Deployment, circuit: CircuitSettings | None) -> bool:
        if self._down or self._closed:
            return False
        return circuit is not None or (dep.quota is not None and dep.quota.limited)

    async def admit(
        self, dep: Deployment, circuit: CircuitSettings | None, tokens: int, lease: float
    ) -> Admission | None:
        if self._down or self._closed:
            return None
        self._start()
        key, quota = self._key(dep), dep.quota
        token = self._token()
        now = self.wall()
        args: list[Arg] = [
            repr(now),
            "1" if circuit is not None else "0",
            token,
            repr(now + self.lease),
            repr(now + lease),
            _opt(quota.max_concurrent if quota else None),
            _opt(quota.rpm if quota else None),
            _opt(quota.tpm if quota else None),
            tokens,
            self._ttl,
        ]
        try:
            reply = await self._client.run_script(lua.ADMIT, self._keys_of(key, "ciwt"), args)
        except asyncio.CancelledError:
            self._give_back(key, token)  # the script may have run: its slot and probe pass come back
            raise
        except (RespError, OSError) as exc:
            self._give_back(key, token)
            self._failed(exc)
            return None
        status = int(reply[0])
        self._adopt(dep, reply[3:])
        if status == 0:
            probe = reply[1] == b"1"
            self._live.setdefault(key, {})[token] = probe
            self._others(dep, int(reply[2]), mine=1)
            return Admission(True, probe=probe, lease=token)
        self._others(dep, int(reply[2]))
        if status == 1:
            return REFUSED_BY_CIRCUIT
        wait = float(reply[1])
        return Admission(False, wait=math.inf if wait < 0 else wait)

    def started(self, dep: Deployment) -> str | None:
        if self._down or self._closed:
            return None
        self._start()
        key, token, now = self._key(dep), self._token(), self.wall()
        self._live.setdefault(key, {})[token] = False
        self._fire(
            lua.TRACK,
            [self._k(key, "i")],
            [repr(now), token, repr(now + self.lease), self._ttl],
            lambda reply: self._others(dep, int(reply), mine=0),
        )
        return token

    def outcome(
        self, dep: Deployment, settings: CircuitSettings, *, probe: bool, lease: str | None, error: ModelwayError | None
    ) -> None:
        if self._down or self._closed:
            return
        key = self._key(dep)
        args: list[Arg] = [
            repr(self.wall()),
            "1" if error is None else "0",
            "1" if probe else "0",
            lease or self._token(),
            "1" if error is not None and is_account_failure(error) else "0",
            "" if error is None else type(error).__name__,
            settings.failures,
            repr(settings.error_rate),
            settings.min_requests,
            repr(settings.window),
            repr(settings.cooldown),
            repr(settings.max_cooldown),
            repr(settings.account_cooldown),
        ]
        self._fire(lua.OUTCOME, self._keys_of(key, "cof"), args, lambda reply: self._adopt(dep, reply))

    def abandoned(self, dep: Deployment, lease: str | None, *, probe: bool) -> None:
        if self._down or self._closed or not probe or lease is None:
            return
        self._fire(
            lua.ABANDON, [self._k(self._key(dep), "c")], [repr(self.wall()), lease], lambda r: self._adopt(dep, r)
        )

    def release(self, dep: Deployment, lease: str, tokens: int | None) -> None:
        key = self._key(dep)
        live = self._live.get(key)
        if live is not None:
            live.pop(lease, None)
            if not live:
                del self._live[key]
        if self._down or self._closed:
            return  # the lease expires on its own (closed: it was given back)
        self._fire(lua.RELEASE, self._keys_of(key, "iwt"), [lease, "" if tokens is None else tokens])

    async def aclose(self) -> None:
        """Stop syncing and leave nothing behind: the commands queued are sent, then the places in flight of the
        requests still running (and the probe passes among them) are given back, within twice ``timeout``; after
        this the process routes on its own view and sends nothing more."""
        if self._closed:
            return
        self._closed = True
        sync, self._sync = self._sync, None
        stopped = [t for t in (sync, *self._give_backs) if t is not None]
        for task in stopped:
            task.cancel()
        await asyncio.gather(*stopped, return_exceptions=True)
        try:
            if not self._down:
                async with asyncio.timeout(2 * self._timeout):
                    await self._hand_back()
        except TimeoutError:
            log.warning(
                "router state: Redis at %s did not answer within %gs at the close; this process's places in flight "
                "expire with their leases (%gs)",
                self._where,
                2 * self._timeout,
                self.lease,
            )
        finally:
            self._live.clear()
            self._giving_back.clear()
            tasks = list(self._pending)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._client.aclose()

    async def _hand_back(self) -> None:
        """:meth:`aclose`'s sending: the commands queued first, then one ``ZREM`` per deployment of every place this
        process holds, and an abandon of each probe pass it may hold (a no-op where the verdict was given)."""
        if self._pending:
            await asyncio.wait(list(self._pending))
        held: dict[str, list[str]] = {key: list(live) for key, live in self._live.items()}
        probes = [(key, lease) for key, live in self._live.items() for lease, probe in live.items() if probe]
        for lease, key in self._giving_back.items():  # (an admission cancelled: it may have taken the probe too)
            held.setdefault(key, []).append(lease)
            probes.append((key, lease))
        if not held:
            return
        now = repr(self.wall())
        calls = [self._client.execute("ZREM", self._k(key, "i"), *leases) for key, leases in held.items()]
        calls += [self._client.run_script(lua.ABANDON, [self._k(key, "c")], [now, lease]) for key, lease in probes]
        failed = [r for r in await asyncio.gather(*calls, return_exceptions=True) if isinstance(r, BaseException)]
        if failed:
            log.warning(
                "router state: %d of %d commands giving back this process's places in flight at the close failed "
                "(%s: %s); those places expire with their leases (%gs)",
                len(failed),
                len(calls),
                type(failed[0]).__name__,
                failed[0],
                self.lease,
            )

    # -- the sync ---------------------------------------------------------------------------------
    async def sync(self) -> None:
        """Extend this process's leases, publish its latency averages and read the shared view, once."""
        if self._closed:
            return
        if self._down:
            if time.monotonic() < self._retry_at:
                return
            try:
                await self._client.execute("PING")
            except (RespError, OSError) as exc:
                self._failed(exc)
                return
            self._back()
        groups: dict[str, list[Deployment]] = {key: [] for key in self._live}
        if self._router is not None:
            for group in (*self._router.groups.values(), *self._router._direct_cache.values()):
                for dep in group.deployments:
                    groups.setdefault(self._key(dep), []).append(dep)
        now = self.wall()
        calls = []
        for key, deps in groups.items():
            latency = ""
            for dep in deps:
                stats = dep.stats
                if stats.dirty:
                    stats.dirty = False
                    latency = f"{_opt(stats.ttft)}|{_opt(stats.total)}"
            args: list[Arg] = [repr(now), self._id, repr(now + self.lease), latency, self._ttl]
            args.extend(self._live.get(key, ()))
            calls.append(self._client.run_script(lua.SYNC, self._keys_of(key, "ciwtl"), args))
        replies = await asyncio.gather(*calls, return_exceptions=True)
        for deps, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                if isinstance(reply, RespError | OSError):
                    self._failed(reply)
                    continue
                raise reply
            local = sum(d.stats.local_in_flight for d in deps)
            for dep in deps:
                self._adopt(dep, reply[5:])
                dep.stats.others = max(0, int(reply[0]) - local)
                dep.stats.merge(_float(reply[1]), _float(reply[2]))
                dep.usage.shared = (int(reply[0]), int(reply[3]), int(reply[4]))

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any surprise; routing goes on with what it has
                log.exception("router state: the sync with Redis failed")

    def _start(self) -> None:
        if self._sync is None and not self._closed:
            self._sync = asyncio.get_running_loop().create_task(self._sync_loop())

    # -- inside -----------------------------------------------------------------------------------
    def _key(self, dep: Deployment) -> str:
        key = self._keys.get(dep)
        if key is None:
            if len(self._keys) >= 4096:  # deployments come and go at run time: keep the cache bounded
                self._keys.clear()
            key = self._keys[dep] = deployment_key(dep)
        return key

    def _k(self, key: str, part: str) -> str:
        return f"{self.prefix}{{{key}}}:{part}"

    def _keys_of(self, key: str, parts: str) -> list[str]:
        return [f"{self.prefix}{{{key}}}:{p}" for p in parts]

    def _token(self) -> str:
        self._seq += 1
        return f"{self._id}:{self._seq}"

    def _fire(
        self, script: Script, keys: list[str], args: list[Arg], apply: Callable[[Any], None] | None = None
    ) -> None:
        """Run ``script`` without waiting for it; its reply, when it comes, goes to ``apply``."""
        if self._closed or len(self._pending) >= MAX_PENDING:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._start()
        task = loop.create_task(self._run(script, keys, args, apply))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, script: Script, keys: list[str], args: list[Arg], apply: Callable[[Any], None] | None) -> None:
        try:
            reply = await self._client.run_script(script, keys, args)
        except (RespError, OSError) as exc:
            self._failed(exc)
            return
        if apply is not None:
            apply(reply)

    def _give_back(self, key: str, token: str) -> None:
        if self._closed:
            return  # (the close gave back what it knew of; this lease expires on its own)

        async def give_back() -> None:
            await asyncio.sleep(GIVE_BACK_DELAY)  # after the command that may still be running
            self._giving_back.pop(token, None)
            with contextlib.suppress(RespError, OSError):  # else the lease expires on its own
                await self._client.run_script(lua.RELEASE, self._keys_of(key, "iwt"), [token, ""])
                await self._client.run_script(lua.ABANDON, [self._k(key, "c")], [repr(self.wall()), token])

        with contextlib.suppress(RuntimeError):
            task = asyncio.get_running_loop().create_task(give_back())
            self._giving_back[token] = key
            self._give_backs.add(task)
            task.add_done_callback(self._give_backs.discard)

    def _adopt(self, dep: Deployment, view: list[Any]) -> None:
        state, opens_in, cooldown, consecutive, account, opened, error = view
        dep.circuit.adopt(
            _STATES[int(state)],
            float(opens_in),
            cooldown=float(cooldown),
            consecutive=int(consecutive),
            account=bool(int(account)),
            opened=int(opened),
            last_error=error.decode() if error else None,
            now=self._router.clock() if self._router is not None else time.monotonic(),
        )

    @staticmethod
    def _others(dep: Deployment, in_flight: int, *, mine: int = 0) -> None:
        """``in_flight`` across processes, as Redis counted it (``mine``: of this process's not started yet)."""
        dep.stats.others = max(0, in_flight - dep.stats.local_in_flight - mine)

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self.retry
        if self._down or self._closed:  # (closed: the connection was ours to close, Redis is not at fault)
            return
        self._down = True
        log.warning(
            "router state: Redis at %s is unavailable (%s: %s); routing on this process's own view until it is back",
            self._where,
            type(exc).__name__,
            exc,
        )
        if self._router is not None:
            for group in self._router.groups.values():
                for dep in group.deployments:
                    dep.stats.others = 0
                    dep.usage.shared = None

    def _back(self) -> None:
        self._down = False
        log.warning("router state: Redis at %s answers again; routing state is shared again", self._where)


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


def _float(value: bytes) -> float | None:
    return float(value) if value else None
