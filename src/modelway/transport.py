"""The one shared async HTTP transport (aiohttp), and the mapping of transport failures to our errors.

Everything that touches the network goes through :class:`Transport`: one pooled ``aiohttp.ClientSession`` per
client (or per gateway process), shared by every provider and every key. Adapters never do I/O.

Answers are bounded: a whole answer (a JSON body, an error body, or everything a stream sends) may not decode to
more than ``max_answer_bytes``; past it the attempt fails with :class:`~modelway.errors.StreamError` and the
connection is closed. The size counted is the decoded one: compressed answers are decoded here, never more at once
than the bytes still allowed (:mod:`modelway.inflate`), so a gzip bomb is stopped at the cap, not after it has
filled memory.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

from .errors import ConfigError, ProviderConnectionError, ProviderError, ProviderTimeoutError, StreamError
from .inflate import ACCEPT_ENCODING, InflateError, Inflater
from .providers.base import HTTPRequest
from .sse import DEFAULT_MAX_EVENT_BYTES

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "Response", "StreamResponse", "Transport"]

#: the largest decoded answer accepted from a provider by default (a whole JSON body, or a whole stream)
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024


def _aiohttp() -> ModuleType:
    """aiohttp, imported on first use: importing it costs ~150 ms (it builds SSL contexts), which ``import modelway``
    should not pay."""
    import aiohttp

    return aiohttp


@dataclass(slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _IdleWatch:
    """One periodic sweep over every open stream's read gap, instead of a timer re-armed on every read (which
    aiohttp's ``sock_read`` timeout does: a measurable cost at thousands of events per second)."""

    __slots__ = ("streams", "task", "tick")

    def __init__(self) -> None:
        self.streams: set[StreamResponse] = set()
        self.task: asyncio.Task[None] | None = None
        self.tick = 1.0

    def add(self, stream: StreamResponse, idle: float) -> None:
        self.streams.add(stream)
        tick = max(0.02, idle / 4)  # a stalled stream is noticed within idle * 1.25
        running = self.task is not None and not self.task.done()
        if running and tick >= self.tick:
            return
        if running:
            assert self.task is not None
            self.task.cancel()  # it sleeps for the old, longer tick: start again at the new one
        self.tick = min(self.tick, tick) if running else tick
        self.task = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while self.streams:
            await asyncio.sleep(self.tick)
            now = loop.time()
            # only a reader waiting on an empty buffer counts: a slow consumer is not a silent provider
            for stream in [s for s in self.streams if s.waiting and now - s.last > s.idle]:
                stream.expire()

    async def aclose(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # let it finish here, not be destroyed pending with its loop


class StreamResponse:
    """An open streaming response. Iterate ``iter_bytes()``; ``aclose()`` releases the connection at once.

    With a timeout, a gap between reads longer than it ends the stream with
    :class:`~modelway.errors.ProviderTimeoutError`."""

    __slots__ = (
        "_aio",
        "_inflater",
        "_resp",
        "_watch",
        "expired",
        "headers",
        "idle",
        "last",
        "max_bytes",
        "provider",
        "status",
        "waiting",
    )

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        provider: str,
        timeout: float | None,
        watch: _IdleWatch,
        aio: ModuleType,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self._aio = aio
        self._inflater = _inflater(resp, provider)
        self.max_bytes = max_bytes
        self._resp = resp
        self.provider = provider
        self.status = resp.status
        self.headers: Mapping[str, str] = _lower(resp.headers)
        self.expired = False
        self.waiting = False
        self.last = asyncio.get_running_loop().time()
        self.idle = timeout or 0.0
        self._watch = watch
        if timeout:
            watch.add(self, timeout)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def expire(self) -> None:
        """The provider stopped sending: close the connection (a pending read fails, and says timeout)."""
        self.expired = True
        self._watch.streams.discard(self)
        self._resp.close()

    def _timed_out(self) -> ProviderTimeoutError:
        return ProviderTimeoutError(f"the provider stopped sending for {self.idle:g}s", provider=self.provider)

    async def read(self) -> bytes:
        """The whole (rest of the) body, at most ``max_bytes`` of it."""
        self.last = asyncio.get_running_loop().time()
        self.waiting = True
        try:
            return await read_capped(self._resp, self.max_bytes, self.provider)
        except _failures(self._aio) as exc:
            if self.expired:
                raise self._timed_out() from exc
            raise _map(exc, self.provider, reading=True) from exc
        finally:
            self.waiting = False

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        now = asyncio.get_running_loop().time
        left = self.max_bytes
        try:
            while True:
                self.last = now()
                self.waiting = True  # the idle clock runs only while we wait for the provider
                data = await content.readany()
                self.waiting = False
                if not data:
                    if self.expired:
                        raise self._timed_out()
                    if self._inflater is not None:
                        _finish(self._inflater, self.provider)
                    return
                if self._inflater is not None:
                    for piece in _inflate(self._inflater, data, left, self.provider):
                        left -= len(piece)
                        if left < 0:
                            raise answer_too_large(self.max_bytes, self.provider)
                        yield piece
                    continue
                left -= len(data)
                if left < 0:
                    raise answer_too_large(self.max_bytes, self.provider)
                yield data
        except _failures(self._aio) as exc:
            if self.expired:
                raise self._timed_out() from exc
            raise _map(exc, self.provider, reading=True) from exc

    async def aclose(self) -> None:
        """Release the connection: back to the pool if the body was read to its end, else closed at once
        (an unfinished upstream stream must not go back to the pool half-read, and must stop now)."""
        self._watch.streams.discard(self)
        resp = self._resp
        if resp.closed:
            return
        if resp.content.at_eof():
            resp.release()
        else:
            resp.close()

    async def __aenter__(self) -> StreamResponse:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Transport:
    """Pooled HTTP client. Create inside a running event loop, or let it create its session lazily on first use."""

    def __init__(
        self,
        *,
        limit: int = 4096,
        limit_per_host: int = 0,
        connect_timeout: float = 10.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        #: the largest decoded answer accepted (a JSON body, or a whole stream), and the largest single SSE event
        self.max_answer_bytes = max_answer_bytes
        self.max_event_bytes = max_event_bytes
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aio = _aiohttp()
        self._timeouts: dict[tuple[float | None, bool], aiohttp.ClientTimeout] = {}
        self._idle = _IdleWatch()
        self._failures = _failures(self._aio)

    def _get_session(self) -> aiohttp.ClientSession:
        s = self._session
        loop = asyncio.get_running_loop()
        if s is not None and not s.closed and self._loop is not loop:
            raise ConfigError(
                "this client's connections belong to another event loop (a client was used under one asyncio.run() "
                "and then under another): create the AsyncClient inside the loop that uses it, e.g. "
                "`async with modelway.AsyncClient() as client:` in your main coroutine"
            )
        if s is None or s.closed:
            self._loop = loop
            aiohttp = self._aio
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                ttl_dns_cache=300,
                enable_cleanup_closed=False,
            )
            s = self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # decoded here, bounded (modelway.inflate)
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "modelway", "Accept-Encoding": ACCEPT_ENCODING},
            )
        return s

    def _timeout(self, timeout: float | None, *, stream: bool) -> aiohttp.ClientTimeout:
        t = self._timeouts.get((timeout, stream))
        if t is None:
            t = self._timeouts[(timeout, stream)] = self._make_timeout(timeout, stream=stream)
        return t

    def _make_timeout(self, timeout: float | None, *, stream: bool) -> aiohttp.ClientTimeout:
        from aiohttp import ClientTimeout

        if timeout is None:
            return ClientTimeout(total=None, sock_connect=self._connect_timeout)
        if stream:
            # a stream may run long: the wait for its headers is bounded in stream(), every gap between reads by
            # the idle watch
            return ClientTimeout(total=None, sock_connect=min(timeout, self._connect_timeout))
        return ClientTimeout(total=timeout, sock_connect=min(timeout, self._connect_timeout))

    async def send(self, req: HTTPRequest, *, timeout: float | None = None) -> Response:
        """Send a request and read the whole body."""
        session = self._get_session()
        failures = self._failures
        try:
            async with session.request(
                req.method,
                req.url,
                headers=req.headers,
                data=_payload(req.body),
                timeout=self._timeout(timeout, stream=False),
                allow_redirects=False,
            ) as resp:
                _refuse_redirect(resp, req.provider)
                _watch_chunks(resp)
                try:
                    body = await read_capped(resp, self.max_answer_bytes, req.provider)
                except failures as exc:  # the answer started, then broke
                    raise _map(exc, req.provider, reading=True, timeout=timeout) from exc
                return Response(resp.status, _lower(resp.headers), body)
        except failures as exc:
            raise _map(exc, req.provider, reading=False, timeout=timeout) from exc

    async def stream(self, req: HTTPRequest, *, timeout: float | None = None) -> StreamResponse:
        """Send a request and return once the response headers arrived; the caller must ``aclose()`` it."""
        session = self._get_session()
        try:
            async with asyncio.timeout(timeout):
                resp = await session.request(
                    req.method,
                    req.url,
                    headers=req.headers,
                    data=_payload(req.body),
                    timeout=self._timeout(timeout, stream=True),
                    allow_redirects=False,
                )
        except self._failures as exc:
            raise _map(exc, req.provider, reading=False, timeout=timeout) from exc
        _refuse_redirect(resp, req.provider)
        _watch_chunks(resp)
        return StreamResponse(resp, req.provider, timeout, self._idle, self._aio, self.max_answer_bytes)

    async def aclose(self) -> None:
        await self._idle.aclose()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed


