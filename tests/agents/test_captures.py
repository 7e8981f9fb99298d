"""Every request Claude Code and Codex CLI were seen to send (``tests/agents/captures/``, made by ``capture.py``),
replayed as it is against ``modelway serve --demo``: the gateway must take each one (200, and a whole stream: an
Anthropic ``message_stop`` event, a Responses ``response.completed`` event), whatever fields it carries.

No npm, no node: only the gateway, so it runs in every test run (the CLIs themselves, in test_agents.py, are
opt-in). The model of each body is swapped for the gateway's model over a local DeepSeek simulator
(the captures name models the gateway may not serve, such as ``gpt-5.2-codex``, and the demo models stream slowly
on purpose); everything else is sent as recorded. Strings in the captures were cut to 160 characters (see
capture.py), which changes no field.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agent_harness as h
import pytest

CAPTURES = Path(__file__).resolve().parent / "captures"
FILES = sorted(CAPTURES.glob("*/*.json"))
MASTER_KEY = "sk-modelway-replay"
#: request headers kept from a capture (the rest are transport or client bookkeeping)
KEEP_HEADERS = {"anthropic-beta", "anthropic-version", "accept", "content-type", "x-app", "originator"}


@pytest.fixture(scope="module")
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[h.Gateway]:
    # the scripted simulator answers at once (the demo models stream slowly on purpose, for terminals)
    sim = h.scripted_simulator()
    models = [h.tool_model_config(sim.base_url, sim.api_key)]
    try:
        with h.Gateway(tmp_path_factory.mktemp("replay"), master_key=MASTER_KEY, extra_models=models) as gw:
            yield gw
    finally:
        sim.stop()


def _send(gw: h.Gateway, entry: dict[str, Any]) -> tuple[int, str, str]:
    path = entry["path"] + (f"?{entry['query']}" if entry.get("query") else "")
    body = entry.get("body")
    data = None
    if isinstance(body, dict):
        body = dict(body)
        body["model"] = h.TOOL_MODEL
        data = json.dumps(body).encode()
    req = urllib.request.Request(gw.url + path, data=data, method=entry["method"])
    for name, value in entry["headers"].items():
        if name in KEEP_HEADERS:
            req.add_header(name, value)
    # each client's own way of sending the key
    if "x-api-key" in entry["headers"]:
        req.add_header("x-api-key", MASTER_KEY)
    else:
        req.add_header("Authorization", f"Bearer {MASTER_KEY}")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode(errors="replace")


@pytest.mark.parametrize("capture", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_gateway_takes_captured_request(gateway: h.Gateway, capture: Path) -> None:
    entry = json.loads(capture.read_text())
    status, content_type, text = _send(gateway, entry)
    if entry["method"] in ("HEAD", "GET") and entry["path"] not in ("/v1/models", "/models"):
        # a probe (Claude Code's HEAD /api/hello): any answer will do but a server error
        assert status < 500, f"{entry['method']} {entry['path']}: {status} {text[:300]}"
        return
    assert status == 200, f"{entry['method']} {entry['path']}: {status} {text[:600]}"
    body = entry.get("body") or {}
    if body.get("stream"):
        assert "text/event-stream" in content_type, content_type
        end = "event: message_stop" if entry["path"].startswith("/v1/messages") else "event: response.completed"
        assert end in text, f"the stream has no {end!r}; it ends with: {text[-600:]}"
        assert "event: error" not in text and "response.failed" not in text, text[-600:]
