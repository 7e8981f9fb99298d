"""Responses API items and Chat Completions messages, both ways, and the Response being made (its id, the request
fields it echoes, where it is kept).

Input items → chat messages (the common core of the gateways that bridge Responses to chat): messages keep their
role (``developer`` → ``system``); ``input_text``/``output_text`` parts become text (a content made only of text
becomes one string: parts joined with a newline, an assistant's joined as they are), ``input_image`` an
``image_url`` part, ``input_file`` a ``file`` part, ``input_audio`` passes; consecutive ``function_call`` items
(and those right after an assistant message) become one assistant message with ``tool_calls``;
``function_call_output`` a ``tool`` message; a ``reasoning`` item becomes ``reasoning_content`` on the assistant
message that follows it (DeepSeek's thinking mode needs it back in tool loops).

Chat answers → output items: ``reasoning`` (its text as summary 0), one ``message`` with one ``output_text`` part,
then one ``function_call`` item per tool call.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidRequestError
from ...store.responses import ResponseStore, StoredResponse
from ...types import ChatCompletion, Message, Usage
from ...validate import json_kind

__all__ = [
    "ResponseContext",
    "completion_output",
    "field_error",
    "function_call_item",
    "input_items",
    "kind_of",
    "message_item",
    "new_id",
    "reasoning_item",
    "replay",
    "status_of",
    "to_messages",
    "usage_of",
    "with_ids",
]

_ROLES = frozenset({"user", "assistant", "system", "developer"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def kind_of(v: Any) -> str:
    """The JSON type of ``v``, for messages."""
    return json_kind(v)


def field_error(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param} {message}", param=param)


def _text_of(parts: Any, sep: str) -> str:
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return ""
    texts = [p.get("text") or p.get("refusal") or "" for p in parts if isinstance(p, dict)]
    return sep.join(t for t in texts if isinstance(t, str))


# -- the caller's input ---------------------------------------------------------------------------------------------


def input_items(value: Any, *, native_ok: bool) -> list[dict[str, Any]]:
    """The caller's ``input`` as a list of items, each checked (errors name ``input[i]...``). A string is one user
    message. Item types other than messages, function calls and their outputs, and reasoning are refused unless
    every upstream of the model is OpenAI's own Responses API (``native_ok``)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise field_error("input", f"must be a string or an array of input items, not {kind_of(value)}")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise field_error(at, f"must be an input item object, not {kind_of(item)}")
        kind = item.get("type")
        if kind is None and "role" in item:
            item = {**item, "type": "message"}
            kind = "message"
        if not isinstance(kind, str):
            raise field_error(
                f"{at}.type", f"must be a string such as 'message' or 'function_call', not {kind_of(kind)}"
            )
        if kind == "message":
            _check_message(item, at, native_ok)
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise field_error(f"{at}.{key}", f"must be a string, not {kind_of(item.get(key))}")
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise field_error(f"{at}.call_id", f"must be a string, not {kind_of(item.get('call_id'))}")
            output = item.get("output")
            if isinstance(output, list):
                _check_parts(output, f"{at}.output", native_ok)
            elif not isinstance(output, str):
                raise field_error(
                    f"{at}.output", f"must be a string or an array of content parts, not {kind_of(output)}"
                )
        elif kind == "reasoning":
            for key in ("summary", "content"):
                v = item.get(key)
                if v is not None and not isinstance(v, list):
                    raise field_error(f"{at}.{key}", f"must be an array, not {kind_of(v)}")
        elif not native_ok:
            raise field_error(
                f"{at}.type",
                f"{kind!r} items are not supported: this model is not served by OpenAI's own Responses API (messages, "
                "function_call, function_call_output and reasoning items are)",
            )
        out.append(item)
    if not out:
        raise field_error("input", "must not be empty")
    return out


def _check_message(item: dict[str, Any], at: str, native_ok: bool) -> None:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        shown = repr(role) if isinstance(role, str) else kind_of(role)
        raise field_error(f"{at}.role", f"must be one of user, assistant, system, developer (got {shown[:40]})")
    content = item.get("content")
    if isinstance(content, list):
        _check_parts(content, f"{at}.content", native_ok)
    elif not isinstance(content, str):
        raise field_error(f"{at}.content", f"must be a string or an array of content parts, not {kind_of(content)}")


