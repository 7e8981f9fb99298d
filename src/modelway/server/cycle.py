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
#: the bytes a header value may not hold (a faster test than a regular expression's search)
_VALUE_FORBIDDEN = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


_STATUS = {code: _status_line(code) for code in range(100, 600)}
_DISCONNECT = {"type": "http.disconnect"}

# what a response header means to the cycle
_OTHER, _LENGTH, _ENCODING, _CONNECTION = 0, 1, 2, 3
_KINDS = {b"content-length": _LENGTH, b"transfer-encoding": _ENCODING, b"connection": _CONNECTION}
#: a response header's name, as apps write it, once found valid → its line's start (lower case, then ``: ``) and
#: its kind; at most ``_NAMES_MAX`` names are kept (an app could write any number of different ones)
_NAMES: dict[bytes, tuple[bytes, int]] = {}
_NAMES_MAX = 1024


def _check_values(values: list[bytes]) -> None:
    """(As :meth:`Cycle._head` checks them: all at once, a tab, allowed in a value, between them.)"""
    joined = b"\t".join(values)
    if len(joined.translate(None, _VALUE_FORBIDDEN)) != len(joined):
        raise RuntimeError("Invalid HTTP header value.")


def _name(name: bytes, values: list[bytes]) -> tuple[bytes, int]:
    """A header name not met before (``values``: those of the headers before it): checked, lowered, and kept."""
    if _HEADER_NAME.search(name):
        _check_values(values)  # (the first fault found is the one named, as the headers come)
        raise RuntimeError("Invalid HTTP header name.")
    lower = name.lower()
    known = (lower + b": ", _KINDS.get(lower, _OTHER))
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = known
    return known


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

    def __init__(
        self, proto: LeanHttpProtocol, scope: dict[str, Any], keep_alive: bool, expect_100: bool, is_head: bool
    ) -> None:
        self.proto = proto
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.is_head = is_head
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
        proto = self.proto
        while not (self.disconnected or self.complete):
            if proto.read_paused:
                proto.resume_body()  # the app takes the body: read on
            if self.body or (not self.more_body and not self.ended):
                body, self.body = self.body, b""
                more = self.more_body
                self.ended = not more
                return {"type": "http.request", "body": body, "more_body": more}
            self.waiter = waiter = proto.loop.create_future()
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
            if self.waiter is not None:
                self.wake()
            if not self.keep_alive:
                proto.transport.close()
            proto.response_complete(self)

    def _head(self, status: int, headers: Any) -> bytes:
        parts = [self.proto.head_start(status)]
        values: list[bytes] = []
        length: int | None = None
        chunked = False
        closing = False
        names = _NAMES
        for name, value in headers:
            start, kind = names.get(name) or _name(name, values)
            if kind:
                if kind == _LENGTH:
                    if length is None and not chunked:
                        try:
                            length = int(value)
                        except ValueError:
                            _check_values([*values, value])
                            raise
                elif kind == _ENCODING:
                    if value.lower() == b"chunked":
                        chunked = True
                elif b"close" in [t.strip().lower() for t in value.split(b",")]:
                    closing = True
            parts += (start, value, b"\r\n")
            values.append(value)
        joined = b"\t".join(values)  # (the values checked at once: a tab, allowed in a value, between them)
        if len(joined.translate(None, _VALUE_FORBIDDEN)) != len(joined):
            raise RuntimeError("Invalid HTTP header value.")
        if closing:
            self.keep_alive = False
        elif not self.keep_alive:
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
