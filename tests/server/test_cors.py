"""CORS (``server.cors_origins``): preflights answered before any key is checked, ``Access-Control-*`` headers on
answers, errors and streams for allowed origins only; nothing of it when off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.config import ConfigError, parse_config
from modelway.testing import OpenAISimulator, Reply

APP = "https://app.example.com"


def config(sim: OpenAISimulator, origins: list[str] | None) -> dict[str, Any]:
    dep = {"model": "openai/gpt-4o-mini", "api_key": sim.api_key, "api_base": sim.base_url}
    server: dict[str, Any] = {"master_key": MASTER_KEY, "max_retries": 0}
    if origins is not None:
        server["cors_origins"] = origins
    return {"server": server, "models": [{"name": "gpt", "deployments": [dep]}]}


@pytest.fixture(scope="module")
def listed(start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator) -> RunningGateway:
    return start_gateway(config(openai_sim, [APP, "http://localhost:3000"]))


@pytest.fixture(scope="module")
def anyone(start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator) -> RunningGateway:
    return start_gateway(config(openai_sim, ["*"]))


@pytest.fixture(scope="module")
def closed(start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator) -> RunningGateway:
    return start_gateway(config(openai_sim, None))


async def request(
    gw: RunningGateway, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.request(method, gw.url + path, json=body, headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
}
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_preflight_then_the_real_request(listed: RunningGateway, openai_sim: OpenAISimulator) -> None:
    status, h, body = await request(listed, "OPTIONS", "/v1/chat/completions", {"Origin": APP, **PREFLIGHT})
    assert status == 204 and body == b""  # no key needed: a browser sends none in a preflight
    assert h["access-control-allow-origin"] == APP
    assert "POST" in h["access-control-allow-methods"]
    assert h["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert int(h["access-control-max-age"]) > 0 and "Origin" in h["vary"]

    openai_sim.push(Reply(text="hello"))
    auth = {"Origin": APP, "Authorization": f"Bearer {MASTER_KEY}"}
    status, h, _ = await request(listed, "POST", "/v1/chat/completions", auth, CHAT)
    assert status == 200 and h["access-control-allow-origin"] == APP and h["vary"] == "Origin"
    exposed = h["access-control-expose-headers"]
    assert (
        "x-request-id" in exposed and "x-ratelimit-remaining-requests" in exposed and "x-modelway-deployment" in exposed
    )


async def test_errors_and_streams_carry_the_headers(listed: RunningGateway, openai_sim: OpenAISimulator) -> None:
    status, h, _ = await request(listed, "POST", "/v1/chat/completions", {"Origin": APP}, CHAT)  # no key
    assert status == 401 and h["access-control-allow-origin"] == APP
    status, h, _ = await request(listed, "GET", "/nowhere", {"Origin": APP})
    assert status == 404 and h["access-control-allow-origin"] == APP
    openai_sim.push(Reply(text="one two three"))
    auth = {"Origin": "http://localhost:3000", "Authorization": f"Bearer {MASTER_KEY}"}
    status, h, body = await request(listed, "POST", "/v1/chat/completions", auth, {**CHAT, "stream": True})
    assert status == 200 and b"[DONE]" in body and h["content-type"].startswith("text/event-stream")
    assert h["access-control-allow-origin"] == "http://localhost:3000"


async def test_an_origin_not_listed_gets_no_cors(listed: RunningGateway, openai_sim: OpenAISimulator) -> None:
    status, h, body = await request(listed, "OPTIONS", "/v1/chat/completions", {"Origin": "https://evil.test",
                                                                                **PREFLIGHT})  # fmt: skip
    assert status == 403 and b"cors_origin_not_allowed" in body
    assert not any(name.startswith("access-control-") for name in h)
    openai_sim.push(Reply(text="x"))
    auth = {"Origin": "https://evil.test", "Authorization": f"Bearer {MASTER_KEY}"}
    status, h, _ = await request(listed, "POST", "/v1/chat/completions", auth, CHAT)
    assert status == 200 and not any(name.startswith("access-control-") for name in h)  # the browser blocks it


async def test_any_origin(anyone: RunningGateway, openai_sim: OpenAISimulator) -> None:
    status, h, _ = await request(anyone, "OPTIONS", "/v1/messages", {"Origin": "https://x.test", **PREFLIGHT})
    assert status == 204 and h["access-control-allow-origin"] == "*"
    openai_sim.push(Reply(text="x"))
    auth = {"Origin": "https://x.test", "Authorization": f"Bearer {MASTER_KEY}"}
    status, h, _ = await request(anyone, "POST", "/v1/chat/completions", auth, CHAT)
    assert status == 200 and h["access-control-allow-origin"] == "*"
    status, h, _ = await request(anyone, "GET", "/health", {})  # no Origin: not a browser's cross-origin call
    assert status == 200 and "access-control-allow-origin" not in h


async def test_off_by_default(closed: RunningGateway) -> None:
    status, h, _ = await request(closed, "OPTIONS", "/v1/chat/completions", {"Origin": APP, **PREFLIGHT})
    assert status == 405 and not any(name.startswith("access-control-") for name in h)
    status, h, _ = await request(closed, "GET", "/health", {"Origin": APP})
    assert status == 200 and "access-control-allow-origin" not in h


def test_origins_are_checked() -> None:
    assert parse_config({"server": {"cors_origins": ["https://a.b/", "*"]}}).server.cors_origins == ["https://a.b", "*"]
    assert parse_config({}).server.cors_origins == []
    for bad in (["https://a.b/path"], ["a.b"], [""], 5):
        with pytest.raises(ConfigError, match="server.cors_origins"):
            parse_config({"server": {"cors_origins": bad}})
