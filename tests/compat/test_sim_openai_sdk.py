"""The official openai SDK pointed at the OpenAI-family simulators."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from modelway.testing import (
    DashScopeCompatibleSimulator,
    DeepSeekSimulator,
    Fault,
    MoonshotSimulator,
    OpenAISimulator,
    Reply,
    fake_embedding,
)

USER = [{"role": "user", "content": "hi there"}]
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
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator() as s:
        yield s


@pytest.fixture
def client(sim: OpenAISimulator) -> Iterator[OpenAI]:
    with OpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
        yield c


def test_chat_non_stream(sim: OpenAISimulator, client: OpenAI) -> None:
    sim.push(Reply("Hello, 世界!", usage=(12, 5)))
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0)
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == "Hello, 世界!"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (12, 5, 17)
    assert resp._request_id is not None and resp._request_id.startswith("req_")
    req = sim.last_request
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {sim.api_key}"
    assert req.json == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0}


def test_default_reply_echoes_last_user_message(client: OpenAI) -> None:
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert resp.choices[0].message.content == "You said: hi there"


def test_stream_with_include_usage(sim: OpenAISimulator, client: OpenAI) -> None:
    sim.push(Reply("你好，世界！再见", chunk_size=3, usage=(7, 4)))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "你好，世界！再见"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["你好，", "世界！", "再见"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 4)


def test_tool_call_stream(sim: OpenAISimulator, client: OpenAI) -> None:
    args = json.dumps({"city": "Hangzhou", "unit": "celsius"})
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": args}], chunk_size=5))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=TOOLS, stream=True)
    name, arguments, ids, finish, fragments = "", "", set(), None, 0
    for chunk in stream:
        choice = chunk.choices[0]
        for tc in choice.delta.tool_calls or ():
            assert tc.index == 0
            fragments += 1
            if tc.id:
                ids.add(tc.id)
            if tc.function and tc.function.name:
                name += tc.function.name
            if tc.function and tc.function.arguments:
                arguments += tc.function.arguments
        finish = choice.finish_reason or finish
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Hangzhou", "unit": "celsius"}
    assert len(ids) == 1 and fragments > 2  # arguments arrive split
    assert finish == "tool_calls"


def test_tool_call_non_stream(sim: OpenAISimulator, client: OpenAI) -> None:
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "北京"}, "id": "call_1"}]))
    resp = client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=TOOLS)
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    assert msg.tool_calls is not None and msg.tool_calls[0].id == "call_1"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "北京"}


def test_embeddings_base64_default_and_float(sim: OpenAISimulator, client: OpenAI) -> None:
    default = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "β"])
    assert sim.last_request.json["encoding_format"] == "base64"  # the SDK's default on the wire
    floats = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float")
    assert sim.last_request.json["encoding_format"] == "float"
    assert default.data[0].embedding == fake_embedding("alpha") == floats.data[0].embedding
    assert default.data[1].embedding == fake_embedding("β")
    assert len(default.data[1].embedding) == 8
    sized = client.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=16)
    assert sized.data[0].embedding == fake_embedding("alpha", 16)
    assert default.usage.prompt_tokens == default.usage.total_tokens > 0


def test_models(sim: OpenAISimulator, client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == sim.models
    assert client.models.retrieve("gpt-4o").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("no-such-model")
    assert exc.value.code == "model_not_found"


def test_rate_limit_error(sim: OpenAISimulator, client: OpenAI) -> None:
    sim.push(Fault.http(429, retry_after=3))
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert exc.value.status_code == 429
    assert exc.value.code == "rate_limit_exceeded"
    assert exc.value.response.headers["retry-after"] == "3"
    # the queue is consumed: the next call succeeds
    assert client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content


def test_authentication_error(sim: OpenAISimulator) -> None:
    with (
        OpenAI(api_key="sk-wrong", base_url=sim.base_url, max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError) as exc,
    ):
        bad.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert exc.value.code == "invalid_api_key"
    assert exc.value.type == "invalid_request_error"


def test_mid_stream_error(sim: OpenAISimulator, client: OpenAI) -> None:
    sim.push(Fault.error_frame(after_chunks=2, message="boom"))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match="boom") as exc:
        for chunk in stream:
            seen.append(chunk)
    assert len(seen) == 2
    assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "server_error"


def test_cut_stream_is_a_connection_error(sim: OpenAISimulator, client: OpenAI) -> None:
    sim.push(Fault.cut_stream(after_chunks=2))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            seen.append(chunk)
    assert len(seen) == 2


def test_deepseek_flavour() -> None:
    with DeepSeekSimulator() as sim, OpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
        resp = c.chat.completions.create(model="deepseek-reasoner", messages=USER)
        msg = resp.choices[0].message
        assert msg.content == "You said: hi there"
        assert getattr(msg, "reasoning_content", None)  # extra field kept by the SDK
        assert resp.usage is not None and resp.usage.model_extra is not None
        assert resp.usage.model_extra["prompt_cache_miss_tokens"] == resp.usage.prompt_tokens
        sim.push(Reply("ok", reasoning="let me think"))
        chunks = list(c.chat.completions.create(model="deepseek-chat", messages=USER, stream=True))
        reasoning = "".join(getattr(ch.choices[0].delta, "reasoning_content", None) or "" for ch in chunks)
        assert reasoning == "let me think"
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == "ok"
        sim.push(Fault.http(402))
        with pytest.raises(openai.APIStatusError) as exc:
            c.chat.completions.create(model="deepseek-chat", messages=USER)
        assert exc.value.status_code == 402 and exc.value.message.endswith("Insufficient Balance")
        assert {r.path for r in sim.requests} == {"/chat/completions"}


def test_moonshot_flavour() -> None:
    with MoonshotSimulator() as sim, OpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
        sim.push(Reply("月之暗面", usage=(10, 3)))
        chunks = list(
            c.chat.completions.create(
                model="moonshot-v1-8k", messages=USER, stream=True, stream_options={"include_usage": True}
            )
        )
        finish = next(ch for ch in chunks if ch.choices and ch.choices[0].finish_reason)
        assert finish.choices[0].model_extra is not None
        assert finish.choices[0].model_extra["usage"]["total_tokens"] == 13
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == 13
        sim.push(Fault.http(429))
        with pytest.raises(openai.RateLimitError) as exc:
            c.chat.completions.create(model="moonshot-v1-8k", messages=USER)
        assert exc.value.type == "rate_limit_reached_error"


def test_dashscope_compatible_flavour() -> None:
    with (
        DashScopeCompatibleSimulator() as sim,
        OpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c,
    ):
        assert sim.base_url.endswith("/compatible-mode/v1")
        resp = c.chat.completions.create(model="qwen-plus", messages=USER)
        assert resp.choices[0].message.content == "You said: hi there"
        sim.push(Fault.http(400))
        with pytest.raises(openai.BadRequestError) as exc:
            c.chat.completions.create(model="qwen-plus", messages=USER)
        assert exc.value.code == "data_inspection_failed" and exc.value.type == "data_inspection_failed"
        sim.push(Fault.http(429))
        with pytest.raises(openai.RateLimitError) as exc2:
            c.chat.completions.create(model="qwen-plus", messages=USER)
        assert exc2.value.code == "limit_requests"
        sim.push(Fault.error_frame(after_chunks=1))
        with pytest.raises(openai.APIError, match="inappropriate"):
            for _ in c.chat.completions.create(model="qwen-plus", messages=USER, stream=True):
                pass
        emb = c.embeddings.create(model="text-embedding-v3", input="文本")
        assert emb.data[0].embedding == fake_embedding("文本")
