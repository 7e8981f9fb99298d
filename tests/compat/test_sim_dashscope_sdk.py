"""The official dashscope SDK pointed at DashScopeSimulator (through ``base_address=``, no global state)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
import requests
from dashscope import Generation, TextEmbedding

from modelway.testing import DashScopeSimulator, Fault, Reply, fake_embedding

MESSAGES = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "今天天气怎么样"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def sim() -> Iterator[DashScopeSimulator]:
    with DashScopeSimulator() as s:
        yield s


@pytest.fixture
def call(sim: DashScopeSimulator) -> Iterator[Any]:
    """``Generation.call`` bound to the simulator, with a session of its own (closed afterwards)."""
    with requests.Session() as session:

        def generate(**kwargs: Any) -> Any:
            kwargs.setdefault("api_key", sim.api_key)
            kwargs.setdefault("model", "qwen-plus")
            kwargs.setdefault("messages", MESSAGES)
            return Generation.call(base_address=sim.base_url, session=session, **kwargs)

        yield generate


def test_non_stream_message_format(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Reply("晴天，25度。", usage=(20, 6)))
    resp = call(result_format="message", temperature=0.7)
    assert resp.status_code == HTTPStatus.OK
    assert resp.output.choices[0].message.content == "晴天，25度。"
    assert resp.output.choices[0].finish_reason == "stop"
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (20, 6, 26)
    assert len(resp.request_id) == 36  # a uuid, also sent as the x-request-id header
    req = sim.last_request
    assert req.path == "/api/v1/services/aigc/text-generation/generation"
    assert req.headers["authorization"] == f"Bearer {sim.api_key}"
    assert req.json["input"] == {"messages": MESSAGES}
    assert req.json["parameters"]["result_format"] == "message"
    assert "stream" not in req.json and "x-dashscope-sse" not in req.headers


def test_non_stream_text_format(call: Any) -> None:
    resp = call(prompt="hello", messages=None)
    assert resp.status_code == HTTPStatus.OK
    assert resp.output.text == "You said: hello"
    assert resp.output.finish_reason == "stop"
    assert resp.output.choices is None


def test_stream_incremental(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Reply("一二三四五六七", chunk_size=3))
    frames = list(call(stream=True, incremental_output=True, result_format="message"))
    assert sim.last_request.headers["x-dashscope-sse"] == "enable"
    assert sim.last_request.json["parameters"]["incremental_output"] is True
    assert all(f.status_code == HTTPStatus.OK for f in frames)
    pieces = [f.output.choices[0].message.content for f in frames]
    assert pieces == ["一二三", "四五六", "七", ""]
    assert [f.output.choices[0].finish_reason for f in frames] == ["null", "null", "null", "stop"]
    outputs = [f.usage.output_tokens for f in frames]
    assert outputs == sorted(outputs) and outputs[-1] == 7  # running usage


def test_stream_cumulative_when_incremental_omitted(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Reply("abcdefgh", chunk_size=4))
    frames = list(call(stream=True))
    assert "incremental_output" not in sim.last_request.json["parameters"]
    assert [f.output.text for f in frames] == ["abcd", "abcdefgh", "abcdefgh"]
    assert [f.output.finish_reason for f in frames] == ["null", "null", "stop"]


def test_stream_incremental_false_is_merged_by_the_sdk(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Reply("abcdefgh", chunk_size=4))
    frames = list(call(stream=True, incremental_output=False, result_format="message"))
    assert sim.last_request.json["parameters"]["incremental_output"] is True  # the SDK rewrites it
    assert frames[-1].output.choices[0].message.content == "abcdefgh"


def test_tools_non_stream(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}]))
    resp = call(tools=TOOLS, result_format="message")
    choice = resp.output.choices[0]
    assert choice.finish_reason == "tool_calls"
    tc = choice.message.tool_calls[0]
    assert tc["function"]["name"] == "get_weather" and json.loads(tc["function"]["arguments"]) == {"city": "杭州"}
    assert sim.last_request.json["parameters"]["tools"] == TOOLS


def test_tools_stream(sim: DashScopeSimulator, call: Any) -> None:
    args = '{"city": "杭州", "unit": "celsius"}'
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": args}], chunk_size=6))
    frames = list(call(stream=True, incremental_output=True, tools=TOOLS, result_format="message"))
    name = arguments = ""
    for f in frames:
        for tc in f.output.choices[0].message.get("tool_calls") or ():
            name += tc["function"].get("name", "")
            arguments += tc["function"].get("arguments", "")
    assert name == "get_weather" and json.loads(arguments) == json.loads(args)
    assert frames[-1].output.choices[0].finish_reason == "tool_calls"
    # the SDK's own merger (incremental_output=False on the caller side) rebuilds the whole call
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": args}], chunk_size=6))
    merged = list(call(stream=True, incremental_output=False, tools=TOOLS, result_format="message"))
    tc = merged[-1].output.choices[0].message.tool_calls[0]
    assert tc["function"]["name"] == "get_weather" and tc["function"]["arguments"] == args


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "InvalidApiKey"), (429, "Throttling.RateQuota"), (400, "DataInspectionFailed")],
)
def test_errors_are_returned_as_responses(sim: DashScopeSimulator, call: Any, status: int, code: str) -> None:
    sim.push(Fault.http(status))
    resp = call()
    assert resp.status_code == status
    assert resp.code == code
    assert resp.message and resp.request_id


def test_wrong_key(call: Any) -> None:
    resp = call(api_key="sk-wrong")
    assert (resp.status_code, resp.code, resp.message) == (401, "InvalidApiKey", "Invalid API-key provided.")


def test_error_before_stream(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Fault.http(429, code="Throttling.AllocationQuota"))
    frames = list(call(stream=True, incremental_output=True))
    assert [(f.status_code, f.code) for f in frames] == [(429, "Throttling.AllocationQuota")]


def test_error_event_mid_stream(sim: DashScopeSimulator, call: Any) -> None:
    sim.push(Fault.error_frame(after_chunks=2, reply=Reply("一二三四五六七八", chunk_size=2)))
    frames = list(call(stream=True, incremental_output=True, result_format="message"))
    assert [f.status_code for f in frames] == [200, 200, 400]
    assert frames[1].output.choices[0].message.content == "三四"
    assert frames[-1].code == "DataInspectionFailed"
    assert frames[-1].message == "Output data may contain inappropriate content."


def test_text_embedding(sim: DashScopeSimulator) -> None:
    with requests.Session() as session:
        resp = TextEmbedding.call(
            model="text-embedding-v3",
            input=["风急天高猿啸哀", "渚清沙白鸟飞回"],
            dimension=16,
            api_key=sim.api_key,
            base_address=sim.base_url,
            session=session,
        )
    assert resp.status_code == HTTPStatus.OK
    embeddings = resp.output["embeddings"]
    assert [e["text_index"] for e in embeddings] == [0, 1]
    assert embeddings[0]["embedding"] == fake_embedding("风急天高猿啸哀", 16)
    assert resp.usage["total_tokens"] == 14
    assert sim.last_request.json["parameters"] == {"dimension": 16}
