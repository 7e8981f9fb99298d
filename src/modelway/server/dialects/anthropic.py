"""Anthropic Messages (``POST /v1/messages``, ``POST /v1/messages/count_tokens``) for every model.

(Being built: issue 9.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Call, Dialect

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request, Send

__all__ = ["MessagesDialect", "count_tokens"]


class MessagesDialect(Dialect):
    endpoint = "messages"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        raise NotImplementedError


async def count_tokens(gw: Gateway, req: Request, send: Send) -> None:
    raise NotImplementedError
