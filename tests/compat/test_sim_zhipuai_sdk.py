"""The official zhipuai SDK pointed at ZhipuSimulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import zhipuai
from zhipuai import ZhipuAI

from modelway.testing import Fault, Reply, ZhipuSimulator, fake_embedding

USER = [{"role": "user", "content": "你好"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def sim() -> Iterator[ZhipuSimulator]:
    with ZhipuSimulator() as s:
        yield s


@pytest.fixture
def client(sim: ZhipuSimulator) -> Iterator[ZhipuAI]:
    with ZhipuAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0) as c:
        yield c


def test_non_stream(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Reply("你好！我是GLM。", reasoning="用户在打招呼", usage=(9, 6)))
    resp = client.chat.completions.create(model="glm-4-flash", messages=USER, temperature=0)
    assert resp.choices[0].message.content == "你好！我是GLM。"
    assert resp.choices[0].message.reasoning_content == "用户在打招呼"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == 9 and resp.usage.completion_tokens == 6 and resp.usage.total_tokens == 15
    assert resp.id == resp.request_id
    req = sim.last_request
    assert req.path == "/api/paas/v4/chat/completions"
    assert req.auth_kind == "key"
    # the SDK sends explicit nulls and clamps temperature 0
    assert req.json["response_format"] is None and req.json["thinking"] is None
    assert req.json["do_sample"] is False and req.json["temperature"] == 0.01


def test_request_id_is_echoed(client: ZhipuAI) -> None:
    resp = client.chat.completions.create(model="glm-4-flash", messages=USER, request_id="my-req-1")
    assert resp.id == resp.request_id == "my-req-1"
    assert resp.choices[0].message.content == "You said: 你好"


def test_stream(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Reply("北京今天晴，气温二十度。", reasoning="查天气", chunk_size=3, usage=(5, 8)))
    chunks = list(client.chat.completions.create(model="glm-4.5", messages=USER, stream=True))
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert (reasoning, content) == ("查天气", "北京今天晴，气温二十度。")
    assert all(c.choices[0].delta.role == "assistant" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13
    assert all(c.usage is None for c in chunks[:-1])


def test_tools_non_stream(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}]))
    resp = client.chat.completions.create(model="glm-4-plus", messages=USER, tools=TOOLS, tool_choice="auto")
    assert resp.choices[0].finish_reason == "tool_calls"
    call = resp.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "杭州"}
    assert sim.last_request.json["tools"] == TOOLS


def test_tools_stream(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Reply(tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}]))
    chunks = list(client.chat.completions.create(model="glm-4-plus", messages=USER, tools=TOOLS, stream=True))
    assert len(chunks) == 2  # the whole call in one delta, then the usage chunk
    calls = chunks[0].choices[0].delta.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "杭州"}
    assert [c.choices[0].finish_reason for c in chunks] == ["tool_calls", "tool_calls"]
    assert chunks[0].usage is None and chunks[1].usage is not None


def test_embeddings(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    resp = client.embeddings.create(model="embedding-3", input=["你好", "世界"], dimensions=12)
    assert [d.embedding for d in resp.data] == [fake_embedding("你好", 12), fake_embedding("世界", 12)]
    assert resp.usage.completion_tokens == 0 and resp.usage.prompt_tokens == 4
    assert sim.last_request.path == "/api/paas/v4/embeddings"


def test_rate_limit(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Fault.http(429))
    with pytest.raises(zhipuai.APIReachLimitError) as exc:
        client.chat.completions.create(model="glm-4-flash", messages=USER)
    assert exc.value.status_code == 429
    assert exc.value.response.json()["error"]["code"] == "1302"


def test_sensitive_input(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Fault.http(400))
    with pytest.raises(zhipuai.APIRequestFailedError) as exc:
        client.chat.completions.create(model="glm-4-flash", messages=USER)
    assert exc.value.response.json()["error"]["code"] == "1301"


def test_authentication_error(sim: ZhipuSimulator) -> None:
    with (
        ZhipuAI(api_key="test-id.wrong-secret", base_url=sim.base_url, max_retries=0) as bad,
        pytest.raises(zhipuai.APIAuthenticationError) as exc,
    ):
        bad.chat.completions.create(model="glm-4-flash", messages=USER)
    assert exc.value.response.json()["error"]["code"] == "1002"
    assert sim.last_request.auth_kind is None


def test_finish_reason_sensitive(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Reply("部分内容", finish_reason="sensitive"), Reply("x", finish_reason="sensitive"))
    chunks = list(client.chat.completions.create(model="glm-4-flash", messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "sensitive"
    resp = client.chat.completions.create(model="glm-4-flash", messages=USER)
    assert resp.choices[0].finish_reason == "sensitive"


def test_mid_stream_error(sim: ZhipuSimulator, client: ZhipuAI) -> None:
    sim.push(Fault.error_frame(after_chunks=1, code="1301", message="内容不安全"))
    seen = []
    with pytest.raises(zhipuai.APIResponseError) as exc:
        for chunk in client.chat.completions.create(model="glm-4-flash", messages=USER, stream=True):
            seen.append(chunk)
    assert len(seen) == 1
    assert exc.value.json_data == {"code": "1301", "message": "内容不安全"}


def test_jwt_token_cache(sim: ZhipuSimulator) -> None:
    with ZhipuAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=0, disable_token_cache=False) as c:
        for _ in range(2):
            assert c.chat.completions.create(model="glm-4-flash", messages=USER).choices[0].message.content
    assert [r.auth_kind for r in sim.requests] == ["jwt", "jwt"]
    assert sim.jwt_requests == 2
    assert len(sim.jwt_tokens) == 1  # the SDK caches its token
    assert sim.requests[0].headers["authorization"] == f"Bearer {sim.jwt_tokens[0]}"
