"""A minimal asyncio Redis client (RESP2) for the Redis limiter: one pipelined connection, no pool, no wait_for.

redis-py's asyncio client costs ~150-200 µs of CPU per command (a pooled connection, a ``wait_for`` for the socket
timeout, layers of parsing), more than the rest of a gateway request. The limiter needs only a few commands, each
with a small reply, so this client does the least: commands are encoded to one ``bytes`` and written at once;
every concurrent caller shares one connection (pipelining), and replies, which Redis sends in order, are matched
first-in first-out to futures by an :class:`asyncio.Protocol` that parses them incrementally.

Failures: when the connection cannot be made, is reset or closed, every pending command fails with
:class:`RespConnectionError`; the next command connects again. A command not answered within ``timeout`` fails
with :class:`RespTimeoutError` together with every other pending one, and the connection is closed (its later
replies could no longer be matched). Commands are never retried once written: a script may have run. One timer per
connection, set on the oldest pending command, keeps the timeout without a timer per command. A caller cancelled
while waiting leaves its future in the queue, so the replies after it still go to the right callers.

Failover: an error reply ``READONLY`` (the server was demoted to a replica under us: a failover, a managed
Redis moving its primary; before Redis 7, a script's write on a replica answers ``ERR Error running script ...
-READONLY ...``, which counts too) closes the connection after the replies already read, so the next command
connects again, through Sentinel to the new master or, by name, to wherever the name points now. With
``health_check_interval`` an idle connection is checked (PING; ROLE through Sentinel) without waiting on any
command. TCP keepalive is on unless the URL turns it off.

URLs (:mod:`.redis_url`): ``redis://``, ``rediss://`` (TLS), ``unix://``, ``redis+sentinel://`` and
``rediss+sentinel://``, with redis-py's option names. Replies: simple strings are ``str``, bulk strings ``bytes``,
null ``None``; an error inside an array is a :class:`RespError` value, an error reply raises it. A reply is parsed
again from its start when it arrives in pieces, fine for small replies, slow for huge ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from .redis_url import parse_redis_url
from .sentinel import Address, discover_master, master_role, switched_master

__all__ = [
    "Arg",
    "RespClient",
    "RespConnectionError",
    "RespError",
    "RespTimeoutError",
    "Script",
    "encode_command",
    "parse_reply",
]

Arg = str | bytes | int | float


class RespError(Exception):
    """An error reply from Redis (``ERR ...``, ``NOSCRIPT ...``, ``WRONGPASS ...``): the message is Redis's."""


class RespConnectionError(ConnectionError):
    """Redis could not be reached, or the connection broke (reset, closed, a reply that cannot be parsed)."""


class RespTimeoutError(TimeoutError):
    """Redis did not answer in time; the connection was closed and the command may have run."""


