"""The gateway's own HTTP/1.1 server protocol: httptools on an asyncio ``Protocol``, speaking ASGI to the app.

It does what uvicorn's httptools protocol did for the gateway, with the bounds that one lacked built in, at a
fraction of the cost per request (BENCHMARKS.md, "Hot-path decisions"):

* a response's status line, headers and body (or first chunk) leave in **one** socket write (uvicorn writes the
  head as soon as ``http.response.start`` is sent, so every answer cost two ``send`` system calls);
* no timer per request or per read: one sweep per server checks every connection's deadline a few times per
  timeout (the header, body and keep-alive deadlines below);
* a handler that must stop when its client goes away registers a callback (:meth:`Cycle.on_disconnect`, found in
  the scope's ``extensions`` as ``modelway.disconnect``) instead of running a task that waits in ``receive()``;
* ``receive()`` hands over a body that has arrived without waiting on an event.

Bounds, each as the previous protocol had them (``server.*`` in the config, :class:`.protocol.HttpLimits`):

* the request line and headers may not be larger than ``max_header_bytes`` or have more than ``max_headers`` lines:
  past either the client gets ``431`` and the connection is closed (counted as they arrive, so a connection holds at
  most the limit plus one read of header bytes);
* a request has ``header_timeout`` seconds from its first byte (a new connection: from connecting; a pipelined
  request: from the end of the response before it) to finish its headers, else ``408`` (or, if it sent nothing, a
  plain close); ``body_timeout`` seconds from the end of its headers to finish its body, else ``408``, and the app
  waiting for the body sees the client gone;
* an idle keep-alive connection is closed after uvicorn's ``timeout_keep_alive`` (5 s by default); once the server
  shuts down, every answer says ``Connection: close``, and idle connections are left to their client or that
  timeout (:meth:`LeanHttpProtocol.shutdown`);
* llhttp refuses what request smuggling needs (``Content-Length`` with ``Transfer-Encoding``, conflicting lengths,
  bad chunk sizes): ``400`` and close; a request body is buffered only up to 64 KiB before reading pauses (the app
  bounds the whole body: ``server.max_body_bytes``, 413);
* writes respect the transport's flow control: a client that does not read makes ``send`` wait, not memory grow.

It plugs into uvicorn's ``Server`` (sockets, signals, workers, lifespan, the shutdown in :mod:`.runner`) through
uvicorn's ``http=`` protocol setting; ``server.http: uvicorn`` selects uvicorn's own protocol instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any
from urllib.parse import unquote

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

from .cycle import _STATUS, Cycle
from .protocol import DEFAULT_LIMITS, HeadersTooLarge, HttpLimits, refusal

__all__ = ["LeanHttpProtocol"]

log = logging.getLogger("modelway.server")

#: unread request body held before the connection stops reading (the app takes it with receive())
_BODY_HIGH_WATER = 64 * 1024

# what a connection is waiting for: its deadline's meaning
_IDLE, _HEADERS, _BODY, _BUSY = 0, 1, 2, 3

#: the ``asgi`` part of every scope (shared: nothing writes to it)
_ASGI = {"version": "3.0", "spec_version": "2.3"}
#: the common methods, decoded once
_METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")}


class _Sweep:
    """One recurring timer per server that checks every connection's deadline (instead of a timer per request)."""

    __slots__ = ("handle", "loop", "tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self.loop = loop
        self.tick = tick
        self.handle: asyncio.TimerHandle | None = None

    def ensure(self, connections: set[Any]) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.tick, self._run, connections)

    def _run(self, connections: set[Any]) -> None:
        self.handle = None
        now = self.loop.time()
        for conn in [c for c in connections if 0.0 < getattr(c, "deadline", 0.0) <= now]:
            conn.expired()
        if connections:
            self.handle = self.loop.call_later(self.tick, self._run, connections)


