"""Rendering internal answers as Anthropic messages and event streams (no network): the block structure of any
chunk sequence, tool call keys, usage conversion, native frames, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelway.errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    InvalidRequestError,
    RateLimitError,
    ServiceUnavailableError,
    UnknownModelError,
    UpstreamServerError,
)
from modelway.server.dialects.anthropic import MessagesDialect
from modelway.server.dialects.anthropic_request import is_our_signature
from modelway.server.dialects.anthropic_stream import MessagesRenderer, anthropic_usage, message_body, stop_reason
from modelway.server.errors import Forbidden, NotFound
from modelway.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
)

#: the deltas each block type may carry
ALLOWED = {
    "thinking": {"thinking_delta", "signature_delta"},
    "text": {"text_delta"},
    "tool_use": {"input_json_delta"},
}


def chunk(delta: Delta | None = None, finish: str | None = None, usage: Usage | None = None) -> ChatCompletionChunk:
    choices = [ChunkChoice(0, delta or Delta(), finish)] if delta is not None or finish is not None else []
    return ChatCompletionChunk("c1", 0, "up", choices, usage)


def render(chunks: list[ChatCompletionChunk], renderer: MessagesRenderer | None = None) -> bytes:
    r = renderer or MessagesRenderer("m", 7)
    out = r.start() + b"".join(r.chunk(c) for c in chunks)
    return out + asyncio.run(r.end())


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            event, data = block.split("\n", 1)
            obj = orjson.loads(data.removeprefix("data: "))
            assert event == f"event: {obj['type']}"
            out.append((obj["type"], obj))
    return out


def blocks(raw: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Check Anthropic's sequence rules and rebuild the content blocks; returns them and the message_delta."""
    evs = frames(raw)
    assert [e for e, _ in evs[:2]] == ["message_start", "ping"]
    assert [e for e, _ in evs[-2:]] == ["message_delta", "message_stop"]
    content: list[dict[str, Any]] = []
    open_: dict[str, Any] | None = None
    signed = False
    for e, d in evs[2:-2]:
        if e == "content_block_start":
            assert open_ is None, "a block opened before the previous one closed"
            assert d["index"] == len(content)
            open_ = dict(d["content_block"])
            if open_["type"] == "tool_use":
                open_["json"] = ""
            content.append(open_)
            signed = False
        elif e == "content_block_delta":
            assert open_ is not None and d["index"] == len(content) - 1
            kind = d["delta"]["type"]
            assert kind in ALLOWED[open_["type"]], f"{kind} in a {open_['type']} block"
            if kind == "thinking_delta":
                open_["thinking"] += d["delta"]["thinking"]
            elif kind == "signature_delta":
                open_["signature"] = d["delta"]["signature"]
                signed = True
            elif kind == "text_delta":
                open_["text"] += d["delta"]["text"]
            else:
                open_["json"] += d["delta"]["partial_json"]
        else:
            assert e == "content_block_stop" and open_ is not None and d["index"] == len(content) - 1
            assert signed or open_["type"] != "thinking", "a thinking block closed without its signature"
            open_ = None
    assert open_ is None
    return content, evs[-2][1]


# -- the block structure ------------------------------------------------------------------------------------------

PIECE = st.text(min_size=1, max_size=5)
STEP = st.one_of(
    st.tuples(st.just("reasoning"), PIECE),
    st.tuples(st.just("text"), PIECE),
    st.tuples(st.just("tool"), st.integers(0, 2)),
    st.tuples(st.just("args"), PIECE),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=25))
