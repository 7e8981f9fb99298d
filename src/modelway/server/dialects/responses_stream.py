"""The Responses event stream of one answer: chat chunks → Responses events, as the official SDK's accumulator and
Codex CLI need them (the reference's state machine, rules 1–8).

* ``response.created`` then ``response.in_progress`` come first, each with a Response snapshot (``in_progress``,
  no output).
* Every output item is announced by ``response.output_item.added`` when its first piece arrives, at the next
  ``output_index`` (0, 1, 2, ... in the order of the announcements), and closed by ``response.output_item.done``
  carrying the whole item, at the end, in ``output_index`` order.
* Reasoning: an item ``{type: reasoning, summary: []}``, ``reasoning_summary_part.added``, then
  ``reasoning_summary_text.delta`` (summary 0). Text: a ``message`` item, ``content_part.added``, then
  ``output_text.delta`` (content 0). Tool calls: a ``function_call`` item per call (keyed by the call's id when
  the chunk gives one, else by its index), ``function_call_arguments.delta``, and at the end
  ``function_call_arguments.done`` and the full ``{type: function_call, call_id, name, arguments}``.
* The end: ``response.completed`` with the whole Response and its usage, or ``response.incomplete`` when the answer
  was cut by its length (``incomplete_details.reason: max_output_tokens``). The response is kept (``store``) before
  that event is sent, so a follow-up with ``previous_response_id`` can come at once.
* A failure after the start: ``response.failed`` with ``response.error {code, message}`` (codes as Codex reads
  them: ``context_length_exceeded``, ``insufficient_quota``, ``rate_limit_exceeded`` with "try again in Ns",
  ``server_error``); never a silent end.
* Every event has a strictly rising ``sequence_number``; frames are ``event: <type>\\ndata: <json>\\n\\n``, no
  ``[DONE]``.

Chunks of a native upstream (OpenAI's own Responses API) carry their frame (``chunk.raw``): those frames go out as
they came, but for ``model`` (the name the caller asked for) in the Response snapshots, and the final
``response.completed``/``response.incomplete`` frame is held until the response is kept.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import (
    AllDeploymentsFailedError,
    ContextLengthError,
    ModelwayError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    StreamError,
)
from ...types import ChatCompletionChunk, ToolCallDelta, Usage
from ..errors import public_message
from .base import StreamRenderer
from .responses_items import (
    ResponseContext,
    function_call_item,
    message_item,
    new_id,
    reasoning_item,
    status_of,
    usage_of,
)

__all__ = ["ResponsesStream", "failure"]

log = logging.getLogger("modelway.server")

_LIFECYCLE = frozenset({"response.created", "response.in_progress", "response.queued"})
_FINAL = frozenset({"response.completed", "response.incomplete"})
_QUOTA_CODES = frozenset({"insufficient_quota", "Arrearage", "budget_exceeded"})


def failure(exc: ModelwayError, *, native: bool = False) -> dict[str, str]:
    """``response.error`` for a failure: ``{code, message}`` with the codes Codex CLI maps."""
    if isinstance(exc, AllDeploymentsFailedError) and exc.attempts:
        last = exc.attempts[-1]
    else:
        last = exc
    message = public_message(exc)
    code = getattr(last, "code", None)
    if isinstance(last, ContextLengthError):
        return {"code": "context_length_exceeded", "message": message}
    if code in _QUOTA_CODES or (isinstance(last, PermissionDeniedError) and code == "insufficient_quota"):
        return {"code": "insufficient_quota", "message": message}
    if isinstance(last, RateLimitError) or code == "rate_limit_exceeded":
        wait = getattr(last, "retry_after", None)
        if wait:
            message = f"{message.rstrip('.')}. Please try again in {max(1, math.ceil(wait))}s."
        return {"code": "rate_limit_exceeded", "message": message}
    if native and isinstance(last, ProviderError) and isinstance(code, str) and code:
        return {"code": code, "message": message}  # OpenAI's own code, from its response.failed
    return {"code": "server_error", "message": message}


@dataclass(slots=True)
class _Item:
    """One output item being streamed."""

    kind: str  # reasoning, message, function_call
    id: str
    index: int
    parts: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    #: the call id came from the provider (not made up here)
    given_id: bool = False
    #: the start of this item's delta frames, up to the delta's value (built once: see ``ResponsesStream._delta``)
    head: bytes = b""

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def whole(self, status: str = "completed") -> dict[str, Any]:
        if self.kind == "reasoning":
            return reasoning_item(self.id, self.text)
        if self.kind == "message":
            return message_item(self.id, self.text, status)
        return function_call_item(self.id, self.call_id, self.name, self.text, status)


def _another(item: _Item, tc: ToolCallDelta) -> bool:
    """Whether ``tc``, though it has the id or the index of ``item``'s call, starts another call: it names a
    function (not only ``item``'s again, with no arguments) when ``item``'s arguments are a whole JSON value."""
    if not tc.name or not item.name or not item.parts or (tc.name == item.name and not tc.arguments):
        return False
    try:
        orjson.loads(item.text)
    except orjson.JSONDecodeError:
        return False
    return True


class ResponsesStream(StreamRenderer):
    """Renders one streamed answer as Responses events (see the module docstring)."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.seq = 0
        self.started = False
        self.items: list[_Item] = []
        self.reasoning: _Item | None = None
        self.message: _Item | None = None
        self.calls_by_id: dict[str, _Item] = {}
        self.calls_by_index: dict[int, _Item] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None
        #: the upstream speaks Responses itself: its frames go out as they came
        self.native = False
        self.final: dict[str, Any] | None = None
        self.done_items: dict[int, dict[str, Any]] = {}

    # -- framing ----------------------------------------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _delta(self, item: _Item, kind: str, extra: str, delta: str) -> bytes:
        """A delta event of ``item``: the hot event of a stream, framed from a prefix built once per item (the same
        JSON as :meth:`_event`'s, ``sequence_number`` last)."""
        head = item.head
        if not head:
            head = item.head = (
                f'event: {kind}\ndata: {{"type":"{kind}","item_id":"{item.id}","output_index":{item.index}{extra},'
                '"delta":'
            ).encode()
        tail = b',"logprobs":[],"sequence_number":' if kind == "response.output_text.delta" else b',"sequence_number":'
        seq = self.seq
        self.seq = seq + 1
        return head + orjson.dumps(delta) + tail + str(seq).encode() + b"}\n\n"

    def _begin(self) -> bytes:
        self.started = True
        snapshot = self.ctx.envelope("in_progress", [])
        return self._event("response.created", response=snapshot) + self._event(
            "response.in_progress", response=snapshot
        )

    def _new(self, kind: str, prefix: str) -> _Item:
        item = _Item(kind, new_id(prefix), len(self.items))
        self.items.append(item)
        return item

    def _whole(self, item: _Item, status: str) -> dict[str, Any]:
        return self.ctx.tagged(item.whole(status))

    # -- chunks -----------------------------------------------------------------------------------------------------
    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        if chunk.raw is not None and (self.native or not self.started):
            self.native = self.started = True
            return self._raw(chunk.raw)
        if self.native:
            return b""  # (every chunk of a native stream carries its frame)
        out = b"" if self.started else self._begin()
        if chunk.usage is not None:
            self.usage = chunk.usage
        for c in chunk.choices:
            if c.index != 0:
                continue  # a Response has one answer
            d = c.delta
            if d.reasoning_content:
                out += self._reasoning(d.reasoning_content)
            if d.content:
                out += self._text(d.content)
            if d.tool_calls:
                for tc in d.tool_calls:
                    out += self._tool(tc)
            if c.finish_reason is not None:
                self.finish = c.finish_reason
        return out

    def _reasoning(self, delta: str) -> bytes:
        out = b""
        item = self.reasoning
        if item is None:
            item = self.reasoning = self._new("reasoning", "rs")
            out += self._event(
                "response.output_item.added",
                output_index=item.index,
                item={"type": "reasoning", "id": item.id, "summary": []},
            )
            out += self._event(
                "response.reasoning_summary_part.added",
                item_id=item.id,
                output_index=item.index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        item.parts.append(delta)
        return out + self._delta(item, "response.reasoning_summary_text.delta", ',"summary_index":0', delta)

    def _open_message(self) -> tuple[_Item, bytes]:
        item = self.message
        if item is not None:
            return item, b""
        item = self.message = self._new("message", "msg")
        out = self._event(
            "response.output_item.added",
            output_index=item.index,
            item={"type": "message", "id": item.id, "role": "assistant", "status": "in_progress", "content": []},
        )
        out += self._event(
            "response.content_part.added",
            item_id=item.id,
            output_index=item.index,
            content_index=0,
            part={"type": "output_text", "text": "", "annotations": []},
        )
        return item, out

    def _text(self, delta: str) -> bytes:
        item, out = self._open_message()
        item.parts.append(delta)
        return out + self._delta(item, "response.output_text.delta", ',"content_index":0', delta)

    def _tool(self, tc: ToolCallDelta) -> bytes:
        given = tc.id or None  # (an empty id, as some servers send on every piece, is no id)
        item = self.calls_by_id.get(given) if given else None
        if item is not None and _another(item, tc):
            item = None  # a second call given the same id
        if item is None:
            same_index = self.calls_by_index.get(tc.index)
            # no id: a later piece of the call at this index; an id first seen at an index whose call had none:
            # that call's id arriving late (the call keeps the id it was announced with); but a function named
            # again once the call's arguments are whole is another call at the same index
            if same_index is not None and (given is None or not same_index.given_id) and not _another(same_index, tc):
                item = same_index
        out = b""
        if item is None:
            item = self._new("function_call", "fc")
            # call ids are unique in a Response (the SDK's accumulator tells items apart by them)
            taken = given is None or given in self.calls_by_id
            item.call_id = new_id("call") if taken else str(given)
            item.given_id = given is not None
            item.name = tc.name or ""
            out += self._event(
                "response.output_item.added",
                output_index=item.index,
                item=self.ctx.tagged(function_call_item(item.id, item.call_id, item.name, "", "in_progress")),
            )
        self.calls_by_index[tc.index] = item
        if given:
            self.calls_by_id[given] = item  # (its later pieces go to the latest call given this id)
        if tc.name and not item.name:
            item.name = tc.name
        if tc.arguments:
            item.parts.append(tc.arguments)
            out += self._delta(item, "response.function_call_arguments.delta", "", tc.arguments)
        return out

    # -- the end ----------------------------------------------------------------------------------------------------
    def _close(self, item: _Item, status: str) -> bytes:
        at = {"item_id": item.id, "output_index": item.index}
        text = item.text
        if item.kind == "reasoning":
            out = self._event("response.reasoning_summary_text.done", **at, summary_index=0, text=text)
            out += self._event(
                "response.reasoning_summary_part.done",
                **at,
                summary_index=0,
                part={"type": "summary_text", "text": text},
            )
        elif item.kind == "message":
            out = self._event("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
            out += self._event(
                "response.content_part.done",
                **at,
                content_index=0,
                part={"type": "output_text", "text": text, "annotations": []},
            )
        else:
            out = self._event("response.function_call_arguments.done", **at, name=item.name, arguments=text)
        return out + self._event("response.output_item.done", output_index=item.index, item=self._whole(item, status))

    async def end(self) -> bytes:
        if self.native:
            return await self._native_end()
        out = b"" if self.started else self._begin()
        if not self.items:
            out += self._open_message()[1]  # an answer with nothing in it is one empty message, as OpenAI's
        status, incomplete = status_of(self.finish)
        item_status = "incomplete" if status == "incomplete" else "completed"
        for item in self.items:
            out += self._close(item, item_status)
        output = [self._whole(item, item_status) for item in self.items]
        body = self.ctx.envelope(status, output, usage_of(self.usage), incomplete=incomplete)
        self.ctx.prepare(body)
        await self.ctx.keep()
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, response=body)

    def error(self, exc: ModelwayError, request_id: str | None) -> bytes:
        out = b"" if self.started else self._begin()
        output = [self._whole(item, "incomplete") for item in self.items]
        if self.native:
            output = [self.done_items[i] for i in sorted(self.done_items)]
        err = failure(exc, native=self.native)
        body = self.ctx.envelope("failed", output, usage_of(self.usage), error=err)
        log.error("request %s failed mid-stream: %s", request_id, exc)
        return out + self._event("response.failed", response=body)

    # -- a native upstream ------------------------------------------------------------------------------------------
    def _raw(self, frame: bytes) -> bytes:
        data = b"\n".join(line[6:] for line in frame.split(b"\n") if line.startswith(b"data: "))
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return frame
        if not isinstance(event, dict):
            return frame
        seq = event.get("sequence_number")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.seq = max(self.seq, seq + 1)
        kind = event.get("type")
        response = event.get("response")
        if kind == "response.output_item.done" and isinstance(event.get("item"), dict):
            index = event.get("output_index")
            self.done_items[index if isinstance(index, int) else len(self.done_items)] = event["item"]
        if not isinstance(response, dict) or not (kind in _LIFECYCLE or kind in _FINAL):
            return frame
        self.ctx.native(response)
        if kind in _FINAL:
            self.final = event  # sent once the response is kept
            return b""
        return b"event: " + str(kind).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    async def _native_end(self) -> bytes:
        final = self.final
        if final is None:
            return self.error(StreamError("the upstream's stream ended before response.completed"), None)
        body: dict[str, Any] = final["response"]
        if body.get("output") is None:
            body["output"] = [self.done_items[i] for i in sorted(self.done_items)]
        self.ctx.prepare(body)
        await self.ctx.keep()
        if not isinstance(final.get("sequence_number"), int):
            final["sequence_number"] = self.seq
        self.seq += 1
        return b"event: " + str(final["type"]).encode() + b"\ndata: " + orjson.dumps(final) + b"\n\n"
