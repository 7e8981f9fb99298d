from __future__ import annotations

import orjson
import pytest

from modelway.errors import InvalidRequestError
from modelway.validate import chat_request, embedding_request, normalize_messages


def test_string_becomes_one_user_message() -> None:
    assert normalize_messages("你好") == [{"role": "user", "content": "你好"}]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ("", "messages"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        (["hello"], "messages[0]"),
        (42, "messages"),
    ],
)
def test_bad_messages_name_the_field(messages: object, param: str) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        normalize_messages(messages)
    assert ei.value.param == param


def test_params_split_between_openai_and_extra_and_none_dropped() -> None:
    req = chat_request("m", "hi", params={"temperature": 0, "top_k": 3, "max_tokens": None, "enable_search": True})
    assert req.params == {"temperature": 0}
    assert req.extra == {"top_k": 3, "enable_search": True}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"n": True}, "n"),
        ({"stop": [1]}, "stop"),
        ({"tools": {"a": 1}}, "tools"),
    ],
)
def test_bad_params_name_the_field(params: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        chat_request("m", "hi", params=params)
    assert ei.value.param == param


def test_tool_call_message_without_content_is_fine() -> None:
    msgs = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        }
    ]
    assert normalize_messages(msgs) == msgs


def test_embedding_input_checked() -> None:
    assert embedding_request("m", ["a", "b"]).texts == ["a", "b"]
    with pytest.raises(InvalidRequestError):
        embedding_request("m", [])
    with pytest.raises(InvalidRequestError):
        embedding_request("m", [1, 2])  # type: ignore[list-item]


def test_integral_floats_are_integers_and_seed_may_be_negative() -> None:
    req = chat_request("m", "hi", params={"max_tokens": 16.0, "seed": -3})
    assert req.params == {"max_tokens": 16, "seed": -3} and isinstance(req.params["max_tokens"], int)


# -- message shapes (defect: a malformed field passed validation and crashed later) -----------------------------


def _call(args: object = "{}", **fn: object) -> dict[str, object]:
    return {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args, **fn}}


def _with(msg: dict[str, object]) -> list[dict[str, object]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, msg]


