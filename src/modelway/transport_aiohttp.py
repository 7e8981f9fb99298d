"""The aiohttp backend of :class:`~modelway.transport.Transport` (``backend="aiohttp"``, or
``MODELWAY_TRANSPORT=aiohttp``): one pooled ``aiohttp.ClientSession``.

aiohttp is imported when this module is: importing it costs ~150 ms (it builds SSL contexts), which
``import modelway`` should not pay (:mod:`modelway.transport` imports this module only for this backend).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import ClientTimeout

from .errors import ConfigError, ModelwayError, ProviderConnectionError, ProviderTimeoutError, StreamError
from .inflate import ACCEPT_ENCODING
from .providers.base import HTTPRequest
from .transport import (
    OTHER_LOOP,
    USER_AGENT,
    MapError,
    Response,
    StreamResponse,
    _IdleWatch,
    read_capped,
    reason,
    refuse_redirect,
    timed_out,
)

__all__ = ["AiohttpBackend"]

#: aiohttp warns (ResourceWarning) when a request body over 1 MiB is given as bytes: such bodies go as a stream
_LARGE_BODY = 1024 * 1024

#: what the transport turns into our errors: timeouts, aiohttp's client errors, and the HTTP parsing errors its
#: pure-Python parser raises as they are (where aiohttp's C extension is not built)
_FAILURES: tuple[type[BaseException], ...] = (
    TimeoutError,
    aiohttp.ClientError,
    aiohttp.http_exceptions.HttpProcessingError,
)


class _AioBody:
    """An aiohttp response, as :class:`~modelway.transport.Body`."""

    __slots__ = ("_resp", "headers", "read_some", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        self.read_some: Callable[[], Awaitable[bytes]] = resp.content.readany

    @property
    def content_length(self) -> int | None:
        return self._resp.content_length

    def at_eof(self) -> bool:
        return self._resp.content.at_eof()

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class AiohttpBackend:
    def __init__(
        self, limit: int, limit_per_host: int, connect_timeout: float, max_answer_bytes: int, watch: _IdleWatch
    ) -> None:
        self.max_answer_bytes = max_answer_bytes
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[tuple[float | None, bool], ClientTimeout] = {}
        self._idle = watch
        self.failures = _FAILURES
        self.map: MapError = _map

    def _get_session(self) -> aiohttp.ClientSession:
        s = self._session
        loop = asyncio.get_running_loop()
        if s is not None and not s.closed and self.loop is not loop:
            raise ConfigError(OTHER_LOOP)
        if s is None or s.closed:
            self.loop = loop
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
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
            )
        return s

    def _timeout(self, timeout: float | None, *, stream: bool) -> ClientTimeout:
        t = self._timeouts.get((timeout, stream))
        if t is None:
            t = self._timeouts[(timeout, stream)] = self._make_timeout(timeout, stream=stream)
        return t

    def _make_timeout(self, timeout: float | None, *, stream: bool) -> ClientTimeout:
        if timeout is None:
            return ClientTimeout(total=None, sock_connect=self._connect_timeout)
        if stream:
            # a stream may run long: the wait for its headers is bounded in stream(), every gap between reads by
            # the idle watch
            return ClientTimeout(total=None, sock_connect=min(timeout, self._connect_timeout))
        return ClientTimeout(total=timeout, sock_connect=min(timeout, self._connect_timeout))

    async def send(self, req: HTTPRequest, timeout: float | None) -> Response:
        session = self._get_session()
        try:
            async with session.request(
                req.method,
                req.url,
                headers=req.headers,
                data=_payload(req.body),
                timeout=self._timeout(timeout, stream=False),
                allow_redirects=False,
            ) as resp:
                body = _AioBody(resp)
                refuse_redirect(body, req.provider)
                _watch_chunks(resp)
                try:
                    data = await read_capped(body, self.max_answer_bytes, req.provider)
                except ModelwayError:
                    raise
                except _FAILURES as exc:  # the answer started, then broke
                    raise _map(exc, req.provider, reading=True, timeout=timeout) from exc
                return Response(resp.status, body.headers, data)
        except ProviderTimeoutError as exc:  # (a timeout while reading, too: it is the total time)
            raise _map(exc, req.provider, reading=False, timeout=timeout) from exc
        except ModelwayError:
            raise
        except _FAILURES as exc:
            raise _map(exc, req.provider, reading=False, timeout=timeout) from exc

    async def stream(self, req: HTTPRequest, timeout: float | None) -> StreamResponse:
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
        except _FAILURES as exc:
            raise _map(exc, req.provider, reading=False, timeout=timeout) from exc
        body = _AioBody(resp)
        refuse_redirect(body, req.provider)
        _watch_chunks(resp)
        return StreamResponse(body, req.provider, timeout, self._idle, self, self.max_answer_bytes)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    def in_use(self) -> int:
        s = self._session
        return 0 if s is None or s.closed else len(s.connector._acquired)  # type: ignore[union-attr]


def _payload(body: bytes | None) -> bytes | io.BytesIO | None:
    return io.BytesIO(body) if body is not None and len(body) > _LARGE_BODY else body


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


def _map(
    exc: BaseException, provider: str, *, reading: bool, timeout: float | None = None
) -> ProviderConnectionError | ProviderTimeoutError | StreamError:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return timed_out(provider, reading=reading, timeout=timeout)
    if reading and isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return StreamError(f"the provider's response was cut off: {exc}", provider=provider)
    if reading and isinstance(exc, aiohttp.ClientConnectionError | aiohttp.http_exceptions.HttpProcessingError):
        # (messages of failures while reading name no address: "Connection reset by peer", a parser's complaint)
        return StreamError(f"the provider's response broke off: {exc}", provider=provider)
    if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
        return StreamError(f"the provider's answer is not valid HTTP: {exc}", provider=provider)
    # the message never names the host: a gateway shows it to its callers (the cause stays chained for logs)
    return ProviderConnectionError(f"cannot reach the provider: {reason(exc)}", provider=provider)
