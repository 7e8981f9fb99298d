"""CORS: browsers on the configured origins (``server.cors_origins``; ``*`` for any) may call the gateway.

Off by default (no ``Access-Control-*`` header anywhere; ``OPTIONS`` is answered 405 like any method a route does not
take). When on:

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from an allowed origin is answered
  204 with the methods, the headers it asked for (``Authorization``, ``x-api-key``, ``anthropic-version`` ...) and
  ``Access-Control-Max-Age``, before any key is checked (a browser sends no credentials in a preflight); one from an
  origin not allowed is answered 403;
- every answer to an allowed origin (errors and streams included) carries ``Access-Control-Allow-Origin`` and
  exposes the gateway's own headers (``x-request-id``, ``x-ratelimit-*``, ``x-modelway-*``, ``retry-after``).

The gateway's keys travel in headers, never in cookies, so credentials mode is not offered.
"""

from __future__ import annotations

from .http import Request, Send

__all__ = ["Cors"]

_METHODS = b"GET, POST, DELETE, OPTIONS"
_EXPOSE = b", ".join(
    [
        *(b"x-request-id", b"retry-after", b"x-modelway-deployment", b"x-modelway-attempts"),
        *(b"x-modelway-fallback", b"x-ratelimit-limit-requests", b"x-ratelimit-remaining-requests"),
        *(b"x-ratelimit-reset-requests", b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens"),
        b"x-ratelimit-reset-tokens",
    ]
)
#: what a preflight may ask for when it names no headers (and the most it is told: a long list is cut)
_DEFAULT_HEADERS = b"authorization, content-type, x-api-key, x-request-id, anthropic-version, openai-beta"
_MAX_REQUEST_HEADERS = 2048
_MAX_AGE = b"600"


class Cors:
    """The allowed origins, and the headers that say so."""

    __slots__ = ("any", "origins")

    def __init__(self, origins: list[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.encode() for o in origins if o != "*")

    def allowed(self, origin: bytes) -> bool:
        return self.any or origin in self.origins

    def headers(self, origin: bytes) -> list[tuple[bytes, bytes]] | None:
        """The headers of an answer to ``origin`` (``None``: not an allowed origin, nothing is added)."""
        if self.any:
            return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", _EXPOSE)]
        if origin not in self.origins:
            return None
        return [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", _EXPOSE),
        ]

    @staticmethod
    def is_preflight(req: Request) -> bool:
        return req.method == "OPTIONS" and b"access-control-request-method" in req.headers

    async def preflight(self, req: Request, origin: bytes, send: Send) -> int:
        """Answer a preflight from an allowed ``origin`` (the caller checked it): 204; returns the status."""
        asked = req.headers.get(b"access-control-request-headers") or _DEFAULT_HEADERS
        if len(asked) > _MAX_REQUEST_HEADERS or any(c in asked for c in b"\r\n"):
            asked = _DEFAULT_HEADERS
        headers = [
            (b"access-control-allow-origin", b"*" if self.any else origin),
            (b"access-control-allow-methods", _METHODS),
            (b"access-control-allow-headers", asked),
            (b"access-control-max-age", _MAX_AGE),
            (b"content-length", b"0"),
            # (the allowed headers echo the asked ones: a cache must keep them apart)
            (b"vary", b"Access-Control-Request-Headers" if self.any else b"Origin, Access-Control-Request-Headers"),
        ]
        headers.append((b"x-request-id", req.request_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204
