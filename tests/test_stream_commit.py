"""When a stream commits, and what happens before and after: retries before the first output, deadlines that
keep-alive comments cannot extend, immediate upstream close, no silent empty answers, typed errors on odd payloads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

import modelway
from modelway import errors
from modelway.testing import Fault, OpenAISimulator, Reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """A hand-written OpenAI-ish upstream for misbehaviour the simulators do not script."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        # a handler still stalling when the test is over is cancelled at the cleanup, not waited for (60 s at most)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for r in runners:
        await r.cleanup()


def client(base_url: str, **kw: object) -> modelway.AsyncClient:
    return modelway.AsyncClient(providers={"openai": {"api_key": "k", "base_url": base_url}}, **kw)  # type: ignore[arg-type]


async def test_an_empty_opening_chunk_does_not_commit_the_stream() -> None:
    with OpenAISimulator() as sim:
        sim.push(Fault.error_frame(after_chunks=1, code="server_error"))  # the role-only chunk, then a failure
        async with modelway.AsyncClient(
            providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=1
        ) as c:
            s = await c.chat("openai/m", "hi", stream=True)
            text = "".join([ch.content or "" async for ch in s])
        assert text == "You said: hi" and len(sim.requests) == 2


async def test_keep_alive_comments_do_not_extend_the_first_output_deadline(
    upstream: Callable[[Handler], Awaitable[str]],
) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(100):  # 10 s of keep-alives, never an answer
            await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(0.1)
        return resp

    url = await upstream(stalls)
    async with client(url, max_retries=0, timeout=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(errors.ProviderTimeoutError, match="no output"):
            s = await c.chat("openai/m", "hi", stream=True)
            async for _ in s:
                pass
        assert time.monotonic() - t0 < 2.0


async def test_closing_a_stream_closes_the_upstream_at_once() -> None:
    with OpenAISimulator() as sim:
        sim.push(Reply("x" * 2000, chunk_size=1, chunk_delay=0.01))
        async with modelway.AsyncClient(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}) as c:
            s = await c.chat("openai/m", "hi", stream=True)
            async for ch in s:
                if ch.content:
                    break
            closed_at = time.monotonic()
            await s.aclose()  # type: ignore[attr-defined]
            deadline = closed_at + 2
            while not sim.disconnects and time.monotonic() < deadline:  # noqa: ASYNC110 (another thread's list)
                await asyncio.sleep(0.01)
        assert sim.disconnects and sim.disconnects[0] - closed_at < 0.5


def test_sync_break_closes_the_upstream_at_once() -> None:
    with (
        OpenAISimulator() as sim,
        modelway.Client(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}) as c,
    ):
        sim.push(Reply("x" * 2000, chunk_size=1, chunk_delay=0.01))
        for ch in c.chat("openai/m", "hi", stream=True):
            if ch.content:
                break
        closed_at = time.monotonic()  # the loop ended: the generator is closed when it is collected (now, refcount)
        deadline = closed_at + 2
        while not sim.disconnects and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.disconnects and sim.disconnects[0] - closed_at < 0.5


async def test_a_stream_with_no_output_is_an_error(upstream: Callable[[Handler], Awaitable[str]]) -> None:
    async def empty(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    url = await upstream(empty)
    async with client(url, max_retries=0) as c:
        with pytest.raises(errors.StreamError, match="without any output"):
            s = await c.chat("openai/m", "hi", stream=True)
            async for _ in s:
                pass


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices": [null]}',
        b'{"id": "c", "created": "yesterday", "choices": [{"index": 0, "message": {"content": "x"}}]}',
        b'{"choices": [{"index": 0, "message": {"content": "x"}}], "usage": {"prompt_tokens": "n/a"}}',
    ],
)
async def test_odd_payloads_are_typed_errors(upstream: Callable[[Handler], Awaitable[str]], body: bytes) -> None:
    async def odd(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        if data.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b'data: {"choices": [{"index": 0, "delta": "not an object"}]}\n\n')
            return resp
        return web.Response(body=body, content_type="application/json")

    url = await upstream(odd)
    async with client(url, max_retries=0) as c:
        with pytest.raises(errors.StreamError, match="unexpected response"):
            await c.chat("openai/m", "hi")
        with pytest.raises(errors.StreamError, match="unexpected response"):
            s = await c.chat("openai/m", "hi", stream=True)
            async for _ in s:
                pass


async def test_a_stream_that_stalls_after_its_first_output_times_out(
    upstream: Callable[[Handler], Awaitable[str]],
) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"ab"}}]}\n\n')
        await asyncio.sleep(2.0)  # then silence, not even keep-alives
        return resp

    url = await upstream(stalls)
    async with client(url, max_retries=0, timeout=0.3) as c:
        got: list[str] = []
        t0 = time.monotonic()
        with pytest.raises(errors.ProviderTimeoutError, match="stopped sending"):
            s = await c.chat("openai/m", "hi", stream=True)
            async for ch in s:
                got.append(ch.content or "")
        assert time.monotonic() - t0 < 1.5
    assert got == ["ab"]


def test_sync_client_close_leaves_no_pending_task() -> None:
    with OpenAISimulator() as sim:
        client = modelway.Client(providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}, timeout=5)
        assert "".join(c.content or "" for c in client.chat("openai/m", "x", stream=True)) == "You said: x"
        loop = client._runner.loop
        client.close()
        assert loop.is_closed()
        assert client._async._transport._idle.task is None


async def test_a_slow_consumer_is_not_a_silent_provider() -> None:
    with OpenAISimulator() as sim:
        sim.push(Reply("abcdefgh", chunk_size=2))
        async with modelway.AsyncClient(
            providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=0, timeout=0.3
        ) as c:
            s = await c.chat("openai/m", "hi", stream=True)
            got = []
            async for ch in s:
                got.append(ch.content or "")
                await asyncio.sleep(0.5)  # slower than the timeout, while the provider has long finished
    assert "".join(got) == "abcdefgh"


def test_a_slow_sync_consumer_is_not_a_silent_provider() -> None:
    with (
        OpenAISimulator() as sim,
        modelway.Client(
            providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}}, max_retries=0, timeout=0.3
        ) as c,
    ):
        sim.push(Reply("abcdefgh", chunk_size=2))
        got = []
        for ch in c.chat("openai/m", "hi", stream=True):
            got.append(ch.content or "")
            time.sleep(0.5)
    assert "".join(got) == "abcdefgh"


async def test_a_short_timeout_is_kept_while_a_long_one_is_open(upstream: Callable[[Handler], Awaitable[str]]) -> None:
    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"ab"}}]}\n\n')
        await asyncio.sleep(3.0)
        return resp

    url = await upstream(stalls)
    async with client(url, max_retries=0, timeout=600) as slow, client(url, max_retries=0, timeout=0.2) as quick:
        # both clients share nothing but the machine; use one transport to share the sweep
        quick._transport = slow._transport
        long_stream = await slow.chat("openai/m", "hi", stream=True)
        assert (await long_stream.__anext__()).content == "ab"  # type: ignore[attr-defined]
        t0 = time.monotonic()
        with pytest.raises(errors.ProviderTimeoutError):
            s = await quick.chat("openai/m", "hi", stream=True)
            async for _ in s:
                pass
        assert time.monotonic() - t0 < 0.6
        await long_stream.aclose()  # type: ignore[attr-defined]
