"""uvicorn's httptools protocol with the bounds it lacks (``server.http: uvicorn``; the default is
:mod:`.protocol_lean`): header size and count, and deadlines for headers and body.

uvicorn's httptools protocol buffers a request's line and headers without limit (httptools gathers a header value
until its line ends, however long), and gives a client all the time it wants to send them and its body: four
connections sending 64 MiB of headers took a worker from 42 to 314 MiB, and a connection trickling headers, or
declaring a body it never sends, stayed open for ever. This subclass:

* counts the bytes of the request line and headers as they arrive: past ``max_header_bytes`` (or past
  ``max_headers`` header lines) the client gets ``431 Request Header Fields Too Large`` and the connection is
  closed, so a connection holds at most the limit plus two reads (256 KiB each) of header bytes;
* gives a request ``header_timeout`` seconds from its first byte (a new connection: from connecting; a pipelined
  request: from the end of the response before it) to finish its headers, else ``408 Request Timeout`` (or, if
  it sent nothing, a plain close);
* gives it ``body_timeout`` seconds from the end of its headers to finish its body, else ``408`` (the app, waiting
  for the body, sees the client gone); the connection is closed;
* once the server shuts down, answers every request with ``Connection: close`` and leaves idle connections to
  their client or the keep-alive timeout, as the gateway's own protocol does.

A timer is armed only when a read ends inside the headers or the body: requests that arrive in one read, nearly
all of them, cost no timer (a new connection costs one). Everything else is uvicorn's: keep-alive, pipelining,
flow control.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .protocol import DEFAULT_LIMITS, HeadersTooLarge, HttpLimits, refusal

__all__ = ["GatewayHttpProtocol"]

log = logging.getLogger("modelway.server")


class GatewayHttpProtocol(HttpToolsProtocol):
    """See the module docstring. Limits come from ``config.http_limits`` (:class:`.runner.ServeConfig`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits: HttpLimits = getattr(config, "http_limits", DEFAULT_LIMITS)
        self._limits = limits
        self._max_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._header_timeout = limits.header_timeout
        self._body_timeout = limits.body_timeout
        #: the server is shutting down: every response from now on says ``Connection: close`` (:meth:`shutdown`)
        self._draining = False
        #: waiting for a request's line and headers (a new connection counts), and whether one of them has begun
        self._in_headers = True
        self._begun = False
        #: the headers are in, the body is not
        self._in_body = False
        #: bytes read while waiting for headers (whole reads), and the exact size and count of those parsed
        self._read = 0
        self._size = 0
        self._count = 0
        self._too_large = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer = self.loop.call_later(self._header_timeout, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._read += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._too_large:
                self._refuse_too_large()
            else:
                log.debug("invalid HTTP request received")
                self.transport.write(refusal(400, "Bad Request", "invalid_http", "the request is not valid HTTP/1.1"))
                self.transport.close()
            return
        if self._timer is not None or self.transport.is_closing():
            return
        if self._in_headers:
            if self._read > self._max_bytes:
                self._refuse_too_large()
            elif self._responding():
                return  # a pipelined request: its clock starts when the response before it is done
            else:
                self._timer = self.loop.call_later(self._header_timeout, self._headers_timed_out)
        elif self._in_body:
            self._timer = self.loop.call_later(self._body_timeout, self._body_timed_out)

    # -- parser callbacks ----------------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._begun = True
        self._size = self._count = 0

    def on_url(self, url: bytes) -> None:
        self._size += len(url)
        if self._size > self._max_bytes:
            self._too_large = True
            raise HeadersTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value) + 4
        self._count += 1
        if self._size > self._max_bytes or self._count > self._max_headers:
            self._too_large = True
            raise HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = self._begun = False
        self._in_body = True
        self._read = 0
        self._cancel_timer()
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # (its task has not run yet)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_headers and self._timer is None and not self.transport.is_closing():
            # a pipelined request whose headers were still coming: its clock starts now
            self._timer = self.loop.call_later(self._header_timeout, self._headers_timed_out)

    def shutdown(self) -> None:
        """As :meth:`.protocol_lean.LeanHttpProtocol.shutdown`: answers from now on close their connection; an idle
        connection, and one whose response began before (its head said keep-alive), is left to its client or its
        keep-alive timeout (uvicorn's own closes both, which races a request a load balancer may be sending)."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.keep_alive = False

    # -- refusals --------------------------------------------------------------------------------------------------
    def _responding(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse_too_large(self) -> None:
        self._cancel_timer()
        message = self._limits.too_large()
        log.warning("refused a request: %s", message)
        if not self._responding():
            self.transport.write(refusal(431, "Request Header Fields Too Large", "headers_too_large", message))
        self.transport.close()

    def _headers_timed_out(self) -> None:
        self._timer = None
        if not self._in_headers or self.transport.is_closing():
            return
        if self._begun and not self._responding():
            message = self._limits.late("headers")
            log.warning("refused a request: %s", message)
            self.transport.write(refusal(408, "Request Timeout", "request_timeout", message))
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if not self._in_body or self.transport.is_closing() or cycle is None:
            return
        message = self._limits.late("body")
        log.warning("refused a request: %s", message)
        if not cycle.response_started:
            # the app, waiting for the body, finds the client gone (and sends nothing); the client gets the 408
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(refusal(408, "Request Timeout", "request_timeout", message))
        self.transport.close()
