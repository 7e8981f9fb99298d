"""What the gateway observes of one HTTP exchange, beside the request itself: when it began, the ticket that
admitted it (if one did), how it was answered, and its trace span.

The app makes one per request and sets it as :data:`CURRENT` for the request's task (tasks the request starts see
it too); a :class:`~modelway.server.ticket.Ticket` made for the request links itself to it. When the exchange ends
without a ticket (the gateway refused the request before admitting it: bad JSON, 401, 404, 405, 413 ...), the app
counts it from here: metrics, usage record, request log.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .http import Message, Request, Send

if TYPE_CHECKING:
    from .ticket import Ticket

__all__ = ["CURRENT", "Exchange"]


class Exchange:
    __slots__ = ("code", "error_type", "req", "restore", "span", "start", "status", "ticket", "ts")

    def __init__(self, req: Request) -> None:
        self.req = req
        self.ts = time.time()
        self.start = time.perf_counter()
        #: the ticket made for this request, once it was admitted (or refused by the control plane: it counted it)
        self.ticket: Ticket | None = None
        #: the answer's status once it started (``None``: none was sent), and for an error its code and class
        self.status: int | None = None
        self.code: str | None = None
        self.error_type: str | None = None
        #: the request's trace span (``None``: not traced), and the trace context to restore when it ends
        self.span: Any = None
        self.restore: Any = None

    def failed(self, status: int, code: str | None, error_type: str | None) -> None:
        """The request ends with an error the app answered (or would have: 499 when the caller left)."""
        self.status = status
        self.code = code
        self.error_type = error_type

    def watch(self, send: Send, headers: list[tuple[bytes, bytes]] | None = None) -> Send:
        """``send`` noting the answer's status, with ``headers`` added to its start (CORS)."""

        async def watched(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                self.status = msg["status"]
                if headers:
                    msg["headers"] = [*msg.get("headers", ()), *headers]
            await send(msg)

        return watched


#: the exchange of the request this task serves
CURRENT: ContextVar[Exchange | None] = ContextVar("modelway_exchange", default=None)
