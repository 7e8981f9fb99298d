"""One request and its response on the gateway's own server protocol (:mod:`.protocol_lean`): ASGI's ``receive``
and ``send`` for it.

``send`` holds a response's status line and headers until its first body bytes, so both leave in one socket write;
``receive`` hands over body bytes that have arrived without waiting on an event; :meth:`Cycle.on_disconnect` lets
the app's handler be told when its client goes away (:mod:`.disconnect`), instead of a task waiting in
``receive()``.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .protocol_lean import LeanHttpProtocol

__all__ = ["Cycle"]

log = logging.getLogger("modelway.server")

_HEADER_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


_STATUS = {code: _status_line(code) for code in range(100, 600)}
_DISCONNECT = {"type": "http.disconnect"}


class Cycle:
    """One request and its response: the ASGI ``receive`` and ``send`` of it."""

    __slots__ = (
        "body",
        "chunked",
        "complete",
        "disconnected",
        "ended",
        "expect_100",
        "head",
        "is_head",
        "keep_alive",
        "left",
        "more_body",
        "proto",
        "scope",
        "started",
        "waiter",
        "watcher",
    )

    def __init__(self, proto: LeanHttpProtocol, scope: dict[str, Any], keep_alive: bool, expect_100: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.is_head = scope["method"] == "HEAD"
        self.body = b""
        self.more_body = True
        #: the last part of the body was handed to the app
        self.ended = False
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.left = 0  # Content-Length bytes still to send
        #: the response's status line and headers, held until its first body bytes so both leave in one write
        self.head: bytes | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.watcher: Callable[[], None] | None = None

    # -- what the protocol tells the cycle ---------------------------------------------------------------------
    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def lost(self) -> None:
        """The connection is gone."""
        if not self.complete:
            self.disconnected = True
            watcher, self.watcher = self.watcher, None
            if watcher is not None:
                watcher()
        self.wake()

    # -- disconnect callbacks ----------------------------------------------------------------------------------
    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (once) if the client goes away before the response is complete; ``None`` stops it.
        Called at once when the client is already gone."""
        if callback is not None and self.disconnected:
            callback()
            return
        self.watcher = callback

    # -- ASGI --------------------------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        if self.expect_100:
            self.expect_100 = False
            if not self.proto.transport.is_closing():
                self.proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not (self.disconnected or self.complete):
            self.proto.resume_body()  # the app takes the body: read on
            if self.body or (not self.more_body and not self.ended):
                body, self.body = self.body, b""
                more = self.more_body
                self.ended = not more
                return {"type": "http.request", "body": body, "more_body": more}
            self.waiter = waiter = self.proto.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        return _DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        proto = self.proto
        if proto.write_paused is not None and not self.disconnected:
            await asyncio.shield(proto.write_paused)
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self.head = self._head(message["status"], message.get("headers", ()))  # (refused: a 500 goes out)
            self.started = True
            self.expect_100 = False
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")
        if kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.is_head:
            data = b""
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        else:
            n = len(body)
            if n > self.left:
                raise RuntimeError("Response content longer than Content-Length")
            self.left -= n
            data = body
            if not more and self.left:
                raise RuntimeError("Response content shorter than Content-Length")
        head = self.head
        if head is not None:
            self.head = None
            data = head + data
        if data:
            proto.transport.write(data)
        if not more:
            self.complete = True
            self.watcher = None
            self.wake()
            if not self.keep_alive:
                proto.transport.close()
            proto.response_complete(self)

    def _head(self, status: int, headers: Any) -> bytes:
        proto = self.proto
        parts = [_STATUS[status], proto.default_head()]
        length: int | None = None
        chunked = False
        closing = False
        for name, value in headers:
            if _HEADER_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if _HEADER_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and length is None and not chunked:
                length = int(value)
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            elif name == b"connection" and b"close" in [t.strip().lower() for t in value.split(b",")]:
                self.keep_alive = False
                closing = True
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not closing:
            parts.append(b"connection: close\r\n")
        if chunked:
            self.chunked = True
        elif length is not None:
            self.left = 0 if self.is_head else length
        elif not self.is_head and status not in (204, 304):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def run(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            log.error("Exception in ASGI application", exc_info=exc)
            if self._unsent():
                await self._send_500()
            elif not self.complete:
                self.proto.transport.close()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned %r.", result)
                self.proto.transport.close()
            elif not self.started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                if self._unsent():
                    await self._send_500()
                else:
                    self.proto.transport.close()
        finally:
            self.watcher = None

    def _unsent(self) -> bool:
        """Nothing of the response went out yet (its head, when started, is still held): a 500 can replace it."""
        return not self.disconnected and (not self.started or self.head is not None)

    async def _send_500(self) -> None:
        self.started = self.chunked = False
        self.head = None
        self.keep_alive = False
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")],
            }
        )
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})
