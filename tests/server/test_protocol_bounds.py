"""The HTTP protocol's deadlines and the shutdown's abort, over raw sockets against a gateway on its real server
(``GatewayServer`` with ``GatewayHttpProtocol``): regressions found in review."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

from gw import RunningGateway

from modelway.config import parse_config
from modelway.server import create_app
from modelway.store.sql import SQLStore
from modelway.testing import OpenAISimulator, Reply


def recv_all(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                return out
            out += data
    except TimeoutError:
        return out + b"<<still open>>"


def running(cfg: dict[str, Any]) -> RunningGateway:
    return RunningGateway(create_app(parse_config(cfg, env={}), env={})).start()


def config(sim: OpenAISimulator, **server: Any) -> dict[str, Any]:
    dep = {"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}
    return {"server": server, "models": [{"name": "gpt", "deployments": [dep]}]}


def chat_request(stream: bool, extra_headers: bytes = b"") -> bytes:
    body = json.dumps({"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra_headers
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class TestDeadlines:
    def test_a_body_that_never_starts_is_answered_408(self) -> None:
        with OpenAISimulator() as sim:
            gw = running(config(sim, body_timeout=0.5, header_timeout=0.5))
            try:
                s = socket.create_connection(("127.0.0.1", gw.port))
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
                got = recv_all(s, 5.0)
                s.close()
            finally:
                gw.stop()
        assert got.startswith(b"HTTP/1.1 408") and b"request_timeout" in got, got[:200]
        assert sim.requests == []

    def test_headers_that_stop_after_one_read_are_answered_408(self) -> None:
        gw = running({"server": {"header_timeout": 0.5}})
        try:
            s = socket.create_connection(("127.0.0.1", gw.port))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # not finished, then silence
            got = recv_all(s, 5.0)
            s.close()
        finally:
            gw.stop()
        assert got.startswith(b"HTTP/1.1 408"), got[:200]

    def test_a_pipelined_request_s_clock_starts_after_the_response_before_it(self) -> None:
        """A pipelined request whose headers are unfinished does not cut the stream being answered before it: the
        stream ends with [DONE] and its chunked terminator, then the stuck request gets its 408."""
        with OpenAISimulator() as sim:
            sim.push(Reply("x" * 40, chunk_size=1, chunk_delay=0.04))  # ~1.6 s of stream
            gw = running(config(sim, header_timeout=0.5))
            try:
                s = socket.create_connection(("127.0.0.1", gw.port))
                s.sendall(chat_request(stream=True))
                time.sleep(0.2)
                s.sendall(b"GET /health HTTP/1.1\r\n")
                time.sleep(0.1)
                s.sendall(b"Host: x\r\n")  # a second read inside the pipelined request's headers
                got = recv_all(s, 6.0)
                s.close()
            finally:
                gw.stop()
        done = got.find(b"data: [DONE]\n\n\r\n0\r\n\r\n")
        late = got.find(b"HTTP/1.1 408")
        assert done > 0 and late > done, got[-300:]


class TestShutdownAbort:
    def test_a_stream_ended_at_the_deadline_in_send_is_recorded_as_shutting_down(self, tmp_path: Path) -> None:
        """The caller reads slowly: at the deadline the stream's task waits in send, not in the upstream. It still
        gets the shutting_down event, its record says so (not 499), and the server stops."""
        db = tmp_path / "u.db"
        with OpenAISimulator() as sim:
            sim.push(Reply("x" * 30_000_000, chunk_size=8000))  # far more than the socket buffers hold
            cfg = config(sim, shutdown_timeout=0.5, master_key="sk-m")
            cfg["store"] = {"url": f"sqlite:///{db}"}
            cfg["usage"] = {"flush_interval": 0.05, "spill_path": str(tmp_path / "spill.jsonl")}
            gw = running(cfg)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.port))
            s.sendall(chat_request(True, b"Authorization: Bearer sk-m\r\nx-request-id: slow\r\n"))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)  # the caller stops reading; the buffers fill
            gw.server.should_exit = True  # SIGTERM: the deadline passes with the task waiting in send
            time.sleep(1.5)  # ... then the caller reads again, within the abort's grace
            got = recv_all(s, 10.0)
            s.close()
            gw.thread.join(15)
            assert not gw.thread.is_alive()
        assert b"shutting_down" in got[-400:]

        async def records() -> list[tuple[str, int, str | None]]:
            store = SQLStore(f"sqlite:///{db}")
            await store.open()
            try:
                return [(r.request_id, r.status, r.error) for r in await store.usage_records(limit=10)]
            finally:
                await store.aclose()

        assert asyncio.run(records()) == [("slow", 503, "shutting_down")]

    def test_a_caller_that_never_reads_again_does_not_hold_the_shutdown(self, tmp_path: Path) -> None:
        """The caller stops reading for good: the shutdown still ends (its connection is dropped after the
        abort's grace), and the record is written (to the store, or kept in the journal for the next start)."""
        db = tmp_path / "u.db"
        with OpenAISimulator() as sim:
            sim.push(Reply("x" * 30_000_000, chunk_size=8000))
            cfg = config(sim, shutdown_timeout=0.5, master_key="sk-m")
            cfg["store"] = {"url": f"sqlite:///{db}"}
            cfg["usage"] = {"spill_path": str(tmp_path / "spill.jsonl")}
            gw = running(cfg)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.port))
            s.sendall(chat_request(True, b"Authorization: Bearer sk-m\r\nx-request-id: stuck\r\n"))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
            t0 = time.monotonic()
            gw.server.should_exit = True
            gw.thread.join(15)
            took = time.monotonic() - t0
            s.close()
            assert not gw.thread.is_alive() and took < 0.5 + 3.0 + 1.0 + 2.0, took

        async def statuses() -> list[int]:
            store = SQLStore(f"sqlite:///{db}")
            await store.open()
            try:
                return [r.status for r in await store.usage_records(limit=10)]
            finally:
                await store.aclose()

        assert asyncio.run(statuses()) == [503]
