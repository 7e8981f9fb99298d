"""Chat messages → one prompt, rendered with a FastChat worker's conversation template.

A FastChat model worker takes a prompt, not messages: its OpenAI API server renders the messages with the
template the worker answers on ``/worker_get_conv_template`` (``{"conv": {...}}``, FastChat's ``Conversation``
as a dict, ``sep_style`` as the number of its ``SeparatorStyle``). This module does the same, for every separator
style of fschat 0.2.36 (numbers 1-19): system messages set the system message (the last one wins), user turns
take ``roles[0]``, assistant turns ``roles[1]``, the template's own example messages come first, and an empty
assistant turn ends the prompt. Other roles are told as user turns (``tool`` results) or as the system
(``developer``); content parts give their text (images are left out: the worker gets text). An unknown style
renders as style 1 (``ADD_COLON_SINGLE``), the most common one, and a worker without a usable template gets
:data:`FALLBACK`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Message

__all__ = ["FALLBACK", "ConvTemplate", "SeparatorStyle", "render_prompt"]

#: a template field longer than this is not taken from a worker (a template is a few hundred characters)
_MAX_FIELD = 64 * 1024
_MAX_EXAMPLES = 64


class SeparatorStyle:
    """FastChat's ``SeparatorStyle`` numbers (an ``IntEnum`` of ``auto()`` values, in this order)."""

    ADD_COLON_SINGLE = 1
    ADD_COLON_TWO = 2
    ADD_COLON_SPACE_SINGLE = 3
    NO_COLON_SINGLE = 4
    NO_COLON_TWO = 5
    ADD_NEW_LINE_SINGLE = 6
    LLAMA2 = 7
    CHATGLM = 8
    CHATML = 9
    CHATINTERN = 10
    DOLLY = 11
    RWKV = 12
    PHOENIX = 13
    ROBIN = 14
    FALCON_CHAT = 15
    CHATGLM3 = 16
    DEEPSEEK_CHAT = 17
    METAMATH = 18
    YUAN2 = 19


@dataclass(slots=True, frozen=True)
class ConvTemplate:
    """The parts of FastChat's ``Conversation`` that shape a prompt."""

    name: str = ""
    system_template: str = "{system_message}"
    system_message: str = ""
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    #: example turns the template carries before the conversation
    messages: tuple[tuple[str, str | None], ...] = ()
    sep_style: int = SeparatorStyle.ADD_COLON_SINGLE
    sep: str = "\n"
    sep2: str | None = None
    stop_str: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = field(default=())

    @classmethod
    def from_dict(cls, conv: Any) -> ConvTemplate:
        """A worker's ``conv`` dict; fields missing or of the wrong type keep their defaults."""
        if not isinstance(conv, dict):
            raise ValueError("the conversation template is not an object")
        d = cls()
        roles = conv.get("roles")
        if isinstance(roles, list | tuple) and len(roles) >= 2 and all(isinstance(r, str) for r in roles[:2]):
            role_pair = (_bounded(roles[0]), _bounded(roles[1]))
        else:
            role_pair = d.roles
        examples: list[tuple[str, str | None]] = []
        for m in (conv.get("messages") or [])[:_MAX_EXAMPLES]:
            if isinstance(m, list | tuple) and len(m) == 2 and isinstance(m[0], str):
                examples.append((_bounded(m[0]), _bounded(m[1]) if isinstance(m[1], str) else None))
        stop = conv.get("stop_str")
        stops = (stop,) if isinstance(stop, str) else tuple(s for s in stop or () if isinstance(s, str))
        ids = conv.get("stop_token_ids")
        style = conv.get("sep_style")
        return cls(
            name=_str(conv.get("name"), d.name),
            system_template=_str(conv.get("system_template"), d.system_template),
            system_message=_str(conv.get("system_message"), d.system_message),
            roles=role_pair,
            messages=tuple(examples),
            sep_style=style if isinstance(style, int) and not isinstance(style, bool) else d.sep_style,
            sep=_str(conv.get("sep"), d.sep),
            sep2=conv["sep2"] if isinstance(conv.get("sep2"), str) else None,
            stop_str=tuple(_bounded(s) for s in stops if s)[:16],
            stop_token_ids=tuple(i for i in ids or () if isinstance(i, int) and not isinstance(i, bool))[:64]
            if isinstance(ids, list)
            else (),
        )

    def render(self, messages: list[Message]) -> str:
        """The prompt for ``messages``, ending with the assistant's empty turn."""
        system = self.system_message
        turns: list[tuple[str, str | None]] = list(self.messages)
        user, assistant = self.roles
        for m in messages:
            role = m.get("role")
            text = _text(m.get("content"))
            if role in ("system", "developer"):
                system = text
            elif role == "assistant":
                turns.append((assistant, text))
            else:  # user, and tool results told as the user's turn
                turns.append((user, text))
        turns.append((assistant, None))
        try:
            system_prompt = self.system_template.format(system_message=system)
        except (KeyError, IndexError, ValueError):  # a template with other fields: the message as it is
            system_prompt = system
        style = _STYLES.get(self.sep_style, _add_colon_single)
        return style(self, system, system_prompt, turns)


FALLBACK = ConvTemplate(name="modelway-fallback")


def render_prompt(conv: ConvTemplate | None, messages: list[Message]) -> str:
    return (conv or FALLBACK).render(messages)


def _str(v: Any, default: str) -> str:
    return _bounded(v) if isinstance(v, str) else default


def _bounded(v: str) -> str:
    if len(v) > _MAX_FIELD:
        raise ValueError(f"a conversation template field is longer than {_MAX_FIELD} characters")
    return v


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


