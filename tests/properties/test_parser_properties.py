"""Properties of every adapter's parsers on arbitrary input: a provider (or a proxy in front of it) can send anything,
and what the parsers make of it must be a typed error or something the gateway can send on.

* ``parse_chat`` and the stream parser may raise only :class:`ModelwayError`, or for now the exception types that
  ``calls.py`` turns into a :class:`StreamError` (``calls._SHAPE_ERRORS``); what they return serialises.
  ``test_*_raise_only_modelway_errors`` hold them to ``ModelwayError`` alone: every adapter fails that today
  (xfail, with a minimal example each), for the day ``calls.py`` stops converting.
* ``parse_error`` never raises, and the error it returns can be rendered (``str(err)``).

Each xfail names its minimal failing example; they are explicit ``@example`` cases, so a fix turns them into passes
deterministically (strict xfail: remove the mark then).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonish import FAMILIES, HEADERS, IDS, JSON, NOISY_FAMILIES, SETTINGS, TEXT, mutated

from modelway.calls import _SHAPE_ERRORS
from modelway.errors import ModelwayError
from modelway.providers import PROVIDERS, ProviderSettings
from modelway.sse import SSEEvent
from modelway.types import ChatRequest

ADAPTERS = {name: cls(ProviderSettings(api_key="k", base_url="http://127.0.0.1:1")) for name, cls in PROVIDERS.items()}
#: what a parser may raise, for now
ALLOWED = (ModelwayError, *_SHAPE_ERRORS)
#: adapters with code of their own get many examples; the OpenAI-compatible ones that differ from OpenAI only by data
#: in their spec (error codes, finish reasons) run the same code, and get a few
OWN_CODE = {"openai", "zhipu", "dashscope", "anthropic"}


def family(name: str) -> str:
    return name if name in ("dashscope", "anthropic") else "openai"


#: adapters whose parsers are the cluster's own (FastChat and DB-GPT workers): they already raise only typed errors,
#: so the strict xfails below (about the OpenAI, DashScope and Anthropic parsers) do not apply to them
TYPED_ONLY = frozenset({"fastchat-worker", "dbgpt-worker"})
UNTYPED = sorted(set(PROVIDERS) - TYPED_ONLY)


def examples(name: str, many: int) -> settings:
    return settings(SETTINGS, max_examples=many if name in OWN_CODE else max(10, many // 6))


def payloads(realistic: st.SearchStrategy[Any], noisy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies: realistic; with garbage here and there (most of them); with one thing broken; JSON of any shape; not
    JSON at all."""
    return st.one_of(
        realistic.map(orjson.dumps),
        noisy.map(orjson.dumps),
        noisy.map(lambda v: orjson.dumps(v)),  # (a distinct strategy: identical branches would be merged)
        mutated(realistic).map(orjson.dumps),
        JSON.map(orjson.dumps),
        st.binary(max_size=40),
    )


REQUESTS = st.builds(
    lambda n, extra, stream: ChatRequest(
        "m", [{"role": "user", "content": "hi"}], stream, {"n": n} if n else {}, extra
    ),
    st.sampled_from([None, 1, 2]),
    st.fixed_dictionaries({}, optional={"incremental_output": st.booleans(), "request_id": IDS}),
    st.booleans(),
)


def _serialises(d: dict[str, Any]) -> None:
    """The gateway sends what a parser returns as JSON. ``usage`` is left out here: upstream token counts are not
    bounded yet (see ``test_upstream_usage_serialises``)."""
    d.pop("usage", None)
    orjson.dumps(d)


def _parse_chat(adapter: Any, allowed: tuple[type[BaseException], ...]) -> Any:
    body, error, _ = FAMILIES[family(adapter.name)]
    noisy_body, noisy_error, _ = NOISY_FAMILIES[family(adapter.name)]

    @examples(adapter.name, 120)
    @given(raw=payloads(body | error, noisy_body | noisy_error), headers=HEADERS, req=REQUESTS)
    def check(raw: bytes, headers: dict[str, str], req: ChatRequest) -> None:
        try:
            resp = adapter.parse_chat(raw, headers, req)
        except allowed:
            return
        _serialises(resp.to_dict())

    return check


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_parse_chat_raises_only_typed_errors(name: str) -> None:
    _parse_chat(ADAPTERS[name], ALLOWED)()


