"""What a Redis URL says: where Redis is (a host, a socket, or a master found through Sentinel), how to log in, TLS,
timeouts and keepalive. Parsed once (``store.redis_url`` at config load, and by each client); no I/O but reading
the TLS files when a context is built.

Schemes (redis-py's, plus the ``redis+sentinel`` convention of redis-sentinel-url, RedisVL and Prefect)::

    redis://[[user]:password@]host[:port][/db][?options]
    rediss://...                                           TLS
    unix:///path/to/redis.sock[?db=N&options]
    redis+sentinel://[[user]:password@]host[:port][,host2[:port2]...]/service_name[/db][?options]
    rediss+sentinel://...                                  TLS to the Sentinels and to the master

Sentinels listen on 26379 unless a port is given. The user and password in the URL are the data node's (the
master's); ``sentinel_username`` and ``sentinel_password`` log in to the Sentinels, which take none by default.

Options, with redis-py's names: ``db``, ``username``, ``password``; ``socket_timeout`` (seconds for each reply),
``socket_connect_timeout`` (seconds to connect, TLS handshake and login included), ``socket_keepalive`` (TCP
keepalive: ``true``, the default here, or ``false``), ``health_check_interval`` (seconds: an idle connection is
checked this often, with PING, or with ROLE through Sentinel; 0, the default, checks none); TLS: ``ssl_ca_certs``
(a CA file: the only CAs trusted then), ``ssl_ca_path`` (a directory of them), ``ssl_certfile`` and
``ssl_keyfile`` (a client certificate), ``ssl_password`` (the key's), ``ssl_cert_reqs`` (``required``, the
default; ``optional``; ``none``: no verification at all), ``ssl_check_hostname`` (``true`` unless
``ssl_cert_reqs=none``). ``timeout`` and ``max_connections`` (redis-py's pool settings) are accepted and ignored.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

__all__ = ["SENTINEL_PORT", "RedisSettings", "TLSSettings", "parse_redis_url", "redact_url"]

SENTINEL_PORT = 26379
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
#: options whose values are secrets: never in a message or a log
SECRET_OPTIONS = ("password", "sentinel_password", "ssl_password")
_IGNORED = ("timeout", "max_connections")
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_OPTIONS = (
    "db", "username", "password", "sentinel_username", "sentinel_password", "socket_timeout",
    "socket_connect_timeout", "socket_keepalive", "health_check_interval", "ssl_ca_certs", "ssl_ca_path",
    "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_cert_reqs", "ssl_check_hostname", *_IGNORED,
)  # fmt: skip
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """TLS for the connections: which CAs to trust, a client certificate, how strictly the server is checked."""

    ca_certs: str | None = None
    ca_path: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    #: ``none``, ``optional`` or ``required``
    cert_reqs: str = "required"
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        """A client context for these settings; ``ValueError`` naming the option when a file cannot be used."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_certs, capath=self.ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"ssl_ca_certs / ssl_ca_path: cannot load the CA certificates ({exc})") from None
        ctx.check_hostname = self.check_hostname  # before verify_mode: CERT_NONE needs it off first
        ctx.verify_mode = _CERT_REQS[self.cert_reqs]
        if self.certfile is not None:
            try:
                ctx.load_cert_chain(self.certfile, self.keyfile, self.password)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"ssl_certfile / ssl_keyfile: cannot load the client certificate ({exc})") from None
        return ctx


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """One Redis URL, parsed. ``host``/``port`` for a direct TCP connection, ``path`` for a socket, ``sentinels``
    and ``service`` for a master found through Sentinel."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: TLSSettings | None = None
    #: ``None``: the client's own default
    socket_timeout: float | None = None
    socket_connect_timeout: float | None = None
    socket_keepalive: bool = True
    health_check_interval: float = 0.0

    @property
    def where(self) -> str:
        """Where Redis is, for messages (no secrets)."""
        if self.path is not None:
            return f"unix socket {self.path}"
        if self.service is not None:
            sentinels = ",".join(_hostport(h, p) for h, p in self.sentinels)
            return f"the master of {self.service!r} (Sentinel {sentinels})"
        return _hostport(self.host, self.port)


def parse_redis_url(url: str) -> RedisSettings:
    """Parse ``url``; ``ValueError`` saying what is wrong (naming the option), never quoting a password."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            "the scheme must be redis://, rediss:// (TLS), unix://, redis+sentinel:// or rediss+sentinel:// "
            f"(got {scheme + '://' if scheme else 'none'})"
        )
    if _user_part_cut(parts):
        raise ValueError(
            "the user part (user:password@) holds a '/', '?' or '#': write them percent-encoded (%2F, %3F, %23)"
        )
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise ValueError(f"unknown option {key!r} (supported: {', '.join(sorted(_OPTIONS))})")
        if key in query:
            raise ValueError(f"option {key!r} given twice")
        query[key] = value
    for key in _IGNORED:
        query.pop(key, None)
    tls = scheme.startswith("rediss")
    user, password = _credentials(parts.netloc)
    username = user if user is not None else query.pop("username", None)
    password = password if password is not None else query.pop("password", None)
    query.pop("username", None)
    query.pop("password", None)
    db_text = query.pop("db", None)
    host, port, path, service = "", 0, None, None
    sentinels: tuple[tuple[str, int], ...] = ()
    if scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path (unix:///run/redis/redis.sock)")
        path = unquote(parts.path)
    elif scheme.endswith("+sentinel"):
        sentinels = _sentinels(parts.netloc.rpartition("@")[2])
        names = [unquote(p) for p in parts.path.split("/") if p]
        if not names:
            raise ValueError("a Sentinel URL needs the master's service name: redis+sentinel://host:26379/mymaster")
        if len(names) > 2:
            raise ValueError("a Sentinel URL's path is /service_name or /service_name/db")
        service = names[0]
        if len(names) == 2:
            db_text = db_text if db_text is not None else names[1]
    else:
        try:
            host, port = parts.hostname or "localhost", parts.port or 6379
        except ValueError as exc:
            raise ValueError(f"invalid host or port ({exc})") from None
        if db_text is None and parts.path.strip("/"):
            db_text = parts.path.strip("/")
    settings = RedisSettings(
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        sentinels=sentinels,
        service=service,
        db=_int(db_text or "0", "db"),
        username=username,
        password=password,
        sentinel_username=query.pop("sentinel_username", None) if service is not None else None,
        sentinel_password=query.pop("sentinel_password", None) if service is not None else None,
        tls=_tls(query) if tls else None,
        socket_timeout=_seconds(query.pop("socket_timeout", None), "socket_timeout"),
        socket_connect_timeout=_seconds(query.pop("socket_connect_timeout", None), "socket_connect_timeout"),
        socket_keepalive=_bool(query.pop("socket_keepalive", "true"), "socket_keepalive"),
        health_check_interval=_seconds(query.pop("health_check_interval", None), "health_check_interval", zero=True)
        or 0.0,
    )
    if query:
        option = sorted(query)[0]
        if option.startswith("ssl_"):
            raise ValueError(f"option {option!r} needs TLS: use rediss:// (or rediss+sentinel://)")
        if option.startswith("sentinel_"):
            raise ValueError(f"option {option!r} needs a Sentinel URL (redis+sentinel://)")
        raise ValueError(f"option {option!r} does not apply to {scheme}://")
    if settings.db < 0:
        raise ValueError(f"db must be a database number, 0 or more (got {settings.db})")
    return settings


def redact_url(url: str) -> str:
    """``url`` without its secrets (the password in the user part, the password options), for messages and logs."""
    parts = urlsplit(url)
    if _user_part_cut(parts):  # the password runs past the host part: hide all up to the last '@'
        return f"{parts.scheme}://***@{url.rpartition('@')[2]}"
    netloc = parts.netloc
    user, _, hosts = netloc.rpartition("@")
    if ":" in user:
        netloc = f"{user.partition(':')[0]}:***@{hosts}"
    query = parts.query
    if any(secret in query for secret in SECRET_OPTIONS):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k in SECRET_OPTIONS else v) for k, v in pairs], safe="*/")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _user_part_cut(parts: SplitResult) -> bool:
    """Whether a '/', '?' or '#' of the password (unencoded) ended the URL's host part early: an '@' stands in the
    path or the fragment (where none belongs but in a socket's path), or the host part holds no '@' and what
    would be its port is no number (``redis://:Kq3x?Zt9w@h``)."""
    if parts.scheme.lower() == "unix":
        return False
    if "@" in parts.path or "@" in parts.fragment:
        return True
    netloc = parts.netloc
    if "@" in netloc or "@" not in parts.query or netloc.endswith("]"):
        return False
    _, colon, port = netloc.rpartition(":")
    return bool(colon) and not port.isdigit() and "," not in port


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _sentinels(hosts: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in hosts.split(","):
        if not item:
            raise ValueError("a Sentinel URL lists host[:port] pairs separated by commas, none empty")
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"Sentinel {item!r}: no host")
        port = _int(port_text, f"the port of Sentinel {item!r}") if port_text else SENTINEL_PORT
        if not 0 < port < 65536:
            raise ValueError(f"the port of Sentinel {item!r} must be 1-65535")
        out.append((unquote(host), port))
    return tuple(out)


