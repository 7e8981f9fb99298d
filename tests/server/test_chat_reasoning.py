"""Reasoning on Chat Completions: streamed reasoning stays in ``reasoning_content`` (never ``<think>`` text in
``content``), and earlier reasoning travels back to the provider in tool loops."""

from __future__ import annotations

import openai
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import DashScopeSimulator, OpenAISimulator, Reply, ZhipuSimulator


def sdk(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER_KEY, base_url=gw.base_url, max_retries=0)


@pytest.mark.parametrize(("model", "sim_name"), [("glm", "zhipu_sim"), ("qwen", "dashscope_sim")])
def test_streamed_reasoning_is_never_content(
    gateway: RunningGateway, model: str, sim_name: str, request: pytest.FixtureRequest
) -> None:
    sim = request.getfixturevalue(sim_name)
    sim.push(Reply(text="42.", reasoning="Let me think about it carefully."))
    with sdk(gateway) as c:
        chunks = list(c.chat.completions.create(model=model, messages=[{"role": "user", "content": "q"}], stream=True))
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    content = "".join(d.content or "" for d in deltas)
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert content == "42."
    assert reasoning == "Let me think about it carefully."
    assert "<think>" not in content


def test_reasoning_goes_back_to_a_thinking_provider(
    gateway: RunningGateway, zhipu_sim: ZhipuSimulator, dashscope_sim: DashScopeSimulator, openai_sim: OpenAISimulator
) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "call the tool",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    with sdk(gateway) as c:
        c.chat.completions.create(model="glm", messages=messages, reasoning_effort="high")  # type: ignore[arg-type]
        c.chat.completions.create(model="gpt", messages=messages)  # type: ignore[arg-type]
    sent = zhipu_sim.last_request.json
    assert sent["messages"][1]["reasoning_content"] == "call the tool"
    assert sent["thinking"] == {"type": "enabled"} and "reasoning_effort" not in sent
    # OpenAI refuses unknown fields in messages: the reasoning stays behind, the tool call goes
    sent = openai_sim.last_request.json
    assert "reasoning_content" not in sent["messages"][1] and sent["messages"][1]["tool_calls"][0]["id"] == "c1"
