"""Anthropic Messages adapter: sans-I/O tests from recorded-shape bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelway.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
)
from modelway.providers.anthropic import DEFAULT_MAX_TOKENS, NATIVE_API, AnthropicAdapter, AnthropicNativeBody
from modelway.providers.base import ProviderSettings
from modelway.sse import SSEDecoder
from modelway.types import ChatCompletionChunk, ChatRequest, NativeBody

KEY = "sk-ant-api03-0123456789"
MSG_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def make(**options: Any) -> AnthropicAdapter:
    return AnthropicAdapter(ProviderSettings(api_key=KEY, options=options))


def body_of(req: ChatRequest, adapter: AnthropicAdapter | None = None) -> dict[str, Any]:
    http = (adapter or make()).chat_request(req)
    assert http.body is not None
    out: dict[str, Any] = orjson.loads(http.body)
    return out


def chat(
    *messages: dict[str, Any], stream: bool = False, extra: dict[str, Any] | None = None, **params: Any
) -> ChatRequest:
    msgs = list(messages) or [{"role": "user", "content": "hi"}]
    return ChatRequest("claude-sonnet-4-5", msgs, stream=stream, params=params, extra=extra or {})


def ev(kind: str, **data: Any) -> str:
    return f"event: {kind}\ndata: {orjson.dumps({'type': kind, **data}).decode()}\n\n"


# -- request ---------------------------------------------------------------------------------------


def test_request_url_headers_and_defaults() -> None:
    http = make().chat_request(chat())
    assert http.method == "POST"
    assert http.url == "https://api.anthropic.com/v1/messages"
    assert http.headers["x-api-key"] == KEY
    assert http.headers["anthropic-version"] == "2023-06-01"
    assert http.headers["Content-Type"] == "application/json"
    assert "Authorization" not in http.headers
    body = body_of(chat())
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    assert DEFAULT_MAX_TOKENS == 4096


def test_version_and_beta_options_and_base_url() -> None:
    a = AnthropicAdapter(
        ProviderSettings(api_key=KEY, base_url="http://x/", options={"version": "2026-01-01", "beta": ["a", "b"]})
    )
    http = a.chat_request(chat())
    assert http.url == "http://x/v1/messages"
    assert http.headers["anthropic-version"] == "2026-01-01"
    assert http.headers["anthropic-beta"] == "a,b"


def test_system_and_developer_extracted() -> None:
    body = body_of(
        chat(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Speak French."}]},
            {"role": "user", "content": "hello"},
        )
    )
    assert body["system"] == "Be brief.\n\nSpeak French."
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_params_translation() -> None:
    body = body_of(
        chat(
            temperature=0,
            top_p=0.9,
            max_tokens=100,
            stop="END",
            user="u-1",
            seed=7,
            frequency_penalty=0.5,
            presence_penalty=0.5,
            response_format={"type": "json_object"},
            logprobs=True,
            n=1,
            extra={"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}},
        )
    )
    assert body["temperature"] == 0
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 100
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["top_k"] == 5
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    for dropped in ("seed", "frequency_penalty", "presence_penalty", "response_format", "logprobs", "n", "stop"):
        assert dropped not in body
    assert "stream" not in body


def test_max_completion_tokens_and_list_stop_and_stream() -> None:
    body = body_of(chat(max_completion_tokens=55, max_tokens=10, stop=["a", "b"], stream=True))
    assert body["max_tokens"] == 55
    assert body["stop_sequences"] == ["a", "b"]
    assert body["stream"] is True
    assert body_of(chat(), make(max_tokens=1000))["max_tokens"] == 1000


def test_n_greater_than_one_rejected() -> None:
    with pytest.raises(InvalidRequestError) as ei:
        make().chat_request(chat(n=2))
    assert ei.value.param == "n"


def test_tool_round_trip() -> None:
    body = body_of(
        chat(
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "rainy"},
            {"role": "user", "content": "Thanks"},
            tools=TOOLS,
            tool_choice="auto",
        )
    )
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": TOOLS[0]["function"]["parameters"],  # type: ignore[index]
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_assistant_tool_call_without_text() -> None:
    body = body_of(
        chat(
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}],
            },
        )
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    assert body_of(chat(tools=TOOLS, tool_choice=choice))["tool_choice"] == expected


def test_parallel_tool_calls_false() -> None:
    body = body_of(chat(tools=TOOLS, parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_image_part_translated() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    body = body_of(chat({"role": "user", "content": content}))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


# -- non-stream response ---------------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> bytes:
    u = {"input_tokens": 11, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    u.update(usage)
    return orjson.dumps(
        {
            "id": MSG_ID,
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": u,
        }
    )


def test_parse_text() -> None:
    resp = make().parse_chat(message([{"type": "text", "text": "Hello"}, {"type": "text", "text": "!"}]), {}, chat())
    assert resp.id == MSG_ID
    assert resp.content == "Hello!"
    assert resp.model == "claude-sonnet-4-5"
    assert resp.provider == "anthropic"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.tool_calls is None
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (11, 4, 15)
    assert resp.usage.prompt_tokens_details is None


def test_parse_tool_use_and_thinking() -> None:
    body = message(
        [
            {"type": "thinking", "thinking": "Need the weather.", "signature": "abc"},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "tool_use",
    )
    resp = make().parse_chat(body, {}, chat())
    msg = resp.choices[0].message
    assert msg.content is None
    assert msg.reasoning_content == "Need the weather."
    assert msg.tool_calls is not None and len(msg.tool_calls) == 1
    tc = msg.tool_calls[0]
    assert (tc.id, tc.type, tc.function.name) == ("toolu_01A", "function", "get_weather")
    assert orjson.loads(tc.function.arguments) == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(reason: str, finish: str) -> None:
    resp = make().parse_chat(message([{"type": "text", "text": "x"}], reason), {}, chat())
    assert resp.choices[0].finish_reason == finish


def test_cache_usage() -> None:
    body = message([{"type": "text", "text": "x"}], cache_read_input_tokens=100, cache_creation_input_tokens=20)
    u = make().parse_chat(body, {}, chat()).usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (131, 4, 135)
    assert u.prompt_tokens_details == {"cached_tokens": 100, "cache_creation_tokens": 20}


def test_error_body_with_status_200() -> None:
    body = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(UpstreamServerError):
        make().parse_chat(body, {}, chat())


def test_malformed_body() -> None:
    with pytest.raises(StreamError):
        make().parse_chat(b'{"id": "msg', {}, chat())


# -- stream ----------------------------------------------------------------------------------------

TEXT_STREAM = (
    ev(
        "message_start",
        message={
            "id": MSG_ID,
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 0},
        },
    )
    + ev("ping")
    + ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""})
    + ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Hmm, "})
    + ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "greet."})
    + ev("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "EqQB"})
    + ev("content_block_stop", index=0)
    + ev("content_block_start", index=1, content_block={"type": "text", "text": ""})
    + ev("content_block_delta", index=1, delta={"type": "text_delta", "text": "Hello"})
    + ev("ping")
    + ev("content_block_delta", index=1, delta={"type": "text_delta", "text": ", 世界!"})
    + ev("content_block_stop", index=1)
    + ev("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 15})
    + ev("message_stop")
).encode()

TOOL_STREAM = (
    ev(
        "message_start",
        message={"id": MSG_ID, "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": 40}},
    )
    + ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
    + ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Checking."})
    + ev("content_block_stop", index=0)
    + ev(
        "content_block_start",
        index=1,
        content_block={"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}},
    )
    + ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""})
    + ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"city": "Pa'})
    + ev("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": 'ris"}'})
    + ev("content_block_stop", index=1)
    + ev(
        "content_block_start", index=2, content_block={"type": "tool_use", "id": "toolu_B", "name": "now", "input": {}}
    )
    + ev("content_block_stop", index=2)
    + ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 30})
    + ev("message_stop")
).encode()


def run(raw: bytes, size: int = 7, req: ChatRequest | None = None) -> list[ChatCompletionChunk]:
    parser = make().stream_parser(req or chat(stream=True))
    dec = SSEDecoder()
    out: list[ChatCompletionChunk] = []
    for i in range(0, len(raw), size):
        for e in dec.feed(raw[i : i + size]):
            out += parser.event(e)
    for e in dec.flush():
        out += parser.event(e)
    out += parser.close()
    return out


@pytest.mark.parametrize("size", [1, 3, 7, 64, 100_000])
def test_stream_text_and_reasoning(size: int) -> None:
    chunks = run(TEXT_STREAM, size)
    assert all(c.id == MSG_ID and c.provider == "anthropic" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.content or "" for c in chunks) == "Hello, 世界!"
    assert "".join(c.choices[0].delta.reasoning_content or "" for c in chunks) == "Hmm, greet."
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (25, 15, 40)
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)


def test_stream_tool_calls_assembled() -> None:
    chunks = run(TOOL_STREAM, 5)
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for t in c.choices[0].delta.tool_calls or ():
            slot = calls.setdefault(t.index, {"id": "", "name": "", "arguments": ""})
            if t.id:
                assert not slot["id"]
                slot["id"] = t.id
            slot["name"] += t.name or ""
            slot["arguments"] += t.arguments or ""
    assert calls == {
        0: {"id": "toolu_A", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_B", "name": "now", "arguments": "{}"},
    }
    assert "".join(c.content or "" for c in chunks) == "Checking."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 70


def test_stream_error_event() -> None:
    raw = TEXT_STREAM.split(b"event: content_block_start")[0] + (
        ev("error", error={"type": "overloaded_error", "message": "Overloaded"}).encode()
    )
    with pytest.raises(UpstreamServerError) as ei:
        run(raw)
    assert ei.value.code == "overloaded_error"
    assert ei.value.request_id == MSG_ID


@pytest.mark.parametrize(
    ("etype", "cls"),
    [
        ("rate_limit_error", RateLimitError),
        ("api_error", UpstreamServerError),
        ("invalid_request_error", BadRequestError),
    ],
)
def test_stream_error_types(etype: str, cls: type[ProviderError]) -> None:
    raw = f'event: error\ndata: {{"type":"error","error":{{"type":"{etype}","message":"m"}}}}\n\n'.encode()
    with pytest.raises(cls):
        run(raw)


def test_stream_truncated_raises_at_close() -> None:
    raw = TEXT_STREAM.split(b"event: message_delta")[0]
    parser = make().stream_parser(chat(stream=True))
    dec = SSEDecoder()
    chunks = [c for e in dec.feed(raw) for c in parser.event(e)]
    assert "".join(c.content or "" for c in chunks) == "Hello, 世界!"
    with pytest.raises(StreamError):
        parser.close()


def test_stream_without_message_delta_still_finishes() -> None:
    raw = TEXT_STREAM.split(b"event: message_delta")[0] + ev("message_stop").encode()
    chunks = run(raw)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 25


def test_stream_malformed_event() -> None:
    with pytest.raises(StreamError):
        run(b"event: content_block_delta\ndata: {broken\n\n")


# -- HTTP errors -----------------------------------------------------------------------------------


def err(etype: str, message: str = "boom") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_011CX"})


@pytest.mark.parametrize(
    ("status", "etype", "cls"),
    [
        (400, "invalid_request_error", BadRequestError),
        (401, "authentication_error", AuthenticationError),
        (403, "permission_error", PermissionDeniedError),
        (404, "not_found_error", NotFoundError),
        (413, "request_too_large", BadRequestError),
        (429, "rate_limit_error", RateLimitError),
        (500, "api_error", UpstreamServerError),
        (529, "overloaded_error", UpstreamServerError),
    ],
)
def test_http_errors(status: int, etype: str, cls: type[ProviderError]) -> None:
    e = make().parse_error(status, {}, err(etype))
    assert type(e) is cls
    assert (e.status_code, e.code, e.request_id, e.message, e.provider) == (
        status,
        etype,
        "req_011CX",
        "boom",
        "anthropic",
    )


def test_context_length_error() -> None:
    e = make().parse_error(400, {}, err("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"))
    assert isinstance(e, ContextLengthError)


def test_retry_after_and_header_request_id() -> None:
    body = orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    e = make().parse_error(429, {"retry-after": "7", "request-id": "req_hdr"}, body)
    assert isinstance(e, RateLimitError)
    assert e.retry_after == 7.0
    assert e.request_id == "req_hdr"


def test_non_json_error_falls_back_to_status() -> None:
    e = make().parse_error(503, {}, b"<html>Service Unavailable</html>")
    assert isinstance(e, UpstreamServerError)
    e = make().parse_error(401, {}, b"")
    assert isinstance(e, AuthenticationError)
    assert e.message == "HTTP 401"


def test_no_embeddings() -> None:
    assert AnthropicAdapter.supports_embeddings is False
    assert [m.id for m in make().models()] == ["anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"]


# -- reasoning_effort --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking", "sent_max"),
    [
        ("low", None, {"type": "enabled", "budget_tokens": 2048}, DEFAULT_MAX_TOKENS + 2048),
        ("medium", None, {"type": "enabled", "budget_tokens": 8192}, DEFAULT_MAX_TOKENS + 8192),
        ("high", None, {"type": "enabled", "budget_tokens": 24576}, DEFAULT_MAX_TOKENS + 24576),
        ("high", 10000, {"type": "enabled", "budget_tokens": 9999}, 10000),  # below the caller's max_tokens
        ("low", 1024, None, 1024),  # no room for Anthropic's minimum budget
        ("none", None, None, DEFAULT_MAX_TOKENS),
    ],
)
def test_reasoning_effort_becomes_thinking(
    effort: str, max_tokens: int | None, thinking: dict[str, Any] | None, sent_max: int
) -> None:
    params: dict[str, Any] = {"reasoning_effort": effort}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    for req in (
        chat(**params),
        chat(extra={"reasoning_effort": effort}, **{k: v for k, v in params.items() if k != "reasoning_effort"}),
    ):
        body = body_of(req)
        assert "reasoning_effort" not in body
        assert body.get("thinking") == thinking and body["max_tokens"] == sent_max


def test_callers_own_thinking_wins_over_reasoning_effort() -> None:
    body = body_of(chat(extra={"thinking": {"type": "enabled", "budget_tokens": 1500}}, reasoning_effort="high"))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1500}


# -- native requests ---------------------------------------------------------------------------------

NATIVE_BODY: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 50,
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
    "top_k": 2,
    "stream": False,
    "tools": [{"type": "web_search_20250305", "name": "web_search"}],
}


def native(
    stream: bool = False, body: dict[str, Any] | None = None, beta: str | None = None, **params: Any
) -> ChatRequest:
    req = chat({"role": "user", "content": "translated"}, stream=stream, **params)
    req.native = AnthropicNativeBody(NATIVE_API, body or NATIVE_BODY, beta=beta)
    return req


def test_native_body_is_sent_as_it_came() -> None:
    assert body_of(native(temperature=0.1, reasoning_effort="high")) == {
        **{k: v for k, v in NATIVE_BODY.items() if k != "stream"},
        "model": "claude-sonnet-4-5",
    }
    assert body_of(native(stream=True))["stream"] is True


def test_another_api_s_native_body_is_translated() -> None:
    req = chat()
    req.native = NativeBody("openai.responses", {"input": "x"})
    assert body_of(req)["messages"] == [{"role": "user", "content": "hi"}]


def test_native_body_gets_the_group_s_system_prompt_only_when_it_has_no_system() -> None:
    bare = {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    req = native(body=bare)
    req.messages = [{"role": "system", "content": "group prompt"}, *req.messages]
    assert body_of(req)["system"] == "group prompt"
    inline = {**bare, "messages": [{"role": "system", "content": "mine"}, {"role": "user", "content": "x"}]}
    req = native(body=inline)
    req.messages = [{"role": "system", "content": "mine"}, {"role": "user", "content": "x"}]
    assert "system" not in body_of(req)


def test_native_beta_header_joins_the_configured_one() -> None:
    http = make(beta="a-1").chat_request(native(beta="b-2, a-1"))
    assert http.headers["anthropic-beta"] == "a-1,b-2"
    assert make().chat_request(native()).headers.get("anthropic-beta") is None


def test_native_answer_keeps_the_upstream_body() -> None:
    raw = message([{"type": "text", "text": "hey"}], input_tokens=3, output_tokens=1)
    resp = make().parse_chat(raw, {}, native())
    assert resp.raw == orjson.loads(raw) and resp.content == "hey"
    assert make().parse_chat(raw, {}, chat()).raw is None


@pytest.mark.parametrize("size", [1, 9, 100_000])
def test_native_stream_chunks_carry_their_frames(size: int) -> None:
    plain = run(TEXT_STREAM, size)
    chunks = run(TEXT_STREAM, size, native(stream=True))
    assert b"".join(c.raw or b"" for c in chunks) == TEXT_STREAM  # every frame, in order, none lost
    assert all(c.raw is not None for c in chunks)
    assert [c.raw.split(b"\n", 1)[0] for c in chunks if not c.choices] == [  # type: ignore[union-attr]
        b"event: ping",
        b"event: content_block_start",  # an empty thinking block
        b"event: content_block_delta",  # its signature
        b"event: content_block_stop",
        b"event: content_block_start",  # an empty text block
        b"event: ping",
        b"event: content_block_stop",
        b"event: message_stop",
    ]
    # the translation is the same as without raw frames: usage and finish on the last chunk with choices
    translated = [c for c in chunks if c.choices]
    assert [c.to_dict() for c in translated] == [c.to_dict() for c in plain]
    assert all(c.usage is None for c in chunks if not c.choices)


# -- tool call ids another provider chose -------------------------------------------------------------------------

#: Kimi's ids (``functions.<name>:<n>``) are refused by Anthropic, whose ids must match ``^[a-zA-Z0-9_-]+$``
KIMI_ID = "functions.get_weather:0"
ANTHROPIC_ID = r"^[a-zA-Z0-9_-]+$"


def test_tool_ids_anthropic_would_refuse_are_made_safe_consistently() -> None:
    import re

    history: list[Any] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": KIMI_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "functions.get_weather.0", "type": "function", "function": {"name": "get_weather"}},
                {"id": "call_ok-1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": KIMI_ID, "content": "sunny"},
        {"role": "tool", "tool_call_id": "functions.get_weather.0", "content": "rainy"},
        {"role": "tool", "tool_call_id": "call_ok-1", "content": "windy"},
    ]
    sent = body_of(chat(*history))["messages"]
    uses = [b["id"] for b in sent[1]["content"]]
    results = [b["tool_use_id"] for b in sent[2]["content"]]
    assert uses == results and all(re.match(ANTHROPIC_ID, i) for i in uses)
    assert len(set(uses)) == 3 and uses[2] == "call_ok-1"  # distinct ids stay distinct; valid ones are kept


def test_native_body_tool_ids_anthropic_would_refuse_are_made_safe() -> None:
    import re

    body: Any = {
        "model": "claude",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": KIMI_ID, "name": "get_weather", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": KIMI_ID, "content": "sunny"},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
    }
    sent = body_of(native(body=body))["messages"]
    use, result = sent[1]["content"][0]["id"], sent[2]["content"][0]["tool_use_id"]
    assert use == result and re.match(ANTHROPIC_ID, use)
    assert body["messages"][1]["content"][0]["id"] == KIMI_ID  # the caller's body itself is not changed
    assert sent[2]["content"][1] == {"type": "text", "text": "and tomorrow?"}
    ok = {**body, "messages": [body["messages"][0]]}
    assert body_of(native(body=ok))["messages"] is not None
