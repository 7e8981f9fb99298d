"""Wire-level helpers for the simulator fault tests: how to ask each simulator for a chat answer, a raw
socket client that tells a reset from a clean close, and a minimal SSE splitter (independent of the
gateway's own decoder)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelway.testing import (
    AnthropicSimulator,
    BaseSimulator,
    DashScopeCompatibleSimulator,
    DashScopeSimulator,
    DeepSeekSimulator,
    MoonshotSimulator,
    OpenAISimulator,
    ZhipuSimulator,
)

USER = [{"role": "user", "content": "hello"}]


@dataclass(frozen=True)
class Target:
    """How to ask one simulator for a chat answer and read it back."""

    cls: type[BaseSimulator]
    path: str  # under base_url

    def url(self, sim: BaseSimulator) -> str:
        return sim.base_url + self.path

    def body(self, stream: bool) -> dict[str, Any]:
        if self.cls is DashScopeSimulator:
            return {"model": "qwen-plus", "input": {"messages": USER}, "parameters": {"incremental_output": True}}
        body: dict[str, Any] = {"model": "m", "messages": USER, "stream": stream}
        if self.cls is AnthropicSimulator:
            body["max_tokens"] = 64
        return body

    def headers(self, sim: BaseSimulator, stream: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {sim.api_key}", "Content-Type": "application/json"}
        if stream and self.cls is DashScopeSimulator:
            headers["X-DashScope-SSE"] = "enable"
        return headers

    def content(self, answer: Any) -> str:
        """The assistant text of a non-stream answer."""
        if self.cls is AnthropicSimulator:
            return str(answer["content"][0]["text"])
        if self.cls is DashScopeSimulator:
            return str(answer["output"]["text"])
        return str(answer["choices"][0]["message"]["content"])

    def finished(self, events: list[Event]) -> bool:
        """Whether a stream ended the way the provider ends a complete one."""
        if not events:
            return False
        last = events[-1]
        if self.cls is AnthropicSimulator:
            return last.event == "message_stop"
        if self.cls is DashScopeSimulator:
            return bool(orjson.loads(last.data)["output"]["finish_reason"] == "stop")
        return last.data == "[DONE]"

    def is_error(self, event: Event) -> bool:
        """Whether ``event`` is the provider's mid-stream error frame."""
        if event.event == "error":  # DashScope, Anthropic
            return True
        data = orjson.loads(event.data)
        return isinstance(data, dict) and "error" in data


CHAT = "/chat/completions"
TARGETS: dict[str, Target] = {
    "openai": Target(OpenAISimulator, CHAT),
    "deepseek": Target(DeepSeekSimulator, CHAT),
    "moonshot": Target(MoonshotSimulator, CHAT),
    "dashscope-compatible": Target(DashScopeCompatibleSimulator, CHAT),
    "zhipu": Target(ZhipuSimulator, CHAT),
    "dashscope": Target(DashScopeSimulator, "/services/aigc/text-generation/generation"),
    "anthropic": Target(AnthropicSimulator, "/v1/messages"),
}


# ---------------------------------------------------------------------------------------- SSE


@dataclass
class Event:
    data: str
    event: str | None = None
    comments: list[str] = field(default_factory=list)


def sse(body: bytes) -> list[Event]:
    """The events of ``body`` (comment-only blocks, such as keep-alives, are left out); a last block
    without its blank line counts too."""
    events = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data: list[str] = []
        event = Event("")
        for line in block.decode().split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if not line:
                continue
            if not name:
                event.comments.append(value)
            elif name == "data":
                data.append(value)
            elif name == "event":
                event.event = value
        if data:
            event.data = "\n".join(data)
            events.append(event)
    return events


def keepalives(body: bytes) -> int:
    return body.count(b": keep-alive\n\n")


# ---------------------------------------------------------------------------------------- raw HTTP


@dataclass
class RawAnswer:
    head: bytes  # status line and headers (empty when none arrived)
    body: bytes
    #: "EOF" (a clean close), "RST" (connection reset) or "open" (still open when reading stopped)
    end: str
    #: (seconds since the request was sent, bytes) as they arrived
    arrivals: list[tuple[float, bytes]]

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def header(self, name: str) -> list[str]:
        lines = self.head.decode().split("\r\n")[1:]
        return [v.strip() for n, _, v in (line.partition(":") for line in lines) if n.lower() == name.lower()]


async def raw_post(
    target: Target, sim: BaseSimulator, stream: bool, *, read_for: float = 5.0, body: Any = None
) -> RawAnswer:
    """POST over a plain socket with HTTP/1.0 (so a stream's body is not chunk-encoded: the bytes read
    are the events as sent) and read until the connection ends or ``read_for`` seconds have passed."""
    payload = orjson.dumps(target.body(stream) if body is None else body)
    path = target.url(sim)[len(sim.url) :]
    lines = [f"POST {path} HTTP/1.0", "Host: 127.0.0.1", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in target.headers(sim, stream).items()]
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    start = time.monotonic()
    writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + payload)
    got, end, arrivals = b"", "open", []
    try:
        while True:
            left = start + read_for - time.monotonic()
            if left <= 0:
                break
            try:
                piece = await asyncio.wait_for(reader.read(1 << 20), left)
            except TimeoutError:
                break
            if not piece:
                end = "EOF"
                break
            arrivals.append((time.monotonic() - start, piece))
            got += piece
    except ConnectionResetError:
        end = "RST"
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, rest = got.partition(b"\r\n\r\n")
    return RawAnswer(head, rest, end, arrivals)
