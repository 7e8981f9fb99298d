"""Checks on a caller's chat and embedding input, shared by the library and the gateway.

Bad input raises :class:`~modelway.errors.InvalidRequestError` naming the field, before any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidRequestError
from .types import CHAT_PARAMS, ChatRequest, EmbeddingRequest, Message

__all__ = ["chat_request", "embedding_request", "normalize_messages"]

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
_NUMERIC = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_INTS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")


def normalize_messages(messages: str | list[Message] | Any) -> list[Message]:
    """A plain string becomes one user message; a list must hold dicts with a known ``role``."""
    if isinstance(messages, str):
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of messages or a string", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidRequestError(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidRequestError(
                f"messages[{i}].role must be one of system, user, assistant, tool (got {role!r})",
                param=f"messages[{i}].role",
            )
        if "content" not in m and not m.get("tool_calls"):
            raise InvalidRequestError(f"messages[{i}].content is required", param=f"messages[{i}].content")
    return messages if all(type(m) is dict for m in messages) else [dict(m) for m in messages]


def _check_params(params: dict[str, Any]) -> None:
    for name, (lo, hi) in _NUMERIC.items():
        v = params.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidRequestError(f"{name} must be a number", param=name)
        if not lo <= v <= hi:
            raise InvalidRequestError(f"{name} must be between {lo:g} and {hi:g} (got {v})", param=name)
    for name in _INTS:
        v = params.get(name)
        if v is None:
            continue
        if isinstance(v, float) and v.is_integer():  # JSON 16.0 is the integer 16
            v = params[name] = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidRequestError(f"{name} must be an integer", param=name)
        if name != "seed" and v < 1:
            raise InvalidRequestError(f"{name} must be a positive integer", param=name)
    stop = params.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidRequestError("stop must be a string or a list of strings", param="stop")
    tools = params.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise InvalidRequestError("tools must be a list of objects", param="tools")
    for name in ("stream_options", "response_format", "logit_bias"):
        v = params.get(name)
        if v is not None and not isinstance(v, Mapping):
            raise InvalidRequestError(f"{name} must be an object", param=name)


def chat_request(
    model: str,
    messages: str | list[Message],
    *,
    stream: bool = False,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ChatRequest:
    """Build a :class:`ChatRequest`: OpenAI parameters go to ``params`` (``None`` values are left out, as the
    OpenAI SDK does), anything else to ``extra`` (sent to the provider unchanged)."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required", param="model")
    p: dict[str, Any] = {}
    x: dict[str, Any] = dict(extra or {})
    for k, v in (params or {}).items():
        if v is None:
            continue
        if k in CHAT_PARAMS:
            p[k] = v
        else:
            x[k] = v
    _check_params(p)
    return ChatRequest(model=model, messages=normalize_messages(messages), stream=stream, params=p, extra=x)


def embedding_request(model: str, input: str | list[str], params: Mapping[str, Any] | None = None) -> EmbeddingRequest:
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model is required", param="model")
    if isinstance(input, str):
        ok = bool(input)
    else:
        ok = isinstance(input, list) and bool(input) and all(isinstance(s, str) for s in input)
    if not ok:
        raise InvalidRequestError("input must be a non-empty string or list of strings", param="input")
    return EmbeddingRequest(model=model, input=input, params={k: v for k, v in (params or {}).items() if v is not None})
