"""What goes on the wire: a URL parsed once into a :class:`Target`, and a request's head (:func:`head`).

A deployment's requests differ in their heads only by the body's length: each target keeps the heads it built (up
to :data:`MAX_HEADS`), by method and header items, and a request that has them again gets its head from there, its
Content-Length appended. Only a head not seen before is built, and checked for header injection.
"""

from __future__ import annotations

import base64
import ipaddress
from urllib.parse import quote, unquote, urlsplit

from ..errors import ConfigError
from ..inflate import ACCEPT_ENCODING
from ..providers.base import HTTPRequest
from ..transport import USER_AGENT
from .failures import BadURL

__all__ = ["MAX_HEADS", "Key", "Target", "head"]

#: heads kept per target (a deployment has one set of headers; more come from headers that change per request)
MAX_HEADS = 32

Key = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_NOT_SENT = frozenset({"content-length", "transfer-encoding"})  # the client frames the body itself
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
_USER_AGENT = f"User-Agent: {USER_AGENT}\r\n"
_ACCEPT_ENCODING = f"Accept-Encoding: {ACCEPT_ENCODING}\r\n"


class Target:
    """What a URL says about where and how to send (parsed once per URL)."""

    __slots__ = ("auth", "heads", "host", "host_line", "key", "literal", "path", "port", "tls")

    def __init__(self, url: str) -> None:
        if "\r" in url or "\n" in url or "\0" in url:
            raise ConfigError(
                "refusing to send a request whose URL holds a line break or NUL (header injection): check the "
                "deployment's base URL"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
        except ValueError:
            raise BadURL("the provider's URL is not valid") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not host:
            raise BadURL("the provider's URL is not an http or https URL with a host")
        literal = _is_ip(host)
        if not literal:
            try:  # (IDNA for names that are not ASCII; for all, labels that are empty or longer than 63 refused)
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise BadURL("the provider's URL has a host name that is not valid") from None
        self.tls = scheme == "https"
        self.port = port if port is not None else _DEFAULT_PORTS[scheme]
        self.host = host
        self.key: Key = (scheme, host, self.port)
        self.literal = literal  # (an IPv6 literal's brackets are gone: urlsplit's hostname drops them)
        named = f"[{host}]" if ":" in host else host
        self.host_line = f"Host: {named}\r\n" if port in (None, _DEFAULT_PORTS[scheme]) else f"Host: {named}:{port}\r\n"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if not (path.isascii() and path.isprintable()) or " " in path:
            path = quote(path, safe=_URL_SAFE)  # (as yarl does: spaces and non-ASCII are percent-encoded)
        self.path = path
        self.auth: str | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.auth = f"Authorization: Basic {base64.b64encode(pair).decode()}\r\n"
        #: heads built, by (method, whether a body is sent, the header items): the whole head, or (with a body)
        #: all of it up to its Content-Length's value
        self.heads: dict[tuple[str, bool, tuple[tuple[str, str], ...]], bytes] = {}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def head(req: HTTPRequest, t: Target) -> bytes:
    """The request's head: our headers unless the request has its own; header injection refused."""
    body = req.body
    try:
        key = (req.method, body is not None, tuple(req.headers.items()))
        built = t.heads.get(key)
    except TypeError:  # (a header value that cannot be hashed: built, not kept)
        built = _build(req, t)
    else:
        if built is None:
            built = _build(req, t)
            heads = t.heads
            if len(heads) >= MAX_HEADS:
                heads.clear()
            heads[key] = built
    if body is None:
        return built
    return built + b"%d\r\n\r\n" % len(body)


def _build(req: HTTPRequest, t: Target) -> bytes:
    """The head of ``req`` (with a body: up to its Content-Length's value); header injection refused."""
    have: set[str] = set()
    lines: list[str] = []
    for k, v in req.headers.items():
        lk = k.lower()
        if lk in _NOT_SENT:
            continue
        have.add(lk)
        lines.append(f"{k}: {v}\r\n")
    theirs = "".join(lines)
    n = len(lines)
    if theirs.count("\n") != n or theirs.count("\r") != n or "\0" in theirs or not req.method.isalpha():
        raise ConfigError(_injection(req))
    parts = [req.method, " ", t.path, " HTTP/1.1\r\n"]
    if "host" not in have:
        parts.append(t.host_line)
    if t.auth is not None and "authorization" not in have:
        parts.append(t.auth)
    if "user-agent" not in have:
        parts.append(_USER_AGENT)
    if "accept" not in have:
        parts.append("Accept: */*\r\n")
    if "accept-encoding" not in have:
        parts.append(_ACCEPT_ENCODING)
    parts.append(theirs)
    if req.body is not None:
        if "content-type" not in have:
            parts.append("Content-Type: application/octet-stream\r\n")
        parts.append("Content-Length: ")
    elif req.method in _BODY_METHODS:
        parts.append("Content-Length: 0\r\n\r\n")
    else:
        parts.append("\r\n")
    return "".join(parts).encode()


def _injection(req: HTTPRequest) -> str:
    if not req.method.isalpha():
        return f"refusing to send a request with the method {req.method[:20]!r}"
    bad = next((k for k, v in req.headers.items() if any(c in k + v for c in "\r\n\0")), "?")
    return (
        f"refusing to send the header {bad[:60]!r}: its name or value holds a line break or NUL (header "
        "injection); check the deployment's key and headers"
    )
