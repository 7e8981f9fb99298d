"""Shared machinery of the provider simulators.

:class:`BaseSimulator` owns an aiohttp application on an ephemeral loopback port, either in a daemon
thread with its own event loop (``start``/``stop``, ``with``) or inside the running loop
(``astart``/``astop``, ``async with``). It records requests, checks credentials and hands each model request
the next scripted :class:`~modelway.testing.script.Reply` or :class:`~modelway.testing.script.Fault`, which
:mod:`modelway.testing.faults` plays; the provider subclasses only render bodies and stream events.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Self

import orjson
from aiohttp import web

from ._common import REC, RID, RecordedRequest, Stream
from ._exchange import Exchange
from .faults import play
from .script import Fault, Reply

__all__ = ["BaseSimulator"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Item = Reply | Fault


_ids = itertools.count(1)


class BaseSimulator:
    """The provider-independent part of a simulator (see :mod:`modelway.testing`)."""

    #: provider name (for messages)
    provider: ClassVar[str] = ""
    #: path prefix of the API, appended to :attr:`url` to give :attr:`base_url`
    base_path: ClassVar[str] = ""
    default_api_key: ClassVar[str] = "sk-test"
    sse_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default_reply: Reply | None = None,
        check_auth: bool = True,
        record: bool = True,
        embedding_dim: int = 8,
        host: str = "127.0.0.1",
        port: int = 0,
        script: Callable[[int], Item | None] | None = None,
    ) -> None:
        self.api_key = api_key if api_key is not None else self.default_api_key
        self.default_reply = default_reply or Reply()
        #: what to answer the n-th model request (counted from 1) that finds nothing queued; ``None`` from it (or no
        #: script): the default reply. The demo's fault modes are scripts (:mod:`modelway.testing.demo`).
        self.script = script
        #: model requests answered from the script or the default reply so far
        self.served = 0
        self.check_auth = check_auth
        self.record = record
        self.embedding_dim = embedding_dim
        self.host = host
        self._want_port = port
        self._lock = threading.Lock()
        self._queue: deque[Item] = deque()
        self._requests: list[RecordedRequest] = []
        #: ``time.monotonic()`` of each answer the client abandoned (its headers or a write found the connection
        #: gone, or the client left during a :meth:`Fault.stall`), one per answer
        self.disconnects: list[float] = []
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- public API

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() or astart() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``"""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client uses as base URL (:attr:`url` + the provider's API path)."""
        return self.url + self.base_path

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._requests:
                raise LookupError("no request recorded")
            return self._requests[-1]

    @property
    def pending(self) -> int:
        """How many scripted items are still queued."""
        with self._lock:
            return len(self._queue)

    def push(self, *items: Item) -> Self:
        """Queue replies or faults; each model request takes the next one."""
        for item in items:
            if not isinstance(item, Reply | Fault):
                raise TypeError(f"expected Reply or Fault, got {type(item).__name__}")
        with self._lock:
            self._queue.extend(items)
        return self

    def clear(self) -> None:
        """Drop queued items and recorded requests."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self.disconnects.clear()

    def start(self) -> Self:
        """Serve from a daemon thread with its own event loop; returns once the port is open."""
        if self.running or self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{type(self).__name__}-{next(_ids)}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        self._loop = loop
        return self

    def stop(self) -> None:
        """Stop the server started by :meth:`start` (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            if self.running:
                raise RuntimeError("started with astart(): use astop()")
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._loop = self._thread = None

    async def astart(self) -> Self:
        """Serve inside the running event loop."""
        if self.running or self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        await self._serve()
        return self

    async def astop(self) -> None:
        """Stop the server started by :meth:`astart` (idempotent)."""
        if self._thread is not None:
            raise RuntimeError("started with start(): use stop()")
        await self._shutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "stopped"
        return f"<{type(self).__name__} {where}>"

    # ----------------------------------------------------------------------------- server lifecycle

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.on_response_prepare.append(self._on_prepare)
        self._add_routes(app)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self._want_port))
            sock.listen(1024)
            sock.setblocking(False)
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner, self._sock, self._port = runner, sock, sock.getsockname()[1]

    async def _shutdown(self) -> None:
        runner, sock = self._runner, self._sock
        self._runner = self._sock = None
        self._port = None
        if runner is not None:
            await runner.cleanup()
        if sock is not None:
            sock.close()

    # ----------------------------------------------------------------------------- request plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[RID] = self._request_id()
        body = await request.read()
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        rec = RecordedRequest(request.method, request.path, headers, body, parsed, dict(request.query))
        request[REC] = rec
        if self.record:
            with self._lock:
                self._requests.append(rec)
        if self.check_auth:
            denied = self._authenticate(request, rec)
            if denied is not None:
                return denied
        return await handler(request)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        rid = request.get(RID)
        if rid and "x-request-id" not in response.headers:
            response.headers["x-request-id"] = rid

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return self.error_response(request, 404, message=f"no route {request.method} {request.path}")

    def _next_item(self) -> Item:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            self.served += 1
            n = self.served
        item = self.script(n) if self.script is not None else None
        return item or self.default_reply

    def _bearer(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else None

    def error_response(
        self,
        request: web.Request,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """An error answer in the provider's own shape."""
        body = self._error_body(status, code, message, request[RID])
        resp = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
        if retry_after is not None:
            resp.headers["Retry-After"] = f"{retry_after:g}"
        resp.headers.update(headers or {})
        return resp

    async def _answer(
        self,
        request: web.Request,
        *,
        stream: bool,
        render: Callable[[Reply], bytes],
        render_stream: Callable[[Reply], Stream],
        prelude: bytes = b"",
    ) -> web.StreamResponse:
        """Serve the next scripted item for a model request (``render``/``render_stream`` build the
        provider's non-stream body / stream events from a reply; ``prelude`` goes before either)."""
        item = self._next_item()
        reply = (item.reply if isinstance(item, Fault) else item) or self.default_reply
        return await play(Exchange(self, request, stream, render, render_stream, prelude, reply), item)

    # ----------------------------------------------------------------------------- provider hooks

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _request_id(self) -> str:
        return secrets.token_hex(16)

    def _authenticate(self, request: web.Request, rec: RecordedRequest) -> web.Response | None:
        """Default: ``Authorization: Bearer <api_key>``; a 401 in the provider's shape otherwise."""
        token = self._bearer(request)
        if token is not None and secrets.compare_digest(token.encode(), self.api_key.encode()):
            rec.auth_kind = "key"
            return None
        return self.error_response(request, 401, message=self._auth_message(token))

    def _auth_message(self, token: str | None) -> str | None:
        return None

    def _error_body(self, status: int, code: str | None, message: str | None, rid: str) -> dict[str, Any]:
        raise NotImplementedError

    def _stream_error(self, fault: Fault, rid: str, index: int) -> bytes:
        raise NotImplementedError

    def _malformed_event(self, index: int) -> bytes:
        return b"data: {broken\n\n"
