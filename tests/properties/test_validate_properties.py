"""Properties of the request validator: what real clients send is accepted unchanged, and whatever it accepts can
be estimated and sent by every adapter (the adapters may refuse a request only with a typed error)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonish import MESSAGES_ANY, MESSAGES_VALID, PARAMS_ANY, PARAMS_VALID, SETTINGS

from modelway.errors import InvalidRequestError, ModelwayError
from modelway.providers import PROVIDERS, ProviderSettings
from modelway.types import CHAT_PARAMS, ChatRequest
from modelway.usage.estimate import prompt_chars
from modelway.validate import (
    _check_numbers,
    _check_others,
    chat_body_request,
    chat_request,
    check_json_depth,
    normalize_messages,
)

ADAPTERS = {name: cls(ProviderSettings(api_key="k", base_url="http://127.0.0.1:1")) for name, cls in PROVIDERS.items()}


def send_everywhere(req: ChatRequest) -> None:
    """What happens to an accepted request: its prompt is estimated, every adapter builds its upstream request
    (refusing only with a typed error) and a stream parser for it, and the body is JSON."""
    ascii_chars, other = prompt_chars(req.messages)
    assert ascii_chars >= 0 and other >= 0
    for name, adapter in ADAPTERS.items():
        try:
            http = adapter.chat_request(req)
        except ModelwayError:
            continue
        assert http.body is not None, name
        assert isinstance(orjson.loads(http.body), dict), name
        adapter.stream_parser(req)


@SETTINGS
@given(messages=MESSAGES_VALID, params=PARAMS_VALID, stream=st.booleans())
def test_realistic_requests_are_accepted_unchanged(messages: list[Any], params: dict[str, Any], stream: bool) -> None:
    req = chat_request("m", messages, stream=stream, params=params)
    assert req.messages is messages
    send_everywhere(req)


_USER = [{"role": "user", "content": "hi"}]
_TOOLS = [{"type": "function", "function": {"name": "f"}}]


# what the validator let through before it checked shapes and ranges, each crashing estimate or an adapter
@example(messages=[{"role": "assistant", "content": None, "tool_calls": 5}], params={}, stream=False)
@example(messages=[{"role": "assistant", "tool_calls": [None]}], params={}, stream=False)
@example(messages=[{"role": "user", "content": [{"text": "x"}]}], params={}, stream=False)
@example(messages=_USER, params={"tools": [{"type": "function", "function": {}}]}, stream=False)
@example(messages=_USER, params={"tool_choice": {"type": "function", "function": 5}}, stream=False)
@example(messages=_USER, params={"tools": _TOOLS, "tool_choice": {}, "parallel_tool_calls": False}, stream=False)
@example(messages=_USER, params={"seed": 1.8446744073709552e19}, stream=False)
@example(messages=_USER, params={"max_tokens": 1.8446744073709552e19}, stream=True)
@settings(SETTINGS, max_examples=400)
@given(messages=MESSAGES_ANY, params=PARAMS_ANY, stream=st.booleans())
def test_what_the_validator_accepts_every_adapter_can_send(messages: Any, params: dict[str, Any], stream: bool) -> None:
    # as the gateway does: the whole parsed body is depth-checked, then validated
    body = orjson.loads(orjson.dumps({"model": "m", "messages": messages, **params}))
    try:
        check_json_depth(body)
        req = chat_request("m", body["messages"], stream=stream, params={k: body[k] for k in params})
    except InvalidRequestError:
        return
    send_everywhere(req)


class _List(list):  # type: ignore[type-arg]
    """Messages in a list subclass: normalize_messages checks them one by one (its fast path takes exact lists)."""


def _outcome(check: Any) -> Any:
    try:
        return check()
    except InvalidRequestError as exc:
        return ("error", str(exc), exc.param)


def _ordered(params: dict[str, Any]) -> dict[str, Any]:
    p = dict(params)
    _check_numbers(p)
    _check_others(p)
    return p


_TOP = frozenset({"model", "messages", "stream"})


@example(messages=_USER, params={"temperature": 3, "top_p": -1.0, "max_tokens": True}, stream=False)
@example(messages=_USER, params={"max_tokens": 16.0, "n": 2.5}, stream=False)
@example(messages=_USER, params={"max_tokens": True, "temperature": 0.5}, stream=False)
@example(messages=_USER, params={"seed": 2**63, "top_p": float("nan")}, stream=False)
@example(messages=[{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}], params={}, stream=False)
@example(messages=[{"role": "user", "content": "a"}, {"role": ["x"], "content": "b"}], params={}, stream=False)
@settings(SETTINGS, max_examples=400)
@given(messages=MESSAGES_ANY | MESSAGES_VALID, params=PARAMS_ANY | PARAMS_VALID, stream=st.booleans())
def test_the_gateways_one_pass_and_the_fast_checks_decide_as_the_ordered_checks(
    messages: Any, params: dict[str, Any], stream: bool
) -> None:
    body = orjson.loads(orjson.dumps({"model": "m", "messages": messages, **params}))
    rest = {k: v for k, v in body.items() if k not in _TOP}
    messages = body["messages"]
    # the one pass of ChatDialect.parse gives what chat_request gives for the same body
    one_pass = _outcome(lambda: chat_body_request("m", messages, stream, body, _TOP))
    assert one_pass == _outcome(lambda: chat_request("m", messages, stream=stream, params=rest))
    # the fast paths decide as the checks in their order: the same error, or the same request
    given_params = {k: v for k, v in rest.items() if k in CHAT_PARAMS and v is not None}
    slow_messages = _List(messages) if isinstance(messages, list) else messages
    slow = _outcome(lambda: (_ordered(given_params), normalize_messages(slow_messages)))
    assert slow == ((one_pass.params, one_pass.messages) if isinstance(one_pass, ChatRequest) else one_pass)