#: aiohttp warns (ResourceWarning) when a request body over 1 MiB is given as bytes: such bodies go as a stream
_LARGE_BODY = 1024 * 1024


def _payload(body: bytes | None) -> bytes | io.BytesIO | None:
    return io.BytesIO(body) if body is not None and len(body) > _LARGE_BODY else body


def _failures(aio: ModuleType) -> tuple[type[BaseException], ...]:
    """What the transport turns into our errors: timeouts, aiohttp's client errors, and the HTTP parsing errors
    its pure-Python parser raises as they are (where aiohttp's C extension is not built)."""
    return (TimeoutError, aio.ClientError, aio.http_exceptions.HttpProcessingError)


def _watch_chunks(resp: aiohttp.ClientResponse) -> None:
    """Fail a chunked body's pending read when its connection dies of a parse error.

    aiohttp's C parser, meeting an invalid chunk-size line after the response has been handed out, records the
    error on the connection's protocol and closes the connection, but never fails the body's reader: a read waits
    for ever (its pure-Python parser fails the read). When the connection closes, an error left on the protocol
    is passed on to the body, so the read raises it.
    """
    if resp.headers.get("Transfer-Encoding", "").lower() != "chunked" or resp.connection is None:
        return
    protocol = resp.connection.protocol
    closed = protocol.closed if protocol is not None else None
    if protocol is None or closed is None:
        return
    content = resp.content

    def lost(_: asyncio.Future[None]) -> None:
        exc = protocol.exception()
        if exc is not None and not content.at_eof() and content.exception() is None:
            content.set_exception(exc)

    def ended() -> None:  # the connection outlives the answer (it goes back to the pool): let go of the callback
        closed.remove_done_callback(lost)

    closed.add_done_callback(lost)
    content.on_eof(ended)


