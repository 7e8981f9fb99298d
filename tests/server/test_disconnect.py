"""A client that goes away mid-stream cancels the upstream request at once."""

from __future__ import annotations

import socket
import time

import orjson
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import DashScopeSimulator, OpenAISimulator, Reply, ZhipuSimulator


def _open_stream(gw: RunningGateway, path: str, body: dict[str, object]) -> socket.socket:
    payload = orjson.dumps(body)
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    got = b""
    while got.count(b"data: ") < 3:  # headers and a few chunks have arrived
        data = sock.recv(65536)
        assert data, "the gateway closed the stream early"
        got += data
    assert b" 200 OK" in got.split(b"\r\n", 1)[0]
    return sock


@pytest.mark.parametrize(
    ("model", "path"),
    [("gpt", "/v1/chat/completions"), ("glm", "/v1/chat/completions"), ("qwen", "/api/v2/chat/completions")],
)
def test_client_disconnect_closes_upstream_within_a_second(
    gateway: RunningGateway,
    model: str,
    path: str,
    openai_sim: OpenAISimulator,
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
) -> None:
    sim = {"gpt": openai_sim, "glm": zhipu_sim, "qwen": dashscope_sim}[model]
    sim.push(Reply("长" * 3000, chunk_size=1, chunk_delay=0.01))  # a 30-second stream
    sock = _open_stream(
        gateway, path, {"model": model, "stream": True, "messages": [{"role": "user", "content": "long"}]}
    )
    closed_at = time.monotonic()
    sock.close()
    deadline = closed_at + 3
    while not sim.disconnects and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.disconnects, "the upstream stream was still running 3 s after the client left"
    assert sim.disconnects[0] - closed_at < 1.0


def test_client_disconnect_cancels_a_non_streaming_upstream_call(
    gateway: RunningGateway, openai_sim: OpenAISimulator
) -> None:
    from modelway.testing import Fault

    openai_sim.push(Fault.slow_first_byte(2.0))
    payload = orjson.dumps({"model": "gpt", "messages": [{"role": "user", "content": "slow"}]})
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    deadline = time.monotonic() + 3
    while not openai_sim.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert openai_sim.requests, "the upstream call did not start"
    sock.close()
    closed_at = time.monotonic()
    # the simulator notices when its (slow) answer finds the connection gone; the gateway must have hung up at once,
    # so a second request is served at once rather than queued behind work for nobody
    gw_pool = gateway.app.gateway
    assert gw_pool is not None
    deadline = closed_at + 0.5
    while time.monotonic() < deadline:
        conns = gw_pool.transport.in_use()
        if not conns:
            break
        time.sleep(0.01)
    assert not conns, "the upstream connection was still in use 0.5 s after the client left"
    time.sleep(max(0.0, closed_at + 2.2 - time.monotonic()))  # let the simulator finish its slow answer cleanly


async def test_a_shutdown_cancel_near_a_disconnect_is_not_swallowed() -> None:
    import asyncio

    from modelway.server.disconnect import watched
    from modelway.server.http import Request

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    req = Request({"type": "http", "path": "/", "method": "POST", "headers": []}, receive)
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(10)

    async def handler() -> None:
        await watched(req, work())

    task = asyncio.create_task(handler())
    await started.wait()
    task.cancel()  # e.g. the server shutting down, in the same tick as the disconnect
    with pytest.raises(asyncio.CancelledError):
        await task
