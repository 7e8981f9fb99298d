"""``reasoning_effort`` reaches each provider in its own terms, and earlier reasoning goes back where it is wanted."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelway.errors import InvalidRequestError
from modelway.providers import PROVIDERS, ProviderSettings
from modelway.validate import chat_request

TOOL_LOOP = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "I should call the tool.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]


def body(provider: str, effort: str | None = None, messages: Any = None, **extra: Any) -> dict[str, Any]:
    adapter = PROVIDERS[provider](ProviderSettings(api_key="k.s", base_url="http://127.0.0.1:9"))
    params: dict[str, Any] = dict(extra)
    if effort is not None:
        params["reasoning_effort"] = effort
    req = chat_request("m", messages or "hi", params=params)
    payload = orjson.loads(adapter.chat_request(req).body or b"{}")
    assert isinstance(payload, dict)
    return payload


@pytest.mark.parametrize(
    ("provider", "effort", "want", "absent"),
    [
        ("openai", "high", {"reasoning_effort": "high"}, ()),
        ("vllm", "low", {"reasoning_effort": "low"}, ()),
        ("deepseek", "high", {"reasoning_effort": "high"}, ("thinking",)),
        ("deepseek", "none", {"thinking": {"type": "disabled"}}, ("reasoning_effort",)),
        ("zhipu", "medium", {"thinking": {"type": "enabled"}}, ("reasoning_effort",)),
        ("zhipu", "none", {"thinking": {"type": "disabled"}}, ("reasoning_effort",)),
        ("volcengine", "low", {"thinking": {"type": "enabled"}}, ("reasoning_effort",)),
        ("dashscope-compatible", "high", {"enable_thinking": True}, ("reasoning_effort",)),
        ("siliconflow", "none", {"enable_thinking": False}, ("reasoning_effort",)),
        ("moonshot", "high", {}, ("reasoning_effort", "thinking", "enable_thinking")),
        ("qianfan", "high", {}, ("reasoning_effort", "thinking", "enable_thinking")),
    ],
)
def test_reasoning_effort_is_translated(
    provider: str, effort: str, want: dict[str, Any], absent: tuple[str, ...]
) -> None:
    payload = body(provider, effort)
    for k, v in want.items():
        assert payload[k] == v, payload
    for k in absent:
        assert k not in payload, payload


def test_dashscope_native_takes_a_switch() -> None:
    assert body("dashscope", "none")["parameters"]["enable_thinking"] is False
    assert body("dashscope", "high")["parameters"]["enable_thinking"] is True
    assert "reasoning_effort" not in body("dashscope", "high")["parameters"]


def test_the_callers_own_switch_wins() -> None:
    assert body("zhipu", "high", thinking={"type": "disabled"})["thinking"] == {"type": "disabled"}
    assert body("dashscope", "high", enable_thinking=False)["parameters"]["enable_thinking"] is False


def test_no_effort_sends_nothing() -> None:
    for provider in ("openai", "zhipu", "deepseek", "dashscope-compatible"):
        payload = body(provider)
        assert not {"reasoning_effort", "thinking", "enable_thinking"} & payload.keys(), provider


def test_an_unknown_effort_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        chat_request("m", "hi", params={"reasoning_effort": "extreme"})
    assert info.value.param == "reasoning_effort"


@pytest.mark.parametrize("provider", ["deepseek", "zhipu", "dashscope-compatible", "vllm"])
def test_earlier_reasoning_goes_back_in_tool_loops(provider: str) -> None:
    """DeepSeek's thinking mode answers 400 when an earlier turn's reasoning_content is missing in a tool loop."""
    sent = body(provider, messages=TOOL_LOOP)["messages"]
    assert sent[1]["reasoning_content"] == "I should call the tool."


def test_openai_gets_no_reasoning_content_in_messages() -> None:
    sent = body("openai", messages=TOOL_LOOP)["messages"]
    assert all("reasoning_content" not in m for m in sent)
    assert sent[1]["tool_calls"][0]["id"] == "c1"  # the rest of the message is kept


@pytest.mark.parametrize(
    ("provider", "want", "absent"),
    [
        ("zhipu", {"thinking": {"type": "disabled"}}, ("reasoning_effort",)),
        ("deepseek", {"thinking": {"type": "disabled"}}, ("reasoning_effort",)),
        ("siliconflow", {"enable_thinking": False}, ("reasoning_effort",)),
        ("moonshot", {}, ("reasoning_effort", "thinking", "enable_thinking")),
        ("openai", {"reasoning_effort": "none"}, ()),
    ],
)
def test_an_effort_in_extra_body_is_translated_too(
    provider: str, want: dict[str, Any], absent: tuple[str, ...]
) -> None:
    """``Client.chat(..., extra_body={"reasoning_effort": "none"})`` puts the OpenAI parameter in ``extra``: it is
    checked as one (chat_request), so it must reach the provider in the provider's terms, not raw."""
    adapter = PROVIDERS[provider](ProviderSettings(api_key="k.s", base_url="http://127.0.0.1:9"))
    req = chat_request("m", "hi", extra={"reasoning_effort": "none"})
    payload = orjson.loads(adapter.chat_request(req).body or b"{}")
    for k, v in want.items():
        assert payload[k] == v, payload
    for k in absent:
        assert k not in payload, payload


def test_dashscope_native_translates_an_effort_in_extra_body() -> None:
    adapter = PROVIDERS["dashscope"](ProviderSettings(api_key="k", base_url="http://127.0.0.1:9"))
    params = orjson.loads(adapter.chat_request(chat_request("m", "hi", extra={"reasoning_effort": "none"})).body)
    assert params["parameters"]["enable_thinking"] is False and "reasoning_effort" not in params["parameters"]
