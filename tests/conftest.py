"""Fixtures shared by every test directory."""

from __future__ import annotations

import pytest

from services import PG_URL, REDIS_URL, require


@pytest.fixture(scope="session")
def redis_server() -> None:
    """The test needs the Redis server: fail clearly, never skip, when it is down."""
    require(REDIS_URL, 6379)


@pytest.fixture(scope="session")
def postgres_server() -> None:
    """The test needs the PostgreSQL server: fail clearly, never skip, when it is down."""
    require(PG_URL, 5432)
