"""A running gateway for tests: uvicorn in a background thread on an ephemeral port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from modelway.server import GatewayApp
from modelway.server.runner import GatewayServer, serve_config
from modelway.testing import DashScopeSimulator, OpenAISimulator, ZhipuSimulator

MASTER_KEY = "sk-gateway-test"


class RunningGateway:
    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on the accepted connections (as uvicorn's own socket
        # gets): without it every keep-alive request of a test waited ~40 ms for delayed ACKs
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        config = serve_config(app, app.config, log_level="warning", lifespan="on", loop="asyncio", ws="none")
        self.server = GatewayServer(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> RunningGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def gateway_config(
    zhipu: ZhipuSimulator, dashscope: DashScopeSimulator, openai: OpenAISimulator, **server: Any
) -> dict[str, Any]:
    return {
        "server": {"master_key": MASTER_KEY, "max_retries": 0, **server},
        "models": [
            {
                "name": "glm",
                "deployments": [{"model": "zhipu/glm-4-flash", "api_key": zhipu.api_key, "api_base": zhipu.base_url}],
            },
            {
                "name": "qwen",
                "deployments": [
                    {"model": "dashscope/qwen-plus", "api_key": dashscope.api_key, "api_base": dashscope.base_url}
                ],
            },
            {
                "name": "gpt",
                "deployments": [
                    {"model": "openai/gpt-4o-mini", "api_key": openai.api_key, "api_base": openai.base_url}
                ],
            },
            {
                "name": "embed",
                "deployments": [
                    {"model": "openai/text-embedding-3-small", "api_key": openai.api_key, "api_base": openai.base_url}
                ],
            },
        ],
    }
