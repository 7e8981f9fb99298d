"""Hand-picked odd input, sent byte by byte over raw sockets to a running gateway: each gets a clear 4xx in the OpenAI
error shape ``{"error": {"message", "type", "param", "code"}}`` naming the field where there is one, in bounded time.
Never a 5xx, never a hang, never a traceback in the gateway's log.

The gateway here has small ``server.header_timeout`` and ``server.body_timeout`` (so the slow-client cases are quick),
the default 10 MiB body limit, a SQLite store (the admin API) and simulators upstream.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gw import MASTER_KEY, RunningGateway, gateway_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelway.testing import DashScopeSimulator, OpenAISimulator, ZhipuSimulator

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_BODY = 10 * 1024 * 1024
#: how long any answer may take here (a hang fails the test instead of blocking the suite)
PATIENCE = 8.0

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]

# -- the gateway ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    zhipu_sim: ZhipuSimulator,
    dashscope_sim: DashScopeSimulator,
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunningGateway:
    d = tmp_path_factory.mktemp("odd")
    cfg = gateway_config(zhipu_sim, dashscope_sim, openai_sim, header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT)
    cfg["store"] = {"url": f"sqlite:///{d / 'modelway.db'}"}
    cfg["usage"] = {"spill_path": str(d / "spill.jsonl"), "flush_interval": 0.05}
    return start_gateway(cfg)


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_traceback_in_the_log(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test got, the gateway must not have crashed to answer it."""
    handler = _Tracebacks()
    loggers = [logging.getLogger(name) for name in ("modelway", "uvicorn.error", "asyncio")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    assert not handler.records, "the gateway logged a traceback:\n" + "\n".join(
        logging.Formatter().format(r) for r in handler.records
    )


# -- raw HTTP -------------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    #: seconds from the call to :meth:`Conn.answer` to the whole answer
    elapsed: float = 0.0
    raw_head: bytes = field(default=b"", repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One client connection: send any bytes, read HTTP/1.1 answers (with Content-Length, or up to the close)."""

    def __init__(self, gw: RunningGateway, timeout: float = PATIENCE) -> None:
        self.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> Conn:
        self.sock.sendall(data)
        return self

    def send_in_background(self, chunks: Iterator[bytes]) -> threading.Thread:
        """Send ``chunks`` from a thread (a body or headers larger than the kernel buffers, or a trickle), stopping
        at the first error: the gateway may answer and close before the client is done."""

        def run() -> None:
            try:
                for chunk in chunks:
                    self.sock.sendall(chunk)
            except OSError:
                pass

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no answer within {self.sock.gettimeout()} s (got {self.buf[:200]!r})") from None
        except ConnectionResetError:
            data = b""
        self.buf += data
        return bool(data)

    def answer(self, *, to_head: bool = False) -> Answer:
        """The next response; ``to_head``: the answer to a HEAD request, which has no body whatever its Content-Length
        says (reading one would wait for the gateway to close the connection)."""
        start = time.monotonic()
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"the connection closed without an answer (got {self.buf[:200]!r})")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        _, status, reason = (status_line.split(" ", 2) + [""])[:3]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if to_head:
            body = b""
        elif "content-length" in headers:
            size = int(headers["content-length"])
            while len(self.buf) < size:
                if not self._fill():
                    break
            body, self.buf = self.buf[:size], self.buf[size:]
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return Answer(int(status), reason, headers, body, time.monotonic() - start, head)

    def closed(self, within: float = 2.0) -> bool:
        """Whether the gateway closes the connection (nothing more arrives) within ``within`` seconds."""
        self.sock.settimeout(within)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True


def request(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    key: str | None = MASTER_KEY,
    version: str = "HTTP/1.1",
) -> bytes:
    h = {"Host": "gateway"}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    if body is not None:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in h.items() if v is not None)]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")


def call(gw: RunningGateway, method: str, path: str, body: bytes | None = None, **kw: Any) -> Answer:
    with Conn(gw) as c:
        return c.send(request(method, path, body, **kw)).answer(to_head=method == "HEAD")


def post_json(gw: RunningGateway, path: str, data: Any, **kw: Any) -> Answer:
    return call(gw, "POST", path, json.dumps(data).encode(), **kw)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": MESSAGES, **extra}


class _Any:
    pass


ANY: Any = _Any()


def error(
    answer: Answer, status: int, *, param: str | None | Any = ANY, code: str | None | Any = ANY
) -> dict[str, Any]:
    """Assert ``answer`` is ``status`` in the OpenAI error shape (``param``, ``code`` if given) and return the error."""
    assert answer.status == status, f"expected {status}, got {answer.status}: {answer.body[:500]!r}"
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
    body = json.loads(answer.body)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    if param is not ANY:
        assert err["param"] == param, err
    if code is not ANY:
        assert err["code"] == code, err
    return err


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text of ``depth`` nested arrays around ``leaf``."""
    return "[" * depth + leaf + "]" * depth


def padded(prefix: bytes, size: int, suffix: bytes) -> bytes:
    """``prefix``, x's, ``suffix``: ``size`` bytes in all."""
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


# -- bodies ---------------------------------------------------------------------------------------------------------

JSON_ROUTES = [CHAT, "/chat/completions", "/v1/embeddings", "/api/v2/chat/completions", "/admin/keys"]

NOT_JSON = {
    "garbage": b"{not json",
    "text": b"hello",
    "trailing comma": b'{"model": "gpt",}',
    "truncated": b'{"model": "gpt", "messages": [',
    "two documents": b'{"model": "gpt"} {"model": "gpt"}',
    "invalid utf-8": b"\xff\xfe\xfd",
    "invalid utf-8 in a string": b'{"model": "gpt", "messages": "\xff"}',
    "lone surrogate": b'{"model": "gpt", "messages": "\\ud800"}',
    "NaN": b'{"model": "gpt", "messages": "hi", "temperature": NaN}',
    "Infinity": b'{"model": "gpt", "messages": "hi", "temperature": Infinity}',
    "-Infinity": b'{"model": "gpt", "messages": "hi", "temperature": -Infinity}',
    "a number beyond double": b'{"model": "gpt", "messages": "hi", "temperature": 1e400}',
    "a form": b"model=gpt&messages=hi",
    "nested past the parser's limit": ('{"model": "gpt", "x": ' + nested(2000) + "}").encode(),
}


class TestBodies:
    @pytest.mark.parametrize("path", JSON_ROUTES)
    @pytest.mark.parametrize("body", list(NOT_JSON.values()), ids=list(NOT_JSON))
    def test_a_body_that_is_not_json_is_400(self, gw: RunningGateway, path: str, body: bytes) -> None:
        error(call(gw, "POST", path, body), 400, param=None, code="invalid_json")

    @pytest.mark.parametrize("path", JSON_ROUTES)
    def test_an_empty_body_is_400(self, gw: RunningGateway, path: str) -> None:
        error(call(gw, "POST", path, b""), 400, param=None, code="invalid_json")
        error(call(gw, "POST", path, headers={"Content-Length": "0"}), 400, param=None, code="invalid_json")

    @pytest.mark.parametrize("path", JSON_ROUTES)
    @pytest.mark.parametrize("body", [b"[]", b"null", b'"chat"', b"42", b"true", b'[{"model": "gpt"}]', b" \n "])
    def test_a_body_that_is_no_object_is_400(self, gw: RunningGateway, path: str, body: bytes) -> None:
        error(call(gw, "POST", path, body), 400, param=None, code="invalid_json")

    def test_duplicate_keys_the_last_one_counts(self, gw: RunningGateway) -> None:
        """As in JavaScript's JSON.parse and Python's json: the request is served, with the last value."""
        body = b'{"model": "no-such-model", "messages": "hi", "model": "gpt"}'
        answer = call(gw, "POST", CHAT, body)
        assert answer.status == 200, answer.body
        assert answer.json()["model"] == "gpt"
        error(call(gw, "POST", CHAT, b'{"model": "gpt", "messages": "hi", "messages": 5}'), 400, param="messages")

    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/json; charset=latin-1",
         "application/xml", "", "*/*"],
    )  # fmt: skip
    def test_the_content_type_is_not_what_counts_the_body_is(self, gw: RunningGateway, content_type: str) -> None:
        """A JSON body is served whatever its Content-Type says (``curl -d`` sends a form type); a body that is not
        JSON is 400 whatever its Content-Type says."""
        answer = call(gw, "POST", CHAT, json.dumps(chat()).encode(), headers={"Content-Type": content_type})
        assert answer.status == 200, answer.body
        error(call(gw, "POST", CHAT, b"model=gpt", headers={"Content-Type": content_type}), 400, code="invalid_json")

    def test_a_body_declared_over_the_limit_is_413_before_it_is_sent(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            c.send(request("POST", CHAT, headers={"Content-Length": str(MAX_BODY + 1)}))
            answer = c.answer()
        error(answer, 413, code="request_too_large")
        assert answer.elapsed < 2

    @pytest.mark.parametrize("framing", ["content-length", "chunked"])
    def test_a_body_over_the_limit_is_413(self, gw: RunningGateway, framing: str) -> None:
        body = padded(b'{"model": "gpt", "messages": "', MAX_BODY + 1, b'"}')
        if framing == "chunked":
            head = request("POST", CHAT, headers={"Transfer-Encoding": "chunked"})
            step = 256 * 1024
            chunks = [
                b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step]) for i in range(0, len(body), step)
            ]
            parts = iter([head, *chunks, b"0\r\n\r\n"])
        else:
            parts = iter([request("POST", CHAT, body)])
        with Conn(gw) as c:
            c.send_in_background(parts)
            error(c.answer(), 413, code="request_too_large")

    def test_a_body_at_the_limit_is_read(self, gw: RunningGateway) -> None:
        """All of it: the field at fault is at its very end (a valid body would send 10 MiB upstream)."""
        body = padded(b'{"model": "gpt", "messages": "hi", "pad": "', MAX_BODY, b'", "temperature": 5}')
        with Conn(gw) as c:
            c.send_in_background(iter([request("POST", CHAT, body)]))
            error(c.answer(), 400, param="temperature")

    def test_a_large_valid_prompt_is_served(self, gw: RunningGateway) -> None:
        body = padded(b'{"model": "gpt", "messages": "', 5 * 1024 * 1024, b'"}')
        with Conn(gw) as c:
            c.send_in_background(iter([request("POST", CHAT, body)]))
            answer = c.answer()
        assert answer.status == 200, answer.body[:300]

    def test_a_body_that_stops_coming_is_408(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            c.send(request("POST", CHAT, headers={"Content-Length": "100"}) + b'{"model": "gpt"')
            answer = c.answer()
        error(answer, 408, code="request_timeout")
        assert BODY_TIMEOUT - 0.1 <= answer.elapsed <= BODY_TIMEOUT + 2

    def test_a_chunked_body_that_stops_coming_is_408(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            c.send(request("POST", CHAT, headers={"Transfer-Encoding": "chunked"}) + b'5\r\n{"mod\r\n')
            answer = c.answer()
        error(answer, 408, code="request_timeout")
        assert answer.elapsed <= BODY_TIMEOUT + 2

    @pytest.mark.parametrize("framing", [{"Content-Length": "100"}, {"Transfer-Encoding": "chunked"}])
    def test_a_body_that_never_starts_is_408(self, gw: RunningGateway, framing: dict[str, str]) -> None:
        with Conn(gw, timeout=BODY_TIMEOUT + 1.5) as c:
            c.send(request("POST", CHAT, headers=framing))
            answer = c.answer()
        error(answer, 408, code="request_timeout")

    def test_a_chunked_body_is_read(self, gw: RunningGateway) -> None:
        body = json.dumps(chat()).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7))
        with Conn(gw) as c:
            c.send(request("POST", CHAT, headers={"Transfer-Encoding": "chunked"}) + chunks + b"0\r\n\r\n")
            answer = c.answer()
        assert answer.status == 200, answer.body
        assert answer.json()["choices"][0]["message"]["content"]

    @pytest.mark.parametrize(
        "chunks",
        [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"-1\r\n\r\n", b"ffffffffffffffffff\r\n"],
        ids=["not hex", "longer than said", "negative", "overflowing size"],
    )
    def test_a_malformed_chunked_body_is_400_and_the_connection_closes(self, gw: RunningGateway, chunks: bytes) -> None:
        with Conn(gw) as c:
            c.send(request("POST", CHAT, headers={"Transfer-Encoding": "chunked"}) + chunks)
            answer = c.answer()
            assert answer.status == 400, answer
            assert c.closed()


