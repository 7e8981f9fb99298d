"""The real services some tests talk to: where they are, and a check that fails (never skips) when one is down.

CI (``.ci/run``) starts PostgreSQL and Redis when they are down; ``MODELWAY_TEST_PG_URL`` and
``MODELWAY_TEST_REDIS_URL`` point the tests elsewhere.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("MODELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("MODELWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def require(url: str, default_port: int) -> None:
    """Fail the test, naming the service, when nothing listens at ``url``."""
    u = urlsplit(url)
    try:
        socket.create_connection((u.hostname or "127.0.0.1", u.port or default_port), timeout=0.5).close()
    except OSError as exc:
        pytest.fail(f"no server at {url} ({exc}): start it (see .ci/run) or set MODELWAY_TEST_*_URL")
