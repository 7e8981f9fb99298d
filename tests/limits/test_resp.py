"""The limiter's Redis client: parsing at every split, pipelining, NOSCRIPT, AUTH/SELECT, lost connections, timeouts.

Each test runs on asyncio's loop and on uvloop (the gateway's), against the Redis server or a fake one that these
tests control (to close, stay silent, or answer late).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from modelway.errors import ConfigError
from modelway.limits import LimiterUnavailableError, Limits
from modelway.limits.redis import RedisLimiter
from modelway.limits.resp import (
    RespClient,
    RespConnectionError,
    RespError,
    RespTimeoutError,
    Script,
    _Protocol,
    encode_command,
    parse_reply,
)
from services import REDIS_URL

Run = Callable[[Coroutine[Any, Any, Any]], Any]


#: one of each reply type, and its value
REPLIES: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", "OK"),
    (b"+\r\n", ""),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:0\r\n:5\r\n:0\r\n", [0, 5, 0]),
    (b"*4\r\n*2\r\n$1\r\nx\r\n$-1\r\n*0\r\n+OK\r\n*-1\r\n", [[b"x", None], [], "OK", None]),
]


needs_redis = pytest.mark.usefixtures("redis_server")


class FakeRedis:
    """A server that reads commands and lets the test decide what happens: ``handle(conn, command)``."""

    def __init__(self, handle: Callable[[int, list[bytes], asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.handle = handle
        self.connections = 0
        self.commands: list[list[bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self, path: str | None = None) -> str:
        if path is not None:
            self.server = await asyncio.start_unix_server(self._serve, path)
            return f"unix://{path}"
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                command = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    command.append((await reader.readexactly(size + 2))[:-2])
                self.commands.append(command)
                await self.handle(conn, command, writer)
                if writer.is_closing():
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class FakeTransport:
    """Takes the place of a socket for the protocol, to feed it bytes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


class TestParser:
    def test_encode(self) -> None:
        assert encode_command(["SET", b"k\r\n", 5, 0.5, "é"]) == (
            b"*5\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n$3\r\n0.5\r\n$2\r\n\xc3\xa9\r\n"
        )
        with pytest.raises(TypeError):
            encode_command(["SET", True])

    @pytest.mark.parametrize(("data", "value"), REPLIES)
    def test_every_reply_type_whole_and_cut_short(self, data: bytes, value: Any) -> None:
        assert parse_reply(data) == (value, len(data))
        assert parse_reply(b"xx" + data + b"+next\r\n", 2) == (value, 2 + len(data))
        for cut in range(1, len(data)):
            assert parse_reply(data[:cut]) == (None, -1), cut

    def test_error_replies(self) -> None:
        err, end = parse_reply(b"-ERR boom\r\n")
        assert isinstance(err, RespError) and str(err) == "ERR boom" and end == 11
        items, _ = parse_reply(b"*2\r\n-WRONGTYPE no\r\n:1\r\n")
        assert isinstance(items[0], RespError) and str(items[0]) == "WRONGTYPE no" and items[1] == 1
        with pytest.raises(RespConnectionError, match="invalid reply"):
            parse_reply(b"?what\r\n")

    def test_a_stream_split_at_every_byte(self, run: Run) -> None:
        stream = b"".join(d for d, _ in REPLIES) + b"-ERR boom\r\n"
        expected = [v for _, v in REPLIES]

        async def feed(pieces: list[bytes]) -> None:
            proto = _Protocol("test", 1.0)
            proto.connection_made(FakeTransport())  # type: ignore[arg-type]
            futures = proto.send(b"", len(expected) + 1)
            for piece in pieces:
                proto.data_received(piece)
            assert [f.result() for f in futures[:-1]] == expected
            with pytest.raises(RespError, match="ERR boom"):
                futures[-1].result()
            proto.fail(RespConnectionError("done"))

        async def main() -> None:
            for cut in range(1, len(stream)):
                await feed([stream[:cut], stream[cut:]])
            await feed([stream[i : i + 1] for i in range(len(stream))])

        run(main())

    def test_a_reply_nobody_asked_for_breaks_the_connection(self, run: Run) -> None:
        async def main() -> None:
            proto = _Protocol("test", 1.0)
            transport = FakeTransport()
            proto.connection_made(transport)  # type: ignore[arg-type]
            proto.data_received(b"+OK\r\n")
            assert proto.broken and transport.aborted

        run(main())

    @pytest.mark.parametrize(
        ("reply", "demoted"),
        [
            (b"-READONLY You can't write against a read only replica.\r\n", True),
            # Redis 7: a script's write on a replica
            (b"-READONLY You can't write against a read only replica. script: 9861b3, on @user_script:23.\r\n", True),
            # before Redis 7 (6.2 here): the same, wrapped in the script's error
            (
                b"-ERR Error running script (call to f_9861b3): @user_script:23: @user_script: 23: "
                b"-READONLY You can't write against a read only replica.\r\n",
                True,
            ),
            (b"-ERR unknown command 'READONLY'\r\n", False),
            (b"-ERR Error running script (call to f_9861b3): @user_script:1: oops\r\n", False),
        ],
    )
    def test_a_readonly_reply_closes_the_connection(self, run: Run, reply: bytes, demoted: bool) -> None:
        async def main() -> None:
            proto = _Protocol("test", 1.0)
            transport = FakeTransport()
            proto.connection_made(transport)  # type: ignore[arg-type]
            future, later = proto.send(b"", 2)
            proto.data_received(reply)
            with pytest.raises(RespError):
                future.result()
            assert proto.broken is demoted
            await asyncio.sleep(0)
            assert transport.aborted is demoted
            if demoted:
                with pytest.raises(RespConnectionError, match="read-only replica now"):
                    later.result()
            proto.fail(RespConnectionError("done"))

        run(main())


