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
    """(ASCII, other) characters of the text in ``messages``: string content, text parts, tool call names and
    arguments.

    Never raises: it runs when a request has already gone wrong (to charge a cut stream), so anything of another
    shape than the OpenAI one (which :mod:`modelway.validate` enforces on the way in) is simply not counted.
    """
    counts = [0, 0]
    for m in messages:
        if not isinstance(m, dict):
            continue
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    for field in ("name", "arguments"):
                        text = fn.get(field)
                        if isinstance(text, str):
                            _add(text, counts)
        content = m.get("content")
        if isinstance(content, str):
            _add(content, counts)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    _add(text, counts)
    return counts[0], counts[1]
