"""Prompts rendered by a FastChat conversation template, turned back into chat messages.

FastChat's OpenAI API server renders a chat request into one ``prompt`` string with the conversation template the
worker gave it (``/worker_get_conv_template``), and sends the worker that string. An API provider wants the
messages with their roles, so the worker parses the prompt back, as Langchain-Chatchat's online workers do.

The template this worker hands out (:data:`CONV_TEMPLATE`, ChatML) parses back exactly. Prompts rendered with
other templates (a client that caches another worker's template, a proxy, a hand-written prompt) are recognised by
their markers, most specific first:

- ChatML: ``<|im_start|>role\\n...<|im_end|>`` (Qwen, Yi, FastChat's ``CHATML`` style);
- ChatGLM3: ``<|system|>``, ``<|user|>``, ``<|assistant|>``;
- Llama 2: ``[INST] <<SYS>>...<</SYS>> ... [/INST]``;
- "role:" turns: ``### Human: ... ### Assistant:`` (FastChat's ``one_shot``/``zero_shot``), ``USER: ... ASSISTANT:``
  (Vicuna), ``user: ... assistant:`` (Chatchat's online workers, ``sep="\\n###"``), ChatGLM2's ``问：``/``答：``
  rounds; these count only when the prompt ends with an open assistant turn (the generation prompt), so ordinary
  text that mentions "user:" is not taken apart.

Anything else is one user message with the whole prompt. Text before the first turn is the system message; the
open assistant turn at the end is dropped.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CONV_TEMPLATE", "TEMPLATE_STOPS", "prompt_to_messages"]

#: FastChat ``SeparatorStyle.CHATML`` (the enum's ninth member; the API server rebuilds the style from the int)
_CHATML_STYLE = 9

#: the conversation template this worker gives FastChat's API server: ChatML, every field its ``Conversation``
#: constructor reads. No stop string: a provider ends its own turn, and a template marker in the request's ``stop``
#: would only be sent upstream for nothing.
CONV_TEMPLATE: dict[str, Any] = {
    "name": "modelway-chatml",
    "system_template": "<|im_start|>system\n{system_message}",
    "system_message": "",
    "system_message_vision": "",
    "roles": ["<|im_start|>user", "<|im_start|>assistant"],
    "messages": [],
    "offset": 0,
    "sep_style": _CHATML_STYLE,
    "sep": "<|im_end|>",
    "sep2": None,
    "stop_str": None,
    "stop_token_ids": None,
    "max_image_size_mb": None,
}

#: stop strings that belong to a conversation template, not to the caller: dropped from ``stop`` before the request
#: goes to a provider (FastChat's API server merges the template's ``stop_str`` into the caller's ``stop``)
TEMPLATE_STOPS = frozenset(
    {"<|im_end|>", "<|im_start|>", "<|endoftext|>", "###", "</s>", "<|user|>", "<|observation|>", "[INST]"}
)

_USER = "user"
_ASSISTANT = "assistant"
_SYSTEM = "system"

_CHATML = re.compile(r"<\|im_start\|>([^\n]*)\n")
_GLM3 = re.compile(r"<\|(system|user|assistant|observation)\|>[ \t]*\n?")
_INST = re.compile(r"\[/?INST\]")
_LLAMA_SYS = re.compile(r"^\s*<<SYS>>\s*(.*?)\s*<</SYS>>\s*", re.DOTALL)
#: a "role:" turn header: at the start, or after a newline, ``###`` or ``</s>`` (any case); or an upper-case
#: ``USER:``/``ASSISTANT:`` after a space (Vicuna's separator is one space)
_COLON = re.compile(
    r"(?:(?:^|(?<=\n)|(?<=###)|(?<=</s>))[ \t]*(?:###[ \t]*)?(?i:(user|human|assistant|gpt|bot|system))[ \t]*[:：]"
    r"|(?<=\s)(USER|ASSISTANT)[:]"
    r"|(?:^|(?<=\n))(问|答)[:：])[ \t]?"
)
_ROUND = re.compile(r"\[Round \d+\]\s*")
_ROLE_OF = {
    "user": _USER,
    "human": _USER,
    "问": _USER,
    "assistant": _ASSISTANT,
    "gpt": _ASSISTANT,
    "bot": _ASSISTANT,
    "答": _ASSISTANT,
    "system": _SYSTEM,
    "observation": _USER,
}
#: what a template leaves at the end of a turn
_TRAILERS = ("<|im_end|>", "</s><s>", "</s>", "<s>", "###", "<|endoftext|>")


def _role(name: str) -> str | None:
    name = name.strip().lower()
    return _ROLE_OF.get(name) or (_USER if name.endswith("user") else _ASSISTANT if "assistant" in name else None)


def _clean(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for t in _TRAILERS:
            if text.endswith(t):
                text = text[: -len(t)].rstrip()
                changed = True
    return text


def _finish(turns: list[tuple[str, str]], preamble: str) -> list[dict[str, Any]] | None:
    """Messages from ``(role, text)`` turns: the open assistant turn at the end is dropped, empty system messages
    too. ``None`` when there is no user turn (not a chat prompt after all)."""
    if turns and turns[-1][0] == _ASSISTANT and not turns[-1][1]:
        turns = turns[:-1]
    if not any(role == _USER for role, _ in turns):
        return None
    out: list[dict[str, Any]] = []
    system = _clean(preamble)
    if system:
        out.append({"role": _SYSTEM, "content": system})
    for role, text in turns:
        if role == _SYSTEM and not text:
            continue
        out.append({"role": role, "content": text})
    return out


def _split(prompt: str, pattern: re.Pattern[str]) -> tuple[str, list[tuple[str, str]]] | None:
    """The text before the first header, and each header's role with the text up to the next header."""
    heads = list(pattern.finditer(prompt))
    if not heads:
        return None
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(heads):
        name = next(g for g in m.groups() if g is not None)
        role = _role(name)
        if role is None:
            return None
        end = heads[i + 1].start() if i + 1 < len(heads) else len(prompt)
        turns.append((role, _clean(_ROUND.sub("", prompt[m.end() : end]))))
    return _ROUND.sub("", prompt[: heads[0].start()]), turns


