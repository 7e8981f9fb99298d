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
from modelway.types import ChatRequest
from modelway.usage.estimate import prompt_chars
from modelway.validate import chat_request, check_json_depth

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
