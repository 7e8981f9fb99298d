"""Faults below HTTP's framing, played with aiohttp's pure-Python response parser: the one aiohttp falls back to
where its C extension is not built (no wheel for the platform, or ``AIOHTTP_NO_EXTENSIONS=1``). It reports a broken
chunked encoding by raising ``aiohttp.http_exceptions.TransferEncodingError``, which is not an
``aiohttp.ClientError``: the gateway's transport does not map it.
"""

from __future__ import annotations

import aiohttp.client_proto
import aiohttp.http_parser
import pytest
import raw_fault_server as raw
from fault_harness import (
    OPENAI_CHAT,
    Broken,
    Failed,
    Outcome,
    check,
    http_client,
    openai_events,
    post,
    two_deployments,
)
from fault_rig import Rig

CUT = Broken(502, "stream_error", None)
BROKEN_CHUNKS = raw.broken_chunked(openai_events(), b'{"id": "chatcmpl-x", "choi')


@pytest.fixture
def pure_python_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """New upstream connections parse responses in Python (the gateway runs in this process)."""
    monkeypatch.setattr(aiohttp.client_proto, "HttpResponseParser", aiohttp.http_parser.HttpResponseParserPy)


@pytest.mark.parametrize("deployments", [1, 2], ids=["1dep", "2dep"])
@pytest.mark.parametrize(
    ("stream", "one"),
    [pytest.param(False, Failed(502, "stream_error", None), id="json"), pytest.param(True, CUT, id="stream")],
)
async def test_broken_chunked_encoding_with_the_pure_python_parser(
    rig: Rig, pure_python_parser: None, deployments: int, stream: bool, one: Outcome
) -> None:
    rig.raw.push(BROKEN_CHUNKS)
    expect = one if deployments == 1 else two_deployments(one)
    async with http_client() as client:
        seen = await post(client, rig.url + OPENAI_CHAT.path, OPENAI_CHAT.request(f"raw-{deployments}", stream))
    check(seen, expect, OPENAI_CHAT, stream, rig.secrets)
    assert len(rig.raw.requests) == 1
