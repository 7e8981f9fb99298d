"""The ``fastchat-worker`` adapter, sans I/O: prompts rendered per conversation template (checked against the real
FastChat's own rendering of every template it ships, when its virtualenv is available), the request it builds,
NUL-delimited cumulative frames turned into deltas, and FastChat's error codes mapped to typed errors."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from fastchat_env import FASTCHAT, VenvError, clean_env

from modelway.cluster.prompt import FALLBACK, ConvTemplate
from modelway.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    StreamError,
    UpstreamServerError,
)
from modelway.nul import NULDecoder
from modelway.providers import PROVIDERS, ProviderSettings
from modelway.providers.fastchat_worker import DBGPTWorkerAdapter, FastChatWorkerAdapter, dbgpt_messages
from modelway.sse import SSEEventTooLarge
from modelway.types import ChatCompletionChunk, ChatRequest

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
]

VICUNA = {"name": "vicuna_v1.1", "system_message": "SYS", "roles": ["USER", "ASSISTANT"], "sep_style": 2,
          "sep": " ", "sep2": "</s>", "messages": [], "stop_str": None}  # fmt: skip
#: Langchain-Chatchat's ChatGLMWorker (zhipu-api) template
CHATCHAT_ZHIPU = {"name": "zhipu-api", "system_message": "你是智谱AI小助手", "roles": ["user", "assistant", "system"],
                  "sep": "\n###", "stop_str": "###"}  # fmt: skip

_RENDER_ALL = """
import dataclasses, json, sys
from fastchat.conversation import conv_templates, SeparatorStyle
messages = json.loads(sys.argv[1])
out = {}
for name, template in conv_templates.items():
    conv = template.copy()
    for m in messages:
        content = m["content"] if isinstance(m["content"], str) else "\\n".join(p["text"] for p in m["content"])
        if m["role"] == "system":
            conv.set_system_message(content)
        elif m["role"] == "user":
            conv.append_message(conv.roles[0], content)
        else:
            conv.append_message(conv.roles[1], content)
    conv.append_message(conv.roles[1], None)
    try:
        prompt = conv.get_prompt()
    except Exception as e:
        continue
    d = dataclasses.asdict(template)
    d["sep_style"] = int(template.sep_style)
    out[name] = [d, prompt]