def _check_parts(parts: list[Any], at: str, native_ok: bool) -> None:
    for j, part in enumerate(parts):
        here = f"{at}[{j}]"
        if not isinstance(part, dict):
            raise field_error(here, f"must be a content part object, not {kind_of(part)}")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise field_error(f"{here}.text", f"must be a string, not {kind_of(part.get('text'))}")
        elif kind == "refusal":
            if not isinstance(part.get("refusal"), str):
                raise field_error(f"{here}.refusal", f"must be a string, not {kind_of(part.get('refusal'))}")
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) and not native_ok:
                raise field_error(
                    f"{here}.image_url", "is required (an https or data: URL); file_id images are not supported"
                )
        elif kind == "input_file":
            if part.get("file_url") is not None and not native_ok:
                raise field_error(f"{here}.file_url", "is not supported: send the file as file_data (or a file_id)")
        elif kind == "input_audio":
            if not isinstance(part.get("input_audio"), dict):
                raise field_error(f"{here}.input_audio", f"must be an object, not {kind_of(part.get('input_audio'))}")
        elif not native_ok:
            raise field_error(
                f"{here}.type", f"must be input_text, input_image, input_file or input_audio (got {kind!r:.40})"
            )


def with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as they are kept and listed (``input_items``): each with an id, messages with content parts
    and a status."""
    out: list[dict[str, Any]] = []
    for item in items:
        item = dict(item)
        kind = item.get("type")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [
                    {"type": part, "text": content, **({"annotations": []} if part == "output_text" else {})}
                ]
            item.setdefault("status", "completed")
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
        if not item.get("id"):
            item["id"] = new_id(prefix.get(str(kind), "item"))
        out.append(item)
    return out


def replay(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kept items (a stored response's input, then its output) as input items OpenAI takes back with ``store:
    false``: no ids that name stored items (the assistant's text as an easy message), reasoning only when it carries
    ``encrypted_content``; items of other types (built-in tool calls) are left out."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            content = item.get("content")
            if role == "assistant":
                out.append({"type": "message", "role": "assistant", "content": _text_of(content, "")})
            else:
                out.append({"type": "message", "role": role, "content": content})
        elif kind == "function_call":
            out.append({k: item[k] for k in ("type", "call_id", "name", "namespace", "arguments") if k in item})
        elif kind == "function_call_output":
            out.append({k: item[k] for k in ("type", "call_id", "output") if k in item})
        elif kind == "reasoning" and item.get("encrypted_content"):
            out.append({k: item[k] for k in ("type", "id", "summary", "content", "encrypted_content") if k in item})
    return out


# -- items → chat messages ------------------------------------------------------------------------------------------


def to_messages(items: list[dict[str, Any]]) -> list[Message]:
    """Checked input items (see :func:`input_items`; others are skipped) → chat messages."""
    msgs: list[Message] = []
    reasoning: str | None = None  # waiting for the assistant message that follows it
    assistant: Message | None = None  # the one function calls join
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item["role"]
            if role == "assistant":
                m: Message = {"role": "assistant", "content": _text_of(item.get("content"), "")}
                if reasoning is not None:
                    m["reasoning_content"], reasoning = reasoning, None
                msgs.append(m)
                assistant = m
            else:
                msgs.append({"role": "system" if role == "developer" else role, "content": _content(item["content"])})
                assistant = reasoning = None
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if assistant is None:
                assistant = {"role": "assistant", "content": None, "tool_calls": []}
                if reasoning is not None:
                    assistant["reasoning_content"], reasoning = reasoning, None
                msgs.append(assistant)
            assistant.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = item.get("output")
            msgs.append({"role": "tool", "tool_call_id": item["call_id"], "content": _content(output)})
            assistant = None
        elif kind == "reasoning":
            text = _text_of(item.get("content"), "") or "\n\n".join(
                s["text"] for s in item.get("summary") or () if isinstance(s, dict) and isinstance(s.get("text"), str)
            )
            reasoning = text if reasoning is None else reasoning + text
            assistant = None
    return msgs


def _content(content: Any) -> Any:
    """Message content in chat's terms: one string when it is all text, else chat content parts."""
    if isinstance(content, str):
        return content
    parts = [q for q in (_part(p) for p in content if isinstance(p, dict)) if q is not None]
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _part(p: dict[str, Any]) -> dict[str, Any] | None:
    kind = p.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": p["text"]}
    if kind == "refusal":
        return {"type": "text", "text": p["refusal"]}
    if kind == "input_image":
        if not isinstance(p.get("image_url"), str):
            return None  # (a file_id image: for OpenAI itself only, which gets the item as it came)
        image: dict[str, Any] = {"url": p["image_url"]}
        if p.get("detail") not in (None, "auto"):
            image["detail"] = p["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        return {"type": "file", "file": {k: p[k] for k in ("filename", "file_data", "file_id") if p.get(k) is not None}}
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": p["input_audio"]}
    return None


# -- output ---------------------------------------------------------------------------------------------------------


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id, "summary": [{"type": "summary_text", "text": text}]}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def status_of(finish_reason: str | None) -> tuple[str, dict[str, Any] | None]:
    """The Response's ``status`` and ``incomplete_details`` for a chat finish reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def completion_output(resp: ChatCompletion) -> tuple[list[dict[str, Any]], str | None]:
    """A whole chat answer's output items, and its finish reason."""
    if not resp.choices:
        return [message_item(new_id("msg"), "")], None
    choice = resp.choices[0]
    m = choice.message
    status, _ = status_of(choice.finish_reason)
    items: list[dict[str, Any]] = []
    if m.reasoning_content:
        items.append(reasoning_item(new_id("rs"), m.reasoning_content))
    calls = m.tool_calls or []
    if m.content or not calls:
        items.append(
            message_item(new_id("msg"), m.content or "", "incomplete" if status == "incomplete" else "completed")
        )
    seen: set[str] = set()
    for tc in calls:
        call_id = tc.id if tc.id and tc.id not in seen else new_id("call")  # (unique in a Response)
        seen.add(call_id)
        items.append(function_call_item(new_id("fc"), call_id, tc.function.name, tc.function.arguments))
    return items, choice.finish_reason


