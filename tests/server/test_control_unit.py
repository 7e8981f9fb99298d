"""The control plane's pieces without HTTP: the authenticator against a failing or slow store, tickets that must
finish however their request ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelway.auth.authenticator import ANONYMOUS, Authenticator, Caller, KeyStoreUnavailableError
from modelway.auth.keys import ApiKey, new_key
from modelway.config import parse_config
from modelway.limits import LimitExceededError, Limits, MemoryLimiter
from modelway.server.control import ControlPlane
from modelway.server.disconnect import ClientGone


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


class RecordingLedger:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def record(self, rec: Any) -> None:
        self.records.append(rec)


def plane_with_ledger() -> tuple[ControlPlane, RecordingLedger]:
    config = parse_config({}, env={})
    plane = ControlPlane(config, Authenticator(None))
    ledger = RecordingLedger()
    plane.ledger = ledger  # type: ignore[assignment]
    return plane, ledger


def a_deployment() -> Any:
    from modelway.config import Price
    from modelway.providers import PROVIDERS
    from modelway.providers.base import ProviderSettings
    from modelway.router import Deployment

    return Deployment(PROVIDERS["openai"](ProviderSettings(api_key="x")), "m", price=Price(1.0, 1.0))


async def test_a_cut_tool_call_stream_is_charged_for_its_arguments() -> None:
    from modelway.types import ChatCompletionChunk, ChunkChoice, Delta, ToolCallDelta

    plane, ledger = plane_with_ledger()
    ticket = await plane.begin("r", ANONYMOUS, "m", "chat", True)
    ticket.deployment = a_deployment()
    ticket.messages = [{"role": "user", "content": "call the tool"}]

    async def upstream() -> Any:
        for _ in range(100):
            delta = Delta(tool_calls=[ToolCallDelta(index=0, arguments='{"x": "' + "a" * 40 + '"}')])
            yield [ChatCompletionChunk("c", 0, "m", [ChunkChoice(0, delta)])]

    stream = ticket.track(upstream())
    for _ in range(50):
        await stream.__anext__()
    await stream.aclose()  # the caller went away before the usage chunk
    [rec] = ledger.records
    assert rec.status == 499 and rec.estimated and rec.completion_tokens > 400 and rec.prompt_tokens > 0


async def test_a_caller_leaving_a_non_stream_request_is_charged_its_prompt() -> None:
    plane, ledger = plane_with_ledger()
    ticket = await plane.begin("r", ANONYMOUS, "m", "chat", False)
    ticket.deployment = a_deployment()  # the router sent it upstream
    ticket.messages = [{"role": "user", "content": "x" * 400}]
    await ticket.fail(ClientGone())
    [rec] = ledger.records
    assert rec.status == 499 and rec.estimated and rec.prompt_tokens == 100 and rec.completion_tokens == 0


async def test_a_request_the_provider_refused_is_not_charged() -> None:
    from modelway.errors import UpstreamServerError

    plane, ledger = plane_with_ledger()
    ticket = await plane.begin("r", ANONYMOUS, "m", "chat", False)
    ticket.deployment = a_deployment()
    ticket.messages = [{"role": "user", "content": "x" * 400}]
    await ticket.fail(UpstreamServerError("boom", provider="openai", status_code=500))
    [rec] = ledger.records
    assert rec.status == 502 and not rec.estimated and rec.prompt_tokens == 0


async def test_an_unknown_model_for_a_budgeted_key_is_recorded() -> None:
    from modelway.errors import UnknownModelError

    plane, ledger = plane_with_ledger()
    plane.limiter = MemoryLimiter()

    def resolve(name: str) -> Any:
        raise UnknownModelError(f"no {name}")

    plane.resolve = resolve
    _, key = new_key("k", budget=1.0)
    caller = Caller(key=key, limits=Limits(budget=1.0))
    with pytest.raises(UnknownModelError):
        await plane.begin("r", caller, "nope", "chat", False)
    assert [(r.status, r.key_id) for r in ledger.records] == [(404, key.id)]


async def test_a_cancel_while_releasing_still_gives_the_key_its_place_back() -> None:
    """The shutdown's abort cancelled a request while its limiter release waited for Redis: the release was lost
    (the key's place stayed taken until it expired). It is retried in a task of its own."""
    from modelway.limits.base import Permit
    from modelway.server.ticket import Ticket

    class SlowLimiter(MemoryLimiter):
        def __init__(self) -> None:
            super().__init__()
            self.released: list[str] = []

        async def release(
            self, permit: Permit, *, tokens: int = 0, cost: float = 0.0, now: float | None = None
        ) -> None:
            await asyncio.sleep(0.05)  # a Redis round trip; the first attempt is cut here
            self.released.append(permit.token)

    plane = ControlPlane(parse_config({}, env={}), Authenticator(None))
    limiter = plane.limiter = SlowLimiter()
    ticket = Ticket(plane, "r1", "k1", "m", "chat", False)
    ticket.permit = Permit("k1", Limits(max_parallel=1), "tok-1", 0)

    async def handler() -> None:
        async with ticket:  # a non-stream request that answered: finish(200) → release()
            ticket.settle(200)

    task = asyncio.create_task(handler())
    await asyncio.sleep(0.01)  # inside the release
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.1)
    assert limiter.released == ["tok-1"]
