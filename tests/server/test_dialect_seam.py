"""The dialect seam: a dialect is one module plus one route line, and the control plane applies to it unchanged.

A toy dialect (``{"ask": ...}`` → ``{"said": ...}``, streamed as ``said:`` lines) is plugged into the app's route
table the way the real ones are; through it a virtual key's limits, the usage ledger (with its endpoint), the
dialect's own error shape (before and inside a stream) and the stream's own end all work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from gw import RunningGateway
from test_control_plane import call, cp_config, new_key

from modelway.errors import InvalidRequestError, ModelwayError
from modelway.server import app as app_module
from modelway.server.dialects import Call, Dialect, StreamRenderer
from modelway.server.errors import error_payload
from modelway.testing import Fault, OpenAISimulator, Reply
from modelway.types import ChatCompletion, ChatCompletionChunk
from modelway.usage.records import ENDPOINTS
from modelway.validate import chat_request


class ToyRenderer(StreamRenderer):
    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        text = "".join(c.delta.content or "" for c in chunk.choices)
        return f"said: {text}\n".encode() if text else b""

    async def end(self) -> bytes:
        return b"over\n"

    def error(self, exc: ModelwayError, request_id: str | None) -> bytes:
        return f"broken: {exc.message}\n".encode()


class ToyDialect(Dialect):
    endpoint = "chat"  # a real dialect adds its own label to usage.records.ENDPOINTS

    async def parse(self, data: dict[str, Any], req: Any, gw: Any) -> Call:
        ask = data.get("ask")
        if not isinstance(ask, str):
            raise InvalidRequestError("ask must be a string", param="ask")
        return Call(str(data.get("model")), chat_request(str(data.get("model")), ask, stream=bool(data.get("s"))))

    def body(self, resp: ChatCompletion, call: Call) -> bytes:
        return orjson.dumps({"said": resp.content})

    def stream(self, call: Call, request_id: str) -> StreamRenderer:
        return ToyRenderer()

    def error(self, exc: ModelwayError, request_id: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        status, body, _ = error_payload(exc, request_id)
        return status, orjson.dumps({"oops": body["error"]["message"]}), []


@pytest.fixture(scope="module")
def toy(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    route = ("POST", "/toy")
    app_module._ROUTES[route] = app_module._chat(ToyDialect())  # the one route line
    app_module._DIALECT_OF["/toy"] = app_module._ROUTES[route][1]
    try:
        yield start_gateway(cp_config(openai_sim, tmp_path_factory.mktemp("toy") / "toy.db"))
    finally:
        del app_module._ROUTES[route], app_module._DIALECT_OF["/toy"]


async def test_a_toy_dialect_answers_and_is_recorded(toy: RunningGateway, openai_sim: OpenAISimulator) -> None:
    secret, key_id = await new_key(toy, rpm=2)
    openai_sim.push(Reply("hello", usage=(3, 2)))
    status, _, body = await call(toy, "POST", "/toy", {"model": "gpt", "ask": "hi"}, key=secret)
    assert (status, body) == (200, {"said": "hello"})
    openai_sim.push(Reply("a b c", chunk_size=2))
    status, _, text = await call(toy, "POST", "/toy", {"model": "gpt", "ask": "hi", "s": True}, key=secret)
    assert status == 200 and text == "said: a \nsaid: b \nsaid: c\nover\n"
    # the key's rpm applies, and the refusal is told in the toy's own shape
    status, _, body = await call(toy, "POST", "/toy", {"model": "gpt", "ask": "hi"}, key=secret)
    assert status == 429 and "oops" in body
    _, _, records = await call(toy, "GET", f"/admin/usage/records?key_id={key_id}")
    assert sorted((r["status"], r["stream"]) for r in records["data"]) == [(200, False), (200, True), (429, False)]


async def test_errors_come_in_the_dialect_s_shape(toy: RunningGateway, openai_sim: OpenAISimulator) -> None:
    status, _, body = await call(toy, "POST", "/toy", {"model": "gpt", "ask": 5})
    assert status == 400 and body == {"oops": "ask must be a string"}
    status, _, body = await call(toy, "POST", "/toy", {"model": "gpt", "ask": "x"}, key="mw-wrong")
    assert status == 401 and set(body) == {"oops"}
    status, _, body = await call(toy, "GET", "/toy")
    assert status == 405 and set(body) == {"oops"}
    openai_sim.push(Fault.error_frame(after_chunks=2, message="upstream fell over", reply=Reply("a b c d")))
    status, _, text = await call(toy, "POST", "/toy", {"model": "gpt", "ask": "x", "s": True})
    assert status == 200 and text.startswith("said: ") and text.endswith("\n") and "broken: " in text
    assert text == "said: a b \nbroken: upstream fell over\n"  # the error ends it: no "over"


def test_every_dialect_has_a_known_endpoint_label() -> None:
    dialects = {d for _, d in app_module._ROUTES.values()}
    assert {d.endpoint for d in dialects} <= set(ENDPOINTS)
    assert {"chat", "dbgpt", "messages", "responses", "completions"} <= {d.endpoint for d in dialects}