def _refuse_redirect(resp: aiohttp.ClientResponse, provider: str) -> None:
    """A provider's redirect is not followed: the caller's prompt goes only where the operator configured."""
    if 300 <= resp.status < 400:
        resp.close()
        raise ProviderError(
            f"the provider answered with a redirect (HTTP {resp.status}), which modelway does not follow: the "
            "deployment's URL must name the API itself",
            provider=provider,
            status_code=resp.status,
        )


def answer_too_large(limit: int, provider: str) -> StreamError:
    return StreamError(f"the provider's answer is larger than the limit of {limit} bytes", provider=provider)


async def read_capped(resp: aiohttp.ClientResponse, limit: int, provider: str) -> bytes:
    """The rest of ``resp``'s body, decoded; :class:`StreamError` (and the connection closed) past ``limit`` bytes."""
    declared = resp.content_length
    if declared is not None and declared > limit and "content-encoding" not in resp.headers:
        resp.close()
        raise answer_too_large(limit, provider)
    inflater = _inflater(resp, provider)
    content = resp.content
    parts: list[bytes] = []
    left = limit
    while True:
        data = await content.readany()
        if not data:
            break
        pieces = [data] if inflater is None else _inflate(inflater, data, left, provider)
        for piece in pieces:
            left -= len(piece)
            if left < 0:
                resp.close()
                raise answer_too_large(limit, provider)
            parts.append(piece)
    if inflater is not None:
        _finish(inflater, provider)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _inflater(resp: aiohttp.ClientResponse, provider: str) -> Inflater | None:
    """The decoder of ``resp``'s Content-Encoding, or ``None`` for a body that is not encoded."""
    coding = resp.headers.get("Content-Encoding")
    if not coding or coding.strip().lower() == "identity":
        return None
    try:
        return Inflater(coding)
    except InflateError as exc:
        resp.close()
        raise StreamError(str(exc), provider=provider) from None


def _inflate(inflater: Inflater, data: bytes, left: int, provider: str) -> list[bytes]:
    try:
        return inflater.feed(data, left)
    except InflateError as exc:
        raise StreamError(str(exc), provider=provider) from None


def _finish(inflater: Inflater, provider: str) -> None:
    try:
        inflater.close()
    except InflateError as exc:
        raise StreamError(str(exc), provider=provider) from None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _map(
    exc: BaseException, provider: str, *, reading: bool, timeout: float | None = None
) -> ProviderConnectionError | ProviderTimeoutError | StreamError:
    aiohttp = _aiohttp()
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        what = "stopped sending" if reading else "did not answer"
        limit = f" within {timeout:g}s" if timeout else ""
        return ProviderTimeoutError(f"the provider {what}{limit}", provider=provider)
    if reading and isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return StreamError(f"the provider's response was cut off: {exc}", provider=provider)
    if reading and isinstance(exc, aiohttp.ClientConnectionError | aiohttp.http_exceptions.HttpProcessingError):
        # (messages of failures while reading name no address: "Connection reset by peer", a parser's complaint)
        return StreamError(f"the provider's response broke off: {exc}", provider=provider)
    if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
        return StreamError(f"the provider's answer is not valid HTTP: {exc}", provider=provider)
    # the message never names the host: a gateway shows it to its callers (the cause stays chained for logs)
    return ProviderConnectionError(f"cannot reach the provider: {_reason(exc)}", provider=provider)


def _reason(exc: BaseException) -> str:
    """Why a connection failed, without the address: ``connection refused``, ``name or service not known``, ..."""
    err = getattr(exc, "os_error", exc)
    if "certificate" in type(exc).__name__.lower():
        return "the provider's TLS certificate was not accepted"
    if isinstance(err, OSError):
        if isinstance(err.errno, int) and err.errno > 0:
            return os.strerror(err.errno).lower()  # (strerror may carry the address: "Connect call failed (...)")
        if isinstance(err, socket.gaierror) and err.strerror:
            return err.strerror.lower()
    return type(exc).__name__
