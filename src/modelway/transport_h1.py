"""The lean HTTP/1.1 client behind :class:`~modelway.transport.Transport` (``backend="h1"``, the default): asyncio
protocols and httptools' response parser, a keep-alive pool, nothing per request that is not needed.

- :class:`_Pool`: connections per ``(scheme, host, port)``, reused most recent first; ``limit`` on all open
  connections (idle ones included: the least recently used idle one of another host is closed to make room) and
  ``limit_per_host``; callers wait for a slot in FIFO order. An idle connection is closed after
  :data:`KEEPALIVE` seconds, and dropped as soon as the server closes it. Names are resolved once per
  :data:`DNS_TTL`; https uses one ``ssl.create_default_context()``, made on first use.
- :class:`_Conn`: one connection and the answer it is reading. The request goes in one write (a body over
  :data:`BIG_BODY` in slices, under the transport's write flow control); the answer's head is bounded
  (:data:`MAX_HEAD` bytes, :data:`MAX_HEAD_LINES` lines), 1xx answers are skipped, the body is read by
  Content-Length, chunks or until close, and reading from the socket pauses while more than :data:`HIGH_WATER`
  bytes wait unread (a slow consumer does not make the gateway buffer a provider's stream). A connection goes
  back to the pool only when its answer was read to its end and the server keeps it alive; a request that meets
  a pooled connection the server had just closed (lost before any byte of the answer) is sent again, once, on a
  new connection.
- Timeouts: one timer per request (the whole of :meth:`H1Backend.send`; a stream's wait for its head), never one
  per read; a stream's gaps between reads are the idle watch's (:mod:`modelway.transport`).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

import httptools

from .errors import ConfigError, ModelwayError
from .inflate import ACCEPT_ENCODING
from .providers.base import HTTPRequest
from .transport import (
    OTHER_LOOP,
    BadAnswer,
    ConnectionLost,
    MapError,
    Response,
    StreamResponse,
    TransportFailure,
    _IdleWatch,
    map_failure,
    read_capped,
    reason,
    refuse_redirect,
)

__all__ = ["H1Backend"]

#: seconds an idle pooled connection is kept (aiohttp's keep-alive default)
KEEPALIVE = 15.0
#: seconds a name's addresses are reused
DNS_TTL = 300.0
#: bounds of an answer's head: its bytes, its header lines
MAX_HEAD = 64 * 1024
MAX_HEAD_LINES = 128
#: unread answer bytes past which reading from the socket pauses
HIGH_WATER = 256 * 1024
#: request bodies larger than this are written in slices of this size, waiting while the transport's buffer is full
BIG_BODY = 256 * 1024

# where a connection is in its exchange
_IDLE, _HEAD, _BODY, _DONE = 0, 1, 2, 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NOT_SENT = frozenset({"content-length", "transfer-encoding"})  # the transport frames the body itself
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"

Key = tuple[str, str, int]

_tls_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """The TLS context of every https connection (making one costs ~30 ms: not at import)."""
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


class BadURL(TransportFailure):
    pass


class _Target:
    """What a URL says about where and how to send (parsed once per URL)."""

    __slots__ = ("auth", "host", "host_line", "key", "literal", "path", "port", "tls")

    def __init__(self, url: str) -> None:
        if "\r" in url or "\n" in url or "\0" in url:
            raise ConfigError(
                "refusing to send a request whose URL holds a line break or NUL (header injection): check the "
                "deployment's base URL"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
        except ValueError:
            raise BadURL("the provider's URL is not valid") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not host:
            raise BadURL("the provider's URL is not an http or https URL with a host")
        try:
            host.encode("ascii")
        except UnicodeEncodeError:
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise BadURL("the provider's URL has a host name that is not valid") from None
        self.tls = scheme == "https"
        self.port = port if port is not None else _DEFAULT_PORTS[scheme]
        self.host = host
        self.key: Key = (scheme, host, self.port)
        self.literal = _is_ip(host)
        named = f"[{host}]" if ":" in host else host
        self.host_line = f"Host: {named}\r\n" if port in (None, _DEFAULT_PORTS[scheme]) else f"Host: {named}:{port}\r\n"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if not (path.isascii() and path.isprintable()) or " " in path:
            path = quote(path, safe=_URL_SAFE)  # (as yarl does: spaces and non-ASCII are percent-encoded)
        self.path = path
        self.auth: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.auth = f"Authorization: Basic {base64.b64encode(pair).decode()}\r\n"


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _head(req: HTTPRequest, t: _Target) -> bytes:
    """The request's head (and its body when small, in the same bytes): our headers unless the request has its own."""
    have: set[str] = set()
    lines: list[str] = []
    for k, v in req.headers.items():
        lk = k.lower()
        if lk in _NOT_SENT:
            continue
        have.add(lk)
        lines.append(f"{k}: {v}\r\n")
    theirs = "".join(lines)
    n = len(lines)
    if theirs.count("\n") != n or theirs.count("\r") != n or "\0" in theirs or not req.method.isalpha():
        raise ConfigError(_injection(req))
    parts = [req.method, " ", t.path, " HTTP/1.1\r\n"]
    if "host" not in have:
        parts.append(t.host_line)
    if t.auth is not None and "authorization" not in have:
        parts.append(t.auth)
    if "user-agent" not in have:
        parts.append("User-Agent: modelway\r\n")
    if "accept" not in have:
        parts.append("Accept: */*\r\n")
    if "accept-encoding" not in have:
        parts.append(_ACCEPT_ENCODING)
    parts.append(theirs)
    body = req.body
    if body is not None:
        if "content-type" not in have:
            parts.append("Content-Type: application/octet-stream\r\n")
        parts.append(f"Content-Length: {len(body)}\r\n\r\n")
    elif req.method in _BODY_METHODS:
        parts.append("Content-Length: 0\r\n\r\n")
    else:
        parts.append("\r\n")
    return "".join(parts).encode()


