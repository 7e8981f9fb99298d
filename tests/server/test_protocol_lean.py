"""The gateway's own HTTP protocol (``server.http: modelway``): what it must do as well as uvicorn's protocol did, over
raw sockets against both protocols, and what it does better, driven directly with a recording transport."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.config import Config as UvicornConfig
from uvicorn.server import ServerState

from modelway.config import parse_config
from modelway.server.protocol import HttpLimits
from modelway.server.protocol_lean import LeanHttpProtocol
from modelway.server.runner import GatewayServer, serve_config

Scope = dict[str, Any]


class EchoApp:
    """Answers every request with its method, path and body; ``/slow`` waits until cancelled or 5 s; ``/boom``
    raises; ``/chunks`` streams three parts. Records what it saw."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"]
        self.seen.append(f"{scope['method']} {path}")
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/slow":
            try:
                cycle = scope["extensions"]["modelway.disconnect"]
                task = asyncio.current_task()
                assert task is not None
                cycle.on_disconnect(task.cancel)
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if path == "/chunks":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for part in (b"one ", b"two ", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        out = f"{scope['method']} {path} {len(body)}".encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})


class Served:
    def __init__(self, app: EchoApp, http: str, **server: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.port = sock.getsockname()[1]
        cfg = parse_config({"server": {"http": http, **server}}, env={})
        self.server = GatewayServer(serve_config(app, cfg, log_level="critical", lifespan="off", loop="asyncio"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def talk(self, data: bytes, wait: float = 2.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(data)
            return recv_until_closed(s, wait)


def recv_until_closed(s: socket.socket, wait: float) -> bytes:
    s.settimeout(wait)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except TimeoutError:
        out += b"<<open>>"
    return out


@pytest.fixture(params=["modelway", "uvicorn"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Served, EchoApp]]:
    app = EchoApp()
    s = Served(app, request.param, header_timeout=1.0, body_timeout=1.0)
    try:
        yield s, app
    finally:
        s.stop()


class TestBothProtocols:
    """What either protocol must do, checked over a real socket."""

    def test_keep_alive_and_pipelining_answer_in_order(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        two = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        got = s.talk(two + b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert got.count(b"HTTP/1.1 200 OK") == 3
        assert got.index(b"POST /a 3") < got.index(b"GET /b 0") < got.index(b"GET /c 0")
        assert not got.endswith(b"<<open>>")  # Connection: close was honoured

    def test_request_smuggling_is_refused(self, served: tuple[Served, EchoApp]) -> None:
        s, app = served
        both = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        twice = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"
        for attack in (both, twice):
            got = s.talk(attack)
            assert got.startswith(b"HTTP/1.1 400"), got[:100]
            assert not got.endswith(b"<<open>>")
        assert app.seen == []

    def test_chunked_request_bodies_and_chunked_answers(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        got = s.talk(
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /chunks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert b"POST /a 5" in got
        assert b"transfer-encoding: chunked" in got and b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n" in got

    def test_head_gets_no_body_and_http10_closes(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        got = s.talk(b"HEAD /h HTTP/1.0\r\nHost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n"), got
        assert b"content-length: 9" in got.lower()  # of "HEAD /h 0"

    def test_expect_100_continue(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        with socket.create_connection(("127.0.0.1", s.port)) as c:
            c.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            c.settimeout(2)
            assert c.recv(100).startswith(b"HTTP/1.1 100 Continue")
            c.sendall(b"ok")
            got = b""
            while b"POST /e 2" not in got and (chunk := c.recv(1000)):  # (uvicorn writes head and body apart)
                got += chunk
            assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"POST /e 2")

    def test_an_app_error_is_a_500_and_a_close(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        got = s.talk(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 500") and not got.endswith(b"<<open>>"), got

    def test_an_idle_keep_alive_connection_is_closed(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        t0 = time.monotonic()
        got = s.talk(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", wait=10)  # uvicorn's timeout_keep_alive: 5 s
        assert got.startswith(b"HTTP/1.1 200") and not got.endswith(b"<<open>>")
        assert time.monotonic() - t0 < 8

    def test_a_silent_new_connection_is_closed_after_the_header_timeout(self, served: tuple[Served, EchoApp]) -> None:
        s, _ = served
        t0 = time.monotonic()
        assert s.talk(b"", wait=5) == b""  # closed, nothing said
        assert time.monotonic() - t0 < 3

    def test_a_disconnect_reaches_the_app(self, served: tuple[Served, EchoApp]) -> None:
        s, app = served
        if s.server.config.http.endswith("GatewayHttpProtocol"):
            pytest.skip("the disconnect callback is the gateway protocol's own (uvicorn's: a receive() watcher)")
        with socket.create_connection(("127.0.0.1", s.port)) as c:
            c.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
        deadline = time.monotonic() + 3
        while app.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.cancelled == 1


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _protocol(app: Any, loop: asyncio.AbstractEventLoop) -> tuple[LeanHttpProtocol, RecordingTransport]:
    cfg = UvicornConfig(app, lifespan="off")
    cfg.http_limits = HttpLimits(header_timeout=5, body_timeout=5)  # type: ignore[attr-defined]
    proto = LeanHttpProtocol(cfg, ServerState(), {}, loop)
    transport = RecordingTransport()
    proto.connection_made(transport)
    return proto, transport


class TestLeanOnly:
    """What the gateway's protocol does better than uvicorn's, seen on a recording transport."""

    def test_head_and_body_leave_in_one_write(self) -> None:
        async def go() -> list[bytes]:
            proto, transport = _protocol(EchoApp(), asyncio.get_running_loop())
            proto.data_received(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            await asyncio.gather(*proto.tasks)
            proto.connection_lost(None)
            return transport.writes

        writes = asyncio.run(go())
        assert len(writes) == 1, writes
        assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nPOST /a 2")

    def test_a_stream_s_head_leaves_with_its_first_chunk(self) -> None:
        async def go() -> list[bytes]:
            proto, transport = _protocol(EchoApp(), asyncio.get_running_loop())
            proto.data_received(b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.gather(*proto.tasks)
            return transport.writes

        writes = asyncio.run(go())
        assert len(writes) == 4 and writes[0].endswith(b"\r\n\r\n4\r\none \r\n"), writes
        assert writes[-1] == b"0\r\n\r\n"

    def test_a_large_body_pauses_reading_until_the_app_takes_it(self) -> None:
        taken: list[int] = []

        async def app(scope: Scope, receive: Any, send: Any) -> None:
            await asyncio.sleep(0.05)
            total = 0
            while True:
                msg = await receive()
                total += len(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
            taken.append(total)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def go() -> tuple[bool, bool]:
            proto, transport = _protocol(app, asyncio.get_running_loop())
            proto.data_received(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"x" * 100_000)
            paused = not transport.reading
            await asyncio.sleep(0.1)  # the app took what was there: reading goes on
            resumed = transport.reading
            proto.data_received(b"x" * 100_000)
            await asyncio.gather(*proto.tasks)
            return paused, resumed

        paused, resumed = asyncio.run(go())
        assert paused and resumed and taken == [200_000]

    def test_an_app_that_fails_after_its_head_but_before_a_byte_went_out_answers_500(self) -> None:
        async def app(scope: Scope, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
            if scope["path"] == "/raise":
                raise RuntimeError("failed before the body")
            # (/return: returns with the response started and not ended)

        async def go(path: bytes) -> list[bytes]:
            proto, transport = _protocol(app, asyncio.get_running_loop())
            proto.data_received(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.gather(*proto.tasks)
            return transport.writes

        for path in (b"/raise", b"/return"):
            writes = asyncio.run(go(path))
            assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 500"), (path, writes)
            assert b"x-a" not in writes[0] and b"transfer-encoding" not in writes[0]
            assert writes[0].endswith(b"\r\n\r\nInternal Server Error")

    def test_response_headers_with_a_line_break_are_refused(self) -> None:
        async def app(scope: Scope, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nx-b: 2")]})

        async def go() -> list[bytes]:
            proto, transport = _protocol(app, asyncio.get_running_loop())
            proto.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.gather(*proto.tasks)
            return transport.writes

        writes = asyncio.run(go())
        assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 500") and b"x-b" not in writes[0]

    def test_response_headers_are_checked_in_order_and_names_lowered(self, caplog: pytest.LogCaptureFixture) -> None:
        """Each refused head is a 500 naming the first fault in the order the headers come; a good head's names
        are written in lower case, however the app spelt them, and its Content-Length holds."""
        heads: dict[str, list[tuple[bytes, bytes]]] = {
            "/value-then-name": [(b"x-a", b"1\x00"), (b"x (b)", b"2")],
            "/name-then-value": [(b"x (b)", b"2"), (b"x-a", b"1\x00")],
            "/bad-length": [(b"content-length", b"1\x01")],
            "/last-value": [(b"x-a", b"1"), (b"x-b", b"\x7f")],
            "/good": [(b"X-Mixed-Case", b"v\tw"), (b"Content-Length", b"2")],
        }

        async def app(scope: Scope, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": heads[scope["path"]]})
            await send({"type": "http.response.body", "body": b"ok"})

        async def go(path: str) -> list[bytes]:
            proto, transport = _protocol(app, asyncio.get_running_loop())
            proto.data_received(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await asyncio.gather(*proto.tasks)
            return transport.writes

        for path, fault in (
            ("/value-then-name", "value"),
            ("/name-then-value", "name"),
            ("/bad-length", "value"),
            ("/last-value", "value"),
        ):
            caplog.clear()
            writes = asyncio.run(go(path))
            assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 500"), (path, writes)
            assert f"Invalid HTTP header {fault}." in caplog.text, (path, caplog.text)
        writes = asyncio.run(go("/good"))
        assert len(writes) == 1 and writes[0].endswith(b"\r\nx-mixed-case: v\tw\r\ncontent-length: 2\r\n\r\nok"), writes

    def test_the_header_names_kept_are_bounded(self) -> None:
        """An app writing ever new header names does not grow the names the server keeps without end."""
        from modelway.server import cycle

        async def app(scope: Scope, receive: Any, send: Any) -> None:
            headers = [(f"x-{scope['path'][1:]}-{i}".encode(), b"1") for i in range(100)]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

        async def go() -> None:
            proto, transport = _protocol(app, asyncio.get_running_loop())
            for n in range(30):
                proto.data_received(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await asyncio.gather(*proto.tasks)
            assert len(transport.writes) == 30 and all(w.startswith(b"HTTP/1.1 204") for w in transport.writes)

        asyncio.run(go())
        assert 0 < len(cycle._NAMES) <= cycle._NAMES_MAX < 3000
