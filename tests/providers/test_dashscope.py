"""DashScope native adapter: sans-I/O tests from recorded-shape bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelway.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
)
from modelway.providers.base import ProviderSettings
from modelway.providers.dashscope import DashScopeAdapter
from modelway.sse import SSEDecoder
from modelway.types import ChatCompletionChunk, ChatRequest, EmbeddingRequest

KEY = "sk-0123456789abcdef"
BASE = "https://dashscope.aliyuncs.com/api/v1"
GEN = f"{BASE}/services/aigc/text-generation/generation"
RID = "2da392f4-55a2-9c3e-8f5e-1b2c3d4e5f60"


def make(**options: Any) -> DashScopeAdapter:
    return DashScopeAdapter(ProviderSettings(api_key=KEY, options=options))


def body_of(req: ChatRequest, adapter: DashScopeAdapter | None = None) -> dict[str, Any]:
    http = (adapter or make()).chat_request(req)
    assert http.body is not None
    out: dict[str, Any] = orjson.loads(http.body)
    return out


def frame(n: int, obj: Any, event: str = "result", status: int = 200) -> str:
    data = obj if isinstance(obj, str) else orjson.dumps(obj).decode()
    return f"id:{n}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n"


def msg_frame(
    content: str | None = None, finish: str = "null", usage: tuple[int, int] = (20, 1), **message: Any
) -> dict[str, Any]:
    m: dict[str, Any] = {"role": "assistant", **message}
    if content is not None:
        m["content"] = content
    return {
        "output": {"choices": [{"message": m, "finish_reason": finish}]},
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)},
        "request_id": RID,
    }


def stream(*objs: Any) -> bytes:
    return "".join(frame(i + 1, o) for i, o in enumerate(objs)).encode()


def feed(req: ChatRequest, raw: bytes, cuts: list[int] | None = None) -> list[ChatCompletionChunk]:
    dec, parser = SSEDecoder(), make().stream_parser(req)
    out: list[ChatCompletionChunk] = []
    bounds = [0, *(cuts or []), len(raw)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        for ev in dec.feed(raw[a:b]):
            out.extend(parser.event(ev))
    for ev in dec.flush():
        out.extend(parser.event(ev))
    out.extend(parser.close())
    return out


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


REQ = ChatRequest("qwen-plus", [{"role": "user", "content": "你好"}], stream=True)
CUMULATIVE = ChatRequest("qwen-plus", [], stream=True, extra={"incremental_output": False})


# -- request building --------------------------------------------------------------------------------


class TestRequest:
    def test_url_headers_and_exact_body(self) -> None:
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        req = ChatRequest(
            "qwen-plus",
            [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "杭州天气"}],
            params={
                "temperature": 0,
                "top_p": 0,
                "max_tokens": 64,
                "stop": ["\n\n"],
                "seed": 42,
                "presence_penalty": 0.5,
                "frequency_penalty": 0.3,
                "tools": tools,
                "tool_choice": "auto",
                "parallel_tool_calls": True,
                "response_format": {"type": "json_object"},
                "n": 2,
                "logprobs": True,
                "top_logprobs": 3,
                "user": "u1",
                "logit_bias": {"1": 2},
            },
            extra={"top_k": 20, "enable_search": True, "repetition_penalty": 1.1},
        )
        http = make().chat_request(req)
        assert (http.method, http.url, http.provider) == ("POST", GEN, "dashscope")
        assert http.headers["Authorization"] == f"Bearer {KEY}"
        assert http.headers["Content-Type"] == "application/json"
        assert http.headers["Accept"] == "application/json"
        assert "X-DashScope-SSE" not in http.headers
        assert orjson.loads(http.body or b"") == {
            "model": "qwen-plus",
            "input": {
                "messages": [
                    {"role": "system", "content": "你是助手"},
                    {"role": "user", "content": "杭州天气"},
                ]
            },
            "parameters": {
                "result_format": "message",
                "temperature": 0,  # kept: 0 is a value
                "top_p": 0,  # passed as given: DashScope judges its own ranges
                "max_tokens": 64,
                "stop": ["\n\n"],
                "seed": 42,
                "presence_penalty": 0.5,
                "tools": tools,
                "tool_choice": "auto",
                "parallel_tool_calls": True,
                "response_format": {"type": "json_object"},
                "n": 2,
                "logprobs": True,
                "top_logprobs": 3,
                "top_k": 20,
                "enable_search": True,
                "repetition_penalty": 1.1,
                # frequency_penalty, user, logit_bias: no DashScope equivalent, not sent
            },
        }

    def test_only_given_parameters(self) -> None:
        assert body_of(ChatRequest("qwen-turbo", []))["parameters"] == {"result_format": "message"}

    def test_stream_uses_headers_and_incremental_output(self) -> None:
        req = ChatRequest(
            "qwen-plus",
            [],
            stream=True,
            extra={"stream": True},
            params={"stream_options": {"include_usage": True}},
        )
        http = make().chat_request(req)
        assert http.headers["X-DashScope-SSE"] == "enable"
        assert http.headers["Accept"] == "text/event-stream"
        body = orjson.loads(http.body or b"")
        assert "stream" not in body
        assert body["parameters"] == {"result_format": "message", "incremental_output": True}

    def test_caller_may_ask_cumulative_and_text_format(self) -> None:
        req = ChatRequest("qwen-plus", [], stream=True, extra={"incremental_output": False, "result_format": "text"})
        assert body_of(req)["parameters"] == {"result_format": "text", "incremental_output": False}

    def test_max_completion_tokens(self) -> None:
        req = ChatRequest("qwen-plus", [], params={"max_completion_tokens": 9, "max_tokens": 5})
        assert body_of(req)["parameters"]["max_tokens"] == 9

    def test_developer_role_becomes_system(self) -> None:
        req = ChatRequest("qwen-plus", [{"role": "developer", "content": "rules"}])
        assert body_of(req)["input"]["messages"] == [{"role": "system", "content": "rules"}]

    def test_workspace_header(self) -> None:
        http = make(workspace="ws-123").chat_request(ChatRequest("qwen-plus", []))
        assert http.headers["X-DashScope-WorkSpace"] == "ws-123"
        assert "X-DashScope-WorkSpace" not in make().chat_request(ChatRequest("qwen-plus", [])).headers

    def test_base_url_override(self) -> None:
        a = DashScopeAdapter(ProviderSettings(api_key=KEY, base_url="https://dashscope-intl.aliyuncs.com/api/v1/"))
        url = a.chat_request(ChatRequest("qwen-plus", [])).url
        assert url == "https://dashscope-intl.aliyuncs.com/api/v1/services/aigc/text-generation/generation"

    def test_class_attributes(self) -> None:
        assert DashScopeAdapter.name == "dashscope"
        assert DashScopeAdapter.default_base_url == BASE
        assert DashScopeAdapter.key_env == ("DASHSCOPE_API_KEY",)
        assert DashScopeAdapter.base_url_env == ("DASHSCOPE_HTTP_BASE_URL",)
        assert DashScopeAdapter.supports_embeddings
        assert "dashscope/qwen-max" in {m.id for m in make().models()}


# -- non-stream ---------------------------------------------------------------------------------------


class TestParseChat:
    def test_message_format_with_usage_details(self) -> None:
        body = {
            "output": {
                "choices": [
                    {
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": "你好！",
                            "reasoning_content": "用户在打招呼",
                        },
                    }
                ]
            },
            "usage": {
                "input_tokens": 20,
                "output_tokens": 4,
                "total_tokens": 24,
                "prompt_tokens_details": {"cached_tokens": 16},
                "output_tokens_details": {"reasoning_tokens": 2},
            },
            "request_id": RID,
        }
        resp = make().parse_chat(orjson.dumps(body), {"x-request-id": "other"}, ChatRequest("qwen-plus", []))
        assert resp.id == RID
        assert resp.model == "qwen-plus"
        assert resp.content == "你好！"
        assert resp.choices[0].message.reasoning_content == "用户在打招呼"
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None
        assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (
            20,
            4,
            24,
        )
        assert resp.usage.prompt_tokens_details == {"cached_tokens": 16}
        assert resp.usage.completion_tokens_details == {"reasoning_tokens": 2}

    def test_tool_calls(self) -> None:
        body = {
            "output": {
                "choices": [
                    {
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "index": 0,
                                    "function": {"name": "get_weather", "arguments": '{"city": "杭州"}'},
                                }
                            ],
                        },
                    }
                ]
            },
            "usage": {"input_tokens": 30, "output_tokens": 10, "total_tokens": 40},
            "request_id": RID,
        }
        resp = make().parse_chat(orjson.dumps(body), {}, ChatRequest("qwen-plus", []))
        tcs = resp.choices[0].message.tool_calls
        assert tcs is not None
        assert (tcs[0].id, tcs[0].function.name) == ("call_1", "get_weather")
        assert orjson.loads(tcs[0].function.arguments) == {"city": "杭州"}
        assert resp.choices[0].finish_reason == "tool_calls"
        assert resp.choices[0].message.reasoning_content is None

    def test_text_format(self) -> None:
        body = {
            "output": {"text": "老格式", "finish_reason": "length"},
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        }
        resp = make().parse_chat(orjson.dumps(body), {"x-request-id": "hdr-1"}, ChatRequest("qwen-turbo", []))
        assert resp.content == "老格式"
        assert resp.choices[0].finish_reason == "length"
        assert resp.id == "hdr-1"
        assert resp.usage is not None and resp.usage.total_tokens == 8

    def test_error_body_with_200_raises(self) -> None:
        body = {"code": "InvalidParameter", "message": "Model not exist.", "request_id": RID}
        with pytest.raises(NotFoundError) as ei:
            make().parse_chat(orjson.dumps(body), {}, ChatRequest("qwen-nope", []))
        assert (ei.value.code, ei.value.request_id) == ("InvalidParameter", RID)

    def test_malformed_json(self) -> None:
        with pytest.raises(StreamError):
            make().parse_chat(b'{"output": ', {}, ChatRequest("qwen-plus", []))


# -- streaming ----------------------------------------------------------------------------------------

TEXT_STREAM = stream(
    msg_frame("你", usage=(20, 1)),
    msg_frame("好，", usage=(20, 2)),
    msg_frame(None, usage=(20, 2)),  # a frame without content
    msg_frame("世界！", usage=(20, 4)),
    msg_frame("", finish="stop", usage=(20, 4)),
)


def check_text(chunks: list[ChatCompletionChunk]) -> None:
    assert text_of(chunks) == "你好，世界！"
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, None, "stop"]
    assert chunks[2].choices[0].delta.content is None
    assert [c.usage is not None for c in chunks] == [False, False, False, False, True]
    u = chunks[-1].usage
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (20, 4, 24)
    assert all(c.id == RID and c.model == "qwen-plus" for c in chunks)


class TestStream:
    def test_whole(self) -> None:
        check_text(feed(REQ, TEXT_STREAM))

    def test_byte_by_byte(self) -> None:
        check_text(feed(REQ, TEXT_STREAM, list(range(1, len(TEXT_STREAM)))))

    def test_split_inside_chinese_character_and_data_field(self) -> None:
        ni = TEXT_STREAM.index("你".encode())
        da = TEXT_STREAM.index(b"data:")
        check_text(feed(REQ, TEXT_STREAM, sorted([da + 3, ni + 1, ni + 2])))

    @pytest.mark.parametrize("cut", range(1, len(TEXT_STREAM), 4))
    def test_two_piece_splits(self, cut: int) -> None:
        check_text(feed(REQ, TEXT_STREAM, [cut]))

    def test_crlf_line_ends(self) -> None:
        check_text(feed(REQ, TEXT_STREAM.replace(b"\n", b"\r\n"), [17]))

    def test_reasoning_then_content(self) -> None:
        raw = stream(
            msg_frame("", reasoning_content="先想"),
            msg_frame("", reasoning_content="一下"),
            msg_frame("答案", reasoning_content=""),
            msg_frame("", finish="stop", usage=(9, 6)),
        )
        chunks = feed(REQ, raw)
        assert "".join(c.choices[0].delta.reasoning_content or "" for c in chunks) == "先想一下"
        assert chunks[2].choices[0].delta.reasoning_content is None
        assert text_of(chunks) == "答案"

    def test_tool_call_pieces(self) -> None:
        def piece(tc: dict[str, Any], finish: str = "null") -> dict[str, Any]:
            return msg_frame("", finish=finish, tool_calls=[tc])

        raw = stream(
            piece(
                {
                    "index": 0,
                    "id": "call_9f",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ),
            piece({"index": 0, "id": "", "type": "function", "function": {"arguments": '{"city": "'}}),
            piece({"index": 0, "id": "", "type": "function", "function": {"arguments": '杭州"}'}}),
            msg_frame("", finish="tool_calls", usage=(30, 12)),
        )
        chunks = feed(REQ, raw, [raw.index("杭".encode()) + 1])
        deltas = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
        assert [(d.index, d.id, d.name) for d in deltas] == [
            (0, "call_9f", "get_weather"),
            (0, None, None),
            (0, None, None),
        ]
        assert deltas[0].to_dict()["type"] == "function"
        assert orjson.loads("".join(d.arguments or "" for d in deltas)) == {"city": "杭州"}
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 42

    def test_text_result_format_stream(self) -> None:
        def f(text: str, fr: str) -> dict[str, Any]:
            return {
                "output": {"text": text, "finish_reason": fr},
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
                "request_id": RID,
            }

        chunks = feed(REQ, stream(f("早", "null"), f("上好", "stop")))
        assert text_of(chunks) == "早上好"
        assert chunks[-1].choices[0].finish_reason == "stop"

    def test_event_error_frame_raises_typed(self) -> None:
        raw = (
            stream(msg_frame("部分")).decode()
            + frame(
                2,
                {
                    "code": "DataInspectionFailed",
                    "message": "Output data may contain inappropriate content.",
                    "request_id": "err-rid",
                },
                event="error",
                status=400,
            )
        ).encode()
        with pytest.raises(ContentFilterError) as ei:
            feed(REQ, raw)
        assert (ei.value.code, ei.value.request_id) == ("DataInspectionFailed", "err-rid")

    def test_event_error_without_request_id_uses_streams(self) -> None:
        raw = (
            stream(msg_frame("部分")).decode()
            + frame(
                2,
                {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded"},
                event="error",
                status=429,
            )
        ).encode()
        with pytest.raises(RateLimitError) as ei:
            feed(REQ, raw)
        assert (ei.value.code, ei.value.request_id) == ("Throttling.RateQuota", RID)

    def test_data_frame_with_code_and_no_output_is_an_error(self) -> None:
        raw = frame(1, {"code": "InternalError.Algo", "message": "inference failed", "request_id": "x1"}).encode()
        with pytest.raises(UpstreamServerError) as ei:
            feed(REQ, raw)
        assert (ei.value.code, ei.value.request_id) == ("InternalError.Algo", "x1")

    def test_truncated_stream_raises_at_close(self) -> None:
        raw = stream(msg_frame("你"), msg_frame("好"))
        with pytest.raises(StreamError) as ei:
            feed(REQ, raw)
        assert ei.value.request_id == RID

    def test_cut_mid_frame_raises(self) -> None:
        with pytest.raises(StreamError):
            feed(REQ, TEXT_STREAM[:-30])

    def test_incremental_frames_are_never_deduplicated(self) -> None:
        # the cumulative guard is only for callers who asked for cumulative output
        chunks = feed(REQ, stream(msg_frame("哈"), msg_frame("哈"), msg_frame("", finish="stop")))
        assert text_of(chunks) == "哈哈"

    def test_n_choices_usage_summed(self) -> None:
        def f(i: int, text: str, fr: str, out: int) -> dict[str, Any]:
            return {
                "output": {
                    "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": fr}]
                },
                "usage": {"input_tokens": 10, "output_tokens": out, "total_tokens": 10 + out},
                "request_id": RID,
            }

        req = ChatRequest("qwen-plus", [], stream=True, params={"n": 2})
        chunks = feed(req, stream(f(0, "A", "null", 1), f(1, "B", "null", 1), f(0, "", "stop", 2), f(1, "", "stop", 3)))
        assert [c.usage is not None for c in chunks] == [False, False, False, True]
        u = chunks[-1].usage
        assert u is not None and (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (10, 5, 15)

    def test_model_ignoring_n_still_ends_with_usage(self) -> None:
        req = ChatRequest("qwen-plus", [], stream=True, params={"n": 2})
        chunks = feed(req, stream(msg_frame("A"), msg_frame("", finish="stop", usage=(4, 1))))
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5


class TestCumulativeGuard:
    def test_cumulative_frames_become_deltas(self) -> None:
        raw = stream(
            msg_frame("你"),
            msg_frame("你好"),
            msg_frame("你好，世界！"),
            msg_frame("你好，世界！", finish="stop", usage=(20, 4)),
        )
        chunks = feed(CUMULATIVE, raw, [raw.index("世".encode()) + 2])
        assert [c.choices[0].delta.content for c in chunks] == ["你", "好", "，世界！", ""]
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 24

    def test_long_text_tail_check(self) -> None:
        a = "甲" * 100
        chunks = feed(CUMULATIVE, stream(msg_frame(a), msg_frame(a + "乙"), msg_frame(a + "乙", finish="stop")))
        assert text_of(chunks) == a + "乙"

    def test_rewritten_text_raises(self) -> None:
        with pytest.raises(StreamError, match="cumulative"):
            feed(CUMULATIVE, stream(msg_frame("你好"), msg_frame("您好呀")))

    def test_shrinking_text_raises(self) -> None:
        with pytest.raises(StreamError, match="cumulative"):
            feed(CUMULATIVE, stream(msg_frame("你好"), msg_frame("你")))

    def test_cumulative_tool_call_arguments(self) -> None:
        def tc(args: str, fr: str = "null") -> dict[str, Any]:
            return msg_frame(
                "",
                finish=fr,
                tool_calls=[
                    {
                        "index": 0,
                        "id": "call_c",
                        "type": "function",
                        "function": {"name": "f", "arguments": args},
                    }
                ],
            )

        chunks = feed(CUMULATIVE, stream(tc('{"a"'), tc('{"a": 1'), tc('{"a": 1}', "tool_calls")))
        deltas = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
        assert [(d.id, d.name, d.arguments) for d in deltas] == [
            ("call_c", "f", '{"a"'),
            (None, None, ": 1"),
            (None, None, "}"),
        ]


# -- errors -------------------------------------------------------------------------------------------


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "code", "message", "cls"),
        [
            (400, "InvalidParameter", "Role must be in [user, assistant]", BadRequestError),
            (400, "BadRequest.EmptyInput", "Required input parameter missing", BadRequestError),
            (413, "BadRequest.TooLarge", "Payload Too Large", BadRequestError),
            (
                400,
                "DataInspectionFailed",
                "Input data may contain inappropriate content.",
                ContentFilterError,
            ),
            (
                400,
                "Arrearage",
                "Access denied, please make sure your account is in good standing.",
                PermissionDeniedError,
            ),
            (401, "InvalidApiKey", "Invalid API-key provided.", AuthenticationError),
            (403, "AccessDenied", "Access denied.", PermissionDeniedError),
            (403, "AccessDenied.Unpurchased", "Access to model denied.", PermissionDeniedError),
            (408, "RequestTimeOut", "Request timed out", ProviderTimeoutError),
            (429, "Throttling", "Requests throttling triggered.", RateLimitError),
            (429, "Throttling.AllocationQuota", "Allocated quota exceeded", RateLimitError),
            (500, "InternalError", "Internal server error", UpstreamServerError),
            (
                500,
                "InternalError.Algo",
                "An internal error has occured during execution",
                UpstreamServerError,
            ),
            (400, "InvalidParameter", "Range of input length should be [1, 30720]", ContextLengthError),
            (400, "InvalidParameter", "Input tokens exceed max length", ContextLengthError),
            (404, "SomethingNew", "x", NotFoundError),  # unknown code: the status decides
            (503, "SomethingNew", "x", UpstreamServerError),
        ],
    )
    def test_codes(self, status: int, code: str, message: str, cls: type[ProviderError]) -> None:
        body = orjson.dumps({"code": code, "message": message, "request_id": RID})
        err = make().parse_error(status, {}, body)
        assert type(err) is cls
        assert (err.code, err.status_code, err.request_id, err.message, err.provider) == (
            code,
            status,
            RID,
            message,
            "dashscope",
        )

    def test_retry_after_and_header_request_id(self) -> None:
        err = make().parse_error(
            429,
            {"retry-after": "7", "x-request-id": "hdr-9"},
            b'{"code":"Throttling.RateQuota","message":"slow down"}',
        )
        assert isinstance(err, RateLimitError)
        assert err.retry_after == 7.0
        assert err.request_id == "hdr-9"
        assert err.retryable

    def test_sse_error_body(self) -> None:
        body = frame(
            1,
            {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": RID},
            event="error",
            status=401,
        ).encode()
        err = make().parse_error(401, {}, body)
        assert isinstance(err, AuthenticationError)
        assert (err.code, err.request_id) == ("InvalidApiKey", RID)

    def test_non_json_body(self) -> None:
        err = make().parse_error(502, {}, b"upstream connect error")
        assert isinstance(err, UpstreamServerError)
        assert err.message == "upstream connect error"

    def test_arrears_not_retried(self) -> None:
        assert not make().parse_error(400, {}, b'{"code":"Arrearage","message":"pay"}').retryable


# -- embeddings ---------------------------------------------------------------------------------------


class TestEmbeddings:
    def test_request(self) -> None:
        req = EmbeddingRequest(
            "text-embedding-v3",
            "单条文本",
            {"dimensions": 512, "encoding_format": "base64", "text_type": "query"},
        )
        http = make().embed_request(req)
        assert http.url == f"{BASE}/services/embeddings/text-embedding/text-embedding"
        assert http.headers["Authorization"] == f"Bearer {KEY}"
        assert orjson.loads(http.body or b"") == {
            "model": "text-embedding-v3",
            "input": {"texts": ["单条文本"]},
            "parameters": {"dimension": 512, "text_type": "query"},
        }

    def test_parse_orders_by_text_index(self) -> None:
        body = {
            "output": {
                "embeddings": [
                    {"text_index": 1, "embedding": [0.3, 0.4]},
                    {"text_index": 0, "embedding": [0.1, 0.2]},
                ]
            },
            "usage": {"total_tokens": 7},
            "request_id": RID,
        }
        resp = make().parse_embed(orjson.dumps(body), {}, EmbeddingRequest("text-embedding-v3", ["a", "b"]))
        assert [(e.index, e.embedding) for e in resp.data] == [(0, [0.1, 0.2]), (1, [0.3, 0.4])]
        assert resp.usage is not None
        assert (resp.usage.prompt_tokens, resp.usage.total_tokens) == (7, 7)
        assert resp.model == "text-embedding-v3"

    def test_error_body_on_200(self) -> None:
        body = b'{"code":"InvalidParameter","message":"bad","request_id":"e1"}'
        with pytest.raises(BadRequestError) as ei:
            make().parse_embed(body, {}, EmbeddingRequest("text-embedding-v3", "a"))
        assert ei.value.request_id == "e1"