def _tls(query: dict[str, str]) -> TLSSettings:
    reqs = query.pop("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be none, optional or required (got {reqs!r})")
    check = query.pop("ssl_check_hostname", None)
    check_hostname = reqs != "none" if check is None else _bool(check, "ssl_check_hostname")
    if check_hostname and reqs == "none":
        raise ValueError("ssl_check_hostname=true needs the certificate checked: ssl_cert_reqs=required or optional")
    files = {}
    for option in (*_TLS_FILES, "ssl_ca_path"):
        value = query.pop(option, None)
        if value is None:
            continue
        if not value:
            raise ValueError(f"{option} is empty")
        if option == "ssl_ca_path" and not os.path.isdir(value):
            raise ValueError(f"ssl_ca_path: {value} is not a directory")
        if option != "ssl_ca_path" and not os.path.isfile(value):
            raise ValueError(f"{option}: no file {value}")
        files[option] = value
    if "ssl_keyfile" in files and "ssl_certfile" not in files:
        raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
    return TLSSettings(
        ca_certs=files.get("ssl_ca_certs"),
        ca_path=files.get("ssl_ca_path"),
        certfile=files.get("ssl_certfile"),
        keyfile=files.get("ssl_keyfile"),
        password=query.pop("ssl_password", None),
        cert_reqs=reqs,
        check_hostname=check_hostname,
    )


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number (got {text!r})") from None


def _seconds(text: str | None, name: str, *, zero: bool = False) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds (got {text!r})") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} number of seconds (got {text})")
    return value


def _bool(text: str, name: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false (got {text!r})")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