@pytest.mark.parametrize(
    ("msg", "param"),
    [
        ({"role": "assistant", "content": None, "tool_calls": 5}, "messages[2].tool_calls"),
        ({"role": "assistant", "tool_calls": [5]}, "messages[2].tool_calls[0]"),
        ({"role": "assistant", "tool_calls": [{"id": "c"}]}, "messages[2].tool_calls[0].function"),
        ({"role": "assistant", "tool_calls": [{"function": 5}]}, "messages[2].tool_calls[0].function"),
        ({"role": "assistant", "tool_calls": [_call(5)]}, "messages[2].tool_calls[0].function.arguments"),
        ({"role": "assistant", "tool_calls": [_call({"city": "x"})]}, "messages[2].tool_calls[0].function.arguments"),
        ({"role": "assistant", "tool_calls": [_call(name=3)]}, "messages[2].tool_calls[0].function.name"),
        ({"role": "assistant", "tool_calls": [{**_call(), "id": 7}]}, "messages[2].tool_calls[0].id"),
        ({"role": "assistant", "tool_calls": [{**_call(), "type": "magic"}]}, "messages[2].tool_calls[0].type"),
        ({"role": "assistant", "content": None}, "messages[2].content"),
        ({"role": "assistant", "content": None, "tool_calls": []}, "messages[2].content"),
        ({"role": "assistant", "content": "x", "function_call": "f"}, "messages[2].function_call"),
        ({"role": "assistant", "content": "x", "refusal": 1}, "messages[2].refusal"),
        ({"role": "assistant", "content": "x", "reasoning_content": ["a"]}, "messages[2].reasoning_content"),
        ({"role": "user", "content": None}, "messages[2].content"),
        ({"role": "user", "content": 5}, "messages[2].content"),
        ({"role": "user", "content": {"type": "text", "text": "x"}}, "messages[2].content"),
        ({"role": "user", "content": []}, "messages[2].content"),
        ({"role": "user", "content": ["hi"]}, "messages[2].content[0]"),
        ({"role": "user", "content": [{"text": "hi"}]}, "messages[2].content[0].type"),
        ({"role": "user", "content": [{"type": "text", "text": 1}]}, "messages[2].content[0].text"),
        ({"role": "user", "content": [{"type": "text"}]}, "messages[2].content[0].text"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]},
            "messages[2].content[0].image_url",
        ),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, "messages[2].content[0].image_url.url"),
        ({"role": "user", "content": "x", "name": 1}, "messages[2].name"),
        ({"role": "user", "content": "x", "tool_calls": {"a": 1}}, "messages[2].tool_calls"),
        ({"role": "tool", "content": "sunny"}, "messages[2].tool_call_id"),
        ({"role": "tool", "content": "sunny", "tool_call_id": 1}, "messages[2].tool_call_id"),
        ({"role": "tool", "content": None, "tool_call_id": "c"}, "messages[2].content"),
        ({"role": "function", "content": "sunny"}, "messages[2].name"),
        ({"role": "system", "content": [{"type": "input_audio", "input_audio": {}}, 1]}, "messages[2].content[1]"),
    ],
)
def test_malformed_messages_name_the_exact_path(msg: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        chat_request("m", _with(msg))
    assert ei.value.param == param
    assert param in ei.value.message  # the message says which field, in words a person can act on


ACCEPTED: list[list[dict[str, object]]] = [
    # what the openai SDK, LangChain and DB-GPT send
    [{"role": "developer", "content": "x"}, {"role": "user", "content": "", "name": "bob"}],
    [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ],
        }
    ],
    [
        {
            "role": "user",
            "content": [
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "file", "file": {"file_id": "f"}},
            ],
        }
    ],
    [{"role": "user", "content": [{"type": "text", "text": "cached", "cache_control": {"type": "ephemeral"}}]}],
    [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [_call()],
            "refusal": None,
            "audio": None,
            "annotations": [],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1", "name": "get_weather"},
        {"role": "tool", "content": [{"type": "text", "text": "sunny"}], "tool_call_id": "call_1"},
    ],
    [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": ""}}]},
    ],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": [], "tool_calls": [_call()]}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "refusal": "I can't help with that."}],
    [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
    ],
    [{"role": "user", "content": "x"}, {"role": "function", "name": "f", "content": None}],
    [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ok", "reasoning_content": None, "name": None}],
    [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "ok", "reasoning_content": "hmm", "x_custom": [1, {"a": None}]},
    ],
    [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}],
        },
    ],
]


@pytest.mark.parametrize("messages", ACCEPTED)
def test_what_real_clients_send_is_accepted_and_passed_through(messages: list[dict[str, object]]) -> None:
    req = chat_request("m", messages)
    assert req.messages == messages


def test_every_validated_message_list_can_be_estimated() -> None:
    from modelway.usage.estimate import prompt_chars

    for messages in ACCEPTED:
        prompt_chars(chat_request("m", messages).messages)
    assert prompt_chars([{"role": "user", "content": "abc"}, {"role": "user", "content": "你好"}]) == (3, 2)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "tool_calls": 5, "content": "x"}],
        [{"role": "assistant", "tool_calls": [5, {"function": 5}, {"function": {"name": 1, "arguments": []}}]}],
        [{"role": "user", "content": [5, None, {"text": 3}, {"type": "text", "text": ["x"]}]}],
        [5, None, "text", {"content": {"text": "x"}}, {"tool_calls": "abc"}],
        [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}],
    ],
)
def test_prompt_chars_never_raises(messages: list[object]) -> None:
    from modelway.usage.estimate import prompt_chars

    ascii_chars, other = prompt_chars(messages)  # type: ignore[arg-type]
    assert ascii_chars >= 0 and other >= 0


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": ["f"]}}]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [{"type": 1, "function": {"name": "f"}}]}, "tools[0].type"),
        ({"tools": [{"description": "neither a type nor a name"}]}, "tools[0].type"),
        ({"tools": ["f"]}, "tools"),  # the gateway's HTTP tests pin "tools" for a non-object entry
        ({"logprobs": "yes"}, "logprobs"),
        ({"parallel_tool_calls": 0}, "parallel_tool_calls"),
        ({"user": 42}, "user"),
        ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
        ({"tool_choice": 5}, "tool_choice"),
        ({"tool_choice": {"function": {"name": "f"}}}, "tool_choice.type"),
        ({"tool_choice": {"type": "function", "function": 5}}, "tool_choice.function"),
        ({"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name"),
    ],
)
def test_bad_tools_name_the_exact_path(params: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        chat_request("m", "hi", params=params)
    assert ei.value.param == param


def test_tools_real_clients_send_are_accepted() -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
        },
        {"type": "function", "function": {"name": "g"}},  # no parameters: the openai SDK test sends this
        {"type": "custom", "custom": {"name": "sql"}},
        {"name": "get_weather", "input_schema": {"type": "object"}},  # an Anthropic tool, as the adapter allows
        {"type": "web_search_20250305", "name": "web_search"},
    ]
    for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "f"}}, {"type": "any"}):
        req = chat_request("m", "hi", params={"tools": tools, "tool_choice": choice})
        assert req.params["tools"] == tools


