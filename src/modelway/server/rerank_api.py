"""``POST /v1/rerank`` (Cohere/Jina shape) for every rerank model.

(Being built: issue 9.)
"""

from __future__ import annotations

from .gateway import Gateway
from .http import Request, Send

__all__ = ["rerank"]


async def rerank(gw: Gateway, req: Request, send: Send) -> None:
    raise NotImplementedError