def _llama2(prompt: str) -> list[dict[str, Any]] | None:
    parts = _INST.split(prompt)
    marks = _INST.findall(prompt)
    if not marks or marks[0] != "[INST]":
        return None
    turns: list[tuple[str, str]] = []
    system = ""
    for mark, text in zip(marks, parts[1:], strict=True):
        text = _clean(text)
        if mark == "[INST]":
            if not turns:
                m = _LLAMA_SYS.match(text)
                if m:
                    system, text = m.group(1), text[m.end() :]
            turns.append((_USER, text))
        else:
            turns.append((_ASSISTANT, text))
    return _finish(turns, system)


def prompt_to_messages(prompt: str) -> list[dict[str, Any]]:
    """The chat messages ``prompt`` was rendered from (see the module docstring); one user message when it does
    not look like a rendered conversation."""
    found: list[dict[str, Any]] | None = None
    if "<|im_start|>" in prompt:
        split = _split(prompt, _CHATML)
        found = _finish(split[1], split[0]) if split else None
    elif "<|user|>" in prompt:
        split = _split(prompt, _GLM3)
        found = _finish(split[1], split[0]) if split else None
    elif "[INST]" in prompt:
        found = _llama2(prompt)
    else:
        split = _split(prompt, _COLON)
        # only a prompt that ends with the open assistant turn is a rendered conversation
        if split is not None and split[1] and split[1][-1] == (_ASSISTANT, ""):
            found = _finish(split[1], split[0])
    return found if found else [{"role": _USER, "content": prompt}]