def encode_command(args: tuple[Arg, ...] | list[Arg]) -> bytes:
    """``args`` as one RESP array of bulk strings; numbers as their ``repr`` (a bool is refused, as in redis-py)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)
        if kind is str:
            b = arg.encode()  # type: ignore[union-attr]
        elif kind is bytes:
            b = arg
        elif kind is int or kind is float:
            b = repr(arg).encode()
        else:
            b = _encode_other(arg)
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def _encode_other(arg: object) -> bytes:
    """Subclasses of str, bytes, int and float (an enum's value); a bool is refused."""
    if isinstance(arg, str):
        return str.encode(arg)
    if isinstance(arg, bytes):
        return bytes(arg)
    if isinstance(arg, int | float) and not isinstance(arg, bool):
        return repr(int(arg) if isinstance(arg, int) else float(arg)).encode()
    raise TypeError(f"a Redis command argument must be str, bytes, int or float, not {type(arg).__name__}")


def parse_reply(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """The reply starting at ``buf[pos]`` and the position after it, or ``(None, -1)`` when it is not complete yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None, -1
    kind = buf[pos]
    if kind == 58:  # ':' integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 42:  # '*' array
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        items = []
        p = end + 2
        for _ in range(n):
            if p >= len(buf):
                return None, -1
            item, p = parse_reply(buf, p)
            if p < 0:
                return None, -1
            items.append(item)
        return items, p
    if kind == 36:  # '$' bulk string
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        start = end + 2
        if len(buf) < start + n + 2:
            return None, -1
        return buf[start : start + n], start + n + 2
    if kind == 43:  # '+' simple string
        return buf[pos + 1 : end].decode(), end + 2
    if kind == 45:  # '-' error
        return RespError(buf[pos + 1 : end].decode(errors="replace")), end + 2
    raise RespConnectionError(f"invalid reply from Redis: {bytes(buf[pos : pos + 40])!r}")


class Script:
    """A Lua script run with EVALSHA; its SHA1 is computed here, so the first call needs no SCRIPT LOAD."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


class _Protocol(asyncio.Protocol):
    """One connection: writes commands, matches replies FIFO to futures, fails them all on loss or timeout."""

    def __init__(self, where: str, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.where = where
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.broken = False  # no new command may be written
        self.lost = self.loop.create_future()
        self._pending: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._buf = b""
        self._timer: asyncio.TimerHandle | None = None
        self._health: asyncio.TimerHandle | None = None
        self._health_every = 0.0
        self._check_role = False
        #: a subscribed connection's messages (replies with no command waiting); else such a reply breaks it
        self.on_push: Callable[[Any], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not derive from it

    def send(self, data: bytes, count: int = 1) -> list[asyncio.Future[Any]]:
        """Write ``data`` (``count`` commands) and return the futures of their replies, in order."""
        if self.broken or self.transport is None:
            raise RespConnectionError(f"Connection to {self.where} lost before the command was sent")
        self.transport.write(data)
        deadline = self.loop.time() + self.timeout
        futures = [self.loop.create_future() for _ in range(count)]
        self._pending.extend((deadline, f) for f in futures)
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._check_timeout)
        return futures

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos, size, pending = 0, len(buf), self._pending
        try:
            while pos < size:
                reply, nxt = parse_reply(buf, pos)
                if nxt < 0:
                    break
                pos = nxt
                if not pending:
                    if self.on_push is None:
                        raise RespConnectionError(f"Redis at {self.where} sent a reply nobody asked for")
                    self.on_push(reply)
                    continue
                future = pending.popleft()[1]
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, RespError):
                    future.set_exception(reply)
                    if _read_only(str(reply)):
                        self._demoted()
                else:
                    future.set_result(reply)
        except (RespConnectionError, ValueError) as exc:
            self.fail(exc if isinstance(exc, RespConnectionError) else RespConnectionError(str(exc)))
            return
        self._buf = buf[pos:] if pos < size else b""

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._pending or self.broken:
            return
        deadline = self._pending[0][0]
        if deadline > self.loop.time():
            self._timer = self.loop.call_at(deadline, self._check_timeout)
            return
        self.fail(RespTimeoutError(f"Timeout reading from {self.where}: no answer within {self.timeout:g} s"))

    def _demoted(self) -> None:
        """A READONLY reply: no new command here; the replies already read still go to their callers, then the
        connection closes (its pending commands fail: they went to a replica)."""
        if not self.broken:
            self.broken = True
            exc = RespConnectionError(f"{self.where} is a read-only replica now (a failover?); connecting again")
            self.loop.call_soon(self.fail, exc)

    def watch(self, interval: float, *, role: bool) -> None:
        """Check the connection every ``interval`` seconds while no command is pending: PING, or ROLE (``role``),
        which must say master. A check not answered in time, or failed, closes the connection."""
        self._health_every, self._check_role = interval, role
        self._health = self.loop.call_later(interval, self._check_health)

    def _check_health(self) -> None:
        self._health = None
        if self.broken:
            return
        if not self._pending:  # else the oldest pending command's timeout watches the connection
            command = b"*1\r\n$4\r\nROLE\r\n" if self._check_role else b"*1\r\n$4\r\nPING\r\n"
            self.send(command)[0].add_done_callback(self._checked)
        self._health = self.loop.call_later(self._health_every, self._check_health)

    def _checked(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or self.broken:
            return
        exc = future.exception()
        if exc is not None and self._check_role and str(exc).startswith("NOPERM"):
            self._check_role = False  # an ACL without +role: PING from now on
        elif exc is not None:
            self.fail(RespConnectionError(f"The health check of {self.where} failed ({exc})"))
        elif self._check_role and (role := master_role(future.result())) is not None:
            self.fail(RespConnectionError(f"{self.where} is no longer the master (ROLE: {role}); connecting again"))

    def fail(self, exc: Exception) -> None:
        """Fail every pending command with ``exc`` and close the connection at once."""
        self.broken = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._health is not None:
            self._health.cancel()
            self._health = None
        pending, self._pending = self._pending, deque()
        for _, future in pending:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # a cancelled caller never retrieves it: no "never retrieved" warning
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "closed by the server"
        if isinstance(exc, ssl.SSLError) and exc.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
            reason = "the server wants a client certificate: give ssl_certfile and ssl_keyfile"
        self.fail(RespConnectionError(f"Connection to {self.where} lost ({reason})"))
        if not self.lost.done():
            self.lost.set_result(None)


class RespClient:
    """Runs commands on Redis at ``url`` over one pipelined connection, made on first use and again after a loss.

    ``url`` is read by :func:`~.redis_url.parse_redis_url` (``ValueError`` when it is invalid, or a TLS file cannot
    be loaded); its ``socket_timeout`` and ``socket_connect_timeout`` win over ``timeout`` and ``connect_timeout``.
    Through Sentinel, every new connection asks the Sentinels for the master first (each Sentinel, and then the
    master, within the connect timeout) and checks its ``ROLE``.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, connect_timeout: float = 2.0) -> None:
        self.settings = s = parse_redis_url(url)
        self.timeout = s.socket_timeout if s.socket_timeout is not None else timeout
        self.connect_timeout = s.socket_connect_timeout if s.socket_connect_timeout is not None else connect_timeout
        self.where = s.where
        self._ssl = s.tls.context() if s.tls is not None else None
        self._sentinels: list[Address] = list(s.sentinels)
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        #: through Sentinel: the task following +switch-master, and how many switches it saw
        self._watch: asyncio.Task[None] | None = None
        self._switches = 0

    async def connect(self) -> None:
        """Make sure there is a connection: once this returns, the next command is written at once (unless the
        connection breaks meanwhile), so a caller cancelled after it knows whether its command was sent."""
        proto = self._proto
        if proto is None or proto.broken:
            await self._ready()

    async def execute(self, *args: Arg) -> Any:
        """Run one command; an error reply raises :class:`RespError`."""
        proto = self._proto
        if proto is None or proto.broken:
            proto = await self._ready()
        return await proto.send(encode_command(args))[0]

    async def run_script(self, script: Script, keys: list[str], args: list[Arg]) -> Any:
        """EVALSHA ``script``; when Redis does not know it (NOSCRIPT: a restart, SCRIPT FLUSH), load it and run it."""
        proto = self._proto
        if proto is None or proto.broken:
            proto = await self._ready()
        command = ["EVALSHA", script.sha, len(keys), *keys, *args]
        try:
            return await proto.send(encode_command(command))[0]
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # the script did not run; load it and run it in one round trip (SCRIPT LOAD: never evicted, unlike EVAL's)
        proto = self._proto
        if proto is None or proto.broken:
            proto = await self._ready()
        loaded, result = proto.send(encode_command(["SCRIPT", "LOAD", script.source]) + encode_command(command), 2)
        try:
            await loaded
        finally:
            result.add_done_callback(_retrieve)
        return await result

    async def aclose(self) -> None:
        """Close the connection (pending commands fail); a later command connects again."""
        if self._connecting is not None:  # let it finish (its waiters are not cancelled), then close it
            with contextlib.suppress(Exception):
                await asyncio.shield(self._connecting)
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.fail(RespConnectionError(f"Connection to {proto.where} closed by the client"))
            await proto.lost

    async def _ready(self) -> _Protocol:
        """A connection to write to: a new one when there is none or it broke (tried twice: it may break at once).

        Every caller waiting meanwhile shares the one attempt, which a caller's cancellation does not stop.
        """
        for _ in range(2):
            proto = self._proto
            if proto is not None and not proto.broken:
                return proto
            if self._connecting is None:
                task = asyncio.ensure_future(self._open())
                task.add_done_callback(self._opened)
                self._connecting = task
            proto = await asyncio.shield(self._connecting)
            if not proto.broken:
                return proto
        raise RespConnectionError(f"Connection to {self.where} lost as soon as it was made")

    def _opened(self, task: asyncio.Task[_Protocol]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._proto = task.result()

    async def _open(self) -> _Protocol:
        """A new connection, logged in, on the right database, checked (through Sentinel: on the master)."""
        s = self.settings
        setup: list[list[Arg]] = []
        if s.password is not None:
            setup.append(["AUTH", *([] if s.username is None else [s.username]), s.password])
        if s.db:
            setup.append(["SELECT", s.db])
        if s.service is None:
            proto = await self._connect(self.where, (s.host, s.port), setup)
        else:
            if self._watch is None:
                self._watch = asyncio.ensure_future(self._follow_switches())
            switches = self._switches
            host, port = await discover_master(s, self._sentinels, self._ask)
            where = f"{_show(host, port)} (the master of {s.service!r})"
            proto = await self._connect(where, (host, port), [*setup, ["ROLE"]])
            if self._switches != switches:
                proto.fail(RespConnectionError(f"Connection to {where} not used: the master moved meanwhile"))
                raise RespConnectionError(f"The master of {s.service!r} moved while connecting; try again")
        if s.health_check_interval:
            proto.watch(s.health_check_interval, role=s.service is not None)
        return proto

    async def _follow_switches(self) -> None:
        """Subscribed to ``+switch-master`` on one Sentinel (the first that answers, in discovery order): when the
        master of this client's service moves, the connection to the old one is closed at once, so the next
        command connects to the new one (the old master may accept writes until Sentinel demotes it)."""
        s = self.settings
        login: list[list[Arg]] = []
        if s.sentinel_password is not None:
            login.append(["AUTH", *([] if s.sentinel_username is None else [s.sentinel_username]), s.sentinel_password])
        delay = 0.1
        while True:
            for host, port in list(self._sentinels):
                try:
                    proto = await self._connect(f"Sentinel {_show(host, port)}", (host, port), login)
                except (RespError, OSError):
                    continue
                try:
                    proto.on_push = self._switched
                    await proto.send(encode_command(["SUBSCRIBE", "+switch-master"]))[0]
                    delay = 0.1
                    await proto.lost
                except (RespError, OSError):
                    pass
                finally:
                    proto.fail(RespConnectionError(f"Connection to {proto.where} closed by the client"))
            await asyncio.sleep(delay)  # no Sentinel answers: try again, less and less often
            delay = min(delay * 2, 5.0)

    def _switched(self, message: Any) -> None:
        moved = switched_master(message, self.settings.service)
        if moved is None:
            return
        self._switches += 1
        proto = self._proto
        if proto is not None and not proto.broken:
            host, port = moved
            proto.fail(RespConnectionError(f"The master of {self.settings.service!r} moved to {_show(host, port)}"))

    async def _ask(self, address: Address, commands: list[list[Any]]) -> list[Any]:
        """``commands``' replies from the Sentinel at ``address``, over a connection of their own."""
        host, port = address
        proto = await self._connect(f"Sentinel {_show(host, port)}", address, [])
        try:
            futures = proto.send(b"".join(map(encode_command, commands)), len(commands))
            for future in futures:
                future.add_done_callback(_retrieve)
            replies = []
            for future in futures:
                try:
                    replies.append(await future)
                except RespError as exc:
                    raise RespConnectionError(f"Sentinel {_show(host, port)} answered {exc}") from None
            return replies
        finally:
            proto.fail(RespConnectionError(f"Connection to {proto.where} closed by the client"))

    async def _connect(self, where: str, address: Address, setup: list[list[Arg]]) -> _Protocol:
        """Connect to ``address`` (``self.settings.path`` for a socket) and run ``setup`` (AUTH first, ROLE last:
        it must say master), all within the connect timeout."""
        loop = asyncio.get_running_loop()
        proto: _Protocol | None = None

        def factory() -> _Protocol:
            nonlocal proto
            proto = _Protocol(where, self.timeout)
            return proto

        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.settings.path is not None:
                    await loop.create_unix_connection(factory, self.settings.path)
                else:
                    transport, _ = await loop.create_connection(factory, *address, ssl=self._ssl)
                    if self.settings.socket_keepalive:
                        _keepalive(transport)
                assert proto is not None
                if setup:
                    futures = proto.send(b"".join(map(encode_command, setup)), len(setup))
                    for future in futures:  # after a failed step, the next ones' errors are not awaited
                        future.add_done_callback(_retrieve)
                    for command, future in zip(setup, futures, strict=True):
                        reply = await _setup_reply(where, command, future)
                        if command[0] == "ROLE" and (role := master_role(reply)) is not None:
                            raise RespConnectionError(
                                f"{where} is not a master (ROLE: {role}): a failover is under way, try again"
                            )
        except BaseException as exc:
            if proto is not None:
                proto.fail(RespConnectionError(f"Connection to {where} not set up"))
            if isinstance(exc, RespError | RespConnectionError | RespTimeoutError):
                raise
            if isinstance(exc, TimeoutError):
                raise RespTimeoutError(f"Timeout connecting to {where}") from exc
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise RespConnectionError(
                    f"TLS with {where} failed: the server's certificate was refused ({exc.verify_message.rstrip('.')}; "
                    "see ssl_ca_certs and ssl_check_hostname)"
                ) from exc
            if isinstance(exc, ssl.SSLError):
                raise RespConnectionError(f"TLS with {where} failed: {exc}") from exc
            if isinstance(exc, OSError):
                errno = exc.errno
                reason = os.strerror(errno) if errno and errno > 0 else exc.strerror or str(exc)
                if errno is None:
                    raise RespConnectionError(f"Error connecting to {where}. {reason}.") from exc
                raise RespConnectionError(f"Error {errno} connecting to {where}. {reason}.") from exc
            raise
        return proto


async def _setup_reply(where: str, command: list[Arg], future: asyncio.Future[Any]) -> Any:
    try:
        return await future
    except RespError as exc:
        if command[0] == "ROLE" and str(exc).startswith("NOPERM"):
            return [b"master"]  # an ACL without +role: Sentinel's word is taken (READONLY still moves the client)
        if command[0] != "AUTH":
            raise
        user = f"user {command[1]!r}" if len(command) == 3 else "the default user"
        raise RespError(f"Redis at {where} refused the login as {user}: {exc}") from None


def _keepalive(transport: asyncio.BaseTransport) -> None:
    """TCP keepalive on the connection: probes after 60 s idle, every 15 s, 4 unanswered ones close it (Linux)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_only(message: str) -> bool:
    """An error reply saying the server is a read-only replica: ``READONLY ...`` (Redis 7: any command, a script's
    write too), or, before Redis 7, a script's write wrapped in ``ERR Error running script (call to f_...):
    @user_script:N: @user_script: N: -READONLY You can't write against a read only replica.``"""
    return message.startswith("READONLY") or (
        message.startswith("ERR Error running script") and "-READONLY " in message
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
