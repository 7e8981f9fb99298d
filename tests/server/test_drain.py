"""The shutdown's drain, as a load balancer in front of a fleet needs it: no request that reached a replica before or
during its drain is dropped without an answer (nginx cannot send a POST elsewhere once it was sent), and new
connections are refused (which nginx can retry elsewhere, since nothing was sent).

- a connection kept alive (idle) at the shutdown is not closed under its client: a request it sends during the drain
  is answered, with ``Connection: close``, then the connection closes;
- connections the kernel had queued when the server stopped accepting are served, not reset;
- ``--workers 2``: the supervisor stops listening at SIGTERM (before, it kept the listening socket open until its
  workers had drained, so the kernel went on queueing connections nobody took, and reset them at the exit).

Each runs with both HTTP protocols (``server.http``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from gw import RunningGateway

from modelway.config import parse_config
from modelway.server import create_app
from modelway.testing import OpenAISimulator, Reply

PROTOCOLS = ["modelway", "uvicorn"]


def chat(stream: bool) -> bytes:
    body = json.dumps({"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def config(sim: OpenAISimulator, http: str, **server: Any) -> dict[str, Any]:
    dep = {"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}
    return {"server": {"http": http, **server}, "models": [{"name": "gpt", "deployments": [dep]}]}


def read_response(s: socket.socket, timeout: float = 10.0) -> tuple[bytes, bytes]:
    """One whole response with a Content-Length (head, body); raises if the connection ends before."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        part = s.recv(65536)
        if not part:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
    )
    while len(body) < length:
        part = s.recv(65536)
        if not part:
            raise ConnectionError(f"closed inside a response: {head!r}")
        body += part
    return head, body


def closed_by_server(s: socket.socket, timeout: float = 10.0) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def draining(gw: RunningGateway, seconds: float = 5.0) -> None:
    """Until the app knows it is shutting down."""
    deadline = time.monotonic() + seconds
    while not gw.app.lifecycle.draining:
        assert time.monotonic() < deadline, "the shutdown did not begin"
        time.sleep(0.01)


@pytest.mark.parametrize("http", PROTOCOLS)
def test_a_request_on_a_connection_kept_alive_at_the_shutdown_is_answered(http: str) -> None:
    """The client (a load balancer) holds a kept-alive connection, idle, when the shutdown begins, and sends its next
    request on it a moment later: it gets its answer with ``Connection: close``, then the connection closes."""
    with OpenAISimulator() as sim:
        gw = RunningGateway(create_app(parse_config(config(sim, http), env={}), env={})).start()
        try:
            kept = socket.create_connection(("127.0.0.1", gw.port))
            kept.sendall(chat(False))
            head, _ = read_response(kept)
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
            gw.server.should_exit = True  # SIGTERM
            draining(gw)
            time.sleep(0.2)
            kept.sendall(chat(False))
            head, body = read_response(kept)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert json.loads(body)["choices"][0]["message"]["content"]
            assert b"connection: close" in head.lower()
            assert closed_by_server(kept)
            kept.close()
            gw.thread.join(15)
            assert not gw.thread.is_alive()
        finally:
            gw.stop()
    assert len(sim.requests) == 2


@pytest.mark.parametrize("http", PROTOCOLS)
def test_a_response_begun_before_the_shutdown_leaves_its_connection_open(http: str) -> None:
    """A stream whose head (keep-alive) went out before the shutdown ends normally, and its connection stays open:
    its client was told it could send another request on it, and may be doing so just then. That request is
    answered, with ``Connection: close``."""
    with OpenAISimulator(default_reply=Reply("x" * 40, chunk_size=4, chunk_delay=0.05)) as sim:
        gw = RunningGateway(create_app(parse_config(config(sim, http), env={}), env={})).start()
        try:
            s = socket.create_connection(("127.0.0.1", gw.port))
            s.sendall(chat(True))
            s.settimeout(10)
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200") and b"connection: close" not in got.lower(), got
            gw.server.should_exit = True  # SIGTERM
            draining(gw)
            while not got.endswith(b"0\r\n\r\n"):
                part = s.recv(65536)
                assert part, f"the stream was cut: {got[-200:]!r}"
                got += part
            assert b"data: [DONE]" in got
            time.sleep(0.2)  # (the server would have closed the connection by now)
            s.sendall(chat(False))
            head, body = read_response(s)
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower(), head
            assert closed_by_server(s)
            s.close()
            gw.thread.join(15)
            assert not gw.thread.is_alive()
        finally:
            gw.stop()


@pytest.mark.parametrize("http", PROTOCOLS)
def test_connections_queued_when_the_server_stops_accepting_are_served(http: str) -> None:
    """Connections the kernel accepted but the server had not taken yet when its shutdown began (here: the event
    loop's accept is switched off first, so that they surely wait in the queue) are answered, not reset; then new
    connections are refused."""
    with OpenAISimulator() as sim:
        gw = RunningGateway(create_app(parse_config(config(sim, http), env={}), env={})).start()
        try:
            loop = gw.server.servers[0].get_loop()

            async def stop_accepting() -> None:
                loop.remove_reader(gw.sock.fileno())

            asyncio.run_coroutine_threadsafe(stop_accepting(), loop).result(5)
            waiting = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(3)]
            for s in waiting:
                s.sendall(chat(False))
            gw.server.should_exit = True  # SIGTERM
            answers = [read_response(s) for s in waiting]
            for head, body in answers:
                assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower(), head
                assert json.loads(body)["choices"]
            for s in waiting:
                s.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", gw.port), timeout=2)
            gw.thread.join(15)
            assert not gw.thread.is_alive()
        finally:
            gw.stop()
    assert len(sim.requests) == 3


@pytest.mark.parametrize("http", PROTOCOLS)
def test_workers_stop_listening_at_sigterm(http: str, tmp_path: Path) -> None:
    """``modelway serve --workers 2``, a stream in flight that lasts ~3 s: after SIGTERM to the supervisor, a new
    connection is refused within a second (connections accepted before that are answered), while the stream goes on
    to its end, and the server exits 0."""
    with OpenAISimulator(default_reply=Reply("x" * 120, chunk_size=4, chunk_delay=0.1)) as sim:
        cfg = tmp_path / "gw.json"
        cfg.write_text(json.dumps(config(sim, http, shutdown_timeout=10)))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cmd = [sys.executable, "-m", "modelway.cli", "serve", "-c", str(cfg), "--port", str(port), "--workers", "2"]
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_ready(port, proc, log)
            stream = socket.create_connection(("127.0.0.1", port))
            stream.sendall(chat(True))
            stream.settimeout(10)
            assert stream.recv(64).startswith(b"HTTP/1.1 200")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            refused_after = None
            while time.monotonic() - t0 < 2.5:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                except ConnectionRefusedError:
                    refused_after = time.monotonic() - t0
                    break
                with s:  # still accepted by a worker that has not stopped yet: answered all the same
                    s.sendall(chat(False))
                    head, _ = read_response(s)
                    assert head.startswith(b"HTTP/1.1 200"), head
                time.sleep(0.05)
            assert refused_after is not None and refused_after < 1.5, (
                f"connections were still accepted {time.monotonic() - t0:.1f} s after SIGTERM\n{log.read_text()}"
            )
            rest = b""
            while not rest.endswith(b"0\r\n\r\n"):
                part = stream.recv(65536)
                assert part, f"the stream was cut: {rest[-200:]!r}"
                rest += part
            assert b"data: [DONE]" in rest
            stream.close()
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                import os

                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/readiness", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
