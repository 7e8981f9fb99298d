"""The request log: one line per request, with who, what and how it went, and never a secret.

Unit tests of the redaction (JSON members with secret names, secret-looking strings, a body cut in the middle of a
key, paths), then a running gateway writing its log to a file: a chat request, a stream, refusals, JSON and text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from gw import MASTER_KEY, RunningGateway

from modelway.config import ConfigError, RequestLogConfig, parse_config
from modelway.server.request_log import REDACTED, RequestLog, clean_path, clip_body, redact_text, secret_field
from modelway.testing import OpenAISimulator, Reply
from modelway.usage.records import UsageRecord

PROVIDER_KEY = "sk-provider-secret-0123456789"
BODY_SECRET = "sk-proj-callersecret987654321"


# -- redaction ---------------------------------------------------------------------------------------------------
def test_secret_fields_by_name() -> None:
    for name in ("Authorization", "x-api-key", "api_key", "apiKey", "client_secret", "access_token", "password"):
        assert secret_field(name), name
    for name in ("max_tokens", "prompt_tokens", "model", "prompt_cache_key", "messages", "keywords"):
        assert not secret_field(name), name


def test_redact_text_masks_secret_members_and_secret_looking_strings() -> None:
    text = orjson.dumps(
        {
            "model": "gpt",
            "api_key": "plain-value",
            "X-Api-Key": 'with "quotes"',
            "nested": {"access_token": "t0ken", "max_tokens": 5},
            "messages": [
                {"content": f"my key is {BODY_SECRET}, header Bearer abc.def-123456, jwt eyJhbGciOi.eyJzdWIiOi.sig"},
                {"content": "aws AKIAABCDEFGHIJKLMNOP and mw-AbCdEfGh012345 and AIzaSyA0123456789abcdefghijk"},
            ],
        }
    ).decode()
    out = redact_text(text)
    for secret in ("plain-value", "quotes", "t0ken", BODY_SECRET, "abc.def-123456", "eyJhbGciOi", "AKIAABCDEFGH"):
        assert secret not in out, secret
    assert "mw-AbCdEfGh" not in out and "AIzaSy" not in out
    assert orjson.loads(out)["nested"] == {"access_token": REDACTED, "max_tokens": 5}  # still JSON
    assert '"model":"gpt"' in out
    # a secret-looking string starts and ends at an ASCII word's edge: right after or before Chinese text too
    for text in (
        "sk-abcdefgh",
        "(sk-abcdefgh",
        "我的密钥是sess-abcdefgh",
        "x eyJabcd.efgh.ij",
        "AKIAABCDEFGHIJKLMNOP是",
    ):
        assert redact_text(text).count(REDACTED) == 1 and "abcd" not in redact_text(text), text
    for text in ("task-abcdefgh", "desk-abcdefgh", "xAKIAABCDEFGHIJKLMNOP", "xAIzaSyA0123456789abcdefghijk"):
        assert redact_text(text) == text, text
    # letters a case-insensitive match takes for ASCII ones (ſ for s, K for k): such a text is read the slow way
    assert redact_text("BA\u017fIC abcdefghij") == REDACTED
    assert redact_text('{"api_\u212aey": "v", "\u4e2d": 1}') == '{"api_\u212aey": "[redacted]", "\u4e2d": 1}'


def test_a_key_right_after_a_json_escape_is_masked() -> None:
    # a body is JSON text: a key on a new line follows "\n", and after Chinese text escaped by the client (Python's
    # json.dumps does so by default) it follows "\u662f"; the letter of the escape is no word edge
    contents = ("my key:\nsk-abcdefghij", "a\tmw-AbCdEfGh0123", "我的密钥是sk-abcdefghij", "是AKIAABCDEFGHIJKLMNOP")
    for content in contents:
        for text in (json.dumps({"content": content}), orjson.dumps({"content": content}).decode()):
            out = redact_text(text)
            assert out.count(REDACTED) == 1 and "abcdefgh" not in out and "AbCdEfGh" not in out, text
    assert redact_text(json.dumps({"content": "a\\task-abcdefgh"})) == json.dumps({"content": "a\\task-abcdefgh"})


def test_secret_members_of_json_inside_a_json_string_are_masked() -> None:
    # a tool call's arguments are JSON in a string, and so is JSON pasted into a message: their members' quotes are
    # escaped (\"password\": \"...\")
    args = {"user": "ann", "password": 'p4ss "word" \\ end', "api_key": "Zq8vT2pL9xW4rN7m", "n": 1}
    call = {"function": {"name": "login", "arguments": json.dumps(args)}}
    answer = {"choices": [{"message": {"tool_calls": [call]}}]}
    for text in (json.dumps(answer), orjson.dumps(answer).decode()):
        out = redact_text(text)
        inner = orjson.loads(orjson.loads(out)["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
        assert inner == {"user": "ann", "password": REDACTED, "api_key": REDACTED, "n": 1}  # both still JSON
    body = orjson.dumps({"messages": [{"content": "my config: " + json.dumps({"model": "m", "secret": "Zq8vT2pL9x"})}]})
    assert "Zq8vT2pL9x" not in redact_text(body.decode())
    out = clip_body(body, body.index(b"L9x"))  # cut inside the value (and the mask cut at the cap)
    assert "Zq8vT2p" not in out and out.endswith(f'\\"[redact…({len(body)} bytes)')


def test_secret_query_parameters_of_urls_in_a_body_are_masked() -> None:
    url = "https://files.example/a.png?X-Amz-Security-Token=Zq8vT2pL9x&size=2&api_key=Wm3kQ7rT1v#top"
    out = redact_text(orjson.dumps({"image_url": {"url": url}, "content": "see http://h/x?token=Yx5nB8cD2e"}).decode())
    assert "Zq8vT2pL9x" not in out and "Wm3kQ7rT1v" not in out and "Yx5nB8cD2e" not in out
    assert f"?X-Amz-Security-Token={REDACTED}&size=2&api_key={REDACTED}#top" in out
    text = "https://h/search?q=key+words&max_tokens=5&page=2"  # (no secret-named parameter)
    assert redact_text(text) == text


def test_a_body_cut_inside_a_key_leaves_no_part_of_it() -> None:
    body = orjson.dumps({"messages": [{"content": "x" * 30 + " " + BODY_SECRET}]})
    cut_at = body.index(b"sk-proj") + 6  # the cap falls inside the key: "sk-pro" would not look like one
    out = clip_body(body, cut_at)
    assert "sk-" not in out and "pro" not in out.split("x")[-1]
    assert out.endswith(f"…({len(body)} bytes)")
    # a secret-named member whose value the cap cuts
    body = b'{"model": "m", "api_key": "abcdefghijklmnopqrstuvwxyz"}'
    out = clip_body(body, body.index(b"klm"))
    assert "abcdefghij" not in out and REDACTED in out
    assert clip_body(b'{"a": 1}', 100) == '{"a": 1}'
    assert clip_body(b"a whole word\nand more", 13) == "a whole word\n…(21 bytes)"  # (a cut after a word keeps it)


def test_a_body_is_kept_within_its_cap_after_redaction() -> None:
    # masking lengthens a text ("" -> "[redacted]"), and a byte that is not UTF-8 becomes U+FFFD (3 bytes)
    empty_secrets = b"{" + b",".join(b'"key":""' for _ in range(400)) + b"}"
    for body in (empty_secrets, b"\xff" * 4096, b"\xff" * 5000, "是".encode() * 2000 + b"\xfe" * 3000):
        out = clip_body(body, 4096)
        text, _, tail = out.rpartition("…(")
        assert len(text.encode()) <= 4096 and tail == f"{len(body)} bytes)", (body[:20], len(out.encode()))
        assert '"key":""' not in text
    assert clip_body(b'{"key":""}', 100) == '{"key":"[redacted]"}'  # (within the cap: whole)


def test_paths_lose_the_cluster_prefix_and_key_like_segments() -> None:
    assert clean_path("/cluster-s3cret/register_worker", "/cluster-s3cret") == "/{cluster}/register_worker"
    assert clean_path("/v1/sk-abcdef/chat") == f"/v1/{REDACTED}/chat"
    assert clean_path("/x/" + "A" * 40) == f"/x/{REDACTED}"
    assert clean_path("/v1/chat/completions") == "/v1/chat/completions"
    assert len(clean_path("/" + "a/" * 500)) <= 201


def test_the_config_section_is_checked() -> None:
    cfg = parse_config({"request_log": {"enabled": True, "format": "text", "bodies": True, "max_body_bytes": 64}})
    assert cfg.request_log.enabled and cfg.request_log.format == "text" and cfg.request_log.max_body_bytes == 64
    assert parse_config({}).request_log.enabled is False  # off by default
    with pytest.raises(ConfigError, match="request_log.format"):
        parse_config({"request_log": {"format": "xml"}})
    with pytest.raises(ConfigError, match="request_log: unknown field 'colour'"):
        parse_config({"request_log": {"colour": "red"}})
    with pytest.raises(ConfigError, match="request_log.max_body_bytes: at most 1048576"):
        parse_config({"request_log": {"bodies": True, "max_body_bytes": 2 * 1024 * 1024}})


def test_a_body_holds_no_nul_and_no_broken_utf8() -> None:
    # (PostgreSQL's text refuses NUL: a kept body must never cost its usage record)
    assert clip_body(b'{"a": "x\x00y\xff"}', 100) == '{"a": "x\ufffdy\ufffd"}'


def test_text_lines_are_logfmt(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    rl = RequestLog(RequestLogConfig(enabled=True, format="text", path=str(path)))
    rec = UsageRecord(ts=time.time(), request_id="r1", key_id=None, model="gpt", deployment=None, endpoint="chat",
                      stream=False, status=429, error="rate_limit_exceeded", latency_ms=1.5)  # fmt: skip
    rl.write(rec, key_name='team "a"', error_type="LimitExceededError", method="POST", path="/v1/chat/completions")
    rl.close()
    line = path.read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    assert 'key="team \\"a\\""' in line and "status=429" in line and "error=rate_limit_exceeded" in line
    assert "deployment=" not in line  # empty values are left out


# -- through a running gateway -----------------------------------------------------------------------------------
def lines(path: Path, at_least: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        got = [orjson.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if len(got) >= at_least or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


@pytest.fixture(scope="module")
def logged(
    start_gateway: Callable[[dict[str, Any]], RunningGateway],
    openai_sim: OpenAISimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[RunningGateway, Path]:
    path = tmp_path_factory.mktemp("rlog") / "requests.log"
    dep = {"model": "openai/gpt-4o-mini", "api_key": PROVIDER_KEY, "api_base": openai_sim.base_url}
    gw = start_gateway(
        {
            "server": {"master_key": MASTER_KEY, "max_retries": 0},
            "request_log": {"enabled": True, "path": str(path), "bodies": True, "max_body_bytes": 4096},
            "models": [{"name": "gpt", "price": {"input": 1.0, "output": 2.0}, "deployments": [dep]}],
        }
    )
    return gw, path


async def post(gw: RunningGateway, path: str, body: Any, *, key: str = MASTER_KEY, raw: bytes | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = raw if raw is not None else orjson.dumps(body)
    async with aiohttp.ClientSession() as s, s.post(gw.url + path, data=data, headers=headers) as r:
        await r.read()
        return r.status


async def test_each_request_is_one_line_and_no_secret_is_written(
    logged: tuple[RunningGateway, Path], openai_sim: OpenAISimulator
) -> None:
    gw, path = logged
    openai_sim.check_auth = False  # the simulator takes any key: the deployment's is PROVIDER_KEY
    before = len(lines(path, 0))
    openai_sim.push(Reply(text="hello there", usage=(7, 3)), Reply(text="streamed", usage=(5, 2)))
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": f"keep {BODY_SECRET} safe"}],
        "metadata": {"api_key": "member-secret-value"},
    }
    assert await post(gw, "/v1/chat/completions", body) == 200
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    assert await post(gw, "/v1/chat/completions", stream) == 200
    assert await post(gw, "/v1/chat/completions", body, key="mw-wrongwrongwrongwrong") == 401
    assert await post(gw, "/v1/nothing/here", body) == 404
    assert await post(gw, "/v1/chat/completions", None, raw=b"{not json") == 400
    got = lines(path, before + 5)[before:]
    assert len(got) == 5, got
    ok, streamed, unauthorized, unknown, bad_json = got

    assert ok["status"] == 200 and ok["key"] == "(master)" and ok["model"] == "gpt"
    assert ok["deployment"] == "openai/gpt-4o-mini" and ok["endpoint"] == "chat" and ok["method"] == "POST"
    assert (ok["prompt_tokens"], ok["completion_tokens"], ok["total_tokens"]) == (7, 3, 10)
    assert ok["cost"] == pytest.approx((7 * 1.0 + 3 * 2.0) / 1e6) and ok["latency_ms"] > 0
    assert ok["ttft_ms"] is None and ok["error"] is None and ok["stream"] is False
    assert "hello there" in ok["response_body"] and "keep" in ok["request_body"]

    assert streamed["stream"] is True and streamed["ttft_ms"] > 0 and streamed["completion_tokens"] == 2
    assert "response_body" not in streamed  # a stream's chunks are not kept

    assert unauthorized["status"] == 401 and unauthorized["key"] is None and unauthorized["model"] == "(unknown)"
    assert unauthorized["error_type"] == "GatewayAuthError" and unauthorized["error"] == "invalid_api_key"
    assert unknown["status"] == 404 and unknown["endpoint"] == "other" and unknown["path"] == "/v1/nothing/here"
    assert bad_json["status"] == 400 and bad_json["error"] == "invalid_json" and bad_json["endpoint"] == "chat"

    text = path.read_text()
    for secret in (MASTER_KEY, PROVIDER_KEY, BODY_SECRET, "member-secret-value", "mw-wrongwrong", "Authorization"):
        assert secret not in text, secret
    # the provider did get what the caller sent: the secret was in the request, the log masked it
    assert BODY_SECRET in openai_sim.requests[0].body.decode()


async def test_probes_are_not_logged_unless_they_fail(logged: tuple[RunningGateway, Path]) -> None:
    gw, path = logged
    before = len(lines(path, 0))
    async with aiohttp.ClientSession() as s:
        for p in ("/health", "/health/readiness", "/metrics", "/openapi.json"):
            async with s.get(gw.url + p) as r:
                assert r.status == 200
        async with s.post(gw.url + "/health") as r:
            assert r.status == 405
    got = lines(path, before + 1)[before:]
    assert [(g["method"], g["path"], g["status"]) for g in got] == [("POST", "/health", 405)]
