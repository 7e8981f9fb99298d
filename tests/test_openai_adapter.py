"""The generic OpenAI-compatible adapter, sans-I/O: requests built, bodies and events parsed."""

from __future__ import annotations

import orjson
import pytest

from modelway import errors
from modelway.providers import PROVIDERS, ProviderSettings
from modelway.providers.openai_compat import OpenAICompatAdapter
from modelway.sse import SSEDecoder
from modelway.types import ChatCompletionChunk, ChatRequest
from modelway.validate import chat_request


def adapter(name: str = "openai", key: str | None = "sk-test", base: str | None = None) -> OpenAICompatAdapter:
    a = PROVIDERS[name](ProviderSettings(api_key=key, base_url=base))
    assert isinstance(a, OpenAICompatAdapter)
    return a


def run_stream(a: OpenAICompatAdapter, req: ChatRequest, raw: bytes, size: int = 7) -> list[ChatCompletionChunk]:
    parser = a.stream_parser(req)
    dec = SSEDecoder()
    out: list[ChatCompletionChunk] = []
    for i in range(0, len(raw), size):
        for ev in dec.feed(raw[i : i + size]):
            out.extend(parser.event(ev))
    for ev in dec.flush():
        out.extend(parser.event(ev))
    out.extend(parser.close())
    return out


def sse(*objs: object, done: bool = True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(o) + b"\n\n" for o in objs)
    return body + (b"data: [DONE]\n\n" if done else b"")


class TestRequest:
    def test_zero_values_are_sent_not_dropped(self) -> None:
        req = chat_request("gpt-4o-mini", "hi", params={"temperature": 0, "top_p": 0, "max_tokens": 16, "seed": 0})
        http = adapter().chat_request(req)
        body = orjson.loads(http.body or b"")
        assert body["temperature"] == 0 and body["top_p"] == 0 and body["max_tokens"] == 16 and body["seed"] == 0
        assert body["messages"] == [{"role": "user", "content": "hi"}]
        assert "stream" not in body

    def test_url_auth_and_extras(self) -> None:
        req = chat_request("deepseek-chat", "hi", params={"top_k": 5}, extra={"thinking": {"type": "enabled"}})
        http = adapter("deepseek", key="sk-ds").chat_request(req)
        assert http.url == "https://api.deepseek.com/chat/completions"
        assert http.headers["Authorization"] == "Bearer sk-ds"
        body = orjson.loads(http.body or b"")
        assert body["top_k"] == 5 and body["thinking"] == {"type": "enabled"}

    def test_stream_always_asks_for_usage(self) -> None:
        req = chat_request("m", "hi", stream=True)
        body = orjson.loads(adapter().chat_request(req).body or b"")
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}

    def test_missing_key_is_a_config_error(self) -> None:
        with pytest.raises(errors.ConfigError, match="OPENAI_API_KEY"):
            adapter(key=None).chat_request(chat_request("m", "hi"))

    def test_keyless_local_servers(self) -> None:
        http = adapter("ollama", key=None).chat_request(chat_request("llama3", "hi"))
        assert "Authorization" not in http.headers
        assert http.url == "http://127.0.0.1:11434/v1/chat/completions"

    def test_headers_built_once_per_key_and_each_request_owns_its_own(self) -> None:
        # auth from the key alone: the headers are built once (static_headers); a subclass with its own auth_headers
        # (Zhipu's JWT expires) or base_headers is not static unless it says so again
        assert PROVIDERS["openai"].static_headers and PROVIDERS["jina"].static_headers
        assert not PROVIDERS["zhipu"].static_headers and not PROVIDERS["dashscope"].static_headers
        assert not PROVIDERS["anthropic"].static_headers
        a = adapter()
        req = chat_request("gpt-4o-mini", "hi")
        first = a.chat_request(req).headers
        first["X-Mine"] = "1"
        assert a.chat_request(req).headers == {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": "Bearer sk-test",
        }
        a.api_key = "sk-other"  # a key set later is the one sent
        assert a.chat_request(req).headers["Authorization"] == "Bearer sk-other"

    def test_base_url_override_trailing_slash(self) -> None:
        http = adapter(base="http://127.0.0.1:9/v1/").chat_request(chat_request("m", "hi"))
        assert http.url == "http://127.0.0.1:9/v1/chat/completions"


