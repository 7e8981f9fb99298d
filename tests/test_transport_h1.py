"""The lean HTTP/1.1 client (modelway.h1), played against a raw asyncio server that writes exact bytes:
pooling and its limits, the stale-connection retry, bounds on the answer's head, read-side flow control, header
injection, timeouts, and the framings of a body."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType

import pytest

from modelway import errors
from modelway.h1 import conn as h1_conn
from modelway.h1 import pool as h1_pool
from modelway.h1 import request as h1_request
from modelway.providers.base import HTTPRequest
from modelway.transport import Transport

Play = Callable[["Exchange"], Awaitable[bool]]  # the answer to one request; False: close the connection after it

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Exchange:
    """One request as the server read it, on its connection (``conn``: 0 for the server's first connection)."""

    def __init__(self, index: int, conn: int, head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        self.index, self.conn, self.head, self.body, self.writer = index, conn, head, body, writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def reset(self) -> None:
        import socket
        import struct

        self.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class Server:
    """Reads requests framed by Content-Length and answers each with ``play``; counts connections."""

    def __init__(self, play: Play) -> None:
        self.play = play
        self.requests: list[Exchange] = []
        self.conns = 0
        self.open = 0
        self.most_open = 0
        self.closed_by_client = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/x"

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = self.conns
        self.conns += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                ex = Exchange(len(self.requests), conn, head, await reader.readexactly(length), writer)
                self.requests.append(ex)
                if not await self.play(ex):
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self._tasks.discard(task)


def request(url: str, body: bytes | None = b"{}", **headers: str) -> HTTPRequest:
    return HTTPRequest("POST", url, {"Content-Type": "application/json", **headers}, body, provider="p")


async def answer_ok(ex: Exchange) -> bool:
    ex.write(OK)
    return True


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport(backend="h1")
    yield t
    await t.aclose()


def pool(t: Transport) -> h1_pool.Pool:
    p = t._backend._pool  # type: ignore[attr-defined]
    assert p is not None
    return p  # type: ignore[no-any-return]


def test_the_default_backend_is_h1_and_the_environment_can_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWAY_TRANSPORT", raising=False)
    assert Transport().backend == "h1"
    assert Transport(backend="aiohttp").backend == "aiohttp"
    monkeypatch.setenv("MODELWAY_TRANSPORT", "aiohttp")
    assert Transport().backend == "aiohttp"
    assert Transport(backend="h1").backend == "h1"  # a backend asked for by name is the one used
    monkeypatch.setenv("MODELWAY_TRANSPORT", "h2")
    with pytest.raises(errors.ConfigError, match="h1, aiohttp"):
        Transport()


# -- pooling ---------------------------------------------------------------------------------------------------
async def test_sequential_requests_share_one_connection(transport: Transport) -> None:
    async with Server(answer_ok) as server:
        for _ in range(5):
            resp = await transport.send(request(server.url), timeout=5)
            assert (resp.status, resp.body) == (200, b"{}")
            assert transport.in_use() == 0
        for _ in range(3):
            async with await transport.stream(request(server.url), timeout=5) as s:
                assert b"".join([d async for d in s.iter_bytes()]) == b"{}"
        assert server.conns == 1 and len(server.requests) == 8


async def test_what_goes_on_the_wire(transport: Transport) -> None:
    async with Server(answer_ok) as server:
        url = f"http://127.0.0.1:{server.port}/v1/a b/ü?q=1"
        await transport.send(request(url, Authorization="Bearer k", Accept="text/event-stream"), timeout=5)
        await transport.send(HTTPRequest("GET", server.url, {}, None, "p"), timeout=5)
    post, get = (ex.head.decode() for ex in server.requests)
    lines = post.split("\r\n")
    assert lines[0] == "POST /v1/a%20b/%C3%BC?q=1 HTTP/1.1"
    for line in (
        f"Host: 127.0.0.1:{server.port}",
        "User-Agent: modelway",
        "Accept-Encoding: gzip, deflate",
        "Authorization: Bearer k",
        "Accept: text/event-stream",
        "Content-Type: application/json",
        "Content-Length: 2",
    ):
        assert line in lines
    assert "Accept: */*" not in lines  # the request's own Accept wins
    assert server.requests[0].body == b"{}"
    assert get.startswith("GET /v1/x HTTP/1.1\r\n") and "Content-Length" not in get


async def test_header_injection_is_refused_before_anything_is_sent(transport: Transport) -> None:
    async with Server(answer_ok) as server:
        for headers in ({"Authorization": "Bearer k\r\nX-Evil: 1"}, {"X-A\nB": "v"}, {"A": "b\0c"}):
            with pytest.raises(errors.ConfigError, match="header injection"):
                await transport.send(HTTPRequest("POST", server.url, headers, b"{}", "p"), timeout=5)
        with pytest.raises(errors.ConfigError, match="header injection"):
            await transport.send(request(server.url + "\r\nX-Evil: 1"), timeout=5)
        with pytest.raises(errors.ConfigError, match="header injection"):
            await transport.stream(request(server.url, Authorization="k\n"), timeout=5)
        assert server.conns == 0
        assert (await transport.send(request(server.url), timeout=5)).status == 200


async def test_a_pooled_connection_the_server_closed_is_sent_again_once(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        if ex.index == 1:
            return False  # the server closed the idle connection as the request came: FIN, no answer
        ex.write(OK)
        return True

    async with Server(play) as server:
        assert (await transport.send(request(server.url), timeout=5)).status == 200
        assert (await transport.send(request(server.url), timeout=5)).status == 200
        assert [ex.conn for ex in server.requests] == [0, 0, 1]


async def test_no_second_try_after_a_reset_an_answer_byte_or_on_a_new_connection(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        if ex.index in (0, 2, 4):
            ex.write(OK)
            return True
        if ex.index == 1:
            ex.reset()  # a reset: the server may have seen the request
        elif ex.index == 3:
            ex.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # some of an answer, then the end
        return False

    async with Server(play) as server:
        await transport.send(request(server.url), timeout=5)
        with pytest.raises(errors.ProviderConnectionError, match="connection reset by peer"):
            await transport.send(request(server.url), timeout=5)
        await transport.send(request(server.url), timeout=5)
        with pytest.raises(errors.ProviderConnectionError, match="closed before an answer"):
            await transport.send(request(server.url), timeout=5)
        assert len(server.requests) == 4
        await transport.send(request(server.url), timeout=5)
        assert len(server.requests) == 5

    async def close_at_once(ex: Exchange) -> bool:
        return False

    async with Server(close_at_once) as server:  # a new connection is not retried
        with pytest.raises(errors.ProviderConnectionError, match="closed before an answer"):
            await transport.send(request(server.url), timeout=5)
        assert len(server.requests) == 1


async def test_an_idle_connection_the_server_closes_leaves_the_pool_at_once(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(OK)
        await ex.writer.drain()
        await asyncio.sleep(0.05)
        return False  # keep-alive said, then closed while idle

    async with Server(play) as server:
        await transport.send(request(server.url), timeout=5)
        await asyncio.sleep(0.2)
        assert pool(transport).open == 0
        await transport.send(request(server.url), timeout=5)
        assert [ex.conn for ex in server.requests] == [0, 1]  # no request met the closed connection


async def test_idle_connections_expire(transport: Transport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1_pool, "KEEPALIVE", 0.1)
    async with Server(answer_ok) as server:
        await transport.send(request(server.url), timeout=5)
        assert pool(transport).open == 1
        await asyncio.sleep(0.3)
        assert pool(transport).open == 0 and server.closed_by_client == 1
        await transport.send(request(server.url), timeout=5)
        assert server.conns == 2


async def test_an_unfinished_stream_closes_its_connection(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(10)
        return True

    async with Server(play) as server:
        s = await transport.stream(request(server.url), timeout=5)
        async for data in s.iter_bytes():
            assert data == b"abc"
            break
        assert transport.in_use() == 1
        await s.aclose()
        assert transport.in_use() == 0 and pool(transport).open == 0


# -- limits ----------------------------------------------------------------------------------------------------
def slow(seconds: float) -> Play:
    async def play(ex: Exchange) -> bool:
        await asyncio.sleep(seconds)
        ex.write(OK)
        return True

    return play


async def test_limit_per_host_makes_callers_wait_in_order() -> None:
    t = Transport(limit_per_host=1, backend="h1")
    try:
        async with Server(slow(0.1)) as server:
            order: list[int] = []

            async def call(i: int) -> None:
                await t.send(request(server.url, body=b'{"i": %d}' % i), timeout=5)
                order.append(i)

            tasks = []
            start = time.monotonic()
            for i in range(4):
                tasks.append(asyncio.create_task(call(i)))
                await asyncio.sleep(0.01)  # they queue in this order
            await asyncio.gather(*tasks)
            assert time.monotonic() - start >= 0.39  # one after the other
            assert order == [0, 1, 2, 3] and [ex.body for ex in server.requests] == [b'{"i": %d}' % i for i in range(4)]
            assert server.conns == 1 and server.most_open == 1

            blocker = asyncio.create_task(t.send(request(server.url), timeout=5))
            await asyncio.sleep(0.01)
            with pytest.raises(errors.ProviderTimeoutError, match="did not answer within 0.05s"):
                await t.send(request(server.url), timeout=0.05)  # its wait for the connection counts
            await blocker
            assert not pool(t).waiters and pool(t).open == 1
    finally:
        await t.aclose()


async def test_the_global_limit_counts_idle_connections_and_closes_one_to_make_room() -> None:
    t = Transport(limit=1, backend="h1")
    try:
        async with Server(slow(0.1)) as a, Server(answer_ok) as b:
            first = asyncio.create_task(t.send(request(a.url), timeout=5))
            await asyncio.sleep(0.02)
            start = time.monotonic()
            await t.send(request(b.url), timeout=5)  # waits for a's connection to end...
            assert time.monotonic() - start >= 0.05
            await first
            await asyncio.sleep(0.05)
            assert a.closed_by_client == 1  # ...and a's idle connection was closed to make room
            assert pool(t).open == 1
    finally:
        await t.aclose()


async def test_a_caller_held_back_by_its_host_does_not_hold_back_callers_for_other_hosts() -> None:
    t = Transport(limit=2, limit_per_host=1, backend="h1")
    try:
        async with Server(slow(0.5)) as a, Server(slow(0.1)) as b, Server(answer_ok) as c:
            done: list[str] = []

            async def call(name: str, url: str) -> None:
                await t.send(request(url), timeout=5)
                done.append(name)

            tasks = [asyncio.create_task(call("a1", a.url)), asyncio.create_task(call("b", b.url))]
            await asyncio.sleep(0.02)  # both limits reached: a1 and b in flight
            tasks.append(asyncio.create_task(call("a2", a.url)))  # waits: its host is at limit_per_host
            await asyncio.sleep(0.01)
            tasks.append(asyncio.create_task(call("c", c.url)))  # waits: the global limit
            await asyncio.gather(*tasks)
            # b's connection, idle once b ends, is closed to make room for c: c does not wait behind a2 for a1
            assert done.index("c") < done.index("a1"), done
            assert b.closed_by_client == 1 and not pool(t).waiters
    finally:
        await t.aclose()


async def test_a_connection_that_died_on_its_way_to_a_waiting_caller_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = Transport(limit_per_host=1, backend="h1")
    try:
        async with Server(slow(0.05)) as server:
            first = asyncio.create_task(t.send(request(server.url), timeout=5))
            await asyncio.sleep(0.01)
            p = pool(t)
            real_put = p.put

            def put(conn: h1_conn.Conn) -> None:
                conn.transport.abort()  # closed as it goes back (its connection_lost runs before the caller)
                real_put(conn)

            monkeypatch.setattr(p, "put", put)
            second = await t.send(request(server.url), timeout=2)  # not written into a dead connection
            assert second.status == 200 and (await first).status == 200
            assert [ex.conn for ex in server.requests] == [0, 1]
            assert t.in_use() == 0
    finally:
        await t.aclose()


async def test_closing_the_transport_while_a_name_is_looked_up_fails_the_call_with_our_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def lookup(self: h1_pool.Pool, host: str, port: int) -> list[h1_pool.AddrInfo]:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    monkeypatch.setattr(h1_pool.Pool, "_lookup", lookup)
    t = Transport(backend="h1")
    call = asyncio.create_task(t.send(request("http://provider.test/v1/x"), timeout=5))
    await asyncio.sleep(0.05)
    await t.aclose()
    with pytest.raises(errors.ProviderConnectionError, match="the transport is closed"):
        await call


async def test_callers_queued_behind_a_limit_survive_connections_the_server_closes_after_each_answer() -> None:
    async def answer_and_close(ex: Exchange) -> bool:
        ex.write(OK)  # keep-alive said, then closed: a connection handed to a waiting caller may be dead on arrival
        return False

    t = Transport(limit_per_host=1, backend="h1")
    try:
        async with Server(answer_and_close) as server:
            answers = await asyncio.gather(*[t.send(request(server.url), timeout=5) for _ in range(100)])
            assert [a.status for a in answers] == [200] * 100 and len(server.requests) == 100
            await asyncio.sleep(0.05)
            assert pool(t).open == 0 and not pool(t).waiters
    finally:
        await t.aclose()


async def test_closing_the_transport_fails_a_caller_that_is_connecting(black_hole: tuple[str, int]) -> None:
    t = Transport(backend="h1", connect_timeout=5)
    call = asyncio.create_task(t.send(request(f"http://{black_hole[0]}:{black_hole[1]}/x"), timeout=10))
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await t.aclose()
    with pytest.raises(errors.ProviderConnectionError, match="the transport is closed"):
        await call
    assert time.monotonic() - start < 1


async def test_a_cancellation_swallowed_while_connecting_still_cancels_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_open = h1_pool.Pool._open

    async def swallowing(self: h1_pool.Pool, t: object, infos: list[h1_pool.AddrInfo]) -> h1_conn.Conn:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # (as aiohappyeyeballs' staggered race can, when a winner is already there)
        return await real_open(self, t, infos)  # type: ignore[arg-type]

    monkeypatch.setattr(h1_pool.Pool, "_open", swallowing)
    t = Transport(backend="h1")
    try:
        async with Server(answer_ok) as server:
            call = asyncio.create_task(t.send(request(server.url), timeout=5))
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.sleep(0.05)
            assert server.requests == [] and pool(t).open == 0  # not sent, and the connection it made is gone
    finally:
        await t.aclose()


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..b", ".example"])
async def test_a_host_name_that_is_not_valid_is_our_error(transport: Transport, host: str) -> None:
    with pytest.raises(errors.ProviderConnectionError, match="host name that is not valid"):
        await transport.send(request(f"http://{host}/x"), timeout=5)


@pytest.fixture
def black_hole() -> Iterator[tuple[str, int]]:
    """An address whose connects hang: a listener that accepts nothing, its queue full (SYNs are dropped)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(address)
        fillers.append(s)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(address)
        pytest.skip("this kernel does not drop connects to a full listen queue")
    except TimeoutError:
        pass
    finally:
        probe.close()
    yield address
    for s in [*fillers, listener]:
        s.close()


async def test_an_address_that_does_not_answer_costs_a_quarter_second_not_the_connect_timeout(
    black_hole: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    async with Server(answer_ok) as server:
        infos: list[h1_pool.AddrInfo] = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", black_hole),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port)),
        ]

        async def lookup(self: h1_pool.Pool, host: str, port: int) -> list[h1_pool.AddrInfo]:
            return infos

        monkeypatch.setattr(h1_pool.Pool, "_lookup", lookup)
        t = Transport(backend="h1", connect_timeout=5)
        try:
            start = time.monotonic()
            assert (await t.send(request(f"http://provider.test:{server.port}/x"), timeout=10)).status == 200
            assert 0.2 < time.monotonic() - start < 2
        finally:
            await t.aclose()

        del infos[1]  # only the black hole: the connect timeout, said as such
        t = Transport(backend="h1", connect_timeout=0.3)
        try:
            with pytest.raises(errors.ProviderTimeoutError, match="did not take a connection within 0.3s"):
                await t.send(request("http://other.test/x"), timeout=10)
            with pytest.raises(errors.ProviderTimeoutError, match="did not answer within 0.2s"):
                await t.send(request("http://other.test/x"), timeout=0.2)  # the request's own time is shorter
            assert pool(t).open == 0
        finally:
            await t.aclose()


# -- answers ---------------------------------------------------------------------------------------------------
async def test_interim_answers_are_skipped(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        ex.write(b"HTTP/1.1 201 Created\r\nX-Multi: a\r\nx-multi: b\r\nContent-Length: 2\r\n")
        ex.write(b"X-Utf8: caf\xc3\xa9\r\nX-Latin1: caf\xe9\r\n\r\nok")  # (a value that is not UTF-8 kept, escaped)
        return True

    async with Server(play) as server:
        resp = await transport.send(request(server.url), timeout=5)
        assert (resp.status, resp.body) == (201, b"ok")
        assert resp.headers == {"x-multi": "b", "content-length": "2", "x-utf8": "café", "x-latin1": "caf\udce9"}
        await transport.send(request(server.url), timeout=5)
        assert server.conns == 1


async def test_a_body_that_ends_with_the_connection(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
        await ex.writer.drain()
        await asyncio.sleep(0.02)
        ex.write(b"world")
        return False

    async with Server(play) as server:
        assert (await transport.send(request(server.url), timeout=5)).body == b"hello world"
        async with await transport.stream(request(server.url), timeout=5) as s:
            assert b"".join([d async for d in s.iter_bytes()]) == b"hello world"
        assert server.conns == 2


async def test_the_head_is_bounded(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        if ex.index == 0:
            ex.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n")
        elif ex.index == 1:
            ex.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\nContent-Length: 2\r\n\r\n{}")
        else:
            ex.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + OK[17:])
        return True

    async with Server(play) as server:
        with pytest.raises(errors.ProviderConnectionError, match="not valid HTTP: .* more than 128 header lines"):
            await transport.send(request(server.url), timeout=5)
        with pytest.raises(errors.ProviderConnectionError, match="not valid HTTP: .* larger than 65536 bytes"):
            await transport.stream(request(server.url), timeout=5)
        assert (await transport.send(request(server.url), timeout=5)).status == 200


async def test_trailers_are_bounded(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Big: ")
        for _ in range(40):
            ex.write(b"a" * 4096)  # a trailer line that never ends, arriving piece by piece
            await ex.writer.drain()
            await asyncio.sleep(0.002)
        await asyncio.sleep(10)
        return True

    async with Server(play) as server:
        with pytest.raises(errors.StreamError, match="chunk framing or trailers are larger than 65536 bytes"):
            await transport.send(request(server.url), timeout=5)
        assert pool(transport).open == 0


async def test_bytes_after_an_answer_keep_its_connection_out_of_the_pool(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(OK + (b"HTTP/1.1 200 OK\r\nContent-" if ex.index == 0 else b""))  # a second answer begins
        return True

    async with Server(play) as server:
        assert (await transport.send(request(server.url), timeout=5)).body == b"{}"
        assert (await transport.send(request(server.url), timeout=5)).body == b"{}"
        assert [ex.conn for ex in server.requests] == [0, 1]


async def test_a_parse_error_mid_body_fails_the_pending_read(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await ex.writer.drain()
        await asyncio.sleep(0.05)
        ex.write(b"zz-not-a-size\r\n")
        await asyncio.sleep(10)  # and the connection stays open
        return True

    async with Server(play) as server:
        s = await transport.stream(request(server.url), timeout=5)
        got = []
        with pytest.raises(errors.StreamError, match="broke off: Invalid character in chunk size"):
            async with asyncio.timeout(2):
                async for data in s.iter_bytes():
                    got.append(data)
        await s.aclose()
        assert got == [b"hello"] and transport.in_use() == 0


async def test_a_slow_consumer_pauses_reading_from_the_provider(transport: Transport) -> None:
    chunk = b"x" * 65536
    total = 16 * 1024 * 1024

    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // len(chunk)):
            ex.write(chunk)
            await ex.writer.drain()
        return True

    async with Server(play) as server:
        s = await transport.stream(request(server.url), timeout=5)
        conn = s._body
        assert isinstance(conn, h1_conn.Conn)
        it = s.iter_bytes()
        received = len(await anext(it))
        await asyncio.sleep(0.3)  # the consumer is busy: the provider keeps writing
        assert conn.read_paused and not conn.transport.is_reading()
        assert conn.buffered <= h1_conn.HIGH_WATER + 256 * 1024
        async for data in it:
            received += len(data)
        assert received == total
        await s.aclose()
        await transport.send(request(server.url), timeout=5)
        assert server.conns == 1  # read to its end: the connection was reused


async def test_a_large_request_body_arrives_whole(transport: Transport) -> None:
    async with Server(answer_ok) as server:
        body = bytes(range(256)) * (8 * 4096 + 7)  # ~8 MiB, in slices under write flow control
        assert (await transport.send(request(server.url, body=body), timeout=10)).status == 200
        assert server.requests[0].body == body


async def test_the_whole_send_is_bounded_by_its_timeout(transport: Transport) -> None:
    async def play(ex: Exchange) -> bool:
        ex.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(10)
        return True

    async with Server(play) as server:
        start = time.monotonic()
        with pytest.raises(errors.ProviderTimeoutError, match="did not answer within 0.2s"):
            await transport.send(request(server.url), timeout=0.2)
        assert time.monotonic() - start < 1
        start = time.monotonic()
        s = await transport.stream(request(server.url), timeout=0.2)  # a stream: the idle watch, after the head
        with pytest.raises(errors.ProviderTimeoutError, match="stopped sending for 0.2s"):
            async for _ in s.iter_bytes():
                pass
        await s.aclose()
        assert time.monotonic() - start < 1
        assert transport.in_use() == 0 and pool(transport).open == 0


async def test_connection_failures_name_no_address(transport: Transport) -> None:
    with pytest.raises(errors.ProviderConnectionError, match="^\\[p\\] cannot reach the provider: connection refused$"):
        await transport.send(request("http://127.0.0.1:1/x"), timeout=5)
    with pytest.raises(errors.ProviderConnectionError, match="not an http or https URL"):
        await transport.send(request("ftp://127.0.0.1/x"), timeout=5)
    assert pool(transport).open == 0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_by_name_with_sni_and_a_certificate_check(
    transport: Transport, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(2)
                writer.write(OK)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    url = f"https://localhost:{server.sockets[0].getsockname()[1]}/v1/x"  # (localhost may be ::1 first: refused)
    try:
        with pytest.raises(errors.ProviderConnectionError, match="TLS certificate was not accepted"):
            await transport.send(request(url), timeout=5)  # the default context does not trust it
        trusting = ssl.create_default_context(cafile=str(cert))
        monkeypatch.setattr(h1_pool, "_tls_context", trusting)
        for _ in range(2):
            assert (await transport.send(request(url), timeout=5)).body == b"{}"
        assert names == ["localhost", "localhost"]  # SNI: the refused handshake's, then one for both requests
        assert ("localhost", server.sockets[0].getsockname()[1]) in pool(transport).dns
    finally:
        await transport.aclose()
        server.close()


# -- the cost of a request -------------------------------------------------------------------------------------
async def test_a_deployments_head_is_built_once_and_a_new_one_is_still_checked(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    real_build = h1_request._build

    def counting(req: HTTPRequest, t: h1_request.Target) -> bytes:
        built.append(req.method)
        return real_build(req, t)

    monkeypatch.setattr(h1_request, "_build", counting)
    async with Server(answer_ok) as server:
        for body in (b"{}", b'{"a": 1}', b"[]"):  # a new headers dict each time, as adapters make them
            await transport.send(request(server.url, body=body, Authorization="Bearer k"), timeout=5)
        assert built == ["POST"]
        assert [ex.body for ex in server.requests] == [b"{}", b'{"a": 1}', b"[]"]
        for ex in server.requests:  # each with its own length
            assert f"Content-Length: {len(ex.body)}\r\n".encode() in ex.head
        await transport.send(HTTPRequest("GET", server.url, {"Authorization": "Bearer k"}, None, "p"), timeout=5)
        assert server.requests[-1].head.startswith(b"GET /v1/x HTTP/1.1\r\n")
        assert b"Content-Length" not in server.requests[-1].head
        with pytest.raises(errors.ConfigError, match="header injection"):  # a value not seen before: checked
            await transport.send(request(server.url, Authorization="Bearer k\r\nX-Evil: 1"), timeout=5)
        target = transport._backend._target(server.url)  # type: ignore[attr-defined]
        for i in range(2 * h1_request.MAX_HEADS):  # a header that changes per request: the heads kept are bounded
            await transport.send(request(server.url, Traceparent=f"00-{i:032x}-{i:016x}-01"), timeout=5)
            assert len(target.heads) <= h1_request.MAX_HEADS
        assert f"Traceparent: 00-{i:032x}".encode() in server.requests[-1].head
        assert server.conns == 1


async def test_deadlines_share_one_timer_and_an_ended_ones_never_fires(transport: Transport) -> None:
    slow = {5, 6}  # the requests answered after 0.4 s

    async def play(ex: Exchange) -> bool:
        if ex.index in slow:
            await asyncio.sleep(0.4)
        ex.write(OK)
        return True

    async with Server(play) as server:
        for _ in range(5):  # short deadlines, met: their connection goes on
            assert (await transport.send(request(server.url), timeout=0.3)).status == 200
        p = pool(transport)
        assert len(p.deadlines) == 5 and p.deadline_timer is not None  # one timer, at the earliest
        # the same connection, a longer deadline: the ended exchanges' earlier ones do not touch it
        assert (await transport.send(request(server.url), timeout=5)).status == 200
        start = time.monotonic()
        with pytest.raises(errors.ProviderTimeoutError, match="did not answer within 0.1s"):
            await transport.send(request(server.url), timeout=0.1)  # earlier than every deadline kept: on time
        assert time.monotonic() - start < 0.35
        for _ in range(300):  # ended exchanges' entries are dropped: never many more than connections
            await transport.send(request(server.url), timeout=60)
            assert len(p.deadlines) <= 64 + 2 * len(p.conns)
        assert server.conns == 2 and transport.in_use() == 0


async def test_the_callers_loop_is_not_looked_up_per_request_and_another_loop_is_refused(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[asyncio.AbstractEventLoop] = []
    real = asyncio.get_running_loop
    here = threading.get_ident()

    def counting() -> asyncio.AbstractEventLoop:
        loop = real()
        if threading.get_ident() == here:  # (the patch is the process's: other tests' threads may still be running)
            looked_up.append(loop)
        return loop

    async with Server(answer_ok) as server:
        monkeypatch.setattr(asyncio, "get_running_loop", counting)
        for _ in range(10):
            await transport.send(request(server.url), timeout=5)
        assert len(looked_up) == 1  # (the pool made, on first use)
        monkeypatch.undo()

        def elsewhere() -> None:  # another loop, in another thread, while this one runs
            asyncio.run(transport.send(request(server.url), timeout=5))

        with pytest.raises(errors.ConfigError, match="another event loop"):
            await asyncio.to_thread(elsewhere)
        assert (await transport.send(request(server.url), timeout=5)).status == 200


def test_a_loop_moved_to_another_thread_is_not_taken_for_the_callers() -> None:
    """The pool's loop ran here, then went on in another thread: a caller here, on a loop of its own, is refused
    (not lent the other loop's pool, whose connections that thread drives)."""

    transport = Transport(backend="h1")
    backend = transport._backend
    first = asyncio.new_event_loop()

    async def here() -> h1_pool.Pool:
        return backend._here()  # type: ignore[attr-defined,no-any-return]

    made = first.run_until_complete(here())  # the pool, on the first loop, in this thread
    running = threading.Event()
    first.call_soon(running.set)
    thread = threading.Thread(target=first.run_forever)
    thread.start()
    try:
        assert running.wait(5)
        with pytest.raises(errors.ConfigError, match="another event loop"):
            asyncio.run(here())
    finally:
        first.call_soon_threadsafe(first.stop)
        thread.join(5)
        first.run_until_complete(transport.aclose())
        first.close()
    assert made.closed