Turns = list[tuple[str, str | None]]
Style = Callable[[ConvTemplate, str, str, Turns], str]


def _seps(c: ConvTemplate) -> tuple[str, str]:
    return c.sep, c.sep2 if c.sep2 is not None else c.sep


def _add_colon_single(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    out = [sp + c.sep]
    out += [f"{r}: {m}{c.sep}" if m else f"{r}:" for r, m in turns]
    return "".join(out)


def _add_colon_two(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    out = [sp + seps[0]]
    out += [f"{r}: {m}{seps[i % 2]}" if m else f"{r}:" for i, (r, m) in enumerate(turns)]
    return "".join(out)


def _add_colon_space_single(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    return sp + c.sep + "".join(f"{r}: {m}{c.sep}" if m else f"{r}: " for r, m in turns)


def _add_new_line_single(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    head = sp + c.sep if sp else ""
    return head + "".join(f"{r}\n{m}{c.sep}" if m else f"{r}\n" for r, m in turns)


def _no_colon_single(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    return sp + "".join(f"{r}{m}{c.sep}" if m else r for r, m in turns)


def _no_colon_two(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    return sp + "".join(f"{r}{m}{seps[i % 2]}" if m else r for i, (r, m) in enumerate(turns))


def _rwkv(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    out = [sp]
    for r, m in turns:
        out.append(f"{r}: " + m.replace("\r\n", "\n").replace("\n\n", "\n") + "\n\n" if m else f"{r}:")
    return "".join(out)


def _llama2(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    out = [sp if system else "[INST] "]
    for i, (_, m) in enumerate(turns):
        tag = c.roles[i % 2]
        if m:
            out.append(m + " " if i == 0 else f"{tag} {m}{seps[i % 2]}")
        else:
            out.append(tag)
    return "".join(out)


def _chatglm(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    first_round = 1 if c.name == "chatglm2" else 0
    out = [sp + c.sep if sp else ""]
    for i, (r, m) in enumerate(turns):
        if i % 2 == 0:
            out.append(f"[Round {i // 2 + first_round}]{c.sep}")
        out.append(f"{r}：{m}{c.sep}" if m else f"{r}：")
    return "".join(out)


def _chatml(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    head = sp + c.sep + "\n" if sp else ""
    return head + "".join(f"{r}\n{m}{c.sep}\n" if m else f"{r}\n" for r, m in turns)


def _chatglm3(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    return (sp if system else "") + "".join(f"{r}\n{m}" if m else r for r, m in turns)


def _chatintern(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    out = [sp]
    for i, (r, m) in enumerate(turns):
        if i % 2 == 0:
            out.append("<s>")
        out.append(f"{r}:{m}{seps[i % 2]}\n" if m else f"{r}:")
    return "".join(out)


def _dolly(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    out = [sp]
    for i, (r, m) in enumerate(turns):
        out.append(f"{r}:\n{m}{seps[i % 2]}" + ("\n\n" if i % 2 == 1 else "") if m else f"{r}:\n")
    return "".join(out)


def _phoenix(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    return sp + "".join(f"{r}: <s>{m}</s>" if m else f"{r}: <s>" for r, m in turns)


def _robin(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    return sp + c.sep + "".join(f"{r}:\n{m}{c.sep}" if m else f"{r}:\n" for r, m in turns)


def _falcon_chat(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    head = sp + c.sep if system else ""
    return head + "".join(f"{r}: {m}{c.sep}" if m else f"{r}:" for r, m in turns)


def _metamath(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    out = [sp + c.sep if sp else ""]
    for i, (r, m) in enumerate(turns):
        start = ":\n" if i % 2 == 0 else ": " + (c.sep2 or "")
        end = c.sep if i % 2 == 0 else ""
        out.append(f"{r}{start}{m}{end}" if m else f"{r}{start}")
    return "".join(out)


def _deepseek_chat(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    return sp + "".join(f"{r}: {m}{seps[i % 2]}" if m else f"{r}:" for i, (r, m) in enumerate(turns))


def _yuan2(c: ConvTemplate, system: str, sp: str, turns: Turns) -> str:
    seps = _seps(c)
    out = sp + seps[1] if system else ""
    out += "".join(f"{m}<n>" for _, m in turns if m)
    return out.rstrip("<n>") + seps[0]


_STYLES: dict[int, Style] = {
    SeparatorStyle.ADD_COLON_SINGLE: _add_colon_single,
    SeparatorStyle.ADD_COLON_TWO: _add_colon_two,
    SeparatorStyle.ADD_COLON_SPACE_SINGLE: _add_colon_space_single,
    SeparatorStyle.NO_COLON_SINGLE: _no_colon_single,
    SeparatorStyle.NO_COLON_TWO: _no_colon_two,
    SeparatorStyle.ADD_NEW_LINE_SINGLE: _add_new_line_single,
    SeparatorStyle.LLAMA2: _llama2,
    SeparatorStyle.CHATGLM: _chatglm,
    SeparatorStyle.CHATML: _chatml,
    SeparatorStyle.CHATINTERN: _chatintern,
    SeparatorStyle.DOLLY: _dolly,
    SeparatorStyle.RWKV: _rwkv,
    SeparatorStyle.PHOENIX: _phoenix,
    SeparatorStyle.ROBIN: _robin,
    SeparatorStyle.FALCON_CHAT: _falcon_chat,
    SeparatorStyle.CHATGLM3: _chatglm3,
    SeparatorStyle.DEEPSEEK_CHAT: _deepseek_chat,
    SeparatorStyle.METAMATH: _metamath,
    SeparatorStyle.YUAN2: _yuan2,
}