#: the smallest answer each family's parse_chat fails on with an untyped exception (a list item that is no object)
SHAPE_BODIES = {
    "openai": b'{"choices": [1]}',  # AttributeError: 'int' object has no attribute 'get'
    "dashscope": b'{"output": {"choices": [1]}}',  # AttributeError, as above
    "anthropic": b'{"content": [1]}',  # AttributeError, as above
}
_UNTYPED = "raises AttributeError/TypeError/ValueError on answers of an unexpected shape (calls.py converts them)"


@pytest.mark.xfail(strict=True, reason=f"every adapter's parse_chat {_UNTYPED}")
@pytest.mark.parametrize("name", UNTYPED)
def test_parse_chat_raises_only_modelway_errors(name: str) -> None:
    adapter = ADAPTERS[name]
    req = ChatRequest("m", [{"role": "user", "content": "hi"}])
    raw = SHAPE_BODIES[family(name)]
    example(raw=raw, headers={}, req=req)(_parse_chat(adapter, (ModelwayError,)))()


def _text(v: Any) -> str:
    return orjson.dumps(v).decode()


def _sse_data(realistic: st.SearchStrategy[Any], noisy: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return st.one_of(
        realistic.map(_text),
        realistic.map(lambda v: _text(v)),
        noisy.map(_text),
        noisy.map(lambda v: _text(v)),
        mutated(realistic).map(_text),
        JSON.map(_text),
        TEXT,
        st.just("[DONE]"),
    )


def _events(realistic: st.SearchStrategy[Any], noisy: st.SearchStrategy[Any]) -> st.SearchStrategy[list[SSEEvent]]:
    event = st.builds(
        SSEEvent,
        data=_sse_data(realistic, noisy),
        event=st.none() | st.sampled_from(["error", "result", "message_start", "content_block_delta", "ping"]),
        comment=st.none() | st.sampled_from(["HTTP_STATUS/429", "HTTP_STATUS/", "HTTP_STATUS/x1", "keep-alive"]),
    )
    return st.lists(event, min_size=1, max_size=6)


def _stream(adapter: Any, allowed: tuple[type[BaseException], ...]) -> Any:
    _, error, event = FAMILIES[family(adapter.name)]
    _, noisy_error, noisy_event = NOISY_FAMILIES[family(adapter.name)]

    @examples(adapter.name, 120)
    @given(events=_events(event | error, noisy_event | noisy_error), req=REQUESTS)
    def check(events: list[SSEEvent], req: ChatRequest) -> None:
        parser = adapter.stream_parser(req)
        try:
            for ev in events:
                for chunk in parser.event(ev):
                    _serialises(chunk.to_dict())
            for chunk in parser.close():
                _serialises(chunk.to_dict())
        except allowed:
            return

    return check


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_stream_parser_raises_only_typed_errors(name: str) -> None:
    _stream(ADAPTERS[name], ALLOWED)()


#: the smallest event each family's stream parser fails on with an untyped exception
SHAPE_EVENTS = {
    "openai": SSEEvent('{"choices": [1]}'),  # AttributeError: 'int' object has no attribute 'get'
    "dashscope": SSEEvent('{"output": {"choices": [1]}}'),  # AttributeError, as above
    "anthropic": SSEEvent('{"type": "content_block_start", "index": "x"}'),  # ValueError: int("x")
}


@pytest.mark.xfail(strict=True, reason=f"every adapter's stream parser {_UNTYPED}")
@pytest.mark.parametrize("name", UNTYPED)
def test_stream_parser_raises_only_modelway_errors(name: str) -> None:
    adapter = ADAPTERS[name]
    req = ChatRequest("m", [{"role": "user", "content": "hi"}], stream=True)
    example(events=[SHAPE_EVENTS[family(name)]], req=req)(_stream(adapter, (ModelwayError,)))()


STATUSES = st.sampled_from([400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 529]) | st.integers(100, 599)


def _error_bodies(name: str) -> st.SearchStrategy[bytes]:
    body, error, _ = FAMILIES[family(name)]
    noisy_body, noisy_error, _ = NOISY_FAMILIES[family(name)]
    out = payloads(error | body, st.one_of(noisy_error, noisy_error.map(lambda e: e), noisy_body))  # 2 in 3 errors
    if name == "dashscope":  # a stream refused before it started: the error rides in an SSE body
        out |= mutated(error).map(lambda e: b"id:1\nevent:error\n:HTTP_STATUS/429\ndata:" + orjson.dumps(e) + b"\n\n")
    return out


_RENDERS = (
    "the OpenAI-compatible error_from_payload trusts error.type: a list is looked up in a dict (TypeError: unhashable "
    "type), a number becomes the error's code and str(err) fails (' '.join of a non-string); "
    'minimal bodies: {"error": {"message": "x", "type": ["a"]}} and {"error": {"message": "x", "type": 5}}'
)


def _error_case(name: str) -> Any:
    return name


@pytest.mark.parametrize("name", [_error_case(n) for n in sorted(ADAPTERS)])
def test_parse_error_always_returns_a_typed_error(name: str) -> None:
    adapter = ADAPTERS[name]

    @example(status=400, headers={}, raw=b'{"error": {"message": "x", "type": ["a"]}}')
    @example(status=400, headers={}, raw=b'{"error": {"message": "x", "type": 5}}')
    @examples(name, 120)
    @given(status=STATUSES, headers=HEADERS, raw=_error_bodies(name))
    def check(status: int, headers: dict[str, str], raw: bytes) -> None:
        err = adapter.parse_error(status, headers, raw)
        assert isinstance(err, ModelwayError)
        str(err)  # the gateway logs and renders it

    check()


# -- found by the properties above, pinned as plain examples --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("openai", b'{"choices": [], "usage": {"prompt_tokens": 1e300, "completion_tokens": 1}}'),
        ("dashscope", b'{"output": {"text": "x"}, "usage": {"input_tokens": 1e20, "output_tokens": 0}}'),
        (
            "anthropic",
            b'{"content": [], "usage": {"input_tokens": 18446744073709551615, "output_tokens": 1, '
            b'"cache_read_input_tokens": 5}}',
        ),
    ],
)
def test_upstream_token_counts_out_of_range_are_a_malformed_answer(name: str, raw: bytes) -> None:
    """Token counts were int()-ed unbounded: 1e300 made a usage orjson could not write (a 500). Now such an answer
    is malformed (a shape error, which calls.py turns into a StreamError: 502, failover)."""
    with pytest.raises(ValueError, match="out of range"):
        ADAPTERS[name].parse_chat(raw, {}, ChatRequest("m", [{"role": "user", "content": "hi"}]))


@pytest.mark.parametrize("value", ["inf", "1e999"])
def test_retry_after_is_finite_and_renders(value: str) -> None:
    import math

    from modelway.server.errors import render_error

    err = ADAPTERS["openai"].parse_error(429, {"retry-after": value}, b'{"error": {"message": "slow down"}}')
    assert err.retry_after is None or math.isfinite(err.retry_after)
    render_error(err, "req-1")


@pytest.mark.parametrize("name", sorted(TYPED_ONLY))
def test_the_cluster_adapters_raise_only_modelway_errors_on_odd_shapes(name: str) -> None:
    adapter = ADAPTERS[name]
    req = ChatRequest("m", [{"role": "user", "content": "hi"}])
    example(raw=SHAPE_BODIES["openai"], headers={}, req=req)(_parse_chat(adapter, (ModelwayError,)))()
    sreq = ChatRequest("m", [{"role": "user", "content": "hi"}], stream=True)
    example(events=[SHAPE_EVENTS["openai"]], req=sreq)(_stream(adapter, (ModelwayError,)))()