# -- request smuggling, HTTP versions, pipelining -------------------------------------------------------------------


class TestFraming:
    @pytest.mark.parametrize(
        "headers",
        [
            {"Content-Length": "4", "Transfer-Encoding": "chunked"},
            {"Transfer-Encoding": "chunked", "Content-Length": "100"},
        ],
        ids=["CL then TE", "TE then CL"],
    )
    def test_content_length_with_transfer_encoding_is_refused(
        self, gw: RunningGateway, headers: dict[str, str]
    ) -> None:
        """Both framings at once is how requests are smuggled past a proxy: refused 400, the connection closed, and
        nothing after it is served."""
        smuggled = request("GET", "/admin/keys")
        with Conn(gw) as c:
            c.send(request("POST", CHAT, headers=headers) + b"0\r\n\r\n" + smuggled)
            answer = c.answer()
            assert answer.status == 400, answer
            assert c.closed()
            assert b"HTTP/1.1 200" not in c.buf

    def test_two_different_content_lengths_are_refused(self, gw: RunningGateway) -> None:
        body = json.dumps(chat()).encode()
        with Conn(gw) as c:
            head = request("POST", CHAT, headers={"Content-Length": str(len(body))})
            c.send(head[:-2] + f"Content-Length: {len(body) + 5}\r\n\r\n".encode() + body)
            answer = c.answer()
            assert answer.status == 400, answer
            assert c.closed()

    def test_a_request_the_parser_refuses_is_answered_in_the_error_shape(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            c.send(
                request("POST", CHAT, headers={"Content-Length": "4", "Transfer-Encoding": "chunked"}) + b"0\r\n\r\n"
            )
            error(c.answer(), 400)

    @pytest.mark.parametrize(
        "raw",
        [
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
            b"GET /health\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS client hello
            b"GET\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: \x7f\r\n\r\n",
            b"GET /admin/usage?\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        ],
        ids=[
            "NUL in a value",
            "no colon",
            "space in a name",
            "NUL in the target",
            "HTTP/9.9",
            "TLS",
            "no target",
            "DEL in a value",
            "DEL in the target",
        ],  # fmt: skip
    )
    def test_a_malformed_request_is_400_and_the_connection_closes(self, gw: RunningGateway, raw: bytes) -> None:
        with Conn(gw) as c:
            answer = c.send(raw).answer()
            assert answer.status == 400, answer
            assert c.closed()

    def test_http_1_0(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            answer = c.send(request("GET", "/health", version="HTTP/1.0")).answer()
            assert answer.status == 200 and answer.json() == {"status": "ok"}
            assert c.closed()
        with Conn(gw) as c:
            answer = c.send(request("POST", CHAT, json.dumps(chat()).encode(), version="HTTP/1.0")).answer()
            assert answer.status == 200, answer.body
            assert c.closed()
        with Conn(gw) as c:
            error(c.send(request("POST", CHAT, b"[]", version="HTTP/1.0")).answer(), 400, code="invalid_json")
            assert c.closed()

    def test_pipelined_requests_are_answered_in_order(self, gw: RunningGateway) -> None:
        requests = [
            request("GET", "/v1/models"),
            request("POST", CHAT, b"{broken"),
            request("DELETE", "/v1/models"),
            request("POST", CHAT, json.dumps(chat()).encode()),
            request("GET", "/nowhere"),
            request("GET", "/health", headers={"Connection": "close"}),
        ]
        with Conn(gw) as c:
            c.send(b"".join(requests))
            answers = [c.answer() for _ in requests]
            assert c.closed()
        assert [a.status for a in answers] == [200, 400, 405, 200, 404, 200]
        error(answers[1], 400, code="invalid_json")
        error(answers[2], 405)
        error(answers[4], 404)
        assert answers[3].json()["object"] == "chat.completion"

    def test_a_connection_serves_requests_after_errors(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            for _ in range(3):
                error(c.send(request("POST", CHAT, b"null")).answer(), 400)
                error(c.send(request("GET", "/v1/models", key="wrong")).answer(), 401)
                assert c.send(request("GET", "/v1/models")).answer().status == 200


# -- integers -------------------------------------------------------------------------------------------------------

BIG = [2**64, 2**64 - 1, 10**30, -(2**64), 2**63]


class TestIntegers:
    @pytest.mark.parametrize("value", BIG)
    @pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens", "seed", "n", "top_logprobs"])
    def test_chat_integers_beyond_range_are_400_naming_the_field(
        self, gw: RunningGateway, name: str, value: int
    ) -> None:
        error(post_json(gw, CHAT, chat(**{name: value})), 400, param=name)

    @pytest.mark.parametrize("name", ["max_tokens", "seed"])
    def test_dbgpt_integers_beyond_range_are_400_naming_the_field(self, gw: RunningGateway, name: str) -> None:
        error(post_json(gw, "/api/v2/chat/completions", chat(**{name: 2**64})), 400, param=name)

    def test_dbgpt_max_new_tokens_beyond_range_names_max_new_tokens(self, gw: RunningGateway) -> None:
        error(post_json(gw, "/api/v2/chat/completions", chat(max_new_tokens=2**64)), 400, param="max_new_tokens")

    def test_a_seed_just_below_the_64_bit_range_is_400(self, gw: RunningGateway) -> None:
        body = b'{"model": "gpt", "messages": "hi", "seed": -9223372036854775809}'
        error(call(gw, "POST", CHAT, body), 400, param="seed")

    @pytest.mark.parametrize("name", ["rpm", "tpm", "max_parallel"])
    @pytest.mark.parametrize("value", [2**64, 2**31, 10**30])
    def test_key_limits_beyond_range_are_400_naming_the_field(self, gw: RunningGateway, name: str, value: int) -> None:
        error(post_json(gw, "/admin/keys", {"name": "big", name: value}), 400, param=name)

    def test_integers_far_beyond_any_range_in_a_forwarded_field(self, gw: RunningGateway) -> None:
        """orjson parses a 400-digit integer as a float, or refuses it: never a crash."""
        body = b'{"model": "gpt", "messages": "hi", "custom": ' + b"9" * 400 + b"}"
        answer = call(gw, "POST", CHAT, body)
        assert answer.status in (200, 400), answer.body
        if answer.status == 400:
            error(answer, 400)


# -- nesting --------------------------------------------------------------------------------------------------------


class TestNesting:
    @pytest.mark.parametrize("path", [CHAT, "/api/v2/chat/completions"])
    def test_a_deep_extra_field_is_400_naming_it(self, gw: RunningGateway, path: str) -> None:
        body = ('{"model": "gpt", "messages": "hi", "custom": ' + nested(300) + "}").encode()
        err = error(call(gw, "POST", path, body), 400)
        assert path != CHAT or str(err["param"]).startswith("custom"), err

    def test_a_deep_embeddings_field_is_400_naming_it(self, gw: RunningGateway) -> None:
        body = ('{"model": "embed", "input": "hi", "user": {"a": ' + nested(300) + "}}").encode()
        err = error(call(gw, "POST", "/v1/embeddings", body), 400)
        assert str(err["param"]).startswith("user"), err

    def test_deep_message_content_is_400_naming_it(self, gw: RunningGateway) -> None:
        part = '{"type": "text", "text": "x", "extra": ' + nested(300) + "}"
        body = ('{"model": "gpt", "messages": [{"role": "user", "content": [' + part + "]}]}").encode()
        err = error(call(gw, "POST", CHAT, body), 400)
        assert str(err["param"]).startswith("messages[0].content[0]"), err

    def test_deep_key_metadata_is_400_naming_it(self, gw: RunningGateway) -> None:
        body = ('{"name": "deep", "metadata": {"a": ' + nested(300) + "}}").encode()
        err = error(call(gw, "POST", "/admin/keys", body), 400)
        assert str(err["param"]).startswith("metadata"), err

    def test_deep_tool_call_arguments_are_400_naming_them(self, gw: RunningGateway) -> None:
        call_ = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": nested(300)}}
        messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call_]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
        error(post_json(gw, CHAT, chat(messages=messages)), 400, param="messages[1].tool_calls[0].function.arguments")


# -- headers and URLs -----------------------------------------------------------------------------------------------


class TestHeaders:
    def test_a_1_mib_header_is_431(self, gw: RunningGateway) -> None:
        head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: "
        with Conn(gw) as c:
            c.send_in_background(iter([head, *(b"a" * 65536 for _ in range(16)), b"\r\n\r\n"]))
            error(c.answer(), 431, code="headers_too_large")
            assert c.closed()

    def test_200_headers_are_431(self, gw: RunningGateway) -> None:
        headers = "".join(f"X-H{i}: {i}\r\n" for i in range(200)).encode()
        with Conn(gw) as c:
            c.send(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            error(c.answer(), 431, code="headers_too_large")
            assert c.closed()

    def test_a_100_kib_url_is_431_or_414(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            c.send_in_background(iter([b"GET /v1/models?q=" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]))
            answer = c.answer()
            assert answer.status in (414, 431), answer
            error(answer, answer.status)
            assert c.closed()

    def test_headers_sent_a_byte_a_second_are_408(self, gw: RunningGateway) -> None:
        head = request("GET", "/v1/models")
        with Conn(gw) as c:
            start = time.monotonic()

            def trickle() -> Iterator[bytes]:
                for i in range(len(head)):
                    yield head[i : i + 1]
                    time.sleep(1.0)

            c.send_in_background(trickle())
            answer = c.answer()
            elapsed = time.monotonic() - start
            error(answer, 408, code="request_timeout")
            assert HEADER_TIMEOUT - 0.1 <= elapsed <= HEADER_TIMEOUT + 2
            assert c.closed()

    def test_headers_that_stop_after_one_read_are_408(self, gw: RunningGateway) -> None:
        with Conn(gw, timeout=HEADER_TIMEOUT + 2) as c:
            c.send(b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\n")
            error(c.answer(), 408, code="request_timeout")

    def test_a_connection_that_sends_nothing_is_closed(self, gw: RunningGateway) -> None:
        with Conn(gw) as c:
            assert c.closed(within=HEADER_TIMEOUT + 2)
            assert c.buf == b""

    @pytest.mark.parametrize(
        "value",
        ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer " + MASTER_KEY + "x", "Bearer " + "k" * 60000,
         "Bearer \xff\xfe", "Bearer a b c"],
    )  # fmt: skip
    def test_odd_authorization_is_401(self, gw: RunningGateway, value: str) -> None:
        error(call(gw, "GET", "/v1/models", key=None, headers={"Authorization": value}), 401)
        error(call(gw, "GET", "/admin/keys", key=None, headers={"Authorization": value}), 401)

    @pytest.mark.parametrize("value", ["\xff\xfe", "x" * 10000, "a\tb", "", "{}", "<b>"])
    def test_odd_request_ids_are_answered(self, gw: RunningGateway, value: str) -> None:
        answer = call(gw, "POST", CHAT, b"[]", headers={"X-Request-ID": value})
        err = error(answer, 400)
        assert len(err.get("request_id", "")) <= 128

    def test_odd_header_values_do_not_matter(self, gw: RunningGateway) -> None:
        headers = {"Accept": "\xff" * 100, "X-Forwarded-For": "not an address", "Accept-Encoding": "gzip;q=nan",
                   "Connection": "upgrade, keep-alive, close, nonsense", "Expect": "200-ok"}  # fmt: skip
        answer = call(gw, "POST", CHAT, json.dumps(chat()).encode(), headers=headers)
        assert answer.status in (200, 417), answer.body


# -- routes, methods, queries ---------------------------------------------------------------------------------------


class TestRoutes:
    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("GET", CHAT, "POST"),
            ("PUT", "/chat/completions", "POST"),
            ("DELETE", "/v1/embeddings", "POST"),
            ("POST", "/v1/models", "GET"),
            ("PATCH", "/models", "GET"),
            ("GET", "/api/v2/chat/completions", "POST"),
            ("PUT", "/admin/keys", "GET, POST"),
            ("POST", "/admin/keys/key_x", "DELETE, GET, PATCH"),
            ("POST", "/admin/usage", "GET"),
            ("DELETE", "/admin/usage/records", "GET"),
            ("POST", "/health", "GET, HEAD"),
            ("DELETE", "/health/readiness", "GET, HEAD"),
            ("PUT", "/health/liveness", "GET, HEAD"),
            ("POST", "/metrics", "GET, HEAD"),
            ("PATCH", "/openapi.json", "GET, HEAD"),
            ("OPTIONS", CHAT, "POST"),
            ("TRACE", "/v1/models", "GET"),
        ],
    )
    def test_a_method_the_route_does_not_serve_is_405_with_allow(
        self, gw: RunningGateway, method: str, path: str, allow: str
    ) -> None:
        answer = call(gw, method, path, b"{}" if method in ("POST", "PUT", "PATCH") else None)
        error(answer, 405, code="method_not_allowed")
        assert answer.headers.get("allow") == allow

    @pytest.mark.parametrize("method", ["POST", "DELETE", "HEAD"])
    def test_a_method_a_model_does_not_serve_is_405(self, gw: RunningGateway, method: str) -> None:
        answer = call(gw, method, "/v1/models/gpt", b"{}" if method == "POST" else None)
        assert answer.status == 405 and answer.headers.get("allow") == "GET", answer

    @pytest.mark.parametrize(
        "path",
        ["/", "/v2/chat/completions", "/v1/chat/completions/", "/v1/chat", "/admin/nope", "/admin/keys/a/b",
         "/admin/usage/records/x", "/v1/models/no-such-model", "/%2e%2e/%2e%2e/etc/passwd", "/v1/%00",
         "/" + "a" * 1000, "/health/", "/metrics/x", "//v1//models"],
    )  # fmt: skip
    def test_an_unknown_path_is_404(self, gw: RunningGateway, path: str) -> None:
        method = "POST" if "chat" in path else "GET"
        error(call(gw, method, path, b"{}" if method == "POST" else None), 404)

    @pytest.mark.parametrize("method", ["FOO", "get", "PROPFIND", "CONNECT"])
    def test_an_odd_method_is_refused(self, gw: RunningGateway, method: str) -> None:
        answer = call(gw, method, "/v1/models")
        assert 400 <= answer.status < 500, answer

    @pytest.mark.parametrize(
        ("query", "param"),
        [
            ("/admin/usage?group_by=nope", "group_by"),
            ("/admin/usage?since=nan", "since"),
            ("/admin/usage?until=1e999", "until"),
            ("/admin/usage?since=", "since"),
            ("/admin/usage?since=%ff%fe", "since"),
            ("/admin/usage/records?limit=0", "limit"),
            ("/admin/usage/records?limit=10001", "limit"),
            ("/admin/usage/records?limit=-1", "limit"),
            ("/admin/usage/records?limit=1e3", "limit"),
            ("/admin/keys?include_revoked=maybe", "include_revoked"),
        ],
    )
    def test_a_bad_query_is_400_naming_the_parameter(self, gw: RunningGateway, query: str, param: str) -> None:
        error(call(gw, "GET", query), 400, param=param)

    def test_a_limit_of_unicode_digits_is_400(self, gw: RunningGateway) -> None:
        error(call(gw, "GET", "/admin/usage/records?limit=%C2%B2"), 400, param="limit")

    def test_a_limit_of_5000_digits_is_400(self, gw: RunningGateway) -> None:
        error(call(gw, "GET", "/admin/usage/records?limit=" + "9" * 5000), 400, param="limit")

    @pytest.mark.parametrize(
        "query", ["?%zz=1", "?a=%ff", "?&&&=&", "?" + "x=1&" * 2000, "?group_by=key&group_by=model", "?a=%00"]
    )
    def test_odd_query_strings_are_answered(self, gw: RunningGateway, query: str) -> None:
        answer = call(gw, "GET", "/admin/usage" + query)
        assert answer.status in (200, 400), answer.body
        if answer.status == 400:
            error(answer, 400)


# -- fields the gateway echoes --------------------------------------------------------------------------------------


class TestEchoes:
    @pytest.mark.parametrize("conv_uid", [{"a": 1}, [None], 5, True])
    def test_dbgpt_conv_uid_must_be_a_string(self, gw: RunningGateway, conv_uid: Any) -> None:
        error(post_json(gw, "/api/v2/chat/completions", chat(conv_uid=conv_uid)), 400, param="conv_uid")

    def test_a_model_name_is_echoed_whatever_it_holds(self, gw: RunningGateway) -> None:
        for model in ["\x00", "a\r\nb", "</script>", "\ud7ff" * 100, "x" * 100_000]:
            err = error(post_json(gw, CHAT, chat(model=model)), 404)
            assert err["code"] in ("model_not_found", "not_found", None), err


# -- anything at all ------------------------------------------------------------------------------------------------

#: JSON values of every kind, small: what a confused client sends
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: the fields each route knows, so that random values land on them often
FIELDS = ["model", "messages", "input", "stream", "max_tokens", "n", "seed", "tools", "tool_choice", "name", "rpm",
          "metadata", "models", "budget", "expires_in", "conv_uid", "chat_mode", "stop", "temperature"]  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=5).map(
        lambda v: json.dumps({"model": "gpt", "messages": "hi", "name": "k", "input": "x", **v}).encode()
    ),
)
PROPERTY_SETTINGS = settings(
    max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)


@pytest.mark.parametrize("path", [*JSON_ROUTES, "/admin/keys/key_none"])
def test_any_body_gets_an_answer_in_the_error_shape_or_a_success(gw: RunningGateway, path: str) -> None:
    method = "PATCH" if path.startswith("/admin/keys/") else "POST"

    @PROPERTY_SETTINGS
    @given(body=BODIES)
    def check(body: bytes) -> None:
        answer = call(gw, method, path, body)
        assert answer.status < 500, (body, answer)
        if answer.status >= 400:
            error(answer, answer.status)

    check()
