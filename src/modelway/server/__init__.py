"""The gateway server: an ASGI app serving the OpenAI-compatible API and DB-GPT API v2."""

from __future__ import annotations

from .app import GatewayApp, create_app
from .gateway import Gateway

__all__ = ["Gateway", "GatewayApp", "create_app"]