_ACCEPT_ENCODING = f"Accept-Encoding: {ACCEPT_ENCODING}\r\n"


def _injection(req: HTTPRequest) -> str:
    if not req.method.isalpha():
        return f"refusing to send a request with the method {req.method[:20]!r}"
    bad = next((k for k, v in req.headers.items() if any(c in k + v for c in "\r\n\0")), "?")
    return (
        f"refusing to send the header {bad[:60]!r}: its name or value holds a line break or NUL (header "
        "injection); check the deployment's key and headers"
    )


class _Conn(asyncio.Protocol):
    """One connection to a provider, and the answer it is reading (as :class:`~modelway.transport.Body`)."""

    __slots__ = (
        "alive",
        "buf",
        "buffered",
        "close_delimited",
        "exc",
        "fed",
        "got",
        "head_only",
        "headers",
        "keep_alive",
        "key",
        "lines",
        "loop",
        "lost",
        "parser",
        "phase",
        "pool",
        "read_paused",
        "reused",
        "since",
        "size",
        "status",
        "timer",
        "transport",
        "waiter",
        "write_paused",
        "written",
    )

    def __init__(self, pool: _Pool, key: Key) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.key = key
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.parser = httptools.HttpResponseParser(self)
        self.alive = False  # counted in the pool (from the moment it connected until it closes)
        self.lost = False
        self.reused = False
        self.phase = _IDLE
        self.since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.lines = self.fed = self.size = self.buffered = 0
        self.buf: list[bytes] = []
        self.exc: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.got = self.keep_alive = self.written = self.head_only = self.close_delimited = False
        self.read_paused = self.write_paused = False

    # -- the request -------------------------------------------------------------------------------------
    async def exchange(self, head: bytes, body: bytes | None, deadline: float | None, head_only: bool) -> None:
        """Send the request; return when the answer's head has arrived (1xx answers skipped)."""
        self.phase = _HEAD
        self.status = self.lines = self.fed = self.size = 0
        self.headers = {}
        self.exc = None
        self.got = self.keep_alive = self.written = False
        self.head_only = head_only
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self._deadline)
        if body is None:
            self.transport.write(head)
            self.written = True
        elif len(body) <= BIG_BODY:
            self.transport.write(head + body)
            self.written = True
        else:
            self.transport.write(head)
            await self._write_big(body)
        while self.phase == _HEAD:
            if self.exc is not None:
                raise self.exc
            waiter = self.waiter = self.loop.create_future()
            await waiter

    async def _write_big(self, body: bytes) -> None:
        view = memoryview(body)
        write = self.transport.write
        for i in range(0, len(body), BIG_BODY):
            write(view[i : i + BIG_BODY])
            while self.write_paused or self.exc is not None:
                if self.exc is not None:
                    raise self.exc
                if self.phase != _HEAD:
                    return  # the answer came before the request ended: stop (the connection is not reused)
                waiter = self.waiter = self.loop.create_future()
                await waiter
            if self.phase != _HEAD:
                return
        self.written = True

    def disarm(self) -> None:
        """The head arrived: no more deadline (a stream's gaps are the idle watch's)."""
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def _deadline(self) -> None:
        self.timer = None
        if self.phase in (_HEAD, _BODY):
            self._fail(TimeoutError())
            self.drop()

    # -- the answer, as a Body ---------------------------------------------------------------------------
    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    async def read_some(self) -> bytes:
        buf = self.buf
        while not buf:
            if self.phase == _DONE:
                return b""
            if self.exc is not None:
                raise self.exc
            if self.phase != _BODY:
                raise ConnectionLost("the answer was already read")
            waiter = self.waiter = self.loop.create_future()
            await waiter
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        self.buffered = 0
        if self.read_paused:
            self.read_paused = False
            if self.alive:
                self.transport.resume_reading()
        return data

    def at_eof(self) -> bool:
        return self.phase == _DONE and not self.buf

    def release(self) -> None:
        """Back to the pool if the answer was read to its end and the server keeps the connection, else closed."""
        if not self.alive or self.phase == _IDLE:
            return
        if self.phase != _DONE or self.buf or not self.keep_alive or self.exc is not None:
            self.drop()
            return
        self.disarm()
        self.phase = _IDLE
        self.reused = True
        self.pool.put(self)

    def close(self) -> None:
        self.drop()

    def drop(self, grant: bool = True) -> None:
        """Close the connection now; a pending read fails."""
        self.disarm()
        if self.alive:
            self.alive = False
            self.pool.forget(self, grant)
            self.transport.abort()
        if self.phase in (_HEAD, _BODY):
            self._fail(ConnectionLost("the connection was closed"))

    def _fail(self, exc: BaseException) -> None:
        if self.exc is None:
            self.exc = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _bad(self, message: str) -> None:
        self._fail(BadAnswer(message))
        self.drop()

    # -- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports do not derive from it)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase == _HEAD:
            self.got = True
            self.fed += len(data)
        elif phase != _BODY:
            # bytes when no answer is due (while idle, or past the answer's end): the connection is not usable
            self.keep_alive = False
            if phase == _IDLE:
                self.drop()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad("the provider switched to another protocol")
        except httptools.HttpParserError as exc:
            if self.exc is not None:  # (a bound broken in a callback: already failed)
                return
            if self.phase == _DONE:
                self.keep_alive = False  # garbage after a whole answer: the answer stands, the connection goes
                return
            self._bad(str(exc) or type(exc).__name__)
        else:
            if self.buf:
                if self.buffered > HIGH_WATER and not self.read_paused and self.alive:
                    self.read_paused = True  # until the reader takes what is here
                    self.transport.pause_reading()
                self._wake()
            elif self.phase == _HEAD and self.fed > MAX_HEAD:
                self._bad(f"the answer's head is larger than {MAX_HEAD} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.alive:
            self.alive = False
            self.pool.forget(self)
        self.disarm()
        phase = self.phase
        if phase == _BODY and self.close_delimited and exc is None and self.exc is None:
            self.phase = _DONE  # a body without a length ends when the connection does
            self.keep_alive = False
            self._wake()
        elif phase == _HEAD:
            why = reason(exc) if exc is not None else "the connection was closed before an answer"
            # a pooled connection closed (FIN) before any byte of the answer: the server had closed it while
            # idle, the request crossing its FIN. A reset is not taken for that: a server that reads a request
            # and resets has seen it, and it is not sent twice
            self._fail(ConnectionLost(why, stale=self.reused and not self.got and exc is None))
        elif phase == _BODY:
            why = reason(exc) if exc is not None else "the connection was closed before the end of the body"
            self._fail(ConnectionLost(why))
        else:
            self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # -- httptools callbacks -----------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if self.phase != _HEAD:
            return
        self.lines += 1
        if self.lines > MAX_HEAD_LINES:
            self._bad(f"the answer has more than {MAX_HEAD_LINES} header lines")
            raise BadAnswer("too many header lines")
        self.size += len(name) + len(value)
        if self.size > MAX_HEAD:
            self._bad(f"the answer's head is larger than {MAX_HEAD} bytes")
            raise BadAnswer("head too large")
        self.headers[name.decode("latin-1").lower()] = value.decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        if self.phase != _HEAD:
            self.keep_alive = False  # another answer after this one: nothing was asked for it
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.headers = {}
            self.lines = self.size = 0
            return
        self.status = status
        self.phase = _BODY
        headers = self.headers
        self.close_delimited = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        if self.head_only:
            self.phase = _DONE
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.phase == _BODY:  # (the reader is woken once per network read: in data_received)
            self.buf.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.phase != _BODY:
            return
        self.keep_alive = self.written and self.parser.should_keep_alive()
        self.phase = _DONE
        self._wake()


class _Pool:
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
        self.idle: dict[Key, list[_Conn]] = {}  # oldest first (closed ones are skipped when met)
        self.conns: set[_Conn] = set()
        self.waiters: deque[tuple[Key, asyncio.Future[_Conn | None]]] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.dns: dict[tuple[str, int], tuple[float, list[tuple[int, str, int]]]] = {}
        self.resolving: dict[tuple[str, int], asyncio.Task[list[tuple[int, str, int]]]] = {}
        self.closed = False

    async def acquire(self, t: _Target, deadline: float | None, fresh: bool = False) -> _Conn:
        """A connection to ``t`` for one exchange: an idle one (unless ``fresh``), else a new one."""
        key = t.key
        if not fresh:
            idle = self.idle.get(key)
            while idle:
                conn = idle.pop()
                if conn.alive:
                    if not conn.transport.is_closing():
                        return conn
                    conn.drop()
        if self.closed:
            raise ConnectionLost("the transport is closed")
        if self._room(key):
            self._reserve(key)
        else:
            conn_or_slot = await self._wait(key, deadline)
            if conn_or_slot is not None:
                return conn_or_slot
        try:
            return await self._connect(t, deadline)
        except BaseException:
            self._unreserve(key)
            raise

    def _room(self, key: Key) -> bool:
        if self.limit_per_host and self.per_host.get(key, 0) >= self.limit_per_host:
            return False
        if self.limit and self.open >= self.limit:
            return self._evict()
        return True

    def _evict(self) -> bool:
        """Close the least recently used idle connection (to make room under ``limit``)."""
        oldest: _Conn | None = None
        for conns in self.idle.values():
            first = next((c for c in conns if c.alive), None)
            if first is not None and (oldest is None or first.since < oldest.since):
                oldest = first
        if oldest is None:
            return False
        oldest.drop(grant=False)
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

    async def _wait(self, key: Key, deadline: float | None) -> _Conn | None:
        """Wait in line: a connection handed over (``_Conn``), or a slot reserved for a new one (``None``)."""
        fut: asyncio.Future[_Conn | None] = self.loop.create_future()
        self.waiters.append((key, fut))
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
                    self.waiters.remove((key, fut))
                except ValueError:
                    pass
            raise

    def _grant(self) -> None:
        """Give freed room to the callers waiting for it, first come first served."""
        waiters = self.waiters
        i = 0
        while i < len(waiters):
            key, fut = waiters[i]
            if fut.done():
                del waiters[i]
            elif self._room(key):
                del waiters[i]
                self._reserve(key)
                fut.set_result(None)
            elif self.limit and self.open >= self.limit:
                return  # no room for anyone
            else:
                i += 1

    def put(self, conn: _Conn) -> None:
        """An idle connection: to a caller waiting for its host, else into the pool."""
        if self.closed:
            conn.drop()
            return
        key = conn.key
        for i, (k, fut) in enumerate(self.waiters):
            if k == key and not fut.done():
                del self.waiters[i]
                fut.set_result(conn)
                return
        conn.since = now = self.loop.time()
        conns = self.idle.get(key)
        if conns is None:
            conns = self.idle[key] = []
        conns.append(conn)
        if self.sweeper is None:
            self.sweeper = self.loop.call_at(now + KEEPALIVE, self._sweep)
        if self.waiters:  # callers for other hosts, waiting for room: this idle connection may make it
            self._grant()

    def forget(self, conn: _Conn, grant: bool = True) -> None:
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
                    c.drop()
                else:
                    kept.append(c)
            if kept:
                self.idle[key] = kept
                first = kept[0].since if first is None else min(first, kept[0].since)
            else:
                del self.idle[key]
        if first is not None:
            self.sweeper = self.loop.call_at(first + KEEPALIVE, self._sweep)

    async def _connect(self, t: _Target, deadline: float | None) -> _Conn:
        loop = self.loop
        limit = self.connect_timeout
        if deadline is not None:
            limit = min(limit, deadline - loop.time())
        key = t.key
        factory: Callable[[], _Conn] = lambda: _Conn(self, key)  # noqa: E731
        tls = _tls() if t.tls else None
        async with asyncio.timeout(limit):
            addresses = [(0, t.host, t.port)] if t.literal else await self._resolve(t.host, t.port)
            error: OSError | None = None
            for family, host, port in addresses:
                try:
                    _, conn = await loop.create_connection(
                        factory, host, port, family=family, ssl=tls, server_hostname=t.host if tls else None
                    )
                except OSError as exc:
                    error = exc
                    continue
                if conn.lost:
                    raise ConnectionLost("the connection was closed at once")
                conn.alive = True  # the room reserved for this attempt is the connection's now
                self.conns.add(conn)
                return conn
            raise error or OSError("no address")

    async def _resolve(self, host: str, port: int) -> list[tuple[int, str, int]]:
        name = (host, port)
        hit = self.dns.get(name)
        if hit is not None and hit[0] > self.loop.time():
            return hit[1]
        task = self.resolving.get(name)
        if task is None:
            task = self.resolving[name] = self.loop.create_task(self._lookup(host, port))
            task.add_done_callback(lambda done: self._resolved(name, done))
        return await asyncio.shield(task)

    async def _lookup(self, host: str, port: int) -> list[tuple[int, str, int]]:
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys((int(family), str(sa[0]), int(sa[1])) for family, _, _, _, sa in infos))
        self.dns[(host, port)] = (self.loop.time() + DNS_TTL, addresses)
        return addresses

    def _resolved(self, name: tuple[str, int], task: asyncio.Task[Any]) -> None:
        self.resolving.pop(name, None)
        if not task.cancelled():
            task.exception()  # (retrieved: every caller may have gone)

    def close(self) -> None:
        self.closed = True
        for conn in list(self.conns):
            conn.drop(grant=False)
        self.idle.clear()
        for _, fut in self.waiters:
            if not fut.done():
                fut.set_exception(ConnectionLost("the transport is closed"))
        self.waiters.clear()
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for task in self.resolving.values():
            task.cancel()

    def in_use(self) -> int:
        return self.open - sum(1 for conns in self.idle.values() for c in conns if c.alive)


