"""Token estimates for the rare answer whose usage the provider never reported (a stream cut short).

Rough by design and documented as such: about 4 characters per token for ASCII text (English, code) and about
1.5 for other scripts (Chinese, Japanese, ...), which is close to what the common tokenizers give. Records charged
from an estimate are marked ``estimated``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..types import Message

__all__ = ["estimate_tokens", "prompt_chars"]


def estimate_tokens(ascii_chars: int, other_chars: int) -> int:
    return math.ceil(ascii_chars / 4 + other_chars / 1.5)


def _add(text: str, counts: list[int]) -> None:
    if text.isascii():
        counts[0] += len(text)
    else:
        counts[1] += len(text)


def prompt_chars(messages: Iterable[Message]) -> tuple[int, int]:
    """(ASCII, other) characters of the text in ``messages``: string content, text parts, tool call arguments."""
    counts = [0, 0]
    for m in messages:
        for call in m.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                for field in ("name", "arguments"):
                    if isinstance(fn.get(field), str):
                        _add(fn[field], counts)
        content = m.get("content")
        if isinstance(content, str):
            _add(content, counts)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    _add(part["text"], counts)
    return counts[0], counts[1]