class TestResponse:
    def test_non_stream_with_tools_and_reasoning(self) -> None:
        body = orjson.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "deepseek-reasoner",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "reasoning_content": "think",
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "weather", "arguments": '{"city":"杭州"}'},
                                }
                            ],
                        },
                    }
                ],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 7,
                    "total_tokens": 12,
                    "completion_tokens_details": {"reasoning_tokens": 3},
                },
            }
        )
        req = chat_request("deepseek-reasoner", "hi")
        r = adapter("deepseek").parse_chat(body, {}, req)
        msg = r.choices[0].message
        assert msg.content is None and msg.reasoning_content == "think"
        assert msg.tool_calls and msg.tool_calls[0].function.arguments == '{"city":"杭州"}'
        assert r.choices[0].finish_reason == "tool_calls"
        assert r.usage is not None and r.usage.total_tokens == 12
        assert r.usage.completion_tokens_details == {"reasoning_tokens": 3}

    def test_stream_usage_rides_on_last_chunk(self) -> None:
        raw = sse(
            {
                "id": "c",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                "usage": None,
            },
            {
                "id": "c",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "你好"}}],
                "usage": None,
            },
            {
                "id": "c",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": None,
            },
            {
                "id": "c",
                "created": 1,
                "model": "m",
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
        )
        chunks = run_stream(adapter(), chat_request("m", "hi", stream=True), raw)
        assert "".join(c.content or "" for c in chunks) == "你好"
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
        assert all(c.usage is None for c in chunks[:-1])

    def test_none_content_and_missing_delta_do_not_crash(self) -> None:
        raw = sse(
            {"id": "c", "choices": [{"index": 0, "delta": {"content": None}}]},
            {"id": "c", "choices": [{"index": 0}]},
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]},
        )
        chunks = run_stream(adapter(), chat_request("m", "hi", stream=True), raw)
        assert [c.content for c in chunks] == [None, None, "ok"]

    def test_moonshot_usage_counted_once(self) -> None:
        usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
        raw = sse(
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
            {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "usage": usage}]},
            {"id": "c", "choices": [], "usage": usage},
        )
        chunks = run_stream(adapter("moonshot"), chat_request("m", "hi", stream=True), raw)
        totals = [c.usage.total_tokens for c in chunks if c.usage]
        assert totals == [14]

    def test_tool_call_fragments_pass_through(self) -> None:
        raw = sse(
            {
                "id": "c",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": ""},
                                }
                            ]
                        },
                    }
                ],
            },
            {
                "id": "c",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}}],
            },
            {
                "id": "c",
                "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}],
            },
            {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        )
        chunks = run_stream(adapter(), chat_request("m", "hi", stream=True), raw)
        frags = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
        assert frags[0].id == "call_1" and frags[0].name == "f"
        assert "".join(f.arguments or "" for f in frags) == '{"a":1}'
        assert chunks[-1].choices[0].finish_reason == "tool_calls"

    def test_error_event_mid_stream_raises(self) -> None:
        raw = sse(
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "part"}}]},
            {"error": {"code": "data_inspection_failed", "type": "data_inspection_failed", "message": "bad output"}},
        )
        with pytest.raises(errors.ContentFilterError) as ei:
            run_stream(adapter("dashscope-compatible"), chat_request("m", "hi", stream=True), raw)
        assert ei.value.code == "data_inspection_failed"

    def test_cut_stream_raises_stream_error(self) -> None:
        raw = sse({"id": "c", "choices": [{"index": 0, "delta": {"content": "part"}}]}, done=False)
        with pytest.raises(errors.StreamError):
            run_stream(adapter(), chat_request("m", "hi", stream=True), raw)

    def test_finished_stream_without_done_is_complete(self) -> None:
        raw = sse(
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]}, done=False
        )
        chunks = run_stream(adapter(), chat_request("m", "hi", stream=True), raw)
        assert chunks[-1].choices[0].finish_reason == "stop"

    def test_malformed_event_raises_stream_error(self) -> None:
        with pytest.raises(errors.StreamError, match="malformed"):
            run_stream(adapter(), chat_request("m", "hi", stream=True), b"data: {broken\n\n")

    def test_deepseek_resource_finish_raises(self) -> None:
        raw = sse({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "insufficient_system_resource"}]})
        with pytest.raises(errors.UpstreamServerError):
            run_stream(adapter("deepseek"), chat_request("m", "hi", stream=True), raw)


