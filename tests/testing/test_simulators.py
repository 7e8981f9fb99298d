"""Raw HTTP checks of the provider simulators: framing, auth, scripting and faults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from modelway.sse import SSEDecoder, SSEEvent
from modelway.testing import (
    DashScopeCompatibleSimulator,
    DashScopeSimulator,
    DeepSeekSimulator,
    Fault,
    MoonshotSimulator,
    OpenAISimulator,
    Reply,
    ZhipuSimulator,
    count_tokens,
    fake_embedding,
)

USER = [{"role": "user", "content": "hello"}]
DS_CHAT = "/services/aigc/text-generation/generation"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def events(body: bytes) -> list[SSEEvent]:
    dec = SSEDecoder()
    return dec.feed(body) + dec.flush()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(url, data=orjson.dumps(body), headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


# ---------------------------------------------------------------------------------------- lifecycle


def test_thread_mode_urls_and_stop() -> None:
    expected = {
        ZhipuSimulator: "/api/paas/v4",
        DashScopeSimulator: "/api/v1",
        OpenAISimulator: "/v1",
        DeepSeekSimulator: "",
        MoonshotSimulator: "/v1",
        DashScopeCompatibleSimulator: "/compatible-mode/v1",
    }
    for cls, path in expected.items():
        sim = cls()
        assert sim.start() is sim
        try:
            assert sim.url.startswith("http://127.0.0.1:") and sim.port > 0
            assert sim.base_url == sim.url + path
            assert sim.running
        finally:
            sim.stop()
        assert not sim.running
        sim.stop()  # idempotent
    assert ZhipuSimulator().api_key == "test-id.test-secret"


def test_context_manager_serves_sync_clients() -> None:
    import urllib.request

    with OpenAISimulator() as sim:
        req = urllib.request.Request(sim.base_url + "/models", headers=bearer(sim.api_key))
        with urllib.request.urlopen(req) as resp:
            assert orjson.loads(resp.read())["object"] == "list"
        port = sim.port
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)


async def test_async_mode_records_and_clears(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        body = {"model": "gpt-4o", "messages": USER, "response_format": None}
        status, headers, raw = await post(
            http, sim.base_url + "/chat/completions", body, {**bearer(sim.api_key), "X-Custom": "1"}
        )
        assert status == 200 and headers["X-Request-ID"].startswith("req_")
        rec = sim.last_request
        assert (rec.method, rec.path, rec.json, rec.auth_kind) == ("POST", "/v1/chat/completions", body, "key")
        assert rec.body == orjson.dumps(body) and rec.headers["x-custom"] == "1"
        assert orjson.loads(raw)["choices"][0]["message"]["content"] == "You said: hello"
        sim.push(Reply("queued"))
        assert sim.pending == 1
        sim.clear()
        assert sim.requests == [] and sim.pending == 0


async def test_queue_order_and_auth_failures_do_not_consume(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator(default_reply=Reply("default")) as sim:
        sim.push(Reply("one"), Fault.http(503), Reply("two"))
        url = sim.base_url + "/chat/completions"
        status, _, raw = await post(http, url, {"model": "m", "messages": USER}, bearer("sk-bad"))
        assert status == 401
        assert orjson.loads(raw)["error"]["code"] == "invalid_api_key"
        results = []
        for _ in range(4):
            status, _, raw = await post(http, url, {"model": "m", "messages": USER}, bearer(sim.api_key))
            data = orjson.loads(raw)
            results.append(data["choices"][0]["message"]["content"] if status == 200 else status)
        assert results == ["one", 503, "two", "default"]


async def test_validation_errors(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        status, _, raw = await post(http, sim.base_url + "/chat/completions", {"model": "m"}, bearer(sim.api_key))
        assert status == 400 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
        async with http.get(sim.base_url + "/nope", headers=bearer(sim.api_key)) as r:
            assert r.status == 404 and "error" in await r.json()


# ---------------------------------------------------------------------------------------- OpenAI family


async def test_openai_stream_framing(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        sim.push(Reply("你好世界！", chunk_size=2, tool_calls=[{"name": "f", "arguments": '{"x": 1}'}]))
        body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
        status, headers, raw = await post(http, sim.base_url + "/chat/completions", body, bearer(sim.api_key))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n") and raw.startswith(b"data: {")
    evs = events(raw)
    assert evs[-1].data == "[DONE]"
    chunks = [orjson.loads(e.data) for e in evs[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and "usage" in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:4]]
    assert contents == ["你好", "世界", "！"]
    first_tc = chunks[4]["choices"][0]["delta"]["tool_calls"][0]
    assert first_tc["id"].startswith("call_") and first_tc["function"] == {"name": "f", "arguments": ""}
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[5:-2])
    assert args == '{"x": 1}'
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_openai_stream_without_include_usage(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        sim.push(Reply("abc", usage=(3, 1)))
        _, _, raw = await post(
            http,
            sim.base_url + "/chat/completions",
            {"model": "m", "messages": USER, "stream": True},
            bearer(sim.api_key),
        )
    chunks = [orjson.loads(e.data) for e in events(raw)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_default_usage_is_deterministic(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "你好 there"}]
        _, _, raw = await post(
            http, sim.base_url + "/chat/completions", {"model": "m", "messages": msgs}, bearer(sim.api_key)
        )
    usage = orjson.loads(raw)["usage"]
    assert count_tokens("你好 there") == 4
    assert usage["prompt_tokens"] == count_tokens("be brief") + count_tokens("你好 there")
    assert usage["completion_tokens"] == count_tokens("You said: 你好 there")


async def test_openai_embeddings_and_models(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator(models=["a", "b"]) as sim:
        url, key = sim.base_url + "/embeddings", bearer(sim.api_key)
        _, _, raw = await post(http, url, {"model": "e", "input": ["x", "y"], "encoding_format": "base64"}, key)
        data = orjson.loads(raw)["data"]
        assert struct.unpack("<8f", base64.b64decode(data[1]["embedding"])) == tuple(fake_embedding("y"))
        _, _, raw = await post(http, url, {"model": "e", "input": "x", "dimensions": 3}, key)
        vec = orjson.loads(raw)["data"][0]["embedding"]
        assert vec == fake_embedding("x", 3) and abs(sum(v * v for v in vec) - 1) < 1e-6
        async with http.get(sim.base_url + "/models", headers=key) as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]
        async with http.get(sim.base_url + "/models/zzz", headers=key) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"


async def test_deepseek_keepalive_reasoning_and_routes(http: aiohttp.ClientSession) -> None:
    async with DeepSeekSimulator(keepalive=3) as sim:
        key = bearer(sim.api_key)
        body = {"model": "deepseek-reasoner", "messages": USER, "stream": True}
        _, _, raw = await post(http, sim.url + "/chat/completions", body, key)
        assert raw.startswith(b": keep-alive\n\n" * 3 + b"data: {")
        deltas = [orjson.loads(e.data)["choices"][0]["delta"] for e in events(raw)[:-1]]
        kinds = [k for d in deltas for k in d if k in ("reasoning_content", "content") and d[k]]
        assert set(kinds) == {"reasoning_content", "content"}
        assert kinds == sorted(kinds, key=lambda k: k == "content")  # all reasoning first
        status, _, raw = await post(
            http, sim.url + "/v1/chat/completions", {"model": "deepseek-chat", "messages": USER}, key
        )
        assert status == 200 and raw.startswith(b"\n\n\n{")
        data = orjson.loads(raw)
        assert "reasoning_content" not in data["choices"][0]["message"]
        assert data["usage"]["prompt_cache_hit_tokens"] == 0
        assert data["usage"]["prompt_cache_miss_tokens"] == data["usage"]["prompt_tokens"]
        sim.push(Fault.http(402), Reply(finish_reason="insufficient_system_resource"))
        status, _, raw = await post(http, sim.url + "/chat/completions", {"model": "m", "messages": USER}, key)
        assert status == 402 and orjson.loads(raw)["error"]["message"] == "Insufficient Balance"
        _, _, raw = await post(http, sim.url + "/chat/completions", {"model": "m", "messages": USER}, key)
        assert orjson.loads(raw)["choices"][0]["finish_reason"] == "insufficient_system_resource"
        async with http.get(sim.url + "/user/balance", headers=key) as r:
            assert (await r.json())["is_available"] is True


async def test_moonshot_usage_placement(http: aiohttp.ClientSession) -> None:
    async with MoonshotSimulator() as sim:
        sim.push(Reply("hi", usage=(4, 2)), Reply("hi", usage=(4, 2)))
        url, key = sim.base_url + "/chat/completions", bearer(sim.api_key)
        body: dict[str, Any] = {"model": "moonshot-v1-8k", "messages": USER, "stream": True}
        _, _, raw = await post(http, url, body, key)
        chunks = [orjson.loads(e.data) for e in events(raw)[:-1]]
        assert chunks[-1]["choices"][0]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
        body["stream_options"] = {"include_usage": True}
        _, _, raw = await post(http, url, body, key)
        chunks = [orjson.loads(e.data) for e in events(raw)[:-1]]
        assert chunks[-2]["choices"][0]["usage"]["total_tokens"] == 6
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 6


async def test_dashscope_compatible_errors(http: aiohttp.ClientSession) -> None:
    async with DashScopeCompatibleSimulator() as sim:
        sim.push(Fault.http(400), Fault.http(429, retry_after=2))
        url, key = sim.base_url + "/chat/completions", bearer(sim.api_key)
        status, _, raw = await post(http, url, {"model": "qwen-plus", "messages": USER}, key)
        err = orjson.loads(raw)
        assert status == 400 and err["error"]["code"] == err["error"]["type"] == "data_inspection_failed"
        assert err["request_id"]
        status, headers, raw = await post(http, url, {"model": "qwen-plus", "messages": USER}, key)
        assert status == 429 and headers["Retry-After"] == "2"
        assert orjson.loads(raw)["error"]["code"] == "limit_requests"
        _, _, raw = await post(http, url, {"model": "qwen-plus", "messages": USER, "enable_thinking": True}, key)
        assert orjson.loads(raw)["choices"][0]["message"]["reasoning_content"]


# ---------------------------------------------------------------------------------------- Zhipu


def make_jwt(key: str, *, exp_ms: int | None = None, seconds: bool = False, secret: str | None = None) -> str:
    key_id, _, real_secret = key.partition(".")
    now_ms = int(time.time() * 1000)
    payload = {"api_key": key_id, "exp": exp_ms or now_ms + 210_000, "timestamp": now_ms}
    if seconds:
        payload = {k: v // 1000 if isinstance(v, int) else v for k, v in payload.items()}

    def b64(obj: Any) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    signing = b64({"alg": "HS256", "sign_type": "SIGN", "typ": "JWT"}) + "." + b64(payload)
    sig = hmac.new((secret or real_secret).encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


async def test_zhipu_auth_forms(http: aiohttp.ClientSession) -> None:
    async with ZhipuSimulator() as sim:
        url, body = sim.base_url + "/chat/completions", {"model": "glm-4-flash", "messages": USER}
        token = make_jwt(sim.api_key)
        cases = [
            ({"Authorization": f"Bearer {sim.api_key}"}, 200, "key"),
            ({"Authorization": f"Bearer {token}"}, 200, "jwt"),
            ({"Authorization": token}, 200, "bare-jwt"),
            ({}, 401, "1001"),
            ({"Authorization": "Bearer nope"}, 401, "1002"),
            ({"Authorization": f"Bearer {make_jwt(sim.api_key, seconds=True)}"}, 401, "1002"),
            ({"Authorization": f"Bearer {make_jwt(sim.api_key, exp_ms=1_000_000_000_000)}"}, 401, "1003"),
            ({"Authorization": f"Bearer {make_jwt(sim.api_key, secret='other')}"}, 401, "1004"),
        ]
        for headers, want_status, want in cases:
            status, _, raw = await post(http, url, body, headers)
            assert status == want_status, headers
            if status == 200:
                assert sim.last_request.auth_kind == want
            else:
                assert orjson.loads(raw)["error"]["code"] == want
        assert sim.jwt_tokens == [token] and sim.jwt_requests == 2


async def test_zhipu_stream_framing(http: aiohttp.ClientSession) -> None:
    async with ZhipuSimulator() as sim:
        sim.push(Reply("好的", reasoning="嗯", chunk_size=1))
        body = {
            "model": "glm-4.5",
            "messages": USER,
            "stream": True,
            "thinking": None,
            "response_format": None,
            "stream_options": {"include_usage": True},
            "request_id": "r-1",
        }
        status, headers, raw = await post(http, sim.base_url + "/chat/completions", body, bearer(sim.api_key))
    assert status == 200 and headers["Content-Type"] == "text/event-stream;charset=UTF-8"
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = [orjson.loads(e.data) for e in events(raw)[:-1]]
    assert all("object" not in c and c["id"] == "r-1" for c in chunks)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "reasoning_content": "嗯"},
        {"role": "assistant", "content": "好"},
        {"role": "assistant", "content": "的"},
        {"role": "assistant", "content": ""},
    ]
    assert all("finish_reason" not in c["choices"][0] and "usage" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 1}


async def test_zhipu_errors_and_embeddings(http: aiohttp.ClientSession) -> None:
    async with ZhipuSimulator() as sim:
        key = bearer(sim.api_key)
        sim.push(Fault.http(429, retry_after=1), Fault.http(400), Fault.http(401), Fault.http(404, code="1211"))
        codes = []
        for _ in range(4):
            status, headers, raw = await post(
                http, sim.base_url + "/chat/completions", {"model": "glm-4", "messages": USER}, key
            )
            codes.append((status, orjson.loads(raw)["error"]["code"]))
        assert codes == [(429, "1302"), (400, "1301"), (401, "1002"), (404, "1211")]
        _, _, raw = await post(http, sim.base_url + "/embeddings", {"model": "embedding-3", "input": "x"}, key)
        data = orjson.loads(raw)
        assert data["object"] == "list" and data["data"][0]["embedding"] == fake_embedding("x")
        assert data["usage"] == {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}


# ---------------------------------------------------------------------------------------- DashScope native


async def test_dashscope_sse_only_from_headers(http: aiohttp.ClientSession) -> None:
    async with DashScopeSimulator() as sim:
        url, key = sim.base_url + DS_CHAT, bearer(sim.api_key)
        body = {"model": "qwen-plus", "input": {"messages": USER}, "parameters": {}, "stream": True}
        status, headers, raw = await post(http, url, body, key)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        data = orjson.loads(raw)
        assert data["output"] == {"text": "You said: hello", "finish_reason": "stop"}
        assert data["request_id"] == headers["X-Request-ID"]
        assert data["usage"]["total_tokens"] == data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
        for sse_header in ({"X-DashScope-SSE": "enable"}, {"Accept": "text/event-stream"}):
            status, headers, raw = await post(http, url, body, {**key, **sse_header})
            assert headers["Content-Type"] == "text/event-stream;charset=UTF-8"
            assert raw.startswith(b"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{")
            assert b"[DONE]" not in raw and b"data: " not in raw


async def test_dashscope_cumulative_and_incremental(http: aiohttp.ClientSession) -> None:
    async with DashScopeSimulator() as sim:
        url, key = sim.base_url + DS_CHAT, {**bearer(sim.api_key), "X-DashScope-SSE": "enable"}
        sim.push(Reply("一二三四五", chunk_size=2), Reply("一二三四五", chunk_size=2))
        params: dict[str, Any] = {"result_format": "message"}
        _, _, raw = await post(http, url, {"model": "q", "input": {"messages": USER}, "parameters": params}, key)
        frames = [orjson.loads(e.data) for e in events(raw)]
        assert [e.id for e in events(raw)] == ["1", "2", "3", "4"]
        contents = [f["output"]["choices"][0]["message"]["content"] for f in frames]
        assert contents == ["一二", "一二三四", "一二三四五", "一二三四五"]
        assert [f["output"]["choices"][0]["finish_reason"] for f in frames] == ["null", "null", "null", "stop"]
        assert [f["usage"]["output_tokens"] for f in frames] == [2, 4, 5, 5]
        params["incremental_output"] = True
        _, _, raw = await post(http, url, {"model": "q", "input": {"prompt": "hi"}, "parameters": params}, key)
        contents = [orjson.loads(e.data)["output"]["choices"][0]["message"]["content"] for e in events(raw)]
        assert contents == ["一二", "三四", "五", ""]


async def test_dashscope_errors(http: aiohttp.ClientSession) -> None:
    async with DashScopeSimulator() as sim:
        url, key = sim.base_url + DS_CHAT, bearer(sim.api_key)
        status, _, raw = await post(http, url, {"model": "q", "input": {}}, key)
        assert status == 400 and orjson.loads(raw)["code"] == "InvalidParameter"
        status, _, raw = await post(http, url, {"model": "q", "input": {"prompt": "x"}}, {})
        assert status == 401 and orjson.loads(raw)["message"] == "No API-key provided."
        sim.push(Fault.error_frame(1, code="InternalError.Algo", status=500, reply=Reply("abcdefgh")))
        _, _, raw = await post(
            http, url, {"model": "q", "input": {"prompt": "x"}}, {**key, "Accept": "text/event-stream"}
        )
        assert raw.split(b"\n\n")[1].startswith(b"id:2\nevent:error\n:HTTP_STATUS/500\ndata:{")
        err = events(raw)[-1]
        assert err.event == "error" and orjson.loads(err.data)["code"] == "InternalError.Algo"
        _, _, raw = await post(
            http,
            sim.base_url + "/services/embeddings/text-embedding/text-embedding",
            {"model": "text-embedding-v3", "input": {"texts": ["a"]}},
            key,
        )
        assert orjson.loads(raw)["output"]["embeddings"][0] == {"text_index": 0, "embedding": fake_embedding("a")}


# ---------------------------------------------------------------------------------------- faults


async def test_slow_first_byte_and_chunk_delay(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        sim.push(Fault.slow_first_byte(0.3, then=Reply("late")))
        url, key = sim.base_url + "/chat/completions", bearer(sim.api_key)
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(
                url, json={"model": "m", "messages": USER}, headers=key, timeout=aiohttp.ClientTimeout(total=0.1)
            ):
                pass
        sim.push(Fault.slow_first_byte(0.2, then=Reply("late")))
        start = time.monotonic()
        status, _, raw = await post(http, url, {"model": "m", "messages": USER}, key)
        assert time.monotonic() - start >= 0.2
        assert orjson.loads(raw)["choices"][0]["message"]["content"] == "late"
        sim.push(Reply("abcdef", chunk_size=2, chunk_delay=0.05))
        start = time.monotonic()
        await post(http, url, {"model": "m", "messages": USER, "stream": True}, key)
        assert time.monotonic() - start >= 0.2  # 5 events, 4 gaps


async def test_cut_stream_truncates_chunked_body(http: aiohttp.ClientSession) -> None:
    async with ZhipuSimulator() as sim:
        sim.push(Fault.cut_stream(after_chunks=2, reply=Reply("abcdefghijkl")), Fault.cut_stream())
        url, key = sim.base_url + "/chat/completions", bearer(sim.api_key)
        async with http.post(url, json={"model": "m", "messages": USER, "stream": True}, headers=key) as r:
            assert r.status == 200
            received = b""
            with pytest.raises(aiohttp.ClientPayloadError):
                async for piece in r.content.iter_any():
                    received += piece
        assert len(events(received)) == 2 and b"[DONE]" not in received
        async with http.post(url, json={"model": "m", "messages": USER}, headers=key) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()


@pytest.mark.parametrize("cls", [OpenAISimulator, ZhipuSimulator, DashScopeCompatibleSimulator])
async def test_error_frame_openai_like(http: aiohttp.ClientSession, cls: type[OpenAISimulator]) -> None:
    async with cls() as sim:
        sim.push(Fault.error_frame(after_chunks=1, code="c1", message="m1"), Fault.error_frame(code="c2"))
        url, key = sim.base_url + "/chat/completions", bearer(sim.api_key)
        _, _, raw = await post(http, url, {"model": "m", "messages": USER, "stream": True}, key)
        evs = events(raw)
        assert len(evs) == 2 and evs[1].event is None
        err = orjson.loads(evs[1].data)["error"]
        assert (err["code"], err["message"]) == ("c1", "m1")
        status, _, raw = await post(http, url, {"model": "m", "messages": USER}, key)
        assert status == 500 and orjson.loads(raw)["error"]["code"] == "c2"


async def test_malformed_json(http: aiohttp.ClientSession) -> None:
    async with DashScopeSimulator() as sim:
        sim.push(Fault.malformed_json(), Fault.malformed_json(after_chunks=1))
        url, key = sim.base_url + DS_CHAT, bearer(sim.api_key)
        body = {"model": "q", "input": {"prompt": "x"}}
        status, headers, raw = await post(http, url, body, key)
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        _, _, raw = await post(http, url, body, {**key, "X-DashScope-SSE": "enable"})
        evs = events(raw)
        assert len(evs) == 2 and evs[1].data == "{broken"
    async with OpenAISimulator() as osim:
        osim.push(Fault.malformed_json())
        _, _, raw = await post(
            http,
            osim.base_url + "/chat/completions",
            {"model": "m", "messages": USER, "stream": True},
            bearer(osim.api_key),
        )
        assert raw == b"data: {broken\n\n"


async def test_faults_apply_to_embeddings(http: aiohttp.ClientSession) -> None:
    async with OpenAISimulator() as sim:
        sim.push(Fault.http(429, code="insufficient_quota", message="quota"))
        status, _, raw = await post(
            http, sim.base_url + "/embeddings", {"model": "e", "input": "x"}, bearer(sim.api_key)
        )
        assert status == 429
        assert orjson.loads(raw)["error"] == {
            "message": "quota",
            "type": "requests",
            "param": None,
            "code": "insufficient_quota",
        }
