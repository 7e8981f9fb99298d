"""Persistent state of the gateway (virtual keys, usage) in SQLite or PostgreSQL; needs ``modelway[server]``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sql import SQLStore

__all__ = ["SQLStore"]


def __getattr__(name: str) -> Any:
    # lazy: importing modelway.store (or anything that names it for typing) must not import SQLAlchemy
    if name == "SQLStore":
        from .sql import SQLStore

        return SQLStore
    raise AttributeError(f"module 'modelway.store' has no attribute {name!r}")