# -- integer ranges (defect: 2**64 became a Python int orjson cannot serialise: a 500) ---------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_tokens", 1.8446744073709552e19),  # what orjson.loads makes of 18446744073709551616
        ("max_tokens", 2**31),
        ("max_completion_tokens", 2**64),
        ("max_completion_tokens", 0),
        ("seed", 1.8446744073709552e19),
        ("seed", 2**63),
        ("seed", -(2**63) - 1),
        pytest.param("seed", 10**5000, id="seed-too-big-to-print"),
        ("n", 129),
        ("n", 0),
        ("top_logprobs", 21),
        ("top_logprobs", -1),
        ("top_logprobs", 1e300),
        pytest.param("temperature", 10**5000, id="temperature-too-big-to-print"),
    ],
)
def test_integers_out_of_range_are_400_naming_the_field(name: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        chat_request("m", "hi", params={name: value})
    assert ei.value.param == name and name in ei.value.message
    assert len(ei.value.message) < 200


def test_integers_at_the_edges_are_accepted_and_serialise() -> None:
    import orjson

    params = {"max_tokens": 2**31 - 1, "max_completion_tokens": 1, "n": 128, "seed": -(2**63), "top_logprobs": 0}
    req = chat_request("m", "hi", params=params)
    assert req.params == params
    orjson.dumps(req.params)
    assert chat_request("m", "hi", params={"seed": 2**63 - 1, "top_logprobs": 20.0}).params == {
        "seed": 2**63 - 1,
        "top_logprobs": 20,
    }


def test_openai_params_given_in_extra_are_checked_too() -> None:
    with pytest.raises(InvalidRequestError) as ei:
        chat_request("m", "hi", extra={"stream_options": 5})
    assert ei.value.param == "stream_options"
    assert chat_request("m", "hi", extra={"top_k": 5, "seed": 3}).extra == {"top_k": 5, "seed": 3}


# -- nesting depth (defect: orjson reads 1024 levels but writes only 254: a deep forwarded field was a 500) ------


def _nest(levels: int, inner: object = 0) -> object:
    """``levels`` arrays around ``inner``: ``_nest(2)`` is ``[[0]]``."""
    v = inner
    for _ in range(levels):
        v = [v]
    return v


def _body(depth: int, where: str) -> dict[str, object]:
    """A chat body (level 1) with a container at level ``depth`` in the field ``where``."""
    user: dict[str, object] = {"role": "user", "content": "hi"}
    body: dict[str, object] = {"model": "openai/m", "messages": [user]}
    if where == "extra":  # an unknown top-level field: the adapters forward it (DashScope under "parameters")
        body["x_meta"] = _nest(depth - 1)
    elif where == "message":  # an unknown key inside a message, passed through
        user["x_meta"] = _nest(depth - 3)
    elif where == "part":  # inside a content part of another type
        user["content"] = [{"type": "x_blob", "x_blob": _nest(depth - 5)}]
    elif where == "schema":  # deep inside a tool's JSON schema
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"x": _nest(depth - 5)}}}]
    return body


def _paths(body: dict[str, object]) -> tuple[str, dict[str, object]]:
    model, messages = body["model"], body["messages"]
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    return str(model), {"messages": messages, "params": params}


WHERE = ["extra", "message", "part", "schema"]


