"""An Anthropic Messages request → the internal chat request (OpenAI shape), for upstreams that do not speak it.

Every problem raises :class:`~modelway.errors.InvalidRequestError` naming the field by its Anthropic path
(``messages[2].content[0].source.type``). See :mod:`.anthropic` for the top-level fields and what becomes of them.

Messages:

* ``system`` (a string or text blocks) and system/developer text found *inside* ``messages`` (Claude Code's
  mid-conversation system messages) become one system message at the front, in the order they came.
* user blocks: ``text`` → text; ``image`` → ``image_url`` (base64 → a data URL, url → the URL); ``document`` →
  its text (plain-text and content sources) or a ``file`` part (a base64 PDF); ``tool_result`` → a ``tool``
  message (text of its content; ``is_error`` noted as ``[tool error]``; its images go to the user message that
  follows; a ``tool_reference``, Claude Code's ToolSearch loading a deferred tool, as a line naming the tool: a chat
  model has every tool's schema), placed before the user text of the same turn.
* assistant blocks: ``text`` → content; ``tool_use`` → ``tool_calls`` (input as a JSON string); ``thinking`` →
  ``reasoning_content`` (so thinking-mode upstreams get it back in tool loops); ``redacted_thinking`` dropped.
* Text blocks of one user or system turn are joined with a blank line, an assistant's with nothing (one answer).
  ``cache_control`` is ignored; other block types are refused, unless every deployment is Anthropic (then the
  upstream gets the caller's body as it came and the translation only serves estimates).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import InvalidRequestError
from ...types import Message
from ...usage.estimate import estimate_tokens, prompt_chars

__all__ = ["Translation", "is_our_signature", "signature", "translate", "without_our_thinking"]

#: fields translated for a non-Anthropic upstream
TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)
#: fields Anthropic documents that only an Anthropic upstream can use: accepted, sent natively, else not sent
IGNORED = frozenset(
    {
        "cache_control",
        "service_tier",
        "inference_geo",
        "speed",
        "container",
        "diagnostics",
        "context_management",
        "user_profile_id",
        "workspace_id",
    }
)
#: fields that only an Anthropic upstream can honour, and whose loss would change the answer: refused otherwise
NATIVE_ONLY = frozenset({"mcp_servers"})

_SIGNATURE_PREFIX = "modelway."
#: ``thinking.budget_tokens`` → ``reasoning_effort``: below 4096 low, below 16384 medium, else high
_LOW_BELOW = 4096
_MEDIUM_BELOW = 16384
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})


def signature(thinking: str) -> str:
    """The signature of a thinking block an upstream gave without one (recognised by :func:`is_our_signature`)."""
    return _SIGNATURE_PREFIX + hashlib.sha256(thinking.encode()).hexdigest()[:40]


def is_our_signature(sig: Any) -> bool:
    return isinstance(sig, str) and sig.startswith(_SIGNATURE_PREFIX)


@dataclass(slots=True)
class Translation:
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def input_estimate(self) -> int:
        """Estimated input tokens: the messages' text, plus the tools as JSON."""
        ascii_chars, other = prompt_chars(self.messages)
        tools = self.params.get("tools")
        if tools:
            text = orjson.dumps(tools).decode()
            if text.isascii():
                ascii_chars += len(text)
            else:
                other += len(text)
        return estimate_tokens(ascii_chars, other)


def _fail(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(v), "an object" if isinstance(v, dict) else type(v).__name__
    )


