"""Internal answers rendered as Anthropic Messages: the whole message, and the event stream.

The stream is Anthropic's exact sequence: ``message_start`` (empty content, the input tokens known so far), a
``ping``, then content blocks at indices 0, 1, 2, ... (``content_block_start``, deltas, ``content_block_stop``),
then ``message_delta`` (stop reason and the usage totals) and ``message_stop``. One block is open at a time: a
text delta after thinking closes the thinking block (its ``signature_delta`` first) and opens a text block, so a
``thinking_delta`` never lands in a text block. Tool calls are keyed by id when the provider gives one, else by
index. While a tool call's block is open (its arguments may still come), text and reasoning are held back and
follow it as blocks of their own when it closes (the next tool call, or the end). The one case left: a provider
interleaving the arguments of parallel calls (a fragment of a call after the next call began) gets that fragment
sent with its own block's index, after that block's stop (the SDKs accumulate by index). An answer that came from
an Anthropic upstream (``raw`` set) is sent as Anthropic sent it, with the model name the caller asked for.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

from ...errors import (
    AllDeploymentsFailedError,
    AuthenticationError,
    InvalidRequestError,
    ModelwayError,
    PermissionDeniedError,
    ProviderError,
)
from ...types import ChatCompletion, ChatCompletionChunk, ToolCallDelta, Usage
from ...usage.estimate import estimate_tokens
from ...validate import check_json_depth
from ..errors import error_payload, public_message
from .anthropic_request import signature
from .base import StreamRenderer

__all__ = [
    "MessagesRenderer",
    "anthropic_usage",
    "error_type",
    "error_type_of",
    "message_body",
    "new_message_id",
    "stop_reason",
]

log = logging.getLogger("modelway.server")

#: internal finish reason → Anthropic stop reason
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
#: HTTP status → Anthropic error type (other 4xx: invalid_request_error, other 5xx: api_error)
_ERROR_TYPES = {
    400: "invalid_request_error",
    422: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


#: an Anthropic upstream's own error types, passed on as they came (Claude Code retries ``overloaded_error``, which
#: Anthropic also sends inside a stream); its authentication and permission errors are the gateway's key's, not the
#: caller's, and are told by status
_UPSTREAM_TYPES = frozenset(
    {
        "invalid_request_error",
        "request_too_large",
        "not_found_error",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
    }
)


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_type_of(exc: ModelwayError, status: int) -> str:
    """The Anthropic error type of ``exc`` answered with ``status``: an Anthropic upstream's own type when it gave
    one (the last attempt's, after failover), else the status's."""
    last = exc.attempts[-1] if isinstance(exc, AllDeploymentsFailedError) and exc.attempts else exc
    if (
        isinstance(last, ProviderError)
        and not isinstance(last, AuthenticationError | PermissionDeniedError)
        and last.provider == "anthropic"
        and last.code in _UPSTREAM_TYPES
    ):
        return str(last.code)
    return error_type(status)


def new_message_id() -> str:
    return "msg_01" + secrets.token_hex(12)


def _tool_id() -> str:
    return "toolu_01" + secrets.token_hex(11)


def stop_reason(finish: str | None, has_tool_calls: bool) -> str:
    """The stop reason of an answer: a finished answer with tool calls stopped for them, whatever the provider
    said (some say ``stop``)."""
    if has_tool_calls and finish in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return _STOP.get(finish or "stop", "end_turn")


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def anthropic_usage(u: Usage) -> dict[str, int]:
    """OpenAI usage → Anthropic's: ``prompt_tokens`` counts cached tokens, Anthropic's ``input_tokens`` does not."""
    details = u.prompt_tokens_details or {}
    read = _count(details.get("cached_tokens"))
    created = _count(details.get("cache_creation_tokens")) or _count(details.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(0, u.prompt_tokens - read - created),
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
        "output_tokens": u.completion_tokens,
    }


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool call arguments (JSON text) → the ``input`` object; anything else is kept under ``"arguments"``."""
    if not arguments or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
        check_json_depth(value)  # (nested deeper than the body may be, it could not be written out)
    except (orjson.JSONDecodeError, InvalidRequestError):
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def message_body(resp: ChatCompletion, model: str, input_estimate: int) -> dict[str, Any]:
    """A whole answer as an Anthropic message (the upstream's own body when it was Anthropic)."""
    if resp.raw is not None:
        return {**resp.raw, "model": model}
    content: list[dict[str, Any]] = []
    finish = None
    calls = False
    if resp.choices:
        choice = resp.choices[0]
        finish = choice.finish_reason
        m = choice.message
        if m.reasoning_content:
            content.append(
                {"type": "thinking", "thinking": m.reasoning_content, "signature": signature(m.reasoning_content)}
            )
        if m.content:
            content.append({"type": "text", "text": m.content})
        for tc in m.tool_calls or ():
            calls = True
            content.append(
                {
                    "type": "tool_use",
                    "id": tc.id or _tool_id(),
                    "name": tc.function.name,
                    "input": tool_input(tc.function.arguments),
                }
            )
    usage = resp.usage
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish, calls),
        "stop_sequence": None,
        "usage": anthropic_usage(usage) if usage is not None else _estimated(input_estimate, 0),
    }


