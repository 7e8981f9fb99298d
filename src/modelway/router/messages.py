"""What a model group does to a request's messages before any deployment sees them: its default system prompt, and
for models without a system role, system text merged into the first user message."""

from __future__ import annotations

from typing import Any

from ..types import Message

__all__ = ["merge_system_messages", "prepare_messages"]


def prepare_messages(messages: list[Message], *, system_prompt: str | None, merge_system: bool) -> list[Message]:
    """Apply the default ``system_prompt`` (when the caller sent none) and, with ``merge_system``, merge system text
    into the first user message (the job DB-GPT's message converter did, done once, here)."""
    if system_prompt and not any(m.get("role") in ("system", "developer") for m in messages):
        messages = [{"role": "system", "content": system_prompt}, *messages]
    if merge_system:
        messages = merge_system_messages(messages)
    return messages


def merge_system_messages(messages: list[Message]) -> list[Message]:
    """Move system/developer text into the first user message (``<system text>\\n\\n<user text>``)."""
    system = [str(m.get("content") or "") for m in messages if m.get("role") in ("system", "developer")]
    if not system:
        return messages
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    prefix = "\n\n".join(s for s in system if s)
    for i, m in enumerate(rest):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # multimodal parts: prepend a text part
                merged: Any = [{"type": "text", "text": prefix}, *content]
            else:
                merged = f"{prefix}\n\n{content or ''}" if prefix else content
            rest = [*rest[:i], {**m, "content": merged}, *rest[i + 1 :]]
            return rest
    return [{"role": "user", "content": prefix}, *rest]
