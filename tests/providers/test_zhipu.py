"""Zhipu GLM API v4 adapter: sans-I/O tests from recorded-shape bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
import pytest

from modelway.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
)
from modelway.providers.base import ProviderSettings
from modelway.providers.zhipu import ZHIPU_CODES, ZhipuAdapter
from modelway.sse import SSEDecoder
from modelway.types import ChatCompletionChunk, ChatRequest, EmbeddingRequest

KEY = "7c3e1d0f9a2b4c6d.Xy9sEcReT0k"
BASE = "https://open.bigmodel.cn/api/paas/v4"


def make(key: str | None = KEY, clock: Any = None, **options: Any) -> ZhipuAdapter:
    settings = ProviderSettings(api_key=key, options=options)
    return ZhipuAdapter(settings, clock=clock) if clock else ZhipuAdapter(settings)


def body_of(adapter: ZhipuAdapter, req: ChatRequest) -> dict[str, Any]:
    http = adapter.chat_request(req)
    assert http.body is not None
    out: dict[str, Any] = orjson.loads(http.body)
    return out


def feed(adapter: ZhipuAdapter, req: ChatRequest, raw: bytes, cuts: list[int]) -> list[ChatCompletionChunk]:
    """Run ``raw`` through the SSE decoder and the parser, cut at the given byte offsets."""
    dec, parser = SSEDecoder(), adapter.stream_parser(req)
    out: list[ChatCompletionChunk] = []
    bounds = [0, *cuts, len(raw)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        for ev in dec.feed(raw[a:b]):
            out.extend(parser.event(ev))
    for ev in dec.flush():
        out.extend(parser.event(ev))
    out.extend(parser.close())
    return out


def sse(*frames: Any) -> bytes:
    parts = []
    for f in frames:
        data = f if isinstance(f, str) else orjson.dumps(f).decode()
        parts.append(f"data: {data}\n\n")
    return "".join(parts).encode()


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- request building --------------------------------------------------------------------------------


class TestRequest:
    def test_url_headers_and_exact_body(self) -> None:
        req = ChatRequest(
            "glm-4-plus",
            [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "你好"}],
            params={"temperature": 0.7, "top_p": 0.5, "max_tokens": 64, "stop": ["\n\n"], "seed": 42},
        )
        http = make().chat_request(req)
        assert http.method == "POST"
        assert http.url == f"{BASE}/chat/completions"
        assert http.headers["Authorization"] == f"Bearer {KEY}"
        assert http.headers["Content-Type"] == "application/json"
        assert http.provider == "zhipu"
        assert orjson.loads(http.body or b"") == {
            "model": "glm-4-plus",
            "messages": [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "你好"}],
            "temperature": 0.7,
            "top_p": 0.5,
            "max_tokens": 64,
            "stop": ["\n\n"],
            "seed": 42,
        }

    def test_system_message_is_sent_not_rejected(self) -> None:
        # seed bug: DB-GPT's Zhipu client raised on any system message
        req = ChatRequest("glm-4-flash", [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        assert body_of(make(), req)["messages"][0] == {"role": "system", "content": "be brief"}

    def test_developer_role_becomes_system_without_mutating_caller(self) -> None:
        messages = [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}]
        body = body_of(make(), ChatRequest("glm-4-flash", messages))
        assert body["messages"] == [{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}]
        assert messages[0]["role"] == "developer"

    def test_temperature_zero_means_greedy_not_dropped(self) -> None:
        body = body_of(make(), ChatRequest("glm-4-flash", [], params={"temperature": 0}))
        assert body["temperature"] == 0.01
        assert body["do_sample"] is False

    @pytest.mark.parametrize(
        ("given", "sent"), [(-1, 0.01), (0.01, 0.01), (0.5, 0.5), (0.99, 0.99), (1, 0.99), (1.7, 0.99)]
    )
    def test_temperature_bounds(self, given: float, sent: float) -> None:
        body = body_of(make(), ChatRequest("glm-4-flash", [], params={"temperature": given}))
        assert body["temperature"] == sent
        assert ("do_sample" in body) == (given <= 0)

    @pytest.mark.parametrize(("given", "sent"), [(0, 0.01), (0.3, 0.3), (1, 0.99), (1.5, 0.99), (-2, 0.01)])
    def test_top_p_clamped(self, given: float, sent: float) -> None:
        body = body_of(make(), ChatRequest("glm-4-flash", [], params={"top_p": given}))
        assert body["top_p"] == sent
        assert "do_sample" not in body

    def test_caller_do_sample_wins(self) -> None:
        req = ChatRequest("glm-4-flash", [], params={"temperature": 0}, extra={"do_sample": True})
        assert body_of(make(), req)["do_sample"] is True

    def test_renames_and_pass_through(self) -> None:
        tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
        req = ChatRequest(
            "glm-4.5",
            [{"role": "user", "content": "hi"}],
            params={
                "max_completion_tokens": 100,
                "user": "u-1",
                "tools": tools,
                "tool_choice": "auto",
                "response_format": {"type": "json_object"},
            },
            extra={"thinking": {"type": "enabled"}, "request_id": "req-1"},
        )
        body = body_of(make(), req)
        assert body["max_tokens"] == 100
        assert "max_completion_tokens" not in body
        assert body["user_id"] == "u-1"
        assert "user" not in body
        assert body["tools"] == tools
        assert body["tool_choice"] == "auto"
        assert body["response_format"] == {"type": "json_object"}
        assert body["thinking"] == {"type": "enabled"}
        assert body["request_id"] == "req-1"

    def test_max_completion_tokens_wins_over_max_tokens(self) -> None:
        req = ChatRequest("glm-4.5", [], params={"max_tokens": 10, "max_completion_tokens": 20})
        assert body_of(make(), req)["max_tokens"] == 20

    def test_stream_never_sends_stream_options(self) -> None:
        req = ChatRequest("glm-4-flash", [], stream=True, params={"stream_options": {"include_usage": True}})
        body = body_of(make(), req)
        assert body["stream"] is True
        assert "stream_options" not in body

    def test_base_url_override_and_trailing_slash(self) -> None:
        a = ZhipuAdapter(ProviderSettings(api_key=KEY, base_url="https://api.z.ai/api/paas/v4/"))
        assert a.chat_request(ChatRequest("glm-4.6", [])).url == "https://api.z.ai/api/paas/v4/chat/completions"

    def test_class_attributes(self) -> None:
        assert ZhipuAdapter.name == "zhipu"
        assert ZhipuAdapter.default_base_url == BASE
        assert ZhipuAdapter.key_env == ("ZHIPUAI_API_KEY",)
        assert ZhipuAdapter.base_url_env == ("ZHIPUAI_BASE_URL",)
        assert ZhipuAdapter.supports_embeddings is True
        assert {m.id for m in make().models()} >= {"zhipu/glm-4-flash", "zhipu/glm-4.6", "zhipu/embedding-3"}

    def test_missing_key_is_config_error(self) -> None:
        with pytest.raises(ConfigError, match="ZHIPUAI_API_KEY"):
            make(key=None).chat_request(ChatRequest("glm-4-flash", []))

    def test_unknown_auth_mode_is_config_error(self) -> None:
        with pytest.raises(ConfigError, match="auth"):
            make(auth="oauth")


# -- JWT -----------------------------------------------------------------------------------------------


class TestJWT:
    def decode(self, token: str, secret: str) -> tuple[dict[str, Any], dict[str, Any]]:
        head, payload, sig = token.split(".")
        expected = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
        assert hmac.compare_digest(b64url_decode(sig), expected), "bad signature"
        assert "=" not in token
        return orjson.loads(b64url_decode(head)), orjson.loads(b64url_decode(payload))

    def test_format_signature_and_millisecond_times(self) -> None:
        clock = Clock(1_700_000_000.25)
        a = make(auth="jwt", clock=clock)
        http = a.chat_request(ChatRequest("glm-4-flash", []))
        scheme, token = http.headers["Authorization"].split(" ")
        assert scheme == "Bearer"
        header, payload = self.decode(token, "Xy9sEcReT0k")
        assert header == {"alg": "HS256", "sign_type": "SIGN"}
        assert payload == {
            "api_key": "7c3e1d0f9a2b4c6d",
            "timestamp": 1_700_000_000_250,
            "exp": 1_700_000_000_250 + 210_000,
        }

    def test_verifies_with_pyjwt(self) -> None:
        jwt = pytest.importorskip("jwt")
        token = make(auth="jwt", clock=Clock(1_700_000_000)).token()
        claims = jwt.decode(token, "Xy9sEcReT0k", algorithms=["HS256"], options={"verify_exp": False})
        assert claims["api_key"] == "7c3e1d0f9a2b4c6d"
        assert jwt.get_unverified_header(token)["sign_type"] == "SIGN"

    def test_wrong_secret_fails_verification(self) -> None:
        token = make(auth="jwt", clock=Clock(1_700_000_000)).token()
        with pytest.raises(AssertionError, match="bad signature"):
            self.decode(token, "other")

    def test_cached_then_renewed_shortly_before_expiry(self) -> None:
        clock = Clock(1_000.0)
        a = make(auth="jwt", clock=clock)
        first = a.token()
        clock.t = 1_000.0 + 179.9  # 30.1 s left: still cached
        assert a.token() is first
        assert a.chat_request(ChatRequest("glm-4-flash", [])).headers["Authorization"] == f"Bearer {first}"
        clock.t = 1_000.0 + 180.0  # 30 s left: re-signed
        second = a.token()
        assert second != first
        assert a.chat_request(ChatRequest("glm-4-flash", [])).headers["Authorization"] == f"Bearer {second}"
        assert self.decode(second, "Xy9sEcReT0k")[1]["timestamp"] == 1_180_000
        clock.t = 1_200.0
        assert a.token() is second

    def test_ttl_option(self) -> None:
        clock = Clock(50.0)
        a = make(auth="jwt", clock=clock, jwt_ttl=40)
        payload = self.decode(a.token(), "Xy9sEcReT0k")[1]
        assert payload["exp"] - payload["timestamp"] == 40_000
        first = a.token()
        clock.t = 50.0 + 19.9  # margin is min(30, ttl / 2) = 20 s
        assert a.token() is first
        clock.t = 50.0 + 20.0
        assert a.token() != first

    def test_bad_ttl_is_config_error(self) -> None:
        with pytest.raises(ConfigError, match="jwt_ttl"):
            make(auth="jwt", jwt_ttl=0)

    def test_tokens_are_per_instance(self) -> None:
        clock = Clock(1_000.0)
        a = make("idA.secretA", auth="jwt", clock=clock)
        b = make("idB.secretB", auth="jwt", clock=clock)
        ta, tb = a.token(), b.token()
        assert ta != tb
        assert self.decode(ta, "secretA")[1]["api_key"] == "idA"
        assert self.decode(tb, "secretB")[1]["api_key"] == "idB"
        # b signing did not replace a's cached token, nor the reverse
        assert a.token() is ta
        assert b.token() is tb

    @pytest.mark.parametrize("key", ["no-dot-key", ".secret", "id."])
    def test_key_without_id_and_secret_is_config_error(self, key: str) -> None:
        with pytest.raises(ConfigError, match=r"<id>\.<secret>"):
            make(key, auth="jwt").chat_request(ChatRequest("glm-4-flash", []))

    def test_key_mode_accepts_any_key(self) -> None:
        assert make("no-dot-key").auth_headers() == {"Authorization": "Bearer no-dot-key"}


# -- non-stream ---------------------------------------------------------------------------------------

RECORDED = {
    "id": "20250926190545abc",
    "request_id": "20250926190545abc",
    "created": 1758884753,
    "model": "glm-4.5",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": "\n\n",
                "reasoning_content": "用户想知道天气。",
                "tool_calls": [
                    {
                        "id": "call_-8300",
                        "index": 0,
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"location": "Florence,Italy"}'},
                    }
                ],
            },
        }
    ],
    "usage": {
        "prompt_tokens": 179,
        "completion_tokens": 79,
        "total_tokens": 258,
        "prompt_tokens_details": {"cached_tokens": 43},
    },
}


class TestParseChat:
    def test_recorded_tool_call_with_reasoning(self) -> None:
        resp = make().parse_chat(orjson.dumps(RECORDED), {}, ChatRequest("glm-4.5", []))
        assert resp.id == "20250926190545abc"
        assert resp.model == "glm-4.5"
        assert resp.provider == "zhipu"
        msg = resp.choices[0].message
        assert msg.content == "\n\n"
        assert msg.reasoning_content == "用户想知道天气。"
        assert msg.tool_calls is not None
        assert msg.tool_calls[0].id == "call_-8300"
        assert msg.tool_calls[0].function.name == "weather"
        assert orjson.loads(msg.tool_calls[0].function.arguments) == {"location": "Florence,Italy"}
        assert resp.choices[0].finish_reason == "tool_calls"
        assert resp.usage is not None
        assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (
            179,
            79,
            258,
        )
        assert resp.usage.prompt_tokens_details == {"cached_tokens": 43}
        assert resp.to_dict()["object"] == "chat.completion"

    def test_plain_text(self) -> None:
        body = {
            "id": "r1",
            "created": 1,
            "model": "glm-4-flash",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "你好"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        resp = make().parse_chat(orjson.dumps(body), {}, ChatRequest("glm-4-flash", []))
        assert resp.content == "你好"
        assert resp.choices[0].message.tool_calls is None

    @pytest.mark.parametrize(
        ("reason", "mapped"),
        [
            ("sensitive", "content_filter"),
            ("stop", "stop"),
            ("length", "length"),
            ("model_context_window_exceeded", "length"),
        ],
    )
    def test_finish_reasons(self, reason: str, mapped: str) -> None:
        body = {"id": "r", "choices": [{"index": 0, "finish_reason": reason, "message": {"content": "x"}}]}
        resp = make().parse_chat(orjson.dumps(body), {}, ChatRequest("glm-4-flash", []))
        assert resp.choices[0].finish_reason == mapped

    def test_network_error_finish_raises(self) -> None:
        body = {
            "id": "r9",
            "choices": [{"index": 0, "finish_reason": "network_error", "message": {"content": ""}}],
        }
        with pytest.raises(UpstreamServerError) as ei:
            make().parse_chat(orjson.dumps(body), {}, ChatRequest("glm-4-flash", []))
        assert ei.value.code == "network_error"
        assert ei.value.request_id == "r9"
        assert ei.value.retryable


# -- streaming ----------------------------------------------------------------------------------------

REQ = ChatRequest("glm-4.5", [{"role": "user", "content": "你好"}], stream=True)
THINKING_STREAM = sse(
    {
        "id": "s1",
        "created": 1758884753,
        "model": "glm-4.5",
        "choices": [{"index": 0, "delta": {"role": "assistant"}}],
    },
    {
        "id": "s1",
        "created": 1758884753,
        "model": "glm-4.5",
        "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "想一想"}}],
    },
    {
        "id": "s1",
        "created": 1758884753,
        "model": "glm-4.5",
        "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "", "content": "你好"}}],
    },
    {
        "id": "s1",
        "created": 1758884753,
        "model": "glm-4.5",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "，世界！"}}],
    },
    {
        "id": "s1",
        "created": 1758884753,
        "model": "glm-4.5",
        "choices": [{"index": 0, "finish_reason": "stop", "delta": {"role": "assistant", "content": ""}}],
        "usage": {
            "prompt_tokens": 8,
            "completion_tokens": 6,
            "total_tokens": 14,
            "completion_tokens_details": {"reasoning_tokens": 3},
        },
    },
    "[DONE]",
)


def check_thinking(chunks: list[ChatCompletionChunk]) -> None:
    assert text_of(chunks) == "你好，世界！"
    assert "".join(c.choices[0].delta.reasoning_content or "" for c in chunks) == "想一想"
    assert chunks[0].choices[0].delta.content is None  # role-only delta: no content, no crash
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, None, "stop"]
    assert [c.usage is not None for c in chunks] == [False, False, False, False, True]
    last = chunks[-1].usage
    assert last is not None
    assert (last.prompt_tokens, last.completion_tokens, last.total_tokens) == (8, 6, 14)
    assert last.completion_tokens_details == {"reasoning_tokens": 3}
    assert all(c.id == "s1" and c.model == "glm-4.5" for c in chunks)


class TestStream:
    def test_whole(self) -> None:
        check_thinking(feed(make(), REQ, THINKING_STREAM, []))

    def test_byte_by_byte(self) -> None:
        check_thinking(feed(make(), REQ, THINKING_STREAM, list(range(1, len(THINKING_STREAM)))))

    def test_split_inside_chinese_character_and_data_field(self) -> None:
        ni = THINKING_STREAM.index("你好".encode())
        da = THINKING_STREAM.index(b"data:", 10)
        assert len("你".encode()) == 3
        check_thinking(feed(make(), REQ, THINKING_STREAM, sorted([da + 2, ni + 1, ni + 2])))

    @pytest.mark.parametrize("cut", range(1, len(THINKING_STREAM), 3))
    def test_two_piece_splits(self, cut: int) -> None:
        check_thinking(feed(make(), REQ, THINKING_STREAM, [cut]))

    def test_none_content_deltas_do_not_break(self) -> None:
        raw = sse(
            {"id": "s", "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
            {"id": "s", "choices": [{"index": 0, "delta": {"content": "ok"}}]},
            {
                "id": "s",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
            "[DONE]",
        )
        chunks = feed(make(), REQ, raw, [])
        assert [c.choices[0].delta.content for c in chunks] == [None, "ok", None]
        assert text_of(chunks) == "ok"

    def test_tool_call_arrives_whole_then_usage_chunk(self) -> None:
        call = {
            "id": "call_1",
            "index": 0,
            "type": "function",
            "function": {"name": "weather", "arguments": '{"location": "北京"}'},
        }
        raw = sse(
            {
                "id": "t",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "delta": {"role": "assistant", "tool_calls": [call]},
                    }
                ],
            },
            {
                "id": "t",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {"role": "assistant", "content": ""}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
            "[DONE]",
        )
        chunks = feed(make(), REQ, raw, [len(raw) // 2])
        tcs = chunks[0].choices[0].delta.tool_calls
        assert tcs is not None and len(tcs) == 1
        assert (tcs[0].index, tcs[0].id, tcs[0].name) == (0, "call_1", "weather")
        assert orjson.loads(tcs[0].arguments or "") == {"location": "北京"}
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
        assert chunks[0].usage is None

    def test_sensitive_becomes_content_filter(self) -> None:
        raw = sse(
            {"id": "f", "choices": [{"index": 0, "delta": {"content": "部分"}}]},
            {
                "id": "f",
                "choices": [{"index": 0, "finish_reason": "sensitive", "delta": {"content": ""}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
            "[DONE]",
        )
        chunks = feed(make(), REQ, raw, [])
        assert chunks[-1].choices[0].finish_reason == "content_filter"

    def test_network_error_finish_raises(self) -> None:
        raw = sse(
            {"id": "n1", "choices": [{"index": 0, "delta": {"content": "半"}}]},
            {
                "id": "n1",
                "choices": [{"index": 0, "finish_reason": "network_error", "delta": {"content": ""}}],
            },
            "[DONE]",
        )
        with pytest.raises(UpstreamServerError) as ei:
            feed(make(), REQ, raw, [])
        assert ei.value.code == "network_error"
        assert ei.value.request_id == "n1"

    def test_mid_stream_error_frame_raises_with_code_and_request_id(self) -> None:
        raw = sse(
            {"id": "m7", "choices": [{"index": 0, "delta": {"content": "前文"}}]},
            {"error": {"code": "1301", "message": "系统检测到输入或生成内容可能包含不安全或敏感内容"}},
        )
        dec, parser = SSEDecoder(), make().stream_parser(REQ)
        events = dec.feed(raw)
        assert parser.event(events[0])[0].content == "前文"
        with pytest.raises(ContentFilterError) as ei:
            parser.event(events[1])
        assert ei.value.code == "1301"
        assert ei.value.request_id == "m7"
        assert "敏感" in ei.value.message

    def test_mid_stream_error_uses_callers_request_id_before_any_chunk(self) -> None:
        req = ChatRequest("glm-4.5", [], stream=True, extra={"request_id": "mine-1"})
        with pytest.raises(RateLimitError) as ei:
            feed(make(), req, sse({"error": {"code": "1302", "message": "并发数过高"}}), [])
        assert (ei.value.code, ei.value.request_id) == ("1302", "mine-1")

    def test_truncated_stream_raises_at_close(self) -> None:
        raw = sse({"id": "c", "choices": [{"index": 0, "delta": {"content": "截"}}]})
        with pytest.raises(StreamError):
            feed(make(), REQ, raw, [])

    def test_truncated_inside_a_frame_raises(self) -> None:
        raw = THINKING_STREAM[: THINKING_STREAM.index(b"[DONE]") - 40]
        with pytest.raises(StreamError):
            feed(make(), REQ, raw, [])


# -- errors -------------------------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "code", "cls"),
        [
            (401, "1002", AuthenticationError),
            (401, "1000", AuthenticationError),
            (403, "1110", PermissionDeniedError),
            (429, "1113", PermissionDeniedError),
            (400, "1211", NotFoundError),
            (400, "1214", BadRequestError),
            (400, "1210", BadRequestError),
            (400, "1220", PermissionDeniedError),
            (404, "1221", NotFoundError),
            (500, "1234", UpstreamServerError),
            (400, "1261", ContextLengthError),
            (400, "1301", ContentFilterError),
            (429, "1302", RateLimitError),
            (429, "1303", RateLimitError),
            (429, "1304", RateLimitError),
            (429, "1305", RateLimitError),
            (429, "1308", RateLimitError),
            (429, "1313", RateLimitError),
            (500, "500", UpstreamServerError),
            (400, "1230", BadRequestError),  # not mapped: falls back to the status
        ],
    )
    def test_codes(self, status: int, code: str, cls: type[ProviderError]) -> None:
        body = orjson.dumps({"error": {"code": code, "message": "错误"}, "request_id": "rq-1"})
        err = make().parse_error(status, {}, body)
        assert type(err) is cls
        assert (err.code, err.status_code, err.request_id, err.provider) == (code, status, "rq-1", "zhipu")

    def test_arrears_is_not_retried(self) -> None:
        err = make().parse_error(429, {}, orjson.dumps({"error": {"code": "1113", "message": "余额不足"}}))
        assert isinstance(err, PermissionDeniedError)
        assert not err.retryable

    def test_rate_limit_retry_after(self) -> None:
        err = make().parse_error(429, {"retry-after": "3"}, b'{"error":{"code":"1302","message":"busy"}}')
        assert isinstance(err, RateLimitError)
        assert err.retry_after == 3.0
        assert err.retryable

    def test_non_json_body(self) -> None:
        err = make().parse_error(502, {}, b"<html>Bad Gateway</html>")
        assert isinstance(err, UpstreamServerError)
        assert "Bad Gateway" in err.message

    def test_code_table_covers_the_documented_ranges(self) -> None:
        assert all(ZHIPU_CODES[str(c)] is AuthenticationError for c in range(1000, 1005))
        assert all(ZHIPU_CODES[str(c)] is PermissionDeniedError for c in range(1110, 1122))
        assert all(ZHIPU_CODES[str(c)] is RateLimitError for c in range(1308, 1314))


# -- embeddings ---------------------------------------------------------------------------------------


class TestEmbeddings:
    def test_request(self) -> None:
        http = make().embed_request(EmbeddingRequest("embedding-3", ["你好", "世界"], {"dimensions": 256}))
        assert http.url == f"{BASE}/embeddings"
        assert http.headers["Authorization"] == f"Bearer {KEY}"
        assert orjson.loads(http.body or b"") == {
            "model": "embedding-3",
            "input": ["你好", "世界"],
            "dimensions": 256,
        }

    def test_parse(self) -> None:
        body = {
            "model": "embedding-3",
            "object": "list",
            "data": [
                {"index": 0, "object": "embedding", "embedding": [0.1, -0.2]},
                {"index": 1, "object": "embedding", "embedding": [0.3, 0.4]},
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4},
        }
        resp = make().parse_embed(orjson.dumps(body), {}, EmbeddingRequest("embedding-3", ["a", "b"]))
        assert [e.embedding for e in resp.data] == [[0.1, -0.2], [0.3, 0.4]]
        assert [e.index for e in resp.data] == [0, 1]
        assert resp.usage is not None and resp.usage.total_tokens == 4

    def test_error_body_on_200(self) -> None:
        with pytest.raises(AuthenticationError):
            make().parse_embed(b'{"error":{"code":"1001","message":"no"}}', {}, EmbeddingRequest("embedding-3", "a"))