class LeanHttpProtocol(asyncio.Protocol):
    """See the module docstring. Limits come from ``config.http_limits`` (:class:`.runner.ServeConfig`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self._task_done = self.tasks.discard
        self.app_state = app_state
        self.root_path: str = config.root_path
        limits: HttpLimits = getattr(config, "http_limits", DEFAULT_LIMITS)
        self.limits = limits
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.keep_alive_timeout = float(config.timeout_keep_alive)
        self.sweep = _sweep_of(server_state, self.loop, limits, self.keep_alive_timeout)
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        #: what every request's scope on this connection shares (each request's scope is a copy, filled in)
        self.scope_base = self._scope_base()
        #: a write is paused until this future is done (the client does not read); reading paused; and why
        self.write_paused: asyncio.Future[None] | None = None
        self.read_paused = False
        #: when the connection's current wait must end (loop time; 0: no deadline), and what it waits for
        self.deadline = 0.0
        self.waiting = _HEADERS
        #: bytes of the request line and headers received so far (whole reads), and their exact size
        self.read = 0
        self.size = 0
        self.too_large = False
        #: the request being parsed, its parts, and the cycle answering (the newest one; pipelined ones queue)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_100 = False
        self.cycle: Cycle | None = None
        self.pipeline: deque[Cycle] = deque()
        #: the server is shutting down: every response from now on says ``Connection: close`` (:meth:`shutdown`)
        self.draining = False
        #: each status's line and the server's default headers, while the server's list is ``_starts_of``
        self._starts: dict[int, bytes] = {}
        self._starts_of: object = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]  # (uvloop's transports do not subclass asyncio's)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                self.server = _addr(sock.getsockname())
                self.client = _addr(sock.getpeername())
            except OSError:
                pass
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        self.scope_base = self._scope_base()
        self.sweep.ensure(self.connections)
        self.deadline = self.loop.time() + self.limits.header_timeout
        self.waiting = _IDLE  # nothing begun: a silent connection is closed without an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.deadline = 0.0
        cycle = self.cycle
        if cycle is not None:
            cycle.lost()
        for queued in self.pipeline:
            queued.lost()
        paused, self.write_paused = self.write_paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)
        self.parser = None  # type: ignore[assignment]

    def eof_received(self) -> None:
        pass  # the transport closes itself; a response being written still goes out (half-close)

    def pause_writing(self) -> None:
        if self.write_paused is None:
            self.write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        paused, self.write_paused = self.write_paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def data_received(self, data: bytes) -> None:
        waiting = self.waiting
        if waiting == _IDLE:
            self.waiting = waiting = _HEADERS
            self.deadline = self.loop.time() + self.limits.header_timeout
            self.read = 0
        if waiting == _HEADERS:
            self.read += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            log.debug("an upgrade request: not supported, answered as plain HTTP")
        except httptools.HttpParserError:
            if self.too_large:
                self._refuse_too_large()
            else:
                log.debug("invalid HTTP request received")
                self._refuse(400, "Bad Request", "invalid_http", "the request is not valid HTTP/1.1")
            return
        if self.waiting == _HEADERS and self.read > self.max_header_bytes and not self.transport.is_closing():
            self._refuse_too_large()

    # -- parser callbacks ----------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_100 = False
        self.size = 0
        if self.waiting != _HEADERS:  # a request after a response, in the same read as other bytes
            self.waiting = _HEADERS
            self.read = 0
            self.deadline = self.loop.time() + self.limits.header_timeout
        cycle = self.cycle
        if cycle is not None and not cycle.complete:
            self.deadline = 0.0  # pipelined: its clock starts when the response before it is done

    def on_url(self, url: bytes) -> None:
        self.size += len(url)
        if self.size > self.max_header_bytes:
            self.too_large = True
            raise HeadersTooLarge
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.size = size = self.size + len(name) + len(value) + 4
        headers = self.headers
        if size > self.max_header_bytes or len(headers) >= self.max_headers:
            self.too_large = True
            raise HeadersTooLarge
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which is not part of a value
        headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100 = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        raw_method: bytes = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        root_path = self.root_path
        scope = self.scope_base.copy()
        scope["http_version"] = version
        scope["method"] = method
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = raw_path
        scope["query_string"] = parsed.query or b""
        scope["headers"] = self.headers
        scope["state"] = self.app_state.copy()
        keep_alive = version != "1.0" and parser.should_keep_alive() and not self.draining
        cycle = Cycle(self, scope, keep_alive, self.expect_100, method == "HEAD")
        scope["extensions"] = {"modelway.disconnect": cycle}
        before = self.cycle
        self.cycle = cycle
        self.waiting = _BODY
        if before is not None and not before.complete:  # pipelined: it waits for the response before it
            self.deadline = 0.0
            self.pipeline.appendleft(cycle)
            self._pause_reading()
        else:
            self.deadline = self.loop.time() + self.limits.body_timeout
            task = self.loop.create_task(cycle.run(self.app))
            task.add_done_callback(self._task_done)
            self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.complete:
            return
        held = cycle.body
        cycle.body = held = held + body if held else body
        if len(held) > _BODY_HIGH_WATER:
            self._pause_reading()
        if cycle.waiter is not None:
            cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.complete:  # answered before its body ended (a 413): idle now
            self.waiting = _IDLE
            self.deadline = self.loop.time() + self.keep_alive_timeout
            return
        self.waiting = _BUSY
        self.deadline = 0.0
        cycle.more_body = False
        if cycle.waiter is not None:
            cycle.wake()

    # -- the cycle's life ----------------------------------------------------------------------------------------
    def _start(self, cycle: Cycle) -> None:
        task = self.loop.create_task(cycle.run(self.app))
        task.add_done_callback(self._task_done)
        self.tasks.add(task)

    def response_complete(self, cycle: Cycle) -> None:
        self.state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.read_paused:
            self._resume_reading()
        if self.pipeline:
            self._start(self.pipeline.pop())
            return
        waiting = self.waiting
        if waiting == _BUSY:
            self.waiting = _IDLE
            self.deadline = self.loop.time() + self.keep_alive_timeout
        elif waiting == _HEADERS:
            # a pipelined request whose headers were still coming: its clock starts now
            self.deadline = self.loop.time() + self.limits.header_timeout
        elif waiting == _BODY and self.deadline == 0.0:
            self.deadline = self.loop.time() + self.limits.body_timeout

    def resume_body(self) -> None:
        """The app takes the body: read on."""
        if self.read_paused:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def _responding(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.complete

    def _scope_base(self) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": _ASGI,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "root_path": self.root_path,
        }

    def head_start(self, status: int) -> bytes:
        """A response's status line and uvicorn's default headers (``date``, ``server``: the server renews the list
        every second), encoded; kept for each status until the list changes."""
        headers = self.state.default_headers
        starts = self._starts
        if self._starts_of is not headers:
            self._starts_of = headers
            self._starts = starts = {}
        start = starts.get(status)
        if start is None:
            start = _STATUS[status] + b"".join([b"%b: %b\r\n" % (name, value) for name, value in headers])
            starts[status] = start
        return start

    def shutdown(self) -> None:
        """The server is shutting down: each request that still arrives is answered with ``Connection: close``, then
        the connection closes; so is the request in flight, if its response has not begun. A connection is never
        closed when its client cannot know it will be: not while idle, nor after a response that began before the
        shutdown (its head said keep-alive). Such a connection is left to its client, or to its keep-alive timeout:
        closing it would race a request its client (a load balancer reusing its connections) may be sending at
        that moment, which would then fail without an answer, and a POST that was sent cannot be retried safely
        elsewhere."""
        self.draining = True
        cycle = self.cycle
        if cycle is not None and not cycle.started:
            cycle.keep_alive = False

    # -- deadlines and refusals ------------------------------------------------------------------------------------
    def expired(self) -> None:
        """The sweep found this connection's deadline passed."""
        self.deadline = 0.0
        if self.transport.is_closing():
            return
        waiting = self.waiting
        if waiting == _HEADERS:  # (a pipelined request's clock runs only once nothing is being answered)
            message = self.limits.late("headers")
            log.warning("refused a request: %s", message)
            self._refuse(408, "Request Timeout", "request_timeout", message)
        elif waiting == _BODY:
            message = self.limits.late("body")
            log.warning("refused a request: %s", message)
            cycle = self.cycle
            if cycle is not None and not cycle.started:
                # the app, waiting for the body, finds the client gone (and sends nothing); the client gets the 408
                cycle.lost()
                self._refuse(408, "Request Timeout", "request_timeout", message)
            else:
                self.transport.close()
        else:
            self.transport.close()  # idle: a keep-alive connection, or one that never sent a byte

    def _refuse_too_large(self) -> None:
        message = self.limits.too_large()
        log.warning("refused a request: %s", message)
        if self._responding():
            self.transport.close()
        else:
            self._refuse(431, "Request Header Fields Too Large", "headers_too_large", message)

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        self.deadline = 0.0
        self.transport.write(refusal(status, reason, code, message))
        self.transport.close()


def _addr(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return None


def _sweep_of(state: ServerState, loop: asyncio.AbstractEventLoop, limits: HttpLimits, keep_alive: float) -> _Sweep:
    sweep: _Sweep | None = getattr(state, "_modelway_sweep", None)
    if sweep is None or sweep.loop is not loop:
        shortest = min(limits.header_timeout, limits.body_timeout, keep_alive)
        sweep = _Sweep(loop, max(0.02, min(1.0, shortest / 5)))
        state._modelway_sweep = sweep  # type: ignore[attr-defined]
    return sweep
