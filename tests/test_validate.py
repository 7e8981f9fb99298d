from __future__ import annotations

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
