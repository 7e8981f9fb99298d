"""The fault kinds a gateway's fault-injection suite needs, checked on the wire: resets, stalls (with and
without keep-alives), oversized answers, endless lines, gzip bombs and wrong content types."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
import pytest
from sim_wire import TARGETS, Target, keepalives, raw_post, sse

from modelway.testing import BaseSimulator, Fault, Reply
from modelway.testing._bodies import GzipBody, json_expansion, stream_expansion
from modelway.testing._common import Stream

STREAM = [pytest.param(True, id="stream"), pytest.param(False, id="json")]
MiB = 1 << 20


def targets(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("target", [pytest.param(TARGETS[n], id=n) for n in names])


#: OpenAI itself, one OpenAI-compatible flavour with a prelude, and the three other wire protocols
SOME = targets("openai", "deepseek", "zhipu", "dashscope", "anthropic")
TWO = targets("openai", "zhipu")


@pytest.fixture
async def sim(target: Target) -> AsyncIterator[BaseSimulator]:
    async with target.cls() as simulator:
        yield simulator


async def ask_raw(
    target: Target, sim: BaseSimulator, stream: bool, *, decompress: bool = True
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=decompress) as http,
        http.post(target.url(sim), data=orjson.dumps(target.body(stream)), headers=target.headers(sim, stream)) as r,
    ):
        return r.status, dict(r.headers), await r.read()


# ---------------------------------------------------------------------------------------- reset


@SOME
@pytest.mark.parametrize("stream", STREAM)
async def test_reset_before_any_byte(target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.reset())
    answer = await raw_post(target, sim, stream)
    assert (answer.end, answer.head, answer.body) == ("RST", b"", b"")


@SOME
async def test_reset_after_chunks(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.reset(after_chunks=2, reply=Reply("abcdefghijkl")), Fault.reset(after_chunks=0))
    answer = await raw_post(target, sim, True)
    assert answer.end == "RST" and answer.status == 200
    assert len(sse(answer.body)) == 2 and answer.body.endswith(b"\n\n")  # both events, whole, then the reset
    answer = await raw_post(target, sim, True)
    assert answer.end == "RST" and answer.status == 200 and sse(answer.body) == []


@SOME
async def test_reset_in_the_middle_of_a_json_body(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.reset(after_chunks=0))
    answer = await raw_post(target, sim, False)
    assert answer.end == "RST" and answer.status == 200
    assert int(answer.header("Content-Length")[0]) // 2 == len(answer.body) > 0


@TWO
@pytest.mark.parametrize("stream", STREAM)
async def test_reset_is_a_connection_error_for_aiohttp(target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.reset(), Fault.reset(1))
    with pytest.raises(aiohttp.ClientConnectionError):  # ServerDisconnectedError or ClientOSError
        await ask_raw(target, sim, stream)
    with pytest.raises(aiohttp.ClientPayloadError, match="Connection reset by peer"):
        await ask_raw(target, sim, stream)


# ---------------------------------------------------------------------------------------- stall


def largest_gap(arrivals: list[tuple[float, bytes]]) -> float:
    times = [t for t, _ in arrivals]
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


@targets("openai", "zhipu", "dashscope", "anthropic")
async def test_stall_then_resume(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.stall(after_chunks=1, seconds=0.3, reply=Reply("abcdefgh")))
    answer = await raw_post(target, sim, True)
    assert answer.end == "EOF" and largest_gap(answer.arrivals) >= 0.29
    before = b"".join(piece for t, piece in answer.arrivals if t < 0.25)
    assert len(sse(before.partition(b"\r\n\r\n")[2])) == 1  # one event, then silence
    assert target.finished(sse(answer.body)) and keepalives(answer.body) == 0


@targets("openai", "zhipu", "dashscope", "anthropic")
async def test_stall_with_keepalives(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.stall(after_chunks=2, seconds=0.35, keepalive=0.1))
    answer = await raw_post(target, sim, True)
    assert answer.end == "EOF" and keepalives(answer.body) >= 2  # at 0.1, 0.2 (and 0.3) s
    assert largest_gap(answer.arrivals) < 0.2  # never silent: a comment every 0.1 s
    data_events = answer.body.split(b": keep-alive\n\n")
    assert len(sse(data_events[0])) == 2 and target.finished(sse(answer.body))


@TWO
async def test_stall_forever_until_the_client_leaves(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.stall(after_chunks=1), Fault.stall(after_chunks=0, keepalive=0.05))
    answer = await raw_post(target, sim, True, read_for=0.3)
    left = time.monotonic()
    assert answer.end == "open" and len(sse(answer.body)) == 1
    answer = await raw_post(target, sim, True, read_for=0.3)
    assert answer.end == "open" and sse(answer.body) == [] and keepalives(answer.body) >= 4
    deadline = time.monotonic() + 0.5
    while len(sim.disconnects) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110 (a plain list)
        await asyncio.sleep(0.01)
    assert len(sim.disconnects) == 2 and sim.disconnects[0] - left < 0.2


@TWO
@pytest.mark.parametrize("stream", STREAM)
async def test_a_client_gone_before_the_headers_is_a_disconnect(
    target: Target, sim: BaseSimulator, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # a caller that gives up at once (a gateway's timeout on a stalled deployment): the answer's headers find the
    # connection closing, which is recorded like any other disconnect, with no "Error handling request" traceback
    sim.push(Fault.stall())
    payload = orjson.dumps(target.body(stream))
    lines = [f"POST {target.url(sim)[len(sim.url) :]} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in target.headers(sim, stream).items()]
    with socket.create_connection(("127.0.0.1", sim.port)) as client:  # the whole request, then closed at once
        client.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
    deadline = time.monotonic() + 2.0
    while not sim.disconnects and time.monotonic() < deadline:  # noqa: ASYNC110 (a plain list)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # time for a second record, or for aiohttp to log the handler's error
    assert len(sim.disconnects) == 1 and sim.pending == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@TWO
async def test_stall_of_a_json_body(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.stall(seconds=0.3, reply=Reply("stalled")))
    answer = await raw_post(target, sim, False)
    assert answer.end == "EOF" and largest_gap(answer.arrivals) >= 0.29
    before = b"".join(piece for t, piece in answer.arrivals if t < 0.25).partition(b"\r\n\r\n")[2]
    assert int(answer.header("Content-Length")[0]) == len(answer.body) and len(before) == len(answer.body) // 2
    assert target.content(orjson.loads(answer.body)) == "stalled"


@TWO
async def test_stall_of_a_json_body_with_keepalives(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.stall(seconds=0.25, keepalive=0.1, reply=Reply("stalled")))
    answer = await raw_post(target, sim, False)
    assert answer.end == "EOF" and answer.body.startswith(b"\n\n{") and largest_gap(answer.arrivals) < 0.2
    assert target.content(orjson.loads(answer.body)) == "stalled"


# ---------------------------------------------------------------------------------------- oversized


@SOME
async def test_oversized_json(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.oversized(3 * MiB))
    status, headers, raw = await ask_raw(target, sim, False)
    assert status == 200 and int(headers["Content-Length"]) == len(raw)
    assert target.content(orjson.loads(raw)) == "x" * (3 * MiB)


@SOME
async def test_oversized_stream(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.oversized(3 * MiB))
    status, headers, raw = await ask_raw(target, sim, True)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert 3 * MiB - 2048 <= len(raw) <= 3 * MiB
    evs = sse(raw)
    assert len(evs) > 2000 and target.finished(evs)
    assert all(orjson.loads(e.data) for e in evs if e.data != "[DONE]")
    assert max(len(e.data) for e in evs) < 2048  # many ordinary events, not one huge one


def test_huge_bodies_are_never_built() -> None:
    body = json_expansion(b'{"content":"modelway-sim-filler-4f1c9e27"}', 10 << 30)
    assert body.size == 10 << 30 | len('{"content":""}') and len(body.unit) <= MiB
    event = b'data: {"c":"modelway-sim-filler-4f1c9e27"}\n\n'
    stream = stream_expansion(b"", Stream([b"data: {}\n\n", event, b"data: {}\n\n"], b"data: [DONE]\n\n"), 1 << 30)
    assert stream.size == 1 << 30 and len(stream.unit) <= MiB
    gz = GzipBody(json_expansion(b'{"content":"modelway-sim-filler-4f1c9e27"}', 1 << 30, total=True))
    assert gz.size < 2 * MiB  # about 1000:1


# ---------------------------------------------------------------------------------------- long line


@SOME
async def test_long_line(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.long_line(2 * MiB, after_chunks=1))
    answer = await raw_post(target, sim, True)
    assert answer.status == 200 and answer.end == "EOF"
    first, sep, line = answer.body.rpartition(b"\n\n")
    assert len(sse(first + sep)) == 1
    assert line.startswith(b"data: xxx") and len(line) == 2 * MiB and b"\n" not in line


@TWO
async def test_long_line_ends_the_body_and_closes(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.long_line(MiB))
    status, headers, raw = await ask_raw(target, sim, True)  # HTTP/1.1: the chunked body ends properly
    assert status == 200 and headers["Connection"] == "close" and len(raw) == MiB and raw.startswith(b"data: x")


@TWO
async def test_long_line_for_json_is_oversized(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.long_line(MiB))
    status, _, raw = await ask_raw(target, sim, False)
    assert status == 200 and b"\n" not in raw and target.content(orjson.loads(raw)) == "x" * MiB


# ---------------------------------------------------------------------------------------- gzip bomb


@SOME
@pytest.mark.parametrize("stream", STREAM)
async def test_gzip_bomb(target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.gzip_bomb(8 * MiB))
    status, headers, wire = await ask_raw(target, sim, stream, decompress=False)
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert len(wire) < 8 * MiB // 200
    if not stream:
        assert int(headers["Content-Length"]) == len(wire)
    decoded = zlib.decompress(wire, wbits=31)  # checks the CRC-32 and the length too
    assert len(decoded) == 8 * MiB
    if stream:
        evs = sse(decoded)
        assert target.finished(evs) and all(orjson.loads(e.data) for e in evs if e.data != "[DONE]")
    else:
        content = target.content(orjson.loads(decoded))
        assert len(content) > 8 * MiB - 1024 and set(content) == {"x"}


@TWO
async def test_gzip_bomb_inflates_in_an_ordinary_client(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.gzip_bomb(4 * MiB))
    status, _, raw = await ask_raw(target, sim, False)  # aiohttp decompresses
    assert status == 200 and len(raw) == 4 * MiB


# ---------------------------------------------------------------------------------------- content types


@SOME
@pytest.mark.parametrize("stream", STREAM)
async def test_html_error_page(target: Target, sim: BaseSimulator, stream: bool) -> None:
    sim.push(Fault.content_type("text/html", status=502), Fault.content_type("text/html; charset=utf-8"))
    status, headers, raw = await ask_raw(target, sim, stream)
    assert status == 502 and headers["Content-Type"] == "text/html"
    assert b"<title>502 Bad Gateway</title>" in raw
    status, headers, raw = await ask_raw(target, sim, stream)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8" and b"Welcome to nginx" in raw


@SOME
async def test_json_answer_to_a_stream_request(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.json_for_stream(Reply("plain")), Fault.content_type("application/json"))
    for _ in range(2):
        status, headers, raw = await ask_raw(target, sim, True)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert not raw.startswith(b"\n") and target.content(orjson.loads(raw)) in ("plain", "You said: hello")


@TWO
async def test_content_type_with_a_body_and_events_for_json(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.content_type("text/plain", "upstream said no"), Fault.content_type("text/event-stream"))
    status, headers, raw = await ask_raw(target, sim, False)
    assert (status, headers["Content-Type"], raw) == (200, "text/plain", b"upstream said no")
    status, headers, raw = await ask_raw(target, sim, False)
    assert headers["Content-Type"] == "text/event-stream" and target.finished(sse(raw))


@TWO
async def test_json_for_stream_leaves_a_json_request_alone(target: Target, sim: BaseSimulator) -> None:
    sim.push(Fault.json_for_stream(Reply("plain")))
    status, _, raw = await ask_raw(target, sim, False)
    assert status == 200 and target.content(orjson.loads(raw)) == "plain"


# ---------------------------------------------------------------------------------------- constructors


def test_fault_arguments_are_checked() -> None:
    bad_calls: list[Callable[[], Fault]] = [
        lambda: Fault.reset(-1),
        lambda: Fault.stall(-1),
        lambda: Fault.stall(seconds=-1),
        lambda: Fault.stall(keepalive=0),
        lambda: Fault.oversized(-1),
        lambda: Fault.long_line(-1),
        lambda: Fault.gzip_bomb(-1),
    ]
    for bad in bad_calls:
        with pytest.raises(ValueError):
            bad()
    assert Fault.reset().after_chunks is None and Fault.stall().seconds is None
    assert Fault.content_type("text/html", "<p>x</p>").body == b"<p>x</p>"
    assert Fault.json_for_stream().media_type == "application/json"
