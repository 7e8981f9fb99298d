"""OpenAI Responses (``POST /v1/responses``; ``GET``/``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items``) for every model.

(Being built: issue 9.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Call, Dialect

if TYPE_CHECKING:
    from ..gateway import Gateway
    from ..http import Request, Send

__all__ = ["RESOURCE_PREFIX", "ResponsesDialect", "resource"]

RESOURCE_PREFIX = "/v1/responses/"


class ResponsesDialect(Dialect):
    endpoint = "responses"

    async def parse(self, data: dict[str, Any], req: Request, gw: Gateway) -> Call:
        raise NotImplementedError


async def resource(gw: Gateway, req: Request, send: Send, rest: str) -> None:
    """``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` (``rest``: the path after
    the prefix)."""
    raise NotImplementedError