class H1Backend:
    """The lean client: :class:`~modelway.transport.Transport`'s default backend."""

    def __init__(
        self, limit: int, limit_per_host: int, connect_timeout: float, max_answer_bytes: int, watch: _IdleWatch
    ) -> None:
        self.max_answer_bytes = max_answer_bytes
        self._limits = (limit, limit_per_host, connect_timeout)
        self._watch = watch
        self._pool: _Pool | None = None
        self._targets: dict[str, _Target] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.failures: tuple[type[BaseException], ...] = (TimeoutError, OSError, TransportFailure)
        self.map: MapError = map_failure

    def _here(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and not pool.closed:
            if pool.loop is not loop:
                raise ConfigError(OTHER_LOOP)
            return pool
        self.loop = loop
        pool = self._pool = _Pool(loop, *self._limits)
        return pool

    def _target(self, url: str) -> _Target:
        t = self._targets.get(url)
        if t is None:
            if len(self._targets) >= 1024:
                self._targets.clear()
            t = self._targets[url] = _Target(url)
        return t

    async def _open(self, req: HTTPRequest, timeout: float | None, whole: bool) -> _Conn:
        """Send ``req``; the connection, once the answer's head arrived. Failures are our errors."""
        pool = self._here()
        try:
            t = self._target(req.url)
        except BadURL as exc:
            raise map_failure(exc, req.provider, reading=False) from None
        head = _head(req, t)
        deadline = pool.loop.time() + timeout if timeout else None
        fresh = False
        while True:
            try:
                conn = await pool.acquire(t, deadline, fresh)
            except ModelwayError:
                raise
            except self.failures as exc:
                raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
            try:
                await conn.exchange(head, req.body, deadline, req.method == "HEAD")
            except ConnectionLost as exc:
                conn.drop()
                if exc.stale and not fresh:
                    fresh = True  # a pooled connection the server had closed: once more, on a new one
                    continue
                raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
            except BaseException as exc:
                conn.drop()
                if isinstance(exc, self.failures):
                    raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
                raise
            if not whole:
                conn.disarm()
            return conn

    async def send(self, req: HTTPRequest, timeout: float | None) -> Response:
        conn = await self._open(req, timeout, True)
        try:
            refuse_redirect(conn, req.provider)
            body = await read_capped(conn, self.max_answer_bytes, req.provider)
        except ModelwayError:
            raise
        except TimeoutError as exc:  # the whole exchange's time ran out
            raise map_failure(exc, req.provider, reading=False, timeout=timeout) from exc
        except self.failures as exc:  # the answer started, then broke
            raise map_failure(exc, req.provider, reading=True, timeout=timeout) from exc
        finally:
            conn.release()
        return Response(conn.status, conn.headers, body)

    async def stream(self, req: HTTPRequest, timeout: float | None) -> StreamResponse:
        conn = await self._open(req, timeout, False)
        refuse_redirect(conn, req.provider)
        return StreamResponse(conn, req.provider, timeout, self._watch, self, self.max_answer_bytes)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and not pool.closed:
            pool.close()
            await asyncio.sleep(0)  # (the transports' connection_lost run now, on this loop)

    @property
    def closed(self) -> bool:
        return self._pool is None or self._pool.closed

    def in_use(self) -> int:
        return 0 if self._pool is None else self._pool.in_use()