def _estimated(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def frame(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def error_frame(exc: ModelwayError, request_id: str | None) -> bytes:
    status, _, _ = error_payload(exc, request_id)
    log.error("request %s failed mid-stream: %s", request_id, exc)
    error = {"type": error_type_of(exc, status), "message": public_message(exc)}
    return frame("error", {"error": error, "request_id": request_id})


class MessagesRenderer(StreamRenderer):
    """One Anthropic event stream; see the module docstring."""

    def __init__(self, model: str, input_estimate: int) -> None:
        self.model = model
        self.input_estimate = input_estimate
        self.id = new_message_id()
        self.started = False
        #: the upstream is Anthropic: its frames go out as they came
        self.native = False
        self.renamed = False
        #: the open block: its index and kind ("thinking", "text", "tool_use"); -1 and None when none is
        self.index = -1
        self.kind: str | None = None
        self.next_index = 0
        self.thinking: list[str] = []
        #: tool call key (("id", id) or ("index", n)) → its block index; a provider's index → the key it named last
        self.tools: dict[tuple[str, object], int] = {}
        self.by_index: dict[int, tuple[str, object]] = {}
        #: text and reasoning that came while a tool call's block was open: ("text" | "reasoning", text)
        self.held: list[tuple[str, str]] = []
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.chars = [0, 0]

    # -- frames -------------------------------------------------------------------------------------------------
    def _start(self, usage: Usage | None) -> bytes:
        self.started = True
        counts = anthropic_usage(usage) if usage is not None else _estimated(self.input_estimate, 0)
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": counts,
        }
        return frame("message_start", {"message": message}) + frame("ping", {})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.index = self.next_index
        self.next_index += 1
        self.kind = kind
        return out + frame("content_block_start", {"index": self.index, "content_block": block})

    def _close(self) -> bytes:
        if self.kind is None:
            return b""
        out = b""
        if self.kind == "thinking":
            sig = signature("".join(self.thinking))
            self.thinking = []
            out = frame(
                "content_block_delta", {"index": self.index, "delta": {"type": "signature_delta", "signature": sig}}
            )
        self.kind = None
        return out + frame("content_block_stop", {"index": self.index})

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return frame("content_block_delta", {"index": index, "delta": delta})

    def _note(self, text: str) -> None:
        if text.isascii():
            self.chars[0] += len(text)
        else:
            self.chars[1] += len(text)

    # -- content ------------------------------------------------------------------------------------------------
    def _reasoning(self, text: str) -> bytes:
        if self.kind == "tool_use":
            self.held.append(("reasoning", text))
            return b""
        out = b""
        if self.kind != "thinking":
            out = self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self.thinking.append(text)
        return out + self._delta(self.index, {"type": "thinking_delta", "thinking": text})

    def _text(self, text: str) -> bytes:
        if self.kind == "tool_use":
            self.held.append(("text", text))
            return b""
        out = b""
        if self.kind != "text":
            out = self._open("text", {"type": "text", "text": ""})
        return out + self._delta(self.index, {"type": "text_delta", "text": text})

    def _tool(self, tc: ToolCallDelta) -> bytes:
        key: tuple[str, object]
        if tc.id:
            key = ("id", tc.id)
            self.by_index[tc.index] = key
        else:
            key = self.by_index.setdefault(tc.index, ("index", tc.index))
        out = b""
        index = self.tools.get(key)
        if index is None:
            block = {"type": "tool_use", "id": tc.id or _tool_id(), "name": tc.name or "", "input": {}}
            out = self._release() + self._open("tool_use", block)
            index = self.tools[key] = self.index
            self._note(tc.name or "")
        if tc.arguments:
            # a fragment of a call whose block was closed (a provider interleaving calls) still names its own block
            self._note(tc.arguments)
            out += self._delta(index, {"type": "input_json_delta", "partial_json": tc.arguments})
        return out

    def _release(self) -> bytes:
        """Close the open tool call and send what was held back while it was open."""
        if self.kind != "tool_use" or not self.held:
            return b""
        out = self._close()
        held, self.held = self.held, []
        for kind, text in held:
            out += self._reasoning(text) if kind == "reasoning" else self._text(text)
        return out

    # -- the renderer -------------------------------------------------------------------------------------------
    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        if chunk.raw is not None:
            self.native = True
            return self._native(chunk.raw)
        if self.native:
            return b""
        out = b"" if self.started else self._start(chunk.usage)
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # an Anthropic message is one answer
            d = choice.delta
            if d.reasoning_content:
                self._note(d.reasoning_content)
                out += self._reasoning(d.reasoning_content)
            if d.content:
                self._note(d.content)
                out += self._text(d.content)
            for tc in d.tool_calls or ():
                out += self._tool(tc)
            if choice.finish_reason is not None:
                self.finish = choice.finish_reason
        return out

    def _native(self, raw: bytes) -> bytes:
        """An Anthropic frame as it came; ``message_start`` names the model the caller asked for."""
        if self.renamed or not raw.startswith(b"event: message_start\ndata: "):
            return raw
        self.renamed = True
        head, _, rest = raw.partition(b"data: ")
        line, sep, tail = rest.partition(b"\n")
        try:
            obj = orjson.loads(line)
            obj["message"]["model"] = self.model
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return raw
        return head + b"data: " + orjson.dumps(obj) + sep + tail

    async def end(self) -> bytes:
        if self.native:
            return b""
        out = b"" if self.started else self._start(None)
        out += self._release() + self._close()
        if self.usage is not None:
            usage = anthropic_usage(self.usage)
        else:  # the provider never said: the input as estimated, the output counted from what went out
            usage = _estimated(self.input_estimate, estimate_tokens(*self.chars))
        delta = {"stop_reason": stop_reason(self.finish, bool(self.tools)), "stop_sequence": None}
        return out + frame("message_delta", {"delta": delta, "usage": usage}) + frame("message_stop", {})

    def error(self, exc: ModelwayError, request_id: str | None) -> bytes:
        return error_frame(exc, request_id)
