"""Master discovery through Sentinel (limits/sentinel.py) against Sentinels that answer wrongly: the procedure,
without sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelway.limits.redis_url import parse_redis_url
from modelway.limits.sentinel import Address, SentinelError, discover_master

SETTINGS = parse_redis_url("redis+sentinel://a:1,b:2/main")


def _asker(replies: dict[Address, Any]) -> Any:
    async def ask(address: Address, commands: list[list[Any]]) -> list[Any]:
        return [replies[address]]

    return ask


@pytest.mark.parametrize(
    "lie",
    [
        [b"10.0.0.9", b"port"],  # no number
        [b"10.0.0.9", b"70000"],  # no port
        [b"10.0.0.9", None],
        [b"", b"6379"],  # no host
        [[b"x"], b"6379"],
    ],
)
def test_a_sentinel_naming_no_usable_address_is_passed_over(lie: list[Any]) -> None:
    """The next Sentinel is asked (a ValueError escaped instead, past the limiter's Redis-unavailable handling)."""
    sentinels: list[Address] = [("a", 1), ("b", 2)]
    ask = _asker({("a", 1): lie, ("b", 2): [b"10.0.0.5", b"6380"]})
    assert asyncio.run(discover_master(SETTINGS, sentinels, ask)) == ("10.0.0.5", 6380)
    assert sentinels == [("b", 2), ("a", 1)]


def test_when_every_sentinel_names_no_usable_address_the_error_says_so() -> None:
    ask = _asker({("a", 1): [b"10.0.0.9", b"port"], ("b", 2): [b"10.0.0.9", b"0"]})
    with pytest.raises(SentinelError, match=r"a:1: named no usable address for 'main'.*b:2: named no usable"):
        asyncio.run(discover_master(SETTINGS, [("a", 1), ("b", 2)], ask))
