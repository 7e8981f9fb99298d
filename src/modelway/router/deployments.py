"""Deployments (one upstream with its own credentials) and model groups (a name clients call, over deployments)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import Price
from ..providers.base import Adapter
from ..types import Message

__all__ = ["Deployment", "ModelGroup"]


@dataclass(slots=True, eq=False)
class Deployment:
    """One upstream: an adapter instance (its own key and base URL), the provider's model name, and routing data."""

    adapter: Adapter
    model: str
    weight: float = 1.0
    timeout: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: what a million tokens cost here (``None``: not priced, the usage ledger records cost 0)
    price: Price | None = None
    cooldown_until: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.adapter.name}/{self.model}"

    def cooling(self, now: float) -> bool:
        return self.cooldown_until > now

    def cool_down(self, seconds: float) -> None:
        if seconds > 0:
            self.cooldown_until = max(self.cooldown_until, time.monotonic() + seconds)


@dataclass(slots=True, eq=False)
class ModelGroup:
    """A model name clients call, served by one or more deployments."""

    name: str
    deployments: list[Deployment]
    system_prompt: str | None = None
    merge_system: bool = False
    owned_by: str = "modelway"

    def order(self) -> list[Deployment]:
        """Deployments in the order to try them: weighted random among those not cooling down, then the rest."""
        deps = self.deployments
        if len(deps) == 1:
            return list(deps)
        now = time.monotonic()
        ready = [d for d in deps if not d.cooling(now)]
        cooling = sorted((d for d in deps if d.cooling(now)), key=lambda d: d.cooldown_until)
        return _weighted_shuffle(ready) + cooling

    def prepare(self, messages: list[Message]) -> list[Message]:
        """Apply the group's default system prompt and, for models without a system role, merge system text
        into the first user message (the job DB-GPT's message converter did, done once, here)."""
        if self.system_prompt and not any(m.get("role") in ("system", "developer") for m in messages):
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        if self.merge_system:
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


def _weighted_shuffle(deps: list[Deployment]) -> list[Deployment]:
    """Weighted sampling without replacement (Efraimidis-Spirakis keys)."""
    if len(deps) <= 1:
        return deps
    keyed = [(random.random() ** (1.0 / d.weight), d) for d in deps]
    keyed.sort(key=lambda kd: kd[0], reverse=True)
    return [d for _, d in keyed]
