"""Fixtures of the router's tests (helpers: ``routerkit.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from routerkit import Clock

import throwaway
from modelway.testing import OpenAISimulator
from modelway.transport import Transport


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport()
    yield t
    await t.aclose()


@pytest.fixture
def sims() -> Iterator[tuple[OpenAISimulator, OpenAISimulator, OpenAISimulator]]:
    with OpenAISimulator() as a, OpenAISimulator() as b, OpenAISimulator() as c:
        yield a, b, c


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis of the test module's own (not the machine's): started for the module, stopped at its end."""
    server = throwaway.start_redis(throwaway.free_port())
    try:
        yield server.url
    finally:
        server.stop()
