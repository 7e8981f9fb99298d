"""The admin web console at ``/ui``: static files shipped in the package (no build step, nothing fetched from the
internet), served with validators and a strict content security policy. The page signs in with the master key or
an admin key (``metadata: {"role": "admin"}``) and talks to the admin API (``/admin/...``) and ``/v1/...`` like any
client: the console adds no API of its own and no server-side session.

Files are read once, on first request, into memory (they are ~60 KB); each answer carries an ``ETag`` and
``Cache-Control: no-cache``, so a browser revalidates and gets ``304`` until the package changes.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from ..errors import MethodNotAllowed, NotFound
from ..http import Request, Send

__all__ = ["CONSOLE_PREFIX", "serve_console"]

CONSOLE_PREFIX = "/ui"

#: the files the console is made of, and their content types (anything else under /ui is 404)
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "pages.js": "text/javascript; charset=utf-8",
    "keys.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_SECURITY = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]

_cache: dict[str, tuple[bytes, bytes]] = {}


def _load(name: str) -> tuple[bytes, bytes]:
    """The file's bytes and its ETag."""
    hit = _cache.get(name)
    if hit is None:
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        hit = _cache[name] = (data, b'"' + hashlib.sha256(data).hexdigest()[:20].encode() + b'"')
    return hit


async def serve_console(req: Request, send: Send) -> None:
    """``GET /ui`` (the page) and ``GET /ui/<file>``; ``HEAD`` too."""
    if req.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(req.method, req.path, "GET, HEAD")
    rest = req.path[len(CONSOLE_PREFIX) :].lstrip("/") or "index.html"
    kind = _FILES.get(rest)
    if kind is None:
        raise NotFound(f"no console file {rest[:100]!r}")
    data, etag = _load(rest)
    headers = [(b"content-type", kind.encode()), (b"etag", etag), *_SECURITY]
    if req.headers.get(b"if-none-match") == etag:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if req.method == "HEAD" else data})
