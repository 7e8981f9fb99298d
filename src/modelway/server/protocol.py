"""What the gateway's HTTP server protocols share: the bounds of one connection, the refusals they answer, and the
choice between them (``server.http`` in the config).

* ``modelway`` (the default): :mod:`.protocol_lean`, the gateway's own httptools protocol;
* ``uvicorn``: :mod:`.protocol_uvicorn`, uvicorn's httptools protocol with the same bounds added.

Both run under uvicorn's ``Server`` (:mod:`.runner`) and pass the same tests (``tests/server/test_protocol_bounds.py``,
``test_odd_input.py``, the fault table); either can be deleted with its line below.
"""

from __future__ import annotations

import orjson

__all__ = ["DEFAULT_LIMITS", "PROTOCOLS", "HeadersTooLarge", "HttpLimits", "refusal"]

#: ``server.http`` → the protocol class uvicorn loads
PROTOCOLS = {
    "modelway": "modelway.server.protocol_lean:LeanHttpProtocol",
    "uvicorn": "modelway.server.protocol_uvicorn:GatewayHttpProtocol",
}


class HttpLimits:
    """What one connection may send, and how fast (``server.*`` in the config)."""

    __slots__ = ("body_timeout", "header_timeout", "max_header_bytes", "max_headers")

    def __init__(
        self,
        max_header_bytes: int = 64 * 1024,
        max_headers: int = 100,
        header_timeout: float = 10.0,
        body_timeout: float = 60.0,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout

    def too_large(self) -> str:
        """Why a request was answered 431."""
        return (
            f"the request's headers are larger than {self.max_header_bytes} bytes or more than {self.max_headers} lines"
        )

    def late(self, part: str) -> str:
        """Why a request was answered 408: its ``headers`` or its ``body`` did not arrive in time."""
        timeout = self.header_timeout if part == "headers" else self.body_timeout
        return f"the request's {part} did not arrive within {timeout:g} s"


class HeadersTooLarge(Exception):
    """Raised from a parser callback past the header bounds; httptools turns it into an ``HttpParserCallbackError``."""


DEFAULT_LIMITS = HttpLimits()


def refusal(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole response refusing a request at the HTTP level (the connection is then closed)."""
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body
