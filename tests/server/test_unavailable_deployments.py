"""Deployments that cannot work as configured (no key for their provider): a warning per deployment at start, never
tried, skipped while another deployment of the model can serve, and a model none of whose deployments can work
answers 503 ``deployment_unavailable`` (after its fallbacks) — also once circuits are on, and for direct calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import OpenAISimulator

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def chat(gw: RunningGateway, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=ADMIN, timeout=20)


@pytest.fixture(scope="module")
def gateway_without_keys(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], openai_sim: OpenAISimulator
) -> RunningGateway:
    oa = {"model": "openai/gpt-4o-mini", "api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(  # (the fixture gives the gateway an empty environment: no provider key at all)
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "routing": {"circuit": {"failures": 1, "cooldown": 60}},
            "providers": {"zhipu": {"api_key": ""}},
            "models": [
                {"name": "mixed", "deployments": [{"model": "zhipu/glm-4-flash", "weight": 100}, oa]},
                {"name": "keyless", "deployments": ["zhipu/glm-4-flash", "dashscope/qwen-plus"]},
                {"name": "falls-back", "deployments": ["deepseek/deepseek-chat"], "routing": {"fallbacks": ["ok"]}},
                {"name": "ok", "deployments": [oa]},
            ],
        }
    )


def test_a_deployment_without_a_key_is_skipped_not_tried(
    gateway_without_keys: RunningGateway, openai_sim: OpenAISimulator
) -> None:
    for _ in range(5):  # weight 100 on the keyless one: it would be picked first nearly every time
        r = chat(gateway_without_keys, "mixed")
        assert r.status_code == 200, r.text
        assert r.headers["x-modelway-deployment"] == "openai/gpt-4o-mini" and r.headers["x-modelway-attempts"] == "1"


def test_a_model_without_a_working_deployment_answers_503_deployment_unavailable(
    gateway_without_keys: RunningGateway,
) -> None:
    for _ in range(3):  # circuits are on (failures: 1): the answer stays the same, nothing is counted as a failure
        r = chat(gateway_without_keys, "keyless")
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "deployment_unavailable" and error["type"] == "routing_error"
        assert "ZHIPUAI_API_KEY" in error["message"] and "DASHSCOPE_API_KEY" in error["message"]
        assert "x-modelway-attempts" not in r.headers or r.headers["x-modelway-attempts"] == "0"


def test_its_fallbacks_are_tried_first(gateway_without_keys: RunningGateway) -> None:
    r = chat(gateway_without_keys, "falls-back")
    assert r.status_code == 200 and r.headers["x-modelway-fallback"] == "ok", r.text


def test_a_direct_call_to_a_configured_provider_without_a_key_is_the_same_503(
    gateway_without_keys: RunningGateway,
) -> None:
    r = chat(gateway_without_keys, "zhipu/glm-4-flash")
    assert r.status_code == 503 and r.json()["error"]["code"] == "deployment_unavailable", r.text
    assert chat(gateway_without_keys, "dashscope/qwen-plus").status_code == 404  # not configured: not served


def test_the_admin_listing_says_why(gateway_without_keys: RunningGateway) -> None:
    found = httpx.get(gateway_without_keys.url + "/admin/deployments", headers=ADMIN).json()["data"]
    why = {(d["model"], d["deployment"]): d["unavailable"] for d in found}
    assert "ZHIPUAI_API_KEY" in why[("keyless", "zhipu/glm-4-flash")]
    assert why[("ok", "openai/gpt-4o-mini")] is None
    ready = httpx.get(gateway_without_keys.url + "/health/readiness", headers=ADMIN).json()
    assert ready["status"] == "ready" and ready["unavailable_deployments"] == 4


def test_the_start_warns_per_deployment(caplog: pytest.LogCaptureFixture) -> None:
    from modelway.config import parse_config
    from modelway.server.gateway import Gateway

    config = parse_config(
        {
            "providers": {"dashscope": {"api_key": ""}},
            "models": [{"name": "chat", "deployments": ["zhipu/glm-4-flash", "openai/gpt-4o-mini"]}],
        },
        env={},
    )
    with caplog.at_level(logging.WARNING, logger="modelway.server"):
        Gateway(config, env={"OPENAI_API_KEY": "sk-x"})
    lines = [r.getMessage() for r in caplog.records]
    assert any("'chat'" in m and "zhipu/glm-4-flash" in m and "ZHIPUAI_API_KEY" in m for m in lines), lines
    assert not any("openai/gpt-4o-mini" in m for m in lines)
    assert not any("none of its deployments" in m for m in lines)  # one of them works
    assert any(m.startswith("providers.dashscope") and "DASHSCOPE_API_KEY" in m for m in lines), lines
