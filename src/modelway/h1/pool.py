"""The lean client's connections (:class:`Pool`): per ``(scheme, host, port)``, reused most recent first.

``limit`` bounds all open connections (idle ones included: the least recently used idle one of another host is
closed to make room) and ``limit_per_host`` those of one host; callers wait for room in FIFO order. An idle
connection is closed after :data:`KEEPALIVE` seconds, and dropped as soon as the server closes it. Names are
resolved once per :data:`DNS_TTL`, and a host's addresses are tried as RFC 8305 says (aiohappyeyeballs: the next
address after :data:`HAPPY_EYEBALLS_DELAY` while the first is still connecting, IPv6 and IPv4 interleaved), so an
address that does not answer costs a quarter of a second, not the connect timeout. https uses one
``ssl.create_default_context()``, made on first use.

Requests' deadlines are watched by one timer per pool (:meth:`Pool.watch`), at the earliest of them, not by a timer
made and cancelled per request: a deadline passed closes its connection, one that ended (the answer read, or a
stream's head arrived) is dropped when met.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
from collections import deque
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from threading import get_ident
from typing import Any

import aiohappyeyeballs

from .conn import Conn
from .failures import ConnectionLost, ConnectTimedOut
from .request import Key, Target

__all__ = ["DNS_TTL", "HAPPY_EYEBALLS_DELAY", "KEEPALIVE", "Pool"]

#: seconds an idle pooled connection is kept (aiohttp's keep-alive default)
KEEPALIVE = 15.0
#: seconds a name's addresses are reused
DNS_TTL = 300.0
#: seconds before the next address is tried while one is still connecting (RFC 8305's recommended 250 ms)
HAPPY_EYEBALLS_DELAY = 0.25
#: a deadline this close is due (the loop's timers may fire that much early: uvloop's count whole milliseconds)
_EARLY = 0.001

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
#: a caller waiting for room: its host, whether it needs a new connection, and what it will be given
Waiter = tuple[Key, bool, "asyncio.Future[Conn | None]"]
CLOSED = "the transport is closed"
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV

_tls_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """The TLS context of every https connection (making one costs ~30 ms: not at import)."""
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


class Pool:
    """Open connections per ``(scheme, host, port)``, and callers waiting for one."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, limit: int, limit_per_host: int, connect_timeout: float
    ) -> None:
        self.loop = loop
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.connect_timeout = connect_timeout
        self.open = 0  # connections open or being opened (idle ones too)
        self.per_host: dict[Key, int] = {}
        self.idle: dict[Key, list[Conn]] = {}  # oldest first (closed ones are skipped when met)
        self.conns: set[Conn] = set()
        self.waiters: deque[Waiter] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.dns: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}
        self.resolving: dict[tuple[str, int], asyncio.Task[list[AddrInfo]]] = {}
        self.connecting: set[asyncio.Task[Conn]] = set()
        self.closed = False
        #: the thread running ``loop`` when last seen (the backend's cheap check that it runs the caller's loop)
        self.thread = get_ident()
        # requests' deadlines: (when, tie-breaker, connection), the earliest first; entries whose connection no
        # longer has that deadline are dropped when met (or when they outnumber the live ones)
        self.deadlines: list[tuple[float, int, Conn]] = []
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.deadline_at = float("inf")
        self._order = itertools.count()

    # -- lending -----------------------------------------------------------------------------------------
    async def acquire(self, t: Target, deadline: float | None, fresh: bool = False) -> Conn:
        """A connection to ``t`` for one exchange: an idle one (unless ``fresh``), else a new one."""
        key = t.key
        if not fresh:
            conn = self.take(key)
            if conn is not None:
                return conn
        if self.closed:
            raise ConnectionLost(CLOSED)
        if self._room(key):
            self._reserve(key)
        else:
            conn_or_slot = await self._wait(key, fresh, deadline)
            if conn_or_slot is not None:
                return conn_or_slot
        try:
            return await self._connect(t, deadline)
        except BaseException:
            self._unreserve(key)
            raise

    def take(self, key: Key) -> Conn | None:
        """An idle connection to ``key`` (the most recent), if there is one (closed ones met are dropped)."""
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    def _full(self, key: Key) -> bool:
        return bool(self.limit_per_host) and self.per_host.get(key, 0) >= self.limit_per_host

    def _room(self, key: Key) -> bool:
        if self._full(key):
            return False
        if self.limit and self.open >= self.limit:
            return self._evict()
        return True

    def _evict(self) -> bool:
        """Close the least recently used idle connection (to make room under ``limit``)."""
        oldest: Conn | None = None
        for conns in self.idle.values():
            first = next((c for c in conns if c.alive), None)
            if first is not None and (oldest is None or first.since < oldest.since):
                oldest = first
        if oldest is None:
            return False
        oldest.close(grant=False)
        return True

    def _reserve(self, key: Key) -> None:
        self.open += 1
        self.per_host[key] = self.per_host.get(key, 0) + 1

    def _unreserve(self, key: Key, grant: bool = True) -> None:
        self.open -= 1
        left = self.per_host[key] - 1
        if left:
            self.per_host[key] = left
        else:
            del self.per_host[key]
        if grant and self.waiters:
            self._grant()

    async def _wait(self, key: Key, fresh: bool, deadline: float | None) -> Conn | None:
        """Wait in line: a connection handed over (``Conn``; never to a ``fresh`` caller), or room reserved for a new
        one (``None``)."""
        fut: asyncio.Future[Conn | None] = self.loop.create_future()
        waiter = (key, fresh, fut)
        self.waiters.append(waiter)
        try:
            if deadline is None:
                return await fut
            async with asyncio.timeout_at(deadline):
                return await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                got = fut.result()
                if got is None:
                    self._unreserve(key)
                else:
                    self.put(got)
            else:
                fut.cancel()
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def _grant(self) -> None:
        """Give freed room to the callers waiting for it, first come first served; a caller whose host is at
        ``limit_per_host`` is passed over, not in the way of those behind it."""
        waiters = self.waiters
        i = 0
        while i < len(waiters):
            key, _, fut = waiters[i]
            if fut.done():
                del waiters[i]
            elif self._full(key):
                i += 1
            elif self.limit and self.open >= self.limit and not self._evict():
                return  # no room under the global limit, for anyone
            else:
                del waiters[i]
                self._reserve(key)
                fut.set_result(None)

    def put(self, conn: Conn) -> None:
        """An idle connection: to the first caller waiting for its host, else into the pool. When that caller needs
        a new connection (its request met a dead one), this one is closed to make room for it."""
        if self.closed or not conn.usable:
            conn.close()
            return
        key = conn.key
        waiters = self.waiters
        if waiters:
            for i, (k, fresh, fut) in enumerate(waiters):
                if k == key and not fut.done():
                    if fresh:
                        conn.close()  # (its room goes to the waiters, this one first)
                        return
                    del waiters[i]
                    fut.set_result(conn)
                    return
        conn.since = now = self.loop.time()
        conns = self.idle.get(key)
        if conns is None:
            conns = self.idle[key] = []
        conns.append(conn)
        if self.sweeper is None:
            self.sweeper = self.loop.call_at(now + KEEPALIVE, self._sweep)
        if waiters:  # callers for other hosts, waiting for room: this idle connection may make it
            self._grant()

    def forget(self, conn: Conn, grant: bool = True) -> None:
        """A connection closed: its room is free."""
        self.conns.discard(conn)
        self._unreserve(conn.key, grant)

    def _sweep(self) -> None:
        self.sweeper = None
        cutoff = self.loop.time() - KEEPALIVE
        first: float | None = None
        for key, conns in list(self.idle.items()):
            kept = []
            for c in conns:
                if not c.alive:
                    continue
                if c.since <= cutoff:
                    c.close()
                else:
                    kept.append(c)
            if kept:
                self.idle[key] = kept
                first = kept[0].since if first is None else min(first, kept[0].since)
            else:
                del self.idle[key]
        if first is not None:
            self.sweeper = self.loop.call_at(first + KEEPALIVE, self._sweep)

    # -- deadlines ---------------------------------------------------------------------------------------
    def watch(self, conn: Conn, deadline: float) -> None:
        """``conn``'s exchange times out at ``deadline`` (unless ``conn.deadline`` is cleared before)."""
        conn.deadline = deadline
        heap = self.deadlines
        heappush(heap, (deadline, next(self._order), conn))
        if deadline < self.deadline_at:
            if self.deadline_timer is not None:
                self.deadline_timer.cancel()
            self.deadline_at = deadline
            self.deadline_timer = self.loop.call_at(deadline, self._expire)
        elif len(heap) > 64 + 2 * len(self.conns):
            # (ended exchanges' entries, most of them: kept no longer than the live ones, whatever the timeouts)
            heap[:] = [e for e in heap if e[2].deadline == e[0]]
            heapify(heap)

    def _expire(self) -> None:
        self.deadline_timer = None
        self.deadline_at = float("inf")
        heap = self.deadlines
        due = self.loop.time() + _EARLY
        while heap:
            when, _, conn = heap[0]
            if conn.deadline != when:
                heappop(heap)  # (that exchange ended)
            elif when <= due:
                heappop(heap)
                conn.expire()
            else:
                self.deadline_at = when
                self.deadline_timer = self.loop.call_at(when, self._expire)
                return

    def in_use(self) -> int:
        return self.open - sum(1 for conns in self.idle.values() for c in conns if c.alive)

    # -- connecting --------------------------------------------------------------------------------------
    async def _connect(self, t: Target, deadline: float | None) -> Conn:
        loop = self.loop
        limit = self.connect_timeout
        by_deadline = deadline is not None and deadline - loop.time() <= limit
        if deadline is not None:
            limit = min(limit, deadline - loop.time())
        current = asyncio.current_task()
        try:
            async with asyncio.timeout(limit):
                infos = await self._resolve(t)
                # in a task the pool's close() can cancel; awaited (not shielded): cancelling the caller cancels it
                task = loop.create_task(self._open(t, infos))
                self.connecting.add(task)
                before = current.cancelling() if current is not None else 0
                try:
                    conn = await task
                except asyncio.CancelledError:
                    if self.closed and task.cancelled() and (current is None or current.cancelling() == before):
                        raise ConnectionLost(CLOSED) from None
                    raise
                finally:
                    self.connecting.discard(task)
                if current is not None and current.cancelling() > before:
                    # the caller was cancelled while the connect ended anyway (aiohappyeyeballs' staggered race can
                    # swallow a cancellation): the cancellation stands, the connection goes
                    conn.transport.abort()
                    raise asyncio.CancelledError
        except TimeoutError:
            if by_deadline:
                raise
            raise ConnectTimedOut(self.connect_timeout) from None
        if conn.transport.is_closing():
            raise ConnectionLost("the connection was closed at once")
        if self.closed:  # (closed while this one connected: it must not outlive the pool)
            conn.transport.abort()
            raise ConnectionLost(CLOSED)
        conn.alive = True  # the room reserved for this attempt is the connection's now
        self.conns.add(conn)
        return conn

    async def _open(self, t: Target, infos: list[AddrInfo]) -> Conn:
        """A connected socket (happy eyeballs over ``infos``), then TLS when asked for, as a :class:`Conn`."""
        loop = self.loop
        key = t.key
        factory: Callable[[], Conn] = lambda: Conn(self, key)  # noqa: E731
        tls = _tls() if t.tls else None
        try:
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop
            )
        except RuntimeError as exc:  # (uvloop's way of failing a connect)
            raise OSError(str(exc)) from exc
        try:
            _, conn = await loop.create_connection(factory, sock=sock, ssl=tls, server_hostname=t.host if tls else None)
        except BaseException:
            sock.close()
            raise
        return conn

    async def _resolve(self, t: Target) -> list[AddrInfo]:
        name = (t.host, t.port)
        hit = self.dns.get(name)
        if hit is not None and hit[0] > self.loop.time():
            return hit[1]
        if t.literal:  # (an address: no lookup, nothing to wait for)
            return self._found(name, socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM, flags=_NUMERIC))
        task = self.resolving.get(name)
        if task is None:
            task = self.resolving[name] = self.loop.create_task(self._lookup(*name))
            task.add_done_callback(lambda done: self._resolved(name, done))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.closed and task.cancelled() and (current is None or not current.cancelling()):
                raise ConnectionLost(CLOSED) from None  # (closed while the name was looked up)
            raise

    async def _lookup(self, host: str, port: int) -> list[AddrInfo]:
        return self._found((host, port), await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))

    def _found(self, name: tuple[str, int], infos: list[Any]) -> list[AddrInfo]:
        addresses: list[AddrInfo] = list(dict.fromkeys((int(f), int(ty), p, "", sa) for f, ty, p, _, sa in infos))
        self.dns[name] = (self.loop.time() + DNS_TTL, addresses)
        return addresses

    def _resolved(self, name: tuple[str, int], task: asyncio.Task[Any]) -> None:
        self.resolving.pop(name, None)
        if not task.cancelled():
            task.exception()  # (retrieved: every caller may have gone)

    def close(self) -> None:
        self.closed = True
        for conn in list(self.conns):
            conn.close(grant=False)
        self.idle.clear()
        for _, _, fut in self.waiters:
            if not fut.done():
                fut.set_exception(ConnectionLost(CLOSED))
        self.waiters.clear()
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        self.deadline_at = float("inf")
        self.deadlines.clear()
        for task in [*self.resolving.values(), *self.connecting]:
            task.cancel()
