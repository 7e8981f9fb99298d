"""The official anthropic SDK pointed at AnthropicSimulator, and modelway's adapter against the same simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import orjson
import pytest

from modelway import calls
from modelway.errors import AuthenticationError, RateLimitError, StreamError, UpstreamServerError
from modelway.providers.anthropic import AnthropicAdapter
from modelway.providers.base import ProviderSettings
from modelway.retry import RetryPolicy
from modelway.testing import AnthropicSimulator, Fault, Reply
from modelway.transport import Transport
from modelway.types import ChatCompletionChunk, ChatRequest

MODEL = "claude-haiku-4-5"  # not in the SDK's DEPRECATED_MODELS (claude-sonnet-4-5 warns from 2.12)
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
    }
]


@pytest.fixture
def sim() -> Iterator[AnthropicSimulator]:
    with AnthropicSimulator() as s:
        yield s


@pytest.fixture
def client(sim: AnthropicSimulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
        yield c


# -- the official SDK ------------------------------------------------------------------------------


def test_sdk_non_stream(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Reply("Bonjour !", usage=(12, 3)))
    msg = client.messages.create(
        model=MODEL, max_tokens=64, system="Speak French.", messages=[{"role": "user", "content": "Hello"}]
    )
    assert msg.id.startswith("msg_")
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Bonjour !"  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (12, 3)
    req = sim.last_request
    assert req.path == "/v1/messages"
    assert req.auth_kind == "key"
    assert "anthropic-version" in req.headers
    assert req.json["system"] == "Speak French." and req.json["max_tokens"] == 64


def test_sdk_default_echo_and_request_id(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "ping"}]
    )
    assert raw.headers["request-id"].startswith("req_")
    msg = raw.parse()
    assert msg.content[0].text == "You said: ping"  # type: ignore[union-attr]


def test_sdk_stream(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Reply("The quick brown fox", chunk_size=3, usage=(9, 5)))
    with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == "The quick brown fox"
    assert final.content[0].text == "The quick brown fox"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 5)
    assert sim.last_request.json["stream"] is True


def test_sdk_stream_raw_event_order(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Reply("hi", reasoning="think", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    events = list(
        client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "go"}], tools=[WEATHER], stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e.content_block.type for e in events if isinstance(e, anthropic.types.RawContentBlockStartEvent)]
    assert starts == ["thinking", "text", "tool_use"]


def test_sdk_tool_use(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    msg = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert msg.stop_reason == "tool_use"
    block = msg.content[0]
    assert block.type == "tool_use"
    assert block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id.startswith("toolu_")
    # the tool result goes back as a tool_result block
    sim.push(Reply("It is sunny."))
    history: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
    ]
    msg2 = client.messages.create(model=MODEL, max_tokens=64, tools=[WEATHER], messages=history)
    assert msg2.content[0].text == "It is sunny."  # type: ignore[union-attr]


def test_sdk_stream_tool_use(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Lyon"}}], chunk_size=4))
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Lyon"}  # type: ignore[union-attr]


def test_sdk_rate_limit(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Fault.http(429, retry_after=3))
    with pytest.raises(anthropic.RateLimitError) as ei:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 429
    assert ei.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert ei.value.response.headers["retry-after"] == "3"
    assert ei.value.request_id and ei.value.request_id.startswith("req_")


def test_sdk_overloaded(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Fault.http(529))
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 529
    assert ei.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_sdk_authentication(sim: AnthropicSimulator) -> None:
    bad = anthropic.Anthropic(api_key="sk-ant-wrong", base_url=sim.base_url, max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError) as ei:
        bad.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 401
    assert ei.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_sdk_missing_max_tokens(sim: AnthropicSimulator) -> None:
    import httpx

    r = httpx.post(
        sim.base_url + "/v1/messages",
        headers={"x-api-key": sim.api_key, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]


def test_sdk_mid_stream_error(sim: AnthropicSimulator, client: anthropic.Anthropic) -> None:
    sim.push(Fault.error_frame(after_chunks=4, reply=Reply("a long answer to cut", chunk_size=2)))
    got: list[str] = []
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "x"}]
    with (
        pytest.raises(anthropic.APIStatusError) as ei,
        client.messages.stream(model=MODEL, max_tokens=64, messages=messages) as s,
    ):
        got.extend(s.text_stream)
    assert "".join(got) == "a "  # events: message_start, ping, content_block_start, one text delta
    assert ei.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


# -- modelway's adapter against the simulator ------------------------------------------------------


def _req(stream: bool = False, **params: object) -> ChatRequest:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    return ChatRequest(MODEL, msgs, stream=stream, params=dict(params))


async def _drive(sim: AnthropicSimulator, req: ChatRequest) -> list[ChatCompletionChunk]:
    adapter = AnthropicAdapter(ProviderSettings(api_key=sim.api_key, base_url=sim.base_url))
    transport = Transport()
    try:
        return [c async for c in calls.stream(transport, adapter, req, timeout=10, retry=RetryPolicy(0))]
    finally:
        await transport.aclose()


async def test_adapter_non_stream() -> None:
    async with AnthropicSimulator() as sim:
        sim.push(Reply("Hi!", reasoning="short", usage=(7, 2)))
        adapter = AnthropicAdapter(ProviderSettings(api_key=sim.api_key, base_url=sim.base_url))
        transport = Transport()
        try:
            resp = await calls.complete(transport, adapter, _req(temperature=0), timeout=10, retry=RetryPolicy(0))
        finally:
            await transport.aclose()
        assert resp.content == "Hi!"
        assert resp.choices[0].message.reasoning_content == "short"
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (7, 2)
        req = sim.last_request
        assert req.headers["x-api-key"] == sim.api_key
        assert req.headers["anthropic-version"] == "2023-06-01"
        assert req.json["system"] == "Be brief."
        assert req.json["max_tokens"] == 4096 and req.json["temperature"] == 0


async def test_adapter_stream() -> None:
    async with AnthropicSimulator() as sim:
        sim.push(Reply("streamed text here", chunk_size=3, usage=(10, 4)))
        chunks = await _drive(sim, _req(stream=True))
        assert "".join(c.content or "" for c in chunks) == "streamed text here"
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 14
        assert all(c.usage is None for c in chunks[:-1])
        assert sim.last_request.json["stream"] is True


async def test_adapter_tools_non_stream_and_stream() -> None:
    async with AnthropicSimulator() as sim:
        call = {"name": "get_weather", "arguments": {"city": "Paris"}}
        sim.push(Reply(tool_calls=[call]), Reply(tool_calls=[call], chunk_size=3))
        adapter = AnthropicAdapter(ProviderSettings(api_key=sim.api_key, base_url=sim.base_url))
        transport = Transport()
        try:
            req = _req(tools=OPENAI_TOOLS, tool_choice="required")
            resp = await calls.complete(transport, adapter, req, timeout=10, retry=RetryPolicy(0))
        finally:
            await transport.aclose()
        assert sim.last_request.json["tool_choice"] == {"type": "any"}
        assert sim.last_request.json["tools"][0]["input_schema"] == WEATHER["input_schema"]
        tcs = resp.choices[0].message.tool_calls
        assert tcs is not None and tcs[0].function.name == "get_weather"
        assert orjson.loads(tcs[0].function.arguments) == {"city": "Paris"}
        assert resp.choices[0].finish_reason == "tool_calls"

        chunks = await _drive(sim, _req(stream=True, tools=OPENAI_TOOLS))
        args = "".join(t.arguments or "" for c in chunks for t in c.choices[0].delta.tool_calls or ())
        names = [t.name for c in chunks for t in c.choices[0].delta.tool_calls or () if t.name]
        assert orjson.loads(args) == {"city": "Paris"} and names == ["get_weather"]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_adapter_errors() -> None:
    async with AnthropicSimulator() as sim:
        adapter = AnthropicAdapter(ProviderSettings(api_key=sim.api_key, base_url=sim.base_url))
        bad = AnthropicAdapter(ProviderSettings(api_key="nope", base_url=sim.base_url))
        transport = Transport()
        try:
            sim.push(Fault.http(429, retry_after=2))
            with pytest.raises(RateLimitError) as ei:
                await calls.complete(transport, adapter, _req(), timeout=10, retry=RetryPolicy(0))
            assert ei.value.retry_after == 2.0 and ei.value.request_id and ei.value.code == "rate_limit_error"
            sim.push(Fault.http(529))
            with pytest.raises(UpstreamServerError):
                await calls.complete(transport, adapter, _req(), timeout=10, retry=RetryPolicy(0))
            with pytest.raises(AuthenticationError):
                await calls.complete(transport, bad, _req(), timeout=10, retry=RetryPolicy(0))
        finally:
            await transport.aclose()

        sim.push(Fault.error_frame(after_chunks=4, reply=Reply("abcdefgh", chunk_size=2)))
        with pytest.raises(UpstreamServerError) as e2:
            await _drive(sim, _req(stream=True))
        assert e2.value.code == "overloaded_error"

        sim.push(Fault.cut_stream(after_chunks=5, reply=Reply("abcdefgh", chunk_size=2)))
        with pytest.raises(StreamError):
            await _drive(sim, _req(stream=True))

        sim.push(Fault.malformed_json(after_chunks=4))
        with pytest.raises(StreamError):
            await _drive(sim, _req(stream=True))
