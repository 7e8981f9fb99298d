"""The control plane's pieces without HTTP: the authenticator against a failing or slow store, tickets that must
finish however their request ends."""

from __future__ import annotations

import asyncio

import pytest

from modelway.auth.authenticator import Authenticator, KeyStoreUnavailableError
from modelway.auth.keys import ApiKey, new_key
from modelway.config import parse_config
from modelway.limits import LimitExceededError, MemoryLimiter
from modelway.server.control import ControlPlane


class FakeStore:
    """Just enough of SQLStore for the authenticator: keys in a dict, optional failure and delay."""

    def __init__(self, *keys: ApiKey) -> None:
        self.keys = {k.key_hash: k for k in keys}
        self.fail = False
        self.delay = 0.0

    async def list_keys(self, *, include_revoked: bool = False) -> list[ApiKey]:
        snapshot = [ApiKey(**{f: getattr(k, f) for f in ApiKey.__slots__}) for k in self.keys.values()]
        await asyncio.sleep(self.delay)
        return [k for k in snapshot if include_revoked or k.revoked_at is None]

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        if self.fail:
            raise OSError("database is down")
        return self.keys.get(key_hash)


async def test_a_store_that_cannot_answer_is_503_not_500() -> None:
    store = FakeStore()
    store.fail = True
    auth = Authenticator("master", store)  # type: ignore[arg-type]
    with pytest.raises(KeyStoreUnavailableError) as info:
        await auth.authenticate(b"Bearer mw-unknown")
    assert info.value.http_status == 503


async def test_a_reload_that_read_old_rows_does_not_bring_a_revoked_key_back() -> None:
    secret, key = new_key("k")
    store = FakeStore(key)
    auth = Authenticator(None, store)  # type: ignore[arg-type]
    await auth.load()
    assert (await auth.authenticate(f"Bearer {secret}".encode())).key_id == key.id
    store.delay = 0.1
    reload = asyncio.ensure_future(auth.load())  # reads the rows before the revoke...
    await asyncio.sleep(0.01)
    revoked = ApiKey(**{f: getattr(key, f) for f in ApiKey.__slots__})
    revoked.revoked_at = 1.0
    store.keys[key.key_hash] = revoked
    auth.remember(revoked)  # ...the admin API revokes meanwhile
    await reload
    with pytest.raises(Exception, match="revoked"):
        await auth.authenticate(f"Bearer {secret}".encode())


async def test_a_ticket_finishes_when_its_handler_fails_after_begin() -> None:
    """An exception between begin and the answer (a bug, a failed send) still frees the key's place."""
    config = parse_config({"server": {"master_key": "m"}}, env={})
    auth = Authenticator("m")
    plane = ControlPlane(config, auth, limiter=MemoryLimiter())
    _, key = new_key("k", max_parallel=1)
    auth.remember(key)
    caller = auth._by_hash[key.key_hash]
    ticket = await plane.begin("r1", caller, "gpt", "chat", False)
    with pytest.raises(LimitExceededError):
        await plane.begin("r2", caller, "gpt", "chat", False)
    with pytest.raises(RuntimeError):
        async with ticket:
            raise RuntimeError("a bug after begin")
    assert ticket.done
    again = await plane.begin("r3", caller, "gpt", "chat", False)
    await again.finish()


def test_rate_limit_reset_reads_like_openai_s() -> None:
    from modelway.server.ticket import _duration

    assert [_duration(x) for x in (0.45, 0.0, 23.9, 60.0, 75.2)] == ["450ms", "0ms", "23s", "1m0s", "1m15s"]