def test_any_interleaving_makes_well_formed_blocks(steps: list[tuple[str, Any]]) -> None:
    chunks = []
    calls = 0
    for kind, value in steps:
        if kind == "reasoning":
            chunks.append(chunk(Delta(reasoning_content=value)))
        elif kind == "text":
            chunks.append(chunk(Delta(content=value)))
        elif kind == "tool":
            tc = ToolCallDelta(calls, f"call_{calls}", f"fn{value}", "")
            calls += 1
            chunks.append(chunk(Delta(tool_calls=[tc])))
        elif calls:
            chunks.append(chunk(Delta(tool_calls=[ToolCallDelta(calls - 1, arguments=value)])))
    content, end = blocks(render(chunks))
    # everything that went in came out, in order, each piece in a block of its kind
    assert "".join(b.get("text", "") for b in content) == "".join(v for k, v in steps if k == "text")
    assert "".join(b.get("thinking", "") for b in content) == "".join(v for k, v in steps if k == "reasoning")
    args: list[str] = []
    for k, v in steps:
        if k == "tool":
            args.append("")
        elif k == "args" and args:
            args[-1] += v
    assert [b["json"] for b in content if b["type"] == "tool_use"] == args
    assert [b["id"] for b in content if b["type"] == "tool_use"] == [f"call_{i}" for i in range(calls)]
    assert all(is_our_signature(b["signature"]) for b in content if b["type"] == "thinking")
    assert end["delta"]["stop_reason"] == ("tool_use" if calls else "end_turn")


def test_text_during_a_tool_call_follows_its_block() -> None:
    content, _ = blocks(
        render(
            [
                chunk(Delta(tool_calls=[ToolCallDelta(0, "call_a", "f", '{"x"')])),
                chunk(Delta(content="meanwhile", reasoning_content="hm")),
                chunk(Delta(tool_calls=[ToolCallDelta(0, arguments=": 1}")])),
                chunk(Delta(tool_calls=[ToolCallDelta(1, "call_b", "g", "{}")])),
                chunk(Delta(content="after")),
                chunk(None, "tool_calls"),
            ]
        )
    )
    assert [(b["type"], b.get("json") or b.get("thinking") or b.get("text")) for b in content] == [
        ("tool_use", '{"x": 1}'),
        ("thinking", "hm"),
        ("text", "meanwhile"),
        ("tool_use", "{}"),
        ("text", "after"),
    ]


def test_thinking_after_text_opens_a_new_thinking_block() -> None:
    content, _ = blocks(
        render(
            [
                chunk(Delta(content="", role="assistant")),
                chunk(Delta(reasoning_content="a")),
                chunk(Delta(content="b")),
                chunk(Delta(reasoning_content="c")),
                chunk(None, "stop"),
            ]
        )
    )
    assert [(b["type"], b.get("thinking") or b.get("text")) for b in content] == [
        ("thinking", "a"),
        ("text", "b"),
        ("thinking", "c"),
    ]


def test_tool_calls_keyed_by_id_when_indices_collide() -> None:
    content, _ = blocks(
        render(
            [
                chunk(Delta(tool_calls=[ToolCallDelta(0, "call_a", "f", '{"x"')])),
                chunk(Delta(tool_calls=[ToolCallDelta(0, arguments=": 1}")])),
                chunk(Delta(tool_calls=[ToolCallDelta(0, "call_b", "g", "{}")])),  # index 0 again, another id
                chunk(Delta(tool_calls=[ToolCallDelta(0, "call_b", arguments="")])),  # the id repeated: same call
                chunk(None, "tool_calls"),
            ]
        )
    )
    assert [(b["id"], b["name"], b["json"]) for b in content] == [("call_a", "f", '{"x": 1}'), ("call_b", "g", "{}")]


def test_tool_calls_without_ids_keyed_by_index() -> None:
    content, end = blocks(
        render(
            [
                chunk(Delta(tool_calls=[ToolCallDelta(0, name="f", arguments="{")])),
                chunk(Delta(tool_calls=[ToolCallDelta(0, arguments="}")])),
                chunk(Delta(tool_calls=[ToolCallDelta(1, name="g", arguments="{}")])),
                chunk(None, "stop"),  # a provider that says stop after tool calls
            ]
        )
    )
    assert [(b["name"], b["json"]) for b in content] == [("f", "{}"), ("g", "{}")]
    assert all(b["id"].startswith("toolu_") for b in content) and content[0]["id"] != content[1]["id"]
    assert end["delta"]["stop_reason"] == "tool_use"