print(json.dumps(out))
"""


class TestPrompt:
    def test_vicuna(self) -> None:
        prompt = ConvTemplate.from_dict(VICUNA).render(MESSAGES)
        assert prompt == "You are terse. USER: What is 2+2? ASSISTANT: 4</s>USER: And 3+3? ASSISTANT:"
        assert ConvTemplate.from_dict(VICUNA).render(MESSAGES[1:2]) == "SYS USER: What is 2+2? ASSISTANT:"

    def test_chatchat_online_worker_template(self) -> None:
        prompt = ConvTemplate.from_dict(CHATCHAT_ZHIPU).render(MESSAGES[1:2])
        assert prompt == "你是智谱AI小助手\n###user: What is 2+2?\n###assistant:"

    def test_unknown_style_and_missing_template_fall_back(self) -> None:
        odd = ConvTemplate.from_dict({**VICUNA, "sep_style": 99})
        assert odd.render(MESSAGES[1:2]) == "SYS USER: What is 2+2? ASSISTANT:"
        assert FALLBACK.render(MESSAGES[1:2]) == "\nUSER: What is 2+2?\nASSISTANT:"
        with pytest.raises(ValueError):
            ConvTemplate.from_dict(["not", "a", "dict"])
        with pytest.raises(ValueError):
            ConvTemplate.from_dict({"system_message": "x" * 100_000})

    def test_every_fastchat_template_renders_as_fastchat_does(self) -> None:
        try:
            python = FASTCHAT.ensure()
        except VenvError as e:
            pytest.skip(f"fschat 0.2.36 could not be installed: {str(e)[:300]}")
        done = subprocess.run(
            [str(python), "-c", _RENDER_ALL, json.dumps(MESSAGES)],
            capture_output=True, text=True, env=clean_env(), timeout=120, check=True,
        )  # fmt: skip
        rendered = json.loads(done.stdout)
        styles = {conv["sep_style"] for conv, _ in rendered.values()}
        assert len(rendered) > 50 and len(styles) >= 15  # the comparison covers most separator styles
        wrong = {
            name: (ConvTemplate.from_dict(conv).render(MESSAGES), expected)
            for name, (conv, expected) in rendered.items()
            if ConvTemplate.from_dict(conv).render(MESSAGES) != expected
        }
        assert wrong == {}


def _adapter(conv: dict[str, Any] | None = VICUNA) -> FastChatWorkerAdapter:
    a = FastChatWorkerAdapter(ProviderSettings(base_url="http://10.0.0.5:21002/"))
    if conv is not None:
        a.templates["vicuna"] = ConvTemplate.from_dict(conv)
    return a


class TestRequest:
    def test_registered_and_built_request(self) -> None:
        assert PROVIDERS["fastchat-worker"] is FastChatWorkerAdapter
        assert PROVIDERS["dbgpt-worker"] is DBGPTWorkerAdapter
        a = _adapter({**VICUNA, "stop_str": "###", "stop_token_ids": [2]})
        req = ChatRequest("vicuna", MESSAGES[1:2], stream=True, params={"temperature": 0.2, "stop": "END"},
                          extra={"top_k": 5})  # fmt: skip
        http = a.chat_request(req)
        assert http.url == "http://10.0.0.5:21002/worker_generate_stream"
        assert "Authorization" not in http.headers
        body = json.loads(http.body or b"")
        assert body == {
            "model": "vicuna", "prompt": "SYS USER: What is 2+2? ASSISTANT:", "temperature": 0.2,
            "max_new_tokens": 1024, "stop": ["END", "###"], "echo": False, "top_k": 5, "stop_token_ids": [2],
        }  # fmt: skip
        plain = a.chat_request(ChatRequest("vicuna", MESSAGES[1:2], params={"max_tokens": 7}))
        assert plain.url.endswith("/worker_generate") and json.loads(plain.body or b"")["max_new_tokens"] == 7

    def test_what_a_worker_cannot_do(self) -> None:
        with pytest.raises(InvalidRequestError):  # one answer per request
            _adapter().chat_request(ChatRequest("vicuna", MESSAGES[1:2], params={"n": 2}))
        # text only: tools and response formats are not sent, as FastChat's API server drops them
        params = {"tools": [{"type": "function"}], "tool_choice": "auto", "response_format": {"type": "json_object"}}
        body = json.loads(_adapter().chat_request(ChatRequest("vicuna", MESSAGES[1:2], params=params)).body or b"")
        assert not {"tools", "tool_choice", "response_format"} & set(body)

    def test_dbgpt_worker_gets_messages(self) -> None:
        a = DBGPTWorkerAdapter(ProviderSettings(base_url="http://h:8001"))
        http = a.chat_request(ChatRequest("glm-4", MESSAGES, stream=True))
        assert http.url == "http://h:8001/api/worker/generate_stream"
        body = json.loads(http.body or b"")
        assert [m["role"] for m in body["messages"]] == ["system", "human", "ai", "human"]
        assert dbgpt_messages([{"role": "user", "content": None}]) == [{"role": "human", "content": ""}]


def _frames(*chunks: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(c, ensure_ascii=False).encode() + b"\0" for c in chunks)


def _run(raw: bytes, step: int, conv: dict[str, Any] | None = VICUNA) -> list[ChatCompletionChunk]:
    a = _adapter(conv)
    parser = a.stream_parser(ChatRequest("vicuna", MESSAGES, stream=True))
    dec = a.stream_decoder(1 << 20)
    out: list[ChatCompletionChunk] = []
    for i in range(0, len(raw), step):
        for ev in dec.feed(raw[i : i + step]):
            out += parser.event(ev)
    for ev in dec.flush():
        out += parser.event(ev)
    return out + parser.close()


STREAM = _frames(
    {"text": "你", "error_code": 0, "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
    {"text": "你好\ufffd", "error_code": 0, "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}},
    {"text": "你好，世界", "error_code": 0, "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
     "finish_reason": "length"},
)  # fmt: skip


class TestStream:
    @pytest.mark.parametrize("step", [1, 3, 7, len(STREAM)])
    def test_cumulative_text_becomes_deltas(self, step: int) -> None:
        chunks = _run(STREAM, step)
        assert [c.content for c in chunks if c.content] == ["你", "好", "，世界"]
        assert chunks[0].choices[0].delta.role == "assistant"
        last = chunks[-1]
        assert last.choices[0].finish_reason == "length"
        assert last.usage is not None and (last.usage.prompt_tokens, last.usage.completion_tokens) == (5, 4)
        assert len({c.id for c in chunks}) == 1 and all(c.provider == "fastchat-worker" for c in chunks)

    def test_a_stream_without_finish_reason_ends_with_stop(self) -> None:
        # Langchain-Chatchat's online workers send {"error_code": 0, "text": ...} only, and no trailing NUL
        chunks = _run(_frames({"error_code": 0, "text": "ab"}, {"error_code": 0, "text": "abc"})[:-1], 2)
        assert [c.content for c in chunks if c.content] == ["ab", "c"]
        assert chunks[-1].choices[0].finish_reason == "stop"

    def test_an_empty_stream_is_broken(self) -> None:
        with pytest.raises(StreamError):
            _run(b"\0\0", 1)

    @pytest.mark.parametrize(
        ("code", "cls"),
        [
            (40001, BadRequestError), (40101, AuthenticationError), (40301, NotFoundError),
            (40303, ContextLengthError), (42901, RateLimitError), (42903, RateLimitError),
            (50001, UpstreamServerError), (50002, UpstreamServerError), (500, UpstreamServerError),
            (40099, BadRequestError), (40499, NotFoundError),
        ],
    )  # fmt: skip
    def test_error_codes(self, code: int, cls: type[ProviderError]) -> None:
        raw = _frames({"text": "partial", "error_code": 0}, {"text": "boom", "error_code": code})
        a = _adapter()
        parser = a.stream_parser(ChatRequest("vicuna", MESSAGES, stream=True))
        first, second = a.stream_decoder(1024).feed(raw)
        assert parser.event(first)[0].content == "partial"
        with pytest.raises(cls) as err:
            parser.event(second)
        assert type(err.value) is cls and err.value.code == str(code) and "boom" in str(err.value)
        with pytest.raises(cls):  # the same from /worker_generate
            a.parse_chat(json.dumps({"text": "boom", "error_code": code}).encode(), {}, ChatRequest("vicuna", []))

    def test_whole_answers(self) -> None:
        a = _adapter()
        done = a.parse_chat(STREAM, {}, ChatRequest("vicuna", MESSAGES))  # NUL frames: the last one counts
        assert done.content == "你好，世界" and done.choices[0].finish_reason == "length"
        assert done.usage is not None and done.usage.total_tokens == 9
        err = a.parse_error(500, {}, b'{"text": "CUDA out of memory", "error_code": 50002}')
        assert isinstance(err, UpstreamServerError) and err.status_code == 500 and err.code == "50002"
        assert isinstance(a.parse_error(404, {}, b"Not Found"), NotFoundError)

    def test_embeddings(self) -> None:
        a = _adapter()
        from modelway.types import EmbeddingRequest

        req = EmbeddingRequest("vicuna", ["a", "b"])
        assert a.embed_request(req).url.endswith("/worker_get_embeddings")
        resp = a.parse_embed(b'{"embedding": [[0.1, 0.2], [0.3, 0.4]], "token_num": 4}', {}, req)
        assert [e.embedding for e in resp.data] == [[0.1, 0.2], [0.3, 0.4]] and resp.usage is not None
        assert resp.usage.prompt_tokens == 4


class TestNULDecoder:
    def test_frames_split_anywhere(self) -> None:
        raw = b'{"a":1}\0\0{"b":"\xc3\xa9"}\0{"c"'
        for step in (1, 2, 5, len(raw)):
            dec = NULDecoder()
            got = [ev.data for i in range(0, len(raw), step) for ev in dec.feed(raw[i : i + step])]
            assert got == ['{"a":1}', '{"b":"é"}']
            assert [ev.data for ev in dec.flush()] == ['{"c"']

    def test_frames_are_bounded(self) -> None:
        dec = NULDecoder(max_event_bytes=8)
        with pytest.raises(SSEEventTooLarge):
            dec.feed(b"0123456789")
        with pytest.raises(SSEEventTooLarge):
            NULDecoder(max_event_bytes=8).feed(b"0123456789\0")
