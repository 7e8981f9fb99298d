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