def usage_of(u: Usage | None) -> dict[str, Any] | None:
    """Chat usage → Responses usage (whole numbers, details always present)."""
    if u is None:
        return None
    cached = (u.prompt_tokens_details or {}).get("cached_tokens") or 0
    reasoning = (u.completion_tokens_details or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": int(cached)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": u.total_tokens,
    }


# -- the Response ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ResponseContext:
    """One response being made: its id, the request fields the Response echoes, and where it is kept."""

    id: str
    created_at: int
    model: str
    #: request fields a Response echoes (instructions, tools, tool_choice, text, metadata, store, ...)
    echo: dict[str, Any]
    #: this request's own input items, with ids (kept for ``input_items``)
    input: list[dict[str, Any]]
    previous_id: str | None = None
    key_id: str | None = None
    #: where the response is kept (``None``: ``store: false``)
    keeper: ResponseStore | None = None
    #: the name of each function of a ``namespace`` tool → its namespace (its calls say so, as OpenAI's do)
    namespaces: dict[str, str] = field(default_factory=dict)
    #: the Response sent (set when it is built), and what to keep of it
    body: dict[str, Any] = field(default_factory=dict)
    record: StoredResponse | None = None
    data: bytes | None = None

    def tagged(self, item: dict[str, Any]) -> dict[str, Any]:
        """An output item, a call of a namespace tool's function naming its ``namespace``."""
        if item.get("type") == "function_call" and item.get("name") in self.namespaces:
            item["namespace"] = self.namespaces[item["name"]]
        return item

    def envelope(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        *,
        incomplete: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
            "error": error,
            "incomplete_details": incomplete,
            **self.echo,
        }

    def native(self, response: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's own Response (sent ``store: false``, without ``previous_response_id``) as the caller sees it:
        the model it asked for, its ``previous_response_id`` and ``store``; its id and time are OpenAI's."""
        response["model"] = self.model
        response["previous_response_id"] = self.previous_id
        response["store"] = self.echo["store"]
        if isinstance(response.get("id"), str):
            self.id = response["id"]
        if isinstance(response.get("created_at"), int | float):
            self.created_at = int(response["created_at"])
        return response

    def prepare(self, body: dict[str, Any]) -> None:
        """The finished Response ``body``: when it is to be kept and fits, note what to keep; when it does not fit
        it is sent with ``store: false``."""
        self.body = body
        if self.keeper is None:
            return
        rec = StoredResponse(
            self.id, self.key_id, float(self.created_at), self.previous_id, self.input, body.get("output") or [], body
        )
        data = self.keeper.encode(rec)
        if data is None:
            body["store"] = False
            return
        self.record, self.data = rec, data

    async def keep(self) -> None:
        """Keep the prepared response (before the caller hears that it is complete)."""
        if self.keeper is not None and self.record is not None and self.data is not None:
            await self.keeper.put(self.record, self.data)