@pytest.mark.parametrize("where", WHERE)
def test_deep_bodies_are_400_naming_the_path(where: str) -> None:
    from modelway.validate import MAX_JSON_DEPTH, check_json_depth

    for depth in (MAX_JSON_DEPTH + 1, 300, 1024):
        body = _body(depth, where)
        raw = orjson.dumps(body) if depth <= 254 else _dumps_deep(body)
        parsed = orjson.loads(raw)  # the gateway parses it fine ...
        with pytest.raises(InvalidRequestError) as ei:
            check_json_depth(parsed)  # ... and now refuses it as a 400
        param = ei.value.param
        assert param is not None and param.count("[") + param.count(".") + 1 == MAX_JSON_DEPTH
        assert param.startswith(
            {
                "extra": "x_meta",
                "message": "messages[0].x_meta",
                "part": "messages[0].content[0]",
                "schema": "tools[0].function.parameters.x",
            }[where]
        )
        assert str(MAX_JSON_DEPTH) in ei.value.message


def _dumps_deep(obj: object) -> bytes:
    """JSON for values deeper than orjson writes (the stdlib has no depth limit of its own beyond recursion)."""
    import json
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        return json.dumps(obj, separators=(",", ":")).encode()
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("where", WHERE)
def test_the_deepest_accepted_body_serialises_in_every_adapter(where: str) -> None:
    from modelway.providers import PROVIDERS, ProviderSettings
    from modelway.validate import MAX_JSON_DEPTH, check_json_depth

    body = _body(MAX_JSON_DEPTH, where)
    check_json_depth(orjson.loads(orjson.dumps(body)))
    model, parts = _paths(body)
    for stream in (False, True):
        req = chat_request(model, parts["messages"], stream=stream, params=parts["params"])  # type: ignore[arg-type]
        for name, cls in PROVIDERS.items():
            http = cls(ProviderSettings(api_key="k", base_url="http://127.0.0.1:1")).chat_request(req)
            assert http.body, name


def test_depth_edges_and_param_root() -> None:
    from modelway.validate import check_json_depth

    check_json_depth(_nest(4), limit=4)
    check_json_depth(_nest(3, {}), limit=4)  # an empty container is a level too
    check_json_depth("a scalar", limit=1)
    for deep in (_nest(5), _nest(4, {}), _nest(4, ())):
        with pytest.raises(InvalidRequestError) as ei:
            check_json_depth(deep, limit=4)
        assert ei.value.param == "[0][0][0][0]"
    with pytest.raises(InvalidRequestError) as ei:
        check_json_depth({"a": [1, {"b": 2}], "c": [[{"d": [[]]}]]}, limit=4, param_root="params")
    assert ei.value.param == "params.c[0][0].d"  # the array under "d" is level 5
    with pytest.raises(InvalidRequestError) as ei:
        check_json_depth([[1]], limit=1)
    assert ei.value.param == "[0]" and "the request body" not in ei.value.message
    with pytest.raises(ValueError):
        check_json_depth({}, limit=0)


@pytest.mark.parametrize("size", [0, 1, 16, 17, 5000])
def test_long_arrays_are_walked_right(size: int) -> None:
    """Long arrays of scalars take a shortcut; a container anywhere in them still counts."""
    from modelway.validate import check_json_depth

    scalars: list[object] = ["s", 1, 1.5, True, None] * (size // 5) + [0] * (size % 5)
    check_json_depth({"input": scalars}, limit=2)
    for i in {0, size // 2, size}:
        with pytest.raises(InvalidRequestError) as ei:
            check_json_depth({"input": [*scalars[:i], [[]], *scalars[i:]]}, limit=3)
        assert ei.value.param == f"input[{i}][0]"


def test_deep_tool_call_arguments_are_refused() -> None:
    """Anthropic decodes the arguments into the upstream body, where their depth counts like any other field's."""
    from modelway.providers.anthropic import AnthropicAdapter
    from modelway.providers.base import ProviderSettings
    from modelway.validate import MAX_JSON_DEPTH

    def msgs(args: str) -> list[dict[str, object]]:
        return [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [_call(args)]}]

    deep = "[" * 300 + "]" * 300
    with pytest.raises(InvalidRequestError) as ei:
        chat_request("m", msgs(deep))
    assert ei.value.param == "messages[1].tool_calls[0].function.arguments"
    adapter = AnthropicAdapter(ProviderSettings(api_key="k"))
    ok = '{"a":' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}"
    for args in (ok, "[" * 2000, "{[" * 200 + " not json"):
        assert adapter.chat_request(chat_request("m", msgs(args))).body