class TestErrors:
    @pytest.mark.parametrize(
        ("name", "status", "body", "cls", "code"),
        [
            (
                "openai",
                429,
                {"error": {"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}},
                errors.RateLimitError,
                "rate_limit_exceeded",
            ),
            (
                "openai",
                401,
                {"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}},
                errors.AuthenticationError,
                "invalid_api_key",
            ),
            (
                "openai",
                400,
                {"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}},
                errors.ContextLengthError,
                "context_length_exceeded",
            ),
            (
                "deepseek",
                402,
                {"error": {"message": "Insufficient Balance", "type": "unknown_error"}},
                errors.PermissionDeniedError,
                "unknown_error",
            ),
            (
                "dashscope-compatible",
                400,
                {
                    "error": {
                        "code": "data_inspection_failed",
                        "type": "data_inspection_failed",
                        "message": "inappropriate",
                    }
                },
                errors.ContentFilterError,
                "data_inspection_failed",
            ),
            (
                "hunyuan",
                400,
                {"error": {"message": "请求限频", "type": "runtime_error", "code": "2003"}},
                errors.RateLimitError,
                "2003",
            ),
            ("openai", 503, b"<html>bad gateway</html>", errors.UpstreamServerError, None),
        ],
    )
    def test_http_errors(
        self, name: str, status: int, body: object, cls: type[errors.ProviderError], code: str | None
    ) -> None:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        err = adapter(name).parse_error(status, {"x-request-id": "req-9", "retry-after": "3"}, raw)
        assert type(err) is cls
        assert err.code == code and err.status_code == status and err.provider == name
        assert err.request_id == "req-9" and err.retry_after == 3.0
        assert err.message


class TestLogprobs:
    def test_logprobs_pass_through(self) -> None:
        lp = {"content": [{"token": "hi", "logprob": -0.1, "top_logprobs": []}]}
        body = orjson.dumps(
            {
                "id": "c",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "logprobs": lp,
                        "finish_reason": "stop",
                    }
                ],
            }
        )
        req = chat_request("m", "hi", params={"logprobs": True, "top_logprobs": 2})
        http = adapter().chat_request(req)
        assert orjson.loads(http.body or b"")["top_logprobs"] == 2
        r = adapter().parse_chat(body, {}, req)
        assert r.choices[0].logprobs == lp and r.to_dict()["choices"][0]["logprobs"] == lp
        raw = sse(
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": lp, "finish_reason": "stop"}]}
        )
        chunks = run_stream(adapter(), chat_request("m", "hi", stream=True), raw)
        assert chunks[-1].choices[0].logprobs == lp and chunks[-1].to_dict()["choices"][0]["logprobs"] == lp

    def test_n_choices_must_all_finish_when_the_stream_closes_without_done(self) -> None:
        raw = sse(
            {
                "id": "c",
                "choices": [
                    {"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"},
                    {"index": 1, "delta": {"content": "b"}},
                ],
            },
            done=False,
        )
        with pytest.raises(errors.StreamError):
            run_stream(adapter(), chat_request("m", "hi", stream=True, params={"n": 2}), raw)


class TestChunkFields:
    def test_created_and_model_are_normalised(self) -> None:
        raw = sse(
            {
                "id": 7,
                "created": "1700000000",
                "model": 5,
                "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}],
            }
        )
        chunks = run_stream(adapter(), chat_request("m", "hi", stream=True), raw)
        c = chunks[-1]
        assert (c.id, c.created, c.model) == ("7", 1700000000, "5")

    def test_usage_in_a_choice_without_finish_reason_is_kept(self) -> None:
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        raw = sse(
            {"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}, "usage": usage}]},
            {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        )
        chunks = run_stream(adapter("moonshot"), chat_request("m", "hi", stream=True), raw)
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 3


def test_deepseek_cache_hits_become_cached_tokens() -> None:
    from modelway.types import Usage

    u = Usage.from_openai(
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "total_tokens": 12,
            "prompt_cache_hit_tokens": 8,
            "prompt_cache_miss_tokens": 2,
        }
    )
    assert u.prompt_tokens_details == {"cached_tokens": 8}
    kept = Usage.from_openai(
        {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}, "prompt_cache_hit_tokens": 0}
    )
    assert kept.prompt_tokens_details == {"cached_tokens": 1}
