"""Upstream answers are bounded: a whole answer (JSON or stream) by ``max_answer_bytes`` of decoded bytes, one SSE
event by ``max_event_bytes``; past them the attempt fails with a StreamError, whatever the compression."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest

from modelway import AsyncClient, errors
from modelway.testing import Fault, OpenAISimulator
from modelway.transport import Transport

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator() as s:
        yield s


@contextlib.asynccontextmanager
async def client(sim: OpenAISimulator, **limits: int) -> AsyncIterator[AsyncClient]:
    transport = Transport(**limits)
    try:
        async with AsyncClient(
            providers={"openai": {"api_key": sim.api_key, "base_url": sim.base_url}},
            max_retries=0,
            transport=transport,
        ) as c:
            yield c
    finally:
        await transport.aclose()


@pytest.mark.parametrize("fault", [Fault.oversized(3 * MIB), Fault.gzip_bomb(3 * MIB)], ids=["plain", "gzip"])
async def test_a_json_answer_over_the_limit_is_a_stream_error(sim: OpenAISimulator, fault: Fault) -> None:
    sim.push(fault)
    async with client(sim, max_answer_bytes=MIB) as c:
        with pytest.raises(errors.StreamError, match=f"larger than the limit of {MIB} bytes"):
            await c.chat("openai/m", "hi")


@pytest.mark.parametrize("fault", [Fault.oversized(3 * MIB), Fault.gzip_bomb(3 * MIB)], ids=["plain", "gzip"])
async def test_a_stream_over_the_limit_ends_with_a_stream_error(sim: OpenAISimulator, fault: Fault) -> None:
    sim.push(fault)
    got = 0
    async with client(sim, max_answer_bytes=MIB) as c:
        with pytest.raises(errors.StreamError, match="larger than the limit"):
            async for chunk in await c.chat("openai/m", "hi", stream=True):
                got += len(chunk.content or "")
    # (a compressed read decodes to up to the cap at once: the bomb may fail the stream before its first chunk)
    assert (0 if fault.kind == "gzip_bomb" else 1) <= got <= MIB


async def test_an_event_over_the_limit_is_a_stream_error(sim: OpenAISimulator) -> None:
    sim.push(Fault.long_line(2 * MIB, after_chunks=1))
    async with client(sim, max_event_bytes=MIB) as c:
        with pytest.raises(errors.StreamError, match="larger than 1048576 bytes"):
            async for _ in await c.chat("openai/m", "hi", stream=True):
                pass


def test_a_gzip_bomb_does_not_inflate_in_memory(sim: OpenAISimulator) -> None:
    """A 1 GiB bomb (about 1 MB on the wire) against the default 64 MiB cap: the client process stays far below
    the decoded size (it peaked at 3.1 GiB when the whole body was read before any check)."""
    sim.push(Fault.gzip_bomb(1024 * MIB))
    child = textwrap.dedent(
        f"""
        import asyncio
        from modelway import AsyncClient, errors

        async def main():
            async with AsyncClient(
                providers={{"openai": {{"api_key": {sim.api_key!r}, "base_url": {sim.base_url!r}}}}}, max_retries=0
            ) as c:
                try:
                    await c.chat("openai/m", "hi")
                except errors.StreamError as exc:
                    print("error:", exc)
            # VmHWM: this process image's own peak (ru_maxrss carries the parent's peak over a vfork and exec,
            # which is the whole test run's when this test runs late in the suite)
            with open("/proc/self/status") as f:
                print("maxrss_kib", next(line.split()[1] for line in f if line.startswith("VmHWM:")))

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert "larger than the limit of 67108864 bytes" in out.stdout, out.stderr
    maxrss_mib = int(out.stdout.rsplit("maxrss_kib", 1)[1]) / 1024
    print(f"client peak RSS {maxrss_mib:.0f} MiB")
    assert maxrss_mib < 400, maxrss_mib


async def test_chunked_answers_on_a_pooled_connection_leave_no_callbacks_behind() -> None:
    """The guard that fails a chunked body's read when aiohttp's parser drops an error hangs a callback on the
    connection; the connection outlives the answer, so the callback must go when the body ends."""
    from aiohttp import web

    from modelway.providers.base import HTTPRequest

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"ok": ')
        await resp.write(b"true}")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/x", chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    transport = Transport(backend="aiohttp")  # (the guard is the aiohttp backend's)
    try:
        req = HTTPRequest(method="POST", url=f"http://127.0.0.1:{port}/x", headers={}, body=b"{}", provider="p")
        for _ in range(200):
            assert (await transport.send(req, timeout=10)).status == 200
        session = transport._backend._session  # type: ignore[attr-defined]
        assert session is not None
        (conns,) = session.connector._conns.values()  # type: ignore[attr-defined]
        ((protocol, _),) = conns  # one pooled connection served them all
        closed = protocol._closed
        assert closed is None or not closed._callbacks
    finally:
        await transport.aclose()
        await runner.cleanup()


class TestInflater:
    """The transport's own decoding of compressed answers (modelway.inflate)."""

    @staticmethod
    def decode(coding: str, body: bytes, left: int = 1 << 30, piece: int = 7) -> bytes:
        from modelway.inflate import Inflater

        inflater = Inflater(coding)
        out = b"".join(b"".join(inflater.feed(body[i : i + piece], left)) for i in range(0, len(body), piece))
        inflater.close()
        return out

    def test_gzip_zlib_raw_deflate_and_several_gzip_members(self) -> None:
        import gzip
        import zlib

        data = b'{"answer": "' + b"x" * 5000 + b'"}'
        assert self.decode("gzip", gzip.compress(data)) == data
        assert self.decode("GZIP ", gzip.compress(data[:10]) + gzip.compress(data[10:])) == data
        assert self.decode("deflate", zlib.compress(data)) == data
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        assert self.decode("deflate", raw.compress(data) + raw.flush()) == data

    def test_no_call_returns_more_than_the_cap_allows(self) -> None:
        import gzip

        from modelway.inflate import STEP, Inflater

        bomb = gzip.compress(bytes(50 * MIB))  # ~50 KB on the wire
        pieces = Inflater("gzip").feed(bomb, MIB)
        assert all(len(p) <= STEP for p in pieces)
        assert MIB < sum(map(len, pieces)) <= MIB + STEP  # over the cap by at most one step: the caller stops there

    def test_broken_cut_and_unasked_encodings_are_errors(self) -> None:
        import gzip

        from modelway.inflate import InflateError, Inflater

        body = gzip.compress(b"hello world" * 100)
        with pytest.raises(InflateError, match="cut short"):
            self.decode("gzip", body[: len(body) // 2])
        with pytest.raises(InflateError, match="broken"):
            self.decode("gzip", b"\x1f\x8b" + b"\xff" * 40)
        with pytest.raises(InflateError, match="not asked for"):
            Inflater("br")