def test_usage_on_the_last_chunk_only_reaches_message_delta() -> None:
    usage = Usage(100, 20, 120, {"cached_tokens": 30, "cache_creation_tokens": 10})
    raw = render([chunk(Delta(content="hi")), chunk(None, "length"), chunk(None, None, usage)])
    evs = frames(raw)
    start = evs[0][1]["message"]["usage"]
    assert start["input_tokens"] == 7 and start["output_tokens"] == 0  # the estimate so far
    _, end = blocks(raw)
    assert end["delta"]["stop_reason"] == "max_tokens"
    assert end["usage"] == {
        "input_tokens": 60,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 30,
        "output_tokens": 20,
    }


def test_no_usage_at_all_is_estimated() -> None:
    _, end = blocks(render([chunk(Delta(content="abcdefgh")), chunk(None, "stop")]))
    assert end["usage"]["input_tokens"] == 7 and end["usage"]["output_tokens"] == 2


def test_an_empty_stream_is_still_a_whole_message() -> None:
    content, end = blocks(render([]))
    assert content == [] and end["delta"]["stop_reason"] == "end_turn"


def test_native_frames_go_out_verbatim() -> None:
    start = b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-x"}}\n\n'
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    r = MessagesRenderer("claude", 3)
    c1 = ChatCompletionChunk("msg_1", 0, "x", [ChunkChoice(0, Delta(content="", role="assistant"))], raw=start)
    out = r.start() + r.chunk(c1) + r.chunk(ChatCompletionChunk("msg_1", 0, "x", [], raw=ping))
    assert out == start.replace(b'"claude-x"', b'"claude"') + ping
    assert asyncio.run(r.end()) == b""


def test_stream_error_frame() -> None:
    raw = MessagesRenderer("m", 1).error(UpstreamServerError("boom", provider="zhipu", status_code=500), "req-1")
    [(event, data)] = frames(raw)
    assert event == "error"
    assert data["error"] == {"type": "api_error", "message": "[zhipu 500] boom"} and data["request_id"] == "req-1"


# -- whole messages -----------------------------------------------------------------------------------------------


def completion(message: ChatMessage, finish: str | None = "stop", usage: Usage | None = None) -> ChatCompletion:
    return ChatCompletion("x", 0, "m", [Choice(0, message, finish)], usage)


def test_message_body() -> None:
    calls = [ToolCall("call_1", FunctionCall("f", '{"a": [1]}')), ToolCall("", FunctionCall("g", "not json"))]
    msg = ChatMessage("text", tool_calls=calls, reasoning_content="hmm")
    body = message_body(completion(msg, "tool_calls", Usage(50, 9, 59, {"cached_tokens": 40})), "alias", 3)
    assert body["model"] == "alias" and body["type"] == "message" and body["id"].startswith("msg_")
    content = body["content"]
    assert content[0]["type"] == "thinking" and content[0]["thinking"] == "hmm"
    assert is_our_signature(content[0]["signature"])
    assert content[1] == {"type": "text", "text": "text"}
    assert content[2] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": [1]}}
    assert content[3]["input"] == {"arguments": "not json"} and content[3]["id"].startswith("toolu_")
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert body["usage"] == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 40,
        "output_tokens": 9,
    }
    orjson.dumps(body)  # everything in the answer can be written out


def test_tool_arguments_nested_too_deep_stay_text() -> None:
    deep = "[" * 300 + "]" * 300
    body = message_body(completion(ChatMessage(None, tool_calls=[ToolCall("c", FunctionCall("f", deep))])), "m", 0)
    assert body["content"][0]["input"] == {"arguments": deep}
    orjson.dumps(body)


