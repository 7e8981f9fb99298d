"""A request leaves nothing for the cyclic garbage collector: its exchange, ticket and request are freed when it
ends (a cycle per request would make every request pay in collections), with the request log, CORS and traces on
or off."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from otlp_collector import Collector

from modelway.config import parse_config
from modelway.server import create_app
from modelway.testing import OpenAISimulator

BODY = b'{"model":"gpt","messages":[{"role":"user","content":"hi"}]}'


async def _one(app: Any, body: bytes) -> int:
    sent: list[dict[str, Any]] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    headers = [(b"content-type", b"application/json"), (b"origin", b"https://app.example")]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    await asyncio.get_running_loop().create_task(app(scope, receive, send))
    return int(sent[0]["status"])


@pytest.mark.parametrize("feature", ["none", "request_log", "cors", "tracing"])
async def test_no_reference_cycle_per_request(feature: str, openai_sim: OpenAISimulator) -> None:
    dep = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    cfg: dict[str, Any] = {"server": {"max_retries": 0}, "models": [{"name": "gpt", "deployments": [dep]}]}
    with Collector() as collector:
        if feature == "request_log":
            cfg["request_log"] = {"enabled": True, "path": "/dev/null", "bodies": True}
        elif feature == "cors":
            cfg["server"]["cors_origins"] = ["*"]
        elif feature == "tracing":
            cfg["tracing"] = {"endpoint": collector.endpoint}
        app = create_app(parse_config(cfg, env={}), env={})
        await app.startup()
        try:
            for body in (BODY, BODY.replace(b'"model"', b'"stream":true,"model"'), b"{bad json"):
                await _one(app, body)  # warm
                gc.collect()
                gc.disable()
                gc.set_debug(gc.DEBUG_SAVEALL)
                try:
                    for _ in range(20):
                        assert await _one(app, body) in (200, 400)
                    gc.collect()
                    ours = [type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("modelway")]
                finally:
                    gc.set_debug(0)
                    gc.garbage.clear()
                    gc.enable()
                assert ours == [], (feature, body[:20], sorted(set(ours)))
        finally:
            await app.shutdown()
