"""Entry point for uvicorn workers: ``uvicorn --factory modelway.server.main:app_factory``.

The config path and demo flag travel in the environment (``MODELWAY_CONFIG``, ``MODELWAY_DEMO``), so that every
worker process of ``modelway serve --workers N`` builds the same app.
"""

from __future__ import annotations

import os

from ..config import load_config
from .app import GatewayApp, create_app

__all__ = ["app_factory"]


def app_factory() -> GatewayApp:
    config = load_config(os.environ.get("MODELWAY_CONFIG") or None)
    return create_app(config, demo=os.environ.get("MODELWAY_DEMO") == "1")