def test_message_body_of_a_native_answer_is_the_upstream_s() -> None:
    resp = completion(ChatMessage("x"))
    resp.raw = {"id": "msg_up", "model": "claude-haiku-4-5", "content": [{"type": "text", "text": "x"}], "extra": 1}
    assert message_body(resp, "claude", 0) == {**resp.raw, "model": "claude"}


@pytest.mark.parametrize(
    ("finish", "calls", "reason"),
    [
        ("stop", False, "end_turn"),
        (None, False, "end_turn"),
        ("length", False, "max_tokens"),
        ("length", True, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("stop", True, "tool_use"),
        ("content_filter", False, "refusal"),
        ("something_else", False, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, calls: bool, reason: str) -> None:
    assert stop_reason(finish, calls) == reason


def test_usage_never_goes_negative() -> None:
    assert anthropic_usage(Usage(5, 1, 6, {"cached_tokens": 9}))["input_tokens"] == 0


# -- errors before the answer -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "etype"),
    [
        (InvalidRequestError("bad", param="x"), 400, "invalid_request_error"),
        (UnknownModelError("no such model"), 404, "not_found_error"),
        (Forbidden("no"), 403, "permission_error"),
        (NotFound("no route"), 404, "not_found_error"),
        (RateLimitError("slow down", provider="zhipu", status_code=429, retry_after=3), 429, "rate_limit_error"),
        (ServiceUnavailableError("store down"), 503, "overloaded_error"),
        (UpstreamServerError("boom", provider="zhipu", status_code=500), 502, "api_error"),
        (AllDeploymentsFailedError("all", [RateLimitError("x", retry_after=2)]), 429, "rate_limit_error"),
    ],
)
def test_error_shapes(exc: Any, status: int, etype: str) -> None:
    got_status, body, headers = MessagesDialect().error(exc, "req-9")
    data = orjson.loads(body)
    assert got_status == status
    assert data["type"] == "error" and data["error"]["type"] == etype and data["request_id"] == "req-9"
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    if status == 429:
        assert (b"retry-after", str(exc.retry_after if isinstance(exc, RateLimitError) else 2).encode()) in headers


# -- an Anthropic upstream's own error type survives ------------------------------------------------------------


def _overloaded() -> UpstreamServerError:
    return UpstreamServerError("Overloaded", provider="anthropic", status_code=529, code="overloaded_error")


def test_an_anthropic_upstream_s_error_type_is_kept_in_a_stream() -> None:
    # Claude Code retries a stream that failed with "overloaded_error" (Anthropic sends it mid-stream): the type
    # must not become a generic api_error on the way through
    [(event, data)] = frames(MessagesRenderer("m", 1).error(_overloaded(), "req-1"))
    assert event == "error" and data["error"]["type"] == "overloaded_error"
    timeout = UpstreamServerError("slow", provider="anthropic", status_code=504, code="timeout_error")
    assert frames(MessagesRenderer("m", 1).error(timeout, "r"))[0][1]["error"]["type"] == "timeout_error"


@pytest.mark.parametrize(
    ("exc", "status", "etype"),
    [
        (_overloaded(), 502, "overloaded_error"),
        (AllDeploymentsFailedError("all", [RateLimitError("x"), _overloaded()]), 502, "overloaded_error"),
        # a type that is no Anthropic type (another provider's code) is not taken
        (UpstreamServerError("boom", provider="zhipu", status_code=500, code="1234"), 502, "api_error"),
        # the gateway's own key refused upstream: never told as the caller's authentication_error
        (
            AuthenticationError("no", provider="anthropic", status_code=401, code="authentication_error"),
            502,
            "api_error",
        ),
    ],
)
def test_an_anthropic_upstream_s_error_type_is_kept_before_the_answer(exc: Any, status: int, etype: str) -> None:
    got_status, body, _ = MessagesDialect().error(exc, "req-9")
    assert (got_status, orjson.loads(body)["error"]["type"]) == (status, etype)
