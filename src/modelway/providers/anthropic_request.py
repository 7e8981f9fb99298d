"""OpenAI chat requests → Anthropic Messages request bodies (for :mod:`modelway.providers.anthropic`), and the
caller's own Messages body sent natively (:class:`AnthropicNativeBody`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import InvalidRequestError
from ..types import ChatRequest, Message, NativeBody

__all__ = [
    "NATIVE_API",
    "THINKING_BUDGETS",
    "AnthropicNativeBody",
    "native_of",
    "native_payload",
    "thinking_for",
    "tool",
    "tool_choice",
    "translate_messages",
]

#: the ``NativeBody.api`` this adapter sends as it came
NATIVE_API = "anthropic.messages"
#: ``reasoning_effort`` → ``thinking.budget_tokens`` (Anthropic's minimum budget is 1024)
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 65536,
}
_MIN_BUDGET = 1024
#: what Anthropic accepts as a tool_use id (``tool_use.id``, ``tool_result.tool_use_id``)
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")


def tool_id(call_id: str) -> str:
    """A tool call id Anthropic accepts: ``call_id`` itself when it does, else the same id every time for the same
    ``call_id`` (its other characters replaced, a hash of it appended so distinct ids stay distinct). Another
    provider's ids (Kimi's ``functions.get_weather:0``) come back in the history of a model group that fails over."""
    if not call_id or _TOOL_ID.fullmatch(call_id):
        return call_id
    return _NOT_TOOL_ID.sub("_", call_id)[:200] + "_" + hashlib.sha256(call_id.encode()).hexdigest()[:12]


@dataclass(slots=True)
class AnthropicNativeBody(NativeBody):
    """A Messages request body as the caller sent it, with the caller's ``anthropic-beta`` header."""

    beta: str | None = None


def native_of(req: ChatRequest) -> NativeBody | None:
    native = req.native
    return native if native is not None and native.api == NATIVE_API else None


def thinking_for(effort: Any, max_tokens: int) -> dict[str, Any] | None:
    """``thinking`` for a ``reasoning_effort``: a budget below ``max_tokens`` (Anthropic's rule), or ``None`` (no
    thinking: ``none``, an unknown value, or no room for the minimum budget)."""
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if not budget:
        return None
    budget = min(budget, max_tokens - 1)
    return {"type": "enabled", "budget_tokens": budget} if budget >= _MIN_BUDGET else None


def native_payload(req: ChatRequest, body: dict[str, Any]) -> dict[str, Any]:
    """The caller's own body: the deployment's model, ``stream`` as asked; the model group's default system prompt
    when the caller gave no system text."""
    out = {**body, "model": req.model}
    if isinstance(body.get("messages"), list):
        out["messages"] = _safe_tool_ids(body["messages"])
    out.pop("stream", None)
    if req.stream:
        out["stream"] = True
    msgs = body.get("messages")
    first = req.messages[0] if req.messages else None
    inline = isinstance(msgs, list) and any(
        isinstance(m, dict) and m.get("role") in ("system", "developer") for m in msgs
    )
    if first and first.get("role") == "system" and "system" not in body and not inline:
        out["system"] = first.get("content")
    return out


def _safe_tool_ids(messages: list[Any]) -> list[Any]:
    """``messages`` with each tool id Anthropic would refuse made safe (:func:`tool_id`); the list itself when none
    is (the caller's body is sent as it came)."""
    out = messages
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        blocks = content
        for j, b in enumerate(content):
            if not isinstance(b, dict):
                continue
            key = "id" if b.get("type") == "tool_use" else "tool_use_id" if b.get("type") == "tool_result" else None
            value = b.get(key) if key else None
            if key and isinstance(value, str) and tool_id(value) != value:
                if blocks is content:
                    blocks = list(content)
                blocks[j] = {**b, key: tool_id(value)}
        if blocks is not content:
            if out is messages:
                out = list(messages)
            out[i] = {**m, "content": blocks}
    return out


# -- OpenAI messages → Anthropic ------------------------------------------------------------------


def translate_messages(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI messages → (Anthropic ``system``, Anthropic ``messages``)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            text = _text(m.get("content"))
            if text:
                system.append(text)
            continue
        if role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": tool_id(str(m.get("tool_call_id") or "")),
                "content": _text(m.get("content")),
            }
            _append(out, "user", [block])
        elif role == "assistant":
            blocks = _content_blocks(m.get("content"))
            for tc in m.get("tool_calls") or ():
                fn = tc.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": tool_id(str(tc.get("id") or "")),
                        "name": str(fn.get("name") or ""),
                        "input": _arguments(fn.get("arguments")),
                    }
                )
            _append(out, "assistant", blocks)
        else:
            _append(out, "user", _content_blocks(m.get("content")))
    return ("\n\n".join(system) if system else None), out


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add a turn; consecutive turns of one role are merged (Anthropic wants user/assistant alternating)."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        prev = out[-1]["content"]
        if isinstance(prev, str):
            prev = [{"type": "text", "text": prev}]
        out[-1]["content"] = prev + blocks
        return
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        out.append({"role": role, "content": blocks[0]["text"]})
    else:
        out.append({"role": role, "content": blocks})


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) → Anthropic content blocks (empty text is dropped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str):
                blocks.append({"type": "image", "source": _image_source(url)})
        else:  # already an Anthropic block (image, document, ...)
            blocks.append(part)
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media, "data": data}
    return {"type": "url", "url": url}


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return str(content)


def _arguments(args: Any) -> Any:
    """Tool call arguments (a JSON string) → the ``input`` object; not JSON: kept under ``"arguments"``."""
    if isinstance(args, dict):
        return args
    if not args:
        return {}
    try:
        value = orjson.loads(args)
    except (orjson.JSONDecodeError, TypeError):
        return {"arguments": args}
    return value if isinstance(value, dict) else {"arguments": value}


def tool(t: dict[str, Any]) -> dict[str, Any]:
    if t.get("type") not in (None, "function") or "function" not in t:
        return t  # an Anthropic tool already (server tools, or {name, input_schema})
    fn = t["function"]
    tool: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        tool["description"] = fn["description"]
    tool["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return tool


def tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        return dict(choice)  # an Anthropic tool_choice already
    raise InvalidRequestError(f"unsupported tool_choice {choice!r}", param="tool_choice")
