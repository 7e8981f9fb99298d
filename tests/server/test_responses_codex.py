"""/v1/responses with the requests Codex CLI really sends (``tests/agents/captures/codex-*``): every field it sends
is accepted, for a translated model and for OpenAI itself."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from gw import RunningGateway
from test_responses_env import check_stream

from modelway.testing import OpenAISimulator, Reply, ZhipuSimulator

CAPTURES = Path(__file__).parent.parent / "agents" / "captures"
REQUESTS = sorted(CAPTURES.glob("codex-*/*-POST-v1_responses.json"))

#: what Codex CLI 0.171 sends (in case the captures are not there): its fields, a namespace tool, web_search
CODEX_LIKE: dict[str, Any] = {
    "model": "m",
    "stream": True,
    "input": [
        {"type": "message", "id": "m1", "role": "developer", "content": [{"type": "input_text", "text": "be brief"}]},
        {"type": "message", "id": "m2", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "strict": False, "parameters": {"type": "object"}},
        {
            "type": "namespace",
            "name": "multi_agent_v1",
            "description": "sub-agents",
            "tools": [{"type": "function", "name": "spawn_agent", "strict": False, "parameters": {"type": "object"}}],
        },
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"},
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "01a23796-91ad-79b1-8aa7-b3112e395fc0",
    "client_metadata": {"thread_id": "t", "session_id": "s", "turn_id": "u"},
}


def create(c: openai.OpenAI, body: dict[str, Any]) -> Any:
    """``body`` sent as it is (fields the SDK does not know go as ``extra_body``)."""
    known = {k: v for k, v in body.items() if k != "client_metadata"}
    return c.responses.create(**known, extra_body={"client_metadata": body.get("client_metadata")})


def bodies() -> list[Any]:
    out: list[Any] = [pytest.param(CODEX_LIKE, id="codex-like")]
    for path in REQUESTS:
        out.append(pytest.param(json.loads(path.read_text())["body"], id=f"{path.parent.name}/{path.name[:3]}"))
    return out


@pytest.fixture(scope="module")
def cgw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway], zhipu_sim: ZhipuSimulator, openai_sim: OpenAISimulator
) -> RunningGateway:
    dep = {"api_key": zhipu_sim.api_key, "api_base": zhipu_sim.base_url}
    gpt = {"api_key": openai_sim.api_key, "api_base": openai_sim.base_url}
    return start_gateway(
        {
            "server": {"master_key": "sk-codex", "max_retries": 0},
            "models": [
                {"name": "glm", "deployments": [{"model": "zhipu/glm-4-flash", **dep}]},
                {"name": "gpt", "deployments": [{"model": "openai/gpt-4o-mini", **gpt}]},
            ],
        }
    )


@pytest.fixture
def c(cgw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=cgw.base_url, api_key="sk-codex", max_retries=0) as sdk:
        yield sdk


@pytest.mark.parametrize("body", bodies())
@pytest.mark.parametrize("model", ["glm", "gpt"])
def test_every_codex_request_is_accepted(
    c: openai.OpenAI, zhipu_sim: ZhipuSimulator, openai_sim: OpenAISimulator, body: dict[str, Any], model: str
) -> None:
    events = list(create(c, {**body, "model": model}))
    assert check_stream(events).type == "response.completed"
    if model == "glm":
        sent = zhipu_sim.last_request.json
        names = [t["function"]["name"] for t in sent.get("tools") or ()]
        assert all(t["type"] == "function" for t in sent.get("tools") or ())
        assert ("spawn_agent" in names) == any(t["type"] == "namespace" for t in body["tools"])
    else:
        sent = openai_sim.last_request.json
        assert "client_metadata" not in sent  # (not a parameter of OpenAI's API: Codex's own telemetry)
        assert sent["tools"] == body["tools"]


def test_a_call_of_a_namespace_function_names_its_namespace(c: openai.OpenAI, zhipu_sim: ZhipuSimulator) -> None:
    for stream in (False, True):
        zhipu_sim.push(Reply(tool_calls=[{"name": "spawn_agent", "arguments": {}}, {"name": "exec_command"}]))
        body = {**CODEX_LIKE, "model": "glm", "stream": stream}
        if stream:
            events = list(create(c, body))
            output = check_stream(events).response.output
            done = [e.item for e in events if e.type == "response.output_item.done"]
            assert [getattr(d, "namespace", None) for d in done] == ["multi_agent_v1", None]
        else:
            output = create(c, body).output
        calls = [item for item in output if item.type == "function_call"]
        assert [(f.name, f.namespace) for f in calls] == [("spawn_agent", "multi_agent_v1"), ("exec_command", None)]


def test_other_built_in_tools_are_still_refused_for_a_chat_model(c: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        c.responses.create(model="glm", input="x", tools=[{"type": "file_search", "vector_store_ids": ["v"]}])
    assert info.value.body["param"] == "tools[0].type"  # type: ignore[index]