class TestUrls:
    def test_parts(self) -> None:
        c = RespClient("redis://us%40er:p%3Aw@redis.internal:6380/2?socket_timeout=0.5&max_connections=9")
        s = c.settings
        assert (s.host, s.port, s.db, s.username, s.password, c.timeout, s.tls) == (
            "redis.internal",
            6380,
            2,
            "us@er",
            "p:w",
            0.5,
            None,
        )
        c = RespClient("rediss://:pw@h")
        s = c.settings
        assert (s.host, s.port, s.db, s.username, s.password) == ("h", 6379, 0, None, "pw")
        assert s.tls is not None and s.tls.cert_reqs == "required" and s.tls.check_hostname
        c = RespClient("unix:///run/redis.sock?db=3&password=pw&socket_connect_timeout=1")
        assert (c.settings.path, c.settings.db, c.settings.password, c.connect_timeout) == (
            "/run/redis.sock",
            3,
            "pw",
            1.0,
        )

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("http://h/", "scheme"),
            ("redis://h/x", "db must be a whole number"),
            ("redis://h/0?ssl_cert_reqs=none", "needs TLS"),
            ("unix://", "path"),
        ],
    )
    def test_invalid(self, url: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            RespClient(url)
        with pytest.raises(ConfigError, match="invalid Redis URL"):
            RedisLimiter(url)


@needs_redis
class TestRedis:
    def test_commands_and_error_replies(self, run: Run) -> None:
        async def main() -> None:
            c = RespClient(REDIS_URL)
            key = f"mwtest:{uuid4().hex}"
            try:
                assert await c.execute("SET", key, "1.5", "NX", "EX", 60) == "OK"
                assert await c.execute("SET", key, "2", "NX", "EX", 60) is None
                assert await c.execute("GET", key) == b"1.5"
                with pytest.raises(RespError, match="^ERR unknown command"):
                    await c.execute("NOSUCHCOMMAND")
                assert await c.execute("PING") == "PONG"  # the connection still works after an error reply
            finally:
                await c.execute("DEL", key)
                await c.aclose()

        run(main())

    def test_pipelining_1000_concurrent_commands_on_one_connection(self, run: Run) -> None:
        async def main() -> None:
            c = RespClient(REDIS_URL)
            key = f"mwtest:{uuid4().hex}"
            try:
                echoes = [c.execute("ECHO", f"v{i}" * (i % 7)) for i in range(1000)]
                incrs = [c.execute("INCR", key) for _ in range(1000)]
                results = await asyncio.gather(*echoes, *incrs)
                assert results[:1000] == [f"v{i}".encode() * (i % 7) for i in range(1000)]
                assert sorted(results[1000:]) == list(range(1, 1001))
                clients = (await c.execute("CLIENT", "LIST")).decode()
                assert clients.count(f"id={await c.execute('CLIENT', 'ID')} ") == 1
            finally:
                await c.execute("DEL", key)
                await c.aclose()

        run(main())

    def test_noscript_loads_the_script_again(self, run: Run) -> None:
        async def main() -> None:
            c, admin = RespClient(REDIS_URL), RespClient(REDIS_URL)
            script = Script(f"return {{ARGV[1], KEYS[1], '{uuid4().hex}'}}")
            try:
                assert (await c.run_script(script, ["k"], ["a"]))[:2] == [b"a", b"k"]  # unknown at first
                assert await c.execute("SCRIPT", "EXISTS", script.sha) == [1]
                assert await admin.execute("SCRIPT", "FLUSH") == "OK"
                results = await asyncio.gather(*(c.run_script(script, ["k"], [i]) for i in range(50)))
                assert [r[0] for r in results] == [str(i).encode() for i in range(50)]
                with pytest.raises(RespError, match="ERR"):
                    await c.run_script(Script("return syntax error here"), [], [])
            finally:
                await c.aclose()
                await admin.aclose()

        run(main())

    def test_auth_and_select_from_the_url(self, run: Run) -> None:
        async def main() -> None:
            admin = RespClient(REDIS_URL)
            user, password, key = f"mwtest-{uuid4().hex}", "s3:cr@t", f"mwtest:{uuid4().hex}"
            base = urlsplit(REDIS_URL)
            where = f"{base.hostname}:{base.port or 6379}"
            await admin.execute("ACL", "SETUSER", user, "on", f">{password}", "~mwtest:*", "+@all")
            c = RespClient(f"redis://{user}:s3%3Acr%40t@{where}/13")
            wrong = RespClient(f"redis://{user}:nope@{where}/13")
            try:
                assert await c.execute("SET", key, "in 13") == "OK"
                assert await c.execute("ACL", "WHOAMI") == user.encode()
                assert await admin.execute("GET", key) is None
                await admin.execute("SELECT", 13)
                assert await admin.execute("GET", key) == b"in 13"
                with pytest.raises(RespError, match="WRONGPASS"):
                    await wrong.execute("PING")
                with pytest.raises(LimiterUnavailableError, match="WRONGPASS"):
                    await RedisLimiter(f"redis://{user}:nope@{where}/13").spent("k", "total")
            finally:
                await admin.execute("DEL", key)
                await admin.execute("ACL", "DELUSER", user)
                for client in (c, wrong, admin):
                    await client.aclose()

        run(main())

    def test_a_killed_connection_fails_pending_commands_then_reconnects(self, run: Run) -> None:
        async def main() -> None:
            c, admin = RespClient(REDIS_URL), RespClient(REDIS_URL)
            key = f"mwtest:{uuid4().hex}"
            try:
                first = await c.execute("CLIENT", "ID")
                pending = [asyncio.ensure_future(c.execute("BLPOP", key, 5)), asyncio.ensure_future(c.execute("PING"))]
                await asyncio.sleep(0.05)
                assert await admin.execute("CLIENT", "KILL", "ID", first) == 1
                for future in pending:
                    with pytest.raises(RespConnectionError, match="lost"):
                        await future
                assert await c.execute("PING") == "PONG"
                second = await c.execute("CLIENT", "ID")
                assert second != first
                assert await admin.execute("CLIENT", "KILL", "ID", second) == 1  # while idle
                await asyncio.sleep(0.05)
                assert await c.execute("PING") == "PONG"  # seen broken before sending: a new connection
            finally:
                await c.aclose()
                await admin.aclose()

        run(main())


class TestFakeServer:
    def test_closed_mid_flight_fails_pending_then_reconnects(self, run: Run) -> None:
        async def handle(conn: int, command: list[bytes], writer: asyncio.StreamWriter) -> None:
            if conn == 1 and command[0] == b"SLOW":
                writer.close()  # with a command in flight
            else:
                writer.write(b"+OK\r\n")

        async def main() -> None:
            server = FakeRedis(handle)
            c = RespClient(await server.start())
            try:
                assert await c.execute("FIRST") == "OK"
                results = await asyncio.gather(c.execute("SLOW"), c.execute("NEXT"), return_exceptions=True)
                assert all(isinstance(r, RespConnectionError) for r in results), results
                assert await c.execute("AGAIN") == "OK"
                assert server.connections == 2
            finally:
                await c.aclose()
                await server.stop()

        run(main())

    def test_no_answer_times_out_once_and_closes(self, run: Run) -> None:
        async def handle(conn: int, command: list[bytes], writer: asyncio.StreamWriter) -> None:
            if conn > 1:
                writer.write(b"+PONG\r\n")

        async def main() -> None:
            server = FakeRedis(handle)
            url = await server.start()
            c = RespClient(url, timeout=0.2)
            try:
                started = time.monotonic()
                first = asyncio.ensure_future(c.execute("PING"))
                await asyncio.sleep(0.1)
                results = await asyncio.gather(first, *(c.execute("PING") for _ in range(100)), return_exceptions=True)
                elapsed = time.monotonic() - started
                assert all(isinstance(r, RespTimeoutError) for r in results), results
                assert 0.19 <= elapsed < 0.6, elapsed  # the first command's deadline, for every pending one
                assert "no answer within 0.2 s" in str(results[0])
                assert await c.execute("PING") == "PONG"  # on a new connection: the old one was closed
                assert server.connections == 2
                lim = RedisLimiter(url + "?socket_timeout=0.1")
                server.handle = _silent
                with pytest.raises(LimiterUnavailableError, match="Timeout reading from"):
                    await lim.acquire("k", Limits(rpm=1))
                await lim.aclose()
            finally:
                await c.aclose()
                await server.stop()

        run(main())

    def test_a_cancelled_caller_does_not_shift_the_replies(self, run: Run) -> None:
        release = asyncio.Event()

        async def handle(conn: int, command: list[bytes], writer: asyncio.StreamWriter) -> None:
            if command[0] == b"A":
                await release.wait()
            writer.write(b":%s\r\n" % command[1])

        async def main() -> None:
            server = FakeRedis(handle)
            c = RespClient(await server.start())
            try:
                a = asyncio.ensure_future(c.execute("A", 1))
                b = asyncio.ensure_future(c.execute("B", 2))
                await asyncio.sleep(0.05)
                a.cancel()
                release.set()
                assert await b == 2
                assert await c.execute("C", 3) == 3
            finally:
                await c.aclose()
                await server.stop()

        run(main())

    def test_auth_and_select_over_a_unix_socket(self, run: Run, tmp_path: Any) -> None:
        async def handle(conn: int, command: list[bytes], writer: asyncio.StreamWriter) -> None:
            writer.write(b"+OK\r\n")

        async def main() -> None:
            server = FakeRedis(handle)
            url = await server.start(str(tmp_path / "redis.sock"))
            c = RespClient(url + "?db=5&username=u&password=p%20w")
            try:
                assert await c.execute("PING") == "OK"
                assert server.commands == [[b"AUTH", b"u", b"p w"], [b"SELECT", b"5"], [b"PING"]]
            finally:
                await c.aclose()
                await server.stop()

        run(main())

    def test_connection_refused(self, run: Run) -> None:
        async def main() -> None:
            c = RespClient("redis://127.0.0.1:1/0")
            for _ in range(2):  # tried again on each command
                with pytest.raises(RespConnectionError, match=r"^Error 111 connecting to 127.0.0.1:1\. Connection"):
                    await c.execute("PING")
            await c.aclose()

        run(main())


async def _silent(conn: int, command: list[bytes], writer: asyncio.StreamWriter) -> None:
    """Never answers."""
