"""Schemas of the Anthropic Messages API as the gateway serves it (:mod:`modelway.server.dialects.anthropic`).

Errors on these routes come in Anthropic's shape (``{"type": "error", "error": {"type", "message"}}``); blocks are
described by their outline, the dialect checks them field by field and names the one at fault.
"""

from __future__ import annotations

from ..dialects.anthropic_request import IGNORED, NATIVE_ONLY
from ._base import _INT, _STRING, Schema, _obj, _range
from .chat import DEPTH_NOTE

__all__ = ["MESSAGES_COMPONENTS"]

_BLOCK = _obj({"type": _STRING}, ["type"], description="a content block: text, image, document, tool_use, ...")
_CONTENT: Schema = {"anyOf": [_STRING, {"type": "array", "items": _BLOCK}]}
_MESSAGE = _obj({"role": _STRING, "content": _CONTENT}, ["role", "content"])

_COMMON: Schema = {
    "model": {"type": "string", "minLength": 1, "description": "an alias from the config, or provider/model"},
    "messages": {"type": "array", "items": _MESSAGE},
    "system": {"anyOf": [_STRING, {"type": "array", "items": _BLOCK}, {"type": "null"}]},
    "tools": {"type": ["array", "null"], "items": _obj({"name": _STRING}, ["name"])},
    "tool_choice": _obj({"type": {"enum": ["auto", "any", "tool", "none"]}}),
    "thinking": _obj({"type": _STRING, "budget_tokens": _INT}),
    **{name: {"description": "accepted; only an Anthropic upstream uses it"} for name in sorted(IGNORED | NATIVE_ONLY)},
}
_MESSAGES_REQUEST = _obj(
    {
        **_COMMON,
        "max_tokens": _range("integer", 1, 2**31 - 1),
        "stream": {"type": ["boolean", "null"]},
        "temperature": _range("number", 0, 2),
        "top_p": _range("number", 0, 1),
        "top_k": {"type": ["integer", "null"], "minimum": 0},
        "stop_sequences": {"type": ["array", "null"], "items": _STRING},
        "metadata": _obj({"user_id": {"type": ["string", "null"]}}),
        "output_config": {"type": ["object", "null"]},
    },
    ["model", "max_tokens", "messages"],
    additionalProperties=False,
    description="An Anthropic Messages request, for every model (translated where the upstream is not "
    "Anthropic, sent as it came where it is). " + DEPTH_NOTE,
)
_COUNT_REQUEST = _obj(
    {**_COMMON, "output_config": {"type": ["object", "null"]}},
    ["model", "messages"],
    additionalProperties=True,
    description="A Messages request without max_tokens: the input tokens are estimated",
)
_USAGE = _obj(
    {
        "input_tokens": _INT,
        "output_tokens": _INT,
        "cache_read_input_tokens": {"type": ["integer", "null"]},
        "cache_creation_input_tokens": {"type": ["integer", "null"]},
    },
    ["input_tokens", "output_tokens"],
)
_MESSAGE_ANSWER = _obj(
    {
        "id": _STRING,
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "model": _STRING,
        "content": {"type": "array", "items": _BLOCK},
        "stop_reason": {"type": ["string", "null"]},
        "stop_sequence": {"type": ["string", "null"]},
        "usage": _USAGE,
    },
    ["id", "type", "role", "model", "content", "stop_reason", "usage"],
)
_EVENT = _obj(
    {"type": _STRING},
    ["type"],
    description="one event of the Messages stream (event: <type>): message_start, content_block_start, "
    "content_block_delta, content_block_stop, message_delta, message_stop, ping, or error",
)
_TOKENS = _obj({"input_tokens": _INT}, ["input_tokens"])
_ERROR = _obj(
    {
        "type": {"const": "error"},
        "error": _obj({"type": _STRING, "message": _STRING}, ["type", "message"]),
        "request_id": _STRING,
    },
    ["type", "error"],
    description="Anthropic's error shape, used by every error answer of the /v1/messages routes",
)

MESSAGES_COMPONENTS: Schema = {
    "MessagesRequest": _MESSAGES_REQUEST,
    "CountTokensRequest": _COUNT_REQUEST,
    "Message": _MESSAGE_ANSWER,
    "MessageStreamEvent": _EVENT,
    "InputTokens": _TOKENS,
    "AnthropicError": _ERROR,
}