def translate(data: dict[str, Any], *, native: bool, require_max_tokens: bool = True) -> Translation:
    """``data`` (a Messages request body) → messages and parameters. ``native``: every deployment is Anthropic,
    so what cannot be translated is left out rather than refused (the upstream gets ``data`` itself)."""
    for key in data:
        if key not in TRANSLATED and key not in IGNORED and key not in NATIVE_ONLY:
            raise _fail(key[:64], "unknown field (this gateway serves the Anthropic Messages API)")
        if key in NATIVE_ONLY and not native and data[key]:
            raise _fail(key, "is served only when the model's upstream is Anthropic")
    out = Translation(_messages(data.get("messages"), data.get("system"), native))
    p = out.params
    max_tokens = data.get("max_tokens")
    if max_tokens is None and require_max_tokens:
        raise _fail("max_tokens", "Field required")
    if max_tokens is not None:
        p["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if data.get(name) is not None:
            p[name] = data[name]
    if data.get("top_k") is not None:
        top_k = data["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise _fail("top_k", "must be a non-negative integer")
        out.extra["top_k"] = top_k
    stops = data.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _fail("stop_sequences", "must be an array of strings")
        if stops:
            p["stop"] = stops
    metadata = data.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _fail("metadata", f"must be an object, not {_kind(metadata)}")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise _fail("metadata.user_id", f"must be a string, not {_kind(user)}")
        if user:
            p["user"] = user
    tools = _tools(data.get("tools"), native)
    if tools:
        p["tools"] = tools
        _tool_choice(data.get("tool_choice"), p)
    elif data.get("tool_choice") is not None:
        _tool_choice(data["tool_choice"], {})  # checked; meaningless without (translatable) tools
    _reasoning(data.get("thinking"), data.get("output_config"), p)
    return out


# -- messages ---------------------------------------------------------------------------------------------------


def _messages(raw: Any, system: Any, native: bool) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise _fail("messages", "at least one message is required")
    systems: list[str] = []
    if system is not None:
        text = _system_text(system, "system")
        if text:
            systems.append(text)
    out: list[Message] = []
    for i, m in enumerate(raw):
        at = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _fail(at, f"must be an object, not {_kind(m)}")
        role = m.get("role")
        content = m.get("content")
        if role in ("system", "developer"):
            text = _system_text(content, f"{at}.content")
            if text:
                systems.append(text)
        elif role == "user":
            out.extend(_user(content, f"{at}.content", native))
        elif role == "assistant":
            out.append(_assistant(content, f"{at}.content", native))
        else:
            raise _fail(f"{at}.role", f"must be 'user', 'assistant' or 'system' (got {role!r:.40})")
    if systems:
        out.insert(0, {"role": "system", "content": "\n\n".join(systems)})
    return out


def _blocks(content: Any, at: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise _fail(at, f"must be a string or an array of content blocks, not {_kind(content)}")
    for j, b in enumerate(content):
        if not isinstance(b, dict):
            raise _fail(f"{at}[{j}]", f"must be a content block object, not {_kind(b)}")
        if not isinstance(b.get("type"), str):
            raise _fail(f"{at}[{j}].type", "is required (a string such as 'text')")
    return content


def _string(block: dict[str, Any], key: str, at: str) -> str:
    v = block.get(key)
    if not isinstance(v, str):
        raise _fail(f"{at}.{key}", f"must be a string, not {_kind(v)}")
    return v


def _system_text(content: Any, at: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, b in enumerate(_blocks(content, at)):
        if b["type"] != "text":
            raise _fail(f"{at}[{j}].type", f"must be 'text' in a system prompt (got {b['type']!r:.40})")
        texts.append(_string(b, "text", f"{at}[{j}]"))
    return "\n\n".join(t for t in texts if t)


def _unsupported(kind: str, at: str) -> InvalidRequestError:
    return _fail(
        f"{at}.type",
        f"content blocks of type {kind!r:.60} are served only when the model's upstream is Anthropic",
    )


def _user(content: Any, at: str, native: bool) -> list[Message]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[Message] = []
    parts: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []  # images of tool results, sent with the user message that follows them
    for j, b in enumerate(_blocks(content, at)):
        here = f"{at}[{j}]"
        kind = b["type"]
        if kind == "text":
            text = _string(b, "text", here)
            if text:
                parts.append({"type": "text", "text": text})
        elif kind == "image":
            parts.append(_image(b, here, native))
        elif kind == "document":
            parts.append(_document(b, here, native))
        elif kind == "tool_result":
            tools.append(_tool_result(b, here, late, native))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        elif not native:
            raise _unsupported(kind, here)
    parts = [p for p in late + parts if p]
    if not parts:
        return tools if tools else [{"role": "user", "content": ""}]
    if all(p["type"] == "text" for p in parts):
        return [*tools, {"role": "user", "content": "\n\n".join(p["text"] for p in parts)}]
    return [*tools, {"role": "user", "content": parts}]


def _image(b: dict[str, Any], at: str, native: bool) -> dict[str, Any]:
    source = b.get("source")
    if not isinstance(source, dict):
        raise _fail(f"{at}.source", f"must be an object, not {_kind(source)}")
    kind = source.get("type")
    if kind == "base64":
        media = _string(source, "media_type", f"{at}.source")
        data = _string(source, "data", f"{at}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        return {"type": "image_url", "image_url": {"url": _string(source, "url", f"{at}.source")}}
    if native:
        return {}
    raise _fail(f"{at}.source.type", f"must be 'base64' or 'url' (got {kind!r:.40}); files need an Anthropic model")


def _document(b: dict[str, Any], at: str, native: bool) -> dict[str, Any]:
    source = b.get("source")
    if not isinstance(source, dict):
        raise _fail(f"{at}.source", f"must be an object, not {_kind(source)}")
    kind = source.get("type")
    title = b.get("title") if isinstance(b.get("title"), str) else None
    if kind == "text":
        text = _string(source, "data", f"{at}.source")
        return {"type": "text", "text": f"{title}\n\n{text}" if title else text}
    if kind == "content":
        inner = source.get("content")
        text = inner if isinstance(inner, str) else _system_text(inner, f"{at}.source.content")
        return {"type": "text", "text": f"{title}\n\n{text}" if title else text}
    if kind == "base64":
        media = _string(source, "media_type", f"{at}.source")
        data = _string(source, "data", f"{at}.source")
        name = title or ("document.pdf" if media == "application/pdf" else "document")
        return {"type": "file", "file": {"filename": name, "file_data": f"data:{media};base64,{data}"}}
    if native:
        return {}
    raise _fail(
        f"{at}.source.type",
        f"documents with a {kind!r:.40} source are served only when the model's upstream is Anthropic "
        "(send the text, or the PDF as base64)",
    )


def _tool_result(b: dict[str, Any], at: str, late: list[dict[str, Any]], native: bool) -> Message:
    call_id = _string(b, "tool_use_id", at)
    content = b.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for j, inner in enumerate(_blocks(content, f"{at}.content")):
            here = f"{at}.content[{j}]"
            if inner["type"] == "text":
                texts.append(_string(inner, "text", here))
            elif inner["type"] == "image":
                late.append(_image(inner, here, native))
            elif inner["type"] == "document":
                part = _document(inner, here, native)
                if part.get("type") == "text":
                    texts.append(part["text"])
                elif part:
                    late.append(part)
            elif inner["type"] == "tool_reference":  # Claude Code's ToolSearch: a deferred tool it loaded
                texts.append(f"Tool loaded: {_string(inner, 'tool_name', here)}")
            elif not native:
                raise _unsupported(inner["type"], here)
    text = "\n\n".join(t for t in texts if t)
    if b.get("is_error") is True:
        text = "[tool error] " + text if text else "[tool error]"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant(content: Any, at: str, native: bool) -> Message:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, b in enumerate(_blocks(content, at)):
        here = f"{at}[{j}]"
        kind = b["type"]
        if kind == "text":
            texts.append(_string(b, "text", here))
        elif kind == "tool_use":
            name = _string(b, "name", here)
            call_id = _string(b, "id", here)
            args = b.get("input", {})
            if not isinstance(args, dict):
                raise _fail(f"{here}.input", f"must be an object, not {_kind(args)}")
            arguments = orjson.dumps(args).decode()
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        elif kind == "thinking":
            thoughts.append(_string(b, "thinking", here))
        elif kind == "redacted_thinking":
            continue
        elif not native:
            raise _unsupported(kind, here)
    msg: Message = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    if thoughts:
        msg["reasoning_content"] = "".join(thoughts)
    return msg


# -- tools and reasoning ----------------------------------------------------------------------------------------


def _tools(raw: Any, native: bool) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _fail("tools", f"must be an array of tools, not {_kind(raw)}")
    out = []
    for i, t in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(t, dict):
            raise _fail(at, f"must be a tool object, not {_kind(t)}")
        kind = t.get("type")
        if kind not in (None, "custom"):
            if native:
                continue
            raise _fail(
                f"{at}.type",
                f"{kind!r:.60} is an Anthropic server tool: it runs only when the model's upstream is Anthropic "
                "(define a client tool with name, description and input_schema instead)",
            )
        name = _string(t, "name", at)
        schema = t.get("input_schema", {"type": "object", "properties": {}})
        if not isinstance(schema, dict):
            raise _fail(f"{at}.input_schema", f"must be a JSON schema object, not {_kind(schema)}")
        fn: dict[str, Any] = {"name": name}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        fn["parameters"] = schema
        if isinstance(t.get("strict"), bool):
            fn["strict"] = t["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, p: dict[str, Any]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise _fail("tool_choice", f"must be an object such as {{'type': 'auto'}}, not {_kind(choice)}")
    kind = choice.get("type")
    if kind == "auto":
        p["tool_choice"] = "auto"
    elif kind == "any":
        p["tool_choice"] = "required"
    elif kind == "none":
        p["tool_choice"] = "none"
    elif kind == "tool":
        p["tool_choice"] = {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    else:
        raise _fail("tool_choice.type", f"must be 'auto', 'any', 'tool' or 'none' (got {kind!r:.40})")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        p["parallel_tool_calls"] = False


def _reasoning(thinking: Any, output_config: Any, p: dict[str, Any]) -> None:
    """``thinking`` (enabled with a budget, or disabled) → ``reasoning_effort``; else ``output_config.effort``."""
    if thinking is not None and not isinstance(thinking, dict):
        raise _fail("thinking", f"must be an object such as {{'type': 'enabled'}}, not {_kind(thinking)}")
    if output_config is not None and not isinstance(output_config, dict):
        raise _fail("output_config", f"must be an object, not {_kind(output_config)}")
    kind = (thinking or {}).get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens") if thinking else None
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise _fail("thinking.budget_tokens", "must be a positive integer")
        p["reasoning_effort"] = "low" if budget < _LOW_BELOW else "medium" if budget < _MEDIUM_BELOW else "high"
    elif kind == "disabled":
        p["reasoning_effort"] = "none"
    effort = (output_config or {}).get("effort")
    if effort is not None and "reasoning_effort" not in p:
        if effort not in _EFFORTS:
            raise _fail("output_config.effort", f"must be one of {', '.join(sorted(_EFFORTS))}")
        p["reasoning_effort"] = effort
    fmt = (output_config or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        p["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
        }


def without_our_thinking(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the thinking blocks this gateway signed (an earlier answer of a non-Anthropic model, which
    Anthropic would refuse for their signature); ``data`` itself when it has none."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not any(_has_ours(m) for m in messages):
        return data
    kept = []
    for m in messages:
        if _has_ours(m):
            blocks = [b for b in m["content"] if not (isinstance(b, dict) and is_our_signature(b.get("signature")))]
            if not blocks:
                continue  # the turns around it merge (Anthropic joins consecutive turns of one role)
            m = {**m, "content": blocks}
        kept.append(m)
    return {**data, "messages": kept}


def _has_ours(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and m.get("role") == "assistant"
        and isinstance(m.get("content"), list)
        and any(isinstance(b, dict) and is_our_signature(b.get("signature")) for b in m["content"])
    )
