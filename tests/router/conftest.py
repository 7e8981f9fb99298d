"""Fixtures of the router's tests (helpers: ``routerkit.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from routerkit import Clock

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
