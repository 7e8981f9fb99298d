"""OpenAI's Responses API on the OpenAI simulator: ``POST /v1/responses``, answering the scripted replies as a
Response (JSON) or its event stream.

The stream is OpenAI's: ``response.created``, ``response.in_progress``, then each output item in turn (added, its
deltas, its done events), then ``response.completed`` (``response.incomplete`` for a reply cut by its length);
every event has a ``sequence_number``; no ``[DONE]``. :meth:`~modelway.testing.Fault.error_frame` sends
``response.failed`` mid-stream. The simulator keeps no state: a ``previous_response_id`` is answered 400, and
unknown fields, and chat-style tools (``{type: function, function: {...}}``), are refused as OpenAI refuses them.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ._common import REC, Plan, Stream, now
from ._exchange import Exchange
from .faults import play
from .script import Fault, Reply

if TYPE_CHECKING:
    from .openai import OpenAISimulator

__all__ = ["add_routes"]

_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "reasoning",
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "user",
        "metadata",
        "stream",
        "store",
        "previous_response_id",
        "truncation",
        "include",
        "stream_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "top_logprobs",
        "max_tool_calls",
        "background",
        "prompt",
        "conversation",
    }
)


def add_routes(sim: OpenAISimulator, app: web.Application, prefix: str) -> None:
    app.router.add_post(prefix + "/responses", functools.partial(_responses, sim))


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _problem(body: Any) -> tuple[str, str | None] | None:
    """What OpenAI would refuse in ``body``: (message, param)."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request.", None
    for name in body:
        if name not in _FIELDS:
            return f"Unknown parameter: '{name}'.", name
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "Missing required parameter: 'model'.", "model"
    if not isinstance(body.get("input"), str | list):
        return "Invalid type for 'input': expected a string or an array of input items.", "input"
    if body.get("previous_response_id") is not None:
        return f"Previous response with id '{body['previous_response_id']}' not found.", "previous_response_id"
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or (tool.get("type") == "function" and not isinstance(tool.get("name"), str)):
            return f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name"
    return None


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation as role/content pairs (what :class:`Plan` counts and echoes)."""
    out: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        out.append({"role": "system", "content": body["instructions"]})
    value = body["input"]
    if isinstance(value, str):
        return [*out, {"role": "user", "content": value}]
    for item in value:
        if not isinstance(item, dict):
            continue
        if "role" in item:
            out.append({"role": item["role"], "content": item.get("content")})
        elif item.get("type") == "function_call_output":
            out.append({"role": "tool", "content": item.get("output")})
    return out


def _usage(p: Plan) -> dict[str, Any]:
    return {
        "input_tokens": p.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": p.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
        "total_tokens": p.total_tokens,
    }


class _Render:
    """One request's answers: the Response and its events, around a fixed response id."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.id = _id("resp")
        self.created_at = now()

    def response(self, p: Plan | None, status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        b = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "model": p.model if p is not None else b["model"],
            "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": b.get("reasoning") or {"effort": None, "summary": None},
            "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0),
            "text": b.get("text") or {"format": {"type": "text"}},
            "tool_choice": b.get("tool_choice", "auto"),
            "tools": b.get("tools") or [],
            "top_p": b.get("top_p", 1.0),
            "truncation": b.get("truncation", "disabled"),
            "usage": None,
            "user": b.get("user"),
            "metadata": b.get("metadata") or {},
            **extra,
        }

    @staticmethod
    def status(p: Plan) -> tuple[str, dict[str, Any] | None]:
        if p.finish_reason == "length":
            return "incomplete", {"reason": "max_output_tokens"}
        if p.finish_reason == "content_filter":
            return "incomplete", {"reason": "content_filter"}
        return "completed", None

    @staticmethod
    def items(p: Plan, status: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if p.reasoning is not None:
            items.append(
                {"type": "reasoning", "id": _id("rs"), "summary": [{"type": "summary_text", "text": p.reasoning}]}
            )
        if p.text is not None or not p.tool_calls:
            part = {"type": "output_text", "text": p.text or "", "annotations": [], "logprobs": []}
            items.append(
                {
                    "type": "message",
                    "id": _id("msg"),
                    "status": "completed" if status == "completed" else "incomplete",
                    "role": "assistant",
                    "content": [part],
                }
            )
        for c in p.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "id": _id("fc"),
                    "call_id": c.id,
                    "name": c.name,
                    "arguments": c.arguments,
                    "status": "completed",
                }
            )
        return items

    def whole(self, p: Plan) -> bytes:
        status, incomplete = self.status(p)
        return orjson.dumps(
            self.response(p, status, self.items(p, status), usage=_usage(p), incomplete_details=incomplete)
        )

    def events(self, p: Plan) -> Stream:
        seq = iter(range(1 << 30))

        def ev(kind: str, **fields: Any) -> bytes:
            data = {"type": kind, "sequence_number": next(seq), **fields}
            return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        status, incomplete = self.status(p)
        start = self.response(p, "in_progress", [])
        out = [ev("response.created", response=start), ev("response.in_progress", response=start)]
        items = self.items(p, status)
        for index, item in enumerate(items):
            at = {"item_id": item["id"], "output_index": index}
            kind = item["type"]
            if kind == "reasoning":
                text = item["summary"][0]["text"]
                out.append(ev("response.output_item.added", output_index=index, item={**item, "summary": []}))
                summary = {"type": "summary_text", "text": ""}
                out.append(ev("response.reasoning_summary_part.added", **at, summary_index=0, part=summary))
                for piece in p.reasoning_pieces:
                    out.append(ev("response.reasoning_summary_text.delta", **at, summary_index=0, delta=piece))
                out.append(ev("response.reasoning_summary_text.done", **at, summary_index=0, text=text))
                summary = {"type": "summary_text", "text": text}
                out.append(ev("response.reasoning_summary_part.done", **at, summary_index=0, part=summary))
            elif kind == "message":
                text = item["content"][0]["text"]
                added = {**item, "status": "in_progress", "content": []}
                out.append(ev("response.output_item.added", output_index=index, item=added))
                part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                out.append(ev("response.content_part.added", **at, content_index=0, part=part))
                for piece in p.pieces:
                    out.append(ev("response.output_text.delta", **at, content_index=0, delta=piece, logprobs=[]))
                out.append(ev("response.output_text.done", **at, content_index=0, text=text, logprobs=[]))
                part = {**part, "text": text}
                out.append(ev("response.content_part.done", **at, content_index=0, part=part))
            else:
                call = next(c for c in p.tool_calls if c.id == item["call_id"])
                added = {**item, "arguments": "", "status": "in_progress"}
                out.append(ev("response.output_item.added", output_index=index, item=added))
                for piece in call.pieces:
                    out.append(ev("response.function_call_arguments.delta", **at, delta=piece))
                out.append(ev("response.function_call_arguments.done", **at, arguments=call.arguments))
            out.append(ev("response.output_item.done", output_index=index, item=item))
        final = self.response(p, status, items, usage=_usage(p), incomplete_details=incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(ev(kind, response=final))
        return Stream(out)

    def failed(self, fault: Fault, seq: int) -> bytes:
        error = {"code": fault.code or "server_error", "message": fault.message or "The server had an error."}
        data = {
            "type": "response.failed",
            "sequence_number": seq,
            "response": self.response(None, "failed", [], error=error),
        }
        return b"event: response.failed\ndata: " + orjson.dumps(data) + b"\n\n"


async def _responses(sim: OpenAISimulator, request: web.Request) -> web.StreamResponse:
    body = request[REC].json
    problem = _problem(body)
    if problem is not None:
        return sim.error_response(request, 400, message=problem[0])
    messages = _messages(body)
    model = body["model"]
    stream = body.get("stream") is True
    render = _Render(body)

    def plan(reply: Reply) -> Plan:
        return Plan.make(reply, messages, model)

    whole: Callable[[Reply], bytes] = lambda r: render.whole(plan(r))  # noqa: E731
    events: Callable[[Reply], Stream] = lambda r: render.events(plan(r))  # noqa: E731
    item = sim._next_item()
    reply = (item.reply if isinstance(item, Fault) else item) or sim.default_reply
    ex = Exchange(sim, request, stream, whole, events, b"", reply)
    if isinstance(item, Fault) and item.kind == "error_frame" and stream:
        resp, _, sent, ok = await ex.open_stream(item.after_chunks or 0)
        if ok:
            await ex.write(resp, render.failed(item, sent))
        return resp
    return await play(ex, item)
