"""OpenAI's own Responses API (``POST {base_url}/responses``), for a request that came to the gateway's
``/v1/responses`` (``ChatRequest.native``, api ``openai.responses``) and is routed to OpenAI itself.

The caller's body goes as it came (the gateway's dialect already replaced ``previous_response_id`` with the
conversation it names and set ``store: false``: the gateway keeps the state), with the deployment's model. Other
OpenAI-compatible providers serve no ``/responses``: they get the translated chat request.

The answer is parsed into a :class:`~modelway.types.ChatCompletion` (text, tool calls, reasoning summary, usage, with
``raw`` the upstream's body), the event stream into chunks (text, argument and reasoning deltas; usage and the finish
reason on ``response.completed``/``response.incomplete``), each with ``raw`` its frame. ``response.failed`` and
``error`` events raise the typed error their code names.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ProviderError, StreamError
from ..sse import SSEEvent, encode_event
from ..types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
    whole,
)
from .base import Adapter, HTTPRequest, StreamParser, decode_json

if TYPE_CHECKING:
    from .openai_compat import OpenAICompatAdapter

__all__ = ["API", "ResponsesStreamParser", "native", "parse_response", "responses_request", "serves_responses"]

#: ``NativeBody.api`` of a Responses request
API = "openai.responses"

_REASONING_DELTAS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})
_FINAL = frozenset({"response.completed", "response.incomplete"})


def serves_responses(adapter: Adapter) -> bool:
    """Whether ``adapter`` talks to OpenAI's own API, which serves ``/responses``."""
    spec = getattr(adapter, "spec", None)
    return getattr(spec, "name", None) == "openai"


def native(adapter: Adapter, req: ChatRequest) -> bool:
    """Whether ``req`` goes to ``adapter`` in the Responses API itself."""
    return req.native is not None and req.native.api == API and serves_responses(adapter)


def responses_request(adapter: OpenAICompatAdapter, req: ChatRequest) -> HTTPRequest:
    assert req.native is not None
    body = dict(req.native.body)
    body["model"] = req.model
    if req.stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return adapter.json_request("/responses", body)


def usage_of(u: Any) -> Usage | None:
    """Responses usage → chat usage (cached and reasoning tokens in OpenAI's chat names)."""
    if not isinstance(u, dict):
        return None
    prompt = whole(u.get("input_tokens"))
    completion = whole(u.get("output_tokens"))
    total = u.get("total_tokens")
    cached = (u.get("input_tokens_details") or {}).get("cached_tokens")
    reasoning = (u.get("output_tokens_details") or {}).get("reasoning_tokens")
    return Usage(
        prompt,
        completion,
        whole(total) if total is not None else prompt + completion,
        {"cached_tokens": whole(cached)} if cached else None,
        {"reasoning_tokens": whole(reasoning)} if reasoning else None,
    )


def _finish(response: dict[str, Any], calls: bool) -> str:
    details = response.get("incomplete_details") or {}
    if response.get("status") == "incomplete":
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if calls else "stop"


def _texts(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))


def _error(adapter: OpenAICompatAdapter, err: Any, headers: Mapping[str, str] | None = None) -> ProviderError:
    payload = {"error": err if isinstance(err, dict) else {"message": str(err or "the response failed")}}
    return adapter.error_from_payload(None, headers or {}, payload)


def parse_response(
    adapter: OpenAICompatAdapter, body: bytes, headers: Mapping[str, str], req: ChatRequest
) -> ChatCompletion:
    data = decode_json(body, provider=adapter.name)
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        raise adapter.error_from_payload(200, headers, data)
    if data.get("status") == "failed":
        raise _error(adapter, data.get("error"), headers)
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for item in data["output"]:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            text.append(_texts(item.get("content")))
        elif kind == "reasoning":
            reasoning.append(_texts(item.get("summary")) or _texts(item.get("content")))
        elif kind == "function_call":
            args = item.get("arguments")
            calls.append(
                ToolCall(
                    str(item.get("call_id") or item.get("id") or ""),
                    FunctionCall(
                        str(item.get("name") or ""), args if isinstance(args, str) else orjson.dumps(args).decode()
                    ),
                )
            )
    message = ChatMessage(
        content="".join(text) if text or not calls else None,
        tool_calls=calls or None,
        reasoning_content="".join(reasoning) if any(reasoning) else None,
    )
    return ChatCompletion(
        id=str(data.get("id") or ""),
        created=whole(data.get("created_at")) or int(time.time()),
        model=str(data.get("model") or req.model),
        choices=[Choice(0, message, _finish(data, bool(calls)))],
        usage=usage_of(data.get("usage")),
        provider=adapter.name,
        raw=data,
    )


class ResponsesStreamParser(StreamParser):
    """Responses events → chunks, one per event, each carrying its frame (``raw``)."""

    def __init__(self, adapter: OpenAICompatAdapter, req: ChatRequest) -> None:
        self.adapter = adapter
        self.provider = adapter.name
        self.model = req.model
        self.id = ""
        self.created = int(time.time())
        #: output_index of each function_call item → its tool call index
        self.calls: dict[Any, int] = {}
        self.done = False

    def event(self, ev: SSEEvent) -> list[ChatCompletionChunk]:
        data = ev.data
        if data == "[DONE]":
            self.done = self.done or bool(self.id)
            return []
        if not data.strip():
            return []
        obj = decode_json(data.encode(), provider=self.provider, what="stream event")
        if not isinstance(obj, dict):
            raise StreamError(f"unexpected stream event: {data[:200]!r}", provider=self.provider)
        kind = str(obj.get("type") or ev.event)
        if kind == "error":
            raise _error(self.adapter, {k: obj.get(k) for k in ("code", "message", "param", "type")})
        response = obj.get("response")
        if kind == "response.failed":
            raise _error(self.adapter, response.get("error") if isinstance(response, dict) else None)
        choices: list[ChunkChoice] = []
        usage: Usage | None = None
        if isinstance(response, dict) and not self.id:
            self.id = str(response.get("id") or "")
            self.created = whole(response.get("created_at")) or self.created
        if kind == "response.output_text.delta":
            choices.append(ChunkChoice(0, Delta(content=str(obj.get("delta") or ""))))
        elif kind in _REASONING_DELTAS:
            choices.append(ChunkChoice(0, Delta(reasoning_content=str(obj.get("delta") or ""))))
        elif kind == "response.output_item.added":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                index = self.calls[obj.get("output_index")] = len(self.calls)
                call = ToolCallDelta(
                    index,
                    id=str(item.get("call_id") or item.get("id") or ""),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or "") or None,
                    type="function",
                )
                choices.append(ChunkChoice(0, Delta(tool_calls=[call])))
        elif kind == "response.function_call_arguments.delta":
            at = self.calls.get(obj.get("output_index"))
            if at is not None:
                choices.append(ChunkChoice(0, Delta(tool_calls=[ToolCallDelta(at, arguments=str(obj.get("delta")))])))
        elif kind in _FINAL and isinstance(response, dict):
            self.done = True
            usage = usage_of(response.get("usage"))
            choices.append(ChunkChoice(0, Delta(), _finish(response, bool(self.calls))))
        raw = encode_event(data, event=str(kind))
        return [ChatCompletionChunk(self.id, self.created, self.model, choices, usage, self.provider, raw=raw)]
