"""Every long-standing fault kind, for stream and non-stream requests, on every simulator; and the
caller's reply headers winning over the defaults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from sim_wire import TARGETS, Target, raw_post, sse

from modelway.testing import BaseSimulator, Fault, Reply

STREAM = [pytest.param(True, id="stream"), pytest.param(False, id="json")]


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    return TARGETS[request.param]


@pytest.fixture
async def sim(target: Target) -> AsyncIterator[BaseSimulator]:
    async with target.cls() as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ask(
    http: aiohttp.ClientSession, target: Target, sim: BaseSimulator, stream: bool
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(
        target.url(sim), data=orjson.dumps(target.body(stream)), headers=target.headers(sim, stream)
    ) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.mark.parametrize("stream", STREAM)
async def test_http_errors(http: aiohttp.ClientSession, target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.http(429, retry_after=3), Fault.http(429), Fault.http(503), Fault.http(500, message="boom"))
    answers = [await ask(http, target, sim, stream) for _ in range(4)]
    assert [status for status, _, _ in answers] == [429, 429, 503, 500]
    assert answers[0][1]["Retry-After"] == "3" and "Retry-After" not in answers[1][1]
    assert all(h["Content-Type"].startswith("application/json") for _, h, _ in answers)
    assert b"boom" in answers[3][2] and all(orjson.loads(raw) for _, _, raw in answers)


@pytest.mark.parametrize("stream", STREAM)
async def test_slow_first_byte(http: aiohttp.ClientSession, target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.slow_first_byte(0.2, then=Reply("late")))
    start = time.monotonic()
    status, _, raw = await ask(http, target, sim, stream)
    assert status == 200 and time.monotonic() - start >= 0.2
    if stream:
        assert target.finished(sse(raw))
    else:
        assert target.content(orjson.loads(raw)) == "late"


@pytest.mark.parametrize("stream", STREAM)
async def test_cut_stream(target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.cut_stream(after_chunks=2, reply=Reply("abcdefghijkl")))
    answer = await raw_post(target, sim, stream)
    assert answer.status == 200 and answer.end == "EOF"
    if stream:  # HTTP/1.0: the close is the only end a stream has; the chunked case is in test_simulators
        assert len(sse(answer.body)) == 2
    else:
        assert int(answer.header("Content-Length")[0]) > len(answer.body) > 0


@pytest.mark.parametrize("stream", STREAM)
async def test_cut_stream_is_a_payload_error_for_a_client(
    http: aiohttp.ClientSession, target: Target, sim: BaseSimulator, stream: bool
) -> None:
    sim.push(Fault.cut_stream(after_chunks=1))
    with pytest.raises(aiohttp.ClientPayloadError):
        await ask(http, target, sim, stream)


@pytest.mark.parametrize("stream", STREAM)
async def test_malformed_json(http: aiohttp.ClientSession, target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.malformed_json(after_chunks=1))
    status, headers, raw = await ask(http, target, sim, stream)
    assert status == 200
    if stream:
        evs = sse(raw)
        assert len(evs) == 2 and evs[1].data == "{broken"
        orjson.loads(evs[0].data)
    else:
        assert headers["Content-Type"].startswith("application/json")
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)


@pytest.mark.parametrize("stream", STREAM)
async def test_error_frame(http: aiohttp.ClientSession, target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.error_frame(after_chunks=2, message="went wrong"))
    status, _, raw = await ask(http, target, sim, stream)
    if stream:
        evs = sse(raw)
        assert status == 200 and len(evs) == 3
        assert not any(target.is_error(e) for e in evs[:2]) and target.is_error(evs[2])
        assert "went wrong" in evs[2].data
    else:
        assert status == 500 and b"went wrong" in raw


# ---------------------------------------------------------------------------------------- reply headers


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("name", ["Content-Type", "content-type"])
async def test_reply_headers_win_over_defaults(target: Target, sim: BaseSimulator, stream: bool, name: str) -> None:
    """Reply(headers={"Content-Type": ...}) used to crash a non-stream answer (aiohttp refuses both
    ``content_type=`` and a Content-Type header), and a differently-cased name was sent next to the
    default on a stream."""
    sim.push(Reply("hi", headers={name: "text/plain; charset=utf-8", "cache-control": "private", "X-Extra": "1"}))
    answer = await raw_post(target, sim, stream)
    assert answer.status == 200
    assert answer.header("Content-Type") == ["text/plain; charset=utf-8"]
    assert answer.header("X-Extra") == ["1"]
    assert answer.header("Cache-Control") == ["private"]
    if stream:
        assert target.finished(sse(answer.body))
    else:
        assert target.content(orjson.loads(answer.body)) == "hi"
