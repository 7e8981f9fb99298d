"""The gateway's DB-GPT API v2 driven by DB-GPT's official client, ``dbgpt-client`` 0.8.2.

The client pins dependencies the project cannot share, so it runs in its own cached virtualenv
(``dbgpt_env.py``) through ``dbgpt_driver.py``, one subprocess per request (forked by one ``dbgpt_driver.py --serve``
for the module, which imports the client once). Contract:
``/work/shared/reference/dbgpt.md`` §1.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dbgpt_env import DbgptEnvError, ensure_dbgpt_venv
from gw import MASTER_KEY, RunningGateway

from modelway.testing import BaseSimulator, DashScopeSimulator, Fault, OpenAISimulator, Reply, ZhipuSimulator

DRIVER = Path(__file__).with_name("dbgpt_driver.py")
DONE = "data: [DONE]"
MODELS = ["glm", "qwen", "gpt"]


@dataclass
class Outcome:
    """What the official client did with one request (see ``dbgpt_driver.py`` for the fields)."""

    result: Any
    types: list[str]
    error: str | None
    message: str | None
    status: int | None
    headers: dict[str, str]
    body: str
    stderr: str = field(repr=False)

    def ok(self) -> Outcome:
        assert self.error is None, f"the client raised {self.error}: {self.message}\n{self.stderr}"
        assert self.status == 200, f"HTTP {self.status}: {self.body}"
        return self

    # chat ------------------------------------------------------------------------------------------------------
    @property
    def choice(self) -> dict[str, Any]:
        assert self.types == ["ChatCompletionResponse"], (self.types, self.result)
        return self.result["choices"][0]  # type: ignore[no-any-return]

    # chat_stream -----------------------------------------------------------------------------------------------
    @property
    def chunks(self) -> list[dict[str, Any]]:
        assert self.types and set(self.types) == {"ChatCompletionStreamResponse"}, (self.types, self.result)
        return self.result  # type: ignore[no-any-return]

    @property
    def contents(self) -> list[str]:
        return [c["choices"][0]["delta"]["content"] for c in self.chunks if c["choices"][0]["delta"].get("content")]

    @property
    def finish_reasons(self) -> list[str]:
        return [c["choices"][0]["finish_reason"] for c in self.chunks if c["choices"][0]["finish_reason"]]

    # errors ----------------------------------------------------------------------------------------------------
    @property
    def error_dict(self) -> dict[str, Any]:
        """The error body the client returned (chat) or yielded (chat_stream) as a plain dict."""
        assert self.error is None, f"the client raised {self.error}: {self.message}"
        items = [self.result] if isinstance(self.result, dict) else self.result
        assert self.types == ["dict"] and len(items) == 1, (self.types, self.result)
        assert isinstance(items[0], dict)
        return items[0]  # type: ignore[no-any-return]


Dbgpt = Callable[..., Outcome]


@pytest.fixture(scope="session")
def dbgpt_python() -> Path:
    """The python of the cached virtualenv with ``dbgpt-client``; building it may take a minute the first time."""
    try:
        return ensure_dbgpt_venv()
    except DbgptEnvError as e:  # CI has PyPI: a broken install is a failure, not a reason to skip
        pytest.fail(f"could not build the dbgpt-client virtualenv:\n{e}", pytrace=False)


@pytest.fixture(scope="module")
def driver(dbgpt_python: Path) -> Iterator[subprocess.Popen[str]]:
    """``dbgpt_driver.py --serve``: forks one process per request, from a process that imported the client once."""
    proc = subprocess.Popen(
        [str(dbgpt_python), str(DRIVER), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()  # the end of its input: it exits
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture
def dbgpt(driver: subprocess.Popen[str], gateway: RunningGateway, tmp_path: Path) -> Dbgpt:
    """``dbgpt(kind, model, messages, key=..., **client_kwargs)`` runs one official-client call on the gateway."""
    calls = iter(range(1_000_000))

    def call(job: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """One request in a process of its own (forked by the driver): its exit status, stdout and stderr."""
        n = next(calls)
        out, err = tmp_path / f"dbgpt-{n}.out", tmp_path / f"dbgpt-{n}.err"
        assert driver.stdin is not None and driver.stdout is not None
        driver.stdin.write(json.dumps({"job": job, "stdout": str(out), "stderr": str(err), "timeout": 60}) + "\n")
        driver.stdin.flush()
        line = driver.stdout.readline()
        assert line, f"dbgpt_driver.py --serve exited with {driver.poll()}"
        status = json.loads(line)["status"]
        return subprocess.CompletedProcess([], status, out.read_text(), err.read_text())

    def run(kind: str, model: str, messages: Any, *, key: str = MASTER_KEY, **kwargs: Any) -> Outcome:
        job = {
            "api_base": gateway.url + "/api/v2",
            "api_key": key,
            "model": model,
            "messages": messages,
            "kind": kind,
            "kwargs": kwargs,
            "timeout": 30,
        }
        proc = call(job)
        if proc.returncode != 0:
            pytest.fail(f"dbgpt_driver.py exited with {proc.returncode}:\n{proc.stderr}\n{proc.stdout}")
        out = json.loads(proc.stdout)
        # the driver closes the client on its loop, so the client's atexit close() (DB-GPT #2838) finds nothing to do:
        # it neither makes a new loop nor fails on the closed one
        for sign in ("Event loop is closed", "Exception ignored", "create new event loop"):
            assert sign not in proc.stderr, proc.stderr
        http = out["http"]
        return Outcome(
            out["result"],
            out["types"],
            out["error"],
            out["message"],
            http["status"],
            http["headers"],
            http["body"],
            proc.stderr,
        )

    return run


@pytest.fixture
def sims(zhipu_sim: ZhipuSimulator, dashscope_sim: DashScopeSimulator, openai_sim: OpenAISimulator) -> dict[str, Any]:
    return {"glm": zhipu_sim, "qwen": dashscope_sim, "gpt": openai_sim}


def sent_messages(model: str, sim: BaseSimulator) -> list[dict[str, Any]]:
    """The messages the provider received (DashScope native nests them under ``input``)."""
    body = sim.requests[-1].json
    return body["input"]["messages"] if model == "qwen" else body["messages"]  # type: ignore[no-any-return]


def sent_params(model: str, sim: BaseSimulator) -> dict[str, Any]:
    """The sampling parameters the provider received (DashScope native nests them under ``parameters``)."""
    body = sim.requests[-1].json
    return body.get("parameters", {}) if model == "qwen" else body  # type: ignore[no-any-return]


class TestChat:
    @pytest.mark.parametrize("model", MODELS)
    def test_string_message(self, dbgpt: Dbgpt, sims: dict[str, Any], model: str) -> None:
        out = dbgpt("chat", model, "你好 DB-GPT").ok()
        assert out.choice["message"]["content"] == "You said: 你好 DB-GPT"
        assert out.choice["message"]["role"] == "assistant" and out.choice["finish_reason"] == "stop"
        assert out.result["model"] == model
        usage = out.result["usage"]
        assert usage["total_tokens"] > 0 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert sent_messages(model, sims[model])[-1] == {"role": "user", "content": "你好 DB-GPT"}

    @pytest.mark.parametrize("model", MODELS)
    def test_the_whole_conversation_reaches_the_provider(self, dbgpt: Dbgpt, sims: dict[str, Any], model: str) -> None:
        # DB-GPT's own server keeps only messages[0] (seed bug #13): here the system text would become the question
        conversation = [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ]
        out = dbgpt("chat", model, conversation).ok()
        assert out.choice["message"]["content"] == "You said: second question"
        got = [{"role": m["role"], "content": m["content"]} for m in sent_messages(model, sims[model])]
        assert got == conversation

    @pytest.mark.parametrize("model", MODELS)
    def test_params_reach_the_provider_and_client_defaults_do_not(
        self, dbgpt: Dbgpt, sims: dict[str, Any], model: str
    ) -> None:
        # the client always sends top_k=-1, n=1, repetition_penalty=1.0, top_p=1.0 and zero penalties: not requests
        dbgpt("chat", model, "x", temperature=0, max_new_tokens=7).ok()
        params = sent_params(model, sims[model])
        if model == "glm":  # Zhipu rejects 0: greedy is do_sample=false with its smallest temperature
            assert params["do_sample"] is False and params["temperature"] == 0.01
        else:
            assert params["temperature"] == 0  # 0 is a value, not "unset"
        assert params["max_tokens"] == 7
        for name in ("top_k", "n", "repetition_penalty", "top_p", "presence_penalty", "frequency_penalty"):
            assert name not in params, f"{name}={params[name]!r} was forwarded"
        for name in ("max_new_tokens", "chat_mode", "incremental", "enable_vis", "conv_uid"):
            assert name not in params

    def test_chat_normal_mode_is_plain_chat_and_conv_uid_is_the_id(self, dbgpt: Dbgpt) -> None:
        out = dbgpt("chat", "glm", "hi", chat_mode="chat_normal", conv_uid="conv-42").ok()
        assert out.choice["message"]["content"] == "You said: hi"
        assert out.result["id"] == "conv-42"  # as DB-GPT's server does

    def test_reasoning_content(self, dbgpt: Dbgpt, sims: dict[str, Any]) -> None:
        sims["glm"].push(Reply(text="42", reasoning="let me think"))
        out = dbgpt("chat", "glm", "x").ok()
        assert out.choice["message"] == {"role": "assistant", "content": "42", "reasoning_content": "let me think"}


class TestStream:
    @pytest.mark.parametrize("model", MODELS)
    def test_incremental(self, dbgpt: Dbgpt, sims: dict[str, Any], model: str) -> None:
        sims[model].push(Reply(text="流式回答 in several pieces", chunk_size=4))
        out = dbgpt("chat_stream", model, "stream please").ok()
        assert len(out.contents) > 1, out.contents  # really streamed
        assert "".join(out.contents) == "流式回答 in several pieces"
        assert out.finish_reasons == ["stop"]
        assert all(c["model"] == model for c in out.chunks)
        assert len({c["id"] for c in out.chunks}) == 1
        assert out.chunks[-1]["usage"]["total_tokens"] > 0  # usage rides on the last chunk
        assert out.headers["content-type"].startswith("text/event-stream")
        assert out.body.rstrip("\n").endswith(DONE)  # the client stopped on [DONE], not on a cut connection

    @pytest.mark.parametrize("model", MODELS)
    def test_not_incremental_sends_cumulative_text_the_client_can_parse(
        self, dbgpt: Dbgpt, sims: dict[str, Any], model: str
    ) -> None:
        # DB-GPT's own server sends `message` snapshots the client cannot validate (seed bug #12)
        full = "abcdefghij 累积文本"
        sims[model].push(Reply(text=full, chunk_size=3))
        out = dbgpt("chat_stream", model, "x", incremental=False).ok()
        texts = out.contents
        assert len(texts) > 1, texts
        for before, after in zip(texts, texts[1:], strict=False):
            assert after.startswith(before), (before, after)
        assert texts[-1] == full
        assert out.finish_reasons == ["stop"]
        assert out.body.rstrip("\n").endswith(DONE)

    def test_reasoning_content_incremental(self, dbgpt: Dbgpt, sims: dict[str, Any]) -> None:
        sims["glm"].push(Reply(text="42", reasoning="let me think"))
        out = dbgpt("chat_stream", "glm", "x").ok()
        deltas = [c["choices"][0]["delta"] for c in out.chunks]
        assert "".join(d["reasoning_content"] or "" for d in deltas) == "let me think"
        assert "".join(out.contents) == "42"

    def test_reasoning_content_not_incremental_is_cumulative_too(self, dbgpt: Dbgpt, sims: dict[str, Any]) -> None:
        sims["glm"].push(Reply(text="42", reasoning="let me think", chunk_size=4))
        out = dbgpt("chat_stream", "glm", "x", incremental=False).ok()
        thoughts = [c["choices"][0]["delta"]["reasoning_content"] for c in out.chunks]
        seen = [t for t in thoughts if t]
        assert len(seen) > 1, thoughts
        for before, after in zip(seen, seen[1:], strict=False):
            assert after.startswith(before), (before, after)
        assert thoughts[-1] == "let me think"  # the last snapshot is the whole answer, reasoning included
        assert out.contents[-1] == "42"

    def test_stream_params(self, dbgpt: Dbgpt, sims: dict[str, Any]) -> None:
        dbgpt("chat_stream", "qwen", "x", temperature=0.3, max_new_tokens=5).ok()
        params = sent_params("qwen", sims["qwen"])
        assert params["temperature"] == 0.3 and params["max_tokens"] == 5
        assert "top_k" not in params and "repetition_penalty" not in params


class TestFinishReasons:
    @pytest.mark.parametrize(
        ("model", "upstream", "expected"),
        [("glm", "sensitive", "stop"), ("gpt", "content_filter", "stop"), ("glm", "length", "length")],
    )
    @pytest.mark.parametrize("kind", ["chat", "chat_stream"])
    def test_client_validates_every_upstream_reason(
        self, dbgpt: Dbgpt, sims: dict[str, Any], kind: str, model: str, upstream: str, expected: str
    ) -> None:
        # the client's finish_reason is Literal["stop", "length"]: anything else is a ValidationError
        sims[model].push(Reply(text="partial answer", finish_reason=upstream))
        out = dbgpt(kind, model, "x").ok()
        if kind == "chat":
            assert out.choice["finish_reason"] == expected
            assert out.choice["message"]["content"] == "partial answer"
        else:
            assert out.finish_reasons == [expected]
            assert "".join(out.contents) == "partial answer"


class TestErrors:
    @pytest.mark.parametrize("kind", ["chat", "chat_stream"])
    def test_other_chat_modes_are_400(self, dbgpt: Dbgpt, sims: dict[str, Any], kind: str) -> None:
        out = dbgpt(kind, "glm", "x", chat_mode="chat_knowledge", chat_param="my_space")
        assert out.status == 400
        err = out.error_dict["error"]
        assert err["code"] == "invalid_chat_mode" and err["param"] == "chat_mode"
        assert "chat_knowledge" in err["message"]
        assert sims["glm"].requests == []  # refused before any provider call

    @pytest.mark.parametrize("kind", ["chat", "chat_stream"])
    def test_wrong_key_is_401(self, dbgpt: Dbgpt, sims: dict[str, Any], kind: str) -> None:
        out = dbgpt(kind, "glm", "x", key="sk-wrong")
        assert out.status == 401
        assert out.error_dict["error"]["code"] == "invalid_api_key"
        assert sims["glm"].requests == []

    @pytest.mark.parametrize("kind", ["chat", "chat_stream"])
    def test_upstream_rate_limit_before_streaming(self, dbgpt: Dbgpt, sims: dict[str, Any], kind: str) -> None:
        sims["glm"].push(Fault.http(429, retry_after=3))
        out = dbgpt(kind, "glm", "x")
        assert out.status == 429
        assert out.headers.get("retry-after") == "3"
        err = out.error_dict["error"]
        assert err["code"] == "rate_limit_exceeded" and err["message"]

    def test_error_mid_stream_reaches_the_client(self, dbgpt: Dbgpt, sims: dict[str, Any]) -> None:
        # the client has no way to take an error after a 200 (dbgpt.md §1.10): it raises a bare Exception that
        # quotes the event; what matters is that the upstream's message is in it and earlier chunks arrived
        sims["gpt"].push(Fault.error_frame(after_chunks=2, code="server_error", message="upstream exploded"))
        out = dbgpt("chat_stream", "gpt", "hello there")
        assert out.status == 200
        assert out.error == "Exception" and out.message is not None
        assert "Failed to parse SSE data" in out.message and "upstream exploded" in out.message
        assert "".join(out.contents) == "You "
        assert DONE not in out.body

    def test_unknown_model_is_404(self, dbgpt: Dbgpt) -> None:
        out = dbgpt("chat", "no-such-model", "x")
        assert out.status == 404 and out.error_dict["error"]["code"] == "model_not_found"
