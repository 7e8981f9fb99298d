"""Golden SSE transcripts of ``/v1/messages`` streams over non-Anthropic upstreams: the exact event sequence, event
by event, against ``golden/messages/*.sse`` (message ids, tool call ids and signatures normalised).

Set ``MODELWAY_UPDATE_GOLDEN=1`` to rewrite the files from the gateway's output (then read the diff!).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.testing import OpenAISimulator, Reply, ZhipuSimulator

GOLDEN = Path(__file__).parent / "golden" / "messages"
UPDATE = os.environ.get("MODELWAY_UPDATE_GOLDEN") == "1"

WEATHER: Any = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
TIME: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}

#: name → (model, scripted reply)
CASES: dict[str, tuple[str, Reply]] = {
    "text": ("gpt", Reply("Hello there, friend.", chunk_size=6, usage=(21, 5))),
    "reasoning_text": ("glm", Reply("It is 4.", reasoning="2 plus 2 is 4.", chunk_size=5, usage=(30, 9))),
    "text_two_tools": (
        "gpt",
        Reply(
            "Checking both.",
            tool_calls=[
                {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                {"name": "get_time", "arguments": '{"tz": "CET"}'},
            ],
            chunk_size=8,
            usage=(40, 22),
        ),
    ),
    "reasoning_tool": (
        "glm",
        Reply(
            reasoning="I need the weather.",
            tool_calls=[{"name": "get_weather", "arguments": '{"city": "杭州"}'}],
            chunk_size=7,
            usage=(35, 12),
        ),
    ),
}

_NORMALISE = [
    (re.compile(r'"msg_[0-9A-Za-z]+"'), '"msg_ID"'),
    (re.compile(r'"(?:call|toolu)_[0-9A-Za-z_-]+"'), '"TOOL_ID"'),
    (re.compile(r'"modelway\.[0-9a-f]+"'), '"SIGNATURE"'),
]


def normalise(text: str) -> str:
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text


def events(text: str) -> list[str]:
    return [block for block in text.split("\n\n") if block.strip()]


@pytest.fixture
def sims(zhipu_sim: ZhipuSimulator, openai_sim: OpenAISimulator) -> dict[str, Any]:
    return {"glm": zhipu_sim, "gpt": openai_sim}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_stream(gateway: RunningGateway, sims: dict[str, Any], name: str) -> None:
    model, reply = CASES[name]
    sims[model].push(reply)
    r = httpx.post(
        gateway.url + "/v1/messages",
        headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"},
        json={
            "model": model,
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": "What now?"}],
            "tools": [WEATHER, TIME],
        },
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = normalise(r.text)
    path = GOLDEN / f"{name}.sse"
    if UPDATE:
        path.write_text(got)
    want = path.read_text()
    got_events, want_events = events(got), events(want)
    for i, (g, w) in enumerate(zip(got_events, want_events, strict=False)):
        assert g == w, f"event {i} differs"
    assert len(got_events) == len(want_events)
